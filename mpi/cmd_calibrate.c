/* cmd_calibrate.c — `adaquant calibrate`: pipeline stage 2: AdaQuant for shard I of N of the (layer, option) tasks.
 * The work is in mpi/pipeline/pipeline_run.c; this file is the CLI face. */
#include <stdio.h>
#include <stdlib.h>

#include <mpi.h>

#include "cli.h"
#include "pipeline_cli.h"

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
    return aq_pipe_cli_run(CMD, MASK, aq_pipe_run_calibrate, argc, argv);
}

const aq_command aq_cmd_calibrate = {
    .name = "calibrate",
    .summary = "pipeline stage 2: AdaQuant for shard I of N of the (layer, option) tasks",
    .run = calibrate_run,
    .help = calibrate_help,
    .needs_mpi = 1,
};
