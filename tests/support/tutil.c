/* Test helpers. */
#include "tutil.h"
#include "automation/ledger.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int t_size(const char *what, int full, int reduced)
{
	int n = full;
#ifdef CSA_TEST_REDUCED
	const char *e = getenv("CSA_TEST_FULL");
	if (!e || strcmp(e, "1") != 0)
		n = reduced;
#else
	(void)reduced;
#endif
	fprintf(stderr, "%s: %d%s\n", what, n,
	        n == full ? ""
	                  : " (reduced for the sanitizer build; CSA_TEST_FULL=1 for full size)");
	return n;
}

char *t_tmpdir(const char *tag)
{
	const char *base = getenv("TMPDIR");
	char *p;
	if (asprintf(&p, "%s/csa-%s-XXXXXX", base && *base ? base : "/tmp", tag) < 0)
		abort();
	if (!mkdtemp(p))
		abort();
	return p;
}

void t_rmrf(const char *path)
{
	if (!path || strncmp(path, "/tmp/", 5) != 0)
		return;
	char *cmd;
	if (asprintf(&cmd, "rm -rf '%s'", path) < 0)
		abort();
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", path);
	free(cmd);
}

static char *slurp(FILE *f)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	size_t n;
	rewind(f);
	while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (len + 1 >= cap)
			buf = realloc(buf, cap *= 2);
	}
	buf[len] = '\0';
	return buf;
}

int t_csa(const char *in, char **out, char **err, const char *fmt, ...)
{
	char *args, *cmd;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&args, fmt, ap) < 0)
		abort();
	va_end(ap);
	FILE *fi = tmpfile(), *fo = tmpfile(), *fe = tmpfile();
	if (in)
		fputs(in, fi);
	fflush(fi);
	rewind(fi);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fileno(fi), 0);
		dup2(fileno(fo), 1);
		dup2(fileno(fe), 2);
		if (asprintf(&cmd, "exec '%s' %s", CSA_BIN, args) < 0)
			_exit(127);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	if (out)
		*out = slurp(fo);
	if (err)
		*err = slurp(fe);
	fclose(fi);
	fclose(fo);
	fclose(fe);
	free(args);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void t_write(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		abort();
	fputs(text, f);
	fclose(f);
}

void t_age(const char *path, int seconds)
{
	struct timespec t[2];
	clock_gettime(CLOCK_REALTIME, &t[0]);
	t[0].tv_sec -= seconds;
	t[1] = t[0];
	if (utimensat(AT_FDCWD, path, t, 0) != 0) {
		fprintf(stderr, "t_age: cannot set the times of '%s'\n", path);
		abort();
	}
}

int t_reviewed_autonomous(const char *ws, const char *type, const char *segment, int n, int correct)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/automation.db", ws);
	sqlite3 *db;
	if (sqlite3_open(path, &db) != SQLITE_OK)
		return -1;
	sqlite3_busy_timeout(db, 5000);
	int rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	for (int i = 0; i < n && rc == SQLITE_OK; i++) {
		char *sql = sqlite3_mprintf(
		    "INSERT INTO decisions(id, ticket_id, type, segment, phase, value, confidence,"
		    " threshold, autonomous, critical, created_ms, final, correct, reviewed_ms)"
		    " VALUES('%q-%d#%q', '%q-%d', '%q', '%q', 3, 'A', 0.97, 0.9, 1, 0, %d, '%s', "
		    "%d,"
		    " %d)",
		    segment, i, type, segment, i, type, segment, 1000 + i, i < correct ? "A" : "B",
		    i < correct, 2000 + i);
		rc = sql ? sqlite3_exec(db, sql, NULL, NULL, NULL) : SQLITE_NOMEM;
		sqlite3_free(sql);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -1;
}

int t_ledger_verify(const char *path, json_t **report, struct csa_err *err)
{
	struct csa_ledger *l;
	int rc = csa_ledger_open(path, &l, err);
	if (rc == CSA_OK) {
		rc = csa_ledger_verify(l, report, err);
		csa_ledger_close(l);
	}
	return rc;
}

int t_ledger_trail(const char *path, const char *ticket_id, json_t **out, struct csa_err *err)
{
	struct csa_ledger *l;
	int rc = csa_ledger_open(path, &l, err);
	if (rc == CSA_OK) {
		rc = csa_ledger_trail(l, ticket_id, out, err);
		csa_ledger_close(l);
	}
	return rc;
}

/* nftw's callback takes no argument of ours: the tally of one walk. */
static int loose_n;
static char loose_first[4200];

static int loose_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type == FTW_NS || type == FTW_DNR)
		return -1;
	if (type != FTW_SL && (st->st_mode & 077) && loose_n++ == 0)
		snprintf(loose_first, sizeof(loose_first), "%s (mode %04o)", path,
		         (unsigned)(st->st_mode & 07777));
	return 0;
}

int t_loose_modes(const char *root, char *first, size_t firstsz)
{
	loose_n = 0;
	loose_first[0] = '\0';
	if (nftw(root, loose_one, 16, FTW_PHYS) != 0)
		return -1;
	if (first && firstsz)
		snprintf(first, firstsz, "%s", loose_first);
	return loose_n;
}
