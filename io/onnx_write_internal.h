/* onnx_write_internal.h — what the QDQ writer's files share (io/onnx_write.c:
 * messages, nodes, the model; io/onnx_qdq.c: quantized weights and activation
 * pairs). io-internal: includes protobuf-c's generated onnx.pb-c.h. */
#ifndef AQ_ONNX_WRITE_INTERNAL_H
#define AQ_ONNX_WRITE_INTERNAL_H

#include "onnx.pb-c.h"
#include "onnx_write.h"

typedef struct aq_ow {
    void **ptrs; /* the arena: everything allocated for the messages */
    size_t n_ptrs, cap_ptrs;
    Onnx__GraphProto graph;
    const aq_cnn_graph *g;
    const char *path;
    aq_error *err;
} aq_ow;

/* Zeroed arena memory / a formatted arena string; NULL when out of memory. */
void *aq_ow_alloc(aq_ow *c, size_t size);
char *aq_ow_str(aq_ow *c, const char *fmt, ...) AQ_PRINTF(2, 3);
/* A raw_data initializer (data not copied: it must outlive the packing). */
Onnx__TensorProto *aq_ow_init(aq_ow *c, const char *name, int dtype, int ndim, const int64_t *shape,
                              const void *data, size_t bytes);
/* A one-output node appended to the graph. */
Onnx__NodeProto *aq_ow_node(aq_ow *c, const char *op, const char *name, int n_in,
                            const char *const *in, const char *out);
int aq_ow_attr_int(aq_ow *c, Onnx__NodeProto *n, const char *name, int64_t v);

/* io/onnx_qdq.c: node n's weight -> integer initializer + DequantizeLinear,
 * *name set to the dequantized value's name; n's first input -> Quantize +
 * (Clip) + DequantizeLinear, *name likewise. Errors name the node. */
aq_status aq_ow_weight_qdq(aq_ow *c, const aq_cnn_node *n, const aq_onnx_qlayer *q,
                           const char **name);
aq_status aq_ow_act_qdq(aq_ow *c, const aq_cnn_node *n, const aq_onnx_qlayer *q, const char **name);
/* The lowest opset that holds the layers' types: max(13, graph's), 21 with any 4-bit type. */
int aq_ow_opset(const aq_cnn_graph *g, const aq_onnx_qlayer *layers, int n);

#endif
