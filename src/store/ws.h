/*
 * A workspace: the directory a support team's csa state lives in.
 *
 *   csa.json            configuration (base/config.h)
 *   Tickets/T_ext/      E_<T_NO>.json  external conversation (spec §3.2.1)
 *   Tickets/T_int/      I_<T_NO>.json  internal conversation (spec §3.2.2)
 *   Tickets/tickets/    T_<T_NO>.json  workflow state        (spec §3.2.3)
 *   audit/  models/  kb/                ledger, model files, knowledge base
 *   .csa/               journal, lock file and scratch space of the store,
 *                       online.db: the online-learning log (store/learnlog.h)
 *
 * Opening a workspace runs store recovery (store/mesh.h), so every reader
 * sees only whole commits.
 */
#ifndef CSA_STORE_WS_H
#define CSA_STORE_WS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "base/config.h"
#include "base/err.h"

struct csa_store;
struct csa_blobs;
struct csa_learnlog;
struct csa_ws_cfg;
struct csa_pg;

struct csa_ws {
	char *root;              /* directory, as given; owned */
	struct csa_store *store; /* ticket store (file mesh or PostgreSQL) */
	/* The database of a workspace whose tickets are in PostgreSQL
	 * (DATABASE_URL or store.url), NULL otherwise: one pool of
	 * connections (store/pg.h) that every PostgreSQL backend of this
	 * process borrows (tickets, outbox, channel map, tokens), owned by
	 * the workspace and closed after them by csa_ws_close(). */
	struct csa_pg *pg;
	struct csa_blobs *blobs; /* models and knowledge base (store/blobs.h) */
	/* The online-learning log the pipelines of every process (every node)
	 * share (store/learnlog.h): .csa/online.db, or the database's table.
	 * NULL in a scratch workspace (the replay's models learn on their
	 * own, in memory, as they always did) and an observer's. */
	struct csa_learnlog *learnlog;
	/* The configuration in effect, read with csa_ws_config(): private. */
	pthread_mutex_t cfg_mu;       /* guards cfg_now's pointer and count */
	pthread_mutex_t cfg_write_mu; /* one change of configuration at a time */
	struct csa_ws_cfg *cfg_now;
	json_t *cfg_over; /* this process's overrides, merged over csa.json */
	int phase_cap;    /* PHASE of the environment: 1..5, 0 for none */
	/* opened with csa_ws_open_scratch() or _memory(); set before the
	 * store opens */
	int scratch;
	/* opened with csa_ws_open_memory(): nothing of it is to outlive the
	 * process, so the controller keeps its database in memory too */
	int memory;
	uint64_t cfg_version; /* the database's configuration document's, when
	                       * published (under cfg_write_mu) */
};

/* Create the layout and a csa.json with the defaults in 'dir' (created if
 * missing). An existing csa.json is kept; existing tickets are untouched.
 * A new workspace also gets the marker CSA_WS_KB_SEED: the store sits
 * below the agents, so the default knowledge base is written into kb/ by
 * csa_kb_seed() (agents/kb.h), which `csa init` and csa_pipeline_open()
 * call, and which removes the marker. */
int csa_ws_init(const char *dir, struct csa_err *err);

/* Relative path of the marker of a workspace whose kb/ still awaits the
 * default articles. */
#define CSA_WS_KB_SEED ".csa/kb-defaults-pending"

/* Open an initialised workspace and recover its store. *out is freed with
 * csa_ws_close(). */
int csa_ws_open(const char *dir, struct csa_ws **out, struct csa_err *err);

/* Open a workspace to look at it only (`csa monitor`): no recovery, no
 * layout created, the store refuses commits (store/mesh.h,
 * csa_mesh_open_observer). Closed with csa_ws_close(). */
int csa_ws_open_observer(const char *dir, struct csa_ws **out, struct csa_err *err);

/*
 * Open a scratch workspace: one whose content may be thrown away, such as
 * the replay simulator's. Its ticket store does not wait for the disk (no
 * fdatasync at the commit point, no syncfs or fsync in checkpoints) and
 * writes a commit's documents over the old files in place instead of
 * renaming new ones over them (store/mesh.h). Loads (under the ticket's
 * lock), a failed commit's undo, the journal and recovery on open are as
 * csa_ws_open()'s; a reader without the lock (load_doc, scan) must not run
 * during a commit, and a power loss may leave anything torn: for one
 * process that reads between its own commits, never a team's workspace.
 */
int csa_ws_open_scratch(const char *dir, struct csa_ws **out, struct csa_err *err);

/*
 * Open a scratch workspace whose tickets live in this process's memory
 * only (store/memstore.h), for a replay whose workspace is removed when it
 * ends: the same commits, checks and loads as csa_ws_open_scratch()'s
 * files give, without writing a ticket file. The automation controller
 * opened on it keeps its database in memory as well (ws->memory);
 * everything else of the workspace (csa.json, models/, the ledger) is in
 * 'dir' as usual. The tickets are gone when it is closed; csa_ws_close()
 * as usual.
 */
int csa_ws_open_memory(const char *dir, struct csa_ws **out, struct csa_err *err);

/* Is what the workspace's requests need there? CSA_OK for files; with
 * the database, one round trip to it (CSA_EBACKEND naming the server and
 * its answer when it is away: /readyz says so). */
int csa_ws_probe(struct csa_ws *ws, struct csa_err *err);

/* Open a workspace with its tickets in its own files (Tickets/), whatever
 * DATABASE_URL or store.url say: the other side of a transfer. */
int csa_ws_open_files(const char *dir, struct csa_ws **out, struct csa_err *err);

/*
 * Copy every ticket of 'from' into 'to' (csa migrate: a workspace's files
 * into its database; csa export: back out). A ticket 'to' lacks is
 * committed there whole, in groups (the commit stamps its documents as
 * any commit does: E's and I's last_updated, T's last_synchronized); one
 * it has with the same documents, stamps aside, is left alone; one it has
 * with other documents is a conflict, left as it is and named. *report: {"tickets", "copied", "same", "conflicts": [ids]}
 * (new reference). No other process should write either side meanwhile.
 */
int csa_ws_transfer(struct csa_ws *from, struct csa_ws *to, json_t **report,
                    struct csa_err *err);

/* Checkpoint the store journal and free everything. NULL is a no-op. */
void csa_ws_close(struct csa_ws *ws);

/*
 * The configuration in effect: csa.json over the defaults, with this
 * process's overrides. A snapshot never changes once published; a change
 * (a phase change, a rollback that restores csa.json) publishes a new one,
 * and whoever holds the old one keeps reading it until it lets go. So a
 * pipeline run, a request or a controller step takes one snapshot at its
 * start and reads a consistent configuration throughout.
 *
 * csa_ws_config() returns a new reference; release it with
 * csa_config_unref() (which takes only what csa_ws_config() returned).
 */
const struct csa_config *csa_ws_config(struct csa_ws *ws);
void csa_config_unref(const struct csa_config *cfg);

/* Merge the JSON object 'over' into this process's configuration (never
 * into csa.json), now and after every reload: MODEL_CONFIG_PATH, tests.
 * On failure (the result does not validate) nothing changes. */
int csa_ws_config_override(struct csa_ws *ws, const json_t *over, struct csa_err *err);

/* Hold the workspace phase at or below 'cap' (1..5) for this process,
 * now and after every reload: a deployment may hold back autonomy the
 * gates have earned, never grant more. *lowered (may be NULL) says
 * whether the phase in effect was lowered. */
int csa_ws_config_cap_phase(struct csa_ws *ws, int cap, int *lowered, struct csa_err *err);

/* Read csa.json again (after a rollback restored it) and publish it. On
 * failure the configuration in effect stays. */
int csa_ws_config_reload(struct csa_ws *ws, struct csa_err *err);

/* With the tickets in PostgreSQL the configuration document every node
 * shares is the database's (config/csa.json) once it has one; the local
 * csa.json names the database and is the configuration until then.
 * share() puts the local csa.json there (less store.url, each node's
 * own) unless the database has a configuration already (`csa init`; any
 * change of configuration shares it too). refresh() reloads it when
 * another process or node changed it (a phase change, a rollback): a
 * server calls it twice a second; the version it compares is read at
 * most twice a second (store/blobs.h). Both are no-ops on a single host. */
int csa_ws_config_share(struct csa_ws *ws, struct csa_err *err);
int csa_ws_config_refresh(struct csa_ws *ws, struct csa_err *err);

/* The workspace's configuration document as stored (csa.json, without
 * this process's overrides): a new buffer, NUL-terminated past *len. */
int csa_ws_config_document(struct csa_ws *ws, char **buf, size_t *len, struct csa_err *err);

/* Replace the configuration document with 'buf' (a rollback restores
 * one) and publish it. Validated first: on failure nothing changes. */
int csa_ws_config_replace(struct csa_ws *ws, const char *buf, size_t len, struct csa_err *err);

/* The workspace phase in effect, 1..5. */
int csa_ws_phase(struct csa_ws *ws);

/* Write "phase": "PHASE_<n>" into csa.json durably, then publish it. */
int csa_ws_set_phase(struct csa_ws *ws, int phase, struct csa_err *err);

/* Path of a file inside the workspace: root + "/" + rel. Returns 0, or
 * CSA_ELIMIT when it does not fit. */
int csa_ws_path(const struct csa_ws *ws, const char *rel, char *out, size_t outsz);

#endif
