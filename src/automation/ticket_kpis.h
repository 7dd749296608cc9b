/*
 * The tickets' own KPIs (spec §9.1: how many, how many resolved, mean
 * first response and resolution time, CSAT), summed over every ticket of
 * the store without reading every ticket each time.
 *
 * Each ticket's few figures (T.resolved and T.sla_metrics) are kept in
 * memory by id: filled by one scan of the store (or from the file the
 * last run saved them in, .csa/kpis.idx, when the store has not changed
 * since), then kept current by an observer of this handle's commits
 * (csa_store_observe), with the numbers as the stored documents give them
 * back. The store's mark and stamp
 * (CSA_MARK_KPIS) say whether every commit since that scan went through
 * this handle; when another handle or process may have committed, or the
 * scan is five minutes old (a file edited by hand is no commit), the next
 * sum scans again. Commits never wait for a scan. The sums run over the
 * tickets in id order, as a scan would, so the totals are the scan's to
 * the last bit.
 */
#ifndef CSA_AUTOMATION_TICKET_KPIS_H
#define CSA_AUTOMATION_TICKET_KPIS_H

#include "base/err.h"
#include "store/store.h"

struct csa_ticket_kpis;

/* Sums over the tickets; a mean is sum / n where n > 0. */
struct csa_kpi_totals {
	double tickets, resolved;
	double frt_sum, frt_n; /* sla_metrics.first_response_time >= 0 */
	double res_sum, res_n; /* sla_metrics.resolution_time >= 0 */
	double csat_sum, csat_n; /* sla_metrics.customer_satisfaction >= 1 */
};

/* Observe st's commits from now on: call before commits start. Without
 * a free observer slot every sum scans the store. 'path' (may be NULL)
 * is the file the figures are kept in between runs: the first sum takes
 * them from it instead of scanning when no other handle or process has
 * committed since they were saved (the store's position, as
 * agents/histfile.h keeps the history index). */
int csa_ticket_kpis_open(struct csa_store *st, const char *path, struct csa_ticket_kpis **out,
                         struct csa_err *err);
/* After the commits through st have ended: saves the figures when they
 * are provably the store's (every commit since the last scan or load was
 * this handle's). */
void csa_ticket_kpis_close(struct csa_ticket_kpis *k);

/* The totals over every ticket now (thread-safe). */
int csa_ticket_kpis_totals(struct csa_ticket_kpis *k, struct csa_kpi_totals *out,
                           struct csa_err *err);

/* How many scans of the store the totals took so far (for tests). */
unsigned long csa_ticket_kpis_scans(struct csa_ticket_kpis *k);

#endif
