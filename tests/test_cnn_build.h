/* test_cnn_build.h — a tests-only builder of aq_cnn_graph values (the IR of
 * io/cnn_graph.h) from names, so the engine's tests need no ONNX file. */
#ifndef AQ_TEST_CNN_BUILD_H
#define AQ_TEST_CNN_BUILD_H

#include "../io/cnn_graph.h"

/* An empty graph of the given opset; free with aq_cnn_graph_free. */
void tg_init(aq_cnn_graph *g, int opset);
/* The id of the non-constant value `name`, added if new. */
int tg_value(aq_cnn_graph *g, const char *name);
/* A constant (shape and data copied). */
int tg_const(aq_cnn_graph *g, const char *name, int ndim, const int64_t *shape, const float *data);
/* The graph input (a new value) with its declared shape. */
int tg_input(aq_cnn_graph *g, const char *name, int ndim, const int64_t *shape);
/* A node with ONNX's default attributes; ins[i] NULL = omitted. Returns it
 * (valid until the next tg_node). */
aq_cnn_node *tg_node(aq_cnn_graph *g, aq_cnn_op op, const char *name, int n_in,
                     const char *const *ins, const char *out);
/* The op whose ONNX name is s, or -1. */
int tg_op(const char *s);

#endif
