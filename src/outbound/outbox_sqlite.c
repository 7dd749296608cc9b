/* The outbox's first backend (outbox.h): outbox.db, SQLite. */
#include "outbound/outbox.h"
#include "base/fsops.h"
#include "base/ts.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sq_outbox {
	struct csa_outbox base;
	sqlite3 *db;
	pthread_mutex_t mu; /* the connection's statements and errmsg */
};

static int sq_fail(struct sq_outbox *o, struct csa_err *err, const char *doing)
{
	return csa_error(err, CSA_EIO, "outbox: %s: %s", doing, sqlite3_errmsg(o->db));
}

static int sq_enqueue(struct csa_outbox *ob, const char *key, const char *ticket_id,
                      const char *target, const char *url, const char *payload, int64_t now_ms,
                      struct csa_err *err)
{
	struct sq_outbox *o = (struct sq_outbox *)ob;
	sqlite3_stmt *st;
	int rc;
	pthread_mutex_lock(&o->mu);
	if (sqlite3_prepare_v2(
	        o->db,
	        "INSERT OR IGNORE INTO items(key, ticket_id, target, url, payload, next_ms,"
	        " created_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?6)",
	        -1, &st, NULL) != SQLITE_OK) {
		rc = sq_fail(o, err, "queueing a delivery");
		goto out;
	}
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, ticket_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, target, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, url, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, payload, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, now_ms);
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = sq_fail(o, err, "queueing a delivery");
	else
		rc = sqlite3_changes(o->db) ? 1 : 0;
	sqlite3_finalize(st);
out:
	pthread_mutex_unlock(&o->mu);
	return rc;
}

/* One statement claims the items: two processes cannot both get one. */
static int sq_claim_due(struct csa_outbox *ob, int64_t now_ms, int max, int64_t lease_ms,
                        const char *target, struct csa_outbox_item **items, int *n,
                        struct csa_err *err)
{
	struct sq_outbox *o = (struct sq_outbox *)ob;
	sqlite3_stmt *st;
	int rc = CSA_OK, step = SQLITE_DONE;
	*n = 0;
	if (!(*items = calloc((size_t)(max > 0 ? max : 1), sizeof(**items))))
		return csa_error(err, CSA_ENOMEM, "out of memory claiming due deliveries");
	pthread_mutex_lock(&o->mu);
	if (sqlite3_prepare_v2(o->db,
	                       "UPDATE items SET next_ms = ?3 WHERE id IN (SELECT id FROM items "
	                       "WHERE state = 'pending' AND next_ms <= ?1 AND (?4 IS NULL OR "
	                       "target = ?4) ORDER BY next_ms LIMIT ?2) "
	                       "RETURNING id, attempts, url, payload, target, key",
	                       -1, &st, NULL) != SQLITE_OK) {
		rc = sq_fail(o, err, "claiming the due items");
		goto out;
	}
	sqlite3_bind_int64(st, 1, now_ms);
	sqlite3_bind_int(st, 2, max);
	sqlite3_bind_int64(st, 3, now_ms + lease_ms);
	if (target)
		sqlite3_bind_text(st, 4, target, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 4);
	while (*n < max && (step = sqlite3_step(st)) == SQLITE_ROW) {
		struct csa_outbox_item *it = &(*items)[*n];
		it->id = sqlite3_column_int64(st, 0);
		it->attempts = sqlite3_column_int(st, 1);
		it->url = strdup((const char *)sqlite3_column_text(st, 2));
		it->payload = strdup((const char *)sqlite3_column_text(st, 3));
		it->target = strdup((const char *)sqlite3_column_text(st, 4));
		it->key = strdup((const char *)sqlite3_column_text(st, 5));
		++*n;
	}
	if (step != SQLITE_ROW && step != SQLITE_DONE)
		rc = sq_fail(o, err, "claiming the due items");
	sqlite3_finalize(st);
out:
	pthread_mutex_unlock(&o->mu);
	return rc;
}

/* Not fenced by claim: a deliverer whose lease ran out and another that
 * claimed the item since may both record their attempt (the last one
 * written stands). */
static int sq_settle(struct csa_outbox *ob, const struct csa_outbox_item *it, int attempts,
                     const char *state, int64_t now_ms, int64_t next_ms, const char *why,
                     struct csa_err *err)
{
	int64_t id = it->id;
	struct sq_outbox *o = (struct sq_outbox *)ob;
	sqlite3_stmt *st;
	int delivered = strcmp(state, "delivered") == 0, rc = CSA_OK;
	pthread_mutex_lock(&o->mu);
	if (sqlite3_prepare_v2(o->db,
	                       "UPDATE items SET attempts = ?2, state = ?3, next_ms = ?4,"
	                       " last_error = ?5, delivered_ms = ?6 WHERE id = ?1",
	                       -1, &st, NULL) != SQLITE_OK) {
		rc = sq_fail(o, err, "saving a delivery's state");
		goto out;
	}
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int(st, 2, attempts);
	sqlite3_bind_text(st, 3, state, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, next_ms);
	if (delivered) {
		sqlite3_bind_null(st, 5);
		sqlite3_bind_int64(st, 6, now_ms);
	} else {
		sqlite3_bind_text(st, 5, why, -1, SQLITE_STATIC);
		sqlite3_bind_null(st, 6);
	}
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = sq_fail(o, err, "saving a delivery's state");
	sqlite3_finalize(st);
out:
	pthread_mutex_unlock(&o->mu);
	return rc;
}

static int sq_for_ticket(struct csa_outbox *ob, const char *ticket_id, json_t **out,
                         struct csa_err *err)
{
	struct sq_outbox *o = (struct sq_outbox *)ob;
	sqlite3_stmt *st;
	int rc = CSA_OK, step;
	pthread_mutex_lock(&o->mu);
	if (sqlite3_prepare_v2(
	        o->db,
	        "SELECT id, target, state, attempts, next_ms, last_error, "
	        "created_ms, delivered_ms, key FROM items WHERE ticket_id = ?1 ORDER BY id",
	        -1, &st, NULL) != SQLITE_OK) {
		rc = sq_fail(o, err, "reading a ticket's deliveries");
		pthread_mutex_unlock(&o->mu);
		return rc;
	}
	sqlite3_bind_text(st, 1, ticket_id, -1, SQLITE_STATIC);
	json_t *arr = json_array();
	char t1[CSA_TS_LEN], t2[CSA_TS_LEN], t3[CSA_TS_LEN];
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		int pending = strcmp((const char *)sqlite3_column_text(st, 2), "pending") == 0;
		json_array_append_new(
		    arr, json_pack("{s:I, s:s, s:s, s:s, s:i, s:s?, s:s?, s:s, s:s?}", "id",
		                   (json_int_t)sqlite3_column_int64(st, 0), "key",
		                   sqlite3_column_text(st, 8), "target", sqlite3_column_text(st, 1),
		                   "state", sqlite3_column_text(st, 2), "attempts",
		                   sqlite3_column_int(st, 3), "next_attempt",
		                   pending ? csa_ts_format(sqlite3_column_int64(st, 4), t1) : NULL,
		                   "last_error", sqlite3_column_text(st, 5), "created",
		                   csa_ts_format(sqlite3_column_int64(st, 6), t2), "delivered",
		                   sqlite3_column_type(st, 7) == SQLITE_NULL
		                       ? NULL
		                       : csa_ts_format(sqlite3_column_int64(st, 7), t3)));
	}
	if (step != SQLITE_DONE)
		rc = sq_fail(o, err, "reading a ticket's deliveries");
	sqlite3_finalize(st);
	pthread_mutex_unlock(&o->mu);
	if (rc)
		json_decref(arr);
	else
		*out = arr;
	return rc;
}

static void sq_close(struct csa_outbox *ob)
{
	struct sq_outbox *o = (struct sq_outbox *)ob;
	sqlite3_close(o->db);
	pthread_mutex_destroy(&o->mu);
	free(o);
}

static const struct csa_outbox_ops sq_ops = {
    .enqueue = sq_enqueue,
    .claim_due = sq_claim_due,
    .settle = sq_settle,
    .for_ticket = sq_for_ticket,
    .close = sq_close,
};

int csa_outbox_open(const char *path, int max_attempts, struct csa_outbox **out,
                    struct csa_err *err)
{
	struct sq_outbox *o = calloc(1, sizeof(*o));
	if (!o)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the outbox");
	o->base.ops = &sq_ops;
	o->base.max_attempts = max_attempts > 0 ? max_attempts : 8;
	pthread_mutex_init(&o->mu, NULL);
	/* what goes out to customers and teams is private: SQLite would
	 * create the file, and its -wal and -shm, with the umask's mode */
	int rc = csa_fs_create_private(path, err);
	if (rc) {
		sq_close(&o->base);
		return rc;
	}
	if (sqlite3_open_v2(path, &o->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
	                    NULL) != SQLITE_OK ||
	    /* before the first statement: switching a new file to WAL needs
	     * its lock, which another process opening it at once may hold */
	    sqlite3_busy_timeout(o->db, 10000) != SQLITE_OK ||
	    sqlite3_exec(
	        o->db,
	        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
	        "CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY AUTOINCREMENT,"
	        " key TEXT UNIQUE NOT NULL, ticket_id TEXT, target TEXT NOT NULL,"
	        " url TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',"
	        " attempts INTEGER NOT NULL DEFAULT 0, next_ms INTEGER NOT NULL,"
	        " last_error TEXT, created_ms INTEGER NOT NULL, delivered_ms INTEGER);"
	        "CREATE INDEX IF NOT EXISTS items_due ON items(state, next_ms);"
	        "CREATE INDEX IF NOT EXISTS items_ticket ON items(ticket_id);",
	        NULL, NULL, NULL) != SQLITE_OK) {
		rc = csa_error(err, CSA_EIO, "cannot open outbox '%s': %s", path,
		               o->db ? sqlite3_errmsg(o->db) : "out of memory");
		sq_close(&o->base);
		return rc;
	}
	*out = &o->base;
	return CSA_OK;
}
