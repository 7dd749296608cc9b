/* Softmax regression over hashed features: train, predict, learn, files. */
#include "model/linear.h"
#include "base/fsops.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define MAGIC          "CSAM"
#define FORMAT_VERSION 1u
#define MAX_LABELS     4096
#define MAX_LABEL_LEN  255

struct csa_linear {
	struct csa_feat_opts feat;
	size_t k;   /* labels */
	size_t dim; /* 2^bits */
	char **labels;
	float *w; /* dim x k, row per feature */
	float *b; /* k */
	double temperature;
	uint32_t revision;
	pthread_rwlock_t lock;
};

void csa_train_opts_default(struct csa_train_opts *o)
{
	o->feat.bits = 17;
	o->feat.char_min = 2;
	o->feat.char_max = 5;
	o->feat.word_bigrams = 1;
	o->feat.extra_weight = 0.5f;
	o->epochs = 12;
	o->lr = 0.4;
	o->l2 = 1e-7;
	o->seed = 42;
	o->label_smoothing = 0.0;
}

size_t csa_linear_n_labels(const struct csa_linear *m)
{
	return m->k;
}

const char *csa_linear_label(const struct csa_linear *m, size_t i)
{
	return i < m->k ? m->labels[i] : NULL;
}

int csa_linear_label_index(const struct csa_linear *m, const char *name)
{
	for (size_t i = 0; name && i < m->k; i++)
		if (strcmp(m->labels[i], name) == 0)
			return (int)i;
	return -1;
}

double csa_linear_temperature(const struct csa_linear *m)
{
	return m->temperature;
}

uint32_t csa_linear_revision(const struct csa_linear *m)
{
	return m->revision;
}

void csa_linear_set_temperature(struct csa_linear *m, double t)
{
	pthread_rwlock_wrlock(&m->lock);
	m->temperature = t;
	pthread_rwlock_unlock(&m->lock);
}

void csa_linear_free(struct csa_linear *m)
{
	if (!m)
		return;
	for (size_t i = 0; m->labels && i < m->k; i++)
		free(m->labels[i]);
	free(m->labels);
	free(m->w);
	free(m->b);
	pthread_rwlock_destroy(&m->lock);
	free(m);
}

static struct csa_linear *alloc_model(const struct csa_feat_opts *f, size_t k)
{
	struct csa_linear *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	pthread_rwlock_init(&m->lock, NULL);
	m->feat = *f;
	m->k = k;
	m->dim = (size_t)1 << f->bits;
	m->temperature = 1.0;
	m->labels = calloc(k, sizeof(char *));
	m->w = calloc(m->dim * k, sizeof(float));
	m->b = calloc(k, sizeof(float));
	if (!m->labels || !m->w || !m->b) {
		csa_linear_free(m);
		return NULL;
	}
	return m;
}

/* scores = b + W^T x */
static void raw_scores(const struct csa_linear *m, const struct csa_fvec *x, float *s)
{
	size_t k = m->k;
	memcpy(s, m->b, k * sizeof(float));
	for (size_t j = 0; j < x->n; j++) {
		const float *row = m->w + (size_t)x->idx[j] * k;
		float v = x->val[j];
		for (size_t c = 0; c < k; c++)
			s[c] += v * row[c];
	}
}

static void softmax(const float *s, size_t k, double t, double *p)
{
	double mx = s[0];
	for (size_t c = 1; c < k; c++)
		if (s[c] > mx)
			mx = s[c];
	double sum = 0;
	for (size_t c = 0; c < k; c++) {
		p[c] = exp((s[c] - mx) / t);
		sum += p[c];
	}
	for (size_t c = 0; c < k; c++)
		p[c] /= sum;
}

static uint64_t rng_next(uint64_t *s)
{
	/* xorshift64* */
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 2685821657736338717ULL;
}

/* Fit the temperature minimising NLL of held-out scores (golden section
 * over log T). scores: n x k, labels: n. */
static double fit_temperature(const float *scores, const int *labels, size_t n, size_t k)
{
	double *p = malloc(k * sizeof(double));
	if (!p)
		return 1.0;
	double lo = log(0.05), hi = log(20.0);
	const double g = (sqrt(5.0) - 1) / 2;
	double a = hi - g * (hi - lo), b = lo + g * (hi - lo), fa = 0, fb = 0;
	for (int pass = 0; pass < 2; pass++) {
		double t = exp(pass ? b : a), nll = 0;
		for (size_t i = 0; i < n; i++) {
			softmax(scores + i * k, k, t, p);
			nll -= log(fmax(p[labels[i]], 1e-300));
		}
		if (pass)
			fb = nll;
		else
			fa = nll;
	}
	for (int it = 0; it < 40; it++) {
		if (fa < fb) {
			hi = b;
			b = a;
			fb = fa;
			a = hi - g * (hi - lo);
			double t = exp(a), nll = 0;
			for (size_t i = 0; i < n; i++) {
				softmax(scores + i * k, k, t, p);
				nll -= log(fmax(p[labels[i]], 1e-300));
			}
			fa = nll;
		} else {
			lo = a;
			a = b;
			fa = fb;
			b = lo + g * (hi - lo);
			double t = exp(b), nll = 0;
			for (size_t i = 0; i < n; i++) {
				softmax(scores + i * k, k, t, p);
				nll -= log(fmax(p[labels[i]], 1e-300));
			}
			fb = nll;
		}
	}
	free(p);
	return exp((lo + hi) / 2);
}

int csa_linear_train(const char *const *labels, size_t n_labels, const struct csa_example *ex,
                     size_t n, const struct csa_example *calib, size_t n_calib,
                     const struct csa_train_opts *o, struct csa_linear **out, struct csa_err *err)
{
	if (n_labels < 2 || n_labels > MAX_LABELS)
		return csa_error(err, CSA_EINVAL, "training needs 2 to %d labels, got %zu",
		                 MAX_LABELS, n_labels);
	if (n == 0)
		return csa_error(err, CSA_EINVAL, "no training examples");
	if (o->feat.bits < 8 || o->feat.bits > 24)
		return csa_error(err, CSA_EINVAL, "feature bits must be 8..24");
	for (size_t i = 0; i < n; i++)
		if (ex[i].label < 0 || (size_t)ex[i].label >= n_labels)
			return csa_error(err, CSA_EINVAL, "example %zu has label %d outside 0..%zu",
			                 i, ex[i].label, n_labels - 1);
	struct csa_linear *m = alloc_model(&o->feat, n_labels);
	if (!m)
		return csa_error(err, CSA_ENOMEM, "out of memory for a model of %zu labels",
		                 n_labels);
	int rc = CSA_OK;
	for (size_t i = 0; i < n_labels; i++) {
		size_t len = strlen(labels[i]);
		if (len == 0 || len > MAX_LABEL_LEN) {
			csa_linear_free(m);
			return csa_error(err, CSA_EINVAL, "label %zu is empty or too long", i);
		}
		if (!(m->labels[i] = strdup(labels[i]))) {
			csa_linear_free(m);
			return csa_error(err, CSA_ENOMEM, "out of memory");
		}
	}
	size_t k = n_labels;
	struct csa_fvec *xs = calloc(n, sizeof(*xs));
	float *g_row = calloc(m->dim, sizeof(float)); /* AdaGrad per feature row */
	float *g_b = calloc(k, sizeof(float));
	size_t *order = malloc(n * sizeof(*order));
	float *s = malloc(k * sizeof(float));
	double *p = malloc(k * sizeof(double));
	float *grad = malloc(k * sizeof(float));
	if (!xs || !g_row || !g_b || !order || !s || !p || !grad) {
		rc = csa_error(err, CSA_ENOMEM, "out of memory for training");
		goto out;
	}
	for (size_t i = 0; i < n && rc == CSA_OK; i++) {
		const char *t = ex[i].text ? ex[i].text : "";
		rc = csa_text_features(&o->feat, t, strlen(t), ex[i].extra, ex[i].n_extra, &xs[i]);
		order[i] = i;
	}
	if (rc) {
		rc = csa_error(err, rc, "out of memory extracting features");
		goto out;
	}
	uint64_t rng = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)o->seed * 0x100000001B3ULL);
	if (!rng)
		rng = 1;
	const float eps = 1e-6f;
	double smooth = o->label_smoothing;
	for (unsigned ep = 0; ep < o->epochs; ep++) {
		for (size_t i = n; i > 1; i--) {
			size_t j = (size_t)(rng_next(&rng) % i);
			size_t tmp = order[i - 1];
			order[i - 1] = order[j];
			order[j] = tmp;
		}
		for (size_t r = 0; r < n; r++) {
			const struct csa_fvec *x = &xs[order[r]];
			int y = ex[order[r]].label;
			raw_scores(m, x, s);
			softmax(s, k, 1.0, p);
			double gsq = 0;
			for (size_t c = 0; c < k; c++) {
				double target =
				    (c == (size_t)y ? 1.0 - smooth : 0) + smooth / (double)k;
				grad[c] = (float)(p[c] - target);
				gsq += (double)grad[c] * grad[c];
			}
			/* bias */
			for (size_t c = 0; c < k; c++) {
				g_b[c] += grad[c] * grad[c];
				m->b[c] -= (float)o->lr * grad[c] / sqrtf(g_b[c] + eps);
			}
			float l2 = (float)o->l2;
			for (size_t jx = 0; jx < x->n; jx++) {
				uint32_t f = x->idx[jx];
				float v = x->val[jx];
				float *row = m->w + (size_t)f * k;
				g_row[f] += (float)(gsq / (double)k) * v * v;
				float step = (float)o->lr / sqrtf(g_row[f] + eps);
				for (size_t c = 0; c < k; c++)
					row[c] -= step * (grad[c] * v + l2 * row[c]);
			}
		}
	}
	if (calib && n_calib) {
		float *cs = malloc(n_calib * k * sizeof(float));
		int *cl = malloc(n_calib * sizeof(int));
		struct csa_fvec x;
		csa_fvec_init(&x);
		if (!cs || !cl) {
			free(cs);
			free(cl);
			rc = csa_error(err, CSA_ENOMEM, "out of memory for calibration");
			goto out;
		}
		for (size_t i = 0; i < n_calib && rc == CSA_OK; i++) {
			const char *t = calib[i].text ? calib[i].text : "";
			rc = csa_text_features(&o->feat, t, strlen(t), calib[i].extra,
			                       calib[i].n_extra, &x);
			if (rc == CSA_OK)
				raw_scores(m, &x, cs + i * k);
			cl[i] = calib[i].label;
		}
		csa_fvec_release(&x);
		if (rc == CSA_OK)
			m->temperature = fit_temperature(cs, cl, n_calib, k);
		free(cs);
		free(cl);
		if (rc) {
			rc = csa_error(err, rc, "out of memory for calibration");
			goto out;
		}
	}
out:
	for (size_t i = 0; xs && i < n; i++)
		csa_fvec_release(&xs[i]);
	free(xs);
	free(g_row);
	free(g_b);
	free(order);
	free(s);
	free(p);
	free(grad);
	if (rc) {
		csa_linear_free(m);
		return rc;
	}
	*out = m;
	return CSA_OK;
}

/* Logits of a text into s[k] and the temperature in force, under the read
 * lock. */
static int scores_locked(const struct csa_linear *m, const char *text, size_t len,
                         const char *const *extra, size_t n_extra, float *s, double *t)
{
	struct csa_fvec x;
	csa_fvec_init(&x);
	int rc = csa_text_features(&m->feat, text ? text : "", text ? len : 0, extra, n_extra, &x);
	if (rc == CSA_OK) {
		pthread_rwlock_rdlock((pthread_rwlock_t *)&m->lock);
		raw_scores(m, &x, s);
		*t = m->temperature;
		pthread_rwlock_unlock((pthread_rwlock_t *)&m->lock);
	}
	csa_fvec_release(&x);
	return rc;
}

int csa_linear_scores(const struct csa_linear *m, const char *text, size_t len,
                      const char *const *extra, size_t n_extra, double *scores)
{
	float stack[256];
	float *s = m->k <= 256 ? stack : malloc(m->k * sizeof(float));
	double t;
	if (!s)
		return CSA_ENOMEM;
	int rc = scores_locked(m, text, len, extra, n_extra, s, &t);
	for (size_t c = 0; rc == CSA_OK && c < m->k; c++)
		scores[c] = s[c];
	if (s != stack)
		free(s);
	return rc;
}

int csa_linear_predict(const struct csa_linear *m, const char *text, size_t len,
                       const char *const *extra, size_t n_extra, double *probs)
{
	float stack[256];
	float *s = m->k <= 256 ? stack : malloc(m->k * sizeof(float));
	double t;
	if (!s)
		return CSA_ENOMEM;
	int rc = scores_locked(m, text, len, extra, n_extra, s, &t);
	if (rc == CSA_OK)
		softmax(s, m->k, t, probs);
	if (s != stack)
		free(s);
	return rc;
}

int csa_linear_learn(struct csa_linear *m, const char *text, size_t len, const char *const *extra,
                     size_t n_extra, int label, struct csa_err *err)
{
	if (label < 0 || (size_t)label >= m->k)
		return csa_error(err, CSA_EINVAL, "label %d outside 0..%zu", label, m->k - 1);
	struct csa_fvec x;
	csa_fvec_init(&x);
	int rc = csa_text_features(&m->feat, text ? text : "", text ? len : 0, extra, n_extra, &x);
	float *s = malloc(m->k * sizeof(float));
	double *p = malloc(m->k * sizeof(double));
	if (rc || !s || !p) {
		csa_fvec_release(&x);
		free(s);
		free(p);
		return csa_error(err, CSA_ENOMEM, "out of memory learning from feedback");
	}
	pthread_rwlock_wrlock(&m->lock);
	/* Plain SGD steps on this example until the label leads with a
	 * calibrated probability above 0.6, at most 10: enough to correct the
	 * decision, few enough not to forget the rest. */
	const float lr = 1.0f;
	for (int step = 0; step < 10; step++) {
		raw_scores(m, &x, s);
		softmax(s, m->k, m->temperature, p);
		size_t best = 0;
		for (size_t c = 1; c < m->k; c++)
			if (p[c] > p[best])
				best = c;
		if (best == (size_t)label && p[label] > 0.6)
			break;
		softmax(s, m->k, 1.0, p);
		for (size_t c = 0; c < m->k; c++) {
			float g = (float)(p[c] - (c == (size_t)label));
			m->b[c] -= lr * 0.1f * g;
			for (size_t j = 0; j < x.n; j++)
				m->w[(size_t)x.idx[j] * m->k + c] -= lr * g * x.val[j];
		}
	}
	m->revision++;
	pthread_rwlock_unlock(&m->lock);
	csa_fvec_release(&x);
	free(s);
	free(p);
	return CSA_OK;
}

/* ---- files ------------------------------------------------------------ */

struct wbuf {
	unsigned char *p;
	size_t len, cap;
};

static int wput(struct wbuf *b, const void *d, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		unsigned char *np = realloc(b->p, cap);
		if (!np)
			return -1;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
	return 0;
}

static int wu32(struct wbuf *b, uint32_t v)
{
	unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
	                      (unsigned char)(v >> 24)};
	return wput(b, x, 4);
}

size_t csa_linear_file_size(const struct csa_linear *m)
{
	size_t n = 4 + 4 * 9 + 8;
	for (size_t i = 0; i < m->k; i++)
		n += 1 + strlen(m->labels[i]);
	return n + (m->dim * m->k + m->k) * 4 + 4;
}

int csa_linear_save(const struct csa_linear *m, const char *path, struct csa_err *err)
{
	struct wbuf b = {0};
	int bad = 0;
	pthread_rwlock_rdlock((pthread_rwlock_t *)&m->lock);
	bad |= wput(&b, MAGIC, 4);
	bad |= wu32(&b, FORMAT_VERSION);
	bad |= wu32(&b, (uint32_t)m->k);
	bad |= wu32(&b, m->feat.bits);
	bad |= wu32(&b, m->feat.char_min);
	bad |= wu32(&b, m->feat.char_max);
	bad |= wu32(&b, (uint32_t)m->feat.word_bigrams);
	uint32_t ew;
	memcpy(&ew, &m->feat.extra_weight, 4);
	bad |= wu32(&b, ew);
	bad |= wu32(&b, m->revision);
	bad |= wu32(&b, 0); /* reserved */
	bad |= wput(&b, &m->temperature, 8);
	for (size_t i = 0; i < m->k; i++) {
		unsigned char l = (unsigned char)strlen(m->labels[i]);
		bad |= wput(&b, &l, 1);
		bad |= wput(&b, m->labels[i], l);
	}
	bad |= wput(&b, m->w, m->dim * m->k * sizeof(float));
	bad |= wput(&b, m->b, m->k * sizeof(float));
	pthread_rwlock_unlock((pthread_rwlock_t *)&m->lock);
	if (!bad)
		bad |= wu32(&b, (uint32_t)crc32(crc32(0L, Z_NULL, 0), b.p, (uInt)b.len));
	if (bad) {
		free(b.p);
		return csa_error(err, CSA_ENOMEM, "out of memory saving model '%s'", path);
	}
	int rc = csa_fs_write_atomic(path, b.p, b.len, err);
	free(b.p);
	return rc;
}

static uint32_t ru32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int csa_linear_load(const char *path, struct csa_linear **out, struct csa_err *err)
{
	char *buf;
	size_t len;
	int rc = csa_fs_read_all(path, (size_t)1 << 31, &buf, &len, err);
	if (rc)
		return rc;
	const unsigned char *p = (const unsigned char *)buf;
	struct csa_linear *m = NULL;
	if (len < 52 || memcmp(p, MAGIC, 4) != 0) {
		rc = csa_error(err, CSA_ECORRUPT, "'%s' is not a csa model file", path);
		goto out;
	}
	if (ru32(p + 4) != FORMAT_VERSION) {
		rc =
		    csa_error(err, CSA_ECORRUPT, "'%s': model format version %u, this csa reads %u",
		              path, ru32(p + 4), FORMAT_VERSION);
		goto out;
	}
	if ((uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)(len - 4)) != ru32(p + len - 4)) {
		rc = csa_error(err, CSA_ECORRUPT, "'%s': checksum mismatch (truncated or damaged)",
		               path);
		goto out;
	}
	struct csa_feat_opts f = {0};
	uint32_t k = ru32(p + 8);
	f.bits = ru32(p + 12);
	f.char_min = ru32(p + 16);
	f.char_max = ru32(p + 20);
	f.word_bigrams = (int)ru32(p + 24);
	uint32_t ew = ru32(p + 28);
	memcpy(&f.extra_weight, &ew, 4);
	if (k < 2 || k > MAX_LABELS || f.bits < 8 || f.bits > 24 || f.char_max > 16) {
		rc = csa_error(err, CSA_ECORRUPT, "'%s': implausible model header", path);
		goto out;
	}
	if (!(m = alloc_model(&f, k))) {
		rc = csa_error(err, CSA_ENOMEM, "out of memory loading '%s'", path);
		goto out;
	}
	m->revision = ru32(p + 32);
	memcpy(&m->temperature, p + 40, 8);
	size_t off = 48;
	for (uint32_t i = 0; i < k; i++) {
		if (off + 1 > len - 4 || off + 1 + p[off] > len - 4 || p[off] == 0) {
			rc = csa_error(err, CSA_ECORRUPT, "'%s': truncated label table", path);
			goto out;
		}
		m->labels[i] = strndup((const char *)p + off + 1, p[off]);
		off += 1 + p[off];
	}
	size_t need = (m->dim * k + k) * sizeof(float);
	if (off + need + 4 != len || !(m->temperature > 0 && m->temperature < 1e6)) {
		rc = csa_error(err, CSA_ECORRUPT, "'%s': size %zu does not match its header", path,
		               len);
		goto out;
	}
	memcpy(m->w, p + off, m->dim * k * sizeof(float));
	memcpy(m->b, p + off + m->dim * k * sizeof(float), k * sizeof(float));
out:
	free(buf);
	if (rc) {
		csa_linear_free(m);
		return rc;
	}
	*out = m;
	return CSA_OK;
}
