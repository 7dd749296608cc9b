/* The HTTP API against a real server on a free loopback port: tickets,
 * messages, reviews, auth and roles, limits, errors, pages and metrics.
 *
 * Every test gets a workspace and a server of its own (setup/teardown run
 * around each), so each runs alone and fails for its own reason:
 *   test_server [PATTERN]   runs the tests whose names match (* and ?).
 *
 * The contracts of the token store and of the channel map run again on
 * PostgreSQL (a private server, tests/support/tpg.h; the tests named
 * pg_*), with two csa serve processes on one database receiving the same
 * platform message. If that server cannot start, the run fails with the
 * reason: never a skip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"
#include "server/chanmap.h"
#include "server/server.h"
#include "server/server_internal.h"
#include "server/tokens.h"
#include "flow/import.h"
#include "store/store.h"
#include "store/ws.h"
#include <sqlite3.h>
#include "support/thttp.h"
#include "support/tpg.h"
#include "support/tutil.h"
#include <libpq-fe.h>

static char *dir;
static struct csa_ws *ws;
/* The PostgreSQL server of the pg_* tests (started by main); NULL while
 * the contracts run on files. */
static struct tpg *g_pg;
static struct csa_server *srv;
static char admin[80], viewer[80], agent[80];
/* tokens of the file monitor test: rate limits (5/s, burst 10) are per token */
static char writer[80], mon_admin[80], mon_viewer[80];
static char cache_agent[80]; /* and of the cache test */
static unsigned port;

static json_t *call_h(const char *method, const char *path, const char *token, const char *body,
                      const char *extra1, const char *extra2, struct t_resp *r);

static json_t *call(const char *method, const char *path, const char *token, const char *body,
                    struct t_resp *r)
{
	return call_h(method, path, token, body, NULL, NULL, r);
}

static json_t *call_h(const char *method, const char *path, const char *token, const char *body,
                      const char *extra1, const char *extra2, struct t_resp *r)
{
	char auth[160];
	const char *h[4] = {NULL};
	size_t k = 0;
	if (token) {
		t_bearer(auth, token);
		h[k++] = auth;
	}
	if (extra1)
		h[k++] = extra1;
	if (extra2)
		h[k++] = extra2;
	assert_int_equal(t_http(port, method, path, h, body, 30, r), 0);
	return r->body ? json_loads(r->body, 0, NULL) : NULL;
}

static void mk(enum csa_role role, char out[80])
{
	char *t, id[32];
	struct csa_err err = {0};
	assert_int_equal(csa_token_create(dir, role, "test", &t, id, &err), 0);
	snprintf(out, 80, "%s", t);
	free(t);
}

/* A fresh workspace with its tokens and a server on it. */
static int setup(void **state)
{
	(void)state;
	struct csa_err err = {0};
	dir = t_tmpdir("server");
	if (csa_ws_init(dir, &err) || csa_ws_open(dir, &ws, &err))
		return -1;
	/* a small body limit to test 413; the controller's tick every 0.2 s
	 * instead of every minute */
	json_t *over = json_pack("{s:{s:i}, s:{s:f}}", "limits", "max_document_bytes", 64 * 1024,
	                         "automation", "tick_seconds", 0.2);
	int rc = csa_ws_config_override(ws, over, &err);
	json_decref(over);
	if (rc)
		return -1;
	mk(CSA_ROLE_ADMIN, admin);
	mk(CSA_ROLE_VIEWER, viewer);
	mk(CSA_ROLE_AGENT, agent);
	mk(CSA_ROLE_AGENT, writer);
	mk(CSA_ROLE_ADMIN, mon_admin);
	mk(CSA_ROLE_VIEWER, mon_viewer);
	mk(CSA_ROLE_AGENT, cache_agent);
	struct csa_server_opts o = {"127.0.0.1", 0, 2, CSA_SOURCE_DIR "/web", 5};
	if (csa_server_start(ws, &o, &srv, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	port = csa_server_port(srv);
	return port ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	csa_server_stop(srv);
	csa_ws_close(ws);
	t_rmrf(dir);
	free(dir);
	srv = NULL;
	ws = NULL;
	dir = NULL;
	port = 0;
	return 0;
}

/* Library statuses map to one HTTP status each; a lost race is a 409. */
static void error_statuses(void **state)
{
	(void)state;
	static const struct {
		int code, status;
		const char *error;
	} want[] = {
	    {CSA_EINVAL, 400, "bad_request"}, {CSA_ESCHEMA, 400, "bad_request"},
	    {CSA_EPARSE, 400, "bad_request"}, {CSA_EAUTH, 401, "unauthorized"},
	    {CSA_ENOENT, 404, "not_found"},   {CSA_EEXIST, 409, "exists"},
	    {CSA_ESTATE, 409, "conflict"},    {CSA_ECONFLICT, 409, "conflict"},
	    {CSA_ELIMIT, 413, "too_large"},   {CSA_EBUSY, 503, "busy"},
	    {CSA_EIO, 500, "internal"},       {CSA_ENOMEM, 500, "internal"},
	    {CSA_ECORRUPT, 500, "internal"},  {CSA_EBACKEND, 503, "unavailable"},
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const char *code = NULL;
		int st = csa_http_status_of(want[i].code, &code);
		if (st != want[i].status || strcmp(code, want[i].error) != 0)
			fail_msg("%s: %d %s, expected %d %s", csa_strerror(want[i].code), st, code,
			         want[i].status, want[i].error);
	}
	/* the body of a conflict names it */
	struct call c = {0};
	struct csa_err e = {0};
	csa_error(&e, CSA_ECONFLICT, "task 7 was decided by tk_x");
	json_t *j = csa_fail_err(&c, &e);
	assert_int_equal(c.status, 409);
	assert_string_equal(csa_json_str(j, "error"), "conflict");
	assert_string_equal(csa_json_str(j, "detail"), "task 7 was decided by tk_x");
	json_decref(j);
}

/* A workspace in 'd' for a contract test: on files, or with g_pg its
 * tickets (and so its outbox, channel map and tokens) in the schema
 * 'schema' of the test server, named by csa.json's store.url. */
static struct csa_ws *contract_ws(const char *d, const char *schema)
{
	struct csa_err err = {0};
	assert_int_equal(csa_ws_init(d, &err), 0);
	if (g_pg) {
		/* one schema per name, made the first time (the URL is kept) */
		static struct {
			char name[32], url[512];
		} made[8];
		char why[1024], path[4200];
		const char *url = NULL;
		for (size_t k = 0; k < 8 && !url; k++) {
			if (!made[k].name[0]) {
				if (tpg_create_schema(g_pg, schema, made[k].url, sizeof(made[k].url), why,
				                      sizeof(why)))
					fail_msg("%s", why);
				snprintf(made[k].name, sizeof(made[k].name), "%s", schema);
			}
			if (strcmp(made[k].name, schema) == 0)
				url = made[k].url;
		}
		assert_non_null(url);
		snprintf(path, sizeof(path), "%s/csa.json", d);
		json_t *cfg = json_load_file(path, 0, NULL);
		assert_non_null(cfg);
		json_object_set_new(cfg, "store", json_pack("{s:s}", "url", url));
		assert_int_equal(json_dump_file(cfg, path, JSON_INDENT(2)), 0);
		json_decref(cfg);
	}
	struct csa_ws *w = NULL;
	if (csa_ws_open(d, &w, &err))
		fail_msg("%s", err.msg);
	assert_true(!g_pg == !w->pg);
	return w;
}

/* The contract of a token store (tokens.h), run on tokens.json and on
 * PostgreSQL (two workspaces on one database: two nodes). */
static void tokens_contract(void **state)
{
	(void)state;
	char *d = t_tmpdir("tokens"), *d2 = t_tmpdir("tokens2");
	struct csa_ws *wa = contract_ws(d, "tokens"), *wb = contract_ws(g_pg ? d2 : d, "tokens");
	struct csa_tokens *a, *b;
	struct csa_err err = {0};
	assert_int_equal(csa_tokens_open_ws(wa, &a, &err), 0);
	assert_int_equal(csa_tokens_open_ws(wb, &b, &err), 0);
	enum csa_role role;
	char id[CSA_TOKEN_ID_LEN], id2[CSA_TOKEN_ID_LEN], *tok, *tok2;
	/* nothing yet: every secret is unknown */
	assert_int_equal(csa_tokens_check(a, "csa_nothing", &role, id, &err), CSA_EAUTH);
	assert_int_equal(role, CSA_ROLE_NONE);
	assert_int_equal(csa_tokens_create(a, CSA_ROLE_NONE, "x", &tok, id, &err), CSA_EINVAL);
	assert_int_equal(csa_tokens_create(a, CSA_ROLE_AGENT, "ann", &tok, id, &err), 0);
	assert_int_equal(strncmp(id, "tk_", 3), 0);
	/* another handle (another process) sees it at once */
	assert_int_equal(csa_tokens_check(b, tok, &role, id2, &err), 0);
	assert_int_equal(role, CSA_ROLE_AGENT);
	assert_string_equal(id2, id);
	assert_int_equal(csa_tokens_create(b, CSA_ROLE_ADMIN, NULL, &tok2, id2, &err), 0);
	assert_int_equal(csa_tokens_check(a, tok2, &role, id2, &err), 0);
	assert_int_equal(role, CSA_ROLE_ADMIN);
	/* a secret that differs in one character, or is too long, is unknown */
	tok2[10] = tok2[10] == 'a' ? 'b' : 'a';
	assert_int_equal(csa_tokens_check(a, tok2, &role, id2, &err), CSA_EAUTH);
	char longtok[300];
	memset(longtok, 'a', sizeof(longtok) - 1);
	longtok[sizeof(longtok) - 1] = '\0';
	assert_int_equal(csa_tokens_check(a, longtok, &role, id2, &err), CSA_EAUTH);
	/* listed without digests */
	json_t *l;
	assert_int_equal(csa_tokens_list(a, &l, &err), 0);
	assert_int_equal(json_array_size(l), 2);
	assert_string_equal(csa_json_str(json_array_get(l, 0), "name"), "ann");
	assert_string_equal(csa_json_str(json_array_get(l, 0), "role"), "agent");
	assert_null(json_object_get(json_array_get(l, 0), "sha256"));
	json_decref(l);
	/* revoked through one handle, gone for the other */
	assert_int_equal(csa_tokens_revoke(b, id, &err), 0);
	assert_int_equal(csa_tokens_check(a, tok, &role, id2, &err), CSA_EAUTH);
	assert_int_equal(csa_tokens_revoke(a, id, &err), CSA_ENOENT);
	assert_non_null(strstr(err.msg, id));
	csa_tokens_close(a);
	csa_tokens_close(b);
	csa_tokens_close(NULL);
	free(tok);
	free(tok2);
	if (wb != wa)
		csa_ws_close(wb);
	csa_ws_close(wa);
	t_rmrf(d);
	t_rmrf(d2);
	free(d);
	free(d2);
}

/* The contract of a channel thread map (chanmap.h), run on channels.db
 * and on PostgreSQL. */
static void chanmap_contract(void **state)
{
	(void)state;
	char *d = t_tmpdir("chanmap");
	struct csa_ws *w = contract_ws(d, "chanmap");
	struct csa_err err = {0};
	struct csa_chanmap *a, *b;
	assert_int_equal(csa_chanmap_open(w, &a, &err), 0);
	assert_int_equal(csa_chanmap_open(w, &b, &err), 0);
	char t[80] = "unchanged";
	assert_int_equal(csa_chanmap_get(a, "slack:C1:1.2", t, sizeof(t), &err), CSA_ENOENT);
	assert_int_equal(csa_chanmap_bind(a, "slack:C1:1.2", "T-1", &err), 0);
	assert_int_equal(csa_chanmap_get(b, "slack:C1:1.2", t, sizeof(t), &err), 0);
	assert_string_equal(t, "T-1");
	/* the first binding wins, from any handle */
	assert_int_equal(csa_chanmap_bind(b, "slack:C1:1.2", "T-2", &err), 0);
	assert_int_equal(csa_chanmap_get(a, "slack:C1:1.2", t, sizeof(t), &err), 0);
	assert_string_equal(t, "T-1");
	/* keys are exact: no prefix or case folding */
	assert_int_equal(csa_chanmap_get(a, "slack:C1:1.", t, sizeof(t), &err), CSA_ENOENT);
	assert_int_equal(csa_chanmap_get(a, "SLACK:C1:1.2", t, sizeof(t), &err), CSA_ENOENT);
	/* a ticket id that does not fit the caller's buffer is an error, not cut */
	char small[3];
	assert_int_equal(csa_chanmap_get(a, "slack:C1:1.2", small, sizeof(small), &err),
	                 CSA_ECORRUPT);
	/* an overlong key is refused with a message, before the database */
	char key[CSA_CHANMAP_KEY_MAX + 2];
	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	assert_int_equal(csa_chanmap_bind(a, key, "T-3", &err), CSA_EINVAL);
	assert_non_null(strstr(err.msg, "longer than"));
	csa_chanmap_close(a);
	csa_chanmap_close(b);
	csa_chanmap_close(NULL);
	/* durable: a new handle after all were closed */
	assert_int_equal(csa_chanmap_open(w, &a, &err), 0);
	assert_int_equal(csa_chanmap_get(a, "slack:C1:1.2", t, sizeof(t), &err), 0);
	assert_string_equal(t, "T-1");
	csa_chanmap_close(a);
	csa_ws_close(w);
	t_rmrf(d);
	free(d);
}

/* The value of a Prometheus series in /metrics, or -1 when absent. */
static long series(const char *text, const char *name)
{
	const char *p = text;
	size_t n = strlen(name);
	while ((p = strstr(p, name))) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return strtol(p + n + 1, NULL, 10);
		p += n;
	}
	return -1;
}

/* /metrics, hooks, events and pages are routes like any other: counted,
 * size-limited, and answered 404 or 405 the same way. */
static void every_route_counted_and_answered_alike(void **state)
{
	(void)state;
	struct t_resp r;
	json_t *j;
	static const struct {
		const char *method, *path;
		long status;
		const char *detail;
	} cases[] = {
	    {"POST", "/hooks/nope", 404, "no route POST /hooks/nope"},
	    {"GET", "/hooks/email", 405, "GET not allowed on /hooks/email"},
	    {"DELETE", "/hooks/slack", 405, "DELETE not allowed"},
	    {"POST", "/metrics", 405, "POST not allowed on /metrics"},
	    {"POST", "/", 405, "POST not allowed on /"},
	    {"GET", "/nope.html", 404, "no route GET /nope.html"},
	    {"GET", "/api/events", 401, "Bearer"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		j = call(cases[i].method, cases[i].path, NULL, NULL, &r);
		if (r.status != cases[i].status || !j ||
		    !strstr(csa_json_str(j, "detail"), cases[i].detail))
			fail_msg("%s %s: %ld %s", cases[i].method, cases[i].path, r.status,
			         r.body ? r.body : "");
		json_decref(j);
		free(r.body);
	}
	/* Trello's probe of the callback URL */
	json_decref(call("HEAD", "/hooks/trello", NULL, NULL, &r));
	assert_int_equal(r.status, 200);
	free(r.body);
	/* a hook's body is limited like any other */
	char *big = malloc(70 * 1024);
	memset(big, 'a', 70 * 1024 - 1);
	big[70 * 1024 - 1] = '\0';
	j = call_h("POST", "/hooks/email", NULL, big, "X-CSA-Hook-Token: hooktok", NULL, &r);
	assert_int_equal(r.status, 413);
	free(big);
	json_decref(j);
	free(r.body);
	j = call_h("POST", "/hooks/email", NULL, "{}", "X-CSA-Hook-Token: wrong", NULL, &r);
	assert_int_equal(r.status, 401);
	json_decref(j);
	free(r.body);
	json_decref(call("GET", "/metrics", NULL, NULL, &r));
	assert_int_equal(r.status, 200);
	free(r.body);
	json_decref(call("GET", "/metrics", NULL, NULL, &r));
	assert_int_equal(r.status, 200);
	static const struct {
		const char *series;
		long n;
	} counted[] = {
	    {"csa_http_requests_total{route=\"prometheus\",status=\"2xx\"}", 1},
	    {"csa_http_requests_total{route=\"none\",status=\"4xx\"}", 6},
	    {"csa_http_requests_total{route=\"events\",status=\"4xx\"}", 1},
	    {"csa_http_requests_total{route=\"hook_email\",status=\"4xx\"}", 2},
	    {"csa_http_requests_total{route=\"hook_trello_head\",status=\"2xx\"}", 1},
	    {"csa_http_request_seconds_count{route=\"hook_email\"}", 2},
	};
	for (size_t i = 0; i < sizeof(counted) / sizeof(counted[0]); i++) {
		long n = series(r.body, counted[i].series);
		if (n != counted[i].n)
			fail_msg("%s is %ld, expected %ld", counted[i].series, n, counted[i].n);
	}
	free(r.body);
}

/* `csa token create` and `revoke` while the server runs take effect at
 * the next request; a tokens file that cannot be read lets no one in. */
static void tokens_created_while_serving(void **state)
{
	(void)state;
	struct t_resp r;
	json_decref(call("GET", "/api/phase", viewer, NULL, &r));
	assert_int_equal(r.status, 200);
	free(r.body);
	char *tok, id[CSA_TOKEN_ID_LEN];
	struct csa_err err = {0};
	assert_int_equal(csa_token_create(dir, CSA_ROLE_VIEWER, "late", &tok, id, &err), 0);
	json_decref(call("GET", "/api/phase", tok, NULL, &r));
	assert_int_equal(r.status, 200);
	free(r.body);
	assert_int_equal(csa_token_revoke(dir, id, &err), 0);
	json_decref(call("GET", "/api/phase", tok, NULL, &r));
	assert_int_equal(r.status, 401);
	free(r.body);
	/* listing shows no digests */
	json_t *t;
	assert_int_equal(csa_tokens_load(dir, &t, &err), 0);
	assert_true(json_array_size(json_object_get(t, "tokens")) >= 3);
	assert_null(json_object_get(json_array_get(json_object_get(t, "tokens"), 0), "sha256"));
	json_decref(t);
	/* a broken tokens.json: 500 naming the file, for every token */
	char path[4096], *saved;
	size_t len;
	snprintf(path, sizeof(path), "%s/tokens.json", dir);
	assert_int_equal(csa_fs_read_all(path, 1 << 20, &saved, &len, NULL), 0);
	t_write(path, "{\"tokens\": [");
	json_t *j = call("GET", "/api/phase", viewer, NULL, &r);
	assert_int_equal(r.status, 500);
	assert_non_null(strstr(csa_json_str(j, "detail"), "tokens.json"));
	json_decref(j);
	free(r.body);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(saved, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	free(saved);
	json_decref(call("GET", "/api/phase", viewer, NULL, &r));
	assert_int_equal(r.status, 200);
	free(r.body);
	free(tok);
}

static void tickets_messages_reviews(void **state)
{
	(void)state;
	struct t_resp r;
	json_t *j = call("POST", "/api/tickets", agent,
	                 "{\"ticket_id\": \"S-1\", \"client_name\": \"Ann\", \"messages\": "
	                 "[{\"content\": \"<script>x</script> cannot log in\"}]}",
	                 &r);
	assert_int_equal(r.status, 201);
	/* no models in this workspace: a human takes over, nothing is lost */
	assert_true(json_is_true(json_object_get(j, "human_intervention_required")));
	json_decref(j);
	free(r.body);
	j = call("GET", "/api/tickets/S-1", viewer, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(
	    csa_json_str(json_array_get(json_object_get(j, "unified_timeline"), 0), "content"),
	    "<script>x</script> cannot log in");
	json_decref(j);
	free(r.body);
	j = call("POST", "/api/tickets/S-1/messages", agent,
	         "{\"side\": \"internal\", \"message\": {\"content\": \"checking\", "
	         "\"message_id\": \"mm1\"}}",
	         &r);
	assert_int_equal(r.status, 201);
	json_decref(j);
	free(r.body);
	j = call("POST", "/api/tickets/S-1/messages", agent,
	         "{\"side\": \"internal\", \"message\": {\"content\": \"checking\", "
	         "\"message_id\": \"mm1\"}}",
	         &r);
	assert_int_equal(r.status, 200);
	assert_true(json_is_true(json_object_get(j, "duplicate")));
	json_decref(j);
	free(r.body);
	j = call("GET", "/api/tickets?status=active&limit=10&count=1", viewer, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(csa_json_int(j, "total", 0), 1);
	json_decref(j);
	free(r.body);
	j = call("GET", "/api/tickets/nope", viewer, NULL, &r);
	assert_int_equal(r.status, 404);
	assert_string_equal(csa_json_str(j, "error"), "not_found");
	json_decref(j);
	free(r.body);
	j = call("POST", "/api/tickets", agent, "{\"ticket_id\": \"S-1\"}", &r);
	assert_int_equal(r.status, 409);
	json_decref(j);
	free(r.body);
	j = call("GET", "/api/reviews", viewer, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_true(json_is_array(json_object_get(j, "tasks")));
	long open = 0;
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(j, "tasks"), i, t) open +=
	    strcmp(csa_json_str(t, "status"), "done") != 0;
	json_decref(j);
	free(r.body);
	/* /metrics has the controller's counters, as the API sees them */
	json_decref(call("GET", "/metrics", NULL, NULL, &r));
	assert_int_equal(r.status, 200);
	assert_int_equal(series(r.body, "csa_review_open_tasks"), open);
	assert_true(series(r.body, "csa_automation_decisions") >= open);
	assert_int_equal(series(r.body, "csa_automation_reviews"), 0);
	assert_true(series(r.body, "csa_alerts_open") >= 0);
	free(r.body);
	j = call("GET", "/api/metrics", viewer, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(csa_json_str(j, "phase"), "PHASE_1");
	assert_non_null(json_object_get(j, "gates"));
	json_decref(j);
	free(r.body);
	j = call("GET", "/api/audit/S-1", viewer, NULL, &r);
	assert_int_equal(r.status, 200);
	json_decref(j);
	free(r.body);
}

static void auth_roles_limits_errors(void **state)
{
	(void)state;
	struct t_resp r;
	json_t *j = call("GET", "/api/tickets", NULL, NULL, &r);
	assert_int_equal(r.status, 401);
	json_decref(j);
	free(r.body);
	j = call("GET", "/api/tickets", "csa_wrong", NULL, &r);
	assert_int_equal(r.status, 401);
	json_decref(j);
	free(r.body);
	j = call("POST", "/api/tickets", viewer, "{}", &r);
	assert_int_equal(r.status, 403);
	assert_non_null(strstr(csa_json_str(j, "detail"), "agent role"));
	json_decref(j);
	free(r.body);
	j = call("POST", "/api/phase/advance", agent, "{}", &r);
	assert_int_equal(r.status, 403);
	json_decref(j);
	free(r.body);
	j = call("POST", "/api/tickets", agent, "{\n\"ticket_id\": \"B\",\n oops}", &r);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(csa_json_str(j, "detail"), "line 3"));
	json_decref(j);
	free(r.body);
	char deep[200] = "";
	for (int i = 0; i < 40; i++)
		strcat(deep, "[");
	j = call("POST", "/api/tickets", agent, deep, &r);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(csa_json_str(j, "detail"), "nested"));
	json_decref(j);
	free(r.body);
	char *big = malloc(70 * 1024);
	memset(big, 'a', 70 * 1024 - 1);
	big[70 * 1024 - 1] = '\0';
	j = call("POST", "/api/tickets", agent, big, &r);
	assert_int_equal(r.status, 413);
	free(big);
	json_decref(j);
	free(r.body);
	/* one path segment that is not an id: refused as such, whatever it
	 * would mean decoded */
	static const char *const bad_ids[] = {"/api/tickets/..%2Fetc", "/api/tickets/a%2Fb",
	                                      "/api/tickets/%41", "/api/audit/a.b"};
	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		j = call("GET", bad_ids[i], viewer, NULL, &r);
		if (r.status != 400)
			fail_msg("%s: %ld %s", bad_ids[i], r.status, r.body);
		assert_string_equal(csa_json_str(j, "error"), "bad_request");
		assert_non_null(strstr(csa_json_str(j, "detail"), "invalid ticket id"));
		json_decref(j);
		free(r.body);
	}
	/* limit and count are whole numbers in range */
	static const char *const bad_q[] = {
	    "/api/tickets?limit=abc", "/api/tickets?limit=10x",
	    "/api/tickets?limit=0",   "/api/tickets?limit=201",
	    "/api/tickets?count=-1",  "/api/tickets?count=99999999999999999999"};
	for (size_t i = 0; i < sizeof(bad_q) / sizeof(bad_q[0]); i++) {
		j = call("GET", bad_q[i], admin, NULL, &r);
		if (r.status != 400 || !strstr(csa_json_str(j, "detail"), "whole number"))
			fail_msg("%s: %ld %s", bad_q[i], r.status, r.body);
		json_decref(j);
		free(r.body);
	}
	j = call("DELETE", "/api/tickets", admin, NULL, &r);
	assert_int_equal(r.status, 405);
	json_decref(j);
	free(r.body);
	/* 5 per second with a burst of 10 for this token: the 12th is refused */
	long last = 0;
	for (int i = 0; i < 12; i++) {
		j = call("GET", "/api/phase", viewer, NULL, &r);
		last = r.status;
		json_decref(j);
		if (last == 429)
			assert_non_null(strstr(r.headers, "Retry-After"));
		free(r.body);
		if (last == 429)
			break;
	}
	assert_int_equal(last, 429);
}

static void pages_health_metrics(void **state)
{
	(void)state;
	struct t_resp r;
	json_t *j = call("GET", "/healthz", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	json_decref(j);
	free(r.body);
	j = call("GET", "/readyz", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	/* a single host leads every role, as it always did */
	json_t *leads = json_object_get(j, "leads");
	assert_true(json_is_true(json_object_get(leads, "tick")));
	assert_true(json_is_true(json_object_get(leads, "outbox")));
	json_decref(j);
	free(r.body);
	json_decref(call("GET", "/metrics", NULL, NULL, &r));
	assert_int_equal(series(r.body, "csa_leader{role=\"tick\"}"), 1);
	assert_int_equal(series(r.body, "csa_leader{role=\"outbox\"}"), 1);
	assert_int_equal(series(r.body, "csa_leader_epoch{role=\"tick\"}"), 0);
	free(r.body);
	json_decref(call("GET", "/", NULL, NULL, &r));
	assert_int_equal(r.status, 200);
	assert_non_null(
	    strstr(r.headers, "Content-Security-Policy: default-src 'self'; script-src 'self'"));
	assert_non_null(strstr(r.body, "<title>csa"));
	free(r.body);
	/* the dashboard's scripts, one per page, each a route of its own */
	for (const char *const *js = (const char *const[]){"/app.js", "/inbox.js", "/ticket.js", "/phase.js", "/knowledge.js", NULL};
	     *js; js++) {
		json_decref(call("GET", *js, NULL, NULL, &r));
		assert_int_equal(r.status, 200);
		assert_non_null(strstr(r.headers, "text/javascript"));
		assert_non_null(strstr(r.headers, "Content-Security-Policy: default-src 'self'"));
		free(r.body);
	}
	j = call("GET", "/../../etc/passwd", NULL, NULL, &r);
	assert_int_equal(r.status, 404);
	json_decref(j);
	free(r.body);
	json_decref(call("GET", "/metrics", NULL, NULL, &r));
	assert_int_equal(r.status, 200);
	assert_non_null(
	    strstr(r.body, "csa_http_requests_total{route=\"healthz\",status=\"2xx\"}"));
	assert_non_null(strstr(r.body, "csa_http_request_seconds_bucket"));
	free(r.body);
}

static void channel_hooks(void **state)
{
	(void)state;
	struct t_resp r;
	/* e-mail from an inbound relay: a new ticket */
	const char *mail1 = "{\"from\": \"ada@example.com\", \"subject\": \"Invoice\", \"text\": "
	                    "\"I was charged twice\", \"message_id\": \"<m1@example.com>\"}";
	json_t *j =
	    call_h("POST", "/hooks/email", NULL, mail1, "X-CSA-Hook-Token: hooktok", NULL, &r);
	assert_int_equal(r.status, 202);
	char ticket[80];
	snprintf(ticket, sizeof(ticket), "%s", csa_json_str(j, "ticket_id"));
	json_decref(j);
	free(r.body);
	/* the relay retries: not stored twice */
	j = call_h("POST", "/hooks/email", NULL, mail1, "X-CSA-Hook-Token: hooktok", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_true(json_is_true(json_object_get(j, "duplicate")));
	assert_string_equal(csa_json_str(j, "ticket_id"), ticket);
	json_decref(j);
	free(r.body);
	/* a reply finds the same ticket through In-Reply-To */
	j = call_h("POST", "/hooks/email", NULL,
	           "{\"from\": \"ada@example.com\", \"subject\": \"Re: Invoice\", \"text\": \"any "
	           "news?\", "
	           "\"message_id\": \"<m2@example.com>\", \"in_reply_to\": \"<m1@example.com>\"}",
	           "X-CSA-Hook-Token: hooktok", NULL, &r);
	assert_int_equal(r.status, 202);
	assert_string_equal(csa_json_str(j, "ticket_id"), ticket);
	json_decref(j);
	free(r.body);
	/* wrong and missing hook tokens */
	j = call_h("POST", "/hooks/email", NULL, mail1, "X-CSA-Hook-Token: nope", NULL, &r);
	assert_int_equal(r.status, 401);
	json_decref(j);
	free(r.body);
	j = call("POST", "/hooks/email", NULL, mail1, &r);
	assert_int_equal(r.status, 401);
	json_decref(j);
	free(r.body);
	/* Slack: signed, internal note on the ticket named in the text */
	char body[512], base[700], sig[100], tsh[64], sigh[128];
	snprintf(body, sizeof(body),
	         "{\"type\": \"event_callback\", \"event\": {\"type\": \"message\", \"channel\": "
	         "\"C1\", "
	         "\"ts\": \"1.2\", \"user\": \"U7\", \"text\": \"[%s] refund approved\"}}",
	         ticket);
	long now = (long)time(NULL);
	int n = snprintf(base, sizeof(base), "v0:%ld:%s", now, body);
	unsigned char mac[32];
	unsigned int l;
	HMAC(EVP_sha256(), "slacksecret", 11, (unsigned char *)base, (size_t)n, mac, &l);
	strcpy(sig, "v0=");
	for (int i = 0; i < 32; i++)
		snprintf(sig + 3 + 2 * i, 3, "%02x", mac[i]);
	snprintf(tsh, sizeof(tsh), "X-Slack-Request-Timestamp: %ld", now);
	snprintf(sigh, sizeof(sigh), "X-Slack-Signature: %s", sig);
	j = call_h("POST", "/hooks/slack", NULL, body, tsh, sigh, &r);
	assert_int_equal(r.status, 202);
	json_decref(j);
	free(r.body);
	/* stale Slack timestamp */
	snprintf(tsh, sizeof(tsh), "X-Slack-Request-Timestamp: %ld", now - 600);
	j = call_h("POST", "/hooks/slack", NULL, body, tsh, sigh, &r);
	assert_int_equal(r.status, 401);
	json_decref(j);
	free(r.body);
	char path[160];
	snprintf(path, sizeof(path), "/api/tickets/%s", ticket);
	j = call("GET", path, admin, NULL, &r);
	assert_int_equal(r.status, 200);
	json_t *tl = json_object_get(j, "unified_timeline");
	int ext = 0, internal_note = 0;
	size_t i;
	json_t *m;
	json_array_foreach(tl, i, m)
	{
		ext += strcmp(csa_json_str(m, "side"), "external") == 0;
		internal_note |= strstr(csa_json_str(m, "content"), "refund approved") != NULL;
	}
	assert_int_equal(ext, 2);
	assert_true(internal_note);
	json_decref(j);
	free(r.body);
}

struct stream {
	char buf[8192];
	size_t n;
};

static size_t on_stream(char *p, size_t sz, size_t n, void *ud)
{
	struct stream *st = ud;
	size_t k = sz * n;
	if (st->n + k < sizeof(st->buf)) {
		memcpy(st->buf + st->n, p, k);
		st->n += k;
		st->buf[st->n] = '\0';
	}
	/* stop once the ticket event is in */
	return strstr(st->buf, "SSE-1") ? 0 : k;
}

static void *listen_events(void *arg)
{
	struct stream *st = arg;
	CURL *c = curl_easy_init();
	char url[256], auth[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/api/events", port);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", admin);
	struct curl_slist *h = curl_slist_append(NULL, auth);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_stream);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, st);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	curl_easy_perform(c);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return NULL;
}

static void server_sent_events(void **state)
{
	(void)state;
	static struct stream st;
	pthread_t th;
	pthread_create(&th, NULL, listen_events, &st);
	/* wait until the stream is open */
	for (int i = 0; i < 200 && !strstr(st.buf, ": connected"); i++)
		usleep(10000);
	assert_non_null(strstr(st.buf, ": connected"));
	struct t_resp r;
	json_t *j =
	    call("POST", "/api/tickets", admin,
	         "{\"ticket_id\": \"SSE-1\", \"messages\": [{\"content\": \"hello\"}]}", &r);
	assert_int_equal(r.status, 201);
	json_decref(j);
	free(r.body);
	pthread_join(th, NULL);
	assert_non_null(strstr(st.buf, "event: ticket"));
	assert_non_null(strstr(st.buf, "\"ticket_id\":\"SSE-1\""));
	/* without a token there is no stream */
	j = call("GET", "/api/events", NULL, NULL, &r);
	assert_int_equal(r.status, 401);
	json_decref(j);
	free(r.body);
}

/* Count open alerts of one type and scope. */
static int open_alerts(const char *type, const char *scope)
{
	struct t_resp r;
	json_t *j = call("GET", "/api/alerts", mon_viewer, NULL, &r);
	assert_int_equal(r.status, 200);
	int n = 0;
	size_t i;
	json_t *a;
	json_array_foreach(json_object_get(j, "alerts"), i, a) n +=
	    strcmp(csa_json_str(a, "type"), type) == 0 &&
	    strcmp(csa_json_str(a, "scope"), scope) == 0;
	json_decref(j);
	free(r.body);
	return n;
}

static json_t *mesh_check(void)
{
	struct t_resp r;
	json_t *j = call("POST", "/api/mesh/check", mon_admin, "{}", &r);
	assert_int_equal(r.status, 200);
	free(r.body);
	return j;
}

static void *create_tickets(void *arg)
{
	(void)arg;
	for (int i = 0; i < 10; i++) {
		char body[160];
		struct t_resp r;
		snprintf(body, sizeof(body),
		         "{\"ticket_id\": \"MON-%d\", \"messages\": [{\"content\": \"hi %d\"}]}", i,
		         i);
		json_decref(call("POST", "/api/tickets", writer, body, &r));
		free(r.body);
		assert_int_equal(r.status, 201);
	}
	return NULL;
}

/* The file monitor (spec §8.1): drift and broken documents raise alerts,
 * a repaired mesh closes them, tickets being written are not mistaken for
 * broken ones. */
static void file_monitor(void **state)
{
	(void)state;
	struct t_resp r;
	json_t *j = call("POST", "/api/mesh/check", mon_viewer, "{}", &r);
	assert_int_equal(r.status, 403);
	json_decref(j);
	free(r.body);
	/* checks while tickets are being created find nothing wrong */
	pthread_t th;
	pthread_create(&th, NULL, create_tickets, NULL);
	for (int i = 0; i < 5; i++) {
		j = mesh_check();
		assert_true(json_is_true(json_object_get(j, "ok")));
		json_decref(j);
	}
	pthread_join(th, NULL);
	j = mesh_check();
	assert_true(json_is_true(json_object_get(j, "ok")));
	assert_true(csa_json_int(j, "tickets", 0) >= 10);
	json_decref(j);

	/* drift: the conversation file moves an hour past the last sync */
	char epath[4096], orphan[4096], foreign[4096];
	snprintf(epath, sizeof(epath), "%s/Tickets/T_ext/E_MON-1.json", dir);
	snprintf(orphan, sizeof(orphan), "%s/Tickets/T_int/I_LOST-1.json", dir);
	snprintf(foreign, sizeof(foreign), "%s/Tickets/tickets/notes.txt", dir);
	json_t *e = json_load_file(epath, 0, NULL);
	assert_non_null(e);
	json_t *orig = json_deep_copy(e);
	char ts[CSA_TS_LEN];
	json_object_set_new(e, "last_updated",
	                    json_string(csa_ts_format(csa_now_ms() + 3600 * 1000, ts)));
	assert_int_equal(json_dump_file(e, epath, JSON_COMPACT), 0);
	json_decref(e);
	t_write(orphan, "{\"ticket_id\": \"LOST-1\"}");
	t_write(foreign, "left here by hand");
	j = mesh_check();
	assert_false(json_is_true(json_object_get(j, "ok")));
	json_t *counts = json_object_get(j, "counts");
	assert_int_equal(csa_json_int(counts, "sync_drift", 0), 1);
	assert_int_equal(csa_json_int(counts, "orphan", 0), 1);
	assert_int_equal(csa_json_int(counts, "foreign_file", 0), 1);
	json_decref(j);
	assert_int_equal(open_alerts("MESH_DRIFT", "mesh/sync_drift"), 1);
	assert_int_equal(open_alerts("MESH_INTEGRITY", "mesh/orphan"), 1);
	assert_int_equal(open_alerts("MESH_INTEGRITY", "mesh/foreign_file"), 1);
	/* a second check does not raise the same alerts again */
	json_decref(mesh_check());
	assert_int_equal(open_alerts("MESH_DRIFT", "mesh/sync_drift"), 1);
	j = call("GET", "/metrics", NULL, NULL, &r);
	assert_non_null(strstr(r.body, "csa_mesh_problems{problem=\"orphan\"} 1"));
	free(r.body);

	/* repaired by hand: the next check closes every alert */
	assert_int_equal(json_dump_file(orig, epath, JSON_COMPACT), 0);
	json_decref(orig);
	assert_int_equal(unlink(orphan), 0);
	assert_int_equal(unlink(foreign), 0);
	j = mesh_check();
	assert_true(json_is_true(json_object_get(j, "ok")));
	json_decref(j);
	assert_int_equal(open_alerts("MESH_DRIFT", "mesh/sync_drift"), 0);
	assert_int_equal(open_alerts("MESH_INTEGRITY", "mesh/orphan"), 0);
	assert_int_equal(open_alerts("MESH_INTEGRITY", "mesh/foreign_file"), 0);
	j = call("GET", "/api/mesh", mon_viewer, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_true(csa_json_int(j, "checks", 0) >= 9);
	assert_true(json_is_true(json_object_get(json_object_get(j, "last"), "ok")));
	json_decref(j);
	free(r.body);
}

/* The server runs the controller's tick by itself: autonomous decisions
 * that reviews found wrong too often raise ACCURACY_DEGRADATION with no
 * one running a command. */
static void controller_ticks_in_the_server(void **state)
{
	(void)state;
	assert_int_equal(t_reviewed_autonomous(dir, "priority", "Q", 100, 60), 0);
	int seen = 0;
	/* polled within the token's rate limit (5 requests/s here) */
	for (int i = 0; i < 60 && !seen; i++) {
		usleep(300000);
		seen = open_alerts("ACCURACY_DEGRADATION", "priority");
	}
	assert_int_equal(seen, 1);
}

/* With automation.advance_workspace the server's tick moves the workspace
 * phase when its gate passes (here: 120 PHASE_1 decisions, every one
 * reviewed and right); without it only a person does. */
static void the_tick_advances_the_workspace_when_told(void **state)
{
	(void)state;
	char path[4096];
	snprintf(path, sizeof(path), "%s/automation.db", dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
	for (int i = 0; i < 120; i++) {
		char *sql = sqlite3_mprintf(
		    "INSERT INTO decisions(id, ticket_id, type, segment, phase, value, confidence,"
		    " threshold, autonomous, critical, created_ms, final, correct, reviewed_ms,"
		    " decision_ms) VALUES('W-%d#priority', 'W-%d', 'priority', 'Q', 1, 'A', 0.9,"
		    " 0.9, 0, 0, %d, 'A', 1, %d, 60000)",
		    i, i, 1000 + i, 2000 + i);
		assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
		sqlite3_free(sql);
	}
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	struct t_resp r;
	usleep(600000); /* three ticks without the setting: still PHASE_1 */
	json_t *j = call("GET", "/api/phase", viewer, NULL, &r);
	assert_string_equal(csa_json_str(j, "phase"), "PHASE_1");
	json_decref(j);
	free(r.body);
	struct csa_err err = {0};
	json_t *over = json_pack("{s:{s:b}}", "automation", "advance_workspace", 1);
	assert_int_equal(csa_ws_config_override(ws, over, &err), 0);
	json_decref(over);
	int advanced = 0;
	for (int i = 0; i < 50 && !advanced; i++) {
		usleep(200000);
		j = call("GET", "/api/phase", viewer, NULL, &r);
		advanced = csa_json_str(j, "phase") && strcmp(csa_json_str(j, "phase"), "PHASE_2") == 0;
		json_decref(j);
		free(r.body);
	}
	assert_true(advanced);
}

/* csa demo-team works the queue through the API: with accuracy 1 every
 * open task is decided with the value the generator knew was right, and
 * the queue is empty after it. */
static void demo_team_works_the_queue(void **state)
{
	(void)state;
	char stream[4200], answers[4200], history[4200];
	snprintf(stream, sizeof(stream), "%s/stream.jsonl", dir);
	snprintf(answers, sizeof(answers), "%s/answers.jsonl", dir);
	snprintf(history, sizeof(history), "%s/history.jsonl", dir);
	/* models, so that the pipeline proposes decisions for people to review
	 * (imported with the server stopped: it reads its models at start) */
	assert_int_equal(t_csa(NULL, NULL, NULL, "demo-data --tickets 200 --seed 3 --out '%s'",
	                       history),
	                 0);
	csa_server_stop(srv);
	csa_ws_close(ws);
	assert_int_equal(t_csa(NULL, NULL, NULL, "--dir '%s' import '%s'", dir, history), 0);
	struct csa_err e = {0};
	assert_int_equal(csa_ws_open(dir, &ws, &e), 0);
	struct csa_server_opts o = {"127.0.0.1", 0, 2, CSA_SOURCE_DIR "/web", 5};
	if (csa_server_start(ws, &o, &srv, &e))
		fail_msg("server: %s", e.msg);
	port = csa_server_port(srv);
	assert_int_equal(t_csa(NULL, NULL, NULL,
	                       "demo-data --tickets 3 --seed 4 --stream --out '%s' --answers '%s'",
	                       stream, answers),
	                 0);
	FILE *f = fopen(stream, "r");
	assert_non_null(f);
	char line[8192];
	struct t_resp r;
	while (fgets(line, sizeof(line), f)) {
		json_t *j = call("POST", "/api/tickets", agent, line, &r);
		assert_int_equal(r.status, 201);
		json_decref(j);
		free(r.body);
	}
	fclose(f);
	json_t *j = call("GET", "/api/reviews?status=open", viewer, NULL, &r);
	size_t open = json_array_size(json_object_get(j, "tasks"));
	json_decref(j);
	free(r.body);
	if (open < 3)
		fail_msg("%zu open review tasks after 3 tickets", open);
	setenv("CSA_TOKEN", agent, 1);
	char *out = NULL, *err = NULL;
	int rc = t_csa(NULL, &out, &err,
	               "demo-team --url http://127.0.0.1:%u --answers '%s' --accuracy 1 --pace 0 "
	               "--until-empty",
	               (unsigned)port, answers);
	unsetenv("CSA_TOKEN");
	if (rc != 0)
		fail_msg("demo-team: %s", err);
	json_t *rep = json_loads(out, 0, NULL);
	assert_int_equal(csa_json_int(rep, "decided", -1), (long long)open);
	assert_int_equal(csa_json_int(rep, "right", -1), (long long)open);
	json_decref(rep);
	free(out);
	free(err);
	j = call("GET", "/api/reviews?status=open", viewer, NULL, &r);
	assert_int_equal(json_array_size(json_object_get(j, "tasks")), 0);
	json_decref(j);
	free(r.body);
}

/* GET /api/metrics/trend: the decision log by hour (or day), each bucket
 * with its counts and accuracy; a bucket or span outside the set is 400. */
static void metrics_trend_over_http(void **state)
{
	(void)state;
	struct t_resp r;
	json_t *j = call("POST", "/api/tickets", agent,
	                 "{\"ticket_id\": \"TR-1\", \"messages\": [{\"content\": \"cannot log in\"}]}",
	                 &r);
	json_decref(j);
	free(r.body);
	char path[4096];
	snprintf(path, sizeof(path), "%s/automation.db", dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	long long now = (long long)csa_now_ms();
	for (int i = 0; i < 10; i++) {
		char *sql = sqlite3_mprintf(
		    "INSERT INTO decisions(id, ticket_id, type, segment, phase, value, confidence,"
		    " threshold, autonomous, critical, created_ms, final, correct, reviewed_ms)"
		    " VALUES('TR-%d#priority', 'TR-%d', 'priority', 'Q', 3, 'A', 0.9, 0.9, %d, 0,"
		    " %lld, 'A', %d, %lld)",
		    i, i, i < 5, now - 3600000LL * (i % 2), i < 8, now);
		assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
		sqlite3_free(sql);
	}
	sqlite3_close(db);
	j = call("GET", "/api/metrics/trend?bucket=hour", viewer, NULL, &r);
	assert_int_equal(r.status, 200);
	json_t *series = json_object_get(j, "series");
	assert_true(json_array_size(series) >= 2); /* this hour and the last */
	long long n = 0, rev = 0;
	size_t i;
	json_t *b;
	json_array_foreach(series, i, b)
	{
		n += csa_json_int(b, "decisions", 0);
		rev += csa_json_int(b, "reviewed", 0);
		assert_non_null(csa_json_str(b, "start"));
	}
	assert_true(n >= 10 && rev >= 10);
	json_decref(j);
	free(r.body);
	static const char *const bad[] = {"/api/metrics/trend?bucket=week",
	                                  "/api/metrics/trend?days=0",
	                                  "/api/metrics/trend?days=x"};
	for (size_t k = 0; k < 3; k++) {
		j = call("GET", bad[k], viewer, NULL, &r);
		if (r.status != 400)
			fail_msg("%s: %d, not 400", bad[k], r.status);
		json_decref(j);
		free(r.body);
	}
}

/* GET /api/kb/gaps and POST /api/kb/articles: the gaps as the report of
 * flow/gaps.h; an article accepted by an admin is in kb/ and recorded in
 * the ledger; an agent may not accept one; a body that is not an article
 * is refused naming what is wrong, and nothing is written. */
static void knowledge_gaps_over_http(void **state)
{
	(void)state;
	struct t_resp r;
	json_t *j = call("GET", "/api/kb/gaps", viewer, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_true(json_is_array(json_object_get(j, "groups")));
	assert_non_null(json_object_get(j, "weak"));
	json_decref(j);
	free(r.body);
	j = call("GET", "/api/kb/gaps?days=0", viewer, NULL, &r);
	assert_int_equal(r.status, 400);
	json_decref(j);
	free(r.body);
	static const char article[] =
	    "{\"text\": \"id: late-parcel\\ntitle: A parcel that is late\\ncategories: "
	    "GENERAL_SUPPORT\\nstrategy: TEMPLATE_RESPONSE\\n---\\nTrack it with the "
	    "number in the e-mail.\\n\"}";
	j = call("POST", "/api/kb/articles", agent, article, &r);
	assert_int_equal(r.status, 403);
	json_decref(j);
	free(r.body);
	j = call("POST", "/api/kb/articles", admin, "{\"text\": \"no header here\"}", &r);
	assert_int_equal(r.status, 400);
	json_decref(j);
	free(r.body);
	char path[4200];
	snprintf(path, sizeof(path), "%s/kb/late-parcel.md", dir);
	assert_int_not_equal(access(path, F_OK), 0);
	j = call("POST", "/api/kb/articles", admin, article, &r);
	if (r.status != 200)
		fail_msg("accept: %d %s", r.status, r.body);
	assert_string_equal(csa_json_str(j, "document"), "kb/late-parcel.md");
	assert_int_equal(csa_json_int(j, "version", 0), 1);
	json_decref(j);
	free(r.body);
	assert_int_equal(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/audit/ledger.jsonl", dir);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char line[8192];
	int found = 0;
	while (fgets(line, sizeof(line), f))
		found |= strstr(line, "\"kb_article\"") && strstr(line, "late-parcel");
	fclose(f);
	assert_true(found);
}

/* Make a ticket's files look a minute old, so the server may cache it. */
static void age_ticket(const char *id)
{
	static const char *const fmt[3] = {"%s/Tickets/T_ext/E_%s.json",
	                                   "%s/Tickets/T_int/I_%s.json",
	                                   "%s/Tickets/tickets/T_%s.json"};
	for (int k = 0; k < 3; k++) {
		char path[4096];
		snprintf(path, sizeof(path), fmt[k], dir, id);
		t_age(path, 60);
	}
}

static size_t messages_of(const char *id, const char *token)
{
	char path[128];
	struct t_resp r;
	snprintf(path, sizeof(path), "/api/tickets/%s", id);
	json_t *j = call("GET", path, token, NULL, &r);
	assert_int_equal(r.status, 200);
	size_t n = json_array_size(json_object_get(j, "unified_timeline"));
	json_decref(j);
	free(r.body);
	return n;
}

/* GET answers from a cache of rendered tickets, never a stale one: a new
 * message (files renamed into place) or an edit in place shows at once. */
static void ticket_reads_are_cached_until_a_change(void **state)
{
	(void)state;
	struct t_resp r;
	json_t *j = call("POST", "/api/tickets", cache_agent,
	                 "{\"ticket_id\": \"C-1\", \"messages\": [{\"content\": \"first\"}]}", &r);
	assert_int_equal(r.status, 201);
	json_decref(j);
	free(r.body);
	age_ticket("C-1");
	size_t n = messages_of("C-1", cache_agent);
	assert_int_equal(messages_of("C-1", cache_agent), n); /* from the cache */
	j = call("POST", "/api/tickets/C-1/messages", cache_agent,
	         "{\"side\": \"internal\", \"message\": {\"content\": \"second\"}}", &r);
	assert_int_equal(r.status, 201);
	json_decref(j);
	free(r.body);
	age_ticket("C-1");
	assert_int_equal(messages_of("C-1", cache_agent), n + 1);
	/* an edit in place by hand, aged too: still seen */
	char path[4096];
	snprintf(path, sizeof(path), "%s/Tickets/T_int/I_C-1.json", dir);
	json_t *doc = json_load_file(path, 0, NULL);
	assert_non_null(doc);
	json_array_clear(json_object_get(doc, "messages"));
	assert_int_equal(json_dump_file(doc, path, JSON_COMPACT), 0);
	json_decref(doc);
	age_ticket("C-1");
	assert_true(messages_of("C-1", cache_agent) < n + 1);
}

/* A ticket in the store (imported history) with an open review task of
 * its priority decision, as the controller makes them; the task's id. */
static long long add_review_task(const char *tid)
{
	struct csa_err err = {0};
	json_t *h = json_pack(
	    "{s:s, s:s, s:{s:s, s:s, s:s}, s:[{s:s, s:s}], s:{s:s, s:s, s:s, s:s}}", "ticket_id",
	    tid, "created_at", "2026-01-01T10:00:00.000Z", "customer", "client_name", "Ann Lee",
	    "priority_level", "HIGH", "subscription_tier", "STANDARD", "messages", "sender",
	    "customer", "content", "The invoice is wrong and the app crashes.", "gold", "category",
	    "BILLING_INQUIRY", "priority", "HIGH", "strategy", "ESCALATE_TO_HUMAN",
	    "escalation_path", "URGENT");
	struct csa_ticket tk;
	const struct csa_config *cfg = csa_ws_config(ws);
	int rc = csa_import_ticket(cfg, h, 1, &tk, &err);
	csa_config_unref(cfg);
	if (rc)
		fail_msg("import: %s", err.msg);
	assert_int_equal(csa_store_commit(ws->store, &tk, CSA_DOC_ALL, &err), 0);
	csa_ticket_release(&tk);
	json_decref(h);
	char path[4096];
	snprintf(path, sizeof(path), "%s/automation.db", dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	char *sql = sqlite3_mprintf(
	    "INSERT INTO decisions(id, ticket_id, type, segment, phase, value, confidence, "
	    "threshold, autonomous, critical, created_ms, shown) "
	    "VALUES('%q:classifier:0#priority', "
	    "'%q', 'priority', 'BILLING_INQUIRY', 1, 'MEDIUM', 0.6, 0.98, 0, 0, 1, 1);"
	    "INSERT INTO tasks(decision_id, ticket_id, type, segment, kind, shown, suggestion, "
	    "confidence, score, created_ms, due_ms) VALUES('%q:classifier:0#priority', '%q', "
	    "'priority', 'BILLING_INQUIRY', 'decide', 1, 'MEDIUM', 0.6, 1, 1, 1)",
	    tid, tid, tid, tid);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_free(sql);
	long long id = (long long)sqlite3_last_insert_rowid(db);
	sqlite3_close(db);
	return id;
}

struct decider {
	pthread_barrier_t *go;
	long long task;
	char value[64];
	long status;
	char body[2048];
};

static void *decide(void *arg)
{
	struct decider *d = arg;
	char path[64], body[160];
	snprintf(path, sizeof(path), "/api/reviews/%lld/decide", d->task);
	snprintf(body, sizeof(body), "{\"value\": \"%s\", \"decision_ms\": 1000}", d->value);
	pthread_barrier_wait(d->go);
	struct t_resp r;
	json_decref(call("POST", path, agent, body, &r));
	d->status = r.status;
	snprintf(d->body, sizeof(d->body), "%s", r.body ? r.body : "");
	free(r.body);
	return NULL;
}

struct marked_stream {
	char buf[65536];
	size_t n;
	const char *until; /* stop once this is in */
};

static size_t on_marked(char *p, size_t sz, size_t n, void *ud)
{
	struct marked_stream *st = ud;
	size_t k = sz * n;
	if (st->n + k < sizeof(st->buf)) {
		memcpy(st->buf + st->n, p, k);
		st->n += k;
		st->buf[st->n] = '\0';
	}
	return strstr(st->buf, st->until) ? 0 : k;
}

static void *listen_until(void *arg)
{
	struct marked_stream *st = arg;
	CURL *c = curl_easy_init();
	char url[256], auth[128];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/api/events", port);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", admin);
	struct curl_slist *h = curl_slist_append(NULL, auth);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_marked);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, st);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	curl_easy_perform(c);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return NULL;
}

/* Four reviewers decide the same open task at once with different values:
 * one wins (200), the others get 409 naming the winner's value, and only
 * the winner's decision is published. */
static void concurrent_decisions_one_winner(void **state)
{
	(void)state;
	struct t_resp r;
	json_t *j;
	long long task_id = add_review_task("R-1");
	static const char *const values[4] = {"CRITICAL", "HIGH", "MEDIUM", "LOW"};
	struct decider d[4];
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, 4);
	for (int k = 0; k < 4; k++) {
		memset(&d[k], 0, sizeof(d[k]));
		d[k].go = &go;
		d[k].task = task_id;
		snprintf(d[k].value, sizeof(d[k].value), "%s", values[k]);
	}
	static struct marked_stream st;
	st.until = "END-1";
	pthread_t listener, th[4];
	pthread_create(&listener, NULL, listen_until, &st);
	for (int k = 0; k < 200 && !strstr(st.buf, ": connected"); k++)
		usleep(10000);
	assert_non_null(strstr(st.buf, ": connected"));
	for (int k = 0; k < 4; k++)
		pthread_create(&th[k], NULL, decide, &d[k]);
	for (int k = 0; k < 4; k++)
		pthread_join(th[k], NULL);
	pthread_barrier_destroy(&go);
	/* a ticket event marks the end of the stream; the listener is joined
	 * before any check can end the test */
	j = call("POST", "/api/tickets", admin,
	         "{\"ticket_id\": \"END-1\", \"messages\": [{\"content\": \"done\"}]}", &r);
	json_decref(j);
	free(r.body);
	pthread_join(listener, NULL);
	assert_int_equal(r.status, 201);
	int won = -1, lost = 0;
	for (int k = 0; k < 4; k++) {
		if (d[k].status == 200) {
			if (won >= 0)
				fail_msg(
				    "two winners: '%s' and '%s' (the controller let both decide)",
				    d[won].value, d[k].value);
			won = k;
		} else if (d[k].status == 409) {
			lost++;
		} else {
			fail_msg("decision %d: %ld %s", k, d[k].status, d[k].body);
		}
	}
	assert_true(won >= 0);
	assert_int_equal(lost, 3);
	for (int k = 0; k < 4; k++) {
		if (k == won)
			continue;
		json_t *b = json_loads(d[k].body, 0, NULL);
		json_t *w = json_object_get(b, "winner");
		if (!json_is_object(w))
			fail_msg("409 without the winner: %s", d[k].body);
		assert_string_equal(csa_json_str(b, "error"), "conflict");
		assert_string_equal(csa_json_str(w, "value"), d[won].value);
		assert_string_equal(csa_json_str(w, "status"), "done");
		assert_int_equal(csa_json_int(w, "task_id", 0), d[won].task);
		assert_non_null(csa_json_str(w, "reviewer"));
		json_decref(b);
	}
	int reviews = 0;
	for (const char *p = st.buf; (p = strstr(p, "event: review")); p++)
		reviews++;
	assert_int_equal(reviews, 1);
}

/* POST /api/phase/cap: an admin's, a body that says what it caps, and the
 * cap in GET /api/phase until it is lifted. */
static void phase_caps_over_http(void **state)
{
	(void)state;
	struct t_resp r;
	static const char body[] = "{\"scope\": \"strategy/BILLING_INQUIRY\", \"max_phase\": 2}";
	json_t *j = call("POST", "/api/phase/cap", agent, body, &r);
	assert_int_equal(r.status, 403);
	json_decref(j);
	free(r.body);
	static const char *const bad[] = {"{\"max_phase\": 2}",
	                                  "{\"scope\": \"strategy\", \"max_phase\": 9}",
	                                  "{\"scope\": \"strategy\", \"max_phase\": \"2\"}",
	                                  "{\"scope\": \"nope\", \"max_phase\": 2}"};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		j = call("POST", "/api/phase/cap", admin, bad[k], &r);
		if (r.status != 400)
			fail_msg("%s: %d, not 400", bad[k], r.status);
		json_decref(j);
		free(r.body);
	}
	j = call("POST", "/api/phase/cap", admin, body, &r);
	assert_int_equal(r.status, 200);
	json_decref(j);
	free(r.body);
	j = call("GET", "/api/phase", viewer, NULL, &r);
	assert_int_equal(csa_json_int(json_object_get(j, "caps"), "strategy/BILLING_INQUIRY", 0), 2);
	json_decref(j);
	free(r.body);
	j = call("POST", "/api/phase/cap", admin,
	         "{\"scope\": \"strategy/BILLING_INQUIRY\", \"max_phase\": null}", &r);
	assert_int_equal(r.status, 200);
	json_decref(j);
	free(r.body);
	j = call("GET", "/api/phase", viewer, NULL, &r);
	assert_int_equal(json_object_size(json_object_get(j, "caps")), 0);
	json_decref(j);
	free(r.body);
}

/* The same contracts with the workspace's state in PostgreSQL (g_pg is
 * set while they run). */
static void pg_tokens_contract(void **state)
{
	tokens_contract(state);
}

static void pg_chanmap_contract(void **state)
{
	chanmap_contract(state);
}

/* ---- two nodes on one database --------------------------------------- */

/* The csa serve nodes of the test running, killed by its teardown
 * whatever way it ends (a failed assertion leaves through longjmp). */
static pid_t g_nodes[2];

static int kill_nodes(void **state)
{
	(void)state;
	for (int k = 0; k < 2; k++)
		if (g_nodes[k] > 0) {
			kill(g_nodes[k], SIGKILL);
			waitpid(g_nodes[k], NULL, 0);
			g_nodes[k] = 0;
		}
	return 0;
}

/* A csa serve node on workspace 'd' (its tickets in store.url): its pid,
 * and its port from the line it prints when listening. */
static pid_t start_node(const char *d, unsigned *node_port)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		tpg_after_fork(g_pg);
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execl(CSA_BIN, CSA_BIN, "serve", "--dir", d, "--port", "0", "--bind", "127.0.0.1",
		      (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	FILE *f = fdopen(fds[0], "r");
	char line[256] = "";
	if (!f || !fgets(line, sizeof(line), f))
		fail_msg("csa serve on '%s' printed nothing", d);
	fclose(f);
	const char *colon = strrchr(line, ':');
	assert_non_null(colon);
	*node_port = (unsigned)strtoul(colon + 1, NULL, 10);
	assert_true(*node_port > 0);
	return pid;
}

struct hook_post {
	unsigned port;
	const char *body;
	long status;
	char ticket[80];
	int duplicate;
};

static void *post_hook(void *arg)
{
	struct hook_post *h = arg;
	const char *hdr[] = {"X-CSA-Hook-Token: hooktok", NULL};
	struct t_resp r;
	if (t_http(h->port, "POST", "/hooks/email", hdr, h->body, 60, &r) == 0) {
		h->status = r.status;
		json_t *j = r.body ? json_loads(r.body, 0, NULL) : NULL;
		snprintf(h->ticket, sizeof(h->ticket), "%s",
		         csa_json_str(j, "ticket_id") ? csa_json_str(j, "ticket_id") : "");
		h->duplicate = json_is_true(json_object_get(j, "duplicate"));
		json_decref(j);
	}
	free(r.body);
	return NULL;
}

/* Two csa serve processes -- two nodes, a workspace directory each, one
 * database -- get the same customer e-mail at the same instant, as a
 * relay retrying on the other node behind a load balancer sends it, five
 * times over with five messages. Each message is stored once, in one
 * ticket both nodes name (one answers 202, the other 200 "duplicate"),
 * and a later retry to either node is a duplicate too. A token made on
 * one node's workspace works on the other. */
static void pg_two_nodes_store_a_retried_message_once(void **state)
{
	(void)state;
	enum { MSGS = 5 };
	char *d[2] = {t_tmpdir("node-a"), t_tmpdir("node-b")};
	struct csa_ws *w[2];
	for (int k = 0; k < 2; k++)
		w[k] = contract_ws(d[k], "two_nodes");
	char tok[80];
	char *secret;
	char id[CSA_TOKEN_ID_LEN];
	struct csa_tokens *tk;
	struct csa_err err = {0};
	assert_int_equal(csa_tokens_open_ws(w[0], &tk, &err), 0);
	assert_int_equal(csa_tokens_create(tk, CSA_ROLE_VIEWER, "both", &secret, id, &err), 0);
	snprintf(tok, sizeof(tok), "%s", secret);
	free(secret);
	csa_tokens_close(tk);
	for (int k = 0; k < 2; k++)
		csa_ws_close(w[k]);
	unsigned ports[2];
	pid_t pids[2];
	for (int k = 0; k < 2; k++)
		g_nodes[k] = pids[k] = start_node(d[k], &ports[k]);
	char bodies[MSGS][300], tickets[MSGS][80];
	for (int m = 0; m < MSGS; m++) {
		snprintf(bodies[m], sizeof(bodies[m]),
		         "{\"from\": \"n%d@example.com\", \"subject\": \"Order %d\", \"text\": "
		         "\"Where is my order %d?\", \"message_id\": \"<two-%d@example.com>\"}",
		         m, m, m, m);
		struct hook_post h[2] = {{.port = ports[0], .body = bodies[m]},
		                         {.port = ports[1], .body = bodies[m]}};
		pthread_t th[2];
		for (int k = 0; k < 2; k++)
			pthread_create(&th[k], NULL, post_hook, &h[k]);
		for (int k = 0; k < 2; k++)
			pthread_join(th[k], NULL);
		if (!h[0].ticket[0] || strcmp(h[0].ticket, h[1].ticket) != 0)
			fail_msg("message %d: node A answered %ld '%s', node B %ld '%s'", m,
			         h[0].status, h[0].ticket, h[1].status, h[1].ticket);
		assert_int_equal(h[0].status + h[1].status, 202 + 200);
		assert_int_equal(h[0].duplicate + h[1].duplicate, 1);
		snprintf(tickets[m], sizeof(tickets[m]), "%s", h[0].ticket);
	}
	/* a later retry, to either node */
	for (int k = 0; k < 2; k++) {
		struct hook_post h = {.port = ports[k], .body = bodies[0]};
		post_hook(&h);
		assert_int_equal(h.status, 200);
		assert_true(h.duplicate);
		assert_string_equal(h.ticket, tickets[0]);
	}
	/* the token made through node A's workspace opens node B */
	struct t_resp r;
	char auth[160];
	t_bearer(auth, tok);
	const char *hdr[] = {auth, NULL};
	assert_int_equal(t_http(ports[1], "GET", "/api/tickets", hdr, NULL, 30, &r), 0);
	assert_int_equal(r.status, 200);
	free(r.body);
	for (int k = 0; k < 2; k++) {
		kill(pids[k], SIGTERM);
		int st;
		assert_int_equal(waitpid(pids[k], &st, 0), pids[k]);
		g_nodes[k] = 0;
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	/* in the database: five tickets, one customer message each */
	struct csa_ws *check = contract_ws(d[0], "two_nodes");
	char **ids;
	size_t n;
	assert_int_equal(csa_store_ids(check->store, &ids, &n, &err), 0);
	assert_int_equal(n, MSGS);
	for (size_t i = 0; i < n; i++) {
		struct csa_ticket t;
		assert_int_equal(csa_store_load(check->store, ids[i], &t, &err), 0);
		assert_int_equal(json_array_size(json_object_get(t.e, "messages")), 1);
		csa_ticket_release(&t);
	}
	csa_store_ids_free(ids, n);
	csa_ws_close(check);
	for (int k = 0; k < 2; k++) {
		t_rmrf(d[k]);
		free(d[k]);
	}
}

/* The database goes away under a serving node: a request that needs it
 * fails at once with 503 and the server named, /readyz says so (a load
 * balancer takes the node out), and once the database is back the node
 * serves again without a restart, with what it acknowledged before. */
static void pg_database_away_answers_503(void **state)
{
	(void)state;
	char *d = t_tmpdir("node-db-away");
	struct csa_ws *w = contract_ws(d, "db_away");
	struct csa_tokens *tk;
	struct csa_err err = {0};
	char *secret, id[CSA_TOKEN_ID_LEN], auth[160], why[2048];
	assert_int_equal(csa_tokens_open_ws(w, &tk, &err), 0);
	assert_int_equal(csa_tokens_create(tk, CSA_ROLE_ADMIN, "away", &secret, id, &err), 0);
	t_bearer(auth, secret);
	free(secret);
	csa_tokens_close(tk);
	csa_ws_close(w);
	unsigned nport;
	g_nodes[0] = start_node(d, &nport);
	const char *hdr[] = {auth, "Content-Type: application/json", NULL};
	struct t_resp r;
	assert_int_equal(t_http(nport, "POST", "/api/tickets", hdr,
	                        "{\"ticket_id\": \"AWAY-1\", \"client_name\": \"Al\", "
	                        "\"messages\": [{\"content\": \"my invoice is wrong\"}]}",
	                        60, &r),
	                 0);
	assert_int_equal(r.status, 201);
	free(r.body);

	if (tpg_server_stop(g_pg, why, sizeof(why)))
		fail_msg("%s", why);
	assert_int_equal(t_http(nport, "GET", "/api/tickets/AWAY-1", hdr, NULL, 30, &r), 0);
	if (r.status != 503 || !strstr(r.body, "\"unavailable\"") ||
	    !strstr(r.body, tpg_hostport(g_pg)))
		fail_msg("with the database away, GET answered %ld: %s", r.status, r.body);
	free(r.body);
	assert_int_equal(t_http(nport, "GET", "/readyz", NULL, NULL, 30, &r), 0);
	if (r.status != 503 || !strstr(r.body, "PostgreSQL at"))
		fail_msg("with the database away, /readyz answered %ld: %s", r.status, r.body);
	free(r.body);

	if (tpg_server_start(g_pg, why, sizeof(why)))
		fail_msg("%s", why);
	assert_int_equal(t_http(nport, "GET", "/readyz", NULL, NULL, 30, &r), 0);
	assert_int_equal(r.status, 200);
	free(r.body);
	assert_int_equal(t_http(nport, "GET", "/api/tickets/AWAY-1", hdr, NULL, 30, &r), 0);
	if (r.status != 200 || !strstr(r.body, "my invoice is wrong"))
		fail_msg("after the database came back, GET answered %ld: %s", r.status, r.body);
	free(r.body);
	kill(g_nodes[0], SIGTERM);
	int st;
	assert_int_equal(waitpid(g_nodes[0], &st, 0), g_nodes[0]);
	g_nodes[0] = 0;
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	t_rmrf(d);
	free(d);
}

/* What the node on port 'at' says it leads (/readyz "leads"): bit 0 "tick", bit 1
 * "outbox"; -1 when it does not answer. */
static int node_leads(unsigned at)
{
	struct t_resp r;
	if (t_http(at, "GET", "/readyz", NULL, NULL, 30, &r) != 0)
		return -1;
	json_t *j = r.status == 200 && r.body ? json_loads(r.body, 0, NULL) : NULL;
	free(r.body);
	json_t *l = json_object_get(j, "leads");
	int v = !json_is_object(l) ? -1
	                           : json_is_true(json_object_get(l, "tick")) |
	                                 json_is_true(json_object_get(l, "outbox")) << 1;
	json_decref(j);
	return v;
}

/* The value of the series 'series' (name and labels, as exposed) in the
 * /metrics of the node on port 'at'; -1 when it is not there. */
static long long node_metric(unsigned at, const char *series)
{
	struct t_resp r;
	if (t_http(at, "GET", "/metrics", NULL, NULL, 30, &r) != 0)
		return -1;
	long long v = -1;
	size_t n = strlen(series);
	for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			v = strtoll(p + n + 1, NULL, 10);
	free(r.body);
	return v;
}

/* One value from the database of workspace 'd' (its csa.json store.url). */
static char *ws_pg_value(const char *d, const char *sql, const char *param)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/csa.json", d);
	json_t *cfg = json_load_file(path, 0, NULL);
	const char *u = csa_json_str(json_object_get(cfg, "store"), "url");
	assert_non_null(u);
	PGconn *c = PQconnectdb(u);
	json_decref(cfg);
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

/* The controller's tick every TICK seconds in the two-node test. */
#define TICK 3

/*
 * Two csa serve nodes on one database: exactly one leads each role (the
 * controller's tick, the outbox's sender), and only the tick's leader
 * ticks. The tick's leader is SIGKILLed; the survivor takes over every
 * role within two tick intervals (a deadline to wait for, not a
 * measurement), at the next fencing epoch, recorded in the database with
 * its pid, and then ticks.
 */
static void pg_two_nodes_one_leader_takes_over(void **state)
{
	(void)state;
	char *d[2] = {t_tmpdir("lead-a"), t_tmpdir("lead-b")};
	for (int k = 0; k < 2; k++) {
		csa_ws_close(contract_ws(d[k], "leaders"));
		char path[4200];
		snprintf(path, sizeof(path), "%s/csa.json", d[k]);
		json_t *cfg = json_load_file(path, 0, NULL);
		json_t *au = json_object_get(cfg, "automation");
		if (!json_is_object(au))
			json_object_set_new(cfg, "automation", au = json_object());
		json_object_set_new(au, "tick_seconds", json_integer(TICK));
		assert_int_equal(json_dump_file(cfg, path, JSON_INDENT(2)), 0);
		json_decref(cfg);
	}
	unsigned ports[2];
	pid_t pids[2];
	for (int k = 0; k < 2; k++)
		g_nodes[k] = pids[k] = start_node(d[k], &ports[k]);
	/* one leader per role, and the tick's has ticked twice */
	int leads[2] = {0, 0}, tick_leader = -1;
	for (int i = 0; i < 600; i++) {
		for (int k = 0; k < 2; k++)
			leads[k] = node_leads(ports[k]);
		assert_true(leads[0] >= 0 && leads[1] >= 0);
		/* never two leaders of one role */
		assert_int_equal(leads[0] & leads[1], 0);
		tick_leader = leads[0] & 1 ? 0 : leads[1] & 1 ? 1 : -1;
		if ((leads[0] | leads[1]) == 3 && tick_leader >= 0 &&
		    node_metric(ports[tick_leader], "csa_controller_ticks_total") >= 2)
			break;
		usleep(100000);
	}
	if ((leads[0] | leads[1]) != 3 || tick_leader < 0)
		fail_msg("the roles were never led: node A leads %d, node B %d", leads[0], leads[1]);
	int other = 1 - tick_leader;
	assert_true(node_metric(ports[tick_leader], "csa_controller_ticks_total") >= 2);
	/* the other node serves but does not tick */
	assert_int_equal(node_metric(ports[other], "csa_controller_ticks_total"), 0);
	assert_int_equal(node_metric(ports[other], "csa_leader{role=\"tick\"}"), 0);
	assert_int_equal(node_metric(ports[tick_leader], "csa_leader{role=\"tick\"}"), 1);
	long long epoch = node_metric(ports[tick_leader], "csa_leader_epoch{role=\"tick\"}");
	assert_true(epoch >= 1);
	char *row = ws_pg_value(d[0], "SELECT epoch FROM csa_leaders WHERE role = $1", "tick");
	assert_int_equal(strtoll(row, NULL, 10), epoch);
	free(row);
	/* the tick's leader dies */
	assert_int_equal(kill(pids[tick_leader], SIGKILL), 0);
	assert_int_equal(waitpid(pids[tick_leader], NULL, 0), pids[tick_leader]);
	g_nodes[tick_leader] = 0;
	int64_t deadline = csa_now_ms() + 2 * TICK * 1000;
	int took = 0;
	while (!took && csa_now_ms() < deadline) {
		took = node_leads(ports[other]) == 3;
		if (!took)
			usleep(100000);
	}
	if (!took)
		fail_msg("the survivor leads %d two ticks after the leader died",
		         node_leads(ports[other]));
	assert_int_equal(node_metric(ports[other], "csa_leader_epoch{role=\"tick\"}"), epoch + 1);
	char expect[64];
	snprintf(expect, sizeof(expect), "%lld :%ld", epoch + 1, (long)pids[other]);
	row = ws_pg_value(d[0],
	                  "SELECT epoch || ' ' || substring(holder from ':[0-9]+$') FROM csa_leaders"
	                  " WHERE role = $1",
	                  "tick");
	assert_string_equal(row, expect);
	free(row);
	/* and the survivor ticks now */
	long long ticks = 0;
	for (int i = 0; i < 100 && ticks < 1; i++) {
		ticks = node_metric(ports[other], "csa_controller_ticks_total");
		if (ticks < 1)
			usleep(100000);
	}
	assert_true(ticks >= 1);
	kill(pids[other], SIGTERM);
	int st;
	assert_int_equal(waitpid(pids[other], &st, 0), pids[other]);
	g_nodes[other] = 0;
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	for (int k = 0; k < 2; k++) {
		t_rmrf(d[k]);
		free(d[k]);
	}
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(int argc, char **argv)
{
	setenv("CSA_EMAIL_HOOK_TOKEN", "hooktok", 1);
	setenv("SLACK_SIGNING_SECRET", "slacksecret", 1);
	setenv("MATTERMOST_TOKEN", "mmtok", 1);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(error_statuses),
	    cmocka_unit_test(tokens_contract),
	    cmocka_unit_test(chanmap_contract),
	    T(tickets_messages_reviews),
	    T(auth_roles_limits_errors),
	    T(pages_health_metrics),
	    T(every_route_counted_and_answered_alike),
	    T(tokens_created_while_serving),
	    T(channel_hooks),
	    T(server_sent_events),
	    T(file_monitor),
	    T(controller_ticks_in_the_server),
	    T(ticket_reads_are_cached_until_a_change),
	    T(concurrent_decisions_one_winner),
	    T(phase_caps_over_http),
	    T(the_tick_advances_the_workspace_when_told),
	    T(demo_team_works_the_queue),
	    T(metrics_trend_over_http),
	    T(knowledge_gaps_over_http),
	};
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	/* the contracts again on PostgreSQL, and two nodes on one database;
	 * a server that cannot start is a failure with its reason, never a
	 * skip (a filter that names no pg_* test does not start one) */
	if (argc <= 1 || strstr(argv[1], "pg_") || strchr(argv[1], '*')) {
		char why[4096];
		if (!(g_pg = tpg_start(why, sizeof(why)))) {
			fprintf(stderr, "test_server: FAILED: the PostgreSQL tests cannot run: %s\n",
			        why);
			curl_global_cleanup();
			return rc + 1;
		}
		const struct CMUnitTest pg_tests[] = {
		    cmocka_unit_test(pg_tokens_contract),
		    cmocka_unit_test(pg_chanmap_contract),
		    cmocka_unit_test_teardown(pg_two_nodes_store_a_retried_message_once,
		                              kill_nodes),
		    cmocka_unit_test_teardown(pg_database_away_answers_503, kill_nodes),
		    cmocka_unit_test_teardown(pg_two_nodes_one_leader_takes_over, kill_nodes),
		};
		rc += cmocka_run_group_tests_name("server (PostgreSQL)", pg_tests, NULL, NULL);
		tpg_stop(g_pg);
	}
	curl_global_cleanup();
	return rc;
}
