/* A training file (csa_dataset_load): CSV with RFC 4180 quoting, or JSONL.
 * The first byte picks the form; the rest is the file. Every row loaded
 * has a text and a non-empty UTF-8 label; a refusal names the file. */
#include <string.h>
#include <unistd.h>

#include "base/json.h"
#include "fuzz.h"
#include "model/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	static char path[2][64];
	static int made;
	if (!made) {
		snprintf(path[0], sizeof(path[0]), "/tmp/csa-fuzz-%d.csv", (int)getpid());
		snprintf(path[1], sizeof(path[1]), "/tmp/csa-fuzz-%d.jsonl", (int)getpid());
		made = 1;
	}
	const char *p = path[data[0] & 1];
	FILE *f = fopen(p, "wb");
	FUZZ_CHECK(f != NULL);
	FUZZ_CHECK(fwrite(data + 1, 1, size - 1, f) == size - 1 || size == 1);
	FUZZ_CHECK(fclose(f) == 0);
	struct csa_dataset ds = {0};
	struct csa_err err = {0};
	int rc = csa_dataset_load(p, "text", "label", &ds, &err);
	unlink(p);
	if (rc == CSA_OK) {
		for (size_t i = 0; i < ds.n; i++)
			FUZZ_CHECK(ds.text[i] && ds.label[i] && ds.label[i][0] &&
			           csa_json_utf8_ok(ds.label[i], strlen(ds.label[i])));
	} else {
		FUZZ_CHECK(err.msg[0] != 0 && strstr(err.msg, "csa-fuzz-") != NULL);
	}
	csa_dataset_release(&ds);
	return 0;
}
