/* stage_calibrate.h — the result file of one task (stage_calibrate.c), shared
 * with the sequential pass. */
#ifndef AQ_DIST_STAGE_CALIBRATE_H
#define AQ_DIST_STAGE_CALIBRATE_H

#include "../../src/adaquant/adaquant.h"
#include "pipeline.h"

/* Write task's result file: r's tensors (codes, w_scale, w_zero, bias,
 * a_scale, a_zero, out_error = r->loss_final) and its loss row, whose loss is
 * kl when use_kl, else r->loss_final. */
aq_status aq_pipe_write_task_result(const char *path, const aq_dist_task *task, const aq_layer_result *r, double kl,
                                    int use_kl, aq_error *err);

#endif
