/*
 * KPIs of spec §9.1: overall, per phase, per decision type, per segment.
 */
#include "automation/auto_internal.h"
#include "base/json.h"
#include "store/store.h"
#include "store/ws.h"

#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *kpi_row(struct csa_auto *a, const char *where, const char *p1)
{
	char sql[1024];
	snprintf(
	    sql, sizeof(sql),
	    "SELECT count(*), sum(autonomous), sum(final IS NOT NULL), sum(coalesce(correct,0)),"
	    " sum(autonomous = 1 AND final IS NOT NULL), sum(autonomous = 1 AND correct = 1),"
	    " avg(CASE WHEN final IS NOT NULL THEN decision_ms END),"
	    " sum(type = 'escalation'), sum(type = 'escalation' AND value <> 'NONE')"
	    " FROM decisions %s",
	    where);
	sqlite3_stmt *st;
	json_t *r = json_object();
	if (sqlite3_prepare_v2(a->db, sql, -1, &st, NULL) != SQLITE_OK)
		return r;
	if (p1)
		sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		double n = sqlite3_column_double(st, 0), aut = sqlite3_column_double(st, 1),
		       rev = sqlite3_column_double(st, 2), cor = sqlite3_column_double(st, 3),
		       arev = sqlite3_column_double(st, 4), acor = sqlite3_column_double(st, 5),
		       esc_n = sqlite3_column_double(st, 7), esc = sqlite3_column_double(st, 8);
		json_object_set_new(r, "decisions", json_integer((json_int_t)n));
		json_object_set_new(r, "automation_rate", n ? json_real(aut / n) : json_null());
		json_object_set_new(r, "accuracy", rev ? json_real(cor / rev) : json_null());
		json_object_set_new(r, "accuracy_lower_bound",
		                    json_real(csa_wilson_lower((size_t)cor, (size_t)rev, 1.96)));
		json_object_set_new(r, "autonomous_accuracy",
		                    arev ? json_real(acor / arev) : json_null());
		json_object_set_new(r, "reviewed", json_integer((json_int_t)rev));
		json_object_set_new(r, "mean_decision_seconds",
		                    sqlite3_column_type(st, 6) == SQLITE_NULL
		                        ? json_null()
		                        : json_real(sqlite3_column_double(st, 6) / 1000));
		json_object_set_new(r, "escalation_rate",
		                    esc_n ? json_real(esc / esc_n) : json_null());
	}
	sqlite3_finalize(st);
	/* calibration of reviewed decisions */
	snprintf(sql, sizeof(sql),
	         "SELECT confidence, correct FROM decisions %s%s final IS NOT NULL", where,
	         *where ? " AND" : " WHERE");
	if (sqlite3_prepare_v2(a->db, sql, -1, &st, NULL) == SQLITE_OK) {
		if (p1)
			sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
		double conf[10] = {0}, acc[10] = {0}, cnt[10] = {0}, tot = 0, ece = 0;
		while (sqlite3_step(st) == SQLITE_ROW) {
			int b = (int)(sqlite3_column_double(st, 0) * 10);
			b = b < 0 ? 0 : b > 9 ? 9 : b;
			conf[b] += sqlite3_column_double(st, 0);
			acc[b] += sqlite3_column_int(st, 1);
			cnt[b] += 1;
			tot += 1;
		}
		sqlite3_finalize(st);
		json_t *rel = json_array();
		for (int b = 0; b < 10; b++) {
			if (!cnt[b])
				continue;
			ece += fabs(acc[b] - conf[b]) / tot;
			json_array_append_new(
			    rel, json_pack("{s:f, s:f, s:f, s:I}", "bin", (b + 0.5) / 10,
			                   "confidence", conf[b] / cnt[b], "accuracy",
			                   acc[b] / cnt[b], "n", (json_int_t)cnt[b]));
		}
		json_object_set_new(r, "calibration_ece", tot ? json_real(ece) : json_null());
		json_object_set_new(r, "reliability", rel);
	}
	return r;
}

struct tk_stats {
	double n, resolved, frt_sum, frt_n, res_sum, res_n, csat_sum, csat_n;
};

static int ticket_kpi(void *ctx, const char *id, const json_t *t, const char *status)
{
	(void)id, (void)status;
	struct tk_stats *s = ctx;
	json_t *m = json_object_get(t, "sla_metrics");
	s->n++;
	s->resolved += json_is_true(json_object_get(t, "resolved"));
	double v;
	if ((v = csa_json_num(m, "first_response_time", -1)) >= 0)
		s->frt_sum += v, s->frt_n++;
	if ((v = csa_json_num(m, "resolution_time", -1)) >= 0)
		s->res_sum += v, s->res_n++;
	if ((v = csa_json_num(m, "customer_satisfaction", -1)) >= 1)
		s->csat_sum += v, s->csat_n++;
	return 0;
}

int csa_auto_metrics(struct csa_auto *a, json_t **out, struct csa_err *err)
{
	struct tk_stats ts = {0};
	int rc = csa_store_scan(a->ws->store, NULL, ticket_kpi, &ts, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&a->mu);
	json_t *overall = kpi_row(a, "", NULL);
	json_object_set_new(overall, "tickets", json_integer((json_int_t)ts.n));
	json_object_set_new(overall, "resolved_tickets", json_integer((json_int_t)ts.resolved));
	json_object_set_new(overall, "mean_first_response_minutes",
	                    ts.frt_n ? json_real(ts.frt_sum / ts.frt_n) : json_null());
	json_object_set_new(overall, "mean_resolution_minutes",
	                    ts.res_n ? json_real(ts.res_sum / ts.res_n) : json_null());
	json_object_set_new(overall, "csat",
	                    ts.csat_n ? json_real(ts.csat_sum / ts.csat_n) : json_null());
	json_t *by_phase = json_object(), *by_type = json_object(), *by_seg = json_object();
	for (int p = 1; p <= 5; p++) {
		char where[64], name[8];
		snprintf(where, sizeof(where), "WHERE phase = %d", p);
		snprintf(name, sizeof(name), "PHASE_%d", p);
		json_t *r = kpi_row(a, where, NULL);
		if (csa_json_int(r, "decisions", 0))
			json_object_set_new(by_phase, name, r);
		else
			json_decref(r);
	}
	size_t i;
	json_t *t;
	json_array_foreach(csa_config_get(auto_cfg(a), "automation.decision_types"), i, t)
	    json_object_set_new(by_type, json_string_value(t),
	                        kpi_row(a, "WHERE type = ?1", json_string_value(t)));
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(a->db, "SELECT DISTINCT type || '/' || segment FROM decisions", -1,
	                       &st, NULL) == SQLITE_OK) {
		while (sqlite3_step(st) == SQLITE_ROW) {
			const char *key = (const char *)sqlite3_column_text(st, 0);
			json_t *r = kpi_row(a, "WHERE type || '/' || segment = ?1", key);
			json_object_del(r, "reliability");
			json_object_set_new(by_seg, key, r);
		}
		sqlite3_finalize(st);
	}
	char ph[8];
	snprintf(ph, sizeof(ph), "PHASE_%d", auto_workspace_phase(a));
	*out = json_pack("{s:s, s:o, s:o, s:o, s:o}", "phase", ph, "overall", overall, "by_phase",
	                 by_phase, "by_decision_type", by_type, "by_segment", by_seg);
	pthread_mutex_unlock(&a->mu);
	return CSA_OK;
}

void csa_auto_counts(struct csa_auto *a, struct csa_auto_counts *out)
{
	out->open_tasks = atomic_load(&a->n.open_tasks);
	out->decisions = atomic_load(&a->n.decisions);
	out->reviews = atomic_load(&a->n.reviews);
	out->open_alerts = atomic_load(&a->n.open_alerts);
}

int auto_counts_reload(struct csa_auto *a, struct csa_err *err)
{
	static const struct {
		size_t off;
		const char *sql, *what;
	} q[] = {
	    /* each through an index: tasks_open, the decision log's smallest
	     * index, the reviews' partial index */
	    {offsetof(struct csa_auto, n.open_tasks),
	     "SELECT count(*) FROM tasks WHERE status IN ('open', 'deciding')",
	     "counting the open review tasks"},
	    {offsetof(struct csa_auto, n.decisions), "SELECT count(*) FROM decisions",
	     "counting the decisions"},
	    {offsetof(struct csa_auto, n.reviews),
	     "SELECT count(*) FROM decisions WHERE final IS NOT NULL", "counting the reviews"},
	    {offsetof(struct csa_auto, n.open_alerts), "SELECT count(*) FROM alerts WHERE open = 1",
	     "counting the open alerts"},
	};
	int rc = CSA_OK;
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		int64_t v = auto_count_i64(a, q[i].sql, NULL, NULL);
		if (v >= 0)
			atomic_store((_Atomic int64_t *)((char *)a + q[i].off), v);
		else if (rc == CSA_OK)
			rc = auto_db_err(a, err, q[i].what);
	}
	return rc;
}
