/* Customer text through everything that reads it before the model:
 * normalisation, features, sentiment and personal-data redaction. */
#include <math.h>
#include <string.h>

#include "agents/sentiment.h"
#include "fuzz.h"
#include "llm/redact.h"
#include "model/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	char *norm = malloc(size + 1);
	FUZZ_CHECK(norm != NULL);
	size_t nl = csa_text_normalize(text, size, norm);
	FUZZ_CHECK(nl <= size && strlen(norm) == nl);
	free(norm);

	struct csa_feat_opts o = {.bits = 12,
	                          .char_min = 2,
	                          .char_max = 5,
	                          .word_bigrams = 1,
	                          .extra_weight = 1,
	                          .pair_window = 3,
	                          .pair_prefix = 5};
	const char *extra[] = {"tier=PREMIUM", "platform=email"};
	struct csa_fvec v;
	csa_fvec_init(&v);
	FUZZ_CHECK(csa_text_features(&o, text, size, extra, 2, &v) == 0);
	for (size_t i = 0; i < v.n; i++)
		FUZZ_CHECK(v.idx[i] < (1u << o.bits) && isfinite(v.val[i]));
	csa_fvec_release(&v);

	struct csa_sentiment s;
	csa_sentiment_analyze(text, size, &s);
	FUZZ_CHECK(s.score >= -1 && s.score <= 1 && s.confidence >= 0 && s.confidence <= 1);
	FUZZ_CHECK(s.n_keywords <= CSA_SENTIMENT_MAX_KEYWORDS);

	/* redaction takes a C string: the input up to its first NUL */
	char *z = malloc(size + 1);
	FUZZ_CHECK(z != NULL);
	memcpy(z, data, size);
	z[size] = 0;
	size_t count = 0;
	char *r = csa_redact(z, CSA_PII_ALL, &count);
	FUZZ_CHECK(r != NULL);
	/* nothing is left to redact in what redaction returns */
	size_t again = 0;
	char *r2 = csa_redact(r, CSA_PII_ALL, &again);
	FUZZ_CHECK(r2 != NULL && again == 0);
	free(r2);
	free(r);
	free(z);
	return 0;
}
