/* `csa monitor`, the file monitor as its own process (spec §8.1): against a
 * workspace with a broken ticket it reports the problem in its JSON lines,
 * posts one alert to ALERT_WEBHOOK_URL (a fake HTTP listener on
 * 127.0.0.1), leaves the ticket as it found it, closes the alert when the
 * ticket is whole again, and stops on SIGTERM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/json.h"
#include "store/store.h"
#include "store/ws.h"
#include "support/fakehttp.h"
#include "support/tmesh.h"
#include "support/tutil.h"

/* Start `csa monitor` on 'ws' with its stdout in 'out_path'. */
static pid_t start_monitor(const char *ws, const char *out_path, unsigned port)
{
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0)
			_exit(127);
		dup2(fd, 1);
		char url[64];
		snprintf(url, sizeof(url), "http://127.0.0.1:%u/hook/mesh", port);
		setenv("ALERT_WEBHOOK_URL", url, 1);
		setenv("SYNC_CHECK_INTERVAL", "0.2", 1);
		execl(CSA_BIN, CSA_BIN, "--dir", ws, "monitor", (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* The JSON lines written so far, as an array (each line must parse). */
static json_t *lines_of(const char *path)
{
	json_t *all = json_array();
	FILE *f = fopen(path, "r");
	if (!f)
		return all;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] != '\n')
			break; /* a line being written */
		json_error_t je;
		json_t *j = json_loads(line, 0, &je);
		assert_non_null(j); /* every line is JSON */
		json_array_append_new(all, j);
	}
	free(line);
	fclose(f);
	return all;
}

/* Wait up to 'ms' for a line with "event": ev (and, for checks, "ok" as
 * given: -1 any); returns a new reference or NULL. */
static json_t *wait_line(const char *path, const char *ev, int ok, int ms)
{
	for (int waited = 0; waited <= ms; waited += 50) {
		json_t *all = lines_of(path), *l;
		size_t i;
		json_array_foreach(all, i, l)
		{
			const char *e = csa_json_str(l, "event");
			if (e && strcmp(e, ev) == 0 &&
			    (ok < 0 || json_is_true(json_object_get(l, "ok")) == ok)) {
				json_incref(l);
				json_decref(all);
				return l;
			}
		}
		json_decref(all);
		usleep(50000);
	}
	return NULL;
}

static void monitor_reports_posts_and_stops(void **state)
{
	(void)state;
	char *dir = t_tmpdir("mon"), out[600], ifile[600];
	struct csa_err err = {0};
	struct csa_ws *ws = NULL;
	assert_int_equal(csa_ws_init(dir, &err), CSA_OK);
	assert_int_equal(csa_ws_open(dir, &ws, &err), CSA_OK);
	const char *ids[3] = {"M1", "M2", "M3"};
	assert_int_equal(tm_create(ws, ids, 3), 0);
	csa_ws_close(ws);
	/* break M2: its internal conversation file goes away */
	snprintf(ifile, sizeof(ifile), "%s/Tickets/T_int/I_M2.json", dir);
	snprintf(out, sizeof(out), "%s.monitor.out", dir);
	char *saved = NULL;
	size_t saved_len = 0;
	{
		FILE *f = fopen(ifile, "rb");
		assert_non_null(f);
		fseek(f, 0, SEEK_END);
		saved_len = (size_t)ftell(f);
		rewind(f);
		saved = malloc(saved_len);
		assert_int_equal(fread(saved, 1, saved_len, f), saved_len);
		fclose(f);
	}
	assert_int_equal(unlink(ifile), 0);

	struct fake_http *fh = NULL;
	unsigned port = 0;
	assert_int_equal(fake_http_start(&fh, &port), 0);
	pid_t pid = start_monitor(dir, out, port);
	assert_true(pid > 0);

	/* the check's line names the problem and the ticket */
	json_t *bad = wait_line(out, "check", 0, 15000);
	assert_non_null(bad);
	assert_int_equal(csa_json_int(json_object_get(bad, "counts"), "orphan", -1), 1);
	json_t *p = json_array_get(json_object_get(bad, "problems"), 0);
	assert_string_equal(csa_json_str(p, "problem"), "orphan");
	assert_string_equal(csa_json_str(p, "ticket"), "M2");
	json_decref(bad);

	/* and the webhook hears of it, once */
	assert_true(fake_http_wait(fh, 1, 15000) >= 1);
	struct fake_req req;
	assert_int_equal(fake_http_find(fh, "/hook/mesh", &req), 0);
	assert_string_equal(req.method, "POST");
	json_t *body = NULL;
	assert_int_equal(csa_json_parse(req.body, strlen(req.body), "webhook body", &body, &err),
	                 CSA_OK);
	assert_string_equal(csa_json_str(body, "type"), "MESH_INTEGRITY");
	assert_string_equal(csa_json_str(body, "scope"), "mesh/orphan");
	assert_string_equal(json_string_value(json_array_get(
	                        json_object_get(json_object_get(body, "detail"), "affected"), 0)),
	                    "M2");
	json_decref(body);
	free(req.body);
	/* several checks later, still one post: the alert is open, not new */
	usleep(1000000);
	json_t *all = lines_of(out);
	size_t i, checks = 0;
	json_t *l;
	json_array_foreach(all, i, l) checks += strcmp(csa_json_str(l, "event"), "check") == 0;
	json_decref(all);
	assert_true(checks >= 3);
	assert_int_equal(fake_http_count(fh, "/hook/mesh"), 1);

	/* the monitor only looks: the broken ticket is as it was */
	struct stat sb;
	assert_int_not_equal(stat(ifile, &sb), 0);

	/* whole again: the next check is clean and closes the alert */
	FILE *f = fopen(ifile, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(saved, 1, saved_len, f), saved_len);
	fclose(f);
	chmod(ifile, 0600);
	json_t *closed = wait_line(out, "alert_closed", -1, 15000);
	assert_non_null(closed);
	assert_string_equal(csa_json_str(closed, "scope"), "mesh/orphan");
	json_decref(closed);
	json_t *good = wait_line(out, "check", 1, 15000);
	assert_non_null(good);
	json_decref(good);

	/* SIGTERM stops it, cleanly */
	assert_int_equal(kill(pid, SIGTERM), 0);
	int status = 0, waited = 0;
	pid_t w;
	while ((w = waitpid(pid, &status, WNOHANG)) == 0 && waited < 10000) {
		usleep(20000);
		waited += 20;
	}
	assert_int_equal(w, pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	fake_http_stop(fh);
	free(saved);
	unlink(out);
	t_rmrf(dir);
	free(dir);
}

/* Wrong settings are refused with what is wrong, before any check. */
static void monitor_refuses_bad_settings(void **state)
{
	(void)state;
	char *dir = t_tmpdir("mon");
	struct csa_err err = {0};
	assert_int_equal(csa_ws_init(dir, &err), CSA_OK);
	char *e = NULL;
	assert_int_equal(t_csa(NULL, NULL, &e, "--dir %s monitor", "/nonexistent/ws"), 1);
	assert_non_null(strstr(e, "not a csa workspace"));
	free(e);
	setenv("SYNC_CHECK_INTERVAL", "soon", 1);
	assert_int_equal(t_csa(NULL, NULL, &e, "--dir %s monitor", dir), 1);
	assert_non_null(strstr(e, "SYNC_CHECK_INTERVAL"));
	free(e);
	unsetenv("SYNC_CHECK_INTERVAL");
	setenv("ALERT_WEBHOOK_URL", "ftp://x", 1);
	assert_int_equal(t_csa(NULL, NULL, &e, "--dir %s monitor --once", dir), 1);
	assert_non_null(strstr(e, "ALERT_WEBHOOK_URL"));
	free(e);
	unsetenv("ALERT_WEBHOOK_URL");
	/* --once on a clean workspace: one check line, exit 0 */
	char *o = NULL;
	assert_int_equal(t_csa(NULL, &o, NULL, "--dir %s monitor --once", dir), 0);
	assert_non_null(strstr(o, "\"event\":\"check\""));
	assert_non_null(strstr(o, "\"ok\":true"));
	free(o);
	t_rmrf(dir);
	free(dir);
}

/* A workspace opened to observe: commits refused, reads work, nothing of
 * the layout created. */
static void observer_only_looks(void **state)
{
	(void)state;
	char *dir = t_tmpdir("mon");
	struct csa_err err = {0};
	struct csa_ws *ws = NULL;
	assert_int_equal(csa_ws_init(dir, &err), CSA_OK);
	assert_int_equal(csa_ws_open(dir, &ws, &err), CSA_OK);
	const char *ids[1] = {"O1"};
	assert_int_equal(tm_create(ws, ids, 1), 0);
	csa_ws_close(ws);
	char kb[600];
	snprintf(kb, sizeof(kb), "%s/kb", dir);
	assert_int_equal(rmdir(kb), 0);
	assert_int_equal(csa_ws_open_observer(dir, &ws, &err), CSA_OK);
	struct stat sb;
	assert_int_not_equal(stat(kb, &sb), 0); /* not created */
	struct csa_ticket tk = {0};
	assert_int_equal(csa_store_load(ws->store, "O1", &tk, &err), CSA_OK);
	assert_int_equal(tm_version(&tk), 0);
	tm_set(&tk, 1);
	assert_int_equal(csa_store_commit(ws->store, &tk, CSA_DOC_ALL, &err), CSA_ESTATE);
	assert_non_null(strstr(err.msg, "observe only"));
	csa_ticket_release(&tk);
	csa_ws_close(ws);
	assert_int_equal(csa_ws_open(dir, &ws, &err), CSA_OK);
	assert_int_equal(tm_load_version(ws, "O1"), 0); /* unchanged */
	csa_ws_close(ws);
	t_rmrf(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(monitor_reports_posts_and_stops),
	    cmocka_unit_test(monitor_refuses_bad_settings),
	    cmocka_unit_test(observer_only_looks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
