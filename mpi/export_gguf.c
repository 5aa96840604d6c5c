/* export_gguf.c — a loaded model as a llama.cpp GGUF (architecture `llama`).
 *
 * Weights are streamed: each tensor is converted row by row while the writer
 * writes it, so the only full copy of the model is the aq_model itself.
 * The q/k row order: our engine (and HF) apply rotate-half RoPE, llama.cpp's
 * `llama` architecture applies Meta's interleaved RoPE (pairs 2i, 2i+1). Its
 * HF converter (convert_hf_to_gguf.py, LlamaModel.permute) therefore reorders
 * the rows of q_proj/k_proj within each head: GGUF row h*hs + 2i + j is HF
 * row h*hs + j*hs/2 + i. We do the same (docs/EXPORT.md). */
#include "export_gguf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../io/checkpoint.h"
#include "../io/gguf.h"
#include "../src/adaquant/adaquant.h"
#include "../src/model/model_internal.h"
#include "../src/quant/ggml_blocks.h"

/* One streamed weight matrix [rows, cols] (row-major, GGUF ne = {cols, rows}). */
typedef struct ex_tensor {
    const float *w;
    int rows, cols;
    int heads; /* > 0: q/k rows reordered for interleaved RoPE, per head */
    int type;
    const uint8_t *blocks; /* non-NULL: the stored ggml rows of `type`, copied as they are */
    size_t row_bytes;
} ex_tensor;

int aq_export_parse_type(const char *s)
{
    if (!strcasecmp(s, "F32")) return AQ_GGML_F32;
    if (!strcasecmp(s, "F16")) return AQ_GGML_F16;
    const aq_ggml_format *f = aq_ggml_format_by_name(s);
    return f ? (int)f->type : -1;
}

/* llama.cpp's general.file_type (enum llama_ftype) of a uniform type; the
 * K-quants map to their _S variants (informational only: llama.cpp reads
 * every tensor's own type). */
static uint32_t ftype_of(int t)
{
    switch (t) {
    case AQ_GGML_F32: return 0;
    case AQ_GGML_F16: return 1;
    case AQ_GGML_Q4_0: return 2;
    case AQ_GGML_Q4_1: return 3;
    case AQ_GGML_Q8_0: return 7;
    case AQ_GGML_Q5_0: return 8;
    case AQ_GGML_Q5_1: return 9;
    case AQ_GGML_Q2_K: return 10;
    case AQ_GGML_Q3_K: return 11;
    case AQ_GGML_Q4_K: return 14;
    case AQ_GGML_Q5_K: return 16;
    case AQ_GGML_Q6_K: return 18;
    default: return 0;
    }
}

/* The type a row of `cols` gets: the requested one if its block divides
 * cols, else Q8_0, else F16 (llama.cpp's fallback direction), with a log line. */
static int fit_type(int want, int cols, const char *name)
{
    int t = want;
    while (cols % aq_ggml_block_size(t) != 0)
        t = t == AQ_GGML_Q8_0 ? AQ_GGML_F16 : AQ_GGML_Q8_0;
    if (t != want)
        fprintf(stderr, "export: %s: rows of %d are not a multiple of %s's block of %lld, using %s\n",
                name, cols, aq_ggml_type_name(want), (long long)aq_ggml_block_size(want),
                aq_ggml_type_name(t));
    return t;
}

/* The source row of GGUF row r (see the top comment). */
static int src_row(const ex_tensor *t, int r)
{
    if (t->heads <= 0) return r;
    int hs = t->rows / t->heads, h = r / hs, k = r % hs;
    return h * hs + (k % 2) * (hs / 2) + k / 2;
}

static aq_status stream_tensor(void *ctx, aq_gguf_sink *sink, aq_error *err)
{
    const ex_tensor *t = ctx;
    size_t rb = (size_t)t->cols * 4;
    if (t->type == AQ_GGML_F16) rb = (size_t)t->cols * 2;
    else if (t->type != AQ_GGML_F32)
        AQ_TRY(aq_ggml_row_bytes((aq_ggml_type)t->type, (size_t)t->cols, &rb, err));
    uint8_t *buf = malloc(rb);
    if (!buf) return aq_fail(err, AQ_ERR_NOMEM, "export: row buffer of %zu bytes", rb);
    aq_status st = AQ_OK;
    for (int r = 0; r < t->rows && st == AQ_OK; r++) {
        const float *x = t->w + (size_t)src_row(t, r) * (size_t)t->cols;
        if (t->blocks) memcpy(buf, t->blocks + (size_t)src_row(t, r) * rb, rb); /* rows are whole blocks */
        else if (t->type == AQ_GGML_F32) memcpy(buf, x, rb); /* GGUF is little-endian, as the hosts we build on */
        else if (t->type == AQ_GGML_F16)
            for (int c = 0; c < t->cols; c++) {
                uint16_t h = aq_fp32_to_fp16(x[c]);
                memcpy(buf + 2 * (size_t)c, &h, 2);
            }
        else st = aq_ggml_quantize_row((aq_ggml_type)t->type, x, (size_t)t->cols, buf, err);
        if (st == AQ_OK) st = aq_gguf_sink_write(sink, buf, rb, err);
    }
    free(buf);
    return st;
}

/* Architectures and variants this exporter maps onto llama.cpp's `llama`. */
aq_status aq_export_gguf_check_config(const aq_llama_config *c, const aq_export_opts *o, aq_error *err)
{
    /* Qwen2 is a Llama block with q/k/v biases: llama.cpp's `llama` graph
     * computes it exactly (all seven biases optional there), and unlike its
     * `qwen2` graph it also holds the biases calibration gives o/gate/up/down. */
    if (c->model_type != AQ_MT_LLAMA && c->model_type != AQ_MT_MISTRAL && c->model_type != AQ_MT_QWEN2)
        return aq_fail(err, AQ_ERR_ARG, "export: architecture %s is not supported yet",
                       aq_model_type_name(c->model_type));
    if (c->qk_norm)
        return aq_fail(err, AQ_ERR_ARG, "export: per-head q/k norms (Qwen3) are not supported yet");
    if (c->rope_type != AQ_ROPE_DEFAULT)
        return aq_fail(err, AQ_ERR_ARG, "export: rope_scaling is not supported yet");
    if (aq_llama_window(c) > 0)
        return aq_fail(err, AQ_ERR_ARG, "export: sliding-window attention is not supported yet");
    /* A K-quant that fits no weight at all is a mistake, not a fallback. */
    int64_t blk = aq_ggml_block_size(o->type);
    int dims[3] = {c->dim, c->hidden_dim, c->n_heads * aq_llama_head_dim(c)}, fits = 0;
    for (int i = 0; i < 3; i++) fits |= dims[i] % blk == 0;
    if (!fits)
        return aq_fail(err, AQ_ERR_ARG, "export: --type %s needs rows that are multiples of %lld, and "
                                        "no weight of this model has them (row lengths %d, %d, %d)",
                       aq_ggml_type_name(o->type), (long long)blk, dims[0], dims[1], dims[2]);
    return AQ_OK;
}

static aq_status check_model(const aq_model *m, const aq_export_opts *o, aq_error *err)
{
    const aq_llama_config *c = &m->cfg;
    AQ_TRY(aq_export_gguf_check_config(c, o, err));
    if (!o->quantized) return AQ_OK;
    for (int i = 0; i <= c->n_layers * AQ_LIN_COUNT; i++) {
        const aq_ovr *v = &m->ovr[i];
        if (!v->weight) continue;
        /* llama.cpp's llama architecture has optional biases on the 7 block
         * linears, none on the classifier. */
        for (int r = 0; i == c->n_layers * AQ_LIN_COUNT && v->bias && r < c->vocab_size; r++)
            if (v->bias[r] != 0.0f)
                return aq_fail(err, AQ_ERR_ARG, "export: the quantized classifier has a calibrated "
                                                "bias, which llama.cpp's llama architecture cannot hold");
        if (v->a_bits > 0 && v->a_bits < 16)
            return aq_fail(err, AQ_ERR_ARG, "export: quantized layer %d quantizes its activations "
                                            "to %d bits; GGUF weights cannot express that", i, v->a_bits);
    }
    return AQ_OK;
}

static aq_status add_hparams(aq_gguf_writer *w, const aq_llama_config *c, const aq_export_opts *o,
                             aq_error *err)
{
    int hs = aq_llama_head_dim(c);
    AQ_TRY(aq_gguf_set_str(w, "general.architecture", "llama", err));
    AQ_TRY(aq_gguf_set_str(w, "general.name", o->name, err));
    AQ_TRY(aq_gguf_set_u32(w, "general.file_type", ftype_of(o->type), err));
    if (o->type != AQ_GGML_F32 && o->type != AQ_GGML_F16)
        AQ_TRY(aq_gguf_set_u32(w, "general.quantization_version", 2, err));
    AQ_TRY(aq_gguf_set_u32(w, "llama.context_length", (uint32_t)c->max_seq_len, err));
    AQ_TRY(aq_gguf_set_u32(w, "llama.embedding_length", (uint32_t)c->dim, err));
    AQ_TRY(aq_gguf_set_u32(w, "llama.block_count", (uint32_t)c->n_layers, err));
    AQ_TRY(aq_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)c->hidden_dim, err));
    AQ_TRY(aq_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads, err));
    AQ_TRY(aq_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads, err));
    AQ_TRY(aq_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps, err));
    AQ_TRY(aq_gguf_set_f32(w, "llama.rope.freq_base", c->rope_theta, err));
    AQ_TRY(aq_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)hs, err));
    AQ_TRY(aq_gguf_set_u32(w, "llama.attention.key_length", (uint32_t)hs, err));
    AQ_TRY(aq_gguf_set_u32(w, "llama.attention.value_length", (uint32_t)hs, err));
    return aq_gguf_set_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size, err);
}

/* Add one 2-D weight, streamed; cols 0 = a 1-D F32 vector of `rows` (a bias:
 * q/k biases are reordered like their weights' rows). */
static aq_status add_matrix(aq_gguf_writer *w, ex_tensor *t, const char *name, const float *data,
                            int rows, int cols, int heads, int type, const uint8_t *blocks, aq_error *err)
{
    t->blocks = blocks;
    t->w = data;
    t->rows = rows;
    t->cols = cols ? cols : 1;
    t->heads = heads;
    t->type = cols ? type : AQ_GGML_F32;
    int64_t ne[2] = {cols, rows};
    if (!cols) return aq_gguf_add_tensor_stream(w, name, 1, ne + 1, t->type, stream_tensor, t, err);
    return aq_gguf_add_tensor_stream(w, name, 2, ne, t->type, stream_tensor, t, err);
}

/* The weight a forward of this mode uses for (block, which). */
static const float *weight_of(const aq_model *m, int block, aq_linear which, int quantized)
{
    int i = aq_model_lin_index(m, block, which);
    if (quantized && m->ovr[i].weight) return m->ovr[i].weight;
    return which == AQ_LIN_HEAD ? m->head : aq_model_lin_weight(m, block, which);
}

/* The bias a forward of this mode uses (an override's bias replaces the
 * model's; NULL = none). */
static const float *bias_of(const aq_model *m, int block, aq_linear which, int quantized)
{
    int i = aq_model_lin_index(m, block, which);
    if (quantized && m->ovr[i].weight) return m->ovr[i].bias;
    return aq_model_linear_bias(m, block, which);
}

/* The stored blocks of linear (b, l) when the quantized checkpoint holds it
 * in a ggml block type (src/adaquant/qlayer.h "qblocks"): its rows go out
 * byte for byte. The loader validated them before (aq_model_load_quantized). */
static aq_status native_blocks(aq_checkpoint *ck, int b, aq_linear l, int rows, int cols, ex_tensor *t,
                               aq_error *err)
{
    char pre[200], key[256];
    aq_linear_prefix(b, l, pre, sizeof pre);
    snprintf(key, sizeof key, "quant.%s", pre);
    const char *opt = ck ? aq_ckpt_meta_get(ck, key) : NULL;
    aq_layer_opts q;
    aq_layer_opts_default(&q);
    if (!opt || aq_layer_opts_parse(opt, &q, NULL) != AQ_OK || !q.ggml) return AQ_OK;
    const aq_tensor_view *v;
    snprintf(key, sizeof key, "%s.qblocks", pre);
    AQ_TRY(aq_ckpt_get(ck, key, &v, err));
    size_t rb = aq_group_row_bytes(&q, (size_t)cols);
    if (v->ndim != 2 || v->shape[0] != rows || (size_t)v->shape[1] != rb || rb == 0)
        return aq_fail(err, AQ_ERR_SHAPE, "export: %s is not [%d, %zu]", key, rows, rb);
    t->blocks = v->data;
    t->row_bytes = rb;
    t->type = q.gtype;
    return AQ_OK;
}

/* The embedding / classifier `base` when the quantized checkpoint stores it
 * at a block type (B.qblocks, copied as stored) or at f16 (its F16 values,
 * which the conversion reproduces exactly): t->type, t->blocks. */
static aq_status native_tensor(aq_checkpoint *ck, const char *base, int rows, int cols, ex_tensor *t,
                               aq_error *err)
{
    char key[256];
    snprintf(key, sizeof key, "quant.%s", base);
    const char *opt = ck ? aq_ckpt_meta_get(ck, key) : NULL;
    t->type = -1;
    if (opt && !strcmp(opt, "f16")) t->type = AQ_GGML_F16;
    int g = opt ? aq_tensor_opt_gtype(opt) : -1;
    if (g < 0) return AQ_OK;
    const aq_tensor_view *v;
    snprintf(key, sizeof key, "%s.qblocks", base);
    AQ_TRY(aq_ckpt_get(ck, key, &v, err));
    size_t rb;
    AQ_TRY(aq_ggml_row_bytes((aq_ggml_type)g, (size_t)cols, &rb, err));
    if (v->ndim != 2 || v->shape[0] != rows || (size_t)v->shape[1] != rb)
        return aq_fail(err, AQ_ERR_SHAPE, "export: %s is not [%d, %zu]", key, rows, rb);
    t->blocks = v->data;
    t->row_bytes = rb;
    t->type = g;
    return AQ_OK;
}

static const char *const lin_names[AQ_LIN_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                    "ffn_gate", "ffn_up", "ffn_down"};

const char *aq_gguf_lin_name(aq_linear l)
{
    return (int)l >= 0 && l < AQ_LIN_COUNT ? lin_names[l] : "output";
}

/* [rows, cols] of a block linear from the config (aq_model_lin_shape without a model). */
static void lin_shape(const aq_llama_config *c, aq_linear l, int *rows, int *cols)
{
    int hs = aq_llama_head_dim(c), qd = c->n_heads * hs, kvd = c->n_kv_heads * hs;
    *rows = l == AQ_LIN_Q ? qd : l == AQ_LIN_K || l == AQ_LIN_V ? kvd : l == AQ_LIN_GATE || l == AQ_LIN_UP ? c->hidden_dim : c->dim;
    *cols = l == AQ_LIN_O ? qd : l == AQ_LIN_DOWN ? c->hidden_dim : c->dim;
}

/* The data of the tensors: m NULL when only sizing (the streams never run). */
typedef struct ex_src {
    aq_model *m;
    const aq_export_opts *o;
    aq_checkpoint *ck;
} ex_src;

/* Every tensor of the file in llama.cpp's order, at the layout's types: the
 * one code path of writing and sizing (aq_export_gguf_size). */
static aq_status add_tensors(aq_gguf_writer *w, const aq_llama_config *c, const aq_gguf_layout *lay,
                             const ex_src *src, ex_tensor *ts, size_t *nts, aq_error *err)
{
    aq_model *m = src->m;
    int q = src->o->quantized;
    char name[64];
    size_t k = 0;
    /* an OUTDIR may hold the embedding at f16/wK/a block type: its quantized-mode lookup table */
    const float *embd = m ? aq_model_embed_rows(m, q) : NULL;
    ex_tensor nat = {0};
    if (m && q) AQ_TRY(native_tensor(src->ck, "model.embed_tokens", c->vocab_size, c->dim, &nat, err));
    AQ_TRY(add_matrix(w, &ts[k++], "token_embd.weight", embd, c->vocab_size, c->dim, 0, lay->embd_type,
                      nat.blocks, err));
    for (int b = 0; b < c->n_layers; b++) {
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", b);
        AQ_TRY(add_matrix(w, &ts[k++], name, m ? aq_model_norm(m, b, 0, q) : NULL, c->dim, 0, 0, AQ_GGML_F32,
                          NULL, err));
        for (int l = 0; l < AQ_LIN_COUNT; l++) {
            int rows, cols, i = b * AQ_LIN_COUNT + l;
            lin_shape(c, (aq_linear)l, &rows, &cols);
            int heads = l == AQ_LIN_Q ? c->n_heads : l == AQ_LIN_K ? c->n_kv_heads : 0;
            snprintf(name, sizeof name, "blk.%d.%s.weight", b, lin_names[l]);
            ex_tensor bl = {0};
            if (m && q) AQ_TRY(native_blocks(src->ck, b, (aq_linear)l, rows, cols, &bl, err));
            AQ_TRY(add_matrix(w, &ts[k++], name, m ? weight_of(m, b, (aq_linear)l, q) : NULL, rows, cols, heads,
                              lay->lin_type[i], bl.blocks, err));
            snprintf(name, sizeof name, "blk.%d.%s.bias", b, lin_names[l]);
            if (lay->lin_bias[i])
                AQ_TRY(add_matrix(w, &ts[k++], name, m ? bias_of(m, b, (aq_linear)l, q) : NULL, rows, 0, heads,
                                  AQ_GGML_F32, NULL, err));
        }
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", b);
        AQ_TRY(add_matrix(w, &ts[k++], name, m ? aq_model_norm(m, b, 1, q) : NULL, c->dim, 0, 0, AQ_GGML_F32,
                          NULL, err));
    }
    AQ_TRY(add_matrix(w, &ts[k++], "output_norm.weight", m ? aq_model_norm(m, c->n_layers, 0, q) : NULL, c->dim,
                      0, 0, AQ_GGML_F32, NULL, err));
    if (lay->head_type >= 0) {
        ex_tensor hn = {0};
        if (m && q) AQ_TRY(native_tensor(src->ck, "lm_head", c->vocab_size, c->dim, &hn, err));
        AQ_TRY(add_matrix(w, &ts[k++], "output.weight", m ? weight_of(m, c->n_layers, AQ_LIN_HEAD, q) : NULL,
                          c->vocab_size, c->dim, 0, lay->head_type, hn.blocks, err));
    }
    *nts = k;
    return AQ_OK;
}

/* The tensor types of the export of m (the layout add_tensors follows): the
 * requested types fitted to each row length, a quantized OUTDIR's block
 * layers (and block-type or f16 embedding / classifier) in their own type. */
static aq_status model_layout(aq_model *m, const aq_export_opts *o, aq_checkpoint *ck, aq_gguf_layout *lay,
                              aq_error *err)
{
    const aq_llama_config *c = &m->cfg;
    char name[64];
    int q = o->quantized;
    lay->embd_type = fit_type(o->type_embd, c->dim, "token_embd.weight");
    ex_tensor nat = {0};
    if (q) AQ_TRY(native_tensor(ck, "model.embed_tokens", c->vocab_size, c->dim, &nat, err));
    /* stored blocks go out as stored; stored f16 values as F16 (exact) unless a type was asked for */
    if (nat.blocks || (nat.type == AQ_GGML_F16 && o->type_embd == AQ_GGML_F32)) lay->embd_type = nat.type;
    for (int b = 0; b < c->n_layers; b++)
        for (int l = 0; l < AQ_LIN_COUNT; l++) {
            int rows, cols, i = b * AQ_LIN_COUNT + l;
            aq_model_lin_shape(m, (aq_linear)l, &rows, &cols);
            snprintf(name, sizeof name, "blk.%d.%s.weight", b, lin_names[l]);
            ex_tensor bl = {0};
            if (q) AQ_TRY(native_blocks(ck, b, (aq_linear)l, rows, cols, &bl, err));
            lay->lin_type[i] = bl.blocks ? bl.type : fit_type(o->type, cols, name);
            lay->lin_bias[i] = bias_of(m, b, (aq_linear)l, q) != NULL;
        }
    /* A tied classifier stays implicit (llama.cpp then uses token_embd), unless
     * quantization gave the classifier its own weights. */
    const float *embd = aq_model_embed_rows(m, q), *head = weight_of(m, c->n_layers, AQ_LIN_HEAD, q);
    size_t n = (size_t)c->vocab_size * (size_t)c->dim;
    int same = head == m->embed || (head != NULL && embd != m->embed && !memcmp(head, embd, n * sizeof *head));
    lay->head_type = same ? -1 : fit_type(o->type_head_given ? o->type_head : o->type, c->dim, "output.weight");
    ex_tensor hn = {0};
    if (!same && q) AQ_TRY(native_tensor(ck, "lm_head", c->vocab_size, c->dim, &hn, err));
    int head_asked = o->type_head_given ? o->type_head : o->type;
    if (!same && (hn.blocks || (hn.type == AQ_GGML_F16 && head_asked == AQ_GGML_F32))) lay->head_type = hn.type;
    return AQ_OK;
}

/* The writer of the whole file (metadata, vocabulary, tensors) over src. */
static aq_status build(aq_gguf_writer **w, const aq_llama_config *c, const aq_tokenizer *tok,
                       const char *tok_file, const aq_gguf_layout *lay, const ex_src *src, ex_tensor *ts,
                       size_t *nts, aq_error *err)
{
    AQ_TRY(aq_gguf_writer_new(w, err));
    AQ_TRY(add_hparams(*w, c, src->o, err));
    AQ_TRY(aq_export_add_vocab(*w, tok, tok_file, c->vocab_size, err));
    return add_tensors(*w, c, lay, src, ts, nts, err);
}

static ex_tensor *tensor_table(const aq_llama_config *c)
{
    return calloc((size_t)c->n_layers * (AQ_LIN_COUNT * 2 + 2) + 3, sizeof(ex_tensor));
}

aq_status aq_export_gguf_size(const aq_llama_config *c, const aq_tokenizer *tok, const char *tok_file,
                              const aq_export_opts *o, const aq_gguf_layout *lay, aq_gguf_size *out, aq_error *err)
{
    memset(out, 0, sizeof *out);
    AQ_TRY(aq_export_gguf_check_config(c, o, err));
    ex_tensor *ts = tensor_table(c);
    if (!ts) return aq_fail(err, AQ_ERR_NOMEM, "export: tensor table");
    aq_gguf_writer *w = NULL;
    ex_src src = {NULL, o, NULL};
    size_t n = 0;
    aq_status st = build(&w, c, tok, tok_file, lay, &src, ts, &n, err);
    if (st == AQ_OK) out->file = aq_gguf_writer_size(w);
    /* llama.cpp's model size and BPW: ggml_nbytes and ggml_nelements summed over the tensors */
    for (size_t i = 0; st == AQ_OK && i < n; i++) {
        int64_t ne[2] = {ts[i].cols, ts[i].rows};
        uint64_t nb;
        st = aq_ggml_nbytes(ts[i].type, 2, ne, "tensor", &nb, err);
        out->tensor_bytes += nb;
        out->elements += (uint64_t)ts[i].cols * (uint64_t)ts[i].rows;
    }
    aq_gguf_writer_free(w);
    free(ts);
    return st;
}

aq_status aq_export_gguf(aq_model *m, const aq_tokenizer *tok, const char *tok_file,
                         const aq_export_opts *o, const char *path, aq_error *err)
{
    AQ_TRY(check_model(m, o, err));
    aq_gguf_writer *w = NULL;
    ex_tensor *ts = tensor_table(&m->cfg);
    if (!ts) return aq_fail(err, AQ_ERR_NOMEM, "export: tensor table");
    aq_status st;
    aq_checkpoint *ck = NULL;
    aq_gguf_layout lay = {0};
    size_t n;
    ex_src src = {m, o, NULL};
    if (o->quantized && o->qpath) AQ_TRY_GOTO(st, aq_ckpt_open(o->qpath, &ck, err), done);
    src.ck = ck;
    AQ_TRY_GOTO(st, aq_gguf_layout_alloc(&lay, m->cfg.n_layers, err), done);
    AQ_TRY_GOTO(st, model_layout(m, o, ck, &lay, err), done);
    AQ_TRY_GOTO(st, build(&w, &m->cfg, tok, tok_file, &lay, &src, ts, &n, err), done);
    fprintf(stderr, "export: writing %s (%llu bytes)\n", path,
            (unsigned long long)aq_gguf_writer_size(w));
    st = aq_gguf_write(w, path, err);
done:
    aq_gguf_writer_free(w);
    aq_gguf_layout_free(&lay);
    if (ck) aq_ckpt_close(ck);
    free(ts);
    return st;
}

aq_status aq_export_gguf_files(const char *model_path, const char *tok_path, const char *quant,
                               const aq_export_opts *o, const char *path, aq_error *err)
{
    aq_model *m = NULL;
    aq_tokenizer *tok = NULL;
    char tok_file[4096];
    aq_status st;
    AQ_TRY_GOTO(st, aq_model_load_path(model_path, &m, err), done);
    AQ_TRY_GOTO(st, aq_tok_open(tok_path, aq_model_config(m)->vocab_size, &tok, err), done);
    AQ_TRY_GOTO(st, aq_tok_resolve(tok_path, tok_file, sizeof tok_file, err), done);
    if (quant) {
        int n;
        AQ_TRY_GOTO(st, aq_model_load_quantized(m, quant, &n, err), done);
        fprintf(stderr, "export: %d quantized layers loaded from %s\n", n, quant);
    }
    st = aq_export_gguf(m, tok, tok_file, o, path, err);
done:
    aq_tok_close(tok);
    aq_model_free(m);
    return st;
}
