/* stage_calibrate.h — the result file of one task (stage_calibrate.c), shared
 * with the sequential pass. */
#ifndef AQ_DIST_STAGE_CALIBRATE_H
#define AQ_DIST_STAGE_CALIBRATE_H

#include "../../src/adaquant/adaquant.h"
#include "../../src/model/model.h"
#include "pipeline.h"
#include "stage_stats.h"

/* Write task's result file: r's tensors (codes, w_scale, w_zero, bias,
 * a_scale, a_zero, out_error = r->loss_final) and its loss row, whose loss is
 * kl when use_kl, else r->loss_final. */
aq_status aq_pipe_write_task_result(const char *path, const aq_dist_task *task, const aq_layer_result *r, double kl,
                                    int use_kl, aq_error *err);

/* The AdaQuant problem of task's layer: its statistics read from
 * c->work/stats into *s (validated against stats_fp; free with aq_stats_free
 * also on error), the layer's FP weight from m, and the task's options.
 * cross: the statistics must hold the sequential pass's cross terms (the
 * problem then targets FP outputs from quantized inputs). pr borrows from s
 * and m. AQ_ERR_FORMAT / AQ_ERR_SHAPE naming the layer for mismatched files. */
aq_status aq_pipe_task_problem(const aq_pipe_cfg *c, const aq_pipe_plan *p, aq_model *m, const aq_fingerprint *stats_fp,
                               const aq_dist_task *task, int cross, aq_stats *s, aq_layer_problem *pr,
                               aq_layer_opts *o, aq_error *err);

#endif
