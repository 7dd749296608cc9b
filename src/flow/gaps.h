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

/*
 * An admin accepts an article (a draft of csa_gaps_find, edited or not)
 * into the knowledge base: 'text' (len bytes, kb/ format: "key: value"
 * lines of id, title, categories, strategy, then "---" and the body) is
 * checked as the knowledge base will read it (the header's keys, an id
 * that names a document, a strategy and categories of the taxonomy, at
 * most CSA_KB_MAX_ARTICLE_BYTES of UTF-8), written as kb/<id>.md, and
 * recorded in the audit ledger as a "kb_article" record under
 * "kb/<id>.md": its version (1 for a new article, one more than the last
 * record of that document otherwise), who accepted it, the SHA-256 of the
 * new text and the whole previous text, so every version can be read back
 * from the ledger. A running pipeline (the server's) takes it up within
 * a second, between runs (flow/pipeline.c refresh_kb); commands started
 * afterwards load it.
 *
 * Errors: CSA_EPARSE / CSA_EINVAL naming the line or field, CSA_ELIMIT;
 * nothing is written then. *out is {"id", "document", "version", "sha256",
 * "replaced"}.
 */
int csa_gaps_accept(struct csa_ws *ws, const char *text, size_t len, const char *by, json_t **out,
                    struct csa_err *err);

#endif
