/* The HTTP server: routing, auth, limits, handlers. */
#include "server/server.h"
#include "base/hash.h"
#include "automation/control.h"
#include "automation/ledger.h"
#include "base/fsops.h"
#include "base/ids.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/pipeline.h"
#include "agents/history.h"
#include "server/channels.h"
#include "server/monitor.h"
#include "server/outbox.h"
#include "server/tokens.h"
#include "store/mesh.h"
#include "store/schema.h"
#include "store/ticket.h"
#include "store/ws.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH   32
#define NROUTES_MAX 32

struct bucket {
	char id[32];
	double tokens;
	int64_t at_ms;
};

#define RCACHE_SLOTS 1024 /* direct-mapped by id hash */

struct csa_server {
	struct csa_ws *ws;
	struct csa_pipeline *pipe;
	struct csa_auto *autom;
	struct csa_monitor *monitor; /* spec §8.1 file monitor */
	struct MHD_Daemon *d;
	struct csa_server_opts o;
	char web_dir[1024];
	pthread_mutex_t mu; /* tokens, buckets, counters */
	json_t *tokens;
	int64_t tokens_loaded_ms;
	sqlite3 *threads; /* platform thread -> ticket (channels.db) */
	struct csa_outbox *outbox;
	pthread_t worker;
	int worker_running, stopping;
	pthread_mutex_t stop_mu;
	pthread_cond_t stop_cv;
	/* server-sent events: a ring of the latest formatted events */
	pthread_mutex_t ev_mu;
	pthread_cond_t ev_cv;
	char *ev[256];
	uint64_t ev_next;
	struct bucket buckets[256];
	/* metrics */
	uint64_t req_count[NROUTES_MAX][6]; /* by route and status class 1xx..5xx */
	uint64_t lat_bucket[NROUTES_MAX][8];
	double lat_sum[NROUTES_MAX];
	int ready;
	/* rendered GET /api/tickets/{id} bodies, valid while the ticket's
	 * files keep their signature (csa_mesh_files_sig) */
	pthread_mutex_t rc_mu;
	struct rc_slot {
		char id[CSA_ID_MAX + 1];
		uint64_t sig;
		char *body;
		size_t len;
	} rcache[RCACHE_SLOTS];
};

/* ---- one request ------------------------------------------------------------- */

struct req {
	char *body;
	size_t len, cap;
	int too_large;
};

struct call {
	struct csa_server *s;
	struct MHD_Connection *c;
	const char *method, *url;
	const char *params[2]; /* {id} values */
	const json_t *body;    /* parsed JSON body or NULL */
	enum csa_role role;
	const char *who;
	int status; /* response status */
	char *raw;  /* a body already rendered (handler returns NULL), owned */
	size_t raw_len;
};

typedef json_t *(*handler_fn)(struct call *c);

static void publish(struct csa_server *s, const char *event, json_t *data);

struct route {
	const char *method;
	const char *pattern; /* "/api/tickets/{}" */
	enum csa_role role;  /* needed; NONE = public */
	handler_fn fn;
	const char *name; /* for metrics */
};

static json_t *fail(struct call *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static json_t *fail(struct call *c, int status, const char *code, const char *fmt, ...)
{
	char detail[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	c->status = status;
	return json_pack("{s:s, s:s}", "error", code, "detail", detail);
}

/* Map a library error to an HTTP status. */
static json_t *fail_err(struct call *c, const struct csa_err *e)
{
	switch (e->code) {
	case CSA_ENOENT:
		return fail(c, 404, "not_found", "%s", e->msg);
	case CSA_EEXIST:
		return fail(c, 409, "exists", "%s", e->msg);
	case CSA_EINVAL:
	case CSA_ESCHEMA:
	case CSA_EPARSE:
		return fail(c, 400, "bad_request", "%s", e->msg);
	case CSA_ELIMIT:
		return fail(c, 413, "too_large", "%s", e->msg);
	case CSA_ESTATE:
		return fail(c, 409, "conflict", "%s", e->msg);
	case CSA_EBUSY:
		return fail(c, 503, "busy", "%s", e->msg);
	}
	return fail(c, 500, "internal", "%s", e->msg);
}

static const char *q(struct call *c, const char *name)
{
	return MHD_lookup_connection_value(c->c, MHD_GET_ARGUMENT_KIND, name);
}

/* ---- handlers ------------------------------------------------------------------- */

static json_t *h_health(struct call *c)
{
	(void)c;
	return json_pack("{s:s}", "status", "ok");
}

static json_t *h_ready(struct call *c)
{
	if (!c->s->ready)
		return fail(c, 503, "not_ready", "workspace not open yet");
	return json_pack("{s:s, s:s}", "status", "ready", "workspace", c->s->ws->root);
}

static json_t *h_ticket_create(struct call *c)
{
	if (!json_is_object(c->body))
		return fail(c, 400, "bad_request",
		            "body must be the ticket document (a JSON object)");
	if (json_object_get(c->body, "message"))
		return fail(c, 400, "bad_request",
		            "field 'message': use POST /api/tickets/{id}/messages");
	struct csa_err err = {0};
	json_t *res = NULL;
	if (csa_pipeline_ingest(c->s->pipe, c->body, &res, &err))
		return fail_err(c, &err);
	c->status = 201;
	return res;
}

static struct rc_slot *rc_slot_of(struct csa_server *s, const char *id)
{
	return &s->rcache[csa_fnv1a_str(CSA_FNV_SEED, id) % RCACHE_SLOTS];
}

/* A ticket is read far more often than written (dashboards, agents): its
 * rendered state is kept until one of its files changes. Files written in
 * the last two seconds are not trusted to show a change by their mtime
 * alone, so their tickets are rendered afresh. */
static json_t *h_ticket_get(struct call *c)
{
	struct csa_server *s = c->s;
	const char *id = c->params[0];
	int64_t newest = 0;
	uint64_t sig = csa_mesh_files_sig(s->ws, id, &newest);
	struct rc_slot *slot = rc_slot_of(s, id);
	if (sig) {
		pthread_mutex_lock(&s->rc_mu);
		if (slot->sig == sig && strcmp(slot->id, id) == 0 &&
		    (c->raw = malloc(slot->len ? slot->len : 1))) {
			memcpy(c->raw, slot->body, slot->len);
			c->raw_len = slot->len;
		}
		pthread_mutex_unlock(&s->rc_mu);
		if (c->raw)
			return NULL;
	}
	struct csa_err err = {0};
	struct csa_ticket tk;
	if (csa_store_load(s->ws->store, id, &tk, &err))
		return fail_err(c, &err);
	json_t *out = csa_ticket_state_json(&tk, 1);
	csa_ticket_release(&tk);
	if (!sig || newest > csa_now_ms() * 1000000LL - 2000000000LL)
		return out;
	char *body = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
	char *copy = body ? strdup(body) : NULL;
	if (!copy) {
		free(body);
		return out;
	}
	json_decref(out);
	pthread_mutex_lock(&s->rc_mu);
	free(slot->body);
	snprintf(slot->id, sizeof(slot->id), "%s", id);
	slot->sig = sig;
	slot->body = copy;
	slot->len = strlen(copy);
	pthread_mutex_unlock(&s->rc_mu);
	c->raw = body;
	c->raw_len = strlen(body);
	return NULL;
}

struct list_ctx {
	json_t *arr;
	long skip, limit, total;
};

static int list_one(void *vctx, const char *id, const json_t *t, const char *status)
{
	struct list_ctx *l = vctx;
	l->total++;
	if (l->skip > 0) {
		l->skip--;
		return 0;
	}
	if ((long)json_array_size(l->arr) >= l->limit)
		return 0;
	json_t *row = csa_ticket_summary(id, t, status);
	json_array_append_new(l->arr, row);
	return 0;
}

static json_t *h_ticket_list(struct call *c)
{
	struct csa_filter f = {q(c, "status"), q(c, "priority"), q(c, "stage")};
	if (f.status && !csa_enum_has(csa_enum_conv_status, f.status))
		return fail(c, 400, "bad_request", "status must be one of %s",
		            csa_enum_conv_status);
	if (f.priority && !csa_enum_has(csa_enum_priority, f.priority))
		return fail(c, 400, "bad_request", "priority must be one of %s", csa_enum_priority);
	if (f.stage && !csa_enum_has(csa_enum_stage, f.stage))
		return fail(c, 400, "bad_request", "stage must be one of %s", csa_enum_stage);
	const char *lim = q(c, "limit"), *off = q(c, "offset");
	struct list_ctx l = {json_array(), off ? atol(off) : 0, lim ? atol(lim) : 100, 0};
	if (l.limit <= 0 || l.limit > 1000 || l.skip < 0) {
		json_decref(l.arr);
		return fail(c, 400, "bad_request", "limit must be 1..1000 and offset >= 0");
	}
	struct csa_err err = {0};
	if (csa_store_scan(c->s->ws->store, &f, list_one, &l, &err)) {
		json_decref(l.arr);
		return fail_err(c, &err);
	}
	return json_pack("{s:o, s:I}", "tickets", l.arr, "total", (json_int_t)l.total);
}

static json_t *h_message_add(struct call *c)
{
	if (!json_is_object(c->body) || !json_is_object(json_object_get(c->body, "message")))
		return fail(
		    c, 400, "bad_request",
		    "body must be {\"side\": \"external\"|\"internal\", \"message\": {...}}");
	json_t *doc = json_deep_copy(c->body);
	json_object_set_new(doc, "ticket_id", json_string(c->params[0]));
	struct csa_err err = {0};
	json_t *res = NULL;
	int rc = csa_pipeline_ingest(c->s->pipe, doc, &res, &err);
	json_decref(doc);
	if (rc)
		return fail_err(c, &err);
	c->status = json_is_true(json_object_get(res, "duplicate")) ? 200 : 201;
	return res;
}

static json_t *h_reviews(struct call *c)
{
	const char *st = q(c, "status");
	if (st && strcmp(st, "open") != 0 && strcmp(st, "done") != 0)
		return fail(c, 400, "bad_request", "status must be open or done");
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_review_list(c->s->autom, st ? st : "open", 200, &out, &err))
		return fail_err(c, &err);
	return json_pack("{s:o}", "tasks", out);
}

static json_t *h_review_next(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_review_next(c->s->autom, &out, &err))
		return fail_err(c, &err);
	if (!out)
		return json_pack("{s:n}", "task");
	/* the reviewer sees the whole ticket */
	struct csa_ticket tk;
	if (csa_store_load(c->s->ws->store, csa_json_str(out, "ticket_id"), &tk, NULL) == CSA_OK) {
		json_object_set_new(out, "ticket", csa_ticket_state_json(&tk, 1));
		csa_ticket_release(&tk);
	}
	return json_pack("{s:o}", "task", out);
}

static json_t *h_review_decide(struct call *c)
{
	char *end;
	long long id = strtoll(c->params[0], &end, 10);
	if (*end || id <= 0)
		return fail(c, 400, "bad_request", "task id must be a positive number");
	const char *value = csa_json_str(c->body, "value");
	if (!value)
		return fail(c, 400, "bad_request", "field 'value' (string) is required");
	json_t *ms = json_object_get(c->body, "decision_ms");
	if (ms && (!json_is_integer(ms) || json_integer_value(ms) < 0))
		return fail(c, 400, "bad_request",
		            "field 'decision_ms' must be a non-negative integer");
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_review_decide(c->s->autom, id, value, c->who, csa_json_str(c->body, "notes"),
	                           ms ? json_integer_value(ms) : -1, &out, &err))
		return fail_err(c, &err);
	publish(c->s, "review",
	        json_pack("{s:O?, s:O?, s:O?}", "task_id", json_object_get(out, "task_id"),
	                  "decision_type", json_object_get(out, "decision_type"), "correct",
	                  json_object_get(out, "correct")));
	return out;
}

static json_t *h_phase(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_phase_status(c->s->autom, &out, &err))
		return fail_err(c, &err);
	return out;
}

static json_t *h_phase_evaluate(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_phase_evaluate(c->s->autom, &out, &err))
		return fail_err(c, &err);
	return out;
}

static json_t *h_phase_advance(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_phase_advance(c->s->autom, c->who, csa_json_bool(c->body, "force", 0), &out,
	                           &err))
		return fail_err(c, &err);
	publish(c->s, "phase",
	        json_pack("{s:s?}", "phase", csa_json_str(c->s->ws->cfg.root, "phase")));
	return out;
}

static json_t *h_phase_rollback(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_phase_rollback(c->s->autom, csa_json_str(c->body, "point"), c->who, &out,
	                            &err))
		return fail_err(c, &err);
	publish(c->s, "phase",
	        json_pack("{s:s?}", "phase", csa_json_str(c->s->ws->cfg.root, "phase")));
	return out;
}

static json_t *h_metrics_json(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_metrics(c->s->autom, &out, &err))
		return fail_err(c, &err);
	json_t *gates = NULL;
	if (csa_auto_phase_evaluate(c->s->autom, &gates, &err) == CSA_OK)
		json_object_set_new(out, "gates", gates);
	return out;
}

static json_t *h_alerts(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_auto_alerts(c->s->autom, q(c, "all") == NULL, &out, &err))
		return fail_err(c, &err);
	return json_pack("{s:o}", "alerts", out);
}

static json_t *h_mesh(struct call *c)
{
	return csa_monitor_status(c->s->monitor);
}

static json_t *h_mesh_check(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_monitor_check(c->s->monitor, &out, &err))
		return fail_err(c, &err);
	return out;
}

static json_t *h_audit(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_ledger_trail(csa_auto_ledger_path(c->s->autom), c->params[0], &out, &err))
		return fail_err(c, &err);
	return json_pack("{s:s, s:o}", "ticket_id", c->params[0], "trail", out);
}

static json_t *h_deliveries(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_outbox_for_ticket(c->s->outbox, c->params[0], &out, &err))
		return fail_err(c, &err);
	return json_pack("{s:s, s:o}", "ticket_id", c->params[0], "deliveries", out);
}

/* ---- server-sent events --------------------------------------------------------- */

static void publish(struct csa_server *s, const char *event, json_t *data)
{
	char *d = json_dumps(data, JSON_COMPACT);
	json_decref(data);
	char *msg = NULL;
	if (!d || asprintf(&msg, "event: %s\ndata: %s\n\n", event, d) < 0)
		msg = NULL;
	free(d);
	if (!msg)
		return;
	pthread_mutex_lock(&s->ev_mu);
	size_t slot = s->ev_next % 256;
	free(s->ev[slot]);
	s->ev[slot] = msg;
	s->ev_next++;
	pthread_cond_broadcast(&s->ev_cv);
	pthread_mutex_unlock(&s->ev_mu);
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
		if (s->ev_next - c->next > 256)
			c->next = s->ev_next - 256; /* a slow client skips what is gone */
		if (c->next < s->ev_next) {
			c->buf = strdup(s->ev[c->next % 256]);
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

static enum MHD_Result send_events(struct csa_server *s, struct MHD_Connection *c)
{
	struct sse_client *cl = calloc(1, sizeof(*cl));
	if (!cl)
		return MHD_NO;
	cl->s = s;
	pthread_mutex_lock(&s->ev_mu);
	cl->next = s->ev_next; /* from now on */
	pthread_mutex_unlock(&s->ev_mu);
	cl->buf = strdup(": connected\n\n");
	cl->len = cl->buf ? strlen(cl->buf) : 0;
	struct MHD_Response *r =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, cl, sse_free);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* Outbound targets: incoming-webhook URLs named by environment variables
 * (csa.json channels.*_webhook_env; the URLs carry secrets). */
static const struct {
	const char *key, *target;
} outbound[] = {{"mattermost_webhook_env", "mattermost"},
                {"slack_webhook_env", "slack"},
                {"webhook_url_env", "webhook"}};

/*
 * A drafted reply goes to the customer on its own only when the phase let
 * the strategy decision through autonomously; otherwise it waits in review
 * like any other decision. Customer replies go to the generic webhook (the
 * team's relay to e-mail, chat, ...), once per decision.
 */
static void queue_reply(struct csa_server *s, const char *ticket_id, const json_t *result)
{
	const char *env = csa_json_str(csa_config_get(&s->ws->cfg, "channels"), "webhook_url_env");
	const char *url = env ? getenv(env) : NULL;
	json_t *payload = url && *url ? csa_autonomous_reply(ticket_id, result) : NULL;
	if (!payload)
		return;
	char key[300];
	snprintf(key, sizeof(key), "%s|webhook|customer_reply",
	         csa_json_str(payload, "decision_id"));
	csa_outbox_enqueue(s->outbox, key, ticket_id, "webhook", url, payload, NULL);
	json_decref(payload);
}

/* After a pipeline run: the updates agent's notices for the team go to the
 * outbox, once per decision and target. */
static void queue_notices(void *ctx, const char *ticket_id, const json_t *result)
{
	struct csa_server *s = ctx;
	queue_reply(s, ticket_id, result);
	publish(s, "ticket",
	        json_pack("{s:s, s:O?, s:O?}", "ticket_id", ticket_id,
	                  "human_intervention_required",
	                  json_object_get(result, "human_intervention_required"),
	                  "final_recommendation", json_object_get(result, "final_recommendation")));
	json_t *upd = json_object_get(json_object_get(result, "agent_decisions"), "updates");
	const char *did = csa_json_str(upd, "decision_id");
	size_t i;
	json_t *n;
	json_array_foreach(
	    json_object_get(json_object_get(upd, "decision"), "stakeholder_notifications"), i, n)
	{
		const char *to = csa_json_str(n, "to"), *msg = csa_json_str(n, "message");
		if (!to || !msg || strcmp(to, "customer") == 0)
			continue; /* customer replies go out through review, not here */
		for (size_t k = 0; k < sizeof(outbound) / sizeof(outbound[0]); k++) {
			const char *env =
			    csa_json_str(csa_config_get(&s->ws->cfg, "channels"), outbound[k].key);
			const char *url = env ? getenv(env) : NULL;
			if (!url || !*url)
				continue;
			char key[300];
			snprintf(key, sizeof(key), "%s|%s|%s", did ? did : ticket_id,
			         outbound[k].target, to);
			json_t *payload =
			    strcmp(outbound[k].target, "webhook") == 0
			        ? json_pack("{s:s, s:s, s:s?, s:s}", "ticket_id", ticket_id, "to",
			                    to, "decision_id", did, "message", msg)
			        : json_pack("{s:s}", "text", msg);
			csa_outbox_enqueue(s->outbox, key, ticket_id, outbound[k].target, url,
			                   payload, NULL);
			json_decref(payload);
		}
	}
}

/* The controller's tick (quality monitor, anomaly detection, segments
 * moving with their gates) every automation.tick_seconds; its alerts and
 * phase changes reach the dashboard as events. */
static void tick_if_due(struct csa_server *s, int64_t *next_ms)
{
	int64_t now = csa_now_ms();
	if (now < *next_ms)
		return;
	json_t *every = csa_config_get(&s->ws->cfg, "automation.tick_seconds");
	double seconds = json_is_number(every) ? json_number_value(every) : 60;
	*next_ms = now + (int64_t)(1000 * (seconds > 0 ? seconds : 60));
	if (seconds <= 0)
		return; /* turned off */
	json_t *ev = NULL;
	struct csa_err err = {0};
	if (csa_auto_tick(s->autom, 0, &ev, &err)) {
		fprintf(stderr, "csa serve: controller tick: %s\n", err.msg);
		json_decref(ev);
		return;
	}
	size_t i;
	json_t *e;
	json_array_foreach(ev, i, e)
	{
		const char *kind = csa_json_str(e, "event");
		publish(s, kind && strcmp(kind, "alert") == 0 ? "alert" : "phase", json_incref(e));
	}
	json_decref(ev);
}

static void *deliver_loop(void *arg)
{
	struct csa_server *s = arg;
	int64_t next_tick = csa_now_ms() + 1000;
	pthread_mutex_lock(&s->stop_mu);
	while (!s->stopping) {
		pthread_mutex_unlock(&s->stop_mu);
		int n = 0;
		csa_outbox_deliver_due(s->outbox, csa_now_ms(), 32, &n, NULL);
		tick_if_due(s, &next_tick);
		pthread_mutex_lock(&s->stop_mu);
		if (s->stopping)
			break;
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 500000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->stop_cv, &s->stop_mu, &until);
	}
	pthread_mutex_unlock(&s->stop_mu);
	return NULL;
}

static const struct route routes[] = {
    {"GET", "/healthz", CSA_ROLE_NONE, h_health, "healthz"},
    {"GET", "/readyz", CSA_ROLE_NONE, h_ready, "readyz"},
    {"POST", "/api/tickets", CSA_ROLE_AGENT, h_ticket_create, "tickets_create"},
    {"GET", "/api/tickets", CSA_ROLE_VIEWER, h_ticket_list, "tickets_list"},
    {"GET", "/api/tickets/{}", CSA_ROLE_VIEWER, h_ticket_get, "tickets_get"},
    {"POST", "/api/tickets/{}/messages", CSA_ROLE_AGENT, h_message_add, "messages_add"},
    {"GET", "/api/reviews", CSA_ROLE_VIEWER, h_reviews, "reviews_list"},
    {"GET", "/api/reviews/next", CSA_ROLE_AGENT, h_review_next, "reviews_next"},
    {"POST", "/api/reviews/{}/decide", CSA_ROLE_AGENT, h_review_decide, "reviews_decide"},
    {"GET", "/api/phase", CSA_ROLE_VIEWER, h_phase, "phase_status"},
    {"POST", "/api/phase/evaluate", CSA_ROLE_VIEWER, h_phase_evaluate, "phase_evaluate"},
    {"POST", "/api/phase/advance", CSA_ROLE_ADMIN, h_phase_advance, "phase_advance"},
    {"POST", "/api/phase/rollback", CSA_ROLE_ADMIN, h_phase_rollback, "phase_rollback"},
    {"GET", "/api/metrics", CSA_ROLE_VIEWER, h_metrics_json, "metrics"},
    {"GET", "/api/alerts", CSA_ROLE_VIEWER, h_alerts, "alerts"},
    {"GET", "/api/mesh", CSA_ROLE_VIEWER, h_mesh, "mesh_status"},
    {"POST", "/api/mesh/check", CSA_ROLE_ADMIN, h_mesh_check, "mesh_check"},
    {"GET", "/api/audit/{}", CSA_ROLE_VIEWER, h_audit, "audit"},
    {"GET", "/api/tickets/{}/deliveries", CSA_ROLE_VIEWER, h_deliveries, "deliveries"},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* Match "/api/tickets/{}" against a path; {} takes one segment, checked to
 * be an id before a handler sees it. Returns 1 on match. */
static int match(const char *pat, const char *url, char params[2][80], int *np)
{
	*np = 0;
	while (*pat && *url) {
		if (pat[0] == '{' && pat[1] == '}') {
			const char *e = strchr(url, '/');
			size_t n = e ? (size_t)(e - url) : strlen(url);
			if (n == 0 || n >= 80 || *np >= 2)
				return 0;
			memcpy(params[*np], url, n);
			params[(*np)++][n] = '\0';
			url += n;
			pat += 2;
			continue;
		}
		if (*pat++ != *url++)
			return 0;
	}
	return *pat == '\0' && *url == '\0';
}

/* ---- auth and rate limits ------------------------------------------------------ */

static enum csa_role authenticate(struct csa_server *s, struct MHD_Connection *c, const char **who)
{
	const char *h =
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!h || strncmp(h, "Bearer ", 7) != 0)
		return CSA_ROLE_NONE;
	pthread_mutex_lock(&s->mu);
	/* tokens created by `csa token create` while serving are picked up */
	int64_t now = csa_now_ms();
	if (now - s->tokens_loaded_ms > 2000) {
		json_t *t;
		if (csa_tokens_load(s->ws->root, &t, NULL) == CSA_OK) {
			json_decref(s->tokens);
			s->tokens = t;
		}
		s->tokens_loaded_ms = now;
	}
	enum csa_role r = csa_token_check(s->tokens, h + 7, who);
	pthread_mutex_unlock(&s->mu);
	return r;
}

/* Token bucket per token id; 1 when the request may go on. */
static int rate_ok(struct csa_server *s, const char *id, double *retry_after)
{
	if (!id || s->o.rate_per_second <= 0)
		return 1;
	pthread_mutex_lock(&s->mu);
	int64_t now = csa_now_ms();
	struct bucket *b = NULL, *oldest = &s->buckets[0];
	for (size_t i = 0; i < sizeof(s->buckets) / sizeof(s->buckets[0]); i++) {
		if (strcmp(s->buckets[i].id, id) == 0) {
			b = &s->buckets[i];
			break;
		}
		if (s->buckets[i].at_ms < oldest->at_ms)
			oldest = &s->buckets[i];
	}
	double cap = 2 * s->o.rate_per_second;
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
	pthread_mutex_unlock(&s->mu);
	return ok;
}

/* JSON nesting depth, counted before parsing (strings skipped). */
static int too_deep(const char *b, size_t n)
{
	int depth = 0, in_str = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = b[i];
		if (in_str) {
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_str = 0;
		} else if (ch == '"') {
			in_str = 1;
		} else if (ch == '{' || ch == '[') {
			if (++depth > MAX_DEPTH)
				return 1;
		} else if (ch == '}' || ch == ']') {
			depth--;
		}
	}
	return 0;
}

/* ---- responses ------------------------------------------------------------------- */

static void security_headers(struct MHD_Response *r)
{
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	MHD_add_response_header(r, "Cache-Control", "no-store");
}

static enum MHD_Result send_body(struct MHD_Connection *c, int status, char *s, size_t n,
                                 double retry_after);

static enum MHD_Result send_json(struct MHD_Connection *c, int status, json_t *j,
                                 double retry_after)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	if (!s)
		return MHD_NO;
	return send_body(c, status, s, strlen(s), retry_after);
}

/* Send a rendered JSON body (malloc'd; freed by MHD). */
static enum MHD_Result send_body(struct MHD_Connection *c, int status, char *s, size_t n,
                                 double retry_after)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(n, s, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	security_headers(r);
	if (retry_after > 0) {
		char ra[32];
		snprintf(ra, sizeof(ra), "%.0f", retry_after + 0.999);
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
	}
	enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
	MHD_destroy_response(r);
	return ret;
}

static const char csp[] = "default-src 'self'; script-src 'self'; style-src 'self'; "
                          "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                          "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/* The dashboard: a fixed set of files, no path taken from the URL. */
static enum MHD_Result send_static(struct csa_server *s, struct MHD_Connection *c, const char *url)
{
	static const struct {
		const char *url, *file, *type;
	} files[] = {{"/", "index.html", "text/html; charset=utf-8"},
	             {"/app.js", "app.js", "text/javascript; charset=utf-8"},
	             {"/style.css", "style.css", "text/css; charset=utf-8"}};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (strcmp(url, files[i].url) != 0)
			continue;
		char path[1200];
		snprintf(path, sizeof(path), "%s/%s", s->web_dir, files[i].file);
		char *buf;
		size_t len;
		if (csa_fs_read_all(path, 1 << 22, &buf, &len, NULL))
			break;
		struct MHD_Response *r =
		    MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, files[i].type);
		MHD_add_response_header(r, "Content-Security-Policy", csp);
		security_headers(r);
		enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
		MHD_destroy_response(r);
		return ret;
	}
	struct call call = {0};
	return send_json(c, 404, fail(&call, 404, "not_found", "no page '%.100s'", url), 0);
}

/* Prometheus text exposition. */
static enum MHD_Result send_metrics(struct csa_server *s, struct MHD_Connection *c)
{
	static const double bounds[8] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1e9};
	size_t cap = 1 << 16, len = 0;
	char *b = malloc(cap);
	if (!b)
		return MHD_NO;
#define OUT(...) len += (size_t)snprintf(b + len, len < cap ? cap - len : 0, __VA_ARGS__)
	OUT("# HELP csa_http_requests_total HTTP requests by route and status class.\n"
	    "# TYPE csa_http_requests_total counter\n");
	pthread_mutex_lock(&s->mu);
	for (size_t r = 0; r < NROUTES; r++)
		for (int k = 1; k < 6; k++)
			if (s->req_count[r][k])
				OUT("csa_http_requests_total{route=\"%s\",status=\"%dxx\"} %llu\n",
				    routes[r].name, k, (unsigned long long)s->req_count[r][k]);
	OUT("# HELP csa_http_request_seconds Request latency.\n"
	    "# TYPE csa_http_request_seconds histogram\n");
	for (size_t r = 0; r < NROUTES; r++) {
		uint64_t cum = 0, total = 0;
		for (int k = 0; k < 6; k++)
			total += s->req_count[r][k];
		if (!total)
			continue;
		for (int k = 0; k < 8; k++) {
			cum += s->lat_bucket[r][k];
			if (k < 7)
				OUT("csa_http_request_seconds_bucket{route=\"%s\",le=\"%g\"} "
				    "%llu\n",
				    routes[r].name, bounds[k], (unsigned long long)cum);
		}
		OUT("csa_http_request_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
		    "csa_http_request_seconds_sum{route=\"%s\"} %.6f\n"
		    "csa_http_request_seconds_count{route=\"%s\"} %llu\n",
		    routes[r].name, (unsigned long long)cum, routes[r].name, s->lat_sum[r],
		    routes[r].name, (unsigned long long)cum);
	}
	pthread_mutex_unlock(&s->mu);
	struct csa_mesh_stats ms = csa_mesh_stats(s->ws->store);
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
		csa_ts_parse(csa_json_str(last, "at"), &at);
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
	json_t *tasks = NULL;
	if (csa_auto_review_list(s->autom, "open", 100000, &tasks, NULL) == CSA_OK) {
		OUT("# HELP csa_review_open_tasks Open review tasks.\n# TYPE csa_review_open_tasks "
		    "gauge\n"
		    "csa_review_open_tasks %zu\n",
		    json_array_size(tasks));
		json_decref(tasks);
	}
#undef OUT
	if (len >= cap)
		len = cap - 1;
	struct MHD_Response *r = MHD_create_response_from_buffer(len, b, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4");
	enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

static void count(struct csa_server *s, size_t route, int status, int64_t t0)
{
	static const double bounds[8] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1e9};
	double secs = (double)(csa_mono_ns() - t0) / 1e9;
	pthread_mutex_lock(&s->mu);
	s->req_count[route][status / 100 < 6 ? status / 100 : 5]++;
	int k = 0;
	while (k < 7 && secs > bounds[k])
		k++;
	s->lat_bucket[route][k]++;
	s->lat_sum[route] += secs;
	pthread_mutex_unlock(&s->mu);
}

/* ---- channel hooks ------------------------------------------------------------ */

/* A secret named by csa.json channels.<key> (an environment variable
 * name): secrets never live in the workspace. */
static const char *secret(struct csa_server *s, const char *key)
{
	const char *env = csa_json_str(csa_config_get(&s->ws->cfg, "channels"), key);
	return env ? getenv(env) : NULL;
}

static int thread_get(struct csa_server *s, const char *key, char *ticket, size_t n)
{
	sqlite3_stmt *st;
	int found = 0;
	pthread_mutex_lock(&s->mu);
	if (sqlite3_prepare_v2(s->threads, "SELECT ticket_id FROM threads WHERE key = ?1", -1, &st,
	                       NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW) {
			snprintf(ticket, n, "%s", sqlite3_column_text(st, 0));
			found = 1;
		}
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->mu);
	return found;
}

static void thread_bind(struct csa_server *s, const char *key, const char *ticket)
{
	sqlite3_stmt *st;
	pthread_mutex_lock(&s->mu);
	if (sqlite3_prepare_v2(s->threads,
	                       "INSERT OR IGNORE INTO threads(key, ticket_id) VALUES(?1, ?2)", -1,
	                       &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, ticket, -1, SQLITE_STATIC);
		sqlite3_step(st);
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->mu);
}

/* One normalised inbound message. */
struct inbound {
	const char *platform; /* email, trello, slack, mattermost */
	int internal;
	char ticket[80];  /* known ticket, or "" */
	char thread[300]; /* key binding the conversation to a ticket */
	const char *external_id;
	const char *sender_id;
	const char *sender_name;
	const char *content;
	json_t *platform_specific; /* borrowed */
};

static json_t *deliver(struct call *c, struct inbound *in)
{
	struct csa_server *s = c->s;
	if (!in->content || !*in->content)
		return fail(c, 400, "bad_request", "%s message without text", in->platform);
	if (!in->ticket[0] && in->thread[0])
		thread_get(s, in->thread, in->ticket, sizeof(in->ticket));
	char mid[48];
	struct csa_err err = {0};
	if (csa_external_message_id(in->platform, in->external_id ? in->external_id : in->content,
	                            mid, &err))
		return fail_err(c, &err);
	json_t *msg = json_pack("{s:s, s:s, s:s?, s:{s:O?}}", "content", in->content, "message_id",
	                        mid, "sender_id", in->sender_id, "metadata", "platform_specific",
	                        in->platform_specific);
	if (in->internal) {
		static const char *const plats[] = {"slack", "mattermost", "flock"};
		for (size_t i = 0; i < 3; i++)
			if (strcmp(in->platform, plats[i]) == 0)
				json_object_set_new(msg, "platform", json_string(plats[i]));
		json_object_set_new(msg, "sender", json_string("cs_agent"));
	}
	json_t *doc, *res = NULL;
	if (in->ticket[0]) {
		doc = json_pack("{s:s, s:s, s:o}", "ticket_id", in->ticket, "side",
		                in->internal ? "internal" : "external", "message", msg);
	} else if (in->internal) {
		json_decref(msg);
		return fail(c, 422, "unmapped",
		            "internal message names no ticket: put [T_NO] in it or reply in a "
		            "ticket's thread");
	} else {
		const char *plat = strcmp(in->platform, "email") == 0 ? "email" : in->platform;
		doc = json_pack("{s:s, s:s?, s:{s:s?, s:{s:s?}}, s:[o]}", "platform", plat,
		                "client_name", in->sender_name, "customer", "client_name",
		                in->sender_name, "contact_info", "address", in->sender_id,
		                "messages", msg);
	}
	int rc = csa_pipeline_ingest(s->pipe, doc, &res, &err);
	json_decref(doc);
	if (rc)
		return fail_err(c, &err);
	const char *tid = csa_json_str(res, "ticket_id");
	if (tid && in->thread[0])
		thread_bind(s, in->thread, tid);
	c->status = json_is_true(json_object_get(res, "duplicate")) ? 200 : 202;
	return res;
}

static const char *hdr(struct call *c, const char *name)
{
	return MHD_lookup_connection_value(c->c, MHD_HEADER_KIND, name);
}

/* E-mail as JSON from an inbound relay, or raw RFC 5322. */
static json_t *hook_email(struct call *c, const char *body, size_t len, int raw)
{
	struct csa_err err = {0};
	if (csa_token_equal(secret(c->s, "email_token_env"), hdr(c, "X-CSA-Hook-Token"), &err))
		return fail(c, 401, "unauthorized", "e-mail hook: %s", err.msg);
	json_t *m = NULL;
	if (raw ? csa_email_parse(body, len, &m, &err)
	        : csa_json_parse(body, len, "request body", &m, &err))
		return fail_err(c, &err);
	struct inbound in = {.platform = "email"};
	const char *subject = csa_json_str(m, "subject");
	const char *mid = csa_json_str(m, "message_id");
	const char *irt = csa_json_str(m, "in_reply_to");
	const char *text = csa_json_str(m, "text");
	/* a reply is mapped by the ticket tag in its subject, else by the
	 * message it answers */
	char seen[300];
	snprintf(seen, sizeof(seen), "email:%.280s", mid ? mid : "");
	if (!csa_subject_ticket(subject, in.ticket, sizeof(in.ticket)) && mid)
		thread_get(c->s, seen, in.ticket, sizeof(in.ticket)); /* a relay's retry */
	if (!in.ticket[0] && irt)
		snprintf(in.thread, sizeof(in.thread), "email:%.280s", irt);
	if (!in.ticket[0] && !irt && csa_json_str(m, "references")) {
		const char *r = csa_json_str(m, "references");
		const char *last = strrchr(r, '<');
		snprintf(in.thread, sizeof(in.thread), "email:%.280s", last ? last : r);
	}
	in.external_id = mid;
	in.sender_id = csa_json_str(m, "from");
	in.sender_name = in.sender_id;
	char *content = NULL;
	if (subject && text && asprintf(&content, "%s\n\n%s", subject, text) < 0)
		content = NULL;
	in.content = content ? content : text;
	in.platform_specific = json_pack("{s:s?, s:s?, s:s?}", "message_id", mid, "subject",
	                                 subject, "in_reply_to", irt);
	json_t *out = deliver(c, &in);
	/* later replies to this message find the same ticket */
	const char *tid = csa_json_str(out, "ticket_id");
	if (tid && mid) {
		char key[300];
		snprintf(key, sizeof(key), "email:%.280s", mid);
		thread_bind(c->s, key, tid);
	}
	free(content);
	json_decref(in.platform_specific);
	json_decref(m);
	return out;
}

static json_t *hook_slack(struct call *c, const char *body, size_t len)
{
	struct csa_err err = {0};
	if (csa_slack_verify(secret(c->s, "slack_signing_secret_env"),
	                     hdr(c, "X-Slack-Request-Timestamp"), hdr(c, "X-Slack-Signature"), body,
	                     len, csa_now_ms() / 1000, &err))
		return fail(c, 401, "unauthorized", "%s", err.msg);
	json_t *j;
	if (csa_json_parse(body, len, "request body", &j, &err))
		return fail_err(c, &err);
	json_t *out;
	if (csa_json_str(j, "challenge") &&
	    strcmp(csa_json_str(j, "type") ? csa_json_str(j, "type") : "", "url_verification") ==
	        0) {
		out = json_pack("{s:s}", "challenge", csa_json_str(j, "challenge"));
	} else {
		json_t *ev = json_object_get(j, "event");
		struct inbound in = {.platform = "slack", .internal = 1};
		const char *ch = csa_json_str(ev, "channel"), *ts = csa_json_str(ev, "ts"),
		           *root = csa_json_str(ev, "thread_ts");
		in.content = csa_json_str(ev, "text");
		csa_subject_ticket(in.content, in.ticket, sizeof(in.ticket));
		snprintf(in.thread, sizeof(in.thread), "slack:%.100s:%.100s", ch ? ch : "",
		         root ? root
		         : ts ? ts
		              : "");
		in.external_id =
		    csa_json_str(ev, "client_msg_id") ? csa_json_str(ev, "client_msg_id") : ts;
		in.sender_id = csa_json_str(ev, "user");
		in.platform_specific = ev;
		out = deliver(c, &in);
	}
	json_decref(j);
	return out;
}

static json_t *hook_mattermost(struct call *c, const char *body, size_t len)
{
	struct csa_err err = {0};
	json_t *j;
	if (csa_json_parse(body, len, "request body", &j, &err))
		return fail_err(c, &err);
	if (csa_token_equal(secret(c->s, "mattermost_token_env"), csa_json_str(j, "token"), &err)) {
		json_decref(j);
		return fail(c, 401, "unauthorized", "Mattermost hook: %s", err.msg);
	}
	struct inbound in = {.platform = "mattermost", .internal = 1};
	in.content = csa_json_str(j, "text");
	csa_subject_ticket(in.content, in.ticket, sizeof(in.ticket));
	const char *root = csa_json_str(j, "root_id");
	snprintf(in.thread, sizeof(in.thread), "mattermost:%.100s:%.100s",
	         csa_json_str(j, "channel_id") ? csa_json_str(j, "channel_id") : "",
	         root && *root                ? root
	         : csa_json_str(j, "post_id") ? csa_json_str(j, "post_id")
	                                      : "");
	in.external_id = csa_json_str(j, "post_id");
	in.sender_id = csa_json_str(j, "user_name");
	json_object_del(j, "token");
	in.platform_specific = j;
	json_t *out = deliver(c, &in);
	json_decref(j);
	return out;
}

static json_t *hook_trello(struct call *c, const char *body, size_t len)
{
	struct csa_err err = {0};
	const char *url =
	    csa_json_str(csa_config_get(&c->s->ws->cfg, "channels"), "trello_callback_url");
	if (csa_trello_verify(secret(c->s, "trello_secret_env"), url, hdr(c, "X-Trello-Webhook"),
	                      body, len, &err))
		return fail(c, 401, "unauthorized", "%s", err.msg);
	json_t *j;
	if (csa_json_parse(body, len, "request body", &j, &err))
		return fail_err(c, &err);
	json_t *act = json_object_get(j, "action");
	const char *type = csa_json_str(act, "type");
	json_t *out;
	if (!type || strcmp(type, "commentCard") != 0) {
		out = json_pack("{s:s, s:s?}", "ignored", "not a card comment", "type", type);
	} else {
		json_t *data = json_object_get(act, "data"),
		       *member = json_object_get(act, "memberCreator");
		struct inbound in = {.platform = "trello"};
		in.content = csa_json_str(data, "text");
		const char *card = csa_json_str(json_object_get(data, "card"), "id");
		snprintf(in.thread, sizeof(in.thread), "trello:%.200s", card ? card : "");
		in.external_id = csa_json_str(act, "id");
		in.sender_id = csa_json_str(member, "username");
		in.sender_name = csa_json_str(member, "fullName");
		in.platform_specific = json_object_get(data, "card");
		out = deliver(c, &in);
	}
	json_decref(j);
	return out;
}

static enum MHD_Result on_hook(struct csa_server *s, struct MHD_Connection *c, const char *url,
                               const char *method, struct req *rq)
{
	struct call call = {.s = s, .c = c, .method = method, .url = url, .status = 200};
	if (strcmp(method, "HEAD") == 0 || strcmp(method, "GET") == 0) /* Trello probes the URL */
		return send_json(c, 200, json_pack("{s:s}", "status", "ok"), 0);
	if (strcmp(method, "POST") != 0)
		return send_json(c, 405,
		                 fail(&call, 405, "method_not_allowed", "%s %s", method, url), 0);
	if (rq->too_large)
		return send_json(c, 413, fail(&call, 413, "too_large", "request body too large"),
		                 0);
	const char *body = rq->body ? rq->body : "";
	json_t *out;
	if (strcmp(url, "/hooks/email") == 0)
		out = hook_email(&call, body, rq->len, 0);
	else if (strcmp(url, "/hooks/email/raw") == 0)
		out = hook_email(&call, body, rq->len, 1);
	else if (strcmp(url, "/hooks/slack") == 0)
		out = hook_slack(&call, body, rq->len);
	else if (strcmp(url, "/hooks/mattermost") == 0)
		out = hook_mattermost(&call, body, rq->len);
	else if (strcmp(url, "/hooks/trello") == 0)
		out = hook_trello(&call, body, rq->len);
	else
		out = fail(&call, 404, "not_found", "no hook %s", url);
	return send_json(c, call.status, out, 0);
}

/* ---- the access handler ------------------------------------------------------------ */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
	(void)version;
	struct csa_server *s = cls;
	struct req *rq = *con_cls;
	if (!rq) {
		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		*con_cls = rq;
		return MHD_YES;
	}
	if (*upload_size) {
		/* bodies are capped at the document limit: memory is bounded */
		size_t lim = s->ws->cfg.limits.max_document_bytes;
		if (!rq->too_large && rq->len + *upload_size <= lim) {
			if (rq->len + *upload_size + 1 > rq->cap) {
				size_t cap = (rq->len + *upload_size + 1) * 2;
				if (cap > lim + 1)
					cap = lim + 1;
				char *nb = realloc(rq->body, cap);
				if (!nb)
					return MHD_NO;
				rq->body = nb;
				rq->cap = cap;
			}
			memcpy(rq->body + rq->len, upload, *upload_size);
			rq->len += *upload_size;
		} else {
			rq->too_large = 1;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	int64_t t0 = csa_mono_ns();
	if (strcmp(url, "/metrics") == 0 && strcmp(method, "GET") == 0)
		return send_metrics(s, c);
	if (strncmp(url, "/hooks/", 7) == 0)
		return on_hook(s, c, url, method, rq);
	if (strcmp(url, "/api/events") == 0 && strcmp(method, "GET") == 0) {
		struct call ev = {.s = s, .c = c};
		const char *tid = NULL;
		if (authenticate(s, c, &tid) == CSA_ROLE_NONE)
			return send_json(
			    c, 401,
			    fail(&ev, 401, "unauthorized", "send 'Authorization: Bearer TOKEN'"),
			    0);
		return send_events(s, c);
	}
	if (strncmp(url, "/api/", 5) != 0 && strcmp(url, "/healthz") != 0 &&
	    strcmp(url, "/readyz") != 0) {
		if (strcmp(method, "GET") != 0) {
			struct call call = {0};
			return send_json(
			    c, 405, fail(&call, 405, "method_not_allowed", "%s %s", method, url),
			    0);
		}
		return send_static(s, c, url);
	}
	struct call call = {.s = s, .c = c, .method = method, .url = url, .status = 200};
	char params[2][80];
	int np = 0, path_known = 0;
	size_t ri = 0;
	for (; ri < NROUTES; ri++) {
		if (!match(routes[ri].pattern, url, params, &np))
			continue;
		path_known = 1;
		if (strcmp(routes[ri].method, method) == 0)
			break;
	}
	if (ri == NROUTES)
		return send_json(c, path_known ? 405 : 404,
		                 path_known
		                     ? fail(&call, 405, "method_not_allowed",
		                            "%s not allowed on %s", method, url)
		                     : fail(&call, 404, "not_found", "no route %s %s", method, url),
		                 0);
	const struct route *rt = &routes[ri];
	for (int k = 0; k < np; k++) {
		struct csa_err e = {0};
		/* {id} is a ticket id or a task number: the same character set */
		if (csa_id_check(params[k], strlen(params[k]), &e)) {
			count(s, ri, 400, t0);
			return send_json(c, 400, fail(&call, 400, "bad_request", "%s", e.msg), 0);
		}
		call.params[k] = params[k];
	}
	double retry = 0;
	if (rt->role != CSA_ROLE_NONE) {
		const char *tid = NULL;
		call.role = authenticate(s, c, &tid);
		call.who = tid;
		if (call.role == CSA_ROLE_NONE) {
			count(s, ri, 401, t0);
			return send_json(
			    c, 401,
			    fail(&call, 401, "unauthorized",
			         "send 'Authorization: Bearer TOKEN' with a valid token"),
			    0);
		}
		if (call.role < rt->role) {
			count(s, ri, 403, t0);
			return send_json(c, 403,
			                 fail(&call, 403, "forbidden",
			                      "%s needs the %s role, token has %s", rt->name,
			                      csa_role_name(rt->role), csa_role_name(call.role)),
			                 0);
		}
		if (!rate_ok(s, tid, &retry)) {
			count(s, ri, 429, t0);
			return send_json(
			    c, 429,
			    fail(&call, 429, "rate_limited", "too many requests for this token"),
			    retry);
		}
	}
	json_t *body = NULL;
	if (rq->too_large) {
		count(s, ri, 413, t0);
		return send_json(c, 413,
		                 fail(&call, 413, "too_large", "request body over %zu bytes",
		                      s->ws->cfg.limits.max_document_bytes),
		                 0);
	}
	if (strcmp(method, "POST") == 0 && rq->len) {
		const char *ct =
		    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
		if (ct && strncmp(ct, "application/json", 16) != 0) {
			count(s, ri, 415, t0);
			return send_json(c, 415,
			                 fail(&call, 415, "unsupported_media_type",
			                      "send application/json, not '%.60s'", ct),
			                 0);
		}
		if (too_deep(rq->body, rq->len)) {
			count(s, ri, 400, t0);
			return send_json(c, 400,
			                 fail(&call, 400, "bad_request",
			                      "JSON nested deeper than %d levels", MAX_DEPTH),
			                 0);
		}
		struct csa_err e = {0};
		if (csa_json_parse(rq->body, rq->len, "request body", &body, &e)) {
			count(s, ri, 400, t0);
			return send_json(c, 400, fail(&call, 400, "bad_request", "%s", e.msg), 0);
		}
	}
	call.body = body;
	json_t *out = rt->fn(&call);
	json_decref(body);
	count(s, ri, call.status, t0);
	if (call.raw) {
		json_decref(out);
		return send_body(c, call.status, call.raw, call.raw_len, 0);
	}
	return send_json(c, call.status, out, 0);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
	(void)cls, (void)c, (void)toe;
	struct req *rq = *con_cls;
	if (rq) {
		free(rq->body);
		free(rq);
		*con_cls = NULL;
	}
}

int csa_server_start(struct csa_ws *ws, const struct csa_server_opts *o, struct csa_server **out,
                     struct csa_err *err)
{
	struct csa_server *s = calloc(1, sizeof(*s));
	if (!s)
		return csa_error(err, CSA_ENOMEM, "out of memory starting the server");
	s->ws = ws;
	s->o = *o;
	snprintf(s->web_dir, sizeof(s->web_dir), "%s", o->web_dir ? o->web_dir : "web");
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->rc_mu, NULL);
	int rc = csa_pipeline_open(ws, &s->pipe, err);
	if (!rc)
		rc = csa_auto_open(ws, s->pipe, &s->autom, err);
	if (!rc)
		rc = csa_tokens_load(ws->root, &s->tokens, err);
	if (rc)
		goto fail;
	char tpath[4200];
	csa_ws_path(ws, "channels.db", tpath, sizeof(tpath));
	if (sqlite3_open_v2(tpath, &s->threads,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
	                    NULL) != SQLITE_OK ||
	    sqlite3_exec(
	        s->threads,
	        "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS threads(key TEXT PRIMARY KEY,"
	        " ticket_id TEXT NOT NULL);",
	        NULL, NULL, NULL) != SQLITE_OK) {
		rc = csa_error(err, CSA_EIO, "cannot open '%s'", tpath);
		goto fail;
	}
	csa_ws_path(ws, "outbox.db", tpath, sizeof(tpath));
	if ((rc = csa_outbox_open(
	         tpath, (int)csa_json_int(csa_config_get(&ws->cfg, "channels"), "max_attempts", 8),
	         &s->outbox, err)))
		goto fail;
	csa_pipeline_set_observer(s->pipe, queue_notices, s);
	if ((rc = csa_monitor_start(
	         ws, s->autom,
	         csa_json_num(csa_config_get(&ws->cfg, "sync"), "check_interval_seconds", 60),
	         &s->monitor, err)))
		goto fail;
	pthread_mutex_init(&s->stop_mu, NULL);
	pthread_cond_init(&s->stop_cv, NULL);
	pthread_mutex_init(&s->ev_mu, NULL);
	pthread_cond_init(&s->ev_cv, NULL);
	if (pthread_create(&s->worker, NULL, deliver_loop, s) != 0) {
		rc = csa_error(err, CSA_EIO, "cannot start the delivery worker");
		goto fail;
	}
	s->worker_running = 1;
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
	if (inet_pton(AF_INET, o->bind ? o->bind : "127.0.0.1", &addr.sin_addr) != 1) {
		rc =
		    csa_error(err, CSA_EINVAL, "bind address '%s' is not an IPv4 address", o->bind);
		goto fail;
	}
	s->d = MHD_start_daemon(
	    /* a thread per connection: event streams may wait without holding up
	     * other requests */
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
	        MHD_USE_ERROR_LOG,
	    (uint16_t)o->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
	    (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_done, s,
	    MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_CONNECTION_LIMIT, 1000u, MHD_OPTION_END);
	if (!s->d) {
		rc = csa_error(err, CSA_EIO, "cannot listen on %s:%u (in use?)",
		               o->bind ? o->bind : "127.0.0.1", o->port);
		goto fail;
	}
	s->ready = 1;
	*out = s;
	return CSA_OK;
fail:
	if (s->worker_running) {
		pthread_mutex_lock(&s->stop_mu);
		s->stopping = 1;
		pthread_cond_signal(&s->stop_cv);
		pthread_mutex_unlock(&s->stop_mu);
		pthread_join(s->worker, NULL);
	}
	csa_monitor_stop(s->monitor);
	csa_outbox_close(s->outbox);
	sqlite3_close(s->threads);
	csa_auto_close(s->autom);
	csa_pipeline_free(s->pipe);
	json_decref(s->tokens);
	pthread_mutex_destroy(&s->rc_mu);
	pthread_mutex_destroy(&s->mu);
	free(s);
	return rc;
}

unsigned csa_server_port(const struct csa_server *s)
{
	const union MHD_DaemonInfo *i = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
	return i ? i->port : 0;
}

void csa_server_stop(struct csa_server *s)
{
	if (!s)
		return;
	s->ready = 0;
	/* end the event streams, then stop: MHD_stop_daemon joins the
	 * connection threads, so requests being handled finish */
	pthread_mutex_lock(&s->ev_mu);
	pthread_mutex_lock(&s->stop_mu);
	s->stopping = 1;
	pthread_cond_signal(&s->stop_cv);
	pthread_mutex_unlock(&s->stop_mu);
	pthread_cond_broadcast(&s->ev_cv);
	pthread_mutex_unlock(&s->ev_mu);
	MHD_stop_daemon(s->d);
	pthread_join(s->worker, NULL);
	csa_monitor_stop(s->monitor);
	csa_outbox_close(s->outbox);
	sqlite3_close(s->threads);
	csa_auto_close(s->autom);
	csa_pipeline_free(s->pipe);
	json_decref(s->tokens);
	for (size_t i = 0; i < 256; i++)
		free(s->ev[i]);
	for (size_t i = 0; i < RCACHE_SLOTS; i++)
		free(s->rcache[i].body);
	pthread_mutex_destroy(&s->rc_mu);
	pthread_mutex_destroy(&s->mu);
	free(s);
}
