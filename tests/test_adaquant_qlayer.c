/* test_adaquant_qlayer.c — the qlayer on-disk layout: a written result reads
 * back identical (codes, grid, bias, activation params, metadata), the
 * dequantised weights follow the documented formula (recomputed here), the
 * packed rows follow the documented bit order (unpacked here by hand), and
 * damaged files are rejected with errors naming the tensor. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../io/safetensors.h"
#include "../src/adaquant/qlayer.h"
#include "testutil.h"

static aq_layer_result make_result(size_t d_out, size_t d_in, int w_bits, int a_bits)
{
    aq_layer_result r;
    memset(&r, 0, sizeof r);
    r.d_out = d_out;
    r.d_in = d_in;
    r.w_bits = w_bits;
    r.a_bits = a_bits;
    r.codes = malloc(d_out * d_in);
    r.w_scale = malloc(3 * d_out * sizeof(float));
    r.w_zero = r.w_scale + d_out;
    r.bias = r.w_scale + 2 * d_out;
    for (size_t i = 0; i < d_out * d_in; i++) r.codes[i] = (uint8_t)((i * 7 + i / 3) % (1u << w_bits));
    for (size_t i = 0; i < d_out; i++) {
        r.w_scale[i] = 0.01f * (float)(i + 1);
        r.w_zero[i] = 3.25f + (float)i;
        r.bias[i] = -0.5f + 0.1f * (float)i;
    }
    r.a_scale = a_bits < 16 ? 0.03f : 1.0f;
    r.a_zero = a_bits < 16 ? 7.0f : 0.0f;
    return r;
}

static aq_status write_result(const char *path, const char *prefix, const aq_layer_result *r, aq_error *err)
{
    aq_st_writer *w;
    aq_qlayer_keep *k = NULL;
    AQ_TRY(aq_st_writer_new(&w, err));
    aq_status st = aq_qlayer_add(w, prefix, r, &k, err);
    if (st == AQ_OK) st = aq_st_writer_write(w, path, err);
    aq_st_writer_free(w);
    aq_qlayer_keep_free(k);
    return st;
}

static void test_roundtrip(const char *dir, int w_bits, int a_bits, size_t d_in)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/q_%d_%d_%zu.safetensors", dir, w_bits, a_bits, d_in);
    const char *P = "model.layers.0.mlp.down_proj";
    aq_layer_result r = make_result(5, d_in, w_bits, a_bits);
    aq_error err = {0};
    CHECK_OK(write_result(path, P, &r, &err), &err);
    aq_st_file *f = NULL;
    CHECK_OK(aq_st_open(path, &f, &err), &err);
    if (!f) return;
    char opt[16];
    snprintf(opt, sizeof opt, "w%da%d", w_bits, a_bits);
    const char *m = aq_st_meta_get(f, "quant.model.layers.0.mlp.down_proj");
    CHECK(m && !strcmp(m, opt));
    /* documented bit order, decoded by hand: code i at stream bits [i*b, (i+1)*b) */
    const aq_tensor_view *qw = aq_st_find(f, "model.layers.0.mlp.down_proj.qweight");
    size_t rb = (d_in * (size_t)w_bits + 7) / 8;
    CHECK(qw && qw->dtype == AQ_U8 && qw->shape[0] == 5 && (size_t)qw->shape[1] == rb);
    if (qw)
        for (size_t row = 0; row < 5; row++)
            for (size_t i = 0; i < d_in; i++) {
                unsigned v = 0;
                for (int b = 0; b < w_bits; b++) {
                    size_t k = i * (size_t)w_bits + (size_t)b;
                    v |= (unsigned)((((const uint8_t *)qw->data)[row * rb + k / 8] >> (k % 8)) & 1u) << b;
                }
                CHECK(v == r.codes[row * d_in + i]);
            }
    CHECK((aq_st_find(f, "model.layers.0.mlp.down_proj.a_scale") != NULL) == (a_bits < 16));
    aq_qlayer q;
    CHECK_OK(aq_qlayer_load_st(f, P, d_in, &q, &err), &err);
    CHECK(q.d_out == 5 && q.d_in == d_in && q.w_bits == w_bits && q.a_bits == a_bits);
    CHECK(!memcmp(q.codes, r.codes, 5 * d_in));
    CHECK(!memcmp(q.w_scale, r.w_scale, 20) && !memcmp(q.w_zero, r.w_zero, 20) && !memcmp(q.bias, r.bias, 20));
    CHECK(q.a_scale == r.a_scale && q.a_zero == r.a_zero);
    for (size_t i = 0; i < 5 * d_in; i++) {
        float want = r.w_scale[i / d_in] * ((float)r.codes[i] - r.w_zero[i / d_in]);
        CHECK(q.weight[i] == want);
    }
    float *dq = malloc(5 * d_in * 4);
    aq_layer_result_dequant(&r, dq);
    CHECK(!memcmp(dq, q.weight, 5 * d_in * 4));
    free(dq);
    aq_qlayer_free(&q);
    /* wrong d_in (row_bytes mismatch) and a layer that is not there */
    CHECK(aq_qlayer_load_st(f, P, d_in + 8, &q, &err) == AQ_ERR_SHAPE && strstr(err.msg, "qweight"));
    CHECK(aq_qlayer_load_st(f, "model.layers.1.mlp.down_proj", d_in, &q, &err) == AQ_ERR_NOTFOUND);
    aq_st_close(f);
    free(r.codes);
    free(r.w_scale);
}

static void test_damaged(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    aq_layer_result r = make_result(3, 10, 3, 8);
    aq_error err = {0};
    aq_qlayer q;
    aq_st_file *f = NULL;
    r.w_scale[1] = 0.0f; /* scales must be > 0 */
    CHECK_OK(write_result(path, "L", &r, &err), &err);
    CHECK_OK(aq_st_open(path, &f, &err), &err);
    CHECK(aq_qlayer_load_st(f, "L", 10, &q, &err) == AQ_ERR_NUMERIC && strstr(err.msg, "w_scale"));
    aq_st_close(f);
    r.w_scale[1] = 0.5f;
    r.bias[2] = NAN;
    CHECK_OK(write_result(path, "L", &r, &err), &err);
    CHECK_OK(aq_st_open(path, &f, &err), &err);
    CHECK(aq_qlayer_load_st(f, "L", 10, &q, &err) == AQ_ERR_NUMERIC && strstr(err.msg, "bias"));
    aq_st_close(f);
    r.bias[2] = 0;
    /* non-zero padding bits: 10 codes x 3 bits = 30 bits, 2 padding bits */
    aq_st_writer *w;
    aq_qlayer_keep *k;
    CHECK_OK(aq_st_writer_new(&w, &err), &err);
    CHECK_OK(aq_qlayer_add(w, "L", &r, &k, &err), &err);
    CHECK_OK(aq_st_writer_write(w, path, &err), &err);
    aq_st_writer_free(w);
    aq_qlayer_keep_free(k);
    FILE *fp = fopen(path, "r+b");
    uint64_t hl = 0;
    CHECK(fp && fread(&hl, 8, 1, fp) == 1);
    /* qweight is the first tensor: byte 3 of row 0 is the last byte of that row */
    fseek(fp, (long)(8 + hl + 3), SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, (long)(8 + hl + 3), SEEK_SET);
    fputc(c | 0x80, fp);
    fclose(fp);
    CHECK_OK(aq_st_open(path, &f, &err), &err);
    CHECK(aq_qlayer_load_st(f, "L", 10, &q, &err) == AQ_ERR_FORMAT && strstr(err.msg, "padding"));
    aq_st_close(f);
    free(r.codes);
    free(r.w_scale);
}

static void test_fake_quant_act(void)
{
    float x[5] = {-1.0f, 0.0f, 0.014f, 0.016f, 10.0f};
    aq_qlayer_fake_quant_act(x, 5, 0.01f, 3.0f, 4); /* codes 0..15: values -0.03..0.12 */
    CHECK(x[0] == 0.01f * (0.0f - 3.0f));
    CHECK(x[1] == 0.0f);
    CHECK(x[2] == 0.01f * (4.0f - 3.0f) && x[3] == 0.01f * (5.0f - 3.0f));
    CHECK(x[4] == 0.01f * (15.0f - 3.0f));
    float h[3] = {1.25f, 1.75f, 7.0f}; /* x/scale = 2.5, 3.5: round half to even */
    aq_qlayer_fake_quant_act(h, 3, 0.5f, 3.0f, 4);
    CHECK(h[0] == 1.0f && h[1] == 2.0f && h[2] == 6.0f);
    float u[2] = {1e9f, -3.0f};
    aq_qlayer_fake_quant_act(u, 2, 0.5f, 3.0f, 16); /* a16: unchanged */
    CHECK(u[0] == 1e9f && u[1] == -3.0f);
}

/* The embedding / classifier layout (qlayer.h "Tensors outside the linear
 * layers"): wK and f16 written by aq_qtensor_add read back by
 * aq_qtensor_load_ckpt as the documented matrix (recomputed here); the RTN
 * codes are round-to-nearest on their stored grid and no worse than the
 * unclipped min/max grid; damaged files are refused naming the tensor. */
static aq_status write_tensor(const char *path, const char *opt, size_t rows, size_t cols, const float *vals,
                              const uint8_t *codes, const float *sc, const float *z, aq_error *err)
{
    aq_st_writer *w;
    aq_qlayer_keep *k = NULL;
    AQ_TRY(aq_st_writer_new(&w, err));
    aq_status st = aq_qtensor_add(w, "model.embed_tokens", opt, rows, cols, vals, codes, sc, z, &k, err);
    if (st == AQ_OK) st = aq_st_writer_write(w, path, err);
    aq_st_writer_free(w);
    aq_qlayer_keep_free(k);
    return st;
}

static double row_sse_minmax(const float *w, size_t cols, int bits)
{
    float mn = 0, mx = 0, qmax = (float)((1 << bits) - 1);
    for (size_t c = 0; c < cols; c++) mn = fminf(mn, w[c]), mx = fmaxf(mx, w[c]);
    float s = (mx - mn) / qmax, z = nearbyintf(-mn / s);
    double e = 0;
    for (size_t c = 0; c < cols; c++) {
        float q = fminf(fmaxf(nearbyintf(w[c] / s) + z, 0), qmax);
        e += pow((double)(s * (q - z)) - w[c], 2);
    }
    return e;
}

static void test_tensor(const char *dir)
{
    enum { R = 6, C = 21 };
    float w[R * C], sc[R], z[R], got[R * C];
    uint8_t u[R * C];
    for (int i = 0; i < R * C; i++) w[i] = sinf(0.37f * (float)i) * (1.0f + (float)(i % 5)) - 0.2f;
    char path[1024];
    snprintf(path, sizeof path, "%s/embed.safetensors", dir);
    aq_error err = {0};
    for (int bits = 2; bits <= 8; bits += 2) {
        aq_qtensor_rtn(w, R, C, bits, u, sc, z);
        for (int r = 0; r < R; r++) {
            double e = 0;
            for (int c = 0; c < C; c++) {
                float q = fminf(fmaxf(nearbyintf(w[r * C + c] / sc[r]) + z[r], 0), (float)((1 << bits) - 1));
                CHECK(u[r * C + c] == (uint8_t)q && z[r] == nearbyintf(z[r]) && sc[r] > 0);
                e += pow((double)(sc[r] * ((float)u[r * C + c] - z[r])) - w[r * C + c], 2);
            }
            CHECK(e <= row_sse_minmax(w + r * C, C, bits) * (1 + 1e-12));
        }
        char opt[8];
        snprintf(opt, sizeof opt, "w%d", bits);
        CHECK_OK(write_tensor(path, opt, R, C, NULL, u, sc, z, &err), &err);
        aq_checkpoint *ck = NULL;
        float *m = NULL;
        CHECK_OK(aq_ckpt_open(path, &ck, &err), &err);
        CHECK_OK(aq_qtensor_load_ckpt(ck, "model.embed_tokens", R, C, &m, &err), &err);
        for (int i = 0; m && i < R * C; i++) CHECK(m[i] == sc[i / C] * ((float)u[i] - z[i / C]));
        free(m);
        aq_ckpt_close(ck);
    }
    for (int i = 0; i < R * C; i++) got[i] = aq_f16_to_f32(aq_f32_to_f16(w[i]));
    CHECK_OK(write_tensor(path, "f16", R, C, got, NULL, NULL, NULL, &err), &err);
    aq_checkpoint *ck = NULL;
    float *m = NULL;
    CHECK_OK(aq_ckpt_open(path, &ck, &err), &err);
    CHECK_OK(aq_qtensor_load_ckpt(ck, "model.embed_tokens", R, C, &m, &err), &err);
    CHECK(m && !memcmp(m, got, sizeof got));
    free(m);
    CHECK(aq_qtensor_load_ckpt(ck, "model.embed_tokens", R + 1, C, &m, &err) == AQ_ERR_SHAPE && strstr(err.msg, "weight"));
    CHECK(aq_qtensor_load_ckpt(ck, "lm_head", R, C, &m, &err) == AQ_ERR_NOTFOUND && strstr(err.msg, "quant.lm_head"));
    aq_ckpt_close(ck);
    sc[2] = 0; /* scales must be > 0 */
    CHECK_OK(write_tensor(path, "w4", R, C, NULL, u, sc, z, &err), &err);
    CHECK_OK(aq_ckpt_open(path, &ck, &err), &err);
    CHECK(aq_qtensor_load_ckpt(ck, "model.embed_tokens", R, C, &m, &err) == AQ_ERR_NUMERIC && strstr(err.msg, "w_scale"));
    aq_ckpt_close(ck);
    CHECK(write_tensor(path, "w9", R, C, NULL, u, sc, z, &err) == AQ_ERR_ARG && strstr(err.msg, "'w9'"));
}

int main(void)
{
    char *dir = aq_test_tmpdir("qlayer");
    test_roundtrip(dir, 4, 16, 64);
    test_roundtrip(dir, 3, 8, 13);
    test_roundtrip(dir, 2, 4, 7);
    test_roundtrip(dir, 6, 8, 9);
    test_roundtrip(dir, 8, 16, 5);
    test_damaged(dir);
    test_fake_quant_act();
    test_tensor(dir);
    free(dir);
    AQ_TEST_END();
}
