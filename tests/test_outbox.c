/* The durable outbox against a local receiver that fails on demand:
 * delivery, retries with backoff, restart durability, giving up, and
 * idempotency.
 *
 * The tests of the storage contract run twice from one list: on
 * outbox.db (SQLite) and on PostgreSQL (a private server,
 * tests/support/tpg.h, a schema of its own per outbox name). If that
 * server cannot start, the run fails with the reason: never a skip. The
 * PostgreSQL run adds the test of two sender processes over one database,
 * one of them SIGKILLed while the receiver holds its request. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <sqlite3.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/json.h"
#include "base/ts.h"
#include "outbound/outbox.h"
#include "store/leader.h"
#include "store/pg.h"
#include "support/fakehttp.h"
#include "support/tpg.h"
#include "support/tutil.h"

struct receiver {
	struct MHD_Daemon *d;
	int fail_next; /* answer 503 this many times */
	int got;       /* successful deliveries */
	char last[512];
};

struct body {
	char b[512];
	size_t n;
};

static enum MHD_Result on_req(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
	(void)url, (void)method, (void)version;
	struct receiver *r = cls;
	struct body *b = *con_cls;
	if (!b) {
		*con_cls = calloc(1, sizeof(struct body));
		return MHD_YES;
	}
	if (*upload_size) {
		size_t k =
		    *upload_size < sizeof(b->b) - b->n - 1 ? *upload_size : sizeof(b->b) - b->n - 1;
		memcpy(b->b + b->n, upload, k);
		b->n += k;
		*upload_size = 0;
		return MHD_YES;
	}
	unsigned status = 200;
	if (r->fail_next > 0) {
		r->fail_next--;
		status = 503;
	} else {
		r->got++;
		snprintf(r->last, sizeof(r->last), "%.*s", (int)b->n, b->b);
	}
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(2, (void *)"ok", MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode t)
{
	(void)cls, (void)c, (void)t;
	free(*con_cls);
	*con_cls = NULL;
}

static struct receiver rcv;
static char url[128], *dir;

/* ---- the two backends, behind one opener ---------------------------- */

/* The PostgreSQL run's server (started by main), NULL in the SQLite run. */
static struct tpg *g_pg;

/* Outbox handles of the PostgreSQL run and the pool each was opened on:
 * one pool per handle, as two processes would have. */
static struct {
	struct csa_outbox *ob;
	struct csa_pg *pg;
} g_open[16];

/* The URL of the place of outbox 'name': a schema "ob_<name>" on the
 * test server, created the first time it is asked for. */
static int pg_url_of(const char *name, char *out, size_t outsz, struct csa_err *err)
{
	static struct {
		char name[32];
		char url[512];
	} made[16];
	for (size_t k = 0; k < 16; k++) {
		if (!made[k].name[0]) {
			char schema[48], why[1024];
			snprintf(schema, sizeof(schema), "ob_%s", name);
			if (tpg_create_schema(g_pg, schema, made[k].url, sizeof(made[k].url), why,
			                      sizeof(why)))
				return csa_error(err, CSA_EIO, "test schema '%s': %s", schema, why);
			snprintf(made[k].name, sizeof(made[k].name), "%s", name);
		}
		if (strcmp(made[k].name, name) == 0) {
			snprintf(out, outsz, "%s", made[k].url);
			return CSA_OK;
		}
	}
	return csa_error(err, CSA_ELIMIT, "too many test outboxes");
}

/* Open outbox 'name' of the backend under test: <dir>/<name>.db, or the
 * schema ob_<name> on the test server through a pool of its own. */
static int ob_open(const char *name, int max_attempts, struct csa_outbox **out, struct csa_err *err)
{
	if (!g_pg) {
		char path[512];
		snprintf(path, sizeof(path), "%s/%s.db", dir, name);
		return csa_outbox_open(path, max_attempts, out, err);
	}
	char u[512];
	struct csa_pg *pg = NULL;
	int rc = pg_url_of(name, u, sizeof(u), err);
	if (rc == CSA_OK)
		rc = csa_pg_open(u, "test", CSA_PG_MIGRATE, &pg, err);
	if (rc == CSA_OK && (rc = csa_outbox_pg_open(pg, max_attempts, out, err)))
		csa_pg_free(pg);
	for (size_t k = 0; rc == CSA_OK && k < 16; k++)
		if (!g_open[k].ob) {
			g_open[k].ob = *out;
			g_open[k].pg = pg;
			return CSA_OK;
		}
	if (rc == CSA_OK) {
		csa_outbox_close(*out);
		csa_pg_free(pg);
		rc = csa_error(err, CSA_ELIMIT, "too many open test outboxes");
	}
	return rc;
}

/* Close a handle of ob_open() (and its pool). */
static void ob_close(struct csa_outbox *ob)
{
	csa_outbox_close(ob);
	for (size_t k = 0; k < 16; k++)
		if (g_open[k].ob == ob) {
			csa_pg_free(g_open[k].pg);
			g_open[k].ob = NULL;
			g_open[k].pg = NULL;
		}
}

static int setup(void **state)
{
	(void)state;
	memset(&rcv, 0, sizeof(rcv));
	rcv.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_req, &rcv,
	                         MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_END);
	if (!rcv.d)
		return -1;
	const union MHD_DaemonInfo *i = MHD_get_daemon_info(rcv.d, MHD_DAEMON_INFO_BIND_PORT);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/hook", i->port);
	dir = t_tmpdir("outbox");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	MHD_stop_daemon(rcv.d);
	t_rmrf(dir);
	free(dir);
	return 0;
}

static const char *state_of(struct csa_outbox *ob, const char *ticket, int *attempts)
{
	static char st[32];
	json_t *j;
	assert_int_equal(csa_outbox_for_ticket(ob, ticket, &j, NULL), 0);
	json_t *it = json_array_get(j, json_array_size(j) - 1);
	snprintf(st, sizeof(st), "%s", csa_json_str(it, "state"));
	if (attempts)
		*attempts = (int)csa_json_int(it, "attempts", -1);
	json_decref(j);
	return st;
}

static void backoff_schedule(void **state)
{
	(void)state;
	assert_int_equal(csa_outbox_backoff_ms(1, 0.5), 1000);
	assert_int_equal(csa_outbox_backoff_ms(2, 0.5), 2000);
	assert_int_equal(csa_outbox_backoff_ms(4, 0.5), 8000);
	assert_int_equal(csa_outbox_backoff_ms(30, 0.5), 3600000);
	assert_int_equal(csa_outbox_backoff_ms(1, 0.0), 800);
	assert_true(csa_outbox_backoff_ms(1, 0.999) < 1200);
}

static void retries_until_delivered_and_once_only(void **state)
{
	(void)state;
	struct csa_outbox *ob;
	struct csa_err err = {0};
	assert_int_equal(ob_open("a", 8, &ob, &err), 0);
	json_t *p = json_pack("{s:s}", "text", "Ticket T1 escalated to BILLING");
	assert_int_equal(
	    csa_outbox_enqueue(ob, "T1|d1|mattermost", "T1", "mattermost", url, p, &err), 1);
	assert_int_equal(
	    csa_outbox_enqueue(ob, "T1|d1|mattermost", "T1", "mattermost", url, p, &err), 0);
	json_decref(p);
	rcv.fail_next = 2;
	int64_t now = csa_now_ms();
	int n;
	assert_int_equal(csa_outbox_deliver_due(ob, now, 10, &n, &err), 0);
	assert_int_equal(n, 0);
	int attempts;
	assert_string_equal(state_of(ob, "T1", &attempts), "pending");
	assert_int_equal(attempts, 1);
	/* not due again before its backoff */
	assert_int_equal(csa_outbox_deliver_due(ob, now + 500, 10, &n, &err), 0);
	assert_string_equal(state_of(ob, "T1", &attempts), "pending");
	assert_int_equal(attempts, 1);
	assert_int_equal(csa_outbox_deliver_due(ob, now + 1300, 10, &n, &err), 0); /* 2nd fails */
	assert_int_equal(csa_outbox_deliver_due(ob, now + 10000, 10, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(state_of(ob, "T1", &attempts), "delivered");
	assert_int_equal(attempts, 3);
	assert_int_equal(rcv.got, 1);
	assert_non_null(strstr(rcv.last, "escalated to BILLING"));
	/* delivered items are not sent again */
	assert_int_equal(csa_outbox_deliver_due(ob, now + 100000, 10, &n, &err), 0);
	assert_int_equal(rcv.got, 1);
	ob_close(ob);
}

static void survives_a_restart_and_gives_up(void **state)
{
	(void)state;
	struct csa_outbox *ob;
	struct csa_err err = {0};
	json_t *p = json_pack("{s:s}", "text", "after restart");
	assert_int_equal(ob_open("b", 3, &ob, &err), 0);
	assert_int_equal(csa_outbox_enqueue(ob, "k-restart", "T2", "webhook", url, p, &err), 1);
	assert_int_equal(
	    csa_outbox_enqueue(ob, "k-dead", "T3", "webhook", "http://127.0.0.1:1/x", p, &err), 1);
	ob_close(ob); /* the process stops before delivering */
	int before = rcv.got;
	assert_int_equal(ob_open("b", 3, &ob, &err), 0);
	int n;
	int64_t now = csa_now_ms();
	assert_int_equal(csa_outbox_deliver_due(ob, now, 10, &n, &err), 0);
	assert_int_equal(rcv.got, before + 1);
	assert_string_equal(state_of(ob, "T2", NULL), "delivered");
	/* a dead endpoint: retried, then failed after max attempts */
	for (int k = 1; k <= 3; k++)
		assert_int_equal(
		    csa_outbox_deliver_due(ob, now + (int64_t)k * 3600 * 1000 * 2, 10, &n, &err),
		    0);
	int attempts;
	assert_string_equal(state_of(ob, "T3", &attempts), "failed");
	assert_int_equal(attempts, 3);
	json_t *j;
	assert_int_equal(csa_outbox_for_ticket(ob, "T3", &j, &err), 0);
	assert_non_null(csa_json_str(json_array_get(j, 0), "last_error"));
	json_decref(j);
	/* bad URLs are refused at the door */
	assert_int_equal(
	    csa_outbox_enqueue(ob, "k-bad", "T4", "webhook", "file:///etc/passwd", p, &err),
	    CSA_EINVAL);
	json_decref(p);
	ob_close(ob);
}

/* The storage contract a backend keeps (here outbox.db through two
 * handles, as two processes would have): a claimed item is nobody else's
 * until its lease ends; an item whose deliverer died is claimed again
 * then; a delivered one never again. */
static void claims_are_leased(void **state)
{
	(void)state;
	struct csa_outbox *a, *b;
	struct csa_err err = {0};
	assert_int_equal(ob_open("lease", 8, &a, &err), 0);
	assert_int_equal(ob_open("lease", 8, &b, &err), 0);
	json_t *p = json_pack("{s:s}", "text", "x");
	const char *keys[] = {"k1", "k2", "k3"};
	for (int k = 0; k < 3; k++)
		assert_int_equal(csa_outbox_enqueue(a, keys[k], "T9", "webhook", url, p, &err), 1);
	json_decref(p);
	int64_t now = csa_now_ms();
	struct csa_outbox_item *v;
	int n;
	assert_int_equal(a->ops->claim_due(a, now, 10, 60000, NULL, &v, &n, &err), 0);
	assert_int_equal(n, 3);
	for (int i = 0; i < n; i++)
		csa_outbox_item_release(&v[i]);
	free(v);
	assert_int_equal(b->ops->claim_due(b, now + 59000, 10, 60000, NULL, &v, &n, &err), 0);
	assert_int_equal(n, 0); /* a holds them */
	free(v);
	/* a died: the lease ends, b claims them all */
	assert_int_equal(b->ops->claim_due(b, now + 60001, 10, 60000, NULL, &v, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_int_equal(v[0].attempts, 0);
	assert_int_equal(
	    b->ops->settle(b, &v[0], 1, "delivered", now + 60002, now + 61000, "", &err), 0);
	for (int i = 0; i < n; i++)
		csa_outbox_item_release(&v[i]);
	free(v);
	assert_int_equal(a->ops->claim_due(a, now + 200000, 10, 60000, NULL, &v, &n, &err), 0);
	assert_int_equal(n, 2); /* never the delivered one again */
	for (int i = 0; i < n; i++)
		csa_outbox_item_release(&v[i]);
	free(v);
	ob_close(a);
	ob_close(b);
}

struct deliverer {
	struct csa_outbox *ob;
	int delivered;
	int rc;
};

static void *deliver_all(void *arg)
{
	struct deliverer *d = arg;
	struct csa_outbox *ob = d->ob;
	int n;
	do {
		n = 0;
		d->rc = csa_outbox_deliver_due(ob, csa_now_ms(), 3, &n, NULL);
		d->delivered += n;
	} while (d->rc == 0 && n > 0);
	return NULL;
}

/* Two servers delivering from one outbox at once: each item reaches its
 * receiver once (the claim, not luck, keeps them apart). */
static void two_deliverers_post_each_item_once(void **state)
{
	(void)state;
	struct deliverer d[2];
	memset(d, 0, sizeof(d));
	struct csa_outbox *ob;
	struct csa_err err = {0};
	/* each deliverer has a handle of its own, opened here (ob_open keeps
	 * a table that is not for threads) */
	assert_int_equal(ob_open("two", 8, &ob, &err), 0);
	assert_int_equal(ob_open("two", 8, &d[0].ob, &err), 0);
	assert_int_equal(ob_open("two", 8, &d[1].ob, &err), 0);
	for (int k = 0; k < 30; k++) {
		char key[16];
		snprintf(key, sizeof(key), "two-%d", k);
		json_t *p = json_pack("{s:s}", "text", key);
		assert_int_equal(csa_outbox_enqueue(ob, key, "T8", "webhook", url, p, &err), 1);
		json_decref(p);
	}
	int before = rcv.got;
	pthread_t th[2];
	for (int k = 0; k < 2; k++)
		pthread_create(&th[k], NULL, deliver_all, &d[k]);
	for (int k = 0; k < 2; k++)
		pthread_join(th[k], NULL);
	ob_close(d[0].ob);
	ob_close(d[1].ob);
	assert_int_equal(d[0].rc, 0);
	assert_int_equal(d[1].rc, 0);
	assert_int_equal(d[0].delivered + d[1].delivered, 30);
	assert_int_equal(rcv.got - before, 30);
	json_t *j;
	assert_int_equal(csa_outbox_for_ticket(ob, "T8", &j, &err), 0);
	size_t i;
	json_t *it;
	json_array_foreach(j, i, it)
	{
		assert_string_equal(csa_json_str(it, "state"), "delivered");
		assert_int_equal(csa_json_int(it, "attempts", 0), 1);
	}
	json_decref(j);
	ob_close(ob);
}

/* ---- two sender processes over one database, one killed ---------------- */

/* One statement's single value on a connection of the test's own. */
static char *pg_value(const char *u, const char *sql, const char *param)
{
	PGconn *c = PQconnectdb(u);
	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("connect: %s", PQerrorMessage(c));
	const char *p[] = {param};
	PGresult *r = PQexecParams(c, sql, param ? 1 : 0, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	char *v = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	PQfinish(c);
	return v;
}

/* A sender node: its own pool and outbox on the database at 'u',
 * delivering one item per claim until it is killed. */
static void sender_main(const char *u)
{
	struct csa_pg *pg;
	struct csa_outbox *ob;
	tpg_after_fork(g_pg);
	if (csa_pg_open(u, "sender", CSA_PG_EXPECT, &pg, NULL) ||
	    csa_outbox_pg_open(pg, 8, &ob, NULL))
		_exit(3);
	for (;;) {
		int n = 0;
		csa_outbox_deliver_due(ob, csa_now_ms(), 1, &n, NULL);
		if (n == 0) {
			struct timespec ts = {0, 20 * 1000000L};
			nanosleep(&ts, NULL);
		}
	}
}

/* Two sender processes deliver one outbox in PostgreSQL at once. The
 * receiver holds the first request it gets without answering, and the
 * process that sent it (found by the row's claimed_by) is SIGKILLed while
 * it waits. The other sender delivers everything else meanwhile, never
 * the held item while its lease lasts, and that item once the lease ends,
 * under the same Idempotency-Key: the receiver sees every key, each
 * exactly once but the held one, which it sees twice with one key and
 * one body (a receiver keeping the keys it saw processes it once), and
 * every row ends delivered after one recorded attempt. */
static void killed_sender_item_goes_out_once_per_key(void **state)
{
	(void)state;
	enum { N = 12 };
	struct fake_http *fh;
	unsigned port;
	assert_int_equal(fake_http_start(&fh, &port), 0);
	fake_http_stall(fh, "/kill/", 1);
	struct csa_outbox *ob;
	struct csa_err err = {0};
	assert_int_equal(ob_open("kill", 8, &ob, &err), 0);
	char u[512], to[128], key[32];
	assert_int_equal(pg_url_of("kill", u, sizeof(u), &err), 0);
	for (int k = 0; k < N; k++) {
		snprintf(key, sizeof(key), "kill-%02d", k);
		snprintf(to, sizeof(to), "http://127.0.0.1:%u/kill/%02d", port, k);
		json_t *p = json_pack("{s:s, s:i}", "text", key, "n", k);
		assert_int_equal(csa_outbox_enqueue(ob, key, "TK", "webhook", to, p, &err), 1);
		json_decref(p);
	}
	pid_t pids[2];
	for (int k = 0; k < 2; k++) {
		pids[k] = fork();
		assert_true(pids[k] >= 0);
		if (pids[k] == 0)
			sender_main(u);
	}
	/* the held request, and the sender whose claim it is */
	assert_true(fake_http_wait(fh, 1, 120000) >= 1);
	struct fake_req held = {0};
	for (int k = 0; !held.held && fake_http_find_nth(fh, "/kill/", k, &held) == 0; k++)
		if (!held.held)
			free(held.body);
	assert_true(held.held);
	assert_true(held.idem[0] != '\0');
	char *by = pg_value(u, "SELECT claimed_by FROM csa_outbox WHERE key = $1", held.idem);
	const char *colon = strrchr(by, ':');
	assert_non_null(colon);
	pid_t victim = (pid_t)strtol(colon + 1, NULL, 10);
	free(by);
	assert_true(victim == pids[0] || victim == pids[1]);
	pid_t survivor = victim == pids[0] ? pids[1] : pids[0];
	assert_int_equal(kill(victim, SIGKILL), 0);
	int st;
	assert_int_equal(waitpid(victim, &st, 0), victim);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	/* the survivor delivers the rest, then the held item after its lease
	 * (a cap against a hang, not a timing assertion) */
	int delivered = 0;
	for (int waited = 0; waited < 300000; waited += 100) {
		char *v =
		    pg_value(u, "SELECT count(*) FROM csa_outbox WHERE state = 'delivered'", NULL);
		delivered = (int)strtol(v, NULL, 10);
		free(v);
		if (delivered == N)
			break;
		assert_int_equal(waitpid(survivor, &st, WNOHANG), 0); /* still sending */
		struct timespec ts = {0, 100 * 1000000L};
		nanosleep(&ts, NULL);
	}
	kill(survivor, SIGKILL);
	waitpid(survivor, &st, 0);
	assert_int_equal(delivered, N);
	/* what the receiver saw */
	assert_int_equal(fake_http_count(fh, "/kill/"), N + 1);
	for (int k = 0; k < N; k++) {
		snprintf(key, sizeof(key), "kill-%02d", k);
		int want = strcmp(key, held.idem) == 0 ? 2 : 1;
		if (fake_http_count_key(fh, key) != want)
			fail_msg("%s arrived %d times, expected %d", key,
			         fake_http_count_key(fh, key), want);
	}
	struct fake_req again = {0};
	for (int k = 0; k <= N; k++) {
		struct fake_req r;
		assert_int_equal(fake_http_find_nth(fh, "/kill/", k, &r), 0);
		if (strcmp(r.idem, held.idem) == 0 && !r.held)
			again = r;
		else
			free(r.body);
	}
	assert_non_null(again.body);
	assert_string_equal(again.path, held.path);
	assert_string_equal(again.body, held.body);
	free(again.body);
	free(held.body);
	/* the survivor's claim delivered it, the second claim of that row;
	 * the killed attempt was never recorded */
	by = pg_value(u, "SELECT claimed_by || ' ' || claim FROM csa_outbox WHERE key = $1",
	              held.idem);
	char expect[64];
	snprintf(expect, sizeof(expect), ":%ld 2", (long)survivor);
	assert_non_null(strstr(by, expect));
	free(by);
	char *v = pg_value(u, "SELECT count(*) FROM csa_outbox WHERE attempts <> 1", NULL);
	assert_string_equal(v, "0");
	free(v);
	ob_close(ob);
	fake_http_stop(fh);
}

/* ---- the sender's leadership and its fence ---------------------------- */

/* The pool a handle of ob_open() was opened on. */
static struct csa_pg *pool_of(struct csa_outbox *ob)
{
	for (size_t k = 0; k < 16; k++)
		if (g_open[k].ob == ob)
			return g_open[k].pg;
	fail_msg("no pool for this outbox");
	return NULL;
}

/* The backend holding the advisory lock of leadership 'role' in schema
 * 'schema' ("" when none does). */
static char *lock_holder(const char *u, const char *schema, const char *role)
{
	char ns[64], key[24];
	snprintf(ns, sizeof(ns), "leader:%s", schema);
	snprintf(key, sizeof(key), "%lld", csa_pg_lock_key(ns, role));
	return pg_value(u,
	                "SELECT coalesce(min(pid)::text, '') FROM pg_locks WHERE locktype = "
	                "'advisory' AND granted AND ((classid::bigint << 32) | objid::bigint) = "
	                "$1::bigint",
	                key);
}

/* Poll 'l' until it leads (a deadline, not a timing assertion). */
static void poll_until_leading(struct csa_leader *l, const char *who)
{
	struct csa_err err = {0};
	int leading = 0;
	for (int i = 0; i < 200 && !leading; i++) {
		if (csa_leader_poll(l, &leading, &err))
			fail_msg("%s: %s", who, err.msg);
		if (!leading)
			usleep(50000);
	}
	if (!leading)
		fail_msg("%s never took the role over", who);
}

/*
 * A leader that lost the role without noticing cannot write. Node A leads
 * "outbox" and delivers through a fenced outbox; its lock's connection is
 * killed (pg_terminate_backend: a partition, an operator, a restart of
 * the session) and node B, a second handle on a pool of its own, takes
 * the role with the next epoch. A has not polled since, so it still
 * believes it leads, yet its next delivery round is refused by the fence
 * with an error naming both epochs, and the due item is left untouched
 * (never claimed, never sent). B delivers it. A's next poll finds the
 * role lost; when B gives the role up, A takes it again at the epoch
 * after B's.
 */
static void fenced_leader_writes_nothing(void **state)
{
	(void)state;
	struct csa_outbox *oa, *ob;
	struct csa_leader *a, *b;
	struct csa_err err = {0};
	char u[512];
	assert_int_equal(pg_url_of("fence", u, sizeof(u), &err), 0);
	assert_int_equal(ob_open("fence", 8, &oa, &err), 0);
	assert_int_equal(ob_open("fence", 8, &ob, &err), 0);
	assert_int_equal(csa_leader_pg_open(pool_of(oa), "outbox", &a, &err), 0);
	assert_int_equal(csa_leader_pg_open(pool_of(ob), "outbox", &b, &err), 0);
	csa_outbox_set_fence(oa, a);
	csa_outbox_set_fence(ob, b);
	int leading = -1;
	assert_int_equal(csa_leader_poll(a, &leading, &err), 0);
	assert_int_equal(leading, 1);
	int64_t e1 = csa_leader_epoch(a);
	assert_true(e1 >= 1);
	/* one leader at a time: B asks and is told no, without an error */
	assert_int_equal(csa_leader_poll(b, &leading, &err), 0);
	assert_int_equal(leading, 0);
	assert_int_equal(csa_leader_check(b, &err), CSA_ECONFLICT);
	/* A leads: its fenced rounds deliver */
	json_t *p = json_pack("{s:s}", "text", "first");
	assert_int_equal(csa_outbox_enqueue(oa, "fence-1", "TF", "webhook", url, p, &err), 1);
	json_decref(p);
	int n = 0, before = rcv.got;
	assert_int_equal(csa_outbox_deliver_due(oa, csa_now_ms(), 8, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rcv.got, before + 1);
	/* A's session is killed; B takes over with the next epoch */
	char *pid = lock_holder(u, "ob_fence", "outbox");
	assert_true(pid[0] != '\0');
	char *ok = pg_value(u, "SELECT pg_terminate_backend($1::int)::text", pid);
	assert_string_equal(ok, "true");
	free(ok);
	free(pid);
	poll_until_leading(b, "node B");
	assert_int_equal(csa_leader_epoch(b), e1 + 1);
	char *row =
	    pg_value(u, "SELECT epoch || ' ' || holder FROM csa_leaders WHERE role = $1", "outbox");
	char expect[64];
	snprintf(expect, sizeof(expect), "%lld ", (long long)(e1 + 1));
	assert_int_equal(strncmp(row, expect, strlen(expect)), 0);
	free(row);
	/* A has not noticed, and its write is refused all the same */
	assert_int_equal(csa_leader_leading(a), 1);
	p = json_pack("{s:s}", "text", "second");
	assert_int_equal(csa_outbox_enqueue(oa, "fence-2", "TF", "webhook", url, p, &err), 1);
	json_decref(p);
	memset(&err, 0, sizeof(err));
	before = rcv.got;
	assert_int_equal(csa_outbox_deliver_due(oa, csa_now_ms(), 8, &n, &err), CSA_ECONFLICT);
	assert_int_equal(n, 0);
	assert_int_equal(rcv.got, before);
	snprintf(expect, sizeof(expect), "led 'outbox' at epoch %lld", (long long)e1);
	if (!strstr(err.msg, "fenced") || !strstr(err.msg, expect))
		fail_msg("unclear refusal: %s", err.msg);
	snprintf(expect, sizeof(expect), "has epoch %lld", (long long)(e1 + 1));
	if (!strstr(err.msg, expect) || !strstr(err.msg, "write refused"))
		fail_msg("unclear refusal: %s", err.msg);
	row = pg_value(u,
	               "SELECT coalesce(claimed_by, 'nobody') || ' ' || claim || ' ' || attempts"
	               " || ' ' || state FROM csa_outbox WHERE key = $1",
	               "fence-2");
	assert_string_equal(row, "nobody 0 0 pending");
	free(row);
	/* A's poll finds out, and its rounds stop before asking anyone */
	memset(&err, 0, sizeof(err));
	assert_int_not_equal(csa_leader_poll(a, &leading, &err), 0);
	assert_int_equal(leading, 0);
	snprintf(expect, sizeof(expect), "lost the leadership of 'outbox' (epoch %lld)",
	         (long long)e1);
	if (!strstr(err.msg, expect))
		fail_msg("unclear loss: %s", err.msg);
	assert_int_equal(csa_outbox_deliver_due(oa, csa_now_ms(), 8, &n, &err), CSA_ECONFLICT);
	assert_non_null(strstr(err.msg, "not the leader of 'outbox'"));
	/* the new leader delivers what A could not */
	assert_int_equal(csa_outbox_deliver_due(ob, csa_now_ms(), 8, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(rcv.got, before + 1);
	assert_string_equal(state_of(ob, "TF", NULL), "delivered");
	/* B gives the role up: A takes it at the next epoch */
	csa_outbox_set_fence(ob, NULL);
	csa_leader_free(b);
	poll_until_leading(a, "node A");
	assert_int_equal(csa_leader_epoch(a), e1 + 2);
	csa_outbox_set_fence(oa, NULL);
	csa_leader_free(a);
	ob_close(oa);
	ob_close(ob);
}

/* The database restarts (crash-stop, recovery): the leader's session is
 * gone, so its next poll says it lost the role, naming it; once the
 * server is back the node takes the role again at the next epoch, and
 * its fenced deliveries go on. */
static void leadership_lost_and_taken_again_across_a_restart(void **state)
{
	(void)state;
	struct csa_outbox *ob;
	struct csa_leader *l;
	struct csa_err err = {0};
	char why[4096];
	assert_int_equal(ob_open("restart_lead", 8, &ob, &err), 0);
	assert_int_equal(csa_leader_pg_open(pool_of(ob), "outbox", &l, &err), 0);
	csa_outbox_set_fence(ob, l);
	poll_until_leading(l, "the node");
	int64_t e1 = csa_leader_epoch(l);
	if (tpg_server_stop(g_pg, why, sizeof(why)))
		fail_msg("%s", why);
	int leading = -1;
	memset(&err, 0, sizeof(err));
	assert_int_not_equal(csa_leader_poll(l, &leading, &err), 0);
	assert_int_equal(leading, 0);
	assert_non_null(strstr(err.msg, "lost the leadership of 'outbox'"));
	assert_int_equal(csa_outbox_deliver_due(ob, csa_now_ms(), 8, NULL, &err), CSA_ECONFLICT);
	if (tpg_server_start(g_pg, why, sizeof(why)))
		fail_msg("%s", why);
	poll_until_leading(l, "the node after the restart");
	assert_int_equal(csa_leader_epoch(l), e1 + 1);
	json_t *p = json_pack("{s:s}", "text", "after");
	assert_int_equal(csa_outbox_enqueue(ob, "restart-1", "TR", "webhook", url, p, &err), 1);
	json_decref(p);
	int n = 0;
	assert_int_equal(csa_outbox_deliver_due(ob, csa_now_ms(), 8, &n, &err), 0);
	assert_int_equal(n, 1);
	csa_outbox_set_fence(ob, NULL);
	csa_leader_free(l);
	ob_close(ob);
}

/* Two processes (two csa serve started at once) open a new outbox at the
 * same instant: the one that finds the file locked by the other's setup
 * waits for it instead of failing with "database is locked". Here a
 * connection holds the new file's lock for 300 ms while the outbox opens. */
struct holder {
	const char *path;
};

static void *hold_lock(void *arg)
{
	struct holder *h = arg;
	sqlite3 *db = NULL;
	if (sqlite3_open(h->path, &db) == SQLITE_OK &&
	    sqlite3_exec(db, "BEGIN EXCLUSIVE; CREATE TABLE held(x);", NULL, NULL, NULL) ==
	        SQLITE_OK) {
		usleep(300000);
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	}
	sqlite3_close(db);
	return NULL;
}

static void opening_waits_for_another_opener(void **state)
{
	(void)state;
	char *odir = t_tmpdir("outbox-open");
	char path[4200];
	snprintf(path, sizeof(path), "%s/outbox.db", odir);
	struct holder h = {path};
	pthread_t th;
	sqlite3 *probe = NULL;
	assert_int_equal(sqlite3_open(path, &probe), SQLITE_OK);
	sqlite3_close(probe);
	assert_int_equal(pthread_create(&th, NULL, hold_lock, &h), 0);
	usleep(50000); /* the holder has the lock */
	struct csa_outbox *ob = NULL;
	struct csa_err err = {0};
	int rc = csa_outbox_open(path, 3, &ob, &err);
	pthread_join(th, NULL);
	if (rc)
		fail_msg("opening an outbox another process holds the lock of: %s", err.msg);
	csa_outbox_close(ob);
	t_rmrf(odir);
	free(odir);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
#define OUTBOX_TESTS                                                                               \
	cmocka_unit_test(backoff_schedule),                                                        \
	    cmocka_unit_test(retries_until_delivered_and_once_only),                               \
	    cmocka_unit_test(survives_a_restart_and_gives_up),                                     \
	    cmocka_unit_test(claims_are_leased),                                                   \
	    cmocka_unit_test(two_deliverers_post_each_item_once)
	const struct CMUnitTest tests[] = {OUTBOX_TESTS, cmocka_unit_test(opening_waits_for_another_opener)};
	int failed = cmocka_run_group_tests_name("outbox (SQLite)", tests, setup, teardown);
	/* the same on PostgreSQL: a server that cannot start is a failure
	 * with its reason, never a skip */
	char why[4096];
	g_pg = tpg_start(why, sizeof(why));
	if (!g_pg) {
		fprintf(stderr, "test_outbox: FAILED: the PostgreSQL outbox tests cannot run: %s\n",
		        why);
		curl_global_cleanup();
		return failed + 1;
	}
	const struct CMUnitTest pg_tests[] = {
	    OUTBOX_TESTS,
	    cmocka_unit_test(killed_sender_item_goes_out_once_per_key),
	    cmocka_unit_test(fenced_leader_writes_nothing),
	    cmocka_unit_test(leadership_lost_and_taken_again_across_a_restart),
	};
	failed += cmocka_run_group_tests_name("outbox (PostgreSQL)", pg_tests, setup, teardown);
	tpg_stop(g_pg);
	curl_global_cleanup();
	return failed;
}
