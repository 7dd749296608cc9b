/*
 * Functions that are easy to misuse: including this header after the
 * system headers turns their use into a compile error (git's banned.h).
 * Every compile of src/ includes it through base/prelude.h (-include, see
 * CMakeLists.txt); scripts/check-layers.sh --banned checks each ban.
 */
#ifndef CSA_BASE_BANNED_H
#define CSA_BASE_BANNED_H

#define BANNED(f) sorry_##f##_is_banned_use_a_safer_alternative
#undef strcpy
#define strcpy(x, y) BANNED(strcpy)
#undef strcat
#define strcat(x, y) BANNED(strcat)
#undef sprintf
#define sprintf(...) BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) BANNED(vsprintf)
#undef strtok
#define strtok(x, y) BANNED(strtok)
#undef atoi
#define atoi(x) BANNED(atoi)
#undef gmtime
#define gmtime(x) BANNED(gmtime)
#undef localtime
#define localtime(x) BANNED(localtime)

#endif
