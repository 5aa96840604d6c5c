/* cmd_quantize.c — `adaquant quantize`: quantize a model end to end: capture, AdaQuant over ranks, CBC allocation, write OUTDIR.
 * The work is in mpi/pipeline/pipeline_run.c; this file is the CLI face. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "cli.h"
#include "cmd_eval_cnn.h"
#include "cmd_quantize_cnn.h"
#include "export_gguf.h"
#include "pipeline_cli.h"

#define CMD "quantize"
#define MASK (AQ_ARGS_MODEL | AQ_ARGS_WORK | AQ_ARGS_BUDGET | AQ_ARGS_OUT)

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
    fprintf(out, "  --out-format F         safetensors (default) or gguf: also write OUTDIR/model.gguf,\n"
                 "                         llama.cpp's file: layers calibrated in a ggml block type\n"
                 "                         (q4_0 ...) as stored, the others F32 (docs/GGUF.md)\n");
    aq_quantize_cnn_help(out);
}

static int want_gguf; /* --out-format gguf */

/* OUTDIR as OUTDIR/model.gguf (rank 0), the same export as `adaquant export
 * MODEL --quantized OUTDIR --type F32`: block-type layers byte for byte. */
static aq_status write_gguf(const aq_pipe_args *a, aq_error *err)
{
    char path[AQ_PIPE_PATH + 16];
    snprintf(path, sizeof path, "%s/model.gguf", a->out.outdir);
    aq_export_opts o = {.type = AQ_GGML_F32, .type_embd = AQ_GGML_F32, .name = "adaquant quantize",
                        .quantized = 1, .qpath = a->out.outdir};
    return aq_export_gguf_files(a->cfg.model, a->cfg.tokenizer, a->out.outdir, &o, path, err);
}

static aq_status quantize_stage(MPI_Comm comm, aq_pipe_args *a, aq_error *err)
{
    AQ_TRY(aq_pipe_run_quantize(comm, a, err));
    if (!want_gguf) return AQ_OK;
    int rank, bad;
    MPI_Comm_rank(comm, &rank);
    aq_status st = rank == 0 ? write_gguf(a, err) : AQ_OK;
    bad = st != AQ_OK;
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, comm);
    if (bad && rank != 0) return aq_fail(err, AQ_ERR_IO, "writing the GGUF failed on rank 0");
    return st;
}

static int quantize_run(int argc, char **argv)
{
    if (aq_eval_is_onnx(argc, argv)) return aq_quantize_cnn_main(argc, argv); /* docs/CNN.md */
    /* --out-format is this command's own option: taken out before the shared parser */
    char **av = malloc((size_t)(argc + 1) * sizeof *av);
    if (!av) return 1;
    int n = 0;
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        if (!strcmp(argv[i], "--out-format") && i + 1 < argc) v = argv[++i];
        else if (!strncmp(argv[i], "--out-format=", 13)) v = argv[i] + 13;
        else {
            av[n++] = argv[i];
            continue;
        }
        if (strcmp(v, "gguf") && strcmp(v, "safetensors")) {
            free(av);
            return aq_cli_usage(CMD, "--out-format must be safetensors or gguf, not '%s'", v);
        }
        want_gguf = !strcmp(v, "gguf");
    }
    av[n] = NULL;
    int rc = aq_pipe_cli_run(CMD, MASK, quantize_stage, n, av);
    free(av);
    return rc;
}

const aq_command aq_cmd_quantize = {
    .name = "quantize",
    .summary = "quantize a model end to end: capture, AdaQuant over ranks, CBC allocation, write OUTDIR",
    .run = quantize_run,
    .help = quantize_help,
    .needs_mpi = 1,
};
