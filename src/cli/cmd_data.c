/* csa demo-data | import: synthetic history and history import. */
#include "cli/cli.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/import.h"
#include "gen/gen.h"
#include "store/ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_demo_data(int argc, char **argv)
{
	const char *n_s = cli_opt(argc, argv, "--tickets"), *seed_s = cli_opt(argc, argv, "--seed"),
	           *out_s = cli_opt(argc, argv, "--out"), *start_s = cli_opt(argc, argv, "--start");
	char *end = NULL;
	long n = n_s ? strtol(n_s, &end, 10) : 1000;
	if (n_s && (*end || n < 1 || n > 10000000))
		return cli_failf("--tickets must be a number from 1 to 10000000, not '%s'", n_s);
	unsigned long long seed = seed_s ? strtoull(seed_s, &end, 10) : 1;
	if (seed_s && *end)
		return cli_failf("--seed must be a number, not '%s'", seed_s);
	int64_t start = 1767225600000LL; /* 2026-01-01T00:00:00Z */
	if (start_s && csa_ts_parse(start_s, &start))
		return cli_failf("--start must be an ISO 8601 timestamp, not '%s'", start_s);
	FILE *out = stdout;
	if (out_s && strcmp(out_s, "-") != 0 && !(out = fopen(out_s, "w")))
		return cli_failf("cannot create '%s'", out_s);
	/* --stream: tickets as they arrive (first message, no outcome), ready
	 * for POST /api/tickets or `csa ingest` */
	int stream = cli_flag(argc, argv, "--stream");
	/* --answers FILE: what a person would decide for each streamed ticket
	 * (its gold record), for `csa demo-team` */
	const char *answers_s = cli_opt(argc, argv, "--answers");
	FILE *answers = NULL;
	if (answers_s && (!stream || !(answers = fopen(answers_s, "w")))) {
		if (out != stdout)
			fclose(out);
		return stream ? cli_failf("cannot create '%s'", answers_s)
		              : cli_failf("--answers goes with --stream");
	}
	struct csa_gen *g = csa_gen_new(seed, start);
	for (long i = 0; i < n; i++) {
		json_t *t = csa_gen_next(g);
		if (stream) {
			char id[32];
			snprintf(id, sizeof(id), "N%llu-%06ld", seed, i + 1);
			json_t *doc = csa_gen_arrival(t, id);
			if (answers) {
				json_t *a = json_pack("{s:s, s:O}", "ticket_id", id, "gold",
				                      json_object_get(t, "gold"));
				char *line = json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER);
				fprintf(answers, "%s\n", line);
				free(line);
				json_decref(a);
			}
			json_decref(t);
			t = doc;
		}
		char *s = json_dumps(t, JSON_COMPACT | JSON_PRESERVE_ORDER);
		fputs(s, out);
		fputc('\n', out);
		free(s);
		json_decref(t);
	}
	csa_gen_free(g);
	int bad = ferror(out);
	if (out != stdout && fclose(out) != 0)
		bad = 1;
	if (answers && fclose(answers) != 0)
		return cli_failf("cannot write '%s'", answers_s);
	return bad ? cli_failf("cannot write '%s'", out_s ? out_s : "<stdout>") : 0;
}

int cmd_import(int argc, char **argv)
{
	static const char *const valued[] = {NULL};
	const char *file = cli_pos(argc, argv, 0, valued);
	if (!file)
		return cli_usage("csa import FILE|- [--no-train]");
	FILE *in = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
	if (!in)
		return cli_failf("cannot open '%s'", file);
	struct csa_ws *ws = cli_open_ws(argc, argv);
	if (!ws) {
		if (in != stdin)
			fclose(in);
		return 1;
	}
	struct csa_err err = {0};
	json_t *rep = NULL;
	int rc = csa_import_jsonl(ws, in, strcmp(file, "-") == 0 ? "<stdin>" : file,
	                          !cli_flag(argc, argv, "--no-train"), &rep, &err);
	if (in != stdin)
		fclose(in);
	csa_ws_close(ws);
	if (rc)
		return cli_fail(&err);
	csa_json_print(rep, 1);
	json_decref(rep);
	return 0;
}

int cmd_train(int argc, char **argv)
{
	struct csa_ws *ws = cli_open_ws(argc, argv);
	if (!ws)
		return 1;
	const char *seed_s = cli_opt(argc, argv, "--seed");
	struct csa_err err = {0};
	json_t *rep = NULL;
	int rc =
	    csa_import_train(ws, seed_s ? (unsigned)strtoul(seed_s, NULL, 10) : 42, &rep, &err);
	csa_ws_close(ws);
	if (rc)
		return cli_fail(&err);
	csa_json_print(rep, 1);
	json_decref(rep);
	return 0;
}
