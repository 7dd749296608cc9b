/*
 * The log of the LLM calls a workspace made: what the cascade's budget
 * (calls per hour, money per day) and its usage report read. Every
 * process of the workspace shares it. Behind a table of function
 * pointers like the ticket store; llm.db (SQLite, WAL) is the first
 * backend, the table csa_llm_calls of the workspace's PostgreSQL database
 * (calllog_pg.c, every node's calls in one budget) the second.
 */
#ifndef CSA_LLM_CALLLOG_H
#define CSA_LLM_CALLLOG_H

#include <jansson.h>
#include <stdint.h>
#include "base/err.h"

struct csa_llm_call {
	int64_t ts_ms;
	const char *backend, *purpose;
	long tokens_in, tokens_out;
	double cost;
	long latency_ms;
	int ok;
};

struct csa_call_log;

struct csa_call_log_ops {
	int (*record)(struct csa_call_log *l, const struct csa_llm_call *c, struct csa_err *err);
	/* Calls after 'calls_after' and money spent from 'cost_from' on. */
	int (*spent)(struct csa_call_log *l, int64_t calls_after, int64_t cost_from, long *calls,
	             double *cost, struct csa_err *err);
	/* From 'from' on, per backend: {"<name>": {"calls", "ok", "cost",
	 * "mean_latency_ms", "tokens_in", "tokens_out"}} (a new object). */
	int (*by_backend)(struct csa_call_log *l, int64_t from, json_t **out, struct csa_err *err);
	void (*close)(struct csa_call_log *l);
};

struct csa_call_log {
	const struct csa_call_log_ops *ops;
};

/* The workspace's log: <ws_root>/llm.db. */
int csa_call_log_open(const char *ws_root, struct csa_call_log **out, struct csa_err *err);
/* The database's, on the workspace's pool 'pg' (which must outlive it). */
struct csa_pg;
int csa_call_log_open_pg(struct csa_pg *pg, struct csa_call_log **out, struct csa_err *err);

static inline int csa_call_log_record(struct csa_call_log *l, const struct csa_llm_call *c,
                                      struct csa_err *err)
{
	return l->ops->record(l, c, err);
}

static inline int csa_call_log_spent(struct csa_call_log *l, int64_t calls_after, int64_t cost_from,
                                     long *calls, double *cost, struct csa_err *err)
{
	return l->ops->spent(l, calls_after, cost_from, calls, cost, err);
}

static inline int csa_call_log_by_backend(struct csa_call_log *l, int64_t from, json_t **out,
                                          struct csa_err *err)
{
	return l->ops->by_backend(l, from, out, err);
}

static inline void csa_call_log_close(struct csa_call_log *l)
{
	if (l)
		l->ops->close(l);
}

#endif
