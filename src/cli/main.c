/* csa: entry point and verb table. */
#include "cli/cli.h"
#include "store/ws.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int cmd_version(int argc, char **argv);

static const struct cli_cmd commands[] = {
    {"init", cmd_init, "csa init [DIR]", "create a workspace (default: $CSA_HOME or .)"},
    {"ticket", cmd_ticket, "csa ticket create --json FILE|-", "create a ticket"},
    {"message", cmd_message, "csa message add T_NO --side external|internal --json FILE|-",
     "append a message to a ticket"},
    {"show", cmd_show, "csa show T_NO [--unified]", "print a ticket's three documents"},
    {"list", cmd_list, "csa list [--status S] [--priority P] [--stage S]", "list tickets"},
    {"verify", cmd_verify, "csa verify [--repair] [--json]",
     "check the mesh invariants (exit 1 when problems remain)"},
    {"demo-data", cmd_demo_data,
     "csa demo-data [--tickets N] [--seed S] [--out FILE] [--stream [--answers FILE]]",
     "write synthetic labelled history as JSONL"},
    {"demo-team", cmd_demo_team,
     "csa demo-team --url URL --answers FILE [--accuracy P] [--pace S] [--until-empty]",
     "a simulated review team working a server's queue (token in $CSA_TOKEN)"},
    {"import", cmd_import, "csa import FILE|- [--no-train]",
     "load labelled history and train the four decision models"},
    {"train", cmd_train, "csa train [--seed S]",
     "retrain the decision models from the human decisions in the workspace"},
    {"process", cmd_process, "csa process T_NO", "run the agent pipeline on a ticket"},
    {"ingest", cmd_ingest, "csa ingest --json FILE|-",
     "a new ticket or message in, pipeline run, result out"},
    {"resolve", cmd_resolve, "csa resolve T_NO [--csat 1..5] [--notes TEXT] [--by WHO]",
     "close a ticket: SLA metrics, CSAT, knowledge extracted from its replies and notes"},
    {"assign", cmd_assign, "csa assign T_NO MEMBER [--notes TEXT] [--by WHO]",
     "give a ticket to a member of csa.json team.members"},
    {"kb", cmd_kb,
     "csa kb gaps [--days N] [--weak SCORE] [--limit N] [--examples N] [--json] | accept "
     "FILE|- [--by WHO]",
     "the knowledge base's gaps, costliest first, with drafts; accept an article"},
    {"review", cmd_review, "csa review list [--json] | next | decide TASK --value V [--notes N]",
     "the human review queue"},
    {"phase", cmd_phase, "csa phase status | evaluate | advance [--force] | rollback [POINT]",
     "automation phases, gates and rollback points"},
    {"metrics", cmd_metrics, "csa metrics [--json]", "KPIs overall, per phase, type and segment"},
    {"alerts", cmd_alerts, "csa alerts [--all]", "quality and safety alerts"},
    {"audit", cmd_audit, "csa audit verify | show T_NO", "the hash-chained audit ledger"},
    {"replay", cmd_replay,
     "csa replay --data F [--text COL --label COL] [--human-accuracy P] [--sweep KEY=V1,V2,...] "
     "[--json] [--svg OUT]",
     "stream labelled history through the pipeline and controllers"},
    {"serve", cmd_serve, "csa serve [--port 8000] [--bind 127.0.0.1]",
     "the HTTP API and dashboard (SIGTERM stops it gracefully)"},
    {"backup", cmd_backup, "csa backup --out DIR",
     "a consistent copy of the workspace while it is in use, with a checksummed manifest"},
    {"restore", cmd_restore, "csa restore BACKUP_DIR --dir NEW_WORKSPACE",
     "check a backup's checksums, then bring it into an empty or new directory"},
    {"migrate", cmd_migrate, "csa migrate [--from DIR]",
     "with DATABASE_URL: the tickets of DIR's files (default: this workspace's own Tickets/) "
     "into the database"},
    {"export", cmd_export, "csa export [--out DIR]",
     "with DATABASE_URL: the database's tickets back into files (default: this workspace's own "
     "Tickets/)"},
    {"monitor", cmd_monitor, "csa monitor [--once] [--outbox FILE]",
     "the file monitor as its own process: a JSON line per check, alerts to "
     "ALERT_WEBHOOK_URL (every SYNC_CHECK_INTERVAL s, default 30; SIGTERM stops it)"},
    {"token", cmd_token, "csa token create --role viewer|agent|admin [--name N] | list | revoke ID",
     "API tokens (stored hashed; shown once)"},
    {"eval-models", cmd_eval_models,
     "csa eval-models --data F --backends embedded,openai:MODEL,... [--json]",
     "compare the embedded model and LLM backends on your history (spec 2.2)"},
    {"model", cmd_model, "csa model train|eval --data F --text COL --label COL ...",
     "train or evaluate the embedded classifier on CSV/JSONL"},
    {"demo", cmd_demo, "csa demo [--dir DIR]", "create a demo workspace and show it"},
    {"version", cmd_version, "csa version", "print the version"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
	fprintf(out, "usage: csa [--dir DIR] <verb> [options]   (--dir may also follow the verb)\n\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(out, "  %-60s %s\n", commands[i].usage, commands[i].help);
}

int cli_fail(const struct csa_err *err)
{
	fprintf(stderr, "csa: %s\n", err && err->msg[0] ? err->msg : "unknown error");
	return 1;
}

int cli_failf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("csa: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 1;
}

int cli_usage(const char *u)
{
	fprintf(stderr, "usage: %s\n", u);
	return 2;
}

const char *cli_opt(int argc, char **argv, const char *name)
{
	size_t n = strlen(name);
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], name, n) != 0)
			continue;
		if (argv[i][n] == '=')
			return argv[i] + n + 1;
		if (argv[i][n] == '\0' && i + 1 < argc)
			return argv[i + 1];
	}
	return NULL;
}

int cli_flag(int argc, char **argv, const char *name)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return 1;
	return 0;
}

int cli_opt_uint(int argc, char **argv, const char *name, unsigned long lo, unsigned long hi,
                 unsigned long *out)
{
	const char *v = cli_opt(argc, argv, name);
	if (!v)
		return 0;
	char *end;
	errno = 0;
	unsigned long x = strtoul(v, &end, 10);
	if (end == v || *end || errno || v[0] == '-' || x < lo || x > hi)
		return cli_failf("%s: '%s' is not a whole number in %lu..%lu", name, v, lo, hi);
	*out = x;
	return 0;
}

int cli_opt_real(int argc, char **argv, const char *name, double lo, double hi, double *out)
{
	const char *v = cli_opt(argc, argv, name);
	if (!v)
		return 0;
	char *end;
	double x = strtod(v, &end);
	if (end == v || *end || !(x >= lo && x <= hi))
		return cli_failf("%s: '%s' is not a number in [%g, %g]", name, v, lo, hi);
	*out = x;
	return 0;
}

const char *cli_pos(int argc, char **argv, int n, const char *const *valued)
{
	int seen = 0;
	for (int i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--", 2) == 0 && argv[i][2] != '\0') {
			int takes = strcmp(argv[i], "--dir") == 0;
			for (int k = 0; valued && valued[k]; k++)
				if (strcmp(argv[i], valued[k]) == 0)
					takes = 1;
			if (takes && !strchr(argv[i], '='))
				i++;
			continue;
		}
		if (seen++ == n)
			return argv[i];
	}
	return NULL;
}

const char *cli_ws_dir(int argc, char **argv)
{
	const char *d = cli_opt(argc, argv, "--dir");
	if (d)
		return d;
	d = getenv("CSA_HOME");
	return d && *d ? d : ".";
}

static int cmd_version(int argc, char **argv)
{
	(void)argc, (void)argv;
	printf("{\"version\": \"0.1.0\"}\n");
	return 0;
}

struct csa_ws *cli_open_ws(int argc, char **argv)
{
	struct csa_err err = {0};
	struct csa_ws *ws = NULL;
	if (csa_ws_open(cli_ws_dir(argc, argv), &ws, &err)) {
		cli_fail(&err);
		return NULL;
	}
	return ws;
}

/* Dispatch argv[1] (the verb) with the global options already moved after it. */
static int run(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(argv[1], commands[i].name) == 0) {
			if (cli_flag(argc - 1, argv + 1, "--help")) {
				printf("usage: %s\n%s\n", commands[i].usage, commands[i].help);
				return 0;
			}
			return commands[i].run(argc - 1, argv + 1);
		}
	fprintf(stderr, "csa: unknown verb '%s' (try 'csa help')\n", argv[1]);
	return 2;
}

/*
 * Options that may come before the verb, as `git -C DIR`: `csa --dir W list`
 * is `csa list --dir W`. main() moves them to just after the verb, so each
 * verb finds them with cli_opt() wherever the user wrote them.
 */
static const struct {
	const char *name;
	const char *usage;
} global_opts[] = {
    {"--dir", "--dir DIR"},
};

#define NGLOBAL (sizeof(global_opts) / sizeof(global_opts[0]))

/* Length of the global options at argv[1..]: each takes a value, as
 * "--name VALUE" or "--name=VALUE". Returns -1 after printing what is
 * wrong (an unknown option, a missing value, an option given twice). */
static int scan_global(int argc, char **argv)
{
	int i = 1;
	int seen[NGLOBAL] = {0};
	while (i < argc && argv[i][0] == '-' && strcmp(argv[i], "--help") != 0 &&
	       strcmp(argv[i], "-h") != 0) {
		size_t k = 0;
		size_t n = 0;
		for (; k < NGLOBAL; k++) {
			n = strlen(global_opts[k].name);
			if (strncmp(argv[i], global_opts[k].name, n) == 0 &&
			    (argv[i][n] == '\0' || argv[i][n] == '='))
				break;
		}
		if (k == NGLOBAL) {
			fprintf(stderr, "csa: unknown global option '%s' before the verb (global options:",
			        argv[i]);
			for (size_t g = 0; g < NGLOBAL; g++)
				fprintf(stderr, " %s", global_opts[g].usage);
			fprintf(stderr, ")\n");
			return -1;
		}
		if (seen[k]++) {
			fprintf(stderr, "csa: global option '%s' given twice\n", global_opts[k].name);
			return -1;
		}
		if (argv[i][n] == '=') {
			i += 1;
		} else if (i + 1 < argc) {
			i += 2;
		} else {
			fprintf(stderr, "csa: global option '%s' needs a value (%s)\n",
			        global_opts[k].name, global_opts[k].usage);
			return -1;
		}
	}
	return i - 1;
}

int main(int argc, char **argv)
{
	/* A workspace is private to the service's user (docs/STORE.md): also
	 * what SQLite, fopen and other libraries create in it. */
	umask(077);
	int nglobal = scan_global(argc, argv);
	if (nglobal < 0)
		return 2;
	/* argv without the global options, which follow the verb instead */
	char **args = argv;
	int nargs = argc;
	if (nglobal > 0) {
		if (1 + nglobal >= argc) {
			fprintf(stderr, "csa: no verb after the global options (try 'csa help')\n");
			return 2;
		}
		const char *verb = argv[1 + nglobal];
		for (int g = 0; g < nglobal; g++) {
			const char *opt = argv[1 + g];
			if (strncmp(opt, "--", 2) != 0)
				continue;
			char name[32];
			size_t n = strcspn(opt, "=");
			if (n >= sizeof(name))
				continue;
			memcpy(name, opt, n);
			name[n] = '\0';
			if (cli_opt(argc - 1 - nglobal, argv + 1 + nglobal, name)) {
				fprintf(stderr, "csa: '%s' given both before and after the verb '%s'\n",
				        name, verb);
				return 2;
			}
		}
		if (!(args = malloc(((size_t)argc + 1) * sizeof(*args)))) {
			fprintf(stderr, "csa: out of memory parsing the command line\n");
			return 1;
		}
		nargs = 0;
		args[nargs++] = argv[0];
		args[nargs++] = argv[1 + nglobal];
		for (int g = 0; g < nglobal; g++)
			args[nargs++] = argv[1 + g];
		for (int k = 2 + nglobal; k < argc; k++)
			args[nargs++] = argv[k];
		args[nargs] = NULL;
	}
	int rc = run(nargs, args);
	if (args != argv)
		free(args);
	return rc;
}
