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
 * order docs/FORMAT.md states exactly. */
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

#endif
