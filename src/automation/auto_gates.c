/*
 * Phase gates (spec §8.2): the criteria from one phase to the next for a
 * scope, read from its recent decisions, and whether a small segment may
 * follow its decision type.
 */
#include "automation/auto_internal.h"
#include "base/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- gates -------------------------------------------------------------- */

struct scope_metrics {
	int64_t n, autonomous, reviewed, correct, human, human_reviewed, auto_reviewed,
	    auto_correct, critical_errors, open_tasks_decide;
	double mean_decision_ms, total_decision_ms;
};

/* CSA_EIO (all zero) when automation.db cannot answer. */
static int scope_metrics(struct csa_auto *a, const char *type, const char *segment, int phase,
                         struct scope_metrics *m)
{
	memset(m, 0, sizeof(*m));
	sqlite3_stmt *st;
	/* the latest 'window' decisions made in this phase */
	const char *sql =
	    "SELECT count(*), sum(autonomous), sum(final IS NOT NULL), sum(coalesce(correct, 0)),"
	    " sum(autonomous = 0), sum(autonomous = 0 AND final IS NOT NULL),"
	    " sum(autonomous = 1 AND final IS NOT NULL),"
	    " sum(autonomous = 1 AND correct = 1),"
	    " avg(CASE WHEN autonomous = 0 AND final IS NOT NULL THEN decision_ms END),"
	    " sum(coalesce(decision_ms, 0)),"
	    " sum(autonomous = 1 AND correct = 0 AND (critical = 1 OR (type = 'strategy' AND"
	    " value = 'AUTOMATED_RESOLUTION')))"
	    " FROM (SELECT * FROM decisions WHERE phase = ?1 AND %s created_ms > ?5"
	    " ORDER BY created_ms DESC LIMIT ?4)";
	/* one statement per kind of scope, so that each can use its index */
	char q[1200];
	snprintf(q, sizeof(q), sql,
	         segment ? "type = ?2 AND segment = ?3 AND"
	         : type  ? "type = ?2 AND"
	                 : "");
	if (sqlite3_prepare_v2(a->db, q, -1, &st, NULL) != SQLITE_OK)
		return CSA_EIO;
	sqlite3_bind_int(st, 1, phase);
	if (type)
		sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
	if (segment)
		sqlite3_bind_text(st, 3, segment, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)auto_cfg_num(a, "automation.window", 500));
	sqlite3_bind_int64(st, 5, auto_evidence_since(a, type, segment));
	int step = sqlite3_step(st);
	if (step == SQLITE_ROW) {
		m->n = sqlite3_column_int64(st, 0);
		m->autonomous = sqlite3_column_int64(st, 1);
		m->reviewed = sqlite3_column_int64(st, 2);
		m->correct = sqlite3_column_int64(st, 3);
		m->human = sqlite3_column_int64(st, 4);
		m->human_reviewed = sqlite3_column_int64(st, 5);
		m->auto_reviewed = sqlite3_column_int64(st, 6);
		m->auto_correct = sqlite3_column_int64(st, 7);
		m->mean_decision_ms = sqlite3_column_double(st, 8);
		m->total_decision_ms = sqlite3_column_double(st, 9);
		m->critical_errors = sqlite3_column_int64(st, 10);
	}
	sqlite3_finalize(st);
	return step == SQLITE_ROW ? CSA_OK : CSA_EIO;
}

/* Mean human decision time without AI help: PHASE_1 decisions (global). */
static double baseline_ms(struct csa_auto *a)
{
	if (a->ev.baseline_ms > 0)
		return a->ev.baseline_ms;
	sqlite3_stmt *st;
	double b = 0;
	if (sqlite3_prepare_v2(a->db,
	                       /* decision_ms is set with final, by a review */
	                       "SELECT avg(decision_ms) FROM decisions WHERE phase = 1 AND "
	                       "decision_ms IS NOT NULL",
	                       -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			b = sqlite3_column_double(st, 0);
		sqlite3_finalize(st);
	}
	a->ev.baseline_ms = b > 0 ? b : auto_cfg_num(a, "automation.baseline_decision_ms", 60000);
	return a->ev.baseline_ms;
}

static void criterion(json_t *list, const char *name, double observed, const char *op,
                      double required, int pass, const char *fix)
{
	json_array_append_new(list, json_pack("{s:s, s:f, s:s, s:f, s:b, s:s?}", "criterion", name,
	                                      "observed", observed, "op", op, "required", required,
	                                      "pass", pass, "fix", pass ? NULL : fix));
}

/* Gate from 'phase' to phase + 1 for a scope (type/segment NULL: all). */
json_t *auto_evaluate_gate(struct csa_auto *a, const char *type, const char *segment, int phase)
{
	static const char *const names[] = {"",        "PHASE_1", "PHASE_2",
	                                    "PHASE_3", "PHASE_4", "PHASE_5"};
	json_t *g = json_object_get(csa_config_get(auto_cfg(a), "automation.gates"), names[phase]);
	struct scope_metrics m;
	/* a gate never passes on what it could not read */
	int unread = scope_metrics(a, type, segment, phase, &m) != CSA_OK;
	double z = auto_cfg_num(a, "automation.z", 1.96);
	json_t *crit = json_array();
	char fix[200];
	/* a segment needs less evidence than the whole workspace to move */
	double min_n = segment ? auto_cfg_num(a, "automation.segment_min_decisions", 30)
	                       : csa_json_num(g, "min_decisions", 0);
	if (phase >= 5)
		min_n = 0;
	if (min_n > 0) {
		snprintf(fix, sizeof(fix), "need %.0f more decisions in %s", min_n - (double)m.n,
		         names[phase]);
		criterion(crit, "decisions", (double)m.n, ">=", min_n, (double)m.n >= min_n, fix);
	}
	double acc_lb = csa_wilson_lower((size_t)m.correct, (size_t)m.reviewed, z);
	double base = baseline_ms(a);
	if (phase == 1) {
		double cap = m.human ? (double)m.human_reviewed / (double)m.human : 0;
		double need = csa_json_num(g, "capture_rate", 1.0);
		snprintf(fix, sizeof(fix),
		         "%lld decisions still wait for a human: work the review queue",
		         (long long)(m.human - m.human_reviewed));
		criterion(crit, "human_decisions_captured", cap, ">=", need, m.human && cap >= need,
		          fix);
		need = csa_json_num(g, "accuracy", 0.8);
		snprintf(fix, sizeof(fix),
		         "AI accuracy lower bound %.3f: retrain with more history ('csa train')",
		         acc_lb);
		criterion(crit, "heldout_accuracy_lower_bound", acc_lb, ">=", need, acc_lb >= need,
		          fix);
	} else if (phase == 2) {
		double agree = m.reviewed ? (double)m.correct / (double)m.reviewed : 0;
		double need = csa_json_num(g, "agreement", 0.75);
		snprintf(fix, sizeof(fix),
		         "agreement %.3f: correct the AI in the review queue, it learns from "
		         "disagreements",
		         agree);
		criterion(crit, "agreement", agree, ">", need, agree > need, fix);
		double ratio = m.mean_decision_ms > 0 ? m.mean_decision_ms / base : 1;
		need = csa_json_num(g, "decision_time_ratio", 0.8);
		snprintf(fix, sizeof(fix),
		         "decisions take %.0f%% of the PHASE_1 time; the suggestion must save 20%%",
		         100 * ratio);
		criterion(crit, "decision_time_ratio", ratio, "<=", need,
		          m.mean_decision_ms > 0 && ratio <= need, fix);
		need = csa_json_num(g, "accuracy", 0.85);
		snprintf(fix, sizeof(fix),
		         "accuracy lower bound %.3f: more reviewed decisions or a better model",
		         acc_lb);
		criterion(crit, "accuracy_lower_bound", acc_lb, ">=", need, acc_lb >= need, fix);
	} else {
		double rate = m.n ? (double)m.autonomous / (double)m.n : 0;
		double need = csa_json_num(g, "autonomous_rate", 0.6);
		snprintf(fix, sizeof(fix),
		         "%.0f%% autonomous: thresholds fall as reviewed evidence grows; review "
		         "more decisions",
		         100 * rate);
		criterion(crit, "autonomous_rate", rate, ">=", need, rate >= need, fix);
		double alb = csa_wilson_lower((size_t)m.auto_correct, (size_t)m.auto_reviewed, z);
		need = csa_json_num(g, "autonomous_accuracy", 0.9);
		snprintf(fix, sizeof(fix),
		         "autonomous accuracy lower bound %.3f from %lld reviews: review more "
		         "autonomous decisions",
		         alb, (long long)m.auto_reviewed);
		criterion(crit, "autonomous_accuracy_lower_bound", alb, ">=", need, alb >= need,
		          fix);
		double min_rev = csa_json_num(g, "min_reviewed", 0);
		if (min_rev > 0) {
			snprintf(fix, sizeof(fix), "need %.0f more reviewed autonomous decisions",
			         min_rev - (double)m.auto_reviewed);
			criterion(crit, "reviewed_autonomous", (double)m.auto_reviewed,
			          ">=", min_rev, (double)m.auto_reviewed >= min_rev, fix);
		}
		if (phase == 3) {
			double per = m.n ? m.total_decision_ms / (double)m.n : base;
			double ratio = per / base;
			need = csa_json_num(g, "intervention_time_ratio", 0.5);
			snprintf(fix, sizeof(fix), "human time per decision is %.0f%% of PHASE_1",
			         100 * ratio);
			criterion(crit, "intervention_time_ratio", ratio, "<=", need, ratio <= need,
			          fix);
			need = csa_json_num(g, "critical_errors", 0);
			snprintf(fix, sizeof(fix),
			         "%lld critical errors: investigate them, they block this gate",
			         (long long)m.critical_errors);
			criterion(crit, "critical_errors", (double)m.critical_errors, "<=", need,
			          (double)m.critical_errors <= need, fix);
		}
		if (phase == 4) {
			int64_t open = auto_count_i64(
			    a,
			    "SELECT count(*) FROM alerts WHERE open = 1 AND severity = 'CRITICAL'",
			    NULL, NULL);
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
		         sqlite3_errmsg(a->db));
		criterion(crit, "automation_db_readable", 0, "==", 1, 0, fix);
	}
	int pass = phase < 5;
	size_t i;
	json_t *c;
	json_array_foreach(crit, i, c) pass &= json_is_true(json_object_get(c, "pass"));
	json_t *blocking = json_array();
	json_array_foreach(crit, i, c) if (!json_is_true(json_object_get(c, "pass")))
	    json_array_append(blocking, json_object_get(c, "fix"));
	return json_pack("{s:s, s:s?, s:b, s:o, s:o}", "from", names[phase], "to",
	                 phase < 5 ? names[phase + 1] : NULL, "pass", pass, "criteria", crit,
	                 "blocking", blocking);
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
	static const char *const names[] = {"",        "PHASE_1", "PHASE_2",
	                                    "PHASE_3", "PHASE_4", "PHASE_5"};
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
		if (scope_metrics(a, type, seg, phase, &m) || m.reviewed < 10)
			return 0;
	}
	/* ... and, judged like readiness on the decisions it would make
	 * autonomously, not worse than the gate asks */
	const struct thr *t = auto_threshold_of(a, type, seg, 0);
	if (!t || t->r.n < 10)
		return 0;
	json_t *g = json_object_get(csa_config_get(auto_cfg(a), "automation.gates"), names[phase]);
	double need = csa_json_num(g, "accuracy", 0.8);
	/* upper bound: 1 - lower bound of the error rate */
	double upper = 1 - csa_wilson_lower_p(1 - t->r.success_rate, (double)t->r.n,
	                                      auto_cfg_num(a, "automation.z", 1.96));
	return upper >= need;
}
