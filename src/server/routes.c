/*
 * Every route of the server in one table: method, path pattern, how it
 * authenticates (none, a bearer token with a least role, or the
 * platform's own signature), what it does with a body, its handler and
 * its name in /metrics. Every request takes the same steps (http.c), so
 * counting, limits and 404/405 answers are the same for all of them.
 */
#include "server/server_internal.h"

#include <string.h>

#define PUBLIC(m, p, fn, name)                                                                     \
	{                                                                                          \
		m, p, CSA_AUTH_NONE, CSA_ROLE_NONE, NULL, CSA_BODY_JSON, fn, name                  \
	}
#define BEARER(m, p, role, fn, name)                                                               \
	{                                                                                          \
		m, p, CSA_AUTH_BEARER, role, NULL, CSA_BODY_JSON, fn, name                         \
	}
#define HOOK(p, verify, fn, name)                                                                  \
	{                                                                                          \
		"POST", p, CSA_AUTH_PLATFORM, CSA_ROLE_NONE, verify, CSA_BODY_BYTES, fn, name      \
	}

const struct route csa_routes[] = {
    PUBLIC("GET", "/healthz", csa_h_health, "healthz"),
    PUBLIC("GET", "/readyz", csa_h_ready, "readyz"),
    /* Prometheus scrapes without a token */
    PUBLIC("GET", "/metrics", csa_h_prometheus, "prometheus"),
    /* the dashboard */
    PUBLIC("GET", "/", csa_h_static, "dashboard_html"),
    PUBLIC("GET", "/app.js", csa_h_static, "dashboard_js"),
    PUBLIC("GET", "/inbox.js", csa_h_static, "dashboard_inbox_js"),
    PUBLIC("GET", "/ticket.js", csa_h_static, "dashboard_ticket_js"),
    PUBLIC("GET", "/phase.js", csa_h_static, "dashboard_phase_js"),
    PUBLIC("GET", "/knowledge.js", csa_h_static, "dashboard_knowledge_js"),
    PUBLIC("GET", "/style.css", csa_h_static, "dashboard_css"),

    BEARER("POST", "/api/tickets", CSA_ROLE_AGENT, csa_h_ticket_create, "tickets_create"),
    BEARER("GET", "/api/tickets", CSA_ROLE_VIEWER, csa_h_ticket_list, "tickets_list"),
    BEARER("GET", "/api/tickets/{}", CSA_ROLE_VIEWER, csa_h_ticket_get, "tickets_get"),
    BEARER("POST", "/api/tickets/{}/messages", CSA_ROLE_AGENT, csa_h_message_add, "messages_add"),
    BEARER("GET", "/api/tickets/{}/deliveries", CSA_ROLE_VIEWER, csa_h_deliveries, "deliveries"),
    BEARER("POST", "/api/tickets/{}/resolve", CSA_ROLE_AGENT, csa_h_ticket_resolve,
           "tickets_resolve"),
    BEARER("POST", "/api/tickets/{}/assign", CSA_ROLE_AGENT, csa_h_ticket_assign, "tickets_assign"),
    BEARER("POST", "/api/tickets/{}/decide", CSA_ROLE_AGENT, csa_h_ticket_decide, "tickets_decide"),
    BEARER("POST", "/api/tickets/{}/progress", CSA_ROLE_AGENT, csa_h_ticket_progress,
           "tickets_progress"),
    BEARER("GET", "/api/reviews", CSA_ROLE_VIEWER, csa_h_reviews, "reviews_list"),
    BEARER("GET", "/api/reviews/next", CSA_ROLE_AGENT, csa_h_review_next, "reviews_next"),
    BEARER("POST", "/api/reviews/{}/decide", CSA_ROLE_AGENT, csa_h_review_decide, "reviews_decide"),
    BEARER("GET", "/api/phase", CSA_ROLE_VIEWER, csa_h_phase, "phase_status"),
    BEARER("POST", "/api/phase/evaluate", CSA_ROLE_VIEWER, csa_h_phase_evaluate, "phase_evaluate"),
    BEARER("POST", "/api/phase/advance", CSA_ROLE_ADMIN, csa_h_phase_advance, "phase_advance"),
    BEARER("POST", "/api/phase/rollback", CSA_ROLE_ADMIN, csa_h_phase_rollback, "phase_rollback"),
    BEARER("POST", "/api/phase/cap", CSA_ROLE_ADMIN, csa_h_phase_cap, "phase_cap"),
    BEARER("GET", "/api/phase/points", CSA_ROLE_VIEWER, csa_h_phase_points, "phase_points"),
    BEARER("GET", "/api/metrics", CSA_ROLE_VIEWER, csa_h_metrics_json, "metrics"),
    BEARER("GET", "/api/kb/gaps", CSA_ROLE_VIEWER, csa_h_kb_gaps, "kb_gaps"),
    BEARER("POST", "/api/kb/articles", CSA_ROLE_ADMIN, csa_h_kb_accept, "kb_accept"),
    BEARER("GET", "/api/metrics/trend", CSA_ROLE_VIEWER, csa_h_metrics_trend, "metrics_trend"),
    BEARER("GET", "/api/alerts", CSA_ROLE_VIEWER, csa_h_alerts, "alerts"),
    BEARER("GET", "/api/mesh", CSA_ROLE_VIEWER, csa_h_mesh, "mesh_status"),
    BEARER("POST", "/api/mesh/check", CSA_ROLE_ADMIN, csa_h_mesh_check, "mesh_check"),
    BEARER("GET", "/api/audit/{}", CSA_ROLE_VIEWER, csa_h_audit, "audit"),
    BEARER("GET", "/api/events", CSA_ROLE_VIEWER, csa_h_events, "events"),

    HOOK("/hooks/email", csa_hook_verify_email, csa_h_hook_email, "hook_email"),
    HOOK("/hooks/email/raw", csa_hook_verify_email, csa_h_hook_email_raw, "hook_email_raw"),
    HOOK("/hooks/slack", csa_hook_verify_slack, csa_h_hook_slack, "hook_slack"),
    HOOK("/hooks/mattermost", csa_hook_verify_mattermost, csa_h_hook_mattermost, "hook_mattermost"),
    HOOK("/hooks/trello", csa_hook_verify_trello, csa_h_hook_trello, "hook_trello"),
    HOOK("/hooks/flock", csa_hook_verify_flock, csa_h_hook_flock, "hook_flock"),
    /* Trello checks the callback URL with HEAD (and people with GET) before
     * it sends anything signed */
    PUBLIC("HEAD", "/hooks/trello", csa_h_hook_probe, "hook_trello_head"),
    PUBLIC("GET", "/hooks/trello", csa_h_hook_probe, "hook_trello_get"),
};

const size_t csa_nroutes = sizeof(csa_routes) / sizeof(csa_routes[0]);

_Static_assert(sizeof(csa_routes) / sizeof(csa_routes[0]) <= CSA_HTTP_ROUTES_MAX,
               "more routes than CSA_HTTP_ROUTES_MAX counters");

/* Match "/api/tickets/{}" against a path; {} takes one segment (1..79
 * bytes, checked to be an id before a handler sees it). */
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

long csa_route_find(const char *method, const char *url, char params[2][80], int *np,
                    int *path_known)
{
	*path_known = 0;
	for (size_t i = 0; i < csa_nroutes; i++) {
		if (!match(csa_routes[i].pattern, url, params, np))
			continue;
		*path_known = 1;
		if (strcmp(csa_routes[i].method, method) == 0)
			return (long)i;
	}
	return -1;
}
