/*
 * LLM backends (issue 6): the OpenAI-compatible chat-completions protocol
 * (OpenAI, vLLM, llama.cpp's server, Ollama, most hosted models) and
 * Anthropic's Messages API, behind one call that asks for structured output
 * (a JSON schema, or a forced tool call) and validates what comes back.
 *
 * A backend is configured in csa.json under llm.backends.NAME:
 *   kind               "openai" | "anthropic"
 *   endpoint           base URL: ".../v1" for openai (POST .../chat/completions),
 *                      "https://api.anthropic.com" for anthropic (POST .../v1/messages)
 *   model              model name sent to the server
 *   api_key_env        environment variable holding the key (never stored)
 *   timeout_ms, retries, backoff_ms, max_backoff_ms, max_retry_after_ms
 *   context_window, max_output_tokens (tokens)
 *   price_in_per_1k, price_out_per_1k (money per 1,000 tokens)
 *   redact             true | false | ["email", "phone", "card", "iban"]
 *   structured         "json_schema" | "json_object" (openai only)
 *   logprobs           ask for token log-probabilities (openai only)
 *   breaker_failures, breaker_cooldown_ms
 *
 * Failures: 429 waits for Retry-After (up to max_retry_after_ms; longer
 * waits open the circuit until then), 5xx, timeouts and refused
 * connections are retried with exponential backoff and jitter, other 4xx
 * are not. After breaker_failures failed calls in a row the circuit opens
 * for breaker_cooldown_ms: calls fail at once, then one probe call decides
 * whether it closes again. An answer that is not valid JSON, misses a field
 * or names a label outside the list is a failed call, never a decision.
 *
 * Thread-safe: one backend serves concurrent calls.
 */
#ifndef CSA_LLM_BACKEND_H
#define CSA_LLM_BACKEND_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "base/err.h"

struct csa_llm;

struct csa_llm_usage {
	long tokens_in, tokens_out;
	double cost;        /* tokens x configured prices */
	int64_t latency_ms; /* the whole call: attempts and waits */
	int attempts;       /* HTTP requests made (0 when the circuit was open) */
	size_t redactions;  /* personal data items removed from the prompt */
};

/* 'conf' is the llm.backends.NAME object. */
int csa_llm_open(const char *name, const json_t *conf, struct csa_llm **out, struct csa_err *err);
void csa_llm_free(struct csa_llm *b);

const char *csa_llm_name(const struct csa_llm *b);
const char *csa_llm_kind(const struct csa_llm *b);
const char *csa_llm_model(const struct csa_llm *b);
long csa_llm_context_window(const struct csa_llm *b);
/* Cost of a call with these token counts. */
double csa_llm_price(const struct csa_llm *b, long tokens_in, long tokens_out);
/* Upper bound of the cost of a prompt of 'prompt_bytes' (for budgets). */
double csa_llm_cost_bound(const struct csa_llm *b, size_t prompt_bytes);
/* 1 when the circuit lets a call through now. */
int csa_llm_available(struct csa_llm *b);

/* A labelled example for few-shot prompts. */
struct csa_llm_example {
	const char *text;
	const char *label;
};

/* One decision: choose a label for a ticket. */
struct csa_llm_task {
	const char *dtype; /* "category", "priority", ... (for the prompt) */
	const char *const *labels;
	size_t n_labels;
	const char *text;         /* the conversation */
	const char *const *feats; /* "tier=PREMIUM", ... (context lines) */
	size_t n_feats;
	const struct csa_llm_example *examples; /* few-shot, may be NULL */
	size_t n_examples;
};

/*
 * Classify: *label is an index into task->labels; *confidence is the
 * probability of the label's tokens when the backend returns
 * log-probabilities (*from_logprobs = 1), else the model's own stated
 * confidence (*from_logprobs = 0), which callers calibrate on history.
 */
int csa_llm_classify(struct csa_llm *b, const struct csa_llm_task *task, int *label,
                     double *confidence, int *from_logprobs, struct csa_llm_usage *u,
                     struct csa_err *err);

/* Draft a reply to the customer grounded in a knowledge-base article.
 * *reply is malloc'd. */
int csa_llm_draft(struct csa_llm *b, const char *article, const char *conversation, char **reply,
                  struct csa_llm_usage *u, struct csa_err *err);

/* What an entry of drafted knowledge may be. */
struct csa_llm_knowledge_limits {
	size_t max_items;            /* entries a list */
	size_t min_bytes, max_bytes; /* of an entry */
};

/*
 * Draft the knowledge of a resolved ticket ('ticket': its conversation as
 * text, the customer's and the team's messages; redacted here as every
 * prompt is). *out (new) is {"solution_patterns", "troubleshooting_steps",
 * "prevention_measures"}: exactly these keys, each an array of at most
 * lim->max_items strings of lim->min_bytes to lim->max_bytes without
 * control characters, not all empty. Any other answer is a failed call
 * (CSA_EPARSE naming the field, counted by the circuit breaker) and *out
 * stays NULL.
 */
int csa_llm_knowledge(struct csa_llm *b, const char *ticket,
                      const struct csa_llm_knowledge_limits *lim, json_t **out,
                      struct csa_llm_usage *u, struct csa_err *err);

#ifdef CSA_TESTING
/* Replace the waits between attempts (tests record them instead). */
void csa_llm_test_set_sleep(void (*fn)(void *ctx, int64_t ms), void *ctx);
#endif

#endif
