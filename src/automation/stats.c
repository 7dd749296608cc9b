/* Automation statistics. */
#include "automation/stats.h"

#include <math.h>
#include <stdlib.h>

double csa_wilson_lower(size_t k, size_t n, double z)
{
	return n ? csa_wilson_lower_p((double)k / (double)n, (double)n, z) : 0;
}

double csa_wilson_lower_p(double p, double nn, double z)
{
	if (nn <= 0)
		return 0;
	double z2 = z * z;
	double centre = p + z2 / (2 * nn);
	double margin = z * sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn));
	return fmax(0, (centre - margin) / (1 + z2 / nn));
}

static double weight_of(const struct csa_outcome *o)
{
	return o->weight > 0 ? o->weight : 1;
}

/* ECE over 15 bins, each outcome counting for its weight. */
static double ece15(const struct csa_outcome *o, size_t n)
{
	double conf[15] = {0}, acc[15] = {0}, cnt[15] = {0}, total = 0;
	for (size_t i = 0; i < n; i++) {
		int b = (int)(o[i].confidence * 15);
		b = b < 0 ? 0 : b > 14 ? 14 : b;
		double w = weight_of(&o[i]);
		conf[b] += w * o[i].confidence;
		acc[b] += o[i].correct ? w : 0;
		cnt[b] += w;
		total += w;
	}
	double e = 0;
	for (int b = 0; b < 15; b++)
		e += fabs(acc[b] - conf[b]);
	return total > 0 ? e / total : 0;
}

/* Weighted accuracy of o[a..b). */
static double accuracy_of(const struct csa_outcome *o, size_t a, size_t b)
{
	double w = 0, k = 0;
	for (size_t i = a; i < b; i++) {
		w += weight_of(&o[i]);
		k += o[i].correct ? weight_of(&o[i]) : 0;
	}
	return w > 0 ? k / w : 0;
}

/* The readiness of the decisions the outcomes stand for: once autonomous
 * decisions are only sampled for review, the reviewed set is mostly the
 * uncertain decisions a person made, so every figure is weighted back. */
void csa_readiness(const struct csa_outcome *o, size_t n, struct csa_readiness *r)
{
	r->n = n;
	r->success_rate = accuracy_of(o, 0, n);
	if (n >= 40) {
		double lo = 1, hi = 0;
		for (int w = 0; w < 4; w++) {
			double acc = accuracy_of(o, n * (size_t)w / 4, n * (size_t)(w + 1) / 4);
			lo = fmin(lo, acc);
			hi = fmax(hi, acc);
		}
		r->consistency = fmax(0, 1 - (hi - lo));
	} else {
		r->consistency = r->success_rate;
	}
	r->confidence_accuracy = n ? 1 - ece15(o, n) : 0;
	r->score = 0.4 * r->success_rate + 0.3 * r->consistency + 0.3 * r->confidence_accuracy;
}

static int by_conf_desc(const void *a, const void *b)
{
	double x = ((const struct csa_outcome *)a)->confidence,
	       y = ((const struct csa_outcome *)b)->confidence;
	return x > y ? -1 : x < y;
}

double csa_threshold_for_accuracy(struct csa_outcome *o, size_t n, double target, double z,
                                  size_t min_n)
{
	if (n)
		qsort(o, n, sizeof(*o), by_conf_desc);
	double best = CSA_NO_THRESHOLD, w = 0, w2 = 0, wk = 0;
	for (size_t i = 0; i < n; i++) {
		double wi = o[i].weight > 0 ? o[i].weight : 1;
		w += wi;
		w2 += wi * wi;
		wk += o[i].correct ? wi : 0;
		/* only between distinct confidences */
		if (i + 1 < n && o[i + 1].confidence == o[i].confidence)
			continue;
		if (i + 1 >= min_n && csa_wilson_lower_p(wk / w, w * w / w2, z) >= target)
			best = o[i].confidence;
	}
	return best;
}

double csa_psi(const double *e, const double *a, size_t bins)
{
	double se = 0, sa = 0, psi = 0;
	for (size_t i = 0; i < bins; i++) {
		se += e[i];
		sa += a[i];
	}
	if (se <= 0 || sa <= 0)
		return 0;
	for (size_t i = 0; i < bins; i++) {
		double pe = (e[i] + 0.5) / (se + 0.5 * (double)bins);
		double pa = (a[i] + 0.5) / (sa + 0.5 * (double)bins);
		psi += (pa - pe) * log(pa / pe);
	}
	return psi;
}

double csa_review_probability(size_t reviewed, double floor, double half_life, double confidence,
                              double mean_confidence, double uncertain_share)
{
	double base = floor + (1 - floor) * pow(0.5, (double)reviewed / fmax(half_life, 1));
	double mean_unc = fmax(1e-3, 1 - mean_confidence);
	double weight = (1 - confidence) / mean_unc;
	double p = base * ((1 - uncertain_share) + uncertain_share * weight);
	return fmin(1, fmax(0, p));
}
