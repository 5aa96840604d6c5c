/* test_cnn_quant.c — the CNN quantizer's library parts (src/cnn/cnn_quant.h)
 * on a tiny CNN built here (Conv 3x3 pad 1 -> Relu -> MaxPool 2 -> Flatten
 * -> Gemm transB=0 -> MatMul): the layer list, the captured inputs against a
 * float64 forward pass written here, RTN min/max weights against an
 * independent float64 computation of the quantizer, the quantized graph's
 * weight layout, the fake-quant nodes, the QDQ writer's input and the
 * refusals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/cnn/cnn_quant.h"
#include "test_cnn_build.h"
#include "testutil.h"

enum { NI = 5, HW = 6, CO = 2, FC = 4, OUT = 3, FLAT = CO * 3 * 3 };

static float w1[CO * 9], b1[CO], w2[FLAT * FC], b2[FC], w3[FC * OUT];

static void build(aq_cnn_graph *g, float alpha)
{
    uint64_t s = 17;
    for (int i = 0; i < CO * 9; i++) w1[i] = (float)aq_test_nrand(&s) * 0.01f;
    for (int i = 0; i < CO; i++) b1[i] = (float)aq_test_nrand(&s);
    for (int i = 0; i < FLAT * FC; i++) w2[i] = (float)aq_test_nrand(&s) * 0.3f;
    for (int i = 0; i < FC; i++) b2[i] = (float)aq_test_nrand(&s);
    for (int i = 0; i < FC * OUT; i++) w3[i] = (float)aq_test_nrand(&s);
    tg_init(g, 13);
    int64_t xs[4] = {1, 1, HW, HW}, ws[4] = {CO, 1, 3, 3}, bs[1] = {CO}, w2s[2] = {FLAT, FC},
            b2s[1] = {FC}, w3s[2] = {FC, OUT};
    g->input = tg_input(g, "x", 4, xs);
    tg_const(g, "w1", 4, ws, w1), tg_const(g, "b1", 1, bs, b1);
    tg_const(g, "w2", 2, w2s, w2), tg_const(g, "b2", 1, b2s, b2), tg_const(g, "w3", 2, w3s, w3);
    aq_cnn_node *n = tg_node(g, AQ_OP_CONV, "conv", 3, (const char *[]){"x", "w1", "b1"}, "c");
    n->a.kernel[0] = n->a.kernel[1] = 3;
    for (int i = 0; i < 4; i++) n->a.pads[i] = 1;
    tg_node(g, AQ_OP_RELU, "relu", 1, (const char *[]){"c"}, "r");
    n = tg_node(g, AQ_OP_MAXPOOL, "pool", 1, (const char *[]){"r"}, "p");
    n->a.kernel[0] = n->a.kernel[1] = 2, n->a.strides[0] = n->a.strides[1] = 2;
    tg_node(g, AQ_OP_FLATTEN, "flat", 1, (const char *[]){"p"}, "f");
    n = tg_node(g, AQ_OP_GEMM, "fc", 3, (const char *[]){"f", "w2", "b2"}, "y");
    n->a.alpha = alpha;
    tg_node(g, AQ_OP_MATMUL, "mm", 2, (const char *[]){"y", "w3"}, "z");
    g->output = tg_value(g, "z");
}

/* float64 forward to the Gemm's and the MatMul's inputs for image px, and
 * their magnitudes (the same network on absolute values: float32's error is
 * at most gamma(terms) times that, Higham's bound). */
static void reference_w(const uint8_t *px, const float *cw, const float *cb, double *flat, double *fc,
                        double *flat_mag, double *fc_mag)
{
    double c[CO][HW][HW], cm[CO][HW][HW];
    for (int o = 0; o < CO; o++)
        for (int y = 0; y < HW; y++)
            for (int x = 0; x < HW; x++) {
                double a = cb[o], m = fabs(cb[o]);
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        int iy = y + ky - 1, ix = x + kx - 1;
                        if (iy >= 0 && iy < HW && ix >= 0 && ix < HW) {
                            a += (double)cw[o * 9 + ky * 3 + kx] * px[iy * HW + ix];
                            m += fabs((double)cw[o * 9 + ky * 3 + kx]) * px[iy * HW + ix];
                        }
                    }
                c[o][y][x] = a > 0 ? a : 0, cm[o][y][x] = m;
            }
    for (int o = 0; o < CO; o++)
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < 3; x++)
            {
                flat[o * 9 + y * 3 + x] = fmax(fmax(c[o][2 * y][2 * x], c[o][2 * y][2 * x + 1]),
                                               fmax(c[o][2 * y + 1][2 * x], c[o][2 * y + 1][2 * x + 1]));
                flat_mag[o * 9 + y * 3 + x] = fmax(fmax(cm[o][2 * y][2 * x], cm[o][2 * y][2 * x + 1]),
                                                   fmax(cm[o][2 * y + 1][2 * x], cm[o][2 * y + 1][2 * x + 1]));
            }
    for (int j = 0; j < FC; j++) {
        fc[j] = b2[j], fc_mag[j] = fabs(b2[j]);
        for (int k = 0; k < FLAT; k++) {
            fc[j] += flat[k] * (double)w2[k * FC + j];
            fc_mag[j] += flat_mag[k] * fabs((double)w2[k * FC + j]);
        }
    }
}

static void reference(const uint8_t *px, double *flat, double *fc, double *flat_mag, double *fc_mag)
{
    reference_w(px, w1, b1, flat, fc, flat_mag, fc_mag);
}

/* gamma(n) = n u / (1 - n u), u = 2^-24: the float32 sum bound. */
static double gamma32(int n)
{
    double u = ldexp(1.0, -24);
    return n * u / (1 - n * u);
}

static void check_layers_and_capture(aq_cnn_graph *g, const uint8_t *px, aq_cnnq_capture *cap)
{
    aq_error err = {0};
    aq_cnn_norm raw = {1, 0, 1};
    CHECK_OK(aq_cnnq_capture_run(g, px, NI, HW * HW, &raw, 2, cap, &err), &err); /* chunks 2+2+1 */
    CHECK(cap->n_layers == 3);
    if (cap->n_layers != 3) return;
    const aq_cnnq_layer *L = cap->layers;
    CHECK(L[0].op == AQ_OP_CONV && L[0].d_out == CO && L[0].d_in == 9 && !L[0].transposed && L[0].b_value >= 0);
    CHECK(L[0].c == 1 && L[0].h == HW && L[0].w == HW && L[0].conv.pad_h == 1 && L[0].conv.kh == 3);
    CHECK(L[1].op == AQ_OP_GEMM && L[1].d_out == FC && L[1].d_in == FLAT && L[1].transposed && L[1].b_value >= 0);
    CHECK(L[2].op == AQ_OP_MATMUL && L[2].d_out == OUT && L[2].d_in == FC && L[2].transposed && L[2].b_value < 0);
    CHECK(cap->bytes == NI * (HW * HW + FLAT + FC) * sizeof(float));
    const float *x0 = aq_cnnq_capture_x(cap, 0), *x1 = aq_cnnq_capture_x(cap, 1), *x2 = aq_cnnq_capture_x(cap, 2);
    for (int i = 0; i < NI * HW * HW; i++) CHECK(x0[i] == (float)px[i]); /* raw pixels: exact */
    for (int im = 0; im < NI; im++) {
        double flat[FLAT], fc[FC], fm[FLAT], fcm[FC];
        reference(px + im * HW * HW, flat, fc, fm, fcm);
        for (int k = 0; k < FLAT; k++) CHECK(fabs(x1[im * FLAT + k] - flat[k]) <= gamma32(9 + 2) * fm[k]);
        for (int j = 0; j < FC; j++) CHECK(fabs(x2[im * FC + j] - fc[j]) <= gamma32(9 + FLAT + 4) * fcm[j]);
    }
}

/* W[r][c] of layer i as the test defines it (Conv: its flattening; Gemm with
 * transB = 0 and MatMul: the stored [d_in, d_out] transposed). */
static double wref(int i, int r, int c)
{
    return i == 0 ? w1[r * 9 + c] : i == 1 ? w2[c * FC + r] : w3[c * OUT + r];
}

/* RTN min/max at `bits` against the float64 definition of src/quant/quant.h:
 * range [min(w, 0), max(w, 0)], scale = range / (2^b - 1), zero = round(-lo / scale),
 * code = clamp(round(w / scale) + zero). */
static void check_rtn(const aq_cnn_graph *g, const aq_cnnq_capture *cap, int bits, aq_cnnq_result *res)
{
    aq_error err = {0};
    aq_layer_opts o;
    aq_layer_opts_default(&o);
    o.w_bits = bits, o.a_bits = 8;
    int qmax = (1 << bits) - 1, checked = 0;
    for (int i = 0; i < 3; i++) {
        CHECK_OK(aq_cnnq_quantize_layer(g, cap, i, NULL, AQ_CNNQ_RTN_MINMAX, &o, &res[i], &err), &err);
        const aq_cnnq_layer *L = &cap->layers[i];
        CHECK(res[i].d_out == L->d_out && res[i].d_in == L->d_in && res[i].a_bits == 8);
        for (int r = 0; r < L->d_out; r++) {
            double lo = 0, hi = 0;
            for (int c = 0; c < L->d_in; c++) lo = fmin(lo, wref(i, r, c)), hi = fmax(hi, wref(i, r, c));
            double sc = (hi - lo) / qmax, z = fmin(fmax(nearbyint(-lo / sc), 0), qmax);
            CHECK_CLOSE(res[i].scale[r], sc, 1e-6); /* float32 rounding of the scale */
            CHECK(res[i].zero[r] == z);
            for (int c = 0; c < L->d_in; c++) {
                double t = wref(i, r, c) / sc;
                if (fabs(t - floor(t) - 0.5) < 1e-4) continue; /* a float32 tie: either code is right */
                double u = fmin(fmax(nearbyint(t) + z, 0), qmax);
                CHECK(res[i].codes[(size_t)r * L->d_in + c] == u);
                checked++;
            }
        }
        /* RTN keeps the layer's own bias (zeros for the MatMul) */
        for (int r = 0; r < L->d_out; r++) CHECK(res[i].bias[r] == (i == 0 ? b1[r] : i == 1 ? b2[r] : 0.0f));
        /* the activation grid covers the input's range at 8 bits: scale > 0, zero on the grid */
        CHECK(res[i].a_scale > 0 && res[i].a_zero >= 0 && res[i].a_zero <= 255);
    }
    CHECK(checked > 90);
}

static void check_model(const aq_cnn_graph *g, const aq_cnnq_capture *cap, aq_cnnq_result *res,
                        const uint8_t *px)
{
    aq_error err = {0};
    aq_cnn_norm raw = {1, 0, 1};
    const aq_cnnq_result *rp[3] = {&res[0], &res[1], &res[2]}, *none[3] = {0};
    aq_cnnq_model m;
    CHECK_OK(aq_cnnq_model_build(g, cap->layers, 3, rp, 1, &m, &err), &err);
    int fq = 0;
    for (int k = 0; k < m.g.n_nodes; k++) fq += m.fq_node[k] >= 0;
    CHECK(m.g.n_nodes == g->n_nodes + 3 && fq == 3); /* one Identity per a8 layer, no Add (zero bias) */
    const aq_cnnq_layer *L = &cap->layers[1];
    const float *wq = m.g.values[L->w_value].data; /* the Gemm's weight, stored [d_in, d_out] */
    for (int r = 0; r < FC; r++)
        for (int c = 0; c < FLAT; c++)
            CHECK(wq[c * FC + r] == res[1].scale[r] * ((float)res[1].codes[r * FLAT + c] - res[1].zero[r]));
    CHECK(g->values[L->w_value].data[0] == w2[0]); /* the FP graph is untouched */
    aq_cnnq_model_free(&m);

    /* no results: the same graph, the same predictions as the engine's */
    int32_t p0[NI], p1[NI], p2[NI];
    CHECK_OK(aq_cnnq_model_build(g, cap->layers, 3, none, 1, &m, &err), &err);
    CHECK_OK(aq_cnnq_predict(&m, px, NI, HW * HW, &raw, 2, p1, &err), &err);
    CHECK_OK(aq_cnn_predict(g, px, NI, HW * HW, &raw, 2, p0, NULL, NULL, &err), &err);
    CHECK(!memcmp(p0, p1, sizeof p0));
    aq_cnnq_model_free(&m);

    /* the fake quantization is applied: a MatMul input grid of step 1e6
     * rounds every input to 0, so all outputs tie and argmax gives class 0 */
    aq_cnnq_result big = res[2];
    big.a_scale = 1e6f, big.a_zero = 0;
    const aq_cnnq_result *rb[3] = {NULL, NULL, &big};
    CHECK_OK(aq_cnnq_model_build(g, cap->layers, 3, rb, 1, &m, &err), &err);
    CHECK_OK(aq_cnnq_predict(&m, px, NI, HW * HW, &raw, 2, p2, &err), &err);
    for (int i = 0; i < NI; i++) CHECK(p2[i] == 0);
    aq_cnnq_model_free(&m);
}

/* The corrected rounding on the Conv: the bias moves by scale (z' - z) times
 * the mean 3x3-window sum of the (zero-padded) raw pixels, computed here. */
static void check_corrected(const aq_cnnq_capture *cap, aq_cnnq_result *res, const uint8_t *px)
{
    aq_error err = {0};
    double msum = 0;
    for (int n = 0; n < NI; n++)
        for (int y = 0; y < HW; y++)
            for (int x = 0; x < HW; x++)
                for (int ky = -1; ky <= 1; ky++)
                    for (int kx = -1; kx <= 1; kx++)
                        if (y + ky >= 0 && y + ky < HW && x + kx >= 0 && x + kx < HW)
                            msum += px[n * HW * HW + (y + ky) * HW + x + kx];
    msum /= NI * HW * HW;
    float z0 = res[0].zero[1] + 0.375f, b0 = res[0].bias[1], z1 = res[0].zero[0];
    res[0].zero[1] = z0;
    int changed = 0;
    CHECK_OK(aq_cnnq_round_zeros_corrected(cap, 0, &res[0], &changed, &err), &err);
    CHECK(changed == 1 && res[0].zero[1] == nearbyintf(z0) && res[0].zero[0] == z1);
    double want = b0 + (double)res[0].scale[1] * (nearbyint(z0) - z0) * msum;
    /* a float32 result of a float64 computation on integer pixel sums */
    CHECK_CLOSE(res[0].bias[1], want, 1e-6);
    CHECK(res[0].bias[1] != b0);
}

/* Sequential mode: the Gemm's x_in is its input with the Conv quantized
 * (w4a8 RTN): the float64 forward with the Conv's dequantized weights. The
 * pixels' 8-bit grid is scale 1, zero 0 (checked), so their fake
 * quantization changes nothing. */
static void check_sequential(const aq_cnn_graph *g, const aq_cnnq_capture *cap, const uint8_t *px)
{
    aq_error err = {0};
    aq_layer_opts o[3];
    aq_cnnq_result res[3];
    for (int i = 0; i < 3; i++) aq_layer_opts_default(&o[i]), o[i].w_bits = 4, o[i].a_bits = 8;
    aq_cnn_norm raw = {1, 0, 1};
    aq_cnnq_seq seq = {px, HW * HW, &raw, 2};
    CHECK_OK(aq_cnnq_quantize_all(g, cap, &seq, AQ_CNNQ_RTN_MINMAX, o, res, &err), &err);
    CHECK(res[0].a_scale == 1.0f && res[0].a_zero == 0.0f);
    const aq_cnnq_result *rp[3] = {&res[0], NULL, NULL};
    aq_cnnq_model m;
    float *x_in = NULL, cw[CO * 9];
    for (int r = 0; r < CO; r++)
        for (int c = 0; c < 9; c++) cw[r * 9 + c] = res[0].scale[r] * ((float)res[0].codes[r * 9 + c] - res[0].zero[r]);
    CHECK_OK(aq_cnnq_model_build(g, cap->layers, 3, rp, 1, &m, &err), &err);
    CHECK_OK(aq_cnnq_capture_input(&m, cap, 1, px, HW * HW, &raw, 2, &x_in, &err), &err);
    int moved = 0;
    for (int im = 0; x_in && im < NI; im++) {
        double flat[FLAT], fc[FC], fm[FLAT], fcm[FC];
        reference_w(px + im * HW * HW, cw, b1, flat, fc, fm, fcm);
        for (int k = 0; k < FLAT; k++) {
            CHECK(fabs(x_in[im * FLAT + k] - flat[k]) <= gamma32(9 + 2) * fm[k]);
            moved += x_in[im * FLAT + k] != aq_cnnq_capture_x(cap, 1)[im * FLAT + k];
        }
    }
    CHECK(moved > 0); /* the quantized conv does change the Gemm's input */
    free(x_in);
    aq_cnnq_model_free(&m);
    for (int i = 0; i < 3; i++) aq_cnnq_result_free(&res[i]);
}

static void check_qdq(const aq_cnn_graph *g, const aq_cnnq_capture *cap, aq_cnnq_result *res)
{
    aq_error err = {0};
    const aq_cnnq_result *rp[3] = {&res[0], &res[1], &res[2]};
    aq_onnx_qlayer q[3];
    aq_cnnq_model m;
    res[2].bias[1] = 0.5f; /* a MatMul bias: an Add node after it */
    CHECK_OK(aq_cnnq_model_build(g, cap->layers, 3, rp, 0, &m, &err), &err);
    CHECK(m.g.n_nodes == g->n_nodes + 1 && m.g.nodes[m.g.n_nodes - 1].op == AQ_OP_ADD &&
          m.g.nodes[m.g.n_nodes - 1].out == g->output);
    CHECK_OK(aq_cnnq_qdq_layers(&m, q, &err), &err);
    CHECK(!strcmp(q[1].node, "fc") && q[1].codes == res[1].codes && q[1].bits == 4 && q[1].act_bits == 8 &&
          q[1].act_scale == res[1].a_scale);
    res[1].zero[2] += 0.25f;
    CHECK(aq_cnnq_qdq_layers(&m, q, &err) == AQ_ERR_ARG && strstr(err.msg, "'fc'") && strstr(err.msg, "channel 2"));
    CHECK(aq_cnnq_round_zeros(&res[1]) == 1);
    CHECK_OK(aq_cnnq_qdq_layers(&m, q, &err), &err);
    aq_cnnq_model_free(&m);
}

int main(void)
{
    aq_error err = {0};
    aq_cnn_graph g;
    build(&g, 1.0f);
    uint8_t px[NI * HW * HW];
    uint64_t s = 5;
    for (int i = 0; i < NI * HW * HW; i++) px[i] = (uint8_t)(aq_test_urand(&s) * 256);
    aq_cnnq_capture cap;
    check_layers_and_capture(&g, px, &cap);
    if (cap.n_layers == 3) {
        aq_cnnq_result res[3];
        check_rtn(&g, &cap, 4, res);
        check_model(&g, &cap, res, px);
        check_qdq(&g, &cap, res);
        check_corrected(&cap, res, px);
        check_sequential(&g, &cap, px);
        for (int i = 0; i < 3; i++) aq_cnnq_result_free(&res[i]);
        /* AdaQuant through the same entry point: never worse than its RTN start */
        aq_layer_opts o;
        aq_layer_opts_default(&o);
        o.w_bits = 2, o.iters = 20, o.starts = 1;
        aq_cnnq_result a;
        CHECK_OK(aq_cnnq_quantize_layer(&g, &cap, 1, NULL, AQ_CNNQ_ADAQUANT, &o, &a, &err), &err);
        CHECK(a.d_out == FC && a.d_in == FLAT && a.loss >= 0 && a.loss < 1);
        aq_cnnq_result_free(&a);
    }
    aq_cnnq_capture_free(&cap);
    aq_cnn_graph_free(&g);

    /* refusals name the node */
    build(&g, 2.0f);
    aq_cnnq_layer *L = NULL;
    int n = 0;
    CHECK(aq_cnnq_layers(&g, &L, &n, &err) == AQ_ERR_ARG && strstr(err.msg, "'fc'") && strstr(err.msg, "alpha"));
    CHECK(!L && n == 0);
    aq_cnn_graph_free(&g);
    AQ_TEST_END();
}
