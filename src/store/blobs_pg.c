/*
 * The PostgreSQL backend of store/blobs.h: the workspace's named documents
 * (models, LLM calibration, knowledge base) as rows of csa_blobs, so every
 * node of a database reads the same ones, and a retraining, a rollback or
 * an accepted article on one node reaches the others (their pipelines
 * reload when a version changes).
 *
 *   csa_blobs(name text PRIMARY KEY, version bigint, body bytea, put_at)
 *
 * A put is one statement (insert or replace), so a reader gets the old
 * bytes or the new ones. Versions come from one sequence: they change with
 * every put by anyone and never repeat. version() is asked often (the
 * pipeline checks its models and articles up to once a second each), so
 * it answers from a table of every name's version read at most every
 * VERSIONS_TTL_MS, and this handle's own puts update that table at once.
 */
#include "store/blobs.h"
#include "base/ts.h"
#include "store/pg.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VERSIONS_TTL_MS 500

struct pg_blobs {
	struct csa_blobs base;
	struct csa_pg *pg;
	pthread_mutex_t mu; /* the version table */
	int64_t read_ms;    /* when it was read; 0: never */
	struct ver {
		char *name;
		uint64_t version;
	} *v;
	size_t n;
};

static const struct csa_blobs_ops pg_blobs_ops;

static int pg_get(struct csa_blobs *b, const char *name, size_t max, char **buf, size_t *len,
                  struct csa_err *err)
{
	struct pg_blobs *p = (struct pg_blobs *)b;
	int rc = csa_blobs_name_check(name, err);
	if (rc)
		return rc;
	PGconn *c = NULL;
	const char *params[] = {name};
	PGresult *r = csa_pg_query(p->pg, &c, "reading a document",
	                           "SELECT body FROM csa_blobs WHERE name = $1", 1, params, err, &rc);
	csa_pg_put(p->pg, c);
	if (!r)
		return rc;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return csa_error(err, CSA_ENOENT, "no document '%s' in PostgreSQL at %s", name,
		                 csa_pg_where(p->pg));
	}
	size_t n = 0;
	unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 0), &n);
	PQclear(r);
	if (!raw)
		return csa_error(err, CSA_ENOMEM, "out of memory reading '%s'", name);
	if (n > max) {
		PQfreemem(raw);
		return csa_error(err, CSA_ELIMIT, "document '%s' is %zu bytes, more than the limit %zu",
		                 name, n, max);
	}
	if (!(*buf = malloc(n + 1))) {
		PQfreemem(raw);
		return csa_error(err, CSA_ENOMEM, "out of memory reading '%s'", name);
	}
	memcpy(*buf, raw, n);
	(*buf)[n] = '\0';
	PQfreemem(raw);
	if (len)
		*len = n;
	return CSA_OK;
}

/* Note a version this handle just wrote or read (caller holds mu). */
static void remember(struct pg_blobs *p, const char *name, uint64_t version)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->v[i].name, name) == 0) {
			p->v[i].version = version;
			return;
		}
	struct ver *nv = realloc(p->v, (p->n + 1) * sizeof(*nv));
	if (!nv)
		return; /* the next read of the table has it */
	p->v = nv;
	if ((p->v[p->n].name = strdup(name)))
		p->v[p->n++].version = version;
}

static int pg_put(struct csa_blobs *b, const char *name, const void *buf, size_t len,
                  struct csa_err *err)
{
	struct pg_blobs *p = (struct pg_blobs *)b;
	int rc = csa_blobs_name_check(name, err);
	if (rc)
		return rc;
	char *hex = csa_pg_hex(buf, len);
	if (!hex)
		return csa_error(err, CSA_ENOMEM, "out of memory writing '%s'", name);
	PGconn *c = NULL;
	const char *params[] = {name, hex};
	PGresult *r = csa_pg_query(
	    p->pg, &c, "writing a document",
	    "INSERT INTO csa_blobs (name, version, body, put_at) "
	    "VALUES ($1, nextval('csa_blob_version'), decode($2, 'hex'), clock_timestamp()) "
	    "ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, body = EXCLUDED.body, "
	    "put_at = EXCLUDED.put_at RETURNING version",
	    2, params, err, &rc);
	csa_pg_put(p->pg, c);
	free(hex);
	if (!r)
		return csa_error_prefix(err, "document '%s': ", name);
	uint64_t v = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	pthread_mutex_lock(&p->mu);
	remember(p, name, v);
	pthread_mutex_unlock(&p->mu);
	return CSA_OK;
}

static int pg_list(struct csa_blobs *b, const char *area, json_t **names, struct csa_err *err)
{
	struct pg_blobs *p = (struct pg_blobs *)b;
	char probe[256];
	snprintf(probe, sizeof(probe), "%s/x", area ? area : "");
	int rc = csa_blobs_name_check(probe, err);
	if (rc)
		return rc;
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "%s/", area);
	PGconn *c = NULL;
	const char *params[] = {prefix};
	PGresult *r = csa_pg_query(p->pg, &c, "listing documents",
	                           "SELECT substr(name, length($1) + 1) FROM csa_blobs "
	                           "WHERE starts_with(name, $1) ORDER BY name",
	                           1, params, err, &rc);
	csa_pg_put(p->pg, c);
	if (!r)
		return rc;
	json_t *arr = json_array();
	for (int i = 0; arr && i < PQntuples(r); i++)
		if (json_array_append_new(arr, json_string(PQgetvalue(r, i, 0)))) {
			json_decref(arr);
			arr = NULL;
		}
	PQclear(r);
	if (!arr)
		return csa_error(err, CSA_ENOMEM, "out of memory listing documents");
	*names = arr;
	return CSA_OK;
}

/* Every name's version, read again when the table is older than the TTL
 * (caller holds mu). A failed read keeps the old table. */
static void refresh_versions(struct pg_blobs *p)
{
	int64_t now = csa_mono_ns() / 1000000;
	if (p->read_ms && now - p->read_ms < VERSIONS_TTL_MS)
		return;
	PGconn *c = NULL;
	int rc;
	PGresult *r = csa_pg_query(p->pg, &c, "reading document versions",
	                           "SELECT name, version FROM csa_blobs", 0, NULL, NULL, &rc);
	csa_pg_put(p->pg, c);
	if (!r)
		return;
	struct ver *nv = calloc((size_t)PQntuples(r) + 1, sizeof(*nv));
	size_t n = 0;
	for (int i = 0; nv && i < PQntuples(r); i++) {
		if (!(nv[n].name = strdup(PQgetvalue(r, i, 0))))
			break;
		nv[n++].version = strtoull(PQgetvalue(r, i, 1), NULL, 10);
	}
	PQclear(r);
	if (!nv)
		return;
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i].name);
	free(p->v);
	p->v = nv;
	p->n = n;
	p->read_ms = now;
}

static uint64_t pg_version(struct csa_blobs *b, const char *name)
{
	struct pg_blobs *p = (struct pg_blobs *)b;
	uint64_t v = 0;
	pthread_mutex_lock(&p->mu);
	refresh_versions(p);
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->v[i].name, name) == 0) {
			v = p->v[i].version;
			break;
		}
	pthread_mutex_unlock(&p->mu);
	return v;
}

static void pg_close(struct csa_blobs *b)
{
	struct pg_blobs *p = (struct pg_blobs *)b;
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i].name);
	free(p->v);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

static const struct csa_blobs_ops pg_blobs_ops = {
    .get = pg_get, .put = pg_put, .list = pg_list, .version = pg_version, .close = pg_close};

int csa_blobs_open_pg(struct csa_pg *pg, struct csa_blobs **out, struct csa_err *err)
{
	struct pg_blobs *p = calloc(1, sizeof(*p));
	if (!p)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the documents");
	p->base.ops = &pg_blobs_ops;
	p->pg = pg;
	pthread_mutex_init(&p->mu, NULL);
	*out = &p->base;
	return CSA_OK;
}
