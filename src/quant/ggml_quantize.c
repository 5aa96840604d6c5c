/* ggml_quantize.c — llama.cpp's round-to-nearest quantizers for the block
 * formats of ggml_blocks.h, reproducing ggml's quantize_row_*_ref byte for
 * byte: the baseline that llama-quantize writes without an importance matrix
 * and the starting point that AdaQuant refines.
 *
 * Reproducing bytes means reproducing float32 arithmetic: every expression
 * below keeps ggml's operand order (a*b*c is (a*b)*c), sums run in index
 * order, and nothing is fused (see the pragma). The search heuristics
 * (ggml's make_qx_quants, make_q3_quants, make_qkx2_quants) are rewritten
 * from their published description with the same steps. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "ggml_blocks.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define GROUP_EPS 1e-15f /* ggml's GROUP_MAX_EPS: an all-zero group */

/* Round to nearest, ties to even, by adding 1.5 * 2^23 (ggml's nearest_int).
 * Exact for |v| < 2^22; outside (and for NaN) it still gives ggml's value,
 * which the clamps that follow every use then bound. */
static int nearest(float v)
{
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* float -> small integer as x86 truncates it (cvttss2si): toward zero, and
 * INT32_MIN for NaN or out of range. ggml's (int8_t)(float) casts compile to
 * this; only blocks whose scale inverts to infinity (|max| < ~1e-37) reach
 * the out-of-range case, and spelling it out keeps C free of undefined casts. */
static int32_t trunc_i32(float v)
{
    if (!(v > -2147483648.f && v < 2147483648.f)) return INT32_MIN;
    return (int32_t)v;
}
static int to_i8(float v)
{
    return (int8_t)(uint8_t)(trunc_i32(v) & 0xff);
}

static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

/* ---- 32-weight blocks: bytes written the way ggml writes them -------- */

/* The value of largest magnitude (the first one on ties), signed. */
static float signed_absmax(const float *x)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++)
        if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
    return max;
}

static void quant_q4_0(const float *x, uint8_t *b)
{
    const float d = signed_absmax(x) / -8, id = d != 0.0f ? 1.0f / d : 0.0f;
    wr16(b, aq_fp32_to_fp16(d));
    for (int j = 0; j < 16; j++) {
        int a = to_i8(x[j] * id + 8.5f), c = to_i8(x[j + 16] * id + 8.5f);
        uint8_t u0 = (uint8_t)(a < 15 ? a : 15), u1 = (uint8_t)(c < 15 ? c : 15);
        b[2 + j] = (uint8_t)(u0 | (u1 << 4));
    }
}

static void quant_q5_0(const float *x, uint8_t *b)
{
    const float d = signed_absmax(x) / -16, id = d != 0.0f ? 1.0f / d : 0.0f;
    uint32_t qh = 0;
    wr16(b, aq_fp32_to_fp16(d));
    for (int j = 0; j < 16; j++) {
        int a = to_i8(x[j] * id + 16.5f), c = to_i8(x[j + 16] * id + 16.5f);
        uint8_t u0 = (uint8_t)(a < 31 ? a : 31), u1 = (uint8_t)(c < 31 ? c : 31);
        b[6 + j] = (uint8_t)((u0 & 0xf) | ((u1 & 0xf) << 4));
        qh |= (uint32_t)((u0 & 0x10u) >> 4) << j;
        qh |= (uint32_t)((u1 & 0x10u) >> 4) << (j + 16);
    }
    for (int k = 0; k < 4; k++)
        b[2 + k] = (uint8_t)(qh >> (8 * k));
}

/* Q4_1 (bits 4) and Q5_1 (bits 5): d = (max - min) / (2^bits - 1), m = min. */
static void quant_q_1(const float *x, uint8_t *b, int bits)
{
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < 32; j++) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / (float)((1 << bits) - 1), id = d != 0.0f ? 1.0f / d : 0.0f;
    wr16(b, aq_fp32_to_fp16(d));
    wr16(b + 2, aq_fp32_to_fp16(min));
    uint32_t qh = 0;
    uint8_t *qs = b + (bits == 5 ? 8 : 4);
    for (int j = 0; j < 16; j++) {
        int a = to_i8((x[j] - min) * id + 0.5f), c = to_i8((x[j + 16] - min) * id + 0.5f);
        uint8_t u0, u1;
        if (bits == 4) { /* ggml clamps to 15 for Q4_1 only */
            u0 = (uint8_t)(a < 15 ? a : 15), u1 = (uint8_t)(c < 15 ? c : 15);
            qs[j] = (uint8_t)(u0 | (u1 << 4));
        } else {
            u0 = (uint8_t)a, u1 = (uint8_t)c;
            qs[j] = (uint8_t)((u0 & 0xf) | ((u1 & 0xf) << 4));
            qh |= (uint32_t)((u0 & 0x10u) >> 4) << j;
            qh |= (uint32_t)((u1 & 0x10u) >> 4) << (j + 16);
        }
    }
    if (bits == 5)
        for (int k = 0; k < 4; k++)
            b[4 + k] = (uint8_t)(qh >> (8 * k));
}

static void quant_q8_0(const float *x, uint8_t *b)
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++)
        amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
    const float d = amax / 127, id = d != 0.0f ? 1.0f / d : 0.0f;
    wr16(b, aq_fp32_to_fp16(d));
    for (int j = 0; j < 32; j++)
        b[2 + j] = (uint8_t)to_i8(roundf(x[j] * id));
}

/* ---- the K-quants' per-group searches -------------------------------- */

/* Levels of x at inverse scale iscale, clamped to [-nmax, nmax-1], and the
 * x^2-weighted sums sum w x l and sum w l^2 of that rounding. */
static void qx_levels(int n, int nmax, const float *x, float iscale, int8_t *L, float *sumlx,
                      float *suml2)
{
    float slx = 0, sl2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        if (L) L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        slx += w * x[i] * (float)l;
        sl2 += w * (float)l * (float)l;
    }
    *sumlx = slx, *suml2 = sl2;
}

/* Symmetric levels for n values, weighted by x^2: the rounding at scale
 * max/-nmax, then the scales -(nmax + 0.1 is)/max, is = -9..9 (is != 0),
 * keeping the least weighted error. L gets l + nmax; returns the scale. */
static float qx_search(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float sumlx, suml2;
    qx_levels(n, nmax, x, (float)-nmax / max, L, &sumlx, &suml2);
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        float iscale = -((float)nmax + 0.1f * (float)is) / max;
        qx_levels(n, nmax, x, iscale, NULL, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            qx_levels(n, nmax, x, iscale, L, &sumlx, &suml2);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's group search: round at scale max/-nmax (levels in [-nmax, nmax-1]),
 * then up to 5 sweeps that move single levels to where they cut the
 * x^2-weighted error of the best-fit scale. L gets l + nmax. */
static float q3_search(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    const float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (!(slx > 0)) continue;
            float sl2 = suml2 - w * (float)L[i] * (float)L[i];
            int nl = nearest(x[i] * sl2 / slx);
            nl = nl < -nmax ? -nmax : nl > nmax - 1 ? nmax - 1 : nl;
            if (nl == L[i]) continue;
            slx += w * x[i] * (float)nl;
            sl2 += w * (float)nl * (float)nl;
            if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                L[i] = (int8_t)nl, sumlx = slx, suml2 = sl2;
                changed++;
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Sums of one rounding of the asymmetric search: levels of (x - min) at
 * inverse scale iscale, clamped to [0, nmax], into L. */
static void qkx_levels(int n, int nmax, const float *x, const float *w, float min, float iscale,
                       uint8_t *L, float *sl, float *sl2, float *sxl)
{
    float a = 0, b = 0, c = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest(iscale * (x[i] - min));
        l = l < 0 ? 0 : l > nmax ? nmax : l;
        L[i] = (uint8_t)l;
        a += w[i] * (float)l;
        b += w[i] * (float)l * (float)l;
        c += w[i] * (float)l * x[i];
    }
    *sl = a, *sl2 = b, *sxl = c;
}

/* Weighted error sum w |err| (mad) or sum w err^2 of x ~ scale * L + min. */
static float qkx_error(int n, const float *x, const float *w, const uint8_t *L, float scale,
                       float min, int mad)
{
    float e = 0;
    for (int i = 0; i < n; i++) {
        float diff = scale * (float)L[i] + min - x[i];
        e += w[i] * (mad ? fabsf(diff) : diff * diff);
    }
    return e;
}

/* Asymmetric levels in [0, nmax] with x ~ scale * l - the_min (min <= 0):
 * min/max rounding, then nstep + 1 scales (rmin + rdelta is + nmax)/(max -
 * min), each refit by weighted least squares, keeping the least error. */
static float qkx_search(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                        float rmin, float rdelta, int nstep, int mad)
{
    float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min), scale = 1 / iscale, sl, sl2, sxl;
    qkx_levels(n, nmax, x, w, min, iscale, L, &sl, &sl2, &sxl);
    float best = qkx_error(n, x, w, L, scale, min, mad);
    uint8_t aux[32];
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        qkx_levels(n, nmax, x, w, min, iscale, aux, &sl, &sl2, &sxl);
        float D = sum_w * sl2 - sl * sl;
        if (!(D > 0)) continue;
        float this_scale = (sum_w * sxl - sum_x * sl) / D;
        float this_min = (sl2 * sum_x - sl * sxl) / D;
        if (this_min > 0) this_min = 0, this_scale = sxl / sl2;
        float err = qkx_error(n, x, w, aux, this_scale, this_min, mad);
        if (err < best) {
            memcpy(L, aux, (size_t)n);
            best = err, scale = this_scale, min = this_min;
        }
    }
    *the_min = -min;
    return scale;
}

/* ---- K-quant blocks: logical form, then aq_ggml_pack ----------------- */

/* The final codes of the formats with sub-block mins (Q2_K, Q4_K, Q5_K), as
 * ggml recomputes them from the quantized scales and mins: nsub sub-blocks of
 * len weights, codes in [0, nmax]; a sub-block whose scale is 0 keeps the
 * codes of the search (L). */
static void requant_with_mins(const float *x, aq_ggml_block *blk, int nsub, int len, int nmax, uint8_t *L)
{
    for (int j = 0; j < nsub; j++) {
        const float d = aq_fp16_to_fp32(blk->d) * (float)blk->sc[j];
        if (d == 0.0f) continue;
        const float dm = aq_fp16_to_fp32(blk->m) * (float)blk->mn[j];
        for (int i = 0; i < len; i++) {
            int l = nearest((x[len * j + i] + dm) / d);
            L[len * j + i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        }
    }
    for (int i = 0; i < 256; i++)
        blk->q[i] = (int8_t)L[i];
}

static void quant_q2_k(const float *x, aq_ggml_block *blk)
{
    uint8_t L[256];
    float w[16], scales[16], mins[16], max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; j++) {
        for (int l = 0; l < 16; l++)
            w[l] = fabsf(x[16 * j + l]);
        scales[j] = qkx_search(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, 1);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    uint8_t sb[16] = {0}; /* ggml's scale bytes: scale code | min code << 4 */
    blk->d = blk->m = aq_fp32_to_fp16(0.f);
    if (max_scale > 0) {
        float iscale = 15.f / max_scale;
        for (int j = 0; j < 16; j++)
            sb[j] = (uint8_t)nearest(iscale * scales[j]);
        blk->d = aq_fp32_to_fp16(max_scale / 15.f);
    }
    if (max_min > 0) {
        float iscale = 15.f / max_min;
        for (int j = 0; j < 16; j++)
            sb[j] |= (uint8_t)((unsigned)nearest(iscale * mins[j]) << 4);
        blk->m = aq_fp32_to_fp16(max_min / 15.f);
    }
    for (int j = 0; j < 16; j++)
        blk->sc[j] = sb[j] & 0xf, blk->mn[j] = (uint8_t)(sb[j] >> 4);
    requant_with_mins(x, blk, 16, 16, 3, L);
}

/* The final codes of the symmetric K-quants (Q3_K: half 4, Q6_K: half 32), as
 * ggml recomputes them from the quantized sub-block scales: 16 sub-blocks of
 * 16 weights, signed codes in [-half, half - 1] (kept offset by half in L as
 * ggml does); a sub-block whose scale is 0 keeps the search's codes. */
static void requant_symmetric(const float *x, aq_ggml_block *blk, int half, int8_t *L)
{
    for (int j = 0; j < 16; j++) {
        const float d = aq_fp16_to_fp32(blk->d) * (float)blk->sc[j];
        if (d == 0.0f) continue;
        for (int i = 0; i < 16; i++) {
            int l = nearest(x[16 * j + i] / d);
            L[16 * j + i] = (int8_t)((l < -half ? -half : l > half - 1 ? half - 1 : l) + half);
        }
    }
    for (int i = 0; i < 256; i++)
        blk->q[i] = (int8_t)(L[i] - half);
}

static void quant_q3_k(const float *x, aq_ggml_block *blk)
{
    int8_t L[256];
    float scales[16], amax = 0, max_scale = 0;
    for (int j = 0; j < 16; j++) {
        scales[j] = q3_search(16, 4, x + 16 * j, L + 16 * j);
        if (fabsf(scales[j]) > amax) amax = fabsf(scales[j]), max_scale = scales[j];
    }
    for (int j = 0; j < 16; j++)
        blk->sc[j] = -32; /* all scale bytes 0 */
    blk->d = aq_fp32_to_fp16(0.f);
    if (max_scale != 0.0f) {
        float iscale = -32.f / max_scale;
        for (int j = 0; j < 16; j++) {
            int l = (int8_t)(uint8_t)(nearest(iscale * scales[j]) & 0xff);
            blk->sc[j] = (int16_t)(l < -32 ? -32 : l > 31 ? 31 : l);
        }
        blk->d = aq_fp32_to_fp16(1 / iscale);
    }
    requant_symmetric(x, blk, 4, L);
}

/* Q4_K (nmax 15) and Q5_K (nmax 31): 8 groups of 32, 6-bit scale and min codes. */
static void quant_q45_k(const float *x, aq_ggml_block *blk, int nmax)
{
    uint8_t L[256];
    float w[32], scales[8], mins[8], max_scale = 0, max_min = 0;
    const float rmin = nmax == 15 ? -1.f : -0.5f;
    const int nstep = nmax == 15 ? 20 : 15;
    for (int j = 0; j < 8; j++) {
        const float *xj = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += xj[l] * xj[l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            w[l] = av_x + fabsf(xj[l]);
        scales[j] = qkx_search(32, nmax, xj, w, L + 32 * j, &mins[j], rmin, 0.1f, nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < 8; j++) {
        uint8_t ls = (uint8_t)nearest(inv_scale * scales[j]),
                lm = (uint8_t)nearest(inv_min * mins[j]);
        blk->sc[j] = ls < 63 ? ls : 63;
        blk->mn[j] = lm < 63 ? lm : 63;
    }
    blk->d = aq_fp32_to_fp16(max_scale / 63.f);
    blk->m = aq_fp32_to_fp16(max_min / 63.f);
    requant_with_mins(x, blk, 8, 32, nmax, L);
}

static void quant_q6_k(const float *x, aq_ggml_block *blk)
{
    int8_t L[256];
    float scales[16], max_abs = 0, max_scale = 0;
    for (int j = 0; j < 16; j++) {
        scales[j] = qx_search(16, 32, x + 16 * j, L + 16 * j);
        if (fabsf(scales[j]) > max_abs) max_abs = fabsf(scales[j]), max_scale = scales[j];
    }
    if (max_abs < GROUP_EPS) { /* ggml zeroes the whole block */
        memset(blk, 0, sizeof *blk);
        for (int i = 0; i < 256; i++)
            blk->q[i] = -32;
        blk->d = aq_fp32_to_fp16(0.f);
        return;
    }
    float iscale = -128.f / max_scale;
    blk->d = aq_fp32_to_fp16(1 / iscale);
    for (int j = 0; j < 16; j++) {
        int l = nearest(iscale * scales[j]);
        blk->sc[j] = (int8_t)(uint8_t)((l < 127 ? l : 127) & 0xff);
    }
    requant_symmetric(x, blk, 32, L);
}

static void quant_block(aq_ggml_type t, const float *x, uint8_t *b)
{
    aq_ggml_block blk;
    memset(&blk, 0, sizeof blk);
    switch (t) {
    case AQ_GGML_Q4_0: quant_q4_0(x, b); return;
    case AQ_GGML_Q4_1: quant_q_1(x, b, 4); return;
    case AQ_GGML_Q5_0: quant_q5_0(x, b); return;
    case AQ_GGML_Q5_1: quant_q_1(x, b, 5); return;
    case AQ_GGML_Q8_0: quant_q8_0(x, b); return;
    case AQ_GGML_Q2_K: quant_q2_k(x, &blk); break;
    case AQ_GGML_Q3_K: quant_q3_k(x, &blk); break;
    case AQ_GGML_Q4_K: quant_q45_k(x, &blk, 15); break;
    case AQ_GGML_Q5_K: quant_q45_k(x, &blk, 31); break;
    case AQ_GGML_Q6_K: quant_q6_k(x, &blk); break;
    default: return; /* not a block format of this file: check_row refused it */
    }
    aq_error ignored = {0};
    /* Every value above is clamped into its range, so pack cannot fail. */
    (void)aq_ggml_pack(t, &blk, b, &ignored);
}

/* The row's shape and values: a positive multiple of the block, all finite. */
static aq_status check_row(aq_ggml_type t, const float *x, size_t n, aq_error *err)
{
    size_t nbytes;
    AQ_TRY(aq_ggml_row_bytes(t, n, &nbytes, err));
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return aq_fail(err, AQ_ERR_NUMERIC, "cannot quantize to %s: weight %zu is %g",
                           aq_ggml_format_of(t)->name, i, (double)x[i]);
    return AQ_OK;
}

aq_status aq_ggml_quantize_row(aq_ggml_type t, const float *x, size_t n, uint8_t *out,
                               aq_error *err)
{
    AQ_TRY(check_row(t, x, n, err));
    const aq_ggml_format *f = aq_ggml_format_of(t);
    for (size_t i = 0; i < n / (size_t)f->block; i++)
        quant_block(t, x + i * (size_t)f->block, out + i * (size_t)f->bytes);
    return AQ_OK;
}

aq_status aq_ggml_quantize_row_blocks(aq_ggml_type t, const float *x, size_t n,
                                      aq_ggml_block *blocks, aq_error *err)
{
    AQ_TRY(check_row(t, x, n, err));
    const aq_ggml_format *f = aq_ggml_format_of(t);
    uint8_t b[256];
    /* Block by block through the bytes: the 32-weight quantizers write bytes
     * the way ggml does, and unpack is exact. */
    for (size_t i = 0; i < n / (size_t)f->block; i++) {
        quant_block(t, x + i * (size_t)f->block, b);
        aq_ggml_unpack(t, b, &blocks[i]);
    }
    return AQ_OK;
}
