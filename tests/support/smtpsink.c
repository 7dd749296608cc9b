/* A tiny SMTP server for tests (smtpsink.h). */
#include "support/smtpsink.h"

#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
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
	SSL_CTX *tls;  /* NULL: plain SMTP only */
	int implicit;  /* SMTPS: TLS from the first byte */
	char auth_user[128];
	int auth_tls;
};

/* One connection: its socket (and TLS session once there is one) and what
 * it has read but not yet used. */
struct conn {
	int fd;
	SSL *ssl;
	char buf[8192];
	size_t n;
	struct smtp_sink *s;
};

static void say(struct conn *c, const char *line)
{
	size_t n = strlen(line);
	if (c->ssl ? SSL_write(c->ssl, line, (int)n) != (int)n
	           : write(c->fd, line, n) != (ssize_t)n)
		return; /* the client went away: its test fails on what it saw */
}

/* TLS on the connection (after 220 to STARTTLS, or at once for SMTPS);
 * what was read in clear before it is dropped, as RFC 3207 says. */
static int start_tls(struct conn *c)
{
	c->n = 0;
	c->ssl = SSL_new(c->s->tls);
	if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) || SSL_accept(c->ssl) != 1) {
		SSL_free(c->ssl);
		c->ssl = NULL;
		return -1;
	}
	return 0;
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
		if ((!c->ssl || SSL_pending(c->ssl) == 0) && poll(&p, 1, 5000) <= 0)
			return 0;
		ssize_t r = c->ssl ? SSL_read(c->ssl, c->buf + c->n, (int)(sizeof(c->buf) - c->n))
		                   : read(c->fd, c->buf + c->n, sizeof(c->buf) - c->n);
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

/* base64 'in' decoded into out (NUL-terminated): its length, or -1. */
static int unbase64(const char *in, char *out, size_t cap)
{
	size_t n = strlen(in);
	if (n % 4 || n / 4 * 3 + 1 > cap)
		return -1;
	int len = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
	if (len < 0)
		return -1;
	len -= (n > 0 && in[n - 1] == '=') + (n > 1 && in[n - 2] == '=');
	out[len] = '\0';
	return len;
}

/* AUTH PLAIN ("\0user\0password", with the command or on the next line)
 * and AUTH LOGIN (user and password prompted for): the user is kept, any
 * password accepted. Only over TLS. */
static void auth(struct conn *c, const char *line)
{
	char arg[1024], dec[1024], user[128] = "";
	if (!c->ssl) {
		say(c, "538 encryption required\r\n");
		return;
	}
	if (strncasecmp(line, "AUTH PLAIN", 10) == 0) {
		if (line[10] == ' ')
			snprintf(arg, sizeof(arg), "%s", line + 11);
		else if (say(c, "334 \r\n"), !read_line(c, arg, sizeof(arg)))
			return;
		int n = unbase64(arg, dec, sizeof(dec));
		const char *u = n > 0 ? memchr(dec, '\0', (size_t)n) : NULL;
		if (!u) {
			say(c, "501 bad PLAIN response\r\n");
			return;
		}
		snprintf(user, sizeof(user), "%s", u + 1);
	} else if (strncasecmp(line, "AUTH LOGIN", 10) == 0) {
		say(c, "334 VXNlcm5hbWU6\r\n");
		if (!read_line(c, arg, sizeof(arg)) || unbase64(arg, user, sizeof(user)) < 0)
			return;
		say(c, "334 UGFzc3dvcmQ6\r\n");
		if (!read_line(c, arg, sizeof(arg)))
			return;
	} else {
		say(c, "504 mechanism not supported\r\n");
		return;
	}
	pthread_mutex_lock(&c->s->mu);
	snprintf(c->s->auth_user, sizeof(c->s->auth_user), "%s", user);
	c->s->auth_tls = c->ssl != NULL;
	pthread_mutex_unlock(&c->s->mu);
	say(c, "235 authenticated\r\n");
}

static void session(struct conn *c)
{
	char line[4096], *from = NULL, *rcpts = NULL;
	size_t rlen = 0;
	if (c->s->implicit && start_tls(c))
		return;
	say(c, "220 sink ESMTP\r\n");
	while (read_line(c, line, sizeof(line))) {
		if (strncasecmp(line, "EHLO", 4) == 0) {
			say(c, c->ssl          ? "250-sink\r\n250 AUTH PLAIN LOGIN\r\n"
			       : c->s->tls     ? "250-sink\r\n250 STARTTLS\r\n"
			                       : "250 sink\r\n");
		} else if (strncasecmp(line, "HELO", 4) == 0) {
			say(c, "250 sink\r\n");
		} else if (strncasecmp(line, "STARTTLS", 8) == 0 && c->s->tls && !c->ssl) {
			say(c, "220 go ahead\r\n");
			if (start_tls(c))
				break;
		} else if (strncasecmp(line, "AUTH ", 5) == 0) {
			auth(c, line);
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
			if (c->ssl) {
				SSL_shutdown(c->ssl);
				SSL_free(c->ssl);
			}
			close(c->fd);
		}
		free(c);
	}
	return NULL;
}

static int sink_start(struct smtp_sink **out, unsigned *port, SSL_CTX *tls, int implicit)
{
	struct smtp_sink *s = calloc(1, sizeof(*s));
	if (!s) {
		SSL_CTX_free(tls);
		return -1;
	}
	s->tls = tls;
	s->implicit = implicit;
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
		SSL_CTX_free(s->tls);
		free(s);
		return -1;
	}
	*port = ntohs(a.sin_port);
	*out = s;
	return 0;
}

int smtp_sink_start(struct smtp_sink **out, unsigned *port)
{
	return sink_start(out, port, NULL, 0);
}

int smtp_sink_start_tls(struct smtp_sink **out, unsigned *port, const char *cert_file,
                        const char *key_file, int implicit)
{
	SSL_CTX *tls = SSL_CTX_new(TLS_server_method());
	if (!tls || SSL_CTX_use_certificate_file(tls, cert_file, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_use_PrivateKey_file(tls, key_file, SSL_FILETYPE_PEM) != 1) {
		SSL_CTX_free(tls);
		return -1;
	}
	return sink_start(out, port, tls, implicit);
}

int smtp_sink_make_cert(const char *cert_file, const char *key_file)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name = x ? X509_get_subject_name(x) : NULL;
	X509_EXTENSION *san = NULL;
	FILE *cf = NULL, *kf = NULL;
	int rc = -1;
	if (!key || !name || !X509_set_version(x, 2) ||
	    !ASN1_INTEGER_set(X509_get_serialNumber(x), 1) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -60) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), 86400) || !X509_set_pubkey(x, key) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"127.0.0.1",
	                                -1, -1, 0) ||
	    !X509_set_issuer_name(x, name) ||
	    !(san = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, "IP:127.0.0.1")) ||
	    !X509_add_ext(x, san, -1) || !X509_sign(x, key, EVP_sha256()))
		goto out;
	cf = fopen(cert_file, "w");
	kf = fopen(key_file, "w");
	if (cf && kf && PEM_write_X509(cf, x) &&
	    PEM_write_PrivateKey(kf, key, NULL, NULL, 0, NULL, NULL))
		rc = 0;
out:
	if (cf && fclose(cf))
		rc = -1;
	if (kf && fclose(kf))
		rc = -1;
	X509_EXTENSION_free(san);
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}

char *smtp_sink_auth_user(struct smtp_sink *s, int *over_tls)
{
	pthread_mutex_lock(&s->mu);
	char *u = strdup(s->auth_user);
	if (over_tls)
		*over_tls = s->auth_tls;
	pthread_mutex_unlock(&s->mu);
	return u;
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
	SSL_CTX_free(s->tls);
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
