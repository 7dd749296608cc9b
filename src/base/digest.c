/* SHA-256 helpers over OpenSSL's one-shot EVP_Digest. */
#include "base/digest.h"
#include "base/err.h"

#include <openssl/evp.h>

int csa_sha256(const void *d, size_t n, unsigned char md[32])
{
	unsigned int len = 0;
	if (EVP_Digest(d, n, md, &len, EVP_sha256(), NULL) != 1 || len != 32)
		return CSA_EIO;
	return CSA_OK;
}

int csa_sha256_hex(const void *d, size_t n, char out[CSA_SHA256_HEX_LEN])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[32];
	out[0] = '\0';
	if (csa_sha256(d, n, md))
		return CSA_EIO;
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
	return CSA_OK;
}
