/* op_dense.c — the dense and shape operators of the CNN engine: Gemm and
 * MatMul as BLIS GEMMs, Softmax (opset < 13: coerced to 2-D at the axis;
 * opset >= 13: one axis), Concat, and the copies Flatten, Reshape, Identity. */
#include <math.h>
#include <string.h>

#include "cnn_internal.h"

static int64_t prod(const int64_t *d, int from, int to)
{
    int64_t p = 1;
    for (int i = from; i < to; i++)
        p *= d[i];
    return p;
}

/* Resolve a possibly negative axis against rank r; valid is [0, r + extra). */
static aq_status resolve_axis(const aq_cnn_node *n, int *axis, int r, int extra, aq_error *err)
{
    int ax = *axis < 0 ? *axis + r : *axis;
    if (ax < 0 || ax >= r + extra)
        return aq_cnn_node_fail(err, n, AQ_ERR_FORMAT, "axis %d is out of range for rank %d", *axis,
                                r);
    *axis = ax;
    return AQ_OK;
}

aq_status aq_cnn_infer_gemm(aq_cnn_infer_args *x, aq_error *err)
{
    const aq_cnn_shape *A = x->in[0], *B = x->in[1], *C = x->node->n_in > 2 ? x->in[2] : NULL;
    char ba[160], bb[160];
    if (!A || !B || A->ndim != 2 || B->ndim != 2)
        return aq_cnn_node_fail(err, x->node, AQ_ERR_SHAPE, "A %s and B %s must be matrices",
                                A ? aq_cnn_shape_str(A, ba, sizeof ba) : "(missing)",
                                B ? aq_cnn_shape_str(B, bb, sizeof bb) : "(missing)");
    int64_t M = A->d[x->a->trans_a ? 1 : 0], K = A->d[x->a->trans_a ? 0 : 1];
    int64_t K2 = B->d[x->a->trans_b ? 1 : 0], N = B->d[x->a->trans_b ? 0 : 1];
    if (K != K2)
        return aq_cnn_node_fail(err, x->node, AQ_ERR_SHAPE,
                                "A %s (transA %d) and B %s (transB %d) disagree on K",
                                aq_cnn_shape_str(A, ba, sizeof ba), x->a->trans_a,
                                aq_cnn_shape_str(B, bb, sizeof bb), x->a->trans_b);
    *x->out = (aq_cnn_shape){2, {M, N}};
    if (C) { /* C broadcasts to [M, N] one way */
        int ok = C->ndim <= 2;
        for (int i = 0; ok && i < C->ndim; i++) {
            int64_t want = x->out->d[2 - C->ndim + i];
            ok = C->d[i] == want || C->d[i] == 1;
        }
        if (!ok)
            return aq_cnn_node_fail(err, x->node, AQ_ERR_SHAPE,
                                    "C %s does not broadcast to [%lld, %lld]",
                                    aq_cnn_shape_str(C, ba, sizeof ba), (long long)M, (long long)N);
    }
    return AQ_OK;
}

void aq_cnn_run_gemm(const aq_cnn_run_args *r)
{
    const aq_cnn_shape *A = r->in_shape[0], *B = r->in_shape[1];
    const aq_cnn_shape *C = r->node->n_in > 2 ? r->in_shape[2] : NULL;
    const aq_cnn_attrs *a = r->a;
    int64_t M = r->out_shape->d[0], N = r->out_shape->d[1], K = A->d[a->trans_a ? 0 : 1];
    float beta = 0.0f;
    if (C && C->ndim >= 0 && r->in[2] && a->beta != 0.0f) {
        /* C's strides in Y's [M, N] index: 0 along broadcast axes */
        int64_t cm = C->ndim == 2 && C->d[0] != 1 ? C->d[1] : 0;
        int64_t cn = C->ndim >= 1 && C->d[C->ndim - 1] != 1 ? 1 : 0;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                r->out[i * N + j] = a->beta * r->in[2][i * cm + j * cn];
        beta = 1.0f;
    }
    aq_sgemm(a->trans_a, a->trans_b, M, N, K, a->alpha, r->in[0], A->d[1], 1, r->in[1], B->d[1],
                 1, beta, r->out, N, 1);
}

/* MatMul's operands in NumPy's terms: a 1-D A is [1, K] (row dropped from
 * the output), a 1-D B is [K, 1] (column dropped); leading dims broadcast. */
typedef struct mm_dims {
    int64_t M, K, N;
    int ra, rb; /* batch ranks of A and B */
} mm_dims;

static mm_dims mm_split(const aq_cnn_shape *A, const aq_cnn_shape *B)
{
    mm_dims m;
    m.M = A->ndim >= 2 ? A->d[A->ndim - 2] : 1;
    m.K = A->d[A->ndim - 1];
    m.N = B->ndim >= 2 ? B->d[B->ndim - 1] : 1;
    m.ra = A->ndim >= 2 ? A->ndim - 2 : 0;
    m.rb = B->ndim >= 2 ? B->ndim - 2 : 0;
    return m;
}

aq_status aq_cnn_infer_matmul(aq_cnn_infer_args *x, aq_error *err)
{
    const aq_cnn_shape *A = x->in[0], *B = x->in[1];
    char ba[160], bb[160];
    if (!A || !B || A->ndim < 1 || B->ndim < 1)
        return aq_cnn_node_fail(err, x->node, AQ_ERR_SHAPE, "needs two operands of rank >= 1");
    mm_dims m = mm_split(A, B);
    int64_t K2 = B->ndim >= 2 ? B->d[B->ndim - 2] : B->d[0];
    int rb = m.ra > m.rb ? m.ra : m.rb, bad = m.K != K2;
    aq_cnn_shape *o = x->out;
    o->ndim = rb;
    for (int i = 0; i < rb && !bad; i++) {
        int ia = i - (rb - m.ra), ib = i - (rb - m.rb);
        int64_t da = ia >= 0 ? A->d[ia] : 1, db = ib >= 0 ? B->d[ib] : 1;
        bad = da != db && da != 1 && db != 1;
        o->d[i] = da == 1 ? db : da;
    }
    if (bad)
        return aq_cnn_node_fail(err, x->node, AQ_ERR_SHAPE, "operands %s and %s do not multiply",
                                aq_cnn_shape_str(A, ba, sizeof ba),
                                aq_cnn_shape_str(B, bb, sizeof bb));
    if (A->ndim >= 2) o->d[o->ndim++] = m.M;
    if (B->ndim >= 2) o->d[o->ndim++] = m.N;
    return AQ_OK;
}

void aq_cnn_run_matmul(const aq_cnn_run_args *r)
{
    const aq_cnn_shape *A = r->in_shape[0], *B = r->in_shape[1];
    mm_dims m = mm_split(A, B);
    int rb = m.ra > m.rb ? m.ra : m.rb;
    int64_t sa[AQ_MAX_DIMS], sb[AQ_MAX_DIMS], od[AQ_MAX_DIMS], idx[AQ_MAX_DIMS] = {0};
    int64_t acc_a = m.M * m.K, acc_b = m.K * m.N, nb = 1;
    for (int i = rb - 1; i >= 0; i--) { /* batch strides, in elements, 0 where broadcast */
        int ia = i - (rb - m.ra), ib = i - (rb - m.rb);
        int64_t da = ia >= 0 ? A->d[ia] : 1, db = ib >= 0 ? B->d[ib] : 1;
        sa[i] = da == 1 ? 0 : acc_a;
        sb[i] = db == 1 ? 0 : acc_b;
        acc_a *= da, acc_b *= db;
        od[i] = da == 1 ? db : da;
        nb *= od[i];
    }
    for (int64_t b = 0; b < nb; b++) {
        int64_t oa = 0, ob = 0;
        for (int i = 0; i < rb; i++)
            oa += idx[i] * sa[i], ob += idx[i] * sb[i];
        aq_sgemm(0, 0, m.M, m.N, m.K, 1.0f, r->in[0] + oa, m.K, 1, r->in[1] + ob, m.N, 1, 0.0f,
                     r->out + b * m.M * m.N, m.N, 1);
        for (int i = rb - 1; i >= 0 && ++idx[i] == od[i]; i--)
            idx[i] = 0;
    }
}

aq_status aq_cnn_infer_softmax(aq_cnn_infer_args *x, aq_error *err)
{
    const aq_cnn_shape *X = x->in[0];
    if (!X || X->ndim < 1)
        return aq_cnn_node_fail(err, x->node, AQ_ERR_SHAPE, "input must have rank >= 1");
    AQ_TRY(resolve_axis(x->node, &x->a->axis, X->ndim, 0, err));
    *x->out = *X;
    return AQ_OK;
}

void aq_cnn_run_softmax(const aq_cnn_run_args *r)
{
    const aq_cnn_shape *X = r->in_shape[0];
    int ax = r->a->axis;
    /* before opset 13 the input is coerced to 2-D [d0..d(axis-1), rest] and
     * each row normalised; from 13 only the one axis is. */
    int64_t outer = prod(X->d, 0, ax), len, inner;
    if (r->g->opset < 13)
        len = prod(X->d, ax, X->ndim), inner = 1;
    else
        len = X->d[ax], inner = prod(X->d, ax + 1, X->ndim);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            const float *xs = r->in[0] + o * len * inner + in;
            float *ys = r->out + o * len * inner + in;
            float mx = -INFINITY;
            for (int64_t i = 0; i < len; i++)
                mx = fmaxf(mx, xs[i * inner]);
            double s = 0;
            for (int64_t i = 0; i < len; i++)
                s += exp((double)xs[i * inner] - mx);
            for (int64_t i = 0; i < len; i++)
                ys[i * inner] = (float)(exp((double)xs[i * inner] - mx) / s);
        }
}

aq_status aq_cnn_infer_concat(aq_cnn_infer_args *x, aq_error *err)
{
    const aq_cnn_shape *F = x->in[0];
    char b0[160], b1[160];
    if (!F || x->node->n_in < 1)
        return aq_cnn_node_fail(err, x->node, AQ_ERR_FORMAT, "needs inputs");
    AQ_TRY(resolve_axis(x->node, &x->a->axis, F->ndim, 0, err));
    *x->out = *F;
    for (int i = 1; i < x->node->n_in; i++) {
        const aq_cnn_shape *s = x->in[i];
        int ok = s && s->ndim == F->ndim;
        for (int k = 0; ok && k < F->ndim; k++)
            ok = k == x->a->axis || s->d[k] == F->d[k];
        if (!ok)
            return aq_cnn_node_fail(err, x->node, AQ_ERR_SHAPE,
                                    "input %d %s does not match input 0 %s off axis %d", i,
                                    s ? aq_cnn_shape_str(s, b1, sizeof b1) : "(missing)",
                                    aq_cnn_shape_str(F, b0, sizeof b0), x->a->axis);
        x->out->d[x->a->axis] += s->d[x->a->axis];
    }
    return AQ_OK;
}

void aq_cnn_run_concat(const aq_cnn_run_args *r)
{
    int ax = r->a->axis;
    const aq_cnn_shape *O = r->out_shape;
    int64_t outer = prod(O->d, 0, ax), inner = prod(O->d, ax + 1, O->ndim), row = O->d[ax] * inner,
            off = 0;
    for (int i = 0; i < r->node->n_in; i++) {
        int64_t blk = r->in_shape[i]->d[ax] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy(r->out + o * row + off, r->in[i] + o * blk, (size_t)blk * sizeof(float));
        off += blk;
    }
}

aq_status aq_cnn_infer_flatten(aq_cnn_infer_args *x, aq_error *err)
{
    const aq_cnn_shape *X = x->in[0];
    if (!X) return aq_cnn_node_fail(err, x->node, AQ_ERR_FORMAT, "input is missing");
    AQ_TRY(resolve_axis(x->node, &x->a->axis, X->ndim, 1, err));
    *x->out = (aq_cnn_shape){2, {prod(X->d, 0, x->a->axis), prod(X->d, x->a->axis, X->ndim)}};
    return AQ_OK;
}

/* Reshape: 0 copies the input's dim, one -1 is inferred. A target whose
 * first entry is the model's declared fixed batch, on an input whose axis 0
 * is the batch, keeps the plan's batch (models exported for batch 1). */
aq_status aq_cnn_infer_reshape(aq_cnn_infer_args *x, aq_error *err)
{
    const aq_cnn_shape *X = x->in[0];
    const aq_cnn_attrs *a = x->a;
    char b0[160], b1[160];
    if (!X) return aq_cnn_node_fail(err, x->node, AQ_ERR_FORMAT, "input is missing");
    if (a->shape_ndim < 0 || a->shape_ndim > AQ_MAX_DIMS)
        return aq_cnn_node_fail(err, x->node, AQ_ERR_FORMAT, "target rank %d", a->shape_ndim);
    int64_t decl = x->g->in_ndim > 0 ? x->g->in_shape[0] : -1, known = 1;
    int infer = -1;
    aq_cnn_shape *o = x->out;
    o->ndim = a->shape_ndim;
    x->out_batched = 0;
    for (int i = 0; i < a->shape_ndim; i++) {
        int64_t v = a->shape[i];
        if (v == 0 && i < X->ndim) v = X->d[i];
        if (i == 0 && x->in_batched && (a->shape[0] == 0 || (decl > 0 && a->shape[0] == decl)))
            v = X->d[0], x->out_batched = 1;
        if (v == -1 && infer < 0) {
            infer = i;
            continue;
        }
        if (v < 1)
            return aq_cnn_node_fail(err, x->node, AQ_ERR_SHAPE, "target entry %d is %lld", i,
                                    (long long)a->shape[i]);
        o->d[i] = v;
        known *= v;
    }
    int64_t total = aq_cnn_shape_numel(X);
    if (infer >= 0 && known > 0 && total % known == 0) o->d[infer] = total / known;
    if (infer == 0 && x->in_batched && o->d[0] == X->d[0]) x->out_batched = 1;
    aq_cnn_shape t = {a->shape_ndim, {0}};
    memcpy(t.d, a->shape, sizeof t.d);
    if ((infer >= 0 && (known <= 0 || total % known)) || aq_cnn_shape_numel(o) != total)
        return aq_cnn_node_fail(err, x->node, AQ_ERR_SHAPE, "cannot reshape %s to %s",
                                aq_cnn_shape_str(X, b0, sizeof b0),
                                aq_cnn_shape_str(&t, b1, sizeof b1));
    return AQ_OK;
}

void aq_cnn_run_copy(const aq_cnn_run_args *r)
{
    memcpy(r->out, r->in[0], aq_cnn_numel(r->out_shape) * sizeof(float));
}
