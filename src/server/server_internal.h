/*
 * What the files of the server share and nothing outside src/server/ may
 * use: the server's state, one request on its way through the steps of
 * http.c, the route table and the helpers handlers answer with.
 *
 *   http.c        the daemon, request bodies, limits, responses, the
 *                 steps of a request (on_request)
 *   routes.c      the one route table and path matching
 *   auth.c        bearer tokens and per-token rate limits
 *   api_tickets.c tickets, messages, deliveries, health
 *   api_lifecycle.c resolving and assigning a ticket
 *   api_auto.c    reviews, phases, metrics, alerts, audit, file monitor
 *   hooks.c       platform hooks (/hooks/...) and their signatures
 *   events.c      server-sent events (/api/events), across nodes with Redis
 *   redis.c       the link to Redis: event channel, shared rate limits (redis.h)
 *   prometheus.c  the Prometheus exposition (/metrics)
 *   notices.c     which notice of a pipeline run goes to which channel
 *   replies.c     replies to the customer on the ticket's channel (replies.h)
 *   board.c       the ticket's card on the team's Trello board
 *   server.c      start, stop, the delivery and controller thread
 */
#ifndef CSA_SERVER_SERVER_INTERNAL_H
#define CSA_SERVER_SERVER_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/ids.h"
#include "server/server.h"
#include "server/tokens.h"

struct MHD_Connection;
struct MHD_Daemon;
struct MHD_Response;
struct csa_chanmap;
struct csa_outbox;
struct csa_pipeline;
struct csa_auto;
struct csa_monitor;
struct csa_search;
struct csa_board;
struct csa_redis;
struct csa_leader;

/* The roles of struct csa_server's lead[], named by csa_server_roles. */
enum { CSA_ROLE_TICK = 0, CSA_ROLE_OUTBOX = 1, CSA_ROLES = 2 };
extern const char *const csa_server_roles[CSA_ROLES];

#define CSA_HTTP_MAX_DEPTH  32   /* JSON nesting of a request body */
#define CSA_HTTP_ROUTES_MAX 48   /* room in the per-route counters */
#define CSA_RCACHE_SLOTS    1024 /* rendered tickets, direct-mapped by id hash */
#define CSA_EVENTS_RING     256  /* server-sent events kept for slow readers */
#define CSA_LAT_BUCKETS     8    /* request latency histogram */

extern const double csa_http_lat_bounds[CSA_LAT_BUCKETS];

/* One formatted event of the ring (events.c): 'seq' is its number from
 * Redis (its SSE id), 0 for an event that reached this node only. */
struct csa_event {
	char *msg;
	uint64_t seq;
	int resync; /* a "resync" event: the client is to refetch */
};

/* A token bucket of one API token (auth.c). */
struct csa_bucket {
	char id[32];
	double tokens;
	int64_t at_ms;
};

/* A rendered GET /api/tickets/{id} body, valid while the ticket's version
 * (csa_store_version) is unchanged. */
struct csa_rc_slot {
	char id[CSA_ID_MAX + 1];
	uint64_t version;
	char *body;
	size_t len;
};

struct csa_server {
	struct csa_ws *ws;
	struct csa_pipeline *pipe;
	struct csa_auto *autom;
	struct csa_monitor *monitor; /* spec §8.1 file monitor */
	struct MHD_Daemon *d;
	struct csa_server_opts o;
	char web_dir[1024];
	int ready;

	struct csa_tokens *tokens;   /* API tokens (tokens.h) */
	struct csa_chanmap *chanmap; /* platform thread -> ticket (chanmap.h) */
	struct csa_outbox *outbox;
	struct csa_search *search; /* the inbox's index (search/search.h) */
	struct csa_board *board;   /* the Trello board's cards (board.c) */
	int unconfigured_said;     /* an autonomous reply found its channel unconfigured */

	/* the roles only one node runs at a time (server.c; store/leader.h):
	 * [CSA_ROLE_TICK] the controller's tick, [CSA_ROLE_OUTBOX] the
	 * outbox's sender; polled by the worker, read by /readyz and
	 * /metrics */
	struct csa_role_lead {
		struct csa_leader *l;
		int64_t next_try_ms;  /* when a node not leading asks again */
		char last_error[200]; /* said once while it lasts */
	} lead[CSA_ROLES];
	uint64_t ticks; /* controller ticks this node ran (stat_mu) */

	/* the delivery and controller thread (server.c) */
	pthread_t worker;
	int worker_running, stopping;
	pthread_mutex_t stop_mu;
	pthread_cond_t stop_cv;
	/* the scheduled backup's thread (server.c; backup.dir) */
	pthread_t backup_thread;
	int backup_running;

	/* server-sent events: a ring of the latest formatted events */
	pthread_mutex_t ev_mu;
	pthread_cond_t ev_cv;
	struct csa_event ev[CSA_EVENTS_RING];
	uint64_t ev_next;
	/* with Redis (REDIS_URL or redis.url; NULL without): every node's
	 * events, numbered, through one channel (events.c, redis.h) */
	struct csa_redis *redis;
	char node_id[17];       /* this process among the nodes (random) */
	uint64_t ev_last_seq;   /* the number of the last numbered event in the ring */
	uint64_t ev_local_only; /* events that reached only this node's clients */

	/* rate limits (auth.c): in Redis when the link is up, else these */
	int rate_said; /* a Redis failure of the rate limit was logged */
	pthread_mutex_t rate_mu;
	struct csa_bucket buckets[256];

	/* request counters by route (the last row: requests no route took)
	 * and status class 1xx..5xx, latency histograms (http.c) */
	pthread_mutex_t stat_mu;
	uint64_t req_count[CSA_HTTP_ROUTES_MAX + 1][6];
	uint64_t lat_bucket[CSA_HTTP_ROUTES_MAX + 1][CSA_LAT_BUCKETS];
	double lat_sum[CSA_HTTP_ROUTES_MAX + 1];

	pthread_mutex_t rc_mu;
	struct csa_rc_slot rcache[CSA_RCACHE_SLOTS];
};

/* One request on its way through http.c's steps. */
struct call {
	struct csa_server *s;
	struct MHD_Connection *c;
	const char *method, *url;
	const char *params[2]; /* {} values of the route's pattern */
	const json_t *body;    /* parsed JSON body (BODY_JSON routes) or NULL */
	const char *bytes;     /* the body as sent (BODY_BYTES routes), NUL-ended */
	size_t nbytes;
	enum csa_role role; /* of the bearer token */
	const char *who;    /* the token's id, valid for the request */
	char who_buf[32];
	int status;         /* response status */
	double retry_after; /* seconds, for 429 */
	/* A handler that answers with something else than a JSON value sets
	 * one of these and returns NULL: */
	char *raw; /* a rendered JSON body (malloc'd, handed over) */
	size_t raw_len;
	struct MHD_Response *response; /* any response (handed over) */
};

typedef json_t *(*csa_handler_fn)(struct call *c);

/* How a route authenticates. */
enum csa_auth {
	CSA_AUTH_NONE,     /* public */
	CSA_AUTH_BEARER,   /* Authorization: Bearer TOKEN with at least 'role' */
	CSA_AUTH_PLATFORM, /* the platform's own signature or token ('verify') */
};

/* What a route does with a request body. */
enum csa_body {
	CSA_BODY_JSON,  /* POST bodies: application/json, depth-checked, parsed */
	CSA_BODY_BYTES, /* handed to the handler as sent (hooks verify the bytes) */
};

struct route {
	const char *method;
	const char *pattern; /* "/api/tickets/{}": {} is one path segment, an id */
	enum csa_auth auth;
	enum csa_role role; /* CSA_AUTH_BEARER: the least role */
	/* CSA_AUTH_PLATFORM: 0 when the request is the platform's, else
	 * CSA_EAUTH (or another code) with err saying why */
	int (*verify)(struct call *c, struct csa_err *err);
	enum csa_body body;
	csa_handler_fn fn;
	const char *name; /* for metrics and messages */
};

/* routes.c */
extern const struct route csa_routes[];
extern const size_t csa_nroutes;
/* The route for (method, url): its index, with the {} values copied into
 * params. Returns the index, or -1 with *path_known set when the path
 * exists with other methods (405) and clear when it does not (404). */
long csa_route_find(const char *method, const char *url, char params[2][80], int *np,
                    int *path_known);

/* http.c: error bodies {"error": code, "detail": ...} with c->status set */
json_t *csa_fail(struct call *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A library error as its HTTP status (csa_http_status_of) and body. */
json_t *csa_fail_err(struct call *c, const struct csa_err *e);
/* The HTTP status and error code of a library status. */
int csa_http_status_of(int code, const char **error_code);
/* A query-string argument, or NULL. */
const char *csa_query(struct call *c, const char *name);
/* A request header, or NULL. */
const char *csa_header(struct call *c, const char *name);
/* A query argument as a whole number in [min, max]: 0 with *out set (def
 * when absent), or a 400 body naming the argument. */
json_t *csa_query_long(struct call *c, const char *name, long def, long min, long max, long *out);
/* Parse a BODY_BYTES request as JSON with the depth limit: 0, or the
 * failure's HTTP body in *fail_out. */
int csa_bytes_json(struct call *c, json_t **out, json_t **fail_out);
/* Hand over a ready response of 'body' (malloc'd, handed over) with a
 * content type and the security headers in c->response: NULL, or a 500
 * body when libmicrohttpd cannot make it. */
json_t *csa_respond_text(struct call *c, char *body, size_t n, const char *type);
/* The daemon: listen on o->bind:o->port. */
int csa_http_listen(struct csa_server *s, struct csa_err *err);

/* auth.c */
enum csa_role csa_auth_bearer(struct csa_server *s, struct call *c, struct csa_err *err);
int csa_rate_ok(struct csa_server *s, const char *id, double *retry_after);

/* events.c */
void csa_publish(struct csa_server *s, const char *event, json_t *data);
/* With Redis: start the link to it from REDIS_URL (the environment) or
 * redis.url (csa.json); nothing to do without either. A URL that does not
 * parse is an error naming its source and host:port; Redis not answering
 * is not (the link keeps trying, the node serves alone meanwhile). */
int csa_events_cluster_start(struct csa_server *s, struct csa_err *err);
/* Stop the link (before csa_events_release). */
void csa_events_cluster_stop(struct csa_server *s);
/* The "phase" event with the workspace phase now in effect. */
void csa_publish_phase(struct csa_server *s);

/* A secret named by csa.json channels.<key> (an environment variable
 * name): secrets never live in the workspace. NULL when unset. */
const char *csa_server_secret(struct csa_server *s, const char *key);
/* Request bodies are capped at limits.max_document_bytes. */
size_t csa_server_max_body(struct csa_server *s);
void csa_events_release(struct csa_server *s);

/* notices.c: the pipeline's run observer */
void csa_notices_route(void *server, const char *ticket_id, const json_t *result);

/* The Trello board (board.c): start observing commits and give the outbox
 * its hook (cards are made only while channels.trello_board is set); stop
 * before the outbox and the store close, after delivery has stopped. */
int csa_board_start(struct csa_server *s, struct csa_err *err);
void csa_board_stop(struct csa_server *s);

/* handlers, by file */
json_t *csa_h_health(struct call *c);
json_t *csa_h_ready(struct call *c);
json_t *csa_h_static(struct call *c);
json_t *csa_h_ticket_create(struct call *c);
json_t *csa_h_ticket_list(struct call *c);
json_t *csa_h_ticket_get(struct call *c);
json_t *csa_h_message_add(struct call *c);
json_t *csa_h_deliveries(struct call *c);
/* api_lifecycle.c */
json_t *csa_h_ticket_resolve(struct call *c);
json_t *csa_h_ticket_assign(struct call *c);
json_t *csa_h_ticket_progress(struct call *c);
void csa_rcache_release(struct csa_server *s);

json_t *csa_h_reviews(struct call *c);
json_t *csa_h_review_next(struct call *c);
json_t *csa_h_review_decide(struct call *c);
json_t *csa_h_ticket_decide(struct call *c);
json_t *csa_h_phase(struct call *c);
json_t *csa_h_phase_evaluate(struct call *c);
json_t *csa_h_phase_advance(struct call *c);
json_t *csa_h_phase_rollback(struct call *c);
json_t *csa_h_phase_cap(struct call *c);
json_t *csa_h_phase_points(struct call *c);
json_t *csa_h_metrics_trend(struct call *c);
json_t *csa_h_kb_gaps(struct call *c);
json_t *csa_h_kb_accept(struct call *c);
json_t *csa_h_metrics_json(struct call *c);
json_t *csa_h_alerts(struct call *c);
json_t *csa_h_mesh(struct call *c);
json_t *csa_h_mesh_check(struct call *c);
json_t *csa_h_audit(struct call *c);

json_t *csa_h_events(struct call *c);
json_t *csa_h_prometheus(struct call *c);

int csa_hook_verify_email(struct call *c, struct csa_err *err);
int csa_hook_verify_slack(struct call *c, struct csa_err *err);
int csa_hook_verify_mattermost(struct call *c, struct csa_err *err);
int csa_hook_verify_trello(struct call *c, struct csa_err *err);
int csa_hook_verify_flock(struct call *c, struct csa_err *err);
json_t *csa_h_hook_email(struct call *c);
json_t *csa_h_hook_email_raw(struct call *c);
json_t *csa_h_hook_slack(struct call *c);
json_t *csa_h_hook_mattermost(struct call *c);
json_t *csa_h_hook_trello(struct call *c);
json_t *csa_h_hook_flock(struct call *c);
json_t *csa_h_hook_probe(struct call *c);

#endif
