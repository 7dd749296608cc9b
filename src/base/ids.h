/*
 * Identifiers that end up in file names (ticket ids) or documents (message
 * ids). A ticket id is 1..64 characters of [A-Za-z0-9_-] and is checked
 * before any path is built from it.
 */
#ifndef CSA_BASE_IDS_H
#define CSA_BASE_IDS_H

#include <stddef.h>
#include "base/err.h"

#define CSA_ID_MAX 64

/* 0 if 'id' (of length 'len', which may contain NUL) is a valid ticket id,
 * else CSA_EINVAL with the reason in 'err'. */
int csa_id_check(const char *id, size_t len, struct csa_err *err);

/* Convenience for NUL-terminated strings. */
int csa_id_valid(const char *id);

/*
 * Write a fresh id "<prefix><yyyymmddHHMMSS>-<8 hex>" into out (size >=
 * CSA_ID_MAX + 1), random part from getrandom(). The prefix must itself be
 * made of valid id characters.
 */
void csa_id_generate(const char *prefix, char *out, size_t outsz);

#endif
