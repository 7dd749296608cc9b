/* Workspace consistency check and repair. */
#include "store/verify.h"
#include "store/mesh.h"
#include "store/schema.h"
#include "store/ws.h"
#include "base/fsops.h"
#include "base/ids.h"
#include "base/json.h"
#include "base/ts.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_SZ 4096

struct seen {
	char id[CSA_ID_MAX + 1];
	unsigned mask; /* bit k: document kind k present */
};

struct vstate {
	struct csa_ws *ws;
	int repair;
	json_t *problems;
	size_t remaining;
	struct seen *v;
	size_t n, cap;
};

static void problem(struct vstate *s, const char *ticket, const char *file, const char *what,
                    const char *detail, int repaired)
{
	json_array_append_new(s->problems, json_pack("{s:s?, s:s?, s:s, s:s, s:b}", "ticket",
	                                             ticket, "file", file, "problem", what,
	                                             "detail", detail, "repaired", repaired));
	if (!repaired)
		s->remaining++;
}

static struct seen *seen_get(struct vstate *s, const char *id, size_t len)
{
	for (size_t i = 0; i < s->n; i++)
		if (strlen(s->v[i].id) == len && memcmp(s->v[i].id, id, len) == 0)
			return &s->v[i];
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		struct seen *nv = realloc(s->v, cap * sizeof(*nv));
		if (!nv)
			return NULL;
		s->v = nv;
		s->cap = cap;
	}
	struct seen *e = &s->v[s->n++];
	memcpy(e->id, id, len);
	e->id[len] = '\0';
	e->mask = 0;
	return e;
}

static int seen_cmp(const void *a, const void *b)
{
	return strcmp(((const struct seen *)a)->id, ((const struct seen *)b)->id);
}

/* Collect the tickets of one document directory; report other files. */
static int scan_dir(struct vstate *s, int kind)
{
	static const char letter[3] = {'E', 'I', 'T'};
	char dir[PATH_SZ], path[PATH_SZ];
	snprintf(dir, sizeof(dir), "%s/%s", s->ws->root, csa_mesh_dir(kind));
	DIR *d = opendir(dir);
	if (!d) {
		problem(s, NULL, csa_mesh_dir(kind), "missing_directory", strerror(errno), 0);
		return CSA_OK;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *name = de->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		size_t len = strlen(name);
		snprintf(path, sizeof(path), "%s/%s", csa_mesh_dir(kind), name);
		if (strstr(name, ".tmp")) {
			int fixed = 0;
			if (s->repair) {
				char full[PATH_SZ];
				snprintf(full, sizeof(full), "%s/%s", dir, name);
				fixed = unlink(full) == 0;
			}
			problem(s, NULL, path, "temp_file", "leftover of an interrupted write",
			        fixed);
			continue;
		}
		if (len >= 8 && name[0] == letter[kind] && name[1] == '_' &&
		    strcmp(name + len - 5, ".json") == 0 &&
		    csa_id_check(name + 2, len - 7, NULL) == CSA_OK) {
			struct seen *e = seen_get(s, name + 2, len - 7);
			if (!e)
				return CSA_ENOMEM;
			e->mask |= 1u << kind;
			continue;
		}
		problem(s, NULL, path, "foreign_file", "not a ticket document of this directory",
		        0);
	}
	closedir(d);
	return CSA_OK;
}

/* Move the files of an incomplete ticket out of the mesh, keeping them. */
static int quarantine(struct vstate *s, const struct seen *e)
{
	char dir[PATH_SZ], from[PATH_SZ], to[PATH_SZ];
	snprintf(dir, sizeof(dir), "%s/lost+found/%s", s->ws->root, e->id);
	if (csa_fs_mkdirs(dir, NULL))
		return -1;
	for (int k = 0; k < 3; k++) {
		if (!(e->mask & (1u << k)))
			continue;
		csa_mesh_doc_path(s->ws, k, e->id, from, sizeof(from), NULL);
		const char *base = strrchr(from, '/') + 1;
		snprintf(to, sizeof(to), "%s/%s", dir, base);
		if (rename(from, to) < 0)
			return -1;
	}
	return 0;
}

static void check_ticket(struct vstate *s, const struct seen *e)
{
	static const char letter[3] = {'E', 'I', 'T'};
	if (e->mask != 7) {
		char detail[128];
		int len = snprintf(detail, sizeof(detail), "missing:");
		for (int k = 0; k < 3; k++)
			if (!(e->mask & (1u << k)))
				len += snprintf(detail + len, sizeof(detail) - (size_t)len,
				                " %c_%s.json", letter[k], e->id);
		int fixed = s->repair && quarantine(s, e) == 0;
		problem(s, e->id, NULL, "orphan", detail, fixed);
		return;
	}
	struct csa_ticket tk;
	struct csa_err err = {0};
	if (csa_store_load(s->ws->store, e->id, &tk, &err)) {
		problem(s, e->id, NULL, err.code == CSA_ESCHEMA ? "schema" : "unreadable", err.msg,
		        0);
		return;
	}
	/* Drift: no conversation file may be newer than the workflow file's
	 * last synchronisation by more than the tolerance. */
	int64_t t_sync = 0, e_up = 0, i_up = 0;
	csa_ts_parse(csa_json_str(tk.t, "last_synchronized"), &t_sync);
	csa_ts_parse(csa_json_str(tk.e, "last_updated"), &e_up);
	csa_ts_parse(csa_json_str(tk.i, "last_updated"), &i_up);
	int64_t tol = (int64_t)(s->ws->cfg.max_drift_seconds * 1000);
	int64_t newest = e_up > i_up ? e_up : i_up;
	if (newest - t_sync > tol) {
		char detail[160];
		snprintf(detail, sizeof(detail),
		         "conversation updated %.3f s after the last synchronisation (limit %g s)",
		         (double)(newest - t_sync) / 1000.0, s->ws->cfg.max_drift_seconds);
		problem(s, e->id, NULL, "sync_drift", detail, 0);
	}
	csa_ticket_release(&tk);
}

int csa_verify(struct csa_ws *ws, int repair, json_t **report, struct csa_err *err)
{
	struct vstate s = {.ws = ws, .repair = repair, .problems = json_array()};
	int rc = CSA_OK;
	for (int k = 0; k < 3 && rc == CSA_OK; k++)
		rc = scan_dir(&s, k);
	if (rc) {
		rc = csa_error(err, rc, "out of memory verifying '%s'", ws->root);
		goto out;
	}
	if (s.n)
		qsort(s.v, s.n, sizeof(*s.v), seen_cmp);
	for (size_t i = 0; i < s.n; i++)
		check_ticket(&s, &s.v[i]);
	struct csa_mesh_stats ms = csa_mesh_stats(ws->store);
	*report =
	    json_pack("{s:b, s:i, s:O, s:{s:I, s:I, s:I}}", "ok", s.remaining == 0, "tickets",
	              (json_int_t)s.n, "problems", s.problems, "recovery", "documents_rewritten",
	              (json_int_t)ms.recovered_docs, "torn_journal_bytes",
	              (json_int_t)ms.torn_bytes, "temp_files_removed", (json_int_t)ms.tmp_removed);
out:
	json_decref(s.problems);
	free(s.v);
	return rc;
}
