/* The durable outbox (outbox.h): queueing and delivery over HTTP, the same
 * over every storage backend. */
#include "outbound/outbox.h"
#include "base/ts.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* The longest one POST may take (connect + transfer), for the lease. */
enum { CONNECT_TIMEOUT_MS = 2000, POST_TIMEOUT_MS = 5000 };

int64_t csa_outbox_backoff_ms(int attempts, double u)
{
	double ms = 1000.0;
	for (int i = 1; i < attempts && ms < 3600000.0; i++)
		ms *= 2;
	if (ms > 3600000.0)
		ms = 3600000.0;
	return (int64_t)(ms * (0.8 + 0.4 * u)); /* +-20% so retries do not stampede */
}

void csa_outbox_close(struct csa_outbox *ob)
{
	if (ob)
		ob->ops->close(ob);
}

int csa_outbox_enqueue(struct csa_outbox *ob, const char *key, const char *ticket_id,
                       const char *target, const char *url, const json_t *payload,
                       struct csa_err *err)
{
	if (!key || !target || !url || strncmp(url, "http", 4) != 0)
		return csa_error(err, CSA_EINVAL,
		                 "outbox: key, target and an http(s) URL are required");
	char *body = json_dumps(payload, JSON_COMPACT);
	if (!body)
		return csa_error(err, CSA_ENOMEM, "out of memory queueing a delivery");
	int rc = ob->ops->enqueue(ob, key, ticket_id, target, url, body, csa_now_ms(), err);
	free(body);
	return rc;
}

int csa_outbox_for_ticket(struct csa_outbox *ob, const char *ticket_id, json_t **out,
                          struct csa_err *err)
{
	return ob->ops->for_ticket(ob, ticket_id, out, err);
}

static size_t discard(char *p, size_t sz, size_t n, void *ud)
{
	(void)p, (void)ud;
	return sz * n;
}

/* POST one payload; 0 on 2xx, else an error text in 'why'. */
static int post(const char *url, const char *body, char *why, size_t whysz)
{
	CURL *c = curl_easy_init();
	if (!c) {
		snprintf(why, whysz, "cannot create an HTTP handle");
		return -1;
	}
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)POST_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	CURLcode r = curl_easy_perform(c);
	long status = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	if (r != CURLE_OK) {
		snprintf(why, whysz, "%s", curl_easy_strerror(r));
		return -1;
	}
	if (status < 200 || status > 299) {
		snprintf(why, whysz, "HTTP %ld", status);
		return -1;
	}
	return 0;
}

static double jitter(void)
{
	unsigned char r[2] = {0};
	if (getrandom(r, sizeof(r), 0) != 2)
		r[0] = r[1] = 0;
	return (double)(r[0] << 8 | r[1]) / 65536.0;
}

int csa_outbox_deliver_due(struct csa_outbox *ob, int64_t now_ms, int max, int *delivered,
                           struct csa_err *err)
{
	struct csa_outbox_item *v = NULL;
	int n = 0, ok = 0;
	if (delivered)
		*delivered = 0;
	/* the lease outlasts the round: every claimed item posted in turn */
	int64_t lease =
	    (int64_t)(max > 0 ? max : 1) * (CONNECT_TIMEOUT_MS + POST_TIMEOUT_MS) + 1000;
	int rc = ob->ops->claim_due(ob, now_ms, max, lease, &v, &n, err);
	/* the items claimed so far still go out, without any lock held */
	for (int i = 0; i < n; i++) {
		char why[256] = "";
		int good =
		    v[i].url && v[i].payload && post(v[i].url, v[i].payload, why, sizeof(why)) == 0;
		if (!good && !why[0])
			snprintf(why, sizeof(why), "out of memory reading the item");
		int attempts = v[i].attempts + 1;
		const char *state = good                           ? "delivered"
		                    : attempts >= ob->max_attempts ? "failed"
		                                                   : "pending";
		struct csa_err serr = {0};
		/* an item delivered but not marked so goes out again when its
		 * lease ends (the receiver sees it twice): the caller hears */
		int src =
		    ob->ops->settle(ob, v[i].id, attempts, state, now_ms,
		                    now_ms + csa_outbox_backoff_ms(attempts, jitter()), why, &serr);
		if (src && rc == CSA_OK) {
			rc = src;
			if (err)
				csa_error(err, src, "item %lld %s but its state not saved: %s",
				          (long long)v[i].id, good ? "delivered" : "failed",
				          serr.msg);
		}
		ok += good;
		free(v[i].url);
		free(v[i].payload);
	}
	free(v);
	if (delivered)
		*delivered = ok;
	return rc;
}
