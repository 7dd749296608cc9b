/*
 * The audit ledger (audit/ledger.jsonl): every decision, review, phase
 * change, rollback point, rollback and alert, one JSON record per line,
 * each carrying the SHA-256 of the record before it:
 *
 *   {"seq", "timestamp", "type", "ticket_id", "payload", "prev", "hash"}
 *
 * hash = SHA-256 of the record's canonical form without "hash" (compact,
 * payload keys sorted). Editing, removing, inserting or reordering any
 * record breaks the chain, which csa_ledger_verify() finds.
 *
 * The file backend (ledger.c) is described here; the PostgreSQL one
 * (ledger_pg.c) keeps the same lines in the table csa_ledger.
 *
 * Appends are serialised between threads (mutex) and processes (flock).
 * They are made durable in groups, off the appending thread: a thread of
 * the ledger fdatasyncs every 50 ms while there are new records (a failed
 * flush is reported by the next append), and close always syncs; a crash
 * can lose at most the records of the last 50 ms, never break the chain:
 * an append is one write ending in a newline, and a tail a crash cut
 * short is removed before the next append.
 */
#ifndef CSA_AUTOMATION_LEDGER_H
#define CSA_AUTOMATION_LEDGER_H

#include <jansson.h>
#include <stdint.h>
#include "base/err.h"

/* One record to append; 'payload' is borrowed (NULL: {}). */
struct csa_ledger_rec {
	const char *type, *ticket_id;
	const json_t *payload;
};

/*
 * The interface a ledger backend implements (the file above is the first;
 * a database holds the chain in its transactions). Appends of records are
 * whole or not at all and serialised across every writer of the
 * workspace, so the chain stays one chain.
 */
struct csa_ledger;
struct csa_ledger_ops {
	/* Append in order, one chain step each; *first_seq (optional) gets
	 * the first one's sequence number. */
	int (*append_many)(struct csa_ledger *l, const struct csa_ledger_rec *recs, size_t n,
	                   int64_t *first_seq, struct csa_err *err);
	/* Make every appended record durable now. */
	int (*sync)(struct csa_ledger *l, struct csa_err *err);
	/* Check the whole chain. *report: {"ok", "records", "first_bad_seq",
	 * "line", "problem"}, and "torn_tail": true when the file ends in part
	 * of a line, an append a crash cut short (not a break of the chain:
	 * the next append removes it). 0 unless the ledger cannot be read. */
	int (*verify)(struct csa_ledger *l, json_t **report, struct csa_err *err);
	/* The records of one ticket, in order (a new array). */
	int (*trail)(struct csa_ledger *l, const char *ticket_id, json_t **out,
	             struct csa_err *err);
	void (*close)(struct csa_ledger *l);
};

struct csa_ledger {
	const struct csa_ledger_ops *ops;
};

/* The file backend over 'path' (created when missing). */
int csa_ledger_open(const char *path, struct csa_ledger **out, struct csa_err *err);

/* The PostgreSQL backend (ledger_pg.c): the table csa_ledger of the
 * database of 'pg' (borrowed: it must outlive the ledger). Appends from
 * every node of the database are serialised in it (a transaction-level
 * advisory lock on the chain), so the chain stays one chain; each append
 * is durable when it returns. */
struct csa_pg;
int csa_ledger_pg_open(struct csa_pg *pg, struct csa_ledger **out, struct csa_err *err);

/* The workspace's ledger: in its PostgreSQL database when its tickets are
 * there (ws->pg), else audit/ledger.jsonl. */
struct csa_ws;
int csa_ledger_open_ws(struct csa_ws *ws, struct csa_ledger **out, struct csa_err *err);

static inline int csa_ledger_append_many(struct csa_ledger *l, const struct csa_ledger_rec *recs,
                                         size_t n, int64_t *first_seq, struct csa_err *err)
{
	return n ? l->ops->append_many(l, recs, n, first_seq, err) : CSA_OK;
}

/* Append one record; *seq_out (optional) receives its sequence number. */
static inline int csa_ledger_append(struct csa_ledger *l, const char *type, const char *ticket_id,
                                    const json_t *payload, int64_t *seq_out, struct csa_err *err)
{
	struct csa_ledger_rec r = {type, ticket_id, payload};
	return l->ops->append_many(l, &r, 1, seq_out, err);
}

static inline int csa_ledger_sync(struct csa_ledger *l, struct csa_err *err)
{
	return l->ops->sync(l, err);
}

static inline int csa_ledger_verify(struct csa_ledger *l, json_t **report, struct csa_err *err)
{
	return l->ops->verify(l, report, err);
}

static inline int csa_ledger_trail(struct csa_ledger *l, const char *ticket_id, json_t **out,
                                   struct csa_err *err)
{
	return l->ops->trail(l, ticket_id, out, err);
}

static inline void csa_ledger_close(struct csa_ledger *l)
{
	if (l)
		l->ops->close(l);
}

/* SHA-256 (hex) of a JSON value in canonical form (sorted keys, compact). */
void csa_json_digest(const json_t *v, char out[65]);

#endif
