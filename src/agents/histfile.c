/* The history index file: save and reuse across runs. */
#include "agents/histfile.h"
#include "agents/history.h"
#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"
#include "store/store.h"
#include "store/ticket.h"
#include "store/ws.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 2: the assigned member after created_ms; 3: the store's position and
 * the number of entries after the time written (version 2 files are still
 * read, as a cache of signatures) */
#define HEADER    "csa-history 3"
#define HEADER_V2 "csa-history 2"
#define PATH_SZ   4200
#define FIELDS    12
#define RACY_NS   2000000000LL /* entries of files this recent are read again */
#define MAX_INDEX ((size_t)1 << 30)

/* ---- writing ------------------------------------------------------------ */

struct sbuf {
	char *p;
	size_t len, cap;
	int bad;
};

static void put(struct sbuf *b, const char *s, size_t n)
{
	if (b->bad)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 1 << 16;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *np = realloc(b->p, cap);
		if (!np) {
			b->bad = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* A field with tab, newline, carriage return and '%' escaped as %XX. */
static void put_field(struct sbuf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\t' || *s == '\n' || *s == '\r' || *s == '%') {
			char esc[4];
			snprintf(esc, sizeof(esc), "%%%02X", (unsigned char)*s);
			put(b, esc, 3);
		} else {
			put(b, s, 1);
		}
	}
	put(b, "\t", 1);
}

static int save_one(void *ctx, const struct csa_hist_entry *e, uint64_t sig)
{
	struct sbuf *b = ctx;
	/* an entry of sig 0 (changed in this run) is written too: under the
	 * file's position it is right as it is, and without one it is read
	 * from its files again, as its signature matches none */
	char num[128];
	put_field(b, e->id);
	snprintf(num, sizeof(num), "%016" PRIx64, sig);
	put_field(b, num);
	put_field(b, e->company);
	put_field(b, e->client);
	put_field(b, e->category);
	put_field(b, e->priority);
	put_field(b, e->escalation);
	int n = snprintf(num, sizeof(num), "%d\t%.17g\t%.17g\t%" PRId64 "\t", e->resolved,
	                 e->resolution_hours, e->csat, e->created_ms);
	put(b, num, (size_t)n);
	put_field(b, e->assigned);
	if (!b->bad)
		b->len--; /* the line ends here: its last tab becomes the newline */
	put(b, "\n", 1);
	return b->bad ? CSA_ENOMEM : 0;
}

struct saver {
	struct sbuf b;
	size_t n;
};

static int save_counted(void *ctx, const struct csa_hist_entry *e, uint64_t sig)
{
	struct saver *sv = ctx;
	sv->n++;
	return save_one(&sv->b, e, sig);
}

int csa_history_save(struct csa_history *h, struct csa_ws *ws, struct csa_err *err)
{
	char path[PATH_SZ];
	csa_ws_path(ws, ".csa/history.idx", path, sizeof(path));
	/* The position first, then the stamp: when every commit since the
	 * load's mark was this handle's, and each was put by the tracking
	 * observer, the entries are the store as of that position. A commit
	 * by anyone else before or after the position clears only_own. */
	uint64_t pos = 0;
	struct csa_err ignored;
	/* The journal is checkpointed first: the close that follows a save
	 * would do it anyway, and its trim would move the position past the
	 * one saved (a failed checkpoint saves no position). */
	if (csa_history_tracking(h) && ws->store->ops->checkpoint(ws->store, &ignored) == CSA_OK) {
		int only_own = 0;
		uint64_t p = csa_store_position(ws->store);
		(void)csa_store_stamp(ws->store, CSA_MARK_HISTORY, &only_own);
		if (only_own && csa_history_tracking(h))
			pos = p;
	}
	struct saver sv = {0};
	int rc = csa_history_each(h, save_counted, &sv);
	char head[128];
	int hn = snprintf(head, sizeof(head), HEADER " %" PRId64 " %016" PRIx64 " %zu\n",
	                  (int64_t)(csa_now_ms() * 1000000LL), pos, sv.n);
	char *all = rc || sv.b.bad ? NULL : malloc((size_t)hn + sv.b.len);
	if (!all) {
		free(sv.b.p);
		return csa_error(err, CSA_ENOMEM, "out of memory saving '%s'", path);
	}
	memcpy(all, head, (size_t)hn);
	if (sv.b.len)
		memcpy(all + hn, sv.b.p, sv.b.len);
	free(sv.b.p);
	rc = csa_fs_write_atomic(path, all, (size_t)hn + sv.b.len, err);
	free(all);
	return rc;
}

/* ---- reading ------------------------------------------------------------ */

struct cached {
	const char *id;
	uint64_t sig;
	char *fields[FIELDS]; /* into the file's buffer, unescaped in place */
};

static void unescape(char *s)
{
	char *o = s;
	for (; *s; s++) {
		unsigned v;
		if (s[0] == '%' && s[1] && s[2] && sscanf(s + 1, "%2x", &v) == 1) {
			*o++ = (char)v;
			s += 2;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

static int cached_cmp(const void *a, const void *b)
{
	return strcmp(((const struct cached *)a)->id, ((const struct cached *)b)->id);
}

/* What the header of an index file says. */
struct header {
	int64_t written_ns;
	uint64_t position; /* 0: none (version 2, or not provably current) */
	size_t count;      /* entries the file holds (version 3) */
	int v3;
};

/* Parse the index file into entries sorted by id; a malformed line ends
 * the list (the rest is read from the files, and a list shorter than the
 * header's count is never taken as a whole). */
static struct cached *parse_index(char *buf, size_t len, struct header *hd, size_t *n_out)
{
	*n_out = 0;
	memset(hd, 0, sizeof(*hd));
	char *nl = memchr(buf, '\n', len);
	if (!nl)
		return NULL;
	*nl = '\0';
	if (strncmp(buf, HEADER " ", strlen(HEADER) + 1) == 0) {
		char *end;
		const char *f = buf + strlen(HEADER) + 1;
		hd->written_ns = strtoll(f, &end, 10);
		if (*end == ' ')
			hd->position = strtoull(end + 1, &end, 16);
		if (*end == ' ')
			hd->count = strtoull(end + 1, &end, 10);
		hd->v3 = *end == '\0';
		if (!hd->v3)
			hd->position = 0;
	} else if (strncmp(buf, HEADER_V2 " ", strlen(HEADER_V2) + 1) == 0) {
		hd->written_ns = strtoll(buf + strlen(HEADER_V2) + 1, NULL, 10);
	} else {
		return NULL;
	}
	size_t cap = 1024, n = 0;
	struct cached *v = malloc(cap * sizeof(*v));
	char *p = nl + 1, *end = buf + len;
	while (v && p < end) {
		char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			break;
		*eol = '\0';
		struct cached c;
		int k = 0;
		for (char *f = p; k < FIELDS; k++) {
			c.fields[k] = f;
			char *tab = strchr(f, '\t');
			if (!tab) {
				k++;
				break;
			}
			*tab = '\0';
			f = tab + 1;
		}
		p = eol + 1;
		if (k != FIELDS)
			break;
		for (int i = 0; i < FIELDS; i++)
			unescape(c.fields[i]);
		c.id = c.fields[0];
		c.sig = strtoull(c.fields[1], NULL, 16);
		if (n == cap) {
			struct cached *nv = realloc(v, (cap *= 2) * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		v[n++] = c;
	}
	if (v && n)
		qsort(v, n, sizeof(*v), cached_cmp);
	*n_out = n;
	return v;
}

static void copy(char *dst, size_t n, const char *src)
{
	snprintf(dst, n, "%s", src);
}

/* One ticket's entry, read by a loader thread. */
struct slot {
	struct csa_hist_entry e;
	uint64_t sig;
	int64_t newest;
	uint64_t gen; /* csa_history_verify: the entry's generation before the read */
	int ok;       /* 0: vanished or damaged (verify reports it), or unchanged */
	int cached;   /* taken from the index file */
};

/* A block of tickets shared by the loader threads. */
struct block {
	struct csa_ws *ws;
	char **ids;
	const struct cached *c;
	size_t nc;
	int64_t written;
	struct csa_history *h; /* csa_history_verify: the index checked */
	const atomic_int *stop;
	size_t lo, n;
	struct slot *out;
	_Atomic size_t next;
};

static int cached_find(const void *key, const void *elem)
{
	return strcmp(key, ((const struct cached *)elem)->id);
}

/* The numbers of a cached entry, each whole and in range; -1 when the
 * index file holds something else (damaged or edited): the entry is then
 * read from the ticket instead. */
static int cached_numbers(const struct cached *c, struct csa_hist_entry *e)
{
	char *end;
	errno = 0;
	long resolved = strtol(c->fields[7], &end, 10);
	if (end == c->fields[7] || *end || errno || resolved < INT_MIN || resolved > INT_MAX)
		return -1;
	e->resolved = (int)resolved;
	e->resolution_hours = strtod(c->fields[8], &end);
	if (end == c->fields[8] || *end || errno)
		return -1;
	e->csat = strtod(c->fields[9], &end);
	if (end == c->fields[9] || *end || errno)
		return -1;
	e->created_ms = strtoll(c->fields[10], &end, 10);
	if (end == c->fields[10] || *end || errno)
		return -1;
	return 0;
}

/* A cached line as an entry; -1 when its numbers are not whole. */
static int cached_entry(const struct cached *c, struct csa_hist_entry *e)
{
	memset(e, 0, sizeof(*e));
	if (cached_numbers(c, e))
		return -1;
	copy(e->id, sizeof(e->id), c->id);
	copy(e->company, sizeof(e->company), c->fields[2]);
	copy(e->client, sizeof(e->client), c->fields[3]);
	copy(e->category, sizeof(e->category), c->fields[4]);
	copy(e->priority, sizeof(e->priority), c->fields[5]);
	copy(e->escalation, sizeof(e->escalation), c->fields[6]);
	copy(e->assigned, sizeof(e->assigned), c->fields[11]);
	return 0;
}

/* The entry of ticket id from its T document (T alone holds what the
 * index needs); 0 when it vanished or is damaged: verify reports it. */
static int read_entry(struct csa_ws *ws, const char *id, struct csa_hist_entry *e)
{
	struct csa_ticket tk = {0};
	if (csa_store_load_doc(ws->store, id, CSA_DOC_T, &tk.t, NULL))
		return 0;
	snprintf(tk.id, sizeof(tk.id), "%s", id);
	csa_history_entry_from(&tk, e);
	json_decref(tk.t);
	return 1;
}

static void load_one(struct block *b, size_t i, struct slot *s)
{
	const char *id = b->ids[i];
	memset(s, 0, sizeof(*s));
	if (b->h) {
		/* verify: the generation, then the files' signature, then the
		 * read, so that a put or a commit after either makes the entry
		 * read here the older one (skipped) or read again next time */
		uint64_t have = 0;
		(void)csa_history_get_sig(b->h, id, &have, &s->gen);
		s->sig = csa_store_sig(b->ws->store, id, &s->newest);
		if (!s->sig || (have && have == s->sig))
			return; /* vanished, or unchanged since its entry was read */
		s->ok = read_entry(b->ws, id, &s->e);
		return;
	}
	s->sig = csa_store_sig(b->ws->store, id, &s->newest);
	const struct cached *c =
	    b->nc ? bsearch(id, b->c, b->nc, sizeof(*b->c), cached_find) : NULL;
	if (s->sig && c && c->sig == s->sig && s->newest < b->written - RACY_NS &&
	    cached_entry(c, &s->e) == 0) {
		s->ok = s->cached = 1;
		return;
	}
	/* a file changed since sig was taken is caught next time: its
	 * signature will differ */
	s->ok = read_entry(b->ws, id, &s->e);
}

static void *load_block(void *arg)
{
	struct block *b = arg;
	for (;;) {
		if (b->stop && atomic_load(b->stop))
			return NULL;
		size_t k = atomic_fetch_add(&b->next, 1);
		if (k >= b->n)
			return NULL;
		load_one(b, b->lo + k, &b->out[k]);
	}
}

/* Parsing 100,000 workflow files is the cost of a start without a usable
 * index: the files of a block are read by up to LOAD_THREADS threads, then
 * put in the index in id order. */
#define LOAD_BLOCK   4096
#define LOAD_THREADS 8

/* Read the tickets of the store into h, block by block: the per-ticket
 * load (b0.h NULL: every ticket, from the cache c where its signature
 * still holds) or the verification (b0.h: only what changed). */
static int each_ticket(struct csa_history *h, struct csa_ws *ws, struct block b0, int nthreads,
                       size_t *used, size_t *reread, struct csa_err *err)
{
	char **ids = NULL;
	size_t ni = 0;
	int rc = csa_store_ids(ws->store, &ids, &ni, err);
	struct slot *out = rc == CSA_OK && ni ? malloc(LOAD_BLOCK * sizeof(*out)) : NULL;
	if (rc == CSA_OK && ni && !out)
		rc = csa_error(err, CSA_ENOMEM, "out of memory indexing ticket history");
	for (size_t lo = 0; lo < ni && rc == CSA_OK; lo += LOAD_BLOCK) {
		if (b0.stop && atomic_load(b0.stop))
			break;
		struct block b = b0;
		b.ids = ids;
		b.lo = lo;
		b.n = ni - lo < LOAD_BLOCK ? ni - lo : LOAD_BLOCK;
		b.out = out;
		memset(out, 0, b.n * sizeof(*out)); /* a stop leaves slots unread */
		atomic_init(&b.next, 0);
		pthread_t th[LOAD_THREADS];
		int started = 0;
		while (started < nthreads - 1 &&
		       pthread_create(&th[started], NULL, load_block, &b) == 0)
			started++;
		load_block(&b);
		for (int t = 0; t < started; t++)
			pthread_join(th[t], NULL);
		int64_t now_ns = csa_now_ms() * 1000000LL;
		for (size_t k = 0; k < b.n && rc == CSA_OK; k++) {
			struct slot *s = &out[k];
			if (!s->ok)
				continue;
			/* a signature is kept only once settled: a change within
			 * the clock's granularity could keep it */
			uint64_t sig = s->newest < now_ns - RACY_NS ? s->sig : 0;
			int skipped = 0, prc;
			if (b0.h)
				prc = csa_history_put_if(h, &s->e, sig, s->gen, &skipped);
			else
				prc = csa_history_put_sig(h, &s->e, sig);
			if (prc)
				rc = csa_error(err, CSA_ENOMEM,
				               "out of memory indexing ticket history");
			if (used)
				*used += s->cached;
			if (reread && !s->cached && !skipped)
				++*reread;
		}
	}
	csa_store_ids_free(ids, ni);
	free(out);
	return rc;
}

static int cpu_threads(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return cpus < 1 ? 1 : cpus > LOAD_THREADS ? LOAD_THREADS : (int)cpus;
}

/* Every entry of a file whose position is the store's, all or none: a
 * file cut short or damaged is no proof of anything. */
static int take_whole(struct csa_history *h, const struct cached *c, size_t nc,
                      const struct header *hd)
{
	if (nc != hd->count)
		return -1;
	struct csa_hist_entry *v = nc ? malloc(nc * sizeof(*v)) : NULL;
	if (nc && !v)
		return -1;
	for (size_t i = 0; i < nc; i++)
		if ((i && strcmp(c[i - 1].id, c[i].id) == 0) || cached_entry(&c[i], &v[i])) {
			free(v);
			return -1;
		}
	for (size_t i = 0; i < nc; i++)
		if (csa_history_put_sig(h, &v[i], c[i].sig)) {
			free(v);
			return -2;
		}
	free(v);
	return 0;
}

int csa_history_load(struct csa_history *h, struct csa_ws *ws, size_t *reused, int *by_position,
                     struct csa_err *err)
{
	if (reused)
		*reused = 0;
	if (by_position)
		*by_position = 0;
	/* Tracking before the mark: from the mark on, every commit is either
	 * this handle's, and put by the observer, or clears the stamp's
	 * only_own, and csa_history_save then writes no position. Without a
	 * free observer slot the index is loaded all the same. */
	(void)csa_history_track(h, ws->store);
	csa_store_mark(ws->store, CSA_MARK_HISTORY);
	uint64_t pos = csa_store_position(ws->store);
	char path[PATH_SZ];
	csa_ws_path(ws, ".csa/history.idx", path, sizeof(path));
	char *buf = NULL;
	size_t len = 0, nc = 0, used = 0;
	struct header hd = {0};
	struct cached *c = NULL;
	if (csa_fs_read_all(path, MAX_INDEX, &buf, &len, NULL) == CSA_OK)
		c = parse_index(buf, len, &hd, &nc);
	int rc = CSA_OK;
	/* No commit by anyone since the file was written: its entries are
	 * the store as it is, without a look at any ticket. A file edited in
	 * place by hand is no commit: csa_history_verify() finds it. */
	int whole = pos && hd.v3 && hd.position == pos ? take_whole(h, c, nc, &hd) : -1;
	if (whole == -2) {
		rc = csa_error(err, CSA_ENOMEM, "out of memory indexing ticket history");
	} else if (whole == 0) {
		used = nc;
		if (by_position)
			*by_position = 1;
	} else {
		struct block b0 = {.ws = ws, .c = c, .nc = c ? nc : 0, .written = hd.written_ns};
		rc = each_ticket(h, ws, b0, cpu_threads(), &used, NULL, err);
	}
	free(c);
	free(buf);
	if (reused)
		*reused = used;
	return rc;
}

int csa_history_verify(struct csa_history *h, struct csa_ws *ws, int threads,
                       const atomic_int *stop, size_t *reread, struct csa_err *err)
{
	if (reread)
		*reread = 0;
	struct block b0 = {.ws = ws, .h = h, .stop = stop};
	return each_ticket(h, ws, b0, threads > 0 ? threads : cpu_threads(), NULL, reread, err);
}
