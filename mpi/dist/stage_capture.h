/* stage_capture.h — the chunked, P-independent capture of stage 1, shared
 * with the sequential pass (stage_sequential.c). */
#ifndef AQ_DIST_STAGE_CAPTURE_H
#define AQ_DIST_STAGE_CAPTURE_H

#include "../../src/model/capture.h"
#include "pipeline.h"

/* Load the model and the S x T calibration tokens (*tokens malloc'd). */
aq_status aq_pipe_load_calib(const aq_pipe_cfg *c, aq_model **m, int **tokens, aq_error *err);
/* Collective: capture with options o over fixed chunks of the windows (each
 * rank its block of chunks, on its model m, overrides as installed), merge on
 * owner_rank in chunk order, which writes WORK/<sub>/ statistics files with fp. */
aq_status aq_pipe_capture_chunks(MPI_Comm comm, const aq_pipe_cfg *c, aq_model *m, const int *tokens,
                                 const aq_capture_opts *o, int owner_rank, const char *sub,
                                 const aq_fingerprint *fp, aq_error *err);

#endif
