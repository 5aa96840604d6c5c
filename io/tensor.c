/* tensor.c — the dtype table and element conversions behind tensor.h.
 *
 * F16/BF16 conversions are written out in integer arithmetic so that they are
 * exact (widening) and round-to-nearest-even (narrowing) on every compiler,
 * independent of the FPU's _Float16 support. Views may point at unaligned
 * bytes inside a mapped file, so every element is fetched with memcpy. */
#include "tensor.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_table[AQ_DTYPE_COUNT] = {
    [AQ_F64] = {"F64", 8}, [AQ_F32] = {"F32", 4}, [AQ_F16] = {"F16", 2}, [AQ_BF16] = {"BF16", 2},
    [AQ_I64] = {"I64", 8}, [AQ_I32] = {"I32", 4}, [AQ_I16] = {"I16", 2}, [AQ_I8] = {"I8", 1},
    [AQ_U8] = {"U8", 1},   [AQ_U16] = {"U16", 2}, [AQ_U32] = {"U32", 4}, [AQ_BOOL] = {"BOOL", 1},
};

size_t aq_dtype_size(aq_dtype dt)
{
    return (unsigned)dt < AQ_DTYPE_COUNT ? dtype_table[dt].size : 0;
}

const char *aq_dtype_name(aq_dtype dt)
{
    return (unsigned)dt < AQ_DTYPE_COUNT ? dtype_table[dt].name : "?";
}

aq_status aq_dtype_parse(const char *s, aq_dtype *out, aq_error *err)
{
    for (int i = 0; i < AQ_DTYPE_COUNT; i++)
        if (s && !strcmp(s, dtype_table[i].name)) {
            *out = (aq_dtype)i;
            return AQ_OK;
        }
    return aq_fail(
        err, AQ_ERR_FORMAT,
        "unknown dtype '%s' (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, U16, "
        "U32, BOOL)",
        s ? s : "(null)");
}

int64_t aq_view_numel(const aq_tensor_view *v)
{
    int64_t n = 1;
    for (int i = 0; i < v->ndim; i++)
        if (v->shape[i] == 0) return 0; /* before multiplying: the others may be huge */
    for (int i = 0; i < v->ndim; i++)
        n *= v->shape[i];
    return n;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float aq_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) /* zero or subnormal: m * 2^-24 is exact in float */
        return bits_f32(sign | f32_bits((float)m * 0x1p-24f));
    if (e == 31) return bits_f32(sign | 0x7f800000u | (m << 13));
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

uint16_t aq_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* Inf, or NaN kept quiet with its top payload bits */
        return sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0u);
    if (ax >= 0x477ff000u) return sign | 0x7c00u; /* >= 65520 rounds to Inf */
    if (ax < 0x38800000u) {                       /* result is subnormal (or zero) */
        if (ax <= 0x33000000u) return sign;       /* <= 2^-25: the tie at 2^-25 goes to even 0 */
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* value / 2^-24 = m >> shift, 14 <= shift <= 24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = (ax - 0x38000000u) >> 13, rem = ax & 0x1fffu; /* rebias 127 -> 15 */
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}

float aq_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t aq_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* Checks that a view is self-consistent; returns its element count. */
static aq_status view_check(const aq_tensor_view *v, size_t *numel, aq_error *err)
{
    const char *nm = v->name ? v->name : "(unnamed)";
    if ((unsigned)v->dtype >= AQ_DTYPE_COUNT || v->ndim < 0 || v->ndim > AQ_MAX_DIMS)
        return aq_fail(err, AQ_ERR_INTERNAL, "tensor '%s': invalid view (dtype %d, ndim %d)", nm,
                       (int)v->dtype, v->ndim);
    size_t n = 1;
    for (int i = 0; i < v->ndim; i++) {
        if (v->shape[i] < 0 || (v->shape[i] > 0 && n > SIZE_MAX / (size_t)v->shape[i]))
            return aq_fail(err, AQ_ERR_INTERNAL, "tensor '%s': invalid shape dimension %d", nm, i);
        n *= v->shape[i] ? (size_t)v->shape[i] : 1;
    }
    if (aq_view_numel(v) == 0) n = 0;
    size_t es = aq_dtype_size(v->dtype);
    if (n > SIZE_MAX / es || n * es != v->nbytes || (v->nbytes && !v->data))
        return aq_fail(err, AQ_ERR_INTERNAL,
                       "tensor '%s': view holds %zu bytes, shape needs %zu x %zu", nm, v->nbytes, n,
                       es);
    *numel = n;
    return AQ_OK;
}

#define CONVERT(T, EXPR)                                                                           \
    for (size_t i = 0; i < n; i++) {                                                               \
        T x;                                                                                       \
        memcpy(&x, p + i * sizeof(T), sizeof(T));                                                  \
        dst[i] = (EXPR);                                                                           \
    }                                                                                              \
    break

aq_status aq_view_to_f32(const aq_tensor_view *v, float *dst, aq_error *err)
{
    size_t n = 0; /* set by view_check; GCC 12 -O3 warns (maybe-uninitialized) otherwise */
    AQ_TRY(view_check(v, &n, err));
    const unsigned char *p = v->data;
    switch (v->dtype) {
    case AQ_F64: CONVERT(double, (float)x);
    case AQ_F32: CONVERT(float, x);
    case AQ_F16: CONVERT(uint16_t, aq_f16_to_f32(x));
    case AQ_BF16: CONVERT(uint16_t, aq_bf16_to_f32(x));
    case AQ_I64: CONVERT(int64_t, (float)x);
    case AQ_I32: CONVERT(int32_t, (float)x);
    case AQ_I16: CONVERT(int16_t, (float)x);
    case AQ_I8: CONVERT(int8_t, (float)x);
    case AQ_U8: CONVERT(uint8_t, (float)x);
    case AQ_U16: CONVERT(uint16_t, (float)x);
    case AQ_U32: CONVERT(uint32_t, (float)x);
    case AQ_BOOL: CONVERT(uint8_t, x ? 1.0f : 0.0f);
    case AQ_DTYPE_COUNT: break;
    }
    return AQ_OK;
}

aq_status aq_view_to_f32_alloc(const aq_tensor_view *v, float **out, aq_error *err)
{
    size_t n = 0; /* set by view_check; GCC 12 -O3 warns (maybe-uninitialized) otherwise */
    AQ_TRY(view_check(v, &n, err));
    if (n > SIZE_MAX / sizeof(float)) return aq_fail_nomem(err, "tensor conversion", SIZE_MAX);
    float *buf = malloc(n ? n * sizeof(float) : 1);
    if (!buf) return aq_fail_nomem(err, v->name ? v->name : "tensor conversion", n * sizeof(float));
    aq_status st = aq_view_to_f32(v, buf, err);
    if (st != AQ_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    return AQ_OK;
}
