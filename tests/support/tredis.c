/* A private Redis server for a test: see tredis.h. */
#include "support/tredis.h"
#include "support/tserver.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TREDIS_BIN_DEFAULT "/usr/bin/redis-server"

struct tredis {
	char bin[512];
	char dir[512];
	char log[600];
	char pidfile[600];
	char url[80];
	int port;
	int appendonly;
	pid_t pid;    /* the server, a child of the test; 0 when not running */
	int guard_fd; /* write end of the pipe the guardian waits on */
	int done_fd;  /* read end of the pipe the guardian closes when done */
};

/* The pid in the server's pid file, or 0. */
static pid_t read_pidfile(const char *path)
{
	char buf[32] = "";
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	long v = strtol(buf, NULL, 10);
	return v > 1 ? (pid_t)v : 0;
}

/* What the guardian (tserver.h) does before it removes the directory
 * once the test closed its end of the pipe (tredis_stop, or dying): kill
 * the server named by the pid file and wait until it is gone (it is not
 * the guardian's child). */
static void guard_cleanup(void *ctx)
{
	struct tredis *r = ctx;
	pid_t pid = read_pidfile(r->pidfile);
	if (pid > 0 && kill(pid, SIGKILL) == 0)
		for (int i = 0; i < 500 && kill(pid, 0) == 0; i++)
			usleep(10000);
}

/* PING until PONG or the deadline; 0, or -1 with the reason. */
static int wait_ready(struct tredis *r, char *why, size_t whysz)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	char last[300] = "no attempt";
	for (;;) {
		int st;
		if (r->pid > 0 && waitpid(r->pid, &st, WNOHANG) == r->pid) {
			r->pid = 0;
			char t[1200];
			tsrv_tail(r->log, t, sizeof(t));
			tsrv_say(why, whysz,
			    "redis-server on 127.0.0.1:%d exited at start (status %d): %s", r->port,
			    st, t);
			return -1;
		}
		struct timeval tv = {1, 0};
		redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
		if (c && !c->err) {
			redisReply *rep = redisCommand(c, "PING");
			int ok =
			    rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
			snprintf(last, sizeof(last), "PING answered %s",
			         rep ? (rep->str ? rep->str : "?") : c->errstr);
			if (rep)
				freeReplyObject(rep);
			redisFree(c);
			if (ok)
				return 0;
		} else {
			snprintf(last, sizeof(last), "%s", c ? c->errstr : "out of memory");
			if (c)
				redisFree(c);
		}
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > 30) {
			char t[1200];
			tsrv_tail(r->log, t, sizeof(t));
			tsrv_say(why, whysz,
			    "redis-server on 127.0.0.1:%d did not answer PING in 30 s (%s): %s",
			    r->port, last, t);
			return -1;
		}
		usleep(20000);
	}
}

/* Start redis-server on r->port as a child of the test. */
static int launch(struct tredis *r, char *why, size_t whysz)
{
	char port[16];
	snprintf(port, sizeof(port), "%d", r->port);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		tsrv_say(why, whysz, "cannot fork redis-server: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int fd = open(r->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
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
		/* the test's own process group stays the test's: a ctest timeout
		 * that kills the group also ends the server, and the guardian
		 * cleans up after it either way */
		execl(r->bin, r->bin, "--bind", "127.0.0.1", "--port", port, "--unixsocket", "",
		      "--dir", r->dir, "--pidfile", r->pidfile, "--daemonize", "no", "--save", "",
		      "--appendonly", r->appendonly ? "yes" : "no", "--appendfsync", "everysec",
		      "--protected-mode", "yes", "--loglevel", "warning", (char *)NULL);
		fprintf(stderr, "tredis: cannot run '%s': %s\n", r->bin, strerror(errno));
		_exit(127);
	}
	r->pid = pid;
	if (wait_ready(r, why, whysz) == 0)
		return 0;
	if (r->pid > 0) {
		kill(r->pid, SIGKILL);
		while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR)
			;
		r->pid = 0;
	}
	return -1;
}

struct tredis *tredis_start(int appendonly, char *why, size_t whysz)
{
	struct tredis *r = calloc(1, sizeof(*r));
	if (!r) {
		tsrv_say(why, whysz, "out of memory");
		return NULL;
	}
	r->guard_fd = r->done_fd = -1;
	r->appendonly = appendonly;
	const char *bin = getenv("CSA_REDIS_SERVER");
	snprintf(r->bin, sizeof(r->bin), "%s", bin && *bin ? bin : TREDIS_BIN_DEFAULT);
	if (access(r->bin, X_OK) != 0) {
		tsrv_say(why, whysz,
		    "redis-server not found at '%s': scripts/deps.sh installs Debian's "
		    "redis-server, "
		    "or set CSA_REDIS_SERVER",
		    r->bin);
		free(r);
		return NULL;
	}
	if (tsrv_mkdtemp("csa-redis", r->dir, sizeof(r->dir), why, whysz)) {
		free(r);
		return NULL;
	}
	snprintf(r->log, sizeof(r->log), "%s/server.log", r->dir);
	snprintf(r->pidfile, sizeof(r->pidfile), "%s/redis.pid", r->dir);
	if (tsrv_guard(r->dir, guard_cleanup, r, &r->guard_fd, &r->done_fd, why, whysz)) {
		free(r);
		return NULL;
	}
	/* a free port can be taken before the server binds it: try a few */
	for (int attempt = 0; attempt < 5; attempt++) {
		r->port = tsrv_free_port();
		if (r->port < 0) {
			tsrv_say(why, whysz, "cannot find a free port on 127.0.0.1: %s",
			    strerror(errno));
			break;
		}
		if (launch(r, why, whysz) == 0) {
			snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%d/0", r->port);
			return r;
		}
		if (!strstr(why, "in use"))
			break;
	}
	tredis_stop(r);
	return NULL;
}

const char *tredis_url(const struct tredis *r)
{
	return r->url;
}

int tredis_port(const struct tredis *r)
{
	return r->port;
}

const char *tredis_dir(const struct tredis *r)
{
	return r->dir;
}

int tredis_kill(struct tredis *r, char *why, size_t whysz)
{
	if (r->pid <= 0) {
		tsrv_say(why, whysz, "redis-server on 127.0.0.1:%d is not running", r->port);
		return -1;
	}
	if (kill(r->pid, SIGKILL) < 0) {
		tsrv_say(why, whysz, "cannot kill redis-server %d: %s", (int)r->pid, strerror(errno));
		return -1;
	}
	while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR)
		;
	r->pid = 0;
	unlink(r->pidfile);
	return 0;
}

int tredis_restart(struct tredis *r, char *why, size_t whysz)
{
	if (r->pid > 0) {
		tsrv_say(why, whysz, "redis-server on 127.0.0.1:%d is still running", r->port);
		return -1;
	}
	/* the port was ours a moment ago; another process could take it, in
	 * which case the restart fails with the server's own message */
	return launch(r, why, whysz);
}

static void reply_text(const redisReply *rep, char *out, size_t outsz, size_t *k)
{
	int n = 0;
	switch (rep->type) {
	case REDIS_REPLY_INTEGER:
		n = snprintf(out + *k, outsz - *k, "%lld", rep->integer);
		break;
	case REDIS_REPLY_NIL:
		n = snprintf(out + *k, outsz - *k, "(nil)");
		break;
	case REDIS_REPLY_ERROR:
		n = snprintf(out + *k, outsz - *k, "ERR %s", rep->str);
		break;
	case REDIS_REPLY_ARRAY:
		for (size_t i = 0; i < rep->elements && *k < outsz - 1; i++) {
			if (i) {
				out[(*k)++] = '\n';
				out[*k] = '\0';
			}
			reply_text(rep->element[i], out, outsz, k);
		}
		return;
	default:
		n = snprintf(out + *k, outsz - *k, "%s", rep->str ? rep->str : "");
	}
	if (n > 0)
		*k += (size_t)n < outsz - *k ? (size_t)n : outsz - *k - 1;
}

int tredis_cmd(struct tredis *r, int argc, const char **argv, char *out, size_t outsz)
{
	struct timeval tv = {5, 0};
	redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
	if (!c || c->err) {
		snprintf(out, outsz, "cannot connect to 127.0.0.1:%d: %s", r->port,
		         c ? c->errstr : "out of memory");
		if (c)
			redisFree(c);
		return -1;
	}
	redisSetTimeout(c, tv);
	redisReply *rep = redisCommandArgv(c, argc, argv, NULL);
	if (!rep) {
		snprintf(out, outsz, "%s on 127.0.0.1:%d: %s", argv[0], r->port, c->errstr);
		redisFree(c);
		return -1;
	}
	out[0] = '\0';
	size_t k = 0;
	reply_text(rep, out, outsz, &k);
	freeReplyObject(rep);
	redisFree(c);
	return 0;
}

void tredis_after_fork(struct tredis *r)
{
	if (!r)
		return;
	if (r->guard_fd >= 0)
		close(r->guard_fd);
	if (r->done_fd >= 0)
		close(r->done_fd);
	r->guard_fd = r->done_fd = -1;
	r->pid = 0;
}

void tredis_stop(struct tredis *r)
{
	if (!r)
		return;
	if (r->pid > 0) {
		kill(r->pid, SIGKILL);
		while (waitpid(r->pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (r->guard_fd >= 0)
		close(r->guard_fd);
	while (r->done_fd >= 0) {
		char b;
		ssize_t n = read(r->done_fd, &b, 1);
		if (n == 0 || (n < 0 && errno != EINTR))
			break;
	}
	if (r->done_fd >= 0)
		close(r->done_fd);
	free(r);
}
