/* cmd_eval.c — `adaquant eval`: perplexity of a model on the evaluation
 * documents (the second half of --text, or --eval; src/text/textdata.h,
 * docs/DATA.md), and with --quantized the quantized model's perplexity, mean
 * KL(FP || Q) per token and top-1 agreement. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../src/model/eval.h"
#include "../src/model/model.h"
#include "../src/text/textdata.h"
#include "../src/text/tokenizer.h"
#include "cli.h"
#include "cmd_eval_cnn.h"
#include "export_gguf.h"
#include "pipeline/pipeline_args.h"

#define CMD "eval"

static void eval_help(FILE *out)
{
    fprintf(
        out,
        "usage: adaquant eval MODEL [--tokenizer TOK] (--text FILE | --eval FILE)...\n"
        "                     [--data-format F] [--text-field NAME] [--quantized OUTDIR]\n"
        "                     [--max-docs N] [--max-len N] [--json]\n"
        "\n"
        "Perplexity of MODEL (a llama2.c .bin, an HF directory or a safetensors file) on\n"
        "the evaluation documents: with --text, the data is split into documents (a text\n"
        "file on blank lines \"\\n\\n\", each stripped) and the second half is evaluated\n"
        "(the first, floor(n/2), is the calibration set of `adaquant quantize --text`);\n"
        "with --eval, every document is evaluated. Each document is scored on its own\n"
        "(context reset): BOS + its tokens, truncated to --max-len tokens; every token\n"
        "after the first is predicted. perplexity = exp(total NLL / predicted tokens).\n"
        "\n"
        "options:\n"
        "  -t, --tokenizer TOK      tokenizer .bin or tokenizer.json; default:\n"
        "                           MODEL/tokenizer.json, else MODEL/tokenizer.bin,\n"
        "                           when MODEL is such a directory\n"
        "  -x, --text FILE          data split in halves, the second evaluated\n"
        "  -e, --eval FILE          data evaluated whole (instead of --text)\n"
        "                           FILE may be a glob; both repeat (files in order,\n"
        "                           glob matches sorted); docs/DATA.md\n"
        "      --data-format F      auto (default: .jsonl, .tok, else text), text,\n"
        "                           jsonl or tokens (pre-tokenized ids)\n"
        "      --text-field NAME    the JSONL field holding the text (default text)\n"
        "  -q, --quantized OUTDIR   also evaluate the quantized model in OUTDIR (the\n"
        "                           pipeline's output, qlayer layout): prints FP and\n"
        "                           quantized perplexity, mean KL(FP||Q) per predicted\n"
        "                           token (nats) and top-1 agreement\n"
        "  -q, --quantized FILE.gguf  the same for a llama.cpp GGUF file of MODEL\n"
        "                           (ours or llama-quantize's: every tensor dequantized,\n"
        "                           F32/F16/Q4_0..Q8_0/K-quants; docs/EXPORT.md)\n"
        "  -n, --max-docs N         evaluate only the first N evaluation documents\n"
        "  -l, --max-len N          truncate documents to N tokens (default 512)\n"
        "  -j, --json               print one JSON object instead of text\n"
        "  -h, --help               this text\n"
        "\n"
        "Progress goes to stderr (a one-line bar on a terminal, plain lines otherwise).\n"
        "Exit status: 0 success, 1 error, 2 usage error.\n"
        "\n"
        "example: adaquant eval stories260K.bin --tokenizer tok512.bin --text validation.txt\n"
        "         adaquant eval ./Llama-3.2-1B --eval 'wiki/test-*.jsonl' --text-field text\n");
    aq_eval_cnn_help(out); /* the .onnx (CNN) form */
}

typedef struct progress {
    int tty;
    time_t start, last;
} progress;

static void on_progress(void *ctx, size_t done, size_t total)
{
    progress *p = ctx;
    time_t now = time(NULL);
    if (p->tty) {
        int w = 30, k = total ? (int)(w * done / total) : w;
        fprintf(stderr, "\r[%.*s%*s] %zu/%zu docs", k, "##############################", w - k, "",
                done, total);
        if (done == total) fputc('\n', stderr);
    } else if (done == total || now - p->last >= 10) {
        fprintf(stderr, "eval: %zu/%zu documents (%lds)\n", done, total, (long)(now - p->start));
        p->last = now;
    }
}

typedef struct eval_args {
    const char *model, *tok, *quant;
    char tok_default[4096];
    aq_data_spec data;
    long max_docs, max_len;
    int json;
} eval_args;

static int parse(int argc, char **argv, eval_args *a)
{
    static const struct option opts[] = {{"tokenizer", required_argument, 0, 't'},
                                         {"text", required_argument, 0, 'x'},
                                         {"eval", required_argument, 0, 'e'},
                                         {"data-format", required_argument, 0, 'F'},
                                         {"text-field", required_argument, 0, 'T'},
                                         {"quantized", required_argument, 0, 'q'},
                                         {"max-docs", required_argument, 0, 'n'},
                                         {"max-len", required_argument, 0, 'l'},
                                         {"json", no_argument, 0, 'j'},
                                         {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->max_len = 512;
    int c;
    char *end;
    aq_error e = {0};
    while ((c = getopt_long(argc, argv, "t:x:e:q:n:l:j", opts, NULL)) != -1) {
        switch (c) {
        case 't': a->tok = optarg; break;
        case 'x':
        case 'e':
            if (aq_data_spec_add(&a->data, c == 'x' ? AQ_DATA_SPLIT : AQ_DATA_EVAL, optarg, &e) != AQ_OK)
                return aq_cli_usage(CMD, "%s", e.msg);
            break;
        case 'F':
            if ((a->data.format = aq_data_format_parse(optarg)) < 0)
                return aq_cli_usage(CMD, "--data-format must be auto, text, jsonl or tokens, not '%s'", optarg);
            break;
        case 'T':
            if (!*optarg || strlen(optarg) >= sizeof a->data.text_field)
                return aq_cli_usage(CMD, "--text-field: empty or too long");
            strcpy(a->data.text_field, optarg);
            break;
        case 'q': a->quant = optarg; break;
        case 'j': a->json = 1; break;
        case 'n':
        case 'l': {
            long v = strtol(optarg, &end, 10);
            if (*end || v < (c == 'l' ? 2 : 1))
                return aq_cli_usage(CMD, "invalid --%s '%s'", c == 'n' ? "max-docs" : "max-len",
                                    optarg);
            *(c == 'n' ? &a->max_docs : &a->max_len) = v;
            break;
        }
        default: return aq_cli_usage(CMD, "unknown option");
        }
    }
    if (optind != argc - 1) return aq_cli_usage(CMD, "expected exactly one MODEL argument");
    a->model = argv[optind];
    if (!a->tok && aq_default_tokenizer(a->model, a->tok_default, sizeof a->tok_default) == 0)
        a->tok = a->tok_default;
    if (!a->tok)
        return aq_cli_usage(CMD, "--tokenizer is required (MODEL is not a directory holding tokenizer.json or "
                                 "tokenizer.bin)");
    if (a->data.n == 0) return aq_cli_usage(CMD, "--text FILE or --eval FILE is required");
    return 0;
}

static void print_result(const eval_args *a, const aq_eval_result *r)
{
    if (a->json) {
        printf("{\"docs\": %zu, \"predicted_tokens\": %zu, \"nll_fp\": %.10g, \"ppl_fp\": %.10g",
               r->n_docs, r->n_predicted, r->nll_fp, r->ppl_fp);
        if (r->compared)
            printf(", \"nll_q\": %.10g, \"ppl_q\": %.10g, \"kl_mean\": %.10g, \"top1_agreement\": "
                   "%.10g",
                   r->nll_q, r->ppl_q, r->kl_mean, r->top1_agree);
        printf("}\n");
        return;
    }
    printf("documents:        %zu\npredicted tokens: %zu\n", r->n_docs, r->n_predicted);
    printf("perplexity (FP):  %.4f\n", r->ppl_fp);
    if (r->compared) {
        printf("perplexity (Q):   %.4f\n", r->ppl_q);
        printf("KL(FP||Q)/token:  %.6f nats\n", r->kl_mean);
        printf("top-1 agreement:  %.4f\n", r->top1_agree);
    }
}

static aq_status run_eval(const eval_args *a, aq_eval_result *r, aq_error *err)
{
    aq_model *m = NULL;
    aq_tokenizer *tok = NULL;
    aq_docs docs = {0};
    aq_seqs seqs = {0};
    aq_status st;
    AQ_TRY_GOTO(st, aq_model_load_lazy(a->model, &m, err) /* one block resident at a time (docs/MEMORY.md) */, done);
    AQ_TRY_GOTO(st, aq_tok_open(a->tok, aq_model_config(m)->vocab_size, &tok, err), done);
    AQ_TRY_GOTO(st, aq_docs_load(&a->data, &docs, err), done);
    AQ_TRY_GOTO(st, aq_eval_seqs(tok, &docs, (int)a->max_len, (size_t)a->max_docs, &seqs, err),
                done);
    aq_tok_report_unknown(tok, "eval", stderr);
    if (a->quant && aq_gguf_is_file(a->quant)) { /* a llama.cpp file: its every tensor, dequantized */
        int n;
        AQ_TRY_GOTO(st, aq_gguf_import(m, a->quant, &n, err), done);
        fprintf(stderr, "eval: %d tensors of the GGUF file %s installed\n", n, a->quant);
    } else if (a->quant) {
        int n;
        AQ_TRY_GOTO(st, aq_model_load_quantized(m, a->quant, &n, err), done);
        fprintf(stderr, "eval: %d quantized layers loaded from %s\n", n, a->quant);
    }
    progress pr = {isatty(2), time(NULL), time(NULL)};
    aq_eval_opts eo = {0};
    eo.compare_quantized = a->quant != NULL;
    eo.progress = on_progress;
    eo.progress_ctx = &pr;
    st = aq_eval_run(m, &seqs, &eo, r, err);
done:
    aq_seqs_free(&seqs);
    aq_docs_free(&docs);
    aq_tok_close(tok);
    aq_model_free(m);
    return st;
}

static int eval_main(int argc, char **argv)
{
    static eval_args a; /* holds the data sources (tens of KB): not on the stack */
    if (aq_eval_is_onnx(argc, argv)) return aq_eval_cnn_main(argc, argv);
    int rc = parse(argc, argv, &a);
    if (rc) return rc;
    aq_error err = {0};
    aq_eval_result r;
    if (run_eval(&a, &r, &err) != AQ_OK) return aq_cli_fail(CMD, &err);
    print_result(&a, &r);
    return 0;
}

const aq_command aq_cmd_eval = {
    .name = CMD,
    .summary = "perplexity (and FP-vs-quantized KL, top-1) on the evaluation documents",
    .run = eval_main,
    .help = eval_help,
    .needs_mpi = 0,
};
