/* Personal data redaction: a single left-to-right scan; at each word start
 * the detectors are tried in order (e-mail, IBAN, card, phone), each bounded
 * in how far it looks, so hostile input stays linear. */
#include "llm/redact.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define EMAIL_LOCAL_MAX  64
#define EMAIL_DOMAIN_MAX 253

static int is_alnum(char c)
{
	return isalnum((unsigned char)c);
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

int csa_luhn_ok(const char *digits, size_t n)
{
	int sum = 0;
	for (size_t k = 0; k < n; k++) {
		int d = digits[n - 1 - k] - '0';
		if (k % 2 == 1 && (d *= 2) > 9)
			d -= 9;
		sum += d;
	}
	return n > 0 && sum % 10 == 0;
}

int csa_iban_ok(const char *iban, size_t n)
{
	if (n < 15 || n > 34)
		return 0;
	unsigned rem = 0;
	for (size_t k = 0; k < n; k++) {
		char c = (char)toupper((unsigned char)iban[(k + 4) % n]);
		if (is_digit(c))
			rem = (rem * 10 + (unsigned)(c - '0')) % 97;
		else if (c >= 'A' && c <= 'Z')
			rem = (rem * 100 + (unsigned)(c - 'A' + 10)) % 97;
		else
			return 0;
	}
	return rem == 1;
}

/* UTF-8 bytes count as letters: "jörg@example.de" is an address too. */
static int local_char(char c)
{
	return is_alnum(c) || (unsigned char)c >= 0x80 || (c && strchr("._%+-", c));
}

static int domain_char(char c)
{
	return is_alnum(c) || (unsigned char)c >= 0x80 || c == '-' || c == '.';
}

/* Length of an e-mail address starting at s[0], or 0. */
static size_t match_email(const char *s, size_t n)
{
	size_t j = 0;
	while (j < n && j <= EMAIL_LOCAL_MAX && local_char(s[j]))
		j++;
	if (j == 0 || j >= n || s[j] != '@')
		return 0;
	size_t k = j + 1, d = k;
	while (d < n && d - k <= EMAIL_DOMAIN_MAX && domain_char(s[d]))
		d++;
	/* the longest domain whose last label is a top-level domain: in
	 * "a@example.co.440" the address is "a@example.co", as it will be
	 * once "440 ..." is redacted as a phone number */
	for (;;) {
		while (d > k && (s[d - 1] == '.' || s[d - 1] == '-'))
			d--;
		size_t dot = d;
		while (dot > k && s[dot - 1] != '.')
			dot--;
		if (dot <= k + 1)
			return 0; /* no "x." before the top-level domain */
		int tld = d - dot >= 2;
		for (size_t t = dot; tld && t < d; t++)
			tld = isalpha((unsigned char)s[t]) || (unsigned char)s[t] >= 0x80;
		if (tld)
			return d;
		d = dot - 1;
	}
}

/* Length of the longest IBAN (groups of letters and digits separated by
 * single spaces) starting at s[0], or 0. */
static size_t match_iban(const char *s, size_t n)
{
	if (n < 15 || !isalpha((unsigned char)s[0]) || !isalpha((unsigned char)s[1]) ||
	    !is_digit(s[2]) || !is_digit(s[3]))
		return 0;
	char compact[35];
	size_t c = 0, best = 0;
	for (size_t j = 0; j < n && c < 34; j++) {
		if (s[j] == ' ' && j > 0 && s[j - 1] != ' ' && j + 1 < n && is_alnum(s[j + 1]))
			continue;
		if (!is_alnum(s[j]))
			break;
		compact[c++] = s[j];
		int end = j + 1 >= n || !is_alnum(s[j + 1]);
		if (end && csa_iban_ok(compact, c))
			best = j + 1;
	}
	return best;
}

/* Length of the longest Luhn-valid card number (13-19 digits, single spaces
 * or dashes between groups) starting at s[0], or 0. */
static size_t match_card(const char *s, size_t n)
{
	char digits[20];
	size_t c = 0, best = 0;
	for (size_t j = 0; j < n && c < 19; j++) {
		if ((s[j] == ' ' || s[j] == '-') && j > 0 && is_digit(s[j - 1]) && j + 1 < n &&
		    is_digit(s[j + 1]))
			continue;
		if (!is_digit(s[j]))
			break;
		digits[c++] = s[j];
		int end = j + 1 >= n || !is_alnum(s[j + 1]);
		if (end && c >= 13 && csa_luhn_ok(digits, c))
			best = j + 1;
	}
	return best;
}

/* "2026-11-24": an ISO date is not a phone number. */
static int is_iso_date(const char *s, size_t n)
{
	return n >= 10 && is_digit(s[0]) && is_digit(s[1]) && is_digit(s[2]) && is_digit(s[3]) &&
	       s[4] == '-' && is_digit(s[5]) && is_digit(s[6]) && s[7] == '-' && is_digit(s[8]) &&
	       is_digit(s[9]);
}

/* What may separate the digits of a phone number, two at most in a row. */
static int is_phone_sep(char c)
{
	return c != '\0' && strchr(" -.()", c) != NULL;
}

/* Length of a phone number starting at s[0], or 0. */
static size_t match_phone(const char *s, size_t n)
{
	if (is_iso_date(s, n))
		return 0;
	int plus = s[0] == '+';
	size_t digits = 0, end = 0, seps = 0;
	for (size_t j = plus; j < n; j++) {
		if (is_digit(s[j])) {
			if (++digits > 15)
				return 0;
			end = j + 1;
			seps = 0;
		} else if (is_phone_sep(s[j]) && ++seps <= 2) {
			continue;
		} else {
			break;
		}
	}
	if (end == 0 || (end < n && is_alnum(s[end])))
		return 0;
	return digits >= (plus ? 7u : 9u) ? end : 0;
}

/* "1111 2222", "1111) (2222": the second group continues a number (by
 * match_phone's separators), it does not start one, unless the number
 * before it was redacted up to 'after'. So a pass reads each start as the
 * next pass will: a group of a run too long for a phone is no phone, and a
 * number after a redacted one is one. */
static int inside_number(const char *text, size_t i, size_t after)
{
	size_t j = i;
	while (j > after && i - j < 2 && is_phone_sep(text[j - 1]))
		j--;
	return j < i && j > after && is_digit(text[j - 1]);
}

/* One pass over text; *count receives its replacements. */
static char *redact_pass(const char *text, unsigned kinds, size_t *count)
{
	size_t n = strlen(text), found = 0;
	char *out = malloc(2 * n + 16), *o = out;
	if (!out)
		return NULL;
	size_t after = 0; /* where the last redaction ended */
	for (size_t i = 0; i < n;) {
		/* what precedes i in the output: a redaction ends with "]" */
		char prev = i == 0 ? ' ' : i == after ? ']' : text[i - 1];
		const char *s = text + i;
		size_t rest = n - i, len = 0;
		const char *tag = NULL;
		if ((kinds & CSA_PII_EMAIL) && !local_char(prev) && (len = match_email(s, rest)))
			tag = "[EMAIL]";
		else if (!is_alnum(prev) && prev != '+' && !inside_number(text, i, after)) {
			if ((kinds & CSA_PII_IBAN) && (len = match_iban(s, rest)))
				tag = "[IBAN]";
			else if ((kinds & CSA_PII_CARD) && (len = match_card(s, rest)))
				tag = "[CARD]";
			else if ((kinds & CSA_PII_PHONE) &&
			         (is_digit(*s) || *s == '+' || *s == '(') &&
			         (len = match_phone(s, rest)))
				tag = "[PHONE]";
		}
		if (tag) {
			size_t tl = strlen(tag);
			memcpy(o, tag, tl);
			o += tl;
			i += len;
			after = i;
			found++;
		} else {
			*o++ = text[i++];
		}
	}
	*o = '\0';
	*count = found;
	return out;
}

/*
 * Passes until one finds nothing. A pass judges each candidate by the text
 * around it, and a later redaction can change that context for an earlier
 * one ("jo@example.ü0612 345 678": the address's last label runs into
 * the phone number, so it is no address until the number is gone), so the
 * output of one pass may still hold what a second would redact. Text
 * without personal data takes one pass, text with some usually two. Every
 * replacement removes digits or an '@' that no tag puts back, so the
 * passes end.
 */
char *csa_redact(const char *text, unsigned kinds, size_t *count)
{
	size_t total = 0, found;
	char *out = redact_pass(text, kinds, &found);
	while (out && found) {
		total += found;
		char *again = redact_pass(out, kinds, &found);
		free(out);
		out = again;
	}
	if (count)
		*count = total;
	return out;
}

int csa_redact_kinds(const json_t *v, const char *where, unsigned *kinds, struct csa_err *err)
{
	static const struct {
		const char *name;
		unsigned kind;
	} names[] = {{"email", CSA_PII_EMAIL},
	             {"phone", CSA_PII_PHONE},
	             {"card", CSA_PII_CARD},
	             {"iban", CSA_PII_IBAN}};
	if (!v || json_is_true(v)) {
		*kinds = CSA_PII_ALL;
		return CSA_OK;
	}
	if (json_is_false(v)) {
		*kinds = 0;
		return CSA_OK;
	}
	if (!json_is_array(v))
		return csa_error(err, CSA_EINVAL, "%s: expected true, false or a list of kinds",
		                 where);
	unsigned k = 0;
	size_t i;
	json_t *e;
	json_array_foreach(v, i, e)
	{
		const char *s = json_string_value(e);
		size_t m = 0;
		while (m < sizeof(names) / sizeof(names[0]) && (!s || strcmp(s, names[m].name)))
			m++;
		if (m == sizeof(names) / sizeof(names[0]))
			return csa_error(err, CSA_EINVAL,
			                 "%s[%zu]: unknown kind (email, phone, card, iban)", where,
			                 i);
		k |= names[m].kind;
	}
	*kinds = k;
	return CSA_OK;
}
