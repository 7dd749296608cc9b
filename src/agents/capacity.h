/*
 * The team's capacity as one workspace-wide critical section: a member's
 * load (open tickets assigned to them, csa_history_open_assigned) is read
 * and the assignment that uses it is committed under one lock, across the
 * threads of a process and across processes (the server, `csa assign`,
 * another server on the same workspace), so two assignments never both
 * take a member's last slot.
 *
 * The load is counted in each process's history index, which learns its
 * own process's commits at once but not other processes'. So the lock file
 * (.csa/capacity.log) is also a log of the tickets whose assignment or
 * resolution was committed under it, one id a line: whoever takes the lock
 * first reads the lines appended since it last looked and reads those
 * tickets' T documents again into its index. The log only says which
 * tickets to read; the documents stay the truth. It starts over (a new
 * first line, "csa-capacity 1 <epoch>") when it grows past 1 MiB, and a
 * process that finds another epoch reads every ticket's T document again.
 *
 * Lock order: a ticket's lock, then this one. Under this lock a caller may
 * commit the ticket it holds and read documents without their lock, never
 * wait for another ticket's lock.
 */
#ifndef CSA_AGENTS_CAPACITY_H
#define CSA_AGENTS_CAPACITY_H

#include "base/err.h"

struct csa_capacity;
struct csa_history;
struct csa_ws;

/* Open the workspace's capacity log for the index 'h' (borrowed; both
 * must outlive the handle). Call it before 'h' is filled from the store:
 * the commits of other processes that the filling may miss are then in the
 * log, past the position noted here. *out is freed with csa_capacity_free. */
int csa_capacity_open(struct csa_ws *ws, struct csa_history *h, struct csa_capacity **out,
                      struct csa_err *err);

/* NULL is a no-op. The lock must not be held. */
void csa_capacity_free(struct csa_capacity *c);

/* Take the lock (blocking) and bring the index up to date with the
 * assignments other processes committed since this handle last looked.
 * On failure the lock is not held and the error says what and where. */
int csa_capacity_lock(struct csa_capacity *c, struct csa_err *err);

/* Release the lock. 'changed_id' (may be NULL) names the ticket whose
 * assignment or resolution the holder committed, already put into the
 * index: it goes into the log for the other processes. Appending is best
 * effort: a failure is reported (CSA_EIO), the lock is released anyway,
 * and the others' indexes then count that ticket as they knew it. */
int csa_capacity_unlock(struct csa_capacity *c, const char *changed_id, struct csa_err *err);

#endif
