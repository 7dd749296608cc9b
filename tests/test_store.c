/* Store unit tests: schema, ticket building, timeline, commit/load/scan,
 * and bad input (every rule of the foundation issue).
 *
 * The contract tests of the ticket store (store/store.h) run twice: on the
 * file mesh and on PostgreSQL (a private server, tests/support/tpg.h, a
 * schema of its own per test, named by the URL's search_path). If that
 * server cannot start, the run fails
 * with the reason: it is never skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"
#include "store/backup.h"
#include "store/blobs.h"
#include "store/memstore.h"
#include "store/mesh.h"
#include "store/schema.h"
#include "store/pg.h"
#include "store/store_pg.h"
#include "store/ticket.h"
#include "store/verify.h"
#include "store/ws.h"
#include "support/tmesh.h"
#include "support/tpg.h"
#include "support/tutil.h"

struct fx {
	char *dir;
	struct csa_ws *ws;
	char url[512]; /* the database of a PostgreSQL fixture, "" for the mesh */
};

/* The test server of the PostgreSQL runs (started by main). */
static struct tpg *g_pg;
static int g_db_seq;

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct csa_err err = {0};
	f->dir = t_tmpdir("store");
	if (csa_ws_init(f->dir, &err) || csa_ws_open(f->dir, &f->ws, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	*state = f;
	return 0;
}

/* A workspace whose csa.json puts its tickets in 'url' (store.url). */
static int ws_with_url(const char *dir, const char *url, struct csa_err *err)
{
	int rc = csa_ws_init(dir, err);
	if (rc)
		return rc;
	char path[4096];
	snprintf(path, sizeof(path), "%s/csa.json", dir);
	json_t *cfg = json_load_file(path, 0, NULL);
	if (!cfg)
		return csa_error(err, CSA_EPARSE, "cannot read '%s'", path);
	json_object_set_new(cfg, "store", json_pack("{s:s}", "url", url));
	rc = json_dump_file(cfg, path, JSON_INDENT(2)) == 0
	         ? 0
	         : csa_error(err, CSA_EIO, "cannot write '%s'", path);
	json_decref(cfg);
	return rc;
}

/* The same fixture with the tickets in a new schema of the test server's
 * database (selected by the URL's search_path). */
static int setup_pg(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct csa_err err = {0};
	char why[2048], name[32];
	snprintf(name, sizeof(name), "store_%d", ++g_db_seq);
	if (tpg_create_schema(g_pg, name, f->url, sizeof(f->url), why, sizeof(why))) {
		fprintf(stderr, "setup_pg: %s\n", why);
		free(f);
		return -1;
	}
	f->dir = t_tmpdir("store-pg");
	if (ws_with_url(f->dir, f->url, &err) || csa_ws_open(f->dir, &f->ws, &err)) {
		fprintf(stderr, "setup_pg: %s\n", err.msg);
		return -1;
	}
	if (!csa_store_is_pg(f->ws->store)) {
		fprintf(stderr, "setup_pg: store.url did not select the PostgreSQL store\n");
		return -1;
	}
	*state = f;
	return 0;
}

/* The same fixture with the tickets in memory (store/memstore.h): the
 * scratch workspace of a replay that keeps nothing. */
static int setup_mem(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct csa_err err = {0};
	f->dir = t_tmpdir("store-mem");
	if (csa_ws_init(f->dir, &err) || csa_ws_open_memory(f->dir, &f->ws, &err)) {
		fprintf(stderr, "setup_mem: %s\n", err.msg);
		return -1;
	}
	if (!csa_store_is_memory(f->ws->store) || !f->ws->scratch) {
		fprintf(stderr, "setup_mem: not a scratch workspace with a memory store\n");
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	csa_ws_close(f->ws);
	t_rmrf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static int build(struct fx *f, const char *ctx_text, struct csa_ticket *tk, struct csa_err *err)
{
	json_t *ctx = json_loads(ctx_text, 0, NULL);
	assert_non_null(ctx);
	const struct csa_config *cfg = csa_ws_config(f->ws);
	int rc = csa_ticket_build(cfg, ctx, 1795734186123LL, tk, err);
	csa_config_unref(cfg);
	json_decref(ctx);
	return rc;
}

/* A size limit of csa.json, as a team would set it. */
static void limit(struct fx *f, const char *key, int value)
{
	struct csa_err err = {0};
	json_t *over = json_pack("{s:{s:i}}", "limits", key, value);
	if (csa_ws_config_override(f->ws, over, &err))
		fail_msg("limits.%s: %s", key, err.msg);
	json_decref(over);
}

static void built_documents_match_schema(void **state)
{
	struct fx *f = *state;
	struct csa_ticket tk;
	struct csa_err err = {0};
	assert_int_equal(build(f,
	                       "{\"ticket_id\": \"T1\", \"client_name\": \"Ann\","
	                       " \"platform\": \"email\", \"customer\": {\"subscription_tier\":"
	                       " \"PREMIUM\"}, \"messages\": [{\"content\": \"hi\"}],"
	                       " \"internal_messages\": [{\"content\": \"note\"}]}",
	                       &tk, &err),
	                 0);
	assert_int_equal(csa_schema_check(CSA_KIND_E, "T1", tk.e, &err), 0);
	assert_int_equal(csa_schema_check(CSA_KIND_I, "T1", tk.i, &err), 0);
	assert_int_equal(csa_schema_check(CSA_KIND_T, "T1", tk.t, &err), 0);
	assert_string_equal(csa_json_str(tk.t, "channel"), "EMAIL");
	assert_string_equal(csa_json_str(tk.t, "card_create_timestamp"),
	                    "2026-11-26T23:03:06.123Z");
	assert_string_equal(
	    json_string_value(json_array_get(json_object_get(tk.e, "synchronized_with"), 0)),
	    "I_T1");
	json_t *refs = json_object_get(tk.t, "file_references");
	assert_string_equal(csa_json_str(refs, "internal_conversation"), "I_T1.json");
	/* every message got an id and a timestamp */
	json_t *m = json_array_get(json_object_get(tk.e, "messages"), 0);
	assert_non_null(csa_json_str(m, "message_id"));
	assert_string_equal(csa_json_str(m, "timestamp"), "2026-11-26T23:03:06.123Z");

	/* Schema violations are found and named. */
	struct {
		const char *field;
		json_t *value;
		const char *expect;
	} cases[] = {
	    {"priority", json_string("URGENT"), "priority: expected one of"},
	    {"resolved", json_string("no"), "resolved: expected true or false"},
	    {"card_create_timestamp", json_string("yesterday"), "not an ISO 8601"},
	    {"ticket_id", json_string("T2"), "another ticket"},
	    {"extra", json_true(), "unknown field 'extra'"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *t = json_deep_copy(tk.t);
		json_object_set_new(t, cases[i].field, cases[i].value);
		assert_int_equal(csa_schema_check(CSA_KIND_T, "T1", t, &err), CSA_ESCHEMA);
		if (!strstr(err.msg, cases[i].expect))
			fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].expect);
		json_decref(t);
	}
	json_t *t = json_deep_copy(tk.t);
	json_object_del(t, "agent_decisions");
	assert_int_equal(csa_schema_check(CSA_KIND_T, "T1", t, &err), CSA_ESCHEMA);
	assert_non_null(strstr(err.msg, "T_T1.json: agent_decisions: missing"));
	json_decref(t);
	json_t *e = json_deep_copy(tk.e);
	json_object_set_new(json_object_get(json_array_get(json_object_get(e, "messages"), 0),
	                                    "sentiment_analysis"),
	                    "score", json_real(1.5));
	assert_int_equal(csa_schema_check(CSA_KIND_E, "T1", e, &err), CSA_ESCHEMA);
	assert_non_null(strstr(err.msg, "messages[0].sentiment_analysis.score"));
	json_decref(e);
	json_t *i = json_deep_copy(tk.i);
	json_array_set_new(json_object_get(i, "synchronized_with"), 0, json_string("E_other"));
	assert_int_equal(csa_schema_check(CSA_KIND_I, "T1", i, &err), CSA_ESCHEMA);
	json_decref(i);
	csa_ticket_release(&tk);
}

static void bad_input_is_refused_with_the_field_named(void **state)
{
	struct fx *f = *state;
	struct csa_ticket tk;
	struct csa_err err = {0};
	struct {
		const char *ctx;
		int code;
		const char *expect;
	} cases[] = {
	    {"[]", CSA_EINVAL, "expected a JSON object"},
	    {"{\"ticket_id\": \"../x\"}", CSA_EINVAL, "invalid ticket id"},
	    {"{\"ticket_id\": \"a/b\"}", CSA_EINVAL, "invalid ticket id"},
	    {"{\"ticket_id\": \"\"}", CSA_EINVAL, "empty"},
	    {"{\"ticket_id\": 7}", CSA_EINVAL, "'ticket_id': expected a string"},
	    {"{\"bogus\": 1}", CSA_EINVAL, "unknown field 'bogus'"},
	    {"{\"platform\": \"fax\"}", CSA_EINVAL, "'platform': expected one of"},
	    {"{\"channel\": \"PIGEON\"}", CSA_EINVAL, "'channel'"},
	    {"{\"customer\": {\"subscription_tier\": \"GOLD\"}}", CSA_EINVAL,
	     "customer.subscription_tier"},
	    {"{\"customer\": {\"shoe\": 1}}", CSA_EINVAL, "customer: unknown field 'shoe'"},
	    {"{\"messages\": {}}", CSA_EINVAL, "'messages': expected an array"},
	    {"{\"messages\": [{}]}", CSA_EINVAL, "messages[0].content: missing"},
	    {"{\"messages\": [{\"content\": 5}]}", CSA_EINVAL, "messages[0].content"},
	    {"{\"messages\": [{\"content\": \"x\", \"timestamp\": \"soon\"}]}", CSA_EINVAL,
	     "messages[0].timestamp"},
	    {"{\"messages\": [{\"content\": \"x\", \"message_id\": \"a b\"}]}", CSA_EINVAL,
	     "messages[0].message_id"},
	    {"{\"messages\": [{\"content\": \"x\", \"sender\": \"robot\"}]}", CSA_EINVAL,
	     "messages[0].sender"},
	    {"{\"internal_messages\": [{\"content\": \"x\", \"platform\": \"irc\"}]}", CSA_EINVAL,
	     "internal_messages[0].platform"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&err, 0, sizeof(err));
		int rc = build(f, cases[i].ctx, &tk, &err);
		if (rc != cases[i].code || !strstr(err.msg, cases[i].expect))
			fail_msg("case %zu (%s): rc %d msg '%s'", i, cases[i].ctx, rc, err.msg);
	}
	/* size limits from config */
	limit(f, "max_message_bytes", 10);
	assert_int_equal(build(f, "{\"messages\": [{\"content\": \"01234567890\"}]}", &tk, &err),
	                 CSA_ELIMIT);
	assert_non_null(strstr(err.msg, "limit is 10"));
	limit(f, "max_attachments", 1);
	assert_int_equal(
	    build(f, "{\"messages\": [{\"content\": \"a\", \"attachments\": [1,2]}]}", &tk, &err),
	    CSA_ELIMIT);
	assert_non_null(strstr(err.msg, "attachments"));
	limit(f, "max_messages_per_ticket", 2);
	assert_int_equal(build(f,
	                       "{\"messages\": [{\"content\": \"a\"}, {\"content\": \"b\"},"
	                       " {\"content\": \"c\"}]}",
	                       &tk, &err),
	                 CSA_ELIMIT);
	assert_int_equal(build(f,
	                       "{\"ticket_id\": \"L\", \"messages\": [{\"content\": \"a\"},"
	                       " {\"content\": \"b\"}]}",
	                       &tk, &err),
	                 0);
	json_t *m = json_pack("{s:s}", "content", "c");
	const struct csa_config *cfg = csa_ws_config(f->ws);
	assert_int_equal(csa_ticket_add_message(cfg, &tk, CSA_SIDE_EXTERNAL, m, 0, NULL, &err),
	                 CSA_ELIMIT);
	csa_config_unref(cfg);
	json_decref(m);
	csa_ticket_release(&tk);
}

static void timeline_merges_by_time_stably(void **state)
{
	struct fx *f = *state;
	struct csa_ticket tk;
	struct csa_err err = {0};
	assert_int_equal(
	    build(f,
	          "{\"ticket_id\": \"TL\", \"messages\": ["
	          "{\"content\": \"e1\", \"timestamp\": \"2026-01-01T10:00:00Z\"},"
	          "{\"content\": \"e3\", \"timestamp\": \"2026-01-01T12:00:00Z\"},"
	          "{\"content\": \"e2\", \"timestamp\": \"2026-01-01T11:00:00.000+00:00\"}],"
	          "\"internal_messages\": ["
	          "{\"content\": \"i1\", \"timestamp\": \"2026-01-01T11:00:00Z\"},"
	          "{\"content\": \"i0\", \"timestamp\": \"2026-01-01T09:59:59.999Z\"}]}",
	          &tk, &err),
	    0);
	json_t *tl = csa_ticket_timeline(&tk);
	const char *want[] = {"i0", "e1", "e2", "i1", "e3"};
	const char *side[] = {"internal", "external", "external", "internal", "external"};
	assert_int_equal(json_array_size(tl), 5);
	for (size_t i = 0; i < 5; i++) {
		assert_string_equal(csa_json_str(json_array_get(tl, i), "content"), want[i]);
		assert_string_equal(csa_json_str(json_array_get(tl, i), "side"), side[i]);
	}
	json_decref(tl);
	csa_ticket_release(&tk);
}

struct addc {
	struct csa_ws *ws;
	const char *content, *id;
};

static int add_fn(void *ctx, struct csa_ticket *tk, unsigned *docs, struct csa_err *err)
{
	struct addc *c = ctx;
	json_t *m = json_pack("{s:s}", "content", c->content);
	if (c->id)
		json_object_set_new(m, "message_id", json_string(c->id));
	const struct csa_config *cfg = csa_ws_config(c->ws);
	int rc = csa_ticket_add_message(cfg, tk, CSA_SIDE_EXTERNAL, m, csa_now_ms(), NULL, err);
	csa_config_unref(cfg);
	json_decref(m);
	*docs = CSA_DOC_E;
	return rc;
}

static int count_fn(void *ctx, const char *id, const json_t *t, const char *status)
{
	(void)id, (void)t, (void)status;
	(*(int *)ctx)++;
	return 0;
}

/* A commit writes T and the conversation documents it names: one it does
 * not name keeps the bytes it was loaded with, whatever was done to it in
 * memory (both backends). */
static void unnamed_documents_keep_their_bytes(void **state)
{
	struct fx *f = *state;
	struct csa_ticket tk, got;
	struct csa_err err = {0};
	assert_int_equal(
	    build(f, "{\"ticket_id\": \"K1\", \"messages\": [{\"content\": \"x\"}]}", &tk, &err),
	    0);
	assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_ALL, &err), 0);
	csa_ticket_release(&tk);
	assert_int_equal(csa_store_load(f->ws->store, "K1", &tk, &err), 0);
	char *e_before = json_dumps(tk.e, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_object_set_new(tk.e, "conversation_status", json_string("resolved"));
	json_object_set_new(tk.t, "assigned_member", json_string("kim"));
	assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_T, &err), 0);
	csa_ticket_release(&tk);
	assert_int_equal(csa_store_load(f->ws->store, "K1", &got, &err), 0);
	char *e_after = json_dumps(got.e, JSON_COMPACT | JSON_PRESERVE_ORDER);
	assert_string_equal(e_after, e_before);
	assert_string_equal(csa_json_str(got.t, "assigned_member"), "kim");
	/* named, it is written */
	json_object_set_new(got.e, "conversation_status", json_string("resolved"));
	assert_int_equal(csa_store_commit(f->ws->store, &got, CSA_DOC_E, &err), 0);
	csa_ticket_release(&got);
	assert_int_equal(csa_store_load(f->ws->store, "K1", &got, &err), 0);
	assert_string_equal(csa_json_str(got.e, "conversation_status"), "resolved");
	csa_ticket_release(&got);
	free(e_before);
	free(e_after);
}

static void commit_load_scan(void **state)
{
	struct fx *f = *state;
	struct csa_ticket tk, got;
	struct csa_err err = {0};
	assert_int_equal(
	    build(f, "{\"ticket_id\": \"A1\", \"messages\": [{\"content\": \"x\"}]}", &tk, &err),
	    0);
	assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_ALL, &err), 0);
	/* creating it again is refused */
	struct csa_ticket again;
	assert_int_equal(build(f, "{\"ticket_id\": \"A1\"}", &again, &err), 0);
	assert_int_equal(csa_store_commit(f->ws->store, &again, CSA_DOC_ALL, &err), CSA_EEXIST);
	csa_ticket_release(&again);
	assert_int_equal(csa_store_load(f->ws->store, "A1", &got, &err), 0);
	assert_true(json_equal(got.e, tk.e));
	assert_true(json_equal(got.t, tk.t));
	csa_ticket_release(&got);
	assert_int_equal(csa_store_load(f->ws->store, "nope", &got, &err), CSA_ENOENT);
	assert_int_equal(csa_store_load(f->ws->store, "../etc", &got, &err), CSA_EINVAL);

	/* update: dedupe by message id, schema failure writes nothing */
	struct addc c = {f->ws, "second", "m-1"};
	assert_int_equal(csa_store_update(f->ws->store, "A1", 0, add_fn, &c, &err), 0);
	assert_int_equal(csa_store_update(f->ws->store, "A1", 0, add_fn, &c, &err), CSA_EEXIST);
	assert_int_equal(csa_store_load(f->ws->store, "A1", &got, &err), 0);
	assert_int_equal(json_array_size(json_object_get(got.e, "messages")), 2);
	csa_ticket_release(&got);
	json_object_set_new(tk.t, "priority", json_string("SOON"));
	assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_T, &err), CSA_ESCHEMA);
	assert_int_equal(csa_store_load(f->ws->store, "A1", &got, &err), 0);
	assert_string_equal(csa_json_str(got.t, "priority"), "MEDIUM");
	csa_ticket_release(&got);
	csa_ticket_release(&tk);

	/* group commit and filters */
	struct csa_ticket many[3];
	struct csa_ticket *ptrs[3];
	const char *ctx[] = {"{\"ticket_id\": \"G1\"}", "{\"ticket_id\": \"G2\"}",
	                     "{\"ticket_id\": \"G3\"}"};
	for (int i = 0; i < 3; i++) {
		assert_int_equal(build(f, ctx[i], &many[i], &err), 0);
		ptrs[i] = &many[i];
	}
	json_object_set_new(many[1].t, "priority", json_string("HIGH"));
	assert_int_equal(csa_store_commit_many(f->ws->store, ptrs, 3, CSA_DOC_ALL, &err), 0);
	for (int i = 0; i < 3; i++)
		csa_ticket_release(&many[i]);
	int n = 0;
	struct csa_filter flt = {NULL, "HIGH", NULL};
	assert_int_equal(csa_store_scan(f->ws->store, &flt, count_fn, &n, &err), 0);
	assert_int_equal(n, 1);
	n = 0;
	flt = (struct csa_filter){"active", NULL, "trigger"};
	assert_int_equal(csa_store_scan(f->ws->store, &flt, count_fn, &n, &err), 0);
	assert_int_equal(n, 4);
	n = 0;
	flt = (struct csa_filter){"resolved", NULL, NULL};
	assert_int_equal(csa_store_scan(f->ws->store, &flt, count_fn, &n, &err), 0);
	assert_int_equal(n, 0);
}

static void damaged_file_is_named_and_nothing_written(void **state)
{
	struct fx *f = *state;
	struct csa_ticket tk, got;
	struct csa_err err = {0};
	assert_int_equal(build(f, "{\"ticket_id\": \"D1\"}", &tk, &err), 0);
	assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_ALL, &err), 0);
	csa_ticket_release(&tk);
	char path[4096];
	assert_int_equal(csa_mesh_doc_path(f->ws, 1, "D1", path, sizeof(path), &err), 0);
	t_write(path, "{\n \"ticket_id\": \"D1\",\n oops\n}");
	assert_int_equal(csa_store_load(f->ws->store, "D1", &got, &err), CSA_EPARSE);
	assert_non_null(strstr(err.msg, "I_D1.json line 3"));
	struct addc c = {f->ws, "x", NULL};
	assert_int_equal(csa_store_update(f->ws->store, "D1", 0, add_fn, &c, &err), CSA_EPARSE);
	/* the damaged file is untouched: still the same bytes */
	char *buf;
	size_t len;
	assert_int_equal(csa_fs_read_all(path, 1000, &buf, &len, &err), 0);
	assert_non_null(strstr(buf, "oops"));
	free(buf);
}

/* The monitor's memo: unchanged tickets are skipped, any change to a file
 * (rename into place or edit in place) brings its ticket back. */
static void verify_memo_skips_only_unchanged(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	static const char *const ids[] = {"M-1", "M-2", "M-3"};
	assert_int_equal(tm_create(f->ws, ids, 3), 0);
	char path[4096];
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 3; k++) {
			assert_int_equal(
			    csa_mesh_doc_path(f->ws, k, ids[i], path, sizeof(path), &err), 0);
			t_age(path, 60);
		}
	struct csa_verify_memo *memo = csa_verify_memo_new();
	json_t *rep;
	assert_int_equal(csa_verify(f->ws, CSA_VERIFY_LIVE, memo, &rep, &err), 0);
	assert_true(json_is_true(json_object_get(rep, "ok")));
	assert_int_equal(csa_json_int(rep, "unchanged_since_last_check", -1), 0);
	json_decref(rep);
	assert_int_equal(csa_verify(f->ws, CSA_VERIFY_LIVE, memo, &rep, &err), 0);
	assert_int_equal(csa_json_int(rep, "unchanged_since_last_check", -1), 3);
	json_decref(rep);
	/* an edit in place that makes M-2 drift is found */
	assert_int_equal(csa_mesh_doc_path(f->ws, 0, "M-2", path, sizeof(path), &err), 0);
	json_t *e = json_load_file(path, 0, NULL);
	assert_non_null(e);
	char ts[CSA_TS_LEN];
	json_object_set_new(e, "last_updated",
	                    json_string(csa_ts_format(csa_now_ms() + 3600 * 1000, ts)));
	assert_int_equal(json_dump_file(e, path, JSON_COMPACT), 0);
	json_decref(e);
	assert_int_equal(csa_verify(f->ws, CSA_VERIFY_LIVE, memo, &rep, &err), 0);
	assert_false(json_is_true(json_object_get(rep, "ok")));
	assert_int_equal(csa_json_int(rep, "unchanged_since_last_check", -1), 2);
	assert_string_equal(
	    csa_json_str(json_array_get(json_object_get(rep, "problems"), 0), "problem"),
	    "sync_drift");
	json_decref(rep);
	/* a ticket with a problem is never remembered as clean */
	t_age(path, 60);
	assert_int_equal(csa_verify(f->ws, CSA_VERIFY_LIVE, memo, &rep, &err), 0);
	assert_false(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
	/* a commit (new file renamed into place) brings M-3 back */
	struct csa_ticket tk;
	assert_int_equal(csa_store_load(f->ws->store, "M-3", &tk, &err), 0);
	tm_set(&tk, 7);
	assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_ALL, &err), 0);
	csa_ticket_release(&tk);
	assert_int_equal(csa_verify(f->ws, CSA_VERIFY_LIVE, memo, &rep, &err), 0);
	assert_int_equal(csa_json_int(rep, "unchanged_since_last_check", -1), 1);
	json_decref(rep);
	csa_verify_memo_free(memo);
}

/* A configuration snapshot never changes under its reader: a phase change
 * publishes a new one, the old one stays readable until released, the
 * process's overrides and phase cap outlive a reload of csa.json. */
static void config_snapshots_are_immutable(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	const struct csa_config *before = csa_ws_config(f->ws);
	const char *phase_before = csa_json_str(before->root, "phase");
	assert_string_equal(phase_before, "PHASE_1");
	limit(f, "max_attachments", 3);
	assert_int_equal(csa_ws_set_phase(f->ws, 2, &err), 0);
	const struct csa_config *after = csa_ws_config(f->ws);
	assert_ptr_not_equal(before, after);
	/* the reader's snapshot is the one it started with, and still alive */
	assert_string_equal(csa_json_str(before->root, "phase"), "PHASE_1");
	assert_string_equal(phase_before, "PHASE_1");
	assert_int_not_equal(before->limits.max_attachments, 3);
	assert_string_equal(csa_json_str(after->root, "phase"), "PHASE_2");
	assert_int_equal(after->limits.max_attachments, 3); /* the override outlived the reload */
	csa_config_unref(before);
	csa_config_unref(after);
	/* csa.json holds the phase; the override stays in this process */
	char path[4096];
	snprintf(path, sizeof(path), "%s/csa.json", f->dir);
	json_t *file;
	assert_int_equal(csa_json_load_file(path, 1 << 20, &file, &err), 0);
	assert_string_equal(csa_json_str(file, "phase"), "PHASE_2");
	assert_int_not_equal(csa_json_int(json_object_get(file, "limits"), "max_attachments", 0),
	                     3);
	json_decref(file);
	/* a cap holds the phase down, also after the phase is raised again */
	int lowered = 0;
	assert_int_equal(csa_ws_config_cap_phase(f->ws, 1, &lowered, &err), 0);
	assert_int_equal(lowered, 1);
	assert_int_equal(csa_ws_phase(f->ws), 1);
	assert_int_equal(csa_ws_set_phase(f->ws, 3, &err), 0);
	assert_int_equal(csa_ws_phase(f->ws), 1);
	/* an override that does not validate changes nothing */
	json_t *bad = json_pack("{s:{s:i}}", "limits", "max_attachments", -1);
	assert_int_equal(csa_ws_config_override(f->ws, bad, &err), CSA_ESCHEMA);
	assert_non_null(strstr(err.msg, "max_attachments"));
	json_decref(bad);
	const struct csa_config *now = csa_ws_config(f->ws);
	assert_int_equal(now->limits.max_attachments, 3);
	csa_config_unref(now);
}

struct cfg_race {
	struct csa_ws *ws;
	atomic_int stop;
	long reads;
};

static void *cfg_reader(void *arg)
{
	struct cfg_race *r = arg;
	while (!atomic_load(&r->stop)) {
		const struct csa_config *c = csa_ws_config(r->ws);
		const char *ph = csa_json_str(c->root, "phase");
		json_t *cats = csa_config_get(c, "taxonomy.categories");
		/* a freed snapshot would show under ASan right here */
		if (!ph || strncmp(ph, "PHASE_", 6) != 0 || json_array_size(cats) == 0)
			r->reads = -1000000;
		sched_yield();
		if (strcmp(csa_json_str(c->root, "phase"), ph) != 0)
			r->reads = -1000000;
		csa_config_unref(c);
		r->reads++;
	}
	return NULL;
}

/* Readers on two threads while the phase changes and csa.json is reloaded:
 * each sees a whole configuration that does not change under it. */
static void config_changes_while_threads_read(void **state)
{
	struct fx *f = *state;
	struct cfg_race r = {.ws = f->ws};
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, cfg_reader, &r), 0);
	struct csa_err err = {0};
	for (int i = 0; i < 200; i++) {
		assert_int_equal(csa_ws_set_phase(f->ws, 1 + i % 3, &err), 0);
		assert_int_equal(csa_ws_config_reload(f->ws, &err), 0);
	}
	atomic_store(&r.stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	assert_true(r.reads > 0);
	assert_int_equal(csa_ws_phase(f->ws), 1 + 199 % 3);
}

/* The workspace's documents (models, knowledge base): names are checked
 * before any path is built, a put replaces whole and changes the version,
 * listing is sorted and leaves out an atomic write's scratch file. */
static void documents_are_named_safely_and_replaced_whole(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	struct csa_blobs *b = f->ws->blobs;
	static const char *const bad[] = {"models/../csa.json",
	                                  "kb/.hidden",
	                                  "other/x.md",
	                                  "models/a/b",
	                                  "models/",
	                                  "kb",
	                                  "",
	                                  "kb/a\nb"};
	char *buf;
	size_t len;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		if (csa_blobs_put(b, bad[i], "x", 1, &err) != CSA_EINVAL ||
		    csa_blobs_get(b, bad[i], 10, &buf, &len, NULL) != CSA_EINVAL)
			fail_msg("name '%s' was accepted", bad[i]);
		assert_non_null(strstr(err.msg, "document name"));
	}
	assert_int_equal(csa_blobs_version(b, "models/m.bin"), 0);
	assert_int_equal(csa_blobs_get(b, "models/m.bin", 10, &buf, &len, &err), CSA_ENOENT);
	assert_int_equal(csa_blobs_put(b, "models/m.bin", "one", 3, &err), 0);
	uint64_t v1 = csa_blobs_version(b, "models/m.bin");
	assert_int_not_equal(v1, 0);
	assert_int_equal(csa_blobs_put(b, "models/m.bin", "second", 6, &err), 0);
	assert_int_not_equal(csa_blobs_version(b, "models/m.bin"), v1);
	assert_int_equal(csa_blobs_get(b, "models/m.bin", 10, &buf, &len, &err), 0);
	assert_int_equal(len, 6);
	assert_string_equal(buf, "second");
	free(buf);
	assert_int_equal(csa_blobs_get(b, "models/m.bin", 3, &buf, &len, &err), CSA_ELIMIT);
	/* a scratch file a put left behind when it was killed is not listed */
	char path[4096];
	snprintf(path, sizeof(path), "%s/models/m.bin.tmp.4242", f->dir);
	t_write(path, "half");
	assert_int_equal(csa_blobs_put(b, "models/a.bin", "a", 1, &err), 0);
	json_t *names;
	assert_int_equal(csa_blobs_list(b, "models", &names, &err), 0);
	assert_int_equal(json_array_size(names), 2);
	assert_string_equal(json_string_value(json_array_get(names, 0)), "a.bin");
	assert_string_equal(json_string_value(json_array_get(names, 1)), "m.bin");
	json_decref(names);
	assert_int_equal(csa_blobs_list(b, "elsewhere", &names, &err), CSA_EINVAL);
	/* another handle on the same workspace (another process, another node
	 * of the database) sees a put by its version within a second, and
	 * reads the new bytes: what makes pipelines reload retrained models */
	struct csa_ws *other = NULL;
	assert_int_equal(csa_ws_open(f->dir, &other, &err), 0);
	uint64_t before = csa_blobs_version(other->blobs, "models/m.bin");
	assert_int_not_equal(before, 0);
	assert_int_equal(csa_blobs_put(b, "models/m.bin", "third!", 6, &err), 0);
	uint64_t seen = before;
	for (int k = 0; k < 300 && seen == before; k++) {
		usleep(10000);
		seen = csa_blobs_version(other->blobs, "models/m.bin");
	}
	assert_int_not_equal(seen, before);
	assert_int_equal(csa_blobs_get(other->blobs, "models/m.bin", 10, &buf, &len, &err), 0);
	assert_string_equal(buf, "third!");
	free(buf);
	csa_ws_close(other);
}

static int scan_ids_fn(void *ctx, const char *id, const json_t *t, const char *status)
{
	(void)t, (void)status;
	json_array_append_new(ctx, json_string(id));
	return 0;
}

/* What an index beside the store reads (agents/histfile.c): the sorted
 * ids, a signature that changes with each commit of a ticket, and one
 * document without the others. */
static void ids_sig_and_one_document(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	static const char *const ids[] = {"B-2", "A-1", "C-3", "a-0"};
	for (size_t k = 0; k < 4; k++) {
		char ctx[200];
		struct csa_ticket tk;
		snprintf(ctx, sizeof(ctx), "{\"ticket_id\": \"%s\", \"client_name\": \"Ann\"}",
		         ids[k]);
		assert_int_equal(build(f, ctx, &tk, &err), 0);
		assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_ALL, &err), 0);
		csa_ticket_release(&tk);
	}
	char **got = NULL;
	size_t n = 0;
	/* in strcmp order, whatever the database's collation says */
	assert_int_equal(csa_store_ids(f->ws->store, &got, &n, &err), 0);
	assert_int_equal(n, 4);
	assert_string_equal(got[0], "A-1");
	assert_string_equal(got[1], "B-2");
	assert_string_equal(got[2], "C-3");
	assert_string_equal(got[3], "a-0");
	csa_store_ids_free(got, n);
	json_t *seen = json_array();
	assert_int_equal(csa_store_scan(f->ws->store, NULL, scan_ids_fn, seen, &err), 0);
	assert_int_equal(json_array_size(seen), 4);
	assert_string_equal(json_string_value(json_array_get(seen, 0)), "A-1");
	assert_string_equal(json_string_value(json_array_get(seen, 3)), "a-0");
	json_decref(seen);
	int64_t newest = 0;
	uint64_t sig = csa_store_sig(f->ws->store, "B-2", &newest);
	assert_true(sig != 0);
	assert_true(newest > 0);
	assert_int_equal(csa_store_sig(f->ws->store, "nope", &newest), 0);
	struct csa_ticket tk;
	assert_int_equal(csa_store_load(f->ws->store, "B-2", &tk, &err), 0);
	assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_T, &err), 0);
	csa_ticket_release(&tk);
	assert_true(csa_store_sig(f->ws->store, "B-2", &newest) != sig);
	json_t *t = NULL;
	assert_int_equal(csa_store_load_doc(f->ws->store, "B-2", CSA_DOC_T, &t, &err), 0);
	assert_string_equal(csa_json_str(t, "ticket_id"), "B-2");
	json_decref(t);
	assert_int_equal(csa_store_load_doc(f->ws->store, "nope", CSA_DOC_T, &t, &err), CSA_ENOENT);
	assert_null(t);
	assert_int_equal(csa_store_load_doc(f->ws->store, "../x", CSA_DOC_E, &t, &err), CSA_EINVAL);
}

/* A scratch workspace (the replay's) makes the same commits without
 * waiting for the disk: not one fsync from a commit, an update or a
 * checkpoint, and the documents rewritten in place (the same inode, no
 * file created and renamed), while every commit is read back whole, a
 * failed one writes nothing, and the workspace opens again as an ordinary
 * one with every ticket at its last commit. A durable workspace's commit
 * does sync. */
static void scratch_workspace_commits_without_syncing(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	struct csa_ticket tk, got;
	csa_fault_reset_counts();
	assert_int_equal(build(f, "{\"ticket_id\": \"D1\"}", &tk, &err), 0);
	assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_ALL, &err), 0);
	csa_ticket_release(&tk);
	assert_true(csa_fault_count(CSA_FS_FSYNC) > 0);

	char *dir = t_tmpdir("scratch");
	struct csa_ws *ws = NULL;
	if (csa_ws_init(dir, &err) || csa_ws_open_scratch(dir, &ws, &err))
		fail_msg("%s", err.msg);
	assert_true(ws->scratch);
	struct fx fs = {.dir = dir, .ws = ws};
	csa_fault_reset_counts();
	assert_int_equal(
	    build(&fs, "{\"ticket_id\": \"S1\", \"messages\": [{\"content\": \"x\"}]}", &tk,
	          &err),
	    0);
	assert_int_equal(csa_store_commit(ws->store, &tk, CSA_DOC_ALL, &err), 0);
	char epath[4200];
	struct stat before, after;
	assert_int_equal(csa_mesh_doc_path(ws, 0, "S1", epath, sizeof(epath), &err), 0);
	assert_int_equal(stat(epath, &before), 0);
	struct addc c = {ws, "second", "m-1"};
	assert_int_equal(csa_store_update(ws->store, "S1", 0, add_fn, &c, &err), 0);
	assert_int_equal(stat(epath, &after), 0);
	assert_true(after.st_ino == before.st_ino);
	assert_true(after.st_size > before.st_size);
	assert_int_equal(csa_fault_count(CSA_FS_RENAME), 0);
	json_object_set_new(tk.t, "priority", json_string("SOON"));
	assert_int_equal(csa_store_commit(ws->store, &tk, CSA_DOC_T, &err), CSA_ESCHEMA);
	csa_ticket_release(&tk);
	assert_int_equal(ws->store->ops->checkpoint(ws->store, &err), 0);
	assert_int_equal(csa_fault_count(CSA_FS_FSYNC), 0);
	assert_int_equal(csa_store_load(ws->store, "S1", &got, &err), 0);
	assert_int_equal(json_array_size(json_object_get(got.e, "messages")), 2);
	assert_string_equal(csa_json_str(got.t, "priority"), "MEDIUM");
	csa_ticket_release(&got);
	csa_ws_close(ws);

	if (csa_ws_open(dir, &ws, &err))
		fail_msg("%s", err.msg);
	assert_false(ws->scratch);
	assert_int_equal(csa_store_load(ws->store, "S1", &got, &err), 0);
	assert_int_equal(json_array_size(json_object_get(got.e, "messages")), 2);
	csa_ticket_release(&got);
	csa_ws_close(ws);
	t_rmrf(dir);
	free(dir);
}

/* A workspace made through the library is private to its user whatever
 * the program's umask: no group or other bits on any directory or file
 * (the mesh's documents, the journal, the lock, csa.json, kb/), also when
 * its directory existed before with 0755. */
static void new_workspace_is_private(void **state)
{
	(void)state;
	mode_t old = umask(022);
	char *base = t_tmpdir("private");
	char dir[600], first[4400];
	struct csa_err err = {0};
	struct csa_ws *ws = NULL;
	for (int existed = 0; existed < 2; existed++) {
		snprintf(dir, sizeof(dir), "%s/ws%d", base, existed);
		if (existed)
			assert_int_equal(mkdir(dir, 0755), 0);
		if (csa_ws_init(dir, &err) || csa_ws_open(dir, &ws, &err))
			fail_msg("%s", err.msg);
		struct csa_ticket tk;
		struct fx fxw = {.dir = dir, .ws = ws};
		assert_int_equal(build(&fxw,
		                       "{\"ticket_id\": \"P1\", \"client_name\": \"Ann\", "
		                       "\"messages\": [{\"content\": \"my card number\"}]}",
		                       &tk, &err),
		                 0);
		assert_int_equal(csa_store_commit(ws->store, &tk, CSA_DOC_ALL, &err), 0);
		csa_ticket_release(&tk);
		int n = t_loose_modes(dir, first, sizeof(first));
		csa_ws_close(ws);
		if (n != 0)
			fail_msg("%d paths of a new workspace are open to group or others, "
			         "the first %s",
			         n, first);
	}
	umask(old);
	t_rmrf(base);
	free(base);
}

/* csa verify reports a file and a directory that group or others may
 * access, naming each with its mode; --repair takes those bits away. */
static void verify_reports_loose_modes(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	struct csa_ticket tk;
	assert_int_equal(build(f, "{\"ticket_id\": \"M1\", \"client_name\": \"Ann\"}", &tk, &err),
	                 0);
	assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_ALL, &err), 0);
	csa_ticket_release(&tk);
	char file[600], dir[600];
	snprintf(file, sizeof(file), "%s/Tickets/T_ext/E_M1.json", f->dir);
	snprintf(dir, sizeof(dir), "%s/models", f->dir);
	assert_int_equal(chmod(file, 0644), 0);
	assert_int_equal(chmod(dir, 0755), 0);
	for (int repair = 0; repair < 2; repair++) {
		json_t *rep = NULL;
		assert_int_equal(csa_verify(f->ws, repair ? CSA_VERIFY_REPAIR : 0, NULL, &rep, &err),
		                 0);
		assert_int_equal(json_is_true(json_object_get(rep, "ok")), repair);
		json_t *probs = json_object_get(rep, "problems");
		assert_int_equal(json_array_size(probs), 2);
		int seen = 0;
		size_t i;
		json_t *p;
		json_array_foreach(probs, i, p)
		{
			assert_string_equal(csa_json_str(p, "problem"), "loose_mode");
			assert_int_equal(json_is_true(json_object_get(p, "repaired")), repair);
			const char *path = csa_json_str(p, "file"), *detail = csa_json_str(p, "detail");
			if (strcmp(path, "Tickets/T_ext/E_M1.json") == 0) {
				assert_non_null(strstr(detail, "file of mode 0644"));
				seen |= 1;
			} else if (strcmp(path, "models") == 0) {
				assert_non_null(strstr(detail, "directory of mode 0755"));
				seen |= 2;
			}
		}
		assert_int_equal(seen, 3);
		json_decref(rep);
	}
	struct stat st;
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	json_t *rep = NULL;
	assert_int_equal(csa_verify(f->ws, 0, NULL, &rep, &err), 0);
	assert_true(json_is_true(json_object_get(rep, "ok")));
	json_decref(rep);
}

/* ---- contract tests beyond commit_load_scan, on every backend ---------- */

static int build_many(struct fx *f, const char *const *ids, size_t n, struct csa_ticket *tks,
                      struct csa_ticket **ptrs)
{
	struct csa_err err = {0};
	for (size_t i = 0; i < n; i++) {
		char ctx[160];
		snprintf(ctx, sizeof(ctx), "{\"ticket_id\": \"%s\"}", ids[i]);
		if (build(f, ctx, &tks[i], &err))
			fail_msg("%s", err.msg);
		ptrs[i] = &tks[i];
	}
	return 0;
}

static int exists(struct fx *f, const char *id)
{
	struct csa_ticket tk;
	struct csa_err err = {0};
	int rc = csa_store_load(f->ws->store, id, &tk, &err);
	if (rc == CSA_OK)
		csa_ticket_release(&tk);
	else if (rc != CSA_ENOENT)
		fail_msg("load %s: %s", id, err.msg);
	return rc == CSA_OK;
}

/* A group commit writes all its tickets or none: one document that fails
 * its schema, or one ticket that exists already, and no ticket of the
 * group is written. */
static void group_commit_is_all_or_nothing(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	static const char *const ids[] = {"GA-1", "GA-2", "GA-3"};
	struct csa_ticket tks[3], *p[3];
	build_many(f, ids, 3, tks, p);
	json_object_set_new(tks[2].t, "priority", json_string("SOON"));
	assert_int_equal(csa_store_commit_many(f->ws->store, p, 3, CSA_DOC_ALL, &err), CSA_ESCHEMA);
	assert_non_null(strstr(err.msg, "T_GA-3.json: priority"));
	for (int i = 0; i < 3; i++)
		assert_false(exists(f, ids[i]));
	/* GA-2 alone, then the three again: GA-2 exists, nothing is written */
	json_object_set_new(tks[2].t, "priority", json_string("LOW"));
	assert_int_equal(csa_store_commit(f->ws->store, p[1], CSA_DOC_ALL, &err), 0);
	struct csa_ticket again[3], *q[3];
	build_many(f, ids, 3, again, q);
	assert_int_equal(csa_store_commit_many(f->ws->store, q, 3, CSA_DOC_ALL, &err), CSA_EEXIST);
	assert_non_null(strstr(err.msg, "GA-2"));
	assert_false(exists(f, "GA-1"));
	assert_false(exists(f, "GA-3"));
	/* and once nothing is in the way, the group lands whole */
	struct csa_ticket *r[2] = {p[0], p[2]};
	assert_int_equal(csa_store_commit_many(f->ws->store, r, 2, CSA_DOC_ALL, &err), 0);
	for (int i = 0; i < 3; i++) {
		assert_true(exists(f, ids[i]));
		csa_ticket_release(&tks[i]);
		csa_ticket_release(&again[i]);
	}
}

struct lock_race {
	struct csa_store *st;
	atomic_int got;
	int rc;
};

static void *lock_l1(void *arg)
{
	struct lock_race *r = arg;
	struct csa_lock *lk = NULL;
	struct csa_err err = {0};
	r->rc = csa_store_lock(r->st, "L1", &lk, &err);
	atomic_store(&r->got, 1);
	csa_store_unlock(r->st, lk);
	return NULL;
}

static void *lock_k1(void *arg)
{
	struct lock_race *r = arg;
	struct csa_lock *lk = NULL;
	struct csa_err err = {0};
	r->rc = csa_store_lock(r->st, "K-1", &lk, &err);
	atomic_store(&r->got, 1);
	csa_store_unlock(r->st, lk);
	return NULL;
}

/* A ticket's lock keeps a second locker waiting until it is released, and
 * holding it does not keep anyone from another ticket. */
static void locks_exclude_one_ticket_only(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	struct csa_lock *l1 = NULL, *l2 = NULL;
	assert_int_equal(csa_store_lock(f->ws->store, "L1", &l1, &err), 0);
	struct lock_race r = {.st = f->ws->store};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, lock_l1, &r), 0);
	struct timespec pause = {0, 300 * 1000 * 1000};
	nanosleep(&pause, NULL);
	assert_int_equal(atomic_load(&r.got), 0);
	assert_int_equal(csa_store_lock(f->ws->store, "L2", &l2, &err), 0);
	csa_store_unlock(f->ws->store, l2);
	assert_int_equal(atomic_load(&r.got), 0);
	assert_int_equal(csa_store_lock(f->ws->store, "../L1", &l2, &err), CSA_EINVAL);
	csa_store_unlock(f->ws->store, l1);
	pthread_join(th, NULL);
	assert_int_equal(atomic_load(&r.got), 1);
	assert_int_equal(r.rc, 0);
}

/* A process that dies holding a ticket's lock (SIGKILL: no unlock, no
 * close) does not keep it: the next locker gets it at once. */
static void lock_of_a_killed_process_is_released(void **state)
{
	struct fx *f = *state;
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	fflush(NULL);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		tpg_after_fork(g_pg);
		close(ready[0]);
		struct csa_ws *ws = NULL;
		struct csa_lock *lk = NULL;
		struct csa_err err = {0};
		if (csa_ws_open(f->dir, &ws, &err) || csa_store_lock(ws->store, "K-1", &lk, &err)) {
			fprintf(stderr, "locking child: %s\n", err.msg);
			_exit(2);
		}
		if (write(ready[1], "L", 1) != 1)
			_exit(3);
		for (;;)
			pause();
	}
	close(ready[1]);
	char b = 0;
	assert_int_equal(read(ready[0], &b, 1), 1);
	close(ready[0]);
	struct lock_race r = {.st = f->ws->store};
	pthread_t th;
	struct csa_lock *lk = NULL;
	struct csa_err err = {0};
	assert_int_equal(pthread_create(&th, NULL, lock_k1, &r), 0);
	struct timespec pause_ts = {0, 300 * 1000 * 1000};
	nanosleep(&pause_ts, NULL);
	assert_int_equal(atomic_load(&r.got), 0);
	int64_t t0 = csa_mono_ns();
	assert_int_equal(kill(child, SIGKILL), 0);
	int st;
	assert_int_equal(waitpid(child, &st, 0), child);
	pthread_join(th, NULL);
	assert_int_equal(atomic_load(&r.got), 1);
	assert_int_equal(r.rc, 0);
	assert_true(csa_mono_ns() - t0 < 5000000000LL);
	assert_int_equal(csa_store_lock(f->ws->store, "K-1", &lk, &err), 0);
	csa_store_unlock(f->ws->store, lk);
}

/* One writer process's update: the next version in all three documents
 * and one message on each side named after the writer and round. */
struct xp {
	struct csa_ws *ws;
	int proc, round;
};

static int xp_update(void *ctx, struct csa_ticket *tk, unsigned *docs, struct csa_err *err)
{
	struct xp *x = ctx;
	long v = tm_version(tk);
	if (v < 0)
		return csa_error(err, CSA_ECORRUPT, "ticket '%s' loaded torn", tk->id);
	tm_set(tk, v + 1);
	char id[32];
	snprintf(id, sizeof(id), "p%d-%d", x->proc, x->round);
	json_t *m = json_pack("{s:s, s:s}", "message_id", id, "content", id);
	const struct csa_config *cfg = csa_ws_config(x->ws);
	int rc = csa_ticket_add_message(cfg, tk, CSA_SIDE_EXTERNAL, m, csa_now_ms(), NULL, err);
	if (rc == CSA_OK)
		rc = csa_ticket_add_message(cfg, tk, CSA_SIDE_INTERNAL, m, csa_now_ms(), NULL, err);
	csa_config_unref(cfg);
	json_decref(m);
	*docs = CSA_DOC_ALL;
	return rc;
}

/* A ticket as a reader may see it: one commit's three documents. */
static int whole(const struct csa_ticket *tk)
{
	long v = tm_version(tk);
	return v >= 0 && (long)json_array_size(json_object_get(tk->e, "messages")) == v &&
	       (long)json_array_size(json_object_get(tk->i, "messages")) == v;
}

static _Noreturn void xp_writer(const char *dir, int proc, int rounds)
{
	struct csa_ws *ws = NULL;
	struct csa_err err = {0};
	if (csa_ws_open(dir, &ws, &err)) {
		fprintf(stderr, "writer %d: %s\n", proc, err.msg);
		_exit(2);
	}
	for (int k = 0; k < rounds; k++) {
		struct xp x = {ws, proc, k};
		if (csa_store_update(ws->store, "X-1", 0, xp_update, &x, &err)) {
			fprintf(stderr, "writer %d round %d: %s\n", proc, k, err.msg);
			_exit(3);
		}
	}
	csa_ws_close(ws);
	_exit(0);
}

static _Noreturn void xp_reader(const char *dir, const char *stop, pid_t parent)
{
	struct csa_ws *ws = NULL;
	struct csa_err err = {0};
	if (csa_ws_open(dir, &ws, &err)) {
		fprintf(stderr, "reader: %s\n", err.msg);
		_exit(2);
	}
	long loads = 0;
	for (int last = 0; !last; loads++) {
		last = access(stop, F_OK) == 0;
		if (getppid() != parent)
			_exit(6); /* the test is gone */
		struct csa_ticket tk;
		if (csa_store_load(ws->store, "X-1", &tk, &err)) {
			fprintf(stderr, "reader: %s\n", err.msg);
			_exit(3);
		}
		if (!whole(&tk)) {
			fprintf(stderr, "reader: ticket X-1 half-written: version %ld, %zu and %zu "
			                "messages\n",
			        tm_version(&tk), json_array_size(json_object_get(tk.e, "messages")),
			        json_array_size(json_object_get(tk.i, "messages")));
			_exit(4);
		}
		csa_ticket_release(&tk);
	}
	csa_ws_close(ws);
	_exit(loads > 1 ? 0 : 5);
}

/* Writer processes, each with its own handle on the store, update one
 * ticket at the same time under its lock while another process reads it
 * without one: no update is lost (the last version counts them all, every
 * message is there) and no read sees a ticket half-written. */
static void processes_commit_one_ticket_without_loss_or_tearing(void **state)
{
	struct fx *f = *state;
	enum { WRITERS = 3 };
	int rounds = t_size("rounds per writer process", 40, 10);
	static const char *const ids[] = {"X-1"};
	assert_int_equal(tm_create(f->ws, ids, 1), 0);
	char stop[4200];
	snprintf(stop, sizeof(stop), "%s/stop-reading", f->dir);
	fflush(NULL);
	pid_t me = getpid();
	pid_t reader = fork();
	assert_true(reader >= 0);
	if (reader == 0) {
		tpg_after_fork(g_pg);
		xp_reader(f->dir, stop, me);
	}
	pid_t w[WRITERS];
	for (int p = 0; p < WRITERS; p++) {
		w[p] = fork();
		assert_true(w[p] >= 0);
		if (w[p] == 0) {
			tpg_after_fork(g_pg);
			xp_writer(f->dir, p, rounds);
		}
	}
	int failed = 0;
	for (int p = 0; p < WRITERS; p++) {
		int st;
		assert_int_equal(waitpid(w[p], &st, 0), w[p]);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "writer %d ended with status %d\n", p, st);
			failed++;
		}
	}
	t_write(stop, "");
	int st;
	assert_int_equal(waitpid(reader, &st, 0), reader);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("the reader process ended with status %d (see its message above)", st);
	assert_int_equal(failed, 0);
	struct csa_ticket tk;
	struct csa_err err = {0};
	assert_int_equal(csa_store_load(f->ws->store, "X-1", &tk, &err), 0);
	assert_true(whole(&tk));
	assert_int_equal(tm_version(&tk), WRITERS * rounds);
	json_t *msgs = json_object_get(tk.e, "messages");
	for (int p = 0; p < WRITERS; p++)
		for (int k = 0; k < rounds; k++) {
			char id[32];
			snprintf(id, sizeof(id), "p%d-%d", p, k);
			int seen = 0;
			size_t i;
			json_t *m;
			json_array_foreach(msgs, i, m) seen += strcmp(csa_json_str(m, "message_id"), id) == 0;
			if (seen != 1)
				fail_msg("message %s stored %d times", id, seen);
		}
	csa_ticket_release(&tk);
}

/* After a mark, the stamp says whether every commit since went through
 * this handle: yes after its own, no once another handle (another
 * process, another node) commits, yes again after the next mark. The
 * stamp's value changes with each commit. */
static void stamp_tells_own_commits_from_others(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	static const char *const ids[] = {"S-1", "S-2"};
	assert_int_equal(tm_create(f->ws, ids, 2), 0);
	struct csa_ws *other = NULL;
	if (csa_ws_open(f->dir, &other, &err))
		fail_msg("%s", err.msg);
	int own = 0;
	csa_store_mark(f->ws->store, CSA_MARK_SEARCH);
	uint64_t s0 = csa_store_stamp(f->ws->store, CSA_MARK_SEARCH, &own);
	assert_true(own);
	struct csa_ticket tk;
	for (int round = 1; round <= 2; round++) {
		/* this handle's commit */
		assert_int_equal(csa_store_load(f->ws->store, "S-1", &tk, &err), 0);
		tm_set(&tk, round);
		assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_ALL, &err), 0);
		csa_ticket_release(&tk);
		uint64_t s1 = csa_store_stamp(f->ws->store, CSA_MARK_SEARCH, &own);
		assert_true(s1 != s0);
		assert_true(own);
		/* another handle's */
		assert_int_equal(csa_store_load(other->store, "S-2", &tk, &err), 0);
		tm_set(&tk, round);
		assert_int_equal(csa_store_commit(other->store, &tk, CSA_DOC_ALL, &err), 0);
		csa_ticket_release(&tk);
		s0 = csa_store_stamp(f->ws->store, CSA_MARK_SEARCH, &own);
		assert_true(s0 != s1);
		assert_false(own);
		csa_store_mark(f->ws->store, CSA_MARK_SEARCH);
		s0 = csa_store_stamp(f->ws->store, CSA_MARK_SEARCH, &own);
		assert_true(own);
	}
	csa_ws_close(other);
}

/* ---- PostgreSQL only ---------------------------------------------------- */

static long pg_count(const char *url, const char *sql)
{
	PGconn *c = PQconnectdb(url);
	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("connect: %s", PQerrorMessage(c));
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	long n = PQresultStatus(r) == PGRES_TUPLES_OK ? strtol(PQgetvalue(r, 0, 0), NULL, 10) : 0;
	PQclear(r);
	PQfinish(c);
	return n;
}

/* Migrations are recorded in schema_migrations and applied once (in a
 * schema named by the URL, and in a database's default schema): again on
 * a current database is a no-op, and a database whose schema is newer
 * than this build is refused with both versions named. */
static void pg_migrations_apply_once(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	int applied = -1;
	assert_int_equal(csa_pg_migrate_url(f->url, "test", &applied, &err), 0);
	assert_int_equal(applied, 0);
	assert_int_equal(pg_count(f->url, "SELECT count(*) FROM schema_migrations"),
	                 csa_pg_schema_version());
	char url[512], why[1024];
	assert_int_equal(
	    tpg_create_database(g_pg, "fresh_migrations", url, sizeof(url), why, sizeof(why)), 0);
	assert_int_equal(csa_pg_migrate_url(url, "test", &applied, &err), 0);
	assert_int_equal(applied, csa_pg_schema_version());
	assert_int_equal(csa_pg_migrate_url(url, "test", &applied, &err), 0);
	assert_int_equal(applied, 0);
	assert_int_equal(pg_count(url, "SELECT count(*) FROM schema_migrations"),
	                 csa_pg_schema_version());
	assert_int_equal(pg_count(url, "SELECT count(*) FROM csa_tickets"), 0);
	pg_count(url, "INSERT INTO schema_migrations (version, name) VALUES (999, 'future')");
	assert_int_equal(csa_pg_migrate_url(url, "test", &applied, &err), CSA_ESTATE);
	assert_non_null(strstr(err.msg, "schema version 999"));
	assert_non_null(strstr(err.msg, "127.0.0.1:"));
	char *dir = t_tmpdir("store-pg-future");
	struct csa_ws *ws = NULL;
	assert_int_equal(ws_with_url(dir, url, &err), 0);
	assert_int_equal(csa_ws_open(dir, &ws, &err), CSA_ESTATE);
	assert_non_null(strstr(err.msg, "newer than this csa knows"));
	t_rmrf(dir);
	free(dir);
}

/* A ticket loaded, then committed by someone else, is not written over
 * from the stale copy: the database fences every update with the version
 * it was loaded at, so even a lock lost with its connection loses no
 * update. */
static void pg_stale_commit_is_refused(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	static const char *const ids[] = {"F-1"};
	assert_int_equal(tm_create(f->ws, ids, 1), 0);
	struct csa_ticket a, b, got;
	assert_int_equal(csa_store_load(f->ws->store, "F-1", &a, &err), 0);
	assert_int_equal(csa_store_load(f->ws->store, "F-1", &b, &err), 0);
	tm_set(&a, 1);
	assert_int_equal(csa_store_commit(f->ws->store, &a, CSA_DOC_ALL, &err), 0);
	tm_set(&a, 2); /* the committed copy goes on at its new version */
	assert_int_equal(csa_store_commit(f->ws->store, &a, CSA_DOC_ALL, &err), 0);
	tm_set(&b, 7);
	assert_int_equal(csa_store_commit(f->ws->store, &b, CSA_DOC_ALL, &err), CSA_ECONFLICT);
	assert_non_null(strstr(err.msg, "'F-1'"));
	assert_non_null(strstr(err.msg, "changed it since it was loaded"));
	assert_int_equal(csa_store_load(f->ws->store, "F-1", &got, &err), 0);
	assert_int_equal(tm_version(&got), 2);
	csa_ticket_release(&got);
	csa_ticket_release(&a);
	csa_ticket_release(&b);
}

/* Whether two documents are the same but for the stamp every commit
 * writes. */
static int same_but(const json_t *a, const json_t *b, const char *stamp)
{
	json_t *x = json_copy((json_t *)a), *y = json_copy((json_t *)b);
	json_object_del(x, stamp);
	json_object_del(y, stamp);
	int same = json_equal(x, y) && json_object_size(x) > 3;
	json_decref(x);
	json_decref(y);
	return same;
}

/* Whether ticket 'id' has the same three documents in both stores, the
 * commits' stamps aside. */
static int same_ticket(struct csa_ws *a, struct csa_ws *b, const char *id)
{
	struct csa_ticket x, y;
	struct csa_err err = {0};
	if (csa_store_load(a->store, id, &x, &err))
		return 0;
	int same = csa_store_load(b->store, id, &y, &err) == CSA_OK &&
	           same_but(x.e, y.e, "last_updated") && same_but(x.i, y.i, "last_updated") &&
	           same_but(x.t, y.t, "last_synchronized");
	if (!err.code)
		csa_ticket_release(&y);
	csa_ticket_release(&x);
	return same;
}

/* csa migrate and csa export: a workspace's files into the database and
 * back out, the documents unchanged; a second run copies nothing, and a
 * ticket that differs on the two sides is named and left alone. */
static void pg_migrate_and_export(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	char *src_dir = t_tmpdir("store-migrate"), *out_dir = t_tmpdir("store-export");
	struct csa_ws *src = NULL, *out = NULL;
	assert_int_equal(csa_ws_init(src_dir, &err), 0);
	assert_int_equal(csa_ws_open_files(src_dir, &src, &err), 0);
	static const char *const ids[] = {"M-1", "M-2", "M-3"};
	assert_int_equal(tm_create(src, ids, 3), 0);
	/* a trained model goes along, and an article over the database's default */
	assert_int_equal(csa_blobs_put(src->blobs, "models/category.model", "weights", 7, &err), 0);
	assert_int_equal(csa_blobs_put(src->blobs, "kb/refunds.md", "# Refunds\nours", 15, &err), 0);
	json_t *rep = NULL;
	assert_int_equal(csa_ws_transfer(src, f->ws, &rep, &err), 0);
	assert_int_equal(csa_json_int(rep, "copied", -1), 3);
	assert_int_equal(json_array_size(json_object_get(rep, "conflicts")), 0);
	assert_true(csa_json_int(rep, "documents_copied", -1) >= 2);
	json_decref(rep);
	char *doc;
	size_t dlen;
	assert_int_equal(csa_blobs_get(f->ws->blobs, "models/category.model", 100, &doc, &dlen, &err),
	                 0);
	assert_string_equal(doc, "weights");
	free(doc);
	assert_int_equal(csa_blobs_get(f->ws->blobs, "kb/refunds.md", 100, &doc, &dlen, &err), 0);
	assert_string_equal(doc, "# Refunds\nours");
	free(doc);
	for (size_t k = 0; k < 3; k++)
		assert_true(same_ticket(src, f->ws, ids[k]));
	/* again: nothing to copy */
	assert_int_equal(csa_ws_transfer(src, f->ws, &rep, &err), 0);
	assert_int_equal(csa_json_int(rep, "copied", -1), 0);
	assert_int_equal(csa_json_int(rep, "documents_copied", -1), 0);
	assert_int_equal(csa_json_int(rep, "same", -1), 3);
	json_decref(rep);
	/* a ticket changed on one side only: named, not overwritten */
	struct csa_ticket tk;
	assert_int_equal(csa_store_load(src->store, "M-2", &tk, &err), 0);
	tm_set(&tk, 9);
	assert_int_equal(csa_store_commit(src->store, &tk, CSA_DOC_ALL, &err), 0);
	csa_ticket_release(&tk);
	assert_int_equal(csa_ws_transfer(src, f->ws, &rep, &err), 0);
	assert_string_equal(json_string_value(json_array_get(json_object_get(rep, "conflicts"), 0)),
	                    "M-2");
	json_decref(rep);
	assert_false(same_ticket(src, f->ws, "M-2"));
	/* back out into files */
	assert_int_equal(csa_ws_init(out_dir, &err), 0);
	assert_int_equal(csa_ws_open_files(out_dir, &out, &err), 0);
	assert_int_equal(csa_ws_transfer(f->ws, out, &rep, &err), 0);
	assert_int_equal(csa_json_int(rep, "copied", -1), 3);
	json_decref(rep);
	for (size_t k = 0; k < 3; k++)
		assert_true(same_ticket(f->ws, out, ids[k]));
	csa_ws_close(src);
	csa_ws_close(out);
	t_rmrf(src_dir);
	t_rmrf(out_dir);
	free(src_dir);
	free(out_dir);
}

/* A document damaged in the database (by hand, by another program) is
 * named with its field and the server when loaded, an update of its
 * ticket writes nothing, and csa verify reports it, with the invariants
 * of the file mesh that still apply to a database (schema, drift). */
static void pg_damaged_document_is_named_and_nothing_written(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	static const char *const ids[] = {"D-1"};
	assert_int_equal(tm_create(f->ws, ids, 1), 0);
	pg_count(f->url, "UPDATE csa_tickets SET t = jsonb_set(t, '{priority}', '\"SOON\"') "
	                 "WHERE id = 'D-1'");
	long before = pg_count(f->url, "SELECT version FROM csa_tickets WHERE id = 'D-1'");
	struct csa_ticket tk;
	assert_int_equal(csa_store_load(f->ws->store, "D-1", &tk, &err), CSA_ESCHEMA);
	assert_non_null(strstr(err.msg, "in PostgreSQL at 127.0.0.1:"));
	assert_non_null(strstr(err.msg, "T_D-1.json: priority"));
	struct addc c = {f->ws, "x", NULL};
	assert_int_equal(csa_store_update(f->ws->store, "D-1", 0, add_fn, &c, &err), CSA_ESCHEMA);
	assert_int_equal(pg_count(f->url, "SELECT version FROM csa_tickets WHERE id = 'D-1'"),
	                 before);
	/* csa verify finds it, and a conversation changed an hour after the
	 * last synchronisation (sync_drift) */
	static const char *const more[] = {"D-2", "D-3"};
	assert_int_equal(tm_create(f->ws, more, 2), 0);
	pg_count(f->url, "UPDATE csa_tickets SET e = jsonb_set(e, '{last_updated}', "
	                 "to_jsonb(to_char(((t->>'last_synchronized')::timestamptz + interval '1 "
	                 "hour') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))) "
	                 "WHERE id = 'D-2'");
	json_t *rep = NULL;
	assert_int_equal(csa_verify(f->ws, 0, NULL, &rep, &err), 0);
	assert_false(json_is_true(json_object_get(rep, "ok")));
	assert_int_equal(csa_json_int(rep, "tickets", -1), 3);
	json_t *probs = json_object_get(rep, "problems");
	assert_int_equal(json_array_size(probs), 2);
	json_t *p0 = json_array_get(probs, 0), *p1 = json_array_get(probs, 1);
	assert_string_equal(csa_json_str(p0, "ticket"), "D-1");
	assert_string_equal(csa_json_str(p0, "problem"), "schema");
	assert_string_equal(csa_json_str(p1, "ticket"), "D-2");
	assert_string_equal(csa_json_str(p1, "problem"), "sync_drift");
	json_decref(rep);
	/* the live check (the monitor's) remembers clean tickets by version
	 * and reads again only what a commit changed */
	struct csa_verify_memo *memo = csa_verify_memo_new();
	pg_count(f->url, "UPDATE csa_tickets SET committed_at = committed_at - interval '1 minute'");
	for (int round = 0; round < 2; round++) {
		assert_int_equal(csa_verify(f->ws, CSA_VERIFY_LIVE, memo, &rep, &err), 0);
		assert_int_equal(csa_json_int(rep, "unchanged_since_last_check", -1), round);
		json_decref(rep);
	}
	struct csa_ticket d3;
	assert_int_equal(csa_store_load(f->ws->store, "D-3", &d3, &err), 0);
	assert_int_equal(csa_store_commit(f->ws->store, &d3, CSA_DOC_ALL, &err), 0);
	csa_ticket_release(&d3);
	assert_int_equal(csa_verify(f->ws, CSA_VERIFY_LIVE, memo, &rep, &err), 0);
	assert_int_equal(csa_json_int(rep, "unchanged_since_last_check", -1), 0);
	json_decref(rep);
	csa_verify_memo_free(memo);
}

/* The server crashes and comes back: while it is down, a load and a lock
 * fail at once with the server named; a lock held across it is released
 * without harm; once it is back (crash recovery from its WAL), what was
 * acknowledged before is there, the pooled connections that died are
 * replaced, and updates, loads and locks work again. */
static void pg_restart_is_survived(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	char why[2048];
	static const char *const ids[] = {"R-1"};
	assert_int_equal(tm_create(f->ws, ids, 1), 0);
	struct csa_lock *held = NULL, *lk = NULL;
	assert_int_equal(csa_store_lock(f->ws->store, "R-1", &held, &err), 0);
	if (tpg_server_stop(g_pg, why, sizeof(why)))
		fail_msg("%s", why);
	int64_t t0 = csa_mono_ns();
	struct csa_ticket tk;
	assert_int_equal(csa_store_load(f->ws->store, "R-1", &tk, &err), CSA_EBACKEND);
	assert_non_null(strstr(err.msg, tpg_hostport(g_pg)));
	assert_int_equal(csa_store_lock(f->ws->store, "R-2", &lk, &err), CSA_EBACKEND);
	assert_non_null(strstr(err.msg, "cannot lock ticket 'R-2'"));
	assert_true(csa_mono_ns() - t0 < 5000000000LL);
	csa_store_unlock(f->ws->store, held); /* its connection is gone */
	if (tpg_server_start(g_pg, why, sizeof(why)))
		fail_msg("%s", why);
	struct addc c = {f->ws, "after the restart", NULL};
	assert_int_equal(csa_store_update(f->ws->store, "R-1", 0, add_fn, &c, &err), 0);
	assert_int_equal(csa_store_load(f->ws->store, "R-1", &tk, &err), 0);
	assert_int_equal(json_array_size(json_object_get(tk.e, "messages")), 1);
	assert_int_equal(tm_version(&tk), 0);
	csa_ticket_release(&tk);
}

static int closed_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(a);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
	close(s); /* bound, never listened on, closed: connections are refused */
	return ntohs(a.sin_port);
}

/* Errors say what failed and where: the server that refused (host:port,
 * and whether the URL came from DATABASE_URL or csa.json), never the
 * password; a URL libpq cannot read; a store.url of another scheme. */
static void pg_errors_name_what_and_where(void **state)
{
	(void)state;
	struct csa_err err = {0};
	char *dir = t_tmpdir("store-pg-errors");
	char url[200], hp[64], sub[600];
	int port = closed_port();
	snprintf(url, sizeof(url), "postgresql://csa:sekrit-pw@127.0.0.1:%d/cs_ai_system", port);
	snprintf(hp, sizeof(hp), "127.0.0.1:%d", port);
	struct csa_ws *ws = NULL;
	snprintf(sub, sizeof(sub), "%s/a", dir);
	assert_int_equal(ws_with_url(sub, url, &err), 0);
	assert_int_equal(csa_ws_open(sub, &ws, &err), CSA_EBACKEND);
	assert_non_null(strstr(err.msg, hp));
	assert_non_null(strstr(err.msg, "csa.json store.url"));
	assert_non_null(strstr(err.msg, "refused"));
	assert_null(strstr(err.msg, "sekrit"));
	/* DATABASE_URL wins over the workspace's own (file) store */
	snprintf(sub, sizeof(sub), "%s/b", dir);
	assert_int_equal(csa_ws_init(sub, &err), 0);
	setenv("DATABASE_URL", url, 1);
	int rc = csa_ws_open(sub, &ws, &err);
	unsetenv("DATABASE_URL");
	assert_int_equal(rc, CSA_EBACKEND);
	assert_non_null(strstr(err.msg, "DATABASE_URL: cannot connect to PostgreSQL at"));
	assert_non_null(strstr(err.msg, hp));
	snprintf(sub, sizeof(sub), "%s/c", dir);
	assert_int_equal(ws_with_url(sub, "postgresql://a@b@c/?bogus=1", &err), 0);
	assert_int_equal(csa_ws_open(sub, &ws, &err), CSA_EINVAL);
	assert_non_null(strstr(err.msg, "csa.json store.url is not a PostgreSQL connection URL"));
	snprintf(sub, sizeof(sub), "%s/d", dir);
	assert_int_equal(ws_with_url(sub, "mysql://db/x", &err), 0);
	assert_int_equal(csa_ws_open(sub, &ws, &err), CSA_ESCHEMA);
	assert_non_null(strstr(err.msg, "store.url"));
	t_rmrf(dir);
	free(dir);
}

/* The CLI over DATABASE_URL: init creates the tables in a new schema
 * (and reports one it cannot reach), create, show, list and verify reach
 * the database (no ticket file is written), and backup, which copies
 * files, says that it does not cover the database yet. */
/* csa backup of the database while another process writes: the tables
 * as of one transaction (a writer's group commits of two tickets are in
 * the backup whole or not at all), restored into an empty database where
 * every ticket loads and verify passes. */
static void pg_backup_during_writes_restores_one_instant(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	pid_t pid = fork();
	if (pid == 0) {
		struct csa_ws *ws;
		if (csa_ws_open(f->dir, &ws, &err))
			_exit(2);
		for (int i = 0;; i++) {
			char a[32], b[32];
			snprintf(a, sizeof(a), "W%05d-a", i);
			snprintf(b, sizeof(b), "W%05d-b", i);
			const char *ids[] = {a, b};
			if (tm_create(ws, ids, 2))
				_exit(3);
		}
	}
	char **ids = NULL;
	size_t n = 0;
	for (int tries = 0; tries < 600 && n < 20; tries++) {
		csa_store_ids_free(ids, n);
		assert_int_equal(csa_store_ids(f->ws->store, &ids, &n, &err), 0);
		usleep(10000);
	}
	csa_store_ids_free(ids, n);
	assert_true(n >= 20);
	/* beside the tickets, tables with an identity column and a foreign key
	 * (the controller's alerts, a rollback point and its document) */
	pg_count(f->url, "WITH p AS (INSERT INTO csa_auto_points (id, manifest) VALUES ('p1', "
	                 "'{}') RETURNING id) INSERT INTO csa_auto_point_docs (point_id, name, body) "
	                 "SELECT id, 'csa.json', '\\x7b7d' FROM p");
	pg_count(f->url, "INSERT INTO csa_auto_alerts (created_ms, type, severity, scope, detail) "
	                 "VALUES (1, 'quality', 'warning', 'ALL', 'dip')");
	char *bk = t_tmpdir("store-pg-backup");
	json_t *rep = NULL;
	assert_int_equal(csa_backup_take(f->ws, bk, &rep, &err), 0);
	long backed = csa_json_int(rep, "tickets", -1);
	json_decref(rep);
	int status;
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	assert_true(WIFSIGNALED(status)); /* it was still writing */
	assert_true(backed >= 20 && backed % 2 == 0);

	char url2[512], why[1024], name[32];
	snprintf(name, sizeof(name), "store_%d", ++g_db_seq);
	assert_int_equal(tpg_create_schema(g_pg, name, url2, sizeof(url2), why, sizeof(why)), 0);
	char *target = t_tmpdir("store-pg-restored");
	setenv("DATABASE_URL", url2, 1);
	if (csa_backup_restore(bk, target, NULL, &err))
		fail_msg("restore: %s", err.msg);
	struct csa_ws *rws = NULL;
	assert_int_equal(csa_ws_open(target, &rws, &err), 0);
	unsetenv("DATABASE_URL");
	assert_int_equal(csa_store_ids(rws->store, &ids, &n, &err), 0);
	assert_int_equal((long)n, backed);
	for (size_t k = 0; k < n; k++) {
		struct csa_ticket tk;
		if (csa_store_load(rws->store, ids[k], &tk, &err))
			fail_msg("restored %s does not load: %s", ids[k], err.msg);
		csa_ticket_release(&tk);
		/* a pair of one group commit: W<i>-a and W<i>-b side by side */
		if (k % 2 == 1 && strncmp(ids[k - 1], ids[k], 6) != 0)
			fail_msg("group commit split in the backup: %s beside %s", ids[k - 1], ids[k]);
	}
	csa_store_ids_free(ids, n);
	assert_int_equal(pg_count(url2, "SELECT count(*) FROM csa_auto_point_docs WHERE "
	                                "point_id = 'p1' AND body = '\\x7b7d'"),
	                 1);
	/* an identity drawn after the restore follows the restored ones */
	assert_int_equal(pg_count(url2, "INSERT INTO csa_auto_alerts (created_ms, type, severity, "
	                                "scope, detail) VALUES (2, 'quality', 'warning', 'ALL', "
	                                "'again') RETURNING id"),
	                 2);
	json_t *vrep = NULL;
	assert_int_equal(csa_verify(rws, 0, NULL, &vrep, &err), 0);
	assert_true(json_is_true(json_object_get(vrep, "ok")));
	json_decref(vrep);
	csa_ws_close(rws);
	t_rmrf(bk);
	t_rmrf(target);
	free(bk);
	free(target);
}

static void pg_cli_end_to_end(void **state)
{
	(void)state;
	char *dir = t_tmpdir("store-pg-cli"), ws[4200], *out = NULL, *err = NULL;
	char url[512], why[1024];
	assert_int_equal(tpg_create_schema(g_pg, "cli_end_to_end", url, sizeof(url), why, sizeof(why)),
	                 0);
	snprintf(ws, sizeof(ws), "%s/ws", dir);
	char refused[200];
	snprintf(refused, sizeof(refused), "postgresql://csa:pw@127.0.0.1:%d/x", closed_port());
	setenv("DATABASE_URL", refused, 1);
	assert_int_not_equal(t_csa(NULL, NULL, &err, "init '%s'", ws), 0);
	assert_non_null(strstr(err, "DATABASE_URL: cannot connect to PostgreSQL at 127.0.0.1:"));
	free(err);
	setenv("DATABASE_URL", url, 1);
	assert_int_equal(t_csa(NULL, NULL, NULL, "init '%s'", ws), 0);
	assert_int_equal(pg_count(url, "SELECT count(*) FROM schema_migrations"),
	                 csa_pg_schema_version());
	assert_int_equal(t_csa("{\"ticket_id\": \"CLI-1\", \"client_name\": \"Ann\", \"messages\": "
	                       "[{\"content\": \"cannot log in\"}]}",
	                       NULL, NULL, "ticket create --json - --dir '%s'", ws),
	                 0);
	assert_int_equal(t_csa(NULL, &out, NULL, "show CLI-1 --dir '%s'", ws), 0);
	json_t *j = json_loads(out, 0, NULL);
	assert_non_null(j);
	assert_string_equal(csa_json_str(json_object_get(j, "workflow"), "client_name"), "Ann");
	/* the spec's key order, not jsonb's */
	assert_true(strstr(out, "\"ticket_id\"") < strstr(out, "\"client_name\""));
	json_decref(j);
	free(out);
	assert_int_equal(t_csa(NULL, &out, NULL, "list --dir '%s'", ws), 0);
	assert_non_null(strstr(out, "CLI-1"));
	free(out);
	assert_int_equal(t_csa(NULL, &out, NULL, "verify --json --dir '%s'", ws), 0);
	j = json_loads(out, 0, NULL);
	assert_non_null(j);
	assert_true(json_is_true(json_object_get(j, "ok")));
	assert_int_equal(csa_json_int(j, "tickets", -1), 1);
	json_decref(j);
	free(out);
	char bk[4300];
	snprintf(bk, sizeof(bk), "%s/backup", dir);
	/* csa backup: the database's tables as of one transaction */
	assert_int_equal(t_csa(NULL, &out, NULL, "backup --out '%s' --dir '%s'", bk, ws), 0);
	assert_non_null(strstr(out, "\"tickets\": 1"));
	free(out);
	char url2[512];
	assert_int_equal(
	    tpg_create_schema(g_pg, "cli_restored", url2, sizeof(url2), why, sizeof(why)), 0);
	/* a database's backup without a database to go into: refused */
	unsetenv("DATABASE_URL");
	assert_int_not_equal(t_csa(NULL, NULL, &err, "restore '%s' --dir '%s/r0'", bk, dir), 0);
	assert_non_null(strstr(err, "holds a database"));
	free(err);
	setenv("DATABASE_URL", url2, 1);
	assert_int_equal(t_csa(NULL, NULL, NULL, "restore '%s' --dir '%s/r1'", bk, dir), 0);
	assert_int_equal(pg_count(url2, "SELECT count(*) FROM csa_tickets WHERE id = 'CLI-1'"), 1);
	assert_int_equal(t_csa(NULL, &out, NULL, "show CLI-1 --dir '%s/r1'", dir), 0);
	assert_non_null(strstr(out, "cannot log in"));
	free(out);
	/* versions drawn after the restore never repeat one restored */
	assert_int_equal(t_csa("{\"ticket_id\": \"CLI-2\", \"client_name\": \"Bo\", \"messages\": "
	                       "[{\"content\": \"refund\"}]}",
	                       NULL, NULL, "ticket create --json - --dir '%s/r1'", dir),
	                 0);
	assert_int_equal(pg_count(url2, "SELECT count(DISTINCT version) FROM csa_tickets"), 2);
	assert_int_equal(t_csa(NULL, NULL, NULL, "verify --dir '%s/r1'", dir), 0);
	/* and only into an empty database */
	assert_int_not_equal(t_csa(NULL, NULL, &err, "restore '%s' --dir '%s/r2'", bk, dir), 0);
	assert_non_null(strstr(err, "is not empty: table csa_")); /* csa_blobs: the configuration */
	free(err);
	setenv("DATABASE_URL", url, 1);
	unsetenv("DATABASE_URL");
	char tfile[4300];
	snprintf(tfile, sizeof(tfile), "%s/Tickets/tickets/T_CLI-1.json", ws);
	assert_int_not_equal(access(tfile, F_OK), 0);
	assert_int_equal(pg_count(url, "SELECT count(*) FROM csa_tickets WHERE id = 'CLI-1'"), 1);
	/* csa export: the database's tickets back into the workspace's own
	 * files, which serve once DATABASE_URL is gone */
	setenv("DATABASE_URL", url, 1);
	assert_int_equal(t_csa(NULL, &out, NULL, "export --dir '%s'", ws), 0);
	assert_non_null(strstr(out, "\"copied\": 1"));
	free(out);
	unsetenv("DATABASE_URL");
	assert_int_equal(access(tfile, F_OK), 0);
	assert_int_equal(t_csa(NULL, &out, NULL, "show CLI-1 --dir '%s'", ws), 0);
	assert_non_null(strstr(out, "cannot log in"));
	free(out);
	assert_int_not_equal(t_csa(NULL, NULL, &err, "migrate --dir '%s'", ws), 0);
	assert_non_null(strstr(err, "are in files already"));
	free(err);
	/* a files workspace's backup is not restored onto the database */
	char bk2[4300];
	snprintf(bk2, sizeof(bk2), "%s/backup-files", dir);
	assert_int_equal(t_csa(NULL, NULL, NULL, "backup --out '%s' --dir '%s'", bk2, ws), 0);
	setenv("DATABASE_URL", url2, 1);
	assert_int_not_equal(t_csa(NULL, NULL, &err, "restore '%s' --dir '%s/r3'", bk2, dir), 0);
	assert_non_null(strstr(err, "DATABASE_URL is set"));
	free(err);
	unsetenv("DATABASE_URL");
	t_rmrf(dir);
	free(dir);
}

/* ---- the memory store only ------------------------------------------------- */

/* Files in directory 'dir' (no recursion), "." and ".." aside. */
static int files_in(const char *dir)
{
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "find '%s' -type f | wc -l", dir);
	FILE *p = popen(cmd, "r");
	int n = -1;
	assert_non_null(p);
	assert_int_equal(fscanf(p, "%d", &n), 1);
	pclose(p);
	return n;
}

/* The same commits on a scratch workspace's files and on a memory store
 * give the same loads: the documents to the last bit of every real (as
 * they read back from the bytes written, rounded to 10 digits), the same
 * key order, the same bytes in tk->loaded; and the memory store writes no
 * ticket file. Read through the backend itself, not the document cache in
 * front of it. */
static void memory_store_loads_what_the_files_give(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	char *dir = t_tmpdir("store-mem-files");
	struct csa_ws *files = NULL;
	if (csa_ws_init(dir, &err) || csa_ws_open_scratch(dir, &files, &err))
		fail_msg("%s", err.msg);
	struct fx ff = {.dir = dir, .ws = files};
	struct fx *both[2] = {&ff, f};
	/* the commits' stamps from a pinned clock, the same on both */
	setenv("CSA_FAKE_NOW_MS", "1795734186123", 1);
	for (int w = 0; w < 2; w++) {
		struct csa_ticket tk;
		assert_int_equal(build(both[w],
		                       "{\"ticket_id\": \"R1\", \"messages\": [{\"message_id\": "
		                       "\"m-1\", \"content\": "
		                       "\"caf\u00e9 \\\"x\\\"\"}]}",
		                       &tk, &err),
		                 0);
		json_t *meta = json_object_get(json_array_get(json_object_get(tk.e, "messages"), 0),
		                               "metadata");
		json_object_set_new(meta, "platform_specific",
		                    json_pack("{s:[f, f, f, f, f], s:I}", "reals", 0.1, 1.0 / 3,
		                              2.0 / 3 * 1e-5, -0.0, 0.99999999999, "big",
		                              (json_int_t)9007199254740993LL));
		assert_int_equal(csa_store_commit(both[w]->ws->store, &tk, CSA_DOC_ALL, &err), 0);
		csa_ticket_release(&tk);
		struct addc c = {both[w]->ws, "second", "m-2"};
		assert_int_equal(csa_store_update(both[w]->ws->store, "R1", 0, add_fn, &c, &err),
		                 0);
		/* a commit of T alone: E and I keep the bytes they were loaded with */
		assert_int_equal(both[w]->ws->store->ops->load(both[w]->ws->store, "R1", &tk, &err),
		                 0);
		json_object_set_new(tk.t, "assigned_member", json_string("kim"));
		json_object_set_new(tk.e, "conversation_status", json_string("resolved"));
		assert_int_equal(csa_store_commit(both[w]->ws->store, &tk, CSA_DOC_T, &err), 0);
		csa_ticket_release(&tk);
	}
	unsetenv("CSA_FAKE_NOW_MS");
	struct csa_ticket a, b;
	assert_int_equal(files->store->ops->load(files->store, "R1", &a, &err), 0);
	assert_int_equal(f->ws->store->ops->load(f->ws->store, "R1", &b, &err), 0);
	assert_int_equal(a.exists, b.exists);
	json_t *da[3] = {a.e, a.i, a.t}, *db[3] = {b.e, b.i, b.t};
	for (int k = 0; k < 3; k++) {
		size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17);
		char *sa = json_dumps(da[k], flags), *sb = json_dumps(db[k], flags);
		assert_string_equal(sa, sb);
		free(sa);
		free(sb);
		assert_int_equal(a.loaded_len[k], b.loaded_len[k]);
		assert_memory_equal(a.loaded[k], b.loaded[k], a.loaded_len[k]);
	}
	assert_string_equal(csa_json_str(b.e, "conversation_status"), "active");
	assert_int_equal(json_array_size(json_object_get(b.e, "messages")), 2);
	/* what the reals read back as, not what was committed */
	double third = json_real_value(json_array_get(
	    json_object_get(
	        json_object_get(json_object_get(json_array_get(json_object_get(b.e, "messages"), 0),
	                                        "metadata"),
	                        "platform_specific"),
	        "reals"),
	    1));
	assert_true(third != 1.0 / 3 && fabs(third - 1.0 / 3) < 1e-10);
	csa_ticket_release(&a);
	csa_ticket_release(&b);
	/* one document alone reads as the same */
	json_t *t = NULL;
	assert_int_equal(csa_store_load_doc(f->ws->store, "R1", CSA_DOC_T, &t, &err), 0);
	assert_string_equal(csa_json_str(t, "assigned_member"), "kim");
	json_decref(t);
	char tickets[4200];
	snprintf(tickets, sizeof(tickets), "%s/Tickets", f->dir);
	assert_int_equal(files_in(tickets), 0);
	snprintf(tickets, sizeof(tickets), "%s/Tickets", dir);
	assert_int_equal(files_in(tickets), 3);
	csa_ws_close(files);
	t_rmrf(dir);
	free(dir);
}

/* A document over the size limit is refused, as by the mesh, and nothing
 * is stored. */
static void memory_store_keeps_the_limits(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	struct csa_ticket tk;
	limit(f, "max_document_bytes", 2000);
	assert_int_equal(build(f, "{\"ticket_id\": \"L1\"}", &tk, &err), 0);
	char big[3000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	json_object_set_new(tk.t, "assigned_member", json_string(big));
	assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_ALL, &err), CSA_ELIMIT);
	assert_non_null(strstr(err.msg, "T_L1.json would be"));
	assert_false(exists(f, "L1"));
	csa_ticket_release(&tk);
}

struct mem_writer {
	struct csa_ws *ws;
	int id, rc;
};

static void *mem_write(void *arg)
{
	struct mem_writer *w = arg;
	struct csa_err err = {0};
	for (int k = 0; k < 25 && w->rc == CSA_OK; k++) {
		char mid[32];
		snprintf(mid, sizeof(mid), "w%d-%d", w->id, k);
		struct addc c = {w->ws, mid, mid};
		w->rc = csa_store_update(w->ws->store, "W1", 0, add_fn, &c, &err);
	}
	return NULL;
}

/* Threads updating one ticket each hold its lock from load to commit:
 * none of their messages is lost. Every commit is this handle's (there
 * is no other), so the stamp moves and says so; nothing outlives the
 * process, so there is no position to save an index under. */
static void memory_store_threads_lose_nothing(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	struct csa_ticket tk;
	assert_int_equal(build(f, "{\"ticket_id\": \"W1\"}", &tk, &err), 0);
	assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_ALL, &err), 0);
	csa_ticket_release(&tk);
	int own = 0;
	csa_store_mark(f->ws->store, CSA_MARK_SEARCH);
	uint64_t s0 = csa_store_stamp(f->ws->store, CSA_MARK_SEARCH, &own);
	struct mem_writer w[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct mem_writer){f->ws, i, CSA_OK};
		assert_int_equal(pthread_create(&th[i], NULL, mem_write, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].rc, 0);
	}
	assert_int_equal(f->ws->store->ops->load(f->ws->store, "W1", &tk, &err), 0);
	assert_int_equal(json_array_size(json_object_get(tk.e, "messages")), 100);
	csa_ticket_release(&tk);
	uint64_t s1 = csa_store_stamp(f->ws->store, CSA_MARK_SEARCH, &own);
	assert_true(s1 != s0);
	assert_true(own);
	assert_int_equal(csa_store_position(f->ws->store), 0);
	struct csa_store_stats stats;
	csa_store_stats(f->ws->store, &stats);
	assert_int_equal(stats.commits, 101);
}

/* The store's contract, on whichever backend 'setup' opens. */
#define CONTRACT_TESTS(setup)                                                                      \
	cmocka_unit_test_setup_teardown(commit_load_scan, setup, teardown),                        \
	    cmocka_unit_test_setup_teardown(unnamed_documents_keep_their_bytes, setup, teardown),  \
	    cmocka_unit_test_setup_teardown(ids_sig_and_one_document, setup, teardown),            \
	    cmocka_unit_test_setup_teardown(group_commit_is_all_or_nothing, setup, teardown),      \
	    cmocka_unit_test_setup_teardown(locks_exclude_one_ticket_only, setup, teardown),       \
	    cmocka_unit_test_setup_teardown(lock_of_a_killed_process_is_released, setup,           \
	                                    teardown),                                             \
	    cmocka_unit_test_setup_teardown(processes_commit_one_ticket_without_loss_or_tearing,   \
	                                    setup, teardown),                                      \
	    cmocka_unit_test_setup_teardown(stamp_tells_own_commits_from_others, setup, teardown), \
	    cmocka_unit_test_setup_teardown(documents_are_named_safely_and_replaced_whole, setup,  \
	                                    teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(built_documents_match_schema, setup, teardown),
	    cmocka_unit_test_setup_teardown(bad_input_is_refused_with_the_field_named, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(timeline_merges_by_time_stably, setup, teardown),
	    CONTRACT_TESTS(setup),
	    cmocka_unit_test_setup_teardown(damaged_file_is_named_and_nothing_written, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(verify_memo_skips_only_unchanged, setup, teardown),
	    cmocka_unit_test_setup_teardown(config_snapshots_are_immutable, setup, teardown),
	    cmocka_unit_test_setup_teardown(config_changes_while_threads_read, setup, teardown),
	    cmocka_unit_test(new_workspace_is_private),
	    cmocka_unit_test_setup_teardown(scratch_workspace_commits_without_syncing, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(verify_reports_loose_modes, setup, teardown),
	};
	int failed = cmocka_run_group_tests_name("store (file mesh)", tests, NULL, NULL);

	/* The contract in one process: the tests of other processes (a killed
	 * locker, writers in several processes, another handle's commits) do
	 * not apply to a store that lives in one process's memory. */
	const struct CMUnitTest mem_tests[] = {
	    cmocka_unit_test_setup_teardown(commit_load_scan, setup_mem, teardown),
	    cmocka_unit_test_setup_teardown(unnamed_documents_keep_their_bytes, setup_mem,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(ids_sig_and_one_document, setup_mem, teardown),
	    cmocka_unit_test_setup_teardown(group_commit_is_all_or_nothing, setup_mem, teardown),
	    cmocka_unit_test_setup_teardown(locks_exclude_one_ticket_only, setup_mem, teardown),
	    cmocka_unit_test_setup_teardown(documents_are_named_safely_and_replaced_whole,
	                                    setup_mem, teardown),
	    cmocka_unit_test_setup_teardown(memory_store_loads_what_the_files_give, setup_mem,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(memory_store_keeps_the_limits, setup_mem, teardown),
	    cmocka_unit_test_setup_teardown(memory_store_threads_lose_nothing, setup_mem, teardown),
	};
	failed += cmocka_run_group_tests_name("store (memory)", mem_tests, NULL, NULL);

	/* the same contract on PostgreSQL: a server that cannot start is a
	 * failure with its reason, never a skip */
	int64_t t0 = csa_mono_ns();
	char why[4096];
	g_pg = tpg_start(why, sizeof(why));
	if (!g_pg) {
		fprintf(stderr, "test_store: FAILED: the PostgreSQL store tests cannot run: %s\n", why);
		return failed + 1;
	}
	const struct CMUnitTest pg_tests[] = {
	    CONTRACT_TESTS(setup_pg),
	    cmocka_unit_test_setup_teardown(pg_migrations_apply_once, setup_pg, teardown),
	    cmocka_unit_test_setup_teardown(pg_stale_commit_is_refused, setup_pg, teardown),
	    cmocka_unit_test_setup_teardown(pg_migrate_and_export, setup_pg, teardown),
	    cmocka_unit_test_setup_teardown(pg_backup_during_writes_restores_one_instant, setup_pg,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(pg_damaged_document_is_named_and_nothing_written,
	                                    setup_pg, teardown),
	    cmocka_unit_test(pg_errors_name_what_and_where),
	    cmocka_unit_test_setup_teardown(pg_restart_is_survived, setup_pg, teardown),
	    cmocka_unit_test(pg_cli_end_to_end),
	};
	failed += cmocka_run_group_tests_name("store (PostgreSQL)", pg_tests, NULL, NULL);
	tpg_stop(g_pg);
	fprintf(stderr, "test_store: the PostgreSQL part took %.1f s, its server's start and stop "
	                "included\n",
	        (double)(csa_mono_ns() - t0) / 1e9);
	return failed;
}
