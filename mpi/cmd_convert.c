/* cmd_convert.c — `adaquant convert IN.bin OUTDIR`: a llama2.c model .bin to an
 * HF-style directory (config.json + model.safetensors, F32, HF tensor names,
 * q/k rows permuted to HF's rotate-half RoPE; see io/llama2c.h).
 *
 * The directory appears all at once: everything is written into
 * OUTDIR.tmp.<pid> and that directory is renamed to OUTDIR at the end, so a
 * crash or error never leaves a half-written OUTDIR. An existing OUTDIR is
 * refused unless --force; even then it is only replaced when it looks like a
 * model directory (has config.json, no subdirectories), so a mistyped path
 * cannot wipe an unrelated tree. */
#define _GNU_SOURCE /* renameat2 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../io/atomic_file.h"
#include "../io/llama2c.h"
#include "../io/safetensors.h"
#include "../src/text/tokenizer.h"
#include "cli.h"

#define CMD "convert"

static void convert_help(FILE *out)
{
    fprintf(out,
            "usage: adaquant convert [--tokenizer TOK.bin] [--force] IN.bin OUTDIR\n"
            "\n"
            "Convert a llama2.c model (.bin, legacy 7 x int32 header) into an HF-style\n"
            "directory that every adaquant command (and HF transformers) can read:\n"
            "  OUTDIR/config.json         LlamaForCausalLM config (tie_word_embeddings true when\n"
            "                             the .bin shares the classifier with the embedding)\n"
            "  OUTDIR/model.safetensors   F32 tensors under HF Llama names, metadata\n"
            "                             {\"format\": \"pt\", \"source\": \"llama2.c\"}\n"
            "  OUTDIR/tokenizer.bin       a copy of TOK.bin, with --tokenizer\n"
            "\n"
            "Tensor names: token_embedding -> model.embed_tokens.weight; per layer N:\n"
            "rms_att -> model.layers.N.input_layernorm.weight, wq/wk/wv/wo ->\n"
            "self_attn.{q,k,v,o}_proj.weight, rms_ffn -> post_attention_layernorm.weight,\n"
            "w1/w3/w2 -> mlp.{gate,up,down}_proj.weight; rms_final -> model.norm.weight;\n"
            "wcls -> lm_head.weight (only when unshared). q_proj/k_proj rows are permuted per\n"
            "head from llama2.c's adjacent-pair RoPE to HF's rotate-half RoPE (as HF's\n"
            "convert_llama_weights_to_hf.py does); all values are copied bit-exactly.\n"
            "The input is fully validated first (exact file size, header, no NaN/Inf).\n"
            "\n"
            "options:\n"
            "  -t, --tokenizer TOK.bin  validate the llama2.c tokenizer against the model's\n"
            "                           vocab_size and copy it to OUTDIR/tokenizer.bin\n"
            "  -f, --force              replace an existing OUTDIR (only if it looks like a\n"
            "                           model directory: contains config.json and no\n"
            "                           subdirectories)\n"
            "  -h, --help               this text\n"
            "\n"
            "OUTDIR is written as OUTDIR.tmp.<pid> and renamed into place when complete.\n"
            "Exit status: 0 success, 1 error (message on stderr), 2 usage error.\n"
            "\n"
            "example: adaquant convert --tokenizer tok512.bin stories260K.bin stories260K-hf\n");
}

/* Check that dir looks like a model directory: no subdirectories and, if
 * need_config, a config.json. AQ_ERR_ARG naming dir otherwise. */
static aq_status check_model_dir(const char *dir, int need_config, aq_error *err)
{
    DIR *d = opendir(dir);
    if (!d) return aq_fail(err, AQ_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    char path[4096 + 512];
    int has_config = 0, ok = 1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(path, &sb) != 0 || S_ISDIR(sb.st_mode)) ok = 0;
        if (!strcmp(e->d_name, "config.json")) has_config = 1;
    }
    closedir(d);
    if (!ok || (need_config && !has_config))
        return aq_fail(err, AQ_ERR_ARG,
                       "%s exists and does not look like a model directory (%s); not replacing it",
                       dir, ok ? "no config.json" : "it has subdirectories");
    return AQ_OK;
}

/* Remove a directory of regular files (checked with check_model_dir). */
static aq_status remove_model_dir(const char *dir, int need_config, aq_error *err)
{
    AQ_TRY(check_model_dir(dir, need_config, err));
    DIR *d = opendir(dir);
    if (!d) return aq_fail(err, AQ_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    char path[4096 + 512];
    int ok = 1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0) ok = 0;
    }
    closedir(d);
    if (!ok || rmdir(dir) != 0)
        return aq_fail(err, AQ_ERR_IO, "%s: cannot remove the old directory: %s", dir,
                       strerror(errno));
    return AQ_OK;
}

/* fsync the directory holding path, so a rename in it is durable. */
static void sync_parent(const char *path)
{
    char *copy = strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

static aq_status write_safetensors(const aq_llama2c *m, const char *path, aq_error *err)
{
    aq_st_writer *w;
    AQ_TRY(aq_st_writer_new(&w, err));
    aq_status st = AQ_OK;
    for (size_t i = 0; st == AQ_OK && i < aq_l2c_count(m); i++) {
        const aq_tensor_view *v = aq_l2c_tensor(m, i);
        st = aq_st_writer_add(w, v->name, v->dtype, v->ndim, v->shape, v->data, err);
    }
    if (st == AQ_OK) st = aq_st_writer_meta(w, "format", "pt", err);
    if (st == AQ_OK) st = aq_st_writer_meta(w, "source", "llama2.c", err);
    if (st == AQ_OK) st = aq_st_writer_write(w, path, err);
    aq_st_writer_free(w);
    return st;
}

/* Validate the tokenizer for this vocab and copy its bytes to dst. */
static aq_status copy_tokenizer(const char *src, int vocab, const char *dst, aq_error *err)
{
    aq_tokenizer *t;
    AQ_TRY(aq_tok_open(src, vocab, &t, err));
    aq_tok_kind kind = aq_tok_kind_of(t);
    aq_tok_close(t);
    if (kind != AQ_TOK_LLAMA2C)
        return aq_fail(err, AQ_ERR_ARG,
                       "%s is not a llama2.c tokenizer .bin (convert copies one as tokenizer.bin; "
                       "a tokenizer.json is used as it is)",
                       src);
    FILE *f = fopen(src, "rb");
    if (!f) return aq_fail(err, AQ_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    aq_status st = AQ_OK;
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0 || !(buf = malloc((size_t)n + 1)) ||
        fread(buf, 1, (size_t)n, f) != (size_t)n)
        st = aq_fail(err, AQ_ERR_IO, "%s: cannot read the tokenizer", src);
    fclose(f);
    if (st == AQ_OK) st = aq_atomic_write_file(dst, buf, (size_t)n, err);
    free(buf);
    return st;
}

/* Write the whole directory under tmp (which must not exist yet). */
static aq_status write_dir(const aq_llama2c *m, const char *tok, const char *tmp, aq_error *err)
{
    if (mkdir(tmp, 0777) != 0)
        return aq_fail(err, AQ_ERR_IO, "%s: cannot create the temporary directory: %s", tmp,
                       strerror(errno));
    char path[4096 + 512];
    aq_llama_config cfg;
    aq_l2c_config(m, &cfg);
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    AQ_TRY(write_safetensors(m, path, err));
    snprintf(path, sizeof path, "%s/config.json", tmp);
    AQ_TRY(aq_llama_config_write_json(path, &cfg, err));
    if (tok) {
        snprintf(path, sizeof path, "%s/tokenizer.bin", tmp);
        AQ_TRY(copy_tokenizer(tok, cfg.vocab_size, path, err));
    }
    return AQ_OK;
}

/* Move tmp into place as out. With force, an existing model directory is
 * swapped with tmp atomically (renameat2 RENAME_EXCHANGE: readers see the old
 * or the new directory, never none) and the old one, now at tmp, removed;
 * file systems without RENAME_EXCHANGE get remove-then-rename. */
static aq_status publish(const char *tmp, const char *out, int force, aq_error *err)
{
    struct stat sb;
    if (lstat(out, &sb) == 0) {
        if (!force)
            return aq_fail(err, AQ_ERR_ARG, "%s already exists; use --force to replace it", out);
        if (!S_ISDIR(sb.st_mode))
            return aq_fail(err, AQ_ERR_ARG, "%s exists and is not a directory; not replacing it",
                           out);
        AQ_TRY(check_model_dir(out, 1, err));
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_EXCHANGE) == 0) {
            sync_parent(out);
            return remove_model_dir(tmp, 0, err);
        }
        if (errno != EINVAL && errno != ENOSYS)
            return aq_fail(err, AQ_ERR_IO, "cannot exchange %s and %s: %s", tmp, out,
                           strerror(errno));
        AQ_TRY(remove_model_dir(out, 1, err));
    }
    if (rename(tmp, out) != 0)
        return aq_fail(err, AQ_ERR_IO, "cannot rename %s to %s: %s", tmp, out, strerror(errno));
    sync_parent(out);
    return AQ_OK;
}

static int convert_run(int argc, char **argv)
{
    static const struct option opts[] = {{"tokenizer", required_argument, NULL, 't'},
                                         {"force", no_argument, NULL, 'f'},
                                         {NULL, 0, NULL, 0}};
    const char *tok = NULL;
    int force = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:f", opts, NULL)) != -1) {
        if (c == 't')
            tok = optarg;
        else if (c == 'f')
            force = 1;
        else
            return aq_cli_usage(CMD, "unknown option");
    }
    if (argc - optind != 2)
        return aq_cli_usage(CMD, "expected IN.bin and OUTDIR, got %d argument(s)", argc - optind);
    const char *in = argv[optind];
    char out[4000];
    aq_error err = {0};
    size_t ol = strlen(argv[optind + 1]);
    if (ol == 0 || ol >= sizeof out) return aq_cli_usage(CMD, "OUTDIR is empty or too long");
    memcpy(out, argv[optind + 1], ol + 1);
    while (ol > 1 && out[ol - 1] == '/')
        out[--ol] = '\0'; /* "dir/" -> "dir": tmp is a sibling */
    struct stat sb;
    /* Fail fast, before reading a large model. */
    if (!force && lstat(out, &sb) == 0) {
        aq_fail(&err, AQ_ERR_ARG, "%s already exists; use --force to replace it", out);
        return aq_cli_fail(CMD, &err);
    }
    aq_llama2c *m;
    if (aq_l2c_open(in, &m, &err) != AQ_OK) return aq_cli_fail(CMD, &err);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)getpid());
    aq_status st = write_dir(m, tok, tmp, &err);
    if (st == AQ_OK) st = publish(tmp, out, force, &err);
    if (st != AQ_OK) {
        aq_error ignore = {0};
        if (lstat(tmp, &sb) == 0) remove_model_dir(tmp, 0, &ignore);
        aq_l2c_close(m);
        return aq_cli_fail(CMD, &err);
    }
    aq_llama_config cfg;
    aq_l2c_config(m, &cfg);
    long long params = 0;
    for (size_t i = 0; i < aq_l2c_count(m); i++)
        params += aq_view_numel(aq_l2c_tensor(m, i));
    printf("converted %s -> %s: %zu tensors, %lld parameters, dim %d, %d layers, %d/%d heads, "
           "vocab %d "
           "(%s classifier)%s\n",
           in, out, aq_l2c_count(m), params, cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads,
           cfg.vocab_size, cfg.tied_embeddings ? "shared" : "separate",
           tok ? ", tokenizer.bin" : "");
    aq_l2c_close(m);
    return 0;
}

const aq_command aq_cmd_convert = {
    .name = CMD,
    .summary = "convert a llama2.c model .bin to an HF directory (config.json + safetensors)",
    .run = convert_run,
    .help = convert_help,
    .needs_mpi = 0,
};
