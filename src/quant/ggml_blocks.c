/* ggml_blocks.c — the block formats' table, fp16 conversion, the byte layouts
 * (pack/unpack) and dequantization. The round-to-nearest quantizers are in
 * ggml_quantize.c. Layouts: docs/QUANT_FORMATS.md. */
#include "ggml_blocks.h"

#include <ctype.h>
#include <string.h>

/* Bit-exactness with ggml needs every product and sum rounded on its own:
 * no fused multiply-add (ggml's reference code is built without it). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

static const aq_ggml_format formats[AQ_GGML_NTYPES] = {
    /* type          name    block bytes nsub sublen qmin qmax scmin scmax mnmax has_m */
    {AQ_GGML_Q4_0, "Q4_0", 32, 18, 0, 0, -8, 7, 0, 0, 0, 0},
    {AQ_GGML_Q4_1, "Q4_1", 32, 20, 0, 0, 0, 15, 0, 0, 0, 1},
    {AQ_GGML_Q5_0, "Q5_0", 32, 22, 0, 0, -16, 15, 0, 0, 0, 0},
    {AQ_GGML_Q5_1, "Q5_1", 32, 24, 0, 0, 0, 31, 0, 0, 0, 1},
    {AQ_GGML_Q8_0, "Q8_0", 32, 34, 0, 0, -128, 127, 0, 0, 0, 0},
    {AQ_GGML_Q2_K, "Q2_K", 256, 84, 16, 16, 0, 3, 0, 15, 15, 1},
    {AQ_GGML_Q3_K, "Q3_K", 256, 110, 16, 16, -4, 3, -32, 31, 0, 0},
    {AQ_GGML_Q4_K, "Q4_K", 256, 144, 8, 32, 0, 15, 0, 63, 63, 1},
    {AQ_GGML_Q5_K, "Q5_K", 256, 176, 8, 32, 0, 31, 0, 63, 63, 1},
    {AQ_GGML_Q6_K, "Q6_K", 256, 210, 16, 16, -32, 31, -128, 127, 0, 0},
};

const aq_ggml_format *aq_ggml_format_of(aq_ggml_type t)
{
    for (int i = 0; i < AQ_GGML_NTYPES; i++)
        if (formats[i].type == t) return &formats[i];
    return NULL;
}

const aq_ggml_format *aq_ggml_format_by_name(const char *name)
{
    for (int i = 0; name && i < AQ_GGML_NTYPES; i++) {
        const char *a = formats[i].name, *b = name;
        while (*a && *b && toupper((unsigned char)*b) == *a)
            a++, b++;
        if (!*a && !*b) return &formats[i];
    }
    return NULL;
}

aq_ggml_type aq_ggml_type_at(int i)
{
    return formats[i].type;
}

double aq_ggml_bpw(aq_ggml_type t)
{
    const aq_ggml_format *f = aq_ggml_format_of(t);
    return f ? 8.0 * f->bytes / f->block : 0.0;
}

aq_status aq_ggml_row_bytes(aq_ggml_type t, size_t n, size_t *bytes, aq_error *err)
{
    const aq_ggml_format *f = aq_ggml_format_of(t);
    if (!f) return aq_fail(err, AQ_ERR_ARG, "unknown ggml block type %d", (int)t);
    if (n == 0 || n % (size_t)f->block)
        return aq_fail(err, AQ_ERR_SHAPE,
                       "%s needs rows whose length is a positive multiple of %d; this row has %zu",
                       f->name, f->block, n);
    *bytes = n / (size_t)f->block * (size_t)f->bytes;
    return AQ_OK;
}

/* ---- fp16 ------------------------------------------------------------- */

uint16_t aq_fp32_to_fp16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00u;  /* NaN */
    if (ax >= 0x477ff000u) return sign | 0x7c00u; /* >= 65520 rounds to inf */
    int e = (int)(ax >> 23) - 127;                /* unbiased exponent */
    uint32_t mant = (ax & 0x7fffffu) | 0x800000u; /* 24 significant bits */
    int shift;                                    /* bits of mant dropped */
    uint32_t base;                                /* exponent field of the result */
    if (e >= -14) {                               /* normal fp16: keep 11 bits */
        shift = 13;
        base = (uint32_t)(e + 15) << 10;
        mant &= 0x7fffffu;        /* the implicit bit is carried by base */
    } else {                      /* subnormal fp16: units of 2^-24 */
        if (e < -25) return sign; /* below half the smallest subnormal */
        shift = -1 - e;           /* 14..24 */
        base = 0;
    }
    uint32_t keep = mant >> shift, rest = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (keep & 1))) keep++; /* ties to even */
    /* A carry out of the mantissa bumps the exponent, which is the right
     * result (including the step from the largest subnormal to the smallest
     * normal and from 65504 to inf, excluded above). */
    return (uint16_t)(sign | (base + keep));
}

float aq_fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, mant = h & 0x3ffu, x;
    if (e == 0x1f) {
        x = sign | 0x7f800000u | (mant << 13); /* inf, NaN (payload kept) */
    } else if (e != 0) {
        x = sign | ((e + 112u) << 23) | (mant << 13);
    } else if (mant == 0) {
        x = sign;
    } else { /* subnormal: normalise */
        int k = 0;
        while (!(mant & 0x400u))
            mant <<= 1, k++;
        x = sign | ((uint32_t)(113 - k) << 23) | ((mant & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* ---- byte helpers ----------------------------------------------------- */

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xff);
    p[1] = (uint8_t)(v >> 8);
}

/* The 12-byte 6-bit scale/min packing of Q4_K and Q5_K: sub-blocks 0..3 keep
 * their 6 bits in bytes 0..3 (scales) and 4..7 (mins); sub-blocks 4..7 put
 * their low nibbles in bytes 8..11 (scale low, min high) and their top two
 * bits in bits 6..7 of bytes 0..3 (scales) and 4..7 (mins). */
static void unpack_k4_scales(const uint8_t *s, int16_t *sc, uint8_t *mn)
{
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
        sc[j + 4] = (int16_t)((s[j + 8] & 0xf) | ((s[j] >> 6) << 4));
        mn[j + 4] = (uint8_t)((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
    }
}
static void pack_k4_scales(const int16_t *sc, const uint8_t *mn, uint8_t *s)
{
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 0xf) | ((mn[j + 4] & 0xf) << 4));
    }
}

/* Q3_K's 12 scale bytes: 16 unsigned 6-bit values u = sc + 32; low nibble of
 * u_j in byte j % 8 (j < 8: low half, else high half); top two bits of u_j
 * in byte 8 + j % 4, bits 2*(j/4) .. 2*(j/4)+1. */
static void unpack_q3_scales(const uint8_t *s, int16_t *sc)
{
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? s[j] & 0xf : s[j - 8] >> 4;
        int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (int16_t)((lo | (hi << 4)) - 32);
    }
}
static void pack_q3_scales(const int16_t *sc, uint8_t *s)
{
    memset(s, 0, 12);
    for (int j = 0; j < 16; j++) {
        int u = sc[j] + 32;
        s[j % 8] |= (uint8_t)((u & 0xf) << (j < 8 ? 0 : 4));
        s[8 + j % 4] |= (uint8_t)((u >> 4) << (2 * (j / 4)));
    }
}

/* The 2-bit plane shared by Q2_K and Q3_K: in each half of 128 weights,
 * weight 128h + 32s + l sits in bits 2s..2s+1 of byte 32h + l. */
static void unpack_2bit(const uint8_t *qs, int8_t *u)
{
    for (int w = 0; w < 256; w++)
        u[w] = (int8_t)((qs[32 * (w / 128) + w % 32] >> (2 * ((w % 128) / 32))) & 3);
}
static void pack_2bit(const int8_t *u, uint8_t *qs)
{
    memset(qs, 0, 64);
    for (int w = 0; w < 256; w++)
        qs[32 * (w / 128) + w % 32] |= (uint8_t)((u[w] & 3) << (2 * ((w % 128) / 32)));
}

/* ---- unpack ----------------------------------------------------------- */

/* 32-blocks: nibble plane (weight j low nibble of byte j, weight j + 16 high
 * nibble) plus, for Q5, bit j of the little-endian 32-bit qh. */
static void unpack_32(const aq_ggml_format *f, const uint8_t *b, aq_ggml_block *blk)
{
    int off = 2 + 2 * f->has_m, five = f->qmax - f->qmin == 31;
    blk->d = rd16(b);
    blk->m = f->has_m ? rd16(b + 2) : 0;
    if (f->type == AQ_GGML_Q8_0) {
        for (int j = 0; j < 32; j++)
            blk->q[j] = (int8_t)b[2 + j];
        return;
    }
    uint32_t qh = 0;
    if (five)
        qh = (uint32_t)b[off] | (uint32_t)b[off + 1] << 8 | (uint32_t)b[off + 2] << 16 |
             (uint32_t)b[off + 3] << 24;
    const uint8_t *qs = b + off + 4 * five;
    for (int j = 0; j < 32; j++) {
        int u = j < 16 ? qs[j] & 0xf : qs[j - 16] >> 4;
        u |= (int)((qh >> j) & 1) << 4;
        blk->q[j] = (int8_t)(u + f->qmin);
    }
}

static void unpack_k(const aq_ggml_format *f, const uint8_t *b, aq_ggml_block *blk)
{
    int8_t u[256];
    switch (f->type) {
    case AQ_GGML_Q2_K:
        for (int s = 0; s < 16; s++)
            blk->sc[s] = b[s] & 0xf, blk->mn[s] = (uint8_t)(b[s] >> 4);
        unpack_2bit(b + 16, blk->q);
        blk->d = rd16(b + 80), blk->m = rd16(b + 82);
        break;
    case AQ_GGML_Q3_K:
        unpack_2bit(b + 32, u);
        for (int w = 0; w < 256; w++)
            blk->q[w] = (int8_t)(u[w] + (((b[w % 32] >> (w / 32)) & 1) << 2) - 4);
        unpack_q3_scales(b + 96, blk->sc);
        blk->d = rd16(b + 108);
        break;
    case AQ_GGML_Q4_K:
    case AQ_GGML_Q5_K: {
        int five = f->type == AQ_GGML_Q5_K;
        const uint8_t *qs = b + 16 + 32 * five;
        blk->d = rd16(b), blk->m = rd16(b + 2);
        unpack_k4_scales(b + 4, blk->sc, blk->mn);
        for (int w = 0; w < 256; w++) {
            int c = w / 64, l = w % 32, hi = (w % 64) >= 32;
            int v = hi ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 0xf;
            if (five) v |= ((b[16 + l] >> (w / 32)) & 1) << 4;
            blk->q[w] = (int8_t)v;
        }
        break;
    }
    default: /* Q6_K */
        for (int w = 0; w < 256; w++) {
            int h = w / 128, r = (w % 128) / 32, l = w % 32;
            uint8_t lo = b[64 * h + 32 * (r & 1) + l];
            int v = (r < 2 ? lo & 0xf : lo >> 4) | (((b[128 + 32 * h + l] >> (2 * r)) & 3) << 4);
            blk->q[w] = (int8_t)(v - 32);
        }
        for (int s = 0; s < 16; s++)
            blk->sc[s] = (int8_t)b[192 + s];
        blk->d = rd16(b + 208);
        break;
    }
}

void aq_ggml_unpack(aq_ggml_type t, const uint8_t *bytes, aq_ggml_block *blk)
{
    const aq_ggml_format *f = aq_ggml_format_of(t);
    memset(blk, 0, sizeof *blk);
    if (!f) return;
    if (f->block == 32)
        unpack_32(f, bytes, blk);
    else
        unpack_k(f, bytes, blk);
}

/* ---- pack ------------------------------------------------------------- */

static aq_status check_ranges(const aq_ggml_format *f, const aq_ggml_block *blk, aq_error *err)
{
    for (int w = 0; w < f->block; w++)
        if (blk->q[w] < f->qmin || blk->q[w] > f->qmax)
            return aq_fail(err, AQ_ERR_ARG, "%s block: q[%d] = %d is outside [%d, %d]", f->name, w,
                           blk->q[w], f->qmin, f->qmax);
    for (int s = 0; s < f->nsub; s++) {
        if (blk->sc[s] < f->scmin || blk->sc[s] > f->scmax)
            return aq_fail(err, AQ_ERR_ARG, "%s block: sc[%d] = %d is outside [%d, %d]", f->name, s,
                           blk->sc[s], f->scmin, f->scmax);
        if (blk->mn[s] > f->mnmax)
            return aq_fail(err, AQ_ERR_ARG, "%s block: mn[%d] = %d is outside [0, %d]", f->name, s,
                           blk->mn[s], f->mnmax);
    }
    return AQ_OK;
}

static void pack_32(const aq_ggml_format *f, const aq_ggml_block *blk, uint8_t *b)
{
    int off = 2 + 2 * f->has_m, five = f->qmax - f->qmin == 31;
    wr16(b, blk->d);
    if (f->has_m) wr16(b + 2, blk->m);
    if (f->type == AQ_GGML_Q8_0) {
        for (int j = 0; j < 32; j++)
            b[2 + j] = (uint8_t)blk->q[j];
        return;
    }
    uint32_t qh = 0;
    uint8_t *qs = b + off + 4 * five;
    memset(qs, 0, 16);
    for (int j = 0; j < 32; j++) {
        int u = blk->q[j] - f->qmin;
        qs[j % 16] |= (uint8_t)((u & 0xf) << (j < 16 ? 0 : 4));
        qh |= (uint32_t)(u >> 4) << j;
    }
    if (five)
        for (int k = 0; k < 4; k++)
            b[off + k] = (uint8_t)(qh >> (8 * k));
}

static void pack_k(const aq_ggml_format *f, const aq_ggml_block *blk, uint8_t *b)
{
    int8_t u[256];
    switch (f->type) {
    case AQ_GGML_Q2_K:
        for (int s = 0; s < 16; s++)
            b[s] = (uint8_t)(blk->sc[s] | (blk->mn[s] << 4));
        pack_2bit(blk->q, b + 16);
        wr16(b + 80, blk->d), wr16(b + 82, blk->m);
        break;
    case AQ_GGML_Q3_K:
        memset(b, 0, 32);
        for (int w = 0; w < 256; w++) {
            u[w] = (int8_t)(blk->q[w] + 4);
            b[w % 32] |= (uint8_t)((u[w] >> 2) << (w / 32));
        }
        pack_2bit(u, b + 32);
        pack_q3_scales(blk->sc, b + 96);
        wr16(b + 108, blk->d);
        break;
    case AQ_GGML_Q4_K:
    case AQ_GGML_Q5_K: {
        int five = f->type == AQ_GGML_Q5_K;
        uint8_t *qs = b + 16 + 32 * five;
        wr16(b, blk->d), wr16(b + 2, blk->m);
        pack_k4_scales(blk->sc, blk->mn, b + 4);
        memset(b + 16, 0, (size_t)(f->bytes - 16));
        for (int w = 0; w < 256; w++) {
            int c = w / 64, l = w % 32, hi = (w % 64) >= 32;
            qs[32 * c + l] |= (uint8_t)((blk->q[w] & 0xf) << (hi ? 4 : 0));
            if (five) b[16 + l] |= (uint8_t)((blk->q[w] >> 4) << (w / 32));
        }
        break;
    }
    default: /* Q6_K */
        memset(b, 0, 192);
        for (int w = 0; w < 256; w++) {
            int h = w / 128, r = (w % 128) / 32, l = w % 32, v = blk->q[w] + 32;
            b[64 * h + 32 * (r & 1) + l] |= (uint8_t)((v & 0xf) << (r < 2 ? 0 : 4));
            b[128 + 32 * h + l] |= (uint8_t)((v >> 4) << (2 * r));
        }
        for (int s = 0; s < 16; s++)
            b[192 + s] = (uint8_t)blk->sc[s];
        wr16(b + 208, blk->d);
        break;
    }
}

aq_status aq_ggml_pack(aq_ggml_type t, const aq_ggml_block *blk, uint8_t *bytes, aq_error *err)
{
    const aq_ggml_format *f = aq_ggml_format_of(t);
    if (!f) return aq_fail(err, AQ_ERR_ARG, "unknown ggml block type %d", (int)t);
    AQ_TRY(check_ranges(f, blk, err));
    if (f->block == 32)
        pack_32(f, blk, bytes);
    else
        pack_k(f, blk, bytes);
    return AQ_OK;
}

aq_status aq_ggml_pack_row(aq_ggml_type t, const aq_ggml_block *blocks, size_t nblocks,
                           uint8_t *bytes, aq_error *err)
{
    const aq_ggml_format *f = aq_ggml_format_of(t);
    if (!f) return aq_fail(err, AQ_ERR_ARG, "unknown ggml block type %d", (int)t);
    for (size_t i = 0; i < nblocks; i++) {
        aq_status st = aq_ggml_pack(t, &blocks[i], bytes + i * (size_t)f->bytes, err);
        if (st != AQ_OK) {
            aq_error_prefix(err, "block %zu", i);
            return st;
        }
    }
    return AQ_OK;
}

/* ---- dequantize ------------------------------------------------------- */

void aq_ggml_dequantize_block(aq_ggml_type t, const aq_ggml_block *blk, float *out)
{
    const aq_ggml_format *f = aq_ggml_format_of(t);
    if (!f) return;
    const float d = aq_fp16_to_fp32(blk->d), m = aq_fp16_to_fp32(blk->m);
    if (f->block == 32) {
        for (int j = 0; j < 32; j++)
            out[j] = f->has_m ? (float)blk->q[j] * d + m : (float)blk->q[j] * d;
        return;
    }
    for (int s = 0; s < f->nsub; s++) {
        const float dl = d * (float)blk->sc[s], ml = m * (float)blk->mn[s];
        const int8_t *q = blk->q + s * f->sublen;
        float *y = out + s * f->sublen;
        for (int l = 0; l < f->sublen; l++)
            y[l] = f->mnmax ? dl * (float)q[l] - ml : dl * (float)q[l];
    }
}

aq_status aq_ggml_dequantize_row(aq_ggml_type t, const uint8_t *bytes, size_t n, float *out,
                                 aq_error *err)
{
    size_t nbytes;
    AQ_TRY(aq_ggml_row_bytes(t, n, &nbytes, err));
    const aq_ggml_format *f = aq_ggml_format_of(t);
    aq_ggml_block blk;
    for (size_t i = 0; i < n / (size_t)f->block; i++) {
        aq_ggml_unpack(t, bytes + i * (size_t)f->bytes, &blk);
        aq_ggml_dequantize_block(t, &blk, out + i * (size_t)f->block);
    }
    return AQ_OK;
}
