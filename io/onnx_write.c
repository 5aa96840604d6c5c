/* onnx_write.c — the QDQ ONNX writer (io/onnx_write.h): builds protobuf-c's
 * generated ONNX messages from the graph and packs them (no hand-written
 * protobuf encoding). Quantized weights and activation pairs: io/onnx_qdq.c.
 * Every message lives in one arena freed after packing; tensor data points
 * into the graph (float constants) or arena buffers. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "onnx_write_internal.h"

void *aq_ow_alloc(aq_ow *c, size_t size)
{
    if (c->n_ptrs == c->cap_ptrs) {
        size_t cap = c->cap_ptrs ? 2 * c->cap_ptrs : 256;
        void **np = realloc(c->ptrs, cap * sizeof *np);
        if (!np) return NULL;
        c->ptrs = np;
        c->cap_ptrs = cap;
    }
    void *p = calloc(1, size ? size : 1);
    if (p) c->ptrs[c->n_ptrs++] = p;
    return p;
}

char *aq_ow_str(aq_ow *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n < 0 ? NULL : aq_ow_alloc(c, (size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Append p to a growable pointer array (*arr, *n), the array itself in the arena. */
static int push(aq_ow *c, void ***arr, size_t *n, void *p)
{
    if ((*n & (*n - 1)) == 0) { /* n is 0 or a power of two: grow */
        void **na = aq_ow_alloc(c, (*n ? 2 * *n : 1) * sizeof *na);
        if (!na) return 0;
        if (*n) memcpy(na, *arr, *n * sizeof *na);
        *arr = na;
    }
    (*arr)[(*n)++] = p;
    return 1;
}

Onnx__TensorProto *aq_ow_init(aq_ow *c, const char *name, int dtype, int ndim, const int64_t *shape,
                              const void *data, size_t bytes)
{
    Onnx__TensorProto *t = aq_ow_alloc(c, sizeof *t);
    int64_t *dims = aq_ow_alloc(c, (size_t)(ndim + 1) * sizeof *dims);
    char *nm = aq_ow_str(c, "%s", name);
    if (!t || !dims || !nm) return NULL;
    onnx__tensor_proto__init(t);
    if (ndim) memcpy(dims, shape, (size_t)ndim * sizeof *dims); /* shape is NULL for scalars */
    t->n_dims = (size_t)ndim;
    t->dims = dims;
    t->has_data_type = 1;
    t->data_type = dtype;
    t->name = nm;
    t->has_raw_data = 1;
    t->raw_data.len = bytes;
    t->raw_data.data = (uint8_t *)data; /* not freed by us: graph or arena memory */
    return push(c, (void ***)&c->graph.initializer, &c->graph.n_initializer, t) ? t : NULL;
}

Onnx__NodeProto *aq_ow_node(aq_ow *c, const char *op, const char *name, int n_in,
                            const char *const *in, const char *out)
{
    Onnx__NodeProto *n = aq_ow_alloc(c, sizeof *n);
    char **ins = aq_ow_alloc(c, (size_t)(n_in + 1) * sizeof *ins);
    char **outs = aq_ow_alloc(c, sizeof *outs);
    if (!n || !ins || !outs) return NULL;
    onnx__node_proto__init(n);
    for (int k = 0; k < n_in; k++)
        if (!(ins[k] = aq_ow_str(c, "%s", in[k]))) return NULL;
    if (!(outs[0] = aq_ow_str(c, "%s", out)) || !(n->name = aq_ow_str(c, "%s", name)) ||
        !(n->op_type = aq_ow_str(c, "%s", op)))
        return NULL;
    n->n_input = (size_t)n_in;
    n->input = ins;
    n->n_output = 1;
    n->output = outs;
    return push(c, (void ***)&c->graph.node, &c->graph.n_node, n) ? n : NULL;
}

static Onnx__AttributeProto *attr(aq_ow *c, Onnx__NodeProto *n, const char *name,
                                  Onnx__AttributeProto__AttributeType t)
{
    Onnx__AttributeProto *a = aq_ow_alloc(c, sizeof *a);
    if (!a) return NULL;
    onnx__attribute_proto__init(a);
    if (!(a->name = aq_ow_str(c, "%s", name))) return NULL;
    a->has_type = 1;
    a->type = t;
    return push(c, (void ***)&n->attribute, &n->n_attribute, a) ? a : NULL;
}

int aq_ow_attr_int(aq_ow *c, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a =
        n ? attr(c, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT) : NULL;
    if (a) a->has_i = 1, a->i = v;
    return a != NULL;
}

static int attr_float(aq_ow *c, Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a =
        n ? attr(c, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT) : NULL;
    if (a) a->has_f = 1, a->f = v;
    return a != NULL;
}

static int attr_ints(aq_ow *c, Onnx__NodeProto *n, const char *name, const int *v, int k)
{
    Onnx__AttributeProto *a =
        n ? attr(c, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS) : NULL;
    int64_t *iv = aq_ow_alloc(c, (size_t)k * sizeof *iv);
    if (!a || !iv) return 0;
    for (int i = 0; i < k; i++)
        iv[i] = v[i];
    a->n_ints = (size_t)k;
    a->ints = iv;
    return 1;
}

static int attr_str(aq_ow *c, Onnx__NodeProto *n, const char *name, const char *s)
{
    Onnx__AttributeProto *a =
        n ? attr(c, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING) : NULL;
    if (!a) return 0;
    a->has_s = 1;
    a->s.len = strlen(s);
    a->s.data = (uint8_t *)s; /* static string */
    return 1;
}

/* Conv and pool window attributes (pads only when auto_pad is NOTSET). */
static int window_attrs(aq_ow *c, Onnx__NodeProto *o, const aq_cnn_node *n)
{
    static const char *const pads[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
    const aq_cnn_attrs *a = &n->a;
    int ok =
        attr_ints(c, o, "kernel_shape", a->kernel, 2) && attr_ints(c, o, "strides", a->strides, 2);
    ok = ok && (a->auto_pad == AQ_PAD_NOTSET ? attr_ints(c, o, "pads", a->pads, 4)
                                             : attr_str(c, o, "auto_pad", pads[a->auto_pad]));
    /* AveragePool has dilations only from opset 19: written only when not 1 */
    if (ok && (n->op != AQ_OP_AVGPOOL || a->dilations[0] != 1 || a->dilations[1] != 1))
        ok = attr_ints(c, o, "dilations", a->dilations, 2);
    if (ok && n->op == AQ_OP_CONV) ok = aq_ow_attr_int(c, o, "group", a->group);
    if (ok && n->op != AQ_OP_CONV) ok = aq_ow_attr_int(c, o, "ceil_mode", a->ceil_mode);
    if (ok && n->op == AQ_OP_AVGPOOL)
        ok = aq_ow_attr_int(c, o, "count_include_pad", a->count_include_pad);
    return ok;
}

/* Reshape's shape and Clip's bounds as initializer inputs (opset >= 5 / 11). */
static int extra_inputs(aq_ow *c, const aq_cnn_node *n, const char **in, int *n_in)
{
    if (n->op == AQ_OP_RESHAPE) {
        int64_t len = n->a.shape_ndim;
        char *nm = aq_ow_str(c, "%s.shape", n->name);
        int64_t *v = aq_ow_alloc(c, (size_t)(len + 1) * 8);
        if (!nm || !v) return 0;
        memcpy(v, n->a.shape, (size_t)len * 8);
        in[(*n_in)++] = nm;
        return aq_ow_init(c, nm, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, &len, v,
                          (size_t)len * 8) != NULL;
    }
    if (n->op != AQ_OP_CLIP) return 1;
    const float *lim[2] = {&n->a.clip_min, &n->a.clip_max};
    for (int k = 0; k < 2; k++) {
        in[(*n_in)++] = "";
        if (isinf(*lim[k])) continue;
        char *nm = aq_ow_str(c, "%s.%s", n->name, k ? "max" : "min");
        if (!nm || !aq_ow_init(c, nm, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 0, NULL, lim[k], 4))
            return 0;
        in[*n_in - 1] = nm;
    }
    if (!in[*n_in - 1][0]) (*n_in)--; /* a trailing empty optional input is left out */
    return 1;
}

/* One graph node in its modern (opset-13+) spelling; in[0..n_in) are already
 * the (possibly dequantized) input names. */
static aq_status emit_node(aq_ow *c, const aq_cnn_node *n, const char **in, int n_in)
{
    const aq_cnn_attrs *a = &n->a;
    if (!extra_inputs(c, n, in, &n_in)) return aq_fail_nomem(c->err, "ONNX export", 0);
    Onnx__NodeProto *o =
        aq_ow_node(c, aq_cnn_op_name(n->op), n->name, n_in, in, c->g->values[n->out].name);
    int ok = o != NULL;
    switch (n->op) {
    case AQ_OP_CONV:
    case AQ_OP_MAXPOOL:
    case AQ_OP_AVGPOOL: ok = ok && window_attrs(c, o, n); break;
    case AQ_OP_BATCHNORM: ok = ok && attr_float(c, o, "epsilon", a->epsilon); break;
    case AQ_OP_HARDSIGMOID:
        ok = ok && attr_float(c, o, "alpha", a->alpha) && attr_float(c, o, "beta", a->beta);
        break;
    case AQ_OP_FLATTEN:
    case AQ_OP_SOFTMAX:
    case AQ_OP_CONCAT: ok = ok && aq_ow_attr_int(c, o, "axis", a->axis); break;
    case AQ_OP_GEMM:
        ok = ok && attr_float(c, o, "alpha", a->alpha) && attr_float(c, o, "beta", a->beta) &&
             aq_ow_attr_int(c, o, "transA", a->trans_a) &&
             aq_ow_attr_int(c, o, "transB", a->trans_b);
        break;
    default: break;
    }
    return ok ? AQ_OK : aq_fail_nomem(c->err, "ONNX export", 0);
}

/* The layer for node n, or NULL. */
static const aq_onnx_qlayer *layer_of(const aq_cnn_node *n, const aq_onnx_qlayer *layers, int nl)
{
    for (int i = 0; i < nl; i++)
        if (!strcmp(layers[i].node, n->name)) return &layers[i];
    return NULL;
}

static aq_status check_layers(const aq_cnn_graph *g, const aq_onnx_qlayer *layers, int nl,
                              const char *path, aq_error *err)
{
    for (int i = 0; i < nl; i++) {
        int found = 0;
        for (int k = 0; k < g->n_nodes; k++)
            found += !strcmp(g->nodes[k].name, layers[i].node);
        for (int j = 0; j < i; j++)
            if (!strcmp(layers[j].node, layers[i].node)) found = 2;
        if (found != 1)
            return aq_fail(err, AQ_ERR_ARG, "%s: quantized layer '%s' %s", path, layers[i].node,
                           found ? "is listed twice (or names several nodes)"
                                 : "is no node of the graph");
    }
    return AQ_OK;
}

/* Nodes (with their QDQ parts) in graph order; the float constants they use. */
static aq_status build_nodes(aq_ow *c, const aq_onnx_qlayer *layers, int nl)
{
    const aq_cnn_graph *g = c->g;
    char *used = aq_ow_alloc(c, (size_t)g->n_values);
    if (!used) return aq_fail_nomem(c->err, "ONNX export", (size_t)g->n_values);
    for (int i = 0; i < g->n_nodes; i++) {
        const aq_cnn_node *n = &g->nodes[i];
        const aq_onnx_qlayer *q = layer_of(n, layers, nl);
        const char *in[AQ_CNN_MAX_IN + 2];
        for (int k = 0; k < n->n_in; k++) {
            in[k] = n->in[k] >= 0 ? g->values[n->in[k]].name : "";
            if (n->in[k] >= 0 && (k != 1 || !q || !q->codes)) used[n->in[k]] = 1;
        }
        if (q && q->act_bits) AQ_TRY(aq_ow_act_qdq(c, n, q, &in[0]));
        if (q && q->codes) AQ_TRY(aq_ow_weight_qdq(c, n, q, &in[1]));
        AQ_TRY(emit_node(c, n, in, n->n_in));
    }
    for (int v = 0; v < g->n_values; v++) {
        const aq_cnn_value *x = &g->values[v];
        int64_t numel = 1;
        for (int d = 0; d < x->ndim; d++)
            numel *= x->shape[d];
        if (used[v] && x->is_const &&
            !aq_ow_init(c, x->name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, x->ndim, x->shape,
                        x->data, (size_t)numel * 4))
            return aq_fail_nomem(c->err, "ONNX export", 0);
    }
    return AQ_OK;
}

/* A float tensor ValueInfo; shape NULL: no shape (-1 dims: symbolic). */
static Onnx__ValueInfoProto *value_info(aq_ow *c, const char *name, int ndim, const int64_t *shape)
{
    Onnx__ValueInfoProto *vi = aq_ow_alloc(c, sizeof *vi);
    Onnx__TypeProto *tp = aq_ow_alloc(c, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = aq_ow_alloc(c, sizeof *tt);
    if (!vi || !tp || !tt) return NULL;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    vi->name = aq_ow_str(c, "%s", name);
    vi->type = tp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    if (shape) {
        Onnx__TensorShapeProto *sp = aq_ow_alloc(c, sizeof *sp);
        Onnx__TensorShapeProto__Dimension **dims =
            aq_ow_alloc(c, (size_t)(ndim + 1) * sizeof *dims);
        if (!sp || !dims) return NULL;
        onnx__tensor_shape_proto__init(sp);
        for (int d = 0; d < ndim; d++) {
            if (!(dims[d] = aq_ow_alloc(c, sizeof **dims))) return NULL;
            onnx__tensor_shape_proto__dimension__init(dims[d]);
            if (shape[d] >= 0) {
                dims[d]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
                dims[d]->dim_value = shape[d];
            } else {
                dims[d]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
                dims[d]->dim_param = aq_ow_str(c, d ? "d%d" : "N", d);
            }
        }
        sp->n_dim = (size_t)ndim;
        sp->dim = dims;
        tt->shape = sp;
    }
    return vi->name ? vi : NULL;
}

/* Pack the model and write it atomically. */
static aq_status write_model(aq_ow *c, int opset)
{
    Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
    Onnx__OperatorSetIdProto os = ONNX__OPERATOR_SET_ID_PROTO__INIT, *osp = &os;
    os.domain = "";
    os.has_version = 1;
    os.version = opset;
    m.has_ir_version = 1;
    m.ir_version = opset >= 21 ? 10 : 7; /* INT4 needs IR 10; opset 13..18 runs at IR 7 */
    if (c->g->opset > 13 && opset < 21) m.ir_version = c->g->opset >= 19 ? 9 : 8;
    m.n_opset_import = 1;
    m.opset_import = &osp;
    m.producer_name = "adaquant";
    m.graph = &c->graph;
    size_t len = onnx__model_proto__get_packed_size(&m);
    uint8_t *buf = malloc(len + 1);
    if (!buf) return aq_fail_nomem(c->err, c->path, len);
    onnx__model_proto__pack(&m, buf);
    aq_status st = aq_atomic_write_file(c->path, buf, len, c->err);
    free(buf);
    return st;
}

aq_status aq_onnx_write_qdq(const aq_cnn_graph *g, const aq_onnx_qlayer *layers, int n,
                            const char *path, aq_error *err)
{
    AQ_TRY(check_layers(g, layers, n, path, err));
    aq_ow c = {.g = g, .path = path, .err = err};
    onnx__graph_proto__init(&c.graph);
    c.graph.name = "adaquant_qdq";
    aq_status st = build_nodes(&c, layers, n);
    Onnx__ValueInfoProto *in = NULL, *out = NULL;
    if (st == AQ_OK) {
        in = value_info(&c, g->values[g->input].name, g->in_ndim, g->in_shape);
        out = value_info(&c, g->values[g->output].name, 0, NULL);
        if (!in || !out) st = aq_fail_nomem(err, "ONNX export", 0);
    }
    if (st == AQ_OK) {
        c.graph.n_input = c.graph.n_output = 1;
        c.graph.input = &in;
        c.graph.output = &out;
        st = write_model(&c, aq_ow_opset(g, layers, n));
    }
    for (size_t i = 0; i < c.n_ptrs; i++)
        free(c.ptrs[i]);
    free(c.ptrs);
    return st;
}
