/* onnx_internal.h — what the ONNX reader's files (io/onnx_read.c: model,
 * tensors, graph; io/onnx_attrs.c: per-operator attributes) share. io-internal:
 * it includes protobuf-c's generated onnx.pb-c.h (build dir), so nothing
 * outside io/onnx_*.c may include it. */
#ifndef AQ_ONNX_INTERNAL_H
#define AQ_ONNX_INTERNAL_H

#include "cnn_graph.h"
#include "onnx.pb-c.h"

/* An integer constant (int64/int32/bool/int8/uint8 initializer or Constant
 * node): shapes, axes, Dropout's training_mode. Kept out of the graph. */
typedef struct aq_onnx_iconst {
    const char *name; /* borrowed from the unpacked protobuf */
    int64_t n;
    int64_t *v; /* owned */
} aq_onnx_iconst;

typedef struct aq_onnx_rd {
    const char *what; /* the file, for messages */
    int opset;
    aq_cnn_graph *g;
    int cap_values;
    aq_onnx_iconst *ic;
    int n_ic, cap_ic;
    /* per node of g (file order until sorted): its protobuf */
    const Onnx__NodeProto **src;
    int cap_nodes;
} aq_onnx_rd;

/* io/onnx_depth.c: 0 when the file's messages nest deeper than
 * AQ_ONNX_MAX_DEPTH (checked before protobuf-c's recursive unpacking; real
 * models nest about 5 deep, 10-20 with control-flow subgraphs). */
#define AQ_ONNX_MAX_DEPTH 64
int aq_onnx_depth_ok(const void *buf, size_t len);

/* The node's ONNX name for messages ("Conv_3" when it has none). */
const char *aq_onnx_node_label(const Onnx__NodeProto *np, int index, char *buf, size_t cap);

/* Fill n->a from np's attributes (n->op set, n->a at its defaults): every
 * attribute the op does not know, or a value it cannot take (a 3-D kernel,
 * spatial=0, training_mode=1), is an AQ_ERR_FORMAT naming the node. */
aq_status aq_onnx_node_attrs(const aq_onnx_rd *r, const Onnx__NodeProto *np, const char *label,
                             aq_cnn_node *n, aq_error *err);

/* The integer constant named `name`, or NULL. */
const aq_onnx_iconst *aq_onnx_iconst_find(const aq_onnx_rd *r, const char *name);

/* io/onnx_read.c: a new non-constant value named `name` (id in *id); an
 * initializer or Constant node's tensor as a float value or integer constant. */
aq_status aq_onnx_add_value(aq_onnx_rd *r, const char *name, int *id, aq_error *err);
aq_status aq_onnx_add_tensor(aq_onnx_rd *r, const Onnx__TensorProto *t, const char *name,
                             aq_error *err);

/* io/onnx_graph.c: the graph input (value + declared shape); every node
 * (Constant nodes become constants, the others graph nodes with attributes);
 * then inputs resolved, the sort, folding, legacy broadcast and the output. */
aq_status aq_onnx_graph_input(aq_onnx_rd *r, const Onnx__GraphProto *gp, aq_error *err);
aq_status aq_onnx_graph_nodes(aq_onnx_rd *r, const Onnx__GraphProto *gp, aq_error *err);
aq_status aq_onnx_graph_finish(aq_onnx_rd *r, const Onnx__GraphProto *gp, aq_error *err);

/* io/onnx_fix.c, after the sort: fold Reshape/Identity of constants; then
 * one pass over value ranks that applies opset < 7 Add/Mul broadcast axes,
 * refuses non-2-D spatial ops and fills Conv's kernel from its weight. */
aq_status aq_onnx_fold_constants(aq_onnx_rd *r, aq_error *err);
aq_status aq_onnx_rank_pass(aq_onnx_rd *r, aq_error *err);

#endif
