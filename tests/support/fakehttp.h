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
	char idem[256]; /* the Idempotency-Key header, or "" */
	int held;       /* held without an answer (fake_http_stall) */
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

/* A receiver that hangs: the next n requests whose path starts with
 * 'prefix' are recorded (a client's request has arrived whole) and then
 * get no answer until fake_http_release() or fake_http_stop(), as a
 * platform that stalls after reading a request. Each connection has a
 * thread of its own, so the others are answered meanwhile. */
void fake_http_stall(struct fake_http *f, const char *prefix, int n);

/* Let the held requests go (they are answered as any other). */
void fake_http_release(struct fake_http *f);

/* How many requests with this Idempotency-Key arrived. */
int fake_http_count_key(struct fake_http *f, const char *key);

#endif
