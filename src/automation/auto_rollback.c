/*
 * Rollback points: copies of the configuration, the segment phases and the
 * models with their checksums, made before a phase advances and restored
 * on request.
 */
#include "automation/auto_internal.h"
#include "automation/ledger.h"
#include "base/digest.h"
#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/pipeline.h"
#include "store/ws.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- rollback points ----------------------------------------------------- */

static int copy_file(const char *from, const char *to, char sha[CSA_SHA256_HEX_LEN],
                     struct csa_err *err)
{
	char *buf;
	size_t len;
	int rc = csa_fs_read_all(from, (size_t)1 << 31, &buf, &len, err);
	if (rc)
		return rc;
	if (sha && csa_sha256_hex(buf, len, sha) != CSA_OK) {
		free(buf);
		return csa_error(err, CSA_EIO, "cannot compute the checksum of '%s'", from);
	}
	rc = csa_fs_write_atomic(to, buf, len, err);
	free(buf);
	return rc;
}

/* Files a rollback point keeps: configuration, segment phases, models. */
static int point_files(struct csa_auto *a, char names[][64], size_t max)
{
	size_t n = 0;
	snprintf(names[n++], 64, "csa.json");
	snprintf(names[n++], 64, "automation/state.json");
	char dir[PATH_SZ];
	csa_ws_path(a->ws, "models", dir, sizeof(dir));
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)) && n < max) {
		size_t l = strlen(de->d_name);
		if (l > 6 && strcmp(de->d_name + l - 6, ".model") == 0 && l < 50)
			snprintf(names[n++], 64, "models/%s", de->d_name);
	}
	if (d)
		closedir(d);
	return (int)n;
}

int auto_make_point(struct csa_auto *a, const char *reason, const char *who, char id[64],
                    struct csa_err *err)
{
	char ts[CSA_TS_LEN];
	int64_t now = csa_now_ms();
	csa_ts_format(now, ts);
	snprintf(id, 64, "rp-%lld-P%d", (long long)now, auto_workspace_phase(a));
	char dir[PATH_SZ], rel[PATH_SZ], from[PATH_SZ], to[PATH_SZ];
	snprintf(rel, sizeof(rel), "rollback/%s/models", id);
	csa_ws_path(a->ws, rel, dir, sizeof(dir));
	int rc = csa_fs_mkdirs(dir, err);
	if (rc)
		return rc;
	snprintf(rel, sizeof(rel), "rollback/%s/automation", id);
	csa_ws_path(a->ws, rel, dir, sizeof(dir));
	if ((rc = csa_fs_mkdirs(dir, err)))
		return rc;
	/* the point copies the state file: it must hold what is in effect */
	if ((rc = auto_save_state(a, err)))
		return rc;
	char names[40][64];
	int n = point_files(a, names, 40);
	json_t *files = json_object();
	for (int i = 0; i < n && rc == CSA_OK; i++) {
		char sha[CSA_SHA256_HEX_LEN];
		csa_ws_path(a->ws, names[i], from, sizeof(from));
		snprintf(rel, sizeof(rel), "rollback/%s/%s", id, names[i]);
		csa_ws_path(a->ws, rel, to, sizeof(to));
		rc = copy_file(from, to, sha, err);
		if (rc == CSA_ENOENT) {
			rc = CSA_OK; /* nothing of that kind yet */
			continue;
		}
		json_object_set_new(files, names[i], json_string(sha));
	}
	json_t *metrics = NULL;
	if (rc == CSA_OK) {
		pthread_mutex_unlock(&a->mu);
		csa_auto_metrics(a, &metrics, NULL);
		pthread_mutex_lock(&a->mu);
	}
	json_t *man = json_pack("{s:s, s:s, s:i, s:s, s:s?, s:o, s:o}", "id", id, "created", ts,
	                        "phase", auto_workspace_phase(a), "reason", reason, "by", who,
	                        "files", files, "metrics", metrics ? metrics : json_null());
	if (rc == CSA_OK) {
		char *s;
		size_t len;
		snprintf(rel, sizeof(rel), "rollback/%s/manifest.json", id);
		csa_ws_path(a->ws, rel, to, sizeof(to));
		if ((rc = csa_json_dump(man, 1, &s, &len, err)) == CSA_OK) {
			rc = csa_fs_write_atomic(to, s, len, err);
			free(s);
		}
	}
	if (rc == CSA_OK) {
		json_object_del(man, "metrics");
		csa_ledger_append(a->ledger, "rollback_point", NULL, man, NULL, NULL);
	}
	json_decref(man);
	return rc;
}

int csa_auto_rollback_points(struct csa_auto *a, json_t **out, struct csa_err *err)
{
	char dir[PATH_SZ];
	csa_ws_path(a->ws, "rollback", dir, sizeof(dir));
	json_t *arr = json_array();
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char path[PATH_SZ + 300];
		snprintf(path, sizeof(path), "%s/%s/manifest.json", dir, de->d_name);
		json_t *m;
		if (csa_json_load_file(path, 1 << 22, &m, NULL) == CSA_OK) {
			json_object_del(m, "metrics");
			json_array_append_new(arr, m);
		}
	}
	if (d)
		closedir(d);
	(void)err;
	*out = arr;
	return CSA_OK;
}

int csa_auto_phase_rollback(struct csa_auto *a, const char *point, const char *who, json_t **out,
                            struct csa_err *err)
{
	json_t *points;
	csa_auto_rollback_points(a, &points, err);
	json_t *pick = NULL;
	size_t i;
	json_t *p;
	json_array_foreach(points, i, p)
	{
		const char *id = csa_json_str(p, "id");
		if (point ? strcmp(id, point) == 0
		          : !pick || strcmp(id, csa_json_str(pick, "id")) > 0)
			pick = p;
	}
	int rc = CSA_OK;
	if (!pick) {
		rc = csa_error(err, CSA_ENOENT,
		               point ? "no rollback point '%s'" : "no rollback point%s",
		               point ? point : "");
		json_decref(points);
		return rc;
	}
	const char *id = csa_json_str(pick, "id");
	pthread_mutex_lock(&a->mu);
	/* verify every file first: a damaged point is refused, nothing changes */
	const char *name;
	json_t *sha;
	char from[PATH_SZ], rel[PATH_SZ];
	json_object_foreach(json_object_get(pick, "files"), name, sha)
	{
		char got[CSA_SHA256_HEX_LEN];
		snprintf(rel, sizeof(rel), "rollback/%s/%s", id, name);
		csa_ws_path(a->ws, rel, from, sizeof(from));
		char *buf;
		size_t len;
		if ((rc = csa_fs_read_all(from, (size_t)1 << 31, &buf, &len, err)))
			goto out;
		/* a checksum that cannot be computed ("") matches nothing */
		csa_sha256_hex(buf, len, got);
		free(buf);
		if (strcmp(got, json_string_value(sha)) != 0) {
			rc = csa_error(err, CSA_ECORRUPT,
			               "rollback point '%s': '%s' does not match its checksum", id,
			               name);
			goto out;
		}
	}
	json_object_foreach(json_object_get(pick, "files"), name, sha)
	{
		char to[PATH_SZ];
		snprintf(rel, sizeof(rel), "rollback/%s/%s", id, name);
		csa_ws_path(a->ws, rel, from, sizeof(from));
		csa_ws_path(a->ws, name, to, sizeof(to));
		if ((rc = copy_file(from, to, NULL, err)))
			goto out;
	}
	/* reload what was restored */
	if ((rc = csa_ws_config_reload(a->ws, err)))
		goto out;
	json_t *st;
	if (a->ops->load_phases(a->store, &st, NULL) == CSA_OK) {
		json_decref(a->state);
		a->state = st;
	}
	a->nthr = 0;
	if ((rc = csa_pipeline_reload_models(a->pipe, err)))
		goto out;
	json_t *rec = json_pack("{s:s, s:s, s:s?}", "rollback_point", id, "phase",
	                        csa_json_str(auto_cfg(a)->root, "phase"), "by", who);
	csa_ledger_append(a->ledger, "rollback", NULL, rec, NULL, NULL);
	*out = rec;
out:
	pthread_mutex_unlock(&a->mu);
	json_decref(points);
	return rc;
}
