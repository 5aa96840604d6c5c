/* sensitivity.h — network-level sensitivity of one quantized layer: the mean
 * KL(FP || model with only that layer quantized) per predicted token over a
 * fixed set of token windows, in float64 (the allocation loss of DESIGN.md
 * "The bit-allocation program": "the network-level KL divergence between FP
 * and the model with only layer l at option k").
 *
 * aq_sens_new runs the FP model over the windows ONCE and caches
 *   - the residual stream at the input of every block (aq_forward_resume),
 *   - the FP log-probabilities and probabilities of every position (float64),
 * so each layer query re-runs only the blocks from the layer's block onwards
 * and computes one log-sum-exp per position (V exps), no FP re-run.
 *
 * Memory (the limit: meant for models whose whole forward fits one rank):
 *   16 * rows * vocab  +  4 * rows * dim * n_layers  +  4 * batch * vocab  bytes,
 * rows = total tokens of the windows, batch = rows per forward (<= 4096).
 * stories260K, 16 windows of 256: 47 MB;
 * a 32k-vocab model with 16 x 2048 windows would need 17 GB (use fewer windows).
 *
 * Positions: in every window, position t < len-1 predicts token t+1 (the
 * last position predicts nothing and is not counted), as in eval.h.
 * Determinism: fixed batch split (independent of anything but the windows),
 * fixed summation order: the same inputs give bit-identical results. */
#ifndef AQ_SENSITIVITY_H
#define AQ_SENSITIVITY_H

#include <stddef.h>

#include "model.h"

typedef struct aq_sens aq_sens;

/* Cache the FP pass of m over n_seqs windows (packed: lens[i] tokens each,
 * tokens copied). max_batch_tokens: packed rows per forward (0 = min(4096,
 * 2^24 / vocab), at least the longest window). m is BORROWED: keep it alive,
 * and do not change its weights while *out exists. Errors: AQ_ERR_ARG (no
 * window predicts a token, token out of range, overrides installed in m),
 * AQ_ERR_NOMEM naming the cache size, AQ_ERR_NUMERIC (non-finite FP logits). */
aq_status aq_sens_new(aq_model *m, const int *tokens, const int *lens, int n_seqs,
                      size_t max_batch_tokens, aq_sens **out, aq_error *err);
void aq_sens_free(aq_sens *s);

/* Mean KL(FP || Q) per predicted token (nats, >= 0) with ov installed on
 * (block, which) and no other override: installs it, runs blocks >= block,
 * removes it (also on error). m must hold no override when called (AQ_ERR_ARG).
 * An override equal to the FP weight gives exactly 0. Errors: AQ_ERR_ARG (bad
 * layer, shape via aq_model_set_override), AQ_ERR_NUMERIC (NaN/Inf in ov or
 * in the quantized logits, naming the layer). */
aq_status aq_sens_layer_kl(aq_sens *s, int block, aq_linear which, const aq_linear_override *ov,
                           double *kl, aq_error *err);

/* The same for whatever overrides are installed in m now (several layers, e.g.
 * a whole allocation): the full forward with quantized = 1 (no resume). Used
 * to check the additive approximation sum_l KL_l against the joint KL. */
aq_status aq_sens_installed_kl(aq_sens *s, double *kl, aq_error *err);

/* Re-linearisation around an allocation: make the installed overrides the
 * "base" (the residual cache is rebuilt from a quantized forward; the FP
 * reference is kept). With no override installed the cache is FP again.
 * While a base is set, aq_sens_layer_kl refuses (AQ_ERR_ARG). */
aq_status aq_sens_set_base(aq_sens *s, aq_error *err);
/* KL(FP || base with (block, which) replaced by ov): installs ov, re-runs
 * blocks >= block from the base residuals, then installs `restore` (the base's
 * override of that layer; NULL = clear it). The model's overrides must be the
 * ones aq_sens_set_base saw. Errors as aq_sens_layer_kl. */
aq_status aq_sens_swap_kl(aq_sens *s, int block, aq_linear which, const aq_linear_override *ov,
                          const aq_linear_override *restore, double *kl, aq_error *err);

/* Predicted tokens and bytes held by the cache. */
size_t aq_sens_predicted(const aq_sens *s);
size_t aq_sens_bytes(const aq_sens *s);

#endif
