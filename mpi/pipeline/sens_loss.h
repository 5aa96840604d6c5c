/* sens_loss.h — which allocation loss a run uses (--loss, docs/ALLOCATE.md
 * "Sensitivity"): `auto` resolved from the model's size before anything is
 * fingerprinted, and its name and reason for the report. */
#ifndef AQ_DIST_SENS_LOSS_H
#define AQ_DIST_SENS_LOSS_H

#include <stddef.h>

#include "pipeline.h"

/* c->sens_loss -1 (auto) becomes 0 (network KL) or a block loss by
 * aq_block_loss_auto on c->model's config; other values are kept. Rank 0
 * (reads the model's config). AQ_ERR_* of opening the model. */
aq_status aq_pipe_loss_resolve(aq_pipe_cfg *c, aq_error *err);
/* "kl", "layer", "block-mse" or "block-fisher". */
const char *aq_pipe_loss_name(const aq_pipe_cfg *c);
/* Why this loss: the default for the model's size (with the figures that
 * decided it) or chosen with --loss. Reads the model's config; on an error
 * the reason says so. */
void aq_pipe_loss_why(const aq_pipe_cfg *c, char *buf, size_t n);

#endif
