/*
 * An open-loop load generator for make bench-server: POSTs new tickets at a
 * fixed rate, whatever the server's latency, and measures each request from
 * the instant it was due (not from when it could be sent), so a stalled
 * server shows up in the percentiles instead of slowing the generator down
 * (no coordinated omission). Not a test.
 *
 *   bench_loadgen URL TOKEN RATE SECONDS
 *
 * prints: sent, ok, errors, achieved rate, latency p50/p90/p99/max (ms).
 */
#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_INFLIGHT 2000

struct req {
	int64_t due_ns;
	char body[512];
	struct curl_slist *hdrs;
};

static int64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static size_t discard(char *p, size_t sz, size_t n, void *ud)
{
	(void)p, (void)ud;
	return sz * n;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double q)
{
	if (!n)
		return 0;
	size_t i = (size_t)(q * (double)n);
	return v[i < n ? i : n - 1];
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: bench_loadgen URL TOKEN RATE SECONDS\n");
		return 2;
	}
	const char *url = argv[1], *token = argv[2];
	double rate = atof(argv[3]);
	long total = (long)(rate * atof(argv[4]));
	if (rate <= 0 || total <= 0) {
		fprintf(stderr, "bench_loadgen: RATE and SECONDS must be positive\n");
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	CURLM *m = curl_multi_init();
	curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, 256L);
	char auth[512];
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	double *lat = calloc((size_t)total, sizeof(double));
	long sent = 0, done = 0, ok = 0, errors = 0, inflight = 0;
	int64_t interval = (int64_t)(1e9 / rate), start = mono_ns(), next = start;
	unsigned seed = (unsigned)start;
	while (done < total) {
		int64_t now = mono_ns();
		while (sent < total && next <= now && inflight < MAX_INFLIGHT) {
			struct req *r = calloc(1, sizeof(*r));
			r->due_ns = next;
			snprintf(
			    r->body, sizeof(r->body),
			    "{\"ticket_id\": \"L%u-%ld\", \"client_name\": \"Load\", \"customer\":"
			    " {\"subscription_tier\": \"STANDARD\"}, \"messages\": [{\"content\":"
			    " \"I was charged twice for invoice INV-%ld, please refund\"}]}",
			    (unsigned)rand_r(&seed), sent, sent);
			r->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
			r->hdrs = curl_slist_append(r->hdrs, auth);
			r->hdrs = curl_slist_append(r->hdrs, "Expect:");
			CURL *h = curl_easy_init();
			curl_easy_setopt(h, CURLOPT_URL, url);
			curl_easy_setopt(h, CURLOPT_HTTPHEADER, r->hdrs);
			curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body);
			curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
			curl_easy_setopt(h, CURLOPT_PRIVATE, r);
			curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 60000L);
			curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
			curl_multi_add_handle(m, h);
			sent++;
			inflight++;
			next += interval;
		}
		int running;
		curl_multi_perform(m, &running);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(m, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			CURL *h = msg->easy_handle;
			struct req *r;
			long status = 0;
			curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&r);
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
			lat[done++] = (double)(mono_ns() - r->due_ns) / 1e6;
			if (msg->data.result == CURLE_OK && status >= 200 && status < 300)
				ok++;
			else
				errors++;
			inflight--;
			curl_multi_remove_handle(m, h);
			curl_easy_cleanup(h);
			curl_slist_free_all(r->hdrs);
			free(r);
		}
		int64_t wait_ms = sent < total ? (next - mono_ns()) / 1000000 : 10;
		curl_multi_poll(m, NULL, 0,
		                (int)(wait_ms < 0    ? 0
		                      : wait_ms > 10 ? 10
		                                     : wait_ms),
		                NULL);
	}
	double secs = (double)(mono_ns() - start) / 1e9;
	qsort(lat, (size_t)done, sizeof(double), cmp);
	printf("sent %ld ok %ld errors %ld rate %.1f/s p50 %.2f p90 %.2f p99 %.2f max %.2f ms\n",
	       sent, ok, errors, (double)done / secs, pct(lat, (size_t)done, 0.5),
	       pct(lat, (size_t)done, 0.9), pct(lat, (size_t)done, 0.99), lat[done - 1]);
	free(lat);
	curl_multi_cleanup(m);
	curl_global_cleanup();
	return errors ? 1 : 0;
}
