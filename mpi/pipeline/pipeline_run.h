/* pipeline_run.h — the four pipeline commands as functions (collective over
 * comm; the same status on every rank; errors in err, printed by the caller on
 * rank 0). quantize = capture + calibrate + solve + write in one job. */
#ifndef AQ_DIST_PIPELINE_RUN_H
#define AQ_DIST_PIPELINE_RUN_H

#include "pipeline_args.h"

aq_status aq_pipe_run_quantize(MPI_Comm comm, aq_pipe_args *a, aq_error *err);
aq_status aq_pipe_run_capture(MPI_Comm comm, aq_pipe_args *a, aq_error *err);
aq_status aq_pipe_run_calibrate(MPI_Comm comm, aq_pipe_args *a, aq_error *err);
aq_status aq_pipe_run_solve(MPI_Comm comm, aq_pipe_args *a, aq_error *err);

#endif
