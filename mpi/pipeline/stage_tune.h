/* stage_tune.h — global tuning, the step between assembly and writing
 * (DESIGN.md step 3, "global statistics tuning", for transformers).
 *
 * With every layer's integer codes fixed at the allocated option, the
 * continuous parameters of the whole quantized model are tuned end to end to
 * minimise the mean per-token KL(FP model ‖ quantized model) on calibration
 * documents: every quantized linear's per-row scale (as s0·exp(θ)), zero point
 * (asymmetric options only) and bias, and the RMSNorm gains. Adam, full
 * gradients from the engine's backward pass (src/model/grad.h).
 *
 * Why: AdaQuant fits each layer to its FP output in isolation, so the small
 * errors of 35 layers add up; tuning the ~3·d_out parameters per layer
 * against the network output removes a large part of that (docs/TUNE.md has
 * the measurements). The tuned values are stored where the untuned ones were
 * (w_scale, w_zero, bias, the norm tensors): the file format is unchanged.
 *
 * Data: the calibration documents, each BOS + text like the evaluation data
 * (windows cut from the concatenated stream generalised worse: they start
 * mid-document and attend across document boundaries, docs/TUNE.md).
 * Distribution: step k uses `batch` documents of the pool, cut into FIXED
 * chunks of AQ_TUNE_CHUNK documents spread over the ranks by length (longest
 * first to the least loaded rank, so up to `batch` ranks work); each chunk's
 * gradient is a float64 vector, summed in chunk order on rank 0
 * (aq_dist_reduce_chunks) and broadcast, and every rank applies the same Adam
 * step. The result is the same bits for any number of ranks. */
#ifndef AQ_DIST_STAGE_TUNE_H
#define AQ_DIST_STAGE_TUNE_H

#include "../../src/model/model.h"
#include "../../src/text/textdata.h"
#include "pipeline.h"

/* What a tuning run did (for quantization.json and the report). The tuned
 * norm gains are not copied out: they are m's quantized-mode norm overrides
 * (aq_model_norm(m, block, which, 1)). */
typedef struct aq_pipe_tuned {
    int steps, docs; /* what ran (docs = pool size) */
    size_t tokens;   /* tokens in the pool */
    int max_len;     /* tokens per document used */
    double kl_first, kl_last; /* mean KL per token of the first and last step's batch (block mode: the
                                 summed block reconstruction errors) */
    int mode;                 /* the mode that ran: AQ_TUNE_GLOBAL or AQ_TUNE_BLOCK */
} aq_pipe_tuned;

/* The tuning data: the first tu->docs calibration documents of d (0 = all),
 * BOS + text truncated to tu->max_len, at most m's context. */
aq_status aq_pipe_tune_pool(const aq_pipe_tune_opts *tu, const aq_tokenizer *tok, const aq_docs *d,
                            const aq_model *m, aq_seqs *pool, aq_error *err);

/* Collective. m: the FP model (same on every rank); v[n_layers]: the chosen
 * layers (codes, w_scale, w_zero, bias, activation parameters), updated in
 * place with the tuned w_scale / w_zero / bias; pool: aq_pipe_tune_pool's
 * documents (same on every rank). On return m has the tuned layers and norms
 * installed as quantized-mode overrides (ready for the evaluation and for
 * writing). tu->steps == 0: does nothing (stage_write.c installs v lazily). Errors: the
 * engine's, and AQ_ERR_NUMERIC if the run diverges. */
/* Block-wise tuning (stage_tune_block.c): the same contract as aq_pipe_tune
 * with tu->mode AQ_TUNE_BLOCK; out->kl_first / kl_last are the block
 * reconstruction errors (mean squared error per token of the first / last
 * step's batch, summed over the blocks). The tuning tokens: the first pool
 * documents whose residual planes (input and target, 8 * dim bytes per token)
 * fit AQ_TUNE_BLOCK_BYTES. */
#define AQ_TUNE_BLOCK_BYTES ((size_t)256 << 20)
aq_status aq_pipe_tune_blockwise(MPI_Comm comm, const aq_pipe_plan *p, const aq_pipe_tune_opts *tu,
                                 const aq_seqs *pool, aq_model *m, aq_layer_result *v, aq_pipe_tuned *out,
                                 aq_error *err);
/* The mode tu->mode resolves to for m: AQ_TUNE_GLOBAL while the model has at
 * most AQ_TUNE_GLOBAL_MAX_PARAMS block parameters (its backward caches every
 * block's activations and each step runs the whole network three times),
 * else AQ_TUNE_BLOCK. */
#define AQ_TUNE_GLOBAL_MAX_PARAMS ((size_t)50 * 1000 * 1000)
int aq_pipe_tune_mode(const aq_pipe_tune_opts *tu, const aq_model *m);
const char *aq_pipe_tune_mode_name(int mode);

aq_status aq_pipe_tune(MPI_Comm comm, const aq_pipe_plan *p, const aq_pipe_tune_opts *tu, const aq_seqs *pool,
                       aq_model *m, aq_layer_result *v, aq_pipe_tuned *out, aq_error *err);

#endif
