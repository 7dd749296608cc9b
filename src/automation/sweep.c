/*
 * A sweep (replay.h): one replay of the same stream per value of one
 * numeric setting, each in a process of its own (a replay's clock is its
 * process's, CSA_FAKE_NOW_MS), as many at once as the machine has cores;
 * each child hands back its report and chart series in a file of a
 * private temporary directory. The variants' results are those of
 * replays run one after the other: nothing is shared but the input.
 */
#include "automation/replay.h"
#include "base/config.h"
#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int csa_replay_setting(const char *key, double v, json_t **out, struct csa_err *err)
{
	json_t *defaults = csa_config_defaults(), *cur = defaults;
	char *dup = strdup(key);
	int rc = dup && defaults ? CSA_OK : csa_error(err, CSA_ENOMEM, "out of memory");
	for (char *save = NULL, *p = dup ? strtok_r(dup, ".", &save) : NULL; rc == CSA_OK && p;
	     p = strtok_r(NULL, ".", &save))
		cur = json_object_get(cur, p);
	if (rc == CSA_OK && !json_is_number(cur))
		rc = csa_error(err, CSA_EINVAL, "'%s' is not a numeric setting of csa.json", key);
	/* an integer setting stays one when the value is whole */
	int integer = rc == CSA_OK && json_is_integer(cur) && v == floor(v);
	json_decref(defaults); /* cur was in it */
	free(dup);
	if (rc)
		return rc;
	/* built from the innermost key outwards */
	json_t *val = integer ? json_integer((json_int_t)v) : json_real(v);
	size_t len = strlen(key);
	for (size_t end = len; val;) {
		size_t start = end;
		while (start > 0 && key[start - 1] != '.')
			start--;
		char part[128];
		snprintf(part, sizeof(part), "%.*s", (int)(end - start), key + start);
		json_t *obj = json_object();
		if (!obj || json_object_set_new(obj, part, val)) {
			json_decref(obj);
			return csa_error(err, CSA_ENOMEM, "out of memory");
		}
		val = obj;
		if (start == 0)
			break;
		end = start - 1;
	}
	*out = val;
	return CSA_OK;
}

/* The phases a variant went through, with the ticket each started at. */
static json_t *journey_of(const json_t *report)
{
	json_t *j = json_array();
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(report, "phases"), i, p)
	    json_array_append_new(j, json_pack("{s:O, s:O}", "phase", json_object_get(p, "phase"),
	                                       "start_ticket", json_object_get(p, "start_ticket")));
	return j;
}

/* One chart: each variant's autonomous rate (solid) and accuracy (dashed)
 * over a 500-ticket window, a colour per variant. */
static int write_sweep_svg(const char *path, const char *key, const double *values,
                           double *const *rate, double *const *acc, const size_t *len,
                           size_t nv, struct csa_err *err)
{
	static const char *const colour[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
	                                     "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
	const double L = 50, T = 20, PW = 820, PH = 300;
	size_t cap = 1 << 16, used = 0;
	char *b = malloc(cap);
	int rc = b ? CSA_OK : csa_error(err, CSA_ENOMEM, "out of memory drawing '%s'", path);
#define Q(...)                                                                                     	do {                                                                                       		int w_ = rc ? 0 : snprintf(b + used, cap - used, __VA_ARGS__);                     		if (w_ > 0 && used + (size_t)w_ + 256 >= cap) {                                    			char *nb_ = realloc(b, cap = (cap + (size_t)w_) * 2);                      			if (!nb_) {                                                                				rc = csa_error(err, CSA_ENOMEM, "out of memory drawing '%s'",      				               path);                                              				break;                                                             			}                                                                          			b = nb_;                                                                   			w_ = snprintf(b + used, cap - used, __VA_ARGS__);                          		}                                                                                  		used += (size_t)(w_ > 0 ? w_ : 0);                                                 	} while (0)
	Q("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"%.0f\" "
	  "font-family=\"sans-serif\" font-size=\"11\">\n",
	  T + PH + 40 + 14.0 * (double)nv);
	Q("<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"#fafafa\" "
	  "stroke=\"#999\"/>\n",
	  L, T, PW, PH);
	for (int g = 0; g <= 4; g++)
		Q("<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text "
		  "x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%d%%</text>\n",
		  L, L + PW, T + PH * g / 4.0, T + PH * g / 4.0, L - 4, T + PH * g / 4.0 + 4,
		  100 - 25 * g);
	for (size_t v = 0; v < nv; v++) {
		size_t n = len[v];
		const double *series[2] = {rate[v], acc[v]};
		for (int s = 0; s < 2; s++) {
			Q("<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"%s points=\"",
			  colour[v % 8], s ? " stroke-dasharray=\"4 3\"" : "");
			for (size_t i = 0; i < n; i += n > 2000 ? n / 2000 : 1)
				if (!isnan(series[s][i]))
					Q("%.1f,%.1f ", L + PW * (double)i / (double)n,
					  T + PH * (1 - series[s][i]));
			Q("\"/>\n");
		}
		Q("<text x=\"%.0f\" y=\"%.0f\" fill=\"%s\">%s = %g: autonomous rate (solid), "
		  "autonomous accuracy (dashed)</text>\n",
		  L, T + PH + 30 + 14.0 * (double)v, colour[v % 8], key, values[v]);
	}
	Q("<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">tickets (rolling window of "
	  "500)</text>\n</svg>\n",
	  L + PW, T + PH + 16);
#undef Q
	if (rc == CSA_OK)
		rc = csa_fs_write_atomic(path, b, used, err);
	free(b);
	return rc;
}

/* One variant's outcome, read back from its child. */
struct variant {
	json_t *report;
	double *rate, *acc;
	size_t len;
	pid_t pid;
	char file[4200];
};

/* A series as JSON, NaN as null. */
static json_t *series_json(const double *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, isnan(v[i]) ? json_null() : json_real(v[i]));
	return a;
}

static double *series_of(const json_t *a, size_t n)
{
	double *v = malloc((n ? n : 1) * sizeof(double));
	for (size_t i = 0; v && i < n; i++) {
		json_t *x = json_array_get(a, i);
		v[i] = json_is_number(x) ? json_number_value(x) : NAN;
	}
	return v;
}

/* In the child: variant 'value' replayed, its outcome written to 'file'
 * ({"report", "rate", "acc"} or {"error", "code"}); the exit status says
 * whether the file was written. */
static void run_child(const struct csa_replay_opts *o, const char *key, double value,
                      const char *file)
{
	struct csa_err err = {0};
	json_t *set = NULL, *rep = NULL, *out;
	double *rate = NULL, *acc = NULL;
	size_t len = 0;
	int rc = csa_replay_setting(key, value, &set, &err);
	if (rc == CSA_OK) {
		struct csa_replay_opts one = *o;
		one.set = set;
		one.svg = NULL;
		rc = csa_replay_run_series(&one, &rep, &rate, &acc, &len, &err);
	}
	out = rc == CSA_OK ? json_pack("{s:o, s:o, s:o}", "report", rep, "rate",
	                               series_json(rate, len), "acc", series_json(acc, len))
	                   : json_pack("{s:s, s:i}", "error", err.msg, "code", rc);
	char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
	int ok = text && csa_fs_write_atomic(file, text, strlen(text), &err) == CSA_OK;
	free(text);
	json_decref(out);
	json_decref(set);
	free(rate);
	free(acc);
	_exit(ok ? 0 : 1);
}

/* The parent's side: variant v's child started. */
static int start_child(const struct csa_replay_opts *o, const char *key, double value,
                       struct variant *v, struct csa_err *err)
{
	fflush(NULL); /* nothing buffered is written twice */
	v->pid = fork();
	if (v->pid < 0)
		return csa_error_sys(err, "cannot start the replay of %s = %g", key, value);
	if (v->pid == 0)
		run_child(o, key, value, v->file);
	return CSA_OK;
}

/* Variant v's child has ended with 'status': its outcome read back. */
static int collect(const char *key, double value, int status, struct variant *v,
                   struct csa_err *err)
{
	json_t *j = NULL;
	struct csa_err rerr = {0};
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
	    csa_json_load_file(v->file, 1 << 30, &j, &rerr))
		return csa_error(err, CSA_EIO, "%s = %g: the replay's process %s", key, value,
		                 WIFSIGNALED(status) ? strsignal(WTERMSIG(status))
		                                     : "wrote no outcome");
	const char *msg = csa_json_str(j, "error");
	int rc = CSA_OK;
	if (msg) {
		rc = csa_error(err, (int)csa_json_int(j, "code", CSA_EIO), "%s = %g: %s", key, value,
		               msg);
	} else {
		v->report = json_incref(json_object_get(j, "report"));
		v->len = json_array_size(json_object_get(j, "rate"));
		v->rate = series_of(json_object_get(j, "rate"), v->len);
		v->acc = series_of(json_object_get(j, "acc"), v->len);
		if (!v->report || !v->rate || !v->acc)
			rc = csa_error(err, CSA_ENOMEM, "out of memory reading %s = %g", key, value);
	}
	json_decref(j);
	return rc;
}

/* Up to 'jobs' children at a time, every variant's outcome in vs[]. On
 * the first failure no new child starts; those running are waited for. */
static int run_variants(const struct csa_replay_opts *o, const char *key, const double *values,
                        size_t n, struct variant *vs, struct csa_err *err)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	size_t jobs = cores > 1 ? (size_t)cores : 1, next = 0, running = 0;
	int rc = CSA_OK;
	while (running > 0 || (rc == CSA_OK && next < n)) {
		if (rc == CSA_OK && next < n && running < jobs) {
			if (!o->quiet)
				fprintf(stderr, "replay: %s = %g (%zu of %zu)\n", key, values[next],
				        next + 1, n);
			if ((rc = start_child(o, key, values[next], &vs[next], err)) == CSA_OK) {
				next++;
				running++;
			}
			continue;
		}
		int status;
		pid_t pid = waitpid(-1, &status, 0);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			if (rc == CSA_OK)
				rc = csa_error_sys(err, "waiting for the sweep's replays");
			break;
		}
		for (size_t k = 0; k < next; k++) {
			if (vs[k].pid != pid)
				continue;
			vs[k].pid = 0;
			running--;
			struct csa_err cerr = {0};
			int crc = collect(key, values[k], status, &vs[k], &cerr);
			if (crc && rc == CSA_OK) {
				rc = crc;
				*err = cerr;
			}
		}
	}
	return rc;
}

int csa_replay_sweep(const struct csa_replay_opts *o, const char *key, const double *values,
                     size_t n, json_t **out, struct csa_err *err)
{
	int64_t t0 = csa_mono_ns();
	*out = NULL;
	if (o->set)
		return csa_error(err, CSA_EINVAL, "a sweep sets '%s' itself", key);
	if (n == 0)
		return csa_error(err, CSA_EINVAL, "a sweep of '%s' needs at least one value", key);
	/* every value is checked before any replay starts */
	for (size_t v = 0; v < n; v++) {
		json_t *set = NULL;
		int rc = csa_replay_setting(key, values[v], &set, err);
		json_decref(set);
		if (rc)
			return rc;
	}
	const char *tmp = getenv("TMPDIR");
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/csa-sweep-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir))
		return csa_error_sys(err, "cannot create the sweep's directory '%s'", dir);
	struct variant *vs = calloc(n, sizeof(*vs));
	json_t *variants = json_array();
	int rc = vs && variants
	             ? CSA_OK
	             : csa_error(err, CSA_ENOMEM, "out of memory for a sweep of %zu values", n);
	for (size_t v = 0; vs && v < n; v++)
		snprintf(vs[v].file, sizeof(vs[v].file), "%s/variant-%zu.json", dir, v);
	if (rc == CSA_OK)
		rc = run_variants(o, key, values, n, vs, err);
	for (size_t v = 0; rc == CSA_OK && v < n; v++) {
		json_t *rep = vs[v].report, *overall = json_object_get(rep, "overall");
		json_array_append_new(
		    variants,
		    json_pack("{s:f, s:o, s:O, s:O, s:O, s:O}", "value", values[v], "journey",
		              journey_of(rep), "final", json_object_get(rep, "final"), "overall",
		              overall, "critical_errors", json_object_get(overall, "critical_errors"),
		              "human_decisions", json_object_get(overall, "human_decisions")));
	}
	if (rc == CSA_OK && o->svg) {
		double **rate = calloc(n, sizeof(*rate)), **acc = calloc(n, sizeof(*acc));
		size_t *len = calloc(n, sizeof(*len));
		for (size_t v = 0; rate && acc && len && v < n; v++) {
			rate[v] = vs[v].rate;
			acc[v] = vs[v].acc;
			len[v] = vs[v].len;
		}
		rc = rate && acc && len ? write_sweep_svg(o->svg, key, values, rate, acc, len, n, err)
		                        : csa_error(err, CSA_ENOMEM, "out of memory drawing '%s'",
		                                    o->svg);
		free(rate);
		free(acc);
		free(len);
	}
	for (size_t v = 0; vs && v < n; v++) {
		json_decref(vs[v].report);
		free(vs[v].rate);
		free(vs[v].acc);
		unlink(vs[v].file);
	}
	free(vs);
	rmdir(dir);
	if (rc == CSA_OK)
		*out = json_pack("{s:s, s:o, s:f}", "setting", key, "variants", variants, "seconds",
		                 (double)(csa_mono_ns() - t0) / 1e9);
	else
		json_decref(variants);
	if (rc == CSA_OK && !*out)
		rc = csa_error(err, CSA_ENOMEM, "out of memory writing the sweep's report");
	return rc;
}
