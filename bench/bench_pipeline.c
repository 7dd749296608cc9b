/*
 * make bench-pipeline: tickets per second through the whole pipeline
 * (context manager, four agents, automation controller, one durable
 * commit per ticket) next to the store-only rate (the same tickets created
 * with one durable commit each, no agents) measured in the same run, on
 * one thread and on one thread per core, with the latency per ticket.
 * A middle row commits, store only, documents as the pipeline leaves them
 * (about three times the bytes of a new ticket): the pipeline against it
 * is the agents' share, it against the first row the bigger documents'.
 * Each figure is the median of three repetitions of the three rounds.
 * Not a test: nothing passes or fails.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "automation/control.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/import.h"
#include "flow/pipeline.h"
#include "gen/gen.h"
#include "store/ticket.h"
#include "store/ws.h"

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

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

/* One measured round: n tickets through the store alone (p NULL) or the
 * pipeline, shared out over 'threads' threads. */
struct round {
	struct csa_ws *ws;
	struct csa_pipeline *p;
	json_t **docs; /* arrivals, or with 'processed' {"e", "i", "t"} */
	int processed;
	double *lat; /* ms per ticket, sorted after the round */
	int n, threads;
	_Atomic int next;
	double rate;
	double cpu_ms; /* process CPU (user + system) per ticket */
};

static void *worker(void *arg)
{
	struct round *r = arg;
	struct csa_err err = {0};
	for (int i; (i = atomic_fetch_add(&r->next, 1)) < r->n;) {
		int64_t s0 = csa_mono_ns();
		if (r->p) {
			json_t *res;
			if (csa_pipeline_ingest(r->p, r->docs[i], &res, &err))
				die("pipeline", err.msg);
			json_decref(res);
		} else if (r->processed) {
			struct csa_ticket tk = {0};
			json_t *t = json_object_get(r->docs[i], "t");
			snprintf(tk.id, sizeof(tk.id), "%s", csa_json_str(t, "ticket_id"));
			tk.e = json_object_get(r->docs[i], "e");
			tk.i = json_object_get(r->docs[i], "i");
			tk.t = t;
			if (csa_store_commit(r->ws->store, &tk, CSA_DOC_ALL, &err))
				die("store", err.msg);
		} else {
			struct csa_ticket tk;
			const struct csa_config *cfg = csa_ws_config(r->ws);
			int rc = csa_ticket_build(cfg, r->docs[i], csa_now_ms(), &tk, &err);
			csa_config_unref(cfg);
			if (rc || csa_store_commit(r->ws->store, &tk, CSA_DOC_ALL, &err))
				die("store", err.msg);
			csa_ticket_release(&tk);
		}
		r->lat[i] = (double)(csa_mono_ns() - s0) / 1e6;
	}
	return NULL;
}

/* Documents as the pipeline leaves them, under a fresh id: arrival i with
 * 'prefix' goes through it (not timed), and every mention of its id in E,
 * I and T (ticket_id, synchronized_with, decision ids) becomes one with
 * prefix 'to', of the same length. */
static json_t *processed(struct csa_ws *ws, struct csa_pipeline *p, struct csa_gen *g,
                         const char *prefix, const char *to, int i)
{
	struct csa_err err = {0};
	json_t *doc = arrival(g, prefix, i), *res;
	if (csa_pipeline_ingest(p, doc, &res, &err))
		die("pipeline", err.msg);
	json_decref(res);
	char from[32], id[32];
	snprintf(from, sizeof(from), "%s", csa_json_str(doc, "ticket_id"));
	snprintf(id, sizeof(id), "%s%06d", to, i);
	json_decref(doc);
	struct csa_ticket tk;
	if (strlen(from) != strlen(id) || csa_store_load(ws->store, from, &tk, &err))
		die("load", err.msg);
	json_t *docs = json_pack("{s:O, s:O, s:O}", "e", tk.e, "i", tk.i, "t", tk.t);
	csa_ticket_release(&tk);
	char *text = json_dumps(docs, JSON_COMPACT);
	json_decref(docs);
	for (char *at = text; text && (at = strstr(at, from)) != NULL; at += strlen(id))
		memcpy(at, id, strlen(id));
	json_t *out = text ? json_loads(text, 0, NULL) : NULL;
	free(text);
	if (!out)
		die("processed", "cannot rename a processed ticket");
	return out;
}

static void run_round(struct round *r)
{
	pthread_t t[64];
	int nt = r->threads < 64 ? r->threads : 64;
	struct rusage u0, u1;
	getrusage(RUSAGE_SELF, &u0);
	int64_t t0 = csa_mono_ns();
	for (int i = 0; i < nt; i++)
		if (pthread_create(&t[i], NULL, worker, r))
			die("threads", "cannot start a thread");
	for (int i = 0; i < nt; i++)
		pthread_join(t[i], NULL);
	r->rate = r->n / ((double)(csa_mono_ns() - t0) / 1e9);
	/* CPU against wall time tells computing from waiting on the disk
	 * (background threads, the ledger's and checkpoints', included) */
	getrusage(RUSAGE_SELF, &u1);
	double us = (double)(u1.ru_utime.tv_sec - u0.ru_utime.tv_sec) * 1e6 +
	            (double)(u1.ru_utime.tv_usec - u0.ru_utime.tv_usec) +
	            (double)(u1.ru_stime.tv_sec - u0.ru_stime.tv_sec) * 1e6 +
	            (double)(u1.ru_stime.tv_usec - u0.ru_stime.tv_usec);
	r->cpu_ms = us / 1e3 / r->n;
	qsort(r->lat, (size_t)r->n, sizeof(*r->lat), by_value);
}

/* A workspace with 3,000 tickets of history imported and its models
 * trained, in a new directory under 'tmp'. */
struct bench_ws {
	char dir[4096];
	struct csa_ws *ws;
	struct csa_pipeline *p;
	struct csa_auto *a;
};

static void bench_ws_open(struct bench_ws *b, const char *tmp, struct csa_gen *g)
{
	struct csa_err err = {0};
	snprintf(b->dir, sizeof(b->dir), "%s/csa-bench-pipe-XXXXXX", tmp);
	if (!mkdtemp(b->dir))
		die("mkdtemp", "failed");
	if (csa_ws_init(b->dir, &err) || csa_ws_open(b->dir, &b->ws, &err))
		die("workspace", err.msg);
	char hist[4200];
	snprintf(hist, sizeof(hist), "%s/history.jsonl", b->dir);
	FILE *f = fopen(hist, "w");
	if (!f || csa_gen_write(g, 3000, f))
		die("history", "cannot write");
	fclose(f);
	f = fopen(hist, "r");
	json_t *rep;
	if (!f || csa_import_jsonl(b->ws, f, "history", 1, &rep, &err))
		die("import", err.msg);
	fclose(f);
	json_decref(rep);
	if (csa_pipeline_open(b->ws, &b->p, &err) || csa_auto_open(b->ws, b->p, &b->a, &err))
		die("open", err.msg);
}

static void bench_ws_close(struct bench_ws *b)
{
	csa_auto_close(b->a);
	csa_pipeline_free(b->p);
	csa_ws_close(b->ws);
}

/* Deleted only when every round is over: on ext4 without a journal, a new
 * inode skips those freed in the last minute (five, while their inode
 * table block is still dirty; recently_deleted() in fs/ext4/ialloc.c), so
 * after a workspace of tens of thousands of files goes, every file created
 * can cost a scan of them (22% of the samples in one profile) and the
 * store-only rate can fall fivefold. */
static void bench_ws_remove(const struct bench_ws *b)
{
	char cmd[4300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->dir);
	if (system(cmd) != 0)
		die("cleanup", b->dir);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 2000;
	if (n < 1 || n > 10000000)
		die("usage", "bench_pipeline [TICKETS], 1 to 10000000");
	/* TMPDIR picks the disk measured (the data disk of a deployment) */
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	struct csa_gen *g = csa_gen_new(5, 1767225600000LL);

	/* Rounds of n tickets each, arrivals generated beforehand: store only
	 * (the same tickets created with one durable commit each) and the
	 * whole pipeline, first on one thread, then on one thread per core
	 * as the server runs them. The three rounds run REPS times in turn
	 * and each figure is the median: a shared machine's bursts of load
	 * then move one repetition, not the table. Each thread count gets a
	 * workspace of its own, so that both halves of the table start from
	 * the same state. */
	enum { REPS = 3 };
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int threads[2] = {1, cores > 1 ? (int)cores : 2};
	printf("%d tickets per round, one durable commit per ticket, a workspace of %d tickets "
	       "per thread count, median of %d repetitions\n",
	       n, 3000, REPS);
	printf("%-44s %8s %10s %8s %8s %8s %8s\n", "path", "threads", "tickets/s", "vs store",
	       "p50 ms", "p99 ms", "CPU ms");
	static const char *const names[3] = {"store only (create + commit)",
	                                     "store only, processed documents",
	                                     "pipeline (4 agents + controller + commit)"};
	struct bench_ws bws[2];
	for (int k = 0; k < 2; k++) {
		struct bench_ws *b = &bws[k];
		bench_ws_open(b, tmp, g);
		struct csa_ws *ws = b->ws;
		struct csa_pipeline *p = b->p;
		/* per row and repetition: rate, share of the store-only rate,
		 * p50, p99, CPU */
		double fig[3][5][REPS];
		for (int it = 0; it < REPS; it++) {
			struct round r[3] = {
			    {.ws = ws, .n = n, .threads = threads[k]},
			    {.ws = ws, .n = n, .threads = threads[k], .processed = 1},
			    {.ws = ws, .p = p, .n = n, .threads = threads[k]}};
			for (int m = 0; m < 3; m++) {
				char prefix[8], to[8];
				snprintf(prefix, sizeof(prefix), "%c%d%d", "SQP"[m], k, it);
				snprintf(to, sizeof(to), "R%d%d", k, it);
				r[m].docs = calloc((size_t)n, sizeof(json_t *));
				r[m].lat = calloc((size_t)n, sizeof(double));
				if (!r[m].docs || !r[m].lat)
					die("memory", "out of memory");
				for (int i = 0; i < n; i++)
					r[m].docs[i] = r[m].processed
					                   ? processed(ws, p, g, prefix, to, i)
					                   : arrival(g, prefix, i);
				run_round(&r[m]);
			}
			for (int m = 0; m < 3; m++) {
				fig[m][0][it] = r[m].rate;
				fig[m][1][it] = r[m].rate / r[0].rate;
				fig[m][2][it] = r[m].lat[n / 2];
				fig[m][3][it] = r[m].lat[n * 99 / 100];
				fig[m][4][it] = r[m].cpu_ms;
				for (int i = 0; i < n; i++)
					json_decref(r[m].docs[i]);
				free(r[m].docs);
				free(r[m].lat);
			}
		}
		for (int m = 0; m < 3; m++) {
			for (int q = 0; q < 5; q++)
				qsort(fig[m][q], REPS, sizeof(double), by_value);
			printf("%-44s %8d %10.0f %7.0f%% %8.2f %8.2f %8.3f\n", names[m], threads[k],
			       fig[m][0][REPS / 2], 100 * fig[m][1][REPS / 2], fig[m][2][REPS / 2],
			       fig[m][3][REPS / 2], fig[m][4][REPS / 2]);
		}
		fflush(stdout);
		bench_ws_close(b);
	}
	for (int k = 0; k < 2; k++)
		bench_ws_remove(&bws[k]);
	csa_gen_free(g);
	return 0;
}
