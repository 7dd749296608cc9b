/*
 * SHA-256 through OpenSSL, for what must resist tampering or guessing:
 * the audit ledger's chain, API token digests, rollback-point file
 * checksums, the customer-text digest of a decision.
 */
#ifndef CSA_BASE_DIGEST_H
#define CSA_BASE_DIGEST_H

#include <stddef.h>

#define CSA_SHA256_HEX_LEN 65 /* 64 hex digits and a NUL */

/* SHA-256 of n bytes at d as lower-case hex into out. Returns CSA_OK, or
 * CSA_EIO when OpenSSL fails (out is then the empty string). */
int csa_sha256_hex(const void *d, size_t n, char out[CSA_SHA256_HEX_LEN]);

/* Raw digest into md[32]; CSA_OK or CSA_EIO. */
int csa_sha256(const void *d, size_t n, unsigned char md[32]);

#endif
