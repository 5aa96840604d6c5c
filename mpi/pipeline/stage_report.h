/* stage_report.h — the description files of OUTDIR (docs/FORMAT.md):
 * quantization.json (deterministic), report.json, report.md, pareto.svg,
 * bits.svg, and the per-layer summary table printed at the end of a run.
 * out_error[l]: the chosen result's normalised output error (NAN = unknown).
 * tn: what global tuning did (tn->steps == 0: no tuning). */
#ifndef AQ_DIST_STAGE_REPORT_H
#define AQ_DIST_STAGE_REPORT_H

#include "pipeline.h"
#include "stage_eval.h"
#include "stage_tune.h"

/* Write the files into dir (rank 0). ev: ppl < 0 = not evaluated. Also prints
 * the summary table to stdout. */
aq_status aq_pipe_report_write(const char *dir, const aq_pipe_cfg *c, const aq_pipe_plan *p,
                               const aq_pipe_budget *b, const aq_loss_row *rows, const int *choice,
                               const double *out_error, const aq_pipe_eval_result *ev,
                               const aq_pipe_tune_opts *tu, const aq_pipe_tuned *tn, const aq_pipe_timing *t,
                               aq_error *err);

#endif
