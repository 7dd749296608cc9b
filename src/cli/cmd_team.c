/*
 * csa demo-team: a simulated review team for the demo. It works the review
 * queue of a running server through the API, as people would: takes the
 * next task, decides it right with probability --accuracy (the right value
 * from the answers `csa demo-data --stream --answers` wrote), reports how
 * long the decision took (a suggestion it agrees with is quicker to
 * confirm than a decision from scratch), and waits --pace seconds between
 * decisions. It exists so that `make run` shows automation growing: every
 * decision it makes teaches the models and feeds the gates.
 */
#include "cli/cli.h"
#include "base/json.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

struct buf {
	char *p;
	size_t n;
};

static size_t collect(char *data, size_t size, size_t nmemb, void *arg)
{
	struct buf *b = arg;
	size_t len = size * nmemb;
	if (b->n + len > (8u << 20))
		return 0; /* a reply this large is not the API's */
	char *p = realloc(b->p, b->n + len + 1);
	if (!p)
		return 0;
	memcpy(p + b->n, data, len);
	b->p = p;
	b->n += len;
	b->p[b->n] = '\0';
	return len;
}

/* One API call: the HTTP status (0 when the server could not be reached)
 * and the parsed JSON answer in *out (NULL when there is none). */
static long call(CURL *h, const char *method, const char *url, const char *auth,
                 const char *body, json_t **out)
{
	struct buf b = {0};
	struct curl_slist *hdr = curl_slist_append(NULL, auth);
	hdr = curl_slist_append(hdr, "Content-Type: application/json");
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	if (body)
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	long status = 0;
	if (curl_easy_perform(h) == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	*out = b.p ? json_loads(b.p, 0, NULL) : NULL;
	free(b.p);
	curl_slist_free_all(hdr);
	return status;
}

/* The right value of each decision type per ticket:
 * {"T_NO": {"category": ..., "priority": ..., "strategy": ..., "escalation": ...}} */
static int load_answers(const char *path, json_t **out)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return cli_failf("cannot open the answers '%s'", path);
	json_t *all = json_object();
	char line[4096];
	long no = 0;
	int rc = 0;
	while (!rc && fgets(line, sizeof(line), f)) {
		no++;
		json_t *j = json_loads(line, 0, NULL);
		const char *id = csa_json_str(j, "ticket_id");
		json_t *gold = json_object_get(j, "gold");
		if (!id || !json_is_object(gold))
			rc = cli_failf("'%s' line %ld: not {\"ticket_id\", \"gold\"}", path, no);
		else
			json_object_set(all, id, gold);
		json_decref(j);
	}
	fclose(f);
	if (rc)
		json_decref(all);
	else
		*out = all;
	return rc;
}

/* The right value of a task, from the generator's gold record. */
static const char *right_value(const json_t *gold, const char *type)
{
	if (strcmp(type, "escalation") == 0) {
		const char *path = csa_json_str(gold, "escalation_path");
		return json_is_true(json_object_get(gold, "escalate")) && path ? path : "NONE";
	}
	return csa_json_str(gold, type);
}

static double uniform(unsigned *state)
{
	return (double)rand_r(state) / ((double)RAND_MAX + 1.0);
}

/* What the simulated person answers: right with probability 'accuracy',
 * otherwise another of the task's labels. */
static const char *answer(const json_t *task, const char *right, double accuracy, unsigned *rng)
{
	json_t *labels = json_object_get(task, "labels");
	size_t n = json_array_size(labels);
	if (!right || n < 2 || uniform(rng) < accuracy)
		return right;
	for (;;) {
		const char *v = json_string_value(json_array_get(labels, (size_t)rand_r(rng) % n));
		if (v && strcmp(v, right) != 0)
			return v;
	}
}

/* Decide one task; 1 when one was decided, 0 when the queue was empty,
 * -1 when the server could not be asked. */
static int work_one(CURL *h, const char *base, const char *auth, const json_t *answers,
                    double accuracy, unsigned *rng, long *decided, long *right_n)
{
	char url[1024];
	json_t *j = NULL;
	snprintf(url, sizeof(url), "%s/api/reviews/next", base);
	long st = call(h, "GET", url, auth, NULL, &j);
	json_t *task = json_object_get(j, "task");
	if (st != 200 || !json_is_object(task)) {
		json_decref(j);
		return st == 200 ? 0 : -1;
	}
	const char *type = csa_json_str(task, "decision_type"),
	           *ticket = csa_json_str(task, "ticket_id");
	const char *right =
	    type && ticket ? right_value(json_object_get(answers, ticket), type) : NULL;
	const char *suggestion = csa_json_str(task, "suggestion");
	/* a task of a ticket it has no answer for is decided as suggested: the
	 * team agrees with what it cannot judge */
	const char *value = right ? answer(task, right, accuracy, rng) : suggestion;
	json_int_t id = json_integer_value(json_object_get(task, "task_id"));
	int done = 0;
	if (value && id > 0) {
		/* deciding from scratch takes 40-80 s; confirming a suggestion one
		 * agrees with 10-30 s */
		int agree = suggestion && strcmp(suggestion, value) == 0;
		double ms = agree ? 10000 + 20000 * uniform(rng) : 40000 + 40000 * uniform(rng);
		json_t *body = json_pack("{s:s, s:I, s:s}", "value", value, "decision_ms",
		                         (json_int_t)ms, "notes", "demo team");
		char *text = json_dumps(body, JSON_COMPACT);
		json_t *r = NULL;
		snprintf(url, sizeof(url), "%s/api/reviews/%lld/decide", base, (long long)id);
		st = call(h, "POST", url, auth, text, &r);
		if (st == 200) {
			(*decided)++;
			*right_n += right && strcmp(value, right) == 0;
		} else if (st != 409) { /* 409: someone else decided it first */
			fprintf(stderr, "csa demo-team: task %lld: HTTP %ld %s\n", (long long)id, st,
			        r ? csa_json_str(r, "detail") : "");
		}
		done = 1;
		free(text);
		json_decref(body);
		json_decref(r);
	}
	json_decref(j);
	return done;
}

int cmd_demo_team(int argc, char **argv)
{
	static const char usage[] =
	    "csa demo-team --url URL --answers FILE [--accuracy 0.9] [--pace SECONDS] "
	    "[--seed S] [--max N] [--until-empty]   (the agent token in $CSA_TOKEN)";
	const char *base = cli_opt(argc, argv, "--url"), *file = cli_opt(argc, argv, "--answers");
	const char *token = getenv("CSA_TOKEN");
	double accuracy = 0.9, pace = 2;
	unsigned long seed = 1, max = 0;
	if (!base || !file)
		return cli_usage(usage);
	if (!token || !*token)
		return cli_failf("demo-team: set CSA_TOKEN to an agent token ('csa token create "
		                 "--role agent')");
	if (cli_opt_real(argc, argv, "--accuracy", 0, 1, &accuracy) ||
	    cli_opt_real(argc, argv, "--pace", 0, 3600, &pace) ||
	    cli_opt_uint(argc, argv, "--seed", 0, 0xffffffffUL, &seed) ||
	    cli_opt_uint(argc, argv, "--max", 0, 100000000, &max))
		return 1;
	json_t *answers = NULL;
	if (load_answers(file, &answers))
		return 1;
	char auth[600];
	snprintf(auth, sizeof(auth), "Authorization: Bearer %.500s", token);
	CURL *h = curl_easy_init();
	if (!h) {
		json_decref(answers);
		return cli_failf("demo-team: cannot start libcurl");
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	unsigned rng = (unsigned)seed;
	long decided = 0, right_n = 0;
	while (!stopping && (!max || decided < (long)max)) {
		int r = work_one(h, base, auth, answers, accuracy, &rng, &decided, &right_n);
		if (r == 0 && cli_flag(argc, argv, "--until-empty"))
			break;
		if (r < 0)
			fprintf(stderr, "csa demo-team: cannot reach %s; trying again\n", base);
		/* an empty queue is looked at again a little later */
		double wait = r > 0 ? pace : (pace > 1 ? pace : 1);
		struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
		while (!stopping && nanosleep(&ts, &ts) != 0)
			;
	}
	curl_easy_cleanup(h);
	json_decref(answers);
	json_t *rep = json_pack("{s:I, s:I}", "decided", (json_int_t)decided, "right",
	                        (json_int_t)right_n);
	csa_json_print(rep, 1);
	json_decref(rep);
	return 0;
}
