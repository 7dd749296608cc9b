/*
 * Included before every source file of src/ by the compiler itself
 * (-include, CMakeLists.txt), so that base/banned.h is in force in every
 * compile without each .c file remembering to include it.
 *
 * banned.h defines function-like macros (strcpy(x, y), ...): a system
 * header that declares one of them, read after it, would have its
 * declaration expanded into an error. So the headers that declare the
 * banned functions come first; a .c file that includes them again gets a
 * no-op behind their include guards, and the ban stays. A header added to
 * banned.h needs its declaring system header added here.
 * scripts/check-layers.sh --banned checks that each ban holds.
 */
#ifndef CSA_BASE_PRELUDE_H
#define CSA_BASE_PRELUDE_H

#include <stdarg.h>
#include <stdio.h>  /* sprintf, vsprintf */
#include <stdlib.h> /* atoi */
#include <string.h> /* strcpy, strcat, strtok */
#include <time.h>   /* gmtime, localtime */

#include "base/banned.h"

#endif
