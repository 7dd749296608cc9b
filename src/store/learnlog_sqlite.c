/*
 * The SQLite backend of store/learnlog.h: the online-learning log of a
 * workspace whose processes share its directory (csa serve, csa review
 * and the other commands on one host), in .csa/online.db.
 *
 *   examples(seq INTEGER PRIMARY KEY AUTOINCREMENT, kind, body BLOB, added_ms)
 *   meta(k PRIMARY KEY, v): k 'id', the log's identity
 *
 * SQLite has one writer at a time and AUTOINCREMENT gives positions inside
 * the writer's transaction, so positions become visible in their order,
 * and never repeat, even after the newest entries are dropped. WAL with
 * synchronous=FULL: an entry other processes may have applied is never
 * lost by a power cut and its position given again to another.
 */
#include "store/learnlog.h"
#include "base/fsops.h"
#include "base/ts.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sq_log {
	struct csa_learnlog base;
	sqlite3 *db;
	pthread_mutex_t mu; /* the connection's transactions and errmsg */
	char id[CSA_LEARNLOG_ID_LEN + 1];
	char *path;
};

static int sq_fail(struct sq_log *l, struct csa_err *err, const char *doing)
{
	return csa_error(err, CSA_EIO, "online-learning log '%s': %s: %s", l->path, doing,
	                 sqlite3_errmsg(l->db));
}

/* One statement with up to two integer parameters and no rows. */
static int sq_exec(struct sq_log *l, const char *sql, int nint, int64_t a, int64_t b,
                   const char *doing, struct csa_err *err)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(l->db, sql, -1, &st, NULL) != SQLITE_OK)
		return sq_fail(l, err, doing);
	if (nint > 0)
		sqlite3_bind_int64(st, 1, a);
	if (nint > 1)
		sqlite3_bind_int64(st, 2, b);
	int rc = sqlite3_step(st) == SQLITE_DONE ? CSA_OK : sq_fail(l, err, doing);
	sqlite3_finalize(st);
	return rc;
}

static int sq_append(struct csa_learnlog *lg, const char *kind, const void *body, size_t len,
                     int64_t *seq, struct csa_err *err)
{
	struct sq_log *l = (struct sq_log *)lg;
	int rc = csa_learnlog_kind_check(kind, err);
	if (rc)
		return rc;
	if (len > CSA_LEARNLOG_BODY_MAX)
		return csa_error(err, CSA_ELIMIT,
		                 "online-learning entry of %zu bytes, more than the limit %zu", len,
		                 CSA_LEARNLOG_BODY_MAX);
	pthread_mutex_lock(&l->mu);
	/* IMMEDIATE: the write lock first (waiting for another process's
	 * append), so the insert and the bound below are one step */
	if ((rc = sq_exec(l, "BEGIN IMMEDIATE", 0, 0, 0, "appending", err)))
		goto out;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(l->db,
	                       "INSERT INTO examples(kind, body, added_ms) VALUES(?1, ?2, ?3) "
	                       "RETURNING seq",
	                       -1, &st, NULL) != SQLITE_OK) {
		rc = sq_fail(l, err, "appending");
		goto rollback;
	}
	sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
	sqlite3_bind_blob64(st, 2, len ? body : "", len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, csa_now_ms());
	int64_t s = 0;
	if (sqlite3_step(st) == SQLITE_ROW)
		s = sqlite3_column_int64(st, 0);
	else
		rc = sq_fail(l, err, "appending");
	sqlite3_finalize(st);
	if (rc == CSA_OK)
		rc = sq_exec(l, "DELETE FROM examples WHERE seq <= ?1", 1, s - CSA_LEARNLOG_KEEP, 0,
		             "dropping the oldest entries", err);
	if (rc == CSA_OK && (rc = sq_exec(l, "COMMIT", 0, 0, 0, "appending", err)) == CSA_OK) {
		if (seq)
			*seq = s;
		goto out;
	}
rollback:
	sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
out:
	pthread_mutex_unlock(&l->mu);
	return rc;
}

static int sq_read(struct csa_learnlog *lg, int64_t after, size_t max,
                   struct csa_learnlog_entry **out, size_t *n, struct csa_err *err)
{
	struct sq_log *l = (struct sq_log *)lg;
	*out = NULL;
	*n = 0;
	if (max == 0)
		return CSA_OK;
	struct csa_learnlog_entry *e = calloc(max, sizeof(*e));
	if (!e)
		return csa_error(err, CSA_ENOMEM, "out of memory reading the online-learning log");
	int rc = CSA_OK, step = SQLITE_DONE;
	size_t got = 0;
	sqlite3_stmt *st;
	pthread_mutex_lock(&l->mu);
	if (sqlite3_prepare_v2(l->db,
	                       "SELECT seq, kind, body FROM examples WHERE seq > ?1 "
	                       "ORDER BY seq LIMIT ?2",
	                       -1, &st, NULL) != SQLITE_OK) {
		rc = sq_fail(l, err, "reading");
		pthread_mutex_unlock(&l->mu);
		free(e);
		return rc;
	}
	sqlite3_bind_int64(st, 1, after);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
	while (rc == CSA_OK && got < max && (step = sqlite3_step(st)) == SQLITE_ROW) {
		const char *kind = (const char *)sqlite3_column_text(st, 1);
		const void *body = sqlite3_column_blob(st, 2);
		size_t len = (size_t)sqlite3_column_bytes(st, 2);
		if (!kind || strlen(kind) > CSA_LEARNLOG_KIND_MAX || len > CSA_LEARNLOG_BODY_MAX) {
			/* written by hand or by something else: passed over
			 * alike by every reader */
			continue;
		}
		struct csa_learnlog_entry *x = &e[got];
		x->seq = sqlite3_column_int64(st, 0);
		snprintf(x->kind, sizeof(x->kind), "%s", kind);
		if (!(x->body = malloc(len + 1))) {
			rc = csa_error(err, CSA_ENOMEM,
			               "out of memory reading the online-learning log");
			break;
		}
		if (len)
			memcpy(x->body, body, len);
		x->body[len] = '\0';
		x->len = len;
		got++;
	}
	if (rc == CSA_OK && got < max && step != SQLITE_DONE)
		rc = sq_fail(l, err, "reading");
	sqlite3_finalize(st);
	pthread_mutex_unlock(&l->mu);
	if (rc || got == 0) {
		csa_learnlog_free_entries(e, got);
		return rc;
	}
	*out = e;
	*n = got;
	return CSA_OK;
}

static int sq_head(struct csa_learnlog *lg, int64_t *seq, struct csa_err *err)
{
	struct sq_log *l = (struct sq_log *)lg;
	sqlite3_stmt *st;
	int rc = CSA_OK;
	pthread_mutex_lock(&l->mu);
	if (sqlite3_prepare_v2(l->db, "SELECT coalesce(max(seq), 0) FROM examples", -1, &st,
	                       NULL) != SQLITE_OK)
		rc = sq_fail(l, err, "reading the newest position");
	else {
		if (sqlite3_step(st) == SQLITE_ROW)
			*seq = sqlite3_column_int64(st, 0);
		else
			rc = sq_fail(l, err, "reading the newest position");
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

static int sq_prune(struct csa_learnlog *lg, const char *kind, int64_t upto, struct csa_err *err)
{
	struct sq_log *l = (struct sq_log *)lg;
	int rc = csa_learnlog_kind_check(kind, err);
	if (rc)
		return rc;
	sqlite3_stmt *st;
	pthread_mutex_lock(&l->mu);
	if (sqlite3_prepare_v2(l->db, "DELETE FROM examples WHERE kind = ?1 AND seq <= ?2", -1, &st,
	                       NULL) != SQLITE_OK)
		rc = sq_fail(l, err, "dropping covered entries");
	else {
		sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, upto);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = sq_fail(l, err, "dropping covered entries");
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

static int sq_id(struct csa_learnlog *lg, char out[CSA_LEARNLOG_ID_LEN + 1], struct csa_err *err)
{
	(void)err; /* read when the file was opened */
	memcpy(out, ((struct sq_log *)lg)->id, CSA_LEARNLOG_ID_LEN + 1);
	return CSA_OK;
}

static void sq_close(struct csa_learnlog *lg)
{
	struct sq_log *l = (struct sq_log *)lg;
	sqlite3_close(l->db);
	pthread_mutex_destroy(&l->mu);
	free(l->path);
	free(l);
}

static const struct csa_learnlog_ops sq_ops = {.append = sq_append,
                                               .read = sq_read,
                                               .head = sq_head,
                                               .prune = sq_prune,
                                               .id = sq_id,
                                               .close = sq_close};

/* The log's identity, made by the first process to open it (the file
 * is new then, and a backup never holds .csa/): under the write lock, so
 * two processes opening a new log at once agree. */
static int read_id(struct sq_log *l, struct csa_err *err)
{
	int rc = sq_exec(l, "BEGIN IMMEDIATE", 0, 0, 0, "making its identity", err);
	if (rc == CSA_OK)
		rc = sq_exec(
		    l, "INSERT OR IGNORE INTO meta(k, v) VALUES('id', lower(hex(randomblob(16))))",
		    0, 0, 0, "making its identity", err);
	if (rc == CSA_OK)
		rc = sq_exec(l, "COMMIT", 0, 0, 0, "making its identity", err);
	if (rc) {
		sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(l->db, "SELECT v FROM meta WHERE k = 'id'", -1, &st, NULL) !=
	    SQLITE_OK)
		return sq_fail(l, err, "reading its identity");
	const char *v =
	    sqlite3_step(st) == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
	if (v && strlen(v) == CSA_LEARNLOG_ID_LEN)
		memcpy(l->id, v, CSA_LEARNLOG_ID_LEN + 1);
	else
		rc = csa_error(err, CSA_ECORRUPT,
		               "online-learning log '%s': its identity is damaged", l->path);
	sqlite3_finalize(st);
	return rc;
}

int csa_learnlog_open_sqlite(const char *path, struct csa_learnlog **out, struct csa_err *err)
{
	struct sq_log *l = calloc(1, sizeof(*l));
	if (!l || !(l->path = strdup(path))) {
		free(l);
		return csa_error(err, CSA_ENOMEM, "out of memory opening the online-learning log");
	}
	l->base.ops = &sq_ops;
	pthread_mutex_init(&l->mu, NULL);
	/* customers' words: private, as the tickets are */
	int rc = csa_fs_create_private(path, err);
	if (rc) {
		sq_close(&l->base);
		return rc;
	}
	if (sqlite3_open_v2(path, &l->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
	                    NULL) != SQLITE_OK ||
	    /* before the first statement: switching a new file to WAL needs
	     * its lock, which another process opening it at once may hold */
	    sqlite3_busy_timeout(l->db, 10000) != SQLITE_OK ||
	    sqlite3_exec(
	        l->db,
	        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
	        "CREATE TABLE IF NOT EXISTS examples(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	        " kind TEXT NOT NULL, body BLOB NOT NULL, added_ms INTEGER NOT NULL);"
	        "CREATE INDEX IF NOT EXISTS examples_kind ON examples(kind, seq);"
	        "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);",
	        NULL, NULL, NULL) != SQLITE_OK) {
		rc = csa_error(err, CSA_EIO, "cannot open the online-learning log '%s': %s", path,
		               l->db ? sqlite3_errmsg(l->db) : "out of memory");
		sq_close(&l->base);
		return rc;
	}
	if ((rc = read_id(l, err))) {
		sq_close(&l->base);
		return rc;
	}
	*out = &l->base;
	return CSA_OK;
}
