/* Fault injection: the n-th write, fsync, rename, unlink or open of a
 * commit fails, for every n the commit performs. The previous state must
 * stay intact and readable (or, where a failure struck after the commit
 * point and could not be undone, recovery must complete the commit), every
 * ticket whole, and verify clean after reopening. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "base/fsops.h"
#include "store/journal.h"
#include "store/mesh.h"
#include "store/verify.h"
#include "support/tmesh.h"
#include "support/tutil.h"

static const char *const names[] = {"write", "fsync", "rename", "unlink", "open"};

/* One commit: bump ticket "F" (and with 'group' also "F2") to v. */
static int do_commit(struct csa_ws *ws, long v, int group, struct csa_err *err)
{
	struct csa_ticket tk[2];
	struct csa_ticket *p[2] = {&tk[0], &tk[1]};
	const char *ids[2] = {"F", "F2"};
	int n = group ? 2 : 1, rc = 0;
	for (int i = 0; i < n; i++) {
		if (csa_store_load(ws->store, ids[i], &tk[i], err))
			fail_msg("load %s: %s", ids[i], err->msg);
		tm_set(&tk[i], v);
	}
	rc = csa_store_commit_many(ws->store, p, (size_t)n, CSA_DOC_ALL, err);
	for (int i = 0; i < n; i++)
		csa_ticket_release(&tk[i]);
	return rc;
}

static struct csa_jinfo jinfo(const char *dir)
{
	char path[4200];
	struct csa_jinfo ji;
	struct csa_err err = {0};
	snprintf(path, sizeof(path), "%s/.csa/journal", dir);
	if (csa_journal_inspect(path, &ji, &err))
		fail_msg("inspect: %s", err.msg);
	return ji;
}

static void check_whole(struct csa_ws *ws, long lo, long hi, const char *when)
{
	long a = tm_load_version(ws, "F"), b = tm_load_version(ws, "F2");
	if (a < lo || a > hi || b < 0)
		fail_msg("%s: F at v%ld, expected v%ld..v%ld", when, a, lo, hi);
}

static void run(int checkpoint_every_commit, int group)
{
	char *dir = t_tmpdir("faults");
	struct csa_err err = {0};
	struct csa_ws *ws;
	assert_int_equal(csa_ws_init(dir, &err), 0);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	const char *ids[] = {"F", "F2"};
	assert_int_equal(tm_create(ws, ids, 2), 0);
	long v = 0;
	long injected = 0;
	/* records of an older generation in the file from the start, more
	 * than any later generation here writes over: every fault below lands
	 * in a reused journal with stale records after its valid end */
	for (int i = 0; i < 8; i++)
		assert_int_equal(do_commit(ws, ++v, group, &err), 0);
	assert_int_equal(ws->store->ops->checkpoint(ws->store, &err), 0);
	for (int op = 0; op < CSA_FS_NOPS; op++) {
		/* how many calls of this kind does one commit make? */
		if (checkpoint_every_commit)
			csa_mesh_set_checkpoint_bytes(ws->store, 1);
		csa_fault_reset_counts();
		assert_int_equal(do_commit(ws, ++v, group, &err), 0);
		long calls = csa_fault_count((enum csa_fs_op)op);
		for (long n = 1; n <= calls; n++) {
			int e = op == CSA_FS_WRITE && n % 2 ? ENOSPC : EIO;
			if (jinfo(dir).stale_records < 1)
				fail_msg("%s #%ld: no older record in the journal", names[op], n);
			csa_fault_arm((enum csa_fs_op)op, n, e);
			struct csa_err cerr = {0};
			int rc = do_commit(ws, v + 1, group, &cerr);
			int fired = csa_fault_fired();
			csa_fault_disarm();
			if (!fired)
				fail_msg("%s #%ld of %ld did not happen", names[op], n, calls);
			injected++;
			if (rc == 0) {
				/* the fault hit a step after the commit point that
				 * may fail (checkpoint): the commit stands */
				check_whole(ws, v + 1, v + 1, "after a tolerated fault");
				v++;
			} else if (strstr(cerr.msg, "recovery will complete")) {
				check_whole(ws, v, v + 1, "after a failed undo");
			} else {
				/* the error names what failed, the old state is there */
				if (!strstr(cerr.msg, "cannot"))
					fail_msg("%s #%ld: unclear error '%s'", names[op], n,
					         cerr.msg);
				check_whole(ws, v, v, "after a reported failure");
			}
			/* and after recovery */
			csa_ws_close(ws);
			if (csa_ws_open(dir, &ws, &err))
				fail_msg("reopen after %s #%ld: %s", names[op], n, err.msg);
			if (checkpoint_every_commit)
				csa_mesh_set_checkpoint_bytes(ws->store, 1);
			long now = tm_load_version(ws, "F");
			if (now < v || now > v + 1)
				fail_msg("%s #%ld: after recovery F at v%ld, expected v%ld or v%ld",
				         names[op], n, now, v, v + 1);
			check_whole(ws, now, now, "after recovery");
			v = now;
			json_t *rep;
			assert_int_equal(csa_verify(ws, 0, NULL, &rep, &err), 0);
			assert_true(json_is_true(json_object_get(rep, "ok")));
			json_decref(rep);
		}
	}
	print_message("%ld faults injected (checkpoint every commit: %d, group: %d)\n", injected,
	              checkpoint_every_commit, group);
	assert_true(injected >= 8);
	csa_ws_close(ws);
	t_rmrf(dir);
	free(dir);
}

static void faults_in_commit(void **state)
{
	(void)state;
	run(0, 0);
}

static void faults_in_group_commit(void **state)
{
	(void)state;
	run(0, 1);
}

static void faults_in_commit_with_checkpoint(void **state)
{
	(void)state;
	run(1, 0);
}

static void faults_while_creating(void **state)
{
	(void)state;
	char *dir = t_tmpdir("faults-create");
	struct csa_err err = {0};
	struct csa_ws *ws;
	assert_int_equal(csa_ws_init(dir, &err), 0);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	for (int op = 0; op < CSA_FS_NOPS; op++) {
		for (long n = 1; n <= 8; n++) {
			char id[32];
			snprintf(id, sizeof(id), "C%d-%ld", op, n);
			const char *ids[] = {id};
			csa_fault_arm((enum csa_fs_op)op, n, EIO);
			int rc = tm_create(ws, ids, 1);
			int fired = csa_fault_fired();
			csa_fault_disarm();
			struct csa_ticket tk;
			int lrc = csa_store_load(ws->store, id, &tk, &err);
			if (rc == 0 || !fired) {
				assert_int_equal(lrc, 0);
				csa_ticket_release(&tk);
			} else {
				/* a failed create leaves no trace of the ticket */
				assert_int_equal(lrc, CSA_ENOENT);
			}
		}
	}
	json_t *rep;
	assert_int_equal(csa_verify(ws, 0, NULL, &rep, &err), 0);
	assert_true(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	csa_ws_close(ws);
	t_rmrf(dir);
	free(dir);
}

/* A file system that cannot swap two names (renameat2 RENAME_EXCHANGE
 * gives EINVAL, as on some network and older union file systems): the
 * commit renames its new file over the old one instead, as a new file,
 * and goes on doing so; nothing is lost or torn. */
static void commits_without_exchange_rename_instead(void **state)
{
	(void)state;
	char *dir = t_tmpdir("faults-noexchange");
	struct csa_err err = {0};
	struct csa_ws *ws;
	assert_int_equal(csa_ws_init(dir, &err), 0);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	const char *ids[] = {"F", "F2"};
	assert_int_equal(tm_create(ws, ids, 2), 0);
	/* a swap leaves the old file in the pool; a rename takes the pool's */
	char pool0[4096];
	struct stat sb;
	snprintf(pool0, sizeof(pool0), "%s/.csa/pool/0", dir);
	assert_int_equal(do_commit(ws, 1, 0, &err), 0);
	assert_int_equal(stat(pool0, &sb), 0);
	csa_fault_reset_counts();
	csa_fault_arm(CSA_FS_RENAME, 1, EINVAL);
	assert_int_equal(do_commit(ws, 2, 0, &err), 0);
	assert_true(csa_fault_fired());
	csa_fault_disarm();
	/* the swap of the first document failed, then each was renamed */
	assert_true(csa_fault_count(CSA_FS_RENAME) >= 4);
	for (long v = 3; v <= 4; v++) {
		assert_int_equal(do_commit(ws, v, 1, &err), 0);
		assert_int_equal(stat(pool0, &sb), -1);
	}
	check_whole(ws, 4, 4, "after commits without exchange");
	csa_ws_close(ws);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	check_whole(ws, 4, 4, "after reopening");
	json_t *rep;
	assert_int_equal(csa_verify(ws, 0, NULL, &rep, &err), 0);
	assert_true(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	csa_ws_close(ws);
	t_rmrf(dir);
	free(dir);
}

/* ---- checkpoints outside the journal lock ------------------------------ */

struct during {
	struct csa_ws *ws; /* the handle that commits while the other syncs */
	int other_checkpoints; /* and checkpoints in between (another process) */
	int fired;
};

static void bump(struct csa_ws *ws, const char *id, long v)
{
	struct csa_err err = {0};
	struct csa_ticket tk;
	if (csa_store_load(ws->store, id, &tk, &err))
		fail_msg("load %s: %s", id, err.msg);
	tm_set(&tk, v);
	if (csa_store_commit(ws->store, &tk, CSA_DOC_ALL, &err))
		fail_msg("commit %s: %s", id, err.msg);
	csa_ticket_release(&tk);
}

static void commit_during_sync(void *ctx)
{
	struct during *d = ctx;
	if (d->fired++)
		return;
	bump(d->ws, "B", 2);
	if (d->other_checkpoints) {
		struct csa_err err = {0};
		assert_int_equal(d->ws->store->ops->checkpoint(d->ws->store, &err), 0);
		bump(d->ws, "B", 3);
	}
}

/* A commit made while another commit's checkpoint syncs the file system
 * keeps its journal record (it is not covered by that sync): a damaged
 * file of it is restored by recovery. With a checkpoint of another handle
 * in between, the first checkpoint drops nothing at all. */
static void commits_during_a_checkpoint_stay_journaled(void **state)
{
	(void)state;
	for (int other = 0; other < 2; other++) {
		char *dir = t_tmpdir("cpsync");
		struct csa_err err = {0};
		struct csa_ws *ws, *ws2;
		assert_int_equal(csa_ws_init(dir, &err), 0);
		assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
		assert_int_equal(csa_ws_open(dir, &ws2, &err), 0);
		const char *ids[] = {"A", "B"};
		assert_int_equal(tm_create(ws, ids, 2), 0);
		assert_int_equal(ws->store->ops->checkpoint(ws->store, &err), 0);
		struct during d = {.ws = ws2, .other_checkpoints = other};
		csa_mesh_test_after_sync(ws->store, commit_during_sync, &d);
		csa_mesh_set_checkpoint_bytes(ws->store, 1);
		long before = csa_mesh_stats(ws->store).checkpoints;
		bump(ws, "A", 1); /* its checkpoint runs the hook */
		assert_int_equal(d.fired, 1);
		assert_int_equal(csa_mesh_stats(ws->store).checkpoints, before + !other);
		assert_int_equal(jinfo(dir).records, 1); /* B's last record */

		/* B's workflow file torn as by a crash before any sync */
		char path[4200];
		assert_int_equal(csa_mesh_doc_path(ws, 2, "B", path, sizeof(path), NULL), 0);
		t_write(path, "{\"ticket_id\": \"B");
		csa_mesh_test_after_sync(ws->store, NULL, NULL);
		struct csa_ws *ws3;
		assert_int_equal(csa_ws_open(dir, &ws3, &err), 0); /* recovery */
		assert_int_equal(tm_load_version(ws3, "B"), other ? 3 : 2);
		assert_int_equal(tm_load_version(ws3, "A"), 1);
		assert_true(csa_mesh_stats(ws3->store).recovered_docs >= 1);
		csa_ws_close(ws3);
		csa_ws_close(ws2);
		csa_ws_close(ws);
		t_rmrf(dir);
		free(dir);
	}
}

/* ---- the reused journal -------------------------------------------------- */

/* The entries of the journal's records of one generation, in order. */
struct entries {
	int kind[64];
	char *doc[64];
	size_t len[64];
	int n;
};

static int collect(void *ctx, const struct csa_jentry *e)
{
	struct entries *x = ctx;
	if (x->n == 64)
		return CSA_ELIMIT;
	x->kind[x->n] = e->kind;
	x->doc[x->n] = strndup(e->doc, e->doc_len);
	x->len[x->n] = e->doc_len;
	x->n++;
	return CSA_OK;
}

static void entries_free(struct entries *x)
{
	for (int i = 0; i < x->n; i++)
		free(x->doc[i]);
	x->n = 0;
}

/* One record of ticket id's three documents, entries [at, at + 3) of x. */
static void record_of(struct csa_jbuf *b, const struct entries *x, int at, const char *id)
{
	csa_jbuf_init(b);
	for (int k = 0; k < 3; k++)
		assert_int_equal(
		    csa_jbuf_add(b, x->kind[at + k], id, x->doc[at + k], x->len[at + k]), 0);
}

/*
 * A workspace whose ticket S was created (v0) then committed at v1 and v2,
 * checkpointed: the journal's generation moved on and the three records
 * are left in the file, stale. Returns their entries (9: v0, v1, v2) and
 * the journal's generation.
 */
static char *stale_fixture(struct entries *x, uint64_t *gen)
{
	char *dir = t_tmpdir("stale");
	struct csa_err err = {0};
	struct csa_ws *ws;
	assert_int_equal(csa_ws_init(dir, &err), 0);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	const char *ids[] = {"S"};
	assert_int_equal(tm_create(ws, ids, 1), 0);
	bump(ws, "S", 1);
	bump(ws, "S", 2);
	assert_int_equal(ws->store->ops->checkpoint(ws->store, &err), 0);
	csa_ws_close(ws);
	struct csa_jinfo ji = jinfo(dir);
	assert_int_equal(ji.fmt, CSA_JFMT_V2);
	char path[4200];
	snprintf(path, sizeof(path), "%s/.csa/journal", dir);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	off_t end;
	memset(x, 0, sizeof(*x));
	assert_int_equal(
	    csa_journal_scan(fd, path, CSA_JFMT_V2, ji.gen - 1, collect, x, &end, NULL, &err), 0);
	close(fd);
	assert_int_equal(x->n, 9);
	*gen = ji.gen;
	return dir;
}

/*
 * The guard of the reused journal: records of an older generation, whole
 * and with valid CRCs, right after the current generation's records (a
 * current record ended exactly where an older one began) are never read
 * as current, by a scan or by recovery. Without the generation check the
 * scan returns two records and recovery puts S back at v1.
 */
static void stale_generation_records_are_never_replayed(void **state)
{
	(void)state;
	struct entries x;
	uint64_t g;
	char *dir = stale_fixture(&x, &g);
	char path[4200];
	snprintf(path, sizeof(path), "%s/.csa/journal", dir);
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	struct csa_err err = {0};
	/* generation g+1: S at v2; then, where the next record would go, a
	 * record of generation g with S at v1 */
	struct csa_jbuf cur, old;
	record_of(&cur, &x, 6, "S");
	record_of(&old, &x, 3, "S");
	size_t cur_len = csa_jbuf_size(&cur);
	assert_int_equal(csa_journal_header_write(fd, path, g + 1, 1, &err), 0);
	assert_int_equal(csa_journal_append(fd, path, CSA_JOURNAL_HDR, g + 1, &cur, 0, 1, &err), 0);
	assert_int_equal(
	    csa_journal_append(fd, path, CSA_JOURNAL_HDR + (off_t)cur_len, g, &old, 0, 1, &err), 0);
	csa_jbuf_release(&cur);
	csa_jbuf_release(&old);

	struct entries seen = {0};
	off_t end, torn;
	assert_int_equal(
	    csa_journal_scan(fd, path, CSA_JFMT_V2, g + 1, collect, &seen, &end, &torn, &err), 0);
	assert_int_equal(seen.n, 3);
	assert_int_equal(end, CSA_JOURNAL_HDR + (off_t)cur_len);
	assert_int_equal(torn, 0); /* an older record is not a torn one */
	entries_free(&seen);
	close(fd);
	struct csa_jinfo ji = jinfo(dir);
	assert_int_equal(ji.records, 1);
	assert_true(ji.stale_records >= 1);

	/* S's workflow file torn as by a crash: recovery must restore v2 */
	struct csa_ws *ws;
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	char tpath[4200];
	assert_int_equal(csa_mesh_doc_path(ws, 2, "S", tpath, sizeof(tpath), NULL), 0);
	csa_ws_close(ws);
	t_write(tpath, "{\"ticket_id\": \"S");
	/* the journal again as above (the close checkpointed it) */
	fd = open(path, O_RDWR);
	record_of(&cur, &x, 6, "S");
	record_of(&old, &x, 3, "S");
	ji = jinfo(dir);
	assert_int_equal(csa_journal_header_write(fd, path, ji.gen + 1, 1, &err), 0);
	assert_int_equal(
	    csa_journal_append(fd, path, CSA_JOURNAL_HDR, ji.gen + 1, &cur, 0, 1, &err), 0);
	assert_int_equal(csa_journal_append(fd, path, CSA_JOURNAL_HDR + (off_t)cur_len, ji.gen,
	                                    &old, 0, 1, &err),
	                 0);
	csa_jbuf_release(&cur);
	csa_jbuf_release(&old);
	close(fd);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	assert_true(csa_mesh_stats(ws->store).recovered_docs >= 1);
	assert_int_equal(tm_load_version(ws, "S"), 2);
	json_t *rep;
	assert_int_equal(csa_verify(ws, 0, NULL, &rep, &err), 0);
	assert_true(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	csa_ws_close(ws);
	entries_free(&x);
	t_rmrf(dir);
	free(dir);
}

static void put32le(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* A journal as csa wrote it before generations (docs/STORE.md): records
 * from offset 0, "CSAJ" | u32 length | u32 crc32(length bytes + payload). */
static void write_v1(const char *path, const struct entries *x, int at, const char *id,
                     const char *tail, size_t tail_len)
{
	size_t cap = 64;
	for (int k = 0; k < 3; k++)
		cap += 6 + strlen(id) + x->len[at + k];
	unsigned char *buf = calloc(1, cap + tail_len), *p = buf + 12;
	put32le(p, 3);
	p += 4;
	for (int k = 0; k < 3; k++) {
		*p++ = (unsigned char)x->kind[at + k];
		*p++ = (unsigned char)strlen(id);
		memcpy(p, id, strlen(id));
		p += strlen(id);
		put32le(p, (uint32_t)x->len[at + k]);
		memcpy(p + 4, x->doc[at + k], x->len[at + k]);
		p += 4 + x->len[at + k];
	}
	uint32_t plen = (uint32_t)(p - buf - 12);
	memcpy(buf, "CSAJ", 4);
	put32le(buf + 4, plen);
	uLong crc = crc32(0L, buf + 4, 4);
	crc = crc32(crc, buf + 12, plen);
	put32le(buf + 8, (uint32_t)crc);
	memcpy(p, tail, tail_len);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, (size_t)(p - buf) + tail_len, f),
	                 (size_t)(p - buf) + tail_len);
	fclose(f);
	free(buf);
}

/* A workspace written by the previous csa: its journal has no header and
 * records without a generation (and here a torn one after them). Opening
 * it replays the whole records, drops the torn one and starts the journal
 * afresh in the current format. */
static void journal_of_an_older_csa_is_recovered(void **state)
{
	(void)state;
	struct entries x;
	uint64_t g;
	char *dir = stale_fixture(&x, &g);
	struct csa_err err = {0};
	struct csa_ws *ws;
	char path[4200], tpath[4200];
	snprintf(path, sizeof(path), "%s/.csa/journal", dir);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	assert_int_equal(csa_mesh_doc_path(ws, 2, "S", tpath, sizeof(tpath), NULL), 0);
	csa_ws_close(ws);
	/* S's files at v1, its T torn; the old journal holds v2 */
	t_write(tpath, "{\"ticket_id\": \"S");
	static const char torn[] = "CSAJ\x40\x00\x00\x00garbage";
	write_v1(path, &x, 6, "S", torn, sizeof(torn) - 1);
	/* and .csa/lock as the previous csa left it: the trim counter only */
	char lpath[4200];
	snprintf(lpath, sizeof(lpath), "%s/.csa/lock", dir);
	assert_int_equal(truncate(lpath, 8), 0);
	struct csa_jinfo ji = jinfo(dir);
	assert_int_equal(ji.fmt, CSA_JFMT_V1);
	assert_int_equal(ji.records, 1);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	assert_int_equal(tm_load_version(ws, "S"), 2);
	assert_true(csa_mesh_stats(ws->store).recovered_docs >= 1);
	assert_int_equal(csa_mesh_stats(ws->store).torn_bytes, (long)sizeof(torn) - 1);
	ji = jinfo(dir);
	assert_int_equal(ji.fmt, CSA_JFMT_V2);
	assert_int_equal(ji.records, 0);
	assert_int_equal(ji.size, CSA_JOURNAL_HDR);
	/* and it goes on as any other */
	bump(ws, "S", 3);
	csa_ws_close(ws);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	assert_int_equal(tm_load_version(ws, "S"), 3);
	json_t *rep;
	assert_int_equal(csa_verify(ws, 0, NULL, &rep, &err), 0);
	assert_true(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	csa_ws_close(ws);
	entries_free(&x);
	t_rmrf(dir);
	free(dir);
}

/* A checkpoint keeps the journal file: same inode, same length; the next
 * commits write over the older generation's records without growing it,
 * and the older ones after them are left alone (and never replayed). */
static void checkpoint_reuses_the_journal_file(void **state)
{
	(void)state;
	char *dir = t_tmpdir("reuse");
	struct csa_err err = {0};
	struct csa_ws *ws;
	assert_int_equal(csa_ws_init(dir, &err), 0);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	const char *ids[] = {"R"};
	assert_int_equal(tm_create(ws, ids, 1), 0);
	for (long v = 1; v <= 20; v++)
		bump(ws, "R", v);
	struct csa_jinfo before = jinfo(dir);
	assert_int_equal(before.records, 21);
	char path[4200];
	struct stat s0, s1;
	snprintf(path, sizeof(path), "%s/.csa/journal", dir);
	assert_int_equal(ws->store->ops->checkpoint(ws->store, &err), 0);
	assert_int_equal(stat(path, &s0), 0);
	struct csa_jinfo ji = jinfo(dir);
	assert_int_equal(ji.gen, before.gen + 1);
	assert_int_equal(ji.records, 0);
	assert_int_equal(ji.stale_records, 21);
	assert_true(s0.st_size >= before.valid_end);
	for (long v = 21; v <= 25; v++)
		bump(ws, "R", v);
	assert_int_equal(stat(path, &s1), 0);
	assert_true(s1.st_ino == s0.st_ino);
	assert_int_equal(s1.st_size, s0.st_size); /* no growth: no inode to flush */
	ji = jinfo(dir);
	assert_int_equal(ji.records, 5);
	/* the new records are a few bytes longer (v21 against v1): they
	 * cover five older ones and part of a sixth */
	assert_int_equal(ji.stale_records, 15);
	csa_ws_close(ws); /* checkpoints: a new generation again */
	assert_int_equal(stat(path, &s1), 0);
	assert_true(s1.st_ino == s0.st_ino);
	assert_int_equal(jinfo(dir).gen, before.gen + 2);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	assert_int_equal(tm_load_version(ws, "R"), 25);
	assert_int_equal(csa_mesh_stats(ws->store).recovered_docs, 0);
	csa_ws_close(ws);
	t_rmrf(dir);
	free(dir);
}

static int count_entry(void *ctx, const struct csa_jentry *e)
{
	if (e->kind < 0 || e->kind > 2 || e->id_len > 255)
		fail_msg("entry out of range: kind %d, id of %zu bytes", e->kind, e->id_len);
	(*(long *)ctx)++;
	return CSA_OK;
}

/* Damaged journals: random bytes, with the magic of a record, lengths
 * that run past the file and records of the right generation cut or
 * flipped at random, around whole records. The scan reads every whole
 * record of the generation before the first damage and nothing after it,
 * and never reads outside the file (the ASan build runs this too). */
static void damaged_journals_are_read_up_to_the_damage(void **state)
{
	(void)state;
	char *dir = t_tmpdir("jdamage");
	char path[4200];
	snprintf(path, sizeof(path), "%s/journal", dir);
	unsigned seed = (unsigned)time(NULL);
	srand(seed);
	struct csa_err err = {0};
	for (int round = 0; round < 300; round++) {
		int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		assert_true(fd >= 0);
		uint64_t gen = 1 + (uint64_t)(rand() % 5);
		assert_int_equal(csa_journal_header_write(fd, path, gen, 0, &err), 0);
		off_t end = CSA_JOURNAL_HDR;
		int whole = rand() % 4;
		long entries = 0;
		for (int r = 0; r < whole; r++) {
			struct csa_jbuf b;
			csa_jbuf_init(&b);
			char doc[64];
			int n = 1 + rand() % 3;
			for (int k = 0; k < n; k++) {
				snprintf(doc, sizeof(doc), "{\"r\":%d,\"k\":%d}", r, k);
				assert_int_equal(csa_jbuf_add(&b, k % 3, "T-1", doc, strlen(doc)),
				                 0);
			}
			size_t len = csa_jbuf_size(&b);
			assert_int_equal(csa_journal_append(fd, path, end, gen, &b, 0, 0, &err), 0);
			csa_jbuf_release(&b);
			end += (off_t)len;
			entries += n;
		}
		/* then the damage: a record of this generation cut or flipped,
		 * or of an older one, or random bytes with the magic in them */
		unsigned char junk[512];
		size_t jl = (size_t)(rand() % (int)sizeof(junk));
		for (size_t i = 0; i < jl; i++)
			junk[i] = (unsigned char)rand();
		int kind = rand() % 3;
		if (kind == 0 && jl >= 20) {
			memcpy(junk, "CSJR", 4);
			uint32_t plen = (uint32_t)(rand() % 2 ? rand() : (int)jl);
			memcpy(junk + 4, &plen, 4); /* little-endian machine */
			memcpy(junk + 8, &gen, 8);
		} else if (kind == 1 && jl >= 20) {
			memcpy(junk, "CSJR", 4);
			uint64_t older = gen - 1;
			memcpy(junk + 8, &older, 8);
		}
		assert_int_equal(pwrite(fd, junk, jl, end), (ssize_t)jl);
		off_t valid_end, torn;
		long seen = 0;
		assert_int_equal(csa_journal_scan(fd, path, CSA_JFMT_V2, gen, count_entry, &seen,
		                                  &valid_end, &torn, &err),
		                 0);
		if (valid_end != end || seen != entries)
			fail_msg("round %d: read to %lld with %ld entries, expected %lld with %ld "
			         "(seed %u)",
			         round, (long long)valid_end, seen, (long long)end, entries, seed);
		assert_true(torn >= 0 && torn <= (off_t)jl);
		struct csa_jinfo ji;
		assert_int_equal(csa_journal_inspect(path, &ji, &err), 0);
		assert_int_equal(ji.records, whole);
		close(fd);
	}
	t_rmrf(dir);
	free(dir);
}

/* A journal that a burst made longer than twice the checkpoint interval
 * (at least 1 MB) is cut back to that by the next checkpoint, and goes on
 * as before: the bound keeps a reused journal from keeping a burst's size
 * for ever. */
static void a_journal_grown_by_a_burst_is_cut_back(void **state)
{
	(void)state;
	char *dir = t_tmpdir("bound");
	struct csa_err err = {0};
	struct csa_ws *ws;
	assert_int_equal(csa_ws_init(dir, &err), 0);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	const char *ids[] = {"G"};
	assert_int_equal(tm_create(ws, ids, 1), 0);
	long v = 0;
	while (jinfo(dir).size <= (off_t)(1 << 20) + CSA_JOURNAL_HDR)
		bump(ws, "G", ++v);
	csa_mesh_set_checkpoint_bytes(ws->store, 1); /* the bound: 1 MB */
	assert_int_equal(ws->store->ops->checkpoint(ws->store, &err), 0);
	struct csa_jinfo ji = jinfo(dir);
	assert_int_equal(ji.size, 1 << 20);
	assert_int_equal(ji.records, 0);
	assert_true(ji.stale_records > 0);
	bump(ws, "G", ++v);
	csa_ws_close(ws);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	assert_int_equal(tm_load_version(ws, "G"), v);
	json_t *rep;
	assert_int_equal(csa_verify(ws, 0, NULL, &rep, &err), 0);
	assert_true(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	csa_ws_close(ws);
	t_rmrf(dir);
	free(dir);
}

/* Two handles of one workspace (as two processes): each sees the other's
 * checkpoint through .csa/lock's header and appends in the generation the
 * journal has, where the last record of either ends; recovery then finds
 * every record the last checkpoint did not cover. */
static void handles_follow_each_others_generations(void **state)
{
	(void)state;
	char *dir = t_tmpdir("twohandles");
	struct csa_err err = {0};
	struct csa_ws *a, *b;
	assert_int_equal(csa_ws_init(dir, &err), 0);
	assert_int_equal(csa_ws_open(dir, &a, &err), 0);
	assert_int_equal(csa_ws_open(dir, &b, &err), 0);
	const char *ids[] = {"A", "B"};
	assert_int_equal(tm_create(a, ids, 2), 0);
	long va = 0, vb = 0;
	for (int round = 0; round < 6; round++) {
		bump(a, "A", ++va);
		bump(b, "B", ++vb);
		struct csa_ws *cp = round % 2 ? b : a;
		assert_int_equal(cp->store->ops->checkpoint(cp->store, &err), 0);
		bump(b, "B", ++vb);
		bump(a, "A", ++va);
	}
	struct csa_jinfo ji = jinfo(dir);
	assert_int_equal(ji.records, 2);
	assert_true(ji.stale_records >= 1);
	/* both documents torn as by a crash before any sync: only the journal
	 * can bring them back */
	char p[4200];
	assert_int_equal(csa_mesh_doc_path(a, 2, "A", p, sizeof(p), NULL), 0);
	t_write(p, "{");
	assert_int_equal(csa_mesh_doc_path(a, 2, "B", p, sizeof(p), NULL), 0);
	t_write(p, "{");
	struct csa_ws *c;
	assert_int_equal(csa_ws_open(dir, &c, &err), 0);
	assert_int_equal(tm_load_version(c, "A"), va);
	assert_int_equal(tm_load_version(c, "B"), vb);
	assert_int_equal(csa_mesh_stats(c->store).recovered_docs, 2);
	/* and the other handles go on after that recovery's checkpoint */
	bump(a, "A", ++va);
	bump(b, "B", ++vb);
	csa_ws_close(c);
	csa_ws_close(b);
	csa_ws_close(a);
	assert_int_equal(csa_ws_open(dir, &c, &err), 0);
	assert_int_equal(tm_load_version(c, "A"), va);
	assert_int_equal(tm_load_version(c, "B"), vb);
	csa_ws_close(c);
	t_rmrf(dir);
	free(dir);
}

/* A checkpoint whose fdatasync of the new header fails leaves the header's
 * state unknown (it may reach the disk later, or never): the lock header
 * then says generation 0, and another handle recovers before it appends,
 * so its commit is recorded under the generation the file's header has.
 * Without that it would append under the old generation after a header
 * that may say the new one, and recovery would not find its record. */
static void a_failed_header_flush_makes_other_handles_recover(void **state)
{
	(void)state;
	char *dir = t_tmpdir("hdrfail");
	struct csa_err err = {0};
	struct csa_ws *a, *b;
	assert_int_equal(csa_ws_init(dir, &err), 0);
	assert_int_equal(csa_ws_open(dir, &a, &err), 0);
	assert_int_equal(csa_ws_open(dir, &b, &err), 0);
	const char *ids[] = {"X"};
	assert_int_equal(tm_create(a, ids, 1), 0);
	csa_mesh_set_checkpoint_bytes(a->store, 1); /* every commit of a checkpoints */
	csa_fault_reset_counts();
	bump(a, "X", 1);
	/* the commit's own fdatasync, then the checkpoint's of the header */
	assert_int_equal(csa_fault_count(CSA_FS_FSYNC), 2);
	uint64_t gen = jinfo(dir).gen;
	csa_fault_arm(CSA_FS_FSYNC, 2, EIO);
	bump(a, "X", 2); /* the commit stands; its checkpoint failed */
	assert_true(csa_fault_fired());
	csa_fault_disarm();
	assert_int_equal(jinfo(dir).gen, gen + 1); /* in the page cache, at least */
	bump(b, "X", 3);
	struct csa_jinfo ji = jinfo(dir);
	assert_int_equal(ji.records, 1); /* b's commit, in the header's generation */
	assert_true(ji.gen > gen);
	/* X's workflow file torn as by a crash: the journal must restore v3 */
	char p[4200];
	assert_int_equal(csa_mesh_doc_path(a, 2, "X", p, sizeof(p), NULL), 0);
	t_write(p, "{");
	struct csa_ws *c;
	assert_int_equal(csa_ws_open(dir, &c, &err), 0);
	assert_int_equal(tm_load_version(c, "X"), 3);
	csa_ws_close(c);
	csa_ws_close(b);
	csa_ws_close(a);
	t_rmrf(dir);
	free(dir);
}

/* ---- group commit ----------------------------------------------------- */

struct group_ctx {
	struct csa_ws *ws;
	_Atomic int hook_calls;
	int rc[2];
};

/* The first leader holds its batch until two more commits are queued. */
static void hold_first_batch(void *vctx)
{
	struct group_ctx *g = vctx;
	if (atomic_fetch_add(&g->hook_calls, 1))
		return;
	for (int i = 0; i < 10000 && csa_mesh_test_queued(g->ws->store) < 2; i++)
		usleep(1000);
}

static void *bump_x(void *vctx)
{
	bump(((struct group_ctx *)vctx)->ws, "X", 1);
	return NULL;
}

struct creator {
	struct group_ctx *g;
	int i;
};

static void *create_dup(void *v)
{
	struct creator *c = v;
	const char *ids[] = {"DUP"};
	c->g->rc[c->i] = tm_create(c->g->ws, ids, 1);
	return NULL;
}

/* Commits queued while a batch runs go together in the next one, with one
 * journal record; each still succeeds or fails on its own (two creations
 * of one ticket in a batch: the second is refused). */
static void group_commit_runs_queued_commits_together(void **state)
{
	(void)state;
	char *dir = t_tmpdir("group");
	struct csa_err err = {0};
	struct csa_ws *ws;
	assert_int_equal(csa_ws_init(dir, &err), 0);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	const char *ids[] = {"X"};
	assert_int_equal(tm_create(ws, ids, 1), 0);
	struct group_ctx g = {.ws = ws};
	csa_mesh_test_before_batch(ws->store, hold_first_batch, &g);
	struct csa_mesh_stats before = csa_mesh_stats(ws->store);
	pthread_t leader, dup[2];
	struct creator c[2] = {{&g, 0}, {&g, 1}};
	assert_int_equal(pthread_create(&leader, NULL, bump_x, &g), 0);
	while (atomic_load(&g.hook_calls) == 0)
		usleep(1000);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&dup[i], NULL, create_dup, &c[i]), 0);
	pthread_join(leader, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(dup[i], NULL);
	csa_mesh_test_before_batch(ws->store, NULL, NULL);
	struct csa_mesh_stats after = csa_mesh_stats(ws->store);
	assert_int_equal(atomic_load(&g.hook_calls), 2); /* two batches */
	assert_int_equal(after.batches - before.batches, 2);
	assert_int_equal(after.commits - before.commits, 2);
	assert_true((g.rc[0] == 0) != (g.rc[1] == 0));
	assert_int_equal(g.rc[0] + g.rc[1], CSA_EEXIST);
	assert_int_equal(tm_load_version(ws, "X"), 1);
	assert_int_equal(tm_load_version(ws, "DUP"), 0);
	json_t *rep;
	assert_int_equal(csa_verify(ws, 0, NULL, &rep, &err), 0);
	assert_true(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	csa_ws_close(ws);
	t_rmrf(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(faults_in_commit),
	    cmocka_unit_test(faults_in_group_commit),
	    cmocka_unit_test(faults_in_commit_with_checkpoint),
	    cmocka_unit_test(commits_during_a_checkpoint_stay_journaled),
	    cmocka_unit_test(group_commit_runs_queued_commits_together),
	    cmocka_unit_test(faults_while_creating),
	    cmocka_unit_test(commits_without_exchange_rename_instead),
	    cmocka_unit_test(stale_generation_records_are_never_replayed),
	    cmocka_unit_test(journal_of_an_older_csa_is_recovered),
	    cmocka_unit_test(checkpoint_reuses_the_journal_file),
	    cmocka_unit_test(a_journal_grown_by_a_burst_is_cut_back),
	    cmocka_unit_test(damaged_journals_are_read_up_to_the_damage),
	    cmocka_unit_test(handles_follow_each_others_generations),
	    cmocka_unit_test(a_failed_header_flush_makes_other_handles_recover),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
