/*
 * The memory store (store/memstore.h): tickets as the bytes their files
 * would hold, in a hash table of this process, behind the store's table
 * of operations.
 *
 * Everything a caller can see goes through the same code as the mesh's:
 * csa_ticket_prepare_commit() makes a commit's bytes (so the same
 * documents are refused, with the same messages), and a load parses and
 * schema-checks those bytes with csa_json_parse() as a load of the files
 * does. A document therefore reads back with its reals rounded to the
 * digits they are written with, exactly as from a file; the document
 * cache in front of it (store/doccache.c) is as valid here as there.
 */
#include "store/memstore.h"
#include "base/config.h"
#include "base/hash.h"
#include "base/json.h"
#include "base/ts.h"
#include "store/schema.h"
#include "store/store_internal.h"
#include "store/ws.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One ticket: the bytes of E, I and T as a commit made them. */
struct mticket {
	char id[CSA_ID_MAX + 1];
	char *bytes[3];
	size_t len[3];
	uint64_t version;   /* the store's commit count when it was last committed */
	int64_t changed_ns; /* the real clock then, as a file's mtime would be */
};

/* A ticket's exclusive lock, held by a thread of this process. */
struct csa_lock {
	struct memstore *m;
	struct csa_lock *next; /* the other locks held */
	char id[CSA_ID_MAX + 1];
};

struct memstore {
	struct csa_store base; /* first: the store handle callers hold */
	struct csa_ws *ws;
	/* the tickets: a load copies a ticket's bytes under the read lock, a
	 * commit replaces them under the write lock */
	pthread_rwlock_t mu;
	struct mticket **slot; /* open addressing, cap a power of two, never deleted */
	size_t n, cap;
	uint64_t commits; /* also the stamp: it moves with every commit */
	long batches;
	/* the tickets' locks */
	pthread_mutex_t lock_mu;
	pthread_cond_t lock_cv;
	struct csa_lock *held;
};

static const char *const doc_name[3] = {"E", "I", "T"};

/* ---- the table ---------------------------------------------------------- */

/* The slot of 'id': its ticket, or the empty slot where it would go.
 * Caller holds mu. */
static struct mticket **find_slot(struct memstore *m, const char *id)
{
	size_t mask = m->cap - 1, i = (size_t)csa_fnv1a_str(CSA_FNV_SEED, id) & mask;
	while (m->slot[i] && strcmp(m->slot[i]->id, id) != 0)
		i = (i + 1) & mask;
	return &m->slot[i];
}

static struct mticket *find(struct memstore *m, const char *id)
{
	return *find_slot(m, id);
}

/* Room for one more ticket (the table at most half full). Caller holds mu
 * for writing. CSA_ENOMEM leaves the table as it was. */
static int reserve(struct memstore *m, size_t more)
{
	if ((m->n + more) * 2 <= m->cap)
		return CSA_OK;
	size_t cap = m->cap;
	while ((m->n + more) * 2 > cap)
		cap *= 2;
	struct mticket **old = m->slot, **nv = calloc(cap, sizeof(*nv));
	if (!nv)
		return CSA_ENOMEM;
	size_t oldcap = m->cap;
	m->slot = nv;
	m->cap = cap;
	for (size_t i = 0; i < oldcap; i++)
		if (old[i])
			*find_slot(m, old[i]->id) = old[i];
	free(old);
	return CSA_OK;
}

static int64_t real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static size_t max_doc_bytes(struct memstore *m)
{
	const struct csa_config *cfg = csa_ws_config(m->ws);
	size_t max = cfg->limits.max_document_bytes;
	csa_config_unref(cfg);
	return max;
}

/* ---- load ----------------------------------------------------------------- */

/* Copies of ticket id's bytes of the documents in 'docs' into b[]/len[]
 * (each NUL-terminated), taken as of one commit. CSA_ENOENT, CSA_ENOMEM. */
static int copy_bytes(struct memstore *m, const char *id, unsigned docs, char *b[3], size_t len[3])
{
	int rc = CSA_OK;
	for (int k = 0; k < 3; k++)
		b[k] = NULL;
	pthread_rwlock_rdlock(&m->mu);
	const struct mticket *t = find(m, id);
	if (!t)
		rc = CSA_ENOENT;
	for (int k = 0; t && k < 3 && rc == CSA_OK; k++) {
		if (!(docs & (1u << k)))
			continue;
		if (!(b[k] = malloc(t->len[k] + 1))) {
			rc = CSA_ENOMEM;
			break;
		}
		memcpy(b[k], t->bytes[k], t->len[k]);
		b[k][t->len[k]] = '\0';
		len[k] = t->len[k];
	}
	pthread_rwlock_unlock(&m->mu);
	if (rc)
		for (int k = 0; k < 3; k++) {
			free(b[k]);
			b[k] = NULL;
		}
	return rc;
}

/* What a file of ticket id would be called, for messages. */
static void where(char *out, size_t n, int k, const char *id)
{
	snprintf(out, n, "memory:%s_%s.json", doc_name[k], id);
}

/* Document k of 'id' from its bytes (borrowed), within the size limit:
 * what reading its file gives. */
static int parse_doc(const char *buf, size_t len, size_t max, int k, const char *id, json_t **out,
                     struct csa_err *err)
{
	char src[CSA_ID_MAX + 32];
	where(src, sizeof(src), k, id);
	if (len > max)
		return csa_error(err, CSA_ELIMIT, "'%s' is %zu bytes, limit is %zu", src, len, max);
	return csa_json_parse(buf, len, src, out, err);
}

static int mem_load_locked(struct csa_store *st, const char *id, struct csa_ticket *out,
                           struct csa_err *err)
{
	struct memstore *m = (struct memstore *)st;
	memset(out, 0, sizeof(*out));
	int rc = csa_id_check(id, strlen(id), err);
	if (rc)
		return rc;
	char *b[3];
	size_t len[3];
	if ((rc = copy_bytes(m, id, CSA_DOC_ALL, b, len)))
		return rc == CSA_ENOENT
		           ? csa_error(err, rc, "no ticket '%s'", id)
		           : csa_error(err, rc, "out of memory loading ticket '%s'", id);
	size_t max = max_doc_bytes(m);
	json_t **slots[3] = {&out->e, &out->i, &out->t};
	for (int k = 0; k < 3; k++) {
		out->loaded[k] = b[k];
		out->loaded_len[k] = len[k];
	}
	/* T first, as the files are read */
	static const int order[3] = {2, 0, 1};
	for (int n = 0; n < 3 && rc == CSA_OK; n++) {
		int k = order[n];
		if ((rc = parse_doc(b[k], len[k], max, k, id, slots[k], err)) == CSA_OK)
			rc = csa_schema_check((enum csa_doc_kind)k, id, *slots[k], err);
	}
	if (rc) {
		csa_ticket_release(out);
		return rc;
	}
	memcpy(out->id, id, strlen(id) + 1);
	out->exists = 1;
	return CSA_OK;
}

/* No lock to wait for: a commit replaces all three documents at once. */
static int mem_load(struct csa_store *st, const char *id, struct csa_ticket *out,
                    struct csa_err *err)
{
	return mem_load_locked(st, id, out, err);
}

static int mem_load_doc(struct csa_store *st, const char *id, unsigned doc, json_t **out,
                        struct csa_err *err)
{
	struct memstore *m = (struct memstore *)st;
	int k = doc == CSA_DOC_E ? 0 : doc == CSA_DOC_I ? 1 : doc == CSA_DOC_T ? 2 : -1;
	*out = NULL;
	if (k < 0)
		CSA_BUG("load_doc: doc is not one of CSA_DOC_E, CSA_DOC_I, CSA_DOC_T");
	int rc = csa_id_check(id, strlen(id), err);
	if (rc)
		return rc;
	char *b[3];
	size_t len[3];
	if ((rc = copy_bytes(m, id, doc, b, len)))
		return rc == CSA_ENOENT
		           ? csa_error(err, rc, "no ticket '%s'", id)
		           : csa_error(err, rc, "out of memory loading ticket '%s'", id);
	rc = parse_doc(b[k], len[k], max_doc_bytes(m), k, id, out, err);
	free(b[k]);
	return rc;
}

/* ---- commit --------------------------------------------------------------- */

/* Is ticket i of tks new and refused: it exists, or a new ticket of the
 * same id comes before it in the group? Caller holds mu. */
static int refused_new(struct memstore *m, struct csa_ticket *const *tks, size_t i,
                       struct csa_err *err)
{
	const struct csa_ticket *tk = tks[i];
	if (tk->exists)
		return CSA_OK;
	if (find(m, tk->id))
		return csa_error(err, CSA_EEXIST, "ticket '%s' already exists", tk->id);
	for (size_t k = 0; k < i; k++)
		if (!tks[k]->exists && strcmp(tks[k]->id, tk->id) == 0)
			return csa_error(err, CSA_EEXIST, "ticket '%s' appears twice", tk->id);
	return CSA_OK;
}

/*
 * The mesh's commit without its files: every ticket prepared first (the
 * stamps, the checks, the bytes), so a ticket refused leaves the whole
 * group unwritten; then, under the write lock, the new tickets checked
 * for existence, and every ticket's bytes replaced at once. The caller's
 * tickets then hold those bytes in loaded[] and exist, as after a mesh
 * commit.
 */
static int mem_commit(struct csa_store *st, struct csa_ticket *const *tks, size_t n, unsigned docs,
                      struct csa_err *err)
{
	struct memstore *m = (struct memstore *)st;
	if (n == 0)
		return CSA_OK;
	char ts[CSA_TS_LEN];
	csa_ts_format(csa_now_ms(), ts);
	const struct csa_config *cfg = csa_ws_config(m->ws);
	struct csa_limits lim = cfg->limits;
	csa_config_unref(cfg);
	/* per ticket: its three prepared documents, a copy for the store, and
	 * an entry when it is not stored yet */
	struct prep {
		char *bytes[3], *kept[3];
		size_t len[3];
		struct mticket *fresh;
	} *p = calloc(n, sizeof(*p));
	if (!p)
		return csa_error(err, CSA_ENOMEM, "out of memory committing %zu tickets", n);
	int rc = CSA_OK;
	for (size_t i = 0; i < n && rc == CSA_OK; i++) {
		rc = csa_ticket_prepare_commit(tks[i], docs, ts, &lim, p[i].bytes, p[i].len, err);
		for (int k = 0; k < 3 && rc == CSA_OK; k++)
			if ((p[i].kept[k] = malloc(p[i].len[k] + 1))) {
				memcpy(p[i].kept[k], p[i].bytes[k], p[i].len[k]);
				p[i].kept[k][p[i].len[k]] = '\0';
			} else {
				rc = csa_error(err, CSA_ENOMEM, "out of memory committing '%s'",
				               tks[i]->id);
			}
	}
	if (rc == CSA_OK) {
		pthread_rwlock_wrlock(&m->mu);
		for (size_t i = 0; i < n && rc == CSA_OK; i++)
			rc = refused_new(m, tks, i, err);
		/* an entry for each ticket not stored yet (a loaded one too, as
		 * the mesh would write its files again), before anything changes */
		for (size_t i = 0; i < n && rc == CSA_OK; i++)
			if (!find(m, tks[i]->id) && !(p[i].fresh = calloc(1, sizeof(*p[i].fresh))))
				rc = csa_error(err, CSA_ENOMEM, "out of memory committing '%s'",
				               tks[i]->id);
		if (rc == CSA_OK && reserve(m, n))
			rc = csa_error(err, CSA_ENOMEM, "out of memory committing %zu tickets", n);
		if (rc == CSA_OK) {
			int64_t now = real_ns();
			m->commits++;
			m->batches++;
			for (size_t i = 0; i < n; i++) {
				struct mticket **s = find_slot(m, tks[i]->id), *t = *s;
				if (!t) {
					t = *s = p[i].fresh;
					p[i].fresh = NULL;
					memcpy(t->id, tks[i]->id, strlen(tks[i]->id) + 1);
					m->n++;
				}
				for (int k = 0; k < 3; k++) {
					free(t->bytes[k]);
					t->bytes[k] = p[i].kept[k];
					t->len[k] = p[i].len[k];
					p[i].kept[k] = NULL;
				}
				t->version = m->commits;
				t->changed_ns = now;
			}
		}
		pthread_rwlock_unlock(&m->mu);
	}
	for (size_t i = 0; i < n; i++) {
		for (int k = 0; k < 3; k++) {
			if (rc == CSA_OK) { /* the caller's ticket now holds what is stored */
				free(tks[i]->loaded[k]);
				tks[i]->loaded[k] = p[i].bytes[k];
				tks[i]->loaded_len[k] = p[i].len[k];
			} else {
				free(p[i].bytes[k]);
			}
			free(p[i].kept[k]);
		}
		free(p[i].fresh);
		if (rc == CSA_OK)
			tks[i]->exists = 1;
	}
	free(p);
	return rc;
}

/* ---- locks ---------------------------------------------------------------- */

static int held(const struct memstore *m, const char *id)
{
	for (const struct csa_lock *l = m->held; l; l = l->next)
		if (strcmp(l->id, id) == 0)
			return 1;
	return 0;
}

static int mem_lock(struct csa_store *st, const char *id, struct csa_lock **out,
                    struct csa_err *err)
{
	struct memstore *m = (struct memstore *)st;
	*out = NULL;
	int rc = csa_id_check(id, strlen(id), err);
	if (rc)
		return rc;
	struct csa_lock *lk = calloc(1, sizeof(*lk));
	if (!lk)
		return csa_error(err, CSA_ENOMEM, "out of memory locking ticket '%s'", id);
	lk->m = m;
	memcpy(lk->id, id, strlen(id) + 1);
	pthread_mutex_lock(&m->lock_mu);
	while (held(m, id))
		pthread_cond_wait(&m->lock_cv, &m->lock_mu);
	lk->next = m->held;
	m->held = lk;
	pthread_mutex_unlock(&m->lock_mu);
	*out = lk;
	return CSA_OK;
}

static void mem_unlock(struct csa_lock *lk)
{
	if (!lk)
		return;
	struct memstore *m = lk->m;
	pthread_mutex_lock(&m->lock_mu);
	for (struct csa_lock **p = &m->held; *p; p = &(*p)->next)
		if (*p == lk) {
			*p = lk->next;
			break;
		}
	pthread_cond_broadcast(&m->lock_cv);
	pthread_mutex_unlock(&m->lock_mu);
	free(lk);
}

/* ---- ids and scans ---------------------------------------------------------- */

static int id_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int mem_ids(struct csa_store *st, char ***out, size_t *n_out, struct csa_err *err)
{
	struct memstore *m = (struct memstore *)st;
	*out = NULL;
	*n_out = 0;
	pthread_rwlock_rdlock(&m->mu);
	char **ids = malloc((m->n ? m->n : 1) * sizeof(*ids));
	size_t n = 0;
	int rc = ids ? CSA_OK : CSA_ENOMEM;
	for (size_t i = 0; i < m->cap && rc == CSA_OK; i++)
		if (m->slot[i] && !(ids[n++] = strdup(m->slot[i]->id)))
			rc = CSA_ENOMEM;
	pthread_rwlock_unlock(&m->mu);
	if (rc) {
		csa_store_ids_free(ids, n);
		return csa_error(err, rc, "out of memory listing tickets");
	}
	qsort(ids, n, sizeof(*ids), id_cmp);
	*out = ids;
	*n_out = n;
	return CSA_OK;
}

/* As the mesh's scan: each ticket's T (and E, for a status filter) as of
 * when it is visited, in id order; one that cannot be read is skipped. */
static int mem_scan(struct csa_store *st, const struct csa_filter *f, csa_scan_fn fn, void *ctx,
                    struct csa_err *err)
{
	char **ids;
	size_t n;
	int rc = mem_ids(st, &ids, &n, err);
	for (size_t i = 0; i < n && rc == CSA_OK; i++) {
		json_t *t = NULL, *e = NULL;
		if (mem_load_doc(st, ids[i], CSA_DOC_T, &t, NULL))
			continue;
		const char *pr = csa_json_str(t, "priority"),
		           *stg = csa_json_str(t, "workflow_stage");
		int match = (!f || !f->priority || (pr && strcmp(pr, f->priority) == 0)) &&
		            (!f || !f->stage || (stg && strcmp(stg, f->stage) == 0));
		const char *status = NULL;
		if (match && f && f->status) {
			if (mem_load_doc(st, ids[i], CSA_DOC_E, &e, NULL) == CSA_OK)
				status = csa_json_str(e, "conversation_status");
			match = status && strcmp(status, f->status) == 0;
		}
		if (match)
			rc = fn(ctx, ids[i], t, status);
		json_decref(t);
		json_decref(e);
	}
	csa_store_ids_free(ids, n);
	return rc;
}

/* ---- what indexes beside the store ask -------------------------------------- */

static uint64_t mem_version(struct csa_store *st, const char *id, int64_t *newest_ns)
{
	struct memstore *m = (struct memstore *)st;
	*newest_ns = 0;
	if (csa_id_check(id, strlen(id), NULL))
		return 0;
	pthread_rwlock_rdlock(&m->mu);
	const struct mticket *t = find(m, id);
	uint64_t v = t ? t->version : 0;
	if (t)
		*newest_ns = t->changed_ns;
	pthread_rwlock_unlock(&m->mu);
	return v;
}

static void mem_stats(struct csa_store *st, struct csa_store_stats *out)
{
	struct memstore *m = (struct memstore *)st;
	pthread_rwlock_rdlock(&m->mu);
	out->commits = (long)m->commits;
	out->batches = m->batches;
	out->checkpoints = 0;
	pthread_rwlock_unlock(&m->mu);
}

/* Every commit is this handle's: a mark has nothing to note. */
static void mem_mark(struct csa_store *st, unsigned slot)
{
	(void)st, (void)slot;
}

static uint64_t mem_stamp(struct csa_store *st, unsigned slot, int *only_own)
{
	struct memstore *m = (struct memstore *)st;
	(void)slot;
	pthread_rwlock_rdlock(&m->mu);
	uint64_t s = m->commits;
	pthread_rwlock_unlock(&m->mu);
	*only_own = 1;
	return s;
}

/* No commit is half done while the write lock is held. */
static int mem_hold(struct csa_store *st, int (*fn)(void *ctx, struct csa_err *err), void *ctx,
                    struct csa_err *err)
{
	struct memstore *m = (struct memstore *)st;
	pthread_rwlock_wrlock(&m->mu);
	int rc = fn(ctx, err);
	pthread_rwlock_unlock(&m->mu);
	return rc;
}

static int mem_checkpoint(struct csa_store *st, struct csa_err *err)
{
	(void)st, (void)err;
	return CSA_OK; /* nothing is pending anywhere else */
}

static void mem_close(struct csa_store *st)
{
	struct memstore *m = (struct memstore *)st;
	for (size_t i = 0; i < m->cap; i++) {
		struct mticket *t = m->slot[i];
		for (int k = 0; t && k < 3; k++)
			free(t->bytes[k]);
		free(t);
	}
	free(m->slot);
	pthread_rwlock_destroy(&m->mu);
	pthread_mutex_destroy(&m->lock_mu);
	pthread_cond_destroy(&m->lock_cv);
	free(m);
}

static const struct csa_store_ops mem_ops = {
    .name = "memory",
    .load = mem_load,
    .load_locked = mem_load_locked,
    .commit = mem_commit,
    .lock = mem_lock,
    .unlock = mem_unlock,
    .scan = mem_scan,
    .checkpoint = mem_checkpoint,
    .close = mem_close,
    .ids = mem_ids,
    .version = mem_version,
    .stats = mem_stats,
    .load_doc = mem_load_doc,
    .mark = mem_mark,
    .stamp = mem_stamp,
    .position = NULL, /* nothing outlives the process to be checked against */
    .hold = mem_hold,
};

int csa_store_is_memory(const struct csa_store *st)
{
	return st && st->ops == &mem_ops;
}

int csa_memstore_open(struct csa_ws *ws, struct csa_store **out, struct csa_err *err)
{
	struct memstore *m = calloc(1, sizeof(*m));
	if (!m || !(m->slot = calloc(1024, sizeof(*m->slot)))) {
		free(m);
		return csa_error(err, CSA_ENOMEM, "out of memory opening a memory store");
	}
	m->cap = 1024;
	m->base.ops = &mem_ops;
	m->ws = ws;
	pthread_rwlock_init(&m->mu, NULL);
	pthread_mutex_init(&m->lock_mu, NULL);
	pthread_cond_init(&m->lock_cv, NULL);
	*out = &m->base;
	return CSA_OK;
}
