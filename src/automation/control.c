/*
 * The automation controller's frame: opening and closing it over a
 * workspace, the configuration snapshot it reads, the segment phases of
 * automation/state.json, and the labels of each decision type. The jobs
 * themselves are in the auto_*.c files (see auto_internal.h).
 */
#include "automation/auto_internal.h"
#include "automation/ledger.h"
#include "automation/ticket_kpis.h"
#include "base/fsops.h"
#include "base/json.h"
#include "flow/pipeline.h"
#include "outbound/outbox.h"
#include "store/ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void auto_begin_evaluation(struct csa_auto *a)
{
	a->ev.baseline_ms = 0;
	a->ev.ntype_gate = 0;
	a->ev.nheldout = 0;
}

int csa_phase_num(const char *s)
{
	if (!s || strncmp(s, "PHASE_", 6) != 0 || s[6] < '1' || s[6] > '5' || s[7])
		return 0;
	return s[6] - '0';
}

/*
 * The configuration in effect and its settings, read once per snapshot.
 * The controller keeps every snapshot it has read until it closes, so what
 * its steps borrow from one (a gate's criteria, the decision types, the
 * settings) never dangles when a phase change or a rollback publishes a
 * new one: those happen a few times a day, so the list stays short.
 */
static const struct auto_snap *snap(const struct csa_auto *a)
{
	struct cfg_seen *c = a->cfg;
	const struct csa_config *fresh = csa_ws_config(a->ws);
	pthread_mutex_lock(&c->mu);
	if (c->now && fresh == c->now->cfg) {
		const struct auto_snap *cur = c->now;
		pthread_mutex_unlock(&c->mu);
		csa_config_unref(fresh); /* c->now holds it */
		return cur;
	}
	struct auto_snap *n = malloc(sizeof(*n));
	struct auto_snap **old = c->old;
	if (!n || (c->now && !(old = realloc(c->old, (c->nold + 1) * sizeof(*old))))) {
		/* without memory the snapshot in hand stays in effect (NULL
		 * only at open, which then fails) */
		free(n);
		const struct auto_snap *cur = c->now;
		pthread_mutex_unlock(&c->mu);
		csa_config_unref(fresh);
		return cur;
	}
	n->cfg = fresh;
	csa_auto_settings_read(fresh, &n->set);
	if (c->now) {
		old[c->nold++] = c->now;
		c->old = old;
	}
	c->now = n;
	pthread_mutex_unlock(&c->mu);
	return n;
}

const struct csa_config *auto_cfg(const struct csa_auto *a)
{
	return snap(a)->cfg;
}

const struct csa_auto_settings *auto_settings(const struct csa_auto *a)
{
	return &snap(a)->set;
}

int auto_workspace_phase(const struct csa_auto *a)
{
	int p = csa_phase_num(csa_json_str(auto_cfg(a)->root, "phase"));
	return p ? p : 1;
}

int auto_type_tracked(const struct csa_auto *a, const char *type)
{
	return csa_config_in_list(auto_cfg(a), "automation.decision_types", type);
}

int auto_phase_cap(const struct csa_auto *a, const char *type, const char *segment)
{
	json_t *caps = json_object_get(a->state, "caps");
	int cap = (int)csa_json_int(caps, type, 5);
	if (segment) {
		char key[200];
		snprintf(key, sizeof(key), "%s/%s", type, segment);
		int c = (int)csa_json_int(caps, key, 5);
		cap = c < cap ? c : cap;
	}
	return cap;
}

int auto_segment_phase(const struct csa_auto *a, const char *type, const char *segment)
{
	char key[200];
	snprintf(key, sizeof(key), "%s/%s", type, segment ? segment : "-");
	int p = (int)csa_json_int(json_object_get(a->state, "segments"), key, 1);
	int w = auto_workspace_phase(a), cap = auto_phase_cap(a, type, segment);
	p = p < w ? p : w;
	return p < cap ? p : cap;
}

/* Caps change only through csa_auto_phase_cap, which saves at once, and
 * maybe in another process (the CLI beside a server): what the store holds
 * is the truth, taken up before each save and each tick. */
void auto_refresh_caps(struct csa_auto *a)
{
	json_t *disk = NULL;
	if (a->ops->load_phases(a->store, &disk, NULL) != CSA_OK)
		return; /* never saved, or unreadable: the caps in memory stand */
	json_t *caps = json_object_get(disk, "caps");
	if (caps)
		json_object_set(a->state, "caps", caps);
	else
		json_object_del(a->state, "caps");
	json_decref(disk);
}

/* A failure is remembered (state_unsaved): a phase change or demotion is
 * in effect in this process at once, and reaches the disk at the next save
 * that works. Caller holds a->mu (or is opening). */
int auto_save_state(struct csa_auto *a, struct csa_err *err)
{
	auto_refresh_caps(a);
	return auto_write_state(a, err);
}

int auto_write_state(struct csa_auto *a, struct csa_err *err)
{
	struct csa_err e = {0};
	int rc = a->ops->save_phases(a->store, a->state, &e);
	a->state_unsaved = rc != CSA_OK;
	if (rc) {
		a->state_err = e;
		if (err)
			*err = e;
	}
	return rc;
}

/*
 * After a demotion for poor quality, the decisions made before it say
 * nothing about whether the scope has recovered: gates and the monitor
 * then count only what came after (state "evidence_since": {"type" or
 * "type/segment": ms}). Without this the old evidence promotes the scope
 * again at the next tick and the old sample demotes it again.
 */
int64_t auto_evidence_since(const struct csa_auto *a, const char *type, const char *segment)
{
	json_t *m = json_object_get(a->state, "evidence_since");
	int64_t t = type ? csa_json_int(m, type, 0) : 0;
	if (type && segment) {
		char key[200];
		snprintf(key, sizeof(key), "%s/%s", type, segment);
		int64_t s = csa_json_int(m, key, 0);
		t = s > t ? s : t;
	}
	return t;
}

void auto_restart_evidence(struct csa_auto *a, const char *scope)
{
	json_t *m = json_object_get(a->state, "evidence_since");
	if (!json_is_object(m)) {
		m = json_object();
		json_object_set_new(a->state, "evidence_since", m);
	}
	json_object_set_new(m, scope, json_integer(csa_now_ms()));
	auto_save_state(a, NULL);
}

/* ---- labels of a decision type ---------------------------------------- */

int auto_valid_label(const struct csa_auto *a, const char *type, const char *v)
{
	if (!v)
		return 0;
	if (strcmp(type, "category") == 0)
		return csa_config_in_list(auto_cfg(a), "taxonomy.categories", v);
	if (strcmp(type, "priority") == 0)
		return csa_config_in_list(auto_cfg(a), "taxonomy.priorities", v);
	if (strcmp(type, "strategy") == 0)
		return csa_config_in_list(auto_cfg(a), "taxonomy.strategies", v);
	return strcmp(v, "NONE") == 0 ||
	       json_object_get(csa_config_get(auto_cfg(a), "escalation_paths"), v) != NULL;
}

json_t *auto_labels_of(const struct csa_auto *a, const char *type)
{
	if (strcmp(type, "escalation") == 0) {
		json_t *l = json_pack("[s]", "NONE");
		const char *k;
		json_t *v;
		json_object_foreach(csa_config_get(auto_cfg(a), "escalation_paths"), k, v)
		    json_array_append_new(l, json_string(k));
		return l;
	}
	const char *path = strcmp(type, "category") == 0   ? "taxonomy.categories"
	                   : strcmp(type, "priority") == 0 ? "taxonomy.priorities"
	                                                   : "taxonomy.strategies";
	return json_deep_copy(csa_config_get(auto_cfg(a), path));
}

/* An automated resolution sent to a customer, when a wrong one counts as a
 * critical error (automation.critical_errors.wrong_automated_resolution). */
int csa_auto_wrong_is_critical(const struct csa_auto *a, const char *type, const char *value)
{
	return strcmp(type, "strategy") == 0 && value &&
	       strcmp(value, "AUTOMATED_RESOLUTION") == 0 &&
	       auto_settings(a)->wrong_automated_resolution;
}

struct csa_ledger *csa_auto_ledger(struct csa_auto *a)
{
	return a->ledger;
}

int csa_auto_open(struct csa_ws *ws, struct csa_pipeline *p, struct csa_auto **out,
                  struct csa_err *err)
{
	struct csa_auto *a = calloc(1, sizeof(*a));
	if (!a)
		return csa_error(err, CSA_ENOMEM,
		                 "out of memory opening the automation controller");
	a->ws = ws;
	a->pipe = p;
	a->open_fd = -1;
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->decided, NULL);
	if (!(a->cfg = calloc(1, sizeof(*a->cfg)))) {
		free(a);
		return csa_error(err, CSA_ENOMEM,
		                 "out of memory opening the automation controller");
	}
	pthread_mutex_init(&a->cfg->mu, NULL);
	/* before this process's commits start, so that it observes them */
	char path[PATH_SZ];
	csa_ws_path(ws, ".csa/kpis.idx", path, sizeof(path));
	int rc = csa_ticket_kpis_open(ws->store, path, &a->kpis, err);
	if (rc)
		goto fail;
	/* the first snapshot, so that a later one that finds no memory has
	 * one to stay with */
	if (!snap(a)) {
		rc = csa_error(err, CSA_ENOMEM, "out of memory opening the automation controller");
		goto fail;
	}
	csa_ws_path(ws, "automation", path, sizeof(path));
	if ((rc = csa_fs_mkdirs(path, err)))
		goto fail;
	/* the store follows the tickets, as the outbox does: in their
	 * database, shared by every node, or automation.db beside them */
	if (ws->pg) {
		a->ops = &auto_pg_ops;
		if ((rc = auto_pg_open(ws->pg, &a->store, err)))
			goto fail;
		snprintf(a->db_path, sizeof(a->db_path), "csa_auto_decisions at %s",
		         auto_pg_where(a->store));
	} else {
		csa_ws_path(ws, "automation.db", a->db_path, sizeof(a->db_path));
		a->ops = &auto_sqlite_ops;
		if ((rc = ws->memory ? auto_sqlite_open_memory(a->db_path, &a->store, err)
		                     : a->ops->open(a->db_path, &a->store, err)))
			goto fail;
	}
	rc = a->ops->load_phases(a->store, &a->state, err);
	if (rc == CSA_ENOENT) {
		a->state = json_pack("{s:{}}", "segments");
		rc = CSA_OK;
	}
	if (rc)
		goto fail;
	if (!json_is_object(json_object_get(a->state, "segments")))
		json_object_set_new(a->state, "segments", json_object());
	/* the outbox the server delivers: alerts are queued there, not
	 * posted while a->mu is held */
	if ((rc = csa_outbox_open_ws(ws, 0, &a->outbox, err)))
		goto fail;
	if ((rc = csa_ledger_open_ws(ws, &a->ledger, err)))
		goto fail;
	/* a failure alert left open by an earlier run closes at the next
	 * append that succeeds */
	int failing;
	if (a->ops->alert_is_open(a->store, "AUDIT_LEDGER_FAILURE", NULL, &failing, "", NULL) ==
	    CSA_OK)
		a->ledger_failing = failing;
	/* markers of processes that ended without closing go once their
	 * tickets are recovered, so a recovery cut short runs again; a store
	 * shared by machines also knows the claims of processes gone from
	 * any of them */
	json_t *dead = json_array(), *claims = json_array(), *m;
	size_t i;
	if ((rc = auto_mark_open(a, dead, err)) == CSA_OK && json_array_size(dead))
		rc = auto_recover(a, err);
	json_array_extend(claims, dead);
	if (rc == CSA_OK && a->ops->dead_claims)
		rc = a->ops->dead_claims(a->store, claims, err);
	if (rc == CSA_OK && json_array_size(claims))
		rc = auto_settle_dead_claims(a, claims, err);
	json_array_foreach(dead, i, m) if (rc == CSA_OK) csa_fs_unlink(json_string_value(m));
	json_decref(dead);
	json_decref(claims);
	if (rc)
		goto fail;
	/* once, after recovery: from here on each change keeps them */
	pthread_mutex_lock(&a->mu);
	rc = auto_counts_reload(a, err);
	pthread_mutex_unlock(&a->mu);
	if (rc)
		goto fail;
	struct csa_flow_hooks h = {.ctx = a,
	                           .begin_run = auto_begin_run,
	                           .on_decision = auto_on_decision,
	                           .decisions_done = auto_decisions_done,
	                           .run_abandoned = auto_run_abandoned,
	                           .end_run = auto_end_run};
	csa_pipeline_set_hooks(p, &h);
	*out = a;
	return CSA_OK;
fail:
	csa_auto_close(a);
	return rc;
}

void csa_auto_close(struct csa_auto *a)
{
	if (!a)
		return;
	if (a->pipe)
		csa_pipeline_set_hooks(a->pipe, NULL);
	csa_ledger_close(a->ledger);
	csa_outbox_close(a->outbox);
	csa_ticket_kpis_close(a->kpis);
	if (a->ops)
		a->ops->close(a->store);
	if (a->open_marker[0])
		csa_fs_unlink(a->open_marker);
	if (a->open_fd >= 0)
		close(a->open_fd);
	json_decref(a->recovery);
	json_decref(a->state);
	free(a->thr);
	pthread_mutex_destroy(&a->mu);
	pthread_cond_destroy(&a->decided);
	for (size_t i = 0; i < a->cfg->nold; i++) {
		csa_config_unref(a->cfg->old[i]->cfg);
		free(a->cfg->old[i]);
	}
	free(a->cfg->old);
	if (a->cfg->now)
		csa_config_unref(a->cfg->now->cfg);
	free(a->cfg->now);
	pthread_mutex_destroy(&a->cfg->mu);
	free(a->cfg);
	free(a);
}
