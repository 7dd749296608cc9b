/*
 * Service-level deadlines: first_response_due and resolution_due from the
 * priority x subscription-tier table of csa.json (sla.first_response_minutes,
 * sla.resolution_minutes), and the state on_time / at_risk / breached.
 * A deadline is at risk once at_risk_fraction of its time has passed
 * without the event. Pure functions, except csa_sla_fill which writes the
 * result into an E document.
 */
#ifndef CSA_SLA_SLA_H
#define CSA_SLA_SLA_H

#include <jansson.h>
#include <stdint.h>
#include "base/config.h"

enum csa_sla_state { CSA_SLA_ON_TIME, CSA_SLA_AT_RISK, CSA_SLA_BREACHED };

/* "on_time", "at_risk", "breached". */
const char *csa_sla_state_name(enum csa_sla_state s);

/* Minutes allowed by the table ("first_response_minutes" or
 * "resolution_minutes"); unknown priority or tier fall back to MEDIUM and
 * STANDARD. */
long csa_sla_minutes(const struct csa_config *cfg, const char *table, const char *priority,
                     const char *tier);

/* State of one deadline: 'done_ms' < 0 when the event has not happened. */
enum csa_sla_state csa_sla_state_of(int64_t start_ms, int64_t due_ms, int64_t done_ms,
                                    int64_t now_ms, double at_risk_fraction);

/* "Never" for the instants of a clock. */
#define CSA_SLA_NEVER INT64_MAX

/* The instants at which a ticket's SLA state changes, as E stands (the
 * rules of csa_sla_state_of over both deadlines): an index stores them and
 * asks for a state at any time without reading the ticket again. */
struct csa_sla_clock {
	int64_t risk_ms;   /* at_risk from this instant on (CSA_SLA_NEVER) */
	int64_t breach_ms; /* breached after this instant (CSA_SLA_NEVER) */
	int64_t due_ms;    /* the nearest deadline still open (CSA_SLA_NEVER) */
};

void csa_sla_clock_of(const struct csa_config *cfg, const json_t *e, struct csa_sla_clock *out);

/* The state a clock gives at now_ms: the same as csa_sla_status_of() on
 * the E document the clock was taken from. */
enum csa_sla_state csa_sla_clock_state(const struct csa_sla_clock *c, int64_t now_ms);

/* Fill E.sla_tracking (both deadlines from created_at, current_status as
 * the worse of the two) for a ticket of this priority and tier. */
void csa_sla_fill(const struct csa_config *cfg, json_t *e, const char *priority, const char *tier,
                  int64_t now_ms);

/* The state recorded or implied by E's sla_tracking now (on_time when no
 * deadline is set). */
int csa_sla_status_of(const struct csa_config *cfg, const json_t *e, int64_t now_ms);

#endif
