/* The inbox's API (GET /api/tickets) on 10,000 generated tickets: search
 * over customer and internal messages, every filter, every sort, cursor
 * pagination, hostile search text, and tickets written by another handle.
 *
 * The workspace is built once (tests/support/inboxgen.c, through the
 * import's ticket builder) and one server runs over it for the whole
 * group; what each filter should find comes from how inboxgen varied the
 * tickets and from the documents themselves, never from the index.
 *   test_inbox [PATTERN]   runs the tests whose names match (* and ?). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"
#include "search/search.h"
#include "server/server.h"
#include "server/tokens.h"
#include "sla/sla.h"
#include "store/mesh.h"
#include "store/store.h"
#include "store/ws.h"
#include "support/inboxgen.h"
#include "support/tmesh.h"
#include "support/thttp.h"
#include "support/tutil.h"

#define N 10000

static char *dir;
static struct csa_ws *ws;
static struct csa_server *srv;
static unsigned port;
static char viewer[80], agent[80];
static int64_t now_ms;
/* what the documents say, by ticket number (id H<number>, number - 1) */
static char category[N][40], priority[N][12];

/* ---- HTTP ------------------------------------------------------------------ */

/* GET or POST path; the parsed body (NULL if not JSON), r->status set. */
static json_t *call(const char *method, const char *path, const char *token, const char *body,
                    struct t_resp *r)
{
	char auth[160];
	t_bearer(auth, token);
	const char *h[] = {auth, NULL};
	assert_int_equal(t_http(port, method, path, h, body, 60, r), 0);
	return r->body ? json_loads(r->body, 0, NULL) : NULL;
}

/* A query argument percent-encoded. Malloc'd. */
static char *enc(const char *v)
{
	CURL *c = curl_easy_init();
	char *e = curl_easy_escape(c, v, 0);
	char *out = strdup(e);
	curl_free(e);
	curl_easy_cleanup(c);
	return out;
}

static long number_of(const char *id)
{
	return strtol(id + 1, NULL, 10) - 1;
}

/*
 * Every row of GET /api/tickets?<args> over all its pages (limit 200),
 * checking that no ticket appears twice and that every page but the last
 * is full. New reference: an array of rows.
 */
static json_t *all_pages(const char *args)
{
	json_t *rows = json_array(), *seen = json_object();
	char cursor[CSA_SEARCH_CURSOR_MAX + 1] = "";
	for (int pages = 0;; pages++) {
		assert_true(pages <= N / 200 + 2);
		char path[8192];
		char *c = enc(cursor);
		snprintf(path, sizeof(path), "/api/tickets?limit=200%s%s%s%s", *args ? "&" : "",
		         args, *cursor ? "&cursor=" : "", *cursor ? c : "");
		free(c);
		struct t_resp r;
		json_t *j = call("GET", path, viewer, NULL, &r);
		if (r.status != 200)
			fail_msg("%s: %ld %s", path, r.status, r.body);
		json_t *page = json_object_get(j, "tickets");
		const char *next = csa_json_str(j, "next_cursor");
		if (next)
			assert_int_equal(json_array_size(page), 200);
		size_t i;
		json_t *row;
		json_array_foreach(page, i, row)
		{
			const char *id = csa_json_str(row, "ticket_id");
			if (json_object_get(seen, id))
				fail_msg("%s: ticket %s on two pages", args, id);
			json_object_set_new(seen, id, json_true());
			json_array_append(rows, row);
		}
		snprintf(cursor, sizeof(cursor), "%s", next ? next : "");
		json_decref(j);
		free(r.body);
		if (!*cursor)
			break;
	}
	json_decref(seen);
	return rows;
}

/* The rows' ticket numbers as a bitmap (N bytes, 1 = present). */
static void bitmap(const json_t *rows, unsigned char *bits)
{
	memset(bits, 0, N);
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row)
	{
		long k = number_of(csa_json_str(row, "ticket_id"));
		if (k >= 0 && k < N)
			bits[k] = 1;
	}
}

typedef int (*want_fn)(long i, const void *arg);

/* GET /api/tickets?<args> finds exactly the tickets want() names. */
static void finds_exactly(const char *args, want_fn want, const void *arg)
{
	json_t *rows = all_pages(args);
	static unsigned char got[N];
	bitmap(rows, got);
	long n_want = 0, missing = -1, extra = -1;
	for (long i = 0; i < N; i++) {
		int w = want(i, arg);
		n_want += w;
		if (w && !got[i] && missing < 0)
			missing = i;
		if (!w && got[i] && extra < 0)
			extra = i;
	}
	/* tickets added by other tests (ids not H...) are not counted */
	if (missing >= 0)
		fail_msg("%s: ticket H%06ld missing (%zu rows, %ld wanted)", args, missing + 1,
		         json_array_size(rows), n_want);
	if (extra >= 0)
		fail_msg("%s: ticket H%06ld should not be there", args, extra + 1);
	assert_true(n_want > 0 || json_array_size(rows) == 0);
	json_decref(rows);
}

/* ---- the fixture ------------------------------------------------------------- */

static void mk(enum csa_role role, char out[80])
{
	char *t, id[32];
	struct csa_err err = {0};
	assert_int_equal(csa_token_create(dir, role, "test", &t, id, &err), 0);
	snprintf(out, 80, "%s", t);
	free(t);
}

static int setup(void **state)
{
	(void)state;
	struct csa_err err = {0};
	dir = t_tmpdir("inbox");
	if (csa_ws_init(dir, &err) || csa_ws_open(dir, &ws, &err))
		return -1;
	now_ms = csa_now_ms();
	if (inboxgen_fill(ws, N, 11, now_ms, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	for (long i = 0; i < N; i++) {
		char id[16];
		json_t *t;
		snprintf(id, sizeof(id), "H%06ld", i + 1);
		if (csa_store_load_doc(ws->store, id, CSA_DOC_T, &t, &err))
			return -1;
		json_t *dec = json_object_get(
		    json_array_get(json_object_get(t, "agent_decisions"), 0), "decision");
		snprintf(category[i], sizeof(category[i]), "%s", csa_json_str(dec, "category"));
		snprintf(priority[i], sizeof(priority[i]), "%s", csa_json_str(t, "priority"));
		json_decref(t);
	}
	mk(CSA_ROLE_VIEWER, viewer);
	mk(CSA_ROLE_AGENT, agent);
	/* no rate limit: the tests walk every page of many filters */
	struct csa_server_opts o = {"127.0.0.1", 0, 2, CSA_SOURCE_DIR "/web", 0};
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
	return 0;
}

/* ---- search ------------------------------------------------------------------- */

static int want_e(long i, const void *arg)
{
	(void)arg;
	return inboxgen_e_word(i);
}

static int want_i(long i, const void *arg)
{
	(void)arg;
	return inboxgen_i_word(i);
}

static int want_e_and_i(long i, const void *arg)
{
	(void)arg;
	return inboxgen_e_word(i) && inboxgen_i_word(i);
}

static int want_none(long i, const void *arg)
{
	(void)i, (void)arg;
	return 0;
}

/* A word of a customer message finds the tickets that have it, a word of
 * an internal note too, and two words find the tickets with both. */
static void search_finds_customer_and_internal_words(void **state)
{
	(void)state;
	finds_exactly("q=" INBOXGEN_E_WORD, want_e, NULL);
	finds_exactly("q=" INBOXGEN_I_WORD, want_i, NULL);
	finds_exactly("q=" INBOXGEN_E_WORD "%20" INBOXGEN_I_WORD, want_e_and_i, NULL);
	/* case and a trailing punctuation mark do not matter */
	finds_exactly("q=ZQXKUMQUAT%2C", want_e, NULL);
}

/* Search text is words, never FTS5 syntax: operators, prefixes, column
 * filters, quotes and parentheses are looked for as text (and so find
 * nothing here) or are ignored, and none of them is an error. */
static void hostile_queries_are_plain_words(void **state)
{
	(void)state;
	/* interpreted as FTS5, each of these would find the word's tickets */
	static const char *const literal[] = {
	    INBOXGEN_E_WORD "%20OR%20" INBOXGEN_I_WORD, /* OR needs the word "or" */
	    "zqxkum*",                                  /* no prefix search */
	    "body:" INBOXGEN_E_WORD,                    /* no column filter */
	    "NEAR(" INBOXGEN_E_WORD "%20" INBOXGEN_I_WORD ")",
	    "%7Bbody%7D:" INBOXGEN_E_WORD,
	    "-" INBOXGEN_I_WORD "%20" INBOXGEN_E_WORD "%20" INBOXGEN_I_WORD "x",
	};
	for (size_t k = 0; k < sizeof(literal) / sizeof(literal[0]); k++) {
		char args[512];
		snprintf(args, sizeof(args), "q=%s", literal[k]);
		json_t *rows = all_pages(args);
		size_t i;
		json_t *row;
		/* OR as a word: at most the tickets with the E word */
		json_array_foreach(
		    rows, i, row) if (!inboxgen_e_word(number_of(csa_json_str(row, "ticket_id"))))
		    fail_msg("%s found %s", args, csa_json_str(row, "ticket_id"));
		if (k > 0 && json_array_size(rows))
			fail_msg("%s: %zu rows, FTS5 syntax was interpreted", args,
			         json_array_size(rows));
		json_decref(rows);
	}
	static const char *const hostile[] = {
	    "\"",         "\"\"",
	    "'",          "(",
	    ")",          "()",
	    "NEAR(",      "NEAR",
	    "AND",        "OR NOT",
	    "*",          "^",
	    ":",          "a:b",
	    "-",          "+",
	    "\\",         "%",
	    "\"a\" OR *", "'; DROP TABLE tickets; --",
	    "x\" OR \"y", "\xc3\xa9t\xc3\xa9",
	    "\xff\xfe",   "{body}",
	    "body : x",   "a AND (b OR c) NOT d",
	};
	for (size_t k = 0; k < sizeof(hostile) / sizeof(hostile[0]); k++) {
		char *q = enc(hostile[k]), path[1024];
		snprintf(path, sizeof(path), "/api/tickets?q=%s", q);
		free(q);
		struct t_resp r;
		json_t *j = call("GET", path, viewer, NULL, &r);
		if (r.status != 200 || !json_is_array(json_object_get(j, "tickets")))
			fail_msg("q=%s: %ld %s", hostile[k], r.status, r.body);
		json_decref(j);
		free(r.body);
	}
	/* a long query (past the 32 words that count) is no error either */
	char *longq = malloc(2101);
	for (int k = 0; k < 300; k++)
		memcpy(longq + k * 7, "(\"a\"*) ", 7);
	longq[2100] = '\0';
	char *q = enc(longq), *path = malloc(strlen(q) + 32);
	sprintf(path, "/api/tickets?q=%s", q);
	struct t_resp r;
	json_t *j = call("GET", path, viewer, NULL, &r);
	if (r.status != 200)
		fail_msg("long q: %ld %s", r.status, r.body);
	json_decref(j);
	free(r.body);
	free(path);
	free(q);
	free(longq);
	/* and the index is whole afterwards */
	finds_exactly("q=" INBOXGEN_E_WORD, want_e, NULL);
}

/* The query text as FTS5 receives it: every word a string. */
static void fts_query_quotes_every_word(void **state)
{
	(void)state;
	static const struct {
		const char *q, *fts;
	} cases[] = {
	    {"refund", "\"refund\""},
	    {"  refund   now ", "\"refund\" \"now\""},
	    {"a\"b", "\"a\"\"b\""},
	    {"NEAR(a b)", "\"NEAR(a\" \"b)\""},
	    {"body:x*", "\"body:x*\""},
	    {"* ( ) \" :", ""},
	    {"", ""},
	    {"\xc3\xa9t\xc3\xa9", "\"\xc3\xa9t\xc3\xa9\""},
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		char *got = csa_search_fts_query(cases[k].q);
		assert_non_null(got);
		if (strcmp(got, cases[k].fts) != 0)
			fail_msg("'%s' became '%s', not '%s'", cases[k].q, got, cases[k].fts);
		free(got);
	}
	/* at most 32 words */
	char many[400] = "";
	for (int k = 0; k < 40; k++)
		strcat(many, "w ");
	char *got = csa_search_fts_query(many);
	int words = 0;
	for (const char *p = got; *p; p++)
		words += *p == 'w';
	assert_int_equal(words, 32);
	free(got);
}

/* ---- filters ------------------------------------------------------------------ */

static int want_status(long i, const void *arg)
{
	return strcmp(inboxgen_status(i), arg) == 0;
}

static int want_repeat(long i, const void *arg)
{
	(void)arg;
	return inboxgen_repeat_customer(i);
}

static int want_assigned(long i, const void *arg)
{
	const char *a = inboxgen_assigned(i);
	return a && strcmp(a, arg) == 0;
}

static int want_review(long i, const void *arg)
{
	return inboxgen_review(i) == *(const int *)arg;
}

static int want_autonomous(long i, const void *arg)
{
	return inboxgen_autonomous(i) == *(const int *)arg;
}

static int want_category(long i, const void *arg)
{
	return strcmp(category[i], arg) == 0;
}

static int want_priority(long i, const void *arg)
{
	return strcmp(priority[i], arg) == 0;
}

/* The SLA state inboxgen set up (resolution deadline passed, at 90% of
 * its time, or far away; resolved tickets have none). */
static int want_sla(long i, const void *arg)
{
	const char *want = arg, *state = "on_time";
	if (strcmp(inboxgen_status(i), "resolved") != 0)
		state = i % 3 == 0 ? "breached" : i % 3 == 1 ? "at_risk" : "on_time";
	return strcmp(state, want) == 0;
}

static int want_active_alice_review(long i, const void *arg)
{
	(void)arg;
	return want_status(i, "active") && want_assigned(i, "alice") && inboxgen_review(i);
}

/* Each filter finds exactly its tickets, and filters combine. */
static void each_filter_finds_exactly_its_tickets(void **state)
{
	(void)state;
	static const char *const statuses[] = {"active", "resolved", "escalated", "pending"};
	char args[128];
	for (size_t k = 0; k < 4; k++) {
		snprintf(args, sizeof(args), "status=%s", statuses[k]);
		finds_exactly(args, want_status, statuses[k]);
	}
	finds_exactly("assigned=alice", want_assigned, "alice");
	finds_exactly("assigned=bob", want_assigned, "bob");
	finds_exactly("assigned=nobody", want_none, NULL);
	/* a customer's tickets, by their contact address (the ticket page's
	 * "earlier tickets") */
	finds_exactly("customer=" INBOXGEN_REPEAT_CUSTOMER, want_repeat, NULL);
	finds_exactly("customer=nobody@inboxgen.example", want_none, NULL);
	/* each row carries the customer and the first words they wrote */
	json_t *mine = all_pages("customer=" INBOXGEN_REPEAT_CUSTOMER);
	size_t m_i;
	json_t *m_row;
	json_array_foreach(mine, m_i, m_row)
	{
		assert_string_equal(csa_json_str(m_row, "customer"), INBOXGEN_REPEAT_CUSTOMER);
		const char *subject = csa_json_str(m_row, "subject");
		assert_non_null(subject);
		assert_true(strlen(subject) > 0 && strlen(subject) <= CSA_SEARCH_SUBJECT_MAX);
		char path[128];
		snprintf(path, sizeof(path), "/api/tickets/%s", csa_json_str(m_row, "ticket_id"));
		struct t_resp r;
		json_t *t = call("GET", path, viewer, NULL, &r);
		const char *first = csa_json_str(
		    json_array_get(json_object_get(json_object_get(t, "external_conversation"),
		                                   "messages"),
		                   0),
		    "content");
		assert_non_null(first);
		assert_memory_equal(first, subject, strlen(subject));
		json_decref(t);
		free(r.body);
	}
	json_decref(mine);
	static const int yes = 1, no = 0;
	finds_exactly("review=true", want_review, &yes);
	finds_exactly("review=false", want_review, &no);
	finds_exactly("autonomous=true", want_autonomous, &yes);
	finds_exactly("autonomous=false", want_autonomous, &no);
	static const char *const slas[] = {"on_time", "at_risk", "breached"};
	for (size_t k = 0; k < 3; k++) {
		snprintf(args, sizeof(args), "sla=%s", slas[k]);
		finds_exactly(args, want_sla, slas[k]);
	}
	snprintf(args, sizeof(args), "category=%s", category[0]);
	finds_exactly(args, want_category, category[0]);
	static const char *const prios[] = {"CRITICAL", "HIGH", "MEDIUM", "LOW"};
	for (size_t k = 0; k < 4; k++) {
		snprintf(args, sizeof(args), "priority=%s", prios[k]);
		finds_exactly(args, want_priority, prios[k]);
	}
	finds_exactly("status=active&assigned=alice&review=true", want_active_alice_review, NULL);
	/* the rows say what was filtered on */
	json_t *rows = all_pages("sla=breached&review=true");
	assert_true(json_array_size(rows) > 0);
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row)
	{
		assert_string_equal(csa_json_str(row, "sla_state"), "breached");
		assert_true(json_is_true(json_object_get(row, "waiting_for_review")));
	}
	json_decref(rows);
	/* count=1: the number of matches, on any page */
	struct t_resp r;
	json_t *j = call("GET", "/api/tickets?status=pending&limit=1&count=1", viewer, NULL, &r);
	assert_int_equal(r.status, 200);
	long pending = 0;
	for (long k = 0; k < N; k++)
		pending += want_status(k, "pending");
	assert_int_equal(csa_json_int(j, "total", -1), pending);
	json_decref(j);
	free(r.body);
}

/* Values outside each argument's set are refused with 400, naming it. */
static void bad_arguments_are_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "status=open",
	    "priority=URGENT",
	    "stage=done",
	    "sla=late",
	    "review=maybe",
	    "autonomous=yes",
	    "sort=oldest",
	    "customer=",
	    "limit=0",
	    "limit=201",
	    "offset=50",
	    "cursor=garbage",
	    "cursor=updated.x.H000001",
	    "cursor=updated.-1",
	    "cursor=updated.1.a%2Fb",
	    "sort=sla_due&cursor=updated.1.H000001",
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		char path[256];
		snprintf(path, sizeof(path), "/api/tickets?%s", bad[k]);
		struct t_resp r;
		json_t *j = call("GET", path, viewer, NULL, &r);
		if (r.status != 400 || !csa_json_str(j, "detail"))
			fail_msg("%s: %ld %s", bad[k], r.status, r.body);
		json_decref(j);
		free(r.body);
	}
}

/* ---- sorts and pages ------------------------------------------------------- */

static int prio_rank(const char *p)
{
	return !p                           ? 4
	       : strcmp(p, "CRITICAL") == 0 ? 0
	       : strcmp(p, "HIGH") == 0     ? 1
	       : strcmp(p, "MEDIUM") == 0   ? 2
	                                    : 3;
}

/* Each sort walks every ticket once, in its order, page after page. */
static void sorts_walk_every_ticket_in_order(void **state)
{
	(void)state;
	static const char *const sorts[] = {"sort=updated", "sort=sla_due", "sort=priority"};
	for (size_t s = 0; s < 3; s++) {
		json_t *rows = all_pages(sorts[s]);
		static unsigned char got[N];
		bitmap(rows, got);
		for (long i = 0; i < N; i++)
			if (!got[i])
				fail_msg("%s: H%06ld missing", sorts[s], i + 1);
		size_t i;
		json_t *row, *prev = NULL;
		json_array_foreach(rows, i, row)
		{
			if (prev) {
				const char *pu = csa_json_str(prev, "last_updated"),
				           *ru = csa_json_str(row, "last_updated");
				const char *pd = csa_json_str(prev, "sla_due"),
				           *rd = csa_json_str(row, "sla_due");
				int pr = prio_rank(csa_json_str(prev, "priority")),
				    rr = prio_rank(csa_json_str(row, "priority"));
				int ok = s == 0   ? strcmp(pu, ru) >= 0
				         : s == 1 ? (!rd || (pd && strcmp(pd, rd) <= 0))
				                  : (pr < rr || (pr == rr && strcmp(pu, ru) >= 0));
				if (!ok)
					fail_msg("%s: %s before %s", sorts[s],
					         csa_json_str(prev, "ticket_id"),
					         csa_json_str(row, "ticket_id"));
			}
			prev = row;
		}
		json_decref(rows);
	}
}

static json_t *page_ids(const char *path)
{
	struct t_resp r;
	json_t *j = call("GET", path, viewer, NULL, &r);
	assert_int_equal(r.status, 200);
	json_t *ids = json_array();
	size_t i;
	json_t *row;
	json_array_foreach(json_object_get(j, "tickets"), i, row)
	    json_array_append_new(ids, json_string(csa_json_str(row, "ticket_id")));
	json_object_set(j, "ids", ids);
	json_decref(ids);
	free(r.body);
	return j;
}

/* A cursor names a place in the order, not a count of rows: tickets
 * created after page 1 was read (newest, so before it in the order) do
 * not shift page 2, as an offset would. They are found at once too: the
 * server indexes its own commits before it answers. */
static void cursor_is_stable_under_inserts(void **state)
{
	(void)state;
	json_t *p1 = page_ids("/api/tickets?limit=50&status=active");
	const char *next = csa_json_str(p1, "next_cursor");
	assert_non_null(next);
	char *c = enc(next), path[512];
	snprintf(path, sizeof(path), "/api/tickets?limit=50&status=active&cursor=%s", c);
	free(c);
	json_t *before = page_ids(path);
	for (int k = 0; k < 5; k++) {
		char body[256];
		snprintf(body, sizeof(body),
		         "{\"ticket_id\": \"NEW-%d\", \"client_name\": \"Nia\", "
		         "\"messages\": [{\"content\": \"zqxpangolin broke\"}]}",
		         k);
		struct t_resp r;
		json_t *j = call("POST", "/api/tickets", agent, body, &r);
		if (r.status != 201)
			fail_msg("create: %ld %s", r.status, r.body);
		json_decref(j);
		free(r.body);
	}
	/* read your writes */
	json_t *found = page_ids("/api/tickets?q=zqxpangolin");
	assert_int_equal(json_array_size(json_object_get(found, "ids")), 5);
	json_decref(found);
	/* the five new tickets lead the default order (last update first);
	 * among themselves the pipeline's work on one may land after the
	 * next one's creation, so their order is not asserted */
	json_t *first = page_ids("/api/tickets?limit=50&status=active");
	int seen = 0;
	for (size_t i = 0; i < 5; i++) {
		const char *id = json_string_value(json_array_get(json_object_get(first, "ids"), i));
		assert_non_null(id);
		if (strncmp(id, "NEW-", 4) != 0 || id[4] < '0' || id[4] > '4' || id[5])
			fail_msg("row %zu of the first page is %s, not a new ticket", i, id);
		seen |= 1 << (id[4] - '0');
	}
	assert_int_equal(seen, 0x1f);
	json_decref(first);
	json_t *after = page_ids(path);
	assert_true(json_equal(json_object_get(before, "ids"), json_object_get(after, "ids")));
	json_decref(p1);
	json_decref(before);
	json_decref(after);
}

/* The total of GET path, or -1; for threads (no cmocka assertion). */
static void *count_thread(void *arg)
{
	const char *path = arg;
	struct t_resp r;
	char auth[160];
	t_bearer(auth, viewer);
	const char *h[] = {auth, NULL};
	long total = -1;
	if (t_http(port, "GET", path, h, NULL, 60, &r) == 0 && r.body) {
		json_t *j = json_loads(r.body, 0, NULL);
		json_t *t = json_object_get(j, "total");
		if (json_is_integer(t))
			total = (long)json_integer_value(t);
		json_decref(j);
	}
	free(r.body);
	return (void *)(intptr_t)total;
}

/* Queries that arrive together right after this server's writes all see
 * them: one query indexing the writes does not let the others answer
 * from the index before it has (the dashboard asks for a count per view
 * at once after every event). */
static void concurrent_queries_read_the_writes(void **state)
{
	(void)state;
	enum { ROUNDS = 12, PER_ROUND = 3, QUERIES = 8 };
	for (int round = 0; round < ROUNDS; round++) {
		for (int k = 0; k < PER_ROUND; k++) {
			char body[256];
			snprintf(body, sizeof(body),
			         "{\"ticket_id\": \"RACE-%d-%d\", \"client_name\": \"Rae\", "
			         "\"messages\": [{\"content\": \"zqxokapi%d stuck\"}]}",
			         round, k, round);
			struct t_resp r;
			json_t *j = call("POST", "/api/tickets", agent, body, &r);
			if (r.status != 201)
				fail_msg("create: %ld %s", r.status, r.body);
			json_decref(j);
			free(r.body);
		}
		char path[128];
		snprintf(path, sizeof(path), "/api/tickets?limit=1&count=1&q=zqxokapi%d", round);
		pthread_t th[QUERIES];
		for (int q = 0; q < QUERIES; q++)
			assert_int_equal(pthread_create(&th[q], NULL, count_thread, path), 0);
		for (int q = 0; q < QUERIES; q++) {
			void *total;
			pthread_join(th[q], &total);
			if ((intptr_t)total != PER_ROUND)
				fail_msg("round %d, query %d: total %ld, not %d", round, q,
				         (long)(intptr_t)total, PER_ROUND);
		}
	}
}

/* ---- other writers ----------------------------------------------------------- */

static int add_word(void *ctx, struct csa_ticket *tk, unsigned *docs, struct csa_err *err)
{
	(void)ctx, (void)err;
	json_t *m = json_deep_copy(json_array_get(json_object_get(tk->e, "messages"), 0));
	json_object_set_new(m, "message_id", json_string("elsewhere-1"));
	json_object_set_new(m, "content", json_string("written elsewhere: zqxnarwhal"));
	json_array_append_new(json_object_get(tk->e, "messages"), m);
	json_object_set_new(tk->t, "assigned_member", json_string("dave"));
	*docs = CSA_DOC_ALL;
	return CSA_OK;
}

/* Poll args until it finds exactly 'id' (or 30 s pass); 1 when it did.
 * The catch-up compares 10,000 tickets' versions: well under a second
 * here, but several under the sanitizers on a loaded 2-core machine. */
static int found_within(const char *args, const char *id)
{
	for (int k = 0; k < 300; k++) {
		json_t *rows = all_pages(args);
		int ok = json_array_size(rows) == 1 &&
		         strcmp(csa_json_str(json_array_get(rows, 0), "ticket_id"), id) == 0;
		json_decref(rows);
		if (ok)
			return 1;
		usleep(100000);
	}
	return 0;
}

/* A ticket changed through another store handle, as another process or
 * the CLI would (the server's handle sees none of its commits), is found
 * by its new words and its new assignee once the server catches up. */
static void ticket_written_elsewhere_is_found(void **state)
{
	(void)state;
	struct csa_ws *other;
	struct csa_err err = {0};
	assert_int_equal(csa_ws_open(dir, &other, &err), 0);
	json_t *rows = all_pages("q=zqxnarwhal");
	assert_int_equal(json_array_size(rows), 0);
	json_decref(rows);
	assert_int_equal(csa_store_update(other->store, "H000077", 0, add_word, NULL, &err), 0);
	csa_ws_close(other);
	if (!found_within("q=zqxnarwhal", "H000077"))
		fail_msg("a ticket written by another handle was not found within 30 s");
	if (!found_within("assigned=dave", "H000077"))
		fail_msg("the new assignee was not found");
}

/* ---- the index kept at the store's position ------------------------------------ */

/* Whom the index says P-n is assigned to: the one id the filter
 * assigned=who finds, or 0 when it finds none. */
static int assigned_in_index(struct csa_search *s, const char *who, const char *id)
{
	struct csa_search_filter f = {.assigned = who, .sla = -1, .review = -1, .autonomous = -1,
	                              .now_ms = csa_now_ms()};
	struct csa_search_page page;
	struct csa_err err = {0};
	assert_int_equal(csa_search_query(s, &f, CSA_SORT_UPDATED, NULL, 50, &page, &err), 0);
	int found = 0;
	for (size_t i = 0; i < page.n; i++)
		found |= strcmp(page.ids[i], id) == 0;
	csa_search_page_release(&page);
	return found;
}

static void set_assigned(struct csa_ws *w, const char *id, long v)
{
	struct csa_ticket tk;
	struct csa_err err = {0};
	assert_int_equal(csa_store_load(w->store, id, &tk, &err), 0);
	tm_set(&tk, v);
	assert_int_equal(csa_store_commit(w->store, &tk, CSA_DOC_ALL, &err), 0);
	csa_ticket_release(&tk);
}

/* An index saved at the store's position is taken as it is at the next
 * open (no ticket compared: a file edited in place by hand meanwhile
 * shows only at the next full comparison); a commit by another handle,
 * while the index is closed or while it is open, moves the position, and
 * the next open compares every ticket and finds it. */
static void search_index_kept_at_the_store_position(void **state)
{
	(void)state;
	char *d = t_tmpdir("searchpos");
	struct csa_ws *w, *other;
	struct csa_search *s;
	struct csa_err err = {0};
	assert_int_equal(csa_ws_init(d, &err), 0);
	assert_int_equal(csa_ws_open(d, &w, &err), 0);
	static const char *const ids[] = {"P-1", "P-2", "P-3"};
	assert_int_equal(tm_create(w, ids, 3), 0);
	assert_int_equal(csa_search_open_sqlite(w, 0, &s, &err), 0);
	assert_true(assigned_in_index(s, "v0", "P-2"));
	csa_search_close(s);

	/* written by another handle while the index was closed */
	assert_int_equal(csa_ws_open(d, &other, &err), 0);
	set_assigned(other, "P-2", 7);
	csa_ws_close(other);
	assert_int_equal(csa_search_open_sqlite(w, 0, &s, &err), 0);
	assert_true(assigned_in_index(s, "v7", "P-2"));
	csa_search_close(s);

	/* written by another handle while the index was open with its
	 * refresh thread: found at once or at the next open, never lost */
	assert_int_equal(csa_search_open_sqlite(w, 60000, &s, &err), 0);
	assert_true(assigned_in_index(s, "v0", "P-3"));
	assert_int_equal(csa_ws_open(d, &other, &err), 0);
	set_assigned(other, "P-3", 4);
	csa_ws_close(other);
	csa_search_close(s);
	assert_int_equal(csa_search_open_sqlite(w, 0, &s, &err), 0);
	assert_true(assigned_in_index(s, "v4", "P-3"));
	csa_search_close(s);

	/* this handle's own commit while open is indexed and kept */
	assert_int_equal(csa_search_open_sqlite(w, 60000, &s, &err), 0);
	set_assigned(w, "P-1", 2);
	csa_search_close(s);

	/* P-1's workflow file edited in place by hand: no commit, the
	 * position stays, the open takes the index as it is; the full
	 * comparison finds the edit */
	char tpath[4200], *text = NULL;
	size_t len = 0;
	assert_int_equal(csa_mesh_doc_path(w, 2, "P-1", tpath, sizeof(tpath), NULL), 0);
	assert_int_equal(csa_fs_read_all(tpath, 1 << 24, &text, &len, NULL), 0);
	char *at = strstr(text, "\"assigned_member\":\"v2\"");
	assert_non_null(at);
	at[strlen("\"assigned_member\":\"v")] = '5';
	int fd = open(tpath, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, text, len, 0), (ssize_t)len);
	close(fd);
	free(text);
	assert_int_equal(csa_search_open_sqlite(w, 0, &s, &err), 0);
	assert_true(assigned_in_index(s, "v2", "P-1"));
	size_t changed = 0;
	assert_int_equal(csa_search_sync(s, &changed, &err), 0);
	assert_true(assigned_in_index(s, "v5", "P-1"));
	csa_search_close(s);
	csa_ws_close(w);
	t_rmrf(d);
	free(d);
}

/* ---- the SLA clock ------------------------------------------------------------- */

/* The clock (the instants the state changes) gives the state the rules
 * of csa_sla_state_of give for both deadlines, at every instant. */
static void sla_clock_agrees_with_the_deadline_rules(void **state)
{
	(void)state;
	struct csa_config cfg;
	assert_int_equal(csa_config_init_default(&cfg), 0);
	const int64_t h = 3600000, t0 = 1700000000000LL;
	char ts[CSA_TS_LEN];
	unsigned seed = 7;
	for (int n = 0; n < 2000; n++) {
		seed = seed * 1103515245u + 12345u;
		int64_t fr_due = t0 + (seed >> 8) % 10 * h, res_due = t0 + (seed >> 12) % 40 * h;
		int has_fr = seed >> 20 & 1, has_res = seed >> 21 & 1, replied = seed >> 22 & 1;
		int resolved = seed >> 23 & 1;
		int64_t reply = t0 + (seed >> 24) % 12 * h, closed = t0 + (seed >> 16) % 45 * h;
		json_t *e = json_pack("{s:{s:s, s:n, s:n}, s:s, s:n, s:[]}", "sla_tracking",
		                      "created_at", csa_ts_format(t0, ts), "first_response_due",
		                      "resolution_due", "conversation_status",
		                      resolved ? "resolved" : "active", "last_updated", "messages");
		json_t *sla = json_object_get(e, "sla_tracking");
		if (has_fr)
			json_object_set_new(sla, "first_response_due",
			                    json_string(csa_ts_format(fr_due, ts)));
		if (has_res)
			json_object_set_new(sla, "resolution_due",
			                    json_string(csa_ts_format(res_due, ts)));
		json_object_set_new(e, "last_updated", json_string(csa_ts_format(closed, ts)));
		if (replied)
			json_array_append_new(json_object_get(e, "messages"),
			                      json_pack("{s:s, s:s}", "sender", "cs_agent",
			                                "timestamp", csa_ts_format(reply, ts)));
		struct csa_sla_clock clock;
		csa_sla_clock_of(&cfg, e, &clock);
		double f = 0.75;
		/* from when the events it knows of have happened: E records
		 * only what is past */
		int64_t from = t0 - h;
		if (replied && reply > from)
			from = reply;
		if (resolved && closed > from)
			from = closed;
		for (int64_t now = from; now <= t0 + 50 * h; now += h / 2) {
			int want = CSA_SLA_ON_TIME;
			if (has_fr) {
				int s = csa_sla_state_of(t0, fr_due, replied ? reply : -1, now, f);
				want = s > want ? s : want;
			}
			if (has_res) {
				int s =
				    csa_sla_state_of(t0, res_due, resolved ? closed : -1, now, f);
				want = s > want ? s : want;
			}
			int got = csa_sla_clock_state(&clock, now);
			if (got != want)
				fail_msg("case %d at +%lld h: clock says %s, the rules %s", n,
				         (long long)((now - t0) / h), csa_sla_state_name(got),
				         csa_sla_state_name(want));
		}
		json_decref(e);
	}
	csa_config_release(&cfg);
}

int main(int argc, char **argv)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(fts_query_quotes_every_word),
	    cmocka_unit_test(sla_clock_agrees_with_the_deadline_rules),
	    cmocka_unit_test(search_finds_customer_and_internal_words),
	    cmocka_unit_test(hostile_queries_are_plain_words),
	    cmocka_unit_test(each_filter_finds_exactly_its_tickets),
	    cmocka_unit_test(bad_arguments_are_refused),
	    cmocka_unit_test(sorts_walk_every_ticket_in_order),
	    cmocka_unit_test(cursor_is_stable_under_inserts),
	    cmocka_unit_test(concurrent_queries_read_the_writes),
	    cmocka_unit_test(ticket_written_elsewhere_is_found),
	    cmocka_unit_test(search_index_kept_at_the_store_position),
	};
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);
	int rc = cmocka_run_group_tests(tests, setup, teardown);
	curl_global_cleanup();
	return rc;
}
