/* Concurrency: 8 processes each append 500 messages to the same ticket
 * through the store's read-modify-write under the ticket lock. All 4,000
 * must be there afterwards, in order per writer; meanwhile a reader keeps
 * loading the ticket and must only ever see whole commits, and must have
 * seen some while the writers were at it.
 *
 * The cost grows with the square of the messages (each commit reads and
 * writes the whole ticket): 4,000 take about 2 minutes in the normal build
 * and 14 under ASan, so the sanitizer build runs 100 per writer (t_size).
 * The workspace stays on the ordinary temporary directory rather than
 * tmpfs: the time goes to JSON, not fsync (tmpfs saved a fifth), and a
 * disk's fsyncs inside each commit widen the windows a torn read would
 * fall into, which tmpfs would shrink to almost nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"
#include "store/mesh.h"
#include "store/ticket.h"
#include "store/verify.h"
#include "store/ws.h"
#include "support/tmesh.h"
#include "support/tutil.h"

#define WRITERS 8

/* Messages each writer appends: 500, or fewer in the sanitizer build. */
static int per_writer;

/* What the reader saw, in memory shared with the test process. */
struct seen {
	long loads;
	long mid; /* loads that found some but not all messages */
};

struct addc {
	const struct csa_config *cfg;
	int writer, seq;
};

static int append(void *ctx, struct csa_ticket *tk, unsigned *docs, struct csa_err *err)
{
	struct addc *c = ctx;
	char content[32];
	snprintf(content, sizeof(content), "%d:%d", c->writer, c->seq);
	json_t *m = json_pack("{s:s, s:s}", "content", content, "sender", "customer");
	int rc = csa_ticket_add_message(c->cfg, tk, CSA_SIDE_EXTERNAL, m, csa_now_ms(), NULL, err);
	json_decref(m);
	/* T counts the messages too, so a reader can check E and T agree */
	char n[32];
	snprintf(n, sizeof(n), "%zu", json_array_size(json_object_get(tk->e, "messages")));
	json_object_set_new(tk->t, "assigned_member", json_string(n));
	*docs = CSA_DOC_E | CSA_DOC_T;
	return rc;
}

static void writer(const char *dir, int w)
{
	struct csa_ws *ws;
	struct csa_err err = {0};
	if (csa_ws_open(dir, &ws, &err))
		_exit(2);
	for (int i = 0; i < per_writer; i++) {
		struct addc c = {csa_ws_config(ws), w, i};
		if (csa_store_update(ws->store, "shared", 0, append, &c, &err)) {
			fprintf(stderr, "writer %d: %s\n", w, err.msg);
			_exit(3);
		}
		csa_config_unref(c.cfg);
	}
	csa_ws_close(ws);
	_exit(0);
}

/* Loads until killed; exits 9 if it ever sees E and T disagree. */
static void reader(const char *dir, struct seen *seen)
{
	struct csa_ws *ws;
	struct csa_err err = {0};
	if (csa_ws_open(dir, &ws, &err))
		_exit(2);
	for (;;) {
		struct csa_ticket tk;
		if (csa_store_load(ws->store, "shared", &tk, &err))
			_exit(8);
		char n[32];
		snprintf(n, sizeof(n), "%zu", json_array_size(json_object_get(tk.e, "messages")));
		const char *am = csa_json_str(tk.t, "assigned_member");
		if (am && strcmp(am, n) != 0)
			_exit(9);
		size_t have = json_array_size(json_object_get(tk.e, "messages"));
		seen->loads++;
		if (have > 0 && have < (size_t)WRITERS * (size_t)per_writer)
			seen->mid++;
		csa_ticket_release(&tk);
		usleep(100000);
	}
}

static void eight_writers_one_ticket(void **state)
{
	(void)state;
	per_writer = t_size("messages per writer", 500, 100);
	struct seen *seen =
	    mmap(NULL, sizeof(*seen), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(seen != MAP_FAILED);
	char *dir = t_tmpdir("conc");
	struct csa_err err = {0};
	struct csa_ws *ws;
	assert_int_equal(csa_ws_init(dir, &err), 0);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	json_t *ctx = json_pack("{s:s}", "ticket_id", "shared");
	struct csa_ticket tk;
	const struct csa_config *cfg = csa_ws_config(ws);
	assert_int_equal(csa_ticket_build(cfg, ctx, csa_now_ms(), &tk, &err), 0);
	csa_config_unref(cfg);
	assert_int_equal(csa_store_commit(ws->store, &tk, CSA_DOC_ALL, &err), 0);
	csa_ticket_release(&tk);
	json_decref(ctx);
	csa_ws_close(ws);

	pid_t rpid = fork();
	if (rpid == 0)
		reader(dir, seen);
	pid_t pids[WRITERS];
	for (int w = 0; w < WRITERS; w++) {
		pids[w] = fork();
		if (pids[w] == 0)
			writer(dir, w);
	}
	for (int w = 0; w < WRITERS; w++) {
		int status;
		waitpid(pids[w], &status, 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail_msg("writer %d failed (status %d)", w, status);
	}
	kill(rpid, SIGKILL);
	int rstatus;
	waitpid(rpid, &rstatus, 0);
	if (WIFEXITED(rstatus))
		fail_msg("reader saw a torn ticket (exit %d)", WEXITSTATUS(rstatus));
	print_message("the reader loaded the ticket %ld times, %ld of them mid-stream\n",
	              seen->loads, seen->mid);
	/* else it proved nothing about torn reads */
	if (seen->mid < 1)
		fail_msg("the reader never saw the ticket while the writers were at it");

	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	assert_int_equal(csa_store_load(ws->store, "shared", &tk, &err), 0);
	json_t *msgs = json_object_get(tk.e, "messages");
	assert_int_equal(json_array_size(msgs), WRITERS * per_writer);
	int next[WRITERS] = {0};
	size_t i;
	json_t *m;
	json_array_foreach(msgs, i, m)
	{
		int w, seq;
		assert_int_equal(sscanf(csa_json_str(m, "content"), "%d:%d", &w, &seq), 2);
		assert_true(w >= 0 && w < WRITERS);
		if (seq != next[w])
			fail_msg("writer %d: message %d found where %d was expected", w, seq,
			         next[w]);
		next[w]++;
	}
	csa_ticket_release(&tk);
	json_t *rep;
	assert_int_equal(csa_verify(ws, 0, NULL, &rep, &err), 0);
	assert_true(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	csa_ws_close(ws);
	t_rmrf(dir);
	free(dir);
	munmap(seen, sizeof(*seen));
}

/*
 * A commit swaps its new files in and the files they replace go to the
 * store's pool, where the next commits rewrite them for other documents.
 * Readers without the ticket's lock (load_doc, scan) must still only ever
 * get a whole document of the ticket they asked for. Two writers commit
 * four tickets round robin (so every pool file is rewritten for another
 * ticket within a few commits) while two readers read them without a
 * lock, each read pausing between opening the file and reading it (a test
 * hook), the window in which the file could be swapped out and rewritten.
 */
static const char *const recycled[] = {"R0", "R1", "R2", "R3"};
#define NRECYCLED 4

static void pause_after_open(void *ctx)
{
	(void)ctx;
	usleep(500);
}

static void pool_writer(const char *dir, int w, int commits)
{
	struct csa_ws *ws;
	struct csa_err err = {0};
	if (csa_ws_open(dir, &ws, &err))
		_exit(2);
	for (int i = 0; i < commits; i++) {
		const char *id = recycled[(i + w) % NRECYCLED];
		struct csa_lock *lk;
		struct csa_ticket tk;
		if (csa_store_lock(ws->store, id, &lk, &err) ||
		    csa_store_load_locked(ws->store, id, &tk, &err))
			_exit(3);
		tm_set(&tk, tm_version(&tk) + 1);
		if (csa_store_commit(ws->store, &tk, CSA_DOC_ALL, &err)) {
			fprintf(stderr, "pool writer %d: %s\n", w, err.msg);
			_exit(4);
		}
		csa_ticket_release(&tk);
		csa_store_unlock(ws->store, lk);
	}
	csa_ws_close(ws);
	_exit(0);
}

struct scan_check {
	long seen;
	int bad;
};

static int check_scanned(void *ctx, const char *id, const json_t *t, const char *status)
{
	(void)status;
	struct scan_check *c = ctx;
	const char *tid = csa_json_str(t, "ticket_id");
	if (!tid || strcmp(tid, id) != 0)
		c->bad = 1;
	c->seen++;
	return 0;
}

/* Reads until killed; exits 9 on a document of another ticket or a torn
 * one, 8 on an error. */
static void pool_reader(const char *dir, struct seen *seen, unsigned seed)
{
	struct csa_ws *ws;
	struct csa_err err = {0};
	if (csa_ws_open(dir, &ws, &err))
		_exit(2);
	csa_mesh_test_after_open(ws->store, pause_after_open, NULL);
	for (unsigned n = seed;; n++) {
		const char *id = recycled[n % NRECYCLED];
		static const unsigned docs[3] = {CSA_DOC_E, CSA_DOC_I, CSA_DOC_T};
		json_t *doc;
		if (csa_store_load_doc(ws->store, id, docs[n % 3], &doc, &err)) {
			fprintf(stderr, "pool reader: %s\n", err.msg);
			_exit(8); /* a torn document fails to parse */
		}
		const char *tid = csa_json_str(doc, "ticket_id");
		if (!tid || strcmp(tid, id) != 0) {
			fprintf(stderr, "pool reader: asked for %s, got %s\n", id,
			        tid ? tid : "(none)");
			_exit(9);
		}
		json_decref(doc);
		if (n % 16 == 0) {
			struct scan_check c = {0};
			if (csa_store_scan(ws->store, NULL, check_scanned, &c, &err))
				_exit(8);
			if (c.bad || c.seen != NRECYCLED)
				_exit(9);
		}
		seen->loads++;
	}
}

static void unlocked_readers_never_see_a_reused_file(void **state)
{
	(void)state;
	int commits = t_size("commits per writer", 1500, 300);
	struct seen *seen =
	    mmap(NULL, sizeof(*seen), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(seen != MAP_FAILED);
	char *dir = t_tmpdir("pool");
	struct csa_err err = {0};
	struct csa_ws *ws;
	assert_int_equal(csa_ws_init(dir, &err), 0);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	assert_int_equal(tm_create(ws, recycled, NRECYCLED), 0);
	csa_ws_close(ws);

	pid_t readers[2], writers[2];
	for (int r = 0; r < 2; r++)
		if ((readers[r] = fork()) == 0)
			pool_reader(dir, seen, (unsigned)r * 7);
	for (int w = 0; w < 2; w++)
		if ((writers[w] = fork()) == 0)
			pool_writer(dir, w, commits);
	for (int w = 0; w < 2; w++) {
		int status;
		waitpid(writers[w], &status, 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail_msg("writer %d failed (status %d)", w, status);
	}
	for (int r = 0; r < 2; r++) {
		int status;
		kill(readers[r], SIGKILL);
		waitpid(readers[r], &status, 0);
		if (WIFEXITED(status))
			fail_msg("reader %d got a wrong or torn document (exit %d)", r,
			         WEXITSTATUS(status));
	}
	print_message("%d commits, %ld unlocked reads\n", 2 * commits, seen->loads);
	if (seen->loads < 100)
		fail_msg("the readers read only %ld times while the writers ran", seen->loads);

	/* every commit is there, each ticket whole */
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	long total = 0;
	for (int i = 0; i < NRECYCLED; i++) {
		long v = tm_load_version(ws, recycled[i]);
		assert_true(v >= 0);
		total += v;
	}
	assert_int_equal(total, 2 * commits);
	csa_ws_close(ws);
	t_rmrf(dir);
	free(dir);
	munmap(seen, sizeof(*seen));
}

/* A backup stages documents as hard links: a commit must never rewrite a
 * file that has another name, even after it left Tickets/ for the pool. */
static void a_hard_link_keeps_its_version(void **state)
{
	(void)state;
	char *dir = t_tmpdir("pool-link");
	struct csa_err err = {0};
	struct csa_ws *ws;
	assert_int_equal(csa_ws_init(dir, &err), 0);
	assert_int_equal(csa_ws_open(dir, &ws, &err), 0);
	assert_int_equal(tm_create(ws, recycled, NRECYCLED), 0);
	char doc[4096], keep[4096];
	assert_int_equal(csa_mesh_doc_path(ws, 2, "R0", doc, sizeof(doc), &err), 0);
	snprintf(keep, sizeof(keep), "%s/kept.json", dir);
	assert_int_equal(link(doc, keep), 0);
	char *before;
	size_t before_len;
	assert_int_equal(csa_fs_read_all(keep, 1 << 20, &before, &before_len, &err), 0);
	for (int v = 1; v <= 6; v++)
		for (int i = 0; i < NRECYCLED; i++) {
			struct csa_ticket tk;
			assert_int_equal(csa_store_load(ws->store, recycled[i], &tk, &err), 0);
			tm_set(&tk, v);
			assert_int_equal(csa_store_commit(ws->store, &tk, CSA_DOC_ALL, &err), 0);
			csa_ticket_release(&tk);
		}
	char *after;
	size_t after_len;
	assert_int_equal(csa_fs_read_all(keep, 1 << 20, &after, &after_len, &err), 0);
	assert_int_equal(after_len, before_len);
	assert_memory_equal(after, before, before_len);
	assert_int_equal(tm_load_version(ws, "R0"), 6);
	free(before);
	free(after);
	csa_ws_close(ws);
	t_rmrf(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(unlocked_readers_never_see_a_reused_file),
	    cmocka_unit_test(a_hard_link_keeps_its_version),
	    cmocka_unit_test(eight_writers_one_ticket),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
