/*
 * The database half of csa backup and csa restore when the workspace's
 * tickets are in PostgreSQL (store/backup.h has the whole): every table
 * csa keeps in the database, as of one transaction, as files of the backup
 * directory, and back into an empty database. For src/store/ only.
 *
 * A dump is PostgreSQL's COPY text format, one file per table
 * ("db/<table>.copy", a line per row), all read in one REPEATABLE READ
 * READ ONLY transaction, so the tables agree with one another as of one
 * instant whatever the nodes write meanwhile. What the manifest keeps of
 * it (json): {"schema_version": N, "where": "host:port/db",
 * "tables": {"<table>": rows}, "sequences": {"<sequence>": last value}}.
 *
 * A load needs a database at the same schema version (the restore opens
 * it first, which applies this build's migrations) whose csa tables are
 * all empty: it copies every table in one transaction, checks each row
 * count against the dump's, and moves the sequences to their dumped
 * values, so versions drawn after the restore never repeat one in it.
 */
#ifndef CSA_STORE_BACKUP_PG_H
#define CSA_STORE_BACKUP_PG_H

#include <jansson.h>
#include "base/err.h"
#include "base/digest.h"

struct csa_pg;

/* Called for every file a dump wrote: its path relative to the backup
 * directory, its size and SHA-256. Nonzero stops the dump. */
typedef int (*csa_pg_dump_file_fn)(void *ctx, const char *rel, long long bytes,
                                   const char hex[CSA_SHA256_HEX_LEN], struct csa_err *err);

/* Dump every csa table into '<out_dir>/db/' (created), calling 'fn' for
 * each file; *meta receives the description above. */
int csa_pg_dump(struct csa_pg *pg, const char *out_dir, csa_pg_dump_file_fn fn, void *ctx,
                json_t **meta, struct csa_err *err);

/* Load the dump in '<from_dir>/db/' described by 'meta' into the empty
 * database of 'pg'. Nothing is written unless all of it is. */
int csa_pg_load(struct csa_pg *pg, const char *from_dir, const json_t *meta,
                struct csa_err *err);

#endif
