/* csa serve | token: the service and its API tokens. */
#include "cli/cli.h"
#include "automation/control.h"
#include "base/json.h"
#include "server/server.h"
#include "server/tokens.h"
#include "store/ws.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CSA_WEB_DIR
#define CSA_WEB_DIR "web"
#endif

/*
 * The environment of spec §8.1 over csa.json: MODEL_CONFIG_PATH names a
 * JSON file merged over the configuration (model and LLM settings kept
 * outside the workspace); PHASE caps the workspace phase for this run
 * (a deployment may hold back autonomy the gates have earned, never grant
 * more); SYNC_CHECK_INTERVAL sets the file monitor's period in seconds.
 */
static int apply_env(struct csa_ws *ws, struct csa_err *err)
{
	const char *v;
	int rc;
	if ((v = getenv("MODEL_CONFIG_PATH")) && *v) {
		json_t *over;
		if ((rc = csa_json_load_file(v, 1 << 20, &over, err)))
			return csa_error_prefix(err, "MODEL_CONFIG_PATH: ");
		rc = csa_ws_config_override(ws, over, err);
		json_decref(over);
		if (rc)
			return csa_error_prefix(err, "MODEL_CONFIG_PATH '%s': ", v);
	}
	if ((v = getenv("SYNC_CHECK_INTERVAL")) && *v) {
		char *end;
		double secs = strtod(v, &end);
		if (*end || !(secs >= 0))
			return csa_error(
			    err, CSA_EINVAL,
			    "SYNC_CHECK_INTERVAL must be a number of seconds >= 0, not '%s'", v);
		json_t *over = json_pack("{s:{s:f}}", "sync", "check_interval_seconds", secs);
		rc = csa_ws_config_override(ws, over, err);
		json_decref(over);
		if (rc)
			return csa_error_prefix(err, "SYNC_CHECK_INTERVAL: ");
	}
	if ((v = getenv("PHASE")) && *v) {
		int cap = csa_phase_num(v);
		if (!cap)
			return csa_error(err, CSA_EINVAL,
			                 "PHASE must be PHASE_1 .. PHASE_5, not '%s'", v);
		int earned = csa_ws_phase(ws), lowered = 0;
		if ((rc = csa_ws_config_cap_phase(ws, cap, &lowered, err)))
			return rc;
		if (lowered)
			fprintf(stderr, "csa: PHASE=%s holds the workspace below its PHASE_%d\n", v,
			        earned);
	}
	return CSA_OK;
}

int cmd_serve(int argc, char **argv)
{
	/* DATA_PATH (spec §8.1) names the workspace unless --dir does */
	const char *dir = cli_opt(argc, argv, "--dir");
	if (!dir)
		dir = getenv("DATA_PATH");
	if (!dir)
		dir = cli_ws_dir(argc, argv);
	struct csa_err err = {0};
	struct csa_ws *ws;
	if (csa_ws_open(dir, &ws, &err))
		return cli_fail(&err);
	if (apply_env(ws, &err)) {
		csa_ws_close(ws);
		return cli_fail(&err);
	}
	/* the server's own settings are read once, at start */
	const struct csa_config *cfg = csa_ws_config(ws);
	json_t *server = csa_config_get(cfg, "server");
	char bind[256];
	snprintf(bind, sizeof(bind), "%s",
	         csa_json_str(server, "bind") ? csa_json_str(server, "bind") : "");
	struct csa_server_opts o = {
	    .bind = bind[0] ? bind : NULL,
	    .port = (unsigned)csa_json_int(server, "port", 8000),
	    .threads = (unsigned)csa_json_int(server, "threads", 4),
	    .web_dir = getenv("CSA_WEB_DIR") ? getenv("CSA_WEB_DIR") : CSA_WEB_DIR,
	    .rate_per_second = csa_json_num(server, "rate_per_second", 200),
	};
	csa_config_unref(cfg);
	const char *v;
	if ((v = cli_opt(argc, argv, "--port")) || (v = getenv("PORT"))) {
		char *end;
		long p = strtol(v, &end, 10);
		if (*end || p < 0 || p > 65535) {
			csa_ws_close(ws);
			return cli_failf("--port must be 0..65535, not '%s'", v);
		}
		o.port = (unsigned)p;
	}
	if ((v = cli_opt(argc, argv, "--bind")))
		o.bind = v;
	/* block the stop signals in every thread; main waits for them */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	struct csa_server *s;
	if (csa_server_start(ws, &o, &s, &err)) {
		csa_ws_close(ws);
		return cli_fail(&err);
	}
	fprintf(stderr, "csa: serving %s on http://%s:%u/\n", dir, o.bind ? o.bind : "127.0.0.1",
	        csa_server_port(s));
	printf("{\"listening\": \"http://%s:%u/\"}\n", o.bind ? o.bind : "127.0.0.1",
	       csa_server_port(s));
	fflush(stdout);
	int sig;
	sigwait(&set, &sig);
	fprintf(stderr, "csa: %s received, finishing in-flight requests\n",
	        sig == SIGTERM ? "SIGTERM" : "SIGINT");
	csa_server_stop(s);
	csa_ws_close(ws);
	return 0;
}

int cmd_token(int argc, char **argv)
{
	static const char usage[] = "csa token create --role viewer|agent|admin [--name N] | "
	                            "list | revoke ID";
	static const char *const valued[] = {"--role", "--name", NULL};
	const char *sub = cli_pos(argc, argv, 0, valued);
	if (!sub)
		return cli_usage(usage);
	struct csa_ws *ws = cli_open_ws(argc, argv);
	if (!ws)
		return 1;
	struct csa_err err = {0};
	/* the workspace's tokens: its database's when the tickets are there */
	struct csa_tokens *tks = NULL;
	int rc = csa_tokens_open_ws(ws, &tks, &err);
	if (rc) {
		csa_ws_close(ws);
		return cli_fail(&err);
	}
	if (strcmp(sub, "create") == 0) {
		enum csa_role r = csa_role_parse(cli_opt(argc, argv, "--role"));
		char *tok = NULL, id[32];
		if (r == CSA_ROLE_NONE) {
			csa_tokens_close(tks);
			csa_ws_close(ws);
			return cli_failf("--role must be viewer, agent or admin");
		}
		if (!(rc = csa_tokens_create(tks, r, cli_opt(argc, argv, "--name"), &tok, id,
		                             &err))) {
			json_t *j =
			    json_pack("{s:s, s:s, s:s, s:s}", "id", id, "role", csa_role_name(r),
			              "token", tok, "note", "shown once: store it now");
			csa_json_print(j, 1);
			json_decref(j);
			free(tok);
		}
	} else if (strcmp(sub, "list") == 0) {
		json_t *t;
		if (!(rc = csa_tokens_list(tks, &t, &err))) {
			csa_json_print(t, 1); /* no digests: list() gives none */
			json_decref(t);
		}
	} else if (strcmp(sub, "revoke") == 0) {
		const char *id = cli_pos(argc, argv, 1, valued);
		if (!id) {
			csa_tokens_close(tks);
			csa_ws_close(ws);
			return cli_usage(usage);
		}
		if (!(rc = csa_tokens_revoke(tks, id, &err))) {
			json_t *j = json_pack("{s:s}", "revoked", id);
			csa_json_print(j, 1);
			json_decref(j);
		}
	} else {
		csa_tokens_close(tks);
		csa_ws_close(ws);
		return cli_usage(usage);
	}
	csa_tokens_close(tks);
	csa_ws_close(ws);
	return rc ? cli_fail(&err) : 0;
}
