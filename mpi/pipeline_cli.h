/* pipeline_cli.h — the shared CLI body of the pipeline commands (quantize,
 * capture, calibrate, solve): parse the options of `mask`, run `stage` on
 * MPI_COMM_WORLD, report the error on rank 0. */
#ifndef AQ_PIPELINE_CLI_H
#define AQ_PIPELINE_CLI_H

#include <mpi.h>

#include "pipeline/pipeline_run.h"

typedef aq_status (*aq_pipe_stage_fn)(MPI_Comm comm, aq_pipe_args *a, aq_error *err);

/* Returns 0 on success. On failure every rank has reached the same verdict
 * (stages agree on their status), so it finalizes MPI and exits with the
 * code itself rather than through MPI_Abort's banner. */
int aq_pipe_cli_run(const char *cmd, unsigned mask, aq_pipe_stage_fn stage, int argc, char **argv);

#endif
