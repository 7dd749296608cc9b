/*
 * API tokens with roles: viewer (read), agent (read, decide reviews, add
 * messages, create tickets), admin (also phase changes, rollback, tokens).
 * A token is shown once when created; the workspace keeps only its SHA-256
 * (tokens.json), and lookups compare digests in constant time.
 */
#ifndef CSA_SERVER_TOKENS_H
#define CSA_SERVER_TOKENS_H

#include <jansson.h>
#include "base/err.h"

enum csa_role { CSA_ROLE_NONE = 0, CSA_ROLE_VIEWER = 1, CSA_ROLE_AGENT = 2, CSA_ROLE_ADMIN = 3 };

/* "viewer" | "agent" | "admin" -> role; CSA_ROLE_NONE otherwise. */
enum csa_role csa_role_parse(const char *s);
const char *csa_role_name(enum csa_role r);

/* Create a token in <ws>/tokens.json; *token (caller frees) is the secret,
 * *id its public id. */
int csa_token_create(const char *ws_root, enum csa_role role, const char *name, char **token,
                     char id_out[32], struct csa_err *err);

/* Role of a presented token, or CSA_ROLE_NONE. 'tokens' is the parsed
 * tokens.json (csa_tokens_load). */
enum csa_role csa_token_check(const json_t *tokens, const char *presented, const char **id_out);

/* Load <ws>/tokens.json ({"tokens": []} when absent). */
int csa_tokens_load(const char *ws_root, json_t **out, struct csa_err *err);

/* Remove a token by id. */
int csa_token_revoke(const char *ws_root, const char *id, struct csa_err *err);

#endif
