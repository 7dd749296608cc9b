/* Backend-independent store helpers. */
#include "store/store.h"
#include "base/jdump.h"
#include "store/schema.h"
#include "store/store_internal.h"

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

int csa_store_cache_docs(struct csa_store *st, size_t tickets)
{
	if (st->docs)
		return csa_doccache_grow(st->docs, tickets);
	return csa_doccache_new(tickets, &st->docs);
}

/* csa_store_commit() of a ticket released right after (csa_store_update):
 * with a document cache, a ticket committed whole goes into it by moving
 * its documents rather than copying them (a replay commits a ticket about
 * five times, and the copies cost as much as the serialising). After the
 * observers, who may read tk. */
static int commit_then_release(struct csa_store *st, struct csa_ticket *tk, unsigned docs,
                               struct csa_err *err)
{
	struct csa_ticket *one[1] = {tk};
	int rc = st->ops->commit(st, one, 1, docs, err);
	int adopt = st->docs && rc == CSA_OK && (docs & CSA_DOC_ALL) == CSA_DOC_ALL;
	if (st->docs) /* drops what it had of tk; copies it only when not adopting */
		csa_doccache_committed(st->docs, one, 1, docs, rc == CSA_OK && !adopt);
	if (rc == CSA_OK)
		csa_store_notify(st, one, 1);
	if (adopt)
		csa_doccache_adopt(st->docs, tk);
	return rc;
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
		rc = commit_then_release(st, &tk, docs, err);
	csa_ticket_release(&tk);
	csa_store_unlock(st, lk);
	return rc;
}

int csa_ticket_prepare_commit(struct csa_ticket *tk, unsigned docs, const char *ts,
                              const struct csa_limits *lim, char *out[3], size_t len[3],
                              struct csa_err *err)
{
	for (int k = 0; k < 3; k++)
		out[k] = NULL;
	int rc = csa_id_check(tk->id, strlen(tk->id), err);
	if (rc)
		return rc;
	if (!tk->e || !tk->i || !tk->t)
		return csa_error(err, CSA_EINVAL, "ticket '%s': commit needs all three documents",
		                 tk->id);
	json_t *d[3] = {tk->e, tk->i, tk->t};
	if (docs & CSA_DOC_E)
		json_object_set_new(tk->e, "last_updated", json_string(ts));
	if (docs & CSA_DOC_I)
		json_object_set_new(tk->i, "last_updated", json_string(ts));
	json_object_set_new(tk->t, "last_synchronized", json_string(ts));
	for (int k = 0; k < 3; k++) {
		if (k != 2 && !(docs & (1u << k)) && tk->exists && tk->loaded[k]) {
			/* a conversation document this commit leaves alone: the bytes
			 * it was loaded from, checked when they were loaded, instead
			 * of a schema check and a serialisation per commit */
			if (!(out[k] = malloc(tk->loaded_len[k] + 1))) {
				rc = csa_error(err, CSA_ENOMEM, "cannot serialize ticket '%s'", tk->id);
				goto fail;
			}
			memcpy(out[k], tk->loaded[k], tk->loaded_len[k]);
			out[k][tk->loaded_len[k]] = '\0';
			len[k] = tk->loaded_len[k];
			continue;
		}
		if ((rc = csa_schema_check((enum csa_doc_kind)k, tk->id, d[k], err)) ||
		    (rc = csa_schema_check_limits((enum csa_doc_kind)k, tk->id, d[k], lim, err)))
			goto fail;
		/* json_dumps()'s bytes (JSON_COMPACT | JSON_PRESERVE_ORDER), in a
		 * fraction of its time: every commit serialises T again */
		char *s = csa_jdump_compact(d[k], CSA_STORE_REAL_PRECISION, &len[k]);
		if (!s) {
			rc = csa_error(err, CSA_ENOMEM, "cannot serialize ticket '%s'", tk->id);
			goto fail;
		}
		out[k] = s;
		if (len[k] > lim->max_document_bytes) {
			rc = csa_error(err, CSA_ELIMIT,
			               "%c_%s.json would be %zu bytes, limit is %zu",
			               csa_doc_letter(k), tk->id, len[k], lim->max_document_bytes);
			goto fail;
		}
	}
	return CSA_OK;
fail:
	for (int k = 0; k < 3; k++) {
		free(out[k]);
		out[k] = NULL;
	}
	return rc;
}
