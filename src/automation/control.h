/*
 * The automation controller (spec §4, §7, §8.2): per decision type
 * (category, priority, strategy, escalation) and segment (the ticket's
 * category) it decides whether an AI decision is applied autonomously or
 * goes to a human, keeps the review queue, learns from every human
 * decision, evaluates phase gates, advances and rolls back phases, watches
 * quality and falls back by itself when quality drops. Everything it does
 * is appended to the audit ledger.
 *
 * State: the decision log, review tasks and alerts in the controller's
 * store (auto_store.h; automation.db, SQLite WAL); automation/state.json
 * the phase of each segment; csa.json "phase" the workspace phase, the
 * ceiling for every segment. Alerts for the webhook wait in the outbox
 * (outbound/outbox.h) until the server delivers them.
 *
 * Phases per segment: 1 the AI proposes silently, humans decide; 2 humans
 * decide with the proposal shown; 3 autonomous when the calibrated
 * confidence clears the segment's threshold, with sampled delayed review;
 * 4 as 3 plus anomaly detection; 5 autonomous with sampled review.
 *
 * Thread-safe.
 */
#ifndef CSA_AUTOMATION_CONTROL_H
#define CSA_AUTOMATION_CONTROL_H

#include <jansson.h>
#include <stdint.h>
#include "base/err.h"

struct csa_ws;
struct csa_pipeline;
struct csa_auto;

/* Open over a workspace and install the pipeline hooks. */
int csa_auto_open(struct csa_ws *ws, struct csa_pipeline *p, struct csa_auto **out,
                  struct csa_err *err);
void csa_auto_close(struct csa_auto *a);

/* Review tasks: {"task_id", "ticket_id", "decision_id", "decision_type",
 * "segment", "kind" ("decide" | "audit"), "status", "suggestion"
 * (null in PHASE_1), "confidence", "alternatives", "labels", "due",
 * "created", "priority_score"}. */
int csa_auto_review_list(struct csa_auto *a, const char *status, size_t limit, json_t **out,
                         struct csa_err *err);
/* Open tasks of one ticket. */
int csa_auto_review_for_ticket(struct csa_auto *a, const char *ticket_id, json_t **out,
                               struct csa_err *err);
/* The most valuable open task (or *out = NULL when there is none). */
int csa_auto_review_next(struct csa_auto *a, json_t **out, struct csa_err *err);
/* A human decides a task. decision_ms: time taken to decide (< 0: unknown,
 * then measured from the task's creation). */
int csa_auto_review_decide(struct csa_auto *a, int64_t task_id, const char *value, const char *who,
                           const char *notes, int64_t decision_ms, json_t **out,
                           struct csa_err *err);

/* A person's change of a ticket's decision of 'type' (category,
 * priority, ...) from the ticket: decides its open review task when there
 * is one, or waits for the one a reviewer is deciding (as
 * csa_auto_review_decide, CSA_ECONFLICT with the winner included), else records
 * a correction of the newest decision (ticket, model, decision log,
 * ledger). *out: the record, as a review's. CSA_ENOENT: no such decision. */
int csa_auto_correct(struct csa_auto *a, const char *ticket, const char *type, const char *value,
                     const char *who, const char *notes, json_t **out, struct csa_err *err);

/* Phases. status: workspace phase and every segment's phase, readiness and
 * threshold. evaluate: the gate from each current phase to the next, with
 * every criterion's observed and required value and what would fix it. */
int csa_auto_phase_status(struct csa_auto *a, json_t **out, struct csa_err *err);
int csa_auto_phase_evaluate(struct csa_auto *a, json_t **out, struct csa_err *err);
/* Advance the workspace phase by one when its gate passes (or 'force'),
 * after making a rollback point. */
int csa_auto_phase_advance(struct csa_auto *a, const char *who, int force, json_t **out,
                           struct csa_err *err);
/* Restore a rollback point (NULL: the latest). */
int csa_auto_phase_rollback(struct csa_auto *a, const char *point, const char *who, json_t **out,
                            struct csa_err *err);
/* List rollback points. */
int csa_auto_rollback_points(struct csa_auto *a, json_t **out, struct csa_err *err);
/* The decision log over time (spec §9.2 decision_accuracy_trend): per
 * bucket of 'bucket_ms' from 'since' (ms), at most 'max' buckets with
 * decisions: {"start" (ISO 8601), "decisions", "autonomous_rate",
 * "reviewed", "accuracy" and "accuracy_lower_bound" of the reviewed ones,
 * "autonomous_accuracy", "critical_errors"}. */
int csa_auto_trend(struct csa_auto *a, int64_t since, int64_t bucket_ms, size_t max, json_t **out,
                   struct csa_err *err);
/* Cap the phase of a decision type ("strategy") or of one of its segments
 * ("strategy/BILLING_INQUIRY") at 'max_phase' (1..5; 0 lifts the cap): it
 * decides in no higher phase whatever its gates earn, until lifted. Kept
 * with the segment phases, recorded in the audit ledger, and left as it
 * is by a rollback (a cap is a person's policy, not automation state). */
int csa_auto_phase_cap(struct csa_auto *a, const char *scope, int max_phase, const char *who,
                       json_t **out, struct csa_err *err);

/*
 * Periodic work: move each segment up when its gate passes (up to the
 * workspace phase; with 'advance_workspace' the workspace phase itself
 * too), run the quality monitor and anomaly detection, apply safety
 * fallbacks. *events (optional) receives what changed.
 */
int csa_auto_tick(struct csa_auto *a, int advance_workspace, json_t **events, struct csa_err *err);

/* The server's leadership of "tick" (store/leader.h): from now on every
 * tick's own writes to a shared store (the segment phases, alerts) are
 * fenced by it, refused when another node took the role over meanwhile,
 * so a node that lost the role without noticing writes nothing. NULL
 * (the default): unfenced, as for a single host or the CLI. */
struct csa_leader;
void csa_auto_set_tick_fence(struct csa_auto *a, struct csa_leader *l);

/* KPIs of spec §9.1: overall, per phase, per decision type, per segment. */
int csa_auto_metrics(struct csa_auto *a, json_t **out, struct csa_err *err);

/*
 * Counters that cost nothing to read (no query, no lock; for /metrics):
 * open_tasks are review tasks not yet decided (open or being decided),
 * decisions the rows of the decision log, reviews the decisions a person
 * reviewed, open_alerts the alerts not closed. Counted in automation.db at
 * open, kept by this controller at each change it makes, and counted
 * again at every tick, which is when the changes of other processes on
 * the same workspace show.
 */
struct csa_auto_counts {
	int64_t open_tasks, decisions, reviews, open_alerts;
};
void csa_auto_counts(struct csa_auto *a, struct csa_auto_counts *out);

/* Open alerts. */
int csa_auto_alerts(struct csa_auto *a, int open_only, json_t **out, struct csa_err *err);

/* Alerts from outside the controller (the server's mesh monitor): stored,
 * appended to the ledger and queued in the outbox for the alert webhook
 * (nothing is posted from here); an alert whose type and scope are already
 * open is not raised again. 'detail' is stolen. Closing records
 * "alert_closed" in the ledger when an alert was open. An alert the alerts
 * table cannot take (automation.db failing) is still appended and queued,
 * and the error returned. */
int csa_auto_alert_raise(struct csa_auto *a, const char *type, const char *severity,
                         const char *scope, json_t *detail, struct csa_err *err);
int csa_auto_alert_close(struct csa_auto *a, const char *type, const char *scope,
                         struct csa_err *err);

/* The audit ledger the controller appends to (automation/ledger.h). */
struct csa_ledger *csa_auto_ledger(struct csa_auto *a);

/* Whether a wrong decision of 'type' with 'value' is a critical error
 * whatever the ticket (by default: an automated resolution sent to the
 * customer). Such decisions are held to the critical target accuracy. */
int csa_auto_wrong_is_critical(const struct csa_auto *a, const char *type, const char *value);

/* Number of the phase ("PHASE_3" -> 3), 0 if malformed. */
int csa_phase_num(const char *s);

#endif
