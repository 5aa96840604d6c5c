/* onnx_fix.c — the ONNX reader's passes over the sorted graph:
 *  - Reshape/Identity/Dropout applied to a constant are folded into a new
 *    constant (the MNIST model reshapes its MatMul weight so: the engine and
 *    quantizer then see the weight as a constant, like every other layer's);
 *  - value ranks are inferred (from the declared input rank and each op),
 *    which the opset < 7 Add/Mul `broadcast=1, axis=k` rule needs: the
 *    constant operand gets trailing 1s so that NumPy broadcasting means the
 *    same ([C] on axis 1 of NCHW -> [C, 1, 1]); spatial ops on a known rank
 *    other than 4 are refused; Conv's kernel_shape comes from its weight when
 *    the model leaves it out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_internal.h"

static aq_status fail_node(const aq_onnx_rd *r, const aq_cnn_node *n, const char *msg,
                           aq_error *err)
{
    return aq_fail(err, AQ_ERR_FORMAT, "%s: node '%s' (%s): %s", r->what, n->name,
                   aq_cnn_op_name(n->op), msg);
}

static int64_t numel_of(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= shape[d];
    return n;
}

/* Reshape's target shape for input shape (ndim, in): 0 copies, -1 infers. */
static aq_status reshape_shape(const aq_onnx_rd *r, const aq_cnn_node *n, int ndim,
                               const int64_t *in, int64_t *out, aq_error *err)
{
    int infer = -1;
    int64_t known = 1;
    for (int d = 0; d < n->a.shape_ndim; d++) {
        int64_t s = n->a.shape[d];
        if (s == 0 && d < ndim) s = in[d];
        if (s == -1 && infer < 0) {
            infer = d;
            continue;
        }
        if (s < 0 || s == 0) return fail_node(r, n, "bad entry in the target shape", err);
        if (known >
            ((int64_t)1 << 40) / s) /* constants hold at most 2^40 elements (io/onnx_read.c) */
            return fail_node(r, n, "the target shape's size differs from the constant's", err);
        out[d] = s;
        known *= s;
    }
    int64_t total = numel_of(ndim, in);
    if (infer >= 0) {
        if (known == 0 || total % known)
            return fail_node(r, n, "cannot infer the -1 dimension", err);
        out[infer] = total / known;
    } else if (known != total) {
        return fail_node(r, n, "the target shape's size differs from the constant's", err);
    }
    return AQ_OK;
}

/* Fold node n (Reshape/Identity of a constant) into its output value. */
static aq_status fold_one(aq_onnx_rd *r, aq_cnn_node *n, aq_error *err)
{
    aq_cnn_graph *g = r->g;
    aq_cnn_value *src = &g->values[n->in[0]], *dst = &g->values[n->out];
    int64_t shape[AQ_MAX_DIMS];
    int ndim = src->ndim;
    memcpy(shape, src->shape, sizeof shape);
    if (n->op == AQ_OP_RESHAPE) {
        AQ_TRY(reshape_shape(r, n, src->ndim, src->shape, shape, err));
        ndim = n->a.shape_ndim;
    }
    size_t bytes = (size_t)numel_of(ndim, shape) * sizeof(float);
    if (!(dst->data = malloc(bytes + 1))) return aq_fail_nomem(err, dst->name, bytes);
    if (bytes) memcpy(dst->data, src->data, bytes);
    dst->is_const = 1;
    dst->ndim = ndim;
    memcpy(dst->shape, shape, sizeof shape);
    return AQ_OK;
}

aq_status aq_onnx_fold_constants(aq_onnx_rd *r, aq_error *err)
{
    aq_cnn_graph *g = r->g;
    /* fold in sorted order (a chain of folds sees its input folded), compact only
     * once all succeeded: on an error the node array is still whole for freeing */
    for (int i = 0; i < g->n_nodes; i++) {
        aq_cnn_node *n = &g->nodes[i];
        if ((n->op == AQ_OP_RESHAPE || n->op == AQ_OP_IDENTITY) && n->in[0] >= 0 &&
            g->values[n->in[0]].is_const && n->out != g->output)
            AQ_TRY(fold_one(r, n, err));
    }
    int kept = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->values[g->nodes[i].out].is_const) {
            free(g->nodes[i].name);
            continue;
        }
        g->nodes[kept] = g->nodes[i];
        r->src[kept++] = r->src[i];
    }
    g->n_nodes = kept;
    return AQ_OK;
}

/* Consumers of value v. */
static int uses(const aq_cnn_graph *g, int v)
{
    int c = 0;
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            c += g->nodes[i].in[k] == v;
    return c;
}

/* broadcast/axis of an opset < 7 Add/Mul; axis = AQ_MAX_DIMS + 1 when absent. */
static int legacy_axis(const Onnx__NodeProto *np, int *axis)
{
    int bc = 0;
    *axis = AQ_MAX_DIMS + 1;
    for (size_t k = 0; k < np->n_attribute; k++) {
        const Onnx__AttributeProto *a = np->attribute[k];
        if (a->name && !strcmp(a->name, "broadcast")) bc = (int)a->i;
        if (a->name && !strcmp(a->name, "axis")) *axis = (int)a->i;
    }
    return bc == 1 && *axis != AQ_MAX_DIMS + 1;
}

/* B of `A op B` reshaped to B.shape + 1s, up to rank ra - axis. */
static aq_status apply_axis(aq_onnx_rd *r, aq_cnn_node *n, int ra, int axis, aq_error *err)
{
    aq_cnn_graph *g = r->g;
    if (ra < 0)
        return fail_node(
            r, n, "opset < 7 broadcast with an axis needs the input's rank, unknown here", err);
    if (n->in[1] < 0 || !g->values[n->in[1]].is_const)
        return fail_node(
            r, n, "opset < 7 broadcast with an axis is supported for a constant second input only",
            err);
    if (axis < 0) axis += ra;
    int bn = g->values[n->in[1]].ndim;
    if (axis < 0 || axis + bn > ra)
        return fail_node(r, n, "broadcast axis out of range for the input ranks", err);
    if (uses(g, n->in[1]) > 1) { /* shared: give this node its own copy */
        aq_cnn_value *b = &g->values[n->in[1]];
        char nm[512];
        snprintf(nm, sizeof nm, "%s:axis%d:%s", b->name, axis, n->name);
        size_t bytes = (size_t)numel_of(bn, b->shape) * sizeof(float);
        int id;
        AQ_TRY(aq_onnx_add_value(r, nm, &id, err)); /* may move g->values */
        b = &g->values[n->in[1]];
        aq_cnn_value *c = &g->values[id];
        if (!(c->data = malloc(bytes + 1))) return aq_fail_nomem(err, nm, bytes);
        if (bytes) memcpy(c->data, b->data, bytes);
        c->is_const = 1;
        c->ndim = bn;
        memcpy(c->shape, b->shape, sizeof c->shape);
        n->in[1] = id;
    }
    aq_cnn_value *b = &g->values[n->in[1]];
    for (int d = bn; d < ra - axis; d++)
        b->shape[d] = 1;
    b->ndim = ra - axis;
    return AQ_OK;
}

static int rank_of(aq_cnn_op op, const aq_cnn_node *n, const int *rank)
{
    int r0 = n->in[0] >= 0 ? rank[n->in[0]] : -1,
        r1 = n->n_in > 1 && n->in[1] >= 0 ? rank[n->in[1]] : -1;
    switch (op) {
    case AQ_OP_FLATTEN:
    case AQ_OP_GEMM: return 2;
    case AQ_OP_RESHAPE: return n->a.shape_ndim;
    case AQ_OP_ADD:
    case AQ_OP_MUL:
    case AQ_OP_MATMUL: return r0 < 0 || r1 < 0 ? -1 : (r0 > r1 ? r0 : r1);
    default: return r0;
    }
}

aq_status aq_onnx_rank_pass(aq_onnx_rd *r, aq_error *err)
{
    aq_cnn_graph *g = r->g;
    int nv = g->n_values + g->n_nodes; /* apply_axis adds at most one value per node */
    int *rank = malloc((size_t)nv * sizeof *rank);
    aq_status st = AQ_OK;
    if (!rank) return aq_fail_nomem(err, "ranks", (size_t)nv * sizeof *rank);
    for (int v = 0; v < nv; v++)
        rank[v] = v < g->n_values && g->values[v].is_const ? g->values[v].ndim : -1;
    if (g->in_ndim > 0) rank[g->input] = g->in_ndim;
    for (int i = 0; i < g->n_nodes && st == AQ_OK; i++) {
        aq_cnn_node *n = &g->nodes[i];
        int axis, r0 = n->in[0] >= 0 ? rank[n->in[0]] : -1;
        int spatial = n->op == AQ_OP_CONV || n->op == AQ_OP_MAXPOOL || n->op == AQ_OP_AVGPOOL ||
                      n->op == AQ_OP_GLOBALAVGPOOL;
        if (spatial && r0 >= 0 && r0 != 4)
            st = fail_node(r, n, "the input is not 4-D NCHW (only 2-D spatial ops are supported)",
                           err);
        if (st == AQ_OK && n->op == AQ_OP_CONV && n->in[1] >= 0 && g->values[n->in[1]].is_const) {
            const aq_cnn_value *w = &g->values[n->in[1]];
            if (w->ndim != 4)
                st = fail_node(r, n, "the weight is not 4-D (only 2-D convolutions are supported)",
                               err);
            else if (n->a.kernel[0] == 0)
                n->a.kernel[0] = (int)w->shape[2], n->a.kernel[1] = (int)w->shape[3];
        }
        if (st == AQ_OK && r->opset < 7 && (n->op == AQ_OP_ADD || n->op == AQ_OP_MUL) &&
            legacy_axis(r->src[i], &axis)) {
            st = apply_axis(r, n, r0, axis, err);
            if (st == AQ_OK) rank[n->in[1]] = g->values[n->in[1]].ndim;
        }
        rank[n->out] = rank_of(n->op, n, rank);
    }
    free(rank);
    return st;
}
