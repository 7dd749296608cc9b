/*
 * The ticket's life through the API (flow/lifecycle.h): a person resolves
 * a ticket (POST /api/tickets/{id}/resolve), assigns it to a member of
 * the team (POST /api/tickets/{id}/assign) or says where it stands (POST
 * /api/tickets/{id}/progress).
 */
#include "server/server_internal.h"
#include "base/json.h"
#include "flow/lifecycle.h"

#include <string.h>

/* A request body: absent, or an object with only the keys in 'allowed'
 * (NULL-ended), each a string or null except "csat" (checked by its
 * handler). NULL when it is one, else the 400 answer naming the field. */
static json_t *check_body(struct call *c, const char *const *allowed, const char *shape)
{
	if (c->body && !json_is_object(c->body))
		return csa_fail(c, 400, "bad_request", "body must be %s", shape);
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)c->body, key, v)
	{
		size_t k = 0;
		while (allowed[k] && strcmp(allowed[k], key))
			k++;
		if (!allowed[k])
			return csa_fail(c, 400, "bad_request",
			                "unknown field '%.60s': body must be %s", key, shape);
		if (strcmp(key, "csat") && !json_is_string(v) && !json_is_null(v))
			return csa_fail(c, 400, "bad_request", "field '%s' must be a string", key);
	}
	return NULL;
}

/* Who acts: the body's "by" (a member id or platform id), else the
 * token's id. */
static const char *actor(struct call *c)
{
	const char *by = csa_json_str(c->body, "by");
	return by ? by : c->who;
}

json_t *csa_h_ticket_resolve(struct call *c)
{
	static const char *const keys[] = {"csat", "notes", "by", NULL};
	static const char shape[] = "{\"csat\": 1..5, \"notes\": \"...\", \"by\": \"member\"} "
	                            "(every field optional)";
	json_t *bad = check_body(c, keys, shape);
	if (bad)
		return bad;
	json_t *csat = json_object_get(c->body, "csat");
	if (csat && !json_is_null(csat) &&
	    (!json_is_number(csat) || json_number_value(csat) < 1 || json_number_value(csat) > 5))
		return csa_fail(c, 400, "bad_request",
		                "field 'csat' must be a number from 1 to 5 (the customer's "
		                "satisfaction)");
	struct csa_resolution r = {
	    .ticket_id = c->params[0],
	    .csat = json_is_number(csat) ? json_number_value(csat) : -1,
	    .notes = csa_json_str(c->body, "notes"),
	    .by = actor(c),
	};
	struct csa_err err = {0};
	json_t *res = NULL;
	if (csa_lifecycle_resolve(c->s->pipe, &r, &res, &err))
		return csa_fail_err(c, &err);
	return res;
}

json_t *csa_h_ticket_assign(struct call *c)
{
	static const char *const keys[] = {"member", "notes", "by", NULL};
	static const char shape[] = "{\"member\": \"id\", \"notes\": \"...\", \"by\": \"member\"}";
	json_t *bad = check_body(c, keys, shape);
	if (bad)
		return bad;
	const char *member = csa_json_str(c->body, "member");
	if (!member)
		return csa_fail(c, 400, "bad_request",
		                "field 'member' is required: a member id of csa.json team.members");
	struct csa_err err = {0};
	json_t *res = NULL;
	if (csa_lifecycle_assign(c->s->pipe, c->params[0], member, actor(c),
	                         csa_json_str(c->body, "notes"), &res, &err))
		return csa_fail_err(c, &err);
	return res;
}

json_t *csa_h_ticket_progress(struct call *c)
{
	if (!json_is_object(c->body))
		return csa_fail(c, 400, "bad_request",
		                "body must be {\"status\": \"assigned|in_progress|blocked\", "
		                "\"notes\", \"blockers\", \"estimated_completion\", \"by\"}");
	const char *by = actor(c);
	json_t *update = json_deep_copy(c->body);
	if (!update)
		return csa_fail(c, 500, "internal", "out of memory updating '%s'", c->params[0]);
	json_t *byv = json_object_get(update, "by");
	if (byv && !json_is_string(byv)) {
		json_decref(update);
		return csa_fail(c, 400, "bad_request", "field 'by' must be a string");
	}
	json_object_del(update, "by");
	struct csa_err err = {0};
	json_t *res = NULL;
	int rc = csa_lifecycle_progress(c->s->pipe, c->params[0], update, by, &res, &err);
	json_decref(update);
	if (rc)
		return csa_fail_err(c, &err);
	c->status = 201;
	return res;
}
