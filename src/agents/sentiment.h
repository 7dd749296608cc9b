/*
 * Sentiment of one message (spec §3.2.1 sentiment_analysis): a score in
 * [-1, 1], a confidence in [0, 1] and the words that drove the score.
 * Lexicon-based with negation ("not happy"), intensifiers ("very",
 * "extremely"), and emphasis (exclamation marks, words in capitals). Works
 * on any bytes (invalid UTF-8 is skipped) and reads at most the first
 * CSA_SENTIMENT_MAX_BYTES of a message. Pure and thread-safe.
 */
#ifndef CSA_AGENTS_SENTIMENT_H
#define CSA_AGENTS_SENTIMENT_H

#include <stddef.h>

#define CSA_SENTIMENT_MAX_BYTES    16384
#define CSA_SENTIMENT_MAX_KEYWORDS 8

struct csa_sentiment {
	double score;
	double confidence;
	size_t n_keywords;
	char keywords[CSA_SENTIMENT_MAX_KEYWORDS][32];
};

void csa_sentiment_analyze(const char *text, size_t len, struct csa_sentiment *out);

#endif
