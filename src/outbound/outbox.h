/*
 * The durable outbox: replies, internal notices, escalations, stakeholder
 * updates and the automation controller's alerts, queued for delivery to
 * Mattermost/Slack incoming webhooks and generic JSON webhooks. Items live in outbox.db (SQLite,
 * WAL, synchronous=FULL), so a restart loses nothing; each has an
 * idempotency key (queued twice, delivered once). Delivery retries with
 * exponential backoff and jitter (1 s doubling, at most 1 h) and gives up
 * after max_attempts, marking the item failed. outbox.db is created
 * private (0600). Anyone may enqueue (the controller, with or without a
 * server); only the server's delivery loop delivers, so what is queued
 * while no server runs waits in outbox.db for the next one. Thread-safe.
 */
#ifndef CSA_OUTBOUND_OUTBOX_H
#define CSA_OUTBOUND_OUTBOX_H

#include <jansson.h>
#include <stdint.h>
#include "base/err.h"

struct csa_outbox;

/* Open (creating it) the outbox at 'path'; several handles, in one process
 * or several, may share a file. */
int csa_outbox_open(const char *path, int max_attempts, struct csa_outbox **out,
                    struct csa_err *err);
void csa_outbox_close(struct csa_outbox *ob);

/* Queue a JSON payload for 'url'. 1 if queued, 0 if the key was already
 * there, negative on error. */
int csa_outbox_enqueue(struct csa_outbox *ob, const char *key, const char *ticket_id,
                       const char *target, const char *url, const json_t *payload,
                       struct csa_err *err);

/* Deliver every pending item due at 'now_ms' (at most 'max'); *delivered
 * receives how many went out. Items that fail are rescheduled. CSA_EIO when
 * outbox.db cannot list the due items or save an item's delivery state
 * (an item delivered but not marked so is sent again next time); the items
 * it could read are still attempted. */
int csa_outbox_deliver_due(struct csa_outbox *ob, int64_t now_ms, int max, int *delivered,
                           struct csa_err *err);

/* Delivery state of a ticket's items: [{"id", "target", "state",
 * "attempts", "next_attempt", "last_error", "created", "delivered"}]. */
int csa_outbox_for_ticket(struct csa_outbox *ob, const char *ticket_id, json_t **out,
                          struct csa_err *err);

/* Backoff before attempt n+1 after n failures, with jitter u in [0, 1). */
int64_t csa_outbox_backoff_ms(int attempts, double u);

#endif
