/*
 * Phases: the phase of each segment and of the workspace, their status and
 * gate evaluation, advancing the workspace and demoting a decision type.
 */
#include "automation/auto_internal.h"
#include "automation/ledger.h"
#include "base/json.h"
#include "store/ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void auto_set_segment_phase(struct csa_auto *a, const char *key, int phase, const char *why,
                            json_t *events)
{
	json_t *segs = json_object_get(a->state, "segments");
	int from = (int)csa_json_int(segs, key, 1);
	if (from == phase)
		return;
	json_object_set_new(segs, key, json_integer(phase));
	auto_save_state(a, NULL);
	/* thresholds of the segment are recomputed from here on */
	a->nthr = 0;
	json_t *rec = json_pack("{s:s, s:i, s:i, s:s}", "segment", key, "from", from, "to", phase,
	                        "reason", why);
	auto_audit(a, "phase_change", NULL, rec);
	if (events)
		json_array_append_new(
		    events, json_pack("{s:s, s:O}", "event", "phase_change", "change", rec));
	json_decref(rec);
}

/* Every known segment of a type down to phase 'to' (if above). */
void auto_demote_type(struct csa_auto *a, const char *type, int to, const char *why, json_t *events)
{
	json_t *segs, *seg;
	size_t i;
	/* what could be read is demoted; the evidence restarts regardless */
	a->ops->segments_of(a->store, type, "listing the segments of a type", &segs, NULL);
	json_array_foreach(segs, i, seg)
	{
		char key[200];
		snprintf(key, sizeof(key), "%s/%s", type, json_string_value(seg));
		if (csa_json_int(json_object_get(a->state, "segments"), key, 1) > to)
			auto_set_segment_phase(a, key, to, why, events);
	}
	json_decref(segs);
	auto_restart_evidence(a, type);
}

/* ---- phases ------------------------------------------------------------- */

int auto_set_workspace_phase(struct csa_auto *a, int phase, struct csa_err *err)
{
	return csa_ws_set_phase(a->ws, phase, err);
}

static json_t *segments_json(struct csa_auto *a)
{
	json_t *segs = json_array(), *list, *pair;
	size_t i;
	a->ops->segments(a->store, AUTO_SEGS_SORTED, "listing the segments", &list, NULL);
	json_array_foreach(list, i, pair)
	{
		const char *type = json_string_value(json_array_get(pair, 0));
		const char *seg = json_string_value(json_array_get(pair, 1));
		int ph = auto_segment_phase(a, type, seg), cap = auto_phase_cap(a, type, seg);
		const struct thr *t = auto_threshold_of(a, type, seg, 0);
		json_array_append_new(
		    segs,
		    json_pack("{s:s, s:s, s:i, s:o, s:f, s:I, s:I, s:f, s:f, s:f}", "decision_type",
		              type, "segment", seg, "phase", ph, "autonomy_threshold",
		              auto_threshold_json(t ? t->threshold : CSA_NO_THRESHOLD), "readiness",
		              t ? t->r.score : 0.0, "reviewed", (json_int_t)(t ? t->reviewed : 0),
		              "readiness_reviewed", (json_int_t)(t ? t->r.n : 0), "success_rate",
		              t ? t->r.success_rate : 0.0, "consistency",
		              t ? t->r.consistency : 0.0, "confidence_accuracy",
		              t ? t->r.confidence_accuracy : 0.0));
		if (cap < 5)
			json_object_set_new(json_array_get(segs, json_array_size(segs) - 1), "cap",
			                    json_integer(cap));
	}
	json_decref(list);
	return segs;
}

int csa_auto_phase_status(struct csa_auto *a, json_t **out, struct csa_err *err)
{
	pthread_mutex_lock(&a->mu);
	int64_t open = a->ops->open_alerts(a->store, NULL);
	if (open < 0) {
		int rc = a->ops->error(a->store, err, "counting the open alerts");
		pthread_mutex_unlock(&a->mu);
		return rc;
	}
	char ph[8];
	snprintf(ph, sizeof(ph), "PHASE_%d", auto_workspace_phase(a));
	json_t *caps = json_object_get(a->state, "caps");
	*out = json_pack("{s:s, s:o, s:I, s:o}", "phase", ph, "segments", segments_json(a),
	                 "open_alerts", (json_int_t)open, "caps",
	                 caps ? json_deep_copy(caps) : json_object());
	/* what a person may choose for each decision type, on a ticket page */
	json_t *labels = json_object();
	static const char *const types[] = {"category", "priority", "strategy", "escalation"};
	for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++)
		if (auto_type_tracked(a, types[k]))
			json_object_set_new(labels, types[k], auto_labels_of(a, types[k]));
	json_object_set_new(*out, "labels", labels);
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
	auto_begin_evaluation(a);
	int w = auto_workspace_phase(a);
	json_t *segs = json_array(), *list, *pair;
	size_t i;
	a->ops->segments(a->store, AUTO_SEGS_SORTED, "listing the segments", &list, NULL);
	json_array_foreach(list, i, pair)
	{
		const char *type = json_string_value(json_array_get(pair, 0));
		const char *seg = json_string_value(json_array_get(pair, 1));
		int ph = auto_segment_phase(a, type, seg);
		json_t *g = auto_evaluate_gate(a, type, seg, ph);
		int cap = auto_phase_cap(a, type, seg);
		if (cap < 5 && ph >= cap) { /* what it earns stays unused */
			json_object_set_new(g, "cap", json_integer(ph));
			json_object_set_new(g, "pass", json_false());
		}
		json_object_set_new(g, "decision_type", json_string(type));
		json_object_set_new(g, "segment", json_string(seg));
		json_array_append_new(segs, g);
	}
	json_decref(list);
	*out = json_pack("{s:o, s:o}", "workspace", auto_evaluate_gate(a, NULL, NULL, w),
	                 "segments", segs);
	pthread_mutex_unlock(&a->mu);
	return CSA_OK;
}

int csa_auto_phase_advance(struct csa_auto *a, const char *who, int force, json_t **out,
                           struct csa_err *err)
{
	pthread_mutex_lock(&a->mu);
	auto_begin_evaluation(a);
	int w = auto_workspace_phase(a), rc = CSA_OK;
	json_t *gate = auto_evaluate_gate(a, NULL, NULL, w);
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
	if ((rc = auto_make_point(a, "before advancing", who, id, err)))
		goto out;
	if ((rc = auto_set_workspace_phase(a, w + 1, err)))
		goto out;
	json_t *rec = json_pack("{s:s, s:i, s:i, s:s, s:s?, s:b}", "scope", "workspace", "from", w,
	                        "to", w + 1, "rollback_point", id, "by", who, "forced",
	                        force && !json_is_true(json_object_get(gate, "pass")));
	auto_audit(a, "phase_change", NULL, rec);
	json_object_set_new(rec, "gate", json_incref(gate));
	*out = rec;
out:
	json_decref(gate);
	pthread_mutex_unlock(&a->mu);
	return rc;
}

/* ---- caps ---------------------------------------------------------------- */

/* "type" or "type/segment", the type tracked and the segment a category. */
static int cap_scope_ok(struct csa_auto *a, const char *scope, struct csa_err *err)
{
	const char *slash = scope ? strchr(scope, '/') : NULL;
	char type[64];
	size_t tl = slash ? (size_t)(slash - scope) : (scope ? strlen(scope) : 0);
	if (!scope || tl == 0 || tl >= sizeof(type) || strlen(scope) >= 160)
		return csa_error(err, CSA_EINVAL,
		                 "a cap's scope is a decision type or type/segment, not '%.80s'",
		                 scope ? scope : "");
	memcpy(type, scope, tl);
	type[tl] = '\0';
	if (!auto_type_tracked(a, type))
		return csa_error(err, CSA_EINVAL,
		                 "'%s' is not a decision type this workspace tracks "
		                 "(automation.decision_types)",
		                 type);
	if (slash && !auto_valid_label(a, "category", slash + 1))
		return csa_error(err, CSA_EINVAL,
		                 "segment '%.80s' is not a category of taxonomy.categories", slash + 1);
	return CSA_OK;
}

int csa_auto_phase_cap(struct csa_auto *a, const char *scope, int max_phase, const char *who,
                       json_t **out, struct csa_err *err)
{
	if (max_phase < 0 || max_phase > 5)
		return csa_error(err, CSA_EINVAL, "a phase cap is 1..5 (0 lifts it), not %d",
		                 max_phase);
	pthread_mutex_lock(&a->mu);
	int rc = cap_scope_ok(a, scope, err);
	if (rc) {
		pthread_mutex_unlock(&a->mu);
		return rc;
	}
	auto_refresh_caps(a); /* another process may have set some */
	json_t *caps = json_object_get(a->state, "caps");
	if (!caps)
		json_object_set_new(a->state, "caps", caps = json_object());
	json_t *before = json_incref(json_object_get(caps, scope));
	if (max_phase)
		json_object_set_new(caps, scope, json_integer(max_phase));
	else
		json_object_del(caps, scope);
	if ((rc = auto_write_state(a, err))) { /* nothing changes that is not kept */
		if (before)
			json_object_set(caps, scope, before);
		else
			json_object_del(caps, scope);
		json_decref(before);
		pthread_mutex_unlock(&a->mu);
		return rc;
	}
	a->nthr = 0; /* thresholds follow the phase in effect */
	json_t *rec = json_pack("{s:s, s:o, s:o, s:s?}", "scope", scope, "max_phase",
	                        max_phase ? json_integer(max_phase) : json_null(), "previous",
	                        before ? before : json_null(), "by", who);
	auto_audit(a, "phase_cap", NULL, rec);
	*out = json_pack("{s:o, s:O}", "cap", rec, "caps", caps);
	pthread_mutex_unlock(&a->mu);
	return CSA_OK;
}
