/*
 * The automation controller's store (private to src/automation/): the
 * decision log, review tasks, alerts, segment phases and rollback points.
 * Two backends: automation.db on SQLite with files beside it
 * (auto_sqlite.c, a workspace on one host), and the tables csa_auto_* of
 * the workspace's PostgreSQL database (auto_pg.c, chosen by
 * csa_auto_open() when the workspace's tickets are there). Every read and
 * write the controller makes goes through struct auto_store_ops, whose
 * operations are named for what the jobs need, not for SQL; both backends
 * pass one contract test (store_contract() in tests/test_automation.c).
 *
 * The controller calls every operation under its mutex, so a backend need
 * not be thread-safe itself; several processes may share one store (the
 * CLI and the server, or the nodes of one database), so a backend must be
 * safe for that (SQLite: WAL and a busy timeout; PostgreSQL: one
 * conditional statement wherever one winner is wanted). An operation
 * returning an int status leaves "what failed and why" in err; one
 * returning a count gives -1 when the store cannot answer (errmsg() says
 * why).
 */
#ifndef CSA_AUTOMATION_AUTO_STORE_H
#define CSA_AUTOMATION_AUTO_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "base/err.h"

struct auto_store; /* the backend's own */
struct csa_outcome;
struct csa_auto_counts;

/* The newest 'window' decisions of a scope (type and segment NULL: all)
 * made in 'phase' after 'since' (ms), summed for its gate. */
struct scope_metrics {
	int64_t n, autonomous, reviewed, correct, human, human_reviewed, auto_reviewed,
	    auto_correct, critical_errors, open_tasks_decide;
	double mean_decision_ms, total_decision_ms;
	int64_t first_ms, last_ms; /* when the oldest and the newest were made */
};

/* How segments are listed: [type, segment] pairs in the store's order or
 * sorted, or "type/segment" keys. */
enum auto_seg_order { AUTO_SEGS_ANY_ORDER, AUTO_SEGS_SORTED, AUTO_SEGS_KEYS };

/* What review_decide reads of a task and of its decision. */
struct task_claim {
	int64_t id, created;
	char decision_id[160], ticket[80], type[32], segment[160], ai_value[160], status[16],
	    value[160], reviewer[160];
	int critical, autonomous, phase;
};

/* A document a rollback point keeps: its name in the workspace
 * ("csa.json", "automation/state.json", "models/<file>") and its bytes. */
struct auto_doc {
	char name[96];
	char *buf;
	size_t len;
};

struct csa_leader;
struct csa_ledger;
struct csa_ledger_rec;

struct auto_store_ops {
	/* Open the store at 'path' (created private), or close it (NULL-safe). */
	int (*open)(const char *path, struct auto_store **out, struct csa_err *err);
	void (*close)(struct auto_store *s);
	/* The last error of the store, for a message; error() makes it the
	 * error 'err' says ("<path>: <what>: <why>"; CSA_EBUSY when another
	 * process held the store too long, CSA_EIO otherwise). */
	const char *(*errmsg)(struct auto_store *s);
	int (*error)(struct auto_store *s, struct csa_err *err, const char *what);
	/* The phase of each segment and when its evidence restarts
	 * ({"segments": {"type/segment": phase}, "evidence_since": {...}}):
	 * *out a new object, CSA_ENOENT when none was ever saved; saved whole,
	 * atomically. The SQLite backend keeps it in automation/state.json,
	 * beside automation.db, the file rollback points copy: a backend that
	 * keeps it elsewhere needs rollback points of its own. */
	int (*load_phases)(struct auto_store *s, json_t **out, struct csa_err *err);
	int (*save_phases)(struct auto_store *s, const json_t *phases, struct csa_err *err);
	/* Rollback points. save_point keeps a point's documents, then its
	 * manifest (a JSON object whose "id" names the point), so a point that
	 * is listed is whole; list_points gives every manifest (a new array,
	 * any order); point_doc the bytes of one document of a point (a new
	 * buffer), CSA_ENOENT when it has none of that name. Ids and names are
	 * checked before any path is built: they come back from the store. */
	int (*save_point)(struct auto_store *s, const json_t *manifest, const struct auto_doc *docs,
	                  size_t n, struct csa_err *err);
	int (*list_points)(struct auto_store *s, json_t **out, struct csa_err *err);
	int (*point_doc)(struct auto_store *s, const char *id, const char *name, char **buf,
	                 size_t *len, struct csa_err *err);
	/* Undo the unit of work in progress, if any. */
	void (*rollback)(struct auto_store *s);
	/* One decision's row (auto_row_of()) and its review task, if it has one. */
	int (*insert_decision)(struct auto_store *s, const json_t *row, struct csa_err *err);
	/* Reviewed outcomes of a scope (segment NULL: the whole type), oldest
	 * first, at most 'limit'; malloc'd (NULL when the store cannot answer). */
	struct csa_outcome *(*outcomes)(struct auto_store *s, const char *type, const char *segment,
	                                size_t limit, size_t *n);

	/* The newest 'window' decisions of a scope (type and segment NULL: all)
	 * made in 'phase' after 'since' (ms), summed for its gate. 'human'
	 * leaves out a decision still waiting for a person that was made after
	 * 'settled_before': it is not uncaptured yet, only not decided yet. */
	int (*scope_metrics)(struct auto_store *s, const char *type, const char *segment, int phase,
	                     int64_t window, int64_t since, int64_t settled_before,
	                     struct scope_metrics *m);
	/* The decision log over time: per 'bucket_ms' from 'since' (ms), oldest
	 * first, at most 'max' buckets (those with decisions): a new array of
	 * {"start" (ms), "decisions", "autonomous", "reviewed", "correct",
	 * "auto_reviewed", "auto_correct", "critical_errors"}. */
	int (*trend)(struct auto_store *s, int64_t since, int64_t bucket_ms, size_t max, json_t **out,
	             struct csa_err *err);
	/* Mean time a person took on a reviewed PHASE_1 decision (0: none). */
	double (*baseline_ms)(struct auto_store *s);
	/* Open alerts (of 'severity', NULL: any). */
	int64_t (*open_alerts)(struct auto_store *s, const char *severity);

	/* The segments with decisions, into *out (a new array, also on failure,
	 * then with what could be read): [type, segment] pairs in the store's
	 * order (AUTO_SEGS_ANY_ORDER) or sorted, or "type/segment" keys. */
	int (*segments)(struct auto_store *s, enum auto_seg_order order, const char *what,
	                json_t **out, struct csa_err *err);
	/* The segments of 'type' with decisions (strings), as above. */
	int (*segments_of)(struct auto_store *s, const char *type, const char *what, json_t **out,
	                   struct csa_err *err);

	/* The reviewed autonomous decisions of 'type' made after 'since' (at most
	 * 'max', newest reviews first): how many (*n), their weight (*w) and the
	 * weight of the right ones (*wk). */
	int (*reviewed_autonomous_sample)(struct auto_store *s, const char *type, size_t max,
	                                  int64_t since, size_t *n, double *w, double *wk,
	                                  const char *what, struct csa_err *err);
	/* Of the newest 'last' decisions of 'type': how many, how many autonomous. */
	int (*recent_autonomy)(struct auto_store *s, const char *type, int last, int64_t *n,
	                       int64_t *autonomous, const char *what, struct csa_err *err);
	/* The newest decisions (at most 'max') of a segment in 'phase' made after
	 * 'since': confidence, and right[i] 1/0 when reviewed, -1 when not. */
	int (*recent_outcomes)(struct auto_store *s, const char *type, const char *segment,
	                       int phase, int64_t since, size_t max, double *confidence, int *right,
	                       size_t *n, const char *what, struct csa_err *err);

	/* KPIs ({"decisions", "automation_rate", "accuracy", ...}) of the
	 * decisions in 'phase' (0: any), of 'type', of the segment 'segment_key'
	 * ("type/segment"), or of all when none is given. */
	json_t *(*kpi)(struct auto_store *s, int phase, const char *type, const char *segment_key);
	/* The counters of csa_auto_counts() counted (-1 for one it cannot count). */
	int (*counts)(struct auto_store *s, struct csa_auto_counts *c, struct csa_err *err);

	/* Whether an alert of 'type' and 'scope' (NULL: any scope) is open. */
	int (*alert_is_open)(struct auto_store *s, const char *type, const char *scope, int *open,
	                     const char *what, struct csa_err *err);
	/* A new open alert; *id its id (0 when not written). */
	int (*insert_alert)(struct auto_store *s, int64_t created_ms, const char *type,
	                    const char *severity, const char *scope, const json_t *detail,
	                    int64_t *id, const char *what, struct csa_err *err);
	/* Close the open alerts of 'type' and 'scope'; *n how many. */
	int (*close_alerts)(struct auto_store *s, const char *type, const char *scope, int64_t *n,
	                    const char *what, struct csa_err *err);
	/* The newest alerts (open ones only, or all), at most 'limit', as
	 * csa_auto_alerts() gives them. */
	int (*alert_list)(struct auto_store *s, int open_only, size_t limit, json_t **out,
	                  struct csa_err *err);

	/* Reviews of a scope (type; segment unless NULL) after 'after_ms': *n how
	 * many and, when any, *newest_ms the newest one's time (else untouched).
	 * Run for every decision: cheap, over an index of reviews. */
	int (*reviews_after)(struct auto_store *s, const char *type, const char *segment,
	                     int64_t after_ms, int64_t *n, int64_t *newest_ms);

	/* A run's decision rows (auto_row_of(), with their review tasks) in one
	 * transaction: all or none. 'audit' (n records) are the run's audit
	 * records, appended in that transaction as audit() does. */
	int (*record_decisions)(struct auto_store *s, const json_t *rows,
	                        struct csa_ledger *ledger, const struct csa_ledger_rec *audit,
	                        size_t n, int *audited, struct csa_err *err);
	/* The rows and tasks of decisions ids[0..n) of a ticket, gone in one
	 * transaction (all or none); gone[0] and gone[1] grow by the decisions and
	 * tasks removed. CSA_OK or CSA_EIO. */
	int (*forget_decisions)(struct auto_store *s, const char *ticket_id, const char *const *ids,
	                        size_t n, int64_t gone[2]);
	/* Reviewed autonomous decisions of a segment, counted up to 'limit' (0
	 * when the store cannot answer). Run for every autonomous decision. */
	int64_t (*reviewed_autonomous)(struct auto_store *s, const char *type, const char *segment,
	                               int64_t limit);

	/* A unit of work: begin ('write_now': take the write lock at once, as a
	 * recovery must before it reads), commit; rollback() undoes
	 * one that failed. */
	int (*begin)(struct auto_store *s, int write_now, const char *what, struct csa_err *err);
	int (*commit)(struct auto_store *s, const char *what, struct csa_err *err);
	/* Append 'recs' to the audit chain through the store where its
	 * transactions can hold them (PostgreSQL, 'ledger' the ledger of the
	 * same database): inside a unit of work, in it, so that what the unit
	 * records and its audit records commit or roll back together; outside
	 * one, while a tick is fenced (fence below), in a transaction of its
	 * own whose first step is the fence's check, so a node that lost the
	 * tick appends nothing (CSA_ECONFLICT). *audited = 1 when appended.
	 * Otherwise (automation.db beside the ledger's file, or no unit and
	 * no fence) nothing is done, *audited = 0, and the caller appends
	 * them to the ledger itself. */
	int (*audit)(struct auto_store *s, struct csa_ledger *ledger, const struct csa_ledger_rec *recs,
	             size_t n, int *audited, struct csa_err *err);

	/* Review tasks as csa_auto_review_list() and its kin give them: by status
	 * (NULL: any; open first, most valuable first), a ticket's open ones, the
	 * most valuable open one due at 'now_ms' (*out NULL when none). */
	int (*task_list)(struct auto_store *s, const char *status, size_t limit, json_t **out,
	                 struct csa_err *err);
	int (*ticket_tasks)(struct auto_store *s, const char *ticket_id, json_t **out,
	                    struct csa_err *err);
	int (*next_task)(struct auto_store *s, int64_t now_ms, json_t **out, struct csa_err *err);

	/* The newest decision of type t->type on ticket t->ticket into *t, as
	 * read_claim fills it (value and reviewer a review's if one was made),
	 * with id and status its task's when one is being decided ("deciding"),
	 * else 0 and ""; CSA_ENOENT: the ticket has none. */
	int (*latest_decision)(struct auto_store *s, struct task_claim *t, struct csa_err *err);
	/* Task t->id and its decision into *t (CSA_ENOENT: no such task). */
	int (*read_claim)(struct auto_store *s, struct task_claim *t, struct csa_err *err);
	/* Claim an open task for 'value' by 'who' under 'claim' (the controller's
	 * open marker) in one conditional step: 1 if it got it, 0 if the task was
	 * not open, < 0 on error. */
	int (*claim_task)(struct auto_store *s, int64_t task_id, const char *claim,
	                  const char *value, const char *who, struct csa_err *err);
	/* Give up a claim: the task is open again (best effort). */
	void (*release_claim)(struct auto_store *s, int64_t task_id, const char *claim);
	/* The person's decision on the claimed task's decision, and the task done;
	 * CSA_ESTATE when the claim was lost. t->id 0: a correction with no task,
	 * the decision alone; decision_ms < 0: no time to decide is known.
	 * Inside a unit of work. */
	int (*record_review)(struct auto_store *s, const struct task_claim *t, const char *claim,
	                     const char *value, int correct, const char *who, int64_t decision_ms,
	                     struct csa_err *err);
	/* Whether a person confirmed the ticket's priority as CRITICAL. */
	int (*ticket_confirmed_critical)(struct auto_store *s, const char *ticket);
	/* Every decision of the ticket counted as one on a critical ticket. */
	int (*mark_ticket_critical)(struct auto_store *s, const char *ticket, struct csa_err *err);
	/* The ticket's autonomous decisions, but 'except', that a review reversed
	 * while the ticket did not count as critical: [{"id", "type", "segment",
	 * "value", "final"}] (a new array, empty on failure). */
	int (*reversed_autonomous)(struct auto_store *s, const char *ticket, const char *except,
	                           json_t **found, struct csa_err *err);

	/* Recovery after an unclean stop (auto_recovery.c). The newest decision's
	 * time (-1: unreadable); the tickets decided on since 'since_ms' added to
	 * the object 'ids' (best effort); a ticket's decisions as [key, created_ms]
	 * pairs; one decision of a ticket and its task removed; a review restored
	 * onto a decision ('value' by 'by') and its task done. */
	int64_t (*newest_decision_ms)(struct auto_store *s);
	void (*tickets_decided_since)(struct auto_store *s, int64_t since_ms, json_t *ids);
	int (*ticket_decisions)(struct auto_store *s, const char *ticket_id, json_t **out,
	                        struct csa_err *err);
	int (*remove_decision)(struct auto_store *s, const char *ticket_id, const char *key,
	                       struct csa_err *err);
	int (*restore_review)(struct auto_store *s, const char *ticket_id, const char *key,
	                      const char *value, int correct, const char *by, struct csa_err *err);
	/* The tasks being decided under 'claim' (a dead process's marker):
	 * [task_id, ticket_id, decision_id, type] each. */
	int (*claims_of)(struct auto_store *s, const char *claim, json_t **out,
	                 struct csa_err *err);
	/* Settle one: done with 'value' (by 'by') onto its decision, or open again
	 * when value is NULL. Inside a unit of work. */
	int (*settle_claim)(struct auto_store *s, int64_t task_id, const char *decision_id,
	                    const char *value, const char *by, const char *what,
	                    struct csa_err *err);

	/* Liveness of claims kept by the store itself, for a store shared by
	 * processes that cannot see each other's open markers (other
	 * machines); NULL in a backend whose claims are the markers of one
	 * workspace directory (SQLite). hold_claim: this store's process
	 * decides under 'claim' from now until close, held so that others can
	 * tell it lives (once per store). dead_claims: the claims of tasks
	 * being decided whose holder is gone, appended to 'dead' (strings). */
	int (*hold_claim)(struct auto_store *s, const char *claim, struct csa_err *err);
	int (*dead_claims)(struct auto_store *s, json_t *dead, struct csa_err *err);
	/* The controller's tick writes as the leader of "tick" (store/leader.h):
	 * until set again, the store's writes of the tick's own (phases, alerts,
	 * rollback points, audit records through audit()) first check in their transaction that 'l' still
	 * leads, refused (CSA_ECONFLICT, "fenced: ...") when another node took
	 * the role over. NULL: none. May be NULL for a store shared by no other
	 * node (SQLite). */
	void (*fence)(struct auto_store *s, struct csa_leader *l);
};

/* The SQLite backend (auto_sqlite.c): open's 'path' is automation.db. */
extern const struct auto_store_ops auto_sqlite_ops;

/* The SQLite store of a workspace nothing of which outlives the process
 * (a replay's without --workdir, ws->memory): the same schema, statements
 * and so the same answers as automation.db at 'path', in a database in
 * this process's memory, so that no commit writes a page to a file; its
 * state.json and rollback points are files beside 'path' as usual. Closed
 * with auto_sqlite_ops.close. */
int auto_sqlite_open_memory(const char *path, struct auto_store **out, struct csa_err *err);

/* The PostgreSQL backend (auto_pg.c): the tables csa_auto_* of a database
 * shared by every node. auto_pg_open() borrows the workspace's pool 'pg'
 * (it must outlive the store; *out is closed with ops->close, also after
 * a failure that made it); open's 'path' is a database URL, opened with a
 * pool of the store's own. Claims are held as session advisory locks
 * (hold_claim), so a claim of a process that died on any node is found. */
struct csa_pg;
extern const struct auto_store_ops auto_pg_ops;
int auto_pg_open(struct csa_pg *pg, struct auto_store **out, struct csa_err *err);
/* host:port/dbname of the store's database, for messages. */
const char *auto_pg_where(const struct auto_store *s);

/* ---- what the backends share -------------------------------------------- */

/* Whether a rollback point's id (no slash) and a document name (components
 * of [A-Za-z0-9._-], none starting with a dot) are safe to keep and to
 * build a path from: CSA_OK or CSA_EINVAL naming which (auto_rollback.c). */
int auto_point_names_ok(const char *id, const char *name, struct csa_err *err);

/* The KPIs of a set of decisions as kpi() gives them (auto_kpi.c): the
 * backend fills the sums of the set (have_sums 0 when it could not read
 * them) and adds each reviewed decision with auto_kpi_calibrate()
 * (have_calibration 0 when it could not read them); auto_kpi_object()
 * makes the object. */
struct auto_kpi_sums {
	int have_sums, have_calibration;
	double n, autonomous, reviewed, correct, auto_reviewed, auto_correct, escalations,
	    escalated;
	int has_mean_decision_ms, has_mean_confidence;
	double mean_decision_ms, mean_confidence;
	double conf[10], acc[10], cnt[10], tot; /* reliability bins */
};
void auto_kpi_calibrate(struct auto_kpi_sums *k, double confidence, int correct);
json_t *auto_kpi_object(const struct auto_kpi_sums *k);

#endif
