/* csa eval-models: the foundation model evaluator on the team's history. */
#include "cli/cli.h"
#include "base/json.h"
#include "flow/evalm.h"
#include "store/ws.h"

#include <stdio.h>
#include <stdlib.h>

#define USAGE                                                                                      \
	"csa eval-models --data F --backends embedded,openai:MODEL,NAME,... [--limit N] "          \
	"[--shots K] [--target ACC] [--save-calibration] [--json]"

int cmd_eval_models(int argc, char **argv)
{
	const char *data = cli_opt(argc, argv, "--data");
	const char *backends = cli_opt(argc, argv, "--backends");
	if (!data || !backends)
		return cli_usage(USAGE);
	struct csa_evalm_opts o = {.backends = backends,
	                           .seed = 1,
	                           .save_calibration = cli_flag(argc, argv, "--save-calibration")};
	const char *v;
	char *end;
	if ((v = cli_opt(argc, argv, "--limit")) && ((o.limit = strtoul(v, &end, 10)) == 0 || *end))
		return cli_failf("--limit: expected a positive number of test tickets, got '%s'",
		                 v);
	if ((v = cli_opt(argc, argv, "--shots")) &&
	    ((o.shots = (int)strtol(v, &end, 10)) < 1 || o.shots > 16 || *end))
		return cli_failf("--shots: expected 1..16, got '%s'", v);
	if ((v = cli_opt(argc, argv, "--target")) &&
	    (!((o.target = strtod(v, &end)) > 0 && o.target <= 1) || *end))
		return cli_failf("--target: expected an accuracy in (0, 1], got '%s'", v);
	struct csa_ws *ws = cli_open_ws(argc, argv);
	if (!ws)
		return 1;
	FILE *in = fopen(data, "r");
	if (!in) {
		csa_ws_close(ws);
		return cli_failf("cannot open '%s'", data);
	}
	struct csa_err err = {0};
	json_t *rep = NULL;
	int rc = csa_eval_models(ws, in, data, &o, &rep, &err);
	fclose(in);
	csa_ws_close(ws);
	if (rc)
		return cli_fail(&err);
	if (cli_flag(argc, argv, "--json"))
		csa_json_print(rep, 1);
	else
		csa_eval_models_print(rep, stdout);
	json_decref(rep);
	return 0;
}
