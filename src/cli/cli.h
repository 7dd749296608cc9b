/*
 * The csa command line: one table of verbs (main.c), one file per verb
 * group (cmd_*.c). A verb returns the process exit status; it prints its
 * result as JSON on stdout and errors as one line on stderr.
 */
#ifndef CSA_CLI_H
#define CSA_CLI_H

#include "base/err.h"

struct csa_ws;

struct cli_cmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
	const char *help;
};

/* Print "csa: <what>" (and the csa_err message) to stderr; returns 1 or
 * the exit code to use (2 for usage errors). */
int cli_fail(const struct csa_err *err);
int cli_usage(const char *usage);
int cli_failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Option scanner shared by all verbs: finds "--name VALUE" or "--name=VALUE"
 * and boolean "--flag" in argv; positional arguments are what remains.
 */
const char *cli_opt(int argc, char **argv, const char *name);
int cli_flag(int argc, char **argv, const char *name);
/* A whole number or a real in [lo, hi] given with --name into *out (left
 * as it is when the option is absent). Returns 0, or prints what is wrong
 * ("--hidden: 'abc' is not a whole number in 0..1024") and returns 1. */
int cli_opt_uint(int argc, char **argv, const char *name, unsigned long lo, unsigned long hi,
                 unsigned long *out);
int cli_opt_real(int argc, char **argv, const char *name, double lo, double hi, double *out);
/* The n-th (0-based) positional argument after the verb, skipping options
 * listed in 'valued' (a NULL-terminated list of options taking a value). */
const char *cli_pos(int argc, char **argv, int n, const char *const *valued);

/* Workspace directory: --dir, else $CSA_HOME, else ".". */
const char *cli_ws_dir(int argc, char **argv);

/* Open the workspace named by --dir/$CSA_HOME (runs recovery). On failure
 * prints the error and returns NULL. */
struct csa_ws *cli_open_ws(int argc, char **argv);

/* Verb groups. */
int cmd_init(int argc, char **argv);
int cmd_ticket(int argc, char **argv);
int cmd_message(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_demo_data(int argc, char **argv);
int cmd_demo_team(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_process(int argc, char **argv);
int cmd_ingest(int argc, char **argv);
int cmd_resolve(int argc, char **argv);
int cmd_assign(int argc, char **argv);
int cmd_kb(int argc, char **argv);
int cmd_review(int argc, char **argv);
int cmd_phase(int argc, char **argv);
int cmd_metrics(int argc, char **argv);
int cmd_alerts(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_token(int argc, char **argv);
int cmd_eval_models(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_monitor(int argc, char **argv);

#endif
