/*
 * T.active_learning_data (spec §3.2.3): what the Learning Coordinator
 * keeps of every decision, for people and for retraining.
 *
 *  - decision_patterns: per decision type of a run, the terms that
 *    weighed most for the chosen label (agents' "decision_patterns", from
 *    csa_linear_explain): {"decision_id", "decision_type", "value",
 *    "confidence", "features": [{"feature", "weight"}]}.
 *  - context_vectors: what the model saw, without the customer's text:
 *    {"decision_id", "decision_type", "input_digest" (SHA-256 of the
 *    text), "text_bytes", "features" (the structured features, as
 *    csa_agent_features builds them), "sentiment", "sla_status",
 *    "agent_replies"}.
 *  - outcome_measurements: {"kind": "review", "decision_id",
 *    "decision_type", "ai_value", "human_value", "confirmed" (the person
 *    kept the AI's value), "by", "timestamp"} when a person confirms or
 *    reverses a decision; {"kind": "ticket_outcome", "timestamp",
 *    "resolution_time", "customer_satisfaction", "internal_efficiency",
 *    "escalated"} when the ticket is resolved.
 *  - confidence_calibration: {"bin_width": 0.1, "decisions": {"<decision
 *    id>#<type>": {"confidence", "bin": "0.8-0.9", "confirmed": null|bool}},
 *    "bins": {"0.8-0.9": {"decisions", "reviewed", "confirmed",
 *    "accuracy"}}}: the bin of each decision's confidence and the accuracy
 *    people observed in it on this ticket (the workspace's, over every
 *    ticket, is `reliability` in the KPIs).
 *
 * Each array keeps its newest CSA_LEARNING_MAX entries. The functions
 * change T in memory; the caller holds the ticket's lock and commits.
 */
#ifndef CSA_FLOW_LEARNING_H
#define CSA_FLOW_LEARNING_H

#include <jansson.h>
#include <stdint.h>
#include "agents/agent.h"

#define CSA_LEARNING_MAX 256

/* A decision of a run: 'type' with the AI's 'value' and 'confidence' on
 * input 'in' (its text digested as 'digest'), decision 'decision_id';
 * 'patterns' (borrowed, may be NULL) the agent's terms for the type. */
void csa_learning_decision(struct csa_ticket *tk, const struct csa_agent_input *in,
                           const char *decision_id, enum csa_dtype type, const char *value,
                           double confidence, const char *digest, const json_t *patterns);

/* The terms of 'patterns' ([{"feature", "weight"}]) a reader of T may see:
 * without a word of the customer's name, company, e-mail or phone (E's
 * participants.customer), which the model may weigh but T must not
 * repeat. A new array. */
json_t *csa_learning_public_patterns(const json_t *patterns, const json_t *e);

/* A person kept ('confirmed') or changed the AI's value of a decision. */
void csa_learning_review(struct csa_ticket *tk, const char *decision_id, enum csa_dtype type,
                         const char *ai_value, const char *human_value, const char *by,
                         int64_t now_ms);

/* The ticket was resolved: its outcome from T.sla_metrics and whether it
 * was escalated. */
void csa_learning_outcome(struct csa_ticket *tk, int escalated, int64_t now_ms);

#endif
