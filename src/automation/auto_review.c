/*
 * The review queue: listing tasks, choosing the next one, and a person's
 * decision on a task, claimed so that exactly one decision wins; what the
 * review reveals about critical errors.
 */
#include "automation/auto_internal.h"
#include "automation/ledger.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
	    "alternatives", alt ? alt : json_array(), "labels", auto_labels_of(a, type),
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
		rc = auto_db_err(a, err, "listing tasks");
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
		rc = auto_db_err(a, err, "listing a ticket's tasks");
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
		rc = auto_db_err(a, err, "choosing the next task");
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
	if (critical && auto_settings(a)->reversed_on_critical_ticket)
		return 1;
	return csa_auto_wrong_is_critical(a, type, ai_value);
}

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
	struct alert_id aid;
	int is_new, rc = auto_record_alert(a, "CRITICAL_ERROR", "CRITICAL", scope, detail, &is_new,
	                                   &aid, err);
	if (rc == CSA_OK)
		json_array_append_new(crits, json_pack("{s:s, s:s, s:o, s:I, s:I}", "type", type,
		                                       "scope", scope, "detail", detail, "alert_id",
		                                       (json_int_t)aid.id, "created_ms",
		                                       (json_int_t)aid.created_ms));
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
		struct alert_id aid = {csa_json_int(c, "alert_id", 0),
		                       csa_json_int(c, "created_ms", 0)};
		/* its row committed with the review */
		atomic_fetch_add(&a->n.open_alerts, aid.id > 0);
		auto_announce_alert(a, &aid, "CRITICAL_ERROR", "CRITICAL", csa_json_str(c, "scope"),
		                    json_incref(json_object_get(c, "detail")), events);
		auto_demote_type(a, csa_json_str(c, "type"), 2,
		                 "critical error in an autonomous decision", events);
	}
}

/* Whether a person confirmed the ticket's priority as CRITICAL. */
static int ticket_confirmed_critical(struct csa_auto *a, const char *ticket)
{
	return auto_count_i64(a,
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
		return auto_db_err(a, err, what);
	sqlite3_bind_text(st, 1, ticket, -1, SQLITE_STATIC);
	int done = auto_step_done(st);
	sqlite3_finalize(st);
	return done ? CSA_OK : auto_db_err(a, err, what);
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
		return auto_db_err(a, err, what);
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
	int rc =
	    step == SQLITE_DONE ? mark_ticket_critical(a, ticket, err) : auto_db_err(a, err, what);
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
		return auto_db_err(a, err, "reading a review task");
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
		return auto_db_err(a, err, "claiming a review task");
	sqlite3_bind_int64(st, 1, task_id);
	sqlite3_bind_text(st, 2, a->open_marker, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, value, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, who, -1, SQLITE_STATIC);
	int done = auto_step_done(st);
	sqlite3_finalize(st);
	if (!done)
		return auto_db_err(a, err, "claiming a review task");
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
		return auto_db_err(a, err, "beginning the review's transaction");
	if (sqlite3_prepare_v2(a->db,
	                       "UPDATE decisions SET final = ?2, correct = ?3, reviewed_ms = ?4, "
	                       "reviewer = ?5, decision_ms = ?6 WHERE id = ?1",
	                       -1, &st, NULL) != SQLITE_OK)
		return auto_db_err(a, err, "recording the review");
	sqlite3_bind_text(st, 1, t->decision_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 3, correct);
	sqlite3_bind_int64(st, 4, csa_now_ms());
	sqlite3_bind_text(st, 5, who, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, decision_ms);
	int done = auto_step_done(st);
	sqlite3_finalize(st);
	if (!done || sqlite3_prepare_v2(a->db,
	                                "UPDATE tasks SET status = 'done' WHERE id = ?1 AND "
	                                "status = 'deciding' AND claim = ?2",
	                                -1, &st, NULL) != SQLITE_OK)
		return auto_db_err(a, err, "recording the review");
	sqlite3_bind_int64(st, 1, t->id);
	sqlite3_bind_text(st, 2, a->open_marker, -1, SQLITE_STATIC);
	done = auto_step_done(st);
	sqlite3_finalize(st);
	if (!done)
		return auto_db_err(a, err, "closing the task");
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
		return auto_db_err(a, err, "committing the review");
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
		if (!auto_valid_label(a, t.type, value)) {
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
		auto_rollback_locked(a);
		release_claim(a, task_id);
		goto out;
	}
	pthread_cond_broadcast(&a->decided);
	a->reviews++;
	atomic_fetch_sub(&a->n.open_tasks, 1);
	atomic_fetch_add(&a->n.reviews, 1);
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
	auto_ledger_health_locked(
	    a, csa_ledger_append(a->ledger, "review", t.ticket, rec, NULL, &lerr), &lerr);
	json_object_set_new(rec, "events", events);
	*out = rec;
out:
	pthread_mutex_unlock(&a->mu);
	json_decref(crits);
	return rc;
}
