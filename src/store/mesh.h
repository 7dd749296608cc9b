/*
 * The tri-file conversation mesh (spec §3.1): the file backend of the
 * store. Each ticket is Tickets/T_ext/E_<id>.json, Tickets/T_int/I_<id>.json
 * and Tickets/tickets/T_<id>.json, written as compact JSON.
 *
 * Atomicity and durability come from the redo journal (store/journal.h):
 * a commit writes the new documents into files of the pool (.csa/pool),
 * appends them to the journal with one fdatasync (the commit point), then
 * swaps each pool file with the document it replaces (RENAME_EXCHANGE), so
 * the old file goes to the pool for a later commit to rewrite and no inode
 * is created or freed; a reader takes a shared lock on the file it opened
 * and checks it is still the one in place, so a rewrite never reaches it. The documents in Tickets/ are brought to disk by checkpoints
 * (syncfs, then the journal starts a new generation over its old records,
 * store/journal.h): every 16 MB of journal, on close,
 * and by recovery. The one a commit starts syncs outside the journal lock,
 * so other commits go on meanwhile; it then drops only the records it
 * synced (the later ones move to a fresh journal file). Commits of one
 * handle made at the same time share one journal record and fdatasync
 * (group commit). A crash at any instant leaves each ticket wholly at its
 * last acknowledged commit or, for a commit that had not returned, at that
 * commit; recovery runs when a workspace is opened.
 *
 * A scratch workspace (csa_ws_open_scratch(), the replay's) runs the same
 * commits without any of the waits for the disk: no fdatasync of the
 * journal, no syncfs or fsync in checkpoints, and the documents written
 * over the old files in place after the journal record (no new inode,
 * so no old one freed, per document per commit). A load (under the
 * ticket's lock) sees whole commits and a failed commit is undone; a crash
 * of the process still recovers from the journal, but a power loss may
 * lose or tear any of it, and a reader without the lock must not run
 * during a commit.
 *
 * Locks: .csa/lock holds one OFD byte-range lock per ticket (offset from a
 * 64-bit hash of the id) and the journal lock at offset 0. OFD locks work
 * between processes and between threads holding different descriptors.
 */
#ifndef CSA_STORE_MESH_H
#define CSA_STORE_MESH_H

#include <stddef.h>
#include <stdint.h>
#include "base/err.h"
#include "store/store.h"

struct csa_ws;

/* What the last recovery did. */
struct csa_mesh_stats {
	long recovered_docs; /* documents rewritten from the journal */
	long torn_bytes;     /* bytes of a torn journal tail dropped */
	long tmp_removed;    /* scratch files of interrupted commits removed */
	long commits;        /* commits by this handle */
	long batches;        /* journal records they took (group commit) */
	long checkpoints;    /* checkpoints by this handle */
};

/* Open the mesh of an initialised workspace and run recovery. */
int csa_mesh_open(struct csa_ws *ws, struct csa_store **out, struct csa_err *err);

/* Open the mesh to look at it only (the file monitor): no recovery (what
 * a crash left is seen as it is, not repaired), commits refused
 * (CSA_ESTATE), no checkpoint on close, every file opened read-only (the
 * workspace may be mounted read-only). Ticket locks are still taken, as
 * shared locks, so a reader never sees half a commit. */
int csa_mesh_open_observer(struct csa_ws *ws, struct csa_store **out, struct csa_err *err);

/* Counters of a mesh store (zeroes for another backend). */
struct csa_mesh_stats csa_mesh_stats(const struct csa_store *st);

/* Path of document 'kind' (0 E, 1 I, 2 T) of ticket 'id' (validated first:
 * CSA_EINVAL for a bad id, before any path is built). */
int csa_mesh_doc_path(const struct csa_ws *ws, int kind, const char *id, char *out, size_t outsz,
                      struct csa_err *err);

/* A signature of the identity of a ticket's three files (inode, size,
 * modification time), 0 when one is missing: a commit renames new files
 * into place and an edit in place changes size or mtime, so a ticket whose
 * signature is unchanged has not changed, unless it changed within the
 * timestamp granularity: callers trust a signature only when *newest_ns
 * (the latest mtime) is a couple of seconds old. */
uint64_t csa_mesh_files_sig(const struct csa_ws *ws, const char *id, int64_t *newest_ns);

/* Directory of document kind, relative to the workspace ("Tickets/T_ext"). */
const char *csa_mesh_dir(int kind);

/* The length of the ticket id in workflow file name 'name' ("T_<id>.json",
 * the id at name + 2); 0 if 'name' is not one. */
size_t csa_mesh_workflow_id_len(const char *name);

/* Test hook: checkpoint threshold in bytes (default 16 MB). */
void csa_mesh_set_checkpoint_bytes(struct csa_store *st, size_t bytes);

#ifdef CSA_TESTING
/* Test hook: called by a commit's checkpoint between the file system sync
 * (outside the journal lock) and the trim of the journal. */
void csa_mesh_test_after_sync(struct csa_store *st, void (*fn)(void *ctx), void *ctx);
/* Test hook: called by the thread that leads a group commit, before it
 * takes the journal lock; and the number of commits queued behind it. */
void csa_mesh_test_before_batch(struct csa_store *st, void (*fn)(void *ctx), void *ctx);
size_t csa_mesh_test_queued(struct csa_store *st);
/* Test hook: called by every read of a document between opening the file
 * and locking it (the window a commit's swap and a reuse of the file would
 * have to fall into). */
void csa_mesh_test_after_open(struct csa_store *st, void (*fn)(void *ctx), void *ctx);
#endif

#endif
