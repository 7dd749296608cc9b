/*
 * A private PostgreSQL server for a test (Debian's PostgreSQL 15 binaries,
 * /usr/lib/postgresql/15/bin, or CSA_PG_BIN): initdb into a fresh
 * temporary directory, then pg_ctl start, listening only on 127.0.0.1 on a
 * free port and on a unix socket in that directory, fsync on, password
 * authentication for a generated role. PostgreSQL refuses to run as root:
 * when the test runs as root, initdb, pg_ctl and the server run as the
 * 'postgres' user (the Debian package creates it), which owns the
 * directory.
 *
 * The server is stopped and its directory removed by tpg_stop(), and also
 * when the test process dies without calling it (a failed assertion that
 * aborts, a crash, a kill): a guardian process forked by tpg_start() holds
 * the read end of a pipe whose write end only the test holds, and cleans
 * up when it reads end of file.
 *
 * Nothing outside 127.0.0.0/8 is contacted.
 */
#ifndef CSA_TESTS_TPG_H
#define CSA_TESTS_TPG_H

#include <stddef.h>

struct tpg;

/* Start a server. On failure returns NULL and writes why (with the
 * server's log tail where there is one) into 'why'. */
struct tpg *tpg_start(char *why, size_t whysz);

/* A new, empty place for a store on the server: schema 'name' of the
 * database csa_tests (UTF-8, an ICU en-US collation as its default, not
 * byte order), which the URL written to 'url' selects through its
 * search_path (postgresql://user:password@127.0.0.1:port/csa_tests?
 * options=-csearch_path%3Dname). 0, or -1 with the reason in 'why'. */
int tpg_create_schema(struct tpg *pg, const char *name, char *url, size_t urlsz, char *why,
                      size_t whysz);

/* A new database 'name' (UTF-8, ICU en-US), the store's tables to go in
 * its default schema (public) as in most deployments; its URL into 'url'.
 * 0, or -1 with the reason in 'why'. */
int tpg_create_database(struct tpg *pg, const char *name, char *url, size_t urlsz, char *why,
                        size_t whysz);

/* host:port of the server ("127.0.0.1:54321"). */
const char *tpg_hostport(const struct tpg *pg);

/* Stop the server as a crash would (immediate shutdown: connections cut,
 * no checkpoint) and start it again on the same port and data (crash
 * recovery from its WAL), for tests of a database that goes away. 0, or
 * -1 with the reason in 'why'. */
int tpg_server_stop(struct tpg *pg, char *why, size_t whysz);
int tpg_server_start(struct tpg *pg, char *why, size_t whysz);

/* In a process the test forked: let go of this process's copy of the
 * guardian's pipe, so that the guardian still cleans up when the test
 * dies while this child lives on. The child must not call tpg_stop(). */
void tpg_after_fork(struct tpg *pg);

/* Stop the server (immediate shutdown: its data is thrown away), remove
 * its directory, free. NULL is a no-op. */
void tpg_stop(struct tpg *pg);

#endif
