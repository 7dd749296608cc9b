/*
 * The PostgreSQL backend of store/learnlog.h: the online-learning log of
 * a workspace whose tickets are in the database, which every node reads
 * (migration 9 in store/pg.c).
 *
 *   csa_online_examples(seq bigint identity, kind, body bytea, added_at)
 *   csa_online_log(one, id): the log's identity, one row
 *
 * A reader asks for "seq > the last it applied", so an entry must never
 * become visible after one with a higher position: with plain inserts a
 * transaction that took position 10 could commit after one that took 11,
 * and a node that read 11 in between would never read 10. Appends
 * therefore take a transaction-scoped advisory lock before the insert
 * draws its position and keep it until they commit: positions are drawn
 * and committed in one order. Appends are a person's corrections, a few a
 * minute, so they may queue.
 */
#include "store/learnlog.h"
#include "store/pg.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pg_log {
	struct csa_learnlog base;
	struct csa_pg *pg;
	char lock_key[24];
	pthread_mutex_t mu; /* id */
	char id[CSA_LEARNLOG_ID_LEN + 1];
};

static int pg_append(struct csa_learnlog *lg, const char *kind, const void *body, size_t len,
                     int64_t *seq, struct csa_err *err)
{
	struct pg_log *l = (struct pg_log *)lg;
	int rc = csa_learnlog_kind_check(kind, err);
	if (rc)
		return rc;
	if (len > CSA_LEARNLOG_BODY_MAX)
		return csa_error(err, CSA_ELIMIT,
		                 "online-learning entry of %zu bytes, more than the limit %zu", len,
		                 CSA_LEARNLOG_BODY_MAX);
	char *hex = csa_pg_hex(body, len);
	if (!hex)
		return csa_error(err, CSA_ENOMEM,
		                 "out of memory appending to the online-learning log");
	const char *where = csa_pg_where(l->pg);
	PGconn *c = NULL;
	PGresult *r = NULL;
	char keep[24];
	const char *key[] = {l->lock_key}, *row[] = {kind, hex}, *bound[] = {keep};
	if ((rc = csa_pg_get(l->pg, &c, err)))
		goto out;
	if ((rc = csa_pg_exec(where, c, "appending to the online-learning log", "BEGIN", 0, NULL,
	                      NULL, err)) ||
	    (rc = csa_pg_exec(where, c, "appending to the online-learning log",
	                      "SELECT pg_advisory_xact_lock($1::bigint)", 1, key, NULL, err)) ||
	    (rc = csa_pg_exec(where, c, "appending to the online-learning log",
	                      "INSERT INTO csa_online_examples (kind, body) "
	                      "VALUES ($1, decode($2, 'hex')) RETURNING seq",
	                      2, row, &r, err)))
		goto fail;
	int64_t s = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	snprintf(keep, sizeof(keep), "%lld", (long long)(s - CSA_LEARNLOG_KEEP));
	if ((rc = csa_pg_exec(where, c, "dropping the oldest online-learning entries",
	                      "DELETE FROM csa_online_examples WHERE seq <= $1::bigint", 1, bound,
	                      NULL, err)) ||
	    (rc = csa_pg_exec(where, c, "appending to the online-learning log", "COMMIT", 0, NULL,
	                      NULL, err)))
		goto fail;
	if (seq)
		*seq = s;
	goto out;
fail:
	csa_pg_rollback(c);
out:
	PQclear(r);
	csa_pg_put(l->pg, c);
	free(hex);
	return rc;
}

static int pg_read(struct csa_learnlog *lg, int64_t after, size_t max,
                   struct csa_learnlog_entry **out, size_t *n, struct csa_err *err)
{
	struct pg_log *l = (struct pg_log *)lg;
	*out = NULL;
	*n = 0;
	if (max == 0)
		return CSA_OK;
	char from[24], lim[24];
	snprintf(from, sizeof(from), "%lld", (long long)after);
	snprintf(lim, sizeof(lim), "%zu", max);
	const char *params[] = {from, lim};
	PGconn *c = NULL;
	int rc;
	PGresult *r = csa_pg_query(l->pg, &c, "reading the online-learning log",
	                           "SELECT seq, kind, body FROM csa_online_examples "
	                           "WHERE seq > $1::bigint ORDER BY seq LIMIT $2::bigint",
	                           2, params, err, &rc);
	csa_pg_put(l->pg, c);
	if (!r)
		return rc;
	size_t rows = (size_t)PQntuples(r), got = 0;
	struct csa_learnlog_entry *e = rows ? calloc(rows, sizeof(*e)) : NULL;
	if (rows && !e)
		rc = csa_error(err, CSA_ENOMEM, "out of memory reading the online-learning log");
	for (size_t i = 0; rc == CSA_OK && i < rows; i++) {
		const char *kind = PQgetvalue(r, (int)i, 1);
		size_t len = 0;
		unsigned char *raw =
		    PQunescapeBytea((const unsigned char *)PQgetvalue(r, (int)i, 2), &len);
		if (!raw) {
			rc = csa_error(err, CSA_ENOMEM,
			               "out of memory reading the online-learning log");
			break;
		}
		/* the table's checks hold these; one changed by hand is passed
		 * over alike by every reader */
		if (strlen(kind) > CSA_LEARNLOG_KIND_MAX || len > CSA_LEARNLOG_BODY_MAX) {
			PQfreemem(raw);
			continue;
		}
		struct csa_learnlog_entry *x = &e[got];
		x->seq = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
		snprintf(x->kind, sizeof(x->kind), "%s", kind);
		if (!(x->body = malloc(len + 1))) {
			PQfreemem(raw);
			rc = csa_error(err, CSA_ENOMEM,
			               "out of memory reading the online-learning log");
			break;
		}
		memcpy(x->body, raw, len);
		x->body[len] = '\0';
		x->len = len;
		PQfreemem(raw);
		got++;
	}
	PQclear(r);
	if (rc || got == 0) {
		csa_learnlog_free_entries(e, got);
		return rc;
	}
	*out = e;
	*n = got;
	return CSA_OK;
}

static int pg_head(struct csa_learnlog *lg, int64_t *seq, struct csa_err *err)
{
	struct pg_log *l = (struct pg_log *)lg;
	PGconn *c = NULL;
	int rc;
	PGresult *r = csa_pg_query(l->pg, &c, "reading the online-learning log's newest position",
	                           "SELECT coalesce(max(seq), 0) FROM csa_online_examples", 0, NULL,
	                           err, &rc);
	csa_pg_put(l->pg, c);
	if (!r)
		return rc;
	*seq = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return CSA_OK;
}

static int pg_prune(struct csa_learnlog *lg, const char *kind, int64_t upto, struct csa_err *err)
{
	struct pg_log *l = (struct pg_log *)lg;
	int rc = csa_learnlog_kind_check(kind, err);
	if (rc)
		return rc;
	char bound[24];
	snprintf(bound, sizeof(bound), "%lld", (long long)upto);
	const char *params[] = {kind, bound};
	PGconn *c = NULL;
	PGresult *r = csa_pg_query(l->pg, &c, "dropping covered online-learning entries",
	                           "DELETE FROM csa_online_examples "
	                           "WHERE kind = $1 AND seq <= $2::bigint",
	                           2, params, err, &rc);
	csa_pg_put(l->pg, c);
	PQclear(r); /* rc says how it went */
	return rc;
}

/* The first node to need the identity makes it; a concurrent one's insert
 * does nothing and both read the same row. */
static int pg_id(struct csa_learnlog *lg, char out[CSA_LEARNLOG_ID_LEN + 1], struct csa_err *err)
{
	struct pg_log *l = (struct pg_log *)lg;
	int rc = CSA_OK;
	pthread_mutex_lock(&l->mu);
	if (!l->id[0]) {
		PGconn *c = NULL;
		PGresult *r =
		    csa_pg_query(l->pg, &c, "making the online-learning log's identity",
		                 "INSERT INTO csa_online_log (one, id) "
		                 "VALUES (true, replace(gen_random_uuid()::text, '-', '')) "
		                 "ON CONFLICT (one) DO NOTHING",
		                 0, NULL, err, &rc);
		PQclear(r);
		r = NULL;
		if (rc == CSA_OK)
			r = csa_pg_query(l->pg, &c, "reading the online-learning log's identity",
			                 "SELECT id FROM csa_online_log", 0, NULL, err, &rc);
		csa_pg_put(l->pg, c);
		if (r && (PQntuples(r) != 1 || strlen(PQgetvalue(r, 0, 0)) != CSA_LEARNLOG_ID_LEN))
			rc = csa_error(err, CSA_ECORRUPT,
			               "the online-learning log's identity in PostgreSQL at %s is "
			               "damaged",
			               csa_pg_where(l->pg));
		else if (r)
			memcpy(l->id, PQgetvalue(r, 0, 0), CSA_LEARNLOG_ID_LEN + 1);
		PQclear(r);
	}
	if (rc == CSA_OK)
		memcpy(out, l->id, CSA_LEARNLOG_ID_LEN + 1);
	pthread_mutex_unlock(&l->mu);
	return rc;
}

static void pg_close(struct csa_learnlog *lg)
{
	struct pg_log *l = (struct pg_log *)lg;
	pthread_mutex_destroy(&l->mu);
	free(l);
}

static const struct csa_learnlog_ops pg_log_ops = {.append = pg_append,
                                                   .read = pg_read,
                                                   .head = pg_head,
                                                   .prune = pg_prune,
                                                   .id = pg_id,
                                                   .close = pg_close};

int csa_learnlog_open_pg(struct csa_pg *pg, struct csa_learnlog **out, struct csa_err *err)
{
	struct pg_log *l = calloc(1, sizeof(*l));
	if (!l)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the online-learning log");
	l->base.ops = &pg_log_ops;
	l->pg = pg;
	snprintf(l->lock_key, sizeof(l->lock_key), "%lld", csa_pg_lock_key("learnlog", "append"));
	pthread_mutex_init(&l->mu, NULL);
	*out = &l->base;
	return CSA_OK;
}
