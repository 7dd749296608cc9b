/*
 * Alerts: recorded in the alerts table, appended to the ledger, queued in
 * the outbox for the alert webhook; the ledger's own health as an alert.
 */
#include "automation/auto_internal.h"
#include "automation/ledger.h"
#include "base/json.h"
#include "base/ts.h"
#include "outbound/outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- alerts and safety ------------------------------------------------- */

/*
 * The alert webhook (automation.alert_webhook, else $ALERT_WEBHOOK_URL)
 * hears of an alert through the durable outbox, never from here: a slow or
 * unreachable receiver would otherwise hold a->mu, and every decision
 * behind it, for as long as it takes to answer. The server's delivery loop
 * posts it with retries; without a server (`csa auto tick`) it waits in
 * outbox.db for the next one. The key makes a queued alert go out once.
 */
static void queue_webhook(struct csa_auto *a, const struct alert_id *aid, const json_t *alert)
{
	const char *url = csa_json_str(csa_config_get(auto_cfg(a), "automation"), "alert_webhook");
	if (!url || !*url)
		url = getenv("ALERT_WEBHOOK_URL");
	if (!url || !*url || !a->outbox)
		return;
	char key[400];
	if (aid->id > 0)
		snprintf(key, sizeof(key), "alert-%lld-%lld", (long long)aid->id,
		         (long long)aid->created_ms);
	else /* the alerts table did not take it: still one key per announcement */
		snprintf(key, sizeof(key), "alert-unrecorded-%lld-%s-%s",
		         (long long)aid->created_ms, csa_json_str(alert, "type"),
		         csa_json_str(alert, "scope"));
	struct csa_err e = {0};
	/* the alert is in the ledger and the alerts table: a webhook that
	 * cannot be queued is logged, not a failure of the alert */
	if (csa_outbox_enqueue(a->outbox, key, NULL, "alert", url, alert, &e) < 0)
		fprintf(stderr, "csa: alert %s not queued for the webhook: %s\n", key, e.msg);
}

/* The alerts table's row for an alert: *is_new is 0 when an open alert of
 * the same type and scope stands (each CRITICAL_ERROR is its own alert)
 * or the tick's fence refused the row;
 * *aid its row (id 0 when not written). Caller holds a->mu. */
int auto_record_alert(struct csa_auto *a, const char *type, const char *severity, const char *scope,
                      const json_t *detail, int *is_new, struct alert_id *aid, struct csa_err *err)
{
	char what[300];
	snprintf(what, sizeof(what), "recording alert %s (%s)", type, scope);
	*is_new = 1;
	*aid = (struct alert_id){0, csa_now_ms()};
	int open, rc = a->ops->alert_is_open(a->store, type, scope, &open, what, err);
	if (rc)
		return rc;
	if (open && strcmp(type, "CRITICAL_ERROR") != 0) {
		*is_new = 0;
		return CSA_OK;
	}
	rc = a->ops->insert_alert(a->store, aid->created_ms, type, severity, scope, detail,
	                          &aid->id, what, err);
	/* refused by the tick's fence: another node ticks now and raises it
	 * if it still holds; this one announces nothing */
	if (rc == CSA_ECONFLICT)
		*is_new = 0;
	return rc;
}

/* The ledger, the webhook (through the outbox) and the caller's events
 * hear of the alert recorded as *aid. 'detail' is stolen. */
void auto_announce_alert(struct csa_auto *a, const struct alert_id *aid, const char *type,
                         const char *severity, const char *scope, json_t *detail, json_t *events)
{
	json_t *alert = json_pack("{s:s, s:s, s:s, s:o}", "type", type, "severity", severity,
	                          "scope", scope, "detail", detail);
	auto_audit(a, "alert", NULL, alert);
	queue_webhook(a, aid, alert);
	if (events)
		json_array_append_new(events,
		                      json_pack("{s:s, s:O}", "event", "alert", "alert", alert));
	json_decref(alert);
}

/* Caller holds a->mu. An open alert of the same type and scope is not
 * raised twice. One that the alerts table cannot take still reaches the
 * ledger, the webhook and the events, and the caller gets the error to
 * report: an alert is never silent. 'detail' is stolen. */
int auto_raise_alert(struct csa_auto *a, const char *type, const char *severity, const char *scope,
                     json_t *detail, json_t *events, struct csa_err *err)
{
	int is_new;
	struct alert_id aid;
	int rc = auto_record_alert(a, type, severity, scope, detail, &is_new, &aid, err);
	atomic_fetch_add(&a->n.open_alerts, aid.id > 0);
	if (is_new)
		auto_announce_alert(a, &aid, type, severity, scope, detail, events);
	else
		json_decref(detail);
	return rc;
}

/* Caller holds a->mu; *closed tells whether an alert was open. */
int auto_close_alert(struct csa_auto *a, const char *type, const char *scope, int *closed,
                     struct csa_err *err)
{
	char what[300];
	snprintf(what, sizeof(what), "closing alert %s (%s)", type, scope);
	if (closed)
		*closed = 0;
	int64_t n;
	int rc = a->ops->close_alerts(a->store, type, scope, &n, what, err);
	if (rc)
		return rc;
	atomic_fetch_sub(&a->n.open_alerts, n);
	if (closed)
		*closed = n > 0;
	return CSA_OK;
}

/* A ledger that cannot take records (disk full, I/O error) is a CRITICAL
 * alert, not a silent gap: the decisions are still in T and automation.db,
 * but the tamper-evident chain misses them. It closes at the next append
 * that succeeds. Caller holds a->mu. */
void auto_ledger_health_locked(struct csa_auto *a, int rc, const struct csa_err *err)
{
	struct csa_err aerr = {0};
	int arc = CSA_OK;
	if (rc && !a->ledger_failing)
		arc = auto_raise_alert(a, "AUDIT_LEDGER_FAILURE", "CRITICAL", "ledger",
		                       json_pack("{s:s}", "error", err->msg), NULL, &aerr);
	else if (!rc && a->ledger_failing)
		arc = auto_close_alert(a, "AUDIT_LEDGER_FAILURE", "ledger", NULL, &aerr);
	/* neither the ledger nor the alerts table takes it: the log does */
	if (arc)
		fprintf(stderr, "csa: %s\n", aerr.msg);
	/* an alert that could not be closed is closed at the next append */
	a->ledger_failing = rc != CSA_OK || (a->ledger_failing && arc);
}

void auto_audit(struct csa_auto *a, const char *type, const char *ticket_id,
                const json_t *payload)
{
	struct csa_ledger_rec rec = {type, ticket_id, payload};
	int audited = 0;
	if (a->ops->audit(a->store, a->ledger, &rec, 1, &audited, NULL) == CSA_ECONFLICT)
		return; /* fenced: this node no longer ticks */
	if (!audited)
		csa_ledger_append(a->ledger, type, ticket_id, payload, NULL, NULL);
}

int csa_auto_alert_raise(struct csa_auto *a, const char *type, const char *severity,
                         const char *scope, json_t *detail, struct csa_err *err)
{
	pthread_mutex_lock(&a->mu);
	int rc = auto_raise_alert(a, type, severity, scope, detail, NULL, err);
	pthread_mutex_unlock(&a->mu);
	return rc;
}

int csa_auto_alert_close(struct csa_auto *a, const char *type, const char *scope,
                         struct csa_err *err)
{
	pthread_mutex_lock(&a->mu);
	int closed, rc = auto_close_alert(a, type, scope, &closed, err);
	if (rc == CSA_OK && closed) {
		json_t *rec = json_pack("{s:s, s:s}", "type", type, "scope", scope);
		auto_audit(a, "alert_closed", NULL, rec);
		json_decref(rec);
	}
	pthread_mutex_unlock(&a->mu);
	return rc;
}

int csa_auto_alerts(struct csa_auto *a, int open_only, json_t **out, struct csa_err *err)
{
	pthread_mutex_lock(&a->mu);
	int rc = a->ops->alert_list(a->store, open_only, 500, out, err);
	pthread_mutex_unlock(&a->mu);
	return rc;
}
