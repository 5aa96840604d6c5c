/* gram.c — float64 Gram accumulation of [x 1] rows and the exact Gram-form loss.
 *
 * Why float64 on blocks: a float32 Gram over 10^5 tokens loses ~4 digits to
 * accumulation, which is the same order as a w8 layer's normalised loss. Each
 * block of rows is widened to float64 (the products of float32 values are then
 * exact) and added with dsyrk/dgemm, so accumulation error is float64's. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <blis.h>

#include "adaquant.h"
#include "layer_state.h"

enum { GRAM_BLOCK = 256 };

/* Widen rows [n, d] of x into xb [n, d+1] float64 with a ones column; x rows are
 * optionally fake-quantised with aq (a_bits < 16). x may be misaligned (rows
 * straight from a payload): its floats are loaded with memcpy. */
static void widen(const float *x, size_t n, size_t d, const aq_actq *aq, double *xb)
{
    const unsigned char *xc = (const unsigned char *)x;
    int fq = aq && aq->bits < 16; /* decided once: the loops below stay branch-free */
    for (size_t i = 0; i < n; i++) {
        double *o = xb + i * (d + 1);
        const unsigned char *r = xc + i * d * sizeof(float);
        if (fq)
            for (size_t c = 0; c < d; c++) {
                float v;
                memcpy(&v, r + c * sizeof v, sizeof v);
                o[c] = aq_actq_apply(aq, v);
            }
        else
            for (size_t c = 0; c < d; c++) {
                float v;
                memcpy(&v, r + c * sizeof v, sizeof v);
                o[c] = (double)v;
            }
        o[d] = 1.0;
    }
}

static aq_status check_gram_aligned(const double *gram, aq_error *err)
{
    if ((uintptr_t)(const void *)gram % sizeof(double) == 0) return AQ_OK;
    return aq_fail(err, AQ_ERR_ARG, "Gram accumulation: the Gram buffer %p is not 8-byte aligned "
                   "(it is updated in place by BLIS; pass an aligned array)", (const void *)gram);
}

/* Copy the upper triangle of a symmetric D x D matrix to the lower one. */
static void symmetrize_upper(double *g, size_t D)
{
    for (size_t i = 0; i < D; i++)
        for (size_t j = 0; j < i; j++) g[i * D + j] = g[j * D + i];
}

aq_status aq_gram_acc_q(double *gram, const float *x, size_t n, size_t d, const aq_actq *aq,
                        aq_error *err)
{
    size_t D = d + 1;
    AQ_TRY(check_gram_aligned(gram, err));
    double *xb = malloc(GRAM_BLOCK * D * sizeof *xb);
    if (!xb) return aq_fail_nomem(err, "Gram row block", GRAM_BLOCK * D * sizeof *xb);
    /* dsyrk updates only the upper triangle (row-major): keep it, then mirror. */
    for (size_t i0 = 0; i0 < n; i0 += GRAM_BLOCK) {
        size_t nb = n - i0 < GRAM_BLOCK ? n - i0 : GRAM_BLOCK;
        widen(x + i0 * d, nb, d, aq, xb);
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (f77_int)D, (f77_int)nb, 1.0, xb,
                    (f77_int)D, 1.0, gram, (f77_int)D);
    }
    symmetrize_upper(gram, D);
    free(xb);
    return AQ_OK;
}

aq_status aq_gram_acc_cross_q(double *gram, const float *x, const float *y, size_t n, size_t d,
                              const aq_actq *aq, aq_error *err)
{
    size_t D = d + 1;
    AQ_TRY(check_gram_aligned(gram, err));
    double *xb = malloc(2 * GRAM_BLOCK * D * sizeof *xb);
    if (!xb) return aq_fail_nomem(err, "cross-Gram row block", 2 * GRAM_BLOCK * D * sizeof *xb);
    double *yb = xb + GRAM_BLOCK * D;
    for (size_t i0 = 0; i0 < n; i0 += GRAM_BLOCK) {
        size_t nb = n - i0 < GRAM_BLOCK ? n - i0 : GRAM_BLOCK;
        widen(x + i0 * d, nb, d, NULL, xb);
        widen(y + i0 * d, nb, d, aq, yb);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (f77_int)D, (f77_int)D, (f77_int)nb,
                    1.0, xb, (f77_int)D, yb, (f77_int)D, 1.0, gram, (f77_int)D);
    }
    free(xb);
    return AQ_OK;
}

aq_status aq_gram_accumulate(double *gram, const float *x, size_t n, size_t d, aq_error *err)
{
    /* aq_gram_acc_q mirrors the upper triangle; the incoming lower triangle
     * equals it for a symmetric input Gram, so accumulation stays symmetric. */
    return aq_gram_acc_q(gram, x, n, d, NULL, err);
}

aq_status aq_gram_accumulate_cross(double *gram, const float *x, const float *y, size_t n,
                                   size_t d, aq_error *err)
{
    return aq_gram_acc_cross_q(gram, x, y, n, d, NULL, err);
}

/* a^T M b for a D x D row-major M. */
static double quad(const double *M, const double *a, const double *b, size_t D)
{
    double t = 0;
    for (size_t i = 0; i < D; i++) {
        if (a[i] == 0) continue;
        double s = 0;
        const double *mi = M + i * D;
        for (size_t j = 0; j < D; j++) s += mi[j] * b[j];
        t += a[i] * s;
    }
    return t;
}

double aq_gram_loss(const double *A, const double *B, const double *C, size_t d_out, size_t d_in,
                    const float *w_ref, const float *bias_ref, const float *w_q,
                    const float *bias_q)
{
    size_t D = d_in + 1;
    if (!B) B = A;
    if (!C) C = A;
    double *wt = malloc(2 * D * sizeof *wt);
    if (!wt) return NAN;
    double *wh = wt + D;
    double y2 = 0, l = 0;
    for (size_t r = 0; r < d_out; r++) {
        for (size_t c = 0; c < d_in; c++) {
            wt[c] = w_ref[r * d_in + c];
            wh[c] = w_q[r * d_in + c];
        }
        wt[d_in] = bias_ref ? bias_ref[r] : 0.0;
        wh[d_in] = bias_q ? bias_q[r] : 0.0;
        double a = quad(A, wt, wt, D);
        y2 += a;
        l += a - 2 * quad(B, wt, wh, D) + quad(C, wh, wh, D);
    }
    free(wt);
    return y2 > 0 ? l / y2 : NAN;
}
