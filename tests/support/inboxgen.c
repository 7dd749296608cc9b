/* Generated tickets in every state the inbox filters on (inboxgen.h). */
#include "support/inboxgen.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/ts.h"
#include "flow/import.h"
#include "gen/gen.h"
#include "store/store.h"
#include "store/ws.h"

#define GROUP 500

const char *inboxgen_status(long i)
{
	static const char *const s[] = {"active", "resolved", "escalated", "pending"};
	return s[i % 4];
}

const char *inboxgen_assigned(long i)
{
	return i % 5 == 0 ? "alice" : i % 5 == 1 ? "bob" : NULL;
}

int inboxgen_repeat_customer(long i)
{
	return i % 97 == 5;
}

/* i % 11: 0 a decision to decide, 1 an autonomous one sampled for audit,
 * 2 an autonomous one not sampled, 3 one a person already reviewed */
int inboxgen_review(long i)
{
	return i % 11 == 0 || i % 11 == 1;
}

int inboxgen_autonomous(long i)
{
	return i % 11 == 1 || i % 11 == 2;
}

int inboxgen_e_word(long i)
{
	return i % 97 == 0;
}

int inboxgen_i_word(long i)
{
	return i % 89 == 0;
}

static void add_message(json_t *doc, const char *content, const char *sender, int internal,
                        const char *id)
{
	json_t *m = json_pack("{s:s, s:s, s:s, s:n, s:s, s:[], s:n, s:n, s:{}}", "message_id", id,
	                      "timestamp", "2026-01-02T00:00:00.000Z", "sender", sender,
	                      "sender_id", "content", content, "attachments", "sentiment_analysis",
	                      "ai_processing", "metadata");
	if (internal) {
		json_object_del(m, "attachments");
		json_object_del(m, "sentiment_analysis");
		json_object_del(m, "ai_processing");
		json_object_set_new(m, "message_type", json_string("update"));
		json_object_set_new(m, "platform", json_string("slack"));
		json_object_set_new(m, "ai_insights", json_null());
		json_object_set_new(
		    m, "metadata",
		    json_pack("{s:n, s:n, s:n}", "channel_id", "thread_id", "platform_specific"));
	} else {
		json_object_set_new(
		    m, "metadata", json_pack("{s:n, s:n}", "platform_specific", "processing_time"));
	}
	json_array_append_new(json_object_get(doc, "messages"), m);
}

static void vary(struct csa_ticket *tk, long i, int64_t now_ms)
{
	char ts[CSA_TS_LEN], id[64];
	json_object_set_new(tk->e, "conversation_status", json_string(inboxgen_status(i)));
	json_object_set_new(tk->t, "resolved",
	                    json_boolean(strcmp(inboxgen_status(i), "resolved") == 0));
	const char *who = inboxgen_assigned(i);
	json_object_set_new(tk->t, "assigned_member", who ? json_string(who) : json_null());
	if (inboxgen_repeat_customer(i))
		json_object_set_new(
		    json_object_get(json_object_get(json_object_get(tk->e, "participants"), "customer"),
		                    "contact_info"),
		    "email", json_string(INBOXGEN_REPEAT_CUSTOMER));
	/* open tickets: breached (i % 3 == 0), at risk (1) or on time (2) on
	 * the resolution deadline; the first response was given long ago */
	json_t *sla = json_object_get(tk->e, "sla_tracking");
	if (strcmp(inboxgen_status(i), "resolved") != 0) {
		int64_t created = now_ms - 10 * 3600000LL;
		int64_t due = i % 3 == 0   ? now_ms - 3600000LL
		              : i % 3 == 1 ? now_ms + 3600000LL
		                           : now_ms + 100 * 3600000LL + i * 1000;
		json_object_set_new(sla, "created_at", json_string(csa_ts_format(created, ts)));
		json_object_set_new(sla, "resolution_due", json_string(csa_ts_format(due, ts)));
	} else {
		json_object_set_new(sla, "resolution_due", json_null());
	}
	json_object_set_new(sla, "first_response_due", json_null());
	if (inboxgen_e_word(i)) {
		snprintf(id, sizeof(id), "inboxgen-e-%ld", i);
		add_message(tk->e, "the code " INBOXGEN_E_WORD " again", "customer", 0, id);
	}
	if (inboxgen_i_word(i)) {
		snprintf(id, sizeof(id), "inboxgen-i-%ld", i);
		add_message(tk->i, "note: " INBOXGEN_I_WORD " seen", "cs_agent", 1, id);
	}
	int kind = (int)(i % 11);
	if (kind > 3)
		return;
	json_t *rec = json_array_get(json_object_get(tk->t, "agent_decisions"), 0);
	json_t *dec = json_object_get(rec, "decision");
	const char *review = kind == 0 || kind == 3 ? "decide" : kind == 1 ? "audit" : "none";
	json_object_set_new(dec, "automation",
	                    json_pack("{s:{s:s, s:s, s:b}}", "category", "decision_id",
	                              csa_json_str(dec, "decision_id"), "review", review,
	                              "autonomous", kind == 1 || kind == 2));
	json_object_set_new(rec, "human_confirmed", json_boolean(kind == 3));
	if (kind == 3)
		json_object_set_new(rec, "learning_feedback",
		                    json_pack("{s:b, s:n, s:[{s:s, s:s}]}", "correct", 1,
		                              "improvement_notes", "pattern_updates",
		                              "decision_type", "category", "human_value",
		                              csa_json_str(dec, "category")));
}

int inboxgen_fill(struct csa_ws *ws, long n, uint64_t seed, int64_t now_ms, struct csa_err *err)
{
	struct csa_gen *g = csa_gen_new(seed, now_ms - 40LL * 86400000LL);
	struct csa_ticket *batch = calloc(GROUP, sizeof(*batch));
	struct csa_ticket *ptrs[GROUP];
	const struct csa_config *cfg = csa_ws_config(ws);
	int rc = g && batch ? CSA_OK : csa_error(err, CSA_ENOMEM, "inboxgen: out of memory");
	size_t nb = 0;
	for (long i = 0; i < n && rc == CSA_OK; i++) {
		json_t *h = csa_gen_next(g);
		rc = csa_import_ticket(cfg, h, (size_t)i + 1, &batch[nb], err);
		json_decref(h);
		if (rc)
			break;
		vary(&batch[nb], i, now_ms);
		ptrs[nb] = &batch[nb];
		if (++nb == GROUP || i == n - 1) {
			rc = csa_store_commit_many(ws->store, ptrs, nb, CSA_DOC_ALL, err);
			for (size_t k = 0; k < nb; k++)
				csa_ticket_release(&batch[k]);
			nb = 0;
		}
	}
	for (size_t k = 0; k < nb; k++)
		csa_ticket_release(&batch[k]);
	csa_config_unref(cfg);
	free(batch);
	csa_gen_free(g);
	return rc;
}
