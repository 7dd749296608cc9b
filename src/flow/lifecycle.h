/*
 * A ticket's life around the agents' runs: who works it, where it stands
 * and how it ended (issue 22).
 *
 *  - who: T.assigned_member and I.participants (cs_team, technical_team,
 *    assigned_resolver) follow every assignment, the escalation agent's
 *    (agents/agent.c, from the roster of agents/team.h) and a person's
 *    (csa_lifecycle_assign), and every message's sender
 *    (csa_lifecycle_note_message); E.participants.cs_agents follows the
 *    people who reply to the customer.
 *  - where: I.progress_updates gets an entry on each change of state:
 *    "assigned" (an assignment), "in_progress" (a person starts writing on
 *    an assigned ticket, or a run finds nothing in the way), "blocked" (a
 *    run finds the ticket waiting: on the customer after REQUEST_MORE_INFO,
 *    on an escalation, on a free team member) and "resolved". The updates
 *    agent proposes the state of a run with its blockers, next actions and
 *    estimated completion; an entry is added only when the state or the
 *    blockers differ from the latest entry's.
 *  - how it ended: csa_lifecycle_resolve closes the ticket and fills
 *    T.sla_metrics (resolution_time, customer_satisfaction,
 *    internal_efficiency) and I.knowledge_extraction
 *    (agents/knowledge.h).
 *
 * The csa_lifecycle_* functions that take a ticket change its documents
 * in memory; the caller holds its lock and commits them.
 */
#ifndef CSA_FLOW_LIFECYCLE_H
#define CSA_FLOW_LIFECYCLE_H

#include <jansson.h>
#include <stdint.h>
#include "base/config.h"
#include "base/err.h"
#include "store/store.h"
#include "store/ticket.h"

struct csa_pipeline;

/* The participants of a message just added to 'side' of tk ('msg', the
 * message as stored, borrowed): a person's sender_id (mapped to a roster
 * member when its platform id is one) joins I.participants.cs_team or
 * technical_team by the member's team, else by the sender kind
 * (cs_agent, technical_member); a cs_agent's reply on E also joins
 * E.participants.cs_agents. Ids longer than 128 bytes and lists already
 * 64 long are left as they are. A person writing on a ticket whose latest
 * progress is "assigned" moves it to "in_progress". */
void csa_lifecycle_note_message(const struct csa_config *cfg, struct csa_ticket *tk,
                                enum csa_side side, const json_t *msg, int64_t now_ms);

/* csa_lifecycle_note_message for every message of a ticket just built
 * (csa_ticket_build), external then internal. */
void csa_lifecycle_note_new(const struct csa_config *cfg, struct csa_ticket *tk, int64_t now_ms);

/* After a pipeline run, before its commit: the escalation agent's
 * assignment (its decision's "assignment", when not null) and the updates
 * agent's progress ("progress"); either decision may be NULL (its agent
 * did not run). */
void csa_lifecycle_after_run(const struct csa_config *cfg, struct csa_ticket *tk,
                             const json_t *escalation, const json_t *updates, int64_t now_ms);

/* A resolved ticket of imported history (flow/import.h), its
 * sla_metrics already set: participants from its messages, the
 * internal_efficiency of its resolution_time, a "resolved" progress update
 * by "import" at 'resolved_ms' (creation when unknown), its knowledge
 * extracted (never drafted: an import asks no LLM) and its outcome measured, as
 * csa_lifecycle_resolve leaves a live ticket. Returns CSA_ENOMEM or 0. */
int csa_lifecycle_imported(const struct csa_config *cfg, struct csa_ticket *tk, int64_t created_ms,
                           int64_t resolved_ms);

/* What a person's resolution says. */
struct csa_resolution {
	const char *ticket_id;
	double csat;       /* customer satisfaction 1..5, or < 0 when not known */
	const char *notes; /* how it was solved (may be NULL): kept as an internal
	                    * "resolution" message, so knowledge extraction reads it */
	const char *by;    /* who resolves it: a member id or platform id (recorded as
	                    * the member's id), else an id such as a token's */
};

/*
 * Close a ticket: T.resolved, workflow_stage "end", E conversation_status
 * "resolved"; T.sla_metrics.resolution_time (minutes since created_at),
 * customer_satisfaction (csat, null when not given) and internal_efficiency
 * = 1 / (1 + resolution_time / target), target being the SLA resolution
 * minutes of the ticket's priority and tier (1 would be instant, 0.5 is
 * exactly on target, under 0.5 over it); a "resolved" progress update; and
 * I.knowledge_extraction from the replies and notes (agents/knowledge.h
 * csa_knowledge_of: drafted by the replies LLM backend when one is
 * configured and its answer holds, else extractive; a drafting call is
 * made under the ticket's lock, bounded by the backend's timeout). One
 * commit, under the capacity lock when the ticket has a member.
 *
 * Errors: CSA_EINVAL (csat outside 1..5, notes too long or not text, 'by'
 * missing), CSA_ENOENT (no such ticket), CSA_ECONFLICT (already resolved);
 * the ticket is then unchanged. *result (new reference) is
 * {"ticket_id", "resolved", "sla_metrics", "knowledge_extraction",
 * "knowledge_source" (which method was used, and why: csa_knowledge_of's
 * *how), "progress_update"}.
 */
int csa_lifecycle_resolve(struct csa_pipeline *p, const struct csa_resolution *r, json_t **result,
                          struct csa_err *err);

/*
 * A person assigns (or reassigns) a ticket to a roster member ('member':
 * its id or one of its platform ids): T.assigned_member, I.participants
 * (the member's team list, assigned_resolver) and an "assigned" progress
 * update by 'by' with 'notes' (may be NULL). A person may assign over a
 * member's capacity; the result says so ("over_capacity"). Assigning the
 * member already assigned changes nothing ("changed": false).
 *
 * Errors: CSA_EINVAL (not a member, notes too long), CSA_ENOENT,
 * CSA_ECONFLICT (the ticket is resolved). *result is {"ticket_id",
 * "assigned_member", "previous", "changed", "load", "capacity",
 * "over_capacity"}.
 */
int csa_lifecycle_assign(struct csa_pipeline *p, const char *ticket_id, const char *member,
                         const char *by, const char *notes, json_t **result, struct csa_err *err);

/*
 * A person's progress update ('update' borrowed): {"status":
 * "assigned"|"in_progress"|"blocked", "notes", "blockers": [strings],
 * "estimated_completion": ISO 8601, "ai_recommendations" not allowed},
 * every field but status optional, by 'by'. A "blocked" update needs a
 * blocker; "resolved" is csa_lifecycle_resolve's. Appended to I
 * progress_updates as given (estimated_completion normalised to UTC
 * milliseconds, absent ones kept from the latest update).
 *
 * Errors: CSA_EINVAL naming the field (unknown field, wrong type or
 * value, more than 20 blockers or one over 500 bytes), CSA_ELIMIT (notes
 * over limits.max_message_bytes), CSA_ENOENT, CSA_ECONFLICT (resolved).
 * *result is the update as stored.
 */
int csa_lifecycle_progress(struct csa_pipeline *p, const char *ticket_id, const json_t *update,
                           const char *by, json_t **result, struct csa_err *err);

#endif
