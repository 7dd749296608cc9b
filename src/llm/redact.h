/*
 * Personal data redaction before a prompt leaves the machine (issue 6):
 * e-mail addresses, phone numbers, payment card numbers (13-19 digits that
 * pass the Luhn check) and IBANs (ISO 13616, mod-97 check) are replaced by
 * "[EMAIL]", "[PHONE]", "[CARD]" and "[IBAN]".
 *
 * The checksums keep order numbers and dates out of the way; a phone number
 * needs a leading '+' (7-15 digits) or at least 9 digits, so that dates
 * ("2026-11-24") and short references stay readable for the model.
 */
#ifndef CSA_LLM_REDACT_H
#define CSA_LLM_REDACT_H

#include <jansson.h>
#include <stddef.h>
#include "base/err.h"

enum {
	CSA_PII_EMAIL = 1u << 0,
	CSA_PII_PHONE = 1u << 1,
	CSA_PII_CARD = 1u << 2,
	CSA_PII_IBAN = 1u << 3,
	CSA_PII_ALL = 0xfu
};

/* A new string with the kinds in 'kinds' redacted (caller frees; NULL when
 * out of memory). *count (may be NULL) receives the number of replacements. */
char *csa_redact(const char *text, unsigned kinds, size_t *count);

/* Kinds from a config value: true (all), false (none) or a list of
 * "email", "phone", "card", "iban". 'where' names the key in errors. */
int csa_redact_kinds(const json_t *v, const char *where, unsigned *kinds, struct csa_err *err);

/* The checks, for tests and for callers that validate input. */
int csa_luhn_ok(const char *digits, size_t n);
int csa_iban_ok(const char *iban, size_t n); /* compact form, no spaces */

#endif
