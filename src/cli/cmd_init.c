/* csa init: create a workspace. */
#include "cli/cli.h"
#include "agents/kb.h"
#include "base/json.h"
#include "store/ws.h"

int cmd_init(int argc, char **argv)
{
	const char *dir = cli_pos(argc, argv, 0, NULL);
	if (!dir)
		dir = cli_ws_dir(argc, argv);
	struct csa_err err = {0};
	struct csa_blobs *docs = NULL;
	int rc = csa_ws_init(dir, &err);
	if (rc == CSA_OK && (rc = csa_blobs_open_files(dir, &docs, &err)) == CSA_OK)
		rc = csa_kb_seed(docs, dir, &err);
	csa_blobs_close(docs);
	/* open it once: the ticket store is created where csa.json or
	 * DATABASE_URL puts it (a database gets its schema now), and a store
	 * that cannot be reached is reported here rather than at first use;
	 * a database without a configuration gets this one, for every node */
	struct csa_ws *ws = NULL;
	if (rc == CSA_OK && (rc = csa_ws_open(dir, &ws, &err)) == CSA_OK) {
		rc = csa_ws_config_share(ws, &err);
		csa_ws_close(ws);
	}
	if (rc)
		return cli_fail(&err);
	json_t *out = json_pack("{s:s, s:b}", "workspace", dir, "initialized", 1);
	csa_json_print(out, 1);
	json_decref(out);
	return 0;
}
