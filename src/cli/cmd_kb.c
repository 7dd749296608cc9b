/* csa kb gaps: the knowledge base's gaps (flow/gaps.h). */
#include "cli/cli.h"
#include "agents/kb.h"
#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/gaps.h"
#include "store/ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "csa kb gaps [--days N] [--weak SCORE] [--limit N] [--examples N] [--json] | "
    "accept FILE|- [--by WHO]";

static void print_text(const json_t *r)
{
	printf("%lld of %lld tickets since %s match the knowledge base weakly (best score under "
	       "%g)\n",
	       csa_json_int(r, "weak", 0), csa_json_int(r, "tickets", 0), csa_json_str(r, "since"),
	       csa_json_num(r, "weak_score", 0));
	size_t i, k;
	json_t *g, *v;
	json_array_foreach(json_object_get(r, "groups"), i, g)
	{
		printf("\n%zu. %s: %lld tickets, %.1f h handling in all (mean %.0f min), nearest "
		       "article %s\n   words:",
		       i + 1, csa_json_str(g, "category"), csa_json_int(g, "volume", 0),
		       csa_json_num(g, "cost_hours", 0),
		       csa_json_num(g, "mean_handling_minutes", 0),
		       csa_json_str(g, "nearest_article") ? csa_json_str(g, "nearest_article")
		                                          : "none");
		json_array_foreach(json_object_get(g, "words"), k, v)
		    printf(" %s", json_string_value(v));
		printf("\n   examples:");
		json_array_foreach(json_object_get(g, "examples"), k, v)
		    printf(" %s", json_string_value(v));
		printf("\n   draft:\n");
		const char *body = csa_json_str(json_object_get(g, "draft"), "body");
		for (const char *p = body ? body : ""; *p;) {
			const char *nl = strchr(p, '\n');
			size_t n = nl ? (size_t)(nl - p) : strlen(p);
			printf("     %.*s\n", (int)n, p);
			p += n + (nl ? 1 : 0);
		}
	}
}

static int gaps(int argc, char **argv)
{
	struct csa_gaps_opts o;
	csa_gaps_opts_default(&o);
	unsigned long days = 30, limit = o.max_groups, examples = o.examples;
	if (cli_opt_uint(argc, argv, "--days", 1, 36500, &days) ||
	    cli_opt_real(argc, argv, "--weak", 0, 1000, &o.weak_score) ||
	    cli_opt_uint(argc, argv, "--limit", 1, 1000, &limit) ||
	    cli_opt_uint(argc, argv, "--examples", 0, 100, &examples))
		return 1;
	o.since_ms = csa_now_ms() - (int64_t)days * 86400000;
	o.max_groups = limit;
	o.examples = examples;
	struct csa_ws *ws = cli_open_ws(argc, argv);
	if (!ws)
		return 1;
	struct csa_err err = {0};
	struct csa_kb *kb = NULL;
	json_t *r = NULL;
	int rc = csa_kb_open(ws->blobs, &kb, &err);
	if (!rc)
		rc = csa_gaps_find(ws, kb, &o, &r, &err);
	if (!rc) {
		if (cli_flag(argc, argv, "--json"))
			csa_json_print(r, 1);
		else
			print_text(r);
	}
	json_decref(r);
	csa_kb_free(kb);
	csa_ws_close(ws);
	return rc ? cli_fail(&err) : 0;
}

/* An article file, or standard input for "-", into *buf. */
static int read_article(const char *file, char **buf, size_t *len, struct csa_err *err)
{
	if (strcmp(file, "-") != 0)
		return csa_fs_read_all(file, CSA_KB_MAX_ARTICLE_BYTES + 1, buf, len, err);
	size_t cap = CSA_KB_MAX_ARTICLE_BYTES + 2;
	char *b = malloc(cap);
	if (!b)
		return csa_error(err, CSA_ENOMEM, "out of memory reading standard input");
	size_t n = fread(b, 1, cap - 1, stdin);
	b[n] = '\0';
	*buf = b;
	*len = n;
	return CSA_OK;
}

static int accept_article(int argc, char **argv, const char *file)
{
	struct csa_err err = {0};
	char *buf = NULL;
	size_t len = 0;
	int rc = read_article(file, &buf, &len, &err);
	if (rc)
		return cli_fail(&err);
	struct csa_ws *ws = cli_open_ws(argc, argv);
	if (!ws) {
		free(buf);
		return 1;
	}
	const char *by = cli_opt(argc, argv, "--by");
	json_t *out = NULL;
	rc = csa_gaps_accept(ws, buf, len, by ? by : "cli", &out, &err);
	if (!rc)
		csa_json_print(out, 1);
	json_decref(out);
	free(buf);
	csa_ws_close(ws);
	return rc ? cli_fail(&err) : 0;
}

int cmd_kb(int argc, char **argv)
{
	static const char *const valued[] = {"--days",     "--weak", "--limit",
	                                     "--examples", "--by",   NULL};
	const char *sub = cli_pos(argc, argv, 0, valued);
	if (sub && strcmp(sub, "gaps") == 0 && !cli_pos(argc, argv, 1, valued))
		return gaps(argc, argv);
	const char *file = cli_pos(argc, argv, 1, valued);
	if (sub && strcmp(sub, "accept") == 0 && file && !cli_pos(argc, argv, 2, valued))
		return accept_article(argc, argv, file);
	return cli_usage(usage);
}
