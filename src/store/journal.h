/*
 * The store's redo journal (.csa/journal): the commit point of the mesh.
 *
 * A commit appends one record holding the new bytes of all three documents
 * of every ticket it touches and makes it durable with one fdatasync; only
 * then are the documents renamed into place. After a crash, recovery
 * replays the last record of each ticket, so a ticket is always wholly at
 * one commit. A checkpoint fsyncs the files the journal covers and empties
 * it. The caller serialises all journal access (mesh.c holds the journal
 * lock).
 *
 * Record: "CSAJ" | u32 payload length | u32 crc32(length bytes + payload) |
 * payload = u32 count, then count x (u8 kind 0=E 1=I 2=T, u8 id length, id,
 * u32 document length, document bytes). Little-endian.
 */
#ifndef CSA_STORE_JOURNAL_H
#define CSA_STORE_JOURNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "base/err.h"

struct csa_jentry {
	int kind; /* 0 E, 1 I, 2 T */
	const char *id;
	size_t id_len;
	const char *doc;
	size_t doc_len;
};

/* A record being built (append entries, then write). */
struct csa_jbuf {
	char *buf;
	size_t len, cap;
	uint32_t count;
};

void csa_jbuf_init(struct csa_jbuf *b);
int csa_jbuf_add(struct csa_jbuf *b, int kind, const char *id, const char *doc, size_t len);
void csa_jbuf_release(struct csa_jbuf *b);
/* Append the entries of 'src' to 'dst' (group commit: one record, one
 * fdatasync for several callers' commits). */
int csa_jbuf_merge(struct csa_jbuf *dst, const struct csa_jbuf *src);

/* Append the record at offset 'end' and, when 'sync' (always, but for a
 * scratch workspace: store/ws.h), fdatasync. On failure the journal is
 * truncated back to 'end' (best effort) and an error returned. */
int csa_journal_append(int fd, const char *path, off_t end, struct csa_jbuf *b, int sync,
                       struct csa_err *err);

/*
 * Read the journal and call fn for every entry of every whole record, in
 * order. *valid_end receives the offset after the last whole record (a torn
 * or corrupt tail is ignored: it was never acknowledged). Entries point
 * into a buffer valid during the call only.
 */
typedef int (*csa_jentry_fn)(void *ctx, const struct csa_jentry *e);
int csa_journal_scan(int fd, const char *path, csa_jentry_fn fn, void *ctx, off_t *valid_end,
                     struct csa_err *err);

#endif
