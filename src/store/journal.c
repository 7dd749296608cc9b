/* Redo journal records: build, append durably, scan. */
#include "store/journal.h"
#include "base/fsops.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define JMAGIC "CSAJ"
#define JHDR   12

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

static uint32_t get32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;
	return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

int csa_jbuf_add(struct csa_jbuf *b, int kind, const char *id, const char *doc, size_t len)
{
	size_t idlen = strlen(id);
	if (idlen > 255 || len > UINT32_MAX - 64)
		return CSA_EINVAL;
	if (b->len == 0) {
		/* header and count, filled in when written */
		if (reserve(b, JHDR + 4))
			return CSA_ENOMEM;
		b->len = JHDR + 4;
	}
	if (reserve(b, 2 + idlen + 4 + len))
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
	if (dst->len == 0) {
		if (reserve(dst, JHDR + 4))
			return CSA_ENOMEM;
		dst->len = JHDR + 4;
	}
	size_t body = src->len - (JHDR + 4);
	if (reserve(dst, body))
		return CSA_ENOMEM;
	memcpy(dst->buf + dst->len, src->buf + JHDR + 4, body);
	dst->len += body;
	dst->count += src->count;
	return CSA_OK;
}

int csa_journal_append(int fd, const char *path, off_t end, struct csa_jbuf *b, int sync,
                       struct csa_err *err)
{
	if (b->count == 0)
		return CSA_OK;
	size_t plen = b->len - JHDR;
	if (plen > UINT32_MAX)
		return csa_error(err, CSA_ELIMIT, "commit too large for one journal record");
	memcpy(b->buf, JMAGIC, 4);
	put32(b->buf + 4, (uint32_t)plen);
	put32(b->buf + JHDR, b->count);
	uLong crc = crc32(0L, (const Bytef *)b->buf + 4, 4);
	crc = crc32(crc, (const Bytef *)b->buf + JHDR, (uInt)plen);
	put32(b->buf + 8, (uint32_t)crc);
	if (lseek(fd, end, SEEK_SET) < 0)
		return csa_error_sys(err, "cannot seek in '%s'", path);
	if (csa_fs_write_all(fd, b->buf, b->len) < 0) {
		csa_error_sys(err, "cannot write journal '%s'", path);
		goto undo;
	}
	if (sync && csa_fs_fsync(fd, 1) < 0) {
		csa_error_sys(err, "cannot fsync journal '%s'", path);
		goto undo;
	}
	return CSA_OK;
undo:
	/* The record was not acknowledged: remove whatever part of it may
	 * have reached the file so recovery cannot replay it. */
	if (ftruncate(fd, end) == 0)
		(void)fdatasync(fd);
	return err ? err->code : CSA_EIO;
}

int csa_journal_scan(int fd, const char *path, csa_jentry_fn fn, void *ctx, off_t *valid_end,
                     struct csa_err *err)
{
	struct stat st;
	*valid_end = 0;
	if (fstat(fd, &st) < 0)
		return csa_error_sys(err, "cannot stat journal '%s'", path);
	if (st.st_size == 0)
		return CSA_OK;
	size_t size = (size_t)st.st_size;
	char *buf = malloc(size);
	if (!buf)
		return csa_error(err, CSA_ENOMEM, "out of memory reading journal '%s'", path);
	size_t got = 0;
	while (got < size) {
		ssize_t n = pread(fd, buf + got, size - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	int rc = CSA_OK;
	size_t off = 0;
	while (off + JHDR + 4 <= got) {
		const char *h = buf + off;
		if (memcmp(h, JMAGIC, 4) != 0)
			break;
		uint32_t plen = get32(h + 4);
		if (plen < 4 || plen > got - off - JHDR)
			break;
		uLong crc = crc32(0L, (const Bytef *)h + 4, 4);
		crc = crc32(crc, (const Bytef *)h + JHDR, plen);
		if ((uint32_t)crc != get32(h + 8))
			break;
		/* Parse the entries; a record that does not parse exactly
		 * is treated like a torn one. */
		const char *p = h + JHDR + 4, *e = h + JHDR + plen;
		uint32_t count = get32(h + JHDR), k;
		struct csa_jentry ent;
		const char *q = p;
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
			break;
		q = p;
		for (k = 0; k < count && rc == CSA_OK; k++) {
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
		off += JHDR + plen;
	}
	*valid_end = (off_t)off;
	free(buf);
	return rc;
}
