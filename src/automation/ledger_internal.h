/*
 * Private to src/automation/: what the ledger's backends share, so that a
 * record is the same bytes and is checked by the same code whichever
 * backend keeps it (ledger.c, the file; ledger_pg.c, PostgreSQL).
 */
#ifndef CSA_AUTOMATION_LEDGER_INTERNAL_H
#define CSA_AUTOMATION_LEDGER_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "automation/ledger.h"
#include "base/err.h"

/* The "prev" of the first record. */
#define LEDGER_GENESIS "0000000000000000000000000000000000000000000000000000000000000000"

/* One record serialised: its line (no newline; JSON escapes every line
 * break inside it) and its hash. */
struct ledger_line {
	char *text;
	size_t len;
	char hash[65];
};

/* A record's serialised parts (JSON texts of its payload, keys sorted,
 * its type and its ticket id), made before any lock is taken. */
struct ledger_part {
	char *body, *ty, *tid;
};
int ledger_parts(const struct csa_ledger_rec *recs, size_t n, struct ledger_part *parts,
                 struct csa_err *err);
void ledger_parts_free(struct ledger_part *parts, size_t n);

/*
 * The records of parts[0..n) as the chain's next steps after sequence number
 * 'last_seq' whose hash is 'last_hash', all stamped 'ts': lines[i] gets
 * record i (its text malloc'd; ledger_lines_free() frees them). CSA_OK, or
 * CSA_ENOMEM with 'err' set and nothing left allocated.
 */
int ledger_lines(const struct ledger_part *parts, size_t n, int64_t last_seq,
                 const char *last_hash, const char *ts, struct ledger_line *lines,
                 struct csa_err *err);
void ledger_lines_free(struct ledger_line *lines, size_t n);

/* Checks a chain one line at a time, in order: ledger_verify_init(),
 * then ledger_verify_line() for each (0 to go on, 1 to stop: the chain is
 * broken there or, whole 0, the line is an append cut short), then
 * v->report (owned by the caller) gets "records" from ledger_verify_end(). */
struct ledger_verify {
	int64_t seq;
	char prev[65];
	json_t *report;
};
void ledger_verify_init(struct ledger_verify *v);
int ledger_verify_line(struct ledger_verify *v, const char *line, size_t lineno, int whole);
json_t *ledger_verify_end(struct ledger_verify *v);

/* The PostgreSQL backend's append inside a transaction the caller holds
 * open on 'c' (a libpq PGconn), so that what the caller writes in it and
 * the records commit or roll back together: the chain's lock is held to
 * the end of that transaction. ledger_pg_shares() says whether 'l' is the
 * PostgreSQL ledger on the pool 'pg' (the one whose connection that is). */
struct pg_conn;
struct csa_pg;
int ledger_pg_append_tx(struct pg_conn *c, const char *where, const struct csa_ledger_rec *recs,
                        size_t n, int64_t *first_seq, struct csa_err *err);
int ledger_pg_shares(const struct csa_ledger *l, const struct csa_pg *pg);

#endif
