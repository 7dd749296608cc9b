/*
 * make bench-store: durable tri-file commits per second, in one run on the
 * same disk:
 *   raw        write + fsync + rename of three files of the documents' size
 *              (no JSON, no checks): the limit of the naive protocol
 *   csa        one ticket per commit (schema checks, journal, renames,
 *              checkpoints included)
 *   csa group  32 tickets per commit
 *   sqlite     the same three documents in one transaction, WAL mode,
 *              synchronous=FULL
 * Not a test: nothing here passes or fails.
 */
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(int argc, char **argv)
{
	double budget = argc > 1 ? atof(argv[1]) : 3.0; /* seconds per row */
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

	/* raw: three files, write + fsync + rename each */
	char *blob = malloc(sizes[0] + sizes[1] + sizes[2]);
	memset(blob, 'x', sizes[0] + sizes[1] + sizes[2]);
	long n = 0;
	double t0 = secs(), t;
	do {
		for (int k = 0; k < 3; k++) {
			char tmp[4300], dst[4300];
			snprintf(tmp, sizeof(tmp), "%s/raw%d.tmp", root, k);
			snprintf(dst, sizeof(dst), "%s/raw%d_%ld.json", root, k, n % TICKETS);
			int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd < 0 || write(fd, blob, sizes[k]) != (ssize_t)sizes[k] || fsync(fd) ||
			    close(fd) || rename(tmp, dst))
				die("raw", "i/o failed");
		}
		n++;
	} while ((t = secs() - t0) < budget);
	double raw = (double)n / t;

	/* csa, one ticket per commit */
	n = 0;
	t0 = secs();
	do {
		struct csa_ticket *tk = &tks[n % TICKETS];
		bump(tk, n);
		if (csa_store_commit(ws->store, tk, CSA_DOC_I | CSA_DOC_T, &err))
			die("commit", err.msg);
		n++;
	} while ((t = secs() - t0) < budget);
	double single = (double)n / t;

	/* csa, group commit */
	long g = 0;
	n = 0;
	t0 = secs();
	do {
		struct csa_ticket **batch = &ptrs[(g % (TICKETS / GROUP)) * GROUP];
		for (int i = 0; i < GROUP; i++)
			bump(batch[i], g);
		if (csa_store_commit_many(ws->store, batch, GROUP, CSA_DOC_I | CSA_DOC_T, &err))
			die("group commit", err.msg);
		g++;
		n += GROUP;
	} while ((t = secs() - t0) < budget);
	double group = (double)n / t;

	/* SQLite, WAL, synchronous=FULL */
	char dbpath[4300];
	snprintf(dbpath, sizeof(dbpath), "%s/bench.db", root);
	sqlite3 *db;
	sqlite3_stmt *st;
	if (sqlite3_open(dbpath, &db) ||
	    sqlite3_exec(db,
	                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
	                 "CREATE TABLE doc(id TEXT, kind INT, body TEXT, PRIMARY KEY(id, kind));",
	                 NULL, NULL, NULL) ||
	    sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO doc VALUES(?1, ?2, ?3)", -1, &st, NULL))
		die("sqlite", sqlite3_errmsg(db));
	n = 0;
	t0 = secs();
	do {
		sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
		for (int k = 0; k < 3; k++) {
			sqlite3_bind_text(st, 1, tks[n % TICKETS].id, -1, SQLITE_STATIC);
			sqlite3_bind_int(st, 2, k);
			sqlite3_bind_text(st, 3, tks[n % TICKETS].loaded[k],
			                  (int)tks[n % TICKETS].loaded_len[k], SQLITE_STATIC);
			if (sqlite3_step(st) != SQLITE_DONE)
				die("sqlite", sqlite3_errmsg(db));
			sqlite3_reset(st);
		}
		if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL))
			die("sqlite", sqlite3_errmsg(db));
		n++;
	} while ((t = secs() - t0) < budget);
	double sql = (double)n / t;
	sqlite3_finalize(st);
	sqlite3_close(db);

	printf("document sizes: E %zu B, I %zu B, T %zu B; %.0f s per row; disk of %s\n", sizes[0],
	       sizes[1], sizes[2], budget, root);
	printf("%-36s %12s %10s\n", "method", "commits/s", "vs raw");
	printf("%-36s %12.0f %9.2fx\n", "raw write+fsync+rename x3", raw, 1.0);
	printf("%-36s %12.0f %9.2fx\n", "csa commit (1 ticket)", single, single / raw);
	printf("%-36s %12.0f %9.2fx\n", "csa group commit (32 tickets)", group, group / raw);
	printf("%-36s %12.0f %9.2fx\n", "sqlite WAL synchronous=FULL", sql, sql / raw);
	for (int i = 0; i < TICKETS; i++)
		csa_ticket_release(&tks[i]);
	csa_ws_close(ws);
	free(blob);
	char cmd[4400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench_store: could not remove %s\n", dir);
	return 0;
}
