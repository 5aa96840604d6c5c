/* plan.c — the CNN engine's plan for one batch size: shapes of every value,
 * resolved attributes, plan-time folding of constant subgraphs and the last
 * reader of each value (so the forward pass frees dead activations). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn_internal.h"

aq_status aq_cnn_node_fail(aq_error *err, const aq_cnn_node *n, aq_status code, const char *fmt,
                           ...)
{
    char msg[AQ_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return aq_fail(err, code, "node '%s' (%s): %s", n->name ? n->name : "?", aq_cnn_op_name(n->op),
                   msg);
}

const char *aq_cnn_shape_str(const aq_cnn_shape *s, char *buf, size_t cap)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < s->ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)s->d[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

int64_t aq_cnn_shape_numel(const aq_cnn_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) {
        if (s->d[i] < 0 || (s->d[i] > 0 && n > ((int64_t)1 << 40) / s->d[i])) return -1;
        n *= s->d[i];
    }
    return n;
}

size_t aq_cnn_numel(const aq_cnn_shape *s)
{
    int64_t n = aq_cnn_shape_numel(s);
    return n < 0 ? 0 : (size_t)n;
}

void aq_cnn_plan_free(aq_cnn_plan *p)
{
    if (p->folded)
        for (int v = 0; v < p->g->n_values; v++)
            free(p->folded[v]);
    free(p->folded);
    free(p->shape);
    free(p->batched);
    free(p->cdata);
    free(p->last_use);
    free(p->attrs);
    free(p->skip);
    memset(p, 0, sizeof *p);
}

void aq_cnn_op_fns(aq_cnn_op op, aq_cnn_infer_fn *inf, aq_cnn_run_fn *run)
{
    switch (op) {
    case AQ_OP_CONV: *inf = aq_cnn_infer_conv, *run = aq_cnn_run_conv; return;
    case AQ_OP_BATCHNORM: *inf = aq_cnn_infer_bn, *run = aq_cnn_run_bn; return;
    case AQ_OP_RELU:
    case AQ_OP_CLIP:
    case AQ_OP_HARDSIGMOID:
    case AQ_OP_HARDSWISH:
    case AQ_OP_SIGMOID: *inf = aq_cnn_infer_unary, *run = aq_cnn_run_unary; return;
    case AQ_OP_MUL:
    case AQ_OP_ADD: *inf = aq_cnn_infer_binary, *run = aq_cnn_run_binary; return;
    case AQ_OP_MAXPOOL:
    case AQ_OP_AVGPOOL: *inf = aq_cnn_infer_pool, *run = aq_cnn_run_pool; return;
    case AQ_OP_GLOBALAVGPOOL: *inf = aq_cnn_infer_gap, *run = aq_cnn_run_gap; return;
    case AQ_OP_FLATTEN: *inf = aq_cnn_infer_flatten, *run = aq_cnn_run_copy; return;
    case AQ_OP_RESHAPE: *inf = aq_cnn_infer_reshape, *run = aq_cnn_run_copy; return;
    case AQ_OP_GEMM: *inf = aq_cnn_infer_gemm, *run = aq_cnn_run_gemm; return;
    case AQ_OP_MATMUL: *inf = aq_cnn_infer_matmul, *run = aq_cnn_run_matmul; return;
    case AQ_OP_SOFTMAX: *inf = aq_cnn_infer_softmax, *run = aq_cnn_run_softmax; return;
    case AQ_OP_CONCAT: *inf = aq_cnn_infer_concat, *run = aq_cnn_run_concat; return;
    case AQ_OP_IDENTITY: *inf = aq_cnn_infer_unary, *run = aq_cnn_run_copy; return;
    default: *inf = NULL, *run = NULL; return;
    }
}

/* The graph input's shape for the batch: declared dims after the first must
 * be fixed. */
static aq_status input_shape(const aq_cnn_graph *g, int batch, aq_cnn_shape *s, aq_error *err)
{
    if (g->in_ndim < 1 || g->in_ndim > AQ_MAX_DIMS)
        return aq_fail(err, AQ_ERR_SHAPE,
                       "%s: the graph input has rank %d; the engine needs [N, ...]",
                       g->path ? g->path : "graph", g->in_ndim);
    s->ndim = g->in_ndim;
    s->d[0] = batch;
    for (int i = 1; i < g->in_ndim; i++) {
        if (g->in_shape[i] < 1)
            return aq_fail(err, AQ_ERR_SHAPE,
                           "%s: dimension %d of the graph input is not fixed (%lld)",
                           g->path ? g->path : "graph", i, (long long)g->in_shape[i]);
        s->d[i] = g->in_shape[i];
    }
    return AQ_OK;
}

/* Whether axis 0 of the node's output is the batch axis (used by Reshape's
 * declared-batch rule and the evaluation's check; Reshape decides for itself). */
static int out_batched(const aq_cnn_plan *p, const aq_cnn_node *n, const aq_cnn_infer_args *x)
{
    int r = x->out->ndim;
    const unsigned char *bt = p->batched;
    switch (n->op) {
    case AQ_OP_RESHAPE: return x->out_batched;
    case AQ_OP_ADD:
    case AQ_OP_MUL:
        for (int i = 0; i < 2; i++)
            if (bt[n->in[i]] && p->shape[n->in[i]].ndim == r) return 1;
        return 0;
    case AQ_OP_GEMM: return x->in_batched && !x->a->trans_a;
    case AQ_OP_MATMUL: return x->in_batched && p->shape[n->in[0]].ndim == r;
    case AQ_OP_CONCAT: return x->in_batched && x->a->axis != 0;
    case AQ_OP_FLATTEN: return x->in_batched && x->a->axis != 0;
    default: return x->in_batched; /* per-image ops */
    }
}

/* Infer node k's output shape (and resolve its attributes). */
static aq_status infer_node(aq_cnn_plan *p, int k, aq_error *err)
{
    const aq_cnn_graph *g = p->g;
    const aq_cnn_node *n = &g->nodes[k];
    aq_cnn_infer_fn inf;
    aq_cnn_run_fn run;
    aq_cnn_op_fns(n->op, &inf, &run);
    if (!inf)
        return aq_cnn_node_fail(err, n, AQ_ERR_FORMAT, "operator not supported by the engine");
    if (n->out < 0 || n->out >= g->n_values || g->values[n->out].is_const)
        return aq_cnn_node_fail(err, n, AQ_ERR_FORMAT, "bad output value id %d", n->out);
    aq_cnn_infer_args x = {.g = g,
                           .node = n,
                           .a = &p->attrs[k],
                           .out = &p->shape[n->out],
                           .scratch = &p->scratch,
                           .batch = p->batch};
    for (int i = 0; i < n->n_in; i++) {
        int v = n->in[i];
        if (v < -1 || v >= g->n_values)
            return aq_cnn_node_fail(err, n, AQ_ERR_FORMAT, "input %d has a bad value id %d", i, v);
        if (v < 0) continue;
        if (!p->cdata[v] && p->shape[v].ndim < 0)
            return aq_cnn_node_fail(err, n, AQ_ERR_FORMAT,
                                    "input %d ('%s') is not computed before this node", i,
                                    g->values[v].name ? g->values[v].name : "?");
        x.in[i] = &p->shape[v];
    }
    x.in_batched = n->n_in > 0 && n->in[0] >= 0 && p->batched[n->in[0]];
    AQ_TRY(inf(&x, err));
    if (aq_cnn_shape_numel(x.out) < 1) {
        char b[160];
        return aq_cnn_node_fail(err, n, AQ_ERR_SHAPE, "output shape %s is empty or too large",
                                aq_cnn_shape_str(x.out, b, sizeof b));
    }
    p->batched[n->out] = (unsigned char)out_batched(p, n, &x);
    return AQ_OK;
}

/* A node whose inputs are all constants runs once, here. */
static aq_status fold_node(aq_cnn_plan *p, int k, aq_error *err)
{
    const aq_cnn_node *n = &p->g->nodes[k];
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] >= 0 && !p->cdata[n->in[i]]) return AQ_OK;
    size_t numel = aq_cnn_numel(&p->shape[n->out]);
    float *out = malloc(numel * sizeof(float)), *scratch = malloc((p->scratch + 1) * sizeof(float));
    if (!out || !scratch) {
        free(out);
        free(scratch);
        return aq_fail_nomem(err, "folded constant", numel * sizeof(float));
    }
    const float *in[AQ_CNN_MAX_IN] = {0};
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] >= 0) in[i] = p->cdata[n->in[i]];
    aq_cnn_exec(p, k, in, out, scratch);
    free(scratch);
    p->folded[n->out] = out;
    p->cdata[n->out] = out;
    p->batched[n->out] = 0;
    p->skip[k] = 1;
    return AQ_OK;
}

static aq_status plan_alloc(aq_cnn_plan *p, const aq_cnn_graph *g, aq_error *err)
{
    size_t nv = (size_t)g->n_values, nn = (size_t)g->n_nodes;
    p->shape = calloc(nv, sizeof *p->shape);
    p->batched = calloc(nv, 1);
    p->cdata = calloc(nv, sizeof *p->cdata);
    p->folded = calloc(nv, sizeof *p->folded);
    p->last_use = malloc(nv * sizeof *p->last_use);
    p->attrs = malloc((nn + 1) * sizeof *p->attrs);
    p->skip = calloc(nn + 1, 1);
    if (!p->shape || !p->batched || !p->cdata || !p->folded || !p->last_use || !p->attrs ||
        !p->skip)
        return aq_fail_nomem(err, "CNN plan", nv * 64);
    for (size_t k = 0; k < nn; k++)
        p->attrs[k] = g->nodes[k].a;
    for (size_t v = 0; v < nv; v++) {
        const aq_cnn_value *val = &g->values[v];
        p->last_use[v] = -1;
        p->shape[v].ndim = -1; /* not computed yet */
        if (!val->is_const) continue;
        if (val->ndim < 0 || val->ndim > AQ_MAX_DIMS || !val->data)
            return aq_fail(err, AQ_ERR_FORMAT, "constant '%s' has rank %d%s",
                           val->name ? val->name : "?", val->ndim, val->data ? "" : " and no data");
        p->shape[v].ndim = val->ndim;
        memcpy(p->shape[v].d, val->shape, sizeof val->shape);
        p->cdata[v] = val->data;
    }
    return AQ_OK;
}

aq_status aq_cnn_plan_init(const aq_cnn_graph *g, int batch, aq_cnn_plan *p, aq_error *err)
{
    memset(p, 0, sizeof *p);
    p->g = g;
    p->batch = batch;
    if (batch < 1) return aq_fail(err, AQ_ERR_ARG, "CNN plan: batch size %d must be >= 1", batch);
    if (g->input < 0 || g->input >= g->n_values || g->output < 0 || g->output >= g->n_values ||
        g->values[g->input].is_const)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: graph input/output value ids %d/%d are invalid",
                       g->path ? g->path : "graph", g->input, g->output);
    aq_status st;
    AQ_TRY_GOTO(st, plan_alloc(p, g, err), fail);
    AQ_TRY_GOTO(st, input_shape(g, batch, &p->shape[g->input], err), fail);
    p->batched[g->input] = 1;
    for (int k = 0; k < g->n_nodes; k++) {
        AQ_TRY_GOTO(st, infer_node(p, k, err), fail);
        AQ_TRY_GOTO(st, fold_node(p, k, err), fail);
    }
    if (!p->cdata[g->output] && p->shape[g->output].ndim < 0) {
        st = aq_fail(err, AQ_ERR_FORMAT, "%s: no node computes the graph output '%s'",
                     g->path ? g->path : "graph", g->values[g->output].name);
        goto fail;
    }
    for (int k = 0; k < g->n_nodes; k++)
        for (int i = 0; i < g->nodes[k].n_in && !p->skip[k]; i++)
            if (g->nodes[k].in[i] >= 0) p->last_use[g->nodes[k].in[i]] = k;
    return AQ_OK;
fail:
    aq_cnn_plan_free(p);
    return st;
}
