/*
 * The file monitor of spec §8.1, run inside the server: every
 * sync.check_interval_seconds (SYNC_CHECK_INTERVAL overrides it; 0 turns
 * the periodic check off; the first one comes one interval after start)
 * a low-priority thread re-verifies the mesh
 * (store/verify.h, live mode, so tickets being written are not mistaken
 * for broken ones) and turns what it finds into alerts of the automation
 * controller: MESH_DRIFT for synchronisation drift, MESH_INTEGRITY for
 * orphaned, unreadable or invalid documents and stray files, one alert per
 * kind of problem (scope "mesh/<problem>"), closed by the first check that
 * no longer finds that kind. Alerts reach the ledger and ALERT_WEBHOOK_URL.
 */
#ifndef CSA_SERVER_MONITOR_H
#define CSA_SERVER_MONITOR_H

#include <jansson.h>
#include "base/err.h"

struct csa_auto;
struct csa_monitor;
struct csa_ws;

/* Start the monitor thread; with interval_s <= 0 no thread runs and only
 * csa_monitor_check() checks. */
int csa_monitor_start(struct csa_ws *ws, struct csa_auto *a, double interval_s,
                      struct csa_monitor **out, struct csa_err *err);

/* Check now and raise or close alerts; *report (may be NULL) receives the
 * summary csa_monitor_status() shows as "last", with up to 100 problems.
 * An alert that automation.db could not record fails the check (the
 * summary is still kept as "last"). */
int csa_monitor_check(struct csa_monitor *m, json_t **report, struct csa_err *err);

/* {"interval_seconds", "checks", "last": {"at", "duration_ms", "tickets",
 * "ok", "counts": {problem: n}} or null}: a new reference. */
json_t *csa_monitor_status(struct csa_monitor *m);

/* Stop the thread (waiting for a check in progress) and free. */
void csa_monitor_stop(struct csa_monitor *m);

#endif
