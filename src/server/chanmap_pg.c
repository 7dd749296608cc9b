/*
 * The channel thread map in PostgreSQL (chanmap.h, csa_chanmap_pg_open):
 * the table csa_channels(key, ticket_id) of the workspace's database
 * (migration 3 in store/pg.c), over its pool (store/pg.h), shared by every
 * node. A bind is INSERT ... ON CONFLICT DO NOTHING: the first binding of
 * a key wins whichever node makes it, and every node reads the same one
 * afterwards.
 */
#include "server/chanmap.h"
#include "store/pg.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pg_map {
	struct csa_chanmap base;
	struct csa_pg *pg; /* borrowed */
};

static int key_ok(const char *key, struct csa_err *err)
{
	if (strlen(key) > CSA_CHANMAP_KEY_MAX)
		return csa_error(err, CSA_EINVAL, "thread key '%.60s...' is longer than %d bytes",
		                 key, CSA_CHANMAP_KEY_MAX);
	return CSA_OK;
}

static int pgm_get(struct csa_chanmap *cm, const char *key, char *ticket, size_t n,
                   struct csa_err *err)
{
	struct pg_map *m = (struct pg_map *)cm;
	int rc = key_ok(key, err);
	if (rc)
		return rc;
	const char *p[] = {key};
	PGconn *c = NULL;
	PGresult *r = csa_pg_query(m->pg, &c, "looking up a thread in the channel map",
	                           "SELECT ticket_id FROM csa_channels WHERE key = $1", 1, p, err,
	                           &rc);
	csa_pg_put(m->pg, c);
	if (!r)
		return rc;
	if (PQntuples(r) == 0)
		rc = csa_error(err, CSA_ENOENT, "thread '%.100s' is not mapped to a ticket", key);
	else if ((size_t)snprintf(ticket, n, "%s", PQgetvalue(r, 0, 0)) >= n)
		rc = csa_error(err, CSA_ECORRUPT,
		               "channel map in PostgreSQL at %s: thread '%.100s' maps to no valid "
		               "ticket",
		               csa_pg_where(m->pg), key);
	PQclear(r);
	return rc;
}

static int pgm_bind(struct csa_chanmap *cm, const char *key, const char *ticket,
                    struct csa_err *err)
{
	struct pg_map *m = (struct pg_map *)cm;
	int rc = key_ok(key, err);
	if (rc)
		return rc;
	const char *p[] = {key, ticket};
	PGconn *c = NULL;
	PGresult *r = csa_pg_query(m->pg, &c, "binding a thread in the channel map",
	                           "INSERT INTO csa_channels (key, ticket_id) VALUES ($1, $2)"
	                           " ON CONFLICT (key) DO NOTHING",
	                           2, p, err, &rc);
	csa_pg_put(m->pg, c);
	if (!r)
		csa_error_prefix(err, "thread '%.100s' to ticket '%s': ", key, ticket);
	PQclear(r);
	return rc;
}

static void pgm_close(struct csa_chanmap *cm)
{
	free(cm);
}

static const struct csa_chanmap_ops pg_ops = {
    .name = "postgresql",
    .get = pgm_get,
    .bind = pgm_bind,
    .close = pgm_close,
};

int csa_chanmap_pg_open(struct csa_pg *pg, struct csa_chanmap **out, struct csa_err *err)
{
	struct pg_map *m = calloc(1, sizeof(*m));
	if (!m)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the channel map");
	m->base.ops = &pg_ops;
	m->pg = pg;
	*out = &m->base;
	return CSA_OK;
}
