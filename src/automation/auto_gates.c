/*
 * Phase gates (spec §8.2): the criteria from one phase to the next for a
 * scope, read from its recent decisions, and whether a small segment may
 * follow its decision type.
 */
#include "automation/auto_internal.h"
#include "automation/stats.h"
#include "agents/dmodel.h"
#include "base/json.h"
#include "base/ts.h"
#include "store/ws.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- gates -------------------------------------------------------------- */

/* Mean human decision time without AI help: PHASE_1 decisions (global). */
static double baseline_ms(struct csa_auto *a)
{
	if (a->ev.baseline_ms > 0)
		return a->ev.baseline_ms;
	double b = a->ops->baseline_ms(a->store);
	a->ev.baseline_ms = b > 0 ? b : auto_settings(a)->baseline_decision_ms;
	return a->ev.baseline_ms;
}

static void criterion(json_t *list, const char *name, double observed, const char *op,
                      double required, int pass, const char *fix)
{
	json_array_append_new(list, json_pack("{s:s, s:f, s:s, s:f, s:b, s:s?}", "criterion", name,
	                                      "observed", observed, "op", op, "required", required,
	                                      "pass", pass, "fix", pass ? NULL : fix));
}

/* ---- how long until a gate passes (spec §8.2 estimated_timeline) ---------- */

/* Events a day over the scope's window of decisions. */
static double per_day(int64_t count, const struct scope_metrics *m)
{
	double span = (double)(m->last_ms - m->first_ms);
	return count > 0 && span > 0 ? (double)count * 86400000.0 / span : 0;
}

/* More events needed, at 'pace' a day: days, or -1 when never at it. */
static double days_for(double more, double pace)
{
	return more <= 0 ? 0 : pace > 0 ? more / pace : -1;
}

/* Reviews more until the lower bound of an accuracy seen as c of n reaches
 * 'need', if it holds at c/n; -1 when it cannot (it is not above need). */
static double reviews_to_bound(double c, double n, double need, double z)
{
	if (n <= 0 || c / n <= need)
		return n > 0 && csa_wilson_lower_p(c / n, n, z) >= need ? 0 : -1;
	double lo = n, hi = n;
	while (csa_wilson_lower_p(c / n, hi, z) < need && hi < 1e9)
		hi *= 2;
	while (hi - lo > 1) { /* the bound grows with the sample at a fixed rate */
		double mid = floor((lo + hi) / 2);
		if (csa_wilson_lower_p(c / n, mid, z) >= need)
			hi = mid;
		else
			lo = mid;
	}
	return hi - n;
}

/* The last criterion added: how many days until it passes at the current
 * pace (-1: not at this pace). Criteria without one are not estimated. */
static void estimate(json_t *crit, double days)
{
	json_t *c = json_array_get(crit, json_array_size(crit) - 1);
	if (!json_is_true(json_object_get(c, "pass")))
		json_object_set_new(c, "estimated_days", days < 0 ? json_null() : json_real(days));
}

/* The gate's timeline: the last of its failing criteria to pass, when
 * every one of them has an estimate; the criteria that have none. */
static json_t *timeline(json_t *crit, const struct scope_metrics *m)
{
	double days = 0;
	int known = 1;
	json_t *open = json_array(), *c;
	size_t i;
	json_array_foreach(crit, i, c)
	{
		if (json_is_true(json_object_get(c, "pass")))
			continue;
		json_t *d = json_object_get(c, "estimated_days");
		if (json_is_number(d)) {
			days = json_number_value(d) > days ? json_number_value(d) : days;
		} else {
			known = 0;
			json_array_append_new(open, json_string(csa_json_str(c, "criterion")));
		}
	}
	return json_pack("{s:o, s:f, s:f, s:o}", "days", known ? json_real(days) : json_null(),
	                 "decisions_per_day", per_day(m->n - 1, m), "reviews_per_day",
	                 per_day(m->reviewed, m), "not_estimated", open);
}

/* A type's held-out measurement at training, read once an evaluation. */
static void heldout_of(struct csa_auto *a, const char *type, size_t *correct, size_t *n)
{
	for (size_t i = 0; i < a->ev.nheldout; i++)
		if (strcmp(a->ev.heldout[i].type, type) == 0) {
			*correct = a->ev.heldout[i].correct;
			*n = a->ev.heldout[i].n;
			return;
		}
	struct csa_heldout h = {0};
	if (csa_dmodel_load_heldout(a->ws->blobs, type, &h, NULL) != CSA_OK)
		h.n = h.correct = 0; /* never measured, or unreadable: no evidence */
	*correct = h.correct;
	*n = h.n;
	if (a->ev.nheldout < sizeof(a->ev.heldout) / sizeof(a->ev.heldout[0])) {
		snprintf(a->ev.heldout[a->ev.nheldout].type, 64, "%s", type);
		a->ev.heldout[a->ev.nheldout].correct = h.correct;
		a->ev.heldout[a->ev.nheldout++].n = h.n;
	}
}

/* The PHASE_1 criterion of the models (spec §4.1: "initial AI model
 * trained with 80%+ accuracy on historical data"): the lower bound of
 * their accuracy from what they were measured on, the rows held out of
 * their training and the PHASE_1 suggestions people have reviewed since
 * ('m', the scope's). A type's gate counts its own model; the workspace's
 * (type NULL) every tracked type's together, as it counts their reviews.
 * 'fix' says what the bound rests on and what would raise it. */
static double model_accuracy_lb(struct csa_auto *a, const char *type,
                                const struct scope_metrics *m,
                                const struct csa_auto_settings *set, char *fix, size_t fixsz,
                                size_t *seen_c, size_t *seen_n)
{
	size_t hc = 0, hn = 0, c, n;
	if (type) {
		heldout_of(a, type, &hc, &hn);
	} else {
		size_t i;
		json_t *t;
		json_array_foreach(csa_config_get(auto_cfg(a), "automation.decision_types"), i, t)
		{
			heldout_of(a, json_string_value(t), &c, &n);
			hc += c;
			hn += n;
		}
	}
	*seen_c = c = hc + (size_t)m->correct;
	*seen_n = n = hn + (size_t)m->reviewed;
	double lb = csa_wilson_lower(c, n, set->z);
	const char *what = type ? type : "decision";
	if (n == 0)
		snprintf(fix, fixsz,
		         "no measure of the %s models' accuracy yet: import history with its "
		         "decisions ('csa import'), or review their suggestions",
		         what);
	else
		snprintf(fix, fixsz,
		         "%s models: accuracy lower bound %.3f from %zu/%zu held out at training "
		         "and %lld/%lld reviewed: more history ('csa import', 'csa train') or reviews",
		         what, lb, hc, hn, (long long)m->correct, (long long)m->reviewed);
	return lb;
}

/* Gate from 'phase' to phase + 1 for a scope (type/segment NULL: all). */
json_t *auto_evaluate_gate(struct csa_auto *a, const char *type, const char *segment, int phase)
{
	static const char *const names[] = {"",        "PHASE_1", "PHASE_2",
	                                    "PHASE_3", "PHASE_4", "PHASE_5"};
	const struct csa_auto_settings *set = auto_settings(a);
	const struct csa_gate_settings *gs = &set->gates[phase];
	struct scope_metrics m;
	/* a gate never passes on what it could not read */
	int64_t settled = csa_now_ms() - (int64_t)(set->capture_grace_minutes * 60000);
	int unread = a->ops->scope_metrics(a->store, type, segment, phase, (int64_t)set->window,
	                                   auto_evidence_since(a, type, segment), settled,
	                                   &m) != CSA_OK;
	double z = set->z;
	json_t *crit = json_array();
	char fix[200];
	/* a segment needs less evidence than the whole workspace to move */
	double min_n = segment ? set->segment_min_decisions : gs->min_decisions;
	if (phase >= 5)
		min_n = 0;
	if (min_n > 0) {
		snprintf(fix, sizeof(fix), "need %.0f more decisions in %s", min_n - (double)m.n,
		         names[phase]);
		criterion(crit, "decisions", (double)m.n, ">=", min_n, (double)m.n >= min_n, fix);
		estimate(crit, days_for(min_n - (double)m.n, per_day(m.n - 1, &m)));
	}
	double acc_lb = csa_wilson_lower((size_t)m.correct, (size_t)m.reviewed, z);
	double base = baseline_ms(a);
	if (phase == 1) {
		double cap = m.human ? (double)m.human_reviewed / (double)m.human : 0;
		double need = gs->capture_rate;
		if (m.human == 0)
			snprintf(fix, sizeof(fix),
			         "no decision decided by a person yet: work the review queue");
		else
			snprintf(fix, sizeof(fix),
			         "%lld decisions have waited over %.0f minutes for a person: work the "
			         "review queue",
			         (long long)(m.human - m.human_reviewed), set->capture_grace_minutes);
		criterion(crit, "human_decisions_captured", cap, ">=", need, m.human && cap >= need,
		          fix);
		need = gs->accuracy;
		size_t seen_c = (size_t)m.correct, seen_n = (size_t)m.reviewed;
		if (segment)
			snprintf(fix, sizeof(fix),
			         "accuracy lower bound %.3f from %lld reviewed decisions of this "
			         "segment: review more of them, or a better model",
			         acc_lb, (long long)m.reviewed);
		else
			acc_lb = model_accuracy_lb(a, type, &m, set, fix, sizeof(fix), &seen_c, &seen_n);
		criterion(crit, "heldout_accuracy_lower_bound", acc_lb, ">=", need, acc_lb >= need,
		          fix);
		double more = reviews_to_bound((double)seen_c, (double)seen_n, need, z);
		estimate(crit, more < 0 ? -1 : days_for(more, per_day(m.reviewed, &m)));
	} else if (phase == 2) {
		double agree = m.reviewed ? (double)m.correct / (double)m.reviewed : 0;
		double need = gs->agreement;
		snprintf(fix, sizeof(fix),
		         "agreement %.3f: correct the AI in the review queue, it learns from "
		         "disagreements",
		         agree);
		criterion(crit, "agreement", agree, ">", need, agree > need, fix);
		double ratio = m.mean_decision_ms > 0 ? m.mean_decision_ms / base : 1;
		need = gs->decision_time_ratio;
		snprintf(fix, sizeof(fix),
		         "decisions take %.0f%% of the PHASE_1 time; the suggestion must save 20%%",
		         100 * ratio);
		criterion(crit, "decision_time_ratio", ratio, "<=", need,
		          m.mean_decision_ms > 0 && ratio <= need, fix);
		need = gs->accuracy;
		snprintf(fix, sizeof(fix),
		         "accuracy lower bound %.3f: more reviewed decisions or a better model",
		         acc_lb);
		criterion(crit, "accuracy_lower_bound", acc_lb, ">=", need, acc_lb >= need, fix);
		double more = reviews_to_bound((double)m.correct, (double)m.reviewed, need, z);
		estimate(crit, more < 0 ? -1 : days_for(more, per_day(m.reviewed, &m)));
	} else {
		double rate = m.n ? (double)m.autonomous / (double)m.n : 0;
		double need = gs->autonomous_rate;
		snprintf(fix, sizeof(fix),
		         "%.0f%% autonomous: thresholds fall as reviewed evidence grows; review "
		         "more decisions",
		         100 * rate);
		criterion(crit, "autonomous_rate", rate, ">=", need, rate >= need, fix);
		double alb = csa_wilson_lower((size_t)m.auto_correct, (size_t)m.auto_reviewed, z);
		need = gs->autonomous_accuracy;
		snprintf(fix, sizeof(fix),
		         "autonomous accuracy lower bound %.3f from %lld reviews: review more "
		         "autonomous decisions",
		         alb, (long long)m.auto_reviewed);
		criterion(crit, "autonomous_accuracy_lower_bound", alb, ">=", need, alb >= need,
		          fix);
		double more =
		    reviews_to_bound((double)m.auto_correct, (double)m.auto_reviewed, need, z);
		estimate(crit, more < 0 ? -1 : days_for(more, per_day(m.auto_reviewed, &m)));
		double min_rev = gs->min_reviewed;
		if (min_rev > 0) {
			snprintf(fix, sizeof(fix), "need %.0f more reviewed autonomous decisions",
			         min_rev - (double)m.auto_reviewed);
			criterion(crit, "reviewed_autonomous", (double)m.auto_reviewed,
			          ">=", min_rev, (double)m.auto_reviewed >= min_rev, fix);
			estimate(crit, days_for(min_rev - (double)m.auto_reviewed,
			                        per_day(m.auto_reviewed, &m)));
		}
		if (phase == 3) {
			double per = m.n ? m.total_decision_ms / (double)m.n : base;
			double ratio = per / base;
			need = gs->intervention_time_ratio;
			snprintf(fix, sizeof(fix), "human time per decision is %.0f%% of PHASE_1",
			         100 * ratio);
			criterion(crit, "intervention_time_ratio", ratio, "<=", need, ratio <= need,
			          fix);
			need = gs->critical_errors;
			snprintf(fix, sizeof(fix),
			         "%lld critical errors: investigate them, they block this gate",
			         (long long)m.critical_errors);
			criterion(crit, "critical_errors", (double)m.critical_errors, "<=", need,
			          (double)m.critical_errors <= need, fix);
		}
		if (phase == 4) {
			int64_t open = a->ops->open_alerts(a->store, "CRITICAL");
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
		         a->ops->errmsg(a->store));
		criterion(crit, "automation_db_readable", 0, "==", 1, 0, fix);
	}
	int pass = phase < 5;
	size_t i;
	json_t *c;
	json_array_foreach(crit, i, c) pass &= json_is_true(json_object_get(c, "pass"));
	json_t *blocking = json_array();
	json_array_foreach(crit, i, c) if (!json_is_true(json_object_get(c, "pass")))
	    json_array_append(blocking, json_object_get(c, "fix"));
	json_t *when = timeline(crit, &m);
	return json_pack("{s:s, s:s?, s:b, s:o, s:o, s:o}", "from", names[phase], "to",
	                 phase < 5 ? names[phase + 1] : NULL, "pass", pass, "criteria", crit,
	                 "blocking", blocking, "estimated_timeline", when);
}

/*
 * A small segment may follow its decision type: when the type's gate from
 * this phase passes over all its segments and the segment's own evidence
 * does not show it worse (the upper confidence bound of its accuracy in
 * this phase still reaches the gate's accuracy), it moves with the type.
 * Large segments are judged on their own. Caller holds a->mu.
 */
int auto_type_vouches(struct csa_auto *a, const char *type, const char *seg, int phase)
{
	if (phase < 1 || phase > 2)
		return 0; /* autonomy phases need the segment's own evidence */
	int pass = -1;
	for (size_t i = 0; i < a->ev.ntype_gate; i++)
		if (a->ev.type_gate[i].phase == phase && strcmp(a->ev.type_gate[i].type, type) == 0)
			pass = a->ev.type_gate[i].pass;
	if (pass < 0) {
		json_t *tg = auto_evaluate_gate(a, type, NULL, phase);
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
	if (auto_evidence_since(a, type, seg) > 0) {
		struct scope_metrics m;
		if (a->ops->scope_metrics(a->store, type, seg, phase,
		                          (int64_t)auto_settings(a)->window,
		                          auto_evidence_since(a, type, seg), INT64_MAX, &m) ||
		    m.reviewed < 10)
			return 0;
	}
	/* ... and, judged like readiness on the decisions it would make
	 * autonomously, not worse than the gate asks */
	const struct thr *t = auto_threshold_of(a, type, seg, 0);
	if (!t || t->r.n < 10)
		return 0;
	const struct csa_auto_settings *set = auto_settings(a);
	const struct csa_gate_settings *gs = &set->gates[phase];
	double need = gs->accuracy;
	/* upper bound: 1 - lower bound of the error rate */
	double upper = 1 - csa_wilson_lower_p(1 - t->r.success_rate, (double)t->r.n, set->z);
	return upper >= need;
}
