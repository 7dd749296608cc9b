/*
 * Intake of a pipeline run's decisions: the hooks that decide, per
 * decision, whether it is applied autonomously or goes to a human, and
 * record the run's rows and audit records when the run ends.
 */
#include "automation/auto_internal.h"
#include "automation/ledger.h"
#include "base/hash.h"
#include "base/ids.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/pipeline.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the pipeline hook ------------------------------------------------- */

static uint64_t hash64(const char *s)
{
	uint64_t h = csa_fnv1a_str(CSA_FNV_SEED_V1, s);
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

/*
 * A run's decision rows and audit records wait in its context (begin_run)
 * until the run's last decision (decisions_done), then go into the ledger
 * in one append and into automation.db in one transaction: one ledger
 * write and one WAL commit per ticket instead of one per decision, and
 * still before the ticket itself is committed, so a ticket is never
 * committed without its audit trail and review tasks.
 */
struct pending {
	json_t *row, *audit; /* owned */
};

struct auto_run {
	struct pending *v;
	size_t n, cap;
	/* a decision's row found no memory: the run must fail, or its ticket
	 * would be committed without the decision's review task */
	int lost;
};

void *auto_begin_run(void *ctx)
{
	(void)ctx;
	/* NULL (no memory) is a run whose decisions_done fails */
	return calloc(1, sizeof(struct auto_run));
}

void auto_end_run(void *ctx, void *run)
{
	(void)ctx;
	struct auto_run *r = run;
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		json_decref(r->v[i].row);
		json_decref(r->v[i].audit);
	}
	free(r->v);
	free(r);
}

static void pending_add(struct csa_auto *a, struct auto_run *r, json_t *row, json_t *audit)
{
	if (r && r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 8;
		struct pending *nv = realloc(r->v, cap * sizeof(*nv));
		if (nv) {
			r->v = nv;
			r->cap = cap;
		}
	}
	if (!r || r->n == r->cap) {
		/* the audit record goes in now; the run fails at its end */
		if (audit)
			csa_ledger_append(a->ledger, "decision", csa_json_str(audit, "ticket_id"),
			                  json_object_get(audit, "payload"), NULL, NULL);
		json_decref(row);
		json_decref(audit);
		if (r)
			r->lost = 1;
		return;
	}
	r->v[r->n++] = (struct pending){row, audit};
}

/* The run's waiting rows in one transaction with their audit records
 * when the store can hold both (PostgreSQL: auto_store.h), else the rows
 * in one transaction and then the records in one ledger append. A row
 * that cannot be written fails the run whole: the transaction rolls back,
 * no audit record goes out, and the pipeline does not commit the ticket,
 * so a ticket is never committed without its review tasks. A ledger
 * append of its own that fails does not stop the run (the decisions are
 * in T and automation.db): it raises AUDIT_LEDGER_FAILURE. What was
 * recorded leaves the run, which end_run frees. */
int auto_decisions_done(void *ctx, void *run, struct csa_err *err)
{
	struct csa_auto *a = ctx;
	struct auto_run *r = run;
	if (!r || r->lost)
		return csa_error(err, CSA_ENOMEM, "out of memory recording a run's decisions");
	int64_t tasks = 0;
	json_t *rows = json_array();
	struct csa_ledger_rec *recs = calloc(r->n ? r->n : 1, sizeof(*recs));
	size_t nrecs = 0;
	for (size_t i = 0; i < r->n; i++) {
		if (!rows || !recs || (r->v[i].row && json_array_append(rows, r->v[i].row))) {
			json_decref(rows);
			free(recs);
			return csa_error(err, CSA_ENOMEM,
			                 "out of memory recording a run's decisions");
		}
		tasks += csa_json_str(r->v[i].row, "task") != NULL;
		const json_t *au = r->v[i].audit;
		if (au)
			recs[nrecs++] =
			    (struct csa_ledger_rec){"decision", csa_json_str(au, "ticket_id"),
			                            json_object_get(au, "payload")};
	}
	int audited = 0;
	pthread_mutex_lock(&a->mu);
	int rc = a->ops->record_decisions(a->store, rows, a->ledger, recs, nrecs, &audited, err);
	if (rc == CSA_OK) {
		atomic_fetch_add(&a->n.decisions, (int64_t)json_array_size(rows));
		atomic_fetch_add(&a->n.open_tasks, tasks);
	}
	pthread_mutex_unlock(&a->mu);
	json_decref(rows);

	struct csa_err lerr = {0};
	int lrc = rc == CSA_OK && nrecs && !audited
	              ? csa_ledger_append_many(a->ledger, recs, nrecs, NULL, &lerr)
	              : CSA_OK;
	free(recs);
	if (rc == CSA_OK && nrecs && (lrc != CSA_OK) != atomic_load(&a->ledger_failing)) {
		pthread_mutex_lock(&a->mu);
		auto_ledger_health_locked(a, lrc, &lerr);
		pthread_mutex_unlock(&a->mu);
	}

	for (size_t i = 0; i < r->n; i++) {
		json_decref(r->v[i].row);
		json_decref(r->v[i].audit);
	}
	r->n = 0;
	return rc;
}

/* The run's ticket was not committed (the pipeline's commit failed after
 * decisions_done): its decisions never happened, so their rows and review
 * tasks go, in one transaction, and the ledger, which already holds their
 * records, says why they are void. Called under the ticket's lock. */
void auto_run_abandoned(void *ctx, void *run, const char *ticket_id, const char *const *ids,
                        size_t n, const struct csa_err *why)
{
	struct csa_auto *a = ctx;
	(void)run; /* its rows are in automation.db: found by the ids */
	pthread_mutex_lock(&a->mu);
	int64_t gone[2] = {0, 0}; /* decisions, tasks */
	int ok = a->ops->forget_decisions(a->store, ticket_id, ids, n, gone) == CSA_OK;
	if (ok) { /* the tasks of a run just made are open */
		atomic_fetch_sub(&a->n.decisions, gone[0]);
		atomic_fetch_sub(&a->n.open_tasks, gone[1]);
	}
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, json_string(ids[i] ? ids[i] : ""));
	json_t *rec = json_pack("{s:o, s:s, s:b}", "decision_ids", list, "reason",
	                        why ? why->msg : "", "rows_removed", ok);
	pthread_mutex_unlock(&a->mu);
	csa_ledger_append(a->ledger, "abandoned", ticket_id, rec, NULL, NULL);
	json_decref(rec);
}

/* A customer-facing strategy (automation.customer_facing_strategies: a
 * resolution sent to the customer) is chosen for the ticket's category and
 * its articles; it goes out autonomously only when that category was
 * confident enough to be applied autonomously too. */
static int waits_for_category(const struct csa_auto *a, const char *type,
                              const struct csa_flow_decision *d)
{
	return strcmp(type, "strategy") == 0 && !d->category_autonomous && d->value &&
	       csa_config_in_list(auto_cfg(a), "automation.customer_facing_strategies", d->value);
}

/* The automation.db row of a decision, from the automation block that
 * on_decision writes into T and the ledger ('info'): after a power loss
 * took the row, the ticket alone gives it back (auto_recover()). */
json_t *auto_row_of(struct csa_auto *a, const char *ticket_id, const char *type, const json_t *info,
                    int64_t created_ms, const json_t *alternatives)
{
	/* one agent decision can carry two decision types (classifier:
	 * category and priority): the log keys them apart */
	char key[200];
	snprintf(key, sizeof(key), "%s#%s", csa_json_str(info, "decision_id"), type);
	const char *review = csa_json_str(info, "review");
	int decide = !review || strcmp(review, "decide") == 0;
	double confidence = csa_json_num(info, "confidence", 0);
	double threshold = auto_threshold_from_json(json_object_get(info, "threshold"));
	int critical = json_is_true(json_object_get(info, "critical"));
	int phase = csa_phase_num(csa_json_str(info, "phase"));
	if (!phase)
		phase = 1;
	/* most valuable first: humans are needed most where the AI is least
	 * sure, on critical tickets, and to unblock tickets */
	double score = (1 - confidence) + (critical ? 1.0 : 0) + (decide ? 0.5 : 0);
	int64_t delay = decide ? 0 : (int64_t)(auto_settings(a)->review_delay_minutes * 60000);
	char *alts = alternatives ? json_dumps(alternatives, JSON_COMPACT) : NULL;
	json_t *row = json_pack(
	    "{s:s, s:s, s:s, s:s?, s:i, s:s?, s:f, s:o, s:b, s:b, s:I, s:s?, s:b, s:f, "
	    "s:s?, s:f, s:I, s:s?}",
	    "key", key, "ticket_id", ticket_id, "type", type, "segment",
	    csa_json_str(info, "segment"), "phase", phase, "value", csa_json_str(info, "value"),
	    "confidence", confidence, "threshold", auto_threshold_json(threshold), "autonomous",
	    json_is_true(json_object_get(info, "autonomous")), "critical", critical, "created_ms",
	    (json_int_t)created_ms, "model", csa_json_str(info, "model"), "shown", phase >= 2,
	    "weight", csa_json_num(info, "review_weight", 1), "task",
	    decide                         ? "decide"
	    : strcmp(review, "audit") == 0 ? "audit"
	                                   : NULL,
	    "score", score, "due_ms", (json_int_t)(created_ms + delay), "alternatives", alts);
	free(alts);
	return row;
}

int auto_on_decision(void *ctx, void *run, const struct csa_flow_decision *d, json_t *audit)
{
	struct csa_auto *a = ctx;
	const char *type = csa_dtype_name(d->type);
	if (!auto_type_tracked(a, type))
		return 0;
	const char *segment = d->segment ? d->segment : "-";
	int64_t now = csa_now_ms();
	pthread_mutex_lock(&a->mu);
	int phase = auto_segment_phase(a, type, segment);
	/* a decision whose error would be critical clears the critical target,
	 * on a critical ticket or not */
	int strict = d->critical || csa_auto_wrong_is_critical(a, type, d->value);
	const struct thr *t = auto_threshold_of(a, type, segment, strict);
	double threshold = t ? t->threshold : CSA_NO_THRESHOLD;
	int confident = phase >= 3 && d->confidence >= threshold;
	int held = confident && waits_for_category(a, type, d);
	int autonomous = confident && !held;
	const char *review = "decide";
	double review_p = 1;
	if (autonomous) {
		/* counted up to 20 half-lives, past which the sampling rate is at
		 * its floor: the cost stays bounded as the history grows */
		const struct csa_auto_settings *set = auto_settings(a);
		double half_life = set->review_half_life;
		int64_t reviewed_auto = a->ops->reviewed_autonomous(
		    a->store, type, segment, (int64_t)(20 * fmax(half_life, 1)) + 1);
		review_p =
		    csa_review_probability((size_t)reviewed_auto, set->review_floor, half_life,
		                           d->confidence, 0.95, set->review_uncertain_share);
		/* deterministic per decision: replays repeat exactly */
		double u = (double)(hash64(d->decision_id) >> 11) / 9007199254740992.0;
		review = u < review_p ? "audit" : "none";
	}
	pthread_mutex_unlock(&a->mu);
	json_t *info = json_pack(
	    "{s:s, s:s, s:s, s:f, s:o, s:s, s:b, s:s, s:s?, s:s?, s:b, s:f}", "decision_id",
	    d->decision_id, "decision_type", type, "segment", segment, "confidence", d->confidence,
	    "threshold", auto_threshold_json(threshold), "phase",
	    (const char *[]){"", "PHASE_1", "PHASE_2", "PHASE_3", "PHASE_4", "PHASE_5"}[phase],
	    "autonomous", autonomous, "review", review, "model", d->model_version, "input_digest",
	    d->input_digest, "critical", d->critical, "review_weight",
	    review_p > 0 ? 1 / review_p : 1);
	json_object_set_new(info, "value", json_string(d->value));
	if (held)
		json_object_set_new(info, "held", json_string("category not applied autonomously"));
	/* the row goes in with the run's other decisions (decisions_done) */
	json_t *row = auto_row_of(a, d->ticket_id, type, info, now, d->alternatives);
	/* a copy: the ledger records the decision as it was made */
	json_t *rec =
	    json_pack("{s:s, s:o}", "ticket_id", d->ticket_id, "payload", json_deep_copy(info));
	if (!rec)
		csa_ledger_append(a->ledger, "decision", d->ticket_id, info, NULL, NULL);
	pending_add(a, run, row, rec);
	json_object_set_new(audit, type, info);
	return autonomous;
}
