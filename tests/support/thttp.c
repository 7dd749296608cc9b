/* The tests' HTTP client (thttp.h). */
#include "support/thttp.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	struct t_resp *r = ud;
	char *b = realloc(r->body, r->len + sz * n + 1);
	if (!b)
		return 0; /* curl fails the transfer */
	r->body = b;
	memcpy(r->body + r->len, p, sz * n);
	r->len += sz * n;
	r->body[r->len] = '\0';
	return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
	struct t_resp *r = ud;
	size_t k = sz * n;
	if (r->hlen + k < sizeof(r->headers) - 1) {
		memcpy(r->headers + r->hlen, p, k);
		r->hlen += k;
		r->headers[r->hlen] = '\0';
	}
	return k;
}

int t_http(unsigned port, const char *method, const char *path, const char *const *headers,
           const char *body, long timeout_s, struct t_resp *r)
{
	memset(r, 0, sizeof(*r));
	CURL *c = curl_easy_init();
	if (!c)
		return -1;
	char url[16384];
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
	struct curl_slist *h = NULL;
	for (size_t k = 0; headers && headers[k]; k++)
		h = curl_slist_append(h, headers[k]);
	if (body) {
		h = curl_slist_append(h, "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
	int rc = curl_easy_perform(c) == CURLE_OK ? 0 : -1;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return rc;
}

void t_bearer(char out[160], const char *token)
{
	snprintf(out, 160, "Authorization: Bearer %s", token);
}
