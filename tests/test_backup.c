/* Backups and restore (store/backup.h, `csa backup`, `csa restore`): a
 * backup taken while a writer commits is one instant of the store, whole
 * and private; a damaged backup is refused before anything is written;
 * the scheduled backup keeps backup.keep copies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "automation/ledger.h"
#include "base/json.h"
#include "outbound/outbox.h"
#include "store/backup.h"
#include "store/mesh.h"
#include "store/store.h"
#include "store/ws.h"
#include "support/tmesh.h"
#include "support/tutil.h"

#define K            40 /* tickets the writer updates round robin */
#define CREATE_EVERY 10 /* a new ticket after every tenth update */

/* ---- the writer ------------------------------------------------------- */

/* Commits in one total order: update g sets ticket (g % K) to version
 * g / K + 1; after every CREATE_EVERY-th update a new ticket X<n> is
 * created. Each commit is followed by a ledger record and an outbox item
 * (so the ledger and a SQLite database change during the backup too). */
struct writer {
	struct csa_ws *ws;
	struct csa_ledger *ledger;
	struct csa_outbox *outbox;
	atomic_int stop;
	atomic_long commits;
	int failed;
	char why[512];
};

static int set_version(void *ctx, struct csa_ticket *tk, unsigned *docs, struct csa_err *err)
{
	(void)err;
	tm_set(tk, *(long *)ctx);
	*docs = CSA_DOC_ALL;
	return CSA_OK;
}

static void *writer_run(void *arg)
{
	struct writer *w = arg;
	struct csa_err err = {0};
	for (long g = 0; !atomic_load(&w->stop); g++) {
		char id[32];
		long v = g / K + 1;
		snprintf(id, sizeof(id), "W%03ld", g % K);
		int rc = csa_store_update(w->ws->store, id, 0, set_version, &v, &err);
		if (rc == CSA_OK && g % CREATE_EVERY == CREATE_EVERY - 1) {
			char xid[32];
			snprintf(xid, sizeof(xid), "X%05ld", g / CREATE_EVERY);
			const char *ids[1] = {xid};
			rc = tm_create(w->ws, ids, 1);
			if (rc)
				snprintf(err.msg, sizeof(err.msg), "creating %s failed", xid);
		}
		json_t *p = json_pack("{s:I}", "g", (json_int_t)g);
		char key[32];
		snprintf(key, sizeof(key), "k-%ld", g);
		if (rc == CSA_OK)
			rc = csa_ledger_append(w->ledger, "test_commit", id, p, NULL, &err);
		if (rc == CSA_OK)
			rc = csa_outbox_enqueue(w->outbox, key, id, "test", "http://127.0.0.1:9/x",
			                        p, &err) < 0
			         ? CSA_EIO
			         : CSA_OK;
		json_decref(p);
		if (rc) {
			w->failed = 1;
			snprintf(w->why, sizeof(w->why), "%s", err.msg);
			break;
		}
		atomic_fetch_add(&w->commits, 1);
	}
	return NULL;
}

static void wait_commits(struct writer *w, long n)
{
	while (atomic_load(&w->commits) < n && !w->failed)
		usleep(2000);
}

/* ---- helpers ---------------------------------------------------------- */

static void flip_byte(const char *path, long at)
{
	FILE *f = fopen(path, "r+b");
	assert_non_null(f);
	assert_int_equal(fseek(f, at, SEEK_SET), 0);
	int c = fgetc(f);
	assert_true(c != EOF);
	assert_int_equal(fseek(f, at, SEEK_SET), 0);
	fputc(c ^ 0x20, f);
	fclose(f);
}

static int dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
	closedir(d);
	return n;
}

static long outbox_items(const char *db)
{
	sqlite3 *s = NULL;
	long n = -1;
	sqlite3_stmt *st = NULL;
	if (sqlite3_open_v2(db, &s, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(s, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW &&
	    strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0) {
		sqlite3_finalize(st);
		st = NULL;
		sqlite3_stmt *q = NULL;
		/* every table's rows: the outbox's item table by whatever name */
		if (sqlite3_prepare_v2(s,
		                       "SELECT name FROM sqlite_master WHERE type='table' AND "
		                       "name NOT LIKE 'sqlite_%'",
		                       -1, &q, NULL) == SQLITE_OK) {
			n = 0;
			while (sqlite3_step(q) == SQLITE_ROW) {
				char sql[300];
				snprintf(sql, sizeof(sql), "SELECT count(*) FROM \"%s\"",
				         (const char *)sqlite3_column_text(q, 0));
				sqlite3_stmt *c = NULL;
				if (sqlite3_prepare_v2(s, sql, -1, &c, NULL) == SQLITE_OK &&
				    sqlite3_step(c) == SQLITE_ROW)
					n += sqlite3_column_int64(c, 0);
				sqlite3_finalize(c);
			}
		}
		sqlite3_finalize(q);
	}
	sqlite3_finalize(st);
	sqlite3_close(s);
	return n;
}

/* The version of ticket 'id' as its three files in backup 'dir' hold it
 * (read directly, no recovery over the backed-up journal in between): -1
 * when they disagree, -2 when one is missing. */
static long backup_version(const char *dir, const char *id)
{
	static const char *const fmt[3] = {"%s/Tickets/T_ext/E_%s.json",
	                                   "%s/Tickets/T_int/I_%s.json",
	                                   "%s/Tickets/tickets/T_%s.json"};
	struct csa_ticket tk = {0};
	json_t **doc[3] = {&tk.e, &tk.i, &tk.t};
	for (int k = 0; k < 3; k++) {
		char path[700];
		snprintf(path, sizeof(path), fmt[k], dir, id);
		*doc[k] = json_load_file(path, 0, NULL);
	}
	long v = tk.e && tk.i && tk.t ? tm_version(&tk) : -2;
	json_decref(tk.e);
	json_decref(tk.i);
	json_decref(tk.t);
	return v;
}

/* A quiet workspace with a few tickets, a ledger record and an outbox. */
static char *small_workspace(void)
{
	char *dir = t_tmpdir("bk-src");
	struct csa_err err = {0};
	struct csa_ws *ws = NULL;
	assert_int_equal(csa_ws_init(dir, &err), CSA_OK);
	assert_int_equal(csa_ws_open(dir, &ws, &err), CSA_OK);
	const char *ids[3] = {"A1", "A2", "A3"};
	assert_int_equal(tm_create(ws, ids, 3), 0);
	struct csa_ledger *l = NULL;
	assert_int_equal(csa_ledger_open_ws(ws, &l, &err), CSA_OK);
	assert_int_equal(csa_ledger_append(l, "test_commit", "A1", NULL, NULL, &err), CSA_OK);
	csa_ledger_close(l);
	csa_ws_close(ws);
	return dir;
}

/* ---- tests ------------------------------------------------------------ */

/*
 * A backup (the CLI, another process) taken while a writer thread keeps
 * committing, restored into a new directory: the restored workspace
 * passes csa verify and csa audit verify; every ticket's three documents
 * carry the same version (no half-written ticket); the versions and the
 * created tickets are those of one cut of the writer's commit order (a
 * prefix); the outbox database is whole; no file or directory of the
 * backup or the restore is open to group or others.
 */
static void backup_during_writes_restores_one_instant(void **state)
{
	(void)state;
	char *src = t_tmpdir("bk-src"), *parent = t_tmpdir("bk-out");
	char out[600], target[600], path[700];
	snprintf(out, sizeof(out), "%s/backup", parent);
	snprintf(target, sizeof(target), "%s/restored", parent);
	struct csa_err err = {0};
	struct writer w = {0};
	assert_int_equal(csa_ws_init(src, &err), CSA_OK);
	assert_int_equal(csa_ws_open(src, &w.ws, &err), CSA_OK);
	const char *ids[K];
	char names[K][8];
	for (int k = 0; k < K; k++) {
		snprintf(names[k], sizeof(names[k]), "W%03d", k);
		ids[k] = names[k];
	}
	assert_int_equal(tm_create(w.ws, ids, K), 0);
	/* checkpoints every few commits: the backed-up journal then holds
	 * little, so the documents in the backup must be right by themselves */
	csa_mesh_set_checkpoint_bytes(w.ws->store, 16384);
	assert_int_equal(csa_ledger_open_ws(w.ws, &w.ledger, &err), CSA_OK);
	snprintf(path, sizeof(path), "%s/outbox.db", src);
	assert_int_equal(csa_outbox_open(path, 3, &w.outbox, &err), CSA_OK);

	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, writer_run, &w), 0);
	wait_commits(&w, 150);
	/* three backups one after another while the writer goes on: each one
	 * must hold; the last is restored */
	char *o = NULL, *e = NULL;
	json_t *rep = NULL;
	for (int round = 0; round < 3; round++) {
		snprintf(out, sizeof(out), "%s/backup%d", parent, round);
		long before = atomic_load(&w.commits);
		int st = t_csa(NULL, &o, &e, "--dir %s backup --out %s", src, out);
		long after = atomic_load(&w.commits);
		if (st != 0)
			fprintf(stderr, "backup: %s\n", e);
		assert_int_equal(st, 0);
		fprintf(stderr, "writer commits: %ld before backup %d, %ld when it returned\n",
		        before, round, after);
		assert_true(after > before); /* the writer committed while the backup ran */
		json_decref(rep);
		assert_int_equal(csa_json_parse(o, strlen(o), "backup output", &rep, &err), CSA_OK);
		free(o);
		free(e);
		char first[600] = "";
		assert_int_equal(t_loose_modes(out, first, sizeof(first)), 0);
		/* the documents as backed up, before any recovery over the
		 * backed-up journal: each ticket whole, and the tickets of one
		 * cut of the commit order */
		long bv[K];
		for (int k = 0; k < K; k++) {
			bv[k] = backup_version(out, names[k]);
			assert_true(bv[k] >= 0);
			if (k)
				assert_true(bv[k] <= bv[k - 1] && bv[k] >= bv[0] - 1);
		}
	}
	/* a few more commits after the backups, so the writer outlives them */
	wait_commits(&w, atomic_load(&w.commits) + 20);
	atomic_store(&w.stop, 1);
	pthread_join(th, NULL);
	assert_false(w.failed && (fprintf(stderr, "writer: %s\n", w.why), 1));
	csa_outbox_close(w.outbox);
	csa_ledger_close(w.ledger);
	csa_ws_close(w.ws);

	int st;
	char first[600] = "";
	st = t_csa(NULL, NULL, &e, "restore %s --dir %s", out, target);
	if (st != 0)
		fprintf(stderr, "restore: %s\n", e);
	assert_int_equal(st, 0);
	free(e);
	assert_int_equal(t_csa(NULL, &o, NULL, "--dir %s verify", target), 0);
	free(o);
	assert_int_equal(t_csa(NULL, &o, NULL, "--dir %s audit verify", target), 0);
	free(o);
	assert_int_equal(t_loose_modes(target, first, sizeof(first)), 0);

	/* one instant: versions of one cut of the commit order */
	struct csa_ws *rs = NULL;
	assert_int_equal(csa_ws_open(target, &rs, &err), CSA_OK);
	long v[K], G = 0;
	for (int k = 0; k < K; k++) {
		v[k] = tm_load_version(rs, names[k]);
		assert_true(v[k] >= 0); /* -1: the three documents disagree */
		G += v[k];
		if (k)
			assert_true(v[k] <= v[k - 1] && v[k] >= v[0] - 1);
	}
	char **all = NULL;
	size_t n = 0;
	assert_int_equal(csa_store_ids(rs->store, &all, &n, &err), CSA_OK);
	long nx = (long)n - K;
	for (long x = 0; x < nx; x++) {
		char xid[32];
		snprintf(xid, sizeof(xid), "X%05ld", x);
		assert_true(tm_load_version(rs, xid) == 0); /* contiguous, whole */
	}
	csa_store_ids_free(all, n);
	if (G % CREATE_EVERY == 0 && G > 0)
		assert_true(nx == G / CREATE_EVERY || nx == G / CREATE_EVERY - 1);
	else
		assert_int_equal(nx, G / CREATE_EVERY);
	assert_int_equal(csa_json_int(rep, "tickets", -1), (long long)n);
	fprintf(stderr, "restored: %ld updates, %ld created tickets\n", G, nx);
	assert_true(G >= 150 - nx);
	csa_ws_close(rs);
	json_decref(rep);

	/* SQLite's online backup: a whole database with the writer's items */
	snprintf(path, sizeof(path), "%s/outbox.db", target);
	long items = outbox_items(path);
	assert_true(items >= 150);

	t_rmrf(src);
	t_rmrf(parent);
	free(src);
	free(parent);
}

/* One byte changed anywhere in a backup: restore names the file, refuses,
 * and writes nothing (a new target is not created, an empty one stays
 * empty). A file added to or missing from a backup is refused too. */
static void damaged_backup_is_refused(void **state)
{
	(void)state;
	char *src = small_workspace(), *parent = t_tmpdir("bk-out");
	char out[600], target[600], path[700];
	snprintf(out, sizeof(out), "%s/backup", parent);
	snprintf(target, sizeof(target), "%s/restored", parent);
	assert_int_equal(t_csa(NULL, NULL, NULL, "--dir %s backup --out %s", src, out), 0);

	/* intact, it restores: the refusals below are the damage's doing */
	char ok_target[600];
	snprintf(ok_target, sizeof(ok_target), "%s/intact", parent);
	assert_int_equal(t_csa(NULL, NULL, NULL, "restore %s --dir %s", out, ok_target), 0);

	static const char *const victims[] = {"Tickets/tickets/T_A2.json", "audit/ledger.jsonl",
	                                      "Tickets/T_ext/E_A3.json"};
	for (size_t i = 0; i < sizeof(victims) / sizeof(victims[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", out, victims[i]);
		flip_byte(path, 5);
		char *e = NULL;
		assert_int_equal(t_csa(NULL, NULL, &e, "restore %s --dir %s", out, target), 1);
		assert_non_null(strstr(e, victims[i]));
		assert_non_null(strstr(e, "checksum"));
		free(e);
		struct stat sb;
		assert_int_not_equal(stat(target, &sb), 0); /* not created */
		mkdir(target, 0700);
		assert_int_equal(t_csa(NULL, NULL, &e, "restore %s --dir %s", out, target), 1);
		free(e);
		assert_int_equal(dir_entries(target), 0); /* still empty */
		rmdir(target);
		flip_byte(path, 5); /* put back */
	}

	/* a stray file, then a missing one */
	snprintf(path, sizeof(path), "%s/Tickets/tickets/extra.txt", out);
	t_write(path, "not backed up\n");
	char *e = NULL;
	assert_int_equal(t_csa(NULL, NULL, &e, "restore %s --dir %s", out, target), 1);
	assert_non_null(strstr(e, "Tickets/tickets/extra.txt"));
	free(e);
	unlink(path);
	snprintf(path, sizeof(path), "%s/Tickets/T_int/I_A1.json", out);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(t_csa(NULL, NULL, &e, "restore %s --dir %s", out, target), 1);
	assert_non_null(strstr(e, "Tickets/T_int/I_A1.json"));
	free(e);
	struct stat sb;
	assert_int_not_equal(stat(target, &sb), 0);

	t_rmrf(src);
	t_rmrf(parent);
	free(src);
	free(parent);
}

/* A manifest is input: a path leaving the backup (or the target) is
 * refused before any file is read or written. */
static void manifest_paths_are_checked(void **state)
{
	(void)state;
	char *src = small_workspace(), *parent = t_tmpdir("bk-out");
	char out[600], target[600], path[700];
	snprintf(out, sizeof(out), "%s/backup", parent);
	snprintf(target, sizeof(target), "%s/restored", parent);
	assert_int_equal(t_csa(NULL, NULL, NULL, "--dir %s backup --out %s", src, out), 0);
	snprintf(path, sizeof(path), "%s/%s", out, CSA_BACKUP_MANIFEST);
	json_t *man = NULL;
	struct csa_err err = {0};
	assert_int_equal(csa_json_load_file(path, 1 << 24, &man, &err), CSA_OK);
	json_t *f = json_array_get(json_object_get(man, "files"), 0);
	json_object_set_new(f, "path", json_string("../../escape"));
	assert_int_equal(json_dump_file(man, path, 0), 0);
	json_decref(man);
	char *e = NULL;
	assert_int_equal(t_csa(NULL, NULL, &e, "restore %s --dir %s", out, target), 1);
	assert_non_null(strstr(e, "not a plain relative path"));
	free(e);
	struct stat sb;
	assert_int_not_equal(stat(target, &sb), 0);
	/* nor a backup inside the workspace, nor into a directory with files */
	snprintf(path, sizeof(path), "%s/inner", src);
	assert_int_equal(t_csa(NULL, NULL, &e, "--dir %s backup --out %s", src, path), 1);
	assert_non_null(strstr(e, "inside the workspace"));
	free(e);
	assert_int_equal(t_csa(NULL, NULL, &e, "--dir %s backup --out %s", src, out), 1);
	assert_non_null(strstr(e, "not empty"));
	free(e);
	t_rmrf(src);
	t_rmrf(parent);
	free(src);
	free(parent);
}

/* The scheduled backup: taken when none is newer than the interval,
 * keeping the newest 'keep' whole ones and removing a failed attempt. */
static void scheduled_backups_rotate(void **state)
{
	(void)state;
	char *src = small_workspace(), *parent = t_tmpdir("bk-sched");
	struct csa_err err = {0};
	struct csa_ws *ws = NULL;
	assert_int_equal(csa_ws_open(src, &ws, &err), CSA_OK);
	char stale[700];
	/* a failed attempt from long ago (no manifest) and a stranger */
	snprintf(stale, sizeof(stale), "%s/csa-20200101T000000Z", parent);
	mkdir(stale, 0700);
	snprintf(stale, sizeof(stale), "%s/notes", parent);
	mkdir(stale, 0700);
	json_t *rep = NULL;
	for (int i = 0; i < 3; i++) {
		if (i)
			sleep(1); /* names have a resolution of one second */
		assert_int_equal(csa_backup_scheduled(ws, parent, 2, 0, &rep, &err), CSA_OK);
		assert_non_null(rep);
		json_decref(rep);
	}
	/* two backups and the stranger remain */
	assert_int_equal(dir_entries(parent), 3);
	snprintf(stale, sizeof(stale), "%s/csa-20200101T000000Z", parent);
	struct stat sb;
	assert_int_not_equal(stat(stale, &sb), 0);
	/* not due: the newest is younger than a day */
	assert_int_equal(csa_backup_scheduled(ws, parent, 2, 86400, &rep, &err), CSA_OK);
	assert_null(rep);
	assert_int_equal(dir_entries(parent), 3);
	/* every kept one is whole */
	DIR *d = opendir(parent);
	struct dirent *de;
	int checked = 0;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "csa-", 4) != 0)
			continue;
		char p[700];
		snprintf(p, sizeof(p), "%s/%s", parent, de->d_name);
		assert_int_equal(csa_backup_check(p, NULL, &err), CSA_OK);
		checked++;
	}
	closedir(d);
	assert_int_equal(checked, 2);
	csa_ws_close(ws);
	/* the setting is checked where csa.json is read */
	char cfg[700];
	snprintf(cfg, sizeof(cfg), "%s/csa.json", src);
	t_write(cfg, "{\"backup\": {\"dir\": \"relative/dir\"}}");
	char *e = NULL;
	assert_int_equal(t_csa(NULL, NULL, &e, "--dir %s verify", src), 1);
	assert_non_null(strstr(e, "backup.dir"));
	free(e);
	t_write(cfg, "{\"backup\": {\"dir\": \"/x\", \"keep\": 0}}");
	assert_int_equal(t_csa(NULL, NULL, &e, "--dir %s verify", src), 1);
	assert_non_null(strstr(e, "backup.keep"));
	free(e);
	t_rmrf(src);
	t_rmrf(parent);
	free(src);
	free(parent);
}

/* csa serve with backup.dir set takes a backup there by itself (the first
 * look comes ten seconds after start), and SIGTERM still stops it. */
static void serve_takes_the_scheduled_backup(void **state)
{
	(void)state;
	char *src = small_workspace(), *parent = t_tmpdir("bk-serve");
	char cfg[700], text[1000];
	snprintf(cfg, sizeof(cfg), "%s/csa.json", src);
	snprintf(text, sizeof(text), "{\"backup\": {\"dir\": \"%s/daily\", \"keep\": 2}}", parent);
	t_write(cfg, text);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 1);
		execl(CSA_BIN, CSA_BIN, "serve", "--dir", src, "--port", "0", "--bind", "127.0.0.1",
		      (char *)NULL);
		_exit(127);
	}
	assert_true(pid > 0);
	char daily[700], found[800] = "";
	snprintf(daily, sizeof(daily), "%s/daily", parent);
	for (int waited = 0; waited < 60000 && !found[0]; waited += 250) {
		usleep(250000);
		DIR *d = opendir(daily);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			char man[800];
			snprintf(man, sizeof(man), "%s/%s/%s", daily, de->d_name,
			         CSA_BACKUP_MANIFEST);
			if (strncmp(de->d_name, "csa-", 4) == 0 && access(man, F_OK) == 0)
				snprintf(found, sizeof(found), "%s/%s", daily, de->d_name);
		}
		if (d)
			closedir(d);
	}
	kill(pid, SIGTERM);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_true(found[0]);
	struct csa_err err = {0};
	json_t *man = NULL;
	assert_int_equal(csa_backup_check(found, &man, &err), CSA_OK);
	assert_int_equal(csa_json_int(man, "tickets", -1), 3);
	json_decref(man);
	char first[600] = "";
	assert_int_equal(t_loose_modes(daily, first, sizeof(first)), 0);
	t_rmrf(src);
	t_rmrf(parent);
	free(src);
	free(parent);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(backup_during_writes_restores_one_instant),
	    cmocka_unit_test(damaged_backup_is_refused),
	    cmocka_unit_test(manifest_paths_are_checked),
	    cmocka_unit_test(scheduled_backups_rotate),
	    cmocka_unit_test(serve_takes_the_scheduled_backup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
