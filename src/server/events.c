/*
 * Live events for the dashboard (GET /api/events): server-sent events
 * from a ring of the latest 256 formatted events. Each stream runs in its
 * connection's own thread (the daemon has a thread per connection), so a
 * stream waiting for the next event holds up no other request; a reader
 * too slow for the ring skips what is gone.
 */
#include "server/server_internal.h"

#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void csa_publish(struct csa_server *s, const char *event, json_t *data)
{
	char *d = data ? json_dumps(data, JSON_COMPACT) : NULL;
	json_decref(data);
	char *msg = NULL;
	if (!d || asprintf(&msg, "event: %s\ndata: %s\n\n", event, d) < 0) {
		msg = NULL;
		fprintf(stderr, "csa serve: out of memory: the '%s' event is not published\n",
		        event);
	}
	free(d);
	if (!msg)
		return;
	pthread_mutex_lock(&s->ev_mu);
	size_t slot = s->ev_next % CSA_EVENTS_RING;
	free(s->ev[slot]);
	s->ev[slot] = msg;
	s->ev_next++;
	pthread_cond_broadcast(&s->ev_cv);
	pthread_mutex_unlock(&s->ev_mu);
}

void csa_events_release(struct csa_server *s)
{
	for (size_t i = 0; i < CSA_EVENTS_RING; i++)
		free(s->ev[i]);
}

struct sse_client {
	struct csa_server *s;
	uint64_t next;
	char *buf;
	size_t off, len;
};

/* Runs in the connection's own thread: waiting here blocks nobody else. */
static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max)
{
	(void)pos;
	struct sse_client *c = cls;
	struct csa_server *s = c->s;
	if (c->off == c->len) {
		free(c->buf);
		c->buf = NULL;
		c->off = c->len = 0;
		pthread_mutex_lock(&s->ev_mu);
		if (c->next == s->ev_next && !s->stopping) {
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += 15;
			pthread_cond_timedwait(&s->ev_cv, &s->ev_mu, &until);
		}
		if (s->stopping) {
			pthread_mutex_unlock(&s->ev_mu);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		if (s->ev_next - c->next > CSA_EVENTS_RING)
			c->next =
			    s->ev_next - CSA_EVENTS_RING; /* a slow client skips what is gone */
		if (c->next < s->ev_next) {
			c->buf = strdup(s->ev[c->next % CSA_EVENTS_RING]);
			c->next++;
		}
		pthread_mutex_unlock(&s->ev_mu);
		if (!c->buf)
			c->buf = strdup(": keep-alive\n\n");
		if (!c->buf)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		c->len = strlen(c->buf);
	}
	size_t n = c->len - c->off < max ? c->len - c->off : max;
	memcpy(out, c->buf + c->off, n);
	c->off += n;
	return (ssize_t)n;
}

static void sse_free(void *cls)
{
	struct sse_client *c = cls;
	free(c->buf);
	free(c);
}

json_t *csa_h_events(struct call *c)
{
	struct csa_server *s = c->s;
	struct sse_client *cl = calloc(1, sizeof(*cl));
	if (!cl || !(cl->buf = strdup(": connected\n\n"))) {
		free(cl);
		return csa_fail(c, 500, "internal", "out of memory opening an event stream");
	}
	cl->s = s;
	cl->len = strlen(cl->buf);
	pthread_mutex_lock(&s->ev_mu);
	cl->next = s->ev_next; /* from now on */
	pthread_mutex_unlock(&s->ev_mu);
	struct MHD_Response *r =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, cl, sse_free);
	if (!r) {
		sse_free(cl);
		return csa_fail(c, 500, "internal", "cannot create an event stream response");
	}
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream") !=
	        MHD_YES ||
	    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") != MHD_YES ||
	    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff") != MHD_YES) {
		MHD_destroy_response(r); /* frees cl through sse_free */
		return csa_fail(c, 500, "internal", "cannot set the headers of an event stream");
	}
	c->response = r;
	return NULL;
}
