/*
 * The foundation model evaluator of spec §2 (`csa eval-models`): on the
 * team's own labelled history (the import JSONL), each candidate backend
 * is measured per decision type (zero-shot = native performance, few-shot
 * = prompt effectiveness), on context retention (category accuracy on
 * multi-turn tickets given the whole conversation), calibration (ECE),
 * latency p50/p95 and cost per 1,000 tickets; the §2.2 matrix assigns each
 * a role (primary, secondary, specialised, edge cases) and, for each LLM,
 * the cascade threshold that meets a target accuracy at least cost.
 *
 * The history is split in time order: the first 80% trains the embedded
 * model and supplies few-shot examples, the rest (at most 'limit' tickets)
 * is the test set every backend sees.
 */
#ifndef CSA_FLOW_EVALM_H
#define CSA_FLOW_EVALM_H

#include <jansson.h>
#include <stdio.h>
#include "base/err.h"

struct csa_ws;

struct csa_evalm_opts {
	const char *backends; /* "embedded,openai:MODEL,anthropic:MODEL,NAME" */
	size_t limit;         /* test tickets (0: 200) */
	int shots;            /* few-shot examples (0: 3) */
	double target;        /* accuracy the cascade must meet */
	unsigned seed;
	int save_calibration; /* write models/llm-calibration.json */
};

int csa_eval_models(struct csa_ws *ws, FILE *in, const char *name, const struct csa_evalm_opts *o,
                    json_t **report, struct csa_err *err);

/* The report as the §2.2 matrix, for people. */
void csa_eval_models_print(const json_t *report, FILE *out);

#endif
