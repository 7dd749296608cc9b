/*
 * The channel thread map: which platform conversation belongs to which
 * ticket. A key names a thread the way its platform does ("email:<message
 * id>", "slack:<channel>:<thread ts>", "mattermost:<channel>:<root post>",
 * "trello:<card>"); the hooks look a key up before handing a message to
 * the pipeline and bind it to the ticket the message went to.
 *
 * Behind a table of operations with two implementations: <ws>/channels.db
 * (SQLite, WAL; chanmap.c) and, when the workspace's tickets are in
 * PostgreSQL, the table csa_channels of that database (chanmap_pg.c),
 * shared by every node, so a platform's retry reaching another node finds
 * the thread's ticket. Nothing outside those files knows how the map is
 * kept.
 *
 * Concurrency: a handle may be used by many threads at once, and several
 * processes may open the same map. The first binding of a key wins: a
 * later bind of the same key changes nothing, so two deliveries of the
 * same thread racing each other agree on one ticket.
 */
#ifndef CSA_SERVER_CHANMAP_H
#define CSA_SERVER_CHANMAP_H

#include <stddef.h>
#include "base/err.h"

struct csa_ws;
struct csa_chanmap;

#define CSA_CHANMAP_KEY_MAX 512 /* longest key, in bytes */

struct csa_chanmap_ops {
	const char *name;
	/* The ticket bound to 'key' into ticket[n]: CSA_OK, CSA_ENOENT when
	 * the key is unbound, another code when the map cannot be read. */
	int (*get)(struct csa_chanmap *m, const char *key, char *ticket, size_t n,
	           struct csa_err *err);
	/* Bind 'key' to 'ticket' unless it is bound already (then nothing
	 * changes and the result is CSA_OK). Durable when it returns. */
	int (*bind)(struct csa_chanmap *m, const char *key, const char *ticket,
	            struct csa_err *err);
	void (*close)(struct csa_chanmap *m);
};

struct csa_chanmap {
	const struct csa_chanmap_ops *ops;
};

/* Open the map of a workspace: in its database when its tickets are in
 * PostgreSQL (ws->pg), else <ws>/channels.db, created when absent. */
int csa_chanmap_open(struct csa_ws *ws, struct csa_chanmap **out, struct csa_err *err);

struct csa_pg;

/* The map in the database of 'pg' (store/pg.h, its schema migrated;
 * borrowed until the map is closed). */
int csa_chanmap_pg_open(struct csa_pg *pg, struct csa_chanmap **out, struct csa_err *err);

static inline int csa_chanmap_get(struct csa_chanmap *m, const char *key, char *ticket, size_t n,
                                  struct csa_err *err)
{
	return m->ops->get(m, key, ticket, n, err);
}

static inline int csa_chanmap_bind(struct csa_chanmap *m, const char *key, const char *ticket,
                                   struct csa_err *err)
{
	return m->ops->bind(m, key, ticket, err);
}

/* Close a map; NULL is a no-op. */
static inline void csa_chanmap_close(struct csa_chanmap *m)
{
	if (m)
		m->ops->close(m);
}

#endif
