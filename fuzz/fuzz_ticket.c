/*
 * What a client sends to create a ticket and add messages (the API's and
 * `csa ingest`'s JSON): the input is a JSON array, an initial_context
 * followed by messages for alternate sides. Whatever csa_ticket_build and
 * csa_ticket_add_message accept must give documents the store's schema
 * check accepts; whatever they refuse must say why.
 */
#include "base/json.h"
#include "fuzz_docs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct csa_config cfg;
	static int ready;
	if (!ready) {
		FUZZ_CHECK(csa_config_init_default(&cfg) == 0);
		ready = 1;
	}
	json_t *in = NULL;
	struct csa_err err = {0};
	if (csa_json_parse((const char *)data, size, "fuzz", &in, &err)) {
		FUZZ_CHECK(err.msg[0] != 0);
		return 0;
	}
	if (!json_is_array(in) || json_array_size(in) == 0) {
		json_decref(in);
		return 0;
	}
	struct csa_ticket tk;
	int rc = csa_ticket_build(&cfg, json_array_get(in, 0), 1767225600000LL, &tk, &err);
	if (rc) {
		FUZZ_CHECK(err.msg[0] != 0);
		json_decref(in);
		return 0;
	}
	fuzz_check_docs(&cfg, &tk);
	for (size_t i = 1; i < json_array_size(in); i++) {
		const char *mid = NULL;
		enum csa_side side = i % 2 ? CSA_SIDE_EXTERNAL : CSA_SIDE_INTERNAL;
		rc = csa_ticket_add_message(&cfg, &tk, side, json_array_get(in, i),
		                            1767225600000LL + (int64_t)i * 1000, &mid, &err);
		if (rc == CSA_OK)
			FUZZ_CHECK(mid != NULL);
		else
			FUZZ_CHECK(err.msg[0] != 0);
		fuzz_check_docs(&cfg, &tk);
	}
	csa_ticket_release(&tk);
	json_decref(in);
	return 0;
}
