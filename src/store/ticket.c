/* Ticket documents: creation, messages, unified timeline. */
#include "store/ticket.h"
#include "store/schema.h"
#include "base/ids.h"
#include "base/json.h"
#include "base/ts.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int csa_side_parse(const char *s)
{
	if (!s)
		return -1;
	if (strcmp(s, "external") == 0)
		return CSA_SIDE_EXTERNAL;
	if (strcmp(s, "internal") == 0)
		return CSA_SIDE_INTERNAL;
	return -1;
}

static int bad(struct csa_err *err, const char *field, const char *what)
{
	return csa_error(err, CSA_EINVAL, "field '%s': %s", field, what);
}

/* Optional string field: absent -> dflt (may be NULL = json null). */
static int opt_str(const json_t *obj, const char *key, const char *field, const char *dflt,
                   json_t **out, struct csa_err *err)
{
	json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v)) {
		*out = dflt ? json_string(dflt) : json_null();
		return CSA_OK;
	}
	if (!json_is_string(v))
		return bad(err, field, "expected a string");
	*out = json_incref(v);
	return CSA_OK;
}

static int opt_enum(const json_t *obj, const char *key, const char *field, const char *alts,
                    const char *dflt, json_t **out, struct csa_err *err)
{
	int rc = opt_str(obj, key, field, dflt, out, err);
	if (rc)
		return rc;
	if (json_is_string(*out) && !csa_enum_has(alts, json_string_value(*out))) {
		json_decref(*out);
		*out = NULL;
		char what[160];
		snprintf(what, sizeof(what), "expected one of %s", alts);
		return bad(err, field, what);
	}
	return CSA_OK;
}

/* Refuse keys of 'obj' not in the NULL-terminated 'allowed'. */
static int only_keys(const json_t *obj, const char *const *allowed, const char *where,
                     struct csa_err *err)
{
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)obj, key, v)
	{
		int ok = 0;
		for (size_t k = 0; allowed[k] && !ok; k++)
			ok = strcmp(allowed[k], key) == 0;
		if (!ok)
			return csa_error(err, CSA_EINVAL, "%s: unknown field '%.60s'", where, key);
	}
	return CSA_OK;
}

static const char *const ext_msg_keys[] = {
    "message_id",  "timestamp",          "sender",        "sender_id", "content",
    "attachments", "sentiment_analysis", "ai_processing", "metadata",  NULL};
static const char *const int_msg_keys[] = {
    "message_id",   "timestamp", "sender",      "sender_id", "content",
    "message_type", "platform",  "ai_insights", "metadata",  NULL};

static json_t *null_sentiment(void)
{
	return json_pack("{s:n, s:n, s:[]}", "score", "confidence", "keywords");
}

/* Build a schema-complete message from user input. New reference or NULL
 * with err set. 'where' names the message in errors ("messages[2]"). */
static json_t *normalize_message(const struct csa_config *cfg, enum csa_side side, const json_t *in,
                                 int64_t now_ms, const char *where, struct csa_err *err)
{
	char f[96];
	if (!json_is_object(in)) {
		csa_error(err, CSA_EINVAL, "%s: expected an object", where);
		return NULL;
	}
	if (only_keys(in, side == CSA_SIDE_EXTERNAL ? ext_msg_keys : int_msg_keys, where, err))
		return NULL;
	json_t *content = json_object_get(in, "content");
	if (!json_is_string(content)) {
		csa_error(err, CSA_EINVAL, "%s.content: %s", where,
		          content ? "expected a string" : "missing");
		return NULL;
	}
	if (json_string_length(content) > cfg->limits.max_message_bytes) {
		csa_error(err, CSA_ELIMIT, "%s.content: %zu bytes, limit is %zu", where,
		          json_string_length(content), cfg->limits.max_message_bytes);
		return NULL;
	}
	json_t *m = json_object();
	json_t *v = NULL;
	char idbuf[CSA_ID_MAX + 1];

	/* message_id: given ids are kept (they are how platform retries are
	 * recognised) but must be safe identifiers. */
	v = json_object_get(in, "message_id");
	if (v && !json_is_null(v)) {
		const char *s = json_string_value(v);
		if (!s || !csa_id_valid(s)) {
			csa_error(err, CSA_EINVAL,
			          "%s.message_id: must be 1-64 characters of A-Z a-z 0-9 _ -",
			          where);
			goto fail;
		}
		json_object_set(m, "message_id", v);
	} else {
		csa_id_generate("m", idbuf, sizeof(idbuf));
		json_object_set_new(m, "message_id", json_string(idbuf));
	}

	char ts[CSA_TS_LEN];
	int64_t ms = now_ms;
	v = json_object_get(in, "timestamp");
	if (v && !json_is_null(v)) {
		if (!json_is_string(v) || csa_ts_parse(json_string_value(v), &ms)) {
			csa_error(err, CSA_EINVAL, "%s.timestamp: expected ISO 8601, e.g. %s",
			          where, csa_ts_format(now_ms, ts));
			goto fail;
		}
	}
	json_object_set_new(m, "timestamp", json_string(csa_ts_format(ms, ts)));

	const char *sender_alts =
	    side == CSA_SIDE_EXTERNAL ? csa_enum_ext_sender : csa_enum_int_sender;
	snprintf(f, sizeof(f), "%s.sender", where);
	if (opt_enum(in, "sender", f, sender_alts,
	             side == CSA_SIDE_EXTERNAL ? "customer" : "cs_agent", &v, err))
		goto fail;
	json_object_set_new(m, "sender", v);
	snprintf(f, sizeof(f), "%s.sender_id", where);
	if (opt_str(in, "sender_id", f, NULL, &v, err))
		goto fail;
	json_object_set_new(m, "sender_id", v);
	json_object_set(m, "content", content);

	json_t *meta_in = json_object_get(in, "metadata");
	if (meta_in && !json_is_object(meta_in)) {
		csa_error(err, CSA_EINVAL, "%s.metadata: expected an object", where);
		goto fail;
	}
	json_t *ps = json_object_get(meta_in, "platform_specific");
	if (ps && !json_is_object(ps) && !json_is_null(ps)) {
		csa_error(err, CSA_EINVAL, "%s.metadata.platform_specific: expected an object",
		          where);
		goto fail;
	}

	if (side == CSA_SIDE_EXTERNAL) {
		json_t *att = json_object_get(in, "attachments");
		if (att && !json_is_array(att)) {
			csa_error(err, CSA_EINVAL, "%s.attachments: expected an array", where);
			goto fail;
		}
		if (att && json_array_size(att) > cfg->limits.max_attachments) {
			csa_error(err, CSA_ELIMIT, "%s.attachments: %zu entries, limit is %zu",
			          where, json_array_size(att), cfg->limits.max_attachments);
			goto fail;
		}
		json_object_set_new(m, "attachments", att ? json_deep_copy(att) : json_array());
		/* Analysis fields are the system's to fill: input values
		 * are kept only if they already have the schema's shape,
		 * which the store checks before writing. */
		v = json_object_get(in, "sentiment_analysis");
		json_object_set_new(m, "sentiment_analysis",
		                    v ? json_deep_copy(v) : null_sentiment());
		v = json_object_get(in, "ai_processing");
		json_object_set_new(m, "ai_processing", v ? json_deep_copy(v) : json_null());
		double pt = csa_json_num(meta_in, "processing_time", -1);
		json_object_set_new(m, "metadata",
		                    json_pack("{s:o, s:o}", "platform_specific",
		                              ps ? json_deep_copy(ps) : json_null(),
		                              "processing_time",
		                              pt >= 0 ? json_real(pt) : json_null()));
	} else {
		snprintf(f, sizeof(f), "%s.message_type", where);
		if (opt_enum(in, "message_type", f, csa_enum_int_msg_type, "update", &v, err))
			goto fail;
		json_object_set_new(m, "message_type", v);
		snprintf(f, sizeof(f), "%s.platform", where);
		if (opt_enum(in, "platform", f, csa_enum_int_platform, "mattermost", &v, err))
			goto fail;
		json_object_set_new(m, "platform", v);
		v = json_object_get(in, "ai_insights");
		json_object_set_new(m, "ai_insights", v ? json_deep_copy(v) : json_null());
		json_t *ch = NULL, *th = NULL;
		snprintf(f, sizeof(f), "%s.metadata.channel_id", where);
		if (opt_str(meta_in, "channel_id", f, NULL, &ch, err))
			goto fail;
		snprintf(f, sizeof(f), "%s.metadata.thread_id", where);
		if (opt_str(meta_in, "thread_id", f, NULL, &th, err)) {
			json_decref(ch);
			goto fail;
		}
		json_object_set_new(m, "metadata",
		                    json_pack("{s:o, s:o, s:o}", "channel_id", ch, "thread_id", th,
		                              "platform_specific",
		                              ps ? json_deep_copy(ps) : json_null()));
	}
	return m;
fail:
	json_decref(m);
	return NULL;
}

static json_t *sync_list(char a, char b, const char *id)
{
	char x[CSA_ID_MAX + 4], y[CSA_ID_MAX + 4];
	snprintf(x, sizeof(x), "%c_%s", a, id);
	snprintf(y, sizeof(y), "%c_%s", b, id);
	return json_pack("[s, s]", x, y);
}

static json_t *ai_agents(void)
{
	return json_pack("[s, s, s, s]", "classifier", "selector", "updates", "escalation");
}

static const char *const ctx_keys[] = {
    "ticket_id", "client_name",     "company_name", "customer",          "platform",
    "channel",   "trello_template", "messages",     "internal_messages", NULL};
static const char *const customer_keys[] = {"client_name",    "company_name",      "contact_info",
                                            "priority_level", "subscription_tier", NULL};

/* Default channel for a platform: where the spec's channel list has no
 * better match, customer-facing chat. */
static const char *channel_for(const char *platform)
{
	return strcmp(platform, "email") == 0 ? "EMAIL" : "CHAT";
}

static int build_customer(const json_t *ctx, json_t **out, struct csa_err *err)
{
	json_t *in = json_object_get(ctx, "customer");
	if (in && !json_is_object(in) && !json_is_null(in))
		return bad(err, "customer", "expected an object");
	if (in && json_is_object(in) && only_keys(in, customer_keys, "customer", err))
		return CSA_EINVAL;
	json_t *c = json_object(), *v;
	int rc;
	/* client and company default to the top-level fields */
	if ((rc = opt_str(in, "client_name", "customer.client_name",
	                  csa_json_str(ctx, "client_name"), &v, err)))
		goto fail;
	json_object_set_new(c, "client_name", v);
	if ((rc = opt_str(in, "company_name", "customer.company_name",
	                  csa_json_str(ctx, "company_name"), &v, err)))
		goto fail;
	json_object_set_new(c, "company_name", v);
	v = json_object_get(in, "contact_info");
	if (v && !json_is_object(v) && !json_is_null(v)) {
		rc = bad(err, "customer.contact_info", "expected an object");
		goto fail;
	}
	json_object_set_new(c, "contact_info", v ? json_deep_copy(v) : json_null());
	if ((rc = opt_enum(in, "priority_level", "customer.priority_level", "HIGH|MEDIUM|LOW", NULL,
	                   &v, err)))
		goto fail;
	json_object_set_new(c, "priority_level", v);
	if ((rc = opt_enum(in, "subscription_tier", "customer.subscription_tier", csa_enum_tier,
	                   NULL, &v, err)))
		goto fail;
	json_object_set_new(c, "subscription_tier", v);
	*out = c;
	return CSA_OK;
fail:
	json_decref(c);
	return rc;
}

static int add_messages(const struct csa_config *cfg, json_t *doc, enum csa_side side,
                        const json_t *list, const char *name, int64_t now_ms, struct csa_err *err)
{
	if (!list || json_is_null(list))
		return CSA_OK;
	if (!json_is_array(list))
		return bad(err, name, "expected an array");
	if (json_array_size(list) > cfg->limits.max_messages_per_ticket)
		return csa_error(err, CSA_ELIMIT, "field '%s': %zu messages, limit is %zu", name,
		                 json_array_size(list), cfg->limits.max_messages_per_ticket);
	json_t *msgs = json_object_get(doc, "messages");
	size_t i;
	json_t *in;
	json_array_foreach(list, i, in)
	{
		char where[64];
		snprintf(where, sizeof(where), "%s[%zu]", name, i);
		json_t *m = normalize_message(cfg, side, in, now_ms, where, err);
		if (!m)
			return err ? err->code : CSA_EINVAL;
		json_array_append_new(msgs, m);
	}
	return CSA_OK;
}

int csa_ticket_build(const struct csa_config *cfg, const json_t *ctx, int64_t now_ms,
                     struct csa_ticket *tk, struct csa_err *err)
{
	memset(tk, 0, sizeof(*tk));
	if (!json_is_object(ctx))
		return csa_error(err, CSA_EINVAL, "ticket: expected a JSON object");
	int rc = only_keys(ctx, ctx_keys, "ticket", err);
	if (rc)
		return rc;
	json_t *idv = json_object_get(ctx, "ticket_id");
	if (idv && !json_is_null(idv)) {
		if (!json_is_string(idv))
			return bad(err, "ticket_id", "expected a string");
		if ((rc = csa_id_check(json_string_value(idv), json_string_length(idv), err)))
			return rc;
		memcpy(tk->id, json_string_value(idv), json_string_length(idv) + 1);
	} else {
		csa_id_generate("T", tk->id, sizeof(tk->id));
	}
	char ts[CSA_TS_LEN];
	csa_ts_format(now_ms, ts);
	json_t *platform = NULL, *channel = NULL, *client = NULL, *company = NULL, *templ = NULL,
	       *customer = NULL;
	if ((rc = opt_enum(ctx, "platform", "platform", csa_enum_platform, "web_chat", &platform,
	                   err)))
		goto fail;
	/* The spec's own create_ticket_state uses "WEB_CHAT", outside its
	 * channel enumeration: accept it, and lower case, as CHAT. */
	const char *ch_in = csa_json_str(ctx, "channel");
	char chbuf[16] = "";
	if (ch_in && strlen(ch_in) < sizeof(chbuf)) {
		for (size_t k = 0; ch_in[k]; k++)
			chbuf[k] = (char)toupper((unsigned char)ch_in[k]);
		chbuf[strlen(ch_in)] = '\0';
		if (strcmp(chbuf, "WEB_CHAT") == 0)
			memcpy(chbuf, "CHAT", 5);
	}
	json_t *chv = json_object_get(ctx, "channel");
	if (chv && !json_is_null(chv) && !json_is_string(chv)) {
		rc = bad(err, "channel", "expected a string");
		goto fail;
	}
	if (ch_in && !csa_enum_has(csa_enum_channel, chbuf)) {
		rc = bad(err, "channel", "expected one of MATTERMOST|FLOCK|EMAIL|CHAT");
		goto fail;
	}
	channel = json_string(ch_in ? chbuf : channel_for(json_string_value(platform)));
	if ((rc = opt_str(ctx, "client_name", "client_name", "", &client, err)) ||
	    (rc = opt_str(ctx, "company_name", "company_name", "", &company, err)) ||
	    (rc = opt_str(ctx, "trello_template", "trello_template", "standard", &templ, err)) ||
	    (rc = build_customer(ctx, &customer, err)))
		goto fail;

	tk->e = json_pack("{s:s, s:s, s:{s:o, s:[], s:o}, s:O, s:[], s:s, "
	                  "s:{s:s, s:n, s:n, s:s}, s:s, s:o}",
	                  "ticket_id", tk->id, "conversation_type", "external", "participants",
	                  "customer", customer, "cs_agents", "ai_agents", ai_agents(), "platform",
	                  platform, "messages", "conversation_status", "active", "sla_tracking",
	                  "created_at", ts, "first_response_due", "resolution_due",
	                  "current_status", "on_time", "last_updated", ts, "synchronized_with",
	                  sync_list('I', 'T', tk->id));
	customer = NULL;
	tk->i = json_pack("{s:s, s:s, s:{s:[], s:[], s:o, s:n, s:[]}, s:[s, s], s:[], s:[], "
	                  "s:{s:[], s:[], s:[]}, s:s, s:o}",
	                  "ticket_id", tk->id, "conversation_type", "internal", "participants",
	                  "cs_team", "technical_team", "ai_agents", ai_agents(),
	                  "assigned_resolver", "escalation_path", "platforms", "mattermost",
	                  "flock", "messages", "progress_updates", "knowledge_extraction",
	                  "solution_patterns", "troubleshooting_steps", "prevention_measures",
	                  "last_updated", ts, "synchronized_with", sync_list('E', 'T', tk->id));
	char eref[CSA_ID_MAX + 8], iref[CSA_ID_MAX + 8];
	snprintf(eref, sizeof(eref), "E_%s.json", tk->id);
	snprintf(iref, sizeof(iref), "I_%s.json", tk->id);
	tk->t = json_pack(
	    "{s:s, s:O, s:O, s:O, s:s, s:b, s:s, s:O, s:n, s:s, s:s, s:[], "
	    "s:{s:s, s:n, s:n, s:n, s:n}, s:{s:[], s:[], s:[], s:{}}, "
	    "s:{s:s, s:s}, s:s}",
	    "ticket_id", tk->id, "client_name", client, "company_name", company, "trello_template",
	    templ, "card_create_timestamp", ts, "resolved", 0, "priority", "MEDIUM", "channel",
	    channel, "assigned_member", "workflow_stage", "trigger", "automation_phase",
	    csa_json_str(cfg->root, "phase"), "agent_decisions", "sla_metrics", "created_at", ts,
	    "first_response_time", "resolution_time", "customer_satisfaction",
	    "internal_efficiency", "active_learning_data", "decision_patterns", "context_vectors",
	    "outcome_measurements", "confidence_calibration", "file_references",
	    "external_conversation", eref, "internal_conversation", iref, "last_synchronized", ts);
	if (!tk->e || !tk->i || !tk->t) {
		rc = csa_error(err, CSA_ENOMEM, "out of memory building ticket '%s'", tk->id);
		goto fail;
	}
	if ((rc = add_messages(cfg, tk->e, CSA_SIDE_EXTERNAL, json_object_get(ctx, "messages"),
	                       "messages", now_ms, err)) ||
	    (rc = add_messages(cfg, tk->i, CSA_SIDE_INTERNAL,
	                       json_object_get(ctx, "internal_messages"), "internal_messages",
	                       now_ms, err)))
		goto fail;
	json_decref(platform);
	json_decref(channel);
	json_decref(client);
	json_decref(company);
	json_decref(templ);
	return CSA_OK;
fail:
	json_decref(platform);
	json_decref(channel);
	json_decref(client);
	json_decref(company);
	json_decref(templ);
	json_decref(customer);
	csa_ticket_release(tk);
	return rc;
}

int csa_ticket_add_message(const struct csa_config *cfg, struct csa_ticket *tk, enum csa_side side,
                           const json_t *msg, int64_t now_ms, const char **msg_id_out,
                           struct csa_err *err)
{
	json_t *doc = side == CSA_SIDE_EXTERNAL ? tk->e : tk->i;
	json_t *msgs = json_object_get(doc, "messages");
	if (json_array_size(msgs) >= cfg->limits.max_messages_per_ticket)
		return csa_error(err, CSA_ELIMIT,
		                 "ticket '%s': %s side already has %zu messages, "
		                 "the limit",
		                 tk->id, side == CSA_SIDE_EXTERNAL ? "external" : "internal",
		                 json_array_size(msgs));
	json_t *m = normalize_message(cfg, side, msg, now_ms, "message", err);
	if (!m)
		return err ? err->code : CSA_EINVAL;
	const char *id = csa_json_str(m, "message_id");
	size_t i;
	json_t *old;
	json_array_foreach(msgs, i, old)
	{
		const char *oid = csa_json_str(old, "message_id");
		if (oid && strcmp(oid, id) == 0) {
			json_decref(m);
			return csa_error(err, CSA_EEXIST,
			                 "ticket '%s': message '%s' already stored", tk->id, oid);
		}
	}
	json_array_append_new(msgs, m);
	if (msg_id_out)
		*msg_id_out = csa_json_str(m, "message_id");
	return CSA_OK;
}

struct tl_entry {
	int64_t ms;
	int side;
	size_t idx;
	json_t *msg;
};

static int tl_cmp(const void *a, const void *b)
{
	const struct tl_entry *x = a, *y = b;
	if (x->ms != y->ms)
		return x->ms < y->ms ? -1 : 1;
	if (x->side != y->side)
		return x->side - y->side;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

json_t *csa_ticket_timeline(const struct csa_ticket *tk)
{
	json_t *sides[2] = {json_object_get(tk->e, "messages"), json_object_get(tk->i, "messages")};
	size_t n = json_array_size(sides[0]) + json_array_size(sides[1]), k = 0;
	struct tl_entry *v = calloc(n ? n : 1, sizeof(*v));
	json_t *out = json_array();
	if (!v || !out) {
		free(v);
		json_decref(out);
		return NULL;
	}
	for (int s = 0; s < 2; s++) {
		size_t i;
		json_t *m;
		json_array_foreach(sides[s], i, m)
		{
			int64_t ms = 0;
			csa_ts_parse(csa_json_str(m, "timestamp"), &ms);
			v[k++] = (struct tl_entry){ms, s, i, m};
		}
	}
	qsort(v, k, sizeof(*v), tl_cmp);
	for (size_t i = 0; i < k; i++) {
		json_t *e = json_object();
		json_object_set_new(e, "side", json_string(v[i].side ? "internal" : "external"));
		json_object_update(e, v[i].msg);
		json_array_append_new(out, e);
	}
	free(v);
	return out;
}

json_t *csa_ticket_state_json(const struct csa_ticket *tk, int with_timeline)
{
	json_t *o = json_pack("{s:s, s:O, s:O, s:O}", "ticket_id", tk->id, "workflow", tk->t,
	                      "external_conversation", tk->e, "internal_conversation", tk->i);
	if (!o)
		return NULL;
	if (with_timeline)
		json_object_set_new(o, "unified_timeline", csa_ticket_timeline(tk));
	json_t *trail = json_object_get(tk->t, "agent_decisions");
	json_object_set(o, "decision_trail", trail ? trail : json_array());
	return o;
}

json_t *csa_ticket_summary(const char *id, const json_t *t, const char *status)
{
	json_t *row = json_pack(
	    "{s:s, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}", "ticket_id", id, "client_name",
	    json_object_get(t, "client_name"), "company_name", json_object_get(t, "company_name"),
	    "priority", json_object_get(t, "priority"), "workflow_stage",
	    json_object_get(t, "workflow_stage"), "resolved", json_object_get(t, "resolved"),
	    "last_synchronized", json_object_get(t, "last_synchronized"));
	if (row && status)
		json_object_set_new(row, "conversation_status", json_string(status));
	return row;
}
