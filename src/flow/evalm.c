/* The foundation model evaluator. */
#include "flow/evalm.h"
#include "agents/agent.h"
#include "agents/dmodel.h"
#include "agents/sentiment.h"
#include "base/config.h"
#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/import.h"
#include "flow/pipeline.h"
#include "llm/backend.h"
#include "llm/cascade.h"
#include "model/calib.h"
#include "store/store.h"
#include "store/ws.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CANDS    12
#define MAX_LABELS   1024
#define LINE_MAX_LEN (1 << 20)
#define LOW_CONF     0.8 /* embedded confidence under which a row is an "edge case" */
#define ECE_BINS     15

struct ev_row {
	char *text;              /* the customer's words at triage */
	char *full;              /* every customer turn */
	int turns;               /* customer messages */
	int label[CSA_DT_COUNT]; /* gold, index into the type's labels; -1 none */
	char feats[CSA_DT_COUNT][256];
	size_t nf[CSA_DT_COUNT];
};

struct answer {
	int pred;
	double conf;
};

struct cand {
	char name[160];
	struct csa_llm *llm;                 /* NULL: the embedded model */
	struct answer *ans[CSA_DT_COUNT][2]; /* [type][0 zero-shot, 1 few-shot] per test row */
	struct answer *multi;                /* category on the whole conversation */
	double cost[CSA_DT_COUNT][2];
	double *lat;
	size_t n_lat, cap_lat;
	long failures, calls;
	json_t *errors; /* a few distinct error messages */
};

struct ev {
	struct csa_ws *ws;
	const struct csa_config *cfg; /* the snapshot the whole evaluation reads */
	const struct csa_evalm_opts *o;
	struct ev_row *rows;
	size_t n, n_train, n_test; /* test rows are rows[n_train .. n_train + n_test) */
	const char *labels[CSA_DT_COUNT][MAX_LABELS];
	size_t n_labels[CSA_DT_COUNT];
	int types[CSA_DT_COUNT]; /* evaluated (automation.decision_types) */
	struct cand c[MAX_CANDS];
	size_t n_c;
};

static void feats_ptrs(const struct ev_row *r, int t, const char **out)
{
	const char *q = r->feats[t];
	for (size_t f = 0; f < r->nf[t]; f++, q += strlen(q) + 1)
		out[f] = q;
}

static int label_index(const struct ev *e, int t, const char *v)
{
	for (size_t i = 0; v && i < e->n_labels[t]; i++)
		if (strcmp(e->labels[t][i], v) == 0)
			return (int)i;
	return -1;
}

static int customer_turns(const json_t *e)
{
	int n = 0;
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(e, "messages"), i, m)
	{
		const char *s = csa_json_str(m, "sender");
		n += s && strcmp(s, "customer") == 0;
	}
	return n;
}

/* One history line into a row (validated like an import). */
static int read_row(struct ev *e, const json_t *h, size_t line, struct ev_row *r,
                    struct csa_err *err)
{
	struct csa_ticket tk;
	int rc = csa_import_ticket(e->cfg, h, line, &tk, err);
	if (rc)
		return rc;
	memset(r, 0, sizeof(*r));
	r->text = csa_pipeline_text(tk.e, 4000, 1);
	r->full = csa_pipeline_text(tk.e, 4000, 0);
	r->turns = customer_turns(tk.e);
	json_t *gold = json_object_get(h, "gold");
	const char *esc = csa_json_str(gold, "escalation_path");
	const char *g[CSA_DT_COUNT] = {csa_json_str(gold, "category"),
	                               csa_json_str(gold, "priority"),
	                               csa_json_str(gold, "strategy"), esc ? esc : "NONE"};
	for (int t = 0; t < CSA_DT_COUNT; t++)
		r->label[t] = label_index(e, t, g[t]);
	json_t *cust = json_object_get(json_object_get(tk.e, "participants"), "customer");
	struct csa_sentiment s;
	csa_sentiment_analyze(r->text ? r->text : "", r->text ? strlen(r->text) : 0, &s);
	struct csa_agent_input in = {.tk = &tk,
	                             .text = r->text,
	                             .tier = csa_json_str(cust, "subscription_tier"),
	                             .platform = csa_json_str(tk.e, "platform"),
	                             .sentiment = s.score};
	const char *ptrs[16];
	for (int t = 0; t < CSA_DT_COUNT; t++)
		r->nf[t] = csa_agent_features((enum csa_dtype)t, &in, g[CSA_DT_CATEGORY],
		                              g[CSA_DT_PRIORITY], r->feats[t], sizeof(r->feats[t]),
		                              ptrs, 16);
	csa_ticket_release(&tk);
	if (!r->text || !r->full) {
		free(r->text);
		free(r->full);
		return csa_error(err, CSA_ENOMEM, "line %zu: out of memory", line);
	}
	return CSA_OK;
}

static int read_rows(struct ev *e, FILE *in, const char *name, struct csa_err *err)
{
	char *line = NULL;
	size_t cap = 0, lineno = 0, rcap = 0;
	ssize_t len;
	int rc = CSA_OK;
	while (rc == CSA_OK && (len = getline(&line, &cap, in)) >= 0) {
		lineno++;
		if (len == 0 || strspn(line, " \t\r\n") == (size_t)len)
			continue;
		if (len > LINE_MAX_LEN) {
			rc = csa_error(err, CSA_ELIMIT, "%s:%zu: line longer than %d bytes", name,
			               lineno, LINE_MAX_LEN);
			break;
		}
		json_t *h = NULL;
		char where[300];
		snprintf(where, sizeof(where), "%s:%zu", name, lineno);
		if ((rc = csa_json_parse(line, (size_t)len, where, &h, err)))
			break;
		if (e->n == rcap) {
			rcap = rcap ? rcap * 2 : 256;
			struct ev_row *nr = realloc(e->rows, rcap * sizeof(*nr));
			if (!nr) {
				json_decref(h);
				rc = csa_error(err, CSA_ENOMEM, "out of memory reading '%s'", name);
				break;
			}
			e->rows = nr;
		}
		rc = read_row(e, h, lineno, &e->rows[e->n], err);
		json_decref(h);
		if (rc)
			csa_error_prefix(err, "%s: ", name);
		else
			e->n++;
	}
	free(line);
	return rc;
}

/* ---- candidates ------------------------------------------------------- */

/* "embedded", a backend NAME of llm.backends, or KIND:MODEL (the first
 * configured backend of that kind, with the model replaced). */
static int open_cand(struct ev *e, const char *spec, struct cand *c, struct csa_err *err)
{
	snprintf(c->name, sizeof(c->name), "%s", spec);
	if (strcmp(spec, "embedded") == 0) {
		c->errors = json_array();
		return CSA_OK;
	}
	json_t *defs = csa_config_get(e->cfg, "llm.backends");
	json_t *def = json_object_get(defs, spec);
	json_t *conf = def ? json_deep_copy(def) : NULL;
	const char *colon = strchr(spec, ':');
	if (!conf && colon) {
		char kind[32];
		snprintf(kind, sizeof(kind), "%.*s", (int)(colon - spec), spec);
		const char *key;
		json_t *v;
		json_object_foreach(defs, key, v)
		{
			const char *k = csa_json_str(v, "kind");
			if (!conf && k && strcmp(k, kind) == 0)
				conf = json_deep_copy(v);
		}
		if (conf)
			json_object_set_new(conf, "model", json_string(colon + 1));
	}
	if (!conf)
		return csa_error(err, CSA_EINVAL,
		                 "--backends: '%s' is neither 'embedded', a backend in csa.json "
		                 "llm.backends, nor KIND:MODEL with a configured backend of that "
		                 "kind (see docs/LLM.md)",
		                 spec);
	int rc = csa_llm_open(spec, conf, &c->llm, err);
	json_decref(conf);
	if (rc == CSA_OK)
		c->errors = json_array();
	return rc;
}

static void add_latency(struct cand *c, double ms)
{
	if (c->n_lat == c->cap_lat) {
		size_t cap = c->cap_lat ? c->cap_lat * 2 : 256;
		double *nl = realloc(c->lat, cap * sizeof(*nl));
		if (!nl)
			return;
		c->lat = nl;
		c->cap_lat = cap;
	}
	c->lat[c->n_lat++] = ms;
}

static int alloc_answers(struct ev *e, struct cand *c)
{
	for (int t = 0; t < CSA_DT_COUNT; t++)
		for (int m = 0; m < 2; m++)
			if (!(c->ans[t][m] =
			          calloc(e->n_test ? e->n_test : 1, sizeof(struct answer))))
				return CSA_ENOMEM;
	c->multi = calloc(e->n_test ? e->n_test : 1, sizeof(struct answer));
	return c->multi ? CSA_OK : CSA_ENOMEM;
}

static int argmax(const double *p, size_t n)
{
	int b = 0;
	for (size_t i = 1; i < n; i++)
		if (p[i] > p[b])
			b = (int)i;
	return b;
}

static int run_embedded(struct ev *e, struct cand *c, struct csa_err *err)
{
	struct csa_dmodel *m[CSA_DT_COUNT] = {0};
	struct csa_drow *dr = calloc(e->n_train, sizeof(*dr));
	const char *(*fp)[16] = calloc(e->n_train, sizeof(*fp));
	int rc = dr && fp ? CSA_OK : csa_error(err, CSA_ENOMEM, "out of memory training");
	for (int t = 0; rc == CSA_OK && t < CSA_DT_COUNT; t++) {
		if (!e->types[t])
			continue;
		size_t nr = 0;
		for (size_t i = 0; i < e->n_train; i++) {
			const struct ev_row *r = &e->rows[i];
			if (r->label[t] < 0)
				continue;
			feats_ptrs(r, t, fp[nr]);
			dr[nr] =
			    (struct csa_drow){r->text, fp[nr], r->nf[t], e->labels[t][r->label[t]]};
			nr++;
		}
		rc = csa_dmodel_train(e->labels[t], e->n_labels[t], dr, nr, 5, e->o->seed, &m[t],
		                      NULL, err);
	}
	double probs[MAX_LABELS];
	for (size_t k = 0; rc == CSA_OK && k < e->n_test; k++) {
		const struct ev_row *r = &e->rows[e->n_train + k];
		int64_t t0 = csa_mono_ns();
		for (int t = 0; rc == CSA_OK && t < CSA_DT_COUNT; t++) {
			if (!m[t])
				continue;
			const char *f[16];
			feats_ptrs(r, t, f);
			rc = csa_dmodel_predict(m[t], r->text, f, r->nf[t], probs, err);
			int b = argmax(probs, e->n_labels[t]);
			c->ans[t][0][k] = c->ans[t][1][k] = (struct answer){b, probs[b]};
			if (t == CSA_DT_CATEGORY && rc == CSA_OK &&
			    (rc = csa_dmodel_predict(m[t], r->full, f, r->nf[t], probs, err)) ==
			        CSA_OK) {
				b = argmax(probs, e->n_labels[t]);
				c->multi[k] = (struct answer){b, probs[b]};
			}
		}
		add_latency(c, (double)(csa_mono_ns() - t0) / 1e6);
	}
	for (int t = 0; t < CSA_DT_COUNT; t++)
		csa_dmodel_free(m[t]);
	free(dr);
	free(fp);
	return rc;
}

/* Few-shot examples of a type: the most recent training tickets, one per
 * label first. */
static size_t pick_examples(const struct ev *e, int t, struct csa_llm_example *ex, size_t k)
{
	size_t n = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = e->n_train; i-- > 0 && n < k;) {
			const struct ev_row *r = &e->rows[i];
			if (r->label[t] < 0)
				continue;
			const char *lab = e->labels[t][r->label[t]];
			int taken = 0;
			for (size_t j = 0; j < n; j++)
				taken |= ex[j].text == r->text || (pass == 0 && ex[j].label == lab);
			if (!taken)
				ex[n++] = (struct csa_llm_example){r->text, lab};
		}
	}
	return n;
}

static struct answer ask(struct ev *e, struct cand *c, int t, const char *text,
                         const struct ev_row *r, const struct csa_llm_example *ex, size_t nex,
                         double *cost)
{
	const char *f[16];
	feats_ptrs(r, t, f);
	struct csa_llm_task task = {.dtype = csa_dtype_name((enum csa_dtype)t),
	                            .labels = e->labels[t],
	                            .n_labels = e->n_labels[t],
	                            .text = text,
	                            .feats = f,
	                            .n_feats = r->nf[t],
	                            .examples = ex,
	                            .n_examples = nex};
	struct csa_llm_usage u = {0};
	struct csa_err err = {0};
	int label = -1, lp;
	double conf = 0;
	c->calls++;
	if (csa_llm_classify(c->llm, &task, &label, &conf, &lp, &u, &err)) {
		c->failures++;
		if (json_array_size(c->errors) < 5)
			json_array_append_new(c->errors, json_string(err.msg));
		label = -1;
		conf = 0;
	}
	if (u.attempts)
		add_latency(c, (double)u.latency_ms);
	*cost += u.cost;
	return (struct answer){label, conf};
}

static void run_llm(struct ev *e, struct cand *c)
{
	struct csa_llm_example ex[CSA_DT_COUNT][16];
	size_t nex[CSA_DT_COUNT];
	size_t shots = e->o->shots > 0 ? (size_t)e->o->shots : 3;
	if (shots > 16)
		shots = 16;
	for (int t = 0; t < CSA_DT_COUNT; t++)
		nex[t] = pick_examples(e, t, ex[t], shots);
	for (size_t k = 0; k < e->n_test; k++) {
		const struct ev_row *r = &e->rows[e->n_train + k];
		for (int t = 0; t < CSA_DT_COUNT; t++) {
			if (!e->types[t])
				continue;
			c->ans[t][0][k] = ask(e, c, t, r->text, r, NULL, 0, &c->cost[t][0]);
			c->ans[t][1][k] = ask(e, c, t, r->text, r, ex[t], nex[t], &c->cost[t][1]);
		}
		if (r->turns >= 2 && e->types[CSA_DT_CATEGORY]) {
			double unused = 0;
			c->multi[k] = ask(e, c, CSA_DT_CATEGORY, r->full, r, ex[CSA_DT_CATEGORY],
			                  nex[CSA_DT_CATEGORY], &unused);
		}
	}
}

/* ---- figures ---------------------------------------------------------- */

static double accuracy(const struct ev *e, const struct answer *a, int t, const int *mask)
{
	size_t n = 0, ok = 0;
	for (size_t k = 0; k < e->n_test; k++) {
		const struct ev_row *r = &e->rows[e->n_train + k];
		if (r->label[t] < 0 || (mask && !mask[k]))
			continue;
		n++;
		ok += a[k].pred == r->label[t];
	}
	return n ? (double)ok / (double)n : NAN;
}

static double ece(const struct ev *e, const struct answer *a, int t)
{
	struct csa_pred *p = calloc(e->n_test ? e->n_test : 1, sizeof(*p));
	size_t n = 0;
	for (size_t k = 0; p && k < e->n_test; k++) {
		const struct ev_row *r = &e->rows[e->n_train + k];
		if (r->label[t] >= 0)
			p[n++] = (struct csa_pred){a[k].pred, r->label[t], a[k].conf};
	}
	double v = n ? csa_calib_ece(p, n, ECE_BINS) : NAN;
	free(p);
	return v;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double q)
{
	if (!n)
		return NAN;
	qsort(v, n, sizeof(*v), cmp_double);
	size_t i = (size_t)ceil(q * (double)n);
	return v[i ? i - 1 : 0];
}

static json_t *num_or_null(double v)
{
	return isnan(v) ? json_null() : json_real(round(v * 10000) / 10000);
}

/* Which mode (0 zero-shot, 1 few-shot) a candidate uses for a type. */
static int best_mode(const struct ev *e, const struct cand *c, int t)
{
	if (!c->llm)
		return 0;
	double z = accuracy(e, c->ans[t][0], t, NULL), f = accuracy(e, c->ans[t][1], t, NULL);
	return f > z;
}

/*
 * The cascade threshold for an LLM behind the embedded model on one type:
 * the lowest threshold whose accuracy meets the target (the least LLM
 * traffic, so the least cost), or the most accurate one when none does.
 * NULL when out of memory.
 */
static json_t *cascade_for(const struct ev *e, const struct cand *emb, const struct cand *c, int t,
                           double target)
{
	int m = best_mode(e, c, t);
	double per_ticket = e->n_test ? c->cost[t][m] / (double)e->n_test : 0;
	const struct answer *ea = emb->ans[t][0], *la = c->ans[t][m];
	double best_acc = -1, best_tau = 0, best_share = 0, hit_tau = -1, hit_acc = 0,
	       hit_share = 0;
	size_t nt = 0;
	for (size_t k = 0; k < e->n_test; k++)
		nt += e->rows[e->n_train + k].label[t] >= 0;
	if (!nt)
		return json_null();
	double *cands = malloc((e->n_test + 2) * sizeof(double));
	if (!cands)
		return NULL;
	size_t nc = 0;
	cands[nc++] = 0;
	for (size_t k = 0; k < e->n_test; k++)
		cands[nc++] = ea[k].conf + 1e-12;
	cands[nc++] = 1.01;
	qsort(cands, nc, sizeof(double), cmp_double);
	for (size_t i = 0; i < nc; i++) {
		double tau = cands[i];
		size_t ok = 0, routed = 0;
		for (size_t k = 0; k < e->n_test; k++) {
			int g = e->rows[e->n_train + k].label[t];
			if (g < 0)
				continue;
			int to_llm = ea[k].conf < tau;
			routed += to_llm;
			ok += (to_llm ? la[k].pred : ea[k].pred) == g;
		}
		double acc = (double)ok / (double)nt, share = (double)routed / (double)nt;
		if (acc > best_acc + 1e-12) {
			best_acc = acc;
			best_tau = tau;
			best_share = share;
		}
		if (hit_tau < 0 && acc >= target) {
			hit_tau = tau;
			hit_acc = acc;
			hit_share = share;
		}
	}
	free(cands);
	int met = hit_tau >= 0;
	double tau = met ? hit_tau : best_tau, acc = met ? hit_acc : best_acc,
	       share = met ? hit_share : best_share;
	return json_pack("{s:o, s:o, s:o, s:o, s:b}", "threshold", num_or_null(tau), "accuracy",
	                 num_or_null(acc), "llm_share", num_or_null(share), "cost_per_1000_tickets",
	                 num_or_null(share * per_ticket * 1000), "target_met", met);
}

static json_t *cand_report(const struct ev *e, struct cand *c, const struct cand *emb, double *perf,
                           double *edge, double *cost1k, double *type_acc)
{
	json_t *types = json_object();
	double sum_best = 0, sum_zero = 0, sum_few = 0, sum_ece = 0, cost = 0;
	int nt = 0;
	/* edge cases: rows the embedded model is unsure about */
	int *low = calloc(e->n_test ? e->n_test : 1, sizeof(int));
	size_t edge_n = 0, edge_ok = 0;
	for (int t = 0; t < CSA_DT_COUNT; t++) {
		type_acc[t] = NAN;
		if (!e->types[t])
			continue;
		int m = best_mode(e, c, t);
		double z = accuracy(e, c->ans[t][0], t, NULL),
		       f = accuracy(e, c->ans[t][1], t, NULL);
		double b = m ? f : z, ec = ece(e, c->ans[t][m], t);
		type_acc[t] = b;
		json_object_set_new(types, csa_dtype_name((enum csa_dtype)t),
		                    json_pack("{s:o, s:o, s:o, s:s, s:o}", "zero_shot_accuracy",
		                              num_or_null(z), "few_shot_accuracy", num_or_null(f),
		                              "accuracy", num_or_null(b), "mode",
		                              c->llm ? (m ? "few_shot" : "zero_shot") : "trained",
		                              "ece", num_or_null(ec)));
		sum_best += b;
		sum_zero += z;
		sum_few += f;
		sum_ece += ec;
		cost += e->n_test ? c->cost[t][m] / (double)e->n_test : 0;
		nt++;
		for (size_t k = 0; k < e->n_test; k++) {
			int g = e->rows[e->n_train + k].label[t];
			if (g < 0 || emb->ans[t][0][k].conf >= LOW_CONF)
				continue;
			edge_n++;
			edge_ok += c->ans[t][m][k].pred == g;
		}
	}
	for (size_t k = 0; k < e->n_test; k++)
		low[k] = e->rows[e->n_train + k].turns >= 2;
	double ctx = e->types[CSA_DT_CATEGORY] ? accuracy(e, c->multi, CSA_DT_CATEGORY, low) : NAN;
	free(low);
	*perf = nt ? sum_best / nt : NAN;
	*edge = edge_n ? (double)edge_ok / (double)edge_n : NAN;
	*cost1k = cost * 1000;
	double native = nt ? sum_zero / nt : NAN, prompt = nt ? sum_few / nt : NAN;
	double overall = isnan(ctx) ? (native + prompt) / 2 : (native + prompt + ctx) / 3;
	json_t *r = json_pack(
	    "{s:s, s:s, s:s?, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:I, "
	    "s:I, s:O, s:o}",
	    "backend", c->name, "kind", c->llm ? csa_llm_kind(c->llm) : "embedded", "model",
	    c->llm ? csa_llm_model(c->llm) : NULL, "context_window",
	    c->llm ? json_integer(csa_llm_context_window(c->llm)) : json_null(), "task_performance",
	    num_or_null(*perf), "native_performance", num_or_null(native), "prompt_effectiveness",
	    num_or_null(prompt), "context_retention", num_or_null(ctx), "overall_score",
	    num_or_null(overall), "edge_case_accuracy", num_or_null(*edge), "ece",
	    num_or_null(nt ? sum_ece / nt : NAN), "latency_ms_p50",
	    num_or_null(pct(c->lat, c->n_lat, 0.5)), "latency_ms_p95",
	    num_or_null(pct(c->lat, c->n_lat, 0.95)), "cost_per_1000_tickets", num_or_null(*cost1k),
	    "fine_tuning",
	    c->llm ? "none (prompting; few-shot from history)"
	           : "online (learns from every human decision)",
	    "calls", (json_int_t)c->calls, "failed_calls", (json_int_t)c->failures, "errors",
	    c->errors, "per_type", types);
	return r;
}

/*
 * Roles: primary is the cheapest candidate within 2 points of the best task
 * performance; edge cases the best other LLM on the rows the embedded model
 * is unsure about; secondary the best remaining; specialised one that is
 * best on some decision type; the rest are not selected.
 */
static void assign_roles(struct ev *e, json_t *matrix, const double *perf, const double *edge,
                         const double *cost, double (*type_acc)[CSA_DT_COUNT])
{
	size_t n = e->n_c;
	const char *role[MAX_CANDS] = {0};
	char spec[MAX_CANDS][64];
	double top = -1;
	for (size_t i = 0; i < n; i++)
		if (!isnan(perf[i]) && perf[i] > top)
			top = perf[i];
	int primary = -1;
	for (size_t i = 0; i < n; i++)
		if (!isnan(perf[i]) && perf[i] >= top - 0.02 &&
		    (primary < 0 || cost[i] < cost[primary] ||
		     (cost[i] == cost[primary] && perf[i] > perf[primary])))
			primary = (int)i;
	if (primary >= 0)
		role[primary] = "primary";
	int ed = -1;
	for (size_t i = 0; i < n; i++)
		if (!role[i] && e->c[i].llm && !isnan(edge[i]) && (ed < 0 || edge[i] > edge[ed]))
			ed = (int)i;
	if (ed >= 0)
		role[ed] = "edge cases";
	int sec = -1;
	for (size_t i = 0; i < n; i++)
		if (!role[i] && !isnan(perf[i]) && (sec < 0 || perf[i] > perf[sec]))
			sec = (int)i;
	if (sec >= 0)
		role[sec] = "secondary";
	for (size_t i = 0; i < n; i++) {
		if (role[i])
			continue;
		for (int t = 0; t < CSA_DT_COUNT && !role[i]; t++) {
			if (isnan(type_acc[i][t]))
				continue;
			int best = 1;
			for (size_t j = 0; j < n; j++)
				best &= j == i || isnan(type_acc[j][t]) ||
				        type_acc[j][t] < type_acc[i][t];
			if (best) {
				snprintf(spec[i], sizeof(spec[i]), "specialised (%s)",
				         csa_dtype_name((enum csa_dtype)t));
				role[i] = spec[i];
			}
		}
		if (!role[i])
			role[i] = "not selected";
	}
	for (size_t i = 0; i < n; i++)
		json_object_set_new(json_array_get(matrix, i), "role", json_string(role[i]));
}

static int save_calibration(struct ev *e, struct csa_err *err)
{
	json_t *file = NULL;
	char *old;
	size_t old_len;
	struct csa_err lerr = {0};
	int rc = csa_blobs_get(e->ws->blobs, CSA_LLM_CALIBRATION, 1 << 20, &old, &old_len, &lerr);
	if (rc == CSA_OK) {
		rc = csa_json_parse(old, old_len, CSA_LLM_CALIBRATION, &file, err);
		free(old);
		if (rc)
			return rc;
	} else if (rc == CSA_ENOENT) {
		file = json_object();
	} else {
		return csa_error(err, lerr.code, "%s", lerr.msg);
	}
	for (size_t i = 0; i < e->n_c; i++) {
		struct cand *c = &e->c[i];
		if (!c->llm)
			continue;
		json_t *per = json_object();
		for (int t = 0; t < CSA_DT_COUNT; t++) {
			if (!e->types[t])
				continue;
			struct csa_llm_calib k = {0};
			int m = best_mode(e, c, t);
			for (size_t j = 0; j < e->n_test; j++) {
				int g = e->rows[e->n_train + j].label[t];
				if (g >= 0 && c->ans[t][m][j].pred >= 0)
					csa_llm_calib_add(&k, c->ans[t][m][j].conf,
					                  c->ans[t][m][j].pred == g);
			}
			json_object_set_new(per, csa_dtype_name((enum csa_dtype)t),
			                    csa_llm_calib_json(&k));
		}
		json_object_set_new(file, c->name, per);
	}
	char *text = NULL;
	size_t len = 0;
	rc = csa_json_dump(file, 1, &text, &len, err);
	json_decref(file);
	if (rc == CSA_OK)
		rc = csa_blobs_put(e->ws->blobs, CSA_LLM_CALIBRATION, text, len, err);
	free(text);
	return rc;
}

int csa_eval_models(struct csa_ws *ws, FILE *in, const char *name, const struct csa_evalm_opts *o,
                    json_t **report, struct csa_err *err)
{
	struct ev e = {.ws = ws, .cfg = csa_ws_config(ws), .o = o};
	int rc = CSA_OK;
	for (int t = 0; t < CSA_DT_COUNT; t++) {
		e.n_labels[t] =
		    csa_import_labels(e.cfg, (enum csa_dtype)t, e.labels[t], MAX_LABELS);
		e.types[t] = csa_config_in_list(e.cfg, "automation.decision_types",
		                                csa_dtype_name((enum csa_dtype)t));
	}
	/* candidates first: a typo should not cost a training run */
	const char *p = o->backends ? o->backends : "embedded";
	int have_embedded = 0;
	while (rc == CSA_OK && *p) {
		size_t len = strcspn(p, ",");
		char spec[160];
		if (len == 0 || len >= sizeof(spec) || e.n_c == MAX_CANDS - 1) {
			rc = csa_error(err, CSA_EINVAL,
			               "--backends: bad or too many entries near '%.40s'", p);
			break;
		}
		memcpy(spec, p, len);
		spec[len] = '\0';
		rc = open_cand(&e, spec, &e.c[e.n_c], err);
		if (rc == CSA_OK)
			have_embedded |= e.c[e.n_c++].llm == NULL;
		p += len + (p[len] == ',');
	}
	/* the embedded model is always measured: it is the cascade's first stage */
	if (rc == CSA_OK && !have_embedded)
		rc = open_cand(&e, "embedded", &e.c[e.n_c++], err);
	if (rc == CSA_OK)
		rc = read_rows(&e, in, name, err);
	size_t limit = o->limit ? o->limit : 200;
	if (rc == CSA_OK && e.n < 25)
		rc = csa_error(err, CSA_ESTATE,
		               "%s: %zu tickets; at least 25 are needed (80%% train, 20%% test)",
		               name, e.n);
	if (rc == CSA_OK) {
		e.n_train = e.n * 4 / 5;
		e.n_test = e.n - e.n_train < limit ? e.n - e.n_train : limit;
	}
	for (size_t i = 0; rc == CSA_OK && i < e.n_c; i++)
		if (alloc_answers(&e, &e.c[i]))
			rc = csa_error(err, CSA_ENOMEM, "out of memory");
	struct cand *emb = NULL;
	for (size_t i = 0; rc == CSA_OK && i < e.n_c; i++) {
		if (e.c[i].llm)
			run_llm(&e, &e.c[i]);
		else if ((rc = run_embedded(&e, &e.c[i], err)) == CSA_OK)
			emb = &e.c[i];
	}
	if (rc == CSA_OK) {
		double target = o->target > 0 ? o->target
		                              : csa_json_num(csa_config_get(e.cfg, "automation"),
		                                             "target_accuracy", 0.97);
		json_t *matrix = json_array(), *cascade = json_object();
		double perf[MAX_CANDS], edge[MAX_CANDS], cost[MAX_CANDS],
		    tacc[MAX_CANDS][CSA_DT_COUNT];
		for (size_t i = 0; i < e.n_c; i++)
			json_array_append_new(matrix, cand_report(&e, &e.c[i], emb, &perf[i],
			                                          &edge[i], &cost[i], tacc[i]));
		assign_roles(&e, matrix, perf, edge, cost, tacc);
		for (size_t i = 0; i < e.n_c; i++) {
			if (!e.c[i].llm)
				continue;
			json_t *per = json_object();
			for (int t = 0; per && t < CSA_DT_COUNT; t++) {
				if (!e.types[t])
					continue;
				json_t *cas = cascade_for(&e, emb, &e.c[i], t, target);
				if (!cas || json_object_set_new(per, csa_dtype_name((enum csa_dtype)t),
				                                cas)) {
					json_decref(per);
					per = NULL;
				}
			}
			if (!per || json_object_set_new(cascade, e.c[i].name, per))
				rc = csa_error(err, CSA_ENOMEM,
				               "out of memory choosing the cascade thresholds of '%s'",
				               e.c[i].name);
		}
		*report = json_pack("{s:s, s:I, s:I, s:I, s:f, s:o, s:o}", "data", name, "tickets",
		                    (json_int_t)e.n, "train", (json_int_t)e.n_train, "test",
		                    (json_int_t)e.n_test, "target_accuracy", target, "matrix",
		                    matrix, "cascade", cascade);
		if (rc == CSA_OK && !*report)
			rc = csa_error(err, CSA_ENOMEM, "out of memory writing the report on '%s'", name);
		if (rc == CSA_OK && o->save_calibration && (rc = save_calibration(&e, err)) == CSA_OK)
			json_object_set_new(*report, "calibration_saved",
			                    json_string(CSA_LLM_CALIBRATION));
		if (rc) {
			json_decref(*report);
			*report = NULL;
		}
	}
	for (size_t i = 0; i < e.n_c; i++) {
		struct cand *c = &e.c[i];
		csa_llm_free(c->llm);
		for (int t = 0; t < CSA_DT_COUNT; t++)
			for (int m = 0; m < 2; m++)
				free(c->ans[t][m]);
		free(c->multi);
		free(c->lat);
		json_decref(c->errors);
	}
	for (size_t i = 0; i < e.n; i++) {
		free(e.rows[i].text);
		free(e.rows[i].full);
	}
	free(e.rows);
	csa_config_unref(e.cfg);
	return rc;
}

static void cell(FILE *out, const json_t *v, const char *fmt, int width)
{
	if (json_is_number(v))
		fprintf(out, fmt, width, json_number_value(v));
	else
		fprintf(out, "%*s", width, "-");
}

void csa_eval_models_print(const json_t *r, FILE *out)
{
	fprintf(out, "%s: %lld tickets, %lld train, %lld test\n\n", csa_json_str(r, "data"),
	        csa_json_int(r, "tickets", 0), csa_json_int(r, "train", 0),
	        csa_json_int(r, "test", 0));
	fprintf(out, "%-28s %8s %6s %6s %6s %6s %6s %8s %8s %9s  %-12s %s\n", "backend", "context",
	        "task", "native", "prompt", "ctx", "ECE", "p50 ms", "p95 ms", "cost/1k",
	        "fine-tuning", "role");
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(r, "matrix"), i, m)
	{
		fprintf(out, "%-28.28s ", csa_json_str(m, "backend"));
		cell(out, json_object_get(m, "context_window"), "%*.0f", 8);
		const char *keys[] = {"task_performance", "native_performance",
		                      "prompt_effectiveness", "context_retention", "ece"};
		for (size_t k = 0; k < 5; k++) {
			fputc(' ', out);
			cell(out, json_object_get(m, keys[k]), "%*.3f", 6);
		}
		fputc(' ', out);
		cell(out, json_object_get(m, "latency_ms_p50"), "%*.1f", 8);
		fputc(' ', out);
		cell(out, json_object_get(m, "latency_ms_p95"), "%*.1f", 8);
		fputc(' ', out);
		cell(out, json_object_get(m, "cost_per_1000_tickets"), "%*.3f", 9);
		const char *ft = csa_json_str(m, "fine_tuning");
		fprintf(out, "  %-12.*s %s\n", (int)strcspn(ft, " "), ft, csa_json_str(m, "role"));
	}
	const char *name;
	json_t *per;
	json_object_foreach(json_object_get(r, "cascade"), name, per)
	{
		fprintf(out, "\ncascade embedded -> %s (target accuracy %.3f):\n", name,
		        csa_json_num(r, "target_accuracy", 0));
		const char *type;
		json_t *c;
		json_object_foreach(per, type, c)
		{
			fprintf(
			    out,
			    "  %-11s threshold %.3f  accuracy %.3f  to LLM %5.1f%%  cost/1k "
			    "%.3f%s\n",
			    type, csa_json_num(c, "threshold", 0), csa_json_num(c, "accuracy", 0),
			    100 * csa_json_num(c, "llm_share", 0),
			    csa_json_num(c, "cost_per_1000_tickets", 0),
			    json_is_true(json_object_get(c, "target_met")) ? ""
			                                                   : "  (target not met)");
		}
	}
}
