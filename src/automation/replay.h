/*
 * The replay simulator: labelled history streamed in time order through
 * the real pipeline and automation controller in a scratch workspace, the
 * gold label acting as the human (right with probability human_accuracy),
 * phases advancing by themselves when their gates pass and falling back
 * when safety demands. It shows a team what automation its own history
 * would reach before going live.
 */
#ifndef CSA_AUTOMATION_REPLAY_H
#define CSA_AUTOMATION_REPLAY_H

#include <jansson.h>
#include <stdint.h>
#include "base/err.h"

struct csa_replay_opts {
	const char *data;     /* comma-separated files, streamed in order */
	const char *text_col; /* CSV mode (category only) when set */
	const char *label_col;
	double human_accuracy; /* 0..1 */
	uint64_t seed;
	unsigned bootstrap;  /* tickets recorded as history before the first model */
	unsigned retrain;    /* retrain every this many tickets */
	unsigned tick;       /* controller tick every this many tickets */
	const char *workdir; /* scratch workspace (created; kept) or NULL for a temp one */
	const char *svg;     /* write the chart here when set */
	const char *config;  /* a JSON object merged into the scratch csa.json, or NULL */
	/* csa.json keys merged last, over 'config' (borrowed; NULL for none):
	 * what a sweep changes from one variant to the next */
	const json_t *set;
	int quiet;
};

void csa_replay_opts_default(struct csa_replay_opts *o);

/* Run; *report as documented in docs/AUTOMATION.md, owned by the caller
 * (json_decref). On failure *report is NULL. Without o->workdir the
 * scratch workspace is removed at the end; a failure to remove it fails a
 * replay that otherwise succeeded. */
int csa_replay_run(const struct csa_replay_opts *o, json_t **report, struct csa_err *err);

/*
 * A sweep: one replay of the same stream per value of one numeric setting
 * ('key', dotted as in csa.json: "automation.target_accuracy"), values[0..n)
 * in order, everything else as 'o' says (o->set must be NULL; o->svg, when
 * set, gets one chart with every variant's autonomous rate). *out, owned
 * by the caller: {"setting", "variants": [{"value", "journey": [{"phase",
 * "start_ticket"}], "final", "overall", "critical_errors",
 * "human_decisions"}], "seconds"}, each variant's "final" and "overall" as
 * in its replay's report. CSA_EINVAL when 'key' is not a numeric setting.
 * A replay's clock is the process's (CSA_FAKE_NOW_MS), so each variant
 * runs in a child process of its own, as many at once as there are cores
 * (sweep.c); the caller must have no other thread running.
 */
int csa_replay_sweep(const struct csa_replay_opts *o, const char *key, const double *values,
                     size_t n, json_t **out, struct csa_err *err);

/* One replay as csa_replay_run, with, when 'rate' is not NULL, its
 * rolling autonomous rate and accuracy over 500 tickets (malloc'd, NAN
 * where a window has none) and their length in *n: a sweep's chart. */
int csa_replay_run_series(const struct csa_replay_opts *o, json_t **report, double **rate,
                          double **acc, size_t *n, struct csa_err *err);

/* {"a": {"b": v}} for "a.b" (new reference in *out), when "a.b" is a
 * number in csa.json's defaults (an integer stays one when v is whole);
 * CSA_EINVAL otherwise. */
int csa_replay_setting(const char *key, double v, json_t **out, struct csa_err *err);

#endif
