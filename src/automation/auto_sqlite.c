/*
 * The controller's store on SQLite (auto_store.h): automation.db (WAL)
 * holds the decision log, review tasks and alerts. Every statement the
 * controller runs is in this file, behind auto_sqlite_ops.
 */
#include "automation/auto_internal.h"
#include "base/fsops.h"
#include "base/hash.h"
#include "base/ids.h"
#include "base/json.h"
#include "base/ts.h"
#include "base/walckpt.h"

#include <dirent.h>
#include <errno.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Statements run for every decision and every review, prepared once
 * (see kept()): preparing them each time was a tenth of a replay's CPU. */
enum {
	KEPT_REVIEWED,
	KEPT_REVIEWED_TYPE,
	KEPT_REVIEWED_AUTO,
	KEPT_INSERT_DECISION,
	KEPT_INSERT_TASK,
	KEPT_TICKET_TASKS,
	KEPT_READ_CLAIM,
	KEPT_CLAIM_TASK,
	KEPT_RECORD_REVIEW,
	KEPT_CLOSE_TASK,
	KEPT_CONFIRMED_CRITICAL,
	KEPT_COUNT
};

/* Every other statement, prepared on its first use and kept for the next
 * (prep(), unprep()): the controller's tick, gates and reviews run the same
 * few dozen statements over and over, and compiling them each time was
 * what a replay spent most in SQLite after running them. */
#define STMT_CACHE 64

struct stmt_slot {
	char *sql;
	uint64_t hash;
	sqlite3_stmt *st;
	int in_use; /* handed out by prep(), not yet back through unprep() */
};

struct auto_store {
	char path[4096];       /* automation.db, also for messages */
	char root[4096];       /* its directory, with the trailing '/' */
	char state_path[4200]; /* automation/state.json beside it */
	sqlite3 *db;
	struct csa_walckpt *ckpt;       /* checkpoints, off the decision path */
	sqlite3_stmt *kept[KEPT_COUNT]; /* statements of every decision, under mu */
	pthread_mutex_t stmt_mu;        /* guards stmts[] (callers may not hold a->mu) */
	struct stmt_slot stmts[STMT_CACHE];
	size_t nstmts;
};

static const char schema_sql[] =
    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;"
    "PRAGMA temp_store=MEMORY;"
    "CREATE TABLE IF NOT EXISTS decisions(id TEXT PRIMARY KEY, ticket_id TEXT NOT NULL,"
    " type TEXT NOT NULL, segment TEXT NOT NULL, phase INTEGER NOT NULL, value TEXT,"
    " confidence REAL, threshold REAL, autonomous INTEGER NOT NULL, critical INTEGER NOT NULL,"
    " created_ms INTEGER NOT NULL, final TEXT, correct INTEGER, reviewed_ms INTEGER,"
    " reviewer TEXT, decision_ms INTEGER, model TEXT, shown INTEGER NOT NULL DEFAULT 0,"
    " review_weight REAL);"
    /* gates read a scope's newest decisions in a phase, and the PHASE_1
     * baseline all of PHASE_1; (type, segment, phase) without the time
     * made every gate sort the scope (replaced, 0.9) */
    "DROP INDEX IF EXISTS decisions_scope;"
    "CREATE INDEX IF NOT EXISTS decisions_gate ON decisions(type, segment, phase, created_ms);"
    /* a segment's gate reads its 500 newest decisions in the phase every
     * tick: with what it sums in the index it reads no row of the table
     * (a lookup per row was most of a tick, issue 21). Its own index, so
     * that every other statement keeps the plan and row order it had. */
    "CREATE INDEX IF NOT EXISTS decisions_gate_sums ON decisions(type, segment, phase,"
    " created_ms, autonomous, final, correct, decision_ms, critical, value);"
    "CREATE INDEX IF NOT EXISTS decisions_phase ON decisions(phase, created_ms);"
    /* the PHASE_1 baseline from the reviewed decisions alone, without
     * reading the table; written at review time, not per decision */
    "CREATE INDEX IF NOT EXISTS decisions_time ON decisions(phase, decision_ms) WHERE"
    " decision_ms IS NOT NULL;"
    /* a review looks at the other decisions of its ticket (is it CRITICAL?) */
    "CREATE INDEX IF NOT EXISTS decisions_ticket ON decisions(ticket_id);"
    /* the per-decision and monitor queries read the newest decisions and
     * the newest reviews of a type or segment: covering indexes keep them
     * independent of how many unreviewed decisions pile up */
    "CREATE INDEX IF NOT EXISTS decisions_new_type ON decisions(type, created_ms);"
    /* every index is a page more in each ticket's commit: a segment's
     * newest decisions are read through decisions_gate, in its phase
     * (decisions_new_seg dropped, 0.9) */
    "DROP INDEX IF EXISTS decisions_new_seg;"
    /* the monitor reads a type's 5,000 newest reviews and keeps the
     * autonomous ones since its evidence began: created_ms in the index
     * spares it a lookup of each row in the table (decisions_rev_type
     * without it replaced, issue 21). Rows equal in every other column
     * read back the same, so no query sees another order of values. */
    "DROP INDEX IF EXISTS decisions_rev_type;"
    "CREATE INDEX IF NOT EXISTS decisions_rev_type_c ON decisions(type, reviewed_ms, autonomous,"
    " correct, confidence, review_weight, created_ms) WHERE final IS NOT NULL;"
    "CREATE INDEX IF NOT EXISTS decisions_rev_seg ON decisions(type, segment, reviewed_ms,"
    " autonomous, correct, confidence, review_weight) WHERE final IS NOT NULL;"
    /* every autonomous decision counts its scope's reviewed autonomous
     * ones (the audit rate falls as they grow): through decisions_rev_seg
     * that read every review of the scope, human ones included, which in
     * PHASE_3 are most of them (issue 21). Written only when an
     * autonomous decision is reviewed. */
    "CREATE INDEX IF NOT EXISTS decisions_rev_auto ON decisions(type, segment) WHERE"
    " final IS NOT NULL AND autonomous = 1;"
    "CREATE TABLE IF NOT EXISTS tasks(id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " decision_id TEXT NOT NULL, ticket_id TEXT NOT NULL, type TEXT NOT NULL,"
    " segment TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'open',"
    " shown INTEGER NOT NULL, suggestion TEXT, confidence REAL, alternatives TEXT,"
    " score REAL NOT NULL, created_ms INTEGER NOT NULL, due_ms INTEGER NOT NULL,"
    /* status 'deciding': claimed by the controller whose open marker is
     * 'claim', for 'value' by 'reviewer' (see csa_auto_review_decide) */
    " claim TEXT, value TEXT, reviewer TEXT);"
    "CREATE INDEX IF NOT EXISTS tasks_open ON tasks(status, score);"
    "CREATE INDEX IF NOT EXISTS tasks_ticket ON tasks(ticket_id, status);"
    "CREATE TABLE IF NOT EXISTS alerts(id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " created_ms INTEGER NOT NULL, type TEXT NOT NULL, severity TEXT NOT NULL,"
    " scope TEXT NOT NULL, detail TEXT NOT NULL, open INTEGER NOT NULL DEFAULT 1);";

/* A statement on automation.db failed: what was being done and SQLite's
 * reason; CSA_EBUSY when another process held the database past the busy
 * timeout (worth retrying), CSA_EIO otherwise. Caller holds a->mu. */
static int sq_error(struct auto_store *s, struct csa_err *err, const char *what)
{
	int code = sqlite3_errcode(s->db);
	return csa_error(err, code == SQLITE_BUSY || code == SQLITE_LOCKED ? CSA_EBUSY : CSA_EIO,
	                 "'%s': %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

/* A table from before a column was added gets it: decisions before
 * review weights (their reviews then count with weight 1, as they were
 * sampled before), tasks before one decision per task (claim, value,
 * reviewer: NULL on tasks decided before, whose value is in decisions). */
static int add_column(sqlite3 *db, const char *table, const char *column, const char *decl)
{
	sqlite3_stmt *st = NULL;
	int has_table = 0, has_column = 0;
	char *sql = sqlite3_mprintf("SELECT name FROM pragma_table_info(%Q)", table);
	if (!sql || sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		sqlite3_free(sql);
		return SQLITE_ERROR;
	}
	sqlite3_free(sql);
	while (sqlite3_step(st) == SQLITE_ROW) {
		has_table = 1;
		has_column |= strcmp((const char *)sqlite3_column_text(st, 0), column) == 0;
	}
	sqlite3_finalize(st);
	if (!has_table || has_column)
		return SQLITE_OK; /* new database (auto_schema_sql creates it), or current */
	if (!(sql = sqlite3_mprintf("ALTER TABLE %s ADD COLUMN %s %s", table, column, decl)))
		return SQLITE_NOMEM;
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_free(sql);
	return rc;
}

static int add_columns(sqlite3 *db)
{
	static const char *const cols[][3] = {{"decisions", "review_weight", "REAL"},
	                                      {"tasks", "claim", "TEXT"},
	                                      {"tasks", "value", "TEXT"},
	                                      {"tasks", "reviewer", "TEXT"}};
	for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
		int rc = add_column(db, cols[i][0], cols[i][1], cols[i][2]);
		if (rc != SQLITE_OK)
			return rc;
	}
	return SQLITE_OK;
}

/*
 * sqlite3_prepare_v2() on s->db, with the statement of the same text
 * kept from an earlier use when there is one and nobody is using it (a
 * statement being stepped by a caller further up gets a new one of its
 * own). The statement goes back through unprep(), which resets a kept one
 * (its bindings cleared here, at its next use) and finalizes any other:
 * the pair behaves as prepare and finalize, only faster.
 */
static int prep(struct auto_store *s, const char *sql, int len, sqlite3_stmt **st,
                const char **tail)
{
	(void)len, (void)tail; /* always -1 and NULL here: the text ends at its NUL */
	size_t n = strlen(sql);
	uint64_t h = csa_fnv1a(CSA_FNV_SEED, sql, n);
	pthread_mutex_lock(&s->stmt_mu);
	for (size_t i = 0; i < s->nstmts; i++) {
		struct stmt_slot *k = &s->stmts[i];
		if (k->hash == h && !k->in_use && strcmp(k->sql, sql) == 0) {
			k->in_use = 1;
			pthread_mutex_unlock(&s->stmt_mu);
			sqlite3_clear_bindings(k->st);
			*st = k->st;
			return SQLITE_OK;
		}
	}
	int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
	char *copy = rc == SQLITE_OK && s->nstmts < STMT_CACHE ? strdup(sql) : NULL;
	if (copy)
		s->stmts[s->nstmts++] = (struct stmt_slot){copy, h, *st, 1};
	pthread_mutex_unlock(&s->stmt_mu);
	return rc;
}

/* Give back a statement of prep() (NULL: a no-op). */
static void unprep(struct auto_store *s, sqlite3_stmt *st)
{
	if (!st)
		return;
	pthread_mutex_lock(&s->stmt_mu);
	for (size_t i = 0; i < s->nstmts; i++)
		if (s->stmts[i].st == st) {
			sqlite3_reset(st);
			s->stmts[i].in_use = 0;
			pthread_mutex_unlock(&s->stmt_mu);
			return;
		}
	pthread_mutex_unlock(&s->stmt_mu);
	sqlite3_finalize(st);
}

/*
 * Reviewed outcomes of a scope, oldest first: the 'limit' newest by
 * review time, and among reviews of one millisecond (a replay's reviews of
 * a ticket share one) newest first, in the reverse of the index's order.
 * That is the order of the query this replaced (the newest in a subquery,
 * sorted again oldest first by a sort that keeps ties in the order they
 * came); read straight off the index backwards and put in order here, it
 * needs no sort in SQLite, which was a third of the query.
 */
static struct csa_outcome *sq_outcomes(struct auto_store *s, const char *type, const char *segment,
                                       size_t limit, size_t *n)
{
	sqlite3_stmt *st;
	*n = 0;
	/* each index's own columns, then rowid, which ends every index key */
	const char *sql =
	    segment ? "SELECT confidence, correct, coalesce(review_weight, 1), reviewed_ms "
	              "FROM decisions INDEXED BY decisions_rev_seg WHERE final IS NOT NULL "
	              "AND type = ?1 AND segment = ?2 ORDER BY reviewed_ms DESC, "
	              "autonomous DESC, correct DESC, confidence DESC, review_weight DESC, "
	              "rowid DESC LIMIT ?3"
	            : "SELECT confidence, correct, coalesce(review_weight, 1), reviewed_ms "
	              "FROM decisions INDEXED BY decisions_rev_type_c WHERE final IS NOT NULL "
	              "AND type = ?1 ORDER BY reviewed_ms DESC, autonomous DESC, correct DESC, "
	              "confidence DESC, review_weight DESC, created_ms DESC, rowid DESC LIMIT ?3";
	if (prep(s, sql, -1, &st, NULL) != SQLITE_OK)
		return NULL;
	sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	if (segment)
		sqlite3_bind_text(st, 2, segment, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
	struct csa_outcome *o = malloc(limit * sizeof(*o) + 1);
	int64_t *ms = malloc(limit * sizeof(*ms) + 1);
	while (o && ms && sqlite3_step(st) == SQLITE_ROW && *n < limit) {
		o[*n] = (struct csa_outcome){sqlite3_column_double(st, 0), sqlite3_column_int(st, 1),
		                             sqlite3_column_double(st, 2)};
		ms[(*n)++] = sqlite3_column_int64(st, 3);
	}
	unprep(s, st);
	if (!ms) {
		free(o);
		return NULL;
	}
	/* newest first into oldest first, each millisecond's run kept as read:
	 * reverse the whole, then each run back */
	size_t m = *n;
	for (size_t i = 0; o && i < m / 2; i++) {
		struct csa_outcome t = o[i];
		o[i] = o[m - 1 - i];
		o[m - 1 - i] = t;
		int64_t u = ms[i];
		ms[i] = ms[m - 1 - i];
		ms[m - 1 - i] = u;
	}
	for (size_t a = 0; o && a < m;) {
		size_t b = a + 1;
		while (b < m && ms[b] == ms[a])
			b++;
		for (size_t i = a, j = b - 1; i < j; i++, j--) {
			struct csa_outcome t = o[i];
			o[i] = o[j];
			o[j] = t;
		}
		a = b;
	}
	free(ms);
	return o;
}

/* The one number a query returns (NULL reads as 0); -1 when the database
 * cannot answer (sqlite3_errmsg says why). */
static int64_t count_i64(struct auto_store *s, const char *sql, const char *p1, const char *p2)
{
	sqlite3_stmt *st;
	int64_t v = -1;
	if (prep(s, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (p1)
		sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
	if (p2)
		sqlite3_bind_text(st, 2, p2, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	unprep(s, st);
	return v;
}

/* The statement in slot k, prepared on first use; the caller holds a->mu
 * and calls sqlite3_reset() when done with it. */
static sqlite3_stmt *kept(struct auto_store *s, int k, const char *sql)
{
	if (!s->kept[k] && sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
	                                      &s->kept[k], NULL) != SQLITE_OK)
		return NULL;
	sqlite3_clear_bindings(s->kept[k]);
	return s->kept[k];
}

/* Run a prepared statement to its end and reset it; SQLITE_DONE or not. */
static int step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE;
}

/* sq_error() for row 'r': "<doing> decision '<key>' of ticket '<id>'". */
static int row_err(struct auto_store *s, struct csa_err *err, const char *doing, const json_t *r)
{
	char what[300];
	snprintf(what, sizeof(what), "%s decision '%s' of ticket '%s'", doing,
	         csa_json_str(r, "key"), csa_json_str(r, "ticket_id"));
	return sq_error(s, err, what);
}

/* ?1-?4, shared by a decision's row and its task: key (decision id),
 * ticket, type, segment. */
static void bind_keys(sqlite3_stmt *st, const json_t *r)
{
	sqlite3_bind_text(st, 1, csa_json_str(r, "key"), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, csa_json_str(r, "ticket_id"), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, csa_json_str(r, "type"), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, csa_json_str(r, "segment"), -1, SQLITE_STATIC);
}

static int sq_insert_decision(struct auto_store *s, const json_t *r, struct csa_err *err)
{
	static const char record[] = "cannot record", queue[] = "cannot queue the review of";
	sqlite3_stmt *st;
	if (!(st = kept(s, KEPT_INSERT_DECISION,
	                "INSERT OR REPLACE INTO decisions(id, ticket_id, type, segment, phase, "
	                "value, confidence, threshold, autonomous, critical, created_ms, model, "
	                "shown, review_weight) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
	                "?11, ?12, ?13, ?14)")))
		return row_err(s, err, record, r);
	bind_keys(st, r);
	sqlite3_bind_int(st, 5, (int)csa_json_int(r, "phase", 1));
	sqlite3_bind_text(st, 6, csa_json_str(r, "value"), -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 7, csa_json_num(r, "confidence", 0));
	/* NULL: no threshold (older rows say 2.0) */
	json_t *thr = json_object_get(r, "threshold");
	if (json_is_number(thr))
		sqlite3_bind_double(st, 8, json_number_value(thr));
	else
		sqlite3_bind_null(st, 8);
	sqlite3_bind_int(st, 9, json_is_true(json_object_get(r, "autonomous")));
	sqlite3_bind_int(st, 10, json_is_true(json_object_get(r, "critical")));
	sqlite3_bind_int64(st, 11, csa_json_int(r, "created_ms", 0));
	sqlite3_bind_text(st, 12, csa_json_str(r, "model"), -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 13, json_is_true(json_object_get(r, "shown")));
	/* an audited autonomous decision stands for 1/p of its kind */
	sqlite3_bind_double(st, 14, csa_json_num(r, "weight", 1));
	if (!step_done(st))
		return row_err(s, err, record, r);
	const char *kind = csa_json_str(r, "task");
	if (!kind)
		return CSA_OK;
	if (!(st = kept(s, KEPT_INSERT_TASK,
	                "INSERT INTO tasks(decision_id, ticket_id, type, segment, kind, "
	                "shown, suggestion, confidence, alternatives, score, created_ms, "
	                "due_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)")))
		return row_err(s, err, queue, r);
	bind_keys(st, r);
	sqlite3_bind_text(st, 5, kind, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 6, json_is_true(json_object_get(r, "shown")));
	sqlite3_bind_text(st, 7, csa_json_str(r, "value"), -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 8, csa_json_num(r, "confidence", 0));
	sqlite3_bind_text(st, 9, csa_json_str(r, "alternatives"), -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 10, csa_json_num(r, "score", 0));
	sqlite3_bind_int64(st, 11, csa_json_int(r, "created_ms", 0));
	sqlite3_bind_int64(st, 12, csa_json_int(r, "due_ms", 0));
	return step_done(st) ? CSA_OK : row_err(s, err, queue, r);
}

/* Caller holds a->mu. A failed transaction is rolled back whole. */
static void sq_rollback(struct auto_store *s)
{
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- gates ----------------------------------------------------------------- */

/* CSA_EIO (all zero) when automation.db cannot answer. */
static int sq_scope_metrics(struct auto_store *s, const char *type, const char *segment, int phase,
                            int64_t window, int64_t since, int64_t settled_before,
                            struct scope_metrics *m)
{
	memset(m, 0, sizeof(*m));
	sqlite3_stmt *st;
	/* the latest 'window' decisions made in this phase */
	const char *sql =
	    "SELECT count(*), sum(autonomous), sum(final IS NOT NULL), sum(coalesce(correct, 0)),"
	    " sum(autonomous = 0 AND (final IS NOT NULL OR created_ms <= ?6)),"
	    " sum(autonomous = 0 AND final IS NOT NULL),"
	    " sum(autonomous = 1 AND final IS NOT NULL),"
	    " sum(autonomous = 1 AND correct = 1),"
	    " avg(CASE WHEN autonomous = 0 AND final IS NOT NULL THEN decision_ms END),"
	    " sum(coalesce(decision_ms, 0)),"
	    " sum(autonomous = 1 AND correct = 0 AND (critical = 1 OR (type = 'strategy' AND"
	    " value = 'AUTOMATED_RESOLUTION'))), min(created_ms), max(created_ms)"
	    " FROM (SELECT %s FROM decisions WHERE phase = ?1 AND %s created_ms > ?5"
	    " ORDER BY created_ms DESC LIMIT ?4)";
	/* one statement per kind of scope, so that each can use its index; a
	 * segment's names the columns it sums, all in decisions_gate_sums */
	char q[1200];
	snprintf(q, sizeof(q), sql,
	         segment
	             ? "type, created_ms, autonomous, final, correct, decision_ms, critical, value"
	             : "*",
	         segment ? "type = ?2 AND segment = ?3 AND"
	         : type  ? "type = ?2 AND"
	                 : "");
	if (prep(s, q, -1, &st, NULL) != SQLITE_OK)
		return CSA_EIO;
	sqlite3_bind_int(st, 1, phase);
	if (type)
		sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
	if (segment)
		sqlite3_bind_text(st, 3, segment, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, window);
	sqlite3_bind_int64(st, 5, since);
	sqlite3_bind_int64(st, 6, settled_before);
	int step = sqlite3_step(st);
	if (step == SQLITE_ROW) {
		m->n = sqlite3_column_int64(st, 0);
		m->autonomous = sqlite3_column_int64(st, 1);
		m->reviewed = sqlite3_column_int64(st, 2);
		m->correct = sqlite3_column_int64(st, 3);
		m->human = sqlite3_column_int64(st, 4);
		m->human_reviewed = sqlite3_column_int64(st, 5);
		m->auto_reviewed = sqlite3_column_int64(st, 6);
		m->auto_correct = sqlite3_column_int64(st, 7);
		m->mean_decision_ms = sqlite3_column_double(st, 8);
		m->total_decision_ms = sqlite3_column_double(st, 9);
		m->critical_errors = sqlite3_column_int64(st, 10);
		m->first_ms = sqlite3_column_int64(st, 11);
		m->last_ms = sqlite3_column_int64(st, 12);
	}
	unprep(s, st);
	return step == SQLITE_ROW ? CSA_OK : CSA_EIO;
}

static int sq_trend(struct auto_store *s, int64_t since, int64_t bucket_ms, size_t max,
                    json_t **out, struct csa_err *err)
{
	sqlite3_stmt *st;
	if (bucket_ms <= 0)
		return csa_error(err, CSA_EINVAL, "a trend's bucket must be positive");
	if (prep(s,
	         "SELECT created_ms / ?2 AS b, count(*), sum(autonomous), sum(final IS NOT NULL),"
	         " sum(coalesce(correct, 0)), sum(autonomous = 1 AND final IS NOT NULL),"
	         " sum(autonomous = 1 AND correct = 1),"
	         " sum(autonomous = 1 AND correct = 0 AND (critical = 1 OR (type = 'strategy' AND"
	         " value = 'AUTOMATED_RESOLUTION')))"
	         " FROM decisions WHERE created_ms >= ?1 GROUP BY b ORDER BY b LIMIT ?3",
	         -1, &st, NULL) != SQLITE_OK)
		return sq_error(s, err, "reading the decision log's trend");
	sqlite3_bind_int64(st, 1, since);
	sqlite3_bind_int64(st, 2, bucket_ms);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)max);
	json_t *arr = json_array();
	int step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		json_array_append_new(
		    arr, json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "start",
		                   (json_int_t)(sqlite3_column_int64(st, 0) * bucket_ms),
		                   "decisions", (json_int_t)sqlite3_column_int64(st, 1),
		                   "autonomous", (json_int_t)sqlite3_column_int64(st, 2),
		                   "reviewed", (json_int_t)sqlite3_column_int64(st, 3), "correct",
		                   (json_int_t)sqlite3_column_int64(st, 4), "auto_reviewed",
		                   (json_int_t)sqlite3_column_int64(st, 5), "auto_correct",
		                   (json_int_t)sqlite3_column_int64(st, 6), "critical_errors",
		                   (json_int_t)sqlite3_column_int64(st, 7)));
	}
	unprep(s, st);
	if (step != SQLITE_DONE) {
		json_decref(arr);
		return sq_error(s, err, "reading the decision log's trend");
	}
	*out = arr;
	return CSA_OK;
}

static double sq_baseline_ms(struct auto_store *s)
{
	sqlite3_stmt *st;
	double b = 0;
	if (prep(s,
	         /* decision_ms is set with final, by a review */
	         "SELECT avg(decision_ms) FROM decisions WHERE phase = 1 AND "
	         "decision_ms IS NOT NULL",
	         -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			b = sqlite3_column_double(st, 0);
		unprep(s, st);
	}
	return b;
}

static int64_t sq_open_alerts(struct auto_store *s, const char *severity)
{
	return severity ? count_i64(s,
	                            "SELECT count(*) FROM alerts WHERE open = 1 AND "
	                            "severity = ?1",
	                            severity, NULL)
	                : count_i64(s, "SELECT count(*) FROM alerts WHERE open = 1", NULL, NULL);
}

static const char *sq_errmsg(struct auto_store *s)
{
	return sqlite3_errmsg(s->db);
}

/* ---- segments ----------------------------------------------------------- */

/* Each row of 'sql' (binding 'type' to ?1 when given) into *out: a string
 * when the statement has one column, else an array of its columns. */
static int list_rows(struct auto_store *s, const char *sql, const char *type, const char *what,
                     json_t **out, struct csa_err *err)
{
	sqlite3_stmt *st;
	*out = json_array();
	if (prep(s, sql, -1, &st, NULL) != SQLITE_OK)
		return sq_error(s, err, what);
	if (type)
		sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	int step, cols = sqlite3_column_count(st);
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *row = cols == 1 ? NULL : json_array();
		for (int c = 0; c < cols; c++) {
			const char *v = (const char *)sqlite3_column_text(st, c);
			json_t *j = json_string(v ? v : "");
			if (row)
				json_array_append_new(row, j);
			else
				row = j;
		}
		json_array_append_new(*out, row);
	}
	unprep(s, st);
	return step == SQLITE_DONE ? CSA_OK : sq_error(s, err, what);
}

/* The first (type, segment) pair of 'sql' (bound to p1, p2 when not NULL)
 * into *pair, as [type, segment] (NULL when there is none); the step's
 * result, or SQLITE_NOMEM. A statement with one column gives the segment
 * of type p1. */
static int pair_of(struct auto_store *s, const char *sql, const char *p1, const char *p2,
                   json_t **pair)
{
	sqlite3_stmt *st;
	*pair = NULL;
	int step = prep(s, sql, -1, &st, NULL);
	if (step != SQLITE_OK)
		return step;
	if (p1)
		sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
	if (p2)
		sqlite3_bind_text(st, 2, p2, -1, SQLITE_STATIC);
	if ((step = sqlite3_step(st)) == SQLITE_ROW) {
		int two = sqlite3_column_count(st) == 2;
		const char *t = two ? (const char *)sqlite3_column_text(st, 0) : p1,
		           *g = (const char *)sqlite3_column_text(st, two);
		if (!(*pair = json_pack("[s, s]", t ? t : "", g ? g : "")))
			step = SQLITE_NOMEM;
	}
	unprep(s, st);
	return step;
}

/*
 * Every (type, segment) of the decision log, sorted, as [type, segment]
 * arrays: from each pair to the next one above it with one seek of
 * decisions_gate, instead of "SELECT DISTINCT", which read the whole index
 * on every tick of the controller (a replay's decision log grows by three
 * rows a ticket, and it ticks every 25 tickets). The next pair is the next
 * segment of the same type, or else the first pair of the next type: two
 * statements, as a row value, "(type, segment) > (?1, ?2)", seeks to the
 * type only and then steps over every row of the segments below, which
 * was the whole index again over one tick. The pairs and their order are
 * those of that scan, which ran over the same index.
 */
static int segment_pairs(struct auto_store *s, const char *what, json_t **out, struct csa_err *err)
{
	static const char *const first =
	    "SELECT type, segment FROM decisions ORDER BY type, segment LIMIT 1";
	static const char *const next_segment =
	    "SELECT segment FROM decisions WHERE type = ?1 AND segment > ?2"
	    " ORDER BY segment LIMIT 1";
	static const char *const next_type =
	    "SELECT type, segment FROM decisions WHERE type > ?1 ORDER BY type, segment LIMIT 1";
	*out = json_array();
	int step = SQLITE_DONE;
	for (const json_t *last = NULL;;) {
		json_t *pair = NULL;
		const char *t = last ? json_string_value(json_array_get(last, 0)) : NULL,
		           *g = last ? json_string_value(json_array_get(last, 1)) : NULL;
		if (!last)
			step = pair_of(s, first, NULL, NULL, &pair);
		else if ((step = pair_of(s, next_segment, t, g, &pair)) == SQLITE_DONE)
			step = pair_of(s, next_type, t, NULL, &pair);
		if (!pair)
			break;
		json_array_append_new(*out, pair);
		last = pair;
	}
	if (step == SQLITE_NOMEM || !*out)
		return csa_error(err, CSA_ENOMEM, "'%s': %s: out of memory", s->path, what);
	return step == SQLITE_DONE ? CSA_OK : sq_error(s, err, what);
}

static int sq_segments(struct auto_store *s, enum auto_seg_order order, const char *what,
                       json_t **out, struct csa_err *err)
{
	if (order != AUTO_SEGS_KEYS)
		return segment_pairs(s, what, out, err);
	return list_rows(s, "SELECT DISTINCT type || '/' || segment FROM decisions", NULL, what,
	                 out, err);
}

static int sq_segments_of(struct auto_store *s, const char *type, const char *what, json_t **out,
                          struct csa_err *err)
{
	return list_rows(s, "SELECT DISTINCT segment FROM decisions WHERE type = ?1", type, what,
	                 out, err);
}

/* ---- the quality monitor --------------------------------------------------- */

static int sq_reviewed_autonomous_sample(struct auto_store *s, const char *type, size_t max,
                                         int64_t since, size_t *n, double *w, double *wk,
                                         const char *what, struct csa_err *err)
{
	sqlite3_stmt *st;
	*n = 0;
	*w = *wk = 0;
	if (prep(s,
	         /* among the last 5,000 reviews: where little is autonomous the
	          * tick does not read every review the type ever had */
	         "SELECT correct, coalesce(review_weight, 1) FROM (SELECT autonomous, correct,"
	         " review_weight, created_ms FROM decisions WHERE type = ?1 AND final IS NOT NULL"
	         " ORDER BY reviewed_ms DESC LIMIT 5000) WHERE autonomous = 1 AND created_ms > ?3"
	         " LIMIT ?2",
	         -1, &st, NULL) != SQLITE_OK)
		return sq_error(s, err, what);
	sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
	sqlite3_bind_int64(st, 3, since);
	int step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		double wi = sqlite3_column_double(st, 1);
		wi = wi > 0 ? wi : 1;
		(*n)++;
		*w += wi;
		*wk += sqlite3_column_int(st, 0) != 0 ? wi : 0;
	}
	unprep(s, st);
	return step == SQLITE_DONE ? CSA_OK : sq_error(s, err, what);
}

static int sq_recent_autonomy(struct auto_store *s, const char *type, int last, int64_t *n,
                              int64_t *autonomous, const char *what, struct csa_err *err)
{
	char q[2][200];
	snprintf(q[0], sizeof(q[0]),
	         "SELECT count(*) FROM (SELECT 1 FROM decisions WHERE type = ?1 "
	         "ORDER BY created_ms DESC LIMIT %d)",
	         last);
	snprintf(q[1], sizeof(q[1]),
	         "SELECT sum(autonomous) FROM (SELECT autonomous FROM "
	         "decisions WHERE type = ?1 ORDER BY created_ms DESC LIMIT %d)",
	         last);
	*n = count_i64(s, q[0], type, NULL);
	*autonomous = count_i64(s, q[1], type, NULL);
	return *n < 0 || *autonomous < 0 ? sq_error(s, err, what) : CSA_OK;
}

static int sq_recent_outcomes(struct auto_store *s, const char *type, const char *segment,
                              int phase, int64_t since, size_t max, double *confidence, int *right,
                              size_t *n, const char *what, struct csa_err *err)
{
	sqlite3_stmt *st;
	*n = 0;
	if (prep(s,
	         "SELECT confidence, correct FROM decisions WHERE type = ?1 AND "
	         "segment = ?2 AND phase = ?4 AND created_ms > ?3 "
	         "ORDER BY created_ms DESC LIMIT ?5",
	         -1, &st, NULL) != SQLITE_OK)
		return sq_error(s, err, what);
	sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, segment, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, since);
	sqlite3_bind_int(st, 4, phase);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)max);
	int step = SQLITE_DONE;
	while (*n < max && (step = sqlite3_step(st)) == SQLITE_ROW) {
		confidence[*n] = sqlite3_column_double(st, 0);
		right[(*n)++] =
		    sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 1) != 0;
	}
	unprep(s, st);
	return step == SQLITE_ROW || step == SQLITE_DONE ? CSA_OK : sq_error(s, err, what);
}

/* ---- KPIs -------------------------------------------------------------------- */

/* The KPIs of the decisions 'where' selects (p1 bound to ?1). */
static json_t *kpi_row(struct auto_store *s, const char *where, const char *p1)
{
	char sql[1024];
	snprintf(
	    sql, sizeof(sql),
	    "SELECT count(*), sum(autonomous), sum(final IS NOT NULL), sum(coalesce(correct,0)),"
	    " sum(autonomous = 1 AND final IS NOT NULL), sum(autonomous = 1 AND correct = 1),"
	    " avg(CASE WHEN final IS NOT NULL THEN decision_ms END),"
	    " sum(type = 'escalation'), sum(type = 'escalation' AND value <> 'NONE'),"
	    " avg(confidence)"
	    " FROM decisions %s",
	    where);
	sqlite3_stmt *st;
	struct auto_kpi_sums k = {0};
	if (prep(s, sql, -1, &st, NULL) != SQLITE_OK)
		return auto_kpi_object(&k);
	if (p1)
		sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		k.have_sums = 1;
		k.n = sqlite3_column_double(st, 0);
		k.autonomous = sqlite3_column_double(st, 1);
		k.reviewed = sqlite3_column_double(st, 2);
		k.correct = sqlite3_column_double(st, 3);
		k.auto_reviewed = sqlite3_column_double(st, 4);
		k.auto_correct = sqlite3_column_double(st, 5);
		k.has_mean_decision_ms = sqlite3_column_type(st, 6) != SQLITE_NULL;
		k.mean_decision_ms = sqlite3_column_double(st, 6);
		k.escalations = sqlite3_column_double(st, 7);
		k.escalated = sqlite3_column_double(st, 8);
		k.has_mean_confidence = sqlite3_column_type(st, 9) != SQLITE_NULL;
		k.mean_confidence = sqlite3_column_double(st, 9);
	}
	unprep(s, st);
	/* calibration of reviewed decisions */
	snprintf(sql, sizeof(sql),
	         "SELECT confidence, correct FROM decisions %s%s final IS NOT NULL", where,
	         *where ? " AND" : " WHERE");
	if (prep(s, sql, -1, &st, NULL) == SQLITE_OK) {
		if (p1)
			sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
		k.have_calibration = 1;
		while (sqlite3_step(st) == SQLITE_ROW)
			auto_kpi_calibrate(&k, sqlite3_column_double(st, 0), sqlite3_column_int(st, 1));
		unprep(s, st);
	}
	return auto_kpi_object(&k);
}

static json_t *sq_kpi(struct auto_store *s, int phase, const char *type, const char *segment_key)
{
	char where[64];
	if (phase) {
		snprintf(where, sizeof(where), "WHERE phase = %d", phase);
		return kpi_row(s, where, NULL);
	}
	if (type)
		return kpi_row(s, "WHERE type = ?1", type);
	if (segment_key)
		return kpi_row(s, "WHERE type || '/' || segment = ?1", segment_key);
	return kpi_row(s, "", NULL);
}

static int sq_counts(struct auto_store *s, struct csa_auto_counts *c, struct csa_err *err)
{
	static const struct {
		size_t off;
		const char *sql, *what;
	} q[] = {
	    /* each through an index: tasks_open, the decision log's smallest
	     * index, the reviews' partial index */
	    {offsetof(struct csa_auto_counts, open_tasks),
	     "SELECT count(*) FROM tasks WHERE status IN ('open', 'deciding')",
	     "counting the open review tasks"},
	    {offsetof(struct csa_auto_counts, decisions), "SELECT count(*) FROM decisions",
	     "counting the decisions"},
	    {offsetof(struct csa_auto_counts, reviews),
	     "SELECT count(*) FROM decisions WHERE final IS NOT NULL", "counting the reviews"},
	    {offsetof(struct csa_auto_counts, open_alerts),
	     "SELECT count(*) FROM alerts WHERE open = 1", "counting the open alerts"},
	};
	int rc = CSA_OK;
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		int64_t v = count_i64(s, q[i].sql, NULL, NULL);
		*(int64_t *)((char *)c + q[i].off) = v;
		if (v < 0 && rc == CSA_OK)
			rc = sq_error(s, err, q[i].what);
	}
	return rc;
}

/* ---- alerts -------------------------------------------------------------------- */

static int sq_alert_is_open(struct auto_store *s, const char *type, const char *scope, int *open,
                            const char *what, struct csa_err *err)
{
	sqlite3_stmt *st;
	*open = 0;
	if (prep(s,
	         "SELECT 1 FROM alerts WHERE open = 1 AND type = ?1 AND "
	         "(?2 IS NULL OR scope = ?2)",
	         -1, &st, NULL) != SQLITE_OK)
		return sq_error(s, err, what);
	sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, scope, -1, SQLITE_STATIC);
	int step = sqlite3_step(st);
	unprep(s, st);
	if (step != SQLITE_ROW && step != SQLITE_DONE)
		return sq_error(s, err, what);
	*open = step == SQLITE_ROW;
	return CSA_OK;
}

static int sq_insert_alert(struct auto_store *s, int64_t created_ms, const char *type,
                           const char *severity, const char *scope, const json_t *detail,
                           int64_t *id, const char *what, struct csa_err *err)
{
	sqlite3_stmt *st;
	*id = 0;
	if (prep(s,
	         "INSERT INTO alerts(created_ms, type, severity, scope, detail) "
	         "VALUES(?1, ?2, ?3, ?4, ?5)",
	         -1, &st, NULL) != SQLITE_OK)
		return sq_error(s, err, what);
	char *d = json_dumps(detail, JSON_COMPACT);
	sqlite3_bind_int64(st, 1, created_ms);
	sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, severity, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, scope, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, d ? d : "{}", -1, SQLITE_STATIC);
	int done = step_done(st);
	unprep(s, st);
	free(d);
	if (!done)
		return sq_error(s, err, what);
	*id = sqlite3_last_insert_rowid(s->db);
	return CSA_OK;
}

static int sq_close_alerts(struct auto_store *s, const char *type, const char *scope, int64_t *n,
                           const char *what, struct csa_err *err)
{
	sqlite3_stmt *st;
	*n = 0;
	/* only open ones: the caller learns how many this closed */
	if (prep(s,
	         "UPDATE alerts SET open = 0 WHERE type = ?1 AND scope = ?2 AND "
	         "open = 1",
	         -1, &st, NULL) != SQLITE_OK)
		return sq_error(s, err, what);
	sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, scope, -1, SQLITE_STATIC);
	int done = step_done(st);
	unprep(s, st);
	if (!done)
		return sq_error(s, err, what);
	*n = sqlite3_changes(s->db);
	return CSA_OK;
}

static int sq_alert_list(struct auto_store *s, int open_only, size_t limit, json_t **out,
                         struct csa_err *err)
{
	sqlite3_stmt *st;
	if (prep(s,
	         "SELECT id, created_ms, type, severity, scope, detail, open FROM alerts "
	         "WHERE ?1 = 0 OR open = 1 ORDER BY id DESC LIMIT ?2",
	         -1, &st, NULL) != SQLITE_OK)
		return sq_error(s, err, "listing alerts");
	sqlite3_bind_int(st, 1, open_only);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
	json_t *arr = json_array();
	char ts[CSA_TS_LEN];
	while (sqlite3_step(st) == SQLITE_ROW) {
		json_t *d = json_loads((const char *)sqlite3_column_text(st, 5), 0, NULL);
		json_array_append_new(
		    arr,
		    json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:b}", "id",
		              (json_int_t)sqlite3_column_int64(st, 0), "created",
		              csa_ts_format(sqlite3_column_int64(st, 1), ts), "type",
		              sqlite3_column_text(st, 2), "severity", sqlite3_column_text(st, 3),
		              "scope", sqlite3_column_text(st, 4), "detail", d ? d : json_null(),
		              "open", sqlite3_column_int(st, 6)));
	}
	unprep(s, st);
	*out = arr;
	return CSA_OK;
}

/* ---- thresholds ------------------------------------------------------------------ */

static int sq_reviews_after(struct auto_store *s, const char *type, const char *segment,
                            int64_t after_ms, int64_t *n, int64_t *newest_ms)
{
	sqlite3_stmt *st =
	    segment ? kept(s, KEPT_REVIEWED,
	                   "SELECT count(*), max(reviewed_ms) FROM decisions WHERE final IS NOT "
	                   "NULL AND type = ?1 AND segment = ?2 AND reviewed_ms > ?3")
	            : kept(s, KEPT_REVIEWED_TYPE,
	                   "SELECT count(*), max(reviewed_ms) FROM decisions WHERE final IS NOT "
	                   "NULL AND type = ?1 AND reviewed_ms > ?3");
	if (!st)
		return CSA_EIO;
	int rc = CSA_EIO;
	sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	if (segment)
		sqlite3_bind_text(st, 2, segment, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, after_ms);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*n = sqlite3_column_int64(st, 0);
		if (*n > 0)
			*newest_ms = sqlite3_column_int64(st, 1);
		rc = CSA_OK;
	}
	sqlite3_reset(st);
	return rc;
}

/* ---- a run's decisions ---------------------------------------------------------- */

/* automation.db and the ledger's file cannot share a transaction: the
 * caller appends the audit records after the commit. */
static int sq_audit(struct auto_store *s, struct csa_ledger *ledger,
                    const struct csa_ledger_rec *recs, size_t n, int *audited,
                    struct csa_err *err)
{
	(void)s, (void)ledger, (void)recs, (void)n, (void)err;
	*audited = 0;
	return CSA_OK;
}

static int sq_record_decisions(struct auto_store *s, const json_t *rows,
                               struct csa_ledger *ledger, const struct csa_ledger_rec *audit,
                               size_t n, int *audited, struct csa_err *err)
{
	(void)ledger, (void)audit, (void)n;
	*audited = 0;
	size_t i;
	const json_t *row;
	if (!json_array_size(rows))
		return CSA_OK;
	if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		char what[200];
		snprintf(what, sizeof(what), "cannot record the decisions of ticket '%s'",
		         csa_json_str(json_array_get(rows, 0), "ticket_id"));
		return sq_error(s, err, what);
	}
	int rc = CSA_OK;
	json_array_foreach(rows, i, row) if (rc == CSA_OK) rc = sq_insert_decision(s, row, err);
	if (rc == CSA_OK && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = sq_error(s, err, "cannot commit a run's decisions");
	if (rc)
		sq_rollback(s);
	return rc;
}

static int sq_forget_decisions(struct auto_store *s, const char *ticket_id, const char *const *ids,
                               size_t n, int64_t gone[2])
{
	sqlite3_stmt *dd = NULL, *dt = NULL;
	int ok = sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK &&
	         prep(s, "DELETE FROM decisions WHERE id >= ?1 AND id < ?2", -1, &dd, NULL) ==
	             SQLITE_OK &&
	         prep(s,
	              "DELETE FROM tasks WHERE ticket_id = ?3 AND decision_id >= ?1 "
	              "AND decision_id < ?2",
	              -1, &dt, NULL) == SQLITE_OK;
	/* a decision's rows are "<id>#<type>": every key from "<id>#" up to,
	 * not including, "<id>$" ('$' follows '#') */
	for (size_t i = 0; ok && i < n; i++) {
		char lo[CSA_ID_MAX + 64], hi[CSA_ID_MAX + 64];
		snprintf(lo, sizeof(lo), "%s#", ids[i] ? ids[i] : "");
		snprintf(hi, sizeof(hi), "%s$", ids[i] ? ids[i] : "");
		for (int k = 0; k < 2; k++) {
			sqlite3_stmt *st = k ? dt : dd;
			sqlite3_bind_text(st, 1, lo, -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(st, 2, hi, -1, SQLITE_TRANSIENT);
			if (k)
				sqlite3_bind_text(st, 3, ticket_id, -1, SQLITE_STATIC);
			ok = ok && step_done(st);
			gone[k] += ok ? sqlite3_changes(s->db) : 0;
		}
	}
	unprep(s, dd);
	unprep(s, dt);
	ok = ok && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK;
	if (!ok)
		sq_rollback(s);
	return ok ? CSA_OK : CSA_EIO;
}

static int64_t sq_reviewed_autonomous(struct auto_store *s, const char *type, const char *segment,
                                      int64_t limit)
{
	int64_t n = 0;
	sqlite3_stmt *st = kept(s, KEPT_REVIEWED_AUTO,
	                        "SELECT count(*) FROM (SELECT 1 FROM decisions WHERE "
	                        "autonomous = 1 AND final IS "
	                        "NOT NULL AND type = ?1 AND segment = ?2 LIMIT ?3)");
	if (st) {
		sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, segment, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, limit);
		if (sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
	}
	return n;
}

/* ---- transactions ------------------------------------------------------------ */

static int sq_begin(struct auto_store *s, int write_now, const char *what, struct csa_err *err)
{
	return sqlite3_exec(s->db, write_now ? "BEGIN IMMEDIATE" : "BEGIN", NULL, NULL, NULL) ==
	               SQLITE_OK
	           ? CSA_OK
	           : sq_error(s, err, what);
}

static int sq_commit(struct auto_store *s, const char *what, struct csa_err *err)
{
	return sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK
	           ? CSA_OK
	           : sq_error(s, err, what);
}

/* ---- review tasks ------------------------------------------------------------- */

/* A task as the review API gives it, but its "labels" (the controller's). */
static json_t *task_row(sqlite3_stmt *st)
{
	char ts1[CSA_TS_LEN], ts2[CSA_TS_LEN];
	const char *type = (const char *)sqlite3_column_text(st, 3);
	int shown = sqlite3_column_int(st, 7);
	const char *alts = (const char *)sqlite3_column_text(st, 10);
	json_t *alt = alts && shown ? json_loads(alts, 0, NULL) : NULL;
	json_t *t = json_pack(
	    "{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:f, s:s, s:s}", "task_id",
	    (json_int_t)sqlite3_column_int64(st, 0), "decision_id", sqlite3_column_text(st, 1),
	    "ticket_id", sqlite3_column_text(st, 2), "decision_type", type, "segment",
	    sqlite3_column_text(st, 4), "kind", sqlite3_column_text(st, 5), "status",
	    sqlite3_column_text(st, 6), "suggestion",
	    shown ? json_string((const char *)sqlite3_column_text(st, 8)) : json_null(),
	    "confidence", shown ? json_real(sqlite3_column_double(st, 9)) : json_null(),
	    "alternatives", alt ? alt : json_array(), "priority_score",
	    sqlite3_column_double(st, 11), "created",
	    csa_ts_format(sqlite3_column_int64(st, 12), ts1), "due",
	    csa_ts_format(sqlite3_column_int64(st, 13), ts2));
	return t;
}

#define TASK_COLS                                                                                  \
	"id, decision_id, ticket_id, type, segment, kind, status, shown, suggestion, "             \
	"confidence, alternatives, score, created_ms, due_ms"

/* Every row 'st' gives, as tasks, into a new array; then 'st' is given
 * back (unprep()), or reset when it is a kept() one. */
static json_t *task_rows(struct auto_store *s, sqlite3_stmt *st, int is_kept)
{
	json_t *arr = json_array();
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(arr, task_row(st));
	if (is_kept)
		sqlite3_reset(st);
	else
		unprep(s, st);
	return arr;
}

static int sq_task_list(struct auto_store *s, const char *status, size_t limit, json_t **out,
                        struct csa_err *err)
{
	sqlite3_stmt *st;
	if (prep(s,
	         "SELECT " TASK_COLS " FROM tasks WHERE (?1 IS NULL OR status = ?1) "
	         "ORDER BY status = 'open' DESC, score DESC, id LIMIT ?2",
	         -1, &st, NULL) != SQLITE_OK)
		return sq_error(s, err, "listing tasks");
	if (status)
		sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
	*out = task_rows(s, st, 0);
	return CSA_OK;
}

static int sq_ticket_tasks(struct auto_store *s, const char *ticket_id, json_t **out,
                           struct csa_err *err)
{
	sqlite3_stmt *st = kept(s, KEPT_TICKET_TASKS,
	                        "SELECT " TASK_COLS " FROM tasks WHERE status = 'open' AND "
	                        "ticket_id = ?1 ORDER BY id");
	if (!st)
		return sq_error(s, err, "listing a ticket's tasks");
	sqlite3_bind_text(st, 1, ticket_id, -1, SQLITE_STATIC);
	*out = task_rows(s, st, 1);
	return CSA_OK;
}

static int sq_next_task(struct auto_store *s, int64_t now_ms, json_t **out, struct csa_err *err)
{
	sqlite3_stmt *st;
	*out = NULL;
	if (prep(s,
	         "SELECT " TASK_COLS " FROM tasks WHERE status = 'open' AND due_ms <= ?1 "
	         "ORDER BY score DESC, id LIMIT 1",
	         -1, &st, NULL) != SQLITE_OK)
		return sq_error(s, err, "choosing the next task");
	sqlite3_bind_int64(st, 1, now_ms);
	if (sqlite3_step(st) == SQLITE_ROW)
		*out = task_row(st);
	unprep(s, st);
	return CSA_OK;
}

/* A task_claim from a row of: decision id, ticket, type, segment, created
 * (ms), the AI's value, critical, autonomous, phase, status, the person's
 * value, reviewer. */
static void claim_of_row(sqlite3_stmt *st, struct task_claim *t)
{
#define COL(i) (sqlite3_column_text(st, i) ? (const char *)sqlite3_column_text(st, i) : "")
	snprintf(t->decision_id, sizeof(t->decision_id), "%s", COL(0));
	snprintf(t->ticket, sizeof(t->ticket), "%s", COL(1));
	snprintf(t->type, sizeof(t->type), "%s", COL(2));
	snprintf(t->segment, sizeof(t->segment), "%s", COL(3));
	t->created = sqlite3_column_int64(st, 4);
	snprintf(t->ai_value, sizeof(t->ai_value), "%s", COL(5));
	t->critical = sqlite3_column_int(st, 6);
	t->autonomous = sqlite3_column_int(st, 7);
	t->phase = sqlite3_column_int(st, 8);
	snprintf(t->status, sizeof(t->status), "%s", COL(9));
	snprintf(t->value, sizeof(t->value), "%s", COL(10));
	snprintf(t->reviewer, sizeof(t->reviewer), "%s", COL(11));
#undef COL
}

static int sq_read_claim(struct auto_store *s, struct task_claim *t, struct csa_err *err)
{
	sqlite3_stmt *st =
	    kept(s, KEPT_READ_CLAIM,
	         "SELECT t.decision_id, t.ticket_id, t.type, t.segment, t.created_ms, d.value, "
	         "d.critical, d.autonomous, d.phase, t.status, coalesce(t.value, d.final), "
	         "coalesce(t.reviewer, d.reviewer) "
	         "FROM tasks t JOIN decisions d ON d.id = t.decision_id WHERE t.id = ?1");
	if (!st)
		return sq_error(s, err, "reading a review task");
	sqlite3_bind_int64(st, 1, t->id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		return csa_error(err, CSA_ENOENT, "no review task %lld", (long long)t->id);
	}
	claim_of_row(st, t);
	sqlite3_reset(st);
	return CSA_OK;
}

static int sq_latest_decision(struct auto_store *s, struct task_claim *t, struct csa_err *err)
{
	sqlite3_stmt *st;
	if (prep(s,
	         "SELECT id, ticket_id, type, segment, created_ms, value, critical, "
	         "autonomous, phase, '', final, reviewer, (SELECT max(k.id) FROM "
	         "tasks k WHERE k.decision_id = d.id AND k.status = 'deciding') "
	         "FROM decisions d WHERE ticket_id = ?1 AND type = ?2 ORDER BY "
	         "created_ms DESC, rowid DESC LIMIT 1",
	         -1, &st, NULL) != SQLITE_OK)
		return sq_error(s, err, "reading a ticket's latest decision");
	/* copied: the row is read back into the same struct */
	sqlite3_bind_text(st, 1, t->ticket, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, t->type, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) != SQLITE_ROW) {
		unprep(s, st);
		return csa_error(err, CSA_ENOENT, "ticket '%s' has no %s decision", t->ticket,
		                 t->type);
	}
	claim_of_row(st, t);
	t->id = sqlite3_column_int64(st, 12); /* NULL: 0 */
	if (t->id)
		snprintf(t->status, sizeof(t->status), "deciding");
	unprep(s, st);
	return CSA_OK;
}

static int sq_claim_task(struct auto_store *s, int64_t task_id, const char *claim,
                         const char *value, const char *who, struct csa_err *err)
{
	sqlite3_stmt *st = kept(s, KEPT_CLAIM_TASK,
	                        "UPDATE tasks SET status = 'deciding', claim = ?2, value = ?3, "
	                        "reviewer = ?4 WHERE id = ?1 AND status = 'open'");
	if (!st)
		return sq_error(s, err, "claiming a review task");
	sqlite3_bind_int64(st, 1, task_id);
	sqlite3_bind_text(st, 2, claim, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, value, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, who, -1, SQLITE_STATIC);
	int done = step_done(st);
	if (!done)
		return sq_error(s, err, "claiming a review task");
	return sqlite3_changes(s->db) == 1;
}

static void sq_release_claim(struct auto_store *s, int64_t task_id, const char *claim)
{
	sqlite3_stmt *st;
	if (prep(s,
	         "UPDATE tasks SET status = 'open', claim = NULL, value = NULL, "
	         "reviewer = NULL WHERE id = ?1 AND status = 'deciding' AND "
	         "claim = ?2",
	         -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, task_id);
		sqlite3_bind_text(st, 2, claim, -1, SQLITE_STATIC);
		sqlite3_step(st);
		unprep(s, st);
	}
}

static int sq_record_review(struct auto_store *s, const struct task_claim *t, const char *claim,
                            const char *value, int correct, const char *who, int64_t decision_ms,
                            struct csa_err *err)
{
	sqlite3_stmt *st =
	    kept(s, KEPT_RECORD_REVIEW,
	         "UPDATE decisions SET final = ?2, correct = ?3, reviewed_ms = ?4, "
	         "reviewer = ?5, decision_ms = coalesce(?6, decision_ms) WHERE id = ?1");
	if (!st)
		return sq_error(s, err, "recording the review");
	sqlite3_bind_text(st, 1, t->decision_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, correct);
	sqlite3_bind_int64(st, 4, csa_now_ms());
	sqlite3_bind_text(st, 5, who, -1, SQLITE_STATIC);
	if (decision_ms >= 0)
		sqlite3_bind_int64(st, 6, decision_ms);
	else
		sqlite3_bind_null(st, 6);
	int done = step_done(st);
	if (done && t->id == 0)
		return CSA_OK; /* a correction: no task to close */
	if (!done || !(st = kept(s, KEPT_CLOSE_TASK,
	                         "UPDATE tasks SET status = 'done' WHERE id = ?1 AND "
	                         "status = 'deciding' AND claim = ?2")))
		return sq_error(s, err, "recording the review");
	sqlite3_bind_int64(st, 1, t->id);
	sqlite3_bind_text(st, 2, claim, -1, SQLITE_STATIC);
	done = step_done(st);
	if (!done)
		return sq_error(s, err, "closing the task");
	if (sqlite3_changes(s->db) != 1)
		return csa_error(err, CSA_ESTATE, "the claim on review task %lld was lost",
		                 (long long)t->id);
	return CSA_OK;
}

/* "+type": without it SQLite (no ANALYZE statistics) read the ticket's
 * decisions through decisions_rev_type, every reviewed priority decision
 * of the workspace, on every review; the ticket's few through
 * decisions_ticket are what it needs. */
static int sq_ticket_confirmed_critical(struct auto_store *s, const char *ticket)
{
	sqlite3_stmt *st = kept(s, KEPT_CONFIRMED_CRITICAL,
	                        "SELECT count(*) FROM decisions WHERE ticket_id = ?1 AND "
	                        "+type = 'priority' AND final = 'CRITICAL'");
	if (!st)
		return 0;
	sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
	int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_reset(st);
	return v > 0;
}

static int sq_mark_ticket_critical(struct auto_store *s, const char *ticket, struct csa_err *err)
{
	char what[160];
	snprintf(what, sizeof(what), "marking the decisions of ticket '%s' critical", ticket);
	sqlite3_stmt *st;
	if (prep(s, "UPDATE decisions SET critical = 1 WHERE ticket_id = ?1", -1, &st, NULL) !=
	    SQLITE_OK)
		return sq_error(s, err, what);
	sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
	int done = step_done(st);
	unprep(s, st);
	return done ? CSA_OK : sq_error(s, err, what);
}

static int sq_reversed_autonomous(struct auto_store *s, const char *ticket, const char *except,
                                  json_t **found, struct csa_err *err)
{
	char what[160];
	snprintf(what, sizeof(what), "reading the reversed decisions of ticket '%s'", ticket);
	sqlite3_stmt *st;
	*found = json_array();
	if (prep(s,
	         "SELECT id, type, segment, value, final FROM decisions WHERE "
	         "ticket_id = ?1 AND id <> ?2 AND critical = 0 AND autonomous = 1 "
	         "AND correct = 0",
	         -1, &st, NULL) != SQLITE_OK)
		return sq_error(s, err, what);
	sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, except, -1, SQLITE_STATIC);
	int step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW)
		json_array_append_new(*found, json_pack("{s:s, s:s, s:s, s:s?, s:s}", "id",
		                                        sqlite3_column_text(st, 0), "type",
		                                        sqlite3_column_text(st, 1), "segment",
		                                        sqlite3_column_text(st, 2), "value",
		                                        (const char *)sqlite3_column_text(st, 3),
		                                        "final", sqlite3_column_text(st, 4)));
	unprep(s, st);
	if (step == SQLITE_DONE)
		return CSA_OK;
	/* a partial list decides nothing */
	json_array_clear(*found);
	return sq_error(s, err, what);
}

/* ---- recovery ------------------------------------------------------------------ */

static int64_t sq_newest_decision_ms(struct auto_store *s)
{
	return count_i64(s, "SELECT coalesce(max(created_ms), 0) FROM decisions", NULL, NULL);
}

static void sq_tickets_decided_since(struct auto_store *s, int64_t since_ms, json_t *ids)
{
	sqlite3_stmt *st;
	if (prep(s, "SELECT DISTINCT ticket_id FROM decisions WHERE created_ms >= ?1", -1, &st,
	         NULL) != SQLITE_OK)
		return;
	sqlite3_bind_int64(st, 1, since_ms);
	while (sqlite3_step(st) == SQLITE_ROW)
		json_object_set_new(ids, (const char *)sqlite3_column_text(st, 0), json_true());
	unprep(s, st);
}

static int sq_ticket_decisions(struct auto_store *s, const char *ticket_id, json_t **out,
                               struct csa_err *err)
{
	sqlite3_stmt *st;
	*out = json_array();
	if (prep(s, "SELECT id, created_ms FROM decisions WHERE ticket_id = ?1", -1, &st, NULL) !=
	    SQLITE_OK)
		return sq_error(s, err, "reading a ticket's decisions to recover them");
	sqlite3_bind_text(st, 1, ticket_id, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(*out,
		                      json_pack("[s, I]", (const char *)sqlite3_column_text(st, 0),
		                                (json_int_t)sqlite3_column_int64(st, 1)));
	unprep(s, st);
	return CSA_OK;
}

static int sq_remove_decision(struct auto_store *s, const char *ticket_id, const char *key,
                              struct csa_err *err)
{
	static const char what[] = "removing a decision whose ticket was not committed";
	sqlite3_stmt *st;
	for (int q = 0; q < 2; q++) {
		if (prep(s,
		         q ? "DELETE FROM tasks WHERE ticket_id = ?2 AND "
		             "decision_id = ?1"
		           : "DELETE FROM decisions WHERE id = ?1",
		         -1, &st, NULL) != SQLITE_OK)
			return sq_error(s, err, what);
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
		if (q)
			sqlite3_bind_text(st, 2, ticket_id, -1, SQLITE_STATIC);
		int done = step_done(st);
		unprep(s, st);
		if (!done)
			return sq_error(s, err, what);
	}
	return CSA_OK;
}

static int sq_restore_review(struct auto_store *s, const char *ticket_id, const char *key,
                             const char *value, int correct, const char *by, struct csa_err *err)
{
	static const char what[] = "restoring a reviewed decision";
	sqlite3_stmt *st;
	for (int q = 0; q < 2; q++) {
		if (prep(s,
		         q ? "UPDATE tasks SET status = 'done' WHERE ticket_id = "
		             "?6 AND decision_id = ?1"
		           : "UPDATE decisions SET final = ?2, correct = ?3, "
		             "reviewed_ms = ?4, reviewer = ?5 WHERE id = ?1",
		         -1, &st, NULL) != SQLITE_OK)
			return sq_error(s, err, what);
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
		if (q) {
			sqlite3_bind_text(st, 6, ticket_id, -1, SQLITE_STATIC);
		} else {
			sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
			sqlite3_bind_int(st, 3, correct);
			sqlite3_bind_int64(st, 4, csa_now_ms());
			sqlite3_bind_text(st, 5, by, -1, SQLITE_STATIC);
		}
		int done = step_done(st);
		unprep(s, st);
		if (!done)
			return sq_error(s, err, what);
	}
	return CSA_OK;
}

static int sq_claims_of(struct auto_store *s, const char *claim, json_t **out, struct csa_err *err)
{
	sqlite3_stmt *st;
	*out = NULL;
	if (prep(s,
	         "SELECT id, ticket_id, decision_id, type FROM tasks WHERE "
	         "status = 'deciding' AND claim = ?1",
	         -1, &st, NULL) != SQLITE_OK)
		return sq_error(s, err, "reading review tasks claimed by a dead process");
	*out = json_array();
	sqlite3_bind_text(st, 1, claim, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(
		    *out, json_pack("[I, s, s, s]", (json_int_t)sqlite3_column_int64(st, 0),
		                    sqlite3_column_text(st, 1), sqlite3_column_text(st, 2),
		                    sqlite3_column_text(st, 3)));
	unprep(s, st);
	return CSA_OK;
}

static int sq_settle_claim(struct auto_store *s, int64_t task_id, const char *decision_id,
                           const char *value, const char *by, const char *what, struct csa_err *err)
{
	sqlite3_stmt *st;
	for (int q = 0; q < 2; q++) {
		if (!value && q == 0)
			continue;
		if (prep(s,
		         q == 0  ? "UPDATE decisions SET final = ?2, correct = (value IS ?2), "
		                   "reviewed_ms = ?3, reviewer = ?4 WHERE id = ?1"
		         : value ? "UPDATE tasks SET status = 'done', value = ?2, reviewer = ?4 "
		                   "WHERE id = ?5"
		                 : "UPDATE tasks SET status = 'open', claim = NULL, value = NULL, "
		                   "reviewer = NULL WHERE id = ?5",
		         -1, &st, NULL) != SQLITE_OK)
			return sq_error(s, err, what);
		sqlite3_bind_text(st, 1, decision_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, csa_now_ms());
		sqlite3_bind_text(st, 4, by, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, task_id);
		int done = step_done(st);
		unprep(s, st);
		if (!done)
			return sq_error(s, err, what);
	}
	return CSA_OK;
}

/* ---- open and close ------------------------------------------------------------ */

/* automation.db at 'path', or, 'in_memory', a database of this process
 * alone with the same schema, its state.json and rollback points still
 * beside 'path'. */
static int sq_open_at(const char *path, int in_memory, struct auto_store **out, struct csa_err *err)
{
	struct auto_store *s = calloc(1, sizeof(*s));
	*out = s;
	if (!s)
		return csa_error(err, CSA_ENOMEM, "out of memory opening '%s'", path);
	pthread_mutex_init(&s->stmt_mu, NULL);
	snprintf(s->path, sizeof(s->path), "%s%s", path, in_memory ? " (in memory)" : "");
	const char *slash = strrchr(path, '/');
	snprintf(s->root, sizeof(s->root), "%.*s", slash ? (int)(slash - path + 1) : 0, path);
	snprintf(s->state_path, sizeof(s->state_path), "%sautomation/state.json", s->root);
	/* the phases' directory; and automation.db private before SQLite
	 * creates it (and its -wal and -shm) 0644 */
	char dir[sizeof(s->state_path)];
	snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(s->state_path, '/') - s->state_path),
	         s->state_path);
	int rc = csa_fs_mkdirs(dir, err);
	if (rc || (!in_memory && (rc = csa_fs_create_private(path, err))))
		return rc;
	/* in memory, "PRAGMA journal_mode=WAL" of the schema leaves it
	 * "memory": there is no file to log to */
	if (sqlite3_open_v2(in_memory ? ":memory:" : path, &s->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
	                    NULL) != SQLITE_OK ||
	    sqlite3_busy_timeout(s->db, 10000) != SQLITE_OK || add_columns(s->db) != SQLITE_OK ||
	    sqlite3_exec(s->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK)
		return csa_error(err, CSA_EIO, "cannot open '%s': %s", s->path,
		                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
	return in_memory ? CSA_OK : csa_walckpt_start(s->db, path, 1000, &s->ckpt, err);
}

static int sq_open(const char *path, struct auto_store **out, struct csa_err *err)
{
	return sq_open_at(path, 0, out, err);
}

int auto_sqlite_open_memory(const char *path, struct auto_store **out, struct csa_err *err)
{
	return sq_open_at(path, 1, out, err);
}

static void sq_close(struct auto_store *s)
{
	if (!s)
		return;
	for (int k = 0; k < KEPT_COUNT; k++)
		sqlite3_finalize(s->kept[k]);
	for (size_t i = 0; i < s->nstmts; i++) {
		sqlite3_finalize(s->stmts[i].st);
		free(s->stmts[i].sql);
	}
	pthread_mutex_destroy(&s->stmt_mu);
	csa_walckpt_stop(s->ckpt);
	sqlite3_close(s->db);
	free(s);
}

static int sq_load_phases(struct auto_store *s, json_t **out, struct csa_err *err)
{
	return csa_json_load_file(s->state_path, 1 << 22, out, err);
}

static int sq_save_phases(struct auto_store *s, const json_t *phases, struct csa_err *err)
{
	char *buf;
	size_t n;
	int rc = csa_json_dump(phases, 1, &buf, &n, err);
	if (rc == CSA_OK) {
		rc = csa_fs_write_atomic(s->state_path, buf, n, err);
		free(buf);
	}
	return rc;
}

/* ---- rollback points: rollback/<id>/ beside automation.db ------------------ */

static int point_path(struct auto_store *s, const char *id, const char *name, char *out,
                      size_t outsz, struct csa_err *err)
{
	int rc = auto_point_names_ok(id, name, err);
	if (rc)
		return rc;
	if (snprintf(out, outsz, "%srollback/%s/%s", s->root, id, name) >= (int)outsz)
		return csa_error(err, CSA_ELIMIT,
		                 "rollback point '%s': the path of '%s' is too long", id, name);
	return CSA_OK;
}

static int sq_save_point(struct auto_store *s, const json_t *manifest, const struct auto_doc *docs,
                         size_t n, struct csa_err *err)
{
	const char *id = csa_json_str(manifest, "id");
	char path[sizeof(s->root) + 512];
	int rc = CSA_OK;
	for (size_t i = 0; i < n && rc == CSA_OK; i++) {
		if ((rc = point_path(s, id, docs[i].name, path, sizeof(path), err)))
			break;
		char *slash = strrchr(path, '/');
		*slash = '\0';
		rc = csa_fs_mkdirs(path, err);
		*slash = '/';
		if (rc == CSA_OK)
			rc = csa_fs_write_atomic(path, docs[i].buf, docs[i].len, err);
	}
	/* the manifest last: a point without one is not listed */
	char *text;
	size_t len;
	if (rc == CSA_OK &&
	    (rc = point_path(s, id, "manifest.json", path, sizeof(path), err)) == CSA_OK &&
	    (rc = csa_json_dump(manifest, 1, &text, &len, err)) == CSA_OK) {
		rc = csa_fs_write_atomic(path, text, len, err);
		free(text);
	}
	return rc;
}

static int sq_list_points(struct auto_store *s, json_t **out, struct csa_err *err)
{
	char dir[sizeof(s->root) + 16];
	snprintf(dir, sizeof(dir), "%srollback", s->root);
	json_t *arr = json_array();
	if (!arr)
		return csa_error(err, CSA_ENOMEM, "out of memory listing '%s'", dir);
	DIR *d = opendir(dir);
	if (!d && errno != ENOENT) {
		json_decref(arr);
		return csa_error_sys(err, "cannot list the rollback points in '%s'", dir);
	}
	struct dirent *de;
	while (d && (de = readdir(d))) {
		char path[sizeof(s->root) + 512];
		json_t *m;
		/* a point whose manifest is missing or names another is not one */
		if (point_path(s, de->d_name, "manifest.json", path, sizeof(path), NULL) ||
		    csa_json_load_file(path, 1 << 22, &m, NULL))
			continue;
		const char *id = csa_json_str(m, "id");
		if (id && strcmp(id, de->d_name) == 0)
			json_array_append(arr, m);
		json_decref(m);
	}
	if (d)
		closedir(d);
	*out = arr;
	return CSA_OK;
}

static int sq_point_doc(struct auto_store *s, const char *id, const char *name, char **buf,
                        size_t *len, struct csa_err *err)
{
	char path[sizeof(s->root) + 512];
	int rc = point_path(s, id, name, path, sizeof(path), err);
	return rc ? rc : csa_fs_read_all(path, (size_t)1 << 31, buf, len, err);
}

const struct auto_store_ops auto_sqlite_ops = {
    .open = sq_open,
    .close = sq_close,
    .errmsg = sq_errmsg,
    .error = sq_error,
    .rollback = sq_rollback,
    .load_phases = sq_load_phases,
    .save_phases = sq_save_phases,
    .save_point = sq_save_point,
    .list_points = sq_list_points,
    .point_doc = sq_point_doc,
    .begin = sq_begin,
    .commit = sq_commit,
    .audit = sq_audit,
    .insert_decision = sq_insert_decision,
    .record_decisions = sq_record_decisions,
    .forget_decisions = sq_forget_decisions,
    .reviewed_autonomous = sq_reviewed_autonomous,
    .outcomes = sq_outcomes,
    .reviews_after = sq_reviews_after,
    .scope_metrics = sq_scope_metrics,
    .baseline_ms = sq_baseline_ms,
    .trend = sq_trend,
    .open_alerts = sq_open_alerts,
    .segments = sq_segments,
    .segments_of = sq_segments_of,
    .reviewed_autonomous_sample = sq_reviewed_autonomous_sample,
    .recent_autonomy = sq_recent_autonomy,
    .recent_outcomes = sq_recent_outcomes,
    .kpi = sq_kpi,
    .counts = sq_counts,
    .alert_is_open = sq_alert_is_open,
    .insert_alert = sq_insert_alert,
    .close_alerts = sq_close_alerts,
    .alert_list = sq_alert_list,
    .task_list = sq_task_list,
    .ticket_tasks = sq_ticket_tasks,
    .next_task = sq_next_task,
    .read_claim = sq_read_claim,
    .claim_task = sq_claim_task,
    .release_claim = sq_release_claim,
    .record_review = sq_record_review,
    .ticket_confirmed_critical = sq_ticket_confirmed_critical,
    .mark_ticket_critical = sq_mark_ticket_critical,
    .reversed_autonomous = sq_reversed_autonomous,
    .newest_decision_ms = sq_newest_decision_ms,
    .tickets_decided_since = sq_tickets_decided_since,
    .ticket_decisions = sq_ticket_decisions,
    .remove_decision = sq_remove_decision,
    .restore_review = sq_restore_review,
    .latest_decision = sq_latest_decision,
    .claims_of = sq_claims_of,
    .settle_claim = sq_settle_claim,
};
