/* T.active_learning_data: decision patterns, context, outcomes and
 * calibration bins. */
#include "flow/learning.h"
#include "base/json.h"
#include "base/ts.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static json_t *section(struct csa_ticket *tk, const char *key)
{
	return json_object_get(json_object_get(tk->t, "active_learning_data"), key);
}

/* Append, dropping the oldest entries past CSA_LEARNING_MAX. */
static void push(json_t *arr, json_t *entry)
{
	if (!json_is_array(arr) || !entry) {
		json_decref(entry);
		return;
	}
	json_array_append_new(arr, entry);
	while (json_array_size(arr) > CSA_LEARNING_MAX)
		json_array_remove(arr, 0);
}

static void bin_name(double confidence, char out[16])
{
	int b = (int)(confidence * 10);
	b = b < 0 ? 0 : b > 9 ? 9 : b;
	snprintf(out, 16, "%.1f-%.1f", b / 10.0, (b + 1) / 10.0);
}

/* The calibration object, created with its parts when missing. */
static json_t *calibration(struct csa_ticket *tk)
{
	json_t *c = section(tk, "confidence_calibration");
	if (!json_is_object(c))
		return NULL;
	if (!json_object_get(c, "bin_width"))
		json_object_set_new(c, "bin_width", json_real(0.1));
	if (!json_is_object(json_object_get(c, "decisions")))
		json_object_set_new(c, "decisions", json_object());
	if (!json_is_object(json_object_get(c, "bins")))
		json_object_set_new(c, "bins", json_object());
	return c;
}

static void bin_count(json_t *c, const char *bin, const char *field, int delta)
{
	json_t *b = json_object_get(json_object_get(c, "bins"), bin);
	if (!b) {
		b = json_pack("{s:I, s:I, s:I, s:n}", "decisions", (json_int_t)0, "reviewed",
		              (json_int_t)0, "confirmed", (json_int_t)0, "accuracy");
		json_object_set_new(json_object_get(c, "bins"), bin, b);
	}
	json_object_set_new(b, field, json_integer(csa_json_int(b, field, 0) + delta));
	long long rev = csa_json_int(b, "reviewed", 0);
	json_object_set_new(b, "accuracy",
	                    rev ? json_real((double)csa_json_int(b, "confirmed", 0) / (double)rev)
	                        : json_null());
}

/* Whether 'word' is one of the words of 's' (split at anything not a
 * letter or digit, compared without case). */
static int word_of(const char *word, size_t wlen, const char *s)
{
	while (s && *s) {
		while (*s && !isalnum((unsigned char)*s) && !((unsigned char)*s & 0x80))
			s++;
		const char *w = s;
		while (*s && (isalnum((unsigned char)*s) || ((unsigned char)*s & 0x80)))
			s++;
		if ((size_t)(s - w) == wlen && strncasecmp(w, word, wlen) == 0)
			return 1;
	}
	return 0;
}

json_t *csa_learning_public_patterns(const json_t *patterns, const json_t *e)
{
	const json_t *cust = json_object_get(json_object_get(e, "participants"), "customer");
	const char *who[] = {csa_json_str(cust, "client_name"), csa_json_str(cust, "company_name"),
	                     csa_json_str(json_object_get(cust, "contact_info"), "email"),
	                     csa_json_str(json_object_get(cust, "contact_info"), "phone")};
	json_t *out = json_array();
	size_t i;
	json_t *p;
	json_array_foreach(patterns, i, p)
	{
		const char *f = csa_json_str(p, "feature");
		int personal = 0;
		if (f && strncmp(f, "word=", 5) == 0)
			for (size_t k = 0; k < sizeof(who) / sizeof(who[0]) && !personal; k++)
				personal = word_of(f + 5, strlen(f + 5), who[k]);
		if (!personal)
			json_array_append(out, p);
	}
	return out;
}

void csa_learning_decision(struct csa_ticket *tk, const struct csa_agent_input *in,
                           const char *decision_id, enum csa_dtype type, const char *value,
                           double confidence, const char *digest, const json_t *patterns)
{
	const char *tname = csa_dtype_name(type);
	if (json_is_array(patterns))
		push(section(tk, "decision_patterns"),
		     json_pack("{s:s, s:s, s:s?, s:f, s:o}", "decision_id", decision_id,
		               "decision_type", tname, "value", value, "confidence", confidence,
		               "features", csa_learning_public_patterns(patterns, tk->e)));
	/* the structured features as the model saw them: the classifier's
	 * category and priority for the later types */
	const char *cat = csa_json_str(in->classification, "category");
	const char *pri = csa_json_str(in->classification, "priority");
	char buf[512];
	const char *feats[16];
	size_t nf =
	    csa_agent_features(type, in, type == CSA_DT_CATEGORY ? NULL : cat,
	                       type == CSA_DT_STRATEGY || type == CSA_DT_ESCALATION ? pri : NULL,
	                       buf, sizeof(buf), feats, 16);
	json_t *fa = json_array();
	for (size_t k = 0; k < nf; k++)
		json_array_append_new(fa, json_string(feats[k]));
	push(section(tk, "context_vectors"),
	     json_pack("{s:s, s:s, s:s, s:I, s:o, s:f, s:i, s:i}", "decision_id", decision_id,
	               "decision_type", tname, "input_digest", digest, "text_bytes",
	               (json_int_t)(in->text ? strlen(in->text) : 0), "features", fa, "sentiment",
	               round(in->sentiment * 1000) / 1000, "sla_status", in->sla_status,
	               "agent_replies", in->agent_replies));
	json_t *c = calibration(tk);
	if (!c)
		return;
	char key[256], bin[16];
	snprintf(key, sizeof(key), "%s#%s", decision_id, tname);
	bin_name(confidence, bin);
	json_object_set_new(
	    json_object_get(c, "decisions"), key,
	    json_pack("{s:f, s:s, s:n}", "confidence", confidence, "bin", bin, "confirmed"));
	bin_count(c, bin, "decisions", 1);
}

void csa_learning_review(struct csa_ticket *tk, const char *decision_id, enum csa_dtype type,
                         const char *ai_value, const char *human_value, const char *by,
                         int64_t now_ms)
{
	const char *tname = csa_dtype_name(type);
	int confirmed = ai_value && human_value && strcmp(ai_value, human_value) == 0;
	char ts[CSA_TS_LEN];
	push(section(tk, "outcome_measurements"),
	     json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:b, s:s?, s:s}", "kind", "review",
	               "decision_id", decision_id, "decision_type", tname, "ai_value", ai_value,
	               "human_value", human_value, "confirmed", confirmed, "by", by, "timestamp",
	               csa_ts_format(now_ms, ts)));
	json_t *c = calibration(tk);
	char key[256];
	snprintf(key, sizeof(key), "%s#%s", decision_id, tname);
	json_t *d = json_object_get(json_object_get(c, "decisions"), key);
	const char *bin = csa_json_str(d, "bin");
	if (!bin)
		return;
	/* a second review of one decision replaces the first */
	json_t *was = json_object_get(d, "confirmed");
	if (json_is_boolean(was)) {
		bin_count(c, bin, "reviewed", -1);
		if (json_is_true(was))
			bin_count(c, bin, "confirmed", -1);
	}
	json_object_set_new(d, "confirmed", json_boolean(confirmed));
	bin_count(c, bin, "reviewed", 1);
	if (confirmed)
		bin_count(c, bin, "confirmed", 1);
}

void csa_learning_outcome(struct csa_ticket *tk, int escalated, int64_t now_ms)
{
	json_t *sla = json_object_get(tk->t, "sla_metrics");
	char ts[CSA_TS_LEN];
	push(section(tk, "outcome_measurements"),
	     json_pack("{s:s, s:s, s:O?, s:O?, s:O?, s:b}", "kind", "ticket_outcome", "timestamp",
	               csa_ts_format(now_ms, ts), "resolution_time",
	               json_object_get(sla, "resolution_time"), "customer_satisfaction",
	               json_object_get(sla, "customer_satisfaction"), "internal_efficiency",
	               json_object_get(sla, "internal_efficiency"), "escalated", escalated));
}
