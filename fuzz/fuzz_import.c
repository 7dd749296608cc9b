/*
 * One line of a history file (`csa import`, docs/DATA.md): whatever
 * csa_import_ticket accepts must give documents the store's schema check
 * accepts, and a refusal must name the line.
 */
#include <string.h>

#include "base/json.h"
#include "flow/import.h"
#include "fuzz_docs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* csa_import_ticket reads the configuration only */
	static struct csa_config cfg;
	static int ready;
	if (!ready) {
		FUZZ_CHECK(csa_config_init_default(&cfg) == 0);
		ready = 1;
	}
	json_t *h = NULL;
	struct csa_err err = {0};
	if (csa_json_parse((const char *)data, size, "fuzz", &h, &err))
		return 0;
	struct csa_ticket tk;
	int rc = csa_import_ticket(&cfg, h, 7, &tk, &err);
	json_decref(h);
	if (rc) {
		FUZZ_CHECK(strstr(err.msg, "line 7") != NULL);
		return 0;
	}
	fuzz_check_docs(&cfg, &tk);
	csa_ticket_release(&tk);
	return 0;
}
