/*
 * Several `csa serve` nodes over one workspace and one private Redis
 * (tests/support/tredis.h): live events cross nodes in the order of their
 * numbers and without duplicates, a client that missed some is told to
 * refetch, a token's rate limit is one for all nodes, and a Redis that
 * goes away and comes back degrades the nodes and lets them recover by
 * themselves while nothing is refused or lost. Also REDIS_URL's parsing
 * and a node without Redis answering as a single node always did.
 *
 * The nodes are real processes (the CLI's test build) over one files
 * workspace, as two servers on one host may be, each with REDIS_URL in
 * its environment. Waits have deadlines, never fixed sleeps that a test
 * depends on: a loaded machine only makes the test slower.
 *
 * Online learning shared by nodes (flow/online.h), over a private
 * PostgreSQL (tests/support/tpg.h) and over one files workspace: a
 * person's correction taught on one node changes the others' predictions
 * within seconds and every node's model ends the same, bit for bit; a
 * node that starts later learns the same; a retraining saved after
 * corrections is not taught them again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agents/dmodel.h"
#include "base/json.h"
#include "flow/import.h"
#include "flow/online.h"
#include "flow/pipeline.h"
#include "gen/gen.h"
#include "server/redis.h"
#include "server/server.h"
#include "server/tokens.h"
#include "store/learnlog.h"
#include "store/pg.h"
#include "store/ws.h"
#include "support/thttp.h"
#include "support/tpg.h"
#include "support/tredis.h"
#include "support/tutil.h"

/* ---- nodes ------------------------------------------------------------------ */

struct node {
	pid_t pid;
	unsigned port;
	char log[600];
};

static int64_t mono_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The last part of a node's log, for a failure's message. */
static void show_log(const struct node *n)
{
	char *text = NULL;
	FILE *f = fopen(n->log, "r");
	if (!f)
		return;
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	long from = size > 3000 ? size - 3000 : 0;
	fseek(f, from, SEEK_SET);
	text = calloc(1, 3001);
	size_t got = text ? fread(text, 1, 3000, f) : 0;
	fclose(f);
	if (text) {
		text[got] = '\0';
		fprintf(stderr, "---- %s ----\n%s\n----\n", n->log, text);
	}
	free(text);
}

/* csa serve over 'ws' with REDIS_URL=redis_url (NULL: none) and, when
 * fake_now is given, the clock pinned (CSA_FAKE_NOW_MS); its port from the
 * line it prints. 0, or -1. */
static int node_start(struct node *n, const char *ws, const char *redis_url, const char *fake_now,
                      const char *tag)
{
	memset(n, 0, sizeof(*n));
	snprintf(n->log, sizeof(n->log), "%s/node-%s.log", ws, tag);
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(p[1], 1);
		int fd = open(n->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0)
			dup2(fd, 2);
		if (redis_url)
			setenv("REDIS_URL", redis_url, 1);
		else
			unsetenv("REDIS_URL");
		if (fake_now)
			setenv("CSA_FAKE_NOW_MS", fake_now, 1);
		execl(CSA_BIN, CSA_BIN, "serve", "--dir", ws, "--port", "0", "--bind", "127.0.0.1",
		      (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	n->pid = pid;
	char line[300];
	size_t len = 0;
	int64_t deadline = mono_ms() + 60000;
	while (len < sizeof(line) - 1 && !memchr(line, '\n', len)) {
		struct pollfd pf = {p[0], POLLIN, 0};
		long left = (long)(deadline - mono_ms());
		if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
			break;
		ssize_t got = read(p[0], line + len, sizeof(line) - 1 - len);
		if (got <= 0)
			break;
		len += (size_t)got;
	}
	close(p[0]);
	line[len] = '\0';
	const char *at = strstr(line, "127.0.0.1:");
	if (!at) {
		fprintf(stderr, "node %s did not say where it listens: '%s'\n", tag, line);
		show_log(n);
		return -1;
	}
	n->port = (unsigned)strtoul(at + 10, NULL, 10);
	return n->port ? 0 : -1;
}

/* SIGTERM and wait: the exit status (0 when it stopped cleanly). */
static int node_stop(struct node *n)
{
	if (n->pid <= 0)
		return 0;
	kill(n->pid, SIGTERM);
	int st = 0;
	while (waitpid(n->pid, &st, 0) < 0 && errno == EINTR)
		;
	n->pid = 0;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static json_t *call(const struct node *n, const char *method, const char *path, const char *token,
                    const char *body, struct t_resp *r)
{
	char auth[160];
	const char *h[2] = {NULL, NULL};
	if (token) {
		t_bearer(auth, token);
		h[0] = auth;
	}
	memset(r, 0, sizeof(*r));
	if (t_http(n->port, method, path, h, body, 30, r) != 0)
		return NULL;
	return r->body ? json_loads(r->body, 0, NULL) : NULL;
}

/* /readyz of a node until its "redis" state is 'state' (deadline 30 s);
 * the last body (new reference), or NULL. */
static json_t *wait_redis_state(const struct node *n, const char *state)
{
	int64_t deadline = mono_ms() + 30000;
	json_t *j = NULL;
	while (mono_ms() < deadline) {
		struct t_resp r;
		json_decref(j);
		j = call(n, "GET", "/readyz", NULL, NULL, &r);
		long status = r.status;
		free(r.body);
		const char *st = csa_json_str(json_object_get(j, "redis"), "state");
		if (status == 200 && st && strcmp(st, state) == 0)
			return j;
		usleep(50000);
	}
	fprintf(stderr, "node on port %u: redis never '%s'; last /readyz: %s\n", n->port, state,
	        j ? json_dumps(j, JSON_COMPACT) : "(none)");
	json_decref(j);
	show_log(n);
	return NULL;
}

/* ---- an event stream read as a browser reads it ---------------------------------- */

struct sse {
	int fd;
	char buf[1 << 16];
	size_t len;
};

struct sse_event {
	char id[32]; /* "" when the event has none */
	char event[32];
	char data[2048];
};

/* Open GET /api/events on a node (HTTP/1.0: the stream is the body as
 * is, until the server closes it). 0, or -1. */
static int sse_open(struct sse *c, const struct node *n, const char *token, const char *last_id)
{
	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)n->port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	char req[600];
	int k = snprintf(req, sizeof(req),
	                 "GET /api/events HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
	                 "%s\r\nAccept: text/event-stream\r\n%s%s%s\r\n",
	                 token, last_id ? "Last-Event-ID: " : "", last_id ? last_id : "",
	                 last_id ? "\r\n" : "");
	if (write(c->fd, req, (size_t)k) != k)
		return -1;
	/* the status line and headers */
	int64_t deadline = mono_ms() + 30000;
	char *end = NULL;
	while (!(end = strstr(c->buf, "\r\n\r\n"))) {
		struct pollfd pf = {c->fd, POLLIN, 0};
		long left = (long)(deadline - mono_ms());
		if (left <= 0 || poll(&pf, 1, (int)left) <= 0 || c->len >= sizeof(c->buf) - 1)
			return -1;
		ssize_t got = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
		if (got <= 0)
			return -1;
		c->len += (size_t)got;
		c->buf[c->len] = '\0';
	}
	if (strncmp(c->buf, "HTTP/1.0 200", 12) != 0 && strncmp(c->buf, "HTTP/1.1 200", 12) != 0) {
		fprintf(stderr, "event stream refused: %.200s\n", c->buf);
		return -1;
	}
	size_t head = (size_t)(end + 4 - c->buf);
	memmove(c->buf, c->buf + head, c->len - head);
	c->len -= head;
	c->buf[c->len] = '\0';
	return 0;
}

static void sse_close(struct sse *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* The next event (comments skipped) within ms milliseconds: 1, or 0 when
 * none came, -1 when the stream ended. */
static int sse_next(struct sse *c, long ms, struct sse_event *ev)
{
	int64_t deadline = mono_ms() + ms;
	for (;;) {
		char *end;
		while ((end = strstr(c->buf, "\n\n"))) {
			*end = '\0';
			memset(ev, 0, sizeof(*ev));
			int any = 0;
			for (char *line = c->buf; line && *line;) {
				char *nl = strchr(line, '\n');
				if (nl)
					*nl = '\0';
				if (strncmp(line, "id: ", 4) == 0)
					snprintf(ev->id, sizeof(ev->id), "%s", line + 4);
				else if (strncmp(line, "event: ", 7) == 0)
					any = snprintf(ev->event, sizeof(ev->event), "%s",
					               line + 7) > 0;
				else if (strncmp(line, "data: ", 6) == 0)
					snprintf(ev->data, sizeof(ev->data), "%s", line + 6);
				line = nl ? nl + 1 : NULL;
			}
			size_t used = (size_t)(end + 2 - c->buf);
			memmove(c->buf, c->buf + used, c->len - used);
			c->len -= used;
			c->buf[c->len] = '\0';
			if (any)
				return 1;
		}
		struct pollfd pf = {c->fd, POLLIN, 0};
		long left = (long)(deadline - mono_ms());
		if (left <= 0)
			return 0;
		int pr = poll(&pf, 1, (int)left);
		if (pr == 0)
			return 0;
		if (pr < 0 || c->len >= sizeof(c->buf) - 1)
			return -1;
		ssize_t got = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
		if (got <= 0)
			return -1;
		c->len += (size_t)got;
		c->buf[c->len] = '\0';
	}
}

/* The next "ticket" event naming 'ticket' (events of other kinds, which
 * the controller may publish, are checked for order and passed over;
 * a resync is noted in *resyncs). Its id into *id. 0, or -1. */
static int expect_ticket(struct sse *c, const char *ticket, unsigned long long *last_id,
                         unsigned long long *id, int *resyncs)
{
	int64_t deadline = mono_ms() + 30000;
	struct sse_event ev;
	for (;;) {
		long left = (long)(deadline - mono_ms());
		int rc = left > 0 ? sse_next(c, left, &ev) : 0;
		if (rc != 1) {
			fprintf(stderr, "no 'ticket' event for %s (%s)\n", ticket,
			        rc == 0 ? "deadline passed" : "stream ended");
			return -1;
		}
		if (!ev.id[0]) {
			fprintf(stderr, "event '%s' without an id: %s\n", ev.event, ev.data);
			return -1;
		}
		unsigned long long n = strtoull(ev.id, NULL, 10);
		if (strcmp(ev.event, "resync") == 0) {
			/* a resync may carry the number of the last event it covers */
			if (resyncs)
				(*resyncs)++;
			if (n > *last_id)
				*last_id = n;
			continue;
		}
		if (n <= *last_id) {
			fprintf(stderr,
			        "event '%s' id %llu after id %llu: out of order or twice (%s)\n",
			        ev.event, n, *last_id, ev.data);
			return -1;
		}
		*last_id = n;
		if (strcmp(ev.event, "ticket") != 0)
			continue;
		json_t *d = json_loads(ev.data, 0, NULL);
		const char *t = csa_json_str(d, "ticket_id");
		int match = t && strcmp(t, ticket) == 0;
		if (t && !match) {
			fprintf(stderr, "'ticket' event for %s while waiting for %s\n", t, ticket);
			json_decref(d);
			return -1;
		}
		json_decref(d);
		if (match) {
			*id = n;
			return 0;
		}
	}
}

/* No further event within ms (a duplicate would come at once). */
static int expect_quiet(struct sse *c, long ms, const char *kind)
{
	struct sse_event ev;
	int64_t deadline = mono_ms() + ms;
	for (;;) {
		long left = (long)(deadline - mono_ms());
		if (left <= 0)
			return 0;
		int rc = sse_next(c, left, &ev);
		if (rc != 1)
			return rc == 0 ? 0 : -1;
		if (strcmp(ev.event, kind) == 0) {
			fprintf(stderr, "an unexpected '%s' event: id %s %s\n", ev.event, ev.id,
			        ev.data);
			return -1;
		}
	}
}

static int ingest(const struct node *n, const char *token, const char *id)
{
	char body[300];
	snprintf(body, sizeof(body),
	         "{\"ticket_id\": \"%s\", \"client_name\": \"Ann\", \"messages\": "
	         "[{\"content\": \"cannot log in to the portal since this morning\"}]}",
	         id);
	struct t_resp r;
	json_decref(call(n, "POST", "/api/tickets", token, body, &r));
	long status = r.status;
	if (status != 201)
		fprintf(stderr, "POST /api/tickets %s on port %u: %ld %s\n", id, n->port, status,
		        r.body ? r.body : "");
	free(r.body);
	return status == 201 ? 0 : -1;
}

/* ---- the cluster of the tests ---------------------------------------------------- */

static struct tredis *redis;
static char *ws;
static struct node a, b;
static char agent[80], viewer[80];

static void mk(const char *dir, enum csa_role role, char out[80])
{
	char *t, id[CSA_TOKEN_ID_LEN];
	struct csa_err err = {0};
	assert_int_equal(csa_token_create(dir, role, "test", &t, id, &err), 0);
	snprintf(out, 80, "%s", t);
	free(t);
}

static int cluster_up(void **state)
{
	(void)state;
	char why[2000];
	redis = tredis_start(0, why, sizeof(why));
	if (!redis) {
		fprintf(stderr, "cannot start the test's redis: %s\n", why);
		return -1;
	}
	ws = t_tmpdir("cluster");
	struct csa_err err = {0};
	if (csa_ws_init(ws, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	char cfg[700];
	snprintf(cfg, sizeof(cfg), "%s/csa.json", ws);
	t_write(cfg, "{\"server\": {\"rate_per_second\": 1000}}");
	mk(ws, CSA_ROLE_AGENT, agent);
	mk(ws, CSA_ROLE_VIEWER, viewer);
	if (node_start(&a, ws, tredis_url(redis), NULL, "a") ||
	    node_start(&b, ws, tredis_url(redis), NULL, "b"))
		return -1;
	json_t *ra = wait_redis_state(&a, "up"), *rb = wait_redis_state(&b, "up");
	int ok = ra && rb;
	json_decref(ra);
	json_decref(rb);
	return ok ? 0 : -1;
}

static int cluster_down(void **state)
{
	(void)state;
	int sa = node_stop(&a), sb = node_stop(&b);
	if (sa || sb) {
		fprintf(stderr, "nodes stopped with %d and %d\n", sa, sb);
		show_log(&a);
		show_log(&b);
	}
	tredis_stop(redis);
	t_rmrf(ws);
	free(ws);
	return sa || sb ? -1 : 0;
}

/*
 * (a) Tickets ingested on A reach a client of B as 'ticket' events with
 * increasing ids, each once; one ingested on B itself reaches B's client
 * once too (its own publication comes back through Redis and is not
 * delivered again). Both nodes number the events alike: a client of A
 * reconnecting with the id of the first event gets the ones that followed
 * with the same ids.
 */
static void events_cross_nodes_in_order_once(void **state)
{
	(void)state;
	struct sse cb, ca;
	assert_int_equal(sse_open(&cb, &b, viewer, NULL), 0);
	const char *ids[] = {"X-A1", "X-A2", "X-B1", "X-A3"};
	const struct node *on[] = {&a, &a, &b, &a};
	unsigned long long last = 0, seq[4];
	for (int i = 0; i < 4; i++) {
		assert_int_equal(ingest(on[i], agent, ids[i]), 0);
		assert_int_equal(expect_ticket(&cb, ids[i], &last, &seq[i], NULL), 0);
		if (i)
			assert_true(seq[i] > seq[i - 1]);
	}
	/* none of them twice, in particular not B's own */
	assert_int_equal(expect_quiet(&cb, 1500, "ticket"), 0);
	sse_close(&cb);

	/* A reconnecting client of A, last seen the first: the rest, same ids */
	char from[32];
	snprintf(from, sizeof(from), "%llu", seq[0]);
	assert_int_equal(sse_open(&ca, &a, viewer, from), 0);
	unsigned long long last_a = seq[0], got;
	int resyncs = 0;
	for (int i = 1; i < 4; i++) {
		assert_int_equal(expect_ticket(&ca, ids[i], &last_a, &got, &resyncs), 0);
		assert_int_equal(got, seq[i]);
	}
	assert_int_equal(resyncs, 0);
	sse_close(&ca);
}

/*
 * A gap in the numbers (a publication B never received: the counter is
 * raised behind the nodes' backs, as an event lost while a subscription
 * was away would leave it) makes B tell its clients to refetch before the
 * next event; a client reconnecting with an id the node cannot place is
 * told the same.
 */
static void a_gap_or_unknown_id_means_resync(void **state)
{
	(void)state;
	char out[4096];
	const char *keys[] = {"KEYS", "csa:*:events:seq"};
	assert_int_equal(tredis_cmd(redis, 2, keys, out, sizeof(out)), 0);
	assert_non_null(strstr(out, ":events:seq"));
	assert_null(strchr(out, '\n')); /* one workspace, one counter */
	char key[200];
	snprintf(key, sizeof(key), "%s", out);
	struct sse cb;
	assert_int_equal(sse_open(&cb, &b, viewer, NULL), 0);
	const char *incr[] = {"INCR", key};
	assert_int_equal(tredis_cmd(redis, 2, incr, out, sizeof(out)), 0);
	unsigned long long skipped = strtoull(out, NULL, 10);
	assert_true(skipped > 0);
	assert_int_equal(ingest(&a, agent, "X-GAP"), 0);
	struct sse_event ev;
	int resync = 0, seen = 0;
	while (!seen) {
		assert_int_equal(sse_next(&cb, 30000, &ev), 1);
		if (strcmp(ev.event, "resync") == 0)
			resync = 1;
		else if (strcmp(ev.event, "ticket") == 0) {
			assert_non_null(strstr(ev.data, "X-GAP"));
			assert_true(strtoull(ev.id, NULL, 10) > skipped);
			seen = 1;
		}
	}
	assert_true(resync);
	sse_close(&cb);

	/* an id ahead of anything the node has seen */
	assert_int_equal(sse_open(&cb, &b, viewer, "99999999"), 0);
	assert_int_equal(sse_next(&cb, 30000, &ev), 1);
	assert_string_equal(ev.event, "resync");
	sse_close(&cb);
}

/*
 * (c) Redis killed: ingest on A still succeeds and the ticket is stored
 * (B reads it), other requests are not refused, /readyz stays 200 and
 * names redis as degraded with the reason. Redis started again on the same
 * port, empty: both nodes reconnect by themselves, B's open stream is told
 * to refetch, and events flow from A to B again with ids above every id
 * given before (the counter is raised back, not restarted from 1).
 */
static void redis_down_degrades_and_recovers(void **state)
{
	(void)state;
	struct sse cb;
	assert_int_equal(sse_open(&cb, &b, viewer, NULL), 0);
	unsigned long long last = 0, id_before = 0;
	assert_int_equal(ingest(&a, agent, "X-BEFORE"), 0);
	assert_int_equal(expect_ticket(&cb, "X-BEFORE", &last, &id_before, NULL), 0);

	char why[2000];
	assert_int_equal(tredis_kill(redis, why, sizeof(why)), 0);
	assert_int_equal(ingest(&a, agent, "X-DOWN"), 0);
	struct t_resp r;
	json_t *j = call(&b, "GET", "/api/tickets/X-DOWN", viewer, NULL, &r);
	assert_int_equal(r.status, 200);
	json_decref(j);
	free(r.body);
	j = call(&a, "GET", "/api/phase", viewer, NULL, &r);
	assert_int_equal(r.status, 200); /* rate limit: this node's own, not a refusal */
	json_decref(j);
	free(r.body);
	j = wait_redis_state(&a, "down");
	assert_non_null(j);
	assert_string_equal(csa_json_str(j, "status"), "ready");
	const char *deg = csa_json_str(json_object_get(j, "degraded"), "redis");
	assert_non_null(deg);
	assert_non_null(strstr(deg, "127.0.0.1"));
	assert_non_null(csa_json_str(json_object_get(j, "redis"), "detail"));
	json_decref(j);
	j = wait_redis_state(&b, "down");
	assert_non_null(j);
	json_decref(j);
	call(&a, "GET", "/metrics", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(r.body);
	assert_non_null(strstr(r.body, "\ncsa_redis_up 0\n"));
	free(r.body);

	assert_int_equal(tredis_restart(redis, why, sizeof(why)), 0);
	json_t *ja = wait_redis_state(&a, "up"), *jb = wait_redis_state(&b, "up");
	assert_non_null(ja);
	assert_non_null(jb);
	assert_null(json_object_get(ja, "degraded"));
	call(&a, "GET", "/metrics", NULL, NULL, &r);
	assert_non_null(r.body);
	assert_non_null(strstr(r.body, "\ncsa_redis_up 1\n"));
	free(r.body);
	json_decref(ja);
	json_decref(jb);
	/* B's open stream: refetch, B's link being back (before anything
	 * else is published) */
	struct sse_event ev;
	do {
		assert_int_equal(sse_next(&cb, 30000, &ev), 1);
		assert_string_not_equal(ev.event, "ticket");
	} while (strcmp(ev.event, "resync") != 0);
	assert_non_null(strstr(ev.data, "re-established"));
	/* then A's first publication tells every node's clients that A had
	 * events its own clients alone saw (X-DOWN), and the event follows */
	unsigned long long id_after = 0;
	assert_int_equal(ingest(&a, agent, "X-AFTER"), 0);
	int resyncs = 0, told = 0;
	for (;;) {
		assert_int_equal(sse_next(&cb, 30000, &ev), 1);
		if (strcmp(ev.event, "resync") == 0) {
			resyncs++;
			told |= strstr(ev.data, "could not reach redis") != NULL;
			continue;
		}
		if (strcmp(ev.event, "ticket") != 0)
			continue;
		assert_non_null(strstr(ev.data, "X-AFTER"));
		id_after = strtoull(ev.id, NULL, 10);
		break;
	}
	assert_true(told);
	assert_true(id_after > id_before);
	assert_true(id_after > last);
	assert_int_equal(expect_quiet(&cb, 1500, "ticket"), 0);
	sse_close(&cb);
}

/*
 * (b) A token's rate limit is one for all nodes: with 2 requests a second
 * and a burst of 4, and both nodes' clocks pinned (no refill), requests
 * alternating between A and B get exactly 4 answers in total, then 429
 * with Retry-After from either node. Per node, 8 would pass.
 */
static void rate_limit_is_shared(void **state)
{
	(void)state;
	char *dir = t_tmpdir("cluster-rate");
	struct csa_err err = {0};
	assert_int_equal(csa_ws_init(dir, &err), CSA_OK);
	char cfg[700], tok[80];
	snprintf(cfg, sizeof(cfg), "%s/csa.json", dir);
	t_write(cfg, "{\"server\": {\"rate_per_second\": 2}}");
	mk(dir, CSA_ROLE_VIEWER, tok);
	struct node ra, rb;
	assert_int_equal(node_start(&ra, dir, tredis_url(redis), "1800000000000", "ra"), 0);
	assert_int_equal(node_start(&rb, dir, tredis_url(redis), "1800000000000", "rb"), 0);
	json_t *j1 = wait_redis_state(&ra, "up"), *j2 = wait_redis_state(&rb, "up");
	assert_non_null(j1);
	assert_non_null(j2);
	json_decref(j1);
	json_decref(j2);
	int ok = 0, limited = 0;
	for (int i = 0; i < 10; i++) {
		struct t_resp r;
		json_t *j = call(i % 2 ? &rb : &ra, "GET", "/api/phase", tok, NULL, &r);
		if (r.status == 200) {
			assert_int_equal(limited, 0); /* no answer after the first refusal */
			ok++;
		} else {
			assert_int_equal(r.status, 429);
			assert_string_equal(csa_json_str(j, "error"), "rate_limited");
			assert_non_null(strstr(r.headers, "Retry-After: 1"));
			limited++;
		}
		json_decref(j);
		free(r.body);
	}
	assert_int_equal(ok, 4);
	assert_int_equal(limited, 6);
	assert_int_equal(node_stop(&ra), 0);
	assert_int_equal(node_stop(&rb), 0);
	t_rmrf(dir);
	free(dir);
}

/* ---- without the cluster --------------------------------------------------------- */

/* The test's Redis goes away with the test, even when the test process is
 * killed outright: a child starts one, says where, and is SIGKILLed; the
 * server stops answering and its directory is removed (the guardian). */
static void private_redis_is_cleaned_after_sigkill(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		char why[2000], line[700];
		struct tredis *r = tredis_start(0, why, sizeof(why));
		int n = r ? snprintf(line, sizeof(line), "%d %s\n", tredis_port(r), tredis_dir(r))
		          : snprintf(line, sizeof(line), "0 %s\n", why);
		if (write(p[1], line, (size_t)n) != n)
			_exit(1);
		for (;;)
			pause(); /* until killed */
	}
	close(p[1]);
	char line[2100] = "";
	size_t len = 0;
	ssize_t got;
	while (!memchr(line, '\n', len) && len < sizeof(line) - 1 &&
	       (got = read(p[0], line + len, sizeof(line) - 1 - len)) > 0)
		len += (size_t)got;
	close(p[0]);
	line[len] = '\0';
	int port = atoi(line);
	char *dir = strchr(line, ' ');
	if (port <= 0 || !dir)
		fail_msg("the child's redis did not start: %s", line);
	dir++;
	dir[strcspn(dir, "\n")] = '\0';
	/* it runs while the child lives */
	char probe[2200];
	snprintf(probe, sizeof(probe), "%s/redis.pid", dir);
	assert_int_equal(access(probe, F_OK), 0);
	kill(pid, SIGKILL);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	int64_t deadline = mono_ms() + 30000;
	int gone = 0;
	while (!gone && mono_ms() < deadline) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		int listening = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		close(fd);
		gone = !listening && access(dir, F_OK) != 0;
		if (!gone)
			usleep(50000);
	}
	if (!gone)
		fail_msg("redis on 127.0.0.1:%d or its directory '%s' outlived the killed test", port,
		         dir);
}

/* REDIS_URL's forms and its errors, which name host:port and never the
 * password. */
static void redis_url_parsing(void **state)
{
	(void)state;
	struct csa_redis_url u;
	struct csa_err err = {0};
	assert_int_equal(csa_redis_url_parse("redis://cache:6380/2", "REDIS_URL", &u, &err), 0);
	assert_string_equal(u.host, "cache");
	assert_int_equal(u.port, 6380);
	assert_int_equal(u.db, 2);
	assert_string_equal(u.password, "");
	assert_int_equal(csa_redis_url_parse("redis://:s%40cret@10.0.0.5", "REDIS_URL", &u, &err),
	                 0);
	assert_int_equal(u.port, 6379);
	assert_string_equal(u.password, "s@cret");
	assert_string_equal(u.user, "");
	assert_int_equal(csa_redis_url_parse("redis://csa:pw@[::1]:7000/0", "REDIS_URL", &u, &err),
	                 0);
	assert_string_equal(u.host, "::1");
	assert_string_equal(u.user, "csa");
	assert_int_equal(u.port, 7000);

	static const struct {
		const char *url, *must;
	} bad[] = {
	    {"redis://:topsecret@cache:notaport/0", "cache:notaport"},
	    {"redis://:topsecret@cache:6379/99", "cache:6379"},
	    {"redis://:topsecret@cache:6379/0?timeout=1", "query"},
	    {"redis://:topsecret@:6379", "no host"},
	    {"redis://:@cache:6379", "cache:6379"},
	    {"http://cache:6379", "redis://"},
	    {"redis://topsecret@cache", "cache:6379"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		assert_int_equal(csa_redis_url_parse(bad[i].url, "REDIS_URL", &u, &err),
		                 CSA_EINVAL);
		if (!strstr(err.msg, bad[i].must) || strstr(err.msg, "topsecret") ||
		    !strstr(err.msg, "REDIS_URL"))
			fail_msg("'%s': message '%s' should name '%s' and not the password",
			         bad[i].url, err.msg, bad[i].must);
	}
	/* csa serve refuses to start on one, saying so */
	char *dir = t_tmpdir("cluster-url"), *errout = NULL;
	assert_int_equal(csa_ws_init(dir, &err), CSA_OK);
	setenv("REDIS_URL", "redis://:topsecret@cache:port/0", 1);
	int rc = t_csa(NULL, NULL, &errout, "serve --dir '%s' --port 0", dir);
	unsetenv("REDIS_URL");
	assert_int_not_equal(rc, 0);
	assert_non_null(errout);
	assert_non_null(strstr(errout, "REDIS_URL"));
	assert_non_null(strstr(errout, "cache:port"));
	assert_null(strstr(errout, "topsecret"));
	free(errout);
	/* so does csa.json's redis.url of another scheme */
	char cfg[700];
	snprintf(cfg, sizeof(cfg), "%s/csa.json", dir);
	t_write(cfg, "{\"redis\": {\"url\": \"http://cache\"}}");
	errout = NULL;
	rc = t_csa(NULL, NULL, &errout, "serve --dir '%s' --port 0", dir);
	assert_int_not_equal(rc, 0);
	assert_non_null(errout);
	assert_non_null(strstr(errout, "redis.url"));
	free(errout);
	t_rmrf(dir);
	free(dir);
}

/* Without Redis the node is a single node as before: /readyz says nothing
 * of redis, events carry no id, and a Last-Event-ID changes nothing. */
static void without_redis_nothing_changes(void **state)
{
	(void)state;
	char *dir = t_tmpdir("cluster-single");
	struct csa_err err = {0};
	assert_int_equal(csa_ws_init(dir, &err), CSA_OK);
	char tok[80], view[80];
	mk(dir, CSA_ROLE_AGENT, tok);
	mk(dir, CSA_ROLE_VIEWER, view);
	struct node n;
	assert_int_equal(node_start(&n, dir, NULL, NULL, "single"), 0);
	struct t_resp r;
	json_t *j = call(&n, "GET", "/readyz", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_null(json_object_get(j, "redis"));
	assert_null(json_object_get(j, "degraded"));
	/* status, workspace and the roles it leads (every one: a single host) */
	assert_int_equal(json_object_size(j), 3);
	assert_true(json_is_true(json_object_get(json_object_get(j, "leads"), "tick")));
	json_decref(j);
	free(r.body);
	struct sse c;
	assert_int_equal(sse_open(&c, &n, view, "12"), 0);
	assert_int_equal(ingest(&n, tok, "S-1"), 0);
	struct sse_event ev;
	do
		assert_int_equal(sse_next(&c, 30000, &ev), 1);
	while (strcmp(ev.event, "ticket") != 0);
	assert_string_equal(ev.id, "");
	assert_non_null(strstr(ev.data, "S-1"));
	sse_close(&c);
	assert_int_equal(node_stop(&n), 0);
	t_rmrf(dir);
	free(dir);
}

/* ---- online learning shared by nodes ---------------------------------------------- */

static struct tpg *g_pg;

/* A node in this process: a workspace handle and a pipeline of its own
 * (its own pool of connections with the database), sharing nothing in
 * memory with another. */
struct pnode {
	struct csa_ws *ws;
	struct csa_pipeline *p;
};

static void pnode_open(const char *dir, struct pnode *n)
{
	struct csa_err err = {0};
	memset(n, 0, sizeof(*n));
	if (csa_ws_open(dir, &n->ws, &err) || csa_pipeline_open(n->ws, &n->p, &err))
		fail_msg("opening a node on '%s': %s", dir, err.msg);
}

static void pnode_close(struct pnode *n)
{
	csa_pipeline_free(n->p);
	csa_ws_close(n->ws);
}

/* History tickets with their people's decisions into ws, and the models
 * trained on them (csa import). */
static void import_history(struct csa_ws *w, const char *scratch, long n)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/history.jsonl", scratch);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	struct csa_gen *g = csa_gen_new(7, 1767225600000LL);
	assert_int_equal(csa_gen_write(g, n, f), 0);
	csa_gen_free(g);
	fclose(f);
	f = fopen(path, "r");
	assert_non_null(f);
	json_t *rep = NULL;
	struct csa_err err = {0};
	int rc = csa_import_jsonl(w, f, "history.jsonl", 1, &rep, &err);
	fclose(f);
	if (rc)
		fail_msg("import: %s", err.msg);
	assert_non_null(json_object_get(json_object_get(rep, "models"), "category"));
	json_decref(rep);
}

/* What a classification said: the category and its confidence, as the
 * run reported them. */
struct verdict {
	char category[64];
	double confidence;
	char decision[160]; /* the classifier's decision id */
};

static int same_verdict(const struct verdict *x, const struct verdict *y)
{
	return strcmp(x->category, y->category) == 0 && x->confidence == y->confidence;
}

/* A new ticket 'id' whose customer wrote 'text', ingested on node n. */
static void classify(struct pnode *n, const char *id, const char *text, struct verdict *v)
{
	json_t *doc = json_pack("{s:s, s:s, s:[{s:s}]}", "ticket_id", id, "client_name", id,
	                        "messages", "content", text),
	       *res = NULL;
	struct csa_err err = {0};
	if (csa_pipeline_ingest(n->p, doc, &res, &err))
		fail_msg("ingest of '%s': %s", id, err.msg);
	json_t *cls = json_object_get(json_object_get(res, "agent_decisions"), "classifier");
	json_t *d = json_object_get(cls, "decision");
	memset(v, 0, sizeof(*v));
	snprintf(v->category, sizeof(v->category), "%s", csa_json_str(d, "category") ?: "");
	v->confidence = csa_json_num(d, "category_confidence", -1);
	snprintf(v->decision, sizeof(v->decision), "%s", csa_json_str(cls, "decision_id") ?: "");
	assert_true(v->category[0] && v->decision[0]);
	json_decref(doc);
	json_decref(res);
}

/* A category of the taxonomy other than 'except'. */
static const char *other_category(struct csa_ws *w, const char *except)
{
	const struct csa_config *cfg = csa_ws_config(w);
	const char *labels[64];
	size_t n = csa_import_labels(cfg, CSA_DT_CATEGORY, labels, 64);
	static char pick[64];
	pick[0] = '\0';
	for (size_t i = 0; i < n && !pick[0]; i++)
		if (strcmp(labels[i], except) != 0)
			snprintf(pick, sizeof(pick), "%s", labels[i]);
	csa_config_unref(cfg);
	assert_true(pick[0]);
	return pick;
}

/* Texts the models are compared on: the corrected ones and ordinary ones. */
static const char *const probes[] = {
    "my zorblax quintuplet flanges keep vibrating wildly",
    "the glimmerwort subscription portal shows purple hexagons",
    "vexatious quokka invoices arrived thrice this fortnight",
    "I was charged twice for my subscription this month",
    "the app crashes when I open the settings page",
    "how do I export my data to a spreadsheet",
};

/* Every probability every model of m gives the probes, in one row, and
 * the models' versions; for comparing two nodes' models bit for bit. */
struct fingerprint {
	double p[CSA_DT_COUNT][sizeof(probes) / sizeof(probes[0])][64];
	char version[CSA_DT_COUNT][64];
	int present[CSA_DT_COUNT];
};

static void fingerprint_of(struct csa_dmodel *const *models, struct fingerprint *f)
{
	memset(f, 0, sizeof(*f));
	const char *feats[] = {"tier=none", "platform=none", "sent=neutral"};
	for (int t = 0; t < CSA_DT_COUNT; t++) {
		if (!models[t])
			continue;
		f->present[t] = 1;
		snprintf(f->version[t], sizeof(f->version[t]), "%s", csa_dmodel_version(models[t]));
		assert_true(csa_dmodel_n_labels(models[t]) <= 64);
		for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++)
			assert_int_equal(
			    csa_dmodel_predict(models[t], probes[i], feats, 3, f->p[t][i], NULL),
			    0);
	}
}

static void node_fingerprint(struct pnode *n, struct fingerprint *f)
{
	fingerprint_of(csa_pipeline_env(n->p)->models, f);
}

static int same_fingerprint(const struct fingerprint *x, const struct fingerprint *y)
{
	return memcmp(x, y, sizeof(*x)) == 0;
}

/* Ingest on n (which takes up the log at most once a second) until its
 * models' fingerprint is 'want'; the milliseconds it took, or -1 after
 * the deadline. */
static long converge(struct pnode *n, const char *tag, const struct fingerprint *want)
{
	int64_t t0 = mono_ms();
	struct fingerprint *f = malloc(sizeof(*f));
	assert_non_null(f);
	long took = -1;
	for (int i = 0; mono_ms() - t0 < 15000; i++) {
		char id[64];
		struct verdict v;
		snprintf(id, sizeof(id), "%s-%d", tag, i);
		classify(n, id, probes[3], &v);
		node_fingerprint(n, f);
		if (same_fingerprint(f, want)) {
			took = (long)(mono_ms() - t0);
			break;
		}
		usleep(50000);
	}
	free(f);
	return took;
}

/* 'n' node directories under a new temporary directory (returned, to
 * free), on a schema of their own of the test server (DATABASE_URL set to
 * it; the test unsets it), the database holding 150 tickets of history
 * and the models trained on them. */
static char *db_nodes(const char *schema, const char *tmp, int n, char dir[][700])
{
	char url[600], why[2000];
	if (tpg_create_schema(g_pg, schema, url, sizeof(url), why, sizeof(why)))
		fail_msg("%s", why);
	setenv("DATABASE_URL", url, 1);
	char *base = t_tmpdir(tmp);
	struct csa_err err = {0};
	for (int i = 0; i < n; i++) {
		snprintf(dir[i], 700, "%s/node%d", base, i);
		assert_int_equal(csa_ws_init(dir[i], &err), 0);
	}
	struct csa_ws *w;
	assert_int_equal(csa_ws_open(dir[0], &w, &err), 0);
	import_history(w, base, 150);
	csa_ws_close(w);
	return base;
}

/* Two nodes on one database and a third started later. */
static void correction_on_one_node_teaches_the_others(void **state)
{
	(void)state;
	char dir[3][700];
	struct csa_err err = {0};
	char *base = db_nodes("online_nodes", "online-pg", 3, dir);
	struct pnode na, nb, nc;
	pnode_open(dir[0], &na);
	pnode_open(dir[1], &nb);

	/* one model in the database: the same verdict on both nodes */
	struct verdict a0, b0, a1, b1;
	classify(&na, "OL-A0", probes[0], &a0);
	classify(&nb, "OL-B0", probes[0], &b0);
	assert_true(same_verdict(&a0, &b0));

	/* a person corrects A's decision: A's next verdict differs at once */
	const char *label = other_category(na.ws, a0.category);
	int64_t t0 = mono_ms();
	if (csa_pipeline_feedback(na.p, "OL-A0", a0.decision, CSA_DT_CATEGORY, label, "kim", NULL,
	                          1, &err))
		fail_msg("feedback: %s", err.msg);
	classify(&na, "OL-A1", probes[0], &a1);
	assert_false(same_verdict(&a0, &a1));

	/* B's verdict on the same text becomes A's within a few seconds */
	long took = -1;
	for (int i = 0; mono_ms() - t0 < 15000; i++) {
		char id[64];
		snprintf(id, sizeof(id), "OL-B1-%d", i);
		classify(&nb, id, probes[0], &b1);
		if (same_verdict(&b1, &a1)) {
			took = (long)(mono_ms() - t0);
			break;
		}
		usleep(50000);
	}
	fprintf(stderr,
	        "online learning (PostgreSQL): A's correction %s %.4f -> %s %.4f reached B in %ld "
	        "ms\n",
	        a0.category, a0.confidence, a1.category, a1.confidence, took);
	if (took < 0)
		fail_msg("B still says %s %.6f, A says %s %.6f", b1.category, b1.confidence,
		         a1.category, a1.confidence);

	/* the models are the same, bit for bit: every type, every probe */
	struct fingerprint *fa = malloc(sizeof(*fa)), *fb = malloc(sizeof(*fb));
	assert_non_null(fa);
	assert_non_null(fb);
	node_fingerprint(&na, fa);
	node_fingerprint(&nb, fb);
	assert_true(fa->present[CSA_DT_CATEGORY]);
	assert_true(same_fingerprint(fa, fb));

	/* a correction taught on B reaches A the same way */
	struct verdict b2, a2;
	classify(&nb, "OL-B2", probes[1], &b2);
	if (csa_pipeline_feedback(nb.p, "OL-B2", b2.decision, CSA_DT_CATEGORY,
	                          other_category(nb.ws, b2.category), "lee", NULL, 1, &err))
		fail_msg("feedback on B: %s", err.msg);
	node_fingerprint(&nb, fb);
	assert_false(same_fingerprint(fa, fb));
	took = converge(&na, "OL-A2", fb);
	fprintf(stderr, "online learning (PostgreSQL): B's correction reached A in %ld ms\n", took);
	assert_true(took >= 0);
	classify(&na, "OL-A3", probes[1], &a2);
	assert_false(same_verdict(&a2, &b2));

	/* a node started now learns the log as it opens: the same models */
	pnode_open(dir[2], &nc);
	struct fingerprint *fc = malloc(sizeof(*fc));
	assert_non_null(fc);
	node_fingerprint(&nc, fc);
	assert_true(same_fingerprint(fc, fb));
	free(fa);
	free(fb);
	free(fc);
	pnode_close(&na);
	pnode_close(&nb);
	pnode_close(&nc);
	unsetenv("DATABASE_URL");
	t_rmrf(base);
	free(base);
}

/* The category and confidence of a run's response as the API prints
 * them (ten significant digits): what two nodes' verdicts are compared
 * by when one of them answers over HTTP. */
static void printed(const char *category, double confidence, char *out, size_t outsz)
{
	snprintf(out, outsz, "%s %.10g", category, confidence);
}

/* POST /api/tickets on a csa serve node: its verdict as printed. */
static void classify_http(const struct node *n, const char *token, const char *id, const char *text,
                          char *out, size_t outsz)
{
	json_t *doc = json_pack("{s:s, s:s, s:[{s:s}]}", "ticket_id", id, "client_name", id,
	                        "messages", "content", text);
	char *body = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	struct t_resp r;
	json_t *res = call(n, "POST", "/api/tickets", token, body, &r);
	free(body);
	if (r.status != 201)
		fail_msg("POST /api/tickets %s: %ld %s", id, r.status, r.body ? r.body : "");
	free(r.body);
	json_t *d = json_object_get(
	    json_object_get(json_object_get(res, "agent_decisions"), "classifier"), "decision");
	printed(csa_json_str(d, "category") ?: "", csa_json_num(d, "category_confidence", -1), out,
	        outsz);
	json_decref(res);
}

/* One files workspace, two processes: this one, and csa serve, as a CLI
 * csa review and the server of one host share a workspace. */
static void correction_reaches_another_process_of_a_files_workspace(void **state)
{
	(void)state;
	unsetenv("DATABASE_URL");
	char *dir = t_tmpdir("online-files");
	struct csa_err err = {0};
	assert_int_equal(csa_ws_init(dir, &err), 0);
	char cfg[700], tok[80];
	snprintf(cfg, sizeof(cfg), "%s/csa.json", dir);
	t_write(cfg, "{\"server\": {\"rate_per_second\": 1000}}");
	mk(dir, CSA_ROLE_AGENT, tok);
	struct csa_ws *w;
	assert_int_equal(csa_ws_open(dir, &w, &err), 0);
	import_history(w, dir, 150);
	csa_ws_close(w);
	struct pnode na;
	pnode_open(dir, &na);
	struct node srv;
	assert_int_equal(node_start(&srv, dir, NULL, NULL, "online"), 0);

	struct verdict a0, a1;
	char before[100], want[100], got[100] = "";
	classify(&na, "OF-A0", probes[0], &a0);
	printed(a0.category, a0.confidence, before, sizeof(before));
	classify_http(&srv, tok, "OF-S0", probes[0], got, sizeof(got));
	assert_string_equal(got, before);
	int64_t t0 = mono_ms();
	if (csa_pipeline_feedback(na.p, "OF-A0", a0.decision, CSA_DT_CATEGORY,
	                          other_category(na.ws, a0.category), "kim", NULL, 1, &err))
		fail_msg("feedback: %s", err.msg);
	classify(&na, "OF-A1", probes[0], &a1);
	printed(a1.category, a1.confidence, want, sizeof(want));
	assert_string_not_equal(want, before);
	long took = -1;
	for (int i = 0; mono_ms() - t0 < 15000; i++) {
		char id[64];
		snprintf(id, sizeof(id), "OF-S1-%d", i);
		classify_http(&srv, tok, id, probes[0], got, sizeof(got));
		if (strcmp(got, want) == 0) {
			took = (long)(mono_ms() - t0);
			break;
		}
		usleep(50000);
	}
	fprintf(stderr, "online learning (files): '%s' -> '%s' reached csa serve in %ld ms\n",
	        before, want, took);
	if (took < 0)
		fail_msg("csa serve still says '%s', this process '%s'", got, want);
	/* the same verdicts on every probe from both processes */
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		char id[64], mine[100];
		struct verdict v;
		snprintf(id, sizeof(id), "OF-A-P%zu", i);
		classify(&na, id, probes[i], &v);
		printed(v.category, v.confidence, mine, sizeof(mine));
		snprintf(id, sizeof(id), "OF-S-P%zu", i);
		classify_http(&srv, tok, id, probes[i], got, sizeof(got));
		assert_string_equal(got, mine);
	}
	int st = node_stop(&srv);
	if (st)
		show_log(&srv);
	assert_int_equal(st, 0);
	/* and a handle opened now on the workspace has the models of the
	 * first, bit for bit */
	struct pnode nb;
	pnode_open(dir, &nb);
	struct fingerprint *fa = malloc(sizeof(*fa)), *fb = malloc(sizeof(*fb));
	assert_non_null(fa);
	assert_non_null(fb);
	node_fingerprint(&na, fa);
	node_fingerprint(&nb, fb);
	assert_true(same_fingerprint(fa, fb));
	free(fa);
	free(fb);
	pnode_close(&nb);
	pnode_close(&na);
	t_rmrf(dir);
	free(dir);
}

/* The log's entries of one kind, positions in order, into pos (at most
 * max); how many. */
static size_t entries_of(struct csa_learnlog *l, const char *kind, int64_t *pos, size_t max)
{
	struct csa_learnlog_entry *e = NULL;
	size_t n = 0, k = 0;
	struct csa_err err = {0};
	assert_int_equal(csa_learnlog_read(l, 0, 1000, &e, &n, &err), 0);
	for (size_t i = 0; i < n; i++)
		if (strcmp(e[i].kind, kind) == 0 && k < max)
			pos[k++] = e[i].seq;
	csa_learnlog_free_entries(e, n);
	return k;
}

/*
 * Corrections on both nodes, then a retraining on A: the saved model
 * covers them (it trained on their tickets), and no node teaches them
 * again on top of it: after reloading, A's and B's models are the saved
 * model exactly. A correction after the retraining goes on top on both. A
 * second retraining drops the entries the first one covered.
 */
static void retraining_is_not_taught_again(void **state)
{
	(void)state;
	char dir[2][700];
	struct csa_err err = {0};
	char *base = db_nodes("online_retrain", "online-retrain", 2, dir);
	struct pnode na, nb;
	pnode_open(dir[0], &na);
	pnode_open(dir[1], &nb);
	/* one correction on each node */
	struct verdict v;
	classify(&na, "OR-A0", probes[0], &v);
	if (csa_pipeline_feedback(na.p, "OR-A0", v.decision, CSA_DT_CATEGORY,
	                          other_category(na.ws, v.category), "kim", NULL, 1, &err))
		fail_msg("feedback on A: %s", err.msg);
	classify(&nb, "OR-B0", probes[1], &v);
	if (csa_pipeline_feedback(nb.p, "OR-B0", v.decision, CSA_DT_CATEGORY,
	                          other_category(nb.ws, v.category), "lee", NULL, 1, &err))
		fail_msg("feedback on B: %s", err.msg);
	struct fingerprint *fa = malloc(sizeof(*fa)), *fb = malloc(sizeof(*fb)),
	                   *saved = malloc(sizeof(*saved));
	assert_non_null(fa);
	assert_non_null(fb);
	assert_non_null(saved);
	node_fingerprint(&nb, fb);
	assert_true(converge(&na, "OR-A1", fb) >= 0);
	int64_t head = 0, covered = -1, pos[8];
	assert_int_equal(csa_learnlog_head(na.ws->learnlog, &head, &err), 0);
	assert_int_equal(entries_of(na.ws->learnlog, "category", pos, 8), 2);

	/* the retraining: its model covers both corrections */
	json_t *rep = NULL;
	if (csa_import_train(na.ws, 42, &rep, &err))
		fail_msg("train: %s", err.msg);
	json_decref(rep);
	assert_int_equal(
	    csa_online_base(na.ws->blobs, na.ws->learnlog, CSA_DT_CATEGORY, &covered, &err), 0);
	assert_int_equal(covered, head);
	struct csa_dmodel *m[CSA_DT_COUNT] = {0};
	for (int t = 0; t < CSA_DT_COUNT; t++)
		if (csa_dmodel_load(na.ws->blobs, (enum csa_dtype)t, &m[t], NULL))
			m[t] = NULL;
	fingerprint_of(m, saved);
	for (int t = 0; t < CSA_DT_COUNT; t++)
		csa_dmodel_free(m[t]);
	assert_true(saved->present[CSA_DT_CATEGORY]);
	/* A reloads (as the CLI's csa train does for its own process): the
	 * saved model as it is */
	assert_int_equal(csa_pipeline_reload_models(na.p, &err), 0);
	node_fingerprint(&na, fa);
	assert_true(same_fingerprint(fa, saved));
	/* B takes it up by itself, within a few seconds, the same */
	long took = converge(&nb, "OR-B1", saved);
	fprintf(stderr, "online learning: B reloaded the retrained model in %ld ms\n", took);
	assert_true(took >= 0);

	/* a correction after the retraining goes on top, on both */
	classify(&na, "OR-A2", probes[2], &v);
	if (csa_pipeline_feedback(na.p, "OR-A2", v.decision, CSA_DT_CATEGORY,
	                          other_category(na.ws, v.category), "kim", NULL, 1, &err))
		fail_msg("feedback on A: %s", err.msg);
	node_fingerprint(&na, fa);
	assert_false(same_fingerprint(fa, saved));
	assert_true(converge(&nb, "OR-B2", fa) >= 0);

	/* a second retraining drops what the first one covered, and keeps
	 * what it did not (a node still on the first model needs it) */
	int64_t after_first[8];
	assert_int_equal(entries_of(na.ws->learnlog, "category", after_first, 8), 3);
	if (csa_import_train(na.ws, 42, &rep, &err))
		fail_msg("train: %s", err.msg);
	json_decref(rep);
	assert_int_equal(entries_of(na.ws->learnlog, "category", pos, 8), 1);
	assert_int_equal(pos[0], after_first[2]);
	free(fa);
	free(fb);
	free(saved);
	pnode_close(&na);
	pnode_close(&nb);
	unsetenv("DATABASE_URL");
	t_rmrf(base);
	free(base);
}

/* The log itself on both backends: positions in order and kept apart
 * from the body, customer bytes (quotes, backslashes, SQL, invalid
 * UTF-8, NUL) back as they went in, the identity stable across handles,
 * prune by kind and position, the size bound. */
static void learnlog_contract(struct csa_learnlog *l, struct csa_learnlog *other)
{
	struct csa_err err = {0};
	char id1[CSA_LEARNLOG_ID_LEN + 1], id2[CSA_LEARNLOG_ID_LEN + 1];
	assert_int_equal(csa_learnlog_id(l, id1, &err), 0);
	assert_int_equal(csa_learnlog_id(other, id2, &err), 0);
	assert_string_equal(id1, id2);
	assert_int_equal(strlen(id1), CSA_LEARNLOG_ID_LEN);
	int64_t head = -1;
	assert_int_equal(csa_learnlog_head(l, &head, &err), 0);
	assert_int_equal(head, 0);
	static const char hostile[] = "x'); DROP TABLE csa_online_examples; --\\\"\xff\xfe\0tail";
	int64_t s1, s2, s3;
	assert_int_equal(csa_learnlog_append(l, "category", hostile, sizeof(hostile), &s1, &err),
	                 0);
	assert_int_equal(csa_learnlog_append(other, "priority", "p", 1, &s2, &err), 0);
	assert_int_equal(csa_learnlog_append(l, "category", "", 0, &s3, &err), 0);
	assert_true(s1 < s2 && s2 < s3);
	struct csa_learnlog_entry *e = NULL;
	size_t n = 0;
	assert_int_equal(csa_learnlog_read(other, 0, 10, &e, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_int_equal(e[0].seq, s1);
	assert_string_equal(e[0].kind, "category");
	assert_int_equal(e[0].len, sizeof(hostile));
	assert_memory_equal(e[0].body, hostile, sizeof(hostile));
	assert_int_equal(e[2].len, 0);
	csa_learnlog_free_entries(e, n);
	assert_int_equal(csa_learnlog_read(l, s1, 1, &e, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(e[0].seq, s2);
	csa_learnlog_free_entries(e, n);
	assert_int_equal(csa_learnlog_read(l, s3, 10, &e, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_null(e);
	assert_int_equal(csa_learnlog_head(other, &head, &err), 0);
	assert_int_equal(head, s3);
	/* prune: that kind, at or below the position */
	assert_int_equal(csa_learnlog_prune(l, "category", s2, &err), 0);
	assert_int_equal(csa_learnlog_read(l, 0, 10, &e, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(e[0].seq, s2);
	assert_int_equal(e[1].seq, s3);
	csa_learnlog_free_entries(e, n);
	/* refused: a kind that is not a name, a body over the limit */
	assert_int_equal(csa_learnlog_append(l, "Category; --", "x", 1, NULL, &err), CSA_EINVAL);
	char *big = calloc(1, CSA_LEARNLOG_BODY_MAX + 1);
	assert_non_null(big);
	assert_int_equal(
	    csa_learnlog_append(l, "category", big, CSA_LEARNLOG_BODY_MAX + 1, NULL, &err),
	    CSA_ELIMIT);
	free(big);
}

struct appender {
	struct csa_learnlog *l;
	int64_t seq;
	int rc;
	atomic_int done;
};

static void *append_main(void *arg)
{
	struct appender *ap = arg;
	ap->rc = csa_learnlog_append(ap->l, "category", "late", 4, &ap->seq, NULL);
	atomic_store(&ap->done, 1);
	return NULL;
}

/* An append on PostgreSQL waits for one that drew an earlier position and
 * has not committed yet: a reader of "above the last I saw" that saw the
 * later one would never see the earlier. The earlier one is held open by
 * hand here, on the lock csa's appends take. */
static void pg_appends_become_visible_in_order(const char *url, struct csa_learnlog *l)
{
	PGconn *c = PQconnectdb(url);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	char key[24];
	snprintf(key, sizeof(key), "%lld", csa_pg_lock_key("learnlog", "append"));
	const char *kp[] = {key};
	PQclear(PQexec(c, "BEGIN"));
	PGresult *r =
	    PQexecParams(c, "SELECT pg_advisory_xact_lock($1::bigint)", 1, NULL, kp, NULL, NULL, 0);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	PQclear(r);
	r = PQexec(c, "INSERT INTO csa_online_examples (kind, body) VALUES ('category', 'early') "
	              "RETURNING seq");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	int64_t early = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	struct appender ap = {.l = l};
	atomic_init(&ap.done, 0);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, append_main, &ap), 0);
	/* a fixed wait that can only make the test weaker, never flaky: on a
	 * loaded machine the append may not have started yet */
	usleep(500000);
	int waited = !atomic_load(&ap.done);
	PQclear(PQexec(c, "COMMIT"));
	pthread_join(th, NULL);
	PQfinish(c);
	assert_true(waited);
	assert_int_equal(ap.rc, 0);
	assert_true(ap.seq > early);
	int64_t after_early = 0;
	struct csa_learnlog_entry *e = NULL;
	size_t n = 0;
	struct csa_err err = {0};
	assert_int_equal(csa_learnlog_read(l, early - 1, 10, &e, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(e[0].seq, early);
	after_early = e[1].seq;
	assert_int_equal(after_early, ap.seq);
	csa_learnlog_free_entries(e, n);
}

static void learnlog_backends(void **state)
{
	(void)state;
	struct csa_err err = {0};
	char *dir = t_tmpdir("learnlog");
	char path[700];
	snprintf(path, sizeof(path), "%s/online.db", dir);
	struct csa_learnlog *l1, *l2;
	assert_int_equal(csa_learnlog_open_sqlite(path, &l1, &err), 0);
	assert_int_equal(csa_learnlog_open_sqlite(path, &l2, &err), 0);
	learnlog_contract(l1, l2);
	csa_learnlog_close(l1);
	csa_learnlog_close(l2);
	t_rmrf(dir);
	free(dir);

	char url[600], why[2000];
	if (tpg_create_schema(g_pg, "online_log", url, sizeof(url), why, sizeof(why)))
		fail_msg("%s", why);
	struct csa_pg *p1, *p2;
	assert_int_equal(csa_pg_open(url, "test", CSA_PG_MIGRATE, &p1, &err), 0);
	assert_int_equal(csa_pg_open(url, "test", CSA_PG_MIGRATE, &p2, &err), 0);
	assert_int_equal(csa_learnlog_open_pg(p1, &l1, &err), 0);
	assert_int_equal(csa_learnlog_open_pg(p2, &l2, &err), 0);
	learnlog_contract(l1, l2);
	pg_appends_become_visible_in_order(url, l1);
	csa_learnlog_close(l1);
	csa_learnlog_close(l2);
	csa_pg_free(p1);
	csa_pg_free(p2);
}

static int online_up(void **state)
{
	(void)state;
	char why[2000];
	if (!(g_pg = tpg_start(why, sizeof(why)))) {
		fprintf(stderr, "cannot start the test's PostgreSQL: %s\n", why);
		return -1;
	}
	return 0;
}

/* A failed test stops before it unsets DATABASE_URL: the next one would
 * put its workspaces in that database. */
static int online_test_down(void **state)
{
	(void)state;
	unsetenv("DATABASE_URL");
	return 0;
}

static int online_down(void **state)
{
	(void)state;
	tpg_stop(g_pg);
	return 0;
}

int main(void)
{
	const struct CMUnitTest cluster[] = {
	    cmocka_unit_test(events_cross_nodes_in_order_once),
	    cmocka_unit_test(a_gap_or_unknown_id_means_resync),
	    cmocka_unit_test(rate_limit_is_shared),
	    cmocka_unit_test(redis_down_degrades_and_recovers),
	};
	const struct CMUnitTest alone[] = {
	    cmocka_unit_test(redis_url_parsing),
	    cmocka_unit_test(private_redis_is_cleaned_after_sigkill),
	    cmocka_unit_test(without_redis_nothing_changes),
	};
	const struct CMUnitTest online[] = {
	    cmocka_unit_test_teardown(learnlog_backends, online_test_down),
	    cmocka_unit_test_teardown(correction_on_one_node_teaches_the_others, online_test_down),
	    cmocka_unit_test_teardown(correction_reaches_another_process_of_a_files_workspace,
	                              online_test_down),
	    cmocka_unit_test_teardown(retraining_is_not_taught_again, online_test_down),
	};
	int failed = cmocka_run_group_tests_name("alone", alone, NULL, NULL);
	failed += cmocka_run_group_tests_name("cluster", cluster, cluster_up, cluster_down);
	failed += cmocka_run_group_tests_name("online", online, online_up, online_down);
	return failed ? 1 : 0;
}
