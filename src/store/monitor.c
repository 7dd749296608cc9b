/* The file monitor: periodic live verification of the mesh. */
#include "store/monitor.h"
#include "base/json.h"
#include "base/ts.h"
#include "store/verify.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Every problem csa_verify() reports, with the alert it raises. */
static const struct {
	const char *problem, *alert, *severity;
} kinds[] = {
    {"sync_drift", "MESH_DRIFT", "WARNING"},
    {"orphan", "MESH_INTEGRITY", "CRITICAL"},
    {"schema", "MESH_INTEGRITY", "CRITICAL"},
    {"unreadable", "MESH_INTEGRITY", "CRITICAL"},
    {"missing_directory", "MESH_INTEGRITY", "CRITICAL"},
    {"temp_file", "MESH_INTEGRITY", "WARNING"},
    {"foreign_file", "MESH_INTEGRITY", "WARNING"},
};
#define NKINDS     (sizeof(kinds) / sizeof(kinds[0]))
#define MAX_LISTED 20 /* tickets or files named in one alert */

struct csa_monitor {
	struct csa_ws *ws;
	struct csa_monitor_sink sink;
	double interval_s;
	pthread_mutex_t check_mu; /* one check at a time; guards memo */
	struct csa_verify_memo *memo;
	pthread_mutex_t mu; /* guards the fields below */
	pthread_cond_t cv;
	int stopping, running;
	pthread_t thread;
	long checks;
	json_t *last;
};

/* Raise or close one alert per kind from a verify report; every kind is
 * handled, the first error is returned. */
static int alert_from(struct csa_monitor *m, const json_t *rep, json_t *counts, struct csa_err *err)
{
	int rc = CSA_OK;
	for (size_t k = 0; k < NKINDS; k++) {
		json_t *listed = json_array();
		const char *first = NULL;
		size_t n = 0, i;
		json_t *p;
		json_array_foreach(json_object_get(rep, "problems"), i, p)
		{
			if (strcmp(csa_json_str(p, "problem"), kinds[k].problem) != 0 ||
			    json_is_true(json_object_get(p, "repaired")))
				continue;
			if (!n)
				first = csa_json_str(p, "detail");
			const char *what = csa_json_str(p, "ticket") ? csa_json_str(p, "ticket")
			                                             : csa_json_str(p, "file");
			if (n++ < MAX_LISTED && what)
				json_array_append_new(listed, json_string(what));
		}
		char scope[64];
		snprintf(scope, sizeof(scope), "mesh/%s", kinds[k].problem);
		json_object_set_new(counts, kinds[k].problem, json_integer((json_int_t)n));
		int r;
		if (n) {
			r = m->sink.raise(
			    m->sink.ctx, kinds[k].alert, kinds[k].severity, scope,
			    json_pack("{s:s, s:I, s:o, s:s?, s:s}", "problem", kinds[k].problem,
			              "count", (json_int_t)n, "affected", listed, "example", first,
			              "fix", "see 'csa verify' (and 'csa verify --repair')"),
			    rc ? NULL : err);
		} else {
			json_decref(listed);
			r = m->sink.close(m->sink.ctx, kinds[k].alert, scope, rc ? NULL : err);
		}
		rc = rc ? rc : r;
	}
	return rc;
}

int csa_monitor_check(struct csa_monitor *m, json_t **report, struct csa_err *err)
{
	pthread_mutex_lock(&m->check_mu);
	int64_t t0 = csa_mono_ns(), at = csa_now_ms();
	json_t *rep = NULL;
	int rc = csa_verify(m->ws, CSA_VERIFY_LIVE, m->memo, &rep, err);
	if (rc) {
		pthread_mutex_unlock(&m->check_mu);
		return rc;
	}
	json_t *counts = json_object();
	/* the summary is kept even when an alert could not be recorded */
	rc = alert_from(m, rep, counts, err);
	char ts[CSA_TS_LEN];
	json_t *problems = json_object_get(rep, "problems");
	size_t total = json_array_size(problems);
	while (json_array_size(problems) > 100)
		json_array_remove(problems, json_array_size(problems) - 1);
	json_t *sum = json_pack(
	    "{s:s, s:f, s:O, s:O, s:O, s:o, s:I, s:O}", "at", csa_ts_format(at, ts), "duration_ms",
	    (double)(csa_mono_ns() - t0) / 1e6, "tickets", json_object_get(rep, "tickets"),
	    "unchanged_since_last_check", json_object_get(rep, "unchanged_since_last_check"), "ok",
	    json_object_get(rep, "ok"), "counts", counts, "problems_total", (json_int_t)total,
	    "problems", problems);
	json_decref(rep);
	pthread_mutex_lock(&m->mu);
	m->checks++;
	json_decref(m->last);
	m->last = json_incref(sum);
	pthread_mutex_unlock(&m->mu);
	pthread_mutex_unlock(&m->check_mu);
	if (report && rc == CSA_OK)
		*report = sum;
	else
		json_decref(sum);
	return rc;
}

static void *monitor_loop(void *arg)
{
	struct csa_monitor *m = arg;
	/* a full check reads every ticket: let requests go first */
	setpriority(PRIO_PROCESS, (id_t)gettid(), 10);
	pthread_mutex_lock(&m->mu);
	for (;;) {
		/* the first check waits one interval too: a starting server
		 * serves its clients first */
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		double secs = (double)until.tv_nsec / 1e9 + m->interval_s;
		until.tv_sec += (time_t)secs;
		until.tv_nsec = (long)((secs - (double)(time_t)secs) * 1e9);
		while (!m->stopping && pthread_cond_timedwait(&m->cv, &m->mu, &until) == 0)
			;
		if (m->stopping)
			break;
		pthread_mutex_unlock(&m->mu);
		struct csa_err err = {0};
		if (csa_monitor_check(m, NULL, &err))
			fprintf(stderr, "csa: file monitor: %s\n", err.msg);
		pthread_mutex_lock(&m->mu);
	}
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

int csa_monitor_start(struct csa_ws *ws, const struct csa_monitor_sink *sink, double interval_s,
                      struct csa_monitor **out, struct csa_err *err)
{
	struct csa_monitor *m = calloc(1, sizeof(*m));
	if (!m)
		return csa_error(err, CSA_ENOMEM, "out of memory starting the file monitor");
	m->ws = ws;
	m->sink = *sink;
	m->interval_s = interval_s > 0 ? interval_s : 0;
	if (!(m->memo = csa_verify_memo_new())) {
		free(m);
		return csa_error(err, CSA_ENOMEM, "out of memory starting the file monitor");
	}
	pthread_mutex_init(&m->check_mu, NULL);
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cv, NULL);
	if (m->interval_s > 0) {
		if (pthread_create(&m->thread, NULL, monitor_loop, m) != 0) {
			csa_monitor_stop(m);
			return csa_error(err, CSA_EIO, "cannot start the file monitor thread");
		}
		m->running = 1;
	}
	*out = m;
	return CSA_OK;
}

json_t *csa_monitor_status(struct csa_monitor *m)
{
	pthread_mutex_lock(&m->mu);
	json_t *last = m->last ? json_deep_copy(m->last) : json_null();
	json_object_del(last, "problems");
	json_t *st = json_pack("{s:f, s:I, s:o}", "interval_seconds", m->interval_s, "checks",
	                       (json_int_t)m->checks, "last", last);
	pthread_mutex_unlock(&m->mu);
	return st;
}

void csa_monitor_stop(struct csa_monitor *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	m->stopping = 1;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	if (m->running)
		pthread_join(m->thread, NULL);
	json_decref(m->last);
	csa_verify_memo_free(m->memo);
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->mu);
	pthread_mutex_destroy(&m->check_mu);
	free(m);
}
