/* Tickets copied from one workspace's store to another's (store/ws.h). */
#include "store/store.h"
#include "store/blobs.h"
#include "store/ws.h"

#include <stdlib.h>
#include <string.h>

#define TRANSFER_GROUP 200 /* tickets per commit on the receiving side */

/* The tickets gathered for one group commit. */
struct group {
	struct csa_ticket tk[TRANSFER_GROUP];
	struct csa_ticket *ptr[TRANSFER_GROUP];
	size_t n;
};

static int flush(struct csa_ws *to, struct group *g, struct csa_err *err)
{
	int rc = g->n ? csa_store_commit_many(to->store, g->ptr, g->n, CSA_DOC_ALL, err) : CSA_OK;
	for (size_t k = 0; k < g->n; k++)
		csa_ticket_release(&g->tk[k]);
	g->n = 0;
	return rc;
}

/* Whether two copies of a document are the same but for the stamps every
 * commit writes (E's and I's last_updated, T's last_synchronized). */
static int same_doc(const json_t *a, const json_t *b, const char *stamp)
{
	json_t *x = json_copy((json_t *)a), *y = json_copy((json_t *)b);
	json_object_del(x, stamp);
	json_object_del(y, stamp);
	int same = json_equal(x, y);
	json_decref(x);
	json_decref(y);
	return same;
}

/* What ticket 'id' of 'from' is to 'to': added to the group (1), the
 * same there already (0), a conflict (2), or an error (< 0). */
static int compare_or_add(struct csa_ws *from, struct csa_ws *to, const char *id,
                          struct group *g, struct csa_err *err)
{
	struct csa_ticket src, dst;
	int rc = csa_store_load(from->store, id, &src, err);
	if (rc) {
		csa_error_prefix(err, "ticket '%s' of '%s': ", id, from->root);
		return -1;
	}
	rc = csa_store_load(to->store, id, &dst, err);
	if (rc == CSA_OK) {
		int same = same_doc(src.e, dst.e, "last_updated") &&
		           same_doc(src.i, dst.i, "last_updated") &&
		           same_doc(src.t, dst.t, "last_synchronized");
		csa_ticket_release(&src);
		csa_ticket_release(&dst);
		return same ? 0 : 2;
	}
	if (rc != CSA_ENOENT) {
		csa_ticket_release(&src);
		csa_error_prefix(err, "ticket '%s' where it goes: ", id);
		return -1;
	}
	/* a new ticket on the receiving side: its documents, nothing of how
	 * the other store loaded them */
	struct csa_ticket *tk = &g->tk[g->n];
	memset(tk, 0, sizeof(*tk));
	memcpy(tk->id, src.id, sizeof(tk->id));
	tk->e = json_incref(src.e);
	tk->i = json_incref(src.i);
	tk->t = json_incref(src.t);
	g->ptr[g->n++] = tk;
	csa_ticket_release(&src);
	return 1;
}

/* The workspace's documents (models, knowledge base: store/blobs.h) go
 * along: every one 'to' lacks or holds other bytes of is put there (the
 * side being moved to takes the side being moved from's models and
 * articles, over the defaults a new workspace is seeded with). */
#define DOC_MAX ((size_t)1 << 30)

static int transfer_documents(struct csa_ws *from, struct csa_ws *to, size_t *n_docs,
                              size_t *n_copied, struct csa_err *err)
{
	static const char *const areas[] = {"models", "kb"};
	*n_docs = *n_copied = 0;
	for (size_t a = 0; a < sizeof(areas) / sizeof(areas[0]); a++) {
		json_t *names = NULL;
		int rc = csa_blobs_list(from->blobs, areas[a], &names, err);
		if (rc)
			return rc;
		size_t i;
		json_t *nm;
		json_array_foreach(names, i, nm)
		{
			char name[256], *src = NULL, *dst = NULL;
			size_t slen = 0, dlen = 0;
			snprintf(name, sizeof(name), "%s/%s", areas[a], json_string_value(nm));
			if ((rc = csa_blobs_get(from->blobs, name, DOC_MAX, &src, &slen, err)))
				break;
			int have = csa_blobs_get(to->blobs, name, DOC_MAX, &dst, &dlen, NULL) == CSA_OK;
			if (!have || dlen != slen || memcmp(src, dst, slen) != 0) {
				rc = csa_blobs_put(to->blobs, name, src, slen, err);
				*n_copied += rc == CSA_OK;
			}
			(*n_docs)++;
			free(src);
			free(dst);
			if (rc)
				break;
		}
		json_decref(names);
		if (rc)
			return rc;
	}
	return CSA_OK;
}

int csa_ws_transfer(struct csa_ws *from, struct csa_ws *to, json_t **report,
                    struct csa_err *err)
{
	char **ids = NULL;
	size_t n = 0, copied = 0, same = 0;
	*report = NULL;
	int rc = csa_store_ids(from->store, &ids, &n, err);
	if (rc)
		return rc;
	struct group *g = calloc(1, sizeof(*g));
	json_t *conflicts = json_array();
	if (!g || !conflicts)
		rc = csa_error(err, CSA_ENOMEM, "out of memory copying tickets");
	for (size_t k = 0; rc == CSA_OK && k < n; k++) {
		int r = compare_or_add(from, to, ids[k], g, err);
		if (r < 0)
			rc = err->code ? err->code : CSA_EIO;
		else if (r == 0)
			same++;
		else if (r == 2)
			json_array_append_new(conflicts, json_string(ids[k]));
		if (rc == CSA_OK && g->n == TRANSFER_GROUP) {
			size_t c = g->n;
			if ((rc = flush(to, g, err)) == CSA_OK)
				copied += c;
		}
	}
	if (g && rc == CSA_OK) {
		size_t c = g->n;
		if ((rc = flush(to, g, err)) == CSA_OK)
			copied += c;
	} else if (g) {
		for (size_t k = 0; k < g->n; k++)
			csa_ticket_release(&g->tk[k]);
	}
	free(g);
	csa_store_ids_free(ids, n);
	size_t docs = 0, docs_copied = 0;
	if (rc == CSA_OK)
		rc = transfer_documents(from, to, &docs, &docs_copied, err);
	if (rc == CSA_OK)
		*report = json_pack("{s:I, s:I, s:I, s:O, s:I, s:I}", "tickets", (json_int_t)n,
		                    "copied", (json_int_t)copied, "same", (json_int_t)same,
		                    "conflicts", conflicts, "documents", (json_int_t)docs,
		                    "documents_copied", (json_int_t)docs_copied);
	json_decref(conflicts);
	if (rc == CSA_OK && !*report)
		rc = csa_error(err, CSA_ENOMEM, "out of memory writing the transfer's report");
	return rc;
}
