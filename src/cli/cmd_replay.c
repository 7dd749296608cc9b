/* csa replay: what automation a history would reach. */
#include "cli/cli.h"
#include "automation/replay.h"
#include "base/json.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --sweep KEY=V1,V2,...: one replay per value, one table (or the JSON with
 * --json). */
static int sweep(const struct csa_replay_opts *o, const char *spec, int json)
{
	const char *eq = strchr(spec, '=');
	if (!eq || eq == spec || !eq[1])
		return cli_failf("--sweep takes KEY=V1,V2,... (a numeric setting of csa.json), "
		                 "not '%s'",
		                 spec);
	char key[256];
	snprintf(key, sizeof(key), "%.*s", (int)(eq - spec), spec);
	double values[32];
	size_t n = 0;
	for (const char *p = eq + 1; *p;) {
		char *end;
		double v = strtod(p, &end);
		if (end == p || (*end && *end != ',') || n == 32)
			return cli_failf("--sweep: '%s' is not a list of at most 32 numbers", eq + 1);
		values[n++] = v;
		p = *end ? end + 1 : end;
	}
	struct csa_err err = {0};
	json_t *rep = NULL;
	if (csa_replay_sweep(o, key, values, n, &rep, &err))
		return cli_fail(&err);
	if (json) {
		csa_json_print(rep, 1);
		json_decref(rep);
		return 0;
	}
	int kw = (int)strlen(key);
	printf("%-*s  %-36s %10s %9s %9s %9s %8s %8s\n", kw, key, "journey (phase: start ticket)",
	       "final auto", "final acc", "hindsight", "all auto", "critical", "human");
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(rep, "variants"), i, v)
	{
		char journey[256] = "";
		size_t k, len = 0;
		json_t *p;
		json_array_foreach(json_object_get(v, "journey"), k, p)
		{
			const char *ph = csa_json_str(p, "phase");
			int w = snprintf(journey + len, sizeof(journey) - len, "%sP%s %lld",
			                 k ? " " : "", ph ? ph + 6 : "?",
			                 csa_json_int(p, "start_ticket", 0));
			if (w > 0 && (size_t)w < sizeof(journey) - len)
				len += (size_t)w;
		}
		json_t *f = json_object_get(v, "final"), *all = json_object_get(v, "overall");
		printf("%-*g  %-36s %9.1f%% %8.2f%% %8.1f%% %8.1f%% %8lld %8lld\n", kw,
		       csa_json_num(v, "value", 0), journey,
		       100 * csa_json_num(f, "autonomous_rate", 0),
		       100 * csa_json_num(f, "autonomous_accuracy", 0),
		       100 * csa_json_num(json_object_get(f, "hindsight"), "coverage", 0),
		       100 * csa_json_num(all, "autonomous_rate", 0),
		       csa_json_int(v, "critical_errors", 0), csa_json_int(v, "human_decisions", 0));
	}
	json_decref(rep);
	return 0;
}

int cmd_replay(int argc, char **argv)
{
	struct csa_replay_opts o;
	csa_replay_opts_default(&o);
	o.data = cli_opt(argc, argv, "--data");
	if (!o.data)
		return cli_usage(
		    "csa replay --data F[,F2] [--text COL --label COL] [--human-accuracy P] "
		    "[--seed S] [--bootstrap N] [--retrain N] [--workdir DIR] [--config F] "
		    "[--sweep KEY=V1,V2,...] [--json] [--svg OUT]");
	o.text_col = cli_opt(argc, argv, "--text");
	o.label_col = cli_opt(argc, argv, "--label");
	if (!!o.text_col != !!o.label_col)
		return cli_failf("--text and --label go together (CSV, category only)");
	/* the first model needs 20 tickets of history */
	unsigned long seed = o.seed, bootstrap = o.bootstrap, retrain = o.retrain;
	if (cli_opt_real(argc, argv, "--human-accuracy", 0, 1, &o.human_accuracy) ||
	    cli_opt_uint(argc, argv, "--seed", 0, ULONG_MAX, &seed) ||
	    cli_opt_uint(argc, argv, "--bootstrap", 20, 10000000, &bootstrap) ||
	    cli_opt_uint(argc, argv, "--retrain", 0, 10000000, &retrain))
		return 1;
	if (!(o.human_accuracy > 0))
		return cli_failf("--human-accuracy must be in (0, 1]");
	o.seed = seed;
	o.bootstrap = (unsigned)bootstrap;
	o.retrain = (unsigned)retrain;
	o.workdir = cli_opt(argc, argv, "--workdir");
	o.config = cli_opt(argc, argv, "--config");
	o.svg = cli_opt(argc, argv, "--svg");
	o.quiet = cli_flag(argc, argv, "--quiet");
	const char *spec = cli_opt(argc, argv, "--sweep");
	if (spec) {
		if (o.workdir)
			return cli_failf("--sweep runs one scratch workspace per value: no --workdir");
		return sweep(&o, spec, cli_flag(argc, argv, "--json"));
	}
	struct csa_err err = {0};
	json_t *rep = NULL;
	if (csa_replay_run(&o, &rep, &err))
		return cli_fail(&err);
	if (cli_flag(argc, argv, "--json")) {
		csa_json_print(rep, 1);
	} else {
		size_t i;
		json_t *p;
		printf("%-8s %8s %8s %10s %10s %8s %8s\n", "phase", "start", "tickets", "auto rate",
		       "auto acc", "critical", "human");
		json_array_foreach(json_object_get(rep, "phases"), i, p) printf(
		    "%-8s %8lld %8lld %9.1f%% %9.2f%% %8lld %8lld\n", csa_json_str(p, "phase"),
		    csa_json_int(p, "start_ticket", 0), csa_json_int(p, "tickets", 0),
		    100 * csa_json_num(p, "autonomous_rate", 0),
		    100 * csa_json_num(p, "autonomous_accuracy", 0),
		    csa_json_int(p, "critical_errors", 0), csa_json_int(p, "human_decisions", 0));
		json_t *f = json_object_get(rep, "final");
		printf(
		    "final 20%%: %s, autonomous %.1f%% at %.2f%% accuracy, %lld critical errors\n",
		    csa_json_str(f, "phase"), 100 * csa_json_num(f, "autonomous_rate", 0),
		    100 * csa_json_num(f, "autonomous_accuracy", 0),
		    csa_json_int(f, "critical_errors", 0));
		json_t *h = json_object_get(f, "hindsight");
		printf("hindsight: one threshold chosen knowing every outcome would have decided "
		       "%.1f%% at %.0f%% accuracy or better\n",
		       100 * csa_json_num(h, "coverage", 0),
		       100 * csa_json_num(h, "target_accuracy", 0));
	}
	json_decref(rep);
	return 0;
}
