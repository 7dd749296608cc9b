/* History import and model training from confirmed decisions. */
#include "flow/import.h"
#include "agents/agent.h"
#include "agents/dmodel.h"
#include "agents/histfile.h"
#include "agents/history.h"
#include "agents/sentiment.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/lifecycle.h"
#include "flow/online.h"
#include "flow/pipeline.h"
#include "model/featmemo.h"
#include "search/search.h"
#include "store/learnlog.h"
#include "store/schema.h"
#include "store/ticket.h"
#include "store/ws.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GROUP          256
#define LINE_MAX_BYTES (1 << 20)

static const char *const ctx_keys[] = {"ticket_id",       "client_name", "company_name",
                                       "customer",        "platform",    "channel",
                                       "trello_template", "messages",    "internal_messages"};

static int gold_in(const struct csa_config *cfg, const char *list, const char *v)
{
	return v && csa_config_in_list(cfg, list, v);
}

/* gold.<key>: *out -1 when absent or null, else a number in [lo, hi]. */
static int outcome(const json_t *gold, const char *key, double lo, double hi, size_t line,
                   double *out, struct csa_err *err)
{
	const json_t *v = json_object_get(gold, key);
	*out = -1;
	if (!v || json_is_null(v))
		return CSA_OK;
	if (!json_is_number(v) || !(json_number_value(v) >= lo && json_number_value(v) <= hi))
		return csa_error(err, CSA_EINVAL,
		                 "line %zu: gold.%s must be a number from %g to %g", line, key, lo,
		                 hi);
	*out = json_number_value(v);
	return CSA_OK;
}

int csa_import_ticket(const struct csa_config *cfg, const json_t *h, size_t line,
                      struct csa_ticket *tk, struct csa_err *err)
{
	if (!json_is_object(h))
		return csa_error(err, CSA_EPARSE, "line %zu: expected a JSON object", line);
	json_t *gold = json_object_get(h, "gold");
	const char *cat = csa_json_str(gold, "category"), *pri = csa_json_str(gold, "priority"),
	           *strat = csa_json_str(gold, "strategy"),
	           *path = csa_json_str(gold, "escalation_path");
	if (!json_is_object(gold))
		return csa_error(err, CSA_EINVAL, "line %zu: field 'gold' missing", line);
	if (!gold_in(cfg, "taxonomy.categories", cat))
		return csa_error(err, CSA_EINVAL,
		                 "line %zu: gold.category '%s' not in the taxonomy", line,
		                 cat ? cat : "(missing)");
	if (!gold_in(cfg, "taxonomy.priorities", pri))
		return csa_error(err, CSA_EINVAL,
		                 "line %zu: gold.priority '%s' not in the taxonomy", line,
		                 pri ? pri : "(missing)");
	if (!gold_in(cfg, "taxonomy.strategies", strat))
		return csa_error(err, CSA_EINVAL,
		                 "line %zu: gold.strategy '%s' not in the taxonomy", line,
		                 strat ? strat : "(missing)");
	if (path && !json_object_get(csa_config_get(cfg, "escalation_paths"), path))
		return csa_error(err, CSA_EINVAL, "line %zu: gold.escalation_path '%s' unknown",
		                 line, path);
	/* the outcomes, within what T's sla_metrics hold (minutes up to 1e12) */
	double res_h, frm, csat;
	int rc;
	if ((rc = outcome(gold, "resolution_hours", 0, 1e12 / 60, line, &res_h, err)) ||
	    (rc = outcome(gold, "first_response_minutes", 0, 1e12, line, &frm, err)) ||
	    (rc = outcome(gold, "csat", 1, 5, line, &csat, err)))
		return rc;
	int64_t created = csa_now_ms();
	const char *cs = csa_json_str(h, "created_at");
	if (cs && csa_ts_parse(cs, &created))
		return csa_error(err, CSA_EINVAL, "line %zu: created_at is not ISO 8601", line);
	json_t *ctx = json_object();
	for (size_t k = 0; k < sizeof(ctx_keys) / sizeof(ctx_keys[0]); k++) {
		json_t *v = json_object_get(h, ctx_keys[k]);
		if (v)
			json_object_set(ctx, ctx_keys[k], v);
	}
	rc = csa_ticket_build(cfg, ctx, created, tk, err);
	json_decref(ctx);
	if (rc)
		return csa_error_prefix(err, "line %zu: ", line);

	/* the human decisions and the outcome */
	char ts[CSA_TS_LEN];
	csa_ts_format(created, ts);
	int escalate = json_is_true(json_object_get(gold, "escalate")) || path;
	json_object_set_new(tk->t, "priority", json_string(pri));
	json_object_set_new(tk->t, "resolved", json_true());
	json_object_set_new(tk->t, "workflow_stage", json_string("end"));
	json_object_set_new(tk->e, "conversation_status", json_string("resolved"));
	json_t *sla = json_object_get(tk->t, "sla_metrics");
	json_object_set_new(sla, "first_response_time", frm >= 0 ? json_real(frm) : json_null());
	json_object_set_new(sla, "resolution_time",
	                    res_h >= 0 ? json_real(res_h * 60) : json_null());
	json_object_set_new(sla, "customer_satisfaction",
	                    csat >= 0 ? json_real(csat) : json_null());
	json_t *dec = json_object_get(tk->t, "agent_decisions");
	char id[CSA_ID_MAX + 32];
	snprintf(id, sizeof(id), "%s:classifier:0", tk->id);
	json_array_append_new(dec, json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s}, s:f, s:b, s:n}",
	                                     "agent", "classifier", "timestamp", ts, "decision",
	                                     "decision_id", id, "category", cat, "priority", pri,
	                                     "source", "human", "confidence", 1.0,
	                                     "human_confirmed", 1, "learning_feedback"));
	snprintf(id, sizeof(id), "%s:selector:1", tk->id);
	json_array_append_new(dec,
	                      json_pack("{s:s, s:s, s:{s:s, s:s, s:s}, s:f, s:b, s:n}", "agent",
	                                "selector", "timestamp", ts, "decision", "decision_id", id,
	                                "strategy", strat, "source", "human", "confidence", 1.0,
	                                "human_confirmed", 1, "learning_feedback"));
	snprintf(id, sizeof(id), "%s:escalation:2", tk->id);
	json_array_append_new(
	    dec, json_pack("{s:s, s:s, s:{s:s, s:b, s:s, s:s}, s:f, s:b, s:n}", "agent",
	                   "escalation", "timestamp", ts, "decision", "decision_id", id, "escalate",
	                   escalate, "escalation_path", path ? path : "NONE", "source", "human",
	                   "confidence", 1.0, "human_confirmed", 1, "learning_feedback"));
	if (escalate) {
		json_object_set(json_object_get(tk->i, "participants"), "escalation_path",
		                json_object_get(csa_config_get(cfg, "escalation_paths"), path));
	}
	/* who worked it, its progress, knowledge and outcome, as a live one */
	if (csa_lifecycle_imported(cfg, tk, created,
	                           res_h >= 0 ? created + (int64_t)(res_h * 3600000) : created)) {
		csa_ticket_release(tk);
		return csa_error(err, CSA_ENOMEM, "line %zu: out of memory", line);
	}
	return CSA_OK;
}

/*
 * The history index an import leaves behind: loaded before its first
 * commit, so that it tracks every ticket the import writes (the store's
 * observer puts each from the documents committed, no read), then checked
 * (csa_history_verify: the signatures of the new files, while they are in
 * the page cache) and saved with the store's position, so that the first
 * server start after a bulk import reads one file and looks at no ticket.
 */
static int history_begin(struct csa_ws *ws, struct csa_history **h, struct csa_err *err)
{
	if (*h)
		return CSA_OK;
	if (csa_history_new(h))
		return csa_error(err, CSA_ENOMEM, "out of memory indexing ticket history");
	int rc = csa_history_load(*h, ws, NULL, NULL, err);
	if (rc) {
		csa_history_free(*h);
		*h = NULL;
	}
	return rc;
}

static int history_end(struct csa_ws *ws, struct csa_history *h, struct csa_err *err)
{
	int rc = csa_history_verify(h, ws, 0, NULL, NULL, err);
	if (rc == CSA_OK)
		rc = csa_history_save(h, ws, err);
	return rc;
}

int csa_import_jsonl(struct csa_ws *ws, FILE *in, const char *name, int train, json_t **report,
                     struct csa_err *err)
{
	int64_t t0 = csa_mono_ns();
	struct csa_ticket batch[GROUP];
	struct csa_ticket *ptrs[GROUP];
	size_t nb = 0, line = 0, imported = 0, existing = 0;
	char *buf = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = CSA_OK;
	struct csa_history *hist = NULL;
	const struct csa_config *cfg = csa_ws_config(ws);
	while (rc == CSA_OK && (len = getline(&buf, &cap, in)) >= 0) {
		line++;
		if ((size_t)len > LINE_MAX_BYTES) {
			rc = csa_error(err, CSA_ELIMIT, "%s line %zu: longer than %d bytes", name,
			               line, LINE_MAX_BYTES);
			break;
		}
		size_t k = 0;
		while (k < (size_t)len &&
		       (buf[k] == ' ' || buf[k] == '\t' || buf[k] == '\r' || buf[k] == '\n'))
			k++;
		if (k == (size_t)len)
			continue;
		json_t *h;
		char where[64];
		snprintf(where, sizeof(where), "%s line %zu", name, line);
		if ((rc = csa_json_parse(buf, (size_t)len, where, &h, err)))
			break;
		rc = csa_import_ticket(cfg, h, line, &batch[nb], err);
		json_decref(h);
		if (rc) {
			csa_error_prefix(err, "%s ", name);
			break;
		}
		/* an id already in the workspace is skipped: import is re-runnable */
		struct csa_ticket probe;
		if (csa_store_load(ws->store, batch[nb].id, &probe, NULL) == CSA_OK) {
			csa_ticket_release(&probe);
			csa_ticket_release(&batch[nb]);
			existing++;
			continue;
		}
		ptrs[nb] = &batch[nb];
		if (++nb == GROUP) {
			rc = history_begin(ws, &hist, err);
			if (rc == CSA_OK)
				rc = csa_store_commit_many(ws->store, ptrs, nb, CSA_DOC_ALL, err);
			for (size_t i = 0; i < nb; i++)
				csa_ticket_release(&batch[i]);
			imported += rc ? 0 : nb;
			nb = 0;
		}
	}
	free(buf);
	csa_config_unref(cfg);
	if (rc == CSA_OK && nb && (rc = history_begin(ws, &hist, err)) == CSA_OK) {
		rc = csa_store_commit_many(ws->store, ptrs, nb, CSA_DOC_ALL, err);
		imported += rc ? 0 : nb;
	}
	for (size_t i = 0; i < nb; i++)
		csa_ticket_release(&batch[i]);
	/* the history index is saved now, while the files are in the page
	 * cache (a failed import saves none: the next load finds what it
	 * committed by the store's position and signatures) */
	if (rc == CSA_OK && imported)
		rc = history_end(ws, hist, err);
	csa_history_free(hist);
	if (rc)
		return rc;
	/* and so is the search index, for the same reason: a server would
	 * otherwise read every ticket before its inbox answers */
	struct csa_search *search = NULL;
	if (imported && (rc = csa_search_open_sqlite(ws, 0, &search, err)))
		return rc;
	csa_search_close(search);
	json_t *models = NULL;
	if (train && (rc = csa_import_train(ws, 42, &models, err)))
		return rc;
	*report =
	    json_pack("{s:I, s:I, s:o, s:f}", "tickets", (json_int_t)imported, "skipped_existing",
	              (json_int_t)existing, "models", models ? models : json_null(), "seconds",
	              (double)(csa_mono_ns() - t0) / 1e9);
	return CSA_OK;
}

/* ---- training ------------------------------------------------------------ */

struct row {
	char id[CSA_ID_MAX + 1];
	char *text;
	char feats[CSA_DT_COUNT][256]; /* NUL-separated, nf[t] strings */
	size_t nf[CSA_DT_COUNT];
	char label[CSA_DT_COUNT][128];
};

struct collect {
	struct csa_ws *ws;
	struct row *v;
	size_t n, cap;
	int rc;
};

/* The latest human-confirmed value of each decision type in T. */
static void confirmed_values(const json_t *t, char label[CSA_DT_COUNT][128])
{
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(t, "agent_decisions"), i, d)
	{
		if (!json_is_true(json_object_get(d, "human_confirmed")))
			continue;
		const char *agent = csa_json_str(d, "agent");
		json_t *x = json_object_get(d, "decision");
		if (!agent)
			continue;
		if (strcmp(agent, "classifier") == 0) {
			if (csa_json_str(x, "category"))
				snprintf(label[CSA_DT_CATEGORY], 128, "%s",
				         csa_json_str(x, "category"));
			if (csa_json_str(x, "priority"))
				snprintf(label[CSA_DT_PRIORITY], 128, "%s",
				         csa_json_str(x, "priority"));
		} else if (strcmp(agent, "selector") == 0 && csa_json_str(x, "strategy")) {
			snprintf(label[CSA_DT_STRATEGY], 128, "%s", csa_json_str(x, "strategy"));
		} else if (strcmp(agent, "escalation") == 0 && csa_json_str(x, "escalation_path")) {
			snprintf(label[CSA_DT_ESCALATION], 128, "%s",
			         csa_json_str(x, "escalation_path"));
		}
	}
}

static int collect_one(void *vctx, const char *id, const json_t *t, const char *status)
{
	(void)t, (void)status;
	struct collect *c = vctx;
	struct csa_ticket tk;
	if (csa_store_load(c->ws->store, id, &tk, NULL))
		return 0;
	struct row r;
	memset(&r, 0, sizeof(r));
	snprintf(r.id, sizeof(r.id), "%s", id);
	confirmed_values(tk.t, r.label);
	if (!r.label[CSA_DT_CATEGORY][0]) {
		csa_ticket_release(&tk);
		return 0; /* nothing a human decided */
	}
	r.text = csa_pipeline_text(tk.e, 4000, 1);
	json_t *cust = json_object_get(json_object_get(tk.e, "participants"), "customer");
	struct csa_sentiment s;
	csa_sentiment_analyze(r.text ? r.text : "", r.text ? strlen(r.text) : 0, &s);
	struct csa_agent_input in = {
	    .tk = &tk,
	    .text = r.text,
	    .tier = csa_json_str(cust, "subscription_tier"),
	    .platform = csa_json_str(tk.e, "platform"),
	    .sentiment = s.score,
	};
	const char *ptrs[16];
	for (int ty = 0; ty < CSA_DT_COUNT; ty++)
		r.nf[ty] = csa_agent_features((enum csa_dtype)ty, &in, r.label[CSA_DT_CATEGORY],
		                              r.label[CSA_DT_PRIORITY], r.feats[ty],
		                              sizeof(r.feats[ty]), ptrs, 16);
	csa_ticket_release(&tk);
	if (!r.text)
		return CSA_ENOMEM;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 1024;
		struct row *nv = realloc(c->v, cap * sizeof(*nv));
		if (!nv) {
			free(r.text);
			return CSA_ENOMEM;
		}
		c->v = nv;
		c->cap = cap;
	}
	c->v[c->n++] = r;
	return 0;
}

size_t csa_import_labels(const struct csa_config *cfg, enum csa_dtype t, const char **out,
                         size_t max)
{
	static const char *const lists[] = {"taxonomy.categories", "taxonomy.priorities",
	                                    "taxonomy.strategies"};
	size_t n = 0;
	if (t == CSA_DT_ESCALATION) {
		out[n++] = "NONE";
		const char *key;
		json_t *v;
		json_object_foreach(csa_config_get(cfg, "escalation_paths"), key, v)
		{
			if (n < max)
				out[n++] = key;
		}
		return n;
	}
	size_t i;
	json_t *v;
	json_array_foreach(csa_config_get(cfg, lists[t]), i, v)
	{
		if (n < max)
			out[n++] = json_string_value(v);
	}
	return n;
}

/* One decision type's model to train: its rows, and what training gave. */
struct train_job {
	int type;
	const char *labels[1024]; /* borrowed from the configuration */
	size_t nl;
	struct csa_drow *rows;
	const char *(*fp)[16];
	size_t nr;
	unsigned seed;
	struct csa_feat_memo *memo; /* borrowed, may be NULL */
	int skip; /* not decided by this workspace, or too few human decisions */
	struct csa_dmodel *m;
	struct csa_heldout ho; /* measured on the rows held out */
	double seconds;
	int rc;
	struct csa_err err;
};

struct train_jobs {
	struct train_job *job;
	atomic_size_t next;
};

static void train_one(struct train_job *j)
{
	int64_t t0 = csa_mono_ns();
	j->rc = csa_dmodel_train_memo(j->labels, j->nl, j->rows, j->nr, 5, j->seed, j->memo, &j->m,
	                              &j->ho, &j->err);
	j->seconds = (double)(csa_mono_ns() - t0) / 1e9;
}

/* Takes jobs until none is left: on the caller's thread and on one more. */
static void *train_worker(void *arg)
{
	struct train_jobs *js = arg;
	size_t k;
	while ((k = atomic_fetch_add(&js->next, 1)) < CSA_DT_COUNT)
		if (!js->job[k].skip)
			train_one(&js->job[k]);
	return NULL;
}

/* Train and save the models from 'n' rows in ticket-id order (v[i]
 * borrowed; the array itself is shuffled). The decision types' models are
 * independent and each one's training is deterministic (its seed, its
 * rows in order), so they are trained on two threads where there are two
 * cores, then saved and reported in type order as one after the other
 * would be: the same files, the first failure in type order returned. */
static int train_rows(struct csa_ws *ws, struct row **v, size_t n, unsigned seed,
                      int64_t covers, struct csa_feat_memo *memo, json_t **report,
                      struct csa_err *err)
{
	const struct csa_config *cfg = csa_ws_config(ws);
	int rc = CSA_OK;
	json_t *rep = json_object();
	if (n < 20)
		rc = csa_error(err, CSA_ESTATE,
		               "only %zu tickets with human decisions: at least 20 are needed to "
		               "train",
		               n);
	/* rows are in ticket-id order; shuffle deterministically so the
	 * hold-out is a fair sample */
	uint64_t s = 0x9E3779B97F4A7C15ULL ^ seed;
	for (size_t i = n; rc == CSA_OK && i > 1; i--) {
		s ^= s >> 12;
		s ^= s << 25;
		s ^= s >> 27;
		size_t j = (size_t)((s * 2685821657736338717ULL) % i);
		struct row *tmp = v[i - 1];
		v[i - 1] = v[j];
		v[j] = tmp;
	}
	struct train_jobs js = {.job = calloc(CSA_DT_COUNT, sizeof(*js.job))};
	if (!js.job)
		rc = rc ? rc : csa_error(err, CSA_ENOMEM, "out of memory training");
	for (int t = 0; rc == CSA_OK && t < CSA_DT_COUNT; t++) {
		struct train_job *j = &js.job[t];
		j->type = t;
		j->seed = seed;
		j->memo = memo;
		j->nl = csa_import_labels(cfg, (enum csa_dtype)t, j->labels, 1024);
		j->rows = calloc(n ? n : 1, sizeof(*j->rows));
		j->fp = calloc(n ? n : 1, sizeof(*j->fp));
		if (!j->rows || !j->fp) {
			rc = csa_error(err, CSA_ENOMEM, "out of memory training");
			break;
		}
		for (size_t i = 0; i < n; i++) {
			if (!v[i]->label[t][0])
				continue;
			/* the features were written as consecutive strings */
			const char *q = v[i]->feats[t];
			for (size_t f = 0; f < v[i]->nf[t]; f++, q += strlen(q) + 1)
				j->fp[j->nr][f] = q;
			j->rows[j->nr] = (struct csa_drow){v[i]->text, j->fp[j->nr], v[i]->nf[t],
			                                   v[i]->label[t]};
			j->nr++;
		}
		/* not decided by this workspace, or no human decisions yet */
		j->skip = j->nr < 20 || !csa_config_in_list(cfg, "automation.decision_types",
		                                           csa_dtype_name((enum csa_dtype)t));
	}
	if (rc == CSA_OK) {
		pthread_t th;
		int two = sysconf(_SC_NPROCESSORS_ONLN) > 1 &&
		          pthread_create(&th, NULL, train_worker, &js) == 0;
		train_worker(&js);
		if (two)
			pthread_join(th, NULL);
	}
	for (int t = 0; rc == CSA_OK && t < CSA_DT_COUNT; t++) {
		struct train_job *j = &js.job[t];
		if (j->skip)
			continue;
		if ((rc = j->rc) && err)
			*err = j->err;
		if (rc == CSA_OK)
			rc = csa_dmodel_save(j->m, ws->blobs, (enum csa_dtype)t, err);
		if (rc == CSA_OK)
			rc = csa_dmodel_save_heldout(&j->ho, j->nr, ws->blobs, (enum csa_dtype)t, err);
		/* after the model: see models_signature() in flow/pipeline.c */
		if (rc == CSA_OK && covers >= 0)
			rc = csa_online_mark_saved(ws->blobs, ws->learnlog, (enum csa_dtype)t,
			                           covers, err);
		double acc = j->ho.n ? (double)j->ho.correct / (double)j->ho.n : NAN;
		if (rc == CSA_OK)
			json_object_set_new(rep, csa_dtype_name((enum csa_dtype)t),
			                    json_pack("{s:f, s:I, s:I, s:I, s:f}", "heldout_accuracy",
			                              acc, "heldout_n", (json_int_t)j->ho.n, "n",
			                              (json_int_t)j->nr, "labels", (json_int_t)j->nl,
			                              "train_seconds", j->seconds));
	}
	for (int t = 0; js.job && t < CSA_DT_COUNT; t++) {
		csa_dmodel_free(js.job[t].m);
		free(js.job[t].rows);
		free(js.job[t].fp);
	}
	free(js.job);
	csa_config_unref(cfg);
	if (rc) {
		json_decref(rep);
		return rc;
	}
	*report = rep;
	return CSA_OK;
}

static void rows_free(struct collect *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i].text);
	free(c->v);
	c->v = NULL;
	c->n = c->cap = 0;
}

/* Every ticket's row, in id order (the scan's). */
static int collect_all(struct csa_ws *ws, struct collect *c, struct csa_err *err)
{
	int rc = csa_store_scan(ws->store, NULL, collect_one, c, err);
	if (rc == CSA_ENOMEM)
		rc = csa_error(err, rc, "out of memory collecting training data");
	return rc;
}

/* The position of the online-learning log the models about to be trained
 * cover (flow/online.h): read before the training data, so every
 * correction up to it is in the tickets read; -1 without a log. */
static int covered_position(struct csa_ws *ws, int64_t *covers, struct csa_err *err)
{
	*covers = -1;
	return ws->learnlog ? csa_learnlog_head(ws->learnlog, covers, err) : CSA_OK;
}

/* Pointers to the rows of 'c', for train_rows() to shuffle. */
static int train_collected(struct csa_ws *ws, struct collect *c, unsigned seed, int64_t covers,
                           struct csa_feat_memo *memo, json_t **report, struct csa_err *err)
{
	struct row **v = malloc((c->n ? c->n : 1) * sizeof(*v));
	if (!v)
		return csa_error(err, CSA_ENOMEM, "out of memory training");
	for (size_t i = 0; i < c->n; i++)
		v[i] = &c->v[i];
	int rc = train_rows(ws, v, c->n, seed, covers, memo, report, err);
	free(v);
	return rc;
}

int csa_import_train(struct csa_ws *ws, unsigned seed, json_t **report, struct csa_err *err)
{
	struct collect c = {.ws = ws};
	int64_t covers;
	int rc = covered_position(ws, &covers, err);
	if (rc == CSA_OK)
		rc = collect_all(ws, &c, err);
	if (rc == CSA_OK)
		rc = train_collected(ws, &c, seed, covers, NULL, report, err);
	rows_free(&c);
	return rc;
}

/* ---- training data kept between trainings ------------------------------- */

struct csa_train_cache {
	struct csa_ws *ws;
	struct collect rows; /* every ticket's row, in id order */
	int collected;       /* rows hold the whole store as of the last training */
	pthread_mutex_t mu;  /* guards the noted ids: commits may come from any thread */
	char **noted;        /* ids committed since the last training */
	size_t nnoted, capnoted;
	int lost; /* a note could not be kept: collect everything again */
	/* the rows' texts' features, extracted once while the text is the
	 * same (a row's text is kept as long as its ticket is not committed
	 * again, and training extracted it for every type, every time) */
	struct csa_feat_memo *memo;
};

static void cache_on_commit(void *ctx, struct csa_ticket *const *tks, size_t n)
{
	struct csa_train_cache *tc = ctx;
	pthread_mutex_lock(&tc->mu);
	for (size_t i = 0; i < n && !tc->lost; i++) {
		if (tc->nnoted == tc->capnoted) {
			size_t cap = tc->capnoted ? tc->capnoted * 2 : 256;
			char **nv = realloc(tc->noted, cap * sizeof(*nv));
			if (!nv) {
				tc->lost = 1;
				break;
			}
			tc->noted = nv;
			tc->capnoted = cap;
		}
		if (!(tc->noted[tc->nnoted] = strdup(tks[i]->id)))
			tc->lost = 1;
		else
			tc->nnoted++;
	}
	pthread_mutex_unlock(&tc->mu);
}

int csa_train_cache_new(struct csa_ws *ws, struct csa_train_cache **out, struct csa_err *err)
{
	struct csa_train_cache *tc = calloc(1, sizeof(*tc));
	if (!tc)
		return csa_error(err, CSA_ENOMEM, "out of memory for the training cache");
	tc->ws = ws;
	tc->rows.ws = ws;
	if (!(tc->memo = csa_feat_memo_new())) {
		free(tc);
		return csa_error(err, CSA_ENOMEM, "out of memory for the training cache");
	}
	pthread_mutex_init(&tc->mu, NULL);
	if (csa_store_observe(ws->store, cache_on_commit, tc)) {
		pthread_mutex_destroy(&tc->mu);
		csa_feat_memo_free(tc->memo);
		free(tc);
		return csa_error(err, CSA_ELIMIT, "too many observers of the store for the "
		                                  "training cache");
	}
	*out = tc;
	return CSA_OK;
}

void csa_train_cache_free(struct csa_train_cache *tc)
{
	if (!tc)
		return;
	csa_store_unobserve(tc->ws->store, cache_on_commit, tc);
	rows_free(&tc->rows);
	for (size_t i = 0; i < tc->nnoted; i++)
		free(tc->noted[i]);
	free(tc->noted);
	pthread_mutex_destroy(&tc->mu);
	csa_feat_memo_free(tc->memo);
	free(tc);
}

static int id_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The index of the first row of 'c' whose id is not below 'id'. */
static size_t row_lower_bound(const struct collect *c, const char *id)
{
	size_t lo = 0, hi = c->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(c->v[mid].id, id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Ticket 'id' read again: its row replaced, added or dropped in place. */
static int recollect_one(struct csa_train_cache *tc, const char *id)
{
	struct collect one = {.ws = tc->ws};
	int rc = collect_one(&one, id, NULL, NULL);
	struct collect *c = &tc->rows;
	size_t at = row_lower_bound(c, id);
	int had = at < c->n && strcmp(c->v[at].id, id) == 0;
	if (rc == CSA_OK && one.n == 1 && !had && c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 1024;
		struct row *nv = realloc(c->v, cap * sizeof(*nv));
		if (!nv)
			rc = CSA_ENOMEM;
		else {
			c->v = nv;
			c->cap = cap;
		}
	}
	if (rc) {
		rows_free(&one);
		return rc;
	}
	if (had) {
		free(c->v[at].text);
		if (one.n == 1) {
			c->v[at] = one.v[0];
		} else {
			memmove(&c->v[at], &c->v[at + 1], (c->n - at - 1) * sizeof(*c->v));
			c->n--;
		}
	} else if (one.n == 1) {
		memmove(&c->v[at + 1], &c->v[at], (c->n - at) * sizeof(*c->v));
		c->v[at] = one.v[0];
		c->n++;
	}
	free(one.v); /* the row itself moved into c */
	return CSA_OK;
}

int csa_import_train_cached(struct csa_train_cache *tc, unsigned seed, json_t **report,
                            struct csa_err *err)
{
	pthread_mutex_lock(&tc->mu);
	char **noted = tc->noted;
	size_t nnoted = tc->nnoted;
	int lost = tc->lost;
	tc->noted = NULL;
	tc->nnoted = tc->capnoted = 0;
	tc->lost = 0;
	pthread_mutex_unlock(&tc->mu);
	int64_t covers;
	int rc = covered_position(tc->ws, &covers, err);
	if (rc) {
		for (size_t i = 0; i < nnoted; i++)
			free(noted[i]);
		free(noted);
		tc->collected = 0; /* the noted ids are gone: read everything next time */
		return rc;
	}
	if (!tc->collected || lost) {
		rows_free(&tc->rows);
		rc = collect_all(tc->ws, &tc->rows, err);
	} else {
		if (nnoted)
			qsort(noted, nnoted, sizeof(*noted), id_cmp);
		for (size_t i = 0; rc == CSA_OK && i < nnoted; i++)
			if (i == 0 || strcmp(noted[i], noted[i - 1]) != 0)
				rc = recollect_one(tc, noted[i]);
		if (rc == CSA_ENOMEM)
			rc = csa_error(err, rc, "out of memory collecting training data");
	}
	for (size_t i = 0; i < nnoted; i++)
		free(noted[i]);
	free(noted);
	tc->collected = rc == CSA_OK;
	/* texts this training does not ask for are let go */
	csa_feat_memo_round(tc->memo);
	if (rc == CSA_OK)
		rc = train_collected(tc->ws, &tc->rows, seed, covers, tc->memo, report, err);
	return rc;
}
