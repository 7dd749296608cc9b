/*
 * Leadership of a named role ("tick", "outbox") among the nodes that
 * share one workspace, with fencing: the work only one node at a time
 * should do (the controller's minute tick, the outbox's sender loop) runs
 * on the node that leads its role, and what that node writes as leader is
 * refused once another node has taken the role over, even before the old
 * leader noticed.
 *
 * Two backends behind one handle, so the caller has one path:
 *
 *   solo (csa_leader_solo_open): single-host mode, the workspace in files.
 *       Always leads, epoch 0; the fence never refuses. What a single host
 *       guarantees (one server per workspace) is unchanged.
 *   PostgreSQL (csa_leader_pg_open, leader_pg.c): a node leads 'role'
 *       while it holds the session advisory lock
 *       csa_pg_lock_key("leader:<schema>", role) on a connection of its
 *       own, never put back in the pool (the schema of csa's tables is in
 *       the key, so deployments in two schemas of one database have a
 *       leader each). On taking
 *       the lock it increments the role's fencing epoch in csa_leaders
 *       (schema migration 4 in pg.c) and keeps the new value. Every poll
 *       while leading checks, on that connection, that the row still has
 *       this node's epoch (a dead connection or another epoch is lost
 *       leadership: the connection is closed, which lets go of the lock).
 *       A session advisory lock ends with its session: a node killed, or
 *       whose connection the server dropped (pg_terminate_backend, a
 *       restart, TCP keepalives after ~30 s of silence), loses the role,
 *       and the next node that polls takes it with the next epoch.
 *
 * Fencing: a write made as leader checks, inside its own transaction,
 * that the role's epoch in the database is still the one this handle
 * took (leader_pg.h, csa_leader_fence_pg). The check reads the row FOR
 * SHARE, so a new leader's increment waits for that transaction to end:
 * each fenced write is ordered entirely before the next epoch begins, or
 * refused. A node paused or cut off while its old session was dropped
 * keeps believing it leads until its next poll, but cannot write.
 *
 * Thread safety: poll from one thread (the one doing the role's work);
 * csa_leader_leading, csa_leader_epoch, csa_leader_role and
 * csa_leader_check may be called from any thread at any time, and the
 * fence from the polling thread or any thread writing as leader.
 */
#ifndef CSA_STORE_LEADER_H
#define CSA_STORE_LEADER_H

#include <stdint.h>
#include "base/err.h"

struct csa_leader;
struct csa_pg;
struct csa_ws;

/* Longest role name, bytes. */
#define CSA_LEADER_ROLE_MAX 31

/* A node that always leads 'role' (single host). *out is freed with
 * csa_leader_free(). CSA_EINVAL for an empty or too long role,
 * CSA_ENOMEM. */
int csa_leader_solo_open(const char *role, struct csa_leader **out, struct csa_err *err);

/* Leadership of 'role' among every node of the database of 'pg'
 * (borrowed until csa_leader_free; its schema migrated). Opening connects
 * nothing and leads nothing: the first csa_leader_poll() tries. */
int csa_leader_pg_open(struct csa_pg *pg, const char *role, struct csa_leader **out,
                       struct csa_err *err);

/* The leadership of 'role' for a workspace: over its database when its
 * tickets are in PostgreSQL (ws->pg), else solo. */
int csa_leader_open_ws(struct csa_ws *ws, const char *role, struct csa_leader **out,
                       struct csa_err *err);

/* Give the role up (closing the dedicated connection lets go of the
 * lock at once, so another node takes over at its next poll) and free.
 * NULL is a no-op. */
void csa_leader_free(struct csa_leader *l);

/*
 * One round trip before each round of the role's work. Not leading: try
 * to take the role (the advisory lock; on success a new epoch). Leading:
 * check the role is still this node's (the connection alive and the
 * epoch unchanged). *leading: 1 when the round may run as leader.
 * CSA_OK, or an error saying why leadership could not be taken or was
 * lost ("lost the leadership of 'tick' (epoch 3): ..."), with *leading 0.
 * Another node leading is CSA_OK with *leading 0, not an error.
 */
int csa_leader_poll(struct csa_leader *l, int *leading, struct csa_err *err);

/* What the last poll found (1 leading, 0 not), without asking anyone. */
int csa_leader_leading(struct csa_leader *l);

/* The epoch of the current leadership, or of the last one this handle
 * held (0: never led; solo: always 0). */
int64_t csa_leader_epoch(struct csa_leader *l);

/* The role's name (valid until free). */
const char *csa_leader_role(const struct csa_leader *l);

/* The check a write outside the database can make: CSA_OK when the last
 * poll found this node leading (solo: always), else CSA_ECONFLICT "not
 * the leader of 'role'". It asks no one: a write into the database fences
 * itself in its transaction instead (leader_pg.h). */
int csa_leader_check(struct csa_leader *l, struct csa_err *err);

#endif
