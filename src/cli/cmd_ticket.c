/* Ticket verbs: ticket create, message add, show, list. */
#include "cli/cli.h"
#include "base/json.h"
#include "base/ts.h"
#include "flow/lifecycle.h"
#include "store/schema.h"
#include "store/ticket.h"
#include "store/ws.h"

#include <stdio.h>
#include <string.h>

static const char *const valued[] = {"--json", "--side", "--status", "--priority", "--stage", NULL};

int cmd_ticket(int argc, char **argv)
{
	static const char usage[] = "csa ticket create --json FILE|-";
	const char *sub = cli_pos(argc, argv, 0, valued);
	const char *file = cli_opt(argc, argv, "--json");
	if (!sub || strcmp(sub, "create") != 0 || !file)
		return cli_usage(usage);
	struct csa_ws *ws = cli_open_ws(argc, argv);
	if (!ws)
		return 1;
	struct csa_err err = {0};
	json_t *ctx = NULL;
	struct csa_ticket tk = {0};
	const struct csa_config *cfg = csa_ws_config(ws);
	int rc = csa_json_load_arg(file, cfg->limits.max_document_bytes, &ctx, &err);
	int64_t now = csa_now_ms();
	if (!rc)
		rc = csa_ticket_build(cfg, ctx, now, &tk, &err);
	if (!rc)
		csa_lifecycle_note_new(cfg, &tk, now);
	csa_config_unref(cfg);
	if (!rc) {
		struct csa_lock *lk;
		if (!(rc = csa_store_lock(ws->store, tk.id, &lk, &err))) {
			rc = csa_store_commit(ws->store, &tk, CSA_DOC_ALL, &err);
			csa_store_unlock(ws->store, lk);
		}
	}
	if (!rc) {
		json_t *out = csa_ticket_state_json(&tk, 0);
		csa_json_print(out, 1);
		json_decref(out);
	}
	csa_ticket_release(&tk);
	json_decref(ctx);
	csa_ws_close(ws);
	return rc ? cli_fail(&err) : 0;
}

struct add_ctx {
	const struct csa_config *cfg;
	enum csa_side side;
	const json_t *msg;
	char msg_id[CSA_ID_MAX + 1];
	int duplicate;
};

static int add_one(void *vctx, struct csa_ticket *tk, unsigned *docs, struct csa_err *err)
{
	struct add_ctx *c = vctx;
	const char *id = NULL;
	int64_t now = csa_now_ms();
	int rc = csa_ticket_add_message(c->cfg, tk, c->side, c->msg, now, &id, err);
	if (rc == CSA_EEXIST) {
		/* A platform retry: already stored, nothing to write. */
		c->duplicate = 1;
		snprintf(c->msg_id, sizeof(c->msg_id), "%s", csa_json_str(c->msg, "message_id"));
		return CSA_OK;
	}
	if (rc)
		return rc;
	snprintf(c->msg_id, sizeof(c->msg_id), "%s", id);
	/* its sender joins the participants (I, and E for a reply) */
	json_t *msgs = json_object_get(c->side == CSA_SIDE_EXTERNAL ? tk->e : tk->i, "messages");
	csa_lifecycle_note_message(c->cfg, tk, c->side,
	                           json_array_get(msgs, json_array_size(msgs) - 1), now);
	*docs = c->side == CSA_SIDE_EXTERNAL ? CSA_DOC_E | CSA_DOC_I : CSA_DOC_I;
	return CSA_OK;
}

int cmd_message(int argc, char **argv)
{
	static const char usage[] = "csa message add T_NO --side external|internal --json FILE|-";
	const char *sub = cli_pos(argc, argv, 0, valued);
	const char *id = cli_pos(argc, argv, 1, valued);
	const char *side = cli_opt(argc, argv, "--side");
	const char *file = cli_opt(argc, argv, "--json");
	if (!sub || strcmp(sub, "add") != 0 || !id || !file)
		return cli_usage(usage);
	int s = csa_side_parse(side ? side : "external");
	if (s < 0)
		return cli_failf("--side must be external or internal, not '%s'", side);
	struct csa_err err = {0};
	if (csa_id_check(id, strlen(id), &err))
		return cli_fail(&err);
	struct csa_ws *ws = cli_open_ws(argc, argv);
	if (!ws)
		return 1;
	json_t *msg = NULL;
	struct add_ctx c = {.cfg = csa_ws_config(ws), .side = (enum csa_side)s};
	int rc = csa_json_load_arg(file, c.cfg->limits.max_document_bytes, &msg, &err);
	c.msg = msg;
	if (!rc)
		rc = csa_store_update(ws->store, id, 0, add_one, &c, &err);
	csa_config_unref(c.cfg);
	if (!rc) {
		json_t *out =
		    json_pack("{s:s, s:s, s:s, s:b}", "ticket_id", id, "message_id", c.msg_id,
		              "side", s ? "internal" : "external", "duplicate", c.duplicate);
		csa_json_print(out, 1);
		json_decref(out);
	}
	json_decref(msg);
	csa_ws_close(ws);
	return rc ? cli_fail(&err) : 0;
}

int cmd_show(int argc, char **argv)
{
	const char *id = cli_pos(argc, argv, 0, valued);
	if (!id)
		return cli_usage("csa show T_NO [--unified]");
	struct csa_err err = {0};
	if (csa_id_check(id, strlen(id), &err))
		return cli_fail(&err);
	struct csa_ws *ws = cli_open_ws(argc, argv);
	if (!ws)
		return 1;
	struct csa_ticket tk;
	int rc = csa_store_load(ws->store, id, &tk, &err);
	if (!rc) {
		json_t *out = csa_ticket_state_json(&tk, cli_flag(argc, argv, "--unified"));
		csa_json_print(out, 1);
		json_decref(out);
		csa_ticket_release(&tk);
	}
	csa_ws_close(ws);
	return rc ? cli_fail(&err) : 0;
}

static int list_one(void *ctx, const char *id, const json_t *t, const char *status)
{
	json_t *arr = ctx;
	json_t *row = csa_ticket_summary(id, t, status);
	json_array_append_new(arr, row);
	return 0;
}

int cmd_list(int argc, char **argv)
{
	struct csa_filter f = {cli_opt(argc, argv, "--status"), cli_opt(argc, argv, "--priority"),
	                       cli_opt(argc, argv, "--stage")};
	if (f.status && !csa_enum_has(csa_enum_conv_status, f.status))
		return cli_failf("--status must be one of %s", csa_enum_conv_status);
	if (f.priority && !csa_enum_has(csa_enum_priority, f.priority))
		return cli_failf("--priority must be one of %s", csa_enum_priority);
	if (f.stage && !csa_enum_has(csa_enum_stage, f.stage))
		return cli_failf("--stage must be one of %s", csa_enum_stage);
	struct csa_ws *ws = cli_open_ws(argc, argv);
	if (!ws)
		return 1;
	struct csa_err err = {0};
	json_t *arr = json_array();
	int rc = csa_store_scan(ws->store, &f, list_one, arr, &err);
	if (!rc)
		csa_json_print(arr, 1);
	json_decref(arr);
	csa_ws_close(ws);
	return rc ? cli_fail(&err) : 0;
}
