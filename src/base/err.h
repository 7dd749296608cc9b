/*
 * Status codes and error detail shared by every module.
 *
 * Fallible functions return 0 (CSA_OK) or a negative CSA_E* code and, when
 * the caller passes a struct csa_err, fill it with a human message that says
 * what failed and where ("'Tickets/T_ext/E_42.json' line 3 col 9: ...").
 * Codes are appended, never renumbered: they appear in JSON output.
 */
#ifndef CSA_BASE_ERR_H
#define CSA_BASE_ERR_H

#include <stddef.h>

enum csa_status {
	CSA_OK = 0,
	CSA_EINVAL = -1,   /* bad argument or input value */
	CSA_EIO = -2,      /* system call failed; errno kept in csa_err */
	CSA_ENOMEM = -3,   /* allocation failed */
	CSA_ENOENT = -4,   /* no such ticket, file, task, ... */
	CSA_EEXIST = -5,   /* already exists */
	CSA_ESCHEMA = -6,  /* document does not match its schema */
	CSA_EPARSE = -7,   /* malformed JSON, CSV, e-mail, ... */
	CSA_ELIMIT = -8,   /* a configured size or rate limit was exceeded */
	CSA_ECORRUPT = -9, /* checksum or format mismatch in a stored file */
	CSA_EBUSY = -10,   /* resource locked or budget exhausted */
	CSA_ESTATE = -11,  /* operation not allowed in the current state */
	CSA_EAUTH = -12,   /* authentication or signature failure */
	CSA_EBACKEND = -13, /* an external backend failed */
	CSA_ECONFLICT = -14 /* lost a race: another caller changed it first */
};

struct csa_err {
	int code;      /* one of enum csa_status */
	int sys_errno; /* errno of the failing call, 0 if none */
	char msg[512]; /* "what and where", lower case, no full stop */
};

/* Name of a status code ("invalid argument", ...); never NULL. */
const char *csa_strerror(int code);

/*
 * Record an error in 'err' (may be NULL) and return 'code', so callers can
 * write `return csa_error(err, CSA_EINVAL, "bad id '%s'", id);`.
 */
int csa_error(struct csa_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* As csa_error() with CSA_EIO, appending strerror(errno) to the message. */
int csa_error_sys(struct csa_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefix an existing message with more context ("T_42: " + old message). */
int csa_error_prefix(struct csa_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Programmer error: print file and line and abort. Never for bad input. */
#define CSA_BUG(msg) csa_bug(__FILE__, __LINE__, (msg))
_Noreturn void csa_bug(const char *file, int line, const char *msg);

#endif
