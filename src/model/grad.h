/* grad.h — the exact gradient of KL(FP model || quantized model) for global
 * tuning: one FP forward (the targets), one quantized forward keeping every
 * block's activations, and the backward pass through the whole network to the
 * continuous parameters of the quantized forward (override weights and biases,
 * RMSNorm gains). The integer codes are the caller's business: it maps dW to
 * w_scale / w_zero itself.
 *
 * Memory (kept in the model object, grown on demand, counted by
 * aq_model_scratch_bytes), in floats per row of the packed batch:
 *   n_layers * (4 dim + 2 qd + 2 kvd + 3 hidden)   activations of every block
 *   + 2 dim + 2 vocab                               final norm input/output, logits
 *   + 2 dim + 2 max(dim, qd, hidden) + 3 hidden + 2 qd + 2 kvd   backward buffers
 * plus 2 L^2 floats for the longest sequence L (attention probabilities and their
 * gradient, recomputed per head) and 2 vocab doubles, on top of the forward's
 * own scratch (aq_model_forward runs too, for the FP targets).
 * (qd = n_heads * head_size, kvd = n_kv_heads * head_size; a model with
 * Qwen3's q/k norm keeps qd + kvd more per block row and per backward row.)
 * Sequences longer than a sliding window are refused as by the forward.
 * stories260K with
 * 8 x 256 rows: 32.6 KB per row in all (forward + kl_grad caches).
 *
 * Cost: one FP forward + one quantized forward + a backward of ~2.3 forwards
 * (stories260K, 8 x 256 tokens: kl_grad ~4.3x aq_model_forward). */
#ifndef AQ_GRAD_H
#define AQ_GRAD_H

#include "model.h"

/* Where gradients go. Every pointer may be NULL (= not wanted); gradients are
 * ADDED into the arrays (zero them first). */
typedef struct aq_grad_buf {
    float **d_weight; /* [n_layers * AQ_LIN_COUNT] (index block * AQ_LIN_COUNT + which);
                         entry NULL = not wanted; else [d_out * d_in], += dKL/dW of the
                         weight the quantized forward used (the override's, else FP) */
    float **d_bias;   /* same indexing, [d_out]: += dKL/d(bias) of the override's bias
                         (for a linear whose override has no bias, or no override, this
                         is the gradient of a bias added at 0: the column sums of dY) */
    float *d_attn_norm, *d_ffn_norm; /* NULL or [n_layers * dim]: += dKL/dg of the gains
                                        the quantized forward used */
    float *d_final_norm;             /* NULL or [dim] */
} aq_grad_buf;

/* FP forward (targets p = softmax(FP logits)), quantized forward with activation
 * caches, backward of KL_sum = sum over ALL rows r of the packed batch of
 * sum_v p[r,v] (log p[r,v] - log q[r,v]), q = softmax(quantized logits).
 * *kl_sum (may be NULL) receives KL_sum (computed in double). The gradients are
 * of KL_sum and are ADDED into g (g NULL: KL only). Activation fake-quant is
 * straight-through: dx passes where the clamp did not saturate, 0 where it did
 * (a_scale/a_zero are not differentiated). The classifier is in the graph (its
 * override used if any) but gets no gradient. Batches as aq_model_forward, with
 * its errors (AQ_ERR_ARG for bad tokens/lengths), AQ_ERR_NOMEM naming the
 * cache. Deterministic and single-threaded. */
aq_status aq_model_kl_grad(aq_model *m, const int *tokens, const int *lens, int n_seqs,
                           double *kl_sum, aq_grad_buf *g, aq_error *err);

/* aq_model_kl_grad with the FP logits supplied: fp_logits [sum(lens), vocab]
 * as aq_model_forward (FP) returns them for this batch, e.g. cached across the
 * steps of a tuning loop, where the targets never change. Skips the FP forward
 * (~1/4 of the time); same results, bit for bit. fp_logits NULL = kl_grad.
 * AQ_ERR_NUMERIC for a non-finite logit (naming row and entry). */
aq_status aq_model_kl_grad_fp(aq_model *m, const int *tokens, const int *lens, int n_seqs,
                              const float *fp_logits, double *kl_sum, aq_grad_buf *g,
                              aq_error *err);

/* aq_model_kl_grad_fp's backward for the residual stream only (the Fisher
 * weights of block_loss.h): d_resid [n_layers, rows, dim] receives (=, not +=)
 * dKL_sum/d(output residual of block l) at l * rows * dim; no parameter
 * gradient. Same batches, targets and errors as aq_model_kl_grad_fp. */
aq_status aq_model_kl_grad_resid(aq_model *m, const int *tokens, const int *lens, int n_seqs,
                                 const float *fp_logits, double *kl_sum, float *d_resid, aq_error *err);

/* Block reconstruction (block-wise tuning, docs/TUNE.md): run block `block`
 * as the quantized forward does (its overrides and quantized-mode norm gains)
 * on x_in [rows, dim] (the packed sequences lens; rows = sum(lens)) and
 * compare its output with y [rows, dim]: *err_sum = sum over rows and
 * entries of (y_q - y)^2 (in double), and the gradient of that sum is ADDED
 * into g (the block's entries: d_weight / d_bias of its linears, d_attn_norm /
 * d_ffn_norm at block * dim; g NULL: the error only). ws holds
 * aq_model_block_grad_floats(m, rows, longest sequence) floats (caller-owned:
 * the memory is one block's activations, nothing network-wide). AQ_ERR_ARG
 * for a bad block or lengths. Deterministic and single-threaded. */
size_t aq_model_block_grad_floats(const aq_model *m, size_t rows, size_t seq);
aq_status aq_model_block_grad(aq_model *m, int block, const float *x_in, const float *y, const int *lens,
                              int n_seqs, float *ws, double *err_sum, aq_grad_buf *g, aq_error *err);

#endif
