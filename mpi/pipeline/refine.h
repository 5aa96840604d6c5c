/* refine.h — re-linearised bit allocation (docs/QUALITY.md "+R"): the
 * allocation program sums single-layer KLs, which underestimates how layers
 * interact at low bits. A refinement round re-measures every (layer, option)
 * loss as KL(FP || the current allocation with that one layer changed) on the
 * KL windows (src/model/sensitivity.h, resumed from the allocation's own
 * residuals), shifts each layer's row so its smallest entry is 0 (a per-layer
 * constant does not change the argmin) and solves again under the same budget
 * and pins. On stories260K at 3.0 bits two rounds took perplexity from 8.14 to
 * 7.97. Collective: the (layer, option) measurements are spread over the
 * ranks (task i on rank i mod P), summed to rank 0 with exact zeros in the
 * other slots, solved there; the result is independent of the rank count. */
#ifndef AQ_DIST_REFINE_H
#define AQ_DIST_REFINE_H

#include "pipeline.h"

/* Refine choice[n_layers] (option index per layer, in/out, the same on every
 * rank) for `rounds` rounds, reading every task's result file from c->work
 * (all must be valid: run after calibrate). rows: the loss rows on rank 0
 * (NULL elsewhere). Windows: the first kl_windows calibration windows (16 when
 * kl_windows is 0). Memory per rank: the model, every option's dequantised
 * weights (4 bytes x params x options) and the sensitivity cache. Only the
 * size-budget objective (a) is refined: AQ_ERR_ARG for --max-loss. Every rank
 * returns the same status. */
aq_status aq_pipe_refine(MPI_Comm comm, const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_budget *b,
                         const aq_loss_row *rows, int *choice, int rounds, aq_error *err);

#endif
