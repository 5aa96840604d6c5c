/* fuzz_common.h — what every libFuzzer harness here shares: REQUIRE (abort,
 * so that libFuzzer reports the input, on a broken invariant) and the entry
 * point's prototype (the harnesses build with -Wmissing-prototypes). */
#ifndef AQ_FUZZ_COMMON_H
#define AQ_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
