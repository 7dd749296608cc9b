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
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fsops.h"
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
	for (int op = 0; op < CSA_FS_NOPS; op++) {
		/* how many calls of this kind does one commit make? */
		if (checkpoint_every_commit)
			csa_mesh_set_checkpoint_bytes(ws->store, 1);
		csa_fault_reset_counts();
		assert_int_equal(do_commit(ws, ++v, group, &err), 0);
		long calls = csa_fault_count((enum csa_fs_op)op);
		for (long n = 1; n <= calls; n++) {
			int e = op == CSA_FS_WRITE && n % 2 ? ENOSPC : EIO;
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

static off_t journal_size(const char *dir)
{
	char path[4200];
	struct stat st;
	snprintf(path, sizeof(path), "%s/.csa/journal", dir);
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
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
		assert_true(journal_size(dir) > 0); /* B's last record */

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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
