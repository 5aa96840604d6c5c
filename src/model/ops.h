/* ops.h — the engine's numeric kernels (ops.c): matrix products, RMSNorm,
 * RoPE, causal attention, the q/k norm and one linear with its override.
 * Above model_internal.h (the struct and model.c's accessors), below
 * forward.c, decode.c and grad.c, which call them. Not a public interface. */
#ifndef AQ_MODEL_OPS_H
#define AQ_MODEL_OPS_H

#include "model_internal.h"

/* y[n, d_out] = x[n, d_in] W^T (single-threaded BLIS sgemm). */
void aq_sgemm_xwt(const float *x, const float *w, float *y, size_t n, int d_in, int d_out);
/* y[d_out] = W[d_out, d_in] x (one token: decoding). */
void aq_sgemv_wx(const float *w, const float *x, float *y, int d_in, int d_out);
/* row[0..n) = softmax(row[0..n)), row[n..len) = 0 (one causal attention row). */
void aq_softmax_prefix(float *row, int n, int len);
/* out = rmsnorm(x) * g over n rows of d. */
void aq_rmsnorm_rows(const float *x, const float *g, float *out, size_t n, int d, float eps);
/* HF rotate-half RoPE on n rows of n_heads heads, row r at position pos[r]. */
void aq_rope_rows(const aq_model *m, float *x, size_t n, int n_heads, const int *pos);
/* Its inverse (the transpose of the rotation): the backward pass. */
void aq_rope_rows_inv(const aq_model *m, float *x, size_t n, int n_heads, const int *pos);
/* Causal grouped-query attention of one sequence of L rows: q [L, qd] (row
 * stride qd), k, v [L, kvd] (stride kvd) -> out [L, qd]; scores [L, L] scratch. */
void aq_attend_seq(const aq_model *m, const float *q, const float *k, const float *v, float *out,
                   float *scores, int L);
/* The Qwen3 q/k norm, in place on n rows of n_heads heads of q (which 0) or
 * k (which 1); nothing when the model has none. */
void aq_model_qk_norm(const aq_model *m, int block, int which, float *x, size_t n);
/* Apply linear (block, which) to x [n, d_in] -> y [n, d_out] (plus the
 * model's bias if it has one), with its override (weight and bias) when quantized (x is not modified: fake-quant goes to m->s.xq,
 * which must hold n * d_in floats). */
void aq_model_apply_linear(aq_model *m, int block, aq_linear which, const float *x, float *y,
                           size_t n, int quantized, float *xq_buf);

#endif
