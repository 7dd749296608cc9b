/*
 * The team's Trello board (csa.json channels.trello_board, spec §3.2's
 * trello_template, workflow_stage and assigned_member): every ticket has a
 * card on it, made from the template card its trello_template names, in
 * the list of its workflow_stage, with its assigned member.
 *
 * The commits of the server's store handle are observed: when a ticket's
 * stage or member is not what was last queued for it, an item goes into
 * the outbox (target "trello_card", its payload the ticket id). The
 * outbox's hook writes the request when the item is delivered, from the
 * ticket as it is then, so retries and their order never bring back an
 * older state: PUT /1/cards/{card} (list, member) when the ticket has a
 * card, else POST /1/cards, whose answer's id is bound in the channel map
 * both ways ("trello-card-of:<T_NO>" to the card, "trello:<card>" to the
 * ticket, so the team's comments on the card reach the ticket). A ticket
 * that came from a card (its customer wrote on Trello) is that card.
 * Delivery is at least once: a server killed between Trello's answer and
 * the binding can make a second card.
 */
#include "server/server_internal.h"
#include "agents/team.h"
#include "base/config.h"
#include "base/json.h"
#include "base/ts.h"
#include "outbound/outbox.h"
#include "server/chanmap.h"
#include "server/replies.h"
#include "store/store.h"
#include "store/ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct csa_board {
	struct csa_server *s;
	pthread_mutex_t mu;
	json_t *queued; /* ticket id -> "stage|member" last queued */
	uint64_t seq;   /* with the start time, makes each item's key new */
	int64_t started_ms;
};

#define CARD_OF "trello-card-of:"

/* The configured board, or NULL; borrowed from cfg. */
static const json_t *board_of(const struct csa_config *cfg)
{
	const json_t *b = csa_config_get(cfg, "channels.trello_board");
	return json_is_object(b) ? b : NULL;
}

/* What the card shows of a ticket: "stage|member". */
static void card_state(const json_t *t, char *out, size_t n)
{
	const char *stage = csa_json_str(t, "workflow_stage"),
	           *member = csa_json_str(t, "assigned_member");
	snprintf(out, n, "%s|%s", stage ? stage : "", member ? member : "");
}

/* A commit (store observer): queue a sync of each ticket whose card would
 * change. On the committing thread: one outbox insert per change. */
static void on_commit(void *ctx, struct csa_ticket *const *tks, size_t n)
{
	struct csa_board *b = ctx;
	const struct csa_config *cfg = csa_ws_config(b->s->ws);
	const char *api = csa_json_str(csa_config_get(cfg, "channels"), "trello_api_url");
	for (size_t i = 0; api && board_of(cfg) && i < n; i++) {
		char state[256], key[CSA_ID_MAX + 64];
		if (!tks[i]->t)
			continue;
		card_state(tks[i]->t, state, sizeof(state));
		pthread_mutex_lock(&b->mu);
		const char *was = json_string_value(json_object_get(b->queued, tks[i]->id));
		int changed = !was || strcmp(was, state) != 0;
		if (changed)
			json_object_set_new(b->queued, tks[i]->id, json_string(state));
		/* new in this process and in the outbox a previous one left */
		snprintf(key, sizeof(key), "trello-card|%s|%lld-%llu", tks[i]->id,
		         (long long)b->started_ms, (unsigned long long)++b->seq);
		pthread_mutex_unlock(&b->mu);
		if (!changed)
			continue;
		struct csa_err err = {0};
		json_t *payload = json_pack("{s:s}", "ticket_id", tks[i]->id);
		if (csa_outbox_enqueue(b->s->outbox, key, tks[i]->id, "trello_card", api, payload,
		                       &err) < 0) {
			fprintf(stderr, "csa serve: ticket '%s': its Trello card not queued: %s\n",
			        tks[i]->id, err.msg);
			pthread_mutex_lock(&b->mu); /* the next commit tries again */
			json_object_del(b->queued, tks[i]->id);
			pthread_mutex_unlock(&b->mu);
		}
		json_decref(payload);
	}
	csa_config_unref(cfg);
}

/* The ticket's card: bound when csa made it, else the card its customer
 * wrote on; NULL when it has none yet. */
static const char *card_of(struct csa_server *s, const struct csa_ticket *tk, char *buf,
                           size_t n)
{
	char key[CSA_ID_MAX + sizeof(CARD_OF)];
	snprintf(key, sizeof(key), CARD_OF "%s", tk->id);
	if (csa_chanmap_get(s->chanmap, key, buf, n, NULL) == CSA_OK)
		return buf;
	const char *platform = csa_json_str(tk->e, "platform");
	return platform && strcmp(platform, "trello") == 0 ? csa_reply_trello_card(tk->e) : NULL;
}

/* The Trello member id of the ticket's assigned member
 * (team.members[].platform_ids.trello), or NULL. */
static const char *trello_member(const struct csa_config *cfg, const json_t *t)
{
	const json_t *m = csa_team_member(cfg, csa_json_str(t, "assigned_member"));
	return csa_json_str(json_object_get(m, "platform_ids"), "trello");
}

/* The card's name: "[T_NO] subject", else the start of the customer's
 * first message (whole UTF-8 characters). */
static void card_name(const json_t *e, const char *ticket, char *out, size_t n)
{
	char start[121] = "";
	const char *text = csa_json_str(json_array_get(json_object_get(e, "messages"), 0), "content");
	if (text) {
		size_t k = strlen(text) < sizeof(start) - 1 ? strlen(text) : sizeof(start) - 1;
		while (k && ((unsigned char)text[k] & 0xc0) == 0x80)
			k--;
		memcpy(start, text, k);
		start[k] = '\0';
		for (char *p = start; *p; p++)
			if (*p == '\n' || *p == '\r' || *p == '\t')
				*p = ' ';
	}
	csa_reply_subject(e, ticket, start[0] ? start : NULL, out, n);
}

/* The request of an item (outbox hook): the ticket's card as it is now. */
static int prepare(void *ctx, const struct csa_outbox_item *it, struct csa_outbox_req *req,
                   char *why, size_t whysz)
{
	struct csa_board *b = ctx;
	json_t *p = json_loads(it->payload, 0, NULL);
	const char *id = csa_json_str(p, "ticket_id");
	struct csa_ticket tk;
	struct csa_err err = {0};
	if (!id || csa_store_load(b->s->ws->store, id, &tk, &err)) {
		snprintf(why, whysz, "Trello card of '%.80s': %s", id ? id : "(no ticket)",
		         id ? err.msg : "the item names no ticket");
		json_decref(p);
		return -1;
	}
	json_decref(p);
	const struct csa_config *cfg = csa_ws_config(b->s->ws);
	const json_t *board = board_of(cfg);
	const char *api = csa_json_str(csa_config_get(cfg, "channels"), "trello_api_url");
	const char *stage = csa_json_str(tk.t, "workflow_stage");
	const json_t *lists = json_object_get(board, "lists");
	const char *list = csa_json_str(lists, stage ? stage : "trigger");
	const char *member = trello_member(cfg, tk.t);
	char cardbuf[CSA_ID_MAX + 1], url[1200];
	const char *card = card_of(b->s, &tk, cardbuf, sizeof(cardbuf));
	json_t *body = json_object();
	int rc = 0;
	if (!board || !api) {
		snprintf(why, whysz, "channels.trello_board is not configured any more");
		rc = -1;
	} else if (card) {
		snprintf(req->method, sizeof(req->method), "PUT");
		snprintf(url, sizeof(url), "%.900s/1/cards/%s", api, card);
		if (list)
			json_object_set_new(body, "idList", json_string(list));
		if (member)
			json_object_set_new(body, "idMembers", json_string(member));
	} else {
		char name[1024];
		card_name(tk.e, tk.id, name, sizeof(name));
		const char *templ = csa_json_str(
		    json_object_get(board, "templates"), csa_json_str(tk.t, "trello_template"));
		snprintf(req->method, sizeof(req->method), "POST");
		snprintf(url, sizeof(url), "%.900s/1/cards", api);
		json_object_set_new(body, "idList",
		                    json_string(list ? list : csa_json_str(lists, "trigger")));
		json_object_set_new(body, "name", json_string(name));
		json_object_set_new(body, "pos", json_string("top"));
		if (templ) { /* its checklists, labels and description come along */
			json_object_set_new(body, "idCardSource", json_string(templ));
			json_object_set_new(body, "keepFromSource", json_string("all"));
		}
		if (member)
			json_object_set_new(body, "idMembers", json_string(member));
	}
	csa_config_unref(cfg);
	csa_ticket_release(&tk);
	if (rc == 0) {
		req->url = strdup(url);
		req->body = json_dumps(body, JSON_COMPACT);
	}
	json_decref(body);
	return rc;
}

/* A card made (outbox hook): its id bound to the ticket both ways. */
static void answered(void *ctx, const struct csa_outbox_item *it,
                     const struct csa_outbox_req *req, const char *answer)
{
	struct csa_board *b = ctx;
	if (strcmp(req->method, "POST") != 0)
		return;
	json_t *p = json_loads(it->payload, 0, NULL), *a = json_loads(answer, 0, NULL);
	const char *ticket = csa_json_str(p, "ticket_id"), *card = csa_json_str(a, "id");
	char key[CSA_CHANMAP_KEY_MAX];
	struct csa_err err = {0};
	if (!ticket || !card || !csa_id_valid(card)) {
		fprintf(stderr, "csa serve: ticket '%s': Trello made a card but its answer names "
		                "no valid card id\n",
		        ticket ? ticket : "?");
	} else {
		snprintf(key, sizeof(key), CARD_OF "%s", ticket);
		int rc = csa_chanmap_bind(b->s->chanmap, key, card, &err);
		snprintf(key, sizeof(key), "trello:%s", card);
		if (rc == CSA_OK)
			rc = csa_chanmap_bind(b->s->chanmap, key, ticket, &err);
		if (rc)
			fprintf(stderr, "csa serve: ticket '%s': Trello card %s not bound: %s\n",
			        ticket, card, err.msg);
	}
	json_decref(p);
	json_decref(a);
}

int csa_board_start(struct csa_server *s, struct csa_err *err)
{
	struct csa_board *b = calloc(1, sizeof(*b));
	if (!b || !(b->queued = json_object())) {
		free(b);
		return csa_error(err, CSA_ENOMEM, "out of memory starting the Trello board");
	}
	b->s = s;
	b->started_ms = csa_now_ms();
	pthread_mutex_init(&b->mu, NULL);
	if (csa_store_observe(s->ws->store, on_commit, b)) {
		json_decref(b->queued);
		pthread_mutex_destroy(&b->mu);
		free(b);
		return csa_error(err, CSA_ELIMIT, "the store has no room for another commit observer");
	}
	struct csa_outbox_hook h = {.target = "trello_card",
	                            .prepare = prepare,
	                            .answered = answered,
	                            .ctx = b};
	csa_outbox_set_hook(s->outbox, &h);
	s->board = b;
	return CSA_OK;
}

void csa_board_stop(struct csa_server *s)
{
	struct csa_board *b = s->board;
	if (!b)
		return;
	csa_store_unobserve(s->ws->store, on_commit, b);
	csa_outbox_set_hook(s->outbox, NULL);
	json_decref(b->queued);
	pthread_mutex_destroy(&b->mu);
	free(b);
	s->board = NULL;
}
