/*
 * API tokens in PostgreSQL (tokens.h, csa_tokens_pg_open): the table
 * csa_tokens(id, name, role, sha256, created) of the workspace's database
 * (migration 3 in store/pg.c), over its pool (store/pg.h). As in
 * tokens.json only the SHA-256 of a secret is kept; a check looks the
 * presented secret's digest up, so every node sees a token created or
 * revoked on any node at its next request.
 */
#include "server/tokens.h"
#include "base/ts.h"
#include "store/pg.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pg_tokens {
	struct csa_tokens base;
	struct csa_pg *pg; /* borrowed */
};

static int pgt_create(struct csa_tokens *t, enum csa_role role, const char *name, char **token,
                      char id_out[CSA_TOKEN_ID_LEN], struct csa_err *err)
{
	struct pg_tokens *pt = (struct pg_tokens *)t;
	char *tok, hash[CSA_SHA256_HEX_LEN], id[CSA_TOKEN_ID_LEN], ts[CSA_TS_LEN];
	int rc = csa_token_mint(role, &tok, hash, id, err);
	if (rc)
		return rc;
	const char *p[] = {id, name, csa_role_name(role), hash, csa_ts_format(csa_now_ms(), ts)};
	PGconn *c = NULL;
	PGresult *r = csa_pg_query(pt->pg, &c, "storing a new API token",
	                           "INSERT INTO csa_tokens (id, name, role, sha256, created)"
	                           " VALUES ($1, $2, $3, $4, $5)",
	                           5, p, err, &rc);
	csa_pg_put(pt->pg, c);
	PQclear(r);
	if (rc) {
		free(tok);
		return rc;
	}
	snprintf(id_out, CSA_TOKEN_ID_LEN, "%s", id);
	*token = tok;
	return CSA_OK;
}

static int pgt_check(struct csa_tokens *t, const char *presented, enum csa_role *role,
                     char id_out[CSA_TOKEN_ID_LEN], struct csa_err *err)
{
	struct pg_tokens *pt = (struct pg_tokens *)t;
	*role = CSA_ROLE_NONE;
	id_out[0] = '\0';
	char hash[CSA_SHA256_HEX_LEN];
	int rc = csa_token_digest(presented, hash, err);
	if (rc)
		return rc;
	const char *p[] = {hash};
	PGconn *c = NULL;
	PGresult *r =
	    csa_pg_query(pt->pg, &c, "checking an API token",
	                 "SELECT id, role FROM csa_tokens WHERE sha256 = $1", 1, p, err, &rc);
	csa_pg_put(pt->pg, c);
	if (!r)
		return rc;
	if (PQntuples(r) == 1) {
		*role = csa_role_parse(PQgetvalue(r, 0, 1));
		snprintf(id_out, CSA_TOKEN_ID_LEN, "%s", PQgetvalue(r, 0, 0));
	}
	PQclear(r);
	return *role == CSA_ROLE_NONE ? csa_error(err, CSA_EAUTH, "unknown or revoked token")
	                              : CSA_OK;
}

static int pgt_list(struct csa_tokens *t, json_t **out, struct csa_err *err)
{
	struct pg_tokens *pt = (struct pg_tokens *)t;
	PGconn *c = NULL;
	int rc;
	/* in the order they were made, as tokens.json keeps them */
	PGresult *r = csa_pg_query(pt->pg, &c, "listing the API tokens",
	                           "SELECT id, name, role, created FROM csa_tokens"
	                           " ORDER BY created, id",
	                           0, NULL, err, &rc);
	csa_pg_put(pt->pg, c);
	if (!r)
		return rc;
	json_t *arr = json_array();
	for (int k = 0; arr && k < PQntuples(r); k++) {
		json_t *row = json_pack("{s:s, s:s?, s:s, s:s}", "id", PQgetvalue(r, k, 0), "name",
		                        PQgetisnull(r, k, 1) ? NULL : PQgetvalue(r, k, 1), "role",
		                        PQgetvalue(r, k, 2), "created", PQgetvalue(r, k, 3));
		if (!row || json_array_append_new(arr, row)) {
			json_decref(arr);
			arr = NULL;
		}
	}
	PQclear(r);
	if (!arr)
		return csa_error(err, CSA_ENOMEM, "out of memory listing the API tokens");
	*out = arr;
	return CSA_OK;
}

static int pgt_revoke(struct csa_tokens *t, const char *id, struct csa_err *err)
{
	struct pg_tokens *pt = (struct pg_tokens *)t;
	const char *p[] = {id};
	PGconn *c = NULL;
	int rc;
	PGresult *r = csa_pg_query(pt->pg, &c, "revoking an API token",
	                           "DELETE FROM csa_tokens WHERE id = $1", 1, p, err, &rc);
	csa_pg_put(pt->pg, c);
	if (!r)
		return rc;
	if (strcmp(PQcmdTuples(r), "0") == 0)
		rc = csa_error(err, CSA_ENOENT, "no token '%s' in PostgreSQL at %s", id,
		               csa_pg_where(pt->pg));
	PQclear(r);
	return rc;
}

static void pgt_close(struct csa_tokens *t)
{
	free(t);
}

static const struct csa_tokens_ops pg_ops = {
    .name = "postgresql",
    .create = pgt_create,
    .check = pgt_check,
    .list = pgt_list,
    .revoke = pgt_revoke,
    .close = pgt_close,
};

int csa_tokens_pg_open(struct csa_pg *pg, struct csa_tokens **out, struct csa_err *err)
{
	struct pg_tokens *pt = calloc(1, sizeof(*pt));
	if (!pt)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the API tokens");
	pt->base.ops = &pg_ops;
	pt->pg = pg;
	*out = &pt->base;
	return CSA_OK;
}
