/* onnx_write.h — write a CNN graph (io/cnn_graph.h) as an ONNX model with
 * QuantizeLinear/DequantizeLinear (QDQ) that onnxruntime runs.
 *
 * Weights of the listed Conv/Gemm/MatMul nodes become integer initializers
 * with a per-output-channel DequantizeLinear (axis = the ONNX weight's output
 * channel axis: 0 for Conv and Gemm with transB=1, 1 for MatMul and Gemm with
 * transB=0). The project's codes (src/quant/quant.h: unsigned u in
 * [0, 2^bits-1], x_hat = scale * (u - zero)) are stored signed, shifted by
 * 2^(bits-1): q = u - 2^(bits-1), zero_point = zero - 2^(bits-1), so that
 * (q - zero_point) * scale = x_hat exactly in ONNX's DequantizeLinear:
 *   bits 5..8 -> INT8 (opset >= 13, where DequantizeLinear gained `axis`);
 *   bits 2..4 -> INT4 (element type 22, packed two per byte, low nibble
 *                first), which needs opset 21 (and IR version 10).
 * A node's input activation may get a QuantizeLinear -> DequantizeLinear pair
 * with per-tensor (scale, zero, bits): UINT8 for 8 bits, UINT4 for 4 bits, and
 * for other widths UINT8 with a Clip to [0, 2^bits-1] between the two.
 * Zero points must be integers: a non-integer zero (e.g. after zero-point
 * tuning) is refused with an error naming the node and channel; so are a
 * scale that is not finite and positive and a code above 2^bits-1.
 * The model is written at opset max(13, the graph's) — 21 when any weight or
 * activation is 4-bit — in the canonical modern form of every op (Reshape's
 * shape and Clip's min/max as initializer inputs, Softmax's axis explicit), so
 * an opset-1 model comes out as a valid opset-13 model; opset-1's legacy
 * broadcast is already NumPy broadcasting in the graph. */
#ifndef AQ_ONNX_WRITE_H
#define AQ_ONNX_WRITE_H

#include <stdint.h>

#include "cnn_graph.h"

/* ONNX 1.16's 4-bit element types (Debian's onnx.proto, 1.12, predates them). */
#define AQ_ONNX_UINT4 21
#define AQ_ONNX_INT4 22

typedef struct aq_onnx_qlayer {
    const char *node; /* a Conv, Gemm or MatMul node of the graph (by name) */
    /* the weight (codes NULL: it stays float) */
    int bits; /* 2..8 */
    const uint8_t
        *codes; /* [out, in] row-major: the quantizer's view; in = the rest of the weight */
    const float *scale, *zero; /* out each */
    /* the node's first input, per tensor (act_bits 0: not quantized) */
    int act_bits; /* 2..8 */
    float act_scale, act_zero;
} aq_onnx_qlayer;

/* Write g with the n layers' quantization to path (atomically: io/atomic_file.h). */
aq_status aq_onnx_write_qdq(const aq_cnn_graph *g, const aq_onnx_qlayer *layers, int n,
                            const char *path, aq_error *err);

#endif
