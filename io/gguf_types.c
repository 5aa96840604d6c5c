/* gguf_types.c — the two type tables of GGUF (gguf.h): metadata value types
 * and ggml tensor types with their block geometry, and the byte size of a
 * tensor, which both the reader and the writer validate against. */
#include <inttypes.h>
#include <stdio.h>

#include "gguf.h"

static const struct {
    const char *name;
    size_t size;
} gguf_types[AQ_GGUF_TYPE_COUNT] = {
    {"uint8", 1},  {"int8", 1},    {"uint16", 2},  {"int16", 2},  {"uint32", 4},
    {"int32", 4},  {"float32", 4}, {"bool", 1},    {"string", 0}, {"array", 0},
    {"uint64", 8}, {"int64", 8},   {"float64", 8},
};

size_t aq_gguf_type_size(int type)
{
    return type >= 0 && type < AQ_GGUF_TYPE_COUNT ? gguf_types[type].size : 0;
}

const char *aq_gguf_type_name(int type)
{
    return type >= 0 && type < AQ_GGUF_TYPE_COUNT ? gguf_types[type].name : "?";
}

/* Block geometry from ggml's type traits (ggml.c / ggml-common.h block
 * structs): elements per block, bytes per block. QK_K = 256. */
static const struct {
    const char *name;
    int64_t blck;
    size_t bytes;
} ggml_types[AQ_GGML_TYPE_COUNT] = {
    [AQ_GGML_F32] = {"F32", 1, 4},
    [AQ_GGML_F16] = {"F16", 1, 2},
    [AQ_GGML_Q4_0] = {"Q4_0", 32, 18},
    [AQ_GGML_Q4_1] = {"Q4_1", 32, 20},
    [AQ_GGML_Q5_0] = {"Q5_0", 32, 22},
    [AQ_GGML_Q5_1] = {"Q5_1", 32, 24},
    [AQ_GGML_Q8_0] = {"Q8_0", 32, 34},
    [AQ_GGML_Q8_1] = {"Q8_1", 32, 36},
    [AQ_GGML_Q2_K] = {"Q2_K", 256, 84},
    [AQ_GGML_Q3_K] = {"Q3_K", 256, 110},
    [AQ_GGML_Q4_K] = {"Q4_K", 256, 144},
    [AQ_GGML_Q5_K] = {"Q5_K", 256, 176},
    [AQ_GGML_Q6_K] = {"Q6_K", 256, 210},
    [AQ_GGML_Q8_K] = {"Q8_K", 256, 292},
    [AQ_GGML_IQ2_XXS] = {"IQ2_XXS", 256, 66},
    [AQ_GGML_IQ2_XS] = {"IQ2_XS", 256, 74},
    [AQ_GGML_IQ3_XXS] = {"IQ3_XXS", 256, 98},
    [AQ_GGML_IQ1_S] = {"IQ1_S", 256, 50},
    [AQ_GGML_IQ4_NL] = {"IQ4_NL", 32, 18},
    [AQ_GGML_IQ3_S] = {"IQ3_S", 256, 110},
    [AQ_GGML_IQ2_S] = {"IQ2_S", 256, 82},
    [AQ_GGML_IQ4_XS] = {"IQ4_XS", 256, 136},
    [AQ_GGML_I8] = {"I8", 1, 1},
    [AQ_GGML_I16] = {"I16", 1, 2},
    [AQ_GGML_I32] = {"I32", 1, 4},
    [AQ_GGML_I64] = {"I64", 1, 8},
    [AQ_GGML_F64] = {"F64", 1, 8},
    [AQ_GGML_IQ1_M] = {"IQ1_M", 256, 56},
    [AQ_GGML_BF16] = {"BF16", 1, 2},
    [AQ_GGML_TQ1_0] = {"TQ1_0", 256, 54},
    [AQ_GGML_TQ2_0] = {"TQ2_0", 256, 66},
    [AQ_GGML_MXFP4] = {"MXFP4", 32, 17},
};

int64_t aq_ggml_block_size(int type)
{
    return type >= 0 && type < AQ_GGML_TYPE_COUNT ? ggml_types[type].blck : 0;
}

size_t aq_ggml_block_bytes(int type)
{
    return type >= 0 && type < AQ_GGML_TYPE_COUNT ? ggml_types[type].bytes : 0;
}

const char *aq_ggml_type_name(int type)
{
    return type >= 0 && type < AQ_GGML_TYPE_COUNT ? ggml_types[type].name : NULL;
}

aq_status aq_ggml_nbytes(int type, uint32_t n_dims, const int64_t *ne, const char *what,
                         uint64_t *out, aq_error *err)
{
    int64_t blck = aq_ggml_block_size(type);
    if (blck == 0) return aq_fail(err, AQ_ERR_ARG, "%s: unknown ggml type id %d", what, type);
    if (n_dims > AQ_GGUF_MAX_DIMS)
        return aq_fail(err, AQ_ERR_SHAPE, "%s: %" PRIu32 " dimensions (at most %d)", what, n_dims,
                       AQ_GGUF_MAX_DIMS);
    uint64_t n = 1;
    for (uint32_t i = 0; i < n_dims; i++) {
        if (ne[i] < 0)
            return aq_fail(err, AQ_ERR_SHAPE, "%s: dimension %" PRIu32 " is negative (%" PRId64 ")",
                           what, i, ne[i]);
        if (ne[i] && n > (uint64_t)INT64_MAX / (uint64_t)ne[i])
            return aq_fail(err, AQ_ERR_SHAPE, "%s: element count overflows", what);
        n *= (uint64_t)ne[i];
    }
    int64_t ne0 = n_dims ? ne[0] : 1;
    if (ne0 % blck)
        return aq_fail(err, AQ_ERR_SHAPE,
                       "%s: row length ne[0] = %" PRId64
                       " is not a multiple of the %s block size %" PRId64,
                       what, ne0, ggml_types[type].name, blck);
    uint64_t blocks = n / (uint64_t)blck, bytes = ggml_types[type].bytes;
    if (blocks > UINT64_MAX / 2 / bytes)
        return aq_fail(err, AQ_ERR_SHAPE, "%s: byte size overflows", what);
    *out = blocks * bytes;
    return AQ_OK;
}
