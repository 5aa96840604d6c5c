/* cmd_inspect.c — `adaquant inspect FILE|DIR [--json]`: what a checkpoint holds.
 *
 * Lists every tensor (name, dtype, shape, bytes), the safetensors metadata,
 * the Llama config if there is one, and the total parameter count. Works on
 * anything aq_ckpt_open reads: a safetensors file, an HF directory (single or
 * sharded; extra files such as quantization.json are ignored) and a llama2.c
 * .bin. Every tensor is resolved, so a corrupt shard makes inspect fail. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/checkpoint.h"
#include "cli.h"

static const char *kind_name(aq_ckpt_kind k)
{
    switch (k) {
    case AQ_CKPT_SAFETENSORS: return "safetensors file";
    case AQ_CKPT_HF_DIR: return "HF directory";
    case AQ_CKPT_HF_SHARDED: return "HF directory (sharded)";
    case AQ_CKPT_LLAMA2C: return "llama2.c model";
    }
    return "?";
}

/* 1234567 -> "1,234,567" */
static const char *commas(long long v, char *buf, size_t cap)
{
    char raw[32];
    int n = snprintf(raw, sizeof raw, "%lld", v), o = 0;
    for (int i = 0; i < n && (size_t)o + 2 < cap; i++) {
        if (i && raw[i - 1] != '-' && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = '\0';
    return buf;
}

static void shape_text(const aq_tensor_view *v, char *buf, size_t cap)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < v->ndim && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", d ? ", " : "", (long long)v->shape[d]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Resolves every tensor once (opening shards); fails on the first bad one. */
static aq_status load_views(aq_checkpoint *ck, const aq_tensor_view ***out, aq_error *err)
{
    size_t n = aq_ckpt_count(ck);
    const aq_tensor_view **v = calloc(n ? n : 1, sizeof *v);
    if (!v) return aq_fail_nomem(err, "tensor list", n * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        aq_status st = aq_ckpt_get(ck, aq_ckpt_name(ck, i), &v[i], err);
        if (st != AQ_OK) {
            free(v);
            return st;
        }
    }
    *out = v;
    return AQ_OK;
}

static const char *rope_name(int t)
{
    return t == AQ_ROPE_LINEAR ? "linear" : t == AQ_ROPE_DYNAMIC ? "dynamic" : t == AQ_ROPE_LLAMA3 ? "llama3" : "none";
}

static json_t *config_json(const aq_llama_config *c)
{
    json_t *j = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:b, s:b, s:b, s:b, s:s, "
                          "s:i}",
                          "model_type", aq_model_type_name(c->model_type), "hidden_size", c->dim,
                          "intermediate_size", c->hidden_dim, "num_hidden_layers", c->n_layers,
                          "num_attention_heads", c->n_heads, "num_key_value_heads", c->n_kv_heads,
                          "head_dim", aq_llama_head_dim(c), "vocab_size", c->vocab_size,
                          "max_position_embeddings", c->max_seq_len, "rms_norm_eps", (double)c->norm_eps,
                          "rope_theta", (double)c->rope_theta, "tie_word_embeddings", c->tied_embeddings,
                          "qkv_bias", c->qkv_bias, "o_bias", c->o_bias, "mlp_bias", c->mlp_bias, "qk_norm",
                          c->qk_norm, "rope_scaling", rope_name(c->rope_type), "sliding_window",
                          c->sliding_window);
    if (j && c->rope_type != AQ_ROPE_DEFAULT)
        json_object_set_new(j, "rope_factor", json_real((double)c->rope_factor));
    return j;
}

static int print_json(aq_checkpoint *ck, const aq_tensor_view **v, long long params,
                      long long bytes, const aq_llama_config *cfg, const aq_error *cfg_err)
{
    json_t *root = json_object(), *tensors = json_array(), *meta = json_object();
    for (size_t i = 0; i < aq_ckpt_count(ck); i++) {
        json_t *shape = json_array();
        for (int d = 0; d < v[i]->ndim; d++)
            json_array_append_new(shape, json_integer(v[i]->shape[d]));
        json_array_append_new(tensors, json_pack("{s:s, s:s, s:o, s:I}", "name", v[i]->name,
                                                 "dtype", aq_dtype_name(v[i]->dtype), "shape",
                                                 shape, "bytes", (json_int_t)v[i]->nbytes));
    }
    for (size_t i = 0; i < aq_ckpt_meta_count(ck); i++) {
        const char *k, *val;
        aq_ckpt_meta_at(ck, i, &k, &val);
        json_object_set_new(meta, k, json_string(val));
    }
    json_object_set_new(root, "path", json_string(aq_ckpt_path(ck)));
    json_object_set_new(root, "format", json_string(kind_name(aq_ckpt_get_kind(ck))));
    json_object_set_new(root, "tensors", tensors);
    json_object_set_new(root, "metadata", meta);
    json_object_set_new(root, "config", cfg_err->code ? json_null() : config_json(cfg));
    if (cfg_err->code && cfg_err->code != AQ_ERR_NOTFOUND)
        json_object_set_new(root, "config_error", json_string(cfg_err->msg));
    json_object_set_new(root, "parameters", json_integer(params));
    json_object_set_new(root, "bytes", json_integer(bytes));
    int rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) == 0 ? 0 : 1;
    fputc('\n', stdout);
    json_decref(root);
    return rc;
}

static void print_text(aq_checkpoint *ck, const aq_tensor_view **v, long long params,
                       long long bytes, const aq_llama_config *c, const aq_error *cfg_err)
{
    char b1[64], b2[64], sh[256];
    size_t n = aq_ckpt_count(ck), w = 4;
    for (size_t i = 0; i < n; i++)
        w = strlen(v[i]->name) > w ? strlen(v[i]->name) : w;
    printf("path: %s\nformat: %s\ntensors: %zu\n", aq_ckpt_path(ck),
           kind_name(aq_ckpt_get_kind(ck)), n);
    printf("  %-*s  %-5s  %-20s  %s\n", (int)w, "name", "dtype", "shape", "bytes");
    for (size_t i = 0; i < n; i++) {
        shape_text(v[i], sh, sizeof sh);
        printf("  %-*s  %-5s  %-20s  %s\n", (int)w, v[i]->name, aq_dtype_name(v[i]->dtype), sh,
               commas((long long)v[i]->nbytes, b1, sizeof b1));
    }
    printf("metadata: %s\n", aq_ckpt_meta_count(ck) ? "" : "none");
    for (size_t i = 0; i < aq_ckpt_meta_count(ck); i++) {
        const char *k, *val;
        aq_ckpt_meta_at(ck, i, &k, &val);
        printf("  %s: %s\n", k, val);
    }
    if (cfg_err->code == AQ_ERR_NOTFOUND)
        printf("config: none\n");
    else if (cfg_err->code)
        printf("config: unreadable: %s\n", cfg_err->msg);
    else
        printf(
            "config: %s: hidden_size %d, intermediate_size %d, num_hidden_layers %d, "
            "num_attention_heads %d, num_key_value_heads %d, head_dim %d, vocab_size %d, "
            "max_position_embeddings %d, rms_norm_eps %g, rope_theta %g, tie_word_embeddings %s%s%s%s%s%s%s\n",
            aq_model_type_name(c->model_type), c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
            aq_llama_head_dim(c), c->vocab_size, c->max_seq_len, (double)c->norm_eps, (double)c->rope_theta,
            c->tied_embeddings ? "true" : "false", c->qkv_bias ? ", q/k/v biases" : "", c->o_bias ? ", o bias" : "",
            c->mlp_bias ? ", mlp biases" : "", c->qk_norm ? ", q/k norms" : "",
            c->rope_type != AQ_ROPE_DEFAULT ? ", rope_scaling " : "",
            c->rope_type != AQ_ROPE_DEFAULT ? rope_name(c->rope_type) : "");
    size_t n_quant = 0;
    for (size_t i = 0; i < aq_ckpt_meta_count(ck); i++) {
        const char *k, *val;
        aq_ckpt_meta_at(ck, i, &k, &val);
        n_quant += strncmp(k, "quant.", 6) == 0;
    }
    if (n_quant)
        /* packed codes: element counts are bytes, not weights (docs/FORMAT.md) */
        printf("quantized layers: %zu (packed; per-layer options and parameter counts in "
               "quantization.json)\nstored elements: %s\nbytes: %s\n",
               n_quant, commas(params, b1, sizeof b1), commas(bytes, b2, sizeof b2));
    else
        printf("parameters: %s\nbytes: %s\n", commas(params, b1, sizeof b1),
               commas(bytes, b2, sizeof b2));
}

static int inspect_run(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    int as_json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'j')
            as_json = 1;
        else
            return aq_cli_usage("inspect", "unknown option");
    }
    if (argc - optind != 1)
        return aq_cli_usage("inspect", "expected exactly one FILE or DIR, got %d", argc - optind);
    aq_error err = {0}, cfg_err = {0};
    aq_checkpoint *ck;
    const aq_tensor_view **v = NULL;
    if (aq_ckpt_open(argv[optind], &ck, &err) != AQ_OK) return aq_cli_fail("inspect", &err);
    if (load_views(ck, &v, &err) != AQ_OK) {
        aq_ckpt_close(ck);
        return aq_cli_fail("inspect", &err);
    }
    long long params = 0, bytes = 0;
    for (size_t i = 0; i < aq_ckpt_count(ck); i++) {
        params += aq_view_numel(v[i]);
        bytes += (long long)v[i]->nbytes;
    }
    aq_llama_config cfg;
    aq_ckpt_llama_config(ck, &cfg, &cfg_err);
    int rc = 0;
    if (as_json)
        rc = print_json(ck, v, params, bytes, &cfg, &cfg_err);
    else
        print_text(ck, v, params, bytes, &cfg, &cfg_err);
    free(v);
    aq_ckpt_close(ck);
    if (fflush(stdout) != 0) rc = 1;
    return rc;
}

static void inspect_help(FILE *out)
{
    fprintf(
        out,
        "usage: adaquant inspect FILE|DIR [--json]\n\n"
        "Describe a model checkpoint: every tensor (name, dtype, shape, bytes), the safetensors\n"
        "__metadata__, the Llama config, and the total parameter count (sum of the tensors'\n"
        "element counts).\n\n"
        "FILE|DIR may be:\n"
        "  a .safetensors file;\n"
        "  an HF directory with model.safetensors, or with model.safetensors.index.json and its\n"
        "    shards (config.json is read if present; other files are ignored, so quantized\n"
        "    output directories work too);\n"
        "  a llama2.c model .bin (shown under HF tensor names, config from its header).\n"
        "The file is validated completely (header, offsets, sizes); a malformed file is an\n"
        "error naming the file and the tensor or byte offset.\n\n"
        "options:\n"
        "  --json      print one JSON object: path, format, tensors[{name, dtype, shape, bytes}],\n"
        "              metadata{}, config (null if none), parameters, bytes\n"
        "  -h, --help  this text\n\n"
        "exit status: 0 success, 1 unreadable or malformed input, 2 usage error.\n"
        "example: adaquant inspect models/stories260K/stories260K.bin\n"
        "         ... parameters: 260,032\n");
}

const aq_command aq_cmd_inspect = {
    .name = "inspect",
    .summary = "list the tensors, metadata, config and parameter count of a checkpoint",
    .run = inspect_run,
    .help = inspect_help,
    .needs_mpi = 0,
};
