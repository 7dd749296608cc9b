/*
 * API tokens with roles: viewer (read), agent (read, decide reviews, add
 * messages, create tickets), admin (also phase changes, rollback, tokens).
 * A token is shown once when created; the store keeps only its SHA-256,
 * and a check compares the digest with every stored one in constant time.
 *
 * The tokens live behind a table of operations (struct csa_tokens_ops)
 * with two implementations: <ws>/tokens.json (tokens.c) and, when the
 * workspace's tickets are in PostgreSQL, the table csa_tokens of that
 * database (tokens_pg.c), so a token made on one node works on every
 * node. Callers hold a handle from csa_tokens_open_ws() (or
 * csa_tokens_open() for a file workspace) and use the csa_tokens_*()
 * calls below; nothing outside those files knows where tokens are kept.
 *
 * Concurrency: a handle may be used by many threads at once. Tokens
 * created or revoked by another process (`csa token create` while the
 * server runs) are seen by the next check.
 */
#ifndef CSA_SERVER_TOKENS_H
#define CSA_SERVER_TOKENS_H

#include <jansson.h>
#include "base/digest.h"
#include "base/err.h"

enum csa_role { CSA_ROLE_NONE = 0, CSA_ROLE_VIEWER = 1, CSA_ROLE_AGENT = 2, CSA_ROLE_ADMIN = 3 };

/* "viewer" | "agent" | "admin" -> role; CSA_ROLE_NONE otherwise. */
enum csa_role csa_role_parse(const char *s);
/* "none", "viewer", "agent", "admin" (static strings). */
const char *csa_role_name(enum csa_role r);

#define CSA_TOKEN_ID_LEN 32 /* room for a token id "tk_" + 12 hex and its NUL */

struct csa_tokens;

struct csa_tokens_ops {
	const char *name;
	/* Make a token with a role and an optional name (a note for people).
	 * *token is the secret (caller frees; shown once, never stored), id
	 * its public id. Nothing is stored on error. */
	int (*create)(struct csa_tokens *t, enum csa_role role, const char *name, char **token,
	              char id[CSA_TOKEN_ID_LEN], struct csa_err *err);
	/* The role and id of a presented secret: CSA_OK, CSA_EAUTH when no
	 * stored token has it, another code when the tokens cannot be read
	 * (then no request may pass). */
	int (*check)(struct csa_tokens *t, const char *presented, enum csa_role *role,
	             char id[CSA_TOKEN_ID_LEN], struct csa_err *err);
	/* Every token as a new array of {"id", "name", "role", "created"}
	 * (no digests). */
	int (*list)(struct csa_tokens *t, json_t **out, struct csa_err *err);
	/* Remove a token by id; CSA_ENOENT when there is none. */
	int (*revoke)(struct csa_tokens *t, const char *id, struct csa_err *err);
	void (*close)(struct csa_tokens *t);
};

struct csa_tokens {
	const struct csa_tokens_ops *ops;
};

/* Open the tokens in <ws_root>/tokens.json (absent: no tokens yet). The
 * file is read at the first check and again whenever it changes. */
int csa_tokens_open(const char *ws_root, struct csa_tokens **out, struct csa_err *err);

struct csa_ws;
struct csa_pg;

/* Open the tokens of a workspace: in its database when its tickets are
 * in PostgreSQL (ws->pg), else its tokens.json. */
int csa_tokens_open_ws(struct csa_ws *ws, struct csa_tokens **out, struct csa_err *err);

/* The tokens in the database of 'pg' (store/pg.h, its schema migrated;
 * borrowed until the handle is closed): a check is one lookup of the
 * presented secret's SHA-256 (the digest, not the secret, is what an
 * index lookup could leak the timing of), so a token created or revoked
 * on any node counts at the next request on every node. */
int csa_tokens_pg_open(struct csa_pg *pg, struct csa_tokens **out, struct csa_err *err);

/* For the backends: a new secret for 'role' ("csa_" and 64 hex digits,
 * *token malloc'd, the caller frees), its SHA-256 in hex and its public
 * id "tk_" + the digest's first 12 digits. CSA_EINVAL for a role other
 * than viewer, agent or admin. */
int csa_token_mint(enum csa_role role, char **token, char hash[CSA_SHA256_HEX_LEN],
                   char id[CSA_TOKEN_ID_LEN], struct csa_err *err);

/* The SHA-256 in hex of a presented secret; CSA_EAUTH when there is none
 * or it is longer than 256 characters. */
int csa_token_digest(const char *presented, char hash[CSA_SHA256_HEX_LEN], struct csa_err *err);

static inline int csa_tokens_create(struct csa_tokens *t, enum csa_role role, const char *name,
                                    char **token, char id[CSA_TOKEN_ID_LEN], struct csa_err *err)
{
	return t->ops->create(t, role, name, token, id, err);
}

static inline int csa_tokens_check(struct csa_tokens *t, const char *presented, enum csa_role *role,
                                   char id[CSA_TOKEN_ID_LEN], struct csa_err *err)
{
	return t->ops->check(t, presented, role, id, err);
}

static inline int csa_tokens_list(struct csa_tokens *t, json_t **out, struct csa_err *err)
{
	return t->ops->list(t, out, err);
}

static inline int csa_tokens_revoke(struct csa_tokens *t, const char *id, struct csa_err *err)
{
	return t->ops->revoke(t, id, err);
}

/* Close a handle; NULL is a no-op. */
static inline void csa_tokens_close(struct csa_tokens *t)
{
	if (t)
		t->ops->close(t);
}

/*
 * One-call forms over a file workspace's tokens.json (tests; the CLI opens
 * csa_tokens_open_ws() so that a database workspace is served too): open,
 * do one operation, close. csa_tokens_load gives {"tokens": [list]} (new
 * reference).
 */
int csa_token_create(const char *ws_root, enum csa_role role, const char *name, char **token,
                     char id_out[CSA_TOKEN_ID_LEN], struct csa_err *err);
int csa_tokens_load(const char *ws_root, json_t **out, struct csa_err *err);
int csa_token_revoke(const char *ws_root, const char *id, struct csa_err *err);

#endif
