/*
 * The knowledge base's gaps through the API (flow/gaps.h): the groups of
 * recent tickets it answers badly, each with a draft article (GET
 * /api/kb/gaps), and an admin accepting an article, edited or not, into
 * kb/ (POST /api/kb/articles), recorded in the audit ledger.
 */
#include "server/server_internal.h"
#include "agents/kb.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/gaps.h"
#include "store/ws.h"

#include <string.h>

/* ?days=N (1..365, 30) &limit=N (1..100, 10 groups) */
json_t *csa_h_kb_gaps(struct call *c)
{
	struct csa_gaps_opts o;
	csa_gaps_opts_default(&o);
	long days = 30, limit = (long)o.max_groups;
	json_t *bad = csa_query_long(c, "days", 30, 1, 365, &days);
	if (!bad)
		bad = csa_query_long(c, "limit", (long)o.max_groups, 1, 100, &limit);
	if (bad)
		return bad;
	o.since_ms = csa_now_ms() - (int64_t)days * 86400000;
	o.max_groups = (size_t)limit;
	struct csa_err err = {0};
	struct csa_kb *kb = NULL;
	json_t *out = NULL;
	/* the knowledge base as kb/ holds it now, articles accepted a moment
	 * ago included */
	int rc = csa_kb_open(c->s->ws->blobs, &kb, &err);
	if (!rc)
		rc = csa_gaps_find(c->s->ws, kb, &o, &out, &err);
	csa_kb_free(kb);
	return rc ? csa_fail_err(c, &err) : out;
}

/* {"text": "<the article in the kb/ format>"} */
json_t *csa_h_kb_accept(struct call *c)
{
	const char *text = csa_json_str(c->body, "text");
	if (!text || json_object_size(c->body) != 1)
		return csa_fail(c, 400, "bad_request",
		                "body must be {\"text\": \"<the article: id, title, categories, "
		                "strategy lines, ---, the body>\"}");
	json_t *out = NULL;
	struct csa_err err = {0};
	if (csa_gaps_accept(c->s->ws, text, strlen(text), c->who, &out, &err))
		return csa_fail_err(c, &err);
	return out;
}
