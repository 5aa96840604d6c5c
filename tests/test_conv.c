/* test_conv.c — convolutions as AdaQuant problems: im2col rows times the
 * weight matrix equal a direct float64 convolution loop (written here) for
 * several stride / padding / dilation / groups cases, including depthwise;
 * aq_conv_run's reported loss equals the normalised error of a direct
 * convolution with its dequantised weights; bad specs are rejected. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/adaquant/conv.h"
#include "../src/adaquant/layer_state.h"
#include "testutil.h"

static uint64_t rs = 99;
static double grand(void) { return aq_test_nrand(&rs); }

/* Direct convolution in float64: out [N, C_out, OH, OW]. */
static void direct_conv(const aq_conv_spec *s, const float *w, const float *b, const float *x, int N, int H, int W,
                        int OH, int OW, double *out)
{
    int cg = s->c_in / s->groups, og = s->c_out / s->groups;
    for (int n = 0; n < N; n++)
        for (int oc = 0; oc < s->c_out; oc++) {
            int g = oc / og;
            for (int oy = 0; oy < OH; oy++)
                for (int ox = 0; ox < OW; ox++) {
                    double acc = b ? b[oc] : 0.0;
                    for (int c = 0; c < cg; c++)
                        for (int ky = 0; ky < s->kh; ky++)
                            for (int kx = 0; kx < s->kw; kx++) {
                                int iy = oy * s->stride_h - s->pad_h + ky * s->dil_h;
                                int ix = ox * s->stride_w - s->pad_w + kx * s->dil_w;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                acc += (double)w[((oc * cg + c) * s->kh + ky) * s->kw + kx] *
                                       x[(((size_t)n * s->c_in + g * cg + c) * H + iy) * W + ix];
                            }
                    out[(((size_t)n * s->c_out + oc) * OH + oy) * OW + ox] = acc;
                }
        }
}

static void test_im2col(aq_conv_spec s, int N, int H, int W)
{
    int OH, OW;
    aq_error err = {0};
    CHECK_OK(aq_conv_check(&s, H, W, &OH, &OW, &err), &err);
    int cg = s.c_in / s.groups, og = s.c_out / s.groups;
    size_t K = (size_t)cg * s.kh * s.kw, rows = (size_t)N * OH * OW;
    float *w = malloc((size_t)s.c_out * K * 4), *b = malloc((size_t)s.c_out * 4);
    float *x = malloc((size_t)N * s.c_in * H * W * 4), *xr = malloc(rows * K * 4);
    for (size_t i = 0; i < (size_t)s.c_out * K; i++) w[i] = (float)grand();
    for (int i = 0; i < s.c_out; i++) b[i] = (float)grand();
    for (size_t i = 0; i < (size_t)N * s.c_in * H * W; i++) x[i] = (float)grand();
    double *ref = malloc((size_t)N * s.c_out * OH * OW * 8);
    direct_conv(&s, w, b, x, N, H, W, OH, OW, ref);
    double maxerr = 0;
    for (int g = 0; g < s.groups; g++) {
        aq_im2col(x, N, H, W, &s, g, xr);
        for (size_t r = 0; r < rows; r++) {
            size_t n = r / ((size_t)OH * OW), pix = r % ((size_t)OH * OW);
            for (int o = 0; o < og; o++) {
                int oc = g * og + o;
                double acc = b[oc];
                for (size_t k = 0; k < K; k++) acc += (double)w[(size_t)oc * K + k] * xr[r * K + k];
                maxerr = fmax(maxerr, fabs(acc - ref[((n * s.c_out) + oc) * OH * OW + pix]));
            }
        }
    }
    /* both are float64 sums of the same float32 products in different
     * orders: K (<= a few hundred) terms of O(1) give ~K * 1e-16; 1e-9 is far
     * above that and far below any indexing mistake (O(0.1)) */
    CHECK_MSG(maxerr < 1e-9, "im2col conv differs from direct conv by %g (groups %d stride %d pad %d dil %d)", maxerr,
              s.groups, s.stride_h, s.pad_h, s.dil_h);
    free(w);
    free(b);
    free(x);
    free(xr);
    free(ref);
}

/* AdaQuant on a conv: the reported loss is the direct conv's normalised error. */
static void test_conv_run(aq_conv_spec s, int N, int H, int W, const char *opt, int dead)
{
    int OH, OW;
    aq_error err = {0};
    CHECK_OK(aq_conv_check(&s, H, W, &OH, &OW, &err), &err);
    size_t K = (size_t)(s.c_in / s.groups) * s.kh * s.kw, ny = (size_t)N * s.c_out * OH * OW;
    float *w = malloc((size_t)s.c_out * K * 4), *b = malloc((size_t)s.c_out * 4);
    float *x = malloc((size_t)N * s.c_in * H * W * 4), *wq = malloc((size_t)s.c_out * K * 4);
    for (size_t i = 0; i < (size_t)s.c_out * K; i++) w[i] = (float)(0.3 * grand());
    for (int i = 0; i < s.c_out; i++) b[i] = (float)(0.1 * grand());
    for (size_t i = 0; i < (size_t)N * s.c_in * H * W; i++) x[i] = (float)fabs(grand()); /* post-ReLU-like */
    if (dead) { /* channel 1: dead input (all zero); output channel 2: pruned (zero weights, bias) */
        for (int n = 0; n < N; n++) memset(x + ((size_t)n * s.c_in + 1) * H * W, 0, (size_t)H * W * 4);
        memset(w + 2 * K, 0, K * 4);
        b[2] = 0;
    }
    aq_layer_opts o;
    aq_layer_opts_default(&o);
    CHECK_OK(aq_layer_opts_parse(opt, &o, &err), &err);
    o.iters = 20;
    aq_layer_result r;
    if (aq_conv_run(&s, "conv", w, b, x, NULL, N, H, W, &o, &r, &err) != AQ_OK) {
        CHECK_MSG(0, "aq_conv_run: %s", err.msg);
        goto done;
    }
    CHECK(r.d_out == (size_t)s.c_out && r.d_in == K);
    CHECK(r.loss_final <= r.loss_init);
    if (dead) { /* trivial groups are stored exactly */
        CHECK(r.bias[1] == b[1] && r.bias[2] == 0 && r.w_scale[2] == 1 && r.codes[2 * K] == 0);
    }
    aq_layer_result_dequant(&r, wq);
    float *xq = x;
    if (r.a_bits < 16) {
        xq = malloc((size_t)N * s.c_in * H * W * 4);
        float qmax = (float)((1 << r.a_bits) - 1);
        for (size_t i = 0; i < (size_t)N * s.c_in * H * W; i++) {
            float t = nearbyintf(x[i] / r.a_scale) + r.a_zero;
            t = t < 0 ? 0 : t > qmax ? qmax : t;
            xq[i] = r.a_scale * (t - r.a_zero);
        }
    }
    double *y = malloc(ny * 8), *yh = malloc(ny * 8), num = 0, den = 0;
    direct_conv(&s, w, b, x, N, H, W, OH, OW, y);
    direct_conv(&s, wq, r.bias, xq, N, H, W, OH, OW, yh);
    for (size_t i = 0; i < ny; i++) {
        num += (y[i] - yh[i]) * (y[i] - yh[i]);
        den += y[i] * y[i];
    }
    /* zero padding is not quantized (pads are exact zeros in both) */
    /* the reported loss is the float64 Gram form, num = w A w - 2 w B w^ +
     * w^ C w^: a difference of terms ~1/loss times larger, so ~1e-16/loss
     * relative (BLAS sums, any order); 1e-5 holds for losses above ~1e-10 */
    CHECK_MSG(fabs(num / den - r.loss_final) <= 1e-5 * r.loss_final, "%s: direct %g vs reported %g", opt, num / den,
              r.loss_final);
    if (xq != x) free(xq);
    free(y);
    free(yh);
    aq_layer_result_free(&r);
done:
    free(w);
    free(b);
    free(x);
    free(wq);
}

int main(void)
{
    /* c_in, c_out, kh, kw, stride h/w, pad h/w, dil h/w, groups */
    test_im2col((aq_conv_spec){3, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1}, 2, 7, 6);
    test_im2col((aq_conv_spec){4, 6, 3, 2, 2, 1, 0, 1, 1, 1, 2}, 2, 9, 8);
    test_im2col((aq_conv_spec){2, 2, 3, 3, 1, 2, 2, 1, 2, 1, 1}, 1, 8, 9);
    test_im2col((aq_conv_spec){6, 6, 3, 3, 2, 2, 1, 1, 1, 1, 6}, 3, 7, 7); /* depthwise */
    test_im2col((aq_conv_spec){4, 8, 1, 1, 1, 1, 0, 0, 1, 1, 1}, 2, 5, 5); /* pointwise */
    test_im2col((aq_conv_spec){6, 3, 5, 3, 3, 2, 2, 0, 1, 2, 3}, 2, 11, 10);
    test_conv_run((aq_conv_spec){3, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1}, 4, 8, 8, "w4a16", 0);
    test_conv_run((aq_conv_spec){4, 6, 3, 3, 2, 2, 1, 1, 1, 1, 2}, 4, 8, 8, "w4a8", 0);
    test_conv_run((aq_conv_spec){8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 8}, 4, 6, 6, "w3a16", 0); /* depthwise */
    test_conv_run((aq_conv_spec){8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 8}, 4, 6, 6, "w4a8", 1); /* dead channels */
    aq_error err = {0};
    int oh, ow;
    CHECK(aq_conv_check(&(aq_conv_spec){4, 6, 3, 3, 1, 1, 0, 0, 1, 1, 4}, 5, 5, &oh, &ow, &err) == AQ_ERR_ARG &&
          strstr(err.msg, "groups"));
    CHECK(aq_conv_check(&(aq_conv_spec){4, 4, 5, 5, 1, 1, 0, 0, 2, 2, 1}, 5, 5, &oh, &ow, &err) == AQ_ERR_SHAPE);
    CHECK(aq_conv_check(&(aq_conv_spec){4, 4, 3, 3, 0, 1, 0, 0, 1, 1, 1}, 5, 5, &oh, &ow, &err) == AQ_ERR_ARG);
    AQ_TEST_END();
}
