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

#include "base/json.h"
#include "base/ts.h"
#include "store/ticket.h"
#include "store/verify.h"
#include "store/ws.h"
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(eight_writers_one_ticket),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
