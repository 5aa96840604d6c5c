/* group_k.c — AdaQuant in llama.cpp's K-quants (Q2_K, Q3_K, Q4_K, Q5_K,
 * Q6_K) under their exact constraints, on group.c's machinery.
 *
 * A K-quant super-block of 256 weights stores codes q, per sub-block (16 or
 * 32 weights) an integer scale code sc and min code mn, and one fp16 d and
 * dmin; ggml dequantizes W = fl(fl(d sc) q) - fl(dmin mn). The optimiser
 * keeps the logical blocks of the current row (grp.kb) and, per sub-block,
 * the effective s = d sc and z = dmin mn (exact in float32: an 11-bit fp16
 * times an integer of at most 8 bits), so that group.c's code moves and
 * loss bookkeeping run unchanged with groups = sub-blocks. The moves here:
 *  - per super-block, (d, dmin) refit in closed form with the codes and the
 *    sub-block codes fixed, rounded to fp16, fp16 neighbours tried;
 *  - per sub-block, the integer (sc, mn) near the closed-form optimum of the
 *    sub-block's affine map and +-1 from the current ones.
 * Every candidate is scored on the values ggml would compute, exactly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <blis.h>

#include "group_int.h"

/* The candidates' values must be ggml's bits: no FMA (as ggml_blocks.c). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* Sub-block k's effective (s, z) of logical block b. */
static void sub_sz(const grp *g, const aq_ggml_block *b, int k, float *s, float *z)
{
    *s = aq_fp16_to_fp32(b->d) * (float)b->sc[k];
    *z = g->f->mnmax ? aq_fp16_to_fp32(b->m) * (float)b->mn[k] : 0.0f;
}

aq_status aq_grp_k_rtn(grp *g, const float *w, uint8_t *u, float *s, float *z, aq_error *err)
{
    int ns = g->f->nsub;
    for (size_t b = 0; b < g->d_in / AQ_GGML_QK_K; b++) {
        aq_ggml_block *kb = &g->kb[b];
        AQ_TRY(aq_ggml_quantize_row_blocks(g->f->type, w + b * AQ_GGML_QK_K, AQ_GGML_QK_K, kb, err));
        for (int j = 0; j < AQ_GGML_QK_K; j++) u[b * AQ_GGML_QK_K + (size_t)j] = (uint8_t)(kb->q[j] - g->qmin);
        for (int k = 0; k < ns; k++) sub_sz(g, kb, k, s + b * (size_t)ns + (size_t)k, z + b * (size_t)ns + (size_t)k);
    }
    return AQ_OK;
}

/* Add v to the candidate list c (n of them) if it is in [lo, hi] and new. */
static void add_code(int *c, int *n, int v, int lo, int hi)
{
    if (v < lo || v > hi) return;
    for (int i = 0; i < *n; i++)
        if (c[i] == v) return;
    c[(*n)++] = v;
}

/* Integer candidates around the current code cur and the real optimum t. */
static int code_cands(int *c, int cur, double t, int lo, int hi)
{
    int n = 0;
    add_code(c, &n, cur, lo, hi);
    add_code(c, &n, cur - 1, lo, hi);
    add_code(c, &n, cur + 1, lo, hi);
    if (isfinite(t) && fabs(t) < 1e6)
        for (int k = -1; k <= 1; k++) add_code(c, &n, (int)lrint(t) + k, lo, hi);
    return n;
}

/* The quadratic model of a change of the stored values of the n columns c0..:
 * x_j = A a_j - B b_j up to float32 rounding, for a super-block (A, B) =
 * (d, dmin), a = sc q, b = mn; for a sub-block (A, B) = (d sc, dmin mn),
 * a = q, b = 1 (b = 0 without mins). */
typedef struct kquad {
    size_t c0, n;
    double a[AQ_GGML_QK_K], b[AQ_GGML_QK_K], Ca[AQ_GGML_QK_K], Cb[AQ_GGML_QK_K];
    double aCa, aCb, bCb, ah, bh;
} kquad;

/* C a, C b (BLAS: the 256 x 256 products dominate a pass otherwise) and the
 * scalars, from k->c0, n, a, b. */
static void quad_setup(const grp *g, kquad *k, int mins)
{
    size_t D = g->D, n = k->n, c0 = k->c0;
    const double *C = g->S.C + c0 * D + c0;
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (f77_int)n, (f77_int)n, 1.0, C, (f77_int)D, k->a, 1, 0.0, k->Ca, 1);
    if (mins)
        cblas_dgemv(CblasRowMajor, CblasNoTrans, (f77_int)n, (f77_int)n, 1.0, C, (f77_int)D, k->b, 1, 0.0, k->Cb, 1);
    else
        memset(k->Cb, 0, n * sizeof *k->Cb);
    k->aCa = k->aCb = k->bCb = k->ah = k->bh = 0;
    for (size_t i = 0; i < n; i++) {
        k->aCa += k->a[i] * k->Ca[i], k->aCb += k->a[i] * k->Cb[i], k->bCb += k->b[i] * k->Cb[i];
        k->ah += k->a[i] * g->h[c0 + i], k->bh += k->b[i] * g->h[c0 + i];
    }
}

/* The (dA, dB) minimising -2 (dA ah - dB bh) + dA^2 aCa - 2 dA dB aCb + dB^2 bCb. */
static void quad_opt(const kquad *k, int mins, double *dA, double *dB)
{
    double det = k->aCa * k->bCb - k->aCb * k->aCb;
    *dA = k->aCa > 0 ? k->ah / k->aCa : NAN, *dB = 0;
    if (mins && det > 1e-12 * k->aCa * k->bCb && det > 0) {
        *dA = (k->ah * k->bCb - k->aCb * k->bh) / det;
        *dB = (k->aCb * k->ah - k->aCa * k->bh) / det;
    }
}

/* Exact loss change of the weight change dl (the stored values' exact
 * difference) of k's columns, with (dA, dB) the change of the model's
 * parameters: dl = dA a - dB b + r with r the float32 rounding residue, so
 * dl' C dl = the quadratic model + 2 r'(dA Ca - dB Cb) + r' C r, the last term
 * over the few non-zero r (dense past 48 of them). */
static double quad_delta(const grp *g, const kquad *k, const double *dl, double dA, double dB)
{
    size_t c0 = k->c0, D = g->D, nz[49], nnz = 0;
    const double *C = g->S.C;
    double r[AQ_GGML_QK_K], lin = 0, rq = 0;
    for (size_t j = 0; j < k->n; j++) {
        lin += dl[j] * g->h[c0 + j];
        r[j] = dl[j] - (dA * k->a[j] - dB * k->b[j]);
        if (r[j] != 0 && nnz < 49) nz[nnz++] = j;
        rq += r[j] * (dA * k->Ca[j] - dB * k->Cb[j]);
    }
    double quad = dA * dA * k->aCa - 2 * dA * dB * k->aCb + dB * dB * k->bCb + 2 * rq;
    if (nnz < 49) {
        for (size_t i = 0; i < nnz; i++)
            for (size_t j = 0; j < nnz; j++) quad += r[nz[i]] * C[(c0 + nz[i]) * D + c0 + nz[j]] * r[nz[j]];
    } else {
        for (size_t i = 0; i < k->n; i++) {
            if (r[i] == 0) continue;
            double t = 0;
            for (size_t j = 0; j < k->n; j++) t += C[(c0 + i) * D + c0 + j] * r[j];
            quad += r[i] * t;
        }
    }
    return -2 * lin + quad;
}

/* Keep the change dl of k's columns: h -= C_J^T dl (BLAS), E_J -= dl. */
static void quad_apply(grp *g, const kquad *k, const double *dl)
{
    cblas_dgemv(CblasRowMajor, CblasTrans, (f77_int)k->n, (f77_int)g->D, -1.0, g->S.C + k->c0 * g->D,
                (f77_int)g->D, dl, 1, 1.0, g->h, 1);
    for (size_t j = 0; j < k->n; j++) g->E[k->c0 + j] -= dl[j];
}

/* Sub-block q of super-block sb: the best (sc, mn) among the candidates. */
static int refit_sub(grp *g, const uint8_t *u, float *s, float *z, size_t sb, int q, kquad *k)
{
    aq_ggml_block *b = &g->kb[sb];
    const aq_ggml_format *f = g->f;
    size_t gs = g->gs, gi = sb * (size_t)f->nsub + (size_t)q;
    int mins = f->mnmax > 0;
    float d = aq_fp16_to_fp32(b->d), m = aq_fp16_to_fp32(b->m);
    double dA, dB, best = 0, dl[AQ_GGML_QK], bdl[AQ_GGML_QK];
    k->c0 = sb * AQ_GGML_QK_K + (size_t)q * gs, k->n = gs;
    for (size_t j = 0; j < gs; j++) k->a[j] = (double)u[k->c0 + j] + g->qmin, k->b[j] = mins;
    quad_setup(g, k, mins);
    quad_opt(k, mins, &dA, &dB); /* the sub-block's optimum s + dA, z + dB */
    int sc[6], mn[6] = {0}, nsc, nmn = 1, bs = b->sc[q], bm = b->mn[q];
    nsc = code_cands(sc, b->sc[q], d != 0 ? ((double)s[gi] + dA) / d : NAN, f->scmin, f->scmax);
    if (mins) nmn = code_cands(mn, b->mn[q], m != 0 ? ((double)z[gi] + dB) / m : NAN, 0, f->mnmax);
    for (int i = 0; i < nsc; i++)
        for (int j = 0; j < nmn; j++) {
            if (sc[i] == b->sc[q] && mn[j] == b->mn[q]) continue;
            float sv = d * (float)sc[i], zv = mins ? m * (float)mn[j] : 0.0f;
            for (size_t c = 0; c < gs; c++)
                dl[c] = (double)wval(g, u[k->c0 + c], sv, zv) - (double)g->wq[k->c0 + c];
            double ch = quad_delta(g, k, dl, (double)sv - s[gi], (double)zv - z[gi]);
            if (ch < best) best = ch, bs = sc[i], bm = mn[j], memcpy(bdl, dl, gs * sizeof *dl);
        }
    if (!(best < 0)) return 0;
    b->sc[q] = (int16_t)bs;
    b->mn[q] = (uint8_t)bm;
    sub_sz(g, b, q, s + gi, z + gi);
    quad_apply(g, k, bdl);
    for (size_t j = 0; j < gs; j++) g->wq[k->c0 + j] = wval(g, u[k->c0 + j], s[gi], z[gi]);
    return 1;
}

/* fp16 candidates for a super-block scale: the current one's neighbours and
 * the rounded optimum t with its neighbours (finite only). */
static int fp16_cands(float *c, float cur, double t)
{
    int n = 0;
    float v[6] = {cur, aq_grp_fp16_step(cur, 1), aq_grp_fp16_step(cur, -1), NAN, NAN, NAN};
    if (isfinite(t) && fabs(t) < 65504) {
        float t16 = aq_fp16_to_fp32(aq_fp32_to_fp16((float)t));
        v[3] = t16, v[4] = aq_grp_fp16_step(t16, 1), v[5] = aq_grp_fp16_step(t16, -1);
    }
    for (int i = 0; i < 6; i++) {
        int dup = !isfinite(v[i]);
        for (int j = 0; j < n && !dup; j++) dup = c[j] == v[i] && signbit(c[j]) == signbit(v[i]);
        if (!dup) c[n++] = v[i];
    }
    return n;
}

/* Super-block sb's (d, dmin): the best fp16 pair among the candidates. */
static int refit_super(grp *g, const uint8_t *u, float *s, float *z, size_t sb, kquad *k)
{
    aq_ggml_block *blk = &g->kb[sb];
    int mins = g->f->mnmax > 0;
    size_t c0 = sb * AQ_GGML_QK_K, ns = (size_t)g->f->nsub;
    k->c0 = c0, k->n = AQ_GGML_QK_K;
    for (size_t j = 0; j < AQ_GGML_QK_K; j++) {
        k->a[j] = (double)blk->sc[j / g->gs] * ((double)u[c0 + j] + g->qmin);
        k->b[j] = mins ? (double)blk->mn[j / g->gs] : 0.0;
    }
    quad_setup(g, k, mins);
    double dd, dm;
    quad_opt(k, mins, &dd, &dm);
    float d = aq_fp16_to_fp32(blk->d), m = aq_fp16_to_fp32(blk->m), dc[6], mc[6] = {m}, bd = d, bm = m;
    int nd = fp16_cands(dc, d, (double)d + dd), nm = mins ? fp16_cands(mc, m, (double)m + dm) : 1;
    double best = 0, dl[AQ_GGML_QK_K], bdl[AQ_GGML_QK_K];
    for (int i = 0; i < nd; i++)
        for (int j = 0; j < nm; j++) {
            if (dc[i] == d && mc[j] == m) continue;
            for (size_t c = 0; c < AQ_GGML_QK_K; c++) {
                size_t sub = c / g->gs;
                float sv = dc[i] * (float)blk->sc[sub], zv = mins ? mc[j] * (float)blk->mn[sub] : 0.0f;
                dl[c] = (double)wval(g, u[c0 + c], sv, zv) - (double)g->wq[c0 + c];
            }
            double ch = quad_delta(g, k, dl, (double)dc[i] - d, (double)mc[j] - m);
            if (ch < best) best = ch, bd = dc[i], bm = mc[j], memcpy(bdl, dl, sizeof dl);
        }
    if (!(best < 0)) return 0;
    blk->d = aq_fp32_to_fp16(bd);
    if (mins) blk->m = aq_fp32_to_fp16(bm);
    for (size_t q = 0; q < ns; q++) sub_sz(g, blk, (int)q, s + sb * ns + q, z + sb * ns + q);
    quad_apply(g, k, bdl);
    for (size_t j = 0; j < AQ_GGML_QK_K; j++) g->wq[c0 + j] = wval(g, u[c0 + j], s[(c0 + j) / g->gs], z[(c0 + j) / g->gs]);
    return 1;
}

int aq_grp_k_refit(grp *g, uint8_t *u, float *s, float *z)
{
    kquad *k = malloc(sizeof *k);
    int changed = 0;
    if (!k) return 0; /* no move: the start stays valid */
    for (size_t sb = 0; sb < g->d_in / AQ_GGML_QK_K; sb++) {
        changed += refit_super(g, u, s, z, sb, k);
        for (int q = 0; q < g->f->nsub; q++) changed += refit_sub(g, u, s, z, sb, q, k);
    }
    free(k);
    return changed;
}

/* An fp16 f and integer codes c[k] in [lo, hi] with fl32(f c[k]) == v[k] for
 * all k, if any: the largest |code| at the largest |v| (llama.cpp's RTN puts
 * its extreme code there, so its blocks come back byte for byte; any other
 * factorisation gives the same float32 values). 0 if none exists. */
static int factor(const float *v, int n, int lo, int hi, uint16_t *f16, int *c)
{
    int km = 0, top = hi > -lo ? hi : -lo;
    for (int k = 1; k < n; k++)
        if (fabsf(v[k]) > fabsf(v[km])) km = k;
    for (int k = 0; k < n; k++) c[k] = 0;
    *f16 = 0;
    if (v[km] == 0) return 1;
    for (int mag = top; mag >= 1; mag--)
        for (int sg = -1; sg <= 1; sg += 2) {
            int q = sg * mag, ok = q >= lo && q <= hi;
            double fd = (double)v[km] / q;
            uint16_t h = aq_fp32_to_fp16((float)fd);
            float f = aq_fp16_to_fp32(h);
            ok = ok && (double)f == fd;
            for (int k = 0; k < n && ok; k++) {
                double t = rint((double)v[k] / f);
                ok = t >= lo && t <= hi && f * (float)t == v[k];
                c[k] = (int)t;
            }
            if (ok) {
                *f16 = h;
                return 1;
            }
        }
    return 0;
}

aq_status aq_grp_k_pack_row(const aq_layer_result *r, size_t row, uint8_t *bytes, aq_error *err)
{
    const aq_ggml_format *f = aq_ggml_format_of((aq_ggml_type)r->gtype);
    size_t ns = (size_t)f->nsub, G = r->d_in / (size_t)f->sublen;
    for (size_t b = 0; b < r->d_in / AQ_GGML_QK_K; b++) {
        aq_ggml_block blk;
        memset(&blk, 0, sizeof blk);
        const float *s = r->w_scale + row * G + b * ns, *z = r->w_zero + row * G + b * ns;
        int sc[16], mn[16];
        for (int j = 0; j < AQ_GGML_QK_K; j++)
            blk.q[j] = (int8_t)(r->codes[row * r->d_in + b * AQ_GGML_QK_K + (size_t)j] + f->qmin);
        int ok = factor(s, (int)ns, f->scmin, f->scmax, &blk.d, sc);
        if (f->mnmax) ok = ok && factor(z, (int)ns, 0, f->mnmax, &blk.m, mn);
        for (size_t k = 0; k < ns && ok; k++) ok = f->mnmax || z[k] == 0;
        if (!ok)
            return aq_fail(err, AQ_ERR_ARG,
                           "%s row %zu super-block %zu: the sub-block scales/mins are not an fp16 times integer codes "
                           "in the format's range", f->name, row, b);
        for (size_t k = 0; k < ns; k++) blk.sc[k] = (int16_t)sc[k], blk.mn[k] = f->mnmax ? (uint8_t)mn[k] : 0;
        AQ_TRY(aq_ggml_pack(f->type, &blk, bytes + b * (size_t)f->bytes, err));
    }
    return AQ_OK;
}

void aq_grp_k_unpack_row(aq_layer_result *r, size_t row, const uint8_t *bytes)
{
    const aq_ggml_format *f = aq_ggml_format_of((aq_ggml_type)r->gtype);
    size_t ns = (size_t)f->nsub, G = r->d_in / (size_t)f->sublen;
    aq_layer_opts o = {.ggml = 1, .gtype = r->gtype};
    grp g = {.o = &o, .f = f, .kq = 1, .qmin = f->qmin};
    for (size_t b = 0; b < r->d_in / AQ_GGML_QK_K; b++) {
        aq_ggml_block blk;
        aq_ggml_unpack(f->type, bytes + b * (size_t)f->bytes, &blk);
        for (int j = 0; j < AQ_GGML_QK_K; j++)
            r->codes[row * r->d_in + b * AQ_GGML_QK_K + (size_t)j] = (uint8_t)(blk.q[j] - f->qmin);
        for (size_t k = 0; k < ns; k++)
            sub_sz(&g, &blk, (int)k, r->w_scale + row * G + b * ns + k, r->w_zero + row * G + b * ns + k);
    }
}
