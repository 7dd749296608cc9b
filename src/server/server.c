/*
 * csa serve's lifecycle: open what the server works with (pipeline,
 * controller, tokens, channel map, outbox, file monitor, the leadership
 * of the roles only one node runs), run the thread that delivers the
 * outbox and ticks the controller -- each only while this node leads its
 * role (store/leader.h; always on a single host), the outbox's claims
 * fenced by the role's epoch -- listen, and stop in the reverse order.
 * The rest of the server is in the files listed in server_internal.h.
 */
#include "server/server_internal.h"
#include "automation/control.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/pipeline.h"
#include "server/chanmap.h"
#include "store/monitor.h"
#include "server/replies.h"
#include "outbound/outbox.h"
#include "search/search.h"
#include "store/backup.h"
#include "store/leader.h"
#include "store/ws.h"

#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *csa_server_secret(struct csa_server *s, const char *key)
{
	const struct csa_config *cfg = csa_ws_config(s->ws);
	const char *env = csa_json_str(csa_config_get(cfg, "channels"), key);
	const char *v = env ? getenv(env) : NULL;
	csa_config_unref(cfg);
	return v;
}

size_t csa_server_max_body(struct csa_server *s)
{
	const struct csa_config *cfg = csa_ws_config(s->ws);
	size_t lim = cfg->limits.max_document_bytes;
	csa_config_unref(cfg);
	return lim;
}

void csa_publish_phase(struct csa_server *s)
{
	char ph[8];
	snprintf(ph, sizeof(ph), "PHASE_%d", csa_ws_phase(s->ws));
	csa_publish(s, "phase", json_pack("{s:s}", "phase", ph));
}

const char *const csa_server_roles[CSA_ROLES] = {"tick", "outbox"};

/* How often a node that does not lead a role asks to take it: a leader
 * that died is replaced within this (plus the server noticing its
 * session ended, at once for a killed process, ~30 s of keepalives for
 * a vanished machine), well inside two ticks. */
#define LEAD_RETRY_MS 1000

/*
 * Before each round of a role's work: may this node do it? A leader
 * checks it still leads (one query on its lock's connection); a node
 * that does not lead tries to take the role every LEAD_RETRY_MS. Changes
 * are logged, and a failure once while it lasts. Solo (single host):
 * always.
 */
static int lead_round(struct csa_server *s, int role)
{
	struct csa_role_lead *rl = &s->lead[role];
	int was = csa_leader_leading(rl->l);
	int64_t now = csa_now_ms();
	if (!was && now < rl->next_try_ms)
		return 0;
	int leading = 0;
	struct csa_err err = {0};
	int rc = csa_leader_poll(rl->l, &leading, &err);
	if (!leading)
		rl->next_try_ms = now + LEAD_RETRY_MS;
	if (leading && !was)
		fprintf(stderr, "csa serve: leading '%s' (epoch %lld)\n", csa_server_roles[role],
		        (long long)csa_leader_epoch(rl->l));
	else if (!leading && was)
		fprintf(stderr, "csa serve: no longer leading '%s': %s\n", csa_server_roles[role],
		        rc ? err.msg : "another node leads");
	else if (rc && strncmp(err.msg, rl->last_error, sizeof(rl->last_error) - 1) != 0)
		fprintf(stderr, "csa serve: %s\n", err.msg);
	snprintf(rl->last_error, sizeof(rl->last_error), "%s", rc ? err.msg : "");
	return leading;
}

/* The controller's tick (quality monitor, anomaly detection, segments
 * moving with their gates) every automation.tick_seconds, by the node
 * that leads "tick"; its alerts and phase changes reach the dashboard as
 * events. */
static void tick_if_due(struct csa_server *s, int64_t *next_ms)
{
	int64_t now = csa_now_ms();
	if (now < *next_ms)
		return;
	const struct csa_config *cfg = csa_ws_config(s->ws);
	json_t *every = csa_config_get(cfg, "automation.tick_seconds");
	double seconds = json_is_number(every) ? json_number_value(every) : 60;
	/* a team may let the gates move the workspace phase too */
	int advance = json_is_true(csa_config_get(cfg, "automation.advance_workspace"));
	csa_config_unref(cfg);
	*next_ms = now + (int64_t)(1000 * (seconds > 0 ? seconds : 60));
	if (seconds <= 0)
		return; /* turned off */
	json_t *ev = NULL;
	struct csa_err err = {0};
	pthread_mutex_lock(&s->stat_mu);
	s->ticks++;
	pthread_mutex_unlock(&s->stat_mu);
	if (csa_auto_tick(s->autom, advance, &ev, &err)) {
		fprintf(stderr, "csa serve: controller tick: %s\n", err.msg);
		json_decref(ev);
		return;
	}
	size_t i;
	json_t *e;
	json_array_foreach(ev, i, e)
	{
		const char *kind = csa_json_str(e, "event");
		csa_publish(s, kind && strcmp(kind, "alert") == 0 ? "alert" : "phase",
		            json_incref(e));
	}
	json_decref(ev);
}

static void *deliver_loop(void *arg)
{
	struct csa_server *s = arg;
	int64_t next_tick = csa_now_ms() + 1000;
	char last_error[sizeof(((struct csa_err *)0)->msg)] = "";
	char last_config_error[sizeof(last_error)] = "";
	pthread_mutex_lock(&s->stop_mu);
	while (!s->stopping) {
		pthread_mutex_unlock(&s->stop_mu);
		int n = 0;
		struct csa_err err = {0};
		/* a failure that lasts is logged once, not twice a second */
		if (!lead_round(s, CSA_ROLE_OUTBOX) ||
		    csa_outbox_deliver_due(s->outbox, csa_now_ms(), 32, &n, &err) == CSA_OK)
			last_error[0] = '\0';
		else if (strcmp(err.msg, last_error) != 0) {
			memcpy(last_error, err.msg, sizeof(last_error));
			fprintf(stderr, "csa serve: outbox delivery: %s\n", last_error);
		}
		/* a phase change or a rollback on another node (configuration
		 * in the database) */
		struct csa_err cerr = {0};
		if (csa_ws_config_refresh(s->ws, &cerr) == CSA_OK)
			last_config_error[0] = '\0';
		else if (strcmp(cerr.msg, last_config_error) != 0) {
			memcpy(last_config_error, cerr.msg, sizeof(last_config_error));
			fprintf(stderr, "csa serve: configuration: %s\n", cerr.msg);
		}
		int was_ticking = csa_leader_leading(s->lead[CSA_ROLE_TICK].l);
		if (lead_round(s, CSA_ROLE_TICK)) {
			/* a node taking the role over ticks a second later, as a
			 * node starting does: the dead leader's last tick may be
			 * a whole interval old */
			if (!was_ticking)
				next_tick = csa_now_ms() + 1000;
			tick_if_due(s, &next_tick);
		}
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

/* Wait on stop_cv until 'ms' from now or the server stops; 1 when it
 * stops. Caller holds stop_mu. */
static int wait_stop(struct csa_server *s, long ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (!s->stopping && pthread_cond_timedwait(&s->stop_cv, &s->stop_mu, &until) == 0)
		;
	return s->stopping;
}

/*
 * The scheduled backup (spec §8.1 "automated daily backups"): with
 * backup.dir set, a backup is taken into it when the newest there is
 * older than backup.interval_hours (24), keeping backup.keep of them. A
 * thread of its own, since a backup of a large workspace takes minutes
 * and the outbox must go on meanwhile (a stop waits for a backup under
 * way); the first look comes ten seconds after start, then once a minute (the settings are read each time, so a
 * change of csa.json needs no restart). A failure is logged and tried
 * again an hour later.
 */
static void *backup_loop(void *arg)
{
	struct csa_server *s = arg;
	long wait_ms = 10000;
	pthread_mutex_lock(&s->stop_mu);
	while (!wait_stop(s, wait_ms)) {
		pthread_mutex_unlock(&s->stop_mu);
		wait_ms = 60000;
		const struct csa_config *cfg = csa_ws_config(s->ws);
		const char *d = json_string_value(csa_config_get(cfg, "backup.dir"));
		char *dir = d ? strdup(d) : NULL;
		int keep = (int)json_integer_value(csa_config_get(cfg, "backup.keep"));
		double hours = json_number_value(csa_config_get(cfg, "backup.interval_hours"));
		csa_config_unref(cfg);
		if (dir) {
			struct csa_err err = {0};
			json_t *rep = NULL;
			if (csa_backup_scheduled(s->ws, dir, keep, hours * 3600.0, &rep, &err)) {
				fprintf(stderr, "csa serve: scheduled backup into '%s': %s\n", dir,
				        err.msg);
				wait_ms = 3600000;
			} else if (rep) {
				fprintf(stderr, "csa serve: backup '%s' taken (%lld tickets)\n",
				        csa_json_str(rep, "dir"), csa_json_int(rep, "tickets", 0));
			}
			json_decref(rep);
			free(dir);
		}
		pthread_mutex_lock(&s->stop_mu);
	}
	pthread_mutex_unlock(&s->stop_mu);
	return NULL;
}

/* The file monitor's alerts are the controller's (store/monitor.h). */
static int monitor_raise(void *ctx, const char *type, const char *severity, const char *scope,
                         json_t *detail, struct csa_err *err)
{
	return csa_auto_alert_raise(ctx, type, severity, scope, detail, err);
}

static int monitor_close(void *ctx, const char *type, const char *scope, struct csa_err *err)
{
	return csa_auto_alert_close(ctx, type, scope, err);
}

/* Close what is open; used by a failed start and by stop. */
static void release(struct csa_server *s)
{
	if (s->worker_running || s->backup_running) {
		pthread_mutex_lock(&s->stop_mu);
		s->stopping = 1;
		pthread_cond_broadcast(&s->stop_cv);
		pthread_mutex_unlock(&s->stop_mu);
	}
	if (s->worker_running)
		pthread_join(s->worker, NULL);
	if (s->backup_running)
		pthread_join(s->backup_thread, NULL);
	csa_events_cluster_stop(s);
	csa_board_stop(s);
	csa_search_close(s->search);
	csa_monitor_stop(s->monitor);
	csa_outbox_close(s->outbox);
	/* after the worker and the outbox that used them: the roles go at
	 * once to another node */
	if (s->autom)
		csa_auto_set_tick_fence(s->autom, NULL);
	for (int r = 0; r < CSA_ROLES; r++)
		csa_leader_free(s->lead[r].l);
	csa_chanmap_close(s->chanmap);
	csa_tokens_close(s->tokens);
	csa_auto_close(s->autom);
	csa_pipeline_free(s->pipe);
	csa_events_release(s);
	csa_rcache_release(s);
	pthread_mutex_destroy(&s->rc_mu);
	pthread_mutex_destroy(&s->stat_mu);
	pthread_mutex_destroy(&s->rate_mu);
	pthread_mutex_destroy(&s->ev_mu);
	pthread_cond_destroy(&s->ev_cv);
	pthread_mutex_destroy(&s->stop_mu);
	pthread_cond_destroy(&s->stop_cv);
	free(s);
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
	pthread_mutex_init(&s->rc_mu, NULL);
	pthread_mutex_init(&s->stat_mu, NULL);
	pthread_mutex_init(&s->rate_mu, NULL);
	pthread_mutex_init(&s->ev_mu, NULL);
	pthread_cond_init(&s->ev_cv, NULL);
	pthread_mutex_init(&s->stop_mu, NULL);
	pthread_cond_init(&s->stop_cv, NULL);
	int rc = csa_pipeline_open(ws, &s->pipe, err);
	if (!rc)
		rc = csa_auto_open(ws, s->pipe, &s->autom, err);
	if (!rc)
		rc = csa_tokens_open_ws(ws, &s->tokens, err);
	if (!rc)
		rc = csa_chanmap_open(ws, &s->chanmap, err);
	const struct csa_config *cfg = csa_ws_config(ws);
	int max_attempts = (int)csa_json_int(csa_config_get(cfg, "channels"), "max_attempts", 8);
	double check_every =
	    csa_json_num(csa_config_get(cfg, "sync"), "check_interval_seconds", 60);
	csa_config_unref(cfg);
	if (!rc)
		rc = csa_outbox_open_ws(ws, max_attempts, &s->outbox, err);
	for (int r = 0; r < CSA_ROLES && !rc; r++)
		rc = csa_leader_open_ws(ws, csa_server_roles[r], &s->lead[r].l, err);
	if (!rc)
		csa_outbox_set_fence(s->outbox, s->lead[CSA_ROLE_OUTBOX].l);
	if (!rc && s->autom)
		csa_auto_set_tick_fence(s->autom, s->lead[CSA_ROLE_TICK].l);
	if (!rc)
		rc = csa_reply_credentials(s, err);
	if (!rc)
		rc = csa_search_open_sqlite(ws, CSA_SEARCH_REFRESH_MS, &s->search, err);
	if (!rc)
		rc = csa_board_start(s, err);
	if (rc)
		goto fail;
	csa_pipeline_set_observer(s->pipe, csa_notices_route, s);
	if ((rc = csa_events_cluster_start(s, err)))
		goto fail;
	const struct csa_monitor_sink sink = {monitor_raise, monitor_close, s->autom};
	if ((rc = csa_monitor_start(ws, &sink, check_every, &s->monitor, err)))
		goto fail;
	if (pthread_create(&s->worker, NULL, deliver_loop, s) != 0) {
		rc = csa_error(err, CSA_EIO, "cannot start the delivery worker");
		goto fail;
	}
	s->worker_running = 1;
	if (pthread_create(&s->backup_thread, NULL, backup_loop, s) != 0) {
		rc = csa_error(err, CSA_EIO, "cannot start the scheduled backup thread");
		goto fail;
	}
	s->backup_running = 1;
	if ((rc = csa_http_listen(s, err)))
		goto fail;
	s->ready = 1;
	*out = s;
	return CSA_OK;
fail:
	release(s);
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
	pthread_cond_broadcast(&s->stop_cv);
	pthread_mutex_unlock(&s->stop_mu);
	pthread_cond_broadcast(&s->ev_cv);
	pthread_mutex_unlock(&s->ev_mu);
	MHD_stop_daemon(s->d);
	release(s);
}
