/*
 * The store's redo journal (.csa/journal): the commit point of the mesh.
 *
 * A commit appends one record holding the new bytes of all three documents
 * of every ticket it touches and makes it durable with one fdatasync; only
 * then are the documents swapped into place. After a crash, recovery
 * replays the last record of each ticket, so a ticket is always wholly at
 * one commit. The caller serialises all journal access (mesh.c holds the
 * journal lock) and keeps the append offset (mesh.c: in .csa/lock).
 *
 * The file is reused, as SQLite reuses its WAL: a checkpoint (once the
 * files the journal covers are durable) does not truncate it but writes a
 * new generation number into its header, and the next records overwrite
 * the old ones from the start. Each record carries the generation (inside
 * its CRC too), and a scan stops at the first record that is not of the
 * header's generation or whose CRC fails, so the records of older
 * generations left beyond the current ones are never read as current.
 * Overwriting blocks that were already written changes neither the file's
 * size nor its extents, so fdatasync flushes the record alone, without the
 * inode: a fifth of a commit's flush when the file grew with every append.
 * When an append does have to grow the file it writes zeros a good way
 * past the record (csa_journal_append 'pad'), so growth, and its inode
 * flush, comes once per chunk rather than once per commit.
 *
 * File (little-endian):
 *   header, CSA_JOURNAL_HDR bytes: "CSJ2" | u32 version (2) |
 *     u64 generation | u32 crc32(the 16 bytes before) | zeros
 *   records from offset CSA_JOURNAL_HDR, each:
 *     "CSJR" | u32 payload length | u64 generation |
 *     u32 crc32(length bytes + generation bytes + payload) | payload
 *   payload = u32 count, then count x (u8 kind 0=E 1=I 2=T, u8 id length,
 *     id, u32 document length, document bytes)
 *
 * The format before generations (v1, still recovered: a workspace written
 * by an older csa) had no file header: records from offset 0, each
 * "CSAJ" | u32 payload length | u32 crc32(length bytes + payload) |
 * payload, and a checkpoint truncated the file.
 */
#ifndef CSA_STORE_JOURNAL_H
#define CSA_STORE_JOURNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "base/err.h"

/* Where the records start: the header has a block of its own, so the
 * rewrite of the header at a checkpoint and the writes of records never
 * share a block. */
#define CSA_JOURNAL_HDR 4096

/* What csa_journal_header_read found. */
enum csa_jformat {
	CSA_JFMT_EMPTY = 0, /* a file of length 0 (new) */
	CSA_JFMT_V2,        /* a valid header: records of its generation */
	CSA_JFMT_V1,        /* no header: the records of an older csa */
	CSA_JFMT_TORN,      /* "CSJ2" whose header fails its CRC or is cut */
};

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
/* The length the record will take in the file (0 with no entry). */
size_t csa_jbuf_size(const struct csa_jbuf *b);

/* Fill buf (CSA_JOURNAL_HDR bytes) with the header of generation 'gen'. */
void csa_journal_header_fill(char *buf, uint64_t gen);

/* Read the header: *fmt, *gen (0 unless CSA_JFMT_V2) and *size (the
 * file's length). */
int csa_journal_header_read(int fd, const char *path, enum csa_jformat *fmt, uint64_t *gen,
                            off_t *size, struct csa_err *err);

/* Write the header of generation 'gen' over the file's first block and,
 * when 'sync', fdatasync. On failure the header on disk may be torn: the
 * caller must treat the journal's state as unknown (mesh.c has the next
 * holder of the journal lock recover). */
int csa_journal_header_write(int fd, const char *path, uint64_t gen, int sync, struct csa_err *err);

/*
 * Write the record of 'b', stamped with generation 'gen', at offset 'end',
 * followed by 'pad' zero bytes (to grow the file ahead of the next records,
 * in the same write and the same flush; 0 when the record fits in the file),
 * and, when 'sync' (always, but for a scratch workspace: store/ws.h),
 * fdatasync. On failure the record's header is overwritten with zeros (best
 * effort) so recovery cannot replay it, and an error returned.
 */
int csa_journal_append(int fd, const char *path, off_t end, uint64_t gen, struct csa_jbuf *b,
                       size_t pad, int sync, struct csa_err *err);

/* Overwrite the header of the record at 'off' with zeros and, when 'sync',
 * fdatasync: a commit undone after its append. 0 or -1 (errno). */
int csa_journal_invalidate(int fd, off_t off, int sync);

/*
 * Read the journal and call fn for every entry of every whole record of
 * format 'fmt' (CSA_JFMT_V2: of generation 'gen', from CSA_JOURNAL_HDR;
 * CSA_JFMT_V1: from offset 0; any other: none), in order. *valid_end
 * receives the offset after the last whole record (CSA_JOURNAL_HDR, or 0
 * for v1, when there is none). *torn (may be NULL) receives the length of
 * what follows that looks like the start of a record of this generation
 * but is cut or fails its CRC: an append a crash interrupted; older
 * generations' records and zeros are not counted. Entries point into a
 * buffer valid during the call only.
 */
typedef int (*csa_jentry_fn)(void *ctx, const struct csa_jentry *e);
int csa_journal_scan(int fd, const char *path, enum csa_jformat fmt, uint64_t gen, csa_jentry_fn fn,
                     void *ctx, off_t *valid_end, off_t *torn, struct csa_err *err);

/* What a journal file holds, for tests and diagnostics. */
struct csa_jinfo {
	enum csa_jformat fmt;
	uint64_t gen;
	off_t size;         /* the file's length */
	off_t valid_end;    /* after the current generation's last record */
	long records;       /* of the current generation */
	long stale_records; /* whole records (valid CRC) of older generations
	                     * found after valid_end */
};
int csa_journal_inspect(const char *path, struct csa_jinfo *out, struct csa_err *err);

#endif
