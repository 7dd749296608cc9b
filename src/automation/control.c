/* The automation controller: autonomy per decision type and segment,
 * review queue, gates, phases, rollback, quality monitor, metrics. */
#include "automation/control.h"
#include "base/hash.h"
#include "base/ids.h"
#include "automation/ledger.h"
#include "automation/stats.h"
#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"
#include "base/walckpt.h"
#include "flow/pipeline.h"
#include "store/store.h"
#include "store/ws.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_SZ 4096

struct thr {
	char key[200]; /* type/segment/critical */
	double threshold;
	double type_threshold;  /* the type's threshold it was computed for */
	struct csa_readiness r; /* over the slice it would automate */
	size_t reviewed;        /* the segment's reviewed decisions in the window */
	int computed, had_reviews;
	int64_t newest_ms; /* the newest review it was computed with */
};

/* Statements run for every decision, prepared once (see kept()). */
enum {
	KEPT_REVIEWED,
	KEPT_REVIEWED_TYPE,
	KEPT_REVIEWED_AUTO,
	KEPT_INSERT_DECISION,
	KEPT_INSERT_TASK,
	KEPT_COUNT
};

/* The configurations the controller has read: see acfg(). */
struct cfg_seen {
	pthread_mutex_t mu;
	const struct csa_config *now;  /* the newest, one reference held */
	const struct csa_config **old; /* earlier ones, released at close */
	size_t nold;
};

struct csa_auto {
	struct csa_ws *ws;
	struct cfg_seen *cfg;
	struct csa_pipeline *pipe;
	sqlite3 *db;
	struct csa_walckpt *ckpt; /* automation.db's checkpoints, off the decision path */
	pthread_mutex_t mu;
	pthread_cond_t decided; /* a claimed review task was closed or released */
	struct csa_ledger *ledger;
	/* the last append failed: AUDIT_LEDGER_FAILURE is open; written under mu */
	_Atomic int ledger_failing;
	char db_path[PATH_SZ];
	char open_marker[PATH_SZ]; /* automation/open/<random>.live, locked while open */
	int open_fd;
	json_t *recovery; /* what the recovery after an unclean stop did, or NULL */
	char ledger_path[PATH_SZ];
	char state_path[PATH_SZ];
	json_t *state; /* {"segments": {"type/segment": phase}} */
	/* the last save of state failed: what is in effect here is not on
	 * disk yet (every tick tries again and reports it) */
	int state_unsaved;
	struct csa_err state_err;
	struct thr *thr;
	size_t nthr, capthr;
	int64_t reviews;                /* reviews since open, for threshold refresh */
	sqlite3_stmt *kept[KEPT_COUNT]; /* statements of every decision, under mu */
	/* Within one evaluation (a tick, `phase evaluate`, an advance) the
	 * PHASE_1 baseline and each type's own gate are computed once, not
	 * once per segment. Reset by begin_evaluation(); under mu. */
	struct {
		double baseline_ms; /* 0: not yet */
		struct {
			char type[64];
			int phase, pass;
		} type_gate[32];
		size_t ntype_gate;
	} ev;
};

static void begin_evaluation(struct csa_auto *a)
{
	a->ev.baseline_ms = 0;
	a->ev.ntype_gate = 0;
}

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
    "CREATE INDEX IF NOT EXISTS decisions_rev_type ON decisions(type, reviewed_ms, autonomous,"
    " correct, confidence, review_weight) WHERE final IS NOT NULL;"
    "CREATE INDEX IF NOT EXISTS decisions_rev_seg ON decisions(type, segment, reviewed_ms,"
    " autonomous, correct, confidence, review_weight) WHERE final IS NOT NULL;"
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

int csa_phase_num(const char *s)
{
	if (!s || strncmp(s, "PHASE_", 6) != 0 || s[6] < '1' || s[6] > '5' || s[7])
		return 0;
	return s[6] - '0';
}

/* The configuration in effect. The controller keeps every snapshot it
 * has read until it closes, so what its steps borrow from one (a gate's
 * criteria, the decision types) never dangles when a phase change or a
 * rollback publishes a new one: those happen a few times a day, so the
 * list stays short. */
static const struct csa_config *acfg(const struct csa_auto *a)
{
	struct cfg_seen *c = a->cfg;
	const struct csa_config *fresh = csa_ws_config(a->ws);
	pthread_mutex_lock(&c->mu);
	if (fresh == c->now) {
		pthread_mutex_unlock(&c->mu);
		csa_config_unref(fresh); /* c->now holds it */
		return fresh;
	}
	const struct csa_config **old = c->old;
	if (c->now && (old = realloc(c->old, (c->nold + 1) * sizeof(*old)))) {
		old[c->nold++] = c->now;
		c->old = old;
	}
	/* without memory for the list the old snapshot is kept, not freed */
	c->now = fresh;
	pthread_mutex_unlock(&c->mu);
	return fresh;
}

static double cfg_num(const struct csa_auto *a, const char *path, double dflt)
{
	json_t *v = csa_config_get(acfg(a), path);
	return json_is_number(v) ? json_number_value(v) : dflt;
}

static int workspace_phase(const struct csa_auto *a)
{
	int p = csa_phase_num(csa_json_str(acfg(a)->root, "phase"));
	return p ? p : 1;
}

static int type_tracked(const struct csa_auto *a, const char *type)
{
	return csa_config_in_list(acfg(a), "automation.decision_types", type);
}

static int segment_phase(const struct csa_auto *a, const char *type, const char *segment)
{
	char key[200];
	snprintf(key, sizeof(key), "%s/%s", type, segment ? segment : "-");
	int p = (int)csa_json_int(json_object_get(a->state, "segments"), key, 1);
	int w = workspace_phase(a);
	return p < w ? p : w;
}

/* A failure is remembered (state_unsaved): a phase change or demotion is
 * in effect in this process at once, and reaches the disk at the next save
 * that works. Caller holds a->mu (or is opening). */
static int save_state(struct csa_auto *a, struct csa_err *err)
{
	char *s;
	size_t n;
	struct csa_err e = {0};
	int rc = csa_json_dump(a->state, 1, &s, &n, &e);
	if (rc == CSA_OK) {
		rc = csa_fs_write_atomic(a->state_path, s, n, &e);
		free(s);
	}
	a->state_unsaved = rc != CSA_OK;
	if (rc) {
		a->state_err = e;
		if (err)
			*err = e;
	}
	return rc;
}

/*
 * After a demotion for poor quality, the decisions made before it say
 * nothing about whether the scope has recovered: gates and the monitor
 * then count only what came after (state "evidence_since": {"type" or
 * "type/segment": ms}). Without this the old evidence promotes the scope
 * again at the next tick and the old sample demotes it again.
 */
static int64_t evidence_since(const struct csa_auto *a, const char *type, const char *segment)
{
	json_t *m = json_object_get(a->state, "evidence_since");
	int64_t t = type ? csa_json_int(m, type, 0) : 0;
	if (type && segment) {
		char key[200];
		snprintf(key, sizeof(key), "%s/%s", type, segment);
		int64_t s = csa_json_int(m, key, 0);
		t = s > t ? s : t;
	}
	return t;
}

static void restart_evidence(struct csa_auto *a, const char *scope)
{
	json_t *m = json_object_get(a->state, "evidence_since");
	if (!json_is_object(m)) {
		m = json_object();
		json_object_set_new(a->state, "evidence_since", m);
	}
	json_object_set_new(m, scope, json_integer(csa_now_ms()));
	save_state(a, NULL);
}

/* A statement on automation.db failed: what was being done and SQLite's
 * reason; CSA_EBUSY when another process held the database past the busy
 * timeout (worth retrying), CSA_EIO otherwise. Caller holds a->mu. */
static int db_err(struct csa_auto *a, struct csa_err *err, const char *what)
{
	int code = sqlite3_errcode(a->db);
	return csa_error(err, code == SQLITE_BUSY || code == SQLITE_LOCKED ? CSA_EBUSY : CSA_EIO,
	                 "'%s': %s: %s", a->db_path, what, sqlite3_errmsg(a->db));
}

/* ---- labels of a decision type ---------------------------------------- */

static int valid_label(const struct csa_auto *a, const char *type, const char *v)
{
	if (!v)
		return 0;
	if (strcmp(type, "category") == 0)
		return csa_config_in_list(acfg(a), "taxonomy.categories", v);
	if (strcmp(type, "priority") == 0)
		return csa_config_in_list(acfg(a), "taxonomy.priorities", v);
	if (strcmp(type, "strategy") == 0)
		return csa_config_in_list(acfg(a), "taxonomy.strategies", v);
	return strcmp(v, "NONE") == 0 ||
	       json_object_get(csa_config_get(acfg(a), "escalation_paths"), v) != NULL;
}

static json_t *labels_of(const struct csa_auto *a, const char *type)
{
	if (strcmp(type, "escalation") == 0) {
		json_t *l = json_pack("[s]", "NONE");
		const char *k;
		json_t *v;
		json_object_foreach(csa_config_get(acfg(a), "escalation_paths"), k, v)
		    json_array_append_new(l, json_string(k));
		return l;
	}
	const char *path = strcmp(type, "category") == 0   ? "taxonomy.categories"
	                   : strcmp(type, "priority") == 0 ? "taxonomy.priorities"
	                                                   : "taxonomy.strategies";
	return json_deep_copy(csa_config_get(acfg(a), path));
}

/* ---- outcomes, readiness and thresholds ------------------------------- */

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
		return SQLITE_OK; /* new database (schema_sql creates it), or current */
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

/* Reviewed outcomes of a scope, oldest first, at most 'limit'. */
static struct csa_outcome *outcomes(struct csa_auto *a, const char *type, const char *segment,
                                    size_t limit, size_t *n)
{
	sqlite3_stmt *st;
	*n = 0;
	const char *sql =
	    segment
	        ? "SELECT confidence, correct, w FROM (SELECT confidence, correct, reviewed_ms, "
	          "coalesce(review_weight, 1) AS w FROM decisions WHERE final IS NOT NULL "
	          "AND type = ?1 AND segment = ?2 ORDER BY reviewed_ms DESC LIMIT ?3) "
	          "ORDER BY reviewed_ms"
	        : "SELECT confidence, correct, w FROM (SELECT confidence, correct, reviewed_ms, "
	          "coalesce(review_weight, 1) AS w FROM decisions WHERE final IS NOT NULL "
	          "AND type = ?1 ORDER BY reviewed_ms DESC LIMIT ?3) ORDER BY reviewed_ms";
	if (sqlite3_prepare_v2(a->db, sql, -1, &st, NULL) != SQLITE_OK)
		return NULL;
	sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	if (segment)
		sqlite3_bind_text(st, 2, segment, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
	struct csa_outcome *o = malloc(limit * sizeof(*o) + 1);
	while (o && sqlite3_step(st) == SQLITE_ROW && *n < limit)
		o[(*n)++] =
		    (struct csa_outcome){sqlite3_column_double(st, 0), sqlite3_column_int(st, 1),
		                         sqlite3_column_double(st, 2)};
	sqlite3_finalize(st);
	return o;
}

/* The one number a query returns (NULL reads as 0); -1 when the database
 * cannot answer (sqlite3_errmsg says why). */
static int64_t count_i64(struct csa_auto *a, const char *sql, const char *p1, const char *p2)
{
	sqlite3_stmt *st;
	int64_t v = -1;
	if (sqlite3_prepare_v2(a->db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (p1)
		sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
	if (p2)
		sqlite3_bind_text(st, 2, p2, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* The statement in slot k, prepared on first use; the caller holds a->mu
 * and calls sqlite3_reset() when done with it. */
static sqlite3_stmt *kept(struct csa_auto *a, int k, const char *sql)
{
	if (!a->kept[k] && sqlite3_prepare_v3(a->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
	                                      &a->kept[k], NULL) != SQLITE_OK)
		return NULL;
	sqlite3_clear_bindings(a->kept[k]);
	return a->kept[k];
}

/* The cache slot of key, made empty on first use (NULL when out of memory). */
static struct thr *thr_slot(struct csa_auto *a, const char *key)
{
	for (size_t i = 0; i < a->nthr; i++)
		if (strcmp(a->thr[i].key, key) == 0)
			return &a->thr[i];
	if (a->nthr == a->capthr) {
		size_t cap = a->capthr ? a->capthr * 2 : 64;
		struct thr *nv = realloc(a->thr, cap * sizeof(*nv));
		if (!nv)
			return NULL;
		a->thr = nv;
		a->capthr = cap;
	}
	struct thr *t = &a->thr[a->nthr++];
	memset(t, 0, sizeof(*t));
	snprintf(t->key, sizeof(t->key), "%s", key);
	return t;
}

/*
 * Whether the cached t is out of date: 20 reviews of its scope (type, and
 * segment unless NULL) came in since it was computed, or the first one.
 * Counted in the database, so reviews another process records count too,
 * over a range of a reviews index: only the reviews after t's newest are
 * read, however long the history. Leaves in *newest the newest review's
 * time. Caller holds a->mu.
 */
static int thr_stale(struct csa_auto *a, const struct thr *t, const char *type, const char *segment,
                     int64_t *newest)
{
	sqlite3_stmt *st =
	    segment ? kept(a, KEPT_REVIEWED,
	                   "SELECT count(*), max(reviewed_ms) FROM decisions WHERE final IS NOT "
	                   "NULL AND type = ?1 AND segment = ?2 AND reviewed_ms > ?3")
	            : kept(a, KEPT_REVIEWED_TYPE,
	                   "SELECT count(*), max(reviewed_ms) FROM decisions WHERE final IS NOT "
	                   "NULL AND type = ?1 AND reviewed_ms > ?3");
	int64_t fresh = 0;
	*newest = t->newest_ms;
	if (st) {
		sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
		if (segment)
			sqlite3_bind_text(st, 2, segment, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, t->computed ? t->newest_ms : INT64_MIN);
		if (sqlite3_step(st) == SQLITE_ROW) {
			fresh = sqlite3_column_int64(st, 0);
			if (fresh > 0)
				*newest = sqlite3_column_int64(st, 1);
		}
		sqlite3_reset(st);
	}
	return !t->computed || fresh >= 20 || (fresh > 0 && !t->had_reviews);
}

/* How confident a decision of the type must be for the decisions above it
 * to reach the target accuracy (lower bound), read from the whole type's
 * latest reviewed decisions, where the evidence is large enough for a
 * tight bound; 2 when no confidence is enough. Caller holds a->mu. */
static double type_threshold(struct csa_auto *a, const char *type, int critical)
{
	char key[200];
	snprintf(key, sizeof(key), "%s/*/%d", type, critical);
	struct thr *t = thr_slot(a, key);
	int64_t newest;
	if (!t)
		return 2.0;
	if (!thr_stale(a, t, type, NULL, &newest))
		return t->threshold;
	double target = cfg_num(
	    a, critical ? "automation.critical_target_accuracy" : "automation.target_accuracy",
	    critical ? 0.995 : 0.97);
	size_t n, window = (size_t)cfg_num(a, "automation.window", 500);
	struct csa_outcome *all = outcomes(a, type, NULL, window * 4, &n);
	t->threshold =
	    all ? csa_threshold_for_accuracy(all, n, target, cfg_num(a, "automation.z", 1.96),
	                                     (size_t)cfg_num(a, "automation.min_decisions", 50))
	        : 2.0;
	t->computed = 1;
	t->had_reviews = n > 0;
	t->newest_ms = newest;
	free(all);
	return t->threshold;
}

/*
 * The threshold and readiness of (type, segment, critical), cached and
 * recomputed as reviews come in. Caller holds a->mu.
 *
 * Readiness answers spec §4.2's question, "is the system ready for
 * autonomous decisions in this context", so it is judged on the decisions
 * the segment would make autonomously: its reviewed decisions at or above
 * the type's threshold. A segment of easily confused labels whose proposals
 * are right 75% of the time overall can still be ready for the confident
 * share of its decisions, and one whose confident decisions go wrong is not
 * ready however good its average.
 */
static const struct thr *threshold_of(struct csa_auto *a, const char *type, const char *segment,
                                      int critical)
{
	char key[200];
	snprintf(key, sizeof(key), "%s/%s/%d", type, segment, critical);
	double tt = type_threshold(a, type, critical);
	struct thr *t = thr_slot(a, key);
	int64_t newest;
	if (!t)
		return NULL;
	if (!thr_stale(a, t, type, segment, &newest) && t->type_threshold == tt)
		return t;
	size_t n;
	size_t window = (size_t)cfg_num(a, "automation.window", 500);
	struct csa_outcome *o = outcomes(a, type, segment, window, &n);
	double need = cfg_num(a,
	                      critical ? "automation.readiness_required_critical"
	                               : "automation.readiness_required",
	                      critical ? 0.9 : 0.8);
	size_t min_n = (size_t)cfg_num(a, "automation.min_decisions", 50);
	size_t m = n;
	if (o && tt <= 1) {
		m = 0;
		for (size_t i = 0; i < n; i++) /* oldest first, as readiness wants */
			if (o[i].confidence >= tt)
				o[m++] = o[i];
	}
	csa_readiness(o, o ? m : 0, &t->r);
	t->threshold = tt <= 1 && n >= min_n &&
	                       m >= (size_t)cfg_num(a, "automation.segment_min_decisions", 30) &&
	                       t->r.score >= need
	                   ? tt
	                   : 2.0;
	t->type_threshold = tt;
	t->reviewed = n;
	t->computed = 1;
	t->had_reviews = n > 0;
	t->newest_ms = newest;
	free(o);
	return t;
}

/* ---- the pipeline hook ------------------------------------------------- */

static uint64_t hash64(const char *s)
{
	uint64_t h = csa_fnv1a_str(CSA_FNV_SEED_V1, s);
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

/*
 * A run's decision rows and audit records wait here, on the thread that
 * runs it, until the run's last decision (decisions_done), then go into
 * the ledger in one append and into automation.db in one transaction: one
 * ledger write and one WAL commit per ticket instead of one per decision,
 * and still before the ticket itself is committed, so a ticket is never
 * committed without its audit trail and review tasks.
 */
struct pending {
	struct csa_auto *a;
	json_t *row, *audit; /* owned */
};
static __thread struct pending *pending_v;
static __thread size_t pending_n, pending_cap;

static void pending_add(struct csa_auto *a, json_t *row, json_t *audit)
{
	if (pending_n == pending_cap) {
		size_t cap = pending_cap ? pending_cap * 2 : 8;
		struct pending *nv = realloc(pending_v, cap * sizeof(*nv));
		if (!nv) {
			/* the decision stays in T; its audit record goes in now */
			if (audit)
				csa_ledger_append(a->ledger, "decision",
				                  csa_json_str(audit, "ticket_id"),
				                  json_object_get(audit, "payload"), NULL, NULL);
			json_decref(row);
			json_decref(audit);
			return;
		}
		pending_v = nv;
		pending_cap = cap;
	}
	pending_v[pending_n++] = (struct pending){a, row, audit};
}

/* Run a prepared statement to its end and reset it; SQLITE_DONE or not. */
static int step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE;
}

/* db_err() for row 'r': "<doing> decision '<key>' of ticket '<id>'". */
static int row_err(struct csa_auto *a, struct csa_err *err, const char *doing, const json_t *r)
{
	char what[300];
	snprintf(what, sizeof(what), "%s decision '%s' of ticket '%s'", doing,
	         csa_json_str(r, "key"), csa_json_str(r, "ticket_id"));
	return db_err(a, err, what);
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

static int insert_row(struct csa_auto *a, const json_t *r, struct csa_err *err)
{
	static const char record[] = "cannot record", queue[] = "cannot queue the review of";
	sqlite3_stmt *st;
	if (!(st = kept(a, KEPT_INSERT_DECISION,
	                "INSERT OR REPLACE INTO decisions(id, ticket_id, type, segment, phase, "
	                "value, confidence, threshold, autonomous, critical, created_ms, model, "
	                "shown, review_weight) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
	                "?11, ?12, ?13, ?14)")))
		return row_err(a, err, record, r);
	bind_keys(st, r);
	sqlite3_bind_int(st, 5, (int)csa_json_int(r, "phase", 1));
	sqlite3_bind_text(st, 6, csa_json_str(r, "value"), -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 7, csa_json_num(r, "confidence", 0));
	sqlite3_bind_double(st, 8, csa_json_num(r, "threshold", 2));
	sqlite3_bind_int(st, 9, json_is_true(json_object_get(r, "autonomous")));
	sqlite3_bind_int(st, 10, json_is_true(json_object_get(r, "critical")));
	sqlite3_bind_int64(st, 11, csa_json_int(r, "created_ms", 0));
	sqlite3_bind_text(st, 12, csa_json_str(r, "model"), -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 13, json_is_true(json_object_get(r, "shown")));
	/* an audited autonomous decision stands for 1/p of its kind */
	sqlite3_bind_double(st, 14, csa_json_num(r, "weight", 1));
	if (!step_done(st))
		return row_err(a, err, record, r);
	const char *kind = csa_json_str(r, "task");
	if (!kind)
		return CSA_OK;
	if (!(st = kept(a, KEPT_INSERT_TASK,
	                "INSERT INTO tasks(decision_id, ticket_id, type, segment, kind, "
	                "shown, suggestion, confidence, alternatives, score, created_ms, "
	                "due_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)")))
		return row_err(a, err, queue, r);
	bind_keys(st, r);
	sqlite3_bind_text(st, 5, kind, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 6, json_is_true(json_object_get(r, "shown")));
	sqlite3_bind_text(st, 7, csa_json_str(r, "value"), -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 8, csa_json_num(r, "confidence", 0));
	sqlite3_bind_text(st, 9, csa_json_str(r, "alternatives"), -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 10, csa_json_num(r, "score", 0));
	sqlite3_bind_int64(st, 11, csa_json_int(r, "created_ms", 0));
	sqlite3_bind_int64(st, 12, csa_json_int(r, "due_ms", 0));
	return step_done(st) ? CSA_OK : row_err(a, err, queue, r);
}

static int record_alert(struct csa_auto *a, const char *type, const char *severity,
                        const char *scope, const json_t *detail, int *is_new, struct csa_err *err);
static void announce_alert(struct csa_auto *a, const char *type, const char *severity,
                           const char *scope, json_t *detail, json_t *events);
static int raise_alert(struct csa_auto *a, const char *type, const char *severity,
                       const char *scope, json_t *detail, json_t *events, struct csa_err *err);
static int close_alert(struct csa_auto *a, const char *type, const char *scope, int *closed,
                       struct csa_err *err);

/* A ledger that cannot take records (disk full, I/O error) is a CRITICAL
 * alert, not a silent gap: the decisions are still in T and automation.db,
 * but the tamper-evident chain misses them. It closes at the next append
 * that succeeds. Caller holds a->mu. */
static void ledger_health_locked(struct csa_auto *a, int rc, const struct csa_err *err)
{
	struct csa_err aerr = {0};
	int arc = CSA_OK;
	if (rc && !a->ledger_failing)
		arc = raise_alert(a, "AUDIT_LEDGER_FAILURE", "CRITICAL", "ledger",
		                  json_pack("{s:s}", "error", err->msg), NULL, &aerr);
	else if (!rc && a->ledger_failing)
		arc = close_alert(a, "AUDIT_LEDGER_FAILURE", "ledger", NULL, &aerr);
	/* neither the ledger nor the alerts table takes it: the log does */
	if (arc)
		fprintf(stderr, "csa: %s\n", aerr.msg);
	/* an alert that could not be closed is closed at the next append */
	a->ledger_failing = rc != CSA_OK || (a->ledger_failing && arc);
}

/* Caller holds a->mu. A failed transaction is rolled back whole. */
static void rollback_locked(struct csa_auto *a)
{
	if (!sqlite3_get_autocommit(a->db))
		sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
}

/* This thread's waiting rows of 'a' in one transaction, then their audit
 * records in one ledger append. A row that cannot be written fails the run
 * whole: the transaction rolls back, no audit record goes out, and the
 * pipeline does not commit the ticket, so a ticket is never committed
 * without its review tasks. A ledger that fails does not stop the run (the
 * decisions are in T and automation.db): it raises AUDIT_LEDGER_FAILURE. */
static int decisions_done(void *ctx, struct csa_err *err)
{
	struct csa_auto *a = ctx;
	int rc = CSA_OK, began = 0;
	pthread_mutex_lock(&a->mu);
	for (size_t i = 0; rc == CSA_OK && i < pending_n; i++) {
		const json_t *row = pending_v[i].row;
		if (pending_v[i].a != a || !row)
			continue;
		if (!began && sqlite3_exec(a->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
			char what[200];
			snprintf(what, sizeof(what), "cannot record the decisions of ticket '%s'",
			         csa_json_str(row, "ticket_id"));
			rc = db_err(a, err, what);
			break;
		}
		began = 1;
		rc = insert_row(a, row, err);
	}
	if (began && rc == CSA_OK && sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = db_err(a, err, "cannot commit a run's decisions");
	if (rc)
		rollback_locked(a);
	pthread_mutex_unlock(&a->mu);

	struct csa_ledger_rec *recs = rc ? NULL : calloc(pending_n ? pending_n : 1, sizeof(*recs));
	size_t nrecs = 0;
	for (size_t i = 0; rc == CSA_OK && i < pending_n; i++) {
		const json_t *au = pending_v[i].audit;
		if (pending_v[i].a != a || !au)
			continue;
		if (recs)
			recs[nrecs++] =
			    (struct csa_ledger_rec){"decision", csa_json_str(au, "ticket_id"),
			                            json_object_get(au, "payload")};
		else /* out of memory: one by one */
			csa_ledger_append(a->ledger, "decision", csa_json_str(au, "ticket_id"),
			                  json_object_get(au, "payload"), NULL, NULL);
	}
	struct csa_err lerr = {0};
	int lrc = nrecs ? csa_ledger_append_many(a->ledger, recs, nrecs, NULL, &lerr) : CSA_OK;
	free(recs);
	if (nrecs && (lrc != CSA_OK) != atomic_load(&a->ledger_failing)) {
		pthread_mutex_lock(&a->mu);
		ledger_health_locked(a, lrc, &lerr);
		pthread_mutex_unlock(&a->mu);
	}

	size_t keep = 0;
	for (size_t i = 0; i < pending_n; i++) {
		if (pending_v[i].a != a) {
			pending_v[keep++] = pending_v[i];
			continue;
		}
		json_decref(pending_v[i].row);
		json_decref(pending_v[i].audit);
	}
	pending_n = keep;
	if (!pending_n) {
		free(pending_v);
		pending_v = NULL;
		pending_cap = 0;
	}
	return rc;
}

/* The run's ticket was not committed (the pipeline's commit failed after
 * decisions_done): its decisions never happened, so their rows and review
 * tasks go, in one transaction, and the ledger, which already holds their
 * records, says why they are void. Called under the ticket's lock. */
static void run_abandoned(void *ctx, const char *ticket_id, const char *const *ids, size_t n,
                          const struct csa_err *why)
{
	struct csa_auto *a = ctx;
	pthread_mutex_lock(&a->mu);
	sqlite3_stmt *dd = NULL, *dt = NULL;
	int ok = sqlite3_exec(a->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK &&
	         sqlite3_prepare_v2(a->db, "DELETE FROM decisions WHERE id >= ?1 AND id < ?2", -1,
	                            &dd, NULL) == SQLITE_OK &&
	         sqlite3_prepare_v2(a->db,
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
		}
	}
	sqlite3_finalize(dd);
	sqlite3_finalize(dt);
	ok = ok && sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK;
	if (!ok)
		rollback_locked(a);
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, json_string(ids[i] ? ids[i] : ""));
	json_t *rec = json_pack("{s:o, s:s, s:b}", "decision_ids", list, "reason",
	                        why ? why->msg : "", "rows_removed", ok);
	pthread_mutex_unlock(&a->mu);
	csa_ledger_append(a->ledger, "abandoned", ticket_id, rec, NULL, NULL);
	json_decref(rec);
}

/* An automated resolution sent to a customer, when a wrong one counts as a
 * critical error (automation.critical_errors.wrong_automated_resolution). */
int csa_auto_wrong_is_critical(const struct csa_auto *a, const char *type, const char *value)
{
	return strcmp(type, "strategy") == 0 && value &&
	       strcmp(value, "AUTOMATED_RESOLUTION") == 0 &&
	       json_is_true(csa_config_get(
	           acfg(a), "automation.critical_errors.wrong_automated_resolution"));
}

/* A customer-facing strategy (automation.customer_facing_strategies: a
 * resolution sent to the customer) is chosen for the ticket's category and
 * its articles; it goes out autonomously only when that category was
 * confident enough to be applied autonomously too. */
static int waits_for_category(const struct csa_auto *a, const char *type,
                              const struct csa_flow_decision *d)
{
	return strcmp(type, "strategy") == 0 && !d->category_autonomous && d->value &&
	       csa_config_in_list(acfg(a), "automation.customer_facing_strategies", d->value);
}

/* The automation.db row of a decision, from the automation block that
 * on_decision writes into T and the ledger ('info'): after a power loss
 * took the row, the ticket alone gives it back (recover()). */
static json_t *row_of(struct csa_auto *a, const char *ticket_id, const char *type,
                      const json_t *info, int64_t created_ms, const json_t *alternatives)
{
	/* one agent decision can carry two decision types (classifier:
	 * category and priority): the log keys them apart */
	char key[200];
	snprintf(key, sizeof(key), "%s#%s", csa_json_str(info, "decision_id"), type);
	const char *review = csa_json_str(info, "review");
	int decide = !review || strcmp(review, "decide") == 0;
	double confidence = csa_json_num(info, "confidence", 0);
	double threshold = csa_json_num(info, "threshold", -1);
	int critical = json_is_true(json_object_get(info, "critical"));
	int phase = csa_phase_num(csa_json_str(info, "phase"));
	if (!phase)
		phase = 1;
	/* most valuable first: humans are needed most where the AI is least
	 * sure, on critical tickets, and to unblock tickets */
	double score = (1 - confidence) + (critical ? 1.0 : 0) + (decide ? 0.5 : 0);
	int64_t delay =
	    decide ? 0 : (int64_t)(cfg_num(a, "automation.review_delay_minutes", 60) * 60000);
	char *alts = alternatives ? json_dumps(alternatives, JSON_COMPACT) : NULL;
	json_t *row = json_pack(
	    "{s:s, s:s, s:s, s:s?, s:i, s:s?, s:f, s:f, s:b, s:b, s:I, s:s?, s:b, s:f, "
	    "s:s?, s:f, s:I, s:s?}",
	    "key", key, "ticket_id", ticket_id, "type", type, "segment",
	    csa_json_str(info, "segment"), "phase", phase, "value", csa_json_str(info, "value"),
	    "confidence", confidence, "threshold", threshold < 0 ? 2.0 : threshold, "autonomous",
	    json_is_true(json_object_get(info, "autonomous")), "critical", critical, "created_ms",
	    (json_int_t)created_ms, "model", csa_json_str(info, "model"), "shown", phase >= 2,
	    "weight", csa_json_num(info, "review_weight", 1), "task",
	    decide                         ? "decide"
	    : strcmp(review, "audit") == 0 ? "audit"
	                                   : NULL,
	    "score", score, "due_ms", (json_int_t)(created_ms + delay), "alternatives", alts);
	free(alts);
	return row;
}

static int on_decision(void *ctx, const struct csa_flow_decision *d, json_t *audit)
{
	struct csa_auto *a = ctx;
	const char *type = csa_dtype_name(d->type);
	if (!type_tracked(a, type))
		return 0;
	const char *segment = d->segment ? d->segment : "-";
	int64_t now = csa_now_ms();
	pthread_mutex_lock(&a->mu);
	int phase = segment_phase(a, type, segment);
	/* a decision whose error would be critical clears the critical target,
	 * on a critical ticket or not */
	int strict = d->critical || csa_auto_wrong_is_critical(a, type, d->value);
	const struct thr *t = threshold_of(a, type, segment, strict);
	double threshold = t ? t->threshold : 2.0;
	int confident = phase >= 3 && d->confidence >= threshold;
	int held = confident && waits_for_category(a, type, d);
	int autonomous = confident && !held;
	const char *review = "decide";
	double review_p = 1;
	if (autonomous) {
		/* counted up to 20 half-lives, past which the sampling rate is at
		 * its floor: the cost stays bounded as the history grows */
		double half_life = cfg_num(a, "automation.review_half_life", 200);
		int64_t reviewed_auto = 0;
		sqlite3_stmt *st = kept(a, KEPT_REVIEWED_AUTO,
		                        "SELECT count(*) FROM (SELECT 1 FROM decisions WHERE "
		                        "autonomous = 1 AND final IS "
		                        "NOT NULL AND type = ?1 AND segment = ?2 LIMIT ?3)");
		if (st) {
			sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, segment, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 3, (sqlite3_int64)(20 * fmax(half_life, 1)) + 1);
			if (sqlite3_step(st) == SQLITE_ROW)
				reviewed_auto = sqlite3_column_int64(st, 0);
			sqlite3_reset(st);
		}
		review_p = csa_review_probability(
		    (size_t)reviewed_auto, cfg_num(a, "automation.review_floor", 0.05), half_life,
		    d->confidence, 0.95, cfg_num(a, "automation.review_uncertain_share", 0.7));
		/* deterministic per decision: replays repeat exactly */
		double u = (double)(hash64(d->decision_id) >> 11) / 9007199254740992.0;
		review = u < review_p ? "audit" : "none";
	}
	pthread_mutex_unlock(&a->mu);
	json_t *info = json_pack(
	    "{s:s, s:s, s:s, s:f, s:f, s:s, s:b, s:s, s:s?, s:s?, s:b, s:f}", "decision_id",
	    d->decision_id, "decision_type", type, "segment", segment, "confidence", d->confidence,
	    "threshold", threshold > 1 ? -1.0 : threshold, "phase",
	    (const char *[]){"", "PHASE_1", "PHASE_2", "PHASE_3", "PHASE_4", "PHASE_5"}[phase],
	    "autonomous", autonomous, "review", review, "model", d->model_version, "input_digest",
	    d->input_digest, "critical", d->critical, "review_weight",
	    review_p > 0 ? 1 / review_p : 1);
	json_object_set_new(info, "value", json_string(d->value));
	if (held)
		json_object_set_new(info, "held", json_string("category not applied autonomously"));
	/* the row goes in with the run's other decisions (decisions_done) */
	json_t *row = row_of(a, d->ticket_id, type, info, now, d->alternatives);
	/* a copy: the ledger records the decision as it was made */
	json_t *rec =
	    json_pack("{s:s, s:o}", "ticket_id", d->ticket_id, "payload", json_deep_copy(info));
	if (!rec)
		csa_ledger_append(a->ledger, "decision", d->ticket_id, info, NULL, NULL);
	pending_add(a, row, rec);
	json_object_set_new(audit, type, info);
	return autonomous;
}

/* ---- review queue ------------------------------------------------------- */

static json_t *task_row(struct csa_auto *a, sqlite3_stmt *st)
{
	char ts1[CSA_TS_LEN], ts2[CSA_TS_LEN];
	const char *type = (const char *)sqlite3_column_text(st, 3);
	int shown = sqlite3_column_int(st, 7);
	const char *alts = (const char *)sqlite3_column_text(st, 10);
	json_t *alt = alts && shown ? json_loads(alts, 0, NULL) : NULL;
	json_t *t = json_pack(
	    "{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:f, s:s, s:s}", "task_id",
	    (json_int_t)sqlite3_column_int64(st, 0), "decision_id", sqlite3_column_text(st, 1),
	    "ticket_id", sqlite3_column_text(st, 2), "decision_type", type, "segment",
	    sqlite3_column_text(st, 4), "kind", sqlite3_column_text(st, 5), "status",
	    sqlite3_column_text(st, 6), "suggestion",
	    shown ? json_string((const char *)sqlite3_column_text(st, 8)) : json_null(),
	    "confidence", shown ? json_real(sqlite3_column_double(st, 9)) : json_null(),
	    "alternatives", alt ? alt : json_array(), "labels", labels_of(a, type),
	    "priority_score", sqlite3_column_double(st, 11), "created",
	    csa_ts_format(sqlite3_column_int64(st, 12), ts1), "due",
	    csa_ts_format(sqlite3_column_int64(st, 13), ts2));
	return t;
}

#define TASK_COLS                                                                                  \
	"id, decision_id, ticket_id, type, segment, kind, status, shown, suggestion, "             \
	"confidence, alternatives, score, created_ms, due_ms"

int csa_auto_review_list(struct csa_auto *a, const char *status, size_t limit, json_t **out,
                         struct csa_err *err)
{
	sqlite3_stmt *st;
	pthread_mutex_lock(&a->mu);
	int rc = CSA_OK;
	if (sqlite3_prepare_v2(a->db,
	                       "SELECT " TASK_COLS " FROM tasks WHERE (?1 IS NULL OR status = ?1) "
	                       "ORDER BY status = 'open' DESC, score DESC, id LIMIT ?2",
	                       -1, &st, NULL) != SQLITE_OK) {
		rc = db_err(a, err, "listing tasks");
		goto out;
	}
	if (status)
		sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
	json_t *arr = json_array();
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(arr, task_row(a, st));
	sqlite3_finalize(st);
	*out = arr;
out:
	pthread_mutex_unlock(&a->mu);
	return rc;
}

int csa_auto_review_for_ticket(struct csa_auto *a, const char *ticket_id, json_t **out,
                               struct csa_err *err)
{
	sqlite3_stmt *st;
	pthread_mutex_lock(&a->mu);
	int rc = CSA_OK;
	if (sqlite3_prepare_v2(a->db,
	                       "SELECT " TASK_COLS " FROM tasks WHERE status = 'open' AND "
	                       "ticket_id = ?1 ORDER BY id",
	                       -1, &st, NULL) != SQLITE_OK) {
		rc = db_err(a, err, "listing a ticket's tasks");
		goto out;
	}
	sqlite3_bind_text(st, 1, ticket_id, -1, SQLITE_STATIC);
	json_t *arr = json_array();
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(arr, task_row(a, st));
	sqlite3_finalize(st);
	*out = arr;
out:
	pthread_mutex_unlock(&a->mu);
	return rc;
}

int csa_auto_review_next(struct csa_auto *a, json_t **out, struct csa_err *err)
{
	sqlite3_stmt *st;
	*out = NULL;
	pthread_mutex_lock(&a->mu);
	int rc = CSA_OK;
	/* due tasks first (delayed audits wait for their time), then value */
	if (sqlite3_prepare_v2(a->db,
	                       "SELECT " TASK_COLS
	                       " FROM tasks WHERE status = 'open' AND due_ms <= ?1 "
	                       "ORDER BY score DESC, id LIMIT 1",
	                       -1, &st, NULL) != SQLITE_OK) {
		rc = db_err(a, err, "choosing the next task");
		goto out;
	}
	sqlite3_bind_int64(st, 1, csa_now_ms());
	if (sqlite3_step(st) == SQLITE_ROW)
		*out = task_row(a, st);
	sqlite3_finalize(st);
out:
	pthread_mutex_unlock(&a->mu);
	return rc;
}

/* What counts as a critical error (automation.critical_errors). */
static int is_critical_error(struct csa_auto *a, const char *type, int critical,
                             const char *ai_value)
{
	if (critical && json_is_true(csa_config_get(
	                    acfg(a), "automation.critical_errors.reversed_on_critical_ticket")))
		return 1;
	return csa_auto_wrong_is_critical(a, type, ai_value);
}

static void demote_type(struct csa_auto *a, const char *type, int to, const char *why,
                        json_t *events);

/*
 * A critical error a review found: its alert row goes into the review's
 * transaction; 'crits' keeps it for announce_critical_errors() once that
 * commits. Caller holds a->mu.
 */
static int critical_error(struct csa_auto *a, const char *decision_id, const char *ticket,
                          const char *type, const char *segment, const char *ai_value,
                          const char *human_value, json_t *crits, struct csa_err *err)
{
	char scope[200];
	snprintf(scope, sizeof(scope), "%s/%s", type, segment);
	json_t *detail = json_pack("{s:s, s:s, s:s, s:s}", "decision_id", decision_id, "ticket_id",
	                           ticket, "ai_value", ai_value, "human_value", human_value);
	int is_new, rc = record_alert(a, "CRITICAL_ERROR", "CRITICAL", scope, detail, &is_new, err);
	if (rc == CSA_OK)
		json_array_append_new(crits, json_pack("{s:s, s:s, s:o}", "type", type, "scope",
		                                       scope, "detail", detail));
	else
		json_decref(detail);
	return rc;
}

/* The review committed: its critical errors reach the ledger, the webhook
 * and the events, and their decision types go back to human review at
 * once. Caller holds a->mu. */
static void announce_critical_errors(struct csa_auto *a, const json_t *crits, json_t *events)
{
	size_t i;
	json_t *c;
	json_array_foreach(crits, i, c)
	{
		announce_alert(a, "CRITICAL_ERROR", "CRITICAL", csa_json_str(c, "scope"),
		               json_incref(json_object_get(c, "detail")), events);
		demote_type(a, csa_json_str(c, "type"), 2,
		            "critical error in an autonomous decision", events);
	}
}

/* Whether a person confirmed the ticket's priority as CRITICAL. */
static int ticket_confirmed_critical(struct csa_auto *a, const char *ticket)
{
	return count_i64(a,
	                 "SELECT count(*) FROM decisions WHERE ticket_id = ?1 AND "
	                 "type = 'priority' AND final = 'CRITICAL'",
	                 ticket, NULL) > 0;
}

/* Every decision of the ticket counts as one on a CRITICAL ticket (the
 * gates count critical errors by this flag). */
static int mark_ticket_critical(struct csa_auto *a, const char *ticket, struct csa_err *err)
{
	char what[160];
	snprintf(what, sizeof(what), "marking the decisions of ticket '%s' critical", ticket);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(a->db, "UPDATE decisions SET critical = 1 WHERE ticket_id = ?1", -1,
	                       &st, NULL) != SQLITE_OK)
		return db_err(a, err, what);
	sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
	int done = step_done(st);
	sqlite3_finalize(st);
	return done ? CSA_OK : db_err(a, err, what);
}

/*
 * A person has just confirmed the ticket as CRITICAL (decision 'by'). Its
 * autonomous decisions that were already reversed while the ticket looked
 * non-critical are critical errors now: nothing in the ticket hinted at it,
 * which is exactly what the safety manager must learn about. Inside the
 * review's transaction.
 */
static int reversals_became_critical(struct csa_auto *a, const char *ticket, const char *by,
                                     json_t *crits, struct csa_err *err)
{
	char what[160];
	snprintf(what, sizeof(what), "reading the reversed decisions of ticket '%s'", ticket);
	sqlite3_stmt *st;
	json_t *found = json_array();
	if (sqlite3_prepare_v2(a->db,
	                       "SELECT id, type, segment, value, final FROM decisions WHERE "
	                       "ticket_id = ?1 AND id <> ?2 AND critical = 0 AND autonomous = 1 "
	                       "AND correct = 0",
	                       -1, &st, NULL) != SQLITE_OK) {
		json_decref(found);
		return db_err(a, err, what);
	}
	sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, by, -1, SQLITE_STATIC);
	int step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW)
		json_array_append_new(found, json_pack("{s:s, s:s, s:s, s:s?, s:s}", "id",
		                                       sqlite3_column_text(st, 0), "type",
		                                       sqlite3_column_text(st, 1), "segment",
		                                       sqlite3_column_text(st, 2), "value",
		                                       (const char *)sqlite3_column_text(st, 3),
		                                       "final", sqlite3_column_text(st, 4)));
	sqlite3_finalize(st);
	int rc = step == SQLITE_DONE ? mark_ticket_critical(a, ticket, err) : db_err(a, err, what);
	size_t i;
	json_t *d;
	json_array_foreach(found, i, d)
	{
		const char *type = csa_json_str(d, "type"), *ai = csa_json_str(d, "value");
		if (rc == CSA_OK && is_critical_error(a, type, 1, ai))
			rc = critical_error(a, csa_json_str(d, "id"), ticket, type,
			                    csa_json_str(d, "segment"), ai ? ai : "",
			                    csa_json_str(d, "final"), crits, err);
	}
	json_decref(found);
	return rc;
}

/* A task being decided elsewhere is waited for up to this long, so the
 * loser hears the winner's outcome, not that one is under way. */
enum { CLAIM_WAIT_MS = 30000, CLAIM_POLL_MS = 100 };

/* What review_decide reads of a task and of its decision. */
struct task_claim {
	int64_t id, created;
	char decision_id[160], ticket[80], type[32], segment[160], ai_value[160], status[16],
	    value[160], reviewer[160];
	int critical, autonomous, phase;
};

static int read_claim(struct csa_auto *a, struct task_claim *t, struct csa_err *err)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(
	        a->db,
	        "SELECT t.decision_id, t.ticket_id, t.type, t.segment, t.created_ms, d.value, "
	        "d.critical, d.autonomous, d.phase, t.status, coalesce(t.value, d.final), "
	        "coalesce(t.reviewer, d.reviewer) "
	        "FROM tasks t JOIN decisions d ON d.id = t.decision_id WHERE t.id = ?1",
	        -1, &st, NULL) != SQLITE_OK)
		return db_err(a, err, "reading a review task");
	sqlite3_bind_int64(st, 1, t->id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return csa_error(err, CSA_ENOENT, "no review task %lld", (long long)t->id);
	}
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
	sqlite3_finalize(st);
	return CSA_OK;
}

/* Claims an open task for 'value' in one conditional update: 1 if this
 * controller got it, 0 if another decision did first. */
static int claim_task(struct csa_auto *a, int64_t task_id, const char *value, const char *who,
                      struct csa_err *err)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(a->db,
	                       "UPDATE tasks SET status = 'deciding', claim = ?2, value = ?3, "
	                       "reviewer = ?4 WHERE id = ?1 AND status = 'open'",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_err(a, err, "claiming a review task");
	sqlite3_bind_int64(st, 1, task_id);
	sqlite3_bind_text(st, 2, a->open_marker, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, value, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, who, -1, SQLITE_STATIC);
	int done = step_done(st);
	sqlite3_finalize(st);
	if (!done)
		return db_err(a, err, "claiming a review task");
	return sqlite3_changes(a->db) == 1;
}

/* A claim given up (the ticket could not take the decision, or the task
 * could not be closed): the task is open again for anyone. */
static void release_claim(struct csa_auto *a, int64_t task_id)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(a->db,
	                       "UPDATE tasks SET status = 'open', claim = NULL, value = NULL, "
	                       "reviewer = NULL WHERE id = ?1 AND status = 'deciding' AND "
	                       "claim = ?2",
	                       -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, task_id);
		sqlite3_bind_text(st, 2, a->open_marker, -1, SQLITE_STATIC);
		sqlite3_step(st);
		sqlite3_finalize(st);
	}
	pthread_cond_broadcast(&a->decided);
}

/* Waits, holding a->mu between polls, until task t is open or decided:
 * the error to answer, or CSA_OK with the task open. */
static int wait_for_open(struct csa_auto *a, struct task_claim *t, json_t **winner,
                         struct csa_err *err)
{
	int64_t deadline = csa_now_ms() + CLAIM_WAIT_MS;
	int rc;
	while ((rc = read_claim(a, t, err)) == CSA_OK && strcmp(t->status, "deciding") == 0 &&
	       csa_now_ms() < deadline) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += CLAIM_POLL_MS * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&a->decided, &a->mu, &ts);
	}
	if (rc || strcmp(t->status, "open") == 0)
		return rc;
	*winner =
	    json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "task_id", (json_int_t)t->id,
	              "decision_id", t->decision_id, "ticket_id", t->ticket, "decision_type",
	              t->type, "status", t->status, "value", t->value, "reviewer", t->reviewer);
	return csa_error(err, CSA_ECONFLICT, "review task %lld is %s: '%s' by %s", (long long)t->id,
	                 strcmp(t->status, "done") == 0 ? "decided" : "being decided", t->value,
	                 t->reviewer);
}

/* Closes a claimed task with the person's decision, in one transaction
 * with what the review reveals about critical errors. */
static int close_task(struct csa_auto *a, const struct task_claim *t, const char *value,
                      const char *who, int64_t decision_ms, int *crit, json_t *crits,
                      struct csa_err *err)
{
	sqlite3_stmt *st;
	int rc = CSA_OK, correct = strcmp(t->ai_value, value) == 0, critical = t->critical;
	if (sqlite3_exec(a->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return db_err(a, err, "beginning the review's transaction");
	if (sqlite3_prepare_v2(a->db,
	                       "UPDATE decisions SET final = ?2, correct = ?3, reviewed_ms = ?4, "
	                       "reviewer = ?5, decision_ms = ?6 WHERE id = ?1",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_err(a, err, "recording the review");
	sqlite3_bind_text(st, 1, t->decision_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, correct);
	sqlite3_bind_int64(st, 4, csa_now_ms());
	sqlite3_bind_text(st, 5, who, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, decision_ms);
	int done = step_done(st);
	sqlite3_finalize(st);
	if (!done || sqlite3_prepare_v2(a->db,
	                                "UPDATE tasks SET status = 'done' WHERE id = ?1 AND "
	                                "status = 'deciding' AND claim = ?2",
	                                -1, &st, NULL) != SQLITE_OK)
		return db_err(a, err, "recording the review");
	sqlite3_bind_int64(st, 1, t->id);
	sqlite3_bind_text(st, 2, a->open_marker, -1, SQLITE_STATIC);
	done = step_done(st);
	sqlite3_finalize(st);
	if (!done)
		return db_err(a, err, "closing the task");
	if (sqlite3_changes(a->db) != 1)
		return csa_error(err, CSA_ESTATE, "the claim on review task %lld was lost",
		                 (long long)t->id);
	/* what the person said about the ticket's criticality goes in with
	 * the review: the flag on decisions is the guess at decision time,
	 * what people confirmed about the ticket's priority decides whether a
	 * reversal is critical */
	if (strcmp(t->type, "priority") == 0 && strcmp(value, "CRITICAL") == 0) {
		rc = reversals_became_critical(a, t->ticket, t->decision_id, crits, err);
		critical = 1;
	} else if (!critical && ticket_confirmed_critical(a, t->ticket)) {
		critical = 1;
		rc = mark_ticket_critical(a, t->ticket, err);
	}
	*crit = t->autonomous && !correct && is_critical_error(a, t->type, critical, t->ai_value);
	if (rc == CSA_OK && *crit)
		rc = critical_error(a, t->decision_id, t->ticket, t->type, t->segment, t->ai_value,
		                    value, crits, err);
	if (rc)
		return rc;
	if (sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		return db_err(a, err, "committing the review");
	return CSA_OK;
}

/*
 * One decision per task, whoever and however many decide at once: the task
 * is claimed by a conditional update (open -> deciding) before the ticket
 * takes the person's decision, and closed (deciding -> done) with the
 * review's rows. A loser waits for the winner's outcome and gets
 * CSA_ECONFLICT with the winner's decision in *out; nothing of its own is
 * written. A claim whose ticket write fails is released.
 */
int csa_auto_review_decide(struct csa_auto *a, int64_t task_id, const char *value, const char *who,
                           const char *notes, int64_t decision_ms, json_t **out,
                           struct csa_err *err)
{
	struct task_claim t = {.id = task_id};
	json_t *crits = json_array(); /* critical errors this review found */
	int rc, crit = 0;
	pthread_mutex_lock(&a->mu);
	for (;;) {
		if ((rc = wait_for_open(a, &t, out, err)))
			goto out;
		if (!valid_label(a, t.type, value)) {
			rc = csa_error(err, CSA_EINVAL, "'%s' is not a %s value",
			               value ? value : "", t.type);
			goto out;
		}
		if ((rc = claim_task(a, task_id, value, who, err)) < 0) {
			csa_error_prefix(
			    err, "review task %lld of ticket '%s': ", (long long)task_id, t.ticket);
			goto out;
		}
		if (rc == 1)
			break; /* ours; else another process claimed it since the read */
	}
	pthread_mutex_unlock(&a->mu);
	char agent_decision[160];
	snprintf(agent_decision, sizeof(agent_decision), "%.*s", (int)strcspn(t.decision_id, "#"),
	         t.decision_id);
	/* the ticket: confirmed or overridden; the model learns from
	 * disagreements from PHASE_2 on (PHASE_1 only captures) */
	rc = csa_pipeline_feedback(a->pipe, t.ticket, agent_decision,
	                           (enum csa_dtype)csa_dtype_parse(t.type), value, who, notes,
	                           t.phase >= 2, err);
	pthread_mutex_lock(&a->mu);
	if (rc) {
		release_claim(a, task_id);
		goto out;
	}
	if (decision_ms < 0)
		decision_ms = csa_now_ms() - t.created;
	/* the ticket holds the person's decision now; the task closes with it,
	 * or the caller hears that it did not and can decide again */
	if ((rc = close_task(a, &t, value, who, decision_ms, &crit, crits, err))) {
		csa_error_prefix(err,
		                 "the decision is in ticket '%s' but review task %lld could not be "
		                 "closed: ",
		                 t.ticket, (long long)task_id);
		rollback_locked(a);
		release_claim(a, task_id);
		goto out;
	}
	pthread_cond_broadcast(&a->decided);
	a->reviews++;
	int correct = strcmp(t.ai_value, value) == 0;
	json_t *rec =
	    json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s?, s:b, s:I, s:s?, s:b}", "task_id",
	              (json_int_t)task_id, "decision_id", t.decision_id, "decision_type", t.type,
	              "segment", t.segment, "value", value, "ai_value", t.ai_value, "by", who,
	              "correct", correct, "decision_ms", (json_int_t)decision_ms, "notes", notes,
	              "autonomous_decision", t.autonomous);
	json_t *events = json_array();
	if (crit)
		json_object_set_new(rec, "critical_error", json_true());
	announce_critical_errors(a, crits, events);
	struct csa_err lerr = {0};
	ledger_health_locked(a, csa_ledger_append(a->ledger, "review", t.ticket, rec, NULL, &lerr),
	                     &lerr);
	json_object_set_new(rec, "events", events);
	*out = rec;
out:
	pthread_mutex_unlock(&a->mu);
	json_decref(crits);
	return rc;
}

/* ---- alerts and safety ------------------------------------------------- */

static void post_webhook(struct csa_auto *a, const json_t *alert)
{
	const char *url = csa_json_str(csa_config_get(acfg(a), "automation"), "alert_webhook");
	if (!url || !*url)
		url = getenv("ALERT_WEBHOOK_URL");
	if (!url || !*url)
		return;
	CURL *c = curl_easy_init();
	if (!c)
		return;
	char *body = json_dumps(alert, JSON_COMPACT);
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	/* best effort: the alert is in the ledger and the alerts table */
	(void)curl_easy_perform(c);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	free(body);
}

/* The alerts table's row for an alert: *is_new is 0 when an open alert of
 * the same type and scope stands (each CRITICAL_ERROR is its own alert).
 * Caller holds a->mu. */
static int record_alert(struct csa_auto *a, const char *type, const char *severity,
                        const char *scope, const json_t *detail, int *is_new, struct csa_err *err)
{
	char what[300];
	snprintf(what, sizeof(what), "recording alert %s (%s)", type, scope);
	*is_new = 1;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(a->db,
	                       "SELECT 1 FROM alerts WHERE open = 1 AND type = ?1 AND scope = ?2",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_err(a, err, what);
	sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, scope, -1, SQLITE_STATIC);
	int step = sqlite3_step(st);
	sqlite3_finalize(st);
	if (step != SQLITE_ROW && step != SQLITE_DONE)
		return db_err(a, err, what);
	if (step == SQLITE_ROW && strcmp(type, "CRITICAL_ERROR") != 0) {
		*is_new = 0;
		return CSA_OK;
	}
	if (sqlite3_prepare_v2(a->db,
	                       "INSERT INTO alerts(created_ms, type, severity, scope, detail) "
	                       "VALUES(?1, ?2, ?3, ?4, ?5)",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_err(a, err, what);
	char *d = json_dumps(detail, JSON_COMPACT);
	sqlite3_bind_int64(st, 1, csa_now_ms());
	sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, severity, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, scope, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, d ? d : "{}", -1, SQLITE_STATIC);
	int done = step_done(st);
	sqlite3_finalize(st);
	free(d);
	return done ? CSA_OK : db_err(a, err, what);
}

/* The ledger, the webhook and the caller's events hear of an alert.
 * 'detail' is stolen. */
static void announce_alert(struct csa_auto *a, const char *type, const char *severity,
                           const char *scope, json_t *detail, json_t *events)
{
	json_t *alert = json_pack("{s:s, s:s, s:s, s:o}", "type", type, "severity", severity,
	                          "scope", scope, "detail", detail);
	csa_ledger_append(a->ledger, "alert", NULL, alert, NULL, NULL);
	post_webhook(a, alert);
	if (events)
		json_array_append_new(events,
		                      json_pack("{s:s, s:O}", "event", "alert", "alert", alert));
	json_decref(alert);
}

/* Caller holds a->mu. An open alert of the same type and scope is not
 * raised twice. One that the alerts table cannot take still reaches the
 * ledger, the webhook and the events, and the caller gets the error to
 * report: an alert is never silent. 'detail' is stolen. */
static int raise_alert(struct csa_auto *a, const char *type, const char *severity,
                       const char *scope, json_t *detail, json_t *events, struct csa_err *err)
{
	int is_new;
	int rc = record_alert(a, type, severity, scope, detail, &is_new, err);
	if (is_new)
		announce_alert(a, type, severity, scope, detail, events);
	else
		json_decref(detail);
	return rc;
}

/* Caller holds a->mu; *closed tells whether an alert was open. */
static int close_alert(struct csa_auto *a, const char *type, const char *scope, int *closed,
                       struct csa_err *err)
{
	char what[300];
	snprintf(what, sizeof(what), "closing alert %s (%s)", type, scope);
	sqlite3_stmt *st;
	if (closed)
		*closed = 0;
	if (sqlite3_prepare_v2(a->db, "UPDATE alerts SET open = 0 WHERE type = ?1 AND scope = ?2",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_err(a, err, what);
	sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, scope, -1, SQLITE_STATIC);
	int done = step_done(st);
	sqlite3_finalize(st);
	if (!done)
		return db_err(a, err, what);
	if (closed)
		*closed = sqlite3_changes(a->db) > 0;
	return CSA_OK;
}

static void set_segment_phase(struct csa_auto *a, const char *key, int phase, const char *why,
                              json_t *events)
{
	json_t *segs = json_object_get(a->state, "segments");
	int from = (int)csa_json_int(segs, key, 1);
	if (from == phase)
		return;
	json_object_set_new(segs, key, json_integer(phase));
	save_state(a, NULL);
	/* thresholds of the segment are recomputed from here on */
	a->nthr = 0;
	json_t *rec = json_pack("{s:s, s:i, s:i, s:s}", "segment", key, "from", from, "to", phase,
	                        "reason", why);
	csa_ledger_append(a->ledger, "phase_change", NULL, rec, NULL, NULL);
	if (events)
		json_array_append_new(
		    events, json_pack("{s:s, s:O}", "event", "phase_change", "change", rec));
	json_decref(rec);
}

/* Every known segment of a type down to phase 'to' (if above). */
static void demote_type(struct csa_auto *a, const char *type, int to, const char *why,
                        json_t *events)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(a->db, "SELECT DISTINCT segment FROM decisions WHERE type = ?1", -1,
	                       &st, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW) {
		char key[200];
		snprintf(key, sizeof(key), "%s/%s", type, sqlite3_column_text(st, 0));
		if (csa_json_int(json_object_get(a->state, "segments"), key, 1) > to)
			set_segment_phase(a, key, to, why, events);
	}
	sqlite3_finalize(st);
	restart_evidence(a, type);
}

/* ---- gates -------------------------------------------------------------- */

struct scope_metrics {
	int64_t n, autonomous, reviewed, correct, human, human_reviewed, auto_reviewed,
	    auto_correct, critical_errors, open_tasks_decide;
	double mean_decision_ms, total_decision_ms;
};

/* CSA_EIO (all zero) when automation.db cannot answer. */
static int scope_metrics(struct csa_auto *a, const char *type, const char *segment, int phase,
                         struct scope_metrics *m)
{
	memset(m, 0, sizeof(*m));
	sqlite3_stmt *st;
	/* the latest 'window' decisions made in this phase */
	const char *sql =
	    "SELECT count(*), sum(autonomous), sum(final IS NOT NULL), sum(coalesce(correct, 0)),"
	    " sum(autonomous = 0), sum(autonomous = 0 AND final IS NOT NULL),"
	    " sum(autonomous = 1 AND final IS NOT NULL),"
	    " sum(autonomous = 1 AND correct = 1),"
	    " avg(CASE WHEN autonomous = 0 AND final IS NOT NULL THEN decision_ms END),"
	    " sum(coalesce(decision_ms, 0)),"
	    " sum(autonomous = 1 AND correct = 0 AND (critical = 1 OR (type = 'strategy' AND"
	    " value = 'AUTOMATED_RESOLUTION')))"
	    " FROM (SELECT * FROM decisions WHERE phase = ?1 AND %s created_ms > ?5"
	    " ORDER BY created_ms DESC LIMIT ?4)";
	/* one statement per kind of scope, so that each can use its index */
	char q[1200];
	snprintf(q, sizeof(q), sql,
	         segment ? "type = ?2 AND segment = ?3 AND"
	         : type  ? "type = ?2 AND"
	                 : "");
	if (sqlite3_prepare_v2(a->db, q, -1, &st, NULL) != SQLITE_OK)
		return CSA_EIO;
	sqlite3_bind_int(st, 1, phase);
	if (type)
		sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
	if (segment)
		sqlite3_bind_text(st, 3, segment, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)cfg_num(a, "automation.window", 500));
	sqlite3_bind_int64(st, 5, evidence_since(a, type, segment));
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
	}
	sqlite3_finalize(st);
	return step == SQLITE_ROW ? CSA_OK : CSA_EIO;
}

/* Mean human decision time without AI help: PHASE_1 decisions (global). */
static double baseline_ms(struct csa_auto *a)
{
	if (a->ev.baseline_ms > 0)
		return a->ev.baseline_ms;
	sqlite3_stmt *st;
	double b = 0;
	if (sqlite3_prepare_v2(a->db,
	                       /* decision_ms is set with final, by a review */
	                       "SELECT avg(decision_ms) FROM decisions WHERE phase = 1 AND "
	                       "decision_ms IS NOT NULL",
	                       -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			b = sqlite3_column_double(st, 0);
		sqlite3_finalize(st);
	}
	a->ev.baseline_ms = b > 0 ? b : cfg_num(a, "automation.baseline_decision_ms", 60000);
	return a->ev.baseline_ms;
}

static void criterion(json_t *list, const char *name, double observed, const char *op,
                      double required, int pass, const char *fix)
{
	json_array_append_new(list, json_pack("{s:s, s:f, s:s, s:f, s:b, s:s?}", "criterion", name,
	                                      "observed", observed, "op", op, "required", required,
	                                      "pass", pass, "fix", pass ? NULL : fix));
}

/* Gate from 'phase' to phase + 1 for a scope (type/segment NULL: all). */
static json_t *evaluate_gate(struct csa_auto *a, const char *type, const char *segment, int phase)
{
	static const char *const names[] = {"",        "PHASE_1", "PHASE_2",
	                                    "PHASE_3", "PHASE_4", "PHASE_5"};
	json_t *g = json_object_get(csa_config_get(acfg(a), "automation.gates"), names[phase]);
	struct scope_metrics m;
	/* a gate never passes on what it could not read */
	int unread = scope_metrics(a, type, segment, phase, &m) != CSA_OK;
	double z = cfg_num(a, "automation.z", 1.96);
	json_t *crit = json_array();
	char fix[200];
	/* a segment needs less evidence than the whole workspace to move */
	double min_n = segment ? cfg_num(a, "automation.segment_min_decisions", 30)
	                       : csa_json_num(g, "min_decisions", 0);
	if (phase >= 5)
		min_n = 0;
	if (min_n > 0) {
		snprintf(fix, sizeof(fix), "need %.0f more decisions in %s", min_n - (double)m.n,
		         names[phase]);
		criterion(crit, "decisions", (double)m.n, ">=", min_n, (double)m.n >= min_n, fix);
	}
	double acc_lb = csa_wilson_lower((size_t)m.correct, (size_t)m.reviewed, z);
	double base = baseline_ms(a);
	if (phase == 1) {
		double cap = m.human ? (double)m.human_reviewed / (double)m.human : 0;
		double need = csa_json_num(g, "capture_rate", 1.0);
		snprintf(fix, sizeof(fix),
		         "%lld decisions still wait for a human: work the review queue",
		         (long long)(m.human - m.human_reviewed));
		criterion(crit, "human_decisions_captured", cap, ">=", need, m.human && cap >= need,
		          fix);
		need = csa_json_num(g, "accuracy", 0.8);
		snprintf(fix, sizeof(fix),
		         "AI accuracy lower bound %.3f: retrain with more history ('csa train')",
		         acc_lb);
		criterion(crit, "heldout_accuracy_lower_bound", acc_lb, ">=", need, acc_lb >= need,
		          fix);
	} else if (phase == 2) {
		double agree = m.reviewed ? (double)m.correct / (double)m.reviewed : 0;
		double need = csa_json_num(g, "agreement", 0.75);
		snprintf(fix, sizeof(fix),
		         "agreement %.3f: correct the AI in the review queue, it learns from "
		         "disagreements",
		         agree);
		criterion(crit, "agreement", agree, ">", need, agree > need, fix);
		double ratio = m.mean_decision_ms > 0 ? m.mean_decision_ms / base : 1;
		need = csa_json_num(g, "decision_time_ratio", 0.8);
		snprintf(fix, sizeof(fix),
		         "decisions take %.0f%% of the PHASE_1 time; the suggestion must save 20%%",
		         100 * ratio);
		criterion(crit, "decision_time_ratio", ratio, "<=", need,
		          m.mean_decision_ms > 0 && ratio <= need, fix);
		need = csa_json_num(g, "accuracy", 0.85);
		snprintf(fix, sizeof(fix),
		         "accuracy lower bound %.3f: more reviewed decisions or a better model",
		         acc_lb);
		criterion(crit, "accuracy_lower_bound", acc_lb, ">=", need, acc_lb >= need, fix);
	} else {
		double rate = m.n ? (double)m.autonomous / (double)m.n : 0;
		double need = csa_json_num(g, "autonomous_rate", 0.6);
		snprintf(fix, sizeof(fix),
		         "%.0f%% autonomous: thresholds fall as reviewed evidence grows; review "
		         "more decisions",
		         100 * rate);
		criterion(crit, "autonomous_rate", rate, ">=", need, rate >= need, fix);
		double alb = csa_wilson_lower((size_t)m.auto_correct, (size_t)m.auto_reviewed, z);
		need = csa_json_num(g, "autonomous_accuracy", 0.9);
		snprintf(fix, sizeof(fix),
		         "autonomous accuracy lower bound %.3f from %lld reviews: review more "
		         "autonomous decisions",
		         alb, (long long)m.auto_reviewed);
		criterion(crit, "autonomous_accuracy_lower_bound", alb, ">=", need, alb >= need,
		          fix);
		double min_rev = csa_json_num(g, "min_reviewed", 0);
		if (min_rev > 0) {
			snprintf(fix, sizeof(fix), "need %.0f more reviewed autonomous decisions",
			         min_rev - (double)m.auto_reviewed);
			criterion(crit, "reviewed_autonomous", (double)m.auto_reviewed,
			          ">=", min_rev, (double)m.auto_reviewed >= min_rev, fix);
		}
		if (phase == 3) {
			double per = m.n ? m.total_decision_ms / (double)m.n : base;
			double ratio = per / base;
			need = csa_json_num(g, "intervention_time_ratio", 0.5);
			snprintf(fix, sizeof(fix), "human time per decision is %.0f%% of PHASE_1",
			         100 * ratio);
			criterion(crit, "intervention_time_ratio", ratio, "<=", need, ratio <= need,
			          fix);
			need = csa_json_num(g, "critical_errors", 0);
			snprintf(fix, sizeof(fix),
			         "%lld critical errors: investigate them, they block this gate",
			         (long long)m.critical_errors);
			criterion(crit, "critical_errors", (double)m.critical_errors, "<=", need,
			          (double)m.critical_errors <= need, fix);
		}
		if (phase == 4) {
			int64_t open = count_i64(
			    a,
			    "SELECT count(*) FROM alerts WHERE open = 1 AND severity = 'CRITICAL'",
			    NULL, NULL);
			unread |= open < 0;
			snprintf(fix, sizeof(fix), "%lld open critical alerts: resolve them first",
			         (long long)open);
			criterion(crit, "open_critical_alerts", (double)open, "<=", 0, open == 0,
			          fix);
			criterion(crit, "anomaly_detection_running", 1, "==", 1, 1, NULL);
		}
	}
	if (unread) {
		snprintf(fix, sizeof(fix), "'%s' could not be read: %s", a->db_path,
		         sqlite3_errmsg(a->db));
		criterion(crit, "automation_db_readable", 0, "==", 1, 0, fix);
	}
	int pass = phase < 5;
	size_t i;
	json_t *c;
	json_array_foreach(crit, i, c) pass &= json_is_true(json_object_get(c, "pass"));
	json_t *blocking = json_array();
	json_array_foreach(crit, i, c) if (!json_is_true(json_object_get(c, "pass")))
	    json_array_append(blocking, json_object_get(c, "fix"));
	return json_pack("{s:s, s:s?, s:b, s:o, s:o}", "from", names[phase], "to",
	                 phase < 5 ? names[phase + 1] : NULL, "pass", pass, "criteria", crit,
	                 "blocking", blocking);
}

/* ---- phases ------------------------------------------------------------- */

static int set_workspace_phase(struct csa_auto *a, int phase, struct csa_err *err)
{
	return csa_ws_set_phase(a->ws, phase, err);
}

static json_t *segments_json(struct csa_auto *a)
{
	json_t *segs = json_array();
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(a->db, "SELECT DISTINCT type, segment FROM decisions ORDER BY 1, 2",
	                       -1, &st, NULL) != SQLITE_OK)
		return segs;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *type = (const char *)sqlite3_column_text(st, 0);
		const char *seg = (const char *)sqlite3_column_text(st, 1);
		int ph = segment_phase(a, type, seg);
		const struct thr *t = threshold_of(a, type, seg, 0);
		json_array_append_new(
		    segs,
		    json_pack(
		        "{s:s, s:s, s:i, s:o, s:f, s:I, s:I, s:f, s:f, s:f}", "decision_type", type,
		        "segment", seg, "phase", ph, "autonomy_threshold",
		        t && t->threshold <= 1 ? json_real(t->threshold) : json_null(), "readiness",
		        t ? t->r.score : 0.0, "reviewed", (json_int_t)(t ? t->reviewed : 0),
		        "readiness_reviewed", (json_int_t)(t ? t->r.n : 0), "success_rate",
		        t ? t->r.success_rate : 0.0, "consistency", t ? t->r.consistency : 0.0,
		        "confidence_accuracy", t ? t->r.confidence_accuracy : 0.0));
	}
	sqlite3_finalize(st);
	return segs;
}

int csa_auto_phase_status(struct csa_auto *a, json_t **out, struct csa_err *err)
{
	pthread_mutex_lock(&a->mu);
	int64_t open = count_i64(a, "SELECT count(*) FROM alerts WHERE open = 1", NULL, NULL);
	if (open < 0) {
		int rc = db_err(a, err, "counting the open alerts");
		pthread_mutex_unlock(&a->mu);
		return rc;
	}
	char ph[8];
	snprintf(ph, sizeof(ph), "PHASE_%d", workspace_phase(a));
	*out = json_pack("{s:s, s:o, s:I}", "phase", ph, "segments", segments_json(a),
	                 "open_alerts", (json_int_t)open);
	if (a->state_unsaved)
		json_object_set_new(*out, "state_not_saved", json_string(a->state_err.msg));
	if (a->recovery)
		json_object_set(*out, "recovery", a->recovery);
	pthread_mutex_unlock(&a->mu);
	return CSA_OK;
}

int csa_auto_phase_evaluate(struct csa_auto *a, json_t **out, struct csa_err *err)
{
	(void)err;
	pthread_mutex_lock(&a->mu);
	begin_evaluation(a);
	int w = workspace_phase(a);
	json_t *segs = json_array();
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(a->db, "SELECT DISTINCT type, segment FROM decisions ORDER BY 1, 2",
	                       -1, &st, NULL) == SQLITE_OK) {
		while (sqlite3_step(st) == SQLITE_ROW) {
			const char *type = (const char *)sqlite3_column_text(st, 0);
			const char *seg = (const char *)sqlite3_column_text(st, 1);
			json_t *g = evaluate_gate(a, type, seg, segment_phase(a, type, seg));
			json_object_set_new(g, "decision_type", json_string(type));
			json_object_set_new(g, "segment", json_string(seg));
			json_array_append_new(segs, g);
		}
		sqlite3_finalize(st);
	}
	*out =
	    json_pack("{s:o, s:o}", "workspace", evaluate_gate(a, NULL, NULL, w), "segments", segs);
	pthread_mutex_unlock(&a->mu);
	return CSA_OK;
}

/* ---- rollback points ----------------------------------------------------- */

static int copy_file(const char *from, const char *to, char sha[65], struct csa_err *err)
{
	char *buf;
	size_t len;
	int rc = csa_fs_read_all(from, (size_t)1 << 31, &buf, &len, err);
	if (rc)
		return rc;
	if (sha) {
		unsigned char md[32];
		unsigned int l = 0;
		EVP_Digest(buf, len, md, &l, EVP_sha256(), NULL);
		for (int i = 0; i < 32; i++)
			snprintf(sha + 2 * i, 3, "%02x", md[i]);
	}
	rc = csa_fs_write_atomic(to, buf, len, err);
	free(buf);
	return rc;
}

/* Files a rollback point keeps: configuration, segment phases, models. */
static int point_files(struct csa_auto *a, char names[][64], size_t max)
{
	size_t n = 0;
	snprintf(names[n++], 64, "csa.json");
	snprintf(names[n++], 64, "automation/state.json");
	char dir[PATH_SZ];
	csa_ws_path(a->ws, "models", dir, sizeof(dir));
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)) && n < max) {
		size_t l = strlen(de->d_name);
		if (l > 6 && strcmp(de->d_name + l - 6, ".model") == 0 && l < 50)
			snprintf(names[n++], 64, "models/%s", de->d_name);
	}
	if (d)
		closedir(d);
	return (int)n;
}

static int make_point(struct csa_auto *a, const char *reason, const char *who, char id[64],
                      struct csa_err *err)
{
	char ts[CSA_TS_LEN];
	int64_t now = csa_now_ms();
	csa_ts_format(now, ts);
	snprintf(id, 64, "rp-%lld-P%d", (long long)now, workspace_phase(a));
	char dir[PATH_SZ], rel[PATH_SZ], from[PATH_SZ], to[PATH_SZ];
	snprintf(rel, sizeof(rel), "rollback/%s/models", id);
	csa_ws_path(a->ws, rel, dir, sizeof(dir));
	int rc = csa_fs_mkdirs(dir, err);
	if (rc)
		return rc;
	snprintf(rel, sizeof(rel), "rollback/%s/automation", id);
	csa_ws_path(a->ws, rel, dir, sizeof(dir));
	if ((rc = csa_fs_mkdirs(dir, err)))
		return rc;
	/* the point copies the state file: it must hold what is in effect */
	if ((rc = save_state(a, err)))
		return rc;
	char names[40][64];
	int n = point_files(a, names, 40);
	json_t *files = json_object();
	for (int i = 0; i < n && rc == CSA_OK; i++) {
		char sha[65];
		csa_ws_path(a->ws, names[i], from, sizeof(from));
		snprintf(rel, sizeof(rel), "rollback/%s/%s", id, names[i]);
		csa_ws_path(a->ws, rel, to, sizeof(to));
		rc = copy_file(from, to, sha, err);
		if (rc == CSA_ENOENT) {
			rc = CSA_OK; /* nothing of that kind yet */
			continue;
		}
		json_object_set_new(files, names[i], json_string(sha));
	}
	json_t *metrics = NULL;
	if (rc == CSA_OK) {
		pthread_mutex_unlock(&a->mu);
		csa_auto_metrics(a, &metrics, NULL);
		pthread_mutex_lock(&a->mu);
	}
	json_t *man = json_pack("{s:s, s:s, s:i, s:s, s:s?, s:o, s:o}", "id", id, "created", ts,
	                        "phase", workspace_phase(a), "reason", reason, "by", who, "files",
	                        files, "metrics", metrics ? metrics : json_null());
	if (rc == CSA_OK) {
		char *s;
		size_t len;
		snprintf(rel, sizeof(rel), "rollback/%s/manifest.json", id);
		csa_ws_path(a->ws, rel, to, sizeof(to));
		if ((rc = csa_json_dump(man, 1, &s, &len, err)) == CSA_OK) {
			rc = csa_fs_write_atomic(to, s, len, err);
			free(s);
		}
	}
	if (rc == CSA_OK) {
		json_object_del(man, "metrics");
		csa_ledger_append(a->ledger, "rollback_point", NULL, man, NULL, NULL);
	}
	json_decref(man);
	return rc;
}

int csa_auto_rollback_points(struct csa_auto *a, json_t **out, struct csa_err *err)
{
	char dir[PATH_SZ];
	csa_ws_path(a->ws, "rollback", dir, sizeof(dir));
	json_t *arr = json_array();
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char path[PATH_SZ + 300];
		snprintf(path, sizeof(path), "%s/%s/manifest.json", dir, de->d_name);
		json_t *m;
		if (csa_json_load_file(path, 1 << 22, &m, NULL) == CSA_OK) {
			json_object_del(m, "metrics");
			json_array_append_new(arr, m);
		}
	}
	if (d)
		closedir(d);
	(void)err;
	*out = arr;
	return CSA_OK;
}

int csa_auto_phase_advance(struct csa_auto *a, const char *who, int force, json_t **out,
                           struct csa_err *err)
{
	pthread_mutex_lock(&a->mu);
	begin_evaluation(a);
	int w = workspace_phase(a), rc = CSA_OK;
	json_t *gate = evaluate_gate(a, NULL, NULL, w);
	if (w >= 5) {
		rc = csa_error(err, CSA_ESTATE, "already in PHASE_5");
		goto out;
	}
	if (!force && !json_is_true(json_object_get(gate, "pass"))) {
		rc = csa_error(err, CSA_ESTATE,
		               "the gate from PHASE_%d is closed (see 'csa phase evaluate'; "
		               "--force to override)",
		               w);
		goto out;
	}
	char id[64];
	if ((rc = make_point(a, "before advancing", who, id, err)))
		goto out;
	if ((rc = set_workspace_phase(a, w + 1, err)))
		goto out;
	json_t *rec = json_pack("{s:s, s:i, s:i, s:s, s:s?, s:b}", "scope", "workspace", "from", w,
	                        "to", w + 1, "rollback_point", id, "by", who, "forced",
	                        force && !json_is_true(json_object_get(gate, "pass")));
	csa_ledger_append(a->ledger, "phase_change", NULL, rec, NULL, NULL);
	json_object_set_new(rec, "gate", json_incref(gate));
	*out = rec;
out:
	json_decref(gate);
	pthread_mutex_unlock(&a->mu);
	return rc;
}

int csa_auto_phase_rollback(struct csa_auto *a, const char *point, const char *who, json_t **out,
                            struct csa_err *err)
{
	json_t *points;
	csa_auto_rollback_points(a, &points, err);
	json_t *pick = NULL;
	size_t i;
	json_t *p;
	json_array_foreach(points, i, p)
	{
		const char *id = csa_json_str(p, "id");
		if (point ? strcmp(id, point) == 0
		          : !pick || strcmp(id, csa_json_str(pick, "id")) > 0)
			pick = p;
	}
	int rc = CSA_OK;
	if (!pick) {
		rc = csa_error(err, CSA_ENOENT,
		               point ? "no rollback point '%s'" : "no rollback point%s",
		               point ? point : "");
		json_decref(points);
		return rc;
	}
	const char *id = csa_json_str(pick, "id");
	pthread_mutex_lock(&a->mu);
	/* verify every file first: a damaged point is refused, nothing changes */
	const char *name;
	json_t *sha;
	char from[PATH_SZ], rel[PATH_SZ];
	json_object_foreach(json_object_get(pick, "files"), name, sha)
	{
		char got[65];
		snprintf(rel, sizeof(rel), "rollback/%s/%s", id, name);
		csa_ws_path(a->ws, rel, from, sizeof(from));
		char *buf;
		size_t len;
		if ((rc = csa_fs_read_all(from, (size_t)1 << 31, &buf, &len, err)))
			goto out;
		unsigned char md[32];
		unsigned int l = 0;
		EVP_Digest(buf, len, md, &l, EVP_sha256(), NULL);
		free(buf);
		for (int k = 0; k < 32; k++)
			snprintf(got + 2 * k, 3, "%02x", md[k]);
		if (strcmp(got, json_string_value(sha)) != 0) {
			rc = csa_error(err, CSA_ECORRUPT,
			               "rollback point '%s': '%s' does not match its checksum", id,
			               name);
			goto out;
		}
	}
	json_object_foreach(json_object_get(pick, "files"), name, sha)
	{
		char to[PATH_SZ];
		snprintf(rel, sizeof(rel), "rollback/%s/%s", id, name);
		csa_ws_path(a->ws, rel, from, sizeof(from));
		csa_ws_path(a->ws, name, to, sizeof(to));
		if ((rc = copy_file(from, to, NULL, err)))
			goto out;
	}
	/* reload what was restored */
	if ((rc = csa_ws_config_reload(a->ws, err)))
		goto out;
	json_t *st;
	if (csa_json_load_file(a->state_path, 1 << 22, &st, NULL) == CSA_OK) {
		json_decref(a->state);
		a->state = st;
	}
	a->nthr = 0;
	if ((rc = csa_pipeline_reload_models(a->pipe, err)))
		goto out;
	json_t *rec = json_pack("{s:s, s:s, s:s?}", "rollback_point", id, "phase",
	                        csa_json_str(acfg(a)->root, "phase"), "by", who);
	csa_ledger_append(a->ledger, "rollback", NULL, rec, NULL, NULL);
	*out = rec;
out:
	pthread_mutex_unlock(&a->mu);
	json_decref(points);
	return rc;
}

/* ---- monitor and tick ------------------------------------------------------ */

/* Quality of one decision type over its recent reviewed decisions (spec
 * §7.1) and anomalies of its segments in PHASE_4+. Caller holds a->mu. */
static int monitor_type(struct csa_auto *a, const char *type, json_t *events, struct csa_err *err)
{
	/* The accuracy that matters for safety is that of the decisions the
	 * system made by itself, judged by sampled reviews. Decisions humans
	 * made are right by definition and say nothing about automation.
	 * Reviews sample the least certain autonomous decisions most, so each
	 * counts for the decisions it stands for (review_weight, 1/p): the
	 * plain share right in the sample understates the accuracy. */
	size_t win = (size_t)cfg_num(a, "automation.monitor.window", 200);
	size_t min_s = (size_t)cfg_num(a, "automation.monitor.min_sample", 30);
	char what[120];
	snprintf(what, sizeof(what), "monitoring decision type %s", type);
	sqlite3_stmt *st;
	size_t n = 0;
	double w = 0, wk = 0;
	if (sqlite3_prepare_v2(
	        a->db,
	        /* among the last 5,000 reviews: where little is autonomous the
	         * tick does not read every review the type ever had */
	        "SELECT correct, coalesce(review_weight, 1) FROM (SELECT autonomous, correct,"
	        " review_weight, created_ms FROM decisions WHERE type = ?1 AND final IS NOT NULL"
	        " ORDER BY reviewed_ms DESC LIMIT 5000) WHERE autonomous = 1 AND created_ms > ?3"
	        " LIMIT ?2",
	        -1, &st, NULL) != SQLITE_OK)
		return db_err(a, err, what);
	sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)win);
	sqlite3_bind_int64(st, 3, evidence_since(a, type, NULL));
	int step;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		double wi = sqlite3_column_double(st, 1);
		wi = wi > 0 ? wi : 1;
		n++;
		w += wi;
		wk += sqlite3_column_int(st, 0) != 0 ? wi : 0;
	}
	sqlite3_finalize(st);
	if (step != SQLITE_DONE)
		return db_err(a, err, what);
	double acc = w > 0 ? wk / w : 1;
	int64_t recent = count_i64(a,
	                           "SELECT count(*) FROM (SELECT 1 FROM decisions WHERE type = ?1 "
	                           "ORDER BY created_ms DESC LIMIT 200)",
	                           type, NULL);
	int64_t recent_auto =
	    count_i64(a,
	              "SELECT sum(autonomous) FROM (SELECT autonomous FROM "
	              "decisions WHERE type = ?1 ORDER BY created_ms DESC LIMIT 200)",
	              type, NULL);
	if (recent < 0 || recent_auto < 0)
		return db_err(a, err, what);
	double rate = recent ? (double)recent_auto / (double)recent : 0;
	if (n < min_s)
		return CSA_OK;
	/* every step below runs even after one failed (an alert the table
	 * could not take is still announced, and the demotion matters more);
	 * the first error is returned */
	int rc = CSA_OK;
	double amin = cfg_num(a, "automation.monitor.accuracy_min", 0.85);
	if (acc < amin) {
		rc =
		    raise_alert(a, "ACCURACY_DEGRADATION", "HIGH", type,
		                json_pack("{s:f, s:f, s:I, s:s}", "accuracy_rate", acc, "threshold",
		                          amin, "sample", (json_int_t)n, "recommendation",
		                          "Increase human oversight and retrain models"),
		                events, err);
		/* gradual: every autonomous segment of the type one phase down */
		if (sqlite3_prepare_v2(a->db,
		                       "SELECT DISTINCT segment FROM decisions WHERE type = ?1", -1,
		                       &st, NULL) != SQLITE_OK) {
			int r = db_err(a, rc ? NULL : err, what);
			rc = rc ? rc : r;
		} else {
			sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
			while ((step = sqlite3_step(st)) == SQLITE_ROW) {
				char key[200];
				snprintf(key, sizeof(key), "%s/%s", type,
				         sqlite3_column_text(st, 0));
				int ph = (int)csa_json_int(json_object_get(a->state, "segments"),
				                           key, 1);
				if (ph >= 3)
					set_segment_phase(a, key, ph - 1, "accuracy degradation",
					                  events);
			}
			sqlite3_finalize(st);
			if (step != SQLITE_DONE) {
				int r = db_err(a, rc ? NULL : err, what);
				rc = rc ? rc : r;
			}
		}
		/* the alert stays open until a fresh sample judges the type */
		restart_evidence(a, type);
	} else {
		rc = close_alert(a, "ACCURACY_DEGRADATION", type, NULL, err);
	}
	if (rate > cfg_num(a, "automation.monitor.overautomation_rate", 0.9) &&
	    acc < cfg_num(a, "automation.monitor.overautomation_accuracy", 0.9)) {
		int r = raise_alert(a, "OVERAUTOMATION_RISK", "CRITICAL", type,
		                    json_pack("{s:f, s:f, s:s}", "autonomous_rate", rate,
		                              "accuracy_rate", acc, "recommendation",
		                              "Reduce automation threshold immediately"),
		                    events, rc ? NULL : err);
		rc = rc ? rc : r;
		demote_type(a, type, 2, "overautomation risk", events);
	}
	return rc;
}

/* PHASE_4+ anomaly detection for a segment: confidence distribution shift
 * (PSI, older vs newer half of its recent decisions in its current phase)
 * and accuracy drop in the reviewed sample. */
static int anomalies(struct csa_auto *a, const char *type, const char *seg, int phase,
                     json_t *events, struct csa_err *err)
{
	sqlite3_stmt *st;
	double h[2][10] = {{0}};
	double acc[2] = {0}, rev[2] = {0};
	int64_t since = evidence_since(a, type, seg);
	char scope[200], what[260];
	snprintf(scope, sizeof(scope), "%s/%s", type, seg);
	snprintf(what, sizeof(what), "looking for anomalies in %s", scope);
	if (sqlite3_prepare_v2(a->db,
	                       "SELECT confidence, correct FROM decisions WHERE type = ?1 AND "
	                       "segment = ?2 AND phase = ?4 AND created_ms > ?3 "
	                       "ORDER BY created_ms DESC LIMIT 400",
	                       -1, &st, NULL) != SQLITE_OK)
		return db_err(a, err, what);
	sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, seg, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, since);
	sqlite3_bind_int(st, 4, phase);
	/* newest first; -1: not reviewed */
	double conf[400];
	int right[400];
	int n = 0, step = SQLITE_DONE;
	while (n < 400 && (step = sqlite3_step(st)) == SQLITE_ROW) {
		conf[n] = sqlite3_column_double(st, 0);
		right[n++] =
		    sqlite3_column_type(st, 1) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 1) != 0;
	}
	sqlite3_finalize(st);
	if (step != SQLITE_ROW && step != SQLITE_DONE)
		return db_err(a, err, what);
	if (n < 100)
		return CSA_OK;
	for (int i = 0; i < n; i++) {
		int half = i < n / 2 ? 1 : 0; /* 1 = recent */
		int b = (int)(conf[i] * 10);
		h[half][b < 0 ? 0 : b > 9 ? 9 : b] += 1;
		if (right[i] >= 0) {
			rev[half] += 1;
			acc[half] += right[i];
		}
	}
	/* as in monitor_type: every step runs, the first error is returned */
	int rc, r = CSA_OK;
	double psi = csa_psi(h[0], h[1], 10);
	if (psi > cfg_num(a, "automation.monitor.psi_alert", 0.25))
		rc = raise_alert(a, "ANOMALY_CONFIDENCE_SHIFT", "HIGH", scope,
		                 json_pack("{s:f}", "psi", psi), events, err);
	else
		rc = close_alert(a, "ANOMALY_CONFIDENCE_SHIFT", scope, NULL, err);
	if (rev[0] >= 20 && rev[1] >= 20) {
		double old = acc[0] / rev[0], now = acc[1] / rev[1];
		if (old - now > cfg_num(a, "automation.monitor.accuracy_drop", 0.1)) {
			r = raise_alert(a, "ANOMALY_ACCURACY_DROP", "HIGH", scope,
			                json_pack("{s:f, s:f}", "before", old, "recent", now),
			                events, rc ? NULL : err);
			int ph = (int)csa_json_int(json_object_get(a->state, "segments"), scope, 1);
			if (ph >= 3) {
				set_segment_phase(a, scope, ph - 1, "accuracy drop", events);
				restart_evidence(a, scope);
			}
		} else {
			r = close_alert(a, "ANOMALY_ACCURACY_DROP", scope, NULL, rc ? NULL : err);
		}
	}
	return rc ? rc : r;
}

/*
 * A small segment may follow its decision type: when the type's gate from
 * this phase passes over all its segments and the segment's own evidence
 * does not show it worse (the upper confidence bound of its accuracy in
 * this phase still reaches the gate's accuracy), it moves with the type.
 * Large segments are judged on their own. Caller holds a->mu.
 */
static int type_vouches(struct csa_auto *a, const char *type, const char *seg, int phase)
{
	static const char *const names[] = {"",        "PHASE_1", "PHASE_2",
	                                    "PHASE_3", "PHASE_4", "PHASE_5"};
	if (phase < 1 || phase > 2)
		return 0; /* autonomy phases need the segment's own evidence */
	int pass = -1;
	for (size_t i = 0; i < a->ev.ntype_gate; i++)
		if (a->ev.type_gate[i].phase == phase && strcmp(a->ev.type_gate[i].type, type) == 0)
			pass = a->ev.type_gate[i].pass;
	if (pass < 0) {
		json_t *tg = evaluate_gate(a, type, NULL, phase);
		pass = json_is_true(json_object_get(tg, "pass"));
		json_decref(tg);
		if (a->ev.ntype_gate < sizeof(a->ev.type_gate) / sizeof(a->ev.type_gate[0])) {
			size_t i = a->ev.ntype_gate++;
			snprintf(a->ev.type_gate[i].type, sizeof(a->ev.type_gate[i].type), "%s",
			         type);
			a->ev.type_gate[i].phase = phase;
			a->ev.type_gate[i].pass = pass;
		}
	}
	if (!pass)
		return 0;
	/* after a demotion, some fresh evidence of its own (scope_metrics
	 * counts only what came after it) ... */
	if (evidence_since(a, type, seg) > 0) {
		struct scope_metrics m;
		if (scope_metrics(a, type, seg, phase, &m) || m.reviewed < 10)
			return 0;
	}
	/* ... and, judged like readiness on the decisions it would make
	 * autonomously, not worse than the gate asks */
	const struct thr *t = threshold_of(a, type, seg, 0);
	if (!t || t->r.n < 10)
		return 0;
	json_t *g = json_object_get(csa_config_get(acfg(a), "automation.gates"), names[phase]);
	double need = csa_json_num(g, "accuracy", 0.8);
	/* upper bound: 1 - lower bound of the error rate */
	double upper = 1 - csa_wilson_lower_p(1 - t->r.success_rate, (double)t->r.n,
	                                      cfg_num(a, "automation.z", 1.96));
	return upper >= need;
}

int csa_auto_tick(struct csa_auto *a, int advance_workspace, json_t **events_out,
                  struct csa_err *err)
{
	json_t *events = json_array();
	pthread_mutex_lock(&a->mu);
	begin_evaluation(a);
	int w = workspace_phase(a), rc = CSA_OK;
	/* segments follow their own evidence up to the workspace phase */
	sqlite3_stmt *st;
	int step = SQLITE_DONE;
	if (sqlite3_prepare_v2(a->db, "SELECT DISTINCT type, segment FROM decisions", -1, &st,
	                       NULL) != SQLITE_OK) {
		rc = db_err(a, err, "listing the segments");
	} else {
		while ((step = sqlite3_step(st)) == SQLITE_ROW) {
			const char *type = (const char *)sqlite3_column_text(st, 0);
			const char *seg = (const char *)sqlite3_column_text(st, 1);
			char key[200];
			snprintf(key, sizeof(key), "%s/%s", type, seg);
			int own = (int)csa_json_int(json_object_get(a->state, "segments"), key, 1);
			if (own >= 4) {
				int r = anomalies(a, type, seg, own, events, rc ? NULL : err);
				rc = rc ? rc : r;
			}
			/* nothing is promoted once the database failed */
			if (rc || own >= w || own >= 5)
				continue;
			json_t *g = evaluate_gate(a, type, seg, own);
			if (json_is_true(json_object_get(g, "pass")))
				set_segment_phase(a, key, own + 1, "gate passed", events);
			else if (type_vouches(a, type, seg, own))
				set_segment_phase(a, key, own + 1,
				                  "decision type's gate passed, segment not worse",
				                  events);
			json_decref(g);
		}
		sqlite3_finalize(st);
		if (step != SQLITE_DONE && rc == CSA_OK)
			rc = db_err(a, err, "listing the segments");
	}
	size_t i;
	json_t *t;
	json_array_foreach(csa_config_get(acfg(a), "automation.decision_types"), i, t)
	{
		int r = monitor_type(a, json_string_value(t), events, rc ? NULL : err);
		rc = rc ? rc : r;
	}
	/* a monitor that could not see or record everything advances nothing */
	if (advance_workspace && w < 5 && rc == CSA_OK) {
		json_t *g = evaluate_gate(a, NULL, NULL, w);
		int pass = json_is_true(json_object_get(g, "pass"));
		json_decref(g);
		if (pass) {
			char id[64];
			if ((rc = make_point(a, "before advancing", "auto", id, err)) == CSA_OK &&
			    (rc = set_workspace_phase(a, w + 1, err)) == CSA_OK) {
				json_t *rec = json_pack("{s:s, s:i, s:i, s:s, s:s}", "scope",
				                        "workspace", "from", w, "to", w + 1,
				                        "rollback_point", id, "by", "auto");
				csa_ledger_append(a->ledger, "phase_change", NULL, rec, NULL, NULL);
				json_array_append_new(events,
				                      json_pack("{s:s, s:o}", "event",
				                                "phase_change", "change", rec));
			}
		}
	}
	/* a phase change or demotion that did not reach the disk (now or at
	 * an earlier save) is written again, and reported while it fails */
	if (a->state_unsaved && save_state(a, NULL) && rc == CSA_OK)
		rc = csa_error(err, a->state_err.code ? a->state_err.code : CSA_EIO,
		               "the automation state is in effect but not saved: %s",
		               a->state_err.msg);
	pthread_mutex_unlock(&a->mu);
	if (events_out)
		*events_out = events;
	else
		json_decref(events);
	return rc;
}

/* ---- metrics --------------------------------------------------------------- */

static json_t *kpi_row(struct csa_auto *a, const char *where, const char *p1)
{
	char sql[1024];
	snprintf(
	    sql, sizeof(sql),
	    "SELECT count(*), sum(autonomous), sum(final IS NOT NULL), sum(coalesce(correct,0)),"
	    " sum(autonomous = 1 AND final IS NOT NULL), sum(autonomous = 1 AND correct = 1),"
	    " avg(CASE WHEN final IS NOT NULL THEN decision_ms END),"
	    " sum(type = 'escalation'), sum(type = 'escalation' AND value <> 'NONE')"
	    " FROM decisions %s",
	    where);
	sqlite3_stmt *st;
	json_t *r = json_object();
	if (sqlite3_prepare_v2(a->db, sql, -1, &st, NULL) != SQLITE_OK)
		return r;
	if (p1)
		sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		double n = sqlite3_column_double(st, 0), aut = sqlite3_column_double(st, 1),
		       rev = sqlite3_column_double(st, 2), cor = sqlite3_column_double(st, 3),
		       arev = sqlite3_column_double(st, 4), acor = sqlite3_column_double(st, 5),
		       esc_n = sqlite3_column_double(st, 7), esc = sqlite3_column_double(st, 8);
		json_object_set_new(r, "decisions", json_integer((json_int_t)n));
		json_object_set_new(r, "automation_rate", n ? json_real(aut / n) : json_null());
		json_object_set_new(r, "accuracy", rev ? json_real(cor / rev) : json_null());
		json_object_set_new(r, "accuracy_lower_bound",
		                    json_real(csa_wilson_lower((size_t)cor, (size_t)rev, 1.96)));
		json_object_set_new(r, "autonomous_accuracy",
		                    arev ? json_real(acor / arev) : json_null());
		json_object_set_new(r, "reviewed", json_integer((json_int_t)rev));
		json_object_set_new(r, "mean_decision_seconds",
		                    sqlite3_column_type(st, 6) == SQLITE_NULL
		                        ? json_null()
		                        : json_real(sqlite3_column_double(st, 6) / 1000));
		json_object_set_new(r, "escalation_rate",
		                    esc_n ? json_real(esc / esc_n) : json_null());
	}
	sqlite3_finalize(st);
	/* calibration of reviewed decisions */
	snprintf(sql, sizeof(sql),
	         "SELECT confidence, correct FROM decisions %s%s final IS NOT NULL", where,
	         *where ? " AND" : " WHERE");
	if (sqlite3_prepare_v2(a->db, sql, -1, &st, NULL) == SQLITE_OK) {
		if (p1)
			sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
		double conf[10] = {0}, acc[10] = {0}, cnt[10] = {0}, tot = 0, ece = 0;
		while (sqlite3_step(st) == SQLITE_ROW) {
			int b = (int)(sqlite3_column_double(st, 0) * 10);
			b = b < 0 ? 0 : b > 9 ? 9 : b;
			conf[b] += sqlite3_column_double(st, 0);
			acc[b] += sqlite3_column_int(st, 1);
			cnt[b] += 1;
			tot += 1;
		}
		sqlite3_finalize(st);
		json_t *rel = json_array();
		for (int b = 0; b < 10; b++) {
			if (!cnt[b])
				continue;
			ece += fabs(acc[b] - conf[b]) / tot;
			json_array_append_new(
			    rel, json_pack("{s:f, s:f, s:f, s:I}", "bin", (b + 0.5) / 10,
			                   "confidence", conf[b] / cnt[b], "accuracy",
			                   acc[b] / cnt[b], "n", (json_int_t)cnt[b]));
		}
		json_object_set_new(r, "calibration_ece", tot ? json_real(ece) : json_null());
		json_object_set_new(r, "reliability", rel);
	}
	return r;
}

struct tk_stats {
	double n, resolved, frt_sum, frt_n, res_sum, res_n, csat_sum, csat_n;
};

static int ticket_kpi(void *ctx, const char *id, const json_t *t, const char *status)
{
	(void)id, (void)status;
	struct tk_stats *s = ctx;
	json_t *m = json_object_get(t, "sla_metrics");
	s->n++;
	s->resolved += json_is_true(json_object_get(t, "resolved"));
	double v;
	if ((v = csa_json_num(m, "first_response_time", -1)) >= 0)
		s->frt_sum += v, s->frt_n++;
	if ((v = csa_json_num(m, "resolution_time", -1)) >= 0)
		s->res_sum += v, s->res_n++;
	if ((v = csa_json_num(m, "customer_satisfaction", -1)) >= 1)
		s->csat_sum += v, s->csat_n++;
	return 0;
}

int csa_auto_metrics(struct csa_auto *a, json_t **out, struct csa_err *err)
{
	struct tk_stats ts = {0};
	int rc = csa_store_scan(a->ws->store, NULL, ticket_kpi, &ts, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&a->mu);
	json_t *overall = kpi_row(a, "", NULL);
	json_object_set_new(overall, "tickets", json_integer((json_int_t)ts.n));
	json_object_set_new(overall, "resolved_tickets", json_integer((json_int_t)ts.resolved));
	json_object_set_new(overall, "mean_first_response_minutes",
	                    ts.frt_n ? json_real(ts.frt_sum / ts.frt_n) : json_null());
	json_object_set_new(overall, "mean_resolution_minutes",
	                    ts.res_n ? json_real(ts.res_sum / ts.res_n) : json_null());
	json_object_set_new(overall, "csat",
	                    ts.csat_n ? json_real(ts.csat_sum / ts.csat_n) : json_null());
	json_t *by_phase = json_object(), *by_type = json_object(), *by_seg = json_object();
	for (int p = 1; p <= 5; p++) {
		char where[64], name[8];
		snprintf(where, sizeof(where), "WHERE phase = %d", p);
		snprintf(name, sizeof(name), "PHASE_%d", p);
		json_t *r = kpi_row(a, where, NULL);
		if (csa_json_int(r, "decisions", 0))
			json_object_set_new(by_phase, name, r);
		else
			json_decref(r);
	}
	size_t i;
	json_t *t;
	json_array_foreach(csa_config_get(acfg(a), "automation.decision_types"), i, t)
	    json_object_set_new(by_type, json_string_value(t),
	                        kpi_row(a, "WHERE type = ?1", json_string_value(t)));
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(a->db, "SELECT DISTINCT type || '/' || segment FROM decisions", -1,
	                       &st, NULL) == SQLITE_OK) {
		while (sqlite3_step(st) == SQLITE_ROW) {
			const char *key = (const char *)sqlite3_column_text(st, 0);
			json_t *r = kpi_row(a, "WHERE type || '/' || segment = ?1", key);
			json_object_del(r, "reliability");
			json_object_set_new(by_seg, key, r);
		}
		sqlite3_finalize(st);
	}
	char ph[8];
	snprintf(ph, sizeof(ph), "PHASE_%d", workspace_phase(a));
	*out = json_pack("{s:s, s:o, s:o, s:o, s:o}", "phase", ph, "overall", overall, "by_phase",
	                 by_phase, "by_decision_type", by_type, "by_segment", by_seg);
	pthread_mutex_unlock(&a->mu);
	return CSA_OK;
}

int csa_auto_alert_raise(struct csa_auto *a, const char *type, const char *severity,
                         const char *scope, json_t *detail, struct csa_err *err)
{
	pthread_mutex_lock(&a->mu);
	int rc = raise_alert(a, type, severity, scope, detail, NULL, err);
	pthread_mutex_unlock(&a->mu);
	return rc;
}

int csa_auto_alert_close(struct csa_auto *a, const char *type, const char *scope,
                         struct csa_err *err)
{
	pthread_mutex_lock(&a->mu);
	int closed, rc = close_alert(a, type, scope, &closed, err);
	if (rc == CSA_OK && closed) {
		json_t *rec = json_pack("{s:s, s:s}", "type", type, "scope", scope);
		csa_ledger_append(a->ledger, "alert_closed", NULL, rec, NULL, NULL);
		json_decref(rec);
	}
	pthread_mutex_unlock(&a->mu);
	return rc;
}

int csa_auto_alerts(struct csa_auto *a, int open_only, json_t **out, struct csa_err *err)
{
	sqlite3_stmt *st;
	pthread_mutex_lock(&a->mu);
	int rc = CSA_OK;
	if (sqlite3_prepare_v2(
	        a->db,
	        "SELECT id, created_ms, type, severity, scope, detail, open FROM alerts "
	        "WHERE ?1 = 0 OR open = 1 ORDER BY id DESC LIMIT 500",
	        -1, &st, NULL) != SQLITE_OK) {
		rc = db_err(a, err, "listing alerts");
		goto out;
	}
	sqlite3_bind_int(st, 1, open_only);
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
	sqlite3_finalize(st);
	*out = arr;
out:
	pthread_mutex_unlock(&a->mu);
	return rc;
}

struct csa_ledger *csa_auto_ledger(struct csa_auto *a)
{
	return a->ledger;
}

/* ---- open / close ------------------------------------------------------------ */

/* ---- after an unclean stop ----------------------------------------------- */

/*
 * automation.db commits without waiting for the disk (synchronous=NORMAL;
 * an fdatasync per ticket would cost about as much as the ticket's own
 * commit): a power loss can take its last transactions, the rows and
 * review tasks of tickets the store has durably committed. A crash between
 * decisions_done and the ticket's commit leaves the opposite, rows of a run
 * whose ticket never changed. T holds every decision with its automation
 * block, so after an unclean stop the tickets touched near the newest
 * surviving row are compared with automation.db and it is put back in line
 * with them, under each ticket's lock.
 *
 * Each open controller holds a lock on a marker file of its own
 * (automation/open/<random>.live) and removes it on close: a marker found
 * unlocked is a process that ended without closing.
 */
/* Rows a power loss takes are those written after automation.db's last
 * durable transaction, rows of a crashed run are the crash's last: either
 * is newer than the newest surviving row, give or take threads that
 * committed out of order, which the slack covers. */
enum { RECOVERY_SLACK_MS = 10000 };

static int mark_open(struct csa_auto *a, json_t *dead, struct csa_err *err)
{
	char dir[PATH_SZ], tmp[PATH_SZ];
	csa_ws_path(a->ws, "automation/open", dir, sizeof(dir));
	int rc = csa_fs_mkdirs(dir, err);
	if (rc)
		return rc;
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len < 6 || strcmp(de->d_name + len - 5, ".live") != 0)
			continue;
		char path[PATH_SZ];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		int fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
			json_array_append_new(dead, json_string(path));
		if (fd >= 0)
			close(fd);
	}
	if (d)
		closedir(d);
	/* locked before it gets the name others look for */
	snprintf(tmp, sizeof(tmp), "%s/new-XXXXXX", dir);
	a->open_fd = mkostemp(tmp, O_CLOEXEC);
	if (a->open_fd < 0 || flock(a->open_fd, LOCK_EX) != 0)
		return csa_error_sys(err, "cannot create an open marker in '%s'", dir);
	snprintf(a->open_marker, sizeof(a->open_marker), "%s.live", tmp);
	if (rename(tmp, a->open_marker) != 0) {
		rc = csa_error_sys(err, "cannot rename '%s'", tmp);
		unlink(tmp);
		a->open_marker[0] = 0;
		return rc;
	}
	return CSA_OK;
}

/* The review a person gave decision 'type' of T record 'rec', if any. */
static const json_t *review_in_t(const json_t *rec, const char *type)
{
	if (!json_is_true(json_object_get(rec, "human_confirmed")))
		return NULL;
	const json_t *found = NULL, *u;
	size_t i;
	json_array_foreach(
	    json_object_get(json_object_get(rec, "learning_feedback"), "pattern_updates"), i,
	    u) if (strcmp(csa_json_str(u, "decision_type") ?: "", type) == 0) found = u;
	return found;
}

/* Put one ticket's rows in line with its T (NULL: the ticket does not
 * exist) for decisions made since 'since'. Caller holds the ticket's lock
 * and a->mu, inside a transaction. */
static int recover_ticket(struct csa_auto *a, const char *id, const json_t *t, int64_t since,
                          json_t *restored, json_t *removed, struct csa_err *err)
{
	/* the decisions T has: key -> [record, type, info] */
	json_t *want = json_object(), *rec, *info;
	size_t i;
	const char *type;
	json_array_foreach(json_object_get(t, "agent_decisions"), i, rec)
	{
		json_t *blk = json_object_get(json_object_get(rec, "decision"), "automation");
		json_object_foreach(blk, type, info)
		{
			char key[200];
			snprintf(key, sizeof(key), "%s#%s", csa_json_str(info, "decision_id") ?: "",
			         type);
			json_object_set_new(want, key, json_pack("[O, s, O]", rec, type, info));
		}
	}
	sqlite3_stmt *st;
	int rc = CSA_OK;
	char prefix[CSA_ID_MAX + 2];
	snprintf(prefix, sizeof(prefix), "%s:", id);
	if (sqlite3_prepare_v2(a->db, "SELECT id, created_ms FROM decisions WHERE ticket_id = ?1",
	                       -1, &st, NULL) != SQLITE_OK) {
		json_decref(want);
		return db_err(a, err, "reading a ticket's decisions to recover them");
	}
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	json_t *orphans = json_array();
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *key = (const char *)sqlite3_column_text(st, 0);
		if (json_object_get(want, key))
			json_object_del(want, key);
		else if (sqlite3_column_int64(st, 1) >= since &&
		         strncmp(key, prefix, strlen(prefix)) == 0)
			json_array_append_new(orphans, json_string(key)); /* run never committed */
	}
	sqlite3_finalize(st);
	json_t *k;
	json_array_foreach(orphans, i, k)
	{
		for (int q = 0; rc == CSA_OK && q < 2; q++) {
			if (sqlite3_prepare_v2(a->db,
			                       q ? "DELETE FROM tasks WHERE ticket_id = ?2 AND "
			                           "decision_id = ?1"
			                         : "DELETE FROM decisions WHERE id = ?1",
			                       -1, &st, NULL) != SQLITE_OK)
				rc = db_err(a, err,
				            "removing a decision whose ticket was not committed");
			else {
				sqlite3_bind_text(st, 1, json_string_value(k), -1, SQLITE_STATIC);
				if (q)
					sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
				if (!step_done(st))
					rc = db_err(
					    a, err,
					    "removing a decision whose ticket was not committed");
				sqlite3_finalize(st);
			}
		}
		json_array_append(removed, k);
	}
	json_decref(orphans);
	const char *key;
	json_t *w;
	json_object_foreach(want, key, w)
	{
		if (rc)
			break;
		rec = json_array_get(w, 0);
		type = json_string_value(json_array_get(w, 1));
		info = json_array_get(w, 2);
		int64_t created = 0;
		if (csa_ts_parse(csa_json_str(rec, "timestamp") ?: "", &created) || created < since)
			continue; /* older than any row a power loss can take */
		json_t *dec = json_object_get(rec, "decision");
		json_t *row =
		    row_of(a, id, type, info, created, json_object_get(dec, "alternatives"));
		rc = insert_row(a, row, err);
		json_decref(row);
		/* reviewed already: the person's value, and the task done */
		const json_t *review = review_in_t(rec, type);
		for (int q = 0; rc == CSA_OK && review && q < 2; q++) {
			if (sqlite3_prepare_v2(
			        a->db,
			        q ? "UPDATE tasks SET status = 'done' WHERE ticket_id = "
			            "?6 AND decision_id = ?1"
			          : "UPDATE decisions SET final = ?2, correct = ?3, "
			            "reviewed_ms = ?4, reviewer = ?5 WHERE id = ?1",
			        -1, &st, NULL) != SQLITE_OK) {
				rc = db_err(a, err, "restoring a reviewed decision");
				break;
			}
			const char *v = csa_json_str(review, "human_value");
			sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
			if (q) {
				sqlite3_bind_text(st, 6, id, -1, SQLITE_STATIC);
			} else {
				sqlite3_bind_text(st, 2, v, -1, SQLITE_STATIC);
				sqlite3_bind_int(
				    st, 3, v && strcmp(v, csa_json_str(info, "value") ?: "") == 0);
				sqlite3_bind_int64(st, 4, csa_now_ms());
				sqlite3_bind_text(st, 5, csa_json_str(review, "by"), -1,
				                  SQLITE_STATIC);
			}
			if (!step_done(st))
				rc = db_err(a, err, "restoring a reviewed decision");
			sqlite3_finalize(st);
		}
		if (rc == CSA_OK)
			json_array_append_new(restored, json_string(key));
	}
	json_decref(want);
	return rc;
}

/* The ids of the tickets changed since 'since_ms' (every ticket when the
 * store cannot list them: recovery then checks nothing it should not). */
static int tickets_written_since(struct csa_auto *a, int64_t since_ms, json_t *ids,
                                 struct csa_err *err)
{
	char **all;
	size_t n;
	int rc = csa_store_ids(a->ws->store, &all, &n, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		int64_t newest_ns = 0;
		if (csa_store_sig(a->ws->store, all[i], &newest_ns) &&
		    newest_ns / 1000000 >= since_ms)
			json_object_set_new(ids, all[i], json_true());
	}
	csa_store_ids_free(all, n);
	return CSA_OK;
}

/* The review T holds for decision 'decision_id' ("<agent decision>#type"),
 * or NULL: matched as csa_pipeline_feedback() finds the decision. */
static const json_t *review_of(const json_t *t, const char *decision_id, const char *type)
{
	size_t i, n = strcspn(decision_id, "#");
	json_t *rec;
	const json_t *found = NULL;
	json_array_foreach(json_object_get(t, "agent_decisions"), i, rec)
	{
		const char *id = csa_json_str(json_object_get(rec, "decision"), "decision_id");
		if (id && strlen(id) == n && strncmp(id, decision_id, n) == 0)
			found = review_in_t(rec, type);
	}
	return found;
}

/* Settles one task a dead process had claimed: done with the value its
 * ticket took if the ticket took it, open again if not. Caller holds a->mu
 * and the ticket's lock. */
static int settle_claim(struct csa_auto *a, int64_t task_id, const char *decision_id,
                        const char *type, const json_t *t, struct csa_err *err)
{
	const json_t *review = t ? review_of(t, decision_id, type) : NULL;
	const char *v = csa_json_str(review, "human_value");
	sqlite3_stmt *st;
	int rc = CSA_OK;
	if (sqlite3_exec(a->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return db_err(a, err, "settling a review task claimed by a dead process");
	for (int q = 0; q < 2 && rc == CSA_OK; q++) {
		if (!v && q == 0)
			continue;
		if (sqlite3_prepare_v2(
		        a->db,
		        q == 0 ? "UPDATE decisions SET final = ?2, correct = (value IS ?2), "
		                 "reviewed_ms = ?3, reviewer = ?4 WHERE id = ?1"
		        : v    ? "UPDATE tasks SET status = 'done', value = ?2, reviewer = ?4 "
		                 "WHERE id = ?5"
		               : "UPDATE tasks SET status = 'open', claim = NULL, value = NULL, "
		                 "reviewer = NULL WHERE id = ?5",
		        -1, &st, NULL) != SQLITE_OK) {
			rc = db_err(a, err, "settling a review task claimed by a dead process");
			break;
		}
		sqlite3_bind_text(st, 1, decision_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, v, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, csa_now_ms());
		sqlite3_bind_text(st, 4, csa_json_str(review, "by"), -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, task_id);
		if (!step_done(st))
			rc = db_err(a, err, "settling a review task claimed by a dead process");
		sqlite3_finalize(st);
	}
	if (rc == CSA_OK && sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = db_err(a, err, "settling a review task claimed by a dead process");
	if (rc)
		rollback_locked(a);
	return rc;
}

/* The review tasks processes that ended without closing were deciding. */
static int settle_dead_claims(struct csa_auto *a, const json_t *dead, struct csa_err *err)
{
	size_t i;
	json_t *m;
	int rc = CSA_OK;
	json_array_foreach(dead, i, m)
	{
		json_t *claims = json_array();
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(a->db,
		                       "SELECT id, ticket_id, decision_id, type FROM tasks WHERE "
		                       "status = 'deciding' AND claim = ?1",
		                       -1, &st, NULL) != SQLITE_OK) {
			json_decref(claims);
			return db_err(a, err, "reading review tasks claimed by a dead process");
		}
		sqlite3_bind_text(st, 1, json_string_value(m), -1, SQLITE_STATIC);
		while (sqlite3_step(st) == SQLITE_ROW)
			json_array_append_new(
			    claims,
			    json_pack("[I, s, s, s]", (json_int_t)sqlite3_column_int64(st, 0),
			              sqlite3_column_text(st, 1), sqlite3_column_text(st, 2),
			              sqlite3_column_text(st, 3)));
		sqlite3_finalize(st);
		size_t k;
		json_t *c;
		json_array_foreach(claims, k, c)
		{
			const char *id = json_string_value(json_array_get(c, 1));
			struct csa_lock *lk;
			if ((rc = csa_store_lock(a->ws->store, id, &lk, err)))
				break;
			struct csa_ticket tk;
			int lrc = csa_store_load_locked(a->ws->store, id, &tk, err);
			if (lrc == CSA_OK || lrc == CSA_ENOENT) {
				pthread_mutex_lock(&a->mu);
				rc = settle_claim(a, json_integer_value(json_array_get(c, 0)),
				                  json_string_value(json_array_get(c, 2)),
				                  json_string_value(json_array_get(c, 3)),
				                  lrc ? NULL : tk.t, err);
				pthread_mutex_unlock(&a->mu);
			} else {
				rc = lrc;
			}
			if (lrc == CSA_OK)
				csa_ticket_release(&tk);
			csa_store_unlock(a->ws->store, lk);
			if (rc)
				break;
		}
		json_decref(claims);
		if (rc)
			break;
	}
	return rc;
}

/* After an unclean stop: every ticket written, or decided on in
 * automation.db, since shortly before its newest decision is put back in
 * line with its T. The ledger records what changed. */
static int recover(struct csa_auto *a, struct csa_err *err)
{
	/* unreadable (-1): every ticket is checked */
	int64_t since =
	    count_i64(a, "SELECT coalesce(max(created_ms), 0) FROM decisions", NULL, NULL) -
	    RECOVERY_SLACK_MS;
	json_t *ids = json_object();
	int rc = tickets_written_since(a, since, ids, err);
	if (rc) {
		json_decref(ids);
		return rc;
	}
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(a->db,
	                       "SELECT DISTINCT ticket_id FROM decisions WHERE created_ms >= ?1",
	                       -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, since);
		while (sqlite3_step(st) == SQLITE_ROW)
			json_object_set_new(ids, (const char *)sqlite3_column_text(st, 0),
			                    json_true());
		sqlite3_finalize(st);
	}
	json_t *restored = json_array(), *removed = json_array(), *v;
	const char *id;
	json_object_foreach(ids, id, v)
	{
		struct csa_lock *lk;
		if (csa_id_check(id, strlen(id), NULL) ||
		    csa_store_lock(a->ws->store, id, &lk, NULL))
			continue; /* not a ticket of this store */
		struct csa_ticket tk;
		struct csa_err lerr = {0};
		int lrc = csa_store_load_locked(a->ws->store, id, &tk, &lerr);
		if (lrc == CSA_OK || lrc == CSA_ENOENT) {
			pthread_mutex_lock(&a->mu);
			/* the write lock first: another process may be committing */
			if (sqlite3_exec(a->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
				rc = db_err(a, err, "recovering after an unclean stop");
			else if ((rc = recover_ticket(a, id, lrc ? NULL : tk.t, since, restored,
			                              removed, err)) == CSA_OK &&
			         sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
				rc = db_err(a, err, "recovering after an unclean stop");
			if (rc)
				rollback_locked(a);
			pthread_mutex_unlock(&a->mu);
		}
		if (lrc == CSA_OK)
			csa_ticket_release(&tk);
		csa_store_unlock(a->ws->store, lk);
		if (rc)
			break;
	}
	if (rc == CSA_OK && (json_array_size(restored) || json_array_size(removed))) {
		char ts[CSA_TS_LEN];
		json_t *r = json_pack("{s:s, s:I, s:O, s:O}", "since", csa_ts_format(since, ts),
		                      "tickets_checked", (json_int_t)json_object_size(ids),
		                      "restored", restored, "removed", removed);
		csa_ledger_append(a->ledger, "recovery", NULL, r, NULL, NULL);
		json_decref(r);
	}
	a->recovery = rc == CSA_OK ? json_pack("{s:I, s:o, s:o}", "tickets_checked",
	                                       (json_int_t)json_object_size(ids), "restored",
	                                       restored, "removed", removed)
	                           : NULL;
	if (rc) {
		json_decref(restored);
		json_decref(removed);
	}
	json_decref(ids);
	return rc;
}

int csa_auto_open(struct csa_ws *ws, struct csa_pipeline *p, struct csa_auto **out,
                  struct csa_err *err)
{
	struct csa_auto *a = calloc(1, sizeof(*a));
	if (!a)
		return csa_error(err, CSA_ENOMEM,
		                 "out of memory opening the automation controller");
	a->ws = ws;
	a->pipe = p;
	a->open_fd = -1;
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->decided, NULL);
	if (!(a->cfg = calloc(1, sizeof(*a->cfg)))) {
		free(a);
		return csa_error(err, CSA_ENOMEM,
		                 "out of memory opening the automation controller");
	}
	pthread_mutex_init(&a->cfg->mu, NULL);
	char path[PATH_SZ];
	int rc = CSA_OK;
	csa_ws_path(ws, "automation", path, sizeof(path));
	if ((rc = csa_fs_mkdirs(path, err)))
		goto fail;
	csa_ws_path(ws, "automation/state.json", a->state_path, sizeof(a->state_path));
	rc = csa_json_load_file(a->state_path, 1 << 22, &a->state, err);
	if (rc == CSA_ENOENT) {
		a->state = json_pack("{s:{}}", "segments");
		rc = CSA_OK;
	}
	if (rc)
		goto fail;
	if (!json_is_object(json_object_get(a->state, "segments")))
		json_object_set_new(a->state, "segments", json_object());
	csa_ws_path(ws, "automation.db", a->db_path, sizeof(a->db_path));
	snprintf(path, sizeof(path), "%s", a->db_path);
	if (sqlite3_open_v2(path, &a->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
	                    NULL) != SQLITE_OK ||
	    sqlite3_busy_timeout(a->db, 10000) != SQLITE_OK || add_columns(a->db) != SQLITE_OK ||
	    sqlite3_exec(a->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK) {
		rc = csa_error(err, CSA_EIO, "cannot open '%s': %s", path,
		               a->db ? sqlite3_errmsg(a->db) : "out of memory");
		goto fail;
	}
	if ((rc = csa_walckpt_start(a->db, path, 1000, &a->ckpt, err)))
		goto fail;
	csa_ws_path(ws, "audit/ledger.jsonl", a->ledger_path, sizeof(a->ledger_path));
	if ((rc = csa_ledger_open(a->ledger_path, &a->ledger, err)))
		goto fail;
	/* a failure alert left open by an earlier run closes at the next
	 * append that succeeds */
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(a->db,
	                       "SELECT 1 FROM alerts WHERE open = 1 AND type = "
	                       "'AUDIT_LEDGER_FAILURE'",
	                       -1, &st, NULL) == SQLITE_OK) {
		a->ledger_failing = sqlite3_step(st) == SQLITE_ROW;
		sqlite3_finalize(st);
	}
	/* markers of processes that ended without closing go once their
	 * tickets are recovered, so a recovery cut short runs again */
	json_t *dead = json_array(), *m;
	size_t i;
	if ((rc = mark_open(a, dead, err)) == CSA_OK && json_array_size(dead) &&
	    (rc = recover(a, err)) == CSA_OK)
		rc = settle_dead_claims(a, dead, err);
	json_array_foreach(dead, i, m) if (rc == CSA_OK) unlink(json_string_value(m));
	json_decref(dead);
	if (rc)
		goto fail;
	struct csa_flow_hooks h = {.ctx = a,
	                           .on_decision = on_decision,
	                           .decisions_done = decisions_done,
	                           .run_abandoned = run_abandoned};
	csa_pipeline_set_hooks(p, &h);
	*out = a;
	return CSA_OK;
fail:
	csa_auto_close(a);
	return rc;
}

void csa_auto_close(struct csa_auto *a)
{
	if (!a)
		return;
	if (a->pipe)
		csa_pipeline_set_hooks(a->pipe, NULL);
	decisions_done(a, NULL); /* rows of a run cut short on this thread */
	csa_ledger_close(a->ledger);
	for (int k = 0; k < KEPT_COUNT; k++)
		sqlite3_finalize(a->kept[k]);
	csa_walckpt_stop(a->ckpt);
	sqlite3_close(a->db);
	if (a->open_marker[0])
		unlink(a->open_marker);
	if (a->open_fd >= 0)
		close(a->open_fd);
	json_decref(a->recovery);
	json_decref(a->state);
	free(a->thr);
	pthread_mutex_destroy(&a->mu);
	pthread_cond_destroy(&a->decided);
	for (size_t i = 0; i < a->cfg->nold; i++)
		csa_config_unref(a->cfg->old[i]);
	free(a->cfg->old);
	csa_config_unref(a->cfg->now);
	pthread_mutex_destroy(&a->cfg->mu);
	free(a->cfg);
	free(a);
}
