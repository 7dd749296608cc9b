/* Knowledge gaps: weakly answered tickets by category, costliest first,
 * with draft articles from their extracted knowledge. */
#include "flow/gaps.h"
#include "agents/kb.h"
#include "automation/ledger.h"
#include "base/digest.h"
#include "base/ids.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/pipeline.h"
#include "store/blobs.h"
#include "store/store.h"
#include "store/ws.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUP_WORDS  5 /* common words named per group */
#define DRAFT_ITEMS  5 /* sentences per section of a draft */
#define TEXT_MAX     4000
#define WORD_MIN     4
#define WORD_MAX     40
#define TICKET_WORDS 64 /* distinct words counted per ticket */

static const char *const sections[][2] = {{"solution_patterns", "What solved it"},
                                          {"troubleshooting_steps", "Steps"},
                                          {"prevention_measures", "Prevention"}};

void csa_gaps_opts_default(struct csa_gaps_opts *o)
{
	o->since_ms = csa_now_ms() - 30LL * 86400000;
	o->weak_score = 3.0;
	o->max_groups = 10;
	o->examples = 5;
}

/* The latest classifier category of T, or "UNCLASSIFIED". */
static const char *category_of(const json_t *t)
{
	const char *cat = "UNCLASSIFIED";
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(t, "agent_decisions"), i, d)
	{
		const char *agent = csa_json_str(d, "agent");
		const char *c = csa_json_str(json_object_get(d, "decision"), "category");
		if (agent && strcmp(agent, "classifier") == 0 && c)
			cat = c;
	}
	return cat;
}

static void bump(json_t *counts, const char *key, json_int_t by)
{
	json_object_set_new(counts, key, json_integer(csa_json_int(counts, key, 0) + by));
}

/* Each distinct content word of 'text' (lower case, letters only, not a
 * search stopword) counted once in 'counts'. */
static void count_words(json_t *counts, const char *text)
{
	json_t *seen = json_object();
	char w[WORD_MAX + 1];
	for (const char *p = text; *p && json_object_size(seen) < TICKET_WORDS;) {
		while (*p && !isalpha((unsigned char)*p))
			p++;
		size_t n = 0;
		int ok = 1;
		while (*p && (isalnum((unsigned char)*p) || (unsigned char)*p >= 0x80)) {
			ok &= isalpha((unsigned char)*p) != 0;
			if (n < WORD_MAX)
				w[n] = (char)tolower((unsigned char)*p);
			n++, p++;
		}
		if (!ok || n < WORD_MIN || n > WORD_MAX || csa_kb_is_stopword(w, n))
			continue;
		w[n] = '\0';
		if (!json_object_get(seen, w)) {
			json_object_set_new(seen, w, json_true());
			bump(counts, w, 1);
		}
	}
	json_decref(seen);
}

static json_t *top_keys(const json_t *counts, size_t k);

/* The k words of a group that set it apart: its count of tickets with the
 * word times log(all tickets looked at / all tickets with it), so that the
 * words every ticket has ("dear", "team") give way to the group's own. */
static json_t *distinctive(const json_t *counts, const json_t *all, size_t n_all, size_t k)
{
	json_t *scored = json_object();
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)counts, key, v)
	{
		double df = (double)csa_json_int(all, key, 1);
		double w = (double)json_integer_value(v) * log((double)(n_all + 1) / df);
		json_object_set_new(scored, key, json_integer((json_int_t)llround(w * 1000)));
	}
	json_t *out = top_keys(scored, k);
	json_decref(scored);
	return out;
}

/* The keys of 'counts' with the k largest counts, largest first (ties by
 * name), as a new array. */
static json_t *top_keys(const json_t *counts, size_t k)
{
	json_t *out = json_array();
	json_t *taken = json_object();
	for (size_t r = 0; r < k; r++) {
		const char *best = NULL, *key;
		json_int_t bn = 0;
		json_t *v;
		json_object_foreach((json_t *)counts, key, v)
		{
			json_int_t n = json_integer_value(v);
			if (json_object_get(taken, key))
				continue;
			if (!best || n > bn || (n == bn && strcmp(key, best) < 0)) {
				best = key;
				bn = n;
			}
		}
		if (!best)
			break;
		json_object_set_new(taken, best, json_true());
		json_array_append_new(out, json_string(best));
	}
	json_decref(taken);
	return out;
}

struct example {
	char id[CSA_ID_MAX + 1];
	double minutes;
};

struct group {
	char category[128];
	size_t volume;
	double minutes, score;
	json_t *words;      /* word -> tickets */
	json_t *articles;   /* nearest article id -> tickets */
	json_t *know[3];    /* sentence -> tickets, per section */
	json_t *sources;    /* ids of tickets that gave knowledge */
	struct example *ex; /* the costliest, at most o->examples */
	size_t nex;
};

static void group_release(struct group *g)
{
	json_decref(g->words);
	json_decref(g->articles);
	for (int s = 0; s < 3; s++)
		json_decref(g->know[s]);
	json_decref(g->sources);
	free(g->ex);
}

/* Keep ticket 'id' among the group's costliest examples. */
static void offer_example(struct group *g, size_t max, const char *id, double minutes)
{
	size_t at = g->nex;
	if (g->nex == max) {
		size_t low = 0;
		for (size_t i = 1; i < g->nex; i++)
			if (g->ex[i].minutes < g->ex[low].minutes)
				low = i;
		if (!max || g->ex[low].minutes >= minutes)
			return;
		at = low;
	} else {
		g->nex++;
	}
	snprintf(g->ex[at].id, sizeof(g->ex[at].id), "%s", id);
	g->ex[at].minutes = minutes;
}

static int ex_cmp(const void *a, const void *b)
{
	double x = ((const struct example *)a)->minutes, y = ((const struct example *)b)->minutes;
	return x > y ? -1 : x < y;
}

static struct group *group_of(struct group **v, size_t *n, size_t *cap, const char *cat,
                              size_t examples)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*v)[i].category, cat) == 0)
			return &(*v)[i];
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 8;
		struct group *nv = realloc(*v, nc * sizeof(*nv));
		if (!nv)
			return NULL;
		*v = nv;
		*cap = nc;
	}
	struct group *g = &(*v)[*n];
	memset(g, 0, sizeof(*g));
	snprintf(g->category, sizeof(g->category), "%s", cat);
	g->words = json_object();
	g->articles = json_object();
	for (int s = 0; s < 3; s++)
		g->know[s] = json_object();
	g->sources = json_array();
	g->ex = calloc(examples ? examples : 1, sizeof(*g->ex));
	if (!g->words || !g->articles || !g->know[0] || !g->know[1] || !g->know[2] || !g->sources ||
	    !g->ex) {
		group_release(g);
		return NULL;
	}
	(*n)++;
	return g;
}

/* One weak ticket into its group. */
static int add_ticket(struct group *g, const struct csa_ticket *tk, const char *text,
                      const json_t *best, double minutes, size_t examples)
{
	g->volume++;
	g->minutes += minutes;
	g->score += best ? csa_json_num(best, "score", 0) : 0;
	count_words(g->words, text);
	if (best)
		bump(g->articles, csa_json_str(best, "id"), 1);
	offer_example(g, examples, tk->id, minutes);
	json_t *know = json_object_get(tk->i, "knowledge_extraction");
	int gave = 0;
	for (int s = 0; s < 3; s++) {
		size_t k;
		json_t *e;
		json_array_foreach(json_object_get(know, sections[s][0]), k, e)
		{
			const char *t =
			    json_is_string(e) ? json_string_value(e) : csa_json_str(e, "text");
			if (t) {
				bump(g->know[s], t, 1);
				gave = 1;
			}
		}
	}
	if (gave && json_array_size(g->sources) < 20)
		json_array_append_new(g->sources, json_string(tk->id));
	return CSA_OK;
}

/* The draft article of a group, in the kb/ format (agents/kb.h). */
static json_t *draft_of(const struct group *g, const json_t *words)
{
	char id[200], title[300];
	snprintf(id, sizeof(id), "gap-%s", g->category);
	for (char *p = id; *p; p++)
		*p = *p == '_' ? '-' : (char)tolower((unsigned char)*p);
	size_t tl = (size_t)snprintf(title, sizeof(title), "%s:", g->category);
	size_t i;
	json_t *w;
	json_array_foreach(words, i, w)
	{
		if (tl < sizeof(title))
			tl += (size_t)snprintf(title + tl, sizeof(title) - tl, "%s %s",
			                       i ? "," : "", json_string_value(w));
	}
	size_t cap = 4096, len = 0;
	char *body = malloc(cap);
	if (!body)
		return NULL;
	len = (size_t)snprintf(body, cap,
	                       "id: %s\ntitle: %s\ncategories: %s\nstrategy: "
	                       "TEMPLATE_RESPONSE\n---\n",
	                       id, title, g->category);
	for (int s = 0; s < 3; s++) {
		json_t *top = top_keys(g->know[s], DRAFT_ITEMS);
		if (!json_array_size(top)) {
			json_decref(top);
			continue;
		}
		json_t *lines = json_array();
		json_array_append_new(lines, json_sprintf("%s:", sections[s][1]));
		json_array_foreach(top, i, w)
		    json_array_append_new(lines, json_sprintf("- %s", json_string_value(w)));
		json_array_foreach(lines, i, w)
		{
			const char *l = json_string_value(w);
			size_t n = strlen(l);
			while (len + n + 3 > cap) {
				char *nb = realloc(body, cap * 2);
				if (!nb) {
					json_decref(lines);
					json_decref(top);
					free(body);
					return NULL;
				}
				body = nb;
				cap *= 2;
			}
			memcpy(body + len, l, n);
			len += n;
			body[len++] = '\n';
			body[len] = '\0';
		}
		if (len + 2 < cap) {
			body[len++] = '\n';
			body[len] = '\0';
		}
		json_decref(lines);
		json_decref(top);
	}
	json_t *d = json_pack("{s:s, s:s, s:s, s:O}", "id", id, "title", title, "body", body,
	                      "sources", g->sources);
	free(body);
	return d;
}

static int cost_cmp(const void *a, const void *b)
{
	double x = ((const struct group *)a)->minutes, y = ((const struct group *)b)->minutes;
	if (x != y)
		return x > y ? -1 : 1;
	return strcmp(((const struct group *)a)->category, ((const struct group *)b)->category);
}

int csa_gaps_find(struct csa_ws *ws, struct csa_kb *kb, const struct csa_gaps_opts *o, json_t **out,
                  struct csa_err *err)
{
	char **ids = NULL;
	size_t nids = 0, looked = 0, weak = 0, unreadable = 0, ng = 0, capg = 0;
	struct group *groups = NULL;
	json_t *all_words = json_object(); /* word -> tickets looked at with it */
	int rc = all_words ? csa_store_ids(ws->store, &ids, &nids, err)
	                   : csa_error(err, CSA_ENOMEM, "out of memory finding knowledge gaps");
	int64_t now = csa_now_ms();
	for (size_t k = 0; k < nids && rc == CSA_OK; k++) {
		struct csa_ticket tk;
		if (csa_store_load(ws->store, ids[k], &tk, NULL)) {
			unreadable++;
			continue;
		}
		int64_t created = 0;
		char *text = NULL;
		json_t *hits = NULL;
		if (csa_ts_parse(csa_json_str(tk.t, "card_create_timestamp"), &created) ||
		    created < o->since_ms || !(text = csa_pipeline_text(tk.e, TEXT_MAX, 1)) ||
		    !*text)
			goto next;
		looked++;
		count_words(all_words, text);
		if ((rc = csa_kb_search(kb, text, NULL, NULL, 1, &hits, err)))
			goto next;
		json_t *best = json_array_get(hits, 0);
		if (best && csa_json_num(best, "score", 0) >= o->weak_score)
			goto next;
		weak++;
		json_t *rt =
		    json_object_get(json_object_get(tk.t, "sla_metrics"), "resolution_time");
		double minutes = json_is_number(rt)
		                     ? json_number_value(rt)
		                     : (double)(now > created ? now - created : 0) / 60000;
		struct group *g = group_of(&groups, &ng, &capg, category_of(tk.t), o->examples);
		if (!g)
			rc = csa_error(err, CSA_ENOMEM, "out of memory grouping knowledge gaps");
		else
			rc = add_ticket(g, &tk, text, best, minutes, o->examples);
	next:
		json_decref(hits);
		free(text);
		csa_ticket_release(&tk);
	}
	csa_store_ids_free(ids, nids);
	if (rc == CSA_OK) {
		if (ng)
			qsort(groups, ng, sizeof(*groups), cost_cmp);
		char since[CSA_TS_LEN];
		json_t *list = json_array();
		for (size_t i = 0; i < ng && i < o->max_groups; i++) {
			struct group *g = &groups[i];
			qsort(g->ex, g->nex, sizeof(*g->ex), ex_cmp);
			json_t *ex = json_array();
			for (size_t e = 0; e < g->nex; e++)
				json_array_append_new(ex, json_string(g->ex[e].id));
			json_t *words = distinctive(g->words, all_words, looked, GROUP_WORDS);
			json_t *near = top_keys(g->articles, 1);
			json_t *draft = draft_of(g, words);
			json_array_append_new(
			    list,
			    json_pack("{s:s, s:o, s:I, s:f, s:f, s:f, s:O?, s:o, s:o?}", "category",
			              g->category, "words", words, "volume", (json_int_t)g->volume,
			              "mean_handling_minutes", g->minutes / (double)g->volume,
			              "cost_hours", g->minutes / 60, "mean_best_score",
			              g->score / (double)g->volume, "nearest_article",
			              json_array_get(near, 0), "examples", ex, "draft", draft));
			json_decref(near);
		}
		*out = json_pack("{s:s, s:f, s:I, s:I, s:I, s:o}", "since",
		                 csa_ts_format(o->since_ms, since), "weak_score", o->weak_score,
		                 "tickets", (json_int_t)looked, "weak", (json_int_t)weak,
		                 "unreadable", (json_int_t)unreadable, "groups", list);
		if (!*out)
			rc = csa_error(err, CSA_ENOMEM, "out of memory listing knowledge gaps");
	}
	for (size_t i = 0; i < ng; i++)
		group_release(&groups[i]);
	free(groups);
	json_decref(all_words);
	return rc;
}

/* ---- accepting an article --------------------------------------------- */

/* The header of an article as the knowledge base reads it (agents/kb.c):
 * id and strategy into the buffers, categories checked. */
static int check_article(const struct csa_config *cfg, const char *text, size_t len, char *id,
                         size_t idsz, struct csa_err *err)
{
	if (len > CSA_KB_MAX_ARTICLE_BYTES)
		return csa_error(err, CSA_ELIMIT, "article: %zu bytes, limit is %d", len,
		                 CSA_KB_MAX_ARTICLE_BYTES);
	if (memchr(text, '\0', len) || !csa_json_utf8_ok(text, len))
		return csa_error(err, CSA_EINVAL, "article: not UTF-8 text");
	int line = 0, body = 0;
	char strategy[128] = "";
	id[0] = '\0';
	for (const char *p = text, *end = text + len; p < end && !body;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char l[512];
		line++;
		if (n >= sizeof(l))
			return csa_error(err, CSA_EPARSE,
			                 "article line %d: a header line over %zu bytes", line,
			                 sizeof(l) - 1);
		memcpy(l, p, n);
		l[n] = '\0';
		while (n && (l[n - 1] == '\r' || l[n - 1] == ' ' || l[n - 1] == '\t'))
			l[--n] = '\0';
		char *k = l;
		while (*k == ' ' || *k == '\t')
			k++;
		p = nl ? nl + 1 : end;
		if (strcmp(k, "---") == 0) {
			body = 1;
			break;
		}
		if (!*k)
			continue;
		char *colon = strchr(k, ':');
		if (!colon)
			return csa_error(err, CSA_EPARSE,
			                 "article line %d: expected 'key: value' or '---'", line);
		*colon = '\0';
		char *v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		size_t kn = strlen(k);
		while (kn && (k[kn - 1] == ' ' || k[kn - 1] == '\t'))
			k[--kn] = '\0';
		if (strcmp(k, "id") == 0) {
			snprintf(id, idsz, "%s", v);
		} else if (strcmp(k, "strategy") == 0) {
			snprintf(strategy, sizeof(strategy), "%s", v);
		} else if (strcmp(k, "categories") == 0) {
			for (char *c = v; *c;) {
				char *comma = strchr(c, ',');
				if (comma)
					*comma = '\0';
				while (*c == ' ')
					c++;
				size_t cn = strlen(c);
				while (cn && c[cn - 1] == ' ')
					c[--cn] = '\0';
				if (*c && !csa_config_in_list(cfg, "taxonomy.categories", c))
					return csa_error(
					    err, CSA_EINVAL,
					    "article line %d: category '%.60s' is not in the "
					    "taxonomy",
					    line, c);
				if (!comma)
					break;
				c = comma + 1;
			}
		} else if (strcmp(k, "title") != 0) {
			return csa_error(err, CSA_EPARSE, "article line %d: unknown header '%.60s'",
			                 line, k);
		}
	}
	if (!body || !id[0] || !strategy[0])
		return csa_error(err, CSA_EPARSE,
		                 "article: the header needs 'id' and 'strategy' and a '---' line "
		                 "before the body");
	if (!csa_id_valid(id))
		return csa_error(err, CSA_EINVAL,
		                 "article: id '%.80s' must be 1-64 of [A-Za-z0-9_-]", id);
	if (!csa_config_in_list(cfg, "taxonomy.strategies", strategy))
		return csa_error(err, CSA_EINVAL,
		                 "article: strategy '%.60s' is not in the taxonomy", strategy);
	return CSA_OK;
}

int csa_gaps_accept(struct csa_ws *ws, const char *text, size_t len, const char *by, json_t **out,
                    struct csa_err *err)
{
	if (!by || !csa_id_valid(by))
		return csa_error(err, CSA_EINVAL,
		                 "accept: who accepts the article must be 1-64 of [A-Za-z0-9_-]");
	char id[CSA_ID_MAX + 2], doc[CSA_ID_MAX + 16], digest[CSA_SHA256_HEX_LEN];
	const struct csa_config *cfg = csa_ws_config(ws);
	int rc = check_article(cfg, text, len, id, sizeof(id), err);
	csa_config_unref(cfg);
	if (rc)
		return rc;
	snprintf(doc, sizeof(doc), "kb/%s.md", id);
	if ((rc = csa_sha256_hex(text, len, digest)))
		return csa_error(err, CSA_EIO, "accept: cannot digest the article");
	char *old = NULL;
	size_t old_len = 0;
	rc = csa_blobs_get(ws->blobs, doc, CSA_KB_MAX_ARTICLE_BYTES, &old, &old_len, err);
	if (rc && rc != CSA_ENOENT)
		return rc;
	struct csa_ledger *l = NULL;
	json_t *trail = NULL;
	if ((rc = csa_ledger_open_ws(ws, &l, err)) ||
	    (rc = csa_ledger_trail(l, doc, &trail, err))) {
		csa_ledger_close(l);
		free(old);
		return rc;
	}
	json_int_t version = 1;
	size_t i;
	json_t *r;
	json_array_foreach(trail, i, r)
	{
		json_int_t v =
		    (json_int_t)csa_json_int(json_object_get(r, "payload"), "version", 0);
		if (v >= version)
			version = v + 1;
	}
	json_decref(trail);
	/* the previous text whole (the knowledge base's files are UTF-8; one
	 * that is not is kept by its digest only) */
	char old_digest[CSA_SHA256_HEX_LEN] = "";
	json_t *prev = old ? json_stringn(old, old_len) : NULL;
	if (old && csa_sha256_hex(old, old_len, old_digest))
		old_digest[0] = '\0';
	json_t *payload =
	    json_pack("{s:s, s:I, s:s, s:s, s:o, s:s?}", "id", id, "version", version, "by", by,
	              "sha256", digest, "previous", prev ? prev : json_null(), "previous_sha256",
	              old_digest[0] ? old_digest : NULL);
	int replaced = old != NULL;
	free(old);
	/* the ledger first: a version that is written is always recorded */
	rc = payload ? csa_ledger_append(l, "kb_article", doc, payload, NULL, err)
	             : csa_error(err, CSA_ENOMEM, "out of memory accepting '%s'", doc);
	if (!rc)
		rc = csa_ledger_sync(l, err);
	if (!rc)
		rc = csa_blobs_put(ws->blobs, doc, text, len, err);
	if (!rc && !(*out = json_pack("{s:s, s:s, s:I, s:s, s:b}", "id", id, "document", doc,
	                              "version", version, "sha256", digest, "replaced", replaced)))
		rc = csa_error(err, CSA_ENOMEM, "out of memory accepting '%s'", doc);
	json_decref(payload);
	csa_ledger_close(l);
	return rc;
}
