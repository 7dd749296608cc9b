/*
 * make bench-store: durable tri-file commits per second, in one run on the
 * same disk, the methods taking turns (six slices each):
 *   raw        write + fsync + rename of three files of the documents' size
 *              (no JSON, no checks): the limit of the naive protocol
 *   csa        one ticket per commit (schema checks, journal, renames,
 *              checkpoints included)
 *   csa group  32 tickets per commit
 *   sqlite     the same three documents in one transaction, WAL mode,
 *              synchronous=FULL
 * Not a test: nothing here passes or fails.
 *
 * bench_store [seconds per row [method]]: with a method (raw, csa, group,
 * sqlite) only its row runs, for a profiler or strace to look at one
 * method alone.
 */
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/json.h"
#include "base/ts.h"
#include "store/store.h"
#include "store/ticket.h"
#include "store/ws.h"

#define TICKETS 64
#define GROUP   32

static double secs(void)
{
	return (double)csa_mono_ns() / 1e9;
}

/* user + system CPU time of this process */
static double cpu_secs(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what, const char *msg)
{
	fprintf(stderr, "bench_store: %s: %s\n", what, msg);
	exit(1);
}

static void bump(struct csa_ticket *tk, long v)
{
	char s[32];
	snprintf(s, sizeof(s), "v%ld", v);
	json_object_set_new(tk->t, "assigned_member", json_string(s));
	json_object_set_new(json_object_get(tk->i, "participants"), "assigned_resolver",
	                    json_string(s));
}

#define ROUNDS 6

struct bench {
	struct csa_ws *ws;
	struct csa_ticket *tks, **ptrs;
	const char *root;
	const size_t *sizes;
	char *blob;
	sqlite3 *db;
	sqlite3_stmt *st;
	long raw_n, single_n, group_n, sql_n;
};

/* raw: three files, write + fsync + rename each */
static long run_raw(struct bench *b)
{
	long n = b->raw_n++;
	for (int k = 0; k < 3; k++) {
		char tmp[4300], dst[4300];
		snprintf(tmp, sizeof(tmp), "%s/raw%d.tmp", b->root, k);
		snprintf(dst, sizeof(dst), "%s/raw%d_%ld.json", b->root, k, n % TICKETS);
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, b->blob, b->sizes[k]) != (ssize_t)b->sizes[k] || fsync(fd) ||
		    close(fd) || rename(tmp, dst))
			die("raw", "i/o failed");
	}
	return 1;
}

/* csa, one ticket per commit */
static long run_single(struct bench *b)
{
	struct csa_err err = {0};
	long n = b->single_n++;
	struct csa_ticket *tk = &b->tks[n % TICKETS];
	bump(tk, n);
	if (csa_store_commit(b->ws->store, tk, CSA_DOC_I | CSA_DOC_T, &err))
		die("commit", err.msg);
	return 1;
}

/* csa, GROUP tickets per commit */
static long run_group(struct bench *b)
{
	struct csa_err err = {0};
	long g = b->group_n++;
	struct csa_ticket **batch = &b->ptrs[(g % (TICKETS / GROUP)) * GROUP];
	for (int i = 0; i < GROUP; i++)
		bump(batch[i], g);
	if (csa_store_commit_many(b->ws->store, batch, GROUP, CSA_DOC_I | CSA_DOC_T, &err))
		die("group commit", err.msg);
	return GROUP;
}

/* SQLite: a ticket's three documents in one transaction */
static long run_sqlite(struct bench *b)
{
	long n = b->sql_n++;
	struct csa_ticket *tk = &b->tks[n % TICKETS];
	sqlite3_exec(b->db, "BEGIN", NULL, NULL, NULL);
	for (int k = 0; k < 3; k++) {
		sqlite3_bind_text(b->st, 1, tk->id, -1, SQLITE_STATIC);
		sqlite3_bind_int(b->st, 2, k);
		sqlite3_bind_text(b->st, 3, tk->loaded[k], (int)tk->loaded_len[k], SQLITE_STATIC);
		if (sqlite3_step(b->st) != SQLITE_DONE)
			die("sqlite", sqlite3_errmsg(b->db));
		sqlite3_reset(b->st);
	}
	if (sqlite3_exec(b->db, "COMMIT", NULL, NULL, NULL))
		die("sqlite", sqlite3_errmsg(b->db));
	return 1;
}

static const struct {
	const char *key;
	const char *name;
	long (*run)(struct bench *b);
} methods[] = {
    {"raw", "raw write+fsync+rename x3", run_raw},
    {"csa", "csa commit (1 ticket)", run_single},
    {"group", "csa group commit (32 tickets)", run_group},
    {"sqlite", "sqlite WAL synchronous=FULL", run_sqlite},
};
#define NMETHODS 4

int main(int argc, char **argv)
{
	double budget = argc > 1 ? atof(argv[1]) : 3.0; /* seconds per row */
	const char *only = argc > 2 ? argv[2] : NULL;
	int runs[NMETHODS], nrun = 0;
	for (int k = 0; k < NMETHODS; k++)
		nrun += runs[k] = !only || strcmp(only, methods[k].key) == 0;
	if (!nrun)
		die("method", "expected raw, csa, group or sqlite");
	char dir[] = "/tmp/csa-bench-store-XXXXXX";
	if (!mkdtemp(dir))
		die("mkdtemp", "failed");
	const char *base = getenv("CSA_BENCH_DIR");
	char root[4096];
	snprintf(root, sizeof(root), "%s", base ? base : dir);
	struct csa_err err = {0};
	struct csa_ws *ws;
	char wsdir[4200];
	snprintf(wsdir, sizeof(wsdir), "%s/ws", root);
	if (csa_ws_init(wsdir, &err) || csa_ws_open(wsdir, &ws, &err))
		die("workspace", err.msg);

	/* Realistic tickets: three customer messages and one internal note. */
	struct csa_ticket tks[TICKETS];
	for (int i = 0; i < TICKETS; i++) {
		json_t *ctx = json_pack(
		    "{s:s, s:s, s:s, s:{s:s}, s:[{s:s}, {s:s}, {s:s}], s:[{s:s}]}", "ticket_id", "",
		    "client_name", "Ada Park", "company_name", "Northwind", "customer",
		    "subscription_tier", "PREMIUM", "messages", "content",
		    "Our dashboard has been down since 9am and nobody can log in.", "content",
		    "Any update? We have a board meeting at noon.", "content",
		    "It works again after the reset, thanks.", "internal_messages", "content",
		    "Checked the auth service: token cache was stale.");
		char id[16];
		snprintf(id, sizeof(id), "B%04d", i);
		json_object_set_new(ctx, "ticket_id", json_string(id));
		const struct csa_config *cfg = csa_ws_config(ws);
		int rc = csa_ticket_build(cfg, ctx, csa_now_ms(), &tks[i], &err);
		csa_config_unref(cfg);
		if (rc)
			die("build", err.msg);
		json_decref(ctx);
	}
	struct csa_ticket *ptrs[TICKETS];
	for (int i = 0; i < TICKETS; i++)
		ptrs[i] = &tks[i];
	if (csa_store_commit_many(ws->store, ptrs, TICKETS, CSA_DOC_ALL, &err))
		die("create", err.msg);
	size_t sizes[3];
	sizes[0] = tks[0].loaded_len[0];
	sizes[1] = tks[0].loaded_len[1];
	sizes[2] = tks[0].loaded_len[2];

	/* SQLite, WAL, synchronous=FULL */
	char dbpath[4300];
	snprintf(dbpath, sizeof(dbpath), "%s/bench.db", root);
	struct bench b = {.ws = ws, .tks = tks, .ptrs = ptrs, .root = root, .sizes = sizes};
	if (sqlite3_open(dbpath, &b.db) ||
	    sqlite3_exec(b.db,
	                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
	                 "CREATE TABLE doc(id TEXT, kind INT, body TEXT, PRIMARY KEY(id, kind));",
	                 NULL, NULL, NULL) ||
	    sqlite3_prepare_v2(b.db, "INSERT OR REPLACE INTO doc VALUES(?1, ?2, ?3)", -1, &b.st,
	                       NULL))
		die("sqlite", sqlite3_errmsg(b.db));
	b.blob = malloc(sizes[0] + sizes[1] + sizes[2]);
	memset(b.blob, 'x', sizes[0] + sizes[1] + sizes[2]);

	/* The methods take turns, ROUNDS slices each, so a disk or CPU shared
	 * with other work weighs on them alike; each round's ratio of csa's
	 * single commit to SQLite's is shown too. */
	long counts[NMETHODS] = {0};
	double times[NMETHODS] = {0}, cpu[NMETHODS] = {0}, lo = 1e9, hi = 0;
	double slice = budget / ROUNDS;
	for (int r = 0; r < ROUNDS; r++) {
		double rate[NMETHODS] = {0};
		for (int k = 0; k < NMETHODS; k++) {
			if (!runs[k])
				continue;
			double t0 = secs(), c0 = cpu_secs(), t;
			long n = 0;
			do
				n += methods[k].run(&b);
			while ((t = secs() - t0) < slice);
			counts[k] += n;
			times[k] += t;
			cpu[k] += cpu_secs() - c0;
			rate[k] = (double)n / t;
		}
		if (runs[1] && runs[3]) {
			double ratio = rate[1] / rate[3];
			lo = ratio < lo ? ratio : lo;
			hi = ratio > hi ? ratio : hi;
		}
	}
	sqlite3_finalize(b.st);
	sqlite3_close(b.db);

	printf("document sizes: E %zu B, I %zu B, T %zu B; %.1f s per row in %d turns; disk of "
	       "%s\n",
	       sizes[0], sizes[1], sizes[2], budget, ROUNDS, root);
	printf("%-36s %12s %10s %10s %14s\n", "method", "commits/s", "vs raw", "vs sqlite",
	       "CPU us/commit");
	double raw = runs[0] ? (double)counts[0] / times[0] : 0,
	       sql = runs[3] ? (double)counts[3] / times[3] : 0;
	for (int k = 0; k < NMETHODS; k++) {
		if (!runs[k])
			continue;
		double rate = (double)counts[k] / times[k];
		char vs_raw[16] = "-", vs_sql[16] = "-"; /* a row that did not run */
		if (raw > 0)
			snprintf(vs_raw, sizeof(vs_raw), "%.2fx", rate / raw);
		if (sql > 0)
			snprintf(vs_sql, sizeof(vs_sql), "%.2fx", rate / sql);
		printf("%-36s %12.0f %10s %10s %14.1f\n", methods[k].name, rate, vs_raw, vs_sql,
		       cpu[k] / (double)counts[k] * 1e6);
	}
	if (runs[1] && runs[3])
		printf("csa single commit / sqlite, per turn: %.2fx to %.2fx\n", lo, hi);
	for (int i = 0; i < TICKETS; i++)
		csa_ticket_release(&tks[i]);
	csa_ws_close(ws);
	free(b.blob);
	char cmd[4400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench_store: could not remove %s\n", dir);
	return 0;
}
