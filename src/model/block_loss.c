/* block_loss.c — the one-block allocation losses (block_loss.h): FP block
 * inputs and outputs cached once, each task re-runs only its own block. */
#include "block_loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "grad.h"
#include "model_internal.h"

/* Fisher targets: the data's next token gets this logit, every other 0, so
 * softmax is one-hot to within V e^-40 and the engine's KL gradient is the
 * cross-entropy's. */
#define FISHER_TARGET_LOGIT 40.0f

typedef struct bl_batch {
    int s0, nb;
    size_t r0, rows;
} bl_batch;

struct aq_block_sens {
    aq_model *m;
    aq_block_loss_kind kind;
    int L, D, n_seqs;
    int *tokens, *lens;
    size_t rows, predicted;
    bl_batch *batches;
    int n_batches;
    float *x; /* per batch at r0 * D * (L+1): [L+1][rows_b][D], plane l = input of block l, L = last output */
    float *f; /* per batch at r0 * D * L: [L][rows_b][D] Fisher weight of block l's output (FISHER) */
    size_t bytes;
};

/* Windows grouped in order into batches of at most cap rows (a longer window
 * is a batch of its own). */
static aq_status plan(aq_block_sens *s, size_t cap, aq_error *err)
{
    s->batches = malloc((size_t)s->n_seqs * sizeof *s->batches);
    if (!s->batches) return aq_fail_nomem(err, "block-loss batches", (size_t)s->n_seqs);
    size_t r = 0;
    for (int q = 0; q < s->n_seqs;) {
        bl_batch *b = &s->batches[s->n_batches++];
        *b = (bl_batch){q, 0, r, 0};
        while (q < s->n_seqs && (b->nb == 0 || b->rows + (size_t)s->lens[q] <= cap)) {
            b->rows += (size_t)s->lens[q++];
            b->nb++;
        }
        r += b->rows;
    }
    return AQ_OK;
}

static float *x_plane(const aq_block_sens *s, const bl_batch *b, int l)
{
    return s->x + b->r0 * (size_t)s->D * (size_t)(s->L + 1) + (size_t)l * b->rows * (size_t)s->D;
}

static float *f_plane(const aq_block_sens *s, const bl_batch *b, int l)
{
    return s->f + b->r0 * (size_t)s->D * (size_t)s->L + (size_t)l * b->rows * (size_t)s->D;
}

/* The FP pass of one batch: every block's input, the last block's output
 * (the residual before the final norm, left in the scratch by the forward). */
static aq_status fp_batch(aq_block_sens *s, const bl_batch *b, aq_error *err)
{
    aq_forward_opts o;
    aq_forward_opts_default(&o);
    o.stop_after_block = s->L - 1;
    aq_forward_resume r = {0, NULL, x_plane(s, b, 0)};
    AQ_TRY(aq_model_forward_resume(s->m, s->tokens + b->r0, s->lens + b->s0, b->nb, &o, &r, NULL, err));
    memcpy(x_plane(s, b, s->L), s->m->s.x, b->rows * (size_t)s->D * sizeof(float));
    return AQ_OK;
}

/* Fisher weights of window q (rows at row offset i0 of batch b): one FP
 * forward for the logits, one backward of the cross-entropy of the window's
 * next tokens; the last position keeps its FP logits as target, so its
 * gradient is zero (it predicts nothing). */
static aq_status fisher_window(aq_block_sens *s, const bl_batch *b, int q, size_t i0, float *z, float *dres,
                               aq_error *err)
{
    const int *tok = s->tokens + b->r0 + i0;
    int n = s->lens[q], V = aq_model_config(s->m)->vocab_size;
    size_t D = (size_t)s->D;
    AQ_TRY(aq_model_forward(s->m, tok, &s->lens[q], 1, NULL, z, err));
    for (int t = 0; t + 1 < n; t++) {
        float *zr = z + (size_t)t * (size_t)V;
        memset(zr, 0, (size_t)V * sizeof *zr);
        zr[tok[t + 1]] = FISHER_TARGET_LOGIT;
    }
    double ce = 0.0;
    AQ_TRY(aq_model_kl_grad_resid(s->m, tok, &s->lens[q], 1, z, &ce, dres, err));
    for (int l = 0; l < s->L; l++) {
        const float *gl = dres + (size_t)l * (size_t)n * D;
        float *fl = f_plane(s, b, l) + i0 * D;
        for (size_t i = 0; i < (size_t)n * D; i++) fl[i] = gl[i] * gl[i];
    }
    return AQ_OK;
}

static aq_status fisher_all(aq_block_sens *s, aq_error *err)
{
    int V = aq_model_config(s->m)->vocab_size, longest = 0;
    for (int q = 0; q < s->n_seqs; q++) longest = s->lens[q] > longest ? s->lens[q] : longest;
    float *z = malloc((size_t)longest * (size_t)V * sizeof *z);
    float *dres = malloc((size_t)longest * (size_t)s->D * (size_t)s->L * sizeof *dres);
    aq_status st = z && dres ? AQ_OK : aq_fail_nomem(err, "Fisher capture", (size_t)longest * (size_t)V * 4);
    for (int bi = 0; st == AQ_OK && bi < s->n_batches; bi++) {
        const bl_batch *b = &s->batches[bi];
        size_t i0 = 0;
        for (int q = b->s0; st == AQ_OK && q < b->s0 + b->nb; i0 += (size_t)s->lens[q++])
            st = fisher_window(s, b, q, i0, z, dres, err);
    }
    free(z);
    free(dres);
    if (st != AQ_OK) aq_error_prefix(err, "block-fisher weights");
    return st;
}

static aq_status check_windows(aq_block_sens *s, const int *lens, aq_error *err)
{
    for (int i = 0; i < s->n_seqs; i++) {
        if (lens[i] <= 0) return aq_fail(err, AQ_ERR_ARG, "block loss: window %d has %d tokens", i, lens[i]);
        s->rows += (size_t)lens[i];
        s->predicted += (size_t)(lens[i] - 1);
    }
    if (s->predicted == 0) return aq_fail(err, AQ_ERR_ARG, "block loss: no window predicts a token");
    return AQ_OK;
}

static aq_status block_sens_init(aq_block_sens *s, const int *tokens, const int *lens, size_t cap, aq_error *err)
{
    AQ_TRY(check_windows(s, lens, err));
    size_t nx = s->rows * (size_t)s->D * (size_t)(s->L + 1);
    size_t nf = s->kind == AQ_BLOCK_LOSS_FISHER ? s->rows * (size_t)s->D * (size_t)s->L : 0;
    s->bytes = (nx + nf) * sizeof(float);
    s->tokens = malloc(s->rows * sizeof(int));
    s->lens = malloc((size_t)s->n_seqs * sizeof(int));
    s->x = malloc(nx * sizeof(float));
    s->f = nf ? malloc(nf * sizeof(float)) : NULL;
    if (!s->tokens || !s->lens || !s->x || (nf && !s->f))
        return aq_fail_nomem(err, "block-loss cache (FP block inputs and outputs)", s->bytes);
    memcpy(s->tokens, tokens, s->rows * sizeof(int));
    memcpy(s->lens, lens, (size_t)s->n_seqs * sizeof(int));
    AQ_TRY(plan(s, cap ? cap : 4096, err));
    for (int b = 0; b < s->n_batches; b++) AQ_TRY(fp_batch(s, &s->batches[b], err));
    return s->kind == AQ_BLOCK_LOSS_FISHER ? fisher_all(s, err) : AQ_OK;
}

aq_status aq_block_sens_new(aq_model *m, const int *tokens, const int *lens, int n_seqs, size_t max_batch_tokens,
                            aq_block_loss_kind kind, aq_block_sens **out, aq_error *err)
{
    *out = NULL;
    if (kind != AQ_BLOCK_LOSS_MSE && kind != AQ_BLOCK_LOSS_FISHER)
        return aq_fail(err, AQ_ERR_ARG, "block loss: unknown kind %d", (int)kind);
    if (n_seqs <= 0) return aq_fail(err, AQ_ERR_ARG, "block loss: no windows (%d)", n_seqs);
    if (aq_model_override_count(m) != 0)
        return aq_fail(err, AQ_ERR_ARG, "block loss: the model has %d quantized overrides installed; the FP "
                       "reference needs none", aq_model_override_count(m));
    aq_block_sens *s = calloc(1, sizeof *s);
    if (!s) return aq_fail_nomem(err, "block loss", sizeof *s);
    *s = (aq_block_sens){.m = m, .kind = kind, .L = aq_model_config(m)->n_layers, .D = aq_model_config(m)->dim,
                         .n_seqs = n_seqs};
    aq_status st = block_sens_init(s, tokens, lens, max_batch_tokens, err);
    if (st != AQ_OK) {
        aq_block_sens_free(s);
        return st;
    }
    *out = s;
    return AQ_OK;
}

void aq_block_sens_free(aq_block_sens *s)
{
    if (!s) return;
    free(s->tokens);
    free(s->lens);
    free(s->batches);
    free(s->x);
    free(s->f);
    free(s);
}

/* Add batch b's error of block l (quantized output in the forward scratch). */
static aq_status batch_error(const aq_block_sens *s, const bl_batch *b, int l, double *sum, aq_error *err)
{
    const float *y = x_plane(s, b, l + 1), *yq = s->m->s.x;
    const float *f = s->kind == AQ_BLOCK_LOSS_FISHER ? f_plane(s, b, l) : NULL;
    size_t D = (size_t)s->D, r = 0;
    for (int q = b->s0; q < b->s0 + b->nb; q++)
        for (int t = 0; t < s->lens[q]; t++, r++) {
            if (t + 1 == s->lens[q]) continue; /* predicts nothing, read by nothing downstream */
            double acc = 0.0;
            for (size_t i = r * D; i < (r + 1) * D; i++) {
                double d = (double)yq[i] - y[i];
                acc += f ? 0.5 * f[i] * d * d : d * d;
            }
            if (!isfinite(acc))
                return aq_fail(err, AQ_ERR_NUMERIC, "non-finite block output (window %d, position %d)", q, t);
            *sum += acc;
        }
    return AQ_OK;
}

static aq_status run_block_loss(aq_block_sens *s, int l, double *loss, aq_error *err)
{
    aq_forward_opts o;
    aq_forward_opts_default(&o);
    o.quantized = 1;
    o.stop_after_block = l;
    double sum = 0.0;
    for (int bi = 0; bi < s->n_batches; bi++) {
        const bl_batch *b = &s->batches[bi];
        aq_forward_resume r = {l, x_plane(s, b, l), NULL};
        AQ_TRY(aq_model_forward_resume(s->m, s->tokens + b->r0, s->lens + b->s0, b->nb, &o, &r, NULL, err));
        AQ_TRY(batch_error(s, b, l, &sum, err));
    }
    *loss = sum / (double)s->predicted;
    return AQ_OK;
}

aq_status aq_block_sens_layer(aq_block_sens *s, int block, aq_linear which, const aq_linear_override *ov,
                              double *loss, aq_error *err)
{
    char name[96];
    aq_linear_prefix(block, which, name, sizeof name);
    if (block < 0 || block >= s->L || which >= AQ_LIN_COUNT)
        return aq_fail(err, AQ_ERR_ARG, "block loss of %s: not a block linear", name);
    if (aq_model_override_count(s->m) != 0)
        return aq_fail(err, AQ_ERR_ARG, "block loss of %s: the model already has %d overrides installed", name,
                       aq_model_override_count(s->m));
    aq_status st = aq_model_set_override(s->m, block, which, ov, err);
    if (st == AQ_OK) {
        st = run_block_loss(s, block, loss, err);
        aq_model_clear_override(s->m, block, which);
    }
    if (st != AQ_OK) aq_error_prefix(err, "block loss of %s", name);
    return st;
}

size_t aq_block_sens_bytes(const aq_block_sens *s)
{
    return s->bytes;
}

size_t aq_block_params(const aq_llama_config *c)
{
    size_t hd = (size_t)(c->head_dim > 0 ? c->head_dim : c->dim / c->n_heads);
    size_t qd = hd * (size_t)c->n_heads, kvd = hd * (size_t)c->n_kv_heads, D = (size_t)c->dim;
    return (size_t)c->n_layers * (2 * D * qd + 2 * D * kvd + 3 * D * (size_t)c->hidden_dim);
}

int aq_block_loss_auto(const aq_llama_config *c, size_t rows)
{
    size_t cache = 16 * rows * (size_t)c->vocab_size;
    return cache <= AQ_SENS_KL_MAX_CACHE && aq_block_params(c) <= AQ_SENS_KL_MAX_PARAMS ? 0 : AQ_BLOCK_LOSS_FISHER;
}
