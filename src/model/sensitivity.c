/* sensitivity.c — network-level KL of one quantized layer with cached FP
 * residuals and log-probabilities (sensitivity.h). */
#include "sensitivity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One forward batch: windows [s0, s0+nb), packed rows [r0, r0+rows). */
typedef struct sens_batch {
    int s0, nb;
    size_t r0, rows;
} sens_batch;

struct aq_sens {
    aq_model *m;
    int V, dim, n_layers, n_seqs;
    int *tokens, *lens;
    size_t rows, predicted, cap;
    sens_batch *batches;
    int n_batches;
    float *x;      /* per batch: [n_layers, rows_b, dim] block-input residuals */
    double *lp;    /* [rows, V] FP log-probabilities */
    double *p;     /* [rows, V] FP probabilities exp(lp) */
    float *logits; /* [cap, V] scratch */
    size_t bytes;
    int base;      /* x holds a quantized base model's residuals (aq_sens_set_base) */
};

/* log-sum-exp of z[V] in float64; the FP and the quantized rows go through
 * exactly this code, so equal logits give equal log-probabilities. */
static double lse(const float *z, int V)
{
    double mx = z[0], sum = 0.0;
    for (int i = 1; i < V; i++)
        mx = z[i] > mx ? z[i] : mx;
    for (int i = 0; i < V; i++)
        sum += exp((double)z[i] - mx);
    return mx + log(sum);
}

static aq_status plan_batches(aq_sens *s, size_t max_tokens, aq_error *err)
{
    size_t cap = max_tokens ? max_tokens : (size_t)(1 << 24) / (size_t)s->V;
    if (!max_tokens && cap > 4096) cap = 4096;
    if (cap > s->rows) cap = s->rows; /* no bigger than all the windows */
    for (int i = 0; i < s->n_seqs; i++)
        if ((size_t)s->lens[i] > cap) cap = (size_t)s->lens[i];
    s->cap = cap;
    s->batches = malloc((size_t)s->n_seqs * sizeof *s->batches);
    if (!s->batches) return aq_fail_nomem(err, "sensitivity batches", (size_t)s->n_seqs);
    size_t r = 0;
    for (int s0 = 0; s0 < s->n_seqs;) {
        sens_batch *b = &s->batches[s->n_batches++];
        b->s0 = s0;
        b->r0 = r;
        b->rows = 0;
        b->nb = 0;
        while (s0 + b->nb < s->n_seqs && b->rows + (size_t)s->lens[s0 + b->nb] <= cap)
            b->rows += (size_t)s->lens[s0 + b->nb++];
        r += b->rows;
        s0 += b->nb;
    }
    return AQ_OK;
}

static aq_status alloc_cache(aq_sens *s, aq_error *err)
{
    size_t V = (size_t)s->V;
    size_t nx = s->rows * (size_t)s->dim * (size_t)s->n_layers;
    s->bytes = nx * sizeof(float) + 2 * s->rows * V * sizeof(double) + s->cap * V * sizeof(float);
    s->x = malloc(nx ? nx * sizeof(float) : 1);
    s->lp = malloc(s->rows * V * sizeof(double));
    s->p = malloc(s->rows * V * sizeof(double));
    s->logits = malloc(s->cap * V * sizeof(float));
    if (!s->x || !s->lp || !s->p || !s->logits)
        return aq_fail_nomem(err, "sensitivity cache (FP residuals and log-probabilities)",
                             s->bytes);
    return AQ_OK;
}

/* The residual cache of one batch from a forward with (quantized) overrides
 * used or not. */
static aq_status cache_batch(aq_sens *s, const sens_batch *b, int quantized, aq_error *err)
{
    aq_forward_opts o;
    aq_forward_opts_default(&o);
    o.quantized = quantized;
    aq_forward_resume r = {0, NULL, s->x + b->r0 * (size_t)s->dim * (size_t)s->n_layers};
    return aq_model_forward_resume(s->m, s->tokens + b->r0, s->lens + b->s0, b->nb, &o, &r,
                                   s->logits, err);
}

/* The FP pass of one batch: residuals into the cache, log-probs and probs. */
static aq_status fp_batch(aq_sens *s, const sens_batch *b, aq_error *err)
{
    AQ_TRY(cache_batch(s, b, 0, err));
    size_t V = (size_t)s->V;
    for (size_t i = 0; i < b->rows; i++) {
        const float *z = s->logits + i * V;
        double l = lse(z, s->V);
        if (!isfinite(l))
            return aq_fail(err, AQ_ERR_NUMERIC, "sensitivity: non-finite FP logits at packed row %zu",
                           b->r0 + i);
        double *lp = s->lp + (b->r0 + i) * V, *p = s->p + (b->r0 + i) * V;
        for (size_t v = 0; v < V; v++) {
            lp[v] = (double)z[v] - l;
            p[v] = exp(lp[v]);
        }
    }
    return AQ_OK;
}

aq_status aq_sens_new(aq_model *m, const int *tokens, const int *lens, int n_seqs,
                      size_t max_batch_tokens, aq_sens **out, aq_error *err)
{
    *out = NULL;
    const aq_llama_config *c = aq_model_config(m);
    if (n_seqs <= 0) return aq_fail(err, AQ_ERR_ARG, "sensitivity: no windows (%d)", n_seqs);
    if (aq_model_override_count(m) != 0)
        return aq_fail(err, AQ_ERR_ARG,
                       "sensitivity: the model has %d quantized overrides installed; the FP "
                       "reference needs none",
                       aq_model_override_count(m));
    aq_sens *s = calloc(1, sizeof *s);
    if (!s) return aq_fail_nomem(err, "sensitivity", sizeof *s);
    s->m = m;
    s->V = c->vocab_size;
    s->dim = c->dim;
    s->n_layers = c->n_layers;
    s->n_seqs = n_seqs;
    aq_status st = AQ_OK;
    for (int i = 0; i < n_seqs && st == AQ_OK; i++) {
        if (lens[i] <= 0)
            st = aq_fail(err, AQ_ERR_ARG, "sensitivity: window %d has %d tokens", i, lens[i]);
        s->rows += (size_t)lens[i];
        s->predicted += lens[i] > 1 ? (size_t)(lens[i] - 1) : 0;
    }
    if (st == AQ_OK && s->predicted == 0)
        st = aq_fail(err, AQ_ERR_ARG, "sensitivity: no window predicts a token (all of length 1)");
    s->tokens = st == AQ_OK ? malloc(s->rows * sizeof(int)) : NULL;
    s->lens = st == AQ_OK ? malloc((size_t)n_seqs * sizeof(int)) : NULL;
    if (st == AQ_OK && (!s->tokens || !s->lens))
        st = aq_fail_nomem(err, "sensitivity windows", s->rows * sizeof(int));
    if (st == AQ_OK) {
        memcpy(s->tokens, tokens, s->rows * sizeof(int));
        memcpy(s->lens, lens, (size_t)n_seqs * sizeof(int));
        st = plan_batches(s, max_batch_tokens, err);
    }
    if (st == AQ_OK) st = alloc_cache(s, err);
    for (int b = 0; st == AQ_OK && b < s->n_batches; b++)
        st = fp_batch(s, &s->batches[b], err);
    if (st != AQ_OK) {
        aq_sens_free(s);
        return st;
    }
    *out = s;
    return AQ_OK;
}

void aq_sens_free(aq_sens *s)
{
    if (!s) return;
    free(s->tokens);
    free(s->lens);
    free(s->batches);
    free(s->x);
    free(s->lp);
    free(s->p);
    free(s->logits);
    free(s);
}

/* Add the KL of batch b's predicted rows (quantized logits in s->logits). */
static aq_status kl_batch(aq_sens *s, const sens_batch *b, double *sum, aq_error *err)
{
    size_t V = (size_t)s->V, i = 0;
    for (int q = b->s0; q < b->s0 + b->nb; q++)
        for (int t = 0; t < s->lens[q]; t++, i++) {
            if (t + 1 == s->lens[q]) continue; /* predicts nothing */
            const float *z = s->logits + i * V;
            double l = lse(z, s->V), acc = 0.0;
            if (!isfinite(l))
                return aq_fail(err, AQ_ERR_NUMERIC,
                               "non-finite quantized logits (window %d, position %d)", q, t);
            const double *lp = s->lp + (b->r0 + i) * V, *p = s->p + (b->r0 + i) * V;
            for (size_t v = 0; v < V; v++)
                acc += p[v] * (lp[v] - ((double)z[v] - l));
            *sum += acc;
        }
    return AQ_OK;
}

/* Run every batch quantized from block `start` (resumed from the cached FP
 * residual) and average the KL. */
static aq_status run_kl(aq_sens *s, int start, double *kl, aq_error *err)
{
    aq_forward_opts o;
    aq_forward_opts_default(&o);
    o.quantized = 1;
    double sum = 0.0;
    size_t plane = (size_t)s->dim;
    for (int bi = 0; bi < s->n_batches; bi++) {
        const sens_batch *b = &s->batches[bi];
        const float *xb = s->x + b->r0 * plane * (size_t)s->n_layers;
        aq_forward_resume r = {start, start > 0 ? xb + (size_t)start * b->rows * plane : NULL,
                               NULL};
        AQ_TRY(aq_model_forward_resume(s->m, s->tokens + b->r0, s->lens + b->s0, b->nb, &o, &r,
                                       s->logits, err));
        AQ_TRY(kl_batch(s, b, &sum, err));
    }
    /* KL >= 0 mathematically; a tiny negative sum is rounding */
    *kl = sum > 0.0 ? sum / (double)s->predicted : 0.0;
    return AQ_OK;
}

aq_status aq_sens_layer_kl(aq_sens *s, int block, aq_linear which, const aq_linear_override *ov,
                           double *kl, aq_error *err)
{
    char name[96];
    aq_linear_prefix(block, which, name, sizeof name);
    if (s->base)
        return aq_fail(err, AQ_ERR_ARG,
                       "sensitivity of %s: the cache holds a quantized base (aq_sens_swap_kl)", name);
    if (aq_model_override_count(s->m) != 0)
        return aq_fail(err, AQ_ERR_ARG,
                       "sensitivity of %s: the model already has %d overrides installed", name,
                       aq_model_override_count(s->m));
    aq_status st = aq_model_set_override(s->m, block, which, ov, err);
    if (st == AQ_OK) {
        /* the classifier (block n_layers) resumes at the last block */
        st = run_kl(s, block < s->n_layers ? block : s->n_layers - 1, kl, err);
        aq_model_clear_override(s->m, block, which);
    }
    if (st != AQ_OK) aq_error_prefix(err, "sensitivity of %s", name);
    return st;
}

aq_status aq_sens_set_base(aq_sens *s, aq_error *err)
{
    s->base = 0; /* until the cache is consistent again */
    for (int b = 0; b < s->n_batches; b++)
        AQ_TRY(cache_batch(s, &s->batches[b], 1, err));
    s->base = aq_model_override_count(s->m) > 0;
    return AQ_OK;
}

aq_status aq_sens_swap_kl(aq_sens *s, int block, aq_linear which, const aq_linear_override *ov,
                          const aq_linear_override *restore, double *kl, aq_error *err)
{
    char name[96];
    aq_linear_prefix(block, which, name, sizeof name);
    aq_status st = aq_model_set_override(s->m, block, which, ov, err);
    if (st == AQ_OK) st = run_kl(s, block < s->n_layers ? block : s->n_layers - 1, kl, err);
    if (restore) {
        aq_error e2 = {0};
        aq_status rs = aq_model_set_override(s->m, block, which, restore, &e2);
        if (st == AQ_OK && rs != AQ_OK) {
            *err = e2;
            st = rs;
        }
    } else {
        aq_model_clear_override(s->m, block, which);
    }
    if (st != AQ_OK) aq_error_prefix(err, "sensitivity of %s in the base", name);
    return st;
}

aq_status aq_sens_installed_kl(aq_sens *s, double *kl, aq_error *err)
{
    if (aq_model_override_count(s->m) == 0)
        return aq_fail(err, AQ_ERR_ARG, "sensitivity: no quantized override is installed");
    return run_kl(s, 0, kl, err);
}

size_t aq_sens_predicted(const aq_sens *s)
{
    return s->predicted;
}

size_t aq_sens_bytes(const aq_sens *s)
{
    return s->bytes;
}
