/*
 * csa monitor: the file monitor of spec §8.1 as its own process (the
 * docker-compose "file-monitor" service). It runs the checks the server's
 * monitor runs (store/monitor.h: live csa verify, only changed tickets
 * read again) every SYNC_CHECK_INTERVAL seconds, prints each check as one
 * JSON line, and posts an alert to ALERT_WEBHOOK_URL when a kind of
 * problem appears, through the durable outbox (target "monitor_alert",
 * which this process delivers itself; replies and the controller's alerts
 * stay the server's). The workspace is opened to observe only: no
 * recovery, no ticket written (store/ws.h, csa_ws_open_observer).
 * SIGTERM or SIGINT ends it after the check under way.
 */
#include "base/json.h"
#include "base/ts.h"
#include "cli/cli.h"
#include "outbound/outbox.h"
#include "store/monitor.h"
#include "store/ws.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_INTERVAL_S 30.0
#define MONITOR_TARGET     "monitor_alert"
#define MAX_OPEN           16 /* kinds of alert (store/monitor.c has fewer) */

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* The alerts this process raised and has not closed: one per type and
 * scope, as the controller keeps them, so a problem that lasts is posted
 * once, not on every check. */
struct msink {
	const char *root;
	const char *url;           /* NULL: alerts are printed only */
	struct csa_outbox *outbox; /* with url */
	struct {
		char key[128];
		int64_t since_ms;
	} open[MAX_OPEN];
	size_t nopen;
};

static void print_line(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	if (s) {
		fputs(s, stdout);
		fputc('\n', stdout);
		fflush(stdout); /* a line per event, also through a pipe */
	}
	free(s);
	json_decref(j);
}

static int find_open(const struct msink *k, const char *key)
{
	for (size_t i = 0; i < k->nopen; i++)
		if (strcmp(k->open[i].key, key) == 0)
			return (int)i;
	return -1;
}

static int sink_raise(void *ctx, const char *type, const char *severity, const char *scope,
                      json_t *detail, struct csa_err *err)
{
	struct msink *k = ctx;
	char key[128];
	snprintf(key, sizeof(key), "%s|%s", type, scope);
	if (find_open(k, key) >= 0 || k->nopen == MAX_OPEN) {
		json_decref(detail);
		return CSA_OK;
	}
	int64_t now = csa_now_ms();
	snprintf(k->open[k->nopen].key, sizeof(k->open[k->nopen].key), "%s", key);
	k->open[k->nopen++].since_ms = now;
	char ts[CSA_TS_LEN];
	json_t *alert = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:s}", "type", type, "severity",
	                          severity, "scope", scope, "source", "csa monitor", "detail",
	                          detail, "workspace", k->root, "at", csa_ts_format(now, ts));
	if (!alert)
		return csa_error(err, CSA_ENOMEM, "out of memory raising alert %s", type);
	int rc = CSA_OK;
	if (k->url) {
		char okey[300];
		snprintf(okey, sizeof(okey), "monitor-%s-%s-%lld", type, scope, (long long)now);
		int q =
		    csa_outbox_enqueue(k->outbox, okey, NULL, MONITOR_TARGET, k->url, alert, err);
		if (q < 0) {
			if (err)
				csa_error_prefix(err, "alert %s (%s) not queued for '%s': ", type,
				                 scope, k->url);
			rc = q;
			k->nopen--; /* raised again by the next check */
		}
	}
	print_line(json_pack("{s:s, s:O, s:b}", "event", "alert", "alert", alert, "queued",
	                     k->url && rc == CSA_OK));
	json_decref(alert);
	return rc;
}

static int sink_close(void *ctx, const char *type, const char *scope, struct csa_err *err)
{
	(void)err;
	struct msink *k = ctx;
	char key[128];
	snprintf(key, sizeof(key), "%s|%s", type, scope);
	int i = find_open(k, key);
	if (i < 0)
		return CSA_OK;
	k->open[i] = k->open[--k->nopen];
	print_line(
	    json_pack("{s:s, s:s, s:s}", "event", "alert_closed", "type", type, "scope", scope));
	return CSA_OK;
}

/* Sleep 'secs' in short steps, so SIGTERM ends the wait at once. */
static void pause_for(double secs)
{
	int64_t until = csa_mono_ns() + (int64_t)(secs * 1e9);
	while (!stop_requested) {
		int64_t left = until - csa_mono_ns();
		if (left <= 0)
			break;
		struct timespec ts = {0, left < 100000000 ? (long)left : 100000000L};
		nanosleep(&ts, NULL);
	}
}

/* SYNC_CHECK_INTERVAL, else 30 s. */
static int interval_from_env(double *out)
{
	const char *v = getenv("SYNC_CHECK_INTERVAL");
	*out = DEFAULT_INTERVAL_S;
	if (!v || !*v)
		return 0;
	char *end;
	errno = 0;
	double s = strtod(v, &end);
	if (end == v || *end || errno || !(s > 0 && s <= 86400))
		return cli_failf("SYNC_CHECK_INTERVAL must be a number of seconds in (0, 86400], "
		                 "not '%s'",
		                 v);
	*out = s;
	return 0;
}

/* ALERT_WEBHOOK_URL, else automation.alert_webhook of csa.json (as the
 * controller reads it); NULL when neither is set. */
static int webhook(struct csa_ws *ws, char **out)
{
	*out = NULL;
	const char *v = getenv("ALERT_WEBHOOK_URL");
	const struct csa_config *cfg = csa_ws_config(ws);
	if (!v || !*v)
		v = csa_json_str(csa_config_get(cfg, "automation"), "alert_webhook");
	int bad = v && *v && strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0;
	for (const char *c = v; !bad && c && *c; c++)
		bad = (unsigned char)*c <= ' ' || *c == 0x7f;
	if (v && *v && !bad)
		*out = strdup(v);
	csa_config_unref(cfg);
	if (bad)
		return cli_failf("ALERT_WEBHOOK_URL must be an http:// or https:// URL, not '%s'",
		                 v);
	return 0;
}

int cmd_monitor(int argc, char **argv)
{
	static const char usage[] = "csa monitor [--once] [--outbox FILE]";
	if (cli_pos(argc, argv, 0, (const char *const[]){"--outbox", NULL}))
		return cli_usage(usage);
	/* DATA_PATH (spec §8.1) names the workspace unless --dir does */
	const char *dir = cli_opt(argc, argv, "--dir");
	if (!dir)
		dir = getenv("DATA_PATH");
	if (!dir)
		dir = cli_ws_dir(argc, argv);
	int once = cli_flag(argc, argv, "--once");
	double every;
	if (interval_from_env(&every))
		return 1;
	struct csa_err err = {0};
	struct csa_ws *ws = NULL;
	if (csa_ws_open_observer(dir, &ws, &err))
		return cli_fail(&err);
	struct msink sink = {.root = ws->root};
	char *url = NULL;
	int status = 1;
	struct csa_monitor *mon = NULL;
	if (webhook(ws, &url))
		goto out;
	sink.url = url;
	if (url) {
		/* the workspace's outbox (its database's when the tickets are in
		 * PostgreSQL) unless the data is mounted read-only and another
		 * file is named */
		const char *ob = cli_opt(argc, argv, "--outbox");
		if (ob ? csa_outbox_open(ob, 0, &sink.outbox, &err)
		       : csa_outbox_open_ws(ws, 0, &sink.outbox, &err)) {
			if (!ob && !ws->pg)
				cli_failf(
				    "%s (with the data mounted read-only, name a writable file "
				    "with --outbox FILE)",
				    err.msg);
			else
				cli_fail(&err);
			goto out;
		}
		const char *ca = getenv("CSA_CA_FILE"); /* an alert webhook with a private CA */
		if (ca && *ca && csa_outbox_set_ca_file(sink.outbox, ca, &err)) {
			cli_failf("CSA_CA_FILE: %s", err.msg);
			goto out;
		}
	}
	const struct csa_monitor_sink ms = {sink_raise, sink_close, &sink};
	if (csa_monitor_start(ws, &ms, 0, &mon, &err)) {
		cli_fail(&err);
		goto out;
	}
	struct sigaction sa = {0};
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	fprintf(stderr, "csa monitor: '%s' every %g s, alerts to %s\n", ws->root, every,
	        url ? url : "this output only");
	status = 0;
	while (!stop_requested) {
		json_t *rep = NULL;
		int rc = csa_monitor_check(mon, &rep, &err);
		if (rc) {
			/* a check that could not run is a line too, and the next one
			 * tries again */
			print_line(
			    json_pack("{s:s, s:s}", "event", "check_failed", "error", err.msg));
			status = 1;
		} else {
			json_object_set_new(rep, "event", json_string("check"));
			if (once && !json_is_true(json_object_get(rep, "ok")))
				status = 1;
			print_line(rep);
		}
		if (sink.outbox) {
			int n = 0;
			struct csa_err derr = {0};
			if (csa_outbox_deliver_target(sink.outbox, csa_now_ms(), 16, MONITOR_TARGET,
			                              &n, &derr))
				fprintf(stderr, "csa monitor: alert delivery: %s\n", derr.msg);
			if (n)
				print_line(json_pack("{s:s, s:i}", "event", "alerts_delivered",
				                     "count", n));
		}
		if (once)
			break;
		pause_for(every);
	}
	if (!once)
		status = 0; /* stopped as asked; the failures were lines of output */
out:
	csa_monitor_stop(mon);
	csa_outbox_close(sink.outbox);
	free(url);
	csa_ws_close(ws);
	return status;
}
