/*
 * A private Redis server for a test (Debian's redis-server, or
 * CSA_REDIS_SERVER): in a fresh temporary directory, listening only on
 * 127.0.0.1 on a free port (no unix socket), without persistence unless
 * asked (appendonly), its log in that directory. Ready when it answers
 * PING.
 *
 * The server is stopped and its directory removed by tredis_stop(), and
 * also when the test process dies without calling it (a failed assertion
 * that aborts, a crash, a SIGKILL): a guardian process forked by
 * tredis_start() holds the read end of a pipe whose write end only the
 * test holds, and when it reads end of file it kills the server (by the
 * pid file the server writes in the directory) and removes the directory,
 * as tests/support/tpg.c does for PostgreSQL.
 *
 * Nothing outside 127.0.0.0/8 is contacted.
 */
#ifndef CSA_TESTS_TREDIS_H
#define CSA_TESTS_TREDIS_H

#include <stddef.h>

struct tredis;

/* Start a server; appendonly: with an append-only file (fsync every
 * second), so that a restart keeps the data. NULL on failure with why
 * (the server's log tail when there is one) in 'why'. */
struct tredis *tredis_start(int appendonly, char *why, size_t whysz);

/* "redis://127.0.0.1:PORT/0" */
const char *tredis_url(const struct tredis *r);
int tredis_port(const struct tredis *r);
/* The server's temporary directory (removed by tredis_stop or the
 * guardian). */
const char *tredis_dir(const struct tredis *r);

/* Kill the server with SIGKILL (connections cut, nothing saved) and wait
 * for it; the directory stays. 0, or -1 with why. */
int tredis_kill(struct tredis *r, char *why, size_t whysz);
/* Start it again on the same port and directory, ready when it answers
 * PING. 0, or -1 with why. */
int tredis_restart(struct tredis *r, char *why, size_t whysz);

/* Run one command (argv of argc strings) and write its reply as text into
 * 'out' (an integer as digits, a string as itself, nil as "(nil)", an
 * array as its elements separated by '\n', an error as "ERR ..."). 0, or
 * -1 with why in out. */
int tredis_cmd(struct tredis *r, int argc, const char **argv, char *out, size_t outsz);

/* In a process the test forked: let go of this process's copy of the
 * guardian's pipe (the child must not call tredis_stop()). */
void tredis_after_fork(struct tredis *r);

/* Stop the server, remove its directory, free. NULL is a no-op. */
void tredis_stop(struct tredis *r);

#endif
