/*
 * The ticket resources of the API: create, list, read (from a cache of
 * rendered tickets), add messages, and the outbound deliveries of a
 * ticket.
 */
#include "server/server_internal.h"
#include "base/hash.h"
#include "base/json.h"
#include "flow/pipeline.h"
#include "outbound/outbox.h"
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

struct list_ctx {
	json_t *arr;
	long skip, limit, total;
	int nomem;
};

static int list_one(void *vctx, const char *id, const json_t *t, const char *status)
{
	struct list_ctx *l = vctx;
	l->total++;
	if (l->skip > 0) {
		l->skip--;
		return 0;
	}
	if ((long)json_array_size(l->arr) >= l->limit)
		return 0;
	if (json_array_append_new(l->arr, csa_ticket_summary(id, t, status))) {
		l->nomem = 1;
		return CSA_ENOMEM;
	}
	return 0;
}

json_t *csa_h_ticket_list(struct call *c)
{
	struct csa_filter f = {csa_query(c, "status"), csa_query(c, "priority"),
	                       csa_query(c, "stage")};
	if (f.status && !csa_enum_has(csa_enum_conv_status, f.status))
		return csa_fail(c, 400, "bad_request", "status must be one of %s",
		                csa_enum_conv_status);
	if (f.priority && !csa_enum_has(csa_enum_priority, f.priority))
		return csa_fail(c, 400, "bad_request", "priority must be one of %s",
		                csa_enum_priority);
	if (f.stage && !csa_enum_has(csa_enum_stage, f.stage))
		return csa_fail(c, 400, "bad_request", "stage must be one of %s", csa_enum_stage);
	struct list_ctx l = {0};
	json_t *bad = csa_query_long(c, "limit", 100, 1, 1000, &l.limit);
	if (!bad)
		bad = csa_query_long(c, "offset", 0, 0, 1L << 40, &l.skip);
	if (bad)
		return bad;
	if (!(l.arr = json_array()))
		return csa_fail(c, 500, "internal", "out of memory listing tickets");
	struct csa_err err = {0};
	int rc = csa_store_scan(c->s->ws->store, &f, list_one, &l, &err);
	if (rc) {
		json_decref(l.arr);
		if (l.nomem)
			return csa_fail(c, 500, "internal", "out of memory listing tickets");
		return csa_fail_err(c, &err);
	}
	return json_pack("{s:o, s:I}", "tickets", l.arr, "total", (json_int_t)l.total);
}

json_t *csa_h_message_add(struct call *c)
{
	if (!json_is_object(c->body) || !json_is_object(json_object_get(c->body, "message")))
		return csa_fail(
		    c, 400, "bad_request",
		    "body must be {\"side\": \"external\"|\"internal\", \"message\": {...}}");
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

json_t *csa_h_deliveries(struct call *c)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_outbox_for_ticket(c->s->outbox, c->params[0], &out, &err))
		return csa_fail_err(c, &err);
	return json_pack("{s:s, s:o}", "ticket_id", c->params[0], "deliveries", out);
}
