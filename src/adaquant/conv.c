/* conv.c — convolution layers as per-group AdaQuant problems over im2col
 * rows (conv.h). One row buffer and one weight buffer are reused across
 * groups, so depthwise convs cost no per-group allocation here. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "layer_state.h"

aq_status aq_conv_check(const aq_conv_spec *s, int H, int W, int *oh, int *ow, aq_error *err)
{
    if (s->c_in < 1 || s->c_out < 1 || s->kh < 1 || s->kw < 1)
        return aq_fail(err, AQ_ERR_SHAPE, "conv: channels and kernel must be >= 1 (C_in %d, C_out %d, k %dx%d)",
                       s->c_in, s->c_out, s->kh, s->kw);
    if (s->stride_h < 1 || s->stride_w < 1 || s->dil_h < 1 || s->dil_w < 1 || s->pad_h < 0 || s->pad_w < 0)
        return aq_fail(err, AQ_ERR_ARG, "conv: stride and dilation must be >= 1 and padding >= 0 "
                       "(stride %dx%d, dilation %dx%d, padding %dx%d)", s->stride_h, s->stride_w, s->dil_h,
                       s->dil_w, s->pad_h, s->pad_w);
    if (s->groups < 1 || s->c_in % s->groups || s->c_out % s->groups)
        return aq_fail(err, AQ_ERR_ARG, "conv: groups %d must divide C_in %d and C_out %d", s->groups, s->c_in,
                       s->c_out);
    if (H < 1 || W < 1) return aq_fail(err, AQ_ERR_SHAPE, "conv: input spatial size %dx%d", H, W);
    long eh = (long)s->dil_h * (s->kh - 1) + 1, ew = (long)s->dil_w * (s->kw - 1) + 1;
    long h = ((long)H + 2L * s->pad_h - eh) / s->stride_h + 1, w = ((long)W + 2L * s->pad_w - ew) / s->stride_w + 1;
    if ((long)H + 2L * s->pad_h < eh || (long)W + 2L * s->pad_w < ew || h < 1 || w < 1)
        return aq_fail(err, AQ_ERR_SHAPE, "conv: kernel %dx%d (dilation %dx%d) does not fit the padded input %dx%d",
                       s->kh, s->kw, s->dil_h, s->dil_w, H + 2 * s->pad_h, W + 2 * s->pad_w);
    *oh = (int)h;
    *ow = (int)w;
    return AQ_OK;
}

void aq_im2col(const float *x, int N, int H, int W, const aq_conv_spec *s, int group, float *rows)
{
    int cg = s->c_in / s->groups, OH, OW;
    if (aq_conv_check(s, H, W, &OH, &OW, NULL) != AQ_OK) return;
    size_t K = (size_t)cg * s->kh * s->kw;
    for (int n = 0; n < N; n++)
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                float *r = rows + (((size_t)n * OH + oy) * OW + ox) * K;
                for (int c = 0; c < cg; c++) {
                    const float *xc = x + ((size_t)n * s->c_in + (size_t)group * cg + c) * H * W;
                    for (int ky = 0; ky < s->kh; ky++) {
                        int iy = oy * s->stride_h - s->pad_h + ky * s->dil_h;
                        for (int kx = 0; kx < s->kw; kx++) {
                            int ix = ox * s->stride_w - s->pad_w + kx * s->dil_w;
                            int in = iy >= 0 && iy < H && ix >= 0 && ix < W;
                            *r++ = in ? xc[(size_t)iy * W + ix] : 0.0f;
                        }
                    }
                }
            }
}

/* Copy a group's result rows into the combined result. */
static void put_group(aq_layer_result *out, const aq_layer_result *g, size_t row0)
{
    size_t K = g->d_in;
    memcpy(out->codes + row0 * K, g->codes, g->d_out * K);
    memcpy(out->w_scale + row0, g->w_scale, g->d_out * sizeof(float));
    memcpy(out->w_zero + row0, g->w_zero, g->d_out * sizeof(float));
    memcpy(out->bias + row0, g->bias, g->d_out * sizeof(float));
}

/* A group is trivial when its output cannot depend on the quantization:
 * all-zero weights and bias (Y = 0), or all-zero im2col rows (Y = b). Such
 * groups (dead or pruned channels, common in depthwise convs) get codes 0 on
 * a (1, 0) grid and b' = b: an exact result with loss 0. */
static int trivial_group(const float *w, const float *b, size_t og, size_t K, const float *xr, size_t rows)
{
    int zero_w = 1, zero_x = 1;
    for (size_t i = 0; i < og * K && zero_w; i++) zero_w = w[i] == 0.0f;
    for (size_t i = 0; i < og && zero_w && b; i++) zero_w = b[i] == 0.0f;
    for (size_t i = 0; i < rows * K && zero_x; i++) zero_x = xr[i] == 0.0f;
    return zero_w || zero_x;
}

/* Returns the group's output energy ||Y_g||^2 / N = sum b^2 (Y_g = b). */
static double put_trivial(aq_layer_result *out, const float *b, size_t og, size_t K, size_t row0)
{
    double e = 0;
    memset(out->codes + row0 * K, 0, og * K);
    for (size_t i = 0; i < og; i++) {
        out->w_scale[row0 + i] = 1.0f;
        out->w_zero[row0 + i] = 0.0f;
        out->bias[row0 + i] = b ? b[i] : 0.0f;
        e += b ? (double)b[i] * b[i] : 0.0;
    }
    return e;
}

aq_status aq_conv_run(const aq_conv_spec *s, const char *name, const float *weight, const float *bias,
                      const float *x, const float *x_in, int N, int H, int W, const aq_layer_opts *o,
                      aq_layer_result *out, aq_error *err)
{
    memset(out, 0, sizeof *out);
    const char *nm = name ? name : "conv";
    int OH, OW;
    if (aq_conv_check(s, H, W, &OH, &OW, err) != AQ_OK) {
        aq_error_prefix(err, "layer %s", nm);
        return err ? err->code : AQ_ERR_ARG;
    }
    if (N < 1) return aq_fail(err, AQ_ERR_ARG, "layer %s: no input rows (N = 0)", nm);
    const void *arr[4] = {weight, bias, x, x_in};
    const char *arr_name[4] = {"weight", "bias", "inputs", "inputs_q"};
    for (int i = 0; i < 4; i++)
        if ((uintptr_t)arr[i] % sizeof(float))
            return aq_fail(err, AQ_ERR_ARG, "layer %s: conv %s array %p is not 4-byte aligned (copy it first)", nm,
                           arr_name[i], arr[i]);
    size_t G = (size_t)s->groups, og = (size_t)s->c_out / G, K = (size_t)(s->c_in / s->groups) * s->kh * s->kw;
    size_t rows = (size_t)N * OH * OW;
    aq_layer_opts go = *o;
    if (o->a_bits < 16 && G > 1 && !o->act_fixed) {
        aq_actq q;
        const float *xa = x_in ? x_in : x;
        aq_actq_fit(&q, o->a_bits, xa, (size_t)N * s->c_in, (size_t)H * W);
        go.act_fixed = 1;
        go.act_scale = (float)q.scale;
        go.act_zero = (float)q.zero;
    }
    float *xr = malloc(rows * K * sizeof *xr), *xq = x_in ? malloc(rows * K * sizeof *xq) : NULL;
    out->codes = malloc((size_t)s->c_out * K);
    out->w_scale = malloc(3 * (size_t)s->c_out * sizeof(float));
    aq_status st = AQ_OK;
    if (!xr || (x_in && !xq) || !out->codes || !out->w_scale) {
        st = aq_fail_nomem(err, "conv im2col rows", rows * K * 8);
        goto done;
    }
    out->w_zero = out->w_scale + s->c_out;
    out->bias = out->w_scale + 2 * (size_t)s->c_out;
    double e_tot = 0, l_rtn = 0, l_gptq = 0, l_init = 0, l_fin = 0;
    for (size_t g = 0; g < G; g++) {
        aq_im2col(x, N, H, W, s, (int)g, xr);
        if (xq) aq_im2col(x_in, N, H, W, s, (int)g, xq);
        char gname[512];
        if (G > 1)
            snprintf(gname, sizeof gname, "%s/g%zu", nm, g);
        else
            snprintf(gname, sizeof gname, "%s", nm);
        const float *wg = weight + g * og * K, *bg = bias ? bias + g * og : NULL;
        if (trivial_group(wg, bg, og, K, xr, rows) && (!xq || trivial_group(wg, bg, og, K, xq, rows))) {
            e_tot += put_trivial(out, bg, og, K, g * og);
            continue;
        }
        aq_layer_problem p = {.name = gname, .d_out = og, .d_in = K, .weight = wg,
                              .bias = bg, .n_rows = rows, .x = xr, .x_in = xq};
        aq_layer_result r;
        AQ_TRY_GOTO(st, aq_layer_run(&p, &go, &r, err), done);
        put_group(out, &r, g * og);
        double e = r.y_energy;
        e_tot += e;
        l_rtn += e * r.loss_rtn;
        l_gptq += e * r.loss_gptq;
        l_init += e * r.loss_init;
        l_fin += e * r.loss_final;
        out->iterations += r.iterations;
        out->seconds += r.seconds;
        out->mode_used = r.mode_used;
        out->a_scale = r.a_scale;
        out->a_zero = r.a_zero;
        if (g == 0) out->seed = r.seed;
        aq_layer_result_free(&r);
    }
    /* Energies add over groups (disjoint output channels, same rows). */
    if (!(e_tot > 0)) {
        st = aq_fail(err, AQ_ERR_NUMERIC, "layer %s: the conv output is zero on the calibration inputs: the "
                     "normalised output error is undefined", nm);
        goto done;
    }
    out->loss_rtn = l_rtn / e_tot;
    out->loss_gptq = l_gptq / e_tot;
    out->loss_init = l_init / e_tot;
    out->loss_final = l_fin / e_tot;
    out->y_energy = e_tot;
    out->d_out = (size_t)s->c_out;
    out->d_in = K;
    out->w_bits = o->w_bits;
    out->a_bits = o->a_bits;
    out->symmetric = o->symmetric;
done:
    free(xr);
    free(xq);
    if (st != AQ_OK) aq_layer_result_free(out);
    return st;
}
