/* cmd_quantize.c — `adaquant quantize`: quantize a model end to end: capture, AdaQuant over ranks, CBC allocation, write OUTDIR.
 * The work is in mpi/dist/pipeline_run.c; this file is the CLI face. */
#include <stdio.h>
#include <stdlib.h>

#include <mpi.h>

#include "cli.h"
#include "dist/pipeline_run.h"

#define CMD "quantize"
#define MASK (AQ_ARGS_MODEL | AQ_ARGS_WORK | AQ_ARGS_BUDGET | AQ_ARGS_OUT)

static void quantize_help(FILE *out)
{
    fprintf(out,
            "usage: [mpirun -np P] adaquant quantize MODEL --tokenizer TOK --calib-text FILE --out OUTDIR [options]\n"
            "\n"
            "The main job. Captures per-layer input statistics on calibration windows (split\n"
            "over the ranks in fixed chunks, summed in chunk order), runs AdaQuant for every\n"
            "(layer, option) task (LPT + dynamic tail over the ranks, one result file per task\n"
            "in the work directory), solves the bit allocation with CBC on rank 0, evaluates FP\n"
            "vs quantized perplexity (documents split over the ranks) and writes OUTDIR\n"
            "atomically: model.safetensors, config.json, quantization.json, report.md,\n"
            "report.json, pareto.svg, bits.svg (docs/FORMAT.md, docs/PIPELINE.md).\n"
            "Output bytes do not depend on the number of ranks. A single process is one rank.\n"
            "Every input is checked before any work starts.\n"
            "\n");
    aq_pipe_args_help(out, MASK);
}

static int quantize_run(int argc, char **argv)
{
    aq_pipe_args *a = calloc(1, sizeof *a); /* large (paths): not on the stack */
    if (!a) return 1;
    int rc = aq_pipe_args_parse(CMD, MASK, argc, argv, a);
    if (rc == 0) {
        aq_error err = {0};
        int rank;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        if (aq_pipe_run_quantize(MPI_COMM_WORLD, a, &err) != AQ_OK) rc = rank == 0 ? aq_cli_fail(CMD, &err) : 1;
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

const aq_command aq_cmd_quantize = {
    .name = "quantize",
    .summary = "quantize a model end to end: capture, AdaQuant over ranks, CBC allocation, write OUTDIR",
    .run = quantize_run,
    .help = quantize_help,
    .needs_mpi = 1,
};
