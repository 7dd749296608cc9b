/*
 * Runs a fuzz target over files and directories of inputs (the committed
 * corpus), without libFuzzer: `fuzz_email_replay fuzz/corpus/email`.
 * Exits non-zero if a directory cannot be read; a broken property aborts.
 */
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "base/fsops.h"
#include "fuzz.h"

static int run_file(const char *path)
{
	char *buf;
	size_t n;
	struct csa_err err = {0};
	if (csa_fs_read_all(path, (size_t)1 << 30, &buf, &n, &err)) {
		fprintf(stderr, "replay: %s\n", err.msg);
		return 1;
	}
	/* an exact-size copy (buf has a NUL after it), so reading past the
	 * input is caught */
	unsigned char *exact = malloc(n ? n : 1);
	if (!exact) {
		free(buf);
		fprintf(stderr, "replay: out of memory reading '%s'\n", path);
		return 1;
	}
	memcpy(exact, buf, n);
	free(buf);
	LLVMFuzzerTestOneInput(exact, n);
	free(exact);
	return 0;
}

int main(int argc, char **argv)
{
	int bad = 0, files = 0;
	for (int i = 1; i < argc; i++) {
		struct stat sb;
		if (stat(argv[i], &sb) != 0) {
			fprintf(stderr, "replay: cannot read '%s'\n", argv[i]);
			bad = 1;
			continue;
		}
		if (!S_ISDIR(sb.st_mode)) {
			bad |= run_file(argv[i]);
			files++;
			continue;
		}
		DIR *d = opendir(argv[i]);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
			bad |= run_file(path);
			files++;
		}
		if (d)
			closedir(d);
		else
			bad = 1;
	}
	printf("replayed %d inputs\n", files);
	return bad || files == 0;
}
