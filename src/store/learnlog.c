/* What the backends of store/learnlog.h share. */
#include "store/learnlog.h"

#include <stdlib.h>
#include <string.h>

int csa_learnlog_kind_check(const char *kind, struct csa_err *err)
{
	size_t n = kind ? strlen(kind) : 0;
	int ok = n >= 1 && n <= CSA_LEARNLOG_KIND_MAX;
	for (size_t i = 0; ok && i < n; i++)
		ok = (kind[i] >= 'a' && kind[i] <= 'z') || (kind[i] >= '0' && kind[i] <= '9') ||
		     kind[i] == '_' || kind[i] == '.' || kind[i] == '-';
	if (!ok)
		return csa_error(
		    err, CSA_EINVAL,
		    "online-learning entry kind '%.40s' must be 1-%d bytes of a-z, 0-9, "
		    "'_', '.', '-'",
		    kind ? kind : "(null)", CSA_LEARNLOG_KIND_MAX);
	return CSA_OK;
}

void csa_learnlog_free_entries(struct csa_learnlog_entry *e, size_t n)
{
	for (size_t i = 0; e && i < n; i++)
		free(e[i].body);
	free(e);
}
