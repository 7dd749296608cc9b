/*
 * csa verify: the invariants of spec §6.1 over a whole workspace (ticket id
 * in all three files, cross-references, synchronisation drift, schema) and
 * the leftovers of interrupted work (temporary files, orphans: one or two
 * of a ticket's three files missing, foreign files).
 */
#ifndef CSA_STORE_VERIFY_H
#define CSA_STORE_VERIFY_H

#include <jansson.h>
#include "base/err.h"

struct csa_ws;

/*
 * Check every ticket; with 'repair', remove temporary files and move the
 * files of orphaned tickets to lost+found/<id>/ (nothing is deleted). *report
 * receives {"ok", "tickets", "problems": [{"ticket", "file", "problem",
 * "detail", "repaired"}], "recovery": {...}}; "ok" is true when no problem
 * remains. Returns 0 unless the check itself could not run.
 */
int csa_verify(struct csa_ws *ws, int repair, json_t **report, struct csa_err *err);

#endif
