/*
 * The documents of the tickets a store handle committed last, kept in
 * memory so that loading one of them again reads and parses no file
 * (store.h, csa_store_cache_docs). A replay loads every ticket right after
 * committing it, once per review: parsing those documents again was a
 * tenth of its time.
 *
 * What a load from the cache hands out must be what a load from the files
 * would: the same documents, down to each number, and the same bytes in
 * tk->loaded. So an entry is made only from a commit that wrote all three
 * documents (CSA_DOC_ALL), whose bytes are then the
 * files' (the backend leaves them in tk->loaded), and its documents are
 * copies of the committed ones as they read back from those bytes: a real
 * number rounded as the serialiser writes it (CSA_STORE_REAL_PRECISION
 * significant digits) and read back as the parser reads it. A document
 * that would not read back the same, or at all (a string holding a NUL, a
 * number that overflows once rounded) leaves its ticket out of the cache,
 * and one that fails the schema check a load makes is dropped when it is
 * loaded, so that those loads go to the files and fail there. Every other commit of a ticket, and
 * any failed one, drops its entry.
 *
 * A load takes the entry: its documents move to the caller (no copy),
 * and the next load of the ticket reads the files unless a commit came in
 * between. Entries beyond the capacity go oldest first.
 */
#include "base/hash.h"
#include "base/jdump.h"
#include "store/schema.h"
#include "store/store.h"
#include "store/store_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct doc_entry {
	char id[CSA_ID_MAX + 1];
	json_t *doc[3]; /* E, I, T as they read back from bytes[] */
	char *bytes[3]; /* the files' bytes */
	size_t len[3];
	uint64_t used; /* when it was put, for eviction */
};

struct csa_doccache {
	pthread_mutex_t mu;
	struct doc_entry *e;
	/* each entry's id hashed, in an array of its own: a lookup scans
	 * these few bytes, not the entries, so that a cache of a thousand
	 * tickets (a replay's retraining reads that many back) costs about
	 * what one of sixty-four did */
	uint64_t *hash;
	size_t n, cap;
	uint64_t clock;
};

static void entry_release(struct doc_entry *d)
{
	for (int k = 0; k < 3; k++) {
		json_decref(d->doc[k]);
		free(d->bytes[k]);
	}
	memset(d, 0, sizeof(*d));
}

/* The entry of 'id', or NULL. Caller holds mu. */
static struct doc_entry *find(struct csa_doccache *c, const char *id)
{
	uint64_t h = csa_fnv1a_str(CSA_FNV_SEED, id);
	for (size_t i = 0; i < c->n; i++)
		if (c->hash[i] == h && strcmp(c->e[i].id, id) == 0)
			return &c->e[i];
	return NULL;
}

/* Remove entry d (its documents released unless taken). Caller holds mu. */
static void drop(struct csa_doccache *c, struct doc_entry *d)
{
	entry_release(d);
	c->n--;
	c->hash[d - c->e] = c->hash[c->n];
	*d = c->e[c->n];
	memset(&c->e[c->n], 0, sizeof(c->e[c->n]));
}

/*
 * A copy of v as it reads back after being written by the store (compact
 * JSON, reals with CSA_STORE_REAL_PRECISION significant digits) and read
 * by csa_json_parse(); NULL when it would not read back (a NUL in a string
 * or key, a real that overflows once rounded) or out of memory. Objects
 * keep their key order, as the serialiser writes it and the parser keeps
 * it. jansson writes a real with "%.*g" (correctly rounded) and reads it
 * with strtod, which is what this does.
 */
static json_t *as_read_back(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		json_t *o = json_object();
		const char *key;
		size_t key_len;
		json_t *x;
		json_object_keylen_foreach((json_t *)v, key, key_len, x)
		{
			json_t *cx = strlen(key) == key_len ? as_read_back(x) : NULL;
			if (!o || !cx || json_object_set_new_nocheck(o, key, cx)) {
				json_decref(o);
				return NULL;
			}
		}
		return o;
	}
	case JSON_ARRAY: {
		json_t *a = json_array();
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x)
		{
			json_t *cx = as_read_back(x);
			if (!a || !cx || json_array_append_new(a, cx)) {
				json_decref(a);
				return NULL;
			}
		}
		return a;
	}
	case JSON_STRING: {
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);
		/* a NUL is written as \u0000, which the parser refuses */
		return memchr(s, '\0', n) ? NULL : json_stringn_nocheck(s, n);
	}
	case JSON_REAL: {
		/* the parser refuses a number that overflows a double */
		double r;
		return csa_store_real_read_back(json_real_value(v), &r) ? json_real(r) : NULL;
	}
	case JSON_INTEGER:
		return json_integer(json_integer_value(v));
	case JSON_TRUE:
		return json_true();
	case JSON_FALSE:
		return json_false();
	case JSON_NULL:
		return json_null();
	}
	return NULL;
}

/* Entry *d into the cache (its contents handed over), the one put longest
 * ago going when it is full. Caller holds mu. */
static void insert(struct csa_doccache *c, struct doc_entry *d)
{
	if (c->n == c->cap) {
		size_t old = 0;
		for (size_t i = 1; i < c->n; i++)
			if (c->e[i].used < c->e[old].used)
				old = i;
		drop(c, &c->e[old]);
	}
	d->used = ++c->clock;
	c->hash[c->n] = csa_fnv1a_str(CSA_FNV_SEED, d->id);
	c->e[c->n++] = *d;
}

/* store.h; the real numbers of as_read_back() and adopt_node() */
int csa_store_real_read_back(double v, double *out)
{
	char buf[64];
	if (csa_real_text(v, CSA_STORE_REAL_PRECISION, buf, sizeof(buf), out) < 0)
		return 0; /* cannot be: ten digits fit */
	return !isinf(*out);
}

/* Child x of a container made as it reads back, in place where the
 * container alone holds it, else replaced through 'set' by a copy (a
 * value shared with someone else is never changed). 0 when it would not
 * read back. */
static int adopt_node(json_t *v);

static int adopt_child(json_t *x, json_t **replace)
{
	*replace = NULL;
	switch (json_typeof(x)) {
	case JSON_OBJECT:
	case JSON_ARRAY:
		if (x->refcount == 1)
			return adopt_node(x);
		return (*replace = as_read_back(x)) != NULL;
	case JSON_STRING:
		return !memchr(json_string_value(x), '\0', json_string_length(x));
	case JSON_REAL: {
		double r;
		if (!csa_store_real_read_back(json_real_value(x), &r))
			return 0;
		if (x->refcount == 1)
			return json_real_set(x, r) == 0;
		return (*replace = json_real(r)) != NULL;
	}
	default:
		return 1;
	}
}

/* Container v, held by the caller alone, made as it reads back in place. */
static int adopt_node(json_t *v)
{
	json_t *rep;
	if (json_is_array(v)) {
		for (size_t i = 0; i < json_array_size(v); i++) {
			if (!adopt_child(json_array_get(v, i), &rep))
				return 0;
			if (rep && json_array_set_new(v, i, rep))
				return 0;
		}
		return 1;
	}
	for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
		const char *key = json_object_iter_key(it);
		if (strlen(key) != json_object_iter_key_len(it) ||
		    !adopt_child(json_object_iter_value(it), &rep))
			return 0;
		if (rep && json_object_iter_set_new(v, it, rep))
			return 0;
	}
	return 1;
}

/* Ticket tk, just committed with all three documents written, into the
 * cache; 0 when it cannot be kept. Caller holds mu. */
static int put_one(struct csa_doccache *c, const struct csa_ticket *tk)
{
	struct doc_entry d = {0};
	const json_t *src[3] = {tk->e, tk->i, tk->t};
	snprintf(d.id, sizeof(d.id), "%s", tk->id);
	for (int k = 0; k < 3; k++) {
		if (!src[k] || !tk->loaded[k])
			goto fail;
		if (!(d.doc[k] = as_read_back(src[k])))
			goto fail;
		if (!(d.bytes[k] = malloc(tk->loaded_len[k] ? tk->loaded_len[k] : 1)))
			goto fail;
		memcpy(d.bytes[k], tk->loaded[k], tk->loaded_len[k]);
		d.len[k] = tk->loaded_len[k];
	}
	insert(c, &d);
	return 1;
fail:
	entry_release(&d);
	return 0;
}

int csa_doccache_new(size_t tickets, struct csa_doccache **out)
{
	struct csa_doccache *c = calloc(1, sizeof(*c));
	if (!c)
		return CSA_ENOMEM;
	pthread_mutex_init(&c->mu, NULL);
	if (csa_doccache_grow(c, tickets ? tickets : 1)) {
		csa_doccache_free(c);
		return CSA_ENOMEM;
	}
	*out = c;
	return CSA_OK;
}

int csa_doccache_grow(struct csa_doccache *c, size_t tickets)
{
	int rc = CSA_OK;
	pthread_mutex_lock(&c->mu);
	if (tickets > c->cap) {
		struct doc_entry *e = realloc(c->e, tickets * sizeof(*e));
		if (e)
			c->e = e;
		uint64_t *h = e ? realloc(c->hash, tickets * sizeof(*h)) : NULL;
		if (h) {
			c->hash = h;
			c->cap = tickets;
		} else {
			rc = CSA_ENOMEM;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

void csa_doccache_free(struct csa_doccache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		entry_release(&c->e[i]);
	free(c->e);
	free(c->hash);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

int csa_doccache_take(struct csa_doccache *c, const char *id, struct csa_ticket *out)
{
	pthread_mutex_lock(&c->mu);
	struct doc_entry *d = find(c, id);
	/* the schema check of a load, made here rather than on every commit:
	 * a ticket is committed more often than it is loaded again; one that
	 * fails is left to the files, which fail the same way */
	for (int k = 0; d && k < 3; k++)
		if (csa_schema_check((enum csa_doc_kind)k, id, d->doc[k], NULL) != CSA_OK) {
			drop(c, d);
			d = NULL;
		}
	if (d) {
		memset(out, 0, sizeof(*out));
		memcpy(out->id, d->id, sizeof(out->id));
		out->e = d->doc[0];
		out->i = d->doc[1];
		out->t = d->doc[2];
		for (int k = 0; k < 3; k++) {
			out->loaded[k] = d->bytes[k];
			out->loaded_len[k] = d->len[k];
			d->doc[k] = NULL;
			d->bytes[k] = NULL;
		}
		out->exists = 1;
		drop(c, d);
	}
	pthread_mutex_unlock(&c->mu);
	return d != NULL;
}

int csa_doccache_adopt(struct csa_doccache *c, struct csa_ticket *tk)
{
	struct doc_entry d = {0};
	json_t **src[3] = {&tk->e, &tk->i, &tk->t};
	snprintf(d.id, sizeof(d.id), "%s", tk->id);
	int ok = 1;
	for (int k = 0; k < 3 && ok; k++) {
		json_t *doc = *src[k];
		if (!doc || !tk->loaded[k])
			ok = 0;
		else if (doc->refcount == 1 && json_is_object(doc))
			ok = adopt_node(doc) ? (d.doc[k] = doc) != NULL : 0;
		else /* someone else holds it too: a copy, it is never changed */
			ok = (d.doc[k] = as_read_back(doc)) != NULL;
	}
	for (int k = 0; k < 3; k++) {
		if (d.doc[k] == *src[k]) {
			/* taken over from the ticket, or left to it on failure */
			if (ok)
				*src[k] = NULL;
			else
				d.doc[k] = NULL;
		} else if (ok) {
			json_decref(*src[k]);
			*src[k] = NULL;
		}
		if (ok) {
			d.bytes[k] = tk->loaded[k];
			d.len[k] = tk->loaded_len[k];
			tk->loaded[k] = NULL;
			tk->loaded_len[k] = 0;
		}
	}
	pthread_mutex_lock(&c->mu);
	struct doc_entry *old = find(c, d.id);
	if (old)
		drop(c, old);
	if (ok)
		insert(c, &d);
	pthread_mutex_unlock(&c->mu);
	if (!ok)
		entry_release(&d);
	return ok;
}

void csa_doccache_committed(struct csa_doccache *c, struct csa_ticket *const *tks, size_t n,
                            unsigned docs, int ok)
{
	pthread_mutex_lock(&c->mu);
	for (size_t i = 0; i < n; i++) {
		struct doc_entry *d = find(c, tks[i]->id);
		if (d)
			drop(c, d);
		/* only a commit that wrote every document tells what all three
		 * files hold (one of only some may leave a document in memory
		 * that its file does not have) */
		if (ok && (docs & CSA_DOC_ALL) == CSA_DOC_ALL)
			put_one(c, tks[i]);
	}
	pthread_mutex_unlock(&c->mu);
}
