/* stage_tensor.h — the tasks of the tensor menu (the token embedding and an
 * untied classifier at f32 / f16 / wK, docs/PIPELINE.md "Embedding and
 * classifier"; f32 / f16 / wK / a ggml block type): quantize, measure the allocation loss, write the result file;
 * read a chosen result back and install it in a model. */
#ifndef AQ_DIST_STAGE_TENSOR_H
#define AQ_DIST_STAGE_TENSOR_H

#include <stdint.h>

#include "../../src/model/model.h"
#include "../../src/model/sensitivity.h"
#include "pipeline.h"

/* One tensor at one option. w is the matrix the model runs [rows, cols]
 * (dequantised / rounded); codes, scale, zero only for wK. Owns its arrays. */
typedef struct aq_pipe_qtensor {
    int bits; /* 32, 16, K, or 0 for a ggml block type (codes = its rows' bytes) */
    size_t rows, cols, row_bytes; /* row_bytes: of a block type's rows */
    float *w;
    uint8_t *codes;
    float *scale, *zero;
} aq_pipe_qtensor;
void aq_pipe_qtensor_free(aq_pipe_qtensor *q);

/* Run task (a tensor-menu task of p): quantize the source tensor at the
 * task's option; its loss is the mean KL(FP || model with only this tensor
 * changed) per predicted token on the KL windows of sens (sens NULL = --loss
 * layer: the relative squared error ||W - W^||^2 / ||W||^2); f32 costs 0.
 * Writes the result file at path. m must hold no override (none is left). */
aq_status aq_pipe_tensor_task(const aq_pipe_cfg *c, const aq_pipe_plan *p, aq_model *m, aq_sens *sens,
                              const aq_dist_task *task, const char *path, aq_error *err);

/* Read the chosen result of extra e at option index k (validated against the
 * task's fingerprint) into *q. */
aq_status aq_pipe_qtensor_read(const aq_pipe_cfg *c, const aq_pipe_plan *p, int e, int k, aq_pipe_qtensor *q,
                               aq_error *err);

/* Install q.w as extra e of m in quantized mode: the embedding lookup (and the
 * classifier when tied) or the untied classifier (no bias). */
aq_status aq_pipe_qtensor_install(aq_model *m, const aq_pipe_plan *p, int e, const aq_pipe_qtensor *q,
                                  aq_error *err);
/* Remove what aq_pipe_qtensor_install installed. */
void aq_pipe_qtensor_uninstall(aq_model *m, const aq_pipe_plan *p, int e);

#endif
