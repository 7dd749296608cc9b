/* csa backup / csa restore: a consistent copy of a workspace while it is in
 * use, and bringing one back (store/backup.h); csa migrate / csa export:
 * its tickets into its database and back out (store/ws.h). */
#include "base/json.h"
#include "cli/cli.h"
#include "store/backup.h"
#include "store/store.h"
#include "store/ws.h"

#include <stdio.h>
#include <string.h>

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

/* A transfer between the workspace's database and a directory of files:
 * 'into_db' from DIR's Tickets/ into the database, else back out. */
static int transfer(int argc, char **argv, const char *opt, int into_db)
{
	struct csa_ws *ws = cli_open_ws(argc, argv);
	if (!ws)
		return 1;
	if (strcmp(ws->store->ops->name, "mesh") == 0) {
		csa_ws_close(ws);
		return cli_failf("%s: the tickets of '%s' are in files already: set DATABASE_URL "
		                 "(or store.url in csa.json) to the database",
		                 into_db ? "migrate" : "export", cli_ws_dir(argc, argv));
	}
	/* the other side: a directory of files, by default the workspace's own
	 * Tickets/ (then unsetting DATABASE_URL goes back to files) */
	const char *dir = cli_opt(argc, argv, opt);
	if (!dir)
		dir = ws->root;
	struct csa_err err = {0};
	struct csa_ws *files = NULL;
	int rc = into_db ? CSA_OK : csa_ws_init(dir, &err);
	if (rc == CSA_OK)
		rc = csa_ws_open_files(dir, &files, &err);
	json_t *rep = NULL;
	if (rc == CSA_OK)
		rc = into_db ? csa_ws_transfer(files, ws, &rep, &err)
		             : csa_ws_transfer(ws, files, &rep, &err);
	csa_ws_close(files);
	csa_ws_close(ws);
	if (rc)
		return cli_fail(&err);
	csa_json_print(rep, 1);
	size_t conflicts = json_array_size(json_object_get(rep, "conflicts"));
	json_decref(rep);
	if (conflicts)
		return cli_failf("%zu tickets differ on the two sides and were left as they are "
		                 "(listed under \"conflicts\")",
		                 conflicts);
	return 0;
}

int cmd_migrate(int argc, char **argv)
{
	return transfer(argc, argv, "--from", 1);
}

int cmd_export(int argc, char **argv)
{
	return transfer(argc, argv, "--out", 0);
}
