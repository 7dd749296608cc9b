/*
 * Labelled text rows from CSV (RFC 4180: quoted fields, doubled quotes,
 * commas and newlines inside quotes, CRLF) or JSONL (one object per line),
 * selecting a text column and a label column by name.
 */
#ifndef CSA_MODEL_DATASET_H
#define CSA_MODEL_DATASET_H

#include <stddef.h>
#include "base/err.h"

struct csa_dataset {
	char **text;
	char **label;
	size_t n, cap;
};

/* Read 'path' ('.jsonl'/'.json' by extension or a first '{', else CSV).
 * Errors name the file and line. Rows with an empty label are refused. */
int csa_dataset_load(const char *path, const char *text_col, const char *label_col,
                     struct csa_dataset *ds, struct csa_err *err);

/* Append one row (copied). */
int csa_dataset_add(struct csa_dataset *ds, const char *text, const char *label);

void csa_dataset_release(struct csa_dataset *ds);

/* Distinct labels in first-seen order (pointers into ds). Caller frees the
 * array. */
size_t csa_dataset_labels(const struct csa_dataset *ds, const char ***out);

#endif
