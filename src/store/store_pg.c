/* The ticket store on PostgreSQL (libpq): see store/store_pg.h. */
#include "store/store_pg.h"
#include "store/pg.h"
#include "base/hash.h"
#include "base/json.h"
#include "base/ts.h"
#include "store/schema.h"
#include "store/store_internal.h"
#include "store/ws.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Marks kept at once (pg_mark): each index beside the store that marks
 * has one of its own (enum csa_store_mark_slot), so one index's mark never
 * moves another's. */
#define MARK_SLOTS 4
/* Rows a scan fetches at a time. */
#define SCAN_PAGE 256

static const char ticket_lock_ns[] = "csa:ticket-lock:";

/* ---- the store ------------------------------------------------------- */

struct pgs {
	struct csa_store base;
	struct csa_ws *ws;
	struct csa_pg *pg;  /* borrowed: the workspace's (csa_ws->pg) */
	const char *where;  /* host:port/dbname, no password, for errors */
	int observe;
	pthread_mutex_t mu; /* the counters and the mark */
	struct csa_store_stats stats;
	/* mark/stamp (see pg_mark): commits hold it shared from BEGIN until
	 * their change is counted, mark exclusive */
	pthread_rwlock_t mark_rw;
	struct {
		int marked;
		int unsure;   /* a commit since the mark whose outcome is unknown */
		uint64_t sum; /* sum of all versions at the mark */
		uint64_t own; /* what this handle's commits added to it since */
	} marks[MARK_SLOTS];
};

struct csa_lock {
	struct pgs *s;
	PGconn *c;
	char key[24];
};

static const struct csa_store_ops pg_ops;

int csa_store_is_pg(const struct csa_store *st)
{
	return st && st->ops == &pg_ops;
}

const char *csa_store_pg_where(const struct csa_store *st)
{
	return csa_store_is_pg(st) ? ((const struct pgs *)st)->where : "";
}

int csa_store_pg_unsupported(const struct csa_store *st, const char *what, const char *instead,
                             struct csa_err *err)
{
	return csa_error(err, CSA_ESTATE,
	                 "the tickets are in PostgreSQL at %s, which %s does not cover yet (%s)",
	                 csa_store_pg_where(st), what, instead);
}

/* Every statement outside a transaction goes through the shared pool's
 * retry-once query (store/pg.h). */
static PGresult *query(struct pgs *s, PGconn **c, const char *sql, int n, const char *const *params,
                       struct csa_err *err, int *rc)
{
	return csa_pg_query(s->pg, c, "query of the ticket store", sql, n, params, err, rc);
}

static void conn_put(struct pgs *s, PGconn *c)
{
	csa_pg_put(s->pg, c);
}

static struct csa_limits limits_now(const struct pgs *s)
{
	const struct csa_config *cfg = csa_ws_config(s->ws);
	struct csa_limits l = cfg->limits;
	csa_config_unref(cfg);
	return l;
}

/* ---- load ------------------------------------------------------------ */

/* Parse and check document k of ticket id, as the mesh does its files. */
static int parse_doc(const struct pgs *s, const char *id, int k, const char *text, size_t len,
                     size_t max, json_t **out, struct csa_err *err)
{
	char name[CSA_ID_MAX + 120];
	snprintf(name, sizeof(name), "%c_%s in PostgreSQL at %s", csa_doc_letter(k), id, s->where);
	*out = NULL;
	if (len > max)
		return csa_error(err, CSA_ELIMIT, "%s: %zu bytes, limit is %zu", name, len, max);
	int rc = csa_json_parse(text, len, name, out, err);
	if (rc == CSA_OK) /* jsonb keeps its own order of keys: back to the spec's */
		csa_schema_order((enum csa_doc_kind)k, *out);
	return rc;
}

static int load_docs(struct pgs *s, const char *id, struct csa_ticket *tk, struct csa_err *err)
{
	memset(tk, 0, sizeof(*tk));
	int rc = csa_id_check(id, strlen(id), err);
	if (rc)
		return rc;
	PGconn *c = NULL;
	const char *p[] = {id};
	PGresult *r =
	    query(s, &c, "SELECT version, e, i, t FROM csa_tickets WHERE id = $1", 1, p, err, &rc);
	if (!r) {
		conn_put(s, c);
		csa_error_prefix(err, "loading ticket '%s': ", id);
		return rc;
	}
	if (PQntuples(r) == 0) {
		rc = csa_error(err, CSA_ENOENT, "no ticket '%s'", id);
		goto out;
	}
	size_t max = limits_now(s).max_document_bytes;
	json_t **slots[3] = {&tk->e, &tk->i, &tk->t};
	for (int k = 0; k < 3 && rc == CSA_OK; k++)
		if ((rc = parse_doc(s, id, k, PQgetvalue(r, 0, 1 + k),
		                    (size_t)PQgetlength(r, 0, 1 + k), max, slots[k], err)) ==
		        CSA_OK &&
		    (rc = csa_schema_check((enum csa_doc_kind)k, id, *slots[k], err)))
			csa_error_prefix(err, "in PostgreSQL at %s: ", s->where);
	if (rc == CSA_OK) {
		memcpy(tk->id, id, strlen(id) + 1);
		tk->exists = 1;
		tk->version = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	}
out:
	PQclear(r);
	conn_put(s, c);
	if (rc)
		csa_ticket_release(tk);
	return rc;
}

/* One statement reads all three documents: a reader sees whole commits
 * without a lock, whether or not the caller holds one. */
static int pg_load(struct csa_store *st, const char *id, struct csa_ticket *out,
                   struct csa_err *err)
{
	return load_docs((struct pgs *)st, id, out, err);
}

static int pg_load_doc(struct csa_store *st, const char *id, unsigned doc, json_t **out,
                       struct csa_err *err)
{
	struct pgs *s = (struct pgs *)st;
	static const char *const sql[3] = {"SELECT e FROM csa_tickets WHERE id = $1",
	                                   "SELECT i FROM csa_tickets WHERE id = $1",
	                                   "SELECT t FROM csa_tickets WHERE id = $1"};
	int k = doc == CSA_DOC_E ? 0 : doc == CSA_DOC_I ? 1 : doc == CSA_DOC_T ? 2 : -1;
	*out = NULL;
	if (k < 0)
		CSA_BUG("load_doc: doc is not one of CSA_DOC_E, CSA_DOC_I, CSA_DOC_T");
	int rc = csa_id_check(id, strlen(id), err);
	if (rc)
		return rc;
	PGconn *c = NULL;
	const char *p[] = {id};
	PGresult *r = query(s, &c, sql[k], 1, p, err, &rc);
	if (r && PQntuples(r) == 0)
		rc = csa_error(err, CSA_ENOENT, "no ticket '%s'", id);
	else if (r)
		rc = parse_doc(s, id, k, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0),
		               limits_now(s).max_document_bytes, out, err);
	else
		csa_error_prefix(err, "loading %c_%s: ", csa_doc_letter(k), id);
	PQclear(r);
	conn_put(s, c);
	return rc;
}

/* ---- locks ----------------------------------------------------------- */

/* A session advisory lock on a connection of the lock's own: session
 * locks are reentrant within a session, so two holders must never share
 * one. A process that dies loses its connections and with them its
 * locks. */
static int pg_lock(struct csa_store *st, const char *id, struct csa_lock **out, struct csa_err *err)
{
	struct pgs *s = (struct pgs *)st;
	int rc = csa_id_check(id, strlen(id), err);
	if (rc)
		return rc;
	struct csa_lock *lk = calloc(1, sizeof(*lk));
	if (!lk)
		return csa_error(err, CSA_ENOMEM, "out of memory locking '%s'", id);
	lk->s = s;
	snprintf(lk->key, sizeof(lk->key), "%lld", csa_pg_lock_key(ticket_lock_ns, id));
	const char *p[] = {lk->key};
	PGresult *r = query(s, &lk->c,
	                    s->observe ? "SELECT pg_advisory_lock_shared($1::bigint)"
	                               : "SELECT pg_advisory_lock($1::bigint)",
	                    1, p, err, &rc);
	if (!r) {
		csa_error_prefix(err, "cannot lock ticket '%s': ", id);
		if (lk->c)
			PQfinish(lk->c); /* whatever it holds goes with it */
		free(lk);
		return rc;
	}
	PQclear(r);
	*out = lk;
	return CSA_OK;
}

static void pg_unlock(struct csa_lock *lk)
{
	if (!lk)
		return;
	const char *p[] = {lk->key};
	PGresult *r = PQexecParams(lk->c,
	                           lk->s->observe ? "SELECT pg_advisory_unlock_shared($1::bigint)"
	                                          : "SELECT pg_advisory_unlock($1::bigint)",
	                           1, NULL, p, NULL, NULL, 0);
	int released = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
	               strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	if (released)
		conn_put(lk->s, lk->c);
	else
		PQfinish(lk->c); /* never pool a connection that may hold a lock */
	free(lk);
}

/* ---- commit ---------------------------------------------------------- */

static int cmp_by_id(const void *a, const void *b, void *ctx)
{
	struct csa_ticket *const *tks = ctx;
	return strcmp(tks[*(const size_t *)a]->id, tks[*(const size_t *)b]->id);
}

static const char sql_insert[] =
    "INSERT INTO csa_tickets (id, version, e, i, t, committed_at) "
    "VALUES ($1, nextval('csa_ticket_version'), $2::jsonb, $3::jsonb, $4::jsonb, "
    "clock_timestamp()) ON CONFLICT (id) DO NOTHING RETURNING version";
/* A document not named by the commit's 'docs' is kept as stored ($2 or $3
 * NULL); $5 is the version the ticket was loaded at (0: none known). */
static const char sql_update[] =
    "UPDATE csa_tickets SET e = coalesce($2::jsonb, e), i = coalesce($3::jsonb, i), "
    "t = $4::jsonb, version = nextval('csa_ticket_version'), committed_at = clock_timestamp() "
    "WHERE id = $1 AND ($5::bigint = 0 OR version = $5::bigint) RETURNING version";

/* Write one ticket inside the open transaction; its new version into *v,
 * what the commit adds to the sum of all versions into *delta. */
static int write_one(struct pgs *s, PGconn *c, struct csa_ticket *tk, unsigned docs,
                     char *const bytes[3], uint64_t *v, uint64_t *delta, struct csa_err *err)
{
	char ver[24];
	snprintf(ver, sizeof(ver), "%" PRIu64, tk->version);
	int update = tk->exists;
	uint64_t old = tk->version;
	if (update && old == 0) {
		/* not fenced by a version: read the one it replaces, row locked
		 * until the transaction ends */
		const char *q[] = {tk->id};
		PGresult *r =
		    PQexecParams(c, "SELECT version FROM csa_tickets WHERE id = $1 FOR UPDATE", 1,
		                 NULL, q, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			int rc = csa_pg_error(s->where, err, c, r, "commit of ticket '%s'", tk->id);
			PQclear(r);
			return rc;
		}
		if (PQntuples(r) == 1)
			old = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
		PQclear(r);
	}
	const char *p[5] = {tk->id, bytes[0], bytes[1], bytes[2], ver};
	if (update) {
		p[1] = docs & CSA_DOC_E ? bytes[0] : NULL;
		p[2] = docs & CSA_DOC_I ? bytes[1] : NULL;
	}
	PGresult *r = PQexecParams(c, update ? sql_update : sql_insert, update ? 5 : 4, NULL, p,
	                           NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		int rc = csa_pg_error(s->where, err, c, r, "commit of ticket '%s'", tk->id);
		PQclear(r);
		return rc;
	}
	if (PQntuples(r) == 1) {
		*v = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
		*delta = *v - (update ? old : 0);
		PQclear(r);
		return CSA_OK;
	}
	PQclear(r);
	if (!update)
		return csa_error(err, CSA_EEXIST, "ticket '%s' already exists", tk->id);
	/* why the update matched nothing */
	const char *q[] = {tk->id};
	r = PQexecParams(c, "SELECT version FROM csa_tickets WHERE id = $1", 1, NULL, q, NULL, NULL,
	                 0);
	int rc;
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		rc = csa_pg_error(s->where, err, c, r, "commit of ticket '%s'", tk->id);
	else if (PQntuples(r) == 0)
		rc = csa_error(err, CSA_ENOENT,
		               "commit of ticket '%s': it is not in PostgreSQL at %s (loaded "
		               "elsewhere?)",
		               tk->id, s->where);
	else
		rc = csa_error(err, CSA_ECONFLICT,
		               "commit of ticket '%s': another commit changed it since it was "
		               "loaded (version %" PRIu64 ", now %s); load it again under its lock",
		               tk->id, tk->version, PQgetvalue(r, 0, 0));
	PQclear(r);
	return rc;
}

static int pg_commit(struct csa_store *st, struct csa_ticket *const *tks, size_t n, unsigned docs,
                     struct csa_err *err)
{
	struct pgs *s = (struct pgs *)st;
	if (s->observe)
		return csa_error(err, CSA_ESTATE,
		                 "the ticket store in PostgreSQL at %s is open to observe only: no "
		                 "commit",
		                 s->where);
	if (n == 0)
		return CSA_OK;
	char ts[CSA_TS_LEN];
	csa_ts_format(csa_now_ms(), ts);
	struct csa_limits lim = limits_now(s);
	char **bytes = calloc(n * 3, sizeof(*bytes));
	size_t *lens = calloc(n * 3, sizeof(*lens));
	size_t *order = calloc(n, sizeof(*order));
	uint64_t *vers = calloc(n, sizeof(*vers));
	PGconn *c = NULL;
	int rc = CSA_OK;
	if (!bytes || !lens || !order || !vers) {
		rc = csa_error(err, CSA_ENOMEM, "out of memory committing %zu tickets", n);
		goto out;
	}
	for (size_t i = 0; i < n && rc == CSA_OK; i++) {
		rc = csa_ticket_prepare_commit(tks[i], docs, ts, &lim, &bytes[i * 3], &lens[i * 3],
		                               err);
		order[i] = i;
	}
	if (rc)
		goto out;
	/* every transaction takes its tickets' rows in id order: two group
	 * commits over the same tickets cannot deadlock */
	qsort_r(order, n, sizeof(*order), cmp_by_id, (void *)tks);
	pthread_rwlock_rdlock(&s->mark_rw);
	uint64_t delta = 0;
	PGresult *r = query(s, &c, "BEGIN", 0, NULL, err, &rc);
	if (!r) {
		csa_error_prefix(err, "commit of %zu ticket(s), the first '%s': ", n, tks[0]->id);
		goto unlock;
	}
	PQclear(r);
	for (size_t j = 0; j < n && rc == CSA_OK; j++) {
		size_t i = order[j];
		uint64_t d = 0;
		rc = write_one(s, c, tks[i], docs, &bytes[i * 3], &vers[i], &d, err);
		delta += d;
	}
	if (rc) {
		csa_pg_rollback(c);
		goto unlock;
	}
	r = PQexec(c, "COMMIT");
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		if (PQstatus(c) == CONNECTION_BAD) {
			rc = csa_pg_error(s->where, err, c, r,
			              "commit of %zu ticket(s), the first '%s': the connection was "
			              "lost during COMMIT, whether it took effect is unknown",
			              n, tks[0]->id);
			pthread_mutex_lock(&s->mu);
			for (int k = 0; k < MARK_SLOTS; k++)
				s->marks[k].unsure = 1;
			pthread_mutex_unlock(&s->mu);
		} else {
			rc = csa_pg_error(s->where, err, c, r,
			              "commit of %zu ticket(s), the first '%s'", n, tks[0]->id);
		}
		PQclear(r);
		goto unlock;
	}
	PQclear(r);
	for (size_t i = 0; i < n; i++) {
		tks[i]->exists = 1;
		tks[i]->version = vers[i];
	}
	pthread_mutex_lock(&s->mu);
	s->stats.commits++;
	s->stats.batches++;
	for (int k = 0; k < MARK_SLOTS; k++)
		s->marks[k].own += delta;
	pthread_mutex_unlock(&s->mu);
unlock:
	pthread_rwlock_unlock(&s->mark_rw);
out:
	conn_put(s, c);
	for (size_t j = 0; bytes && j < n * 3; j++)
		free(bytes[j]);
	free(bytes);
	free(lens);
	free(order);
	free(vers);
	return rc;
}

/* ---- scans and versions ---------------------------------------------- */

static int pg_scan(struct csa_store *st, const struct csa_filter *f, csa_scan_fn fn, void *ctx,
                   struct csa_err *err)
{
	struct pgs *s = (struct pgs *)st;
	static const char sql[] =
	    "SELECT id, t, e->>'conversation_status' FROM csa_tickets WHERE id > $1"
	    " AND ($2::text IS NULL OR e->>'conversation_status' = $2)"
	    " AND ($3::text IS NULL OR t->>'priority' = $3)"
	    " AND ($4::text IS NULL OR t->>'workflow_stage' = $4)"
	    " ORDER BY id LIMIT $5";
	size_t max = limits_now(s).max_document_bytes;
	char after[CSA_ID_MAX + 1] = "";
	int rc = CSA_OK;
	/* page by page, the connection back in the pool while fn runs (it
	 * may load, lock or commit) */
	for (;;) {
		PGconn *c = NULL;
		char page[16];
		snprintf(page, sizeof(page), "%d", SCAN_PAGE);
		const char *p[] = {after, f ? f->status : NULL, f ? f->priority : NULL,
		                   f ? f->stage : NULL, page};
		PGresult *r = query(s, &c, sql, 5, p, err, &rc);
		conn_put(s, c);
		if (!r) {
			csa_error_prefix(err, "scanning tickets: ");
			return rc;
		}
		int rows = PQntuples(r);
		for (int k = 0; k < rows && rc == CSA_OK; k++) {
			const char *id = PQgetvalue(r, k, 0);
			json_t *t = NULL;
			/* a damaged document is skipped, as the mesh skips a
			 * damaged file: loading the ticket names the problem */
			if (parse_doc(s, id, 2, PQgetvalue(r, k, 1), (size_t)PQgetlength(r, k, 1),
			              max, &t, NULL) == CSA_OK)
				rc =
				    fn(ctx, id, t,
				       f && f->status && !PQgetisnull(r, k, 2) ? PQgetvalue(r, k, 2)
				                                               : NULL);
			json_decref(t);
			snprintf(after, sizeof(after), "%s", id);
		}
		PQclear(r);
		if (rc || rows < SCAN_PAGE)
			return rc;
	}
}

static int pg_ids(struct csa_store *st, char ***out, size_t *n_out, struct csa_err *err)
{
	struct pgs *s = (struct pgs *)st;
	*out = NULL;
	*n_out = 0;
	PGconn *c = NULL;
	int rc;
	PGresult *r = query(s, &c, "SELECT id FROM csa_tickets ORDER BY id", 0, NULL, err, &rc);
	conn_put(s, c);
	if (!r) {
		csa_error_prefix(err, "listing tickets: ");
		return rc;
	}
	size_t n = (size_t)PQntuples(r);
	char **ids = calloc(n ? n : 1, sizeof(*ids));
	for (size_t k = 0; ids && k < n; k++)
		if (!(ids[k] = strdup(PQgetvalue(r, (int)k, 0)))) {
			csa_store_ids_free(ids, k);
			ids = NULL;
		}
	PQclear(r);
	if (!ids)
		return csa_error(err, CSA_ENOMEM, "out of memory listing %zu tickets", n);
	*out = ids;
	*n_out = n;
	return CSA_OK;
}

/* The ticket's version: drawn from a sequence by every commit, so it
 * changes with each one exactly, whoever made it; *newest_ns is the time
 * of that commit (by the database's clock). 0 when there is no such
 * ticket or the database cannot be asked. */
static uint64_t pg_version(struct csa_store *st, const char *id, int64_t *newest_ns)
{
	struct pgs *s = (struct pgs *)st;
	*newest_ns = 0;
	if (csa_id_check(id, strlen(id), NULL))
		return 0;
	PGconn *c = NULL;
	int rc;
	const char *p[] = {id};
	PGresult *r = query(s, &c,
	                    "SELECT version, (extract(epoch FROM committed_at) * 1000000)::bigint "
	                    "FROM csa_tickets WHERE id = $1",
	                    1, p, NULL, &rc);
	conn_put(s, c);
	uint64_t v = 0;
	if (r && PQntuples(r) == 1) {
		v = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
		*newest_ns = strtoll(PQgetvalue(r, 0, 1), NULL, 10) * 1000;
	}
	PQclear(r);
	return v;
}

/*
 * mark/stamp: every commit raises the sum of all tickets' versions (a new
 * ticket adds its version; an update replaces one with a larger one drawn
 * from the sequence), so the sum, read in one statement, changes with
 * every commit anyone makes, exactly. This handle adds up what its own
 * commits added; when the sum is the one at the mark plus that, nobody
 * else committed since. The sum is a scan of the table's versions: a few
 * milliseconds at 100,000 tickets, where comparing every ticket's version
 * is a round trip per ticket.
 */
static int version_sum(struct pgs *s, uint64_t *out)
{
	PGconn *c = NULL;
	int rc;
	PGresult *r =
	    query(s, &c, "SELECT coalesce(sum(version), 0) FROM csa_tickets", 0, NULL, NULL, &rc);
	conn_put(s, c);
	if (!r)
		return -1;
	char *end;
	errno = 0;
	*out = strtoull(PQgetvalue(r, 0, 0), &end, 10);
	rc = errno || *end ? -1 : 0; /* past 2^64: never "only own" */
	PQclear(r);
	return rc;
}

/* Taken with no commit of this handle between its BEGIN and the count of
 * what it added; another process's commit in flight lands after the sum
 * is read, and so shows as someone else's. */
static void mark_slot(struct pgs *s, unsigned slot)
{
	pthread_rwlock_wrlock(&s->mark_rw);
	uint64_t sum = 0;
	int ok = version_sum(s, &sum) == 0;
	pthread_mutex_lock(&s->mu);
	s->marks[slot].marked = ok;
	s->marks[slot].sum = sum;
	s->marks[slot].own = 0;
	s->marks[slot].unsure = 0;
	pthread_mutex_unlock(&s->mu);
	pthread_rwlock_unlock(&s->mark_rw);
}

static uint64_t stamp_slot(struct pgs *s, unsigned slot, int *only_own)
{
	uint64_t sum = 0;
	*only_own = 0;
	if (version_sum(s, &sum))
		return 0;
	pthread_mutex_lock(&s->mu);
	*only_own = s->marks[slot].marked && !s->marks[slot].unsure &&
	            sum == s->marks[slot].sum + s->marks[slot].own;
	pthread_mutex_unlock(&s->mu);
	uint64_t h = csa_fnv1a(CSA_FNV_SEED, &sum, sizeof(sum));
	return h ? h : 1;
}

static void pg_mark(struct csa_store *st, unsigned slot)
{
	if (slot < MARK_SLOTS)
		mark_slot((struct pgs *)st, slot);
}

static uint64_t pg_stamp(struct csa_store *st, unsigned slot, int *only_own)
{
	int own = 0; /* a slot with no mark knows of no commit as its own */
	uint64_t h = stamp_slot((struct pgs *)st, slot < MARK_SLOTS ? slot : 0, &own);
	*only_own = slot < MARK_SLOTS && own;
	return h;
}

static void pg_stats(struct csa_store *st, struct csa_store_stats *out)
{
	struct pgs *s = (struct pgs *)st;
	pthread_mutex_lock(&s->mu);
	*out = s->stats;
	pthread_mutex_unlock(&s->mu);
}

/* A commit is durable when COMMIT returns (synchronous_commit): nothing
 * waits to be flushed. */
static int pg_checkpoint(struct csa_store *st, struct csa_err *err)
{
	(void)st, (void)err;
	return CSA_OK;
}

static void pg_close(struct csa_store *st)
{
	struct pgs *s = (struct pgs *)st;
	pthread_mutex_destroy(&s->mu);
	pthread_rwlock_destroy(&s->mark_rw);
	free(s);
}

/* hold is left out (NULL, which store.h allows): `csa backup` says that
 * it does not cover this store (pg_dump does). */
static const struct csa_store_ops pg_ops = {
    .name = "postgresql",
    .load = pg_load,
    .load_locked = pg_load,
    .commit = pg_commit,
    .lock = pg_lock,
    .unlock = pg_unlock,
    .scan = pg_scan,
    .checkpoint = pg_checkpoint,
    .close = pg_close,
    .ids = pg_ids,
    .version = pg_version,
    .load_doc = pg_load_doc,
    .stats = pg_stats,
    .mark = pg_mark,
    .stamp = pg_stamp,
};

int csa_store_pg_open(struct csa_ws *ws, struct csa_pg *pg, int observe, struct csa_store **out,
                      struct csa_err *err)
{
	struct pgs *s = calloc(1, sizeof(*s));
	if (!s)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the ticket store");
	s->base.ops = &pg_ops;
	s->ws = ws;
	s->pg = pg;
	s->where = csa_pg_where(pg);
	s->observe = observe;
	pthread_mutex_init(&s->mu, NULL);
	/* a mark waits for the commits in flight, not for every later one */
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s->mark_rw, &ra);
	pthread_rwlockattr_destroy(&ra);
	*out = &s->base;
	return CSA_OK;
}
