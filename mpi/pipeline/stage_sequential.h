/* stage_sequential.h — the sequential pass of --mode sequential
 * (stage_sequential.c, docs/PIPELINE.md). */
#ifndef AQ_DIST_STAGE_SEQUENTIAL_H
#define AQ_DIST_STAGE_SEQUENTIAL_H

#include "pipeline.h"

/* Fingerprint of an allocation (layer -> option). */
aq_fingerprint aq_pipe_alloc_fp(const aq_pipe_cfg *c, const aq_pipe_plan *p, const int *choice);

/* Collective: recalibrate the chosen option of every layer block by block on
 * the quantized upstream. On success *sc / *sp are the cfg and plan whose
 * chosen tasks name the sequential results (work = WORK/seq): pass them to
 * aq_pipe_write; free sp with aq_pipe_plan_free. */
aq_status aq_pipe_sequential(MPI_Comm comm, const aq_pipe_cfg *c, const aq_pipe_plan *p, const int *choice, int resume,
                             aq_pipe_cfg *sc, aq_pipe_plan *sp, aq_pipe_timing *t, aq_error *err);

#endif
