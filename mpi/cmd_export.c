/* cmd_export.c — `adaquant export`: a model (float, or quantized by the
 * pipeline: --quantized OUTDIR) as a file a runtime loads: GGUF for
 * llama.cpp, architecture `llama` (export_gguf.h), or a quantized OUTDIR as a
 * GPTQ checkpoint directory (export_gptq.h). docs/EXPORT.md. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/model/model.h"
#include "../src/text/tokenizer.h"
#include "cli.h"
#include "pipeline/cnn_pipe.h"
#include "pipeline/pipeline_args.h"
#include "export_gguf.h"
#include "export_gptq.h"

#define CMD "export"

static void export_help(FILE *out)
{
    fprintf(out,
            "usage: adaquant export MODEL [--quantized OUTDIR] [--format gguf] [--type T]\n"
            "                       [--type-embd T] [--tokenizer TOK] [--name NAME]\n"
            "                       [--out FILE.gguf]\n"
            "       adaquant export OUTDIR --format gptq [--round-zeros] --out DIR\n"
            "       adaquant export OUTDIR --format onnx-qdq --out FILE.onnx   (a quantized CNN)\n"
            "\n"
            "Write MODEL (a llama2.c .bin or an HF Llama directory) as a GGUF file that\n"
            "llama.cpp loads (architecture llama). With --quantized, the weights are the\n"
            "dequantized weights of the quantized model in OUTDIR, so llama.cpp runs the\n"
            "model adaquant evaluated, up to the GGUF type. With --format gptq, the\n"
            "quantized model of OUTDIR becomes a GPTQ checkpoint directory (int32\n"
            "qweight/qzeros, fp16 scales, quantize_config.json). docs/EXPORT.md.\n"
            "\n"
            "options:\n"
            "  -q, --quantized OUTDIR  the pipeline's output (qlayer layout)\n"
            "  -f, --format F          gguf (default) or gptq\n"
            "      --round-zeros       gptq: round fractional zero points (error reported)\n"
            "                          instead of refusing them\n"
            "  -T, --type T            type of the 2-D weights: F32, F16, Q8_0, Q4_0, Q4_1,\n"
            "                          Q5_0, Q5_1, Q2_K..Q6_K (default F32); rows its block\n"
            "                          does not divide fall back to Q8_0, then F16\n"
            "  -E, --type-embd T       type of token_embd (default: --type)\n"
            "  -t, --tokenizer TOK     llama2.c tokenizer .bin or byte-level BPE\n"
            "                          tokenizer.json (default: MODEL's, else OUTDIR's)\n"
            "  -n, --name NAME         general.name (default: adaquant export)\n"
            "  -o, --out FILE          output path (default model.gguf; gptq: required, a new\n"
            "                          directory); written atomically\n"
            "  -h, --help              this text\n"
            "\n"
            "Exit status: 0 success, 1 error, 2 usage error.\n"
            "\n"
            "example: adaquant export stories260K.bin --tokenizer tok512.bin --type Q8_0 --out s.gguf\n");
}

typedef struct export_args {
    const char *model, *quant, *tok, *out, *name;
    char tok_default[4096];
    aq_export_opts o;
    int gptq, qdq, out_set, type_set;
    aq_export_gptq_opts g;
} export_args;

/* --format gptq: the input is OUTDIR (positional, or --quantized; it holds
 * the whole model and its tokenizer), the GGUF options do not apply. */
static int parse_gptq(export_args *a)
{
    if (a->quant) a->model = a->quant;
    if (!a->out_set) return aq_cli_usage(CMD, "--format gptq needs --out DIR (a new directory)");
    if (a->type_set || a->tok || strcmp(a->name, "adaquant export"))
        return aq_cli_usage(CMD, "--type, --type-embd, --tokenizer and --name apply to --format gguf only");
    return 0;
}

static int parse(int argc, char **argv, export_args *a)
{
    static const struct option opts[] = {{"quantized", required_argument, 0, 'q'},
                                         {"format", required_argument, 0, 'f'},
                                         {"type", required_argument, 0, 'T'},
                                         {"type-embd", required_argument, 0, 'E'},
                                         {"tokenizer", required_argument, 0, 't'},
                                         {"name", required_argument, 0, 'n'},
                                         {"out", required_argument, 0, 'o'},
                                         {"round-zeros", no_argument, 0, 'Z'},
                                         {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->out = "model.gguf";
    a->name = "adaquant export";
    a->o.type = AQ_GGML_F32;
    a->o.type_embd = -1;
    int c;
    while ((c = getopt_long(argc, argv, "q:f:T:E:t:n:o:", opts, NULL)) != -1) {
        switch (c) {
        case 'q': a->quant = optarg; break;
        case 'f':
            if (strcmp(optarg, "gguf") && strcmp(optarg, "gptq") && strcmp(optarg, "onnx-qdq"))
                return aq_cli_usage(CMD, "--format must be gguf, gptq or onnx-qdq, not '%s'", optarg);
            a->gptq = !strcmp(optarg, "gptq");
            a->qdq = !strcmp(optarg, "onnx-qdq");
            break;
        case 'Z': a->g.round_zeros = 1; break;
        case 'T':
        case 'E': {
            int t = aq_export_parse_type(optarg);
            if (t < 0) return aq_cli_usage(CMD, "unknown GGUF type '%s'", optarg);
            *(c == 'T' ? &a->o.type : &a->o.type_embd) = t;
            a->type_set = 1;
            break;
        }
        case 't': a->tok = optarg; break;
        case 'n': a->name = optarg; break;
        case 'o': a->out = optarg, a->out_set = 1; break;
        default: return aq_cli_usage(CMD, "unknown option");
        }
    }
    if (optind != argc - 1) return aq_cli_usage(CMD, "expected exactly one MODEL argument");
    a->model = argv[optind];
    if (a->qdq && a->g.round_zeros) return aq_cli_usage(CMD, "--round-zeros applies to --format gptq only");
    if (a->gptq || a->qdq) return parse_gptq(a); /* the same rules: OUTDIR in, --out required */
    if (a->g.round_zeros) return aq_cli_usage(CMD, "--round-zeros applies to --format gptq only");
    if (a->o.type_embd < 0) a->o.type_embd = a->o.type;
    a->o.name = a->name;
    a->o.quantized = a->quant != NULL;
    a->o.qpath = a->quant;
    if (!a->tok && aq_default_tokenizer(a->model, a->tok_default, sizeof a->tok_default) == 0)
        a->tok = a->tok_default;
    if (!a->tok && a->quant &&
        aq_default_tokenizer(a->quant, a->tok_default, sizeof a->tok_default) == 0)
        a->tok = a->tok_default;
    if (!a->tok)
        return aq_cli_usage(CMD, "--tokenizer is required (neither MODEL nor OUTDIR holds "
                                 "tokenizer.json or tokenizer.bin)");
    return 0;
}

static int export_main(int argc, char **argv)
{
    export_args a;
    int rc = parse(argc, argv, &a);
    if (rc) return rc;
    aq_error err = {0};
    aq_status st = a.qdq    ? aq_cnnp_export_qdq(a.model, a.out, &err) /* docs/CNN.md */
                   : a.gptq ? aq_export_gptq(a.model, &a.g, a.out, &err)
                            : aq_export_gguf_files(a.model, a.tok, a.quant, &a.o, a.out, &err);
    if (st != AQ_OK) return aq_cli_fail(CMD, &err);
    fprintf(stderr, "export: wrote %s\n", a.out);
    return 0;
}

const aq_command aq_cmd_export = {"export", "write a model as GGUF for llama.cpp, or as a GPTQ checkpoint", export_main,
                                  export_help, 0};
