/*
 * A decision model: what the agents ask for one decision type (category,
 * priority, strategy, escalation). It maps a text plus structured features
 * ("tier=PREMIUM", "category=BILLING_INQUIRY") to calibrated probabilities
 * over the type's labels, and learns online from one human decision.
 *
 * This is the seam between agents and model backends: the embedded model
 * (model/) is adapted to it in dmodel.c; LLM backends plug in behind the
 * cascade. Implementations must make predict safe to call from several
 * threads while learn runs.
 */
#ifndef CSA_AGENTS_DMODEL_H
#define CSA_AGENTS_DMODEL_H

#include <jansson.h>

#include <stddef.h>
#include "base/err.h"
#include "store/blobs.h"

enum csa_dtype {
	CSA_DT_CATEGORY,
	CSA_DT_PRIORITY,
	CSA_DT_STRATEGY,
	CSA_DT_ESCALATION,
	CSA_DT_COUNT
};

/* "category", "priority", "strategy", "escalation". */
const char *csa_dtype_name(enum csa_dtype t);
/* -1 if unknown. */
int csa_dtype_parse(const char *s);

struct csa_dmodel;

/* Number of labels and the name of label i (borrowed, valid while the
 * model lives). */
size_t csa_dmodel_n_labels(const struct csa_dmodel *m);
const char *csa_dmodel_label(const struct csa_dmodel *m, size_t i);
/* Index of a label name, -1 if unknown. */
int csa_dmodel_label_index(const struct csa_dmodel *m, const char *name);
/* Model name and version for the audit trail ("embedded-linear", "3"). */
const char *csa_dmodel_version(const struct csa_dmodel *m);

/* Calibrated probabilities into probs[n_labels]. */
int csa_dmodel_predict(const struct csa_dmodel *m, const char *text, const char *const *feats,
                       size_t n_feats, double *probs, struct csa_err *err);

/* Why the model leans to 'label' for this input: a new JSON array of at
 * most 'max' {"feature", "weight"}, heaviest first (csa_linear_explain in
 * model/linear.h); NULL when out of memory. */
json_t *csa_dmodel_explain(const struct csa_dmodel *m, const char *text, const char *const *feats,
                           size_t n_feats, size_t label, size_t max);

/* One online update towards 'label'. */
int csa_dmodel_learn(struct csa_dmodel *m, const char *text, const char *const *feats,
                     size_t n_feats, size_t label, struct csa_err *err);

/* Load models/<type>.model from the workspace's documents (store/blobs.h);
 * CSA_ENOENT when absent. */
int csa_dmodel_load(struct csa_blobs *b, enum csa_dtype t, struct csa_dmodel **out,
                    struct csa_err *err);
/* Save (atomically) as models/<type>.model. */
int csa_dmodel_save(const struct csa_dmodel *m, struct csa_blobs *b, enum csa_dtype t,
                    struct csa_err *err);
void csa_dmodel_free(struct csa_dmodel *m);

/* Training rows for csa_dmodel_train. */
struct csa_drow {
	const char *text;
	const char *const *feats;
	size_t n_feats;
	const char *label;
};

/* How a model did on the rows held out of its training: 'correct' of 'n'
 * (n 0: nothing was held out). */
struct csa_heldout {
	size_t correct, n;
};

/*
 * Train a model for 'labels' (the type's taxonomy, in order) on rows,
 * holding out every 'holdout'-th row (0: none) for calibration and for the
 * held-out measurement (*heldout, may be NULL), taken before the model is
 * refit on every row. Deterministic for a seed.
 */
int csa_dmodel_train(const char *const *labels, size_t n_labels, const struct csa_drow *rows,
                     size_t n_rows, unsigned holdout, unsigned seed, struct csa_dmodel **out,
                     struct csa_heldout *heldout, struct csa_err *err);

/* The same, the texts' features taken from 'memo' (model/featmemo.h;
 * borrowed, may be NULL) where an earlier training extracted them: the
 * same model. */
struct csa_feat_memo;
int csa_dmodel_train_memo(const char *const *labels, size_t n_labels, const struct csa_drow *rows,
                          size_t n_rows, unsigned holdout, unsigned seed,
                          struct csa_feat_memo *memo, struct csa_dmodel **out,
                          struct csa_heldout *heldout, struct csa_err *err);

/* Keep a model's held-out measurement beside it ("models/<type>.heldout.json":
 * {"decision_type", "correct", "n", "accuracy", "trained_rows", "trained_at"}),
 * the evidence of its accuracy the PHASE_1 gate reads; and read it back
 * (CSA_ENOENT when the type's model was never measured). */
int csa_dmodel_save_heldout(const struct csa_heldout *h, size_t trained_rows,
                            struct csa_blobs *b, enum csa_dtype t, struct csa_err *err);
int csa_dmodel_load_heldout(struct csa_blobs *b, const char *type, struct csa_heldout *h,
                            struct csa_err *err);

#endif
