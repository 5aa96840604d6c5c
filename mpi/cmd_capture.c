/* cmd_capture.c — `adaquant capture`: pipeline stage 1: per-layer calibration statistics into --work DIR (may run under MPI).
 * The work is in mpi/pipeline/pipeline_run.c; this file is the CLI face. */
#include <stdio.h>
#include <stdlib.h>

#include <mpi.h>

#include "cli.h"
#include "pipeline_cli.h"

#define CMD "capture"
#define MASK (AQ_ARGS_MODEL | AQ_ARGS_WORK | AQ_ARGS_GGUF) /* --out-format gguf: the GGUF menus */

static void capture_help(FILE *out)
{
    fprintf(out,
            "usage: [mpirun -np P] adaquant capture MODEL [--tokenizer TOK] --text FILE --work DIR [options]\n"
            "       (or --calib FILE [--eval FILE] instead of --text: docs/DATA.md)\n"
            "\n"
            "Stage 1 of `quantize` (docs/PIPELINE.md): runs the FP model on the calibration\n"
            "windows and writes one statistics file per capture point to DIR/stats/ plus the\n"
            "settings (DIR/settings.json) that `calibrate` and `solve` read, so they need only\n"
            "--work. The AdaQuant settings (--options, --iters, --init, --seed) are recorded here.\n"
            "\n");
    aq_pipe_args_help(out, MASK);
}

static int capture_run(int argc, char **argv)
{
    return aq_pipe_cli_run(CMD, MASK, aq_pipe_run_capture, argc, argv);
}

const aq_command aq_cmd_capture = {
    .name = "capture",
    .summary = "pipeline stage 1: per-layer calibration statistics into --work DIR (may run under MPI)",
    .run = capture_run,
    .help = capture_help,
    .needs_mpi = 1,
};
