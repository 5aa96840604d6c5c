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
 * chunks of AQ_TUNE_CHUNK documents spread over the ranks; each chunk's
 * gradient is a float64 vector, summed in chunk order on rank 0
 * (aq_dist_reduce_chunks) and broadcast, and every rank applies the same Adam
 * step. The result is the same bits for any number of ranks. */
#ifndef AQ_DIST_STAGE_TUNE_H
#define AQ_DIST_STAGE_TUNE_H

#include "../../src/model/model.h"
#include "pipeline.h"

/* The tuned norm gains (owned; aq_pipe_tuned_free). NULL arrays = not tuned. */
typedef struct aq_pipe_tuned {
    float *attn_norm, *ffn_norm; /* [n_layers * dim] */
    float *final_norm;           /* [dim] */
    int dim, n_layers;
    int steps, docs;             /* what ran (docs = pool size) */
    size_t tokens;               /* tokens in the pool */
    int max_len;                 /* tokens per document used (--tune-len, at most the model's context) */
    double kl_first, kl_last;    /* mean KL per token of the first and last step's batch */
} aq_pipe_tuned;

void aq_pipe_tuned_free(aq_pipe_tuned *t);

/* Collective. m: the FP model (same on every rank); v[n_layers]: the chosen
 * layers (codes, w_scale, w_zero, bias, activation parameters), updated in
 * place with the tuned w_scale / w_zero / bias. On return m has the tuned
 * layers and norms installed as quantized-mode overrides (ready for the
 * evaluation) and *out holds the norms. tu->steps == 0: installs v as it is
 * and leaves *out empty. Errors: AQ_ERR_ARG if there is no calibration
 * document, plus the engine's. */
aq_status aq_pipe_tune(MPI_Comm comm, const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_tune_opts *tu,
                       aq_model *m, aq_layer_result *v, aq_pipe_tuned *out, aq_error *err);

/* The layers of v as quantized-mode overrides of m (dequantised weights,
 * biases, activation quantizers). */
aq_status aq_pipe_install_layers(aq_model *m, const aq_pipe_plan *p, const aq_layer_result *v, aq_error *err);

#endif
