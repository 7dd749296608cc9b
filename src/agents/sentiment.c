/* Lexicon sentiment for support messages. */
#include "agents/sentiment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct lex {
	const char *word;
	double value;
};

/* Support-domain lexicon, sorted for bsearch. Values in [-3, 3]. */
static const struct lex lexicon[] = {
    {"abysmal", -3},
    {"amazing", 3},
    {"angry", -2.5},
    {"annoyed", -2},
    {"annoying", -2},
    {"appalling", -3},
    {"appreciate", 2},
    {"appreciated", 2},
    {"awesome", 3},
    {"awful", -3},
    {"bad", -2},
    {"best", 2.5},
    {"blocked", -1.5},
    {"broke", -1.5},
    {"broken", -2},
    {"bug", -1},
    {"cancel", -1},
    {"charged", -0.5},
    {"cheers", 1},
    {"complain", -2},
    {"complaint", -2},
    {"confused", -1},
    {"confusing", -1.5},
    {"crash", -2},
    {"crashed", -2},
    {"crashes", -2},
    {"delighted", 3},
    {"disappointed", -2.5},
    {"disappointing", -2.5},
    {"disaster", -3},
    {"down", -1},
    {"error", -1},
    {"excellent", 3},
    {"fail", -2},
    {"failed", -2},
    {"failing", -2},
    {"fails", -2},
    {"fantastic", 3},
    {"fast", 1},
    {"fine", 1},
    {"fixed", 1.5},
    {"frustrated", -2.5},
    {"frustrating", -2.5},
    {"furious", -3},
    {"glad", 2},
    {"good", 2},
    {"great", 2.5},
    {"happy", 2.5},
    {"helpful", 2},
    {"horrible", -3},
    {"impressed", 2.5},
    {"incorrect", -1.5},
    {"issue", -0.5},
    {"kind", 1.5},
    {"lost", -1.5},
    {"love", 3},
    {"nice", 2},
    {"outage", -2},
    {"perfect", 3},
    {"pleased", 2.5},
    {"poor", -2},
    {"problem", -1},
    {"quick", 1},
    {"ridiculous", -2.5},
    {"sad", -2},
    {"satisfied", 2},
    {"slow", -1.5},
    {"smooth", 1.5},
    {"solved", 2},
    {"sorry", -0.5},
    {"stuck", -1.5},
    {"superb", 3},
    {"terrible", -3},
    {"thank", 1.5},
    {"thanks", 1.5},
    {"unacceptable", -3},
    {"unhappy", -2.5},
    {"unusable", -2.5},
    {"upset", -2.5},
    {"useless", -2.5},
    {"waiting", -1},
    {"wonderful", 3},
    {"works", 1},
    {"worse", -2.5},
    {"worst", -3},
    {"wrong", -1.5},
};

static const char *const negators[] = {"no",      "not",     "never", "cannot", "cant", "dont",
                                       "doesnt",  "didnt",   "isnt",  "wasnt",  "wont", "without",
                                       "nothing", "neither", "nor",   "hardly"};
static const char *const intensifiers[] = {"very",    "really",     "extremely",  "so",
                                           "totally", "completely", "absolutely", "incredibly",
                                           "super",   "utterly",    "highly"};

static int cmp(const void *k, const void *e)
{
	return strcmp((const char *)k, ((const struct lex *)e)->word);
}

static int in_list(const char *w, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(w, list[i]) == 0)
			return 1;
	return 0;
}

void csa_sentiment_analyze(const char *text, size_t len, struct csa_sentiment *out)
{
	memset(out, 0, sizeof(*out));
	if (len > CSA_SENTIMENT_MAX_BYTES)
		len = CSA_SENTIMENT_MAX_BYTES;
	double sum = 0, weight = 0;
	int negate = 0, intensify = 0, hits = 0, words = 0, bangs = 0;
	char w[32];
	size_t i = 0;
	while (i < len) {
		unsigned char c = (unsigned char)text[i];
		if (c == '!')
			bangs++;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '\'')) {
			if (c == '.' || c == '?' || c == ';' || c == ',')
				negate = 0; /* negation scope ends at punctuation */
			i++;
			continue;
		}
		size_t n = 0, upper = 0, start = i;
		while (i < len) {
			c = (unsigned char)text[i];
			if (c >= 'A' && c <= 'Z') {
				upper++;
				c = (unsigned char)(c - 'A' + 'a');
			} else if (!((c >= 'a' && c <= 'z') || c == '\'')) {
				break;
			}
			if (c != '\'' && n + 1 < sizeof(w))
				w[n++] = (char)c;
			i++;
		}
		w[n] = '\0';
		words++;
		size_t wlen = i - start;
		if (in_list(w, negators, sizeof(negators) / sizeof(negators[0]))) {
			negate = 3; /* the next three words */
			continue;
		}
		if (in_list(w, intensifiers, sizeof(intensifiers) / sizeof(intensifiers[0]))) {
			intensify = 1;
			continue;
		}
		const struct lex *l = bsearch(w, lexicon, sizeof(lexicon) / sizeof(lexicon[0]),
		                              sizeof(lexicon[0]), cmp);
		if (l) {
			double v = l->value;
			if (intensify)
				v *= 1.5;
			if (wlen >= 3 && upper == wlen)
				v *= 1.3; /* SHOUTING */
			if (negate)
				v = -0.6 * v; /* "not good" is milder than "bad" */
			sum += v;
			weight += 1;
			hits++;
			if (out->n_keywords < CSA_SENTIMENT_MAX_KEYWORDS) {
				size_t k = out->n_keywords++;
				memcpy(out->keywords[k], w, n + 1);
			}
		}
		intensify = 0;
		if (negate)
			negate--;
	}
	if (hits == 0) {
		out->score = 0;
		out->confidence = words ? 0.3 : 0.0;
		return;
	}
	double raw = sum / sqrt(weight * weight + 4.0); /* saturating average */
	if (bangs)
		raw *= 1.0 + fmin(bangs, 3) * 0.1;
	out->score = fmax(-1.0, fmin(1.0, raw));
	/* more evidence, more agreement, more confidence */
	double agreement = fabs(sum) / (weight * 3.0);
	out->confidence = fmin(0.95, 0.4 + 0.1 * hits + 0.4 * fmin(1.0, agreement));
}
