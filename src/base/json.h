/*
 * JSON helpers over jansson: parsing with "where" in every error, dumping
 * with the project's formatting, and typed field access with clear errors.
 */
#ifndef CSA_BASE_JSON_H
#define CSA_BASE_JSON_H

#include <jansson.h>
#include <stddef.h>
#include "base/err.h"

/* Parse 'len' bytes. 'source' names the input in errors ("E_42.json",
 * "<stdin>", "request body"). Rejects NUL bytes and duplicate keys.
 * On success *out is a new reference the caller must json_decref(). */
int csa_json_parse(const char *buf, size_t len, const char *source, json_t **out,
                   struct csa_err *err);

/* Read and parse a file (at most max_len bytes). */
int csa_json_load_file(const char *path, size_t max_len, json_t **out, struct csa_err *err);

/* Read all of stdin ("-") or a file, then parse. */
int csa_json_load_arg(const char *path_or_dash, size_t max_len, json_t **out, struct csa_err *err);

/* Serialize compactly (pretty when 'pretty') with a trailing newline.
 * Caller frees *out with free(). Keys keep insertion order. On failure
 * *out is NULL (and *len 0), so a caller may free(*out) either way. */
int csa_json_dump(const json_t *j, int pretty, char **out, size_t *len, struct csa_err *err);

/* Whether s (len bytes) is valid UTF-8 without NUL bytes, as a JSON
 * string must be (labels, names and text headed for JSON output). */
int csa_json_utf8_ok(const char *s, size_t len);

/* Typed getters: NULL / default when absent or of another type. */
const char *csa_json_str(const json_t *obj, const char *key);
double csa_json_num(const json_t *obj, const char *key, double dflt);
long long csa_json_int(const json_t *obj, const char *key, long long dflt);
int csa_json_bool(const json_t *obj, const char *key, int dflt);

/* Set obj[key] to a string, or null when s is NULL. Returns 0 or -1. */
int csa_json_set_str(json_t *obj, const char *key, const char *s);

/* Print a JSON value to stdout followed by a newline (CLI results). */
void csa_json_print(const json_t *j, int pretty);

#endif
