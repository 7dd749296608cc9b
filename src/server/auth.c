/*
 * Who may call a route: the bearer token of a request (checked against
 * the workspace's tokens, tokens.h) and a token bucket per token id, so
 * one client cannot crowd out the others. With Redis the bucket is kept
 * there (redis.h), one per token for every node, so a client spreading
 * its requests over the nodes gets the same rate as on one; when Redis
 * cannot answer, each node keeps its own buckets meanwhile (a client may
 * then get up to the rate once per node, but is never refused because
 * Redis is away).
 */
#include "server/server_internal.h"
#include "base/ts.h"
#include "server/redis.h"

#include <microhttpd.h>
#include <stdio.h>
#include <string.h>

enum csa_role csa_auth_bearer(struct csa_server *s, struct call *c, struct csa_err *err)
{
	const char *h = csa_header(c, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!h || strncmp(h, "Bearer ", 7) != 0) {
		csa_error(err, CSA_EAUTH, "send 'Authorization: Bearer TOKEN' with a valid token");
		return CSA_ROLE_NONE;
	}
	enum csa_role role = CSA_ROLE_NONE;
	if (csa_tokens_check(s->tokens, h + 7, &role, c->who_buf, err))
		return CSA_ROLE_NONE;
	c->who = c->who_buf;
	return role;
}

int csa_rate_ok(struct csa_server *s, const char *id, double *retry_after)
{
	if (!id || s->o.rate_per_second <= 0)
		return 1;
	double cap = 2 * s->o.rate_per_second; /* a burst of two seconds' worth */
	if (s->redis) {
		int allowed = 0;
		double wait = 0;
		struct csa_err err = {0};
		int rc = csa_redis_rate(s->redis, id, s->o.rate_per_second, cap, csa_now_ms(),
		                        &allowed, &wait, &err);
		if (rc == CSA_OK) {
			if (!allowed)
				*retry_after = wait;
			return allowed;
		}
		/* down (CSA_EBUSY) was logged by the link; an error answer is
		 * logged once */
		if (rc != CSA_EBUSY && !__atomic_exchange_n(&s->rate_said, 1, __ATOMIC_RELAXED))
			fprintf(stderr, "csa serve: rate limits are this node's own: %s\n", err.msg);
	}
	pthread_mutex_lock(&s->rate_mu);
	int64_t now = csa_now_ms();
	struct csa_bucket *b = NULL, *oldest = &s->buckets[0];
	for (size_t i = 0; i < sizeof(s->buckets) / sizeof(s->buckets[0]); i++) {
		if (strcmp(s->buckets[i].id, id) == 0) {
			b = &s->buckets[i];
			break;
		}
		if (s->buckets[i].at_ms < oldest->at_ms)
			oldest = &s->buckets[i];
	}
	if (!b) {
		b = oldest;
		snprintf(b->id, sizeof(b->id), "%s", id);
		b->tokens = cap;
		b->at_ms = now;
	}
	b->tokens = b->tokens + (double)(now - b->at_ms) / 1000.0 * s->o.rate_per_second;
	if (b->tokens > cap)
		b->tokens = cap;
	b->at_ms = now;
	int ok = b->tokens >= 1;
	if (ok)
		b->tokens -= 1;
	else
		*retry_after = (1 - b->tokens) / s->o.rate_per_second;
	pthread_mutex_unlock(&s->rate_mu);
	return ok;
}
