/* cmd_quantize.c — `adaquant quantize`: quantize a model end to end: capture, AdaQuant over ranks, CBC allocation, write OUTDIR.
 * The work is in mpi/pipeline/pipeline_run.c; this file is the CLI face. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "cli.h"
#include "cmd_eval_cnn.h"
#include "cmd_quantize_cnn.h"
#include "pipeline_cli.h"

#define CMD "quantize"
#define MASK (AQ_ARGS_MODEL | AQ_ARGS_WORK | AQ_ARGS_BUDGET | AQ_ARGS_OUT | AQ_ARGS_GGUF)

static void quantize_help(FILE *out)
{
    fprintf(out,
            "usage: [mpirun -np P] adaquant quantize MODEL [--tokenizer TOK] --text FILE --out OUTDIR [options]\n"
            "       (or --calib FILE --eval FILE instead of --text: docs/DATA.md)\n"
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
    aq_quantize_cnn_help(out);
}

static aq_status quantize_stage(MPI_Comm comm, aq_pipe_args *a, aq_error *err)
{
    return aq_pipe_run_quantize(comm, a, err);
}

static int quantize_run(int argc, char **argv)
{
    if (aq_eval_is_onnx(argc, argv)) return aq_quantize_cnn_main(argc, argv); /* docs/CNN.md */
    return aq_pipe_cli_run(CMD, MASK, quantize_stage, argc, argv);
}

const aq_command aq_cmd_quantize = {
    .name = "quantize",
    .summary = "quantize a model end to end: capture, AdaQuant over ranks, CBC allocation, write OUTDIR",
    .run = quantize_run,
    .help = quantize_help,
    .needs_mpi = 1,
};
