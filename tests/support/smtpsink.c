/* A tiny SMTP server for tests (smtpsink.h). */
#include "support/smtpsink.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SINK_MAX      16
#define SINK_DATA_MAX (1 << 20)

struct sink_msg {
	char *from, *rcpts, *data;
};

struct smtp_sink {
	int fd;
	pthread_t th;
	pthread_mutex_t mu;
	int stop, refuse;
	struct sink_msg msgs[SINK_MAX];
	int n;
};

/* One connection: its socket and what it has read but not yet used. */
struct conn {
	int fd;
	char buf[8192];
	size_t n;
	struct smtp_sink *s;
};

static void say(struct conn *c, const char *line)
{
	size_t n = strlen(line);
	if (write(c->fd, line, n) != (ssize_t)n)
		return; /* the client went away: its test fails on what it saw */
}

/* The next line without its CRLF into 'line': 1, or 0 at the end. */
static int read_line(struct conn *c, char *line, size_t cap)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->n);
		if (nl) {
			size_t len = (size_t)(nl - c->buf);
			size_t k = len && c->buf[len - 1] == '\r' ? len - 1 : len;
			if (k >= cap)
				k = cap - 1;
			memcpy(line, c->buf, k);
			line[k] = '\0';
			memmove(c->buf, nl + 1, c->n - len - 1);
			c->n -= len + 1;
			return 1;
		}
		if (c->n == sizeof(c->buf))
			return 0; /* a line longer than any SMTP line: give up */
		struct pollfd p = {c->fd, POLLIN, 0};
		if (poll(&p, 1, 5000) <= 0)
			return 0;
		ssize_t r = read(c->fd, c->buf + c->n, sizeof(c->buf) - c->n);
		if (r <= 0)
			return 0;
		c->n += (size_t)r;
	}
}

static void append(char **dst, size_t *len, const char *s, const char *end)
{
	size_t n = strlen(s) + strlen(end);
	if (*len + n > SINK_DATA_MAX)
		return;
	char *p = realloc(*dst, *len + n + 1);
	if (!p)
		return;
	memcpy(p + *len, s, strlen(s));
	memcpy(p + *len + strlen(s), end, strlen(end) + 1);
	*dst = p;
	*len += n;
}

/* DATA up to the line ".", dot-stuffing undone, lines ending CRLF. */
static char *read_data(struct conn *c)
{
	char line[4096], *data = calloc(1, 1);
	size_t len = 0;
	while (data && read_line(c, line, sizeof(line))) {
		if (strcmp(line, ".") == 0)
			return data;
		append(&data, &len, line[0] == '.' ? line + 1 : line, "\r\n");
	}
	free(data);
	return NULL;
}

static void keep(struct smtp_sink *s, char *from, char *rcpts, char *data)
{
	pthread_mutex_lock(&s->mu);
	if (s->n < SINK_MAX) {
		s->msgs[s->n].from = from;
		s->msgs[s->n].rcpts = rcpts;
		s->msgs[s->n++].data = data;
		from = rcpts = data = NULL;
	}
	pthread_mutex_unlock(&s->mu);
	free(from);
	free(rcpts);
	free(data);
}

static void session(struct conn *c)
{
	char line[4096], *from = NULL, *rcpts = NULL;
	size_t rlen = 0;
	say(c, "220 sink ESMTP\r\n");
	while (read_line(c, line, sizeof(line))) {
		if (strncasecmp(line, "EHLO", 4) == 0 || strncasecmp(line, "HELO", 4) == 0) {
			say(c, "250 sink\r\n");
		} else if (strncasecmp(line, "MAIL FROM:", 10) == 0) {
			free(from);
			from = strdup(line + 10);
			say(c, "250 ok\r\n");
		} else if (strncasecmp(line, "RCPT TO:", 8) == 0) {
			pthread_mutex_lock(&c->s->mu);
			int refuse = c->s->refuse;
			pthread_mutex_unlock(&c->s->mu);
			if (refuse) {
				char r[64];
				snprintf(r, sizeof(r), "%d no such user\r\n", refuse);
				say(c, r);
				continue;
			}
			append(&rcpts, &rlen, line + 8, "\n");
			say(c, "250 ok\r\n");
		} else if (strncasecmp(line, "DATA", 4) == 0) {
			say(c, "354 go ahead\r\n");
			char *data = read_data(c);
			if (!data)
				break;
			keep(c->s, from, rcpts, data);
			from = rcpts = NULL;
			rlen = 0;
			say(c, "250 queued\r\n");
		} else if (strncasecmp(line, "QUIT", 4) == 0) {
			say(c, "221 bye\r\n");
			break;
		} else if (strncasecmp(line, "RSET", 4) == 0 || strncasecmp(line, "NOOP", 4) == 0) {
			say(c, "250 ok\r\n");
		} else {
			say(c, "502 not implemented\r\n");
		}
	}
	free(from);
	free(rcpts);
}

static void *serve(void *arg)
{
	struct smtp_sink *s = arg;
	for (;;) {
		pthread_mutex_lock(&s->mu);
		int stop = s->stop;
		pthread_mutex_unlock(&s->mu);
		if (stop)
			break;
		struct pollfd p = {s->fd, POLLIN, 0};
		if (poll(&p, 1, 100) <= 0)
			continue;
		struct conn *c = calloc(1, sizeof(*c));
		if (!c)
			continue;
		c->s = s;
		c->fd = accept(s->fd, NULL, NULL);
		if (c->fd >= 0) {
			session(c);
			close(c->fd);
		}
		free(c);
	}
	return NULL;
}

int smtp_sink_start(struct smtp_sink **out, unsigned *port)
{
	struct smtp_sink *s = calloc(1, sizeof(*s));
	if (!s)
		return -1;
	pthread_mutex_init(&s->mu, NULL);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t al = sizeof(a);
	s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof(a)) || listen(s->fd, 8) ||
	    getsockname(s->fd, (struct sockaddr *)&a, &al) ||
	    pthread_create(&s->th, NULL, serve, s)) {
		if (s->fd >= 0)
			close(s->fd);
		pthread_mutex_destroy(&s->mu);
		free(s);
		return -1;
	}
	*port = ntohs(a.sin_port);
	*out = s;
	return 0;
}

void smtp_sink_stop(struct smtp_sink *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = 1;
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->th, NULL);
	close(s->fd);
	for (int i = 0; i < s->n; i++) {
		free(s->msgs[i].from);
		free(s->msgs[i].rcpts);
		free(s->msgs[i].data);
	}
	pthread_mutex_destroy(&s->mu);
	free(s);
}

void smtp_sink_refuse_rcpt(struct smtp_sink *s, int code)
{
	pthread_mutex_lock(&s->mu);
	s->refuse = code;
	pthread_mutex_unlock(&s->mu);
}

int smtp_sink_wait(struct smtp_sink *s, int n, int timeout_ms)
{
	for (int waited = 0;; waited += 50) {
		pthread_mutex_lock(&s->mu);
		int got = s->n;
		pthread_mutex_unlock(&s->mu);
		if (got >= n || waited >= timeout_ms)
			return got;
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

static char *copy_of(struct smtp_sink *s, int i, int which)
{
	char *out = NULL;
	pthread_mutex_lock(&s->mu);
	if (i >= 0 && i < s->n) {
		const char *v = which == 0   ? s->msgs[i].data
		                : which == 1 ? s->msgs[i].from
		                             : s->msgs[i].rcpts;
		out = strdup(v ? v : "");
	}
	pthread_mutex_unlock(&s->mu);
	return out;
}

char *smtp_sink_data(struct smtp_sink *s, int i)
{
	return copy_of(s, i, 0);
}

char *smtp_sink_from(struct smtp_sink *s, int i)
{
	return copy_of(s, i, 1);
}

char *smtp_sink_rcpts(struct smtp_sink *s, int i)
{
	return copy_of(s, i, 2);
}
