/* cmd_tokenize.c — `adaquant tokenize`: the ids of a whole text file as one
 * line of integers, or (--decode) the text of a file of ids. For users
 * checking their data against a tokenizer, and for the comparison tests
 * against independent tokenizers. No model: the tokenizer is read as it is
 * (a llama2.c .bin up to its end). */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/text/tokenizer.h"
#include "cli.h"

#define CMD "tokenize"

static void tokenize_help(FILE *out)
{
    fprintf(out,
            "usage: adaquant tokenize --tokenizer TOK --text FILE [--bos] [--decode]\n"
            "\n"
            "Prints the token ids of the whole FILE (one text, not split into documents) as\n"
            "one line of space-separated integers. No BOS unless --bos, never EOS.\n"
            "With --decode, FILE holds ids (integers separated by whitespace) and the\n"
            "decoded text is printed as is (special tokens give no text), so\n"
            "  adaquant tokenize -t TOK --text x.txt --bos > ids && adaquant tokenize -t TOK\n"
            "  --text ids --decode\n"
            "prints x.txt again when the vocabulary covers it. Text outside the vocabulary of\n"
            "a tokenizer without byte tokens is counted on stderr.\n"
            "\n"
            "options:\n"
            "  -t, --tokenizer TOK  llama2.c tokenizer .bin, tokenizer.json, or a model\n"
            "                       directory holding one (required)\n"
            "  -x, --text FILE      the text (or, with --decode, the ids) (required)\n"
            "  -b, --bos            start with BOS (tokenizer.json: apply the post-processor)\n"
            "  -d, --decode         ids -> text\n"
            "  -h, --help           this text\n"
            "\n"
            "example: adaquant tokenize -t tok512.bin --text story.txt\n");
}

/* The whole file, NUL-terminated. */
static aq_status slurp(const char *path, char **out, size_t *len, aq_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return aq_fail(err, AQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(f);
            return aq_fail_nomem(err, path, cap);
        }
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        char *grown = realloc(buf, cap *= 2);
        if (!grown) free(buf);
        buf = grown;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return aq_fail(err, AQ_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return AQ_OK;
}

static aq_status encode_file(const aq_tokenizer *tok, const char *path, int bos, aq_error *err)
{
    char *text;
    size_t len;
    AQ_TRY(slurp(path, &text, &len, err));
    size_t nul = strlen(text);
    if (nul < len) {
        free(text);
        return aq_fail(err, AQ_ERR_ARG, "%s: a NUL byte at byte offset %zu (not a text file?)",
                       path, nul);
    }
    int *ids;
    size_t n;
    aq_status st = aq_tok_encode_alloc(tok, text, bos, 0, &ids, &n, err);
    free(text);
    if (st != AQ_OK) {
        aq_error_prefix(err, "%s", path);
        return st;
    }
    for (size_t i = 0; i < n; i++)
        printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    free(ids);
    aq_tok_report_unknown(tok, "adaquant tokenize", stderr);
    return AQ_OK;
}

/* Whitespace-separated decimal ids, each in [0, vocab). */
static aq_status parse_ids(const char *path, const char *text, int vocab, int **out, size_t *n,
                           aq_error *err)
{
    size_t cap = 1024, k = 0;
    int *ids = malloc(cap * sizeof *ids);
    const char *p = text;
    while (ids) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        size_t at = (size_t)(p - text), toklen = strcspn(p, " \t\r\n\v\f");
        if (end == p || (*end && !isspace((unsigned char)*end)) || errno || v < 0 ||
            v >= vocab) {
            free(ids);
            return aq_fail(err, AQ_ERR_ARG,
                           "%s: id %zu at byte offset %zu is \"%.*s\": want an integer token id "
                           "in [0, %d)",
                           path, k, at, (int)(toklen < 40 ? toklen : 40), p, vocab);
        }
        if (k == cap) {
            int *grown = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!grown) free(ids);
            ids = grown;
            if (!ids) break;
        }
        ids[k++] = (int)v;
        p = end;
    }
    if (!ids) return aq_fail_nomem(err, "token ids", cap * sizeof(int));
    *out = ids;
    *n = k;
    return AQ_OK;
}

static aq_status decode_file(const aq_tokenizer *tok, const char *path, aq_error *err)
{
    char *text, *dec = NULL;
    size_t len, n = 0, dl = 0;
    int *ids = NULL;
    AQ_TRY(slurp(path, &text, &len, err));
    aq_status st = parse_ids(path, text, aq_tok_vocab_size(tok), &ids, &n, err);
    free(text);
    if (st == AQ_OK) st = aq_tok_decode_all(tok, ids, n, &dec, &dl, err);
    if (st == AQ_OK) fwrite(dec, 1, dl, stdout);
    free(dec);
    free(ids);
    return st;
}

static int tokenize_main(int argc, char **argv)
{
    static const struct option opts[] = {{"tokenizer", required_argument, 0, 't'},
                                         {"text", required_argument, 0, 'x'},
                                         {"bos", no_argument, 0, 'b'},
                                         {"decode", no_argument, 0, 'd'},
                                         {0, 0, 0, 0}};
    const char *tokp = NULL, *text = NULL;
    int bos = 0, decode = 0, c;
    while ((c = getopt_long(argc, argv, "t:x:bd", opts, NULL)) != -1) {
        switch (c) {
        case 't': tokp = optarg; break;
        case 'x': text = optarg; break;
        case 'b': bos = 1; break;
        case 'd': decode = 1; break;
        default: return aq_cli_usage(CMD, "unknown option");
        }
    }
    if (optind != argc) return aq_cli_usage(CMD, "unexpected argument '%s'", argv[optind]);
    if (!tokp) return aq_cli_usage(CMD, "--tokenizer is required");
    if (!text) return aq_cli_usage(CMD, "--text is required");
    if (bos && decode) return aq_cli_usage(CMD, "--bos applies to encoding, not to --decode");
    aq_error err = {0};
    aq_tokenizer *tok;
    if (aq_tok_open(tokp, AQ_TOK_NO_MODEL, &tok, &err) != AQ_OK) return aq_cli_fail(CMD, &err);
    aq_status st = decode ? decode_file(tok, text, &err) : encode_file(tok, text, bos, &err);
    aq_tok_close(tok);
    if (st != AQ_OK) return aq_cli_fail(CMD, &err);
    return fflush(stdout) == 0 ? 0 : 1;
}

const aq_command aq_cmd_tokenize = {
    .name = CMD,
    .summary = "token ids of a text file (or --decode ids to text), any tokenizer",
    .run = tokenize_main,
    .help = tokenize_help,
    .needs_mpi = 0,
};
