/* A fake platform API for tests: an HTTP server on 127.0.0.1 and a free
 * port that keeps every request (method, path, Authorization header, body)
 * and answers each path prefix as told (status and body), so a test checks
 * what a client sent to "Slack", "Mattermost", "Trello" or a webhook. */
#ifndef CSA_TESTS_FAKEHTTP_H
#define CSA_TESTS_FAKEHTTP_H

struct fake_http;

/* One request as received (strings owned by the fake). */
struct fake_req {
	char method[8];
	char path[512];
	char auth[512]; /* the Authorization header, or "" */
	char *body;
};

int fake_http_start(struct fake_http **out, unsigned *port);
void fake_http_stop(struct fake_http *f);

/* Answer requests whose path starts with 'prefix' with 'status' and
 * 'body' (copied) from now on; others get 200 "{}". */
void fake_http_answer(struct fake_http *f, const char *prefix, int status, const char *body);

/* Wait until at least n requests arrived or timeout_ms passed; returns
 * how many arrived. */
int fake_http_wait(struct fake_http *f, int n, int timeout_ms);

/* A copy of the first request whose path starts with 'prefix' (release
 * its body with free), 0; -1 when there is none. */
int fake_http_find(struct fake_http *f, const char *prefix, struct fake_req *out);

/* The same for the nth (0 first) such request. */
int fake_http_find_nth(struct fake_http *f, const char *prefix, int nth, struct fake_req *out);

/* How many requests have a path starting with 'prefix'. */
int fake_http_count(struct fake_http *f, const char *prefix);

#endif
