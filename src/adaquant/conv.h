/* conv.h — convolutions as AdaQuant layer problems.
 *
 * A 2-D convolution with weight [C_out, C_in/g, kh, kw] is, per group g, the
 * matrix product of im2col rows [N*OH*OW, (C_in/g)*kh*kw] (column order
 * (c, ky, kx), i.e. the weight's own flattening) with the group's weight rows
 * [C_out/g, (C_in/g)*kh*kw]. Groups are independent problems (depthwise convs:
 * C_in = C_out = g, many tiny problems); their results are concatenated along
 * the output channel into one aq_layer_result [C_out, (C_in/g)*kh*kw], so the
 * qlayer layout stores a conv weight as that matrix. With quantized activations
 * and g > 1 the activation quantizer is per tensor: it is MSE-fitted once on the
 * whole input and kept fixed for every group. Groups whose output cannot
 * depend on the quantization (all-zero weights and bias, or all-zero inputs:
 * dead or pruned channels) are stored exactly (codes 0, scale 1, zero 0,
 * b' = b) without optimisation; only an all-zero conv output is an error. */
#ifndef AQ_CONV_H
#define AQ_CONV_H

#include "adaquant.h"

typedef struct aq_conv_spec {
    int c_in, c_out, kh, kw;
    int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
} aq_conv_spec;

/* Validate the spec for an input of H x W: positive sizes/strides/dilations,
 * non-negative padding, groups dividing C_in and C_out, output >= 1 x 1.
 * Fills *oh, *ow. AQ_ERR_SHAPE / AQ_ERR_ARG naming the field. */
aq_status aq_conv_check(const aq_conv_spec *s, int H, int W, int *oh, int *ow, aq_error *err);

/* im2col rows of group g for input x [N, C_in, H, W] into rows
 * [N*OH*OW, (C_in/g)*kh*kw] (caller-owned); row order (n, oy, ox); padding
 * reads as 0. The spec must have passed aq_conv_check. */
void aq_im2col(const float *x, int N, int H, int W, const aq_conv_spec *s, int group, float *rows);

/* AdaQuant on a convolution: every group is one aq_layer_run problem (name
 * "<name>/g<k>" for the seed when groups > 1). x [N, C_in, H, W]; x_in the
 * quantized layer's input or NULL. *out is [C_out, (C_in/g)*kh*kw]; its
 * losses are the group losses combined with weights ||Y_g||^2 (= the
 * normalised loss of the whole conv output), iterations and seconds summed.
 * weight, bias, x, x_in must be 4-byte aligned (AQ_ERR_ARG naming the array
 * otherwise; aq_layer_run itself accepts any alignment). */
aq_status aq_conv_run(const aq_conv_spec *s, const char *name, const float *weight, const float *bias,
                      const float *x, const float *x_in, int N, int H, int W, const aq_layer_opts *o,
                      aq_layer_result *out, aq_error *err);

#endif
