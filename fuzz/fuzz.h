/*
 * A fuzz target: one function libFuzzer calls with each input. Built two
 * ways: with clang's libFuzzer for `make fuzz` (fuzz/CMakeLists.txt), and
 * with replay.c into a plain program that runs the committed corpus under
 * the normal and the sanitizer builds of `make test`, so every input that
 * once broke a parser stays a test.
 */
#ifndef CSA_FUZZ_H
#define CSA_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property the input broke: say which and stop, so the fuzzer keeps the
 * input and the replay fails. */
#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__,        \
			        #cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#endif
