/*
 * The inbox's search index: full-text search over every ticket's customer
 * and internal messages (E and I), the fields an agent filters on, and
 * keyset pagination, kept beside the ticket store. It is derived data: it
 * can be deleted at any time and is rebuilt from the store.
 *
 * A table of operations, as the store is, so a PostgreSQL backend (its
 * full-text search over the same tickets) can answer the same call;
 * search_sqlite.c (.csa/search.db, SQLite FTS5) is the first backend.
 *
 * Freshness: the index holds, per ticket, the store's version of it
 * (csa_store_version) when it was indexed. csa_search_sync() compares
 * those with the store's and reads again only the tickets whose version
 * changed, whoever wrote them: this process, the CLI or another server. A
 * handle opened with a refresh interval also takes up this process's
 * commits before each query and runs the comparison on a thread of its own
 * when another handle may have committed; see search.c.
 *
 * Threads: every function may be called from any thread.
 */
#ifndef CSA_SEARCH_SEARCH_H
#define CSA_SEARCH_SEARCH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "base/err.h"
#include "base/ids.h"

struct csa_store;
struct csa_ticket;
struct csa_ws;

/* What the index holds of one ticket (search.c derives it from the
 * documents; backends store it). Strings are borrowed, "" when unknown. */
struct csa_search_doc {
	const char *id;
	uint64_t version;     /* the store's version, 0: read it again next time */
	const char *status;   /* E.conversation_status */
	const char *priority; /* T.priority */
	const char *stage;    /* T.workflow_stage */
	const char *category; /* the latest classifier decision's */
	const char *assigned; /* T.assigned_member */
	const char *client, *company;
	const char *customer; /* the customer's contact e-mail ("" when none) */
	const char *subject;  /* the first customer message, its first subject_len bytes */
	size_t subject_len;
	int64_t updated_ms; /* T.last_synchronized: the last commit */
	/* the SLA clock (sla/sla.h): INT64_MAX when never */
	int64_t sla_risk_ms, sla_breach_ms, sla_due_ms;
	int review;       /* a decision waits for a person's review */
	int autonomous;   /* a decision was applied autonomously */
	const char *text; /* E and I message contents, one a line */
};

/* Which tickets a query wants; NULL and -1 match everything. */
struct csa_search_filter {
	const char *q; /* plain words, all of them (never query syntax) */
	const char *status, *priority, *stage, *category, *assigned;
	const char *customer; /* the customer's contact e-mail, exactly */
	int sla;        /* enum csa_sla_state at now_ms, or -1 */
	int review;     /* 1, 0 or -1 */
	int autonomous; /* 1, 0 or -1 */
	int64_t now_ms; /* the instant the SLA state is asked for */
};

/* Orders of a result; ties are broken by id, so every order is total and a
 * cursor names one position in it. */
enum csa_search_sort {
	CSA_SORT_UPDATED,  /* last update, newest first (default) */
	CSA_SORT_SLA_DUE,  /* nearest open SLA deadline first, none last */
	CSA_SORT_PRIORITY, /* CRITICAL first, then newest update */
	CSA_SORT_COUNT
};

/* "updated", "sla_due", "priority"; and back (-1 when none). */
const char *csa_search_sort_name(enum csa_search_sort s);
int csa_search_sort_parse(const char *name);

#define CSA_SEARCH_LIMIT_MAX   200
#define CSA_SEARCH_SUBJECT_MAX 120
#define CSA_SEARCH_CURSOR_MAX (CSA_ID_MAX + 48)

/* One page: ids in order (malloc'd array of malloc'd strings), their rows
 * as the index holds them (a JSON array of objects: ticket_id,
 * client_name, company_name, priority, workflow_stage,
 * conversation_status, category, assigned_member, last_updated,
 * sla_state, sla_due, waiting_for_review, decided_autonomously; owned
 * reference) and, when more may follow, the cursor of the next page (""
 * when this is the last). Release with csa_search_page_release(). */
struct csa_search_page {
	char **ids;
	size_t n;
	json_t *rows;
	char next[CSA_SEARCH_CURSOR_MAX + 1];
};

void csa_search_page_release(struct csa_search_page *p);

struct csa_search;

struct csa_search_ops {
	const char *name;
	/* Put 'n' tickets in the index (replacing what it held of them), in
	 * one step: all or none. */
	int (*update)(struct csa_search *s, const struct csa_search_doc *docs, size_t n,
	              struct csa_err *err);
	/* Drop tickets that are no longer in the store. */
	int (*remove)(struct csa_search *s, char *const *ids, size_t n, struct csa_err *err);
	/* Every indexed id (sorted, strcmp) with the version it was indexed
	 * at: *ids as csa_store_ids() returns them, *versions malloc'd. */
	int (*versions)(struct csa_search *s, char ***ids, uint64_t **versions, size_t *n,
	                struct csa_err *err);
	/* One page of the tickets matching f in order 'sort', after 'cursor'
	 * (NULL or "": from the start; a cursor of another order or a damaged
	 * one is CSA_EINVAL), at most 'limit' (1..CSA_SEARCH_LIMIT_MAX). */
	int (*query)(struct csa_search *s, const struct csa_search_filter *f,
	             enum csa_search_sort sort, const char *cursor, size_t limit,
	             struct csa_search_page *out, struct csa_err *err);
	/* How many tickets match f (for counts per view). */
	int (*count)(struct csa_search *s, const struct csa_search_filter *f, long *out,
	             struct csa_err *err);
	/* A value stored with the index (the configuration it was derived
	 * under); NULL when unset. Caller frees. */
	char *(*meta_get)(struct csa_search *s, const char *key);
	int (*meta_set)(struct csa_search *s, const char *key, const char *value,
	                struct csa_err *err);
	void (*close)(struct csa_search *s);
};

/* The state every backend shares: the ops and what the catch-up needs. */
struct csa_search_refresh;
struct csa_search {
	const struct csa_search_ops *ops;
	struct csa_ws *ws;
	struct csa_search_refresh *refresh; /* NULL without a refresh thread */
};

/* The server's refresh interval: a ticket written by another process is
 * found within about this long. */
#define CSA_SEARCH_REFRESH_MS 1000

/* Open the SQLite backend over workspace ws (.csa/search.db, created 0600),
 * catch it up with the store (the first time, that reads every ticket),
 * and, when refresh_ms > 0, start the thread that keeps it caught up and
 * observe the commits of ws->store (csa_store_observe), which a query
 * indexes before it answers. The handle borrows ws, which must outlive
 * it. */
int csa_search_open_sqlite(struct csa_ws *ws, int refresh_ms, struct csa_search **out,
                           struct csa_err *err);

/* For a backend's open function: start the thread that catches s up
 * every interval_ms (the first time at once; queries wait for that one). */
int csa_search_start_refresh(struct csa_search *s, int interval_ms, struct csa_err *err);

/* The catch-up of an open without a refresh thread: none when the index
 * was saved at the store's position (no commit since), else
 * csa_search_sync(); then the position is saved when the index provably
 * holds it (a commit by another handle meanwhile: not). A handle with a
 * refresh thread does the same at its first catch-up and at its close. */
int csa_search_first_sync(struct csa_search *s, struct csa_err *err);

/* Catch up with the store: index the tickets whose version differs from
 * the indexed one, drop those that are gone. *changed (may be NULL)
 * counts the tickets read. */
int csa_search_sync(struct csa_search *s, size_t *changed, struct csa_err *err);

int csa_search_query(struct csa_search *s, const struct csa_search_filter *f,
                     enum csa_search_sort sort, const char *cursor, size_t limit,
                     struct csa_search_page *out, struct csa_err *err);

int csa_search_count(struct csa_search *s, const struct csa_search_filter *f, long *out,
                     struct csa_err *err);

/* Stop the refresh thread and close; NULL is a no-op. */
void csa_search_close(struct csa_search *s);

/* The FTS query of user words q: each whitespace-separated word quoted as
 * an FTS5 string (quotes doubled), joined by spaces (all must match); words
 * without a letter or digit and words past the 32nd are left out. ""
 * when nothing is left. Malloc'd; NULL without memory. Shared by backends
 * whose engine speaks FTS5 syntax, and tested alone. */
char *csa_search_fts_query(const char *q);

#endif
