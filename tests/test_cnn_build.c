/* test_cnn_build.c — the tests-only graph builder (test_cnn_build.h). Nodes
 * get io/cnn_graph.c's ONNX attribute defaults; the reference side
 * (tests/scripts/cnn_ref.py) states every attribute it uses. */
#include <stdlib.h>
#include <string.h>

#include "test_cnn_build.h"

void tg_init(aq_cnn_graph *g, int opset)
{
    memset(g, 0, sizeof *g);
    g->opset = opset;
    g->input = g->output = -1;
    g->path = strdup("test graph");
}

static int add_value(aq_cnn_graph *g, const char *name)
{
    g->values = realloc(g->values, (size_t)(g->n_values + 1) * sizeof *g->values);
    aq_cnn_value *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->name = strdup(name);
    return g->n_values++;
}

int tg_value(aq_cnn_graph *g, const char *name)
{
    for (int v = 0; v < g->n_values; v++)
        if (!strcmp(g->values[v].name, name)) return v;
    return add_value(g, name);
}

int tg_const(aq_cnn_graph *g, const char *name, int ndim, const int64_t *shape, const float *data)
{
    int id = add_value(g, name);
    aq_cnn_value *v = &g->values[id];
    size_t n = 1;
    v->is_const = 1;
    v->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)(v->shape[i] = shape[i]);
    v->data = malloc(n * sizeof(float) + 1);
    memcpy(v->data, data, n * sizeof(float));
    return id;
}

int tg_input(aq_cnn_graph *g, const char *name, int ndim, const int64_t *shape)
{
    g->input = add_value(g, name);
    g->in_ndim = ndim;
    memcpy(g->in_shape, shape, (size_t)ndim * sizeof *shape);
    return g->input;
}

aq_cnn_node *tg_node(aq_cnn_graph *g, aq_cnn_op op, const char *name, int n_in,
                     const char *const *ins, const char *out)
{
    g->nodes = realloc(g->nodes, (size_t)(g->n_nodes + 1) * sizeof *g->nodes);
    aq_cnn_node *n = &g->nodes[g->n_nodes++];
    memset(n, 0, sizeof *n);
    n->name = strdup(name);
    n->op = op;
    n->n_in = n_in;
    for (int i = 0; i < n_in; i++)
        n->in[i] = ins[i] ? tg_value(g, ins[i]) : -1;
    n->out = tg_value(g, out);
    aq_cnn_attrs_default(op, g->opset, &n->a);
    return n;
}

int tg_op(const char *s)
{
    for (int op = 0; op < AQ_OP_COUNT; op++)
        if (!strcmp(aq_cnn_op_name((aq_cnn_op)op), s)) return op;
    return -1;
}
