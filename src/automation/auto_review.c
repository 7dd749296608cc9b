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

/* The labels a person may choose from, on each task (or array of tasks):
 * the configuration's, not the store's. */
static void with_labels(struct csa_auto *a, json_t *tasks)
{
	size_t i;
	json_t *t;
	if (json_is_object(tasks))
		json_object_set_new(tasks, "labels",
		                    auto_labels_of(a, csa_json_str(tasks, "decision_type")));
	else
		json_array_foreach(tasks, i, t) with_labels(a, t);
}

int csa_auto_review_list(struct csa_auto *a, const char *status, size_t limit, json_t **out,
                         struct csa_err *err)
{
	pthread_mutex_lock(&a->mu);
	int rc = a->ops->task_list(a->store, status, limit, out, err);
	if (rc == CSA_OK)
		with_labels(a, *out);
	pthread_mutex_unlock(&a->mu);
	return rc;
}

int csa_auto_review_for_ticket(struct csa_auto *a, const char *ticket_id, json_t **out,
                               struct csa_err *err)
{
	pthread_mutex_lock(&a->mu);
	int rc = a->ops->ticket_tasks(a->store, ticket_id, out, err);
	if (rc == CSA_OK)
		with_labels(a, *out);
	pthread_mutex_unlock(&a->mu);
	return rc;
}

int csa_auto_review_next(struct csa_auto *a, json_t **out, struct csa_err *err)
{
	pthread_mutex_lock(&a->mu);
	/* due tasks first (delayed audits wait for their time), then value */
	int rc = a->ops->next_task(a->store, csa_now_ms(), out, err);
	if (rc == CSA_OK)
		with_labels(a, *out);
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
	json_t *found;
	int rc = a->ops->reversed_autonomous(a->store, ticket, by, &found, err);
	if (rc == CSA_OK)
		rc = a->ops->mark_ticket_critical(a->store, ticket, err);
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

static json_t *review_record(const struct task_claim *t, const char *value, const char *who,
                             const char *notes, int64_t decision_ms, int crit);
static json_t *reviewed(struct csa_auto *a, const struct task_claim *t, const char *what,
                        json_t *rec, int audited, const json_t *crits);

/* A task being decided elsewhere is waited for up to this long, so the
 * loser hears the winner's outcome, not that one is under way. */
enum { CLAIM_WAIT_MS = 30000, CLAIM_POLL_MS = 100 };

/* A claim given up (the ticket could not take the decision, or the task
 * could not be closed): the task is open again for anyone. */
static void release_claim(struct csa_auto *a, int64_t task_id)
{
	a->ops->release_claim(a->store, task_id, a->claim);
	pthread_cond_broadcast(&a->decided);
}

/* Waits, holding a->mu between polls, until task t is open or decided:
 * the error to answer, or CSA_OK with the task open. */
static int wait_for_open(struct csa_auto *a, struct task_claim *t, json_t **winner,
                         struct csa_err *err)
{
	int64_t deadline = csa_now_ms() + CLAIM_WAIT_MS;
	int rc;
	while ((rc = a->ops->read_claim(a->store, t, err)) == CSA_OK &&
	       strcmp(t->status, "deciding") == 0 && csa_now_ms() < deadline) {
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

/* Closes a claimed task with the person's decision (or, t->id 0, records
 * a correction on the decision alone), in one transaction with what the
 * review reveals about critical errors and, where the store's transaction
 * can hold it, with its audit record ('what'): *rec gets the record,
 * *audited whether it is in the chain already. */
static int close_task(struct csa_auto *a, const struct task_claim *t, const char *what,
                      const char *value, const char *who, const char *notes,
                      int64_t decision_ms, int *crit, json_t *crits, json_t **rec, int *audited,
                      struct csa_err *err)
{
	int rc = CSA_OK, correct = strcmp(t->ai_value, value) == 0, critical = t->critical;
	*rec = NULL;
	*audited = 0;
	if ((rc = a->ops->begin(a->store, 0, "beginning the review's transaction", err)) ||
	    (rc = a->ops->record_review(a->store, t, a->claim, value, correct, who,
	                                decision_ms, err)))
		return rc;
	/* what the person said about the ticket's criticality goes in with
	 * the review: the flag on decisions is the guess at decision time,
	 * what people confirmed about the ticket's priority decides whether a
	 * reversal is critical */
	if (strcmp(t->type, "priority") == 0 && strcmp(value, "CRITICAL") == 0) {
		rc = reversals_became_critical(a, t->ticket, t->decision_id, crits, err);
		critical = 1;
	} else if (!critical && a->ops->ticket_confirmed_critical(a->store, t->ticket)) {
		critical = 1;
		rc = a->ops->mark_ticket_critical(a->store, t->ticket, err);
	}
	*crit = t->autonomous && !correct && is_critical_error(a, t->type, critical, t->ai_value);
	if (rc == CSA_OK && *crit)
		rc = critical_error(a, t->decision_id, t->ticket, t->type, t->segment, t->ai_value,
		                    value, crits, err);
	if (rc == CSA_OK && !(*rec = review_record(t, value, who, notes, decision_ms, *crit)))
		rc = csa_error(err, CSA_ENOMEM, "out of memory recording a review");
	struct csa_ledger_rec lr = {what, t->ticket, *rec};
	int in_unit = 0;
	if (rc == CSA_OK)
		rc = a->ops->audit(a->store, a->ledger, &lr, 1, &in_unit, err);
	if (rc == CSA_OK)
		rc = a->ops->commit(a->store, "committing the review", err);
	if (rc) {
		json_decref(*rec);
		*rec = NULL;
		return rc;
	}
	*audited = in_unit;
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
		if ((rc = a->ops->claim_task(a->store, task_id, a->claim, value, who, err)) <
		    0) {
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
	json_t *rec;
	int audited;
	if ((rc = close_task(a, &t, "review", value, who, notes, decision_ms, &crit, crits, &rec,
	                     &audited, err))) {
		csa_error_prefix(err,
		                 "the decision is in ticket '%s' but review task %lld could not be "
		                 "closed: ",
		                 t.ticket, (long long)task_id);
		a->ops->rollback(a->store);
		release_claim(a, task_id);
		goto out;
	}
	pthread_cond_broadcast(&a->decided);
	a->reviews++;
	atomic_fetch_sub(&a->n.open_tasks, 1);
	atomic_fetch_add(&a->n.reviews, 1);
	*out = reviewed(a, &t, "review", rec, audited, crits);
out:
	pthread_mutex_unlock(&a->mu);
	json_decref(crits);
	return rc;
}

/* A review's or correction's audit record (its answer's body too). */
static json_t *review_record(const struct task_claim *t, const char *value, const char *who,
                             const char *notes, int64_t decision_ms, int crit)
{
	json_t *rec = json_object();
	if (t->id) /* a correction has no task */
		json_object_set_new(rec, "task_id", json_integer(t->id));
	json_t *rest = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:b}", "decision_id",
	                         t->decision_id, "decision_type", t->type, "segment", t->segment,
	                         "value", value, "ai_value", t->ai_value, "by", who, "correct",
	                         strcmp(t->ai_value, value) == 0);
	if (!rec || !rest || json_object_update(rec, rest)) {
		json_decref(rec);
		json_decref(rest);
		return NULL;
	}
	json_decref(rest);
	if (decision_ms >= 0)
		json_object_set_new(rec, "decision_ms", json_integer(decision_ms));
	if (notes)
		json_object_set_new(rec, "notes", json_string(notes));
	json_object_set_new(rec, "autonomous_decision", json_boolean(t->autonomous));
	if (crit)
		json_object_set_new(rec, "critical_error", json_true());
	return rec;
}

/*
 * A review or correction has committed: its record ('what') goes into the
 * ledger unless the commit took it in already ('audited'), and becomes
 * the caller's answer, with the critical errors it revealed announced
 * under "events". Caller holds a->mu.
 */
static json_t *reviewed(struct csa_auto *a, const struct task_claim *t, const char *what,
                        json_t *rec, int audited, const json_t *crits)
{
	json_t *events = json_array();
	announce_critical_errors(a, crits, events);
	if (!audited) {
		struct csa_err lerr = {0};
		auto_ledger_health_locked(
		    a, csa_ledger_append(a->ledger, what, t->ticket, rec, NULL, &lerr), &lerr);
	}
	json_object_set_new(rec, "events", events);
	return rec;
}

/* The newest open task of decision type 'type' on the ticket, or 0. */
static int64_t open_task_of(struct csa_auto *a, const char *ticket, const char *type,
                            struct csa_err *err, int *rc)
{
	json_t *tasks = NULL, *t;
	int64_t id = 0;
	size_t i;
	if ((*rc = a->ops->ticket_tasks(a->store, ticket, &tasks, err)))
		return 0;
	json_array_foreach(tasks, i, t)
	{
		const char *tt = csa_json_str(t, "decision_type");
		if (tt && strcmp(tt, type) == 0)
			id = csa_json_int(t, "task_id", 0);
	}
	json_decref(tasks);
	return id;
}

/*
 * A person changes a decision from the ticket (category, priority, ...),
 * whether or not a review task asked for it. An open task of that type is
 * decided (the same path, the same one-winner rule); with none (the
 * decision was autonomous and not sampled, or already reviewed) the
 * ticket takes the person's value, the model learns from it as from a
 * review, and the decision's row and the ledger ("correction") record it,
 * with any critical error it reveals.
 */
int csa_auto_correct(struct csa_auto *a, const char *ticket, const char *type, const char *value,
                     const char *who, const char *notes, json_t **out, struct csa_err *err)
{
	struct task_claim t = {0};
	json_t *crits = json_array();
	int rc, crit = 0;
	*out = NULL;
	pthread_mutex_lock(&a->mu);
	if (!auto_type_tracked(a, type) || !auto_valid_label(a, type, value)) {
		rc = csa_error(err, CSA_EINVAL, "'%s' is not a %s value", value ? value : "", type);
		goto out;
	}
	int64_t task = open_task_of(a, ticket, type, err, &rc);
	if (rc)
		goto out;
	if (task) {
		pthread_mutex_unlock(&a->mu);
		json_decref(crits);
		return csa_auto_review_decide(a, task, value, who, notes, -1, out, err);
	}
	snprintf(t.ticket, sizeof(t.ticket), "%s", ticket);
	snprintf(t.type, sizeof(t.type), "%s", type);
	if ((rc = a->ops->latest_decision(a->store, &t, err)))
		goto out;
	if (t.id) { /* a reviewer is deciding it: theirs or ours, one wins */
		pthread_mutex_unlock(&a->mu);
		json_decref(crits);
		return csa_auto_review_decide(a, t.id, value, who, notes, -1, out, err);
	}
	pthread_mutex_unlock(&a->mu);
	char agent_decision[160];
	snprintf(agent_decision, sizeof(agent_decision), "%.*s", (int)strcspn(t.decision_id, "#"),
	         t.decision_id);
	rc = csa_pipeline_feedback(a->pipe, ticket, agent_decision,
	                           (enum csa_dtype)csa_dtype_parse(type), value, who, notes,
	                           t.phase >= 2, err);
	pthread_mutex_lock(&a->mu);
	if (rc)
		goto out;
	json_t *rec;
	int audited;
	if ((rc = close_task(a, &t, "correction", value, who, notes, -1, &crit, crits, &rec,
	                     &audited, err))) {
		csa_error_prefix(err, "the change is in ticket '%s' but its decision log was not: ",
		                 ticket);
		a->ops->rollback(a->store);
		goto out;
	}
	a->reviews++;
	if (!t.value[0]) /* the decision counts as reviewed from now on */
		atomic_fetch_add(&a->n.reviews, 1);
	*out = reviewed(a, &t, "correction", rec, audited, crits);
out:
	pthread_mutex_unlock(&a->mu);
	json_decref(crits);
	return rc;
}
