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

struct csa_ledger;

int csa_ledger_open(const char *path, struct csa_ledger **out, struct csa_err *err);
void csa_ledger_close(struct csa_ledger *l);

/* Append a record; 'payload' is borrowed. *seq_out (optional) receives its
 * sequence number. */
int csa_ledger_append(struct csa_ledger *l, const char *type, const char *ticket_id,
                      const json_t *payload, int64_t *seq_out, struct csa_err *err);

/* Append records in order under one lock with one write, whole or not at
 * all: a pipeline run's decisions. *first_seq (optional) receives the
 * first one's sequence number. */
struct csa_ledger_rec {
	const char *type, *ticket_id;
	const json_t *payload; /* borrowed */
};
int csa_ledger_append_many(struct csa_ledger *l, const struct csa_ledger_rec *recs, size_t n,
                           int64_t *first_seq, struct csa_err *err);

/* Make every appended record durable now. */
int csa_ledger_sync(struct csa_ledger *l, struct csa_err *err);

/* Check the whole chain. *report: {"ok", "records", "first_bad_seq",
 * "line", "problem"}, and "torn_tail": true when the file ends in part of
 * a line, an append a crash cut short (not a break of the chain: the next
 * append removes it). Returns 0 unless the file could not be read. */
int csa_ledger_verify(const char *path, json_t **report, struct csa_err *err);

/* The records of one ticket, in order (a new array). */
int csa_ledger_trail(const char *path, const char *ticket_id, json_t **out, struct csa_err *err);

/* SHA-256 (hex) of a JSON value in canonical form (sorted keys, compact). */
void csa_json_digest(const json_t *v, char out[65]);

#endif
