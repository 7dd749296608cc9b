/*
 * Replies to the customer on the ticket's channel: what a reply becomes in
 * the outbox, by E's platform.
 *
 *   email            an e-mail over SMTP: To the customer, Subject with the
 *                    [T_NO] tag, In-Reply-To and References to the
 *                    customer's last message, so mail clients thread it
 *   trello           a comment on the ticket's card (Trello's REST API)
 *   web_chat, phone  the generic webhook (the team's relay)
 * and, beside it, a reply in each Slack or Mattermost thread the ticket is
 * discussed in (the threads its internal messages came from), so the team
 * sees in place what the customer was told.
 *
 * A plan is made before the reply is stored (a channel that cannot take
 * it refuses the reply instead of storing what would never be sent) and
 * queued after: every item under the key "reply|<T_NO>|<message id>|
 * <target>", so a retry of the request queues nothing twice.
 */
#include "server/server_internal.h"
#include "server/replies.h"
#include "base/ids.h"
#include "base/json.h"
#include "base/ts.h"
#include "outbound/email.h"
#include "outbound/outbox.h"
#include "flow/pipeline.h"
#include "server/chanmap.h"
#include "store/ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A channel setting of csa.json (borrowed from the snapshot 'cfg'). */
static const char *setting(const struct csa_config *cfg, const char *dotted)
{
	return json_string_value(csa_config_get(cfg, dotted));
}

static int add_item(struct csa_reply_plan *p, const char *ticket, const char *mid,
                    const char *target, const char *url, json_t *payload, struct csa_err *err)
{
	if (!payload)
		return csa_error(err, CSA_ENOMEM, "out of memory planning the reply to '%s'",
		                 ticket);
	if (p->n == CSA_REPLY_ITEMS_MAX) {
		json_decref(payload);
		return CSA_OK; /* enough threads: the customer's channel came first */
	}
	struct csa_reply_item *it = &p->v[p->n++];
	snprintf(it->key, sizeof(it->key), "reply|%s|%s|%s", ticket, mid, target);
	snprintf(it->target, sizeof(it->target), "%s", target);
	snprintf(it->url, sizeof(it->url), "%s", url);
	it->payload = payload;
	return CSA_OK;
}

/* The customer's messages on E, newest last. */
static json_t *last_customer_message(const json_t *e)
{
	json_t *last = NULL, *m;
	size_t i;
	json_array_foreach(json_object_get(e, "messages"), i, m)
	{
		const char *s = csa_json_str(m, "sender");
		if (s && strcmp(s, "customer") == 0)
			last = m;
	}
	return last;
}

static json_t *platform_specific(const json_t *m)
{
	return json_object_get(json_object_get(m, "metadata"), "platform_specific");
}

void csa_reply_subject(const json_t *e, const char *ticket, const char *fallback, char *out,
                       size_t n)
{
	const char *subj = NULL;
	json_t *m;
	size_t i;
	json_array_foreach(json_object_get(e, "messages"), i, m)
	{
		const char *s = csa_json_str(m, "sender");
		if (!subj && s && strcmp(s, "customer") == 0)
			subj = csa_json_str(platform_specific(m), "subject");
	}
	while (subj && (strncasecmp(subj, "re:", 3) == 0 || strncasecmp(subj, "aw:", 3) == 0)) {
		subj += 3;
		while (*subj == ' ')
			subj++;
	}
	char tag[CSA_ID_MAX + 4];
	snprintf(tag, sizeof(tag), "[%s]", ticket);
	if (subj && strstr(subj, tag))
		snprintf(out, n, "%.900s", subj);
	else
		snprintf(out, n, "%s %.900s", tag,
		         subj && *subj ? subj : fallback ? fallback : "Your request");
}

/* The customer's address: contact_info's "email" or "address", else who
 * sent their last message. */
static int customer_address(const json_t *e, char *out, size_t n, struct csa_err *err)
{
	json_t *info = json_object_get(
	    json_object_get(json_object_get(e, "participants"), "customer"), "contact_info");
	const char *a = csa_json_str(info, "email");
	if (!a)
		a = csa_json_str(info, "address");
	if (!a)
		a = csa_json_str(last_customer_message(e), "sender_id");
	return csa_mail_addr_of(a, out, n, "the customer's e-mail address", err);
}

/* The customer's name for the To header: client_name without an address
 * in angle brackets that a hook may have kept with it. */
static void display_name(const json_t *e, char *out, size_t n)
{
	const char *name = csa_json_str(
	    json_object_get(json_object_get(e, "participants"), "customer"), "client_name");
	snprintf(out, n, "%.200s", name ? name : "");
	char *lt = strchr(out, '<');
	if (lt)
		*lt = '\0';
	size_t k = strlen(out);
	while (k && (out[k - 1] == ' ' || out[k - 1] == '"'))
		out[--k] = '\0';
	size_t b = strspn(out, " \"");
	memmove(out, out + b, k - b + 1);
}

static int plan_email(const struct csa_config *cfg, const struct csa_ticket *tk,
                      const struct csa_reply *r, struct csa_reply_plan *p, struct csa_err *err)
{
	const char *url = getenv("CSA_SMTP_URL");
	if (!url || !*url)
		url = setting(cfg, "channels.email.smtp_url");
	const char *from = setting(cfg, "channels.email.from");
	if (!url)
		return csa_error(
		    err, CSA_ESTATE,
		    "ticket '%s' is answered by e-mail, but no SMTP server is configured "
		    "(CSA_SMTP_URL or csa.json channels.email.smtp_url)",
		    tk->id);
	if (!from)
		return csa_error(err, CSA_ESTATE,
		                 "ticket '%s' is answered by e-mail, but no sender is configured "
		                 "(csa.json channels.email.from)",
		                 tk->id);
	char to[300], name[208], subject[1024], msgid[400], refs[700] = "";
	int rc = customer_address(tk->e, to, sizeof(to), err);
	if (rc)
		return csa_error_prefix(err, "ticket '%s': ", tk->id);
	csa_reply_subject(tk->e, tk->id, NULL, subject, sizeof(subject));
	display_name(tk->e, name, sizeof(name));
	snprintf(msgid, sizeof(msgid), "<%s.%s%s>", r->message_id, tk->id,
	         strchr(from, '@') ? strchr(from, '@') : "@invalid");
	json_t *ps = platform_specific(last_customer_message(tk->e));
	const char *last = csa_json_str(ps, "message_id");
	snprintf(refs, sizeof(refs), "%.340s %.340s",
	         csa_json_str(ps, "in_reply_to") ? csa_json_str(ps, "in_reply_to") : "",
	         last ? last : "");
	struct csa_mail m = {.from_name = setting(cfg, "channels.email.from_name"),
	                     .from = from,
	                     .to_name = name,
	                     .to = to,
	                     .subject = subject,
	                     .message_id = msgid,
	                     .in_reply_to = last,
	                     .references = refs,
	                     .text = r->text,
	                     .date_ms = csa_now_ms()};
	char *data;
	size_t len;
	if ((rc = csa_mail_compose(&m, &data, &len, err)))
		return csa_error_prefix(err, "ticket '%s': ", tk->id);
	json_t *payload =
	    json_pack("{s:s, s:s, s:s%}", "mail_from", from, "rcpt_to", to, "data", data, len);
	free(data);
	/* the customer's answer to this e-mail finds the ticket (hooks.c) */
	snprintf(p->email_thread, sizeof(p->email_thread), "email:%.380s", msgid);
	return add_item(p, tk->id, r->message_id, "email", url, payload, err);
}

const char *csa_reply_trello_card(const json_t *e)
{
	const char *card = csa_json_str(platform_specific(last_customer_message(e)), "id");
	/* the id goes into a URL path: only an id's characters */
	return card && csa_id_valid(card) ? card : NULL;
}

/* The card of a ticket on Trello: the card its customer wrote on last. */
static int plan_trello(const struct csa_config *cfg, const struct csa_ticket *tk,
                       const struct csa_reply *r, struct csa_reply_plan *p, struct csa_err *err)
{
	const char *api = setting(cfg, "channels.trello_api_url");
	const char *card = csa_reply_trello_card(tk->e);
	if (!api)
		return csa_error(
		    err, CSA_ESTATE,
		    "ticket '%s' is answered on Trello, but channels.trello_api_url is "
		    "not configured",
		    tk->id);
	if (!card)
		return csa_error(
		    err, CSA_ESTATE,
		    "ticket '%s' is answered on Trello, but no card is known for it (no "
		    "customer message came from a card)",
		    tk->id);
	char url[1024];
	snprintf(url, sizeof(url), "%.900s/1/cards/%s/actions/comments", api, card);
	return add_item(p, tk->id, r->message_id, "trello", url,
	                json_pack("{s:s}", "text", r->text), err);
}

static int plan_webhook(struct csa_server *s, const struct csa_ticket *tk,
                        const struct csa_reply *r, struct csa_reply_plan *p, struct csa_err *err)
{
	const char *url = csa_server_secret(s, "webhook_url_env");
	const char *platform = csa_json_str(tk->e, "platform");
	if (!url || !*url)
		return csa_error(
		    err, CSA_ESTATE,
		    "ticket '%s' is answered on %s through the generic webhook, but its "
		    "URL is not set (the variable csa.json channels.webhook_url_env "
		    "names)",
		    tk->id, platform);
	json_t *payload = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:s?, s:s?}", "ticket_id",
	                            tk->id, "to", "customer", "platform", platform, "message_id",
	                            r->message_id, "message", r->text, "sender", r->sender,
	                            "sender_id", r->sender_id, "decision_id", r->decision_id);
	return add_item(p, tk->id, r->message_id, "webhook", url, payload, err);
}

/* One Slack or Mattermost thread of the ticket's internal messages, unless
 * it is planned already. */
static int plan_thread(struct csa_server *s, const struct csa_config *cfg,
                       const struct csa_ticket *tk, const struct csa_reply *r, const json_t *msg,
                       struct csa_reply_plan *p, struct csa_err *err)
{
	const char *plat = csa_json_str(msg, "platform");
	json_t *ps = platform_specific(msg);
	int slack = plat && strcmp(plat, "slack") == 0;
	if (!plat || (!slack && strcmp(plat, "mattermost") != 0))
		return CSA_OK;
	const char *chan = csa_json_str(ps, slack ? "channel" : "channel_id");
	const char *root = csa_json_str(ps, slack ? "thread_ts" : "root_id");
	if (!root || !*root)
		root = csa_json_str(ps, slack ? "ts" : "post_id");
	const char *token =
	    csa_server_secret(s, slack ? "slack_bot_token_env" : "mattermost_bot_token_env");
	const char *api =
	    setting(cfg, slack ? "channels.slack_api_url" : "channels.mattermost_url");
	if (!chan || !root || !token || !*token || !api)
		return CSA_OK; /* a thread csa cannot answer in: the channel reply stands */
	char target[32];
	snprintf(target, sizeof(target), "%s_thread", plat);
	for (int i = 0; i < p->n; i++) {
		const char *k = csa_json_str(p->v[i].payload, slack ? "thread_ts" : "root_id");
		if (strcmp(p->v[i].target, target) == 0 && k && strcmp(k, root) == 0)
			return CSA_OK;
	}
	char url[1024], key[120];
	snprintf(url, sizeof(url), "%.900s%s", api, slack ? "/chat.postMessage" : "/api/v4/posts");
	/* one item per thread: the key names it */
	snprintf(key, sizeof(key), "%s|%.40s", r->message_id, root);
	json_t *payload = slack ? json_pack("{s:s, s:s, s:s}", "channel", chan, "thread_ts", root,
	                                    "text", r->text)
	                        : json_pack("{s:s, s:s, s:s}", "channel_id", chan, "root_id", root,
	                                    "message", r->text);
	return add_item(p, tk->id, key, target, url, payload, err);
}

int csa_reply_plan(struct csa_server *s, const struct csa_ticket *tk, const struct csa_reply *r,
                   struct csa_reply_plan *p, struct csa_err *err)
{
	memset(p, 0, sizeof(*p));
	const struct csa_config *cfg = csa_ws_config(s->ws);
	const char *platform = csa_json_str(tk->e, "platform");
	int rc;
	if (!platform)
		rc = csa_error(err, CSA_ESCHEMA, "ticket '%s': E has no platform", tk->id);
	else if (strcmp(platform, "email") == 0)
		rc = plan_email(cfg, tk, r, p, err);
	else if (strcmp(platform, "trello") == 0)
		rc = plan_trello(cfg, tk, r, p, err);
	else
		rc = plan_webhook(s, tk, r, p, err);
	json_t *m;
	size_t i;
	json_array_foreach(json_object_get(tk->i, "messages"), i, m)
	{
		if (rc == CSA_OK)
			rc = plan_thread(s, cfg, tk, r, m, p, err);
	}
	csa_config_unref(cfg);
	if (rc)
		csa_reply_plan_release(p);
	return rc;
}

int csa_reply_enqueue(struct csa_server *s, const char *ticket_id, struct csa_reply_plan *p,
                      struct csa_err *err)
{
	for (int i = 0; i < p->n; i++) {
		struct csa_reply_item *it = &p->v[i];
		if (csa_outbox_enqueue(s->outbox, it->key, ticket_id, it->target, it->url,
		                       it->payload, err) < 0)
			return csa_error_prefix(err,
			                        "reply to '%s' stored but not queued: ", ticket_id);
	}
	/* the customer answering our e-mail lands on this ticket; without the
	 * binding the [T_NO] tag of the subject still finds it */
	struct csa_err berr = {0};
	if (p->email_thread[0] &&
	    csa_chanmap_bind(s->chanmap, p->email_thread, ticket_id, &berr) != CSA_OK)
		fprintf(stderr, "csa serve: %s\n", berr.msg);
	return CSA_OK;
}

void csa_reply_plan_release(struct csa_reply_plan *p)
{
	for (int i = 0; i < p->n; i++)
		json_decref(p->v[i].payload);
	p->n = 0;
}

/* The targets a plan goes to, for the answer. */
static json_t *targets_of(const struct csa_reply_plan *p)
{
	json_t *a = json_array();
	for (int i = 0; a && i < p->n; i++)
		json_array_append_new(
		    a, json_pack("{s:s, s:s}", "target", p->v[i].target, "key", p->v[i].key));
	return a;
}

int csa_reply_send(struct csa_server *s, const char *ticket_id, const json_t *message,
                   json_t **result, struct csa_err *err)
{
	struct csa_reply r = {.message_id = csa_json_str(message, "message_id"),
	                      .text = csa_json_str(message, "content"),
	                      .sender = csa_json_str(message, "sender"),
	                      .sender_id = csa_json_str(message, "sender_id"),
	                      .decision_id = csa_json_str(message, "decision_id")};
	*result = NULL;
	if (!r.message_id || !csa_id_valid(r.message_id) || !r.text || !r.sender)
		return csa_error(err, CSA_EINVAL,
		                 "a reply needs message_id (1-64 of A-Z a-z 0-9 _ -), content and "
		                 "sender");
	struct csa_ticket tk;
	int rc = csa_store_load(s->ws->store, ticket_id, &tk, err);
	if (rc)
		return rc;
	struct csa_reply_plan p;
	rc = csa_reply_plan(s, &tk, &r, &p, err);
	csa_ticket_release(&tk);
	if (rc)
		return rc;
	json_t *stored = json_deep_copy(message);
	json_object_del(stored, "decision_id"); /* not a field of E's messages */
	rc = stored ? csa_pipeline_reply(s->pipe, ticket_id, stored, result, err)
	            : csa_error(err, CSA_ENOMEM, "out of memory storing a reply");
	json_decref(stored);
	/* queued also when the reply was stored before (a retry): what is
	 * queued already is not queued twice */
	if (rc == CSA_OK && (rc = csa_reply_enqueue(s, ticket_id, &p, err)) == CSA_OK)
		json_object_set_new(*result, "deliveries", targets_of(&p));
	if (rc && *result) {
		json_decref(*result);
		*result = NULL;
	}
	csa_reply_plan_release(&p);
	return rc;
}

int csa_reply_credentials(struct csa_server *s, struct csa_err *err)
{
	const char *url = getenv("CSA_SMTP_URL");
	if (url && *url && strncmp(url, "smtp://", 7) != 0 && strncmp(url, "smtps://", 8) != 0)
		return csa_error(err, CSA_EINVAL,
		                 "CSA_SMTP_URL must start smtp:// or smtps://, not '%.60s'", url);
	const struct csa_config *cfg = csa_ws_config(s->ws);
	const char *from = setting(cfg, "channels.email.from");
	int rc =
	    from && !csa_mail_addr_valid(from)
	        ? csa_error(err, CSA_EINVAL,
	                    "csa.json channels.email.from: '%.80s' is not an e-mail address", from)
	        : CSA_OK;
	csa_config_unref(cfg);
	if (rc == CSA_OK)
		rc = csa_outbox_set_credentials(s->outbox, "email", getenv("CSA_SMTP_USER"),
		                                getenv("CSA_SMTP_PASSWORD"), NULL, err);
	const char *ca = getenv("CSA_CA_FILE");
	if (rc == CSA_OK && ca && *ca && (rc = csa_outbox_set_ca_file(s->outbox, ca, err)))
		csa_error_prefix(err, "CSA_CA_FILE: ");
	static const struct {
		const char *target, *env;
	} bearer[] = {{"slack_thread", "slack_bot_token_env"},
	              {"mattermost_thread", "mattermost_bot_token_env"}};
	char h[1024];
	for (size_t i = 0; rc == CSA_OK && i < 2; i++) {
		const char *tok = csa_server_secret(s, bearer[i].env);
		if (!tok || !*tok)
			continue;
		if (strpbrk(tok, "\r\n") || strlen(tok) > 900)
			return csa_error(err, CSA_EINVAL,
			                 "the %s token holds a line break or is too long",
			                 bearer[i].target);
		snprintf(h, sizeof(h), "Authorization: Bearer %s", tok);
		rc = csa_outbox_set_credentials(s->outbox, bearer[i].target, NULL, NULL, h, err);
	}
	const char *key = csa_server_secret(s, "trello_key_env"),
	           *tok = csa_server_secret(s, "trello_token_env");
	if (rc == CSA_OK && key && tok) {
		if (strpbrk(key, "\"\r\n") || strpbrk(tok, "\"\r\n") ||
		    strlen(key) + strlen(tok) > 900)
			return csa_error(err, CSA_EINVAL,
			                 "the Trello key or token holds a quote or line break");
		/* Trello takes the key and token in an OAuth header, so they are in
		 * no URL (and no log of one) */
		snprintf(h, sizeof(h),
		         "Authorization: OAuth oauth_consumer_key=\"%s\", oauth_token=\"%s\"", key,
		         tok);
		rc = csa_outbox_set_credentials(s->outbox, "trello", NULL, NULL, h, err);
		if (rc == CSA_OK) /* the board's cards (board.c) */
			rc = csa_outbox_set_credentials(s->outbox, "trello_card", NULL, NULL, h, err);
	}
	return rc;
}
