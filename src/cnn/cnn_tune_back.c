/* cnn_tune_back.c — the backward pass of each op between the quantized
 * layers, for bias tuning (cnn_tune_internal.h): given dLoss/doutput of a
 * node, add dLoss/dinput to every input that needs one (Concat included). Conv, Gemm and
 * MatMul propagate through their (dequantized) weights as GEMMs; the fake
 * quantization of a layer input (an Identity) is straight-through. An op
 * without a backward here is refused by name. */
#include <math.h>
#include <string.h>

#include "cnn_tune_internal.h"

typedef struct bctx {
    const aq_tune_net *t;
    const aq_cnn_node *n;
    const aq_cnn_attrs *a;
    const aq_cnn_shape *ys;
    const float *dy;
} bctx;

static const aq_cnn_shape *shp(const bctx *c, int i)
{
    return &c->t->p.shape[c->n->in[i]];
}
static float *gin(const bctx *c, int i)
{
    return c->n->in[i] >= 0 ? c->t->grad[c->n->in[i]] : NULL;
}
static const float *vin(const bctx *c, int i)
{
    int v = c->n->in[i];
    return c->t->p.cdata[v] ? c->t->p.cdata[v] : c->t->val[v];
}

/* col2im of one group: the transpose of aq_cnn_im2col_t, added into dx. */
static void col2im_add(const float *cols, int cg, int H, int W, const aq_cnn_attrs *a, int OH,
                       int OW, float *dx)
{
    for (int c = 0; c < cg; c++)
        for (int ky = 0; ky < a->kernel[0]; ky++)
            for (int kx = 0; kx < a->kernel[1]; kx++, cols += (size_t)OH * OW)
                for (int oy = 0; oy < OH; oy++) {
                    int iy = oy * a->strides[0] + ky * a->dilations[0] - a->pads[0];
                    if (iy < 0 || iy >= H) continue;
                    for (int ox = 0; ox < OW; ox++) {
                        int ix = ox * a->strides[1] + kx * a->dilations[1] - a->pads[1];
                        if (ix >= 0 && ix < W)
                            dx[((size_t)c * H + iy) * W + ix] += cols[oy * OW + ox];
                    }
                }
}

/* dX = col2im(W_g^T dY_g), image by image and group by group. */
static void back_conv(const bctx *c, float *scratch)
{
    const aq_cnn_shape *X = shp(c, 0), *Ws = shp(c, 1);
    const float *w = vin(c, 1);
    float *dx = gin(c, 0);
    int H = (int)X->d[2], Wd = (int)X->d[3], M = (int)Ws->d[0], cg = (int)Ws->d[1], G = c->a->group;
    int Mg = M / G, OH = (int)c->ys->d[2], OW = (int)c->ys->d[3];
    long P = (long)OH * OW, K = (long)cg * c->a->kernel[0] * c->a->kernel[1];
    size_t in_img = (size_t)X->d[1] * H * Wd, out_img = (size_t)M * P;
    for (int64_t b = 0; b < X->d[0]; b++)
        for (int grp = 0; grp < G; grp++) {
            const float *dyg = c->dy + b * out_img + (size_t)grp * Mg * P;
            aq_sgemm(1, 0, K, P, Mg, 1.0f, w + (size_t)grp * Mg * K, K, 1, dyg, P, 1, 0.0f, scratch,
                     P, 1);
            col2im_add(scratch, cg, H, Wd, c->a, OH, OW,
                       dx + b * in_img + (size_t)grp * cg * H * Wd);
        }
}

/* Gemm (transA 0) and 2-D MatMul: dA [M, K] += dY [M, N] op(B)^T. */
static void back_dense(const bctx *c, int trans_b)
{
    const aq_cnn_shape *A = shp(c, 0);
    long M = (long)A->d[0], K = (long)A->d[1], N = (long)c->ys->d[1];
    const float *B = vin(c, 1);
    if (trans_b) /* B stored [N, K] */
        aq_sgemm(0, 0, M, K, N, 1.0f, c->dy, N, 1, B, K, 1, 1.0f, gin(c, 0), K, 1);
    else /* B stored [K, N] */
        aq_sgemm(0, 1, M, K, N, 1.0f, c->dy, N, 1, B, N, 1, 1.0f, gin(c, 0), K, 1);
}

/* The input element of each output element under right-aligned broadcasting. */
static size_t bcast_index(const aq_cnn_shape *o, const aq_cnn_shape *in, size_t e)
{
    size_t idx = 0, stride = 1;
    for (int d = o->ndim - 1, di = in->ndim - 1; d >= 0; d--, di--) {
        size_t od = (size_t)o->d[d], pos = e % od;
        e /= od;
        if (di < 0) continue;
        if (in->d[di] != 1) idx += pos * stride;
        stride *= (size_t)in->d[di];
    }
    return idx;
}

/* Add and Mul: each input's gradient is dY (times the other operand for Mul)
 * summed over the axes it was broadcast along. */
static void back_binary(const bctx *c)
{
    size_t ne = aq_cnn_numel(c->ys);
    for (int i = 0; i < 2; i++) {
        float *dx = gin(c, i);
        if (!dx) continue;
        const aq_cnn_shape *si = shp(c, i), *so = shp(c, 1 - i);
        const float *other = c->n->op == AQ_OP_MUL ? vin(c, 1 - i) : NULL;
        for (size_t e = 0; e < ne; e++) {
            float f = other ? other[bcast_index(c->ys, so, e)] : 1.0f;
            dx[bcast_index(c->ys, si, e)] += c->dy[e] * f;
        }
    }
}

/* Relu, Clip (pass where the input is inside [min, max]), BN per channel,
 * and the copies (Identity, the straight-through fake quant, Flatten,
 * Reshape): element by element. */
static void back_unary(const bctx *c)
{
    const aq_cnn_shape *X = shp(c, 0);
    const float *x = vin(c, 0);
    float *dx = gin(c, 0);
    size_t ne = aq_cnn_numel(X);
    aq_cnn_op op = c->n->op;
    size_t C = X->ndim > 1 ? (size_t)X->d[1] : 1, sp = X->ndim > 2 ? ne / ((size_t)X->d[0] * C) : 1;
    for (size_t e = 0; e < ne; e++) {
        float g = c->dy[e];
        if (op == AQ_OP_RELU) g = x[e] > 0 ? g : 0.0f;
        if (op == AQ_OP_CLIP) g = x[e] >= c->a->clip_min && x[e] <= c->a->clip_max ? g : 0.0f;
        if (op == AQ_OP_BATCHNORM) {
            size_t ch = (e / sp) % C;
            g *= (float)(vin(c, 1)[ch] / sqrt((double)vin(c, 4)[ch] + c->a->epsilon));
        }
        dx[e] += g;
    }
}

/* Taps of a window along one axis inside [lo, hi) (pool_one's count). */
static int taps_in(int start, int k, int d, int lo, int hi)
{
    int c = 0;
    for (int t = 0; t < k; t++)
        c += start + t * d >= lo && start + t * d < hi;
    return c;
}

/* One pool window at (y0, x0) of plane xc: MaxPool's gradient goes to the
 * first maximum (the forward's choice), AveragePool's g / count to each tap
 * inside the image, count as the forward divides by. */
static void pool_window(const bctx *c, const float *xc, float *dxc, int H, int W, int y0, int x0,
                        float g)
{
    const aq_cnn_attrs *a = c->a;
    int is_max = c->n->op == AQ_OP_MAXPOOL;
    int cy = taps_in(y0, a->kernel[0], a->dilations[0], 0, H),
        cx = taps_in(x0, a->kernel[1], a->dilations[1], 0, W);
    if (!cy || !cx) return;
    float share = 0;
    if (!is_max) {
        int cnt = a->count_include_pad
                      ? taps_in(y0, a->kernel[0], a->dilations[0], -a->pads[0], H + a->pads[2]) *
                            taps_in(x0, a->kernel[1], a->dilations[1], -a->pads[1], W + a->pads[3])
                      : cy * cx;
        share = (float)((double)g / cnt);
    }
    long best = -1;
    float m = -INFINITY;
    for (int ky = 0; ky < a->kernel[0]; ky++) {
        int iy = y0 + ky * a->dilations[0];
        if (iy < 0 || iy >= H) continue;
        for (int kx = 0; kx < a->kernel[1]; kx++) {
            int ix = x0 + kx * a->dilations[1];
            if (ix < 0 || ix >= W) continue;
            long e = (long)iy * W + ix;
            if (!is_max)
                dxc[e] += share;
            else if (best < 0 || xc[e] > m)
                m = xc[e], best = e;
        }
    }
    if (is_max) dxc[best] += g;
}

static void back_pool(const bctx *c)
{
    const aq_cnn_shape *X = shp(c, 0);
    const aq_cnn_attrs *a = c->a;
    int H = (int)X->d[2], W = (int)X->d[3], OH = (int)c->ys->d[2], OW = (int)c->ys->d[3];
    size_t planes = (size_t)X->d[0] * X->d[1], hw = (size_t)H * W;
    for (size_t pl = 0; pl < planes; pl++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++)
                pool_window(c, vin(c, 0) + pl * hw, gin(c, 0) + pl * hw, H, W,
                            oy * a->strides[0] - a->pads[0], ox * a->strides[1] - a->pads[1],
                            c->dy[(pl * OH + oy) * OW + ox]);
}

static void back_gap(const bctx *c)
{
    const aq_cnn_shape *X = shp(c, 0);
    size_t planes = (size_t)X->d[0] * X->d[1], sp = aq_cnn_numel(X) / planes;
    float *dx = gin(c, 0);
    for (size_t pl = 0; pl < planes; pl++) {
        float g = (float)((double)c->dy[pl] / (double)sp);
        for (size_t i = 0; i < sp; i++)
            dx[pl * sp + i] += g;
    }
}

static int64_t prod(const int64_t *d, int a, int b)
{
    int64_t p = 1;
    for (int i = a; i < b; i++)
        p *= d[i];
    return p;
}

/* Softmax from its output s: dx = s (dy - sum(dy s)) along the normalised
 * axis (the opset < 13 2-D coercion as the forward does it). */
static void back_softmax(const bctx *c)
{
    const aq_cnn_shape *X = shp(c, 0);
    const float *s = c->t->val[c->n->out];
    float *dx = gin(c, 0);
    int ax = c->a->axis;
    int64_t outer = prod(X->d, 0, ax), len, inner;
    if (c->t->m.g.opset < 13)
        len = prod(X->d, ax, X->ndim), inner = 1;
    else
        len = X->d[ax], inner = prod(X->d, ax + 1, X->ndim);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            size_t base = (size_t)(o * len * inner + in);
            double dot = 0;
            for (int64_t i = 0; i < len; i++)
                dot += (double)c->dy[base + i * inner] * s[base + i * inner];
            for (int64_t i = 0; i < len; i++)
                dx[base + i * inner] +=
                    (float)(s[base + i * inner] * (c->dy[base + i * inner] - dot));
        }
}

/* Concat: each input's gradient is its own slab of dY along the axis (the
 * forward's copy, aq_cnn_run_concat, read backwards). */
static void back_concat(const bctx *c)
{
    int ax = c->a->axis;
    size_t outer = 1, inner = 1, off = 0;
    for (int d = 0; d < ax; d++) outer *= (size_t)c->ys->d[d];
    for (int d = ax + 1; d < c->ys->ndim; d++) inner *= (size_t)c->ys->d[d];
    size_t row = (size_t)c->ys->d[ax] * inner;
    for (int i = 0; i < c->n->n_in; i++) {
        size_t blk = (size_t)shp(c, i)->d[ax] * inner;
        float *dx = gin(c, i);
        for (size_t o = 0; dx && o < outer; o++)
            for (size_t j = 0; j < blk; j++) dx[o * blk + j] += c->dy[o * row + off + j];
        off += blk;
    }
}

/* What a weight-through backward needs: a constant weight, and for Gemm the
 * plain form (the quantizer's layer list refuses the others as well). */
static aq_status dense_ok(const bctx *c, aq_error *err)
{
    if (gin(c, 1) || (c->n->n_in > 2 && gin(c, 2)))
        return aq_cnn_node_fail(err, c->n, AQ_ERR_ARG,
                                "bias tuning: no backward through a non-constant weight or bias");
    if (c->n->op == AQ_OP_GEMM && (c->a->trans_a || c->a->alpha != 1.0f))
        return aq_cnn_node_fail(err, c->n, AQ_ERR_ARG,
                                "bias tuning: no backward for Gemm with transA or alpha != 1");
    if (c->n->op != AQ_OP_CONV && (shp(c, 0)->ndim != 2 || shp(c, 1)->ndim != 2))
        return aq_cnn_node_fail(err, c->n, AQ_ERR_ARG,
                                "bias tuning: no backward for a MatMul that is not 2-D");
    return AQ_OK;
}

aq_status aq_tune_back_node(aq_tune_net *t, int k, aq_error *err)
{
    const aq_cnn_node *n = &t->m.g.nodes[k];
    bctx c = {t, n, &t->p.attrs[k], &t->p.shape[n->out], t->grad[n->out]};
    int any = 0;
    for (int i = 0; i < n->n_in; i++)
        any |= gin(&c, i) != NULL;
    if (!any) return AQ_OK;
    switch (n->op) {
    case AQ_OP_CONV:
    case AQ_OP_GEMM:
    case AQ_OP_MATMUL:
        AQ_TRY(dense_ok(&c, err));
        if (n->op == AQ_OP_CONV)
            back_conv(&c, t->scratch);
        else
            back_dense(&c, n->op == AQ_OP_GEMM && c.a->trans_b);
        return AQ_OK;
    case AQ_OP_ADD:
    case AQ_OP_MUL: back_binary(&c); return AQ_OK;
    case AQ_OP_RELU:
    case AQ_OP_CLIP:
    case AQ_OP_BATCHNORM:
    case AQ_OP_IDENTITY:
    case AQ_OP_FLATTEN:
    case AQ_OP_RESHAPE: back_unary(&c); return AQ_OK;
    case AQ_OP_MAXPOOL:
    case AQ_OP_AVGPOOL: back_pool(&c); return AQ_OK;
    case AQ_OP_GLOBALAVGPOOL: back_gap(&c); return AQ_OK;
    case AQ_OP_SOFTMAX: back_softmax(&c); return AQ_OK;
    case AQ_OP_CONCAT: back_concat(&c); return AQ_OK;
    default:
        return aq_cnn_node_fail(err, n, AQ_ERR_ARG,
                                "bias tuning has no backward for %s (it lies between "
                                "a tuned layer and the output)",
                                aq_cnn_op_name(n->op));
    }
}
