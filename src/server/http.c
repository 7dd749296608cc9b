/*
 * The HTTP plumbing of the server: the libmicrohttpd daemon, request
 * bodies collected up to the document size limit, the steps every request
 * takes (route, ids, authentication, rate limit, body), the error bodies
 * and the responses. Handlers see a struct call and return JSON; they
 * never talk to libmicrohttpd except to hand over a ready response
 * (event streams, Prometheus text, dashboard files).
 */
#include "server/server_internal.h"
#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"
#include "server/redis.h"
#include "store/leader.h"
#include "store/ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double csa_http_lat_bounds[CSA_LAT_BUCKETS] = {0.001, 0.005, 0.01, 0.025,
                                                     0.05,  0.1,   0.5,  1e9};

/* ---- errors ------------------------------------------------------------------- */

json_t *csa_fail(struct call *c, int status, const char *code, const char *fmt, ...)
{
	char detail[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	c->status = status;
	return json_pack("{s:s, s:s}", "error", code, "detail", detail);
}

/* Library statuses as HTTP statuses; what is not listed is a 500. */
static const struct {
	int code, status;
	const char *error;
} status_map[] = {
    {CSA_EINVAL, 400, "bad_request"}, {CSA_ESCHEMA, 400, "bad_request"},
    {CSA_EPARSE, 400, "bad_request"}, {CSA_EAUTH, 401, "unauthorized"},
    {CSA_ENOENT, 404, "not_found"},   {CSA_EEXIST, 409, "exists"},
    {CSA_ESTATE, 409, "conflict"},    {CSA_ECONFLICT, 409, "conflict"},
    {CSA_ELIMIT, 413, "too_large"},   {CSA_EBUSY, 503, "busy"},
    /* the database (or another backend) is away: the client may retry */
    {CSA_EBACKEND, 503, "unavailable"},
};

int csa_http_status_of(int code, const char **error_code)
{
	for (size_t i = 0; i < sizeof(status_map) / sizeof(status_map[0]); i++)
		if (status_map[i].code == code) {
			*error_code = status_map[i].error;
			return status_map[i].status;
		}
	*error_code = "internal";
	return 500;
}

json_t *csa_fail_err(struct call *c, const struct csa_err *e)
{
	const char *code;
	int status = csa_http_status_of(e->code, &code);
	return csa_fail(c, status, code, "%s", e->msg[0] ? e->msg : csa_strerror(e->code));
}

const char *csa_query(struct call *c, const char *name)
{
	return MHD_lookup_connection_value(c->c, MHD_GET_ARGUMENT_KIND, name);
}

const char *csa_header(struct call *c, const char *name)
{
	return MHD_lookup_connection_value(c->c, MHD_HEADER_KIND, name);
}

json_t *csa_query_long(struct call *c, const char *name, long def, long min, long max, long *out)
{
	const char *v = csa_query(c, name);
	*out = def;
	if (!v)
		return NULL;
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (!*v || *end || errno == ERANGE || n < min || n > max)
		return csa_fail(c, 400, "bad_request",
		                "query argument '%s' must be a whole number "
		                "from %ld to %ld, not '%.40s'",
		                name, min, max, v);
	*out = n;
	return NULL;
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
			if (++depth > CSA_HTTP_MAX_DEPTH)
				return 1;
		} else if (ch == '}' || ch == ']') {
			depth--;
		}
	}
	return 0;
}

static json_t *parse_json(struct call *c, const char *b, size_t n, json_t **out)
{
	if (too_deep(b, n))
		return csa_fail(c, 400, "bad_request", "JSON nested deeper than %d levels",
		                CSA_HTTP_MAX_DEPTH);
	struct csa_err e = {0};
	if (csa_json_parse(b, n, "request body", out, &e))
		return csa_fail(c, 400, "bad_request", "%s", e.msg);
	return NULL;
}

int csa_bytes_json(struct call *c, json_t **out, json_t **fail_out)
{
	*fail_out = parse_json(c, c->bytes, c->nbytes, out);
	return *fail_out ? -1 : 0;
}

/* ---- responses ------------------------------------------------------------------ */

static int add_headers(struct MHD_Response *r, const char *const (*kv)[2], size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (MHD_add_response_header(r, kv[i][0], kv[i][1]) != MHD_YES)
			return -1;
	return 0;
}

static const char *const security[][2] = {{"X-Content-Type-Options", "nosniff"},
                                          {"Referrer-Policy", "no-referrer"},
                                          {"X-Frame-Options", "DENY"},
                                          {"Cache-Control", "no-store"}};

/* Queue a response; it is destroyed here in every case. */
static enum MHD_Result queue(struct call *c, struct MHD_Response *r)
{
	enum MHD_Result ret = MHD_queue_response(c->c, (unsigned)c->status, r);
	MHD_destroy_response(r);
	if (ret != MHD_YES)
		fprintf(stderr, "csa serve: cannot queue the %d response to %s %s\n", c->status,
		        c->method, c->url);
	return ret;
}

/* Send a rendered JSON body (malloc'd; handed over). */
static enum MHD_Result send_body(struct call *c, char *body, size_t n)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(n, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		fprintf(stderr, "csa serve: cannot create the response to %s %s (out of memory)\n",
		        c->method, c->url);
		return MHD_NO;
	}
	char ra[32];
	snprintf(ra, sizeof(ra), "%.0f", c->retry_after + 0.999);
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") !=
	        MHD_YES ||
	    add_headers(r, security, sizeof(security) / sizeof(security[0])) ||
	    (c->retry_after > 0 &&
	     MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra) != MHD_YES)) {
		MHD_destroy_response(r);
		fprintf(stderr, "csa serve: cannot set the headers of the response to %s %s\n",
		        c->method, c->url);
		return MHD_NO;
	}
	return queue(c, r);
}

/* Answer a call: the handler's ready response, rendered body or JSON. */
static enum MHD_Result respond(struct call *c, json_t *out)
{
	if (c->response) {
		json_decref(out);
		struct MHD_Response *r = c->response;
		c->response = NULL;
		return queue(c, r);
	}
	if (c->raw) {
		json_decref(out);
		char *raw = c->raw;
		c->raw = NULL;
		return send_body(c, raw, c->raw_len);
	}
	char *s = out ? json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(out);
	if (!s) {
		/* a handler's json_pack or the rendering ran out of memory */
		static const char oom[] = "{\"error\":\"internal\",\"detail\":\"out of memory "
		                          "rendering the response\"}";
		c->status = 500;
		s = strdup(oom);
		if (!s)
			return MHD_NO;
	}
	return send_body(c, s, strlen(s));
}

/* A response for a handler to hand over in c->response: 'body' (malloc'd,
 * handed over) with a content type and the security headers. NULL, with
 * a 500 body in *fail_out, when libmicrohttpd cannot make it. */
static struct MHD_Response *buffer_response(struct call *c, char *body, size_t n, const char *type,
                                            json_t **fail_out)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(n, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		*fail_out = csa_fail(c, 500, "internal", "cannot create the response to %s %s",
		                     c->method, c->url);
		return NULL;
	}
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type) != MHD_YES ||
	    add_headers(r, security, sizeof(security) / sizeof(security[0]))) {
		MHD_destroy_response(r);
		*fail_out = csa_fail(c, 500, "internal",
		                     "cannot set the headers of the response "
		                     "to %s %s",
		                     c->method, c->url);
		return NULL;
	}
	return r;
}

json_t *csa_respond_text(struct call *c, char *body, size_t n, const char *type)
{
	json_t *fail = NULL;
	c->response = buffer_response(c, body, n, type, &fail);
	return fail;
}

/* ---- the server's own pages ---------------------------------------------------- */

json_t *csa_h_health(struct call *c)
{
	(void)c;
	return json_pack("{s:s}", "status", "ok");
}

json_t *csa_h_ready(struct call *c)
{
	if (!c->s->ready)
		return csa_fail(c, 503, "not_ready", "workspace not open yet");
	struct csa_err err = {0};
	if (csa_ws_probe(c->s->ws, &err))
		return csa_fail(c, 503, "unavailable", "%s", err.msg);
	/* which of the roles only one node runs this node leads (on a single
	 * host: every one) */
	json_t *leads = json_object();
	for (int r = 0; r < CSA_ROLES && leads; r++)
		if (json_object_set_new(leads, csa_server_roles[r],
		                        json_boolean(csa_leader_leading(c->s->lead[r].l)))) {
			json_decref(leads);
			leads = NULL;
		}
	json_t *j = leads ? json_pack("{s:s, s:s, s:o}", "status", "ready", "workspace",
	                              c->s->ws->root, "leads", leads)
	                  : NULL;
	if (!j)
		return csa_fail(c, 500, "internal", "out of memory answering /readyz");
	if (!c->s->redis)
		return j;
	/* with Redis: the node serves without it (200), and says what it does
	 * meanwhile under "degraded" */
	json_t *st = csa_redis_status(c->s->redis);
	const char *state = csa_json_str(st, "state");
	int bad = !st || json_object_set_new(j, "redis", st);
	if (!bad && (!state || strcmp(state, "up") != 0)) {
		char why[700];
		snprintf(why, sizeof(why),
		         "%s: live events reach this node's dashboards only and rate limits are "
		         "this node's own until it reconnects",
		         csa_json_str(st, "detail") ? csa_json_str(st, "detail") : "not connected");
		bad = json_object_set_new(j, "degraded", json_pack("{s:s}", "redis", why));
	}
	if (bad) {
		json_decref(j);
		return csa_fail(c, 500, "internal", "out of memory answering /readyz");
	}
	return j;
}

static const char csp[] = "default-src 'self'; script-src 'self'; style-src 'self'; "
                          "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                          "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/* The dashboard: a fixed set of files (its routes), no path taken from
 * the URL. */
json_t *csa_h_static(struct call *c)
{
	static const struct {
		const char *url, *file, *type;
	} files[] = {{"/", "index.html", "text/html; charset=utf-8"},
	             {"/app.js", "app.js", "text/javascript; charset=utf-8"},
	             {"/inbox.js", "inbox.js", "text/javascript; charset=utf-8"},
	             {"/ticket.js", "ticket.js", "text/javascript; charset=utf-8"},
	             {"/phase.js", "phase.js", "text/javascript; charset=utf-8"},
	             {"/knowledge.js", "knowledge.js", "text/javascript; charset=utf-8"},
	             {"/style.css", "style.css", "text/css; charset=utf-8"}};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (strcmp(c->url, files[i].url) != 0)
			continue;
		char path[1200];
		snprintf(path, sizeof(path), "%s/%s", c->s->web_dir, files[i].file);
		char *buf;
		size_t len;
		struct csa_err err = {0};
		if (csa_fs_read_all(path, 1 << 22, &buf, &len, &err)) {
			/* the log names the path; the public answer only the file */
			fprintf(stderr, "csa serve: dashboard: %s\n", err.msg);
			return csa_fail(c, err.code == CSA_ENOENT ? 404 : 500,
			                err.code == CSA_ENOENT ? "not_found" : "internal",
			                "dashboard file '%s' cannot be read (see the server log)",
			                files[i].file);
		}
		json_t *fail = NULL;
		struct MHD_Response *r = buffer_response(c, buf, len, files[i].type, &fail);
		if (!r)
			return fail;
		if (MHD_add_response_header(r, "Content-Security-Policy", csp) != MHD_YES) {
			MHD_destroy_response(r);
			return csa_fail(c, 500, "internal", "cannot set the CSP header of %s",
			                c->url);
		}
		c->response = r;
		return NULL;
	}
	return csa_fail(c, 404, "not_found", "no page '%.100s'", c->url);
}

/* ---- one request ------------------------------------------------------------------- */

/* A request: its path as sent and its body as it arrives, capped at the
 * document size limit. */
struct req {
	char *path; /* before any '?', not percent-decoded */
	char *body;
	size_t len, cap;
	int too_large;
	int started; /* the access handler has seen the request */
};

/*
 * Routes match the path as the client sent it, not as libmicrohttpd
 * decodes it: "/api/tickets/..%2Fetc" names one segment, an id that is
 * not valid (400), which decoded would look like a different path (404).
 * Ids never need percent-encoding, so nothing valid is lost.
 */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	(void)cls, (void)c;
	struct req *rq = calloc(1, sizeof(*rq));
	if (rq && !(rq->path = strndup(uri, strcspn(uri, "?")))) {
		free(rq);
		rq = NULL;
	}
	return rq;
}

/* Step 0: collect the body; memory is bounded by the document limit. */
static enum MHD_Result collect(struct csa_server *s, struct req *rq, const char *upload,
                               size_t *upload_size)
{
	size_t lim = csa_server_max_body(s);
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
		rq->body[rq->len] = '\0';
	} else {
		rq->too_large = 1;
	}
	*upload_size = 0;
	return MHD_YES;
}

/* Step 1: the route. */
static json_t *find_route(struct call *c, long *ri, char params[2][80], int *np)
{
	int path_known = 0;
	*ri = csa_route_find(c->method, c->url, params, np, &path_known);
	if (*ri >= 0)
		return NULL;
	if (path_known)
		return csa_fail(c, 405, "method_not_allowed", "%s not allowed on %.200s", c->method,
		                c->url);
	return csa_fail(c, 404, "not_found", "no route %s %.200s", c->method, c->url);
}

/* Step 2: the {} parts of the path are ids (a ticket id or a task number:
 * the same character set), checked before anything else sees them. */
static json_t *check_params(struct call *c, char params[2][80], int np)
{
	for (int k = 0; k < np; k++) {
		struct csa_err e = {0};
		if (csa_id_check(params[k], strlen(params[k]), &e))
			return csa_fail(c, 400, "bad_request", "%s", e.msg);
		c->params[k] = params[k];
	}
	return NULL;
}

/* Step 3: who is asking, for routes that take bearer tokens. */
static json_t *authenticate(struct call *c, const struct route *rt)
{
	struct csa_err err = {0};
	if (rt->auth != CSA_AUTH_BEARER)
		return NULL;
	c->role = csa_auth_bearer(c->s, c, &err);
	/* tokens that cannot be read are the server's failure, not the client's */
	if (c->role == CSA_ROLE_NONE)
		return err.code == CSA_EAUTH      ? csa_fail(c, 401, "unauthorized", "%s", err.msg)
		       : err.code == CSA_EBACKEND ? csa_fail_err(c, &err) /* 503: away */
		                                  : csa_fail(c, 500, "internal", "%s", err.msg);
	if (c->role < rt->role)
		return csa_fail(c, 403, "forbidden", "%s needs the %s role, token has %s", rt->name,
		                csa_role_name(rt->role), csa_role_name(c->role));
	return NULL;
}

/* Step 4: the token's rate. */
static json_t *limit_rate(struct call *c, const struct route *rt)
{
	if (rt->auth != CSA_AUTH_BEARER || csa_rate_ok(c->s, c->who, &c->retry_after))
		return NULL;
	return csa_fail(c, 429, "rate_limited", "too many requests for this token");
}

/* Step 5: the body: within the size limit; for JSON routes sent as JSON,
 * not nested too deep, and parsed. */
static json_t *read_body(struct call *c, const struct route *rt, struct req *rq, json_t **body)
{
	if (rq->too_large)
		return csa_fail(c, 413, "too_large", "request body over %zu bytes",
		                csa_server_max_body(c->s));
	c->bytes = rq->body ? rq->body : "";
	c->nbytes = rq->len;
	if (rt->body == CSA_BODY_BYTES || strcmp(c->method, "POST") != 0 || !rq->len)
		return NULL;
	const char *ct = csa_header(c, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (ct && strncmp(ct, "application/json", 16) != 0)
		return csa_fail(c, 415, "unsupported_media_type",
		                "send application/json, not '%.60s'", ct);
	json_t *fail = parse_json(c, rq->body, rq->len, body);
	c->body = *body;
	return fail;
}

/* Step 6: a platform's signature, which covers the body. */
static json_t *verify_platform(struct call *c, const struct route *rt)
{
	struct csa_err err = {0};
	if (rt->auth != CSA_AUTH_PLATFORM || rt->verify(c, &err) == CSA_OK)
		return NULL;
	if (err.code == CSA_EAUTH)
		return csa_fail(c, 401, "unauthorized", "%s: %s", rt->name, err.msg);
	return csa_fail_err(c, &err);
}

/* Requests by route and status class, and their latency. */
static void count(struct csa_server *s, long route, int status, int64_t t0)
{
	size_t r = route >= 0 ? (size_t)route : CSA_HTTP_ROUTES_MAX;
	double secs = (double)(csa_mono_ns() - t0) / 1e9;
	pthread_mutex_lock(&s->stat_mu);
	s->req_count[r][status / 100 > 0 && status / 100 < 6 ? status / 100 : 5]++;
	int k = 0;
	while (k < CSA_LAT_BUCKETS - 1 && secs > csa_http_lat_bounds[k])
		k++;
	s->lat_bucket[r][k]++;
	s->lat_sum[r] += secs;
	pthread_mutex_unlock(&s->stat_mu);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
	(void)version;
	struct csa_server *s = cls;
	struct req *rq = *con_cls;
	if (!rq && !(rq = on_uri(NULL, url, mc)))
		return MHD_NO;
	*con_cls = rq;
	if (!rq->started) {
		rq->started = 1;
		return MHD_YES;
	}
	if (*upload_size)
		return collect(s, rq, upload, upload_size);

	int64_t t0 = csa_mono_ns();
	struct call c = {.s = s, .c = mc, .method = method, .url = rq->path, .status = 200};
	char params[2][80];
	int np = 0;
	long ri = -1;
	json_t *body = NULL;
	json_t *out = find_route(&c, &ri, params, &np);
	const struct route *rt = ri >= 0 ? &csa_routes[ri] : NULL;
	if (!out)
		out = check_params(&c, params, np);
	if (!out)
		out = authenticate(&c, rt);
	if (!out)
		out = limit_rate(&c, rt);
	if (!out)
		out = read_body(&c, rt, rq, &body);
	if (!out)
		out = verify_platform(&c, rt);
	if (!out)
		out = rt->fn(&c);
	json_decref(body);
	count(s, ri, c.status, t0);
	return respond(&c, out);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
	(void)cls, (void)c, (void)toe;
	struct req *rq = *con_cls;
	if (rq) {
		free(rq->path);
		free(rq->body);
		free(rq);
		*con_cls = NULL;
	}
}

int csa_http_listen(struct csa_server *s, struct csa_err *err)
{
	const char *bind = s->o.bind ? s->o.bind : "127.0.0.1";
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->o.port)};
	if (inet_pton(AF_INET, bind, &addr.sin_addr) != 1)
		return csa_error(err, CSA_EINVAL, "bind address '%s' is not an IPv4 address", bind);
	s->d = MHD_start_daemon(
	    /* a thread per connection: event streams may wait without holding up
	     * other requests */
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
	        MHD_USE_ERROR_LOG,
	    (uint16_t)s->o.port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
	    (struct sockaddr *)&addr, MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
	    MHD_OPTION_NOTIFY_COMPLETED, on_done, s, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
	    MHD_OPTION_CONNECTION_LIMIT, 1000u, MHD_OPTION_END);
	if (!s->d)
		return csa_error(err, CSA_EIO, "cannot listen on %s:%u (in use?)", bind, s->o.port);
	return CSA_OK;
}
