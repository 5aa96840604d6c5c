/* cmd_generate.c — `adaquant generate`: greedy decoding with a KV cache from BOS
 * (or BOS + a prompt), printing the decoded text as it comes (streaming
 * decode, so byte tokens of one character print together). Works with every
 * tokenizer of tokenizer.h; one without BOS (Qwen) needs a prompt. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/model/model.h"
#include "../src/text/tokenizer.h"
#include "cli.h"
#include "pipeline/pipeline_args.h"

#define CMD "generate"

static void generate_help(FILE *out)
{
    fprintf(out, "usage: adaquant generate MODEL [--tokenizer TOK] [--quantized OUTDIR] [--steps N]\n"
                 "                         [--prompt TEXT]\n"
                 "\n"
                 "Greedy (argmax) decoding from BOS, or from BOS + encode(TEXT), with a KV cache.\n"
                 "Prints the prompt and the generated text; stops after N positions in total\n"
                 "(prompt included, as llama2.c's run does), at max_seq_len, or when the model\n"
                 "emits an end token (llama2.c: BOS or EOS; tokenizer.json: the EOS ids of the\n"
                 "model's tokenizer_config.json / config.json). A tokenizer without BOS (Qwen)\n"
                 "needs a --prompt.\n"
                 "\n"
                 "options:\n"
                 "  -t, --tokenizer TOK      llama2.c tokenizer .bin, tokenizer.json, or a model\n"
                 "                           directory holding one (default: the one in OUTDIR\n"
                 "                           with --quantized, else in MODEL when a directory)\n"
                 "  -q, --quantized OUTDIR   generate with the quantized model of OUTDIR (the\n"
                 "                           pipeline's output, applied over MODEL's float\n"
                 "                           tensors as `eval --quantized` does); each step\n"
                 "                           recomputes the whole sequence (no KV cache)\n"
                 "  -n, --steps N            total positions (default 256)\n"
                 "  -p, --prompt TEXT        start text (default: none)\n"
                 "  -h, --help               this text\n"
                 "\n"
                 "example: adaquant generate stories260K.bin --tokenizer tok512.bin --steps 64\n"
                 "         adaquant generate stories260K.bin --quantized OUT --steps 64\n");
}

static int argmax(const float *z, int n)
{
    int a = 0;
    for (int i = 1; i < n; i++)
        if (z[i] > z[a]) a = i;
    return a;
}

/* Print the text that token makes final. */
static aq_status emit(aq_tok_stream *ts, int token, aq_error *err)
{
    const char *text;
    size_t len;
    AQ_TRY(aq_tok_stream_push(ts, token, &text, &len, err));
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return AQ_OK;
}

/* The KV-cache loop from ids[0]: the first n ids are the prompt, then argmax. */
static aq_status decode_loop(aq_model *m, const aq_tokenizer *tok, const int *ids, size_t n,
                             long steps, aq_error *err)
{
    const aq_llama_config *c = aq_model_config(m);
    aq_kv_cache *kc = NULL;
    aq_tok_stream *ts = NULL;
    float *logits = malloc((size_t)c->vocab_size * sizeof(float));
    aq_status st;
    if (!logits) return aq_fail_nomem(err, "logits", (size_t)c->vocab_size * sizeof(float));
    AQ_TRY_GOTO(st, aq_kv_cache_new(m, &kc, err), done);
    AQ_TRY_GOTO(st, aq_tok_stream_new(tok, &ts, err), done);
    AQ_TRY_GOTO(st, emit(ts, ids[0], err), done);
    if (steps > c->max_seq_len) steps = c->max_seq_len;
    int n_ids = aq_tok_vocab_size(tok) < c->vocab_size ? aq_tok_vocab_size(tok) : c->vocab_size;
    int token = ids[0], next;
    for (int pos = 0; pos < steps; pos++, token = next) {
        AQ_TRY_GOTO(st, aq_model_decode_step(m, kc, token, pos, logits, err), done);
        /* Only ids the tokenizer has: HF models pad the embedding beyond it. */
        next = (size_t)pos + 1 < n ? ids[pos + 1] : argmax(logits, n_ids);
        if (aq_tok_is_stop(tok, next)) break;
        AQ_TRY_GOTO(st, emit(ts, next, err), done);
    }
    const char *rest;
    size_t len;
    AQ_TRY_GOTO(st, aq_tok_stream_flush(ts, &rest, &len, err), done);
    fwrite(rest, 1, len, stdout);
    printf("\n");
done:
    aq_tok_stream_free(ts);
    aq_kv_cache_free(kc);
    free(logits);
    return st;
}

/* The quantized model's loop: the decoder's KV cache runs the float weights
 * only, so each step runs the whole sequence through the forward with the
 * overrides on (O(steps^2) work; meant for checks and short samples). */
static aq_status quantized_loop(aq_model *m, const aq_tokenizer *tok, const int *ids, size_t n,
                                long steps, aq_error *err)
{
    const aq_llama_config *c = aq_model_config(m);
    if (steps > c->max_seq_len) steps = c->max_seq_len;
    size_t V = (size_t)c->vocab_size, cap = (size_t)steps > n ? (size_t)steps : n;
    int *seq = malloc(cap * sizeof *seq);
    float *logits = malloc(cap * V * sizeof *logits);
    aq_tok_stream *ts = NULL;
    aq_status st = seq && logits ? AQ_OK : aq_fail_nomem(err, "sequence logits", cap * V * sizeof *logits);
    if (st == AQ_OK) st = aq_tok_stream_new(tok, &ts, err);
    int n_ids = aq_tok_vocab_size(tok) < c->vocab_size ? aq_tok_vocab_size(tok) : c->vocab_size;
    aq_forward_opts fo;
    aq_forward_opts_default(&fo);
    fo.quantized = 1;
    size_t len = n < (size_t)steps ? n : (size_t)steps;
    if (st == AQ_OK) memcpy(seq, ids, len * sizeof *seq);
    for (size_t i = 0; st == AQ_OK && i < len; i++) st = emit(ts, seq[i], err);
    while (st == AQ_OK && len < (size_t)steps) {
        int L = (int)len;
        st = aq_model_forward(m, seq, &L, 1, &fo, logits, err);
        if (st != AQ_OK) break;
        int next = argmax(logits + (len - 1) * V, n_ids);
        if (aq_tok_is_stop(tok, next)) break;
        seq[len++] = next;
        st = emit(ts, next, err);
    }
    const char *rest;
    size_t rl;
    if (st == AQ_OK) st = aq_tok_stream_flush(ts, &rest, &rl, err);
    if (st == AQ_OK) {
        fwrite(rest, 1, rl, stdout);
        printf("\n");
    }
    aq_tok_stream_free(ts);
    free(seq);
    free(logits);
    return st;
}

static aq_status generate(const char *model, const char *tokp, const char *quant, long steps,
                          const char *prompt, aq_error *err)
{
    aq_model *m = NULL;
    aq_tokenizer *tok = NULL;
    int *ids = NULL;
    size_t n = 0;
    aq_status st;
    AQ_TRY_GOTO(st, aq_model_load_path(model, &m, err), done);
    if (quant) {
        int n_q;
        AQ_TRY_GOTO(st, aq_model_load_quantized(m, quant, &n_q, err), done);
        fprintf(stderr, "generate: %d quantized layers loaded from %s\n", n_q, quant);
    }
    AQ_TRY_GOTO(st, aq_tok_open(tokp, aq_model_config(m)->vocab_size, &tok, err), done);
    AQ_TRY_GOTO(st, aq_tok_encode_alloc(tok, prompt ? prompt : "", 1, 0, &ids, &n, err), done);
    if (n == 0) {
        st = aq_fail(err, AQ_ERR_ARG,
                     "%s has no BOS token to start from: give a --prompt (%s)", tokp,
                     aq_tok_describe(tok));
        goto done;
    }
    st = quant ? quantized_loop(m, tok, ids, n, steps, err) : decode_loop(m, tok, ids, n, steps, err);
done:
    free(ids);
    aq_tok_close(tok);
    aq_model_free(m);
    return st;
}

static int generate_main(int argc, char **argv)
{
    static const struct option opts[] = {{"tokenizer", required_argument, 0, 't'},
                                         {"steps", required_argument, 0, 'n'},
                                         {"prompt", required_argument, 0, 'p'},
                                         {"quantized", required_argument, 0, 'q'},
                                         {0, 0, 0, 0}};
    const char *tok = NULL, *prompt = NULL, *quant = NULL;
    char tok_default[4096];
    long steps = 256;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "t:n:p:q:", opts, NULL)) != -1) {
        switch (c) {
        case 't': tok = optarg; break;
        case 'p': prompt = optarg; break;
        case 'q': quant = optarg; break;
        case 'n':
            steps = strtol(optarg, &end, 10);
            if (*end || steps < 1)
                return aq_cli_usage(CMD, "invalid --steps '%s' (want a positive integer)", optarg);
            break;
        default: return aq_cli_usage(CMD, "unknown option");
        }
    }
    if (optind != argc - 1) return aq_cli_usage(CMD, "expected exactly one MODEL argument");
    if (!tok && ((quant && aq_default_tokenizer(quant, tok_default, sizeof tok_default) == 0) ||
                 aq_default_tokenizer(argv[optind], tok_default, sizeof tok_default) == 0))
        tok = tok_default;
    if (!tok)
        return aq_cli_usage(CMD, "--tokenizer TOK is required (no tokenizer.json or tokenizer.bin in %s)",
                            quant ? quant : argv[optind]);
    aq_error err = {0};
    if (generate(argv[optind], tok, quant, steps, prompt, &err) != AQ_OK) return aq_cli_fail(CMD, &err);
    return 0;
}

const aq_command aq_cmd_generate = {
    .name = CMD,
    .summary = "greedy text generation (KV cache) from BOS or a prompt",
    .run = generate_main,
    .help = generate_help,
    .needs_mpi = 0,
};
