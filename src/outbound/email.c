/* Replies by e-mail (email.h): composing without header injection, and
 * SMTP submission with libcurl. */
#include "outbound/email.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A growing text; 'bad' is set once memory ran out, so callers check once
 * at the end. */
struct mbuf {
	char *p;
	size_t n, cap;
	int bad;
};

static void put(struct mbuf *b, const char *s, size_t n)
{
	if (b->bad)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t cap = (b->n + n + 1) * 2;
		char *np = realloc(b->p, cap);
		if (!np) {
			b->bad = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void puts_(struct mbuf *b, const char *s)
{
	put(b, s, strlen(s));
}

/* ---- addresses and ids ---------------------------------------------------------- */

/* atext of RFC 5322 §3.2.3 and the dot: what a local part may hold unquoted. */
static int atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+/=?^_`{|}~-.", c));
}

static int domain_valid(const char *d, size_t n)
{
	if (n == 0 || n > 253 || d[0] == '.' || d[0] == '-' || d[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		         (c >= '0' && c <= '9') || c == '-' || c == '.';
		if (!ok || (c == '.' && d[i + 1] == '.'))
			return 0;
	}
	return 1;
}

int csa_mail_addr_valid(const char *s)
{
	const char *at = s ? strchr(s, '@') : NULL;
	if (!at || at == s || strchr(at + 1, '@') || strlen(s) > 254 || at - s > 64)
		return 0;
	for (const char *p = s; p < at; p++)
		if (!atext((unsigned char)*p))
			return 0;
	if (s[0] == '.' || at[-1] == '.' || strstr(s, ".."))
		return 0;
	return domain_valid(at + 1, strlen(at + 1));
}

int csa_mail_addr_of(const char *s, char *out, size_t n, const char *what, struct csa_err *err)
{
	if (!s)
		return csa_error(err, CSA_EINVAL, "%s: no e-mail address", what);
	const char *lt = strrchr(s, '<'), *gt = lt ? strchr(lt, '>') : NULL;
	const char *b = lt && gt ? lt + 1 : s;
	size_t len = lt && gt ? (size_t)(gt - lt - 1) : strlen(s);
	while (len && (*b == ' ' || *b == '\t'))
		b++, len--;
	while (len && (b[len - 1] == ' ' || b[len - 1] == '\t'))
		len--;
	if (len == 0 || len >= n)
		return csa_error(err, CSA_EINVAL, "%s: no e-mail address in '%.80s'", what, s);
	memcpy(out, b, len);
	out[len] = '\0';
	if (!csa_mail_addr_valid(out)) {
		out[0] = '\0';
		return csa_error(err, CSA_EINVAL, "%s: '%.80s' is not a valid e-mail address", what,
		                 s);
	}
	return CSA_OK;
}

int csa_mail_msgid_valid(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n < 5 || n > 250 || s[0] != '<' || s[n - 1] != '>')
		return 0;
	const char *at = memchr(s, '@', n);
	if (!at || at == s + 1 || at == s + n - 2)
		return 0;
	for (size_t i = 1; i + 1 < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c >= 0x7f || c == '<' || c == '>')
			return 0;
	}
	return 1;
}

/* ---- header values ---------------------------------------------------------------- */

/* A copy of 's' with every control character (CR, LF, TAB, NUL...) and
 * run of them turned into one space, trimmed: nothing of it can end a
 * header line. */
static char *one_line(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	char *o = malloc(n + 1);
	if (!o)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f) {
			if (k && o[k - 1] != ' ')
				o[k++] = ' ';
			continue;
		}
		o[k++] = (char)c;
	}
	while (k && o[k - 1] == ' ')
		k--;
	size_t start = 0;
	while (start < k && o[start] == ' ')
		start++;
	memmove(o, o + start, k - start);
	o[k - start] = '\0';
	return o;
}

static int plain_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x7f)
			return 0;
	return 1;
}

/* RFC 2047 encoded words (UTF-8, base64), each from at most 45 bytes cut
 * on a character boundary, folded onto continuation lines. */
static void encoded_words(struct mbuf *b, const char *s)
{
	size_t n = strlen(s), i = 0;
	while (i < n) {
		size_t max = n - i < 45 ? n - i : 45, k = max;
		while (k && k < n - i && ((unsigned char)s[i + k] & 0xC0) == 0x80)
			k--; /* never split a UTF-8 sequence */
		if (k == 0)
			k = max; /* not UTF-8 at all: any cut is as good */
		unsigned char enc[64];
		int el = EVP_EncodeBlock(enc, (const unsigned char *)s + i, (int)k);
		if (i)
			puts_(b, "\r\n ");
		puts_(b, "=?UTF-8?B?");
		put(b, (const char *)enc, el > 0 ? (size_t)el : 0);
		puts_(b, "?=");
		i += k;
	}
}

/* Unstructured text (a subject): as is when short plain ASCII, else
 * encoded words, which fold a long text onto lines of legal length. */
static void text_value(struct mbuf *b, const char *s)
{
	if (plain_ascii(s) && strlen(s) <= 70)
		puts_(b, s);
	else
		encoded_words(b, s);
}

/* "Name" <addr>: the name quoted (with \ before " and \) or encoded. */
static void mailbox(struct mbuf *b, const char *name, const char *addr)
{
	if (name && *name) {
		if (plain_ascii(name) && strlen(name) <= 60) {
			puts_(b, "\"");
			for (const char *p = name; *p; p++) {
				if (*p == '"' || *p == '\\')
					puts_(b, "\\");
				put(b, p, 1);
			}
			puts_(b, "\"");
		} else {
			encoded_words(b, name);
		}
		puts_(b, " ");
	}
	puts_(b, "<");
	puts_(b, addr);
	puts_(b, ">");
}

/* The valid ids of a References list, at most the newest 10. */
static void references(struct mbuf *b, const char *refs)
{
	const char *ids[10];
	size_t lens[10], n = 0;
	for (const char *p = refs; p && *p;) {
		const char *lt = strchr(p, '<');
		const char *gt = lt ? strchr(lt, '>') : NULL;
		if (!gt)
			break;
		char id[256];
		size_t len = (size_t)(gt - lt + 1);
		if (len < sizeof(id)) {
			memcpy(id, lt, len);
			id[len] = '\0';
			if (csa_mail_msgid_valid(id)) {
				if (n == 10) {
					memmove(ids, ids + 1, 9 * sizeof(ids[0]));
					memmove(lens, lens + 1, 9 * sizeof(lens[0]));
					n--;
				}
				ids[n] = lt;
				lens[n++] = len;
			}
		}
		p = gt + 1;
	}
	if (!n)
		return;
	puts_(b, "References:");
	for (size_t i = 0; i < n; i++) {
		puts_(b, i ? "\r\n " : " ");
		put(b, ids[i], lens[i]);
	}
	puts_(b, "\r\n");
}

static void date_header(struct mbuf *b, int64_t ms)
{
	static const char *const wd[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const mo[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char d[64];
	if (!gmtime_r(&t, &tm))
		return;
	snprintf(d, sizeof(d), "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", wd[tm.tm_wday],
	         tm.tm_mday, mo[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
	puts_(b, d);
}

/* ---- body ------------------------------------------------------------------------- */

/* Quoted-printable (RFC 2045 §6.7) with CRLF line ends: lines of at most
 * 76 characters, so the message has no overlong line, and a line holding
 * only "." cannot end the DATA early ("=2E"). */
static void qp_body(struct mbuf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t col = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '\r' && p[1] == '\n')
			continue; /* the LF below ends the line */
		if (*p == '\n' || *p == '\r') {
			puts_(b, "\r\n");
			col = 0;
			continue;
		}
		int lit = (*p >= 33 && *p <= 126 && *p != '=') ||
		          (*p == ' ' && p[1] && p[1] != '\n' && p[1] != '\r');
		if (col + (lit ? 1 : 3) > 75) {
			puts_(b, "=\r\n"); /* soft line break */
			col = 0;
		}
		/* decided after the break: a "." that starts a line is encoded */
		if (*p == '.' && col == 0)
			lit = 0;
		char enc[4] = {(char)*p, 0, 0, 0};
		if (!lit) {
			enc[0] = '=';
			enc[1] = hex[*p >> 4];
			enc[2] = hex[*p & 15];
		}
		puts_(b, enc);
		col += strlen(enc);
	}
	puts_(b, "\r\n");
}

int csa_mail_compose(const struct csa_mail *m, char **out, size_t *len, struct csa_err *err)
{
	if (!csa_mail_addr_valid(m->from))
		return csa_error(err, CSA_EINVAL,
		                 "e-mail reply: From '%.80s' is not a valid address",
		                 m->from ? m->from : "");
	if (!csa_mail_addr_valid(m->to))
		return csa_error(err, CSA_EINVAL, "e-mail reply: To '%.80s' is not a valid address",
		                 m->to ? m->to : "");
	if (!csa_mail_msgid_valid(m->message_id))
		return csa_error(err, CSA_EINVAL, "e-mail reply: Message-ID '%.80s' is not valid",
		                 m->message_id ? m->message_id : "");
	char *from_name = one_line(m->from_name), *to_name = one_line(m->to_name),
	     *subject = one_line(m->subject);
	struct mbuf b = {0};
	b.bad = !from_name || !to_name || !subject;
	date_header(&b, m->date_ms);
	puts_(&b, "From: ");
	mailbox(&b, from_name, m->from);
	puts_(&b, "\r\nTo: ");
	mailbox(&b, to_name, m->to);
	puts_(&b, "\r\nSubject: ");
	if (subject)
		text_value(&b, subject);
	puts_(&b, "\r\nMessage-ID: ");
	puts_(&b, m->message_id);
	puts_(&b, "\r\n");
	if (csa_mail_msgid_valid(m->in_reply_to)) {
		puts_(&b, "In-Reply-To: ");
		puts_(&b, m->in_reply_to);
		puts_(&b, "\r\n");
	}
	references(&b, m->references);
	puts_(&b, "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
	          "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
	qp_body(&b, m->text ? m->text : "");
	free(from_name);
	free(to_name);
	free(subject);
	if (b.bad) {
		free(b.p);
		return csa_error(err, CSA_ENOMEM, "out of memory composing an e-mail reply");
	}
	*out = b.p;
	*len = b.n;
	return CSA_OK;
}

/* ---- SMTP ------------------------------------------------------------------------- */

struct reader {
	const char *p;
	size_t left;
};

static size_t read_msg(char *dst, size_t sz, size_t n, void *ud)
{
	struct reader *r = ud;
	size_t k = sz * n < r->left ? sz * n : r->left;
	memcpy(dst, r->p, k);
	r->p += k;
	r->left -= k;
	return k;
}

int csa_smtp_send(const char *url, const struct csa_smtp_login *login, const char *from,
                  const char *to, const char *msg, size_t len, long timeout_ms, char *why,
                  size_t whysz)
{
	int tls = strncmp(url, "smtps://", 8) == 0;
	if (!tls && strncmp(url, "smtp://", 7) != 0) {
		snprintf(why, whysz, "'%.80s' is not an smtp:// or smtps:// URL", url);
		return -1;
	}
	CURL *c = curl_easy_init();
	if (!c) {
		snprintf(why, whysz, "cannot create an SMTP handle");
		return -1;
	}
	char mfrom[300], rcpt[300];
	snprintf(mfrom, sizeof(mfrom), "<%s>", from);
	snprintf(rcpt, sizeof(rcpt), "<%s>", to);
	struct curl_slist *rcpts = curl_slist_append(NULL, rcpt);
	struct reader r = {msg, len};
	int has_login = login && login->user && *login->user;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(c, CURLOPT_MAIL_FROM, mfrom);
	curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpts);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, read_msg);
	curl_easy_setopt(c, CURLOPT_READDATA, &r);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms / 2);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	/* a password never crosses in clear: over smtp:// it needs STARTTLS */
	curl_easy_setopt(c, CURLOPT_USE_SSL,
	                 tls         ? CURLUSESSL_ALL
	                 : has_login ? CURLUSESSL_ALL
	                             : CURLUSESSL_TRY);
	if (login && login->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, login->ca_file);
	if (has_login) {
		curl_easy_setopt(c, CURLOPT_USERNAME, login->user);
		curl_easy_setopt(c, CURLOPT_PASSWORD, login->password ? login->password : "");
	}
	CURLcode rc = curl_easy_perform(c);
	long code = 0;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_slist_free_all(rcpts);
	curl_easy_cleanup(c);
	if (rc != CURLE_OK) {
		snprintf(why, whysz, "SMTP: %s (last reply %ld)", curl_easy_strerror(rc), code);
		return -1;
	}
	return 0;
}
