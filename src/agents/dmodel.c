/* Decision models over the embedded linear classifier. */
#include "agents/dmodel.h"
#include "model/linear.h"
#include "base/json.h"
#include "base/ts.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct csa_dmodel {
	struct csa_linear *lin;
	char version[64];
};

static const char *const dtype_names[CSA_DT_COUNT] = {"category", "priority", "strategy",
                                                      "escalation"};

const char *csa_dtype_name(enum csa_dtype t)
{
	return t < CSA_DT_COUNT ? dtype_names[t] : "?";
}

int csa_dtype_parse(const char *s)
{
	for (int i = 0; s && i < CSA_DT_COUNT; i++)
		if (strcmp(s, dtype_names[i]) == 0)
			return i;
	return -1;
}

size_t csa_dmodel_n_labels(const struct csa_dmodel *m)
{
	return csa_linear_n_labels(m->lin);
}

const char *csa_dmodel_label(const struct csa_dmodel *m, size_t i)
{
	return csa_linear_label(m->lin, i);
}

int csa_dmodel_label_index(const struct csa_dmodel *m, const char *name)
{
	return csa_linear_label_index(m->lin, name);
}

static void set_version(struct csa_dmodel *m)
{
	snprintf(m->version, sizeof(m->version), "embedded-linear/r%u",
	         csa_linear_revision(m->lin));
}

const char *csa_dmodel_version(const struct csa_dmodel *m)
{
	return m->version;
}

int csa_dmodel_predict(const struct csa_dmodel *m, const char *text, const char *const *feats,
                       size_t n_feats, double *probs, struct csa_err *err)
{
	int rc = csa_linear_predict(m->lin, text, strlen(text), feats, n_feats, probs);
	return rc ? csa_error(err, rc, "out of memory predicting") : CSA_OK;
}

json_t *csa_dmodel_explain(const struct csa_dmodel *m, const char *text, const char *const *feats,
                           size_t n_feats, size_t label, size_t max)
{
	struct csa_term terms[16];
	size_t n = 0;
	if (max > 16)
		max = 16;
	if (csa_linear_explain(m->lin, text, strlen(text), feats, n_feats, (int)label, terms, max,
	                       &n))
		return NULL;
	json_t *out = json_array();
	for (size_t i = 0; out && i < n; i++)
		json_array_append_new(out, json_pack("{s:s, s:f}", "feature", terms[i].name,
		                                     "weight", round(terms[i].weight * 1e4) / 1e4));
	return out;
}

int csa_dmodel_learn(struct csa_dmodel *m, const char *text, const char *const *feats,
                     size_t n_feats, size_t label, struct csa_err *err)
{
	int rc = csa_linear_learn(m->lin, text, strlen(text), feats, n_feats, (int)label, err);
	if (!rc)
		set_version(m);
	return rc;
}

static void model_name(enum csa_dtype t, char *out, size_t n)
{
	snprintf(out, n, "models/%s.model", csa_dtype_name(t));
}

int csa_dmodel_load(struct csa_blobs *b, enum csa_dtype t, struct csa_dmodel **out,
                    struct csa_err *err)
{
	char name[64];
	model_name(t, name, sizeof(name));
	char *buf;
	size_t len;
	int rc = csa_blobs_get(b, name, CSA_LINEAR_MAX_BYTES, &buf, &len, err);
	if (rc)
		return rc;
	struct csa_dmodel *m = calloc(1, sizeof(*m));
	if (!m)
		rc = csa_error(err, CSA_ENOMEM, "out of memory loading '%s'", name);
	else
		rc = csa_linear_decode(buf, len, name, &m->lin, err);
	free(buf);
	if (rc) {
		free(m);
		return rc;
	}
	set_version(m);
	*out = m;
	return CSA_OK;
}

int csa_dmodel_save(const struct csa_dmodel *m, struct csa_blobs *b, enum csa_dtype t,
                    struct csa_err *err)
{
	char name[64];
	model_name(t, name, sizeof(name));
	char *buf;
	size_t len;
	int rc = csa_linear_encode(m->lin, &buf, &len, name, err);
	if (rc == CSA_OK)
		rc = csa_blobs_put(b, name, buf, len, err);
	free(buf);
	return rc;
}

int csa_dmodel_save_heldout(const struct csa_heldout *h, size_t trained_rows,
                            struct csa_blobs *b, enum csa_dtype t, struct csa_err *err)
{
	char name[96], ts[CSA_TS_LEN];
	snprintf(name, sizeof(name), "models/%s.heldout.json", csa_dtype_name(t));
	csa_ts_format(csa_now_ms(), ts);
	json_t *j = json_pack("{s:s, s:I, s:I, s:o, s:I, s:s}", "decision_type", csa_dtype_name(t),
	                      "correct", (json_int_t)h->correct, "n", (json_int_t)h->n, "accuracy",
	                      h->n ? json_real((double)h->correct / (double)h->n) : json_null(),
	                      "trained_rows", (json_int_t)trained_rows, "trained_at", ts);
	char *buf = NULL;
	size_t len;
	int rc = j ? csa_json_dump(j, 1, &buf, &len, err)
	           : csa_error(err, CSA_ENOMEM, "out of memory writing '%s'", name);
	if (rc == CSA_OK)
		rc = csa_blobs_put(b, name, buf, len, err);
	free(buf);
	json_decref(j);
	return rc;
}

int csa_dmodel_load_heldout(struct csa_blobs *b, const char *type, struct csa_heldout *h,
                            struct csa_err *err)
{
	char name[96], *buf;
	size_t len;
	snprintf(name, sizeof(name), "models/%.40s.heldout.json", type);
	int rc = csa_blobs_get(b, name, 1 << 16, &buf, &len, err);
	if (rc)
		return rc;
	json_t *j;
	rc = csa_json_parse(buf, len, name, &j, err);
	free(buf);
	if (rc)
		return rc;
	json_int_t correct = json_integer_value(json_object_get(j, "correct")),
	           n = json_integer_value(json_object_get(j, "n"));
	json_decref(j);
	if (n < 0 || correct < 0 || correct > n)
		return csa_error(err, CSA_ESCHEMA, "'%s': 'correct' and 'n' must be 0 <= correct <= n",
		                 name);
	h->correct = (size_t)correct;
	h->n = (size_t)n;
	return CSA_OK;
}

void csa_dmodel_free(struct csa_dmodel *m)
{
	if (!m)
		return;
	csa_linear_free(m->lin);
	free(m);
}

int csa_dmodel_train(const char *const *labels, size_t n_labels, const struct csa_drow *rows,
                     size_t n_rows, unsigned holdout, unsigned seed, struct csa_dmodel **out,
                     struct csa_heldout *heldout, struct csa_err *err)
{
	return csa_dmodel_train_memo(labels, n_labels, rows, n_rows, holdout, seed, NULL, out,
	                             heldout, err);
}

int csa_dmodel_train_memo(const char *const *labels, size_t n_labels, const struct csa_drow *rows,
                          size_t n_rows, unsigned holdout, unsigned seed,
                          struct csa_feat_memo *memo, struct csa_dmodel **out,
                          struct csa_heldout *heldout, struct csa_err *err)
{
	struct csa_example *tr = calloc(n_rows ? n_rows : 1, sizeof(*tr));
	struct csa_example *ho = calloc(n_rows ? n_rows : 1, sizeof(*ho));
	size_t ntr = 0, nho = 0;
	int rc = CSA_OK;
	if (!tr || !ho) {
		rc = csa_error(err, CSA_ENOMEM, "out of memory training");
		goto out;
	}
	for (size_t i = 0; i < n_rows; i++) {
		int l = -1;
		for (size_t k = 0; k < n_labels; k++)
			if (rows[i].label && strcmp(rows[i].label, labels[k]) == 0)
				l = (int)k;
		if (l < 0) {
			rc =
			    csa_error(err, CSA_EINVAL, "row %zu: label '%s' is not in the taxonomy",
			              i, rows[i].label ? rows[i].label : "(null)");
			goto out;
		}
		struct csa_example e = {rows[i].text, rows[i].feats, rows[i].n_feats, l};
		if (holdout && i % holdout == holdout - 1)
			ho[nho++] = e;
		else
			tr[ntr++] = e;
	}
	struct csa_train_opts o;
	csa_train_opts_default(&o);
	o.seed = seed;
	/* Ticket decisions have few labels: a smaller hash space keeps the
	 * four models of a workspace small without losing accuracy. */
	o.feat.bits = n_labels <= 8 ? 18 : 17;
	o.hidden = csa_train_default_hidden(n_labels);
	o.memo = memo;
	struct csa_dmodel *m = calloc(1, sizeof(*m));
	if (!m) {
		rc = csa_error(err, CSA_ENOMEM, "out of memory training");
		goto out;
	}
	rc = csa_linear_train(labels, n_labels, tr, ntr, ho, nho, &o, &m->lin, err);
	if (rc) {
		free(m);
		goto out;
	}
	set_version(m);
	/* measured by the trainer before it refits on the held-out rows too */
	if (heldout) {
		double acc = csa_linear_heldout_accuracy(m->lin); /* correct / nho */
		heldout->n = isnan(acc) ? 0 : nho;
		heldout->correct = heldout->n ? (size_t)llround(acc * (double)nho) : 0;
	}
	*out = m;
out:
	free(tr);
	free(ho);
	return rc;
}
