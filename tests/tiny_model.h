/* tiny_model.h — the one tiny random Llama writer of the C tests: an untied
 * F32 Hugging Face directory (config.json + model.safetensors) whose values
 * are drawn from testutil.h's generator and kept, so that a test can build
 * its own float64 reference from the same numbers. Each value is
 * base + scale * u with u uniform in [-0.5, 0.5) (aq_test_frand); the scales
 * are the test's (they set how far each part moves the logits). Header-only:
 * only the tests that write a model link safetensors and the model config. */
#ifndef AQ_TINY_MODEL_H
#define AQ_TINY_MODEL_H

#include <stdio.h>
#include <stdlib.h>

#include "../io/safetensors.h"
#include "../src/model/model.h"
#include "testutil.h"

typedef struct {
    float embed; /* embedding table */
    float norm;  /* norm gains, around 1 */
    float lin;   /* the blocks' linears */
    float head;  /* the classifier (lm_head) */
} aq_tiny_scales;

typedef struct {
    float *embed; /* [vocab * dim] */
    float **norm; /* [2 * n_layers + 1]: block b input 2b, post-attention 2b+1, final last */
    float **lin;  /* [n_layers * AQ_LIN_COUNT + 1]: block * AQ_LIN_COUNT + which, classifier last */
    int n_norm, n_lin;
} aq_tiny_model;

static const char *const aq_tiny_lin_names[AQ_LIN_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

/* [o, i] of linear `which` (AQ_LIN_HEAD for the classifier). */
static inline void aq_tiny_lin_shape(const aq_llama_config *c, int which, int *o, int *i)
{
    int kvd = c->dim / c->n_heads * c->n_kv_heads;
    *o = which == AQ_LIN_HEAD                              ? c->vocab_size
         : which == AQ_LIN_K || which == AQ_LIN_V          ? kvd
         : which == AQ_LIN_GATE || which == AQ_LIN_UP      ? c->hidden_dim
                                                           : c->dim;
    *i = which == AQ_LIN_DOWN ? c->hidden_dim : c->dim;
}

/* HF name of norm k (the aq_tiny_model.norm index). */
static inline const char *aq_tiny_norm_name(const aq_llama_config *c, int k, char *buf, size_t n)
{
    if (k == 2 * c->n_layers) return "model.norm.weight";
    snprintf(buf, n, "model.layers.%d.%s.weight", k / 2,
             k % 2 ? "post_attention_layernorm" : "input_layernorm");
    return buf;
}

/* A [n] array of base + scale * u, added to w as tensor `name` (1-D if cols == 0). */
static inline float *aq_tiny_draw(aq_st_writer *w, const char *name, int rows, int cols, float scale,
                                  float base, uint64_t *rng)
{
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    float *b = malloc(sizeof(float) * n);
    for (size_t k = 0; k < n; k++)
        b[k] = base + scale * aq_test_frand(rng);
    int64_t sh[2] = {rows, cols};
    aq_error err = {0};
    CHECK_OK(aq_st_writer_add(w, name, AQ_F32, cols ? 2 : 1, sh, b, &err), &err);
    return b;
}

/* Writes dir/model.safetensors and dir/config.json for c, drawing from *rng
 * (embedding, the norms in index order, the linears in index order); *m keeps
 * the values (aq_tiny_free). Failures are CHECK failures. */
static inline void aq_tiny_write(const char *dir, const aq_llama_config *c, const aq_tiny_scales *s,
                                 uint64_t *rng, aq_tiny_model *m)
{
    aq_error err = {0};
    aq_st_writer *w = NULL;
    char name[160], p[600];
    *m = (aq_tiny_model){0};
    m->n_norm = 2 * c->n_layers + 1;
    m->n_lin = c->n_layers * AQ_LIN_COUNT + 1;
    m->norm = calloc((size_t)m->n_norm, sizeof(float *));
    m->lin = calloc((size_t)m->n_lin, sizeof(float *));
    CHECK_OK(aq_st_writer_new(&w, &err), &err);
    if (!w) return;
    m->embed = aq_tiny_draw(w, "model.embed_tokens.weight", c->vocab_size, c->dim, s->embed, 0.0f, rng);
    for (int k = 0; k < m->n_norm; k++)
        m->norm[k] = aq_tiny_draw(w, aq_tiny_norm_name(c, k, name, sizeof name), c->dim, 0, s->norm,
                                  1.0f, rng);
    for (int j = 0; j < m->n_lin; j++) {
        int which = j == m->n_lin - 1 ? AQ_LIN_HEAD : j % AQ_LIN_COUNT, o, i;
        aq_tiny_lin_shape(c, which, &o, &i);
        if (which == AQ_LIN_HEAD)
            snprintf(name, sizeof name, "lm_head.weight");
        else
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", j / AQ_LIN_COUNT,
                     aq_tiny_lin_names[which]);
        m->lin[j] = aq_tiny_draw(w, name, o, i, which == AQ_LIN_HEAD ? s->head : s->lin, 0.0f, rng);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK_OK(aq_st_writer_write(w, p, &err), &err);
    aq_st_writer_free(w);
    snprintf(p, sizeof p, "%s/config.json", dir);
    CHECK_OK(aq_llama_config_write_json(p, c, &err), &err);
}

static inline void aq_tiny_free(aq_tiny_model *m)
{
    free(m->embed);
    for (int k = 0; m->norm && k < m->n_norm; k++)
        free(m->norm[k]);
    for (int j = 0; m->lin && j < m->n_lin; j++)
        free(m->lin[j]);
    free(m->norm);
    free(m->lin);
}

#endif
