/* tune.h — the parameter vector of global and block-wise tuning (docs/TUNE.md) and its
 * gradient: with every quantized linear's integer codes fixed, the tuned
 * parameters are, per layer l (in the order given), theta[ns] (w_scale =
 * s0 * exp(theta), s0 the starting scale), zero[ns] and bias[d_out], where
 * ns = d_out for a per-row layer and d_out * aq_result_groups for a group
 * format (one per group, block or K-quant sub-block; its zero is the min in
 * code units, tune_group.h, re-quantized to the format on every apply); then
 * the RMSNorm gains: input_layernorm [n_layers * dim], post_attention_layernorm
 * [n_layers * dim], model.norm [dim]. No MPI: mpi/pipeline/stage_tune.c spreads
 * the gradient chunks over ranks and sums them. */
#ifndef AQ_TUNE_H
#define AQ_TUNE_H

#include "../adaquant/adaquant.h"
#include "model.h"

/* Which linear of the model a layer result belongs to. */
typedef struct aq_tune_layer {
    int block;
    aq_linear which; /* a block linear (not the classifier) */
} aq_tune_layer;

typedef struct aq_tuner aq_tuner;

/* Start tuning v[n_layers] (borrowed for the tuner's life; aq_tuner_apply
 * writes w_scale / w_zero (asymmetric layers only) / bias into them) on m
 * (borrowed: aq_tuner_apply installs overrides and norm overrides in it). The
 * start point: theta 0, v's zeros and biases, m's FP norm gains.
 * AQ_ERR_ARG for a classifier / out-of-range / repeated linear, AQ_ERR_SHAPE
 * for a result whose shape is not the linear's, AQ_ERR_NOMEM. */
aq_status aq_tuner_new(aq_model *m, int n_layers, const aq_tune_layer *lay, aq_layer_result *v, aq_tuner **out,
                       aq_error *err);
/* Block-wise tuning (docs/TUNE.md "Block-wise"): the same parametrisation for
 * the layers of one block (lay[] must all be in `block`) and that block's two
 * RMSNorm gains (input_layernorm then post_attention_layernorm, [dim] each,
 * after the layers; model.norm is not tuned). Memory: that block's gradients.
 * aq_tuner_grad refuses it; use aq_tuner_block_grad. Errors as aq_tuner_new,
 * plus AQ_ERR_ARG for a layer of another block or a bad block. */
aq_status aq_tuner_new_block(aq_model *m, int block, int n_layers, const aq_tune_layer *lay, aq_layer_result *v,
                             aq_tuner **out, aq_error *err);
void aq_tuner_free(aq_tuner *t);

size_t aq_tuner_n_params(const aq_tuner *t);
/* The parameters (float64, layout above); the caller may change them, then
 * aq_tuner_apply. */
double *aq_tuner_params(aq_tuner *t);
size_t aq_tuner_layer_offset(const aq_tuner *t, int l); /* theta of layer l; zero at +ns, bias at +2 ns */
size_t aq_tuner_norm_offset(const aq_tuner *t);

/* The parameters into v (rounded to float) and into m as overrides. Errors:
 * AQ_ERR_NUMERIC for non-finite values (a diverged run). */
aq_status aq_tuner_apply(aq_tuner *t, aq_error *err);
/* on (the default): group-format layers are applied re-quantized to their
 * stored precision (the forward sees the file's values; the gradient passes
 * the rounding straight through). 0: their continuous values (for checking
 * the gradient against finite differences). */
void aq_tuner_set_exact(aq_tuner *t, int on);

/* Gradient of KL_sum (grad.h: summed over every row of the packed batch) with
 * respect to the parameters at the point last applied, into out[n_params]
 * (overwritten), and out[n_params] = KL_sum. Batches as aq_model_forward. */
aq_status aq_tuner_grad(aq_tuner *t, const int *tokens, const int *lens, int n_seqs, double *out, aq_error *err);

/* Block reconstruction gradient of a block tuner at the point last applied:
 * out[n_params] = d/dparams of E = sum over rows and entries of
 * (block_q(x_in) - y)^2 (grad.h aq_model_block_grad; x_in, y [rows, dim], the
 * packed sequences lens; ws: aq_model_block_grad_floats floats), out[n_params] = E. */
aq_status aq_tuner_block_grad(aq_tuner *t, const float *x_in, const float *y, const int *lens, int n_seqs,
                              float *ws, double *out, aq_error *err);

/* Adam step k of n (1-based; beta 0.9 / 0.999, eps 1e-8) on the mean gradient
 * g_sum / n_tok, rate lr0 decayed by a cosine over the n steps. */
void aq_tuner_adam(aq_tuner *t, const double *g_sum, int k, int n, double lr0, double n_tok);

/* Dequantise v into w [d_out * d_in] and install it (with v's bias and
 * activation quantizer) as the quantized override of (block, which). */
aq_status aq_tune_install_layer(aq_model *m, int block, aq_linear which, const aq_layer_result *v, float *w,
                                aq_error *err);

#endif
