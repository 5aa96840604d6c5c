/* adam.c — Adam with straight-through rounding over (V, scale, zero, bias').
 *
 * Step sizes are relative (adaquant.h): V moves by lr_w * s_r, the scale
 * multiplicatively by exp(-lr_s * step) (stays positive), the zero point by
 * lr_z code units, the bias by lr_b * s_r * rms(x). Gradients come from the
 * Grams (one gemm) or, in rows mode, from a mini-batch of rows taken in a
 * seeded order (splitmix64 Fisher-Yates) — deterministic either way. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <blis.h>

#include "layer_state.h"

static const double B1 = 0.9, B2 = 0.999, EPS = 1e-30;

aq_status aq_adam_new(aq_adam *a, const aq_ls *S, const aq_adam_cfg *cfg, uint64_t seed,
                      aq_error *err)
{
    memset(a, 0, sizeof *a);
    size_t nw = S->d_out * S->d_in, no = S->d_out, D = S->D;
    a->mV = calloc(nw ? nw : 1, sizeof(float));
    a->vV = calloc(nw ? nw : 1, sizeof(float));
    a->gV = calloc(nw ? nw : 1, sizeof(float));
    a->ms = calloc(9 * no, sizeof(double));
    a->G = calloc(no * D, sizeof(double));
    a->aux = calloc(nw ? nw : 1, sizeof(float));
    a->clampm = calloc(nw ? nw : 1, 1);
    int fail = !a->mV || !a->vV || !a->gV || !a->ms || !a->G || !a->aux || !a->clampm;
    if (!fail && cfg->x) {
        size_t nb = cfg->batch;
        a->perm = malloc(cfg->n_rows * sizeof *a->perm);
        a->xd = malloc(nb * D * sizeof(double));
        a->xqd = malloc(nb * D * sizeof(double));
        a->R = malloc(nb * no * sizeof(double));
        fail = !a->perm || !a->xd || !a->xqd || !a->R;
        if (!fail) {
            uint64_t st = seed;
            for (size_t i = 0; i < cfg->n_rows; i++) a->perm[i] = i;
            for (size_t i = cfg->n_rows; i > 1; i--) {
                size_t j = (size_t)(aq_splitmix64(&st) % i);
                size_t t = a->perm[i - 1];
                a->perm[i - 1] = a->perm[j];
                a->perm[j] = t;
            }
        }
    }
    if (fail) {
        aq_adam_free(a);
        return aq_fail_nomem(err, "Adam state", nw * 12 + no * D * 8);
    }
    a->vs = a->ms + no;
    a->mz = a->ms + 2 * no;
    a->vz = a->ms + 3 * no;
    a->mb = a->ms + 4 * no;
    a->vb = a->ms + 5 * no;
    a->gs = a->ms + 6 * no;
    a->gz = a->ms + 7 * no;
    a->gb = a->ms + 8 * no;
    return AQ_OK;
}

void aq_adam_free(aq_adam *a)
{
    free(a->mV);
    free(a->vV);
    free(a->gV);
    free(a->ms);
    free(a->G);
    free(a->aux);
    free(a->clampm);
    free(a->perm);
    free(a->xd);
    free(a->xqd);
    free(a->R);
    memset(a, 0, sizeof *a);
}

void aq_adam_reset(aq_adam *a, const aq_ls *S)
{
    size_t nw = S->d_out * S->d_in, no = S->d_out;
    memset(a->mV, 0, nw * sizeof(float));
    memset(a->vV, 0, nw * sizeof(float));
    memset(a->ms, 0, 6 * no * sizeof(double));
    a->t = 0;
}

/* Rows-mode G = dloss/dW^ = -(2/nb) R^T [xq 1] / y2 with R = [x 1] W~^T - [xq 1] W^^T. */
static void grad_rows(aq_ls *S, aq_adam *a, const aq_adam_cfg *cfg)
{
    size_t D = S->D, d_in = S->d_in, d_out = S->d_out, nb = cfg->batch;
    if (nb > cfg->n_rows) nb = cfg->n_rows;
    for (size_t i = 0; i < nb; i++) {
        if (a->cursor >= cfg->n_rows) a->cursor = 0;
        size_t row = a->perm[a->cursor++];
        const float *x = cfg->x + row * d_in, *xi = (cfg->xin ? cfg->xin : cfg->x) + row * d_in;
        for (size_t c = 0; c < d_in; c++) {
            a->xd[i * D + c] = x[c];
            a->xqd[i * D + c] = cfg->aq && cfg->aq->bits < 16 ? aq_actq_apply(cfg->aq, xi[c]) : xi[c];
        }
        a->xd[i * D + d_in] = a->xqd[i * D + d_in] = 1.0;
    }
    aq_ls_codes_from_v(S);
    aq_ls_error(S);
    /* W^ = W~ - E into EC (scratch) */
    for (size_t i = 0; i < d_out * D; i++) S->EC[i] = S->Wt[i] - S->E[i];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (f77_int)nb, (f77_int)d_out, (f77_int)D,
                1.0, a->xd, (f77_int)D, S->Wt, (f77_int)D, 0.0, a->R, (f77_int)d_out);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (f77_int)nb, (f77_int)d_out, (f77_int)D,
                -1.0, a->xqd, (f77_int)D, S->EC, (f77_int)D, 1.0, a->R, (f77_int)d_out);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (f77_int)d_out, (f77_int)D, (f77_int)nb,
                -2.0 / ((double)nb * S->y2), a->R, (f77_int)d_out, a->xqd, (f77_int)D, 0.0, a->G,
                (f77_int)D);
    aq_ls_grad_from_G(S, a->G, a->gV, a->gs, a->gz, a->gb);
}

/* aq_ls_grad in float64 with the caller's product E C (cfg->product: the
 * cooperative path's distributed PDGEMM) instead of the local dgemm. */
static void grad_product(aq_ls *S, aq_adam *a, const aq_adam_cfg *cfg)
{
    size_t ne = S->d_out * S->D;
    double k = 2.0 / S->y2;
    aq_ls_codes_from_v(S);
    aq_ls_error(S);
    cfg->product(cfg->product_ctx, S, 0);
    for (size_t i = 0; i < ne; i++) a->G[i] = k * (S->Pm[i] - S->EC[i]);
    aq_ls_grad_from_G(S, a->G, a->gV, a->gs, a->gz, a->gb);
}

static inline double adam_dir(double *m, double *v, double g, double c1, double c2)
{
    *m = B1 * *m + (1 - B1) * g;
    *v = B2 * *v + (1 - B2) * g * g;
    return (*m / c1) / (sqrt(*v / c2) + EPS);
}

/* Adam update of row r from its gradients (gV row, gs/gz/gb[r]). */
static void adam_row(aq_ls *S, aq_adam *a, const aq_adam_cfg *cfg, size_t r, double c1, double c2)
{
    size_t d_in = S->d_in;
    double s = S->s[r];
    float kw = (float)(cfg->lr_w * s), ic1 = (float)(1 / c1), ic2 = (float)(1 / c2);
    float *v = S->V + r * d_in, *mv = a->mV + r * d_in, *vv = a->vV + r * d_in;
    const float *g = a->gV + r * d_in;
    for (size_t c = 0; c < d_in; c++) {
        float gi = g[c];
        mv[c] = 0.9f * mv[c] + 0.1f * gi;
        vv[c] = 0.999f * vv[c] + 0.001f * gi * gi;
        float den = sqrtf(vv[c] * ic2);
        if (den > 0) v[c] -= kw * (mv[c] * ic1) / den;
    }
    double ds = adam_dir(&a->ms[r], &a->vs[r], a->gs[r], c1, c2);
    S->s[r] = s * exp(-cfg->lr_s * ds);
    if (!S->sym) S->z[r] -= cfg->lr_z * adam_dir(&a->mz[r], &a->vz[r], a->gz[r], c1, c2);
    S->bq[r] -= cfg->lr_b * s * S->xrms * adam_dir(&a->mb[r], &a->vb[r], a->gb[r], c1, c2);
}

/* The Gram-mode float32 step, fused: one pass quantizes V and forms E in
 * float32 (keeping each element's LSQ factor and clamp state), one sgemm
 * E C, one pass per row forms the gradient and applies Adam while the row is
 * in cache. Same STE/LSQ rules as aq_ls_grad_from_G (tested against it). */
static void step_gram_f32(aq_ls *S, aq_adam *a, const aq_adam_cfg *cfg, double c1, double c2)
{
    size_t d_in = S->d_in, d_out = S->d_out, D = S->D;
    double qmax = S->qmax, k = 2.0 / S->y2;
    for (size_t r = 0; r < d_out; r++) {
        double s = S->s[r], z = S->z[r];
        const float *v = S->V + r * d_in;
        const double *wt = S->Wt + r * D;
        float *ef = S->Ef + r * D, *aux = a->aux + r * d_in;
        uint8_t *u = S->u + r * d_in, *cl = a->clampm + r * d_in;
        for (size_t c = 0; c < d_in; c++) {
            double vs = v[c] / s, t = aq_rint(vs + z);
            int out = t < 0 || t > qmax;
            double q = t < 0 ? 0 : t > qmax ? qmax : t;
            u[c] = (uint8_t)q;
            cl[c] = (uint8_t)out;
            aux[c] = (float)(out ? q - z : t - z - vs);
            ef[c] = (float)(wt[c] - s * (q - z));
        }
        ef[d_in] = (float)(wt[d_in] - S->bq[r]);
    }
    if (cfg->product)
        cfg->product(cfg->product_ctx, S, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (f77_int)d_out, (f77_int)D, (f77_int)D, 1.0f,
                    S->Ef, (f77_int)D, S->Cf, (f77_int)D, 0.0f, S->ECf, (f77_int)D);
    for (size_t r = 0; r < d_out; r++) {
        const float *ec = S->ECf + r * D, *aux = a->aux + r * d_in;
        const double *pm = S->bc_alias ? NULL : S->Pm + r * D;
        const uint8_t *cl = a->clampm + r * d_in;
        float *gv = a->gV + r * d_in;
        double as = 0, az = 0, s = S->s[r];
        for (size_t c = 0; c < d_in; c++) {
            double g = k * ((pm ? pm[c] : 0.0) - (double)ec[c]);
            as += g * aux[c];
            if (cl[c]) {
                az -= g * s;
                gv[c] = 0;
            } else {
                gv[c] = (float)g;
            }
        }
        a->gs[r] = as;
        a->gz[r] = S->sym ? 0.0 : az;
        a->gb[r] = k * ((pm ? pm[d_in] : 0.0) - (double)ec[d_in]);
        adam_row(S, a, cfg, r, c1, c2);
    }
}

void aq_adam_run(aq_ls *S, aq_adam *a, const aq_adam_cfg *cfg, int iters)
{
    for (int it = 0; it < iters; it++) {
        a->t++;
        double c1 = 1 - pow(B1, (double)a->t), c2 = 1 - pow(B2, (double)a->t);
        if (!cfg->x && cfg->f32) {
            step_gram_f32(S, a, cfg, c1, c2);
            continue;
        }
        if (cfg->x)
            grad_rows(S, a, cfg);
        else if (cfg->product)
            grad_product(S, a, cfg);
        else
            aq_ls_grad(S, cfg->f32, a->G, a->gV, a->gs, a->gz, a->gb);
        for (size_t r = 0; r < S->d_out; r++) adam_row(S, a, cfg, r, c1, c2);
    }
    aq_ls_codes_from_v(S);
}
