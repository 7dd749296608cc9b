/* Store unit tests: schema, ticket building, timeline, commit/load/scan,
 * and bad input (every rule of the foundation issue). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>

#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"
#include "store/blobs.h"
#include "store/mesh.h"
#include "store/schema.h"
#include "store/ticket.h"
#include "store/verify.h"
#include "store/ws.h"
#include "support/tmesh.h"
#include "support/tutil.h"

struct fx {
	char *dir;
	struct csa_ws *ws;
};

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
}

/* What an index beside the store reads (agents/histfile.c): the sorted
 * ids, a signature that changes with each commit of a ticket, and one
 * document without the others. */
static void ids_sig_and_one_document(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	static const char *const ids[] = {"B-2", "A-1", "C-3"};
	for (size_t k = 0; k < 3; k++) {
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
	assert_int_equal(csa_store_ids(f->ws->store, &got, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(got[0], "A-1");
	assert_string_equal(got[1], "B-2");
	assert_string_equal(got[2], "C-3");
	csa_store_ids_free(got, n);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(built_documents_match_schema, setup, teardown),
	    cmocka_unit_test_setup_teardown(bad_input_is_refused_with_the_field_named, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(timeline_merges_by_time_stably, setup, teardown),
	    cmocka_unit_test_setup_teardown(commit_load_scan, setup, teardown),
	    cmocka_unit_test_setup_teardown(damaged_file_is_named_and_nothing_written, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(verify_memo_skips_only_unchanged, setup, teardown),
	    cmocka_unit_test_setup_teardown(config_snapshots_are_immutable, setup, teardown),
	    cmocka_unit_test_setup_teardown(documents_are_named_safely_and_replaced_whole, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(config_changes_while_threads_read, setup, teardown),
	    cmocka_unit_test_setup_teardown(ids_sig_and_one_document, setup, teardown),
	    cmocka_unit_test(new_workspace_is_private),
	    cmocka_unit_test_setup_teardown(scratch_workspace_commits_without_syncing, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(verify_reports_loose_modes, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
