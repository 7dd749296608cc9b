/*
 * Leadership of a role (store/leader.h): what both backends share, and
 * the solo backend of single-host mode, which always leads. The
 * PostgreSQL backend is leader_pg.c.
 */
#include "store/leader.h"
#include "store/leader_internal.h"
#include "store/ws.h"

#include <stdlib.h>
#include <string.h>

int csa_leader_init_base(struct csa_leader *l, const struct csa_leader_ops *ops, const char *role,
                         struct csa_err *err)
{
	size_t n = role ? strlen(role) : 0;
	if (n == 0 || n > CSA_LEADER_ROLE_MAX)
		return csa_error(err, CSA_EINVAL, "leadership role '%s': 1 to %d bytes",
		                 role ? role : "(null)", CSA_LEADER_ROLE_MAX);
	l->ops = ops;
	memcpy(l->role, role, n + 1);
	pthread_mutex_init(&l->mu, NULL);
	return CSA_OK;
}

void csa_leader_set(struct csa_leader *l, int leading, int64_t epoch)
{
	pthread_mutex_lock(&l->mu);
	l->leading = leading;
	l->epoch = epoch;
	pthread_mutex_unlock(&l->mu);
}

int csa_leader_poll(struct csa_leader *l, int *leading, struct csa_err *err)
{
	*leading = 0;
	return l->ops->poll(l, leading, err);
}

int csa_leader_leading(struct csa_leader *l)
{
	pthread_mutex_lock(&l->mu);
	int v = l->leading;
	pthread_mutex_unlock(&l->mu);
	return v;
}

int64_t csa_leader_epoch(struct csa_leader *l)
{
	pthread_mutex_lock(&l->mu);
	int64_t v = l->epoch;
	pthread_mutex_unlock(&l->mu);
	return v;
}

const char *csa_leader_role(const struct csa_leader *l)
{
	return l->role;
}

int csa_leader_check(struct csa_leader *l, struct csa_err *err)
{
	if (csa_leader_leading(l))
		return CSA_OK;
	return csa_error(err, CSA_ECONFLICT,
	                 "not the leader of '%s' (this node's last epoch: %lld): write refused",
	                 l->role, (long long)csa_leader_epoch(l));
}

void csa_leader_free(struct csa_leader *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->mu);
	l->ops->free(l);
}

/* ---- solo: one host, always the leader ------------------------------- */

static int solo_poll(struct csa_leader *l, int *leading, struct csa_err *err)
{
	(void)l, (void)err;
	*leading = 1;
	return CSA_OK;
}

static int solo_fence(struct csa_leader *l, void *c, const char *where, struct csa_err *err)
{
	(void)l, (void)c, (void)where, (void)err;
	return CSA_OK;
}

static void solo_free(struct csa_leader *l)
{
	free(l);
}

static const struct csa_leader_ops solo_ops = {solo_poll, solo_fence, solo_free};

int csa_leader_solo_open(const char *role, struct csa_leader **out, struct csa_err *err)
{
	struct csa_leader *l = calloc(1, sizeof(*l));
	if (!l)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the leadership of '%s'",
		                 role ? role : "(null)");
	int rc = csa_leader_init_base(l, &solo_ops, role, err);
	if (rc) {
		free(l);
		return rc;
	}
	/* leading from the start: nothing to take */
	l->leading = 1;
	*out = l;
	return CSA_OK;
}

int csa_leader_open_ws(struct csa_ws *ws, const char *role, struct csa_leader **out,
                       struct csa_err *err)
{
	if (ws->pg)
		return csa_leader_pg_open(ws->pg, role, out, err);
	return csa_leader_solo_open(role, out, err);
}
