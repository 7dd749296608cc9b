/* Text features remembered between trainings (model/featmemo.h). */
#include "model/featmemo.h"
#include "base/err.h"
#include "base/hash.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* One text's features under one set of options; never changed once in
 * the table, so a caller copies it without the lock. */
struct memo_entry {
	struct memo_entry *next; /* in its bucket */
	uint64_t hash;
	struct csa_feat_opts opts;
	char *text;
	size_t len;
	uint32_t *idx;
	float *val;
	size_t n;
	int used; /* asked for in this round */
};

struct csa_feat_memo {
	pthread_mutex_t mu;
	struct memo_entry **bucket;
	size_t nbuckets, n, hits;
	/* entries let go while a caller may still be copying one: freed at
	 * the next round's start or at the end (a round starts between
	 * trainings, when no copy runs) */
	struct memo_entry *retired;
};

static int same_opts(const struct csa_feat_opts *a, const struct csa_feat_opts *b)
{
	return a->bits == b->bits && a->char_min == b->char_min && a->char_max == b->char_max &&
	       a->word_bigrams == b->word_bigrams && a->extra_weight == b->extra_weight &&
	       a->word_weight == b->word_weight && a->pair_window == b->pair_window &&
	       a->pair_prefix == b->pair_prefix;
}

static uint64_t key_hash(const struct csa_feat_opts *o, const char *text, size_t len)
{
	uint64_t f[6] = {o->bits,        o->char_min,   o->char_max, (uint64_t)o->word_bigrams,
	                 o->pair_window, o->pair_prefix};
	return csa_fnv1a(csa_fnv1a(CSA_FNV_SEED, f, sizeof(f)), text, len);
}

static void entry_free(struct memo_entry *e)
{
	free(e->text);
	free(e->idx);
	free(e->val);
	free(e);
}

struct csa_feat_memo *csa_feat_memo_new(void)
{
	struct csa_feat_memo *m = calloc(1, sizeof(*m));
	if (!m || !(m->bucket = calloc(1024, sizeof(*m->bucket)))) {
		free(m);
		return NULL;
	}
	m->nbuckets = 1024;
	pthread_mutex_init(&m->mu, NULL);
	return m;
}

void csa_feat_memo_free(struct csa_feat_memo *m)
{
	if (!m)
		return;
	for (size_t b = 0; b < m->nbuckets; b++)
		for (struct memo_entry *e = m->bucket[b], *next; e; e = next) {
			next = e->next;
			entry_free(e);
		}
	for (struct memo_entry *e = m->retired, *next; e; e = next) {
		next = e->next;
		entry_free(e);
	}
	free(m->bucket);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

/* The entry of (o, text), marked used, or NULL. Caller holds mu. */
static struct memo_entry *find(struct csa_feat_memo *m, uint64_t h, const struct csa_feat_opts *o,
                               const char *text, size_t len)
{
	for (struct memo_entry *e = m->bucket[h % m->nbuckets]; e; e = e->next)
		if (e->hash == h && e->len == len && same_opts(&e->opts, o) &&
		    memcmp(e->text, text, len) == 0) {
			e->used = 1;
			return e;
		}
	return NULL;
}

/* Twice the buckets when the chains grow long; left as it is when there
 * is no memory for more. Caller holds mu. */
static void grow(struct csa_feat_memo *m)
{
	if (m->n < 2 * m->nbuckets)
		return;
	size_t nb = m->nbuckets * 2;
	struct memo_entry **bucket = calloc(nb, sizeof(*bucket));
	if (!bucket)
		return;
	for (size_t b = 0; b < m->nbuckets; b++)
		for (struct memo_entry *e = m->bucket[b], *next; e; e = next) {
			next = e->next;
			e->next = bucket[e->hash % nb];
			bucket[e->hash % nb] = e;
		}
	free(m->bucket);
	m->bucket = bucket;
	m->nbuckets = nb;
}

/* A new entry holding v's n features (the text part), or NULL. */
static struct memo_entry *entry_of(uint64_t h, const struct csa_feat_opts *o, const char *text,
                                   size_t len, const struct csa_fvec *v)
{
	struct memo_entry *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->hash = h;
	e->opts = *o;
	e->len = len;
	e->n = v->n;
	e->text = malloc(len ? len : 1);
	e->idx = malloc((v->n ? v->n : 1) * sizeof(*e->idx));
	e->val = malloc((v->n ? v->n : 1) * sizeof(*e->val));
	if (!e->text || !e->idx || !e->val) {
		entry_free(e);
		return NULL;
	}
	memcpy(e->text, text, len);
	if (v->n) { /* an empty text's vector may have no arrays at all */
		memcpy(e->idx, v->idx, v->n * sizeof(*e->idx));
		memcpy(e->val, v->val, v->n * sizeof(*e->val));
	}
	e->used = 1;
	return e;
}

/* v = the entry's features (v's arrays grown as csa_text_features() would
 * need them). */
static int copy_out(const struct memo_entry *e, struct csa_fvec *v)
{
	v->n = 0;
	if (e->n > v->cap) {
		uint32_t *ni = realloc(v->idx, e->n * sizeof(*ni));
		if (!ni)
			return CSA_ENOMEM;
		v->idx = ni;
		float *nv = realloc(v->val, e->n * sizeof(*nv));
		if (!nv)
			return CSA_ENOMEM;
		v->val = nv;
		v->cap = e->n;
	}
	if (e->n) {
		memcpy(v->idx, e->idx, e->n * sizeof(*v->idx));
		memcpy(v->val, e->val, e->n * sizeof(*v->val));
	}
	v->n = e->n;
	return CSA_OK;
}

int csa_feat_memo_features(struct csa_feat_memo *m, const struct csa_feat_opts *o, const char *text,
                           size_t len, const char *const *extra, size_t n_extra, struct csa_fvec *v)
{
	/* csa_text_features() reads no further than this either */
	if (len > CSA_TEXT_MAX_BYTES)
		len = CSA_TEXT_MAX_BYTES;
	uint64_t h = key_hash(o, text, len);
	pthread_mutex_lock(&m->mu);
	const struct memo_entry *e = find(m, h, o, text, len);
	if (e)
		m->hits++;
	pthread_mutex_unlock(&m->mu);
	int rc;
	if (e) {
		rc = copy_out(e, v);
	} else if ((rc = csa_text_features(o, text, len, NULL, 0, v)) == CSA_OK) {
		struct memo_entry *fresh = entry_of(h, o, text, len, v);
		pthread_mutex_lock(&m->mu);
		if (fresh && !find(m, h, o, text, len)) { /* another thread may have kept it */
			grow(m);
			fresh->next = m->bucket[h % m->nbuckets];
			m->bucket[h % m->nbuckets] = fresh;
			m->n++;
			fresh = NULL;
		}
		pthread_mutex_unlock(&m->mu);
		if (fresh)
			entry_free(fresh);
	}
	return rc == CSA_OK ? csa_text_features_extra(o, extra, n_extra, v) : rc;
}

void csa_feat_memo_round(struct csa_feat_memo *m)
{
	pthread_mutex_lock(&m->mu);
	for (struct memo_entry *e = m->retired, *next; e; e = next) {
		next = e->next;
		entry_free(e);
	}
	m->retired = NULL;
	for (size_t b = 0; b < m->nbuckets; b++)
		for (struct memo_entry **p = &m->bucket[b]; *p;) {
			struct memo_entry *e = *p;
			if (e->used) {
				e->used = 0;
				p = &e->next;
				continue;
			}
			*p = e->next;
			e->next = m->retired;
			m->retired = e;
			m->n--;
		}
	pthread_mutex_unlock(&m->mu);
}

size_t csa_feat_memo_size(struct csa_feat_memo *m)
{
	pthread_mutex_lock(&m->mu);
	size_t n = m->n;
	pthread_mutex_unlock(&m->mu);
	return n;
}

size_t csa_feat_memo_hits(struct csa_feat_memo *m)
{
	pthread_mutex_lock(&m->mu);
	size_t n = m->hits;
	pthread_mutex_unlock(&m->mu);
	return n;
}
