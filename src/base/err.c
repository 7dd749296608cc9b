/* Status names and error message formatting. */
#include "base/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *csa_strerror(int code)
{
	switch (code) {
	case CSA_OK:
		return "ok";
	case CSA_EINVAL:
		return "invalid argument";
	case CSA_EIO:
		return "i/o error";
	case CSA_ENOMEM:
		return "out of memory";
	case CSA_ENOENT:
		return "not found";
	case CSA_EEXIST:
		return "already exists";
	case CSA_ESCHEMA:
		return "schema violation";
	case CSA_EPARSE:
		return "parse error";
	case CSA_ELIMIT:
		return "limit exceeded";
	case CSA_ECORRUPT:
		return "corrupt data";
	case CSA_EBUSY:
		return "busy";
	case CSA_ESTATE:
		return "invalid state";
	case CSA_EAUTH:
		return "authentication failed";
	case CSA_EBACKEND:
		return "backend failure";
	case CSA_ECONFLICT:
		return "conflict";
	}
	return "unknown error";
}

int csa_error(struct csa_err *err, int code, const char *fmt, ...)
{
	if (!err)
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	err->code = code;
	err->sys_errno = 0;
	return code;
}

int csa_error_sys(struct csa_err *err, const char *fmt, ...)
{
	int saved = errno;
	if (!err)
		return CSA_EIO;
	char what[384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	char ebuf[128];
	const char *es = strerror_r(saved, ebuf, sizeof(ebuf));
	snprintf(err->msg, sizeof(err->msg), "%s: %s", what, es);
	err->code = saved == ENOMEM ? CSA_ENOMEM : CSA_EIO;
	err->sys_errno = saved;
	return err->code;
}

int csa_error_prefix(struct csa_err *err, const char *fmt, ...)
{
	if (!err)
		return CSA_EINVAL;
	char pre[256], old[sizeof(err->msg)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	snprintf(err->msg, sizeof(err->msg), "%s%s", pre, old);
	return err->code;
}

void csa_bug(const char *file, int line, const char *msg)
{
	fprintf(stderr, "csa: BUG at %s:%d: %s\n", file, line, msg);
	abort();
}
