/* stage_eval.h — distributed FP-vs-quantized evaluation (stage_eval.c). */
#ifndef AQ_DIST_STAGE_EVAL_H
#define AQ_DIST_STAGE_EVAL_H

#include "../../src/text/textdata.h"
#include "../../src/model/model.h"
#include "pipeline.h"

typedef struct aq_pipe_eval_result {
    size_t n_docs, n_predicted;
    double ppl_fp, ppl_q, kl_mean, top1_agree;
} aq_pipe_eval_result;

/* Collective: m has the quantized overrides installed on every rank. The
 * result is filled on rank 0 only; independent of the number of ranks. */
aq_status aq_pipe_eval(MPI_Comm comm, aq_model *m, const aq_seqs *seqs, aq_pipe_eval_result *res, aq_error *err);

#endif
