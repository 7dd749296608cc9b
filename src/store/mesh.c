/* The file mesh: commit through the redo journal, load, scan, recovery. */
#include "store/mesh.h"
#include "base/hash.h"
#include "store/journal.h"
#include "store/schema.h"
#include "store/store_internal.h"
#include "store/ws.h"
#include "base/fsops.h"
#include "base/json.h"
#include "base/ts.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_SZ                  4096
#define DEFAULT_CHECKPOINT_BYTES (16u << 20)

static const char *const kind_dir[3] = {"Tickets/T_ext", "Tickets/T_int", "Tickets/tickets"};
static const char kind_letter[3] = {'E', 'I', 'T'};

/* A position in the journal (mesh_mark): the append offset and the trim
 * counter, which every checkpoint bumps (it moves the append offset back to
 * the first record, where it may have been before, and may replace the
 * file). */
struct jpos {
	off_t end;
	uint64_t trims;
};

/*
 * The first bytes of .csa/lock, shared by the live processes that have
 * the workspace open, as SQLite's -shm file is: never synced, so a crash
 * of the machine may lose them, and recovery on open (which scans the
 * journal itself) writes them again. Read and written under the journal
 * lock only, but for the stamps (mesh_stamp), which read them without it.
 *   trims  checkpoints so far, by any handle (checkpoint_unlocked)
 *   gen    the journal's generation (its header on disk says the same);
 *          0 while a handle rewrites the header (wrap_locked, trim_tail):
 *          the next handle to take the lock recovers first, in case that
 *          one died or failed half way
 *   end    where the next record goes: after the last acknowledged one.
 *          The journal file is reused, so its length says nothing; a
 *          commit publishes its record's end after the record's fdatasync
 *          and before it swaps its documents in, so a record whose
 *          process died before that point (its documents untouched) is
 *          overwritten by the next commit, and one after it is kept.
 *   busy   1 from that point until the commit's documents are all in
 *          place: a handle that takes the lock and finds it set knows the
 *          commit's process died half way, and recovers (completes that
 *          commit from its record) before anything else, so neither its
 *          checkpoint drops the record of a half-swapped ticket nor does a
 *          reader that takes the lock (a backup's hold) see it torn.
 */
struct lhdr {
	uint64_t trims, gen, end, busy;
};

struct mesh {
	struct csa_store base;
	struct csa_ws *ws;
	char journal_path[PATH_SZ];
	char lock_path[PATH_SZ];
	char tmp_dir[PATH_SZ];
	char pool_dir[PATH_SZ]; /* .csa/pool: files a commit rewrites and swaps in */
	char journal_new[PATH_SZ]; /* the trimmed journal before it replaces the old */
	int lock_fd;               /* journal lock (offset 0) */
	int journal_fd;            /* .csa/journal */
	dev_t journal_dev;         /* identity of journal_fd: another process */
	ino_t journal_ino;         /* may have replaced the file (trim) */
	struct lhdr lh;            /* .csa/lock's header as of the journal lock */
	uint64_t *lh_map;          /* that header in memory (lhdr_map), or NULL */
	off_t journal_size;        /* the file's length as last seen (grow_pad) */
	uint64_t size_trims;       /* lh.trims when journal_size was read */
	uint64_t ident_trims;      /* lh.trims when the journal's name was looked up */
	pthread_mutex_t mu;
	pthread_mutex_t qmu; /* the group commit queue */
	pthread_cond_t qcv;
	struct creq *qhead, *qtail;
	int leading; /* a commit of this handle runs a batch */
	size_t checkpoint_bytes;
	int needs_recovery; /* a failed commit could not be undone */
	/* 0 for a scratch workspace (csa_ws_open_scratch): the same commits,
	 * journal and checkpoints, but nothing waits for the disk (no
	 * fdatasync, fsync or syncfs); 1 for every other workspace */
	int sync;
	int checkpointing;  /* a commit of this handle is syncing outside the lock */
	int observe;        /* opened to look only (csa_mesh_open_observer) */
	/* the file system cannot swap two names (renameat2 RENAME_EXCHANGE):
	 * a commit renames its pool file over the document, as a new file */
	int no_exchange;
#ifdef CSA_TESTING
	void (*after_sync)(void *ctx);
	void *after_sync_ctx;
	void (*before_batch)(void *ctx);
	void *before_batch_ctx;
	void (*after_open)(void *ctx);
	void *after_open_ctx;
#endif
	struct csa_mesh_stats stats;
	/* the journal position as of the last mark, moved along by this
	 * handle's own commits and trims (mesh_mark, mesh_stamp) */
	pthread_mutex_t mark_mu;
	struct jpos mark[CSA_MARK_SLOTS];
	int marked[CSA_MARK_SLOTS];
};

struct csa_lock {
	int fd;
};

static int jpos_now(struct mesh *m, struct jpos *out);
static void mark_follow(struct mesh *m, const struct jpos *before, const struct jpos *after);
static void lhdr_read(struct mesh *m, struct lhdr *h);

const char *csa_mesh_dir(int kind)
{
	return kind_dir[kind];
}

size_t csa_mesh_workflow_id_len(const char *name)
{
	size_t len = strlen(name);
	if (len < 8 || strncmp(name, "T_", 2) != 0 || strcmp(name + len - 5, ".json") != 0 ||
	    csa_id_check(name + 2, len - 7, NULL))
		return 0;
	return len - 7;
}

int csa_mesh_doc_path(const struct csa_ws *ws, int kind, const char *id, char *out, size_t outsz,
                      struct csa_err *err)
{
	int rc = csa_id_check(id, strlen(id), err);
	if (rc)
		return rc;
	int n = snprintf(out, outsz, "%s/%s/%c_%s.json", ws->root, kind_dir[kind],
	                 kind_letter[kind], id);
	if (n < 0 || (size_t)n >= outsz)
		return csa_error(err, CSA_ELIMIT, "path of ticket '%s' too long", id);
	return CSA_OK;
}

static void tmp_path(const struct mesh *m, int kind, const char *id, char *out, size_t outsz)
{
	snprintf(out, outsz, "%s/%c_%s.json", m->tmp_dir, kind_letter[kind], id);
}

/* The two paths below are built for every document of every commit, so
 * without printf (a few microseconds a commit). */
static char *put_bytes(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

static void pool_path(const struct mesh *m, size_t slot, char *out, size_t outsz)
{
	char num[24];
	size_t i = sizeof(num);
	do
		num[--i] = (char)('0' + slot % 10);
	while ((slot /= 10) && i > 0);
	size_t dl = strlen(m->pool_dir), nl = sizeof(num) - i;
	if (dl + nl + 2 > outsz) {
		snprintf(out, outsz, "%s/%.*s", m->pool_dir, (int)nl, num + i); /* cut, fails */
		return;
	}
	char *p = put_bytes(out, m->pool_dir, dl);
	*p++ = '/';
	p = put_bytes(p, num + i, nl);
	*p = '\0';
}

/* csa_mesh_doc_path of a document whose id was checked (prepare did). */
static void doc_path(const struct mesh *m, int kind, const char *id, char *out)
{
	const char *root = m->ws->root, *dir = kind_dir[kind];
	size_t rl = strlen(root), dl = strlen(dir), il = strlen(id);
	if (rl + dl + il + 10 > PATH_SZ) {
		(void)csa_mesh_doc_path(m->ws, kind, id, out, PATH_SZ, NULL);
		return;
	}
	char *p = put_bytes(out, root, rl);
	*p++ = '/';
	p = put_bytes(p, dir, dl);
	*p++ = '/';
	*p++ = kind_letter[kind];
	*p++ = '_';
	p = put_bytes(p, id, il);
	memcpy(p, ".json", 6);
}

/* Readers that keep opening a file that a commit moved away give up after
 * this many attempts (each one sees a newer commit of the document). */
#define READ_ATTEMPTS 1000

/*
 * Read a ticket document, with or without the ticket's lock.
 *
 * A commit swaps its new file in (RENAME_EXCHANGE, see write_pool), and
 * the file it replaces goes to the pool, where a later commit rewrites it
 * for any document: a reader that opened that file before the swap must
 * not read it then. So a reader takes a shared OFD lock on the whole file
 * it opened (a commit claims a pool file only with an exclusive lock, and
 * never waits: a file someone reads is skipped), and, holding it, checks
 * that the file is still the one at the path. Then the file holds the
 * document as its last commit wrote it, and nothing rewrites it before the
 * reader closes it. A file that moved meanwhile is opened again by name.
 */
static int read_doc(struct mesh *m, const char *path, size_t max, char **buf, size_t *len,
                    struct csa_err *err)
{
	(void)m;
	for (int attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT)
				return csa_error(err, CSA_ENOENT, "'%s' does not exist", path);
			return csa_error_sys(err, "cannot open '%s'", path);
		}
#ifdef CSA_TESTING
		if (m->after_open)
			m->after_open(m->after_open_ctx);
#endif
		struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
		struct csa_fs_ident at_fd, at_path;
		if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
			int e = errno;
			close(fd);
			if (e != EAGAIN && e != EACCES && e != EINTR) {
				errno = e;
				return csa_error_sys(err, "cannot lock '%s' to read it", path);
			}
		} else if (csa_fs_ident_fd(fd, &at_fd) == 0 && csa_fs_ident_path(path, &at_path) == 0 &&
		           at_fd.ino == at_path.ino && at_fd.dev == at_path.dev) {
			int rc = csa_fs_read_fd(fd, path, max, buf, len, err);
			close(fd); /* releases the lock */
			return rc;
		} else {
			close(fd);
		}
		if (attempt >= 8)
			sched_yield(); /* a commit is between swap and unlock */
	}
	return csa_error(err, CSA_EBUSY, "'%s' changed %d times while being read", path,
	                 READ_ATTEMPTS);
}

static int read_json(struct mesh *m, const char *path, size_t max, json_t **out,
                     struct csa_err *err)
{
	char *buf;
	size_t len;
	int rc = read_doc(m, path, max, &buf, &len, err);
	if (rc)
		return rc;
	rc = csa_json_parse(buf, len, path, out, err);
	free(buf);
	return rc;
}

/* ---- locks ---------------------------------------------------------- */

/* Lock offset of a ticket: FNV-1a 64 over the id, kept positive and away
 * from 0 (the journal lock). Collisions are practically impossible. */
static off_t ticket_slot(const char *id)
{
	return (off_t)((csa_fnv1a_str(CSA_FNV_SEED_V1, id) >> 2) | 1);
}

static int ofd_lock(int fd, off_t off, short type)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = off, .l_len = 1};
	while (fcntl(fd, F_OFD_SETLKW, &fl) < 0)
		if (errno != EINTR)
			return -1;
	return 0;
}

static int lock_ticket(struct mesh *m, const char *id, short type, struct csa_lock **out,
                       struct csa_err *err)
{
	int rc = csa_id_check(id, strlen(id), err);
	if (rc)
		return rc;
	/* an observer's lock is shared: it keeps a writer out just the same,
	 * and needs only read access (the data may be mounted read-only) */
	if (m->observe)
		type = F_RDLCK;
	int fd = open(m->lock_path, (m->observe ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0)
		return csa_error_sys(err, "cannot open lock file '%s'", m->lock_path);
	if (ofd_lock(fd, ticket_slot(id), type) < 0) {
		rc = csa_error_sys(err, "cannot lock ticket '%s'", id);
		close(fd);
		return rc;
	}
	struct csa_lock *lk = malloc(sizeof(*lk));
	if (!lk) {
		close(fd);
		return csa_error(err, CSA_ENOMEM, "out of memory locking '%s'", id);
	}
	lk->fd = fd;
	*out = lk;
	return CSA_OK;
}

static int mesh_lock(struct csa_store *st, const char *id, struct csa_lock **out,
                     struct csa_err *err)
{
	return lock_ticket((struct mesh *)st, id, F_WRLCK, out, err);
}

static void mesh_unlock(struct csa_lock *lk)
{
	if (!lk)
		return;
	close(lk->fd); /* releases the OFD lock */
	free(lk);
}

static void journal_unlock(struct mesh *m)
{
	struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
	(void)fcntl(m->lock_fd, F_OFD_SETLK, &fl);
	pthread_mutex_unlock(&m->mu);
}

/* Open the journal or the lock file, created when missing; an observer
 * opens it read-only, and creates it only when no writer ever did (an
 * empty file, no ticket written; on a read-only mount that fails). */
static int open_store_file(const char *path, int observe)
{
	if (observe) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 || errno != ENOENT)
			return fd;
	}
	return open(path, O_RDWR | O_CREAT | O_CLOEXEC, CSA_FILE_MODE);
}

/* Open .csa/journal as journal_fd (closing the one before) and note its
 * identity. */
static int journal_reopen(struct mesh *m, struct csa_err *err)
{
	int fd = open_store_file(m->journal_path, m->observe);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		int rc = csa_error_sys(err, "cannot open journal '%s'", m->journal_path);
		if (fd >= 0)
			close(fd);
		return rc;
	}
	if (m->journal_fd >= 0)
		close(m->journal_fd);
	m->journal_fd = fd;
	m->journal_dev = st.st_dev;
	m->journal_ino = st.st_ino;
	m->journal_size = st.st_size;
	return CSA_OK;
}

/* Take the journal lock and read .csa/lock's header (m->lh). A checkpoint
 * of another handle may have replaced the journal file meanwhile; records
 * must go to the current one. */
static int journal_lock(struct mesh *m, struct csa_err *err)
{
	pthread_mutex_lock(&m->mu);
	if (ofd_lock(m->lock_fd, 0, F_WRLCK) < 0) {
		pthread_mutex_unlock(&m->mu);
		return csa_error_sys(err, "cannot lock journal '%s'", m->lock_path);
	}
	lhdr_read(m, &m->lh);
	/* Another handle replaces the journal file only in trim_tail_locked,
	 * which bumps the trim counter (or, dying half way, leaves generation
	 * 0): only then is the name looked up again. A look-up per commit
	 * would cost more than its system call: once a file's timestamps were
	 * read, ext4 takes the next write's at fine grain, and so marks the
	 * journal's inode dirty at every append instead of once a tick. */
	if (m->lh.trims != m->ident_trims || m->lh.gen == 0) {
		struct stat st;
		if (stat(m->journal_path, &st) != 0 || st.st_dev != m->journal_dev ||
		    st.st_ino != m->journal_ino) {
			int rc = journal_reopen(m, err);
			if (rc) {
				journal_unlock(m);
				return rc;
			}
		}
		m->ident_trims = m->lh.trims;
	}
	/* No generation: a new lock file, or a handle that was rewriting the
	 * journal's header failed or died; either way the journal's state is
	 * read again from the file before anything is appended. */
	if (!m->observe && (m->lh.gen == 0 || m->lh.end < CSA_JOURNAL_HDR || m->lh.busy))
		m->needs_recovery = 1;
	return CSA_OK;
}

/* The size limits in effect (a copy: the configuration may change). */
static struct csa_limits limits_now(const struct mesh *m)
{
	const struct csa_config *cfg = csa_ws_config(m->ws);
	struct csa_limits l = cfg->limits;
	csa_config_unref(cfg);
	return l;
}

/* ---- load ----------------------------------------------------------- */

static int load_docs(struct mesh *m, const char *id, struct csa_ticket *tk, struct csa_err *err)
{
	memset(tk, 0, sizeof(*tk));
	char path[PATH_SZ];
	int rc;
	json_t **slots[3] = {&tk->e, &tk->i, &tk->t};
	size_t max_doc = limits_now(m).max_document_bytes;
	/* T first: a ticket exists when its workflow file does. */
	static const int order[3] = {2, 0, 1};
	for (int n = 0; n < 3; n++) {
		int k = order[n];
		if ((rc = csa_mesh_doc_path(m->ws, k, id, path, sizeof(path), err)))
			goto fail;
		char *buf;
		size_t len;
		rc = read_doc(m, path, max_doc, &buf, &len, err);
		if (rc == CSA_ENOENT) {
			if (k == 2)
				csa_error(err, CSA_ENOENT, "no ticket '%s'", id);
			else
				rc = csa_error(err, CSA_ECORRUPT,
				               "ticket '%s': '%s' is missing (run 'csa verify')",
				               id, path);
			goto fail;
		}
		if (rc)
			goto fail;
		tk->loaded[k] = buf;
		tk->loaded_len[k] = len;
		if ((rc = csa_json_parse(buf, len, path, slots[k], err)))
			goto fail;
		if ((rc = csa_schema_check((enum csa_doc_kind)k, id, *slots[k], err)))
			goto fail;
	}
	memcpy(tk->id, id, strlen(id) + 1);
	tk->exists = 1;
	return CSA_OK;
fail:
	csa_ticket_release(tk);
	return rc;
}

static int mesh_load_locked(struct csa_store *st, const char *id, struct csa_ticket *out,
                            struct csa_err *err)
{
	struct mesh *m = (struct mesh *)st;
	int rc = csa_id_check(id, strlen(id), err);
	return rc ? rc : load_docs(m, id, out, err);
}

static int mesh_load(struct csa_store *st, const char *id, struct csa_ticket *out,
                     struct csa_err *err)
{
	struct mesh *m = (struct mesh *)st;
	struct csa_lock *lk;
	int rc = lock_ticket(m, id, F_RDLCK, &lk, err);
	if (rc)
		return rc;
	rc = load_docs(m, id, out, err);
	mesh_unlock(lk);
	return rc;
}

/* ---- checkpoint and recovery ---------------------------------------- */

/*
 * .csa/lock's header (struct lhdr), mapped into memory when the file can
 * hold it (lhdr_map): every commit reads it and writes the append offset,
 * and two system calls (with a timestamp update of the lock file for the
 * write) were a few percent of a commit's CPU. Otherwise, for an observer
 * of a lock file shorter than a page, read with pread; a short read (a lock
 * file of an older csa holds the trim counter only, a new one nothing)
 * gives zeros, which journal_lock takes for "recover first".
 */
#define LHDR_MAP_LEN 4096

static void lhdr_map(struct mesh *m)
{
	struct stat st;
	if (fstat(m->lock_fd, &st) < 0)
		return;
	/* the page must be inside the file (a store past its end is lost, a
	 * load from a page wholly past it is SIGBUS); the zeros it gains are
	 * an empty header, or after an older csa's trim counter */
	if (st.st_size < LHDR_MAP_LEN && (m->observe || ftruncate(m->lock_fd, LHDR_MAP_LEN) < 0))
		return;
	void *p = mmap(NULL, LHDR_MAP_LEN, m->observe ? PROT_READ : PROT_READ | PROT_WRITE,
	               MAP_SHARED, m->lock_fd, 0);
	if (p != MAP_FAILED)
		m->lh_map = p;
}

static uint64_t lhdr_load(const struct mesh *m, int i)
{
	return __atomic_load_n(&m->lh_map[i], __ATOMIC_ACQUIRE);
}

static void lhdr_read(struct mesh *m, struct lhdr *h)
{
	uint64_t v[4] = {0, 0, 0, 0};
	if (m->lh_map) {
		for (int i = 0; i < 4; i++)
			v[i] = lhdr_load(m, i);
	} else {
		ssize_t n = pread(m->lock_fd, v, sizeof(v), 0);
		if (n < (ssize_t)sizeof(v))
			memset((char *)v + (n > 0 ? n : 0), 0, sizeof(v) - (size_t)(n > 0 ? n : 0));
	}
	*h = (struct lhdr){v[0], v[1], v[2], v[3]};
}

/* Store words [i, i + n) of the header. 0 or -1 (errno). */
static int lhdr_store(struct mesh *m, int i, const uint64_t *v, int n)
{
	if (m->lh_map) {
		for (int k = 0; k < n; k++)
			__atomic_store_n(&m->lh_map[i + k], v[k], __ATOMIC_RELEASE);
		return 0;
	}
	size_t len = (size_t)n * sizeof(*v);
	return pwrite(m->lock_fd, v, len, (off_t)i * 8) == (ssize_t)len ? 0 : -1;
}

/* Journal trims so far, by any handle (only live processes coordinate
 * through it): a checkpoint that synced outside the lock trims only if no
 * other trim came in between, since the journal's end it noted would mean
 * nothing after one. 0 or -1 when the counter could not be written: then
 * the other handles would not see the checkpoint, and the caller leaves the
 * generation at 0 so that they recover instead. */
static int trims_bump(struct mesh *m)
{
	struct lhdr h;
	lhdr_read(m, &h);
	uint64_t v = h.trims + 1;
	m->lh.trims = v;
	if (lhdr_store(m, 0, &v, 1) < 0) {
		m->needs_recovery = 1; /* next commit syncs and trims under the lock */
		return -1;
	}
	return 0;
}

/* Publish the journal's generation and append offset (struct lhdr), and
 * whether a commit is between its record and the end of its swaps. 0 or
 * an error (only when the header is not mapped and pwrite fails). */
static int publish_busy(struct mesh *m, uint64_t gen, off_t end, int busy, struct csa_err *err)
{
	uint64_t v[3] = {gen, (uint64_t)end, (uint64_t)busy};
	m->lh.gen = gen;
	m->lh.end = (uint64_t)end;
	m->lh.busy = (uint64_t)busy;
	if (lhdr_store(m, 1, v, 3) < 0) {
		m->needs_recovery = 1;
		return csa_error_sys(err, "cannot write lock file '%s'", m->lock_path);
	}
	return CSA_OK;
}

static int publish(struct mesh *m, uint64_t gen, off_t end, struct csa_err *err)
{
	return publish_busy(m, gen, end, 0, err);
}

/* A journal that a burst of commits (or a large group commit) made larger
 * than this is cut back to it by the next checkpoint that can start over
 * from the first record: at most twice the checkpoint interval, at least
 * 1 MB (so small test intervals still leave older records to skip). */
static off_t journal_bound(const struct mesh *m)
{
	off_t b = (off_t)m->checkpoint_bytes * 2;
	return b < (off_t)(1 << 20) ? (off_t)(1 << 20) : b;
}

/*
 * Start a new generation in place: the documents of every record up to
 * m->lh.end are durable (the caller synced them), so none is needed. The
 * header's new generation makes all of them stale at once, and the next
 * commit writes over them from the first record's offset. Until the new
 * header is on disk the lock header says generation 0: a handle that
 * takes the lock after this one failed or died half way recovers first
 * (from whichever header the file then has: both are right). The file
 * keeps its length, so later appends overwrite written blocks and their
 * fdatasync has no inode to flush; a file grown past journal_bound() is
 * cut back here. Caller holds the journal lock.
 */
static int wrap_locked(struct mesh *m, struct csa_err *err)
{
	struct jpos before = {(off_t)m->lh.end, m->lh.trims};
	uint64_t gen = m->lh.gen + 1;
	int rc = publish(m, 0, (off_t)m->lh.end, err);
	if (rc)
		return rc;
	off_t bound = journal_bound(m);
	struct stat st;
	if (fstat(m->journal_fd, &st) == 0 && st.st_size > bound &&
	    ftruncate(m->journal_fd, bound) == 0)
		st.st_size = bound; /* flushed with the header below */
	m->journal_size = st.st_size;
	if ((rc = csa_journal_header_write(m->journal_fd, m->journal_path, gen, m->sync, err))) {
		m->needs_recovery = 1; /* and lh.gen 0 tells every other handle */
		return rc;
	}
	if (trims_bump(m) < 0)
		return csa_error_sys(err, "cannot write lock file '%s'", m->lock_path);
	m->size_trims = m->lh.trims;
	if ((rc = publish(m, gen, CSA_JOURNAL_HDR, err)))
		return rc;
	struct jpos after = {CSA_JOURNAL_HDR, m->lh.trims};
	mark_follow(m, &before, &after);
	return CSA_OK;
}

/*
 * Drop the records before 'upto', whose documents are durable, and keep
 * those after it (of commits made while the file system was syncing): they
 * go to a new journal file, .csa/journal.new, of the same generation,
 * fsynced and renamed over the journal, whose header and records are then
 * the only ones. A crash before the rename is durable leaves the old
 * file, whose replay is harmless. Other handles see the new file by its
 * identity (journal_lock). Caller holds the journal lock.
 */
static int trim_tail_locked(struct mesh *m, off_t upto, struct csa_err *err)
{
	struct jpos before = {(off_t)m->lh.end, m->lh.trims};
	uint64_t gen = m->lh.gen;
	off_t end = (off_t)m->lh.end;
	size_t len = (size_t)(end - upto);
	char *buf = malloc(CSA_JOURNAL_HDR + len);
	if (!buf)
		return csa_error(err, CSA_ENOMEM, "out of memory trimming journal '%s'",
		                 m->journal_path);
	int rc = CSA_OK;
	int fd = -1;
	csa_journal_header_fill(buf, gen);
	if (pread(m->journal_fd, buf + CSA_JOURNAL_HDR, len, upto) != (ssize_t)len) {
		rc = csa_error_sys(err, "cannot read journal '%s'", m->journal_path);
		goto out;
	}
	fd = csa_fs_open(m->journal_new, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, CSA_FILE_MODE);
	if (fd < 0) {
		rc = csa_error_sys(err, "cannot create '%s'", m->journal_new);
		goto out;
	}
	if (csa_fs_write_all(fd, buf, CSA_JOURNAL_HDR + len) < 0 ||
	    (m->sync && csa_fs_fsync(fd, 1) < 0)) {
		rc = csa_error_sys(err, "cannot write '%s'", m->journal_new);
		goto out;
	}
	/* from the rename on, the lock header's end means nothing in the file
	 * at the journal's name until it is published below */
	if ((rc = publish(m, 0, end, err)))
		goto out;
	if (csa_fs_rename(m->journal_new, m->journal_path) < 0) {
		rc = csa_error_sys(err, "cannot rename '%s' to '%s'", m->journal_new,
		                   m->journal_path);
		m->needs_recovery = 1;
		goto out;
	}
	close(fd);
	fd = -1;
	if (trims_bump(m) < 0) {
		rc = csa_error_sys(err, "cannot write lock file '%s'", m->lock_path);
		goto out; /* generation 0: every handle looks the journal up again */
	}
	/* the records of the tail are only in the new file: it must be the
	 * journal on disk before another commit counts on it */
	char dir[PATH_SZ];
	snprintf(dir, sizeof(dir), "%s/.csa", m->ws->root);
	rc = journal_reopen(m, err);
	if (rc == CSA_OK && m->sync && csa_fs_fsync_dir(dir) < 0)
		rc = csa_error_sys(err, "cannot fsync directory '%s'", dir);
	if (rc == CSA_OK)
		rc = publish(m, gen, CSA_JOURNAL_HDR + (off_t)len, err);
	if (rc) {
		m->needs_recovery = 1; /* recovery syncs everything again */
		goto out;
	}
	m->size_trims = m->lh.trims;
	struct jpos after = {CSA_JOURNAL_HDR + (off_t)len, m->lh.trims};
	mark_follow(m, &before, &after);
out:
	if (fd >= 0) {
		close(fd);
		unlink(m->journal_new);
	}
	free(buf);
	return rc;
}

/* Make the documents of every record durable and start a new generation.
 * Caller holds the journal lock; m->lh is the journal's state. */
static int checkpoint_locked(struct mesh *m, struct csa_err *err)
{
	if (m->lh.end <= CSA_JOURNAL_HDR)
		return CSA_OK;
	/* Every document the journal covers was swapped into place before
	 * its commit returned; syncfs makes those files and directory
	 * entries durable, after which the journal is no longer needed. */
	if (m->sync && syncfs(m->journal_fd) < 0)
		return csa_error_sys(err, "cannot sync the file system of '%s'", m->ws->root);
	int rc = wrap_locked(m, err);
	if (rc == CSA_OK)
		m->stats.checkpoints++;
	return rc;
}

/* A checkpoint that does not hold commits up: the journal's end is noted
 * under the lock, the file system synced without it (commits go on
 * appending), and only the records up to that end are dropped: in place
 * when no commit came meanwhile, else by moving the later ones to a new
 * file (trim_tail_locked). */
static int checkpoint_unlocked(struct mesh *m, struct csa_err *err)
{
	int rc = journal_lock(m, err);
	if (rc)
		return rc;
	off_t upto = (off_t)m->lh.end;
	uint64_t trims = m->lh.trims;
	journal_unlock(m);
	if (upto <= CSA_JOURNAL_HDR)
		return CSA_OK;
	/* every record up to 'upto' had its documents swapped into place
	 * before its commit released the lock, so syncfs covers them (through
	 * the lock file: journal_fd may be replaced meanwhile) */
	if (m->sync && syncfs(m->lock_fd) < 0)
		return csa_error_sys(err, "cannot sync the file system of '%s'", m->ws->root);
#ifdef CSA_TESTING
	if (m->after_sync)
		m->after_sync(m->after_sync_ctx);
#endif
	if ((rc = journal_lock(m, err)))
		return rc;
	if (m->lh.trims == trims && !m->needs_recovery) {
		rc =
		    (off_t)m->lh.end == upto ? wrap_locked(m, err) : trim_tail_locked(m, upto, err);
		if (rc == CSA_OK)
			m->stats.checkpoints++;
	}
	journal_unlock(m);
	return rc;
}

struct replay_doc {
	char id[CSA_ID_MAX + 1];
	int kind;
	size_t seq;
	char *doc;
	size_t len;
};

struct replay {
	struct replay_doc *v;
	size_t n, cap;
};

static int replay_collect(void *ctx, const struct csa_jentry *e)
{
	struct replay *r = ctx;
	if (e->id_len == 0 || e->id_len > CSA_ID_MAX ||
	    csa_id_check(e->id, e->id_len, NULL) != CSA_OK)
		return CSA_OK; /* cannot come from a commit; skip */
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct replay_doc *nv = realloc(r->v, cap * sizeof(*nv));
		if (!nv)
			return CSA_ENOMEM;
		r->v = nv;
		r->cap = cap;
	}
	struct replay_doc *d = &r->v[r->n];
	memcpy(d->id, e->id, e->id_len);
	d->id[e->id_len] = '\0';
	d->kind = e->kind;
	d->seq = r->n;
	d->len = e->doc_len;
	d->doc = malloc(e->doc_len ? e->doc_len : 1);
	if (!d->doc)
		return CSA_ENOMEM;
	memcpy(d->doc, e->doc, e->doc_len);
	r->n++;
	return CSA_OK;
}

static int replay_cmp(const void *a, const void *b)
{
	const struct replay_doc *x = a, *y = b;
	int c = strcmp(x->id, y->id);
	if (c)
		return c;
	if (x->kind != y->kind)
		return x->kind - y->kind;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Write 'doc' to the document's place unless it already holds exactly
 * those bytes. Returns 1 if written, 0 if unchanged, <0 on error. */
static int put_doc(struct mesh *m, int kind, const char *id, const char *doc, size_t len,
                   struct csa_err *err)
{
	char path[PATH_SZ], tmp[PATH_SZ];
	int rc = csa_mesh_doc_path(m->ws, kind, id, path, sizeof(path), err);
	if (rc)
		return rc;
	char *old = NULL;
	size_t old_len = 0;
	if (csa_fs_read_all(path, len + 1, &old, &old_len, NULL) == CSA_OK) {
		int same = old_len == len && memcmp(old, doc, len) == 0;
		free(old);
		if (same)
			return 0;
	}
	tmp_path(m, kind, id, tmp, sizeof(tmp));
	int fd = csa_fs_open(tmp, O_WRONLY | O_CREAT | O_TRUNC, CSA_FILE_MODE);
	if (fd < 0)
		return csa_error_sys(err, "cannot create '%s'", tmp);
	if (csa_fs_write_all(fd, doc, len) < 0) {
		rc = csa_error_sys(err, "cannot write '%s'", tmp);
		close(fd);
		unlink(tmp);
		return rc;
	}
	close(fd);
	if (csa_fs_rename(tmp, path) < 0) {
		rc = csa_error_sys(err, "cannot rename '%s' to '%s'", tmp, path);
		unlink(tmp);
		return rc;
	}
	return 1;
}

static int clean_tmp(struct mesh *m)
{
	DIR *d = opendir(m->tmp_dir);
	if (!d)
		return 0;
	struct dirent *de;
	char path[PATH_SZ];
	int removed = 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", m->tmp_dir, de->d_name);
		if (unlink(path) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}

/* Start the journal afresh, in the current format, once nothing in it is
 * needed: a new workspace's empty file, a workspace written by an older
 * csa (records without generations, already replayed: 'replayed'), or a
 * header torn by a crash while it was rewritten (written only when no
 * record was needed). Truncated first, so no record of any generation is
 * left in it. Caller holds the journal lock. */
static int reinit_locked(struct mesh *m, int replayed, struct csa_err *err)
{
	if (replayed && m->sync && syncfs(m->journal_fd) < 0)
		return csa_error_sys(err, "cannot sync the file system of '%s'", m->ws->root);
	struct jpos before = {(off_t)m->lh.end, m->lh.trims};
	/* any generation will do in a file with no record; one past the lock
	 * header's keeps the stamps of marks taken before apart */
	uint64_t gen = m->lh.gen + 1;
	int rc = publish(m, 0, CSA_JOURNAL_HDR, err);
	if (rc)
		return rc;
	if (ftruncate(m->journal_fd, 0) < 0)
		return csa_error_sys(err, "cannot truncate journal '%s'", m->journal_path);
	if ((rc = csa_journal_header_write(m->journal_fd, m->journal_path, gen, 0, err)))
		return rc;
	if (m->sync && csa_fs_fsync(m->journal_fd, 0) < 0)
		return csa_error_sys(err, "cannot fsync journal '%s'", m->journal_path);
	m->journal_size = CSA_JOURNAL_HDR;
	if (trims_bump(m) < 0)
		return csa_error_sys(err, "cannot write lock file '%s'", m->lock_path);
	m->size_trims = m->lh.trims;
	if ((rc = publish(m, gen, CSA_JOURNAL_HDR, err)))
		return rc;
	struct jpos after = {CSA_JOURNAL_HDR, m->lh.trims};
	mark_follow(m, &before, &after);
	return CSA_OK;
}

/* Bring every ticket in the journal to its last record, then checkpoint.
 * Caller holds the journal lock. */
static int recover_locked(struct mesh *m, struct csa_err *err)
{
	struct replay r = {0};
	enum csa_jformat fmt;
	uint64_t gen;
	off_t size, valid_end = 0, torn = 0;
	int rc = csa_journal_header_read(m->journal_fd, m->journal_path, &fmt, &gen, &size, err);
	if (rc)
		goto out;
	rc = csa_journal_scan(m->journal_fd, m->journal_path, fmt, gen, replay_collect, &r,
	                      &valid_end, &torn, err);
	if (rc == CSA_ENOMEM)
		csa_error(err, rc, "out of memory replaying journal '%s'", m->journal_path);
	if (rc)
		goto out;
	/* A torn tail: its commit never returned. In the reused file it is
	 * simply written over (v1 and torn headers: the file is started
	 * afresh below). */
	if (fmt == CSA_JFMT_V1)
		torn = size - valid_end;
	else if (fmt == CSA_JFMT_TORN)
		torn = size;
	m->stats.torn_bytes += (long)torn;
	if (r.n)
		qsort(r.v, r.n, sizeof(*r.v), replay_cmp);
	for (size_t i = 0; i < r.n; i++) {
		if (i + 1 < r.n && strcmp(r.v[i].id, r.v[i + 1].id) == 0 &&
		    r.v[i].kind == r.v[i + 1].kind)
			continue; /* a later record wins */
		int w = put_doc(m, r.v[i].kind, r.v[i].id, r.v[i].doc, r.v[i].len, err);
		if (w < 0) {
			rc = w;
			goto out;
		}
		m->stats.recovered_docs += w;
	}
	m->stats.tmp_removed += clean_tmp(m);
	if (unlink(m->journal_new) == 0) /* of a trim cut short */
		m->stats.tmp_removed++;
	if (fmt != CSA_JFMT_V2) {
		rc = reinit_locked(m, r.n > 0, err);
	} else {
		if (m->lh.gen != gen || (off_t)m->lh.end != valid_end || m->lh.busy) {
			/* The lock header is not the journal's: a new lock file,
			 * a machine restarted, a handle that died or failed while
			 * it rewrote the header (gen 0) or swapped a commit's
			 * documents in (busy, now completed above). With no record to
			 * checkpoint, the header is written again so that it
			 * is on disk even if the failed write left its page
			 * marked clean. */
			if (valid_end == CSA_JOURNAL_HDR &&
			    (rc = csa_journal_header_write(m->journal_fd, m->journal_path, gen,
			                                   m->sync, err)))
				goto out;
			if ((rc = publish(m, gen, valid_end, err)))
				goto out;
		}
		rc = checkpoint_locked(m, err);
	}
	if (rc == CSA_OK)
		m->needs_recovery = 0;
out:
	for (size_t i = 0; i < r.n; i++)
		free(r.v[i].doc);
	free(r.v);
	return rc;
}

/* ---- commit --------------------------------------------------------- */

struct pending {
	struct csa_ticket *tk;
	int kind;
	char *bytes; /* new document */
	size_t len;
	int written; /* written to its pool file (in place for a scratch store) */
	int renamed; /* in place */
	size_t slot; /* its pool file (pool_path) */
	int pool_fd; /* that file, locked exclusively until swapped in; -1 */
};

static int prepare(struct mesh *m, struct csa_ticket *tk, unsigned docs, const char *ts,
                   struct pending *p, struct csa_jbuf *jb, struct csa_err *err)
{
	struct csa_limits limits = limits_now(m);
	char *bytes[3];
	size_t len[3];
	int rc = csa_ticket_prepare_commit(tk, docs, ts, &limits, bytes, len, err);
	if (rc)
		return rc;
	for (int k = 0; k < 3; k++)
		p[k] = (struct pending){
		    .tk = tk, .kind = k, .bytes = bytes[k], .len = len[k], .pool_fd = -1};
	for (int k = 0; k < 3; k++)
		if (csa_jbuf_add(jb, k, tk->id, bytes[k], len[k]))
			return csa_error(err, CSA_ENOMEM, "cannot journal ticket '%s'", tk->id);
	return CSA_OK;
}

/*
 * Write a document into a file of the pool, to be swapped in once the
 * commit is in the journal (rename_batch). The pool keeps the files that
 * commits swapped out, so a commit reuses an inode instead of creating
 * one per document: creating and freeing an inode per document per
 * commit was most of a commit's time (docs/STORE.md). Called under the
 * journal lock, so no other commit claims pool files at the same time;
 * *next is the batch's next slot to try.
 *
 * A file is claimed with an exclusive OFD lock taken without waiting: one
 * a reader still holds (it opened it as a document before the swap,
 * read_doc) is skipped and left to it. A file with another name besides
 * its pool one (a backup's hard link to a document it keeps) is left to
 * that name: the slot gets a new file.
 */
static int write_pool(struct mesh *m, struct pending *p, size_t *next, struct csa_err *err)
{
	char path[PATH_SZ];
	for (;;) {
		pool_path(m, *next, path, sizeof(path));
		int fd = csa_fs_open(path, O_RDWR | O_CREAT, CSA_FILE_MODE);
		if (fd < 0)
			return csa_error_sys(err, "cannot open pool file '%s'", path);
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
		struct csa_fs_ident st;
		if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
			int e = errno;
			close(fd);
			if (e != EAGAIN && e != EACCES) {
				errno = e;
				return csa_error_sys(err, "cannot lock pool file '%s'", path);
			}
			(*next)++; /* being read */
			continue;
		}
		if (csa_fs_ident_fd(fd, &st) < 0) {
			int rc = csa_error_sys(err, "cannot stat pool file '%s'", path);
			close(fd);
			return rc;
		}
		if (st.nlink > 1) {
			close(fd);
			if (csa_fs_unlink(path) < 0 && errno != ENOENT)
				return csa_error_sys(err, "cannot unlink pool file '%s'", path);
			continue; /* the same slot, as a new file */
		}
		p->slot = (*next)++;
		p->pool_fd = fd;
		p->written = 1;
		/* cut only what an older, longer document leaves after the new
		 * one (documents mostly grow: most commits need no truncate) */
		if (csa_fs_write_all(fd, p->bytes, p->len) < 0 ||
		    (st.size > (off_t)p->len && ftruncate(fd, (off_t)p->len) < 0))
			return csa_error_sys(err, "cannot write pool file '%s'", path);
		return CSA_OK;
	}
}

/* Let go of the pool files a commit still holds. */
static void pool_release(struct pending *p, size_t n)
{
	for (size_t j = 0; j < n; j++)
		if (p[j].pool_fd >= 0) {
			close(p[j].pool_fd);
			p[j].pool_fd = -1;
		}
}

/* Put pending document p into place: swapped with the file there, which
 * goes to p's pool slot (whole, as its last commit wrote it), or renamed
 * there for a document that does not exist yet. */
static int swap_in(struct mesh *m, struct pending *p, const char *path)
{
	char from[PATH_SZ];
	pool_path(m, p->slot, from, sizeof(from));
	if (p->tk->exists && !m->no_exchange) {
		if (csa_fs_exchange(from, path) == 0)
			goto done;
		if (errno == EINVAL || errno == ENOSYS)
			m->no_exchange = 1; /* not this file system: rename, as new files */
		else if (errno != ENOENT)
			return -1;
	}
	if (csa_fs_rename(from, path) < 0)
		return -1;
done:
	close(p->pool_fd); /* readers may lock it now */
	p->pool_fd = -1;
	return 0;
}

/*
 * A scratch workspace's document, written over the old file in place once
 * the commit's record is in the journal: no new inode per document per
 * commit, so no old one freed. On a file system that discards freed
 * blocks at once (ext4 mounted with discard) those discards, one disk
 * round trip each, were most of what a replay waited for after its
 * fdatasyncs went. The price: a reader that does not take the ticket's
 * lock (load_doc, scan) may see a half-written file during a commit, which
 * a scratch workspace's one user (the replay: one thread commits, and
 * reads between its commits) never does; recovery on open rewrites such a
 * file from the journal after a crash.
 */
static int write_in_place(const char *path, const struct pending *p)
{
	int fd = csa_fs_open(path, O_WRONLY | O_CREAT | O_CLOEXEC, CSA_FILE_MODE);
	if (fd < 0)
		return -1;
	if (csa_fs_write_all(fd, p->bytes, p->len) < 0 || ftruncate(fd, (off_t)p->len) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return close(fd);
}

/* Put back the documents a failed commit had already renamed. 0 if the
 * previous state is fully restored. */
static int undo_renames(struct mesh *m, struct pending *p, size_t n)
{
	int ok = 0;
	char path[PATH_SZ];
	for (size_t j = 0; j < n; j++) {
		if (!p[j].renamed)
			continue; /* its pool file holds nothing anyone reads */
		csa_mesh_doc_path(m->ws, p[j].kind, p[j].tk->id, path, sizeof(path), NULL);
		struct csa_ticket *tk = p[j].tk;
		if (!tk->loaded[p[j].kind]) {
			if (csa_fs_unlink(path) < 0 && errno != ENOENT)
				ok = -1;
			continue;
		}
		struct csa_err e2;
		if (put_doc(m, p[j].kind, tk->id, tk->loaded[p[j].kind], tk->loaded_len[p[j].kind],
		            &e2) < 0)
			ok = -1;
	}
	return ok;
}

/*
 * Group commit. A caller prepares its commit (schema checks, serialised
 * documents, journal entries) on its own, then queues it. If no commit of
 * this handle is running, it leads: it takes every queued commit and runs
 * them together under the journal lock, with one journal record and one
 * fdatasync; otherwise it waits for a leader to run its commit. Under
 * load, commits thus share the disk flush instead of queueing behind one
 * another's. Each commit still succeeds or fails on its own up to the
 * journal write; a failure of the write or of the renames fails them all.
 */
struct creq {
	struct csa_ticket *const *tks;
	size_t n;
	unsigned docs;
	struct pending *p; /* n * 3 */
	struct csa_jbuf jb;
	int rc;
	struct csa_err err;
	int done;
	struct creq *next;
};

static void fail_req(struct creq *r, int rc, const struct csa_err *err)
{
	r->rc = rc;
	r->err = *err;
}

/* A new ticket must not exist on disk, twice in its commit, or in a commit
 * ahead of it in the batch. */
static int check_new(struct mesh *m, const struct creq *batch, const struct creq *r,
                     struct csa_err *err)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct csa_ticket *tk = r->tks[i];
		if (tk->exists)
			continue;
		char path[PATH_SZ];
		struct stat sb;
		csa_mesh_doc_path(m->ws, 2, tk->id, path, sizeof(path), NULL);
		if (stat(path, &sb) == 0)
			return csa_error(err, CSA_EEXIST, "ticket '%s' already exists", tk->id);
		for (size_t k = 0; k < i; k++)
			if (!r->tks[k]->exists && strcmp(r->tks[k]->id, tk->id) == 0)
				return csa_error(err, CSA_EEXIST, "ticket '%s' appears twice",
				                 tk->id);
		for (const struct creq *q = batch; q != r; q = q->next)
			for (size_t k = 0; q->rc == CSA_OK && k < q->n; k++)
				if (!q->tks[k]->exists && strcmp(q->tks[k]->id, tk->id) == 0)
					return csa_error(err, CSA_EEXIST,
					                 "ticket '%s' already exists", tk->id);
	}
	return CSA_OK;
}

/* Only documents that changed are rewritten in place; the journal record
 * carries all three, so recovery restores whole tickets. */
static int write_req(struct mesh *m, struct creq *r, size_t *next_slot, struct csa_err *err)
{
	for (size_t j = 0; j < r->n * 3; j++) {
		struct pending *p = &r->p[j];
		if (!(p->kind == 2 || !p->tk->exists || (r->docs & (1u << p->kind))))
			continue;
		if (!m->sync) {
			p->written = 1; /* written in place by rename_batch */
			continue;
		}
		int rc = write_pool(m, p, next_slot, err);
		if (rc) {
			undo_renames(m, r->p, r->n * 3);
			return rc;
		}
	}
	return CSA_OK;
}

/* Rename every accepted commit's documents into place. On failure, undo
 * them all; 'end' is where the batch's record starts. */
static int rename_batch(struct mesh *m, struct creq *batch, off_t end, struct csa_err *err)
{
	for (struct creq *r = batch; r; r = r->next) {
		for (size_t j = 0; r->rc == CSA_OK && j < r->n * 3; j++) {
			struct pending *p = &r->p[j];
			if (!p->written)
				continue;
			char path[PATH_SZ];
			doc_path(m, p->kind, p->tk->id, path);
			if (m->sync ? swap_in(m, p, path) == 0 : write_in_place(path, p) == 0) {
				p->renamed = 1;
				continue;
			}
			int rc = m->sync ? csa_error_sys(err, "cannot put pool file %zu in place of '%s'",
			                                 p->slot, path)
			                 : csa_error_sys(err, "cannot write '%s'", path);
			p->renamed = !m->sync; /* a torn file: put back what it held */
			int undone = 1;
			for (struct creq *q = batch; q; q = q->next)
				if (q->rc == CSA_OK && undo_renames(m, q->p, q->n * 3) != 0)
					undone = 0;
			/* the end goes back first: a record spoiled while the
			 * end is past it would hide the records after it */
			if (undone && publish(m, m->lh.gen, end, NULL) == CSA_OK &&
			    csa_journal_invalidate(m->journal_fd, end, m->sync) == 0)
				return rc; /* previous state intact */
			/* The journal still holds the commits: recovery completes them. */
			m->needs_recovery = 1;
			csa_error_prefix(err,
			                 "commit not rolled back, recovery will complete it: ");
			return rc;
		}
	}
	return CSA_OK;
}

/* The caller's tickets now hold what is on disk. */
static void committed(struct mesh *m, struct creq *r)
{
	for (size_t j = 0; j < r->n * 3; j++) {
		struct csa_ticket *tk = r->p[j].tk;
		free(tk->loaded[r->p[j].kind]);
		tk->loaded[r->p[j].kind] = r->p[j].bytes;
		tk->loaded_len[r->p[j].kind] = r->p[j].len;
		r->p[j].bytes = NULL;
	}
	for (size_t i = 0; i < r->n; i++)
		r->tks[i]->exists = 1;
	m->stats.commits++;
}

/* Zeros to write after a record that ends past the file's length: the
 * file grows by a chunk at a time (its length doubling up to 1 MB steps),
 * so only the commit that grows it has its fdatasync flush the inode, and
 * the records after it land in blocks already written. Not for a scratch
 * workspace, which never waits for the disk. */
#define GROW_MIN ((off_t)64 << 10)
#define GROW_MAX ((off_t)1 << 20)
static size_t grow_pad(struct mesh *m, off_t end, size_t len)
{
	off_t need = end + (off_t)len;
	if (!m->sync || need <= m->journal_size)
		return 0;
	struct stat st;
	if (fstat(m->journal_fd, &st) == 0)
		m->journal_size = st.st_size; /* another handle may have grown it */
	if (need <= m->journal_size)
		return 0;
	off_t step = m->journal_size < GROW_MIN   ? GROW_MIN
	             : m->journal_size > GROW_MAX ? GROW_MAX
	                                          : m->journal_size;
	off_t target = (need + step + GROW_MIN - 1) / GROW_MIN * GROW_MIN;
	return (size_t)(target - need);
}

/* Run a batch of queued commits; returns 1 if a checkpoint is due. */
static int commit_batch(struct mesh *m, struct creq *batch)
{
	struct csa_err err = {0};
	struct csa_jbuf jb;
	csa_jbuf_init(&jb);
#ifdef CSA_TESTING
	if (m->before_batch)
		m->before_batch(m->before_batch_ctx);
#endif
	int rc = journal_lock(m, &err), checkpoint = 0;
	if (rc == CSA_OK && m->needs_recovery && (rc = recover_locked(m, &err)))
		journal_unlock(m);
	if (rc) {
		for (struct creq *r = batch; r; r = r->next)
			fail_req(r, rc, &err);
		return 0;
	}
	size_t accepted = 0, next_slot = 0;
	for (struct creq *r = batch; r; r = r->next) {
		if ((r->rc = check_new(m, batch, r, &r->err)) ||
		    (r->rc = write_req(m, r, &next_slot, &r->err)))
			continue;
		if (csa_jbuf_merge(&jb, &r->jb)) {
			undo_renames(m, r->p, r->n * 3);
			r->rc = csa_error(&r->err, CSA_ENOMEM, "out of memory committing '%s'",
			                  r->tks[0]->id);
			continue;
		}
		accepted++;
	}
	if (!accepted)
		goto out;
	m->stats.batches++;
	off_t end = (off_t)m->lh.end;
	size_t rlen = csa_jbuf_size(&jb);
	if (m->lh.trims != m->size_trims) {
		/* a checkpoint of another handle may have cut the file back */
		m->journal_size = 0;
		m->size_trims = m->lh.trims;
	}
	size_t pad = grow_pad(m, end, rlen);
	rc = csa_journal_append(m->journal_fd, m->journal_path, end, m->lh.gen, &jb, pad, m->sync,
	                        &err);
	if (rc == CSA_OK) {
		if (end + (off_t)(rlen + pad) > m->journal_size)
			m->journal_size = end + (off_t)(rlen + pad);
		/* the commit point is the fdatasync above; from here on the
		 * record must not be written over, even if this process dies,
		 * and until the swaps are done a death leaves it to complete */
		if ((rc = publish_busy(m, m->lh.gen, end + (off_t)rlen, 1, &err)))
			(void)csa_journal_invalidate(m->journal_fd, end, m->sync);
	} else {
		m->journal_size = 0; /* grown or not: read it again */
	}
	if (rc == CSA_OK)
		mark_follow(m, &(struct jpos){end, m->lh.trims},
		            &(struct jpos){end + (off_t)rlen, m->lh.trims});
	if (rc) {
		for (struct creq *r = batch; r; r = r->next)
			if (r->rc == CSA_OK) {
				undo_renames(m, r->p, r->n * 3);
				fail_req(r, rc, &err);
			}
		goto out;
	}
	/* Committed: now make the files say so. */
	if ((rc = rename_batch(m, batch, end, &err))) {
		for (struct creq *r = batch; r; r = r->next)
			if (r->rc == CSA_OK)
				fail_req(r, rc, &err);
		goto out;
	}
	(void)publish(m, m->lh.gen, end + (off_t)rlen, NULL); /* not busy: all in place */
	for (struct creq *r = batch; r; r = r->next)
		if (r->rc == CSA_OK)
			committed(m, r);
	if ((size_t)end + rlen > m->checkpoint_bytes && !m->checkpointing)
		m->checkpointing = checkpoint = 1;
out:
	for (struct creq *r = batch; r; r = r->next)
		pool_release(r->p, r->n * 3);
	journal_unlock(m);
	csa_jbuf_release(&jb);
	return checkpoint;
}

/* Queue r and return once a leader (this thread, or another) ran it. */
static void commit_queued(struct mesh *m, struct creq *r)
{
	pthread_mutex_lock(&m->qmu);
	if (m->qtail)
		m->qtail->next = r;
	else
		m->qhead = r;
	m->qtail = r;
	while (!r->done && m->leading)
		pthread_cond_wait(&m->qcv, &m->qmu);
	if (r->done) {
		pthread_mutex_unlock(&m->qmu);
		return;
	}
	m->leading = 1;
	struct creq *batch = m->qhead;
	m->qhead = m->qtail = NULL;
	pthread_mutex_unlock(&m->qmu);
	int checkpoint = commit_batch(m, batch);
	pthread_mutex_lock(&m->qmu);
	while (batch) {
		struct creq *next = batch->next; /* batch may be gone once done */
		batch->done = 1;
		batch = next;
	}
	m->leading = 0;
	pthread_cond_broadcast(&m->qcv);
	pthread_mutex_unlock(&m->qmu);
	if (checkpoint) {
		/* A failed checkpoint loses nothing: the journal stays. */
		struct csa_err ignored;
		(void)checkpoint_unlocked(m, &ignored);
		pthread_mutex_lock(&m->mu);
		m->checkpointing = 0;
		pthread_mutex_unlock(&m->mu);
	}
}

static int mesh_commit(struct csa_store *st, struct csa_ticket *const *tks, size_t n, unsigned docs,
                       struct csa_err *err)
{
	struct mesh *m = (struct mesh *)st;
	if (m->observe)
		return csa_error(err, CSA_ESTATE,
		                 "the store of '%s' is open to observe only: no commit", m->ws->root);
	if (n == 0)
		return CSA_OK;
	char ts[CSA_TS_LEN];
	csa_ts_format(csa_now_ms(), ts);
	struct creq r = {.tks = tks, .n = n, .docs = docs, .p = calloc(n * 3, sizeof(*r.p))};
	csa_jbuf_init(&r.jb);
	if (!r.p)
		return csa_error(err, CSA_ENOMEM, "out of memory committing %zu tickets", n);
	int rc = CSA_OK;
	for (size_t i = 0; i < n && rc == CSA_OK; i++)
		rc = prepare(m, tks[i], docs, ts, &r.p[i * 3], &r.jb, err);
	if (rc == CSA_OK) {
		commit_queued(m, &r);
		if ((rc = r.rc) && err)
			*err = r.err;
	}
	for (size_t j = 0; j < n * 3; j++)
		free(r.p[j].bytes);
	free(r.p);
	csa_jbuf_release(&r.jb);
	return rc;
}

uint64_t csa_mesh_files_sig(const struct csa_ws *ws, const char *id, int64_t *newest_ns)
{
	uint64_t h = CSA_FNV_SEED;
	*newest_ns = 0;
	for (int k = 0; k < 3; k++) {
		char path[PATH_SZ];
		struct stat st;
		if (csa_mesh_doc_path(ws, k, id, path, sizeof(path), NULL) || stat(path, &st))
			return 0;
		int64_t f[4] = {(int64_t)st.st_ino, (int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec,
		                (int64_t)st.st_mtim.tv_nsec};
		h = csa_fnv1a(h, f, sizeof(f));
		int64_t ns = f[2] * 1000000000LL + f[3];
		if (ns > *newest_ns)
			*newest_ns = ns;
	}
	return h ? h : 1;
}

/* The store's version of a ticket: its files' signature. A file's mtime
 * has the granularity of the file system's clock, so a second change
 * within it could keep the signature: a ticket is settled once its newest
 * file is two seconds old. */
static void mesh_stats_op(struct csa_store *st, struct csa_store_stats *out)
{
	const struct mesh *m = (const struct mesh *)st;
	out->commits = m->stats.commits;
	out->batches = m->stats.batches;
	out->checkpoints = m->stats.checkpoints;
}

/* ---- scan ----------------------------------------------------------- */

static int id_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The ids of the workflow files, sorted: a ticket exists when its
 * workflow file does. */
static int mesh_ids(struct csa_store *st, char ***out, size_t *n_out, struct csa_err *err)
{
	struct mesh *m = (struct mesh *)st;
	*out = NULL;
	*n_out = 0;
	char dir[PATH_SZ];
	snprintf(dir, sizeof(dir), "%s/%s", m->ws->root, kind_dir[2]);
	DIR *d = opendir(dir);
	if (!d)
		return csa_error_sys(err, "cannot open directory '%s'", dir);
	char **ids = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int rc = CSA_OK;
	int read_errno = 0;
	while (rc == CSA_OK) {
		errno = 0;
		if (!(de = readdir(d))) {
			read_errno = errno;
			break;
		}
		size_t len = csa_mesh_workflow_id_len(de->d_name);
		if (!len)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			char **nv = realloc(ids, cap * sizeof(*nv));
			if (!nv) {
				rc = csa_error(err, CSA_ENOMEM, "out of memory listing tickets");
				break;
			}
			ids = nv;
		}
		if (!(ids[n] = strndup(de->d_name + 2, len))) {
			rc = csa_error(err, CSA_ENOMEM, "out of memory listing tickets");
			break;
		}
		n++;
	}
	if (rc == CSA_OK && read_errno) {
		errno = read_errno;
		rc = csa_error_sys(err, "cannot read directory '%s'", dir);
	}
	closedir(d);
	if (rc) {
		csa_store_ids_free(ids, n);
		return rc;
	}
	if (n)
		qsort(ids, n, sizeof(*ids), id_cmp);
	*out = ids;
	*n_out = n;
	return CSA_OK;
}

static uint64_t mesh_version(struct csa_store *st, const char *id, int64_t *newest_ns)
{
	return csa_mesh_files_sig(((struct mesh *)st)->ws, id, newest_ns);
}

/* The journal's position: every commit moves the append offset in
 * .csa/lock's header on under the journal lock, every checkpoint bumps the
 * trim counter there, so the two change with every commit of any handle,
 * exactly. Read from .csa/lock alone: looking the journal up would make
 * its appends dearer (journal_lock). */
static int jpos_now(struct mesh *m, struct jpos *out)
{
	struct lhdr h;
	lhdr_read(m, &h);
	*out = (struct jpos){(off_t)h.end, h.trims};
	return 0;
}

static int jpos_eq(const struct jpos *a, const struct jpos *b)
{
	return a->end == b->end && a->trims == b->trims;
}

/* Under the journal lock: a commit or checkpoint of this handle that
 * starts where the mark is moves the mark to where it ends, so the mark
 * keeps meaning "nobody else since". Both positions are known to the
 * caller: a commit nobody follows pays no system call for it. */
static void mark_follow(struct mesh *m, const struct jpos *before, const struct jpos *after)
{
	pthread_mutex_lock(&m->mark_mu);
	for (int k = 0; k < CSA_MARK_SLOTS; k++)
		if (m->marked[k] && jpos_eq(&m->mark[k], before))
			m->mark[k] = *after;
	pthread_mutex_unlock(&m->mark_mu);
}

/* Taken under the journal lock, so no commit is between its append and
 * its renames: whatever the position covers is in Tickets/. */
static void mesh_mark(struct csa_store *st, unsigned slot)
{
	struct mesh *m = (struct mesh *)st;
	struct csa_err ignored;
	if (slot >= CSA_MARK_SLOTS || journal_lock(m, &ignored))
		return;
	struct jpos now;
	pthread_mutex_lock(&m->mark_mu);
	m->marked[slot] = jpos_now(m, &now) == 0;
	m->mark[slot] = now;
	pthread_mutex_unlock(&m->mark_mu);
	journal_unlock(m);
}

static uint64_t mesh_stamp(struct csa_store *st, unsigned slot, int *only_own)
{
	struct mesh *m = (struct mesh *)st;
	struct jpos now;
	*only_own = 0;
	if (slot >= CSA_MARK_SLOTS || jpos_now(m, &now))
		return 0;
	pthread_mutex_lock(&m->mark_mu);
	*only_own = m->marked[slot] && jpos_eq(&m->mark[slot], &now);
	pthread_mutex_unlock(&m->mark_mu);
	int64_t f[2] = {(int64_t)now.end, (int64_t)now.trims};
	uint64_t h = csa_fnv1a(CSA_FNV_SEED, f, sizeof(f));
	return h ? h : 1;
}

/*
 * The position kept between runs. Under the journal lock no commit is half
 * done. Every commit moves the append offset in .csa/lock's header on and
 * every checkpoint bumps the counter (and the generation) there, so within
 * one boot the journal's identity, the offset, generation and counter
 * change with every commit, exactly; the
 * journal's mtime and the three directories' (each commit renames its
 * documents into them, and so does anything that adds, renames or removes a
 * ticket's file by hand) cover a counter lost with the page cache in a
 * crash, as recovery rewrites the journal and the files at a later time.
 */
static uint64_t mesh_position(struct csa_store *st)
{
	struct mesh *m = (struct mesh *)st;
	struct csa_err ignored;
	if (journal_lock(m, &ignored))
		return 0;
	int64_t f[4 * 4 + 3];
	size_t nf = 0;
	int ok = 1;
	struct stat sb;
	if (fstat(m->journal_fd, &sb) == 0) {
		int64_t j[4] = {(int64_t)sb.st_ino, (int64_t)sb.st_size,
		                (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec,
		                (int64_t)sb.st_dev};
		memcpy(f + nf, j, sizeof(j));
		nf += 4;
	} else {
		ok = 0;
	}
	for (int k = 0; ok && k < 3; k++) {
		char dir[PATH_SZ];
		snprintf(dir, sizeof(dir), "%s/%s", m->ws->root, kind_dir[k]);
		if (stat(dir, &sb)) {
			ok = 0;
			break;
		}
		int64_t d[4] = {(int64_t)sb.st_ino,
		                (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec,
		                (int64_t)sb.st_ctim.tv_sec * 1000000000LL + sb.st_ctim.tv_nsec,
		                (int64_t)sb.st_dev};
		memcpy(f + nf, d, sizeof(d));
		nf += 4;
	}
	f[nf++] = (int64_t)m->lh.trims;
	f[nf++] = (int64_t)m->lh.gen;
	f[nf++] = (int64_t)m->lh.end;
	journal_unlock(m);
	if (!ok)
		return 0;
	uint64_t h = csa_fnv1a(CSA_FNV_SEED, f, nf * sizeof(f[0]));
	return h ? h : 1;
}

/* Commits rename their documents into Tickets/ before they let go of the
 * journal lock, so under it Tickets/ holds every acknowledged commit
 * whole. A commit of this handle that failed and could not be undone is
 * completed first; one of another process is in the journal, which a
 * copy takes too (recovery completes it when the copy is opened). */
static int mesh_hold(struct csa_store *st, int (*fn)(void *ctx, struct csa_err *err), void *ctx,
                     struct csa_err *err)
{
	struct mesh *m = (struct mesh *)st;
	int rc = journal_lock(m, err);
	if (rc)
		return rc;
	if (m->needs_recovery)
		rc = recover_locked(m, err);
	if (rc == CSA_OK)
		rc = fn(ctx, err);
	journal_unlock(m);
	return rc;
}

static int mesh_load_doc(struct csa_store *st, const char *id, unsigned doc, json_t **out,
                         struct csa_err *err)
{
	struct mesh *m = (struct mesh *)st;
	int kind = doc == CSA_DOC_E ? 0 : doc == CSA_DOC_I ? 1 : doc == CSA_DOC_T ? 2 : -1;
	*out = NULL;
	if (kind < 0)
		CSA_BUG("load_doc: doc is not one of CSA_DOC_E, CSA_DOC_I, CSA_DOC_T");
	char path[PATH_SZ];
	int rc = csa_mesh_doc_path(m->ws, kind, id, path, sizeof(path), err);
	if (rc)
		return rc;
	size_t max = limits_now(m).max_document_bytes;
	return read_json(m, path, max, out, err);
}

static int mesh_scan(struct csa_store *st, const struct csa_filter *f, csa_scan_fn fn, void *ctx,
                     struct csa_err *err)
{
	struct mesh *m = (struct mesh *)st;
	char **ids;
	size_t n;
	int rc = mesh_ids(st, &ids, &n, err);
	if (rc)
		return rc;
	size_t max_doc = limits_now(m).max_document_bytes;
	for (size_t i = 0; i < n && rc == CSA_OK; i++) {
		char path[PATH_SZ];
		json_t *t = NULL, *e = NULL;
		csa_mesh_doc_path(m->ws, 2, ids[i], path, sizeof(path), NULL);
		if (read_json(m, path, max_doc, &t, NULL))
			continue; /* vanished or damaged: verify reports it */
		const char *pr = csa_json_str(t, "priority"),
		           *stg = csa_json_str(t, "workflow_stage");
		int match = (!f || !f->priority || (pr && strcmp(pr, f->priority) == 0)) &&
		            (!f || !f->stage || (stg && strcmp(stg, f->stage) == 0));
		const char *status = NULL;
		if (match && f && f->status) {
			csa_mesh_doc_path(m->ws, 0, ids[i], path, sizeof(path), NULL);
			if (read_json(m, path, max_doc, &e, NULL) == CSA_OK)
				status = csa_json_str(e, "conversation_status");
			match = status && strcmp(status, f->status) == 0;
		}
		if (match)
			rc = fn(ctx, ids[i], t, status);
		json_decref(t);
		json_decref(e);
	}
	csa_store_ids_free(ids, n);
	return rc;
}

/* ---- open / close --------------------------------------------------- */

static int mesh_checkpoint(struct csa_store *st, struct csa_err *err)
{
	struct mesh *m = (struct mesh *)st;
	if (m->observe)
		return CSA_OK; /* the writers' business */
	int rc = journal_lock(m, err);
	if (rc)
		return rc;
	rc = m->needs_recovery ? recover_locked(m, err) : checkpoint_locked(m, err);
	journal_unlock(m);
	return rc;
}

static void mesh_close(struct csa_store *st)
{
	struct mesh *m = (struct mesh *)st;
	struct csa_err ignored;
	(void)mesh_checkpoint(st, &ignored);
	if (m->lh_map)
		munmap(m->lh_map, LHDR_MAP_LEN);
	close(m->journal_fd);
	close(m->lock_fd);
	pthread_mutex_destroy(&m->mu);
	pthread_mutex_destroy(&m->qmu);
	pthread_mutex_destroy(&m->mark_mu);
	pthread_cond_destroy(&m->qcv);
	free(m);
}

static const struct csa_store_ops mesh_ops = {
    .name = "mesh",
    .load = mesh_load,
    .load_locked = mesh_load_locked,
    .commit = mesh_commit,
    .lock = mesh_lock,
    .unlock = mesh_unlock,
    .scan = mesh_scan,
    .checkpoint = mesh_checkpoint,
    .close = mesh_close,
    .ids = mesh_ids,
    .version = mesh_version,
    .stats = mesh_stats_op,
    .load_doc = mesh_load_doc,
    .mark = mesh_mark,
    .stamp = mesh_stamp,
    .position = mesh_position,
    .hold = mesh_hold,
};

static int mesh_open(struct csa_ws *ws, int observe, struct csa_store **out, struct csa_err *err);

int csa_mesh_open(struct csa_ws *ws, struct csa_store **out, struct csa_err *err)
{
	return mesh_open(ws, 0, out, err);
}

int csa_mesh_open_observer(struct csa_ws *ws, struct csa_store **out, struct csa_err *err)
{
	return mesh_open(ws, 1, out, err);
}

static int mesh_open(struct csa_ws *ws, int observe, struct csa_store **out, struct csa_err *err)
{
	struct mesh *m = calloc(1, sizeof(*m));
	if (!m)
		return csa_error(err, CSA_ENOMEM, "out of memory opening the store");
	m->base.ops = &mesh_ops;
	m->ws = ws;
	m->lock_fd = m->journal_fd = -1;
	m->checkpoint_bytes = DEFAULT_CHECKPOINT_BYTES;
	m->observe = observe;
	m->sync = !ws->scratch;
	pthread_mutex_init(&m->mu, NULL);
	pthread_mutex_init(&m->mark_mu, NULL);
	pthread_mutex_init(&m->qmu, NULL);
	pthread_cond_init(&m->qcv, NULL);
	snprintf(m->journal_path, sizeof(m->journal_path), "%s/.csa/journal", ws->root);
	snprintf(m->lock_path, sizeof(m->lock_path), "%s/.csa/lock", ws->root);
	snprintf(m->tmp_dir, sizeof(m->tmp_dir), "%s/.csa/tmp", ws->root);
	snprintf(m->pool_dir, sizeof(m->pool_dir), "%s/.csa/pool", ws->root);
	snprintf(m->journal_new, sizeof(m->journal_new), "%s/.csa/journal.new", ws->root);
	int rc;
	m->lock_fd = open_store_file(m->lock_path, observe);
	if (m->lock_fd < 0) {
		rc = csa_error_sys(err, "cannot open '%s'", m->lock_path);
		goto fail;
	}
	lhdr_map(m);
	if ((rc = journal_reopen(m, err)))
		goto fail;
	if (!observe) {
		/* workspaces made before the pool get it now */
		if (mkdir(m->pool_dir, CSA_DIR_MODE) < 0 && errno != EEXIST) {
			rc = csa_error_sys(err, "cannot create '%s'", m->pool_dir);
			goto fail;
		}
		if ((rc = journal_lock(m, err)))
			goto fail;
		rc = recover_locked(m, err);
		journal_unlock(m);
		if (rc)
			goto fail;
	}
	*out = &m->base;
	return CSA_OK;
fail:
	if (m->lh_map)
		munmap(m->lh_map, LHDR_MAP_LEN);
	if (m->journal_fd >= 0)
		close(m->journal_fd);
	if (m->lock_fd >= 0)
		close(m->lock_fd);
	pthread_mutex_destroy(&m->mu);
	pthread_mutex_destroy(&m->qmu);
	pthread_mutex_destroy(&m->mark_mu);
	pthread_cond_destroy(&m->qcv);
	free(m);
	return rc;
}

struct csa_mesh_stats csa_mesh_stats(const struct csa_store *st)
{
	struct csa_mesh_stats z = {0};
	if (!st || st->ops != &mesh_ops)
		return z;
	return ((const struct mesh *)st)->stats;
}

void csa_mesh_set_checkpoint_bytes(struct csa_store *st, size_t bytes)
{
	if (st && st->ops == &mesh_ops)
		((struct mesh *)st)->checkpoint_bytes = bytes;
}

#ifdef CSA_TESTING
void csa_mesh_test_after_sync(struct csa_store *st, void (*fn)(void *ctx), void *ctx)
{
	if (st && st->ops == &mesh_ops) {
		((struct mesh *)st)->after_sync = fn;
		((struct mesh *)st)->after_sync_ctx = ctx;
	}
}
#endif

#ifdef CSA_TESTING
void csa_mesh_test_before_batch(struct csa_store *st, void (*fn)(void *ctx), void *ctx)
{
	if (st && st->ops == &mesh_ops) {
		((struct mesh *)st)->before_batch = fn;
		((struct mesh *)st)->before_batch_ctx = ctx;
	}
}

void csa_mesh_test_after_open(struct csa_store *st, void (*fn)(void *ctx), void *ctx)
{
	struct mesh *m = (struct mesh *)st;
	m->after_open = fn;
	m->after_open_ctx = ctx;
}

size_t csa_mesh_test_queued(struct csa_store *st)
{
	struct mesh *m = (struct mesh *)st;
	size_t n = 0;
	pthread_mutex_lock(&m->qmu);
	for (struct creq *r = m->qhead; r; r = r->next)
		n++;
	pthread_mutex_unlock(&m->qmu);
	return n;
}
#endif
