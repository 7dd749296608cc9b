/*
 * A ticket store held in this process's memory: the store of a scratch
 * workspace whose tickets nothing after the process will read (a replay
 * without --workdir, store/ws.h csa_ws_open_memory). It runs the
 * contract of store/store.h on the bytes a file would hold: a commit
 * prepares each ticket exactly as the mesh does (csa_ticket_prepare_commit:
 * the stamps, the schema and limit checks, the serialisation), keeps those
 * bytes, and a load parses them as a load of the files would, so what a
 * caller reads is what the mesh would have given it, byte for byte. What
 * it leaves out is every file operation: a replay committed each ticket
 * about five times, and creating, writing and journalling the files was
 * a third of its main thread.
 *
 * One process, one handle: commits by other processes or handles do not
 * exist, so stamp() always answers "only this handle's" and position()
 * is 0 (nothing of it outlives the process for an index to be checked
 * against). Locks exclude threads of this process. Loads need no lock: a
 * commit replaces a ticket's three documents at once under the store's
 * lock, so a reader always sees whole commits.
 */
#ifndef CSA_STORE_MEMSTORE_H
#define CSA_STORE_MEMSTORE_H

#include "base/err.h"
#include "store/store.h"

struct csa_ws;

/* Open an empty memory store for workspace 'ws' (its configuration gives
 * the size limits; borrowed, it must outlive the store). *out is closed
 * with csa_store_close(), which frees every ticket. CSA_ENOMEM. */
int csa_memstore_open(struct csa_ws *ws, struct csa_store **out, struct csa_err *err);

/* Is 'st' a memory store? */
int csa_store_is_memory(const struct csa_store *st);

#endif
