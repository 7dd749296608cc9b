/*
 * Text features for the embedded model: UTF-8-safe normalisation (ASCII
 * and Latin-1 letters lower-cased, accents folded, digits kept, everything
 * else a separator, invalid bytes skipped), then hashed word unigrams and
 * bigrams, character n-grams of each word with boundary marks ("<card>"
 * gives "<ca", "car", ...), unordered pairs of nearby words, and
 * structured features ("tier=PREMIUM"), each family hashed with its own
 * seed into [0, 2^bits). Values are sublinear
 * term frequencies (1 + log tf), word n-grams weighted above character
 * n-grams (there are several times fewer of them, and they carry more),
 * L2-normalised over the text features; structured features get a fixed
 * weight.
 */
#ifndef CSA_MODEL_TEXT_H
#define CSA_MODEL_TEXT_H

#include <stddef.h>
#include <stdint.h>

struct csa_feat_opts {
	unsigned bits;     /* hash space 2^bits */
	unsigned char_min; /* character n-gram sizes, 0 to disable */
	unsigned char_max;
	int word_bigrams;     /* 1 to add word bigrams */
	float extra_weight;   /* value of each structured feature */
	float word_weight;    /* value of each word n-gram before normalising
	                         (char n-grams have 1); 0 reads as 1 */
	unsigned pair_window; /* pairs of words at most this far apart, 0: none */
	unsigned pair_prefix; /* words cut to this many bytes in pairs, 0: whole */
};

/* A sparse vector: unique indices (in first-occurrence order) with values. */
struct csa_fvec {
	uint32_t *idx;
	float *val;
	size_t n, cap;
};

void csa_fvec_init(struct csa_fvec *v);
void csa_fvec_release(struct csa_fvec *v);

/* Reads at most this many bytes of a text. */
#define CSA_TEXT_MAX_BYTES 8192

/* Normalise 'text' (len bytes) into out (size >= len + 1). Returns the
 * normalised length. */
size_t csa_text_normalize(const char *text, size_t len, char *out);

/* Features of a text and structured features into v (cleared first).
 * Returns 0 or CSA_ENOMEM. */
int csa_text_features(const struct csa_feat_opts *o, const char *text, size_t len,
                      const char *const *extra, size_t n_extra, struct csa_fvec *v);

/* What csa_text_features() appends to the text's features: the structured
 * features 'extra', each of weight o->extra_weight, appended to v. Its
 * text features with n_extra 0, then this, are csa_text_features()'s
 * vector (model/featmemo.h keeps the first between trainings). 0 or
 * CSA_ENOMEM. */
int csa_text_features_extra(const struct csa_feat_opts *o, const char *const *extra, size_t n_extra,
                            struct csa_fvec *v);

#endif
