/*
 * The arithmetic of progressive automation (spec §4.2, §7.1), pure and
 * tested directly: confidence intervals, the readiness score, the
 * confidence needed for a target accuracy, distribution shift, and the
 * review sampling rate.
 */
#ifndef CSA_AUTOMATION_STATS_H
#define CSA_AUTOMATION_STATS_H

#include <math.h>
#include <stddef.h>

/* "No confidence is enough": above every confidence, so that
 * 'confidence >= threshold' never holds. The one way to say it: JSON null
 * and SQL NULL outside the program. */
#define CSA_NO_THRESHOLD INFINITY

/* Whether t is a threshold a confidence can clear. */
static inline int csa_has_threshold(double t)
{
	return t <= 1;
}

/* Wilson score interval lower bound of k successes in n trials at z
 * (1.96 for 95%). 0 when n == 0. */
double csa_wilson_lower(size_t k, size_t n, double z);
/* The same for an observed proportion p over an effective sample size n. */
double csa_wilson_lower_p(double p, double n, double z);

/* One outcome: the AI's confidence and whether the human agreed. 'weight'
 * is 1 / the probability that it was reviewed at all (1 for decisions a
 * human made; 0 is read as 1), so a sample of autonomous decisions counts
 * for the decisions it stands for. */
struct csa_outcome {
	double confidence;
	int correct;
	double weight;
};

struct csa_readiness {
	size_t n;
	double success_rate;        /* accuracy of the AI's proposals */
	double consistency;         /* 1 - spread of accuracy across time windows */
	double confidence_accuracy; /* 1 - ECE (15 bins) */
	double score;               /* 0.4 success + 0.3 consistency + 0.3 conf. accuracy */
};

/* Readiness of a segment from its outcomes, oldest first, each counting
 * for its weight. Consistency uses 4 consecutive windows (needs >= 40
 * outcomes, else it is the success rate). */
void csa_readiness(const struct csa_outcome *o, size_t n, struct csa_readiness *r);

/*
 * The lowest confidence threshold t such that the outcomes with confidence
 * >= t have a Wilson lower bound of accuracy >= target, using at least
 * min_n of them. Outcomes are importance-weighted (Horvitz-Thompson): the
 * accuracy is the weighted share, and the bound uses the effective sample
 * size (sum w)^2 / sum w^2, so sampled reviews are neither over- nor
 * under-counted. Returns CSA_NO_THRESHOLD when no threshold works.
 * 'o' is reordered.
 */
double csa_threshold_for_accuracy(struct csa_outcome *o, size_t n, double target, double z,
                                  size_t min_n);

/* Population stability index between two histograms of equal bin count
 * (counts; empty bins are smoothed). > 0.25 is a significant shift. */
double csa_psi(const double *expected, const double *actual, size_t bins);

/* Probability to send an autonomous decision to a delayed human review:
 * starts at 1 and decays towards 'floor' with 'reviewed' evidence
 * (half-life 'half_life' reviews); less certain decisions are reviewed more
 * ('uncertain_share' of the budget follows 1 - confidence, the rest is
 * uniform). */
double csa_review_probability(size_t reviewed, double floor, double half_life, double confidence,
                              double mean_confidence, double uncertain_share);

#endif
