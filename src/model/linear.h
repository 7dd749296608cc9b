/*
 * The embedded classifier over hashed text features (model/text.h): a
 * softmax output layer either straight on the features (multinomial
 * logistic regression) or on one hidden layer of ReLU units (a small
 * neural network, the default), trained by mini-batch-free AdaGrad with L2
 * regularisation (and dropout on the hidden units) for several passes in a
 * seeded order, with temperature calibration fitted on held-out data (then,
 * by default, trained again on all the data with that temperature).
 *
 * Thread safety: predict takes a read lock and may run in many threads;
 * learn (online update from one example) takes the write lock.
 * Files: "CSAM" magic, format version (3; 1 and 2 are still read), options,
 * temperature, hidden units, labels, float32 weights, CRC-32 of everything
 * before it; a truncated, foreign, corrupt or newer file is refused.
 */
#ifndef CSA_MODEL_LINEAR_H
#define CSA_MODEL_LINEAR_H

#include <stddef.h>
#include <stdint.h>
#include "base/err.h"
#include "model/text.h"

struct csa_linear;

struct csa_feat_memo;

struct csa_train_opts {
	struct csa_feat_opts feat;
	unsigned epochs;
	/* Units of the hidden layer, 0 for a linear model. A hidden layer
	 * learns which words and word parts go together: on Banking77 (77
	 * intents) 80 units gain about half a point of accuracy, at 'hidden'
	 * floats per hashed feature instead of one per label. */
	unsigned hidden;
	double dropout; /* share of hidden units dropped per training step */
	double lr;      /* AdaGrad base step; 0: 0.1 linear, 0.05 with hidden units */
	double l2;      /* L2 strength per update */
	unsigned seed;
	double label_smoothing;
	/* With calibration data: after fitting the temperature, train again
	 * from scratch on training + calibration data, keeping the temperature
	 * (10% more data is worth the second run). */
	int refit;
	/* Added to every wrong label's score in training (a softmax with a
	 * margin): an example keeps a sizeable gradient until its label leads
	 * the others by about that much, so the model keeps away from the
	 * boundary instead of stopping just past it; better accuracy and
	 * confidence ranking on unseen text. 0: plain softmax. */
	double margin;
	/* Texts' features remembered from earlier trainings (borrowed; NULL:
	 * none): the same vectors, extracted once while a text is in use. */
	struct csa_feat_memo *memo;
};

/* Defaults that work for short support texts. */
void csa_train_opts_default(struct csa_train_opts *o);

/* The hidden units a model of n_labels gets unless told otherwise: a
 * hidden layer pays on fine-grained taxonomies (77 intents in Banking77),
 * where its table is about the size of a linear model's; with a handful of
 * labels it would make the model many times larger and each prediction
 * slower for little gain, so those stay linear. */
unsigned csa_train_default_hidden(size_t n_labels);

/* One training example: features built by the caller or by the model. */
struct csa_example {
	const char *text;
	const char *const *extra;
	size_t n_extra;
	int label; /* index into the labels */
};

/*
 * Train on 'n' examples over 'n_labels' labels (names copied). 'calib'
 * (may be NULL / 0) is held-out data to fit the temperature on; without it
 * the temperature is 1.
 */
int csa_linear_train(const char *const *labels, size_t n_labels, const struct csa_example *ex,
                     size_t n, const struct csa_example *calib, size_t n_calib,
                     const struct csa_train_opts *o, struct csa_linear **out, struct csa_err *err);

size_t csa_linear_n_labels(const struct csa_linear *m);
const char *csa_linear_label(const struct csa_linear *m, size_t i);
int csa_linear_label_index(const struct csa_linear *m, const char *name);
double csa_linear_temperature(const struct csa_linear *m);
/* Accuracy on the calibration data of a freshly trained model, measured
 * before the refit that also learns from it; NaN without calibration data
 * or after loading (not saved). */
double csa_linear_heldout_accuracy(const struct csa_linear *m);
/* Hidden units; 0 for a linear model. */
size_t csa_linear_hidden(const struct csa_linear *m);
/* Incremented by every online update; saved with the model. */
uint32_t csa_linear_revision(const struct csa_linear *m);

/* Calibrated probabilities into probs[n_labels]. Thread-safe. */
int csa_linear_predict(const struct csa_linear *m, const char *text, size_t len,
                       const char *const *extra, size_t n_extra, double *probs);

/* Uncalibrated scores (logits) into scores[n_labels]; for fitting. */
int csa_linear_scores(const struct csa_linear *m, const char *text, size_t len,
                      const char *const *extra, size_t n_extra, double *scores);

/* One readable term of an input and how much it weighs for a label. */
#define CSA_TERM_NAME 64
struct csa_term {
	char name[CSA_TERM_NAME]; /* "word=refund" or a structured feature ("tier=PREMIUM") */
	double weight;            /* how much its removal lowers the label's margin */
};

/*
 * Why the model leans to 'label' for this input: the terms whose removal
 * lowers the label's margin (its logit over the mean logit) the most,
 * largest first, at most 'max' with a positive weight, into out; *n_out
 * receives how many. Terms are the structured features and the words of
 * the normalised text of 3 to 48 bytes without digits (so numbers such
 * as phones or card numbers are never named), a word standing for its
 * unigram and character n-grams (bigrams and pairs, shared by two words,
 * are left out). Exact for a linear model; for a hidden layer the hidden
 * units are recomputed without the term. Thread-safe. Returns 0 or
 * CSA_ENOMEM.
 */
int csa_linear_explain(const struct csa_linear *m, const char *text, size_t len,
                       const char *const *extra, size_t n_extra, int label, struct csa_term *out,
                       size_t max, size_t *n_out);

/* Online update towards 'label' from one example (a few SGD steps until
 * the label leads or the step budget is spent). */
int csa_linear_learn(struct csa_linear *m, const char *text, size_t len, const char *const *extra,
                     size_t n_extra, int label, struct csa_err *err);

/* Set the temperature (after fitting it elsewhere). */
void csa_linear_set_temperature(struct csa_linear *m, double t);

/* The saved form (a checksummed binary, docs/MODEL.md) to and from a
 * file, or to and from memory for a store that keeps it elsewhere; 'name'
 * names it in errors. Decoding checks everything a damaged or hostile
 * file could get wrong. */
#define CSA_LINEAR_MAX_BYTES ((size_t)1 << 31)
int csa_linear_save(const struct csa_linear *m, const char *path, struct csa_err *err);
int csa_linear_load(const char *path, struct csa_linear **out, struct csa_err *err);
int csa_linear_encode(const struct csa_linear *m, char **out, size_t *out_len, const char *name,
                      struct csa_err *err);
int csa_linear_decode(const char *buf, size_t len, const char *name, struct csa_linear **out,
                      struct csa_err *err);
/* Bytes of the saved form. */
size_t csa_linear_file_size(const struct csa_linear *m);
void csa_linear_free(struct csa_linear *m);

#endif
