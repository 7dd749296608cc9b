/*
 * Building and changing a ticket's documents in memory: creation from the
 * spec's initial_context (§6.1 create_ticket_state), messages appended to
 * either side, and the unified timeline. Pure functions over json_t; the
 * store persists the result.
 */
#ifndef CSA_STORE_TICKET_H
#define CSA_STORE_TICKET_H

#include <jansson.h>
#include "base/config.h"
#include "base/err.h"
#include "store/store.h"

enum csa_side { CSA_SIDE_EXTERNAL, CSA_SIDE_INTERNAL };

/* "external" / "internal" -> side; -1 when neither. */
int csa_side_parse(const char *s);

/*
 * Fill tk (id, e, i, t; exists = 0) from an initial_context object with the
 * optional keys ticket_id (generated "T<time>-<hex>" when absent),
 * client_name, company_name, customer, platform, channel, trello_template,
 * messages (external) and internal_messages. Wrong types, unknown keys and
 * values outside the spec's enumerations are refused with the field named;
 * configured limits apply. 'now_ms' stamps creation. On failure tk is
 * released.
 */
int csa_ticket_build(const struct csa_config *cfg, const json_t *ctx, int64_t now_ms,
                     struct csa_ticket *tk, struct csa_err *err);

/*
 * Append one message (an object with at least "content") to a side.
 * Missing message_id, timestamp, sender, ... are filled in; a message_id
 * already present on that side returns CSA_EEXIST and changes nothing
 * (platform retries). *msg_id_out (optional) receives a pointer valid while
 * tk holds the message. On any error tk is unchanged.
 */
int csa_ticket_add_message(const struct csa_config *cfg, struct csa_ticket *tk, enum csa_side side,
                           const json_t *msg, int64_t now_ms, const char **msg_id_out,
                           struct csa_err *err);

/* The unified timeline: E and I messages merged by timestamp (stable), each
 * entry {"side": "external"|"internal", ...message fields}. New reference. */
json_t *csa_ticket_timeline(const struct csa_ticket *tk);

/* {"ticket_id", "workflow": T, "external_conversation": E,
 *  "internal_conversation": I[, "unified_timeline"], "decision_trail"}:
 * the shape of spec §6.1 load_ticket_state. New reference. */
json_t *csa_ticket_state_json(const struct csa_ticket *tk, int with_timeline);

/* One line of a ticket list from its T document (and E's status when
 * known): id, client, company, priority, stage, resolved, last sync. */
json_t *csa_ticket_summary(const char *id, const json_t *t, const char *status);

#endif
