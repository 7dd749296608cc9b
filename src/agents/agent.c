/* The four primary agents. */
#include "agents/agent.h"
#include "agents/history.h"
#include "agents/kb.h"
#include "agents/kbsel.h"
#include "agents/team.h"
#include "base/json.h"
#include "base/ts.h"
#include "llm/cascade.h"
#include "sla/sla.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 1024
#define MAX_FEATS  16

void csa_agent_output_release(struct csa_agent_output *o)
{
	json_decref(o->decision);
	json_decref(o->alternatives);
	o->decision = o->alternatives = NULL;
}

double csa_agent_threshold(const struct csa_config *cfg)
{
	json_t *v = csa_config_get(cfg, "agents.confidence_threshold");
	return json_is_number(v) ? json_number_value(v) : 0.8;
}

static const char *sent_bucket(double s)
{
	return s <= -0.25 ? "neg" : s >= 0.25 ? "pos" : "neu";
}

size_t csa_agent_features(enum csa_dtype t, const struct csa_agent_input *in, const char *category,
                          const char *priority, char *buf, size_t bufsz, const char **feats,
                          size_t max)
{
	size_t n = 0, used = 0;
#define ADD(...)                                                                                   \
	do {                                                                                       \
		if (n < max && used < bufsz) {                                                     \
			int w_ = snprintf(buf + used, bufsz - used, __VA_ARGS__);                  \
			if (w_ > 0 && (size_t)w_ < bufsz - used) {                                 \
				feats[n++] = buf + used;                                           \
				used += (size_t)w_ + 1;                                            \
			}                                                                          \
		}                                                                                  \
	} while (0)
	ADD("tier=%s", in->tier ? in->tier : "none");
	ADD("platform=%s", in->platform ? in->platform : "none");
	ADD("sent=%s", sent_bucket(in->sentiment));
	if (t != CSA_DT_CATEGORY && category)
		ADD("cat=%s", category);
	if ((t == CSA_DT_STRATEGY || t == CSA_DT_ESCALATION) && priority)
		ADD("pri=%s", priority);
	if (t == CSA_DT_ESCALATION || t == CSA_DT_STRATEGY)
		ADD("replies=%d", in->agent_replies > 2 ? 3 : in->agent_replies);
	if (t == CSA_DT_PRIORITY)
		ADD("sla=%d", in->sla_status);
#undef ADD
	return n;
}

/* The terms named in a decision's patterns (T active_learning_data). */
#define PATTERN_TERMS 5

/* Predict one decision type; fills probs and returns the best index. When
 * the cascade asks an LLM, its trace goes into cascade[type]; the embedded
 * model's heaviest terms for the chosen label go into why[type]. */
static int predict(const struct csa_agent_env *env, enum csa_dtype t,
                   const struct csa_agent_input *in, const char *category, const char *priority,
                   double *probs, json_t *cascade, json_t *why, struct csa_err *err)
{
	struct csa_dmodel *m = env->models[t];
	if (!m)
		return csa_error(err, CSA_ESTATE, "no trained %s model (run 'csa import')",
		                 csa_dtype_name(t));
	if (csa_dmodel_n_labels(m) > MAX_LABELS)
		return csa_error(err, CSA_ELIMIT, "%s model has too many labels",
		                 csa_dtype_name(t));
	char buf[512];
	const char *feats[MAX_FEATS];
	size_t nf =
	    csa_agent_features(t, in, category, priority, buf, sizeof(buf), feats, MAX_FEATS);
	int rc = csa_dmodel_predict(m, in->text ? in->text : "", feats, nf, probs, err);
	if (rc)
		return rc;
	if (env->cascade) {
		const char *labels[MAX_LABELS];
		size_t n = csa_dmodel_n_labels(m);
		for (size_t i = 0; i < n; i++)
			labels[i] = csa_dmodel_label(m, i);
		const char *agent = t == CSA_DT_CATEGORY || t == CSA_DT_PRIORITY ? "classifier"
		                    : t == CSA_DT_STRATEGY                       ? "selector"
		                                                                 : "escalation";
		json_t *tr = csa_cascade_refine(env->cascade, agent, csa_dtype_name(t), labels, n,
		                                in->text ? in->text : "", feats, nf, probs);
		if (tr)
			json_object_set_new(cascade, csa_dtype_name(t), tr);
	}
	int best = 0;
	for (size_t i = 1; i < csa_dmodel_n_labels(m); i++)
		if (probs[i] > probs[best])
			best = (int)i;
	json_t *terms =
	    csa_dmodel_explain(m, in->text ? in->text : "", feats, nf, (size_t)best, PATTERN_TERMS);
	if (terms)
		json_object_set_new(why, csa_dtype_name(t), terms);
	return best;
}

/* Top alternatives after the chosen one: [{"value", "confidence"}]. */
static json_t *alternatives(const struct csa_dmodel *m, const double *probs, int chosen, size_t k)
{
	json_t *arr = json_array();
	size_t n = csa_dmodel_n_labels(m);
	int used[MAX_LABELS] = {0};
	used[chosen] = 1;
	for (size_t r = 0; r < k && r + 1 < n; r++) {
		int best = -1;
		for (size_t i = 0; i < n; i++)
			if (!used[i] && (best < 0 || probs[i] > probs[best]))
				best = (int)i;
		if (best < 0)
			break;
		used[best] = 1;
		json_array_append_new(arr, json_pack("{s:s, s:f}", "value",
		                                     csa_dmodel_label(m, (size_t)best),
		                                     "confidence", probs[best]));
	}
	return arr;
}

/* Keep the cascade's traces in the decision (T-file), if there are any,
 * and the decision patterns (what weighed most, per decision type), which
 * the pipeline moves to T active_learning_data. */
static void attach_cascade(json_t *decision, json_t *cascade, json_t *why)
{
	if (json_object_size(cascade))
		json_object_set(decision, "cascade", cascade);
	json_decref(cascade);
	if (json_object_size(why))
		json_object_set(decision, "decision_patterns", why);
	json_decref(why);
}

static const char *routing_for(const struct csa_config *cfg, const char *category)
{
	const char *r = csa_json_str(csa_config_get(cfg, "routing"), category);
	return r ? r : "cs_general";
}

/* ---- classifier: category, priority, routing ------------------------- */

static int classifier_process(const struct csa_agent_env *env, const struct csa_agent_input *in,
                              struct csa_agent_output *out, struct csa_err *err)
{
	double pc[MAX_LABELS], pp[MAX_LABELS];
	json_t *cascade = json_object(), *why = json_object();
	int c = predict(env, CSA_DT_CATEGORY, in, NULL, NULL, pc, cascade, why, err);
	if (c < 0) {
		json_decref(cascade);
		json_decref(why);
		return c;
	}
	const char *cat = csa_dmodel_label(env->models[CSA_DT_CATEGORY], (size_t)c);
	/* A workspace may decide categories only (e.g. a history with no
	 * priorities): the priority is then left to humans. */
	int p = -1;
	const char *pri = NULL;
	if (env->models[CSA_DT_PRIORITY]) {
		if ((p = predict(env, CSA_DT_PRIORITY, in, cat, NULL, pp, cascade, why, err)) < 0) {
			json_decref(cascade);
			json_decref(why);
			return p;
		}
		pri = csa_dmodel_label(env->models[CSA_DT_PRIORITY], (size_t)p);
	}
	const char *route = routing_for(in->cfg, cat);
	char routing[96];
	snprintf(routing, sizeof(routing), "%s%s",
	         pri && strcmp(pri, "CRITICAL") == 0 ? "urgent:" : "", route);
	out->decision =
	    json_pack("{s:s, s:f, s:s?, s:o, s:s}", "category", cat, "category_confidence", pc[c],
	              "priority", pri, "priority_confidence", pri ? json_real(pp[p]) : json_null(),
	              "routing_suggestion", routing);
	if (pri)
		json_object_set_new(out->decision, "priority_alternatives",
		                    alternatives(env->models[CSA_DT_PRIORITY], pp, p, 2));
	attach_cascade(out->decision, cascade, why);
	out->confidence = pri ? fmin(pc[c], pp[p]) : pc[c];
	out->alternatives = alternatives(env->models[CSA_DT_CATEGORY], pc, c, 3);
	snprintf(out->rationale, sizeof(out->rationale),
	         "category %s (%.0f%%) and priority %s (%.0f%%) from the customer's words, tier "
	         "%s and %s sentiment; routed to %s",
	         cat, 100 * pc[c], pri ? pri : "left to a human", pri ? 100 * pp[p] : 0.0,
	         in->tier ? in->tier : "unknown", sent_bucket(in->sentiment), routing);
	return CSA_OK;
}

/* ---- selector: strategy and execution parameters --------------------- */

/*
 * For a reply strategy with an article: the reply drafted by the LLM,
 * grounded in the article with the conversation as context, or else the
 * article's template filled from the ticket. Drafts are proposals: they go
 * out only through review or an autonomous strategy decision.
 */
static void draft_reply(const struct csa_agent_env *env, const struct csa_agent_input *in,
                        const char *strategy, json_t *params)
{
	const char *id = csa_json_str(json_object_get(params, "article"), "id");
	if (!id || !env->kb ||
	    (strcmp(strategy, "TEMPLATE_RESPONSE") && strcmp(strategy, "AUTOMATED_RESOLUTION")))
		return;
	json_t *art = csa_kb_get(env->kb, id);
	const char *body = csa_json_str(art, "body");
	json_t *cust = json_object_get(json_object_get(in->tk->e, "participants"), "customer");
	const char *client = csa_json_str(cust, "client_name");
	json_t *vars = json_pack(
	    "{s:s, s:s, s:s}", "client_name", client && *client ? client : "there", "company_name",
	    csa_json_str(cust, "company_name") ? csa_json_str(cust, "company_name") : "",
	    "ticket_id", in->tk->id);
	char *filled = body ? csa_kb_render(body, vars, CSA_KB_MAX_ARTICLE_BYTES) : NULL;
	json_decref(vars);
	json_decref(art);
	if (!filled)
		return;
	json_t *trace = NULL;
	char *llm = csa_cascade_draft(env->cascade, filled, in->text ? in->text : "", &trace);
	json_t *d = json_pack("{s:s, s:s, s:s}", "text", llm ? llm : filled, "source",
	                      llm ? "llm" : "template", "article_id", id);
	if (trace)
		json_object_set_new(d, "llm", trace);
	json_object_set_new(params, "draft_reply", d);
	free(llm);
	free(filled);
}

static int selector_process(const struct csa_agent_env *env, const struct csa_agent_input *in,
                            struct csa_agent_output *out, struct csa_err *err)
{
	const char *cat = csa_json_str(in->classification, "category");
	const char *pri = csa_json_str(in->classification, "priority");
	double ps[MAX_LABELS];
	json_t *cascade = json_object(), *why = json_object();
	int s = predict(env, CSA_DT_STRATEGY, in, cat, pri, ps, cascade, why, err);
	if (s < 0) {
		json_decref(cascade);
		json_decref(why);
		return s;
	}
	struct csa_dmodel *m = env->models[CSA_DT_STRATEGY];
	const char *strategy = csa_dmodel_label(m, (size_t)s);
	json_t *breakdown = json_object();
	for (size_t i = 0; i < csa_dmodel_n_labels(m); i++)
		json_object_set_new(breakdown, csa_dmodel_label(m, i), json_real(ps[i]));
	json_t *params = NULL;
	int rc = csa_kbsel_parameters(env->kb, in->cfg, strategy, cat, in->text, &params, err);
	if (rc) {
		json_decref(breakdown);
		json_decref(cascade);
		json_decref(why);
		return rc;
	}
	draft_reply(env, in, strategy, params);
	out->decision = json_pack("{s:s, s:o, s:o}", "strategy", strategy, "confidence_breakdown",
	                          breakdown, "execution_parameters", params);
	attach_cascade(out->decision, cascade, why);
	out->confidence = ps[s];
	out->alternatives = alternatives(m, ps, s, 2);
	snprintf(out->rationale, sizeof(out->rationale),
	         "%s (%.0f%%) for a %s %s ticket after %d agent replies", strategy, 100 * ps[s],
	         pri ? pri : "?", cat ? cat : "?", in->agent_replies);
	return CSA_OK;
}

/* ---- escalation ------------------------------------------------------ */

static const char *urgency_for(const char *priority, int sla_status)
{
	if (sla_status == 2 || (priority && strcmp(priority, "CRITICAL") == 0))
		return "immediate";
	if (sla_status == 1 || (priority && strcmp(priority, "HIGH") == 0))
		return "high";
	return priority && strcmp(priority, "LOW") == 0 ? "low" : "normal";
}

/* The current assignment was the escalation agent's (its latest
 * "assigned" progress update is by "escalation"), not a person's. */
static int assigned_by_agent(const json_t *i_doc)
{
	json_t *pu = json_object_get(i_doc, "progress_updates");
	for (size_t k = json_array_size(pu); k-- > 0;) {
		json_t *u = json_array_get(pu, k);
		const char *st = csa_json_str(u, "status"), *by = csa_json_str(u, "updater");
		if (st && strcmp(st, "assigned") == 0)
			return by && strcmp(by, "escalation") == 0;
	}
	return 0;
}

/* The ticket's member is the escalation agent's own choice of a member
 * not on the technical team: a TECHNICAL escalation hands it over. */
static int may_hand_over(const struct csa_config *cfg, const struct csa_ticket *tk)
{
	const json_t *m = csa_team_member(cfg, csa_json_str(tk->t, "assigned_member"));
	const char *team = csa_json_str(m, "team");
	return team && strcmp(team, "technical") && assigned_by_agent(tk->i);
}

int csa_escalation_may_assign(const struct csa_config *cfg, const struct csa_ticket *tk)
{
	return json_array_size(csa_config_get(cfg, "team.members")) > 0 &&
	       (!csa_json_str(tk->t, "assigned_member") || may_hand_over(cfg, tk));
}

void csa_escalation_propose_assignment(const struct csa_agent_env *env,
                                       const struct csa_agent_input *in, const char *label,
                                       const json_t *levels, json_t *decision)
{
	int technical = strcmp(label, "TECHNICAL") == 0;
	const char *want = technical ? "technical" : "cs";
	const char *note = NULL;
	json_t *choice = NULL;
	if (csa_json_str(in->tk->t, "assigned_member") &&
	    !(technical && may_hand_over(in->cfg, in->tk)))
		note = "already assigned";
	if (!note) {
		json_t *expertise = json_array();
		const char *routing = csa_json_str(in->classification, "routing_suggestion");
		if (routing)
			json_array_append_new(expertise, json_string(routing));
		json_array_extend(expertise, (json_t *)levels);
		choice = csa_team_choose(in->cfg, env->history, expertise, want, in->tk->id, &note);
		json_decref(expertise);
	}
	json_object_set_new(decision, "assignment", choice ? choice : json_null());
	if (!choice)
		json_object_set_new(decision, "assignment_note", json_string(note));
	else
		json_object_del(decision, "assignment_note");
}

static int escalation_process(const struct csa_agent_env *env, const struct csa_agent_input *in,
                              struct csa_agent_output *out, struct csa_err *err)
{
	const char *cat = csa_json_str(in->classification, "category");
	const char *pri = csa_json_str(in->classification, "priority");
	double pe[MAX_LABELS];
	json_t *cascade = json_object(), *why = json_object();
	int e = predict(env, CSA_DT_ESCALATION, in, cat, pri, pe, cascade, why, err);
	if (e < 0) {
		json_decref(cascade);
		json_decref(why);
		return e;
	}
	struct csa_dmodel *m = env->models[CSA_DT_ESCALATION];
	const char *label = csa_dmodel_label(m, (size_t)e);
	int escalate = strcmp(label, "NONE") != 0;
	json_t *path = json_object_get(csa_config_get(in->cfg, "escalation_paths"), label);
	size_t n = 0;
	double eta = env->history ? csa_history_eta_hours(env->history, cat, pri, &n) : -1;
	char summary[400];
	const char *company =
	    csa_json_str(json_object_get(json_object_get(in->tk->e, "participants"), "customer"),
	                 "company_name");
	snprintf(summary, sizeof(summary),
	         "%s %s ticket from %s (%s tier, %s sentiment, %lld earlier tickets): %.160s",
	         pri ? pri : "?", cat ? cat : "?", company && *company ? company : "a customer",
	         in->tier ? in->tier : "unknown", sent_bucket(in->sentiment),
	         csa_json_int(in->customer_history, "tickets", 0), in->text ? in->text : "");
	out->decision =
	    json_pack("{s:b, s:s, s:O?, s:s, s:s, s:o, s:I, s:f}", "escalate", escalate,
	              "escalation_path", label, "escalation_levels", escalate ? path : NULL,
	              "urgency_level", urgency_for(pri, in->sla_status), "context_summary", summary,
	              "estimated_resolution_time", eta >= 0 ? json_real(eta) : json_null(),
	              "eta_sample_size", (json_int_t)n, "escalate_confidence", pe[e]);
	if (!escalate)
		json_object_set_new(out->decision, "escalation_levels", json_array());
	csa_escalation_propose_assignment(env, in, label, escalate ? path : NULL, out->decision);
	attach_cascade(out->decision, cascade, why);
	out->confidence = pe[e];
	out->alternatives = alternatives(m, pe, e, 2);
	snprintf(out->rationale, sizeof(out->rationale),
	         "%s (%.0f%%); estimated %s hours from %zu similar resolved tickets",
	         escalate ? "escalate" : "no escalation", 100 * pe[e],
	         eta >= 0 ? "known" : "unknown", n);
	if (eta >= 0) {
		char tail[64];
		snprintf(tail, sizeof(tail), " (median %.1f h)", eta);
		strncat(out->rationale, tail, sizeof(out->rationale) - strlen(out->rationale) - 1);
	}
	return CSA_OK;
}

/* ---- updates: plan, schedule, notifications -------------------------- */

/* Minutes between stakeholder updates by priority, halved when the SLA is
 * at risk; a breached SLA means update now and then every 30 minutes. */
static int update_interval(const struct csa_config *cfg, const char *priority, int sla_status)
{
	json_t *t = csa_config_get(cfg, "updates.interval_minutes");
	int base = (int)csa_json_int(t, priority ? priority : "MEDIUM", 480);
	if (sla_status == 2)
		return 30 < base ? 30 : base;
	return sla_status == 1 ? base / 2 : base;
}

/* When the ticket should be done: its creation plus the escalation
 * agent's resolution-time estimate (the median of similar resolved
 * tickets), else plus the SLA's resolution time; an estimate already past
 * counts again from now (the ticket ran over). */
static void estimated_completion(const struct csa_agent_input *in, const char *priority,
                                 int64_t now, char ts[CSA_TS_LEN], int *known)
{
	int64_t created = now;
	csa_ts_parse(csa_json_str(in->tk->t, "card_create_timestamp"), &created);
	double hours = csa_json_num(in->escalation, "estimated_resolution_time", -1);
	double minutes =
	    hours >= 0 ? hours * 60
	               : (double)csa_sla_minutes(in->cfg, "resolution_minutes", priority, in->tier);
	*known = minutes >= 0;
	int64_t at = created + (int64_t)(minutes * 60000);
	if (at <= now)
		at = now + (int64_t)(minutes * 60000);
	csa_ts_format(at, ts);
}

/* Where the ticket stands: see agent.h. */
json_t *csa_updates_progress(const struct csa_agent_input *in, int64_t now)
{
	const char *strategy = csa_json_str(in->selection, "strategy");
	const char *pri = csa_json_str(in->classification, "priority");
	int escalate = json_is_true(json_object_get(in->escalation, "escalate"));
	const char *path = csa_json_str(in->escalation, "escalation_path");
	const char *resolver = json_string_value(
	    json_array_get(json_object_get(in->escalation, "escalation_levels"), 0));
	int interval = update_interval(in->cfg, pri, in->sla_status);
	json_t *blockers = json_array(), *recs = json_array();
	char line[600];
	json_t *params = json_object_get(in->selection, "execution_parameters");
	json_t *assignment = json_object_get(in->escalation, "assignment");
	const char *note = csa_json_str(in->escalation, "assignment_note");
	if (strategy && strcmp(strategy, "REQUEST_MORE_INFO") == 0) {
		json_t *qs = json_object_get(params, "questions");
		snprintf(line, sizeof(line), "waiting for the customer to answer %zu question%s",
		         json_array_size(qs), json_array_size(qs) == 1 ? "" : "s");
		json_array_append_new(blockers, json_string(line));
		size_t i;
		json_t *q;
		json_array_foreach(qs, i, q)
		{
			if (!json_is_string(q))
				continue;
			snprintf(line, sizeof(line), "ask the customer: %.500s",
			         json_string_value(q));
			json_array_append_new(recs, json_string(line));
		}
	}
	if (escalate) {
		snprintf(line, sizeof(line), "waiting for the %s escalation (%s)",
		         path ? path : "?", resolver ? resolver : "no level configured");
		json_array_append_new(blockers, json_string(line));
		/* whoever works the ticket: this run's choice, else the member
		 * already assigned, else the escalation's first level */
		const char *who = json_is_object(assignment)
		                      ? csa_json_str(assignment, "member")
		                      : csa_json_str(in->tk->t, "assigned_member");
		snprintf(line, sizeof(line), "brief %s with the context summary",
		         who        ? who
		         : resolver ? resolver
		                    : "the escalation");
		json_array_append_new(recs, json_string(line));
	}
	if (note && strcmp(note, "already assigned") &&
	    json_array_size(csa_config_get(in->cfg, "team.members")) > 0) {
		snprintf(line, sizeof(line), "no resolver: %s", note);
		json_array_append_new(blockers, json_string(line));
		json_array_append_new(recs, json_string("assign the ticket to a team member"));
	}
	const char *article = csa_json_str(json_object_get(params, "article"), "id");
	if (strategy && article &&
	    (!strcmp(strategy, "TEMPLATE_RESPONSE") || !strcmp(strategy, "AUTOMATED_RESOLUTION"))) {
		snprintf(line, sizeof(line), "send the reply drafted from article '%.200s'",
		         article);
		json_array_append_new(recs, json_string(line));
	}
	snprintf(line, sizeof(line), "update the customer within %d minutes", interval);
	json_array_append_new(recs, json_string(line));
	char ts[CSA_TS_LEN];
	int known = 0;
	estimated_completion(in, pri, now, ts, &known);
	const char *status = json_array_size(blockers)    ? "blocked"
	                     : json_is_object(assignment) ? "assigned"
	                                                  : "in_progress";
	return json_pack("{s:s, s:s?, s:o, s:o}", "status", status, "estimated_completion",
	                 known ? ts : NULL, "blockers", blockers, "ai_recommendations", recs);
}

static int updates_process(const struct csa_agent_env *env, const struct csa_agent_input *in,
                           struct csa_agent_output *out, struct csa_err *err)
{
	(void)err;
	const char *cat = csa_json_str(in->classification, "category");
	const char *pri = csa_json_str(in->classification, "priority");
	const char *strategy = csa_json_str(in->selection, "strategy");
	int escalate = json_is_true(json_object_get(in->escalation, "escalate"));
	const char *path = csa_json_str(in->escalation, "escalation_path");
	json_t *levels = json_object_get(in->escalation, "escalation_levels");
	const char *resolver = json_string_value(json_array_get(levels, 0));
	const char *client = csa_json_str(in->tk->t, "client_name");
	int interval = update_interval(in->cfg, pri, in->sla_status);
	int64_t now = csa_now_ms();
	char ts[CSA_TS_LEN];

	json_t *plan = json_array();
	json_array_append_new(plan, json_pack("{s:s, s:s}", "step", "acknowledge", "detail",
	                                      "confirm receipt to the customer"));
	if (escalate)
		json_array_append_new(plan, json_pack("{s:s, s:s, s:s?}", "step", "escalate",
		                                      "detail", path, "to", resolver));
	json_array_append_new(plan,
	                      json_pack("{s:s, s:s?}", "step", "respond", "strategy", strategy));
	json_array_append_new(
	    plan, json_pack("{s:s, s:i}", "step", "follow_up", "interval_minutes", interval));

	json_t *schedule = json_array();
	for (int k = 0; k < 3; k++)
		json_array_append_new(
		    schedule, json_pack("{s:s, s:s}", "at",
		                        csa_ts_format(now + (int64_t)k * interval * 60000, ts),
		                        "audience", k == 0 ? "customer" : "customer+internal"));

	char msg[512];
	json_t *notes = json_array();
	snprintf(msg, sizeof(msg),
	         "Hello %s, thank you for contacting us. Your request has been received and "
	         "classified as %s with %s priority. We will update you within %d minutes.",
	         client && *client ? client : "there", cat ? cat : "a support request",
	         pri ? pri : "normal", interval);
	json_array_append_new(notes, json_pack("{s:s, s:s}", "to", "customer", "message", msg));
	if (escalate) {
		snprintf(msg, sizeof(msg), "Escalated to you (%s path, %s urgency): %.300s", path,
		         csa_json_str(in->escalation, "urgency_level"),
		         csa_json_str(in->escalation, "context_summary"));
		json_array_append_new(notes, json_pack("{s:s, s:s?, s:s}", "to", "resolver", "who",
		                                       resolver, "message", msg));
	}
	snprintf(msg, sizeof(msg), "Ticket %s: %s / %s, strategy %s%s%s.", in->tk->id,
	         cat ? cat : "?", pri ? pri : "?", strategy ? strategy : "?",
	         escalate ? ", escalated to " : "", escalate ? path : "");
	json_array_append_new(notes,
	                      json_pack("{s:s, s:s}", "to", "internal_channel", "message", msg));

	out->decision = json_pack("{s:o, s:o, s:o, s:o}", "update_plan", plan,
	                          "communication_schedule", schedule, "stakeholder_notifications",
	                          notes, "progress", csa_updates_progress(in, now));
	/* The plan follows from the decisions before it: it is as certain as
	 * the least certain of them. */
	out->confidence = in->prior_confidence;
	out->alternatives = json_array();
	snprintf(out->rationale, sizeof(out->rationale),
	         "updates every %d minutes for %s priority with SLA %s", interval, pri ? pri : "?",
	         in->sla_status == 2 ? "breached"
	         : in->sla_status    ? "at risk"
	                             : "on time");
	return CSA_OK;
}

const struct csa_agent csa_agents[CSA_AGENT_COUNT] = {
    {"classifier", classifier_process},
    {"selector", selector_process},
    {"escalation", escalation_process},
    {"updates", updates_process},
};
