/* Decision models over the embedded linear classifier. */
#include "agents/dmodel.h"
#include "model/linear.h"

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

void csa_dmodel_free(struct csa_dmodel *m)
{
	if (!m)
		return;
	csa_linear_free(m->lin);
	free(m);
}

int csa_dmodel_train(const char *const *labels, size_t n_labels, const struct csa_drow *rows,
                     size_t n_rows, unsigned holdout, unsigned seed, struct csa_dmodel **out,
                     double *heldout_acc, struct csa_err *err)
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
	if (heldout_acc)
		*heldout_acc = csa_linear_heldout_accuracy(m->lin);
	*out = m;
out:
	free(tr);
	free(ho);
	return rc;
}
