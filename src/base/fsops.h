/*
 * File operations used on every durable path (store, audit ledger, model
 * files, outbox), wrapped so tests can make the n-th call of a kind fail.
 *
 * In the shipped build the wrappers are thin and fault injection is compiled
 * out. In the test build (CSA_TESTING) csa_fault_arm() or the environment
 * variable CSA_FAULT="<op>:<n>[:<errno>]" (op = write|fsync|rename|unlink|
 * open) makes the n-th call (1-based, counted from arming) fail with errno
 * (default EIO; ENOSPC for writes), once.
 */
#ifndef CSA_BASE_FSOPS_H
#define CSA_BASE_FSOPS_H

#include <stddef.h>
#include <sys/types.h>
#include "base/err.h"

enum csa_fs_op {
	CSA_FS_WRITE,
	CSA_FS_FSYNC,
	CSA_FS_RENAME,
	CSA_FS_UNLINK,
	CSA_FS_OPEN,
	CSA_FS_NOPS
};

/*
 * A workspace holds customer data: it is private to the service's user, as
 * PostgreSQL's data directory is. Files are created with at most
 * CSA_FILE_MODE and directories with CSA_DIR_MODE, whatever the umask of
 * the program using the library (the csa program also sets umask 077, for
 * the files SQLite creates).
 */
#define CSA_FILE_MODE 0600
#define CSA_DIR_MODE  0700

/* open(2); returns fd or -1 with errno set. A file it creates gets 'mode'
 * masked to CSA_FILE_MODE: no group or other bits. */
int csa_fs_open(const char *path, int flags, mode_t mode);
/* Write all of buf; 0 or -1 with errno set (short writes are retried). */
int csa_fs_write_all(int fd, const void *buf, size_t len);
/* fdatasync(2) when 'data_only', else fsync(2). 0 or -1 with errno. */
int csa_fs_fsync(int fd, int data_only);
/* rename(2). */
int csa_fs_rename(const char *from, const char *to);
/* Swap 'a' and 'b' atomically (renameat2 RENAME_EXCHANGE): each name then
 * holds the other's file. Both must exist; EINVAL or ENOSYS where the
 * file system or kernel cannot. Counted and faulted as a rename. */
int csa_fs_exchange(const char *a, const char *b);
/* unlink(2). */
int csa_fs_unlink(const char *path);
/* Open the directory and fsync it, making renames and creations in it
 * durable. 0 or -1 with errno. */
int csa_fs_fsync_dir(const char *dir);

/*
 * Write 'len' bytes to 'path' atomically and durably: temporary file created
 * with O_EXCL next to it, write, fsync, rename, fsync of the directory.
 * On failure the previous file is untouched and no temporary is left.
 */
int csa_fs_write_atomic(const char *path, const void *buf, size_t len, struct csa_err *err);

/* Read a whole file (at most max_len bytes; CSA_ELIMIT beyond) into a
 * malloc'd, NUL-terminated buffer the caller frees. */
int csa_fs_read_all(const char *path, size_t max_len, char **out, size_t *out_len,
                    struct csa_err *err);
/* The same from an open file, read from its start ('path' names it in
 * errors); the file stays open. */
int csa_fs_read_fd(int fd, const char *path, size_t max_len, char **out, size_t *out_len,
                   struct csa_err *err);

/*
 * What the store needs of a file without its timestamps: which file it is,
 * its length and its number of names. statx(2) is asked for these alone:
 * on a file system with multigrain timestamps (ext4 and others, Linux
 * 6.13 on) reading a file's times makes its next change take a
 * fine-grained time, which raises the floor every later coarse timestamp
 * starts from, so the journal's next append changed its mtime, and its
 * fdatasync then wrote the inode too: a second disk write per commit
 * (issue 21). Falls back to fstat/stat where statx is missing. 0 or -1
 * with errno set.
 */
struct csa_fs_ident {
	dev_t dev;
	ino_t ino;
	off_t size;
	nlink_t nlink;
};
int csa_fs_ident_fd(int fd, struct csa_fs_ident *out);
int csa_fs_ident_path(const char *path, struct csa_fs_ident *out);

/* mkdir -p; directories it creates get CSA_DIR_MODE (existing ones keep
 * their mode). 0 or CSA_EIO. */
int csa_fs_mkdirs(const char *path, struct csa_err *err);

/* Create 'path' empty with CSA_FILE_MODE unless it exists (left as it is):
 * done before SQLite opens a new database, since SQLite creates files 0644
 * and gives its -wal and -shm files the database file's mode. 0 or CSA_EIO. */
int csa_fs_create_private(const char *path, struct csa_err *err);

/* Fault injection (test build only; no-ops returning 0 otherwise). */
void csa_fault_arm(enum csa_fs_op op, long nth, int err_no);
void csa_fault_disarm(void);
/* Calls of 'op' since the last csa_fault_reset_counts(). */
long csa_fault_count(enum csa_fs_op op);
void csa_fault_reset_counts(void);
/* Whether the armed fault has fired since it was armed. */
int csa_fault_fired(void);

#endif
