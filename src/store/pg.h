/*
 * One PostgreSQL database shared by every backend of a process: the ticket
 * store (store_pg.c), the outbox (outbound/outbox_pg.c), the channel map
 * and the API tokens (server/chanmap_pg.c, server/tokens_pg.c), the
 * leadership of the roles one node runs (leader_pg.c), the automation
 * controller's store and the audit ledger (automation/auto_pg.c,
 * automation/ledger_pg.c), the documents and the online-learning log
 * (blobs_pg.c, learnlog_pg.c). What each
 * of them needs from libpq, written once: the URL read for messages
 * (host:port/dbname, never the password), connections with keepalives on
 * both ends, a pool of idle connections, a query run once more when the
 * pooled connection it took had died, errors that say what and where, and
 * the schema migrations.
 *
 * A workspace whose tickets are in PostgreSQL holds one struct csa_pg
 * (csa_ws->pg, opened by store/ws.c), and every backend of that workspace
 * borrows it: one pool per process, however many backends use it.
 *
 * For src/store/ and the *_pg.c files of other folders only
 * (scripts/check-layers.sh): it includes libpq's header, which nothing
 * else may see.
 *
 * Migrations: one list for the whole database, append only, in pg.c, so
 * schema_migrations holds one version number for every table csa keeps.
 * A released migration is never edited; a change is a new one. Opening
 * applies the missing ones in one transaction under an advisory lock, so
 * nodes starting together apply them once.
 *
 * Thread safety: a struct csa_pg may be used by any number of threads at
 * once; a PGconn taken from it belongs to one thread until it is put back.
 */
#ifndef CSA_STORE_PG_H
#define CSA_STORE_PG_H

#include <libpq-fe.h>
#include <stddef.h>
#include "base/err.h"

struct csa_pg;

/* How csa_pg_open() treats the schema. */
enum csa_pg_schema {
	CSA_PG_MIGRATE = 0, /* apply the migrations the database lacks */
	CSA_PG_EXPECT = 1,  /* change nothing; refuse a schema other than this build's */
};

/*
 * Open a pool on the database at 'url' (a libpq URL or connection string,
 * postgresql://user:password@host:port/dbname?...): read the URL, connect
 * once (a server that is not there is said now, not at the first query),
 * then migrate or check the schema as 'schema' says. 'source' names where
 * the URL came from in errors ("DATABASE_URL", "csa.json store.url").
 * *out is freed with csa_pg_free(). On failure nothing is left open and
 * the message names the server (never the password).
 */
int csa_pg_open(const char *url, const char *source, enum csa_pg_schema schema,
                struct csa_pg **out, struct csa_err *err);

/* Close every idle connection and free. Connections taken and not put
 * back are the takers' to finish. NULL is a no-op. */
void csa_pg_free(struct csa_pg *pg);

/* host:port/dbname of the database, for messages (valid until free). */
const char *csa_pg_where(const struct csa_pg *pg);

/* A connection: an idle one of the pool, else a new one. It belongs to
 * the caller until csa_pg_put(). */
int csa_pg_get(struct csa_pg *pg, PGconn **out, struct csa_err *err);

/* Give a connection back: kept for reuse if it is healthy, outside a
 * transaction and the pool has room, else closed. NULL is a no-op. A
 * connection that may hold a session advisory lock must be closed with
 * PQfinish() instead, never put back. */
void csa_pg_put(struct csa_pg *pg, PGconn *c);

/*
 * Run 'sql' with text parameters on *c (taken from the pool first when
 * *c is NULL). A connection that turns out dead (the server restarted
 * while it sat in the pool) is replaced and the statement sent once more:
 * for statements outside a transaction only, which either ran whole or
 * not at all. Returns the result (the caller PQclear()s it) with *rc
 * CSA_OK, or NULL with *rc and 'err' set: CSA_EBACKEND, "<what>:
 * PostgreSQL at <where>: <server's message>". *c stays the caller's
 * either way (NULL if no connection could be had).
 */
PGresult *csa_pg_query(struct csa_pg *pg, PGconn **c, const char *what, const char *sql, int n,
                       const char *const *params, struct csa_err *err, int *rc);

/* The same on a connection the caller holds (inside its transaction):
 * no second attempt. CSA_OK, keeping the result in *keep when it is not
 * NULL (the caller PQclear()s it), or CSA_EBACKEND as above. */
int csa_pg_exec(const char *where, PGconn *c, const char *what, const char *sql, int n,
                const char *const *params, PGresult **keep, struct csa_err *err);

/* CSA_EBACKEND with "<what>: PostgreSQL at <where>: <message>", the
 * message taken from 'r' or else from 'c', on one line. */
int csa_pg_error(const char *where, struct csa_err *err, PGconn *c, const PGresult *r,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* ROLLBACK on a connection whose transaction failed (errors ignored: a
 * connection that cannot roll back is not put back healthy). */
void csa_pg_rollback(PGconn *c);

/* The newest schema version this build knows. */
int csa_pg_schema_version(void);

/* Apply the migrations the database at 'url' lacks (as csa_pg_open with
 * CSA_PG_MIGRATE, on a connection of its own). *applied (may be NULL):
 * how many were applied now, 0 when the schema was current. A database
 * newer than this build is refused (CSA_ESTATE) with both versions. */
int csa_pg_migrate_url(const char *url, const char *source, int *applied, struct csa_err *err);

/* 'buf' as lower-case hex (a new string, free()): bytes sent as a text
 * parameter and taken with decode($n, 'hex') into a bytea. NULL when out
 * of memory. */
char *csa_pg_hex(const void *buf, size_t len);

/* A 64-bit advisory lock key for 'name' in namespace 'ns' (a hash): the
 * key space every advisory lock of csa draws from. */
long long csa_pg_lock_key(const char *ns, const char *name);

#endif
