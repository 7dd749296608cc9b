/* Table-driven validation of the E, I and T documents (spec §3.2). */
#include "store/schema.h"
#include "base/ids.h"
#include "base/ts.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char *const csa_enum_platform = "trello|email|web_chat|phone";
const char *const csa_enum_channel = "MATTERMOST|FLOCK|EMAIL|CHAT";
const char *const csa_enum_priority = "CRITICAL|HIGH|MEDIUM|LOW";
const char *const csa_enum_conv_status = "active|resolved|escalated|pending";
const char *const csa_enum_stage = "trigger|classifier|selection|action|end";
const char *const csa_enum_ext_sender = "customer|cs_agent|ai_agent";
const char *const csa_enum_int_sender = "cs_agent|technical_member|ai_agent";
const char *const csa_enum_int_platform = "flock|mattermost|slack";
const char *const csa_enum_int_msg_type = "assignment|update|escalation|resolution|analysis";
const char *const csa_enum_tier = "PREMIUM|STANDARD|BASIC";

enum kind {
	K_STR,        /* string */
	K_NUM,        /* number, optionally within [lo, hi] */
	K_BOOL,       /* true/false */
	K_TS,         /* ISO 8601 timestamp string */
	K_ENUM,       /* one of 'alts' */
	K_OBJ,        /* any object (free-form by the spec) */
	K_ARR,        /* array of anything */
	K_ARR_STR,    /* array of strings */
	K_ARR_ENUM,   /* array of strings from 'alts' */
	K_STRUCT,     /* object with exactly the fields 'sub' */
	K_ARR_STRUCT, /* array of K_STRUCT */
};

struct fld {
	const char *key;
	enum kind kind;
	int nullable;
	const char *alts;
	const struct fld *sub; /* K_STRUCT / K_ARR_STRUCT, terminated by key NULL */
	int ranged;
	double lo, hi;
};

#define F(k, kind)                                                                                 \
	{                                                                                          \
		k, kind, 0, NULL, NULL, 0, 0, 0                                                    \
	}
#define FN(k, kind)                                                                                \
	{                                                                                          \
		k, kind, 1, NULL, NULL, 0, 0, 0                                                    \
	}
#define FE(k, alts)                                                                                \
	{                                                                                          \
		k, K_ENUM, 0, alts, NULL, 0, 0, 0                                                  \
	}
#define FEN(k, alts)                                                                               \
	{                                                                                          \
		k, K_ENUM, 1, alts, NULL, 0, 0, 0                                                  \
	}
#define FS(k, sub)                                                                                 \
	{                                                                                          \
		k, K_STRUCT, 0, NULL, sub, 0, 0, 0                                                 \
	}
#define FSN(k, sub)                                                                                \
	{                                                                                          \
		k, K_STRUCT, 1, NULL, sub, 0, 0, 0                                                 \
	}
#define FR(k, nullable, lo, hi)                                                                    \
	{                                                                                          \
		k, K_NUM, nullable, NULL, NULL, 1, lo, hi                                          \
	}
#define END                                                                                        \
	{                                                                                          \
		NULL, 0, 0, NULL, NULL, 0, 0, 0                                                    \
	}

/* E_<T_NO>.json, spec §3.2.1 */
static const struct fld e_customer[] = {FN("client_name", K_STR),
                                        FN("company_name", K_STR),
                                        FN("contact_info", K_OBJ),
                                        FEN("priority_level", "HIGH|MEDIUM|LOW"),
                                        FEN("subscription_tier", "PREMIUM|STANDARD|BASIC"),
                                        END};
static const struct fld e_participants[] = {FS("customer", e_customer), F("cs_agents", K_ARR_STR),
                                            F("ai_agents", K_ARR_STR), END};
static const struct fld e_sentiment[] = {FR("score", 1, -1, 1), FR("confidence", 1, 0, 1),
                                         F("keywords", K_ARR_STR), END};
static const struct fld e_ai[] = {FN("intent_classification", K_STR), FR("confidence", 1, 0, 1),
                                  F("suggested_actions", K_ARR), F("escalation_triggers", K_ARR),
                                  END};
static const struct fld e_meta[] = {FN("platform_specific", K_OBJ),
                                    FR("processing_time", 1, 0, 1e12), END};
static const struct fld e_message[] = {F("message_id", K_STR),
                                       F("timestamp", K_TS),
                                       FE("sender", "customer|cs_agent|ai_agent"),
                                       FN("sender_id", K_STR),
                                       F("content", K_STR),
                                       F("attachments", K_ARR),
                                       FSN("sentiment_analysis", e_sentiment),
                                       FSN("ai_processing", e_ai),
                                       FS("metadata", e_meta),
                                       END};
static const struct fld e_sla[] = {F("created_at", K_TS), FN("first_response_due", K_TS),
                                   FN("resolution_due", K_TS),
                                   FE("current_status", "on_time|at_risk|breached"), END};
static const struct fld e_doc[] = {F("ticket_id", K_STR),
                                   FE("conversation_type", "external"),
                                   FS("participants", e_participants),
                                   FE("platform", "trello|email|web_chat|phone"),
                                   {"messages", K_ARR_STRUCT, 0, NULL, e_message, 0, 0, 0},
                                   FE("conversation_status", "active|resolved|escalated|pending"),
                                   FS("sla_tracking", e_sla),
                                   F("last_updated", K_TS),
                                   F("synchronized_with", K_ARR_STR),
                                   END};

/* I_<T_NO>.json, spec §3.2.2 */
static const struct fld i_participants[] = {
    F("cs_team", K_ARR_STR),        F("technical_team", K_ARR_STR),  F("ai_agents", K_ARR_STR),
    FN("assigned_resolver", K_STR), F("escalation_path", K_ARR_STR), END};
static const struct fld i_insights[] = {FEN("complexity_assessment", "LOW|MEDIUM|HIGH|CRITICAL"),
                                        FR("estimated_resolution_time", 1, 0, 1e9),
                                        F("required_expertise", K_ARR_STR),
                                        F("similar_cases", K_ARR_STR), END};
static const struct fld i_meta[] = {FN("channel_id", K_STR), FN("thread_id", K_STR),
                                    FN("platform_specific", K_OBJ), END};
static const struct fld i_message[] = {
    F("message_id", K_STR),
    F("timestamp", K_TS),
    FE("sender", "cs_agent|technical_member|ai_agent"),
    FN("sender_id", K_STR),
    F("content", K_STR),
    FE("message_type", "assignment|update|escalation|resolution|analysis"),
    FE("platform", "flock|mattermost|slack"),
    FSN("ai_insights", i_insights),
    FS("metadata", i_meta),
    END};
static const struct fld i_progress[] = {F("timestamp", K_TS),
                                        F("updater", K_STR),
                                        FE("status", "assigned|in_progress|blocked|resolved"),
                                        FN("notes", K_STR),
                                        FN("estimated_completion", K_TS),
                                        F("blockers", K_ARR),
                                        F("ai_recommendations", K_ARR),
                                        END};
static const struct fld i_knowledge[] = {F("solution_patterns", K_ARR),
                                         F("troubleshooting_steps", K_ARR),
                                         F("prevention_measures", K_ARR), END};
static const struct fld i_doc[] = {
    F("ticket_id", K_STR),
    FE("conversation_type", "internal"),
    FS("participants", i_participants),
    {"platforms", K_ARR_ENUM, 0, "flock|mattermost|slack", NULL, 0, 0, 0},
    {"messages", K_ARR_STRUCT, 0, NULL, i_message, 0, 0, 0},
    {"progress_updates", K_ARR_STRUCT, 0, NULL, i_progress, 0, 0, 0},
    FS("knowledge_extraction", i_knowledge),
    F("last_updated", K_TS),
    F("synchronized_with", K_ARR_STR),
    END};

/* T_<T_NO>.json, spec §3.2.3 */
static const struct fld t_feedback[] = {FN("correct", K_BOOL), FN("improvement_notes", K_STR),
                                        F("pattern_updates", K_ARR), END};
static const struct fld t_decision[] = {FE("agent", "classifier|selector|updates|escalation"),
                                        F("timestamp", K_TS),
                                        F("decision", K_OBJ),
                                        FR("confidence", 0, 0, 1),
                                        F("human_confirmed", K_BOOL),
                                        FSN("learning_feedback", t_feedback),
                                        END};
static const struct fld t_sla[] = {F("created_at", K_TS),
                                   FR("first_response_time", 1, 0, 1e12),
                                   FR("resolution_time", 1, 0, 1e12),
                                   FR("customer_satisfaction", 1, 1, 5),
                                   FR("internal_efficiency", 1, 0, 1),
                                   END};
static const struct fld t_learning[] = {F("decision_patterns", K_ARR), F("context_vectors", K_ARR),
                                        F("outcome_measurements", K_ARR),
                                        F("confidence_calibration", K_OBJ), END};
static const struct fld t_refs[] = {F("external_conversation", K_STR),
                                    F("internal_conversation", K_STR), END};
static const struct fld t_doc[] = {
    F("ticket_id", K_STR),
    FN("client_name", K_STR),
    FN("company_name", K_STR),
    FN("trello_template", K_STR),
    F("card_create_timestamp", K_TS),
    F("resolved", K_BOOL),
    FE("priority", "CRITICAL|HIGH|MEDIUM|LOW"),
    FE("channel", "MATTERMOST|FLOCK|EMAIL|CHAT"),
    FN("assigned_member", K_STR),
    FE("workflow_stage", "trigger|classifier|selection|action|end"),
    FE("automation_phase", "PHASE_1|PHASE_2|PHASE_3|PHASE_4|PHASE_5"),
    {"agent_decisions", K_ARR_STRUCT, 0, NULL, t_decision, 0, 0, 0},
    FS("sla_metrics", t_sla),
    FS("active_learning_data", t_learning),
    FS("file_references", t_refs),
    F("last_synchronized", K_TS),
    END};

int csa_enum_has(const char *alts, const char *s)
{
	if (!s)
		return 0;
	size_t n = strlen(s);
	const char *p = alts;
	while (*p) {
		const char *bar = strchr(p, '|');
		size_t len = bar ? (size_t)(bar - p) : strlen(p);
		if (len == n && memcmp(p, s, n) == 0)
			return 1;
		if (!bar)
			break;
		p = bar + 1;
	}
	return 0;
}

/* Where the check is: a stack of keys and array indexes, written out as
 * a path ("messages[2].content") only when a check fails. Every document
 * is checked at each commit and load, so the path is not formatted for
 * each field on the way (that was a twentieth of a commit's CPU). */
enum { PATH_DEPTH = 16 };

struct step {
	const char *key; /* NULL: an array index */
	size_t index;
};

struct ctx {
	const char *file;
	struct step path[PATH_DEPTH];
	int depth; /* may pass PATH_DEPTH: deeper steps are not kept */
	struct csa_err *err;
};

static void push_key(struct ctx *c, const char *key)
{
	if (c->depth < PATH_DEPTH)
		c->path[c->depth] = (struct step){key, 0};
	c->depth++;
}

static void push_index(struct ctx *c, size_t i)
{
	if (c->depth < PATH_DEPTH)
		c->path[c->depth] = (struct step){NULL, i};
	c->depth++;
}

static int fail(struct ctx *c, const char *fmt, const char *a)
{
	char what[300], path[256] = "";
	size_t len = 0;
	snprintf(what, sizeof(what), fmt, a);
	for (int i = 0; i < c->depth && i < PATH_DEPTH && len < sizeof(path); i++) {
		int n = c->path[i].key
		            ? snprintf(path + len, sizeof(path) - len, "%s%s", len ? "." : "",
		                       c->path[i].key)
		            : snprintf(path + len, sizeof(path) - len, "[%zu]", c->path[i].index);
		if (n < 0)
			break;
		len += (size_t)n;
	}
	return csa_error(c->err, CSA_ESCHEMA, "%s: %s: %s", c->file, path[0] ? path : "(top)",
	                 what);
}

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "boolean";
	case JSON_NULL:
		return "null";
	}
	return "?";
}

static int check_struct(struct ctx *c, const json_t *obj, const struct fld *fields);

static int check_value(struct ctx *c, const json_t *v, const struct fld *f)
{
	if (json_is_null(v)) {
		if (f->nullable)
			return CSA_OK;
		return fail(c, "must not be null%s", "");
	}
	switch (f->kind) {
	case K_STR:
		if (!json_is_string(v))
			return fail(c, "expected a string, got %s", type_name(v));
		return CSA_OK;
	case K_NUM: {
		if (!json_is_number(v))
			return fail(c, "expected a number, got %s", type_name(v));
		double d = json_number_value(v);
		if (!isfinite(d) || (f->ranged && (d < f->lo || d > f->hi))) {
			char range[64];
			snprintf(range, sizeof(range), "[%g, %g]", f->lo, f->hi);
			return fail(c, "number out of range %s", range);
		}
		return CSA_OK;
	}
	case K_BOOL:
		if (!json_is_boolean(v))
			return fail(c, "expected true or false, got %s", type_name(v));
		return CSA_OK;
	case K_TS: {
		int64_t ms;
		if (!json_is_string(v))
			return fail(c, "expected an ISO 8601 timestamp, got %s", type_name(v));
		if (csa_ts_parse(json_string_value(v), &ms))
			return fail(c, "not an ISO 8601 timestamp: '%.40s'", json_string_value(v));
		return CSA_OK;
	}
	case K_ENUM:
		if (!json_is_string(v) || !csa_enum_has(f->alts, json_string_value(v)))
			return fail(c, "expected one of %s", f->alts);
		return CSA_OK;
	case K_OBJ:
		if (!json_is_object(v))
			return fail(c, "expected an object, got %s", type_name(v));
		return CSA_OK;
	case K_ARR:
	case K_ARR_STR:
	case K_ARR_ENUM:
	case K_ARR_STRUCT: {
		if (!json_is_array(v))
			return fail(c, "expected an array, got %s", type_name(v));
		int base = c->depth;
		size_t i;
		json_t *el;
		json_array_foreach(v, i, el)
		{
			c->depth = base;
			push_index(c, i);
			int rc = CSA_OK;
			if (f->kind == K_ARR_STR && !json_is_string(el))
				rc = fail(c, "expected a string, got %s", type_name(el));
			else if (f->kind == K_ARR_ENUM &&
			         (!json_is_string(el) ||
			          !csa_enum_has(f->alts, json_string_value(el))))
				rc = fail(c, "expected one of %s", f->alts);
			else if (f->kind == K_ARR_STRUCT)
				rc = check_struct(c, el, f->sub);
			if (rc)
				return rc;
		}
		c->depth = base;
		return CSA_OK;
	}
	case K_STRUCT:
		return check_struct(c, v, f->sub);
	}
	return CSA_OK;
}

static int check_struct(struct ctx *c, const json_t *obj, const struct fld *fields)
{
	if (!json_is_object(obj))
		return fail(c, "expected an object, got %s", type_name(obj));
	int base = c->depth;
	size_t nfields = 0;
	for (const struct fld *f = fields; f->key; f++, nfields++) {
		c->depth = base;
		push_key(c, f->key);
		json_t *v = json_object_get(obj, f->key);
		if (!v)
			return fail(c, "missing%s", "");
		int rc = check_value(c, v, f);
		if (rc)
			return rc;
	}
	c->depth = base;
	if (json_object_size(obj) != nfields) {
		const char *key;
		json_t *v;
		json_object_foreach((json_t *)obj, key, v)
		{
			const struct fld *f = fields;
			while (f->key && strcmp(f->key, key) != 0)
				f++;
			if (!f->key)
				return fail(c, "unknown field '%.60s'", key);
		}
	}
	return CSA_OK;
}

static const char prefix[] = "EIT";

static const char *str_or_empty(const json_t *v)
{
	const char *s = json_string_value(v);
	return s ? s : "";
}

static int check_refs(struct ctx *c, enum csa_doc_kind kind, const char *id, const json_t *doc)
{
	char want[2][CSA_ID_MAX + 8];
	const char *tid = json_string_value(json_object_get(doc, "ticket_id"));
	c->depth = 0;
	if (strcmp(tid, id) != 0) {
		push_key(c, "ticket_id");
		return fail(c, "is '%.64s', file belongs to another ticket", tid);
	}
	if (kind == CSA_KIND_T) {
		json_t *refs = json_object_get(doc, "file_references");
		snprintf(want[0], sizeof(want[0]), "E_%s.json", id);
		snprintf(want[1], sizeof(want[1]), "I_%s.json", id);
		if (strcmp(str_or_empty(json_object_get(refs, "external_conversation")), want[0]) !=
		        0 ||
		    strcmp(str_or_empty(json_object_get(refs, "internal_conversation")), want[1]) !=
		        0) {
			push_key(c, "file_references");
			return fail(c, "must name %s and its I file", want[0]);
		}
		return CSA_OK;
	}
	int k = 0;
	for (int p = 0; p < 3; p++)
		if (p != (int)kind)
			snprintf(want[k++], sizeof(want[0]), "%c_%s", prefix[p], id);
	json_t *sw = json_object_get(doc, "synchronized_with");
	if (json_array_size(sw) != 2 || strcmp(str_or_empty(json_array_get(sw, 0)), want[0]) != 0 ||
	    strcmp(str_or_empty(json_array_get(sw, 1)), want[1]) != 0) {
		push_key(c, "synchronized_with");
		return fail(c, "must be [\"%s\", ...] for this ticket", want[0]);
	}
	return CSA_OK;
}

int csa_schema_check(enum csa_doc_kind kind, const char *id, const json_t *doc, struct csa_err *err)
{
	static const struct fld *const docs[] = {e_doc, i_doc, t_doc};
	char file[CSA_ID_MAX + 16];
	snprintf(file, sizeof(file), "%c_%s.json", prefix[kind], id);
	struct ctx c = {.file = file, .err = err};
	int rc = check_struct(&c, doc, docs[kind]);
	if (rc)
		return rc;
	return check_refs(&c, kind, id, doc);
}

/* Rebuild obj with the keys of 'fields' first, in their order, each value
 * put in order too where the table describes it; any other key after. */
static void order_struct(json_t *obj, const struct fld *fields)
{
	if (!json_is_object(obj))
		return;
	json_t *sorted = json_object();
	if (!sorted)
		return; /* out of memory: the order stays as it was */
	for (const struct fld *f = fields; f->key; f++) {
		json_t *v = json_object_get(obj, f->key);
		if (!v)
			continue;
		if (f->kind == K_STRUCT) {
			order_struct(v, f->sub);
		} else if (f->kind == K_ARR_STRUCT) {
			size_t i;
			json_t *el;
			json_array_foreach(v, i, el) order_struct(el, f->sub);
		}
		json_object_set(sorted, f->key, v);
	}
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v) if (!json_object_get(sorted, key))
	    json_object_set(sorted, key, v);
	if (json_object_size(sorted) == json_object_size(obj)) {
		json_object_clear(obj);
		json_object_update(obj, sorted);
	}
	json_decref(sorted);
}

void csa_schema_order(enum csa_doc_kind kind, json_t *doc)
{
	static const struct fld *const docs[] = {e_doc, i_doc, t_doc};
	order_struct(doc, docs[kind]);
}

int csa_schema_check_limits(enum csa_doc_kind kind, const char *id, const json_t *doc,
                            const struct csa_limits *lim, struct csa_err *err)
{
	if (kind == CSA_KIND_T)
		return CSA_OK;
	json_t *msgs = json_object_get(doc, "messages");
	char c = prefix[kind];
	if (json_array_size(msgs) > lim->max_messages_per_ticket)
		return csa_error(err, CSA_ELIMIT, "%c_%s.json: %zu messages, limit is %zu", c, id,
		                 json_array_size(msgs), lim->max_messages_per_ticket);
	size_t i;
	json_t *m;
	json_array_foreach(msgs, i, m)
	{
		size_t len = json_string_length(json_object_get(m, "content"));
		if (len > lim->max_message_bytes)
			return csa_error(err, CSA_ELIMIT,
			                 "%c_%s.json: messages[%zu].content is %zu bytes, limit "
			                 "is %zu",
			                 c, id, i, len, lim->max_message_bytes);
		size_t na = json_array_size(json_object_get(m, "attachments"));
		if (na > lim->max_attachments)
			return csa_error(err, CSA_ELIMIT,
			                 "%c_%s.json: messages[%zu].attachments has %zu entries, "
			                 "limit is %zu",
			                 c, id, i, na, lim->max_attachments);
	}
	return CSA_OK;
}
