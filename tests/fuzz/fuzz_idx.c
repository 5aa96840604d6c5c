/* fuzz_idx.c — libFuzzer harness for the idx reader (io/idx.c): the input is
 * offered to aq_idx_read_mem. It must be refused with a message, or accepted
 * only when its size is exactly the header's (4 + 4 * ndim bytes of header,
 * n * rows * cols bytes of data), with the data equal to the input's. */
#include <string.h>

#include "fuzz_common.h"
#include "../../io/idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    aq_idx x;
    aq_error err = {0};
    if (aq_idx_read_mem(data, size, "fuzz", &x, &err) != AQ_OK) {
        REQUIRE(err.code != AQ_OK && err.msg[0] != '\0' && x.data == NULL);
        return 0;
    }
    REQUIRE(x.ndim >= 1 && x.ndim <= 3 && x.n == x.dims[0]);
    size_t hdr = 4 + 4 * (size_t)x.ndim, total = (size_t)(x.n * x.rows * x.cols);
    REQUIRE(size == hdr + total && data[2] == 0x08 && data[3] == x.ndim);
    REQUIRE(total == 0 || memcmp(x.data, data + hdr, total) == 0);
    aq_idx_free(&x);
    return 0;
}
