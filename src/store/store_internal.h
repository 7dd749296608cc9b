/*
 * Helpers shared by the ticket store's backends (store/mesh.c,
 * store/store_pg.c), for src/store/ only: what a commit does to a
 * ticket's documents before any backend writes them is the same on every
 * backend, so both refuse and accept exactly the same documents.
 */
#ifndef CSA_STORE_STORE_INTERNAL_H
#define CSA_STORE_STORE_INTERNAL_H

#include <stddef.h>
#include "base/config.h"
#include "base/err.h"
#include "store/store.h"

/* The letter of document kind k (0 E, 1 I, 2 T). */
static inline char csa_doc_letter(int k)
{
	return "EIT"[k];
}

/*
 * Prepare ticket tk's documents for a commit stamped 'ts': all three must
 * be present; E's and I's last_updated are set when 'docs' names them,
 * T's last_synchronized always; each document is checked against the
 * schema (store/schema.h) and the configured limits, then serialised as
 * compact JSON in its key order into out[k] (malloc'd, length len[k]),
 * within lim->max_document_bytes. On failure every out[k] is NULL.
 */
/* Significant digits of a real number in a stored document. */
#define CSA_STORE_REAL_PRECISION 10

int csa_ticket_prepare_commit(struct csa_ticket *tk, unsigned docs, const char *ts,
                              const struct csa_limits *lim, char *out[3], size_t len[3],
                              struct csa_err *err);

#endif
