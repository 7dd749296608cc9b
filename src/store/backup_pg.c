/* csa's tables in PostgreSQL into a backup and back: see store/backup_pg.h. */
#include "store/backup_pg.h"
#include "base/fsops.h"
#include "base/json.h"
#include "store/pg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PATH_SZ    4096
#define COPY_BLOCK (1u << 16)
#define DUMP_DIR   "db"

/* The tables and sequences csa made: every migration names them csa_*
 * (schema_migrations is the migrations' own, applied by opening). */
static const char list_tables[] =
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname LIKE 'csa\\_%' "
    "ORDER BY 1";
static const char list_sequences[] =
    "SELECT sequencename, last_value FROM pg_sequences "
    "WHERE schemaname = current_schema() AND sequencename LIKE 'csa\\_%' ORDER BY 1";

/* Which csa table refers to which (foreign keys), to load in order. */
static const char list_foreign_keys[] =
    "SELECT c.relname, p.relname FROM pg_constraint k "
    "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE k.contype = 'f' AND n.nspname = current_schema() AND c.relname <> p.relname";

/* A name from the catalogue or a manifest, used in SQL and as a file
 * name: csa_ and lower-case letters, digits, underscores. */
static int plain_name(const char *s)
{
	size_t n = strlen(s);
	if (n < 5 || n > 63 || strncmp(s, "csa_", 4) != 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return 0;
	return 1;
}

static int schema_version(const char *where, PGconn *c, int *out, struct csa_err *err)
{
	PGresult *r = NULL;
	int rc = csa_pg_exec(where, c, "reading the schema version",
	                     "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, NULL, &r,
	                     err);
	if (rc == CSA_OK)
		*out = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return rc;
}

/* COPY one table out into 'path', hashing it; *rows, *bytes, hex. */
static int copy_out(const char *where, PGconn *c, const char *table, const char *path,
                    long long *rows, long long *bytes, char hex[CSA_SHA256_HEX_LEN],
                    struct csa_err *err)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "COPY %s TO STDOUT", table);
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COPY_OUT) {
		int rc = csa_pg_error(where, err, c, r, "dumping table %s", table);
		PQclear(r);
		return rc;
	}
	PQclear(r);
	int fd = csa_fs_open(path, O_WRONLY | O_CREAT | O_EXCL, CSA_FILE_MODE);
	struct csa_sha256_ctx *sha = csa_sha256_begin();
	int rc = CSA_OK;
	if (fd < 0)
		rc = csa_error_sys(err, "cannot create '%s'", path);
	else if (!sha)
		rc = csa_error(err, CSA_ENOMEM, "out of memory dumping table %s", table);
	*rows = *bytes = 0;
	for (;;) {
		char *buf = NULL;
		int n = PQgetCopyData(c, &buf, 0);
		if (n < 0) {
			if (n == -2 && rc == CSA_OK)
				rc = csa_pg_error(where, err, c, NULL, "dumping table %s", table);
			break;
		}
		/* a failed write still drains the copy, so the connection stays usable */
		if (rc == CSA_OK && (csa_fs_write_all(fd, buf, (size_t)n) < 0 ||
		                     csa_sha256_update(sha, buf, (size_t)n)))
			rc = csa_error_sys(err, "cannot write '%s'", path);
		*rows += 1;
		*bytes += n;
		PQfreemem(buf);
	}
	while ((r = PQgetResult(c))) {
		if (rc == CSA_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
			rc = csa_pg_error(where, err, c, r, "dumping table %s", table);
		PQclear(r);
	}
	if (rc == CSA_OK && csa_fs_fsync(fd, 1) < 0)
		rc = csa_error_sys(err, "cannot fsync '%s'", path);
	if (fd >= 0 && close(fd) < 0 && rc == CSA_OK)
		rc = csa_error_sys(err, "cannot close '%s'", path);
	if (rc == CSA_OK) {
		if (csa_sha256_end(sha, hex))
			rc = csa_error(err, CSA_EIO, "cannot compute the SHA-256 of '%s'", path);
		sha = NULL; /* freed by end */
	}
	csa_sha256_free(sha);
	return rc;
}

int csa_pg_dump(struct csa_pg *pg, const char *out_dir, csa_pg_dump_file_fn fn, void *ctx,
                json_t **meta, struct csa_err *err)
{
	const char *where = csa_pg_where(pg);
	char dir[PATH_SZ];
	*meta = NULL;
	if (snprintf(dir, sizeof(dir), "%s/%s", out_dir, DUMP_DIR) >= (int)sizeof(dir))
		return csa_error(err, CSA_ELIMIT, "path too long: '%s/%s'", out_dir, DUMP_DIR);
	int rc = csa_fs_mkdirs(dir, err);
	if (rc)
		return rc;
	PGconn *c = NULL;
	if ((rc = csa_pg_get(pg, &c, err)))
		return rc;
	PGresult *tables = NULL, *seqs = NULL;
	json_t *tj = json_object(), *sj = json_object();
	int version = 0;
	if (!tj || !sj) {
		rc = csa_error(err, CSA_ENOMEM, "out of memory dumping the database");
		goto out;
	}
	/* one snapshot for every table: they agree as of one instant */
	if ((rc = csa_pg_exec(where, c, "starting the dump",
	                      "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, NULL,
	                      err)) ||
	    (rc = schema_version(where, c, &version, err)) ||
	    (rc = csa_pg_exec(where, c, "listing csa's tables", list_tables, 0, NULL, &tables,
	                      err)) ||
	    (rc = csa_pg_exec(where, c, "listing csa's sequences", list_sequences, 0, NULL, &seqs,
	                      err)))
		goto out;
	for (int i = 0; i < PQntuples(tables) && rc == CSA_OK; i++) {
		const char *t = PQgetvalue(tables, i, 0);
		if (!plain_name(t))
			continue; /* not one csa made */
		char rel[PATH_SZ], path[PATH_SZ + 8], hex[CSA_SHA256_HEX_LEN];
		snprintf(rel, sizeof(rel), "%s/%s.copy", DUMP_DIR, t);
		snprintf(path, sizeof(path), "%s/%s", out_dir, rel);
		long long rows = 0, bytes = 0;
		if ((rc = copy_out(where, c, t, path, &rows, &bytes, hex, err)) ||
		    (rc = fn(ctx, rel, bytes, hex, err)))
			break;
		if (json_object_set_new(tj, t, json_integer(rows)))
			rc = csa_error(err, CSA_ENOMEM, "out of memory dumping the database");
	}
	for (int i = 0; i < PQntuples(seqs) && rc == CSA_OK; i++) {
		const char *s = PQgetvalue(seqs, i, 0);
		if (!plain_name(s) || PQgetisnull(seqs, i, 1))
			continue; /* never drawn from: nothing to carry over */
		if (json_object_set_new(sj, s, json_integer(strtoll(PQgetvalue(seqs, i, 1), NULL, 10))))
			rc = csa_error(err, CSA_ENOMEM, "out of memory dumping the database");
	}
	if (rc == CSA_OK)
		rc = csa_pg_exec(where, c, "ending the dump", "COMMIT", 0, NULL, NULL, err);
	if (rc == CSA_OK &&
	    !(*meta = json_pack("{s:i, s:s, s:O, s:O}", "schema_version", version, "where", where,
	                        "tables", tj, "sequences", sj)))
		rc = csa_error(err, CSA_ENOMEM, "out of memory dumping the database");
out:
	if (rc)
		csa_pg_rollback(c);
	PQclear(tables);
	PQclear(seqs);
	json_decref(tj);
	json_decref(sj);
	csa_pg_put(pg, c);
	return rc;
}

/* COPY one table in from 'path'; *rows: what the server says it took. */
static int copy_in(const char *where, PGconn *c, const char *table, const char *path,
                   long long *rows, struct csa_err *err)
{
	int fd = csa_fs_open(path, O_RDONLY, 0);
	if (fd < 0)
		return csa_error_sys(err, "cannot open '%s'", path);
	char sql[128];
	snprintf(sql, sizeof(sql), "COPY %s FROM STDIN", table);
	PGresult *r = PQexec(c, sql);
	int rc = CSA_OK;
	if (PQresultStatus(r) != PGRES_COPY_IN) {
		rc = csa_pg_error(where, err, c, r, "restoring table %s", table);
		PQclear(r);
		close(fd);
		return rc;
	}
	PQclear(r);
	char *buf = malloc(COPY_BLOCK);
	if (!buf)
		rc = csa_error(err, CSA_ENOMEM, "out of memory restoring table %s", table);
	while (rc == CSA_OK) {
		ssize_t n = read(fd, buf, COPY_BLOCK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = csa_error_sys(err, "cannot read '%s'", path);
		if (n <= 0)
			break;
		if (PQputCopyData(c, buf, (int)n) != 1)
			rc = csa_pg_error(where, err, c, NULL, "restoring table %s", table);
	}
	free(buf);
	close(fd);
	/* a failure ends the copy with an error: the transaction is rolled back */
	if (PQputCopyEnd(c, rc == CSA_OK ? NULL : "csa restore stopped") != 1 && rc == CSA_OK)
		rc = csa_pg_error(where, err, c, NULL, "restoring table %s", table);
	while ((r = PQgetResult(c))) {
		if (rc == CSA_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
			rc = csa_pg_error(where, err, c, r, "restoring table %s from '%s'", table,
			                  path);
		else if (rc == CSA_OK)
			*rows = strtoll(PQcmdTuples(r), NULL, 10);
		PQclear(r);
	}
	return rc;
}

static int is_in(const char **v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], name) == 0)
			return 1;
	return 0;
}

/* Table 't' may be loaded: every table of the dump it refers to is. */
static int ready(const PGresult *fks, const char *t, const json_t *tables, const char **done,
                 size_t ndone)
{
	for (int i = 0; i < PQntuples(fks); i++) {
		const char *from = PQgetvalue(fks, i, 0), *to = PQgetvalue(fks, i, 1);
		if (strcmp(from, t) == 0 && json_object_get(tables, to) && !is_in(done, ndone, to))
			return 0;
	}
	return 1;
}

/* Every csa table of the database must be empty. */
static int check_empty(const char *where, PGconn *c, struct csa_err *err)
{
	PGresult *tables = NULL;
	int rc = csa_pg_exec(where, c, "listing csa's tables", list_tables, 0, NULL, &tables, err);
	for (int i = 0; rc == CSA_OK && i < PQntuples(tables); i++) {
		const char *t = PQgetvalue(tables, i, 0);
		if (!plain_name(t))
			continue;
		char sql[128];
		snprintf(sql, sizeof(sql), "SELECT EXISTS (SELECT 1 FROM %s)", t);
		PGresult *r = NULL;
		if ((rc = csa_pg_exec(where, c, "checking the database is empty", sql, 0, NULL, &r,
		                      err)) == CSA_OK &&
		    strcmp(PQgetvalue(r, 0, 0), "t") == 0)
			rc = csa_error(err, CSA_ESTATE,
			               "the database at %s is not empty: table %s has rows (restore "
			               "into a new, empty database)",
			               where, t);
		PQclear(r);
	}
	PQclear(tables);
	return rc;
}

int csa_pg_load(struct csa_pg *pg, const char *from_dir, const json_t *meta,
                struct csa_err *err)
{
	const char *where = csa_pg_where(pg);
	json_t *tables = json_object_get(meta, "tables"), *seqs = json_object_get(meta, "sequences");
	int want = (int)json_integer_value(json_object_get(meta, "schema_version"));
	if (!json_is_object(tables) || !json_is_object(seqs) || want <= 0)
		return csa_error(err, CSA_ECORRUPT,
		                 "backup '%s': its manifest's \"database\" is not a dump's description",
		                 from_dir);
	PGconn *c = NULL;
	int rc = csa_pg_get(pg, &c, err), version = 0;
	if (rc)
		return rc;
	const char *t;
	json_t *v;
	if ((rc = csa_pg_exec(where, c, "starting the restore", "BEGIN", 0, NULL, NULL, err)) ||
	    (rc = schema_version(where, c, &version, err)))
		goto out;
	if (version != want) {
		rc = csa_error(err, CSA_ESTATE,
		               "backup '%s' is of database schema %d, the database at %s is at %d: "
		               "restore with the csa version that made the backup",
		               from_dir, want, where, version);
		goto out;
	}
	if ((rc = check_empty(where, c, err)))
		goto out;
	/* referenced tables first (rollback points before their documents) */
	PGresult *fks = NULL;
	if ((rc = csa_pg_exec(where, c, "listing csa's foreign keys", list_foreign_keys, 0, NULL,
	                      &fks, err)))
		goto out;
	size_t ntab = json_object_size(tables), loaded = 0;
	const char **done = calloc(ntab ? ntab : 1, sizeof(*done));
	if (!done)
		rc = csa_error(err, CSA_ENOMEM, "out of memory restoring the database");
	while (rc == CSA_OK && loaded < ntab) {
		size_t before = loaded;
		json_object_foreach(tables, t, v)
		{
			if (rc || is_in(done, loaded, t) || !ready(fks, t, tables, done, loaded))
				continue;
			if (!plain_name(t) || !json_is_integer(v)) {
				rc = csa_error(err, CSA_ECORRUPT, "backup '%s': '%s' is no table of csa",
				               from_dir, t);
				break;
			}
			char path[PATH_SZ];
			long long rows = -1;
			snprintf(path, sizeof(path), "%s/%s/%s.copy", from_dir, DUMP_DIR, t);
			if ((rc = copy_in(where, c, t, path, &rows, err)))
				break;
			if (rows != json_integer_value(v)) {
				rc = csa_error(err, CSA_ECORRUPT,
				               "backup '%s': table %s has %lld rows, its manifest says %lld",
				               from_dir, t, rows, (long long)json_integer_value(v));
				break;
			}
			done[loaded++] = t;
		}
		if (rc == CSA_OK && loaded == before)
			rc = csa_error(err, CSA_ESTATE,
			               "the tables of backup '%s' refer to one another in a circle: "
			               "no order loads them",
			               from_dir);
	}
	free(done);
	PQclear(fks);
	json_object_foreach(seqs, t, v)
	{
		if (rc)
			break;
		if (!plain_name(t) || !json_is_integer(v)) {
			rc = csa_error(err, CSA_ECORRUPT, "backup '%s': '%s' is no sequence of csa",
			               from_dir, t);
			break;
		}
		char val[32];
		snprintf(val, sizeof(val), "%lld", (long long)json_integer_value(v));
		const char *params[] = {t, val};
		rc = csa_pg_exec(where, c, "restoring a sequence", "SELECT setval($1::regclass, $2)",
		                 2, params, NULL, err);
	}
	if (rc == CSA_OK)
		rc = csa_pg_exec(where, c, "ending the restore", "COMMIT", 0, NULL, NULL, err);
out:
	if (rc)
		csa_pg_rollback(c);
	csa_pg_put(pg, c);
	return rc;
}
