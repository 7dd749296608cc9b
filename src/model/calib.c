/* Calibration metrics. */
#include "model/calib.h"

#include <math.h>
#include <stdlib.h>

double csa_calib_accuracy(const struct csa_pred *p, size_t n)
{
	size_t ok = 0;
	for (size_t i = 0; i < n; i++)
		ok += p[i].pred == p[i].label;
	return n ? (double)ok / (double)n : 0;
}

/* True positives, false positives and false negatives per label; NULL
 * when out of memory. Predictions outside 0..k-1 are left out. */
struct counts {
	size_t *tp, *fp, *fn;
};

static int count_labels(const struct csa_pred *p, size_t n, size_t k, struct counts *c)
{
	c->tp = calloc(k, sizeof(size_t));
	c->fp = calloc(k, sizeof(size_t));
	c->fn = calloc(k, sizeof(size_t));
	if (!c->tp || !c->fp || !c->fn)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (p[i].pred < 0 || (size_t)p[i].pred >= k || p[i].label < 0 ||
		    (size_t)p[i].label >= k)
			continue;
		if (p[i].pred == p[i].label)
			c->tp[p[i].label]++;
		else {
			c->fp[p[i].pred]++;
			c->fn[p[i].label]++;
		}
	}
	return 0;
}

static void counts_free(struct counts *c)
{
	free(c->tp);
	free(c->fp);
	free(c->fn);
}

static double f1_of(const struct counts *c, size_t l)
{
	size_t d = 2 * c->tp[l] + c->fp[l] + c->fn[l];
	return d ? 2.0 * (double)c->tp[l] / (double)d : 0;
}

double csa_calib_macro_f1(const struct csa_pred *p, size_t n, size_t k)
{
	struct counts c = {0};
	double sum = 0;
	size_t used = 0;
	if (count_labels(p, n, k, &c) == 0)
		for (size_t l = 0; l < k; l++)
			if (c.tp[l] + c.fp[l] + c.fn[l]) {
				used++;
				sum += f1_of(&c, l);
			}
	counts_free(&c);
	return used ? sum / (double)used : 0;
}

static int by_f1(const void *a, const void *b, void *counts)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	double fx = f1_of(counts, x), fy = f1_of(counts, y);
	if (fx != fy)
		return fx < fy ? -1 : 1;
	return x < y ? -1 : x > y;
}

json_t *csa_calib_per_label(const struct csa_pred *p, size_t n, size_t k, const char *const *names)
{
	struct counts c = {0};
	size_t *order = malloc((k ? k : 1) * sizeof(size_t));
	json_t *out = json_array();
	if (!order || count_labels(p, n, k, &c) != 0) {
		free(order);
		counts_free(&c);
		json_decref(out);
		return NULL;
	}
	size_t m = 0;
	for (size_t l = 0; l < k; l++)
		if (c.tp[l] + c.fp[l] + c.fn[l])
			order[m++] = l;
	qsort_r(order, m, sizeof(size_t), by_f1, &c);
	for (size_t i = 0; i < m; i++) {
		size_t l = order[i], pred = c.tp[l] + c.fp[l], support = c.tp[l] + c.fn[l];
		json_array_append_new(
		    out,
		    json_pack("{s:s, s:f, s:f, s:f, s:I, s:I}", "label", names[l], "precision",
		              pred ? (double)c.tp[l] / (double)pred : 0.0, "recall",
		              support ? (double)c.tp[l] / (double)support : 0.0, "f1", f1_of(&c, l),
		              "support", (json_int_t)support, "predicted", (json_int_t)pred));
	}
	free(order);
	counts_free(&c);
	return out;
}

static int bin_of(double c, int bins)
{
	int b = (int)(c * bins);
	return b < 0 ? 0 : b >= bins ? bins - 1 : b;
}

/* Per-bin sums of confidence and correctness over equal-width bins. */
static int bins_of(const struct csa_pred *p, size_t n, int bins, double *conf, double *acc,
                   size_t *cnt)
{
	if (bins > 64)
		bins = 64;
	for (int b = 0; b < bins; b++)
		conf[b] = acc[b] = 0, cnt[b] = 0;
	for (size_t i = 0; i < n; i++) {
		int b = bin_of(p[i].conf, bins);
		conf[b] += p[i].conf;
		acc[b] += p[i].pred == p[i].label;
		cnt[b]++;
	}
	return bins;
}

double csa_calib_ece(const struct csa_pred *p, size_t n, int bins)
{
	double conf[64], acc[64];
	size_t cnt[64];
	bins = bins_of(p, n, bins, conf, acc, cnt);
	double ece = 0;
	for (int b = 0; b < bins; b++)
		if (cnt[b])
			ece += fabs(acc[b] - conf[b]) / (double)n;
	return ece;
}

json_t *csa_calib_reliability(const struct csa_pred *p, size_t n, int bins)
{
	double conf[64], acc[64];
	size_t cnt[64];
	bins = bins_of(p, n, bins, conf, acc, cnt);
	json_t *t = json_array();
	for (int b = 0; b < bins; b++)
		if (cnt[b])
			json_array_append_new(
			    t, json_pack("{s:f, s:f, s:I, s:f, s:f}", "bin_lo", (double)b / bins,
			                 "bin_hi", (double)(b + 1) / bins, "n", (json_int_t)cnt[b],
			                 "confidence", conf[b] / (double)cnt[b], "accuracy",
			                 acc[b] / (double)cnt[b]));
	return t;
}

static int by_conf_desc(const void *a, const void *b)
{
	double x = ((const struct csa_pred *)a)->conf, y = ((const struct csa_pred *)b)->conf;
	return x > y ? -1 : x < y;
}

double csa_calib_acc_at_coverage(struct csa_pred *p, size_t n, double coverage)
{
	if (n)
		qsort(p, n, sizeof(*p), by_conf_desc);
	size_t m = (size_t)ceil(coverage * (double)n);
	if (m == 0)
		return 1.0;
	return csa_calib_accuracy(p, m > n ? n : m);
}

double csa_calib_coverage_at_acc(struct csa_pred *p, size_t n, double target)
{
	if (n)
		qsort(p, n, sizeof(*p), by_conf_desc);
	size_t ok = 0, best = 0;
	for (size_t i = 0; i < n; i++) {
		ok += p[i].pred == p[i].label;
		/* only cut between different confidences: ties go together */
		if ((i + 1 == n || p[i + 1].conf < p[i].conf) &&
		    (double)ok >= target * (double)(i + 1))
			best = i + 1;
	}
	return n ? (double)best / (double)n : 0;
}

json_t *csa_calib_report(struct csa_pred *p, size_t n, size_t k)
{
	json_t *aac = json_object(), *caa = json_object();
	static const double covs[] = {0.6, 0.8, 0.95}, accs[] = {0.99, 0.98, 0.95};
	static const char *const cov_keys[] = {"0.6", "0.8", "0.95"}, *const acc_keys[] = {
	                                                                  "0.99", "0.98", "0.95"};
	for (int i = 0; i < 3; i++) {
		json_object_set_new(aac, cov_keys[i],
		                    json_real(csa_calib_acc_at_coverage(p, n, covs[i])));
		json_object_set_new(caa, acc_keys[i],
		                    json_real(csa_calib_coverage_at_acc(p, n, accs[i])));
	}
	return json_pack("{s:f, s:f, s:f, s:o, s:o, s:I, s:o}", "accuracy",
	                 csa_calib_accuracy(p, n), "macro_f1", csa_calib_macro_f1(p, n, k), "ece",
	                 csa_calib_ece(p, n, 15), "acc_at_coverage", aac, "coverage_at_acc", caa,
	                 "n", (json_int_t)n, "reliability", csa_calib_reliability(p, n, 15));
}
