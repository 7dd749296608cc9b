/*
 * The SQLite backend of search/search.h: .csa/search.db (WAL), one row
 * per ticket with the fields the inbox filters and sorts on, and an FTS5
 * table of its messages under the same rowid.
 *
 * Every order is ascending over stored keys (the update time is stored
 * negated), so a cursor is the last row's key and the next page is a
 * row-value comparison "(k1, k2, id) > (?, ?, ?)" that an index answers
 * directly: pages stay put when tickets are added elsewhere in the order
 * (keyset pagination), and page 1,000 costs what page 1 does.
 *
 * The refresh thread writes through one connection; queries read through
 * a few others, so a long catch-up never holds up a query (WAL readers do
 * not wait for the writer).
 */
#include "search/search.h"
#include "base/fsops.h"
#include "base/ids.h"
#include "base/ts.h"
#include "sla/sla.h"
#include "store/ws.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCHEMA_VERSION 3
#define READERS        4

struct reader {
	sqlite3 *db;
	int busy;
};

struct sqlite_search {
	struct csa_search base;
	char path[4200];
	pthread_mutex_t wmu; /* the writer connection */
	sqlite3 *w;
	pthread_mutex_t rmu; /* the readers' busy flags */
	pthread_cond_t rcv;
	struct reader r[READERS];
};

static int db_err(struct sqlite_search *s, sqlite3 *db, struct csa_err *err, const char *doing)
{
	int code = sqlite3_errcode(db);
	return csa_error(err, code == SQLITE_BUSY || code == SQLITE_LOCKED ? CSA_EBUSY : CSA_EIO,
	                 "'%s': %s: %s", s->path, doing, sqlite3_errmsg(db));
}

#define FILTER_COLS                                                                                \
	"status, priority, stage, category, assigned, sla_risk, sla_breach, review, autonomous"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS tickets("
    " rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, version INTEGER NOT NULL,"
    " status TEXT NOT NULL, priority TEXT NOT NULL, prank INTEGER NOT NULL,"
    " stage TEXT NOT NULL, category TEXT NOT NULL, assigned TEXT NOT NULL,"
    " client TEXT NOT NULL, company TEXT NOT NULL, customer TEXT NOT NULL,"
    " subject TEXT NOT NULL,"
    " nupd INTEGER NOT NULL," /* minus the update time: every order ascends */
    " sla_risk INTEGER NOT NULL, sla_breach INTEGER NOT NULL, sla_due INTEGER NOT NULL,"
    " review INTEGER NOT NULL, autonomous INTEGER NOT NULL);"
    /* one index per order, holding every filter column, so a page walks
     * it in order and tests each filter without reading the row: at worst
     * (a filter nothing matches) one pass over the index, about 20 ms at
     * 100,000 tickets */
    "CREATE INDEX IF NOT EXISTS t_upd ON tickets(nupd, id, " FILTER_COLS ");"
    "CREATE INDEX IF NOT EXISTS t_due ON tickets(sla_due, id, " FILTER_COLS ");"
    "CREATE INDEX IF NOT EXISTS t_pri ON tickets(prank, nupd, id, " FILTER_COLS ");"
    /* the default order under one equal filter: read just its rows */
    "CREATE INDEX IF NOT EXISTS t_status ON tickets(status, nupd, id);"
    "CREATE INDEX IF NOT EXISTS t_priority ON tickets(priority, nupd, id);"
    "CREATE INDEX IF NOT EXISTS t_category ON tickets(category, nupd, id);"
    "CREATE INDEX IF NOT EXISTS t_assigned ON tickets(assigned, nupd, id);"
    "CREATE INDEX IF NOT EXISTS t_customer ON tickets(customer, nupd, id);"
    "CREATE INDEX IF NOT EXISTS t_stage ON tickets(stage, nupd, id);"
    "CREATE INDEX IF NOT EXISTS t_review ON tickets(nupd, id) WHERE review = 1;"
    "CREATE INDEX IF NOT EXISTS t_auto ON tickets(nupd, id) WHERE autonomous = 1;"
    "CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(body,"
    " tokenize = 'unicode61 remove_diacritics 2');"
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);";

static int prio_rank(const char *p)
{
	static const char *const order[] = {"CRITICAL", "HIGH", "MEDIUM", "LOW"};
	for (int k = 0; k < 4; k++)
		if (strcmp(p, order[k]) == 0)
			return k;
	return 4;
}

/* ---- writing ------------------------------------------------------------- */

static int s_update(struct csa_search *base, const struct csa_search_doc *docs, size_t n,
                    struct csa_err *err)
{
	struct sqlite_search *s = (struct sqlite_search *)base;
	if (!n)
		return CSA_OK;
	pthread_mutex_lock(&s->wmu);
	sqlite3_stmt *up = NULL, *del = NULL, *ins = NULL;
	int rc = CSA_OK;
	if (sqlite3_exec(s->w, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		rc = db_err(s, s->w, err, "indexing tickets");
		pthread_mutex_unlock(&s->wmu);
		return rc;
	}
	if (sqlite3_prepare_v2(
	        s->w,
	        "INSERT INTO tickets(id, version, status, priority, prank, stage, category,"
	        " assigned, client, company, nupd, sla_risk, sla_breach, sla_due, review,"
	        " autonomous, customer, subject)"
	        " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)"
	        " ON CONFLICT(id) DO UPDATE SET version = ?2, status = ?3, priority = ?4,"
	        " prank = ?5, stage = ?6, category = ?7, assigned = ?8, client = ?9,"
	        " company = ?10, nupd = ?11, sla_risk = ?12, sla_breach = ?13, sla_due = ?14,"
	        " review = ?15, autonomous = ?16, customer = ?17, subject = ?18 RETURNING rid",
	        -1, &up, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(s->w, "DELETE FROM fts WHERE rowid = ?1", -1, &del, NULL) !=
	        SQLITE_OK ||
	    sqlite3_prepare_v2(s->w, "INSERT INTO fts(rowid, body) VALUES(?1, ?2)", -1, &ins,
	                       NULL) != SQLITE_OK)
		rc = db_err(s, s->w, err, "indexing tickets");
	for (size_t i = 0; i < n && rc == CSA_OK; i++) {
		const struct csa_search_doc *d = &docs[i];
		sqlite3_bind_text(up, 1, d->id, -1, SQLITE_STATIC);
		/* the version is a bit pattern: kept as the signed integer of
		 * the same bits */
		sqlite3_bind_int64(up, 2, (sqlite3_int64)d->version);
		sqlite3_bind_text(up, 3, d->status, -1, SQLITE_STATIC);
		sqlite3_bind_text(up, 4, d->priority, -1, SQLITE_STATIC);
		sqlite3_bind_int(up, 5, prio_rank(d->priority));
		sqlite3_bind_text(up, 6, d->stage, -1, SQLITE_STATIC);
		sqlite3_bind_text(up, 7, d->category, -1, SQLITE_STATIC);
		sqlite3_bind_text(up, 8, d->assigned, -1, SQLITE_STATIC);
		sqlite3_bind_text(up, 9, d->client, -1, SQLITE_STATIC);
		sqlite3_bind_text(up, 10, d->company, -1, SQLITE_STATIC);
		sqlite3_bind_int64(up, 11, -d->updated_ms);
		sqlite3_bind_int64(up, 12, d->sla_risk_ms);
		sqlite3_bind_int64(up, 13, d->sla_breach_ms);
		sqlite3_bind_int64(up, 14, d->sla_due_ms);
		sqlite3_bind_int(up, 15, d->review);
		sqlite3_bind_int(up, 16, d->autonomous);
		sqlite3_bind_text(up, 17, d->customer ? d->customer : "", -1, SQLITE_STATIC);
		sqlite3_bind_text(up, 18, d->subject ? d->subject : "", (int)d->subject_len,
		                  SQLITE_STATIC);
		if (sqlite3_step(up) != SQLITE_ROW) {
			rc = db_err(s, s->w, err, "indexing tickets");
			break;
		}
		sqlite3_int64 rid = sqlite3_column_int64(up, 0);
		sqlite3_reset(up);
		sqlite3_bind_int64(del, 1, rid);
		sqlite3_bind_int64(ins, 1, rid);
		sqlite3_bind_text(ins, 2, d->text, -1, SQLITE_STATIC);
		if (sqlite3_step(del) != SQLITE_DONE || sqlite3_step(ins) != SQLITE_DONE)
			rc = db_err(s, s->w, err, "indexing ticket messages");
		sqlite3_reset(del);
		sqlite3_reset(ins);
	}
	sqlite3_finalize(up);
	sqlite3_finalize(del);
	sqlite3_finalize(ins);
	if (rc == CSA_OK && sqlite3_exec(s->w, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = db_err(s, s->w, err, "indexing tickets");
	if (rc)
		sqlite3_exec(s->w, "ROLLBACK", NULL, NULL, NULL);
	pthread_mutex_unlock(&s->wmu);
	return rc;
}

static int s_remove(struct csa_search *base, char *const *ids, size_t n, struct csa_err *err)
{
	struct sqlite_search *s = (struct sqlite_search *)base;
	pthread_mutex_lock(&s->wmu);
	sqlite3_stmt *del = NULL;
	int rc = CSA_OK;
	if (sqlite3_exec(s->w, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(
	        s->w, "DELETE FROM fts WHERE rowid = (SELECT rid FROM tickets WHERE id = ?1)", -1,
	        &del, NULL) != SQLITE_OK)
		rc = db_err(s, s->w, err, "dropping removed tickets");
	sqlite3_stmt *del2 = NULL;
	if (rc == CSA_OK && sqlite3_prepare_v2(s->w, "DELETE FROM tickets WHERE id = ?1", -1, &del2,
	                                       NULL) != SQLITE_OK)
		rc = db_err(s, s->w, err, "dropping removed tickets");
	for (size_t i = 0; i < n && rc == CSA_OK; i++) {
		sqlite3_bind_text(del, 1, ids[i], -1, SQLITE_STATIC);
		sqlite3_bind_text(del2, 1, ids[i], -1, SQLITE_STATIC);
		if (sqlite3_step(del) != SQLITE_DONE || sqlite3_step(del2) != SQLITE_DONE)
			rc = db_err(s, s->w, err, "dropping removed tickets");
		sqlite3_reset(del);
		sqlite3_reset(del2);
	}
	sqlite3_finalize(del);
	sqlite3_finalize(del2);
	if (rc == CSA_OK && sqlite3_exec(s->w, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		rc = db_err(s, s->w, err, "dropping removed tickets");
	if (rc)
		sqlite3_exec(s->w, "ROLLBACK", NULL, NULL, NULL);
	pthread_mutex_unlock(&s->wmu);
	return rc;
}

static int s_versions(struct csa_search *base, char ***ids_out, uint64_t **v_out, size_t *n_out,
                      struct csa_err *err)
{
	struct sqlite_search *s = (struct sqlite_search *)base;
	*ids_out = NULL;
	*v_out = NULL;
	*n_out = 0;
	pthread_mutex_lock(&s->wmu);
	sqlite3_stmt *st;
	int rc = CSA_OK;
	char **ids = NULL;
	uint64_t *v = NULL;
	size_t n = 0, cap = 0;
	if (sqlite3_prepare_v2(s->w, "SELECT id, version FROM tickets ORDER BY id", -1, &st,
	                       NULL) != SQLITE_OK) {
		rc = db_err(s, s->w, err, "reading indexed versions");
		pthread_mutex_unlock(&s->wmu);
		return rc;
	}
	int step;
	while (rc == CSA_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 1024;
			char **ni = realloc(ids, cap * sizeof(*ni));
			if (ni)
				ids = ni;
			uint64_t *nv = ni ? realloc(v, cap * sizeof(*nv)) : NULL;
			if (nv)
				v = nv;
			if (!ni || !nv) {
				rc = csa_error(err, CSA_ENOMEM, "out of memory reading '%s'",
				               s->path);
				break;
			}
		}
		if (!(ids[n] = strdup((const char *)sqlite3_column_text(st, 0)))) {
			rc = csa_error(err, CSA_ENOMEM, "out of memory reading '%s'", s->path);
			break;
		}
		v[n++] = (uint64_t)sqlite3_column_int64(st, 1);
	}
	if (rc == CSA_OK && step != SQLITE_DONE)
		rc = db_err(s, s->w, err, "reading indexed versions");
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->wmu);
	if (rc) {
		for (size_t i = 0; i < n; i++)
			free(ids[i]);
		free(ids);
		free(v);
		return rc;
	}
	*ids_out = ids;
	*v_out = v;
	*n_out = n;
	return CSA_OK;
}

static char *s_meta_get(struct csa_search *base, const char *key)
{
	struct sqlite_search *s = (struct sqlite_search *)base;
	char *out = NULL;
	sqlite3_stmt *st;
	pthread_mutex_lock(&s->wmu);
	if (sqlite3_prepare_v2(s->w, "SELECT v FROM meta WHERE k = ?1", -1, &st, NULL) ==
	    SQLITE_OK) {
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			out = strdup((const char *)sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->wmu);
	return out;
}

static int s_meta_set(struct csa_search *base, const char *key, const char *value,
                      struct csa_err *err)
{
	struct sqlite_search *s = (struct sqlite_search *)base;
	sqlite3_stmt *st;
	int rc = CSA_OK;
	pthread_mutex_lock(&s->wmu);
	if (sqlite3_prepare_v2(s->w, "INSERT OR REPLACE INTO meta(k, v) VALUES(?1, ?2)", -1, &st,
	                       NULL) != SQLITE_OK) {
		rc = db_err(s, s->w, err, "writing the index's settings");
	} else {
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
			rc = db_err(s, s->w, err, "writing the index's settings");
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->wmu);
	return rc;
}

/* ---- querying ------------------------------------------------------------- */

/* SQL text built from constant fragments only: every value is bound. */
struct sql {
	char buf[2048];
	size_t len;
	int bad;
};

static void sql_add(struct sql *q, const char *frag)
{
	size_t n = strlen(frag);
	if (q->len + n + 1 > sizeof(q->buf)) {
		q->bad = 1;
		return;
	}
	memcpy(q->buf + q->len, frag, n + 1);
	q->len += n;
}

/* The values the WHERE clause binds, in order. */
struct binds {
	int n;
	int is_int[16];
	const char *txt[16];
	sqlite3_int64 num[16];
};

static void bind_txt(struct binds *b, const char *v)
{
	b->is_int[b->n] = 0;
	b->txt[b->n++] = v;
}

static void bind_num(struct binds *b, sqlite3_int64 v)
{
	b->is_int[b->n] = 1;
	b->num[b->n++] = v;
}

/* WHERE clause of filter f (fts: its FTS5 query, "" for none). */
static void where(struct sql *q, struct binds *b, const struct csa_search_filter *f,
                  const char *fts)
{
	sql_add(q, " WHERE 1");
	static const struct {
		size_t off;
		const char *sql;
	} eq[] = {
	    {offsetof(struct csa_search_filter, status), " AND status = ?"},
	    {offsetof(struct csa_search_filter, priority), " AND priority = ?"},
	    {offsetof(struct csa_search_filter, stage), " AND stage = ?"},
	    {offsetof(struct csa_search_filter, category), " AND category = ?"},
	    {offsetof(struct csa_search_filter, assigned), " AND assigned = ?"},
	    {offsetof(struct csa_search_filter, customer), " AND customer = ?"},
	};
	for (size_t k = 0; k < sizeof(eq) / sizeof(eq[0]); k++) {
		const char *v = *(const char *const *)((const char *)f + eq[k].off);
		if (v) {
			sql_add(q, eq[k].sql);
			bind_txt(b, v);
		}
	}
	/* as constants: a partial index is used only for a literal */
	if (f->review >= 0)
		sql_add(q, f->review ? " AND review = 1" : " AND review = 0");
	if (f->autonomous >= 0)
		sql_add(q, f->autonomous ? " AND autonomous = 1" : " AND autonomous = 0");
	/* the clock's instants against now (csa_sla_clock_state) */
	if (f->sla == CSA_SLA_BREACHED) {
		sql_add(q, " AND sla_breach < ?");
		bind_num(b, f->now_ms);
	} else if (f->sla == CSA_SLA_AT_RISK) {
		sql_add(q, " AND sla_risk <= ? AND sla_breach >= ?");
		bind_num(b, f->now_ms);
		bind_num(b, f->now_ms);
	} else if (f->sla == CSA_SLA_ON_TIME) {
		sql_add(q, " AND sla_risk > ? AND sla_breach >= ?");
		bind_num(b, f->now_ms);
		bind_num(b, f->now_ms);
	}
	if (fts && *fts) {
		/* "+rid": the matches are a set the walk of the order's index
		 * tests each row against, not rows to fetch and sort (a common
		 * word matches tens of thousands) */
		sql_add(q, " AND +rid IN (SELECT rowid FROM fts WHERE fts MATCH ?)");
		bind_txt(b, fts);
	}
}

static void bind_all(sqlite3_stmt *st, const struct binds *b)
{
	for (int k = 0; k < b->n; k++) {
		if (b->is_int[k])
			sqlite3_bind_int64(st, k + 1, b->num[k]);
		else
			sqlite3_bind_text(st, k + 1, b->txt[k], -1, SQLITE_STATIC);
	}
}

static struct reader *acquire(struct sqlite_search *s)
{
	pthread_mutex_lock(&s->rmu);
	for (;;) {
		for (int k = 0; k < READERS; k++) {
			if (!s->r[k].busy) {
				s->r[k].busy = 1;
				pthread_mutex_unlock(&s->rmu);
				return &s->r[k];
			}
		}
		pthread_cond_wait(&s->rcv, &s->rmu);
	}
}

static void release_reader(struct sqlite_search *s, struct reader *r)
{
	pthread_mutex_lock(&s->rmu);
	r->busy = 0;
	pthread_cond_signal(&s->rcv);
	pthread_mutex_unlock(&s->rmu);
}

/* The order's keys (after the id) as SQL: what ORDER BY and a cursor
 * compare. */
static const char *const order_keys[CSA_SORT_COUNT] = {"nupd", "sla_due", "prank, nupd"};
static const int order_nkeys[CSA_SORT_COUNT] = {1, 1, 2};

/*
 * A cursor: "<sort>.<key>[.<key>].<id>", the keys of the last row of the
 * page in decimal. Parsed strictly: a cursor is client input.
 */
static int cursor_parse(const char *c, enum csa_search_sort sort, sqlite3_int64 keys[2], char *id,
                        struct csa_err *err)
{
	const char *name = csa_search_sort_name(sort);
	size_t nl = strlen(name);
	if (strncmp(c, name, nl) != 0 || c[nl] != '.')
		return csa_error(err, CSA_EINVAL, "cursor is not one of sort '%s'", name);
	const char *p = c + nl + 1;
	for (int k = 0; k < order_nkeys[sort]; k++) {
		char *end;
		errno = 0;
		long long v = strtoll(p, &end, 10);
		if (end == p || *end != '.' || errno)
			return csa_error(err, CSA_EINVAL, "cursor is damaged");
		keys[k] = v;
		p = end + 1;
	}
	if (csa_id_check(p, strlen(p), NULL))
		return csa_error(err, CSA_EINVAL, "cursor is damaged");
	snprintf(id, CSA_ID_MAX + 1, "%s", p);
	return CSA_OK;
}

/* An instant of the index as ISO 8601, or JSON null for "never". */
static json_t *instant(sqlite3_int64 ms)
{
	char ts[CSA_TS_LEN];
	return ms == CSA_SLA_NEVER ? json_null() : json_string(csa_ts_format(ms, ts));
}

static json_t *col_str(sqlite3_stmt *st, int k)
{
	const char *v = (const char *)sqlite3_column_text(st, k);
	return v && *v ? json_string(v) : json_null();
}

/* One row of a page, as the index holds it: the SLA state is the clock's
 * at now_ms. */
static json_t *row_json(sqlite3_stmt *st, int64_t now_ms)
{
	struct csa_sla_clock clock = {.risk_ms = sqlite3_column_int64(st, 9),
	                              .breach_ms = sqlite3_column_int64(st, 10),
	                              .due_ms = sqlite3_column_int64(st, 11)};
	return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:o, s:b, s:b, s:o, "
	                 "s:o}",
	                 "ticket_id", (const char *)sqlite3_column_text(st, 0), "client_name",
	                 col_str(st, 1), "company_name", col_str(st, 2), "priority", col_str(st, 3),
	                 "workflow_stage", col_str(st, 4), "conversation_status", col_str(st, 5),
	                 "category", col_str(st, 6), "assigned_member", col_str(st, 7),
	                 "last_updated", instant(-sqlite3_column_int64(st, 8)), "sla_state",
	                 csa_sla_state_name(csa_sla_clock_state(&clock, now_ms)), "sla_due",
	                 instant(clock.due_ms), "waiting_for_review", sqlite3_column_int(st, 12),
	                 "decided_autonomously", sqlite3_column_int(st, 13), "subject",
	                 col_str(st, 14), "customer", col_str(st, 15));
}

/*
 * The index a page walks, chosen here rather than by SQLite, which cannot
 * tell how many rows a range (the SLA state) or a word matches and would
 * rather fetch every match and sort it: the order's own index, except in
 * the default order under a filter that has an index in that order (then
 * only the filter's rows are read), the one likely to match least first.
 */
static const char *index_for(const struct csa_search_filter *f, enum csa_search_sort sort)
{
	if (sort == CSA_SORT_SLA_DUE)
		return "t_due";
	if (sort == CSA_SORT_PRIORITY)
		return "t_pri";
	return f->customer          ? "t_customer"
	       : f->assigned        ? "t_assigned"
	       : f->review == 1     ? "t_review"
	       : f->autonomous == 1 ? "t_auto"
	       : f->category        ? "t_category"
	       : f->stage           ? "t_stage"
	       : f->priority        ? "t_priority"
	       : f->status          ? "t_status"
	                            : "t_upd";
}

static int s_query(struct csa_search *base, const struct csa_search_filter *f,
                   enum csa_search_sort sort, const char *cursor, size_t limit,
                   struct csa_search_page *out, struct csa_err *err)
{
	struct sqlite_search *s = (struct sqlite_search *)base;
	memset(out, 0, sizeof(*out));
	if (sort >= CSA_SORT_COUNT || limit < 1 || limit > CSA_SEARCH_LIMIT_MAX)
		CSA_BUG("search query: sort or limit out of range");
	sqlite3_int64 keys[2] = {0, 0};
	char after[CSA_ID_MAX + 1] = "";
	if (cursor && *cursor) {
		int rc = cursor_parse(cursor, sort, keys, after, err);
		if (rc)
			return rc;
	}
	char *fts = csa_search_fts_query(f->q);
	if (!fts)
		return csa_error(err, CSA_ENOMEM, "out of memory searching tickets");
	struct sql q = {.len = 0};
	struct binds b = {.n = 0};
	sql_add(&q, "SELECT id, client, company, priority, stage, status, category, assigned,"
	            " nupd, sla_risk, sla_breach, sla_due, review, autonomous, subject, customer, ");
	sql_add(&q, order_keys[sort]);
	sql_add(&q, " FROM tickets INDEXED BY ");
	sql_add(&q, index_for(f, sort));
	where(&q, &b, f, fts);
	if (*after) {
		sql_add(&q, sort == CSA_SORT_PRIORITY  ? " AND (prank, nupd, id) > (?, ?, ?)"
		            : sort == CSA_SORT_UPDATED ? " AND (nupd, id) > (?, ?)"
		                                       : " AND (sla_due, id) > (?, ?)");
		for (int k = 0; k < order_nkeys[sort]; k++)
			bind_num(&b, keys[k]);
		bind_txt(&b, after);
	}
	sql_add(&q, " ORDER BY ");
	sql_add(&q, order_keys[sort]);
	sql_add(&q, ", id LIMIT ?");
	bind_num(&b, (sqlite3_int64)limit + 1); /* one more: is there a next page? */
	if (q.bad)
		CSA_BUG("search query: SQL text too long");
	struct reader *r = acquire(s);
	sqlite3_stmt *st;
	int rc = CSA_OK;
	if (sqlite3_prepare_v2(r->db, q.buf, -1, &st, NULL) != SQLITE_OK) {
		rc = db_err(s, r->db, err, "searching tickets");
		release_reader(s, r);
		free(fts);
		return rc;
	}
	bind_all(st, &b);
	char **ids = calloc(limit + 1, sizeof(*ids));
	json_t *rows = json_array();
	size_t n = 0;
	sqlite3_int64 last[2] = {0, 0};
	int step = SQLITE_DONE, nomem = !ids || !rows;
	while (!nomem && (step = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == limit) {
			/* a next page exists: its cursor is this page's last row */
			char *c = out->next;
			int len = snprintf(c, sizeof(out->next), "%s", csa_search_sort_name(sort));
			for (int k = 0; k < order_nkeys[sort]; k++)
				len += snprintf(c + len, sizeof(out->next) - (size_t)len, ".%lld",
				                (long long)last[k]);
			snprintf(c + len, sizeof(out->next) - (size_t)len, ".%s", ids[n - 1]);
			break;
		}
		json_t *row = row_json(st, f->now_ms);
		if (!row || json_array_append_new(rows, row) ||
		    !(ids[n] = strdup((const char *)sqlite3_column_text(st, 0)))) {
			nomem = 1;
			break;
		}
		for (int k = 0; k < order_nkeys[sort]; k++)
			last[k] = sqlite3_column_int64(st, 16 + k);
		n++;
	}
	if (nomem)
		rc = csa_error(err, CSA_ENOMEM, "out of memory searching tickets");
	else if (step != SQLITE_ROW && step != SQLITE_DONE)
		rc = db_err(s, r->db, err, "searching tickets");
	sqlite3_finalize(st);
	release_reader(s, r);
	free(fts);
	if (rc) {
		for (size_t i = 0; ids && i < n; i++)
			free(ids[i]);
		free(ids);
		json_decref(rows);
		out->next[0] = '\0';
		return rc;
	}
	out->ids = ids;
	out->n = n;
	out->rows = rows;
	return CSA_OK;
}

static int s_count(struct csa_search *base, const struct csa_search_filter *f, long *count,
                   struct csa_err *err)
{
	struct sqlite_search *s = (struct sqlite_search *)base;
	*count = 0;
	char *fts = csa_search_fts_query(f->q);
	if (!fts)
		return csa_error(err, CSA_ENOMEM, "out of memory counting tickets");
	struct sql q = {.len = 0};
	struct binds b = {.n = 0};
	sql_add(&q, "SELECT count(*) FROM tickets");
	where(&q, &b, f, fts);
	if (q.bad)
		CSA_BUG("search count: SQL text too long");
	struct reader *r = acquire(s);
	sqlite3_stmt *st;
	int rc = CSA_OK;
	if (sqlite3_prepare_v2(r->db, q.buf, -1, &st, NULL) != SQLITE_OK) {
		rc = db_err(s, r->db, err, "counting tickets");
	} else {
		bind_all(st, &b);
		if (sqlite3_step(st) == SQLITE_ROW)
			*count = (long)sqlite3_column_int64(st, 0);
		else
			rc = db_err(s, r->db, err, "counting tickets");
		sqlite3_finalize(st);
	}
	release_reader(s, r);
	free(fts);
	return rc;
}

/* ---- open / close ------------------------------------------------------------ */

static void s_close(struct csa_search *base)
{
	struct sqlite_search *s = (struct sqlite_search *)base;
	for (int k = 0; k < READERS; k++)
		sqlite3_close(s->r[k].db);
	sqlite3_close(s->w);
	pthread_mutex_destroy(&s->wmu);
	pthread_mutex_destroy(&s->rmu);
	pthread_cond_destroy(&s->rcv);
	free(s);
}

static const struct csa_search_ops sqlite_ops = {
    .name = "sqlite",
    .update = s_update,
    .remove = s_remove,
    .versions = s_versions,
    .query = s_query,
    .count = s_count,
    .meta_get = s_meta_get,
    .meta_set = s_meta_set,
    .close = s_close,
};

/* Open one connection with the index's settings. The index is derived
 * data: synchronous=NORMAL may lose the last transactions in a power
 * loss, and with them the versions they recorded, so the catch-up reads
 * those tickets again. */
static int open_conn(struct sqlite_search *s, sqlite3 **db, struct csa_err *err)
{
	if (sqlite3_open_v2(s->path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK)
		return db_err(s, *db, err, "opening the search index");
	sqlite3_busy_timeout(*db, 10000);
	if (sqlite3_exec(*db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
	                 NULL) != SQLITE_OK)
		return db_err(s, *db, err, "opening the search index");
	return CSA_OK;
}

/* The schema, and a rebuild from nothing when the file holds another
 * version of it. */
static int init_schema(struct sqlite_search *s, struct csa_err *err)
{
	sqlite3_stmt *st;
	int version = 0;
	if (sqlite3_prepare_v2(s->w, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			version = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	if (version != 0 && version != SCHEMA_VERSION &&
	    sqlite3_exec(s->w,
	                 "DROP TABLE IF EXISTS tickets; DROP TABLE IF EXISTS fts;"
	                 " DROP TABLE IF EXISTS meta;",
	                 NULL, NULL, NULL) != SQLITE_OK)
		return db_err(s, s->w, err, "dropping an old search index");
	char pragma[64];
	snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", SCHEMA_VERSION);
	if (sqlite3_exec(s->w, schema, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(s->w, pragma, NULL, NULL, NULL) != SQLITE_OK)
		return db_err(s, s->w, err, "creating the search index");
	return CSA_OK;
}

int csa_search_open_sqlite(struct csa_ws *ws, int refresh_ms, struct csa_search **out,
                           struct csa_err *err)
{
	*out = NULL;
	struct sqlite_search *s = calloc(1, sizeof(*s));
	if (!s)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the search index");
	s->base.ops = &sqlite_ops;
	s->base.ws = ws;
	pthread_mutex_init(&s->wmu, NULL);
	pthread_mutex_init(&s->rmu, NULL);
	pthread_cond_init(&s->rcv, NULL);
	int rc = CSA_OK;
	if (csa_ws_path(ws, ".csa/search.db", s->path, sizeof(s->path)))
		rc = csa_error(err, CSA_ELIMIT, "workspace path too long for '.csa/search.db'");
	if (rc == CSA_OK)
		rc = csa_fs_create_private(s->path, err);
	if (rc == CSA_OK)
		rc = open_conn(s, &s->w, err);
	if (rc == CSA_OK)
		rc = init_schema(s, err);
	for (int k = 0; k < READERS && rc == CSA_OK; k++)
		rc = open_conn(s, &s->r[k].db, err);
	if (rc == CSA_OK)
		rc = refresh_ms > 0 ? csa_search_start_refresh(&s->base, refresh_ms, err)
		                    : csa_search_first_sync(&s->base, err);
	if (rc) {
		s_close(&s->base);
		return rc;
	}
	*out = &s->base;
	return CSA_OK;
}
