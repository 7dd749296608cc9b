/*
 * What every search backend shares: a ticket's searchable fields derived
 * from its documents, the catch-up with the store, the refresh thread, and
 * the FTS query of user words.
 *
 * How the index stays right when tickets are written by anyone: commits
 * come from this server's pipeline, reviews and hooks, from `csa`
 * commands and from other servers over the same workspace.
 *   - This process's commits are reported by the store's observer
 *     (csa_store_observe): their ids are noted, and the next query (or the
 *     refresh thread, whichever comes first) reads and indexes those few
 *     tickets before it answers. Whoever wrote through this server finds
 *     it at once.
 *   - Anyone else's are found by comparing every ticket's store version
 *     with the indexed one (csa_search_sync), which reads only the tickets
 *     that changed, but must stat every ticket: seconds at 100,000. So the
 *     refresh thread runs it only when the store says a commit may not
 *     have been this handle's (csa_store_mark / csa_store_stamp: in the
 *     mesh, the journal's position, which every commit moves, exactly), and
 *     then every CSA_SEARCH_REFRESH_MS at most; a write by the CLI or
 *     another server is found within about that long plus the comparison,
 *     and a server alone with its workspace never pays for it.
 *   - Once every five minutes the comparison runs anyway: a file edited in
 *     place by hand is no commit.
 *   - Between runs, the index keeps the store's position (csa_store_position)
 *     when it provably holds the store as of it; the first catch-up of the
 *     next run compares no ticket while the position is unchanged.
 * A ticket changed within the file system's timestamp granularity is
 * indexed under version 0 (unsettled) and read again at the next
 * comparison, so no change is missed because two commits shared a
 * timestamp.
 */
#include "search/search.h"
#include "base/json.h"
#include "base/ts.h"
#include "sla/sla.h"
#include "store/store.h"
#include "store/ws.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const sort_names[CSA_SORT_COUNT] = {"updated", "sla_due", "priority"};

const char *csa_search_sort_name(enum csa_search_sort s)
{
	return s < CSA_SORT_COUNT ? sort_names[s] : "updated";
}

int csa_search_sort_parse(const char *name)
{
	for (int k = 0; name && k < CSA_SORT_COUNT; k++)
		if (strcmp(name, sort_names[k]) == 0)
			return k;
	return -1;
}

void csa_search_page_release(struct csa_search_page *p)
{
	if (!p)
		return;
	csa_store_ids_free(p->ids, p->n);
	json_decref(p->rows);
	p->ids = NULL;
	p->rows = NULL;
	p->n = 0;
	p->next[0] = '\0';
}

/* ---- the FTS query of user words ---------------------------------------- */

#define QUERY_WORDS 32

static int has_word_char(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c >= 0x80)
			return 1;
	}
	return 0;
}

/* Each word becomes an FTS5 string: inside double quotes nothing is
 * syntax (NEAR, AND, *, ^, column filters, parentheses are text), and a
 * quote is doubled. A word of punctuation alone would be an empty phrase,
 * which FTS5 refuses: it is left out. */
char *csa_search_fts_query(const char *q)
{
	size_t len = 0, words = 0, cap = (q ? strlen(q) : 0) * 2 + 3 * QUERY_WORDS + 1;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	out[0] = '\0';
	const char *p = q ? q : "";
	while (*p && words < QUERY_WORDS) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' ||
		       *p == '\v')
			p++;
		const char *s = p;
		while (*p && !(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' ||
		               *p == '\v'))
			p++;
		size_t n = (size_t)(p - s);
		if (!n || !has_word_char(s, n))
			continue;
		if (words)
			out[len++] = ' ';
		out[len++] = '"';
		for (size_t i = 0; i < n; i++) {
			if (s[i] == '"')
				out[len++] = '"';
			out[len++] = s[i];
		}
		out[len++] = '"';
		out[len] = '\0';
		words++;
	}
	return out;
}

/* ---- a ticket's fields ------------------------------------------------------ */

static const char *str_or_empty(const char *s)
{
	return s ? s : "";
}

/* E's and I's message contents, one a line. Malloc'd; NULL without
 * memory. */
static char *messages_text(const json_t *e, const json_t *i)
{
	size_t len = 0;
	const json_t *sides[2] = {e, i};
	for (int k = 0; k < 2; k++) {
		size_t j;
		json_t *m;
		json_array_foreach(json_object_get(sides[k], "messages"), j, m) len +=
		    strlen(str_or_empty(csa_json_str(m, "content"))) + 1;
	}
	char *text = malloc(len + 1), *o = text;
	if (!text)
		return NULL;
	for (int k = 0; k < 2; k++) {
		size_t j;
		json_t *m;
		json_array_foreach(json_object_get(sides[k], "messages"), j, m)
		{
			const char *c = str_or_empty(csa_json_str(m, "content"));
			size_t n = strlen(c);
			memcpy(o, c, n);
			o += n;
			*o++ = '\n';
		}
	}
	*o = '\0';
	return text;
}

/* Whether a person has reviewed decision type 'type' of T decision 'rec':
 * the rule auto_recovery.c restores review tasks by (a task is done when
 * its decision is human_confirmed with a pattern update of that type), so
 * "waiting for review" is read from T without asking automation.db. */
static int reviewed(const json_t *rec, const char *type)
{
	if (!json_is_true(json_object_get(rec, "human_confirmed")))
		return 0;
	size_t i;
	json_t *u;
	json_array_foreach(
	    json_object_get(json_object_get(rec, "learning_feedback"), "pattern_updates"), i, u)
	{
		const char *t = csa_json_str(u, "decision_type");
		if (t && strcmp(t, type) == 0)
			return 1;
	}
	return 0;
}

/*
 * Fill d from tk's documents (borrowed: d points into them) under the SLA
 * rules of cfg; d->text is malloc'd (freed by the caller). CSA_ENOMEM
 * without memory for the text.
 */
static int derive(const struct csa_config *cfg, const struct csa_ticket *tk, uint64_t version,
                  struct csa_search_doc *d)
{
	memset(d, 0, sizeof(*d));
	d->id = tk->id;
	d->version = version;
	d->status = str_or_empty(csa_json_str(tk->e, "conversation_status"));
	d->priority = str_or_empty(csa_json_str(tk->t, "priority"));
	d->stage = str_or_empty(csa_json_str(tk->t, "workflow_stage"));
	d->assigned = str_or_empty(csa_json_str(tk->t, "assigned_member"));
	json_t *cust = json_object_get(json_object_get(tk->e, "participants"), "customer");
	const char *client = csa_json_str(cust, "client_name"),
	           *company = csa_json_str(cust, "company_name");
	d->client = str_or_empty(client ? client : csa_json_str(tk->t, "client_name"));
	d->company = str_or_empty(company ? company : csa_json_str(tk->t, "company_name"));
	d->customer = str_or_empty(csa_json_str(json_object_get(cust, "contact_info"), "email"));
	/* what the inbox shows of the ticket: the first words the customer
	 * wrote, cut on a character boundary */
	d->subject = str_or_empty(
	    csa_json_str(json_array_get(json_object_get(tk->e, "messages"), 0), "content"));
	d->subject_len = strlen(d->subject);
	if (d->subject_len > CSA_SEARCH_SUBJECT_MAX) {
		d->subject_len = CSA_SEARCH_SUBJECT_MAX;
		while (d->subject_len && ((unsigned char)d->subject[d->subject_len] & 0xc0) == 0x80)
			d->subject_len--;
	}
	d->category = "";
	csa_ts_parse(str_or_empty(csa_json_str(tk->t, "last_synchronized")), &d->updated_ms);
	struct csa_sla_clock clock;
	csa_sla_clock_of(cfg, tk->e, &clock);
	d->sla_risk_ms = clock.risk_ms;
	d->sla_breach_ms = clock.breach_ms;
	d->sla_due_ms = clock.due_ms;
	size_t i;
	json_t *rec;
	json_array_foreach(json_object_get(tk->t, "agent_decisions"), i, rec)
	{
		json_t *dec = json_object_get(rec, "decision");
		const char *agent = csa_json_str(rec, "agent");
		if (agent && strcmp(agent, "classifier") == 0 && csa_json_str(dec, "category"))
			d->category = csa_json_str(dec, "category");
		/* the automation block: one entry per decision type */
		const char *type;
		json_t *info;
		json_object_foreach(json_object_get(dec, "automation"), type, info)
		{
			if (json_is_true(json_object_get(info, "autonomous")))
				d->autonomous = 1;
			const char *review = csa_json_str(info, "review");
			if (review && strcmp(review, "none") != 0 && !reviewed(rec, type))
				d->review = 1;
		}
	}
	d->text = messages_text(tk->e, tk->i);
	return d->text ? CSA_OK : CSA_ENOMEM;
}

/* ---- catch-up ------------------------------------------------------------ */

/* One ticket read for the index by a loader thread. */
struct slot {
	struct csa_ticket tk;
	struct csa_search_doc doc;
	uint64_t version; /* as it was before the read, settled or not */
	int ok;           /* 0: vanished or damaged (csa verify reports it) */
};

static void note(struct csa_search_refresh *r, const char *id);

/* A block of changed tickets shared by the loader threads. */
struct block {
	struct csa_search *s;
	const struct csa_config *cfg;
	char **ids;
	size_t n;
	struct slot *out;
	int nomem;
	_Atomic size_t next;
};

static void load_one(struct block *b, size_t k)
{
	struct slot *sl = &b->out[k];
	memset(sl, 0, sizeof(*sl));
	int settled = 0;
	/* the version before the read: a commit after it changes it, and the
	 * next catch-up reads the ticket again */
	uint64_t v = csa_store_version(b->s->ws->store, b->ids[k], &settled);
	sl->version = v;
	if (csa_store_load(b->s->ws->store, b->ids[k], &sl->tk, NULL))
		return;
	if (derive(b->cfg, &sl->tk, settled ? v : 0, &sl->doc)) {
		b->nomem = 1;
		return;
	}
	sl->ok = 1;
}

static void *load_block(void *arg)
{
	struct block *b = arg;
	for (;;) {
		size_t k = atomic_fetch_add(&b->next, 1);
		if (k >= b->n)
			return NULL;
		load_one(b, k);
	}
}

#define LOAD_BLOCK   1024
#define LOAD_THREADS 8

/* Read and index the tickets 'ids' (n of them), LOAD_BLOCK at a time,
 * each block parsed by up to LOAD_THREADS threads and written in one
 * step. */
static int reindex(struct csa_search *s, char **ids, size_t n, struct csa_err *err)
{
	if (!n)
		return CSA_OK;
	struct slot *out = malloc((n < LOAD_BLOCK ? n : LOAD_BLOCK) * sizeof(*out));
	struct csa_search_doc *docs = malloc((n < LOAD_BLOCK ? n : LOAD_BLOCK) * sizeof(*docs));
	if (!out || !docs) {
		free(out);
		free(docs);
		return csa_error(err, CSA_ENOMEM, "out of memory indexing tickets for search");
	}
	const struct csa_config *cfg = csa_ws_config(s->ws);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int nthreads = cpus < 1 ? 1 : cpus > LOAD_THREADS ? LOAD_THREADS : (int)cpus;
	int rc = CSA_OK;
	for (size_t lo = 0; lo < n && rc == CSA_OK; lo += LOAD_BLOCK) {
		struct block b = {.s = s,
		                  .cfg = cfg,
		                  .ids = ids + lo,
		                  .n = n - lo < LOAD_BLOCK ? n - lo : LOAD_BLOCK,
		                  .out = out};
		pthread_t th[LOAD_THREADS];
		int started = 0;
		while (b.n > 64 && started < nthreads - 1 &&
		       pthread_create(&th[started], NULL, load_block, &b) == 0)
			started++;
		load_block(&b);
		for (int t = 0; t < started; t++)
			pthread_join(th[t], NULL);
		size_t nd = 0;
		for (size_t k = 0; k < b.n; k++)
			if (out[k].ok)
				docs[nd++] = out[k].doc;
		if (b.nomem)
			rc =
			    csa_error(err, CSA_ENOMEM, "out of memory indexing tickets for search");
		else
			rc = s->ops->update(s, docs, nd, err);
		/* A commit of this process between a read above and the write
		 * may have been indexed by a query meanwhile, and then
		 * overwritten with what was read before it: such tickets are
		 * noted to be read again, as if just committed. */
		for (size_t k = 0; rc == CSA_OK && s->refresh && k < b.n; k++) {
			int64_t newest;
			if (out[k].ok &&
			    csa_store_sig(s->ws->store, out[k].tk.id, &newest) != out[k].version)
				note(s->refresh, out[k].tk.id);
		}
		for (size_t k = 0; k < b.n; k++) {
			free((char *)out[k].doc.text);
			csa_ticket_release(&out[k].tk);
		}
	}
	csa_config_unref(cfg);
	free(out);
	free(docs);
	return rc;
}

/* The SLA rules the index was derived under: a change of them (the
 * at-risk fraction) makes every ticket's clock stale. */
static char *sla_rules(struct csa_search *s)
{
	const struct csa_config *cfg = csa_ws_config(s->ws);
	json_t *f = csa_config_get(cfg, "sla.at_risk_fraction");
	char buf[64];
	snprintf(buf, sizeof(buf), "at_risk_fraction=%.17g",
	         json_is_number(f) ? json_number_value(f) : 0.75);
	csa_config_unref(cfg);
	return strdup(buf);
}

int csa_search_sync(struct csa_search *s, size_t *changed, struct csa_err *err)
{
	if (changed)
		*changed = 0;
	char *rules = sla_rules(s), *had = s->ops->meta_get(s, "sla_rules");
	int stale = !rules || !had || strcmp(rules, had) != 0;
	free(had);
	char **have = NULL, **ids = NULL;
	uint64_t *versions = NULL;
	size_t nh = 0, ni = 0;
	int rc = csa_store_ids(s->ws->store, &ids, &ni, err);
	if (rc == CSA_OK)
		rc = s->ops->versions(s, &have, &versions, &nh, err);
	/* merge the two sorted lists: what changed, what is gone */
	char **todo = NULL, **gone = NULL;
	size_t nt = 0, ng = 0;
	if (rc == CSA_OK && ((ni && !(todo = malloc(ni * sizeof(*todo)))) ||
	                     (nh && !(gone = malloc(nh * sizeof(*gone))))))
		rc = csa_error(err, CSA_ENOMEM, "out of memory catching up the search index");
	for (size_t a = 0, b = 0; rc == CSA_OK && (a < ni || b < nh);) {
		int c = a >= ni ? 1 : b >= nh ? -1 : strcmp(ids[a], have[b]);
		if (c > 0) {
			gone[ng++] = have[b++];
			continue;
		}
		int settled = 0;
		uint64_t v = csa_store_version(s->ws->store, ids[a], &settled);
		if (stale || c < 0 || !versions[b] || versions[b] != v || !settled)
			todo[nt++] = ids[a];
		a++;
		b += c == 0;
	}
	if (rc == CSA_OK && ng)
		rc = s->ops->remove(s, gone, ng, err);
	if (rc == CSA_OK)
		rc = reindex(s, todo, nt, err);
	if (rc == CSA_OK && stale && rules)
		rc = s->ops->meta_set(s, "sla_rules", rules, err);
	if (rc == CSA_OK && changed)
		*changed = nt;
	free(rules);
	free(todo);
	free(gone);
	free(versions);
	csa_store_ids_free(have, nh);
	csa_store_ids_free(ids, ni);
	return rc;
}

/* ---- the position kept between runs ------------------------------------------ */

/* The index is the store as of the store's position saved in its meta
 * "position" (csa_store_position: no commit by anyone since, no ticket
 * file added, renamed or removed), under the same SLA rules: the first
 * catch-up of a run may then skip comparing 100,000 tickets' versions. A
 * file edited in place by hand, which no position shows, is found by the
 * full comparison every FULL_EVERY_MS, as within a run. */
static int position_current(struct csa_search *s)
{
	uint64_t pos = csa_store_position(s->ws->store);
	char *had = s->ops->meta_get(s, "position"), *rules = sla_rules(s),
	     *had_rules = s->ops->meta_get(s, "sla_rules");
	int yes = pos && had && strtoull(had, NULL, 16) == pos && rules && had_rules &&
	          strcmp(rules, had_rules) == 0;
	free(had);
	free(rules);
	free(had_rules);
	return yes;
}

/* Save the store's position when the index provably holds it: every
 * commit since the mark (taken before the last full comparison, or before
 * a match of the position) was this handle's, and this handle's are
 * indexed (the caller drained them). The journal is checkpointed first, as
 * the store's close would do next, moving the position. Best effort:
 * without it the next start compares every ticket. */
static void keep_position(struct csa_search *s)
{
	struct csa_err ignored;
	char hex[32] = "0";
	if (s->ws->store->ops->checkpoint(s->ws->store, &ignored) == CSA_OK) {
		int only_own = 0;
		uint64_t pos = csa_store_position(s->ws->store);
		(void)csa_store_stamp(s->ws->store, CSA_MARK_SEARCH, &only_own);
		if (only_own && pos)
			snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)pos);
	}
	(void)s->ops->meta_set(s, "position", hex, &ignored);
}

int csa_search_first_sync(struct csa_search *s, struct csa_err *err)
{
	csa_store_mark(s->ws->store, CSA_MARK_SEARCH);
	int rc = position_current(s) ? CSA_OK : csa_search_sync(s, NULL, err);
	if (rc == CSA_OK)
		keep_position(s);
	return rc;
}

/* ---- the refresh thread ----------------------------------------------------- */

struct csa_search_refresh {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int interval_ms;
	int stopping;
	int ready;    /* the first catch-up is done */
	int first_rc; /* and its status */
	char first_msg[256];
	/* tickets this process committed since the last query (malloc'd
	 * ids), indexed before the next query answers */
	pthread_mutex_t dmu;
	/* a write this process made may be missing from the index (a note
	 * or a catch-up that failed): the index then vouches for no position
	 * at close, for the rest of the run */
	int lost;
	char **dirty;
	size_t ndirty, cap;
	/* held from taking the ids to having indexed them: a query that
	 * finds the list empty because another drain took it waits for that
	 * drain, so it never answers without the writes */
	pthread_mutex_t drain_mu;
};

/* Note a ticket to index before the next query. Without memory it is
 * not noted: the next full comparison finds it instead. Caller holds
 * r->dmu. */
static void note_locked(struct csa_search_refresh *r, const char *id)
{
	if (r->ndirty == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		char **nd = realloc(r->dirty, cap * sizeof(*nd));
		if (!nd) {
			r->lost = 1;
			return;
		}
		r->dirty = nd;
		r->cap = cap;
	}
	if ((r->dirty[r->ndirty] = strdup(id)))
		r->ndirty++;
	else
		r->lost = 1;
}

static void lose(struct csa_search_refresh *r)
{
	pthread_mutex_lock(&r->dmu);
	r->lost = 1;
	pthread_mutex_unlock(&r->dmu);
}

static void note(struct csa_search_refresh *r, const char *id)
{
	pthread_mutex_lock(&r->dmu);
	note_locked(r, id);
	pthread_mutex_unlock(&r->dmu);
}

/* The store's observer: note the ids, nothing more, on the committing
 * thread. */
static void on_commit(void *ctx, struct csa_ticket *const *tks, size_t n)
{
	struct csa_search_refresh *r = ctx;
	pthread_mutex_lock(&r->dmu);
	for (size_t i = 0; i < n; i++)
		note_locked(r, tks[i]->id);
	pthread_mutex_unlock(&r->dmu);
}

static int id_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Index what this process committed since the last query, so that whoever
 * wrote through this server finds it at once (read your writes); other
 * writers are found by the refresh thread. */
static int drain(struct csa_search *s, struct csa_err *err)
{
	struct csa_search_refresh *r = s->refresh;
	pthread_mutex_lock(&r->drain_mu);
	pthread_mutex_lock(&r->dmu);
	char **ids = r->dirty;
	size_t n = r->ndirty;
	r->dirty = NULL;
	r->ndirty = r->cap = 0;
	pthread_mutex_unlock(&r->dmu);
	if (!n) {
		pthread_mutex_unlock(&r->drain_mu);
		return CSA_OK;
	}
	qsort(ids, n, sizeof(*ids), id_cmp);
	size_t u = 0;
	for (size_t i = 0; i < n; i++) {
		if (u && strcmp(ids[u - 1], ids[i]) == 0)
			free(ids[i]);
		else
			ids[u++] = ids[i];
	}
	int rc = reindex(s, ids, u, err);
	if (rc)
		lose(r);
	pthread_mutex_unlock(&r->drain_mu);
	csa_store_ids_free(ids, u);
	return rc;
}

/* A full comparison of versions at least this often, even when the store
 * says every commit was this process's: it finds a document edited in
 * place by hand, which no commit reports. */
#define FULL_EVERY_MS 300000

static void *refresh_main(void *arg)
{
	struct csa_search *s = arg;
	struct csa_search_refresh *r = s->refresh;
	int64_t last_full = 0;
	for (int first = 1;; first = 0) {
		struct csa_err err = {0};
		int only_own = 0;
		(void)csa_store_stamp(s->ws->store, CSA_MARK_SEARCH, &only_own);
		int64_t now = csa_now_ms();
		int rc;
		if (first || !only_own || now - last_full >= FULL_EVERY_MS) {
			/* the mark before the comparison: a commit by anyone
			 * else after it is seen next round */
			csa_store_mark(s->ws->store, CSA_MARK_SEARCH);
			/* the first may find the index saved at the store's
			 * position: then only this process's commits are new */
			rc = first && position_current(s) ? drain(s, &err)
			                                   : csa_search_sync(s, NULL, &err);
			if (rc)
				lose(r);
			last_full = now;
		} else {
			rc = drain(s, &err); /* this process's own commits */
		}
		if (first) {
			pthread_mutex_lock(&r->mu);
			r->ready = 1;
			r->first_rc = rc;
			snprintf(r->first_msg, sizeof(r->first_msg), "%s", err.msg);
			pthread_cond_broadcast(&r->cv);
			pthread_mutex_unlock(&r->mu);
		}
		pthread_mutex_lock(&r->mu);
		if (!r->stopping) {
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			long long ns = until.tv_nsec + (long long)r->interval_ms * 1000000LL;
			until.tv_sec += (time_t)(ns / 1000000000LL);
			until.tv_nsec = (long)(ns % 1000000000LL);
			pthread_cond_timedwait(&r->cv, &r->mu, &until);
		}
		int stop = r->stopping;
		pthread_mutex_unlock(&r->mu);
		if (stop)
			return NULL;
	}
}

int csa_search_start_refresh(struct csa_search *s, int interval_ms, struct csa_err *err)
{
	struct csa_search_refresh *r = calloc(1, sizeof(*r));
	if (!r)
		return csa_error(err, CSA_ENOMEM, "out of memory starting the search refresh");
	pthread_mutex_init(&r->mu, NULL);
	pthread_mutex_init(&r->dmu, NULL);
	pthread_mutex_init(&r->drain_mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->interval_ms = interval_ms;
	/* observing first: a commit between the thread's first catch-up and
	 * the observer would otherwise wait for the next full comparison */
	int rc = csa_store_observe(s->ws->store, on_commit, r);
	if (rc)
		rc = csa_error(err, rc, "too many observers of the store for the search index");
	s->refresh = r;
	if (rc == CSA_OK && pthread_create(&r->th, NULL, refresh_main, s) != 0) {
		csa_store_unobserve(s->ws->store, on_commit, r);
		rc = csa_error(err, CSA_EIO, "cannot start the search refresh thread");
	}
	if (rc) {
		s->refresh = NULL;
		pthread_mutex_destroy(&r->mu);
		pthread_mutex_destroy(&r->dmu);
		pthread_mutex_destroy(&r->drain_mu);
		pthread_cond_destroy(&r->cv);
		csa_store_ids_free(r->dirty, r->ndirty);
		free(r);
	}
	return rc;
}

/* Wait for the first catch-up: until it is done the index may lack
 * tickets, and an inbox that silently shows part of the tickets is
 * worse than one that answers a little later. */
static int wait_ready(struct csa_search *s, struct csa_err *err)
{
	struct csa_search_refresh *r = s->refresh;
	if (!r)
		return CSA_OK;
	pthread_mutex_lock(&r->mu);
	while (!r->ready)
		pthread_cond_wait(&r->cv, &r->mu);
	int rc = r->first_rc;
	pthread_mutex_unlock(&r->mu);
	if (rc)
		return csa_error(err, rc, "search index: %s", r->first_msg);
	return drain(s, err);
}

int csa_search_query(struct csa_search *s, const struct csa_search_filter *f,
                     enum csa_search_sort sort, const char *cursor, size_t limit,
                     struct csa_search_page *out, struct csa_err *err)
{
	memset(out, 0, sizeof(*out));
	int rc = wait_ready(s, err);
	return rc ? rc : s->ops->query(s, f, sort, cursor, limit, out, err);
}

int csa_search_count(struct csa_search *s, const struct csa_search_filter *f, long *out,
                     struct csa_err *err)
{
	*out = 0;
	int rc = wait_ready(s, err);
	return rc ? rc : s->ops->count(s, f, out, err);
}

void csa_search_close(struct csa_search *s)
{
	if (!s)
		return;
	struct csa_search_refresh *r = s->refresh;
	if (r) {
		csa_store_unobserve(s->ws->store, on_commit, r);
		pthread_mutex_lock(&r->mu);
		r->stopping = 1;
		pthread_cond_broadcast(&r->cv);
		pthread_mutex_unlock(&r->mu);
		pthread_join(r->th, NULL);
		/* this process's last commits, then the position: the next
		 * start need not compare every ticket (a failed first
		 * catch-up vouches for nothing) */
		struct csa_err ignored;
		if (r->ready && r->first_rc == CSA_OK && drain(s, &ignored) == CSA_OK && !r->lost)
			keep_position(s);
		pthread_mutex_destroy(&r->mu);
		pthread_mutex_destroy(&r->dmu);
		pthread_mutex_destroy(&r->drain_mu);
		pthread_cond_destroy(&r->cv);
		csa_store_ids_free(r->dirty, r->ndirty);
		free(r);
		s->refresh = NULL;
	}
	s->ops->close(s);
}
