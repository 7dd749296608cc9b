/*
 * The workspace's log of online-learning examples: an append-only list of
 * entries that every process of the workspace (every node of a database)
 * reads in the same order. A pipeline that learns from a person's
 * correction appends the example here, and every pipeline, the one that
 * appended included, applies the entries in log order, so that every
 * node's models go through the same updates (flow/online.h says what an
 * entry holds and when it is applied).
 *
 * The store knows nothing of models: an entry is a kind (a short name,
 * "category") and a body of at most CSA_LEARNLOG_BODY_MAX bytes, given a
 * position 'seq' by append. Positions grow with every append and never
 * repeat within one log; they may have gaps. Entries become visible to
 * readers in the order of their positions: a reader that has seen
 * position n never later finds an entry below n that it had not seen
 * (each backend serialises its appends so that commit order is position
 * order). Bodies are bytes, stored as parameters, never put into SQL.
 *
 * A log has an identity (id(): a random string made when the log was
 * created): a position means something only in the log that gave it. A
 * model saved with "covers position n of log X" is read against another
 * log (a workspace restored from a backup without its log, one moved into
 * a database) as covering nothing of it.
 *
 * Bounded: append drops the entries more than CSA_LEARNLOG_KEEP positions
 * behind the one it adds, and prune() drops what every saved model has
 * covered (flow/online.c).
 *
 * Backends, behind a table of function pointers like store/blobs.h: a
 * SQLite database of the workspace (.csa/online.db, learnlog_sqlite.c)
 * for the processes sharing a workspace directory on one host, or the
 * table csa_online_examples of the workspace's PostgreSQL database
 * (learnlog_pg.c). Thread safety: a handle may be used by any number of
 * threads at once.
 */
#ifndef CSA_STORE_LEARNLOG_H
#define CSA_STORE_LEARNLOG_H

#include <stddef.h>
#include <stdint.h>
#include "base/err.h"

/* The largest body of an entry: a customer's text as the models read it
 * (4,000 bytes, JSON-escaped) with its features and label fits. */
#define CSA_LEARNLOG_BODY_MAX ((size_t)64 * 1024)
/* Positions an entry stays behind the newest before append drops it: far
 * more corrections than a team makes between two retrainings (an entry
 * is a few KB: about 100 MB of customer text at most in practice). */
#define CSA_LEARNLOG_KEEP 20000
/* The length of a kind: 1..31 bytes of [a-z0-9_.-]. */
#define CSA_LEARNLOG_KIND_MAX 31
/* The length of a log's identity. */
#define CSA_LEARNLOG_ID_LEN 32

struct csa_learnlog;

/* One entry as read. */
struct csa_learnlog_entry {
	int64_t seq;
	char kind[CSA_LEARNLOG_KIND_MAX + 1];
	char *body; /* NUL-terminated past len; owned by the array read() returns */
	size_t len;
};

struct csa_learnlog_ops {
	/* Add an entry; *seq (may be NULL) receives its position. The entry
	 * is durable when this returns CSA_OK; on failure nothing was added. */
	int (*append)(struct csa_learnlog *l, const char *kind, const void *body, size_t len,
	              int64_t *seq, struct csa_err *err);
	/* At most 'max' entries with positions above 'after', in position
	 * order: a new array of *n entries (free with csa_learnlog_free_entries;
	 * NULL when *n is 0). */
	int (*read)(struct csa_learnlog *l, int64_t after, size_t max,
	            struct csa_learnlog_entry **out, size_t *n, struct csa_err *err);
	/* The highest position of an entry in the log, 0 when it has none. */
	int (*head)(struct csa_learnlog *l, int64_t *seq, struct csa_err *err);
	/* Drop the entries of 'kind' at or below 'upto'. */
	int (*prune)(struct csa_learnlog *l, const char *kind, int64_t upto, struct csa_err *err);
	/* The log's identity into out (CSA_LEARNLOG_ID_LEN characters and a
	 * NUL). Made by the first caller that needs it, not when the log is
	 * opened: opening the workspace of a restore must leave an empty
	 * database empty. */
	int (*id)(struct csa_learnlog *l, char out[CSA_LEARNLOG_ID_LEN + 1], struct csa_err *err);
	void (*close)(struct csa_learnlog *l);
};

struct csa_learnlog {
	const struct csa_learnlog_ops *ops;
};

/* CSA_OK, or CSA_EINVAL naming what is wrong with 'kind'. */
int csa_learnlog_kind_check(const char *kind, struct csa_err *err);

/* The SQLite backend over the database file 'path' (created, private,
 * when missing). */
int csa_learnlog_open_sqlite(const char *path, struct csa_learnlog **out, struct csa_err *err);

/* The PostgreSQL backend (learnlog_pg.c), on the workspace's pool; its
 * table comes with the schema migrations (store/pg.c, migration 9). */
struct csa_pg;
int csa_learnlog_open_pg(struct csa_pg *pg, struct csa_learnlog **out, struct csa_err *err);

/* Free what read() returned. NULL is a no-op. */
void csa_learnlog_free_entries(struct csa_learnlog_entry *e, size_t n);

static inline int csa_learnlog_append(struct csa_learnlog *l, const char *kind, const void *body,
                                      size_t len, int64_t *seq, struct csa_err *err)
{
	return l->ops->append(l, kind, body, len, seq, err);
}

static inline int csa_learnlog_read(struct csa_learnlog *l, int64_t after, size_t max,
                                    struct csa_learnlog_entry **out, size_t *n, struct csa_err *err)
{
	return l->ops->read(l, after, max, out, n, err);
}

static inline int csa_learnlog_head(struct csa_learnlog *l, int64_t *seq, struct csa_err *err)
{
	return l->ops->head(l, seq, err);
}

static inline int csa_learnlog_prune(struct csa_learnlog *l, const char *kind, int64_t upto,
                                     struct csa_err *err)
{
	return l->ops->prune(l, kind, upto, err);
}

static inline int csa_learnlog_id(struct csa_learnlog *l, char out[CSA_LEARNLOG_ID_LEN + 1],
                                  struct csa_err *err)
{
	return l->ops->id(l, out, err);
}

static inline void csa_learnlog_close(struct csa_learnlog *l)
{
	if (l)
		l->ops->close(l);
}

#endif
