/* jansson wrappers. */
#include "base/json.h"
#include "base/fsops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int csa_json_parse(const char *buf, size_t len, const char *source, json_t **out,
                   struct csa_err *err)
{
	json_error_t je;
	if (memchr(buf, '\0', len))
		return csa_error(err, CSA_EPARSE, "%s: contains a NUL byte", source);
	json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return csa_error(err, CSA_EPARSE, "%s line %d col %d: %s", source, je.line,
		                 je.column, je.text);
	*out = j;
	return CSA_OK;
}

int csa_json_load_file(const char *path, size_t max_len, json_t **out, struct csa_err *err)
{
	char *buf;
	size_t len;
	int rc = csa_fs_read_all(path, max_len, &buf, &len, err);
	if (rc)
		return rc;
	rc = csa_json_parse(buf, len, path, out, err);
	free(buf);
	return rc;
}

int csa_json_load_arg(const char *arg, size_t max_len, json_t **out, struct csa_err *err)
{
	if (strcmp(arg, "-") != 0)
		return csa_json_load_file(arg, max_len, out, err);
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		return csa_error(err, CSA_ENOMEM, "out of memory reading stdin");
	for (;;) {
		if (len == cap) {
			if (cap >= max_len) {
				free(buf);
				return csa_error(err, CSA_ELIMIT,
				                 "<stdin>: more than the limit of %zu bytes",
				                 max_len);
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return csa_error(err, CSA_ENOMEM, "out of memory reading stdin");
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t n = read(0, buf + len, cap - len);
		if (n < 0) {
			free(buf);
			return csa_error_sys(err, "cannot read stdin");
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	int rc = csa_json_parse(buf, len, "<stdin>", out, err);
	free(buf);
	return rc;
}

int csa_json_dump(const json_t *j, int pretty, char **out, size_t *len, struct csa_err *err)
{
	*out = NULL;
	if (len)
		*len = 0;
	size_t flags = JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10) |
	               (pretty ? JSON_INDENT(2) : JSON_COMPACT);
	char *s = json_dumps(j, flags | JSON_ENCODE_ANY);
	if (!s)
		return csa_error(err, CSA_ENOMEM, "cannot serialize JSON");
	size_t n = strlen(s);
	char *r = realloc(s, n + 2);
	if (!r) {
		free(s);
		return csa_error(err, CSA_ENOMEM, "cannot serialize JSON");
	}
	r[n] = '\n';
	r[n + 1] = '\0';
	*out = r;
	if (len)
		*len = n + 1;
	return CSA_OK;
}

int csa_json_utf8_ok(const char *s, size_t len)
{
	if (memchr(s, '\0', len))
		return 0;
	json_t *v = json_stringn(s, len); /* jansson's check, not a copy of it */
	json_decref(v);
	return v != NULL;
}

const char *csa_json_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

double csa_json_num(const json_t *obj, const char *key, double dflt)
{
	json_t *v = json_object_get(obj, key);
	return json_is_number(v) ? json_number_value(v) : dflt;
}

long long csa_json_int(const json_t *obj, const char *key, long long dflt)
{
	json_t *v = json_object_get(obj, key);
	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_real(v))
		return (long long)json_real_value(v);
	return dflt;
}

int csa_json_bool(const json_t *obj, const char *key, int dflt)
{
	json_t *v = json_object_get(obj, key);
	return json_is_boolean(v) ? json_is_true(v) : dflt;
}

int csa_json_set_str(json_t *obj, const char *key, const char *s)
{
	return json_object_set_new(obj, key, s ? json_string(s) : json_null());
}

void csa_json_print(const json_t *j, int pretty)
{
	char *s = NULL;
	if (csa_json_dump(j, pretty, &s, NULL, NULL) == CSA_OK) {
		fputs(s, stdout);
		free(s);
	}
}
