/* Workspace consistency check and repair. */
#include "store/verify.h"
#include "base/hash.h"
#include "store/mesh.h"
#include "store/schema.h"
#include "store/store_pg.h"
#include "store/ws.h"
#include "base/fsops.h"
#include "base/ids.h"
#include "base/json.h"
#include "base/ts.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
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
	int repair, live;
	json_t *problems;
	size_t remaining;
	struct seen *v;
	size_t n, cap;
	size_t sorted; /* v[0..sorted) is sorted by id */
	const struct csa_verify_memo *memo;
	struct csa_verify_memo next; /* the memo this check leaves behind */
	size_t unchanged;
	int64_t started_ns;       /* wall clock when the check began */
	double max_drift_seconds; /* sync.max_drift_seconds */
	int nomem;
};

/* A clean ticket as a previous check saw it: hashes of its id and of the
 * identity (inode, size, mtime) of its three files, sorted by id hash. A
 * commit renames new files into place, an edit in place changes size or
 * mtime: either way the signature changes and the ticket is read again. */
struct memo_entry {
	uint64_t id, sig;
};

struct csa_verify_memo *csa_verify_memo_new(void)
{
	return calloc(1, sizeof(struct csa_verify_memo));
}

void csa_verify_memo_free(struct csa_verify_memo *m)
{
	if (m)
		free(m->v);
	free(m);
}

static int memo_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct memo_entry *)a)->id, y = ((const struct memo_entry *)b)->id;
	return x < y ? -1 : x > y;
}

static void memo_add(struct vstate *s, uint64_t id, uint64_t sig)
{
	struct csa_verify_memo *m = &s->next;
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 1024;
		struct memo_entry *nv = realloc(m->v, cap * sizeof(*nv));
		if (!nv) {
			s->nomem = 1;
			return;
		}
		m->v = nv;
		m->cap = cap;
	}
	m->v[m->n++] = (struct memo_entry){id, sig};
}

static int memo_has(const struct csa_verify_memo *m, uint64_t id, uint64_t sig)
{
	if (!m || !m->n)
		return 0;
	struct memo_entry key = {id, 0};
	const struct memo_entry *e = bsearch(&key, m->v, m->n, sizeof(*m->v), memo_cmp);
	return e && e->sig == sig;
}

static void problem(struct vstate *s, const char *ticket, const char *file, const char *what,
                    const char *detail, int repaired)
{
	json_array_append_new(s->problems, json_pack("{s:s?, s:s?, s:s, s:s, s:b}", "ticket",
	                                             ticket, "file", file, "problem", what,
	                                             "detail", detail, "repaired", repaired));
	if (!repaired)
		s->remaining++;
}

/* One entry per document found; entries of the same ticket are merged
 * after sorting (merge_seen), so a scan of n tickets stays O(n log n). */
static struct seen *seen_add(struct vstate *s, const char *id, size_t len, int kind)
{
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
	e->mask = 1u << kind;
	return e;
}

static int seen_cmp(const void *a, const void *b)
{
	return strcmp(((const struct seen *)a)->id, ((const struct seen *)b)->id);
}

/* Sort the entries and fold those of one ticket into one. */
static void merge_seen(struct vstate *s)
{
	if (!s->n)
		return;
	qsort(s->v, s->n, sizeof(*s->v), seen_cmp);
	size_t out = 0;
	for (size_t i = 1; i < s->n; i++) {
		if (strcmp(s->v[i].id, s->v[out].id) == 0)
			s->v[out].mask |= s->v[i].mask;
		else
			s->v[++out] = s->v[i];
	}
	s->n = out + 1;
	s->sorted = s->n;
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
				fixed = csa_fs_unlink(full) == 0;
			}
			problem(s, NULL, path, "temp_file", "leftover of an interrupted write",
			        fixed);
			continue;
		}
		if (len >= 8 && name[0] == letter[kind] && name[1] == '_' &&
		    strcmp(name + len - 5, ".json") == 0 &&
		    csa_id_check(name + 2, len - 7, NULL) == CSA_OK) {
			struct seen key, *hit = NULL;
			memcpy(key.id, name + 2, len - 7);
			key.id[len - 7] = '\0';
			if (s->sorted)
				hit = bsearch(&key, s->v, s->sorted, sizeof(*s->v), seen_cmp);
			if (hit)
				hit->mask |= 1u << kind;
			else if (!seen_add(s, name + 2, len - 7, kind))
				return CSA_ENOMEM;
			continue;
		}
		problem(s, NULL, path, "foreign_file", "not a ticket document of this directory",
		        0);
	}
	closedir(d);
	return CSA_OK;
}

/* The tickets of a store that keeps each ticket whole in one place (the
 * database): every one has its three documents. */
static int collect_ids(struct vstate *s, struct csa_err *err)
{
	char **ids = NULL;
	size_t n = 0;
	int rc = csa_store_ids(s->ws->store, &ids, &n, err);
	for (size_t i = 0; rc == CSA_OK && i < n; i++) {
		struct seen *e = seen_add(s, ids[i], strlen(ids[i]), 0);
		if (!e)
			rc = csa_error(err, CSA_ENOMEM, "out of memory verifying %zu tickets", n);
		else
			e->mask = 7;
	}
	csa_store_ids_free(ids, n);
	return rc;
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
		if (csa_mesh_doc_path(s->ws, k, e->id, from, sizeof(from), NULL) != CSA_OK)
			return -1;
		const char *base = strrchr(from, '/') + 1;
		snprintf(to, sizeof(to), "%s/%s", dir, base);
		/* through the wrappers, so the fault tests reach a failed repair */
		if (csa_fs_rename(from, to) < 0)
			return -1;
	}
	return csa_fs_fsync_dir(dir);
}

/* Which of a ticket's documents exist, looked at under its lock: a ticket
 * being created holds its lock until all three are in place. */
static unsigned mask_locked(struct vstate *s, const char *id)
{
	struct csa_lock *lk;
	unsigned mask = 0;
	if (csa_store_lock(s->ws->store, id, &lk, NULL))
		return 0;
	for (int k = 0; k < 3; k++) {
		char path[PATH_SZ];
		struct stat st;
		if (csa_mesh_doc_path(s->ws, k, id, path, sizeof(path), NULL) == CSA_OK &&
		    stat(path, &st) == 0)
			mask |= 1u << k;
	}
	csa_store_unlock(s->ws->store, lk);
	return mask;
}

/* A directory or file of the workspace that group or others may access:
 * customer data is private to the service's user (0700 directories, 0600
 * files, base/fsops.h). --repair takes the group and other bits away,
 * keeping the owner's. 'at' is the directory holding 'name' (AT_FDCWD and
 * the root's path for the root itself); 'rel' the path shown. */
static void check_mode(struct vstate *s, int at, const char *name, const char *rel,
                       const struct stat *st)
{
	if (!(st->st_mode & 077))
		return;
	mode_t mode = st->st_mode & 07777;
	int dir = S_ISDIR(st->st_mode);
	int fixed = s->repair && fchmodat(at, name, mode & 0700, 0) == 0;
	char detail[160];
	snprintf(detail, sizeof(detail), "%s of mode %04o: group or others have access (expected %04o)",
	         dir ? "directory" : "file", (unsigned)mode, dir ? CSA_DIR_MODE : CSA_FILE_MODE);
	problem(s, NULL, rel, "loose_mode", detail, fixed);
}

/* Every directory and file under the directory open as 'fd' ('rel' its
 * path in the workspace, "" for the root); symbolic links are not
 * followed. Consumes fd. */
static void walk_modes(struct vstate *s, int fd, const char *rel, int depth)
{
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		problem(s, NULL, rel[0] ? rel : ".", "unreadable", strerror(errno), 0);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *name = de->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		char path[PATH_SZ];
		snprintf(path, sizeof(path), "%s%s%s", rel, rel[0] ? "/" : "", name);
		struct stat st;
		if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			if (errno != ENOENT) /* removed since readdir: nothing to check */
				problem(s, NULL, path, "unreadable", strerror(errno), 0);
			continue;
		}
		if (S_ISLNK(st.st_mode))
			continue;
		check_mode(s, dirfd(d), name, path, &st);
		if (!S_ISDIR(st.st_mode) || depth >= 16)
			continue;
		int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0) {
			if (errno != ENOENT)
				problem(s, NULL, path, "unreadable", strerror(errno), 0);
			continue;
		}
		walk_modes(s, sub, path, depth + 1);
	}
	closedir(d);
}

static void check_modes(struct vstate *s)
{
	const char *root = s->ws->root;
	struct stat st;
	if (stat(root, &st) != 0) {
		problem(s, NULL, ".", "unreadable", strerror(errno), 0);
		return;
	}
	check_mode(s, AT_FDCWD, root, ".", &st);
	int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		problem(s, NULL, ".", "unreadable", strerror(errno), 0);
		return;
	}
	walk_modes(s, fd, "", 0);
}

static void check_ticket(struct vstate *s, struct seen *e)
{
	static const char letter[3] = {'E', 'I', 'T'};
	if (e->mask != 7 && s->live)
		e->mask = mask_locked(s, e->id);
	if (e->mask == 0)
		return; /* gone since the scan: nothing to check */
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
	uint64_t idh = 0, sig = 0;
	int64_t mtime = 0;
	size_t before = s->remaining;
	if (s->memo) {
		idh = csa_fnv1a_str(CSA_FNV_SEED, e->id);
		sig = csa_store_sig(s->ws->store, e->id, &mtime);
		if (sig && memo_has(s->memo, idh, sig)) {
			s->unchanged++;
			memo_add(s, idh, sig);
			return;
		}
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
	int64_t tol = (int64_t)(s->max_drift_seconds * 1000);
	int64_t newest = e_up > i_up ? e_up : i_up;
	if (newest - t_sync > tol) {
		char detail[160];
		snprintf(detail, sizeof(detail),
		         "conversation updated %.3f s after the last synchronisation (limit %g s)",
		         (double)(newest - t_sync) / 1000.0, s->max_drift_seconds);
		problem(s, e->id, NULL, "sync_drift", detail, 0);
	}
	csa_ticket_release(&tk);
	/* remembered as clean only if its files did not change while read and
	 * are not so recent that a same-size edit could share their mtime
	 * (timestamps are only as fine as the kernel's clock tick) */
	int64_t again;
	if (sig && s->remaining == before && csa_store_sig(s->ws->store, e->id, &again) == sig &&
	    mtime < s->started_ns - 2000000000LL)
		memo_add(s, idh, sig);
}

int csa_verify(struct csa_ws *ws, unsigned flags, struct csa_verify_memo *memo, json_t **report,
               struct csa_err *err)
{
	if (report)
		*report = NULL;
	struct vstate s = {.ws = ws,
	                   .repair = (flags & CSA_VERIFY_REPAIR) != 0,
	                   .live = (flags & CSA_VERIFY_LIVE) != 0,
	                   .problems = json_array(),
	                   .memo = memo,
	                   .started_ns = csa_now_ms() * 1000000LL};
	const struct csa_config *cfg = csa_ws_config(ws);
	s.max_drift_seconds = cfg->max_drift_seconds;
	csa_config_unref(cfg);
	int rc = CSA_OK;
	if (csa_store_is_pg(ws->store)) {
		/* one row holds a ticket's three documents: no orphan, no
		 * scratch or foreign file; what is left to check is each
		 * ticket's content */
		if ((rc = collect_ids(&s, err)))
			goto out;
	} else {
		/* workflow files first, sorted, so the other two kinds are
		 * looked up rather than added: one entry per ticket, not per
		 * file */
		static const int order[3] = {2, 0, 1};
		for (int k = 0; k < 3 && rc == CSA_OK; k++) {
			rc = scan_dir(&s, order[k]);
			if (k == 0)
				merge_seen(&s);
		}
		if (rc) {
			rc = csa_error(err, rc, "out of memory verifying '%s'", ws->root);
			goto out;
		}
	}
	merge_seen(&s);
	for (size_t i = 0; i < s.n; i++)
		check_ticket(&s, &s.v[i]);
	/* after the repairs above, so files moved to lost+found are looked at
	 * where they are; not in live mode, whose point is to read only what
	 * changed (a mode change is found by the next `csa verify`) */
	if (!s.live)
		check_modes(&s);
	if (s.nomem) {
		rc = csa_error(err, CSA_ENOMEM, "out of memory verifying '%s'", ws->root);
		goto out;
	}
	struct csa_mesh_stats ms = csa_mesh_stats(ws->store);
	*report =
	    json_pack("{s:b, s:i, s:i, s:O, s:{s:I, s:I, s:I}}", "ok", s.remaining == 0, "tickets",
	              (json_int_t)s.n, "unchanged_since_last_check", (json_int_t)s.unchanged,
	              "problems", s.problems, "recovery", "documents_rewritten",
	              (json_int_t)ms.recovered_docs, "torn_journal_bytes",
	              (json_int_t)ms.torn_bytes, "temp_files_removed", (json_int_t)ms.tmp_removed);
	if (memo) {
		if (s.next.n)
			qsort(s.next.v, s.next.n, sizeof(*s.next.v), memo_cmp);
		free(memo->v);
		*memo = s.next;
		s.next.v = NULL;
	}
out:
	free(s.next.v);
	json_decref(s.problems);
	free(s.v);
	return rc;
}
