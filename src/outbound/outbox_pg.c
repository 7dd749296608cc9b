/*
 * The outbox in PostgreSQL (outbox.h, csa_outbox_pg_open): the table
 * csa_outbox of the workspace's database (migration 2 in store/pg.c),
 * shared by every node, over the workspace's pool (store/pg.h).
 *
 * A claim is one statement: the due rows are picked oldest first with
 * FOR UPDATE SKIP LOCKED (a row another node is claiming at that instant
 * is passed over, not waited for) and updated in the same statement to be
 * due again only when the lease ends; each claim adds one to the row's
 * claim number and writes the claiming node (host:pid) into claimed_by.
 * A deliverer that dies leaves the row pending with its lease, and the
 * first node to look after the lease ends claims it again. Recording an
 * attempt that failed is fenced by the claim number, so a deliverer whose
 * lease ran out (a stall longer than the lease) cannot move a row another
 * node has claimed since; recording a delivery is a fact whoever states
 * it, while the row is pending.
 *
 * With a fence (the sender's leadership, csa_outbox_set_fence), a claim
 * and a failed attempt's record are each one transaction that first
 * checks the role's epoch (store/leader_pg.h): a node that lost the role
 * claims nothing more, even before it noticed.
 */
#include "outbound/outbox.h"
#include "base/ts.h"
#include "store/leader_pg.h"
#include "store/pg.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pg_outbox {
	struct csa_outbox base;
	struct csa_pg *pg; /* borrowed */
	char node[300];    /* host:pid, claimed_by of this handle's claims */
};

static int pg_enqueue(struct csa_outbox *ob, const char *key, const char *ticket_id,
                      const char *target, const char *url, const char *payload, int64_t now_ms,
                      struct csa_err *err)
{
	struct pg_outbox *o = (struct pg_outbox *)ob;
	char now[24];
	snprintf(now, sizeof(now), "%" PRId64, now_ms);
	const char *p[] = {key, ticket_id, target, url, payload, now};
	PGconn *c = NULL;
	int rc;
	PGresult *r = csa_pg_query(o->pg, &c, "outbox: queueing a delivery",
	                           "INSERT INTO csa_outbox (key, ticket_id, target, url, payload,"
	                           " next_ms, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $6)"
	                           " ON CONFLICT (key) DO NOTHING RETURNING id",
	                           6, p, err, &rc);
	csa_pg_put(o->pg, c);
	if (!r)
		return rc;
	rc = PQntuples(r) == 1 ? 1 : 0;
	PQclear(r);
	return rc;
}

/*
 * A statement the sender runs as leader (claims, failed attempts): with a
 * fence (csa_outbox_set_fence), in one transaction after the role's epoch
 * is found to be still this node's (store/leader_pg.h), so a node that
 * lost the role writes nothing; without one, as csa_pg_query. The result,
 * or NULL with *rc and 'err' set (CSA_ECONFLICT: fenced). *c is the
 * caller's to put back either way.
 */
static PGresult *fenced_query(struct pg_outbox *o, PGconn **c, const char *what, const char *sql,
                              int n, const char *const *params, struct csa_err *err, int *rc)
{
	if (!o->base.fence)
		return csa_pg_query(o->pg, c, what, sql, n, params, err, rc);
	const char *where = csa_pg_where(o->pg);
	PGresult *r = NULL;
	/* BEGIN on a pooled connection that died idle is sent once more on
	 * a new one (nothing of the transaction ran yet) */
	PGresult *b = csa_pg_query(o->pg, c, what, "BEGIN", 0, NULL, err, rc);
	if (!b)
		return NULL;
	PQclear(b);
	if ((*rc = csa_leader_fence_pg(o->base.fence, *c, where, err)) ||
	    (*rc = csa_pg_exec(where, *c, what, sql, n, params, &r, err)) ||
	    (*rc = csa_pg_exec(where, *c, what, "COMMIT", 0, NULL, NULL, err))) {
		PQclear(r);
		csa_pg_rollback(*c);
		if (*rc == CSA_ECONFLICT)
			csa_error_prefix(err, "%s: ", what);
		return NULL;
	}
	return r;
}

static int by_id(const void *a, const void *b)
{
	const struct csa_outbox_item *x = a, *y = b;
	return (x->id > y->id) - (x->id < y->id);
}

static char *dup_value(const PGresult *r, int row, int col)
{
	return strdup(PQgetvalue(r, row, col));
}

static int pg_claim_due(struct csa_outbox *ob, int64_t now_ms, int max, int64_t lease_ms,
                        const char *target, struct csa_outbox_item **items, int *n,
                        struct csa_err *err)
{
	struct pg_outbox *o = (struct pg_outbox *)ob;
	*n = 0;
	if (!(*items = calloc((size_t)(max > 0 ? max : 1), sizeof(**items))))
		return csa_error(err, CSA_ENOMEM, "out of memory claiming due deliveries");
	if (max <= 0)
		return CSA_OK;
	char now[24], lim[16], until[24];
	snprintf(now, sizeof(now), "%" PRId64, now_ms);
	snprintf(lim, sizeof(lim), "%d", max);
	snprintf(until, sizeof(until), "%" PRId64, now_ms + lease_ms);
	const char *p[] = {now, lim, until, target, o->node};
	PGconn *c = NULL;
	int rc;
	PGresult *r = fenced_query(
	    o, &c, "outbox: claiming the due items",
	    "WITH due AS (SELECT id FROM csa_outbox WHERE state = 'pending' AND next_ms <= $1"
	    " AND ($4::text IS NULL OR target = $4) ORDER BY next_ms, id LIMIT $2"
	    " FOR UPDATE SKIP LOCKED)"
	    " UPDATE csa_outbox o SET next_ms = $3, claim = o.claim + 1, claimed_by = $5"
	    " FROM due WHERE o.id = due.id"
	    " RETURNING o.id, o.attempts, o.url, o.payload, o.target, o.key, o.claim",
	    5, p, err, &rc);
	csa_pg_put(o->pg, c);
	if (!r)
		return rc;
	int rows = PQntuples(r);
	for (int k = 0; k < rows && k < max; k++) {
		struct csa_outbox_item *it = &(*items)[k];
		it->id = strtoll(PQgetvalue(r, k, 0), NULL, 10);
		it->attempts = (int)strtol(PQgetvalue(r, k, 1), NULL, 10);
		it->url = dup_value(r, k, 2);
		it->payload = dup_value(r, k, 3);
		it->target = dup_value(r, k, 4);
		it->key = dup_value(r, k, 5);
		it->claim = strtoll(PQgetvalue(r, k, 6), NULL, 10);
		++*n;
	}
	PQclear(r);
	/* RETURNING comes in no promised order: oldest first, as claimed.
	 * An item whose strings could not be copied still goes back to
	 * deliver_target, which records it as failed for want of memory. */
	qsort(*items, (size_t)*n, sizeof(**items), by_id);
	return CSA_OK;
}

static int pg_settle(struct csa_outbox *ob, const struct csa_outbox_item *it, int attempts,
                     const char *state, int64_t now_ms, int64_t next_ms, const char *why,
                     struct csa_err *err)
{
	struct pg_outbox *o = (struct pg_outbox *)ob;
	char id[24], att[16], now[24], next[24], claim[24];
	snprintf(id, sizeof(id), "%" PRId64, it->id);
	snprintf(att, sizeof(att), "%d", attempts);
	snprintf(now, sizeof(now), "%" PRId64, now_ms);
	snprintf(next, sizeof(next), "%" PRId64, next_ms);
	snprintf(claim, sizeof(claim), "%" PRId64, it->claim);
	PGconn *c = NULL;
	int rc;
	PGresult *r;
	if (strcmp(state, "delivered") == 0) {
		const char *p[] = {id, att, now};
		r = csa_pg_query(o->pg, &c, "outbox: saving a delivery's state",
		                 "UPDATE csa_outbox SET state = 'delivered',"
		                 " attempts = greatest(attempts, $2::integer), last_error = NULL,"
		                 " delivered_ms = $3 WHERE id = $1 AND state = 'pending'",
		                 3, p, err, &rc);
	} else {
		const char *p[] = {id, att, state, next, why, claim};
		r = fenced_query(
		    o, &c, "outbox: saving a delivery's state",
		    "UPDATE csa_outbox SET attempts = $2, state = $3, next_ms = $4,"
		    " last_error = $5 WHERE id = $1 AND claim = $6 AND state = 'pending'",
		    6, p, err, &rc);
	}
	csa_pg_put(o->pg, c);
	int saved = r != NULL;
	PQclear(r);
	return saved ? CSA_OK : rc;
}

static int pg_for_ticket(struct csa_outbox *ob, const char *ticket_id, json_t **out,
                         struct csa_err *err)
{
	struct pg_outbox *o = (struct pg_outbox *)ob;
	const char *p[] = {ticket_id};
	PGconn *c = NULL;
	int rc;
	PGresult *r = csa_pg_query(o->pg, &c, "outbox: reading a ticket's deliveries",
	                           "SELECT id, target, state, attempts, next_ms, last_error,"
	                           " created_ms, delivered_ms, key FROM csa_outbox"
	                           " WHERE ticket_id = $1 ORDER BY id",
	                           1, p, err, &rc);
	csa_pg_put(o->pg, c);
	if (!r)
		return rc;
	json_t *arr = json_array();
	char t1[CSA_TS_LEN], t2[CSA_TS_LEN], t3[CSA_TS_LEN];
	for (int k = 0; arr && k < PQntuples(r); k++) {
		int pending = strcmp(PQgetvalue(r, k, 2), "pending") == 0;
		json_t *it = json_pack(
		    "{s:I, s:s, s:s, s:s, s:i, s:s?, s:s?, s:s, s:s?}", "id",
		    (json_int_t)strtoll(PQgetvalue(r, k, 0), NULL, 10), "key", PQgetvalue(r, k, 8),
		    "target", PQgetvalue(r, k, 1), "state", PQgetvalue(r, k, 2), "attempts",
		    (int)strtol(PQgetvalue(r, k, 3), NULL, 10), "next_attempt",
		    pending ? csa_ts_format(strtoll(PQgetvalue(r, k, 4), NULL, 10), t1) : NULL,
		    "last_error", PQgetisnull(r, k, 5) ? NULL : PQgetvalue(r, k, 5), "created",
		    csa_ts_format(strtoll(PQgetvalue(r, k, 6), NULL, 10), t2), "delivered",
		    PQgetisnull(r, k, 7)
		        ? NULL
		        : csa_ts_format(strtoll(PQgetvalue(r, k, 7), NULL, 10), t3));
		if (!it || json_array_append_new(arr, it)) {
			json_decref(arr);
			arr = NULL;
		}
	}
	PQclear(r);
	if (!arr)
		return csa_error(err, CSA_ENOMEM, "out of memory reading the deliveries of '%s'",
		                 ticket_id);
	*out = arr;
	return CSA_OK;
}

static void pg_close(struct csa_outbox *ob)
{
	free(ob);
}

static const struct csa_outbox_ops pg_ops = {
    .enqueue = pg_enqueue,
    .claim_due = pg_claim_due,
    .settle = pg_settle,
    .for_ticket = pg_for_ticket,
    .close = pg_close,
};

int csa_outbox_pg_open(struct csa_pg *pg, int max_attempts, struct csa_outbox **out,
                       struct csa_err *err)
{
	struct pg_outbox *o = calloc(1, sizeof(*o));
	if (!o)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the outbox");
	o->base.ops = &pg_ops;
	o->base.max_attempts = max_attempts > 0 ? max_attempts : 8;
	o->pg = pg;
	char host[256] = "";
	if (gethostname(host, sizeof(host) - 1) != 0)
		snprintf(host, sizeof(host), "unknown-host");
	snprintf(o->node, sizeof(o->node), "%s:%ld", host, (long)getpid());
	*out = &o->base;
	return CSA_OK;
}
