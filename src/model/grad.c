/* grad.c — the backward pass of the transformer engine (grad.h): the KL of the
 * quantized network to the FP one and its exact gradient with respect to the
 * quantized forward's override weights, biases and RMSNorm gains. Every
 * architecture variant of the forward is differentiated: biases (constants
 * without an override), Qwen3's q/k norm (through, its gains not tuned), any
 * head size and RoPE frequencies (the same tables); sequences longer than a
 * sliding window are refused by the batch check as in the forward.
 *
 * The quantized forward is replayed here with the engine's own primitives (so
 * its logits are those of aq_model_forward with quantized = 1) while keeping
 * every block's activations; attention probabilities are recomputed per head
 * in the backward instead of being stored (L^2 per head and block would
 * dominate the memory). All products go through aq_sgemm. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../adaquant/layer_state.h"
#include "../quant/quant.h"
#include "grad.h"
#include "ops.h"

/* One block's cached activations (row-major, n rows each). */
typedef struct blk_cache {
    float *x_in, *xn1, *q, *k, *v, *att, *x_mid, *xn2, *g, *u, *h;
    float *qp, *kp; /* Qwen3: q and k before their per-head norm (else NULL) */
} blk_cache;

/* The backward's row buffers. */
typedef struct bwd_bufs {
    float *dres, *dxn, *tmp, *xq, *dg, *du, *dh, *datt, *dq, *dk, *dv;
    float *dqp, *dkp; /* Qwen3: gradients before the q/k norm */
} bwd_bufs;

static size_t block_row_floats(const aq_model *m)
{
    const aq_llama_config *c = &m->cfg;
    size_t qk = c->qk_norm ? (size_t)m->qd + (size_t)m->kvd : 0;
    return 4 * (size_t)c->dim + 2 * (size_t)m->qd + 2 * (size_t)m->kvd + 3 * (size_t)c->hidden_dim +
           qk;
}

static size_t wide_of(const aq_model *m)
{
    size_t w = (size_t)m->cfg.dim;
    if ((size_t)m->qd > w) w = (size_t)m->qd;
    if ((size_t)m->cfg.hidden_dim > w) w = (size_t)m->cfg.hidden_dim;
    return w;
}

static size_t bwd_row_floats(const aq_model *m)
{
    const aq_llama_config *c = &m->cfg;
    size_t qk = c->qk_norm ? (size_t)m->qd + (size_t)m->kvd : 0;
    return 2 * (size_t)c->dim + 2 * wide_of(m) + 3 * (size_t)c->hidden_dim + 2 * (size_t)m->qd +
           2 * (size_t)m->kvd + qk;
}

static int grow(float **p, size_t n)
{
    float *q = realloc(*p, n * sizeof(float));
    if (!q) return 0;
    *p = q;
    return 1;
}

static aq_status ensure_grad(aq_model *m, size_t rows, size_t seq, aq_error *err)
{
    aq_grad_scratch *s = &m->gs;
    const aq_llama_config *c = &m->cfg;
    size_t acts = (size_t)c->n_layers * block_row_floats(m) + 2 * (size_t)c->dim;
    size_t V = (size_t)c->vocab_size, bw = bwd_row_floats(m);
    if (rows > s->cap_rows) {
        int *pos = realloc(s->pos, rows * sizeof(int));
        if (pos) s->pos = pos;
        if (!pos || !grow(&s->acts, rows * acts) || !grow(&s->zf, rows * V) ||
            !grow(&s->zq, rows * V) || !grow(&s->bwd, rows * bw))
            return aq_fail_nomem(err, "kl_grad activation caches",
                                 rows * ((acts + 2 * V + bw) * sizeof(float) + sizeof(int)));
        s->cap_rows = rows;
    }
    if (!s->kl_row && !(s->kl_row = malloc(2 * V * sizeof(double))))
        return aq_fail_nomem(err, "kl_grad KL rows", 2 * V * sizeof(double));
    if (seq > s->cap_seq) {
        if (!grow(&s->p, seq * seq) || !grow(&s->dp, seq * seq))
            return aq_fail_nomem(err, "kl_grad attention matrices", 2 * seq * seq * sizeof(float));
        s->cap_seq = seq;
    }
    s->bytes = (s->cap_rows * (acts + 2 * V + bw) + 2 * s->cap_seq * s->cap_seq) * sizeof(float) +
               s->cap_rows * sizeof(int) + 2 * V * sizeof(double);
    return AQ_OK;
}

/* One block's activation layout over n rows starting at p. */
static blk_cache block_cache_at(const aq_model *m, float *p, size_t n)
{
    const aq_llama_config *c = &m->cfg;
    blk_cache b;
    b.x_in = p, p += n * c->dim;
    b.xn1 = p, p += n * c->dim;
    b.q = p, p += n * m->qd;
    b.k = p, p += n * m->kvd;
    b.v = p, p += n * m->kvd;
    b.att = p, p += n * m->qd;
    b.x_mid = p, p += n * c->dim;
    b.xn2 = p, p += n * c->dim;
    b.g = p, p += n * c->hidden_dim;
    b.u = p, p += n * c->hidden_dim;
    b.h = p, p += n * c->hidden_dim;
    b.qp = c->qk_norm ? p : NULL, p += c->qk_norm ? n * m->qd : 0;
    b.kp = c->qk_norm ? p : NULL;
    return b;
}

static blk_cache block_cache(aq_model *m, int l, size_t n)
{
    return block_cache_at(m, m->gs.acts + (size_t)l * n * block_row_floats(m), n);
}

static bwd_bufs bwd_layout_at(const aq_model *m, float *p, size_t n)
{
    const aq_llama_config *c = &m->cfg;
    size_t w = wide_of(m);
    bwd_bufs b;
    b.dres = p, p += n * c->dim;
    b.dxn = p, p += n * c->dim;
    b.tmp = p, p += n * w;
    b.xq = p, p += n * w;
    b.dg = p, p += n * c->hidden_dim;
    b.du = p, p += n * c->hidden_dim;
    b.dh = p, p += n * c->hidden_dim;
    b.datt = p, p += n * m->qd;
    b.dq = p, p += n * m->qd;
    b.dk = p, p += n * m->kvd;
    b.dv = p, p += n * m->kvd;
    b.dqp = c->qk_norm ? p : NULL, p += c->qk_norm ? n * m->qd : 0;
    b.dkp = c->qk_norm ? p : NULL;
    return b;
}

static bwd_bufs bwd_layout(aq_model *m, size_t n)
{
    return bwd_layout_at(m, m->gs.bwd, n);
}

/* One block of the quantized forward, as forward.c's run_block, keeping its
 * activations in bc; x_out receives the block's output residual. */
static void fwd_block(aq_model *m, int l, const blk_cache *bc, float *x_out, size_t n,
                      const int *lens, int n_seqs, float *tmp, float *xq)
{
    const aq_llama_config *c = &m->cfg;
    size_t nd = n * (size_t)c->dim, nh = n * (size_t)c->hidden_dim;
    aq_rmsnorm_rows(bc->x_in, aq_model_norm(m, l, 0, 1), bc->xn1, n, c->dim, c->norm_eps);
    aq_model_apply_linear(m, l, AQ_LIN_Q, bc->xn1, bc->qp ? bc->qp : bc->q, n, 1, xq);
    aq_model_apply_linear(m, l, AQ_LIN_K, bc->xn1, bc->kp ? bc->kp : bc->k, n, 1, xq);
    aq_model_apply_linear(m, l, AQ_LIN_V, bc->xn1, bc->v, n, 1, xq);
    if (bc->qp) { /* the q/k norm, keeping its input for the backward */
        memcpy(bc->q, bc->qp, n * (size_t)m->qd * sizeof(float));
        memcpy(bc->k, bc->kp, n * (size_t)m->kvd * sizeof(float));
        aq_model_qk_norm(m, l, 0, bc->q, n);
        aq_model_qk_norm(m, l, 1, bc->k, n);
    }
    aq_rope_rows(m, bc->q, n, c->n_heads, m->gs.pos);
    aq_rope_rows(m, bc->k, n, c->n_kv_heads, m->gs.pos);
    size_t r0 = 0;
    for (int s = 0; s < n_seqs; r0 += (size_t)lens[s++])
        aq_attend_seq(m, bc->q + r0 * m->qd, bc->k + r0 * m->kvd, bc->v + r0 * m->kvd,
                      bc->att + r0 * m->qd, m->gs.p, lens[s]);
    aq_model_apply_linear(m, l, AQ_LIN_O, bc->att, tmp, n, 1, xq);
    for (size_t i = 0; i < nd; i++)
        bc->x_mid[i] = bc->x_in[i] + tmp[i];
    aq_rmsnorm_rows(bc->x_mid, aq_model_norm(m, l, 1, 1), bc->xn2, n, c->dim, c->norm_eps);
    aq_model_apply_linear(m, l, AQ_LIN_GATE, bc->xn2, bc->g, n, 1, xq);
    aq_model_apply_linear(m, l, AQ_LIN_UP, bc->xn2, bc->u, n, 1, xq);
    for (size_t i = 0; i < nh; i++) {
        float g = bc->g[i];
        bc->h[i] = g / (1.0f + expf(-g)) * bc->u[i];
    }
    aq_model_apply_linear(m, l, AQ_LIN_DOWN, bc->h, tmp, n, 1, xq);
    for (size_t i = 0; i < nd; i++)
        x_out[i] = bc->x_mid[i] + tmp[i];
}

/* KL_sum of the rows and dKL/dz (= q - p) written over zq; e [2 V] scratch. */
static double kl_and_dz(const float *zf, float *zq, size_t n, int V, double *e)
{
    double kl = 0.0, *ea = e, *eb = e + V;
    for (size_t r = 0; r < n; r++) {
        const float *a = zf + r * (size_t)V;
        float *b = zq + r * (size_t)V;
        double ma = a[0], mb = b[0], sa = 0.0, sb = 0.0;
        for (int v = 1; v < V; v++) {
            ma = a[v] > ma ? a[v] : ma;
            mb = b[v] > mb ? b[v] : mb;
        }
        for (int v = 0; v < V; v++) {
            sa += (ea[v] = exp(a[v] - ma));
            sb += (eb[v] = exp(b[v] - mb));
        }
        double la = ma + log(sa), lb = mb + log(sb), row = 0.0;
        for (int v = 0; v < V; v++) {
            double p = ea[v] / sa;
            row += p * ((a[v] - la) - (b[v] - lb));
            b[v] = (float)(eb[v] / sb - p);
        }
        kl += row;
    }
    return kl;
}

/* Backward of linear (block, which) as the quantized forward applied it:
 * dW += dY^T X^ and db += colsum(dY) when wanted; dx (= or += when acc) dY W,
 * masked by the straight-through estimator of the input fake-quantiser. */
static void lin_bwd(aq_model *m, int block, aq_linear which, const float *x, const float *dy,
                    float *dx, int acc, float *tmp, float *xq, const aq_grad_buf *g, size_t n)
{
    int d_out, d_in, idx = aq_model_lin_index(m, block, which);
    aq_model_lin_shape(m, which, &d_out, &d_in);
    const aq_ovr *ov = &m->ovr[idx];
    const float *W = ov->weight ? ov->weight : aq_model_lin_weight(m, block, which);
    int fq = ov->weight && ov->a_bits > 0, head = which == AQ_LIN_HEAD;
    size_t nx = n * (size_t)d_in;
    float *dW = g && !head && g->d_weight ? g->d_weight[idx] : NULL;
    float *db = g && !head && g->d_bias ? g->d_bias[idx] : NULL;
    if (dW) {
        const float *in = x;
        if (fq) {
            aq_fake_quant(x, nx, ov->a_scale, ov->a_zero, ov->a_bits, xq);
            in = xq;
        }
        aq_sgemm(1, 0, d_out, d_in, (long)n, 1.0f, dy, d_out, 1, in, d_in, 1, 1.0f, dW, d_in, 1);
    }
    for (size_t r = 0; db && r < n; r++)
        for (int j = 0; j < d_out; j++)
            db[j] += dy[r * (size_t)d_out + j];
    if (!dx) return;
    if (!fq) {
        aq_sgemm(0, 0, (long)n, d_in, d_out, 1.0f, dy, d_out, 1, W, d_in, 1, acc ? 1.0f : 0.0f, dx,
                 d_in, 1);
        return;
    }
    aq_sgemm(0, 0, (long)n, d_in, d_out, 1.0f, dy, d_out, 1, W, d_in, 1, 0.0f, tmp, d_in, 1);
    /* the fake-quantiser's code before the clamp (quant.c: rne(x / s) + z) */
    float qmax = (float)((1 << ov->a_bits) - 1);
    for (size_t i = 0; i < nx; i++) {
        float q = aq_nearbyintf(x[i] / ov->a_scale) + ov->a_zero;
        float d = (q >= 0.0f && q <= qmax) ? tmp[i] : 0.0f;
        dx[i] = acc ? dx[i] + d : d;
    }
}

/* RMSNorm backward: dx += dL/dx of y = g * x * inv(x) given dy; dg += dL/dg. */
static void rms_bwd(const float *x, const float *gn, const float *dy, float *dx, float *dg,
                    size_t n, int d, float eps)
{
    for (size_t r = 0; r < n; r++) {
        const float *xr = x + r * (size_t)d, *dyr = dy + r * (size_t)d;
        float *dxr = dx + r * (size_t)d;
        double ss = 0.0, dot = 0.0;
        for (int i = 0; i < d; i++) {
            ss += (double)xr[i] * xr[i];
            dot += (double)dyr[i] * gn[i] * xr[i];
        }
        double inv = 1.0 / sqrt(ss / d + (double)eps), c = inv * inv * inv * dot / d;
        for (int i = 0; i < d; i++)
            dxr[i] += (float)(inv * dyr[i] * gn[i] - c * xr[i]);
        if (!dg) continue;
        float invf = (float)inv;
        for (int i = 0; i < d; i++)
            dg[i] += dyr[i] * (xr[i] * invf);
    }
}

/* Softmax backward of rows i0.. of a causal tile (n rows of width w, row
 * ii holds keys 0..i0+ii): dP <- P * (dP - rowsum(P * dP)), 0 past the prefix. */
static void softmax_bwd_tile(const float *P, float *dP, int i0, int n, int w)
{
    for (int ii = 0; ii < n; ii++) {
        const float *pr = P + (size_t)ii * w;
        float *dr = dP + (size_t)ii * w;
        int last = i0 + ii;
        double s = 0.0;
        for (int j = 0; j <= last; j++)
            s += (double)pr[j] * dr[j];
        for (int j = 0; j <= last; j++)
            dr[j] = pr[j] * (dr[j] - (float)s);
        for (int j = last + 1; j < w; j++)
            dr[j] = 0.0f;
    }
}

/* Attention backward of one sequence (L rows; pointers at its first row):
 * dq = (not +=), dk and dv += (summed over the heads of each group). The
 * probabilities are recomputed in causal row tiles of ATT_TILE queries, each
 * against only the keys it can see (about half the work of full L x L). */
#define ATT_TILE 128
static void attn_bwd(aq_model *m, const float *q, const float *k, const float *v, const float *dO,
                     float *dq, float *dk, float *dv, int L)
{
    int hs = m->hs, qd = m->qd, kvd = m->kvd, group = m->cfg.n_heads / m->cfg.n_kv_heads;
    float alpha = 1.0f / sqrtf((float)hs), *P = m->gs.p, *dP = m->gs.dp;
    for (int h = 0; h < m->cfg.n_heads; h++) {
        size_t qo = (size_t)h * hs, ko = (size_t)(h / group) * hs;
        for (int i0 = 0; i0 < L; i0 += ATT_TILE) {
            int nt = L - i0 < ATT_TILE ? L - i0 : ATT_TILE, w = i0 + nt;
            const float *qt = q + (size_t)i0 * qd + qo, *dot = dO + (size_t)i0 * qd + qo;
            aq_sgemm(0, 1, nt, w, hs, alpha, qt, qd, 1, k + ko, kvd, 1, 0.0f, P, w, 1);
            for (int ii = 0; ii < nt; ii++)
                aq_softmax_prefix(P + (size_t)ii * w, i0 + ii + 1, w);
            aq_sgemm(1, 0, w, hs, nt, 1.0f, P, w, 1, dot, qd, 1, 1.0f, dv + ko, kvd, 1);
            aq_sgemm(0, 1, nt, w, hs, 1.0f, dot, qd, 1, v + ko, kvd, 1, 0.0f, dP, w, 1);
            softmax_bwd_tile(P, dP, i0, nt, w);
            aq_sgemm(0, 0, nt, hs, w, alpha, dP, w, 1, k + ko, kvd, 1, 0.0f,
                     dq + (size_t)i0 * qd + qo, qd, 1);
            aq_sgemm(1, 0, w, hs, nt, alpha, dP, w, 1, qt, qd, 1, 1.0f, dk + ko, kvd, 1);
        }
    }
}

/* Backward of block l: b->dres holds dKL/d(block output), receives
 * dKL/d(block input). */
static void bwd_block(aq_model *m, int l, const blk_cache *bc, const bwd_bufs *b, size_t n,
                      const int *lens, int n_seqs, const aq_grad_buf *g)
{
    const aq_llama_config *c = &m->cfg;
    size_t nh = n * (size_t)c->hidden_dim, D = (size_t)c->dim;
    lin_bwd(m, l, AQ_LIN_DOWN, bc->h, b->dres, b->dh, 0, b->tmp, b->xq, g, n);
    for (size_t i = 0; i < nh; i++) { /* h = silu(gate) * up */
        float x = bc->g[i], s = 1.0f / (1.0f + expf(-x));
        b->dg[i] = b->dh[i] * bc->u[i] * (s * (1.0f + x * (1.0f - s)));
        b->du[i] = b->dh[i] * (x * s);
    }
    lin_bwd(m, l, AQ_LIN_GATE, bc->xn2, b->dg, b->dxn, 0, b->tmp, b->xq, g, n);
    lin_bwd(m, l, AQ_LIN_UP, bc->xn2, b->du, b->dxn, 1, b->tmp, b->xq, g, n);
    rms_bwd(bc->x_mid, aq_model_norm(m, l, 1, 1), b->dxn, b->dres,
            g && g->d_ffn_norm ? g->d_ffn_norm + (size_t)l * D : NULL, n, c->dim, c->norm_eps);

    lin_bwd(m, l, AQ_LIN_O, bc->att, b->dres, b->datt, 0, b->tmp, b->xq, g, n);
    memset(b->dk, 0, n * (size_t)m->kvd * sizeof(float));
    memset(b->dv, 0, n * (size_t)m->kvd * sizeof(float));
    size_t r0 = 0;
    for (int s = 0; s < n_seqs; r0 += (size_t)lens[s++]) {
        size_t oq = r0 * m->qd, ok = r0 * m->kvd;
        attn_bwd(m, bc->q + oq, bc->k + ok, bc->v + ok, b->datt + oq, b->dq + oq, b->dk + ok,
                 b->dv + ok, lens[s]);
    }
    aq_rope_rows_inv(m, b->dq, n, c->n_heads, m->gs.pos);
    aq_rope_rows_inv(m, b->dk, n, c->n_kv_heads, m->gs.pos);
    float *dq = b->dq, *dk = b->dk;
    if (bc->qp) { /* through the per-head q/k norm (its gains are not tuned) */
        memset(b->dqp, 0, n * (size_t)m->qd * sizeof(float));
        memset(b->dkp, 0, n * (size_t)m->kvd * sizeof(float));
        rms_bwd(bc->qp, aq_model_qk_norm_gain(m, l, 0), b->dq, b->dqp, NULL,
                n * (size_t)c->n_heads, m->hs, c->norm_eps);
        rms_bwd(bc->kp, aq_model_qk_norm_gain(m, l, 1), b->dk, b->dkp, NULL,
                n * (size_t)c->n_kv_heads, m->hs, c->norm_eps);
        dq = b->dqp, dk = b->dkp;
    }
    lin_bwd(m, l, AQ_LIN_Q, bc->xn1, dq, b->dxn, 0, b->tmp, b->xq, g, n);
    lin_bwd(m, l, AQ_LIN_K, bc->xn1, dk, b->dxn, 1, b->tmp, b->xq, g, n);
    lin_bwd(m, l, AQ_LIN_V, bc->xn1, b->dv, b->dxn, 1, b->tmp, b->xq, g, n);
    rms_bwd(bc->x_in, aq_model_norm(m, l, 0, 1), b->dxn, b->dres,
            g && g->d_attn_norm ? g->d_attn_norm + (size_t)l * D : NULL, n, c->dim, c->norm_eps);
}

/* The quantized forward, keeping the activations: blocks, final norm
 * (x_f -> xnf), classifier (-> m->gs.zq). */
static aq_status quant_forward(aq_model *m, const int *tokens, const int *lens, int n_seqs, size_t n,
                               const bwd_bufs *b, float *x_f, float *xnf, aq_error *err)
{
    const aq_llama_config *c = &m->cfg;
    int L = c->n_layers;
    size_t D = (size_t)c->dim;
    float *x0 = block_cache(m, 0, n).x_in;
    for (size_t r = 0; r < n; r++)
        memcpy(x0 + r * D, aq_model_embed_rows(m, 1) + (size_t)tokens[r] * D, D * sizeof(float));
    for (int l = 0; l < L; l++) {
        blk_cache bc = block_cache(m, l, n);
        float *x_out = l + 1 < L ? block_cache(m, l + 1, n).x_in : x_f;
        AQ_TRY(aq_model_block_acquire(m, l, err)); /* a lazy model holds one block at a time */
        fwd_block(m, l, &bc, x_out, n, lens, n_seqs, b->tmp, b->xq);
        aq_model_block_release(m, l);
    }
    aq_rmsnorm_rows(x_f, aq_model_norm(m, L, 0, 1), xnf, n, c->dim, c->norm_eps);
    aq_model_apply_linear(m, L, AQ_LIN_HEAD, xnf, m->gs.zq, n, 1, b->xq);
    return AQ_OK;
}

static aq_status check_logits(const float *z, size_t n, int V, aq_error *err)
{
    for (size_t i = 0; i < n * (size_t)V; i++)
        if (!isfinite(z[i]))
            return aq_fail(err, AQ_ERR_NUMERIC, "kl_grad: FP logit of row %zu, entry %zu is %g",
                           i / (size_t)V, i % (size_t)V, (double)z[i]);
    return AQ_OK;
}

/* aq_model_kl_grad_fp, and when d_resid is given, the residual gradients
 * (aq_model_kl_grad_resid). */
static aq_status kl_grad(aq_model *m, const int *tokens, const int *lens, int n_seqs, const float *fp_logits,
                         double *kl_sum, aq_grad_buf *g, float *d_resid, aq_error *err)
{
    size_t n = 0, longest = 0;
    AQ_TRY(aq_model_check_batch(m, tokens, lens, n_seqs, &n, &longest, err));
    AQ_TRY(ensure_grad(m, n, longest, err));
    const aq_llama_config *c = &m->cfg;
    int L = c->n_layers, V = c->vocab_size;
    aq_grad_scratch *gs = &m->gs;
    const float *zf = fp_logits;
    if (zf) {
        AQ_TRY(check_logits(zf, n, V, err));
    } else {
        AQ_TRY(aq_model_forward(m, tokens, lens, n_seqs, NULL, gs->zf, err));
        zf = gs->zf;
    }
    for (int s = 0, r = 0; s < n_seqs; s++)
        for (int t = 0; t < lens[s]; t++)
            gs->pos[r++] = t;
    bwd_bufs b = bwd_layout(m, n);
    size_t D = (size_t)c->dim;
    float *x_f = gs->acts + (size_t)L * n * block_row_floats(m), *xnf = x_f + n * D;
    AQ_TRY(quant_forward(m, tokens, lens, n_seqs, n, &b, x_f, xnf, err));
    double kl = kl_and_dz(zf, gs->zq, n, V, gs->kl_row);
    if (kl_sum) *kl_sum = kl;
    aq_grad_buf none;
    memset(&none, 0, sizeof none);
    if (!g && !d_resid) return AQ_OK;
    if (!g) g = &none;
    lin_bwd(m, L, AQ_LIN_HEAD, xnf, gs->zq, b.dxn, 0, b.tmp, b.xq, g, n);
    memset(b.dres, 0, n * D * sizeof(float));
    rms_bwd(x_f, aq_model_norm(m, L, 0, 1), b.dxn, b.dres, g->d_final_norm, n, c->dim, c->norm_eps);
    for (int l = L - 1; l >= 0; l--) {
        blk_cache bc = block_cache(m, l, n);
        if (d_resid) memcpy(d_resid + (size_t)l * n * D, b.dres, n * D * sizeof(float));
        AQ_TRY(aq_model_block_acquire(m, l, err));
        bwd_block(m, l, &bc, &b, n, lens, n_seqs, g);
        aq_model_block_release(m, l);
    }
    return AQ_OK;
}

aq_status aq_model_kl_grad_fp(aq_model *m, const int *tokens, const int *lens, int n_seqs,
                              const float *fp_logits, double *kl_sum, aq_grad_buf *g, aq_error *err)
{
    return kl_grad(m, tokens, lens, n_seqs, fp_logits, kl_sum, g, NULL, err);
}

aq_status aq_model_kl_grad_resid(aq_model *m, const int *tokens, const int *lens, int n_seqs,
                                 const float *fp_logits, double *kl_sum, float *d_resid, aq_error *err)
{
    return kl_grad(m, tokens, lens, n_seqs, fp_logits, kl_sum, NULL, d_resid, err);
}

aq_status aq_model_kl_grad(aq_model *m, const int *tokens, const int *lens, int n_seqs,
                           double *kl_sum, aq_grad_buf *g, aq_error *err)
{
    return aq_model_kl_grad_fp(m, tokens, lens, n_seqs, NULL, kl_sum, g, err);
}

size_t aq_model_block_grad_floats(const aq_model *m, size_t rows, size_t seq)
{
    /* activations, backward rows, the block output, positions (as ints), P and dP */
    return rows * (block_row_floats(m) + bwd_row_floats(m) + (size_t)m->cfg.dim + 1) + 2 * seq * seq;
}

/* The block's forward and backward from the caller's workspace: m->gs's
 * positions and attention matrices are borrowed for the call (fwd_block and
 * attn_bwd read them there) and given back, so the network-level caches are
 * neither used nor grown: memory is one block's. */
aq_status aq_model_block_grad(aq_model *m, int block, const float *x_in, const float *y, const int *lens,
                              int n_seqs, float *ws, double *err_sum, aq_grad_buf *g, aq_error *err)
{
    const aq_llama_config *c = &m->cfg;
    if (block < 0 || block >= c->n_layers)
        return aq_fail(err, AQ_ERR_ARG, "block_grad: block %d (model has %d)", block, c->n_layers);
    size_t n = 0, longest = 0, D = (size_t)c->dim;
    for (int s = 0; s < n_seqs; s++) {
        if (lens[s] <= 0 || lens[s] > c->max_seq_len)
            return aq_fail(err, AQ_ERR_ARG, "block_grad: sequence %d has %d tokens (1..%d)", s, lens[s],
                           c->max_seq_len);
        n += (size_t)lens[s];
        longest = (size_t)lens[s] > longest ? (size_t)lens[s] : longest;
    }
    if (n_seqs <= 0) return aq_fail(err, AQ_ERR_ARG, "block_grad: empty batch");
    float *p = ws;
    blk_cache bc = block_cache_at(m, p, n);
    p += n * block_row_floats(m);
    bwd_bufs b = bwd_layout_at(m, p, n);
    p += n * bwd_row_floats(m);
    float *yq = p;
    p += n * D;
    int *pos = (int *)(void *)p;
    p += n;
    int *save_pos = m->gs.pos;
    float *save_p = m->gs.p, *save_dp = m->gs.dp;
    m->gs.pos = pos, m->gs.p = p, m->gs.dp = p + longest * longest;
    for (int s = 0, r = 0; s < n_seqs; s++)
        for (int t = 0; t < lens[s]; t++) pos[r++] = t;
    memcpy(bc.x_in, x_in, n * D * sizeof(float));
    aq_status st = aq_model_block_acquire(m, block, err); /* lazy model: the block's weights */
    if (st != AQ_OK) {
        m->gs.pos = save_pos, m->gs.p = save_p, m->gs.dp = save_dp;
        return st;
    }
    fwd_block(m, block, &bc, yq, n, lens, n_seqs, b.tmp, b.xq);
    double e = 0.0;
    for (size_t i = 0; i < n * D; i++) {
        float d = yq[i] - y[i];
        e += (double)d * d;
        b.dres[i] = 2.0f * d; /* dE/dy_q */
    }
    *err_sum = e;
    if (g) bwd_block(m, block, &bc, &b, n, lens, n_seqs, g);
    aq_model_block_release(m, block);
    m->gs.pos = save_pos, m->gs.p = save_p, m->gs.dp = save_dp;
    return AQ_OK;
}
