/* Background checkpoints for a WAL-mode SQLite database (see walckpt.h). */
#include "base/walckpt.h"

#include <pthread.h>
#include <stdlib.h>

struct csa_walckpt {
	sqlite3 *writer; /* the connection whose commits fill the log */
	sqlite3 *db;     /* this thread's own connection */
	int pages;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int wanted, stop;
	long done;
};

/* Runs on the writer's thread after each commit, with the write lock
 * already released: only signal. */
static int on_commit(void *ctx, sqlite3 *db, const char *name, int pages)
{
	(void)db;
	(void)name;
	struct csa_walckpt *c = ctx;
	if (pages >= c->pages) {
		pthread_mutex_lock(&c->mu);
		if (!c->wanted) {
			c->wanted = 1;
			pthread_cond_signal(&c->cv);
		}
		pthread_mutex_unlock(&c->mu);
	}
	return SQLITE_OK;
}

static void *run(void *arg)
{
	struct csa_walckpt *c = arg;
	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (!c->wanted && !c->stop)
			pthread_cond_wait(&c->cv, &c->mu);
		if (c->stop)
			break;
		c->wanted = 0;
		pthread_mutex_unlock(&c->mu);
		/* The log starts again from its beginning only when a commit
		 * finds every frame copied back, so pass again while commits
		 * made during a pass are left. SQLITE_BUSY (another checkpoint
		 * running) is fine: the next commit asks again. */
		int log = 0, copied = 0;
		for (int pass = 0; pass < 8; pass++)
			if (sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log,
			                              &copied) != SQLITE_OK ||
			    copied >= log)
				break;
		/* Commits that always outrun the passes would grow the log
		 * without end: past ten times the threshold, a RESTART makes
		 * them wait the short while it takes to copy the last frames. */
		if (copied < log && log > 10 * c->pages)
			sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_RESTART, NULL,
			                          NULL);
		pthread_mutex_lock(&c->mu);
		c->done++;
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

int csa_walckpt_start(sqlite3 *db, const char *path, int pages, struct csa_walckpt **out,
                      struct csa_err *err)
{
	struct csa_walckpt *c = calloc(1, sizeof(*c));
	if (!c)
		return csa_error(err, CSA_ENOMEM, "out of memory starting checkpoints of '%s'",
		                 path);
	c->writer = db;
	c->pages = pages > 0 ? pages : 1000;
	if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
	        SQLITE_OK ||
	    sqlite3_busy_timeout(c->db, 10000) != SQLITE_OK ||
	    /* a connection that has not read the database yet does not know it
	     * is in WAL mode, and its checkpoints do nothing */
	    sqlite3_exec(c->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK) {
		int rc = csa_error(err, CSA_EIO, "cannot open '%s' for checkpoints: %s", path,
		                   c->db ? sqlite3_errmsg(c->db) : "out of memory");
		sqlite3_close(c->db);
		free(c);
		return rc;
	}
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	if (pthread_create(&c->thread, NULL, run, c) != 0) {
		sqlite3_close(c->db);
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->mu);
		free(c);
		return csa_error(err, CSA_EIO, "cannot start the checkpoint thread of '%s'", path);
	}
	/* replaces the connection's automatic checkpoints */
	sqlite3_wal_hook(db, on_commit, c);
	*out = c;
	return CSA_OK;
}

void csa_walckpt_stop(struct csa_walckpt *c)
{
	if (!c)
		return;
	sqlite3_wal_autocheckpoint(c->writer, 1000); /* removes our hook */
	pthread_mutex_lock(&c->mu);
	c->stop = 1;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	sqlite3_close(c->db);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

long csa_walckpt_count(struct csa_walckpt *c)
{
	pthread_mutex_lock(&c->mu);
	long n = c->done;
	pthread_mutex_unlock(&c->mu);
	return n;
}
