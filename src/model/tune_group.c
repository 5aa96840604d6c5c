/* tune_group.c — the group-format layers of global tuning (tune_group.h):
 * per-group log-scales and mins, their gradient, and the re-quantization of
 * the tuned values to the format's stored precision. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/ggml_blocks.h"
#include "tune_group.h"

/* The stored values must be ggml's float32 products (no FMA), as in
 * src/adaquant/group_k.c. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

void aq_tune_grp_free(aq_tune_grp *g)
{
    if (!g) return;
    free(g->s0);
    free(g->d0);
    memset(g, 0, sizeof *g);
}

/* Each super-block's calibrated fp16 d and dmin, from the layer's bytes. */
static aq_status k_start(const aq_layer_result *v, const aq_ggml_format *f, aq_tune_grp *g, aq_error *err)
{
    aq_layer_opts o = {.w_bits = v->w_bits, .a_bits = 16, .group = v->group, .ggml = 1, .gtype = v->gtype};
    size_t rb = aq_group_row_bytes(&o, v->d_in), nb = v->d_in / AQ_GGML_QK_K;
    uint8_t *row = malloc(rb ? rb : 1);
    if (!row) return aq_fail_nomem(err, "K-quant row", rb);
    aq_status st = AQ_OK;
    for (size_t r = 0; st == AQ_OK && r < v->d_out; r++) {
        st = aq_group_pack_row(v, r, row, err);
        for (size_t b = 0; st == AQ_OK && b < nb; b++) {
            aq_ggml_block blk;
            aq_ggml_unpack(f->type, row + b * (size_t)f->bytes, &blk);
            g->d0[r * nb + b] = aq_fp16_to_fp32(blk.d);
            g->m0[r * nb + b] = f->mnmax ? aq_fp16_to_fp32(blk.m) : 0.0f;
        }
    }
    free(row);
    if (st != AQ_OK) aq_error_prefix(err, "tuning a K-quant layer");
    return st;
}

aq_status aq_tune_grp_init(const aq_layer_result *v, aq_tune_grp *g, aq_error *err)
{
    memset(g, 0, sizeof *g);
    const aq_ggml_format *f = v->ggml ? aq_ggml_format_of((aq_ggml_type)v->gtype) : NULL;
    if (v->group <= 0 || (v->ggml && !f))
        return aq_fail(err, AQ_ERR_ARG, "tuning: layer [%zu, %zu] is not in a group format", v->d_out, v->d_in);
    size_t G = aq_result_groups(v);
    g->n = v->d_out * G;
    g->gs = v->d_in / G;
    g->wkg = !v->ggml;
    g->qmin = f ? f->qmin : 0;
    g->kq = f && f->nsub;
    g->nsub = g->kq ? f->nsub : 1;
    g->has_zero = f && (g->kq ? f->mnmax > 0 : f->has_m);
    g->zsign = g->kq ? -1.0 : 1.0;
    if (g->kq) g->sclo = f->scmin, g->schi = f->scmax, g->mnhi = f->mnmax;
    size_t nsb = g->kq ? g->n / (size_t)g->nsub : 0;
    g->s0 = malloc(2 * g->n * sizeof *g->s0);
    g->d0 = g->kq ? malloc((2 * nsb + 1) * sizeof *g->d0) : NULL;
    if (!g->s0 || (g->kq && !g->d0)) {
        aq_tune_grp_free(g);
        return aq_fail_nomem(err, "group tuning state", g->n * 8);
    }
    g->z0 = g->s0 + g->n;
    g->m0 = g->d0 ? g->d0 + nsb : NULL;
    memcpy(g->s0, v->w_scale, g->n * sizeof *g->s0);
    memcpy(g->z0, v->w_zero, g->n * sizeof *g->z0);
    aq_status st = g->kq ? k_start(v, f, g, err) : AQ_OK;
    if (st != AQ_OK) aq_tune_grp_free(g);
    return st;
}

/* v rounded to the nearest fp16 (clamped to its finite range). */
static float to_fp16(float v)
{
    v = fminf(fmaxf(v, -65504.0f), 65504.0f);
    return aq_fp16_to_fp32(aq_fp32_to_fp16(v));
}

/* Sum of (t - fl(D c))^2 over the codes c = clamp(rint(t / D)) into c[]. */
static double sub_err(const float *t, int ns, int lo, int hi, float D, int *c)
{
    double e = 0;
    for (int k = 0; k < ns; k++) {
        double q = D != 0 ? rint((double)t[k] / D) : 0;
        c[k] = q < lo ? lo : q > hi ? hi : (int)q;
        double r = (double)t[k] - (double)(D * (float)c[k]);
        e += r * r;
    }
    return e;
}

void aq_tune_requant_sub(const float *t, int ns, int lo, int hi, float dcur, float *out, uint16_t *d16, int *codes)
{
    int km = 0, c[16];
    for (int k = 1; k < ns; k++) km = fabsf(t[k]) > fabsf(t[km]) ? k : km;
    float cand[3] = {to_fp16(dcur), NAN, NAN};
    if (hi != 0) cand[1] = to_fp16(t[km] / (float)hi);
    if (lo != 0) cand[2] = to_fp16(t[km] / (float)lo);
    float best_d = cand[0];
    double best = sub_err(t, ns, lo, hi, best_d, codes);
    for (int i = 1; i < 3; i++) {
        if (!isfinite(cand[i]) || cand[i] == 0) continue;
        double e = sub_err(t, ns, lo, hi, cand[i], c);
        if (e < best) best = e, best_d = cand[i], memcpy(codes, c, (size_t)ns * sizeof *c);
    }
    *d16 = aq_fp32_to_fp16(best_d);
    for (int k = 0; k < ns; k++) out[k] = best_d * (float)codes[k];
}

/* The K-quant groups of v re-derived as sub-block codes under fp16 d / dmin. */
static void requant_k(const aq_tune_grp *g, aq_layer_result *v)
{
    int ns = g->nsub, codes[16];
    uint16_t h;
    float out[16];
    for (size_t b = 0; b < g->n / (size_t)ns; b++) {
        float *s = v->w_scale + b * (size_t)ns, *z = v->w_zero + b * (size_t)ns;
        aq_tune_requant_sub(s, ns, g->sclo, g->schi, g->d0[b], out, &h, codes);
        memcpy(s, out, (size_t)ns * sizeof *s);
        if (!g->has_zero) continue;
        aq_tune_requant_sub(z, ns, 0, g->mnhi, g->m0[b], out, &h, codes);
        memcpy(z, out, (size_t)ns * sizeof *z);
    }
}

void aq_tune_grp_set(const aq_tune_grp *g, const double *theta, const double *zeta, int requant,
                     aq_layer_result *v)
{
    for (size_t i = 0; i < g->n; i++) {
        v->w_scale[i] = (float)(g->s0[i] * exp(theta[i]));
        v->w_zero[i] = g->has_zero ? (float)(g->z0[i] + fabs((double)g->s0[i]) * zeta[i]) : g->z0[i];
    }
    if (!requant) return;
    if (g->kq) {
        requant_k(g, v);
        return;
    }
    for (size_t i = 0; i < g->n; i++) {
        float s = to_fp16(v->w_scale[i]);
        /* wKgG's reader wants scales > 0: a tiny one stays the least fp16 */
        if (g->wkg && !(s > 0)) s = aq_fp16_to_fp32(1);
        v->w_scale[i] = s;
        if (g->has_zero) v->w_zero[i] = to_fp16(v->w_zero[i]);
    }
}

void aq_tune_grp_grad(const aq_tune_grp *g, const aq_layer_result *v, const float *dw, double *gtheta,
                      double *gzeta)
{
    size_t G = g->n / v->d_out;
    for (size_t r = 0; r < v->d_out; r++)
        for (size_t k = 0; k < G; k++) {
            size_t i = r * G + k, c0 = r * v->d_in + k * g->gs;
            const uint8_t *u = v->codes + c0;
            const float *d = dw + c0;
            /* W = s a + (min term): a = q (ggml), u - z (wKgG); dW/dtheta = s a */
            double ga = 0, gsum = 0, zk = g->wkg ? v->w_zero[i] : -(double)g->qmin;
            for (size_t c = 0; c < g->gs; c++) {
                ga += (double)d[c] * ((double)u[c] - zk);
                gsum += d[c];
            }
            gtheta[i] = (double)v->w_scale[i] * ga;
            gzeta[i] = g->has_zero ? g->zsign * fabs((double)g->s0[i]) * gsum : 0.0;
        }
}
