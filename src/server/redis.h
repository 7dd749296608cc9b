/*
 * A node's link to Redis, for several `csa serve` nodes over one
 * workspace (REDIS_URL, or redis.url in csa.json; docs/DEPLOY.md): the
 * live events every node publishes, numbered by one counter in Redis and
 * relayed by each node's subscriber to its own dashboards, and the
 * per-token rate limit kept in Redis so that it holds across nodes.
 *
 * Nothing waits long for Redis. Two connections: one for commands (a
 * publish, a rate-limit step), used by request threads under a mutex with
 * short timeouts, and one subscribed to the workspace's channel, read by a
 * thread of the link's own. A command that fails drops the command
 * connection and the link is "down" at once: until the thread has
 * connected again (in the background, backoff from 100 ms to 5 s), every
 * call returns CSA_EBUSY without touching the network, and the caller
 * falls back to what one node can do alone (events to its own clients,
 * its own token buckets). A node starts whether Redis answers or not.
 *
 * Keys and the channel are under "csa:<namespace>:", the namespace naming
 * the workspace (csa_redis_namespace), so several workspaces may share one
 * Redis and a node never reads another workspace's events:
 *   csa:<ns>:events        the channel; a message is "<seq> <payload>"
 *   csa:<ns>:events:seq    the counter of published events (INCR)
 *   csa:<ns>:rate:<id>     a token's bucket (hash: tokens, at), expiring
 *
 * hiredis is included by redis.c only: nothing else knows how the link
 * talks to Redis (scripts/check-layers.sh).
 */
#ifndef CSA_SERVER_REDIS_H
#define CSA_SERVER_REDIS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* A parsed redis://[[user]:password@]host[:port][/db] URL. */
struct csa_redis_url {
	char host[256]; /* a name, an IPv4 address, or an IPv6 one without [] */
	unsigned port;  /* 6379 when the URL gives none */
	int db;         /* 0 .. 15 (the default number of databases): SELECT */
	char user[128]; /* "" : AUTH with the password alone */
	char password[256];
	char where[300]; /* "host:port" for messages: never the password */
};

/*
 * Parse 'url' (from 'source', a name for messages: "REDIS_URL" or
 * "csa.json redis.url"). 0, or CSA_EINVAL with a message naming the
 * source and host:port when they could be read, never the password.
 * Percent-escapes in the user and password are decoded.
 */
int csa_redis_url_parse(const char *url, const char *source, struct csa_redis_url *out,
                        struct csa_err *err);

/*
 * What the subscriber hands to its owner, on the link's thread:
 *   message(ctx, seq, payload)   an event of the channel, in the order of
 *                                its sequence number (every node's,
 *                                this one's included); payload is borrowed
 *                                for the call
 *   subscribed(ctx, seq, again)  the subscription is in place and every
 *                                event numbered above seq will arrive;
 *                                'again' when the link had been up before
 *                                (events may have been missed meanwhile)
 */
struct csa_redis_hooks {
	void (*message)(void *ctx, uint64_t seq, const char *payload);
	void (*subscribed)(void *ctx, uint64_t seq, int again);
	void *ctx;
};

struct csa_redis;

/*
 * Start the link for workspace namespace 'ns' (at most 64 characters of
 * [A-Za-z0-9_-]): copies the URL and the hooks, starts the thread, and
 * returns at once; the first connection is made on the thread (poll
 * csa_redis_up or csa_redis_status). 'floor' is asked of the hooks'
 * owner at each subscription: the counter in Redis is raised to at least
 * the last sequence number this node saw, so a Redis restarted without
 * its data never numbers an event below one a dashboard already has.
 * *out is freed with csa_redis_close().
 */
int csa_redis_open(const struct csa_redis_url *url, const char *ns,
                   const struct csa_redis_hooks *hooks, uint64_t (*floor)(void *ctx),
                   struct csa_redis **out, struct csa_err *err);

/* Stop the thread and close both connections. NULL is a no-op. */
void csa_redis_close(struct csa_redis *r);

/* 1 while both connections are up (commands and subscription). */
int csa_redis_up(struct csa_redis *r);

/*
 * Publish 'payload' (NUL-ended, no newline needed) on the workspace's
 * channel with the next sequence number, one atomic step in Redis (the
 * counter's INCR and the PUBLISH in one script), so the channel carries
 * the events in the order of their numbers. *seq: that number. CSA_EBUSY
 * when the link is down (nothing sent), CSA_EBACKEND when Redis failed the
 * command (the link is then down until the thread reconnects).
 */
int csa_redis_publish(struct csa_redis *r, const char *payload, uint64_t *seq, struct csa_err *err);

/*
 * One request of token 'id' against its bucket in Redis, the same token
 * bucket as a node's own (auth.c): 'cap' tokens at most, refilled at
 * 'rate' per second from the time of the last request; a request takes
 * one. now_ms is the node's clock (base/ts.h), which only ever moves a
 * bucket's time forward, so nodes a few milliseconds apart refill a
 * little late, never twice. *allowed 1 or 0; when 0, *retry_after is the
 * seconds until a token is there. CSA_EBUSY / CSA_EBACKEND as
 * csa_redis_publish (the caller decides with its own bucket).
 */
int csa_redis_rate(struct csa_redis *r, const char *id, double rate, double cap, int64_t now_ms,
                   int *allowed, double *retry_after, struct csa_err *err);

/*
 * The link's state for /readyz (new reference): {"state": "up" |
 * "connecting" | "down", "address": "host:port/db", "since": ISO time of
 * the last change, "detail": why it is not up (absent when up)}.
 */
json_t *csa_redis_status(struct csa_redis *r);

/* The namespace of a workspace: 16 hex digits of a hash of what names its
 * store for every node: the PostgreSQL URL without its user and password
 * (host, port, database, options) when 'db_url' is given, else the
 * workspace directory's real path. */
int csa_redis_namespace(const char *ws_root, const char *db_url, char out[17], struct csa_err *err);

#endif
