/* An HTTP client for the tests' own servers (libcurl): one request to
 * 127.0.0.1, its status, body and header lines kept. No cmocka assertion,
 * so threads may use it; the test files wrap it in their call(). */
#ifndef CSA_TESTS_THTTP_H
#define CSA_TESTS_THTTP_H

#include <stddef.h>

struct t_resp {
	long status;  /* 0 when no answer came */
	char *body;   /* malloc'd, NUL-ended; NULL for an empty answer */
	size_t len;
	char headers[4096]; /* the answer's header lines, as many as fit */
	size_t hlen;
};

/* method path on 127.0.0.1:port with the header lines of 'headers'
 * (NULL-ended, may be NULL) and a JSON 'body' (may be NULL), at most
 * timeout_s seconds; HEAD asks for no body. *r is reset first. 0 when an
 * answer came, -1 otherwise. */
int t_http(unsigned port, const char *method, const char *path, const char *const *headers,
           const char *body, long timeout_s, struct t_resp *r);

/* "Authorization: Bearer <token>" into out. */
void t_bearer(char out[160], const char *token);

#endif
