/* Normalisation and hashed n-gram features. */
#include "model/text.h"
#include "base/err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void csa_fvec_init(struct csa_fvec *v)
{
	memset(v, 0, sizeof(*v));
}

void csa_fvec_release(struct csa_fvec *v)
{
	free(v->idx);
	free(v->val);
	memset(v, 0, sizeof(*v));
}

/* Latin-1 supplement letters U+00C0..U+00FF folded to ASCII lower case. */
static const char latin1_fold[64] = "aaaaaaaceeeeiiiidnooooo ouuuuyts"
                                    "aaaaaaaceeeeiiiidnooooo ouuuuyty";

size_t csa_text_normalize(const char *text, size_t len, char *out)
{
	size_t o = 0;
	int space = 1;
	if (len > CSA_TEXT_MAX_BYTES)
		len = CSA_TEXT_MAX_BYTES;
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)text[i];
		char m = 0;
		if (c < 0x80) {
			i++;
			if (c == '\'')
				continue; /* "don't" -> "dont" */
			if (c >= 'A' && c <= 'Z')
				m = (char)(c - 'A' + 'a');
			else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
				m = (char)c;
		} else {
			/* decode one UTF-8 sequence; skip invalid bytes */
			size_t n = c >= 0xF0 && c < 0xF5   ? 4
			           : c >= 0xE0             ? 3
			           : c >= 0xC2 && c < 0xE0 ? 2
			                                   : 0;
			if (n == 0 || i + n > len) {
				i++;
				continue;
			}
			uint32_t cp = c & (0x7F >> n);
			int ok = 1;
			for (size_t k = 1; k < n; k++) {
				unsigned char cc = (unsigned char)text[i + k];
				if ((cc & 0xC0) != 0x80) {
					ok = 0;
					break;
				}
				cp = cp << 6 | (cc & 0x3F);
			}
			if (!ok) {
				i++;
				continue;
			}
			i += n;
			if (cp >= 0xC0 && cp <= 0xFF && latin1_fold[cp - 0xC0] != ' ')
				m = latin1_fold[cp - 0xC0];
		}
		if (m) {
			out[o++] = m;
			space = 0;
		} else if (!space) {
			out[o++] = ' ';
			space = 1;
		}
	}
	if (o && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
	return o;
}

static uint32_t fnv(const char *s, size_t n, uint32_t seed)
{
	uint32_t h = 2166136261u ^ seed;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	/* final avalanche (murmur3 fmix) so low bits are well mixed */
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

static int push(struct csa_fvec *v, uint32_t idx, float val)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 256;
		uint32_t *ni = realloc(v->idx, cap * sizeof(*ni));
		if (!ni)
			return CSA_ENOMEM;
		v->idx = ni;
		float *nv = realloc(v->val, cap * sizeof(*nv));
		if (!nv)
			return CSA_ENOMEM;
		v->val = nv;
		v->cap = cap;
	}
	v->idx[v->n] = idx;
	v->val[v->n] = val;
	v->n++;
	return CSA_OK;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

int csa_text_features(const struct csa_feat_opts *o, const char *text, size_t len,
                      const char *const *extra, size_t n_extra, struct csa_fvec *v)
{
	v->n = 0;
	if (len > CSA_TEXT_MAX_BYTES)
		len = CSA_TEXT_MAX_BYTES;
	char *norm = malloc(len + 1);
	char *gram = malloc(len + 4);
	if (!norm || !gram) {
		free(norm);
		free(gram);
		return CSA_ENOMEM;
	}
	size_t nl = csa_text_normalize(text, len, norm);
	uint32_t mask = (1u << o->bits) - 1;
	int rc = CSA_OK;
	/* words */
	size_t prev_s = 0, prev_n = 0;
	for (size_t i = 0; i < nl && rc == CSA_OK;) {
		size_t s = i;
		while (i < nl && norm[i] != ' ')
			i++;
		size_t n = i - s;
		i++;
		if (n == 0)
			continue;
		rc = push(v, fnv(norm + s, n, 1) & mask, 1);
		if (rc == CSA_OK && o->word_bigrams && prev_n) {
			/* "prev cur" is contiguous in norm */
			rc = push(v, fnv(norm + prev_s, s + n - prev_s, 2) & mask, 1);
		}
		prev_s = s;
		prev_n = n;
		if (o->char_min == 0)
			continue;
		/* character n-grams of "<word>" */
		size_t gl = n + 2;
		gram[0] = '<';
		memcpy(gram + 1, norm + s, n);
		gram[n + 1] = '>';
		for (unsigned k = o->char_min; k <= o->char_max && rc == CSA_OK; k++) {
			if (k > gl)
				break;
			for (size_t p = 0; p + k <= gl && rc == CSA_OK; p++)
				rc = push(v, fnv(gram + p, k, 16 + k) & mask, 1);
		}
	}
	free(norm);
	free(gram);
	if (rc)
		return rc;
	/* merge duplicates: tf, then 1 + log tf, then L2 normalise */
	size_t ntext = v->n;
	if (ntext) {
		/* sort indices keeping values aligned: values are all 1 here */
		qsort(v->idx, ntext, sizeof(uint32_t), cmp_u32);
		size_t w = 0;
		for (size_t r = 0; r < ntext;) {
			size_t e = r;
			while (e < ntext && v->idx[e] == v->idx[r])
				e++;
			v->idx[w] = v->idx[r];
			v->val[w] = 1.0f + logf((float)(e - r));
			w++;
			r = e;
		}
		double ss = 0;
		for (size_t k = 0; k < w; k++)
			ss += (double)v->val[k] * v->val[k];
		float inv = (float)(1.0 / sqrt(ss));
		for (size_t k = 0; k < w; k++)
			v->val[k] *= inv;
		v->n = w;
	}
	for (size_t k = 0; k < n_extra && rc == CSA_OK; k++)
		rc = push(v, fnv(extra[k], strlen(extra[k]), 99) & mask, o->extra_weight);
	return rc;
}
