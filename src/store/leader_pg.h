/*
 * The fence of a leader's writes into PostgreSQL (store/leader.h), for
 * the database backends: src/store/ and the *_pg.c files only
 * (scripts/check-layers.sh), as it includes libpq's header.
 */
#ifndef CSA_STORE_LEADER_PG_H
#define CSA_STORE_LEADER_PG_H

#include <libpq-fe.h>
#include "base/err.h"

struct csa_leader;

/*
 * Inside the caller's open transaction on 'c' (a connection of the same
 * database; 'where' names it in messages, csa_pg_where): CSA_OK when
 * 'role's epoch in csa_leaders is still the one 'l' took. The row stays
 * locked FOR SHARE until the transaction ends, so no other node can take
 * the role over before the caller's writes commit or roll back. Else
 * nothing is written by the check and the caller must roll back:
 * CSA_ECONFLICT, "fenced: this node led 'outbox' at epoch 3, PostgreSQL
 * at HOST:PORT/DB has epoch 4 (node H:PID): write refused"; a handle that
 * knows it is not leading refuses without asking; CSA_EBACKEND when the
 * check itself failed. A solo leader: CSA_OK without a query.
 */
int csa_leader_fence_pg(struct csa_leader *l, PGconn *c, const char *where, struct csa_err *err);

#endif
