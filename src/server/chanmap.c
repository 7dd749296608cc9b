/*
 * The channel thread map in <ws>/channels.db, the first implementation of
 * chanmap.h: one SQLite table threads(key PRIMARY KEY, ticket_id) in WAL
 * mode, written with INSERT OR IGNORE so the first binding of a key wins.
 * One connection serves the threads of a process, its statements prepared
 * once and used under a mutex; between processes SQLite's own locking
 * (with a busy timeout) applies.
 */
#include "server/chanmap.h"
#include "base/fsops.h"
#include "store/ws.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sqlite_map {
	struct csa_chanmap base;
	char path[4200];
	sqlite3 *db;
	sqlite3_stmt *get, *bind;
	pthread_mutex_t mu; /* the statements */
};

static int sq_get(struct csa_chanmap *cm, const char *key, char *ticket, size_t n,
                  struct csa_err *err)
{
	struct sqlite_map *m = (struct sqlite_map *)cm;
	if (strlen(key) > CSA_CHANMAP_KEY_MAX)
		return csa_error(err, CSA_EINVAL, "thread key '%.60s...' is longer than %d bytes",
		                 key, CSA_CHANMAP_KEY_MAX);
	pthread_mutex_lock(&m->mu);
	int rc = sqlite3_bind_text(m->get, 1, key, -1, SQLITE_TRANSIENT);
	int step = rc == SQLITE_OK ? sqlite3_step(m->get) : rc;
	int out;
	if (step == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(m->get, 0);
		if (!t || (size_t)snprintf(ticket, n, "%s", (const char *)t) >= n)
			out = csa_error(err, CSA_ECORRUPT,
			                "'%s': thread '%.100s' maps to no valid ticket", m->path,
			                key);
		else
			out = CSA_OK;
	} else if (step == SQLITE_DONE) {
		out = csa_error(err, CSA_ENOENT, "thread '%.100s' is not mapped to a ticket", key);
	} else {
		out = csa_error(err, step == SQLITE_BUSY ? CSA_EBUSY : CSA_EIO,
		                "cannot look up thread '%.100s' in '%s': %s", key, m->path,
		                sqlite3_errmsg(m->db));
	}
	sqlite3_reset(m->get);
	sqlite3_clear_bindings(m->get);
	pthread_mutex_unlock(&m->mu);
	return out;
}

static int sq_bind(struct csa_chanmap *cm, const char *key, const char *ticket, struct csa_err *err)
{
	struct sqlite_map *m = (struct sqlite_map *)cm;
	if (strlen(key) > CSA_CHANMAP_KEY_MAX)
		return csa_error(err, CSA_EINVAL, "thread key '%.60s...' is longer than %d bytes",
		                 key, CSA_CHANMAP_KEY_MAX);
	pthread_mutex_lock(&m->mu);
	int rc = sqlite3_bind_text(m->bind, 1, key, -1, SQLITE_TRANSIENT);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(m->bind, 2, ticket, -1, SQLITE_TRANSIENT);
	int step = rc == SQLITE_OK ? sqlite3_step(m->bind) : rc;
	int out = step == SQLITE_DONE
	              ? CSA_OK
	              : csa_error(err, step == SQLITE_BUSY ? CSA_EBUSY : CSA_EIO,
	                          "cannot map thread '%.100s' to ticket '%s' in '%s': %s", key,
	                          ticket, m->path, sqlite3_errmsg(m->db));
	sqlite3_reset(m->bind);
	sqlite3_clear_bindings(m->bind);
	pthread_mutex_unlock(&m->mu);
	return out;
}

static void sq_close(struct csa_chanmap *cm)
{
	struct sqlite_map *m = (struct sqlite_map *)cm;
	sqlite3_finalize(m->get);
	sqlite3_finalize(m->bind);
	sqlite3_close(m->db);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

static const struct csa_chanmap_ops sqlite_ops = {
    .name = "channels.db",
    .get = sq_get,
    .bind = sq_bind,
    .close = sq_close,
};

int csa_chanmap_open(struct csa_ws *ws, struct csa_chanmap **out, struct csa_err *err)
{
	if (ws->pg)
		return csa_chanmap_pg_open(ws->pg, out, err);
	struct sqlite_map *m = calloc(1, sizeof(*m));
	if (!m)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the channel map");
	m->base.ops = &sqlite_ops;
	pthread_mutex_init(&m->mu, NULL);
	if (csa_ws_path(ws, "channels.db", m->path, sizeof(m->path))) {
		pthread_mutex_destroy(&m->mu);
		free(m);
		return csa_error(err, CSA_EINVAL, "workspace path too long for 'channels.db'");
	}
	const char *what = "open";
	int rc = csa_fs_create_private(m->path, err);
	if (rc) {
		pthread_mutex_destroy(&m->mu);
		free(m);
		return rc;
	}
	if (sqlite3_open_v2(m->path, &m->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	        SQLITE_OK ||
	    (what = "set up", sqlite3_busy_timeout(m->db, 5000)) != SQLITE_OK ||
	    sqlite3_exec(m->db,
	                 "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS threads("
	                 "key TEXT PRIMARY KEY, ticket_id TEXT NOT NULL);",
	                 NULL, NULL, NULL) != SQLITE_OK ||
	    (what = "prepare statements on",
	     sqlite3_prepare_v2(m->db, "SELECT ticket_id FROM threads WHERE key = ?1", -1, &m->get,
	                        NULL)) != SQLITE_OK ||
	    sqlite3_prepare_v2(m->db,
	                       "INSERT OR IGNORE INTO threads(key, ticket_id) VALUES(?1, ?2)", -1,
	                       &m->bind, NULL) != SQLITE_OK) {
		rc = csa_error(err, CSA_EIO, "cannot %s the channel map '%s': %s", what, m->path,
		               m->db ? sqlite3_errmsg(m->db) : "out of memory");
		sq_close(&m->base);
		return rc;
	}
	*out = &m->base;
	return CSA_OK;
}
