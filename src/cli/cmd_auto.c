/* csa review | phase | metrics | audit | alerts: the automation controller. */
#include "cli/cli.h"
#include "automation/control.h"
#include "automation/ledger.h"
#include "base/json.h"
#include "flow/pipeline.h"
#include "llm/cascade.h"
#include "store/ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ctl {
	struct csa_ws *ws;
	struct csa_pipeline *p;
	struct csa_auto *a;
};

static int ctl_open(int argc, char **argv, struct ctl *c)
{
	struct csa_err err = {0};
	memset(c, 0, sizeof(*c));
	if (!(c->ws = cli_open_ws(argc, argv)))
		return 1;
	if (csa_pipeline_open(c->ws, &c->p, &err) || csa_auto_open(c->ws, c->p, &c->a, &err)) {
		csa_pipeline_free(c->p);
		csa_ws_close(c->ws);
		return cli_fail(&err);
	}
	return 0;
}

static void ctl_close(struct ctl *c)
{
	csa_auto_close(c->a);
	csa_pipeline_free(c->p);
	csa_ws_close(c->ws);
}

static const char *const valued[] = {"--value", "--notes",       "--by", "--status",
                                     "--limit", "--decision-ms", NULL};

static void print_task_human(const json_t *t)
{
	printf("task %lld  %s  ticket %s  %s/%s  suggestion %s (%.0f%%)  due %s\n",
	       csa_json_int(t, "task_id", 0), csa_json_str(t, "kind"), csa_json_str(t, "ticket_id"),
	       csa_json_str(t, "decision_type"), csa_json_str(t, "segment"),
	       csa_json_str(t, "suggestion") ? csa_json_str(t, "suggestion")
	                                     : "(hidden in PHASE_1)",
	       100 * csa_json_num(t, "confidence", 0), csa_json_str(t, "due"));
}

int cmd_review(int argc, char **argv)
{
	static const char usage[] = "csa review list [--status open|done] [--json] | next | "
	                            "decide TASK --value V [--notes N] [--by WHO]";
	const char *sub = cli_pos(argc, argv, 0, valued);
	if (!sub)
		return cli_usage(usage);
	struct ctl c;
	int rc = 0;
	struct csa_err err = {0};
	json_t *out = NULL;
	if (strcmp(sub, "list") == 0) {
		if (ctl_open(argc, argv, &c))
			return 1;
		const char *status = cli_opt(argc, argv, "--status");
		const char *lim = cli_opt(argc, argv, "--limit");
		rc = csa_auto_review_list(c.a, status ? status : "open",
		                          lim ? (size_t)strtoul(lim, NULL, 10) : 100, &out, &err);
		if (!rc && cli_flag(argc, argv, "--json"))
			csa_json_print(out, 1);
		else if (!rc) {
			size_t i;
			json_t *t;
			json_array_foreach(out, i, t) print_task_human(t);
			printf("%zu tasks\n", json_array_size(out));
		}
	} else if (strcmp(sub, "next") == 0) {
		if (ctl_open(argc, argv, &c))
			return 1;
		rc = csa_auto_review_next(c.a, &out, &err);
		if (!rc)
			csa_json_print(out ? out : json_null(), 1);
	} else if (strcmp(sub, "decide") == 0) {
		const char *task = cli_pos(argc, argv, 1, valued),
		           *value = cli_opt(argc, argv, "--value");
		char *end = NULL;
		long long id = task ? strtoll(task, &end, 10) : 0;
		if (!task || *end || id <= 0 || !value)
			return cli_usage(usage);
		if (ctl_open(argc, argv, &c))
			return 1;
		const char *ms = cli_opt(argc, argv, "--decision-ms");
		const char *by = cli_opt(argc, argv, "--by");
		rc = csa_auto_review_decide(c.a, id, value, by ? by : getenv("USER"),
		                            cli_opt(argc, argv, "--notes"),
		                            ms ? strtoll(ms, NULL, 10) : -1, &out, &err);
		if (!rc)
			csa_json_print(out, 1);
	} else {
		return cli_usage(usage);
	}
	json_decref(out);
	ctl_close(&c);
	return rc ? cli_fail(&err) : 0;
}

/* csa phase cap SCOPE N|none */
static int cap(struct ctl *c, const char *scope, const char *level, const char *who, json_t **out,
               struct csa_err *err)
{
	int max = 0;
	if (strcmp(level, "none") != 0) {
		if (level[0] < '1' || level[0] > '5' || level[1])
			return csa_error(err, CSA_EINVAL,
			                 "phase cap: '%.20s' is not 1..5 or 'none' (to lift it)", level);
		max = level[0] - '0';
	}
	return csa_auto_phase_cap(c->a, scope, max, who, out, err);
}

int cmd_phase(int argc, char **argv)
{
	static const char usage[] =
	    "csa phase status | evaluate | advance [--force] | rollback [POINT] | points | tick "
	    "[--advance] | cap TYPE[/SEGMENT] 1..5|none";
	const char *sub = cli_pos(argc, argv, 0, valued);
	if (!sub)
		return cli_usage(usage);
	struct ctl c;
	if (ctl_open(argc, argv, &c))
		return 1;
	struct csa_err err = {0};
	json_t *out = NULL;
	int rc;
	const char *who = getenv("USER");
	if (strcmp(sub, "status") == 0)
		rc = csa_auto_phase_status(c.a, &out, &err);
	else if (strcmp(sub, "evaluate") == 0)
		rc = csa_auto_phase_evaluate(c.a, &out, &err);
	else if (strcmp(sub, "advance") == 0)
		rc = csa_auto_phase_advance(c.a, who, cli_flag(argc, argv, "--force"), &out, &err);
	else if (strcmp(sub, "rollback") == 0)
		rc = csa_auto_phase_rollback(c.a, cli_pos(argc, argv, 1, valued), who, &out, &err);
	else if (strcmp(sub, "points") == 0)
		rc = csa_auto_rollback_points(c.a, &out, &err);
	else if (strcmp(sub, "tick") == 0)
		rc = csa_auto_tick(c.a, cli_flag(argc, argv, "--advance"), &out, &err);
	else if (strcmp(sub, "cap") == 0 && cli_pos(argc, argv, 2, valued))
		rc = cap(&c, cli_pos(argc, argv, 1, valued), cli_pos(argc, argv, 2, valued), who, &out,
		         &err);
	else {
		ctl_close(&c);
		return cli_usage(usage);
	}
	if (!rc)
		csa_json_print(out, 1);
	json_decref(out);
	ctl_close(&c);
	return rc ? cli_fail(&err) : 0;
}

int cmd_metrics(int argc, char **argv)
{
	struct ctl c;
	if (ctl_open(argc, argv, &c))
		return 1;
	struct csa_err err = {0};
	json_t *out = NULL;
	int rc = csa_auto_metrics(c.a, &out, &err);
	struct csa_cascade *cascade = csa_pipeline_env(c.p)->cascade;
	if (!rc && cascade)
		json_object_set_new(out, "llm", csa_cascade_usage(cascade));
	if (!rc && cli_flag(argc, argv, "--json")) {
		csa_json_print(out, 1);
	} else if (!rc) {
		json_t *o = json_object_get(out, "overall");
		printf("phase %s\n", csa_json_str(out, "phase"));
		const char *keys[] = {"tickets",
		                      "decisions",
		                      "automation_rate",
		                      "accuracy",
		                      "autonomous_accuracy",
		                      "escalation_rate",
		                      "calibration_ece",
		                      "mean_decision_seconds",
		                      "mean_first_response_minutes",
		                      "mean_resolution_minutes",
		                      "csat"};
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
			json_t *v = json_object_get(o, keys[i]);
			if (json_is_number(v))
				printf("  %-30s %.4g\n", keys[i], json_number_value(v));
			else
				printf("  %-30s -\n", keys[i]);
		}
		json_t *llm = json_object_get(out, "llm");
		if (llm)
			printf("  %-30s %lld calls in the last hour, %.4g spent today\n", "llm",
			       csa_json_int(llm, "calls_last_hour", 0),
			       csa_json_num(llm, "cost_today", 0));
	}
	json_decref(out);
	ctl_close(&c);
	return rc ? cli_fail(&err) : 0;
}

int cmd_audit(int argc, char **argv)
{
	static const char usage[] = "csa audit verify | show T_NO";
	const char *sub = cli_pos(argc, argv, 0, NULL);
	const char *id = sub && strcmp(sub, "show") == 0 ? cli_pos(argc, argv, 1, NULL) : NULL;
	if (!sub || (strcmp(sub, "verify") != 0 && !id))
		return cli_usage(usage);
	struct csa_err err = {0};
	if (id && csa_id_check(id, strlen(id), &err))
		return cli_fail(&err);
	struct csa_ws *ws = cli_open_ws(argc, argv);
	if (!ws)
		return 1;
	struct csa_ledger *l = NULL;
	int rc = csa_ledger_open_ws(ws, &l, &err);
	json_t *out = NULL;
	if (rc == CSA_OK)
		rc = id ? csa_ledger_trail(l, id, &out, &err) : csa_ledger_verify(l, &out, &err);
	csa_ledger_close(l);
	csa_ws_close(ws);
	if (rc)
		return cli_fail(&err);
	csa_json_print(out, 1);
	/* verify exits 1 when the chain is broken */
	int exit_code = !id && !json_is_true(json_object_get(out, "ok"));
	json_decref(out);
	return exit_code;
}

int cmd_alerts(int argc, char **argv)
{
	struct ctl c;
	if (ctl_open(argc, argv, &c))
		return 1;
	struct csa_err err = {0};
	json_t *out = NULL;
	int rc = csa_auto_alerts(c.a, !cli_flag(argc, argv, "--all"), &out, &err);
	if (!rc)
		csa_json_print(out, 1);
	json_decref(out);
	ctl_close(&c);
	return rc ? cli_fail(&err) : 0;
}
