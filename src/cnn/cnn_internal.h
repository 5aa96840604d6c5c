/* cnn_internal.h — what the CNN engine's files share: each operator's shape
 * inference and kernel, and the GEMM wrapper. Not for use outside src/cnn. */
#ifndef AQ_CNN_INTERNAL_H
#define AQ_CNN_INTERNAL_H

#include "cnn.h"
#include "../blas/sgemm.h"

/* Shape inference for one node. in[i] is NULL for an omitted optional input;
 * a (a copy of the node's attributes) is resolved in place (auto_pad into
 * pads, negative axes, Conv's kernel from the weight); *scratch is raised to
 * the floats of scratch the kernel needs. */
typedef struct aq_cnn_infer_args {
    const aq_cnn_graph *g;
    const aq_cnn_node *node;
    aq_cnn_attrs *a;
    const aq_cnn_shape *in[AQ_CNN_MAX_IN];
    aq_cnn_shape *out;
    size_t *scratch;
    int batch;       /* the plan's batch size */
    int in_batched;  /* axis 0 of the first input is the batch axis */
    int out_batched; /* Reshape sets it; the plan decides for the others */
} aq_cnn_infer_args;

/* One node's execution: inputs (NULL if omitted) with their shapes. */
typedef struct aq_cnn_run_args {
    const aq_cnn_graph *g;
    const aq_cnn_node *node;
    const aq_cnn_attrs *a;
    const float *in[AQ_CNN_MAX_IN];
    const aq_cnn_shape *in_shape[AQ_CNN_MAX_IN];
    float *out;
    const aq_cnn_shape *out_shape;
    float *scratch;
} aq_cnn_run_args;

typedef aq_status (*aq_cnn_infer_fn)(aq_cnn_infer_args *x, aq_error *err);
typedef void (*aq_cnn_run_fn)(const aq_cnn_run_args *r);
/* An operator's shape inference and kernel; both NULL for an op the engine
 * does not know (plan.c). */
void aq_cnn_op_fns(aq_cnn_op op, aq_cnn_infer_fn *inf, aq_cnn_run_fn *run);

/* Run node k of p: in[i] is the data of its input i (NULL if omitted),
 * out gets the output, scratch holds p->scratch floats (run.c). */
void aq_cnn_exec(const aq_cnn_plan *p, int k, const float *const *in, float *out, float *scratch);

/* "node 'NAME' (Op): " + message, with code. */
aq_status aq_cnn_node_fail(aq_error *err, const aq_cnn_node *n, aq_status code, const char *fmt,
                           ...) AQ_PRINTF(4, 5);

/* op_conv.c: Conv, MaxPool, AveragePool, GlobalAveragePool */
aq_status aq_cnn_infer_conv(aq_cnn_infer_args *x, aq_error *err);
aq_status aq_cnn_infer_pool(aq_cnn_infer_args *x, aq_error *err);
aq_status aq_cnn_infer_gap(aq_cnn_infer_args *x, aq_error *err);
void aq_cnn_run_conv(const aq_cnn_run_args *r);
/* im2col columns of one image's group: x [cg, H, W] -> cols [K, OH*OW],
 * K = cg*kh*kw in (c, ky, kx) order, zero in the padding (pads, strides,
 * dilations from a). The transpose of aq_im2col's rows (conv.h). */
void aq_cnn_im2col_t(const float *x, int cg, int H, int W, const aq_cnn_attrs *a, int OH, int OW,
                     float *cols);
void aq_cnn_run_pool(const aq_cnn_run_args *r);
void aq_cnn_run_gap(const aq_cnn_run_args *r);

/* op_elem.c: BatchNormalization, the activations, Add/Mul */
aq_status aq_cnn_infer_bn(aq_cnn_infer_args *x, aq_error *err);
aq_status aq_cnn_infer_unary(aq_cnn_infer_args *x, aq_error *err);
aq_status aq_cnn_infer_binary(aq_cnn_infer_args *x, aq_error *err);
void aq_cnn_run_bn(const aq_cnn_run_args *r);
void aq_cnn_run_unary(const aq_cnn_run_args *r);
void aq_cnn_run_binary(const aq_cnn_run_args *r);

/* op_dense.c: Gemm, MatMul, Softmax, Concat, Flatten, Reshape, Identity */
aq_status aq_cnn_infer_gemm(aq_cnn_infer_args *x, aq_error *err);
aq_status aq_cnn_infer_matmul(aq_cnn_infer_args *x, aq_error *err);
aq_status aq_cnn_infer_softmax(aq_cnn_infer_args *x, aq_error *err);
aq_status aq_cnn_infer_concat(aq_cnn_infer_args *x, aq_error *err);
aq_status aq_cnn_infer_flatten(aq_cnn_infer_args *x, aq_error *err);
aq_status aq_cnn_infer_reshape(aq_cnn_infer_args *x, aq_error *err);
void aq_cnn_run_gemm(const aq_cnn_run_args *r);
void aq_cnn_run_matmul(const aq_cnn_run_args *r);
void aq_cnn_run_softmax(const aq_cnn_run_args *r);
void aq_cnn_run_concat(const aq_cnn_run_args *r);
void aq_cnn_run_copy(const aq_cnn_run_args *r); /* Flatten, Reshape, Identity */

/* Element count of a shape, or -1 past 2^40 (a corrupt or absurd model). */
int64_t aq_cnn_shape_numel(const aq_cnn_shape *s);

#endif
