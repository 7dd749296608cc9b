/*
 * The platform hooks (/hooks/...): each platform's request is checked the
 * platform's way (the route's verify function: a shared token, Slack's or
 * Trello's HMAC), turned into one normalised inbound message, mapped to
 * its ticket (a [T_NO] tag, else the platform thread through the channel
 * map, chanmap.h; Flock, which has no threads, by the tag only) and
 * handed to the pipeline. A message that names no
 * known thread starts a ticket when it comes from a customer.
 */
#include "server/server_internal.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/pipeline.h"
#include "outbound/email.h"
#include "server/channels.h"
#include "server/chanmap.h"
#include "store/ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define secret csa_server_secret

/* ---- signatures ------------------------------------------------------------------ */

int csa_hook_verify_email(struct call *c, struct csa_err *err)
{
	return csa_token_equal(secret(c->s, "email_token_env"), csa_header(c, "X-CSA-Hook-Token"),
	                       err);
}

int csa_hook_verify_slack(struct call *c, struct csa_err *err)
{
	return csa_slack_verify(
	    secret(c->s, "slack_signing_secret_env"), csa_header(c, "X-Slack-Request-Timestamp"),
	    csa_header(c, "X-Slack-Signature"), c->bytes, c->nbytes, csa_now_ms() / 1000, err);
}

/* Mattermost puts its token in the body. */
int csa_hook_verify_mattermost(struct call *c, struct csa_err *err)
{
	json_t *j;
	int rc = csa_json_parse(c->bytes, c->nbytes, "request body", &j, err);
	if (rc)
		return rc;
	rc = csa_token_equal(secret(c->s, "mattermost_token_env"), csa_json_str(j, "token"), err);
	json_decref(j);
	return rc;
}

int csa_hook_verify_flock(struct call *c, struct csa_err *err)
{
	return csa_flock_verify(secret(c->s, "flock_app_secret_env"),
	                        csa_header(c, "X-Flock-Event-Token"), csa_now_ms() / 1000, err);
}

int csa_hook_verify_trello(struct call *c, struct csa_err *err)
{
	const struct csa_config *cfg = csa_ws_config(c->s->ws);
	const char *url = csa_json_str(csa_config_get(cfg, "channels"), "trello_callback_url");
	int rc = csa_trello_verify(secret(c->s, "trello_secret_env"), url,
	                           csa_header(c, "X-Trello-Webhook"), c->bytes, c->nbytes, err);
	csa_config_unref(cfg);
	return rc;
}

/* ---- delivery to the pipeline ------------------------------------------------------ */

/* One normalised inbound message. */
struct inbound {
	const char *platform; /* email, trello, slack, mattermost */
	int internal;
	char ticket[80];  /* known ticket, or "" */
	char thread[300]; /* key binding the conversation to a ticket */
	const char *external_id;
	const char *sender_id;
	const char *sender_name;
	const char *content;
	json_t *platform_specific; /* borrowed */
	int echo_check;            /* the platform reports csa's own posts back */
	int from_map;              /* ticket came from the channel map, not a tag */
};

/* The ticket bound to a thread key into in->ticket: 0 (found or not), or
 * the failure's body. */
static json_t *lookup(struct call *c, const char *key, struct inbound *in)
{
	struct csa_err err = {0};
	int rc = csa_chanmap_get(c->s->chanmap, key, in->ticket, sizeof(in->ticket), &err);
	if (rc != CSA_OK)
		in->ticket[0] = '\0';
	if (rc == CSA_OK || rc == CSA_ENOENT)
		return NULL;
	return csa_fail_err(c, &err);
}

/* Bind a thread key to the ticket a message went to. The message is
 * stored by now, so a failure does not fail the request (a retry would
 * not bind it either, and might start a second ticket): the answer says
 * so and the log has it. */
static void bind(struct call *c, const char *key, json_t *res)
{
	const char *tid = csa_json_str(res, "ticket_id");
	struct csa_err err = {0};
	if (!tid || !key[0] || csa_chanmap_bind(c->s->chanmap, key, tid, &err) == CSA_OK)
		return;
	fprintf(stderr, "csa serve: %s\n", err.msg);
	json_object_set_new(res, "thread_map_error", json_string(err.msg));
}

/* 1 when a message is csa's own reply coming back: a platform reports
 * what csa posted (a card comment, a thread reply) as a new message. Its
 * text is that of a reply on the ticket (an E message whose sender is not
 * the customer). */
static int own_echo(struct csa_server *s, const struct inbound *in)
{
	struct csa_ticket tk;
	if (!in->ticket[0] || csa_store_load(s->ws->store, in->ticket, &tk, NULL) != CSA_OK)
		return 0;
	int echo = 0;
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(tk.e, "messages"), i, m)
	{
		const char *sender = csa_json_str(m, "sender"), *text = csa_json_str(m, "content");
		echo |= sender && strcmp(sender, "customer") != 0 && text &&
		        strcmp(text, in->content) == 0;
	}
	csa_ticket_release(&tk);
	return echo;
}

/*
 * A customer's message on a thread no ticket has yet: the thread is bound
 * to a new ticket id before the ticket is made, and the first binding
 * wins, on this node or any other sharing the map. So a platform that
 * sends the same message twice at once, to two nodes behind a load
 * balancer or to two threads of one, gets one ticket: every receiver
 * reads back the same id, one of them makes the ticket, and the others
 * add the message to it, where its message id makes it a duplicate.
 * in->ticket gets the bound id, *won whether it is the one made here;
 * returns 0, or the failure's body.
 */
static json_t *claim_thread(struct call *c, struct inbound *in, int *won)
{
	char id[CSA_ID_MAX + 1];
	struct csa_err err = {0};
	csa_id_generate("T", id, sizeof(id));
	if (csa_chanmap_bind(c->s->chanmap, in->thread, id, &err) ||
	    csa_chanmap_get(c->s->chanmap, in->thread, in->ticket, sizeof(in->ticket), &err))
		return csa_fail_err(c, &err);
	*won = strcmp(in->ticket, id) == 0;
	return NULL;
}

/* The document that adds 'msg' to ticket in->ticket (a new reference to
 * it is taken). */
static json_t *add_doc(const struct inbound *in, json_t *msg)
{
	return json_pack("{s:s, s:s, s:O}", "ticket_id", in->ticket, "side",
	                 in->internal ? "internal" : "external", "message", msg);
}

/* The document that starts ticket 'id' with 'msg' (a new reference to
 * it is taken). */
static json_t *new_ticket_doc(const struct inbound *in, const char *id, json_t *msg)
{
	return json_pack("{s:s, s:s, s:s?, s:{s:s?, s:{s:s?}}, s:[O]}", "ticket_id", id,
	                 "platform", in->platform, "client_name", in->sender_name, "customer",
	                 "client_name", in->sender_name, "contact_info", "address", in->sender_id,
	                 "messages", msg);
}

static json_t *deliver(struct call *c, struct inbound *in)
{
	struct csa_server *s = c->s;
	if (!in->content || !*in->content)
		return csa_fail(c, 400, "bad_request", "%s message without text", in->platform);
	json_t *fail;
	/* the ticket came from the thread map (not from a [T_NO] tag): one
	 * that is bound but not made yet is made by whoever finds it so */
	int mapped = in->from_map, create = 0;
	if (!in->ticket[0] && in->thread[0]) {
		if ((fail = lookup(c, in->thread, in)))
			return fail;
		mapped = in->ticket[0] != '\0';
	}
	if (!in->ticket[0] && !in->internal && in->thread[0]) {
		if ((fail = claim_thread(c, in, &create)))
			return fail;
		mapped = 1;
	}
	/* stored as the customer's, it would run the pipeline, whose
	 * autonomous reply would come back again; as a note, it would say
	 * twice what the timeline shows */
	if (in->echo_check && own_echo(s, in))
		return json_pack("{s:s, s:s}", "ignored", "csa's own reply", "ticket_id",
		                 in->ticket);
	char mid[48];
	struct csa_err err = {0};
	if (csa_external_message_id(in->platform, in->external_id ? in->external_id : in->content,
	                            mid, &err))
		return csa_fail_err(c, &err);
	json_t *msg = json_pack("{s:s, s:s, s:s?, s:{s:O?}}", "content", in->content, "message_id",
	                        mid, "sender_id", in->sender_id, "metadata", "platform_specific",
	                        in->platform_specific);
	if (!msg)
		return csa_fail(c, 400, "bad_request", "%s message is not valid UTF-8 text",
		                in->platform);
	if (in->internal) {
		static const char *const plats[] = {"slack", "mattermost", "flock"};
		for (size_t i = 0; i < 3; i++)
			if (strcmp(in->platform, plats[i]) == 0)
				json_object_set_new(msg, "platform", json_string(plats[i]));
		json_object_set_new(msg, "sender", json_string("cs_agent"));
	}
	json_t *doc, *res = NULL;
	if (in->ticket[0]) {
		doc = create ? new_ticket_doc(in, in->ticket, msg) : add_doc(in, msg);
	} else if (in->internal) {
		json_decref(msg);
		return csa_fail(c, 422, "unmapped",
		                "internal message names no ticket: put [T_NO] in it or reply in a "
		                "ticket's thread");
	} else {
		/* a customer's message on no thread (a platform without one) */
		doc = json_pack("{s:s, s:s?, s:{s:s?, s:{s:s?}}, s:[O]}", "platform", in->platform,
		                "client_name", in->sender_name, "customer", "client_name",
		                in->sender_name, "contact_info", "address", in->sender_id,
		                "messages", msg);
	}
	if (!doc) {
		json_decref(msg);
		return csa_fail(c, 400, "bad_request",
		                "%s message: sender or ids are not valid UTF-8 text", in->platform);
	}
	int rc = csa_pipeline_ingest(s->pipe, doc, &res, &err);
	json_decref(doc);
	if (mapped && !in->internal && !create && rc == CSA_ENOENT) {
		/* the thread's ticket is bound but not made: its claimer is
		 * making it now, or failed to. Made here */
		memset(&err, 0, sizeof(err));
		doc = new_ticket_doc(in, in->ticket, msg);
		rc = doc ? csa_pipeline_ingest(s->pipe, doc, &res, &err)
		         : csa_error(&err, CSA_ENOMEM, "out of memory starting ticket '%s'",
		                     in->ticket);
		json_decref(doc);
	}
	if (mapped && !in->internal && rc == CSA_EEXIST) {
		/* another receiver made the thread's ticket first: the message
		 * goes to it, a duplicate there if it is the same one */
		memset(&err, 0, sizeof(err));
		doc = add_doc(in, msg);
		rc = doc ? csa_pipeline_ingest(s->pipe, doc, &res, &err)
		         : csa_error(&err, CSA_ENOMEM, "out of memory adding to ticket '%s'",
		                     in->ticket);
		json_decref(doc);
	}
	json_decref(msg);
	if (rc)
		return csa_fail_err(c, &err);
	bind(c, in->thread, res);
	c->status = json_is_true(json_object_get(res, "duplicate")) ? 200 : 202;
	return res;
}

/* ---- the hooks --------------------------------------------------------------------- */

/* 1 when an e-mail comes from channels.email.from: csa's own reply (a
 * copy the mailbox got back), not the customer's. */
static int own_address(struct csa_server *s, const char *from)
{
	char addr[300];
	const struct csa_config *cfg = csa_ws_config(s->ws);
	const char *own = json_string_value(csa_config_get(cfg, "channels.email.from"));
	int same = own && from && csa_mail_addr_of(from, addr, sizeof(addr), "From", NULL) == 0 &&
	           strcasecmp(addr, own) == 0;
	csa_config_unref(cfg);
	return same;
}

/* E-mail as JSON from an inbound relay, or raw RFC 5322. */
static json_t *hook_email(struct call *c, int raw)
{
	struct csa_err err = {0};
	json_t *m = NULL, *fail = NULL;
	if (raw ? csa_email_parse(c->bytes, c->nbytes, &m, &err) != CSA_OK
	        : csa_bytes_json(c, &m, &fail) != 0)
		return fail ? fail : csa_fail_err(c, &err);
	struct inbound in = {.platform = "email"};
	if (own_address(c->s, csa_json_str(m, "from"))) {
		json_decref(m);
		return json_pack("{s:s}", "ignored", "an e-mail from csa's own address");
	}
	const char *subject = csa_json_str(m, "subject");
	const char *mid = csa_json_str(m, "message_id");
	const char *irt = csa_json_str(m, "in_reply_to");
	const char *text = csa_json_str(m, "text");
	/* a reply is mapped by the ticket tag in its subject, else by the
	 * message it answers; a relay's retry by the message itself */
	char seen[300] = "";
	if (mid)
		snprintf(seen, sizeof(seen), "email:%.280s", mid);
	if (!csa_subject_ticket(subject, in.ticket, sizeof(in.ticket)) && mid) {
		if ((fail = lookup(c, seen, &in))) {
			json_decref(m);
			return fail;
		}
		in.from_map = in.ticket[0] != '\0';
	}
	if (!in.ticket[0] && irt)
		snprintf(in.thread, sizeof(in.thread), "email:%.280s", irt);
	if (!in.ticket[0] && !irt && csa_json_str(m, "references")) {
		const char *r = csa_json_str(m, "references");
		const char *last = strrchr(r, '<');
		snprintf(in.thread, sizeof(in.thread), "email:%.280s", last ? last : r);
	}
	/* a message that starts a conversation is its own thread: the key a
	 * relay's retry (to this node or another) is claimed under */
	if (!in.ticket[0] && !in.thread[0] && mid)
		snprintf(in.thread, sizeof(in.thread), "%s", seen);
	in.external_id = mid;
	in.sender_id = csa_json_str(m, "from");
	in.sender_name = in.sender_id;
	char *content = NULL;
	if (subject && text && asprintf(&content, "%s\n\n%s", subject, text) < 0) {
		json_decref(m);
		return csa_fail(c, 500, "internal", "out of memory reading an e-mail");
	}
	in.content = content ? content : text;
	in.platform_specific = json_pack("{s:s?, s:s?, s:s?}", "message_id", mid, "subject",
	                                 subject, "in_reply_to", irt);
	json_t *out = in.platform_specific
	                  ? deliver(c, &in)
	                  : csa_fail(c, 500, "internal", "out of memory reading an e-mail");
	/* later replies to this message find the same ticket */
	if (c->status < 300)
		bind(c, seen, out);
	free(content);
	json_decref(in.platform_specific);
	json_decref(m);
	return out;
}

json_t *csa_h_hook_email(struct call *c)
{
	return hook_email(c, 0);
}

json_t *csa_h_hook_email_raw(struct call *c)
{
	return hook_email(c, 1);
}

json_t *csa_h_hook_slack(struct call *c)
{
	json_t *j, *fail;
	if (csa_bytes_json(c, &j, &fail))
		return fail;
	json_t *out;
	const char *type = csa_json_str(j, "type");
	if (csa_json_str(j, "challenge") && type && strcmp(type, "url_verification") == 0) {
		out = json_pack("{s:s}", "challenge", csa_json_str(j, "challenge"));
	} else {
		json_t *ev = json_object_get(j, "event");
		struct inbound in = {.platform = "slack", .internal = 1, .echo_check = 1};
		const char *ch = csa_json_str(ev, "channel"), *ts = csa_json_str(ev, "ts"),
		           *root = csa_json_str(ev, "thread_ts");
		in.content = csa_json_str(ev, "text");
		csa_subject_ticket(in.content, in.ticket, sizeof(in.ticket));
		snprintf(in.thread, sizeof(in.thread), "slack:%.100s:%.100s", ch ? ch : "",
		         root ? root
		         : ts ? ts
		              : "");
		in.external_id =
		    csa_json_str(ev, "client_msg_id") ? csa_json_str(ev, "client_msg_id") : ts;
		in.sender_id = csa_json_str(ev, "user");
		in.platform_specific = ev;
		out = deliver(c, &in);
	}
	json_decref(j);
	return out;
}

json_t *csa_h_hook_mattermost(struct call *c)
{
	json_t *j, *fail;
	if (csa_bytes_json(c, &j, &fail))
		return fail;
	struct inbound in = {.platform = "mattermost", .internal = 1, .echo_check = 1};
	in.content = csa_json_str(j, "text");
	csa_subject_ticket(in.content, in.ticket, sizeof(in.ticket));
	const char *root = csa_json_str(j, "root_id"), *post = csa_json_str(j, "post_id"),
	           *channel = csa_json_str(j, "channel_id");
	snprintf(in.thread, sizeof(in.thread), "mattermost:%.100s:%.100s", channel ? channel : "",
	         root && *root ? root
	         : post        ? post
	                       : "");
	in.external_id = post;
	in.sender_id = csa_json_str(j, "user_name");
	json_object_del(j, "token"); /* the secret is not kept with the message */
	in.platform_specific = j;
	json_t *out = deliver(c, &in);
	json_decref(j);
	return out;
}

/* Flock's outgoing webhook posts the message itself ({"uid", "from", "to",
 * "text", ...}); an app's event wraps it in "message". Flock has no
 * threads: a message names its ticket with a [T_NO] tag. */
json_t *csa_h_hook_flock(struct call *c)
{
	json_t *j, *fail;
	if (csa_bytes_json(c, &j, &fail))
		return fail;
	json_t *m =
	    json_is_object(json_object_get(j, "message")) ? json_object_get(j, "message") : j;
	struct inbound in = {.platform = "flock", .internal = 1};
	in.content = csa_json_str(m, "text");
	csa_subject_ticket(in.content, in.ticket, sizeof(in.ticket));
	in.external_id = csa_json_str(m, "uid");
	in.sender_id = csa_json_str(m, "from");
	in.platform_specific = m;
	json_t *out = deliver(c, &in);
	json_decref(j);
	return out;
}

json_t *csa_h_hook_trello(struct call *c)
{
	json_t *j, *fail;
	if (csa_bytes_json(c, &j, &fail))
		return fail;
	json_t *act = json_object_get(j, "action");
	const char *type = csa_json_str(act, "type");
	json_t *out;
	if (!type || strcmp(type, "commentCard") != 0) {
		out = json_pack("{s:s, s:s?}", "ignored", "not a card comment", "type", type);
	} else {
		json_t *data = json_object_get(act, "data"),
		       *member = json_object_get(act, "memberCreator");
		struct inbound in = {.platform = "trello", .echo_check = 1};
		in.content = csa_json_str(data, "text");
		const char *card = csa_json_str(json_object_get(data, "card"), "id");
		snprintf(in.thread, sizeof(in.thread), "trello:%.200s", card ? card : "");
		in.external_id = csa_json_str(act, "id");
		in.sender_id = csa_json_str(member, "username");
		in.sender_name = csa_json_str(member, "fullName");
		in.platform_specific = json_object_get(data, "card");
		out = deliver(c, &in);
	}
	json_decref(j);
	return out;
}

json_t *csa_h_hook_probe(struct call *c)
{
	(void)c;
	return json_pack("{s:s}", "status", "ok");
}
