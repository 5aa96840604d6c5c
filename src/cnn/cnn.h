/* cnn.h — the CNN engine: runs an aq_cnn_graph (io/cnn_graph.h) in NCHW
 * float32 on a batch of images, and evaluates it on labelled images.
 *
 * A plan fixes the batch size: it infers every value's shape, resolves
 * auto_pad and negative axes, folds nodes whose inputs are all constants
 * (e.g. the MNIST zoo model's Reshape of a weight) and records each value's
 * last reader so the forward pass frees intermediate values as soon as they
 * are dead. Convolutions are BLIS GEMMs over im2col columns (the transpose
 * of src/adaquant/conv.h's aq_im2col rows), one GEMM per image and group,
 * so an image's result does not depend on the batch it runs in. Memory:
 * the live activations of one chunk. See docs/CNN.md for the operators and their semantics. */
#ifndef AQ_CNN_H
#define AQ_CNN_H

#include <stddef.h>
#include <stdint.h>

#include "../../io/cnn_graph.h"

typedef struct aq_cnn_shape {
    int ndim;
    int64_t d[AQ_MAX_DIMS];
} aq_cnn_shape;

/* Everything the forward pass needs besides the graph; built by
 * aq_cnn_plan_init, read-only afterwards (forward passes may share it). */
typedef struct aq_cnn_plan {
    const aq_cnn_graph *g; /* borrowed: must outlive the plan */
    int batch;
    aq_cnn_shape *shape;    /* [n_values] */
    unsigned char *batched; /* [n_values]: axis 0 is the batch axis */
    const float **cdata;    /* [n_values]: data of constants (graph's or folded), else NULL */
    float **folded;         /* [n_values]: owned data of nodes folded at plan time */
    int *last_use;          /* [n_values]: index of the last node reading it, -1 if none */
    aq_cnn_attrs *attrs;    /* [n_nodes]: attributes with pads and axes resolved */
    unsigned char *skip;    /* [n_nodes]: folded at plan time */
    size_t scratch;         /* floats of scratch the forward pass needs */
    int n_run;              /* > 0: run nodes [0, n_run) only and leave y unwritten (a pass
                             * that only observes an early node stops there); 0: all */
} aq_cnn_plan;

/* Plan g for `batch` images. The graph input's declared dims after the
 * first must be fixed; its first dim is replaced by batch. A Reshape whose
 * target's first entry is the model's declared fixed batch (e.g. [1, 256]
 * in a model exported for batch 1) keeps the batch. AQ_ERR_SHAPE naming the
 * node on any shape mismatch. Free with aq_cnn_plan_free. */
aq_status aq_cnn_plan_init(const aq_cnn_graph *g, int batch, aq_cnn_plan *p, aq_error *err);
void aq_cnn_plan_free(aq_cnn_plan *p);

/* Elements of one value for the plan's batch (the whole tensor). */
size_t aq_cnn_numel(const aq_cnn_shape *s);

/* "[1, 16, 28, 28]" into buf; returns buf. */
const char *aq_cnn_shape_str(const aq_cnn_shape *s, char *buf, size_t cap);

/* Called after each node with its output (valid only during the call). */
typedef void (*aq_cnn_observer)(void *ctx, int node, const float *data, const aq_cnn_shape *shape);

/* Activation buffers kept from one forward pass to the next, so a run over
 * many chunks reuses memory instead of faulting in fresh pages for every
 * node. Zero-initialise; one pool per thread; aq_cnn_pool_free at the end. */
typedef struct aq_cnn_pool {
    int n, cap;
    float **buf;
    size_t *floats;
} aq_cnn_pool;
void aq_cnn_pool_free(aq_cnn_pool *pool);

/* Run the plan: x holds the input tensor (plan->shape[g->input]), y gets the
 * output tensor (plan->shape[g->output]). pool and obs may be NULL.
 * AQ_ERR_NOMEM. */
aq_status aq_cnn_forward(const aq_cnn_plan *p, aq_cnn_pool *pool, const float *x, float *y,
                         aq_cnn_observer obs, void *ctx, aq_error *err);

/* --- evaluation on u8 images --- */

/* Pixel normalisation: raw: x = u8 (0..255, the MNIST zoo model);
 * else x = (u8 / 255 - mean) / std, computed in double, rounded to float. */
typedef struct aq_cnn_norm {
    int raw;
    double mean, std;
} aq_cnn_norm;

/* Parse "MEAN,STD" or "none" (= raw pixels). AQ_ERR_ARG naming the text. */
aq_status aq_cnn_norm_parse(const char *s, aq_cnn_norm *n, aq_error *err);

/* Predicted class (argmax of the output, first maximum on ties) of n images
 * of `image_size` u8 pixels each (the model input's per-image size; checked),
 * run `chunk` images at a time. pred: n entries (caller-owned). logits: NULL,
 * or n * classes floats; *classes (if non-NULL) gets the per-image output
 * size. */
aq_status aq_cnn_predict(const aq_cnn_graph *g, const uint8_t *pixels, size_t n, size_t image_size,
                         const aq_cnn_norm *norm, int chunk, int32_t *pred, float *logits,
                         size_t *classes, aq_error *err);

/* Entries where a[i] == b[i]: correct predictions against labels, or
 * agreement between two prediction sets. */
size_t aq_cnn_count_equal(const int32_t *a, const int32_t *b, size_t n);

#endif
