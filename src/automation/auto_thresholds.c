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
	int64_t fresh = 0;
	*newest = t->newest_ms;
	/* unreadable: as if none came in */
	auto_db_reviews_after(a, type, segment, t->computed ? t->newest_ms : INT64_MIN, &fresh,
	                      newest);
	return !t->computed || fresh >= 20 || (fresh > 0 && !t->had_reviews);
}

/* How confident a decision of the type must be for the decisions above it
 * to reach the target accuracy (lower bound), read from the whole type's
 * latest reviewed decisions, where the evidence is large enough for a
 * tight bound; CSA_NO_THRESHOLD when no confidence is enough. Caller
 * holds a->mu. */
static double type_threshold(struct csa_auto *a, const char *type, int critical)
{
	char key[200];
	snprintf(key, sizeof(key), "%s/*/%d", type, critical);
	struct thr *t = thr_slot(a, key);
	int64_t newest;
	if (!t)
		return CSA_NO_THRESHOLD;
	if (!thr_stale(a, t, type, NULL, &newest))
		return t->threshold;
	const struct csa_auto_settings *set = auto_settings(a);
	double target = critical ? set->critical_target_accuracy : set->target_accuracy;
	size_t n, window = (size_t)set->window;
	struct csa_outcome *all = auto_outcomes(a, type, NULL, window * 4, &n);
	t->threshold =
	    all ? csa_threshold_for_accuracy(all, n, target, set->z, (size_t)set->min_decisions)
	        : CSA_NO_THRESHOLD;
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
	const struct csa_auto_settings *set = auto_settings(a);
	size_t n;
	struct csa_outcome *o = auto_outcomes(a, type, segment, (size_t)set->window, &n);
	double need = critical ? set->readiness_required_critical : set->readiness_required;
	size_t min_n = (size_t)set->min_decisions;
	size_t m = n;
	if (o && csa_has_threshold(tt)) {
		m = 0;
		for (size_t i = 0; i < n; i++) /* oldest first, as readiness wants */
			if (o[i].confidence >= tt)
				o[m++] = o[i];
	}
	csa_readiness(o, o ? m : 0, &t->r);
	t->threshold = csa_has_threshold(tt) && n >= min_n &&
	                       m >= (size_t)set->segment_min_decisions && t->r.score >= need
	                   ? tt
	                   : CSA_NO_THRESHOLD;
	t->type_threshold = tt;
	t->reviewed = n;
	t->computed = 1;
	t->had_reviews = n > 0;
	t->newest_ms = newest;
	free(o);
	return t;
}
