/*
 * The primary agents of spec §5.1 behind one interface:
 *   process(input) -> decision, confidence, alternatives, rationale,
 *                     requires_human_review
 * Classifier (category, priority, routing), Selector (strategy and its
 * execution parameters), Escalation (escalate?, path, urgency, ETA, context
 * summary) and Updates (plan, schedule, notifications). Feedback from
 * humans reaches the models through the pipeline (flow/pipeline.h), which
 * rebuilds an agent's input from the ticket and calls csa_dmodel_learn().
 */
#ifndef CSA_AGENTS_AGENT_H
#define CSA_AGENTS_AGENT_H

#include <jansson.h>
#include <stdint.h>
#include "agents/dmodel.h"
#include "base/config.h"
#include "base/err.h"
#include "store/store.h"

struct csa_kb;
struct csa_history;
struct csa_cascade;

/* What the agents share: models per decision type (NULL when untrained:
 * the agent then fails and the ticket goes to a human), the knowledge
 * base (may be NULL), the history index, the LLM cascade (NULL when no
 * backend is configured: the embedded model decides alone). All borrowed. */
struct csa_agent_env {
	struct csa_dmodel *models[CSA_DT_COUNT];
	struct csa_kb *kb;
	struct csa_history *history;
	struct csa_cascade *cascade;
};

/* Everything an agent may look at for one ticket. */
struct csa_agent_input {
	const struct csa_config *cfg; /* the run's configuration snapshot */
	const struct csa_ticket *tk;
	const char *text;         /* customer text the decision is about */
	const char *tier;         /* subscription tier or NULL */
	const char *platform;     /* platform or NULL */
	double sentiment;         /* mean score of the customer's messages */
	int sla_status;           /* 0 on_time, 1 at_risk, 2 breached */
	int agent_replies;        /* cs_agent messages so far (resolution attempts) */
	json_t *customer_history; /* borrowed, from the context manager */
	json_t *similar_cases;    /* borrowed JSON array of ticket ids */
	/* lowest confidence of the decisions made before this one in the run */
	double prior_confidence;
	/* earlier decisions of this run (borrowed, NULL when not yet made) */
	const json_t *classification, *selection, *escalation;
};

/* A decision that went through the LLM cascade carries its trace in
 * decision.cascade.<type> (llm/cascade.h). Selector decisions for
 * TEMPLATE_RESPONSE and AUTOMATED_RESOLUTION carry a drafted reply in
 * decision.execution_parameters.draft_reply. */
struct csa_agent_output {
	json_t *decision;     /* owned */
	double confidence;    /* calibrated, 0..1 */
	json_t *alternatives; /* owned: [{"value", "confidence"}] */
	char rationale[512];
	int requires_human_review;
};

void csa_agent_output_release(struct csa_agent_output *o);

enum csa_agent_id {
	CSA_AGENT_CLASSIFIER,
	CSA_AGENT_SELECTOR,
	CSA_AGENT_ESCALATION,
	CSA_AGENT_UPDATES,
	CSA_AGENT_COUNT
};

struct csa_agent {
	const char *name; /* as in T.agent_decisions[].agent */
	int (*process)(const struct csa_agent_env *env, const struct csa_agent_input *in,
	               struct csa_agent_output *out, struct csa_err *err);
};

/* The agents in pipeline order. */
extern const struct csa_agent csa_agents[CSA_AGENT_COUNT];

/*
 * Structured features of a decision type for an input ("tier=PREMIUM",
 * "sent=neg", "cat=BILLING_INQUIRY", ...), written into buf as NUL-separated
 * strings with pointers in feats (at most max). Returns the count. The same
 * function serves training, prediction and feedback, so they always agree.
 */
size_t csa_agent_features(enum csa_dtype t, const struct csa_agent_input *in, const char *category,
                          const char *priority, char *buf, size_t bufsz, const char **feats,
                          size_t max);

/*
 * Whether the escalation agent may choose a resolver for tk: the roster
 * (csa.json team.members) has members and the ticket has no member, or
 * has the agent's own choice of a member not on the technical team (a
 * TECHNICAL escalation hands it over); a person's assignment is never
 * overridden. Whoever runs the agent, or csa_escalation_propose_assignment,
 * on such a ticket holds the capacity lock (agents/capacity.h) until the
 * assignment is committed.
 */
int csa_escalation_may_assign(const struct csa_config *cfg, const struct csa_ticket *tk);

/*
 * The escalation agent's choice of who works in->tk for an escalation to
 * 'label' (NONE, TECHNICAL, ...; 'levels' the path's levels, NULL when not
 * escalating): the member whose skills match most of the expertise (the
 * routing of in->classification, which may be NULL, and the levels), of
 * the technical team for TECHNICAL and of the CS team otherwise, least
 * loaded for their capacity (agents/team.h). Sets decision's "assignment"
 * (the choice) or null with "assignment_note" saying why there is none.
 * Agent runs and a person's escalation decision (flow/pipeline.h,
 * csa_pipeline_feedback) both choose here.
 */
void csa_escalation_propose_assignment(const struct csa_agent_env *env,
                                       const struct csa_agent_input *in, const char *label,
                                       const json_t *levels, json_t *decision);

/*
 * The updates agent's "progress" for in (its classification, selection
 * and escalation, each may be NULL): {"status", "estimated_completion",
 * "blockers", "ai_recommendations"}, status "blocked" while the ticket
 * waits on someone (the customer asked for more information, the team an
 * escalation went to, a free team member), else "assigned" when
 * in->escalation chose a resolver, else "in_progress". New reference.
 */
json_t *csa_updates_progress(const struct csa_agent_input *in, int64_t now);

/* Confidence threshold under which an agent asks for a human
 * (agents.confidence_threshold, default 0.8 as in spec §5.1). */
double csa_agent_threshold(const struct csa_config *cfg);

#endif
