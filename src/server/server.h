/*
 * csa serve: the HTTP API, the dashboard and Prometheus metrics over one
 * workspace, on libmicrohttpd with a thread per connection (event streams
 * wait without holding up other requests). Every route is an entry of
 * one table (routes.c) with its authentication: none, a bearer token with
 * a role (server/tokens.h), or the platform's signature (hooks); errors
 * are {"error", "detail"} with the matching status. See docs/API.md.
 */
#ifndef CSA_SERVER_SERVER_H
#define CSA_SERVER_SERVER_H

#include <stdint.h>
#include "base/err.h"

struct csa_server;
struct csa_ws;

struct csa_server_opts {
	const char *bind;       /* "127.0.0.1" */
	unsigned port;          /* 0: any free port */
	unsigned threads;       /* worker threads */
	const char *web_dir;    /* dashboard files */
	double rate_per_second; /* per token; burst = 2 s worth */
};

/* Start serving a workspace (it stays owned by the caller and must
 * outlive the server). */
int csa_server_start(struct csa_ws *ws, const struct csa_server_opts *o, struct csa_server **out,
                     struct csa_err *err);
/* The port actually bound. */
unsigned csa_server_port(const struct csa_server *s);
/* Stop accepting, finish in-flight requests, close everything. */
void csa_server_stop(struct csa_server *s);

#endif
