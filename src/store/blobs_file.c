/* The file backend of store/blobs.h: <root>/<area>/<file>, written with
 * csa_fs_write_atomic (temporary file, fsync, rename, directory fsync). */
#include "store/blobs.h"
#include "base/fsops.h"
#include "base/hash.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PATH_SZ 4096

struct file_blobs {
	struct csa_blobs base;
	char *root;
};

static const char *const areas[] = {"models", "kb", "config"};

static int area_ok(const char *area, size_t len)
{
	for (size_t i = 0; i < sizeof(areas) / sizeof(areas[0]); i++)
		if (strlen(areas[i]) == len && strncmp(areas[i], area, len) == 0)
			return 1;
	return 0;
}

static int file_ok(const char *f)
{
	size_t n = strlen(f);
	if (n == 0 || n > 200 || f[0] == '.')
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)f[i] < 0x20 || f[i] == '/' || f[i] == 0x7f)
			return 0;
	return 1;
}

/* csa_fs_write_atomic's scratch file: "<name>.tmp.<pid>" */
static int scratch(const char *f)
{
	const char *t = strstr(f, ".tmp.");
	if (!t || !t[5])
		return 0;
	for (t += 5; *t; t++)
		if (*t < '0' || *t > '9')
			return 0;
	return 1;
}

int csa_blobs_name_check(const char *name, struct csa_err *err)
{
	const char *slash = name ? strchr(name, '/') : NULL;
	if (!slash || !area_ok(name, (size_t)(slash - name)))
		return csa_error(err, CSA_EINVAL,
		                 "document name '%.140s' must start with models/, kb/ or config/",
		                 name ? name : "(null)");
	if (!file_ok(slash + 1))
		return csa_error(err, CSA_EINVAL,
		                 "document name '%.140s': the file part must be 1-200 bytes "
		                 "without '/' or control characters, not starting with a dot",
		                 name);
	return CSA_OK;
}

static int path_of(struct file_blobs *fb, const char *name, char *out, struct csa_err *err)
{
	int rc = csa_blobs_name_check(name, err);
	if (rc)
		return rc;
	if (snprintf(out, PATH_SZ, "%s/%s", fb->root, name) >= PATH_SZ)
		return csa_error(err, CSA_ELIMIT, "path of '%s' in '%s' is too long", name,
		                 fb->root);
	return CSA_OK;
}

static int f_get(struct csa_blobs *b, const char *name, size_t max, char **buf, size_t *len,
                 struct csa_err *err)
{
	char path[PATH_SZ];
	int rc = path_of((struct file_blobs *)b, name, path, err);
	return rc ? rc : csa_fs_read_all(path, max, buf, len, err);
}

static int f_put(struct csa_blobs *b, const char *name, const void *buf, size_t len,
                 struct csa_err *err)
{
	char path[PATH_SZ];
	int rc = path_of((struct file_blobs *)b, name, path, err);
	if (rc)
		return rc;
	/* the area's directory appears with its first document */
	char *slash = strrchr(path, '/');
	*slash = '\0';
	rc = csa_fs_mkdirs(path, err);
	*slash = '/';
	return rc ? rc : csa_fs_write_atomic(path, buf, len, err);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(json_string_value(*(json_t *const *)a),
	              json_string_value(*(json_t *const *)b));
}

static int f_list(struct csa_blobs *b, const char *area, json_t **names, struct csa_err *err)
{
	struct file_blobs *fb = (struct file_blobs *)b;
	if (!area || !area_ok(area, strlen(area)))
		return csa_error(err, CSA_EINVAL, "no document area '%.64s'", area ? area : "");
	char dir[PATH_SZ];
	if (snprintf(dir, sizeof(dir), "%s/%s", fb->root, area) >= (int)sizeof(dir))
		return csa_error(err, CSA_ELIMIT, "path of '%s' in '%s' is too long", area,
		                 fb->root);
	json_t *out = json_array();
	if (!out)
		return csa_error(err, CSA_ENOMEM, "out of memory listing '%s'", dir);
	DIR *d = opendir(dir);
	if (!d) {
		if (errno == ENOENT) {
			*names = out;
			return CSA_OK;
		}
		json_decref(out);
		return csa_error_sys(err, "cannot list '%s'", dir);
	}
	struct dirent *de;
	int rc = CSA_OK;
	while (rc == CSA_OK && (de = readdir(d))) {
		if (!file_ok(de->d_name) || scratch(de->d_name))
			continue;
		if (json_array_append_new(out, json_string(de->d_name)))
			rc = csa_error(err, CSA_ENOMEM, "out of memory listing '%s'", dir);
	}
	closedir(d);
	if (rc) {
		json_decref(out);
		return rc;
	}
	/* sort the array's items in place: jansson keeps them in a plain array */
	size_t n = json_array_size(out);
	json_t **items = malloc((n ? n : 1) * sizeof(*items));
	if (!items) {
		json_decref(out);
		return csa_error(err, CSA_ENOMEM, "out of memory listing '%s'", dir);
	}
	for (size_t i = 0; i < n; i++)
		items[i] = json_incref(json_array_get(out, i));
	qsort(items, n, sizeof(*items), name_cmp);
	json_array_clear(out);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(out, items[i]);
	free(items);
	*names = out;
	return CSA_OK;
}

/* Identity of the file: a put renames a new inode into place, an edit by
 * hand changes size or mtime. */
static uint64_t f_version(struct csa_blobs *b, const char *name)
{
	char path[PATH_SZ];
	struct stat st;
	if (path_of((struct file_blobs *)b, name, path, NULL) || stat(path, &st))
		return 0;
	int64_t f[4] = {(int64_t)st.st_ino, (int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec,
	                (int64_t)st.st_mtim.tv_nsec};
	uint64_t h = csa_fnv1a(CSA_FNV_SEED, f, sizeof(f));
	return h ? h : 1;
}

static void f_close(struct csa_blobs *b)
{
	struct file_blobs *fb = (struct file_blobs *)b;
	free(fb->root);
	free(fb);
}

static const struct csa_blobs_ops file_ops = {
    .get = f_get, .put = f_put, .list = f_list, .version = f_version, .close = f_close};

int csa_blobs_open_files(const char *root, struct csa_blobs **out, struct csa_err *err)
{
	struct file_blobs *fb = calloc(1, sizeof(*fb));
	if (!fb || !(fb->root = strdup(root))) {
		free(fb);
		return csa_error(err, CSA_ENOMEM, "out of memory opening the documents of '%s'",
		                 root);
	}
	fb->base.ops = &file_ops;
	*out = &fb->base;
	return CSA_OK;
}
