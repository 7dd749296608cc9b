/*
 * The ticket resources of the API: create, list, read (from a cache of
 * rendered tickets), add messages, and the outbound deliveries of a
 * ticket.
 */
#include "server/server_internal.h"
#include "base/hash.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/pipeline.h"
#include "base/ids.h"
#include "outbound/outbox.h"
#include "search/search.h"
#include "server/replies.h"
#include "sla/sla.h"
#include "store/schema.h"
#include "store/store.h"
#include "store/ticket.h"
#include "store/ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *csa_h_ticket_create(struct call *c)
{
	if (!json_is_object(c->body))
		return csa_fail(c, 400, "bad_request",
		                "body must be the ticket document (a JSON object)");
	if (json_object_get(c->body, "message"))
		return csa_fail(c, 400, "bad_request",
		                "field 'message': use POST /api/tickets/{id}/messages");
	struct csa_err err = {0};
	json_t *res = NULL;
	if (csa_pipeline_ingest(c->s->pipe, c->body, &res, &err))
		return csa_fail_err(c, &err);
	c->status = 201;
	return res;
}

static struct csa_rc_slot *rc_slot_of(struct csa_server *s, const char *id)
{
	return &s->rcache[csa_fnv1a_str(CSA_FNV_SEED, id) % CSA_RCACHE_SLOTS];
}

/* A copy of the cached rendering of 'id' at 'version' into c->raw; 1 when
 * there was one. */
static int rc_lookup(struct call *c, const char *id, uint64_t version)
{
	struct csa_rc_slot *slot = rc_slot_of(c->s, id);
	pthread_mutex_lock(&c->s->rc_mu);
	if (slot->version == version && strcmp(slot->id, id) == 0 &&
	    (c->raw = malloc(slot->len ? slot->len : 1))) {
		memcpy(c->raw, slot->body, slot->len);
		c->raw_len = slot->len;
	}
	pthread_mutex_unlock(&c->s->rc_mu);
	return c->raw != NULL;
}

/* Keep a copy of a rendering; without memory for it, nothing is kept. */
static void rc_store(struct csa_server *s, const char *id, uint64_t version, const char *body,
                     size_t len)
{
	char *copy = malloc(len + 1);
	if (!copy)
		return;
	memcpy(copy, body, len + 1);
	struct csa_rc_slot *slot = rc_slot_of(s, id);
	pthread_mutex_lock(&s->rc_mu);
	free(slot->body);
	snprintf(slot->id, sizeof(slot->id), "%s", id);
	slot->version = version;
	slot->body = copy;
	slot->len = len;
	pthread_mutex_unlock(&s->rc_mu);
}

void csa_rcache_release(struct csa_server *s)
{
	for (size_t i = 0; i < CSA_RCACHE_SLOTS; i++)
		free(s->rcache[i].body);
}

/* A ticket is read far more often than written (dashboards, agents): its
 * rendering is kept while the store's version of the ticket is unchanged
 * and settled (csa_store_version). */
json_t *csa_h_ticket_get(struct call *c)
{
	struct csa_server *s = c->s;
	const char *id = c->params[0];
	int settled = 0;
	uint64_t version = csa_store_version(s->ws->store, id, &settled);
	if (version && settled && rc_lookup(c, id, version))
		return NULL;
	struct csa_err err = {0};
	struct csa_ticket tk;
	if (csa_store_load(s->ws->store, id, &tk, &err))
		return csa_fail_err(c, &err);
	json_t *out = csa_ticket_state_json(&tk, 1);
	csa_ticket_release(&tk);
	if (!out)
		return csa_fail(c, 500, "internal", "out of memory rendering ticket '%s'", id);
	if (!version || !settled)
		return out;
	char *body = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (!body)
		return out;
	json_decref(out);
	c->raw = body;
	c->raw_len = strlen(body);
	rc_store(s, id, version, body, c->raw_len);
	return NULL;
}

/* A yes/no query argument: 1, 0, or -1 when absent; -2 when it is
 * neither. */
static int query_bool(struct call *c, const char *name)
{
	const char *v = csa_query(c, name);
	if (!v)
		return -1;
	if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
		return 1;
	if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
		return 0;
	return -2;
}

/* The inbox: one page of the tickets matching the filters, from the
 * search index (search/search.h), in the order asked for, with the cursor
 * of the next page. Only enumerated values are checked here; q is words
 * the index treats as plain text, whatever they hold. */
json_t *csa_h_ticket_list(struct call *c)
{
	if (csa_query(c, "offset"))
		return csa_fail(c, 400, "bad_request",
		                "offset is superseded by cursor: pass the next_cursor of the "
		                "previous page");
	struct csa_search_filter f = {.q = csa_query(c, "q"),
	                              .status = csa_query(c, "status"),
	                              .priority = csa_query(c, "priority"),
	                              .stage = csa_query(c, "stage"),
	                              .category = csa_query(c, "category"),
	                              .assigned = csa_query(c, "assigned"),
	                              .customer = csa_query(c, "customer"),
	                              .sla = -1,
	                              .review = query_bool(c, "review"),
	                              .autonomous = query_bool(c, "autonomous"),
	                              .now_ms = csa_now_ms()};
	if (f.status && !csa_enum_has(csa_enum_conv_status, f.status))
		return csa_fail(c, 400, "bad_request", "status must be one of %s",
		                csa_enum_conv_status);
	if (f.priority && !csa_enum_has(csa_enum_priority, f.priority))
		return csa_fail(c, 400, "bad_request", "priority must be one of %s",
		                csa_enum_priority);
	if (f.stage && !csa_enum_has(csa_enum_stage, f.stage))
		return csa_fail(c, 400, "bad_request", "stage must be one of %s", csa_enum_stage);
	if (f.customer && (!*f.customer || strlen(f.customer) > 254))
		return csa_fail(c, 400, "bad_request",
		                "customer is the customer's e-mail address (1 to 254 bytes)");
	const char *sla = csa_query(c, "sla");
	for (int k = CSA_SLA_ON_TIME; sla && k <= CSA_SLA_BREACHED; k++)
		if (strcmp(sla, csa_sla_state_name((enum csa_sla_state)k)) == 0)
			f.sla = k;
	if (sla && f.sla < 0)
		return csa_fail(c, 400, "bad_request",
		                "sla must be one of on_time|at_risk|breached");
	if (f.review == -2 || f.autonomous == -2)
		return csa_fail(c, 400, "bad_request",
		                "review and autonomous must be true or false");
	const char *sort_name = csa_query(c, "sort");
	int sort = sort_name ? csa_search_sort_parse(sort_name) : CSA_SORT_UPDATED;
	if (sort < 0)
		return csa_fail(c, 400, "bad_request",
		                "sort must be one of updated|sla_due|priority");
	long limit = 0, count = 0;
	json_t *bad = csa_query_long(c, "limit", 50, 1, CSA_SEARCH_LIMIT_MAX, &limit);
	if (!bad)
		bad = csa_query_long(c, "count", 0, 0, 1, &count);
	if (bad)
		return bad;
	const char *cursor = csa_query(c, "cursor");
	if (cursor && strlen(cursor) > CSA_SEARCH_CURSOR_MAX)
		return csa_fail(c, 400, "bad_request", "cursor is damaged");
	struct csa_err err = {0};
	struct csa_search_page page;
	int rc = csa_search_query(c->s->search, &f, (enum csa_search_sort)sort, cursor,
	                          (size_t)limit, &page, &err);
	long total = 0;
	if (rc == CSA_OK && count)
		rc = csa_search_count(c->s->search, &f, &total, &err);
	if (rc) {
		csa_search_page_release(&page);
		return csa_fail_err(c, &err);
	}
	json_t *out = json_pack("{s:O, s:s?, s:s}", "tickets", page.rows, "next_cursor",
	                        page.next[0] ? page.next : NULL, "sort",
	                        csa_search_sort_name((enum csa_search_sort)sort));
	if (out && count)
		json_object_set_new(out, "total", json_integer(total));
	csa_search_page_release(&page);
	if (!out)
		return csa_fail(c, 500, "internal", "out of memory listing tickets");
	return out;
}

/* An external message whose sender is not the customer: a reply. */
static int is_reply(const json_t *body)
{
	const char *side = csa_json_str(body, "side");
	const char *sender = csa_json_str(json_object_get(body, "message"), "sender");
	return (!side || strcmp(side, "external") == 0) && sender &&
	       strcmp(sender, "customer") != 0;
}

/* A person's (or a tool's) reply goes to the customer on the ticket's
 * channel; its id is fixed before it is stored, so the deliveries are
 * keyed by it and a retry with the same id queues nothing twice. */
static json_t *reply_add(struct call *c)
{
	json_t *msg = json_deep_copy(json_object_get(c->body, "message"));
	if (!msg)
		return csa_fail(c, 500, "internal", "out of memory adding a reply");
	json_t *given = json_object_get(msg, "message_id");
	if (!given || json_is_null(given)) {
		char id[CSA_ID_MAX + 1];
		csa_id_generate("m", id, sizeof(id));
		json_object_set_new(msg, "message_id", json_string(id));
	}
	json_t *res = NULL, *fail = NULL;
	struct csa_err err = {0};
	if (!json_is_string(json_object_get(msg, "content")))
		fail = csa_fail(c, 400, "bad_request", "message.content: a string is required");
	else if (!json_is_string(json_object_get(msg, "message_id")) ||
	         !csa_id_valid(csa_json_str(msg, "message_id")))
		fail = csa_fail(c, 400, "bad_request",
		                "message.message_id: must be 1-64 characters of A-Z a-z 0-9 _ -");
	else if (json_object_get(msg, "decision_id"))
		fail = csa_fail(c, 400, "bad_request", "message: unknown field 'decision_id'");
	else if (csa_reply_send(c->s, c->params[0], msg, &res, &err))
		fail = csa_fail_err(c, &err);
	json_decref(msg);
	if (fail)
		return fail;
	c->status = json_is_true(json_object_get(res, "duplicate")) ? 200 : 201;
	return res;
}

json_t *csa_h_message_add(struct call *c)
{
	if (!json_is_object(c->body) || !json_is_object(json_object_get(c->body, "message")))
		return csa_fail(
		    c, 400, "bad_request",
		    "body must be {\"side\": \"external\"|\"internal\", \"message\": {...}}");
	if (is_reply(c->body))
		return reply_add(c);
	json_t *doc = json_deep_copy(c->body);
	if (!doc || json_object_set_new(doc, "ticket_id", json_string(c->params[0]))) {
		json_decref(doc);
		return csa_fail(c, 500, "internal", "out of memory adding a message to '%s'",
		                c->params[0]);
	}
	struct csa_err err = {0};
	json_t *res = NULL;
	int rc = csa_pipeline_ingest(c->s->pipe, doc, &res, &err);
	json_decref(doc);
	if (rc)
		return csa_fail_err(c, &err);
	c->status = json_is_true(json_object_get(res, "duplicate")) ? 200 : 201;
	return res;
}

/* A reply's deliveries name their message ("reply|T_NO|message id|..."),
 * so a ticket page can show each message's state beside it. */
static void name_messages(json_t *deliveries)
{
	size_t i;
	json_t *d;
	json_array_foreach(deliveries, i, d)
	{
		const char *key = csa_json_str(d, "key");
		const char *t = key && strncmp(key, "reply|", 6) == 0 ? strchr(key + 6, '|') : NULL;
		const char *e = t ? strchr(t + 1, '|') : NULL;
		if (e)
			json_object_set_new(d, "message_id",
			                    json_stringn(t + 1, (size_t)(e - t - 1)));
	}
}

json_t *csa_h_deliveries(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_outbox_for_ticket(c->s->outbox, c->params[0], &out, &err))
		return csa_fail_err(c, &err);
	name_messages(out);
	return json_pack("{s:s, s:o}", "ticket_id", c->params[0], "deliveries", out);
}
