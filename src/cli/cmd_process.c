/* csa process | ingest: run the agent pipeline. */
#include "cli/cli.h"
#include "base/json.h"
#include "automation/control.h"
#include "flow/pipeline.h"
#include "store/ws.h"

#include <string.h>

int cmd_process(int argc, char **argv)
{
	const char *id = cli_pos(argc, argv, 0, NULL);
	if (!id)
		return cli_usage("csa process T_NO");
	struct csa_err err = {0};
	if (csa_id_check(id, strlen(id), &err))
		return cli_fail(&err);
	struct csa_ws *ws = cli_open_ws(argc, argv);
	if (!ws)
		return 1;
	struct csa_pipeline *p = NULL;
	struct csa_auto *a = NULL;
	json_t *res = NULL;
	int rc = csa_pipeline_open(ws, &p, &err);
	if (!rc)
		rc = csa_auto_open(ws, p, &a, &err);
	if (!rc)
		rc = csa_pipeline_process(p, id, &res, &err);
	if (!rc)
		csa_json_print(res, 1);
	json_decref(res);
	csa_auto_close(a);
	csa_pipeline_free(p);
	csa_ws_close(ws);
	return rc ? cli_fail(&err) : 0;
}

int cmd_ingest(int argc, char **argv)
{
	const char *file = cli_opt(argc, argv, "--json");
	if (!file)
		return cli_usage("csa ingest --json FILE|-");
	struct csa_ws *ws = cli_open_ws(argc, argv);
	if (!ws)
		return 1;
	struct csa_err err = {0};
	struct csa_pipeline *p = NULL;
	struct csa_auto *a = NULL;
	json_t *doc = NULL, *res = NULL;
	const struct csa_config *cfg = csa_ws_config(ws);
	int rc = csa_json_load_arg(file, cfg->limits.max_document_bytes, &doc, &err);
	csa_config_unref(cfg);
	if (!rc)
		rc = csa_pipeline_open(ws, &p, &err);
	if (!rc)
		rc = csa_auto_open(ws, p, &a, &err);
	if (!rc)
		rc = csa_pipeline_ingest(p, doc, &res, &err);
	if (!rc)
		csa_json_print(res, 1);
	json_decref(res);
	json_decref(doc);
	csa_auto_close(a);
	csa_pipeline_free(p);
	csa_ws_close(ws);
	return rc ? cli_fail(&err) : 0;
}
