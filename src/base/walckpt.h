/*
 * Background checkpoints for a WAL-mode SQLite database.
 *
 * By default the commit that grows the write-ahead log past 1,000 pages
 * copies it back into the database itself, with two fsyncs, while the
 * caller waits: on a busy disk that commit takes many milliseconds, and
 * every other thread that needs the connection waits behind it. Here the
 * writer's connection only notes how big the log is; a thread with its own
 * connection runs PASSIVE checkpoints (they never block readers or the
 * writer) once the log passes 'pages'. When commits keep outrunning them
 * and the log passes ten times 'pages', one RESTART checkpoint makes the
 * writer wait the while it takes: the writer's connection needs a busy
 * timeout, as every connection of csa's has.
 */
#ifndef CSA_BASE_WALCKPT_H
#define CSA_BASE_WALCKPT_H

#include <sqlite3.h>
#include "base/err.h"

struct csa_walckpt;

/* Take over checkpointing of 'db' (in WAL mode, file 'path'). */
int csa_walckpt_start(sqlite3 *db, const char *path, int pages, struct csa_walckpt **out,
                      struct csa_err *err);

/* Stop the thread and hand checkpointing back to 'db' (its default). */
void csa_walckpt_stop(struct csa_walckpt *c);

/* Checkpoints run so far (for tests). */
long csa_walckpt_count(struct csa_walckpt *c);

#endif
