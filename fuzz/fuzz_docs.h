/* For the fuzz targets that build tickets: the property that what was
 * accepted is a ticket the store would commit. */
#ifndef CSA_FUZZ_DOCS_H
#define CSA_FUZZ_DOCS_H

#include "base/config.h"
#include "fuzz.h"
#include "store/schema.h"
#include "store/ticket.h"

static inline void fuzz_check_docs(const struct csa_config *cfg, const struct csa_ticket *tk)
{
	json_t *d[3] = {tk->e, tk->i, tk->t};
	for (int k = 0; k < 3; k++) {
		struct csa_err err = {0};
		int rc = csa_schema_check((enum csa_doc_kind)k, tk->id, d[k], &err);
		if (rc == CSA_OK)
			rc = csa_schema_check_limits((enum csa_doc_kind)k, tk->id, d[k],
			                             &cfg->limits, &err);
		if (rc)
			fprintf(stderr, "fuzz: %s\n", err.msg);
		FUZZ_CHECK(rc == CSA_OK);
	}
}

#endif
