/*
 * Recovery after an unclean stop: automation.db put back in line with the
 * tickets, and review tasks claimed by a process that died settled from
 * their tickets.
 */
#include "automation/auto_internal.h"
#include "automation/ledger.h"
#include "base/fsops.h"
#include "base/ids.h"
#include "base/json.h"
#include "base/ts.h"
#include "store/store.h"
#include "store/ws.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/*
 * automation.db commits without waiting for the disk (synchronous=NORMAL;
 * an fdatasync per ticket would cost about as much as the ticket's own
 * commit): a power loss can take its last transactions, the rows and
 * review tasks of tickets the store has durably committed. A crash between
 * decisions_done and the ticket's commit leaves the opposite, rows of a run
 * whose ticket never changed. T holds every decision with its automation
 * block, so after an unclean stop the tickets touched near the newest
 * surviving row are compared with automation.db and it is put back in line
 * with them, under each ticket's lock.
 *
 * Each open controller holds a lock on a marker file of its own
 * (automation/open/<random>.live) and removes it on close: a marker found
 * unlocked is a process that ended without closing. A store shared by
 * several machines (PostgreSQL) keeps the liveness of claims itself
 * (auto_store.h, hold_claim and dead_claims): a controller's claim is then
 * host:pid:marker, held in the store for as long as it is open.
 */
/* Rows a power loss takes are those written after automation.db's last
 * durable transaction, rows of a crashed run are the crash's last: either
 * is newer than the newest surviving row, give or take threads that
 * committed out of order, which the slack covers. */
enum { RECOVERY_SLACK_MS = 10000 };

int auto_mark_open(struct csa_auto *a, json_t *dead, struct csa_err *err)
{
	char dir[PATH_SZ], tmp[PATH_SZ];
	csa_ws_path(a->ws, "automation/open", dir, sizeof(dir));
	int rc = csa_fs_mkdirs(dir, err);
	if (rc)
		return rc;
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len < 6 || strcmp(de->d_name + len - 5, ".live") != 0)
			continue;
		char path[PATH_SZ];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		int fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
			json_array_append_new(dead, json_string(path));
		if (fd >= 0)
			close(fd);
	}
	if (d)
		closedir(d);
	/* locked before it gets the name others look for */
	snprintf(tmp, sizeof(tmp), "%s/new-XXXXXX", dir);
	a->open_fd = mkostemp(tmp, O_CLOEXEC);
	if (a->open_fd < 0 || flock(a->open_fd, LOCK_EX) != 0)
		return csa_error_sys(err, "cannot create an open marker in '%s'", dir);
	snprintf(a->open_marker, sizeof(a->open_marker), "%s.live", tmp);
	if (csa_fs_rename(tmp, a->open_marker) != 0) {
		rc = csa_error_sys(err, "cannot rename '%s'", tmp);
		csa_fs_unlink(tmp);
		a->open_marker[0] = 0;
		return rc;
	}
	if (!a->ops->hold_claim) {
		snprintf(a->claim, sizeof(a->claim), "%s", a->open_marker);
		return CSA_OK;
	}
	/* a store shared by machines: the marker's path is only unique on
	 * this one, and only the store can tell others that this process
	 * lives */
	char host[256] = "";
	if (gethostname(host, sizeof(host) - 1) != 0)
		snprintf(host, sizeof(host), "unknown-host");
	snprintf(a->claim, sizeof(a->claim), "%s:%ld:%s", host, (long)getpid(), a->open_marker);
	return a->ops->hold_claim(a->store, a->claim, err);
}

/* The review a person gave decision 'type' of T record 'rec', if any. */
static const json_t *review_in_t(const json_t *rec, const char *type)
{
	if (!json_is_true(json_object_get(rec, "human_confirmed")))
		return NULL;
	const json_t *found = NULL, *u;
	size_t i;
	json_array_foreach(
	    json_object_get(json_object_get(rec, "learning_feedback"), "pattern_updates"), i,
	    u) if (strcmp(csa_json_str(u, "decision_type") ?: "", type) == 0) found = u;
	return found;
}

/* Put one ticket's rows in line with its T (NULL: the ticket does not
 * exist) for decisions made since 'since'. Caller holds the ticket's lock
 * and a->mu, inside a transaction. */
static int recover_ticket(struct csa_auto *a, const char *id, const json_t *t, int64_t since,
                          json_t *restored, json_t *removed, struct csa_err *err)
{
	/* the decisions T has: key -> [record, type, info] */
	json_t *want = json_object(), *rec, *info;
	size_t i;
	const char *type;
	json_array_foreach(json_object_get(t, "agent_decisions"), i, rec)
	{
		json_t *blk = json_object_get(json_object_get(rec, "decision"), "automation");
		json_object_foreach(blk, type, info)
		{
			char key[200];
			snprintf(key, sizeof(key), "%s#%s", csa_json_str(info, "decision_id") ?: "",
			         type);
			json_object_set_new(want, key, json_pack("[O, s, O]", rec, type, info));
		}
	}
	char prefix[CSA_ID_MAX + 2];
	snprintf(prefix, sizeof(prefix), "%s:", id);
	json_t *rows, *r, *k;
	int rc = a->ops->ticket_decisions(a->store, id, &rows, err);
	if (rc) {
		json_decref(want);
		return rc;
	}
	json_t *orphans = json_array();
	json_array_foreach(rows, i, r)
	{
		const char *key = json_string_value(json_array_get(r, 0));
		if (json_object_get(want, key))
			json_object_del(want, key);
		else if (json_integer_value(json_array_get(r, 1)) >= since &&
		         strncmp(key, prefix, strlen(prefix)) == 0)
			json_array_append_new(orphans, json_string(key)); /* run never committed */
	}
	json_decref(rows);
	json_array_foreach(orphans, i, k)
	{
		if (rc == CSA_OK)
			rc = a->ops->remove_decision(a->store, id, json_string_value(k), err);
		json_array_append(removed, k);
	}
	json_decref(orphans);
	const char *key;
	json_t *w;
	json_object_foreach(want, key, w)
	{
		if (rc)
			break;
		rec = json_array_get(w, 0);
		type = json_string_value(json_array_get(w, 1));
		info = json_array_get(w, 2);
		int64_t created = 0;
		if (csa_ts_parse(csa_json_str(rec, "timestamp") ?: "", &created) || created < since)
			continue; /* older than any row a power loss can take */
		json_t *dec = json_object_get(rec, "decision");
		json_t *row =
		    auto_row_of(a, id, type, info, created, json_object_get(dec, "alternatives"));
		rc = a->ops->insert_decision(a->store, row, err);
		json_decref(row);
		/* reviewed already: the person's value, and the task done */
		const json_t *review = review_in_t(rec, type);
		const char *v = csa_json_str(review, "human_value");
		if (rc == CSA_OK && review)
			rc = a->ops->restore_review(
			    a->store, id, key, v,
			    v && strcmp(v, csa_json_str(info, "value") ?: "") == 0,
			    csa_json_str(review, "by"), err);
		if (rc == CSA_OK)
			json_array_append_new(restored, json_string(key));
	}
	json_decref(want);
	return rc;
}

/* The ids of the tickets changed since 'since_ms' (every ticket when the
 * store cannot list them: recovery then checks nothing it should not). */
static int tickets_written_since(struct csa_auto *a, int64_t since_ms, json_t *ids,
                                 struct csa_err *err)
{
	char **all;
	size_t n;
	int rc = csa_store_ids(a->ws->store, &all, &n, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		int64_t newest_ns = 0;
		if (csa_store_sig(a->ws->store, all[i], &newest_ns) &&
		    newest_ns / 1000000 >= since_ms)
			json_object_set_new(ids, all[i], json_true());
	}
	csa_store_ids_free(all, n);
	return CSA_OK;
}

/* The review T holds for decision 'decision_id' ("<agent decision>#type"),
 * or NULL: matched as csa_pipeline_feedback() finds the decision. */
static const json_t *review_of(const json_t *t, const char *decision_id, const char *type)
{
	size_t i, n = strcspn(decision_id, "#");
	json_t *rec;
	const json_t *found = NULL;
	json_array_foreach(json_object_get(t, "agent_decisions"), i, rec)
	{
		const char *id = csa_json_str(json_object_get(rec, "decision"), "decision_id");
		if (id && strlen(id) == n && strncmp(id, decision_id, n) == 0)
			found = review_in_t(rec, type);
	}
	return found;
}

/* Settles one task a dead process had claimed: done with the value its
 * ticket took if the ticket took it, open again if not. Caller holds a->mu
 * and the ticket's lock. */
static int settle_claim(struct csa_auto *a, int64_t task_id, const char *decision_id,
                        const char *type, const json_t *t, struct csa_err *err)
{
	const json_t *review = t ? review_of(t, decision_id, type) : NULL;
	const char *v = csa_json_str(review, "human_value");
	static const char what[] = "settling a review task claimed by a dead process";
	int rc = a->ops->begin(a->store, 1, what, err);
	if (rc)
		return rc;
	if ((rc = a->ops->settle_claim(a->store, task_id, decision_id, v,
	                               csa_json_str(review, "by"), what, err)) == CSA_OK)
		rc = a->ops->commit(a->store, what, err);
	if (rc)
		a->ops->rollback(a->store);
	return rc;
}

/* The review tasks processes that ended without closing were deciding. */
int auto_settle_dead_claims(struct csa_auto *a, const json_t *dead, struct csa_err *err)
{
	size_t i;
	json_t *m;
	int rc = CSA_OK;
	json_array_foreach(dead, i, m)
	{
		json_t *claims;
		if ((rc = a->ops->claims_of(a->store, json_string_value(m), &claims, err)))
			return rc;
		size_t k;
		json_t *c;
		json_array_foreach(claims, k, c)
		{
			const char *id = json_string_value(json_array_get(c, 1));
			struct csa_lock *lk;
			if ((rc = csa_store_lock(a->ws->store, id, &lk, err)))
				break;
			struct csa_ticket tk;
			int lrc = csa_store_load_locked(a->ws->store, id, &tk, err);
			if (lrc == CSA_OK || lrc == CSA_ENOENT) {
				pthread_mutex_lock(&a->mu);
				rc = settle_claim(a, json_integer_value(json_array_get(c, 0)),
				                  json_string_value(json_array_get(c, 2)),
				                  json_string_value(json_array_get(c, 3)),
				                  lrc ? NULL : tk.t, err);
				pthread_mutex_unlock(&a->mu);
			} else {
				rc = lrc;
			}
			if (lrc == CSA_OK)
				csa_ticket_release(&tk);
			csa_store_unlock(a->ws->store, lk);
			if (rc)
				break;
		}
		json_decref(claims);
		if (rc)
			break;
	}
	return rc;
}

/* After an unclean stop: every ticket written, or decided on in
 * automation.db, since shortly before its newest decision is put back in
 * line with its T. The ledger records what changed. */
int auto_recover(struct csa_auto *a, struct csa_err *err)
{
	/* unreadable (-1): every ticket is checked */
	int64_t since = a->ops->newest_decision_ms(a->store) - RECOVERY_SLACK_MS;
	json_t *ids = json_object();
	int rc = tickets_written_since(a, since, ids, err);
	if (rc) {
		json_decref(ids);
		return rc;
	}
	a->ops->tickets_decided_since(a->store, since, ids);
	json_t *restored = json_array(), *removed = json_array(), *v;
	const char *id;
	json_object_foreach(ids, id, v)
	{
		struct csa_lock *lk;
		if (csa_id_check(id, strlen(id), NULL) ||
		    csa_store_lock(a->ws->store, id, &lk, NULL))
			continue; /* not a ticket of this store */
		struct csa_ticket tk;
		struct csa_err lerr = {0};
		int lrc = csa_store_load_locked(a->ws->store, id, &tk, &lerr);
		if (lrc == CSA_OK || lrc == CSA_ENOENT) {
			pthread_mutex_lock(&a->mu);
			/* the write lock first: another process may be committing */
			static const char what[] = "recovering after an unclean stop";
			if ((rc = a->ops->begin(a->store, 1, what, err)) == CSA_OK &&
			    (rc = recover_ticket(a, id, lrc ? NULL : tk.t, since, restored, removed,
			                         err)) == CSA_OK)
				rc = a->ops->commit(a->store, what, err);
			if (rc)
				a->ops->rollback(a->store);
			pthread_mutex_unlock(&a->mu);
		}
		if (lrc == CSA_OK)
			csa_ticket_release(&tk);
		csa_store_unlock(a->ws->store, lk);
		if (rc)
			break;
	}
	if (rc == CSA_OK && (json_array_size(restored) || json_array_size(removed))) {
		char ts[CSA_TS_LEN];
		json_t *r = json_pack("{s:s, s:I, s:O, s:O}", "since", csa_ts_format(since, ts),
		                      "tickets_checked", (json_int_t)json_object_size(ids),
		                      "restored", restored, "removed", removed);
		csa_ledger_append(a->ledger, "recovery", NULL, r, NULL, NULL);
		json_decref(r);
	}
	a->recovery = rc == CSA_OK ? json_pack("{s:I, s:o, s:o}", "tickets_checked",
	                                       (json_int_t)json_object_size(ids), "restored",
	                                       restored, "removed", removed)
	                           : NULL;
	if (rc) {
		json_decref(restored);
		json_decref(removed);
	}
	json_decref(ids);
	return rc;
}
