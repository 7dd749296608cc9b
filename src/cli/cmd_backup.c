/* csa backup / csa restore: a consistent copy of a workspace while it is in
 * use, and bringing one back (store/backup.h). */
#include "base/json.h"
#include "cli/cli.h"
#include "store/backup.h"
#include "store/ws.h"

#include <stdio.h>

int cmd_backup(int argc, char **argv)
{
	static const char usage[] = "csa backup --out DIR";
	const char *out = cli_opt(argc, argv, "--out");
	if (!out || !*out)
		return cli_usage(usage);
	struct csa_ws *ws = cli_open_ws(argc, argv);
	if (!ws)
		return 1;
	struct csa_err err = {0};
	json_t *rep = NULL;
	int rc = csa_backup_take(ws, out, &rep, &err);
	csa_ws_close(ws);
	if (rc)
		return cli_fail(&err);
	csa_json_print(rep, 1);
	json_decref(rep);
	return 0;
}

int cmd_restore(int argc, char **argv)
{
	static const char usage[] = "csa restore BACKUP_DIR --dir NEW_WORKSPACE";
	static const char *const valued[] = {NULL};
	const char *from = cli_pos(argc, argv, 0, valued);
	if (!from || cli_pos(argc, argv, 1, valued))
		return cli_usage(usage);
	struct csa_err err = {0};
	json_t *rep = NULL;
	if (csa_backup_restore(from, cli_ws_dir(argc, argv), &rep, &err))
		return cli_fail(&err);
	csa_json_print(rep, 1);
	json_decref(rep);
	return 0;
}
