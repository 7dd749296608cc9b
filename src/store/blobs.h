/*
 * Named documents a workspace's processes share beside its tickets: the
 * decision models (models/<type>.model), the LLM calibration
 * (models/llm-calibration.json) and the knowledge base (kb/<name>.md).
 *
 * A name is "<area>/<file>": area "models", "kb" or "config" (the
 * configuration nodes share in PostgreSQL: store/ws.c), file 1-200 bytes
 * without '/' or control characters, not starting with a dot, checked
 * before any path is built. A put is atomic and durable: a reader gets the old bytes or the
 * new ones, never a mix. version() changes whenever a document is put, so
 * a process notices another's retraining and reloads.
 *
 * Behind a table of function pointers like the ticket store (store.h):
 * the files of the workspace (blobs_file.c), or, when the tickets are in
 * PostgreSQL, the table csa_blobs (blobs_pg.c), which every node reads.
 */
#ifndef CSA_STORE_BLOBS_H
#define CSA_STORE_BLOBS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "base/err.h"

struct csa_blobs;

struct csa_blobs_ops {
	/* The bytes of 'name' (a new buffer, NUL-terminated past *len);
	 * CSA_ENOENT when absent, CSA_ELIMIT when over max bytes. */
	int (*get)(struct csa_blobs *b, const char *name, size_t max, char **buf, size_t *len,
	           struct csa_err *err);
	int (*put)(struct csa_blobs *b, const char *name, const void *buf, size_t len,
	           struct csa_err *err);
	/* The file names of an area ("kb"), sorted: a new JSON array. */
	int (*list)(struct csa_blobs *b, const char *area, json_t **names, struct csa_err *err);
	/* A value that changes whenever 'name' is put; 0 when absent. */
	uint64_t (*version)(struct csa_blobs *b, const char *name);
	void (*close)(struct csa_blobs *b);
};

struct csa_blobs {
	const struct csa_blobs_ops *ops;
};

/* CSA_OK, or CSA_EINVAL naming what is wrong with 'name'. */
int csa_blobs_name_check(const char *name, struct csa_err *err);

/* The file backend over the workspace directory 'root'. */
int csa_blobs_open_files(const char *root, struct csa_blobs **out, struct csa_err *err);

/* The database backend (blobs_pg.c), on the workspace's pool: the
 * workspace opens it when its tickets are in PostgreSQL. */
struct csa_pg;
int csa_blobs_open_pg(struct csa_pg *pg, struct csa_blobs **out, struct csa_err *err);

static inline int csa_blobs_get(struct csa_blobs *b, const char *name, size_t max, char **buf,
                                size_t *len, struct csa_err *err)
{
	return b->ops->get(b, name, max, buf, len, err);
}

static inline int csa_blobs_put(struct csa_blobs *b, const char *name, const void *buf, size_t len,
                                struct csa_err *err)
{
	return b->ops->put(b, name, buf, len, err);
}

static inline int csa_blobs_list(struct csa_blobs *b, const char *area, json_t **names,
                                 struct csa_err *err)
{
	return b->ops->list(b, area, names, err);
}

static inline uint64_t csa_blobs_version(struct csa_blobs *b, const char *name)
{
	return b->ops->version(b, name);
}

static inline void csa_blobs_close(struct csa_blobs *b)
{
	if (b)
		b->ops->close(b);
}

#endif
