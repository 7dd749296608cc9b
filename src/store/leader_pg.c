/*
 * Leadership of a role over PostgreSQL (store/leader.h): a session
 * advisory lock on a connection of the handle's own, and the role's
 * fencing epoch in csa_leaders (schema migration 4 in pg.c).
 *
 * Taking: pg_try_advisory_lock never waits, so a node that does not lead
 * asks again at its next poll; on success one statement increments the
 * epoch (inserting the row the first time). That statement waits for any
 * fenced write of the previous leader still in flight (it holds the row
 * FOR SHARE), so the new epoch starts after every write the old one made.
 *
 * Keeping: each poll updates renewed_at where the epoch is still this
 * handle's, on the dedicated connection. An error there (the connection
 * died: the lock went with it) or no row (another epoch) is lost
 * leadership; the connection is closed, and later polls try to take the
 * role again on a new one.
 */
#include "store/leader_pg.h"
#include "store/leader.h"
#include "store/leader_internal.h"
#include "store/pg.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pg_leader {
	struct csa_leader base;
	struct csa_pg *pg; /* borrowed */
	PGconn *conn;      /* dedicated: holds the advisory lock while leading */
	char key[24];      /* the lock's key, decimal ("": not made yet) */
	char node[300];    /* host:pid, csa_leaders.holder */
};

/* Close the dedicated connection: the server lets go of the lock. */
static void drop_conn(struct pg_leader *p)
{
	if (p->conn) {
		PQfinish(p->conn);
		p->conn = NULL;
	}
}

/* 'rc' after prefixing err's message ('err' may be NULL). */
static int prefixed(int rc, struct csa_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int prefixed(int rc, struct csa_err *err, const char *fmt, ...)
{
	if (err) {
		char pre[200];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(pre, sizeof(pre), fmt, ap);
		va_end(ap);
		csa_error_prefix(err, "%s", pre);
	}
	return rc;
}

/* Take the role: the lock, then the next epoch. */
static int take(struct pg_leader *p, int *leading, struct csa_err *err)
{
	const char *where = csa_pg_where(p->pg);
	int rc;
	if (!p->conn && (rc = csa_pg_get(p->pg, &p->conn, err)))
		return prefixed(rc, err, "trying to lead '%s': ", p->base.role);
	PGresult *r = NULL;
	if (!p->key[0]) {
		/* advisory locks are per database, csa's tables per schema: two
		 * deployments in two schemas of one database (the URL's
		 * search_path) must not share a leader, so the schema csa's
		 * tables are in is part of the key */
		rc = csa_pg_exec(where, p->conn, "trying to lead: reading the schema",
		                 "SELECT current_schema()", 0, NULL, &r, err);
		if (rc) {
			drop_conn(p);
			return prefixed(rc, err, "role '%s': ", p->base.role);
		}
		char ns[200];
		snprintf(ns, sizeof(ns), "leader:%s",
		         PQgetisnull(r, 0, 0) ? "(no schema)" : PQgetvalue(r, 0, 0));
		PQclear(r);
		r = NULL;
		snprintf(p->key, sizeof(p->key), "%lld", csa_pg_lock_key(ns, p->base.role));
	}
	const char *kp[] = {p->key};
	rc = csa_pg_exec(where, p->conn, "trying to lead: taking the advisory lock",
	                 "SELECT pg_try_advisory_lock($1::bigint)", 1, kp, &r, err);
	if (rc) {
		/* a connection that failed here is not worth keeping */
		drop_conn(p);
		return prefixed(rc, err, "role '%s': ", p->base.role);
	}
	int got = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	if (!got)
		return CSA_OK; /* another node leads */
	const char *ep[] = {p->base.role, p->node};
	rc = csa_pg_exec(where, p->conn, "taking the leadership: the next fencing epoch",
	                 "INSERT INTO csa_leaders AS l (role, epoch, holder, since, renewed_at)"
	                 " VALUES ($1, 1, $2, now(), now()) ON CONFLICT (role) DO UPDATE"
	                 " SET epoch = l.epoch + 1, holder = EXCLUDED.holder, since = now(),"
	                 " renewed_at = now() RETURNING epoch",
	                 2, ep, &r, err);
	if (rc) {
		drop_conn(p); /* and the lock with it */
		return prefixed(rc, err, "role '%s': ", p->base.role);
	}
	int64_t epoch = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	csa_leader_set(&p->base, 1, epoch);
	*leading = 1;
	return CSA_OK;
}

/* Check the role is still this node's. */
static int keep(struct pg_leader *p, int *leading, struct csa_err *err)
{
	const char *where = csa_pg_where(p->pg);
	int64_t epoch = csa_leader_epoch(&p->base);
	char ep[24];
	snprintf(ep, sizeof(ep), "%" PRId64, epoch);
	const char *par[] = {p->base.role, ep};
	PGresult *r = NULL;
	int rc = csa_pg_exec(where, p->conn, "checking the leadership",
	                     "UPDATE csa_leaders SET renewed_at = now()"
	                     " WHERE role = $1 AND epoch = $2::bigint RETURNING epoch",
	                     2, par, &r, err);
	if (rc == CSA_OK && PQntuples(r) == 1) {
		PQclear(r);
		*leading = 1;
		return CSA_OK;
	}
	if (rc == CSA_OK) {
		/* the lock is this session's, yet the epoch moved: someone wrote
		 * the row by hand, or a lock was lost and taken unnoticed */
		PQclear(r);
		rc = csa_error(err, CSA_ECONFLICT,
		               "the epoch of '%s' in PostgreSQL at %s is no longer %" PRId64,
		               p->base.role, where, epoch);
	}
	drop_conn(p);
	csa_leader_set(&p->base, 0, epoch);
	return prefixed(rc, err, "lost the leadership of '%s' (epoch %" PRId64 "): ", p->base.role,
	                epoch);
}

static int pg_poll(struct csa_leader *l, int *leading, struct csa_err *err)
{
	struct pg_leader *p = (struct pg_leader *)l;
	if (csa_leader_leading(l) && p->conn)
		return keep(p, leading, err);
	return take(p, leading, err);
}

static int pg_fence(struct csa_leader *l, void *conn, const char *where, struct csa_err *err)
{
	PGconn *c = conn;
	int64_t epoch = csa_leader_epoch(l);
	if (!csa_leader_leading(l))
		return csa_error(err, CSA_ECONFLICT,
		                 "fenced: this node does not lead '%s' (its last epoch: %" PRId64
		                 "): write refused",
		                 l->role, epoch);
	const char *par[] = {l->role};
	PGresult *r = NULL;
	int rc = csa_pg_exec(where, c, "fencing a leader's write",
	                     "SELECT epoch, holder FROM csa_leaders WHERE role = $1 FOR SHARE", 1,
	                     par, &r, err);
	if (rc)
		return rc;
	if (PQntuples(r) == 1 && strtoll(PQgetvalue(r, 0, 0), NULL, 10) == epoch) {
		PQclear(r);
		return CSA_OK;
	}
	if (PQntuples(r) == 1)
		rc = csa_error(err, CSA_ECONFLICT,
		               "fenced: this node led '%s' at epoch %" PRId64
		               ", PostgreSQL at %s has epoch %s (node %s): write refused",
		               l->role, epoch, where, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
	else
		rc = csa_error(err, CSA_ECONFLICT,
		               "fenced: PostgreSQL at %s has no leader of '%s': write refused",
		               where, l->role);
	PQclear(r);
	return rc;
}

static void pg_free(struct csa_leader *l)
{
	struct pg_leader *p = (struct pg_leader *)l;
	drop_conn(p);
	free(p);
}

static const struct csa_leader_ops pg_ops = {pg_poll, pg_fence, pg_free};

int csa_leader_pg_open(struct csa_pg *pg, const char *role, struct csa_leader **out,
                       struct csa_err *err)
{
	struct pg_leader *p = calloc(1, sizeof(*p));
	if (!p)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the leadership of '%s'",
		                 role ? role : "(null)");
	int rc = csa_leader_init_base(&p->base, &pg_ops, role, err);
	if (rc) {
		free(p);
		return rc;
	}
	p->pg = pg; /* the lock's key is made at the first try (its schema) */
	char host[256] = "";
	if (gethostname(host, sizeof(host) - 1) != 0)
		snprintf(host, sizeof(host), "unknown-host");
	snprintf(p->node, sizeof(p->node), "%s:%ld", host, (long)getpid());
	*out = &p->base;
	return CSA_OK;
}

int csa_leader_fence_pg(struct csa_leader *l, PGconn *c, const char *where, struct csa_err *err)
{
	return l->ops->fence(l, c, where, err);
}
