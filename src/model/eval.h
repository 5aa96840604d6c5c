/* eval.h — language-model evaluation: perplexity of the FP model and, with
 * quantized overrides installed, of the quantized model, the mean per-token
 * KL(FP || Q) and the top-1 agreement, over packed evaluation sequences
 * (src/text/textdata.h: BOS is context, every later position is predicted). */
#ifndef AQ_EVAL_H
#define AQ_EVAL_H

#include "../text/textdata.h"
#include "model.h"

typedef struct aq_eval_result {
    size_t n_docs;
    size_t n_predicted; /* predicted tokens */
    double nll_fp;      /* total negative log-likelihood (nats) */
    double ppl_fp;      /* exp(nll_fp / n_predicted) */
    int compared;       /* 1 if the quantized model was run too */
    double nll_q, ppl_q;
    double kl_mean;    /* mean over predicted positions of KL(p_fp || p_q) */
    double top1_agree; /* fraction of predicted positions with equal argmax */
} aq_eval_result;

/* Progress callback: called after every batch with docs done / total. */
typedef void (*aq_eval_progress_fn)(void *ctx, size_t done, size_t total);

typedef struct aq_eval_opts {
    int compare_quantized;   /* also run with the overrides (needs >= 1) */
    size_t max_batch_tokens; /* packed rows per forward; 0 = min(4096, 2^24 / vocab) */
    aq_eval_progress_fn progress;
    void *progress_ctx;
} aq_eval_opts;

/* Evaluate m on seqs. Errors: AQ_ERR_ARG (compare without overrides, a token
 * out of range), AQ_ERR_NOMEM, AQ_ERR_NUMERIC (non-finite logits). */
aq_status aq_eval_run(aq_model *m, const aq_seqs *seqs, const aq_eval_opts *o, aq_eval_result *out,
                      aq_error *err);

#endif
