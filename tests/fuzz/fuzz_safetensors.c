/* fuzz_safetensors.c — libFuzzer harness for the safetensors reader.
 * Any input must either be rejected with a message or yield views that are
 * self-consistent, lie inside the input, tile the data area in order, and can
 * all be read and converted; a violated invariant aborts (a finding). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "../../io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    aq_st_file *f = NULL;
    aq_error err = {0};
    if (aq_st_open_memory(data, size, "fuzz", &f, &err) != AQ_OK) {
        REQUIRE(f == NULL && err.code != AQ_OK && err.msg[0] != '\0');
        return 0;
    }
    const uint8_t *next = NULL;
    unsigned sum = 0;
    for (size_t i = 0; i < aq_st_count(f); i++) {
        const aq_tensor_view *v = aq_st_tensor(f, i);
        REQUIRE(v && v->name && (unsigned)v->dtype < AQ_DTYPE_COUNT);
        REQUIRE(v->ndim >= 0 && v->ndim <= AQ_MAX_DIMS);
        REQUIRE((uint64_t)aq_view_numel(v) * aq_dtype_size(v->dtype) == v->nbytes);
        const uint8_t *p = v->data;
        REQUIRE(p >= data && p + v->nbytes <= data + size);
        REQUIRE(next == NULL || p == next); /* contiguous, in order */
        next = p + v->nbytes;
        for (size_t b = 0; b < v->nbytes; b++)
            sum += p[b];
        float *tmp = NULL;
        REQUIRE(aq_view_to_f32_alloc(v, &tmp, &err) == AQ_OK);
        free(tmp);
        REQUIRE(aq_st_find(f, v->name) == v);
    }
    REQUIRE(next == NULL || next == data + size); /* the data ends the file */
    for (size_t i = 0; i < aq_st_meta_count(f); i++) {
        const char *k, *val;
        aq_st_meta_at(f, i, &k, &val);
        REQUIRE(k && val && aq_st_meta_get(f, k) == val);
        sum += (unsigned)strlen(val);
    }
    aq_st_close(f);
    return (int)(sum & 0);
}
