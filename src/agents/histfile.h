/*
 * The history index kept between runs (.csa/history.idx), so that opening
 * a workspace of 100,000 tickets does not parse 100,000 workflow files.
 *
 * Each line holds one entry and the signature of its ticket's files
 * (csa_mesh_files_sig). Loading lists the workflow files, and reuses an
 * entry only when the ticket's files still have that signature and are
 * older than the index by more than the timestamp granularity; every other
 * ticket is read from its files as before. A missing, foreign or damaged
 * index file therefore costs time, never correctness.
 */
#ifndef CSA_AGENTS_HISTFILE_H
#define CSA_AGENTS_HISTFILE_H

#include "base/err.h"

struct csa_history;
struct csa_ws;

/* Fill an empty index from the workspace, using .csa/history.idx where it
 * is still right. *reused (may be NULL) counts the entries taken from it. */
int csa_history_load(struct csa_history *h, struct csa_ws *ws, size_t *reused, struct csa_err *err);

/* Write .csa/history.idx atomically from the entries whose signature is
 * known. */
int csa_history_save(struct csa_history *h, struct csa_ws *ws, struct csa_err *err);

#endif
