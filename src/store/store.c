/* Backend-independent store helpers. */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

void csa_ticket_release(struct csa_ticket *tk)
{
	if (!tk)
		return;
	json_decref(tk->e);
	json_decref(tk->i);
	json_decref(tk->t);
	tk->e = tk->i = tk->t = NULL;
	for (int k = 0; k < 3; k++) {
		free(tk->loaded[k]);
		tk->loaded[k] = NULL;
		tk->loaded_len[k] = 0;
	}
}

int csa_store_update(struct csa_store *st, const char *id, int create, csa_update_fn fn, void *ctx,
                     struct csa_err *err)
{
	int rc = csa_id_check(id, strlen(id), err);
	if (rc)
		return rc;
	struct csa_lock *lk;
	if ((rc = csa_store_lock(st, id, &lk, err)))
		return rc;
	struct csa_ticket tk = {0};
	rc = csa_store_load_locked(st, id, &tk, err);
	if (rc == CSA_ENOENT && create) {
		memset(&tk, 0, sizeof(tk));
		memcpy(tk.id, id, strlen(id) + 1);
		rc = CSA_OK;
	}
	unsigned docs = 0;
	if (rc == CSA_OK)
		rc = fn(ctx, &tk, &docs, err);
	if (rc == CSA_OK && docs)
		rc = csa_store_commit(st, &tk, docs, err);
	csa_ticket_release(&tk);
	csa_store_unlock(st, lk);
	return rc;
}
