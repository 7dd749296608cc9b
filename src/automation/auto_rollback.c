/*
 * Rollback points: the configuration, the segment phases and the models
 * with their checksums, kept before a phase advances and restored on
 * request. Each document is read and written through its own interface
 * (the workspace's configuration, the controller's store, the workspace's
 * documents) and the point itself lives in the controller's store, so a
 * second backend of those keeps rollback working unchanged.
 */
#include "automation/auto_internal.h"
#include "automation/ledger.h"
#include "base/digest.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/online.h"
#include "flow/pipeline.h"
#include "store/blobs.h"
#include "store/learnlog.h"
#include "store/ws.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POINT_MAX_DOCS 40
#define CONFIG_DOC "csa.json"
#define PHASES_DOC "automation/state.json"

/* What a point may restore, and so what a manifest may name: a name
 * read back from the store that is none of these is refused. A model's
 * held-out measurement goes with it: it is the PHASE_1 gate's evidence. */
static int restorable(const char *name)
{
	if (strcmp(name, CONFIG_DOC) == 0 || strcmp(name, PHASES_DOC) == 0)
		return 1;
	size_t l = strlen(name);
	int model = l > 13 && strcmp(name + l - 6, ".model") == 0,
	    measure = l > 20 && strcmp(name + l - 13, ".heldout.json") == 0; /* dmodel.h */
	return strncmp(name, "models/", 7) == 0 && (model || measure) &&
	       csa_blobs_name_check(name, NULL) == CSA_OK;
}

/* An id (no slash) or a document name safe in a path: components of
 * [A-Za-z0-9._-] separated by single slashes, none starting with a dot. */
static int rel_ok(const char *rel, int slashes)
{
	int start = 1;
	size_t n = 0;
	for (const char *p = rel; *p; p++, n++) {
		if (*p == '/') {
			if (start || !slashes)
				return 0;
			start = 1;
			continue;
		}
		if ((start && *p == '.') ||
		    !(isalnum((unsigned char)*p) || *p == '.' || *p == '_' || *p == '-'))
			return 0;
		start = 0;
	}
	return n > 0 && n <= 200 && !start;
}

int auto_point_names_ok(const char *id, const char *name, struct csa_err *err)
{
	if (!id || !rel_ok(id, 0))
		return csa_error(err, CSA_EINVAL, "'%.80s' is not a rollback point id", id ? id : "");
	if (!name || !rel_ok(name, 1))
		return csa_error(err, CSA_EINVAL, "rollback point '%s': '%.80s' is not a document name",
		                 id, name ? name : "");
	return CSA_OK;
}

static void free_docs(struct auto_doc *docs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(docs[i].buf);
}

static int add_doc(struct auto_doc *docs, size_t *n, const char *name, char *buf, size_t len,
                   struct csa_err *err)
{
	if (*n == POINT_MAX_DOCS) {
		free(buf);
		return csa_error(err, CSA_ELIMIT, "a rollback point keeps at most %d documents",
		                 POINT_MAX_DOCS);
	}
	snprintf(docs[*n].name, sizeof(docs[*n].name), "%s", name);
	docs[*n].buf = buf;
	docs[(*n)++].len = len;
	return CSA_OK;
}

/* The documents in effect: configuration, segment phases, models. */
static int current_docs(struct csa_auto *a, struct auto_doc *docs, size_t *n,
                        struct csa_err *err)
{
	char *buf;
	size_t len;
	int rc = csa_ws_config_document(a->ws, &buf, &len, err);
	if (rc || (rc = add_doc(docs, n, CONFIG_DOC, buf, len, err)))
		return rc;
	if ((rc = csa_json_dump(a->state, 1, &buf, &len, err)) ||
	    (rc = add_doc(docs, n, PHASES_DOC, buf, len, err)))
		return rc;
	json_t *models;
	if ((rc = csa_blobs_list(a->ws->blobs, "models", &models, err)))
		return rc;
	size_t i;
	json_t *file;
	json_array_foreach(models, i, file)
	{
		char name[96];
		snprintf(name, sizeof(name), "models/%s", json_string_value(file));
		if (!restorable(name))
			continue; /* the LLM calibration and files of other kinds */
		rc = csa_blobs_get(a->ws->blobs, name, (size_t)1 << 31, &buf, &len, err);
		if (rc == CSA_ENOENT) { /* removed since the listing */
			rc = CSA_OK;
			continue;
		}
		if (rc || (rc = add_doc(docs, n, name, buf, len, err)))
			break;
	}
	json_decref(models);
	return rc;
}

int auto_make_point(struct csa_auto *a, const char *reason, const char *who, char id[64],
                    struct csa_err *err)
{
	char ts[CSA_TS_LEN];
	int64_t now = csa_now_ms();
	csa_ts_format(now, ts);
	snprintf(id, 64, "rp-%lld-P%d", (long long)now, auto_workspace_phase(a));
	struct auto_doc docs[POINT_MAX_DOCS];
	size_t n = 0;
	int rc = current_docs(a, docs, &n, err);
	json_t *files = json_object();
	for (size_t i = 0; i < n && rc == CSA_OK; i++) {
		char sha[CSA_SHA256_HEX_LEN];
		if (csa_sha256_hex(docs[i].buf, docs[i].len, sha) != CSA_OK)
			rc = csa_error(err, CSA_EIO, "cannot compute the checksum of '%s'",
			               docs[i].name);
		else
			json_object_set_new(files, docs[i].name, json_string(sha));
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
	if (rc == CSA_OK && (rc = a->ops->save_point(a->store, man, docs, n, err)) == CSA_OK) {
		json_object_del(man, "metrics");
		auto_audit(a, "rollback_point", NULL, man);
	}
	json_decref(man);
	free_docs(docs, n);
	return rc;
}

int csa_auto_rollback_points(struct csa_auto *a, json_t **out, struct csa_err *err)
{
	pthread_mutex_lock(&a->mu);
	int rc = a->ops->list_points(a->store, out, err);
	pthread_mutex_unlock(&a->mu);
	if (rc == CSA_OK) {
		size_t i;
		json_t *m;
		json_array_foreach(*out, i, m)
		{
			json_object_del(m, "metrics");
		}
	}
	return rc;
}

/* The point 'want' names, or the newest (ids grow with time). */
static json_t *pick_point(json_t *points, const char *want)
{
	json_t *pick = NULL, *p;
	size_t i;
	json_array_foreach(points, i, p)
	{
		const char *id = csa_json_str(p, "id");
		if (want ? strcmp(id, want) == 0 : !pick || strcmp(id, csa_json_str(pick, "id")) > 0)
			pick = p;
	}
	return pick;
}

/* Every document of point 'id' its manifest lists, each checked against
 * its checksum: a damaged point is refused before anything changes. */
static int point_docs(struct csa_auto *a, const char *id, json_t *files, struct auto_doc *docs,
                      size_t *n, struct csa_err *err)
{
	const char *name;
	json_t *sha;
	int rc = CSA_OK;
	json_object_foreach(files, name, sha)
	{
		if (!restorable(name))
			return csa_error(err, CSA_ECORRUPT,
			                 "rollback point '%s' lists '%.80s', which no point restores", id,
			                 name);
		char *buf, got[CSA_SHA256_HEX_LEN];
		size_t len;
		if ((rc = a->ops->point_doc(a->store, id, name, &buf, &len, err)) ||
		    (rc = add_doc(docs, n, name, buf, len, err)))
			return rc;
		/* a checksum that cannot be computed ("") matches nothing */
		csa_sha256_hex(buf, len, got);
		if (!json_is_string(sha) || strcmp(got, json_string_value(sha)) != 0)
			return csa_error(err, CSA_ECORRUPT,
			                 "rollback point '%s': '%s' does not match its checksum", id,
			                 name);
	}
	return rc;
}

/* Put the point's documents in effect: the configuration first (it is
 * validated, and refused whole), then the phases, then the models. */
static int restore_docs(struct csa_auto *a, struct auto_doc *docs, size_t n, struct csa_err *err)
{
	json_t *phases = NULL;
	int rc = CSA_OK;
	for (size_t i = 0; i < n && rc == CSA_OK; i++)
		if (strcmp(docs[i].name, PHASES_DOC) == 0)
			rc = csa_json_parse(docs[i].buf, docs[i].len, PHASES_DOC, &phases, err);
	for (size_t i = 0; i < n && rc == CSA_OK; i++)
		if (strcmp(docs[i].name, CONFIG_DOC) == 0)
			rc = csa_ws_config_replace(a->ws, docs[i].buf, docs[i].len, err);
	if (rc == CSA_OK && phases) {
		/* caps are a person's policy: a rollback leaves them as they are */
		auto_refresh_caps(a);
		json_t *caps = json_object_get(a->state, "caps");
		if (caps)
			json_object_set(phases, "caps", caps);
		else
			json_object_del(phases, "caps");
		json_decref(a->state);
		a->state = json_incref(phases);
		rc = auto_write_state(a, err);
	}
	/* A restored model is the model as it was: nothing the online-learning
	 * log holds goes on top of it (flow/online.h), on any node. The
	 * position is read before the models go back: a correction taught
	 * meanwhile is newer than the rollback and applied. */
	int64_t head = -1;
	if (rc == CSA_OK && a->ws->learnlog)
		rc = csa_learnlog_head(a->ws->learnlog, &head, err);
	for (size_t i = 0; i < n && rc == CSA_OK; i++)
		if (strncmp(docs[i].name, "models/", 7) == 0) {
			rc = csa_blobs_put(a->ws->blobs, docs[i].name, docs[i].buf, docs[i].len, err);
			for (int t = 0; rc == CSA_OK && head >= 0 && t < CSA_DT_COUNT; t++) {
				char model[64];
				snprintf(model, sizeof(model), "models/%s.model",
				         csa_dtype_name((enum csa_dtype)t));
				if (strcmp(docs[i].name, model) == 0)
					rc = csa_online_mark_saved(a->ws->blobs, a->ws->learnlog,
					                           (enum csa_dtype)t, head, err);
			}
		}
	json_decref(phases);
	a->nthr = 0;
	if (rc == CSA_OK)
		rc = csa_pipeline_reload_models(a->pipe, err);
	return rc;
}

int csa_auto_phase_rollback(struct csa_auto *a, const char *point, const char *who, json_t **out,
                            struct csa_err *err)
{
	json_t *points;
	int rc = csa_auto_rollback_points(a, &points, err);
	if (rc)
		return rc;
	json_t *pick = pick_point(points, point);
	if (!pick) {
		rc = csa_error(err, CSA_ENOENT,
		               point ? "no rollback point '%s'" : "no rollback point%s",
		               point ? point : "");
		json_decref(points);
		return rc;
	}
	const char *id = csa_json_str(pick, "id");
	struct auto_doc docs[POINT_MAX_DOCS];
	size_t n = 0;
	pthread_mutex_lock(&a->mu);
	rc = point_docs(a, id, json_object_get(pick, "files"), docs, &n, err);
	if (rc == CSA_OK)
		rc = restore_docs(a, docs, n, err);
	if (rc == CSA_OK) {
		json_t *rec = json_pack("{s:s, s:s, s:s?}", "rollback_point", id, "phase",
		                        csa_json_str(auto_cfg(a)->root, "phase"), "by", who);
		auto_audit(a, "rollback", NULL, rec);
		*out = rec;
	}
	pthread_mutex_unlock(&a->mu);
	free_docs(docs, n);
	json_decref(points);
	return rc;
}
