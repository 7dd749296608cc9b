/*
 * API tokens kept in <ws>/tokens.json, the first implementation of
 * tokens.h: {"tokens": [{"id", "name", "role", "sha256", "created"}]},
 * written atomically. A check reads the parsed file kept in memory and
 * parses it again when its identity (inode, size, modification time)
 * changed, so `csa token create` while the server runs takes effect at the
 * next request and no request reads the file.
 */
#include "server/tokens.h"
#include "base/digest.h"
#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"
#include "store/ws.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

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
	return r >= CSA_ROLE_NONE && r <= CSA_ROLE_ADMIN ? n[r] : "none";
}

struct file_tokens {
	struct csa_tokens base;
	char path[4096];
	pthread_mutex_t mu; /* doc and its identity */
	json_t *doc;        /* the parsed file, NULL before the first read */
	int64_t ident[4];   /* inode, size, mtime s, mtime ns; all -1: absent */
};

/* Read the file into a new {"tokens": [...]} (no file: no tokens). */
static int file_read(const char *path, json_t **out, struct csa_err *err)
{
	int rc = csa_json_load_file(path, 1 << 20, out, err);
	if (rc == CSA_ENOENT) {
		*out = json_pack("{s:[]}", "tokens");
		return *out ? CSA_OK
		            : csa_error(err, CSA_ENOMEM, "out of memory reading '%s'", path);
	}
	if (rc == CSA_OK && !json_is_array(json_object_get(*out, "tokens"))) {
		json_decref(*out);
		*out = NULL;
		return csa_error(err, CSA_ESCHEMA, "'%s': expected {\"tokens\": [...]}", path);
	}
	return rc;
}

static int file_write(const char *path, const json_t *doc, struct csa_err *err)
{
	char *s;
	size_t n;
	int rc = csa_json_dump(doc, 1, &s, &n, err);
	if (rc)
		return rc;
	rc = csa_fs_write_atomic(path, s, n, err);
	free(s);
	return rc;
}

/* Bring ft->doc up to date with the file; called with ft->mu held. */
static int refresh(struct file_tokens *ft, struct csa_err *err)
{
	struct stat st;
	int64_t id[4] = {-1, -1, -1, -1};
	if (stat(ft->path, &st) == 0) {
		id[0] = (int64_t)st.st_ino;
		id[1] = (int64_t)st.st_size;
		id[2] = (int64_t)st.st_mtim.tv_sec;
		id[3] = (int64_t)st.st_mtim.tv_nsec;
	} else if (errno != ENOENT) {
		return csa_error_sys(err, "cannot stat '%s'", ft->path);
	}
	if (ft->doc && memcmp(id, ft->ident, sizeof(id)) == 0)
		return CSA_OK;
	json_t *doc;
	int rc = file_read(ft->path, &doc, err);
	if (rc)
		return rc;
	json_decref(ft->doc);
	ft->doc = doc;
	memcpy(ft->ident, id, sizeof(id));
	return CSA_OK;
}

int csa_token_mint(enum csa_role role, char **token, char hash[CSA_SHA256_HEX_LEN],
                   char id[CSA_TOKEN_ID_LEN], struct csa_err *err)
{
	if (role != CSA_ROLE_VIEWER && role != CSA_ROLE_AGENT && role != CSA_ROLE_ADMIN)
		return csa_error(err, CSA_EINVAL, "role must be viewer, agent or admin");
	unsigned char rnd[32];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return csa_error_sys(err, "cannot get random bytes for a token");
	char *tok = malloc(4 + 64 + 1);
	if (!tok)
		return csa_error(err, CSA_ENOMEM, "out of memory creating a token");
	memcpy(tok, "csa_", 4);
	for (int i = 0; i < 32; i++)
		snprintf(tok + 4 + 2 * i, 3, "%02x", rnd[i]);
	if (csa_sha256_hex(tok, strlen(tok), hash)) {
		free(tok);
		return csa_error(err, CSA_EIO, "cannot hash a new token (OpenSSL SHA-256 failed)");
	}
	snprintf(id, CSA_TOKEN_ID_LEN, "tk_%.12s", hash);
	*token = tok;
	return CSA_OK;
}

int csa_token_digest(const char *presented, char hash[CSA_SHA256_HEX_LEN], struct csa_err *err)
{
	if (!presented || strlen(presented) > 256)
		return csa_error(err, CSA_EAUTH, "no token, or one longer than 256 characters");
	if (csa_sha256_hex(presented, strlen(presented), hash))
		return csa_error(err, CSA_EIO,
		                 "cannot hash the presented token (OpenSSL SHA-256 "
		                 "failed)");
	return CSA_OK;
}

static int file_create(struct csa_tokens *t, enum csa_role role, const char *name, char **token,
                       char id_out[CSA_TOKEN_ID_LEN], struct csa_err *err)
{
	struct file_tokens *ft = (struct file_tokens *)t;
	char *tok, hash[CSA_SHA256_HEX_LEN], ts[CSA_TS_LEN], id[CSA_TOKEN_ID_LEN];
	int rc = csa_token_mint(role, &tok, hash, id, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&ft->mu);
	/* read afresh: another process may have added tokens */
	json_t *doc;
	rc = file_read(ft->path, &doc, err);
	if (rc == CSA_OK) {
		json_t *entry = json_pack("{s:s, s:s?, s:s, s:s, s:s}", "id", id, "name", name,
		                          "role", csa_role_name(role), "sha256", hash, "created",
		                          csa_ts_format(csa_now_ms(), ts));
		if (!entry || json_array_append_new(json_object_get(doc, "tokens"), entry))
			rc = csa_error(err, CSA_EINVAL,
			               "cannot add the token to '%s' (is the name valid UTF-8?)",
			               ft->path);
		else
			rc = file_write(ft->path, doc, err);
		json_decref(doc);
	}
	pthread_mutex_unlock(&ft->mu);
	if (rc) {
		free(tok);
		return rc;
	}
	snprintf(id_out, CSA_TOKEN_ID_LEN, "%s", id);
	*token = tok;
	return CSA_OK;
}

static int file_check(struct csa_tokens *t, const char *presented, enum csa_role *role,
                      char id_out[CSA_TOKEN_ID_LEN], struct csa_err *err)
{
	struct file_tokens *ft = (struct file_tokens *)t;
	*role = CSA_ROLE_NONE;
	id_out[0] = '\0';
	char hash[CSA_SHA256_HEX_LEN];
	int rc = csa_token_digest(presented, hash, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&ft->mu);
	rc = refresh(ft, err);
	if (rc == CSA_OK) {
		size_t i;
		json_t *e;
		/* every stored digest is compared, in constant time each */
		json_array_foreach(json_object_get(ft->doc, "tokens"), i, e)
		{
			const char *h = csa_json_str(e, "sha256");
			if (h && strlen(h) == 64 && CRYPTO_memcmp(h, hash, 64) == 0) {
				*role = csa_role_parse(csa_json_str(e, "role"));
				snprintf(id_out, CSA_TOKEN_ID_LEN, "%s",
				         csa_json_str(e, "id") ? csa_json_str(e, "id") : "");
			}
		}
		if (*role == CSA_ROLE_NONE)
			rc = csa_error(err, CSA_EAUTH, "unknown or revoked token");
	}
	pthread_mutex_unlock(&ft->mu);
	return rc;
}

static int file_list(struct csa_tokens *t, json_t **out, struct csa_err *err)
{
	struct file_tokens *ft = (struct file_tokens *)t;
	json_t *doc;
	int rc = file_read(ft->path, &doc, err);
	if (rc)
		return rc;
	json_t *arr = json_array();
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(doc, "tokens"), i, e)
	{
		json_t *row =
		    json_pack("{s:O?, s:O?, s:O?, s:O?}", "id", json_object_get(e, "id"), "name",
		              json_object_get(e, "name"), "role", json_object_get(e, "role"),
		              "created", json_object_get(e, "created"));
		if (!arr || !row || json_array_append_new(arr, row)) {
			json_decref(arr);
			json_decref(doc);
			return csa_error(err, CSA_ENOMEM, "out of memory listing '%s'", ft->path);
		}
	}
	json_decref(doc);
	*out = arr;
	return CSA_OK;
}

static int file_revoke(struct csa_tokens *t, const char *id, struct csa_err *err)
{
	struct file_tokens *ft = (struct file_tokens *)t;
	pthread_mutex_lock(&ft->mu);
	json_t *doc;
	int rc = file_read(ft->path, &doc, err);
	if (rc == CSA_OK) {
		json_t *arr = json_object_get(doc, "tokens");
		size_t before = json_array_size(arr);
		for (size_t i = json_array_size(arr); i-- > 0;) {
			const char *tid = csa_json_str(json_array_get(arr, i), "id");
			if (tid && strcmp(tid, id) == 0)
				json_array_remove(arr, i);
		}
		if (json_array_size(arr) == before)
			rc = csa_error(err, CSA_ENOENT, "no token '%s' in '%s'", id, ft->path);
		else
			rc = file_write(ft->path, doc, err);
		json_decref(doc);
	}
	pthread_mutex_unlock(&ft->mu);
	return rc;
}

static void file_close(struct csa_tokens *t)
{
	struct file_tokens *ft = (struct file_tokens *)t;
	json_decref(ft->doc);
	pthread_mutex_destroy(&ft->mu);
	free(ft);
}

static const struct csa_tokens_ops file_ops = {
    .name = "tokens.json",
    .create = file_create,
    .check = file_check,
    .list = file_list,
    .revoke = file_revoke,
    .close = file_close,
};

int csa_tokens_open(const char *ws_root, struct csa_tokens **out, struct csa_err *err)
{
	struct file_tokens *ft = calloc(1, sizeof(*ft));
	if (!ft)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the tokens");
	int n = snprintf(ft->path, sizeof(ft->path), "%s/tokens.json", ws_root);
	if (n < 0 || (size_t)n >= sizeof(ft->path)) {
		free(ft);
		return csa_error(err, CSA_EINVAL, "workspace path '%.100s...' is too long",
		                 ws_root);
	}
	ft->base.ops = &file_ops;
	pthread_mutex_init(&ft->mu, NULL);
	*out = &ft->base;
	return CSA_OK;
}

int csa_tokens_open_ws(struct csa_ws *ws, struct csa_tokens **out, struct csa_err *err)
{
	if (ws->pg)
		return csa_tokens_pg_open(ws->pg, out, err);
	return csa_tokens_open(ws->root, out, err);
}

int csa_token_create(const char *ws_root, enum csa_role role, const char *name, char **token,
                     char id_out[CSA_TOKEN_ID_LEN], struct csa_err *err)
{
	struct csa_tokens *t = NULL;
	int rc = csa_tokens_open(ws_root, &t, err);
	if (rc == CSA_OK)
		rc = csa_tokens_create(t, role, name, token, id_out, err);
	csa_tokens_close(t);
	return rc;
}

int csa_tokens_load(const char *ws_root, json_t **out, struct csa_err *err)
{
	struct csa_tokens *t = NULL;
	json_t *list = NULL;
	int rc = csa_tokens_open(ws_root, &t, err);
	if (rc == CSA_OK)
		rc = csa_tokens_list(t, &list, err);
	csa_tokens_close(t);
	if (rc)
		return rc;
	*out = json_pack("{s:o}", "tokens", list);
	return *out ? CSA_OK : csa_error(err, CSA_ENOMEM, "out of memory listing tokens");
}

int csa_token_revoke(const char *ws_root, const char *id, struct csa_err *err)
{
	struct csa_tokens *t = NULL;
	int rc = csa_tokens_open(ws_root, &t, err);
	if (rc == CSA_OK)
		rc = csa_tokens_revoke(t, id, err);
	csa_tokens_close(t);
	return rc;
}
