/*
 * The knowledge base: the .md files of kb/, each a small header and a body,
 *
 *   id: billing-duplicate-charge
 *   title: Refund of a duplicate charge
 *   categories: BILLING_INQUIRY
 *   strategy: TEMPLATE_RESPONSE
 *   ---
 *   Hello {{client_name}}, ...
 *
 * indexed in an in-memory SQLite FTS5 table and searched with bm25,
 * filtered by category and strategy. Bodies may hold {{name}} fields filled
 * from the ticket.
 * Thread-safe (the SQLite handle is serialised).
 */
#ifndef CSA_AGENTS_KB_H
#define CSA_AGENTS_KB_H

#include <jansson.h>
#include <stddef.h>
#include "base/err.h"
#include "store/blobs.h"

struct csa_kb;

#define CSA_KB_MAX_ARTICLE_BYTES 65536

/* Load every kb/<name>.md of the workspace's documents (store/blobs.h; none is
 * an empty KB). A malformed header is an error naming the file and line. */
int csa_kb_open(struct csa_blobs *blobs, struct csa_kb **out, struct csa_err *err);
void csa_kb_free(struct csa_kb *kb);
size_t csa_kb_count(const struct csa_kb *kb);

/* Up to k articles for 'text' (any bytes: it is reduced to search words),
 * restricted to a category and a strategy when given (NULL: any). *out is a
 * new array of {"id", "title", "strategy", "score"} (higher is better). */
int csa_kb_search(struct csa_kb *kb, const char *text, const char *category, const char *strategy,
                  size_t k, json_t **out, struct csa_err *err);

/* Whether the word w (n bytes) is one of the words the search leaves out
 * as saying nothing about an article ("please", "the", ...). */
int csa_kb_is_stopword(const char *w, size_t n);

/* An article by id: {"id", "title", "categories", "strategy", "body"}, or
 * NULL. New reference. */
json_t *csa_kb_get(struct csa_kb *kb, const char *id);

/* Replace {{name}} by vars[name] (strings; unknown names are left as they
 * are). The result is at most 'max' bytes. Caller frees. */
char *csa_kb_render(const char *body, const json_t *vars, size_t max);

/* Write the default articles as kb/<name>.md (existing ones are kept). */
int csa_kb_write_defaults(struct csa_blobs *blobs, struct csa_err *err);

/* In the workspace at 'ws_root', if csa_ws_init() left the marker
 * CSA_WS_KB_SEED (a new workspace), write the default articles into its
 * documents (kb/) and remove the marker; otherwise do nothing, so a
 * knowledge base a team has emptied stays empty. Idempotent, safe in
 * concurrent processes. */
int csa_kb_seed(struct csa_blobs *docs, const char *ws_root, struct csa_err *err);

#endif
