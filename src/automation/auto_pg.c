/*
 * The controller's store in PostgreSQL (auto_store.h, auto_pg_ops): the
 * tables csa_auto_* of the workspace's database (migration 4 in
 * store/pg.c), shared by every node, over the workspace's pool
 * (store/pg.h). The same operations as automation.db (auto_sqlite.c),
 * statement for statement, so both backends pass one contract test:
 *
 *   csa_auto_decisions   the decision log (one row per decision and type)
 *   csa_auto_tasks       review tasks; a claim is one conditional UPDATE
 *   csa_auto_alerts      alerts
 *   csa_auto_state       the segment phases, caps and evidence restarts
 *   csa_auto_points      rollback points (manifest), and their documents
 *   csa_auto_point_docs  byte for byte
 *
 * A store holds one connection of the pool for its life: the controller
 * calls it under its mutex, and a unit of work (begin ... commit) spans
 * several operations on that connection. Outside a unit of work a
 * statement that finds the connection dead (the server restarted) runs
 * once more on a new one; inside one it fails, and the caller rolls back.
 *
 * One winner per review task across nodes: claim_task is
 *   UPDATE csa_auto_tasks SET status = 'deciding', claim = ... WHERE id = $1
 *   AND status = 'open'
 * in its own transaction. Under READ COMMITTED a second UPDATE of the row
 * waits for the first to commit, then evaluates the WHERE again on the
 * row as committed, finds it 'deciding' and changes nothing: exactly one
 * decider gets a row back, whatever node it runs on.
 *
 * A claim left by a dead process: every controller holds, on a connection
 * of its own, a session advisory lock named by its claim (hold_claim). A
 * process that dies, or a node that vanishes (keepalives, store/pg.h),
 * loses its session and the lock with it, so dead_claims finds the claims
 * of tasks still 'deciding' whose lock anyone can take: those the next
 * controller to open, on any node, settles from the ticket.
 */
#include "automation/auto_internal.h"
#include "automation/ledger_internal.h"
#include "base/ids.h"
#include "base/json.h"
#include "base/ts.h"
#include "store/leader_pg.h"
#include "store/pg.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct auto_store {
	struct csa_pg *pg;
	int own_pg;     /* opened by pg_open from a URL: freed at close */
	PGconn *c;      /* the store's connection; a unit of work runs on it */
	int in_tx;      /* inside begin ... commit/rollback */
	PGconn *live;   /* holds the session lock of this controller's claim */
	struct csa_leader *fence; /* ops->fence: the tick's writes check it */
	char where[320];
	char last[600]; /* the last error's message, for errmsg() */
};

/* Parameters are text: numbers written into buffers that live as long as
 * the statement's block. */
static const char *i64s(char *buf, int64_t v)
{
	snprintf(buf, 24, "%" PRId64, v);
	return buf;
}
static const char *dbls(char *buf, double v)
{
	snprintf(buf, 32, "%.17g", v);
	return buf;
}
#define I64(v) i64s((char[24]){0}, (v))
#define DBL(v) dbls((char[32]){0}, (v))

static int64_t gi(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}
static double gd(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtod(PQgetvalue(r, row, col), NULL);
}
/* NULL for SQL NULL */
static const char *gs(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}
static int64_t changed(const PGresult *r)
{
	return strtoll(PQcmdTuples((PGresult *)r), NULL, 10);
}

/*
 * Run 'sql' on the store's connection: inside a unit of work on it as it
 * is, else with one more attempt on a new connection when it was dead.
 * The result (the caller PQclear()s it), or NULL with *rc and 'err' set
 * ("<what>: PostgreSQL at <where>: <why>") and the message kept for
 * errmsg().
 */
static PGresult *run(struct auto_store *s, const char *what, const char *sql, int n,
                     const char *const *p, struct csa_err *err, int *rc)
{
	struct csa_err e = {0};
	PGresult *r = NULL;
	int code = CSA_OK;
	if (s->in_tx)
		code = csa_pg_exec(s->where, s->c, what, sql, n, p, &r, &e);
	else
		r = csa_pg_query(s->pg, &s->c, what, sql, n, p, &e, &code);
	if (code) {
		r = NULL;
		snprintf(s->last, sizeof(s->last), "%s", e.msg);
		if (err)
			*err = e;
	}
	if (rc)
		*rc = code;
	return r;
}

/* A statement whose result is not needed: CSA_OK or its error; *n (may be
 * NULL) the rows it changed. */
static int exec(struct auto_store *s, const char *what, const char *sql, int n,
                const char *const *p, int64_t *rows, struct csa_err *err)
{
	int rc;
	PGresult *r = run(s, what, sql, n, p, err, &rc);
	if (r && rows)
		*rows = changed(r);
	PQclear(r);
	return rc;
}

/* The one number a query returns (NULL reads as 0); -1 when the database
 * cannot answer (errmsg() says why). */
static int64_t one_i64(struct auto_store *s, const char *what, const char *sql, int n,
                       const char *const *p)
{
	PGresult *r = run(s, what, sql, n, p, NULL, NULL);
	int64_t v = r && PQntuples(r) == 1 ? gi(r, 0, 0) : -1;
	PQclear(r);
	return v;
}

static const char *pg_errmsg(struct auto_store *s)
{
	return s->last;
}

static int pg_error(struct auto_store *s, struct csa_err *err, const char *what)
{
	return csa_error(err, CSA_EBACKEND, "%s: %s", what, s->last);
}

/* ---- units of work ----------------------------------------------------- */

static int pg_begin(struct auto_store *s, int write_now, const char *what, struct csa_err *err)
{
	if (s->in_tx)
		return csa_error(err, CSA_ESTATE, "%s: a unit of work is already open on %s", what,
		                 s->where);
	/* BEGIN on its own may run twice on a new connection: it either ran
	 * or it did not */
	int rc = exec(s, what, "BEGIN", 0, NULL, NULL, err);
	if (rc)
		return rc;
	s->in_tx = 1;
	/* 'write_now' (a recovery, a settlement): such units of work run one
	 * at a time across the nodes, as BEGIN IMMEDIATE makes them in
	 * SQLite; the lock goes with the transaction */
	char key[24];
	snprintf(key, sizeof(key), "%lld", csa_pg_lock_key("csa_auto", "write"));
	const char *p[] = {key};
	if (write_now && (rc = exec(s, what, "SELECT pg_advisory_xact_lock($1::bigint)", 1, p, NULL,
	                            err))) {
		csa_pg_rollback(s->c);
		s->in_tx = 0;
	}
	return rc;
}

static int pg_commit(struct auto_store *s, const char *what, struct csa_err *err)
{
	int rc = exec(s, what, "COMMIT", 0, NULL, NULL, err);
	/* a COMMIT that failed ended the transaction too (rolled back) */
	s->in_tx = 0;
	return rc;
}

static void pg_rollback(struct auto_store *s)
{
	if (!s->in_tx)
		return;
	csa_pg_rollback(s->c);
	s->in_tx = 0;
}

/* ---- the tick's fence (ops->fence) ------------------------------------ */

static void pg_fence(struct auto_store *s, struct csa_leader *l)
{
	s->fence = l;
}

/* Before a write of the tick's: with a fence, in a transaction (its own,
 * *own = 1, unless a unit of work is open) whose first step is the
 * leader's check, which holds the role's row until the transaction ends. */
static int fence_begin(struct auto_store *s, const char *what, int *own, struct csa_err *err)
{
	*own = 0;
	if (!s->fence)
		return CSA_OK;
	int rc;
	if (!s->in_tx) {
		if ((rc = pg_begin(s, 0, what, err)))
			return rc;
		*own = 1;
	}
	if ((rc = csa_leader_fence_pg(s->fence, s->c, s->where, err)) && *own) {
		pg_rollback(s);
		*own = 0;
	}
	return rc;
}

/* After it: the transaction fence_begin opened ends with the write's
 * outcome 'rc'. */
static int fence_end(struct auto_store *s, const char *what, int own, int rc,
                     struct csa_err *err)
{
	if (!own)
		return rc;
	if (rc) {
		pg_rollback(s);
		return rc;
	}
	return pg_commit(s, what, err);
}

/* ---- the decision log -------------------------------------------------- */

/* "<doing> decision '<key>' of ticket '<id>'" with the database's reason. */
static int row_err(struct auto_store *s, struct csa_err *err, const char *doing, const json_t *r)
{
	return csa_error(err, CSA_EBACKEND, "%s decision '%s' of ticket '%s': %s", doing,
	                 csa_json_str(r, "key"), csa_json_str(r, "ticket_id"), s->last);
}

static int pg_insert_decision(struct auto_store *s, const json_t *r, struct csa_err *err)
{
	json_t *thr = json_object_get(r, "threshold");
	const char *p[] = {csa_json_str(r, "key"),
	                   csa_json_str(r, "ticket_id"),
	                   csa_json_str(r, "type"),
	                   csa_json_str(r, "segment"),
	                   I64(csa_json_int(r, "phase", 1)),
	                   csa_json_str(r, "value"),
	                   DBL(csa_json_num(r, "confidence", 0)),
	                   /* NULL: no threshold */
	                   json_is_number(thr) ? DBL(json_number_value(thr)) : NULL,
	                   json_is_true(json_object_get(r, "autonomous")) ? "1" : "0",
	                   json_is_true(json_object_get(r, "critical")) ? "1" : "0",
	                   I64(csa_json_int(r, "created_ms", 0)),
	                   csa_json_str(r, "model"),
	                   json_is_true(json_object_get(r, "shown")) ? "1" : "0",
	                   /* an audited autonomous decision stands for 1/p of its kind */
	                   DBL(csa_json_num(r, "weight", 1))};
	/* a decision written again (recovery) replaces the row whole, as
	 * SQLite's INSERT OR REPLACE: its review goes, and it is the newest */
	if (exec(s, "recording a decision",
	         "INSERT INTO csa_auto_decisions (id, ticket_id, type, segment, phase, value,"
	         " confidence, threshold, autonomous, critical, created_ms, model, shown,"
	         " review_weight) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
	         " $14) ON CONFLICT (id) DO UPDATE SET n = DEFAULT, ticket_id = EXCLUDED.ticket_id,"
	         " type = EXCLUDED.type, segment = EXCLUDED.segment, phase = EXCLUDED.phase,"
	         " value = EXCLUDED.value, confidence = EXCLUDED.confidence,"
	         " threshold = EXCLUDED.threshold, autonomous = EXCLUDED.autonomous,"
	         " critical = EXCLUDED.critical, created_ms = EXCLUDED.created_ms,"
	         " model = EXCLUDED.model, shown = EXCLUDED.shown,"
	         " review_weight = EXCLUDED.review_weight, final = NULL, correct = NULL,"
	         " reviewed_ms = NULL, reviewer = NULL, decision_ms = NULL",
	         14, p, NULL, NULL))
		return row_err(s, err, "cannot record", r);
	const char *kind = csa_json_str(r, "task");
	if (!kind)
		return CSA_OK;
	const char *q[] = {csa_json_str(r, "key"),
	                   csa_json_str(r, "ticket_id"),
	                   csa_json_str(r, "type"),
	                   csa_json_str(r, "segment"),
	                   kind,
	                   json_is_true(json_object_get(r, "shown")) ? "1" : "0",
	                   csa_json_str(r, "value"),
	                   DBL(csa_json_num(r, "confidence", 0)),
	                   csa_json_str(r, "alternatives"),
	                   DBL(csa_json_num(r, "score", 0)),
	                   I64(csa_json_int(r, "created_ms", 0)),
	                   I64(csa_json_int(r, "due_ms", 0))};
	if (exec(s, "queueing a review",
	         "INSERT INTO csa_auto_tasks (decision_id, ticket_id, type, segment, kind, shown,"
	         " suggestion, confidence, alternatives, score, created_ms, due_ms)"
	         " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
	         12, q, NULL, NULL))
		return row_err(s, err, "cannot queue the review of", r);
	return CSA_OK;
}

static int pg_audit(struct auto_store *s, struct csa_ledger *ledger,
                    const struct csa_ledger_rec *recs, size_t n, int *audited,
                    struct csa_err *err)
{
	*audited = 0;
	if (!n || !ledger_pg_shares(ledger, s->pg) || (!s->in_tx && !s->fence))
		return CSA_OK;
	int own = 0, rc = fence_begin(s, "appending the tick's audit records", &own, err);
	if (rc == CSA_OK)
		rc = ledger_pg_append_tx(s->c, s->where, recs, n, NULL, err);
	rc = fence_end(s, "appending the tick's audit records", own, rc, err);
	*audited = rc == CSA_OK;
	return rc;
}

static int pg_record_decisions(struct auto_store *s, const json_t *rows,
                               struct csa_ledger *ledger, const struct csa_ledger_rec *audit,
                               size_t n, int *audited, struct csa_err *err)
{
	size_t i;
	const json_t *row;
	*audited = 0;
	if (!json_array_size(rows) && !n)
		return CSA_OK;
	char what[200];
	snprintf(what, sizeof(what), "cannot record the decisions of ticket '%s'",
	         json_array_size(rows) ? csa_json_str(json_array_get(rows, 0), "ticket_id")
	                               : audit[0].ticket_id);
	int rc = pg_begin(s, 0, what, err);
	if (rc)
		return rc;
	json_array_foreach(rows, i, row) if (rc == CSA_OK) rc = pg_insert_decision(s, row, err);
	/* the records last: the chain's lock, which serialises every node's
	 * appends, is held only from here to the commit */
	int in_unit = 0;
	if (rc == CSA_OK)
		rc = pg_audit(s, ledger, audit, n, &in_unit, err);
	if (rc == CSA_OK)
		rc = pg_commit(s, "cannot commit a run's decisions", err);
	pg_rollback(s);
	*audited = rc == CSA_OK && in_unit;
	return rc;
}

static int pg_forget_decisions(struct auto_store *s, const char *ticket_id,
                               const char *const *ids, size_t n, int64_t gone[2])
{
	int rc = pg_begin(s, 0, "forgetting the decisions of a run", NULL);
	/* a decision's rows are "<id>#<type>": every key from "<id>#" up to,
	 * not including, "<id>$" ('$' follows '#'), in byte order */
	for (size_t i = 0; rc == CSA_OK && i < n; i++) {
		char lo[CSA_ID_MAX + 64], hi[CSA_ID_MAX + 64];
		snprintf(lo, sizeof(lo), "%s#", ids[i] ? ids[i] : "");
		snprintf(hi, sizeof(hi), "%s$", ids[i] ? ids[i] : "");
		const char *p[] = {lo, hi, ticket_id};
		int64_t k0 = 0, k1 = 0;
		if ((rc = exec(s, "forgetting the decisions of a run",
		               "DELETE FROM csa_auto_decisions WHERE id >= $1 COLLATE \"C\""
		               " AND id < $2 COLLATE \"C\"",
		               2, p, &k0, NULL)) == CSA_OK &&
		    (rc = exec(s, "forgetting the review tasks of a run",
		               "DELETE FROM csa_auto_tasks WHERE ticket_id = $3"
		               " AND decision_id >= $1 COLLATE \"C\" AND decision_id < $2 COLLATE \"C\"",
		               3, p, &k1, NULL)) == CSA_OK) {
			gone[0] += k0;
			gone[1] += k1;
		}
	}
	if (rc == CSA_OK)
		rc = pg_commit(s, "forgetting the decisions of a run", NULL);
	pg_rollback(s);
	return rc ? CSA_EIO : CSA_OK;
}

static struct csa_outcome *pg_outcomes(struct auto_store *s, const char *type,
                                       const char *segment, size_t limit, size_t *n)
{
	*n = 0;
	const char *p[] = {type, segment, I64((int64_t)limit)};
	PGresult *r = run(s, "reading the reviewed outcomes of a scope",
	                  "SELECT confidence, correct, w FROM (SELECT confidence, correct,"
	                  " reviewed_ms, coalesce(review_weight, 1) AS w FROM csa_auto_decisions"
	                  " WHERE final IS NOT NULL AND type = $1 AND ($2::text IS NULL OR"
	                  " segment = $2) ORDER BY reviewed_ms DESC LIMIT $3) x ORDER BY reviewed_ms",
	                  3, p, NULL, NULL);
	if (!r)
		return NULL;
	struct csa_outcome *o = malloc(limit * sizeof(*o) + 1);
	for (int k = 0; o && k < PQntuples(r) && *n < limit; k++)
		o[(*n)++] = (struct csa_outcome){gd(r, k, 0), (int)gi(r, k, 1), gd(r, k, 2)};
	PQclear(r);
	return o;
}

static int64_t pg_reviewed_autonomous(struct auto_store *s, const char *type,
                                      const char *segment, int64_t limit)
{
	const char *p[] = {type, segment, I64(limit)};
	int64_t v = one_i64(s, "counting the reviewed autonomous decisions of a segment",
	                    "SELECT count(*) FROM (SELECT 1 FROM csa_auto_decisions WHERE"
	                    " autonomous = 1 AND final IS NOT NULL AND type = $1 AND segment = $2"
	                    " LIMIT $3) x",
	                    3, p);
	return v < 0 ? 0 : v;
}

static int pg_reviews_after(struct auto_store *s, const char *type, const char *segment,
                            int64_t after_ms, int64_t *n, int64_t *newest_ms)
{
	const char *p[] = {type, segment, I64(after_ms)};
	int rc;
	PGresult *r = run(s, "counting the reviews of a scope",
	                  "SELECT count(*), max(reviewed_ms) FROM csa_auto_decisions WHERE final IS"
	                  " NOT NULL AND type = $1 AND ($2::text IS NULL OR segment = $2) AND"
	                  " reviewed_ms > $3",
	                  3, p, NULL, &rc);
	if (!r)
		return rc;
	*n = gi(r, 0, 0);
	if (*n > 0)
		*newest_ms = gi(r, 0, 1);
	PQclear(r);
	return CSA_OK;
}

/* ---- gates --------------------------------------------------------------- */

static int pg_scope_metrics(struct auto_store *s, const char *type, const char *segment,
                            int phase, int64_t window, int64_t since, int64_t settled_before,
                            struct scope_metrics *m)
{
	memset(m, 0, sizeof(*m));
	/* a NULL type or segment is folded away when the statement is
	 * planned with its values, so each kind of scope uses its index */
	char q[1600];
	snprintf(q, sizeof(q),
	         "SELECT count(*), coalesce(sum(autonomous), 0), count(final),"
	         " coalesce(sum(coalesce(correct, 0)), 0),"
	         " count(*) FILTER (WHERE autonomous = 0 AND (final IS NOT NULL OR"
	         " created_ms <= $6)),"
	         " count(*) FILTER (WHERE autonomous = 0 AND final IS NOT NULL),"
	         " count(*) FILTER (WHERE autonomous = 1 AND final IS NOT NULL),"
	         " count(*) FILTER (WHERE autonomous = 1 AND correct = 1),"
	         " avg(decision_ms) FILTER (WHERE autonomous = 0 AND final IS NOT NULL),"
	         " coalesce(sum(coalesce(decision_ms, 0)), 0),"
	         " count(*) FILTER (WHERE autonomous = 1 AND correct = 0 AND (critical = 1 OR"
	         " (type = 'strategy' AND value = 'AUTOMATED_RESOLUTION'))),"
	         " min(created_ms), max(created_ms)"
	         " FROM (SELECT * FROM csa_auto_decisions WHERE phase = $1 AND"
	         " ($2::text IS NULL OR type = $2) AND ($3::text IS NULL OR segment = $3) AND"
	         " created_ms > $5 ORDER BY created_ms DESC LIMIT $4) x");
	const char *p[] = {I64(phase), type, segment, I64(window), I64(since),
	                   I64(settled_before)};
	PGresult *r = run(s, "reading a scope's gate metrics", q, 6, p, NULL, NULL);
	if (!r)
		return CSA_EIO;
	m->n = gi(r, 0, 0);
	m->autonomous = gi(r, 0, 1);
	m->reviewed = gi(r, 0, 2);
	m->correct = gi(r, 0, 3);
	m->human = gi(r, 0, 4);
	m->human_reviewed = gi(r, 0, 5);
	m->auto_reviewed = gi(r, 0, 6);
	m->auto_correct = gi(r, 0, 7);
	m->mean_decision_ms = gd(r, 0, 8);
	m->total_decision_ms = gd(r, 0, 9);
	m->critical_errors = gi(r, 0, 10);
	m->first_ms = gi(r, 0, 11);
	m->last_ms = gi(r, 0, 12);
	PQclear(r);
	return CSA_OK;
}

static int pg_trend(struct auto_store *s, int64_t since, int64_t bucket_ms, size_t max,
                    json_t **out, struct csa_err *err)
{
	if (bucket_ms <= 0)
		return csa_error(err, CSA_EINVAL, "a trend's bucket must be positive");
	const char *p[] = {I64(since), I64(bucket_ms), I64((int64_t)max)};
	int rc;
	PGresult *r = run(
	    s, "reading the decision log's trend",
	    "SELECT created_ms / $2::bigint AS b, count(*), coalesce(sum(autonomous), 0),"
	    " count(final), coalesce(sum(coalesce(correct, 0)), 0),"
	    " count(*) FILTER (WHERE autonomous = 1 AND final IS NOT NULL),"
	    " count(*) FILTER (WHERE autonomous = 1 AND correct = 1),"
	    " count(*) FILTER (WHERE autonomous = 1 AND correct = 0 AND (critical = 1 OR"
	    " (type = 'strategy' AND value = 'AUTOMATED_RESOLUTION')))"
	    " FROM csa_auto_decisions WHERE created_ms >= $1 GROUP BY b ORDER BY b LIMIT $3",
	    3, p, err, &rc);
	if (!r)
		return rc;
	json_t *arr = json_array();
	for (int k = 0; k < PQntuples(r); k++)
		json_array_append_new(
		    arr, json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "start",
		                   (json_int_t)(gi(r, k, 0) * bucket_ms), "decisions",
		                   (json_int_t)gi(r, k, 1), "autonomous", (json_int_t)gi(r, k, 2),
		                   "reviewed", (json_int_t)gi(r, k, 3), "correct",
		                   (json_int_t)gi(r, k, 4), "auto_reviewed", (json_int_t)gi(r, k, 5),
		                   "auto_correct", (json_int_t)gi(r, k, 6), "critical_errors",
		                   (json_int_t)gi(r, k, 7)));
	PQclear(r);
	*out = arr;
	return CSA_OK;
}

static double pg_baseline_ms(struct auto_store *s)
{
	/* decision_ms is set with final, by a review */
	PGresult *r = run(s, "reading the PHASE_1 baseline",
	                  "SELECT avg(decision_ms) FROM csa_auto_decisions WHERE phase = 1 AND"
	                  " decision_ms IS NOT NULL",
	                  0, NULL, NULL, NULL);
	double b = r ? gd(r, 0, 0) : 0;
	PQclear(r);
	return b;
}

static int64_t pg_open_alerts(struct auto_store *s, const char *severity)
{
	const char *p[] = {severity};
	return one_i64(s, "counting the open alerts",
	               "SELECT count(*) FROM csa_auto_alerts WHERE open = 1 AND"
	               " ($1::text IS NULL OR severity = $1)",
	               1, p);
}

/* ---- segments -------------------------------------------------------------- */

/* Each row of 'sql' into *out: a string when it has one column, else an
 * array of its columns. */
static int list_rows(struct auto_store *s, const char *sql, const char *type, const char *what,
                     json_t **out, struct csa_err *err)
{
	*out = json_array();
	const char *p[] = {type};
	int rc;
	PGresult *r = run(s, what, sql, type ? 1 : 0, p, err, &rc);
	if (!r)
		return rc;
	int cols = PQnfields(r);
	for (int k = 0; k < PQntuples(r); k++) {
		json_t *row = cols == 1 ? NULL : json_array();
		for (int c = 0; c < cols; c++) {
			json_t *j = json_string(PQgetvalue(r, k, c));
			if (row)
				json_array_append_new(row, j);
			else
				row = j;
		}
		json_array_append_new(*out, row);
	}
	PQclear(r);
	return CSA_OK;
}

static int pg_segments(struct auto_store *s, enum auto_seg_order order, const char *what,
                       json_t **out, struct csa_err *err)
{
	static const char *const sql[] = {
	    [AUTO_SEGS_ANY_ORDER] = "SELECT DISTINCT type, segment FROM csa_auto_decisions",
	    [AUTO_SEGS_SORTED] =
	        "SELECT DISTINCT type, segment FROM csa_auto_decisions ORDER BY 1, 2",
	    [AUTO_SEGS_KEYS] = "SELECT DISTINCT type || '/' || segment FROM csa_auto_decisions",
	};
	return list_rows(s, sql[order], NULL, what, out, err);
}

static int pg_segments_of(struct auto_store *s, const char *type, const char *what, json_t **out,
                          struct csa_err *err)
{
	return list_rows(s, "SELECT DISTINCT segment FROM csa_auto_decisions WHERE type = $1",
	                 type, what, out, err);
}

/* ---- the quality monitor ------------------------------------------------- */

static int pg_reviewed_autonomous_sample(struct auto_store *s, const char *type, size_t max,
                                         int64_t since, size_t *n, double *w, double *wk,
                                         const char *what, struct csa_err *err)
{
	*n = 0;
	*w = *wk = 0;
	const char *p[] = {type, I64((int64_t)max), I64(since)};
	int rc;
	/* among the last 5,000 reviews: where little is autonomous the tick
	 * does not read every review the type ever had */
	PGresult *r = run(s, what,
	                  "SELECT correct, coalesce(review_weight, 1) FROM (SELECT autonomous,"
	                  " correct, review_weight, created_ms FROM csa_auto_decisions WHERE"
	                  " type = $1 AND final IS NOT NULL ORDER BY reviewed_ms DESC LIMIT 5000) x"
	                  " WHERE autonomous = 1 AND created_ms > $3 LIMIT $2",
	                  3, p, err, &rc);
	if (!r)
		return rc;
	for (int k = 0; k < PQntuples(r); k++) {
		double wi = gd(r, k, 1);
		wi = wi > 0 ? wi : 1;
		(*n)++;
		*w += wi;
		*wk += gi(r, k, 0) != 0 ? wi : 0;
	}
	PQclear(r);
	return CSA_OK;
}

static int pg_recent_autonomy(struct auto_store *s, const char *type, int last, int64_t *n,
                              int64_t *autonomous, const char *what, struct csa_err *err)
{
	const char *p[] = {type, I64(last)};
	int rc;
	PGresult *r = run(s, what,
	                  "SELECT count(*), coalesce(sum(autonomous), 0) FROM (SELECT autonomous"
	                  " FROM csa_auto_decisions WHERE type = $1 ORDER BY created_ms DESC"
	                  " LIMIT $2) x",
	                  2, p, err, &rc);
	*n = *autonomous = -1;
	if (!r)
		return rc;
	*n = gi(r, 0, 0);
	*autonomous = gi(r, 0, 1);
	PQclear(r);
	return CSA_OK;
}

static int pg_recent_outcomes(struct auto_store *s, const char *type, const char *segment,
                              int phase, int64_t since, size_t max, double *confidence, int *right,
                              size_t *n, const char *what, struct csa_err *err)
{
	*n = 0;
	const char *p[] = {type, segment, I64(since), I64(phase), I64((int64_t)max)};
	int rc;
	PGresult *r = run(s, what,
	                  "SELECT confidence, correct FROM csa_auto_decisions WHERE type = $1 AND"
	                  " segment = $2 AND phase = $4 AND created_ms > $3"
	                  " ORDER BY created_ms DESC LIMIT $5",
	                  5, p, err, &rc);
	if (!r)
		return rc;
	for (int k = 0; k < PQntuples(r) && *n < max; k++) {
		confidence[*n] = gd(r, k, 0);
		right[(*n)++] = PQgetisnull(r, k, 1) ? -1 : gi(r, k, 1) != 0;
	}
	PQclear(r);
	return CSA_OK;
}

/* ---- KPIs ------------------------------------------------------------------ */

/* The KPIs of the decisions 'where' selects ($1 bound to p1). */
static json_t *kpi_row(struct auto_store *s, const char *where, const char *p1)
{
	char sql[1024];
	snprintf(sql, sizeof(sql),
	         "SELECT count(*), coalesce(sum(autonomous), 0), count(final),"
	         " coalesce(sum(coalesce(correct, 0)), 0),"
	         " count(*) FILTER (WHERE autonomous = 1 AND final IS NOT NULL),"
	         " count(*) FILTER (WHERE autonomous = 1 AND correct = 1),"
	         " avg(decision_ms) FILTER (WHERE final IS NOT NULL),"
	         " count(*) FILTER (WHERE type = 'escalation'),"
	         " count(*) FILTER (WHERE type = 'escalation' AND value <> 'NONE'),"
	         " avg(confidence)"
	         " FROM csa_auto_decisions %s",
	         where);
	const char *p[] = {p1};
	struct auto_kpi_sums k = {0};
	PGresult *r = run(s, "reading KPIs", sql, p1 ? 1 : 0, p, NULL, NULL);
	if (r && PQntuples(r) == 1) {
		k.have_sums = 1;
		k.n = gd(r, 0, 0);
		k.autonomous = gd(r, 0, 1);
		k.reviewed = gd(r, 0, 2);
		k.correct = gd(r, 0, 3);
		k.auto_reviewed = gd(r, 0, 4);
		k.auto_correct = gd(r, 0, 5);
		k.has_mean_decision_ms = !PQgetisnull(r, 0, 6);
		k.mean_decision_ms = gd(r, 0, 6);
		k.escalations = gd(r, 0, 7);
		k.escalated = gd(r, 0, 8);
		k.has_mean_confidence = !PQgetisnull(r, 0, 9);
		k.mean_confidence = gd(r, 0, 9);
	}
	PQclear(r);
	/* calibration of reviewed decisions */
	snprintf(sql, sizeof(sql),
	         "SELECT confidence, correct FROM csa_auto_decisions %s%s final IS NOT NULL", where,
	         *where ? " AND" : " WHERE");
	if ((r = run(s, "reading KPIs", sql, p1 ? 1 : 0, p, NULL, NULL))) {
		k.have_calibration = 1;
		for (int i = 0; i < PQntuples(r); i++)
			auto_kpi_calibrate(&k, gd(r, i, 0), (int)gi(r, i, 1));
		PQclear(r);
	}
	return auto_kpi_object(&k);
}

static json_t *pg_kpi(struct auto_store *s, int phase, const char *type, const char *segment_key)
{
	char where[64];
	if (phase) {
		snprintf(where, sizeof(where), "WHERE phase = %d", phase);
		return kpi_row(s, where, NULL);
	}
	if (type)
		return kpi_row(s, "WHERE type = $1", type);
	if (segment_key)
		return kpi_row(s, "WHERE type || '/' || segment = $1", segment_key);
	return kpi_row(s, "", NULL);
}

static int pg_counts(struct auto_store *s, struct csa_auto_counts *c, struct csa_err *err)
{
	static const struct {
		size_t off;
		const char *sql, *what;
	} q[] = {
	    {offsetof(struct csa_auto_counts, open_tasks),
	     "SELECT count(*) FROM csa_auto_tasks WHERE status IN ('open', 'deciding')",
	     "counting the open review tasks"},
	    {offsetof(struct csa_auto_counts, decisions), "SELECT count(*) FROM csa_auto_decisions",
	     "counting the decisions"},
	    {offsetof(struct csa_auto_counts, reviews),
	     "SELECT count(*) FROM csa_auto_decisions WHERE final IS NOT NULL",
	     "counting the reviews"},
	    {offsetof(struct csa_auto_counts, open_alerts),
	     "SELECT count(*) FROM csa_auto_alerts WHERE open = 1", "counting the open alerts"},
	};
	int rc = CSA_OK;
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		int64_t v = one_i64(s, q[i].what, q[i].sql, 0, NULL);
		*(int64_t *)((char *)c + q[i].off) = v;
		if (v < 0 && rc == CSA_OK)
			rc = csa_error(err, CSA_EBACKEND, "%s", s->last);
	}
	return rc;
}

/* ---- alerts ---------------------------------------------------------------- */

static int pg_alert_is_open(struct auto_store *s, const char *type, const char *scope, int *open,
                            const char *what, struct csa_err *err)
{
	*open = 0;
	const char *p[] = {type, scope};
	int rc;
	PGresult *r = run(s, what,
	                  "SELECT 1 FROM csa_auto_alerts WHERE open = 1 AND type = $1 AND"
	                  " ($2::text IS NULL OR scope = $2) LIMIT 1",
	                  2, p, err, &rc);
	if (!r)
		return rc;
	*open = PQntuples(r) > 0;
	PQclear(r);
	return CSA_OK;
}

static int pg_insert_alert(struct auto_store *s, int64_t created_ms, const char *type,
                           const char *severity, const char *scope, const json_t *detail,
                           int64_t *id, const char *what, struct csa_err *err)
{
	*id = 0;
	char *d = json_dumps(detail, JSON_COMPACT);
	const char *p[] = {I64(created_ms), type, severity, scope, d ? d : "{}"};
	int own = 0, rc = fence_begin(s, what, &own, err);
	PGresult *r = NULL;
	if (rc == CSA_OK)
		r = run(s, what,
		        "INSERT INTO csa_auto_alerts (created_ms, type, severity, scope, detail)"
		        " VALUES ($1, $2, $3, $4, $5) RETURNING id",
		        5, p, err, &rc);
	free(d);
	if (r)
		*id = gi(r, 0, 0);
	PQclear(r);
	return fence_end(s, what, own, rc, err);
}

static int pg_close_alerts(struct auto_store *s, const char *type, const char *scope, int64_t *n,
                           const char *what, struct csa_err *err)
{
	*n = 0;
	const char *p[] = {type, scope};
	int own = 0, rc = fence_begin(s, what, &own, err);
	/* only open ones: the caller learns how many this closed */
	if (rc == CSA_OK)
		rc = exec(s, what,
		          "UPDATE csa_auto_alerts SET open = 0 WHERE type = $1 AND scope = $2 AND"
		          " open = 1",
		          2, p, n, err);
	return fence_end(s, what, own, rc, err);
}

static int pg_alert_list(struct auto_store *s, int open_only, size_t limit, json_t **out,
                         struct csa_err *err)
{
	const char *p[] = {I64(open_only), I64((int64_t)limit)};
	int rc;
	PGresult *r = run(s, "listing alerts",
	                  "SELECT id, created_ms, type, severity, scope, detail, open FROM"
	                  " csa_auto_alerts WHERE $1::int = 0 OR open = 1 ORDER BY id DESC LIMIT $2",
	                  2, p, err, &rc);
	if (!r)
		return rc;
	json_t *arr = json_array();
	char ts[CSA_TS_LEN];
	for (int k = 0; k < PQntuples(r); k++) {
		json_t *d = json_loads(PQgetvalue(r, k, 5), 0, NULL);
		json_array_append_new(
		    arr, json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:b}", "id", (json_int_t)gi(r, k, 0),
		                   "created", csa_ts_format(gi(r, k, 1), ts), "type",
		                   PQgetvalue(r, k, 2), "severity", PQgetvalue(r, k, 3), "scope",
		                   PQgetvalue(r, k, 4), "detail", d ? d : json_null(), "open",
		                   (int)gi(r, k, 6)));
	}
	PQclear(r);
	*out = arr;
	return CSA_OK;
}

/* ---- review tasks ------------------------------------------------------------ */

#define TASK_COLS                                                                                  \
	"id, decision_id, ticket_id, type, segment, kind, status, shown, suggestion, "             \
	"confidence, alternatives, score, created_ms, due_ms"

/* Row k of 'r' (TASK_COLS) as the review API gives a task, but its
 * "labels" (the controller's). */
static json_t *task_row(const PGresult *r, int k)
{
	char ts1[CSA_TS_LEN], ts2[CSA_TS_LEN];
	int shown = (int)gi(r, k, 7);
	const char *alts = gs(r, k, 10);
	json_t *alt = alts && shown ? json_loads(alts, 0, NULL) : NULL;
	const char *sugg = gs(r, k, 8);
	return json_pack(
	    "{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:f, s:s, s:s}", "task_id",
	    (json_int_t)gi(r, k, 0), "decision_id", PQgetvalue(r, k, 1), "ticket_id",
	    PQgetvalue(r, k, 2), "decision_type", PQgetvalue(r, k, 3), "segment",
	    PQgetvalue(r, k, 4), "kind", PQgetvalue(r, k, 5), "status", PQgetvalue(r, k, 6),
	    "suggestion", shown && sugg ? json_string(sugg) : json_null(), "confidence",
	    shown ? json_real(gd(r, k, 9)) : json_null(), "alternatives", alt ? alt : json_array(),
	    "priority_score", gd(r, k, 11), "created", csa_ts_format(gi(r, k, 12), ts1), "due",
	    csa_ts_format(gi(r, k, 13), ts2));
}

/* Every row of 'sql' as tasks into *out (a new array). */
static int task_rows(struct auto_store *s, const char *what, const char *sql, int n,
                     const char *const *p, json_t **out, struct csa_err *err)
{
	int rc;
	PGresult *r = run(s, what, sql, n, p, err, &rc);
	if (!r)
		return rc;
	*out = json_array();
	for (int k = 0; k < PQntuples(r); k++)
		json_array_append_new(*out, task_row(r, k));
	PQclear(r);
	return CSA_OK;
}

static int pg_task_list(struct auto_store *s, const char *status, size_t limit, json_t **out,
                        struct csa_err *err)
{
	const char *p[] = {status, I64((int64_t)limit)};
	return task_rows(s, "listing tasks",
	                 "SELECT " TASK_COLS " FROM csa_auto_tasks WHERE ($1::text IS NULL OR"
	                 " status = $1) ORDER BY status = 'open' DESC, score DESC, id LIMIT $2",
	                 2, p, out, err);
}

static int pg_ticket_tasks(struct auto_store *s, const char *ticket_id, json_t **out,
                           struct csa_err *err)
{
	const char *p[] = {ticket_id};
	return task_rows(s, "listing a ticket's tasks",
	                 "SELECT " TASK_COLS " FROM csa_auto_tasks WHERE status = 'open' AND"
	                 " ticket_id = $1 ORDER BY id",
	                 1, p, out, err);
}

static int pg_next_task(struct auto_store *s, int64_t now_ms, json_t **out, struct csa_err *err)
{
	*out = NULL;
	const char *p[] = {I64(now_ms)};
	int rc;
	PGresult *r = run(s, "choosing the next task",
	                  "SELECT " TASK_COLS " FROM csa_auto_tasks WHERE status = 'open' AND"
	                  " due_ms <= $1 ORDER BY score DESC, id LIMIT 1",
	                  1, p, err, &rc);
	if (!r)
		return rc;
	if (PQntuples(r) == 1)
		*out = task_row(r, 0);
	PQclear(r);
	return CSA_OK;
}

/* A task_claim from row k of: decision id, ticket, type, segment, created
 * (ms), the AI's value, critical, autonomous, phase, status, the person's
 * value, reviewer. */
static void claim_of_row(const PGresult *r, int k, struct task_claim *t)
{
#define COL(i) (gs(r, k, i) ? gs(r, k, i) : "")
	snprintf(t->decision_id, sizeof(t->decision_id), "%s", COL(0));
	snprintf(t->ticket, sizeof(t->ticket), "%s", COL(1));
	snprintf(t->type, sizeof(t->type), "%s", COL(2));
	snprintf(t->segment, sizeof(t->segment), "%s", COL(3));
	t->created = gi(r, k, 4);
	snprintf(t->ai_value, sizeof(t->ai_value), "%s", COL(5));
	t->critical = (int)gi(r, k, 6);
	t->autonomous = (int)gi(r, k, 7);
	t->phase = (int)gi(r, k, 8);
	snprintf(t->status, sizeof(t->status), "%s", COL(9));
	snprintf(t->value, sizeof(t->value), "%s", COL(10));
	snprintf(t->reviewer, sizeof(t->reviewer), "%s", COL(11));
#undef COL
}

static int pg_read_claim(struct auto_store *s, struct task_claim *t, struct csa_err *err)
{
	const char *p[] = {I64(t->id)};
	int rc;
	PGresult *r = run(s, "reading a review task",
	                  "SELECT t.decision_id, t.ticket_id, t.type, t.segment, t.created_ms,"
	                  " d.value, d.critical, d.autonomous, d.phase, t.status,"
	                  " coalesce(t.value, d.final), coalesce(t.reviewer, d.reviewer)"
	                  " FROM csa_auto_tasks t JOIN csa_auto_decisions d ON d.id = t.decision_id"
	                  " WHERE t.id = $1",
	                  1, p, err, &rc);
	if (!r)
		return rc;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return csa_error(err, CSA_ENOENT, "no review task %lld", (long long)t->id);
	}
	claim_of_row(r, 0, t);
	PQclear(r);
	return CSA_OK;
}

static int pg_latest_decision(struct auto_store *s, struct task_claim *t, struct csa_err *err)
{
	const char *p[] = {t->ticket, t->type};
	int rc;
	/* n: the order rows were written in (a row written again is the
	 * newest), as SQLite's rowid */
	PGresult *r = run(s, "reading a ticket's latest decision",
	                  "SELECT id, ticket_id, type, segment, created_ms, value, critical,"
	                  " autonomous, phase, '', final, reviewer, (SELECT max(k.id) FROM"
	                  " csa_auto_tasks k WHERE k.decision_id = d.id AND k.status = 'deciding')"
	                  " FROM csa_auto_decisions d WHERE ticket_id = $1 AND type = $2"
	                  " ORDER BY created_ms DESC, n DESC LIMIT 1",
	                  2, p, err, &rc);
	if (!r)
		return rc;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return csa_error(err, CSA_ENOENT, "ticket '%s' has no %s decision", t->ticket,
		                 t->type);
	}
	claim_of_row(r, 0, t);
	t->id = gi(r, 0, 12); /* NULL: 0 */
	if (t->id)
		snprintf(t->status, sizeof(t->status), "deciding");
	PQclear(r);
	return CSA_OK;
}

static int pg_claim_task(struct auto_store *s, int64_t task_id, const char *claim,
                         const char *value, const char *who, struct csa_err *err)
{
	const char *p[] = {I64(task_id), claim, value, who};
	int64_t n = 0;
	int rc = exec(s, "claiming a review task",
	              "UPDATE csa_auto_tasks SET status = 'deciding', claim = $2, value = $3,"
	              " reviewer = $4 WHERE id = $1 AND status = 'open'",
	              4, p, &n, err);
	return rc ? rc : n == 1;
}

static void pg_release_claim(struct auto_store *s, int64_t task_id, const char *claim)
{
	const char *p[] = {I64(task_id), claim};
	exec(s, "releasing a review task",
	     "UPDATE csa_auto_tasks SET status = 'open', claim = NULL, value = NULL,"
	     " reviewer = NULL WHERE id = $1 AND status = 'deciding' AND claim = $2",
	     2, p, NULL, NULL);
}

static int pg_record_review(struct auto_store *s, const struct task_claim *t, const char *claim,
                            const char *value, int correct, const char *who, int64_t decision_ms,
                            struct csa_err *err)
{
	const char *p[] = {t->decision_id,
	                   value,
	                   correct ? "1" : "0",
	                   I64(csa_now_ms()),
	                   who,
	                   decision_ms >= 0 ? I64(decision_ms) : NULL};
	int rc = exec(s, "recording the review",
	              "UPDATE csa_auto_decisions SET final = $2, correct = $3, reviewed_ms = $4,"
	              " reviewer = $5, decision_ms = coalesce($6::bigint, decision_ms)"
	              " WHERE id = $1",
	              6, p, NULL, err);
	if (rc || t->id == 0)
		return rc; /* t->id 0: a correction, no task to close */
	const char *q[] = {I64(t->id), claim};
	int64_t n = 0;
	if ((rc = exec(s, "closing the task",
	               "UPDATE csa_auto_tasks SET status = 'done' WHERE id = $1 AND"
	               " status = 'deciding' AND claim = $2",
	               2, q, &n, err)))
		return rc;
	if (n != 1)
		return csa_error(err, CSA_ESTATE, "the claim on review task %lld was lost",
		                 (long long)t->id);
	return CSA_OK;
}

static int pg_ticket_confirmed_critical(struct auto_store *s, const char *ticket)
{
	const char *p[] = {ticket};
	return one_i64(s, "reading whether a ticket was confirmed critical",
	               "SELECT count(*) FROM csa_auto_decisions WHERE ticket_id = $1 AND"
	               " type = 'priority' AND final = 'CRITICAL'",
	               1, p) > 0;
}

static int pg_mark_ticket_critical(struct auto_store *s, const char *ticket, struct csa_err *err)
{
	char what[160];
	snprintf(what, sizeof(what), "marking the decisions of ticket '%s' critical", ticket);
	const char *p[] = {ticket};
	return exec(s, what, "UPDATE csa_auto_decisions SET critical = 1 WHERE ticket_id = $1", 1,
	            p, NULL, err);
}

static int pg_reversed_autonomous(struct auto_store *s, const char *ticket, const char *except,
                                  json_t **found, struct csa_err *err)
{
	char what[160];
	snprintf(what, sizeof(what), "reading the reversed decisions of ticket '%s'", ticket);
	*found = json_array();
	const char *p[] = {ticket, except};
	int rc;
	PGresult *r = run(s, what,
	                  "SELECT id, type, segment, value, final FROM csa_auto_decisions WHERE"
	                  " ticket_id = $1 AND id <> $2 AND critical = 0 AND autonomous = 1 AND"
	                  " correct = 0",
	                  2, p, err, &rc);
	if (!r)
		return rc; /* a partial list decides nothing: none */
	for (int k = 0; k < PQntuples(r); k++)
		json_array_append_new(*found, json_pack("{s:s, s:s, s:s, s:s?, s:s}", "id",
		                                        PQgetvalue(r, k, 0), "type",
		                                        PQgetvalue(r, k, 1), "segment",
		                                        PQgetvalue(r, k, 2), "value", gs(r, k, 3),
		                                        "final", PQgetvalue(r, k, 4)));
	PQclear(r);
	return CSA_OK;
}

/* ---- recovery ---------------------------------------------------------------- */

static int64_t pg_newest_decision_ms(struct auto_store *s)
{
	return one_i64(s, "reading the newest decision",
	               "SELECT coalesce(max(created_ms), 0) FROM csa_auto_decisions", 0, NULL);
}

static void pg_tickets_decided_since(struct auto_store *s, int64_t since_ms, json_t *ids)
{
	const char *p[] = {I64(since_ms)};
	PGresult *r = run(s, "reading the tickets decided on lately",
	                  "SELECT DISTINCT ticket_id FROM csa_auto_decisions WHERE created_ms >= $1",
	                  1, p, NULL, NULL);
	for (int k = 0; r && k < PQntuples(r); k++)
		json_object_set_new(ids, PQgetvalue(r, k, 0), json_true());
	PQclear(r);
}

static int pg_ticket_decisions(struct auto_store *s, const char *ticket_id, json_t **out,
                               struct csa_err *err)
{
	*out = json_array();
	const char *p[] = {ticket_id};
	int rc;
	PGresult *r = run(s, "reading a ticket's decisions to recover them",
	                  "SELECT id, created_ms FROM csa_auto_decisions WHERE ticket_id = $1", 1,
	                  p, err, &rc);
	if (!r)
		return rc;
	for (int k = 0; k < PQntuples(r); k++)
		json_array_append_new(*out,
		                      json_pack("[s, I]", PQgetvalue(r, k, 0), (json_int_t)gi(r, k, 1)));
	PQclear(r);
	return CSA_OK;
}

static int pg_remove_decision(struct auto_store *s, const char *ticket_id, const char *key,
                              struct csa_err *err)
{
	static const char what[] = "removing a decision whose ticket was not committed";
	const char *p[] = {key, ticket_id};
	int rc = exec(s, what, "DELETE FROM csa_auto_decisions WHERE id = $1", 1, p, NULL, err);
	return rc ? rc
	          : exec(s, what,
	                 "DELETE FROM csa_auto_tasks WHERE ticket_id = $2 AND decision_id = $1", 2,
	                 p, NULL, err);
}

static int pg_restore_review(struct auto_store *s, const char *ticket_id, const char *key,
                             const char *value, int correct, const char *by,
                             struct csa_err *err)
{
	static const char what[] = "restoring a reviewed decision";
	const char *p[] = {key, value, correct ? "1" : "0", I64(csa_now_ms()), by};
	int rc = exec(s, what,
	              "UPDATE csa_auto_decisions SET final = $2, correct = $3, reviewed_ms = $4,"
	              " reviewer = $5 WHERE id = $1",
	              5, p, NULL, err);
	const char *q[] = {key, ticket_id};
	return rc ? rc
	          : exec(s, what,
	                 "UPDATE csa_auto_tasks SET status = 'done' WHERE ticket_id = $2 AND"
	                 " decision_id = $1",
	                 2, q, NULL, err);
}

static int pg_claims_of(struct auto_store *s, const char *claim, json_t **out,
                        struct csa_err *err)
{
	*out = NULL;
	const char *p[] = {claim};
	int rc;
	PGresult *r = run(s, "reading review tasks claimed by a dead process",
	                  "SELECT id, ticket_id, decision_id, type FROM csa_auto_tasks WHERE"
	                  " status = 'deciding' AND claim = $1",
	                  1, p, err, &rc);
	if (!r)
		return rc;
	*out = json_array();
	for (int k = 0; k < PQntuples(r); k++)
		json_array_append_new(*out, json_pack("[I, s, s, s]", (json_int_t)gi(r, k, 0),
		                                      PQgetvalue(r, k, 1), PQgetvalue(r, k, 2),
		                                      PQgetvalue(r, k, 3)));
	PQclear(r);
	return CSA_OK;
}

static int pg_settle_claim(struct auto_store *s, int64_t task_id, const char *decision_id,
                           const char *value, const char *by, const char *what,
                           struct csa_err *err)
{
	if (!value) {
		const char *p[] = {I64(task_id)};
		return exec(s, what,
		            "UPDATE csa_auto_tasks SET status = 'open', claim = NULL, value = NULL,"
		            " reviewer = NULL WHERE id = $1",
		            1, p, NULL, err);
	}
	const char *p[] = {decision_id, value, I64(csa_now_ms()), by};
	int rc = exec(s, what,
	              "UPDATE csa_auto_decisions SET final = $2,"
	              " correct = (value IS NOT DISTINCT FROM $2)::int, reviewed_ms = $3,"
	              " reviewer = $4 WHERE id = $1",
	              4, p, NULL, err);
	const char *q[] = {I64(task_id), value, by};
	return rc ? rc
	          : exec(s, what,
	                 "UPDATE csa_auto_tasks SET status = 'done', value = $2, reviewer = $3"
	                 " WHERE id = $1",
	                 3, q, NULL, err);
}

/* The advisory lock key of a controller's claim. */
static const char *claim_key(char buf[24], const char *claim)
{
	snprintf(buf, 24, "%lld", csa_pg_lock_key("csa_auto_claim", claim));
	return buf;
}

static int pg_hold_claim(struct auto_store *s, const char *claim, struct csa_err *err)
{
	if (s->live)
		return csa_error(err, CSA_ESTATE, "this store already holds a claim on %s",
		                 s->where);
	PGconn *c;
	int rc = csa_pg_get(s->pg, &c, err);
	if (rc)
		return rc;
	char key[24];
	const char *p[] = {claim_key(key, claim)};
	PGresult *r = NULL;
	/* a session lock: kept while this connection lives, never pooled */
	if ((rc = csa_pg_exec(s->where, c, "holding this controller's claim",
	                      "SELECT pg_try_advisory_lock($1::bigint)", 1, p, &r, err))) {
		PQfinish(c);
		return rc;
	}
	int got = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	if (!got) {
		PQfinish(c);
		return csa_error(err, CSA_ESTATE, "claim '%s' is held by another process on %s", claim,
		                 s->where);
	}
	s->live = c;
	return CSA_OK;
}

static int pg_dead_claims(struct auto_store *s, json_t *dead, struct csa_err *err)
{
	int rc;
	PGresult *r = run(s, "reading the claims of review tasks being decided",
	                  "SELECT DISTINCT claim FROM csa_auto_tasks WHERE status = 'deciding' AND"
	                  " claim IS NOT NULL",
	                  0, NULL, err, &rc);
	if (!r || PQntuples(r) == 0) {
		PQclear(r);
		return rc;
	}
	/* on a connection of its own, closed after: a session lock taken to
	 * look is never left on a pooled one */
	PGconn *c;
	if ((rc = csa_pg_get(s->pg, &c, err))) {
		PQclear(r);
		return rc;
	}
	for (int k = 0; rc == CSA_OK && k < PQntuples(r); k++) {
		char key[24];
		const char *p[] = {claim_key(key, PQgetvalue(r, k, 0))};
		PGresult *t = NULL;
		if ((rc = csa_pg_exec(s->where, c, "looking for the holder of a claim",
		                      "SELECT pg_try_advisory_lock($1::bigint)", 1, p, &t, err)))
			break;
		/* nobody holds it: its controller is gone */
		int free_now = strcmp(PQgetvalue(t, 0, 0), "t") == 0;
		PQclear(t);
		if (free_now) {
			json_array_append_new(dead, json_string(PQgetvalue(r, k, 0)));
			rc = csa_pg_exec(s->where, c, "letting go of a dead claim's lock",
			                 "SELECT pg_advisory_unlock($1::bigint)", 1, p, NULL, err);
		}
	}
	PQfinish(c);
	PQclear(r);
	return rc;
}

/* ---- segment phases ------------------------------------------------------- */

static int pg_load_phases(struct auto_store *s, json_t **out, struct csa_err *err)
{
	int rc;
	PGresult *r = run(s, "reading the segment phases",
	                  "SELECT doc FROM csa_auto_state WHERE name = 'phases'", 0, NULL, err, &rc);
	if (!r)
		return rc;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return csa_error(err, CSA_ENOENT, "no segment phases saved in %s", s->where);
	}
	char source[400];
	snprintf(source, sizeof(source), "the segment phases in %s", s->where);
	rc = csa_json_parse(PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0), source, out, err);
	PQclear(r);
	return rc;
}

static int pg_save_phases(struct auto_store *s, const json_t *phases, struct csa_err *err)
{
	char *buf;
	size_t n;
	int rc = csa_json_dump(phases, 1, &buf, &n, err);
	if (rc)
		return rc;
	const char *p[] = {buf};
	int own = 0;
	if ((rc = fence_begin(s, "saving the segment phases", &own, err)) == CSA_OK)
		rc = exec(s, "saving the segment phases",
		          "INSERT INTO csa_auto_state (name, doc) VALUES ('phases', $1) ON CONFLICT "
		          "(name) DO UPDATE SET doc = EXCLUDED.doc, saved_at = now()",
		          1, p, NULL, err);
	rc = fence_end(s, "saving the segment phases", own, rc, err);
	free(buf);
	return rc;
}

/* ---- rollback points ------------------------------------------------------ */

static int pg_save_point(struct auto_store *s, const json_t *manifest, const struct auto_doc *docs,
                         size_t n, struct csa_err *err)
{
	const char *id = csa_json_str(manifest, "id");
	int rc = auto_point_names_ok(id, "manifest.json", err);
	for (size_t i = 0; i < n && rc == CSA_OK; i++)
		rc = auto_point_names_ok(id, docs[i].name, err);
	char *text = NULL;
	size_t len;
	if (rc || (rc = csa_json_dump(manifest, 1, &text, &len, err)))
		return rc;
	char what[200];
	snprintf(what, sizeof(what), "saving rollback point '%s'", id);
	/* one transaction: a point is there whole, manifest and documents,
	 * or not at all; the tick's (before it advances the workspace) only
	 * while its node leads */
	if ((rc = pg_begin(s, 0, what, err)) == CSA_OK) {
		const char *p[] = {id, text};
		int own;
		rc = fence_begin(s, what, &own, err);
		if (rc == CSA_OK)
			rc = exec(s, what,
			          "INSERT INTO csa_auto_points (id, manifest) VALUES ($1, $2) ON"
			          " CONFLICT (id) DO UPDATE SET manifest = EXCLUDED.manifest,"
			          " saved_at = now()",
			          2, p, NULL, err);
		if (rc == CSA_OK)
			rc = exec(s, what, "DELETE FROM csa_auto_point_docs WHERE point_id = $1", 1, p,
			          NULL, err);
		for (size_t i = 0; i < n && rc == CSA_OK; i++) {
			char *hex = csa_pg_hex(docs[i].buf, docs[i].len);
			const char *q[] = {id, docs[i].name, hex};
			rc = hex ? exec(s, what,
			                "INSERT INTO csa_auto_point_docs (point_id, name, body)"
			                " VALUES ($1, $2, decode($3, 'hex'))",
			                3, q, NULL, err)
			         : csa_error(err, CSA_ENOMEM, "%s: out of memory", what);
			free(hex);
		}
		if (rc == CSA_OK)
			rc = pg_commit(s, what, err);
		pg_rollback(s);
	}
	free(text);
	return rc;
}

static int pg_list_points(struct auto_store *s, json_t **out, struct csa_err *err)
{
	int rc;
	PGresult *r = run(s, "listing the rollback points",
	                  "SELECT id, manifest FROM csa_auto_points", 0, NULL, err, &rc);
	if (!r)
		return rc;
	json_t *arr = json_array();
	for (int k = 0; k < PQntuples(r); k++) {
		json_t *m = json_loads(PQgetvalue(r, k, 1), 0, NULL);
		const char *id = csa_json_str(m, "id");
		/* a manifest that names another point is not one */
		if (id && strcmp(id, PQgetvalue(r, k, 0)) == 0 &&
		    auto_point_names_ok(id, "manifest.json", NULL) == CSA_OK)
			json_array_append(arr, m);
		json_decref(m);
	}
	PQclear(r);
	*out = arr;
	return CSA_OK;
}

static int pg_point_doc(struct auto_store *s, const char *id, const char *name, char **buf,
                        size_t *len, struct csa_err *err)
{
	int rc = auto_point_names_ok(id, name, err);
	if (rc)
		return rc;
	const char *p[] = {id, name};
	PGresult *r = run(s, "reading a rollback point's document",
	                  "SELECT encode(body, 'hex') FROM csa_auto_point_docs WHERE point_id = $1"
	                  " AND name = $2",
	                  2, p, err, &rc);
	if (!r)
		return rc;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return csa_error(err, CSA_ENOENT, "rollback point '%s' has no '%s' in %s", id, name,
		                 s->where);
	}
	const char *hex = PQgetvalue(r, 0, 0);
	size_t n = strlen(hex) / 2;
	char *b = malloc(n + 1);
	for (size_t i = 0; b && i < n; i++) {
		unsigned hi = (unsigned)(hex[2 * i] <= '9' ? hex[2 * i] - '0' : hex[2 * i] - 'a' + 10);
		unsigned lo =
		    (unsigned)(hex[2 * i + 1] <= '9' ? hex[2 * i + 1] - '0' : hex[2 * i + 1] - 'a' + 10);
		b[i] = (char)(hi << 4 | lo);
	}
	PQclear(r);
	if (!b)
		return csa_error(err, CSA_ENOMEM, "out of memory reading rollback point '%s'", id);
	b[n] = '\0';
	*buf = b;
	*len = n;
	return CSA_OK;
}

/* ---- open and close --------------------------------------------------------- */

int auto_pg_open(struct csa_pg *pg, struct auto_store **out, struct csa_err *err)
{
	struct auto_store *s = calloc(1, sizeof(*s));
	*out = s;
	if (!s)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the automation store");
	s->pg = pg;
	snprintf(s->where, sizeof(s->where), "%s", csa_pg_where(pg));
	/* the connection now: a database that is not there is said at open */
	return csa_pg_get(pg, &s->c, err);
}

/* ops->open: the database at 'url' through a pool of the store's own
 * (migrated on open), for a process with no workspace pool to borrow. */
static int pg_open(const char *url, struct auto_store **out, struct csa_err *err)
{
	struct csa_pg *pg;
	*out = NULL;
	int rc = csa_pg_open(url, "the automation store's URL", CSA_PG_MIGRATE, &pg, err);
	if (rc)
		return rc;
	rc = auto_pg_open(pg, out, err);
	/* a store made, even one that failed, is closed by ops->close,
	 * which frees the pool with it */
	if (*out)
		(*out)->own_pg = 1;
	else
		csa_pg_free(pg);
	return rc;
}

static void pg_close(struct auto_store *s)
{
	if (!s)
		return;
	pg_rollback(s);
	csa_pg_put(s->pg, s->c);
	if (s->live)
		PQfinish(s->live); /* the claim's lock goes with its session */
	if (s->own_pg)
		csa_pg_free(s->pg);
	free(s);
}

const char *auto_pg_where(const struct auto_store *s)
{
	return s->where;
}

const struct auto_store_ops auto_pg_ops = {
    .open = pg_open,
    .close = pg_close,
    .errmsg = pg_errmsg,
    .error = pg_error,
    .rollback = pg_rollback,
    .load_phases = pg_load_phases,
    .save_phases = pg_save_phases,
    .save_point = pg_save_point,
    .list_points = pg_list_points,
    .point_doc = pg_point_doc,
    .begin = pg_begin,
    .commit = pg_commit,
    .audit = pg_audit,
    .insert_decision = pg_insert_decision,
    .record_decisions = pg_record_decisions,
    .forget_decisions = pg_forget_decisions,
    .reviewed_autonomous = pg_reviewed_autonomous,
    .outcomes = pg_outcomes,
    .reviews_after = pg_reviews_after,
    .scope_metrics = pg_scope_metrics,
    .baseline_ms = pg_baseline_ms,
    .trend = pg_trend,
    .open_alerts = pg_open_alerts,
    .segments = pg_segments,
    .segments_of = pg_segments_of,
    .reviewed_autonomous_sample = pg_reviewed_autonomous_sample,
    .recent_autonomy = pg_recent_autonomy,
    .recent_outcomes = pg_recent_outcomes,
    .kpi = pg_kpi,
    .counts = pg_counts,
    .alert_is_open = pg_alert_is_open,
    .insert_alert = pg_insert_alert,
    .close_alerts = pg_close_alerts,
    .fence = pg_fence,
    .alert_list = pg_alert_list,
    .task_list = pg_task_list,
    .ticket_tasks = pg_ticket_tasks,
    .next_task = pg_next_task,
    .read_claim = pg_read_claim,
    .claim_task = pg_claim_task,
    .release_claim = pg_release_claim,
    .record_review = pg_record_review,
    .ticket_confirmed_critical = pg_ticket_confirmed_critical,
    .mark_ticket_critical = pg_mark_ticket_critical,
    .reversed_autonomous = pg_reversed_autonomous,
    .newest_decision_ms = pg_newest_decision_ms,
    .tickets_decided_since = pg_tickets_decided_since,
    .ticket_decisions = pg_ticket_decisions,
    .remove_decision = pg_remove_decision,
    .restore_review = pg_restore_review,
    .latest_decision = pg_latest_decision,
    .claims_of = pg_claims_of,
    .settle_claim = pg_settle_claim,
    .hold_claim = pg_hold_claim,
    .dead_claims = pg_dead_claims,
};
