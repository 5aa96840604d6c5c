/* decode.c — incremental decoding of one sequence with a KV cache (generation):
 * each step runs one token through the blocks, appending its rotated keys and
 * values to the cache, so a step costs O(pos) attention instead of a full
 * recompute. The FP weights are used (overrides are ignored). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

struct aq_kv_cache {
    int n_layers, max_seq, kvd, next_pos;
    int cap;      /* positions allocated: grown by doubling up to max_seq, so a
                     model with a long context (Llama 3.1: 131072) does not
                     reserve its whole cache up front */
    float *k, *v; /* [cap, n_layers, kvd]: position-major, so growing keeps the rows */
    float *x, *xb, *xb2, *q, *att, *hb, *hb2, *sc;
};

aq_status aq_kv_cache_new(const aq_model *m, aq_kv_cache **out, aq_error *err)
{
    const aq_llama_config *c = &m->cfg;
    aq_kv_cache *kc = calloc(1, sizeof *kc);
    if (!kc) return aq_fail_nomem(err, "KV cache", sizeof *kc);
    kc->n_layers = c->n_layers;
    kc->max_seq = c->max_seq_len;
    kc->kvd = m->kvd;
    kc->cap = c->max_seq_len < 32 ? c->max_seq_len : 32; /* grown in grow_cache */
    size_t n = (size_t)c->n_layers * kc->cap * m->kvd;
    kc->k = malloc(n * sizeof(float));
    kc->v = malloc(n * sizeof(float));
    kc->x = malloc((size_t)c->dim * sizeof(float));
    kc->xb = malloc((size_t)c->dim * sizeof(float));
    kc->xb2 = malloc((size_t)c->dim * sizeof(float));
    kc->q = malloc((size_t)m->qd * sizeof(float));
    kc->att = malloc((size_t)m->qd * sizeof(float));
    kc->hb = malloc((size_t)c->hidden_dim * sizeof(float));
    kc->hb2 = malloc((size_t)c->hidden_dim * sizeof(float));
    kc->sc = malloc((size_t)c->max_seq_len * sizeof(float));
    if (!kc->k || !kc->v || !kc->x || !kc->xb || !kc->xb2 || !kc->q || !kc->att || !kc->hb ||
        !kc->hb2 || !kc->sc) {
        aq_kv_cache_free(kc);
        return aq_fail_nomem(err, "KV cache", 2 * n * sizeof(float));
    }
    *out = kc;
    return AQ_OK;
}

void aq_kv_cache_free(aq_kv_cache *c)
{
    if (!c) return;
    free(c->k);
    free(c->v);
    free(c->x);
    free(c->xb);
    free(c->xb2);
    free(c->q);
    free(c->att);
    free(c->hb);
    free(c->hb2);
    free(c->sc);
    free(c);
}

/* Attention of the current query (position pos) over cached keys 0..pos. */
static void attend_cached(const aq_model *m, aq_kv_cache *kc, int l, int pos)
{
    int hs = m->hs, group = m->cfg.n_heads / m->cfg.n_kv_heads;
    size_t stride = (size_t)kc->n_layers * kc->kvd;
    const float *K = kc->k + (size_t)l * kc->kvd, *V = kc->v + (size_t)l * kc->kvd;
    float scale = 1.0f / sqrtf((float)hs);
    for (int h = 0; h < m->cfg.n_heads; h++) {
        const float *q = kc->q + (size_t)h * hs;
        size_t ko = (size_t)(h / group) * hs;
        float mx = -INFINITY;
        for (int t = 0; t <= pos; t++) {
            const float *k = K + (size_t)t * stride + ko;
            float d = 0.0f;
            for (int i = 0; i < hs; i++)
                d += q[i] * k[i];
            kc->sc[t] = d * scale;
            mx = kc->sc[t] > mx ? kc->sc[t] : mx;
        }
        double sum = 0.0;
        for (int t = 0; t <= pos; t++)
            sum += (kc->sc[t] = expf(kc->sc[t] - mx));
        float *o = kc->att + (size_t)h * hs;
        memset(o, 0, (size_t)hs * sizeof(float));
        for (int t = 0; t <= pos; t++) {
            float a = (float)(kc->sc[t] / sum);
            const float *v = V + (size_t)t * stride + ko;
            for (int i = 0; i < hs; i++)
                o[i] += a * v[i];
        }
    }
}

/* Make room for position pos (doubling, at most max_seq positions). */
static aq_status grow_cache(aq_kv_cache *kc, int pos, aq_error *err)
{
    if (pos < kc->cap) return AQ_OK;
    int cap = kc->cap;
    while (cap <= pos)
        cap = cap > kc->max_seq / 2 ? kc->max_seq : 2 * cap;
    size_t n = (size_t)cap * kc->n_layers * kc->kvd * sizeof(float);
    float *k = realloc(kc->k, n);
    if (k) kc->k = k;
    float *v = k ? realloc(kc->v, n) : NULL;
    if (!v) return aq_fail_nomem(err, "KV cache", 2 * n);
    kc->v = v;
    kc->cap = cap;
    return AQ_OK;
}

/* y = W x + b of one token through linear (l, which) with the FP weights. */
static void lin1(const aq_model *m, int l, aq_linear which, const float *x, float *y)
{
    int d_out, d_in;
    aq_model_lin_shape(m, which, &d_out, &d_in);
    aq_sgemv_wx(m->blocks[l].lin[which], x, y, d_in, d_out);
    const float *b = m->blocks[l].bias[which];
    for (int j = 0; b && j < d_out; j++)
        y[j] += b[j];
}

aq_status aq_model_decode_step(aq_model *m, aq_kv_cache *kc, int token, int pos, float *logits,
                               aq_error *err)
{
    const aq_llama_config *c = &m->cfg;
    if (token < 0 || token >= c->vocab_size)
        return aq_fail(err, AQ_ERR_ARG,
                       "decode: token id %d at position %d is out of range (vocab %d)", token, pos,
                       c->vocab_size);
    if (pos < 0 || pos >= c->max_seq_len || pos > kc->next_pos)
        return aq_fail(err, AQ_ERR_ARG, "decode: position %d invalid (next is %d, max_seq_len %d)",
                       pos, kc->next_pos, c->max_seq_len);
    if (m->window && pos >= m->window)
        return aq_fail(err, AQ_ERR_ARG,
                       "decode: position %d is past the sliding attention window of %d tokens "
                       "(config sliding_window), which is not implemented",
                       pos, m->window);
    AQ_TRY(grow_cache(kc, pos, err));
    memcpy(kc->x, m->embed + (size_t)token * c->dim, (size_t)c->dim * sizeof(float));
    for (int l = 0; l < c->n_layers; l++) {
        float *kr = kc->k + ((size_t)pos * kc->n_layers + l) * kc->kvd;
        float *vr = kc->v + ((size_t)pos * kc->n_layers + l) * kc->kvd;
        aq_rmsnorm_rows(kc->x, m->blocks[l].attn_norm, kc->xb, 1, c->dim, c->norm_eps);
        lin1(m, l, AQ_LIN_Q, kc->xb, kc->q);
        lin1(m, l, AQ_LIN_K, kc->xb, kr);
        lin1(m, l, AQ_LIN_V, kc->xb, vr);
        aq_model_qk_norm(m, l, 0, kc->q, 1);
        aq_model_qk_norm(m, l, 1, kr, 1);
        aq_rope_rows(m, kc->q, 1, c->n_heads, &pos);
        aq_rope_rows(m, kr, 1, c->n_kv_heads, &pos);
        attend_cached(m, kc, l, pos);
        lin1(m, l, AQ_LIN_O, kc->att, kc->xb2);
        for (int i = 0; i < c->dim; i++)
            kc->x[i] += kc->xb2[i];
        aq_rmsnorm_rows(kc->x, m->blocks[l].ffn_norm, kc->xb, 1, c->dim, c->norm_eps);
        lin1(m, l, AQ_LIN_GATE, kc->xb, kc->hb);
        lin1(m, l, AQ_LIN_UP, kc->xb, kc->hb2);
        for (int i = 0; i < c->hidden_dim; i++)
            kc->hb[i] = kc->hb[i] / (1.0f + expf(-kc->hb[i])) * kc->hb2[i];
        lin1(m, l, AQ_LIN_DOWN, kc->hb, kc->xb2);
        for (int i = 0; i < c->dim; i++)
            kc->x[i] += kc->xb2[i];
    }
    aq_rmsnorm_rows(kc->x, m->final_norm, kc->xb, 1, c->dim, c->norm_eps);
    aq_sgemv_wx(m->head, kc->xb, logits, c->dim, c->vocab_size);
    kc->next_pos = pos + 1;
    return AQ_OK;
}
