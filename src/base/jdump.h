/*
 * The store's serialiser: json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER
 * | JSON_REAL_PRECISION(p)), byte for byte, written for speed. A replay
 * serialises every ticket's documents at each of its five commits, and
 * jansson's general dumper (a callback per piece, a hash table of the
 * containers it is inside, a code point decoded per character, a buffer
 * grown piece by piece and copied at the end) was a tenth of its time.
 *
 * The bytes are jansson's by construction: the same escapes (\" \\ \b \f
 * \n \r \t, \u%04X for other control characters, nothing else escaped),
 * keys in the objects' order, integers as "%lld", reals as jansson's
 * jsonp_dtostr() writes them ("%.*g", ".0" added when there is neither
 * '.' nor 'e', the exponent without '+' and leading zeros). Anything it
 * does not handle the same way for certain is handed to json_dumps()
 * itself: a value that is neither an object nor an array, a string or
 * key that is not valid UTF-8 (jansson fails the first and writes half
 * of the second), a container inside itself, and every value when the
 * jansson linked in formats reals otherwise (a build with its own dtoa:
 * checked once, on first use, against json_dumps()).
 */
#ifndef CSA_BASE_JDUMP_H
#define CSA_BASE_JDUMP_H

#include <jansson.h>
#include <stddef.h>

/* json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER |
 * JSON_REAL_PRECISION(precision)): a malloc'd NUL-terminated string and its
 * length in *len, or NULL (out of memory, or what json_dumps() refuses).
 * precision 0 is jansson's 17. */
char *csa_jdump_compact(const json_t *v, int precision, size_t *len);

/*
 * snprintf(out, size, "%.*g", precision, v), and with read_back its
 * strtod() into *read_back: the length, or -1 when it does not fit.
 * Through a small cache per thread of the values formatted last: a
 * ticket's documents are written again at each of its commits, and their
 * numbers rounded as they read back (store/doccache.c), with most numbers
 * unchanged, and printf's formatting of them was about a twentieth of a
 * replay (issue 21). The cached bytes are snprintf's own, in the numeric
 * locale the process runs in, which csa never changes (no setlocale).
 */
int csa_real_text(double v, int precision, char *out, size_t size, double *read_back);

/* 1 when the fast writer is in use, 0 when every value goes to
 * json_dumps() (the jansson linked in formats reals otherwise). */
int csa_jdump_is_fast(void);

#endif
