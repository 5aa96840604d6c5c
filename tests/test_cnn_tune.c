/* test_cnn_tune.c — src/cnn/cnn_tune.h on a small residual CNN built here
 * (Conv -> BN -> Relu -> MaxPool -> Conv -> BN -> Add(residual) -> Clip ->
 * AveragePool -> GlobalAveragePool -> Flatten -> Gemm -> Softmax):
 *  - BN folding leaves the function unchanged (logits within a float32
 *    bound) and turns the BNs into Identity;
 *  - BN re-estimation gives the refolded scales and biases that a float64
 *    forward pass written here computes from the textbook definition;
 *  - the bias gradient of the tuning loss against central differences;
 *  - bias tuning lowers the KL, runs to the same bytes twice, and refuses
 *    an op without a backward by naming the node. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/cnn/cnn_tune_internal.h"
#include "test_cnn_build.h"
#include "testutil.h"

enum { NI = 24, CI = 2, HW = 8, C1 = 3, PH = 4, FC = 4, IMG = CI * HW * HW };

static float w1[C1 * CI * 9], w2[C1 * C1 * 9], cb2[C1], bn[2][4][C1], w3[FC * C1], b3[FC];
static uint8_t px[NI * IMG];
static const aq_cnn_norm norm = {0, 0.5, 0.25};

static void conv3(aq_cnn_graph *g, const char *name, const char *const *in, int n_in,
                  const char *out)
{
    aq_cnn_node *n = tg_node(g, AQ_OP_CONV, name, n_in, in, out);
    n->a.kernel[0] = n->a.kernel[1] = 3;
    for (int i = 0; i < 4; i++)
        n->a.pads[i] = 1;
}

/* Whether build() puts a Concat (the clipped conv2 branch and the pooled
 * conv1 output, along H) before the average pool, for its backward. */
static int with_concat;

/* mid: the op between the two convs' blocks (Relu, or Sigmoid for the refusal) */
static void build(aq_cnn_graph *g, aq_cnn_op mid)
{
    uint64_t s = 5;
    for (size_t i = 0; i < sizeof w1 / 4; i++)
        w1[i] = (float)aq_test_nrand(&s) * 0.4f;
    for (size_t i = 0; i < sizeof w2 / 4; i++)
        w2[i] = (float)aq_test_nrand(&s) * 0.3f;
    for (int i = 0; i < C1; i++)
        cb2[i] = (float)aq_test_nrand(&s) * 0.1f;
    for (int l = 0; l < 2; l++)
        for (int c = 0; c < C1; c++) {
            bn[l][0][c] =
                (float)(0.5 + 0.5 * fabs(aq_test_nrand(&s))) * (c == 1 ? -1.0f : 1.0f); /* gamma */
            bn[l][1][c] = (float)aq_test_nrand(&s) * 0.2f;                              /* beta */
            bn[l][2][c] = (float)aq_test_nrand(&s) * 0.3f;                              /* mean */
            bn[l][3][c] = (float)(0.5 + fabs(aq_test_nrand(&s)));                       /* var */
        }
    for (int i = 0; i < FC * C1; i++)
        w3[i] = (float)aq_test_nrand(&s) * 4.0f; /* peaky logits: a KL well above rounding */
    for (int i = 0; i < FC; i++)
        b3[i] = (float)aq_test_nrand(&s) * 0.1f;
    for (int i = 0; i < NI * IMG; i++) {
        double v = 128 + 60 * aq_test_nrand(&s);
        px[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    tg_init(g, 13);
    int64_t xs[4] = {1, CI, HW, HW}, w1s[4] = {C1, CI, 3, 3}, w2s[4] = {C1, C1, 3, 3}, cs[1] = {C1},
            w3s[2] = {FC, C1}, b3s[1] = {FC};
    g->input = tg_input(g, "x", 4, xs);
    tg_const(g, "w1", 4, w1s, w1), tg_const(g, "w2", 4, w2s, w2), tg_const(g, "cb2", 1, cs, cb2);
    tg_const(g, "w3", 2, w3s, w3), tg_const(g, "b3", 1, b3s, b3);
    const char *pn[2][4] = {{"g1", "be1", "m1", "v1"}, {"g2", "be2", "m2", "v2"}};
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 4; k++)
            tg_const(g, pn[l][k], 1, cs, bn[l][k]);
    conv3(g, "conv1", (const char *[]){"x", "w1"}, 2, "c1");
    tg_node(g, AQ_OP_BATCHNORM, "bn1", 5, (const char *[]){"c1", "g1", "be1", "m1", "v1"}, "n1");
    tg_node(g, mid, "act1", 1, (const char *[]){"n1"}, "r1");
    aq_cnn_node *n = tg_node(g, AQ_OP_MAXPOOL, "pool1", 1, (const char *[]){"r1"}, "p1");
    n->a.kernel[0] = n->a.kernel[1] = 2, n->a.strides[0] = n->a.strides[1] = 2;
    conv3(g, "conv2", (const char *[]){"p1", "w2", "cb2"}, 3, "c2");
    tg_node(g, AQ_OP_BATCHNORM, "bn2", 5, (const char *[]){"c2", "g2", "be2", "m2", "v2"}, "n2");
    tg_node(g, AQ_OP_ADD, "add", 2, (const char *[]){"n2", "p1"}, "a2");
    n = tg_node(g, AQ_OP_CLIP, "clip", 1, (const char *[]){"a2"}, "k2");
    n->a.clip_min = -0.5f, n->a.clip_max = 1.5f;
    if (with_concat) {
        n = tg_node(g, AQ_OP_CONCAT, "cat", 2, (const char *[]){"k2", "p1"}, "kc");
        n->a.axis = 2;
    }
    n = tg_node(g, AQ_OP_AVGPOOL, "avg", 1, (const char *[]){with_concat ? "kc" : "k2"}, "ap");
    n->a.kernel[0] = n->a.kernel[1] = 3;
    for (int i = 0; i < 4; i++)
        n->a.pads[i] = 1;
    tg_node(g, AQ_OP_GLOBALAVGPOOL, "gap", 1, (const char *[]){"ap"}, "gp");
    tg_node(g, AQ_OP_FLATTEN, "flat", 1, (const char *[]){"gp"}, "f");
    n = tg_node(g, AQ_OP_GEMM, "fc", 3, (const char *[]){"f", "w3", "b3"}, "y");
    n->a.trans_b = 1;
    tg_node(g, AQ_OP_SOFTMAX, "softmax", 1, (const char *[]){"y"}, "out");
    g->output = tg_value(g, "out");
}

static aq_cnnq_result *copy_res(const aq_cnnq_result *r, int L)
{
    aq_cnnq_result *c = calloc((size_t)L, sizeof *c);
    for (int i = 0; i < L; i++) {
        size_t d = (size_t)r[i].d_out;
        c[i] = r[i];
        c[i].codes = malloc(d * (size_t)r[i].d_in);
        memcpy(c[i].codes, r[i].codes, d * (size_t)r[i].d_in);
        c[i].scale = malloc(3 * d * sizeof(float));
        c[i].zero = c[i].scale + d, c[i].bias = c[i].scale + 2 * d;
        memcpy(c[i].scale, r[i].scale, d * 4), memcpy(c[i].zero, r[i].zero, d * 4);
        memcpy(c[i].bias, r[i].bias, d * 4);
    }
    return c;
}

static void free_res(aq_cnnq_result *r, int L)
{
    for (int i = 0; i < L; i++)
        aq_cnnq_result_free(&r[i]);
    free(r);
}

/* The folded graph, its layers quantized with RTN min/max at `opt`. */
typedef struct fixture {
    aq_cnn_graph g;
    aq_cnnq_bnfold *f;
    int nf, L;
    aq_cnnq_capture cap;
    aq_cnnq_result *res;
    aq_cnnq_result **rp;
    aq_cnnq_seq seq;
} fixture;

static void fixture_init(fixture *x, aq_cnn_op mid, const char *opt)
{
    aq_error err = {0};
    build(&x->g, mid);
    CHECK_OK(aq_cnnq_fold_bn(&x->g, &x->f, &x->nf, &err), &err);
    CHECK_OK(aq_cnnq_capture_run(&x->g, px, NI, IMG, &norm, 7, &x->cap, &err), &err);
    x->L = x->cap.n_layers;
    x->res = calloc((size_t)x->L, sizeof *x->res);
    x->rp = calloc((size_t)x->L, sizeof *x->rp);
    aq_layer_opts o[3];
    for (int i = 0; i < x->L; i++) {
        aq_layer_opts_default(&o[i]);
        CHECK_OK(aq_layer_opts_parse(opt, &o[i], &err), &err);
        x->rp[i] = &x->res[i];
    }
    CHECK_OK(aq_cnnq_quantize_all(&x->g, &x->cap, NULL, AQ_CNNQ_RTN_MINMAX, o, x->res, &err), &err);
    x->seq = (aq_cnnq_seq){px, IMG, &norm, 7};
}

static void fixture_free(fixture *x)
{
    free_res(x->res, x->L);
    free(x->rp);
    aq_cnnq_capture_free(&x->cap);
    aq_cnnq_bnfold_free(x->f, x->nf);
    aq_cnn_graph_free(&x->g);
}

/* Folding: same outputs, BNs now Identity, conv1 got a bias input. The
 * output is a softmax (Lipschitz 1/2 in the max norm) of logits of size
 * ~10; each graph's float32 logits are within 1e-6 relative of the exact
 * function here (K <= 27 terms a layer, gamma(27) ~ 1.6e-6 of magnitudes of
 * the same size as the values), and the fold moves each weight by one
 * float32 rounding (2^-24 relative): 1e-5 on probabilities bounds it. */
static void test_fold(void)
{
    aq_error err = {0};
    aq_cnn_graph g, h;
    build(&g, AQ_OP_RELU), build(&h, AQ_OP_RELU);
    aq_cnnq_bnfold *f;
    int nf;
    CHECK_OK(aq_cnnq_fold_bn(&h, &f, &nf, &err), &err);
    CHECK(nf == 2 && f[0].channels == C1 && f[0].gamma[1] == bn[0][0][1] &&
          f[1].var[2] == bn[1][3][2]);
    CHECK(h.nodes[1].op == AQ_OP_IDENTITY && h.nodes[5].op == AQ_OP_IDENTITY &&
          h.nodes[0].n_in == 3);
    CHECK(f[0].conv_node == 0 && f[0].bn_node == 1 && f[1].conv_node == 4 && f[1].bn_node == 5);
    int32_t pa[NI], pb[NI];
    float la[NI * FC], lb[NI * FC];
    CHECK_OK(aq_cnn_predict(&g, px, NI, IMG, &norm, 5, pa, la, NULL, &err), &err);
    CHECK_OK(aq_cnn_predict(&h, px, NI, IMG, &norm, 5, pb, lb, NULL, &err), &err);
    double worst = 0;
    for (int i = 0; i < NI * FC; i++)
        worst = fmax(worst, fabs((double)la[i] - lb[i]));
    CHECK_MSG(worst <= 1e-5, "folded vs unfolded: %g", worst);
    /* a BN whose conv output is read twice (the Add reads bn1's input) stays */
    aq_cnn_node *add = &g.nodes[6];
    add->in[1] = tg_value(&g, "c1"); /* shapes differ, but folding looks only at readers */
    aq_cnnq_bnfold *f2;
    int nf2;
    CHECK_OK(aq_cnnq_fold_bn(&g, &f2, &nf2, &err), &err);
    CHECK(nf2 == 1 && f2[0].bn_node == 5 && g.nodes[1].op == AQ_OP_BATCHNORM);
    aq_cnnq_bnfold_free(f, nf), aq_cnnq_bnfold_free(f2, nf2);
    aq_cnn_graph_free(&g), aq_cnn_graph_free(&h);
}

/* --- BN re-estimation against a float64 forward pass --- */

static void dequant_d(const aq_cnnq_result *r, double *w)
{
    for (int o = 0; o < r->d_out; o++)
        for (int c = 0; c < r->d_in; c++)
            w[o * r->d_in + c] =
                (double)r->scale[o] * ((double)r->codes[o * r->d_in + c] - r->zero[o]);
}

/* 3x3, pad 1, stride 1 on [C, H, H] */
static void conv_d(const double *x, int C, int H, const double *w, const float *b, int M, double *y)
{
    for (int m = 0; m < M; m++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < H; j++) {
                double a = b[m];
                for (int c = 0; c < C; c++)
                    for (int ky = 0; ky < 3; ky++)
                        for (int kx = 0; kx < 3; kx++) {
                            int iy = i + ky - 1, ix = j + kx - 1;
                            if (iy >= 0 && iy < H && ix >= 0 && ix < H)
                                a += w[((m * C + c) * 3 + ky) * 3 + kx] * x[(c * H + iy) * H + ix];
                        }
                y[(m * H + i) * H + j] = a;
            }
}

/* The textbook refold from the conv outputs z [NI][C1][sp] of the old
 * folded layer: the pre-BN value u = (z - beta) / f + mean (f = gamma /
 * sqrt(var + eps)), its statistics over the images and positions (two
 * passes, population variance), f' = gamma / sqrt(var_u + eps), and the
 * layer refolded with f' in place of f: scale * f'/f and ((b - beta) / f +
 * mean - mean_u) f' + beta. */
static void refold_ref(int l, const double *z, int sp, const aq_cnnq_result *old, double eps,
                       double *scale, double *bias, double *ratio)
{
    for (int c = 0; c < C1; c++) {
        double g = bn[l][0][c], be = bn[l][1][c], mu = bn[l][2][c],
               f = g / sqrt((double)bn[l][3][c] + eps);
        double s = 0, q = 0, n = (double)NI * sp;
        for (int i = 0; i < NI; i++)
            for (int e = 0; e < sp; e++)
                s += (z[(i * C1 + c) * sp + e] - be) / f + mu;
        double mean_u = s / n;
        for (int i = 0; i < NI; i++)
            for (int e = 0; e < sp; e++) {
                double d = (z[(i * C1 + c) * sp + e] - be) / f + mu - mean_u;
                q += d * d;
            }
        double f2 = g / sqrt(q / n + eps);
        ratio[c] = f2 / f;
        scale[c] = old->scale[c] * ratio[c];
        bias[c] = (((double)old->bias[c] - be) / f + mu - mean_u) * f2 + be;
    }
}

static void input_d(int i, double *x)
{
    for (int e = 0; e < IMG; e++)
        x[e] = (float)(((double)px[i * IMG + e] / 255.0 - norm.mean) / norm.std);
}

static void check_layer(const aq_cnnq_result *r, const double *scale, const double *bias,
                        const char *what)
{
    /* the engine's float32 conv outputs are within gamma(27) ~ 1.6e-6 of
     * their magnitudes of the float64 ones; means and variances (magnitude
     * over spread ~10 here) inherit ~1e-5 relative: 1e-4 leaves 10x */
    for (int c = 0; c < C1; c++) {
        CHECK_MSG(fabs(r->scale[c] - scale[c]) <= 1e-4 * fabs(scale[c]), "%s scale[%d] %g vs %g",
                  what, c, (double)r->scale[c], scale[c]);
        CHECK_MSG(fabs(r->bias[c] - bias[c]) <= 1e-4 * fmax(1, fabs(bias[c])),
                  "%s bias[%d] %g vs %g", what, c, (double)r->bias[c], bias[c]);
    }
}

static void test_bn_reestimate(void)
{
    aq_error err = {0};
    fixture x;
    fixture_init(&x, AQ_OP_RELU, "w4a16");
    aq_cnnq_result *old = copy_res(x.res, x.L);
    double W1[C1 * CI * 9], W2[C1 * C1 * 9], xin[IMG], s1[C1], bb1[C1], r1[C1], s2[C1], bb2[C1],
        r2[C1];
    double *z1 = malloc(sizeof(double) * NI * C1 * HW * HW),
           *z2 = malloc(sizeof(double) * NI * C1 * PH * PH);
    double eps = x.f[0].eps;
    dequant_d(&old[0], W1), dequant_d(&old[1], W2);
    for (int i = 0; i < NI; i++)
        input_d(i, xin), conv_d(xin, CI, HW, W1, old[0].bias, C1, z1 + i * C1 * HW * HW);
    refold_ref(0, z1, HW * HW, &old[0], eps, s1, bb1, r1);
    float nb1[C1];
    for (int c = 0; c < C1; c++)
        nb1[c] = (float)bb1[c];
    for (int o = 0; o < C1; o++)
        for (int k = 0; k < CI * 9; k++)
            W1[o * CI * 9 + k] *= r1[o];
    for (int i = 0; i < NI; i++) {
        double a[C1 * HW * HW], p[C1 * PH * PH];
        input_d(i, xin), conv_d(xin, CI, HW, W1, nb1, C1, a);
        for (int c = 0; c < C1; c++) /* Relu then MaxPool 2x2 */
            for (int y = 0; y < PH; y++)
                for (int z = 0; z < PH; z++) {
                    double m = 0;
                    for (int d = 0; d < 4; d++)
                        m = fmax(m, a[(c * HW + 2 * y + d / 2) * HW + 2 * z + d % 2]);
                    p[(c * PH + y) * PH + z] = m;
                }
        conv_d(p, C1, PH, W2, old[1].bias, C1, z2 + i * C1 * PH * PH);
    }
    refold_ref(1, z2, PH * PH, &old[1], eps, s2, bb2, r2);
    aq_cnnq_tune_opts o;
    aq_cnnq_tune_defaults(&o);
    o.bias_correct = 0, o.bias_iters = 0, o.n_images = NI;
    aq_cnnq_tune_report rep;
    CHECK_OK(aq_cnnq_tune(&x.g, x.cap.layers, x.L, x.rp, x.f, x.nf, &x.seq, &o, &rep, &err), &err);
    CHECK(rep.bn_reestimated == 2);
    check_layer(&x.res[0], s1, bb1, "conv1");
    check_layer(&x.res[1], s2, bb2, "conv2");
    /* the re-estimation must have moved something (else the test is empty) */
    CHECK(fabs(r1[0] - 1) > 1e-3 && fabs(r2[0] - 1) > 1e-3);
    CHECK(!memcmp(x.res[2].scale, old[2].scale, FC * 4) &&
          !memcmp(x.res[2].bias, old[2].bias, FC * 4));
    free(z1), free(z2);
    free_res(old, x.L);
    fixture_free(&x);
}

/* Bias correction of conv1 (correct_folded: it has a BN), whose input is
 * the same in the FP and the quantized model: afterwards the float64 mean
 * per channel of conv(x, W^) + b' over the images equals that of the FP
 * folded conv(x, W) + b. */
static void test_bias_correct(void)
{
    aq_error err = {0};
    fixture x;
    fixture_init(&x, AQ_OP_RELU, "w4a16");
    aq_cnnq_tune_opts o;
    aq_cnnq_tune_defaults(&o);
    o.bn_reestimate = 0, o.bias_iters = 0, o.correct_folded = 1, o.n_images = NI;
    float b_before[C1];
    memcpy(b_before, x.res[0].bias, sizeof b_before);
    aq_cnnq_tune_report rep;
    CHECK_OK(aq_cnnq_tune(&x.g, x.cap.layers, x.L, x.rp, x.f, x.nf, &x.seq, &o, &rep, &err), &err);
    CHECK(rep.biases_corrected == 3);
    const aq_cnn_node *cv = &x.g.nodes[0];
    const float *wf = x.g.values[cv->in[1]].data, *bf = x.g.values[cv->in[2]].data;
    double Wq[C1 * CI * 9], Wf[C1 * CI * 9], xin[IMG], a[C1 * HW * HW], q[C1 * HW * HW],
        mf[C1] = {0}, mq[C1] = {0};
    dequant_d(&x.res[0], Wq);
    for (int k = 0; k < C1 * CI * 9; k++)
        Wf[k] = wf[k];
    for (int i = 0; i < NI; i++) {
        input_d(i, xin), conv_d(xin, CI, HW, Wf, bf, C1, a),
            conv_d(xin, CI, HW, Wq, x.res[0].bias, C1, q);
        for (int c = 0; c < C1; c++)
            for (int e = 0; e < HW * HW; e++)
                mf[c] += a[c * HW * HW + e], mq[c] += q[c * HW * HW + e];
    }
    for (int c = 0; c < C1; c++) {
        double n = (double)NI * HW * HW;
        /* the engine's float32 means, against float64: gamma(18) of the
         * conv magnitudes (~10), 1e-5 leaves a margin of 10 */
        CHECK_MSG(fabs(mq[c] / n - mf[c] / n) <= 1e-5 * fmax(1, fabs(mf[c] / n)),
                  "channel %d: %g vs %g", c, mq[c] / n, mf[c] / n);
    }
    double moved = 0; /* the 4-bit weights did shift the mean: not a no-op */
    for (int c = 0; c < C1; c++)
        moved = fmax(moved, fabs(x.res[0].bias[c] - b_before[c]));
    CHECK_MSG(moved > 1e-3, "bias moved by %g", moved);
    fixture_free(&x);
}

/* --- the bias gradient against central differences --- */

static double loss_at(aq_tune_net *t, aq_cnnq_result **rp, const float *fp)
{
    aq_error err = {0};
    double l = NAN;
    aq_tune_net_set_bias(t, rp);
    CHECK_OK(aq_tune_net_loss_grad(t, fp, &l, NULL, &err), &err);
    return l;
}

static void test_grad(void)
{
    aq_error err = {0};
    fixture x;
    fixture_init(&x, AQ_OP_RELU, "w4a16");
    aq_tune_net t;
    CHECK_OK(aq_tune_net_init(&t, &x.g, x.cap.layers, x.L, x.rp, NI, &err), &err);
    size_t idx[NI];
    int32_t pred[NI];
    float fp[NI * FC];
    for (int i = 0; i < NI; i++)
        idx[i] = (size_t)i;
    aq_tune_images(&x.seq, idx, NI, t.x);
    CHECK_OK(aq_cnn_predict(&x.g, px, NI, IMG, &norm, 5, pred, fp, NULL, &err), &err);
    double gb[C1 + C1 + FC], l0, h = 1e-3, worst = 0, gmax = 0;
    CHECK_OK(aq_tune_net_loss_grad(&t, fp, &l0, gb, &err), &err);
    for (int i = 0, k = 0; i < x.L; i++)
        for (int c = 0; c < x.res[i].d_out; c++, k++) {
            float b0 = x.res[i].bias[c];
            x.res[i].bias[c] = b0 + (float)h;
            double lp = loss_at(&t, x.rp, fp);
            x.res[i].bias[c] = b0 - (float)h;
            double lm = loss_at(&t, x.rp, fp);
            x.res[i].bias[c] = b0;
            double fd = (lp - lm) / (2 * h);
            worst = fmax(worst, fabs(fd - gb[k])), gmax = fmax(gmax, fabs(gb[k]));
        }
    /* central differences at h = 1e-3: the truncation h^2 |L'''| / 6 and
     * the loss's float32 noise (probabilities rounded at 6e-8 relative, a
     * loss of ~1e-3: ~1e-10, over 2h) are each below 1e-6 here (measured:
     * 7e-7 with gradients up to 1.4e-2); 1e-5 still catches a wrong op
     * backward, which moves a gradient by its own size */
    CHECK_MSG(worst <= 1e-5 && gmax > 1e-3, "worst |fd - grad| %g, largest gradient %g", worst,
              gmax);
    CHECK(l0 > 0);
    aq_tune_net_free(&t);
    fixture_free(&x);
}

/* --- tuning: lower KL, the same bytes twice, a refused op --- */

static void test_tune(void)
{
    aq_error err = {0};
    fixture x;
    fixture_init(&x, AQ_OP_RELU, "w4a8");
    aq_cnnq_result *again = copy_res(x.res, x.L);
    aq_cnnq_result *rp2[3] = {&again[0], &again[1], &again[2]};
    aq_cnnq_tune_opts o;
    aq_cnnq_tune_defaults(&o);
    o.n_images = NI, o.bias_iters = 40, o.batch = 8, o.bias_lr = 1e-2;
    aq_cnnq_tune_report r1, r2;
    CHECK_OK(aq_cnnq_tune(&x.g, x.cap.layers, x.L, x.rp, x.f, x.nf, &x.seq, &o, &r1, &err), &err);
    CHECK_OK(aq_cnnq_tune(&x.g, x.cap.layers, x.L, rp2, x.f, x.nf, &x.seq, &o, &r2, &err), &err);
    printf("tune: KL %g -> %g\n", r1.kl_before, r1.kl_after);
    CHECK(r1.bn_reestimated == 2 && r1.biases_corrected == 1 && !r1.tune_reverted); /* fc only */
    CHECK(r1.kl_after < r1.kl_before);
    for (int i = 0; i < x.L; i++) {
        size_t d = (size_t)x.res[i].d_out * 4;
        CHECK(!memcmp(x.res[i].scale, again[i].scale, d) &&
              !memcmp(x.res[i].bias, again[i].bias, d));
    }
    CHECK(r1.kl_before == r2.kl_before && r1.kl_after == r2.kl_after);
    free_res(again, x.L);
    fixture_free(&x);

    fixture y;
    fixture_init(&y, AQ_OP_SIGMOID, "w4a8");
    o.bn_reestimate = 0, o.bias_correct = 0, o.bias_iters = 1;
    aq_status st = aq_cnnq_tune(&y.g, y.cap.layers, y.L, y.rp, y.f, y.nf, &y.seq, &o, &r1, &err);
    CHECK_MSG(st == AQ_ERR_ARG && strstr(err.msg, "'act1'") && strstr(err.msg, "Sigmoid"), "%s",
              err.msg);
    o.n_images = 0;
    CHECK(aq_cnnq_tune(&y.g, y.cap.layers, y.L, y.rp, y.f, y.nf, &y.seq, &o, &r1, &err) ==
          AQ_ERR_ARG);
    fixture_free(&y);
}

/* --- the split over processes (aq_cnnq_split): threads stand in for ranks --- */

enum { NT = 3 }; /* uneven slices of the 24 images and of the 8-image batches */

typedef struct tshare {
    pthread_barrier_t bar;
    double *rows[NT];
    aq_status st[NT];
} tshare;

typedef struct tjob {
    tshare *sh;
    int rank;
    fixture *x;
    aq_cnnq_result *res; /* this thread's copy */
    const aq_cnnq_tune_opts *o;
    aq_cnnq_tune_report rep;
    aq_status st;
} tjob;

/* Every thread publishes its table, then copies the others' slices. */
static aq_status thread_gather(void *ctx, aq_status local, double *rows, size_t n, size_t len,
                               aq_error *err)
{
    tjob *j = ctx;
    tshare *sh = j->sh;
    sh->st[j->rank] = local, sh->rows[j->rank] = rows;
    pthread_barrier_wait(&sh->bar);
    aq_status st = AQ_OK;
    for (int k = 0; k < NT; k++)
        if (sh->st[k] != AQ_OK) st = sh->st[k];
    for (int k = 0; st == AQ_OK && k < NT; k++) {
        size_t lo = n * (size_t)k / NT, hi = n * (size_t)(k + 1) / NT;
        if (k != j->rank) memcpy(rows + lo * len, sh->rows[k] + lo * len, (hi - lo) * len * sizeof *rows);
    }
    pthread_barrier_wait(&sh->bar); /* nobody writes its table again before all have read */
    if (st != AQ_OK && local == AQ_OK) aq_fail(err, st, "another thread failed");
    return st;
}

static void *tune_thread(void *arg)
{
    tjob *j = arg;
    aq_error err = {0};
    aq_cnnq_split sp = {j->rank, NT, thread_gather, j};
    aq_cnnq_tune_opts o = *j->o;
    o.split = &sp;
    aq_cnnq_result *rp[3] = {&j->res[0], &j->res[1], &j->res[2]};
    fixture *x = j->x;
    j->st = aq_cnnq_tune(&x->g, x->cap.layers, x->L, rp, x->f, x->nf, &x->seq, &o, &j->rep, &err);
    return NULL;
}

/* Three "ranks" end with the bytes of one process alone (the property that
 * keeps `quantize` P-independent), report included. */
static void test_tune_split(void)
{
    aq_error err = {0};
    fixture x;
    fixture_init(&x, AQ_OP_RELU, "w4a8");
    aq_cnnq_tune_opts o;
    aq_cnnq_tune_defaults(&o);
    o.n_images = NI, o.bias_iters = 20, o.batch = 8, o.bias_lr = 1e-2;
    tshare sh;
    pthread_barrier_init(&sh.bar, NULL, NT);
    tjob j[NT];
    pthread_t th[NT];
    for (int k = 0; k < NT; k++) {
        j[k] = (tjob){&sh, k, &x, copy_res(x.res, x.L), &o, {0}, AQ_OK};
        CHECK(pthread_create(&th[k], NULL, tune_thread, &j[k]) == 0);
    }
    for (int k = 0; k < NT; k++) pthread_join(th[k], NULL);
    aq_cnnq_tune_report r1;
    CHECK_OK(aq_cnnq_tune(&x.g, x.cap.layers, x.L, x.rp, x.f, x.nf, &x.seq, &o, &r1, &err), &err);
    CHECK(r1.kl_after < r1.kl_before && r1.bn_reestimated == 2); /* the stage did something */
    for (int k = 0; k < NT; k++) {
        CHECK(j[k].st == AQ_OK);
        CHECK(j[k].rep.kl_before == r1.kl_before && j[k].rep.kl_after == r1.kl_after);
        for (int i = 0; i < x.L; i++) {
            size_t d = (size_t)x.res[i].d_out * 4;
            CHECK_MSG(!memcmp(x.res[i].scale, j[k].res[i].scale, d) &&
                          !memcmp(x.res[i].bias, j[k].res[i].bias, d),
                      "thread %d layer %d: other bytes than one process", k, i);
        }
        free_res(j[k].res, x.L);
    }
    pthread_barrier_destroy(&sh.bar);
    fixture_free(&x);
}

int main(void)
{
    test_tune_split();
    test_fold();
    test_bn_reestimate();
    test_bias_correct();
    test_grad();
    with_concat = 1; /* the same gradient check through a Concat */
    test_grad();
    with_concat = 0;
    test_tune();
    AQ_TEST_END();
}
