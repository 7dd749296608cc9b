/*
 * Private to src/automation/: the controller's state (struct csa_auto) and
 * the internals its jobs share. control.h is the public API; each job
 * lives in its own file:
 *
 *   control.c          open/close, configuration and settings snapshot,
 *                      segment phases in memory, labels of a decision type
 *   settings.c         the typed settings (settings.h), one table of defaults
 *   auto_store.h       the store's operations: decision log, review tasks,
 *                      alerts, segment phases
 *   auto_sqlite.c      the store on SQLite: automation.db, state.json
 *   auto_pg.c          the store in PostgreSQL: the tables csa_auto_*
 *   auto_intake.c      a pipeline run's decisions (the flow hooks)
 *   auto_thresholds.c  autonomy thresholds and readiness
 *   auto_review.c      the review queue and a person's decision
 *   auto_alerts.c      alerts and the ledger's health
 *   auto_gates.c       phase gates
 *   auto_phases.c      phase status, changes and the workspace's advance
 *   auto_rollback.c    rollback points
 *   auto_monitor.c     the quality monitor and the periodic tick
 *   auto_kpi.c         KPIs
 *   ticket_kpis.c      the tickets' own KPIs, kept between scans
 *   auto_recovery.c    recovery after an unclean stop
 *
 * Unless a function says otherwise, its caller holds a->mu.
 */
#ifndef CSA_AUTOMATION_AUTO_INTERNAL_H
#define CSA_AUTOMATION_AUTO_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "automation/auto_store.h"
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
	/* the tick writes as this leader of "tick" (csa_auto_set_tick_fence);
	 * NULL: unfenced */
	struct csa_leader *tick_fence;
	struct cfg_seen *cfg;
	struct csa_pipeline *pipe;
	/* the store through its backend: auto_sqlite_ops (automation.db) or
	 * auto_pg_ops (the workspace's database) */
	const struct auto_store_ops *ops;
	struct auto_store *store;
	pthread_mutex_t mu;
	pthread_cond_t decided; /* a claimed review task was closed or released */
	struct csa_ledger *ledger;
	struct csa_ticket_kpis *kpis; /* the tickets' own KPIs (auto_kpi.c) */
	/* outbox.db, where alerts wait for the webhook (auto_alerts.c) */
	struct csa_outbox *outbox;
	/* the last append failed: AUDIT_LEDGER_FAILURE is open; written under mu */
	_Atomic int ledger_failing;
	char db_path[PATH_SZ];
	char open_marker[PATH_SZ]; /* automation/open/<random>.live, locked while open */
	/* what this controller claims review tasks under: the open marker, or
	 * host:pid:marker where the store keeps claims' liveness (hold_claim) */
	char claim[PATH_SZ + 320];
	int open_fd;
	json_t *recovery; /* what the recovery after an unclean stop did, or NULL */
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
		/* each type's held-out measurement at training (n 0: none) */
		struct {
			char type[64];
			size_t correct, n;
		} heldout[32];
		size_t nheldout;
	} ev;
};

/* control.c */
void auto_begin_evaluation(struct csa_auto *a);
const struct csa_config *auto_cfg(const struct csa_auto *a);
/* The settings of the configuration in effect: valid until close. */
const struct csa_auto_settings *auto_settings(const struct csa_auto *a);
int auto_workspace_phase(const struct csa_auto *a);
int auto_type_tracked(const struct csa_auto *a, const char *type);
/* The phase a segment decides in: its own, at most the workspace's and
 * its cap. */
int auto_segment_phase(const struct csa_auto *a, const char *type, const char *segment);
/* The highest phase an admin allows a segment (csa_auto_phase_cap): the
 * lower of its own cap and its type's; 5 when neither is capped. */
int auto_phase_cap(const struct csa_auto *a, const char *type, const char *segment);
int auto_save_state(struct csa_auto *a, struct csa_err *err);
/* Save a->state as it is, its caps included (csa_auto_phase_cap). */
int auto_write_state(struct csa_auto *a, struct csa_err *err);
/* Take up the caps the store holds (set by any process). */
void auto_refresh_caps(struct csa_auto *a);
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
/* An audit record of the controller's own ('type', about 'ticket_id' or
 * NULL): through the store while a tick is fenced (ops->audit), so a node
 * that lost the tick writes none; else appended to the ledger. */
void auto_audit(struct csa_auto *a, const char *type, const char *ticket_id,
                const json_t *payload);

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

#endif
