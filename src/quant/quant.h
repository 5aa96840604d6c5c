/* quant.h — uniform affine quantizers: ranges, quantize/dequantize, bit packing.
 *
 * One representation for every quantizer: unsigned integer codes
 * u in [0, 2^bits - 1] and   x_hat = scale * (u - zero).
 *   asymmetric: zero in [0, 2^bits-1] is chosen from the range (integer-valued);
 *   symmetric:  zero = 2^(bits-1) fixed, i.e. signed q = u - zero in
 *               [-2^(bits-1), 2^(bits-1) - 1], scale = max|x| / (2^(bits-1) - 1)
 *               for min/max ranges.
 * Quantize: u = clamp(round_half_even(x / scale) + zero, 0, 2^bits - 1).
 * Per output channel = one (scale, zero) per row of a row-major [rows, cols]
 * matrix; per tensor = one pair for all elements.
 * x / scale is a float division (IEEE, correctly rounded); x_hat is computed
 * in float as scale * ((float)u - zero): two roundings, the subtraction's
 * (exact when zero is integer-valued, not after tuning made it fractional)
 * and the product's (docs/FORMAT.md states this order). NaN quantizes to 0.
 * Ranges ALWAYS include 0 ([min(x,0), max(x,0)]), and asymmetric zero points
 * are integers, so 0.0 (zero padding, zero inputs) is reproduced exactly.
 * Everything here is deterministic, reentrant and allocation-free unless the
 * name says otherwise. Bits 2..8 are accepted everywhere (quantize/dequantize
 * and packing also work for bits = 1, range selection does not). */
#ifndef AQ_QUANT_H
#define AQ_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "../../common/status.h"

typedef struct aq_qspec {
    int bits;      /* 2..8 */
    int symmetric; /* 1: zero fixed at 2^(bits-1) */
} aq_qspec;

typedef enum aq_range_method {
    AQ_RANGE_MINMAX, /* range = [min, max] (asym) or max|x| (sym) */
    AQ_RANGE_MSE     /* clipping search minimising ||x - x_hat||^2, never worse than min/max */
} aq_range_method;

/* Validate a spec: AQ_ERR_ARG unless 2 <= bits <= 8. */
aq_status aq_qspec_check(aq_qspec spec, aq_error *err);

/* Range of n values -> (scale, zero). Constant or all-zero input gives a
 * valid nonzero scale that reproduces the values exactly where possible.
 * x must be finite (callers validate).
 *  - all zero or n == 0: scale 1, zero 0 (asym) / 2^(bits-1) (sym);
 *  - one distinct value c != 0: scale |c|, u = zero +- 1 (exact);
 *  - AQ_RANGE_MINMAX asym: scale = (hi - lo) / (2^bits - 1) with the range
 *    [lo, hi] extended to include 0, zero = round(-lo / scale) (clamped);
 *    sym: scale = max|x| / (2^(bits-1) - 1);
 *  - AQ_RANGE_MSE: tries clip ratios r = 1 - 0.8 k/100, k = 0..100 (k = 0 is
 *    exactly the min/max grid; asym shrinks both ends and re-derives zero)
 *    and keeps the least float64 sum of squared errors (ties keep the larger
 *    range), so it is never worse than min/max. O(101 n) worst case, pruned.
 * Scales are finite and >= FLT_MIN. Reconstructions stay finite for
 * |x| <= 1e37 (beyond that an asymmetric grid's far end may overflow). */
void aq_qrange(const float *x, size_t n, aq_qspec spec, aq_range_method method, float *scale,
               float *zero);
/* Per-row ranges of a [rows, cols] row-major matrix (scale/zero: rows each). */
void aq_qrange_rows(const float *w, size_t rows, size_t cols, aq_qspec spec, aq_range_method method,
                    float *scale, float *zero);

/* One value. bits 1..8; codes are clamped to [0, 2^bits - 1]. */
uint8_t aq_quantize1(float x, float scale, float zero, int bits);
static inline float aq_dequantize1(uint8_t u, float scale, float zero)
{
    return scale * ((float)u - zero);
}

/* n values with one (scale, zero). */
void aq_quantize(const float *x, size_t n, float scale, float zero, int bits, uint8_t *codes);
void aq_dequantize(const uint8_t *codes, size_t n, float scale, float zero, float *out);
/* x -> dequantize(quantize(x)) in place or out-of-place (out may equal x). */
void aq_fake_quant(const float *x, size_t n, float scale, float zero, int bits, float *out);
/* Per-row versions for [rows, cols] matrices. */
void aq_quantize_rows(const float *w, size_t rows, size_t cols, const float *scale,
                      const float *zero, int bits, uint8_t *codes);
void aq_dequantize_rows(const uint8_t *codes, size_t rows, size_t cols, const float *scale,
                        const float *zero, float *out);

/* Bit packing: code i occupies bits [i*bits, (i+1)*bits) of a little-endian
 * bit stream (stream bit k = bit k%8 of byte k/8); the last byte is
 * zero-padded. Works for any n (odd lengths too) and bits in 1..8.
 * aq_pack masks each code to its low `bits` bits; out must hold
 * aq_packed_bytes(n, bits) bytes (every one of them is written). */
size_t aq_packed_bytes(size_t n, int bits);
void aq_pack(const uint8_t *codes, size_t n, int bits, uint8_t *out);
void aq_unpack(const uint8_t *in, size_t n, int bits, uint8_t *codes);

#endif
