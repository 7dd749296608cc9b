/*
 * A workspace: the directory a support team's csa state lives in.
 *
 *   csa.json            configuration (base/config.h)
 *   Tickets/T_ext/      E_<T_NO>.json  external conversation (spec §3.2.1)
 *   Tickets/T_int/      I_<T_NO>.json  internal conversation (spec §3.2.2)
 *   Tickets/tickets/    T_<T_NO>.json  workflow state        (spec §3.2.3)
 *   audit/  models/  kb/                ledger, model files, knowledge base
 *   .csa/               journal, lock file and scratch space of the store
 *
 * Opening a workspace runs store recovery (store/mesh.h), so every reader
 * sees only whole commits.
 */
#ifndef CSA_STORE_WS_H
#define CSA_STORE_WS_H

#include <stddef.h>
#include "base/config.h"
#include "base/err.h"

struct csa_store;

struct csa_ws {
	char *root;              /* directory, as given; owned */
	struct csa_config cfg;   /* loaded csa.json */
	struct csa_store *store; /* ticket store (file mesh) */
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

/* Checkpoint the store journal and free everything. NULL is a no-op. */
void csa_ws_close(struct csa_ws *ws);

/* Path of a file inside the workspace: root + "/" + rel. Returns 0, or
 * CSA_ELIMIT when it does not fit. */
int csa_ws_path(const struct csa_ws *ws, const char *rel, char *out, size_t outsz);

#endif
