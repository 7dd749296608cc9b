/* Strategy execution parameters from the knowledge base. */
#include "agents/kbsel.h"
#include "agents/kb.h"
#include "base/json.h"

#include <string.h>

int csa_kbsel_parameters(struct csa_kb *kb, const struct csa_config *cfg, const char *strategy,
                         const char *category, const char *text, json_t **params,
                         struct csa_err *err)
{
	json_t *p = json_object();
	if (!strategy)
		strategy = "";
	json_t *article = json_null(), *alts = json_array();
	if (kb && csa_kb_count(kb)) {
		/* the best article for this strategy and category by the words
		 * of the ticket; failing that, the article of this strategy and
		 * category whatever the words; failing that, the best for the
		 * category under any strategy, as a suggestion */
		json_t *hits = NULL;
		int rc = csa_kb_search(kb, text, category, strategy, 3, &hits, err);
		if (rc == CSA_OK && json_array_size(hits) == 0) {
			json_decref(hits);
			rc = csa_kb_search(kb, "", category, strategy, 3, &hits, err);
		}
		if (rc == CSA_OK && json_array_size(hits) == 0) {
			json_decref(hits);
			rc = csa_kb_search(kb, text, category, NULL, 3, &hits, err);
		}
		if (rc) {
			json_decref(p);
			json_decref(alts);
			return rc;
		}
		if (json_array_size(hits)) {
			article = json_incref(json_array_get(hits, 0));
			for (size_t i = 1; i < json_array_size(hits); i++)
				json_array_append(alts, json_array_get(hits, i));
		}
		json_decref(hits);
	}
	json_object_set_new(p, "article", article);
	json_object_set_new(p, "other_articles", alts);
	if (strncmp(strategy, "ESCALATE_TO_", 12) == 0) {
		json_object_set_new(p, "handover_to",
		                    json_string(strcmp(strategy, "ESCALATE_TO_TECHNICAL") == 0
		                                    ? "technical_team"
		                                    : "cs_team"));
	} else if (strcmp(strategy, "REQUEST_MORE_INFO") == 0) {
		json_t *qs = csa_config_get(cfg, "selector.questions");
		json_t *q = json_object_get(qs, category ? category : "");
		if (!q)
			q = json_object_get(qs, "default");
		json_object_set_new(p, "questions", q ? json_deep_copy(q) : json_array());
	}
	*params = p;
	return CSA_OK;
}
