/*
 * Calibration and selective-prediction metrics over a set of predictions
 * (predicted label, true label, confidence): accuracy, macro-F1, expected
 * calibration error with equal-width bins, the reliability table, and the
 * risk-coverage curve (accuracy when only the most confident fraction is
 * answered, and the largest fraction answerable at a target accuracy).
 * Pure functions.
 */
#ifndef CSA_MODEL_CALIB_H
#define CSA_MODEL_CALIB_H

#include <jansson.h>
#include <stddef.h>

struct csa_pred {
	int pred;
	int label;
	double conf;
};

double csa_calib_accuracy(const struct csa_pred *p, size_t n);
/* Macro-F1 over labels 0..n_labels-1 that occur in truth or predictions. */
double csa_calib_macro_f1(const struct csa_pred *p, size_t n, size_t n_labels);
/* Precision, recall, F1, support (true count) and predicted count of each
 * label that occurs, weakest F1 first: [{"label", "precision", "recall",
 * "f1", "support", "predicted"}]; names[l] names label l. NULL when out
 * of memory. */
json_t *csa_calib_per_label(const struct csa_pred *p, size_t n, size_t n_labels,
                            const char *const *names);
/* ECE with 'bins' equal-width bins (15 in reports). */
double csa_calib_ece(const struct csa_pred *p, size_t n, int bins);
/* [{"bin_lo", "bin_hi", "n", "confidence", "accuracy"}] for non-empty bins. */
json_t *csa_calib_reliability(const struct csa_pred *p, size_t n, int bins);
/* Accuracy on the 'coverage' most confident fraction. 'p' is reordered. */
double csa_calib_acc_at_coverage(struct csa_pred *p, size_t n, double coverage);
/* Largest coverage whose accuracy is >= target (0 if none). 'p' reordered. */
double csa_calib_coverage_at_acc(struct csa_pred *p, size_t n, double target);
/* The object `csa model eval` prints, minus timing fields. 'p' reordered. */
json_t *csa_calib_report(struct csa_pred *p, size_t n, size_t n_labels);

#endif
