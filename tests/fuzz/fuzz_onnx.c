/* fuzz_onnx.c — libFuzzer harness for the ONNX reader (io/onnx_*.c): the
 * input is offered to aq_onnx_read_mem. It must be refused with a message or
 * give a graph that keeps io/cnn_graph.h's promises: value ids in range,
 * nodes topologically sorted, the input a non-constant value no node
 * produces, the output produced by a node, constants' data readable to their
 * last element (ASan checks the size), attributes within their ONNX ranges.
 * A violated invariant aborts (a finding). */
#include <string.h>

#include "fuzz_common.h"
#include "../../io/cnn_graph.h"

static volatile float fuzz_sink;

static void check_graph(const aq_cnn_graph *g)
{
    REQUIRE(g->opset >= 1 && g->opset <= 21 && g->n_nodes > 0);
    REQUIRE(g->input >= 0 && g->input < g->n_values && !g->values[g->input].is_const);
    REQUIRE(g->output >= 0 && g->output < g->n_values && g->output != g->input);
    char *ready = calloc((size_t)g->n_values, 1);
    REQUIRE(ready);
    for (int v = 0; v < g->n_values; v++) {
        const aq_cnn_value *x = &g->values[v];
        REQUIRE(x->name && (aq_cnn_graph_find(g, x->name) == v));
        ready[v] = x->is_const || v == g->input;
        if (!x->is_const) continue;
        REQUIRE(x->ndim >= 0 && x->ndim <= AQ_MAX_DIMS && x->data);
        int64_t n = 1;
        for (int d = 0; d < x->ndim; d++) {
            REQUIRE(x->shape[d] >= 0);
            n *= x->shape[d];
        }
        if (n) fuzz_sink = x->data[0] + x->data[n - 1]; /* ASan: the data really holds n floats */
    }
    int produced_output = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const aq_cnn_node *n = &g->nodes[i];
        REQUIRE(n->name && (unsigned)n->op < AQ_OP_COUNT && strcmp(aq_cnn_op_name(n->op), "?"));
        REQUIRE(n->n_in >= 1 && n->n_in <= AQ_CNN_MAX_IN && n->in[0] >= 0);
        for (int k = 0; k < n->n_in; k++)
            REQUIRE(n->in[k] < g->n_values && (n->in[k] < 0 || ready[n->in[k]]));
        REQUIRE(n->out >= 0 && n->out < g->n_values && !ready[n->out] &&
                !g->values[n->out].is_const);
        ready[n->out] = 1;
        produced_output |= n->out == g->output;
        REQUIRE(n->a.group >= 1 && n->a.strides[0] >= 1 && n->a.strides[1] >= 1);
        REQUIRE(n->a.dilations[0] >= 1 && n->a.dilations[1] >= 1 && n->a.shape_ndim <= AQ_MAX_DIMS);
        REQUIRE(n->a.pads[0] >= 0 && n->a.pads[1] >= 0 && n->a.pads[2] >= 0 && n->a.pads[3] >= 0);
    }
    REQUIRE(produced_output);
    free(ready);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    aq_cnn_graph g;
    aq_error err = {0};
    if (aq_onnx_read_mem(data, size, "fuzz", &g, &err) != AQ_OK) {
        REQUIRE(err.code != AQ_OK && err.msg[0] != '\0' && g.values == NULL && g.nodes == NULL);
        return 0;
    }
    check_graph(&g);
    aq_cnn_graph_free(&g);
    return 0;
}
