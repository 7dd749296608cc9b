/* Raw e-mail from a mail channel (csa_email_parse): any bytes either parse
 * into valid JSON strings or are refused with a message. */
#include <string.h>

#include "fuzz.h"
#include "server/channels.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *out = NULL;
	struct csa_err err = {0};
	int rc = csa_email_parse((const char *)data, size, &out, &err);
	if (rc == CSA_OK) {
		FUZZ_CHECK(json_is_object(out));
		FUZZ_CHECK(json_is_string(json_object_get(out, "text")));
		const char *subject = json_string_value(json_object_get(out, "subject"));
		char id[64];
		if (subject)
			csa_subject_ticket(subject, id, sizeof(id));
		json_decref(out);
	} else {
		FUZZ_CHECK(err.msg[0] != 0);
	}
	return 0;
}
