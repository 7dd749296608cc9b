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

/* The murmur3 finaliser: every input bit affects every output bit, so the
 * low bits that pick a bucket are well mixed. */
static uint32_t fmix32(uint32_t h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

static uint32_t fnv(const char *s, size_t n, uint32_t seed)
{
	uint32_t h = 2166136261u ^ seed;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	/* final avalanche so low bits are well mixed */
	return fmix32(h);
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

/* Character n-grams of gram[0..gl), each with value 1. */
static int char_grams(const struct csa_feat_opts *o, const char *gram, size_t gl, uint32_t mask,
                      struct csa_fvec *v)
{
	int rc = CSA_OK;
	for (unsigned k = o->char_min; k <= o->char_max && k <= gl && rc == CSA_OK; k++)
		for (size_t p = 0; p + k <= gl && rc == CSA_OK; p++)
			rc = push(v, fnv(gram + p, k, 16 + k) & mask, 1);
	return rc;
}

/* A hash of an unordered pair of hashes (so "card arrive" and "arrive ...
 * card" meet), murmur-finalised like fnv(). */
static uint32_t pair_hash(uint32_t x, uint32_t y)
{
	uint32_t lo = x < y ? x : y, hi = x < y ? y : x;
	return fmix32(lo * 0x9E3779B1u ^ (hi + 0x7F4A7C15u + (lo << 6) + (lo >> 2)));
}

/*
 * Unordered pairs of words at most pair_window words apart, value 1: the
 * co-occurrences that tell intents apart when the same words come in
 * different orders and with other words between them ("card ... arrive"),
 * which bigrams miss. Words are cut to their first pair_prefix characters,
 * a crude stem, so that "arrive", "arrived" and "arrival" make one pair with
 * "card". Over the first 256 words only, which bounds the cost of long
 * texts.
 */
static int word_pairs(const struct csa_feat_opts *o, const char *norm, size_t nl,
                      struct csa_fvec *v)
{
	enum { MAXW = 256 };
	uint32_t hw[MAXW];
	size_t nw = 0;
	for (size_t i = 0; i < nl && nw < MAXW;) {
		size_t s = i;
		while (i < nl && norm[i] != ' ')
			i++;
		size_t n = i - s;
		if (o->pair_prefix && n > o->pair_prefix)
			n = o->pair_prefix;
		if (n)
			hw[nw++] = fnv(norm + s, n, 7);
		i++;
	}
	uint32_t mask = (1u << o->bits) - 1;
	int rc = CSA_OK;
	for (size_t a = 0; a < nw && rc == CSA_OK; a++)
		for (size_t b = a + 1; b < nw && b - a <= o->pair_window && rc == CSA_OK; b++)
			rc = push(v, pair_hash(hw[a], hw[b]) & mask, 1);
	return rc;
}

/* Word unigrams and bigrams (value word_weight), the character n-grams of
 * each word and word pairs, from normalised text (words separated by one
 * space). gram has room for the longest word plus 2. */
static int text_grams(const struct csa_feat_opts *o, const char *norm, size_t nl, char *gram,
                      struct csa_fvec *v)
{
	uint32_t mask = (1u << o->bits) - 1;
	/* 0 is "unset" (files of format 1, which had no such field) */
	float ww = o->word_weight > 0 ? o->word_weight : 1.0f;
	size_t prev_s = 0, prev_n = 0;
	int rc = CSA_OK;
	for (size_t i = 0; i < nl && rc == CSA_OK;) {
		size_t s = i;
		while (i < nl && norm[i] != ' ')
			i++;
		size_t n = i - s;
		i++;
		if (n == 0)
			continue;
		rc = push(v, fnv(norm + s, n, 1) & mask, ww);
		if (rc == CSA_OK && o->word_bigrams && prev_n) {
			/* "prev cur" is contiguous in norm */
			rc = push(v, fnv(norm + prev_s, s + n - prev_s, 2) & mask, ww);
		}
		prev_s = s;
		prev_n = n;
		if (rc || o->char_min == 0)
			continue;
		/* character n-grams of "<word>" */
		gram[0] = '<';
		memcpy(gram + 1, norm + s, n);
		gram[n + 1] = '>';
		rc = char_grams(o, gram, n + 2, mask, v);
	}
	if (rc == CSA_OK && o->pair_window)
		rc = word_pairs(o, norm, nl, v);
	return rc;
}

/*
 * Merge repeated indices (first occurrence order, its value kept) and turn
 * counts into sublinear tf: value * (1 + log tf). An open-addressing table
 * instead of a sort: linear in the number of n-grams, which matters at
 * prediction time.
 */
static int merge_repeats(struct csa_fvec *v)
{
	size_t n = v->n, size = 16;
	while (size < 2 * n)
		size *= 2;
	uint32_t stack[1024 + 512];
	uint32_t *slot = size + n <= 1024 + 512 ? stack : malloc((size + n) * sizeof(uint32_t));
	if (!slot)
		return CSA_ENOMEM;
	uint32_t *count = slot + size;
	memset(slot, 0, size * sizeof(uint32_t));
	size_t w = 0;
	for (size_t r = 0; r < n; r++) {
		uint32_t idx = v->idx[r];
		size_t h = (idx * 2654435761u) & (size - 1);
		/* slot holds output position + 1; 0 is empty */
		while (slot[h] && v->idx[slot[h] - 1] != idx)
			h = (h + 1) & (size - 1);
		if (slot[h]) {
			count[slot[h] - 1]++;
			continue;
		}
		slot[h] = (uint32_t)w + 1;
		v->idx[w] = idx;
		v->val[w] = v->val[r];
		count[w++] = 1;
	}
	for (size_t j = 0; j < w; j++)
		if (count[j] > 1)
			v->val[j] *= 1.0f + logf((float)count[j]);
	v->n = w;
	if (slot != stack)
		free(slot);
	return CSA_OK;
}

static void l2_normalize(struct csa_fvec *v)
{
	double ss = 0;
	for (size_t k = 0; k < v->n; k++)
		ss += (double)v->val[k] * v->val[k];
	if (ss <= 0)
		return;
	/* in double: values as small as a model file may set (word weight
	 * 1e-44) have an inverse norm beyond float's range */
	double inv = 1.0 / sqrt(ss);
	for (size_t k = 0; k < v->n; k++)
		v->val[k] = (float)(v->val[k] * inv);
}

int csa_text_features(const struct csa_feat_opts *o, const char *text, size_t len,
                      const char *const *extra, size_t n_extra, struct csa_fvec *v)
{
	v->n = 0;
	if (len > CSA_TEXT_MAX_BYTES)
		len = CSA_TEXT_MAX_BYTES;
	/* support texts are short: no allocation for them */
	char stack[2 * 1024];
	char *norm = len + 1 + len + 4 <= sizeof(stack) ? stack : malloc(2 * len + 5);
	if (!norm)
		return CSA_ENOMEM;
	char *gram = norm + len + 1;
	size_t nl = csa_text_normalize(text, len, norm);
	int rc = text_grams(o, norm, nl, gram, v);
	if (norm != stack)
		free(norm);
	if (rc == CSA_OK)
		rc = merge_repeats(v);
	if (rc)
		return rc;
	l2_normalize(v);
	return csa_text_features_extra(o, extra, n_extra, v);
}

int csa_text_features_extra(const struct csa_feat_opts *o, const char *const *extra, size_t n_extra,
                            struct csa_fvec *v)
{
	int rc = CSA_OK;
	uint32_t mask = (1u << o->bits) - 1;
	for (size_t k = 0; k < n_extra && rc == CSA_OK; k++)
		rc = push(v, fnv(extra[k], strlen(extra[k]), 99) & mask, o->extra_weight);
	return rc;
}
