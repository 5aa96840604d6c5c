/* cnn_quant.h — the AdaQuant paper's per-layer method on CNN graphs
 * (issue 17 item 3): capture each Conv/Gemm/MatMul node's input activations
 * on calibration images, quantize every such layer (RTN or AdaQuant, with a
 * per-tensor activation quantizer calibrated per layer when a < 16), run the
 * quantized model in the engine (dequantized weights, fake-quantized layer
 * inputs) and hand the result to the QDQ writer (io/onnx_write.h).
 *
 * A layer's weight is always seen as a matrix W [d_out, d_in] (the layout of
 * src/adaquant and of aq_onnx_qlayer's codes): Conv [M, C/g*kh*kw] (its own
 * flattening), Gemm transB=1 [N, K] as stored, Gemm transB=0 and MatMul
 * [K, N] transposed. The engine and this file stay single-process: the
 * distributed `adaquant quantize MODEL.onnx` is built on top (docs/CNN.md). */
#ifndef AQ_CNN_QUANT_H
#define AQ_CNN_QUANT_H

#include "../adaquant/adaquant.h"
#include "../adaquant/conv.h"
#include "../../io/onnx_write.h"
#include "cnn.h"

/* One quantizable node of a graph. */
typedef struct aq_cnnq_layer {
    int node;            /* node index in the graph */
    aq_cnn_op op;        /* AQ_OP_CONV, AQ_OP_GEMM or AQ_OP_MATMUL */
    int x_value;         /* the input activation's value id */
    int w_value;         /* the constant weight's value id */
    int b_value;         /* the constant bias (Conv in[2], Gemm C), or -1 */
    int transposed;      /* the stored weight is [d_in, d_out] (MatMul, Gemm transB=0) */
    int d_out, d_in;     /* W as [d_out, d_in] */
    aq_conv_spec conv;   /* Conv only */
    int c, h, w;         /* Conv: per-image input [c, h, w]; else c = d_in, h = w = 1 */
} aq_cnnq_layer;

/* The layers of g, in node order (malloc'd *layers, free()). A Conv/Gemm/
 * MatMul whose weight is not a constant is skipped (not a layer). Refused
 * with an error naming the node: asymmetric Conv pads, Gemm with transA,
 * alpha != 1, beta != 1 with C, a C that is not [N] or a scalar, a MatMul
 * input that is not 2-D. Shapes come from a batch-1 plan. */
aq_status aq_cnnq_layers(const aq_cnn_graph *g, aq_cnnq_layer **layers, int *n, aq_error *err);

/* Captured inputs: one buffer per distinct input value (layers that read the
 * same value share it), images in order. Memory: n_images * sum over the
 * distinct input values of their per-image size * 4 bytes (`bytes`). */
typedef struct aq_cnnq_capture {
    int n_layers;
    aq_cnnq_layer *layers; /* owned */
    int n_images;
    int n_values;          /* the graph's value count */
    float **x;             /* [n_values]: captured [n_images, per_image] or NULL */
    size_t *per_image;     /* [n_values] */
    size_t bytes;          /* total captured bytes */
} aq_cnnq_capture;

/* Run the FP model on n images (u8, `image_size` pixels each, normalised as
 * `norm`), `chunk` at a time, keeping every layer's input. */
aq_status aq_cnnq_capture_run(const aq_cnn_graph *g, const uint8_t *pixels, size_t n,
                              size_t image_size, const aq_cnn_norm *norm, int chunk,
                              aq_cnnq_capture *cap, aq_error *err);
void aq_cnnq_capture_free(aq_cnnq_capture *cap);
/* The captured input of layer i: [n_images, d_in] (Gemm/MatMul) or
 * [n_images, c, h, w] (Conv). */
const float *aq_cnnq_capture_x(const aq_cnnq_capture *cap, int i);

typedef enum aq_cnnq_method {
    AQ_CNNQ_RTN_MINMAX, /* per-channel min/max grid, round to nearest */
    AQ_CNNQ_RTN_MSE,    /* per-channel MSE-clipped grid (src/quant), round to nearest */
    AQ_CNNQ_ADAQUANT    /* aq_conv_run / aq_layer_run (rows feed) */
} aq_cnnq_method;

/* A quantized layer: W^ = scale[r] * (codes[r, c] - zero[r]), the layer's new
 * bias (RTN: the original one, zeros if none), and the per-tensor activation
 * quantizer of its input (a_bits 16: none). Zero points are integers for RTN;
 * AdaQuant may leave them fractional (aq_cnnq_round_zeros). */
typedef struct aq_cnnq_result {
    int w_bits, a_bits;
    int d_out, d_in;
    uint8_t *codes; /* [d_out, d_in] */
    float *scale, *zero, *bias; /* d_out each (one allocation: free with aq_cnnq_result_free) */
    float a_scale, a_zero;
    double loss;    /* normalised output error on the calibration inputs (AdaQuant), NAN for RTN */
    double seconds;
} aq_cnnq_result;

/* Quantize layer i of cap with options o (w_bits, a_bits, seed, iterations,
 * ... of src/adaquant). x_in: the input of the quantized upstream model in
 * the capture's layout (sequential mode) or NULL (parallel). RTN fits the
 * activation quantizer with the MSE range of src/quant on the (subsampled)
 * input; AdaQuant with its own fit and refinement. */
aq_status aq_cnnq_quantize_layer(const aq_cnn_graph *g, const aq_cnnq_capture *cap, int i,
                                 const float *x_in, aq_cnnq_method m, const aq_layer_opts *o,
                                 aq_cnnq_result *r, aq_error *err);
void aq_cnnq_result_free(aq_cnnq_result *r);
/* Round weight and activation zero points to the nearest integer and clamp
 * them to [0, 2^bits - 1] (what the QDQ format stores; AdaQuant's tuned
 * activation zero can drift just outside the grid); returns how many
 * changed. The codes are kept. */
int aq_cnnq_round_zeros(aq_cnnq_result *r);

/* The same with the weight rounding's mean output shift folded into the
 * bias: W' - W = scale_r (z_r - z'_r) on row r, so b'_r += scale_r (z'_r - z_r)
 * times the mean (over the capture's rows) of the row's input sum. The
 * activation zero is rounded as above. *changed (if non-NULL): as above. */
aq_status aq_cnnq_round_zeros_corrected(const aq_cnnq_capture *cap, int i, aq_cnnq_result *r,
                                        int *changed, aq_error *err);

/* --- the quantized model --- */

/* A graph that borrows g's names and data and owns only what it changes:
 * the layers' dequantized weights and new biases (a MatMul gets an Add node
 * after it when its new bias is non-zero) and, with fake_quant, an Identity
 * node before each layer whose input is quantized (its observer rewrites
 * that copy in place; no other node reads it). results[i] NULL: layer i stays
 * float. Free with aq_cnnq_model_free only (never aq_cnn_graph_free). */
typedef struct aq_cnnq_model {
    aq_cnn_graph g;
    int fake_quant;
    int *fq_node;                 /* [g.n_nodes]: layer index whose input node k quantizes, or -1 */
    const aq_cnnq_result **res;   /* [n_layers] borrowed */
    int n_layers;
    int n_own;
    void **own;                   /* allocations to free */
    int *layer_node;              /* [n_layers]: the layer's node index in g */
} aq_cnnq_model;

aq_status aq_cnnq_model_build(const aq_cnn_graph *g, const aq_cnnq_layer *layers, int n_layers,
                              const aq_cnnq_result *const *results, int fake_quant,
                              aq_cnnq_model *m, aq_error *err);
void aq_cnnq_model_free(aq_cnnq_model *m);

/* Predictions of the model (with its fake quantization) on n images, as
 * aq_cnn_predict. */
aq_status aq_cnnq_predict(const aq_cnnq_model *m, const uint8_t *pixels, size_t n,
                          size_t image_size, const aq_cnn_norm *norm, int chunk, int32_t *pred,
                          aq_error *err);

/* The engine observer of a model built with fake_quant: quantizes the output
 * of node `node` in place when it is an inserted Identity (else nothing). */
void aq_cnnq_model_observe(const aq_cnnq_model *m, int node, const float *data, const aq_cnn_shape *shape);

/* Sequential mode: layer i's input as the model m (e.g. layers 0..i-1
 * quantized, fake_quant = 1, layer i still float) computes it on the same
 * calibration images the capture ran on (pixels, normalisation), into a
 * malloc'd [n_images, per-image] array *x_in (free()): the x_in of
 * aq_cnnq_quantize_layer. */
aq_status aq_cnnq_capture_input(const aq_cnnq_model *m, const aq_cnnq_capture *cap, int i,
                                const uint8_t *pixels, size_t image_size, const aq_cnn_norm *norm,
                                int chunk, float **x_in, aq_error *err);

/* The calibration images again, for sequential mode. */
typedef struct aq_cnnq_seq {
    const uint8_t *pixels; /* the capture's n_images images */
    size_t image_size;
    const aq_cnn_norm *norm;
    int chunk;
} aq_cnnq_seq;

/* Quantize every layer of cap with opts[i] into res[i] (n_layers entries,
 * free each with aq_cnnq_result_free; nothing left allocated on error).
 * seq NULL: parallel mode. Else sequential: layer i's x_in is its input in
 * the model with layers 0..i-1 quantized (one forward pass over the
 * calibration images per layer). */
aq_status aq_cnnq_quantize_all(const aq_cnn_graph *g, const aq_cnnq_capture *cap,
                               const aq_cnnq_seq *seq, aq_cnnq_method m, const aq_layer_opts *opts,
                               aq_cnnq_result *res, aq_error *err);

/* The QDQ writer's input for a model built with fake_quant = 0: q[i] for
 * layer i (names point into m->g, codes/scales into the results). Layers
 * with a NULL result get no codes. AQ_ERR_ARG naming the layer and channel
 * when a zero point is not an integer in [0, 2^bits - 1] (call
 * aq_cnnq_round_zeros first). */
aq_status aq_cnnq_qdq_layers(const aq_cnnq_model *m, aq_onnx_qlayer *q, aq_error *err);

#endif
