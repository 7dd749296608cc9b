/* A workspace of generated tickets in every state the inbox filters on,
 * for the inbox's tests and its benchmark. */
#ifndef CSA_TESTS_INBOXGEN_H
#define CSA_TESTS_INBOXGEN_H

#include <stdint.h>
#include "base/err.h"

struct csa_ws;

/* Words put into some tickets' messages, found nowhere else. */
#define INBOXGEN_E_WORD "zqxkumquat" /* a customer message of every 97th ticket */
#define INBOXGEN_I_WORD "zqxwombat"  /* an internal note of every 89th ticket */

/* What ticket number i (0-based) was given, so a test knows what each
 * filter should find without asking the code under test. */
const char *inboxgen_status(long i);   /* active|resolved|escalated|pending */
const char *inboxgen_assigned(long i); /* "alice", "bob" or NULL */
int inboxgen_review(long i);           /* a decision waits for review */
int inboxgen_autonomous(long i);       /* a decision was applied autonomously */
int inboxgen_repeat_customer(long i);  /* the customer is INBOXGEN_REPEAT_CUSTOMER */
#define INBOXGEN_REPEAT_CUSTOMER "repeat@inboxgen.example"
int inboxgen_e_word(long i);
int inboxgen_i_word(long i);

/* Add n tickets (ids H000001...) from csa_gen's history (seed) through the
 * import's ticket builder, varied by number as above, SLA deadlines set
 * around now_ms for the tickets not resolved; committed 500 at a time. */
int inboxgen_fill(struct csa_ws *ws, long n, uint64_t seed, int64_t now_ms, struct csa_err *err);

#endif
