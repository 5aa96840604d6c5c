/* ggml_type.h — ggml's tensor type ids (ggml.h enum ggml_type), the one
 * definition shared by the GGUF container (io/gguf.h) and the block formats
 * of the quantizer core (src/quant/ggml_blocks.h): the numbers are the GGUF
 * tensor-info type field, so both must agree. */
#ifndef AQ_GGML_TYPE_H
#define AQ_GGML_TYPE_H

/* ggml tensor types (ggml.h enum ggml_type). Ids 4, 5, 31-33 and 36-38 were
 * removed from ggml and are rejected. */
typedef enum aq_ggml_type {
    AQ_GGML_F32 = 0,
    AQ_GGML_F16 = 1,
    AQ_GGML_Q4_0 = 2,
    AQ_GGML_Q4_1 = 3,
    AQ_GGML_Q5_0 = 6,
    AQ_GGML_Q5_1 = 7,
    AQ_GGML_Q8_0 = 8,
    AQ_GGML_Q8_1 = 9,
    AQ_GGML_Q2_K = 10,
    AQ_GGML_Q3_K = 11,
    AQ_GGML_Q4_K = 12,
    AQ_GGML_Q5_K = 13,
    AQ_GGML_Q6_K = 14,
    AQ_GGML_Q8_K = 15,
    AQ_GGML_IQ2_XXS = 16,
    AQ_GGML_IQ2_XS = 17,
    AQ_GGML_IQ3_XXS = 18,
    AQ_GGML_IQ1_S = 19,
    AQ_GGML_IQ4_NL = 20,
    AQ_GGML_IQ3_S = 21,
    AQ_GGML_IQ2_S = 22,
    AQ_GGML_IQ4_XS = 23,
    AQ_GGML_I8 = 24,
    AQ_GGML_I16 = 25,
    AQ_GGML_I32 = 26,
    AQ_GGML_I64 = 27,
    AQ_GGML_F64 = 28,
    AQ_GGML_IQ1_M = 29,
    AQ_GGML_BF16 = 30,
    AQ_GGML_TQ1_0 = 34,
    AQ_GGML_TQ2_0 = 35,
    AQ_GGML_MXFP4 = 39,
    AQ_GGML_TYPE_COUNT = 40
} aq_ggml_type;

#endif
