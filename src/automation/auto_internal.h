/*
 * Private to src/automation/: the controller's state (struct csa_auto) and
 * the internals its jobs share. control.h is the public API; each job
 * lives in its own file:
 *
 *   control.c          open/close, configuration snapshot, segment phases
 *                      of automation/state.json, labels of a decision type
 *   auto_db.c          automation.db: schema, kept statements, row writes
 *   auto_intake.c      a pipeline run's decisions (the flow hooks)
 *   auto_thresholds.c  autonomy thresholds and readiness
 *   auto_review.c      the review queue and a person's decision
 *   auto_alerts.c      alerts and the ledger's health
 *   auto_gates.c       phase gates
 *   auto_phases.c      phase status, changes and the workspace's advance
 *   auto_rollback.c    rollback points
 *   auto_monitor.c     the quality monitor and the periodic tick
 *   auto_kpi.c         KPIs
 *   auto_recovery.c    recovery after an unclean stop
 *
 * Unless a function says otherwise, its caller holds a->mu.
 */
#ifndef CSA_AUTOMATION_AUTO_INTERNAL_H
#define CSA_AUTOMATION_AUTO_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include "automation/control.h"
#include "automation/settings.h"
#include "automation/stats.h"
#include "base/config.h"
#include "base/err.h"

struct csa_flow_decision;
struct csa_outbox;

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

/* Statements run for every decision, prepared once (see auto_kept()). */
enum {
	KEPT_REVIEWED,
	KEPT_REVIEWED_TYPE,
	KEPT_REVIEWED_AUTO,
	KEPT_INSERT_DECISION,
	KEPT_INSERT_TASK,
	KEPT_COUNT
};

/* The configurations the controller has read: see auto_cfg(). */
struct auto_snap {
	const struct csa_config *cfg; /* one reference held */
	struct csa_auto_settings set; /* read from cfg */
};
struct cfg_seen {
	pthread_mutex_t mu;
	struct auto_snap *now;  /* the newest; read first at open */
	struct auto_snap **old; /* earlier ones, released at close */
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
	/* outbox.db, where alerts wait for the webhook (auto_alerts.c) */
	struct csa_outbox *outbox;
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
	int64_t reviews; /* reviews since open, for threshold refresh */
	/* csa_auto_counts(): written under mu, read without it */
	struct {
		_Atomic int64_t open_tasks, decisions, reviews, open_alerts;
	} n;
	sqlite3_stmt *kept[KEPT_COUNT]; /* statements of every decision, under mu */
	/* Within one evaluation (a tick, `phase evaluate`, an advance) the
	 * PHASE_1 baseline and each type's own gate are computed once, not
	 * once per segment. Reset by auto_begin_evaluation(); under mu. */
	struct {
		double baseline_ms; /* 0: not yet */
		struct {
			char type[64];
			int phase, pass;
		} type_gate[32];
		size_t ntype_gate;
	} ev;
};

/* control.c */
void auto_begin_evaluation(struct csa_auto *a);
const struct csa_config *auto_cfg(const struct csa_auto *a);
/* The settings of the configuration in effect: valid until close. */
const struct csa_auto_settings *auto_settings(const struct csa_auto *a);
int auto_workspace_phase(const struct csa_auto *a);
int auto_type_tracked(const struct csa_auto *a, const char *type);
int auto_segment_phase(const struct csa_auto *a, const char *type, const char *segment);
int auto_save_state(struct csa_auto *a, struct csa_err *err);
int64_t auto_evidence_since(const struct csa_auto *a, const char *type, const char *segment);
void auto_restart_evidence(struct csa_auto *a, const char *scope);
int auto_valid_label(const struct csa_auto *a, const char *type, const char *v);
json_t *auto_labels_of(const struct csa_auto *a, const char *type);

/* A threshold in JSON: the number, or null for CSA_NO_THRESHOLD. */
static inline json_t *auto_threshold_json(double t)
{
	return csa_has_threshold(t) ? json_real(t) : json_null();
}

/* A threshold read from JSON: anything but a number in [0, 1] (null; -1
 * and 2 in records written before one "no threshold") is none. */
static inline double auto_threshold_from_json(const json_t *v)
{
	double t = json_is_number(v) ? json_number_value(v) : -1;
	return t >= 0 && csa_has_threshold(t) ? t : CSA_NO_THRESHOLD;
}

/* auto_db.c */
extern const char auto_schema_sql[];
int auto_add_columns(sqlite3 *db);
int auto_db_err(struct csa_auto *a, struct csa_err *err, const char *what);
struct csa_outcome *auto_outcomes(struct csa_auto *a, const char *type, const char *segment,
                                  size_t limit, size_t *n);
int64_t auto_count_i64(struct csa_auto *a, const char *sql, const char *p1, const char *p2);
sqlite3_stmt *auto_kept(struct csa_auto *a, int k, const char *sql);
int auto_step_done(sqlite3_stmt *st);
int auto_insert_row(struct csa_auto *a, const json_t *r, struct csa_err *err);
void auto_rollback_locked(struct csa_auto *a);

/* auto_kpi.c: the counters of csa_auto_counts() counted in automation.db
 * (those it cannot count keep their value); CSA_OK or the first error. */
int auto_counts_reload(struct csa_auto *a, struct csa_err *err);

/* auto_thresholds.c */
const struct thr *auto_threshold_of(struct csa_auto *a, const char *type, const char *segment,
                                    int critical);

/* auto_intake.c: the flow hooks (flow/pipeline.h) */
void *auto_begin_run(void *ctx);
int auto_on_decision(void *ctx, void *run, const struct csa_flow_decision *d, json_t *audit);
int auto_decisions_done(void *ctx, void *run, struct csa_err *err);
void auto_run_abandoned(void *ctx, void *run, const char *ticket_id, const char *const *ids,
                        size_t n, const struct csa_err *why);
void auto_end_run(void *ctx, void *run);
json_t *auto_row_of(struct csa_auto *a, const char *ticket_id, const char *type, const json_t *info,
                    int64_t created_ms, const json_t *alternatives);

/* auto_alerts.c. An alert's row in the alerts table (id 0: not written)
 * and its time; the two make its outbox key. */
struct alert_id {
	int64_t id, created_ms;
};
int auto_record_alert(struct csa_auto *a, const char *type, const char *severity, const char *scope,
                      const json_t *detail, int *is_new, struct alert_id *aid, struct csa_err *err);
void auto_announce_alert(struct csa_auto *a, const struct alert_id *aid, const char *type,
                         const char *severity, const char *scope, json_t *detail, json_t *events);
int auto_raise_alert(struct csa_auto *a, const char *type, const char *severity, const char *scope,
                     json_t *detail, json_t *events, struct csa_err *err);
int auto_close_alert(struct csa_auto *a, const char *type, const char *scope, int *closed,
                     struct csa_err *err);
void auto_ledger_health_locked(struct csa_auto *a, int rc, const struct csa_err *err);

/* auto_phases.c */
void auto_set_segment_phase(struct csa_auto *a, const char *key, int phase, const char *why,
                            json_t *events);
void auto_demote_type(struct csa_auto *a, const char *type, int to, const char *why,
                      json_t *events);
int auto_set_workspace_phase(struct csa_auto *a, int phase, struct csa_err *err);

/* auto_gates.c */

json_t *auto_evaluate_gate(struct csa_auto *a, const char *type, const char *segment, int phase);
int auto_type_vouches(struct csa_auto *a, const char *type, const char *seg, int phase);

/* auto_rollback.c */
int auto_make_point(struct csa_auto *a, const char *reason, const char *who, char id[64],
                    struct csa_err *err);

/* auto_recovery.c: at open, before the hooks are installed */
int auto_mark_open(struct csa_auto *a, json_t *dead, struct csa_err *err);
int auto_recover(struct csa_auto *a, struct csa_err *err);
int auto_settle_dead_claims(struct csa_auto *a, const json_t *dead, struct csa_err *err);

/*
 * ---- the store: auto_sqlite.c ------------------------------------------
 *
 * Everything that reads or writes automation.db (the decision log, review
 * tasks, alerts) goes through these functions, named for what the jobs
 * need, not for SQL: a second backend (PostgreSQL) is a second file with
 * the same functions. The caller holds a->mu. A function returning an int
 * status leaves "what failed and why" in err; one returning a count gives
 * -1 when the store cannot answer (auto_db_errmsg() says why).
 */

/* The last error of the store, for a message. */
const char *auto_db_errmsg(struct csa_auto *a);

/* The newest 'window' decisions of a scope (type and segment NULL: all)
 * made in 'phase' after 'since' (ms), summed for its gate. */
struct scope_metrics {
	int64_t n, autonomous, reviewed, correct, human, human_reviewed, auto_reviewed,
	    auto_correct, critical_errors, open_tasks_decide;
	double mean_decision_ms, total_decision_ms;
};

int auto_db_scope_metrics(struct csa_auto *a, const char *type, const char *segment, int phase,
                          int64_t window, int64_t since, struct scope_metrics *m);
/* Mean time a person took on a reviewed PHASE_1 decision (0: none). */
double auto_db_baseline_ms(struct csa_auto *a);
/* Open alerts (of 'severity', NULL: any). */
int64_t auto_db_open_alerts(struct csa_auto *a, const char *severity);

/* The segments with decisions, into *out (a new array, also on failure,
 * then with what could be read): [type, segment] pairs in the store's
 * order (AUTO_SEGS_ANY_ORDER) or sorted, or "type/segment" keys. */
enum auto_seg_order { AUTO_SEGS_ANY_ORDER, AUTO_SEGS_SORTED, AUTO_SEGS_KEYS };
int auto_db_segments(struct csa_auto *a, enum auto_seg_order order, const char *what, json_t **out,
                     struct csa_err *err);
/* The segments of 'type' with decisions (strings), as above. */
int auto_db_segments_of(struct csa_auto *a, const char *type, const char *what, json_t **out,
                        struct csa_err *err);

/* The reviewed autonomous decisions of 'type' made after 'since' (at most
 * 'max', newest reviews first): how many (*n), their weight (*w) and the
 * weight of the right ones (*wk). */
int auto_db_reviewed_autonomous_sample(struct csa_auto *a, const char *type, size_t max,
                                       int64_t since, size_t *n, double *w, double *wk,
                                       const char *what, struct csa_err *err);
/* Of the newest 'last' decisions of 'type': how many, how many autonomous. */
int auto_db_recent_autonomy(struct csa_auto *a, const char *type, int last, int64_t *n,
                            int64_t *autonomous, const char *what, struct csa_err *err);
/* The newest decisions (at most 'max') of a segment in 'phase' made after
 * 'since': confidence, and right[i] 1/0 when reviewed, -1 when not. */
int auto_db_recent_outcomes(struct csa_auto *a, const char *type, const char *segment, int phase,
                            int64_t since, size_t max, double *confidence, int *right, size_t *n,
                            const char *what, struct csa_err *err);

/* KPIs ({"decisions", "automation_rate", "accuracy", ...}) of the
 * decisions in 'phase' (0: any), of 'type', of the segment 'segment_key'
 * ("type/segment"), or of all when none is given. */
json_t *auto_db_kpi(struct csa_auto *a, int phase, const char *type, const char *segment_key);
/* The counters of csa_auto_counts() counted (-1 for one it cannot count). */
int auto_db_counts(struct csa_auto *a, struct csa_auto_counts *c, struct csa_err *err);

/* Whether an alert of 'type' and 'scope' (NULL: any scope) is open. */
int auto_db_alert_is_open(struct csa_auto *a, const char *type, const char *scope, int *open,
                          const char *what, struct csa_err *err);
/* A new open alert; *id its id (0 when not written). */
int auto_db_insert_alert(struct csa_auto *a, int64_t created_ms, const char *type,
                         const char *severity, const char *scope, const json_t *detail, int64_t *id,
                         const char *what, struct csa_err *err);
/* Close the open alerts of 'type' and 'scope'; *n how many. */
int auto_db_close_alerts(struct csa_auto *a, const char *type, const char *scope, int64_t *n,
                         const char *what, struct csa_err *err);
/* The newest alerts (open ones only, or all), at most 'limit', as
 * csa_auto_alerts() gives them. */
int auto_db_alert_list(struct csa_auto *a, int open_only, size_t limit, json_t **out,
                       struct csa_err *err);

/* Reviews of a scope (type; segment unless NULL) after 'after_ms': *n how
 * many and, when any, *newest_ms the newest one's time (else untouched).
 * Run for every decision: cheap, over an index of reviews. */
int auto_db_reviews_after(struct csa_auto *a, const char *type, const char *segment,
                          int64_t after_ms, int64_t *n, int64_t *newest_ms);

/* A run's decision rows (auto_row_of(), with their review tasks) in one
 * transaction: all or none. */
int auto_db_record_decisions(struct csa_auto *a, const json_t *rows, struct csa_err *err);
/* The rows and tasks of decisions ids[0..n) of a ticket, gone in one
 * transaction (all or none); gone[0] and gone[1] grow by the decisions and
 * tasks removed. CSA_OK or CSA_EIO. */
int auto_db_forget_decisions(struct csa_auto *a, const char *ticket_id, const char *const *ids,
                             size_t n, int64_t gone[2]);
/* Reviewed autonomous decisions of a segment, counted up to 'limit' (0
 * when the store cannot answer). Run for every autonomous decision. */
int64_t auto_db_reviewed_autonomous(struct csa_auto *a, const char *type, const char *segment,
                                    int64_t limit);

/* A unit of work: begin ('write_now': take the write lock at once, as a
 * recovery must before it reads), commit; auto_rollback_locked() undoes
 * one that failed. */
int auto_db_begin(struct csa_auto *a, int write_now, const char *what, struct csa_err *err);
int auto_db_commit(struct csa_auto *a, const char *what, struct csa_err *err);

/* Review tasks as csa_auto_review_list() and its kin give them: by status
 * (NULL: any; open first, most valuable first), a ticket's open ones, the
 * most valuable open one due at 'now_ms' (*out NULL when none). */
int auto_db_task_list(struct csa_auto *a, const char *status, size_t limit, json_t **out,
                      struct csa_err *err);
int auto_db_ticket_tasks(struct csa_auto *a, const char *ticket_id, json_t **out,
                         struct csa_err *err);
int auto_db_next_task(struct csa_auto *a, int64_t now_ms, json_t **out, struct csa_err *err);

/* What review_decide reads of a task and of its decision. */
struct task_claim {
	int64_t id, created;
	char decision_id[160], ticket[80], type[32], segment[160], ai_value[160], status[16],
	    value[160], reviewer[160];
	int critical, autonomous, phase;
};
/* Task t->id and its decision into *t (CSA_ENOENT: no such task). */
int auto_db_read_claim(struct csa_auto *a, struct task_claim *t, struct csa_err *err);
/* Claim an open task for 'value' by 'who' under 'claim' (the controller's
 * open marker) in one conditional step: 1 if it got it, 0 if the task was
 * not open, < 0 on error. */
int auto_db_claim_task(struct csa_auto *a, int64_t task_id, const char *claim, const char *value,
                       const char *who, struct csa_err *err);
/* Give up a claim: the task is open again (best effort). */
void auto_db_release_claim(struct csa_auto *a, int64_t task_id, const char *claim);
/* The person's decision on the claimed task's decision, and the task done;
 * CSA_ESTATE when the claim was lost. Inside a unit of work. */
int auto_db_record_review(struct csa_auto *a, const struct task_claim *t, const char *claim,
                          const char *value, int correct, const char *who, int64_t decision_ms,
                          struct csa_err *err);
/* Whether a person confirmed the ticket's priority as CRITICAL. */
int auto_db_ticket_confirmed_critical(struct csa_auto *a, const char *ticket);
/* Every decision of the ticket counted as one on a critical ticket. */
int auto_db_mark_ticket_critical(struct csa_auto *a, const char *ticket, struct csa_err *err);
/* The ticket's autonomous decisions, but 'except', that a review reversed
 * while the ticket did not count as critical: [{"id", "type", "segment",
 * "value", "final"}] (a new array, empty on failure). */
int auto_db_reversed_autonomous(struct csa_auto *a, const char *ticket, const char *except,
                                json_t **found, struct csa_err *err);

#endif
