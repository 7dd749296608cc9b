/* Strategy execution parameters. */
#include "agents/kbsel.h"
#include "base/json.h"

#include <string.h>

int csa_kbsel_parameters(struct csa_kb *kb, const struct csa_config *cfg, const char *strategy,
			 const char *category, const char *text, json_t **params,
			 struct csa_err *err)
{
	(void)kb, (void)text, (void)err;
	json_t *p = json_object();
	if (!strategy)
		strategy = "";
	if (strncmp(strategy, "ESCALATE_TO_", 12) == 0) {
		json_object_set_new(p, "handover_to",
				    json_string(strcmp(strategy, "ESCALATE_TO_TECHNICAL") == 0
							? "technical_team"
							: "cs_team"));
	} else if (strcmp(strategy, "REQUEST_MORE_INFO") == 0) {
		json_t *q = json_object_get(csa_config_get(cfg, "selector.questions"),
					    category ? category : "");
		if (!q)
			q = json_object_get(csa_config_get(cfg, "selector.questions"), "default");
		json_object_set_new(p, "questions", q ? json_deep_copy(q) : json_array());
	}
	json_object_set_new(p, "article", json_null());
	json_object_set_new(p, "template", json_null());
	*params = p;
	return CSA_OK;
}
