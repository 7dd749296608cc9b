/* Durable file operations with fault injection for tests. */
#include "base/fsops.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifdef CSA_TESTING
static _Atomic long fault_counts[CSA_FS_NOPS];
static _Atomic long fault_nth = 0;
static _Atomic int fault_op = -1;
static _Atomic int fault_errno = EIO;
static _Atomic int fault_has_fired = 0;
static _Atomic int fault_env_loaded = 0;

static void fault_load_env(void)
{
	if (atomic_exchange(&fault_env_loaded, 1))
		return;
	const char *spec = getenv("CSA_FAULT");
	if (!spec || !*spec)
		return;
	static const char *names[] = {"write", "fsync", "rename", "unlink", "open"};
	for (int i = 0; i < CSA_FS_NOPS; i++) {
		size_t n = strlen(names[i]);
		if (strncmp(spec, names[i], n) == 0 && spec[n] == ':') {
			char *end;
			long nth = strtol(spec + n + 1, &end, 10);
			int e = i == CSA_FS_WRITE ? ENOSPC : EIO;
			if (*end == ':')
				e = (int)strtol(end + 1, NULL, 10);
			csa_fault_arm((enum csa_fs_op)i, nth, e);
		}
	}
}

/* True if this call of 'op' must fail; sets errno. */
static int fault_hit(enum csa_fs_op op)
{
	fault_load_env();
	long n = atomic_fetch_add(&fault_counts[op], 1) + 1;
	if (atomic_load(&fault_op) == (int)op && n == atomic_load(&fault_nth)) {
		atomic_store(&fault_has_fired, 1);
		errno = atomic_load(&fault_errno);
		return 1;
	}
	return 0;
}

void csa_fault_arm(enum csa_fs_op op, long nth, int err_no)
{
	for (int i = 0; i < CSA_FS_NOPS; i++)
		atomic_store(&fault_counts[i], 0);
	atomic_store(&fault_nth, nth);
	atomic_store(&fault_errno, err_no ? err_no : EIO);
	atomic_store(&fault_has_fired, 0);
	atomic_store(&fault_op, (int)op);
}

void csa_fault_disarm(void)
{
	atomic_store(&fault_op, -1);
}

long csa_fault_count(enum csa_fs_op op)
{
	return atomic_load(&fault_counts[op]);
}

void csa_fault_reset_counts(void)
{
	for (int i = 0; i < CSA_FS_NOPS; i++)
		atomic_store(&fault_counts[i], 0);
}

int csa_fault_fired(void)
{
	return atomic_load(&fault_has_fired);
}
#else
#define fault_hit(op) 0
void csa_fault_arm(enum csa_fs_op op, long nth, int err_no)
{
	(void)op, (void)nth, (void)err_no;
}
void csa_fault_disarm(void)
{
}
long csa_fault_count(enum csa_fs_op op)
{
	(void)op;
	return 0;
}
void csa_fault_reset_counts(void)
{
}
int csa_fault_fired(void)
{
	return 0;
}
#endif

int csa_fs_open(const char *path, int flags, mode_t mode)
{
	if (fault_hit(CSA_FS_OPEN))
		return -1;
	int fd;
	do
		fd = open(path, flags | O_CLOEXEC, mode & CSA_FILE_MODE);
	while (fd < 0 && errno == EINTR);
	return fd;
}

int csa_fs_write_all(int fd, const void *buf, size_t len)
{
	if (fault_hit(CSA_FS_WRITE))
		return -1;
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int csa_fs_fsync(int fd, int data_only)
{
	if (fault_hit(CSA_FS_FSYNC))
		return -1;
	return data_only ? fdatasync(fd) : fsync(fd);
}

int csa_fs_rename(const char *from, const char *to)
{
	if (fault_hit(CSA_FS_RENAME))
		return -1;
	return rename(from, to);
}

int csa_fs_exchange(const char *a, const char *b)
{
	if (fault_hit(CSA_FS_RENAME))
		return -1;
	return renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
}

int csa_fs_unlink(const char *path)
{
	if (fault_hit(CSA_FS_UNLINK))
		return -1;
	return unlink(path);
}

int csa_fs_fsync_dir(const char *dir)
{
	int fd = csa_fs_open(dir, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return -1;
	int rc = csa_fs_fsync(fd, 0);
	int saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

static void dir_of(const char *path, char *out, size_t outsz)
{
	const char *slash = strrchr(path, '/');
	if (!slash) {
		snprintf(out, outsz, ".");
		return;
	}
	size_t n = (size_t)(slash - path);
	if (n == 0)
		n = 1;
	if (n >= outsz)
		n = outsz - 1;
	memcpy(out, path, n);
	out[n] = '\0';
}

int csa_fs_write_atomic(const char *path, const void *buf, size_t len, struct csa_err *err)
{
	char tmp[4096], dir[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	dir_of(path, dir, sizeof(dir));
	int fd = csa_fs_open(tmp, O_WRONLY | O_CREAT | O_EXCL, CSA_FILE_MODE);
	if (fd < 0 && errno == EEXIST) {
		/* A leftover from a crashed writer with our pid: stale by
		 * definition, since we are that pid now. */
		unlink(tmp);
		fd = csa_fs_open(tmp, O_WRONLY | O_CREAT | O_EXCL, CSA_FILE_MODE);
	}
	if (fd < 0)
		return csa_error_sys(err, "cannot create '%s'", tmp);
	if (csa_fs_write_all(fd, buf, len) < 0) {
		csa_error_sys(err, "cannot write '%s'", tmp);
		goto fail;
	}
	if (csa_fs_fsync(fd, 0) < 0) {
		csa_error_sys(err, "cannot fsync '%s'", tmp);
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		csa_error_sys(err, "cannot close '%s'", tmp);
		goto fail;
	}
	fd = -1;
	if (csa_fs_rename(tmp, path) < 0) {
		csa_error_sys(err, "cannot rename '%s' to '%s'", tmp, path);
		goto fail;
	}
	if (csa_fs_fsync_dir(dir) < 0)
		return csa_error_sys(err, "cannot fsync directory '%s'", dir);
	return CSA_OK;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return err ? err->code : CSA_EIO;
}

int csa_fs_read_all(const char *path, size_t max_len, char **out, size_t *out_len,
                    struct csa_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return csa_error(err, CSA_ENOENT, "'%s' does not exist", path);
		return csa_error_sys(err, "cannot open '%s'", path);
	}
	int rc = csa_fs_read_fd(fd, path, max_len, out, out_len, err);
	close(fd);
	return rc;
}

static int ident_at(int dirfd, const char *path, int flags, struct csa_fs_ident *out)
{
	const unsigned want = STATX_INO | STATX_SIZE | STATX_NLINK;
	struct statx sx;
	int r = statx(dirfd, path, flags, want, &sx);
	if (r == 0 && (sx.stx_mask & want) == want) {
		out->dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
		out->ino = (ino_t)sx.stx_ino;
		out->size = (off_t)sx.stx_size;
		out->nlink = (nlink_t)sx.stx_nlink;
		return 0;
	}
	if (r != 0 && errno != ENOSYS)
		return -1;
	/* no statx, or a file system that did not give all three */
	struct stat st;
	if ((flags & AT_EMPTY_PATH ? fstat(dirfd, &st) : stat(path, &st)) < 0)
		return -1;
	*out = (struct csa_fs_ident){st.st_dev, st.st_ino, st.st_size, st.st_nlink};
	return 0;
}

int csa_fs_ident_fd(int fd, struct csa_fs_ident *out)
{
	return ident_at(fd, "", AT_EMPTY_PATH, out);
}

int csa_fs_ident_path(const char *path, struct csa_fs_ident *out)
{
	return ident_at(AT_FDCWD, path, 0, out);
}

int csa_fs_read_fd(int fd, const char *path, size_t max_len, char **out, size_t *out_len,
                   struct csa_err *err)
{
	struct csa_fs_ident st;
	if (csa_fs_ident_fd(fd, &st) < 0)
		return csa_error_sys(err, "cannot stat '%s'", path);
	if ((size_t)st.size > max_len)
		return csa_error(err, CSA_ELIMIT, "'%s' is %lld bytes, more than the limit %zu",
		                 path, (long long)st.size, max_len);
	size_t cap = (size_t)st.size + 1, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		return csa_error(err, CSA_ENOMEM, "out of memory reading '%s'", path);
	for (;;) {
		if (len + 1 >= cap) {
			if (cap > max_len + 1) {
				free(buf);
				return csa_error(err, CSA_ELIMIT, "'%s' grew past the limit %zu",
				                 path, max_len);
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return csa_error(err, CSA_ENOMEM, "out of memory reading '%s'",
				                 path);
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t n = pread(fd, buf + len, cap - len - 1, (off_t)len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			free(buf);
			return csa_error_sys(err, "cannot read '%s'", path);
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	if (out_len)
		*out_len = len;
	return CSA_OK;
}

int csa_fs_mkdirs(const char *path, struct csa_err *err)
{
	char buf[4096];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(buf))
		return csa_error(err, CSA_EINVAL, "bad directory path '%s'", path);
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, CSA_DIR_MODE) < 0 && errno != EEXIST)
			return csa_error_sys(err, "cannot create directory '%s'", buf);
		*p = '/';
	}
	if (mkdir(buf, CSA_DIR_MODE) < 0 && errno != EEXIST)
		return csa_error_sys(err, "cannot create directory '%s'", buf);
	return CSA_OK;
}

int csa_fs_create_private(const char *path, struct csa_err *err)
{
	int fd = csa_fs_open(path, O_WRONLY | O_CREAT, CSA_FILE_MODE);
	if (fd < 0)
		return csa_error_sys(err, "cannot create '%s'", path);
	if (close(fd) < 0)
		return csa_error_sys(err, "cannot close '%s'", path);
	return CSA_OK;
}
