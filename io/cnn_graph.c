/* cnn_graph.c — the small helpers of the CNN graph IR (io/cnn_graph.h):
 * op names, ONNX attribute defaults, lookup and freeing. The ONNX reader that
 * fills the graph is io/onnx_read.c. */
#include "cnn_graph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const aq_op_names[AQ_OP_COUNT] = {
    [AQ_OP_CONV] = "Conv",
    [AQ_OP_BATCHNORM] = "BatchNormalization",
    [AQ_OP_RELU] = "Relu",
    [AQ_OP_CLIP] = "Clip",
    [AQ_OP_HARDSIGMOID] = "HardSigmoid",
    [AQ_OP_HARDSWISH] = "HardSwish",
    [AQ_OP_SIGMOID] = "Sigmoid",
    [AQ_OP_MUL] = "Mul",
    [AQ_OP_ADD] = "Add",
    [AQ_OP_MAXPOOL] = "MaxPool",
    [AQ_OP_AVGPOOL] = "AveragePool",
    [AQ_OP_GLOBALAVGPOOL] = "GlobalAveragePool",
    [AQ_OP_FLATTEN] = "Flatten",
    [AQ_OP_RESHAPE] = "Reshape",
    [AQ_OP_GEMM] = "Gemm",
    [AQ_OP_MATMUL] = "MatMul",
    [AQ_OP_SOFTMAX] = "Softmax",
    [AQ_OP_CONCAT] = "Concat",
    [AQ_OP_IDENTITY] = "Identity",
};

const char *aq_cnn_op_name(aq_cnn_op op)
{
    return (unsigned)op < AQ_OP_COUNT ? aq_op_names[op] : "?";
}

void aq_cnn_attrs_default(aq_cnn_op op, int opset, aq_cnn_attrs *a)
{
    memset(a, 0, sizeof *a);
    a->strides[0] = a->strides[1] = 1;
    a->dilations[0] = a->dilations[1] = 1;
    a->group = 1;
    a->auto_pad = AQ_PAD_NOTSET;
    a->epsilon = 1e-5f;
    a->clip_min = -INFINITY;
    a->clip_max = INFINITY;
    if (op == AQ_OP_HARDSIGMOID) {
        a->alpha = 0.2f;
        a->beta = 0.5f;
    } else {
        a->alpha = a->beta = 1.0f; /* Gemm's; unused by the other ops */
    }
    /* Softmax's default axis changed from 1 to -1 at opset 13; Flatten's is 1,
     * Concat's (required from opset 4) was 1 before. */
    a->axis = (op == AQ_OP_SOFTMAX && opset >= 13) ? -1 : 1;
}

int aq_cnn_graph_find(const aq_cnn_graph *g, const char *name)
{
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].name && strcmp(g->values[i].name, name) == 0) return i;
    return -1;
}

void aq_cnn_graph_free(aq_cnn_graph *g)
{
    if (!g) return;
    for (int i = 0; i < g->n_values; i++) {
        free(g->values[i].name);
        free(g->values[i].data);
    }
    for (int i = 0; i < g->n_nodes; i++)
        free(g->nodes[i].name);
    free(g->values);
    free(g->nodes);
    free(g->path);
    memset(g, 0, sizeof *g);
}
