/* cnn_graph.h — the in-memory graph of a CNN, as the ONNX reader produces it
 * and the CNN engine (src/cnn/) runs it.
 *
 * The reader does the ONNX-version work once, so the engine sees one meaning
 * per operator whatever the model's opset (1..21):
 *  - Constant nodes and initializers both become constant values (float32
 *    data owned by the graph; integer initializers used as shapes/axes are
 *    read into attributes, never into the engine's data path);
 *  - opset-1..6 Add/Mul with broadcast=1 and axis=k: the constant operand is
 *    reshaped so that plain NumPy (right-aligned) broadcasting means the same
 *    thing (e.g. a [C] bias on axis 1 of NCHW becomes [C, 1, 1]);
 *  - Reshape's shape (an attribute before opset 5, a constant input after) is
 *    in attrs.shape (0 = copy that input dimension, -1 = infer, as ONNX);
 *  - Clip's min/max (attributes before opset 11, optional constant inputs
 *    after) are in attrs.clip_min/clip_max (+-INFINITY when absent);
 *  - Conv/pool auto_pad SAME_UPPER/SAME_LOWER/VALID is resolved into
 *    explicit pads only once the input's spatial size is known: the reader
 *    keeps attrs.auto_pad and the engine resolves it (ONNX's formula);
 *  - Gemm alpha/beta/transA/transB are kept; Softmax/Flatten/Concat axes are
 *    kept as given (negative axes resolved by the engine against the rank);
 *  - Identity and Dropout (inference: identity) become AQ_OP_IDENTITY.
 * Added by the reader (io/onnx_read.c, documented here; no field changed):
 *  - Reshape, Clip and Identity nodes have n_in = 1: their other ONNX inputs
 *    (shape, min/max, Dropout's ratio/training_mode) are in attrs or dropped;
 *  - Reshape/Identity/Dropout applied to a constant are folded: the output
 *    value is a constant and the node is gone (the MNIST model's MatMul
 *    weight is so a [256, 10] constant); the source constant stays a value;
 *  - Conv's attrs.kernel is filled from a constant weight when absent;
 *  - values may include constants no node uses (unused initializers).
 * Nodes are topologically sorted. Value 0..n_values-1; the graph input is the
 * one non-constant value that no node produces, the output the one value the
 * ONNX graph lists as output. Shapes of non-constant values are not stored:
 * the engine infers them for a given batch size. */
#ifndef AQ_CNN_GRAPH_H
#define AQ_CNN_GRAPH_H

#include <stdint.h>

#include "../common/status.h"
#include "tensor.h"

typedef enum aq_cnn_op {
    AQ_OP_CONV,
    AQ_OP_BATCHNORM,
    AQ_OP_RELU,
    AQ_OP_CLIP,
    AQ_OP_HARDSIGMOID,
    AQ_OP_HARDSWISH,
    AQ_OP_SIGMOID,
    AQ_OP_MUL,
    AQ_OP_ADD,
    AQ_OP_MAXPOOL,
    AQ_OP_AVGPOOL,
    AQ_OP_GLOBALAVGPOOL,
    AQ_OP_FLATTEN,
    AQ_OP_RESHAPE,
    AQ_OP_GEMM,
    AQ_OP_MATMUL,
    AQ_OP_SOFTMAX,
    AQ_OP_CONCAT,
    AQ_OP_IDENTITY,
    AQ_OP_COUNT
} aq_cnn_op;

/* ONNX's spelling of an op ("Conv", "BatchNormalization", ...). */
const char *aq_cnn_op_name(aq_cnn_op op);

typedef enum aq_cnn_autopad {
    AQ_PAD_NOTSET,
    AQ_PAD_SAME_UPPER,
    AQ_PAD_SAME_LOWER,
    AQ_PAD_VALID
} aq_cnn_autopad;

/* Attributes, all ops in one struct; the defaults are ONNX's, set by
 * aq_cnn_attrs_default. Spatial ops are 2-D only (the reader refuses others). */
typedef struct aq_cnn_attrs {
    /* Conv, MaxPool, AveragePool */
    int kernel[2];    /* kernel_shape (Conv: from the weight when absent) */
    int strides[2];   /* default 1 */
    int pads[4];      /* ONNX order: top, left, bottom, right; default 0 */
    int dilations[2]; /* default 1 */
    int group;        /* Conv; default 1 */
    aq_cnn_autopad auto_pad;
    int ceil_mode;         /* pools; default 0 */
    int count_include_pad; /* AveragePool; default 0 */
    /* BatchNormalization */
    float epsilon; /* default 1e-5 */
    /* Gemm (alpha, beta default 1), HardSigmoid (alpha 0.2, beta 0.5) */
    float alpha, beta;
    int trans_a, trans_b;
    /* Clip */
    float clip_min, clip_max;
    /* Flatten (default 1), Softmax (default: 1 before opset 13, -1 from 13),
     * Concat (required) */
    int axis;
    /* Reshape */
    int shape_ndim;
    int64_t shape[AQ_MAX_DIMS];
} aq_cnn_attrs;

void aq_cnn_attrs_default(aq_cnn_op op, int opset, aq_cnn_attrs *a);

typedef struct aq_cnn_value {
    char *name; /* ONNX value name, owned */
    int is_const;
    /* constants only: */
    int ndim;
    int64_t shape[AQ_MAX_DIMS];
    float *data; /* numel floats, owned */
} aq_cnn_value;

#define AQ_CNN_MAX_IN 8

typedef struct aq_cnn_node {
    char *name; /* ONNX node name, or "<op>_<index>" when the model has none; owned */
    aq_cnn_op op;
    int n_in;
    int in[AQ_CNN_MAX_IN]; /* value ids; -1 for an omitted optional input */
    int out;               /* value id of the (only used) output */
    aq_cnn_attrs a;
} aq_cnn_node;

typedef struct aq_cnn_graph {
    char *path; /* the file it came from (messages), owned */
    int opset;  /* the ai.onnx opset the model imports */
    int ir_version;
    int n_values;
    aq_cnn_value *values;
    int n_nodes;
    aq_cnn_node *nodes; /* topologically sorted */
    int input;          /* value id of the graph input */
    int output;         /* value id of the graph output */
    /* the declared input shape (dim_value, or -1 for a symbolic/absent dim) */
    int in_ndim;
    int64_t in_shape[AQ_MAX_DIMS];
} aq_cnn_graph;

/* Read an ONNX file (io/onnx_read.c). Errors name the file and, where it
 * applies, the node ("node 'Conv_3' (Conv): unsupported attribute ..."). */
aq_status aq_onnx_read(const char *path, aq_cnn_graph *g, aq_error *err);
/* The same from a buffer (fuzzing, tests); `what` names it in messages. */
aq_status aq_onnx_read_mem(const void *buf, size_t len, const char *what, aq_cnn_graph *g,
                           aq_error *err);
void aq_cnn_graph_free(aq_cnn_graph *g);

/* Value id by name, or -1. */
int aq_cnn_graph_find(const aq_cnn_graph *g, const char *name);

#endif
