/*
 * Knowledge gaps (issue 22): the recent tickets the knowledge base answers
 * badly, grouped, ranked by what they cost, each group with a draft
 * article built from what solved its tickets.
 *
 * A ticket is weak when the best article for what the customer wrote
 * before the first reply (csa_pipeline_text(..., 1), searched in the
 * whole knowledge base, agents/kb.h) scores under 'weak_score' (bm25,
 * higher is better), or no article matches at all. Weak tickets are
 * grouped by their latest classifier category; a group's cost is its
 * volume times its mean handling time (resolution_time, or the time open
 * so far), the order of the list. Each group names the content words that
 * set it apart (its tickets with the word, weighted by the word's inverse
 * frequency over all the tickets looked at), its costliest example tickets and a draft article in
 * the kb/ format: its solution patterns, troubleshooting steps and prevention measures taken from
 * the tickets' knowledge_extraction, most frequent first (sentences of the tickets, never made up).
 */
#ifndef CSA_FLOW_GAPS_H
#define CSA_FLOW_GAPS_H

#include <jansson.h>
#include <stdint.h>
#include "base/err.h"

struct csa_ws;
struct csa_kb;

struct csa_gaps_opts {
	int64_t since_ms;  /* tickets created from then on */
	double weak_score; /* a best match under this is weak */
	size_t max_groups; /* groups listed */
	size_t examples;   /* example tickets per group */
};

/* Defaults: the last 30 days before now, weak under 3.0, 10 groups of 5
 * examples. */
void csa_gaps_opts_default(struct csa_gaps_opts *o);

/*
 * *out (new reference): {"since", "weak_score", "tickets" (looked at),
 * "weak" (of them), "unreadable", "groups": [{"category", "words",
 * "volume", "mean_handling_minutes", "cost_hours", "mean_best_score",
 * "nearest_article", "examples", "draft": {"id", "title", "body",
 * "sources"}}]}. Unreadable tickets are counted, not fatal.
 */
int csa_gaps_find(struct csa_ws *ws, struct csa_kb *kb, const struct csa_gaps_opts *o, json_t **out,
                  struct csa_err *err);

#endif
