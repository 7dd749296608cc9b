/*
 * The durable outbox: replies, internal notices, escalations, stakeholder
 * updates and the automation controller's alerts, queued for delivery to
 * Mattermost/Slack incoming webhooks and generic JSON webhooks, so a
 * restart loses nothing; each item has an idempotency key (queued twice,
 * delivered once). Delivery retries with exponential backoff and jitter
 * (1 s doubling, at most 1 h) and gives up after max_attempts, marking the
 * item failed. Anyone may enqueue (the controller, with or without a
 * server); only the server's delivery loop delivers, so what is queued
 * while no server runs waits for the next one. Thread-safe.
 *
 * Storage is an interface (struct csa_outbox_ops): outbox.db (SQLite, WAL,
 * synchronous=FULL, created 0600) is the first backend, opened by
 * csa_outbox_open(). Delivery itself (HTTP, backoff, giving up) is the
 * same over every backend: due items are claimed with a lease, so
 * processes delivering from one outbox never post the same item at once,
 * and an item whose deliverer died goes out again when its lease ends (at
 * least once).
 */
#ifndef CSA_OUTBOUND_OUTBOX_H
#define CSA_OUTBOUND_OUTBOX_H

#include <jansson.h>
#include <stdint.h>
#include "base/err.h"

/* An item claimed for delivery (strings malloc'd, freed by the caller). */
struct csa_outbox_item {
	int64_t id;
	int attempts; /* before this one */
	char *url, *payload;
};

struct csa_outbox;

struct csa_outbox_ops {
	/* Queue 'payload' (compact JSON) for 'url' under 'key', due at once:
	 * 1 if queued, 0 if the key was already there, negative on error. */
	int (*enqueue)(struct csa_outbox *ob, const char *key, const char *ticket_id,
	               const char *target, const char *url, const char *payload, int64_t now_ms,
	               struct csa_err *err);
	/* Claim up to 'max' pending items due at 'now_ms', oldest due first,
	 * making them due again only at now_ms + lease_ms: *items (malloc'd,
	 * *n of them) until settle() says what became of each. */
	int (*claim_due)(struct csa_outbox *ob, int64_t now_ms, int max, int64_t lease_ms,
	                 struct csa_outbox_item **items, int *n, struct csa_err *err);
	/* Item 'id' after attempt number 'attempts': state "delivered" (at
	 * 'now_ms'), "pending" (due again at next_ms, 'why' it failed) or
	 * "failed" (given up, 'why'). */
	int (*settle)(struct csa_outbox *ob, int64_t id, int attempts, const char *state,
	              int64_t now_ms, int64_t next_ms, const char *why, struct csa_err *err);
	/* A ticket's items: [{"id", "target", "state", "attempts",
	 * "next_attempt" (pending only), "last_error", "created", "delivered"}],
	 * oldest first. */
	int (*for_ticket)(struct csa_outbox *ob, const char *ticket_id, json_t **out,
	                  struct csa_err *err);
	void (*close)(struct csa_outbox *ob);
};

struct csa_outbox {
	const struct csa_outbox_ops *ops;
	int max_attempts;
};

/* Open (creating it) the SQLite outbox at 'path'; several handles, in one
 * process or several, may share a file. max_attempts <= 0: 8. */
int csa_outbox_open(const char *path, int max_attempts, struct csa_outbox **out,
                    struct csa_err *err);
void csa_outbox_close(struct csa_outbox *ob);

/* Queue a JSON payload for an http(s) 'url'. 1 if queued, 0 if the key was
 * already there, negative on error. */
int csa_outbox_enqueue(struct csa_outbox *ob, const char *key, const char *ticket_id,
                       const char *target, const char *url, const json_t *payload,
                       struct csa_err *err);

/* Deliver the pending items due at 'now_ms' (at most 'max'); *delivered
 * receives how many went out. Items that fail are rescheduled. CSA_EIO when
 * the due items cannot be claimed or an item's delivery state cannot be
 * saved (an item delivered but not marked so is sent again when its lease
 * ends); the items it could claim are still attempted. */
int csa_outbox_deliver_due(struct csa_outbox *ob, int64_t now_ms, int max, int *delivered,
                           struct csa_err *err);

/* Delivery state of a ticket's items (see for_ticket above). */
int csa_outbox_for_ticket(struct csa_outbox *ob, const char *ticket_id, json_t **out,
                          struct csa_err *err);

/* Backoff before attempt n+1 after n failures, with jitter u in [0, 1). */
int64_t csa_outbox_backoff_ms(int attempts, double u);

#endif
