/* gptq.c — GPTQ (Frantar et al. 2022, Algorithm 1) on a fixed per-row grid.
 *
 * Layout: the running weights are kept transposed, Wt [d_in, d_out] float64,
 * so that "column j of W" is a contiguous row of Wt and every update is an
 * axpy over d_out contiguous values. The inverse-Hessian factor U (upper,
 * U^T U = H^-1) is stored row-major in Hd, U(i, k) = Hd[i * d + k], k >= i,
 * computed by one Cholesky and one triangular inverse (see inverse_factor).
 * Invariant between blocks: Wt rows >= i1 hold W updated by the errors of all
 * columns < i1. */
#include "gptq.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <blis.h>

#include "../quant/quant.h"

/* Reference LAPACK (gfortran ABI: hidden character lengths at the end). */
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);
extern void dtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *lda,
                    int *info, size_t uplo_len, size_t diag_len);

enum { GPTQ_RETRIES = 3 };

typedef struct {
    double diag;
    size_t idx;
} diag_idx;

/* Decreasing diagonal, ties by increasing index: a total order, so the
 * permutation does not depend on qsort's algorithm. */
static int cmp_diag_desc(const void *a, const void *b)
{
    const diag_idx *x = a, *y = b;
    if (x->diag != y->diag) return x->diag > y->diag ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

static aq_status check_args(const float *W, size_t d_out, size_t d_in, const double *H,
                            const float *scale, const float *zero, int bits, double damp,
                            size_t block, const uint8_t *codes, const float *Q, aq_error *err)
{
    if (!W || !H || !scale || !zero || (!codes && !Q))
        return aq_fail(err, AQ_ERR_ARG, "gptq: NULL argument (W, H, scale, zero, codes/Q)");
    if (d_out == 0 || d_in == 0 || d_in > INT_MAX || d_out > SIZE_MAX / sizeof(double) / d_in ||
        d_in > SIZE_MAX / sizeof(double) / d_in)
        return aq_fail(err, AQ_ERR_ARG, "gptq: invalid layer shape [%zu, %zu]", d_out, d_in);
    if (bits < 2 || bits > 8)
        return aq_fail(err, AQ_ERR_ARG, "gptq: bit width %d out of range (2..8)", bits);
    if (!(damp >= 0.0) || !isfinite(damp))
        return aq_fail(err, AQ_ERR_ARG, "gptq: damping %g must be finite and >= 0", damp);
    if (block == 0) return aq_fail(err, AQ_ERR_ARG, "gptq: block size must be >= 1");
    for (size_t r = 0; r < d_out; r++)
        if (!(scale[r] > 0.0f) || !isfinite(scale[r]) || !isfinite(zero[r]))
            return aq_fail(err, AQ_ERR_ARG, "gptq: row %zu has an invalid grid (scale %g, zero %g)",
                           r, (double)scale[r], (double)zero[r]);
    for (size_t i = 0; i < d_out * d_in; i++)
        if (!isfinite(W[i]))
            return aq_fail(err, AQ_ERR_NUMERIC, "gptq: weight [%zu, %zu] is not finite", i / d_in,
                           i % d_in);
    for (size_t i = 0; i < d_in * d_in; i++)
        if (!isfinite(H[i]))
            return aq_fail(err, AQ_ERR_NUMERIC,
                           "gptq: Hessian entry [%zu, %zu] of %zux%zu is not finite", i / d_in,
                           i % d_in, d_in, d_in);
    for (size_t i = 0; i < d_in; i++)
        if (H[i * d_in + i] < 0.0)
            return aq_fail(err, AQ_ERR_NUMERIC,
                           "gptq: Hessian diagonal [%zu] = %g is negative (not X^T X)", i,
                           H[i * d_in + i]);
    /* Symmetry up to rounding (a Gram matrix from gemm is not bitwise
     * symmetric); catches a wrong stride or layout, e.g. a (d_in+1)^2 matrix. */
    for (size_t i = 0; i < d_in; i++)
        for (size_t j = i + 1; j < d_in; j++) {
            double a = H[i * d_in + j], b = H[j * d_in + i];
            double tol = 1e-6 * sqrt(H[i * d_in + i] * H[j * d_in + j]);
            if (fabs(a - b) > tol)
                return aq_fail(err, AQ_ERR_NUMERIC,
                               "gptq: Hessian (%zux%zu) is not symmetric: [%zu, %zu] = %g but "
                               "[%zu, %zu] = %g",
                               d_in, d_in, i, j, a, j, i, b);
        }
    return AQ_OK;
}

/* Hd = U, the upper Cholesky factor of P^-1 (U^T U = P^-1), where P is H
 * permuted, dead inputs fixed and damp_frac * mean(diag) added. Returns the
 * LAPACK info of the failing step (0 on success).
 * Instead of dpotrf + dpotri + dpotrf (4/3 d^3 flops) this factors the
 * reversed matrix: with J the exchange matrix, J P J = V^T V (dpotrf 'U')
 * gives P = R R^T with R = J V^T J upper, so U = R^-1 = J V^-T J; dtrtri
 * forms V^-1 in place (2/3 d^3 flops in all). Read row-major, V^-1 stored
 * column-major reversed element-wise is exactly U row-major:
 * U(i, k) = V^-1(d-1-k, d-1-i) = buf[(d-1-k) + (d-1-i) d] = buf[d^2-1 - (i d + k)]. */
static int inverse_factor(const double *H, size_t d, const size_t *perm, double damp_frac,
                          double *Hd)
{
    double mean = 0.0;
    for (size_t a = 0; a < d; a++) { /* Hd = J P J (symmetric: any storage order) */
        const double *hrow = H + perm[d - 1 - a] * d;
        for (size_t b = 0; b < d; b++)
            Hd[a * d + b] = hrow[perm[d - 1 - b]];
        if (Hd[a * d + a] == 0.0) Hd[a * d + a] = 1.0; /* dead input */
        mean += Hd[a * d + a];
    }
    mean /= (double)d;
    for (size_t a = 0; a < d; a++)
        Hd[a * d + a] += damp_frac * mean;
    int n = (int)d, info = 0;
    dpotrf_("U", &n, Hd, &n, &info, 1);
    if (info == 0) dtrtri_("U", "N", &n, Hd, &n, &info, 1, 1);
    if (info != 0) return info;
    for (size_t t = 0, u = d * d - 1; t < u; t++, u--) {
        double tmp = Hd[t];
        Hd[t] = Hd[u];
        Hd[u] = tmp;
    }
    return 0;
}

/* Quantize the columns [i1, i2) of Wt [d, n] with the in-block updates
 * (errors of the block to Err [i2 - i1, n]), then the lazy update of the
 * rest: Wt[i2:, :] -= U[i1:i2, i2:]^T Err (one single-threaded BLIS dgemm).
 * ub = row i1 of U, rows [d] each: U(j, k) = ub[(j - i1) * d + k], k >= j. */
void aq_gptq_block(double *Wt, const double *ub, size_t d, size_t n, size_t i1, size_t i2,
                   const float *scale, const float *zero, int bits, uint8_t *ct, double *Err)
{
    for (size_t j = i1; j < i2; j++) {
        double *w = Wt + j * n, *e = Err + (j - i1) * n;
        const double *urow = ub + (j - i1) * d;
        double ujj = urow[j];
        for (size_t r = 0; r < n; r++) {
            uint8_t u = aq_quantize1((float)w[r], scale[r], zero[r], bits);
            ct[j * n + r] = u;
            e[r] = (w[r] - (double)aq_dequantize1(u, scale[r], zero[r])) / ujj;
        }
        for (size_t k = j + 1; k < i2; k++) {
            double *wk = Wt + k * n, ujk = urow[k];
            for (size_t r = 0; r < n; r++)
                wk[r] -= e[r] * ujk;
        }
    }
    if (i2 >= d) return;
    double minus1 = -1.0, one = 1.0;
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)(d - i2), (dim_t)n, (dim_t)(i2 - i1),
                 &minus1, (double *)(ub + i2), 1, (inc_t)d, Err, (inc_t)n, 1, &one, Wt + i2 * n,
                 (inc_t)n, 1, NULL, &rntm);
}

/* inverse_factor with the caller's damping, then x10 (at least 1e-3, at most
 * 1 x mean diag) up to GPTQ_RETRIES times: a rank-deficient H (fewer
 * calibration rows than inputs) with damp = 0 still factors. */
static aq_status factor_with_retries(const double *H, size_t d, const size_t *perm, double damp,
                                     double *Hd, aq_error *err)
{
    double frac = damp;
    int info = inverse_factor(H, d, perm, frac, Hd);
    for (int t = 0; info != 0 && t < GPTQ_RETRIES && frac < 1.0; t++) {
        frac = fmin(fmax(frac, 1e-4) * 10.0, 1.0);
        info = inverse_factor(H, d, perm, frac, Hd);
    }
    if (info == 0) return AQ_OK;
    return aq_fail(err, AQ_ERR_NUMERIC,
                   "gptq: Cholesky factorisation of the %zux%zu Hessian failed even with damping "
                   "%g x mean(diag H); is H = X^T X positive semi-definite?",
                   d, d, frac);
}

/* Codes ct [d (permuted order), d_out] -> codes / Q [d_out, d] in input order. */
static void scatter_outputs(const uint8_t *ct, const size_t *perm, size_t d, size_t d_out,
                            const float *scale, const float *zero, uint8_t *codes, float *Q)
{
    for (size_t a = 0; a < d; a++) {
        size_t c = perm[a];
        for (size_t r = 0; r < d_out; r++) {
            uint8_t u = ct[a * d_out + r];
            if (codes) codes[r * d + c] = u;
            if (Q) Q[r * d + c] = aq_dequantize1(u, scale[r], zero[r]);
        }
    }
}

aq_status aq_gptq(const float *W, size_t d_out, size_t d_in, const double *H, const float *scale,
                  const float *zero, int bits, double damp, size_t block, int act_order,
                  uint8_t *codes, float *Q, aq_error *err)
{
    AQ_TRY(check_args(W, d_out, d_in, H, scale, zero, bits, damp, block, codes, Q, err));
    const size_t d = d_in;
    if (block > d) block = d;
    /* calloc: silences a gcc maybe-uninitialized false positive */
    size_t *perm = calloc(d, sizeof *perm);
    diag_idx *order = malloc(d * sizeof *order);
    double *Hd = malloc(d * d * sizeof *Hd), *Wt = malloc(d * d_out * sizeof *Wt);
    double *Err = malloc(block * d_out * sizeof *Err);
    uint8_t *ct = malloc(d * d_out);
    aq_status st = AQ_OK;
    if (!perm || !order || !Hd || !Wt || !Err || !ct) {
        st = aq_fail_nomem(err, "GPTQ scratch", (d * d + d * d_out + block * d_out) * 8 + d * 24);
        goto done;
    }
    for (size_t i = 0; i < d; i++) {
        double hii = H[i * d + i];
        order[i] = (diag_idx){hii == 0.0 ? 1.0 : hii, i};
    }
    if (act_order) qsort(order, d, sizeof *order, cmp_diag_desc);
    for (size_t a = 0; a < d; a++)
        perm[a] = order[a].idx;

    AQ_TRY_GOTO(st, factor_with_retries(H, d, perm, damp, Hd, err), done);
    /* Wt row a = column perm[a] of W; dead inputs start at 0. */
    for (size_t a = 0; a < d; a++) {
        size_t c = perm[a];
        int dead = H[c * d + c] == 0.0;
        for (size_t r = 0; r < d_out; r++)
            Wt[a * d_out + r] = dead ? 0.0 : W[r * d + c];
    }
    for (size_t i1 = 0; i1 < d; i1 += block) {
        size_t i2 = i1 + block < d ? i1 + block : d;
        aq_gptq_block(Wt, Hd + i1 * d, d, d_out, i1, i2, scale, zero, bits, ct, Err);
    }
    scatter_outputs(ct, perm, d, d_out, scale, zero, codes, Q);
done:
    free(perm);
    free(order);
    free(Hd);
    free(Wt);
    free(Err);
    free(ct);
    return st;
}
