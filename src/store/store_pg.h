/*
 * The PostgreSQL backend of the ticket store (store/store.h), for
 * src/store/ only: every layer above sees a struct csa_store and never
 * learns which backend is behind it (scripts/check-layers.sh).
 *
 * Chosen when DATABASE_URL is set in the environment, or store.url in
 * csa.json (the environment wins): store/ws.c opens it in place of the
 * file mesh, over the workspace's one connection pool (store/pg.h), which
 * the other PostgreSQL backends (outbox, channel map, tokens) share.
 *
 * Tables (migrations in store/pg.c, recorded in schema_migrations):
 *   csa_tickets(id, version, e, i, t, committed_at): the three documents
 *     of spec §3.2 as jsonb, and a version drawn from the sequence
 *     csa_ticket_version by every commit of the ticket (unique across
 *     tickets and time, so it never repeats for a ticket).
 *
 * Commits: one transaction per call (commit_many included), tickets
 * written in id order; a loaded ticket is written only if its version is
 * still the one it was loaded at (CSA_ECONFLICT otherwise: a lost lock
 * cannot lose an update), a new one only if its id is free (CSA_EEXIST).
 * Locks: a session advisory lock per ticket (pg_advisory_lock on a 64-bit
 * hash of the id) held on a connection of its own until unlock, so it
 * holds across processes and machines and goes away with a process that
 * dies.
 */
#ifndef CSA_STORE_STORE_PG_H
#define CSA_STORE_STORE_PG_H

#include "base/err.h"
#include "store/store.h"

struct csa_ws;

struct csa_pg;

/* Open the ticket store in the database of 'pg' (store/pg.h: the
 * workspace's pool, borrowed until the store is closed; its schema is
 * migrated or checked by csa_pg_open). With 'observe' the store refuses
 * commits (CSA_ESTATE) and its locks are shared. */
int csa_store_pg_open(struct csa_ws *ws, struct csa_pg *pg, int observe, struct csa_store **out,
                      struct csa_err *err);

/* 1 if 'st' is a PostgreSQL store. */
int csa_store_is_pg(const struct csa_store *st);

/* host:port/dbname of a PostgreSQL store, for messages ("" for another
 * backend). */
const char *csa_store_pg_where(const struct csa_store *st);

/* CSA_ESTATE for a workspace feature that reads the file mesh directly
 * and does not cover the PostgreSQL store yet: "the tickets are in PostgreSQL at
 * <where>, which <what> does not cover yet (<instead>)". */
int csa_store_pg_unsupported(const struct csa_store *st, const char *what, const char *instead,
                             struct csa_err *err);

#endif
