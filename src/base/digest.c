/* SHA-256 helpers over OpenSSL's EVP digests. */
#include "base/digest.h"
#include "base/err.h"

#include <openssl/evp.h>
#include <stdlib.h>

int csa_sha256(const void *d, size_t n, unsigned char md[32])
{
	unsigned int len = 0;
	if (EVP_Digest(d, n, md, &len, EVP_sha256(), NULL) != 1 || len != 32)
		return CSA_EIO;
	return CSA_OK;
}

static void to_hex(const unsigned char md[32], char out[CSA_SHA256_HEX_LEN])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}

int csa_sha256_hex(const void *d, size_t n, char out[CSA_SHA256_HEX_LEN])
{
	unsigned char md[32];
	out[0] = '\0';
	if (csa_sha256(d, n, md))
		return CSA_EIO;
	to_hex(md, out);
	return CSA_OK;
}

struct csa_sha256_ctx {
	EVP_MD_CTX *md;
};

struct csa_sha256_ctx *csa_sha256_begin(void)
{
	struct csa_sha256_ctx *c = malloc(sizeof(*c));
	if (!c)
		return NULL;
	if (!(c->md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1) {
		csa_sha256_free(c);
		return NULL;
	}
	return c;
}

int csa_sha256_update(struct csa_sha256_ctx *c, const void *d, size_t n)
{
	return EVP_DigestUpdate(c->md, d, n) == 1 ? CSA_OK : CSA_EIO;
}

int csa_sha256_end(struct csa_sha256_ctx *c, char out[CSA_SHA256_HEX_LEN])
{
	unsigned char md[32];
	unsigned int len = 0;
	int ok = c && EVP_DigestFinal_ex(c->md, md, &len) == 1 && len == 32;
	csa_sha256_free(c);
	out[0] = '\0';
	if (!ok)
		return CSA_EIO;
	to_hex(md, out);
	return CSA_OK;
}

void csa_sha256_free(struct csa_sha256_ctx *c)
{
	if (!c)
		return;
	EVP_MD_CTX_free(c->md);
	free(c);
}
