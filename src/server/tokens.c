/* Hashed API tokens. */
#include "server/tokens.h"
#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

enum csa_role csa_role_parse(const char *s)
{
	if (!s)
		return CSA_ROLE_NONE;
	if (strcmp(s, "viewer") == 0)
		return CSA_ROLE_VIEWER;
	if (strcmp(s, "agent") == 0)
		return CSA_ROLE_AGENT;
	if (strcmp(s, "admin") == 0)
		return CSA_ROLE_ADMIN;
	return CSA_ROLE_NONE;
}

const char *csa_role_name(enum csa_role r)
{
	static const char *const n[] = {"none", "viewer", "agent", "admin"};
	return n[r];
}

static void sha256_hex(const char *s, char out[65])
{
	unsigned char md[32];
	unsigned int len = 0;
	EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void path_of(const char *root, char *out, size_t n)
{
	snprintf(out, n, "%s/tokens.json", root);
}

int csa_tokens_load(const char *root, json_t **out, struct csa_err *err)
{
	char path[4096];
	path_of(root, path, sizeof(path));
	int rc = csa_json_load_file(path, 1 << 20, out, err);
	if (rc == CSA_ENOENT) {
		*out = json_pack("{s:[]}", "tokens");
		return CSA_OK;
	}
	if (rc == CSA_OK && !json_is_array(json_object_get(*out, "tokens"))) {
		json_decref(*out);
		return csa_error(err, CSA_ESCHEMA, "'%s': expected {\"tokens\": [...]}", path);
	}
	return rc;
}

static int save(const char *root, json_t *t, struct csa_err *err)
{
	char path[4096], *s;
	size_t n;
	path_of(root, path, sizeof(path));
	int rc = csa_json_dump(t, 1, &s, &n, err);
	if (rc)
		return rc;
	rc = csa_fs_write_atomic(path, s, n, err);
	free(s);
	return rc;
}

int csa_token_create(const char *root, enum csa_role role, const char *name, char **token,
                     char id_out[32], struct csa_err *err)
{
	if (role == CSA_ROLE_NONE)
		return csa_error(err, CSA_EINVAL, "role must be viewer, agent or admin");
	unsigned char rnd[32];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return csa_error_sys(err, "cannot get random bytes for a token");
	char *tok = malloc(4 + 64 + 1);
	if (!tok)
		return csa_error(err, CSA_ENOMEM, "out of memory");
	memcpy(tok, "csa_", 4);
	for (int i = 0; i < 32; i++)
		snprintf(tok + 4 + 2 * i, 3, "%02x", rnd[i]);
	char hash[65], ts[CSA_TS_LEN];
	sha256_hex(tok, hash);
	snprintf(id_out, 32, "tk_%.12s", hash);
	json_t *t;
	int rc = csa_tokens_load(root, &t, err);
	if (rc) {
		free(tok);
		return rc;
	}
	json_array_append_new(json_object_get(t, "tokens"),
	                      json_pack("{s:s, s:s?, s:s, s:s, s:s}", "id", id_out, "name", name,
	                                "role", csa_role_name(role), "sha256", hash, "created",
	                                csa_ts_format(csa_now_ms(), ts)));
	rc = save(root, t, err);
	json_decref(t);
	if (rc) {
		free(tok);
		return rc;
	}
	*token = tok;
	return CSA_OK;
}

enum csa_role csa_token_check(const json_t *tokens, const char *presented, const char **id_out)
{
	if (!presented || strlen(presented) > 256)
		return CSA_ROLE_NONE;
	char hash[65];
	sha256_hex(presented, hash);
	enum csa_role found = CSA_ROLE_NONE;
	size_t i;
	json_t *t;
	/* every stored digest is compared, in constant time each */
	json_array_foreach(json_object_get(tokens, "tokens"), i, t)
	{
		const char *h = csa_json_str(t, "sha256");
		if (h && strlen(h) == 64 && CRYPTO_memcmp(h, hash, 64) == 0) {
			found = csa_role_parse(csa_json_str(t, "role"));
			if (id_out)
				*id_out = csa_json_str(t, "id");
		}
	}
	return found;
}

int csa_token_revoke(const char *root, const char *id, struct csa_err *err)
{
	json_t *t;
	int rc = csa_tokens_load(root, &t, err);
	if (rc)
		return rc;
	json_t *arr = json_object_get(t, "tokens");
	size_t i, before = json_array_size(arr);
	for (i = json_array_size(arr); i-- > 0;) {
		const char *tid = csa_json_str(json_array_get(arr, i), "id");
		if (tid && strcmp(tid, id) == 0)
			json_array_remove(arr, i);
	}
	if (json_array_size(arr) == before)
		rc = csa_error(err, CSA_ENOENT, "no token '%s'", id);
	else
		rc = save(root, t, err);
	json_decref(t);
	return rc;
}
