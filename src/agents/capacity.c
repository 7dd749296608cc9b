/* The team's capacity: one lock over load checks and the assignments that
 * use them, and the log that keeps each process's load count current. */
#include "agents/capacity.h"
#include "agents/history.h"
#include "base/fsops.h"
#include "base/ids.h"
#include "base/ts.h"
#include "store/store.h"
#include "store/ws.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define CAPACITY_LOG    ".csa/capacity.log"
#define CAPACITY_MAGIC  "csa-capacity 1 "
#define CAPACITY_HEADER (sizeof(CAPACITY_MAGIC) - 1 + 16 + 1) /* magic, 16 hex, \n */
/* Past this size the holder starts the log over: at ~20 bytes a line,
 * some 50,000 assignments; every other process then reads every ticket's
 * T document once. */
#define CAPACITY_LOG_MAX (1u << 20)

struct csa_capacity {
	struct csa_ws *ws;
	struct csa_history *h;
	pthread_mutex_t mu; /* the lock among this process's threads */
	int fd;             /* flock(2): the lock among processes */
	char path[4096];
	char epoch[17]; /* of the log as last read, "" before the first read */
	off_t seen;     /* bytes of the log read (and applied) so far */
};

/* The log's epoch into out (16 hex + NUL): 0, 1 when the file has no
 * (whole) header, or CSA_EIO. */
static int read_header(struct csa_capacity *c, char out[17], struct csa_err *err)
{
	char buf[CAPACITY_HEADER];
	ssize_t n = pread(c->fd, buf, sizeof(buf), 0);
	if (n < 0)
		return csa_error_sys(err, "cannot read '%s'", c->path);
	if ((size_t)n < sizeof(buf) || memcmp(buf, CAPACITY_MAGIC, sizeof(CAPACITY_MAGIC) - 1) ||
	    buf[sizeof(buf) - 1] != '\n')
		return 1;
	memcpy(out, buf + sizeof(CAPACITY_MAGIC) - 1, 16);
	out[16] = '\0';
	return CSA_OK;
}

/* Start the log over with a new epoch; under the lock. */
static int start_over(struct csa_capacity *c, struct csa_err *err)
{
	static _Atomic unsigned seq;
	char line[CAPACITY_HEADER + 1];
	uint64_t epoch = (uint64_t)csa_mono_ns() ^ ((uint64_t)getpid() << 40) ^
	                 ((uint64_t)csa_now_ms() << 8) ^ (uint64_t)seq++;
	snprintf(line, sizeof(line), CAPACITY_MAGIC "%016" PRIx64 "\n", epoch);
	if (ftruncate(c->fd, 0) < 0 || pwrite(c->fd, line, CAPACITY_HEADER, 0) != CAPACITY_HEADER)
		return csa_error_sys(err, "cannot start '%s' over", c->path);
	memcpy(c->epoch, line + sizeof(CAPACITY_MAGIC) - 1, 16);
	c->epoch[16] = '\0';
	c->seen = CAPACITY_HEADER;
	return CSA_OK;
}

/* A ticket's entry in the index again, from its T document as stored. */
static int reread(struct csa_capacity *c, const char *id, const json_t *t)
{
	struct csa_ticket tk = {.t = (json_t *)t};
	snprintf(tk.id, sizeof(tk.id), "%s", id);
	struct csa_hist_entry e;
	csa_history_entry_from(&tk, &e);
	return csa_history_put(c->h, &e);
}

static int reread_scanned(void *ctx, const char *id, const json_t *t, const char *status)
{
	(void)status;
	return reread(ctx, id, t);
}

/* The tickets named in the log from c->seen to 'end' read again. */
static int apply_lines(struct csa_capacity *c, off_t end, struct csa_err *err)
{
	size_t len = (size_t)(end - c->seen);
	char *buf = malloc(len + 1);
	if (!buf)
		return csa_error(err, CSA_ENOMEM, "out of memory reading '%s'", c->path);
	ssize_t n = pread(c->fd, buf, len, c->seen);
	if (n < 0 || (size_t)n != len) {
		free(buf);
		return n < 0 ? csa_error_sys(err, "cannot read '%s'", c->path)
		             : csa_error(err, CSA_EIO, "'%s' shrank while locked", c->path);
	}
	buf[len] = '\0';
	int rc = CSA_OK;
	size_t at = 0;
	/* a line not ended (a writer that died mid-write) is not read: the
	 * next holder writes its line over it, at the end of the whole lines */
	for (char *nl; rc == CSA_OK && (nl = memchr(buf + at, '\n', len - at));
	     at = (size_t)(nl - buf) + 1) {
		*nl = '\0';
		const char *id = buf + at;
		if (!csa_id_valid(id))
			continue; /* not ours to trust: the documents stay the truth */
		json_t *t = NULL;
		struct csa_err lerr = {0};
		int lrc = csa_store_load_doc(c->ws->store, id, CSA_DOC_T, &t, &lerr);
		if (lrc == CSA_OK)
			rc = reread(c, id, t);
		else if (lrc != CSA_ENOENT) /* damaged: verify reports it; counted as known */
			fprintf(stderr, "csa: capacity log '%s': ticket '%s' not read again: %s\n",
			        c->path, id, lerr.msg);
		json_decref(t);
	}
	free(buf);
	if (rc == CSA_OK)
		c->seen += (off_t)at;
	return rc;
}

/* Bring the index up to date with the log; under the lock. */
static int catch_up(struct csa_capacity *c, struct csa_err *err)
{
	struct stat st;
	if (fstat(c->fd, &st) < 0)
		return csa_error_sys(err, "cannot stat '%s'", c->path);
	char epoch[17];
	int rc = read_header(c, epoch, err);
	if (rc < 0)
		return rc;
	int first = !c->epoch[0]; /* csa_capacity_open: the index is filled after */
	if (rc == 1) {
		/* new, or its header torn by a crash: nobody can rely on it */
		if ((rc = start_over(c, err)) || first)
			return rc;
	} else if (strcmp(epoch, c->epoch) == 0 && st.st_size >= c->seen) {
		return st.st_size > c->seen ? apply_lines(c, st.st_size, err) : CSA_OK;
	} else {
		/* started over by someone else */
		memcpy(c->epoch, epoch, sizeof(c->epoch));
		c->seen = st.st_size;
		if (first)
			return CSA_OK;
	}
	/* what the log said is lost: every ticket, once */
	rc = csa_store_scan(c->ws->store, NULL, reread_scanned, c, err);
	if (rc)
		csa_error_prefix(err, "capacity log '%s' started over: ", c->path);
	return rc;
}

int csa_capacity_lock(struct csa_capacity *c, struct csa_err *err)
{
	pthread_mutex_lock(&c->mu);
	int r;
	while ((r = flock(c->fd, LOCK_EX)) < 0 && errno == EINTR)
		;
	if (r < 0) {
		int rc = csa_error_sys(err, "cannot lock '%s'", c->path);
		pthread_mutex_unlock(&c->mu);
		return rc;
	}
	int rc = catch_up(c, err);
	if (rc) {
		flock(c->fd, LOCK_UN);
		pthread_mutex_unlock(&c->mu);
	}
	return rc;
}

int csa_capacity_unlock(struct csa_capacity *c, const char *changed_id, struct csa_err *err)
{
	int rc = CSA_OK;
	/* no fsync: the log only tells running processes what to read again;
	 * after a power loss every process starts by reading the store */
	if (changed_id && csa_id_valid(changed_id)) {
		if (c->seen > (off_t)CAPACITY_LOG_MAX)
			rc = start_over(c, err);
		char line[CSA_ID_MAX + 2];
		int n = snprintf(line, sizeof(line), "%s\n", changed_id);
		/* at the end as we know it: what others appended we have read */
		if (rc == CSA_OK && pwrite(c->fd, line, (size_t)n, c->seen) != n)
			rc = csa_error_sys(err, "cannot note ticket '%s' in '%s'", changed_id,
			                   c->path);
		else if (rc == CSA_OK)
			c->seen += n;
	}
	flock(c->fd, LOCK_UN);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int csa_capacity_open(struct csa_ws *ws, struct csa_history *h, struct csa_capacity **out,
                      struct csa_err *err)
{
	struct csa_capacity *c = calloc(1, sizeof(*c));
	if (!c)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the capacity log");
	c->ws = ws;
	c->h = h;
	c->fd = -1;
	pthread_mutex_init(&c->mu, NULL);
	int rc = csa_ws_path(ws, CAPACITY_LOG, c->path, sizeof(c->path));
	if (rc)
		rc = csa_error(err, rc, "workspace path too long for '%s'", CAPACITY_LOG);
	else if ((c->fd = csa_fs_open(c->path, O_RDWR | O_CREAT | O_CLOEXEC, CSA_FILE_MODE)) < 0)
		rc = csa_error_sys(err, "cannot open '%s'", c->path);
	/* where the log stands now; the index is filled from the store after */
	else if ((rc = csa_capacity_lock(c, err)) == CSA_OK)
		rc = csa_capacity_unlock(c, NULL, err);
	if (rc) {
		csa_capacity_free(c);
		return rc;
	}
	*out = c;
	return CSA_OK;
}

void csa_capacity_free(struct csa_capacity *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	pthread_mutex_destroy(&c->mu);
	free(c);
}
