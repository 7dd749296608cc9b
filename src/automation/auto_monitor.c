/*
 * The quality monitor (spec §7.1) and the periodic tick: accuracy per
 * decision type, anomalies of PHASE_4+ segments, safety fallbacks and
 * promotions through the gates.
 */
#include "automation/auto_internal.h"
#include "automation/ledger.h"
#include "base/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	const struct csa_auto_settings *set = auto_settings(a);
	size_t win = (size_t)set->monitor.window;
	size_t min_s = (size_t)set->monitor.min_sample;
	char what[120];
	snprintf(what, sizeof(what), "monitoring decision type %s", type);
	size_t n = 0;
	double w = 0, wk = 0;
	int64_t recent, recent_auto;
	int rc = a->ops->reviewed_autonomous_sample(
	    a->store, type, win, auto_evidence_since(a, type, NULL), &n, &w, &wk, what, err);
	if (rc)
		return rc;
	double acc = w > 0 ? wk / w : 1;
	if ((rc = a->ops->recent_autonomy(a->store, type, 200, &recent, &recent_auto, what, err)))
		return rc;
	double rate = recent ? (double)recent_auto / (double)recent : 0;
	if (n < min_s)
		return CSA_OK;
	/* every step below runs even after one failed (an alert the table
	 * could not take is still announced, and the demotion matters more);
	 * the first error is returned */
	double amin = set->monitor.accuracy_min;
	if (acc < amin) {
		rc = auto_raise_alert(a, "ACCURACY_DEGRADATION", "HIGH", type,
		                      json_pack("{s:f, s:f, s:I, s:s}", "accuracy_rate", acc,
		                                "threshold", amin, "sample", (json_int_t)n,
		                                "recommendation",
		                                "Increase human oversight and retrain models"),
		                      events, err);
		/* gradual: every autonomous segment of the type one phase down */
		json_t *segs, *seg;
		size_t i;
		int r = a->ops->segments_of(a->store, type, what, &segs, rc ? NULL : err);
		json_array_foreach(segs, i, seg)
		{
			char key[200];
			snprintf(key, sizeof(key), "%s/%s", type, json_string_value(seg));
			int ph = (int)csa_json_int(json_object_get(a->state, "segments"), key, 1);
			if (ph >= 3)
				auto_set_segment_phase(a, key, ph - 1, "accuracy degradation",
				                       events);
		}
		json_decref(segs);
		rc = rc ? rc : r;
		/* the alert stays open until a fresh sample judges the type */
		auto_restart_evidence(a, type);
	} else {
		rc = auto_close_alert(a, "ACCURACY_DEGRADATION", type, NULL, err);
	}
	if (rate > set->monitor.overautomation_rate && acc < set->monitor.overautomation_accuracy) {
		int r = auto_raise_alert(a, "OVERAUTOMATION_RISK", "CRITICAL", type,
		                         json_pack("{s:f, s:f, s:s}", "autonomous_rate", rate,
		                                   "accuracy_rate", acc, "recommendation",
		                                   "Reduce automation threshold immediately"),
		                         events, rc ? NULL : err);
		rc = rc ? rc : r;
		auto_demote_type(a, type, 2, "overautomation risk", events);
	}
	return rc;
}

/* PHASE_4+ anomaly detection for a segment: confidence distribution shift
 * (PSI, older vs newer half of its recent decisions in its current phase)
 * and accuracy drop in the reviewed sample. */
static int anomalies(struct csa_auto *a, const char *type, const char *seg, int phase,
                     json_t *events, struct csa_err *err)
{
	double h[2][10] = {{0}};
	double acc[2] = {0}, rev[2] = {0};
	int64_t since = auto_evidence_since(a, type, seg);
	char scope[200], what[260];
	snprintf(scope, sizeof(scope), "%s/%s", type, seg);
	snprintf(what, sizeof(what), "looking for anomalies in %s", scope);
	/* newest first; -1: not reviewed */
	double conf[400];
	int right[400];
	size_t n = 0;
	int lrc = a->ops->recent_outcomes(a->store, type, seg, phase, since, 400, conf, right, &n,
	                                  what, err);
	if (lrc)
		return lrc;
	if (n < 100)
		return CSA_OK;
	for (size_t i = 0; i < n; i++) {
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
	if (psi > auto_settings(a)->monitor.psi_alert)
		rc = auto_raise_alert(a, "ANOMALY_CONFIDENCE_SHIFT", "HIGH", scope,
		                      json_pack("{s:f}", "psi", psi), events, err);
	else
		rc = auto_close_alert(a, "ANOMALY_CONFIDENCE_SHIFT", scope, NULL, err);
	if (rev[0] >= 20 && rev[1] >= 20) {
		double old = acc[0] / rev[0], now = acc[1] / rev[1];
		if (old - now > auto_settings(a)->monitor.accuracy_drop) {
			r = auto_raise_alert(a, "ANOMALY_ACCURACY_DROP", "HIGH", scope,
			                     json_pack("{s:f, s:f}", "before", old, "recent", now),
			                     events, rc ? NULL : err);
			int ph = (int)csa_json_int(json_object_get(a->state, "segments"), scope, 1);
			if (ph >= 3) {
				auto_set_segment_phase(a, scope, ph - 1, "accuracy drop", events);
				auto_restart_evidence(a, scope);
			}
		} else {
			r = auto_close_alert(a, "ANOMALY_ACCURACY_DROP", scope, NULL,
			                     rc ? NULL : err);
		}
	}
	return rc ? rc : r;
}

void csa_auto_set_tick_fence(struct csa_auto *a, struct csa_leader *l)
{
	pthread_mutex_lock(&a->mu);
	a->tick_fence = l;
	pthread_mutex_unlock(&a->mu);
}

int csa_auto_tick(struct csa_auto *a, int advance_workspace, json_t **events_out,
                  struct csa_err *err)
{
	json_t *events = json_array();
	pthread_mutex_lock(&a->mu);
	if (a->ops->fence)
		a->ops->fence(a->store, a->tick_fence);
	auto_begin_evaluation(a);
	auto_refresh_caps(a);
	int w = auto_workspace_phase(a), rc = CSA_OK;
	/* segments follow their own evidence up to the workspace phase and
	 * their cap */
	json_t *list, *pair;
	size_t k;
	struct csa_err lerr = {0};
	int lrc =
	    a->ops->segments(a->store, AUTO_SEGS_ANY_ORDER, "listing the segments", &list, &lerr);
	/* the segments it could list are worked on, then the failure told */
	json_array_foreach(list, k, pair)
	{
		const char *type = json_string_value(json_array_get(pair, 0));
		const char *seg = json_string_value(json_array_get(pair, 1));
		char key[200];
		snprintf(key, sizeof(key), "%s/%s", type, seg);
		int own = (int)csa_json_int(json_object_get(a->state, "segments"), key, 1);
		if (own >= 4) {
			int r = anomalies(a, type, seg, own, events, rc ? NULL : err);
			rc = rc ? rc : r;
		}
		/* nothing is promoted once the database failed */
		if (rc || own >= w || own >= 5 || own >= auto_phase_cap(a, type, seg))
			continue;
		json_t *g = auto_evaluate_gate(a, type, seg, own);
		if (json_is_true(json_object_get(g, "pass")))
			auto_set_segment_phase(a, key, own + 1, "gate passed", events);
		else if (auto_type_vouches(a, type, seg, own))
			auto_set_segment_phase(a, key, own + 1,
			                       "decision type's gate passed, segment not worse",
			                       events);
		json_decref(g);
	}
	json_decref(list);
	if (lrc && rc == CSA_OK) {
		rc = lrc;
		if (err)
			*err = lerr;
	}
	size_t i;
	json_t *t;
	json_array_foreach(csa_config_get(auto_cfg(a), "automation.decision_types"), i, t)
	{
		int r = monitor_type(a, json_string_value(t), events, rc ? NULL : err);
		rc = rc ? rc : r;
	}
	/* a monitor that could not see or record everything advances nothing */
	if (advance_workspace && w < 5 && rc == CSA_OK) {
		json_t *g = auto_evaluate_gate(a, NULL, NULL, w);
		int pass = json_is_true(json_object_get(g, "pass"));
		json_decref(g);
		if (pass) {
			char id[64];
			if ((rc = auto_make_point(a, "before advancing", "auto", id, err)) ==
			        CSA_OK &&
			    (rc = auto_set_workspace_phase(a, w + 1, err)) == CSA_OK) {
				json_t *rec = json_pack("{s:s, s:i, s:i, s:s, s:s}", "scope",
				                        "workspace", "from", w, "to", w + 1,
				                        "rollback_point", id, "by", "auto");
				auto_audit(a, "phase_change", NULL, rec);
				json_array_append_new(events,
				                      json_pack("{s:s, s:o}", "event",
				                                "phase_change", "change", rec));
			}
		}
	}
	/* what other processes on the workspace changed shows in the
	 * counters from here (a failure keeps the ones this one kept) */
	auto_counts_reload(a, NULL);
	/* a phase change or demotion that did not reach the disk (now or at
	 * an earlier save) is written again, and reported while it fails */
	if (a->state_unsaved && auto_save_state(a, NULL) && rc == CSA_OK)
		rc = csa_error(err, a->state_err.code ? a->state_err.code : CSA_EIO,
		               "the automation state is in effect but not saved: %s",
		               a->state_err.msg);
	if (a->ops->fence)
		a->ops->fence(a->store, NULL); /* the tick's writes only */
	pthread_mutex_unlock(&a->mu);
	if (events_out)
		*events_out = events;
	else
		json_decref(events);
	return rc;
}
