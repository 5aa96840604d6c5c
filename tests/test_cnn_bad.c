/* test_cnn_bad.c — part of test_cnn: graphs with shape mismatches between
 * ops must fail at plan time with a message naming the node; the engine's
 * im2col columns are exactly the transpose of aq_im2col's rows (conv.h, the
 * AdaQuant capture's layout) for every stride/pad/dilation/group mix; and the
 * evaluation helpers (normalisation parsing, chunked prediction) on a graph
 * whose answer is known: Flatten + an identity Gemm, so the logits are the
 * normalised pixels themselves. */
#include <stdlib.h>
#include <string.h>

#include "../src/adaquant/conv.h"
#include "../src/cnn/cnn_internal.h"
#include "test_cnn_build.h"
#include "testutil.h"

void test_cnn_bad(void);

static float *zeros(size_t n)
{
    return calloc(n, sizeof(float));
}

/* plan_init must fail with `code` and a message holding both strings. */
static void expect_fail(const aq_cnn_graph *g, aq_status code, const char *s1, const char *s2)
{
    aq_error err = {0};
    aq_cnn_plan p;
    aq_status st = aq_cnn_plan_init(g, 2, &p, &err);
    CHECK_MSG(st == code && strstr(err.msg, s1) && strstr(err.msg, s2),
              "status %d, message '%s' (want %s, %s)", st, err.msg, s1, s2);
    if (st == AQ_OK) aq_cnn_plan_free(&p);
}

static void bad_conv(void)
{
    aq_cnn_graph g;
    float *w = zeros(4 * 2 * 9);
    const char *in[] = {"X", "W"};
    tg_init(&g, 13);
    tg_input(&g, "X", 4, (int64_t[]){-1, 3, 8, 8});
    tg_const(&g, "W", 4, (int64_t[]){4, 2, 3, 3}, w);
    tg_node(&g, AQ_OP_CONV, "conv_bad", 2, in, "Y");
    g.output = tg_value(&g, "Y");
    expect_fail(&g, AQ_ERR_SHAPE, "node 'conv_bad' (Conv)", "does not fit input [2, 3, 8, 8]");
    aq_cnn_graph_free(&g);
    /* a 5x5 kernel on a 3x3 input without padding */
    tg_init(&g, 13);
    tg_input(&g, "X", 4, (int64_t[]){-1, 2, 3, 3});
    tg_const(&g, "W", 4, (int64_t[]){1, 2, 5, 5}, w);
    tg_node(&g, AQ_OP_CONV, "conv_big", 2, in, "Y");
    g.output = tg_value(&g, "Y");
    expect_fail(&g, AQ_ERR_SHAPE, "node 'conv_big'", "does not fit the padded input 3");
    aq_cnn_graph_free(&g);
    free(w);
}

static void bad_chain(void)
{
    aq_cnn_graph g;
    float *b = zeros(20 * 4);
    tg_init(&g, 13);
    tg_input(&g, "X", 4, (int64_t[]){-1, 2, 3, 3});
    tg_const(&g, "B", 2, (int64_t[]){20, 4}, b);
    tg_node(&g, AQ_OP_FLATTEN, "flat", 1, (const char *[]){"X"}, "F");
    tg_node(&g, AQ_OP_GEMM, "fc", 2, (const char *[]){"F", "B"}, "Y");
    g.output = tg_value(&g, "Y");
    expect_fail(&g, AQ_ERR_SHAPE, "node 'fc' (Gemm)", "A [2, 18]");
    aq_cnn_graph_free(&g);

    tg_init(&g, 13);
    tg_input(&g, "X", 4, (int64_t[]){-1, 3, 4, 4});
    tg_const(&g, "B", 3, (int64_t[]){5, 1, 1}, b);
    tg_node(&g, AQ_OP_ADD, "add", 2, (const char *[]){"X", "B"}, "Y");
    g.output = tg_value(&g, "Y");
    expect_fail(&g, AQ_ERR_SHAPE, "node 'add' (Add)",
                "[2, 3, 4, 4] and [5, 1, 1] do not broadcast");
    aq_cnn_graph_free(&g);

    tg_init(&g, 13);
    tg_input(&g, "X", 4, (int64_t[]){-1, 3, 4, 5});
    aq_cnn_node *n = tg_node(&g, AQ_OP_RESHAPE, "rs", 1, (const char *[]){"X"}, "Y");
    n->a.shape_ndim = 3;
    memcpy(n->a.shape, (int64_t[]){0, 7, -1}, 3 * sizeof(int64_t));
    g.output = tg_value(&g, "Y");
    expect_fail(&g, AQ_ERR_SHAPE, "node 'rs' (Reshape)",
                "cannot reshape [2, 3, 4, 5] to [0, 7, -1]");
    aq_cnn_graph_free(&g);
    free(b);
}

static void bad_graph(void)
{
    aq_cnn_graph g;
    tg_init(&g, 13);
    tg_input(&g, "X", 4, (int64_t[]){-1, 3, -1, -1});
    tg_node(&g, AQ_OP_RELU, "r", 1, (const char *[]){"X"}, "Y");
    g.output = tg_value(&g, "Y");
    expect_fail(&g, AQ_ERR_SHAPE, "dimension 2 of the graph input", "not fixed");
    aq_cnn_graph_free(&g);
    /* an operator the engine does not know, and a value read before it is computed */
    tg_init(&g, 13);
    tg_input(&g, "X", 2, (int64_t[]){-1, 3});
    tg_node(&g, AQ_OP_RELU, "r", 1, (const char *[]){"Z"}, "Y");
    tg_node(&g, AQ_OP_RELU, "z", 1, (const char *[]){"X"}, "Z");
    g.output = tg_value(&g, "Y");
    expect_fail(&g, AQ_ERR_FORMAT, "node 'r' (Relu)", "'Z') is not computed before");
    g.nodes[0].op = AQ_OP_COUNT;
    expect_fail(&g, AQ_ERR_FORMAT, "node 'r'", "not supported");
    aq_cnn_graph_free(&g);
}

/* Flatten + Gemm with an identity weight: logits = normalised pixels. */
static void known_predict(void)
{
    aq_cnn_graph g;
    float eye[16] = {0};
    for (int i = 0; i < 4; i++)
        eye[i * 5] = 1.0f;
    tg_init(&g, 13);
    tg_input(&g, "X", 4, (int64_t[]){1, 1, 2, 2});
    tg_const(&g, "I", 2, (int64_t[]){4, 4}, eye);
    tg_node(&g, AQ_OP_FLATTEN, "flat", 1, (const char *[]){"X"}, "F");
    tg_node(&g, AQ_OP_GEMM, "fc", 2, (const char *[]){"F", "I"}, "Y");
    g.output = tg_value(&g, "Y");
    enum { N = 7 };
    uint8_t px[N * 4];
    int32_t want[N], pred[N], pred3[N];
    float logits[N * 4];
    for (int i = 0; i < N * 4; i++)
        px[i] = (uint8_t)(i * 37 % 251);
    for (int n = 0; n < N; n++) {
        want[n] = 0;
        for (int c = 1; c < 4; c++)
            if (px[n * 4 + c] > px[n * 4 + want[n]]) want[n] = c;
    }
    aq_error err = {0};
    aq_cnn_norm nm;
    size_t classes = 0;
    CHECK_OK(aq_cnn_norm_parse("0.25,0.5", &nm, &err), &err);
    CHECK_OK(aq_cnn_predict(&g, px, N, 4, &nm, 3, pred3, logits, &classes, &err), &err);
    CHECK(classes == 4);
    for (int i = 0; i < N * 4; i++) /* x*1 + 0s: exact, so the normalised value itself */
        CHECK_CLOSE(logits[i], (float)((px[i] / 255.0 - 0.25) / 0.5), 0.0);
    CHECK_OK(aq_cnn_norm_parse("none", &nm, &err), &err);
    CHECK_OK(aq_cnn_predict(&g, px, N, 4, &nm, 100, pred, logits, NULL, &err), &err);
    CHECK(logits[5] == (float)px[5]);
    CHECK(aq_cnn_count_equal(pred, want, N) == N);
    CHECK(aq_cnn_count_equal(pred3, want, N) == N);
    aq_status st = aq_cnn_predict(&g, px, N, 5, &nm, 3, pred, NULL, NULL, &err);
    CHECK_MSG(st == AQ_ERR_SHAPE && strstr(err.msg, "takes 4 values per image, the images have 5"),
              "%s", err.msg);
    aq_cnn_graph_free(&g);
    const char *bad[] = {"1", "0.5,0", "0.5,-1", "x,1", "0.5,1,2", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_MSG(aq_cnn_norm_parse(bad[i], &nm, &err) == AQ_ERR_ARG && strstr(err.msg, "MEAN,STD"),
                  "'%s'", bad[i]);
}

static void im2col_case(int C, int H, int W, int kh, int kw, int s, int pad, int dil, int groups)
{
    aq_conv_spec sp = {C, groups, kh, kw, s, s, pad, pad, dil, dil, groups};
    aq_cnn_attrs a = {.kernel = {kh, kw},
                      .strides = {s, s},
                      .pads = {pad, pad, pad, pad},
                      .dilations = {dil, dil}};
    int OH, OW, cg = C / groups;
    aq_error err = {0};
    CHECK_OK(aq_conv_check(&sp, H, W, &OH, &OW, &err), &err);
    size_t P = (size_t)OH * OW, K = (size_t)cg * kh * kw;
    float *x = malloc((size_t)C * H * W * sizeof(float)), *rows = malloc(P * K * sizeof(float));
    float *cols = malloc(P * K * sizeof(float));
    for (int i = 0; i < C * H * W; i++)
        x[i] = (float)(i % 97) - 40.0f;
    for (int g = 0; g < groups; g++) {
        aq_im2col(x, 1, H, W, &sp, g, rows);
        aq_cnn_im2col_t(x + (size_t)g * cg * H * W, cg, H, W, &a, OH, OW, cols);
        int same = 1;
        for (size_t p = 0; p < P; p++)
            for (size_t k = 0; k < K; k++)
                same &= rows[p * K + k] == cols[k * P + p];
        CHECK_MSG(same, "im2col C %d %dx%d k %dx%d s %d pad %d dil %d group %d/%d", C, H, W, kh, kw,
                  s, pad, dil, g, groups);
    }
    free(x);
    free(rows);
    free(cols);
}

void test_cnn_bad(void)
{
    im2col_case(3, 7, 6, 3, 3, 1, 1, 1, 1);
    im2col_case(4, 9, 8, 3, 2, 2, 2, 2, 2);
    im2col_case(6, 5, 11, 5, 5, 3, 2, 1, 3);
    im2col_case(2, 4, 4, 1, 1, 2, 0, 1, 1);
    im2col_case(2, 6, 7, 2, 3, 1, 3, 3, 2);
    /* "same" convs (stride 1, OW == W): the one-memcpy path */
    im2col_case(4, 5, 9, 5, 5, 1, 2, 1, 1);
    im2col_case(2, 6, 7, 3, 3, 1, 2, 2, 2);
    im2col_case(1, 1, 3, 3, 3, 1, 1, 1, 1);
    im2col_case(3, 2, 2, 3, 3, 1, 1, 1, 3);
    bad_conv();
    bad_chain();
    bad_graph();
    known_predict();
}
