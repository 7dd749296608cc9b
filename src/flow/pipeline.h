/*
 * The coordinator of spec §5.2: trigger -> classifier -> selection ->
 * escalation -> updates -> end, over one ticket, in one atomic commit.
 *
 * A run builds the context (context manager: the customer's text, sentiment
 * per message, SLA state, customer history, similar cases), runs the agents
 * in order, records every decision in T.agent_decisions (with a decision id
 * "<T_NO>:<agent>:<n>"), fills E's ai_processing and sentiment_analysis and
 * an I analysis message with ai_insights, advances workflow_stage, and asks
 * the automation hook which decisions may be applied without a human. An
 * agent that fails stops the chain and marks the ticket for a human; the
 * ticket and its messages are committed either way.
 *
 * Thread-safe: runs on different tickets proceed in parallel; runs on one
 * ticket are serialised by its lock.
 */
#ifndef CSA_FLOW_PIPELINE_H
#define CSA_FLOW_PIPELINE_H

#include <jansson.h>
#include "agents/agent.h"
#include "base/err.h"

struct csa_ws;
struct csa_pipeline;

/* One decision handed to the automation controller. */
struct csa_flow_decision {
	const char *ticket_id;
	const char *decision_id;
	enum csa_dtype type;
	const char *value; /* the AI's proposal */
	double confidence;
	const char *segment; /* the ticket's category (its segment) */
	/* that category was applied autonomously in this run (0: a person
	 * decides it, so what builds on it is not settled yet) */
	int category_autonomous;
	int critical; /* the ticket may be CRITICAL (csa_pipeline_possibly_critical) */
	const json_t *alternatives;
	const char *model_version;
	const char *input_digest; /* SHA-256 of the decision's input */
};

/* The automation controller's say (issue 4). Without a hook every decision
 * goes to a human (PHASE_1 behaviour). Called under the ticket's lock. */
struct csa_flow_hooks {
	void *ctx;
	/* At the start of a run on a ticket: the hook's context of that run
	 * (what on_decision records waits there), handed back as 'run' to
	 * every call below until end_run. May return NULL (the hook decides
	 * what that means; the pipeline only passes it on). May be NULL. */
	void *(*begin_run)(void *ctx);
	/* Return 1 to apply autonomously, 0 to leave it to a human; may record
	 * review tasks, audit records, metrics into 'run'. */
	int (*on_decision)(void *ctx, void *run, const struct csa_flow_decision *d,
	                   json_t *audit_info);
	/* After a run's last on_decision, before its ticket is committed: make
	 * what on_decision recorded durable, all at once. An error fails the
	 * run: its ticket is not committed. May be NULL. */
	int (*decisions_done)(void *ctx, void *run, struct csa_err *err);
	/* The ticket could not be committed after decisions_done succeeded:
	 * take back what it recorded for the run's decisions (ids, n of them;
	 * 'why' the commit's error). Called under the ticket's lock, so no
	 * later run on the ticket, which reuses the ids, can be in between.
	 * May be NULL. */
	void (*run_abandoned)(void *ctx, void *run, const char *ticket_id,
	                      const char *const *decision_ids, size_t n, const struct csa_err *why);
	/* The run is over, committed or not (always called after begin_run,
	 * also when the run failed before decisions_done): free 'run'. May be
	 * NULL. */
	void (*end_run)(void *ctx, void *run);
	/* After the commit of a run (for events, metrics). May be NULL. */
	void (*after_run)(void *ctx, const char *ticket_id, const json_t *result);
};

/*
 * Whether a ticket may be CRITICAL, so that decisions on it need the
 * stricter requirement of automation.critical_target_accuracy: its priority
 * (t_doc "priority", borrowed) is CRITICAL; or the classification's priority
 * is CRITICAL or has at least automation.critical_signals.min_probability;
 * or the customer's priority_level (customer, borrowed, may be NULL) is one
 * of critical_signals.customer_priority_levels; or 'text' (may be NULL)
 * mentions one of critical_signals.urgency_words, not negated ("not
 * urgent"). Returns 1 or 0.
 */
struct csa_config;
int csa_pipeline_possibly_critical(const struct csa_config *cfg, const json_t *t_doc,
                                   const json_t *customer, const char *text,
                                   const json_t *classification);

/* Open over a workspace: loads models/ (missing models leave their agents
 * failing to a human), the knowledge base, and indexes the history
 * (agents/histfile.h: after a load by the file's position, a thread checks
 * the entries against the files until it is done or the pipeline freed). */
int csa_pipeline_open(struct csa_ws *ws, struct csa_pipeline **out, struct csa_err *err);
void csa_pipeline_free(struct csa_pipeline *p);

void csa_pipeline_set_hooks(struct csa_pipeline *p, const struct csa_flow_hooks *h);

/* Called after every committed run with its result (borrowed), e.g. to
 * queue notifications. Independent of the automation hooks. */
typedef void (*csa_run_observer)(void *ctx, const char *ticket_id, const json_t *result);
void csa_pipeline_set_observer(struct csa_pipeline *p, csa_run_observer fn, void *ctx);
const struct csa_agent_env *csa_pipeline_env(const struct csa_pipeline *p);
/* The workspace the pipeline was opened over (borrowed). */
struct csa_ws *csa_pipeline_ws(const struct csa_pipeline *p);
struct csa_history *csa_pipeline_history(struct csa_pipeline *p);
/* The workspace-wide lock over the team's load (agents/capacity.h):
 * whoever reads a member's load to assign a ticket holds it until the
 * assignment is committed and in the history index. Borrowed. */
struct csa_capacity *csa_pipeline_capacity(struct csa_pipeline *p);

/* Release the capacity lock taken for tk, after its commit or its
 * failure. When 'changed' (tk's assignment or resolution was committed)
 * the history index takes tk's new state and the capacity log names it,
 * so every process counts it (agents/capacity.h); a failure to write the
 * log is reported on stderr, the lock released anyway. */
void csa_pipeline_capacity_release(struct csa_pipeline *p, const struct csa_ticket *tk,
                                   int changed);

/* Run the pipeline on a ticket. *result (new reference, may be NULL) is
 * the spec's workflow_result: ticket_id, processing_timeline,
 * agent_decisions, final_recommendation, human_intervention_required. */
int csa_pipeline_process(struct csa_pipeline *p, const char *ticket_id, json_t **result,
                         struct csa_err *err);

/*
 * A new message in, pipeline run, result out. 'doc' is either a ticket
 * (the `csa ticket create` document: the ticket is created) or
 * {"ticket_id", "side": "external"|"internal", "message": {...}} (the
 * message is appended). A message already stored (same message_id) is not
 * stored twice and does not re-run the pipeline: result has
 * "duplicate": true. Internal messages are stored without a run, and so
 * are external messages whose sender is not the customer (cs_agent,
 * ai_agent): a reply to the customer, which records the first response
 * (T sla_metrics.first_response_time, E's SLA state) and has
 * "reply": true in its result.
 */
int csa_pipeline_ingest(struct csa_pipeline *p, const json_t *doc, json_t **result,
                        struct csa_err *err);

/* A reply to the customer (an E message whose sender is cs_agent or
 * ai_agent): stored with the first response recorded, no pipeline run;
 * as csa_pipeline_ingest with {"ticket_id", "side": "external",
 * "message"}. */
int csa_pipeline_reply(struct csa_pipeline *p, const char *ticket_id, const json_t *message,
                       json_t **result, struct csa_err *err);

/*
 * A human's decision on decision 'decision_id' of a ticket: marks it
 * human_confirmed with learning_feedback (correct, notes), applies the
 * human's value to the ticket (priority, ...), and, when 'learn' is set,
 * teaches the model of 'type' online if the AI was wrong.
 */
int csa_pipeline_feedback(struct csa_pipeline *p, const char *ticket_id, const char *decision_id,
                          enum csa_dtype type, const char *value, const char *who,
                          const char *notes, int learn, struct csa_err *err);

/* Reload the models from models/ (after training or a rollback). */
int csa_pipeline_reload_models(struct csa_pipeline *p, struct csa_err *err);

/* The text a decision is made on: the customer's messages, oldest first,
 * joined by newlines, at most 'max' bytes from the end (UTF-8 safe). When
 * 'until_first_reply', only those before the first cs_agent reply (what
 * the team knew at triage). Caller frees. */
char *csa_pipeline_text(const json_t *e, size_t max, int until_first_reply);

#endif
