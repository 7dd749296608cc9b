/*
 * The audit ledger in PostgreSQL (ledger.h, csa_ledger_pg_open): the table
 * csa_ledger of the workspace's database (migration 4 in store/pg.c), one
 * row per record, shared by every node, over the workspace's pool.
 *
 * A row keeps the record's line byte for byte as the file backend would
 * write it (ledger_internal.h makes both), so a chain is checked by the
 * same code whichever backend keeps it, and a record's hash is over the
 * bytes that were hashed, never over a form the database gave back.
 *
 * One chain across nodes: an append is one transaction that first takes
 * a transaction-level advisory lock on the chain, then reads the head
 * (the row with the highest sequence number), links its records to it and
 * inserts them. The lock serialises appenders on every node and is let go
 * by the commit or the rollback, also when the node dies (its session
 * ends). The sequence number is the primary key as a second guard: two
 * appenders that somehow read one head cannot both commit a record of
 * the same number, so the chain can never fork. An append is durable when
 * its commit returns (the server's synchronous_commit): sync has nothing
 * left to do.
 */
#include "automation/ledger.h"
#include "automation/ledger_internal.h"
#include "base/ts.h"
#include "store/pg.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows read per query when a whole chain is checked. */
#define VERIFY_PAGE "5000"

struct pg_ledger {
	struct csa_ledger base; /* first: the interface's handle */
	struct csa_pg *pg;      /* borrowed */
};

/* The records' rows, in the transaction open on 'c': the chain's lock,
 * its head, the records linked to it (ledger_internal.h). */
int ledger_pg_append_tx(struct pg_conn *c, const char *where, const struct csa_ledger_rec *recs,
                        size_t n, int64_t *first_seq, struct csa_err *err)
{
	if (n == 0)
		return CSA_OK;
	char ts[CSA_TS_LEN];
	csa_ts_format(csa_now_ms(), ts);
	struct ledger_part *pt = calloc(n, sizeof(*pt));
	struct ledger_line *ln = calloc(n, sizeof(*ln));
	int rc = pt && ln ? ledger_parts(recs, n, pt, err)
	                  : csa_error(err, CSA_ENOMEM, "out of memory writing the ledger");
	PGresult *r = NULL;
	char key[24];
	snprintf(key, sizeof(key), "%lld", csa_pg_lock_key("csa_ledger", "chain"));
	const char *kp[] = {key};
	if (rc ||
	    (rc = csa_pg_exec(where, c, "audit ledger: waiting for the chain's lock",
	                      "SELECT pg_advisory_xact_lock($1::bigint)", 1, kp, NULL, err)) ||
	    (rc = csa_pg_exec(where, c, "audit ledger: reading the chain's head",
	                      "SELECT seq, hash FROM csa_ledger ORDER BY seq DESC LIMIT 1", 0, NULL,
	                      &r, err)))
		goto out;
	int64_t last_seq = PQntuples(r) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
	char last_hash[65];
	snprintf(last_hash, sizeof(last_hash), "%s",
	         PQntuples(r) ? PQgetvalue(r, 0, 1) : LEDGER_GENESIS);
	PQclear(r);
	if ((rc = ledger_lines(pt, n, last_seq, last_hash, ts, ln, err)))
		goto out;
	for (size_t i = 0; i < n && rc == CSA_OK; i++) {
		char seq[24];
		snprintf(seq, sizeof(seq), "%" PRId64, last_seq + 1 + (int64_t)i);
		const char *p[] = {seq, recs[i].ticket_id, ln[i].text, ln[i].hash};
		rc = csa_pg_exec(where, c, "audit ledger: appending a record",
		                 "INSERT INTO csa_ledger (seq, ticket_id, line, hash)"
		                 " VALUES ($1, $2, $3, $4)",
		                 4, p, NULL, err);
	}
	if (rc == CSA_OK && first_seq)
		*first_seq = last_seq + 1;
	ledger_lines_free(ln, n);
out:
	ledger_parts_free(pt, n);
	free(ln);
	free(pt);
	return rc;
}

static int pg_append_many(struct csa_ledger *b, const struct csa_ledger_rec *recs, size_t n,
                          int64_t *first_seq, struct csa_err *err)
{
	struct pg_ledger *l = (struct pg_ledger *)b;
	const char *where = csa_pg_where(l->pg);
	if (n == 0)
		return CSA_OK;
	PGconn *c = NULL;
	int rc = csa_pg_get(l->pg, &c, err);
	if (rc)
		return rc;
	if ((rc = csa_pg_exec(where, c, "audit ledger: BEGIN", "BEGIN", 0, NULL, NULL, err)) ||
	    (rc = ledger_pg_append_tx(c, where, recs, n, first_seq, err)) ||
	    (rc = csa_pg_exec(where, c, "audit ledger: COMMIT", "COMMIT", 0, NULL, NULL, err)))
		csa_pg_rollback(c);
	csa_pg_put(l->pg, c);
	return rc;
}

static int pg_sync(struct csa_ledger *b, struct csa_err *err)
{
	(void)b, (void)err; /* every append committed durably */
	return CSA_OK;
}

/* The chain in order, a page at a time (so a long chain is never one
 * result in memory), each line through the shared check. */
static int pg_verify(struct csa_ledger *b, json_t **report, struct csa_err *err)
{
	struct pg_ledger *l = (struct pg_ledger *)b;
	struct ledger_verify v;
	ledger_verify_init(&v);
	PGconn *c = NULL;
	int rc = CSA_OK, stop = 0;
	char after[24] = "0";
	size_t lineno = 0;
	while (!stop) {
		const char *p[] = {after};
		PGresult *r = csa_pg_query(l->pg, &c, "audit ledger: reading the chain",
		                           "SELECT seq, line FROM csa_ledger WHERE seq > $1"
		                           " ORDER BY seq LIMIT " VERIFY_PAGE,
		                           1, p, err, &rc);
		if (!r)
			break;
		int rows = PQntuples(r);
		for (int k = 0; k < rows && !stop; k++)
			stop = ledger_verify_line(&v, PQgetvalue(r, k, 1), ++lineno, 1);
		if (rows)
			snprintf(after, sizeof(after), "%s", PQgetvalue(r, rows - 1, 0));
		stop |= rows == 0;
		PQclear(r);
	}
	csa_pg_put(l->pg, c);
	if (rc) {
		json_decref(v.report);
		return rc;
	}
	*report = ledger_verify_end(&v);
	return CSA_OK;
}

static int pg_trail(struct csa_ledger *b, const char *ticket_id, json_t **out, struct csa_err *err)
{
	struct pg_ledger *l = (struct pg_ledger *)b;
	PGconn *c = NULL;
	int rc;
	const char *p[] = {ticket_id};
	PGresult *r = csa_pg_query(l->pg, &c, "audit ledger: reading a ticket's trail",
	                           "SELECT line FROM csa_ledger WHERE ticket_id = $1 ORDER BY seq",
	                           1, p, err, &rc);
	csa_pg_put(l->pg, c);
	if (!r)
		return rc;
	json_t *arr = json_array();
	for (int k = 0; arr && k < PQntuples(r); k++) {
		json_t *rec = json_loads(PQgetvalue(r, k, 0), 0, NULL);
		if (rec)
			json_array_append_new(arr, rec);
	}
	PQclear(r);
	if (!arr)
		return csa_error(err, CSA_ENOMEM, "out of memory reading a ticket's trail");
	*out = arr;
	return CSA_OK;
}

static void pg_close(struct csa_ledger *b)
{
	free(b);
}

static const struct csa_ledger_ops pg_ops;

int ledger_pg_shares(const struct csa_ledger *b, const struct csa_pg *pg)
{
	return b && b->ops == &pg_ops && ((const struct pg_ledger *)b)->pg == pg;
}

static const struct csa_ledger_ops pg_ops = {.append_many = pg_append_many,
                                             .sync = pg_sync,
                                             .verify = pg_verify,
                                             .trail = pg_trail,
                                             .close = pg_close};

int csa_ledger_pg_open(struct csa_pg *pg, struct csa_ledger **out, struct csa_err *err)
{
	struct pg_ledger *l = calloc(1, sizeof(*l));
	if (!l)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the ledger");
	l->pg = pg;
	l->base.ops = &pg_ops;
	*out = &l->base;
	return CSA_OK;
}
