/*
 * make bench-pipeline: tickets per second through the whole pipeline
 * (context manager, four agents, automation controller, one durable
 * commit per ticket) next to the store-only rate (the same tickets created
 * with one durable commit each, no agents) measured in the same run.
 * Not a test: nothing passes or fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "automation/control.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/import.h"
#include "flow/pipeline.h"
#include "gen/gen.h"
#include "store/ticket.h"
#include "store/ws.h"

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "bench_pipeline: %s: %s\n", what, msg);
	exit(1);
}

/* A ticket as it arrives: the first message, no gold. */
static json_t *arrival(struct csa_gen *g, const char *prefix, int i)
{
	json_t *h = csa_gen_next(g);
	char id[32];
	snprintf(id, sizeof(id), "%s%06d", prefix, i);
	json_t *doc = csa_gen_arrival(h, id);
	json_decref(h);
	return doc;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 2000;
	/* TMPDIR picks the disk measured (the data disk of a deployment) */
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/csa-bench-pipe-XXXXXX", tmp);
	if (!mkdtemp(dir))
		die("mkdtemp", "failed");
	struct csa_err err = {0};
	struct csa_ws *ws;
	if (csa_ws_init(dir, &err) || csa_ws_open(dir, &ws, &err))
		die("workspace", err.msg);
	/* history and models */
	char hist[4200];
	snprintf(hist, sizeof(hist), "%s/history.jsonl", dir);
	FILE *f = fopen(hist, "w");
	struct csa_gen *g = csa_gen_new(5, 1767225600000LL);
	if (csa_gen_write(g, 3000, f))
		die("history", "cannot write");
	fclose(f);
	f = fopen(hist, "r");
	json_t *rep;
	if (csa_import_jsonl(ws, f, "history", 1, &rep, &err))
		die("import", err.msg);
	fclose(f);
	json_decref(rep);
	struct csa_pipeline *p;
	struct csa_auto *a;
	if (csa_pipeline_open(ws, &p, &err) || csa_auto_open(ws, p, &a, &err))
		die("open", err.msg);

	/* store only: create the same kind of tickets, one durable commit each */
	int64_t t0 = csa_mono_ns();
	for (int i = 0; i < n; i++) {
		json_t *doc = arrival(g, "S", i);
		struct csa_ticket tk;
		if (csa_ticket_build(&ws->cfg, doc, csa_now_ms(), &tk, &err) ||
		    csa_store_commit(ws->store, &tk, CSA_DOC_ALL, &err))
			die("store", err.msg);
		csa_ticket_release(&tk);
		json_decref(doc);
	}
	double store_rate = n / ((double)(csa_mono_ns() - t0) / 1e9);

	/* the whole pipeline with the automation controller */
	t0 = csa_mono_ns();
	for (int i = 0; i < n; i++) {
		json_t *doc = arrival(g, "P", i), *res;
		if (csa_pipeline_ingest(p, doc, &res, &err))
			die("pipeline", err.msg);
		json_decref(res);
		json_decref(doc);
	}
	double pipe_rate = n / ((double)(csa_mono_ns() - t0) / 1e9);
	printf("%d tickets each, one durable commit per ticket, workspace of %d tickets\n", n,
	       3000);
	printf("%-44s %10s %8s\n", "path", "tickets/s", "vs store");
	printf("%-44s %10.0f %7.0f%%\n", "store only (create + commit)", store_rate, 100.0);
	printf("%-44s %10.0f %7.0f%%\n", "pipeline (4 agents + controller + commit)", pipe_rate,
	       100 * pipe_rate / store_rate);
	csa_gen_free(g);
	csa_auto_close(a);
	csa_pipeline_free(p);
	csa_ws_close(ws);
	char cmd[4300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : 1;
}
