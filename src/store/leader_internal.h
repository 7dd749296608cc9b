/*
 * What the two backends of store/leader.h share (src/store/ only): the
 * handle's common part and its table of operations.
 */
#ifndef CSA_STORE_LEADER_INTERNAL_H
#define CSA_STORE_LEADER_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include "store/leader.h"

struct csa_leader_ops {
	/* as csa_leader_poll; the backend updates 'leading' and 'epoch'
	 * under 'mu' (leader_set) */
	int (*poll)(struct csa_leader *l, int *leading, struct csa_err *err);
	/* as csa_leader_fence_pg, 'c' a PGconn * (NULL for the solo backend,
	 * which never asks) */
	int (*fence)(struct csa_leader *l, void *c, const char *where, struct csa_err *err);
	void (*free)(struct csa_leader *l);
};

struct csa_leader {
	const struct csa_leader_ops *ops;
	char role[CSA_LEADER_ROLE_MAX + 1];
	pthread_mutex_t mu; /* guards leading and epoch */
	int leading;
	int64_t epoch;
};

/* Fill the common part (role checked): CSA_OK or CSA_EINVAL. */
int csa_leader_init_base(struct csa_leader *l, const struct csa_leader_ops *ops, const char *role,
                         struct csa_err *err);
/* Record what a poll found. */
void csa_leader_set(struct csa_leader *l, int leading, int64_t epoch);

#endif
