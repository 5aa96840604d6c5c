/* onnx_graph.c — the graph part of the ONNX reader: the graph input, the
 * nodes (op types mapped, Constant nodes turned into constants), node inputs
 * resolved by name with the opset-dependent inputs moved into attributes
 * (Reshape's shape, Clip's min/max, Dropout's ratio/training_mode), the
 * topological sort and the graph output. Errors name the node. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_internal.h"

static const char *nz(const char *s)
{
    return s ? s : "";
}

static int op_of(const char *t, aq_cnn_op *op)
{
    if (!strcmp(t, "Dropout")) {
        *op = AQ_OP_IDENTITY;
        return 1;
    }
    for (int i = 0; i < AQ_OP_COUNT; i++)
        if (!strcmp(t, aq_cnn_op_name((aq_cnn_op)i))) {
            *op = (aq_cnn_op)i;
            return 1;
        }
    return 0;
}

aq_status aq_onnx_graph_input(aq_onnx_rd *r, const Onnx__GraphProto *gp, aq_error *err)
{
    aq_cnn_graph *g = r->g;
    const Onnx__ValueInfoProto *in = NULL;
    for (size_t i = 0; i < gp->n_input; i++) {
        const char *nm = nz(gp->input[i]->name);
        if (aq_cnn_graph_find(g, nm) >= 0 || aq_onnx_iconst_find(r, nm))
            continue; /* an initializer */
        if (in)
            return aq_fail(err, AQ_ERR_FORMAT,
                           "%s: the graph has several inputs ('%s', '%s'); one is supported",
                           r->what, nz(in->name), nm);
        in = gp->input[i];
    }
    if (!in || !nz(in->name)[0])
        return aq_fail(err, AQ_ERR_FORMAT, "%s: the graph has no (named) input", r->what);
    AQ_TRY(aq_onnx_add_value(r, in->name, &g->input, err));
    const Onnx__TypeProto *tp = in->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE)
        return AQ_OK; /* shape unknown */
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (tt->has_elem_type && tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: graph input '%s' has element type %d; float32 is supported", r->what,
                       in->name, tt->elem_type);
    if (!tt->shape) return AQ_OK;
    if (tt->shape->n_dim > AQ_MAX_DIMS)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: graph input '%s' has %zu dimensions", r->what,
                       in->name, tt->shape->n_dim);
    g->in_ndim = (int)tt->shape->n_dim;
    for (int d = 0; d < g->in_ndim; d++) {
        const Onnx__TensorShapeProto__Dimension *dm = tt->shape->dim[d];
        int known = dm->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
                    dm->dim_value > 0;
        g->in_shape[d] = known ? dm->dim_value : -1;
    }
    return AQ_OK;
}

/* A Constant node: its value attribute (tensor, or value_float(s)/value_int(s)) becomes a constant.
 */
static aq_status constant_node(aq_onnx_rd *r, const Onnx__NodeProto *np, const char *label,
                               aq_error *err)
{
    if (np->n_output != 1 || np->n_attribute != 1)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: node '%s' (Constant): needs one output and one value attribute",
                       r->what, label);
    const Onnx__AttributeProto *a = np->attribute[0];
    const char *an = nz(a->name), *out = nz(np->output[0]);
    if (!strcmp(an, "value") && a->t) return aq_onnx_add_tensor(r, a->t, out, err);
    Onnx__TensorProto t = ONNX__TENSOR_PROTO__INIT;
    int fl = !strcmp(an, "value_float"), fls = !strcmp(an, "value_floats");
    int in = !strcmp(an, "value_int"), ins = !strcmp(an, "value_ints");
    if (!fl && !fls && !in && !ins)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: node '%s' (Constant): unsupported attribute '%s'",
                       r->what, label, an);
    t.has_data_type = 1;
    t.data_type =
        fl || fls ? ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT : ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    t.n_float_data = fls ? a->n_floats : 1;
    t.float_data = fls ? a->floats : (float *)&a->f;
    t.n_int64_data = ins ? a->n_ints : 1;
    t.int64_data = ins ? a->ints : (int64_t *)&a->i;
    int64_t n1 = (int64_t)(fl || fls ? t.n_float_data : t.n_int64_data);
    t.n_dims = fl || in ? 0 : 1; /* value_float / value_int are scalars */
    t.dims = &n1;
    return aq_onnx_add_tensor(r, &t, out, err);
}

static aq_status push_node(aq_onnx_rd *r, const Onnx__NodeProto *np, aq_cnn_node **out,
                           aq_error *err)
{
    aq_cnn_graph *g = r->g;
    if (g->n_nodes == r->cap_nodes) {
        int cap = r->cap_nodes ? 2 * r->cap_nodes : 64;
        aq_cnn_node *nn = realloc(g->nodes, (size_t)cap * sizeof *nn);
        if (!nn) return aq_fail_nomem(err, "ONNX nodes", (size_t)cap * sizeof *nn);
        g->nodes = nn;
        const Onnx__NodeProto **ns = realloc(r->src, (size_t)cap * sizeof *ns);
        if (!ns) return aq_fail_nomem(err, "ONNX nodes", (size_t)cap * sizeof *ns);
        r->src = ns;
        r->cap_nodes = cap;
    }
    *out = &g->nodes[g->n_nodes];
    memset(*out, 0, sizeof **out);
    r->src[g->n_nodes++] = np;
    return AQ_OK;
}

aq_status aq_onnx_graph_nodes(aq_onnx_rd *r, const Onnx__GraphProto *gp, aq_error *err)
{
    char buf[96];
    for (size_t i = 0; i < gp->n_node; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        const char *type = nz(np->op_type), *dom = nz(np->domain);
        const char *label = aq_onnx_node_label(np, (int)i, buf, sizeof buf);
        aq_cnn_op op;
        if (dom[0] && strcmp(dom, "ai.onnx") != 0)
            return aq_fail(err, AQ_ERR_FORMAT,
                           "%s: node '%s': unsupported operator '%s' of domain '%s'", r->what,
                           label, type, dom);
        if (!strcmp(type, "Constant")) {
            AQ_TRY(constant_node(r, np, label, err));
            continue;
        }
        if (!op_of(type, &op))
            return aq_fail(err, AQ_ERR_FORMAT, "%s: node '%s': unsupported operator '%s'", r->what,
                           label, type);
        if (np->n_output < 1 || !nz(np->output[0])[0])
            return aq_fail(err, AQ_ERR_FORMAT, "%s: node '%s' (%s) has no output", r->what, label,
                           type);
        if (np->n_input > AQ_CNN_MAX_IN)
            return aq_fail(err, AQ_ERR_FORMAT, "%s: node '%s' (%s) has %zu inputs (at most %d)",
                           r->what, label, type, np->n_input, AQ_CNN_MAX_IN);
        aq_cnn_node *n = NULL;
        AQ_TRY(push_node(r, np, &n, err));
        n->op = op;
        n->out = -1;
        aq_cnn_attrs_default(op, r->opset, &n->a);
        if (!(n->name = strdup(label))) return aq_fail_nomem(err, "a node name", strlen(label) + 1);
        AQ_TRY(aq_onnx_node_attrs(r, np, label, n, err));
        AQ_TRY(aq_onnx_add_value(r, np->output[0], &n->out, err));
    }
    return AQ_OK;
}

/* Inputs each op takes (ONNX counts, before the constant ones move into attributes). */
static void arity(aq_cnn_op op, const char *type, int opset, int *lo, int *hi)
{
    *lo = *hi = 1;
    switch (op) {
    case AQ_OP_CONV: *lo = 2, *hi = 3; break;
    case AQ_OP_GEMM: *lo = 2, *hi = 3; break;
    case AQ_OP_BATCHNORM: *lo = *hi = 5; break;
    case AQ_OP_ADD:
    case AQ_OP_MUL:
    case AQ_OP_MATMUL: *lo = *hi = 2; break;
    case AQ_OP_CLIP: *hi = opset >= 11 ? 3 : 1; break;
    case AQ_OP_RESHAPE: *lo = *hi = opset >= 5 ? 2 : 1; break;
    case AQ_OP_CONCAT: *hi = AQ_CNN_MAX_IN; break;
    case AQ_OP_IDENTITY: *hi = strcmp(type, "Dropout") ? 1 : 3; break;
    default: break;
    }
}

static aq_status node_fail(const aq_onnx_rd *r, int i, const char *fmt, const char *what,
                           aq_error *err)
{
    char m[512];
    snprintf(m, sizeof m, fmt, what);
    return aq_fail(err, AQ_ERR_FORMAT, "%s: node '%s' (%s): %s", r->what, r->g->nodes[i].name,
                   nz(r->src[i]->op_type), m);
}

/* A name no value has: another node's second output (refused), or nothing. */
static aq_status dangling(const aq_onnx_rd *r, int i, const char *name, aq_error *err)
{
    for (int j = 0; j < r->g->n_nodes; j++)
        for (size_t k = 1; k < r->src[j]->n_output; k++)
            if (!strcmp(nz(r->src[j]->output[k]), name))
                return node_fail(
                    r, i, "uses '%s', a secondary output (mask/indices/statistics), not supported",
                    name, err);
    return node_fail(r, i, "input '%s' is produced by no node, constant or graph input", name, err);
}

/* The inputs that opsets turned from attributes into constant inputs, back into attributes. */
static aq_status const_inputs(aq_onnx_rd *r, int i, aq_error *err)
{
    aq_cnn_node *n = &r->g->nodes[i];
    const Onnx__NodeProto *np = r->src[i];
    if (n->op == AQ_OP_RESHAPE && np->n_input == 2) {
        const aq_onnx_iconst *c = aq_onnx_iconst_find(r, nz(np->input[1]));
        if (!c)
            return node_fail(r, i, "the shape input '%s' is not an integer constant",
                             nz(np->input[1]), err);
        if (c->n > AQ_MAX_DIMS)
            return node_fail(r, i, "the shape '%s' has too many entries", c->name, err);
        n->a.shape_ndim = (int)c->n;
        for (int d = 0; d < n->a.shape_ndim; d++) {
            n->a.shape[d] = c->v[d];
            for (size_t k = 0; k < np->n_attribute; k++)
                if (!strcmp(nz(np->attribute[k]->name), "allowzero") && np->attribute[k]->i &&
                    c->v[d] == 0)
                    return node_fail(r, i, "%s: allowzero=1 with a 0 in the shape is not supported",
                                     c->name, err);
        }
    }
    for (int k = 1; n->op == AQ_OP_CLIP && k < (int)np->n_input; k++) {
        if (n->in[k] < 0) continue;
        const aq_cnn_value *v = &r->g->values[n->in[k]];
        int64_t numel = 1;
        for (int d = 0; d < v->ndim; d++)
            numel *= v->shape[d];
        if (!v->is_const || numel != 1)
            return node_fail(r, i, "min/max '%s' is not a constant scalar", v->name, err);
        *(k == 1 ? &n->a.clip_min : &n->a.clip_max) = v->data[0];
    }
    if (n->op == AQ_OP_IDENTITY && np->n_input == 3 && nz(np->input[2])[0]) {
        const aq_onnx_iconst *c = aq_onnx_iconst_find(r, np->input[2]);
        if (!c || c->n != 1 || c->v[0] != 0)
            return node_fail(r, i, "training_mode '%s' is not a constant false", np->input[2], err);
    }
    if (n->op == AQ_OP_RESHAPE || n->op == AQ_OP_CLIP || n->op == AQ_OP_IDENTITY) n->n_in = 1;
    return AQ_OK;
}

static aq_status resolve_inputs(aq_onnx_rd *r, int i, aq_error *err)
{
    aq_cnn_node *n = &r->g->nodes[i];
    const Onnx__NodeProto *np = r->src[i];
    int lo, hi;
    arity(n->op, nz(np->op_type), r->opset, &lo, &hi);
    if ((int)np->n_input < lo || (int)np->n_input > hi) {
        char m[64];
        snprintf(m, sizeof m, "%zu inputs, expected %d..%d", np->n_input, lo, hi);
        return node_fail(r, i, "has %s", m, err);
    }
    n->n_in = (int)np->n_input;
    for (int k = 0; k < n->n_in; k++) {
        const char *nm = nz(np->input[k]);
        n->in[k] = nm[0] ? aq_cnn_graph_find(r->g, nm) : -1;
        if (n->in[k] >= 0) continue;
        int is_int = aq_onnx_iconst_find(r, nm) != NULL;
        int optional = k > 0 && (n->op == AQ_OP_CONV || n->op == AQ_OP_GEMM ||
                                 n->op == AQ_OP_CLIP || n->op == AQ_OP_IDENTITY);
        int int_ok = k > 0 && (n->op == AQ_OP_RESHAPE || n->op == AQ_OP_IDENTITY);
        if (!nm[0] && !optional)
            return node_fail(r, i, "required input %s is empty", k ? "(not the first)" : "(first)",
                             err);
        if (is_int && !int_ok)
            return node_fail(r, i, "input '%s' is an integer tensor (not supported here)", nm, err);
        if (nm[0] && !is_int) return dangling(r, i, nm, err);
    }
    return const_inputs(r, i, err);
}

/* Kahn's algorithm, taking the first ready node in file order each time. */
static aq_status topo_sort(aq_onnx_rd *r, aq_error *err)
{
    aq_cnn_graph *g = r->g;
    int nn = g->n_nodes;
    char *ready = calloc((size_t)g->n_values + 1, 1), *done = calloc((size_t)nn + 1, 1);
    aq_cnn_node *sorted = malloc(((size_t)nn + 1) * sizeof *sorted);
    const Onnx__NodeProto **ssrc = malloc(((size_t)nn + 1) * sizeof *ssrc);
    aq_status st = AQ_OK;
    if (!ready || !done || !sorted || !ssrc) {
        st = aq_fail_nomem(err, "the node sort", (size_t)nn * sizeof *sorted);
        goto out;
    }
    for (int v = 0; v < g->n_values; v++)
        ready[v] = 1;
    for (int i = 0; i < nn; i++)
        ready[g->nodes[i].out] = 0;
    for (int m = 0; m < nn; m++) {
        int pick = -1;
        for (int i = 0; i < nn && pick < 0; i++) {
            if (done[i]) continue;
            int ok = 1;
            for (int k = 0; k < g->nodes[i].n_in && ok; k++)
                ok = g->nodes[i].in[k] < 0 || ready[g->nodes[i].in[k]];
            if (ok) pick = i;
        }
        if (pick < 0) {
            for (int i = 0; i < nn && pick < 0; i++)
                pick = done[i] ? -1 : i;
            st = node_fail(r, pick, "is part of a cycle%s", "", err);
            goto out;
        }
        done[pick] = 1;
        ready[g->nodes[pick].out] = 1;
        sorted[m] = g->nodes[pick];
        ssrc[m] = r->src[pick];
    }
    memcpy(g->nodes, sorted, (size_t)nn * sizeof *sorted);
    memcpy(r->src, ssrc, (size_t)nn * sizeof *ssrc);
out:
    free(ready);
    free(done);
    free(sorted);
    free(ssrc);
    return st;
}

aq_status aq_onnx_graph_finish(aq_onnx_rd *r, const Onnx__GraphProto *gp, aq_error *err)
{
    aq_cnn_graph *g = r->g;
    for (int i = 0; i < g->n_nodes; i++)
        AQ_TRY(resolve_inputs(r, i, err));
    if (gp->n_output != 1)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: the graph has %zu outputs; one is supported",
                       r->what, gp->n_output);
    const char *on = nz(gp->output[0]->name);
    g->output = aq_cnn_graph_find(g, on);
    if (g->output < 0 || g->output == g->input || g->values[g->output].is_const)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: the graph output '%s' is produced by no node",
                       r->what, on);
    if (g->n_nodes == 0) return aq_fail(err, AQ_ERR_FORMAT, "%s: the graph has no nodes", r->what);
    AQ_TRY(topo_sort(r, err));
    AQ_TRY(aq_onnx_fold_constants(r, err));
    return aq_onnx_rank_pass(r, err);
}
