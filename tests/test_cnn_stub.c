/* TEMPORARY until io/cnn_graph.c (the ONNX reader's branch) is merged. */
#include "../io/cnn_graph.h"
const char *aq_cnn_op_name(aq_cnn_op op)
{
    static const char *n[] = {"Conv", "BatchNormalization", "Relu", "Clip", "HardSigmoid", "HardSwish",
                              "Sigmoid", "Mul", "Add", "MaxPool", "AveragePool", "GlobalAveragePool",
                              "Flatten", "Reshape", "Gemm", "MatMul", "Softmax", "Concat", "Identity"};
    return op < AQ_OP_COUNT ? n[op] : "?";
}
