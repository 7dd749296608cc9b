/*
 * The durable outbox: replies, internal notices, escalations, stakeholder
 * updates and the automation controller's alerts, queued for delivery to
 * Mattermost/Slack incoming webhooks, generic JSON webhooks, platform APIs
 * (Slack and Mattermost thread replies, Trello card comments) and SMTP
 * servers (customer replies by e-mail, outbound/email.h), so a
 * restart loses nothing; each item has an idempotency key (queued twice,
 * delivered once). Delivery retries with exponential backoff and jitter
 * (1 s doubling, at most 1 h) and gives up after max_attempts, marking the
 * item failed. Anyone may enqueue (the controller, with or without a
 * server); the server's delivery loop delivers, so what is queued while
 * no server runs waits for the next one; `csa monitor` delivers only its
 * own alerts (csa_outbox_deliver_target). Thread-safe.
 *
 * Storage is an interface (struct csa_outbox_ops) with two backends:
 * outbox.db (SQLite, WAL, synchronous=FULL, created 0600), opened by
 * csa_outbox_open(), and the table csa_outbox of the workspace's
 * PostgreSQL database (outbox_pg.c), opened by csa_outbox_pg_open();
 * csa_outbox_open_ws() picks the one of a workspace (PostgreSQL when its
 * tickets are there). Delivery itself (HTTP, backoff, giving up) is the
 * same over every backend: due items are claimed with a lease, so
 * processes -- on one machine or on several over one database --
 * delivering from one outbox never post the same item at once, and an item
 * whose deliverer died goes out again when its lease ends (at least
 * once). Every HTTP delivery carries the item's key as its
 * "Idempotency-Key" header, the same on every attempt by any node, so a
 * receiver that keeps the keys it has seen processes each item once even
 * when a deliverer died after the receiver got the item but before the
 * outbox recorded it.
 *
 * Leases are compared with the deliverers' clocks (now_ms): nodes sharing
 * an outbox keep their clocks in step (NTP); a clock ahead by more than a
 * lease lets an item go out twice, under the same key.
 */
#ifndef CSA_OUTBOUND_OUTBOX_H
#define CSA_OUTBOUND_OUTBOX_H

#include <jansson.h>
#include <stdint.h>
#include "base/err.h"

/* An item claimed for delivery (strings malloc'd, freed by the caller
 * with csa_outbox_item_release). */
struct csa_outbox_item {
	int64_t id;
	int attempts; /* before this one */
	char *url, *payload, *target;
	char *key;     /* the idempotency key it was queued under */
	int64_t claim; /* which claim of the item this is (the backend's fence; 0: none) */
};

/* Free an item's strings (not the item). */
void csa_outbox_item_release(struct csa_outbox_item *it);

/*
 * How an item is delivered depends on its URL:
 *   http:// https://   POST of the JSON payload; with the target's header
 *                      (below) when one is set. A 2xx answer whose body is
 *                      a JSON object with "ok": false (Slack's Web API) is
 *                      a failure with its "error".
 *   smtp:// smtps://   the payload is {"mail_from", "rcpt_to", "data"}: the
 *                      envelope and a composed message (outbound/email.h),
 *                      submitted with the target's login when one is set.
 */

/* What a target's deliveries authenticate with. Set from the environment
 * by the process that delivers; never stored in the outbox. */
struct csa_outbox_cred {
	char target[32];
	char *user, *password; /* SMTP login */
	char *header;          /* one HTTP header line, "Authorization: Bearer ..." */
};

#define CSA_OUTBOX_CREDS 8

struct csa_outbox;

/* The request an item of a hooked target turns into when it is delivered
 * (struct csa_outbox_hook): url and body malloc'd by prepare(). */
struct csa_outbox_req {
	char method[8]; /* "POST" or "PUT" */
	char *url, *body;
};

/*
 * A target whose items are written when they are delivered, from the
 * state they bring up to date as it is then: a Trello card follows its
 * ticket, so whichever commit queued an item, and however its retries are
 * ordered, the card gets the ticket as it is now, never an older state.
 * prepare() turns the item (its payload names what to sync) into a
 * request, or fails with why (the item is retried as any failure);
 * answered() hears the answer of a delivered request (its start, up to
 * 16 KiB) on the delivering thread.
 */
struct csa_outbox_hook {
	char target[32];
	int (*prepare)(void *ctx, const struct csa_outbox_item *it, struct csa_outbox_req *req,
	               char *why, size_t whysz);
	void (*answered)(void *ctx, const struct csa_outbox_item *it,
	                 const struct csa_outbox_req *req, const char *answer);
	void *ctx;
};

struct csa_outbox_ops {
	/* Queue 'payload' (compact JSON) for 'url' under 'key', due at once:
	 * 1 if queued, 0 if the key was already there, negative on error. */
	int (*enqueue)(struct csa_outbox *ob, const char *key, const char *ticket_id,
	               const char *target, const char *url, const char *payload, int64_t now_ms,
	               struct csa_err *err);
	/* Claim up to 'max' pending items due at 'now_ms' (of 'target' only,
	 * unless it is NULL), oldest due first, making them due again only at
	 * now_ms + lease_ms: *items (malloc'd, *n of them) until settle() says
	 * what became of each. */
	int (*claim_due)(struct csa_outbox *ob, int64_t now_ms, int max, int64_t lease_ms,
	                 const char *target, struct csa_outbox_item **items, int *n,
	                 struct csa_err *err);
	/* Item 'it' (as claimed) after attempt number 'attempts': state
	 * "delivered" (at 'now_ms'), "pending" (due again at next_ms, 'why'
	 * it failed) or "failed" (given up, 'why'). A backend that fences
	 * claims records "pending" and "failed" only for the item's latest
	 * claim (a deliverer whose lease ran out and was claimed again by
	 * another says nothing: CSA_OK, unchanged), and "delivered" whoever
	 * says it, while the item is pending. */
	int (*settle)(struct csa_outbox *ob, const struct csa_outbox_item *it, int attempts,
	              const char *state, int64_t now_ms, int64_t next_ms, const char *why,
	              struct csa_err *err);
	/* A ticket's items: [{"id", "key", "target", "state", "attempts",
	 * "next_attempt" (pending only), "last_error", "created", "delivered"}],
	 * oldest first. */
	int (*for_ticket)(struct csa_outbox *ob, const char *ticket_id, json_t **out,
	                  struct csa_err *err);
	void (*close)(struct csa_outbox *ob);
};

struct csa_outbox {
	const struct csa_outbox_ops *ops;
	int max_attempts;
	struct csa_outbox_cred creds[CSA_OUTBOX_CREDS]; /* csa_outbox_set_credentials */
	char *ca_file; /* csa_outbox_set_ca_file; NULL: the system's CAs */
	struct csa_outbox_hook hook; /* csa_outbox_set_hook; no target: none */
	struct csa_leader *fence;    /* csa_outbox_set_fence; NULL: none */
};

/* Open (creating it) the SQLite outbox at 'path'; several handles, in one
 * process or several, may share a file. max_attempts <= 0: 8. */
int csa_outbox_open(const char *path, int max_attempts, struct csa_outbox **out,
                    struct csa_err *err);

struct csa_pg;
struct csa_ws;

/* Open the outbox in the PostgreSQL database of 'pg' (store/pg.h; its
 * schema migrated, borrowed until the outbox is closed): the table
 * csa_outbox, shared by every node of that database. Claims are one
 * UPDATE of the due rows picked with FOR UPDATE SKIP LOCKED (two nodes
 * never claim one item), each numbered (claim) and signed with the node
 * (host:pid, claimed_by); a settle other than "delivered" is fenced by
 * that number. max_attempts <= 0: 8. */
int csa_outbox_pg_open(struct csa_pg *pg, int max_attempts, struct csa_outbox **out,
                       struct csa_err *err);

/* The outbox of a workspace: in its database when its tickets are in
 * PostgreSQL (ws->pg), else <ws>/outbox.db. */
int csa_outbox_open_ws(struct csa_ws *ws, int max_attempts, struct csa_outbox **out,
                       struct csa_err *err);
void csa_outbox_close(struct csa_outbox *ob);

/* The credentials of 'target' (copied; NULL members: none), replacing
 * earlier ones. Call before delivery starts: delivery reads them without
 * a lock. CSA_ELIMIT beyond CSA_OUTBOX_CREDS targets, CSA_ENOMEM. */
int csa_outbox_set_credentials(struct csa_outbox *ob, const char *target, const char *user,
                               const char *password, const char *header, struct csa_err *err);

/* The certificate authorities (a PEM bundle) every TLS delivery (HTTPS,
 * SMTPS, STARTTLS) verifies its server with, instead of the system's: for
 * a mail relay or webhook with a private CA. Verification stays on either
 * way. NULL: the system's again. CSA_EIO when the file cannot be read (the
 * message names it), CSA_ENOMEM. Call before delivery starts. */
int csa_outbox_set_ca_file(struct csa_outbox *ob, const char *path, struct csa_err *err);

/* The hook of one target (copied; NULL: none). Call before delivery
 * starts. */
void csa_outbox_set_hook(struct csa_outbox *ob, const struct csa_outbox_hook *h);

struct csa_leader;

/*
 * Deliver only as the leader of a role (store/leader.h; borrowed, NULL:
 * no fence): every delivery round first asks csa_leader_check (no
 * query; refused with CSA_ECONFLICT when the last poll found this node
 * not leading), and the PostgreSQL backend checks the role's epoch inside
 * the transaction of each claim and of each failed attempt it records, so
 * a node that lost the role without noticing claims nothing and
 * reschedules nothing (the items it holds go out again from the new
 * leader when their lease ends). Recording a delivery is not fenced: the
 * item went out, and saying so keeps it from going out twice. Queueing
 * is never fenced: every node queues. Call before delivery starts.
 */
void csa_outbox_set_fence(struct csa_outbox *ob, struct csa_leader *l);

/* Queue a JSON payload for an http(s) or smtp(s) 'url'. 1 if queued, 0 if
 * the key was already there, negative on error. */
int csa_outbox_enqueue(struct csa_outbox *ob, const char *key, const char *ticket_id,
                       const char *target, const char *url, const json_t *payload,
                       struct csa_err *err);

/* Deliver the pending items due at 'now_ms' (at most 'max'); *delivered
 * receives how many went out. Items that fail are rescheduled.
 * CSA_ECONFLICT when the outbox's fence refused the round (nothing
 * claimed, nothing sent). CSA_EIO when
 * the due items cannot be claimed or an item's delivery state cannot be
 * saved (an item delivered but not marked so is sent again when its lease
 * ends); the items it could claim are still attempted. */
int csa_outbox_deliver_due(struct csa_outbox *ob, int64_t now_ms, int max, int *delivered,
                           struct csa_err *err);

/* The same for the items of one target only: a process that queues its
 * own kind of item (`csa monitor`, target "monitor_alert") delivers those
 * and leaves the rest (replies needing credentials it lacks) to the
 * server. */
int csa_outbox_deliver_target(struct csa_outbox *ob, int64_t now_ms, int max, const char *target,
                              int *delivered, struct csa_err *err);

/* Delivery state of a ticket's items (see for_ticket above). */
int csa_outbox_for_ticket(struct csa_outbox *ob, const char *ticket_id, json_t **out,
                          struct csa_err *err);

/* Backoff before attempt n+1 after n failures, with jitter u in [0, 1). */
int64_t csa_outbox_backoff_ms(int attempts, double u);

#endif
