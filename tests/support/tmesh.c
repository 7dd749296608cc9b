/* Versioned tickets for durability tests. */
#include "tmesh.h"
#include "base/json.h"
#include "base/ts.h"
#include "store/ticket.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tm_create(struct csa_ws *ws, const char *const *ids, size_t n)
{
	struct csa_ticket *tks = calloc(n, sizeof(*tks));
	struct csa_ticket **p = calloc(n, sizeof(*p));
	struct csa_err err = {0};
	int rc = 0;
	const struct csa_config *cfg = csa_ws_config(ws);
	for (size_t i = 0; i < n && !rc; i++) {
		json_t *ctx = json_pack("{s:s}", "ticket_id", ids[i]);
		rc = csa_ticket_build(cfg, ctx, csa_now_ms(), &tks[i], &err);
		json_decref(ctx);
		tm_set(&tks[i], 0);
		p[i] = &tks[i];
	}
	csa_config_unref(cfg);
	if (!rc)
		rc = csa_store_commit_many(ws->store, p, n, CSA_DOC_ALL, &err);
	if (rc)
		fprintf(stderr, "tm_create: %s\n", err.msg);
	for (size_t i = 0; i < n; i++)
		csa_ticket_release(&tks[i]);
	free(tks);
	free(p);
	return rc;
}

void tm_set(struct csa_ticket *tk, long v)
{
	char s[32];
	snprintf(s, sizeof(s), "v%ld", v);
	json_object_set_new(json_object_get(tk->e, "participants"), "cs_agents",
	                    json_pack("[s]", s));
	json_object_set_new(json_object_get(tk->i, "participants"), "assigned_resolver",
	                    json_string(s));
	json_object_set_new(tk->t, "assigned_member", json_string(s));
}

long tm_version(const struct csa_ticket *tk)
{
	const char *e = json_string_value(json_array_get(
	    json_object_get(json_object_get(tk->e, "participants"), "cs_agents"), 0));
	const char *i = csa_json_str(json_object_get(tk->i, "participants"), "assigned_resolver");
	const char *t = csa_json_str(tk->t, "assigned_member");
	if (!e || !i || !t || strcmp(e, i) != 0 || strcmp(e, t) != 0)
		return -1;
	return strtol(e + 1, NULL, 10);
}

long tm_load_version(struct csa_ws *ws, const char *id)
{
	struct csa_ticket tk;
	struct csa_err err = {0};
	if (csa_store_load(ws->store, id, &tk, &err)) {
		fprintf(stderr, "tm_load_version(%s): %s\n", id, err.msg);
		return -2;
	}
	long v = tm_version(&tk);
	csa_ticket_release(&tk);
	return v;
}
