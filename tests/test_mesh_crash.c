/* Crash test: a child commits in a loop (group commits of three tickets and
 * single commits of a fourth; each writes its documents into files of the
 * store's pool and swaps them in) and is killed with SIGKILL at random
 * instants, 200 times. After each kill, recovery must leave every ticket
 * wholly at one commit, the group's tickets at the same commit, no
 * acknowledged commit lost, and `verify` clean. The journal file is reused
 * (checkpoints start a new generation over the old records), and the kills
 * must land with records of older generations after the current ones:
 * replaying one of those would put a ticket back at an older version. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/journal.h"
#include "store/mesh.h"
#include "store/verify.h"
#include "support/tmesh.h"
#include "support/tutil.h"

#define KILLS 200

static const char *const group[] = {"G-a", "G-b", "G-c"};

/* The child: each acknowledged commit is reported on 'fd' as a record
 * "g<version>" or "s<version>" after the commit call returned. */
static void child(const char *dir, int fd, long gstart, long sstart, unsigned seed)
{
	struct csa_ws *ws;
	struct csa_err err = {0};
	if (csa_ws_open(dir, &ws, &err))
		_exit(3);
	/* small checkpoints so kills also land inside them */
	csa_mesh_set_checkpoint_bytes(ws->store, 4096 + seed % 30000);
	long gv = gstart, sv = sstart;
	for (unsigned n = 0;; n++) {
		struct csa_lock *lk[3];
		struct csa_ticket tk[3];
		struct csa_ticket *p[3];
		if ((n + seed) % 3 == 0) {
			if (csa_store_lock(ws->store, "S", &lk[0], &err) ||
			    csa_store_load_locked(ws->store, "S", &tk[0], &err))
				_exit(4);
			tm_set(&tk[0], ++sv);
			if (csa_store_commit(ws->store, &tk[0], CSA_DOC_ALL, &err))
				_exit(5);
			char rec[32];
			int len = snprintf(rec, sizeof(rec), "s%ld\n", sv);
			if (write(fd, rec, (size_t)len) != len)
				_exit(6);
			csa_ticket_release(&tk[0]);
			csa_store_unlock(ws->store, lk[0]);
			continue;
		}
		gv++;
		for (int i = 0; i < 3; i++) {
			if (csa_store_lock(ws->store, group[i], &lk[i], &err) ||
			    csa_store_load_locked(ws->store, group[i], &tk[i], &err))
				_exit(7);
			tm_set(&tk[i], gv);
			p[i] = &tk[i];
		}
		if (csa_store_commit_many(ws->store, p, 3, CSA_DOC_ALL, &err))
			_exit(8);
		char rec[32];
		int len = snprintf(rec, sizeof(rec), "g%ld\n", gv);
		if (write(fd, rec, (size_t)len) != len)
			_exit(6);
		for (int i = 0; i < 3; i++) {
			csa_ticket_release(&tk[i]);
			csa_store_unlock(ws->store, lk[i]);
		}
	}
}

static void killed_at_random_instants(void **state)
{
	(void)state;
	char *dir = t_tmpdir("crash");
	struct csa_err err = {0};
	struct csa_ws *ws;
	assert_int_equal(csa_ws_init(dir, &err), 0);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	assert_int_equal(tm_create(ws, group, 3), 0);
	const char *single[] = {"S"};
	assert_int_equal(tm_create(ws, single, 1), 0);
	csa_ws_close(ws);

	unsigned seed = (unsigned)time(NULL);
	if (getenv("CSA_TEST_SEED"))
		seed = (unsigned)strtoul(getenv("CSA_TEST_SEED"), NULL, 10);
	srand(seed);
	long gacked = 0, sacked = 0, gseen = 0, sseen = 0, total_commits = 0;
	long with_stale = 0, mid_generation = 0;
	char jpath[4200];
	snprintf(jpath, sizeof(jpath), "%s/.csa/journal", dir);
	for (int k = 0; k < KILLS; k++) {
		int fds[2];
		assert_int_equal(pipe(fds), 0);
		pid_t pid = fork();
		if (pid == 0) {
			close(fds[0]);
			child(dir, fds[1], gseen, sseen, (unsigned)rand());
		}
		close(fds[1]);
		/* Every other kill waits for the child's first acknowledged commit,
		 * so those land mid-stream whatever the machine's speed; the others
		 * may also land while the child is still opening (recovering). */
		FILE *in = fdopen(fds[0], "r");
		char line[64];
		if (k % 2 == 0 && fgets(line, sizeof(line), in)) {
			long v = strtol(line + 1, NULL, 10);
			if (line[0] == 'g')
				gacked = v;
			else
				sacked = v;
			total_commits++;
		}
		struct timespec ts = {0, 200000 + (long)(rand() % 8000) * 1000};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status;
		waitpid(pid, &status, 0);
		if (!WIFSIGNALED(status))
			fail_msg("child exited with %d before the kill (seed %u)",
			         WEXITSTATUS(status), seed);
		while (fgets(line, sizeof(line), in)) {
			long v = strtol(line + 1, NULL, 10);
			if (line[0] == 'g')
				gacked = v;
			else
				sacked = v;
			total_commits++;
		}
		fclose(in);

		/* what the kill left in the journal, before recovery reads it */
		struct csa_jinfo ji;
		if (csa_journal_inspect(jpath, &ji, &err))
			fail_msg("kill %d: %s (seed %u)", k, err.msg, seed);
		with_stale += ji.stale_records > 0;
		mid_generation += ji.stale_records > 0 && ji.records > 0;

		/* recovery runs on open */
		if (csa_ws_open(dir, &ws, &err))
			fail_msg("open after kill %d: %s (seed %u)", k, err.msg, seed);
		long g0 = tm_load_version(ws, group[0]);
		for (int i = 0; i < 3; i++) {
			long v = tm_load_version(ws, group[i]);
			if (v < 0)
				fail_msg("kill %d: %s mixes commits (seed %u)", k, group[i], seed);
			if (v != g0)
				fail_msg("kill %d: group commit split: %s at v%ld, %s at v%ld "
				         "(seed %u)",
				         k, group[0], g0, group[i], v, seed);
		}
		long sv = tm_load_version(ws, "S");
		if (sv < 0)
			fail_msg("kill %d: S mixes commits (seed %u)", k, seed);
		if (g0 < gacked || sv < sacked)
			fail_msg("kill %d: acknowledged commit lost: group v%ld < v%ld or S v%ld < "
			         "v%ld (seed %u)",
			         k, g0, gacked, sv, sacked, seed);
		/* a commit that had not returned may be there or not, never
		 * more than one ahead */
		if (g0 > gacked + 1 || sv > sacked + 1)
			fail_msg("kill %d: version from nowhere (seed %u)", k, seed);
		json_t *rep;
		assert_int_equal(csa_verify(ws, 0, NULL, &rep, &err), 0);
		if (!json_is_true(json_object_get(rep, "ok"))) {
			char *txt = json_dumps(rep, 0);
			fail_msg("kill %d: verify: %s (seed %u)", k, txt, seed);
		}
		json_decref(rep);
		gseen = gacked = g0;
		sseen = sacked = sv;
		csa_ws_close(ws);
	}
	print_message("%d kills, %ld acknowledged commits, %ld with older records in the journal "
	              "(%ld after records of the current generation), seed %u\n",
	              KILLS, total_commits, with_stale, mid_generation, seed);
	assert_true(total_commits >= KILLS / 2); /* the kills did land mid-stream */
	/* and in a reused journal, older generations' records beyond its end */
	assert_true(with_stale >= KILLS / 2);
	assert_true(mid_generation >= KILLS / 4);
	/* and they landed in commits that swap pool files in */
	char pool0[4096];
	struct stat sb;
	snprintf(pool0, sizeof(pool0), "%s/.csa/pool/0", dir);
	assert_int_equal(stat(pool0, &sb), 0);
	t_rmrf(dir);
	free(dir);
}

/* ---- a writer killed while another goes on ------------------------------ */

#define PAIR_ROUNDS 100

/* Commit ticket 'id' at versions start+1, start+2, ... reporting each
 * acknowledged one on 'fd'; small checkpoints, so that the other process
 * checkpoints often after this one died. */
static void pair_child(const char *dir, const char *id, int fd, long start)
{
	struct csa_ws *ws;
	struct csa_err err = {0};
	if (csa_ws_open(dir, &ws, &err))
		_exit(3);
	csa_mesh_set_checkpoint_bytes(ws->store, 4096);
	for (long v = start + 1;; v++) {
		struct csa_lock *lk;
		struct csa_ticket tk;
		if (csa_store_lock(ws->store, id, &lk, &err) ||
		    csa_store_load_locked(ws->store, id, &tk, &err))
			_exit(4);
		tm_set(&tk, v);
		if (csa_store_commit(ws->store, &tk, CSA_DOC_ALL, &err))
			_exit(5);
		char rec[32];
		int len = snprintf(rec, sizeof(rec), "%ld\n", v);
		if (write(fd, rec, (size_t)len) != len)
			_exit(6);
		csa_ticket_release(&tk);
		csa_store_unlock(ws->store, lk);
	}
}

static pid_t pair_start(const char *dir, const char *id, long start, FILE **in)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		pair_child(dir, id, fds[1], start);
	}
	close(fds[1]);
	*in = fdopen(fds[0], "r");
	return pid;
}

/* Read acknowledgements: 'lines' of them (-1: until the pipe closes). */
static long pair_acks(FILE *in, long acked, int lines)
{
	char line[64];
	for (int n = 0; (lines < 0 || n < lines) && fgets(line, sizeof(line), in); n++)
		acked = strtol(line, NULL, 10);
	return acked;
}

/*
 * Two processes commit to one workspace, each its own ticket; one is
 * killed at a random instant and the other goes on committing (and
 * checkpointing) for a while before it is killed too. A commit cut short
 * between its record and the end of its swaps must not be dropped by the
 * survivor's checkpoint (which would leave that ticket torn) nor written
 * over by the survivor's commits; after recovery both tickets are whole,
 * at their last acknowledged commit or the one after it.
 */
static void survivor_goes_on_after_a_writer_is_killed(void **state)
{
	(void)state;
	char *dir = t_tmpdir("crash-pair");
	struct csa_err err = {0};
	struct csa_ws *ws;
	assert_int_equal(csa_ws_init(dir, &err), 0);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	const char *ids[] = {"P-a", "P-b"};
	assert_int_equal(tm_create(ws, ids, 2), 0);
	csa_ws_close(ws);
	unsigned seed = (unsigned)time(NULL);
	if (getenv("CSA_TEST_SEED"))
		seed = (unsigned)strtoul(getenv("CSA_TEST_SEED"), NULL, 10);
	srand(seed);
	long va = 0, vb = 0, total = 0;
	for (int k = 0; k < PAIR_ROUNDS; k++) {
		FILE *ina, *inb;
		pid_t a = pair_start(dir, ids[0], va, &ina);
		pid_t b = pair_start(dir, ids[1], vb, &inb);
		long acked_a = pair_acks(ina, va, 1);
		struct timespec ts = {0, 100000 + (long)(rand() % 4000) * 1000};
		nanosleep(&ts, NULL);
		kill(a, SIGKILL);
		int status;
		waitpid(a, &status, 0);
		if (!WIFSIGNALED(status))
			fail_msg("round %d: writer a exited with %d (seed %u)", k,
			         WEXITSTATUS(status), seed);
		acked_a = pair_acks(ina, acked_a, -1);
		fclose(ina);
		/* b goes on: commits and checkpoints after a's death */
		long acked_b = pair_acks(inb, vb, 6);
		kill(b, SIGKILL);
		waitpid(b, &status, 0);
		if (!WIFSIGNALED(status))
			fail_msg("round %d: writer b exited with %d (seed %u)", k,
			         WEXITSTATUS(status), seed);
		acked_b = pair_acks(inb, acked_b, -1);
		fclose(inb);
		total += acked_a - va + acked_b - vb;

		if (csa_ws_open(dir, &ws, &err))
			fail_msg("round %d: open: %s (seed %u)", k, err.msg, seed);
		long now_a = tm_load_version(ws, ids[0]), now_b = tm_load_version(ws, ids[1]);
		if (now_a < 0 || now_b < 0)
			fail_msg("round %d: a ticket mixes commits: P-a %ld, P-b %ld (seed %u)", k,
			         now_a, now_b, seed);
		if (now_a < acked_a || now_a > acked_a + 1 || now_b < acked_b ||
		    now_b > acked_b + 1)
			fail_msg("round %d: P-a at v%ld (acknowledged v%ld), P-b at v%ld "
			         "(acknowledged v%ld) (seed %u)",
			         k, now_a, acked_a, now_b, acked_b, seed);
		json_t *rep;
		assert_int_equal(csa_verify(ws, 0, NULL, &rep, &err), 0);
		if (!json_is_true(json_object_get(rep, "ok"))) {
			char *txt = json_dumps(rep, 0);
			fail_msg("round %d: verify: %s (seed %u)", k, txt, seed);
		}
		json_decref(rep);
		csa_ws_close(ws);
		va = now_a;
		vb = now_b;
	}
	print_message("%d rounds, %ld acknowledged commits, seed %u\n", PAIR_ROUNDS, total, seed);
	t_rmrf(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(killed_at_random_instants),
	    cmocka_unit_test(survivor_goes_on_after_a_writer_is_killed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
