/*
 * The ticket store: the three documents of every ticket (spec §3.2) behind
 * a table of operations, so the file mesh (store/mesh.c) can be joined by
 * other backends (PostgreSQL) that pass the same contract tests.
 *
 * Concurrency: a caller that reads a ticket in order to change it holds the
 * ticket's lock from load to commit (csa_store_update() does this for you).
 * Locks work across threads and processes. Loads need no lock: a reader
 * always sees whole commits.
 */
#ifndef CSA_STORE_STORE_H
#define CSA_STORE_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "base/err.h"
#include "base/ids.h"
#include "base/ts.h"

/* Which documents a commit writes. T is always written: its
 * last_synchronized records the commit. */
enum { CSA_DOC_E = 1, CSA_DOC_I = 2, CSA_DOC_T = 4, CSA_DOC_ALL = 7 };

/* One ticket's documents. e, i, t are owned references (json_decref). */
struct csa_ticket {
	char id[CSA_ID_MAX + 1];
	json_t *e;
	json_t *i;
	json_t *t;
	int exists; /* loaded from the store (1) or new (0) */
	/* The bytes each document had when loaded (E, I, T), kept so a commit
	 * that fails half-way can put them back. Owned; backend-private. */
	char *loaded[3];
	size_t loaded_len[3];
	/* The version it was loaded at (backend-private; 0 when the backend
	 * keeps none): the database backend commits a loaded ticket only if
	 * nobody committed it since (CSA_ECONFLICT otherwise). */
	uint64_t version;
};

void csa_ticket_release(struct csa_ticket *tk);

struct csa_lock;
struct csa_store;

/* A filter for scans; NULL fields match everything. */
struct csa_filter {
	const char *status;   /* E.conversation_status */
	const char *priority; /* T.priority */
	const char *stage;    /* T.workflow_stage */
};

/* Called once per ticket by scan, with the ticket's T document (borrowed)
 * and E's conversation_status. A nonzero return stops the scan and is
 * returned by it. */
typedef int (*csa_scan_fn)(void *ctx, const char *id, const json_t *t, const char *status);

/* Counters of one store handle since it was opened. */
struct csa_store_stats {
	long commits;     /* commits by this handle */
	long batches;     /* durable steps they took (commits made at once share one) */
	long checkpoints; /* checkpoints by this handle */
};

struct csa_store_ops {
	const char *name;
	/* Load all three documents of 'id' into *out (released by the caller),
	 * as of one commit: load takes the ticket's lock shared while reading.
	 * CSA_ENOENT if the ticket does not exist. */
	int (*load)(struct csa_store *st, const char *id, struct csa_ticket *out,
	            struct csa_err *err);
	/* The same for a caller that already holds the ticket's lock. */
	int (*load_locked)(struct csa_store *st, const char *id, struct csa_ticket *out,
	                   struct csa_err *err);
	/* Write the documents named by 'docs' of 'n' tickets in one atomic,
	 * durable step, stamping last_updated / last_synchronized. T is always
	 * written; E or I not named in 'docs' keeps, for a loaded ticket, the
	 * bytes it was loaded with (a change to it in memory is not written).
	 * Every document written is schema-checked first; nothing is written
	 * on error. New tickets (exists == 0) must not exist yet (CSA_EEXIST),
	 * and have all three written. */
	int (*commit)(struct csa_store *st, struct csa_ticket *const *tks, size_t n, unsigned docs,
	              struct csa_err *err);
	/* Lock one ticket exclusively (blocking), across threads and
	 * processes. Holding one ticket's lock never blocks work on another. */
	int (*lock)(struct csa_store *st, const char *id, struct csa_lock **out,
	            struct csa_err *err);
	void (*unlock)(struct csa_lock *lk);
	/* Visit tickets matching 'f' in id order. */
	int (*scan)(struct csa_store *st, const struct csa_filter *f, csa_scan_fn fn, void *ctx,
	            struct csa_err *err);
	/* Flush pending state to its final place (journal checkpoint). */
	int (*checkpoint)(struct csa_store *st, struct csa_err *err);
	void (*close)(struct csa_store *st);

	/* For indexes kept beside the store (agents/histfile.h's history
	 * index), which must not read every ticket on every start: */

	/* The ids of every ticket, sorted (strcmp), without reading a
	 * document: *ids is a malloc'd array of n malloc'd strings, freed by
	 * the caller (csa_store_ids_free). On failure *ids is NULL, *n 0. */
	int (*ids)(struct csa_store *st, char ***ids, size_t *n, struct csa_err *err);
	/* A version of ticket 'id' as stored, for caches and indexes of what
	 * is derived from it: nonzero, and different after any commit of it
	 * (by this process or another; the mesh: inode, size and mtime of its
	 * three files), without a lock or reading a document; 0 when there is
	 * none (a document missing). *newest_ns is the time of its latest
	 * change: a version is to be trusted only when that is a couple of
	 * seconds old, since a change within the clock's granularity may keep
	 * it (csa_store_version() says so as 'settled'). */
	uint64_t (*version)(struct csa_store *st, const char *id, int64_t *newest_ns);
	/* One document of 'id' (doc: one of CSA_DOC_E, CSA_DOC_I, CSA_DOC_T)
	 * into *out (json_decref), within the size limit, without the ticket's
	 * lock or a schema check: it may be of a commit other than the other
	 * two documents'. For a reader that checks the signature around it.
	 * CSA_ENOENT when it does not exist. */
	int (*load_doc)(struct csa_store *st, const char *id, unsigned doc, json_t **out,
	                struct csa_err *err);
	/* The handle's counters. */
	void (*stats)(struct csa_store *st, struct csa_store_stats *out);
	/* For an index that must notice commits by other handles and
	 * processes without comparing every ticket's version each time (both
	 * may be NULL: then it must compare them every time). Each index has
	 * a slot of its own (enum csa_store_mark_slot), so one index's mark
	 * never moves another's: */

	/* Note the store's position now in 'slot', with no commit half done:
	 * from here on, stamp() says whether every commit since was this
	 * handle's. */
	void (*mark)(struct csa_store *st, unsigned slot);
	/* A value that changes with every commit by anyone (the mesh: the
	 * journal's identity and length, exact, no clock involved), and in
	 * *only_own 1 when every commit since the last mark() of 'slot' went
	 * through this handle (whose commits csa_store_observe reports), 0
	 * when another handle or process may have committed. */
	uint64_t (*stamp)(struct csa_store *st, unsigned slot, int *only_own);
	/* For an index saved between runs (agents/histfile.h): a value of the
	 * store's position that holds across processes and restarts, taken
	 * with no commit half done, and different after any commit by anyone
	 * since (the mesh: the journal's identity, length and time, the trim
	 * counter, and the identity and time of the three ticket directories,
	 * so that a file added, renamed or removed by hand changes it too).
	 * An edit in place that no commit made does not change it. 0 when
	 * unknown. May be NULL: an index then checks every ticket's version. */
	uint64_t (*position)(struct csa_store *st);
	/* For a consistent copy of the whole store (store/backup.h; may be
	 * NULL: the backend cannot be copied from outside): call fn(ctx) with
	 * no commit of any handle or process half done and none starting
	 * until it returns (the mesh: under the journal lock, where every
	 * acknowledged commit is renamed into Tickets/), and return what fn
	 * returned. fn must be quick: every writer waits for it. */
	int (*hold)(struct csa_store *st, int (*fn)(void *ctx, struct csa_err *err), void *ctx,
	            struct csa_err *err);
};

/* Called after every successful commit through this handle with the ids of
 * the tickets it wrote, on the committing thread, so it must be quick
 * (note the ids, wake a thread). */
typedef void (*csa_commit_fn)(void *ctx, struct csa_ticket *const *tks, size_t n);

/* The marks of csa_store_mark / csa_store_stamp, one per index. */
enum csa_store_mark_slot { CSA_MARK_SEARCH, CSA_MARK_HISTORY, CSA_MARK_KPIS, CSA_MARK_SLOTS };

/* Observers of one handle's commits at once: the search index, the
 * history index, a training cache, the Trello board, the tickets' KPIs. */
#define CSA_STORE_OBSERVERS 6

struct csa_doccache;

struct csa_store {
	const struct csa_store_ops *ops;
	/* The observers of this handle's commits (csa_store_observe); commits
	 * by other handles and processes are not seen here. */
	struct {
		csa_commit_fn fn;
		void *ctx;
	} observers[CSA_STORE_OBSERVERS];
	/* The documents of its latest commits, when csa_store_cache_docs()
	 * turned that on; NULL otherwise. */
	struct csa_doccache *docs;
};

/*
 * For a handle that is the only writer of its store and loads what it has
 * just committed (the replay's scratch workspace, store/ws.h): keep the
 * documents of the last 'tickets' tickets it committed whole (CSA_DOC_ALL)
 * in memory, so that loading one of them reads no file. A load served so
 * gives what the files would (the same documents, numbers as they read
 * back, the same bytes in tk->loaded) and takes the ticket's entry: the
 * next load reads the files unless another commit came in between
 * (store/doccache.c). Commits by another handle or process are not seen,
 * and a load of a kept ticket takes no lock: do not turn it on where
 * there are any. Call before commits start; csa_store_close() frees it.
 * Called again, it keeps what it has and grows to 'tickets' (it never
 * shrinks): a replay that reads back the last thousand tickets to retrain
 * keeps that many. CSA_ENOMEM leaves it as it was.
 */
int csa_store_cache_docs(struct csa_store *st, size_t tickets);

/* Real number v as a stored document gives it back (compact JSON with
 * CSA_STORE_REAL_PRECISION significant digits, read with strtod) into
 * *out; 0 when it would not read back (it overflows once rounded). For a
 * cache of what commits hold that must equal what a read would find. */
int csa_store_real_read_back(double v, double *out);

/* store/doccache.c, for the inline functions below: the new cache, its
 * end; move ticket 'id''s documents into *out (1) or leave *out alone when
 * it has none (0); and what commit of tks[0..n) of 'docs' did ('ok': it
 * succeeded). */
int csa_doccache_new(size_t tickets, struct csa_doccache **out);
int csa_doccache_grow(struct csa_doccache *c, size_t tickets);
void csa_doccache_free(struct csa_doccache *c);
int csa_doccache_take(struct csa_doccache *c, const char *id, struct csa_ticket *out);
void csa_doccache_committed(struct csa_doccache *c, struct csa_ticket *const *tks, size_t n,
                            unsigned docs, int ok);
/* For csa_store_update(): ticket tk, just committed whole and released
 * right after, into the cache by moving its documents and bytes there
 * (tk->e, i, t and loaded[] NULL after), not by copying them; 1 when
 * kept, 0 when not (its documents may then have had numbers rounded:
 * release it). */
int csa_doccache_adopt(struct csa_doccache *c, struct csa_ticket *tk);

/* Add an observer of the handle's commits; CSA_ELIMIT when
 * CSA_STORE_OBSERVERS are there already. Not thread-safe: add it before
 * commits start and remove it (csa_store_unobserve) after they end. */
static inline int csa_store_observe(struct csa_store *st, csa_commit_fn fn, void *ctx)
{
	for (int k = 0; k < CSA_STORE_OBSERVERS; k++)
		if (!st->observers[k].fn) {
			st->observers[k].fn = fn;
			st->observers[k].ctx = ctx;
			return CSA_OK;
		}
	return CSA_ELIMIT;
}

/* Remove the observer added with the same fn and ctx (none: a no-op). */
static inline void csa_store_unobserve(struct csa_store *st, csa_commit_fn fn, void *ctx)
{
	for (int k = 0; k < CSA_STORE_OBSERVERS; k++)
		if (st->observers[k].fn == fn && st->observers[k].ctx == ctx) {
			st->observers[k].fn = NULL;
			st->observers[k].ctx = NULL;
			return;
		}
}

static inline void csa_store_notify(struct csa_store *st, struct csa_ticket *const *tks, size_t n)
{
	for (int k = 0; k < CSA_STORE_OBSERVERS; k++)
		if (st->observers[k].fn)
			st->observers[k].fn(st->observers[k].ctx, tks, n);
}

static inline int csa_store_load(struct csa_store *st, const char *id, struct csa_ticket *out,
                                 struct csa_err *err)
{
	if (st->docs && csa_doccache_take(st->docs, id, out))
		return CSA_OK;
	return st->ops->load(st, id, out, err);
}

static inline int csa_store_load_locked(struct csa_store *st, const char *id,
                                        struct csa_ticket *out, struct csa_err *err)
{
	if (st->docs && csa_doccache_take(st->docs, id, out))
		return CSA_OK;
	return st->ops->load_locked(st, id, out, err);
}

static inline int csa_store_commit(struct csa_store *st, struct csa_ticket *tk, unsigned docs,
                                   struct csa_err *err)
{
	struct csa_ticket *one[1] = {tk};
	int rc = st->ops->commit(st, one, 1, docs, err);
	if (st->docs)
		csa_doccache_committed(st->docs, one, 1, docs, rc == CSA_OK);
	if (rc == CSA_OK)
		csa_store_notify(st, one, 1);
	return rc;
}

/* Group commit: many tickets, one durable step. */
static inline int csa_store_commit_many(struct csa_store *st, struct csa_ticket *const *tks,
                                        size_t n, unsigned docs, struct csa_err *err)
{
	int rc = st->ops->commit(st, tks, n, docs, err);
	if (st->docs)
		csa_doccache_committed(st->docs, tks, n, docs, rc == CSA_OK);
	if (rc == CSA_OK)
		csa_store_notify(st, tks, n);
	return rc;
}

static inline int csa_store_lock(struct csa_store *st, const char *id, struct csa_lock **out,
                                 struct csa_err *err)
{
	return st->ops->lock(st, id, out, err);
}

static inline void csa_store_unlock(struct csa_store *st, struct csa_lock *lk)
{
	if (lk)
		st->ops->unlock(lk);
}

static inline int csa_store_scan(struct csa_store *st, const struct csa_filter *f, csa_scan_fn fn,
                                 void *ctx, struct csa_err *err)
{
	return st->ops->scan(st, f, fn, ctx, err);
}

static inline int csa_store_ids(struct csa_store *st, char ***ids, size_t *n, struct csa_err *err)
{
	return st->ops->ids(st, ids, n, err);
}

/* Free what csa_store_ids() returned; (NULL, 0) is a no-op. */
static inline void csa_store_ids_free(char **ids, size_t n)
{
	for (size_t i = 0; ids && i < n; i++)
		free(ids[i]);
	free(ids);
}

static inline uint64_t csa_store_sig(struct csa_store *st, const char *id, int64_t *newest_ns)
{
	return st->ops->version(st, id, newest_ns);
}

/* The version, and whether it is settled: sure to change with the next
 * commit (its latest change is more than two seconds old). Cache only
 * under a settled version. */
static inline uint64_t csa_store_version(struct csa_store *st, const char *id, int *settled)
{
	int64_t newest_ns = 0;
	uint64_t v = st->ops->version(st, id, &newest_ns);
	*settled = v && newest_ns <= csa_now_ms() * 1000000LL - 2000000000LL;
	return v;
}

/* See the ops. Without them: a stamp of 0 and *only_own 0 (a caller
 * compares versions every time). */
static inline void csa_store_mark(struct csa_store *st, enum csa_store_mark_slot slot)
{
	if (st->ops->mark)
		st->ops->mark(st, slot);
}

static inline uint64_t csa_store_stamp(struct csa_store *st, enum csa_store_mark_slot slot,
                                       int *only_own)
{
	*only_own = 0;
	return st->ops->stamp ? st->ops->stamp(st, slot, only_own) : 0;
}

/* See the op; 0 (unknown) for a backend without it. */
static inline uint64_t csa_store_position(struct csa_store *st)
{
	return st->ops->position ? st->ops->position(st) : 0;
}

/* See the op; CSA_ESTATE for a backend without it. */
static inline int csa_store_hold(struct csa_store *st, int (*fn)(void *ctx, struct csa_err *err),
                                 void *ctx, struct csa_err *err)
{
	if (!st->ops->hold)
		return csa_error(err, CSA_ESTATE,
		                 "the '%s' store cannot hold its commits for a copy",
		                 st->ops->name);
	return st->ops->hold(st, fn, ctx, err);
}

static inline void csa_store_stats(struct csa_store *st, struct csa_store_stats *out)
{
	st->ops->stats(st, out);
}

static inline int csa_store_load_doc(struct csa_store *st, const char *id, unsigned doc,
                                     json_t **out, struct csa_err *err)
{
	return st->ops->load_doc(st, id, doc, out, err);
}

static inline void csa_store_close(struct csa_store *st)
{
	if (!st)
		return;
	csa_doccache_free(st->docs);
	st->docs = NULL;
	st->ops->close(st);
}

/*
 * Read-modify-write of one ticket under its lock: load, call fn (which
 * changes tk's documents and sets *docs to what it changed; a nonzero
 * return aborts without writing and is returned), commit. When 'create' is
 * nonzero a missing ticket is passed to fn empty (tk->exists == 0).
 */
typedef int (*csa_update_fn)(void *ctx, struct csa_ticket *tk, unsigned *docs, struct csa_err *err);
int csa_store_update(struct csa_store *st, const char *id, int create, csa_update_fn fn, void *ctx,
                     struct csa_err *err);

#endif
