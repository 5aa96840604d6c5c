/* adaquant.h — the AdaQuant layer optimizer: one linear layer, one bit option.
 *
 * Problem: minimise (1/N) ||X W^T + b - (Q_a(Xin) Q_w(V)^T + b')||^2 over the
 * continuous weights V (init from W), the new bias b', the per-output-channel
 * weight scale/zero and the per-tensor activation scale/zero. X are the
 * full-precision inputs (the target), Xin the inputs the quantized layer sees
 * (= X in parallel mode; the outputs of already-quantized upstream layers in
 * sequential mode).
 *
 * Everything works in the Gram form (docs/ADAQUANT.md): with X~ = [X 1],
 * X~q = [Q_a(Xin) 1], A = X~^T X~, B = X~^T X~q, C = X~q^T X~q (float64,
 * (d_in+1)^2 each, the ones column LAST), the loss is an exact quadratic in the
 * quantized weights W^ = [Q_w(V) b'], so one iteration costs one
 * d_out x (d_in+1) x (d_in+1) gemm, independent of N.
 *
 * A problem is fed EITHER by rows (a layer bundle: X, optional Xin) OR by
 * statistics (what the distributed capture gathers: the summed Gram A over all
 * calibration tokens, optionally B and C for sequential mode, plus a
 * deterministic sample of input rows used to fit the activation quantizer and,
 * when activations are quantized, to form B and C).
 *
 * Losses are the normalised output error ||Y - Y^||^2 / ||Y||^2 (Y = X W^T + b,
 * over the rows the Grams summarise), computed exactly from the Grams.
 * Results are bit-identical for the same inputs, options and seed: no global
 * state, no threads of our own, and BLIS (even when the caller threads it)
 * does not split the k loop of its products, so the bytes do not depend on
 * the BLIS thread count (tested with 1 and 2). Algorithm, measured defaults
 * and the error/precision figures: docs/ADAQUANT.md. */
#ifndef AQ_ADAQUANT_H
#define AQ_ADAQUANT_H

#include <stddef.h>
#include <stdint.h>

#include "../../common/status.h"

typedef enum aq_aq_init {
    AQ_INIT_RTN,  /* MSE-clipped per-row grid, round to nearest */
    AQ_INIT_GPTQ  /* GPTQ (H = A without the ones row/col) on the MSE grid */
} aq_aq_init;

typedef enum aq_aq_mode {
    AQ_MODE_AUTO, /* gram when N > d_in (always for a statistics feed), else rows */
    AQ_MODE_GRAM, /* full-batch gradient from the Grams: one gemm per iteration */
    AQ_MODE_ROWS  /* mini-batch gradient from rows (batch_rows per step) */
} aq_aq_mode;

/* Options. Fill with aq_layer_opts_default, then aq_layer_opts_parse for the
 * "wKaM" string, then override fields. Learning rates are RELATIVE: a step of
 * V or of the weight scale moves by lr * s_r (the row's scale), the zero point
 * by lr code units, the bias by lr * s_r * rms(x), the activation scale by
 * lr * a_scale — so the defaults are independent of the layer's magnitudes. */
typedef struct aq_layer_opts {
    int w_bits;        /* 2, 3, 4, 6, 8 */
    int a_bits;        /* 4, 8, or 16 (= activations not quantized) */
    int symmetric;     /* 1: weights symmetric per row (zero fixed at 2^(bits-1)); default 0 */
    int iters;         /* Adam iterations per outer step (default 100) */
    int outer_iters;   /* activation outer steps when a_bits < 16 (default 6) */
    int polish_rounds; /* exact refit + code coordinate-descent rounds (default 8) */
    int starts;        /* initialisations on grids scaled 1, 0.95, 1.05, 0.9, ... each
                          polished, best kept per row (default 5) */
    aq_aq_init init;   /* default AQ_INIT_GPTQ */
    aq_aq_mode mode;   /* default AQ_MODE_AUTO */
    uint64_t seed;     /* user seed (mixed with name and option, see aq_layer_seed) */
    double lr_w, lr_scale, lr_zero, lr_bias, lr_act; /* Adam step sizes (relative, see above) */
    int eval_every;    /* exact-loss evaluation period in iterations (keep-best), default 10 */
    int batch_rows;    /* rows mode mini-batch (default 256) */
    int f32_gemm;      /* 1 (default): per-iteration gemm in float32 copies; 0: float64 */
    double gptq_damp;  /* GPTQ relative damping (default 0.01) */
    int gptq_block;    /* GPTQ block size (default 128) */
    int gptq_act_order;/* GPTQ act-order (default 1) */
    int compute_gptq;  /* 1: also report loss_gptq when init == RTN (default 1) */
    int act_fixed;     /* 1: use (act_scale, act_zero) as the activation quantizer, do not
                          fit or optimise it (grouped convolutions share one per tensor) */
    float act_scale, act_zero;
    /* Group-wise formats (docs/QUANT_FORMATS.md "Calibrated group formats"):
     * group > 0 = one fp16 scale per `group` consecutive weights of a row
     * (d_in must be a multiple of it), optimised by aq_group_run; a16 only.
     *   ggml 0: "wKgG" (K in 2..8, G in 32, 64, 128): asymmetric K-bit codes,
     *           fp16 scale and integer zero point per group;
     *   ggml 1: llama.cpp's block type gtype (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0:
     *           group 32; the K-quants Q2_K..Q6_K: group 256, the
     *           super-block), option "q4_0", "q4_k" etc. */
    int group;
    int ggml;
    int gtype;
} aq_layer_opts;

/* Defaults (w4a16, asymmetric, gptq init, auto mode; see docs/ADAQUANT.md for
 * how they were chosen). */
void aq_layer_opts_default(aq_layer_opts *o);
/* Parse "wKaM" (K in 2,3,4,6,8; M in 4,8,16; optional suffix "s" = symmetric
 * weights, e.g. "w4a8s") into o->w_bits/a_bits/symmetric, or a group format
 * "wKgG" (K in 2..8, G in 32, 64, 128) or a ggml block type "q4_0", "q4_1",
 * "q5_0", "q5_1", "q8_0", "q2_k" .. "q6_k" (case-insensitive) into w_bits/group/ggml/gtype with
 * a_bits 16. AQ_ERR_ARG naming the string otherwise. */
aq_status aq_layer_opts_parse(const char *option, aq_layer_opts *o, aq_error *err);
/* The canonical option string of o ("w4a8", "w3a16s", "w4g32", "q4_0") into buf (>= 16 bytes). */
void aq_layer_opts_string(const aq_layer_opts *o, char *buf, size_t n);
/* The options of a tensor outside the linear layers (the token embedding, an
 * untied classifier; docs/FORMAT.md "Embedding and classifier"): "f32" (kept),
 * "f16" (rounded to IEEE binary16), "wK" with K in 2..8 (per-row asymmetric
 * K-bit codes, F32 scale and integer zero point, no bias), or a ggml block
 * type "q8_0", "q6_k" ... (llama.cpp's round-to-nearest rows, stored as
 * B.qblocks: aq_tensor_opt_gtype). *bits = 32, 16, K, or 0 for a block type.
 * AQ_ERR_ARG naming the option otherwise. */
aq_status aq_tensor_opt_parse(const char *s, int *bits, aq_error *err);
/* The ggml type (aq_ggml_type) of a block-type tensor option, or -1. */
int aq_tensor_opt_gtype(const char *s);

/* Deterministic 64-bit seed: splitmix64 finaliser over an FNV-1a 64 hash of
 * name, '\0', option, '\0', then the user seed (little-endian bytes).
 * name/option may be NULL (hashed as ""). */
uint64_t aq_layer_seed(const char *name, const char *option, uint64_t user_seed);

/* One layer problem. All pointers are borrowed for the duration of the call.
 * They need not be aligned (e.g. tensors inside a file or result payload):
 * aq_layer_run reads misaligned arrays through aligned copies, and the result
 * does not depend on the alignment.
 * Feed by rows: x (and optionally x_in) non-NULL, gram_a NULL.
 * Feed by statistics: gram_a non-NULL, x NULL. */
typedef struct aq_layer_problem {
    const char *name;     /* for errors and the seed; may be NULL ("layer") */
    size_t d_out, d_in;
    const float *weight;  /* [d_out, d_in] row-major */
    const float *bias;    /* [d_out] or NULL (= zero) */

    /* --- rows feed --- */
    size_t n_rows;        /* N > 0 */
    const float *x;       /* [N, d_in] full-precision inputs (the target) */
    const float *x_in;    /* [N, d_in] inputs of the quantized layer, NULL = x (parallel mode) */

    /* --- statistics feed: Grams are SUMS over n_tokens rows (not divided),
     *     float64 row-major [(d_in+1)^2], ones column last (aq_gram_accumulate) --- */
    const double *gram_a; /* sum [x 1]^T [x 1] */
    const double *gram_b; /* sum [x 1]^T [xin 1], NULL = gram_a (parallel mode) */
    const double *gram_c; /* sum [xin 1]^T [xin 1], NULL = gram_a */
    uint64_t n_tokens;    /* rows summed into the Grams (> 0) */
    size_t n_sample;      /* sample rows (needed when a_bits < 16) */
    const float *sample_x;    /* [n_sample, d_in] full-precision inputs */
    const float *sample_x_in; /* [n_sample, d_in] or NULL = sample_x */
} aq_layer_problem;
/* Note (statistics feed, a_bits < 16): B and C depend on Q_a and so are formed
 * from the sample; A is then also taken from the sample so that the quadratic
 * form stays consistent (non-negative); losses are then sample losses. */

/* The result (caller-owned). Free with aq_layer_result_free only: w_zero and
 * bias live in w_scale's allocation. */
typedef struct aq_layer_result {
    size_t d_out, d_in;
    int w_bits, a_bits, symmetric;
    uint8_t *codes;        /* [d_out * d_in] unpacked codes in [0, 2^w_bits - 1] */
    float *w_scale;        /* [d_out] */
    float *w_zero;         /* [d_out] (may be non-integer: refit in closed form) */
    float *bias;           /* [d_out] b' (always present) */
    float a_scale, a_zero; /* per-tensor activation quantizer (1, 0 when a_bits == 16) */
    double loss_rtn;       /* RTN on the MSE grid, original bias */
    double loss_gptq;      /* GPTQ on the MSE grid, original bias; NAN if not computed */
    double loss_init;      /* the initialisation AdaQuant started from */
    double loss_final;     /* the returned solution (<= loss_init) */
    double y_energy;       /* ||Y||^2 / N: the normaliser (to combine layers or groups) */
    int iterations;        /* Adam iterations run in total */
    aq_aq_mode mode_used;  /* GRAM or ROWS */
    double seconds;        /* wall time of aq_layer_run */
    uint64_t seed;         /* the derived seed actually used */
    /* Group formats (opts.group > 0): w_scale and w_zero hold d_out * (d_in /
     * group) values, row-major [d_out, groups]; scales are fp16-representable.
     * wKgG: W = s_g * ((float)u - z_g), z_g an integer. ggml types: codes are
     * q - qmin (q the block value of aq_ggml_block), w_scale the block's d,
     * w_zero its m (Q4_1, Q5_1; 0 otherwise), W as ggml dequantizes.
     * K-quants: per sub-block (d_in / 16 or / 32 values a row, see
     * aq_result_groups), w_scale = d * sc and w_zero = dmin * mn (0 without
     * mins), W = w_scale * q - w_zero as ggml computes it. */
    int group, ggml, gtype;
} aq_layer_result;

/* Run AdaQuant on one layer. *out is filled (arrays malloc'd, owned by the
 * caller, free with aq_layer_result_free; on error nothing is left allocated).
 * Errors: AQ_ERR_ARG (bad option, no feed, N = 0), AQ_ERR_SHAPE, AQ_ERR_NUMERIC
 * (NaN/Inf in weights/bias/inputs/Grams, all-zero inputs or Y == 0: the
 * normalised loss is undefined), AQ_ERR_NOMEM. Messages name the layer. */
aq_status aq_layer_run(const aq_layer_problem *p, const aq_layer_opts *o, aq_layer_result *out,
                       aq_error *err);
void aq_layer_result_free(aq_layer_result *r);

/* Dequantised weights of a result: w[r,c] = w_scale[r] * (codes[r,c] - w_zero[r])
 * (group formats: per group, as described above) into out [d_out * d_in]
 * (caller-owned). */
void aq_layer_result_dequant(const aq_layer_result *r, float *out);

/* ---- Group formats (group.c) ---- */
/* AdaQuant for opts.group > 0 (aq_layer_run calls it): Grams as for rows,
 * start from round-to-nearest (llama.cpp's own quantize_row_*_ref bytes for
 * the ggml types; an MSE-clipped grid per group with fp16 scale otherwise),
 * then exact coordinate descent on the Gram loss, alternating: every code
 * +-1 within its range; each group's scale (and min / zero) refit in closed
 * form and rounded to fp16 (its fp16 neighbours tried too); the bias refit.
 * Every move is accepted only if the exact loss of the stored (rounded)
 * values decreases, so loss_final <= loss_init = loss_rtn. */
aq_status aq_group_run(const aq_layer_problem *p, const aq_layer_opts *o, aq_layer_result *out,
                       aq_error *err);
/* Groups per row of a result (d_in / group; d_in / sub-block for the K-quants; 1 when per row). */
size_t aq_result_groups(const aq_layer_result *r);
/* Row r of a group-format result dequantised (d_in floats). */
void aq_group_dequant_row(const aq_layer_result *r, size_t row, float *out);
/* Row r of a ggml-type result as ggml's block bytes (aq_ggml_row_bytes of
 * them). AQ_ERR_ARG if a value is out of its format's range. */
aq_status aq_group_pack_row(const aq_layer_result *r, size_t row, uint8_t *bytes, aq_error *err);
/* The inverse: the codes/scale/zero of row r from its block bytes. */
void aq_group_unpack_row(aq_layer_result *r, size_t row, const uint8_t *bytes);
/* Stored bytes of one row of the weights of a group format (codes, fp16
 * scales, and the zero points or mins): ggml types their block bytes, wKgG
 * ceil(d_in K / 8) + 2 G + G (U8 zero points). */
size_t aq_group_row_bytes(const aq_layer_opts *o, size_t d_in);

/* --- Gram accumulation (for the capture / pipeline) ---
 * A += [x 1]^T [x 1] over n rows of x [n, d] (gram [(d+1)^2], float64). The
 * float32 products are formed exactly in float64 and accumulated in float64
 * (BLIS dsyrk on blocks of rows), so the result is independent of blocking up
 * to float64 rounding; docs/ADAQUANT.md gives the measured error. */
aq_status aq_gram_accumulate(double *gram, const float *x, size_t n, size_t d, aq_error *err);
/* Cross Gram: G += [x 1]^T [y 1] (x, y: [n, d]); G is not symmetric.
 * x and y may be misaligned (read with memcpy); gram must be 8-byte aligned
 * (AQ_ERR_ARG otherwise). Also AQ_ERR_NOMEM (a small row-block buffer). */
aq_status aq_gram_accumulate_cross(double *gram, const float *x, const float *y, size_t n,
                                   size_t d, aq_error *err);

/* The normalised loss of a given quantized layer from (normalised or summed)
 * Grams: w_ref [d_out, d_in] + bias_ref (the target), w_q [d_out, d_in] +
 * bias_q (NULL = zero). A, B, C as in aq_layer_problem (B, C NULL = A).
 * Returns NAN if ||Y||^2 == 0. Exact in float64. */
double aq_gram_loss(const double *A, const double *B, const double *C, size_t d_out, size_t d_in,
                    const float *w_ref, const float *bias_ref, const float *w_q,
                    const float *bias_q);

#endif
