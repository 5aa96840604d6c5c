/* actq.c — the per-tensor activation quantizer: MSE fit, STE/LSQ gradient of
 * the layer loss wrt (a_scale, a_zero), and the Grams B, C it induces.
 * The activation quantizer changes X~q, so it lives in an outer loop that
 * rebuilds B and C from rows (layer.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <blis.h>

#include "../quant/quant.h"
#include "layer_state.h"

enum { FIT_MAX_VALUES = 1 << 20, ROW_BLOCK = 256 };

void aq_actq_fit(aq_actq *q, int bits, const float *x, size_t n, size_t d)
{
    q->bits = bits;
    q->qmax = bits >= 16 ? 0 : (double)((1u << bits) - 1u);
    q->scale = 1;
    q->zero = 0;
    if (bits >= 16) return;
    size_t total = n * d, stride = total > FIT_MAX_VALUES ? (total + FIT_MAX_VALUES - 1) / FIT_MAX_VALUES : 1;
    size_t m = (total + stride - 1) / stride;
    float *buf = malloc(m * sizeof *buf);
    float sc = 1, ze = 0;
    aq_qspec spec = {bits, 0};
    if (buf) {
        for (size_t i = 0, k = 0; i < total; i += stride) buf[k++] = x[i];
        aq_qrange(buf, m, spec, AQ_RANGE_MSE, &sc, &ze);
        free(buf);
    } else {
        aq_qrange(x, total, spec, AQ_RANGE_MINMAX, &sc, &ze);
    }
    q->scale = sc;
    q->zero = ze;
}

static double adam_dir(double *m, double *v, double g, int t)
{
    *m = 0.9 * *m + 0.1 * g;
    *v = 0.999 * *v + 0.001 * g * g;
    double d = sqrt(*v / (1 - pow(0.999, t)));
    return d > 0 ? (*m / (1 - pow(0.9, t))) / d : 0.0;
}

void aq_actq_step(aq_actq *q, aq_actq_adam *m, double g_scale, double g_zero, double lr, int t)
{
    double s = q->scale, z = q->zero;
    s *= exp(-lr * adam_dir(&m->ms, &m->vs, g_scale * s, t));
    z -= lr * q->qmax * adam_dir(&m->mz, &m->vz, g_zero, t);
    q->scale = (float)s; /* the stored type rounds (layer_state.h: why not doubles) */
    q->zero = (float)z;
}

aq_status aq_grams_from_rows(const float *x, const float *xin, size_t n, size_t d,
                             const aq_actq *q, double **A, double **B, double **C, aq_error *err)
{
    return aq_grams_from_rows_a(x, xin, n, d, q, NULL, A, B, C, err);
}

aq_status aq_grams_from_rows_a(const float *x, const float *xin, size_t n, size_t d,
                               const aq_actq *q, const double *a_known, double **A, double **B,
                               double **C, aq_error *err)
{
    size_t D = d + 1;
    aq_status st = AQ_OK;
    *A = *B = *C = NULL;
    int alias = (!xin || xin == x) && (!q || q->bits >= 16);
    double *a = calloc(D * D, sizeof *a), *b = NULL, *c = NULL;
    if (!a) return aq_fail_nomem(err, "Gram A", D * D * sizeof *a);
    if (a_known)
        memcpy(a, a_known, D * D * sizeof *a);
    else
        AQ_TRY_GOTO(st, aq_gram_acc_q(a, x, n, d, NULL, err), fail);
    if (alias) {
        b = c = a;
    } else {
        b = calloc(D * D, sizeof *b);
        c = calloc(D * D, sizeof *c);
        if (!b || !c) {
            st = aq_fail_nomem(err, "Grams B, C", 2 * D * D * sizeof *b);
            goto fail;
        }
        const float *xi = xin ? xin : x;
        AQ_TRY_GOTO(st, aq_gram_acc_q(c, xi, n, d, q, err), fail);
        AQ_TRY_GOTO(st, aq_gram_acc_cross_q(b, x, xi, n, d, q, err), fail);
    }
    double inv = 1.0 / (double)n;
    for (size_t i = 0; !a_known && i < D * D; i++) a[i] *= inv;
    if (!alias)
        for (size_t i = 0; i < D * D; i++) {
            b[i] *= inv;
            c[i] *= inv;
        }
    *A = a;
    *B = b;
    *C = c;
    return AQ_OK;
fail:
    if (!alias) {
        free(b);
        free(c);
    }
    free(a);
    return st;
}

/* Accumulate the (scale, zero) gradient of one block of nb rows. */
static void grad_block(const aq_ls *S, const aq_actq *q, const float *x, const float *xin,
                       size_t nb, double *xd, double *xqd, double *R, double *dX, double *gsz)
{
    size_t D = S->D, d_in = S->d_in, d_out = S->d_out;
    for (size_t i = 0; i < nb; i++) {
        for (size_t c = 0; c < d_in; c++) {
            xd[i * D + c] = x[i * d_in + c];
            xqd[i * D + c] = aq_actq_apply(q, xin[i * d_in + c]);
        }
        xd[i * D + d_in] = xqd[i * D + d_in] = 1.0;
    }
    /* R = [x 1] W~^T - [xq 1] W^^T; S->EC holds W^ (set by the caller). */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (f77_int)nb, (f77_int)d_out, (f77_int)D,
                1.0, xd, (f77_int)D, S->Wt, (f77_int)D, 0.0, R, (f77_int)d_out);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (f77_int)nb, (f77_int)d_out, (f77_int)D,
                -1.0, xqd, (f77_int)D, S->EC, (f77_int)D, 1.0, R, (f77_int)d_out);
    /* dX = dloss/dxq (up to the factor -2/(N y2)) = R W^[:, :d_in] */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (f77_int)nb, (f77_int)D,
                (f77_int)d_out, 1.0, R, (f77_int)d_out, S->EC, (f77_int)D, 0.0, dX, (f77_int)D);
    for (size_t i = 0; i < nb; i++)
        for (size_t c = 0; c < d_in; c++) {
            float vf = xin[i * d_in + c];
            double v = vf, g = dX[i * D + c];
            double t = aq_nearbyintf(vf / q->scale) + q->zero; /* as aq_actq_apply (float) */
            if (t < 0 || t > q->qmax) {
                double u = t < 0 ? 0 : q->qmax;
                gsz[0] += g * (u - q->zero);
                gsz[1] -= g * q->scale;
            } else {
                gsz[0] += g * (t - q->zero - v / q->scale);
            }
        }
}

aq_status aq_actq_grad(aq_ls *S, const aq_actq *q, const float *x, const float *xin,
                       size_t n, double *g_scale, double *g_zero, aq_error *err)
{
    size_t D = S->D, d_out = S->d_out, d_in = S->d_in, nb = ROW_BLOCK;
    double *buf = malloc((3 * nb * D + nb * d_out) * sizeof *buf);
    if (!buf) return aq_fail_nomem(err, "activation gradient block", (3 * nb * D + nb * d_out) * 8);
    double *xd = buf, *xqd = buf + nb * D, *dX = buf + 2 * nb * D, *R = buf + 3 * nb * D;
    /* W^ = W~ - E into S->EC (scratch; callers recompute EC afterwards). */
    aq_ls_error(S);
    for (size_t i = 0; i < d_out * D; i++) S->EC[i] = S->Wt[i] - S->E[i];
    double gsz[2] = {0, 0};
    if (!xin) xin = x;
    for (size_t i0 = 0; i0 < n; i0 += nb) {
        size_t m = n - i0 < nb ? n - i0 : nb;
        grad_block(S, q, x + i0 * d_in, xin + i0 * d_in, m, xd, xqd, R, dX, gsz);
    }
    double k = -2.0 / ((double)n * S->y2);
    *g_scale = k * gsz[0];
    *g_zero = k * gsz[1];
    free(buf);
    return AQ_OK;
}
