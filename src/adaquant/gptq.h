/* gptq.h — GPTQ rounding of a linear layer's weights on a fixed per-row grid
 * (Frantar et al. 2022, "GPTQ", Algorithm 1): the initialisation AdaQuant
 * starts from.
 *
 * Columns of W are quantized one at a time; the rounding error of each column
 * is spread over the not-yet-quantized columns through the Cholesky factor
 * of the inverse Hessian H = X^T X, so that ||X W^T - X Q^T||^2 stays small.
 * Updates are batched per block of columns (lazy batch updates), the block
 * remainder goes through one BLIS dgemm. */
#ifndef AQ_GPTQ_H
#define AQ_GPTQ_H

#include <stddef.h>
#include <stdint.h>

#include "../../common/status.h"

/* Quantize W [d_out, d_in] (row-major, float32) with GPTQ.
 *  H      [d_in * d_in] row-major, symmetric positive semi-definite, = X^T X
 *         over the calibration rows (no bias column). Read only; must be
 *         finite with a nonnegative diagonal and symmetric to 1e-6 relative
 *         (|H_ij - H_ji| <= 1e-6 sqrt(H_ii H_jj)); the scale of H is free. Columns with H_ii == 0
 * (dead inputs) get H_ii = 1 and weight 0 (code of 0.0, exact). scale, zero [d_out]: the fixed grid
 * of each row (quant.h convention: x_hat = scale * (u - zero)); scale finite > 0, zero finite. bits
 * 2..8.   damp >= 0: H += damp * mean(diag H) * I (e.g. 0.01). block  >= 1 columns per lazy batch
 * (e.g. 128; any value works). act_order 1: process columns by decreasing diag(H) (ties by index).
 *  codes  [d_out * d_in] out, Q [d_out * d_in] out = dequantized codes;
 *         either may be NULL (not both).
 * Each column value is rounded to float before quantizing it (the grid's
 * own convention, aq_quantize1). Internally everything is float64: the
 * inverse-Hessian factor and the running weights. (Measured: storing the
 * running weights in float32 changed 0 of 131,072 codes on a 128x1024 w3
 * layer, so float64 is not needed for accuracy; it is kept because the
 * d_in^2 factor dominates the scratch anyway and the lazy update is then one
 * dgemm without conversions.) If the Cholesky factorisation fails, the
 * damping is retried x10 up to 3 times (capped at 1 x mean diag); then
 * AQ_ERR_NUMERIC naming the size and damping. Other errors: AQ_ERR_ARG
 * (NULL, zero sizes, bad bits/damp/block/grid), AQ_ERR_NUMERIC (non-finite
 * H or W, negative diagonal), AQ_ERR_NOMEM. Allocates (d_in^2 + d_in*d_out
 * + block*d_out) float64 scratch (256 MB at 4096x4096), freed before
 * returning. Deterministic: no threading of its own; the lazy-update dgemm
 * runs single-threaded, LAPACK's inner BLAS calls follow BLIS_NUM_THREADS
 * (default 1). Cost O(d_in^3 + d_out*d_in^2). */
aq_status aq_gptq(const float *W, size_t d_out, size_t d_in, const double *H, const float *scale,
                  const float *zero, int bits, double damp, size_t block, int act_order,
                  uint8_t *codes, float *Q, aq_error *err);

/* INTERNAL, shared with the cooperative mpi/pipeline/coop_gptq.c so that both
 * write the same codes: one block of aq_gptq's sweep on the transposed running
 * weights Wt [d, n] (column-permuted order, n rows of W). Quantizes columns
 * [i1, i2) into ct [d, n] with the in-block error feedback, the block's scaled
 * errors into Err [i2 - i1, n], then updates columns i2.. (one single-threaded
 * BLIS dgemm). ub: rows i1.. of the upper inverse-Cholesky factor U [., d]. */
void aq_gptq_block(double *Wt, const double *ub, size_t d, size_t n, size_t i1, size_t i2,
                   const float *scale, const float *zero, int bits, uint8_t *ct, double *Err);

#endif
