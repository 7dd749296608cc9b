/* SLA deadlines and state. */
#include "sla/sla.h"
#include "base/json.h"
#include "base/ts.h"

#include <stdint.h>
#include <string.h>

const char *csa_sla_state_name(enum csa_sla_state s)
{
	static const char *const n[] = {"on_time", "at_risk", "breached"};
	return n[s];
}

long csa_sla_minutes(const struct csa_config *cfg, const char *table, const char *priority,
                     const char *tier)
{
	json_t *t = json_object_get(csa_config_get(cfg, "sla"), table);
	json_t *row = json_object_get(t, priority ? priority : "MEDIUM");
	if (!row)
		row = json_object_get(t, "MEDIUM");
	json_t *v = json_object_get(row, tier ? tier : "STANDARD");
	if (!v)
		v = json_object_get(row, "STANDARD");
	return json_is_number(v) ? (long)json_number_value(v) : 1440;
}

enum csa_sla_state csa_sla_state_of(int64_t start_ms, int64_t due_ms, int64_t done_ms,
                                    int64_t now_ms, double at_risk_fraction)
{
	int64_t t = done_ms >= 0 ? done_ms : now_ms;
	if (t > due_ms)
		return CSA_SLA_BREACHED;
	if (done_ms >= 0)
		return CSA_SLA_ON_TIME;
	int64_t risk_at = start_ms + (int64_t)((double)(due_ms - start_ms) * at_risk_fraction);
	return now_ms >= risk_at ? CSA_SLA_AT_RISK : CSA_SLA_ON_TIME;
}

/* When the customer was first answered (the first cs_agent message, or
 * ai_agent: a reply the phase let go out by itself), or -1. */
static int64_t first_reply_ms(const json_t *e)
{
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(e, "messages"), i, m)
	{
		const char *s = csa_json_str(m, "sender");
		int64_t ms;
		if (s && (strcmp(s, "cs_agent") == 0 || strcmp(s, "ai_agent") == 0) &&
		    csa_ts_parse(csa_json_str(m, "timestamp"), &ms) == 0)
			return ms;
	}
	return -1;
}

static double at_risk_fraction(const struct csa_config *cfg)
{
	json_t *v = csa_config_get(cfg, "sla.at_risk_fraction");
	return json_is_number(v) ? json_number_value(v) : 0.75;
}

void csa_sla_clock_of(const struct csa_config *cfg, const json_t *e, struct csa_sla_clock *out)
{
	out->risk_ms = out->breach_ms = out->due_ms = CSA_SLA_NEVER;
	json_t *sla = json_object_get(e, "sla_tracking");
	int64_t created, due;
	if (csa_ts_parse(csa_json_str(sla, "created_at"), &created))
		return;
	double f = at_risk_fraction(cfg);
	/* each deadline with the time of its event (-1: not yet) */
	int64_t done[2] = {first_reply_ms(e), -1};
	const char *st = csa_json_str(e, "conversation_status");
	if (st && strcmp(st, "resolved") == 0 &&
	    csa_ts_parse(csa_json_str(e, "last_updated"), &done[1]))
		done[1] = -1;
	static const char *const key[2] = {"first_response_due", "resolution_due"};
	for (int k = 0; k < 2; k++) {
		if (csa_ts_parse(csa_json_str(sla, key[k]), &due))
			continue;
		/* the rules of csa_sla_state_of, as the instants they change */
		if (done[k] >= 0 && done[k] <= due)
			continue; /* met: on time for good */
		if (due < out->breach_ms)
			out->breach_ms = due;
		if (done[k] >= 0)
			continue; /* missed: breached for good */
		int64_t risk = created + (int64_t)((double)(due - created) * f);
		if (risk < out->risk_ms)
			out->risk_ms = risk;
		if (due < out->due_ms)
			out->due_ms = due;
	}
}

enum csa_sla_state csa_sla_clock_state(const struct csa_sla_clock *c, int64_t now_ms)
{
	if (c->breach_ms != CSA_SLA_NEVER && now_ms > c->breach_ms)
		return CSA_SLA_BREACHED;
	if (c->risk_ms != CSA_SLA_NEVER && now_ms >= c->risk_ms)
		return CSA_SLA_AT_RISK;
	return CSA_SLA_ON_TIME;
}

static int state_now(const struct csa_config *cfg, const json_t *e, int64_t now_ms)
{
	struct csa_sla_clock c;
	csa_sla_clock_of(cfg, e, &c);
	return csa_sla_clock_state(&c, now_ms);
}

void csa_sla_fill(const struct csa_config *cfg, json_t *e, const char *priority, const char *tier,
                  int64_t now_ms)
{
	json_t *sla = json_object_get(e, "sla_tracking");
	int64_t created;
	if (!sla || csa_ts_parse(csa_json_str(sla, "created_at"), &created))
		return;
	char ts[CSA_TS_LEN];
	long fr = csa_sla_minutes(cfg, "first_response_minutes", priority, tier);
	long res = csa_sla_minutes(cfg, "resolution_minutes", priority, tier);
	json_object_set_new(sla, "first_response_due",
	                    json_string(csa_ts_format(created + (int64_t)fr * 60000, ts)));
	json_object_set_new(sla, "resolution_due",
	                    json_string(csa_ts_format(created + (int64_t)res * 60000, ts)));
	json_object_set_new(
	    sla, "current_status",
	    json_string(csa_sla_state_name((enum csa_sla_state)state_now(cfg, e, now_ms))));
}

int csa_sla_status_of(const struct csa_config *cfg, const json_t *e, int64_t now_ms)
{
	return state_now(cfg, e, now_ms);
}
