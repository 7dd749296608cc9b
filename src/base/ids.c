/* Ticket and message identifiers. */
#include "base/ids.h"
#include "base/ts.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

static int id_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

int csa_id_check(const char *id, size_t len, struct csa_err *err)
{
	if (!id || len == 0)
		return csa_error(err, CSA_EINVAL, "invalid ticket id: empty");
	if (len > CSA_ID_MAX)
		return csa_error(err, CSA_EINVAL, "invalid ticket id: longer than %d characters",
		                 CSA_ID_MAX);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)id[i];
		if (!id_char(c))
			return csa_error(err, CSA_EINVAL,
			                 "invalid ticket id: character 0x%02x at offset %zu "
			                 "(allowed: A-Z a-z 0-9 _ -)",
			                 c, i);
	}
	return CSA_OK;
}

int csa_id_valid(const char *id)
{
	return id && csa_id_check(id, strlen(id), NULL) == CSA_OK;
}

void csa_id_generate(const char *prefix, char *out, size_t outsz)
{
	unsigned char rnd[4] = {0};
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		/* getrandom on Linux >= 3.17 does not fail for 4 bytes; fall back
		 * to the clock so an id is still produced. */
		int64_t ns = csa_mono_ns();
		memcpy(rnd, &ns, sizeof(rnd));
	}
	char ts[CSA_TS_LEN];
	csa_ts_format(csa_now_ms(), ts);
	/* ts = YYYY-MM-DDTHH:MM:SS.mmmZ -> YYYYMMDDHHMMSS */
	char compact[15];
	int j = 0;
	for (int i = 0; ts[i] && ts[i] != '.' && j < 14; i++)
		if (ts[i] >= '0' && ts[i] <= '9')
			compact[j++] = ts[i];
	compact[j] = '\0';
	snprintf(out, outsz, "%s%s-%02x%02x%02x%02x", prefix, compact, rnd[0], rnd[1], rnd[2],
	         rnd[3]);
}
