/* test_adaquant_group.c — AdaQuant in the group formats (src/adaquant/group.c).
 *
 * References independent of the optimiser:
 *  - the loss: ||X W^T + b - (X W^^T + b')||^2 / ||X W^T + b||^2 summed here
 *    over the rows of X in long double, with W^ decoded from the result's
 *    packed ggml bytes by ggml_blocks.c's dequantize_row (bit-exact against
 *    ggml, tests/ggml.cmake), or from wKgG's documented formula;
 *  - the start: with no refinement rounds the blocks are llama.cpp's own RTN
 *    bytes (aq_ggml_quantize_row, = quantize_row_*_ref);
 *  - optimality by brute force on a small layer: no single code +-1 and no
 *    fp16 neighbour of a scale lowers the exact loss of the stored values;
 *  - the constraints: scales fp16-representable, codes and zeros in range;
 *  - the qlayer round trip, the option strings, bad shapes.
 * ~0.2 s. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/quant/ggml_blocks.h"
#include "qlayer_roundtrip.h"

enum { N = 512, DOUT = 6, DIN = 64 };

static float X[N * DIN], W[DOUT * DIN], B[DOUT];

static void make_problem(uint64_t seed)
{
    uint64_t s = seed;
    for (size_t i = 0; i < N * DIN; i++) X[i] = (float)(aq_test_nrand(&s) * (1.0 + (double)(i % DIN) / 16.0));
    for (size_t i = 0; i < DOUT * DIN; i++) W[i] = (float)(0.1 * aq_test_nrand(&s) + ((i % 7) == 0 ? 0.05 : 0.0));
    for (size_t i = 0; i < DOUT; i++) B[i] = (float)(0.01 * aq_test_nrand(&s));
}

/* The stored weights decoded independently of group.c: ggml types from the
 * packed bytes by ggml_blocks.c; wKgG by its formula. */
static void decode(const aq_layer_result *r, float *w)
{
    if (r->ggml) {
        uint8_t bytes[DIN / 32 * 34];
        aq_error e = {0};
        for (size_t i = 0; i < r->d_out; i++) {
            CHECK_OK(aq_group_pack_row(r, i, bytes, &e), &e);
            CHECK_OK(aq_ggml_dequantize_row((aq_ggml_type)r->gtype, bytes, r->d_in, w + i * r->d_in, &e), &e);
        }
        return;
    }
    size_t G = r->d_in / (size_t)r->group;
    for (size_t i = 0; i < r->d_out; i++)
        for (size_t c = 0; c < r->d_in; c++) {
            size_t k = i * G + c / (size_t)r->group;
            w[i * r->d_in + c] = r->w_scale[k] * ((float)r->codes[i * r->d_in + c] - r->w_zero[k]);
        }
}

/* Normalised output error from the rows, long double. */
static double row_loss(const float *wq, const float *bq)
{
    long double num = 0, den = 0;
    for (size_t n = 0; n < N; n++)
        for (size_t o = 0; o < DOUT; o++) {
            long double y = B[o], yq = bq[o];
            for (size_t c = 0; c < DIN; c++) {
                y += (long double)X[n * DIN + c] * W[o * DIN + c];
                yq += (long double)X[n * DIN + c] * wq[o * DIN + c];
            }
            num += (y - yq) * (y - yq);
            den += y * y;
        }
    return (double)(num / den);
}

static double result_loss(const aq_layer_result *r)
{
    float wq[DOUT * DIN];
    decode(r, wq);
    return row_loss(wq, r->bias);
}

static aq_status run(const char *opt, int rounds, aq_layer_result *r, aq_error *e)
{
    aq_layer_opts o;
    aq_layer_opts_default(&o);
    AQ_TRY(aq_layer_opts_parse(opt, &o, e));
    o.polish_rounds = rounds;
    aq_layer_problem p = {.name = "t", .d_out = DOUT, .d_in = DIN, .weight = W, .bias = B, .n_rows = N, .x = X};
    return aq_layer_run(&p, &o, r, e);
}

static int fp16_exact(float v)
{
    return aq_fp16_to_fp32(aq_fp32_to_fp16(v)) == v;
}

/* Brute force: no single code move and no fp16 neighbour of a scale helps. */
static void check_local_min(aq_layer_result *r, double loss, const char *opt)
{
    const aq_ggml_format *f = r->ggml ? aq_ggml_format_of((aq_ggml_type)r->gtype) : NULL;
    int umax = f ? f->qmax - f->qmin : (1 << r->w_bits) - 1, better = 0;
    for (size_t i = 0; i < DOUT * DIN && !better; i += 5)
        for (int d = -1; d <= 1; d += 2) {
            int u = r->codes[i] + d;
            if (u < 0 || u > umax) continue;
            uint8_t old = r->codes[i];
            r->codes[i] = (uint8_t)u;
            better += result_loss(r) < loss * (1 - 1e-9);
            r->codes[i] = old;
        }
    size_t G = DOUT * DIN / (size_t)r->group;
    for (size_t k = 0; k < G && !better; k++) {
        float s = r->w_scale[k];
        uint16_t h = aq_fp32_to_fp16(s);
        for (int d = -1; d <= 1; d += 2) {
            r->w_scale[k] = aq_fp16_to_fp32((uint16_t)(h + d));
            if (isfinite(r->w_scale[k]) && (r->ggml || r->w_scale[k] > 0))
                better += result_loss(r) < loss * (1 - 1e-9);
        }
        r->w_scale[k] = s;
    }
    /* the tolerance 1e-9: the optimiser's float64 Gram loss and this long
     * double row sum differ by rounding (~1e-13 relative), far below it */
    CHECK_MSG(!better, "%s: a single code or scale step lowers the loss: not a local minimum", opt);
}

static void test_option(const char *opt)
{
    aq_layer_result r0, r;
    aq_error e = {0};
    CHECK_OK(run(opt, 0, &r0, &e), &e);
    CHECK_OK(run(opt, 8, &r, &e), &e);
    if (e.code) return;
    double l0 = result_loss(&r0), l = result_loss(&r);
    printf("%-6s rtn %.6e  adaquant %.6e  (reported %.6e / %.6e)\n", opt, l0, l, r.loss_rtn, r.loss_final);
    /* the reported losses are exact Gram losses of the stored values: they
     * match the row sums to float64 rounding of the Gram form (1e-10 rel) */
    CHECK_CLOSE(r.loss_rtn, l0, 1e-10 * l0);
    CHECK_CLOSE(r.loss_final, l, 1e-10 * l);
    CHECK_MSG(l < 0.95 * l0, "%s: AdaQuant %.4g is not clearly below RTN %.4g", opt, l, l0);
    size_t G = DOUT * DIN / (size_t)r.group;
    int ok = 1;
    for (size_t k = 0; k < G; k++) ok &= fp16_exact(r.w_scale[k]) && (!r.ggml || fp16_exact(r.w_zero[k]));
    for (size_t k = 0; k < G && !r.ggml; k++) ok &= r.w_zero[k] == floorf(r.w_zero[k]) && r.w_zero[k] < (float)(1 << r.w_bits);
    CHECK_MSG(ok, "%s: scales or zero points outside the format", opt);
    if (r.ggml) { /* RTN start = llama.cpp's reference bytes */
        uint8_t mine[DIN / 32 * 34], ref[DIN / 32 * 34];
        size_t rb;
        CHECK_OK(aq_ggml_row_bytes((aq_ggml_type)r.gtype, DIN, &rb, &e), &e);
        for (size_t i = 0; i < DOUT; i++) {
            CHECK_OK(aq_group_pack_row(&r0, i, mine, &e), &e);
            CHECK_OK(aq_ggml_quantize_row((aq_ggml_type)r.gtype, W + i * DIN, DIN, ref, &e), &e);
            CHECK_MSG(!memcmp(mine, ref, rb), "%s row %zu: the start is not llama.cpp's RTN", opt, i);
        }
    }
    check_local_min(&r, l, opt);
    aq_layer_result_free(&r0);
    aq_layer_result_free(&r);
}

static void test_roundtrip(const char *dir, const char *opt)
{
    aq_layer_result r;
    aq_error e = {0};
    CHECK_OK(run(opt, 2, &r, &e), &e);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, opt);
    aq_st_file *f;
    aq_qlayer q;
    aq_test_qlayer_roundtrip(path, "model.layers.0.mlp.up_proj", &r, DIN, &f, &q);
    float wq[DOUT * DIN];
    decode(&r, wq);
    CHECK_MSG(q.weight && !memcmp(q.weight, wq, sizeof wq) && !memcmp(q.bias, r.bias, DOUT * sizeof(float)),
              "%s: the loaded layer differs from the result", opt);
    if (f && q.weight) { /* a wrong row length is refused, naming the group */
        aq_qlayer q2;
        aq_error e2 = {0};
        CHECK(aq_qlayer_load_st(f, "model.layers.0.mlp.up_proj", DIN - 16, &q2, &e2) != AQ_OK && strstr(e2.msg, "up_proj"));
    }
    aq_qlayer_free(&q);
    aq_st_close(f);
    aq_layer_result_free(&r);
}

int main(void)
{
    make_problem(7);
    const char *opts[] = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "w4g32", "w3g64"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) test_option(opts[i]);
    char *dir = aq_test_tmpdir("group");
    test_roundtrip(dir, "q4_1");
    test_roundtrip(dir, "w4g32");
    free(dir);

    aq_layer_opts o;
    aq_error e = {0};
    char buf[32];
    const char *good[] = {"q4_0", "Q5_1", "w4g32", "w8g128", "w2g64"}, *canon[] = {"q4_0", "q5_1", "w4g32", "w8g128", "w2g64"};
    for (int i = 0; i < 5; i++) {
        aq_layer_opts_default(&o);
        CHECK_OK(aq_layer_opts_parse(good[i], &o, &e), &e);
        aq_layer_opts_string(&o, buf, sizeof buf);
        CHECK_MSG(!strcmp(buf, canon[i]) && o.group > 0 && o.a_bits == 16, "option %s -> %s", good[i], buf);
    }
    const char *bad[] = {"w4g16", "w9g32", "w4g32x", "q4_2", "q7_k", "w4g-32"};
    for (int i = 0; i < 6; i++) {
        aq_error e2 = {0};
        aq_layer_opts_default(&o);
        CHECK_MSG(aq_layer_opts_parse(bad[i], &o, &e2) == AQ_ERR_ARG && strstr(e2.msg, bad[i]), "bad option %s accepted",
                  bad[i]);
    }
    /* rows that are not a multiple of the block: a shape error naming the layer */
    aq_layer_result r;
    aq_layer_opts_default(&o);
    CHECK_OK(aq_layer_opts_parse("q4_0", &o, &e), &e);
    aq_layer_problem p = {.name = "odd", .d_out = DOUT, .d_in = 48, .weight = W, .n_rows = N, .x = X};
    aq_error e3 = {0};
    CHECK(aq_layer_run(&p, &o, &r, &e3) == AQ_ERR_SHAPE && strstr(e3.msg, "odd"));
    AQ_TEST_END();
}
