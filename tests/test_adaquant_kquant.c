/* test_adaquant_kquant.c — AdaQuant in llama.cpp's K-quants Q2_K..Q6_K
 * (src/adaquant/group_k.c on group.c's machinery).
 *
 * References independent of the optimiser:
 *  - the loss: ||X W^T + b - (X W^^T + b')||^2 / ||X W^T + b||^2 summed over
 *    the rows of X in long double, with W^ decoded from the result's packed
 *    ggml bytes by ggml_blocks.c's dequantize_row (bit-exact against ggml,
 *    tests/ggml.cmake);
 *  - the start: with no refinement rounds the bytes are llama.cpp's own RTN
 *    (aq_ggml_quantize_row = quantize_row_*_ref, tests/ggml.cmake);
 *  - local optimality by brute force on the logical blocks (unpacked from
 *    the bytes, changed, dequantized by ggml_blocks.c): no code +-1, no
 *    sub-block scale or min code +-1 and no fp16 neighbour of d or dmin
 *    lowers the exact loss of the stored values;
 *  - the qlayer round trip (P.qblocks), the true bits per weight, the option
 *    strings, and rows that are not a multiple of 256.
 * ~0.5 s. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/quant/ggml_blocks.h"
#include "qlayer_roundtrip.h"

enum { N = 384, DOUT = 3, DIN = 512, NB = DIN / 256, MAXB = NB * 210 };

static float X[N * DIN], W[DOUT * DIN], B[DOUT];
static long double Y[N * DOUT], DEN;

static void make_problem(uint64_t seed)
{
    uint64_t s = seed;
    /* correlated inputs (a shared component) with per-column scales, so
     * that the Gram loss and the weight MSE disagree */
    for (size_t n = 0; n < N; n++) {
        double common = aq_test_nrand(&s);
        for (size_t c = 0; c < DIN; c++)
            X[n * DIN + c] = (float)((aq_test_nrand(&s) + 0.5 * common) * (1.0 + (double)(c % 37) / 12.0));
    }
    for (size_t i = 0; i < DOUT * DIN; i++) W[i] = (float)(0.1 * aq_test_nrand(&s) + ((i % 7) == 0 ? 0.05 : 0.0));
    for (size_t i = 0; i < DOUT; i++) B[i] = (float)(0.01 * aq_test_nrand(&s));
    DEN = 0;
    for (size_t n = 0; n < N; n++)
        for (size_t o = 0; o < DOUT; o++) {
            long double y = B[o];
            for (size_t c = 0; c < DIN; c++) y += (long double)X[n * DIN + c] * W[o * DIN + c];
            Y[n * DOUT + o] = y;
            DEN += y * y;
        }
}

/* Row o's share of the normalised output error, long double. */
static long double row_err(size_t o, const float *wq, float bq)
{
    long double num = 0;
    for (size_t n = 0; n < N; n++) {
        long double yq = bq;
        for (size_t c = 0; c < DIN; c++) yq += (long double)X[n * DIN + c] * wq[c];
        num += (Y[n * DOUT + o] - yq) * (Y[n * DOUT + o] - yq);
    }
    return num / DEN;
}

/* The result's rows as ggml bytes, and the loss of their dequantization. */
static double result_loss(const aq_layer_result *r, uint8_t *bytes)
{
    aq_error e = {0};
    size_t rb;
    float wq[DIN];
    long double l = 0;
    CHECK_OK(aq_ggml_row_bytes((aq_ggml_type)r->gtype, DIN, &rb, &e), &e);
    for (size_t i = 0; i < DOUT; i++) {
        CHECK_OK(aq_group_pack_row(r, i, bytes + i * rb, &e), &e);
        CHECK_OK(aq_ggml_dequantize_row((aq_ggml_type)r->gtype, bytes + i * rb, DIN, wq, &e), &e);
        l += row_err(i, wq, r->bias[i]);
    }
    return (double)l;
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

/* Row 0's loss with its blocks blk (ggml_blocks.c dequantizes them). */
static long double blocks_err(aq_ggml_type t, const aq_ggml_block *blk, float bias)
{
    float wq[DIN];
    for (int b = 0; b < NB; b++) aq_ggml_dequantize_block(t, &blk[b], wq + b * 256);
    return row_err(0, wq, bias);
}

/* Try one changed block; count it if it is valid and lowers row 0's loss.
 * The tolerance 1e-9 relative: the optimiser's float64 Gram loss and this
 * long double row sum differ by rounding (~1e-13 relative), far below it. */
static int lower(aq_ggml_type t, aq_ggml_block *blk, long double base, float bias)
{
    uint8_t tmp[210];
    aq_error e = {0};
    for (int b = 0; b < NB; b++)
        if (aq_ggml_pack(t, &blk[b], tmp, &e) != AQ_OK) return 0; /* out of the format's range */
    for (int b = 0; b < NB; b++)
        if (!isfinite(aq_fp16_to_fp32(blk[b].d)) || !isfinite(aq_fp16_to_fp32(blk[b].m))) return 0;
    return blocks_err(t, blk, bias) < base * (1 - 1e-9L);
}

static uint16_t f16_step(uint16_t h, int dir)
{
    if ((h & 0x7fffu) == 0) return dir > 0 ? 1 : h; /* from zero: the smallest subnormal */
    return (uint16_t)(h + dir);                      /* sign-magnitude: +-1 ulp */
}

/* Brute force on row 0: every code +-1 (a sample), every sub-block scale and
 * min code +-1, the fp16 neighbours of every d and dmin. */
static void check_local_min(const aq_layer_result *r, const uint8_t *bytes, const char *opt)
{
    aq_ggml_type t = (aq_ggml_type)r->gtype;
    const aq_ggml_format *f = aq_ggml_format_of(t);
    aq_ggml_block blk[NB];
    for (int b = 0; b < NB; b++) aq_ggml_unpack(t, bytes + (size_t)b * (size_t)f->bytes, &blk[b]);
    long double base = blocks_err(t, blk, r->bias[0]);
    int better = 0;
    for (int c = 0; c < DIN; c += 11)
        for (int d = -1; d <= 1; d += 2) {
            int8_t *q = &blk[c / 256].q[c % 256], old = *q;
            *q = (int8_t)(old + d);
            better += lower(t, blk, base, r->bias[0]);
            *q = old;
        }
    for (int b = 0; b < NB; b++)
        for (int s = 0; s < f->nsub; s++)
            for (int d = -1; d <= 1; d += 2) {
                int16_t sc = blk[b].sc[s];
                blk[b].sc[s] = (int16_t)(sc + d);
                better += lower(t, blk, base, r->bias[0]);
                blk[b].sc[s] = sc;
                if (!f->mnmax) continue;
                uint8_t mn = blk[b].mn[s];
                blk[b].mn[s] = (uint8_t)(mn + d);
                better += mn + d >= 0 && lower(t, blk, base, r->bias[0]);
                blk[b].mn[s] = mn;
            }
    for (int b = 0; b < NB; b++)
        for (int d = -1; d <= 1; d += 2) {
            uint16_t h = blk[b].d, m = blk[b].m;
            blk[b].d = f16_step(h, d);
            better += lower(t, blk, base, r->bias[0]);
            blk[b].d = h;
            if (!f->has_m) continue;
            blk[b].m = f16_step(m, d);
            better += lower(t, blk, base, r->bias[0]);
            blk[b].m = m;
        }
    CHECK_MSG(!better, "%s: %d single code, sub-block code or fp16 steps lower the loss: not a local minimum", opt,
              better);
}

static void test_option(const char *opt)
{
    aq_layer_result r0, r;
    aq_error e = {0};
    uint8_t b0[DOUT * MAXB], b1[DOUT * MAXB], ref[MAXB];
    CHECK_OK(run(opt, 0, &r0, &e), &e);
    CHECK_OK(run(opt, 50, &r, &e), &e);
    if (e.code) return;
    double l0 = result_loss(&r0, b0), l = result_loss(&r, b1);
    printf("%-5s rtn %.6e  adaquant %.6e (%.1f%% lower)  %.3f s\n", opt, l0, l, 100 * (1 - l / l0), r.seconds);
    /* the reported losses are exact Gram losses of the stored values: they
     * match the long double row sums to the float64 rounding of the Gram
     * form (1e-10 relative) */
    CHECK_CLOSE(r0.loss_rtn, l0, 1e-10 * l0);
    CHECK_CLOSE(r.loss_rtn, l0, 1e-10 * l0);
    CHECK_CLOSE(r.loss_final, l, 1e-10 * l);
    CHECK_MSG(l < 0.95 * l0, "%s: AdaQuant %.4g is not clearly below RTN %.4g", opt, l, l0);
    /* RTN start = llama.cpp's reference bytes, block for block */
    size_t rb;
    CHECK_OK(aq_ggml_row_bytes((aq_ggml_type)r.gtype, DIN, &rb, &e), &e);
    for (size_t i = 0; i < DOUT; i++) {
        CHECK_OK(aq_ggml_quantize_row((aq_ggml_type)r.gtype, W + i * DIN, DIN, ref, &e), &e);
        CHECK_MSG(!memcmp(b0 + i * rb, ref, rb), "%s row %zu: the start is not llama.cpp's RTN", opt, i);
    }
    /* the true bits per weight: the stored bytes */
    aq_layer_opts o;
    aq_layer_opts_default(&o);
    CHECK_OK(aq_layer_opts_parse(opt, &o, &e), &e);
    CHECK(aq_group_row_bytes(&o, DIN) == rb && fabs(8.0 * (double)rb / DIN - aq_ggml_bpw((aq_ggml_type)o.gtype)) < 1e-12);
    check_local_min(&r, b1, opt);
    aq_layer_result_free(&r0);
    aq_layer_result_free(&r);
}

static void test_roundtrip(const char *dir, const char *opt)
{
    aq_layer_result r;
    aq_error e = {0};
    CHECK_OK(run(opt, 2, &r, &e), &e);
    if (e.code) return;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, opt);
    aq_st_file *f;
    aq_qlayer q;
    aq_test_qlayer_roundtrip(path, "model.layers.0.mlp.up_proj", &r, DIN, &f, &q);
    uint8_t bytes[DOUT * MAXB];
    float wq[DOUT * DIN];
    size_t rb = aq_ggml_format_of((aq_ggml_type)r.gtype)->bytes * (size_t)NB;
    result_loss(&r, bytes);
    for (size_t i = 0; i < DOUT; i++) CHECK_OK(aq_ggml_dequantize_row((aq_ggml_type)r.gtype, bytes + i * rb, DIN, wq + i * DIN, &e), &e);
    CHECK_MSG(q.weight && q.blocks && !memcmp(q.blocks, bytes, DOUT * rb) && !memcmp(q.weight, wq, sizeof wq),
              "%s: the loaded layer differs from the result's ggml bytes", opt);
    if (f && q.weight) { /* a row length that is not a multiple of 256 is refused, naming the layer */
        aq_qlayer q2;
        aq_error e2 = {0};
        CHECK(aq_qlayer_load_st(f, "model.layers.0.mlp.up_proj", DIN - 32, &q2, &e2) != AQ_OK && strstr(e2.msg, "up_proj"));
    }
    aq_qlayer_free(&q);
    aq_st_close(f);
    aq_layer_result_free(&r);
}

static void test_options(void)
{
    static const char *in[] = {"q2_k", "Q3_K", "q4_K", "Q5_k", "q6_k"};
    static const aq_ggml_type ty[] = {AQ_GGML_Q2_K, AQ_GGML_Q3_K, AQ_GGML_Q4_K, AQ_GGML_Q5_K, AQ_GGML_Q6_K};
    static const double bpw[] = {2.625, 3.4375, 4.5, 5.5, 6.5625}; /* llama.cpp's figures */
    for (int i = 0; i < 5; i++) {
        aq_layer_opts o;
        aq_error e = {0};
        char buf[32], want[8];
        aq_layer_opts_default(&o);
        CHECK_OK(aq_layer_opts_parse(in[i], &o, &e), &e);
        aq_layer_opts_string(&o, buf, sizeof buf);
        snprintf(want, sizeof want, "q%d_k", 2 + i);
        CHECK_MSG(!strcmp(buf, want) && o.ggml == 1 && o.gtype == (int)ty[i] && o.group == 256 && o.a_bits == 16,
                  "option %s -> %s", in[i], buf);
        CHECK(aq_group_row_bytes(&o, 2816) * 8 == (size_t)(bpw[i] * 2816)); /* 2816 = 11 super-blocks */
        CHECK(aq_group_row_bytes(&o, 2816 - 32) == 0);                     /* absent: no whole super-blocks */
    }
    /* rows of 384 (a multiple of 32, not of 256): a shape error naming the layer */
    aq_layer_opts o;
    aq_layer_result r;
    aq_error e = {0};
    aq_layer_opts_default(&o);
    CHECK_OK(aq_layer_opts_parse("q4_k", &o, &e), &e);
    aq_layer_problem p = {.name = "odd", .d_out = DOUT, .d_in = 384, .weight = W, .n_rows = N, .x = X};
    CHECK(aq_layer_run(&p, &o, &r, &e) == AQ_ERR_SHAPE && strstr(e.msg, "odd") && strstr(e.msg, "256"));
}

int main(void)
{
    make_problem(11);
    const char *opts[] = {"q2_k", "q3_k", "q4_k", "q5_k", "q6_k"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) test_option(opts[i]);
    char *dir = aq_test_tmpdir("kquant");
    test_roundtrip(dir, "q4_k");
    test_roundtrip(dir, "q6_k");
    free(dir);
    test_options();
    AQ_TEST_END();
}
