/* cmd_calibrate.c — `adaquant calibrate`: pipeline stage 2: AdaQuant for shard I of N of the (layer, option) tasks.
 * The work is in mpi/dist/pipeline_run.c; this file is the CLI face. */
#include <stdio.h>
#include <stdlib.h>

#include <mpi.h>

#include "cli.h"
#include "dist/pipeline_run.h"

#define CMD "calibrate"
#define MASK (AQ_ARGS_WORK | AQ_ARGS_SHARD)

static void calibrate_help(FILE *out)
{
    fprintf(out,
            "usage: [mpirun -np P] adaquant calibrate --work DIR --shard I --shards N\n"
            "\n"
            "Stage 2 (Slurm job arrays: I = SLURM_ARRAY_TASK_ID, N = SLURM_ARRAY_TASK_COUNT).\n"
            "Runs the deterministic, cost-balanced (LPT) subset I of the tasks recorded by\n"
            "`capture`, writing one result file per task to DIR/results/. Valid results already\n"
            "present are skipped (--resume is implied); corrupted ones are recomputed.\n"
            "\n");
    aq_pipe_args_help(out, MASK);
}

static int calibrate_run(int argc, char **argv)
{
    aq_pipe_args *a = calloc(1, sizeof *a); /* large (paths): not on the stack */
    if (!a) return 1;
    int rc = aq_pipe_args_parse(CMD, MASK, argc, argv, a);
    if (rc == 0) {
        aq_error err = {0};
        int rank;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        if (aq_pipe_run_calibrate(MPI_COMM_WORLD, a, &err) != AQ_OK) rc = rank == 0 ? aq_cli_fail(CMD, &err) : 1;
    }
    free(a);
    if (rc != 0) {
        /* every rank reached the same verdict (statuses are agreed): end
         * cleanly rather than through MPI_Abort's banner */
        MPI_Finalize();
        exit(rc);
    }
    return rc;
}

const aq_command aq_cmd_calibrate = {
    .name = "calibrate",
    .summary = "pipeline stage 2: AdaQuant for shard I of N of the (layer, option) tasks",
    .run = calibrate_run,
    .help = calibrate_help,
    .needs_mpi = 1,
};
