/* A fake platform API for tests (fakehttp.h), on libmicrohttpd. */
#include "support/fakehttp.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAKE_REQS     64
#define FAKE_ANSWERS  8
#define FAKE_BODY_MAX (256 * 1024)

struct answer {
	char prefix[128];
	int status;
	char *body;
};

struct fake_http {
	struct MHD_Daemon *d;
	pthread_mutex_t mu;
	struct fake_req reqs[FAKE_REQS];
	int n;
	struct answer answers[FAKE_ANSWERS];
	int nanswers;
	char stall_prefix[128];
	int stall_left;       /* requests still to hold */
	int stall_released;   /* fake_http_release() or stop: hold none */
	pthread_cond_t stall_cv;
};

struct upload {
	char *b;
	size_t n;
};

static int starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Keep the request; 1 when it is one to hold (fake_http_stall). */
static int record(struct fake_http *f, struct MHD_Connection *c, const char *method,
                  const char *url, struct upload *u)
{
	int hold = 0;
	pthread_mutex_lock(&f->mu);
	if (f->n < FAKE_REQS) {
		struct fake_req *r = &f->reqs[f->n++];
		snprintf(r->method, sizeof(r->method), "%s", method);
		snprintf(r->path, sizeof(r->path), "%s", url);
		const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
		snprintf(r->auth, sizeof(r->auth), "%s", a ? a : "");
		const char *k = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
		snprintf(r->idem, sizeof(r->idem), "%s", k ? k : "");
		r->body = u->b ? u->b : strdup("");
		u->b = NULL;
		/* decided with the recording, so the held one is known */
		r->held = hold = f->stall_left > 0 && starts(url, f->stall_prefix);
		f->stall_left -= hold;
	}
	pthread_mutex_unlock(&f->mu);
	return hold;
}

static enum MHD_Result on_req(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
	(void)version;
	struct fake_http *f = cls;
	struct upload *u = *con_cls;
	if (!u) {
		*con_cls = calloc(1, sizeof(struct upload));
		return *con_cls ? MHD_YES : MHD_NO;
	}
	if (*upload_size) {
		size_t k = *upload_size;
		if (u->n + k <= FAKE_BODY_MAX) {
			char *p = realloc(u->b, u->n + k + 1);
			if (p) {
				memcpy(p + u->n, upload, k);
				u->n += k;
				p[u->n] = '\0';
				u->b = p;
			}
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (record(f, c, method, url, u)) {
		/* a held request waits on this connection's own thread */
		pthread_mutex_lock(&f->mu);
		while (!f->stall_released)
			pthread_cond_wait(&f->stall_cv, &f->mu);
		pthread_mutex_unlock(&f->mu);
	}
	int status = 200;
	char body[1024] = "{}";
	pthread_mutex_lock(&f->mu);
	for (int i = 0; i < f->nanswers; i++)
		if (starts(url, f->answers[i].prefix)) {
			status = f->answers[i].status;
			snprintf(body, sizeof(body), "%s", f->answers[i].body);
		}
	pthread_mutex_unlock(&f->mu);
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(resp, "Content-Type", "application/json");
	enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode t)
{
	(void)cls, (void)c, (void)t;
	struct upload *u = *con_cls;
	if (u)
		free(u->b);
	free(u);
	*con_cls = NULL;
}

int fake_http_start(struct fake_http **out, unsigned *port)
{
	struct fake_http *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->stall_cv, NULL);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
	                        NULL, NULL, on_req, f,
	                        MHD_OPTION_SOCK_ADDR, &a, MHD_OPTION_NOTIFY_COMPLETED, on_done,
	                        NULL, MHD_OPTION_END);
	const union MHD_DaemonInfo *i =
	    f->d ? MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT) : NULL;
	if (!i) {
		if (f->d)
			MHD_stop_daemon(f->d);
		pthread_cond_destroy(&f->stall_cv);
		pthread_mutex_destroy(&f->mu);
		free(f);
		return -1;
	}
	*port = i->port;
	*out = f;
	return 0;
}

void fake_http_stop(struct fake_http *f)
{
	if (!f)
		return;
	fake_http_release(f); /* a held request's thread must end for the stop */
	MHD_stop_daemon(f->d);
	for (int i = 0; i < f->n; i++)
		free(f->reqs[i].body);
	for (int i = 0; i < f->nanswers; i++)
		free(f->answers[i].body);
	pthread_cond_destroy(&f->stall_cv);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

void fake_http_answer(struct fake_http *f, const char *prefix, int status, const char *body)
{
	pthread_mutex_lock(&f->mu);
	if (f->nanswers < FAKE_ANSWERS) {
		struct answer *a = &f->answers[f->nanswers++];
		snprintf(a->prefix, sizeof(a->prefix), "%s", prefix);
		a->status = status;
		a->body = strdup(body);
	}
	pthread_mutex_unlock(&f->mu);
}

int fake_http_wait(struct fake_http *f, int n, int timeout_ms)
{
	for (int waited = 0;; waited += 50) {
		pthread_mutex_lock(&f->mu);
		int got = f->n;
		pthread_mutex_unlock(&f->mu);
		if (got >= n || waited >= timeout_ms)
			return got;
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

int fake_http_find_nth(struct fake_http *f, const char *prefix, int nth, struct fake_req *out)
{
	int rc = -1, seen = 0;
	pthread_mutex_lock(&f->mu);
	for (int i = 0; i < f->n && rc; i++)
		if (starts(f->reqs[i].path, prefix) && seen++ == nth) {
			*out = f->reqs[i];
			out->body = strdup(f->reqs[i].body);
			rc = out->body ? 0 : -1;
		}
	pthread_mutex_unlock(&f->mu);
	return rc;
}

int fake_http_find(struct fake_http *f, const char *prefix, struct fake_req *out)
{
	return fake_http_find_nth(f, prefix, 0, out);
}

int fake_http_count(struct fake_http *f, const char *prefix)
{
	int k = 0;
	pthread_mutex_lock(&f->mu);
	for (int i = 0; i < f->n; i++)
		k += starts(f->reqs[i].path, prefix);
	pthread_mutex_unlock(&f->mu);
	return k;
}

void fake_http_stall(struct fake_http *f, const char *prefix, int n)
{
	pthread_mutex_lock(&f->mu);
	snprintf(f->stall_prefix, sizeof(f->stall_prefix), "%s", prefix);
	f->stall_left = n;
	f->stall_released = 0;
	pthread_mutex_unlock(&f->mu);
}

void fake_http_release(struct fake_http *f)
{
	pthread_mutex_lock(&f->mu);
	f->stall_left = 0;
	f->stall_released = 1;
	pthread_cond_broadcast(&f->stall_cv);
	pthread_mutex_unlock(&f->mu);
}

int fake_http_count_key(struct fake_http *f, const char *key)
{
	int k = 0;
	pthread_mutex_lock(&f->mu);
	for (int i = 0; i < f->n; i++)
		k += strcmp(f->reqs[i].idem, key) == 0;
	pthread_mutex_unlock(&f->mu);
	return k;
}
