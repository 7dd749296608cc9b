/*
 * The team roster of csa.json (team.members): who works tickets, on which
 * platforms they write, what they know and how many open tickets they can
 * carry. The escalation agent chooses a ticket's resolver here; the flow
 * maps a message's sender to a member through it.
 *
 * A member is {"id", "name", "team": "cs"|"technical", "platform_ids":
 * {platform: id}, "skills": [..], "capacity": n}; base/config.c validates
 * the roster when csa.json is loaded, so readers here trust its shape.
 * Every json_t returned as borrowed lives as long as the configuration
 * snapshot it was read from.
 */
#ifndef CSA_AGENTS_TEAM_H
#define CSA_AGENTS_TEAM_H

#include <jansson.h>
#include <stddef.h>
#include "base/config.h"

struct csa_history;

/* The member whose id is 'who', else the one whose platform_ids hold it;
 * borrowed, NULL when 'who' is NULL or names nobody. */
const json_t *csa_team_member(const struct csa_config *cfg, const char *who);

/* A member's capacity (team.default_capacity when it has none). */
long csa_team_capacity(const struct csa_config *cfg, const json_t *member);

/*
 * Choose a resolver for a ticket: among the members with room (open
 * tickets assigned to them, csa_history_open_assigned without 'ticket_id',
 * under their capacity), the one whose skills match most of 'expertise'
 * (a JSON array of strings, matched without case), then the one of
 * 'want_team' ("cs" or "technical"; NULL: either), then the least loaded
 * relative to capacity, then the first in the roster. A member matching no
 * skill is chosen only when nobody matches one.
 *
 * Returns a new {"member", "name", "team", "matched_skills", "load",
 * "capacity", "reason"}, or NULL when the roster is empty or every member
 * is at capacity (*why, optional, then says which).
 */
json_t *csa_team_choose(const struct csa_config *cfg, struct csa_history *h,
                        const json_t *expertise, const char *want_team, const char *ticket_id,
                        const char **why);

#endif
