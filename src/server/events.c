/*
 * Live events for the dashboard (GET /api/events): server-sent events
 * from a ring of the latest 256 formatted events. Each stream runs in its
 * connection's own thread (the daemon has a thread per connection), so a
 * stream waiting for the next event holds up no other request; a reader
 * too slow for the ring skips what is gone.
 *
 * With Redis (REDIS_URL or redis.url; redis.h) the ring holds every
 * node's events, not only this one's. A node publishes each event it
 * emits on the workspace's channel, where Redis numbers it (one counter,
 * the channel in the order of the numbers), and its subscriber puts every
 * node's events into the ring in that order: the number is each event's
 * SSE id. An event is in the ring once, whoever brings it first: the node
 * that emitted it puts it there at once when it is the next number, else
 * its subscription brings it in its turn, and any number not above the
 * last one in the ring is already there.
 *
 * What a dashboard may have missed is told with a "resync" event
 * ({"reason"}: refetch what is on the page), never guessed:
 *   - a gap in the numbers (an event published while this node's
 *     subscription was not listening);
 *   - the link to Redis re-established (other nodes' events while it was
 *     down reached their own clients only);
 *   - a node that emitted events while it could not publish them says so
 *     through the channel once it can (a resync from that node);
 *   - a client reconnecting with Last-Event-ID whose next events are no
 *     longer in the ring (or that this node cannot place), and a client
 *     too slow for the ring.
 * A client reconnecting with a Last-Event-ID whose followers are still in
 * the ring gets them, in order, before the new ones.
 *
 * Without Redis, nothing of this: no ids, no resync, the events of this
 * process only, as a single node always was.
 */
#include "server/server_internal.h"
#include "base/json.h"
#include "server/redis.h"
#include "store/ws.h"

#include <fcntl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Put a formatted event (malloc'd, handed over) into the ring; caller
 * holds ev_mu. */
static void ring_put(struct csa_server *s, char *msg, uint64_t seq, int resync)
{
	struct csa_event *e = &s->ev[s->ev_next % CSA_EVENTS_RING];
	free(e->msg);
	e->msg = msg;
	e->seq = seq;
	e->resync = resync;
	s->ev_next++;
	pthread_cond_broadcast(&s->ev_cv);
}

/* "id: N\nevent: E\ndata: D\n\n" (no id line for N == 0); NULL when out of
 * memory. */
static char *format_event(uint64_t seq, const char *event, const char *data)
{
	char *msg = NULL;
	int n = seq ? asprintf(&msg, "id: %llu\nevent: %s\ndata: %s\n\n", (unsigned long long)seq,
	                       event, data)
	            : asprintf(&msg, "event: %s\ndata: %s\n\n", event, data);
	return n < 0 ? NULL : msg;
}

/* A resync event saying why (NULL when out of memory). */
static char *format_resync(uint64_t seq, const char *reason)
{
	json_t *j = json_pack("{s:s}", "reason", reason);
	char *d = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	char *msg = d ? format_event(seq, "resync", d) : NULL;
	free(d);
	return msg;
}

/* Caller holds ev_mu. */
static void ring_resync(struct csa_server *s, uint64_t seq, const char *reason)
{
	char *msg = format_resync(seq, reason);
	if (msg)
		ring_put(s, msg, seq, 1);
	else
		fprintf(stderr, "csa serve: out of memory: a resync event is not published\n");
}

/* Publish through Redis; 0, or -1 when it did not go out. An event this
 * node emits is in its own ring at once when it is the next number. */
static int publish_shared(struct csa_server *s, const char *event, const char *data)
{
	char *payload = NULL;
	if (asprintf(&payload, "%s %s %s", s->node_id, event, data) < 0)
		return -1;
	uint64_t seq = 0;
	struct csa_err err = {0};
	int rc = csa_redis_publish(s->redis, payload, &seq, &err);
	free(payload);
	if (rc) {
		/* CSA_EBUSY: the link is down, which it logged when it went down;
		 * anything else is news */
		if (rc != CSA_EBUSY)
			fprintf(stderr, "csa serve: the '%s' event reaches this node only: %s\n",
			        event, err.msg);
		return -1;
	}
	pthread_mutex_lock(&s->ev_mu);
	if (seq == s->ev_last_seq + 1) {
		char *msg = format_event(seq, event, data);
		if (msg) {
			ring_put(s, msg, seq, strcmp(event, "resync") == 0);
			s->ev_last_seq = seq;
		}
	}
	pthread_mutex_unlock(&s->ev_mu);
	return 0;
}

void csa_publish(struct csa_server *s, const char *event, json_t *data)
{
	char *d = data ? json_dumps(data, JSON_COMPACT) : NULL;
	json_decref(data);
	if (!d) {
		fprintf(stderr, "csa serve: out of memory: the '%s' event is not published\n",
		        event);
		return;
	}
	if (s->redis) {
		/* events this node's clients alone saw while the link was down:
		 * the other nodes' clients are told to refetch, once, first */
		uint64_t alone = __atomic_load_n(&s->ev_local_only, __ATOMIC_RELAXED);
		if (alone) {
			char reason[160];
			snprintf(reason, sizeof(reason),
			         "node %s had %llu event(s) that only its own clients saw: it "
			         "could not reach redis",
			         s->node_id, (unsigned long long)alone);
			json_t *j = json_pack("{s:s}", "reason", reason);
			char *rd = j ? json_dumps(j, JSON_COMPACT) : NULL;
			json_decref(j);
			if (rd && publish_shared(s, "resync", rd) == 0)
				__atomic_fetch_sub(&s->ev_local_only, alone, __ATOMIC_RELAXED);
			free(rd);
		}
		if (publish_shared(s, event, d) == 0) {
			free(d);
			return;
		}
		__atomic_fetch_add(&s->ev_local_only, 1, __ATOMIC_RELAXED);
	}
	char *msg = format_event(0, event, d);
	free(d);
	if (!msg) {
		fprintf(stderr, "csa serve: out of memory: the '%s' event is not published\n",
		        event);
		return;
	}
	pthread_mutex_lock(&s->ev_mu);
	ring_put(s, msg, 0, 0);
	pthread_mutex_unlock(&s->ev_mu);
}

/* ---- the subscriber's side (the link's thread, redis.h) ------------------------ */

/* An event of the channel: "<node> <event> <data>". */
static void on_message(void *ctx, uint64_t seq, const char *payload)
{
	struct csa_server *s = ctx;
	const char *sp1 = strchr(payload, ' ');
	const char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp1 || !sp2 || sp2 - sp1 - 1 > 40) {
		fprintf(stderr,
		        "csa serve: redis event %llu is not '<node> <event> <data>': ignored\n",
		        (unsigned long long)seq);
		return;
	}
	char event[41];
	snprintf(event, sizeof(event), "%.*s", (int)(sp2 - sp1 - 1), sp1 + 1);
	pthread_mutex_lock(&s->ev_mu);
	if (seq <= s->ev_last_seq) {
		/* already in the ring: this node's own, put there when published */
		pthread_mutex_unlock(&s->ev_mu);
		return;
	}
	if (seq > s->ev_last_seq + 1) {
		char reason[160];
		snprintf(reason, sizeof(reason), "events %llu to %llu did not reach this node",
		         (unsigned long long)s->ev_last_seq + 1, (unsigned long long)seq - 1);
		ring_resync(s, seq - 1, reason);
	}
	char *msg = format_event(seq, event, sp2 + 1);
	if (msg)
		ring_put(s, msg, seq, strcmp(event, "resync") == 0);
	else
		fprintf(stderr, "csa serve: out of memory: redis event %llu is not relayed\n",
		        (unsigned long long)seq);
	s->ev_last_seq = seq;
	pthread_mutex_unlock(&s->ev_mu);
}

static void on_subscribed(void *ctx, uint64_t seq, int again)
{
	struct csa_server *s = ctx;
	pthread_mutex_lock(&s->ev_mu);
	/* the first subscription of a node that has had no event yet misses
	 * nothing; any later one, or one after events went out on this node
	 * alone, may have */
	if (again || s->ev_next > 0)
		ring_resync(s, seq,
		            again ? "the link to redis was re-established"
		                  : "this node reached redis only after it started");
	s->ev_last_seq = seq;
	pthread_mutex_unlock(&s->ev_mu);
}

static uint64_t seq_floor(void *ctx)
{
	struct csa_server *s = ctx;
	pthread_mutex_lock(&s->ev_mu);
	uint64_t v = s->ev_last_seq;
	pthread_mutex_unlock(&s->ev_mu);
	return v;
}

int csa_events_cluster_start(struct csa_server *s, struct csa_err *err)
{
	const struct csa_config *cfg = csa_ws_config(s->ws);
	const char *env = getenv("REDIS_URL");
	const char *source = "REDIS_URL";
	char *url = env && *env ? strdup(env) : NULL;
	if (!env || !*env) {
		const char *u = json_string_value(csa_config_get(cfg, "redis.url"));
		url = u ? strdup(u) : NULL;
		source = "csa.json redis.url";
	}
	const char *dbenv = getenv("DATABASE_URL");
	char *db = dbenv && *dbenv ? strdup(dbenv) : NULL;
	if (!db && json_string_value(csa_config_get(cfg, "store.url")))
		db = strdup(json_string_value(csa_config_get(cfg, "store.url")));
	csa_config_unref(cfg);
	if (!url) {
		free(db);
		return CSA_OK; /* one node */
	}
	struct csa_redis_url u;
	char ns[17];
	int rc = csa_redis_url_parse(url, source, &u, err);
	if (!rc)
		rc = csa_redis_namespace(s->ws->root, db, ns, err);
	free(url);
	free(db);
	if (rc)
		return rc;
	unsigned char rnd[8];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	ssize_t got = fd >= 0 ? read(fd, rnd, sizeof(rnd)) : -1;
	if (fd >= 0)
		close(fd);
	if (got != (ssize_t)sizeof(rnd))
		return csa_error_sys(err, "cannot read /dev/urandom for the node's id");
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(s->node_id + 2 * i, 3, "%02x", rnd[i]);
	fprintf(stderr,
	        "csa serve: node %s, events and rate limits shared through redis at %s/%d\n",
	        s->node_id, u.where, u.db);
	const struct csa_redis_hooks hooks = {on_message, on_subscribed, s};
	return csa_redis_open(&u, ns, &hooks, seq_floor, &s->redis, err);
}

void csa_events_cluster_stop(struct csa_server *s)
{
	csa_redis_close(s->redis);
	s->redis = NULL;
}

void csa_events_release(struct csa_server *s)
{
	for (size_t i = 0; i < CSA_EVENTS_RING; i++)
		free(s->ev[i].msg);
}

/* ---- the streams ------------------------------------------------------------------ */

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
		if (s->ev_next - c->next > CSA_EVENTS_RING) {
			/* a slow client skips what is gone; with Redis it is told */
			c->next = s->ev_next - CSA_EVENTS_RING;
			if (s->redis)
				c->buf = format_resync(0, "this stream fell behind the events");
		}
		if (!c->buf && c->next < s->ev_next) {
			c->buf = strdup(s->ev[c->next % CSA_EVENTS_RING].msg);
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

/*
 * Where a stream starts (caller holds ev_mu): from now, or for a client
 * that sends Last-Event-ID (with Redis) after the event it names when the
 * ring still holds what followed it. *resync: the client is to refetch
 * (what followed is gone, or the id is not one this node can place).
 */
static uint64_t stream_start(struct csa_server *s, const char *last_id, int *resync)
{
	*resync = 0;
	if (!s->redis || !last_id)
		return s->ev_next;
	char *end;
	unsigned long long l = strtoull(last_id, &end, 10);
	if (end == last_id || *end) {
		*resync = 1; /* not an id of ours */
		return s->ev_next;
	}
	if (l == s->ev_last_seq)
		return s->ev_next; /* missed nothing */
	if (l < s->ev_last_seq) {
		uint64_t from = s->ev_next > CSA_EVENTS_RING ? s->ev_next - CSA_EVENTS_RING : 0;
		for (uint64_t i = from; i < s->ev_next; i++) {
			const struct csa_event *e = &s->ev[i % CSA_EVENTS_RING];
			if (e->seq <= l)
				continue;
			/* the first numbered entry after the client's: its successor,
			 * or a resync that covers what is missing */
			if (e->seq == l + 1 || e->resync)
				return i;
			break;
		}
	}
	/* gone from the ring, or an id ahead of this node (from a node whose
	 * subscription is ahead, or from before a Redis without its data) */
	*resync = 1;
	return s->ev_next;
}

json_t *csa_h_events(struct call *c)
{
	struct csa_server *s = c->s;
	struct sse_client *cl = calloc(1, sizeof(*cl));
	if (!cl)
		return csa_fail(c, 500, "internal", "out of memory opening an event stream");
	cl->s = s;
	int resync = 0;
	pthread_mutex_lock(&s->ev_mu);
	cl->next = stream_start(s, csa_header(c, "Last-Event-ID"), &resync);
	uint64_t last = s->ev_last_seq;
	pthread_mutex_unlock(&s->ev_mu);
	if (resync) {
		char *r = format_resync(last, "events after Last-Event-ID are no longer here");
		if (r && asprintf(&cl->buf, ": connected\n\n%s", r) < 0)
			cl->buf = NULL;
		free(r);
	} else {
		cl->buf = strdup(": connected\n\n");
	}
	if (!cl->buf) {
		free(cl);
		return csa_fail(c, 500, "internal", "out of memory opening an event stream");
	}
	cl->len = strlen(cl->buf);
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
