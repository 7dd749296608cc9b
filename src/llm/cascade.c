/* The cascade: when to ask an LLM, the budget, calibration, and traces. */
#include "llm/cascade.h"
#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"
#include "llm/backend.h"
#include "llm/calllog.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BACKENDS 16
#define DAY_MS       86400000LL
#define HOUR_MS      3600000LL

/* The agents that may ask an LLM (csa.json llm.agents). */
static const char *const agents[] = {"classifier", "selector", "escalation", "replies"};
#define N_AGENTS 4
#define REPLIES  3

struct csa_cascade {
	struct csa_llm *backends[MAX_BACKENDS];
	size_t n_backends;
	struct csa_llm *for_agent[N_AGENTS]; /* borrowed from backends[] */
	double threshold, money_per_day, uncal_max;
	long calls_per_hour;
	json_t *calib; /* models/llm-calibration.json, or NULL */

	pthread_mutex_t mu; /* in-flight reservations, unrecorded calls */
	struct csa_call_log *log;
	int inflight;
	double inflight_cost;
	/* calls the log could not take: still counted against the budget */
	long unrecorded;
	double unrecorded_cost;
};

/* ---- calibration ------------------------------------------------------ */

static int bin_of(double raw)
{
	int b = (int)floor(raw * 10);
	return b < 0 ? 0 : b > 9 ? 9 : b;
}

void csa_llm_calib_add(struct csa_llm_calib *k, double raw, int correct)
{
	int b = bin_of(raw);
	k->n[b]++;
	k->correct[b] += correct != 0;
}

/* The bin's accuracy with add-one smoothing; an empty bin borrows the
 * overall accuracy. */
double csa_llm_calib_apply(const struct csa_llm_calib *k, double raw)
{
	int b = bin_of(raw);
	if (k->n[b])
		return (double)(k->correct[b] + 1) / (double)(k->n[b] + 2);
	long n = 0, c = 0;
	for (int i = 0; i < 10; i++) {
		n += k->n[i];
		c += k->correct[i];
	}
	return (double)(c + 1) / (double)(n + 2);
}

json_t *csa_llm_calib_json(const struct csa_llm_calib *k)
{
	json_t *bins = json_array();
	for (int i = 0; i < 10; i++)
		json_array_append_new(
		    bins, json_pack("[I, I]", (json_int_t)k->n[i], (json_int_t)k->correct[i]));
	return json_pack("{s:o}", "bins", bins);
}

int csa_llm_calib_parse(const json_t *j, struct csa_llm_calib *k)
{
	json_t *bins = json_object_get(j, "bins");
	memset(k, 0, sizeof(*k));
	if (json_array_size(bins) != 10)
		return CSA_EINVAL;
	for (int i = 0; i < 10; i++) {
		json_t *b = json_array_get(bins, (size_t)i);
		json_int_t n = json_integer_value(json_array_get(b, 0)),
		           c = json_integer_value(json_array_get(b, 1));
		if (n < 0 || c < 0 || c > n)
			return CSA_EINVAL;
		k->n[i] = (long)n;
		k->correct[i] = (long)c;
	}
	return CSA_OK;
}

/* ---- opening ---------------------------------------------------------- */

static int agent_index(const char *agent)
{
	for (int i = 0; i < N_AGENTS; i++)
		if (strcmp(agents[i], agent) == 0)
			return i;
	return -1;
}

static struct csa_llm *find(struct csa_cascade *c, const char *name)
{
	for (size_t i = 0; i < c->n_backends; i++)
		if (strcmp(csa_llm_name(c->backends[i]), name) == 0)
			return c->backends[i];
	return NULL;
}

static int bind_agent(struct csa_cascade *c, const json_t *conf, const char *agent,
                      struct csa_llm **slot, struct csa_err *err)
{
	json_t *v = json_object_get(conf, agent);
	if (!v || json_is_null(v))
		return CSA_OK;
	if (!json_is_string(v) || !(*slot = find(c, json_string_value(v))))
		return csa_error(err, CSA_EINVAL,
		                 "csa.json: llm.agents.%s: expected the name of a backend in "
		                 "llm.backends",
		                 agent);
	return CSA_OK;
}

static double cfg_num(const struct csa_config *cfg, const char *key, double dflt)
{
	json_t *v = csa_config_get(cfg, key);
	return json_is_number(v) ? json_number_value(v) : dflt;
}

int csa_cascade_open(const struct csa_config *cfg, struct csa_blobs *docs, struct csa_pg *pg,
                     const char *ws_root, struct csa_cascade **out, struct csa_err *err)
{
	*out = NULL;
	json_t *conf = csa_config_get(cfg, "llm.agents");
	json_t *defs = csa_config_get(cfg, "llm.backends");
	if (!json_object_size(conf))
		return CSA_OK;
	const char *key;
	json_t *v;
	json_object_foreach(conf, key, v)
	{
		if (agent_index(key) < 0)
			return csa_error(
			    err, CSA_EINVAL,
			    "csa.json: llm.agents.%s: unknown agent (classifier, selector, "
			    "escalation, replies)",
			    key);
	}
	if (!json_is_object(defs))
		return csa_error(err, CSA_EINVAL, "csa.json: llm.backends: expected an object");
	struct csa_cascade *c = calloc(1, sizeof(*c));
	if (!c)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the LLM cascade");
	pthread_mutex_init(&c->mu, NULL);
	int rc = CSA_OK;
	const char *name;
	json_t *def;
	json_object_foreach(defs, name, def)
	{
		if (c->n_backends == MAX_BACKENDS) {
			rc = csa_error(err, CSA_ELIMIT, "csa.json: more than %d llm.backends",
			               MAX_BACKENDS);
			goto fail;
		}
		if ((rc = csa_llm_open(name, def, &c->backends[c->n_backends], err)))
			goto fail;
		c->n_backends++;
	}
	for (int i = 0; i < N_AGENTS; i++)
		if ((rc = bind_agent(c, conf, agents[i], &c->for_agent[i], err)))
			goto fail;
	c->threshold = cfg_num(cfg, "llm.cascade.threshold", 0.8);
	c->calls_per_hour = (long)cfg_num(cfg, "llm.cascade.calls_per_hour", 600);
	c->money_per_day = cfg_num(cfg, "llm.cascade.money_per_day", 5.0);
	c->uncal_max = cfg_num(cfg, "llm.cascade.uncalibrated_max_confidence", 0.6);
	char *text;
	size_t len;
	struct csa_err cerr = {0};
	rc = csa_blobs_get(docs, CSA_LLM_CALIBRATION, 1 << 20, &text, &len, &cerr);
	if (rc == CSA_OK) {
		rc = csa_json_parse(text, len, CSA_LLM_CALIBRATION, &c->calib, err);
		free(text);
	} else if (rc == CSA_ENOENT) {
		rc = CSA_OK;
	} else {
		csa_error(err, cerr.code, "%s", cerr.msg);
	}
	if (rc || (rc = pg ? csa_call_log_open_pg(pg, &c->log, err)
	                   : csa_call_log_open(ws_root, &c->log, err)))
		goto fail;
	*out = c;
	return CSA_OK;
fail:
	csa_cascade_free(c);
	return rc;
}

void csa_cascade_free(struct csa_cascade *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_backends; i++)
		csa_llm_free(c->backends[i]);
	json_decref(c->calib);
	csa_call_log_close(c->log);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

/* ---- budget ----------------------------------------------------------- */

/* Calls in the last hour and money spent today, with the calls the log
 * could not take. Caller holds c->mu. */
static int spent(struct csa_cascade *c, int64_t now, long *calls_hour, double *cost_day,
                 struct csa_err *err)
{
	*calls_hour = 0;
	*cost_day = 0;
	int rc = csa_call_log_spent(c->log, now - HOUR_MS, now - now % DAY_MS, calls_hour, cost_day,
	                            err);
	*calls_hour += c->unrecorded;
	*cost_day += c->unrecorded_cost;
	return rc;
}

/* Reserve one call costing at most 'bound'; NULL when allowed, else why
 * not. A budget that cannot be read allows nothing. */
static const char *reserve(struct csa_cascade *c, double bound)
{
	const char *why = NULL;
	pthread_mutex_lock(&c->mu);
	long calls;
	double cost;
	if (spent(c, csa_now_ms(), &calls, &cost, NULL))
		why = "budget_unreadable";
	else if (calls + c->inflight >= c->calls_per_hour)
		why = "budget_calls_per_hour";
	else if (cost + c->inflight_cost + bound > c->money_per_day)
		why = "budget_money_per_day";
	else {
		c->inflight++;
		c->inflight_cost += bound;
	}
	pthread_mutex_unlock(&c->mu);
	return why;
}

static void settle(struct csa_cascade *c, struct csa_llm *b, const char *purpose, double bound,
                   const struct csa_llm_usage *u, int ok)
{
	struct csa_llm_call call = {csa_now_ms(),  csa_llm_name(b), purpose,       u->tokens_in,
	                            u->tokens_out, u->cost,         u->latency_ms, ok};
	/* outside the lock: the log serialises its own writers */
	int failed = u->attempts > 0 && csa_call_log_record(c->log, &call, NULL) != CSA_OK;
	pthread_mutex_lock(&c->mu);
	c->inflight--;
	c->inflight_cost -= bound;
	if (failed) {
		c->unrecorded++;
		c->unrecorded_cost += u->cost;
	}
	pthread_mutex_unlock(&c->mu);
}

json_t *csa_cascade_usage(struct csa_cascade *c)
{
	long calls = 0;
	double cost = 0;
	int64_t now = csa_now_ms();
	json_t *per = NULL;
	struct csa_err err = {0};
	pthread_mutex_lock(&c->mu);
	int rc = spent(c, now, &calls, &cost, &err);
	long unrecorded = c->unrecorded;
	pthread_mutex_unlock(&c->mu);
	if (rc == CSA_OK)
		rc = csa_call_log_by_backend(c->log, now - now % DAY_MS, &per, &err);
	json_t *out =
	    json_pack("{s:I, s:f, s:I, s:f, s:o, s:I}", "calls_last_hour", (json_int_t)calls,
	              "cost_today", cost, "calls_per_hour", (json_int_t)c->calls_per_hour,
	              "money_per_day", c->money_per_day, "today_by_backend",
	              per ? per : json_object(), "unrecorded_calls", (json_int_t)unrecorded);
	if (rc && out)
		json_object_set_new(out, "error", json_string(err.msg));
	return out;
}

/* ---- decisions -------------------------------------------------------- */

static json_t *usage_json(const struct csa_llm_usage *u)
{
	return json_pack("{s:I, s:I, s:f, s:I, s:i, s:I}", "tokens_in", (json_int_t)u->tokens_in,
	                 "tokens_out", (json_int_t)u->tokens_out, "cost", u->cost, "latency_ms",
	                 (json_int_t)u->latency_ms, "attempts", u->attempts, "redactions",
	                 (json_int_t)u->redactions);
}

/* The LLM's stated confidence, calibrated on history when we can. */
static double calibrated(struct csa_cascade *c, struct csa_llm *b, const char *type, double raw,
                         int from_logprobs, const char **source)
{
	struct csa_llm_calib k;
	json_t *j = json_object_get(json_object_get(c->calib, csa_llm_name(b)), type);
	if (j && csa_llm_calib_parse(j, &k) == CSA_OK) {
		*source = from_logprobs ? "logprobs+history" : "history";
		return csa_llm_calib_apply(&k, raw);
	}
	if (from_logprobs) {
		*source = "logprobs";
		return raw;
	}
	*source = "uncalibrated";
	return raw < c->uncal_max ? raw : c->uncal_max;
}

json_t *csa_cascade_refine(struct csa_cascade *c, const char *agent, const char *type,
                           const char *const *labels, size_t n, const char *text,
                           const char *const *feats, size_t nf, double *probs)
{
	int a = agent_index(agent);
	struct csa_llm *b = c && a >= 0 && a != REPLIES ? c->for_agent[a] : NULL;
	if (!b || n == 0)
		return NULL;
	size_t best = 0;
	for (size_t i = 1; i < n; i++)
		if (probs[i] > probs[best])
			best = i;
	json_t *tr = json_pack("{s:s, s:s, s:{s:s, s:f}}", "decided_by", "embedded", "backend",
	                       csa_llm_name(b), "embedded", "label", labels[best], "confidence",
	                       probs[best]);
	const char *why = NULL;
	if (probs[best] >= c->threshold)
		why = "embedded_confident";
	else if (!csa_llm_available(b))
		why = "circuit_open";
	double bound = csa_llm_cost_bound(b, strlen(text) + 2048);
	if (!why && (why = reserve(c, bound)) == NULL) {
		struct csa_llm_task task = {.dtype = type,
		                            .labels = labels,
		                            .n_labels = n,
		                            .text = text,
		                            .feats = feats,
		                            .n_feats = nf};
		struct csa_llm_usage u = {0};
		struct csa_err err = {0};
		int label = -1, from_lp = 0;
		double raw = 0;
		int rc = csa_llm_classify(b, &task, &label, &raw, &from_lp, &u, &err);
		settle(c, b, type, bound, &u, rc == CSA_OK);
		json_object_set_new(tr, "usage", usage_json(&u));
		if (rc) {
			why = "llm_failed";
			json_object_set_new(tr, "error", json_string(err.msg));
		} else {
			const char *src;
			double q = calibrated(c, b, type, raw, from_lp, &src);
			double rest = 1 - probs[label];
			for (size_t i = 0; i < n; i++)
				probs[i] = (int)i == label ? q
				           : rest > 1e-12  ? (1 - q) * probs[i] / rest
				                           : (1 - q) / (double)(n > 1 ? n - 1 : 1);
			char ver[300];
			snprintf(ver, sizeof(ver), "llm:%s:%s", csa_llm_name(b), csa_llm_model(b));
			json_object_set_new(tr, "decided_by", json_string("llm"));
			json_object_set_new(tr, "model_version", json_string(ver));
			json_object_set_new(
			    tr, "llm",
			    json_pack("{s:s, s:f, s:f, s:s}", "label", labels[label], "confidence",
			              q, "raw_confidence", raw, "confidence_source", src));
			why = "embedded_unsure";
		}
	}
	json_object_set_new(tr, "reason", json_string(why));
	return tr;
}

/* One call of the replies backend: fn makes it with b. */
typedef int (*replies_fn)(struct csa_llm *b, void *ctx, struct csa_llm_usage *u,
                          struct csa_err *err);

/*
 * A call of the replies backend for 'purpose' (as the call log names it)
 * within the circuit and the budget (a prompt of about 'prompt_bytes').
 * Returns 1 when fn succeeded; 0 when there is no replies backend
 * (*trace NULL), the call was not made or failed (*trace, new, says
 * {"backend", "usage", "reason", "error"}).
 */
static int replies_call(struct csa_cascade *c, const char *purpose, size_t prompt_bytes,
                        replies_fn fn, void *ctx, json_t **trace)
{
	*trace = NULL;
	struct csa_llm *b = c ? c->for_agent[REPLIES] : NULL;
	if (!b)
		return 0;
	*trace = json_pack("{s:s}", "backend", csa_llm_name(b));
	const char *why = NULL;
	double bound = csa_llm_cost_bound(b, prompt_bytes + 2048);
	if (!csa_llm_available(b))
		why = "circuit_open";
	else if ((why = reserve(c, bound)) == NULL) {
		struct csa_llm_usage u = {0};
		struct csa_err err = {0};
		int rc = fn(b, ctx, &u, &err);
		settle(c, b, purpose, bound, &u, rc == CSA_OK);
		json_object_set_new(*trace, "usage", usage_json(&u));
		if (rc == CSA_OK)
			return 1;
		why = "llm_failed";
		json_object_set_new(*trace, "error", json_string(err.msg));
	}
	json_object_set_new(*trace, "reason", json_string(why));
	return 0;
}

struct draft_call {
	const char *article, *conversation;
	char *reply;
};

static int draft_fn(struct csa_llm *b, void *ctx, struct csa_llm_usage *u, struct csa_err *err)
{
	struct draft_call *d = ctx;
	return csa_llm_draft(b, d->article, d->conversation, &d->reply, u, err);
}

char *csa_cascade_draft(struct csa_cascade *c, const char *article, const char *conversation,
                        json_t **trace)
{
	struct draft_call d = {article, conversation, NULL};
	replies_call(c, "reply", strlen(article) + strlen(conversation), draft_fn, &d, trace);
	return d.reply;
}

struct knowledge_call {
	const char *ticket;
	const struct csa_llm_knowledge_limits *lim;
	json_t *out;
};

static int knowledge_fn(struct csa_llm *b, void *ctx, struct csa_llm_usage *u, struct csa_err *err)
{
	struct knowledge_call *k = ctx;
	return csa_llm_knowledge(b, k->ticket, k->lim, &k->out, u, err);
}

json_t *csa_cascade_knowledge(struct csa_cascade *c, const char *ticket,
                              const struct csa_llm_knowledge_limits *lim, json_t **trace)
{
	struct knowledge_call k = {ticket, lim, NULL};
	if (!replies_call(c, "knowledge", strlen(ticket), knowledge_fn, &k, trace))
		return NULL;
	char ver[300];
	snprintf(ver, sizeof(ver), "llm:%s:%s", csa_llm_name(c->for_agent[REPLIES]),
	         csa_llm_model(c->for_agent[REPLIES]));
	json_object_set_new(*trace, "model_version", json_string(ver));
	return k.out;
}
