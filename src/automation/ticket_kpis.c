/* The tickets' own KPIs, kept by id between scans (ticket_kpis.h). */
#include "automation/ticket_kpis.h"
#include "base/hash.h"
#include "base/ts.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A scan at least this often, even when every commit since the last one
 * was this handle's: a document edited in place by hand is no commit. */
#define RESCAN_NS (300LL * 1000000000LL)

/* One ticket's figures; -1 where its document has none. */
struct rec {
	char *id;
	double frt, res, csat;
	int resolved;
	uint64_t gen; /* the commit that put it (0: a scan) */
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

int csa_ticket_kpis_open(struct csa_store *st, struct csa_ticket_kpis **out, struct csa_err *err)
{
	struct csa_ticket_kpis *k = calloc(1, sizeof(*k));
	if (!k)
		return csa_error(err, CSA_ENOMEM, "out of memory for the tickets' KPIs");
	k->st = st;
	pthread_mutex_init(&k->scan_mu, NULL);
	pthread_mutex_init(&k->mu, NULL);
	k->observing = csa_store_observe(st, on_commit, k) == CSA_OK;
	*out = k;
	return CSA_OK;
}

void csa_ticket_kpis_close(struct csa_ticket_kpis *k)
{
	if (!k)
		return;
	if (k->observing)
		csa_store_unobserve(k->st, on_commit, k);
	table_free(&k->t);
	free(k->order);
	pthread_mutex_destroy(&k->scan_mu);
	pthread_mutex_destroy(&k->mu);
	free(k);
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
	int rc = stale ? rescan(k, err) : CSA_OK;
	pthread_mutex_lock(&k->mu);
	if (rc == CSA_OK && !k->order_ok) {
		size_t *order = realloc(k->order, (k->t.n ? k->t.n : 1) * sizeof(*order));
		if (!order) {
			rc = csa_error(err, CSA_ENOMEM, "out of memory summing the tickets' KPIs");
		} else {
			for (size_t i = 0; i < k->t.n; i++)
				order[i] = i;
			qsort_r(order, k->t.n, sizeof(*order), by_id, k->t.v);
			k->order = order;
			k->order_ok = 1;
		}
	}
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
