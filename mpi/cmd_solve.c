/* cmd_solve.c — `adaquant solve`: pipeline stage 3: allocate bits from the results in --work DIR and write OUTDIR.
 * The work is in mpi/pipeline/pipeline_run.c; this file is the CLI face. */
#include <stdio.h>
#include <stdlib.h>

#include <mpi.h>

#include "cli.h"
#include "pipeline_cli.h"

#define CMD "solve"
#define MASK (AQ_ARGS_WORK | AQ_ARGS_BUDGET | AQ_ARGS_OUT | AQ_ARGS_GGUF)

static void solve_help(FILE *out)
{
    fprintf(out,
            "usage: [mpirun -np P] adaquant solve --work DIR --out OUTDIR [budget options]\n"
            "\n"
            "Stage 3: checks that every task has a valid result (else fails listing the missing\n"
            "shards and the command that resubmits exactly those), solves the allocation and\n"
            "writes OUTDIR exactly as `quantize` does (same bytes). With --out-format gguf it\n"
            "also writes OUTDIR/model.gguf, --target-size counting its bytes, as `quantize\n"
            "--out-format gguf` does; the menus are the work's (`capture --out-format gguf`\n"
            "picks the GGUF ones).\n"
            "\n");
    aq_pipe_args_help(out, MASK);
}

static int solve_run(int argc, char **argv)
{
    return aq_pipe_cli_run(CMD, MASK, aq_pipe_run_solve, argc, argv);
}

const aq_command aq_cmd_solve = {
    .name = "solve",
    .summary = "pipeline stage 3: allocate bits from the results in --work DIR and write OUTDIR",
    .run = solve_run,
    .help = solve_help,
    .needs_mpi = 1,
};
