/* A ticket's life around the agents' runs: participants, progress
 * updates, assignment and resolution. */
#include "flow/lifecycle.h"
#include "agents/capacity.h"
#include "agents/history.h"
#include "agents/knowledge.h"
#include "agents/team.h"
#include "base/ids.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/learning.h"
#include "flow/pipeline.h"
#include "sla/sla.h"
#include "store/ws.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define PARTICIPANT_ID_MAX 128
#define PARTICIPANTS_MAX   64

/* Append 'id' to the string array 'list' unless it is there, too long or
 * the list is full. */
static void add_participant(json_t *list, const char *id)
{
	if (!json_is_array(list) || !id || !*id || strlen(id) > PARTICIPANT_ID_MAX ||
	    json_array_size(list) >= PARTICIPANTS_MAX)
		return;
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v) if (json_is_string(v) &&
	                                   strcmp(json_string_value(v), id) == 0) return;
	json_array_append_new(list, json_string(id));
}

/* The I.participants list of a roster member ('member' may be NULL: then
 * by the sender kind; NULL for the AI). */
static json_t *team_list(json_t *i_doc, const json_t *member, const char *sender)
{
	json_t *p = json_object_get(i_doc, "participants");
	const char *team = csa_json_str(member, "team");
	if (team)
		return json_object_get(p, strcmp(team, "technical") == 0 ? "technical_team"
		                                                         : "cs_team");
	if (sender && strcmp(sender, "technical_member") == 0)
		return json_object_get(p, "technical_team");
	if (sender && strcmp(sender, "cs_agent") == 0)
		return json_object_get(p, "cs_team");
	return NULL;
}

/* Who acts, as recorded: the roster member 'by' names (by id or platform
 * id), else 'by' itself when it is an id; NULL when it is neither. */
static const char *actor_id(const struct csa_config *cfg, const char *by)
{
	const json_t *member = csa_team_member(cfg, by);
	if (member)
		return csa_json_str(member, "id");
	return by && csa_id_valid(by) ? by : NULL;
}

/* The latest progress update, or NULL. */
static json_t *last_progress(const struct csa_ticket *tk)
{
	json_t *pu = json_object_get(tk->i, "progress_updates");
	size_t n = json_array_size(pu);
	return n ? json_array_get(pu, n - 1) : NULL;
}

/* Append a progress update (the schema of spec §3.2.2); 'blockers' and
 * 'recs' are taken over (NULL: empty). */
static json_t *add_progress(struct csa_ticket *tk, int64_t now_ms, const char *updater,
                            const char *status, const char *notes, const char *eta,
                            json_t *blockers, json_t *recs)
{
	char ts[CSA_TS_LEN];
	json_t *u = json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:o, s:o}", "timestamp",
	                      csa_ts_format(now_ms, ts), "updater", updater, "status", status,
	                      "notes", notes, "estimated_completion", eta, "blockers",
	                      blockers ? blockers : json_array(), "ai_recommendations",
	                      recs ? recs : json_array());
	if (u)
		json_array_append_new(json_object_get(tk->i, "progress_updates"), u);
	return u;
}

void csa_lifecycle_note_message(const struct csa_config *cfg, struct csa_ticket *tk,
                                enum csa_side side, const json_t *msg, int64_t now_ms)
{
	const char *sender = csa_json_str(msg, "sender"), *sid = csa_json_str(msg, "sender_id");
	if (!sender || strcmp(sender, "customer") == 0 || strcmp(sender, "ai_agent") == 0 || !sid)
		return;
	const json_t *member = csa_team_member(cfg, sid);
	const char *id = member ? csa_json_str(member, "id") : sid;
	add_participant(team_list(tk->i, member, sender), id);
	if (side == CSA_SIDE_EXTERNAL)
		add_participant(
		    json_object_get(json_object_get(tk->e, "participants"), "cs_agents"), id);
	json_t *last = last_progress(tk);
	if (last && strcmp(csa_json_str(last, "status"), "assigned") == 0 &&
	    !json_is_true(json_object_get(tk->t, "resolved")) && strlen(id) <= PARTICIPANT_ID_MAX) {
		char notes[200];
		snprintf(notes, sizeof(notes), "%s wrote on the %s side", id,
		         side == CSA_SIDE_EXTERNAL ? "customer's" : "team's");
		add_progress(tk, now_ms, id, "in_progress", notes,
		             csa_json_str(last, "estimated_completion"), NULL, NULL);
	}
}

void csa_lifecycle_note_new(const struct csa_config *cfg, struct csa_ticket *tk, int64_t now_ms)
{
	for (int side = CSA_SIDE_EXTERNAL; side <= CSA_SIDE_INTERNAL; side++) {
		size_t k;
		json_t *m;
		json_array_foreach(
		    json_object_get(side == CSA_SIDE_EXTERNAL ? tk->e : tk->i, "messages"), k, m)
		    csa_lifecycle_note_message(cfg, tk, (enum csa_side)side, m, now_ms);
	}
}

/* Make 'member' (a roster entry) the ticket's resolver. */
static void set_assignee(struct csa_ticket *tk, const json_t *member)
{
	const char *id = csa_json_str(member, "id");
	json_object_set_new(tk->t, "assigned_member", json_string(id));
	json_t *p = json_object_get(tk->i, "participants");
	json_object_set_new(p, "assigned_resolver", json_string(id));
	add_participant(team_list(tk->i, member, NULL), id);
}

void csa_lifecycle_after_run(const struct csa_config *cfg, struct csa_ticket *tk,
                             const json_t *escalation, const json_t *updates, int64_t now_ms)
{
	json_t *progress = json_object_get(updates, "progress");
	const char *eta = csa_json_str(progress, "estimated_completion");
	json_t *choice = json_object_get(escalation, "assignment");
	const json_t *member = csa_team_member(cfg, csa_json_str(choice, "member"));
	if (member) {
		const char *before = csa_json_str(tk->t, "assigned_member");
		char notes[400];
		snprintf(notes, sizeof(notes), "%s%s%s to %s: %s",
		         before ? "handed over from " : "", before ? before : "",
		         before ? "" : "assigned", csa_json_str(member, "id"),
		         csa_json_str(choice, "reason") ? csa_json_str(choice, "reason") : "");
		set_assignee(tk, member);
		add_progress(tk, now_ms, "escalation", "assigned", notes, eta, NULL, NULL);
	} else if (csa_json_str(tk->t, "assigned_member")) {
		/* an escalation applied over a member keeps the member as resolver */
		json_object_set(json_object_get(tk->i, "participants"), "assigned_resolver",
		                json_object_get(tk->t, "assigned_member"));
	}
	const char *status = csa_json_str(progress, "status");
	if (!status || json_is_true(json_object_get(tk->t, "resolved")))
		return;
	if (member && strcmp(status, "assigned") == 0)
		return; /* written just above */
	json_t *blockers = json_object_get(progress, "blockers");
	json_t *last = last_progress(tk);
	if (last && strcmp(csa_json_str(last, "status"), status) == 0 &&
	    json_equal(json_object_get(last, "blockers"), blockers))
		return; /* no change of state */
	const char *notes = strcmp(status, "blocked") == 0    ? "waiting: see blockers"
	                    : strcmp(status, "assigned") == 0 ? "resolver assigned"
	                                                      : "being handled";
	add_progress(tk, now_ms, "updates", status, notes, eta, json_deep_copy(blockers),
	             json_deep_copy(json_object_get(progress, "ai_recommendations")));
}

/* ---- resolution ---------------------------------------------------------- */

/* Commit tk's documents while holding the capacity lock, and release it
 * (csa_pipeline_capacity_release): the load every process counts changes
 * with the commit, never before or after it. */
static int commit_counted(struct csa_pipeline *p, struct csa_ticket *tk, struct csa_err *err)
{
	int rc = csa_store_commit(csa_pipeline_ws(p)->store, tk, CSA_DOC_ALL, err);
	csa_pipeline_capacity_release(p, tk, rc == CSA_OK);
	return rc;
}

struct resolve_ctx {
	struct csa_pipeline *p;
	const struct csa_config *cfg;
	const struct csa_resolution *r;
	json_t *result;
	struct csa_hist_entry entry;
};

/* 1 / (1 + minutes / target): see lifecycle.h. */
static double efficiency(double minutes, long target)
{
	if (target <= 0)
		return minutes <= 0 ? 1.0 : 0.0;
	return 1.0 / (1.0 + minutes / (double)target);
}

static int resolve_fn(void *vctx, struct csa_ticket *tk, unsigned *docs, struct csa_err *err)
{
	struct resolve_ctx *c = vctx;
	const struct csa_resolution *r = c->r;
	if (json_is_true(json_object_get(tk->t, "resolved")))
		return csa_error(err, CSA_ECONFLICT, "ticket '%s' is already resolved", tk->id);
	int64_t now = csa_now_ms(), created = now;
	json_t *sla = json_object_get(tk->t, "sla_metrics");
	if (csa_ts_parse(csa_json_str(sla, "created_at"), &created) &&
	    csa_ts_parse(csa_json_str(tk->t, "card_create_timestamp"), &created))
		created = now;
	const json_t *member = csa_team_member(c->cfg, r->by);
	const char *by = actor_id(c->cfg, r->by);
	if (r->notes && *r->notes) {
		const char *team = csa_json_str(member, "team");
		json_t *m = json_pack("{s:s, s:s, s:s, s:s}", "content", r->notes, "sender",
		                      team && strcmp(team, "technical") == 0 ? "technical_member"
		                                                             : "cs_agent",
		                      "sender_id", by, "message_type", "resolution");
		int rc = csa_ticket_add_message(c->cfg, tk, CSA_SIDE_INTERNAL, m, now, NULL, err);
		json_decref(m);
		if (rc) {
			csa_error_prefix(err, "resolution notes of '%s': ", tk->id);
			return rc;
		}
		json_t *msgs = json_object_get(tk->i, "messages");
		csa_lifecycle_note_message(c->cfg, tk, CSA_SIDE_INTERNAL,
		                           json_array_get(msgs, json_array_size(msgs) - 1), now);
	}
	double minutes = (double)(now > created ? now - created : 0) / 60000.0;
	json_t *cust = json_object_get(json_object_get(tk->e, "participants"), "customer");
	long target = csa_sla_minutes(c->cfg, "resolution_minutes", csa_json_str(tk->t, "priority"),
	                              csa_json_str(cust, "subscription_tier"));
	json_object_set_new(sla, "resolution_time", json_real(minutes));
	json_object_set_new(sla, "customer_satisfaction",
	                    r->csat >= 1 ? json_real(r->csat) : json_null());
	json_object_set_new(sla, "internal_efficiency", json_real(efficiency(minutes, target)));
	json_object_set_new(tk->t, "resolved", json_true());
	json_object_set_new(tk->t, "workflow_stage", json_string("end"));
	int escalated = json_array_size(json_object_get(json_object_get(tk->i, "participants"),
	                                                "escalation_path")) > 0;
	json_object_set_new(tk->e, "conversation_status", json_string("resolved"));
	csa_learning_outcome(tk, escalated, now);

	/* a drafting call waits under the ticket's lock, as the agents'
	 * calls in a run do, bounded by the backend's timeout and retries */
	json_t *how = NULL;
	json_t *know = csa_knowledge_of(csa_pipeline_env(c->p)->cascade, tk->e, tk->i, &how);
	if (!know) {
		json_decref(how);
		return csa_error(err, CSA_ENOMEM, "out of memory extracting knowledge of '%s'",
		                 tk->id);
	}
	json_object_set_new(tk->i, "knowledge_extraction", know);
	json_t *recs = json_array();
	if (!json_array_size(json_object_get(know, "solution_patterns")))
		json_array_append_new(
		    recs, json_string("no sentence of the replies or notes says what solved it: "
		                      "add resolution notes so the next ticket can use them"));
	char ts[CSA_TS_LEN];
	json_t *u = add_progress(tk, now, by, "resolved", r->notes && *r->notes ? r->notes : NULL,
	                         csa_ts_format(now, ts), NULL, recs);
	c->result = json_pack("{s:s, s:b, s:O, s:O, s:o, s:O}", "ticket_id", tk->id, "resolved", 1,
	                      "sla_metrics", sla, "knowledge_extraction", know, "knowledge_source",
	                      how, "progress_update", u);
	if (!c->result)
		return csa_error(err, CSA_ENOMEM, "out of memory resolving '%s'", tk->id);
	csa_history_entry_from(tk, &c->entry);
	if (!csa_json_str(tk->t, "assigned_member")) {
		*docs = CSA_DOC_ALL;
		return CSA_OK;
	}
	/* a member's slot frees: every process is to count it so */
	*docs = 0;
	int rc = csa_capacity_lock(csa_pipeline_capacity(c->p), err);
	if (rc) {
		csa_error_prefix(err, "resolve '%s': ", tk->id);
		return rc;
	}
	return commit_counted(c->p, tk, err);
}

int csa_lifecycle_imported(const struct csa_config *cfg, struct csa_ticket *tk, int64_t created_ms,
                           int64_t resolved_ms)
{
	csa_lifecycle_note_new(cfg, tk, created_ms);
	json_t *sla = json_object_get(tk->t, "sla_metrics");
	json_t *rt = json_object_get(sla, "resolution_time");
	if (json_is_number(rt)) {
		json_t *cust = json_object_get(json_object_get(tk->e, "participants"), "customer");
		long target =
		    csa_sla_minutes(cfg, "resolution_minutes", csa_json_str(tk->t, "priority"),
		                    csa_json_str(cust, "subscription_tier"));
		json_object_set_new(sla, "internal_efficiency",
		                    json_real(efficiency(json_number_value(rt), target)));
	}
	json_t *know = csa_knowledge_extract(tk->e, tk->i);
	if (!know)
		return CSA_ENOMEM;
	json_object_set_new(tk->i, "knowledge_extraction", know);
	char ts[CSA_TS_LEN];
	if (resolved_ms < created_ms)
		resolved_ms = created_ms;
	add_progress(tk, resolved_ms, "import", "resolved", "resolved before the import",
	             csa_ts_format(resolved_ms, ts), NULL, NULL);
	int escalated = json_array_size(json_object_get(json_object_get(tk->i, "participants"),
	                                                "escalation_path")) > 0;
	csa_learning_outcome(tk, escalated, resolved_ms);
	return CSA_OK;
}

int csa_lifecycle_resolve(struct csa_pipeline *p, const struct csa_resolution *r, json_t **result,
                          struct csa_err *err)
{

	if (!isfinite(r->csat) || (r->csat >= 0 && (r->csat < 1 || r->csat > 5)))
		return csa_error(err, CSA_EINVAL,
		                 "resolve: csat must be a number from 1 to 5 (the customer's "
		                 "satisfaction)");
	struct csa_ws *ws = csa_pipeline_ws(p);
	struct resolve_ctx c = {.p = p, .cfg = csa_ws_config(ws), .r = r};
	int rc = actor_id(c.cfg, r->by)
	             ? csa_store_update(ws->store, r->ticket_id, 0, resolve_fn, &c, err)
	             : csa_error(err, CSA_EINVAL,
	                         "resolve: who resolves the ticket must be a team member's id or "
	                         "platform id, or 1-64 of [A-Za-z0-9_-]");
	csa_config_unref(c.cfg);
	if (rc) {
		json_decref(c.result);
		return rc;
	}
	csa_history_put(csa_pipeline_history(p), &c.entry);
	*result = c.result;
	return CSA_OK;
}

/* ---- assignment ---------------------------------------------------------- */

struct assign_ctx {
	struct csa_pipeline *p;
	const struct csa_config *cfg;
	const json_t *member;
	const char *by, *notes;
	json_t *result;
	int changed;
};

static int assign_locked(struct assign_ctx *c, struct csa_ticket *tk, struct csa_err *err);

/* The member's load is read and the assignment committed under the
 * capacity lock: of many assignments at once, only as many as the member
 * has room for are within capacity. */
static int assign_fn(void *vctx, struct csa_ticket *tk, unsigned *docs, struct csa_err *err)
{
	struct assign_ctx *c = vctx;
	*docs = 0; /* committed here, under the lock */
	if (json_is_true(json_object_get(tk->t, "resolved")))
		return csa_error(err, CSA_ECONFLICT, "ticket '%s' is resolved: nothing to assign",
		                 tk->id);
	int rc = csa_capacity_lock(csa_pipeline_capacity(c->p), err);
	if (rc) {
		csa_error_prefix(err, "assign '%s': ", tk->id);
		return rc;
	}
	if ((rc = assign_locked(c, tk, err)) || !c->changed) {
		csa_pipeline_capacity_release(c->p, tk, 0);
		return rc;
	}
	return commit_counted(c->p, tk, err);
}

static int assign_locked(struct assign_ctx *c, struct csa_ticket *tk, struct csa_err *err)
{
	const char *id = csa_json_str(c->member, "id");
	const char *before = csa_json_str(tk->t, "assigned_member");
	size_t load = csa_history_open_assigned(csa_pipeline_history(c->p), id, tk->id);
	long cap = csa_team_capacity(c->cfg, c->member);
	c->changed = !before || strcmp(before, id) != 0;
	c->result = json_pack("{s:s, s:s, s:s?, s:b, s:I, s:I, s:b}", "ticket_id", tk->id,
	                      "assigned_member", id, "previous", before, "changed", c->changed,
	                      "load", (json_int_t)load, "capacity", (json_int_t)cap,
	                      "over_capacity", (long)load >= cap);
	if (!c->result)
		return csa_error(err, CSA_ENOMEM, "out of memory assigning '%s'", tk->id);
	if (!c->changed)
		return CSA_OK;
	char notes[1200];
	snprintf(notes, sizeof(notes), "%s%s%s to %s by %s%s%.1000s",
	         before ? "reassigned from " : "", before ? before : "", before ? "" : "assigned",
	         id, c->by, c->notes && *c->notes ? ": " : "", c->notes ? c->notes : "");
	json_t *last = last_progress(tk);
	set_assignee(tk, c->member);
	add_progress(tk, csa_now_ms(), c->by, "assigned", notes,
	             csa_json_str(last, "estimated_completion"), NULL, NULL);
	return CSA_OK;
}

int csa_lifecycle_assign(struct csa_pipeline *p, const char *ticket_id, const char *member,
                         const char *by, const char *notes, json_t **result, struct csa_err *err)
{
	struct csa_ws *ws = csa_pipeline_ws(p);
	struct assign_ctx c = {.p = p, .cfg = csa_ws_config(ws), .by = by, .notes = notes};
	int rc = CSA_OK;
	if (notes && strlen(notes) > c.cfg->limits.max_message_bytes)
		rc = csa_error(err, CSA_ELIMIT, "assign: notes of %zu bytes, limit is %zu",
		               strlen(notes), c.cfg->limits.max_message_bytes);
	else if (!(c.by = actor_id(c.cfg, by)))
		rc = csa_error(err, CSA_EINVAL,
		               "assign: who assigns the ticket must be a team member's id or "
		               "platform id, or 1-64 of [A-Za-z0-9_-]");
	else if (!(c.member = csa_team_member(c.cfg, member)))
		rc = csa_error(err, CSA_EINVAL,
		               "assign: '%.80s' is no member of the team (csa.json team.members)",
		               member ? member : "");
	else
		rc = csa_store_update(ws->store, ticket_id, 0, assign_fn, &c, err);
	csa_config_unref(c.cfg);
	if (rc) {
		json_decref(c.result);
		return rc;
	}
	*result = c.result;
	return CSA_OK;
}

/* ---- a person's progress update ------------------------------------------ */

#define PERSON_BLOCKERS    20
#define PERSON_BLOCKER_MAX 500

struct progress_ctx {
	const struct csa_config *cfg;
	const json_t *update;
	const char *by;
	json_t *result;
};

/* The update checked: 0, or CSA_EINVAL / CSA_ELIMIT naming the field. */
static int check_update(const struct csa_config *cfg, const json_t *u, int64_t *eta,
                        struct csa_err *err)
{
	static const char *const keys[] = {"status", "notes", "blockers", "estimated_completion",
	                                   NULL};
	if (!json_is_object(u))
		return csa_error(err, CSA_EINVAL, "progress: expected an object");
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)u, key, v)
	{
		size_t k = 0;
		while (keys[k] && strcmp(keys[k], key))
			k++;
		if (!keys[k])
			return csa_error(err, CSA_EINVAL, "progress: unknown field '%.60s'", key);
	}
	const char *st = csa_json_str(u, "status");
	if (!st || (strcmp(st, "assigned") && strcmp(st, "in_progress") && strcmp(st, "blocked")))
		return csa_error(
		    err, CSA_EINVAL,
		    "progress: field 'status' must be assigned, in_progress or blocked "
		    "(resolve a ticket with its resolve request)");
	json_t *notes = json_object_get(u, "notes");
	if (notes && !json_is_null(notes) && !json_is_string(notes))
		return csa_error(err, CSA_EINVAL, "progress: field 'notes' must be a string");
	if (json_is_string(notes) && json_string_length(notes) > cfg->limits.max_message_bytes)
		return csa_error(err, CSA_ELIMIT, "progress: notes of %zu bytes, limit is %zu",
		                 json_string_length(notes), cfg->limits.max_message_bytes);
	json_t *bl = json_object_get(u, "blockers");
	if (bl && !json_is_array(bl))
		return csa_error(err, CSA_EINVAL, "progress: field 'blockers' must be an array");
	if (json_array_size(bl) > PERSON_BLOCKERS)
		return csa_error(err, CSA_EINVAL, "progress: %zu blockers, at most %d",
		                 json_array_size(bl), PERSON_BLOCKERS);
	size_t i;
	json_array_foreach(bl, i, v)
	{
		if (!json_is_string(v) || !json_string_length(v) ||
		    json_string_length(v) > PERSON_BLOCKER_MAX)
			return csa_error(
			    err, CSA_EINVAL,
			    "progress: blockers[%zu] must be a string of 1 to %d bytes", i,
			    PERSON_BLOCKER_MAX);
	}
	if (strcmp(st, "blocked") == 0 && !json_array_size(bl))
		return csa_error(err, CSA_EINVAL,
		                 "progress: a blocked update names what blocks it in 'blockers'");
	json_t *e = json_object_get(u, "estimated_completion");
	*eta = -1;
	if (e && !json_is_null(e) &&
	    (!json_is_string(e) || csa_ts_parse(json_string_value(e), eta)))
		return csa_error(err, CSA_EINVAL,
		                 "progress: field 'estimated_completion' must be an ISO 8601 time");
	return CSA_OK;
}

static int progress_fn(void *vctx, struct csa_ticket *tk, unsigned *docs, struct csa_err *err)
{
	struct progress_ctx *c = vctx;
	if (json_is_true(json_object_get(tk->t, "resolved")))
		return csa_error(err, CSA_ECONFLICT, "ticket '%s' is resolved", tk->id);
	int64_t eta;
	int rc = check_update(c->cfg, c->update, &eta, err);
	if (rc)
		return rc;
	char ts[CSA_TS_LEN];
	const char *eta_s = eta >= 0 ? csa_ts_format(eta, ts)
	                             : csa_json_str(last_progress(tk), "estimated_completion");
	json_t *bl = json_object_get(c->update, "blockers");
	json_t *u = add_progress(tk, csa_now_ms(), c->by, csa_json_str(c->update, "status"),
	                         csa_json_str(c->update, "notes"), eta_s,
	                         bl ? json_deep_copy(bl) : NULL, NULL);
	if (!u)
		return csa_error(err, CSA_ENOMEM, "out of memory updating '%s'", tk->id);
	c->result = json_incref(u);
	*docs = CSA_DOC_I;
	return CSA_OK;
}

int csa_lifecycle_progress(struct csa_pipeline *p, const char *ticket_id, const json_t *update,
                           const char *by, json_t **result, struct csa_err *err)
{
	struct csa_ws *ws = csa_pipeline_ws(p);
	struct progress_ctx c = {.cfg = csa_ws_config(ws), .update = update};
	int rc = (c.by = actor_id(c.cfg, by))
	             ? csa_store_update(ws->store, ticket_id, 0, progress_fn, &c, err)
	             : csa_error(err, CSA_EINVAL,
	                         "progress: who updates the ticket must be a team member's id or "
	                         "platform id, or 1-64 of [A-Za-z0-9_-]");
	csa_config_unref(c.cfg);
	if (rc) {
		json_decref(c.result);
		return rc;
	}
	*result = c.result;
	return CSA_OK;
}
