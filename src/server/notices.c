/*
 * Which notice of a pipeline run goes to which channel: the policy part of
 * outbound messages, apart from HTTP and from the queue that delivers
 * them (outbox.h). After every run the team's notices of the updates
 * agent go to each configured team channel, the customer reply goes out
 * only when the phase let the strategy through autonomously, and the run
 * is published as a "ticket" event. Each notice is queued once per
 * decision and target (the idempotency key), so a rerun sends nothing
 * twice.
 */
#include "server/server_internal.h"
#include "base/json.h"
#include "server/channels.h"
#include "outbound/outbox.h"
#include "server/replies.h"
#include "store/ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Outbound targets: incoming-webhook URLs named by environment variables
 * (csa.json channels.*_webhook_env; the URLs carry secrets). */
static const struct {
	const char *key, *target;
} outbound[] = {{"mattermost_webhook_env", "mattermost"},
                {"slack_webhook_env", "slack"},
                {"webhook_url_env", "webhook"}};

/* Queue one notice; a failure is logged (the run is committed already,
 * there is no caller to tell) and the notice is not sent. */
static void enqueue(struct csa_server *s, const char *key, const char *ticket_id,
                    const char *target, const char *url, json_t *payload)
{
	struct csa_err err = {0};
	if (!payload)
		csa_error(&err, CSA_ENOMEM, "out of memory building the notice");
	else if (csa_outbox_enqueue(s->outbox, key, ticket_id, target, url, payload, &err) >= 0)
		err.code = CSA_OK;
	if (err.code != CSA_OK)
		fprintf(stderr, "csa serve: ticket '%s': notice '%s' to %s not queued: %s\n",
		        ticket_id, key, target, err.msg);
	json_decref(payload);
}

/*
 * A drafted reply goes to the customer on its own only when the phase let
 * the strategy decision through autonomously; otherwise it waits in review
 * like any other decision. It goes out as any reply does (replies.h): on
 * the ticket's channel, stored on E as the ai_agent's message (the
 * timeline shows it and the first response is recorded), once per
 * decision (the message id is derived from the decision id).
 */
static void queue_reply(struct csa_server *s, const char *ticket_id, const json_t *result)
{
	json_t *draft = csa_autonomous_reply(ticket_id, result);
	if (!draft)
		return;
	char mid[48];
	struct csa_err err = {0};
	json_t *res = NULL;
	const char *did = csa_json_str(draft, "decision_id");
	if (csa_external_message_id("auto", did, mid, &err) == CSA_OK) {
		json_t *msg = json_pack("{s:s, s:s, s:s, s:s, s:s}", "message_id", mid, "content",
		                        csa_json_str(draft, "message"), "sender", "ai_agent",
		                        "sender_id", "csa-selector", "decision_id", did);
		if (!msg || csa_reply_send(s, ticket_id, msg, &res, &err) == CSA_OK)
			err.code = msg ? CSA_OK : CSA_ENOMEM;
		json_decref(msg);
	}
	/* the run is committed: there is no caller to tell. A channel that is
	 * not configured is said once, not at every run. */
	int quiet = err.code == CSA_ESTATE &&
	            __atomic_exchange_n(&s->unconfigured_said, 1, __ATOMIC_RELAXED);
	if (err.code != CSA_OK && !quiet)
		fprintf(stderr, "csa serve: ticket '%s': autonomous reply of '%s' not sent: %s\n",
		        ticket_id, did, err.msg[0] ? err.msg : "out of memory");
	json_decref(res);
	json_decref(draft);
}

/* After a pipeline run: the updates agent's notices for the team go to the
 * outbox, once per decision and target. */
void csa_notices_route(void *ctx, const char *ticket_id, const json_t *result)
{
	struct csa_server *s = ctx;
	queue_reply(s, ticket_id, result);
	csa_publish(
	    s, "ticket",
	    json_pack("{s:s, s:O?, s:O?}", "ticket_id", ticket_id, "human_intervention_required",
	              json_object_get(result, "human_intervention_required"),
	              "final_recommendation", json_object_get(result, "final_recommendation")));
	json_t *upd = json_object_get(json_object_get(result, "agent_decisions"), "updates");
	const char *did = csa_json_str(upd, "decision_id");
	size_t i;
	json_t *n;
	json_array_foreach(
	    json_object_get(json_object_get(upd, "decision"), "stakeholder_notifications"), i, n)
	{
		const char *to = csa_json_str(n, "to"), *msg = csa_json_str(n, "message");
		if (!to || !msg || strcmp(to, "customer") == 0)
			continue; /* customer replies go out through review, not here */
		for (size_t k = 0; k < sizeof(outbound) / sizeof(outbound[0]); k++) {
			const char *url = csa_server_secret(s, outbound[k].key);
			if (!url || !*url)
				continue;
			char key[300];
			snprintf(key, sizeof(key), "%s|%s|%s", did ? did : ticket_id,
			         outbound[k].target, to);
			json_t *payload =
			    strcmp(outbound[k].target, "webhook") == 0
			        ? json_pack("{s:s, s:s, s:s?, s:s}", "ticket_id", ticket_id, "to",
			                    to, "decision_id", did, "message", msg)
			        : json_pack("{s:s}", "text", msg);
			enqueue(s, key, ticket_id, outbound[k].target, url, payload);
		}
	}
}
