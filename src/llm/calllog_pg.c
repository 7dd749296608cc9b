/*
 * The PostgreSQL backend of llm/calllog.h: the table csa_llm_calls of the
 * workspace's database (migration 8 in store/pg.c), over its pool. Every
 * node records its calls there and reads the budget from there, so the
 * cascade's calls per hour and money per day hold for the whole team,
 * not once per node. Two nodes that read the budget at the same instant
 * may both make the last call it allows, as two processes on one llm.db
 * may: the budget is a limit on spending, not a lock around each call.
 */
#include "llm/calllog.h"
#include "store/pg.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

struct pg_log {
	struct csa_call_log base; /* first: the interface's handle */
	struct csa_pg *pg;        /* borrowed */
};

static int p_record(struct csa_call_log *l, const struct csa_llm_call *c, struct csa_err *err)
{
	struct pg_log *p = (struct pg_log *)l;
	char ts[24], tin[24], tout[24], cost[40], lat[24];
	snprintf(ts, sizeof(ts), "%lld", (long long)c->ts_ms);
	snprintf(tin, sizeof(tin), "%ld", c->tokens_in);
	snprintf(tout, sizeof(tout), "%ld", c->tokens_out);
	snprintf(cost, sizeof(cost), "%.17g", c->cost);
	snprintf(lat, sizeof(lat), "%ld", c->latency_ms);
	const char *v[] = {ts, c->backend, c->purpose, tin, tout, cost, lat, c->ok ? "t" : "f"};
	PGconn *conn = NULL;
	int rc;
	PGresult *r = csa_pg_query(p->pg, &conn, "recording an LLM call",
	                           "INSERT INTO csa_llm_calls (ts, backend, purpose, tokens_in,"
	                           " tokens_out, cost, latency_ms, ok)"
	                           " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
	                           8, v, err, &rc);
	csa_pg_put(p->pg, conn);
	PQclear(r);
	return rc;
}

static int p_spent(struct csa_call_log *l, int64_t calls_after, int64_t cost_from, long *calls,
                   double *cost, struct csa_err *err)
{
	struct pg_log *p = (struct pg_log *)l;
	char after[24], from[24];
	snprintf(after, sizeof(after), "%lld", (long long)calls_after);
	snprintf(from, sizeof(from), "%lld", (long long)cost_from);
	const char *v[] = {after, from};
	PGconn *conn = NULL;
	int rc;
	PGresult *r = csa_pg_query(p->pg, &conn, "reading the LLM budget",
	                           "SELECT (SELECT count(*) FROM csa_llm_calls WHERE ts > $1),"
	                           " (SELECT coalesce(sum(cost), 0) FROM csa_llm_calls"
	                           " WHERE ts >= $2)",
	                           2, v, err, &rc);
	csa_pg_put(p->pg, conn);
	if (!r)
		return rc;
	*calls = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	*cost = strtod(PQgetvalue(r, 0, 1), NULL);
	PQclear(r);
	return CSA_OK;
}

static int p_by_backend(struct csa_call_log *l, int64_t from, json_t **out, struct csa_err *err)
{
	struct pg_log *p = (struct pg_log *)l;
	char f[24];
	snprintf(f, sizeof(f), "%lld", (long long)from);
	const char *v[] = {f};
	PGconn *conn = NULL;
	int rc;
	PGresult *r = csa_pg_query(p->pg, &conn, "reading LLM usage",
	                           "SELECT backend, count(*), count(*) FILTER (WHERE ok), sum(cost),"
	                           " avg(latency_ms), sum(tokens_in), sum(tokens_out)"
	                           " FROM csa_llm_calls WHERE ts >= $1 GROUP BY backend",
	                           1, v, err, &rc);
	csa_pg_put(p->pg, conn);
	if (!r)
		return rc;
	json_t *per = json_object();
	for (int i = 0; per && i < PQntuples(r); i++)
		json_object_set_new(
		    per, PQgetvalue(r, i, 0),
		    json_pack("{s:I, s:I, s:f, s:f, s:I, s:I}", "calls",
		              (json_int_t)strtoll(PQgetvalue(r, i, 1), NULL, 10), "ok",
		              (json_int_t)strtoll(PQgetvalue(r, i, 2), NULL, 10), "cost",
		              strtod(PQgetvalue(r, i, 3), NULL), "mean_latency_ms",
		              strtod(PQgetvalue(r, i, 4), NULL), "tokens_in",
		              (json_int_t)strtoll(PQgetvalue(r, i, 5), NULL, 10), "tokens_out",
		              (json_int_t)strtoll(PQgetvalue(r, i, 6), NULL, 10)));
	PQclear(r);
	if (!per)
		return csa_error(err, CSA_ENOMEM, "out of memory reading LLM usage");
	*out = per;
	return CSA_OK;
}

static void p_close(struct csa_call_log *l)
{
	free(l);
}

static const struct csa_call_log_ops pg_ops = {
    .record = p_record, .spent = p_spent, .by_backend = p_by_backend, .close = p_close};

int csa_call_log_open_pg(struct csa_pg *pg, struct csa_call_log **out, struct csa_err *err)
{
	struct pg_log *p = calloc(1, sizeof(*p));
	if (!p)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the LLM call log");
	p->base.ops = &pg_ops;
	p->pg = pg;
	*out = &p->base;
	return CSA_OK;
}
