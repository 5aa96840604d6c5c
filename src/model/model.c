/* model.c — loading a Llama-family model from a checkpoint into F32 arrays,
 * validating the config against every tensor, and the per-linear accessors and
 * quantized overrides (see model.h). The forward pass is in forward.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

static const char *const lin_short[] = {"q_proj",    "k_proj",  "v_proj",    "o_proj",
                                        "gate_proj", "up_proj", "down_proj", "lm_head"};
static const char *const cap_names[] = {"attn_in", "o_in", "mlp_in", "down_in", "head_in"};

const char *aq_linear_short_name(aq_linear which)
{
    return (which >= 0 && which <= AQ_LIN_HEAD) ? lin_short[which] : "?";
}

const char *aq_cap_point_name(aq_cap_point p)
{
    return (p >= 0 && p <= AQ_CAP_HEAD) ? cap_names[p] : "?";
}

void aq_linear_prefix(int block, aq_linear which, char *buf, size_t n)
{
    if (which == AQ_LIN_HEAD)
        snprintf(buf, n, "lm_head");
    else
        snprintf(buf, n, "model.layers.%d.%s.%s", block, which <= AQ_LIN_O ? "self_attn" : "mlp",
                 lin_short[which]);
}

aq_cap_point aq_linear_cap_point(aq_linear which)
{
    switch (which) {
    case AQ_LIN_Q:
    case AQ_LIN_K:
    case AQ_LIN_V: return AQ_CAP_ATTN_IN;
    case AQ_LIN_O: return AQ_CAP_O_IN;
    case AQ_LIN_GATE:
    case AQ_LIN_UP: return AQ_CAP_MLP_IN;
    case AQ_LIN_DOWN: return AQ_CAP_DOWN_IN;
    default: return AQ_CAP_HEAD;
    }
}

int aq_cap_point_dim(const aq_model *m, aq_cap_point p)
{
    switch (p) {
    case AQ_CAP_O_IN: return m->qd;
    case AQ_CAP_DOWN_IN: return m->cfg.hidden_dim;
    default: return m->cfg.dim;
    }
}

void aq_model_lin_shape(const aq_model *m, aq_linear which, int *d_out, int *d_in)
{
    const aq_llama_config *c = &m->cfg;
    int o = c->dim, i = c->dim;
    switch (which) {
    case AQ_LIN_Q: o = m->qd; break;
    case AQ_LIN_K:
    case AQ_LIN_V: o = m->kvd; break;
    case AQ_LIN_O: i = m->qd; break;
    case AQ_LIN_GATE:
    case AQ_LIN_UP: o = c->hidden_dim; break;
    case AQ_LIN_DOWN: i = c->hidden_dim; break;
    default: o = c->vocab_size; break;
    }
    *d_out = o;
    *d_in = i;
}

int aq_model_lin_index(const aq_model *m, int block, aq_linear which)
{
    if (which == AQ_LIN_HEAD) return block == m->cfg.n_layers ? m->cfg.n_layers * AQ_LIN_COUNT : -1;
    if (block < 0 || block >= m->cfg.n_layers || which < 0 || which >= AQ_LIN_COUNT) return -1;
    return block * AQ_LIN_COUNT + (int)which;
}

float *aq_model_lin_weight(const aq_model *m, int block, aq_linear which)
{
    return which == AQ_LIN_HEAD ? m->head : m->blocks[block].lin[which];
}

const aq_llama_config *aq_model_config(const aq_model *m)
{
    return &m->cfg;
}
size_t aq_model_weight_bytes(const aq_model *m)
{
    return m->weight_bytes;
}
size_t aq_model_scratch_bytes(const aq_model *m)
{
    return m->s.bytes + m->gs.bytes;
}

/* Fetch tensor `name` and check it is [rows, cols] (cols 0 = 1-D [rows]) of a
 * float dtype; with out, convert it to a malloc'd F32 array and check it is
 * finite (out NULL: the header checks only, the lazy load's up-front pass).
 * The source pages are handed back to the kernel once converted, so a mapped
 * checkpoint costs resident memory only while a tensor is being converted. */
static aq_status load_tensor(aq_checkpoint *ck, const char *name, int64_t rows, int64_t cols,
                             float **out, size_t *bytes, aq_error *err)
{
    const aq_tensor_view *v;
    AQ_TRY(aq_ckpt_get(ck, name, &v, err));
    int want_nd = cols ? 2 : 1;
    int ok = v->ndim == want_nd && v->shape[0] == rows && (!cols || v->shape[1] == cols);
    if (!ok) {
        char got[128] = "";
        size_t k = 0;
        for (int i = 0; i < v->ndim && k < sizeof got - 24; i++)
            k += (size_t)snprintf(got + k, sizeof got - k, "%s%lld", i ? ", " : "",
                                  (long long)v->shape[i]);
        if (cols)
            return aq_fail(err, AQ_ERR_SHAPE,
                           "tensor %s: expected shape [%lld, %lld] from the config, got [%s]", name,
                           (long long)rows, (long long)cols, got);
        return aq_fail(err, AQ_ERR_SHAPE,
                       "tensor %s: expected shape [%lld] from the config, got [%s]", name,
                       (long long)rows, got);
    }
    if (v->dtype != AQ_F32 && v->dtype != AQ_F16 && v->dtype != AQ_BF16)
        return aq_fail(err, AQ_ERR_FORMAT, "tensor %s: dtype %s is not a float type (F32/F16/BF16)",
                       name, aq_dtype_name(v->dtype));
    if (!out) return AQ_OK;
    float *f;
    aq_status st = aq_view_to_f32_alloc(v, &f, err);
    aq_ckpt_drop_pages(ck, v);
    AQ_TRY(st);
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(f[i])) {
            free(f);
            return aq_fail(err, AQ_ERR_NUMERIC, "tensor %s: non-finite value at element %zu", name,
                           i);
        }
    *out = f;
    *bytes += n * sizeof(float);
    return AQ_OK;
}

static aq_status check_config(const aq_llama_config *c, aq_error *err)
{
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 ||
        c->n_kv_heads <= 0 || c->vocab_size <= 0 || c->max_seq_len <= 0 || c->head_dim < 0)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "config: non-positive size (dim %d, hidden %d, layers %d, heads %d, "
                       "kv_heads %d, vocab %d, max_seq_len %d, head_dim %d)",
                       c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size,
                       c->max_seq_len, c->head_dim);
    if ((!c->head_dim && c->dim % c->n_heads) || aq_llama_head_dim(c) % 2 || !aq_llama_head_dim(c))
        return aq_fail(err, AQ_ERR_FORMAT,
                       "config: head size %d (head_dim %d, dim %d, n_heads %d) is not a positive "
                       "even number",
                       aq_llama_head_dim(c), c->head_dim, c->dim, c->n_heads);
    if (c->n_heads % c->n_kv_heads)
        return aq_fail(err, AQ_ERR_FORMAT, "config: n_heads %d is not a multiple of n_kv_heads %d",
                       c->n_heads, c->n_kv_heads);
    if (!(c->norm_eps > 0) || !(c->rope_theta > 0))
        return aq_fail(err, AQ_ERR_FORMAT, "config: rms_norm_eps %g and rope_theta %g must be > 0",
                       (double)c->norm_eps, (double)c->rope_theta);
    if (c->rope_type < AQ_ROPE_DEFAULT || c->rope_type > AQ_ROPE_LLAMA3 ||
        (c->rope_type != AQ_ROPE_DEFAULT && !(c->rope_factor > 0)) ||
        (c->rope_type == AQ_ROPE_LLAMA3 &&
         (c->rope_orig_max_pos <= 0 || !(c->rope_high_freq_factor > c->rope_low_freq_factor))))
        return aq_fail(err, AQ_ERR_FORMAT, "config: invalid RoPE scaling (type %d, factor %g)",
                       c->rope_type, (double)c->rope_factor);
    return AQ_OK;
}

/* Does the config give linear w a bias? */
static int has_bias(const aq_llama_config *c, int w)
{
    return w <= AQ_LIN_V ? c->qkv_bias : w == AQ_LIN_O ? c->o_bias : c->mlp_bias;
}

/* check: header checks only (lazy loading), nothing allocated. */
static aq_status load_bias(aq_model *m, aq_checkpoint *ck, int l, int w, int check, aq_error *err)
{
    char name[256], pre[200];
    int o, i;
    aq_model_lin_shape(m, (aq_linear)w, &o, &i);
    aq_linear_prefix(l, (aq_linear)w, pre, sizeof pre);
    snprintf(name, sizeof name, "%s.bias", pre);
    aq_status st = load_tensor(ck, name, o, 0, check ? NULL : &m->blocks[l].bias[w], &m->weight_bytes, err);
    if (st == AQ_ERR_NOTFOUND)
        return aq_fail(err, st, "%s: no tensor %s, but the config gives %s a bias (%s)",
                       aq_ckpt_path(ck), name, aq_linear_short_name((aq_linear)w),
                       w <= AQ_LIN_O ? (m->cfg.model_type == AQ_MT_QWEN2 ? "model_type qwen2"
                                                                         : "attention_bias true")
                                     : "mlp_bias true");
    return st;
}

/* Block l's tensors into m->blocks[l] (check: header checks only). */
static aq_status load_block(aq_model *m, aq_checkpoint *ck, int l, int check, aq_error *err)
{
    char name[256], pre[200];
    aq_block_w *b = &m->blocks[l];
    size_t *by = &m->weight_bytes;
#define AQ_DST(p) (check ? NULL : (p))
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
    AQ_TRY(load_tensor(ck, name, m->cfg.dim, 0, AQ_DST(&b->attn_norm), by, err));
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
    AQ_TRY(load_tensor(ck, name, m->cfg.dim, 0, AQ_DST(&b->ffn_norm), by, err));
    for (int w = 0; w < AQ_LIN_COUNT; w++) {
        int o, i;
        aq_model_lin_shape(m, (aq_linear)w, &o, &i);
        aq_linear_prefix(l, (aq_linear)w, pre, sizeof pre);
        snprintf(name, sizeof name, "%s.weight", pre);
        AQ_TRY(load_tensor(ck, name, o, i, AQ_DST(&b->lin[w]), by, err));
        if (has_bias(&m->cfg, w)) AQ_TRY(load_bias(m, ck, l, w, check, err));
    }
    if (!m->cfg.qk_norm) return AQ_OK;
    snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", l);
    AQ_TRY(load_tensor(ck, name, m->hs, 0, AQ_DST(&b->q_norm), by, err));
    snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", l);
    return load_tensor(ck, name, m->hs, 0, AQ_DST(&b->k_norm), by, err);
#undef AQ_DST
}

/* inv_freq[i] of the config's RoPE type, as transformers' modeling_rope_utils
 * computes it (_compute_default / _linear_scaling / _dynamic_ntk / _llama3
 * _rope_parameters), in double. */
static double rope_inv_freq(const aq_llama_config *c, int hs, size_t i)
{
    double base = c->rope_theta, d = hs, f = c->rope_factor;
    if (c->rope_type == AQ_ROPE_DYNAMIC) {
        /* NTK: base * (f * seq / max_pos - (f - 1))^(d / (d - 2)) with seq =
         * max(sequence length, max_position_embeddings); the engine refuses
         * sequences past max_position_embeddings, so seq = max_pos here and
         * the factor is 1: the default frequencies, exactly as HF for these
         * lengths. */
        double seq = c->max_seq_len;
        base *= pow(f * seq / c->max_seq_len - (f - 1.0), d / (d - 2.0));
    }
    double inv = 1.0 / pow(base, 2.0 * (double)i / d);
    if (c->rope_type == AQ_ROPE_LINEAR) return inv / f;
    if (c->rope_type != AQ_ROPE_LLAMA3) return inv;
    double old = c->rope_orig_max_pos, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    double wavelen = 2.0 * 3.14159265358979323846 / inv;
    if (wavelen < old / hi) return inv;     /* high frequencies: unchanged */
    if (wavelen > old / lo) return inv / f; /* low frequencies: divided by factor */
    double smooth = (old / wavelen - lo) / (hi - lo);
    return (1.0 - smooth) * inv / f + smooth * inv;
}

static aq_status init_rope(aq_model *m, aq_error *err)
{
    size_t half = (size_t)m->hs / 2, n = (size_t)m->cfg.max_seq_len * half;
    m->rope_cos = malloc(n * sizeof(float));
    m->rope_sin = malloc(n * sizeof(float));
    if (!m->rope_cos || !m->rope_sin)
        return aq_fail_nomem(err, "RoPE tables", 2 * n * sizeof(float));
    for (size_t i = 0; i < half; i++) {
        double inv = rope_inv_freq(&m->cfg, m->hs, i);
        for (int p = 0; p < m->cfg.max_seq_len; p++) {
            m->rope_cos[(size_t)p * half + i] = (float)cos(p * inv);
            m->rope_sin[(size_t)p * half + i] = (float)sin(p * inv);
        }
    }
    return AQ_OK;
}

/* A projection bias the config does not announce would be silently ignored
 * (transformers drops it with a warning): refuse it instead. */
static aq_status check_extra_bias(const aq_model *m, aq_checkpoint *ck, aq_error *err)
{
    for (size_t i = 0; i < aq_ckpt_count(ck); i++) {
        const char *n = aq_ckpt_name(ck, i);
        size_t len = strlen(n);
        if (len <= 10 || strcmp(n + len - 10, "_proj.bias") != 0) continue;
        int w = -1;
        for (int k = 0; k < AQ_LIN_COUNT; k++) {
            size_t kl = strlen(lin_short[k]);
            if (len >= kl + 6 && !strncmp(n + len - kl - 5, lin_short[k], kl) &&
                n[len - kl - 6] == '.')
                w = k;
        }
        if (w < 0 || !has_bias(&m->cfg, w))
            return aq_fail(err, AQ_ERR_FORMAT,
                           "tensor %s: the config (model_type %s, attention_bias / mlp_bias) "
                           "gives this linear layer no bias",
                           n, aq_model_type_name(m->cfg.model_type));
    }
    return AQ_OK;
}

/* Everything but the blocks is converted now; the blocks too unless lazy
 * (then only their headers are checked: acquire converts them). */
static aq_status load_all(aq_model *m, aq_checkpoint *ck, int lazy, aq_error *err)
{
    const aq_llama_config *c = &m->cfg;
    AQ_TRY(check_extra_bias(m, ck, err));
    AQ_TRY(load_tensor(ck, "model.embed_tokens.weight", c->vocab_size, c->dim, &m->embed,
                       &m->weight_bytes, err));
    for (int l = 0; l < c->n_layers; l++)
        AQ_TRY(load_block(m, ck, l, lazy, err));
    AQ_TRY(load_tensor(ck, "model.norm.weight", c->dim, 0, &m->final_norm, &m->weight_bytes, err));
    if (c->tied_embeddings) {
        m->head = m->embed;
    } else {
        aq_status st = load_tensor(ck, "lm_head.weight", c->vocab_size, c->dim, &m->head,
                                   &m->weight_bytes, err);
        if (st == AQ_ERR_NOTFOUND)
            return aq_fail(
                err, st,
                "no tensor lm_head.weight: the config says tie_word_embeddings = false but the "
                "checkpoint has no classifier");
        AQ_TRY(st);
    }
    return init_rope(m, err);
}

static aq_status load_model(aq_checkpoint *ck, int lazy, aq_model **out, aq_error *err)
{
    aq_model *m = calloc(1, sizeof *m);
    if (!m) return aq_fail_nomem(err, "model", sizeof *m);
    aq_status st;
    /* An OUTDIR of `adaquant quantize` holds codes, not float weights: say how to use it. */
    const char *fmt = aq_ckpt_meta_get(ck, "format");
    if (fmt && strstr(fmt, "adaquant")) {
        st = aq_fail(err, AQ_ERR_ARG,
                     "this is a quantized output of `adaquant quantize` (metadata format \"%s\"), not a float "
                     "model: give the source model and this directory with --quantized, e.g. `adaquant eval "
                     "MODEL --quantized OUTDIR` or `adaquant generate MODEL --quantized OUTDIR`", fmt);
        goto fail;
    }
    AQ_TRY_GOTO(st, aq_ckpt_llama_config(ck, &m->cfg, err), fail);
    AQ_TRY_GOTO(st, check_config(&m->cfg, err), fail);
    m->hs = aq_llama_head_dim(&m->cfg);
    m->window = aq_llama_window(&m->cfg);
    m->qd = m->cfg.n_heads * m->hs;
    m->kvd = m->cfg.n_kv_heads * m->hs;
    m->blocks = calloc((size_t)m->cfg.n_layers, sizeof *m->blocks);
    m->ovr = calloc((size_t)m->cfg.n_layers * AQ_LIN_COUNT + 1, sizeof *m->ovr);
    m->norm_ovr = calloc(2 * (size_t)m->cfg.n_layers + 1, sizeof *m->norm_ovr);
    if (lazy) m->refs = calloc((size_t)m->cfg.n_layers, sizeof *m->refs);
    if (!m->blocks || !m->ovr || !m->norm_ovr || (lazy && !m->refs)) {
        st = aq_fail_nomem(err, "model tables", 0);
        goto fail;
    }
    AQ_TRY_GOTO(st, load_all(m, ck, lazy, err), fail);
    *out = m;
    return AQ_OK;
fail:
    /* name the checkpoint once (io errors usually start with its path already) */
    if (err && strncmp(err->msg, aq_ckpt_path(ck), strlen(aq_ckpt_path(ck))) != 0)
        aq_error_prefix(err, "%s", aq_ckpt_path(ck));
    aq_model_free(m);
    return st;
}

aq_status aq_model_load(aq_checkpoint *ck, aq_model **out, aq_error *err)
{
    return load_model(ck, 0, out, err);
}

aq_status aq_model_load_path(const char *path, aq_model **out, aq_error *err)
{
    aq_checkpoint *ck;
    AQ_TRY(aq_ckpt_open(path, &ck, err));
    aq_status st = aq_model_load(ck, out, err);
    aq_ckpt_close(ck);
    return st;
}

aq_status aq_model_load_lazy(const char *path, aq_model **out, aq_error *err)
{
    const char *eager = getenv("AQ_MODEL_EAGER"); /* tests: the same run with eager loading */
    if (eager && *eager && strcmp(eager, "0") != 0) return aq_model_load_path(path, out, err);
    aq_checkpoint *ck;
    AQ_TRY(aq_ckpt_open(path, &ck, err));
    aq_status st = load_model(ck, 1, out, err);
    if (st != AQ_OK) {
        aq_ckpt_close(ck);
        return st;
    }
    (*out)->ck = ck; /* the source stays mapped: acquire converts from it */
    return AQ_OK;
}

static void free_scratch(aq_scratch *s)
{
    free(s->x);
    free(s->xb);
    free(s->xb2);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->att);
    free(s->hb);
    free(s->hb2);
    free(s->xq);
    free(s->scores);
    free(s->pos);
    free(s->ids);
    memset(s, 0, sizeof *s);
}

static void free_block(aq_block_w *b)
{
    free(b->attn_norm);
    free(b->ffn_norm);
    free(b->q_norm);
    free(b->k_norm);
    for (int w = 0; w < AQ_LIN_COUNT; w++) {
        free(b->lin[w]);
        free(b->bias[w]);
    }
    memset(b, 0, sizeof *b);
}

static aq_status ovr_acquire_block(aq_model *m, int block, aq_error *err);
static void ovr_drop_block(aq_model *m, int block);

/* A lazy model converts the block's tensors from the mapped source and
 * dequantizes its lazy overrides; release frees both. */
aq_status aq_model_block_acquire(aq_model *m, int block, aq_error *err)
{
    if (!m->ck) return AQ_OK; /* eager loading: every block is resident */
    if (block < 0 || block >= m->cfg.n_layers)
        return aq_fail(err, AQ_ERR_ARG, "acquire: no block %d (model has %d)", block, m->cfg.n_layers);
    if (m->refs[block]++ > 0) return AQ_OK;
    size_t before = m->weight_bytes;
    aq_status st = load_block(m, m->ck, block, 0, err);
    if (st != AQ_OK) {
        free_block(&m->blocks[block]);
        m->weight_bytes = before;
        m->refs[block] = 0;
        if (err && strncmp(err->msg, aq_ckpt_path(m->ck), strlen(aq_ckpt_path(m->ck))) != 0)
            aq_error_prefix(err, "%s", aq_ckpt_path(m->ck));
        return st;
    }
    m->block_bytes = m->weight_bytes - before;
    st = ovr_acquire_block(m, block, err);
    if (st != AQ_OK) {
        free_block(&m->blocks[block]);
        m->weight_bytes = before;
        m->refs[block] = 0;
    }
    return st;
}

void aq_model_block_release(aq_model *m, int block)
{
    if (!m->ck || block < 0 || block >= m->cfg.n_layers || m->refs[block] <= 0) return;
    if (--m->refs[block] > 0) return;
    ovr_drop_block(m, block);
    free_block(&m->blocks[block]);
    m->weight_bytes -= m->block_bytes;
}

void aq_model_drop_vocab(aq_model *m, int embed)
{
    size_t bytes = (size_t)m->cfg.vocab_size * m->cfg.dim * sizeof(float);
    if (m->head && m->head != m->embed) { /* untied */
        free(m->head);
        m->head = NULL;
        m->weight_bytes -= bytes;
    }
    if (!embed || !m->embed) return;
    free(m->embed);
    m->weight_bytes -= bytes;
    m->embed = m->head = NULL;
}

int aq_model_is_lazy(const aq_model *m)
{
    return m->ck != NULL;
}

void aq_model_free(aq_model *m)
{
    if (!m) return;
    if (m->blocks)
        for (int l = 0; l < m->cfg.n_layers; l++)
            free_block(&m->blocks[l]);
    free(m->refs);
    aq_ckpt_close(m->ck);
    if (m->ovr)
        for (int i = 0; i <= m->cfg.n_layers * AQ_LIN_COUNT; i++) {
            free(m->ovr[i].weight);
            free(m->ovr[i].bias);
        }
    if (m->head != m->embed) free(m->head);
    free(m->embed);
    free(m->embed_ovr);
    free(m->final_norm);
    if (m->norm_ovr) aq_model_clear_norm_overrides(m);
    free(m->norm_ovr);
    free(m->blocks);
    free(m->ovr);
    free(m->rope_cos);
    free(m->rope_sin);
    free_scratch(&m->s);
    aq_grad_scratch_free(&m->gs);
    free(m);
}

aq_status aq_model_linear(const aq_model *m, int block, aq_linear which, const float **weight,
                          int *d_out, int *d_in, aq_error *err)
{
    if (aq_model_lin_index(m, block, which) < 0)
        return aq_fail(err, AQ_ERR_ARG,
                       "no linear layer %s in block %d (model has %d blocks; lm_head is block %d)",
                       aq_linear_short_name(which), block, m->cfg.n_layers, m->cfg.n_layers);
    aq_model_lin_shape(m, which, d_out, d_in);
    if (weight) *weight = aq_model_lin_weight(m, block, which);
    return AQ_OK;
}

const float *aq_model_linear_bias(const aq_model *m, int block, aq_linear which)
{
    if (aq_model_lin_index(m, block, which) < 0 || which == AQ_LIN_HEAD) return NULL;
    return m->blocks[block].bias[which];
}

const float *aq_model_qk_norm_gain(const aq_model *m, int block, int which)
{
    if (block < 0 || block >= m->cfg.n_layers || which < 0 || which > 1) return NULL;
    return which ? m->blocks[block].k_norm : m->blocks[block].q_norm;
}

/* Check the override's activation quantizer and, when given, its weight and
 * bias are finite (pre names the linear). */
static aq_status check_override(const aq_linear_override *ov, int lazy, size_t nw, int o, const char *pre,
                                aq_error *err)
{
    if (!ov || (!ov->weight && !lazy)) return aq_fail(err, AQ_ERR_ARG, "override %s: no weight given", pre);
    if (ov->a_bits < 0 || (ov->a_bits > 0 && ov->a_bits < 16 && (ov->a_bits < 2 || ov->a_bits > 8)))
        return aq_fail(err, AQ_ERR_ARG,
                       "override %s: activation bits %d not in 2..8 (0 or 16 = none)", pre,
                       ov->a_bits);
    int aq = ov->a_bits > 0 && ov->a_bits < 16;
    if (aq && (!(ov->a_scale > 0) || !isfinite(ov->a_scale) || !isfinite(ov->a_zero)))
        return aq_fail(err, AQ_ERR_NUMERIC, "override %s: activation scale %g / zero %g invalid",
                       pre, (double)ov->a_scale, (double)ov->a_zero);
    for (size_t k = 0; !lazy && k < nw; k++)
        if (!isfinite(ov->weight[k]))
            return aq_fail(err, AQ_ERR_NUMERIC, "override %s: non-finite weight at element %zu",
                           pre, k);
    for (int k = 0; ov->bias && k < o; k++)
        if (!isfinite(ov->bias[k]))
            return aq_fail(err, AQ_ERR_NUMERIC, "override %s: non-finite bias at element %d", pre,
                           k);
    return AQ_OK;
}

/* A lazy override's weight, from its source, into m->ovr[idx].weight. */
static aq_status ovr_materialize(aq_model *m, int block, aq_linear which, aq_error *err)
{
    aq_ovr *ov = &m->ovr[aq_model_lin_index(m, block, which)];
    int o, i;
    aq_model_lin_shape(m, which, &o, &i);
    size_t nw = (size_t)o * (size_t)i;
    float *w = malloc(nw * sizeof(float));
    if (!w) return aq_fail_nomem(err, "override weights", nw * sizeof(float));
    ov->dequant(ov->ctx, w);
    for (size_t k = 0; k < nw; k++)
        if (!isfinite(w[k])) {
            char pre[200];
            aq_linear_prefix(block, which, pre, sizeof pre);
            free(w);
            return aq_fail(err, AQ_ERR_NUMERIC, "override %s: non-finite weight at element %zu", pre, k);
        }
    ov->weight = w;
    return AQ_OK;
}

/* Free the weights of block's lazy overrides (its release). */
static void ovr_drop_block(aq_model *m, int block)
{
    for (int w = 0; w < AQ_LIN_COUNT; w++) {
        aq_ovr *ov = &m->ovr[aq_model_lin_index(m, block, (aq_linear)w)];
        if (!ov->dequant) continue;
        free(ov->weight);
        ov->weight = NULL;
    }
}

/* Materialize block's lazy overrides (its acquire); on an error none stays. */
static aq_status ovr_acquire_block(aq_model *m, int block, aq_error *err)
{
    for (int w = 0; w < AQ_LIN_COUNT; w++)
        if (m->ovr[aq_model_lin_index(m, block, (aq_linear)w)].dequant) {
            aq_status st = ovr_materialize(m, block, (aq_linear)w, err);
            if (st != AQ_OK) {
                ovr_drop_block(m, block);
                return st;
            }
        }
    return AQ_OK;
}

/* Both setters: a copy of ov->weight, or (dequant set) a lazy override. */
static aq_status set_override(aq_model *m, int block, aq_linear which, const aq_linear_override *ov,
                              aq_dequant_fn dequant, const void *ctx, aq_error *err)
{
    int idx = aq_model_lin_index(m, block, which), o, i;
    if (idx < 0)
        return aq_fail(err, AQ_ERR_ARG, "override: no linear layer %s in block %d",
                       aq_linear_short_name(which), block);
    char pre[200];
    aq_linear_prefix(block, which, pre, sizeof pre);
    aq_model_lin_shape(m, which, &o, &i);
    size_t nw = (size_t)o * (size_t)i;
    AQ_TRY(check_override(ov, dequant != NULL, nw, o, pre, err));
    const float *src = dequant ? NULL : ov->weight; /* lazy: ov->weight is not used */
    int aq = ov->a_bits > 0 && ov->a_bits < 16;
    float *w = src ? malloc(nw * sizeof(float)) : NULL, *b = ov->bias ? malloc((size_t)o * sizeof(float)) : NULL;
    if ((src && !w) || (ov->bias && !b)) {
        free(w);
        free(b);
        return aq_fail_nomem(err, "override weights", nw * sizeof(float));
    }
    if (w) memcpy(w, src, nw * sizeof(float));
    if (b) memcpy(b, ov->bias, (size_t)o * sizeof(float));
    aq_model_clear_override(m, block, which);
    aq_ovr *dst = &m->ovr[idx];
    dst->weight = w;
    dst->bias = b;
    dst->a_bits = aq ? ov->a_bits : 0;
    dst->a_scale = ov->a_scale;
    dst->a_zero = ov->a_zero;
    if (w) return AQ_OK;
    dst->dequant = dequant;
    dst->ctx = ctx;
    /* resident now: an eager model, the classifier, or a block being held */
    int resident = !m->ck || which == AQ_LIN_HEAD || m->refs[block] > 0;
    aq_status st = resident ? ovr_materialize(m, block, which, err) : AQ_OK;
    if (st != AQ_OK) aq_model_clear_override(m, block, which);
    return st;
}

aq_status aq_model_set_override(aq_model *m, int block, aq_linear which,
                                const aq_linear_override *ov, aq_error *err)
{
    return set_override(m, block, which, ov, NULL, NULL, err);
}

aq_status aq_model_set_override_lazy(aq_model *m, int block, aq_linear which, const aq_linear_override *ov,
                                     aq_dequant_fn dequant, const void *ctx, aq_error *err)
{
    return set_override(m, block, which, ov, dequant, ctx, err);
}

void aq_model_clear_override(aq_model *m, int block, aq_linear which)
{
    int idx = aq_model_lin_index(m, block, which);
    if (idx < 0) return;
    free(m->ovr[idx].weight);
    free(m->ovr[idx].bias);
    memset(&m->ovr[idx], 0, sizeof m->ovr[idx]);
}

int aq_model_override_count(const aq_model *m)
{
    int n = 0;
    for (int i = 0; i <= m->cfg.n_layers * AQ_LIN_COUNT; i++)
        n += m->ovr[i].weight != NULL || m->ovr[i].dequant != NULL;
    return n + (m->embed_ovr != NULL); /* the quantized-mode embedding counts as one */
}

int aq_model_norm_index(const aq_model *m, int block, int which)
{
    int L = m->cfg.n_layers;
    if (block == L && which == 0) return 2 * L;
    if (block < 0 || block >= L || which < 0 || which > 1) return -1;
    return 2 * block + which;
}

const float *aq_model_norm(const aq_model *m, int block, int which, int quantized)
{
    int idx = aq_model_norm_index(m, block, which);
    if (idx < 0) return NULL;
    if (quantized && m->norm_ovr[idx]) return m->norm_ovr[idx];
    if (block == m->cfg.n_layers) return m->final_norm;
    return which ? m->blocks[block].ffn_norm : m->blocks[block].attn_norm;
}

aq_status aq_model_set_norm_override(aq_model *m, int block, int which, const float *g,
                                     aq_error *err)
{
    int idx = aq_model_norm_index(m, block, which), d = m->cfg.dim;
    if (idx < 0 || !g)
        return aq_fail(err, AQ_ERR_ARG,
                       "norm override: %s (block %d, which %d; model has %d blocks, the final "
                       "norm is block %d which 0)",
                       g ? "no such norm" : "no gain given", block, which, m->cfg.n_layers,
                       m->cfg.n_layers);
    for (int i = 0; i < d; i++)
        if (!isfinite(g[i]))
            return aq_fail(err, AQ_ERR_NUMERIC,
                           "norm override (block %d, which %d): non-finite gain at element %d",
                           block, which, i);
    float *c = m->norm_ovr[idx] ? m->norm_ovr[idx] : malloc((size_t)d * sizeof(float));
    if (!c) return aq_fail_nomem(err, "norm override", (size_t)d * sizeof(float));
    memcpy(c, g, (size_t)d * sizeof(float));
    m->norm_ovr[idx] = c;
    return AQ_OK;
}

aq_status aq_model_set_embed_override(aq_model *m, const float *e, aq_error *err)
{
    size_t n = (size_t)m->cfg.vocab_size * (size_t)m->cfg.dim;
    free(m->embed_ovr);
    m->embed_ovr = NULL;
    if (!e) return AQ_OK;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(e[i]))
            return aq_fail(err, AQ_ERR_NUMERIC, "embedding override: element %zu (token %zu) is %g", i,
                           i / (size_t)m->cfg.dim, (double)e[i]);
    if (!(m->embed_ovr = malloc(n * sizeof(float)))) return aq_fail_nomem(err, "embedding override", n * 4);
    memcpy(m->embed_ovr, e, n * sizeof(float));
    return AQ_OK;
}

void aq_model_clear_norm_overrides(aq_model *m)
{
    for (int i = 0; i <= 2 * m->cfg.n_layers; i++) {
        free(m->norm_ovr[i]);
        m->norm_ovr[i] = NULL;
    }
}
