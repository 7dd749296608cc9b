/*
 * The link to Redis of a node (redis.h): a command connection shared by
 * request threads under a mutex, a subscription read by the link's own
 * thread, and the two Lua scripts that make a publication and a
 * rate-limit step each one atomic step in Redis. The thread also makes
 * every (re)connection, so no request ever waits for a connect: a request
 * finds the link up and makes one short round trip, or finds it down and
 * returns at once.
 */
#include "server/redis.h"
#include "base/hash.h"
#include "base/ts.h"

#include <hiredis/hiredis.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long a node waits for Redis at most: a connect (on the link's
 * thread only) and a command (on a request's path). A LAN round trip is
 * well under a millisecond; these bound how long a request can be held
 * up by a Redis that stopped answering without closing its connections,
 * after which the link is down and no request waits at all. */
#define CONNECT_MS     500
#define COMMAND_MS     300
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* The subscription is idle between events: a PING through it every few
 * seconds finds a Redis that went away without a word (a cable, a
 * firewall), which no read would notice. */
#define PING_EVERY_MS 5000

/* The next number and the publication in one script: Redis runs a script
 * alone, so the channel carries events in the order of their numbers
 * whichever nodes publish at once. */
static const char publish_lua[] = "local n = redis.call('INCR', KEYS[1])\n"
                                  "redis.call('PUBLISH', KEYS[2], n .. ' ' .. ARGV[1])\n"
                                  "return n\n";

/* At (re)subscription: the counter raised to at least what this node has
 * seen (a Redis restarted without its data starts from 0), then read. */
static const char floor_lua[] = "local cur = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
                                "local floor = tonumber(ARGV[1])\n"
                                "if cur < floor then\n"
                                "  redis.call('SET', KEYS[1], ARGV[1])\n"
                                "  cur = floor\n"
                                "end\n"
                                "return tostring(cur)\n";

/* A token bucket (auth.c's, kept in Redis): 'cap' tokens, 'rate' a second,
 * time only moving forward. Returns {allowed, milliseconds to wait}. The
 * bucket expires when it would be full again anyway. */
static const char rate_lua[] =
    "local now = tonumber(ARGV[1])\n"
    "local rate = tonumber(ARGV[2])\n"
    "local cap = tonumber(ARGV[3])\n"
    "local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')\n"
    "local t = tonumber(b[1])\n"
    "local at = tonumber(b[2])\n"
    "if not t or not at then t = cap; at = now end\n"
    "if now > at then\n"
    "  t = math.min(cap, t + (now - at) / 1000 * rate)\n"
    "  at = now\n"
    "end\n"
    "local ok = 0\n"
    "local wait = 0\n"
    "if t >= 1 then\n"
    "  t = t - 1\n"
    "  ok = 1\n"
    "else\n"
    "  wait = math.ceil((1 - t) / rate * 1000)\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', t), 'at', "
    "string.format('%d', at))\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate * 1000) + 1000)\n"
    "return {ok, wait}\n";

struct csa_redis {
	struct csa_redis_url url;
	char where[320]; /* host:port/db */
	char channel[100], seq_key[100], rate_prefix[100];
	struct csa_redis_hooks hooks;
	uint64_t (*floor)(void *ctx);

	pthread_mutex_t mu; /* cmd and the state below */
	redisContext *cmd;  /* NULL while down */
	int up, ever_up;
	const char *state; /* "connecting", "up", "down" */
	char detail[400];
	int64_t since_ms;

	pthread_t thread;
	int running;
	int stopping; /* atomic */
	int wake[2];  /* a byte wakes the thread: stop, or the command link lost */
};

/* ---- the URL ---------------------------------------------------------------- */

static int unhex(int c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
	                              : -1;
}

/* Percent-decode n bytes of s into out (outsz with its NUL); -1 when it
 * does not fit or an escape is broken. */
static int decode(const char *s, size_t n, char *out, size_t outsz)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];
		if (c == '%') {
			if (i + 2 >= n)
				return -1;
			int h = unhex(s[i + 1]), l = unhex(s[i + 2]);
			if (h < 0 || l < 0)
				return -1;
			c = h * 16 + l;
			i += 2;
		}
		if (k + 1 >= outsz || c == 0)
			return -1;
		out[k++] = (char)c;
	}
	out[k] = '\0';
	return 0;
}

int csa_redis_url_parse(const char *url, const char *source, struct csa_redis_url *out,
                        struct csa_err *err)
{
	static const char form[] = "redis://[[user]:password@]host[:port][/db]";
	memset(out, 0, sizeof(*out));
	out->port = 6379;
	if (!url || strncmp(url, "redis://", 8) != 0)
		return csa_error(err, CSA_EINVAL, "%s must be a URL of the form %s", source, form);
	for (const char *c = url; *c; c++)
		if ((unsigned char)*c <= ' ' || *c == 0x7f)
			return csa_error(err, CSA_EINVAL,
			                 "%s: white space or a control character in the URL",
			                 source);
	const char *p = url + 8;
	size_t alen = strcspn(p, "/?#");
	if (p[alen] == '?' || p[alen] == '#' || strchr(p + alen, '?') || strchr(p + alen, '#'))
		return csa_error(err, CSA_EINVAL, "%s: no query or fragment is read, in %s", source,
		                 form);
	/* the user information ends at the authority's last '@' (a password
	 * may hold one percent-encoded, or not) */
	const char *at = NULL;
	for (const char *c = p; c < p + alen; c++)
		if (*c == '@')
			at = c;
	const char *host = at ? at + 1 : p;
	size_t hlen = (size_t)(p + alen - host);
	/* host and port first, so that every later message can name them */
	const char *port = NULL;
	if (hlen && host[0] == '[') {
		const char *close = memchr(host, ']', hlen);
		if (!close || close == host + 1)
			return csa_error(err, CSA_EINVAL, "%s: an IPv6 host needs its closing ']'",
			                 source);
		if (close + 1 < host + hlen) {
			if (close[1] != ':')
				return csa_error(err, CSA_EINVAL,
				                 "%s: ':' port expected after the IPv6 host",
				                 source);
			port = close + 2;
		}
		snprintf(out->host, sizeof(out->host), "%.*s", (int)(close - host - 1), host + 1);
	} else {
		const char *colon = memchr(host, ':', hlen);
		size_t n = colon ? (size_t)(colon - host) : hlen;
		if (n >= sizeof(out->host))
			return csa_error(err, CSA_EINVAL, "%s: host name over %zu characters",
			                 source, sizeof(out->host) - 1);
		snprintf(out->host, sizeof(out->host), "%.*s", (int)n, host);
		if (colon)
			port = colon + 1;
	}
	if (!out->host[0])
		return csa_error(err, CSA_EINVAL, "%s: no host in the URL (%s)", source, form);
	for (const char *c = out->host; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '.' || *c == '-' || *c == '_' || *c == ':'))
			return csa_error(err, CSA_EINVAL, "%s: '%s' is not a host name or address",
			                 source, out->host);
	if (port) {
		size_t n = (size_t)(p + alen - port);
		char digits[8];
		int ok = n > 0 && n < 6;
		for (size_t i = 0; ok && i < n; i++)
			ok = port[i] >= '0' && port[i] <= '9';
		long v = 0;
		if (ok) {
			snprintf(digits, sizeof(digits), "%.*s", (int)n, port);
			v = strtol(digits, NULL, 10);
		}
		if (!ok || v < 1 || v > 65535)
			return csa_error(err, CSA_EINVAL,
			                 "%s: the port of %s:%.*s must be 1..65535", source,
			                 out->host, (int)(n < 20 ? n : 20), port);
		out->port = (unsigned)v;
	}
	snprintf(out->where, sizeof(out->where), "%s:%u", out->host, out->port);
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		size_t ulen = colon ? (size_t)(colon - p) : (size_t)(at - p);
		if (!colon)
			return csa_error(err, CSA_EINVAL,
			                 "%s: the user information of %s has no ':password' (%s)",
			                 source, out->where, form);
		if (decode(p, ulen, out->user, sizeof(out->user)) ||
		    decode(colon + 1, (size_t)(at - colon - 1), out->password,
		           sizeof(out->password)))
			return csa_error(
			    err, CSA_EINVAL,
			    "%s: the user or password for %s is too long or has a broken "
			    "%%-escape",
			    source, out->where);
		if (!out->password[0])
			return csa_error(err, CSA_EINVAL, "%s: an empty password for %s", source,
			                 out->where);
	}
	const char *path = p + alen;
	if (*path == '/' && path[1]) {
		char *end;
		errno = 0;
		long db = strtol(path + 1, &end, 10);
		if (*end || errno || db < 0 || db > 15 || path[1] < '0' || path[1] > '9')
			return csa_error(
			    err, CSA_EINVAL,
			    "%s: the database of %s must be a number 0..15, not '%.20s'", source,
			    out->where, path + 1);
		out->db = (int)db;
	}
	return CSA_OK;
}

int csa_redis_namespace(const char *ws_root, const char *db_url, char out[17], struct csa_err *err)
{
	uint64_t h = CSA_FNV_SEED;
	if (db_url && *db_url) {
		/* what names the database, not who logs in to it: nodes may use
		 * their own roles */
		const char *p = strstr(db_url, "://");
		if (p) {
			h = csa_fnv1a(h, db_url, (size_t)(p + 3 - db_url));
			p += 3;
			size_t alen = strcspn(p, "/?");
			const char *at = NULL;
			for (const char *c = p; c < p + alen; c++)
				if (*c == '@')
					at = c;
			h = csa_fnv1a_str(h, at ? at + 1 : p);
		} else {
			h = csa_fnv1a_str(h, db_url);
		}
	} else {
		char real[PATH_MAX];
		if (!realpath(ws_root, real))
			return csa_error_sys(err, "cannot resolve the workspace directory '%s'",
			                     ws_root);
		h = csa_fnv1a_str(csa_fnv1a_str(h, "files:"), real);
	}
	snprintf(out, 17, "%016llx", (unsigned long long)h);
	return CSA_OK;
}

/* ---- state -------------------------------------------------------------------- */

/* Caller holds r->mu. A state change is logged once, not at every retry. */
static void set_state(struct csa_redis *r, const char *state, const char *detail)
{
	int changed = strcmp(r->state, state) != 0;
	if (changed && strcmp(state, "up") == 0)
		fprintf(stderr, "csa serve: redis at %s: connected\n", r->where);
	else if (changed)
		fprintf(stderr,
		        "csa serve: redis at %s: %s (events reach this node's clients only, "
		        "rate limits are this node's; retrying)\n",
		        r->where, detail);
	if (changed)
		r->since_ms = csa_now_ms();
	r->state = state;
	r->up = strcmp(state, "up") == 0;
	snprintf(r->detail, sizeof(r->detail), "%s", detail);
}

static void wake(struct csa_redis *r)
{
	char b = 1;
	ssize_t n = write(r->wake[1], &b, 1);
	(void)n; /* a full pipe already wakes the thread */
}

/* Drop the command connection after a failure (caller holds r->mu); the
 * thread connects again. */
static void cmd_lost(struct csa_redis *r, const char *why)
{
	if (r->cmd) {
		redisFree(r->cmd);
		r->cmd = NULL;
	}
	set_state(r, "down", why);
	wake(r);
}

static struct timeval ms_tv(long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	return tv;
}

/* A connection, authenticated and on the URL's database; NULL with the
 * reason in 'why' (host:port named, never the password). */
static redisContext *connect_one(struct csa_redis *r, char *why, size_t whysz)
{
	redisContext *c = redisConnectWithTimeout(r->url.host, (int)r->url.port, ms_tv(CONNECT_MS));
	if (!c) {
		snprintf(why, whysz, "cannot connect to %s: out of memory", r->url.where);
		return NULL;
	}
	if (c->err) {
		snprintf(why, whysz, "cannot connect to %s: %s", r->url.where, c->errstr);
		redisFree(c);
		return NULL;
	}
	int fl = fcntl(c->fd, F_GETFD);
	if (fl >= 0)
		fcntl(c->fd, F_SETFD, fl | FD_CLOEXEC);
	if (redisSetTimeout(c, ms_tv(COMMAND_MS)) != REDIS_OK ||
	    redisEnableKeepAlive(c) != REDIS_OK) {
		snprintf(why, whysz, "cannot set the timeouts of the connection to %s: %s",
		         r->url.where, c->errstr);
		redisFree(c);
		return NULL;
	}
	redisReply *rep = NULL;
	if (r->url.password[0]) {
		rep = r->url.user[0] ? redisCommand(c, "AUTH %s %s", r->url.user, r->url.password)
		                     : redisCommand(c, "AUTH %s", r->url.password);
		if (!rep || rep->type == REDIS_REPLY_ERROR) {
			snprintf(why, whysz, "redis at %s refused the login: %s", r->url.where,
			         rep ? rep->str : c->errstr);
			goto fail;
		}
		freeReplyObject(rep);
	}
	if (r->url.db) {
		rep = redisCommand(c, "SELECT %d", r->url.db);
		if (!rep || rep->type == REDIS_REPLY_ERROR) {
			snprintf(why, whysz, "redis at %s: cannot select database %d: %s",
			         r->url.where, r->url.db, rep ? rep->str : c->errstr);
			goto fail;
		}
		freeReplyObject(rep);
	}
	return c;
fail:
	if (rep)
		freeReplyObject(rep);
	redisFree(c);
	return NULL;
}

/*
 * One command on the command connection (argv of argc strings). The
 * reply (free with freeReplyObject), or NULL with CSA_EBUSY (the link is
 * down: nothing sent) or CSA_EBACKEND (the connection failed, now dropped,
 * or Redis answered an error) in err and *rc.
 */
static redisReply *command(struct csa_redis *r, int argc, const char **argv, int *rc,
                           struct csa_err *err)
{
	pthread_mutex_lock(&r->mu);
	if (!r->cmd) {
		*rc = csa_error(err, CSA_EBUSY, "redis at %s is not connected (%s)", r->where,
		                r->detail);
		pthread_mutex_unlock(&r->mu);
		return NULL;
	}
	redisReply *rep = redisCommandArgv(r->cmd, argc, argv, NULL);
	if (!rep) {
		char why[400];
		snprintf(why, sizeof(why), "%s on %s failed: %s", argv[0], r->where,
		         r->cmd->errstr[0] ? r->cmd->errstr : "no answer");
		*rc = csa_error(err, CSA_EBACKEND, "%s", why);
		cmd_lost(r, why);
		pthread_mutex_unlock(&r->mu);
		return NULL;
	}
	pthread_mutex_unlock(&r->mu);
	if (rep->type == REDIS_REPLY_ERROR) {
		*rc = csa_error(err, CSA_EBACKEND, "redis at %s answered %s with: %s", r->where,
		                argv[0], rep->str);
		freeReplyObject(rep);
		return NULL;
	}
	*rc = CSA_OK;
	return rep;
}

/* ---- the link's thread ---------------------------------------------------------- */

/* Sleep up to ms, or less when woken; 1 when the link is stopping. */
static int nap(struct csa_redis *r, long ms)
{
	struct pollfd p = {r->wake[0], POLLIN, 0};
	if (poll(&p, 1, (int)ms) > 0) {
		char buf[64];
		while (read(r->wake[0], buf, sizeof(buf)) > 0)
			;
	}
	return __atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE);
}

/* One message of the subscription. */
static void on_reply(struct csa_redis *r, redisReply *rep, int *ping_out)
{
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
	    rep->element[0]->type != REDIS_REPLY_STRING)
		return;
	const char *kind = rep->element[0]->str;
	if (strcmp(kind, "pong") == 0) {
		*ping_out = 0;
		return;
	}
	if (strcmp(kind, "message") != 0 || rep->elements != 3 ||
	    rep->element[2]->type != REDIS_REPLY_STRING)
		return;
	const char *msg = rep->element[2]->str;
	char *end;
	errno = 0;
	unsigned long long seq = strtoull(msg, &end, 10);
	if (errno || end == msg || *end != ' ' || seq == 0) {
		fprintf(stderr,
		        "csa serve: redis channel %s: a message without a sequence number "
		        "ignored\n",
		        r->channel);
		return;
	}
	r->hooks.message(r->hooks.ctx, seq, end + 1);
}

/* Subscribe and take the counter's value; the subscription in *out, or
 * -1 with why. */
static int subscribe(struct csa_redis *r, redisContext **out, uint64_t *seq, char *why,
                     size_t whysz)
{
	redisContext *sub = connect_one(r, why, whysz);
	if (!sub)
		return -1;
	redisReply *rep = redisCommand(sub, "SUBSCRIBE %s", r->channel);
	if (!rep || rep->type != REDIS_REPLY_ARRAY) {
		snprintf(why, whysz, "cannot subscribe to %s on %s: %s", r->channel, r->where,
		         !rep                             ? sub->errstr
		         : rep->type == REDIS_REPLY_ERROR ? rep->str
		                                          : "odd reply");
		if (rep)
			freeReplyObject(rep);
		redisFree(sub);
		return -1;
	}
	freeReplyObject(rep);
	/* subscribed: every publication from now on reaches us, so the
	 * counter read now is where our stream starts */
	char floor[24];
	snprintf(floor, sizeof(floor), "%llu",
	         (unsigned long long)(r->floor ? r->floor(r->hooks.ctx) : 0));
	const char *argv[] = {"EVAL", floor_lua, "1", r->seq_key, floor};
	int rc;
	struct csa_err err = {0};
	rep = command(r, 5, argv, &rc, &err);
	if (!rep || rep->type != REDIS_REPLY_STRING) {
		snprintf(why, whysz, "%s", rep ? "the sequence counter is not a number" : err.msg);
		if (rep)
			freeReplyObject(rep);
		redisFree(sub);
		return -1;
	}
	*seq = strtoull(rep->str, NULL, 10);
	freeReplyObject(rep);
	*out = sub;
	return 0;
}

static void *link_main(void *arg)
{
	struct csa_redis *r = arg;
	long backoff = BACKOFF_MIN_MS;
	unsigned jitter = (unsigned)getpid() ^ (unsigned)csa_mono_ns();
	redisContext *sub = NULL;
	int64_t ping_at = 0;
	int ping_out = 0;
	while (!__atomic_load_n(&r->stopping, __ATOMIC_ACQUIRE)) {
		char why[400] = "";
		pthread_mutex_lock(&r->mu);
		int have_cmd = r->cmd != NULL;
		pthread_mutex_unlock(&r->mu);
		if (!have_cmd && sub) {
			/* the command link failed: most often Redis went away, which the
			 * subscription shows as well; start both afresh */
			redisFree(sub);
			sub = NULL;
		}
		if (!have_cmd) {
			redisContext *c = connect_one(r, why, sizeof(why));
			if (c) {
				pthread_mutex_lock(&r->mu);
				r->cmd = c;
				pthread_mutex_unlock(&r->mu);
			}
		}
		uint64_t seq = 0;
		if (!why[0] && !sub && subscribe(r, &sub, &seq, why, sizeof(why)) == 0) {
			pthread_mutex_lock(&r->mu);
			int again = r->ever_up;
			r->ever_up = 1;
			set_state(r, "up", "");
			pthread_mutex_unlock(&r->mu);
			r->hooks.subscribed(r->hooks.ctx, seq, again);
			backoff = BACKOFF_MIN_MS;
			ping_at = csa_mono_ns() / 1000000 + PING_EVERY_MS;
			ping_out = 0;
		}
		if (why[0]) {
			pthread_mutex_lock(&r->mu);
			if (r->cmd && !sub) {
				redisFree(r->cmd);
				r->cmd = NULL;
			}
			set_state(r, "down", why);
			pthread_mutex_unlock(&r->mu);
			jitter = jitter * 1103515245u + 12345u;
			long wait = backoff / 2 + (long)(jitter % (unsigned)(backoff / 2 + 1));
			backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
			if (nap(r, wait))
				break;
			continue;
		}
		/* replies hiredis already holds (read along with an earlier
		 * one, such as the subscription's confirmation) before waiting
		 * on the socket, which would not show them */
		void *held = NULL;
		while (redisGetReplyFromReader(sub, &held) == REDIS_OK && held) {
			on_reply(r, held, &ping_out);
			freeReplyObject(held);
			held = NULL;
		}
		/* subscribed: wait for a message, a wake-up or the next ping */
		int64_t now = csa_mono_ns() / 1000000;
		long until = (long)(ping_at - now);
		struct pollfd p[2] = {{sub->fd, POLLIN, 0}, {r->wake[0], POLLIN, 0}};
		int n = poll(p, 2, until > 0 ? (until < 1000 ? (int)until : 1000) : 0);
		if (n < 0 && errno != EINTR) {
			snprintf(why, sizeof(why), "poll on the subscription to %s: %s", r->where,
			         strerror(errno));
		}
		if (n > 0 && p[1].revents) {
			char buf[64];
			while (read(r->wake[0], buf, sizeof(buf)) > 0)
				;
		}
		if (!why[0] && n > 0 && p[0].revents) {
			if (redisBufferRead(sub) != REDIS_OK)
				snprintf(why, sizeof(why), "the subscription to %s was lost: %s",
				         r->where,
				         sub->errstr[0] ? sub->errstr : "connection closed");
			void *rep = NULL;
			while (!why[0] && redisGetReplyFromReader(sub, &rep) == REDIS_OK && rep) {
				on_reply(r, rep, &ping_out);
				freeReplyObject(rep);
				rep = NULL;
			}
			if (!why[0] && sub->err)
				snprintf(why, sizeof(why), "the subscription to %s: %s", r->where,
				         sub->errstr);
		}
		now = csa_mono_ns() / 1000000;
		if (!why[0] && now >= ping_at) {
			if (ping_out) {
				snprintf(why, sizeof(why),
				         "redis at %s did not answer a PING for %d s", r->where,
				         PING_EVERY_MS / 1000);
			} else {
				int done = 0;
				if (redisAppendCommand(sub, "PING") != REDIS_OK)
					done = -1;
				while (done == 0)
					if (redisBufferWrite(sub, &done) != REDIS_OK)
						done = -1;
				if (done < 0)
					snprintf(why, sizeof(why), "cannot PING %s: %s", r->where,
					         sub->errstr);
				ping_out = 1;
				ping_at = now + PING_EVERY_MS;
			}
		}
		if (why[0]) {
			redisFree(sub);
			sub = NULL;
			pthread_mutex_lock(&r->mu);
			cmd_lost(r, why);
			pthread_mutex_unlock(&r->mu);
			/* the first retry comes at once: a restart or a failover is
			 * often over by then */
			backoff = BACKOFF_MIN_MS;
		}
	}
	if (sub)
		redisFree(sub);
	return NULL;
}

/* ---- the interface -------------------------------------------------------------- */

int csa_redis_open(const struct csa_redis_url *url, const char *ns,
                   const struct csa_redis_hooks *hooks, uint64_t (*floor)(void *ctx),
                   struct csa_redis **out, struct csa_err *err)
{
	size_t nl = strlen(ns);
	if (nl == 0 || nl > 64 ||
	    strspn(ns, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	               "0123456789_-") != nl)
		return csa_error(err, CSA_EINVAL, "redis namespace '%.80s': 1..64 of [A-Za-z0-9_-]",
		                 ns);
	struct csa_redis *r = calloc(1, sizeof(*r));
	if (!r)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the link to redis");
	r->url = *url;
	snprintf(r->where, sizeof(r->where), "%s/%d", url->where, url->db);
	snprintf(r->channel, sizeof(r->channel), "csa:%s:events", ns);
	snprintf(r->seq_key, sizeof(r->seq_key), "csa:%s:events:seq", ns);
	snprintf(r->rate_prefix, sizeof(r->rate_prefix), "csa:%s:rate:", ns);
	r->hooks = *hooks;
	r->floor = floor;
	r->state = "connecting";
	snprintf(r->detail, sizeof(r->detail), "not connected yet");
	r->since_ms = csa_now_ms();
	pthread_mutex_init(&r->mu, NULL);
	if (pipe2(r->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		int rc = csa_error_sys(err, "cannot create the redis link's pipe");
		pthread_mutex_destroy(&r->mu);
		free(r);
		return rc;
	}
	if (pthread_create(&r->thread, NULL, link_main, r) != 0) {
		close(r->wake[0]);
		close(r->wake[1]);
		pthread_mutex_destroy(&r->mu);
		free(r);
		return csa_error(err, CSA_EIO, "cannot start the redis link's thread");
	}
	r->running = 1;
	*out = r;
	return CSA_OK;
}

void csa_redis_close(struct csa_redis *r)
{
	if (!r)
		return;
	__atomic_store_n(&r->stopping, 1, __ATOMIC_RELEASE);
	wake(r);
	if (r->running)
		pthread_join(r->thread, NULL);
	if (r->cmd)
		redisFree(r->cmd);
	close(r->wake[0]);
	close(r->wake[1]);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

int csa_redis_up(struct csa_redis *r)
{
	pthread_mutex_lock(&r->mu);
	int up = r->up;
	pthread_mutex_unlock(&r->mu);
	return up;
}

int csa_redis_publish(struct csa_redis *r, const char *payload, uint64_t *seq, struct csa_err *err)
{
	const char *argv[] = {"EVAL", publish_lua, "2", r->seq_key, r->channel, payload};
	int rc;
	redisReply *rep = command(r, 6, argv, &rc, err);
	if (!rep)
		return rc;
	if (rep->type != REDIS_REPLY_INTEGER || rep->integer <= 0) {
		freeReplyObject(rep);
		return csa_error(err, CSA_EBACKEND,
		                 "redis at %s: the publish script answered no number", r->where);
	}
	*seq = (uint64_t)rep->integer;
	freeReplyObject(rep);
	return CSA_OK;
}

int csa_redis_rate(struct csa_redis *r, const char *id, double rate, double cap, int64_t now_ms,
                   int *allowed, double *retry_after, struct csa_err *err)
{
	char key[200], now[24], rs[40], cs[40];
	snprintf(key, sizeof(key), "%s%s", r->rate_prefix, id);
	snprintf(now, sizeof(now), "%lld", (long long)now_ms);
	snprintf(rs, sizeof(rs), "%.17g", rate);
	snprintf(cs, sizeof(cs), "%.17g", cap);
	const char *argv[] = {"EVAL", rate_lua, "1", key, now, rs, cs};
	int rc;
	redisReply *rep = command(r, 7, argv, &rc, err);
	if (!rep)
		return rc;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
	    rep->element[0]->type != REDIS_REPLY_INTEGER ||
	    rep->element[1]->type != REDIS_REPLY_INTEGER) {
		freeReplyObject(rep);
		return csa_error(err, CSA_EBACKEND,
		                 "redis at %s: the rate-limit script answered no pair of numbers",
		                 r->where);
	}
	*allowed = rep->element[0]->integer == 1;
	*retry_after = (double)rep->element[1]->integer / 1000.0;
	freeReplyObject(rep);
	return CSA_OK;
}

json_t *csa_redis_status(struct csa_redis *r)
{
	pthread_mutex_lock(&r->mu);
	char since[CSA_TS_LEN];
	csa_ts_format(r->since_ms, since);
	json_t *j =
	    json_pack("{s:s, s:s, s:s}", "state", r->state, "address", r->where, "since", since);
	if (j && !r->up && json_object_set_new(j, "detail", json_string(r->detail))) {
		json_decref(j);
		j = NULL;
	}
	pthread_mutex_unlock(&r->mu);
	return j;
}
