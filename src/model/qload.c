/* qload.c — installing a quantized checkpoint's layers as model overrides:
 * every linear prefix P with metadata "quant.P" is read with the qlayer reader
 * (src/adaquant/qlayer.h, which owns and validates the layout) and its
 * dequantised weight, bias and activation quantiser become the override; the
 * RMSNorm gains the checkpoint holds (tuned by global tuning) become norm
 * overrides. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../adaquant/qlayer.h"
#include "model_internal.h"

/* Load layer pre through the qlayer reader and install it as an override. */
static aq_status load_layer(aq_model *m, aq_checkpoint *ck, int block, aq_linear which,
                            const char *pre, aq_error *err)
{
    int d_out, d_in;
    aq_model_lin_shape(m, which, &d_out, &d_in);
    aq_qlayer q;
    AQ_TRY(aq_qlayer_load_ckpt(ck, pre, (size_t)d_in, &q, err));
    aq_status st;
    if (q.d_out != (size_t)d_out || q.d_in != (size_t)d_in) {
        st = aq_fail(err, AQ_ERR_SHAPE, "quantized layer %s is [%zu, %zu], the model's is [%d, %d]",
                     pre, q.d_out, q.d_in, d_out, d_in);
    } else {
        aq_linear_override ov = {q.weight, q.bias, q.a_bits < 16 ? q.a_bits : 0, q.a_scale,
                                 q.a_zero};
        st = aq_model_set_override(m, block, which, &ov, err);
    }
    aq_qlayer_free(&q);
    return st;
}

static int has_tensor(aq_checkpoint *ck, const char *name)
{
    for (size_t i = 0; i < aq_ckpt_count(ck); i++)
        if (!strcmp(aq_ckpt_name(ck, i), name)) return 1;
    return 0;
}

/* Install tensor `name` (if present) as the norm override (block, which):
 * a float vector [dim] with finite values. */
static aq_status load_norm(aq_model *m, aq_checkpoint *ck, int block, int which, const char *name,
                           aq_error *err)
{
    if (!has_tensor(ck, name)) return AQ_OK;
    const aq_tensor_view *v;
    AQ_TRY(aq_ckpt_get(ck, name, &v, err));
    if (v->ndim != 1 || v->shape[0] != m->cfg.dim)
        return aq_fail(err, AQ_ERR_SHAPE, "norm tensor %s: expected shape [%d], got %d-D [%lld%s]",
                       name, m->cfg.dim, v->ndim, v->ndim ? (long long)v->shape[0] : 0LL,
                       v->ndim > 1 ? ", ..." : "");
    if (v->dtype != AQ_F32 && v->dtype != AQ_F16 && v->dtype != AQ_BF16)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "norm tensor %s: dtype %s is not a float type (F32/F16/BF16)", name,
                       aq_dtype_name(v->dtype));
    float *g;
    AQ_TRY(aq_view_to_f32_alloc(v, &g, err));
    aq_status st = aq_model_set_norm_override(m, block, which, g, err);
    free(g);
    if (st != AQ_OK) aq_error_prefix(err, "tensor %s", name);
    return st;
}

static aq_status load_norms(aq_model *m, aq_checkpoint *ck, aq_error *err)
{
    char name[256];
    for (int b = 0; b < m->cfg.n_layers; b++) {
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", b);
        AQ_TRY(load_norm(m, ck, b, 0, name, err));
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", b);
        AQ_TRY(load_norm(m, ck, b, 1, name, err));
    }
    return load_norm(m, ck, m->cfg.n_layers, 0, "model.norm.weight", err);
}

/* The embedding and an untied classifier when OUTDIR stores them at a tensor
 * option (metadata quant.model.embed_tokens / quant.lm_head, format version
 * 2): the embedding becomes the quantized-mode lookup table and, when tied,
 * the classifier override too (no bias); *n counts them. */
static aq_status load_tensors(aq_model *m, aq_checkpoint *ck, int *n, int *head_done, aq_error *err)
{
    const aq_llama_config *c = &m->cfg;
    size_t rows = (size_t)c->vocab_size, cols = (size_t)c->dim;
    float *w = NULL;
    *head_done = 0;
    if (aq_ckpt_meta_get(ck, "quant.model.embed_tokens")) {
        AQ_TRY(aq_qtensor_load_ckpt(ck, "model.embed_tokens", rows, cols, &w, err));
        aq_status st = aq_model_set_embed_override(m, w, err);
        aq_linear_override ov = {w, NULL, 0, 1, 0};
        if (st == AQ_OK && c->tied_embeddings)
            st = aq_model_set_override(m, c->n_layers, AQ_LIN_HEAD, &ov, err), *head_done = 1;
        free(w);
        AQ_TRY(st);
        ++*n;
    }
    const char *h = aq_ckpt_meta_get(ck, "quant.lm_head");
    int bits;
    if (!c->tied_embeddings && h && aq_tensor_opt_parse(h, &bits, NULL) == AQ_OK) {
        AQ_TRY(aq_qtensor_load_ckpt(ck, "lm_head", rows, cols, &w, err));
        aq_linear_override ov = {w, NULL, 0, 1, 0};
        aq_status st = aq_model_set_override(m, c->n_layers, AQ_LIN_HEAD, &ov, err);
        free(w);
        AQ_TRY(st);
        *head_done = 1;
        ++*n;
    }
    return AQ_OK;
}

aq_status aq_model_load_quantized(aq_model *m, const char *path, int *n_loaded, aq_error *err)
{
    aq_checkpoint *ck;
    AQ_TRY(aq_ckpt_open(path, &ck, err));
    int n = 0, L = m->cfg.n_layers, head_done = 0;
    aq_status st = load_tensors(m, ck, &n, &head_done, err);
    char pre[200], key[256];
    for (int b = 0; b <= L && st == AQ_OK; b++)
        for (int w = 0; w < AQ_LIN_COUNT && st == AQ_OK; w++) {
            aq_linear which = b == L ? AQ_LIN_HEAD : (aq_linear)w;
            if (b == L && (w > 0 || head_done)) break;
            aq_linear_prefix(b, which, pre, sizeof pre);
            snprintf(key, sizeof key, "quant.%s", pre);
            if (!aq_ckpt_meta_get(ck, key)) continue;
            st = load_layer(m, ck, b, which, pre, err);
            n += st == AQ_OK;
        }
    if (st == AQ_OK && n == 0)
        st = aq_fail(err, AQ_ERR_NOTFOUND,
                     "no quantized layer (metadata quant.<layer>) for this model's layers");
    if (st == AQ_OK) st = load_norms(m, ck, err);
    if (st != AQ_OK) aq_error_prefix(err, "%s", path);
    aq_ckpt_close(ck);
    if (n_loaded) *n_loaded = n;
    return st;
}
