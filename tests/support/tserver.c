/* The tests' private servers' shared plumbing: see tserver.h. */
#include "support/tserver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

void tsrv_say(char *why, size_t whysz, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, whysz, fmt, ap);
	va_end(ap);
}

void tsrv_tail(const char *path, char *out, size_t max)
{
	out[0] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	off_t from = end > (off_t)(max - 1) ? end - (off_t)(max - 1) : 0;
	ssize_t n = pread(fd, out, max - 1, from);
	close(fd);
	out[n > 0 ? n : 0] = '\0';
}

int tsrv_free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(a);
	int port = -1;
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(s, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(s);
	return port;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	remove(path);
	return 0;
}

void tsrv_rmtree(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int tsrv_mkdtemp(const char *prefix, char *out, size_t outsz, char *why, size_t whysz)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(out, outsz, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
	if (mkdtemp(out))
		return 0;
	tsrv_say(why, whysz, "cannot create a temporary directory '%s': %s", out, strerror(errno));
	return -1;
}

static _Noreturn void guardian(const char *dir, void (*cleanup)(void *ctx), void *ctx, int rfd)
{
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	for (;;) {
		char b;
		ssize_t n = read(rfd, &b, 1);
		if (n == 0 || (n < 0 && errno != EINTR))
			break;
	}
	cleanup(ctx);
	tsrv_rmtree(dir);
	_exit(0);
}

int tsrv_guard(const char *dir, void (*cleanup)(void *ctx), void *ctx, int *guard_fd,
               int *done_fd, char *why, size_t whysz)
{
	int p[2], done[2];
	if (pipe2(p, O_CLOEXEC) < 0 || pipe2(done, O_CLOEXEC) < 0) {
		tsrv_say(why, whysz, "cannot create a pipe: %s", strerror(errno));
		tsrv_rmtree(dir);
		return -1;
	}
	fflush(NULL);
	pid_t mid = fork();
	if (mid < 0) {
		tsrv_say(why, whysz, "cannot fork the guardian: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		close(done[0]);
		close(done[1]);
		tsrv_rmtree(dir);
		return -1;
	}
	if (mid == 0) {
		close(p[1]);
		close(done[0]);
		setsid();
		if (fork() == 0)
			guardian(dir, cleanup, ctx, p[0]); /* holds done[1] until it exits */
		_exit(0);
	}
	while (waitpid(mid, NULL, 0) < 0 && errno == EINTR)
		;
	close(p[0]);
	close(done[1]);
	*guard_fd = p[1];
	*done_fd = done[0];
	return 0;
}
