/* The customer history index. */
#include "agents/history.h"
#include "base/hash.h"
#include "base/json.h"
#include "base/ts.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A growing list of entry indexes, in insertion order. */
struct ivec {
	size_t *v;
	size_t n, cap;
};

/* How many of a customer's newest entries a group keeps at hand: the five
 * csa_history_customer shows, and one more for the ticket it excludes. */
enum { NEWEST = 6 };

/* The entries of one key, in insertion order. For a customer also the
 * totals csa_history_customer answers with and its newest entries, kept
 * current on every put, so that a question costs the same for a customer
 * with 10 tickets and one with 100,000. */
struct group {
	struct ivec l;
	size_t open, escalated, ncsat;
	int64_t csat_milli;    /* sum of CSAT in thousandths: no drift as entries come and go */
	size_t newest[NEWEST]; /* entry indexes, newest first */
	int nnewest;
	int newest_stale; /* one of them left the group: rebuilt from l when next read */
};

/* String key -> group, open addressing (customer or category -> entries),
 * so a lookup reads one customer's or one category's entries, not them all. */
struct kmap {
	char **keys;
	struct group *vals;
	size_t nslots, n;
};

/* An entry as kept: the strings that repeat across tickets (company,
 * client, category) point into a pool, so 100,000 tickets take a few MB
 * rather than the fixed-size buffers of struct csa_hist_entry. */
struct rec {
	char *id;                                /* owned */
	const char *company, *client, *category; /* pooled, "" when unknown */
	const char *assigned;                    /* pooled, "" when nobody */
	char priority[12];
	char escalation[16];
	int resolved;
	double resolution_hours, csat;
	int64_t created_ms;
	uint64_t sig; /* of the files it was read from (csa_mesh_files_sig), 0: unknown */
	uint64_t gen; /* the put that wrote it (csa_history_put_if) */
};

struct csa_history {
	pthread_mutex_t mu;
	struct kmap pool; /* interned strings: the keys; values unused */
	struct rec *v;
	size_t n, cap;
	/* id -> index, open addressing */
	size_t *slots;
	size_t nslots;
	struct kmap by_company, by_client, resolved_by_category;
	struct kmap resolved_by_category_priority; /* key: category US priority */
	struct ivec resolved;                      /* every resolved entry */
	uint64_t puts;                             /* puts so far: the next entry's gen */
	struct csa_store *tracked;                 /* csa_history_track */
	int lost;                                  /* a tracked commit found no memory */
};

static uint64_t hash(const char *s)
{
	return csa_fnv1a_str(CSA_FNV_SEED_V1, s);
}

static int ivec_push(struct ivec *v, size_t x)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 8;
		size_t *nv = realloc(v->v, cap * sizeof(*nv));
		if (!nv)
			return CSA_ENOMEM;
		v->v = nv;
		v->cap = cap;
	}
	v->v[v->n++] = x;
	return CSA_OK;
}

static void ivec_remove(struct ivec *v, size_t x)
{
	for (size_t i = 0; v && i < v->n; i++)
		if (v->v[i] == x) {
			memmove(&v->v[i], &v->v[i + 1], (v->n - i - 1) * sizeof(v->v[0]));
			v->n--;
			return;
		}
}

static int kmap_grow(struct kmap *m)
{
	size_t ns = m->nslots ? m->nslots * 2 : 256;
	char **keys = calloc(ns, sizeof(*keys));
	struct group *vals = calloc(ns, sizeof(*vals));
	if (!keys || !vals) {
		free(keys);
		free(vals);
		return CSA_ENOMEM;
	}
	for (size_t i = 0; i < m->nslots; i++) {
		if (!m->keys[i])
			continue;
		size_t k = hash(m->keys[i]) & (ns - 1);
		while (keys[k])
			k = (k + 1) & (ns - 1);
		keys[k] = m->keys[i];
		vals[k] = m->vals[i];
	}
	free(m->keys);
	free(m->vals);
	m->keys = keys;
	m->vals = vals;
	m->nslots = ns;
	return CSA_OK;
}

/* The group of a key; created when 'create' (NULL when absent or out of
 * memory). Empty keys have no group. */
static struct group *kmap_get(struct kmap *m, const char *key, int create)
{
	if (!key || !*key)
		return NULL;
	if (create && (m->n + 1) * 2 > m->nslots && kmap_grow(m))
		return NULL;
	if (!m->nslots)
		return NULL;
	size_t k = hash(key) & (m->nslots - 1);
	while (m->keys[k]) {
		if (strcmp(m->keys[k], key) == 0)
			return &m->vals[k];
		k = (k + 1) & (m->nslots - 1);
	}
	if (!create || !(m->keys[k] = strdup(key)))
		return NULL;
	m->n++;
	return &m->vals[k];
}

/* The pooled copy of 's' ("" for empty), NULL when out of memory. */
static const char *intern(struct kmap *pool, const char *s)
{
	if (!*s)
		return "";
	struct group *g = kmap_get(pool, s, 1);
	return g ? pool->keys[g - pool->vals] : NULL;
}

static void kmap_free(struct kmap *m)
{
	for (size_t i = 0; i < m->nslots; i++) {
		free(m->keys[i]);
		free(m->vals[i].l.v);
	}
	free(m->keys);
	free(m->vals);
}

int csa_history_new(struct csa_history **out)
{
	struct csa_history *h = calloc(1, sizeof(*h));
	if (!h)
		return CSA_ENOMEM;
	pthread_mutex_init(&h->mu, NULL);
	*out = h;
	return CSA_OK;
}

static void on_commit(void *ctx, struct csa_ticket *const *tks, size_t n);

void csa_history_free(struct csa_history *h)
{
	if (!h)
		return;
	if (h->tracked)
		csa_store_unobserve(h->tracked, on_commit, h);
	pthread_mutex_destroy(&h->mu);
	kmap_free(&h->by_company);
	kmap_free(&h->by_client);
	kmap_free(&h->resolved_by_category);
	kmap_free(&h->resolved_by_category_priority);
	kmap_free(&h->pool);
	free(h->resolved.v);
	for (size_t i = 0; i < h->n; i++)
		free(h->v[i].id);
	free(h->v);
	free(h->slots);
	free(h);
}

size_t csa_history_count(const struct csa_history *h)
{
	return h->n;
}

static int rehash(struct csa_history *h, size_t nslots)
{
	size_t *s = malloc(nslots * sizeof(*s));
	if (!s)
		return CSA_ENOMEM;
	for (size_t i = 0; i < nslots; i++)
		s[i] = SIZE_MAX;
	for (size_t i = 0; i < h->n; i++) {
		size_t k = hash(h->v[i].id) & (nslots - 1);
		while (s[k] != SIZE_MAX)
			k = (k + 1) & (nslots - 1);
		s[k] = i;
	}
	free(h->slots);
	h->slots = s;
	h->nslots = nslots;
	return CSA_OK;
}

static size_t find(const struct csa_history *h, const char *id)
{
	if (!h->nslots)
		return SIZE_MAX;
	size_t k = hash(id) & (h->nslots - 1);
	while (h->slots[k] != SIZE_MAX) {
		if (strcmp(h->v[h->slots[k]].id, id) == 0)
			return h->slots[k];
		k = (k + 1) & (h->nslots - 1);
	}
	return SIZE_MAX;
}

/* Entry i before entry j among a customer's newest: later created, then
 * the one indexed first. */
static int newer(const struct csa_history *h, size_t i, size_t j)
{
	int64_t a = h->v[i].created_ms, b = h->v[j].created_ms;
	return a != b ? a > b : i < j;
}

static void newest_offer(const struct csa_history *h, struct group *g, size_t i)
{
	if (g->newest_stale)
		return;
	int k = g->nnewest;
	while (k > 0 && newer(h, i, g->newest[k - 1]))
		k--;
	if (k == NEWEST)
		return;
	int keep = g->nnewest < NEWEST ? g->nnewest : NEWEST - 1;
	memmove(&g->newest[k + 1], &g->newest[k], (size_t)(keep - k) * sizeof(g->newest[0]));
	g->newest[k] = i;
	g->nnewest = keep + 1;
}

static void newest_rebuild(const struct csa_history *h, struct group *g)
{
	g->nnewest = 0;
	g->newest_stale = 0;
	for (size_t j = 0; j < g->l.n; j++)
		newest_offer(h, g, g->l.v[j]);
}

static void newest_drop(struct group *g, size_t i)
{
	for (int k = 0; k < g->nnewest; k++)
		g->newest_stale |= g->newest[k] == i;
}

/* Add (sign 1) or take away (-1) an entry's share of a customer's totals. */
static void group_count(struct group *g, const struct rec *r, int sign)
{
	g->open += (size_t)(sign * !r->resolved);
	g->escalated += (size_t)(sign * (r->escalation[0] && strcmp(r->escalation, "NONE") != 0));
	if (r->csat >= 1) {
		g->ncsat += (size_t)sign;
		g->csat_milli += sign * llround(r->csat * 1000);
	}
}

/* Move entry i (now 'e') from its customer group under old_key, as 'old'
 * (NULL: a new entry), to the one under key, keeping the totals and the
 * newest current. Keys are pooled: the same key is the same pointer. */
static int move_customer(struct csa_history *h, struct kmap *m, size_t i, const struct rec *old,
                         const char *old_key, const struct rec *e, const char *key)
{
	struct group *g = old ? kmap_get(m, old_key, 0) : NULL;
	int same = g && old_key == key;
	if (g) {
		group_count(g, old, -1);
		if (!same)
			ivec_remove(&g->l, i);
		if (!same || old->created_ms != e->created_ms)
			newest_drop(g, i);
	}
	if (!key[0])
		return CSA_OK;
	if (!same && (!(g = kmap_get(m, key, 1)) || ivec_push(&g->l, i)))
		return CSA_ENOMEM;
	group_count(g, e, 1);
	if (!same || old->created_ms != e->created_ms)
		newest_offer(h, g, i);
	return CSA_OK;
}

/* The key of resolved_by_category_priority. */
static void cat_pri_key(char *out, size_t n, const char *category, const char *priority)
{
	snprintf(out, n, "%s\x1f%s", category, priority);
}

/* Move entry i from the lists of 'old' (NULL: a new entry) to those of 'e';
 * h->v[i] already holds e. */
static int reindex(struct csa_history *h, size_t i, const struct rec *old, const struct rec *e)
{
	int rc = CSA_OK;
	if (move_customer(h, &h->by_company, i, old, old ? old->company : NULL, e, e->company) ||
	    move_customer(h, &h->by_client, i, old, old ? old->client : NULL, e, e->client))
		rc = CSA_ENOMEM;
	if (!old || old->resolved != e->resolved || strcmp(old->category, e->category) ||
	    strcmp(old->priority, e->priority)) {
		char key[160]; /* category (< 128) US priority (< 12) */
		if (old && old->resolved) {
			struct group *g = kmap_get(&h->resolved_by_category, old->category, 0);
			ivec_remove(g ? &g->l : NULL, i);
			cat_pri_key(key, sizeof(key), old->category, old->priority);
			g = kmap_get(&h->resolved_by_category_priority, key, 0);
			ivec_remove(g ? &g->l : NULL, i);
		}
		if (e->resolved && e->category[0]) {
			struct group *g = kmap_get(&h->resolved_by_category, e->category, 1);
			if (!g || ivec_push(&g->l, i))
				rc = CSA_ENOMEM;
			cat_pri_key(key, sizeof(key), e->category, e->priority);
			g = kmap_get(&h->resolved_by_category_priority, key, 1);
			if (!g || ivec_push(&g->l, i))
				rc = CSA_ENOMEM;
		}
	}
	if (!old || old->resolved != e->resolved) {
		if (old && old->resolved)
			ivec_remove(&h->resolved, i);
		if (e->resolved && ivec_push(&h->resolved, i))
			rc = CSA_ENOMEM;
	}
	return rc;
}

int csa_history_put(struct csa_history *h, const struct csa_hist_entry *e)
{
	return csa_history_put_sig(h, e, 0);
}

static int same_str(const char *pooled, const char *s)
{
	return strcmp(pooled ? pooled : "", s) == 0;
}

/* The entry as kept holds what e says. */
static int same(const struct rec *r, const struct csa_hist_entry *e)
{
	return same_str(r->company, e->company) && same_str(r->client, e->client) &&
	       same_str(r->category, e->category) && same_str(r->assigned, e->assigned) &&
	       strncmp(r->priority, e->priority, sizeof(r->priority)) == 0 &&
	       strncmp(r->escalation, e->escalation, sizeof(r->escalation)) == 0 &&
	       r->resolved == e->resolved && r->created_ms == e->created_ms &&
	       memcmp(&r->resolution_hours, &e->resolution_hours, sizeof(double)) == 0 &&
	       memcmp(&r->csat, &e->csat, sizeof(double)) == 0;
}

/* Insert or replace; with 'check', only while the entry's gen is
 * 'expect_gen' (0: only while there is no entry), else *skipped is 1. */
static int put(struct csa_history *h, const struct csa_hist_entry *e, uint64_t sig, int check,
               uint64_t expect_gen, int *skipped)
{
	pthread_mutex_lock(&h->mu);
	int rc = CSA_OK;
	if (check) {
		size_t at = find(h, e->id);
		*skipped = at == SIZE_MAX ? expect_gen != 0 : h->v[at].gen != expect_gen;
		if (*skipped) {
			pthread_mutex_unlock(&h->mu);
			return CSA_OK;
		}
		/* the same entry read again (a signature learnt): only the
		 * signature changes, so the order of the customer's and the
		 * category's lists, which a re-put would change, stays as it
		 * was and a checker never changes what the agents are shown */
		if (at != SIZE_MAX && same(&h->v[at], e)) {
			h->v[at].sig = sig;
			h->v[at].gen = ++h->puts;
			pthread_mutex_unlock(&h->mu);
			return CSA_OK;
		}
	}
	struct rec r = {.sig = sig,
	                .gen = ++h->puts,
	                .resolved = e->resolved,
	                .resolution_hours = e->resolution_hours,
	                .csat = e->csat,
	                .created_ms = e->created_ms,
	                .company = intern(&h->pool, e->company),
	                .client = intern(&h->pool, e->client),
	                .category = intern(&h->pool, e->category),
	                .assigned = intern(&h->pool, e->assigned)};
	memcpy(r.priority, e->priority, sizeof(r.priority));
	memcpy(r.escalation, e->escalation, sizeof(r.escalation));
	if (!r.company || !r.client || !r.category || !r.assigned) {
		rc = CSA_ENOMEM;
		goto out;
	}
	size_t at = find(h, e->id);
	if (at != SIZE_MAX) {
		struct rec old = h->v[at];
		r.id = old.id;
		h->v[at] = r;
		rc = reindex(h, at, &old, &r);
		goto out;
	}
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 1024;
		struct rec *nv = realloc(h->v, cap * sizeof(*nv));
		if (!nv) {
			rc = CSA_ENOMEM;
			goto out;
		}
		h->v = nv;
		h->cap = cap;
	}
	if (!(r.id = strdup(e->id))) {
		rc = CSA_ENOMEM;
		goto out;
	}
	h->v[h->n++] = r;
	if (h->n * 2 > h->nslots)
		rc = rehash(h, h->nslots ? h->nslots * 2 : 2048);
	else {
		size_t k = hash(r.id) & (h->nslots - 1);
		while (h->slots[k] != SIZE_MAX)
			k = (k + 1) & (h->nslots - 1);
		h->slots[k] = h->n - 1;
	}
	if (rc == CSA_OK)
		rc = reindex(h, h->n - 1, NULL, &r);
out:
	pthread_mutex_unlock(&h->mu);
	return rc;
}

static void copy(char *dst, size_t n, const char *src)
{
	snprintf(dst, n, "%s", src ? src : "");
}

void csa_history_entry_from(const struct csa_ticket *tk, struct csa_hist_entry *e)
{
	memset(e, 0, sizeof(*e));
	copy(e->id, sizeof(e->id), tk->id);
	/* the customer as E names it, else as T does (scans read T only) */
	json_t *cust = json_object_get(json_object_get(tk->e, "participants"), "customer");
	const char *company = csa_json_str(cust, "company_name"),
	           *client = csa_json_str(cust, "client_name");
	copy(e->company, sizeof(e->company),
	     company ? company : csa_json_str(tk->t, "company_name"));
	copy(e->client, sizeof(e->client), client ? client : csa_json_str(tk->t, "client_name"));
	copy(e->priority, sizeof(e->priority), csa_json_str(tk->t, "priority"));
	e->resolved = csa_json_bool(tk->t, "resolved", 0);
	json_t *sla = json_object_get(tk->t, "sla_metrics");
	double rt = csa_json_num(sla, "resolution_time", -1);
	e->resolution_hours = rt >= 0 ? rt / 60.0 : -1;
	e->csat = csa_json_num(sla, "customer_satisfaction", -1);
	csa_ts_parse(csa_json_str(tk->t, "card_create_timestamp"), &e->created_ms);
	copy(e->assigned, sizeof(e->assigned), csa_json_str(tk->t, "assigned_member"));
	/* the latest classifier and escalation decisions carry the category
	 * and the escalation path */
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(tk->t, "agent_decisions"), i, d)
	{
		const char *agent = csa_json_str(d, "agent");
		json_t *dec = json_object_get(d, "decision");
		if (agent && strcmp(agent, "classifier") == 0 && csa_json_str(dec, "category"))
			copy(e->category, sizeof(e->category), csa_json_str(dec, "category"));
		if (agent && strcmp(agent, "escalation") == 0 &&
		    csa_json_str(dec, "escalation_path"))
			copy(e->escalation, sizeof(e->escalation),
			     csa_json_str(dec, "escalation_path"));
	}
}

int csa_history_put_sig(struct csa_history *h, const struct csa_hist_entry *e, uint64_t sig)
{
	return put(h, e, sig, 0, 0, NULL);
}

int csa_history_put_if(struct csa_history *h, const struct csa_hist_entry *e, uint64_t sig,
                       uint64_t gen, int *skipped)
{
	return put(h, e, sig, 1, gen, skipped);
}

int csa_history_get_sig(struct csa_history *h, const char *id, uint64_t *sig, uint64_t *gen)
{
	pthread_mutex_lock(&h->mu);
	size_t at = find(h, id);
	*sig = at == SIZE_MAX ? 0 : h->v[at].sig;
	*gen = at == SIZE_MAX ? 0 : h->v[at].gen;
	pthread_mutex_unlock(&h->mu);
	return at == SIZE_MAX ? CSA_ENOENT : CSA_OK;
}

uint64_t csa_history_puts(struct csa_history *h)
{
	pthread_mutex_lock(&h->mu);
	uint64_t n = h->puts;
	pthread_mutex_unlock(&h->mu);
	return n;
}

/* The store's observer: the committed T (and E, for the customer's name)
 * are at hand, so the entry costs no read. */
static void on_commit(void *ctx, struct csa_ticket *const *tks, size_t n)
{
	struct csa_history *h = ctx;
	for (size_t i = 0; i < n; i++) {
		struct csa_hist_entry e;
		csa_history_entry_from(tks[i], &e);
		/* out of memory: the entry keeps its signature from before the
		 * commit, which no longer matches the files, so the next load
		 * reads the ticket again; and the index's position is not
		 * saved (csa_history_tracked_all) */
		if (csa_history_put(h, &e)) {
			pthread_mutex_lock(&h->mu);
			h->lost = 1;
			pthread_mutex_unlock(&h->mu);
		}
	}
}

int csa_history_track(struct csa_history *h, struct csa_store *st)
{
	if (h->tracked)
		return CSA_OK;
	int rc = csa_store_observe(st, on_commit, h);
	if (rc == CSA_OK)
		h->tracked = st;
	return rc;
}

int csa_history_tracking(struct csa_history *h)
{
	pthread_mutex_lock(&h->mu);
	int yes = h->tracked && !h->lost;
	pthread_mutex_unlock(&h->mu);
	return yes;
}

void csa_history_untrack(struct csa_history *h)
{
	if (h->tracked)
		csa_store_unobserve(h->tracked, on_commit, h);
	h->tracked = NULL;
}

int csa_history_each(struct csa_history *h, csa_hist_fn fn, void *ctx)
{
	int rc = CSA_OK;
	pthread_mutex_lock(&h->mu);
	for (size_t i = 0; i < h->n && rc == CSA_OK; i++) {
		const struct rec *r = &h->v[i];
		struct csa_hist_entry e = {.resolved = r->resolved,
		                           .resolution_hours = r->resolution_hours,
		                           .csat = r->csat,
		                           .created_ms = r->created_ms};
		copy(e.id, sizeof(e.id), r->id);
		copy(e.company, sizeof(e.company), r->company);
		copy(e.client, sizeof(e.client), r->client);
		copy(e.category, sizeof(e.category), r->category);
		copy(e.assigned, sizeof(e.assigned), r->assigned);
		memcpy(e.priority, r->priority, sizeof(e.priority));
		memcpy(e.escalation, r->escalation, sizeof(e.escalation));
		rc = fn(ctx, &e, r->sig);
	}
	pthread_mutex_unlock(&h->mu);
	return rc;
}

size_t csa_history_open_assigned(struct csa_history *h, const char *member, const char *exclude_id)
{
	size_t n = 0;
	if (!member || !*member)
		return 0;
	pthread_mutex_lock(&h->mu);
	for (size_t i = 0; i < h->n; i++) {
		const struct rec *r = &h->v[i];
		n += !r->resolved && strcmp(r->assigned, member) == 0 &&
		     !(exclude_id && strcmp(r->id, exclude_id) == 0);
	}
	pthread_mutex_unlock(&h->mu);
	return n;
}

json_t *csa_history_customer(struct csa_history *h, const char *company, const char *client,
                             const char *exclude_id)
{
	const char *key = company && *company ? company : client;
	int by_company = company && *company;
	pthread_mutex_lock(&h->mu);
	struct group *g = kmap_get(by_company ? &h->by_company : &h->by_client, key, 0);
	struct group none = {0}, sum = g ? *g : none;
	size_t x = exclude_id ? find(h, exclude_id) : SIZE_MAX;
	if (g && x != SIZE_MAX && strcmp(by_company ? h->v[x].company : h->v[x].client, key) == 0) {
		sum.l.n--;
		group_count(&sum, &h->v[x], -1);
	}
	if (g && g->newest_stale)
		newest_rebuild(h, g);
	json_t *ids = json_array();
	for (int k = 0; g && k < g->nnewest && json_array_size(ids) < 5; k++)
		if (g->newest[k] != x)
			json_array_append_new(ids, json_string(h->v[g->newest[k]].id));
	pthread_mutex_unlock(&h->mu);
	return json_pack("{s:I, s:I, s:I, s:o, s:o}", "tickets", (json_int_t)sum.l.n, "open",
	                 (json_int_t)sum.open, "escalated", (json_int_t)sum.escalated, "avg_csat",
	                 sum.ncsat ? json_real((double)sum.csat_milli / 1000.0 / (double)sum.ncsat)
	                           : json_null(),
	                 "recent", ids);
}

json_t *csa_history_similar(struct csa_history *h, const char *category, const char *exclude_id,
                            size_t k)
{
	json_t *out = json_array();
	if (!category || !*category || k == 0)
		return out;
	pthread_mutex_lock(&h->mu);
	/* lists are in scan/arrival order; walk back for the newest */
	const struct group *g = kmap_get(&h->resolved_by_category, category, 0);
	for (size_t j = g ? g->l.n : 0; j-- > 0 && json_array_size(out) < k;) {
		const struct rec *e = &h->v[g->l.v[j]];
		if (!exclude_id || strcmp(e->id, exclude_id) != 0)
			json_array_append_new(out, json_string(e->id));
	}
	pthread_mutex_unlock(&h->mu);
	return out;
}

static int dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

double csa_history_eta_hours(struct csa_history *h, const char *category, const char *priority,
                             size_t *nout)
{
	enum { CAP = 512 };
	double *s = malloc(CAP * sizeof(*s));
	size_t n = 0;
	double med = -1;
	if (!s)
		return -1;
	char key[160];
	cat_pri_key(key, sizeof(key), category ? category : "", priority ? priority : "");
	pthread_mutex_lock(&h->mu);
	for (int level = 0; level < 3 && n == 0; level++) {
		const struct group *g =
		    level == 0
		        ? (priority ? kmap_get(&h->resolved_by_category_priority, key, 0) : NULL)
		    : level == 1 ? kmap_get(&h->resolved_by_category, category, 0)
		                 : NULL;
		const struct ivec *l = level < 2 ? (g ? &g->l : NULL) : &h->resolved;
		for (size_t j = l ? l->n : 0; j-- > 0 && n < CAP;) {
			const struct rec *e = &h->v[l->v[j]];
			if (e->resolution_hours >= 0)
				s[n++] = e->resolution_hours;
		}
	}
	pthread_mutex_unlock(&h->mu);
	if (n) {
		qsort(s, n, sizeof(*s), dcmp);
		med = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	}
	free(s);
	if (nout)
		*nout = n;
	return med;
}
