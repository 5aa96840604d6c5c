/* cmd_solve.c — `adaquant solve`: pipeline stage 3: allocate bits from the results in --work DIR and write OUTDIR.
 * The work is in mpi/dist/pipeline_run.c; this file is the CLI face. */
#include <stdio.h>
#include <stdlib.h>

#include <mpi.h>

#include "cli.h"
#include "dist/pipeline_run.h"

#define CMD "solve"
#define MASK (AQ_ARGS_WORK | AQ_ARGS_BUDGET | AQ_ARGS_OUT)

static void solve_help(FILE *out)
{
    fprintf(out,
            "usage: [mpirun -np P] adaquant solve --work DIR --out OUTDIR [budget options]\n"
            "\n"
            "Stage 3: checks that every task has a valid result (else fails listing the missing\n"
            "shards and the command that resubmits exactly those), solves the allocation and\n"
            "writes OUTDIR exactly as `quantize` does (same bytes).\n"
            "\n");
    aq_pipe_args_help(out, MASK);
}

static int solve_run(int argc, char **argv)
{
    aq_pipe_args *a = calloc(1, sizeof *a); /* large (paths): not on the stack */
    if (!a) return 1;
    int rc = aq_pipe_args_parse(CMD, MASK, argc, argv, a);
    if (rc == 0) {
        aq_error err = {0};
        int rank;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        if (aq_pipe_run_solve(MPI_COMM_WORLD, a, &err) != AQ_OK) rc = rank == 0 ? aq_cli_fail(CMD, &err) : 1;
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

const aq_command aq_cmd_solve = {
    .name = "solve",
    .summary = "pipeline stage 3: allocate bits from the results in --work DIR and write OUTDIR",
    .run = solve_run,
    .help = solve_help,
    .needs_mpi = 1,
};
