/*
 * Execution parameters of a response strategy (spec §5.1 Selector): the
 * knowledge-base article or template to answer with, the questions to ask
 * for more information, or the team to hand over to.
 */
#ifndef CSA_AGENTS_KBSEL_H
#define CSA_AGENTS_KBSEL_H

#include <jansson.h>
#include "base/config.h"
#include "base/err.h"

struct csa_kb;

/* *params receives a new object; kb may be NULL (no knowledge base: the
 * parameters then name no article). */
int csa_kbsel_parameters(struct csa_kb *kb, const struct csa_config *cfg, const char *strategy,
                         const char *category, const char *text, json_t **params,
                         struct csa_err *err);

#endif
