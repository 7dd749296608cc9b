/*
 * Autonomy thresholds and readiness per decision type and segment, cached
 * and recomputed as reviews come in.
 */
#include "automation/auto_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The cache slot of key, made empty on first use (NULL when out of memory). */
static struct thr *thr_slot(struct csa_auto *a, const char *key)
{
	for (size_t i = 0; i < a->nthr; i++)
		if (strcmp(a->thr[i].key, key) == 0)
			return &a->thr[i];
	if (a->nthr == a->capthr) {
		size_t cap = a->capthr ? a->capthr * 2 : 64;
		struct thr *nv = realloc(a->thr, cap * sizeof(*nv));
		if (!nv)
			return NULL;
		a->thr = nv;
		a->capthr = cap;
	}
	struct thr *t = &a->thr[a->nthr++];
	memset(t, 0, sizeof(*t));
	snprintf(t->key, sizeof(t->key), "%s", key);
	return t;
}

/*
 * Whether the cached t is out of date: 20 reviews of its scope (type, and
 * segment unless NULL) came in since it was computed, or the first one.
 * Counted in the database, so reviews another process records count too,
 * over a range of a reviews index: only the reviews after t's newest are
 * read, however long the history. Leaves in *newest the newest review's
 * time. Caller holds a->mu.
 */
static int thr_stale(struct csa_auto *a, const struct thr *t, const char *type, const char *segment,
                     int64_t *newest)
{
	sqlite3_stmt *st =
	    segment
	        ? auto_kept(a, KEPT_REVIEWED,
	                    "SELECT count(*), max(reviewed_ms) FROM decisions WHERE final IS NOT "
	                    "NULL AND type = ?1 AND segment = ?2 AND reviewed_ms > ?3")
	        : auto_kept(a, KEPT_REVIEWED_TYPE,
	                    "SELECT count(*), max(reviewed_ms) FROM decisions WHERE final IS NOT "
	                    "NULL AND type = ?1 AND reviewed_ms > ?3");
	int64_t fresh = 0;
	*newest = t->newest_ms;
	if (st) {
		sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
		if (segment)
			sqlite3_bind_text(st, 2, segment, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, t->computed ? t->newest_ms : INT64_MIN);
		if (sqlite3_step(st) == SQLITE_ROW) {
			fresh = sqlite3_column_int64(st, 0);
			if (fresh > 0)
				*newest = sqlite3_column_int64(st, 1);
		}
		sqlite3_reset(st);
	}
	return !t->computed || fresh >= 20 || (fresh > 0 && !t->had_reviews);
}

/* How confident a decision of the type must be for the decisions above it
 * to reach the target accuracy (lower bound), read from the whole type's
 * latest reviewed decisions, where the evidence is large enough for a
 * tight bound; 2 when no confidence is enough. Caller holds a->mu. */
static double type_threshold(struct csa_auto *a, const char *type, int critical)
{
	char key[200];
	snprintf(key, sizeof(key), "%s/*/%d", type, critical);
	struct thr *t = thr_slot(a, key);
	int64_t newest;
	if (!t)
		return 2.0;
	if (!thr_stale(a, t, type, NULL, &newest))
		return t->threshold;
	double target = auto_cfg_num(
	    a, critical ? "automation.critical_target_accuracy" : "automation.target_accuracy",
	    critical ? 0.995 : 0.97);
	size_t n, window = (size_t)auto_cfg_num(a, "automation.window", 500);
	struct csa_outcome *all = auto_outcomes(a, type, NULL, window * 4, &n);
	t->threshold = all ? csa_threshold_for_accuracy(
	                         all, n, target, auto_cfg_num(a, "automation.z", 1.96),
	                         (size_t)auto_cfg_num(a, "automation.min_decisions", 50))
	                   : 2.0;
	t->computed = 1;
	t->had_reviews = n > 0;
	t->newest_ms = newest;
	free(all);
	return t->threshold;
}

/*
 * The threshold and readiness of (type, segment, critical), cached and
 * recomputed as reviews come in. Caller holds a->mu.
 *
 * Readiness answers spec §4.2's question, "is the system ready for
 * autonomous decisions in this context", so it is judged on the decisions
 * the segment would make autonomously: its reviewed decisions at or above
 * the type's threshold. A segment of easily confused labels whose proposals
 * are right 75% of the time overall can still be ready for the confident
 * share of its decisions, and one whose confident decisions go wrong is not
 * ready however good its average.
 */
const struct thr *auto_threshold_of(struct csa_auto *a, const char *type, const char *segment,
                                    int critical)
{
	char key[200];
	snprintf(key, sizeof(key), "%s/%s/%d", type, segment, critical);
	double tt = type_threshold(a, type, critical);
	struct thr *t = thr_slot(a, key);
	int64_t newest;
	if (!t)
		return NULL;
	if (!thr_stale(a, t, type, segment, &newest) && t->type_threshold == tt)
		return t;
	size_t n;
	size_t window = (size_t)auto_cfg_num(a, "automation.window", 500);
	struct csa_outcome *o = auto_outcomes(a, type, segment, window, &n);
	double need = auto_cfg_num(a,
	                           critical ? "automation.readiness_required_critical"
	                                    : "automation.readiness_required",
	                           critical ? 0.9 : 0.8);
	size_t min_n = (size_t)auto_cfg_num(a, "automation.min_decisions", 50);
	size_t m = n;
	if (o && tt <= 1) {
		m = 0;
		for (size_t i = 0; i < n; i++) /* oldest first, as readiness wants */
			if (o[i].confidence >= tt)
				o[m++] = o[i];
	}
	csa_readiness(o, o ? m : 0, &t->r);
	t->threshold =
	    tt <= 1 && n >= min_n &&
	            m >= (size_t)auto_cfg_num(a, "automation.segment_min_decisions", 30) &&
	            t->r.score >= need
	        ? tt
	        : 2.0;
	t->type_threshold = tt;
	t->reviewed = n;
	t->computed = 1;
	t->had_reviews = n > 0;
	t->newest_ms = newest;
	free(o);
	return t;
}
