/* csa demo: a workspace with a few sample tickets, shown as JSON. */
#include "cli/cli.h"
#include "base/json.h"
#include "base/ts.h"
#include "store/ticket.h"
#include "store/ws.h"

#include <stdio.h>

static const char *const samples[] = {
    "{\"client_name\": \"Ada Park\", \"company_name\": \"Northwind\", \"platform\": \"email\","
    " \"customer\": {\"subscription_tier\": \"PREMIUM\", \"priority_level\": \"HIGH\","
    " \"contact_info\": {\"email\": \"ada@northwind.example\"}},"
    " \"messages\": [{\"content\": \"Our dashboard has been down since 9am, nobody on the"
    " team can log in. This is urgent.\"}]}",
    "{\"client_name\": \"Ravi Menon\", \"company_name\": \"Acme Retail\", \"platform\":"
    " \"web_chat\", \"customer\": {\"subscription_tier\": \"STANDARD\"},"
    " \"messages\": [{\"content\": \"I was charged twice for the November invoice, can you"
    " refund one of them?\"}]}",
    "{\"client_name\": \"Lena Vogel\", \"company_name\": \"Blue Fjord\", \"platform\":"
    " \"trello\", \"trello_template\": \"feature\", \"customer\": {\"subscription_tier\":"
    " \"BASIC\"}, \"messages\": [{\"content\": \"It would be great to export reports as"
    " CSV.\"}]}",
};

int cmd_demo(int argc, char **argv)
{
	const char *dir = cli_opt(argc, argv, "--dir");
	if (!dir)
		dir = "demo-ws";
	struct csa_err err = {0};
	struct csa_ws *ws = NULL;
	if (csa_ws_init(dir, &err) || csa_ws_open(dir, &ws, &err))
		return cli_fail(&err);
	json_t *out = json_array();
	int rc = 0;
	const struct csa_config *cfg = csa_ws_config(ws);
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]) && !rc; i++) {
		json_t *ctx = json_loads(samples[i], 0, NULL);
		struct csa_ticket tk;
		rc = csa_ticket_build(cfg, ctx, csa_now_ms(), &tk, &err);
		if (!rc) {
			rc = csa_store_commit(ws->store, &tk, CSA_DOC_ALL, &err);
			if (!rc)
				json_array_append_new(out, csa_ticket_state_json(&tk, 1));
			csa_ticket_release(&tk);
		}
		json_decref(ctx);
	}
	csa_config_unref(cfg);
	if (!rc)
		csa_json_print(out, 1);
	json_decref(out);
	csa_ws_close(ws);
	return rc ? cli_fail(&err) : 0;
}
