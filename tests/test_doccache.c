/*
 * The scratch workspace's document cache (store/doccache.c): a load it
 * serves must give exactly what a load from the files gives (documents,
 * numbers to the last bit, key order, the bytes kept in tk->loaded), and a
 * ticket whose documents would not read back from the files the same, or
 * whose files a commit did not all write, must be loaded from the files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "store/store.h"
#include "store/ticket.h"
#include "store/ws.h"
#include "support/tutil.h"

struct fx {
	char *dir;
	struct csa_ws *ws;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct csa_err err = {0};
	f->dir = t_tmpdir("doccache");
	if (csa_ws_init(f->dir, &err) || csa_ws_open_scratch(f->dir, &f->ws, &err)) {
		fprintf(stderr, "setup: %s\n", err.msg);
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

/* The free-form metadata.platform_specific of E's first message. */
static json_t *free_form(json_t *e)
{
	return json_object_get(
	    json_object_get(json_array_get(json_object_get(e, "messages"), 0), "metadata"),
	    "platform_specific");
}

/* A new ticket 'id' whose E carries 'extra' (handed over) in its first
 * message's free-form metadata.platform_specific. */
static void build(struct fx *f, const char *id, json_t *extra, struct csa_ticket *tk)
{
	struct csa_err err = {0};
	json_t *ctx = json_pack("{s:s, s:[{s:s}]}", "ticket_id", id, "messages", "content",
	                        "my card was charged twice");
	const struct csa_config *cfg = csa_ws_config(f->ws);
	if (csa_ticket_build(cfg, ctx, 1795734186123LL, tk, &err))
		fail_msg("build: %s", err.msg);
	csa_config_unref(cfg);
	json_decref(ctx);
	json_t *meta =
	    json_object_get(json_array_get(json_object_get(tk->e, "messages"), 0), "metadata");
	assert_non_null(meta);
	json_object_set_new(meta, "platform_specific", extra);
}

/* Numbers that round when written with 10 significant digits, at both ends
 * of the range, an integer-valued real, a negative zero, text and nesting:
 * what a copy of the documents in memory would get wrong. */
static json_t *awkward_values(void)
{
	return json_pack("{s:[f, f, f, f, f, f, f, f], s:I, s:s, s:{s:[b, n, {}]}}", "reals", 0.1,
	                 1.0 / 3, 2.0 / 3 * 1e-5, 123456789012345.0, -0.0, 5e-324, 1e300,
	                 0.99999999999, "big", (json_int_t)9007199254740993LL, "text",
	                 "caf\xc3\xa9 \"quoted\" \\ /", "nested", "list", 1);
}

/* Load 'id' through the store (which may serve it from the cache) and from
 * the files (the backend itself); both must agree in every respect. */
static void same_as_files(struct fx *f, const char *id)
{
	struct csa_err err = {0};
	struct csa_ticket a, b;
	assert_int_equal(csa_store_load(f->ws->store, id, &a, &err), 0);
	assert_int_equal(f->ws->store->ops->load(f->ws->store, id, &b, &err), 0);
	assert_string_equal(a.id, b.id);
	assert_int_equal(a.exists, b.exists);
	json_t *da[3] = {a.e, a.i, a.t}, *db[3] = {b.e, b.i, b.t};
	for (int k = 0; k < 3; k++) {
		/* 17 digits: every bit of every real; key order preserved */
		size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17);
		char *sa = json_dumps(da[k], flags), *sb = json_dumps(db[k], flags);
		assert_non_null(sa);
		assert_non_null(sb);
		assert_string_equal(sa, sb);
		free(sa);
		free(sb);
		assert_int_equal(a.loaded_len[k], b.loaded_len[k]);
		assert_memory_equal(a.loaded[k], b.loaded[k], b.loaded_len[k]);
	}
	csa_ticket_release(&a);
	csa_ticket_release(&b);
}

static void cached_load_is_what_the_files_give(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	assert_non_null(f->ws->store->docs);
	/* asking again never shrinks it */
	assert_int_equal(csa_store_cache_docs(f->ws->store, 8), CSA_OK);
	struct csa_ticket tk;
	build(f, "C1", awkward_values(), &tk);
	assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_ALL, &err), 0);
	/* the committed documents still hold the unrounded numbers */
	assert_true(json_real_value(json_array_get(json_object_get(free_form(tk.e), "reals"), 1)) ==
	            1.0 / 3);
	csa_ticket_release(&tk);
	same_as_files(f, "C1");
	/* the load took the entry: the next one reads the files */
	same_as_files(f, "C1");
}

/* A commit of only some documents may leave one in memory that its file
 * does not hold: the ticket is then read from the files. */
static void partial_commit_is_read_from_the_files(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	struct csa_ticket tk, got;
	build(f, "C2", json_object(), &tk);
	assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_ALL, &err), 0);
	json_object_set_new(free_form(tk.e), "only_in_memory", json_true());
	json_object_set_new(tk.t, "priority", json_string("HIGH"));
	assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_T, &err), 0);
	csa_ticket_release(&tk);
	assert_int_equal(csa_store_load(f->ws->store, "C2", &got, &err), 0);
	assert_null(json_object_get(free_form(got.e), "only_in_memory"));
	assert_string_equal(csa_json_str(got.t, "priority"), "HIGH");
	csa_ticket_release(&got);
	/* a failed commit drops what the cache had of the ticket */
	assert_int_equal(csa_store_load(f->ws->store, "C2", &got, &err), 0);
	assert_int_equal(csa_store_commit(f->ws->store, &got, CSA_DOC_ALL, &err), 0);
	json_object_set_new(got.t, "priority", json_string("SOON"));
	assert_int_equal(csa_store_commit(f->ws->store, &got, CSA_DOC_ALL, &err), CSA_ESCHEMA);
	csa_ticket_release(&got);
	same_as_files(f, "C2");
}

/* Documents that the files would not give back (a NUL in a string, a real
 * that overflows once rounded to 10 digits) fail to load as they do from
 * the files, instead of being served from memory. */
static void unreadable_documents_fail_as_from_the_files(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	struct csa_ticket tk, got;
	json_t *vals[2] = {json_pack("{s:o}", "nul", json_stringn("a\0b", 3)),
	                   json_pack("{s:f}", "max", DBL_MAX)};
	const char *ids[2] = {"C3", "C4"};
	for (int i = 0; i < 2; i++) {
		build(f, ids[i], vals[i], &tk);
		assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_ALL, &err), 0);
		csa_ticket_release(&tk);
		assert_int_equal(csa_store_load(f->ws->store, ids[i], &got, &err), CSA_EPARSE);
		assert_int_equal(f->ws->store->ops->load(f->ws->store, ids[i], &got, &err),
		                 CSA_EPARSE);
	}
}

/* What csa_store_update() commits goes into the cache by moving the
 * ticket's documents, rounded in place: a value someone else also holds
 * must be left as it was, and the load must still be the files'. */
struct upd {
	json_t *shared; /* also held by the test */
};

static int update_fn(void *ctx, struct csa_ticket *tk, unsigned *docs, struct csa_err *err)
{
	(void)err;
	struct upd *u = ctx;
	json_t *ps = free_form(tk->e);
	json_object_set_new(ps, "mine", awkward_values());
	json_object_set(ps, "shared", u->shared);
	json_object_set_new(tk->t, "priority", json_string("HIGH"));
	*docs = CSA_DOC_ALL;
	return 0;
}

static void update_moves_documents_into_the_cache(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	struct csa_ticket tk;
	build(f, "U1", json_object(), &tk);
	assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_ALL, &err), 0);
	csa_ticket_release(&tk);
	struct upd u = {json_pack("{s:f, s:[f]}", "third", 1.0 / 3, "list", 2.0 / 3)};
	for (int round = 0; round < 3; round++) {
		assert_int_equal(csa_store_update(f->ws->store, "U1", 0, update_fn, &u, &err), 0);
		/* the test's value is untouched: still every bit of 1/3 */
		assert_true(json_real_value(json_object_get(u.shared, "third")) == 1.0 / 3);
		assert_true(json_real_value(json_array_get(json_object_get(u.shared, "list"), 0)) ==
		            2.0 / 3);
		same_as_files(f, "U1");
	}
	json_decref(u.shared);
}

/* More tickets than it keeps: the oldest go, every load still right. */
static void capacity_evicts_the_oldest(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	char id[32];
	for (int i = 0; i < 100; i++) {
		struct csa_ticket tk;
		snprintf(id, sizeof(id), "E%03d", i);
		build(f, id, json_pack("{s:f}", "i", i / 7.0), &tk);
		assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_ALL, &err), 0);
		csa_ticket_release(&tk);
	}
	for (int i = 0; i < 100; i++) {
		snprintf(id, sizeof(id), "E%03d", i);
		same_as_files(f, id);
	}
}

/* Grown, it keeps as many tickets as asked: each one's entry is found
 * (after others were taken, which moves entries around) and taken. */
static void grown_cache_keeps_every_ticket(void **state)
{
	struct fx *f = *state;
	struct csa_err err = {0};
	char id[32];
	assert_int_equal(csa_store_cache_docs(f->ws->store, 200), CSA_OK);
	for (int i = 0; i < 150; i++) {
		struct csa_ticket tk;
		snprintf(id, sizeof(id), "G%03d", i);
		build(f, id, json_pack("{s:f}", "i", i / 7.0), &tk);
		assert_int_equal(csa_store_commit(f->ws->store, &tk, CSA_DOC_ALL, &err), 0);
		csa_ticket_release(&tk);
	}
	for (int k = 0; k < 150; k++) {
		int i = (k * 37) % 150; /* out of order: taking one moves another */
		struct csa_ticket tk;
		snprintf(id, sizeof(id), "G%03d", i);
		assert_int_equal(csa_doccache_take(f->ws->store->docs, id, &tk), 1);
		assert_string_equal(tk.id, id);
		char written[32]; /* its number as the store writes it, 10 digits */
		snprintf(written, sizeof(written), "%.10g", i / 7.0);
		assert_true(json_real_value(json_object_get(free_form(tk.e), "i")) ==
		            strtod(written, NULL));
		csa_ticket_release(&tk);
		assert_int_equal(csa_doccache_take(f->ws->store->docs, id, &tk), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(cached_load_is_what_the_files_give, setup, teardown),
	    cmocka_unit_test_setup_teardown(partial_commit_is_read_from_the_files, setup, teardown),
	    cmocka_unit_test_setup_teardown(unreadable_documents_fail_as_from_the_files, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(update_moves_documents_into_the_cache, setup, teardown),
	    cmocka_unit_test_setup_teardown(capacity_evicts_the_oldest, setup, teardown),
	    cmocka_unit_test_setup_teardown(grown_cache_keeps_every_ticket, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
