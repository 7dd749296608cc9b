/* Versioned tickets for crash, fault and concurrency tests: a commit sets
 * version N in all three documents (E.participants.cs_agents = ["vN"],
 * I.participants.assigned_resolver = "vN", T.assigned_member = "vN"), so a
 * ticket mixing two commits is detected. */
#ifndef CSA_TESTS_TMESH_H
#define CSA_TESTS_TMESH_H

#include "store/store.h"
#include "store/ws.h"

/* Create tickets ids[0..n-1] at version 0 (group commit). 0 or error. */
int tm_create(struct csa_ws *ws, const char *const *ids, size_t n);
/* Set version v on the loaded ticket (all three documents). */
void tm_set(struct csa_ticket *tk, long v);
/* Version of a loaded ticket, or -1 if its three documents disagree. */
long tm_version(const struct csa_ticket *tk);
/* Load and return the version (-1 mixed, -2 unreadable). */
long tm_load_version(struct csa_ws *ws, const char *id);

#endif
