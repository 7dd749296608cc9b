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
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "automation/replay.h"
#include "store/ws.h"
#include "flow/pipeline.h"
#include "automation/control.h"
#include "base/config.h"
#include "base/digest.h"
#include "base/fsops.h"
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

/*
 * The pinned replay, twice: with a --workdir, whose tickets go to its files
 * (store/mesh.c), and without, whose tickets stay in memory
 * (store/memstore.c). Both must give the pinned report.
 */
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
	for (int in_memory = 0; in_memory < 2; in_memory++) {
		struct csa_replay_opts o;
		csa_replay_opts_default(&o);
		o.data = data;
		o.bootstrap = 300;
		o.retrain = 300;
		o.workdir = in_memory ? NULL : ws;
		o.config = cfg;
		o.quiet = 1;
		json_t *rep = NULL;
		if (csa_replay_run(&o, &rep, &err))
			fail_msg("replay: %s", err.msg);
		/* what the run took and where it ran are not what it found */
		assert_non_null(json_object_get(rep, "seconds"));
		json_object_del(rep, "seconds");
		if (in_memory)
			assert_true(json_is_null(json_object_get(rep, "workspace")));
		else
			assert_string_equal(csa_json_str(rep, "workspace"), ws);
		json_object_del(rep, "workspace");
		/* the hindsight bound meets its target */
		json_t *h = json_object_get(json_object_get(rep, "final"), "hindsight");
		assert_true(csa_json_num(h, "coverage", -1) > 0 &&
		            csa_json_num(h, "coverage", 2) <= 1);
		assert_true(csa_json_num(h, "accuracy", 0) >=
		            csa_json_num(h, "target_accuracy", 1));
		char *text =
		    json_dumps(rep, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
		assert_non_null(text);
		char digest[CSA_SHA256_HEX_LEN];
		assert_int_equal(csa_sha256_hex(text, strlen(text), digest), 0);
		if (strcmp(digest,
		           "d1f4f4ba0ebd522a3677b98d0174f9847fc80c4d89a5443c46d1558351b39403") != 0)
			fail_msg("the replay's report (tickets in %s) changed (sha256 %s):\n%s",
			         in_memory ? "memory" : "files", digest, text);
		free(text);
		json_decref(rep);
	}
	t_rmrf(dir);
	free(dir);
}

/*
 * Rows without a time (a labelled CSV) are replayed on a clock of their
 * own, one second apart from a fixed start, not on the real one: review
 * times, rollback points and grace periods all read the clock, and the
 * same history must give the same report at every run, byte for byte.
 */
static void undated_history_gives_one_report(void **state)
{
	(void)state;
	struct csa_err err = {0};
	char *dir = t_tmpdir("replay-csv");
	char data[512], cfg[512];
	snprintf(data, sizeof(data), "%s/rows.csv", dir);
	snprintf(cfg, sizeof(cfg), "%s/team.json", dir);
	FILE *f = fopen(data, "w");
	assert_non_null(f);
	fprintf(f, "text,category\n");
	struct csa_gen *g = csa_gen_new(29, 1767225600000LL);
	for (int i = 0; i < 700; i++) {
		json_t *t = csa_gen_next(g);
		const char *text = csa_json_str(
		    json_array_get(json_object_get(t, "messages"), 0), "content");
		fputc('"', f); /* quoted, a quote written twice */
		for (const char *c = text; *c; c++) {
			if (*c == '"')
				fputc('"', f);
			fputc(*c, f);
		}
		fprintf(f, "\",%s\n",
		        csa_json_str(json_object_get(t, "gold"), "category"));
		json_decref(t);
	}
	csa_gen_free(g);
	assert_int_equal(fclose(f), 0);
	write_team_config(cfg);
	char *first = NULL;
	for (int run = 0; run < 2; run++) {
		struct csa_replay_opts o;
		csa_replay_opts_default(&o);
		o.data = data;
		o.text_col = "text";
		o.label_col = "category";
		o.bootstrap = 200;
		o.retrain = 250;
		o.config = cfg;
		o.quiet = 1;
		json_t *rep = NULL;
		if (csa_replay_run(&o, &rep, &err))
			fail_msg("replay: %s", err.msg);
		json_object_del(rep, "seconds");
		/* it went through the phases, and so made rollback points */
		assert_true(json_array_size(json_object_get(rep, "phases")) > 1);
		char *text = json_dumps(rep, JSON_COMPACT | JSON_SORT_KEYS);
		assert_non_null(text);
		json_decref(rep);
		if (!first) {
			first = text;
			usleep(20000); /* the real clock moves on between the runs */
			continue;
		}
		assert_string_equal(text, first);
		free(text);
	}
	free(first);
	t_rmrf(dir);
	free(dir);
}

/* Without --workdir the replay's scratch workspace (a few hundred files,
 * removed by several threads) is gone when it returns, and its report
 * names none. */
static void scratch_workspace_is_removed(void **state)
{
	(void)state;
	struct csa_err err = {0};
	char *dir = t_tmpdir("replay-rm");
	char data[512], tmp[512];
	snprintf(data, sizeof(data), "%s/history.jsonl", dir);
	snprintf(tmp, sizeof(tmp), "%s/tmp", dir);
	assert_int_equal(mkdir(tmp, 0700), 0);
	FILE *f = fopen(data, "w");
	assert_non_null(f);
	struct csa_gen *g = csa_gen_new(23, 1767225600000LL);
	assert_int_equal(csa_gen_write(g, 260, f), 0);
	csa_gen_free(g);
	assert_int_equal(fclose(f), 0);
	struct csa_replay_opts o;
	csa_replay_opts_default(&o);
	o.data = data;
	o.bootstrap = 200;
	o.retrain = 0;
	o.quiet = 1;
	const char *old = getenv("TMPDIR");
	char *saved = old ? strdup(old) : NULL;
	setenv("TMPDIR", tmp, 1);
	json_t *rep = NULL;
	int rc = csa_replay_run(&o, &rep, &err);
	if (saved)
		setenv("TMPDIR", saved, 1);
	else
		unsetenv("TMPDIR");
	free(saved);
	if (rc)
		fail_msg("replay: %s", err.msg);
	assert_true(json_is_null(json_object_get(rep, "workspace")));
	json_decref(rep);
	DIR *d = opendir(tmp);
	assert_non_null(d);
	int entries = 0;
	for (struct dirent *e; (e = readdir(d));)
		entries += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	assert_int_equal(entries, 0);
	t_rmrf(dir);
	free(dir);
}

/* Lines of one kind in the chart (polyline elements). */
static int count_of(const char *text, const char *what)
{
	int n = 0;
	for (const char *p = text; (p = strstr(p, what)); p += strlen(what))
		n++;
	return n;
}

/*
 * A sweep runs one replay per value: the variant whose value is the one
 * the replay uses anyway (the team's 40 decisions for the PHASE_1 gate)
 * finds what a plain replay finds, a variant of another value is a replay
 * of its own (1,000, more than the 500 decisions a gate reads, keeps the
 * workspace in PHASE_1, so its journey differs), and the chart has both
 * variants' lines. A setting
 * that is not a number of csa.json is refused before any replay.
 */
static void sweep_runs_one_replay_per_value(void **state)
{
	(void)state;
	struct csa_err err = {0};
	char *dir = t_tmpdir("replay-sweep");
	char data[512], cfg[512], svg[512];
	snprintf(data, sizeof(data), "%s/history.jsonl", dir);
	snprintf(cfg, sizeof(cfg), "%s/team.json", dir);
	snprintf(svg, sizeof(svg), "%s/sweep.svg", dir);
	FILE *f = fopen(data, "w");
	assert_non_null(f);
	struct csa_gen *g = csa_gen_new(22, 1767225600000LL);
	assert_int_equal(csa_gen_write(g, 600, f), 0);
	csa_gen_free(g);
	assert_int_equal(fclose(f), 0);
	write_team_config(cfg);
	struct csa_replay_opts o;
	csa_replay_opts_default(&o);
	o.data = data;
	o.bootstrap = 300;
	o.retrain = 150;
	o.config = cfg;
	o.quiet = 1;
	json_t *plain = NULL, *sw = NULL;
	if (csa_replay_run(&o, &plain, &err))
		fail_msg("replay: %s", err.msg);
	static const char key[] = "automation.gates.PHASE_1.min_decisions";
	double values[2] = {1000, 40};
	o.svg = svg;
	if (csa_replay_sweep(&o, key, values, 2, &sw, &err))
		fail_msg("sweep: %s", err.msg);
	assert_string_equal(csa_json_str(sw, "setting"), key);
	json_t *vs = json_object_get(sw, "variants");
	assert_int_equal(json_array_size(vs), 2);
	json_t *same = json_array_get(vs, 1), *other = json_array_get(vs, 0);
	assert_true(json_equal(json_object_get(same, "final"), json_object_get(plain, "final")));
	assert_true(
	    json_equal(json_object_get(same, "overall"), json_object_get(plain, "overall")));
	size_t k;
	json_t *p, *journey = json_object_get(same, "journey");
	assert_int_equal(json_array_size(journey),
	                 json_array_size(json_object_get(plain, "phases")));
	json_array_foreach(json_object_get(plain, "phases"), k, p)
	{
		assert_true(json_equal(json_object_get(json_array_get(journey, k), "start_ticket"),
		                       json_object_get(p, "start_ticket")));
	}
	assert_false(json_equal(json_object_get(other, "journey"), journey));
	assert_true(
	    json_equal(json_object_get(same, "human_decisions"),
	               json_object_get(json_object_get(plain, "overall"), "human_decisions")));
	char *text = NULL;
	size_t len = 0;
	assert_int_equal(csa_fs_read_all(svg, 1 << 24, &text, &len, &err), 0);
	assert_int_equal(count_of(text, "<polyline"), 4);
	free(text);
	json_decref(sw);
	json_decref(plain);

	o.svg = NULL;
	sw = NULL;
	assert_int_equal(csa_replay_sweep(&o, "automation.nope", values, 2, &sw, &err), CSA_EINVAL);
	assert_null(sw);
	assert_non_null(strstr(err.msg, "automation.nope"));
	t_rmrf(dir);
	free(dir);
}

/*
 * A workspace whose tickets live in memory (a replay without --workdir)
 * writes no ticket file and keeps the controller's database in memory
 * too: no automation.db beside csa.json, while the decisions it records
 * are there to read. A scratch workspace on files keeps both in files.
 */
static void memory_workspace_writes_no_database(void **state)
{
	(void)state;
	struct csa_err err = {0};
	for (int memory = 0; memory < 2; memory++) {
		char *dir = t_tmpdir("replay-mem");
		struct csa_ws *ws = NULL;
		struct csa_pipeline *p = NULL;
		struct csa_auto *a = NULL;
		if (csa_ws_init(dir, &err) ||
		    (memory ? csa_ws_open_memory : csa_ws_open_scratch)(dir, &ws, &err) ||
		    csa_pipeline_open(ws, &p, &err) || csa_auto_open(ws, p, &a, &err))
			fail_msg("%s", err.msg);
		assert_int_equal(ws->memory, memory);
		json_t *doc = json_pack("{s:s, s:[{s:s, s:s}]}", "ticket_id", "M-1", "messages",
		                        "sender", "customer", "content", "I was charged twice");
		json_t *res = NULL;
		if (csa_pipeline_ingest(p, doc, &res, &err))
			fail_msg("%s", err.msg);
		json_decref(doc);
		json_decref(res);
		/* what the controller stores is read back */
		assert_int_equal(csa_auto_alert_raise(a, "MESH_INCONSISTENCY", "HIGH", "M-1",
		                                      json_pack("{s:s}", "why", "test"), &err),
		                 0);
		json_t *alerts = NULL;
		assert_int_equal(csa_auto_alerts(a, 1, &alerts, &err), 0);
		assert_int_equal(json_array_size(alerts), 1);
		json_decref(alerts);
		char path[600];
		snprintf(path, sizeof(path), "%s/automation.db", dir);
		assert_int_equal(access(path, F_OK) == 0, !memory);
		snprintf(path, sizeof(path), "%s/Tickets/tickets/T_M-1.json", dir);
		assert_int_equal(access(path, F_OK) == 0, !memory);
		csa_auto_close(a);
		csa_pipeline_free(p);
		csa_ws_close(ws);
		t_rmrf(dir);
		free(dir);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(replay_report_is_pinned),
	    cmocka_unit_test(undated_history_gives_one_report),
	    cmocka_unit_test(sweep_runs_one_replay_per_value),
	    cmocka_unit_test(scratch_workspace_is_removed),
	    cmocka_unit_test(memory_workspace_writes_no_database),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
