/* state.c — the Gram-form working state of one layer problem: setup, exact
 * loss, and the STE/LSQ gradient (layer_state.h has the formulas). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <blis.h>

#include "layer_state.h"

static void *xcalloc(size_t n, size_t sz, int *fail)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p) *fail = 1;
    return p;
}

aq_status aq_ls_new(aq_ls *S, size_t d_out, size_t d_in, int bits, int sym, const float *W,
                    const float *bias, aq_error *err)
{
    memset(S, 0, sizeof *S);
    size_t D = d_in + 1, nw = d_out * d_in, ne = d_out * D;
    int fail = 0;
    S->d_out = d_out;
    S->d_in = d_in;
    S->D = D;
    S->bits = bits;
    S->sym = sym;
    S->qmax = (double)((1u << bits) - 1u);
    S->zsym = (double)(1u << (bits - 1));
    S->Wt = xcalloc(ne, sizeof(double), &fail);
    S->Pm = xcalloc(ne, sizeof(double), &fail);
    S->T = xcalloc(ne, sizeof(double), &fail);
    S->k0 = xcalloc(d_out, sizeof(double), &fail);
    S->V = xcalloc(nw, sizeof(float), &fail);
    S->u = xcalloc(nw, 1, &fail);
    S->s = xcalloc(d_out, sizeof(double), &fail);
    S->z = xcalloc(d_out, sizeof(double), &fail);
    S->bq = xcalloc(d_out, sizeof(double), &fail);
    S->E = xcalloc(ne, sizeof(double), &fail);
    S->EC = xcalloc(ne, sizeof(double), &fail);
    S->Ef = xcalloc(ne, sizeof(float), &fail);
    S->ECf = xcalloc(ne, sizeof(float), &fail);
    S->Cf = xcalloc(D * D, sizeof(float), &fail);
    if (fail) {
        aq_ls_free(S);
        return aq_fail_nomem(err, "AdaQuant layer state", 6 * ne * sizeof(double) + 2 * nw * 4);
    }
    for (size_t r = 0; r < d_out; r++) {
        for (size_t c = 0; c < d_in; c++) S->Wt[r * D + c] = W[r * d_in + c];
        S->Wt[r * D + d_in] = bias ? bias[r] : 0.0;
    }
    return AQ_OK;
}

void aq_ls_free(aq_ls *S)
{
    if (!S) return;
    if (!S->bc_alias) {
        free(S->B);
        free(S->C);
    }
    free(S->A);
    free(S->Cf);
    free(S->Wt);
    free(S->Pm);
    free(S->T);
    free(S->k0);
    free(S->V);
    free(S->u);
    free(S->s);
    free(S->z);
    free(S->bq);
    free(S->E);
    free(S->EC);
    free(S->Ef);
    free(S->ECf);
    memset(S, 0, sizeof *S);
}

aq_status aq_ls_set_grams(aq_ls *S, double *A, double *B, double *C, aq_error *err)
{
    size_t D = S->D, d_out = S->d_out;
    if (S->A != A) free(S->A);
    if (!S->bc_alias) {
        if (S->B != B) free(S->B);
        if (S->C != C) free(S->C);
    }
    S->A = A;
    S->B = B;
    S->C = C;
    S->bc_alias = (B == A && C == A);
    for (size_t i = 0; i < D * D; i++) S->Cf[i] = (float)C[i];
    double xs = 0;
    for (size_t c = 0; c < S->d_in; c++) xs += C[c * D + c];
    S->xrms = S->d_in ? sqrt(xs / (double)S->d_in) : 1.0;
    if (!(S->xrms > 0)) S->xrms = 1.0;
    /* y2 = sum_r W~_r A W~_r^T via WA = W~ A (EC as scratch). */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (f77_int)d_out, (f77_int)D, (f77_int)D,
                1.0, S->Wt, (f77_int)D, A, (f77_int)D, 0.0, S->EC, (f77_int)D);
    double y2 = 0;
    for (size_t i = 0; i < d_out * D; i++) y2 += S->Wt[i] * S->EC[i];
    S->y2 = y2;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (f77_int)d_out, (f77_int)D, (f77_int)D,
                1.0, S->Wt, (f77_int)D, B, (f77_int)D, 0.0, S->T, (f77_int)D);
    if (S->bc_alias) {
        memset(S->Pm, 0, d_out * D * sizeof(double));
        memset(S->k0, 0, d_out * sizeof(double));
        return AQ_OK;
    }
    /* M = C - B, K = A - B - B^T + C; Pm = W~ M; k0_r = W~_r K W~_r^T. */
    double *M = malloc(D * D * sizeof *M);
    if (!M) return aq_fail_nomem(err, "Gram difference", D * D * sizeof *M);
    for (size_t i = 0; i < D * D; i++) M[i] = C[i] - B[i];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (f77_int)d_out, (f77_int)D, (f77_int)D,
                1.0, S->Wt, (f77_int)D, M, (f77_int)D, 0.0, S->Pm, (f77_int)D);
    for (size_t i = 0; i < D; i++)
        for (size_t j = 0; j < D; j++) M[i * D + j] = A[i * D + j] - B[i * D + j] - B[j * D + i] + C[i * D + j];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (f77_int)d_out, (f77_int)D, (f77_int)D,
                1.0, S->Wt, (f77_int)D, M, (f77_int)D, 0.0, S->EC, (f77_int)D);
    for (size_t r = 0; r < d_out; r++) {
        double t = 0;
        for (size_t c = 0; c < D; c++) t += S->Wt[r * D + c] * S->EC[r * D + c];
        S->k0[r] = t;
    }
    free(M);
    return AQ_OK;
}

void aq_ls_codes_from_v(aq_ls *S)
{
    size_t d_in = S->d_in;
    for (size_t r = 0; r < S->d_out; r++) {
        double s = S->s[r], z = S->z[r];
        for (size_t c = 0; c < d_in; c++) {
            double t = aq_rint(S->V[r * d_in + c] / s + z);
            S->u[r * d_in + c] = (uint8_t)(t < 0 ? 0 : t > S->qmax ? S->qmax : t);
        }
    }
}

void aq_ls_v_from_codes(aq_ls *S)
{
    size_t d_in = S->d_in;
    for (size_t r = 0; r < S->d_out; r++)
        for (size_t c = 0; c < d_in; c++)
            S->V[r * d_in + c] = (float)(S->s[r] * ((double)S->u[r * d_in + c] - S->z[r]));
}

void aq_ls_error(aq_ls *S)
{
    size_t d_in = S->d_in, D = S->D;
    for (size_t r = 0; r < S->d_out; r++) {
        const double *wt = S->Wt + r * D;
        double *e = S->E + r * D;
        for (size_t c = 0; c < d_in; c++)
            e[c] = wt[c] - S->s[r] * ((double)S->u[r * d_in + c] - S->z[r]);
        e[d_in] = wt[d_in] - S->bq[r];
    }
}

double aq_ls_loss(aq_ls *S, double *loss_r)
{
    size_t D = S->D, d_out = S->d_out;
    aq_ls_error(S);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (f77_int)d_out, (f77_int)D, (f77_int)D,
                1.0, S->E, (f77_int)D, S->C, (f77_int)D, 0.0, S->EC, (f77_int)D);
    double tot = 0;
    for (size_t r = 0; r < d_out; r++) {
        const double *e = S->E + r * D, *ec = S->EC + r * D, *pm = S->Pm + r * D;
        double l = S->k0[r];
        for (size_t c = 0; c < D; c++) l += e[c] * (ec[c] - 2 * pm[c]);
        if (loss_r) loss_r[r] = l;
        tot += l;
    }
    return tot / S->y2;
}

void aq_ls_grad_from_G(aq_ls *S, const double *G, float *gV, double *gs, double *gz, double *gb)
{
    size_t d_in = S->d_in, D = S->D;
    double qmax = S->qmax;
    for (size_t r = 0; r < S->d_out; r++) {
        double s = S->s[r], z = S->z[r], as = 0, az = 0;
        const double *g = G + r * D;
        for (size_t c = 0; c < d_in; c++) {
            double v = S->V[r * d_in + c], t = aq_rint(v / s + z);
            if (t < 0 || t > qmax) {
                double u = t < 0 ? 0 : qmax;
                S->u[r * d_in + c] = (uint8_t)u;
                gV[r * d_in + c] = 0;
                as += g[c] * (u - z);
                az -= g[c] * s;
            } else {
                S->u[r * d_in + c] = (uint8_t)t;
                gV[r * d_in + c] = (float)g[c];
                as += g[c] * (t - z - v / s);
            }
        }
        gs[r] = as;
        gz[r] = S->sym ? 0.0 : az;
        gb[r] = g[d_in];
    }
}

/* G = dloss/dW^ = 2 (Pm - E C) / y2 at the current (V, s, z, bq). */
void aq_ls_grad(aq_ls *S, int f32, double *G, float *gV, double *gs, double *gz, double *gb)
{
    size_t D = S->D, d_out = S->d_out, ne = d_out * D;
    aq_ls_codes_from_v(S);
    aq_ls_error(S);
    if (f32) {
        for (size_t i = 0; i < ne; i++) S->Ef[i] = (float)S->E[i];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (f77_int)d_out, (f77_int)D,
                    (f77_int)D, 1.0f, S->Ef, (f77_int)D, S->Cf, (f77_int)D, 0.0f, S->ECf,
                    (f77_int)D);
        for (size_t i = 0; i < ne; i++) S->EC[i] = S->ECf[i];
    } else {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (f77_int)d_out, (f77_int)D,
                    (f77_int)D, 1.0, S->E, (f77_int)D, S->C, (f77_int)D, 0.0, S->EC, (f77_int)D);
    }
    double k = 2.0 / S->y2;
    for (size_t i = 0; i < ne; i++) G[i] = k * (S->Pm[i] - S->EC[i]);
    aq_ls_grad_from_G(S, G, gV, gs, gz, gb);
}
