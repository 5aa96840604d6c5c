/* qlayer.h — THE on-disk layout of one quantized linear layer, shared by the
 * pipeline (writer) and the engine (reader). docs/ADAQUANT.md "qlayer format".
 *
 * For a layer with tensor prefix P (e.g. "model.layers.0.self_attn.q_proj"):
 *   P.qweight  U8  [d_out, row_bytes]  each row packed independently with aq_pack,
 *                                      row_bytes = ceil(d_in * w_bits / 8)
 *   P.w_scale  F32 [d_out]
 *   P.w_zero   F32 [d_out]
 *   P.bias     F32 [d_out]             (always present)
 *   P.a_scale  F32 [1]                 only when a_bits < 16
 *   P.a_zero   F32 [1]                 only when a_bits < 16
 *   __metadata__ "quant.P" = option string ("w4a8", "w3a16s": s = symmetric weights)
 * d_in is not stored in a tensor: it is given by the caller (from the model
 * config) and must satisfy row_bytes == ceil(d_in * w_bits / 8).
 * Dequantised   W[r,c] = w_scale[r] * (u[r,c] - w_zero[r])
 * Activations   x^ = a_scale * (clamp(round_half_even(x / a_scale) + a_zero, 0, 2^a_bits - 1) - a_zero)
 * Both zero points may be fractional; every operation is a float32 one, in the
 * order docs/FORMAT.md states exactly.
 *
 * Group formats (aq_layer_opts.group > 0; docs/FORMAT.md "Group formats"):
 *   "q4_0", "q4_1", "q5_0", "q5_1", "q8_0" (llama.cpp's block types):
 *   P.qblocks  U8  [d_out, row_bytes]  each row = its d_in / 32 blocks exactly
 *                                      as ggml stores them (what GGUF holds)
 *   P.bias     F32 [d_out]
 *   "wKgG":
 *   P.qweight  U8  [d_out, ceil(d_in K / 8)] packed as above
 *   P.w_scale  F16 [d_out, d_in / G]   > 0
 *   P.w_zero   U8  [d_out, d_in / G]   integer zero points < 2^K
 *   P.bias     F32 [d_out]
 *   W[r,c] = (float)s * ((float)u - (float)z) of c's group. */
#ifndef AQ_QLAYER_H
#define AQ_QLAYER_H

#include "../../io/checkpoint.h"
#include "../../io/safetensors.h"
#include "adaquant.h"

/* Add the tensors and metadata of a result under prefix P to w. The packed
 * weights are copied into a buffer owned by *keep (the writer borrows data
 * until aq_st_writer_write): free *keep with aq_qlayer_keep_free AFTER writing.
 * The float arrays of r are borrowed too: keep r alive until written. */
typedef struct aq_qlayer_keep aq_qlayer_keep;
aq_status aq_qlayer_add(aq_st_writer *w, const char *prefix, const aq_layer_result *r,
                        aq_qlayer_keep **keep, aq_error *err);
void aq_qlayer_keep_free(aq_qlayer_keep *k);

/* A loaded quantized layer (owns all its arrays; free with aq_qlayer_free). */
typedef struct aq_qlayer {
    size_t d_out, d_in;
    int w_bits, a_bits, symmetric;
    int group, ggml, gtype; /* group formats: w_scale/w_zero are [d_out, d_in / group] */
    uint8_t *blocks;        /* ggml types: [d_out, row bytes] the stored blocks; else NULL */
    uint8_t *codes;        /* [d_out * d_in] unpacked */
    float *w_scale, *w_zero, *bias; /* [d_out] */
    float a_scale, a_zero; /* 1, 0 when a_bits == 16 */
    float *weight;         /* [d_out * d_in] dequantised */
} aq_qlayer;

/* Load layer P (d_in given by the caller) from an open safetensors file,
 * validating dtypes, shapes, the option metadata, codes < 2^w_bits, padding
 * bits zero, finite values, scales > 0. Errors name the file and tensor. */
aq_status aq_qlayer_load_st(const aq_st_file *f, const char *prefix, size_t d_in, aq_qlayer *out,
                            aq_error *err);
/* Same from a checkpoint (any kind aq_ckpt_open accepts). */
aq_status aq_qlayer_load_ckpt(aq_checkpoint *ck, const char *prefix, size_t d_in, aq_qlayer *out,
                              aq_error *err);
void aq_qlayer_free(aq_qlayer *q);

/* Fake-quantise activations in place with (a_scale, a_zero, a_bits) exactly as
 * documented above; a_bits >= 16 leaves x unchanged. */
void aq_qlayer_fake_quant_act(float *x, size_t n, float a_scale, float a_zero, int a_bits);

/* ---- Tensors outside the linear layers: the token embedding and an untied
 * classifier (docs/FORMAT.md "Embedding and classifier"). Base name B is
 * "model.embed_tokens" or "lm_head"; metadata "quant.B" holds the option
 * (aq_tensor_opt_parse): "f16": B.weight F16 [rows, cols]; "wK": B.qweight U8
 * [rows, ceil(cols K / 8)] (rows packed as in a qlayer), B.w_scale F32 [rows]
 * (> 0), B.w_zero F32 [rows] (an integer), W = w_scale * ((float)u - w_zero).
 * "f32" is the plain F32 B.weight without metadata. */

/* Round-to-nearest per-row asymmetric K-bit codes of w [rows, cols]: for each
 * row the range [a·min, a·max] with the clipping factor a in {1, 0.97, ...,
 * 0.52} of least squared error, integer zero point. */
void aq_qtensor_rtn(const float *w, size_t rows, size_t cols, int bits, uint8_t *codes, float *scale,
                    float *zero);
/* W = scale * ((float)u - zero), row by row (the qlayer formula). */
void aq_qtensor_dequant(const uint8_t *codes, const float *scale, const float *zero, size_t rows,
                        size_t cols, float *out);
/* Add tensor B at option opt (not "f32") to w: for "f16" `values` [rows, cols]
 * are converted to binary16 (exactly, when they came from aq_f16 rounding);
 * for "wK" codes/scale/zero; for a block type ("q8_0") codes holds ggml's
 * bytes of the rows [rows, row bytes] (borrowed). The packed bytes live in *keep (free with
 * aq_qlayer_keep_free after writing); the scale/zero arrays are borrowed. */
aq_status aq_qtensor_add(aq_st_writer *w, const char *base, const char *opt, size_t rows, size_t cols,
                         const float *values, const uint8_t *codes, const float *scale, const float *zero,
                         aq_qlayer_keep **keep, aq_error *err);
/* Load tensor B (option from metadata quant.B, which must be present) as a
 * dequantised matrix *out [rows, cols] (malloc'd). Checks dtypes, shapes,
 * codes, padding, finiteness, scales > 0. Errors name the file and tensor. */
aq_status aq_qtensor_load_ckpt(aq_checkpoint *ck, const char *base, size_t rows, size_t cols, float **out,
                               aq_error *err);

#endif
