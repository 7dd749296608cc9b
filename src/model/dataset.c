/* CSV and JSONL readers for labelled text. */
#include "model/dataset.h"
#include "base/fsops.h"
#include "base/json.h"

#include <stdlib.h>
#include <string.h>

#define MAX_FILE ((size_t)1 << 30)

int csa_dataset_add(struct csa_dataset *ds, const char *text, const char *label)
{
	if (ds->n == ds->cap) {
		size_t cap = ds->cap ? ds->cap * 2 : 1024;
		char **t = realloc(ds->text, cap * sizeof(*t));
		if (!t)
			return CSA_ENOMEM;
		ds->text = t;
		char **l = realloc(ds->label, cap * sizeof(*l));
		if (!l)
			return CSA_ENOMEM;
		ds->label = l;
		ds->cap = cap;
	}
	char *tt = strdup(text), *ll = strdup(label);
	if (!tt || !ll) {
		free(tt);
		free(ll);
		return CSA_ENOMEM;
	}
	ds->text[ds->n] = tt;
	ds->label[ds->n] = ll;
	ds->n++;
	return CSA_OK;
}

void csa_dataset_release(struct csa_dataset *ds)
{
	for (size_t i = 0; i < ds->n; i++) {
		free(ds->text[i]);
		free(ds->label[i]);
	}
	free(ds->text);
	free(ds->label);
	memset(ds, 0, sizeof(*ds));
}

size_t csa_dataset_labels(const struct csa_dataset *ds, const char ***out)
{
	const char **v = malloc((ds->n ? ds->n : 1) * sizeof(*v));
	size_t n = 0;
	if (!v) {
		*out = NULL;
		return 0;
	}
	for (size_t i = 0; i < ds->n; i++) {
		size_t k = 0;
		while (k < n && strcmp(v[k], ds->label[i]) != 0)
			k++;
		if (k == n)
			v[n++] = ds->label[i];
	}
	*out = v;
	return n;
}

/* One CSV record starting at *pos; fields are written NUL-terminated into
 * 'scratch' (size >= record length + fields) with pointers in f. Returns the
 * field count, 0 at end of input, -1 on an unterminated quote. */
static int csv_record(const char *s, size_t len, size_t *pos, size_t *line, char *scratch, char **f,
                      int maxf)
{
	size_t i = *pos, o = 0;
	int nf = 0;
	if (i >= len)
		return 0;
	for (;;) {
		if (nf < maxf)
			f[nf] = scratch + o;
		nf++;
		if (i < len && s[i] == '"') {
			i++;
			for (;;) {
				if (i >= len)
					return -1;
				if (s[i] == '"') {
					if (i + 1 < len && s[i + 1] == '"') {
						scratch[o++] = '"';
						i += 2;
						continue;
					}
					i++;
					break;
				}
				if (s[i] == '\n')
					(*line)++;
				scratch[o++] = s[i++];
			}
			/* text after the closing quote up to the separator is kept */
			while (i < len && s[i] != ',' && s[i] != '\n' && s[i] != '\r')
				scratch[o++] = s[i++];
		} else {
			while (i < len && s[i] != ',' && s[i] != '\n' && s[i] != '\r')
				scratch[o++] = s[i++];
		}
		scratch[o++] = '\0';
		if (i < len && s[i] == ',') {
			i++;
			continue;
		}
		if (i < len && s[i] == '\r')
			i++;
		if (i < len && s[i] == '\n')
			i++;
		(*line)++;
		break;
	}
	*pos = i;
	return nf;
}

#define MAX_FIELDS 256

static int load_csv(const char *path, const char *buf, size_t len, const char *tc, const char *lc,
                    struct csa_dataset *ds, struct csa_err *err)
{
	char *scratch = malloc(len + MAX_FIELDS + 2);
	char *f[MAX_FIELDS];
	if (!scratch)
		return csa_error(err, CSA_ENOMEM, "out of memory reading '%s'", path);
	size_t pos = 0, line = 1;
	int rc = CSA_OK, ti = -1, li = -1;
	if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
		pos = 3; /* byte order mark */
	int nf = csv_record(buf, len, &pos, &line, scratch, f, MAX_FIELDS);
	if (nf <= 0) {
		rc = csa_error(err, CSA_EPARSE, "'%s': no header line", path);
		goto out;
	}
	for (int k = 0; k < nf && k < MAX_FIELDS; k++) {
		if (strcmp(f[k], tc) == 0)
			ti = k;
		if (strcmp(f[k], lc) == 0)
			li = k;
	}
	if (ti < 0 || li < 0) {
		rc = csa_error(err, CSA_EINVAL, "'%s' line 1: no column '%s'", path,
		               ti < 0 ? tc : lc);
		goto out;
	}
	for (;;) {
		size_t start_line = line;
		nf = csv_record(buf, len, &pos, &line, scratch, f, MAX_FIELDS);
		if (nf == 0)
			break;
		if (nf < 0) {
			rc = csa_error(err, CSA_EPARSE, "'%s' line %zu: unterminated quoted field",
			               path, start_line);
			goto out;
		}
		if (nf == 1 && f[0][0] == '\0')
			continue; /* blank line */
		if (nf <= ti || nf <= li) {
			rc = csa_error(err, CSA_EPARSE,
			               "'%s' line %zu: %d fields, column '%s' missing", path,
			               start_line, nf, nf <= ti ? tc : lc);
			goto out;
		}
		if (f[li][0] == '\0') {
			rc = csa_error(err, CSA_EPARSE, "'%s' line %zu: empty label", path,
			               start_line);
			goto out;
		}
		/* labels end up in JSON (eval, decisions); the text is read as
		 * UTF-8 with invalid bytes skipped */
		if (!csa_json_utf8_ok(f[li], strlen(f[li]))) {
			rc = csa_error(err, CSA_EPARSE,
			               "'%s' line %zu: label is not valid UTF-8 (save the file as "
			               "UTF-8)",
			               path, start_line);
			goto out;
		}
		if (csa_dataset_add(ds, f[ti], f[li])) {
			rc = csa_error(err, CSA_ENOMEM, "out of memory reading '%s'", path);
			goto out;
		}
	}
out:
	free(scratch);
	return rc;
}

static int load_jsonl(const char *path, const char *buf, size_t len, const char *tc, const char *lc,
                      struct csa_dataset *ds, struct csa_err *err)
{
	size_t line = 0;
	for (size_t i = 0; i < len;) {
		const char *nl = memchr(buf + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - buf) : len;
		line++;
		size_t j = i;
		while (j < end && (buf[j] == ' ' || buf[j] == '\t' || buf[j] == '\r'))
			j++;
		if (j < end) {
			json_error_t je;
			json_t *o = json_loadb(buf + i, end - i, JSON_REJECT_DUPLICATES, &je);
			if (!o)
				return csa_error(err, CSA_EPARSE, "'%s' line %zu col %d: %s", path,
				                 line, je.column, je.text);
			const char *t = csa_json_str(o, tc), *l = csa_json_str(o, lc);
			int rc = CSA_OK;
			if (!json_is_object(o) || !t || !l || !*l)
				rc = csa_error(err, CSA_EPARSE,
				               "'%s' line %zu: needs string fields '%s' and '%s'",
				               path, line, tc, lc);
			else if (csa_dataset_add(ds, t, l))
				rc = csa_error(err, CSA_ENOMEM, "out of memory reading '%s'", path);
			json_decref(o);
			if (rc)
				return rc;
		}
		i = end + 1;
	}
	return CSA_OK;
}

int csa_dataset_load(const char *path, const char *text_col, const char *label_col,
                     struct csa_dataset *ds, struct csa_err *err)
{
	char *buf;
	size_t len;
	int rc = csa_fs_read_all(path, MAX_FILE, &buf, &len, err);
	if (rc)
		return rc;
	size_t pl = strlen(path);
	int jsonl = (pl > 6 && strcmp(path + pl - 6, ".jsonl") == 0) ||
	            (pl > 5 && strcmp(path + pl - 5, ".json") == 0);
	size_t k = 0;
	while (k < len && (buf[k] == ' ' || buf[k] == '\n' || buf[k] == '\r' || buf[k] == '\t'))
		k++;
	if (k < len && buf[k] == '{')
		jsonl = 1;
	if (memchr(buf, '\0', len))
		rc = csa_error(err, CSA_EPARSE, "'%s': contains NUL bytes", path);
	else
		rc = jsonl ? load_jsonl(path, buf, len, text_col, label_col, ds, err)
		           : load_csv(path, buf, len, text_col, label_col, ds, err);
	free(buf);
	if (rc)
		csa_dataset_release(ds);
	return rc;
}
