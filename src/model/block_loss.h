/* block_loss.h — an allocation loss that costs one block forward per
 * (layer, option) task instead of the network KL's (L - block) blocks plus the
 * classifier and a vocabulary-wide log-sum-exp per token (sensitivity.h):
 * the quantized layer inside its FP block, run on the FP inputs of that block
 * over the calibration windows, against the FP block's output.
 *
 *   block-mse     mean over predicted tokens of ||y_q - y||^2 (the residual
 *                 stream, no weighting; every block is compared in the same
 *                 units, the residual stream the final norm reads)
 *   block-fisher  mean over predicted tokens of sum_i F[t,i] (y_q - y)[t,i]^2 / 2,
 *                 F[t,i] = (dCE/dy[t,i])^2: the squared gradient of the data's
 *                 cross-entropy with respect to the block's output, captured ONCE
 *                 by one backward pass of the FP model (an empirical Fisher
 *                 diagonal per token, as BRECQ weights its block outputs); it
 *                 estimates how much the error at this depth moves the output.
 *
 * Memory: 4 * rows * dim * (n_layers + 1) bytes of FP residuals (the input of
 * every block and the last block's output), the same again for the Fisher
 * weights; no vocabulary-sized cache (the network KL keeps 16 * rows * vocab
 * bytes). The Fisher capture runs the engine's backward one window at a time.
 * Positions: as sensitivity.h (the last position of a window predicts nothing
 * and its output, which nothing downstream reads, is not counted).
 * Determinism: fixed batches and summation order. */
#ifndef AQ_BLOCK_LOSS_H
#define AQ_BLOCK_LOSS_H

#include <stddef.h>

#include "model.h"

typedef enum aq_block_loss_kind {
    AQ_BLOCK_LOSS_MSE = 1,
    AQ_BLOCK_LOSS_FISHER = 2
} aq_block_loss_kind;

typedef struct aq_block_sens aq_block_sens;

/* Cache the FP block inputs and outputs of m over n_seqs windows (packed,
 * lens[i] tokens each), and for AQ_BLOCK_LOSS_FISHER the Fisher weights.
 * max_batch_tokens: rows per forward (0 = 4096, at least the longest window).
 * m is BORROWED (no overrides installed; do not change its weights while *out
 * lives). Errors: AQ_ERR_ARG (no window predicts a token, bad kind, overrides
 * installed, bad tokens), AQ_ERR_NOMEM naming the cache size. */
aq_status aq_block_sens_new(aq_model *m, const int *tokens, const int *lens, int n_seqs,
                            size_t max_batch_tokens, aq_block_loss_kind kind, aq_block_sens **out,
                            aq_error *err);
void aq_block_sens_free(aq_block_sens *s);

/* The loss of ov installed on (block, which) alone (block < n_layers; the
 * classifier is not a task): installs it, runs that block on the cached
 * inputs, removes it (also on error). An override equal to the FP weight
 * gives exactly 0. Errors: AQ_ERR_ARG (bad layer, overrides already
 * installed), AQ_ERR_NUMERIC (non-finite output, naming the layer). */
aq_status aq_block_sens_layer(aq_block_sens *s, int block, aq_linear which, const aq_linear_override *ov,
                              double *loss, aq_error *err);

size_t aq_block_sens_bytes(const aq_block_sens *s);

/* The allocation loss `--loss auto` picks (docs/ALLOCATE.md "Sensitivity"):
 * the network KL while its cache (16 * rows * vocab bytes) stays within
 * AQ_SENS_KL_MAX_CACHE and the model within AQ_SENS_KL_MAX_PARAMS block
 * parameters, else block-fisher. Returns 0 for the network KL or an
 * aq_block_loss_kind. rows: tokens of the KL windows. */
#define AQ_SENS_KL_MAX_CACHE ((size_t)256 << 20)
#define AQ_SENS_KL_MAX_PARAMS ((size_t)50 * 1000 * 1000)
int aq_block_loss_auto(const aq_llama_config *c, size_t rows);
/* Weights of the quantized linears of every block (q, k, v, o, gate, up,
 * down): the size measure of the automatic choices (also --tune-mode auto). */
size_t aq_block_params(const aq_llama_config *c);

#endif
