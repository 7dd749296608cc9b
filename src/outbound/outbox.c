/* The durable outbox (outbox.h): outbox.db and delivery over HTTP. */
#include "outbound/outbox.h"
#include "base/fsops.h"
#include "base/ts.h"

#include <curl/curl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct csa_outbox {
	sqlite3 *db;
	pthread_mutex_t mu;
	int max_attempts;
};

int64_t csa_outbox_backoff_ms(int attempts, double u)
{
	double ms = 1000.0;
	for (int i = 1; i < attempts && ms < 3600000.0; i++)
		ms *= 2;
	if (ms > 3600000.0)
		ms = 3600000.0;
	return (int64_t)(ms * (0.8 + 0.4 * u)); /* +-20% so retries do not stampede */
}

int csa_outbox_open(const char *path, int max_attempts, struct csa_outbox **out,
                    struct csa_err *err)
{
	struct csa_outbox *ob = calloc(1, sizeof(*ob));
	if (!ob)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the outbox");
	ob->max_attempts = max_attempts > 0 ? max_attempts : 8;
	pthread_mutex_init(&ob->mu, NULL);
	/* what goes out to customers and teams is private: SQLite would
	 * create the file, and its -wal and -shm, with the umask's mode */
	int prc = csa_fs_create_private(path, err);
	if (prc) {
		csa_outbox_close(ob);
		return prc;
	}
	if (sqlite3_open_v2(path, &ob->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
	                    NULL) != SQLITE_OK ||
	    sqlite3_exec(
	        ob->db,
	        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000;"
	        "CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY AUTOINCREMENT,"
	        " key TEXT UNIQUE NOT NULL, ticket_id TEXT, target TEXT NOT NULL,"
	        " url TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',"
	        " attempts INTEGER NOT NULL DEFAULT 0, next_ms INTEGER NOT NULL,"
	        " last_error TEXT, created_ms INTEGER NOT NULL, delivered_ms INTEGER);"
	        "CREATE INDEX IF NOT EXISTS items_due ON items(state, next_ms);"
	        "CREATE INDEX IF NOT EXISTS items_ticket ON items(ticket_id);",
	        NULL, NULL, NULL) != SQLITE_OK) {
		int rc = csa_error(err, CSA_EIO, "cannot open outbox '%s': %s", path,
		                   ob->db ? sqlite3_errmsg(ob->db) : "out of memory");
		csa_outbox_close(ob);
		return rc;
	}
	*out = ob;
	return CSA_OK;
}

void csa_outbox_close(struct csa_outbox *ob)
{
	if (!ob)
		return;
	sqlite3_close(ob->db);
	pthread_mutex_destroy(&ob->mu);
	free(ob);
}

int csa_outbox_enqueue(struct csa_outbox *ob, const char *key, const char *ticket_id,
                       const char *target, const char *url, const json_t *payload,
                       struct csa_err *err)
{
	if (!key || !target || !url || strncmp(url, "http", 4) != 0)
		return csa_error(err, CSA_EINVAL,
		                 "outbox: key, target and an http(s) URL are required");
	char *body = json_dumps(payload, JSON_COMPACT);
	if (!body)
		return csa_error(err, CSA_ENOMEM, "out of memory queueing a delivery");
	sqlite3_stmt *st;
	int rc;
	int64_t now = csa_now_ms();
	pthread_mutex_lock(&ob->mu);
	if (sqlite3_prepare_v2(
	        ob->db,
	        "INSERT OR IGNORE INTO items(key, ticket_id, target, url, payload, next_ms,"
	        " created_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?6)",
	        -1, &st, NULL) != SQLITE_OK) {
		rc = csa_error(err, CSA_EIO, "outbox: %s", sqlite3_errmsg(ob->db));
		goto out;
	}
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, ticket_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, target, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, url, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, body, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, now);
	if (sqlite3_step(st) != SQLITE_DONE)
		rc = csa_error(err, CSA_EIO, "outbox: %s", sqlite3_errmsg(ob->db));
	else
		rc = sqlite3_changes(ob->db) ? 1 : 0;
	sqlite3_finalize(st);
out:
	pthread_mutex_unlock(&ob->mu);
	free(body);
	return rc;
}

static size_t discard(char *p, size_t sz, size_t n, void *ud)
{
	(void)p, (void)ud;
	return sz * n;
}

/* POST one payload; 0 on 2xx, else an error text in 'why'. */
static int post(const char *url, const char *body, char *why, size_t whysz)
{
	CURL *c = curl_easy_init();
	if (!c) {
		snprintf(why, whysz, "cannot create an HTTP handle");
		return -1;
	}
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	CURLcode r = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (r != CURLE_OK) {
		snprintf(why, whysz, "%s", curl_easy_strerror(r));
		return -1;
	}
	if (status < 200 || status > 299) {
		snprintf(why, whysz, "HTTP %ld", status);
		return -1;
	}
	return 0;
}

int csa_outbox_deliver_due(struct csa_outbox *ob, int64_t now_ms, int max, int *delivered,
                           struct csa_err *err)
{
	struct item {
		int64_t id;
		int attempts;
		char *url, *payload;
	} *v = calloc((size_t)(max > 0 ? max : 1), sizeof(*v));
	int n = 0, ok = 0, rc = CSA_OK, step = SQLITE_DONE;
	sqlite3_stmt *st;
	if (delivered)
		*delivered = 0;
	if (!v)
		return csa_error(err, CSA_ENOMEM, "out of memory delivering");
	pthread_mutex_lock(&ob->mu);
	if (sqlite3_prepare_v2(
	        ob->db,
	        "SELECT id, attempts, url, payload FROM items WHERE state = 'pending' AND"
	        " next_ms <= ?1 ORDER BY next_ms LIMIT ?2",
	        -1, &st, NULL) != SQLITE_OK) {
		rc = csa_error(err, CSA_EIO, "outbox: reading the due items: %s",
		               sqlite3_errmsg(ob->db));
	} else {
		sqlite3_bind_int64(st, 1, now_ms);
		sqlite3_bind_int(st, 2, max);
		while (n < max && (step = sqlite3_step(st)) == SQLITE_ROW) {
			v[n].id = sqlite3_column_int64(st, 0);
			v[n].attempts = sqlite3_column_int(st, 1);
			v[n].url = strdup((const char *)sqlite3_column_text(st, 2));
			v[n].payload = strdup((const char *)sqlite3_column_text(st, 3));
			n++;
		}
		/* the items read so far still go out */
		if (step != SQLITE_ROW && step != SQLITE_DONE)
			rc = csa_error(err, CSA_EIO, "outbox: reading the due items: %s",
			               sqlite3_errmsg(ob->db));
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&ob->mu);
	/* network without the lock: enqueue and queries go on meanwhile */
	for (int i = 0; i < n; i++) {
		char why[256] = "";
		int good =
		    v[i].url && v[i].payload && post(v[i].url, v[i].payload, why, sizeof(why)) == 0;
		unsigned char r[2] = {0};
		if (getrandom(r, sizeof(r), 0) != 2)
			r[0] = r[1] = 0;
		double u = (double)(r[0] << 8 | r[1]) / 65536.0;
		int attempts = v[i].attempts + 1;
		pthread_mutex_lock(&ob->mu);
		int saved = 0;
		if (sqlite3_prepare_v2(ob->db,
		                       "UPDATE items SET attempts = ?2, state = ?3, next_ms = ?4,"
		                       " last_error = ?5, delivered_ms = ?6 WHERE id = ?1",
		                       -1, &st, NULL) == SQLITE_OK) {
			sqlite3_bind_int64(st, 1, v[i].id);
			sqlite3_bind_int(st, 2, attempts);
			sqlite3_bind_text(st, 3,
			                  good                           ? "delivered"
			                  : attempts >= ob->max_attempts ? "failed"
			                                                 : "pending",
			                  -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 4, now_ms + csa_outbox_backoff_ms(attempts, u));
			if (good)
				sqlite3_bind_null(st, 5);
			else
				sqlite3_bind_text(st, 5, why, -1, SQLITE_TRANSIENT);
			if (good)
				sqlite3_bind_int64(st, 6, now_ms);
			else
				sqlite3_bind_null(st, 6);
			saved = sqlite3_step(st) == SQLITE_DONE;
			sqlite3_finalize(st);
		}
		/* an item delivered but not marked so goes out again at the next
		 * round (the receiver sees it twice): the caller hears of it */
		if (!saved && rc == CSA_OK)
			rc = csa_error(err, CSA_EIO,
			               "outbox: item %lld %s but its state not saved: %s",
			               (long long)v[i].id, good ? "delivered" : "failed",
			               sqlite3_errmsg(ob->db));
		pthread_mutex_unlock(&ob->mu);
		ok += good;
		free(v[i].url);
		free(v[i].payload);
	}
	free(v);
	if (delivered)
		*delivered = ok;
	return rc;
}

int csa_outbox_for_ticket(struct csa_outbox *ob, const char *ticket_id, json_t **out,
                          struct csa_err *err)
{
	sqlite3_stmt *st;
	pthread_mutex_lock(&ob->mu);
	if (sqlite3_prepare_v2(
	        ob->db,
	        "SELECT id, target, state, attempts, next_ms, last_error, created_ms,"
	        " delivered_ms FROM items WHERE ticket_id = ?1 ORDER BY id",
	        -1, &st, NULL) != SQLITE_OK) {
		int rc = csa_error(err, CSA_EIO, "outbox: %s", sqlite3_errmsg(ob->db));
		pthread_mutex_unlock(&ob->mu);
		return rc;
	}
	sqlite3_bind_text(st, 1, ticket_id, -1, SQLITE_STATIC);
	json_t *arr = json_array();
	char t1[CSA_TS_LEN], t2[CSA_TS_LEN], t3[CSA_TS_LEN];
	while (sqlite3_step(st) == SQLITE_ROW) {
		int pending = strcmp((const char *)sqlite3_column_text(st, 2), "pending") == 0;
		json_array_append_new(
		    arr, json_pack("{s:I, s:s, s:s, s:i, s:s?, s:s?, s:s, s:s?}", "id",
		                   (json_int_t)sqlite3_column_int64(st, 0), "target",
		                   sqlite3_column_text(st, 1), "state", sqlite3_column_text(st, 2),
		                   "attempts", sqlite3_column_int(st, 3), "next_attempt",
		                   pending ? csa_ts_format(sqlite3_column_int64(st, 4), t1) : NULL,
		                   "last_error", sqlite3_column_text(st, 5), "created",
		                   csa_ts_format(sqlite3_column_int64(st, 6), t2), "delivered",
		                   sqlite3_column_type(st, 7) == SQLITE_NULL
		                       ? NULL
		                       : csa_ts_format(sqlite3_column_int64(st, 7), t3)));
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&ob->mu);
	*out = arr;
	return CSA_OK;
}
