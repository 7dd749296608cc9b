/* Webhook signatures and e-mail parsing. */
#include "server/channels.h"
#include "base/digest.h"
#include "base/ids.h"
#include "base/json.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int csa_token_equal(const char *expected, const char *presented, struct csa_err *err)
{
	if (!expected || !*expected)
		return csa_error(err, CSA_EAUTH, "no token configured for this hook");
	if (!presented)
		return csa_error(err, CSA_EAUTH, "missing token");
	/* compare digests: equal length, constant time */
	unsigned char x[32], y[32];
	if (csa_sha256(expected, strlen(expected), x) ||
	    csa_sha256(presented, strlen(presented), y))
		return csa_error(err, CSA_EIO,
		                 "cannot hash the hook token (OpenSSL SHA-256 failed)");
	if (CRYPTO_memcmp(x, y, 32) != 0)
		return csa_error(err, CSA_EAUTH, "wrong token");
	return CSA_OK;
}

int csa_slack_verify(const char *secret, const char *timestamp, const char *signature,
                     const char *body, size_t len, int64_t now_s, struct csa_err *err)
{
	if (!secret || !*secret)
		return csa_error(err, CSA_EAUTH, "no Slack signing secret configured");
	if (!timestamp || !signature)
		return csa_error(err, CSA_EAUTH,
		                 "missing X-Slack-Request-Timestamp or X-Slack-Signature");
	char *end;
	long long ts = strtoll(timestamp, &end, 10);
	if (*end || ts <= 0)
		return csa_error(err, CSA_EAUTH, "bad Slack timestamp");
	if (ts < now_s - 300 || ts > now_s + 300)
		return csa_error(err, CSA_EAUTH, "Slack request is %lld s old (at most 300)",
		                 (long long)(now_s - ts));
	if (strncmp(signature, "v0=", 3) != 0 || strlen(signature) != 3 + 64)
		return csa_error(err, CSA_EAUTH, "bad Slack signature format");
	size_t blen = strlen(timestamp) + len + 4;
	char *base = malloc(blen);
	if (!base)
		return csa_error(err, CSA_ENOMEM, "out of memory checking a Slack signature");
	int n = snprintf(base, blen, "v0:%s:", timestamp);
	memcpy(base + n, body, len);
	unsigned char mac[32];
	unsigned int ml = 0;
	unsigned char *h = HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)base,
	                        (size_t)n + len, mac, &ml);
	free(base);
	if (!h || ml != 32)
		return csa_error(err, CSA_EIO,
		                 "cannot compute the Slack signature (OpenSSL HMAC "
		                 "failed)");
	char hex[65];
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	char given[65];
	for (int i = 0; i < 64; i++)
		given[i] = (char)tolower((unsigned char)signature[3 + i]);
	given[64] = '\0';
	if (CRYPTO_memcmp(hex, given, 64) != 0)
		return csa_error(err, CSA_EAUTH, "Slack signature does not match");
	return CSA_OK;
}

int csa_trello_verify(const char *secret, const char *callback_url, const char *signature,
                      const char *body, size_t len, struct csa_err *err)
{
	if (!secret || !*secret || !callback_url || !*callback_url)
		return csa_error(err, CSA_EAUTH, "no Trello secret or callback URL configured");
	if (!signature)
		return csa_error(err, CSA_EAUTH, "missing X-Trello-Webhook");
	size_t ul = strlen(callback_url);
	unsigned char *msg = malloc(len + ul + 1);
	if (!msg)
		return csa_error(err, CSA_ENOMEM, "out of memory checking a Trello signature");
	memcpy(msg, body, len);
	memcpy(msg + len, callback_url, ul);
	unsigned char mac[20];
	unsigned int ml = 0;
	unsigned char *h = HMAC(EVP_sha1(), secret, (int)strlen(secret), msg, len + ul, mac, &ml);
	free(msg);
	if (!h || ml != 20)
		return csa_error(err, CSA_EIO,
		                 "cannot compute the Trello signature (OpenSSL HMAC "
		                 "failed)");
	unsigned char b64[64];
	int bl = EVP_EncodeBlock(b64, mac, 20);
	if ((size_t)bl != strlen(signature) || CRYPTO_memcmp(b64, signature, (size_t)bl) != 0)
		return csa_error(err, CSA_EAUTH, "Trello signature does not match");
	return CSA_OK;
}

/* base64url (RFC 4648 §5, no padding) of n bytes into out (room for
 * 4 * (n + 2) / 3 + 1). */
static void b64url(const unsigned char *d, size_t n, char *out)
{
	int l = EVP_EncodeBlock((unsigned char *)out, d, (int)n);
	while (l > 0 && out[l - 1] == '=')
		l--;
	out[l > 0 ? l : 0] = '\0';
	for (char *p = out; *p; p++)
		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
}

/* A base64url part of a JWT decoded as JSON (new reference) or NULL. */
static json_t *jwt_part(const char *s, size_t n)
{
	if (n == 0 || n > 4096)
		return NULL;
	char b[4100];
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!(isalnum((unsigned char)c) || c == '-' || c == '_'))
			return NULL;
		b[k++] = c == '-' ? '+' : c == '_' ? '/' : c;
	}
	size_t pad = (4 - k % 4) % 4;
	if (pad == 3)
		return NULL;
	for (size_t i = 0; i < pad; i++)
		b[k++] = '=';
	unsigned char dec[3100];
	int dl = EVP_DecodeBlock(dec, (unsigned char *)b, (int)k);
	if (dl < 0)
		return NULL;
	return json_loadb((const char *)dec, (size_t)dl - pad, JSON_REJECT_DUPLICATES, NULL);
}

int csa_flock_verify(const char *secret, const char *token, int64_t now_s, struct csa_err *err)
{
	if (!secret || !*secret)
		return csa_error(err, CSA_EAUTH, "no Flock app secret configured");
	if (!token)
		return csa_error(err, CSA_EAUTH, "missing X-Flock-Event-Token");
	const char *d1 = strchr(token, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	if (!d1 || !d2 || strchr(d2 + 1, '.') || strlen(token) > 8192)
		return csa_error(err, CSA_EAUTH, "Flock event token is not a JWT");
	json_t *head = jwt_part(token, (size_t)(d1 - token));
	const char *alg = csa_json_str(head, "alg");
	/* the algorithm is ours to choose, never the token's ("none") */
	int hs256 = alg && strcmp(alg, "HS256") == 0;
	json_decref(head);
	if (!hs256)
		return csa_error(err, CSA_EAUTH, "Flock event token is not signed HS256");
	unsigned char mac[32];
	unsigned int ml = 0;
	if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)token,
	          (size_t)(d2 - token), mac, &ml) ||
	    ml != 32)
		return csa_error(err, CSA_EIO,
		                 "cannot compute the Flock signature (OpenSSL HMAC failed)");
	char want[64];
	b64url(mac, 32, want);
	const char *sig = d2 + 1;
	if (strlen(sig) != strlen(want) || CRYPTO_memcmp(sig, want, strlen(want)) != 0)
		return csa_error(err, CSA_EAUTH, "Flock event token signature does not match");
	json_t *claims = jwt_part(d1 + 1, (size_t)(d2 - d1 - 1));
	json_t *exp = json_object_get(claims, "exp");
	/* exp is seconds since the epoch (RFC 7519 NumericDate): a token
	 * replayed after it is refused */
	double e = json_is_number(exp) ? json_number_value(exp) : -1;
	json_decref(claims);
	if (e < 0)
		return csa_error(err, CSA_EAUTH, "Flock event token has no exp claim");
	if (e < (double)now_s)
		return csa_error(err, CSA_EAUTH, "Flock event token expired %.0f s ago",
		                 (double)now_s - e);
	return CSA_OK;
}

int csa_external_message_id(const char *prefix, const char *external, char out[48],
                            struct csa_err *err)
{
	char hex[CSA_SHA256_HEX_LEN];
	out[0] = '\0';
	if (csa_sha256_hex(external, strlen(external), hex))
		return csa_error(err, CSA_EIO,
		                 "cannot derive the message id of a %.12s message (OpenSSL SHA-256 "
		                 "failed)",
		                 prefix);
	snprintf(out, 48, "%.12s-%.32s", prefix, hex);
	return CSA_OK;
}

int csa_subject_ticket(const char *subject, char *out, size_t outsz)
{
	for (const char *p = subject ? strchr(subject, '[') : NULL; p; p = strchr(p + 1, '[')) {
		const char *s = p + 1;
		if (*s == '#')
			s++;
		const char *e = strchr(s, ']');
		if (!e || e == s || (size_t)(e - s) >= outsz)
			continue;
		if (csa_id_check(s, (size_t)(e - s), NULL) == CSA_OK) {
			memcpy(out, s, (size_t)(e - s));
			out[e - s] = '\0';
			return 1;
		}
	}
	return 0;
}

/* ---- e-mail ------------------------------------------------------------------ */

struct buf {
	char *p;
	size_t n, cap;
};

static int put(struct buf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t cap = (b->n + n + 1) * 2;
		char *np = realloc(b->p, cap);
		if (!np)
			return -1;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
	return 0;
}

/* Latin-1 (ISO-8859-1, Windows-1252's printable range) to UTF-8. */
static int latin1_to_utf8(const char *s, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char u[2];
		if (c < 0x80) {
			if (put(out, (const char *)&s[i], 1))
				return -1;
		} else {
			u[0] = (char)(0xC0 | c >> 6);
			u[1] = (char)(0x80 | (c & 0x3F));
			if (put(out, u, 2))
				return -1;
		}
	}
	return 0;
}

static int hexv(int c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	                              : -1;
}

static int qp_decode(const char *s, size_t n, struct buf *out, int underscore_space)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '=' && i + 1 < n && (s[i + 1] == '\n' || s[i + 1] == '\r')) {
			i++; /* soft line break */
			if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
				i++;
			continue;
		}
		if (c == '=' && i + 2 < n && hexv(s[i + 1]) >= 0 && hexv(s[i + 2]) >= 0) {
			char v = (char)(hexv(s[i + 1]) * 16 + hexv(s[i + 2]));
			if (put(out, &v, 1))
				return -1;
			i += 2;
			continue;
		}
		if (underscore_space && c == '_')
			c = ' ';
		if (put(out, &c, 1))
			return -1;
	}
	return 0;
}

/* Results of the decoders below, besides 0 (done). */
enum { DEC_NOMEM = -1, DEC_STRUCTURE = -2, DEC_BASE64 = -3 };

/*
 * Base64 as MIME sends it (RFC 2045 §6.8): lines of at most 76 characters
 * with CRLF or LF breaks, padding at the end. OpenSSL's decoder skips the
 * line breaks and white space, stops at the padding and counts it right,
 * and refuses characters outside the alphabet, data after the padding and
 * a partial group at the end (DEC_BASE64).
 */
static int b64_decode(const char *s, size_t n, struct buf *out)
{
	EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
	/* the decoded bytes are never more than the characters read */
	unsigned char *dec = ctx ? malloc(n + 3) : NULL;
	if (!dec) {
		EVP_ENCODE_CTX_free(ctx);
		return DEC_NOMEM;
	}
	EVP_DecodeInit(ctx);
	size_t total = 0;
	int rc = 0, done = 0;
	for (size_t off = 0; off < n && !done && rc == 0;) {
		/* EVP_DecodeUpdate takes an int length: feed at most 1 MiB at a time */
		int chunk = (int)(n - off < (1u << 20) ? n - off : (1u << 20));
		int got = 0;
		int r =
		    EVP_DecodeUpdate(ctx, dec + total, &got, (const unsigned char *)s + off, chunk);
		if (r < 0)
			rc = DEC_BASE64;
		else
			total += (size_t)got;
		done = r == 0; /* the padding ended the data */
		off += (size_t)chunk;
		/* what follows the padding in later chunks may only be white space */
		for (size_t k = off; done && rc == 0 && k < n; k++)
			if (!isspace((unsigned char)s[k]))
				rc = DEC_BASE64;
	}
	if (rc == 0) {
		int got = 0;
		if (EVP_DecodeFinal(ctx, dec + total, &got) != 1)
			rc = DEC_BASE64;
		else
			total += (size_t)got;
	}
	EVP_ENCODE_CTX_free(ctx);
	if (rc == 0 && put(out, (const char *)dec, total))
		rc = DEC_NOMEM;
	free(dec);
	return rc;
}

/* Decode body bytes by transfer encoding and charset into UTF-8. */
static int decode_body(const char *s, size_t n, const char *cte, const char *charset,
                       struct buf *out)
{
	struct buf raw = {0};
	int rc = 0;
	if (cte && strcasecmp(cte, "quoted-printable") == 0)
		rc = qp_decode(s, n, &raw, 0);
	else if (cte && strcasecmp(cte, "base64") == 0)
		rc = b64_decode(s, n, &raw);
	else
		rc = put(&raw, s, n);
	if (rc == 0 && raw.p) {
		if (charset &&
		    (strcasecmp(charset, "iso-8859-1") == 0 || strcasecmp(charset, "latin1") == 0 ||
		     strcasecmp(charset, "windows-1252") == 0 ||
		     strcasecmp(charset, "us-ascii") == 0))
			rc = latin1_to_utf8(raw.p, raw.n, out);
		else
			rc = put(out, raw.p, raw.n);
	}
	free(raw.p);
	return rc;
}

/* A header's value (unfolded) from a header block; caller frees. NULL when
 * the header is absent, or when memory ran out (then *nomem is set). */
static char *header(const char *h, size_t hn, const char *name, int *nomem)
{
	size_t nl = strlen(name);
	for (size_t i = 0; i < hn;) {
		size_t e = i;
		while (e < hn && h[e] != '\n')
			e++;
		if (e - i > nl && strncasecmp(h + i, name, nl) == 0 && h[i + nl] == ':') {
			struct buf v = {0};
			size_t s = i + nl + 1;
			for (;;) {
				size_t le = e;
				if (le > s && h[le - 1] == '\r')
					le--;
				while (s < le && (h[s] == ' ' || h[s] == '\t'))
					s++;
				if ((v.n && put(&v, " ", 1)) || put(&v, h + s, le - s)) {
					free(v.p);
					*nomem = 1;
					return NULL;
				}
				/* folded continuation lines start with white space */
				if (e + 1 < hn && (h[e + 1] == ' ' || h[e + 1] == '\t')) {
					s = e + 1;
					e = s;
					while (e < hn && h[e] != '\n')
						e++;
					continue;
				}
				break;
			}
			if (!v.p && !(v.p = strdup("")))
				*nomem = 1;
			return v.p;
		}
		i = e + 1;
	}
	return NULL;
}

/* A parameter (boundary=, charset=) of a header value; caller frees. */
static char *param(const char *v, const char *name)
{
	size_t nl = strlen(name);
	for (const char *p = v; p && *p; p++) {
		if (strncasecmp(p, name, nl) == 0 && p[nl] == '=' &&
		    (p == v || p[-1] == ';' || p[-1] == ' ' || p[-1] == '\t')) {
			const char *s = p + nl + 1, *e;
			if (*s == '"') {
				s++;
				e = strchr(s, '"');
			} else {
				e = s + strcspn(s, "; \t");
			}
			if (!e || e - s > 200)
				return NULL;
			return strndup(s, (size_t)(e - s));
		}
	}
	return NULL;
}

/* RFC 2047: =?charset?B|Q?text?= words in a header value. Returns 0 with
 * *out the decoded value (caller frees), or DEC_NOMEM, or DEC_BASE64 for a
 * B word that is not base64. */
static int decode_words(const char *v, char **out_value)
{
	struct buf out = {0};
	const char *p = v;
	int rc = 0;
	while (*p && rc == 0) {
		const char *s = strstr(p, "=?");
		if (!s) {
			rc = put(&out, p, strlen(p)) ? DEC_NOMEM : 0;
			break;
		}
		const char *q1 = strchr(s + 2, '?');
		const char *q2 = q1 ? strchr(q1 + 1, '?') : NULL;
		const char *e = q2 ? strstr(q2 + 1, "?=") : NULL;
		if (!q1 || !q2 || !e || q2 != q1 + 2) {
			rc = put(&out, p, (size_t)(s + 2 - p)) ? DEC_NOMEM : 0;
			p = s + 2;
			continue;
		}
		/* white space between two encoded words is dropped */
		const char *w = p;
		int only_space = 1;
		for (; w < s; w++)
			only_space &= *w == ' ' || *w == '\t';
		if (!(only_space && out.n) && put(&out, p, (size_t)(s - p))) {
			rc = DEC_NOMEM;
			break;
		}
		char *charset = strndup(s + 2, (size_t)(q1 - s - 2));
		char enc = (char)toupper((unsigned char)q1[1]);
		struct buf raw = {0};
		if (!charset)
			rc = DEC_NOMEM;
		else if (enc == 'B')
			rc = b64_decode(q2 + 1, (size_t)(e - q2 - 1), &raw);
		else
			rc = qp_decode(q2 + 1, (size_t)(e - q2 - 1), &raw, 1);
		if (rc == 0 && raw.p)
			rc = decode_body(raw.p, raw.n, NULL, charset, &out);
		free(raw.p);
		free(charset);
		p = e + 2;
	}
	if (rc == 0 && !out.p && !(out.p = strdup("")))
		rc = DEC_NOMEM;
	if (rc) {
		free(out.p);
		return rc;
	}
	*out_value = out.p;
	return 0;
}

/* Find the first text/plain part of an entity (headers h, body b). */
static int find_text(const char *h, size_t hn, const char *b, size_t bn, int depth, struct buf *out)
{
	if (depth > 8)
		return DEC_STRUCTURE;
	int nomem = 0;
	char *ct = header(h, hn, "Content-Type", &nomem);
	char *cte = header(h, hn, "Content-Transfer-Encoding", &nomem);
	int rc = 1; /* not found */
	if (nomem) {
		rc = DEC_NOMEM;
	} else if (!ct || strncasecmp(ct, "text/plain", 10) == 0) {
		char *cs = ct ? param(ct, "charset") : NULL;
		rc = decode_body(b, bn, cte, cs, out);
		free(cs);
	} else if (strncasecmp(ct, "multipart/", 10) == 0) {
		char *bd = param(ct, "boundary");
		if (!bd) {
			rc = DEC_STRUCTURE;
			goto out;
		}
		char delim[210];
		int dl = snprintf(delim, sizeof(delim), "--%s", bd);
		free(bd);
		const char *p = b, *end = b + bn;
		/* parts between delimiter lines */
		const char *start = NULL;
		while (p < end && rc == 1) {
			const char *m = memmem(p, (size_t)(end - p), delim, (size_t)dl);
			if (!m)
				break;
			if (start) {
				const char *pe = m;
				if (pe > start && pe[-1] == '\n')
					pe--;
				if (pe > start && pe[-1] == '\r')
					pe--;
				/* the part's own headers end at a blank line */
				const char *sep = memmem(start, (size_t)(pe - start), "\n\n", 2);
				const char *sep2 =
				    memmem(start, (size_t)(pe - start), "\r\n\r\n", 4);
				size_t skip = 2;
				if (sep2 && (!sep || sep2 < sep)) {
					sep = sep2;
					skip = 4;
				}
				if (sep)
					rc = find_text(start, (size_t)(sep - start), sep + skip,
					               (size_t)(pe - sep - skip), depth + 1, out);
			}
			p = m + dl;
			if (p + 1 < end && p[0] == '-' && p[1] == '-')
				break; /* closing delimiter */
			while (p < end && *p != '\n')
				p++;
			start = p < end ? p + 1 : end;
		}
	}
out:
	free(ct);
	free(cte);
	return rc;
}

int csa_email_parse(const char *raw, size_t len, json_t **out, struct csa_err *err)
{
	if (len == 0 || memchr(raw, '\0', len))
		return csa_error(err, CSA_EPARSE, "e-mail: empty or contains NUL bytes");
	const char *sep = memmem(raw, len, "\r\n\r\n", 4);
	size_t skip = 4;
	const char *sep2 = memmem(raw, len, "\n\n", 2);
	if (!sep || (sep2 && sep2 < sep)) {
		sep = sep2;
		skip = 2;
	}
	if (!sep)
		return csa_error(err, CSA_EPARSE, "e-mail: no blank line between headers and body");
	size_t hn = (size_t)(sep - raw);
	int nomem = 0;
	char *from = header(raw, hn, "From", &nomem), *subj = header(raw, hn, "Subject", &nomem),
	     *mid = header(raw, hn, "Message-ID", &nomem),
	     *irt = header(raw, hn, "In-Reply-To", &nomem),
	     *refs = header(raw, hn, "References", &nomem);
	struct buf text = {0};
	char *ds = NULL, *df = NULL;
	const char *where = "the text part"; /* what a base64 error is in */
	int rc = nomem ? DEC_NOMEM : find_text(raw, hn, sep + skip, len - hn - skip, 0, &text);
	if (rc == 0 && subj) {
		where = "an encoded word of the Subject header";
		rc = decode_words(subj, &ds);
	}
	if (rc == 0 && from) {
		where = "an encoded word of the From header";
		rc = decode_words(from, &df);
	}
	if (rc == 0) {
		/* text that is not UTF-8 after decoding is refused, not guessed */
		json_t *t = text.p ? json_stringn(text.p, text.n) : json_string("");
		if (!t) {
			rc = csa_error(err, CSA_EPARSE,
			               "e-mail: text part is not valid UTF-8 (charset?)");
		} else {
			*out = json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:o}", "from", df,
			                 "subject", ds, "message_id", mid, "in_reply_to", irt,
			                 "references", refs, "text", t);
			if (!*out)
				rc = csa_error(err, CSA_EPARSE,
				               "e-mail: headers are not valid UTF-8");
		}
	} else if (rc == 1) {
		rc = csa_error(err, CSA_EPARSE, "e-mail: no text/plain part");
	} else if (rc == DEC_NOMEM) {
		rc = csa_error(err, CSA_ENOMEM, "out of memory parsing e-mail");
	} else if (rc == DEC_BASE64) {
		rc = csa_error(err, CSA_EPARSE,
		               "e-mail: invalid base64 in %s (a character outside the alphabet, "
		               "data after the padding, or a partial group at the end)",
		               where);
	} else {
		rc = csa_error(err, CSA_EPARSE,
		               "e-mail: broken MIME structure (missing boundary or nested deeper "
		               "than 8 levels)");
	}
	free(ds);
	free(df);
	free(text.p);
	free(from);
	free(subj);
	free(mid);
	free(irt);
	free(refs);
	return rc;
}

json_t *csa_autonomous_reply(const char *ticket_id, const json_t *result)
{
	json_t *sel = json_object_get(json_object_get(result, "agent_decisions"), "selector");
	json_t *dec = json_object_get(sel, "decision");
	const char *did = csa_json_str(sel, "decision_id");
	json_t *draft =
	    json_object_get(json_object_get(dec, "execution_parameters"), "draft_reply");
	const char *text = csa_json_str(draft, "text");
	if (!text || !did ||
	    !json_is_true(
	        json_object_get(json_object_get(dec, "applied_autonomously"), "strategy")))
		return NULL;
	return json_pack("{s:s, s:s, s:s, s:s, s:O?}", "ticket_id", ticket_id, "to", "customer",
	                 "decision_id", did, "message", text, "source",
	                 json_object_get(draft, "source"));
}
