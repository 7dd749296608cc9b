/* The tickets' own KPIs, kept by id between scans (ticket_kpis.h). */
#include "automation/ticket_kpis.h"
#include "base/fsops.h"
#include "base/hash.h"
#include "base/ids.h"
#include "base/ts.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A scan at least this often, even when every commit since the last one
 * was this handle's: a document edited in place by hand is no commit. */
#define RESCAN_NS (300LL * 1000000000LL)
#define HEADER    "csa-kpis 1"
#define MAX_FILE  ((size_t)1 << 30)

/* One ticket's figures; -1 where its document has none. */
struct rec {
	char *id;
	double frt, res, csat;
	int resolved;
	uint64_t gen; /* the commit that put it (0: a scan or the saved file) */
};

/* Records by id: open addressing over v, slots hold index + 1. */
struct table {
	struct rec *v;
	size_t n, cap;
	size_t *slots;
	size_t nslots;
};

struct csa_ticket_kpis {
	struct csa_store *st;
	int observing;
	/* one scan (and one sum) at a time; taken before mu */
	pthread_mutex_t scan_mu;
	/* what follows: commits put under it, briefly */
	pthread_mutex_t mu;
	struct table t;
	size_t *order; /* indexes into t.v by id, when order_ok */
	int order_ok;
	uint64_t gen;  /* commits put so far */
	int built;     /* t holds a scan and every commit since */
	int lost;      /* a commit could not be put: scan again */
	int64_t built_ns;
	unsigned long scans;
	char *path;        /* the file kept between runs, or NULL */
	uint64_t open_pos; /* the store's position at open (0: unknown) */
	int file_tried;    /* the file was considered (once, at the first sum) */
};

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].id);
	free(t->v);
	free(t->slots);
	memset(t, 0, sizeof(*t));
}

static size_t slot_of(const struct table *t, const char *id)
{
	size_t mask = t->nslots - 1, s = (size_t)csa_fnv1a_str(CSA_FNV_SEED, id) & mask;
	while (t->slots[s] && strcmp(t->v[t->slots[s] - 1].id, id) != 0)
		s = (s + 1) & mask;
	return s;
}

static int rehash(struct table *t, size_t nslots)
{
	size_t *slots = calloc(nslots, sizeof(*slots));
	if (!slots)
		return -1;
	free(t->slots);
	t->slots = slots;
	t->nslots = nslots;
	for (size_t i = 0; i < t->n; i++)
		t->slots[slot_of(t, t->v[i].id)] = i + 1;
	return 0;
}

/* Put r (its id copied) in place of the record of its id, or as a new
 * one (*added 1); -1 out of memory. */
static int table_put(struct table *t, const struct rec *r, int *added)
{
	*added = 0;
	if ((t->n + 1) * 2 > t->nslots && rehash(t, t->nslots ? t->nslots * 2 : 1024))
		return -1;
	size_t s = slot_of(t, r->id);
	if (t->slots[s]) {
		struct rec *old = &t->v[t->slots[s] - 1];
		char *id = old->id;
		*old = *r;
		old->id = id;
		return 0;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 1024;
		struct rec *nv = realloc(t->v, cap * sizeof(*nv));
		if (!nv)
			return -1;
		t->v = nv;
		t->cap = cap;
	}
	char *id = strdup(r->id);
	if (!id)
		return -1;
	t->v[t->n] = *r;
	t->v[t->n].id = id;
	t->slots[s] = ++t->n;
	*added = 1;
	return 0;
}

/* A figure of sla_metrics as the stored document gives it back; -1 when
 * it is not a number, *ok 0 when it would not read back. */
static double figure(const json_t *m, const char *key, int *ok)
{
	json_t *v = json_object_get(m, key);
	if (!json_is_number(v))
		return -1;
	double x = json_number_value(v);
	if (json_is_real(v) && !csa_store_real_read_back(x, &x))
		*ok = 0;
	return x;
}

/* The figures of a ticket's T; 0 when one would not read back. */
static int figures_of(const char *id, const json_t *t, struct rec *r)
{
	const json_t *m = json_object_get(t, "sla_metrics");
	int ok = 1;
	r->id = (char *)id;
	r->resolved = json_is_true(json_object_get(t, "resolved"));
	r->frt = figure(m, "first_response_time", &ok);
	r->res = figure(m, "resolution_time", &ok);
	r->csat = figure(m, "customer_satisfaction", &ok);
	r->gen = 0;
	return ok;
}

static void on_commit(void *ctx, struct csa_ticket *const *tks, size_t n)
{
	struct csa_ticket_kpis *k = ctx;
	pthread_mutex_lock(&k->mu);
	for (size_t i = 0; i < n; i++) {
		struct rec r;
		int added;
		if (!figures_of(tks[i]->id, tks[i]->t, &r)) {
			k->lost = 1;
			continue;
		}
		r.gen = ++k->gen;
		if (table_put(&k->t, &r, &added))
			k->lost = 1;
		else if (added)
			k->order_ok = 0;
	}
	pthread_mutex_unlock(&k->mu);
}

int csa_ticket_kpis_open(struct csa_store *st, const char *path, struct csa_ticket_kpis **out,
                         struct csa_err *err)
{
	struct csa_ticket_kpis *k = calloc(1, sizeof(*k));
	if (!k || (path && !(k->path = strdup(path)))) {
		free(k);
		return csa_error(err, CSA_ENOMEM, "out of memory for the tickets' KPIs");
	}
	k->st = st;
	pthread_mutex_init(&k->scan_mu, NULL);
	pthread_mutex_init(&k->mu, NULL);
	k->observing = csa_store_observe(st, on_commit, k) == CSA_OK;
	/* Observing before the mark: from here on every commit is either
	 * this handle's, and put, or clears the stamp's only_own. The
	 * position says whether the file of the last run is the store now. */
	if (k->observing && k->path) {
		csa_store_mark(st, CSA_MARK_KPIS);
		k->open_pos = csa_store_position(st);
	}
	*out = k;
	return CSA_OK;
}

static int by_id(const void *a, const void *b, void *ctx);

/* Indexes of t's records in id order into k->order. Caller holds mu, or
 * is alone with k (close). */
static int sort_order(struct csa_ticket_kpis *k)
{
	if (k->order_ok)
		return 0;
	size_t *order = realloc(k->order, (k->t.n ? k->t.n : 1) * sizeof(*order));
	if (!order)
		return -1;
	for (size_t i = 0; i < k->t.n; i++)
		order[i] = i;
	qsort_r(order, k->t.n, sizeof(*order), by_id, k->t.v);
	k->order = order;
	k->order_ok = 1;
	return 0;
}

/*
 * The figures for the next run, when they are provably the store's: every
 * commit since the last scan (or load) was this handle's, and the
 * position is taken after a checkpoint, as the store's close would make
 * one and move it. Best effort: without the file the next run scans.
 */
static void save(struct csa_ticket_kpis *k)
{
	struct csa_err ignored;
	if (!k->path || !k->observing || !k->built || k->lost ||
	    k->st->ops->checkpoint(k->st, &ignored) != CSA_OK)
		return;
	uint64_t pos = csa_store_position(k->st);
	int only_own = 0;
	(void)csa_store_stamp(k->st, CSA_MARK_KPIS, &only_own);
	if (!pos || !only_own || sort_order(k))
		return;
	/* a line: an id of at most 64 bytes, a flag and three %.17g numbers */
	size_t cap = 64 + k->t.n * 160, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		return;
	len += (size_t)snprintf(buf, cap, HEADER " %016" PRIx64 " %zu\n", pos, k->t.n);
	for (size_t i = 0; i < k->t.n; i++) {
		const struct rec *r = &k->t.v[k->order[i]];
		int w = snprintf(buf + len, cap - len, "%s\t%d\t%.17g\t%.17g\t%.17g\n", r->id,
		                 r->resolved, r->frt, r->res, r->csat);
		if (w < 0 || (size_t)w >= cap - len) {
			free(buf);
			return;
		}
		len += (size_t)w;
	}
	(void)csa_fs_write_atomic(k->path, buf, len, &ignored);
	free(buf);
}

void csa_ticket_kpis_close(struct csa_ticket_kpis *k)
{
	if (!k)
		return;
	save(k);
	if (k->observing)
		csa_store_unobserve(k->st, on_commit, k);
	table_free(&k->t);
	free(k->order);
	free(k->path);
	pthread_mutex_destroy(&k->scan_mu);
	pthread_mutex_destroy(&k->mu);
	free(k);
}

/* A number of a saved line: finite, the rest of the field empty. */
static int saved_number(char **p, char end, double *out)
{
	char *e;
	*out = strtod(*p, &e);
	if (e == *p || *e != end || !isfinite(*out))
		return -1;
	*p = e + 1;
	return 0;
}

/*
 * The saved file's records into *t, when its header names position pos and
 * every line is whole: ids valid and in strictly increasing order, as
 * many as the header says. -1 otherwise (a file cut short or damaged is no
 * proof of anything: the caller scans).
 */
static int load_file(const char *path, uint64_t pos, struct table *t)
{
	char *buf;
	size_t len;
	if (csa_fs_read_all(path, MAX_FILE, &buf, &len, NULL) != CSA_OK)
		return -1;
	uint64_t fpos = 0;
	size_t count = 0;
	int off = 0, rc = -1;
	if (sscanf(buf, HEADER " %" SCNx64 " %zu\n%n", &fpos, &count, &off) != 2 || !off ||
	    fpos != pos)
		goto out;
	char *p = buf + off, *prev = NULL;
	size_t n = 0;
	while (*p) {
		struct rec r = {0};
		char *tab = strchr(p, '\t');
		if (!tab || csa_id_check(p, (size_t)(tab - p), NULL))
			goto out;
		*tab = '\0';
		r.id = p;
		if (prev && strcmp(prev, p) >= 0)
			goto out;
		prev = p;
		p = tab + 1;
		if ((p[0] != '0' && p[0] != '1') || p[1] != '\t')
			goto out;
		r.resolved = p[0] == '1';
		p += 2;
		int added;
		if (saved_number(&p, '\t', &r.frt) || saved_number(&p, '\t', &r.res) ||
		    saved_number(&p, '\n', &r.csat) || table_put(t, &r, &added))
			goto out;
		n++;
	}
	rc = n == count ? 0 : -1;
out:
	free(buf);
	return rc;
}

struct scan {
	struct table t;
	int nomem;
};

static int scan_one(void *ctx, const char *id, const json_t *t, const char *status)
{
	(void)status;
	struct scan *s = ctx;
	struct rec r;
	int added;
	/* a number that would not read back does not reach a document */
	figures_of(id, t, &r);
	if (table_put(&s->t, &r, &added)) {
		s->nomem = 1;
		return 1;
	}
	return 0;
}

/*
 * Every ticket's figures read again. The mark comes first, so a commit by
 * anyone else during the scan shows at the next stamp. Commits of this
 * handle during the scan are put as usual, and win over what the scan read
 * of their tickets, which may be older. Caller holds scan_mu.
 */
static int rescan(struct csa_ticket_kpis *k, struct csa_err *err)
{
	pthread_mutex_lock(&k->mu);
	uint64_t start = k->gen;
	k->lost = 0;
	pthread_mutex_unlock(&k->mu);
	csa_store_mark(k->st, CSA_MARK_KPIS);
	struct scan s = {0};
	int rc = csa_store_scan(k->st, NULL, scan_one, &s, err);
	if (s.nomem)
		rc = csa_error(err, CSA_ENOMEM, "out of memory reading the tickets' KPIs");
	pthread_mutex_lock(&k->mu);
	k->scans++;
	for (size_t i = 0; rc == CSA_OK && i < k->t.n; i++) {
		int added;
		if (k->t.v[i].gen > start && table_put(&s.t, &k->t.v[i], &added))
			rc = csa_error(err, CSA_ENOMEM, "out of memory reading the tickets' KPIs");
	}
	if (rc == CSA_OK) {
		table_free(&k->t);
		k->t = s.t;
		k->order_ok = 0;
		k->built = 1;
		k->built_ns = csa_mono_ns();
	} else {
		table_free(&s.t);
		k->built = 0;
	}
	pthread_mutex_unlock(&k->mu);
	return rc;
}

/*
 * The last run's figures, when no one but this handle committed since it
 * saved them (the position at open is the file's, and the stamp says
 * only this handle's commits came after): this handle's commits since
 * open are newer and win. 1 when taken. Caller holds scan_mu.
 */
static int from_file(struct csa_ticket_kpis *k)
{
	struct table t = {0};
	if (load_file(k->path, k->open_pos, &t)) {
		table_free(&t);
		return 0;
	}
	pthread_mutex_lock(&k->mu);
	int ok = !k->lost;
	for (size_t i = 0; ok && i < k->t.n; i++) {
		int added;
		ok = table_put(&t, &k->t.v[i], &added) == 0;
	}
	if (ok) {
		table_free(&k->t);
		k->t = t;
		k->order_ok = 0;
		k->built = 1;
		k->built_ns = csa_mono_ns();
	} else {
		table_free(&t);
	}
	pthread_mutex_unlock(&k->mu);
	return ok;
}

static int by_id(const void *a, const void *b, void *ctx)
{
	const struct rec *v = ctx;
	return strcmp(v[*(const size_t *)a].id, v[*(const size_t *)b].id);
}

int csa_ticket_kpis_totals(struct csa_ticket_kpis *k, struct csa_kpi_totals *out,
                           struct csa_err *err)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&k->scan_mu);
	int only_own = 0;
	(void)csa_store_stamp(k->st, CSA_MARK_KPIS, &only_own);
	pthread_mutex_lock(&k->mu);
	int stale = !k->observing || !k->built || k->lost || !only_own ||
	            csa_mono_ns() - k->built_ns >= RESCAN_NS;
	pthread_mutex_unlock(&k->mu);
	if (stale && !k->file_tried) {
		k->file_tried = 1;
		stale = !(only_own && k->open_pos && from_file(k));
	}
	int rc = stale ? rescan(k, err) : CSA_OK;
	pthread_mutex_lock(&k->mu);
	if (rc == CSA_OK && sort_order(k))
		rc = csa_error(err, CSA_ENOMEM, "out of memory summing the tickets' KPIs");
	/* in id order, as a scan adds them: the same sums to the last bit */
	for (size_t i = 0; rc == CSA_OK && i < k->t.n; i++) {
		const struct rec *r = &k->t.v[k->order[i]];
		out->tickets++;
		out->resolved += r->resolved;
		if (r->frt >= 0)
			out->frt_sum += r->frt, out->frt_n++;
		if (r->res >= 0)
			out->res_sum += r->res, out->res_n++;
		if (r->csat >= 1)
			out->csat_sum += r->csat, out->csat_n++;
	}
	pthread_mutex_unlock(&k->mu);
	pthread_mutex_unlock(&k->scan_mu);
	return rc;
}

unsigned long csa_ticket_kpis_scans(struct csa_ticket_kpis *k)
{
	pthread_mutex_lock(&k->mu);
	unsigned long n = k->scans;
	pthread_mutex_unlock(&k->mu);
	return n;
}
