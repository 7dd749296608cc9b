/* Helpers shared by the tests: temporary workspaces and running the CLI. */
#ifndef CSA_TESTS_TUTIL_H
#define CSA_TESTS_TUTIL_H

#include <jansson.h>
#include <stddef.h>

/* How many rounds a long suite runs: 'full' in the normal build, 'reduced'
 * in the sanitizer build (compiled with CSA_TEST_REDUCED, set by
 * CMakeLists.txt from CSA_SANITIZE), 'full' there too when the environment
 * has CSA_TEST_FULL=1. The normal build proves a property at scale; the
 * sanitizer build, many times slower, proves the same code memory-safe on
 * fewer rounds. 'what' names the size in the test's output. */
int t_size(const char *what, int full, int reduced);
/* mkdtemp under $TMPDIR or /tmp; returns a malloc'd path. */
char *t_tmpdir(const char *tag);
/* rm -rf (for paths under the temp dir only). */
void t_rmrf(const char *path);
/* Run "csa <args>" (the test build) with 'in' on stdin (may be NULL);
 * captures stdout and stderr (malloc'd, caller frees; may pass NULL).
 * Returns the exit status, or -1 if it did not exit normally. */
int t_csa(const char *in, char **out, char **err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Set a file's modification time 'seconds' into the past. */
void t_age(const char *path, int seconds);
/* How many directories and files under 'root' (itself included; links not
 * followed) group or others may access; the first one's path and mode go
 * to 'first' (may be NULL). -1 when the walk fails. */
int t_loose_modes(const char *root, char *first, size_t firstsz);
/* Write a file (test setup). */
void t_write(const char *path, const char *text);
/* Put n reviewed autonomous decisions of (type, segment) in PHASE_3 into a
 * workspace's automation.db, the first 'correct' of them right; returns 0
 * or -1. For the quality monitor's tests. */
int t_reviewed_autonomous(const char *ws, const char *type, const char *segment, int n,
                          int correct);
/* csa_ledger_verify / csa_ledger_trail of the file ledger at 'path'. */
struct csa_err;
int t_ledger_verify(const char *path, json_t **report, struct csa_err *err);
int t_ledger_trail(const char *path, const char *ticket_id, json_t **out, struct csa_err *err);

#endif
