/*
 * The cost-aware cascade (issue 6). The embedded model answers first; a
 * decision goes to the agent's LLM backend (csa.json llm.agents) only when
 * the embedded confidence is under llm.cascade.threshold, the budget allows
 * it (llm.cascade.calls_per_hour, money_per_day, counted in llm.db in the
 * workspace so every process shares them) and the backend's circuit is
 * closed. Whatever the LLM does, the decision falls back to the embedded
 * model: a ticket is never lost or stuck on a backend.
 *
 * An LLM's confidence is the label's token probability when the backend
 * gives log-probabilities, else its stated confidence mapped through the
 * calibration `csa eval-models --save-calibration` fitted on the team's
 * history (models/llm-calibration.json); with neither, it is capped at
 * llm.cascade.uncalibrated_max_confidence so it never clears an autonomy
 * gate unproven.
 *
 * Every choice is returned as a trace for the T-file decision: who decided,
 * both answers, tokens, cost, latency, and why the LLM was or was not asked.
 */
#ifndef CSA_LLM_CASCADE_H
#define CSA_LLM_CASCADE_H

#include <jansson.h>
#include "base/config.h"
#include "base/err.h"
#include "store/blobs.h"

struct csa_cascade;
struct csa_llm;

/* The LLM calibration, fitted by `csa eval-models`, among the workspace's
 * documents (store/blobs.h). */
#define CSA_LLM_CALIBRATION "models/llm-calibration.json"

/* *out is NULL when csa.json names no backend for any agent. The
 * calibration is read from 'docs' (at open only); the call log
 * (llm/calllog.h) is the workspace's database's when 'pg' is not NULL
 * (its tickets are in PostgreSQL: one budget for every node), else its
 * llm.db at 'ws_root'. */
struct csa_pg;
int csa_cascade_open(const struct csa_config *cfg, struct csa_blobs *docs, struct csa_pg *pg,
                     const char *ws_root, struct csa_cascade **out, struct csa_err *err);
void csa_cascade_free(struct csa_cascade *c);

/*
 * Second opinion on one decision of 'agent' ("classifier", "selector",
 * "escalation") of decision type 'type' ("category", ...): probs[n] are the
 * embedded model's calibrated probabilities over labels; when the LLM
 * decides they are replaced (the LLM's label gets its confidence, the rest
 * share what is left in the embedded model's proportions). Returns the
 * trace (new reference), or NULL when no backend serves this agent.
 */
json_t *csa_cascade_refine(struct csa_cascade *c, const char *agent, const char *type,
                           const char *const *labels, size_t n, const char *text,
                           const char *const *feats, size_t nf, double *probs);

/* A reply drafted by the replies backend from a knowledge-base article;
 * NULL when there is none or it failed (the trace says which). */
char *csa_cascade_draft(struct csa_cascade *c, const char *article, const char *conversation,
                        json_t **trace);

/* The knowledge of a resolved ticket drafted by the replies backend
 * (csa_llm_knowledge: 'ticket' its conversation as text, the answer
 * checked against 'lim'), within the circuit and the budget as every
 * call; NULL when there is no replies backend (*trace NULL) or the call
 * was not made or failed (*trace, new, says why: {"backend", "reason":
 * "circuit_open"|"budget_..."|"llm_failed", "error", "usage"}). On
 * success *trace names the backend, usage and "model_version"
 * ("llm:<backend>:<model>"). */
struct csa_llm_knowledge_limits;
json_t *csa_cascade_knowledge(struct csa_cascade *c, const char *ticket,
                              const struct csa_llm_knowledge_limits *lim, json_t **trace);

/* {"calls_last_hour", "cost_today", "calls_per_hour", "money_per_day",
 *  "today_by_backend": {NAME: {"calls", "ok", "cost", "mean_latency_ms",
 *  "tokens_in", "tokens_out"}}}: the KPIs of LLM use. */
json_t *csa_cascade_usage(struct csa_cascade *c);

/* Calibration of stated confidences: bins[10] of {n, correct} per backend
 * and decision type; maps a raw confidence to the bin's smoothed accuracy. */
struct csa_llm_calib {
	long n[10], correct[10];
};
double csa_llm_calib_apply(const struct csa_llm_calib *k, double raw);
void csa_llm_calib_add(struct csa_llm_calib *k, double raw, int correct);
json_t *csa_llm_calib_json(const struct csa_llm_calib *k);
int csa_llm_calib_parse(const json_t *j, struct csa_llm_calib *k);

#endif
