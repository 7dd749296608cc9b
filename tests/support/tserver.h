/*
 * What the tests' private servers share (tpg.c: PostgreSQL, tredis.c:
 * Redis): a temporary directory, a free loopback port, the tail of a log
 * for a failure's reason, and the guardian that removes it all even when
 * the test is killed.
 */
#ifndef CSA_TESTS_TSERVER_H
#define CSA_TESTS_TSERVER_H

#include <stddef.h>

/* vsnprintf into 'why' (the reason a server could not start). */
void tsrv_say(char *why, size_t whysz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The last 'max' - 1 bytes of a file ("" if none). */
void tsrv_tail(const char *path, char *out, size_t max);

/* A port on 127.0.0.1 nobody listens on right now (the kernel's pick), or
 * -1. */
int tsrv_free_port(void);

/* rm -r, through nftw. */
void tsrv_rmtree(const char *dir);

/* A new directory "$TMPDIR/<prefix>-XXXXXX" (/tmp without TMPDIR) into
 * 'out'; 0, or -1 with the reason. */
int tsrv_mkdtemp(const char *prefix, char *out, size_t outsz, char *why, size_t whysz);

/*
 * Start the guardian of 'dir': a grandchild of the test in a session of
 * its own (so neither a kill of the test's process group nor of its
 * process tree, a ctest timeout, takes it along), ignoring SIGINT,
 * SIGTERM and SIGHUP. It waits until the test closes *guard_fd (the
 * server's stop, or the test dying), then calls cleanup(ctx) (stop the
 * server), removes 'dir' and exits; *done_fd reaches EOF then. 0, or -1
 * with the reason and 'dir' removed.
 */
int tsrv_guard(const char *dir, void (*cleanup)(void *ctx), void *ctx, int *guard_fd,
               int *done_fd, char *why, size_t whysz);

#endif
