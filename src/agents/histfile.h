/*
 * The history index kept between runs (.csa/history.idx), so that opening
 * a workspace of 100,000 tickets does not parse 100,000 workflow files, nor
 * look at each of them.
 *
 * Each line holds one entry and the signature of its ticket's files
 * (csa_mesh_files_sig, 0 when not known settled); the header holds the
 * store's position (csa_store_position) when the entries are provably the
 * store as of it: every commit from the load to the save went through the
 * saving handle and was put in the index by its observer
 * (csa_history_track). Loading then:
 *   - takes every entry as it is when the store's position is still the
 *     file's (no commit by anyone since, no file of Tickets/ added,
 *     renamed or removed): one file read, whatever the number of tickets;
 *   - else lists the workflow files, and reuses an entry only when the
 *     ticket's files still have its signature and are older than the index
 *     by more than the timestamp granularity; every other ticket is read
 *     from its files. A missing, foreign, older (version 2) or damaged
 *     index file therefore costs time, never correctness.
 * What no position shows, a file edited in place by hand, is found by
 * csa_history_verify(), which a server runs on a thread after a load by
 * position.
 */
#ifndef CSA_AGENTS_HISTFILE_H
#define CSA_AGENTS_HISTFILE_H

#include <stdatomic.h>
#include <stddef.h>
#include "base/err.h"

struct csa_history;
struct csa_ws;

/* Fill an empty index from the workspace, using .csa/history.idx where it
 * is still right, and track ws->store's commits from then on
 * (csa_history_track). *reused (may be NULL) counts the entries taken from
 * the file; *by_position (may be NULL) is 1 when the file's position was
 * the store's and no ticket was looked at. */
int csa_history_load(struct csa_history *h, struct csa_ws *ws, size_t *reused, int *by_position,
                     struct csa_err *err);

/* Write .csa/history.idx atomically with every entry, and with the
 * store's position when the index provably holds the store as of it. Call
 * it when no commit through ws->store is under way (closing), since the
 * observer puts a commit's entry only once the commit returned. */
int csa_history_save(struct csa_history *h, struct csa_ws *ws, struct csa_err *err);

/* Compare every ticket's signature with its entry's and read again the
 * tickets whose files changed (or whose entry has no signature, or which
 * have no entry), on 'threads' threads (0: one a core), without ever
 * replacing an entry put meanwhile (csa_history_put_if). Stops early when
 * *stop (may be NULL) becomes nonzero. *reread (may be NULL) counts the
 * entries it replaced or added. */
int csa_history_verify(struct csa_history *h, struct csa_ws *ws, int threads,
                       const atomic_int *stop, size_t *reread, struct csa_err *err);

#endif
