/*
 * Customer history across tickets, for the context manager: an in-memory
 * index of every ticket's customer, decided category and priority, outcome
 * (resolved, resolution time, CSAT, escalation), built by one scan of the
 * store and kept current by the pipeline. Thread-safe.
 */
#ifndef CSA_AGENTS_HISTORY_H
#define CSA_AGENTS_HISTORY_H

#include <jansson.h>
#include <stdint.h>
#include "base/err.h"
#include "store/store.h"

struct csa_hist_entry {
	char id[65];
	char company[96];
	char client[96];
	char category[128];
	char priority[12];
	char escalation[16]; /* NONE, TECHNICAL, BILLING, URGENT or "" */
	int resolved;
	double resolution_hours; /* < 0 when unknown */
	double csat;             /* < 0 when unknown */
	int64_t created_ms;
	char assigned[65]; /* T.assigned_member, "" when nobody */
};

struct csa_history;

int csa_history_new(struct csa_history **out);
void csa_history_free(struct csa_history *h);

/* The entry of a ticket from its documents (T's latest classifier /
 * escalation decisions and sla_metrics). */
void csa_history_entry_from(const struct csa_ticket *tk, struct csa_hist_entry *e);

/* Insert or replace, remembering the signature of the files the entry
 * was read from (csa_mesh_files_sig; 0: unknown, as after a commit). */
int csa_history_put_sig(struct csa_history *h, const struct csa_hist_entry *e, uint64_t sig);

/* Every entry in index order with its signature, under the index lock; a
 * nonzero return of fn stops and is returned. */
typedef int (*csa_hist_fn)(void *ctx, const struct csa_hist_entry *e, uint64_t sig);
int csa_history_each(struct csa_history *h, csa_hist_fn fn, void *ctx);

/* Insert or replace by id. */
int csa_history_put(struct csa_history *h, const struct csa_hist_entry *e);

/* For a reader that checks entries against the files while others put
 * (agents/histfile.h's csa_history_verify): the signature and the
 * generation of id's entry (CSA_ENOENT, both 0, when there is none), and a
 * put that happens only while the entry still has that generation (0:
 * while there is still none); *skipped is 1 when another put came first,
 * whose entry is then newer than what the reader read. */
int csa_history_get_sig(struct csa_history *h, const char *id, uint64_t *sig, uint64_t *gen);
int csa_history_put_if(struct csa_history *h, const struct csa_hist_entry *e, uint64_t sig,
                       uint64_t gen, int *skipped);

/* How many puts the index has had: a value that moves with every change. */
uint64_t csa_history_puts(struct csa_history *h);

/* Keep the index current with every commit through 'st' (a store
 * observer: the entry comes from the committed documents), until
 * csa_history_untrack() or csa_history_free(). Add it before commits
 * start (csa_store_observe). csa_history_tracking() is 1 while every
 * commit since was put (0 also after a put that found no memory). */
int csa_history_track(struct csa_history *h, struct csa_store *st);
int csa_history_tracking(struct csa_history *h);
void csa_history_untrack(struct csa_history *h);

size_t csa_history_count(const struct csa_history *h);

/* {"tickets", "open", "escalated", "avg_csat", "recent": [ids]} of the
 * customer (company, else client), excluding one ticket. New reference. */
json_t *csa_history_customer(struct csa_history *h, const char *company, const char *client,
                             const char *exclude_id);

/* Up to k most recent resolved tickets of a category (ids, newest first),
 * excluding one; a new JSON array. */
json_t *csa_history_similar(struct csa_history *h, const char *category, const char *exclude_id,
                            size_t k);

/* How many tickets not yet resolved are assigned to 'member' (a roster
 * id, T.assigned_member), not counting 'exclude_id' (may be NULL): a team
 * member's current load. One pass over the index under its lock. */
size_t csa_history_open_assigned(struct csa_history *h, const char *member, const char *exclude_id);

/* Median resolution hours of resolved tickets with this category and
 * priority (falling back to the category, then to all); *n receives the
 * sample size. Negative when there is no resolved ticket at all. */
double csa_history_eta_hours(struct csa_history *h, const char *category, const char *priority,
                             size_t *n);

#endif
