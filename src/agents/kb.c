/* Knowledge base over SQLite FTS5. */
#include "agents/kb.h"
#include "base/fsops.h"
#include "base/json.h"
#include "store/ws.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <strings.h>
#include <unistd.h>

/* One copy of the index per core (at most this many): searches of
 * tickets on different threads run side by side instead of queueing on
 * one connection. */
#define KB_MAX_CONNS 8

struct kbconn {
	sqlite3 *db;
	pthread_mutex_t mu; /* guards db and the statements */
	/* prepared once: a ticket runs a search or two and a lookup */
	sqlite3_stmt *search_words, *search_filters, *get;
};

struct csa_kb {
	size_t n;     /* articles */
	size_t nconn; /* copies made */
	struct kbconn c[KB_MAX_CONNS];
};

/* A free copy, or, when every copy is busy, this thread's own to wait on. */
static struct kbconn *acquire(struct csa_kb *kb)
{
	for (size_t i = 0; i < kb->nconn; i++)
		if (pthread_mutex_trylock(&kb->c[i].mu) == 0)
			return &kb->c[i];
	struct kbconn *c = &kb->c[(size_t)pthread_self() % kb->nconn];
	pthread_mutex_lock(&c->mu);
	return c;
}

/* The statement kept in *slot, prepared on first use and reset after. */
static sqlite3_stmt *kept(struct kbconn *c, sqlite3_stmt **slot, const char *sql)
{
	if (!*slot &&
	    sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL) != SQLITE_OK)
		return NULL;
	return *slot;
}

static void done_with(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

size_t csa_kb_count(const struct csa_kb *kb)
{
	return kb ? kb->n : 0;
}

void csa_kb_free(struct csa_kb *kb)
{
	if (!kb)
		return;
	for (size_t i = 0; i < KB_MAX_CONNS; i++) {
		sqlite3_finalize(kb->c[i].search_words);
		sqlite3_finalize(kb->c[i].search_filters);
		sqlite3_finalize(kb->c[i].get);
		sqlite3_close(kb->c[i].db);
		pthread_mutex_destroy(&kb->c[i].mu);
	}
	free(kb);
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

/* Index one article; 'buf' (NUL-terminated) is parsed in place, 'path'
 * names it in errors. */
static int load_article(struct csa_kb *kb, const char *path, char *buf, sqlite3_stmt *ins,
                        struct csa_err *err)
{
	int rc = CSA_OK;
	char *id = NULL, *title = NULL, *cats = NULL, *strategy = NULL, *body = NULL;
	char *p = buf;
	int line = 0;
	while (*p) {
		char *nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		line++;
		char *l = trim(p);
		if (strcmp(l, "---") == 0) {
			body = nl ? nl + 1 : p + strlen(p);
			break;
		}
		char *colon = strchr(l, ':');
		if (*l && !colon) {
			rc = csa_error(err, CSA_EPARSE,
			               "'%s' line %d: expected 'key: value' or '---'", path, line);
			goto out;
		}
		if (colon) {
			*colon = '\0';
			char *k = trim(l), *v = trim(colon + 1);
			if (strcmp(k, "id") == 0)
				id = v;
			else if (strcmp(k, "title") == 0)
				title = v;
			else if (strcmp(k, "categories") == 0)
				cats = v;
			else if (strcmp(k, "strategy") == 0)
				strategy = v;
			else {
				rc = csa_error(err, CSA_EPARSE, "'%s' line %d: unknown header '%s'",
				               path, line, k);
				goto out;
			}
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	if (!body || !id || !*id || !strategy || !*strategy) {
		rc = csa_error(err, CSA_EPARSE,
		               "'%s': header needs 'id' and 'strategy' and a '---' line before the "
		               "body",
		               path);
		goto out;
	}
	sqlite3_reset(ins);
	sqlite3_bind_text(ins, 1, id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(ins, 2, title ? title : id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(ins, 3, body, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(ins, 4, cats ? cats : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(ins, 5, strategy, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(ins) != SQLITE_DONE) {
		rc = csa_error(err, CSA_EIO, "'%s': cannot index: %s", path,
		               sqlite3_errmsg(kb->c[0].db));
		goto out;
	}
	kb->n++;
out:
	return rc;
}

/* The built index, copied byte for byte into one more in-memory database
 * per core. */
static int copy_index(struct csa_kb *kb, struct csa_err *err)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	size_t want = cores < 1 ? 1 : cores > KB_MAX_CONNS ? KB_MAX_CONNS : (size_t)cores;
	sqlite3_int64 size = 0;
	unsigned char *img = want > 1 ? sqlite3_serialize(kb->c[0].db, "main", &size, 0) : NULL;
	if (want > 1 && !img)
		return csa_error(err, CSA_ENOMEM, "out of memory copying the knowledge base index");
	for (size_t i = 1; i < want; i++) {
		unsigned char *copy = sqlite3_malloc64((sqlite3_uint64)size);
		if (!copy || sqlite3_open_v2(":memory:", &kb->c[i].db,
		                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
		                             NULL) != SQLITE_OK) {
			sqlite3_free(copy);
			sqlite3_free(img);
			return csa_error(err, CSA_ENOMEM,
			                 "out of memory copying the knowledge base index");
		}
		memcpy(copy, img, (size_t)size);
		/* the copy belongs to the connection from here, even on failure */
		if (sqlite3_deserialize(kb->c[i].db, "main", copy, size, size,
		                        SQLITE_DESERIALIZE_FREEONCLOSE |
		                            SQLITE_DESERIALIZE_RESIZEABLE) != SQLITE_OK) {
			int rc = csa_error(err, CSA_EIO, "cannot copy the knowledge base index: %s",
			                   sqlite3_errmsg(kb->c[i].db));
			sqlite3_free(img);
			return rc;
		}
		kb->nconn = i + 1;
	}
	sqlite3_free(img);
	return CSA_OK;
}

int csa_kb_open(struct csa_blobs *blobs, struct csa_kb **out, struct csa_err *err)
{
	struct csa_kb *kb = calloc(1, sizeof(*kb));
	if (!kb)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the knowledge base");
	for (size_t i = 0; i < KB_MAX_CONNS; i++)
		pthread_mutex_init(&kb->c[i].mu, NULL);
	sqlite3_stmt *ins = NULL;
	int rc = CSA_OK;
	int failed = sqlite3_open_v2(":memory:", &kb->c[0].db,
	                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	sqlite3 *db0 = kb->c[0].db; /* the copy the articles go into */
	if (failed ||
	    sqlite3_exec(db0,
	                 "CREATE VIRTUAL TABLE kb USING fts5(id UNINDEXED, title, body, "
	                 "categories UNINDEXED, strategy UNINDEXED, tokenize='porter unicode61');",
	                 NULL, NULL, NULL) ||
	    sqlite3_prepare_v2(db0, "INSERT INTO kb VALUES(?1, ?2, ?3, ?4, ?5)", -1, &ins, NULL)) {
		rc = csa_error(err, CSA_EIO, "cannot create the knowledge base index: %s",
		               db0 ? sqlite3_errmsg(db0) : "out of memory");
		goto fail;
	}
	json_t *names = NULL;
	if ((rc = csa_blobs_list(blobs, "kb", &names, err)))
		goto fail;
	size_t i;
	json_t *nm;
	json_array_foreach(names, i, nm)
	{
		const char *f = json_string_value(nm);
		size_t l = strlen(f);
		if (l < 4 || strcmp(f + l - 3, ".md") != 0)
			continue;
		char name[256], *buf;
		size_t len;
		snprintf(name, sizeof(name), "kb/%s", f);
		if ((rc = csa_blobs_get(blobs, name, CSA_KB_MAX_ARTICLE_BYTES, &buf, &len, err)))
			break;
		rc = load_article(kb, name, buf, ins, err);
		free(buf);
		if (rc)
			break;
	}
	json_decref(names);
	if (rc)
		goto fail;
	sqlite3_finalize(ins);
	ins = NULL;
	/* one b-tree segment instead of one per article: each query word is
	 * then one lookup, five times faster than across the segments */
	if (sqlite3_exec(db0, "INSERT INTO kb(kb) VALUES('optimize')", NULL, NULL, NULL)) {
		rc = csa_error(err, CSA_EIO, "cannot optimise the knowledge base index: %s",
		               sqlite3_errmsg(db0));
		goto fail;
	}
	kb->nconn = 1;
	if ((rc = copy_index(kb, err)))
		goto fail;
	*out = kb;
	return CSA_OK;
fail:
	sqlite3_finalize(ins);
	csa_kb_free(kb);
	return rc;
}

/* Words of the text as an FTS5 OR query of quoted terms: no user syntax
 * reaches the query parser. */
/* Words that say nothing about which article fits; each word of the query
 * costs FTS5 a lookup, so they are left out. */
static const char *const stopwords[] = {
    "about", "after", "again", "all",   "also",   "and",   "any",   "are",   "been",   "but",
    "can",   "could", "did",   "does",  "for",    "from",  "get",   "had",   "has",    "have",
    "hello", "help",  "here",  "hey",   "how",    "just",  "know",  "let",   "like",   "more",
    "need",  "not",   "now",   "our",   "please", "since", "still", "thank", "thanks", "that",
    "the",   "them",  "then",  "there", "this",   "today", "too",   "very",  "want",   "was",
    "way",   "were",  "what",  "when",  "where",  "which", "while", "who",   "why",    "will",
    "with",  "would", "you",   "your"};

static int is_stopword(const char *w, size_t n)
{
	char low[8];
	if (n >= sizeof(low))
		return 0;
	for (size_t i = 0; i < n; i++)
		low[i] = (char)(w[i] >= 'A' && w[i] <= 'Z' ? w[i] + 32 : w[i]);
	low[n] = '\0';
	for (size_t i = 0; i < sizeof(stopwords) / sizeof(stopwords[0]); i++)
		if (strcmp(stopwords[i], low) == 0)
			return 1;
	return 0;
}

int csa_kb_is_stopword(const char *w, size_t n)
{
	return is_stopword(w, n);
}

/* At most this many distinct words go into one query. */
#define QUERY_WORDS 24

/* The FTS5 query for customer text: its distinct content words, each
 * quoted (customer text never reaches the query syntax), joined by OR. */
static char *fts_query(const char *text)
{
	size_t cap = 64, len = 0, words = 0;
	const char *seen[QUERY_WORDS];
	size_t seen_n[QUERY_WORDS];
	char *q = malloc(cap);
	if (!q)
		return NULL;
	q[0] = '\0';
	const char *p = text;
	while (*p && words < QUERY_WORDS) {
		while (*p && !((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		               (*p >= '0' && *p <= '9')))
			p++;
		const char *s = p;
		while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		       (*p >= '0' && *p <= '9'))
			p++;
		size_t n = (size_t)(p - s);
		if (n < 3 || n > 40 || is_stopword(s, n))
			continue;
		int dup = 0;
		for (size_t i = 0; i < words && !dup; i++)
			dup = seen_n[i] == n && strncasecmp(seen[i], s, n) == 0;
		if (dup)
			continue;
		if (len + n + 8 > cap) {
			cap = (len + n + 8) * 2;
			char *nq = realloc(q, cap);
			if (!nq) {
				free(q);
				return NULL;
			}
			q = nq;
		}
		len += (size_t)snprintf(q + len, cap - len, "%s\"%.*s\"", words ? " OR " : "",
		                        (int)n, s);
		seen[words] = s;
		seen_n[words++] = n;
	}
	return q;
}

int csa_kb_search(struct csa_kb *kb, const char *text, const char *category, const char *strategy,
                  size_t k, json_t **out, struct csa_err *err)
{
	json_t *arr = json_array();
	char *q = fts_query(text ? text : "");
	if (!q) {
		json_decref(arr);
		return csa_error(err, CSA_ENOMEM, "out of memory searching the knowledge base");
	}
	struct kbconn *c = acquire(kb);
	sqlite3_stmt *st = NULL;
	/* with no usable words, fall back to the filters alone */
	const char *sql = *q ? "SELECT id, title, strategy, bm25(kb) FROM kb WHERE kb MATCH ?1 "
	                       "AND (?2 IS NULL OR (',' || replace(categories, ' ', '') || ',') "
	                       "LIKE '%,' || ?2 || ',%') AND (?3 IS NULL OR strategy = ?3) "
	                       "ORDER BY bm25(kb) LIMIT ?4"
	                     : "SELECT id, title, strategy, 0.0 FROM kb WHERE ?1 = '' AND "
	                       "(?2 IS NULL OR (',' || replace(categories, ' ', '') || ',') "
	                       "LIKE '%,' || ?2 || ',%') AND (?3 IS NULL OR strategy = ?3) "
	                       "ORDER BY id LIMIT ?4";
	int rc = CSA_OK;
	if (!(st = kept(c, *q ? &c->search_words : &c->search_filters, sql))) {
		rc = csa_error(err, CSA_EIO, "knowledge base query: %s", sqlite3_errmsg(c->db));
		goto out;
	}
	sqlite3_bind_text(st, 1, q, -1, SQLITE_STATIC);
	if (category)
		sqlite3_bind_text(st, 2, category, -1, SQLITE_STATIC);
	if (strategy)
		sqlite3_bind_text(st, 3, strategy, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)k);
	int s;
	while ((s = sqlite3_step(st)) == SQLITE_ROW)
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:f}", "id",
		                                     sqlite3_column_text(st, 0), "title",
		                                     sqlite3_column_text(st, 1), "strategy",
		                                     sqlite3_column_text(st, 2), "score",
		                                     -sqlite3_column_double(st, 3)));
	if (s != SQLITE_DONE)
		rc = csa_error(err, CSA_EIO, "knowledge base query: %s", sqlite3_errmsg(c->db));
out:
	if (st)
		done_with(st);
	pthread_mutex_unlock(&c->mu);
	free(q);
	if (rc) {
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return CSA_OK;
}

json_t *csa_kb_get(struct csa_kb *kb, const char *id)
{
	json_t *r = NULL;
	sqlite3_stmt *st = NULL;
	struct kbconn *c = acquire(kb);
	if ((st = kept(c, &c->get,
	               "SELECT id, title, categories, strategy, body FROM kb WHERE id = ?1"))) {
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			r = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", sqlite3_column_text(st, 0),
			              "title", sqlite3_column_text(st, 1), "categories",
			              sqlite3_column_text(st, 2), "strategy",
			              sqlite3_column_text(st, 3), "body",
			              sqlite3_column_text(st, 4));
		done_with(st);
	}
	pthread_mutex_unlock(&c->mu);
	return r;
}

char *csa_kb_render(const char *body, const json_t *vars, size_t max)
{
	size_t cap = max + 1, len = 0;
	char *out = malloc(cap);
	if (!out)
		return NULL;
	for (const char *p = body; *p && len < max;) {
		const char *e;
		if (p[0] == '{' && p[1] == '{' && (e = strstr(p + 2, "}}")) && e - p < 66) {
			char name[64];
			snprintf(name, sizeof(name), "%.*s", (int)(e - p - 2), p + 2);
			const char *v = json_string_value(json_object_get(vars, name));
			if (v) {
				size_t n = strlen(v);
				if (n > max - len)
					n = max - len;
				memcpy(out + len, v, n);
				len += n;
				p = e + 2;
				continue;
			}
		}
		out[len++] = *p++;
	}
	out[len] = '\0';
	return out;
}

static const char *const defaults[][2] = {
    {"tech-outage.md",
     "id: tech-outage\ntitle: Service disruption acknowledged\ncategories: TECHNICAL_ISSUE\n"
     "strategy: ESCALATE_TO_TECHNICAL\n---\nHello {{client_name}},\n\nwe are aware that the "
     "service "
     "is not loading or not responding for some customers. Our engineers are investigating the "
     "outage "
     "and we will update you within the hour.\n"},
    {"tech-setup.md",
     "id: tech-setup\ntitle: Configuring the product for your team\ncategories: "
     "TECHNICAL_ISSUE, GENERAL_SUPPORT\nstrategy: TEMPLATE_RESPONSE\n---\nHello "
     "{{client_name}},\n\nto "
     "configure the integration, open Settings, choose Integrations and follow the setup guide. "
     "Supported "
     "browsers are the two latest versions of Chrome, Firefox, Safari and Edge.\n"},
    {"tech-login-sso.md", "id: tech-login-sso\ntitle: SSO and session problems\ncategories: "
                          "TECHNICAL_ISSUE, ACCOUNT_MANAGEMENT\nstrategy: "
                          "REQUEST_MORE_INFO\n---\nHello {{client_name}},\n\nto "
                          "look into the login or SSO problem we need: the browser and version, "
                          "the exact error message, and "
                          "the time it last happened.\n"},
    {"billing-duplicate.md",
     "id: billing-duplicate\ntitle: Duplicate charge and refunds\ncategories: "
     "BILLING_INQUIRY\nstrategy: ESCALATE_TO_HUMAN\n---\nHello {{client_name}},\n\nsorry about the "
     "double "
     "charge. A billing specialist will check the payment and refund the duplicate within 5 "
     "business "
     "days.\n"},
    {"billing-invoice-copy.md",
     "id: billing-invoice-copy\ntitle: Invoice copies and billing address\n"
     "categories: BILLING_INQUIRY\nstrategy: AUTOMATED_RESOLUTION\n---\nHello "
     "{{client_name}},\n\nyou can "
     "download every invoice and update the billing address under Settings > Billing. We have also "
     "sent "
     "a copy of the invoice to your e-mail address.\n"},
    {"billing-pricing.md",
     "id: billing-pricing\ntitle: Plans, discounts and payment methods\ncategories: "
     "BILLING_INQUIRY\nstrategy: TEMPLATE_RESPONSE\n---\nHello {{client_name}},\n\nannual plans "
     "come with "
     "a 15% discount. We accept cards, SEPA and bank transfer; a failed card payment can be "
     "retried from "
     "the invoice page.\n"},
    {"feature-request.md", "id: feature-request\ntitle: Thank you for your suggestion\ncategories: "
                           "FEATURE_REQUEST\nstrategy: TEMPLATE_RESPONSE\n---\nHello "
                           "{{client_name}},\n\nthank you for the "
                           "suggestion. We have added it to our product feedback board; the "
                           "product team reviews it every "
                           "month and we will let you know when it is planned.\n"},
    {"feature-roadmap.md",
     "id: feature-roadmap\ntitle: Roadmap questions\ncategories: FEATURE_REQUEST, "
     "GENERAL_SUPPORT\nstrategy: REQUEST_MORE_INFO\n---\nHello {{client_name}},\n\ncould you tell "
     "us more "
     "about what you would like to achieve with this feature, and how many people in your team "
     "need "
     "it?\n"},
    {"bug-report.md",
     "id: bug-report\ntitle: Bug reproduction\ncategories: BUG_REPORT\nstrategy: "
     "ESCALATE_TO_TECHNICAL\n---\nHello {{client_name}},\n\nthank you for the report. We have "
     "reproduced "
     "the problem and passed it to engineering with your steps; we will update you when the fix is "
     "released.\n"},
    {"bug-more-info.md",
     "id: bug-more-info\ntitle: Details needed to reproduce a bug\ncategories: "
     "BUG_REPORT, TECHNICAL_ISSUE\nstrategy: REQUEST_MORE_INFO\n---\nHello {{client_name}},\n\nto "
     "reproduce the error, please send the steps you followed, a screenshot, and the time it "
     "happened.\n"},
    {"account-password.md", "id: account-password\ntitle: Password reset and locked accounts\n"
                            "categories: ACCOUNT_MANAGEMENT\nstrategy: "
                            "AUTOMATED_RESOLUTION\n---\nHello {{client_name}},\n\nwe "
                            "have unlocked your account and sent a new password reset link. It is "
                            "valid for 30 minutes; check "
                            "the spam folder if it does not arrive.\n"},
    {"account-users.md",
     "id: account-users\ntitle: Adding, removing and changing users\ncategories: "
     "ACCOUNT_MANAGEMENT\nstrategy: AUTOMATED_RESOLUTION\n---\nHello {{client_name}},\n\nthe "
     "requested "
     "user changes are done. Admins can add or remove users and change e-mail addresses under "
     "Settings > "
     "Users.\n"},
    {"account-close.md",
     "id: account-close\ntitle: Closing or merging accounts\ncategories: "
     "ACCOUNT_MANAGEMENT\nstrategy: ESCALATE_TO_HUMAN\n---\nHello {{client_name}},\n\nan account "
     "manager "
     "will contact you to close or merge the accounts and to export your data first.\n"},
    {"general-hours.md", "id: general-hours\ntitle: Support hours and resources\ncategories: "
                         "GENERAL_SUPPORT\nstrategy: TEMPLATE_RESPONSE\n---\nHello "
                         "{{client_name}},\n\nour support team is "
                         "available Monday to Friday, 8:00 to 20:00 CET. Guides, webinars and the "
                         "terms of service are in the "
                         "help centre.\n"},
    {"general-more-info.md",
     "id: general-more-info\ntitle: Tell us more\ncategories: GENERAL_SUPPORT\n"
     "strategy: REQUEST_MORE_INFO\n---\nHello {{client_name}},\n\nthanks for reaching out. Could "
     "you tell "
     "us more about what is not working, what you expected, and since when?\n"},
};

int csa_kb_write_defaults(struct csa_blobs *blobs, struct csa_err *err)
{
	int rc = CSA_OK;
	for (size_t i = 0; rc == CSA_OK && i < sizeof(defaults) / sizeof(defaults[0]); i++) {
		char name[256];
		snprintf(name, sizeof(name), "kb/%s", defaults[i][0]);
		if (csa_blobs_version(blobs, name))
			continue; /* the team's own version stays */
		rc = csa_blobs_put(blobs, name, defaults[i][1], strlen(defaults[i][1]), err);
	}
	return rc;
}

int csa_kb_seed(struct csa_blobs *docs, const char *ws_root, struct csa_err *err)
{
	char marker[4096];
	if (snprintf(marker, sizeof(marker), "%s/%s", ws_root, CSA_WS_KB_SEED) >=
	    (int)sizeof(marker))
		return csa_error(err, CSA_ELIMIT, "workspace path too long: '%s'", ws_root);
	struct stat st;
	if (stat(marker, &st) != 0) {
		if (errno == ENOENT)
			return CSA_OK;
		return csa_error_sys(err, "cannot stat '%s'", marker);
	}
	int rc = csa_kb_write_defaults(docs, err);
	if (rc)
		return rc;
	if (csa_fs_unlink(marker) != 0 && errno != ENOENT)
		return csa_error_sys(err, "cannot remove '%s'", marker);
	return CSA_OK;
}
