/*
 * History import (docs/DATA.md): labelled past tickets, one JSON object per
 * line, go into the mesh as resolved tickets whose decisions are the human
 * (gold) ones; then one model per decision type is trained on them and
 * saved in models/, with its held-out accuracy.
 */
#ifndef CSA_FLOW_IMPORT_H
#define CSA_FLOW_IMPORT_H

#include <jansson.h>
#include <stdio.h>
#include "agents/dmodel.h"
#include "base/config.h"
#include "base/err.h"

struct csa_ws;

/*
 * Build a ticket's documents from one history line (validated: the gold
 * decisions must be in the taxonomy). *tk is filled; 'line' names the line
 * in errors.
 */
struct csa_ticket;
int csa_import_ticket(const struct csa_config *cfg, const json_t *h, size_t line,
                      struct csa_ticket *tk, struct csa_err *err);

/* Import a JSONL stream and train; *report receives {"tickets", "skipped_existing",
 * "models": {type: {"heldout_accuracy", "n", "labels"}}, "seconds"}. With
 * train == 0 only the tickets are stored. The history index (saved with
 * the store's position: agents/histfile.h) and the search index are left
 * current, so a server's first start reads no ticket for them. */
int csa_import_jsonl(struct csa_ws *ws, FILE *in, const char *name, int train, json_t **report,
                     struct csa_err *err);

/* The labels of a decision type from the configuration (taxonomy lists;
 * "NONE" and the escalation_paths keys for escalation), borrowed from cfg. */
size_t csa_import_labels(const struct csa_config *cfg, enum csa_dtype t, const char **out,
                         size_t max);

/* Train the four models from every resolved ticket in the workspace whose
 * decisions were confirmed by humans. */
int csa_import_train(struct csa_ws *ws, unsigned seed, json_t **report, struct csa_err *err);

/*
 * Training data kept between trainings of one workspace, for a process that
 * trains again and again while it commits (the replay retrains every 1,000
 * tickets): every ticket's training row is read once, and again only when
 * the ticket is committed through ws's store handle, whose commits the
 * cache observes (csa_store_observe, from csa_train_cache_new() to
 * csa_train_cache_free()). Commits by
 * another handle or process are not seen: do not use it where there are
 * any. csa_import_train_cached() trains exactly as csa_import_train()
 * would on the workspace as it is (the same rows in the same order).
 */
struct csa_train_cache;
int csa_train_cache_new(struct csa_ws *ws, struct csa_train_cache **out, struct csa_err *err);
/* Stops observing the store and frees the rows. NULL is a no-op. */
void csa_train_cache_free(struct csa_train_cache *tc);
/* As csa_import_train(). On failure the next call reads every ticket again. */
int csa_import_train_cached(struct csa_train_cache *tc, unsigned seed, json_t **report,
                            struct csa_err *err);

#endif
