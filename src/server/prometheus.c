/*
 * GET /metrics: the Prometheus text exposition of the server's request
 * counters and latencies by route, the store's commit counters, the
 * ticket count, the file monitor's last check and the review queue.
 */
#include "server/server_internal.h"
#include "server/redis.h"
#include "agents/history.h"
#include "automation/control.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/pipeline.h"
#include "store/monitor.h"
#include "store/leader.h"
#include "store/store.h"
#include "store/ws.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The text being built: it grows as needed; a failed growth is remembered
 * and reported once at the end. */
struct text {
	char *b;
	size_t len, cap;
	int nomem;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_add(struct text *t, const char *fmt, ...)
{
	if (t->nomem)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(t->b + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->nomem = 1;
			return;
		}
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = (t->cap + (size_t)n + 1) * 2;
		char *nb = realloc(t->b, cap);
		if (!nb) {
			t->nomem = 1;
			return;
		}
		t->b = nb;
		t->cap = cap;
	}
}

/* Requests and latency of route r ('name'), under stat_mu. */
static void route_series(struct text *t, const struct csa_server *s, size_t r, const char *name,
                         int histogram)
{
	if (!histogram) {
		for (int k = 1; k < 6; k++)
			if (s->req_count[r][k])
				text_add(
				    t,
				    "csa_http_requests_total{route=\"%s\",status=\"%dxx\"} %llu\n",
				    name, k, (unsigned long long)s->req_count[r][k]);
		return;
	}
	uint64_t cum = 0, total = 0;
	for (int k = 0; k < 6; k++)
		total += s->req_count[r][k];
	if (!total)
		return;
	for (int k = 0; k < CSA_LAT_BUCKETS; k++) {
		cum += s->lat_bucket[r][k];
		if (k < CSA_LAT_BUCKETS - 1)
			text_add(t,
			         "csa_http_request_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
			         name, csa_http_lat_bounds[k], (unsigned long long)cum);
	}
	text_add(t,
	         "csa_http_request_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
	         "csa_http_request_seconds_sum{route=\"%s\"} %.6f\n"
	         "csa_http_request_seconds_count{route=\"%s\"} %llu\n",
	         name, (unsigned long long)cum, name, s->lat_sum[r], name, (unsigned long long)cum);
}

/* Prometheus text exposition. */
json_t *csa_h_prometheus(struct call *c)
{
	struct csa_server *s = c->s;
	struct text o = {.cap = 1 << 16};
	if (!(o.b = malloc(o.cap)))
		return csa_fail(c, 500, "internal", "out of memory rendering /metrics");
	o.b[0] = '\0';
#define OUT(...) text_add(&o, __VA_ARGS__)
	/* requests no route took are counted under route="none" */
	OUT("# HELP csa_http_requests_total HTTP requests by route and status class.\n"
	    "# TYPE csa_http_requests_total counter\n");
	pthread_mutex_lock(&s->stat_mu);
	for (size_t r = 0; r < csa_nroutes; r++)
		route_series(&o, s, r, csa_routes[r].name, 0);
	route_series(&o, s, CSA_HTTP_ROUTES_MAX, "none", 0);
	OUT("# HELP csa_http_request_seconds Request latency.\n"
	    "# TYPE csa_http_request_seconds histogram\n");
	for (size_t r = 0; r < csa_nroutes; r++)
		route_series(&o, s, r, csa_routes[r].name, 1);
	route_series(&o, s, CSA_HTTP_ROUTES_MAX, "none", 1);
	pthread_mutex_unlock(&s->stat_mu);
	struct csa_store_stats ms = {0};
	csa_store_stats(s->ws->store, &ms);
	OUT("# HELP csa_tickets Tickets known to the workspace.\n# TYPE csa_tickets gauge\n"
	    "csa_tickets %zu\n",
	    csa_history_count(csa_pipeline_history(s->pipe)));
	OUT("# HELP csa_store_commits_total Store commits by this server.\n"
	    "# TYPE csa_store_commits_total counter\ncsa_store_commits_total %ld\n"
	    "# HELP csa_store_commit_batches_total Journal records (fdatasyncs) the commits "
	    "took: commits made at once share one.\n"
	    "# TYPE csa_store_commit_batches_total counter\ncsa_store_commit_batches_total %ld\n"
	    "# HELP csa_store_checkpoints_total Journal checkpoints.\n"
	    "# TYPE csa_store_checkpoints_total counter\ncsa_store_checkpoints_total %ld\n",
	    ms.commits, ms.batches, ms.checkpoints);
	json_t *mon = csa_monitor_status(s->monitor), *last = json_object_get(mon, "last");
	OUT("# HELP csa_mesh_checks_total File monitor checks of the mesh.\n"
	    "# TYPE csa_mesh_checks_total counter\ncsa_mesh_checks_total %lld\n",
	    (long long)csa_json_int(mon, "checks", 0));
	if (json_is_object(last)) {
		int64_t at = 0;
		if (csa_ts_parse(csa_json_str(last, "at"), &at) != CSA_OK)
			at = 0; /* the monitor always writes it; 0 shows that it did not */
		OUT("# HELP csa_mesh_last_check_timestamp_seconds When the last check ran.\n"
		    "# TYPE csa_mesh_last_check_timestamp_seconds gauge\n"
		    "csa_mesh_last_check_timestamp_seconds %.3f\n"
		    "# HELP csa_mesh_last_check_seconds How long the last check took.\n"
		    "# TYPE csa_mesh_last_check_seconds gauge\ncsa_mesh_last_check_seconds %.3f\n"
		    "# HELP csa_mesh_problems Problems found by the last check, by kind.\n"
		    "# TYPE csa_mesh_problems gauge\n",
		    (double)at / 1000.0, csa_json_num(last, "duration_ms", 0) / 1000.0);
		const char *kind;
		json_t *n;
		json_object_foreach(json_object_get(last, "counts"), kind, n)
		    OUT("csa_mesh_problems{problem=\"%s\"} %lld\n", kind,
		        (long long)json_integer_value(n));
	}
	json_decref(mon);
	/* counters the controller keeps: no query, no lock (the endpoint
	 * needs no token) */
	struct csa_auto_counts ac;
	csa_auto_counts(s->autom, &ac);
	OUT("# HELP csa_review_open_tasks Review tasks not yet decided.\n"
	    "# TYPE csa_review_open_tasks gauge\ncsa_review_open_tasks %lld\n"
	    "# HELP csa_automation_decisions Decisions in the controller's decision log.\n"
	    "# TYPE csa_automation_decisions gauge\ncsa_automation_decisions %lld\n"
	    "# HELP csa_automation_reviews Decisions a person reviewed.\n"
	    "# TYPE csa_automation_reviews gauge\ncsa_automation_reviews %lld\n"
	    "# HELP csa_alerts_open Open alerts.\n# TYPE csa_alerts_open gauge\n"
	    "csa_alerts_open %lld\n",
	    (long long)ac.open_tasks, (long long)ac.decisions, (long long)ac.reviews,
	    (long long)ac.open_alerts);
	if (s->redis)
		OUT("# HELP csa_redis_up Whether this node's link to Redis is up (events and rate "
		    "limits shared with the other nodes), 0 while it serves alone.\n"
		    "# TYPE csa_redis_up gauge\ncsa_redis_up %d\n",
		    csa_redis_up(s->redis));
	/* the roles only one node of a database runs (always 1 on a single
	 * host, epoch 0): who leads, since which takeover */
	OUT("# HELP csa_leader Whether this node leads the role (the controller's tick, the "
	    "outbox's sender).\n# TYPE csa_leader gauge\n");
	for (int r = 0; r < CSA_ROLES; r++)
		OUT("csa_leader{role=\"%s\"} %d\n", csa_server_roles[r],
		    csa_leader_leading(s->lead[r].l));
	OUT("# HELP csa_leader_epoch Fencing epoch of this node's current or last leadership of "
	    "the role (0: never led, or a single host).\n# TYPE csa_leader_epoch gauge\n");
	for (int r = 0; r < CSA_ROLES; r++)
		OUT("csa_leader_epoch{role=\"%s\"} %lld\n", csa_server_roles[r],
		    (long long)csa_leader_epoch(s->lead[r].l));
	pthread_mutex_lock(&s->stat_mu);
	unsigned long long ticks = (unsigned long long)s->ticks;
	pthread_mutex_unlock(&s->stat_mu);
	OUT("# HELP csa_controller_ticks_total Controller ticks this node ran (as leader of "
	    "\"tick\").\n# TYPE csa_controller_ticks_total counter\n"
	    "csa_controller_ticks_total %llu\n",
	    ticks);
#undef OUT
	if (o.nomem) {
		free(o.b);
		return csa_fail(c, 500, "internal", "out of memory rendering /metrics");
	}
	return csa_respond_text(c, o.b, o.len, "text/plain; version=0.0.4");
}
