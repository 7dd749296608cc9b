/* csa verify: check (and repair) the mesh. */
#include "cli/cli.h"
#include "base/json.h"
#include "store/verify.h"
#include "store/ws.h"

#include <stdio.h>

int cmd_verify(int argc, char **argv)
{
	struct csa_ws *ws = cli_open_ws(argc, argv);
	if (!ws)
		return 1;
	struct csa_err err = {0};
	json_t *rep = NULL;
	int rc = csa_verify(ws, cli_flag(argc, argv, "--repair") ? CSA_VERIFY_REPAIR : 0, NULL, &rep, &err);
	csa_ws_close(ws);
	if (rc)
		return cli_fail(&err);
	int ok = json_is_true(json_object_get(rep, "ok"));
	if (cli_flag(argc, argv, "--json")) {
		csa_json_print(rep, 1);
	} else {
		size_t i;
		json_t *p;
		json_array_foreach(json_object_get(rep, "problems"), i, p) printf(
		    "%s %s %s: %s\n",
		    json_is_true(json_object_get(p, "repaired")) ? "repaired" : "PROBLEM",
		    csa_json_str(p, "problem"),
		    csa_json_str(p, "ticket") ? csa_json_str(p, "ticket") : csa_json_str(p, "file"),
		    csa_json_str(p, "detail"));
		printf("%s: %lld tickets checked\n", ok ? "ok" : "problems remain",
		       csa_json_int(rep, "tickets", 0));
	}
	json_decref(rep);
	return ok ? 0 : 1;
}
