/* op_elem.c — the element-wise operators of the CNN engine:
 * BatchNormalization (inference), Relu, Clip, HardSigmoid, HardSwish,
 * Sigmoid, and Add/Mul with NumPy (right-aligned) broadcasting. */
#include <math.h>
#include <string.h>

#include "cnn_internal.h"

aq_status aq_cnn_infer_bn(aq_cnn_infer_args *x, aq_error *err)
{
    const aq_cnn_shape *X = x->in[0];
    char b[160];
    if (!X || X->ndim < 2)
        return aq_cnn_node_fail(err, x->node, AQ_ERR_SHAPE, "input X %s must be [N, C, ...]",
                                X ? aq_cnn_shape_str(X, b, sizeof b) : "(missing)");
    static const char *names[] = {"X", "scale", "B", "input_mean", "input_var"};
    if (x->node->n_in < 5)
        return aq_cnn_node_fail(err, x->node, AQ_ERR_FORMAT, "needs 5 inputs, has %d",
                                x->node->n_in);
    for (int i = 1; i < 5; i++) {
        const aq_cnn_shape *s = x->in[i];
        if (!s || s->ndim != 1 || s->d[0] != X->d[1])
            return aq_cnn_node_fail(
                err, x->node, AQ_ERR_SHAPE, "%s %s does not match %lld channels", names[i],
                s ? aq_cnn_shape_str(s, b, sizeof b) : "(missing)", (long long)X->d[1]);
    }
    *x->out = *X;
    return AQ_OK;
}

void aq_cnn_run_bn(const aq_cnn_run_args *r)
{
    const aq_cnn_shape *X = r->in_shape[0];
    size_t C = (size_t)X->d[1], N = (size_t)X->d[0], sp = aq_cnn_numel(X) / (N * C);
    const float *scale = r->in[1], *bias = r->in[2], *mean = r->in[3], *var = r->in[4];
    for (size_t c = 0; c < C; c++) {
        /* y = (x - mean) * (scale / sqrt(var + eps)) + B, the factor in double */
        float k = (float)(scale[c] / sqrt((double)var[c] + r->a->epsilon)), m = mean[c],
              b = bias[c];
        for (size_t n = 0; n < N; n++) {
            const float *xs = r->in[0] + (n * C + c) * sp;
            float *ys = r->out + (n * C + c) * sp;
            for (size_t i = 0; i < sp; i++)
                ys[i] = (xs[i] - m) * k + b;
        }
    }
}

aq_status aq_cnn_infer_unary(aq_cnn_infer_args *x, aq_error *err)
{
    if (!x->in[0]) return aq_cnn_node_fail(err, x->node, AQ_ERR_FORMAT, "input is missing");
    if (x->node->op == AQ_OP_CLIP && !(x->a->clip_min <= x->a->clip_max))
        return aq_cnn_node_fail(err, x->node, AQ_ERR_FORMAT, "min %g > max %g", x->a->clip_min,
                                x->a->clip_max);
    *x->out = *x->in[0];
    return AQ_OK;
}

static float clampf(float v, float lo, float hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

void aq_cnn_run_unary(const aq_cnn_run_args *r)
{
    const float *x = r->in[0];
    float *y = r->out;
    size_t n = aq_cnn_numel(r->out_shape);
    const aq_cnn_attrs *a = r->a;
    switch (r->node->op) {
    case AQ_OP_RELU:
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] < 0.0f ? 0.0f : x[i]; /* NaN stays NaN */
        break;
    case AQ_OP_CLIP:
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] != x[i] ? x[i] : clampf(x[i], a->clip_min, a->clip_max);
        break;
    case AQ_OP_HARDSIGMOID:
        for (size_t i = 0; i < n; i++)
            y[i] = clampf(a->alpha * x[i] + a->beta, 0.0f, 1.0f);
        break;
    case AQ_OP_HARDSWISH: /* x * HardSigmoid(x) with alpha 1/6, beta 1/2 (ONNX) */
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] * clampf(x[i] / 6.0f + 0.5f, 0.0f, 1.0f);
        break;
    case AQ_OP_SIGMOID:
        for (size_t i = 0; i < n; i++)
            y[i] = (float)(1.0 / (1.0 + exp(-(double)x[i])));
        break;
    default: memcpy(y, x, n * sizeof(float)); break;
    }
}

aq_status aq_cnn_infer_binary(aq_cnn_infer_args *x, aq_error *err)
{
    const aq_cnn_shape *A = x->in[0], *B = x->in[1];
    char ba[160], bb[160];
    if (!A || !B || x->node->n_in != 2)
        return aq_cnn_node_fail(err, x->node, AQ_ERR_FORMAT, "needs two inputs");
    int r = A->ndim > B->ndim ? A->ndim : B->ndim;
    x->out->ndim = r;
    for (int i = 0; i < r; i++) {
        int ia = i - (r - A->ndim), ib = i - (r - B->ndim);
        int64_t da = ia >= 0 ? A->d[ia] : 1, db = ib >= 0 ? B->d[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return aq_cnn_node_fail(err, x->node, AQ_ERR_SHAPE, "shapes %s and %s do not broadcast",
                                    aq_cnn_shape_str(A, ba, sizeof ba),
                                    aq_cnn_shape_str(B, bb, sizeof bb));
        x->out->d[i] = da == 1 ? db : da;
    }
    return AQ_OK;
}

/* Strides of s's elements when indexed by the output's (broadcast) index:
 * 0 along broadcast axes. */
static void bcast_strides(const aq_cnn_shape *s, const aq_cnn_shape *out, int64_t *st)
{
    int64_t acc = 1;
    for (int i = out->ndim - 1; i >= 0; i--) {
        int j = i - (out->ndim - s->ndim);
        int64_t d = j >= 0 ? s->d[j] : 1;
        st[i] = d == 1 ? 0 : acc;
        acc *= d;
    }
}

static void binary_row(int mul, const float *a, int64_t sa, const float *b, int64_t sb, float *y,
                       int64_t n)
{
    if (mul)
        for (int64_t i = 0; i < n; i++)
            y[i] = a[i * sa] * b[i * sb];
    else
        for (int64_t i = 0; i < n; i++)
            y[i] = a[i * sa] + b[i * sb];
}

void aq_cnn_run_binary(const aq_cnn_run_args *r)
{
    const aq_cnn_shape *O = r->out_shape;
    int mul = r->node->op == AQ_OP_MUL, nd = O->ndim;
    int64_t sa[AQ_MAX_DIMS], sb[AQ_MAX_DIMS], idx[AQ_MAX_DIMS] = {0};
    if (nd == 0) {
        binary_row(mul, r->in[0], 0, r->in[1], 0, r->out, 1);
        return;
    }
    bcast_strides(r->in_shape[0], O, sa);
    bcast_strides(r->in_shape[1], O, sb);
    int64_t inner = O->d[nd - 1], rows = (int64_t)aq_cnn_numel(O) / inner;
    for (int64_t row = 0; row < rows; row++) {
        int64_t oa = 0, ob = 0;
        for (int i = 0; i < nd - 1; i++)
            oa += idx[i] * sa[i], ob += idx[i] * sb[i];
        binary_row(mul, r->in[0] + oa, sa[nd - 1], r->in[1] + ob, sb[nd - 1], r->out + row * inner,
                   inner);
        for (int i = nd - 2; i >= 0 && ++idx[i] == O->d[i]; i--)
            idx[i] = 0; /* odometer */
    }
}
