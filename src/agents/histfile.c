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

#define HEADER    "csa-history 2" /* 2: the assigned member after created_ms */
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
	if (!sig)
		return 0; /* changed in this run: read from its files next time */
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

int csa_history_save(struct csa_history *h, struct csa_ws *ws, struct csa_err *err)
{
	char path[PATH_SZ];
	csa_ws_path(ws, ".csa/history.idx", path, sizeof(path));
	struct sbuf b = {0};
	char head[64];
	int n = snprintf(head, sizeof(head), HEADER " %" PRId64 "\n",
	                 (int64_t)(csa_now_ms() * 1000000LL));
	put(&b, head, (size_t)n);
	int rc = csa_history_each(h, save_one, &b);
	if (rc || b.bad) {
		free(b.p);
		return csa_error(err, CSA_ENOMEM, "out of memory saving '%s'", path);
	}
	rc = csa_fs_write_atomic(path, b.p, b.len, err);
	free(b.p);
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

/* Parse the index file into entries sorted by id; a malformed line ends
 * the list (the rest is read from the files). */
static struct cached *parse_index(char *buf, size_t len, int64_t *written_ns, size_t *n_out)
{
	*n_out = 0;
	char *nl = memchr(buf, '\n', len);
	if (!nl || strncmp(buf, HEADER " ", strlen(HEADER) + 1) != 0)
		return NULL;
	*nl = '\0';
	*written_ns = strtoll(buf + strlen(HEADER) + 1, NULL, 10);
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
	int ok;     /* 0: vanished or damaged (verify reports it) */
	int cached; /* taken from the index file */
};

/* A block of tickets shared by the loader threads. */
struct block {
	struct csa_ws *ws;
	size_t max_doc; /* limits.max_document_bytes */
	char **ids;
	const struct cached *c;
	size_t nc;
	int64_t written;
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

static void load_one(struct block *b, size_t i, struct slot *s)
{
	const char *id = b->ids[i];
	memset(s, 0, sizeof(*s));
	s->sig = csa_store_sig(b->ws->store, id, &s->newest);
	const struct cached *c =
	    b->nc ? bsearch(id, b->c, b->nc, sizeof(*b->c), cached_find) : NULL;
	struct csa_hist_entry *e = &s->e;
	if (s->sig && c && c->sig == s->sig && s->newest < b->written - RACY_NS &&
	    cached_numbers(c, e) == 0) {
		copy(e->id, sizeof(e->id), id);
		copy(e->company, sizeof(e->company), c->fields[2]);
		copy(e->client, sizeof(e->client), c->fields[3]);
		copy(e->category, sizeof(e->category), c->fields[4]);
		copy(e->priority, sizeof(e->priority), c->fields[5]);
		copy(e->escalation, sizeof(e->escalation), c->fields[6]);
		copy(e->assigned, sizeof(e->assigned), c->fields[11]);
		s->ok = s->cached = 1;
		return;
	}
	/* T alone holds what the index needs */
	struct csa_ticket tk = {0};
	if (csa_store_load_doc(b->ws->store, id, CSA_DOC_T, &tk.t, NULL))
		return; /* vanished or damaged: verify reports it */
	snprintf(tk.id, sizeof(tk.id), "%s", id);
	csa_history_entry_from(&tk, e);
	json_decref(tk.t);
	/* a file changed since sig was taken is caught next time: its
	 * signature will differ */
	s->ok = 1;
}

static void *load_block(void *arg)
{
	struct block *b = arg;
	for (;;) {
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

int csa_history_load(struct csa_history *h, struct csa_ws *ws, size_t *reused, struct csa_err *err)
{
	char path[PATH_SZ];
	csa_ws_path(ws, ".csa/history.idx", path, sizeof(path));
	char *buf = NULL;
	size_t len = 0, nc = 0, ni = 0, used = 0;
	int64_t written = 0;
	struct cached *c = NULL;
	if (csa_fs_read_all(path, MAX_INDEX, &buf, &len, NULL) == CSA_OK)
		c = parse_index(buf, len, &written, &nc);
	char **ids = NULL;
	int rc = csa_store_ids(ws->store, &ids, &ni, err);
	struct slot *out = rc == CSA_OK && ni ? malloc(LOAD_BLOCK * sizeof(*out)) : NULL;
	if (rc == CSA_OK && ni && !out)
		rc = csa_error(err, CSA_ENOMEM, "out of memory indexing ticket history");
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int nthreads = cpus < 1 ? 1 : cpus > LOAD_THREADS ? LOAD_THREADS : (int)cpus;
	const struct csa_config *cfg = csa_ws_config(ws);
	size_t max_doc = cfg->limits.max_document_bytes;
	csa_config_unref(cfg);
	for (size_t lo = 0; lo < ni && rc == CSA_OK; lo += LOAD_BLOCK) {
		struct block b = {.ws = ws,
		                  .max_doc = max_doc,
		                  .ids = ids,
		                  .c = c,
		                  .nc = c ? nc : 0,
		                  .written = written,
		                  .lo = lo,
		                  .n = ni - lo < LOAD_BLOCK ? ni - lo : LOAD_BLOCK,
		                  .out = out};
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
			used += s->cached;
			if (csa_history_put_sig(h, &s->e,
			                        s->newest < now_ns - RACY_NS ? s->sig : 0))
				rc = csa_error(err, CSA_ENOMEM,
				               "out of memory indexing ticket history");
		}
	}
	csa_store_ids_free(ids, ni);
	free(out);
	free(c);
	free(buf);
	if (reused)
		*reused = used;
	return rc;
}
