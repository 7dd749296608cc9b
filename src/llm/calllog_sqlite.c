/* The SQLite backend of llm/calllog.h: one table in llm.db (WAL), its
 * statements prepared once and run under a mutex (threads share it). */
#include "llm/calllog.h"
#include "base/fsops.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sqlite_log {
	struct csa_call_log base;
	pthread_mutex_t mu;
	sqlite3 *db;
	char path[4096];
};

static int db_err(struct sqlite_log *s, struct csa_err *err, const char *doing)
{
	int code = sqlite3_errcode(s->db);
	return csa_error(err, code == SQLITE_BUSY || code == SQLITE_LOCKED ? CSA_EBUSY : CSA_EIO,
	                 "'%s': %s: %s", s->path, doing, sqlite3_errmsg(s->db));
}

static int s_record(struct csa_call_log *l, const struct csa_llm_call *c, struct csa_err *err)
{
	struct sqlite_log *s = (struct sqlite_log *)l;
	sqlite3_stmt *st = NULL;
	int rc = CSA_OK;
	pthread_mutex_lock(&s->mu);
	if (sqlite3_prepare_v2(s->db, "INSERT INTO calls VALUES(?,?,?,?,?,?,?,?)", -1, &st, NULL) !=
	    SQLITE_OK) {
		rc = db_err(s, err, "recording an LLM call");
	} else {
		sqlite3_bind_int64(st, 1, c->ts_ms);
		sqlite3_bind_text(st, 2, c->backend, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 3, c->purpose, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 4, c->tokens_in);
		sqlite3_bind_int64(st, 5, c->tokens_out);
		sqlite3_bind_double(st, 6, c->cost);
		sqlite3_bind_int64(st, 7, c->latency_ms);
		sqlite3_bind_int(st, 8, c->ok);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = db_err(s, err, "recording an LLM call");
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int s_spent(struct csa_call_log *l, int64_t calls_after, int64_t cost_from, long *calls,
                   double *cost, struct csa_err *err)
{
	struct sqlite_log *s = (struct sqlite_log *)l;
	sqlite3_stmt *st = NULL;
	int rc = CSA_OK;
	pthread_mutex_lock(&s->mu);
	if (sqlite3_prepare_v2(s->db,
	                       "SELECT (SELECT count(*) FROM calls WHERE ts > ?1),"
	                       " (SELECT coalesce(sum(cost), 0) FROM calls WHERE ts >= ?2)",
	                       -1, &st, NULL) != SQLITE_OK) {
		rc = db_err(s, err, "reading the LLM budget");
	} else {
		sqlite3_bind_int64(st, 1, calls_after);
		sqlite3_bind_int64(st, 2, cost_from);
		if (sqlite3_step(st) == SQLITE_ROW) {
			*calls = (long)sqlite3_column_int64(st, 0);
			*cost = sqlite3_column_double(st, 1);
		} else {
			rc = db_err(s, err, "reading the LLM budget");
		}
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int s_by_backend(struct csa_call_log *l, int64_t from, json_t **out, struct csa_err *err)
{
	struct sqlite_log *s = (struct sqlite_log *)l;
	sqlite3_stmt *st = NULL;
	json_t *per = json_object();
	int rc = per ? CSA_OK : csa_error(err, CSA_ENOMEM, "out of memory reading LLM usage");
	pthread_mutex_lock(&s->mu);
	if (rc == CSA_OK &&
	    sqlite3_prepare_v2(s->db,
	                       "SELECT backend, count(*), sum(ok), sum(cost), avg(latency_ms),"
	                       " sum(tokens_in), sum(tokens_out) FROM calls WHERE ts >= ?"
	                       " GROUP BY backend",
	                       -1, &st, NULL) != SQLITE_OK)
		rc = db_err(s, err, "reading LLM usage");
	if (rc == CSA_OK) {
		sqlite3_bind_int64(st, 1, from);
		int step;
		while ((step = sqlite3_step(st)) == SQLITE_ROW)
			json_object_set_new(
			    per, (const char *)sqlite3_column_text(st, 0),
			    json_pack("{s:I, s:I, s:f, s:f, s:I, s:I}", "calls",
			              (json_int_t)sqlite3_column_int64(st, 1), "ok",
			              (json_int_t)sqlite3_column_int64(st, 2), "cost",
			              sqlite3_column_double(st, 3), "mean_latency_ms",
			              sqlite3_column_double(st, 4), "tokens_in",
			              (json_int_t)sqlite3_column_int64(st, 5), "tokens_out",
			              (json_int_t)sqlite3_column_int64(st, 6)));
		if (step != SQLITE_DONE)
			rc = db_err(s, err, "reading LLM usage");
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->mu);
	if (rc) {
		json_decref(per);
		return rc;
	}
	*out = per;
	return CSA_OK;
}

static void s_close(struct csa_call_log *l)
{
	struct sqlite_log *s = (struct sqlite_log *)l;
	sqlite3_close(s->db);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

static const struct csa_call_log_ops sqlite_ops = {
    .record = s_record, .spent = s_spent, .by_backend = s_by_backend, .close = s_close};

int csa_call_log_open(const char *ws_root, struct csa_call_log **out, struct csa_err *err)
{
	struct sqlite_log *s = calloc(1, sizeof(*s));
	if (!s)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the LLM call log");
	s->base.ops = &sqlite_ops;
	pthread_mutex_init(&s->mu, NULL);
	if (snprintf(s->path, sizeof(s->path), "%s/llm.db", ws_root) >= (int)sizeof(s->path)) {
		free(s);
		return csa_error(err, CSA_ELIMIT, "workspace path too long: '%s'", ws_root);
	}
	char *msg = NULL;
	/* private before SQLite creates it (and its -wal, -shm) 0644 */
	int rc = csa_fs_create_private(s->path, err);
	if (rc)
		;
	else if (sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK)
		rc = csa_error(err, CSA_EIO, "'%s': %s", s->path,
		               s->db ? sqlite3_errmsg(s->db) : "out of memory");
	else if (sqlite3_busy_timeout(s->db, 5000) != SQLITE_OK ||
	         sqlite3_exec(s->db,
	                      "PRAGMA journal_mode=WAL;"
	                      "CREATE TABLE IF NOT EXISTS calls(ts INTEGER NOT NULL, backend TEXT "
	                      "NOT NULL, purpose TEXT NOT NULL, tokens_in INTEGER, tokens_out "
	                      "INTEGER, cost REAL, latency_ms INTEGER, ok INTEGER);"
	                      "CREATE INDEX IF NOT EXISTS calls_ts ON calls(ts);",
	                      NULL, NULL, &msg) != SQLITE_OK)
		rc = csa_error(err, CSA_EIO, "'%s': %s", s->path, msg ? msg : "cannot initialise");
	sqlite3_free(msg);
	if (rc) {
		s_close(&s->base);
		return rc;
	}
	*out = &s->base;
	return CSA_OK;
}
