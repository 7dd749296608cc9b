/* Redo journal records: build, append durably, scan (format: journal.h). */
#include "store/journal.h"
#include "base/fsops.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define FMAGIC   "CSJ2" /* file header */
#define FVERSION 2
#define RMAGIC   "CSJR" /* record of the current format */
#define RHDR     20     /* magic, length, generation, crc */
#define V1MAGIC  "CSAJ" /* record of the format before generations */
#define V1HDR    12     /* magic, length, crc */

void csa_jbuf_init(struct csa_jbuf *b)
{
	memset(b, 0, sizeof(*b));
}

void csa_jbuf_release(struct csa_jbuf *b)
{
	free(b->buf);
	memset(b, 0, sizeof(*b));
}

static int reserve(struct csa_jbuf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more)
		cap *= 2;
	char *nb = realloc(b->buf, cap);
	if (!nb)
		return -1;
	b->buf = nb;
	b->cap = cap;
	return 0;
}

static void put32(char *p, uint32_t v)
{
	p[0] = (char)(v & 0xff);
	p[1] = (char)(v >> 8 & 0xff);
	p[2] = (char)(v >> 16 & 0xff);
	p[3] = (char)(v >> 24 & 0xff);
}

static void put64(char *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

static uint64_t get64(const char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* The record's header and count, filled in when written. */
static int start_record(struct csa_jbuf *b)
{
	if (b->len)
		return 0;
	if (reserve(b, RHDR + 4))
		return -1;
	b->len = RHDR + 4;
	return 0;
}

int csa_jbuf_add(struct csa_jbuf *b, int kind, const char *id, const char *doc, size_t len)
{
	size_t idlen = strlen(id);
	if (idlen > 255 || len > UINT32_MAX - 64)
		return CSA_EINVAL;
	if (start_record(b) || reserve(b, 2 + idlen + 4 + len))
		return CSA_ENOMEM;
	char *p = b->buf + b->len;
	p[0] = (char)kind;
	p[1] = (char)idlen;
	memcpy(p + 2, id, idlen);
	put32(p + 2 + idlen, (uint32_t)len);
	memcpy(p + 6 + idlen, doc, len);
	b->len += 6 + idlen + len;
	b->count++;
	return CSA_OK;
}

int csa_jbuf_merge(struct csa_jbuf *dst, const struct csa_jbuf *src)
{
	if (src->count == 0)
		return CSA_OK;
	if (start_record(dst))
		return CSA_ENOMEM;
	size_t body = src->len - (RHDR + 4);
	if (reserve(dst, body))
		return CSA_ENOMEM;
	memcpy(dst->buf + dst->len, src->buf + RHDR + 4, body);
	dst->len += body;
	dst->count += src->count;
	return CSA_OK;
}

size_t csa_jbuf_size(const struct csa_jbuf *b)
{
	return b->count ? b->len : 0;
}

/* ---- header ----------------------------------------------------------- */

void csa_journal_header_fill(char *buf, uint64_t gen)
{
	memset(buf, 0, CSA_JOURNAL_HDR);
	memcpy(buf, FMAGIC, 4);
	put32(buf + 4, FVERSION);
	put64(buf + 8, gen);
	put32(buf + 16, (uint32_t)crc32(0L, (const Bytef *)buf, 16));
}

static ssize_t pread_all(int fd, char *buf, size_t len, off_t off)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, buf + got, len - got, off + (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int csa_journal_header_read(int fd, const char *path, enum csa_jformat *fmt, uint64_t *gen,
                            off_t *size, struct csa_err *err)
{
	struct stat st;
	char h[20];
	*fmt = CSA_JFMT_EMPTY;
	*gen = 0;
	*size = 0;
	if (fstat(fd, &st) < 0)
		return csa_error_sys(err, "cannot stat journal '%s'", path);
	*size = st.st_size;
	if (st.st_size == 0)
		return CSA_OK;
	ssize_t n = pread_all(fd, h, sizeof(h), 0);
	if (n < 0)
		return csa_error_sys(err, "cannot read journal '%s'", path);
	if (n < 4 || memcmp(h, FMAGIC, 4) != 0) {
		*fmt = CSA_JFMT_V1; /* a v1 scan stops at once on anything else */
		return CSA_OK;
	}
	if (n < (ssize_t)sizeof(h) || get32(h + 4) != FVERSION ||
	    get32(h + 16) != (uint32_t)crc32(0L, (const Bytef *)h, 16)) {
		*fmt = CSA_JFMT_TORN;
		return CSA_OK;
	}
	*fmt = CSA_JFMT_V2;
	*gen = get64(h + 8);
	return CSA_OK;
}

int csa_journal_header_write(int fd, const char *path, uint64_t gen, int sync, struct csa_err *err)
{
	char buf[CSA_JOURNAL_HDR];
	csa_journal_header_fill(buf, gen);
	if (lseek(fd, 0, SEEK_SET) < 0)
		return csa_error_sys(err, "cannot seek in '%s'", path);
	if (csa_fs_write_all(fd, buf, sizeof(buf)) < 0)
		return csa_error_sys(err, "cannot write the header of journal '%s'", path);
	if (sync && csa_fs_fsync(fd, 1) < 0)
		return csa_error_sys(err, "cannot fsync journal '%s'", path);
	return CSA_OK;
}

/* ---- append ----------------------------------------------------------- */

int csa_journal_invalidate(int fd, off_t off, int sync)
{
	static const char zero[RHDR];
	if (pwrite(fd, zero, sizeof(zero), off) != (ssize_t)sizeof(zero))
		return -1;
	return sync ? fdatasync(fd) : 0;
}

int csa_journal_append(int fd, const char *path, off_t end, uint64_t gen, struct csa_jbuf *b,
                       size_t pad, int sync, struct csa_err *err)
{
	if (b->count == 0)
		return CSA_OK;
	size_t plen = b->len - RHDR;
	if (plen > UINT32_MAX)
		return csa_error(err, CSA_ELIMIT, "commit too large for one journal record");
	/* The zeros go in the same write as the record (the buffer's spare
	 * room), so a commit makes the same calls whether it grows the file
	 * or not. */
	if (pad && reserve(b, pad))
		return csa_error(err, CSA_ENOMEM, "out of memory growing journal '%s'", path);
	memset(b->buf + b->len, 0, pad);
	memcpy(b->buf, RMAGIC, 4);
	put32(b->buf + 4, (uint32_t)plen);
	put64(b->buf + 8, gen);
	put32(b->buf + RHDR, b->count);
	uLong crc = crc32(0L, (const Bytef *)b->buf + 4, 12);
	crc = crc32(crc, (const Bytef *)b->buf + RHDR, (uInt)plen);
	put32(b->buf + 16, (uint32_t)crc);
	if (lseek(fd, end, SEEK_SET) < 0)
		return csa_error_sys(err, "cannot seek in '%s'", path);
	if (csa_fs_write_all(fd, b->buf, b->len + pad) < 0) {
		csa_error_sys(err, "cannot write journal '%s'", path);
		goto undo;
	}
	if (sync && csa_fs_fsync(fd, 1) < 0) {
		csa_error_sys(err, "cannot fsync journal '%s'", path);
		goto undo;
	}
	return CSA_OK;
undo:
	/* The record was not acknowledged: spoil whatever part of it may
	 * have reached the file so recovery cannot replay it. */
	(void)csa_journal_invalidate(fd, end, sync);
	return err ? err->code : CSA_EIO;
}

/* ---- scan ------------------------------------------------------------- */

/* A window over the file, refilled as the scan moves on: a journal reused
 * for long is as large as the checkpoint interval, and its current records
 * may be a few bytes of it. */
struct reader {
	int fd;
	off_t size;
	char *buf;
	size_t cap;
	off_t at;   /* file offset of buf[0] */
	size_t len; /* bytes valid in buf */
};

#define READ_CHUNK (256u << 10)

/* Make [off, off + n) readable; a pointer to it, NULL when the file ends
 * first or on error (*ioerr then set). */
static const char *reader_get(struct reader *r, off_t off, size_t n, int *ioerr)
{
	if (off < 0 || off > r->size || (off_t)n > r->size - off)
		return NULL;
	if (off >= r->at && off + (off_t)n <= r->at + (off_t)r->len)
		return r->buf + (off - r->at);
	size_t want = n > READ_CHUNK ? n : READ_CHUNK;
	if ((off_t)want > r->size - off)
		want = (size_t)(r->size - off);
	if (want > r->cap) {
		char *nb = realloc(r->buf, want);
		if (!nb) {
			*ioerr = ENOMEM;
			return NULL;
		}
		r->buf = nb;
		r->cap = want;
	}
	ssize_t got = pread_all(r->fd, r->buf, want, off);
	if (got < 0) {
		*ioerr = errno ? errno : EIO;
		r->len = 0;
		return NULL;
	}
	r->at = off;
	r->len = (size_t)got;
	return (size_t)got >= n ? r->buf : NULL;
}

/* The record at 'off' if it is whole and of generation 'gen' (v2) or a
 * whole v1 record ('v1'): its total length, 0 if not. *payload, *plen:
 * where its payload is. *torn: the length it claims, when it starts like
 * a record of this generation but is cut short or fails its check. */
static size_t record_at(struct reader *r, off_t off, int v1, uint64_t gen, const char **payload,
                        uint32_t *plen_out, off_t *torn, int *ioerr)
{
	size_t hl = v1 ? V1HDR : RHDR;
	const char *h = reader_get(r, off, hl, ioerr);
	if (!h)
		return 0;
	if (memcmp(h, v1 ? V1MAGIC : RMAGIC, 4) != 0)
		return 0; /* zeros, the middle of an older record, garbage */
	uint32_t plen = get32(h + 4);
	uint32_t want_crc = get32(h + (v1 ? 8 : 16));
	if (!v1 && get64(h + 8) != gen)
		return 0; /* a record of an older generation */
	off_t claimed = (off_t)hl + plen;
	if (torn)
		*torn = claimed < r->size - off ? claimed : r->size - off;
	if (plen < 4 || (off_t)plen > r->size - off - (off_t)hl)
		return 0;
	const char *p = reader_get(r, off, hl + plen, ioerr);
	if (!p)
		return 0;
	uLong crc = crc32(0L, (const Bytef *)p + 4, v1 ? 4 : 12);
	crc = crc32(crc, (const Bytef *)p + hl, plen);
	if ((uint32_t)crc != want_crc)
		return 0;
	/* a record that does not parse exactly is treated like a torn one */
	const char *q = p + hl + 4, *e = p + hl + plen;
	uint32_t count = get32(p + hl), k;
	for (k = 0; k < count; k++) {
		if (e - q < 2 || (q[0] < 0 || q[0] > 2))
			break;
		size_t idl = (unsigned char)q[1];
		if ((size_t)(e - q) < 6 + idl)
			break;
		uint32_t dl = get32(q + 2 + idl);
		if ((size_t)(e - q) < 6 + idl + dl)
			break;
		q += 6 + idl + dl;
	}
	if (k != count || q != e)
		return 0;
	if (torn)
		*torn = 0;
	*payload = p + hl;
	*plen_out = plen;
	return hl + plen;
}

static int scan_records(int fd, const char *path, int v1, uint64_t gen, csa_jentry_fn fn, void *ctx,
                        off_t *valid_end, off_t *torn, long *records, struct csa_err *err)
{
	struct stat st;
	off_t off = v1 ? 0 : CSA_JOURNAL_HDR;
	*valid_end = off;
	if (torn)
		*torn = 0;
	if (fstat(fd, &st) < 0)
		return csa_error_sys(err, "cannot stat journal '%s'", path);
	struct reader r = {.fd = fd, .size = st.st_size};
	int rc = CSA_OK, ioerr = 0;
	for (;;) {
		const char *pl;
		uint32_t plen;
		size_t n = record_at(&r, off, v1, gen, &pl, &plen, torn, &ioerr);
		if (!n)
			break;
		const char *q = pl + 4;
		uint32_t count = get32(pl);
		for (uint32_t k = 0; k < count && rc == CSA_OK && fn; k++) {
			struct csa_jentry ent;
			ent.kind = q[0];
			ent.id_len = (unsigned char)q[1];
			ent.id = q + 2;
			ent.doc_len = get32(q + 2 + ent.id_len);
			ent.doc = q + 6 + ent.id_len;
			q += 6 + ent.id_len + ent.doc_len;
			rc = fn(ctx, &ent);
		}
		if (rc)
			break;
		off += (off_t)n;
		if (records)
			(*records)++;
	}
	free(r.buf);
	*valid_end = off;
	if (rc == CSA_OK && ioerr == ENOMEM)
		rc = csa_error(err, CSA_ENOMEM, "out of memory reading journal '%s'", path);
	else if (rc == CSA_OK && ioerr) {
		errno = ioerr;
		rc = csa_error_sys(err, "cannot read journal '%s'", path);
	}
	return rc;
}

int csa_journal_scan(int fd, const char *path, enum csa_jformat fmt, uint64_t gen, csa_jentry_fn fn,
                     void *ctx, off_t *valid_end, off_t *torn, struct csa_err *err)
{
	if (fmt != CSA_JFMT_V1 && fmt != CSA_JFMT_V2) {
		*valid_end = fmt == CSA_JFMT_EMPTY ? 0 : CSA_JOURNAL_HDR;
		if (torn)
			*torn = 0;
		return CSA_OK;
	}
	return scan_records(fd, path, fmt == CSA_JFMT_V1, gen, fn, ctx, valid_end, torn, NULL, err);
}

int csa_journal_inspect(const char *path, struct csa_jinfo *out, struct csa_err *err)
{
	memset(out, 0, sizeof(*out));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return csa_error_sys(err, "cannot open journal '%s'", path);
	int rc = csa_journal_header_read(fd, path, &out->fmt, &out->gen, &out->size, err);
	if (rc == CSA_OK && (out->fmt == CSA_JFMT_V1 || out->fmt == CSA_JFMT_V2))
		rc = scan_records(fd, path, out->fmt == CSA_JFMT_V1, out->gen, NULL, NULL,
		                  &out->valid_end, NULL, &out->records, err);
	if (rc == CSA_OK && out->fmt == CSA_JFMT_V2) {
		/* Older generations' records: look for their magic anywhere
		 * after the current ones, and count those whole and valid. */
		struct reader r = {.fd = fd, .size = out->size};
		int ioerr = 0;
		off_t off = out->valid_end;
		while (off + RHDR <= out->size) {
			const char *w = reader_get(&r, off, RHDR, &ioerr);
			if (!w)
				break;
			size_t avail = r.len - (size_t)(off - r.at);
			const char *hit = memmem(w, avail, RMAGIC, 4);
			if (!hit) {
				off += (off_t)(avail > 3 ? avail - 3 : 1);
				continue;
			}
			off += hit - w;
			const char *h = reader_get(&r, off, RHDR, &ioerr);
			const char *pl;
			uint32_t plen;
			uint64_t g = h ? get64(h + 8) : 0;
			if (h && g < out->gen &&
			    record_at(&r, off, 0, g, &pl, &plen, NULL, &ioerr)) {
				out->stale_records++;
				off += RHDR + plen;
			} else {
				off++;
			}
		}
		free(r.buf);
	}
	close(fd);
	return rc;
}
