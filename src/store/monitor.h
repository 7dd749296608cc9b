/*
 * The file monitor of spec §8.1, run inside the server and as its own
 * process (`csa monitor`): every
 * sync.check_interval_seconds (SYNC_CHECK_INTERVAL overrides it; 0 turns
 * the periodic check off; the first one comes one interval after start)
 * a low-priority thread re-verifies the mesh
 * (store/verify.h, live mode, so tickets being written are not mistaken
 * for broken ones) and turns what it finds into alerts, handed to a sink:
 * MESH_DRIFT for synchronisation drift, MESH_INTEGRITY for orphaned,
 * unreadable or invalid documents and stray files, one alert per kind of
 * problem (scope "mesh/<problem>"), closed by the first check that no
 * longer finds that kind. In the server the sink is the automation
 * controller (alerts reach automation.db, the ledger and ALERT_WEBHOOK_URL
 * through the outbox); `csa monitor`'s sink queues them in the outbox for
 * ALERT_WEBHOOK_URL itself (src/cli/cmd_monitor.c).
 */
#ifndef CSA_STORE_MONITOR_H
#define CSA_STORE_MONITOR_H

#include <jansson.h>
#include "base/err.h"

struct csa_monitor;
struct csa_ws;

/* Where the monitor's alerts go. Both are called from the checking
 * thread, one kind after the other; raise is called on every check that
 * finds the kind (the sink decides whether an alert is already open). */
struct csa_monitor_sink {
	/* Raise alert 'type' ("MESH_DRIFT") of 'severity' for 'scope'
	 * ("mesh/orphan") with 'detail' (handed over: the sink releases it). */
	int (*raise)(void *ctx, const char *type, const char *severity, const char *scope,
	             json_t *detail, struct csa_err *err);
	/* Close the alert of 'type' and 'scope' if one is open. */
	int (*close)(void *ctx, const char *type, const char *scope, struct csa_err *err);
	void *ctx;
};

/* Start the monitor thread; with interval_s <= 0 no thread runs and only
 * csa_monitor_check() checks. 'sink' is copied; its ctx must outlive the
 * monitor. */
int csa_monitor_start(struct csa_ws *ws, const struct csa_monitor_sink *sink, double interval_s,
                      struct csa_monitor **out, struct csa_err *err);

/* Check now and raise or close alerts; *report (may be NULL) receives the
 * summary csa_monitor_status() shows as "last", with up to 100 problems.
 * An alert the sink could not take fails the check (the summary is still
 * kept as "last"). */
int csa_monitor_check(struct csa_monitor *m, json_t **report, struct csa_err *err);

/* {"interval_seconds", "checks", "last": {"at", "duration_ms", "tickets",
 * "ok", "counts": {problem: n}} or null}: a new reference. */
json_t *csa_monitor_status(struct csa_monitor *m);

/* Stop the thread (waiting for a check in progress) and free. */
void csa_monitor_stop(struct csa_monitor *m);

#endif
