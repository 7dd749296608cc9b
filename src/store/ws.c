/* Workspace creation and opening. */
#include "store/ws.h"
#include "store/mesh.h"
#include "base/fsops.h"
#include "base/json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const layout[] = {"Tickets/T_ext", "Tickets/T_int", "Tickets/tickets",
                                     "audit",         "models",        "kb",
                                     ".csa",          ".csa/tmp"};

int csa_ws_init(const char *dir, struct csa_err *err)
{
	char path[4096];
	int rc = csa_fs_mkdirs(dir, err);
	if (rc)
		return rc;
	/* private even when it existed before, as PostgreSQL's initdb makes its
	 * data directory (`csa verify` reports looser modes later) */
	if (chmod(dir, CSA_DIR_MODE) != 0)
		return csa_error_sys(err, "cannot make '%s' private (mode 0700)", dir);
	for (size_t i = 0; i < sizeof(layout) / sizeof(layout[0]); i++) {
		if (snprintf(path, sizeof(path), "%s/%s", dir, layout[i]) >= (int)sizeof(path))
			return csa_error(err, CSA_ELIMIT, "workspace path too long: '%s'", dir);
		if ((rc = csa_fs_mkdirs(path, err)))
			return rc;
	}
	snprintf(path, sizeof(path), "%s/csa.json", dir);
	struct stat st;
	if (stat(path, &st) == 0)
		return CSA_OK;
	/* a new workspace starts with the default knowledge base, written by
	 * the layer that knows it (csa_kb_seed) */
	snprintf(path, sizeof(path), "%s/%s", dir, CSA_WS_KB_SEED);
	if ((rc = csa_fs_write_atomic(path, "", 0, err)))
		return rc;
	snprintf(path, sizeof(path), "%s/csa.json", dir);
	json_t *cfg = csa_config_defaults();
	char *text;
	size_t len;
	rc = csa_json_dump(cfg, 1, &text, &len, err);
	json_decref(cfg);
	if (rc)
		return rc;
	rc = csa_fs_write_atomic(path, text, len, err);
	free(text);
	return rc;
}

int csa_ws_path(const struct csa_ws *ws, const char *rel, char *out, size_t outsz)
{
	int n = snprintf(out, outsz, "%s/%s", ws->root, rel);
	return n < 0 || (size_t)n >= outsz ? CSA_ELIMIT : CSA_OK;
}

int csa_ws_open(const char *dir, struct csa_ws **out, struct csa_err *err)
{
	char path[4096];
	if (snprintf(path, sizeof(path), "%s/csa.json", dir) >= (int)sizeof(path))
		return csa_error(err, CSA_ELIMIT, "workspace path too long: '%s'", dir);
	struct stat st;
	if (stat(path, &st) != 0)
		return csa_error(err, CSA_ENOENT,
		                 "'%s' is not a csa workspace (no csa.json; run 'csa init %s')",
		                 dir, dir);
	struct csa_ws *ws = calloc(1, sizeof(*ws));
	if (!ws || !(ws->root = strdup(dir))) {
		free(ws);
		return csa_error(err, CSA_ENOMEM, "out of memory opening workspace");
	}
	int rc = csa_config_load(path, &ws->cfg, err);
	if (rc) {
		free(ws->root);
		free(ws);
		return rc;
	}
	/* Layout directories added by newer versions appear on open. */
	for (size_t i = 0; i < sizeof(layout) / sizeof(layout[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, layout[i]);
		if ((rc = csa_fs_mkdirs(path, err)))
			goto fail;
	}
	if ((rc = csa_mesh_open(ws, &ws->store, err)))
		goto fail;
	*out = ws;
	return CSA_OK;
fail:
	csa_config_release(&ws->cfg);
	free(ws->root);
	free(ws);
	return rc;
}

void csa_ws_close(struct csa_ws *ws)
{
	if (!ws)
		return;
	if (ws->store)
		csa_store_close(ws->store);
	csa_config_release(&ws->cfg);
	free(ws->root);
	free(ws);
}
