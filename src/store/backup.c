/* Backups of a file workspace while it is in use, and their restore. */
#include "store/backup.h"
#include "base/digest.h"
#include "base/fsops.h"
#include "base/ids.h"
#include "base/json.h"
#include "base/ts.h"
#include "store/mesh.h"
#include "store/store.h"
#include "store/backup_pg.h"
#include "store/store_pg.h"
#include "store/ws.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <ftw.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PATH_SZ        4096
#define FORMAT         "csa-backup 1"
#define MAX_MANIFEST   (256u << 20)
#define COPY_BLOCK     (1u << 16)
#define LEDGER_REL     "audit/ledger.jsonl"
#define JOURNAL_REL    ".csa/journal"
#define SEARCH_DB_REL  ".csa/search.db"
#define SCHEDULED_PFX  "csa-"
#define SCHEDULED_NAME "csa-YYYYMMDDTHHMMSSZ"

static const char kind_letter[3] = {'E', 'I', 'T'};

/* One backup being taken. */
struct bk {
	struct csa_ws *ws;
	char out[PATH_SZ];   /* the backup directory */
	char stage[PATH_SZ]; /* .csa/backup.<pid>.<ms> in the workspace */
	json_t *files;       /* the manifest's entries */
	long tickets;
	long long bytes;
};

/* ---- small helpers ---------------------------------------------------- */

static int join(char *out, size_t outsz, const char *a, const char *b, struct csa_err *err)
{
	if (snprintf(out, outsz, "%s/%s", a, b) >= (int)outsz)
		return csa_error(err, CSA_ELIMIT, "path too long: '%s/%s'", a, b);
	return CSA_OK;
}

/* mkdir -p of the directory part of 'path'. */
static int mkparent(const char *path, struct csa_err *err)
{
	char dir[PATH_SZ];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return CSA_OK;
	*slash = '\0';
	return csa_fs_mkdirs(dir, err);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) ? -1 : 0;
}

/* rm -rf of a directory this module made (a staging directory, a backup
 * it started, a scheduled backup beyond 'keep'). */
static int rmtree(const char *path)
{
	return nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* 1 when 'dir' does not exist, 0 when it is an empty directory, else an
 * error saying why it cannot take a backup or a restore. */
static int absent_or_empty(const char *dir, const char *what, struct csa_err *err)
{
	struct stat sb;
	if (lstat(dir, &sb) != 0) {
		if (errno == ENOENT)
			return 1;
		return csa_error_sys(err, "cannot use '%s' as %s", dir, what);
	}
	if (!S_ISDIR(sb.st_mode))
		return csa_error(err, CSA_EEXIST, "cannot use '%s' as %s: not a directory", dir,
		                 what);
	DIR *d = opendir(dir);
	if (!d)
		return csa_error_sys(err, "cannot read '%s'", dir);
	struct dirent *de;
	int empty = 1;
	while (empty && (de = readdir(d)))
		empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
	closedir(d);
	if (!empty)
		return csa_error(err, CSA_EEXIST, "cannot use '%s' as %s: it is not empty", dir,
		                 what);
	return 0;
}

/* Whether 'rel' is a path a manifest may name: relative, no empty, "."
 * or ".." component, printable, not the manifest itself. Checked before
 * any path is built from it (a manifest is input like any other). */
static int safe_rel(const char *rel)
{
	size_t n = strlen(rel);
	if (n == 0 || n > 1024 || rel[0] == '/' || strcmp(rel, CSA_BACKUP_MANIFEST) == 0)
		return 0;
	for (const char *c = rel; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f || *c == '\\')
			return 0;
	const char *p = rel;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == 0 || (len == 1 && p[0] == '.') ||
		    (len == 2 && p[0] == '.' && p[1] == '.'))
			return 0;
		p += len + (e != NULL);
		if (e && !*p)
			return 0; /* a trailing slash */
	}
	return 1;
}

/*
 * Copy 'limit' bytes (all of it when negative) of the open 'fd' into a new
 * file 'dst' (0600, O_EXCL, fsynced), its SHA-256 into 'hex'.
 */
static int copy_fd(int fd, const char *src, off_t limit, const char *dst,
                   char hex[CSA_SHA256_HEX_LEN], long long *bytes, struct csa_err *err)
{
	int rc = mkparent(dst, err);
	if (rc)
		return rc;
	int out = csa_fs_open(dst, O_WRONLY | O_CREAT | O_EXCL, CSA_FILE_MODE);
	if (out < 0)
		return csa_error_sys(err, "cannot create '%s'", dst);
	struct csa_sha256_ctx *sha = csa_sha256_begin();
	char *buf = malloc(COPY_BLOCK);
	long long done = 0;
	if (!sha || !buf) {
		rc = csa_error(err, CSA_ENOMEM, "out of memory copying '%s'", src);
		goto out;
	}
	for (;;) {
		size_t want = COPY_BLOCK;
		if (limit >= 0 && (long long)want > (long long)limit - done)
			want = (size_t)((long long)limit - done);
		if (want == 0)
			break;
		ssize_t n = read(fd, buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = csa_error_sys(err, "cannot read '%s'", src);
			goto out;
		}
		if (n == 0) {
			if (limit >= 0)
				rc = csa_error(err, CSA_EIO,
				               "'%s' became shorter while it was copied", src);
			break;
		}
		if (csa_fs_write_all(out, buf, (size_t)n) < 0) {
			rc = csa_error_sys(err, "cannot write '%s'", dst);
			goto out;
		}
		if (csa_sha256_update(sha, buf, (size_t)n)) {
			rc = csa_error(err, CSA_EIO, "cannot compute the SHA-256 of '%s'", src);
			goto out;
		}
		done += n;
	}
	/* no fsync per file: thousands of them would make a backup of a big
	 * workspace take minutes; the caller syncs the file system once
	 * (sync_tree) before the manifest says the copy is whole */
	if (rc == CSA_OK) {
		int e = csa_sha256_end(sha, hex); /* frees the context */
		sha = NULL;
		if (e)
			rc = csa_error(err, CSA_EIO, "cannot compute the SHA-256 of '%s'", src);
	}
	*bytes = done;
out:
	csa_sha256_free(sha);
	free(buf);
	if (close(out) < 0 && rc == CSA_OK)
		rc = csa_error_sys(err, "cannot close '%s'", dst);
	return rc;
}

/* SHA-256 and size of a whole file. */
static int hash_file(const char *path, char hex[CSA_SHA256_HEX_LEN], long long *bytes,
                     struct csa_err *err)
{
	int fd = csa_fs_open(path, O_RDONLY, 0);
	if (fd < 0)
		return csa_error_sys(err, "cannot open '%s'", path);
	struct csa_sha256_ctx *sha = csa_sha256_begin();
	char *buf = malloc(COPY_BLOCK);
	int rc = CSA_OK;
	*bytes = 0;
	if (!sha || !buf)
		rc = csa_error(err, CSA_ENOMEM, "out of memory reading '%s'", path);
	while (rc == CSA_OK) {
		ssize_t n = read(fd, buf, COPY_BLOCK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = csa_error_sys(err, "cannot read '%s'", path);
		else if (n == 0)
			break;
		else if (csa_sha256_update(sha, buf, (size_t)n))
			rc = csa_error(err, CSA_EIO, "cannot compute the SHA-256 of '%s'", path);
		else
			*bytes += n;
	}
	if (rc == CSA_OK) {
		int e = csa_sha256_end(sha, hex); /* frees the context */
		sha = NULL;
		if (e)
			rc = csa_error(err, CSA_EIO, "cannot compute the SHA-256 of '%s'", path);
	}
	csa_sha256_free(sha);
	free(buf);
	close(fd);
	return rc;
}

static int note_file(struct bk *b, const char *rel, long long bytes, const char *hex)
{
	json_t *e =
	    json_pack("{s:s, s:I, s:s}", "path", rel, "bytes", (json_int_t)bytes, "sha256", hex);
	b->bytes += bytes;
	return e && json_array_append_new(b->files, e) == 0 ? CSA_OK : CSA_ENOMEM;
}

/* A table of the database, dumped into the backup (csa_pg_dump). */
static int note_dumped(void *ctx, const char *rel, long long bytes,
                       const char hex[CSA_SHA256_HEX_LEN], struct csa_err *err)
{
	if (note_file(ctx, rel, bytes, hex))
		return csa_error(err, CSA_ENOMEM, "out of memory noting '%s'", rel);
	return CSA_OK;
}

/* Copy workspace-relative 'rel' (read from 'src') into the backup; with
 * 'whole_lines', only up to its last newline (the ledger: an append being
 * written is left out, not cut in half). */
static int copy_out(struct bk *b, const char *src, const char *rel, int whole_lines,
                    struct csa_err *err)
{
	char dst[PATH_SZ], hex[CSA_SHA256_HEX_LEN];
	int rc = join(dst, sizeof(dst), b->out, rel, err);
	if (rc)
		return rc;
	int fd = csa_fs_open(src, O_RDONLY, 0);
	if (fd < 0 && errno == ENOENT)
		return csa_error(err, CSA_ENOENT, "'%s' is gone", src);
	if (fd < 0)
		return csa_error_sys(err, "cannot open '%s'", src);
	off_t limit = -1;
	if (whole_lines) {
		struct stat sb;
		if (fstat(fd, &sb) < 0) {
			rc = csa_error_sys(err, "cannot stat '%s'", src);
			close(fd);
			return rc;
		}
		/* back from the end to the last newline */
		char blk[4096];
		off_t end = sb.st_size;
		limit = 0;
		while (end > 0 && limit == 0) {
			off_t from = end > (off_t)sizeof(blk) ? end - (off_t)sizeof(blk) : 0;
			ssize_t n = pread(fd, blk, (size_t)(end - from), from);
			if (n <= 0) {
				rc = csa_error_sys(err, "cannot read '%s'", src);
				close(fd);
				return rc;
			}
			for (ssize_t i = n - 1; i >= 0; i--)
				if (blk[i] == '\n') {
					limit = from + i + 1;
					break;
				}
			end = from;
		}
	}
	long long bytes = 0;
	rc = copy_fd(fd, src, limit, dst, hex, &bytes, err);
	close(fd);
	if (rc == CSA_OK && note_file(b, rel, bytes, hex))
		rc = csa_error(err, CSA_ENOMEM, "out of memory noting '%s'", rel);
	return rc;
}

/* SQLite's online backup of database 'src' into the backup as 'rel': a
 * read transaction, so the copy is the database as of one commit while
 * writers go on (WAL). */
static int sqlite_out(struct bk *b, const char *src, const char *rel, struct csa_err *err)
{
	char dst[PATH_SZ], hex[CSA_SHA256_HEX_LEN];
	int rc = join(dst, sizeof(dst), b->out, rel, err);
	if (rc || (rc = mkparent(dst, err)))
		return rc;
	if ((rc = csa_fs_create_private(dst, err)))
		return rc;
	sqlite3 *from = NULL, *to = NULL;
	/* read-write only so that a WAL database nobody has open can be read
	 * (a read-only connection needs its -shm); nothing is written */
	if (sqlite3_open_v2(src, &from, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		rc = csa_error(err, CSA_EBACKEND, "cannot open database '%s': %s", src,
		               from ? sqlite3_errmsg(from) : "out of memory");
		goto out;
	}
	sqlite3_busy_timeout(from, 10000);
	if (sqlite3_open_v2(dst, &to, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		rc = csa_error(err, CSA_EBACKEND, "cannot open '%s': %s", dst,
		               to ? sqlite3_errmsg(to) : "out of memory");
		goto out;
	}
	sqlite3_backup *op = sqlite3_backup_init(to, "main", from, "main");
	if (!op) {
		rc = csa_error(err, CSA_EBACKEND, "cannot back up '%s': %s", src,
		               sqlite3_errmsg(to));
		goto out;
	}
	int s, tries = 0;
	/* all pages in one step: one read transaction, one commit's state */
	while ((s = sqlite3_backup_step(op, -1)) == SQLITE_BUSY || s == SQLITE_LOCKED) {
		if (++tries > 200)
			break;
		sqlite3_sleep(50);
	}
	int fin = sqlite3_backup_finish(op);
	if (s != SQLITE_DONE || fin != SQLITE_OK) {
		rc = csa_error(err, CSA_EBACKEND, "cannot back up '%s': %s", src,
		               s == SQLITE_DONE ? sqlite3_errmsg(to) : sqlite3_errstr(s));
		goto out;
	}
out:
	sqlite3_close(from);
	if (to && sqlite3_close(to) != SQLITE_OK && rc == CSA_OK)
		rc = csa_error(err, CSA_EBACKEND, "cannot close '%s'", dst);
	if (rc)
		return rc;
	/* the copy is written through a rollback journal: settle it on disk
	 * before its checksum is taken */
	int fd = csa_fs_open(dst, O_RDONLY, 0);
	if (fd < 0 || csa_fs_fsync(fd, 0) < 0) {
		rc = csa_error_sys(err, "cannot fsync '%s'", dst);
		if (fd >= 0)
			close(fd);
		return rc;
	}
	close(fd);
	long long bytes = 0;
	if ((rc = hash_file(dst, hex, &bytes, err)))
		return rc;
	if (note_file(b, rel, bytes, hex))
		return csa_error(err, CSA_ENOMEM, "out of memory noting '%s'", rel);
	return CSA_OK;
}

static int is_sqlite(const char *path)
{
	char head[16];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, head, sizeof(head));
	close(fd);
	return n == 16 && memcmp(head, "SQLite format 3", 16) == 0;
}

static int ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);
	return n >= t && strcmp(s + n - t, tail) == 0;
}

/* ---- the tickets, under the store's hold ---------------------------- */

/* A ticket document's file name in directory 'kind': "E_<id>.json". */
static int ticket_doc_name(int kind, const char *name)
{
	size_t len = strlen(name);
	return len >= 8 && name[0] == kind_letter[kind] && name[1] == '_' &&
	       strcmp(name + len - 5, ".json") == 0 && !strstr(name, ".tmp") &&
	       csa_id_check(name + 2, len - 7, NULL) == CSA_OK;
}

/* Put 'src' into the staging directory as 'dst': a hard link (the mesh
 * never writes a document in place: it swaps a pool file in, and never
 * reuses a file that has another name, so a link keeps this version), or a
 * copy where links are not possible. */
static int stage_one(const char *src, const char *dst, struct csa_err *err)
{
	if (link(src, dst) == 0)
		return CSA_OK;
	if (errno == ENOENT)
		return csa_error_sys(err, "cannot link '%s'", src);
	int fd = csa_fs_open(src, O_RDONLY, 0);
	if (fd < 0)
		return csa_error_sys(err, "cannot open '%s'", src);
	char hex[CSA_SHA256_HEX_LEN];
	long long bytes;
	int rc = copy_fd(fd, src, -1, dst, hex, &bytes, err);
	close(fd);
	return rc;
}

/* Called with the store held: every acknowledged commit is whole in
 * Tickets/ and none is under way, so the staged set is one instant. */
static int stage_tickets(void *ctx, struct csa_err *err)
{
	struct bk *b = ctx;
	char dir[PATH_SZ], src[PATH_SZ], dst[PATH_SZ];
	int rc = CSA_OK;
	b->tickets = 0;
	for (int kind = 0; kind < 3 && rc == CSA_OK; kind++) {
		if ((rc = join(dir, sizeof(dir), b->ws->root, csa_mesh_dir(kind), err)))
			break;
		if ((rc = join(dst, sizeof(dst), b->stage, csa_mesh_dir(kind), err)) ||
		    (rc = csa_fs_mkdirs(dst, err)))
			break;
		DIR *d = opendir(dir);
		if (!d)
			return csa_error_sys(err, "cannot read '%s'", dir);
		struct dirent *de;
		while (rc == CSA_OK && (de = readdir(d))) {
			if (!ticket_doc_name(kind, de->d_name))
				continue; /* scratch and stray files: csa verify's business */
			char rel[PATH_SZ];
			snprintf(rel, sizeof(rel), "%s/%s", csa_mesh_dir(kind), de->d_name);
			if ((rc = join(src, sizeof(src), b->ws->root, rel, err)) ||
			    (rc = join(dst, sizeof(dst), b->stage, rel, err)))
				break;
			rc = stage_one(src, dst, err);
			b->tickets += kind == 2;
		}
		closedir(d);
	}
	if (rc)
		return rc;
	/* the journal grows in place: a copy, not a link */
	if ((rc = join(src, sizeof(src), b->ws->root, JOURNAL_REL, err)) ||
	    (rc = join(dst, sizeof(dst), b->stage, JOURNAL_REL, err)))
		return rc;
	int fd = csa_fs_open(src, O_RDONLY, 0);
	if (fd < 0)
		return csa_error_sys(err, "cannot open journal '%s'", src);
	char hex[CSA_SHA256_HEX_LEN];
	long long bytes;
	rc = copy_fd(fd, src, -1, dst, hex, &bytes, err);
	close(fd);
	return rc;
}

/* Move the staged tickets and journal into the backup, outside the hold. */
static int unstage(struct bk *b, struct csa_err *err)
{
	char dir[PATH_SZ], src[PATH_SZ];
	int rc = CSA_OK;
	for (int kind = 0; kind < 3 && rc == CSA_OK; kind++) {
		if ((rc = join(dir, sizeof(dir), b->stage, csa_mesh_dir(kind), err)))
			break;
		DIR *d = opendir(dir);
		if (!d)
			return csa_error_sys(err, "cannot read '%s'", dir);
		struct dirent *de;
		while (rc == CSA_OK && (de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			char rel[PATH_SZ];
			snprintf(rel, sizeof(rel), "%s/%s", csa_mesh_dir(kind), de->d_name);
			if ((rc = join(src, sizeof(src), b->stage, rel, err)))
				break;
			rc = copy_out(b, src, rel, 0, err);
		}
		closedir(d);
	}
	if (rc == CSA_OK && (rc = join(src, sizeof(src), b->stage, JOURNAL_REL, err)) == CSA_OK)
		rc = copy_out(b, src, JOURNAL_REL, 0, err);
	return rc;
}

/* ---- the rest of the workspace ---------------------------------------- */

/* What a walk of the workspace leaves out (paths relative to it). */
static int skipped(const char *rel, const char *name)
{
	/* automation/open/ is kept: the markers of the controllers running
	 * now are found unlocked in the restored workspace, as after a crash,
	 * so its first controller puts automation.db back in line with the
	 * tickets (rows of a run whose ticket was committed after the hold) */
	static const char *const top[] = {"Tickets", ".csa", "lost+found", CSA_BACKUP_MANIFEST};
	for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++)
		if (strcmp(rel, top[i]) == 0)
			return 1;
	/* SQLite's companions are read through the backup API; scratch of an
	 * atomic write (name.tmp.<pid>) is no version of anything */
	return ends_with(name, "-wal") || ends_with(name, "-shm") || ends_with(name, "-journal") ||
	       strstr(name, ".tmp") != NULL;
}

static int walk(struct bk *b, const char *rel_dir, struct csa_err *err)
{
	char dir[PATH_SZ];
	int rc = rel_dir[0] ? join(dir, sizeof(dir), b->ws->root, rel_dir, err)
	                    : (snprintf(dir, sizeof(dir), "%s", b->ws->root), CSA_OK);
	if (rc)
		return rc;
	DIR *d = opendir(dir);
	if (!d)
		return csa_error_sys(err, "cannot read '%s'", dir);
	struct dirent *de;
	while (rc == CSA_OK && (de = readdir(d))) {
		const char *name = de->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		char rel[PATH_SZ], path[PATH_SZ];
		if (snprintf(rel, sizeof(rel), "%s%s%s", rel_dir, rel_dir[0] ? "/" : "", name) >=
		    (int)sizeof(rel)) {
			rc = csa_error(err, CSA_ELIMIT, "path too long under '%s'", dir);
			break;
		}
		if (skipped(rel, name) || (rc = join(path, sizeof(path), b->ws->root, rel, err)))
			continue;
		struct stat sb;
		if (lstat(path, &sb) != 0) {
			if (errno != ENOENT) /* removed meanwhile: not part of the backup */
				rc = csa_error_sys(err, "cannot stat '%s'", path);
			continue;
		}
		if (S_ISDIR(sb.st_mode))
			rc = walk(b, rel, err);
		else if (!S_ISREG(sb.st_mode))
			continue; /* links, sockets: nothing csa writes */
		else if (ends_with(name, ".db") && is_sqlite(path))
			rc = sqlite_out(b, path, rel, err);
		else if ((rc = copy_out(b, path, rel, strcmp(rel, LEDGER_REL) == 0, err)) ==
		         CSA_ENOENT)
			rc = CSA_OK; /* removed since it was listed: not part of the backup */
	}
	closedir(d);
	return rc;
}

/* Every file written under 'dir' to disk with one syncfs, then each
 * directory fsynced (their entries). */
static int sync_tree(const char *dir, struct csa_err *err);

static int fsync_tree(const char *dir, struct csa_err *err)
{
	DIR *d = opendir(dir);
	if (!d)
		return csa_error_sys(err, "cannot read '%s'", dir);
	struct dirent *de;
	int rc = CSA_OK;
	while (rc == CSA_OK && (de = readdir(d))) {
		char path[PATH_SZ];
		struct stat sb;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if ((rc = join(path, sizeof(path), dir, de->d_name, err)))
			break;
		if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
			rc = fsync_tree(path, err);
	}
	closedir(d);
	if (rc == CSA_OK && csa_fs_fsync_dir(dir) < 0)
		rc = csa_error_sys(err, "cannot fsync directory '%s'", dir);
	return rc;
}

static int sync_tree(const char *dir, struct csa_err *err)
{
	int fd = csa_fs_open(dir, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return csa_error_sys(err, "cannot open '%s'", dir);
	int rc = syncfs(fd) < 0 ? csa_error_sys(err, "cannot sync the file system of '%s'", dir)
	                        : CSA_OK;
	close(fd);
	return rc ? rc : fsync_tree(dir, err);
}

/* Refuse a backup directory inside the workspace: the walk would copy
 * the backup into itself. */
static int outside_ws(const char *root, const char *out, struct csa_err *err)
{
	char r[PATH_MAX], o[PATH_MAX];
	if (!realpath(root, r) || !realpath(out, o))
		return csa_error_sys(err, "cannot resolve '%s'", out);
	size_t n = strlen(r);
	if (strncmp(o, r, n) == 0 && (o[n] == '/' || o[n] == '\0'))
		return csa_error(err, CSA_EINVAL,
		                 "cannot back up into '%s': it is inside the workspace '%s'", out,
		                 root);
	return CSA_OK;
}

/* Remove the staging directories of backups whose process is gone (one
 * killed half way leaves its links behind). */
static void clear_stale_stages(const char *root)
{
	char dir[PATH_SZ];
	if (snprintf(dir, sizeof(dir), "%s/.csa", root) >= (int)sizeof(dir))
		return;
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		char *end;
		if (strncmp(de->d_name, "backup.", 7) != 0)
			continue;
		long pid = strtol(de->d_name + 7, &end, 10);
		if (end == de->d_name + 7 || *end != '.' || pid <= 0)
			continue;
		int gone = kill((pid_t)pid, 0) != 0 && errno == ESRCH;
		if (!gone)
			continue; /* a backup under way, or a process we may not signal */
		char path[PATH_SZ];
		if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) < (int)sizeof(path))
			rmtree(path);
	}
	closedir(d);
}

int csa_backup_take(struct csa_ws *ws, const char *out_dir, json_t **report, struct csa_err *err)
{
	struct bk b = {.ws = ws};
	json_t *db = NULL; /* the database's part of the manifest (PostgreSQL mode) */
	int64_t t0 = csa_mono_ns();
	if (report)
		*report = NULL;
	if (!out_dir || !*out_dir)
		return csa_error(err, CSA_EINVAL, "no backup directory given");
	if (snprintf(b.out, sizeof(b.out), "%s", out_dir) >= (int)sizeof(b.out))
		return csa_error(err, CSA_ELIMIT, "backup directory path too long: '%s'", out_dir);
	int made = absent_or_empty(b.out, "a backup directory", err);
	if (made < 0)
		return made;
	int rc = csa_fs_mkdirs(b.out, err);
	if (rc)
		return rc;
	if (chmod(b.out, CSA_DIR_MODE) != 0) {
		rc = csa_error_sys(err, "cannot make '%s' private (mode 0700)", b.out);
		goto fail;
	}
	if ((rc = outside_ws(ws->root, b.out, err)))
		goto fail;
	clear_stale_stages(ws->root);
	if (snprintf(b.stage, sizeof(b.stage), "%s/.csa/backup.%ld.%lld", ws->root, (long)getpid(),
	             (long long)csa_now_ms()) >= (int)sizeof(b.stage)) {
		rc = csa_error(err, CSA_ELIMIT, "workspace path too long: '%s'", ws->root);
		goto fail;
	}
	if (!(b.files = json_array())) {
		rc = csa_error(err, CSA_ENOMEM, "out of memory starting a backup");
		goto fail;
	}
	char ts[CSA_TS_LEN];
	csa_ts_format(csa_now_ms(), ts);
	int64_t h0 = csa_mono_ns();
	if (csa_store_is_pg(ws->store)) {
		/* the database's tables as of one transaction; nothing waits */
		rc = csa_pg_dump(ws->pg, b.out, note_dumped, &b, &db, err);
		b.tickets = rc ? 0 : (long)json_integer_value(json_object_get(
		                         json_object_get(db, "tables"), "csa_tickets"));
	} else {
		rc = csa_store_hold(ws->store, stage_tickets, &b, err);
		if (rc == CSA_OK)
			rc = unstage(&b, err);
		rmtree(b.stage);
	}
	int64_t hold_ns = csa_mono_ns() - h0;
	if (rc)
		goto fail;
	if ((rc = walk(&b, "", err)))
		goto fail;
	/* the search index lives in .csa/ beside the store's scratch */
	char path[PATH_SZ];
	if ((rc = join(path, sizeof(path), ws->root, SEARCH_DB_REL, err)))
		goto fail;
	if (access(path, F_OK) == 0 && is_sqlite(path) &&
	    (rc = sqlite_out(&b, path, SEARCH_DB_REL, err)))
		goto fail;
	if ((rc = join(path, sizeof(path), ws->root, CSA_WS_KB_SEED, err)))
		goto fail;
	if (access(path, F_OK) == 0 && (rc = copy_out(&b, path, CSA_WS_KB_SEED, 0, err)))
		goto fail;
	if ((rc = sync_tree(b.out, err)))
		goto fail;
	json_t *man =
	    json_pack("{s:s, s:s, s:s, s:I, s:O, s:O*}", "format", FORMAT, "created_at", ts,
	              "source", ws->root, "tickets", (json_int_t)b.tickets, "files", b.files,
	              "database", db);
	json_decref(db);
	db = NULL;
	char *text = NULL;
	size_t len = 0;
	rc = man ? csa_json_dump(man, 1, &text, &len, err)
	         : csa_error(err, CSA_ENOMEM, "out of memory writing the manifest");
	json_decref(man);
	if (rc == CSA_OK) {
		/* last: a directory with a manifest is a whole backup */
		if ((rc = join(path, sizeof(path), b.out, CSA_BACKUP_MANIFEST, err)) == CSA_OK)
			rc = csa_fs_write_atomic(path, text, len, err);
	}
	free(text);
	if (rc)
		goto fail;
	if (report)
		*report =
		    json_pack("{s:s, s:I, s:I, s:I, s:f, s:f}", "dir", b.out, "tickets",
		              (json_int_t)b.tickets, "files", (json_int_t)json_array_size(b.files),
		              "bytes", (json_int_t)b.bytes, "hold_ms", (double)hold_ns / 1e6,
		              "duration_ms", (double)(csa_mono_ns() - t0) / 1e6);
	json_decref(b.files);
	return CSA_OK;
fail:
	json_decref(db);
	json_decref(b.files);
	if (made == 1)
		rmtree(b.out);
	return rc;
}

/* ---- check and restore --------------------------------------------- */

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every file under 'dir' must be one the manifest lists. */
static int no_strays(const char *root, const char *rel_dir, const char **listed, size_t n,
                     struct csa_err *err)
{
	char dir[PATH_SZ];
	int rc = rel_dir[0] ? join(dir, sizeof(dir), root, rel_dir, err)
	                    : (snprintf(dir, sizeof(dir), "%s", root), CSA_OK);
	if (rc)
		return rc;
	DIR *d = opendir(dir);
	if (!d)
		return csa_error_sys(err, "cannot read '%s'", dir);
	struct dirent *de;
	while (rc == CSA_OK && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char rel[PATH_SZ], path[PATH_SZ];
		snprintf(rel, sizeof(rel), "%s%s%s", rel_dir, rel_dir[0] ? "/" : "", de->d_name);
		if (!rel_dir[0] && strcmp(rel, CSA_BACKUP_MANIFEST) == 0)
			continue;
		if ((rc = join(path, sizeof(path), root, rel, err)))
			break;
		struct stat sb;
		const char *key = rel;
		if (lstat(path, &sb) != 0)
			rc = csa_error_sys(err, "cannot stat '%s'", path);
		else if (S_ISDIR(sb.st_mode))
			rc = no_strays(root, rel, listed, n, err);
		else if (!S_ISREG(sb.st_mode) ||
		         !bsearch(&key, listed, n, sizeof(*listed), str_cmp))
			rc = csa_error(err, CSA_ECORRUPT,
			               "backup '%s': '%s' is not in its manifest (refused)", root,
			               rel);
	}
	closedir(d);
	return rc;
}

int csa_backup_check(const char *dir, json_t **manifest, struct csa_err *err)
{
	char path[PATH_SZ];
	if (manifest)
		*manifest = NULL;
	int rc = join(path, sizeof(path), dir, CSA_BACKUP_MANIFEST, err);
	if (rc)
		return rc;
	json_t *man = NULL;
	if ((rc = csa_json_load_file(path, MAX_MANIFEST, &man, err)))
		return rc == CSA_ENOENT
		           ? csa_error(err, CSA_ECORRUPT,
		                       "'%s' is no backup: it has no %s (an unfinished backup?)",
		                       dir, CSA_BACKUP_MANIFEST)
		           : rc;
	json_t *files = json_object_get(man, "files");
	const char *format = csa_json_str(man, "format");
	if (!format || strcmp(format, FORMAT) != 0 || !json_is_array(files)) {
		json_decref(man);
		return csa_error(err, CSA_ECORRUPT,
		                 "backup '%s': %s is not a manifest of format '%s'", dir,
		                 CSA_BACKUP_MANIFEST, FORMAT);
	}
	size_t n = json_array_size(files), i;
	const char **listed = calloc(n ? n : 1, sizeof(*listed));
	if (!listed) {
		json_decref(man);
		return csa_error(err, CSA_ENOMEM, "out of memory checking backup '%s'", dir);
	}
	json_t *f;
	json_array_foreach(files, i, f)
	{
		const char *rel = csa_json_str(f, "path"), *want = csa_json_str(f, "sha256");
		json_t *bytes = json_object_get(f, "bytes");
		if (!rel || !safe_rel(rel) || !want || strlen(want) != 64 ||
		    !json_is_integer(bytes)) {
			rc = csa_error(err, CSA_ECORRUPT,
			               "backup '%s': entry %zu of %s is not a plain relative path "
			               "with its bytes and sha256 (refused)",
			               dir, i, CSA_BACKUP_MANIFEST);
			break;
		}
		listed[i] = rel;
		char hex[CSA_SHA256_HEX_LEN];
		long long got = 0;
		if ((rc = join(path, sizeof(path), dir, rel, err)))
			break;
		if ((rc = hash_file(path, hex, &got, err))) {
			if (rc == CSA_EIO && err && err->sys_errno == ENOENT)
				rc = csa_error(err, CSA_ECORRUPT, "backup '%s': '%s' is missing",
				               dir, rel);
			break;
		}
		if (got != json_integer_value(bytes) || strcmp(hex, want) != 0) {
			rc = csa_error(
			    err, CSA_ECORRUPT,
			    "backup '%s': '%s' does not match its checksum in %s (damaged; "
			    "refused)",
			    dir, rel, CSA_BACKUP_MANIFEST);
			break;
		}
	}
	if (rc == CSA_OK) {
		qsort(listed, n, sizeof(*listed), str_cmp);
		for (i = 1; i < n && rc == CSA_OK; i++)
			if (strcmp(listed[i - 1], listed[i]) == 0)
				rc = csa_error(err, CSA_ECORRUPT,
				               "backup '%s': '%s' is listed twice in %s (refused)",
				               dir, listed[i], CSA_BACKUP_MANIFEST);
	}
	if (rc == CSA_OK)
		rc = no_strays(dir, "", listed, n, err);
	free(listed);
	if (rc == CSA_OK && manifest)
		*manifest = man;
	else
		json_decref(man);
	return rc;
}

int csa_backup_restore(const char *dir, const char *target, json_t **report, struct csa_err *err)
{
	if (report)
		*report = NULL;
	if (!target || !*target)
		return csa_error(err, CSA_EINVAL, "no directory to restore into");
	int absent = absent_or_empty(target, "the directory to restore into", err);
	if (absent < 0)
		return absent;
	json_t *man = NULL;
	/* everything is checked before anything is written */
	int rc = csa_backup_check(dir, &man, err);
	if (rc)
		return rc;
	/* A backup of a workspace whose tickets are files restores into files:
	 * opened with DATABASE_URL set, the restored workspace would be the
	 * database's and its journal never replayed. One of a database's goes
	 * into the (empty) database the restored workspace is configured for. */
	json_t *dbmeta = json_object_get(man, "database");
	const char *dburl = getenv("DATABASE_URL");
	if (!dbmeta && dburl && *dburl) {
		json_decref(man);
		return csa_error(err, CSA_ESTATE,
		                 "csa restore: DATABASE_URL is set, and backup '%s' is of a "
		                 "workspace whose tickets are files: unset it for the restore",
		                 dir);
	}
	if ((rc = csa_fs_mkdirs(target, err)))
		goto out;
	if (chmod(target, CSA_DIR_MODE) != 0) {
		rc = csa_error_sys(err, "cannot make '%s' private (mode 0700)", target);
		goto out;
	}
	size_t i;
	json_t *f;
	json_array_foreach(json_object_get(man, "files"), i, f)
	{
		const char *rel = csa_json_str(f, "path");
		char src[PATH_SZ], dst[PATH_SZ], hex[CSA_SHA256_HEX_LEN];
		if (dbmeta && strncmp(rel, "db/", 3) == 0)
			continue; /* the database's tables: loaded below, not files */
		if ((rc = join(src, sizeof(src), dir, rel, err)) ||
		    (rc = join(dst, sizeof(dst), target, rel, err)))
			break;
		int fd = csa_fs_open(src, O_RDONLY, 0);
		if (fd < 0) {
			rc = csa_error_sys(err, "cannot open '%s'", src);
			break;
		}
		long long bytes = 0;
		rc = copy_fd(fd, src, -1, dst, hex, &bytes, err);
		close(fd);
		/* checked again as copied: the backup may change after the check */
		if (rc == CSA_OK && strcmp(hex, csa_json_str(f, "sha256")) != 0)
			rc = csa_error(err, CSA_ECORRUPT,
			               "backup '%s': '%s' changed while it was restored", dir, rel);
		if (rc)
			break;
	}
	if (rc == CSA_OK)
		rc = sync_tree(target, err);
	/* the layout's empty directories, then recovery over the journal */
	struct csa_ws *ws = NULL;
	if (rc == CSA_OK && (rc = csa_ws_init(target, err)) == CSA_OK &&
	    (rc = csa_ws_open(target, &ws, err)) == CSA_OK) {
		if (dbmeta && !csa_store_is_pg(ws->store))
			rc = csa_error(err, CSA_ESTATE,
			               "backup '%s' holds a database (%s): set DATABASE_URL to a new, "
			               "empty database to restore it into",
			               dir, csa_json_str(dbmeta, "where"));
		else if (dbmeta)
			rc = csa_pg_load(ws->pg, dir, dbmeta, err);
		csa_ws_close(ws);
	}
	if (rc) {
		csa_error_prefix(err,
		                 "restore into '%s' stopped half way (remove it and restore "
		                 "again): ",
		                 target);
		goto out;
	}
	if (report)
		*report =
		    json_pack("{s:s, s:s, s:I, s:O?}", "dir", dir, "restored", target, "files",
		              (json_int_t)json_array_size(json_object_get(man, "files")), "tickets",
		              json_object_get(man, "tickets"));
out:
	json_decref(man);
	return rc;
}

/* ---- the scheduled backup --------------------------------------------- */

/* The time of a scheduled backup's name, or -1 when it is not one. */
static int64_t scheduled_ms(const char *name)
{
	/* csa-YYYYMMDDTHHMMSSZ */
	if (strlen(name) != strlen(SCHEDULED_NAME) || strncmp(name, SCHEDULED_PFX, 4) != 0 ||
	    name[12] != 'T' || name[19] != 'Z')
		return -1;
	for (int i = 4; i < 19; i++)
		if (i != 12 && (name[i] < '0' || name[i] > '9'))
			return -1;
	char iso[32];
	snprintf(iso, sizeof(iso), "%.4s-%.2s-%.2sT%.2s:%.2s:%.2s.000Z", name + 4, name + 8,
	         name + 10, name + 13, name + 15, name + 17);
	int64_t ms;
	return csa_ts_parse(iso, &ms) == CSA_OK ? ms : -1;
}

int csa_backup_scheduled(struct csa_ws *ws, const char *parent, int keep, double every_s,
                         json_t **report, struct csa_err *err)
{
	if (report)
		*report = NULL;
	if (keep < 1)
		return csa_error(err, CSA_EINVAL, "backup.keep must be at least 1");
	int rc = csa_fs_mkdirs(parent, err);
	if (rc)
		return rc;
	DIR *d = opendir(parent);
	if (!d)
		return csa_error_sys(err, "cannot read backup directory '%s'", parent);
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int oom = 0;
	while (!oom && (de = readdir(d))) {
		if (scheduled_ms(de->d_name) < 0)
			continue; /* not ours: left alone */
		if (n == cap) {
			char **more = realloc(names, (cap ? 2 * cap : 16) * sizeof(*names));
			if (!more) {
				oom = 1;
				break;
			}
			names = more;
			cap = cap ? 2 * cap : 16;
		}
		if (!(names[n] = strdup(de->d_name)))
			oom = 1;
		else
			n++;
	}
	closedir(d);
	if (oom) {
		rc = csa_error(err, CSA_ENOMEM, "out of memory listing '%s'", parent);
		goto out;
	}
	if (n)
		qsort(names, n, sizeof(*names), str_cmp); /* the names sort by time */
	char path[PATH_SZ];
	int64_t now = csa_now_ms(), newest = -1;
	for (size_t i = n; i-- > 0 && newest < 0;) {
		snprintf(path, sizeof(path), "%s/%s/%s", parent, names[i], CSA_BACKUP_MANIFEST);
		if (access(path, F_OK) == 0)
			newest = scheduled_ms(names[i]);
	}
	if (newest >= 0 && (double)(now - newest) < every_s * 1000.0)
		goto out; /* not due */
	char name[32], ts[CSA_TS_LEN];
	csa_ts_format(now, ts); /* YYYY-MM-DDTHH:MM:SS.mmmZ */
	snprintf(name, sizeof(name), "%s%.4s%.2s%.2sT%.2s%.2s%.2sZ", SCHEDULED_PFX, ts, ts + 5,
	         ts + 8, ts + 11, ts + 14, ts + 17);
	if ((rc = join(path, sizeof(path), parent, name, err)))
		goto out;
	if ((rc = csa_backup_take(ws, path, report, err)))
		goto out;
	/* keep the newest 'keep' whole ones (the new one among them); an
	 * unfinished one older than the new one is a failed attempt */
	int kept = 1;
	for (size_t i = n; i-- > 0;) {
		char man[PATH_SZ];
		snprintf(path, sizeof(path), "%s/%s", parent, names[i]);
		snprintf(man, sizeof(man), "%s/%s", path, CSA_BACKUP_MANIFEST);
		int whole = access(man, F_OK) == 0;
		if (whole && kept < keep) {
			kept++;
			continue;
		}
		if (strcmp(names[i], name) != 0 && rmtree(path) != 0 && rc == CSA_OK)
			rc = csa_error_sys(err, "cannot remove old backup '%s'", path);
	}
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}
