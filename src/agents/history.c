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

/* String key -> ivec, open addressing (customer or category -> entries), so
 * a lookup reads one customer's or one category's entries, not them all. */
struct kmap {
	char **keys;
	struct ivec *vals;
	size_t nslots, n;
};

/* An entry as kept: the strings that repeat across tickets (company,
 * client, category) point into a pool, so 100,000 tickets take a few MB
 * rather than the fixed-size buffers of struct csa_hist_entry. */
struct rec {
	char *id;                                /* owned */
	const char *company, *client, *category; /* pooled, "" when unknown */
	char priority[12];
	char escalation[16];
	int resolved;
	double resolution_hours, csat;
	int64_t created_ms;
	uint64_t sig; /* of the files it was read from (csa_mesh_files_sig), 0: unknown */
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
	struct ivec resolved; /* every resolved entry */
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
	struct ivec *vals = calloc(ns, sizeof(*vals));
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

/* The list of a key; created when 'create' (NULL when absent or out of
 * memory). Empty keys have no list. */
static struct ivec *kmap_get(struct kmap *m, const char *key, int create)
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
	struct ivec *v = kmap_get(pool, s, 1);
	return v ? pool->keys[v - pool->vals] : NULL;
}

static void kmap_free(struct kmap *m)
{
	for (size_t i = 0; i < m->nslots; i++) {
		free(m->keys[i]);
		free(m->vals[i].v);
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

void csa_history_free(struct csa_history *h)
{
	if (!h)
		return;
	pthread_mutex_destroy(&h->mu);
	kmap_free(&h->by_company);
	kmap_free(&h->by_client);
	kmap_free(&h->resolved_by_category);
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

/* Move entry i from the lists of 'old' (NULL: a new entry) to those of 'e'. */
static int reindex(struct csa_history *h, size_t i, const struct rec *old, const struct rec *e)
{
	int rc = CSA_OK;
	if (!old || strcmp(old->company, e->company)) {
		if (old)
			ivec_remove(kmap_get(&h->by_company, old->company, 0), i);
		struct ivec *l = kmap_get(&h->by_company, e->company, 1);
		if (e->company[0] && (!l || ivec_push(l, i)))
			rc = CSA_ENOMEM;
	}
	if (!old || strcmp(old->client, e->client)) {
		if (old)
			ivec_remove(kmap_get(&h->by_client, old->client, 0), i);
		struct ivec *l = kmap_get(&h->by_client, e->client, 1);
		if (e->client[0] && (!l || ivec_push(l, i)))
			rc = CSA_ENOMEM;
	}
	if (!old || old->resolved != e->resolved || strcmp(old->category, e->category)) {
		if (old && old->resolved)
			ivec_remove(kmap_get(&h->resolved_by_category, old->category, 0), i);
		struct ivec *l =
		    e->resolved ? kmap_get(&h->resolved_by_category, e->category, 1) : NULL;
		if (e->resolved && e->category[0] && (!l || ivec_push(l, i)))
			rc = CSA_ENOMEM;
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

int csa_history_put_sig(struct csa_history *h, const struct csa_hist_entry *e, uint64_t sig)
{
	pthread_mutex_lock(&h->mu);
	int rc = CSA_OK;
	struct rec r = {.sig = sig,
	                .resolved = e->resolved,
	                .resolution_hours = e->resolution_hours,
	                .csat = e->csat,
	                .created_ms = e->created_ms,
	                .company = intern(&h->pool, e->company),
	                .client = intern(&h->pool, e->client),
	                .category = intern(&h->pool, e->category)};
	memcpy(r.priority, e->priority, sizeof(r.priority));
	memcpy(r.escalation, e->escalation, sizeof(r.escalation));
	if (!r.company || !r.client || !r.category) {
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
		memcpy(e.priority, r->priority, sizeof(e.priority));
		memcpy(e.escalation, r->escalation, sizeof(e.escalation));
		rc = fn(ctx, &e, r->sig);
	}
	pthread_mutex_unlock(&h->mu);
	return rc;
}

json_t *csa_history_customer(struct csa_history *h, const char *company, const char *client,
                             const char *exclude_id)
{
	const char *key = company && *company ? company : client;
	int by_company = company && *company;
	size_t n = 0, open = 0, esc = 0, ncsat = 0;
	double csat = 0;
	const struct rec *recent[5] = {0};
	pthread_mutex_lock(&h->mu);
	const struct ivec *l = kmap_get(by_company ? &h->by_company : &h->by_client, key, 0);
	for (size_t j = 0; l && j < l->n; j++) {
		const struct rec *e = &h->v[l->v[j]];
		if (exclude_id && strcmp(e->id, exclude_id) == 0)
			continue;
		n++;
		open += !e->resolved;
		esc += e->escalation[0] && strcmp(e->escalation, "NONE") != 0;
		if (e->csat >= 1) {
			csat += e->csat;
			ncsat++;
		}
		/* keep the 5 newest */
		for (int k = 0; k < 5; k++)
			if (!recent[k] || e->created_ms > recent[k]->created_ms) {
				memmove(&recent[k + 1], &recent[k],
				        (size_t)(4 - k) * sizeof(recent[0]));
				recent[k] = e;
				break;
			}
	}
	json_t *ids = json_array();
	for (int k = 0; k < 5 && recent[k]; k++)
		json_array_append_new(ids, json_string(recent[k]->id));
	pthread_mutex_unlock(&h->mu);
	return json_pack("{s:I, s:I, s:I, s:o, s:o}", "tickets", (json_int_t)n, "open",
	                 (json_int_t)open, "escalated", (json_int_t)esc, "avg_csat",
	                 ncsat ? json_real(csat / (double)ncsat) : json_null(), "recent", ids);
}

json_t *csa_history_similar(struct csa_history *h, const char *category, const char *exclude_id,
                            size_t k)
{
	json_t *out = json_array();
	if (!category || !*category || k == 0)
		return out;
	pthread_mutex_lock(&h->mu);
	/* lists are in scan/arrival order; walk back for the newest */
	const struct ivec *l = kmap_get(&h->resolved_by_category, category, 0);
	for (size_t j = l ? l->n : 0; j-- > 0 && json_array_size(out) < k;) {
		const struct rec *e = &h->v[l->v[j]];
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
	pthread_mutex_lock(&h->mu);
	for (int level = 0; level < 3 && n == 0; level++) {
		const struct ivec *l =
		    level < 2 ? kmap_get(&h->resolved_by_category, category, 0) : &h->resolved;
		for (size_t j = l ? l->n : 0; j-- > 0 && n < CAP;) {
			const struct rec *e = &h->v[l->v[j]];
			if (e->resolution_hours < 0)
				continue;
			if (level < 1 && (!priority || strcmp(e->priority, priority) != 0))
				continue;
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
