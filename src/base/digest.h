/*
 * SHA-256 through OpenSSL, for what must resist tampering or guessing:
 * the audit ledger's chain, API token digests, rollback-point file
 * checksums, backup manifests, the customer-text digest of a decision.
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

/* SHA-256 of data given in pieces (a file copied block by block):
 * csa_sha256_begin() returns a new context or NULL (out of memory, or
 * OpenSSL failed); _update() returns CSA_OK or CSA_EIO; _end() writes the
 * hex digest (CSA_OK or CSA_EIO, out then empty) and frees the context,
 * as _free() does without a digest (NULL is a no-op for both). */
struct csa_sha256_ctx;
struct csa_sha256_ctx *csa_sha256_begin(void);
int csa_sha256_update(struct csa_sha256_ctx *c, const void *d, size_t n);
int csa_sha256_end(struct csa_sha256_ctx *c, char out[CSA_SHA256_HEX_LEN]);
void csa_sha256_free(struct csa_sha256_ctx *c);

#endif
