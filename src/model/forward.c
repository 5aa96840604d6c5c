/* forward.c — the batch forward pass over packed sequences (model.h), with the
 * capture hook at every linear input and optional quantized overrides. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

static int grow(float **p, size_t n, size_t *bytes)
{
    float *q = realloc(*p, n * sizeof(float));
    if (!q) return 0;
    *p = q;
    *bytes += n * sizeof(float);
    return 1;
}

/* Make the scratch hold rows tokens and sequences up to seq long. */
static aq_status ensure_scratch(aq_model *m, size_t rows, size_t seq, size_t n_seqs, aq_error *err)
{
    aq_scratch *s = &m->s;
    const aq_llama_config *c = &m->cfg;
    if (rows > s->cap_rows) {
        size_t b = 0, wide = (size_t)(c->hidden_dim > m->qd ? c->hidden_dim : m->qd);
        if (wide < (size_t)c->dim) wide = (size_t)c->dim;
        int ok = grow(&s->x, rows * c->dim, &b) && grow(&s->xb, rows * c->dim, &b) &&
                 grow(&s->xb2, rows * c->dim, &b) && grow(&s->q, rows * m->qd, &b) &&
                 grow(&s->k, rows * m->kvd, &b) && grow(&s->v, rows * m->kvd, &b) &&
                 grow(&s->att, rows * m->qd, &b) && grow(&s->hb, rows * c->hidden_dim, &b) &&
                 grow(&s->hb2, rows * c->hidden_dim, &b) && grow(&s->xq, rows * wide, &b);
        int *pos = ok ? realloc(s->pos, rows * sizeof(int)) : NULL;
        if (!pos) return aq_fail_nomem(err, "forward activations", b);
        s->pos = pos;
        s->cap_rows = rows;
    }
    if (seq > s->cap_seq) {
        size_t b = 0;
        if (!grow(&s->scores, seq * seq, &b))
            return aq_fail_nomem(err, "attention scores", seq * seq * 4);
        s->cap_seq = seq;
    }
    if (n_seqs > s->cap_ids) {
        long *ids = realloc(s->ids, n_seqs * sizeof(long));
        if (!ids) return aq_fail_nomem(err, "sequence ids", n_seqs * sizeof(long));
        s->ids = ids;
        s->cap_ids = n_seqs;
    }
    size_t per_row =
        3 * (size_t)c->dim + 2 * (size_t)m->qd + 2 * (size_t)m->kvd + 3 * (size_t)c->hidden_dim;
    if ((size_t)m->qd > (size_t)c->hidden_dim) per_row += (size_t)(m->qd - c->hidden_dim);
    s->bytes = s->cap_rows * (per_row * sizeof(float) + sizeof(int)) +
               s->cap_seq * s->cap_seq * sizeof(float) + s->cap_ids * sizeof(long);
    return AQ_OK;
}

aq_status aq_model_check_batch(const aq_model *m, const int *tokens, const int *lens, int n_seqs,
                               size_t *rows, size_t *longest, aq_error *err)
{
    if (n_seqs <= 0) return aq_fail(err, AQ_ERR_ARG, "forward: empty batch (%d sequences)", n_seqs);
    size_t n = 0, mx = 0;
    for (int s = 0; s < n_seqs; s++) {
        if (lens[s] <= 0 || lens[s] > m->cfg.max_seq_len)
            return aq_fail(err, AQ_ERR_ARG,
                           "forward: sequence %d has %d tokens (must be 1..max_seq_len %d)", s,
                           lens[s], m->cfg.max_seq_len);
        if (m->window && lens[s] > m->window)
            return aq_fail(err, AQ_ERR_ARG,
                           "forward: sequence %d has %d tokens, more than the sliding attention "
                           "window of %d (config sliding_window): windowed attention is not "
                           "implemented; use sequences of at most %d tokens",
                           s, lens[s], m->window, m->window);
        for (int t = 0; t < lens[s]; t++)
            if (tokens[n + t] < 0 || tokens[n + t] >= m->cfg.vocab_size)
                return aq_fail(err, AQ_ERR_ARG,
                               "forward: token id %d at sequence %d position %d is out of range "
                               "(vocab %d)",
                               tokens[n + t], s, t, m->cfg.vocab_size);
        n += (size_t)lens[s];
        if ((size_t)lens[s] > mx) mx = (size_t)lens[s];
    }
    *rows = n;
    *longest = mx;
    return AQ_OK;
}

/* Causal grouped-query attention of one sequence (rows [r0, r0+L)). */
static void attend_seq(aq_model *m, size_t r0, int L)
{
    aq_scratch *s = &m->s;
    aq_attend_seq(m, s->q + r0 * m->qd, s->k + r0 * m->kvd, s->v + r0 * m->kvd, s->att + r0 * m->qd,
                  s->scores, L);
}

typedef struct fwd_ctx {
    aq_model *m;
    const aq_forward_opts *o;
    aq_capture_event ev;
} fwd_ctx;

static aq_status capture(fwd_ctx *f, int block, aq_cap_point p, const float *rows, aq_error *err)
{
    if (!f->o || !f->o->capture) return AQ_OK;
    f->ev.block = block;
    f->ev.point = p;
    f->ev.rows = rows;
    f->ev.d = aq_cap_point_dim(f->m, p);
    return f->o->capture(f->o->capture_ctx, &f->ev, err);
}

static aq_status run_block(fwd_ctx *f, int l, size_t n, aq_error *err)
{
    aq_model *m = f->m;
    aq_scratch *s = &m->s;
    const aq_llama_config *c = &m->cfg;
    int qz = f->ev.quantized;
    aq_rmsnorm_rows(s->x, aq_model_norm(m, l, 0, qz), s->xb, n, c->dim, c->norm_eps);
    AQ_TRY(capture(f, l, AQ_CAP_ATTN_IN, s->xb, err));
    aq_model_apply_linear(m, l, AQ_LIN_Q, s->xb, s->q, n, qz, s->xq);
    aq_model_apply_linear(m, l, AQ_LIN_K, s->xb, s->k, n, qz, s->xq);
    aq_model_apply_linear(m, l, AQ_LIN_V, s->xb, s->v, n, qz, s->xq);
    aq_model_qk_norm(m, l, 0, s->q, n);
    aq_model_qk_norm(m, l, 1, s->k, n);
    aq_rope_rows(m, s->q, n, c->n_heads, s->pos);
    aq_rope_rows(m, s->k, n, c->n_kv_heads, s->pos);
    size_t r0 = 0;
    for (int q = 0; q < f->ev.n_seqs; q++) {
        attend_seq(m, r0, f->ev.lens[q]);
        r0 += (size_t)f->ev.lens[q];
    }
    AQ_TRY(capture(f, l, AQ_CAP_O_IN, s->att, err));
    aq_model_apply_linear(m, l, AQ_LIN_O, s->att, s->xb2, n, qz, s->xq);
    for (size_t i = 0; i < n * (size_t)c->dim; i++)
        s->x[i] += s->xb2[i];

    aq_rmsnorm_rows(s->x, aq_model_norm(m, l, 1, qz), s->xb, n, c->dim, c->norm_eps);
    AQ_TRY(capture(f, l, AQ_CAP_MLP_IN, s->xb, err));
    aq_model_apply_linear(m, l, AQ_LIN_GATE, s->xb, s->hb, n, qz, s->xq);
    aq_model_apply_linear(m, l, AQ_LIN_UP, s->xb, s->hb2, n, qz, s->xq);
    for (size_t i = 0; i < n * (size_t)c->hidden_dim; i++) {
        float g = s->hb[i];
        s->hb[i] = g / (1.0f + expf(-g)) * s->hb2[i];
    }
    AQ_TRY(capture(f, l, AQ_CAP_DOWN_IN, s->hb, err));
    aq_model_apply_linear(m, l, AQ_LIN_DOWN, s->hb, s->xb2, n, qz, s->xq);
    for (size_t i = 0; i < n * (size_t)c->dim; i++)
        s->x[i] += s->xb2[i];
    return AQ_OK;
}

void aq_forward_opts_default(aq_forward_opts *o)
{
    memset(o, 0, sizeof *o);
    o->stop_after_block = -1;
}

/* The forward from the embedding (r == NULL) or resumed at r->start_block. */
static aq_status forward(aq_model *m, const int *tokens, const int *lens, int n_seqs,
                         const aq_forward_opts *opts, const aq_forward_resume *r0, float *logits,
                         aq_error *err)
{
    size_t n = 0, longest = 0;
    int q0 = opts ? opts->quantized : 0;
    if (((!r0 || !r0->x_start) && !aq_model_embed_rows(m, q0)) || (logits && !m->head))
        return aq_fail(err, AQ_ERR_ARG, "forward: the model's embedding or classifier was dropped (aq_model_drop_vocab)");
    AQ_TRY(aq_model_check_batch(m, tokens, lens, n_seqs, &n, &longest, err));
    AQ_TRY(ensure_scratch(m, n, longest, (size_t)n_seqs, err));
    aq_scratch *s = &m->s;
    const aq_llama_config *c = &m->cfg;
    for (int q = 0; q < n_seqs; q++)
        s->ids[q] = q;
    fwd_ctx f = {m, opts, {0}};
    f.ev.n_rows = n;
    f.ev.n_seqs = n_seqs;
    f.ev.lens = lens;
    f.ev.seq_ids = opts && opts->seq_ids ? opts->seq_ids : s->ids;
    f.ev.quantized = opts ? opts->quantized : 0;
    size_t r = 0;
    for (int q = 0; q < n_seqs; q++)
        for (int t = 0; t < lens[q]; t++, r++) {
            s->pos[r] = t;
            if (!r0 || !r0->x_start)
                memcpy(s->x + r * c->dim, aq_model_embed_rows(m, f.ev.quantized) + (size_t)tokens[r] * c->dim,
                       (size_t)c->dim * sizeof(float));
        }
    size_t xn = n * (size_t)c->dim;
    if (r0 && r0->x_start) memcpy(s->x, r0->x_start, xn * sizeof(float));
    int stop = opts ? opts->stop_after_block : -1;
    for (int l = r0 ? r0->start_block : 0; l < c->n_layers; l++) {
        if (r0 && r0->save_x) memcpy(r0->save_x + (size_t)l * xn, s->x, xn * sizeof(float));
        /* a lazily loaded model holds one block at a time (no-ops when eager) */
        AQ_TRY(aq_model_block_acquire(m, l, err));
        aq_status st = run_block(&f, l, n, err);
        aq_model_block_release(m, l);
        AQ_TRY(st);
        if (stop == l) return AQ_OK;
    }
    const float *gf = aq_model_norm(m, c->n_layers, 0, f.ev.quantized);
    aq_rmsnorm_rows(s->x, gf, s->xb, n, c->dim, c->norm_eps);
    AQ_TRY(capture(&f, c->n_layers, AQ_CAP_HEAD, s->xb, err));
    if (logits)
        aq_model_apply_linear(m, c->n_layers, AQ_LIN_HEAD, s->xb, logits, n, f.ev.quantized, s->xq);
    return AQ_OK;
}

aq_status aq_model_forward(aq_model *m, const int *tokens, const int *lens, int n_seqs,
                           const aq_forward_opts *opts, float *logits, aq_error *err)
{
    return forward(m, tokens, lens, n_seqs, opts, NULL, logits, err);
}

aq_status aq_model_forward_resume(aq_model *m, const int *tokens, const int *lens, int n_seqs,
                                  const aq_forward_opts *opts, const aq_forward_resume *r,
                                  float *logits, aq_error *err)
{
    int L = m->cfg.n_layers;
    if (r && (r->start_block < 0 || r->start_block > L || (r->start_block > 0 && !r->x_start)))
        return aq_fail(err, AQ_ERR_ARG,
                       "forward: resume at block %d (model has %d blocks) needs the residual "
                       "stream at that block's input",
                       r->start_block, L);
    return forward(m, tokens, lens, n_seqs, opts, r, logits, err);
}
