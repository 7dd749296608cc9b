/*
 * Backups of a workspace while the service runs (spec §8.1), and their
 * restore. With the tickets in PostgreSQL, the database's tables take the
 * place of Tickets/ and the journal: db/<table>.copy, dumped in one
 * transaction, and the manifest's "database" (store/backup_pg.h); a
 * restore loads them into the empty database the restored workspace is
 * configured for.
 *
 * A backup is a directory (0700, every file 0600):
 *
 *   MANIFEST.json       {"format": "csa-backup 1", "created_at", "source",
 *                        "tickets", "files": [{"path", "bytes", "sha256"}]}
 *   Tickets/...         the three documents of every ticket, all as of one
 *                       instant: hard-linked under the store's hold (no
 *                       commit half done, none starting: csa_store_hold)
 *                       into a staging directory of the workspace, then
 *                       copied out after the hold is let go
 *   .csa/journal        the journal as of that instant (copied under the
 *                       hold), so a commit another process left for
 *                       recovery is completed when the copy is opened
 *   *.db, .csa/search.db  every SQLite database, through SQLite's online
 *                       backup (a read transaction: one commit's state)
 *   audit/ledger.jsonl  up to its last whole record
 *   everything else     csa.json, tokens.json, models/, kb/, automation/
 *                       (with the open markers of running controllers: a
 *                       restored workspace is then recovered as after a
 *                       crash), rollback/ ...: files replaced by rename, so
 *                       a copy is one version
 *
 * The manifest is written last: a directory without one is no backup. A
 * staging directory left by a backup whose process died is removed by the
 * next backup.
 * What is not copied: .csa/lock, .csa/tmp, .csa/history.idx (a cache
 * keyed to file identities, rebuilt on open), SQLite's -wal/-shm/-journal
 * files (the backup API reads through them), lost+found/.
 */
#ifndef CSA_STORE_BACKUP_H
#define CSA_STORE_BACKUP_H

#include <jansson.h>
#include "base/err.h"

struct csa_ws;

/* Name of the manifest inside a backup directory. */
#define CSA_BACKUP_MANIFEST "MANIFEST.json"

/*
 * Back up the open workspace 'ws' into 'out_dir', which must not exist
 * or be empty, and must not be inside the workspace. *report (may be
 * NULL) receives {"dir", "tickets", "files", "bytes", "hold_ms",
 * "duration_ms"}. On failure the partial backup has no manifest (and is
 * removed when this call created it) and the error says what and where.
 */
int csa_backup_take(struct csa_ws *ws, const char *out_dir, json_t **report, struct csa_err *err);

/*
 * Check backup 'dir' against its manifest: every file listed is there
 * with its size and SHA-256, no other file is there, and every path is a
 * plain relative one. CSA_ECORRUPT naming the file at the first mismatch.
 * *manifest (may be NULL) receives the parsed manifest.
 */
int csa_backup_check(const char *dir, json_t **manifest, struct csa_err *err);

/*
 * Restore backup 'dir' into 'target' (must not exist or be empty):
 * csa_backup_check() first, so a damaged backup writes nothing; then the
 * files are copied (0600, fsynced), the workspace layout completed, and
 * the workspace opened once, which runs the store's recovery over the
 * backed-up journal. *report (may be NULL): {"dir", "files", "tickets"}.
 */
int csa_backup_restore(const char *dir, const char *target, json_t **report, struct csa_err *err);

/*
 * The scheduled backup (`csa serve` with backup.dir): when the newest
 * backup under 'parent' (directories named by their UTC time,
 * "csa-YYYYMMDDTHHMMSSZ") is older than 'every_s' seconds, or there is
 * none, take one into a new such directory, then remove the oldest
 * complete ones beyond 'keep' (incomplete ones, without a manifest, older
 * than the newest complete one too). *report (may be NULL) receives the
 * backup's report, or null when none was due.
 */
int csa_backup_scheduled(struct csa_ws *ws, const char *parent, int keep, double every_s,
                         json_t **report, struct csa_err *err);

#endif
