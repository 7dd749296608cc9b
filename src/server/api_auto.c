/*
 * The automation resources of the API: the review queue, phases and
 * their gates, KPIs, alerts, the audit trail of a ticket and the file
 * monitor. Each is a thin layer over the controller (automation/control.h)
 * and the monitor; what a change means for the dashboard goes out as an
 * event.
 */
#include "server/server_internal.h"
#include "automation/control.h"
#include "automation/ledger.h"
#include "base/ids.h"
#include "base/json.h"
#include "base/ts.h"
#include "store/monitor.h"
#include "store/ticket.h"
#include "store/ws.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

json_t *csa_h_reviews(struct call *c)
{
	const char *st = csa_query(c, "status");
	if (st && strcmp(st, "open") != 0 && strcmp(st, "done") != 0)
		return csa_fail(c, 400, "bad_request", "status must be open or done");
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_review_list(c->s->autom, st ? st : "open", 200, &out, &err))
		return csa_fail_err(c, &err);
	return json_pack("{s:o}", "tasks", out);
}

json_t *csa_h_review_next(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_review_next(c->s->autom, &out, &err))
		return csa_fail_err(c, &err);
	if (!out)
		return json_pack("{s:n}", "task");
	/* the reviewer sees the whole ticket; a task whose ticket cannot be
	 * read is still shown, with the reason */
	struct csa_ticket tk;
	const char *tid = csa_json_str(out, "ticket_id");
	if (tid && csa_store_load(c->s->ws->store, tid, &tk, &err) == CSA_OK) {
		json_object_set_new(out, "ticket", csa_ticket_state_json(&tk, 1));
		csa_ticket_release(&tk);
	} else {
		json_object_set_new(out, "ticket", json_null());
		json_object_set_new(out, "ticket_error",
		                    json_string(tid ? err.msg : "the task names no ticket"));
	}
	return json_pack("{s:o}", "task", out);
}

/*
 * The answer to a person's decision (rc, *out from the controller): a
 * conflict is 409 with the winner's decision under "winner", so the
 * dashboard can show what was decided; only a decision that won is an
 * event ('ticket' named in it when known).
 */
static json_t *answer_decision(struct call *c, int rc, json_t *out, struct csa_err *err,
                               const char *ticket)
{
	if (rc == CSA_ECONFLICT) {
		json_t *body = csa_fail_err(c, err);
		if (body && json_object_set_new(body, "winner", out ? out : json_null())) {
			json_decref(body);
			return csa_fail(c, 500, "internal", "out of memory answering a conflict");
		}
		return body;
	}
	if (rc) {
		json_decref(out);
		return csa_fail_err(c, err);
	}
	csa_publish(c->s, "review",
	            json_pack("{s:O?, s:s?, s:O?, s:O?}", "task_id", json_object_get(out, "task_id"),
	                      "ticket_id", ticket, "decision_type",
	                      json_object_get(out, "decision_type"), "correct",
	                      json_object_get(out, "correct")));
	return out;
}

/*
 * Two reviewers deciding the same task at once: the controller lets the
 * first one win and answers the others CSA_ECONFLICT with the winner's
 * decision in *out. They get 409 with that decision under "winner", so the
 * dashboard can show what was decided; only the winner's decision is an
 * event.
 */
json_t *csa_h_review_decide(struct call *c)
{
	char *end;
	errno = 0;
	long long id = strtoll(c->params[0], &end, 10);
	if (*end || id <= 0 || errno == ERANGE)
		return csa_fail(c, 400, "bad_request",
		                "task id must be a positive number, not '%s'", c->params[0]);
	const char *value = csa_json_str(c->body, "value");
	if (!value)
		return csa_fail(c, 400, "bad_request", "field 'value' (string) is required");
	json_t *ms = json_object_get(c->body, "decision_ms");
	if (ms && (!json_is_integer(ms) || json_integer_value(ms) < 0))
		return csa_fail(c, 400, "bad_request",
		                "field 'decision_ms' must be a non-negative integer");
	json_t *out = NULL;
	struct csa_err err = {0};
	int rc =
	    csa_auto_review_decide(c->s->autom, id, value, c->who, csa_json_str(c->body, "notes"),
	                           ms ? json_integer_value(ms) : -1, &out, &err);
	return answer_decision(c, rc, out, &err, NULL);
}

/*
 * A person changes one of the ticket's decisions (category, priority, ...)
 * from the ticket page: the open review task of that type is decided, or,
 * with none, the newest decision is corrected. Either way the model learns
 * and the ledger records it; a conflict with another reviewer is 409 with
 * the winner, as on the review queue.
 */
json_t *csa_h_ticket_decide(struct call *c)
{
	static const char shape[] =
	    "{\"decision_type\": \"category|priority|strategy|escalation\", \"value\": \"...\", "
	    "\"notes\": \"...\"}";
	if (!json_is_object(c->body))
		return csa_fail(c, 400, "bad_request", "body must be %s", shape);
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)c->body, key, v)
	{
		if (strcmp(key, "decision_type") && strcmp(key, "value") && strcmp(key, "notes"))
			return csa_fail(c, 400, "bad_request", "unknown field '%.60s': body must be %s",
			                key, shape);
		if (!json_is_string(v) && !(strcmp(key, "notes") == 0 && json_is_null(v)))
			return csa_fail(c, 400, "bad_request", "field '%s' must be a string", key);
	}
	const char *type = csa_json_str(c->body, "decision_type"),
	           *value = csa_json_str(c->body, "value");
	if (!type || !value)
		return csa_fail(c, 400, "bad_request", "fields 'decision_type' and 'value' are required: %s",
		                shape);
	if (!csa_id_valid(c->params[0]))
		return csa_fail(c, 400, "bad_request", "'%.80s' is not a valid ticket id", c->params[0]);
	json_t *out = NULL;
	struct csa_err err = {0};
	int rc = csa_auto_correct(c->s->autom, c->params[0], type, value, c->who,
	                          csa_json_str(c->body, "notes"), &out, &err);
	return answer_decision(c, rc, out, &err, c->params[0]);
}

json_t *csa_h_phase(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_phase_status(c->s->autom, &out, &err))
		return csa_fail_err(c, &err);
	return out;
}

json_t *csa_h_phase_evaluate(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_phase_evaluate(c->s->autom, &out, &err))
		return csa_fail_err(c, &err);
	return out;
}

json_t *csa_h_phase_advance(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_phase_advance(c->s->autom, c->who, csa_json_bool(c->body, "force", 0), &out,
	                           &err))
		return csa_fail_err(c, &err);
	csa_publish_phase(c->s);
	return out;
}

json_t *csa_h_phase_rollback(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_phase_rollback(c->s->autom, csa_json_str(c->body, "point"), c->who, &out,
	                            &err))
		return csa_fail_err(c, &err);
	csa_publish_phase(c->s);
	return out;
}

/* {"scope": "type" or "type/segment", "max_phase": 1..5, or null to lift} */
json_t *csa_h_phase_cap(struct call *c)
{
	json_t *max = json_object_get(c->body, "max_phase");
	const char *scope = csa_json_str(c->body, "scope");
	if (!scope || !(json_is_null(max) || json_is_integer(max)))
		return csa_fail(c, 400, "bad_request",
		                "body: {\"scope\": \"TYPE[/SEGMENT]\", \"max_phase\": 1..5 or null}");
	json_int_t m = json_is_integer(max) ? json_integer_value(max) : 0;
	if (json_is_integer(max) && (m < 1 || m > 5))
		return csa_fail(c, 400, "bad_request", "max_phase must be 1..5, or null to lift the cap");
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_phase_cap(c->s->autom, scope, (int)m, c->who, &out, &err))
		return csa_fail_err(c, &err);
	csa_publish_phase(c->s);
	return out;
}

json_t *csa_h_phase_points(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_rollback_points(c->s->autom, &out, &err))
		return csa_fail_err(c, &err);
	return json_pack("{s:o}", "points", out);
}

/* ?bucket=hour (the last 2 days, default) or day (the last 30), &days=N
 * (1..365) for another span. */
json_t *csa_h_metrics_trend(struct call *c)
{
	const char *bucket = csa_query(c, "bucket"), *days_s = csa_query(c, "days");
	int day = bucket && strcmp(bucket, "day") == 0;
	if (bucket && !day && strcmp(bucket, "hour") != 0)
		return csa_fail(c, 400, "bad_request", "bucket is 'hour' or 'day', not '%.20s'", bucket);
	long days = day ? 30 : 2;
	if (days_s) {
		char *end;
		days = strtol(days_s, &end, 10);
		if (*end || days < 1 || days > 365)
			return csa_fail(c, 400, "bad_request", "days is a whole number 1..365");
	}
	int64_t bucket_ms = day ? 86400000LL : 3600000LL;
	int64_t now = csa_now_ms(), since = (now - days * 86400000LL) / bucket_ms * bucket_ms;
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_trend(c->s->autom, since, bucket_ms, 24 * 366, &out, &err))
		return csa_fail_err(c, &err);
	return json_pack("{s:s, s:i, s:o}", "bucket", day ? "day" : "hour", "days", (int)days,
	                 "series", out);
}

json_t *csa_h_metrics_json(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_metrics(c->s->autom, &out, &err))
		return csa_fail_err(c, &err);
	json_t *gates = NULL;
	if (csa_auto_phase_evaluate(c->s->autom, &gates, &err)) {
		json_decref(out);
		return csa_fail_err(c, &err);
	}
	json_object_set_new(out, "gates", gates);
	return out;
}

json_t *csa_h_alerts(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_alerts(c->s->autom, csa_query(c, "all") == NULL, &out, &err))
		return csa_fail_err(c, &err);
	return json_pack("{s:o}", "alerts", out);
}

json_t *csa_h_mesh(struct call *c)
{
	return csa_monitor_status(c->s->monitor);
}

json_t *csa_h_mesh_check(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_monitor_check(c->s->monitor, &out, &err))
		return csa_fail_err(c, &err);
	return out;
}

json_t *csa_h_audit(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_ledger_trail(csa_auto_ledger(c->s->autom), c->params[0], &out, &err))
		return csa_fail_err(c, &err);
	return json_pack("{s:s, s:o}", "ticket_id", c->params[0], "trail", out);
}
