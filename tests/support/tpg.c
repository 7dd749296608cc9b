/* A private PostgreSQL server for a test: see tpg.h. */
#include "support/tpg.h"
#include "support/tserver.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define TPG_BIN_DEFAULT "/usr/lib/postgresql/15/bin"
#define TPG_USER        "csa_test"

struct tpg {
	char bin[1024];
	char dir[512];  /* the temporary directory: data/, logs, socket */
	char data[600]; /* the data directory */
	char log[600];  /* the server's log */
	char password[33];
	char hostport[64];
	int port;
	int as_postgres; /* run the binaries as the postgres user */
	uid_t uid;
	gid_t gid;
	int guard_fd; /* write end of the pipe the guardian waits on */
	int done_fd;  /* read end of the pipe the guardian closes when done */
	int have_db;  /* the database of tpg_create_schema() exists */
};

/* Run argv[0] (a path) with stdout and stderr appended to 'log', as the
 * postgres user when pg->as_postgres. Returns the exit status, or -1. */
static int run(const struct tpg *pg, const char *log, char *const argv[])
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0) {
			dup2(nul, 0);
			close(nul);
		}
		if (pg->as_postgres &&
		    (setgroups(0, NULL) < 0 || setgid(pg->gid) < 0 || setuid(pg->uid) < 0)) {
			fprintf(stderr, "tpg: cannot become the postgres user: %s\n",
			        strerror(errno));
			_exit(126);
		}
		setenv("LC_ALL", "C", 1);
		unsetenv("PGDATA");
		unsetenv("PGPORT");
		unsetenv("PGHOST");
		execv(argv[0], argv);
		fprintf(stderr, "tpg: cannot run '%s': %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int stop_server(const struct tpg *pg, const char *mode)
{
	char stoplog[700];
	snprintf(stoplog, sizeof(stoplog), "%s/pg_ctl-stop.log", pg->dir);
	char pg_ctl[1100];
	snprintf(pg_ctl, sizeof(pg_ctl), "%s/pg_ctl", pg->bin);
	char *argv[] = {pg_ctl, "-D", (char *)pg->data, "-m", (char *)mode, "-w",
	                "-t",   "60", "stop",           NULL};
	return run(pg, stoplog, argv);
}

/* What the guardian (tserver.h) does before it removes the directory
 * once the test closed its end of the pipe (tpg_stop, or dying): stop the
 * server, at once (no shutdown checkpoint, the data is thrown away). */
static void guard_cleanup(void *ctx)
{
	struct tpg *pg = ctx;
	char pid[700];
	snprintf(pid, sizeof(pid), "%s/postmaster.pid", pg->data);
	if (access(pid, F_OK) == 0)
		stop_server(pg, "immediate");
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	return close(fd) == 0 && n == (ssize_t)strlen(text) ? 0 : -1;
}

/* pg_ctl start on pg->port; 0, or the exit status with the log's tail in
 * 'why'. */
static int start_server(struct tpg *pg, char *why, size_t whysz)
{
	char opts[1200], pg_ctl[1100], startlog[700];
	snprintf(pg_ctl, sizeof(pg_ctl), "%s/pg_ctl", pg->bin);
	snprintf(opts, sizeof(opts),
	         "-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s "
	         "-c unix_socket_permissions=0700 -c fsync=on -c synchronous_commit=on "
	         "-c full_page_writes=on -c max_connections=60 -c shared_buffers=16MB "
	         "-c log_min_messages=warning",
	         pg->port, pg->dir);
	snprintf(startlog, sizeof(startlog), "%s/pg_ctl-start.log", pg->dir);
	char *sargv[] = {pg_ctl, "-D", pg->data, "-l", pg->log, "-w",
	                 "-t",   "60", "-o",     opts, "start", NULL};
	int rc = run(pg, startlog, sargv);
	if (rc != 0) {
		char t[1500];
		tsrv_tail(pg->log, t, sizeof(t));
		tsrv_say(why, whysz, "pg_ctl start of '%s' on 127.0.0.1:%d failed (exit %d): %s",
		    pg->data, pg->port, rc, t);
	}
	return rc;
}

struct tpg *tpg_start(char *why, size_t whysz)
{
	struct tpg *pg = calloc(1, sizeof(*pg));
	if (!pg) {
		tsrv_say(why, whysz, "out of memory");
		return NULL;
	}
	pg->guard_fd = pg->done_fd = -1;
	const char *bin = getenv("CSA_PG_BIN");
	snprintf(pg->bin, sizeof(pg->bin), "%s", bin && *bin ? bin : TPG_BIN_DEFAULT);
	char initdb[1100], pg_ctl[1100];
	snprintf(initdb, sizeof(initdb), "%s/initdb", pg->bin);
	snprintf(pg_ctl, sizeof(pg_ctl), "%s/pg_ctl", pg->bin);
	if (access(initdb, X_OK) != 0 || access(pg_ctl, X_OK) != 0) {
		tsrv_say(why, whysz,
		    "PostgreSQL server binaries not found in '%s' (initdb, pg_ctl): "
		    "scripts/deps.sh installs Debian's postgresql, or set CSA_PG_BIN",
		    pg->bin);
		free(pg);
		return NULL;
	}
	if (geteuid() == 0) {
		struct passwd *pw = getpwnam("postgres");
		if (!pw) {
			tsrv_say(why, whysz,
			    "running as root, and PostgreSQL refuses root: there is no 'postgres' "
			    "user to run it as (Debian's postgresql package creates it)");
			free(pg);
			return NULL;
		}
		pg->as_postgres = 1;
		pg->uid = pw->pw_uid;
		pg->gid = pw->pw_gid;
	}
	/* under /tmp (or $TMPDIR), which the postgres user can reach */
	if (tsrv_mkdtemp("csa-pg", pg->dir, sizeof(pg->dir), why, whysz)) {
		free(pg);
		return NULL;
	}
	snprintf(pg->data, sizeof(pg->data), "%s/data", pg->dir);
	snprintf(pg->log, sizeof(pg->log), "%s/server.log", pg->dir);
	/* the guardian first: from here on the directory goes away whatever
	 * happens to the test */
	if (tsrv_guard(pg->dir, guard_cleanup, pg, &pg->guard_fd, &pg->done_fd, why, whysz)) {
		free(pg);
		return NULL;
	}

	if (pg->as_postgres && chown(pg->dir, pg->uid, pg->gid) < 0) {
		tsrv_say(why, whysz, "cannot give '%s' to the postgres user: %s", pg->dir,
		    strerror(errno));
		goto fail;
	}
	/* a password for the test's role, from the kernel's random source */
	unsigned char rnd[16];
	int ufd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (ufd < 0 || read(ufd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd)) {
		tsrv_say(why, whysz, "cannot read /dev/urandom: %s", strerror(errno));
		if (ufd >= 0)
			close(ufd);
		goto fail;
	}
	close(ufd);
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(pg->password + 2 * i, 3, "%02x", rnd[i]);
	char pwfile[700], initlog[700];
	snprintf(pwfile, sizeof(pwfile), "%s/pwfile", pg->dir);
	snprintf(initlog, sizeof(initlog), "%s/initdb.log", pg->dir);
	if (write_file(pwfile, pg->password) < 0 ||
	    (pg->as_postgres && chown(pwfile, pg->uid, pg->gid) < 0)) {
		tsrv_say(why, whysz, "cannot write '%s': %s", pwfile, strerror(errno));
		goto fail;
	}
	/* --no-sync: initdb's own files need not reach the disk, the
	 * directory is thrown away; the server runs with fsync on */
	char pwopt[760];
	snprintf(pwopt, sizeof(pwopt), "--pwfile=%s", pwfile);
	char *iargv[] = {initdb,
	                 "-D",
	                 pg->data,
	                 "-U",
	                 TPG_USER,
	                 pwopt,
	                 "--auth=scram-sha-256",
	                 "--encoding=UTF8",
	                 "--locale=C",
	                 "--no-sync",
	                 NULL};
	int rc = run(pg, initlog, iargv);
	unlink(pwfile);
	if (rc != 0) {
		char t[1200];
		tsrv_tail(initlog, t, sizeof(t));
		tsrv_say(why, whysz, "initdb of '%s' failed (exit %d): %s", pg->data, rc, t);
		goto fail;
	}
	/* a free port can be taken by someone else before the server binds
	 * it: try a few */
	for (int attempt = 0; attempt < 5; attempt++) {
		pg->port = tsrv_free_port();
		if (pg->port < 0) {
			tsrv_say(why, whysz, "cannot find a free port on 127.0.0.1: %s",
			    strerror(errno));
			goto fail;
		}
		if ((rc = start_server(pg, why, whysz)) == 0) {
			snprintf(pg->hostport, sizeof(pg->hostport), "127.0.0.1:%d", pg->port);
			return pg;
		}
		if (!strstr(why, "could not bind") && !strstr(why, "already in use"))
			break;
	}
fail:
	tpg_stop(pg);
	return NULL;
}

const char *tpg_hostport(const struct tpg *pg)
{
	return pg->hostport;
}

/* Run one statement on database 'db' as the test's superuser. */
static int admin_exec(struct tpg *pg, const char *db, const char *sql, char *why, size_t whysz)
{
	char admin[300];
	snprintf(admin, sizeof(admin), "postgresql://%s:%s@127.0.0.1:%d/%s", TPG_USER, pg->password,
	         pg->port, db);
	PGconn *c = PQconnectdb(admin);
	if (PQstatus(c) != CONNECTION_OK) {
		tsrv_say(why, whysz, "cannot connect to the test server at %s: %s", pg->hostport,
		    PQerrorMessage(c));
		PQfinish(c);
		return -1;
	}
	PGresult *r = PQexec(c, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		tsrv_say(why, whysz, "%s on %s: %s", sql, pg->hostport, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
	return ok ? 0 : -1;
}

int tpg_create_database(struct tpg *pg, const char *name, char *url, size_t urlsz, char *why,
                        size_t whysz)
{
	for (const char *c = name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) {
			tsrv_say(why, whysz, "database name '%s': only a-z 0-9 _", name);
			return -1;
		}
	char sql[200];
	snprintf(sql, sizeof(sql),
	         "CREATE DATABASE %s TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu "
	         "ICU_LOCALE 'en-US'",
	         name);
	if (admin_exec(pg, "postgres", sql, why, whysz))
		return -1;
	snprintf(url, urlsz, "postgresql://%s:%s@127.0.0.1:%d/%s", TPG_USER, pg->password, pg->port,
	         name);
	return 0;
}

int tpg_create_schema(struct tpg *pg, const char *name, char *url, size_t urlsz, char *why,
                      size_t whysz)
{
	for (const char *c = name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) {
			tsrv_say(why, whysz, "schema name '%s': only a-z 0-9 _", name);
			return -1;
		}
	/* One database, ordered as a production database often is (an ICU
	 * en-US collation: "a" before "B"), not as the server's C default, so
	 * a store that relies on the database's default order is caught. A
	 * database per test would copy a template of 7.5 MB each time; a
	 * schema costs nothing. */
	if (!pg->have_db &&
	    admin_exec(pg, "postgres",
	               "CREATE DATABASE csa_tests TEMPLATE template0 ENCODING 'UTF8' "
	               "LOCALE_PROVIDER icu ICU_LOCALE 'en-US'",
	               why, whysz))
		return -1;
	pg->have_db = 1;
	char sql[200];
	snprintf(sql, sizeof(sql), "CREATE SCHEMA %s", name);
	if (admin_exec(pg, "csa_tests", sql, why, whysz))
		return -1;
	snprintf(url, urlsz,
	         "postgresql://%s:%s@127.0.0.1:%d/csa_tests?options=-csearch_path%%3D%s", TPG_USER,
	         pg->password, pg->port, name);
	return 0;
}

int tpg_server_stop(struct tpg *pg, char *why, size_t whysz)
{
	int rc = stop_server(pg, "immediate");
	if (rc != 0)
		tsrv_say(why, whysz, "pg_ctl stop of '%s' failed (exit %d)", pg->data, rc);
	return rc ? -1 : 0;
}

int tpg_server_start(struct tpg *pg, char *why, size_t whysz)
{
	return start_server(pg, why, whysz) ? -1 : 0;
}

void tpg_after_fork(struct tpg *pg)
{
	if (!pg)
		return;
	if (pg->guard_fd >= 0)
		close(pg->guard_fd);
	if (pg->done_fd >= 0)
		close(pg->done_fd);
	pg->guard_fd = pg->done_fd = -1;
}

void tpg_stop(struct tpg *pg)
{
	if (!pg)
		return;
	if (pg->guard_fd >= 0)
		close(pg->guard_fd);
	/* the guardian stops the server and removes the directory, then
	 * exits, which closes the other end */
	while (pg->done_fd >= 0) {
		char b;
		ssize_t n = read(pg->done_fd, &b, 1);
		if (n == 0 || (n < 0 && errno != EINTR))
			break;
	}
	if (pg->done_fd >= 0)
		close(pg->done_fd);
	free(pg);
}
