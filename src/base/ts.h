/*
 * Time: milliseconds since the Unix epoch, formatted as ISO 8601 UTC with
 * milliseconds ("2026-11-23T23:03:06.123Z") in every file and API.
 */
#ifndef CSA_BASE_TS_H
#define CSA_BASE_TS_H

#include <stdint.h>

#define CSA_TS_LEN 25 /* "YYYY-MM-DDTHH:MM:SS.mmmZ" plus NUL */

/* Wall clock now, in ms. Honours CSA_FAKE_NOW_MS (tests, replay) if set. */
int64_t csa_now_ms(void);

/* Monotonic clock in nanoseconds, for measuring durations. */
int64_t csa_mono_ns(void);

/* Format 'ms' into 'out'; always NUL-terminated. Returns 'out'. */
char *csa_ts_format(int64_t ms, char out[CSA_TS_LEN]);

/*
 * Parse an ISO 8601 timestamp: date 'T' time, optional fraction (any
 * digits, kept to ms), and 'Z' or a +hh:mm / -hh:mm offset. Returns 0 and
 * sets *ms, or CSA_EPARSE for anything else (including out-of-range fields).
 */
int csa_ts_parse(const char *s, int64_t *ms);

#endif
