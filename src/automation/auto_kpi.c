/*
 * KPIs of spec §9.1: overall, per phase, per decision type, per segment.
 */
#include "automation/auto_internal.h"
#include "automation/ticket_kpis.h"
#include "base/json.h"
#include "base/ts.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int csa_auto_metrics(struct csa_auto *a, json_t **out, struct csa_err *err)
{
	struct csa_kpi_totals ts;
	int rc = csa_ticket_kpis_totals(a->kpis, &ts, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&a->mu);
	json_t *overall = a->ops->kpi(a->store, 0, NULL, NULL);
	json_object_set_new(overall, "tickets", json_integer((json_int_t)ts.tickets));
	json_object_set_new(overall, "resolved_tickets", json_integer((json_int_t)ts.resolved));
	json_object_set_new(overall, "mean_first_response_minutes",
	                    ts.frt_n ? json_real(ts.frt_sum / ts.frt_n) : json_null());
	json_object_set_new(overall, "mean_resolution_minutes",
	                    ts.res_n ? json_real(ts.res_sum / ts.res_n) : json_null());
	json_object_set_new(overall, "csat",
	                    ts.csat_n ? json_real(ts.csat_sum / ts.csat_n) : json_null());
	json_t *by_phase = json_object(), *by_type = json_object(), *by_seg = json_object();
	for (int p = 1; p <= 5; p++) {
		char name[8];
		snprintf(name, sizeof(name), "PHASE_%d", p);
		json_t *r = a->ops->kpi(a->store, p, NULL, NULL);
		if (csa_json_int(r, "decisions", 0))
			json_object_set_new(by_phase, name, r);
		else
			json_decref(r);
	}
	size_t i;
	json_t *t;
	json_array_foreach(csa_config_get(auto_cfg(a), "automation.decision_types"), i, t)
	    json_object_set_new(by_type, json_string_value(t),
	                        a->ops->kpi(a->store, 0, json_string_value(t), NULL));
	json_t *keys, *key;
	a->ops->segments(a->store, AUTO_SEGS_KEYS, "listing the segments", &keys, NULL);
	json_array_foreach(keys, i, key)
	{
		json_t *r = a->ops->kpi(a->store, 0, NULL, json_string_value(key));
		json_object_del(r, "reliability");
		json_object_set_new(by_seg, json_string_value(key), r);
	}
	json_decref(keys);
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
	struct csa_auto_counts c;
	int rc = a->ops->counts(a->store, &c, err);
	/* a count the store could not give (-1) keeps its value */
	if (c.open_tasks >= 0)
		atomic_store(&a->n.open_tasks, c.open_tasks);
	if (c.decisions >= 0)
		atomic_store(&a->n.decisions, c.decisions);
	if (c.reviews >= 0)
		atomic_store(&a->n.reviews, c.reviews);
	if (c.open_alerts >= 0)
		atomic_store(&a->n.open_alerts, c.open_alerts);
	return rc;
}

int csa_auto_trend(struct csa_auto *a, int64_t since, int64_t bucket_ms, size_t max, json_t **out,
                   struct csa_err *err)
{
	json_t *rows;
	pthread_mutex_lock(&a->mu);
	int rc = a->ops->trend(a->store, since, bucket_ms, max, &rows, err);
	double z = auto_settings(a)->z;
	pthread_mutex_unlock(&a->mu);
	if (rc)
		return rc;
	size_t i;
	json_t *r;
	json_array_foreach(rows, i, r)
	{
		char ts[CSA_TS_LEN];
		json_int_t n = json_integer_value(json_object_get(r, "decisions")),
		           rev = json_integer_value(json_object_get(r, "reviewed")),
		           ok = json_integer_value(json_object_get(r, "correct")),
		           arev = json_integer_value(json_object_get(r, "auto_reviewed")),
		           aok = json_integer_value(json_object_get(r, "auto_correct"));
		csa_ts_format(json_integer_value(json_object_get(r, "start")), ts);
		json_object_set_new(r, "start", json_string(ts));
		json_object_set_new(r, "autonomous_rate",
		                    json_real(n ? (double)json_integer_value(json_object_get(
		                                      r, "autonomous")) /
		                                      (double)n
		                                : 0));
		json_object_set_new(r, "accuracy", rev ? json_real((double)ok / (double)rev) : json_null());
		json_object_set_new(r, "accuracy_lower_bound",
		                    rev ? json_real(csa_wilson_lower((size_t)ok, (size_t)rev, z))
		                        : json_null());
		json_object_set_new(r, "autonomous_accuracy",
		                    arev ? json_real((double)aok / (double)arev) : json_null());
		json_object_del(r, "correct");
		json_object_del(r, "auto_correct");
	}
	*out = rows;
	return CSA_OK;
}

/* ---- what the store's backends share (auto_store.h) ------------------- */

void auto_kpi_calibrate(struct auto_kpi_sums *k, double confidence, int correct)
{
	int b = (int)(confidence * 10);
	b = b < 0 ? 0 : b > 9 ? 9 : b;
	k->conf[b] += confidence;
	k->acc[b] += correct;
	k->cnt[b] += 1;
	k->tot += 1;
}

json_t *auto_kpi_object(const struct auto_kpi_sums *k)
{
	json_t *r = json_object();
	if (k->have_sums) {
		double n = k->n, rev = k->reviewed, arev = k->auto_reviewed;
		json_object_set_new(r, "decisions", json_integer((json_int_t)n));
		json_object_set_new(r, "automation_rate",
		                    n ? json_real(k->autonomous / n) : json_null());
		json_object_set_new(r, "accuracy", rev ? json_real(k->correct / rev) : json_null());
		json_object_set_new(
		    r, "accuracy_lower_bound",
		    json_real(csa_wilson_lower((size_t)k->correct, (size_t)rev, 1.96)));
		json_object_set_new(r, "autonomous_accuracy",
		                    arev ? json_real(k->auto_correct / arev) : json_null());
		json_object_set_new(r, "reviewed", json_integer((json_int_t)rev));
		json_object_set_new(r, "mean_decision_seconds",
		                    k->has_mean_decision_ms ? json_real(k->mean_decision_ms / 1000)
		                                            : json_null());
		json_object_set_new(r, "escalation_rate",
		                    k->escalations ? json_real(k->escalated / k->escalations)
		                                   : json_null());
		json_object_set_new(r, "mean_confidence",
		                    k->has_mean_confidence ? json_real(k->mean_confidence)
		                                           : json_null());
	}
	if (k->have_calibration) {
		double ece = 0;
		json_t *rel = json_array();
		for (int b = 0; b < 10; b++) {
			if (!k->cnt[b])
				continue;
			ece += fabs(k->acc[b] - k->conf[b]) / k->tot;
			json_array_append_new(
			    rel, json_pack("{s:f, s:f, s:f, s:I}", "bin", (b + 0.5) / 10, "confidence",
			                   k->conf[b] / k->cnt[b], "accuracy", k->acc[b] / k->cnt[b],
			                   "n", (json_int_t)k->cnt[b]));
		}
		json_object_set_new(r, "calibration_ece", k->tot ? json_real(ece) : json_null());
		json_object_set_new(r, "reliability", rel);
	}
	return r;
}
