/* op_conv.c — the spatial operators of the CNN engine: Conv as BLIS GEMMs over
 * im2col columns, MaxPool/AveragePool (ceil_mode, count_include_pad,
 * dilations) and GlobalAveragePool, all 2-D NCHW. */
#include <math.h>
#include <string.h>

#include "cnn_internal.h"

/* Resolve one spatial axis: auto_pad into pads[axis] (begin) and
 * pads[axis + 2] (end) by ONNX's formula, then the output size. ceil_mode
 * follows PyTorch (and ONNX >= 1.16's reference): a last window that would
 * start in the end padding is dropped. */
static aq_status spatial_axis(const aq_cnn_node *n, aq_cnn_attrs *a, int axis, int64_t in,
                              int64_t *out, aq_error *err)
{
    int k = a->kernel[axis], s = a->strides[axis], d = a->dilations[axis];
    if (k < 1 || s < 1 || d < 1)
        return aq_cnn_node_fail(err, n, AQ_ERR_FORMAT,
                                "kernel %d, stride %d, dilation %d on axis %d must be >= 1", k, s,
                                d, axis);
    int64_t ek = (int64_t)d * (k - 1) + 1;
    int *pb = &a->pads[axis], *pe = &a->pads[axis + 2];
    if (a->auto_pad == AQ_PAD_SAME_UPPER || a->auto_pad == AQ_PAD_SAME_LOWER) {
        int64_t o = (in + s - 1) / s, total = (o - 1) * s + ek - in;
        if (total < 0) total = 0;
        *pb = (int)(a->auto_pad == AQ_PAD_SAME_UPPER ? total / 2 : total - total / 2);
        *pe = (int)(total - *pb);
        *out = o;
        return AQ_OK;
    }
    if (a->auto_pad == AQ_PAD_VALID) *pb = *pe = 0;
    if (*pb < 0 || *pe < 0)
        return aq_cnn_node_fail(err, n, AQ_ERR_FORMAT, "negative padding %d/%d on axis %d", *pb,
                                *pe, axis);
    int64_t span = in + *pb + *pe - ek;
    if (span < 0)
        return aq_cnn_node_fail(err, n, AQ_ERR_SHAPE,
                                "kernel extent %lld does not fit the padded input %lld on axis %d",
                                (long long)ek, (long long)(in + *pb + *pe), axis);
    int64_t o = (a->ceil_mode ? (span + s - 1) / s : span / s) + 1;
    if (a->ceil_mode && (o - 1) * s >= in + *pb) o--;
    *out = o;
    return AQ_OK;
}

static aq_status need_rank(const aq_cnn_node *n, const aq_cnn_shape *s, int rank, const char *what,
                           aq_error *err)
{
    char b[160];
    if (!s) return aq_cnn_node_fail(err, n, AQ_ERR_FORMAT, "input %s is missing", what);
    if (s->ndim != rank)
        return aq_cnn_node_fail(err, n, AQ_ERR_SHAPE, "input %s has shape %s, expected rank %d",
                                what, aq_cnn_shape_str(s, b, sizeof b), rank);
    return AQ_OK;
}

static void raise_scratch(size_t *scratch, size_t need)
{
    if (need > *scratch) *scratch = need;
}

/* The weight [M, C/group, kh, kw] against X [N, C, H, W]; bias [M]. */
static aq_status check_conv_weight(aq_cnn_infer_args *x, aq_error *err)
{
    const aq_cnn_node *n = x->node;
    const aq_cnn_shape *X = x->in[0], *W = x->in[1], *B = x->node->n_in > 2 ? x->in[2] : NULL;
    aq_cnn_attrs *a = x->a;
    char bx[160], bw[160];
    AQ_TRY(need_rank(n, W, 4, "W", err));
    int g = a->group;
    if (g < 1 || X->d[1] % g || W->d[0] % g || W->d[1] * g != X->d[1])
        return aq_cnn_node_fail(
            err, n, AQ_ERR_SHAPE, "weight %s does not fit input %s with group %d",
            aq_cnn_shape_str(W, bw, sizeof bw), aq_cnn_shape_str(X, bx, sizeof bx), g);
    for (int i = 0; i < 2; i++) {
        if (a->kernel[i] > 0 && a->kernel[i] != W->d[2 + i])
            return aq_cnn_node_fail(err, n, AQ_ERR_SHAPE,
                                    "kernel_shape %dx%d disagrees with weight %s", a->kernel[0],
                                    a->kernel[1], aq_cnn_shape_str(W, bw, sizeof bw));
        a->kernel[i] = (int)W->d[2 + i];
    }
    if (B && (B->ndim != 1 || B->d[0] != W->d[0]))
        return aq_cnn_node_fail(err, n, AQ_ERR_SHAPE, "bias %s does not match %lld output channels",
                                aq_cnn_shape_str(B, bx, sizeof bx), (long long)W->d[0]);
    return AQ_OK;
}

aq_status aq_cnn_infer_conv(aq_cnn_infer_args *x, aq_error *err)
{
    const aq_cnn_node *n = x->node;
    AQ_TRY(need_rank(n, x->in[0], 4, "X", err));
    AQ_TRY(check_conv_weight(x, err));
    const aq_cnn_shape *X = x->in[0], *W = x->in[1];
    aq_cnn_attrs *a = x->a;
    a->ceil_mode = 0;
    int64_t oh = 0, ow = 0;
    AQ_TRY(spatial_axis(n, a, 0, X->d[2], &oh, err));
    AQ_TRY(spatial_axis(n, a, 1, X->d[3], &ow, err));
    *x->out = (aq_cnn_shape){4, {X->d[0], W->d[0], oh, ow}};
    size_t K = (size_t)W->d[1] * a->kernel[0] * a->kernel[1];
    raise_scratch(x->scratch, (size_t)oh * ow * K);
    return AQ_OK;
}

/* Output columns [*lo, *hi) whose input column x0 + ox * sw lies in [0, W). */
static void valid_cols(int x0, int sw, int W, int OW, int *lo, int *hi)
{
    *lo = x0 >= 0 ? 0 : (-x0 + sw - 1) / sw;
    *hi = x0 >= W ? 0 : (W - 1 - x0) / sw + 1;
    if (*hi > OW) *hi = OW;
    if (*lo > *hi) *lo = *hi;
}

/* tap_row when strides are 1 and OW == W (a "same" conv): the tap's valid
 * rows are one contiguous block in both the plane and the row of cols, so
 * one memcpy (clipped to the plane), then the edge columns are zeroed (the
 * clipped elements are edge columns too). */
static void tap_row_same(const float *xc, int H, int W, int OH, int y0, int x0, int lo, int hi,
                         float *dst)
{
    int oy0 = y0 < 0 ? -y0 : 0, oy1 = H - y0 < OH ? H - y0 : OH;
    if (oy1 < oy0) oy1 = oy0;
    memset(dst, 0, (size_t)oy0 * W * sizeof(float));
    memset(dst + (size_t)oy1 * W, 0, (size_t)(OH - oy1) * W * sizeof(float));
    long s0 = (long)(oy0 + y0) * W + x0, n = (long)(oy1 - oy0) * W, plane = (long)H * W;
    long c0 = s0 < 0 ? -s0 : 0, c1 = s0 + n > plane ? s0 + n - plane : 0;
    if (n - c0 - c1 > 0)
        memcpy(dst + (long)oy0 * W + c0, xc + s0 + c0, (size_t)(n - c0 - c1) * sizeof(float));
    for (int oy = oy0; oy < oy1; oy++) {
        float *d = dst + (size_t)oy * W;
        for (int i = 0; i < lo; i++)
            d[i] = 0.0f;
        for (int i = hi; i < W; i++)
            d[i] = 0.0f;
    }
}

/* One row of cols: tap (ky, kx) of channel plane xc [H, W] for every output
 * position, zero where the tap falls in the padding. With stride 1 each
 * output row is one memcpy; this is why the engine does not use
 * aq_im2col's [P, K] layout (its transpose, built element by element; the
 * test checks the two agree). */
static void tap_row(const float *xc, int H, int W, const aq_cnn_attrs *a, int ky, int kx, int OH,
                    int OW, float *dst)
{
    int sh = a->strides[0], sw = a->strides[1], x0 = kx * a->dilations[1] - a->pads[1], lo, hi;
    int y0 = ky * a->dilations[0] - a->pads[0];
    valid_cols(x0, sw, W, OW, &lo, &hi);
    if (sh == 1 && sw == 1 && OW == W) {
        tap_row_same(xc, H, W, OH, y0, x0, lo, hi, dst);
        return;
    }
    for (int oy = 0; oy < OH; oy++, dst += OW) {
        int iy = oy * sh + y0;
        if (iy < 0 || iy >= H) {
            memset(dst, 0, (size_t)OW * sizeof(float));
            continue;
        }
        const float *src = xc + (size_t)iy * W;
        memset(dst, 0, (size_t)lo * sizeof(float));
        if (sw == 1)
            memcpy(dst + lo, src + x0 + lo, (size_t)(hi - lo) * sizeof(float));
        else
            for (int ox = lo; ox < hi; ox++)
                dst[ox] = src[x0 + ox * sw];
        memset(dst + hi, 0, (size_t)(OW - hi) * sizeof(float));
    }
}

void aq_cnn_im2col_t(const float *x, int cg, int H, int W, const aq_cnn_attrs *a, int OH, int OW,
                     float *cols)
{
    size_t P = (size_t)OH * OW;
    for (int c = 0; c < cg; c++)
        for (int ky = 0; ky < a->kernel[0]; ky++)
            for (int kx = 0; kx < a->kernel[1]; kx++, cols += P)
                tap_row(x + (size_t)c * H * W, H, W, a, ky, kx, OH, OW, cols);
}

/* One image, one group: Y_g [Mg, P] = W_g [Mg, K] cols [K, P]. A 1x1
 * stride-1 unpadded conv needs no cols: the image's channels are K x P. */
static void conv_group(const aq_cnn_run_args *r, const float *xn, int grp, float *yn)
{
    const aq_cnn_shape *X = r->in_shape[0], *W = r->in_shape[1], *Y = r->out_shape;
    const aq_cnn_attrs *a = r->a;
    int H = (int)X->d[2], Wd = (int)X->d[3], M = (int)W->d[0], cg = (int)W->d[1];
    int Mg = M / a->group;
    long P = (long)Y->d[2] * Y->d[3], K = (long)cg * a->kernel[0] * a->kernel[1];
    const float *wg = r->in[1] + (size_t)grp * Mg * K, *xg = xn + (size_t)grp * cg * H * Wd;
    float *yg = yn + (size_t)grp * Mg * P;
    const int *p = a->pads;
    if (K == cg && !p[0] && !p[1] && !p[2] && !p[3] && a->strides[0] == 1 && a->strides[1] == 1) {
        aq_sgemm(0, 0, Mg, P, K, 1.0f, wg, K, 1, xg, P, 1, 0.0f, yg, P, 1);
        return;
    }
    aq_cnn_im2col_t(xg, cg, H, Wd, a, (int)Y->d[2], (int)Y->d[3], r->scratch);
    aq_sgemm(0, 0, Mg, P, K, 1.0f, wg, K, 1, r->scratch, P, 1, 0.0f, yg, P, 1);
}

void aq_cnn_run_conv(const aq_cnn_run_args *r)
{
    const aq_cnn_shape *X = r->in_shape[0], *Y = r->out_shape;
    size_t in_img = (size_t)X->d[1] * X->d[2] * X->d[3],
           out_img = (size_t)Y->d[1] * Y->d[2] * Y->d[3];
    size_t P = (size_t)Y->d[2] * Y->d[3];
    const float *bias = r->node->n_in > 2 ? r->in[2] : NULL;
    for (int64_t n = 0; n < X->d[0]; n++) {
        float *yn = r->out + n * out_img;
        for (int grp = 0; grp < r->a->group; grp++)
            conv_group(r, r->in[0] + n * in_img, grp, yn);
        for (int64_t m = 0; bias && m < Y->d[1]; m++)
            for (size_t i = 0; i < P; i++)
                yn[m * P + i] += bias[m];
    }
}

aq_status aq_cnn_infer_pool(aq_cnn_infer_args *x, aq_error *err)
{
    const aq_cnn_node *n = x->node;
    AQ_TRY(need_rank(n, x->in[0], 4, "X", err));
    const aq_cnn_shape *X = x->in[0];
    int64_t oh = 0, ow = 0;
    AQ_TRY(spatial_axis(n, x->a, 0, X->d[2], &oh, err));
    AQ_TRY(spatial_axis(n, x->a, 1, X->d[3], &ow, err));
    *x->out = (aq_cnn_shape){4, {X->d[0], X->d[1], oh, ow}};
    return AQ_OK;
}

/* Number of window taps along one axis that fall in [lo, hi). */
static int taps_in(int start, int k, int d, int lo, int hi)
{
    int c = 0;
    for (int t = 0; t < k; t++)
        c += start + t * d >= lo && start + t * d < hi;
    return c;
}

/* One output of a pool over plane xc [H, W]: the window starts at (y0, x0). */
static float pool_one(const aq_cnn_attrs *a, int is_max, const float *xc, int H, int W, int y0,
                      int x0)
{
    float m = -INFINITY;
    double sum = 0;
    int cnt = 0;
    for (int ky = 0; ky < a->kernel[0]; ky++) {
        int iy = y0 + ky * a->dilations[0];
        if (iy < 0 || iy >= H) continue;
        for (int kx = 0; kx < a->kernel[1]; kx++) {
            int ix = x0 + kx * a->dilations[1];
            if (ix < 0 || ix >= W) continue;
            float v = xc[(size_t)iy * W + ix];
            if (v > m || v != v) m = v; /* NaN propagates */
            sum += v;
            cnt++;
        }
    }
    if (is_max) return cnt ? m : 0.0f;
    if (a->count_include_pad) /* taps inside the padded input, as PyTorch and onnxruntime */
        cnt = taps_in(y0, a->kernel[0], a->dilations[0], -a->pads[0], H + a->pads[2]) *
              taps_in(x0, a->kernel[1], a->dilations[1], -a->pads[1], W + a->pads[3]);
    return cnt ? (float)(sum / cnt) : 0.0f;
}

void aq_cnn_run_pool(const aq_cnn_run_args *r)
{
    const aq_cnn_shape *X = r->in_shape[0], *Y = r->out_shape;
    const aq_cnn_attrs *a = r->a;
    int H = (int)X->d[2], W = (int)X->d[3], OH = (int)Y->d[2], OW = (int)Y->d[3];
    int is_max = r->node->op == AQ_OP_MAXPOOL;
    size_t planes = (size_t)X->d[0] * X->d[1];
    for (size_t pl = 0; pl < planes; pl++) {
        const float *xc = r->in[0] + pl * H * W;
        float *yc = r->out + pl * OH * OW;
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++)
                yc[oy * OW + ox] = pool_one(a, is_max, xc, H, W, oy * a->strides[0] - a->pads[0],
                                            ox * a->strides[1] - a->pads[1]);
    }
}

aq_status aq_cnn_infer_gap(aq_cnn_infer_args *x, aq_error *err)
{
    const aq_cnn_shape *X = x->in[0];
    char b[160];
    if (!X || X->ndim < 3)
        return aq_cnn_node_fail(err, x->node, AQ_ERR_SHAPE, "input %s must be [N, C, spatial...]",
                                X ? aq_cnn_shape_str(X, b, sizeof b) : "(missing)");
    *x->out = *X;
    for (int i = 2; i < X->ndim; i++)
        x->out->d[i] = 1;
    return AQ_OK;
}

void aq_cnn_run_gap(const aq_cnn_run_args *r)
{
    const aq_cnn_shape *X = r->in_shape[0];
    size_t planes = (size_t)X->d[0] * X->d[1], sp = aq_cnn_numel(X) / planes;
    for (size_t pl = 0; pl < planes; pl++) {
        double s = 0; /* double: the mean of up to H*W terms loses no bits to order */
        for (size_t i = 0; i < sp; i++)
            s += r->in[0][pl * sp + i];
        r->out[pl] = (float)(s / (double)sp);
    }
}
