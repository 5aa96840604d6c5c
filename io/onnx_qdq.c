/* onnx_qdq.c — the quantized parts of the QDQ export (io/onnx_write.h):
 * weights as INT8/INT4 initializers with a per-axis DequantizeLinear, and
 * activation QuantizeLinear/DequantizeLinear pairs. The mapping of the
 * project's unsigned codes to ONNX's signed types is exact (header). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "onnx_write_internal.h"

#define DT_FLOAT ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT
#define DT_INT8 ONNX__TENSOR_PROTO__DATA_TYPE__INT8
#define DT_UINT8 ONNX__TENSOR_PROTO__DATA_TYPE__UINT8

int aq_ow_opset(const aq_cnn_graph *g, const aq_onnx_qlayer *layers, int n)
{
    int opset = g->opset > 13 ? g->opset : 13;
    for (int i = 0; i < n; i++)
        if ((layers[i].codes && layers[i].bits <= 4) || layers[i].act_bits == 4) opset = 21;
    return opset;
}

static aq_status nfail(const aq_ow *c, const aq_cnn_node *n, const char *msg)
{
    return aq_fail(c->err, AQ_ERR_ARG, "%s: node '%s' (%s): %s", c->path, n->name,
                   aq_cnn_op_name(n->op), msg);
}

/* nfail with one number and a channel in the message. */
static aq_status qfail(const aq_ow *c, const aq_cnn_node *n, const char *fmt, double x, long ch)
{
    char m[256];
    snprintf(m, sizeof m, fmt, x, ch);
    return nfail(c, n, m);
}

/* A zero point must be an integer in [0, 2^bits - 1] (ONNX zero points are integers). */
static aq_status check_zero_scale(const aq_ow *c, const aq_cnn_node *n, float scale, float zero,
                                  int bits, long ch)
{
    if (!(scale > 0) || !isfinite(scale))
        return qfail(c, n, "scale %g of channel %ld is not finite and positive", scale, ch);
    if (zero != rintf(zero) || zero < 0 || zero > (float)((1 << bits) - 1))
        return qfail(c, n,
                     "zero point %.9g of channel %ld is not an integer in [0, 2^bits-1]; ONNX zero "
                     "points are "
                     "integers (requantize with integer zero points to export)",
                     zero, ch);
    return AQ_OK;
}

/* Signed values (already shifted) as INT8 bytes or packed INT4 (low nibble first). */
static uint8_t *pack_signed(aq_ow *c, const int8_t *s, size_t n, int int4, size_t *bytes)
{
    *bytes = int4 ? (n + 1) / 2 : n;
    uint8_t *b = aq_ow_alloc(c, *bytes);
    if (!b) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!int4)
            b[i] = (uint8_t)s[i];
        else
            b[i / 2] |= (uint8_t)((s[i] & 15) << (4 * (i & 1)));
    }
    return b;
}

/* Output-channel count, inner size and ONNX channel axis of node n's weight. */
static aq_status weight_geometry(const aq_ow *c, const aq_cnn_node *n, const aq_cnn_value **wp,
                                 int64_t *out, int64_t *inner, int *axis)
{
    int want = n->op == AQ_OP_CONV ? 4 : 2;
    if (n->op != AQ_OP_CONV && n->op != AQ_OP_GEMM && n->op != AQ_OP_MATMUL)
        return nfail(c, n, "only Conv, Gemm and MatMul weights are quantized");
    const aq_cnn_value *w = n->n_in >= 2 && n->in[1] >= 0 ? &c->g->values[n->in[1]] : NULL;
    *wp = w;
    if (!w || !w->is_const || w->ndim != want)
        return nfail(c, n, "the weight is not a constant of the expected rank");
    *axis = n->op == AQ_OP_CONV || (n->op == AQ_OP_GEMM && n->a.trans_b) ? 0 : 1;
    int64_t total = 1;
    for (int d = 0; d < w->ndim; d++)
        total *= w->shape[d];
    *out = w->shape[*axis];
    *inner = *out ? total / *out : 0;
    return AQ_OK;
}

aq_status aq_ow_weight_qdq(aq_ow *c, const aq_cnn_node *n, const aq_onnx_qlayer *q,
                           const char **name)
{
    const aq_cnn_value *w = NULL;
    int64_t out = 0, inner = 0;
    int axis = 0, int4 = q->bits <= 4, off = 1 << (q->bits - 1);
    if (q->bits < 2 || q->bits > 8) return nfail(c, n, "weight bits not in 2..8");
    AQ_TRY(weight_geometry(c, n, &w, &out, &inner, &axis));
    size_t total = (size_t)(out * inner), bytes, zbytes;
    int8_t *s = aq_ow_alloc(c, total), *zs = aq_ow_alloc(c, (size_t)out);
    if (!s || !zs) return aq_fail_nomem(c->err, "the quantized weight", total);
    for (int64_t o = 0; o < out; o++) {
        AQ_TRY(check_zero_scale(c, n, q->scale[o], q->zero[o], q->bits, (long)o));
        zs[o] = (int8_t)((int)q->zero[o] - off);
        for (int64_t i = 0; i < inner; i++) {
            uint8_t u = q->codes[o * inner + i];
            if (u >= (1 << q->bits))
                return qfail(c, n, "code %.0f of channel %ld exceeds 2^bits-1", u, (long)o);
            /* ONNX layout: [out, ...] for axis 0, [inner, out] for axis 1 */
            s[axis == 0 ? o * inner + i : i * out + o] = (int8_t)(u - off);
        }
    }
    int dt = int4 ? AQ_ONNX_INT4 : DT_INT8;
    uint8_t *wb = pack_signed(c, s, total, int4, &bytes),
            *zb = pack_signed(c, zs, (size_t)out, int4, &zbytes);
    char *qn = aq_ow_str(c, "%s.w_q", n->name), *sn = aq_ow_str(c, "%s.w_scale", n->name);
    char *zn = aq_ow_str(c, "%s.w_zero_point", n->name), *dn = aq_ow_str(c, "%s.w_dq", n->name);
    if (!wb || !zb || !qn || !sn || !zn || !dn ||
        !aq_ow_init(c, qn, dt, w->ndim, w->shape, wb, bytes) ||
        !aq_ow_init(c, sn, DT_FLOAT, 1, &out, q->scale, (size_t)out * 4) ||
        !aq_ow_init(c, zn, dt, 1, &out, zb, zbytes))
        return aq_fail_nomem(c->err, "the quantized weight", total);
    const char *in[3] = {qn, sn, zn};
    Onnx__NodeProto *dq = aq_ow_node(c, "DequantizeLinear", dn, 3, in, dn);
    if (!dq || !aq_ow_attr_int(c, dq, "axis", axis)) return aq_fail_nomem(c->err, "ONNX export", 0);
    *name = dn;
    return AQ_OK;
}

aq_status aq_ow_act_qdq(aq_ow *c, const aq_cnn_node *n, const aq_onnx_qlayer *q, const char **name)
{
    int b = q->act_bits;
    if (b < 2 || b > 8) return nfail(c, n, "activation bits not in 2..8");
    AQ_TRY(check_zero_scale(c, n, q->act_scale, q->act_zero, b,
                            -1));               /* channel -1: the per-tensor pair */
    int dt = b == 4 ? AQ_ONNX_UINT4 : DT_UINT8; /* 4 bits: native; others: uint8, clipped below */
    uint8_t *zp = aq_ow_alloc(c, 1), *lim = aq_ow_alloc(c, 2);
    float *sc = aq_ow_alloc(c, sizeof *sc);
    char *sn = aq_ow_str(c, "%s.x_scale", n->name), *zn = aq_ow_str(c, "%s.x_zero_point", n->name);
    char *qn = aq_ow_str(c, "%s.x_q", n->name), *dn = aq_ow_str(c, "%s.x_dq", n->name);
    char *cn = aq_ow_str(c, "%s.x_qclip", n->name), *lo = aq_ow_str(c, "%s.x_qmin", n->name);
    char *hi = aq_ow_str(c, "%s.x_qmax", n->name);
    if (!zp || !lim || !sc || !sn || !zn || !qn || !dn || !cn || !lo || !hi)
        return aq_fail_nomem(c->err, "ONNX export", 0);
    *zp = (uint8_t)q->act_zero;
    *sc = q->act_scale;
    lim[1] = (uint8_t)((1 << b) - 1);
    if (!aq_ow_init(c, sn, DT_FLOAT, 0, NULL, sc, 4) || !aq_ow_init(c, zn, dt, 0, NULL, zp, 1))
        return aq_fail_nomem(c->err, "ONNX export", 0);
    const char *qin[3] = {*name, sn, zn}, *cin[3] = {qn, lo, hi}, *din[3] = {qn, sn, zn};
    if (!aq_ow_node(c, "QuantizeLinear", qn, 3, qin, qn))
        return aq_fail_nomem(c->err, "ONNX export", 0);
    if (b != 4 && b != 8) { /* saturate to the b-bit range: Clip on the uint8 codes */
        if (!aq_ow_init(c, lo, DT_UINT8, 0, NULL, lim, 1) ||
            !aq_ow_init(c, hi, DT_UINT8, 0, NULL, lim + 1, 1) ||
            !aq_ow_node(c, "Clip", cn, 3, cin, cn))
            return aq_fail_nomem(c->err, "ONNX export", 0);
        din[0] = cn;
    }
    if (!aq_ow_node(c, "DequantizeLinear", dn, 3, din, dn))
        return aq_fail_nomem(c->err, "ONNX export", 0);
    *name = dn;
    return AQ_OK;
}
