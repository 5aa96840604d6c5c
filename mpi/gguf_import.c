/* gguf_import.c — a llama.cpp GGUF file's weights as a model's quantized-mode
 * overrides (export_gguf.h, aq_gguf_import), so `adaquant eval MODEL
 * --quantized FILE.gguf` scores llama.cpp's own quantized files, and ours,
 * under our evaluation: perplexity, KL(FP || file) and top-1 agreement against
 * MODEL's float weights (docs/EXPORT.md "Scoring a GGUF file").
 *
 * It is the inverse of export_gguf.c's layout: the same tensor names; q/k rows
 * back from the interleaved RoPE order to rotate-half (GGUF row h*hs + 2i + j
 * is HF row h*hs + j*hs/2 + i); each tensor dequantized with ggml's arithmetic
 * (src/quant/ggml_blocks.h, bit-identical to its dequantize_row_*). The file
 * is run with MODEL's architecture, so its hparams must equal MODEL's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/checkpoint.h"
#include "../io/gguf.h"
#include "../src/model/model_internal.h"
#include "../src/quant/ggml_blocks.h"
#include "export_gguf.h"

int aq_gguf_is_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    int yes = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    if (f) fclose(f);
    return yes;
}

/* An integer hparam of the file equal to MODEL's (absent: def, < 0 = required). */
static aq_status same_int(const aq_gguf *g, const char *path, const char *key, int64_t model, int64_t def,
                          aq_error *err)
{
    int64_t v;
    aq_error e = {0};
    aq_status st = aq_gguf_get_i64(g, key, &v, &e);
    if (st == AQ_ERR_NOTFOUND && def >= 0) v = def;
    else if (st != AQ_OK) return aq_fail(err, st, "%s: %s", path, e.msg);
    if (v != model)
        return aq_fail(err, AQ_ERR_SHAPE, "%s: %s is %lld, MODEL's is %lld (the file is run with MODEL's "
                                          "architecture: give the model it was made from)",
                       path, key, (long long)v, (long long)model);
    return AQ_OK;
}

/* A float hparam: the file stores float32, MODEL's config holds a float too. */
static aq_status same_float(const aq_gguf *g, const char *path, const char *key, float model, double def,
                            aq_error *err)
{
    double v = def;
    aq_error e = {0};
    aq_status st = aq_gguf_get_f64(g, key, &v, &e);
    if (st != AQ_OK && st != AQ_ERR_NOTFOUND) return aq_fail(err, st, "%s: %s", path, e.msg);
    if ((float)v != model)
        return aq_fail(err, AQ_ERR_SHAPE, "%s: %s is %g, MODEL's is %g (the evaluation runs MODEL's value)", path,
                       key, v, (double)model);
    return AQ_OK;
}

static aq_status check_hparams(const aq_gguf *g, const aq_llama_config *c, const char *path, aq_error *err)
{
    aq_gguf_str arch;
    AQ_TRY(aq_gguf_get_str(g, "general.architecture", &arch, err));
    if (arch.len != 5 || memcmp(arch.ptr, "llama", 5))
        return aq_fail(err, AQ_ERR_ARG, "%s: architecture '%.*s': only llama is read", path, (int)arch.len,
                       arch.ptr);
    if (c->qk_norm || c->rope_type != AQ_ROPE_DEFAULT || aq_llama_window(c) > 0)
        return aq_fail(err, AQ_ERR_ARG, "%s: MODEL has q/k norms, rope scaling or a sliding window, which the "
                                        "llama architecture's files do not hold", path);
    AQ_TRY(same_int(g, path, "llama.block_count", c->n_layers, -1, err));
    AQ_TRY(same_int(g, path, "llama.embedding_length", c->dim, -1, err));
    AQ_TRY(same_int(g, path, "llama.feed_forward_length", c->hidden_dim, -1, err));
    AQ_TRY(same_int(g, path, "llama.attention.head_count", c->n_heads, -1, err));
    AQ_TRY(same_int(g, path, "llama.attention.head_count_kv", c->n_kv_heads, c->n_heads, err));
    AQ_TRY(same_float(g, path, "llama.attention.layer_norm_rms_epsilon", c->norm_eps, -1.0, err));
    return same_float(g, path, "llama.rope.freq_base", c->rope_theta, 10000.0, err); /* llama.cpp's default */
}

/* One row of n weights of ggml type `type` as F32 (F32 and F16 are not
 * block formats: ggml_blocks.h has the others). */
static aq_status decode_row(int type, const uint8_t *src, size_t n, float *out, aq_error *err)
{
    if (type == AQ_GGML_F32) {
        memcpy(out, src, n * sizeof *out);
        return AQ_OK;
    }
    if (type != AQ_GGML_F16) return aq_ggml_dequantize_row((aq_ggml_type)type, src, n, out, err);
    for (size_t i = 0; i < n; i++) out[i] = aq_fp16_to_fp32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
    return AQ_OK;
}

/* Tensor name as F32 [rows, cols] (cols 0: a vector of rows) into a new
 * buffer, q/k rows (heads > 0, head size hs) back in rotate-half order.
 * *out NULL when the tensor is absent and optional. */
static aq_status read_tensor(const aq_gguf *g, const char *path, const char *name, int rows, int cols, int heads,
                             int optional, float **out, aq_error *err)
{
    *out = NULL;
    const aq_gguf_tensor *t = aq_gguf_find_tensor(g, name);
    if (!t) return optional ? AQ_OK : aq_fail(err, AQ_ERR_NOTFOUND, "%s: no tensor %s", path, name);
    int64_t n0 = cols ? cols : rows, n1 = cols ? rows : 1;
    if (t->ne[0] != n0 || t->ne[1] != n1 || t->ne[2] != 1 || t->ne[3] != 1)
        return aq_fail(err, AQ_ERR_SHAPE, "%s: %s is [%lld, %lld], MODEL needs [%lld, %lld] (ne order)", path, name,
                       (long long)t->ne[0], (long long)t->ne[1], (long long)n0, (long long)n1);
    size_t rb = t->nbytes / (size_t)n1; /* the reader checked nbytes against the type's table */
    float *w = malloc((size_t)n0 * (size_t)n1 * sizeof *w);
    if (!w) return aq_fail_nomem(err, name, (size_t)n0 * (size_t)n1 * sizeof *w);
    const uint8_t *src = t->data;
    int hs = heads > 0 ? rows / heads : 0;
    aq_status st = AQ_OK;
    aq_error e = {0};
    for (int64_t r = 0; r < n1 && st == AQ_OK; r++) {
        /* GGUF row r = h*hs + 2i + j holds HF row h*hs + j*hs/2 + i */
        int64_t h = hs ? r / hs : 0, k = hs ? r % hs : 0, dst = hs ? h * hs + (k % 2) * (hs / 2) + k / 2 : r;
        st = decode_row(t->type, src + (size_t)r * rb, (size_t)n0, w + dst * n0, &e);
    }
    if (st == AQ_OK && !cols && hs) { /* a q/k bias vector: one value per row */
        float *v = malloc((size_t)rows * sizeof *v);
        if (!v) st = aq_fail_nomem(&e, name, (size_t)rows * sizeof *v);
        for (int r = 0; st == AQ_OK && r < rows; r++) v[(r / hs) * hs + (r % hs % 2) * (hs / 2) + r % hs / 2] = w[r];
        if (st == AQ_OK) memcpy(w, v, (size_t)rows * sizeof *v);
        free(v);
    }
    if (st != AQ_OK) {
        free(w);
        return aq_fail(err, st, "%s: tensor %s (%s): %s", path, name,
                       aq_ggml_type_name(t->type) ? aq_ggml_type_name(t->type) : "unknown type", e.msg);
    }
    *out = w;
    return AQ_OK;
}

/* Block b's two norms and seven linears. */
static aq_status import_block(aq_model *m, const aq_gguf *g, const char *path, int b, int *n, aq_error *err)
{
    const aq_llama_config *c = &m->cfg;
    char name[96];
    for (int which = 0; which < 2; which++) {
        float *v;
        snprintf(name, sizeof name, "blk.%d.%s.weight", b, which ? "ffn_norm" : "attn_norm");
        AQ_TRY(read_tensor(g, path, name, c->dim, 0, 0, 0, &v, err));
        aq_status st = aq_model_set_norm_override(m, b, which, v, err);
        free(v);
        AQ_TRY(st);
        ++*n;
    }
    for (int l = 0; l < AQ_LIN_COUNT; l++) {
        int rows, cols, heads = l == AQ_LIN_Q ? c->n_heads : l == AQ_LIN_K ? c->n_kv_heads : 0;
        aq_model_lin_shape(m, (aq_linear)l, &rows, &cols);
        float *w, *bias = NULL;
        snprintf(name, sizeof name, "blk.%d.%s.weight", b, aq_gguf_lin_name((aq_linear)l));
        AQ_TRY(read_tensor(g, path, name, rows, cols, heads, 0, &w, err));
        snprintf(name, sizeof name, "blk.%d.%s.bias", b, aq_gguf_lin_name((aq_linear)l));
        aq_status st = read_tensor(g, path, name, rows, 0, heads, 1, &bias, err);
        aq_linear_override ov = {.weight = w, .bias = bias}; /* no bias tensor: none, as llama.cpp runs it */
        if (st == AQ_OK) st = aq_model_set_override(m, b, (aq_linear)l, &ov, err);
        free(w);
        free(bias);
        AQ_TRY(st);
        ++*n;
    }
    return AQ_OK;
}

static aq_status import_all(aq_model *m, const aq_gguf *g, const char *path, int *n, aq_error *err)
{
    const aq_llama_config *c = &m->cfg;
    AQ_TRY(check_hparams(g, c, path, err));
    for (int b = 0; b < c->n_layers; b++) AQ_TRY(import_block(m, g, path, b, n, err));
    float *v, *head = NULL;
    AQ_TRY(read_tensor(g, path, "output_norm.weight", c->dim, 0, 0, 0, &v, err));
    aq_status st = aq_model_set_norm_override(m, c->n_layers, 0, v, err);
    free(v);
    AQ_TRY(st);
    AQ_TRY(read_tensor(g, path, "token_embd.weight", c->vocab_size, c->dim, 0, 0, &v, err));
    st = aq_model_set_embed_override(m, v, err);
    if (st == AQ_OK) st = read_tensor(g, path, "output.weight", c->vocab_size, c->dim, 0, 1, &head, err);
    aq_linear_override ov = {.weight = head ? head : v}; /* none: llama.cpp ties it to token_embd */
    if (st == AQ_OK) st = aq_model_set_override(m, c->n_layers, AQ_LIN_HEAD, &ov, err);
    free(v);
    free(head);
    if (st == AQ_OK) *n += 3; /* final norm, embedding, classifier */
    return st;
}

aq_status aq_gguf_import(aq_model *m, const char *path, int *n_loaded, aq_error *err)
{
    aq_gguf *g;
    *n_loaded = 0;
    AQ_TRY(aq_gguf_open(path, &g, err));
    aq_status st = import_all(m, g, path, n_loaded, err);
    aq_gguf_close(g);
    return st;
}
