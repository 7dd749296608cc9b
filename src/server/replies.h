/*
 * Replies to the customer on the ticket's channel (replies.c): a reply
 * becomes outbox items by E's platform (e-mail, Trello comment, generic
 * webhook) plus a reply in each Slack or Mattermost thread of the ticket.
 * Private to src/server/.
 */
#ifndef CSA_SERVER_REPLIES_H
#define CSA_SERVER_REPLIES_H

#include <jansson.h>
#include "base/err.h"
#include "store/store.h"

struct csa_server;

/* A reply (borrowed strings). */
struct csa_reply {
	const char *message_id; /* E's id of the reply message */
	const char *text;
	const char *sender;      /* cs_agent, ai_agent */
	const char *sender_id;   /* may be NULL */
	const char *decision_id; /* an autonomous reply's decision, or NULL */
};

#define CSA_REPLY_ITEMS_MAX 6 /* the channel and up to five threads */

struct csa_reply_item {
	char key[400];
	char target[32];
	char url[1024];
	json_t *payload; /* owned */
};

struct csa_reply_plan {
	struct csa_reply_item v[CSA_REPLY_ITEMS_MAX];
	int n;
	char email_thread[400]; /* "email:<Message-ID>" to bind, or "" */
};

/* The items of reply 'r' to ticket 'tk' (as loaded). CSA_ESTATE saying
 * what is missing when the ticket's channel is not configured, CSA_EINVAL
 * when the customer has no valid address; on failure 'p' holds nothing. */
int csa_reply_plan(struct csa_server *s, const struct csa_ticket *tk, const struct csa_reply *r,
                   struct csa_reply_plan *p, struct csa_err *err);

/* Queue a plan's items (a key already queued is not queued again) and
 * bind an e-mail reply's Message-ID to the ticket. 'p' stays the caller's. */
int csa_reply_enqueue(struct csa_server *s, const char *ticket_id, struct csa_reply_plan *p,
                      struct csa_err *err);

void csa_reply_plan_release(struct csa_reply_plan *p);

/* A reply to the customer ('message': E message fields with message_id,
 * content, sender, optionally sender_id and decision_id): planned on the
 * ticket as it stands, stored on E with no pipeline run
 * (csa_pipeline_reply), then queued. *result (new reference) is the
 * store's answer with "deliveries": [{"target", "key"}]. A reply stored
 * before (the same message_id) is queued again, which queues only what
 * was not. On failure *result is NULL; a reply stored but not queued says
 * so in err (the same request again queues it). */
int csa_reply_send(struct csa_server *s, const char *ticket_id, const json_t *message,
                   json_t **result, struct csa_err *err);

/* The customer's subject (of their first message that had one) without
 * "Re:" prefixes, tagged "[T_NO]" unless it is already; 'fallback' (NULL:
 * "Your request") when they gave none. */
void csa_reply_subject(const json_t *e, const char *ticket, const char *fallback, char *out,
                       size_t n);

/* The Trello card the customer wrote on last (E), or NULL: an id checked
 * to be fit for a URL path. */
const char *csa_reply_trello_card(const json_t *e);

/* At start: check CSA_SMTP_URL and channels.email.from, and give the
 * outbox the credentials of the reply targets from the environment (SMTP
 * login, Slack and Mattermost bot tokens, Trello key and token). */
int csa_reply_credentials(struct csa_server *s, struct csa_err *err);

#endif
