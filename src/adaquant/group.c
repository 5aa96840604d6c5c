/* group.c — AdaQuant in the group-wise formats: "wKgG" (fp16 scale and
 * integer zero point per G weights) and llama.cpp's 32-weight block types
 * (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), under each format's exact constraints; the
 * K-quants run the same loop with group_k.c's super-block and sub-block moves.
 *
 * The per-row machinery of layer.c (Adam over a continuous V with a per-row
 * scale) does not carry over to per-group fp16 scales, so these formats are
 * optimised by exact coordinate descent on the Gram loss (docs/ADAQUANT.md):
 * with E = W~ - W^ and h = E C - Pm, changing the stored weights of a set J by
 * delta changes the loss by  -2 delta.h_J + delta^T C_JJ delta  (exact), and
 * h -= C delta. Every candidate is evaluated with the values that would be
 * STORED (fp16 scales, integer codes, the format's float32 dequantization), so
 * the loss that is minimised is the loss of the file. Rows are independent
 * problems (the loss separates over output rows). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <blis.h>

#include "../quant/ggml_blocks.h"
#include "../quant/quant.h"
#include "group_int.h"

/* ggml's dequantization rounds the product and the sum separately (no FMA):
 * the candidates' values must be those bits (as in ggml_blocks.c). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

size_t aq_result_groups(const aq_layer_result *r)
{
    const aq_ggml_format *f = r->ggml ? aq_ggml_format_of((aq_ggml_type)r->gtype) : NULL;
    if (f && f->nsub) return r->d_in / (size_t)f->sublen; /* K-quants: per sub-block */
    return r->group > 0 ? r->d_in / (size_t)r->group : 1;
}

void aq_group_dequant_row(const aq_layer_result *r, size_t row, float *out)
{
    aq_layer_opts o = {.ggml = r->ggml, .gtype = r->gtype};
    const aq_ggml_format *f = r->ggml ? aq_ggml_format_of((aq_ggml_type)r->gtype) : NULL;
    grp g = {.o = &o, .f = f, .kq = f && f->nsub, .qmin = f ? f->qmin : 0, .has_m = f ? f->has_m : 0};
    size_t G = aq_result_groups(r), gs = r->d_in / G;
    for (size_t c = 0; c < r->d_in; c++) {
        size_t k = row * G + c / gs;
        out[c] = wval(&g, r->codes[row * r->d_in + c], r->w_scale[k], r->w_zero[k]);
    }
}

aq_status aq_group_pack_row(const aq_layer_result *r, size_t row, uint8_t *bytes, aq_error *err)
{
    const aq_ggml_format *f = aq_ggml_format_of((aq_ggml_type)r->gtype);
    if (!r->ggml || !f) return aq_fail(err, AQ_ERR_ARG, "layer result is not a ggml block type");
    if (f->nsub) return aq_grp_k_pack_row(r, row, bytes, err);
    size_t G = aq_result_groups(r);
    for (size_t b = 0; b < G; b++) {
        aq_ggml_block blk;
        memset(&blk, 0, sizeof blk);
        for (int j = 0; j < AQ_GGML_QK; j++) blk.q[j] = (int8_t)(r->codes[row * r->d_in + b * AQ_GGML_QK + (size_t)j] + f->qmin);
        blk.d = aq_fp32_to_fp16(r->w_scale[row * G + b]);
        blk.m = aq_fp32_to_fp16(r->w_zero[row * G + b]);
        AQ_TRY(aq_ggml_pack((aq_ggml_type)r->gtype, &blk, bytes + b * (size_t)f->bytes, err));
    }
    return AQ_OK;
}

void aq_group_unpack_row(aq_layer_result *r, size_t row, const uint8_t *bytes)
{
    const aq_ggml_format *f = aq_ggml_format_of((aq_ggml_type)r->gtype);
    size_t G = aq_result_groups(r);
    if (f->nsub) {
        aq_grp_k_unpack_row(r, row, bytes);
        return;
    }
    for (size_t b = 0; b < G; b++) {
        aq_ggml_block blk;
        aq_ggml_unpack((aq_ggml_type)r->gtype, bytes + b * (size_t)f->bytes, &blk);
        for (int j = 0; j < AQ_GGML_QK; j++)
            r->codes[row * r->d_in + b * AQ_GGML_QK + (size_t)j] = (uint8_t)(blk.q[j] - f->qmin);
        r->w_scale[row * G + b] = aq_fp16_to_fp32(blk.d);
        r->w_zero[row * G + b] = f->has_m ? aq_fp16_to_fp32(blk.m) : 0.0f;
    }
}

size_t aq_group_row_bytes(const aq_layer_opts *o, size_t d_in)
{
    size_t rb = 0;
    if (o->ggml) {
        if (aq_ggml_row_bytes((aq_ggml_type)o->gtype, d_in, &rb, NULL) != AQ_OK) return 0;
        return rb;
    }
    size_t G = d_in / (size_t)o->group;
    return aq_packed_bytes(d_in, o->w_bits) + 3 * G;
}

/* fp16 neighbour of a representable value v (dir +1 away from zero, -1 toward). */
float aq_grp_fp16_step(float v, int dir)
{
    uint16_t h = aq_fp32_to_fp16(v);
    if ((h & 0x7fffu) == 0) return dir > 0 ? aq_fp16_to_fp32(1) : v;
    uint16_t m = (uint16_t)(h & 0x7fffu), s = (uint16_t)(h & 0x8000u);
    m = (uint16_t)(dir > 0 ? (m < 0x7bffu ? m + 1 : m) : m - 1);
    return aq_fp16_to_fp32((uint16_t)(s | m));
}

/* Exact loss change of replacing the stored weights of group b (columns
 * c0..c0+gs) by those of (s, z) with the same codes; delta into dl. */
static double group_delta(const grp *g, const uint8_t *u, size_t c0, float s, float z, double *dl)
{
    const double *C = g->S.C;
    size_t D = g->D, gs = g->gs;
    double lin = 0, quad = 0;
    for (size_t j = 0; j < gs; j++) {
        dl[j] = (double)wval(g, u[c0 + j], s, z) - (double)g->wq[c0 + j];
        lin += dl[j] * g->h[c0 + j];
    }
    for (size_t i = 0; i < gs; i++) {
        if (dl[i] == 0) continue;
        double t = 0;
        for (size_t j = 0; j < gs; j++) t += C[(c0 + i) * D + c0 + j] * dl[j];
        quad += dl[i] * t;
    }
    return -2 * lin + quad;
}

/* Apply a change delta of the stored weights at columns c0.. (n of them). */
static void apply_delta(grp *g, size_t c0, const double *dl, size_t n)
{
    const double *C = g->S.C;
    for (size_t j = 0; j < n; j++) {
        if (dl[j] == 0) continue;
        const double *row = C + (c0 + j) * g->D;
        for (size_t k = 0; k < g->D; k++) g->h[k] -= dl[j] * row[k];
        g->E[c0 + j] -= dl[j];
    }
}

/* The closed-form optimum of the group's affine parameters with the codes
 * fixed: W_j = a x_j + c over the group (x_j the code's multiplier), c absent
 * for the _0 types. Returns (da, dc) to add to the current (a, c). */
static void group_lsq(const grp *g, const double *x, size_t c0, int two, double *da, double *dc)
{
    const double *C = g->S.C;
    size_t D = g->D, gs = g->gs;
    double xx = 0, x1 = 0, oo = 0, hx = 0, h1 = 0;
    for (size_t i = 0; i < gs; i++) {
        hx += x[i] * g->h[c0 + i];
        h1 += g->h[c0 + i];
        for (size_t j = 0; j < gs; j++) {
            double cij = C[(c0 + i) * D + c0 + j];
            xx += x[i] * cij * x[j];
            x1 += x[i] * cij;
            oo += cij;
        }
    }
    *da = *dc = 0;
    if (!two) {
        if (xx > 0) *da = hx / xx;
        return;
    }
    double det = xx * oo - x1 * x1;
    if (!(det > 1e-300 * fabs(xx * oo)) || !(det > 0)) {
        if (xx > 0) *da = hx / xx;
        return;
    }
    *da = (hx * oo - h1 * x1) / det;
    *dc = (h1 * xx - hx * x1) / det;
}

/* The best candidate (s, z) of a group so far and its weight change. */
typedef struct cand {
    double best;
    float s, z;
    double dl[AQ_GGML_QK * 4];
} cand;

/* Evaluate (sc, zc) for the group at c0; keep it in bc if it is better. */
static void try_point(const grp *g, const uint8_t *u, size_t c0, float sc, float zc, cand *bc)
{
    double dl[AQ_GGML_QK * 4];
    double d = group_delta(g, u, c0, sc, zc, dl);
    if (d < bc->best) {
        bc->best = d;
        bc->s = sc;
        bc->z = zc;
        memcpy(bc->dl, dl, g->gs * sizeof *dl);
    }
}

/* Refit group b's scale (and min or zero point) in closed form, then try the
 * fp16 value nearest the optimum and its neighbours; keep the best if it
 * lowers the loss. Returns 1 if changed. */
static int refit_group(grp *g, uint8_t *u, float *s, float *z, size_t c0)
{
    double x[AQ_GGML_QK * 4];
    size_t gs = g->gs;
    int two = g->o->ggml ? g->has_m : 1;
    for (size_t j = 0; j < gs; j++)
        x[j] = g->o->ggml ? (double)u[c0 + j] + (g->has_m ? 0 : g->qmin) : (double)u[c0 + j];
    double da, dc;
    group_lsq(g, x, c0, two, &da, &dc);
    /* W = a x + c: for wKgG a = s, c = -s z; for _1 a = d, c = m */
    double a = *s + da, c = (g->o->ggml ? *z : -(double)*s * *z) + dc;
    float a16 = aq_fp16_to_fp32(aq_fp32_to_fp16((float)a));
    cand bc = {.best = 0, .s = *s, .z = *z};
    /* the current point's own neighbours: one fp16 step of the scale, one
     * step of the zero point (or fp16 step of the min) */
    for (int i = 0; i < 4; i++) {
        float sc = *s, zc = *z;
        if (i < 2) sc = aq_grp_fp16_step(*s, i ? 1 : -1);
        else if (!two) break;
        else if (g->o->ggml) zc = aq_grp_fp16_step(*z, (i == 2 ? 1 : -1) * (*z < 0 ? -1 : 1));
        else zc = *z + (i == 2 ? 1.0f : -1.0f);
        if (!isfinite(sc) || !isfinite(zc) || (!g->o->ggml && (!(sc > 0) || zc < 0 || zc > g->umax))) continue;
        try_point(g, u, c0, sc, zc, &bc);
    }
    for (int i = -1; i <= 1; i++) {
        float sc = i ? aq_grp_fp16_step(a16, i) : a16;
        if (!isfinite(sc) || (!g->o->ggml && !(sc > 0))) continue;
        for (int k = -1; k <= 1; k++) {
            float zc;
            if (!two) zc = 0;
            else if (g->o->ggml) {
                float m16 = aq_fp16_to_fp32(aq_fp32_to_fp16((float)c));
                zc = k ? aq_grp_fp16_step(m16, k * (m16 < 0 ? -1 : 1)) : m16;
            } else {
                double zz = aq_rint(-c / sc) + k;
                if (zz < 0 || zz > g->umax) continue;
                zc = (float)zz;
            }
            if (!isfinite(zc)) continue;
            try_point(g, u, c0, sc, zc, &bc);
            if (!two) break;
        }
    }
    if (!(bc.best < 0)) return 0;
    *s = bc.s;
    *z = bc.z;
    apply_delta(g, c0, bc.dl, gs);
    for (size_t j = 0; j < gs; j++) g->wq[c0 + j] = wval(g, u[c0 + j], *s, *z);
    return 1;
}

/* Greedy +-1 code moves over the row; returns the number accepted. */
static int code_moves(grp *g, uint8_t *u, const float *s, const float *z)
{
    const double *C = g->S.C;
    int moved = 0;
    for (size_t c = 0; c < g->d_in; c++) {
        size_t b = c / g->gs;
        double cc = C[c * g->D + c], best = 0, bdl = 0;
        int bu = -1;
        for (int dir = -1; dir <= 1; dir += 2) {
            int nu = (int)u[c] + dir;
            if (nu < 0 || nu > g->umax) continue;
            double dl = (double)wval(g, nu, s[b], z[b]) - (double)g->wq[c];
            double d = -2 * dl * g->h[c] + dl * dl * cc;
            if (d < best) best = d, bu = nu, bdl = dl;
        }
        if (bu < 0) continue;
        u[c] = (uint8_t)bu;
        g->wq[c] = wval(g, bu, s[b], z[b]);
        apply_delta(g, c, &bdl, 1);
        moved++;
    }
    return moved;
}

/* The bias refit (b' is stored as float32). Returns 1 if changed. */
static int refit_bias(grp *g, float *bias)
{
    size_t k = g->d_in;
    double ckk = g->S.C[k * g->D + k];
    if (!(ckk > 0)) return 0;
    float nb = (float)((double)*bias + g->h[k] / ckk);
    double dl = (double)nb - (double)*bias;
    if (!(-2 * dl * g->h[k] + dl * dl * ckk < 0)) return 0;
    *bias = nb;
    apply_delta(g, k, &dl, 1);
    return 1;
}

/* Round-to-nearest start of row r: the ggml reference quantizer's blocks, or
 * per group the MSE-clipped grid with its scale rounded to fp16. */
static aq_status rtn_row(grp *g, const float *w, uint8_t *u, float *s, float *z, aq_error *err)
{
    if (g->kq) return aq_grp_k_rtn(g, w, u, s, z, err);
    if (g->o->ggml) {
        aq_ggml_block blk[AQ_GGML_QK_K / AQ_GGML_QK];
        for (size_t b = 0; b < g->G; b++) {
            AQ_TRY(aq_ggml_quantize_row_blocks((aq_ggml_type)g->o->gtype, w + b * g->gs, g->gs, blk, err));
            for (size_t j = 0; j < g->gs; j++) u[b * g->gs + j] = (uint8_t)(blk[0].q[j] - g->qmin);
            s[b] = aq_fp16_to_fp32(blk[0].d);
            z[b] = g->has_m ? aq_fp16_to_fp32(blk[0].m) : 0.0f;
        }
        return AQ_OK;
    }
    aq_qspec spec = {g->o->w_bits, 0};
    for (size_t b = 0; b < g->G; b++) {
        float sc, ze;
        aq_qrange(w + b * g->gs, g->gs, spec, AQ_RANGE_MSE, &sc, &ze);
        float s16 = aq_fp16_to_fp32(aq_fp32_to_fp16(sc));
        if (!(s16 > 0)) s16 = aq_fp16_to_fp32(1); /* underflow: tiny weights, smallest fp16 */
        if (!isfinite(s16)) return aq_fail(err, AQ_ERR_NUMERIC, "group scale %g exceeds fp16's range", (double)sc);
        s[b] = s16;
        z[b] = ze;
        aq_quantize(w + b * g->gs, g->gs, s16, ze, g->o->w_bits, u + b * g->gs);
    }
    return AQ_OK;
}

/* Current row state: wq from the codes, E = W~ - [wq b'], h = E C - Pm;
 * returns the row's loss k0 - 2 Pm.E + E C E^T. */
static double row_state(grp *g, size_t r, const uint8_t *u, const float *s, const float *z, float bias)
{
    size_t D = g->D;
    for (size_t c = 0; c < g->d_in; c++) g->wq[c] = wval(g, u[c], s[c / g->gs], z[c / g->gs]);
    for (size_t c = 0; c < g->d_in; c++) g->E[c] = g->S.Wt[r * D + c] - (double)g->wq[c];
    g->E[g->d_in] = g->S.Wt[r * D + g->d_in] - (double)bias;
    cblas_dgemv(CblasRowMajor, CblasNoTrans, (f77_int)D, (f77_int)D, 1.0, g->S.C, (f77_int)D, g->E, 1, 0.0,
                g->h, 1);
    double l = g->S.k0[r], pe = 0, ece = 0;
    for (size_t k = 0; k < D; k++) {
        pe += g->S.Pm[r * D + k] * g->E[k];
        ece += g->E[k] * g->h[k];
        g->h[k] -= g->S.Pm[r * D + k];
    }
    return l - 2 * pe + ece;
}

static aq_status optimise(grp *g, const aq_layer_problem *p, aq_layer_result *out, aq_error *err)
{
    size_t G = g->G, d_in = g->d_in;
    double l_rtn = 0, l_fin = 0;
    int passes = g->o->polish_rounds > 0 ? 4 * g->o->polish_rounds : 0, iters = 0;
    for (size_t r = 0; r < g->d_out; r++) {
        uint8_t *u = out->codes + r * d_in;
        float *s = out->w_scale + r * G, *z = out->w_zero + r * G, *b = out->bias + r;
        AQ_TRY(rtn_row(g, p->weight + r * d_in, u, s, z, err));
        *b = p->bias ? p->bias[r] : 0.0f;
        l_rtn += row_state(g, r, u, s, z, *b);
        for (int it = 0; it < passes; it++) {
            int changed = refit_bias(g, b);
            if (g->kq) changed += aq_grp_k_refit(g, u, s, z);
            else
                for (size_t k = 0; k < G; k++) changed += refit_group(g, u, s + k, z + k, k * g->gs);
            changed += code_moves(g, u, s, z);
            iters++;
            if (!changed) break;
        }
        /* the exact loss of what is stored, recomputed from scratch */
        l_fin += row_state(g, r, u, s, z, *b);
    }
    out->loss_rtn = out->loss_init = l_rtn / g->S.y2;
    out->loss_final = l_fin / g->S.y2;
    out->loss_gptq = NAN;
    out->iterations = iters;
    return AQ_OK;
}

static aq_status setup(grp *g, const aq_layer_problem *p, const aq_layer_opts *o, aq_error *err)
{
    const char *nm = p->name ? p->name : "layer";
    const aq_ggml_format *f = o->ggml ? aq_ggml_format_of((aq_ggml_type)o->gtype) : NULL;
    if (o->ggml && (!f || f->block != o->group))
        return aq_fail(err, AQ_ERR_ARG, "layer %s: ggml type %d with group %d is not a block type", nm, o->gtype,
                       o->group);
    if (o->a_bits != 16)
        return aq_fail(err, AQ_ERR_ARG, "layer %s: group formats quantize weights only (a16)", nm);
    if (o->group <= 0 || (o->group > 4 * AQ_GGML_QK && !(f && f->nsub)) || p->d_in % (size_t)o->group)
        return aq_fail(err, AQ_ERR_SHAPE, "layer %s: rows of %zu weights are not a multiple of the group %d", nm,
                       p->d_in, o->group);
    g->o = o;
    g->f = f;
    g->kq = f && f->nsub;
    g->d_out = p->d_out;
    g->d_in = p->d_in;
    g->D = p->d_in + 1;
    g->gs = g->kq ? (size_t)f->sublen : (size_t)o->group;
    g->G = p->d_in / g->gs;
    g->qmin = f ? f->qmin : 0;
    g->umax = f ? f->qmax - f->qmin : (1 << o->w_bits) - 1;
    g->has_m = f ? f->has_m : 0;
    AQ_TRY(aq_ls_new(&g->S, p->d_out, p->d_in, 8, 0, p->weight, p->bias, err));
    double *A, *B, *C;
    size_t D = g->D;
    if (p->x) {
        AQ_TRY(aq_grams_from_rows(p->x, p->x_in, p->n_rows, p->d_in, NULL, &A, &B, &C, err));
    } else {
        int alias = !p->gram_b && !p->gram_c;
        double inv = 1.0 / (double)p->n_tokens;
        A = malloc(D * D * sizeof *A);
        B = alias ? A : malloc(D * D * sizeof *B);
        C = alias ? A : malloc(D * D * sizeof *C);
        if (!A || !B || !C) {
            free(A);
            if (!alias) free(B), free(C);
            return aq_fail_nomem(err, "Grams", 3 * D * D * sizeof(double));
        }
        for (size_t i = 0; i < D * D; i++) {
            A[i] = p->gram_a[i] * inv;
            if (!alias) B[i] = (p->gram_b ? p->gram_b[i] : p->gram_a[i]) * inv;
            if (!alias) C[i] = (p->gram_c ? p->gram_c[i] : p->gram_a[i]) * inv;
        }
    }
    AQ_TRY(aq_ls_set_grams(&g->S, A, B, C, err));
    if (!(g->S.y2 > 0))
        return aq_fail(err, AQ_ERR_NUMERIC,
                       "layer %s: the layer output is zero on the calibration inputs: the normalised "
                       "output error is undefined", nm);
    g->h = malloc(2 * D * sizeof(double));
    g->wq = malloc(p->d_in * sizeof(float));
    g->kb = g->kq ? malloc(p->d_in / AQ_GGML_QK_K * sizeof *g->kb) : NULL;
    if (!g->h || !g->wq || (g->kq && !g->kb)) return aq_fail_nomem(err, "group state", D * 20);
    g->E = g->h + D;
    return AQ_OK;
}

aq_status aq_group_run(const aq_layer_problem *p, const aq_layer_opts *o, aq_layer_result *out, aq_error *err)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(out, 0, sizeof *out);
    grp g;
    memset(&g, 0, sizeof g);
    aq_status st = setup(&g, p, o, err);
    if (st == AQ_OK) {
        size_t ng = p->d_out * g.G;
        out->codes = malloc(p->d_out * p->d_in);
        out->w_scale = malloc((2 * ng + p->d_out) * sizeof(float));
        if (!out->codes || !out->w_scale) st = aq_fail_nomem(err, "layer result", p->d_out * p->d_in);
        else {
            out->w_zero = out->w_scale + ng;
            out->bias = out->w_scale + 2 * ng;
            st = optimise(&g, p, out, err);
        }
    }
    aq_ls_free(&g.S);
    free(g.h);
    free(g.wq);
    free(g.kb);
    if (st != AQ_OK) {
        aq_layer_result_free(out);
        if (err && p->name && !strstr(err->msg, p->name)) aq_error_prefix(err, "layer %s", p->name);
        return st;
    }
    char opt[32];
    aq_layer_opts_string(o, opt, sizeof opt);
    out->d_out = p->d_out;
    out->d_in = p->d_in;
    out->w_bits = o->w_bits;
    out->a_bits = 16;
    out->group = o->group;
    out->ggml = o->ggml;
    out->gtype = o->gtype;
    out->a_scale = 1;
    out->a_zero = 0;
    out->mode_used = AQ_MODE_GRAM;
    out->y_energy = g.S.y2;
    out->seed = aq_layer_seed(p->name, opt, o->seed);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    out->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    return AQ_OK;
}
