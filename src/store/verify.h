/*
 * csa verify: the invariants of spec §6.1 over a whole workspace (ticket id
 * in all three files, cross-references, synchronisation drift, schema) and
 * the leftovers of interrupted work (temporary files, orphans: one or two
 * of a ticket's three files missing, foreign files), and, except in live
 * mode, directories and files that group or others may access
 * ("loose_mode": the workspace is private to its user, 0700/0600).
 */
#ifndef CSA_STORE_VERIFY_H
#define CSA_STORE_VERIFY_H

#include <jansson.h>
#include "base/err.h"

struct csa_ws;

/* Flags of csa_verify(). */
#define CSA_VERIFY_REPAIR 1u /* fix what can be fixed without losing data */
#define CSA_VERIFY_LIVE                                                                            \
	2u /* others may be writing: a ticket that looks                                           \
	    * incomplete is looked at again under its lock */

/* What a check found clean, for the next check to skip unchanged tickets
 * (the server's file monitor keeps one between its checks). */
struct csa_verify_memo {
	struct memo_entry *v;
	size_t n, cap;
};
struct csa_verify_memo *csa_verify_memo_new(void);
void csa_verify_memo_free(struct csa_verify_memo *m);

/*
 * Check every ticket; with CSA_VERIFY_REPAIR, remove temporary files, move the
 * files of orphaned tickets to lost+found/<id>/ (nothing is deleted) and
 * take group and other bits off loose modes. *report
 * receives {"ok", "tickets", "problems": [{"ticket", "file", "problem",
 * "detail", "repaired"}], "recovery": {...}}; "ok" is true when no problem
 * remains. With a memo, a ticket whose files have not changed (same inode,
 * size and modification time) since the memo's check found it clean is not
 * read again ("unchanged_since_last_check"), and the memo is replaced by
 * what this check found clean. Returns 0 unless the check itself could
 * not run.
 */
int csa_verify(struct csa_ws *ws, unsigned flags, struct csa_verify_memo *memo, json_t **report,
               struct csa_err *err);

#endif
