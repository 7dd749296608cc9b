/*
 * The replay's report is pinned: a generated history replayed through the
 * real pipeline and controller gives the same report, byte for byte, as
 * when this test was written. Refactoring and speeding up the pipeline,
 * the controller or the store must not change what a team is told its
 * history would reach; a change that means to (a new gate, a better model)
 * updates the pin and says why in its commit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "automation/replay.h"
#include "base/config.h"
#include "base/digest.h"
#include "base/json.h"
#include "gen/gen.h"
#include "support/tutil.h"

/* Gates small enough for a short stream to travel through the phases, as
 * a team's --config. */
static void write_team_config(const char *path)
{
	json_t *gates = json_object();
	const char *k;
	json_t *v, *defaults = csa_config_defaults();
	json_object_foreach(json_object_get(json_object_get(defaults, "automation"), "gates"), k, v)
	{
		if (json_object_get(v, "min_decisions"))
			json_object_set_new(gates, k, json_pack("{s:i}", "min_decisions", 40));
	}
	json_decref(defaults);
	json_t *team =
	    json_pack("{s:{s:i, s:o}}", "automation", "min_decisions", 30, "gates", gates);
	assert_int_equal(json_dump_file(team, path, 0), 0);
	json_decref(team);
}

static void replay_report_is_pinned(void **state)
{
	(void)state;
	struct csa_err err = {0};
	char *dir = t_tmpdir("replay-pin");
	char data[512], ws[512], cfg[512];
	snprintf(data, sizeof(data), "%s/history.jsonl", dir);
	snprintf(ws, sizeof(ws), "%s/ws", dir);
	snprintf(cfg, sizeof(cfg), "%s/team.json", dir);
	FILE *f = fopen(data, "w");
	assert_non_null(f);
	struct csa_gen *g = csa_gen_new(21, 1767225600000LL);
	assert_int_equal(csa_gen_write(g, 900, f), 0);
	csa_gen_free(g);
	assert_int_equal(fclose(f), 0);
	write_team_config(cfg);
	struct csa_replay_opts o;
	csa_replay_opts_default(&o);
	o.data = data;
	o.bootstrap = 300;
	o.retrain = 300;
	o.workdir = ws;
	o.config = cfg;
	o.quiet = 1;
	json_t *rep = NULL;
	if (csa_replay_run(&o, &rep, &err))
		fail_msg("replay: %s", err.msg);
	/* what the run took and where it ran are not what it found */
	assert_non_null(json_object_get(rep, "seconds"));
	json_object_del(rep, "seconds");
	assert_string_equal(csa_json_str(rep, "workspace"), ws);
	json_object_del(rep, "workspace");
	char *text = json_dumps(rep, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
	assert_non_null(text);
	char digest[CSA_SHA256_HEX_LEN];
	assert_int_equal(csa_sha256_hex(text, strlen(text), digest), 0);
	if (strcmp(digest, "a59e591cf84290d7b2adef0ad75d57cf3f914d78ce78183fd9ee04edf3da0159") != 0)
		fail_msg("the replay's report changed (sha256 %s):\n%s", digest, text);
	free(text);
	json_decref(rep);
	t_rmrf(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(replay_report_is_pinned),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
