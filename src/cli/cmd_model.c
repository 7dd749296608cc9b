/* csa model train | eval: the embedded classifier on CSV or JSONL data. */
#include "cli/cli.h"
#include "base/json.h"
#include "base/ts.h"
#include "model/calib.h"
#include "model/dataset.h"
#include "model/linear.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "csa model train --data F --text COL --label COL [--valid F] --out M [--seed S] "
    "[--epochs N] [--bits B] [--hidden H] [--dropout P] [--no-refit]\n"
    "       csa model eval --model M --data F --text COL --label COL [--reliability] "
    "[--per-label]";

static int label_index(const char *const *labels, size_t n, const char *l)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(labels[i], l) == 0)
			return (int)i;
	return -1;
}

static int train(int argc, char **argv)
{
	const char *data = cli_opt(argc, argv, "--data"), *tc = cli_opt(argc, argv, "--text"),
	           *lc = cli_opt(argc, argv, "--label"), *outp = cli_opt(argc, argv, "--out"),
	           *valid = cli_opt(argc, argv, "--valid");
	if (!data || !tc || !lc || !outp)
		return cli_usage(usage);
	struct csa_train_opts o;
	csa_train_opts_default(&o);
	unsigned long seed = o.seed, epochs = o.epochs, bits = o.feat.bits, hidden = o.hidden;
	/* --hidden 0: a linear model; without it, the form follows the
	 * number of labels (csa_train_default_hidden) */
	if (cli_opt_uint(argc, argv, "--seed", 0, UINT_MAX, &seed) ||
	    cli_opt_uint(argc, argv, "--epochs", 1, 1000, &epochs) ||
	    cli_opt_uint(argc, argv, "--bits", 8, 24, &bits) ||
	    cli_opt_uint(argc, argv, "--hidden", 0, 1024, &hidden) ||
	    cli_opt_real(argc, argv, "--dropout", 0, 0.9, &o.dropout))
		return 1;
	o.seed = (unsigned)seed;
	o.epochs = (unsigned)epochs;
	o.feat.bits = (unsigned)bits;
	o.hidden = (unsigned)hidden;
	/* keep the held-out rows (or --valid file) out of the final model */
	if (cli_flag(argc, argv, "--no-refit"))
		o.refit = 0;
	struct csa_err err = {0};
	struct csa_dataset tr = {0}, va = {0};
	if (csa_dataset_load(data, tc, lc, &tr, &err))
		return cli_fail(&err);
	if (valid && csa_dataset_load(valid, tc, lc, &va, &err)) {
		csa_dataset_release(&tr);
		return cli_fail(&err);
	}
	const char **labels;
	size_t k = csa_dataset_labels(&tr, &labels);
	if (!cli_opt(argc, argv, "--hidden"))
		o.hidden = csa_train_default_hidden(k);
	struct csa_example *ex = calloc(tr.n, sizeof(*ex)),
	                   *cal = calloc(tr.n + va.n, sizeof(*cal));
	size_t n_ex = 0, n_cal = 0;
	/* Without --valid, every 10th row is held out to calibrate on. */
	for (size_t i = 0; i < tr.n; i++) {
		struct csa_example e = {tr.text[i], NULL, 0, label_index(labels, k, tr.label[i])};
		if (!valid && i % 10 == 9)
			cal[n_cal++] = e;
		else
			ex[n_ex++] = e;
	}
	for (size_t i = 0; i < va.n; i++) {
		int l = label_index(labels, k, va.label[i]);
		if (l >= 0)
			cal[n_cal++] = (struct csa_example){va.text[i], NULL, 0, l};
	}
	int64_t t0 = csa_mono_ns();
	struct csa_linear *m = NULL;
	int rc = csa_linear_train(labels, k, ex, n_ex, cal, n_cal, &o, &m, &err);
	double secs = (double)(csa_mono_ns() - t0) / 1e9;
	/* held-out accuracy before the final refit (which learns from those rows) */
	double vacc = rc ? NAN : csa_linear_heldout_accuracy(m);
	if (!rc)
		rc = csa_linear_save(m, outp, &err);
	if (!rc) {
		json_t *j = json_pack(
		    "{s:s, s:I, s:I, s:I, s:f, s:I, s:f, s:o}", "model", outp, "n",
		    (json_int_t)(n_ex + (o.refit ? n_cal : 0)), "labels", (json_int_t)k, "hidden",
		    (json_int_t)o.hidden, "train_seconds", secs, "model_bytes",
		    (json_int_t)csa_linear_file_size(m), "temperature", csa_linear_temperature(m),
		    "valid_accuracy", isnan(vacc) ? json_null() : json_real(vacc));
		csa_json_print(j, 1);
		json_decref(j);
	}
	csa_linear_free(m);
	free(labels);
	free(ex);
	free(cal);
	csa_dataset_release(&tr);
	csa_dataset_release(&va);
	return rc ? cli_fail(&err) : 0;
}

static int eval(int argc, char **argv)
{
	const char *mp = cli_opt(argc, argv, "--model"), *data = cli_opt(argc, argv, "--data"),
	           *tc = cli_opt(argc, argv, "--text"), *lc = cli_opt(argc, argv, "--label");
	if (!mp || !data || !tc || !lc)
		return cli_usage(usage);
	struct csa_err err = {0};
	struct csa_linear *m;
	if (csa_linear_load(mp, &m, &err))
		return cli_fail(&err);
	struct csa_dataset ds = {0};
	if (csa_dataset_load(data, tc, lc, &ds, &err)) {
		csa_linear_free(m);
		return cli_fail(&err);
	}
	size_t k = csa_linear_n_labels(m);
	struct csa_pred *pr = calloc(ds.n ? ds.n : 1, sizeof(*pr));
	double *p = malloc(k * sizeof(double));
	int64_t t0 = csa_mono_ns();
	for (size_t i = 0; i < ds.n; i++) {
		csa_linear_predict(m, ds.text[i], strlen(ds.text[i]), NULL, 0, p);
		size_t best = 0;
		for (size_t c = 1; c < k; c++)
			if (p[c] > p[best])
				best = c;
		pr[i] =
		    (struct csa_pred){(int)best, csa_linear_label_index(m, ds.label[i]), p[best]};
	}
	double secs = (double)(csa_mono_ns() - t0) / 1e9;
	json_t *rep = csa_calib_report(pr, ds.n, k);
	json_object_set_new(rep, "predict_per_second",
	                    json_real(secs > 0 ? (double)ds.n / secs : 0));
	json_object_set_new(rep, "model_bytes", json_integer((json_int_t)csa_linear_file_size(m)));
	if (!cli_flag(argc, argv, "--reliability"))
		json_object_del(rep, "reliability");
	if (cli_flag(argc, argv, "--per-label")) {
		const char **names = malloc(k * sizeof(*names));
		for (size_t c = 0; names && c < k; c++)
			names[c] = csa_linear_label(m, c);
		json_t *pl = names ? csa_calib_per_label(pr, ds.n, k, names) : NULL;
		free(names);
		if (!pl) {
			json_decref(rep);
			free(pr);
			free(p);
			csa_dataset_release(&ds);
			csa_linear_free(m);
			return cli_failf("out of memory for the per-label report");
		}
		json_object_set_new(rep, "per_label", pl);
	}
	csa_json_print(rep, 1);
	json_decref(rep);
	free(pr);
	free(p);
	csa_dataset_release(&ds);
	csa_linear_free(m);
	return 0;
}

int cmd_model(int argc, char **argv)
{
	static const char *const valued[] = {"--data",  "--text",   "--label",   "--valid",
	                                     "--out",   "--seed",   "--epochs",  "--bits",
	                                     "--model", "--hidden", "--dropout", NULL};
	const char *sub = cli_pos(argc, argv, 0, valued);
	if (sub && strcmp(sub, "train") == 0)
		return train(argc, argv);
	if (sub && strcmp(sub, "eval") == 0)
		return eval(argc, argv);
	return cli_usage(usage);
}
