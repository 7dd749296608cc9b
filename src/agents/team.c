/* The team roster: members by id or platform id, and resolver choice. */
#include "agents/team.h"
#include "agents/history.h"
#include "base/json.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

const json_t *csa_team_member(const struct csa_config *cfg, const char *who)
{
	if (!who || !*who)
		return NULL;
	json_t *members = csa_config_get(cfg, "team.members");
	size_t i;
	json_t *m;
	json_array_foreach(members, i, m)
	{
		const char *id = csa_json_str(m, "id");
		if (id && strcmp(id, who) == 0)
			return m;
	}
	json_array_foreach(members, i, m)
	{
		const char *key;
		json_t *v;
		json_object_foreach(json_object_get(m, "platform_ids"), key, v)
		{
			if (json_is_string(v) && strcmp(json_string_value(v), who) == 0)
				return m;
		}
	}
	return NULL;
}

long csa_team_capacity(const struct csa_config *cfg, const json_t *member)
{
	json_t *cap = json_object_get(member, "capacity");
	if (json_is_integer(cap))
		return (long)json_integer_value(cap);
	return (long)csa_json_int(csa_config_get(cfg, "team"), "default_capacity", 10);
}

/* The skills of 'member' that 'expertise' asks for, as a new array. */
static json_t *matched_skills(const json_t *member, const json_t *expertise)
{
	json_t *out = json_array();
	size_t i, k;
	json_t *s, *x;
	json_array_foreach(json_object_get(member, "skills"), i, s)
	{
		json_array_foreach(expertise, k, x)
		{
			if (json_is_string(x) &&
			    strcasecmp(json_string_value(s), json_string_value(x)) == 0) {
				json_array_append(out, s);
				break;
			}
		}
	}
	return out;
}

json_t *csa_team_choose(const struct csa_config *cfg, struct csa_history *h,
                        const json_t *expertise, const char *want_team, const char *ticket_id,
                        const char **why)
{
	json_t *members = csa_config_get(cfg, "team.members");
	if (why)
		*why = json_array_size(members) ? "every team member is at capacity"
		                                : "the roster (csa.json team.members) is empty";
	const json_t *best = NULL;
	json_t *best_skills = NULL;
	size_t best_load = 0;
	long best_cap = 1;
	int best_team = 0;
	size_t i;
	json_t *m;
	json_array_foreach(members, i, m)
	{
		const char *id = csa_json_str(m, "id");
		long cap = csa_team_capacity(cfg, m);
		size_t load = h ? csa_history_open_assigned(h, id, ticket_id) : 0;
		if ((long)load >= cap)
			continue;
		json_t *skills = matched_skills(m, expertise);
		const char *team = csa_json_str(m, "team");
		int team_ok = want_team && team && strcmp(team, want_team) == 0;
		int better = !best;
		if (best) {
			size_t a = json_array_size(skills), b = json_array_size(best_skills);
			/* load / cap < best_load / best_cap, without division */
			double mine = (double)load * (double)best_cap,
			       theirs = (double)best_load * (double)cap;
			better = a != b                 ? a > b
			         : team_ok != best_team ? team_ok > best_team
			                                : mine < theirs;
		}
		if (better) {
			json_decref(best_skills);
			best = m;
			best_skills = skills;
			best_load = load;
			best_cap = cap;
			best_team = team_ok;
		} else {
			json_decref(skills);
		}
	}
	if (!best)
		return NULL;
	char reason[256];
	size_t nm = json_array_size(best_skills);
	snprintf(reason, sizeof(reason), "%zu matching skill%s, %s team, %zu of %ld open tickets",
	         nm, nm == 1 ? "" : "s", csa_json_str(best, "team"), best_load, best_cap);
	return json_pack("{s:s, s:s?, s:s, s:o, s:I, s:I, s:s}", "member", csa_json_str(best, "id"),
	                 "name", csa_json_str(best, "name"), "team", csa_json_str(best, "team"),
	                 "matched_skills", best_skills, "load", (json_int_t)best_load, "capacity",
	                 (json_int_t)best_cap, "reason", reason);
}
