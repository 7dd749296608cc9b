/*
 * The store's redo journal (.csa/journal), which recovery reads back after
 * a crash: the input is the file, read with csa_journal_header_read and
 * csa_journal_scan as recovery reads it, and with csa_journal_inspect;
 * again with the header's and the records' CRCs fixed up, so mutations
 * reach the payloads; and, when byte 20 of a v2 header is set, with its
 * records moved across the end of the reader's 256 KiB window. Each time
 * against a plain reading of journal.h's format: the same format and
 * generation, the same entries in order (kind 0..2, id and document the
 * input's bytes), a scan that stops at the first record cut, of another
 * generation, failing its CRC or not parsing exactly, a torn tail within
 * the file, a callback's error stopping it before that record, and the
 * same counts of records and older ones from inspect. And entries taken
 * from the input, written with csa_jbuf_* and csa_journal_append, read back
 * identical; an invalidated record or a new generation hides them.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "fuzz.h"
#include "store/journal.h"

#define HDR      CSA_JOURNAL_HDR
#define MAX_FILE (1u << 16) /* inspect's search for older records is quadratic */

static char dir[64], path[96];

static void cleanup(void)
{
	unlink(path);
	rmdir(dir);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- the format, read plainly ------------------------------------------ */

struct ref_entry {
	int kind;
	size_t id_off, id_len, doc_off, doc_len; /* in the file */
	size_t rec_off;                          /* of its record */
};

struct ref {
	enum csa_jformat fmt;
	uint64_t gen;
	off_t valid_end;
	long records, stale;
	int torn_known; /* 0: a record header cut short follows valid_end */
	off_t torn;
	struct ref_entry *e;
	size_t n, cap;
};

/* The whole record at 'off' of generation 'gen' (v2) or v1: its length, 0
 * if none; its entries appended to r (may be NULL). */
static size_t ref_record(const uint8_t *d, size_t size, size_t off, int v1, uint64_t gen,
                         struct ref *r)
{
	size_t hl = v1 ? 12 : 20;
	if (off > size || size - off < hl)
		return 0;
	const uint8_t *h = d + off;
	if (memcmp(h, v1 ? "CSAJ" : "CSJR", 4) != 0 || (!v1 && get64(h + 8) != gen))
		return 0;
	uint32_t plen = get32(h + 4);
	if (plen < 4 || plen > size - off - hl)
		return 0;
	uLong crc = crc32(0L, h + 4, v1 ? 4 : 12);
	crc = crc32(crc, h + hl, plen);
	if ((uint32_t)crc != get32(h + (v1 ? 8 : 16)))
		return 0;
	size_t first = r ? r->n : 0, q = off + hl + 4, e = off + hl + plen;
	uint32_t count = get32(h + hl);
	for (uint32_t k = 0; k < count; k++) {
		if (e - q < 6 || d[q] > 2)
			goto bad;
		size_t idl = d[q + 1];
		if (e - q < 6 + idl)
			goto bad;
		size_t dl = get32(d + q + 2 + idl);
		if (e - q - 6 - idl < dl)
			goto bad;
		if (r) {
			if (r->n == r->cap) {
				r->cap = r->cap ? 2 * r->cap : 16;
				r->e = realloc(r->e, r->cap * sizeof(*r->e));
				FUZZ_CHECK(r->e != NULL);
			}
			r->e[r->n++] = (struct ref_entry){d[q], q + 2, idl, q + 6 + idl, dl, off};
		}
		q += 6 + idl + dl;
	}
	if (q != e)
		goto bad;
	return hl + plen;
bad:
	if (r)
		r->n = first;
	return 0;
}

static void ref_read(const uint8_t *d, size_t size, struct ref *r)
{
	memset(r, 0, sizeof(*r));
	r->torn_known = 1;
	if (size == 0) {
		r->fmt = CSA_JFMT_EMPTY;
		return;
	}
	if (size < 4 || memcmp(d, "CSJ2", 4) != 0) {
		r->fmt = CSA_JFMT_V1;
	} else if (size < 20 || get32(d + 4) != 2 || get32(d + 16) != (uint32_t)crc32(0L, d, 16)) {
		r->fmt = CSA_JFMT_TORN;
		r->valid_end = HDR;
		return;
	} else {
		r->fmt = CSA_JFMT_V2;
		r->gen = get64(d + 8);
	}
	int v1 = r->fmt == CSA_JFMT_V1;
	size_t hl = v1 ? 12 : 20, off = v1 ? 0 : HDR, n;
	while ((n = ref_record(d, size, off, v1, r->gen, r))) {
		off += n;
		r->records++;
	}
	r->valid_end = (off_t)off;
	/* what follows: the start of a record of this generation is torn */
	if (off < size && size - off < hl)
		r->torn_known = 0; /* a header cut short: counted or not */
	else if (off < size && memcmp(d + off, v1 ? "CSAJ" : "CSJR", 4) == 0 &&
	         (v1 || get64(d + off + 8) == r->gen)) {
		size_t claimed = hl + get32(d + off + 4);
		r->torn = (off_t)(claimed < size - off ? claimed : size - off);
	}
	/* whole records of older generations after the current ones */
	for (size_t o = off; !v1 && o + 20 <= size;) {
		uint64_t g = get64(d + o + 8);
		if (memcmp(d + o, "CSJR", 4) == 0 && g < r->gen &&
		    (n = ref_record(d, size, o, 0, g, NULL))) {
			r->stale++;
			o += n;
		} else {
			o++;
		}
	}
}

/* Recompute the header's CRC and those of the records a scan or inspect
 * would look at, so that mutations reach the payloads. */
static void fix_crcs(uint8_t *d, size_t size)
{
	int v1 = size < 4 || memcmp(d, "CSJ2", 4) != 0;
	if (!v1 && size >= 20)
		put32(d + 16, (uint32_t)crc32(0L, d, 16));
	uint64_t gen = !v1 && size >= 16 ? get64(d + 8) : 0;
	size_t hl = v1 ? 12 : 20, off = v1 ? 0 : HDR;
	while (off < size && size - off >= hl && memcmp(d + off, v1 ? "CSAJ" : "CSJR", 4) == 0 &&
	       (v1 || get64(d + off + 8) == gen)) {
		uint32_t plen = get32(d + off + 4);
		if (plen > size - off - hl)
			break;
		uLong crc = crc32(crc32(0L, d + off + 4, v1 ? 4 : 12), d + off + hl, plen);
		put32(d + off + hl - 4, (uint32_t)crc);
		off += hl + plen;
	}
	for (; !v1 && off + 20 <= size; off++) {
		uint32_t plen = get32(d + off + 4);
		if (memcmp(d + off, "CSJR", 4) == 0 && get64(d + off + 8) < gen &&
		    plen <= size - off - 20) {
			uLong crc = crc32(crc32(0L, d + off + 4, 12), d + off + 20, plen);
			put32(d + off + 16, (uint32_t)crc);
			off += 20 + plen - 1;
		}
	}
}

/* ---- the journal's reader against it ----------------------------------- */

struct seen {
	const uint8_t *d;
	size_t size;
	const struct ref *r;
	size_t i, stop_at; /* entries delivered; fail at entry stop_at */
};

static int on_entry(void *ctx, const struct csa_jentry *e)
{
	struct seen *s = ctx;
	FUZZ_CHECK(e->kind >= 0 && e->kind <= 2);
	FUZZ_CHECK(e->id_len <= 255 && e->id_len <= s->size && e->doc_len <= s->size);
	FUZZ_CHECK(s->i < s->r->n);
	const struct ref_entry *x = &s->r->e[s->i];
	FUZZ_CHECK(e->kind == x->kind && e->id_len == x->id_len && e->doc_len == x->doc_len);
	FUZZ_CHECK(memcmp(e->id, s->d + x->id_off, e->id_len) == 0);
	FUZZ_CHECK(memcmp(e->doc, s->d + x->doc_off, e->doc_len) == 0);
	/* what recovery keeps of it */
	char *copy = malloc(e->doc_len ? e->doc_len : 1);
	FUZZ_CHECK(copy != NULL);
	memcpy(copy, e->doc, e->doc_len);
	free(copy);
	return s->i++ == s->stop_at ? CSA_ENOMEM : CSA_OK;
}

/* Read the journal at 'path', whose bytes are d, and compare; r receives
 * the plain reading (entries freed by the caller). */
static void check_path(const uint8_t *d, size_t size, struct ref *r)
{
	ref_read(d, size, r);
	struct csa_err err = {0};
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	FUZZ_CHECK(fd >= 0);
	enum csa_jformat fmt;
	uint64_t gen;
	off_t fsize;
	FUZZ_CHECK(csa_journal_header_read(fd, path, &fmt, &gen, &fsize, &err) == CSA_OK);
	FUZZ_CHECK(fmt == r->fmt && gen == r->gen && fsize == (off_t)size);

	struct seen s = {d, size, r, 0, (size_t)-1};
	off_t valid_end = -1, torn = -1;
	FUZZ_CHECK(csa_journal_scan(fd, path, fmt, gen, on_entry, &s, &valid_end, &torn, &err) ==
	           CSA_OK);
	FUZZ_CHECK(s.i == r->n);
	FUZZ_CHECK(valid_end == r->valid_end);
	FUZZ_CHECK(valid_end <= fsize || (fmt != CSA_JFMT_V1 && valid_end == HDR));
	FUZZ_CHECK(torn >= 0 && (torn == 0 || valid_end + torn <= fsize));
	if (r->torn_known)
		FUZZ_CHECK(torn == r->torn);

	/* a callback's error (recovery's out of memory) ends the scan before
	 * the record of that entry */
	if (r->n) {
		struct seen t = {d, size, r, 0, size % r->n};
		FUZZ_CHECK(csa_journal_scan(fd, path, fmt, gen, on_entry, &t, &valid_end, NULL,
		                            &err) == CSA_ENOMEM);
		FUZZ_CHECK(t.i == t.stop_at + 1);
		FUZZ_CHECK(valid_end == (off_t)r->e[t.stop_at].rec_off);
	}
	close(fd);

	struct csa_jinfo ji;
	FUZZ_CHECK(csa_journal_inspect(path, &ji, &err) == CSA_OK);
	FUZZ_CHECK(ji.fmt == r->fmt && ji.gen == r->gen && ji.size == (off_t)size);
	if (fmt == CSA_JFMT_V1 || fmt == CSA_JFMT_V2)
		FUZZ_CHECK(ji.valid_end == r->valid_end && ji.records == r->records);
	else
		FUZZ_CHECK(ji.valid_end == 0 && ji.records == 0);
	FUZZ_CHECK(ji.stale_records == r->stale);
}

static void write_file(const uint8_t *d, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FUZZ_CHECK(fd >= 0);
	for (size_t done = 0; done < size;) {
		ssize_t n = write(fd, d + done, size - done);
		FUZZ_CHECK(n > 0);
		done += (size_t)n;
	}
	FUZZ_CHECK(close(fd) == 0);
}

/* The file at 'path' back in memory and checked; its plain reading in r. */
static uint8_t *reread(size_t *size, struct ref *r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	FUZZ_CHECK(fd >= 0);
	off_t end = lseek(fd, 0, SEEK_END);
	FUZZ_CHECK(end >= 0);
	uint8_t *d = malloc(end ? (size_t)end : 1);
	FUZZ_CHECK(d != NULL && pread(fd, d, (size_t)end, 0) == (ssize_t)end);
	close(fd);
	*size = (size_t)end;
	check_path(d, *size, r);
	return d;
}

/* ---- past the reader's window ----------------------------------------- */

/* journal.c reads the file through a window of 256 KiB (READ_CHUNK). When
 * byte 20 of a "CSJ2" header (padding, ignored) is not zero, its records
 * are moved behind a record of its generation that fills the first window
 * but for up to 511 bytes (bytes 21 and 22), so they straddle its end. */
#define WINDOW (256u << 10)

static void check_far(const uint8_t *d, size_t size)
{
	if (size < HDR || memcmp(d, "CSJ2", 4) != 0 || d[20] == 0)
		return;
	size_t doc = WINDOW - 36 - (size_t)(d[21] | d[22] << 8) % 512, fill = 36 + doc;
	uint8_t *f = malloc(size + fill), *p = f + HDR;
	FUZZ_CHECK(f != NULL);
	memcpy(f, d, HDR);
	memcpy(p, "CSJR", 4);
	put32(p + 4, (uint32_t)(16 + doc));
	memcpy(p + 8, d + 8, 8);
	put32(p + 20, 1);
	p[24] = 2;
	p[25] = 6;
	memcpy(p + 26, "filler", 6);
	put32(p + 32, (uint32_t)doc);
	memset(p + 36, 'x', doc);
	put32(p + 16, (uint32_t)crc32(crc32(0L, p + 4, 12), p + 20, (uInt)(16 + doc)));
	memcpy(p + fill, d + HDR, size - HDR);
	struct ref r;
	write_file(f, size + fill);
	check_path(f, size + fill, &r);
	free(r.e);
	free(f);
}

/* ---- round trip ------------------------------------------------------- */

#define MAX_ENTRIES 24

struct want {
	int kind;
	char id[32];
	const uint8_t *doc;
	size_t len;
};

static void expect(const uint8_t *d, const struct ref *r, struct want *const *w, size_t n)
{
	FUZZ_CHECK(r->n == n);
	for (size_t i = 0; i < n; i++) {
		const struct ref_entry *x = &r->e[i];
		FUZZ_CHECK(x->kind == w[i]->kind && x->id_len == strlen(w[i]->id) &&
		           x->doc_len == w[i]->len);
		FUZZ_CHECK(memcmp(d + x->id_off, w[i]->id, x->id_len) == 0);
		FUZZ_CHECK(memcmp(d + x->doc_off, w[i]->doc, x->doc_len) == 0);
	}
}

static void round_trip(const uint8_t *in, size_t size)
{
	/* entries from the input: kind, id length, document length, the id's
	 * bytes (no NUL: csa_jbuf_add takes a string), the document's; every
	 * third one to each of three records, the first two merged into one
	 * (a group commit) */
	struct want w[MAX_ENTRIES], *order[MAX_ENTRIES];
	struct csa_jbuf b[3];
	size_t n = 0, nb[3] = {0}, i = 0;
	for (int k = 0; k < 3; k++)
		csa_jbuf_init(&b[k]);
	while (n < MAX_ENTRIES && i + 3 <= size) {
		struct want *x = &w[n];
		x->kind = in[i] % 3;
		size_t idl = in[i + 1] % sizeof(x->id), dl = in[i + 2] * 8u;
		i += 3;
		idl = idl < size - i ? idl : size - i;
		for (size_t j = 0; j < idl; j++)
			x->id[j] = in[i + j] ? (char)in[i + j] : '_';
		x->id[idl] = '\0';
		i += idl;
		x->len = dl < size - i ? dl : size - i;
		x->doc = in + i;
		i += x->len;
		FUZZ_CHECK(csa_jbuf_add(&b[n % 3], x->kind, x->id, (const char *)x->doc, x->len) ==
		           CSA_OK);
		nb[n % 3]++;
		n++;
	}
	size_t m = 0;
	for (int k = 0; k < 3; k++)
		for (size_t j = k; j < n; j += 3)
			order[m++] = &w[j];
	FUZZ_CHECK(csa_jbuf_merge(&b[0], &b[1]) == CSA_OK);
	size_t s1 = csa_jbuf_size(&b[0]), s2 = csa_jbuf_size(&b[2]);
	FUZZ_CHECK((s1 != 0) == (nb[0] + nb[1] != 0) && (s2 != 0) == (nb[2] != 0));

	struct csa_err err = {0};
	uint64_t gen = (size >= 8 ? get64(in) : size) >> 1; /* gen + 1 is newer */
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(csa_journal_header_write(fd, path, gen, 0, &err) == CSA_OK);
	size_t pad = size % 2 ? 0 : 300;
	FUZZ_CHECK(csa_journal_append(fd, path, HDR, gen, &b[0], pad, 0, &err) == CSA_OK);
	FUZZ_CHECK(csa_journal_append(fd, path, HDR + (off_t)s1, gen, &b[2], pad, 0, &err) ==
	           CSA_OK);

	struct ref r;
	size_t fsize;
	uint8_t *d = reread(&fsize, &r);
	FUZZ_CHECK(r.fmt == CSA_JFMT_V2 && r.gen == gen && r.torn_known && r.torn == 0);
	FUZZ_CHECK(r.valid_end == HDR + (off_t)(s1 + s2) && r.records == (s1 != 0) + (s2 != 0));
	FUZZ_CHECK(r.stale == 0);
	expect(d, &r, order, n);
	free(d);
	free(r.e);

	/* a commit undone after its append */
	if (s2) {
		FUZZ_CHECK(csa_journal_invalidate(fd, HDR + (off_t)s1, 0) == 0);
		d = reread(&fsize, &r);
		FUZZ_CHECK(r.valid_end == HDR + (off_t)s1 && r.torn_known && r.torn == 0);
		expect(d, &r, order, nb[0] + nb[1]);
		free(d);
		free(r.e);
	}

	/* a checkpoint: the next generation, the records now older ones */
	FUZZ_CHECK(csa_journal_header_write(fd, path, gen + 1, 0, &err) == CSA_OK);
	d = reread(&fsize, &r);
	FUZZ_CHECK(r.fmt == CSA_JFMT_V2 && r.gen == gen + 1 && r.n == 0 && r.valid_end == HDR);
	FUZZ_CHECK(r.stale >= (s1 != 0));
	free(d);
	free(r.e);

	close(fd);
	for (int k = 0; k < 3; k++)
		csa_jbuf_release(&b[k]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0]) {
		const char *tmp = getenv("TMPDIR");
		snprintf(dir, sizeof(dir), "%s/csa-fuzz-journal-XXXXXX",
		         tmp && *tmp && strlen(tmp) < 32 ? tmp : "/tmp");
		FUZZ_CHECK(mkdtemp(dir) != NULL);
		snprintf(path, sizeof(path), "%s/journal", dir);
		atexit(cleanup);
	}
	if (size > MAX_FILE)
		return 0;
	struct ref r;
	write_file(data, size);
	check_path(data, size, &r);
	free(r.e);

	uint8_t *fixed = malloc(size ? size : 1);
	FUZZ_CHECK(fixed != NULL);
	memcpy(fixed, data, size);
	fix_crcs(fixed, size);
	if (memcmp(fixed, data, size) != 0) {
		write_file(fixed, size);
		check_path(fixed, size, &r);
		free(r.e);
	}
	check_far(fixed, size);
	free(fixed);

	round_trip(data, size);
	unlink(path);
	return 0;
}
