/*
 * The inbox's search index at scale (`make bench-inbox`, BENCH_TICKETS,
 * default 100,000): the time to build .csa/search.db from the tickets, to
 * catch up when nothing changed and when 100 tickets changed, and the first
 * page (50 rows) of GET /api/tickets for each filter and sort, as the
 * handler runs it (csa_search_query), median and worst of 20 runs.
 * The goal is the first page of any filter in at most 100 ms.
 * Not a test: nothing here passes or fails.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/ts.h"
#include "search/search.h"
#include "sla/sla.h"
#include "store/store.h"
#include "store/ws.h"
#include "support/inboxgen.h"

#define RUNS 20

static double ms_since(int64_t t0)
{
	return (double)(csa_mono_ns() - t0) / 1e6;
}

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "bench_inbox: %s: %s\n", what, msg);
	exit(1);
}

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int reassign(void *ctx, struct csa_ticket *tk, unsigned *docs, struct csa_err *err)
{
	(void)ctx, (void)err;
	json_object_set_new(tk->t, "assigned_member", json_string("carol"));
	*docs = CSA_DOC_T;
	return CSA_OK;
}

struct row {
	const char *name;
	struct csa_search_filter f;
	enum csa_search_sort sort;
};

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0); /* each row as soon as it is measured */
	const char *nv = getenv("BENCH_TICKETS");
	long n = nv ? strtol(nv, NULL, 10) : 100000;
	/* BENCH_KEEP=DIR keeps the workspace in DIR and reuses it next time
	 * (its tickets, and .csa/search.db as the last run left it) */
	const char *keep = getenv("BENCH_KEEP");
	char dir[4096] = "/tmp/csa-bench-inbox-XXXXXX";
	if (keep)
		snprintf(dir, sizeof(dir), "%s", keep);
	else if (!mkdtemp(dir))
		die("mkdtemp", "failed");
	char wsdir[4200];
	snprintf(wsdir, sizeof(wsdir), "%s/ws", dir);
	struct csa_err err = {0};
	struct csa_ws *ws;
	int reuse = keep && csa_ws_open(wsdir, &ws, &err) == CSA_OK;
	if (!reuse && (csa_ws_init(wsdir, &err) || csa_ws_open(wsdir, &ws, &err)))
		die("workspace", err.msg);
	int64_t now = csa_now_ms();
	int64_t t0 = csa_mono_ns();
	if (!reuse && inboxgen_fill(ws, n, 7, now, &err))
		die("tickets", err.msg);
	double fill_ms = ms_since(t0);
	/* versions are trusted once settled (csa_store_version): as in a
	 * workspace whose tickets were not all written this very second */
	if (!reuse)
		sleep(3);

	struct csa_search *s;
	t0 = csa_mono_ns();
	if (csa_search_open_sqlite(ws, 0, &s, &err))
		die("search index", err.msg);
	double build_ms = ms_since(t0);
	size_t changed = 0;
	t0 = csa_mono_ns();
	if (csa_search_sync(s, &changed, &err))
		die("catch-up", err.msg);
	double idle_ms = ms_since(t0);

	/* 100 tickets changed behind the index's back (this handle observes
	 * no commits): what a catch-up costs when another process wrote */
	for (long i = 0; i < 100; i++) {
		char id[32];
		snprintf(id, sizeof(id), "H%06ld", 1 + i * (n / 100));
		if (csa_store_update(ws->store, id, 0, reassign, NULL, &err))
			die("update", err.msg);
	}
	size_t changed100 = 0;
	t0 = csa_mono_ns();
	if (csa_search_sync(s, &changed100, &err))
		die("catch-up", err.msg);
	double hundred_ms = ms_since(t0);

	printf("%-44s %ld\n", "tickets", n);
	printf("%-44s %.0f ms\n", "generate and commit them", fill_ms);
	printf("%-44s %.0f ms\n", "build .csa/search.db from nothing", build_ms);
	printf("%-44s %.1f ms (%zu read)\n", "catch-up, nothing changed", idle_ms, changed);
	printf("%-44s %.1f ms (%zu read)\n", "catch-up, 100 changed elsewhere", hundred_ms,
	       changed100);

	static const struct row rows[] = {
	    {"no filter (sort=updated)",
	     {.sla = -1, .review = -1, .autonomous = -1},
	     CSA_SORT_UPDATED},
	    {"sort=sla_due", {.sla = -1, .review = -1, .autonomous = -1}, CSA_SORT_SLA_DUE},
	    {"sort=priority", {.sla = -1, .review = -1, .autonomous = -1}, CSA_SORT_PRIORITY},
	    {"status=active",
	     {.status = "active", .sla = -1, .review = -1, .autonomous = -1},
	     CSA_SORT_UPDATED},
	    {"priority=CRITICAL",
	     {.priority = "CRITICAL", .sla = -1, .review = -1, .autonomous = -1},
	     CSA_SORT_UPDATED},
	    {"category=BILLING_INQUIRY",
	     {.category = "BILLING_INQUIRY", .sla = -1, .review = -1, .autonomous = -1},
	     CSA_SORT_UPDATED},
	    {"assigned=alice",
	     {.assigned = "alice", .sla = -1, .review = -1, .autonomous = -1},
	     CSA_SORT_UPDATED},
	    {"assigned=nobody (no match)",
	     {.assigned = "nobody", .sla = -1, .review = -1, .autonomous = -1},
	     CSA_SORT_UPDATED},
	    {"sla=breached",
	     {.sla = CSA_SLA_BREACHED, .review = -1, .autonomous = -1},
	     CSA_SORT_UPDATED},
	    {"sla=at_risk",
	     {.sla = CSA_SLA_AT_RISK, .review = -1, .autonomous = -1},
	     CSA_SORT_UPDATED},
	    {"sla=on_time&sort=sla_due",
	     {.sla = CSA_SLA_ON_TIME, .review = -1, .autonomous = -1},
	     CSA_SORT_SLA_DUE},
	    {"review=true", {.sla = -1, .review = 1, .autonomous = -1}, CSA_SORT_UPDATED},
	    {"autonomous=true", {.sla = -1, .review = -1, .autonomous = 1}, CSA_SORT_UPDATED},
	    {"q=" INBOXGEN_E_WORD " (rare word)",
	     {.q = INBOXGEN_E_WORD, .sla = -1, .review = -1, .autonomous = -1},
	     CSA_SORT_UPDATED},
	    {"q=refund (common word)",
	     {.q = "refund", .sla = -1, .review = -1, .autonomous = -1},
	     CSA_SORT_UPDATED},
	    {"q=refund&status=active&sort=priority",
	     {.q = "refund", .status = "active", .sla = -1, .review = -1, .autonomous = -1},
	     CSA_SORT_PRIORITY},
	    {"assigned=nobody&sort=priority (no match)",
	     {.assigned = "nobody", .sla = -1, .review = -1, .autonomous = -1},
	     CSA_SORT_PRIORITY},
	    {"q=zqxnothing (no match)",
	     {.q = "zqxnothing", .sla = -1, .review = -1, .autonomous = -1},
	     CSA_SORT_UPDATED},
	    {"status=pending&sla=breached&sort=sla_due",
	     {.status = "pending", .sla = CSA_SLA_BREACHED, .review = -1, .autonomous = -1},
	     CSA_SORT_SLA_DUE},
	};
	printf("\nfirst page of 50, median / worst of %d runs:\n", RUNS);
	double worst_all = 0;
	for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++) {
		double t[RUNS];
		size_t got = 0;
		struct csa_search_filter f = rows[k].f;
		f.now_ms = csa_now_ms();
		for (int r = 0; r < RUNS; r++) {
			struct csa_search_page page;
			t0 = csa_mono_ns();
			if (csa_search_query(s, &f, rows[k].sort, NULL, 50, &page, &err))
				die(rows[k].name, err.msg);
			t[r] = ms_since(t0);
			got = page.n;
			csa_search_page_release(&page);
		}
		qsort(t, RUNS, sizeof(t[0]), dbl_cmp);
		if (t[RUNS - 1] > worst_all)
			worst_all = t[RUNS - 1];
		printf("  %-44s %6.2f / %6.2f ms  (%zu rows)\n", rows[k].name, t[RUNS / 2],
		       t[RUNS - 1], got);
	}
	printf("%-46s %.2f ms\n", "worst first page of any filter", worst_all);
	/* a page deep in the list: a cursor costs what the first page does */
	struct csa_search_filter all = {
	    .sla = -1, .review = -1, .autonomous = -1, .now_ms = csa_now_ms()};
	char cursor[CSA_SEARCH_CURSOR_MAX + 1] = "";
	double deep = 0;
	long pages = 0;
	for (; pages < 1000; pages++) {
		struct csa_search_page page;
		t0 = csa_mono_ns();
		if (csa_search_query(s, &all, CSA_SORT_UPDATED, cursor, 50, &page, &err))
			die("pages", err.msg);
		deep = ms_since(t0);
		snprintf(cursor, sizeof(cursor), "%s", page.next);
		csa_search_page_release(&page);
		if (!*cursor)
			break;
	}
	printf("%-46s %.2f ms\n", "page 1,000 through cursors (its own time)", deep);
	long total = 0;
	t0 = csa_mono_ns();
	struct csa_search_filter active = all;
	active.status = "active";
	if (csa_search_count(s, &active, &total, &err))
		die("count", err.msg);
	printf("%-46s %.2f ms (%ld)\n", "count=1 of status=active", ms_since(t0), total);
	csa_search_close(s);
	csa_ws_close(ws);
	char cmd[4300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (!keep && system(cmd) != 0)
		fprintf(stderr, "bench_inbox: could not remove %s\n", dir);
	return 0;
}
