/*
 * A model file (csa_linear_load). The input is the file without its last
 * four bytes, the checksum, which the harness appends, so the fuzzer
 * reaches the header and table checks behind it. A file that loads must
 * have UTF-8 labels, predict a probability distribution, learn without
 * breaking it, and save and reload to the same predictions.
 */
#include <math.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "base/json.h"
#include "fuzz.h"
#include "model/linear.h"

static void predict_ok(const struct csa_linear *m, const char *text, double *p)
{
	size_t k = csa_linear_n_labels(m);
	FUZZ_CHECK(csa_linear_predict(m, text, strlen(text), NULL, 0, p) == 0);
	double sum = 0;
	for (size_t i = 0; i < k; i++) {
		FUZZ_CHECK(p[i] >= 0 && p[i] <= 1);
		sum += p[i];
	}
	FUZZ_CHECK(fabs(sum - 1) < 1e-6);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64], again[64];
	if (!path[0]) {
		snprintf(path, sizeof(path), "/tmp/csa-fuzz-%d.model", (int)getpid());
		snprintf(again, sizeof(again), "/tmp/csa-fuzz-%d-2.model", (int)getpid());
	}
	if (size > (1u << 24))
		return 0;
	unsigned char *buf = malloc(size + 4);
	FUZZ_CHECK(buf != NULL);
	memcpy(buf, data, size);
	uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), data, (uInt)size);
	for (int i = 0; i < 4; i++)
		buf[size + (size_t)i] = (unsigned char)(c >> (8 * i));
	FILE *f = fopen(path, "wb");
	FUZZ_CHECK(f && fwrite(buf, 1, size + 4, f) == size + 4 && fclose(f) == 0);
	free(buf);
	struct csa_err err = {0};
	struct csa_linear *m = NULL;
	int rc = csa_linear_load(path, &m, &err);
	unlink(path);
	if (rc) {
		FUZZ_CHECK(strstr(err.msg, "csa-fuzz-") != NULL);
		return 0;
	}
	size_t k = csa_linear_n_labels(m);
	for (size_t i = 0; i < k; i++)
		FUZZ_CHECK(
		    csa_json_utf8_ok(csa_linear_label(m, i), strlen(csa_linear_label(m, i))));
	double *p = calloc(k, sizeof(double)), *p2 = calloc(k, sizeof(double));
	FUZZ_CHECK(p && p2);
	predict_ok(m, "my card payment was declined twice", p);
	FUZZ_CHECK(csa_linear_learn(m, "refund please", 13, NULL, 0, 0, &err) == 0);
	predict_ok(m, "my card payment was declined twice", p);
	FUZZ_CHECK(csa_linear_save(m, again, &err) == 0);
	struct csa_linear *m2 = NULL;
	if (csa_linear_load(again, &m2, &err))
		fprintf(stderr, "fuzz_model: %s\n", err.msg);
	FUZZ_CHECK(m2 != NULL);
	unlink(again);
	predict_ok(m2, "my card payment was declined twice", p2);
	FUZZ_CHECK(memcmp(p, p2, k * sizeof(double)) == 0);
	csa_linear_free(m2);
	csa_linear_free(m);
	free(p);
	free(p2);
	return 0;
}
