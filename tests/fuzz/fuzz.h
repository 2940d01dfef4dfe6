/* fuzz.h -- shared by the libFuzzer targets in tests/fuzz/ (lwan's
 * request_fuzzer shape: one LLVMFuzzerTestOneInput per parser).
 *
 * Each target is built two ways:
 * - `make fuzz`: with clang -fsanitize=fuzzer,address,undefined (libFuzzer's
 *   main), run for FUZZ_SECONDS on tests/fuzz/corpus/<target>/;
 * - `make test`: with the normal compiler and tests/fuzz/replay.c's main,
 *   replaying tests/fuzz/regression/<target>/ and the seed corpus.
 * FUZZ_CHECK states an invariant of the code under test; a violation aborts
 * so libFuzzer saves the input as a crasher.
 */
#ifndef EMB_FUZZ_H
#define EMB_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(x)                                                                      \
    do {                                                                                   \
        if (!(x)) {                                                                        \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #x); \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The generated test model's directory ($TESTMODEL or build/testmodel). */
static inline const char *fuzz_model_dir(void) {
    const char *d = getenv("TESTMODEL");
    return d && *d ? d : "build/testmodel";
}

#endif
