/* Workspace creation and opening. */
#include "store/ws.h"
#include "store/blobs.h"
#include "store/learnlog.h"
#include "store/memstore.h"
#include "store/mesh.h"
#include "store/pg.h"
#include "store/store_pg.h"
#include "base/fsops.h"
#include "base/json.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const layout[] = {"Tickets/T_ext", "Tickets/T_int", "Tickets/tickets",
                                     "audit",         "models",        "kb",
                                     ".csa",          ".csa/tmp",      ".csa/pool"};

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

/* A published configuration and its readers' count. The config is the
 * first member, so csa_config_unref() finds its snapshot from it. */
struct csa_ws_cfg {
	struct csa_config cfg;
	atomic_int refs;
};

static void snap_put(struct csa_ws_cfg *s)
{
	if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
		csa_config_release(&s->cfg);
		free(s);
	}
}

const struct csa_config *csa_ws_config(struct csa_ws *ws)
{
	pthread_mutex_lock(&ws->cfg_mu);
	struct csa_ws_cfg *s = ws->cfg_now;
	atomic_fetch_add(&s->refs, 1);
	pthread_mutex_unlock(&ws->cfg_mu);
	return &s->cfg;
}

void csa_config_unref(const struct csa_config *cfg)
{
	if (cfg)
		snap_put((struct csa_ws_cfg *)(void *)(uintptr_t)cfg);
}

/* Publish 'value' (its root is taken over) as the configuration in effect. */
static int publish(struct csa_ws *ws, struct csa_config *value, struct csa_err *err)
{
	struct csa_ws_cfg *s = calloc(1, sizeof(*s));
	if (!s) {
		csa_config_release(value);
		return csa_error(err, CSA_ENOMEM,
		                 "out of memory publishing the configuration of '%s'", ws->root);
	}
	s->cfg = *value;
	atomic_init(&s->refs, 1);
	pthread_mutex_lock(&ws->cfg_mu);
	struct csa_ws_cfg *old = ws->cfg_now;
	ws->cfg_now = s;
	pthread_mutex_unlock(&ws->cfg_mu);
	snap_put(old);
	return CSA_OK;
}

static int phase_of(const struct csa_config *cfg)
{
	/* validated as PHASE_1 .. PHASE_5 by csa_config_load() */
	return json_string_value(json_object_get(cfg->root, "phase"))[6] - '0';
}

static void cap_phase(struct csa_config *cfg, int cap)
{
	if (cap && phase_of(cfg) > cap) {
		char ph[8];
		snprintf(ph, sizeof(ph), "PHASE_%d", cap);
		json_object_set_new(cfg->root, "phase", json_string(ph));
	}
}

/*
 * Where the configuration document is. On a single host: csa.json. With
 * the tickets in PostgreSQL, the document every node shares is the
 * database's "config/csa.json" (store/blobs.h) once it has one (`csa
 * init`, csa_ws_config_share, or the first change of configuration on
 * any node puts it there): a phase change, a rollback or an edit on one
 * node reaches the others (csa_ws_config_refresh). The workspace's
 * csa.json file says where the database is (store.url) and is the
 * configuration while the database has none.
 */
#define CONFIG_BLOB "config/csa.json"
static int config_in_db(const struct csa_ws *ws)
{
	return ws->pg && ws->blobs;
}

/* The configuration document's bytes ('what' names it for messages) and,
 * from the database, its version. The caller holds cfg_write_mu. */
static int config_read(struct csa_ws *ws, char **buf, size_t *len, uint64_t *version, char *what,
                       size_t whatsz, struct csa_err *err)
{
	if (config_in_db(ws) && (*version = csa_blobs_version(ws->blobs, CONFIG_BLOB))) {
		snprintf(what, whatsz, "the configuration in the database (%s)", CONFIG_BLOB);
		return csa_blobs_get(ws->blobs, CONFIG_BLOB, 1 << 20, buf, len, err);
	}
	char path[4096];
	if (csa_ws_path(ws, "csa.json", path, sizeof(path)))
		return csa_error(err, CSA_ELIMIT, "workspace path too long: '%s'", ws->root);
	*version = 0;
	snprintf(what, whatsz, "'%s'", path);
	return csa_fs_read_all(path, 1 << 20, buf, len, err);
}

static int config_write(struct csa_ws *ws, const char *buf, size_t len, struct csa_err *err)
{
	if (config_in_db(ws)) /* the first change shares the configuration */
		return csa_blobs_put(ws->blobs, CONFIG_BLOB, buf, len, err);
	char path[4096];
	if (csa_ws_path(ws, "csa.json", path, sizeof(path)))
		return csa_error(err, CSA_ELIMIT, "workspace path too long: '%s'", ws->root);
	return csa_fs_write_atomic(path, buf, len, err);
}

/* The configuration document parsed (*doc a new reference), 'what' names
 * it. The caller holds cfg_write_mu. */
static int config_doc(struct csa_ws *ws, json_t **doc, uint64_t *version, char *what,
                      size_t whatsz, struct csa_err *err)
{
	char *buf = NULL;
	size_t len;
	*doc = NULL;
	int rc = config_read(ws, &buf, &len, version, what, whatsz, err);
	if (rc == CSA_OK)
		rc = csa_json_parse(buf, len, what, doc, err);
	free(buf);
	return rc;
}

/* The configuration document, this process's overrides and phase cap:
 * the configuration a reload publishes. The caller holds cfg_write_mu. */
static int build(struct csa_ws *ws, struct csa_config *out, struct csa_err *err)
{
	char what[4200];
	uint64_t version;
	json_t *doc;
	int rc = config_doc(ws, &doc, &version, what, sizeof(what), err);
	memset(out, 0, sizeof(*out));
	if (rc == CSA_OK && !(out->root = csa_config_defaults()))
		rc = csa_error(err, CSA_ENOMEM, "out of memory reading %s", what);
	if (rc == CSA_OK)
		rc = csa_config_merge(out, doc, what, err);
	json_decref(doc);
	if (rc == CSA_OK && ws->cfg_over)
		rc = csa_config_merge(out, ws->cfg_over, "configuration overrides", err);
	if (rc) {
		csa_config_release(out);
		return rc;
	}
	cap_phase(out, ws->phase_cap);
	ws->cfg_version = version;
	return CSA_OK;
}

int csa_ws_config_share(struct csa_ws *ws, struct csa_err *err)
{
	if (!config_in_db(ws))
		return CSA_OK;
	pthread_mutex_lock(&ws->cfg_write_mu);
	int rc = CSA_OK;
	if (csa_blobs_version(ws->blobs, CONFIG_BLOB) == 0) {
		char path[4096], *text = NULL;
		size_t len;
		json_t *file = NULL;
		if (csa_ws_path(ws, "csa.json", path, sizeof(path)))
			rc = csa_error(err, CSA_ELIMIT, "workspace path too long: '%s'", ws->root);
		if (rc == CSA_OK)
			rc = csa_json_load_file(path, 1 << 20, &file, err);
		/* store.url is each node's own way to the database and may hold
		 * a password: it stays in the node's file */
		if (rc == CSA_OK) {
			json_object_del(json_object_get(file, "store"), "url");
			if (json_object_size(json_object_get(file, "store")) == 0)
				json_object_del(file, "store");
			rc = csa_json_dump(file, 1, &text, &len, err);
		}
		if (rc == CSA_OK)
			rc = csa_blobs_put(ws->blobs, CONFIG_BLOB, text, len, err);
		free(text);
		json_decref(file);
	}
	struct csa_config next;
	if (rc == CSA_OK && (rc = build(ws, &next, err)) == CSA_OK)
		rc = publish(ws, &next, err);
	pthread_mutex_unlock(&ws->cfg_write_mu);
	return rc;
}

int csa_ws_config_refresh(struct csa_ws *ws, struct csa_err *err)
{
	if (!config_in_db(ws))
		return CSA_OK;
	pthread_mutex_lock(&ws->cfg_write_mu);
	struct csa_config next;
	int rc = CSA_OK;
	if (csa_blobs_version(ws->blobs, CONFIG_BLOB) != ws->cfg_version &&
	    (rc = build(ws, &next, err)) == CSA_OK)
		rc = publish(ws, &next, err);
	pthread_mutex_unlock(&ws->cfg_write_mu);
	return rc;
}

int csa_ws_config_override(struct csa_ws *ws, const json_t *over, struct csa_err *err)
{
	pthread_mutex_lock(&ws->cfg_write_mu);
	const struct csa_config *now = csa_ws_config(ws);
	struct csa_config next = {.root = json_deep_copy(now->root)};
	csa_config_unref(now);
	json_t *all = ws->cfg_over ? json_deep_copy(ws->cfg_over) : json_object();
	int rc = next.root && all ? CSA_OK
	                          : csa_error(err, CSA_ENOMEM,
	                                      "out of memory overriding the "
	                                      "configuration");
	if (rc == CSA_OK)
		rc = csa_config_merge(&next, over, "configuration override", err);
	if (rc == CSA_OK) {
		csa_json_merge(all, over);
		cap_phase(&next, ws->phase_cap);
		rc = publish(ws, &next, err);
	} else {
		csa_config_release(&next);
	}
	if (rc == CSA_OK) {
		json_decref(ws->cfg_over);
		ws->cfg_over = all;
	} else {
		json_decref(all);
	}
	pthread_mutex_unlock(&ws->cfg_write_mu);
	return rc;
}

int csa_ws_config_cap_phase(struct csa_ws *ws, int cap, int *lowered, struct csa_err *err)
{
	if (cap < 1 || cap > 5)
		return csa_error(err, CSA_EINVAL, "phase cap must be 1..5, not %d", cap);
	pthread_mutex_lock(&ws->cfg_write_mu);
	const struct csa_config *now = csa_ws_config(ws);
	int before = phase_of(now);
	struct csa_config next = {.root = json_deep_copy(now->root),
	                          .limits = now->limits,
	                          .max_drift_seconds = now->max_drift_seconds};
	csa_config_unref(now);
	int rc = next.root ? CSA_OK : csa_error(err, CSA_ENOMEM, "out of memory capping the phase");
	if (rc == CSA_OK) {
		cap_phase(&next, cap);
		rc = publish(ws, &next, err);
	}
	if (rc == CSA_OK)
		ws->phase_cap = cap;
	pthread_mutex_unlock(&ws->cfg_write_mu);
	if (lowered)
		*lowered = rc == CSA_OK && before > cap;
	return rc;
}

int csa_ws_config_reload(struct csa_ws *ws, struct csa_err *err)
{
	pthread_mutex_lock(&ws->cfg_write_mu);
	struct csa_config next;
	int rc = build(ws, &next, err);
	if (rc == CSA_OK)
		rc = publish(ws, &next, err);
	pthread_mutex_unlock(&ws->cfg_write_mu);
	return rc;
}

int csa_ws_config_document(struct csa_ws *ws, char **buf, size_t *len, struct csa_err *err)
{
	char what[4200];
	uint64_t version;
	pthread_mutex_lock(&ws->cfg_write_mu);
	int rc = config_read(ws, buf, len, &version, what, sizeof(what), err);
	pthread_mutex_unlock(&ws->cfg_write_mu);
	return rc;
}

int csa_ws_config_replace(struct csa_ws *ws, const char *buf, size_t len, struct csa_err *err)
{
	/* what csa_config_load() would make of it, before the file changes */
	json_t *doc;
	int rc = csa_json_parse(buf, len, "the replacing csa.json", &doc, err);
	if (rc)
		return rc;
	struct csa_config check = {.root = csa_config_defaults()};
	rc = check.root ? csa_config_merge(&check, doc, "the replacing csa.json", err)
	                : csa_error(err, CSA_ENOMEM, "out of memory checking a configuration");
	json_decref(doc);
	csa_config_release(&check);
	if (rc)
		return rc;
	pthread_mutex_lock(&ws->cfg_write_mu);
	rc = config_write(ws, buf, len, err);
	struct csa_config next;
	if (rc == CSA_OK && (rc = build(ws, &next, err)) == CSA_OK)
		rc = publish(ws, &next, err);
	pthread_mutex_unlock(&ws->cfg_write_mu);
	return rc;
}

int csa_ws_phase(struct csa_ws *ws)
{
	const struct csa_config *cfg = csa_ws_config(ws);
	int phase = phase_of(cfg);
	csa_config_unref(cfg);
	return phase;
}

int csa_ws_set_phase(struct csa_ws *ws, int phase, struct csa_err *err)
{
	if (phase < 1 || phase > 5)
		return csa_error(err, CSA_EINVAL, "phase must be 1..5, not %d", phase);
	pthread_mutex_lock(&ws->cfg_write_mu);
	char what[4200];
	uint64_t version;
	json_t *doc;
	int rc = config_doc(ws, &doc, &version, what, sizeof(what), err);
	if (rc == CSA_OK) {
		char ph[8], *text = NULL;
		size_t len;
		snprintf(ph, sizeof(ph), "PHASE_%d", phase);
		json_object_set_new(doc, "phase", json_string(ph));
		if ((rc = csa_json_dump(doc, 1, &text, &len, err)) == CSA_OK)
			rc = config_write(ws, text, len, err);
		free(text);
		json_decref(doc);
	}
	struct csa_config next;
	if (rc == CSA_OK && (rc = build(ws, &next, err)) == CSA_OK)
		rc = publish(ws, &next, err);
	pthread_mutex_unlock(&ws->cfg_write_mu);
	return rc;
}

int csa_ws_path(const struct csa_ws *ws, const char *rel, char *out, size_t outsz)
{
	int n = snprintf(out, outsz, "%s/%s", ws->root, rel);
	return n < 0 || (size_t)n >= outsz ? CSA_ELIMIT : CSA_OK;
}

/* Tickets whose documents a scratch workspace keeps in memory. */
#define SCRATCH_CACHED_TICKETS 64

/* How a workspace is opened: for work, to look at only (csa monitor), as
 * a scratch workspace (the replay) with its tickets in files or in
 * memory. */
enum ws_mode { WS_NORMAL, WS_OBSERVE, WS_SCRATCH, WS_FILES, WS_MEMORY };

/* The ticket store's backend: PostgreSQL when DATABASE_URL is set in the
 * environment or store.url in csa.json (the environment wins), the file
 * mesh otherwise. A scratch workspace (the replay's) is never a team's
 * database, as it is thrown away: the mesh, or the memory store when
 * nothing is to read its tickets after the process. With PostgreSQL the
 * workspace's pool (ws->pg) is opened first, migrating the schema (an
 * observer only checks it), and the store borrows it. */
static int open_store(struct csa_ws *ws, enum ws_mode mode, struct csa_store **out,
                      struct csa_err *err)
{
	int observe = mode == WS_OBSERVE;
	if (mode == WS_MEMORY)
		return csa_memstore_open(ws, out, err);
	if (mode != WS_SCRATCH && mode != WS_FILES) {
		const char *env = getenv("DATABASE_URL");
		const char *url = NULL, *source = NULL;
		const struct csa_config *cfg = csa_ws_config(ws);
		char *conf = NULL;
		if (env && *env) {
			url = env;
			source = "DATABASE_URL";
		} else if ((url = json_string_value(csa_config_get(cfg, "store.url")))) {
			source = "csa.json store.url";
			url = conf = strdup(url);
		}
		csa_config_unref(cfg);
		if (source && !url)
			return csa_error(err, CSA_ENOMEM, "out of memory reading store.url");
		if (url) {
			int rc = csa_pg_open(url, source, observe ? CSA_PG_EXPECT : CSA_PG_MIGRATE,
			                     &ws->pg, err);
			free(conf);
			return rc ? rc : csa_store_pg_open(ws, ws->pg, observe, out, err);
		}
	}
	return (observe ? csa_mesh_open_observer : csa_mesh_open)(ws, out, err);
}

static int ws_open(const char *dir, enum ws_mode mode, struct csa_ws **out, struct csa_err *err)
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
	pthread_mutex_init(&ws->cfg_mu, NULL);
	pthread_mutex_init(&ws->cfg_write_mu, NULL);
	ws->scratch = mode == WS_SCRATCH || mode == WS_MEMORY;
	ws->memory = mode == WS_MEMORY;
	int observe = mode == WS_OBSERVE;
	struct csa_config cfg;
	int rc = csa_config_load(path, &cfg, err);
	if (rc == CSA_OK)
		rc = publish(ws, &cfg, err);
	if (rc)
		goto fail;
	/* Layout directories added by newer versions appear on open (an
	 * observer creates nothing: a missing one is what it reports). */
	for (size_t i = 0; !observe && i < sizeof(layout) / sizeof(layout[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, layout[i]);
		if ((rc = csa_fs_mkdirs(path, err)))
			goto fail;
	}
	/* the documents where the tickets are: the database's pool is made
	 * by opening the store */
	if ((rc = open_store(ws, mode, &ws->store, err)) ||
	    (rc = ws->pg ? csa_blobs_open_pg(ws->pg, &ws->blobs, err)
	                 : csa_blobs_open_files(dir, &ws->blobs, err)) ||
	    (rc = ws->pg && csa_blobs_version(ws->blobs, CONFIG_BLOB)
	              ? csa_ws_config_reload(ws, err)
	              : CSA_OK))
		goto fail;
	/* the online-learning log beside the models, for the processes that
	 * learn: a scratch workspace's models learn in memory only */
	if (mode == WS_NORMAL || mode == WS_FILES) {
		if (ws->pg)
			rc = csa_learnlog_open_pg(ws->pg, &ws->learnlog, err);
		else if ((rc = csa_ws_path(ws, ".csa/online.db", path, sizeof(path))))
			rc = csa_error(err, rc, "workspace path too long: '%s'", dir);
		else
			rc = csa_learnlog_open_sqlite(path, &ws->learnlog, err);
		if (rc)
			goto fail;
	}
	/* A scratch workspace's one user (the replay) loads each ticket again
	 * right after committing it, for every review: those loads are served
	 * from memory (store/doccache.c). A few dozen tickets are enough, as
	 * a replay is done with a ticket before the next one arrives. */
	if (ws->scratch && csa_store_cache_docs(ws->store, SCRATCH_CACHED_TICKETS) != CSA_OK) {
		csa_store_close(ws->store);
		rc = csa_error(err, CSA_ENOMEM, "out of memory opening workspace");
		goto fail;
	}
	*out = ws;
	return CSA_OK;
fail:
	if (ws->store)
		csa_store_close(ws->store);
	csa_learnlog_close(ws->learnlog);
	csa_blobs_close(ws->blobs);
	csa_pg_free(ws->pg);
	snap_put(ws->cfg_now);
	pthread_mutex_destroy(&ws->cfg_mu);
	pthread_mutex_destroy(&ws->cfg_write_mu);
	free(ws->root);
	free(ws);
	return rc;
}

int csa_ws_open(const char *dir, struct csa_ws **out, struct csa_err *err)
{
	return ws_open(dir, WS_NORMAL, out, err);
}

int csa_ws_open_observer(const char *dir, struct csa_ws **out, struct csa_err *err)
{
	return ws_open(dir, WS_OBSERVE, out, err);
}

int csa_ws_open_scratch(const char *dir, struct csa_ws **out, struct csa_err *err)
{
	return ws_open(dir, WS_SCRATCH, out, err);
}

int csa_ws_open_memory(const char *dir, struct csa_ws **out, struct csa_err *err)
{
	return ws_open(dir, WS_MEMORY, out, err);
}

int csa_ws_open_files(const char *dir, struct csa_ws **out, struct csa_err *err)
{
	return ws_open(dir, WS_FILES, out, err);
}

void csa_ws_close(struct csa_ws *ws)
{
	if (!ws)
		return;
	if (ws->store)
		csa_store_close(ws->store);
	csa_learnlog_close(ws->learnlog);
	csa_blobs_close(ws->blobs);
	csa_pg_free(ws->pg); /* after every backend that borrowed it */
	/* readers still holding the snapshot keep it alive */
	snap_put(ws->cfg_now);
	json_decref(ws->cfg_over);
	pthread_mutex_destroy(&ws->cfg_mu);
	pthread_mutex_destroy(&ws->cfg_write_mu);
	free(ws->root);
	free(ws);
}

int csa_ws_probe(struct csa_ws *ws, struct csa_err *err)
{
	if (!ws->pg)
		return CSA_OK; /* files: nothing away that a request would wait for */
	PGconn *c = NULL;
	int rc;
	PGresult *r = csa_pg_query(ws->pg, &c, "checking the database", "SELECT 1", 0, NULL, err,
	                           &rc);
	PQclear(r);
	csa_pg_put(ws->pg, c);
	return rc;
}
