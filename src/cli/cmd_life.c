/* csa resolve | assign: a person closes a ticket or gives it to a team
 * member (flow/lifecycle.h). */
#include "cli/cli.h"
#include "base/ids.h"
#include "base/json.h"
#include "flow/lifecycle.h"
#include "flow/pipeline.h"
#include "store/ws.h"

#include <string.h>

static const char *const valued[] = {"--csat", "--notes", "--by", NULL};

/* Open the workspace and its pipeline, run fn, print its result. */
static int with_pipeline(int argc, char **argv,
                         int (*fn)(struct csa_pipeline *p, void *ctx, json_t **res,
                                   struct csa_err *err),
                         void *ctx)
{
	struct csa_ws *ws = cli_open_ws(argc, argv);
	if (!ws)
		return 1;
	struct csa_err err = {0};
	struct csa_pipeline *p = NULL;
	json_t *res = NULL;
	int rc = csa_pipeline_open(ws, &p, &err);
	if (!rc)
		rc = fn(p, ctx, &res, &err);
	if (!rc)
		csa_json_print(res, 1);
	json_decref(res);
	csa_pipeline_free(p);
	csa_ws_close(ws);
	return rc ? cli_fail(&err) : 0;
}

static int resolve(struct csa_pipeline *p, void *ctx, json_t **res, struct csa_err *err)
{
	return csa_lifecycle_resolve(p, ctx, res, err);
}

int cmd_resolve(int argc, char **argv)
{
	static const char usage[] = "csa resolve T_NO [--csat 1..5] [--notes TEXT] [--by WHO]";
	const char *id = cli_pos(argc, argv, 0, valued);
	if (!id || cli_pos(argc, argv, 1, valued))
		return cli_usage(usage);
	struct csa_err err = {0};
	if (csa_id_check(id, strlen(id), &err))
		return cli_fail(&err);
	struct csa_resolution r = {.ticket_id = id,
	                           .csat = -1,
	                           .notes = cli_opt(argc, argv, "--notes"),
	                           .by = cli_opt(argc, argv, "--by")};
	if (cli_opt_real(argc, argv, "--csat", 1, 5, &r.csat))
		return 1;
	if (!r.by)
		r.by = "cli";
	return with_pipeline(argc, argv, resolve, &r);
}

struct assign_args {
	const char *id, *member, *by, *notes;
};

static int assign(struct csa_pipeline *p, void *ctx, json_t **res, struct csa_err *err)
{
	struct assign_args *a = ctx;
	return csa_lifecycle_assign(p, a->id, a->member, a->by, a->notes, res, err);
}

int cmd_assign(int argc, char **argv)
{
	static const char usage[] = "csa assign T_NO MEMBER [--notes TEXT] [--by WHO]";
	struct assign_args a = {.id = cli_pos(argc, argv, 0, valued),
	                        .member = cli_pos(argc, argv, 1, valued),
	                        .by = cli_opt(argc, argv, "--by"),
	                        .notes = cli_opt(argc, argv, "--notes")};
	if (!a.id || !a.member || cli_pos(argc, argv, 2, valued))
		return cli_usage(usage);
	struct csa_err err = {0};
	if (csa_id_check(a.id, strlen(a.id), &err))
		return cli_fail(&err);
	if (!a.by)
		a.by = "cli";
	return with_pipeline(argc, argv, assign, &a);
}
