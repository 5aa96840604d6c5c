/* ggml_blocks.h — llama.cpp's (ggml's) quantized block formats, bit-exact.
 *
 * The GGUF weight types Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (blocks of 32 weights,
 * one fp16 scale d, plus an fp16 offset m for the _1 types) and the K-quants
 * Q6_K, Q5_K, Q4_K, Q3_K, Q2_K (super-blocks of 256 weights made of 16 or 32
 * sub-blocks whose scales (and mins) are small integers times one fp16 d (and
 * dmin)). docs/QUANT_FORMATS.md gives every byte layout.
 *
 * Two forms of one block:
 *  - the bytes, exactly as ggml stores them (aq_ggml_format.bytes each);
 *  - the logical form aq_ggml_block: the signed integer values that enter the
 *    dequantization formula, one per weight and per sub-block, plus the fp16
 *    bit patterns. It is what an optimiser changes (rounding of q, the
 *    sub-block scale codes sc and min codes mn) under each format's ranges:
 *      32-blocks:  x = (float)q * d            (Q4_0, Q5_0, Q8_0)
 *                  x = (float)q * d + m        (Q4_1, Q5_1)
 *      K-quants:   x = (d * (float)sc[s]) * (float)q - dmin * (float)mn[s]
 *                  (Q3_K, Q6_K have no mins: x = (d * sc[s]) * q)
 *    in float32, in that order of operations (ggml's dequantize_row_*).
 * aq_ggml_pack and aq_ggml_unpack convert between the two; every byte
 * pattern unpacks, and pack(unpack(b)) == b.
 *
 * aq_ggml_quantize_row is llama.cpp's round-to-nearest baseline: the same
 * bytes as ggml's quantize_row_*_ref (what llama-quantize writes without an
 * importance matrix). fp32 -> fp16 rounds to nearest, ties to even (as
 * ggml's GGML_FP32_TO_FP16, F16C or its software fallback).
 * Everything here is reentrant and allocation-free. */
#ifndef AQ_GGML_BLOCKS_H
#define AQ_GGML_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "../../common/ggml_type.h"
#include "../../common/status.h"

/* The formats here: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K of aq_ggml_type
 * (common/ggml_type.h, ggml's ids). */

#define AQ_GGML_NTYPES 10 /* the types above */
#define AQ_GGML_QK 32     /* weights per block of the 32-block types */
#define AQ_GGML_QK_K 256  /* weights per K-quant super-block */

/* A format's geometry and the ranges of its logical values (inclusive). */
typedef struct aq_ggml_format {
    aq_ggml_type type;
    const char *name; /* "Q4_0", ... as llama.cpp spells it */
    int block;        /* weights per block: 32 or 256 */
    int bytes;        /* bytes per block */
    int nsub;         /* sub-blocks with their own sc/mn: 0 (32-blocks), 8 or 16 */
    int sublen;       /* weights per sub-block (block / nsub), 0 if nsub == 0 */
    int qmin, qmax;   /* range of q */
    int scmin, scmax; /* range of sc (K-quants) */
    int mnmax;        /* range of mn is [0, mnmax]; 0 when the type has no mins */
    int has_m;        /* 1: the block has a second fp16 (m for _1, dmin for K) */
} aq_ggml_format;

/* The logical form of one block (32-blocks use q[0..31] only). */
typedef struct aq_ggml_block {
    int8_t q[AQ_GGML_QK_K]; /* per weight, in [qmin, qmax] */
    int16_t sc[16];         /* per sub-block scale code, in [scmin, scmax] */
    uint8_t mn[16];         /* per sub-block min code, in [0, mnmax] */
    uint16_t d;             /* fp16 bits: d */
    uint16_t m;             /* fp16 bits: m (Q4_1, Q5_1) or dmin (Q2_K, Q4_K, Q5_K) */
} aq_ggml_block;

/* The format of a type; NULL if t is not one of the types above. */
const aq_ggml_format *aq_ggml_format_of(aq_ggml_type t);
/* By llama.cpp's name ("Q4_K", case-insensitive); NULL if unknown. */
const aq_ggml_format *aq_ggml_format_by_name(const char *name);
/* The i-th type (0 <= i < AQ_GGML_NTYPES), in the order of the enum. */
aq_ggml_type aq_ggml_type_at(int i);
/* True bits per weight, block overhead included (Q4_0 4.5, Q4_K 4.5, Q6_K 6.5625). */
double aq_ggml_bpw(aq_ggml_type t);

/* Bytes of a row of n weights. AQ_ERR_SHAPE unless n > 0 is a multiple of the
 * block size (the message names the type and n); AQ_ERR_ARG for an unknown type. */
aq_status aq_ggml_row_bytes(aq_ggml_type t, size_t n, size_t *bytes, aq_error *err);

/* IEEE binary16 <-> binary32. To fp16: round to nearest, ties to even;
 * overflow gives +-inf, NaN gives a quiet NaN (0x7E00 with the sign). */
uint16_t aq_fp32_to_fp16(float f);
float aq_fp16_to_fp32(uint16_t h);

/* Bytes of one block -> logical form (every byte pattern is valid). */
void aq_ggml_unpack(aq_ggml_type t, const uint8_t *bytes, aq_ggml_block *blk);
/* Logical form -> bytes (fmt->bytes of them). AQ_ERR_ARG if a value is out of
 * its range (the message names it); nothing is written then. */
aq_status aq_ggml_pack(aq_ggml_type t, const aq_ggml_block *blk, uint8_t *bytes, aq_error *err);

/* A row: nblocks logical blocks -> their bytes, back to back. AQ_ERR_ARG as
 * aq_ggml_pack, the message prefixed with the block's index. */
aq_status aq_ggml_pack_row(aq_ggml_type t, const aq_ggml_block *blocks, size_t nblocks,
                           uint8_t *bytes, aq_error *err);

/* The weights of one block (fmt->block floats) from its logical form, with
 * ggml's arithmetic. Values must be in range (as pack requires). */
void aq_ggml_dequantize_block(aq_ggml_type t, const aq_ggml_block *blk, float *out);
/* A row of n weights from its bytes, bit-identical to ggml's dequantize_row_*.
 * Errors as aq_ggml_row_bytes. */
aq_status aq_ggml_dequantize_row(aq_ggml_type t, const uint8_t *bytes, size_t n, float *out,
                                 aq_error *err);

/* llama.cpp's round-to-nearest quantizer (quantize_row_*_ref): a row of n
 * finite floats -> its bytes (aq_ggml_row_bytes of them). Errors: the row
 * shape as aq_ggml_row_bytes; AQ_ERR_NUMERIC naming the first NaN/Inf. */
aq_status aq_ggml_quantize_row(aq_ggml_type t, const float *x, size_t n, uint8_t *out,
                               aq_error *err);
/* The same quantization in logical form (n / fmt->block blocks): the
 * starting point of an optimiser. Errors as aq_ggml_quantize_row. */
aq_status aq_ggml_quantize_row_blocks(aq_ggml_type t, const float *x, size_t n,
                                      aq_ggml_block *blocks, aq_error *err);

#endif
