/* The agent coordinator. */
#include "flow/pipeline.h"
#include "agents/capacity.h"
#include "agents/histfile.h"
#include "agents/history.h"
#include "agents/kb.h"
#include "agents/sentiment.h"
#include "base/digest.h"
#include "base/hash.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/learning.h"
#include "flow/lifecycle.h"
#include "flow/online.h"
#include "llm/cascade.h"
#include "sla/sla.h"
#include "store/blobs.h"
#include "store/learnlog.h"
#include "store/ticket.h"
#include "store/ws.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TEXT_MAX 4000

struct csa_pipeline {
	/* runs hold it shared; swapping the models takes it exclusively */
	pthread_rwlock_t models_lock;
	struct csa_ws *ws;
	struct csa_agent_env env;
	struct csa_history *history;
	struct csa_capacity *capacity; /* the team's load, workspace-wide */
	/* the index was loaded ticket by ticket (not by the file's position):
	 * save it, with the position that lets the next start skip that */
	int history_stale;
	uint64_t history_puts; /* csa_history_puts after the load: save when moved */
	int history_loaded;    /* a failed open saves no part of an index */
	/* after a load by position, the entries are checked against the files
	 * on a thread of their own (csa_history_verify), which stops with the
	 * pipeline */
	pthread_t verify_th;
	int verify_running;
	atomic_int verify_stop;
	struct csa_flow_hooks hooks;
	csa_run_observer observer;
	void *observer_ctx;
	/* the knowledge base's documents as loaded (kb_signature), checked
	 * again at most once a second (kb_checked_ns, monotonic); kb_mu lets
	 * one thread at a time reload */
	pthread_mutex_t kb_mu;
	uint64_t kb_sig;
	_Atomic int64_t kb_checked_ns;
	/* the decision models' documents as loaded (models_signature), checked
	 * the same way: a retraining or a rollback by another process, or
	 * another node of the database, is taken up between runs (under
	 * kb_mu, one reload at a time) */
	_Atomic uint64_t models_sig;
	_Atomic int64_t models_checked_ns;
	/* Online learning shared through the workspace's log (flow/online.h;
	 * none in a scratch workspace, whose models learn in memory): the
	 * position up to which each model has applied the log, checked for
	 * new entries at most once a second (online_checked_ns) and right
	 * after this pipeline appends one. online_mu: one thread applies at
	 * a time; taken before models_lock, never while holding it. */
	pthread_mutex_t online_mu;
	int64_t online_at[CSA_DT_COUNT];
	_Atomic int64_t online_checked_ns;
};

/* The names and versions of the knowledge base's documents (kb/), as one
 * number: it changes when an article is added, replaced or removed
 * (csa kb accept, an edit). 0 when they cannot be listed. */
static uint64_t kb_signature(struct csa_blobs *b)
{
	json_t *names = NULL;
	if (csa_blobs_list(b, "kb", &names, NULL))
		return 0;
	uint64_t h = CSA_FNV_SEED;
	size_t i;
	json_t *n;
	json_array_foreach(names, i, n)
	{
		char doc[256];
		snprintf(doc, sizeof(doc), "kb/%s", json_string_value(n));
		uint64_t v = csa_blobs_version(b, doc);
		h = csa_fnv1a_str(h, doc);
		h = csa_fnv1a(h, &v, sizeof(v));
	}
	json_decref(names);
	return h ? h : 1;
}

/* Whether a check last made at *checked (monotonic ns) is due again, at
 * most once a second; the one thread told so takes the turn. */
static int check_due(_Atomic int64_t *checked)
{
	int64_t now = csa_mono_ns(), last = atomic_load(checked);
	return now - last >= 1000000000LL && atomic_compare_exchange_strong(checked, &last, now);
}

/* The versions of the decision models' documents, as one number: the
 * models and the positions of the online-learning log they cover
 * (flow/online.h), written one after the other by a retraining: a reload
 * between the two is followed by another. */
static uint64_t models_signature(struct csa_blobs *b)
{
	uint64_t h = CSA_FNV_SEED;
	for (int t = 0; t < CSA_DT_COUNT; t++) {
		static const char *const kinds[] = {"model", "online.json"};
		for (int k = 0; k < 2; k++) {
			char doc[96];
			snprintf(doc, sizeof(doc), "models/%s.%s",
			         csa_dtype_name((enum csa_dtype)t), kinds[k]);
			uint64_t v = csa_blobs_version(b, doc);
			h = csa_fnv1a(h, &v, sizeof(v));
		}
	}
	return h;
}

/* Models just loaded (not yet seen by any run) take the log's entries
 * above the positions their saves cover, into at[]. CSA_OK when the
 * positions are known, even when applying stopped early: at[] says how
 * far it went and the next catch-up goes on from there. */
static int online_start(struct csa_pipeline *p, struct csa_dmodel *models[CSA_DT_COUNT],
                        int64_t at[CSA_DT_COUNT], struct csa_err *err)
{
	for (int t = 0; t < CSA_DT_COUNT; t++) {
		int rc =
		    csa_online_base(p->ws->blobs, p->ws->learnlog, (enum csa_dtype)t, &at[t], err);
		if (rc)
			return rc;
	}
	struct csa_err aerr = {0};
	if (csa_online_apply(p->ws->learnlog, models, at, NULL, &aerr))
		fprintf(stderr, "csa: the models have not taken every correction yet: %s\n",
		        aerr.msg);
	return CSA_OK;
}

/* Apply what the log holds beyond this pipeline's models. */
static int online_catch_up(struct csa_pipeline *p, struct csa_err *err)
{
	pthread_mutex_lock(&p->online_mu);
	pthread_rwlock_rdlock(&p->models_lock);
	int rc = csa_online_apply(p->ws->learnlog, p->env.models, p->online_at, NULL, err);
	pthread_rwlock_unlock(&p->models_lock);
	pthread_mutex_unlock(&p->online_mu);
	return rc;
}

/* Take up corrections other processes or nodes taught since the last
 * look, at most once a second; a log that cannot be read now is read
 * from the same place next time. */
static void refresh_online(struct csa_pipeline *p)
{
	if (p->ws->learnlog && check_due(&p->online_checked_ns))
		(void)online_catch_up(p, NULL);
}

/* Take up models another process or node saved since they were loaded
 * (csa train, a rollback, a replay's retraining in its own workspace is
 * not one: a scratch workspace reloads only when told), at most once a
 * second. The corrections taught since the save are applied again on
 * top, from the online-learning log (flow/online.h); in a scratch
 * workspace a reload replaces what the models learned in memory with
 * what was saved, which a retraining already learned from the same
 * decisions. */
static void refresh_models(struct csa_pipeline *p)
{
	if (p->ws->scratch || !check_due(&p->models_checked_ns))
		return;
	pthread_mutex_lock(&p->kb_mu);
	if (models_signature(p->ws->blobs) != atomic_load(&p->models_sig))
		(void)csa_pipeline_reload_models(p, NULL); /* the old ones stay on failure */
	pthread_mutex_unlock(&p->kb_mu);
}

/* Take up articles accepted since the knowledge base was loaded: when its
 * documents changed, a fresh index replaces the old one between runs
 * (swapped under the models lock, as models are). At most once a second;
 * a knowledge base that no longer loads leaves the old one in place. */
static void refresh_kb(struct csa_pipeline *p)
{
	if (!check_due(&p->kb_checked_ns))
		return;
	pthread_mutex_lock(&p->kb_mu);
	uint64_t sig = kb_signature(p->ws->blobs);
	struct csa_kb *fresh = NULL;
	if (sig && sig != p->kb_sig && csa_kb_open(p->ws->blobs, &fresh, NULL) == CSA_OK) {
		pthread_rwlock_wrlock(&p->models_lock);
		struct csa_kb *old = p->env.kb;
		p->env.kb = fresh;
		pthread_rwlock_unlock(&p->models_lock);
		csa_kb_free(old);
		p->kb_sig = sig;
	}
	pthread_mutex_unlock(&p->kb_mu);
}

void csa_pipeline_set_observer(struct csa_pipeline *p, csa_run_observer fn, void *ctx)
{
	p->observer = fn;
	p->observer_ctx = ctx;
}

const struct csa_agent_env *csa_pipeline_env(const struct csa_pipeline *p)
{
	return &p->env;
}

struct csa_ws *csa_pipeline_ws(const struct csa_pipeline *p)
{
	return p->ws;
}

struct csa_history *csa_pipeline_history(struct csa_pipeline *p)
{
	return p->history;
}

struct csa_capacity *csa_pipeline_capacity(struct csa_pipeline *p)
{
	return p->capacity;
}

void csa_pipeline_set_hooks(struct csa_pipeline *p, const struct csa_flow_hooks *h)
{
	p->hooks = h ? *h : (struct csa_flow_hooks){0};
}

static void *verify_main(void *arg)
{
	struct csa_pipeline *p = arg;
	struct csa_err err = {0};
	size_t reread = 0;
	if (csa_history_verify(p->history, p->ws, 1, &p->verify_stop, &reread, &err))
		fprintf(stderr, "csa: checking the history index: %s\n", err.msg);
	return NULL;
}

int csa_pipeline_open(struct csa_ws *ws, struct csa_pipeline **out, struct csa_err *err)
{
	struct csa_pipeline *p = calloc(1, sizeof(*p));
	if (!p)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the pipeline");
	p->ws = ws;
	pthread_rwlock_init(&p->models_lock, NULL);
	pthread_mutex_init(&p->kb_mu, NULL);
	pthread_mutex_init(&p->online_mu, NULL);
	int rc = CSA_OK;
	uint64_t sig = models_signature(ws->blobs);
	for (int t = 0; t < CSA_DT_COUNT; t++) {
		rc = csa_dmodel_load(ws->blobs, (enum csa_dtype)t, &p->env.models[t], err);
		if (rc == CSA_ENOENT)
			rc = CSA_OK; /* untrained: that agent defers to humans */
		if (rc)
			goto fail;
	}
	/* the corrections taught since the models were saved, by any
	 * process: a restarted node learns them again */
	if (ws->learnlog && (rc = online_start(p, p->env.models, p->online_at, err)))
		goto fail;
	atomic_store(&p->models_sig, sig);
	atomic_init(&p->online_checked_ns, csa_mono_ns());
	atomic_store(&p->models_checked_ns, csa_mono_ns());
	/* a new workspace's default articles (store/ws.h: CSA_WS_KB_SEED) */
	if ((rc = csa_kb_seed(ws->blobs, ws->root, err)))
		goto fail;
	atomic_init(&p->kb_checked_ns, csa_mono_ns());
	p->kb_sig = kb_signature(ws->blobs);
	if ((rc = csa_kb_open(ws->blobs, &p->env.kb, err)))
		goto fail;
	if ((rc = csa_history_new(&p->history)))
		goto fail;
	p->env.history = p->history;
	/* before the index is filled: see agents/capacity.h */
	if ((rc = csa_capacity_open(ws, p->history, &p->capacity, err)))
		goto fail;
	size_t reused = 0;
	int by_position = 0;
	if ((rc = csa_history_load(p->history, ws, &reused, &by_position, err)))
		goto fail;
	p->history_loaded = 1;
	p->history_stale = !by_position;
	p->history_puts = csa_history_puts(p->history);
	atomic_init(&p->verify_stop, 0);
	/* one thread: it finds what no commit reports (a file edited in place
	 * by hand) and must not slow the requests that start meanwhile */
	if (by_position && pthread_create(&p->verify_th, NULL, verify_main, p) == 0)
		p->verify_running = 1;
	const struct csa_config *cfg = csa_ws_config(ws);
	rc = csa_cascade_open(cfg, ws->blobs, ws->pg, ws->root, &p->env.cascade, err);
	csa_config_unref(cfg);
	if (rc)
		goto fail;
	*out = p;
	return CSA_OK;
fail:
	csa_pipeline_free(p);
	return rc ? rc : CSA_ENOMEM;
}

int csa_pipeline_reload_models(struct csa_pipeline *p, struct csa_err *err)
{
	struct csa_dmodel *fresh[CSA_DT_COUNT] = {0};
	/* noted before the loads: a save during them is taken up next time */
	uint64_t sig = models_signature(p->ws->blobs);
	for (int t = 0; t < CSA_DT_COUNT; t++) {
		int rc = csa_dmodel_load(p->ws->blobs, (enum csa_dtype)t, &fresh[t], err);
		if (rc && rc != CSA_ENOENT) {
			for (int k = 0; k < t; k++)
				csa_dmodel_free(fresh[k]);
			return rc;
		}
	}
	/* the fresh models take the corrections their saves do not cover
	 * before any run sees them; online_mu keeps a catch-up from applying
	 * to the old ones meanwhile with positions about to be replaced */
	int64_t at[CSA_DT_COUNT] = {0};
	if (p->ws->learnlog) {
		pthread_mutex_lock(&p->online_mu);
		int rc = online_start(p, fresh, at, err);
		if (rc) {
			pthread_mutex_unlock(&p->online_mu);
			for (int t = 0; t < CSA_DT_COUNT; t++)
				csa_dmodel_free(fresh[t]);
			return rc;
		}
	}
	pthread_rwlock_wrlock(&p->models_lock);
	for (int t = 0; t < CSA_DT_COUNT; t++) {
		csa_dmodel_free(p->env.models[t]);
		p->env.models[t] = fresh[t];
	}
	memcpy(p->online_at, at, sizeof(at));
	atomic_store(&p->models_sig, sig);
	pthread_rwlock_unlock(&p->models_lock);
	if (p->ws->learnlog)
		pthread_mutex_unlock(&p->online_mu);
	return CSA_OK;
}

void csa_pipeline_free(struct csa_pipeline *p)
{
	if (!p)
		return;
	for (int t = 0; t < CSA_DT_COUNT; t++)
		csa_dmodel_free(p->env.models[t]);
	if (p->verify_running) {
		atomic_store(&p->verify_stop, 1);
		pthread_join(p->verify_th, NULL);
	}
	/* best effort: without the file the next start reads every ticket;
	 * when it was loaded by its position and nothing changed since, it is
	 * still right as it is */
	if (p->history && p->history_loaded &&
	    (p->history_stale || csa_history_puts(p->history) != p->history_puts))
		(void)csa_history_save(p->history, p->ws, NULL);
	csa_capacity_free(p->capacity);
	csa_history_free(p->history);
	csa_kb_free(p->env.kb);
	pthread_mutex_destroy(&p->kb_mu);
	pthread_mutex_destroy(&p->online_mu);
	csa_cascade_free(p->env.cascade);
	pthread_rwlock_destroy(&p->models_lock);
	free(p);
}

/* ---- context manager ------------------------------------------------- */

char *csa_pipeline_text(const json_t *e, size_t max, int until_first_reply)
{
	size_t cap = 256, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		return NULL;
	buf[0] = '\0';
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(e, "messages"), i, m)
	{
		const char *sender = csa_json_str(m, "sender");
		if (sender && strcmp(sender, "cs_agent") == 0 && until_first_reply)
			break;
		if (!sender || strcmp(sender, "customer") != 0)
			continue;
		const char *c = csa_json_str(m, "content");
		size_t n = c ? strlen(c) : 0;
		if (len + n + 2 > cap) {
			while (len + n + 2 > cap)
				cap *= 2;
			char *nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				return NULL;
			}
			buf = nb;
		}
		if (len)
			buf[len++] = '\n';
		memcpy(buf + len, c, n);
		len += n;
		buf[len] = '\0';
	}
	if (len > max) {
		/* keep the newest 'max' bytes, starting on a UTF-8 boundary */
		size_t start = len - max;
		while (start < len && ((unsigned char)buf[start] & 0xC0) == 0x80)
			start++;
		memmove(buf, buf + start, len - start + 1);
	}
	return buf;
}

/* Score every customer message that has no sentiment yet; returns the mean
 * score of the customer's messages. */
static double fill_sentiment(json_t *e)
{
	double sum = 0;
	int n = 0;
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(e, "messages"), i, m)
	{
		const char *sender = csa_json_str(m, "sender");
		if (!sender || strcmp(sender, "customer") != 0)
			continue;
		json_t *sa = json_object_get(m, "sentiment_analysis");
		if (!json_is_number(json_object_get(sa, "score"))) {
			struct csa_sentiment s;
			const char *c = csa_json_str(m, "content");
			csa_sentiment_analyze(c ? c : "", c ? strlen(c) : 0, &s);
			json_t *kw = json_array();
			for (size_t k = 0; k < s.n_keywords; k++)
				json_array_append_new(kw, json_string(s.keywords[k]));
			json_object_set_new(m, "sentiment_analysis",
			                    json_pack("{s:f, s:f, s:o}", "score", s.score,
			                              "confidence", s.confidence, "keywords", kw));
			sa = json_object_get(m, "sentiment_analysis");
		}
		sum += csa_json_num(sa, "score", 0);
		n++;
	}
	return n ? sum / n : 0;
}

/* The sentiment feature of a decision: of the decision text as a whole,
 * exactly as history import computes it for training. */
static double text_sentiment(const char *text)
{
	struct csa_sentiment s;
	csa_sentiment_analyze(text, strlen(text), &s);
	return s.score;
}

static int count_agent_replies(const json_t *e)
{
	int n = 0;
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(e, "messages"), i, m)
	{
		const char *s = csa_json_str(m, "sender");
		n += s && strcmp(s, "cs_agent") == 0;
	}
	return n;
}

/* ---- one run --------------------------------------------------------- */

static const enum csa_dtype agent_types[CSA_AGENT_COUNT][2] = {
    {CSA_DT_CATEGORY, CSA_DT_PRIORITY},
    {CSA_DT_STRATEGY, CSA_DT_COUNT},
    {CSA_DT_ESCALATION, CSA_DT_COUNT},
    {CSA_DT_COUNT, CSA_DT_COUNT},
};

/* Field of an agent's decision that holds a decision type's value. */
static const char *value_key(enum csa_dtype t)
{
	static const char *const k[] = {"category", "priority", "strategy", "escalation_path"};
	return k[t];
}

static const char *const stage_after[CSA_AGENT_COUNT] = {"classifier", "selection", "action",
                                                         "action"};

struct run {
	struct csa_pipeline *p;
	json_t *result;
	int human;
};

/* Whether 'text' mentions 'phrase' (ASCII case-insensitive) other than
 * right after "not " or "no ": "not urgent" is a calm customer. */
static int mentions(const char *text, const char *phrase)
{
	size_t n = strlen(phrase);
	if (!n)
		return 0;
	for (const char *s = text; *s; s++) {
		if (strncasecmp(s, phrase, n) != 0)
			continue;
		size_t before = (size_t)(s - text);
		if (!((before >= 4 && strncasecmp(s - 4, "not ", 4) == 0) ||
		      (before >= 3 && strncasecmp(s - 3, "no ", 3) == 0)))
			return 1;
	}
	return 0;
}

/* The priority model's probability of CRITICAL in a classification. */
static double critical_probability(const json_t *cls)
{
	const char *pri = csa_json_str(cls, "priority");
	if (!pri)
		return 0;
	if (strcmp(pri, "CRITICAL") == 0)
		return 1;
	size_t i;
	json_t *a;
	json_array_foreach(json_object_get(cls, "priority_alternatives"), i, a)
	{
		if (strcmp(csa_json_str(a, "value"), "CRITICAL") == 0)
			return csa_json_num(a, "confidence", 0);
	}
	return 0;
}

int csa_pipeline_possibly_critical(const struct csa_config *cfg, const json_t *t_doc,
                                   const json_t *customer, const char *text,
                                   const json_t *classification)
{
	const char *pri = csa_json_str(t_doc, "priority");
	if (pri && strcmp(pri, "CRITICAL") == 0)
		return 1;
	json_t *min_p = csa_config_get(cfg, "automation.critical_signals.min_probability");
	if (critical_probability(classification) >=
	    (json_is_number(min_p) ? json_number_value(min_p) : 0.05))
		return 1;
	/* The priority model is often confidently wrong exactly where it
	 * matters: a critical ticket whose first message reads like a routine
	 * question. The customer's own priority level and urgent wording are
	 * evidence the model may not weigh enough. */
	const char *level = csa_json_str(customer, "priority_level");
	if (level &&
	    csa_config_in_list(cfg, "automation.critical_signals.customer_priority_levels", level))
		return 1;
	size_t i;
	json_t *w;
	json_array_foreach(csa_config_get(cfg, "automation.critical_signals.urgency_words"), i, w)
	{
		if (json_is_string(w) && text && mentions(text, json_string_value(w)))
			return 1;
	}
	return 0;
}

/* Ask the automation hook about one decision type of an agent's output. */
static int ask_hook(struct csa_pipeline *p, void *run, const struct csa_agent_input *in,
                    const char *decision_id, enum csa_dtype t, const struct csa_agent_output *o,
                    const char *segment, int category_autonomous, const char *input_digest,
                    json_t *audit)
{
	const struct csa_ticket *tk = in->tk;
	/* the classifier's own run judges by its fresh classification */
	const json_t *cls = in->classification ? in->classification : o->decision;
	json_t *cust = json_object_get(json_object_get(tk->e, "participants"), "customer");
	const char *value = csa_json_str(o->decision, value_key(t));
	double conf = o->confidence;
	if (t == CSA_DT_CATEGORY)
		conf = csa_json_num(o->decision, "category_confidence", conf);
	else if (t == CSA_DT_PRIORITY)
		conf = csa_json_num(o->decision, "priority_confidence", conf);
	struct csa_flow_decision d = {
	    .ticket_id = tk->id,
	    .decision_id = decision_id,
	    .type = t,
	    .value = value,
	    .confidence = conf,
	    .segment = segment,
	    .category_autonomous = category_autonomous,
	    .critical = csa_pipeline_possibly_critical(in->cfg, tk->t, cust, in->text, cls),
	    .alternatives = t == CSA_DT_PRIORITY
	                        ? json_object_get(o->decision, "priority_alternatives")
	                        : o->alternatives,
	    .model_version = p->env.models[t] ? csa_dmodel_version(p->env.models[t]) : "none",
	    .input_digest = input_digest,
	};
	/* an LLM that decided in the cascade is the model of record */
	const char *llm = csa_json_str(
	    json_object_get(json_object_get(o->decision, "cascade"), csa_dtype_name(t)),
	    "model_version");
	if (llm)
		d.model_version = llm;
	if (!p->hooks.on_decision)
		return 0;
	return p->hooks.on_decision(p->hooks.ctx, run, &d, audit);
}

/* Apply an autonomous decision to the ticket's documents. */
static void apply(struct csa_ticket *tk, enum csa_dtype t, const json_t *decision)
{
	if (t == CSA_DT_PRIORITY)
		json_object_set(tk->t, "priority", json_object_get(decision, "priority"));
	if (t == CSA_DT_ESCALATION && json_is_true(json_object_get(decision, "escalate"))) {
		json_object_set_new(tk->e, "conversation_status", json_string("escalated"));
		json_t *lv = json_object_get(decision, "escalation_levels");
		json_t *parts = json_object_get(tk->i, "participants");
		if (json_is_array(lv))
			json_object_set(parts, "escalation_path", lv);
		else /* a new array, owned by the document (set would leak ours) */
			json_object_set_new(parts, "escalation_path", json_array());
		/* the escalation's first level resolves it, unless a team member
		 * is assigned (flow/lifecycle.h) */
		json_t *member = json_object_get(tk->t, "assigned_member");
		json_object_set(parts, "assigned_resolver",
		                json_is_string(member)  ? member
		                : json_array_get(lv, 0) ? json_array_get(lv, 0)
		                                        : json_null());
	}
}

/* One pipeline run over a locked ticket, from its context to its result. */
struct agents_run {
	struct csa_pipeline *p;
	const struct csa_config *cfg;
	struct csa_ticket *tk;
	int64_t now;
	char ts[CSA_TS_LEN];
	char *text;      /* the customer's text, as the agents read it */
	json_t *history; /* the customer's earlier tickets */
	struct csa_agent_input in;
	char digest[CSA_SHA256_HEX_LEN]; /* of text: the decisions' input */
	json_t *timeline, *decisions;    /* for the result */
	json_t *outs[CSA_AGENT_COUNT];   /* each agent's decision, or NULL */
	const char *segment;             /* the classifier's category */
	int human, category_autonomous;
	void *run;     /* the automation hook's context of this run */
	int *capacity; /* set when this run holds the capacity lock */
};

/* The context manager: sentiment, the customer's text and history, SLA. */
static int build_context(struct agents_run *r, struct csa_err *err)
{
	struct csa_ticket *tk = r->tk;
	fill_sentiment(tk->e);
	if (!(r->text = csa_pipeline_text(tk->e, TEXT_MAX, 0)))
		return csa_error(err, CSA_ENOMEM, "out of memory building context of '%s'", tk->id);
	json_t *cust = json_object_get(json_object_get(tk->e, "participants"), "customer");
	r->history = csa_history_customer(r->p->history, csa_json_str(cust, "company_name"),
	                                  csa_json_str(cust, "client_name"), tk->id);
	r->in = (struct csa_agent_input){
	    .cfg = r->cfg,
	    .tk = tk,
	    .text = r->text,
	    .tier = csa_json_str(cust, "subscription_tier"),
	    .platform = csa_json_str(tk->e, "platform"),
	    .sentiment = text_sentiment(r->text),
	    .sla_status = csa_sla_status_of(r->cfg, tk->e, r->now),
	    .agent_replies = count_agent_replies(tk->e),
	    .customer_history = r->history,
	    .prior_confidence = 1.0,
	};
	if (csa_sha256_hex(r->text, strlen(r->text), r->digest) != CSA_OK)
		return csa_error(err, CSA_EIO, "cannot digest the customer text of '%s'", tk->id);
	return CSA_OK;
}

/* Agent a failed: its record says why, and a human takes over from here. */
static void agent_failed(struct agents_run *r, int a, const char *decision_id, const char *why)
{
	r->human = 1;
	json_array_append_new(json_object_get(r->tk->t, "agent_decisions"),
	                      json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:b}, s:f, s:b, s:n}",
	                                "agent", csa_agents[a].name, "timestamp", r->ts, "decision",
	                                "decision_id", decision_id, "status", "failed", "error",
	                                why, "requires_human_review", 1, "confidence", 0.0,
	                                "human_confirmed", 0, "learning_feedback"));
	json_object_set_new(r->decisions, csa_agents[a].name,
	                    json_pack("{s:s, s:s}", "status", "failed", "error", why));
}

/* Each decision type of agent a's output goes to the automation hook:
 * applied to the ticket if it may be autonomous, else left to a human. */
static json_t *decide_types(struct agents_run *r, int a, const char *decision_id,
                            const struct csa_agent_output *o, json_t *audit)
{
	json_t *applied = json_object();
	for (int k = 0; k < 2; k++) {
		enum csa_dtype t = agent_types[a][k];
		if (t == CSA_DT_COUNT || !csa_json_str(o->decision, value_key(t)))
			continue; /* no such decision in this run */
		int autonomous = ask_hook(r->p, r->run, &r->in, decision_id, t, o, r->segment,
		                          r->category_autonomous, r->digest, audit);
		if (t == CSA_DT_CATEGORY)
			r->category_autonomous = autonomous;
		json_object_set_new(applied, csa_dtype_name(t), json_boolean(autonomous));
		if (autonomous)
			apply(r->tk, t, o->decision);
		else
			r->human = 1;
	}
	return applied;
}

/* Agent a's decision in T, the result and the timeline; what later agents
 * read of it. */
static void record_agent(struct agents_run *r, int a, const char *decision_id,
                         const struct csa_agent_output *o, json_t *applied, json_t *audit)
{
	json_t *dec = json_deep_copy(o->decision);
	/* what weighed most goes to T active_learning_data (flow/learning.h) */
	json_t *patterns = json_incref(json_object_get(dec, "decision_patterns"));
	json_object_del(dec, "decision_patterns");
	json_object_set_new(dec, "decision_id", json_string(decision_id));
	json_object_set_new(dec, "rationale", json_string(o->rationale));
	json_object_set(dec, "alternatives", o->alternatives);
	json_object_set_new(dec, "requires_human_review", json_boolean(o->requires_human_review));
	json_object_set_new(dec, "applied_autonomously", applied);
	json_object_set_new(dec, "input_digest", json_string(r->digest));
	if (json_object_size(audit))
		json_object_set(dec, "automation", audit);
	json_array_append_new(json_object_get(r->tk->t, "agent_decisions"),
	                      json_pack("{s:s, s:s, s:O, s:f, s:b, s:n}", "agent",
	                                csa_agents[a].name, "timestamp", r->ts, "decision", dec,
	                                "confidence", o->confidence, "human_confirmed", 0,
	                                "learning_feedback"));
	json_object_set_new(r->decisions, csa_agents[a].name,
	                    json_pack("{s:s, s:o, s:f, s:O, s:s, s:b}", "decision_id", decision_id,
	                              "decision", dec, "confidence", o->confidence, "alternatives",
	                              o->alternatives, "rationale", o->rationale,
	                              "requires_human_review", o->requires_human_review));
	json_array_append_new(r->timeline, json_pack("{s:s, s:s, s:s, s:f}", "timestamp", r->ts,
	                                             "agent", csa_agents[a].name, "action",
	                                             a == 0   ? "ticket_classification"
	                                             : a == 1 ? "strategy_selection"
	                                             : a == 2 ? "escalation_assessment"
	                                                      : "update_planning",
	                                             "confidence", o->confidence));
	json_object_set_new(r->tk->t, "workflow_stage", json_string(stage_after[a]));
	r->outs[a] = json_incref(o->decision);
	if (o->confidence < r->in.prior_confidence)
		r->in.prior_confidence = o->confidence;
	if (a == CSA_AGENT_CLASSIFIER)
		r->in.classification = r->outs[a];
	else if (a == CSA_AGENT_SELECTOR)
		r->in.selection = r->outs[a];
	else if (a == CSA_AGENT_ESCALATION)
		r->in.escalation = r->outs[a];
	r->human |= o->requires_human_review;
	for (int k = 0; k < 2; k++) {
		enum csa_dtype t = agent_types[a][k];
		const char *value =
		    t == CSA_DT_COUNT ? NULL : csa_json_str(o->decision, value_key(t));
		if (!value)
			continue;
		double conf = t == CSA_DT_CATEGORY
		                  ? csa_json_num(o->decision, "category_confidence", o->confidence)
		              : t == CSA_DT_PRIORITY
		                  ? csa_json_num(o->decision, "priority_confidence", o->confidence)
		                  : o->confidence;
		csa_learning_decision(r->tk, &r->in, decision_id, t, value, conf, r->digest,
		                      json_object_get(patterns, csa_dtype_name(t)));
	}
	json_decref(patterns);
}

/*
 * Who works the ticket for the escalation 'decision' (the agent's, or a
 * person's): the escalation agent chooses (agents/agent.h) under the
 * capacity lock (agents/capacity.h) when its choice may assign someone,
 * and *held says the caller then holds the lock until the ticket is
 * committed (csa_pipeline_capacity_release). Without the lock nobody is
 * assigned and the decision's note says why.
 *
 * In a run the agent has already chosen by the load as this process knew
 * it, while its model (perhaps an LLM call, which no workspace-wide lock
 * should wait for) decided; that choice is made again here.
 */
static void choose_resolver(struct csa_pipeline *p, const struct csa_agent_input *in,
                            json_t *decision, int *held)
{
	if (csa_escalation_may_assign(in->cfg, in->tk)) {
		struct csa_err err = {0};
		if (csa_capacity_lock(p->capacity, &err)) {
			char note[300];
			snprintf(note, sizeof(note), "no assignment: %.250s", err.msg);
			json_object_set_new(decision, "assignment", json_null());
			json_object_set_new(decision, "assignment_note", json_string(note));
			return;
		}
		*held = 1;
	}
	json_t *path = json_object_get(decision, "escalation_path");
	csa_escalation_propose_assignment(&p->env, in,
	                                  json_is_string(path) ? json_string_value(path) : "NONE",
	                                  json_is_true(json_object_get(decision, "escalate"))
	                                      ? json_object_get(decision, "escalation_levels")
	                                      : NULL,
	                                  decision);
}

/* Agent a's turn: 0, or -1 when it failed and the run stops there. */
static int run_agent(struct agents_run *r, int a)
{
	struct csa_agent_output o = {0};
	struct csa_err aerr = {0};
	char decision_id[CSA_ID_MAX + 32];
	snprintf(decision_id, sizeof(decision_id), "%s:%s:%zu", r->tk->id, csa_agents[a].name,
	         json_array_size(json_object_get(r->tk->t, "agent_decisions")));
	if (csa_agents[a].process(&r->p->env, &r->in, &o, &aerr)) {
		agent_failed(r, a, decision_id, aerr.msg);
		return -1;
	}
	if (a == CSA_AGENT_ESCALATION)
		choose_resolver(r->p, &r->in, o.decision, r->capacity);
	o.requires_human_review = o.confidence < csa_agent_threshold(r->cfg);
	if (a == CSA_AGENT_CLASSIFIER)
		r->segment = csa_json_str(o.decision, "category");
	json_t *audit = json_object();
	json_t *applied = decide_types(r, a, decision_id, &o, audit);
	record_agent(r, a, decision_id, &o, applied, audit);
	json_decref(audit);
	csa_agent_output_release(&o);
	return 0;
}

/* E: the AI's reading of the latest customer message. */
static void annotate_customer_message(struct agents_run *r)
{
	json_t *msgs = json_object_get(r->tk->e, "messages"), **outs = r->outs;
	for (size_t i = json_array_size(msgs); i-- > 0;) {
		json_t *m = json_array_get(msgs, i);
		if (strcmp(csa_json_str(m, "sender"), "customer") != 0)
			continue;
		if (!outs[0])
			return;
		json_t *actions = json_array();
		if (outs[1])
			json_array_append(actions, json_object_get(outs[1], "strategy"));
		json_t *triggers = json_array();
		if (outs[2] && json_is_true(json_object_get(outs[2], "escalate")))
			json_array_append(triggers, json_object_get(outs[2], "escalation_path"));
		json_object_set_new(m, "ai_processing",
		                    json_pack("{s:O, s:O, s:o, s:o}", "intent_classification",
		                              json_object_get(outs[0], "category"), "confidence",
		                              json_object_get(outs[0], "category_confidence"),
		                              "suggested_actions", actions, "escalation_triggers",
		                              triggers));
		return;
	}
}

/* I: the analysis, for the team. A full internal side keeps it in T only. */
static void add_analysis(struct agents_run *r)
{
	json_t **outs = r->outs;
	if (!outs[0])
		return;
	const char *pri = csa_json_str(outs[0], "priority");
	if (!pri)
		pri = csa_json_str(r->tk->t, "priority");
	int esc = outs[2] && json_is_true(json_object_get(outs[2], "escalate"));
	const char *complexity = strcmp(pri, "CRITICAL") == 0      ? "CRITICAL"
	                         : esc || strcmp(pri, "HIGH") == 0 ? "HIGH"
	                         : strcmp(pri, "LOW") == 0         ? "LOW"
	                                                           : "MEDIUM";
	json_t *similar = csa_history_similar(r->p->history, r->segment, r->tk->id, 5);
	json_t *eta = outs[2] ? json_object_get(outs[2], "estimated_resolution_time") : NULL;
	char content[600];
	snprintf(content, sizeof(content), "AI analysis: %s",
	         outs[2] ? csa_json_str(outs[2], "context_summary") : "classification only");
	json_t *msg = json_pack(
	    "{s:s, s:s, s:s, s:s, s:{s:s, s:O?, s:[s], s:o}}", "content", content, "sender",
	    "ai_agent", "message_type", "analysis", "sender_id", "csa-pipeline", "ai_insights",
	    "complexity_assessment", complexity, "estimated_resolution_time",
	    eta && json_is_number(eta) ? eta : NULL, "required_expertise",
	    csa_json_str(outs[0], "routing_suggestion"), "similar_cases", similar);
	csa_ticket_add_message(r->cfg, r->tk, CSA_SIDE_INTERNAL, msg, r->now, NULL, NULL);
	json_decref(msg);
}

static json_t *final_recommendation(const struct agents_run *r)
{
	json_t *final = json_object();
	json_t *const *outs = r->outs;
	if (outs[0])
		json_object_set_new(final, "classification",
		                    json_pack("{s:O, s:O?}", "category",
		                              json_object_get(outs[0], "category"), "priority",
		                              json_object_get(outs[0], "priority")));
	if (outs[1])
		json_object_set(final, "strategy", json_object_get(outs[1], "strategy"));
	if (outs[2])
		json_object_set(final, "escalate", json_object_get(outs[2], "escalate"));
	return final;
}

static void run_release(struct agents_run *r)
{
	for (int a = 0; a < CSA_AGENT_COUNT; a++)
		json_decref(r->outs[a]);
	json_decref(r->history);
	json_decref(r->timeline);
	json_decref(r->decisions);
	free(r->text);
}

static int run_locked(struct csa_pipeline *p, const struct csa_config *cfg, struct csa_ticket *tk,
                      void *run, int *capacity, json_t **result, struct csa_err *err)
{
	struct agents_run r = {
	    .p = p, .cfg = cfg, .tk = tk, .now = csa_now_ms(), .run = run, .capacity = capacity};
	csa_ts_format(r.now, r.ts);
	int rc = build_context(&r, err);
	if (rc) {
		run_release(&r);
		return rc;
	}
	r.timeline = json_array();
	r.decisions = json_object();
	for (int a = 0; a < CSA_AGENT_COUNT; a++)
		if (run_agent(&r, a))
			break;
	annotate_customer_message(&r);
	csa_sla_fill(cfg, tk->e, csa_json_str(tk->t, "priority"), r.in.tier, r.now);
	csa_lifecycle_after_run(cfg, tk, r.outs[CSA_AGENT_ESCALATION], r.outs[CSA_AGENT_UPDATES],
	                        r.now);
	add_analysis(&r);
	/* the decisions' rows and review tasks are durable before the ticket
	 * is committed, or the ticket is not committed */
	rc = p->hooks.decisions_done ? p->hooks.decisions_done(p->hooks.ctx, run, err) : CSA_OK;
	if (rc == CSA_OK)
		*result = json_pack("{s:s, s:O, s:O, s:o, s:b}", "ticket_id", tk->id,
		                    "processing_timeline", r.timeline, "agent_decisions",
		                    r.decisions, "final_recommendation", final_recommendation(&r),
		                    "human_intervention_required", r.human);
	run_release(&r);
	return rc;
}

/* The run's ticket could not be committed: no result, and the hook takes
 * back what the run's decisions (those after the first 'first') left. */
static void abandon(struct csa_pipeline *p, void *run, struct csa_ticket *tk, size_t first,
                    json_t **result, const struct csa_err *err)
{
	json_decref(*result);
	*result = NULL;
	json_t *tdec = json_object_get(tk->t, "agent_decisions");
	size_t n = json_array_size(tdec) - first;
	const char **ids = calloc(n ? n : 1, sizeof(*ids));
	if (ids && p->hooks.run_abandoned) {
		for (size_t i = 0; i < n; i++)
			ids[i] = csa_json_str(
			    json_object_get(json_array_get(tdec, first + i), "decision"),
			    "decision_id");
		p->hooks.run_abandoned(p->hooks.ctx, run, tk->id, ids, n, err);
	}
	free(ids);
}

/* Run the pipeline on 'tk' and commit it, under the ticket's lock. If the
 * commit fails, the hook takes back the rows the run's decisions left in
 * the controller's store, before the lock goes. */
static int run_and_commit(struct csa_pipeline *p, const struct csa_config *cfg,
                          struct csa_ticket *tk, json_t **result, struct csa_err *err)
{
	size_t first = json_array_size(json_object_get(tk->t, "agent_decisions"));
	void *run = p->hooks.begin_run ? p->hooks.begin_run(p->hooks.ctx) : NULL;
	char before[CSA_ID_MAX + 1];
	snprintf(before, sizeof(before), "%s", csa_json_str(tk->t, "assigned_member") ?: "");
	int capacity = 0;
	int rc = run_locked(p, cfg, tk, run, &capacity, result, err);
	if (rc == CSA_OK && (rc = csa_store_commit(p->ws->store, tk, CSA_DOC_ALL, err)))
		abandon(p, run, tk, first, result, err);
	if (capacity) {
		const char *now = csa_json_str(tk->t, "assigned_member");
		csa_pipeline_capacity_release(p, tk,
		                              rc == CSA_OK && strcmp(before, now ? now : ""));
	}
	if (p->hooks.end_run)
		p->hooks.end_run(p->hooks.ctx, run);
	return rc;
}

void csa_pipeline_capacity_release(struct csa_pipeline *p, const struct csa_ticket *tk, int changed)
{
	if (changed) {
		struct csa_hist_entry e;
		csa_history_entry_from(tk, &e);
		csa_history_put(p->history, &e);
	}
	struct csa_err err = {0};
	if (csa_capacity_unlock(p->capacity, changed ? tk->id : NULL, &err))
		fprintf(stderr, "csa: other processes may count ticket '%s' as before: %s\n",
		        tk->id, err.msg);
}

struct process_ctx {
	struct csa_pipeline *p;
	const struct csa_config *cfg;
	json_t *result;
	struct csa_hist_entry entry;
};

static int process_fn(void *vctx, struct csa_ticket *tk, unsigned *docs, struct csa_err *err)
{
	struct process_ctx *c = vctx;
	int rc = run_and_commit(c->p, c->cfg, tk, &c->result, err);
	*docs = 0; /* committed, or not, by run_and_commit */
	if (rc == CSA_OK)
		csa_history_entry_from(tk, &c->entry);
	return rc;
}

/* After a committed run: the history index learns the ticket's new state
 * (from the documents just committed, when the caller has them). */
static void after(struct csa_pipeline *p, const char *id, json_t *result,
                  const struct csa_hist_entry *entry)
{
	struct csa_ticket tk;
	if (entry) {
		csa_history_put(p->history, entry);
	} else if (csa_store_load(p->ws->store, id, &tk, NULL) == CSA_OK) {
		struct csa_hist_entry e;
		csa_history_entry_from(&tk, &e);
		csa_history_put(p->history, &e);
		csa_ticket_release(&tk);
	}
	if (p->hooks.after_run)
		p->hooks.after_run(p->hooks.ctx, id, result);
	if (p->observer && result)
		p->observer(p->observer_ctx, id, result);
}

int csa_pipeline_process(struct csa_pipeline *p, const char *ticket_id, json_t **result,
                         struct csa_err *err)
{
	refresh_kb(p);
	refresh_models(p);
	refresh_online(p);
	struct process_ctx c = {.p = p, .cfg = csa_ws_config(p->ws)};
	pthread_rwlock_rdlock(&p->models_lock);
	int rc = csa_store_update(p->ws->store, ticket_id, 0, process_fn, &c, err);
	pthread_rwlock_unlock(&p->models_lock);
	csa_config_unref(c.cfg);
	if (rc) {
		json_decref(c.result);
		return rc;
	}
	after(p, ticket_id, c.result, &c.entry);
	if (result)
		*result = c.result;
	else
		json_decref(c.result);
	return CSA_OK;
}

struct ingest_ctx {
	struct csa_hist_entry entry;
	struct csa_pipeline *p;
	const struct csa_config *cfg;
	const json_t *message;
	enum csa_side side;
	int reply; /* an external message of the team, not of the customer */
	int duplicate;
	char msg_id[CSA_ID_MAX + 1];
	json_t *result;
};

/* The team answered the customer: the first answer sets T's
 * first_response_time (minutes since the ticket was created) once, and
 * E's SLA state is taken again (its clock counts the first reply, sla.h);
 * the replier joined E's cs_agents with every message's sender. */
static void record_reply(const struct csa_config *cfg, struct csa_ticket *tk, const char *mid,
                         int64_t now)
{
	json_t *msg = NULL, *m;
	size_t i;
	json_array_foreach(json_object_get(tk->e, "messages"), i, m)
	{
		const char *id = csa_json_str(m, "message_id");
		if (id && strcmp(id, mid) == 0)
			msg = m;
	}
	json_t *sla = json_object_get(tk->t, "sla_metrics");
	int64_t created, at;
	if (json_is_null(json_object_get(sla, "first_response_time")) &&
	    csa_ts_parse(csa_json_str(sla, "created_at"), &created) == 0 &&
	    csa_ts_parse(csa_json_str(msg, "timestamp"), &at) == 0)
		json_object_set_new(sla, "first_response_time",
		                    json_real(at > created ? (double)(at - created) / 60000.0 : 0));
	/* the replier is in E's cs_agents already: csa_lifecycle_note_message
	 * (flow/lifecycle.h) took every message's sender, as the roster names
	 * them */
	json_t *cust = json_object_get(json_object_get(tk->e, "participants"), "customer");
	csa_sla_fill(cfg, tk->e, csa_json_str(tk->t, "priority"),
	             csa_json_str(cust, "subscription_tier"), now);
}

static int ingest_fn(void *vctx, struct csa_ticket *tk, unsigned *docs, struct csa_err *err)
{
	struct ingest_ctx *c = vctx;
	const char *mid = NULL;
	int64_t now = csa_now_ms();
	int rc = csa_ticket_add_message(c->cfg, tk, c->side, c->message, now, &mid, err);
	if (rc == CSA_EEXIST) {
		c->duplicate = 1;
		return CSA_OK; /* nothing to write */
	}
	if (rc)
		return rc;
	json_t *side_msgs =
	    json_object_get(c->side == CSA_SIDE_EXTERNAL ? tk->e : tk->i, "messages");
	csa_lifecycle_note_message(c->cfg, tk, c->side,
	                           json_array_get(side_msgs, json_array_size(side_msgs) - 1), now);
	snprintf(c->msg_id, sizeof(c->msg_id), "%s", mid);
	if (c->side == CSA_SIDE_INTERNAL) {
		*docs = CSA_DOC_ALL;
		return CSA_OK;
	}
	/* a reply to the customer is no new question: the decisions on the
	 * customer's messages stand, so no run (and no repeated analysis) */
	if (c->reply) {
		record_reply(c->cfg, tk, c->msg_id, csa_now_ms());
		*docs = CSA_DOC_ALL;
		return CSA_OK;
	}
	/* same lock, same commit: the message and the decisions on it */
	int rc2 = run_and_commit(c->p, c->cfg, tk, &c->result, err);
	if (rc2 == CSA_OK)
		csa_history_entry_from(tk, &c->entry);
	return rc2;
}

static int ingest_locked(struct csa_pipeline *p, const struct csa_config *cfg, const json_t *doc,
                         json_t **result, struct csa_err *err);

int csa_pipeline_ingest(struct csa_pipeline *p, const json_t *doc, json_t **result,
                        struct csa_err *err)
{
	refresh_kb(p);
	refresh_models(p);
	refresh_online(p);
	const struct csa_config *cfg = csa_ws_config(p->ws);
	pthread_rwlock_rdlock(&p->models_lock);
	int rc = ingest_locked(p, cfg, doc, result, err);
	pthread_rwlock_unlock(&p->models_lock);
	csa_config_unref(cfg);
	return rc;
}

static int ingest_locked(struct csa_pipeline *p, const struct csa_config *cfg, const json_t *doc,
                         json_t **result, struct csa_err *err)
{
	if (!json_is_object(doc))
		return csa_error(err, CSA_EINVAL, "ingest: expected a JSON object");
	json_t *message = json_object_get(doc, "message");
	if (!message) {
		/* a new ticket */
		struct csa_ticket tk;
		int64_t now = csa_now_ms();
		int rc = csa_ticket_build(cfg, doc, now, &tk, err);
		if (rc)
			return rc;
		/* the people who wrote in the first messages are participants */
		csa_lifecycle_note_new(cfg, &tk, now);
		struct csa_lock *lk;
		if ((rc = csa_store_lock(p->ws->store, tk.id, &lk, err))) {
			csa_ticket_release(&tk);
			return rc;
		}
		/* a taken id fails before the run, whose decision ids would be
		 * the existing ticket's */
		struct csa_ticket old;
		int exists = csa_store_load_locked(p->ws->store, tk.id, &old, NULL);
		if (exists == CSA_OK)
			csa_ticket_release(&old);
		json_t *res = NULL;
		rc = exists != CSA_ENOENT
		         ? csa_error(err, CSA_EEXIST, "ticket '%s' already exists", tk.id)
		         : run_and_commit(p, cfg, &tk, &res, err);
		csa_store_unlock(p->ws->store, lk);
		if (!rc) {
			json_object_set_new(res, "created", json_true());
			struct csa_hist_entry e;
			csa_history_entry_from(&tk, &e);
			after(p, tk.id, res, &e);
		}
		csa_ticket_release(&tk);
		if (rc) {
			json_decref(res);
			return rc;
		}
		*result = res;
		return CSA_OK;
	}
	const char *id = csa_json_str(doc, "ticket_id");
	if (!id)
		return csa_error(err, CSA_EINVAL,
		                 "ingest: field 'ticket_id' is required with 'message'");
	const char *side_s = csa_json_str(doc, "side");
	int side = csa_side_parse(side_s ? side_s : "external");
	if (side < 0)
		return csa_error(err, CSA_EINVAL,
		                 "ingest: field 'side' must be external or internal");
	const char *sender = csa_json_str(message, "sender");
	struct ingest_ctx c = {.p = p,
	                       .cfg = cfg,
	                       .message = message,
	                       .side = (enum csa_side)side,
	                       .reply = side == CSA_SIDE_EXTERNAL && sender &&
	                                strcmp(sender, "customer") != 0};
	int rc = csa_store_update(p->ws->store, id, 0, ingest_fn, &c, err);
	if (rc) {
		json_decref(c.result);
		return rc;
	}
	if (!c.result)
		c.result = json_pack("{s:s}", "ticket_id", id);
	json_object_set_new(c.result, "message_id",
	                    c.duplicate ? json_incref(json_object_get(message, "message_id"))
	                                : json_string(c.msg_id));
	json_object_set_new(c.result, "duplicate", json_boolean(c.duplicate));
	if (c.reply)
		json_object_set_new(c.result, "reply", json_true());
	else if (!c.duplicate && side == CSA_SIDE_EXTERNAL)
		after(p, id, c.result, &c.entry);
	*result = c.result;
	return CSA_OK;
}

int csa_pipeline_reply(struct csa_pipeline *p, const char *ticket_id, const json_t *message,
                       json_t **result, struct csa_err *err)
{
	const char *sender = csa_json_str(message, "sender");
	if (!sender || strcmp(sender, "customer") == 0)
		return csa_error(err, CSA_EINVAL,
		                 "a reply's sender is cs_agent or ai_agent, not the customer");
	json_t *doc = json_pack("{s:s, s:s, s:O}", "ticket_id", ticket_id, "side", "external",
	                        "message", message);
	if (!doc)
		return csa_error(err, CSA_ENOMEM, "out of memory adding a reply to '%s'",
		                 ticket_id);
	/* no run: the models are not read, so their lock is not taken */
	const struct csa_config *cfg = csa_ws_config(p->ws);
	int rc = ingest_locked(p, cfg, doc, result, err);
	csa_config_unref(cfg);
	json_decref(doc);
	return rc;
}

struct feedback_ctx {
	struct csa_pipeline *p;
	const struct csa_config *cfg;
	const char *ticket_id, *decision_id, *value, *who, *notes;
	enum csa_dtype type;
	int learn;
	int correct;
	/* the example the model learns from, for the online-learning log once
	 * the ticket is committed (teach set): text (freed by the caller),
	 * features pointing into featbuf, the model's version */
	int teach;
	char *text;
	char featbuf[512];
	const char *feats[16];
	size_t nf;
	char model_version[64];
	int capacity;                /* holds the capacity lock: a person's escalation may assign */
	struct csa_hist_entry entry; /* the ticket as committed, for the history index */
};

static int apply_feedback(struct feedback_ctx *c, struct csa_ticket *tk, unsigned *docs,
                          struct csa_err *err);

/* The person's decision into the ticket, and its history entry taken from
 * the documents being committed (as a run's is), so the index does not
 * read the ticket back from the store after every review. */
static int feedback_fn(void *vctx, struct csa_ticket *tk, unsigned *docs, struct csa_err *err)
{
	struct feedback_ctx *c = vctx;
	int rc = apply_feedback(c, tk, docs, err);
	if (rc == CSA_OK)
		csa_history_entry_from(tk, &c->entry);
	if (!c->capacity)
		return rc;
	/* committed here, before the capacity lock goes */
	if (rc == CSA_OK)
		rc = csa_store_commit(c->p->ws->store, tk, *docs, err);
	*docs = 0;
	csa_pipeline_capacity_release(c->p, tk, rc == CSA_OK);
	return rc;
}

/* The agents' input for a person's decision on tk, as a run would build
 * it: the customer's text (*text, freed by the caller), the ticket's
 * latest classification and strategy. */
static void feedback_input(const struct feedback_ctx *c, const struct csa_ticket *tk,
                           struct csa_agent_input *in, char **text)
{
	*text = csa_pipeline_text(tk->e, TEXT_MAX, 0);
	json_t *cust = json_object_get(json_object_get(tk->e, "participants"), "customer");
	*in = (struct csa_agent_input){
	    .tk = tk,
	    .text = *text,
	    .tier = csa_json_str(cust, "subscription_tier"),
	    .platform = csa_json_str(tk->e, "platform"),
	    .sentiment = text_sentiment(*text ? *text : ""),
	    .cfg = c->cfg,
	    .sla_status = csa_sla_status_of(c->cfg, tk->e, csa_now_ms()),
	    .agent_replies = count_agent_replies(tk->e),
	    .prior_confidence = 1.0,
	};
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(tk->t, "agent_decisions"), i, d)
	{
		const char *agent = csa_json_str(d, "agent");
		json_t *x = json_object_get(d, "decision");
		if (!agent || csa_json_str(x, "status")) /* a failed agent's record */
			continue;
		if (strcmp(agent, "classifier") == 0)
			in->classification = x;
		else if (strcmp(agent, "selector") == 0)
			in->selection = x;
	}
}

/*
 * A person decided the escalation ('value', on the agent's decision
 * 'ai'): an open ticket follows as if the escalation agent had decided it
 * in a run (a resolved one only records the escalation). The escalation
 * is applied (E escalated, I escalation_path); the agent chooses who works
 * the ticket for it (a TECHNICAL escalation goes to the technical team by
 * expertise, unless a person assigned the ticket) under the capacity
 * lock, which the caller then holds until its commit (c->capacity); the
 * updates agent says where the ticket stands (blocked, waiting for the
 * escalation); flow/lifecycle.h applies both as after a run.
 */
static void escalation_decided(struct feedback_ctx *c, struct csa_ticket *tk, const json_t *ai)
{
	int escalate = strcmp(c->value, "NONE") != 0;
	json_t *e = json_deep_copy(ai);
	json_object_set_new(e, "escalate", json_boolean(escalate));
	json_object_set_new(e, "escalation_path", json_string(c->value));
	json_t *levels = json_object_get(csa_config_get(c->cfg, "escalation_paths"), c->value);
	json_object_set_new(e, "escalation_levels",
	                    escalate && json_is_array(levels) ? json_incref(levels) : json_array());
	apply(tk, CSA_DT_ESCALATION, e);
	if (json_is_true(json_object_get(tk->t, "resolved"))) {
		json_decref(e); /* closed: nobody to hand it to */
		return;
	}
	char *text;
	struct csa_agent_input in;
	feedback_input(c, tk, &in, &text);
	in.escalation = e;
	choose_resolver(c->p, &in, e, &c->capacity);
	json_t *updates = json_pack("{s:o}", "progress", csa_updates_progress(&in, csa_now_ms()));
	csa_lifecycle_after_run(c->cfg, tk, e, updates, csa_now_ms());
	json_decref(updates);
	json_decref(e);
	free(text);
}

static int apply_feedback(struct feedback_ctx *c, struct csa_ticket *tk, unsigned *docs,
                          struct csa_err *err)
{
	json_t *found = NULL;
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(tk->t, "agent_decisions"), i, d)
	{
		if (strcmp(csa_json_str(json_object_get(d, "decision"), "decision_id")
		               ? csa_json_str(json_object_get(d, "decision"), "decision_id")
		               : "",
		           c->decision_id) == 0)
			found = d;
	}
	if (!found)
		return csa_error(err, CSA_ENOENT, "ticket '%s' has no decision '%s'", tk->id,
		                 c->decision_id);
	json_t *dec = json_object_get(found, "decision");
	const char *proposed = csa_json_str(dec, value_key(c->type));
	c->correct = proposed && strcmp(proposed, c->value) == 0;
	c->teach = 0; /* a store may run this again */
	json_t *fb = json_object_get(found, "learning_feedback");
	json_t *updates = json_is_object(fb) ? json_object_get(fb, "pattern_updates") : NULL;
	json_t *pu = updates ? json_deep_copy(updates) : json_array();
	json_array_append_new(pu, json_pack("{s:s, s:s, s:s?, s:s?}", "decision_type",
	                                    csa_dtype_name(c->type), "human_value", c->value, "by",
	                                    c->who, "model_updated", c->correct ? NULL : "online"));
	json_object_set_new(found, "learning_feedback",
	                    json_pack("{s:b, s:s?, s:o}", "correct", c->correct,
	                              "improvement_notes", c->notes, "pattern_updates", pu));
	json_object_set_new(found, "human_confirmed", json_true());
	csa_learning_review(tk, c->decision_id, c->type, proposed, c->value, c->who, csa_now_ms());
	/* the human's value is the ticket's value */
	if (c->type == CSA_DT_PRIORITY)
		json_object_set_new(tk->t, "priority", json_string(c->value));
	if (c->type == CSA_DT_CATEGORY)
		json_object_set_new(dec, "category", json_string(c->value));
	if (c->type == CSA_DT_ESCALATION)
		escalation_decided(c, tk, dec);
	*docs = CSA_DOC_ALL;
	if (c->correct || !c->learn)
		return CSA_OK;
	/* teach the model on the same input the decision was made on */
	struct csa_dmodel *m = c->p->env.models[c->type];
	if (!m)
		return CSA_OK;
	int label = csa_dmodel_label_index(m, c->value);
	if (label < 0)
		return csa_error(err, CSA_EINVAL, "'%s' is not a %s label", c->value,
		                 csa_dtype_name(c->type));
	char *text;
	struct csa_agent_input in;
	feedback_input(c, tk, &in, &text);
	free(c->text);
	c->text = text;
	/* category and priority as the pipeline saw them for this decision */
	const char *cat = NULL, *pri = NULL;
	json_array_foreach(json_object_get(tk->t, "agent_decisions"), i, d)
	{
		json_t *x = json_object_get(d, "decision");
		if (strcmp(csa_json_str(d, "agent"), "classifier") == 0 &&
		    csa_json_str(x, "category")) {
			cat = csa_json_str(x, "category");
			pri = csa_json_str(x, "priority");
		}
		if (d == found)
			break;
	}
	c->nf = csa_agent_features(c->type, &in, cat, pri, c->featbuf, sizeof(c->featbuf), c->feats,
	                           16);
	/* Several processes or nodes: every one learns it from the log, this
	 * one too, after the commit (csa_pipeline_feedback). A scratch
	 * workspace's models learn here and now, in memory. */
	if (c->p->ws->learnlog) {
		snprintf(c->model_version, sizeof(c->model_version), "%s", csa_dmodel_version(m));
		c->teach = 1;
		return CSA_OK;
	}
	return csa_dmodel_learn(m, text ? text : "", c->feats, c->nf, (size_t)label, err);
}

/* The person's correction, committed in the ticket, goes to the log, and
 * this pipeline's models take it with whatever others taught before it.
 * The person's decision stands whatever happens here: a log that cannot
 * be written leaves the model as it was until the next retraining, which
 * learns from the ticket. */
static void teach_online(struct csa_pipeline *p, const struct feedback_ctx *c)
{
	struct csa_online_example ex = {.type = c->type,
	                                .text = c->text ? c->text : "",
	                                .feats = c->feats,
	                                .n_feats = c->nf,
	                                .label = c->value,
	                                .model_version = c->model_version,
	                                .who = c->who,
	                                .ticket_id = c->ticket_id,
	                                .decision_id = c->decision_id};
	struct csa_err err = {0};
	if (csa_online_append(p->ws->learnlog, &ex, NULL, &err))
		fprintf(stderr,
		        "csa: ticket '%s': the %s decided by a person is kept, but no model "
		        "learned it now (the next retraining will): %s\n",
		        c->ticket_id, csa_dtype_name(c->type), err.msg);
	else if (online_catch_up(p, &err))
		fprintf(stderr,
		        "csa: ticket '%s': the models have not taken the correction yet: %s\n",
		        c->ticket_id, err.msg);
}

int csa_pipeline_feedback(struct csa_pipeline *p, const char *ticket_id, const char *decision_id,
                          enum csa_dtype type, const char *value, const char *who,
                          const char *notes, int learn, struct csa_err *err)
{
	struct feedback_ctx c = {.p = p,
	                         .cfg = csa_ws_config(p->ws),
	                         .ticket_id = ticket_id,
	                         .decision_id = decision_id,
	                         .value = value,
	                         .who = who,
	                         .notes = notes,
	                         .type = type,
	                         .learn = learn};
	pthread_rwlock_rdlock(&p->models_lock);
	int rc = csa_store_update(p->ws->store, ticket_id, 0, feedback_fn, &c, err);
	pthread_rwlock_unlock(&p->models_lock);
	csa_config_unref(c.cfg);
	if (rc == CSA_OK && c.teach)
		teach_online(p, &c);
	free(c.text);
	if (!rc)
		after(p, ticket_id, NULL, &c.entry);
	return rc;
}
