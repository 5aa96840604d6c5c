/* quant.c — uniform affine quantizer kernels: range selection (min/max and
 * MSE-optimal clipping search), quantize, dequantize, fake-quant.
 *
 * Conventions are in quant.h. Implementation choices that matter for
 * bit-exact reproducibility:
 *  - quantize computes t = x / scale in float (IEEE division, correctly
 *    rounded), rounds t half-to-even, adds zero and clamps to [0, 2^bits-1];
 *  - dequantize computes scale * ((float)u - zero) in float: the subtraction
 *    rounds when zero is fractional, then the product (docs/FORMAT.md);
 *  - ranges are computed in double and the final scale rounded to float once;
 *    zero is re-derived from that float scale.
 * No allocation and no global state: every function is reentrant. */
#include "quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Round half to even for |t| < 2^22 under the default rounding mode: adding
 * 1.5*2^23 pushes t into [2^23, 2^24) where the float spacing is 1, so the
 * FPU's own round-to-nearest-even does the rounding. Exact, branch-free, and
 * needs no SSE4.1 (nearbyintf is a libm call on baseline x86-64). Callers
 * clamp t to a small range first. Without -ffast-math the compiler must keep
 * the add/subtract pair. */
static inline float round_even_small(float t)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    return (t + magic) - magic;
}

static inline float qmax_of(int bits)
{
    return (float)((1u << bits) - 1u);
}

/* The quantizer core shared by every entry point. lo/hi are the clamp
 * bounds of t expressed before adding zero (-zero-1, qmax-zero+1): clamping
 * t there first keeps round_even_small in range and maps NaN to code 0. */
static inline float quant_code(float x, float scale, float zero, float qmax)
{
    float t = x / scale;
    float lo = -zero - 1.0f, hi = qmax - zero + 1.0f;
    /* Branch-free selects; the first one also maps NaN to lo. */
    t = t > lo ? t : lo;
    t = t < hi ? t : hi;
    float q = round_even_small(t) + zero;
    q = q > 0.0f ? q : 0.0f;
    q = q < qmax ? q : qmax;
    return q;
}

/* 4-wide vectors (GCC/Clang vector extensions: native SSE2 on baseline
 * x86-64, no intrinsics) for the MSE search, which evaluates ~100 grids per
 * row, and for quantize/fake-quant. The compilers do not vectorize the
 * scalar loops themselves (selects, float64 reduction, -O2 cost model).
 * Same arithmetic as quant_code per lane, so results are bit-identical. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef double v2d __attribute__((vector_size(16)));
typedef float v2f __attribute__((vector_size(8)));

static inline v4f vsel(v4i m, v4f a, v4f b) /* m ? a : b per lane */
{
    return (v4f)(((v4i)a & m) | ((v4i)b & ~m));
}

typedef struct {
    v4f scale, zero, lo, hi, qmax;
} grid4;

static inline grid4 grid4_make(float scale, float zero, float qmax)
{
    const v4f z4 = {0};
    return (grid4){z4 + scale, z4 + zero, z4 + (-zero - 1.0f), z4 + (qmax - zero + 1.0f),
                   z4 + qmax};
}

/* quant_code on 4 lanes (float-valued codes). */
static inline v4f quant4(v4f xv, const grid4 *g)
{
    const v4f magic = (v4f){0} + 12582912.0f, zero4 = (v4f){0};
    v4f t = xv / g->scale;
    t = vsel(t > g->lo, t, g->lo); /* NaN -> lo, like quant_code */
    t = vsel(t < g->hi, t, g->hi);
    v4f q = ((t + magic) - magic) + g->zero;
    q = vsel(q > zero4, q, zero4);
    return vsel(q < g->qmax, q, g->qmax);
}

/* Squared errors of x[0..3], added in float64 to acc[0] (lanes 0,1) and
 * acc[1] (lanes 2,3). */
static inline void sse4(const float *x, const grid4 *g, v2d acc[2])
{
    v4f xv;
    memcpy(&xv, x, sizeof xv);
    v4f xh = g->scale * (quant4(xv, g) - g->zero);
    v2f x0, x1, h0, h1; /* halves, widened exactly to float64 (cvtps2pd) */
    memcpy(&x0, x, sizeof x0);
    memcpy(&x1, x + 2, sizeof x1);
    memcpy(&h0, &xh, sizeof h0);
    memcpy(&h1, (const char *)&xh + sizeof h0, sizeof h1);
    v2d d0 = __builtin_convertvector(x0, v2d) - __builtin_convertvector(h0, v2d);
    v2d d1 = __builtin_convertvector(x1, v2d) - __builtin_convertvector(h1, v2d);
    acc[0] += d0 * d0;
    acc[1] += d1 * d1;
}

aq_status aq_qspec_check(aq_qspec spec, aq_error *err)
{
    if (spec.bits < 2 || spec.bits > 8)
        return aq_fail(err, AQ_ERR_ARG, "quantizer bit width %d out of range (supported: 2..8)",
                       spec.bits);
    return AQ_OK;
}

uint8_t aq_quantize1(float x, float scale, float zero, int bits)
{
    return (uint8_t)quant_code(x, scale, zero, qmax_of(bits));
}

void aq_quantize(const float *x, size_t n, float scale, float zero, int bits, uint8_t *codes)
{
    const float qmax = qmax_of(bits);
    const grid4 g = grid4_make(scale, zero, qmax);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        v4f xv;
        memcpy(&xv, x + i, sizeof xv);
        v4i u = __builtin_convertvector(quant4(xv, &g), v4i);
        for (int j = 0; j < 4; j++)
            codes[i + j] = (uint8_t)u[j];
    }
    for (; i < n; i++)
        codes[i] = (uint8_t)quant_code(x[i], scale, zero, qmax);
}

void aq_dequantize(const uint8_t *codes, size_t n, float scale, float zero, float *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = scale * ((float)codes[i] - zero);
}

void aq_fake_quant(const float *x, size_t n, float scale, float zero, int bits, float *out)
{
    const float qmax = qmax_of(bits);
    const grid4 g = grid4_make(scale, zero, qmax);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) { /* out may equal x: each block is read before written */
        v4f xv;
        memcpy(&xv, x + i, sizeof xv);
        v4f xh = g.scale * (quant4(xv, &g) - g.zero);
        memcpy(out + i, &xh, sizeof xh);
    }
    for (; i < n; i++)
        out[i] = scale * (quant_code(x[i], scale, zero, qmax) - zero);
}

void aq_quantize_rows(const float *w, size_t rows, size_t cols, const float *scale,
                      const float *zero, int bits, uint8_t *codes)
{
    for (size_t r = 0; r < rows; r++)
        aq_quantize(w + r * cols, cols, scale[r], zero[r], bits, codes + r * cols);
}

void aq_dequantize_rows(const uint8_t *codes, size_t rows, size_t cols, const float *scale,
                        const float *zero, float *out)
{
    for (size_t r = 0; r < rows; r++)
        aq_dequantize(codes + r * cols, cols, scale[r], zero[r], out + r * cols);
}

/* ---- ranges ------------------------------------------------------------ */

/* A float scale from a double one: never 0 (tiny ranges get FLT_MIN so that
 * x / scale stays finite) and never above FLT_MAX. */
static float finite_scale(double s)
{
    if (!(s >= (double)FLT_MIN)) return FLT_MIN;
    if (s > (double)FLT_MAX) return FLT_MAX;
    return (float)s;
}

/* Grid of an asymmetric clip range [lo, hi] with lo <= 0 <= hi, lo < hi:
 * scale = (hi - lo) / qmax, zero = round(-lo / scale) clamped to the codes. */
static void asym_grid(double lo, double hi, float qmax, float *scale, float *zero)
{
    float s = finite_scale((hi - lo) / qmax);
    double z = nearbyint(-lo / (double)s);
    if (z < 0.0) z = 0.0;
    if (z > qmax) z = qmax;
    *scale = s;
    *zero = (float)z;
}

/* Sum of squared reconstruction errors in double (fixed lane order, so
 * deterministic). Gives up (returns a value > bound) once the partial sum
 * exceeds bound: this prunes clearly worse MSE-search candidates early. */
static double sse_bounded(const float *x, size_t n, float scale, float zero, float qmax,
                          double bound)
{
    const grid4 g = grid4_make(scale, zero, qmax);
    v2d acc[4] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}};
    double s = 0.0;
    size_t i = 0;
    while (i + 8 <= n) {
        size_t end = i + 128 <= n ? i + 128 : n - (n - i) % 8;
        for (; i < end; i += 8) {
            sse4(x + i, &g, acc);
            sse4(x + i + 4, &g, acc + 2);
        }
        v2d a = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        s = a[0] + a[1];
        if (s > bound) return s;
    }
    for (; i < n; i++) {
        float xh = scale * (quant_code(x[i], scale, zero, qmax) - zero);
        double d = (double)x[i] - (double)xh;
        s += d * d;
    }
    return s;
}

/* Number of clip ratios tried by the MSE search: r_k = 1 - 0.8 k / AQ_MSE_STEPS,
 * k = 0..AQ_MSE_STEPS, i.e. from the full min/max range (k = 0) to 0.2 of it. */
#define AQ_MSE_STEPS 100

/* The data range [mn, mx] (0 included) and the quantizer being fitted. */
typedef struct {
    double mn, mx;
    float qmax, zsym;
    int symmetric;
} range_ctx;

/* Grid of clip ratio r_k; k = 0 is exactly the min/max grid (r = 1). */
static void grid_at(const range_ctx *c, int k, float *scale, float *zero)
{
    double r = 1.0 - 0.8 * k / AQ_MSE_STEPS;
    if (c->symmetric) {
        *zero = c->zsym;
        *scale = finite_scale(r * fmax(-c->mn, c->mx) / (c->zsym - 1.0));
    } else {
        asym_grid(r * c->mn, r * c->mx, c->qmax, scale, zero);
    }
}

/* Exhaustive search over k = 0..AQ_MSE_STEPS for the least SSE (ties: the
 * smaller k, i.e. the wider range). Coarse ratios (every 10th) are visited
 * first so that a tight bound prunes most of the fine ones early; the order
 * does not change the result. */
static void mse_search(const float *x, size_t n, const range_ctx *c, float *scale, float *zero)
{
    grid_at(c, 0, scale, zero);
    double best = sse_bounded(x, n, *scale, *zero, c->qmax, INFINITY);
    int best_k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int k = 1; k <= AQ_MSE_STEPS && best > 0.0; k++) {
            if ((k % 10 == 0) != (pass == 0)) continue;
            float s, z;
            grid_at(c, k, &s, &z);
            double e = sse_bounded(x, n, s, z, c->qmax, best);
            if (e < best || (e == best && k < best_k)) {
                best = e, best_k = k;
                *scale = s, *zero = z;
            }
        }
}

void aq_qrange(const float *x, size_t n, aq_qspec spec, aq_range_method method, float *scale,
               float *zero)
{
    range_ctx c = {0.0, 0.0, qmax_of(spec.bits), (float)(1u << (spec.bits - 1)), spec.symmetric};
    float first = n ? x[0] : 0.0f;
    int constant = 1;
    for (size_t i = 0; i < n; i++) { /* the range always includes 0 */
        double v = x[i];
        if (v < c.mn) c.mn = v;
        if (v > c.mx) c.mx = v;
        if (x[i] != first) constant = 0;
    }
    if (c.mx - c.mn == 0.0) { /* empty or all zero: scale 1, 0 exactly representable */
        *scale = 1.0f;
        *zero = spec.symmetric ? c.zsym : 0.0f;
    } else if (constant && fabsf(first) >= FLT_MIN) {
        /* One distinct value c: scale |c| and code zero +- 1 reproduce it
         * exactly (scale * (+-1) is exact), with 0 still representable. */
        *scale = fabsf(first);
        *zero = spec.symmetric ? c.zsym : (first < 0.0f ? 1.0f : 0.0f);
    } else if (method == AQ_RANGE_MSE) {
        mse_search(x, n, &c, scale, zero);
    } else {
        grid_at(&c, 0, scale, zero);
    }
}

void aq_qrange_rows(const float *w, size_t rows, size_t cols, aq_qspec spec, aq_range_method method,
                    float *scale, float *zero)
{
    for (size_t r = 0; r < rows; r++)
        aq_qrange(w + r * cols, cols, spec, method, &scale[r], &zero[r]);
}
