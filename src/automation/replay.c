/* The replay simulator. */
#include "automation/replay.h"
#include "agents/dmodel.h"
#include "automation/control.h"
#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/import.h"
#include "flow/pipeline.h"
#include "model/dataset.h"
#include "store/ticket.h"
#include "store/ws.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void csa_replay_opts_default(struct csa_replay_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->human_accuracy = 1.0;
	o->seed = 1;
	o->bootstrap = 500;
	o->retrain = 1000;
	o->tick = 25;
}

/* ---- input: import-format JSONL or CSV rows as tickets --------------------- */

struct stream {
	json_t **t; /* import-format tickets with "gold" */
	size_t n, cap;
};

static int push(struct stream *s, json_t *t)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 4096;
		json_t **nt = realloc(s->t, cap * sizeof(*nt));
		if (!nt)
			return CSA_ENOMEM;
		s->t = nt;
		s->cap = cap;
	}
	s->t[s->n++] = t;
	return CSA_OK;
}

static int load_jsonl(const char *path, struct stream *s, struct csa_err *err)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return csa_error_sys(err, "cannot open '%s'", path);
	char *buf = NULL;
	size_t cap = 0, line = 0;
	ssize_t n;
	int rc = CSA_OK;
	while (rc == CSA_OK && (n = getline(&buf, &cap, f)) >= 0) {
		line++;
		if (n <= 1)
			continue;
		char where[300];
		snprintf(where, sizeof(where), "%s line %zu", path, line);
		json_t *t;
		if ((rc = csa_json_parse(buf, (size_t)n, where, &t, err)))
			break;
		if (!json_is_object(json_object_get(t, "gold"))) {
			json_decref(t);
			rc = csa_error(err, CSA_EINVAL, "%s: no 'gold' decisions", where);
			break;
		}
		if (push(s, t)) {
			json_decref(t);
			rc = csa_error(err, CSA_ENOMEM, "out of memory reading '%s'", path);
		}
	}
	free(buf);
	fclose(f);
	return rc;
}

static int load_csv(const char *path, const char *tc, const char *lc, uint64_t seed,
                    struct stream *s, struct csa_err *err)
{
	struct csa_dataset ds = {0};
	int rc = csa_dataset_load(path, tc, lc, &ds, err);
	/* Rows carry no time, and labelled files are often sorted by label:
	 * streamed in file order whole classes would arrive in blocks. Each
	 * file is shuffled (with the seed), files keep their order. */
	uint64_t r = seed * 0x9E3779B97F4A7C15ULL + 1;
	for (size_t i = ds.n; rc == CSA_OK && i > 1; i--) {
		r ^= r << 13;
		r ^= r >> 7;
		r ^= r << 17;
		size_t j = (size_t)(r % i);
		char *t = ds.text[i - 1], *l = ds.label[i - 1];
		ds.text[i - 1] = ds.text[j];
		ds.label[i - 1] = ds.label[j];
		ds.text[j] = t;
		ds.label[j] = l;
	}
	for (size_t i = 0; rc == CSA_OK && i < ds.n; i++) {
		char id[32];
		snprintf(id, sizeof(id), "R%07zu", s->n + 1);
		json_t *t = json_pack("{s:s, s:[{s:s, s:s}], s:{s:s, s:s, s:s}}", "ticket_id", id,
		                      "messages", "sender", "customer", "content", ds.text[i],
		                      "gold", "category", ds.label[i], "priority", "MEDIUM",
		                      "strategy", "TEMPLATE_RESPONSE");
		if (!t || push(s, t))
			rc = csa_error(err, CSA_ENOMEM, "out of memory reading '%s'", path);
	}
	csa_dataset_release(&ds);
	return rc;
}

/* ---- the simulated human ------------------------------------------------------ */

struct rng {
	uint64_t s;
};

static double unif(struct rng *r)
{
	r->s ^= r->s << 13;
	r->s ^= r->s >> 7;
	r->s ^= r->s << 17;
	return (double)(r->s >> 11) / 9007199254740992.0;
}

static const char *gold_of(const json_t *gold, const char *type)
{
	if (strcmp(type, "escalation") == 0) {
		const char *p = csa_json_str(gold, "escalation_path");
		return p ? p : "NONE";
	}
	return csa_json_str(gold, type);
}

/* ---- statistics ------------------------------------------------------------------ */

struct tally {
	long tickets, decisions, autonomous, auto_correct, critical_errors, human;
};

struct phase_row {
	int phase;
	long start;
	struct tally t;
};

static json_t *tally_json(const struct tally *t)
{
	return json_pack("{s:I, s:I, s:o, s:o, s:I, s:I}", "tickets", (json_int_t)t->tickets,
	                 "decisions", (json_int_t)t->decisions, "autonomous_rate",
	                 t->decisions ? json_real((double)t->autonomous / (double)t->decisions)
	                              : json_null(),
	                 "autonomous_accuracy",
	                 t->autonomous ? json_real((double)t->auto_correct / (double)t->autonomous)
	                               : json_null(),
	                 "critical_errors", (json_int_t)t->critical_errors, "human_decisions",
	                 (json_int_t)t->human);
}

static void add(struct tally *t, const struct tally *d)
{
	t->tickets += d->tickets;
	t->decisions += d->decisions;
	t->autonomous += d->autonomous;
	t->auto_correct += d->auto_correct;
	t->critical_errors += d->critical_errors;
	t->human += d->human;
}

/* A decision's confidence and whether its value was the gold one. */
struct conf_pt {
	double conf;
	int right;
};

static int by_confidence_desc(const void *a, const void *b)
{
	double x = ((const struct conf_pt *)a)->conf, y = ((const struct conf_pt *)b)->conf;
	return x < y ? 1 : x > y ? -1 : 0;
}

/*
 * The hindsight bound: of decisions pts[0..n) (reordered), the most that
 * one confidence threshold chosen knowing every outcome would have let
 * through at 'target' accuracy or better. What the controller automates
 * is below it by its safety margin (bounds on accuracy, per-segment
 * evidence, the phases), which this shows in figures.
 */
static json_t *hindsight_json(struct conf_pt *pts, size_t n, double target)
{
	qsort(pts, n, sizeof(*pts), by_confidence_desc);
	size_t best = 0, right = 0, best_right = 0;
	for (size_t k = 0; k < n; k++) {
		right += (size_t)pts[k].right;
		/* a threshold passes all decisions of equal confidence or none */
		if (k + 1 < n && pts[k + 1].conf == pts[k].conf)
			continue;
		if ((double)right >= target * (double)(k + 1)) {
			best = k + 1;
			best_right = right;
		}
	}
	return json_pack("{s:f, s:I, s:o, s:o, s:o}", "target_accuracy", target, "decisions",
	                 (json_int_t)n, "threshold",
	                 best ? json_real(pts[best - 1].conf) : json_null(), "coverage",
	                 n ? json_real((double)best / (double)n) : json_null(), "accuracy",
	                 best ? json_real((double)best_right / (double)best) : json_null());
}

/* ---- SVG ------------------------------------------------------------------------- */

static int write_svg(const char *path, const double *rate, const double *acc, size_t n,
                     const struct phase_row *ph, size_t nph, struct csa_err *err)
{
	size_t cap = 1 << 16, len = 0;
	char *b = malloc(cap);
	if (!b)
		return csa_error(err, CSA_ENOMEM, "out of memory drawing '%s'", path);
#define P(...)                                                                                     \
	do {                                                                                       \
		int w_ = snprintf(b + len, cap - len, __VA_ARGS__);                                \
		if (w_ > 0 && len + (size_t)w_ + 256 >= cap) {                                     \
			cap = (cap + (size_t)w_) * 2;                                              \
			char *nb_ = realloc(b, cap);                                               \
			if (!nb_) {                                                                \
				free(b);                                                           \
				return csa_error(err, CSA_ENOMEM, "out of memory");                \
			}                                                                          \
			b = nb_;                                                                   \
			w_ = snprintf(b + len, cap - len, __VA_ARGS__);                            \
		}                                                                                  \
		len += (size_t)(w_ > 0 ? w_ : 0);                                                  \
	} while (0)
	const double W = 900, H = 360, L = 50, T = 20, PW = 820, PH = 300;
	P("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
	  "font-family=\"sans-serif\" font-size=\"11\">\n",
	  W, H + 20);
	P("<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"#fafafa\" "
	  "stroke=\"#999\"/>\n",
	  L, T, PW, PH);
	for (int g = 0; g <= 4; g++)
		P("<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text "
		  "x=\"%.0f\" "
		  "y=\"%.1f\" text-anchor=\"end\">%d%%</text>\n",
		  L, L + PW, T + PH * g / 4.0, T + PH * g / 4.0, L - 4, T + PH * g / 4.0 + 4,
		  100 - 25 * g);
	for (size_t i = 0; i < nph; i++) {
		double x = L + PW * (double)ph[i].start / (double)(n ? n : 1);
		P("<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"#c33\" "
		  "stroke-dasharray=\"4 3\"/><text x=\"%.1f\" y=\"%.0f\" "
		  "fill=\"#c33\">P%d</text>\n",
		  x, x, T, T + PH, x + 3, T + 12, ph[i].phase);
	}
	const double *series[2] = {rate, acc};
	const char *colour[2] = {"#1f77b4", "#2ca02c"};
	for (int s = 0; s < 2; s++) {
		P("<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
		  colour[s]);
		for (size_t i = 0; i<n; i += n> 2000 ? n / 2000 : 1)
			if (!isnan(series[s][i]))
				P("%.1f,%.1f ", L + PW * (double)i / (double)n,
				  T + PH * (1 - series[s][i]));
		P("\"/>\n");
	}
	P("<text x=\"%.0f\" y=\"%.0f\" fill=\"%s\">autonomous rate</text><text x=\"%.0f\" "
	  "y=\"%.0f\" fill=\"%s\">autonomous accuracy</text><text x=\"%.0f\" y=\"%.0f\" "
	  "text-anchor=\"end\">tickets (rolling window of 500) - %zu</text>\n</svg>\n",
	  L, H + 14, colour[0], L + 130, H + 14, colour[1], L + PW, H + 14, n);
#undef P
	int rc = csa_fs_write_atomic(path, b, len, err);
	free(b);
	return rc;
}

/* ---- the run ----------------------------------------------------------------------- */

static void category_only(const struct stream *s, json_t *cfg);

static int setup_workspace(const struct csa_replay_opts *o, const struct stream *s, char *dir,
                           size_t dirsz, struct csa_err *err)
{
	if (o->workdir)
		snprintf(dir, dirsz, "%s", o->workdir);
	else {
		const char *tmp = getenv("TMPDIR");
		snprintf(dir, dirsz, "%s/csa-replay-XXXXXX", tmp && *tmp ? tmp : "/tmp");
		if (!mkdtemp(dir))
			return csa_error_sys(err, "cannot create a scratch workspace");
	}
	int rc = csa_ws_init(dir, err);
	if (rc || (!o->text_col && !o->config && !o->set))
		return rc;
	char path[4200];
	snprintf(path, sizeof(path), "%s/csa.json", dir);
	json_t *cfg, *team = NULL;
	if (o->config && (rc = csa_json_load_file(o->config, 1 << 20, &team, err)))
		return rc;
	if (team && !json_is_object(team)) {
		json_decref(team);
		return csa_error(err, CSA_EINVAL, "'%s': expected a JSON object (csa.json keys)",
		                 o->config);
	}
	if ((rc = csa_json_load_file(path, 1 << 20, &cfg, err))) {
		json_decref(team);
		return rc;
	}
	if (o->text_col)
		category_only(s, cfg);
	/* the team's own settings (thresholds, review budget, ...), then a
	 * sweep's variant, last */
	if (team)
		csa_json_merge(cfg, team);
	json_decref(team);
	if (o->set)
		csa_json_merge(cfg, o->set);
	char *txt;
	size_t len;
	if ((rc = csa_json_dump(cfg, 1, &txt, &len, err)) == CSA_OK) {
		rc = csa_fs_write_atomic(path, txt, len, err);
		free(txt);
	}
	json_decref(cfg);
	return rc;
}

/* Category-only data: its labels are the taxonomy, and only categories are
 * decided. */
static void category_only(const struct stream *s, json_t *cfg)
{
	json_t *cats = json_array();
	for (size_t i = 0; i < s->n; i++) {
		json_t *l = json_object_get(json_object_get(s->t[i], "gold"), "category");
		size_t k;
		json_t *v;
		int seen = 0;
		json_array_foreach(cats, k, v) seen |= json_equal(v, l);
		if (!seen)
			json_array_append(cats, l);
	}
	json_object_set_new(json_object_get(cfg, "taxonomy"), "categories", cats);
	json_object_set_new(cfg, "automation", json_pack("{s:[s]}", "decision_types", "category"));
}

/*
 * Removing the scratch workspace. A replay leaves three files per ticket,
 * and on a file system that discards freed blocks at once (ext4 mounted
 * with discard) each unlink waits for the disk: removing 60,000 files one
 * after the other was seconds of a 20,000-ticket replay spent waiting. The
 * files are removed by several threads at once (they wait, they do not
 * compute, so more threads than cores is right), then the directories,
 * deepest first. What is removed does not depend on the order.
 */
#define RM_THREADS 16

struct rm_list {
	char **files, **dirs; /* dirs after their contents (FTW_DEPTH) */
	size_t nfiles, ndirs, capfiles, capdirs;
	int oom;
	char failed[4096]; /* the entry nftw() could not read */
};

/* nftw()'s callback has no argument of ours, and a replay walks its
 * workspace on one thread: a thread-local list is enough. */
static _Thread_local struct rm_list *rm_walk;

static int rm_push(char ***v, size_t *n, size_t *cap, const char *path)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 1024;
		char **nv = realloc(*v, c * sizeof(*nv));
		if (!nv)
			return -1;
		*v = nv;
		*cap = c;
	}
	if (!((*v)[*n] = strdup(path)))
		return -1;
	(*n)++;
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st, (void)ftw;
	struct rm_list *l = rm_walk;
	if (type == FTW_DNR || type == FTW_NS) {
		snprintf(l->failed, sizeof(l->failed), "%s", path);
		errno = EACCES;
		return -1;
	}
	/* FTW_PHYS: a symbolic link is removed as a file, never followed out
	 * of the scratch workspace */
	int r = type == FTW_DP ? rm_push(&l->dirs, &l->ndirs, &l->capdirs, path)
	                       : rm_push(&l->files, &l->nfiles, &l->capfiles, path);
	if (r) {
		l->oom = 1;
		errno = ENOMEM;
	}
	return r;
}

struct rm_work {
	struct rm_list *l;
	atomic_size_t next;
	atomic_size_t first_failed; /* the lowest index that failed, or SIZE_MAX */
	int err;                    /* its errno */
	pthread_mutex_t mu;
};

static void *rm_files(void *arg)
{
	struct rm_work *w = arg;
	size_t i;
	while ((i = atomic_fetch_add(&w->next, 1)) < w->l->nfiles) {
		if (unlink(w->l->files[i]) == 0 || errno == ENOENT)
			continue;
		int e = errno;
		pthread_mutex_lock(&w->mu);
		if (i < atomic_load(&w->first_failed)) {
			atomic_store(&w->first_failed, i);
			w->err = e;
		}
		pthread_mutex_unlock(&w->mu);
	}
	return NULL;
}

static void rm_list_free(struct rm_list *l)
{
	for (size_t i = 0; i < l->nfiles; i++)
		free(l->files[i]);
	for (size_t i = 0; i < l->ndirs; i++)
		free(l->dirs[i]);
	free(l->files);
	free(l->dirs);
}

/* Remove the scratch workspace 'dir' and everything in it; the first entry
 * that could not be removed (in the walk's order) is named. */
static int remove_tree(const char *dir, struct csa_err *err)
{
	struct rm_list l = {0};
	rm_walk = &l;
	int rc = CSA_OK;
	if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		rc = l.oom ? csa_error(err, CSA_ENOMEM,
		                       "out of memory removing the scratch "
		                       "workspace '%s'",
		                       dir)
		           : csa_error_sys(err, "cannot remove '%s' of the scratch workspace '%s'",
		                           l.failed[0] ? l.failed : dir, dir);
	rm_walk = NULL;
	struct rm_work w = {.l = &l};
	atomic_init(&w.next, 0);
	atomic_init(&w.first_failed, SIZE_MAX);
	pthread_mutex_init(&w.mu, NULL);
	pthread_t th[RM_THREADS];
	size_t started = 0;
	while (rc == CSA_OK && started < RM_THREADS && started * 256 < l.nfiles &&
	       pthread_create(&th[started], NULL, rm_files, &w) == 0)
		started++;
	if (rc == CSA_OK)
		rm_files(&w); /* this thread too, and alone when no thread started */
	for (size_t t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	pthread_mutex_destroy(&w.mu);
	size_t bad = atomic_load(&w.first_failed);
	if (rc == CSA_OK && bad != SIZE_MAX) {
		errno = w.err;
		rc = csa_error_sys(err, "cannot remove '%s' of the scratch workspace '%s'",
		                   l.files[bad], dir);
	}
	for (size_t i = 0; rc == CSA_OK && i < l.ndirs; i++)
		if (rmdir(l.dirs[i]) != 0)
			rc = csa_error_sys(err, "cannot remove '%s' of the scratch workspace '%s'",
			                   l.dirs[i], dir);
	rm_list_free(&l);
	return rc;
}

/* ---- the run ------------------------------------------------------------ */

/*
 * The clock while ticket k of the stream (bootstrap included) is worked:
 * its created_at; for one without (CSV rows, an export without times) one
 * second after the ticket before it, from a fixed start. The controller
 * reads the clock (review times, rollback points, grace periods), so a
 * replay of undated tickets on the real clock gave another report at
 * every run; on this one it gives the same.
 */
#define UNDATED_START_MS 1767225600000LL /* 2026-01-01T00:00:00Z */

static int64_t arrival_ms(const json_t *h, size_t k, int *dated)
{
	int64_t created;
	int has = csa_ts_parse(csa_json_str(h, "created_at"), &created) == 0;
	if (dated)
		*dated = has;
	return has ? created : UNDATED_START_MS + (int64_t)k * 1000;
}

static void set_clock(int64_t ms)
{
	char now[32];
	snprintf(now, sizeof(now), "%lld", (long long)ms);
	setenv("CSA_FAKE_NOW_MS", now, 1);
}

/* One replay's state, from the stream read to the report written. */
struct replay {
	const struct csa_replay_opts *o;
	struct stream s;
	char dir[4096]; /* the scratch (or --workdir) workspace */
	struct csa_ws *ws;
	struct csa_pipeline *p;
	struct csa_auto *a;
	struct csa_train_cache *train; /* the models' training rows, between retrainings */
	struct rng rng;                /* the simulated people's choices */
	size_t n;                      /* tickets after the bootstrap */
	struct tally *per;             /* per ticket */
	int *phase_at;                 /* the workspace's phase when each ticket arrived */
	json_t *types;                 /* per decision type counters */
	json_t *events;                /* the controller's events, with the ticket they came at */
	/* the decision types are fixed for the replay: the first snapshot's */
	const struct csa_config *cfg0;
	json_t *dtypes;
	struct phase_row ph[64]; /* phases as the stream lived them */
	size_t nph;
	/* the final fifth's decisions: confidence and whether it was right */
	struct conf_pt *pts;
	size_t npts, cap;
	int oom;
};

static int load_stream(const struct csa_replay_opts *o, struct stream *s, struct csa_err *err)
{
	char *files = strdup(o->data ? o->data : "");
	int rc = CSA_OK;
	if (!files)
		return csa_error(err, CSA_ENOMEM, "out of memory reading the replay's --data");
	for (char *save = NULL, *f = strtok_r(files, ",", &save); f && rc == CSA_OK;
	     f = strtok_r(NULL, ",", &save))
		rc = o->text_col ? load_csv(f, o->text_col, o->label_col, o->seed, s, err)
		                 : load_jsonl(f, s, err);
	free(files);
	if (rc == CSA_OK && s->n <= o->bootstrap)
		rc = csa_error(err, CSA_EINVAL,
		               "replay needs more than the %u bootstrap tickets, got %zu",
		               o->bootstrap, s->n);
	return rc;
}

/* The workspace, its history (the first tickets, which the team already
 * decided), the models trained on it, the pipeline and the controller. */
static int open_replay(struct replay *r, struct csa_err *err)
{
	const struct csa_replay_opts *o = r->o;
	int rc = setup_workspace(o, &r->s, r->dir, sizeof(r->dir), err);
	/* A --workdir is kept, to be served or looked into afterwards, so its
	 * tickets go to its files; a workspace removed at the end keeps them
	 * in memory (the same commits and loads, no file written): the report
	 * is the same either way. */
	if (rc == CSA_OK)
		rc = (o->workdir ? csa_ws_open_scratch : csa_ws_open_memory)(r->dir, &r->ws, err);
	for (size_t i = 0; rc == CSA_OK && i < o->bootstrap; i++) {
		struct csa_ticket tk;
		/* a dated ticket's import takes its own times; the clock stays
		 * real there, as it always was for them */
		int dated;
		int64_t at = arrival_ms(r->s.t[i], i, &dated);
		if (!dated)
			set_clock(at);
		const struct csa_config *cfg = csa_ws_config(r->ws);
		rc = csa_import_ticket(cfg, r->s.t[i], i + 1, &tk, err);
		csa_config_unref(cfg);
		if (rc == CSA_OK) {
			rc = csa_store_commit(r->ws->store, &tk, CSA_DOC_ALL, err);
			csa_ticket_release(&tk);
		}
	}
	/* every retraining reads again only the tickets committed since the
	 * last one, not the whole history; the store keeps those tickets'
	 * documents in memory, so that reading them back parses nothing */
	size_t keep = (o->retrain < 2048 ? o->retrain : 2048) + 64; /* ~70 KB a ticket */
	if (rc == CSA_OK && csa_store_cache_docs(r->ws->store, keep))
		rc = csa_error(err, CSA_ENOMEM, "out of memory keeping %zu tickets for retraining",
		               keep);
	if (rc == CSA_OK)
		rc = csa_train_cache_new(r->ws, &r->train, err);
	json_t *tr = NULL;
	if (rc == CSA_OK &&
	    (rc = csa_import_train_cached(r->train, (unsigned)o->seed, &tr, err)) == CSA_OK)
		json_decref(tr);
	if (rc == CSA_OK)
		rc = csa_pipeline_open(r->ws, &r->p, err);
	if (rc == CSA_OK)
		rc = csa_auto_open(r->ws, r->p, &r->a, err);
	if (rc)
		return rc;
	r->rng = (struct rng){o->seed * 0x9E3779B97F4A7C15ULL + 7};
	r->n = r->s.n - o->bootstrap;
	r->per = calloc(r->n ? r->n : 1, sizeof(*r->per));
	r->phase_at = calloc(r->n ? r->n : 1, sizeof(int));
	r->types = json_object();
	r->events = json_array();
	if (!r->per || !r->phase_at || !r->types || !r->events)
		return csa_error(err, CSA_ENOMEM, "out of memory for a replay of %zu tickets",
		                 r->n);
	r->cfg0 = csa_ws_config(r->ws);
	r->dtypes = csa_config_get(r->cfg0, "automation.decision_types");
	return CSA_OK;
}

/* Ticket h as it arrives: its first message, no gold. */
static json_t *arrival_of(const json_t *h)
{
	json_t *doc = json_object();
	static const char *const keys[] = {"ticket_id", "client_name", "company_name",
	                                   "customer",  "platform",    "channel"};
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
		if (json_object_get(h, keys[k]))
			json_object_set(doc, keys[k], json_object_get(h, keys[k]));
	json_t *first = json_deep_copy(json_array_get(json_object_get(h, "messages"), 0));
	json_object_set_new(doc, "messages", json_pack("[o]", first ? first : json_object()));
	return doc;
}

/* A counter of decision type 'type' in r->types, plus 'by'. */
static void count_type(struct replay *r, const char *type, const char *counter, int by)
{
	json_t *ty = json_object_get(r->types, type);
	if (!ty) {
		ty = json_pack("{s:i, s:i, s:i}", "decisions", 0, "autonomous", 0,
		               "autonomous_correct", 0);
		json_object_set_new(r->types, type, ty);
	}
	json_object_set_new(ty, counter, json_integer(csa_json_int(ty, counter, 0) + by));
}

/* A decision of the final fifth, for the hindsight bound. */
static void keep_point(struct replay *r, double conf, int right)
{
	if (r->npts == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 4096;
		struct conf_pt *p = realloc(r->pts, cap * sizeof(*p));
		if (!p) {
			r->oom = 1;
			return;
		}
		r->pts = p;
		r->cap = cap;
	}
	r->pts[r->npts++] = (struct conf_pt){conf, right};
}

/* What the AI did with ticket result 'res', judged against the gold; the
 * final fifth's decisions kept with their confidence when 'final'. */
static void judge_ai(struct replay *r, const json_t *res, const json_t *gold, struct tally *t,
                     int final)
{
	static const char *const agents[] = {"classifier", "selector", "escalation"};
	for (int ag = 0; ag < 3; ag++) {
		json_t *dec = json_object_get(
		    json_object_get(json_object_get(res, "agent_decisions"), agents[ag]),
		    "decision");
		json_t *applied = json_object_get(dec, "applied_autonomously");
		const char *k;
		json_t *v;
		json_object_foreach(applied, k, v)
		{
			const char *vk = strcmp(k, "escalation") == 0 ? "escalation_path" : k;
			const char *ai = csa_json_str(dec, vk);
			const char *g = gold_of(gold, k);
			int right = ai && g && strcmp(ai, g) == 0;
			count_type(r, k, "decisions", 1);
			t->decisions++;
			json_t *conf = json_object_get(
			    json_object_get(json_object_get(dec, "automation"), k), "confidence");
			if (final && json_is_number(conf))
				keep_point(r, json_number_value(conf), right);
			if (!json_is_true(v))
				continue;
			t->autonomous++;
			t->auto_correct += right;
			count_type(r, k, "autonomous", 1);
			count_type(r, k, "autonomous_correct", right);
			const char *gp = csa_json_str(gold, "priority");
			if (!right && ((gp && strcmp(gp, "CRITICAL") == 0) ||
			               (strcmp(k, "strategy") == 0 &&
			                strcmp(ai, "AUTOMATED_RESOLUTION") == 0)))
				t->critical_errors++;
		}
	}
}

/* The simulated person works ticket 'tid''s review tasks: the gold value,
 * or at (1 - human_accuracy) a label at random, in the time a person
 * needs. */
static int work_tasks(struct replay *r, const char *tid, const json_t *gold, struct tally *t,
                      struct csa_err *err)
{
	json_t *tasks = NULL;
	int rc = csa_auto_review_for_ticket(r->a, tid, &tasks, err);
	size_t k;
	json_t *task;
	json_array_foreach(tasks, k, task)
	{
		if (rc)
			break;
		const char *type = csa_json_str(task, "decision_type");
		const char *value = gold_of(gold, type);
		json_t *labels = json_object_get(task, "labels");
		if (unif(&r->rng) >= r->o->human_accuracy && json_array_size(labels) > 1)
			value = json_string_value(json_array_get(
			    labels, (size_t)(unif(&r->rng) * (double)json_array_size(labels))));
		if (!value || !r->dtypes)
			continue;
		const char *sug = csa_json_str(task, "suggestion");
		int audit = strcmp(csa_json_str(task, "kind"), "audit") == 0;
		/* seconds a person needs: 60 alone, less with a right suggestion
		 * to confirm, more with a wrong one */
		double secs = 60 * (0.7 + 0.6 * unif(&r->rng));
		if (sug)
			secs *= strcmp(sug, value) == 0 ? 0.4 : 1.2;
		if (audit)
			secs *= 0.5;
		json_t *out = NULL;
		rc =
		    csa_auto_review_decide(r->a, csa_json_int(task, "task_id", 0), value,
		                           "replay-human", NULL, (int64_t)(secs * 1000), &out, err);
		json_decref(out);
		if (rc == CSA_OK && !audit)
			t->human++;
	}
	json_decref(tasks);
	return rc;
}

/* After ticket i: the controller's tick, and the models' retraining. */
static int after_ticket(struct replay *r, size_t i, struct csa_err *err)
{
	const struct csa_replay_opts *o = r->o;
	int rc = CSA_OK;
	if ((i + 1) % o->tick == 0) {
		json_t *ev = NULL;
		if ((rc = csa_auto_tick(r->a, 1, &ev, err)))
			return rc;
		size_t k;
		json_t *e;
		json_array_foreach(ev, k, e)
		{
			json_object_set_new(e, "ticket", json_integer((json_int_t)i));
			json_array_append(r->events, e);
		}
		json_decref(ev);
	}
	if (o->retrain && (i + 1) % o->retrain == 0) {
		json_t *tr = NULL;
		if ((rc = csa_import_train_cached(r->train, (unsigned)o->seed, &tr, err)) ==
		    CSA_OK) {
			json_decref(tr);
			rc = csa_pipeline_reload_models(r->p, err);
		}
	}
	if (rc == CSA_OK && !o->quiet && (i + 1) % 1000 == 0)
		fprintf(stderr, "replay: %zu/%zu tickets, PHASE_%d\n", i + 1, r->n,
		        csa_ws_phase(r->ws));
	return rc;
}

/* Ticket i of the stream, from arrival to the person's reviews. */
static int replay_ticket(struct replay *r, size_t i, struct csa_err *err)
{
	json_t *h = r->s.t[r->o->bootstrap + i];
	json_t *gold = json_object_get(h, "gold");
	json_t *doc = arrival_of(h);
	set_clock(arrival_ms(h, r->o->bootstrap + i, NULL));
	json_t *res = NULL;
	int rc = csa_pipeline_ingest(r->p, doc, &res, err);
	json_decref(doc);
	if (rc)
		return rc;
	const char *tid = csa_json_str(res, "ticket_id");
	r->phase_at[i] = csa_ws_phase(r->ws);
	struct tally *t = &r->per[i];
	t->tickets = 1;
	judge_ai(r, res, gold, t, i >= r->n - r->n / 5);
	if (tid)
		rc = work_tasks(r, tid, gold, t, err);
	json_decref(res);
	return rc == CSA_OK ? after_ticket(r, i, err) : rc;
}

/* The report: per phase as the stream lived them, the final fifth, the
 * whole, and per decision type. */
static int build_report(struct replay *r, int64_t t0, json_t **report, struct csa_err *err)
{
	size_t n = r->n;
	for (size_t i = 0; i < n; i++) {
		if (r->nph == 0 || r->ph[r->nph - 1].phase != r->phase_at[i]) {
			if (r->nph == 64)
				break;
			r->ph[r->nph++] = (struct phase_row){r->phase_at[i], (long)i, {0}};
		}
		add(&r->ph[r->nph - 1].t, &r->per[i]);
	}
	json_t *phases = json_array();
	for (size_t k = 0; k < r->nph; k++) {
		json_t *j = tally_json(&r->ph[k].t);
		char name[8];
		snprintf(name, sizeof(name), "PHASE_%d", r->ph[k].phase);
		json_object_set_new(j, "phase", json_string(name));
		json_object_set_new(j, "start_ticket", json_integer(r->ph[k].start));
		json_array_append_new(phases, j);
	}
	struct tally fin = {0}, all = {0};
	for (size_t i = 0; i < n; i++) {
		add(&all, &r->per[i]);
		if (i >= n - n / 5)
			add(&fin, &r->per[i]);
	}
	const char *k;
	json_t *v;
	json_object_foreach(r->types, k, v)
	{
		long d = (long)csa_json_int(v, "decisions", 0),
		     au = (long)csa_json_int(v, "autonomous", 0);
		json_object_set_new(v, "autonomous_rate",
		                    d ? json_real((double)au / (double)d) : json_null());
		json_object_set_new(
		    v, "autonomous_accuracy",
		    au ? json_real((double)csa_json_int(v, "autonomous_correct", 0) / (double)au)
		       : json_null());
	}
	if (r->oom)
		return csa_error(err, CSA_ENOMEM,
		                 "out of memory keeping the decisions' confidences");
	json_t *final = tally_json(&fin);
	json_object_set_new(final, "hindsight",
	                    hindsight_json(r->pts, r->npts,
	                                   csa_json_num(csa_config_get(r->cfg0, "automation"),
	                                                "target_accuracy", 0.95)));
	char phase[8];
	snprintf(phase, sizeof(phase), "PHASE_%d", csa_ws_phase(r->ws));
	json_object_set_new(final, "phase", json_string(phase));
	*report =
	    json_pack("{s:I, s:I, s:f, s:o, s:o, s:o, s:o, s:o, s:f, s:s}", "tickets",
	              (json_int_t)n, "bootstrap_tickets", (json_int_t)r->o->bootstrap,
	              "human_accuracy", r->o->human_accuracy, "phases", phases, "final", final,
	              "overall", tally_json(&all), "decision_types", r->types, "events", r->events,
	              "seconds", (double)(csa_mono_ns() - t0) / 1e9, "workspace", r->dir);
	r->types = r->events = NULL; /* the report has them, or json_pack freed them */
	if (!*report)
		return csa_error(err, CSA_ENOMEM, "out of memory writing the replay's report");
	return CSA_OK;
}

/* Autonomous rate and accuracy over a 500-ticket window, per ticket:
 * malloc'd arrays of r->n into *rate and *acc (NAN where the window has
 * none), freed by the caller. */
static int rolling(struct replay *r, double **rate_out, double **acc_out, struct csa_err *err)
{
	size_t n = r->n;
	double *rate = malloc((n ? n : 1) * sizeof(double)),
	       *acc = malloc((n ? n : 1) * sizeof(double));
	if (!rate || !acc) {
		free(rate);
		free(acc);
		return csa_error(err, CSA_ENOMEM, "out of memory drawing the replay's chart");
	}
	struct tally w = {0};
	for (size_t i = 0; i < n; i++) {
		add(&w, &r->per[i]);
		if (i >= 500) {
			struct tally *old = &r->per[i - 500];
			w.decisions -= old->decisions;
			w.autonomous -= old->autonomous;
			w.auto_correct -= old->auto_correct;
		}
		rate[i] = w.decisions ? (double)w.autonomous / (double)w.decisions : NAN;
		acc[i] = w.autonomous ? (double)w.auto_correct / (double)w.autonomous : NAN;
	}
	*rate_out = rate;
	*acc_out = acc;
	return CSA_OK;
}

/* The --svg chart: autonomous rate and accuracy over a 500-ticket window. */
static int draw_chart(struct replay *r, struct csa_err *err)
{
	double *rate, *acc;
	int rc = rolling(r, &rate, &acc, err);
	if (rc == CSA_OK) {
		rc = write_svg(r->o->svg, rate, acc, r->n, r->ph, r->nph, err);
		free(rate);
		free(acc);
	}
	return rc;
}

/* Everything the replay opened; the scratch workspace removed unless it
 * was --workdir. The first error is the one reported; a failed removal
 * after a successful replay fails the replay, since it leaves data
 * behind. */
static int close_replay(struct replay *r, int rc, json_t *report, struct csa_err *err)
{
	json_decref(r->types);
	json_decref(r->events);
	csa_config_unref(r->cfg0);
	free(r->per);
	free(r->phase_at);
	free(r->pts);
	csa_auto_close(r->a);
	csa_pipeline_free(r->p);
	csa_train_cache_free(r->train);
	csa_ws_close(r->ws);
	for (size_t i = 0; i < r->s.n; i++)
		json_decref(r->s.t[i]);
	free(r->s.t);
	if (r->o->workdir || !r->dir[0])
		return rc;
	struct csa_err rm_err = {0};
	int rm_rc = remove_tree(r->dir, &rm_err);
	if (rm_rc != CSA_OK && rc == CSA_OK) {
		rc = rm_rc;
		if (err)
			*err = rm_err;
	} else if (rm_rc != CSA_OK && !r->o->quiet) {
		fprintf(stderr, "replay: %s\n", rm_err.msg);
	}
	if (rc == CSA_OK && report)
		json_object_set_new(report, "workspace", json_null());
	return rc;
}

int csa_replay_run_series(const struct csa_replay_opts *o, json_t **report, double **rate,
                          double **acc, size_t *n, struct csa_err *err)
{
	int64_t t0 = csa_mono_ns();
	struct replay r = {.o = o};
	*report = NULL;
	int rc = load_stream(o, &r.s, err);
	if (rc == CSA_OK)
		rc = open_replay(&r, err);
	for (size_t i = 0; rc == CSA_OK && i < r.n; i++)
		rc = replay_ticket(&r, i, err);
	unsetenv("CSA_FAKE_NOW_MS");
	if (rc == CSA_OK)
		rc = build_report(&r, t0, report, err);
	if (rc == CSA_OK && o->svg)
		rc = draw_chart(&r, err);
	if (rc == CSA_OK && rate && (rc = rolling(&r, rate, acc, err)) == CSA_OK)
		*n = r.n;
	rc = close_replay(&r, rc, *report, err);
	if (rc != CSA_OK) {
		json_decref(*report);
		*report = NULL;
	}
	return rc;
}

int csa_replay_run(const struct csa_replay_opts *o, json_t **report, struct csa_err *err)
{
	return csa_replay_run_series(o, report, NULL, NULL, NULL, err);
}
