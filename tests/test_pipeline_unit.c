/* test_pipeline_unit.c — unit checks of the pipeline's pure parts (no MPI
 * launcher, runs under ASan/UBSan):
 *  - the budget check before any work: the smallest feasible --target-bits is
 *    recomputed here independently (sum params x least bits / sum params, with
 *    a pin) and the boundary is accepted / just below it rejected;
 *  - the statistics file round trip: random Gram/sample data written and read
 *    back bit for bit (aligned copies), a flipped byte and a wrong fingerprint
 *    rejected;
 *  - the option menu: canonical names, unknown and duplicate names rejected. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../mpi/dist/pipeline.h"
#include "../mpi/dist/stage_stats.h"
#include "testutil.h"

static void test_options(void)
{
    aq_pipe_cfg c;
    aq_pipe_cfg_default(&c);
    aq_error e = {0};
    CHECK(c.n_options == 4 && !strcmp(c.options[3], "w3a16"));
    CHECK_OK(aq_pipe_cfg_set_options(&c, "w4a8,w8a16", &e), &e);
    CHECK(c.n_options == 2 && !strcmp(c.options[0], "w4a8"));
    e = (aq_error){0};
    CHECK(aq_pipe_cfg_set_options(&c, "w4a16,w5a16", &e) == AQ_ERR_ARG && strstr(e.msg, "w5a16"));
    e = (aq_error){0};
    CHECK(aq_pipe_cfg_set_options(&c, "w4a16,w4a16", &e) == AQ_ERR_ARG && strstr(e.msg, "twice"));
}

static void test_budget(void)
{
    /* a hand-made plan: 3 layers of different sizes */
    aq_pipe_layer L[3] = {{.name = "a.q_proj", .d_out = 64, .d_in = 64},
                          {.name = "a.down_proj", .d_out = 64, .d_in = 172},
                          {.name = "b.q_proj", .d_out = 32, .d_in = 64}};
    aq_pipe_plan p = {.n_layers = 3, .layers = L};
    aq_pipe_cfg c;
    aq_pipe_cfg_default(&c);
    aq_error e = {0};
    CHECK_OK(aq_pipe_cfg_set_options(&c, "w8a16,w4a16,w3a16", &e), &e);
    aq_pipe_budget b;
    aq_pipe_budget_default(&b);
    /* independent: without pins every layer can take 3 bits */
    b.size_value = 3.0;
    CHECK_OK(aq_pipe_budget_check(&c, &p, &b, &e), &e);
    b.size_value = 2.99;
    CHECK(aq_pipe_budget_check(&c, &p, &b, &e) == AQ_ERR_INFEASIBLE && strstr(e.msg, "3 bits"));
    /* pin down_proj to w8: min = (4096*3 + 11008*8 + 2048*3) / 17152 */
    double want = (4096.0 * 3 + 11008.0 * 8 + 2048.0 * 3) / (4096.0 + 11008.0 + 2048.0);
    CHECK_OK(aq_pipe_budget_add_keep(&b, "down_proj=w8a16", &e), &e);
    b.size_value = want;
    CHECK_OK(aq_pipe_budget_check(&c, &p, &b, &e), &e);
    b.size_value = want - 1e-3;
    e = (aq_error){0};
    CHECK(aq_pipe_budget_check(&c, &p, &b, &e) == AQ_ERR_INFEASIBLE);
    char num[32];
    snprintf(num, sizeof num, "%.6g", want);
    CHECK_MSG(strstr(e.msg, num) != NULL, "message '%s' should name %s", e.msg, num);
    /* fraction of FP32: same measure / 32 */
    b.size_unit = AQ_SIZE_FP32_FRACTION;
    b.size_value = want / 32 - 1e-4;
    CHECK(aq_pipe_budget_check(&c, &p, &b, &e) == AQ_ERR_INFEASIBLE);
    /* a pin naming an option outside the menu */
    aq_pipe_budget_default(&b);
    CHECK_OK(aq_pipe_budget_add_keep(&b, "q_proj=w6a16", &e), &e);
    e = (aq_error){0};
    CHECK(aq_pipe_budget_check(&c, &p, &b, &e) == AQ_ERR_ARG && strstr(e.msg, "w6a16"));
    CHECK(aq_pipe_budget_add_keep(&b, "noequals", &e) == AQ_ERR_ARG);
}

static void test_stats_roundtrip(void)
{
    char *dir = aq_test_tmpdir("pipe_unit");
    char sub[600];
    snprintf(sub, sizeof sub, "%s/stats", dir);
    mkdir(sub, 0777);
    int d = 5, n = 7;
    double gram[36];
    float xmin[5], xmax[5], sample[35];
    uint32_t win[7], pos[7];
    srand(7);
    for (int i = 0; i < 36; i++) gram[i] = (double)rand() / RAND_MAX * 1e3 - 500;
    for (int i = 0; i < 5; i++) xmin[i] = -(float)i, xmax[i] = (float)i * 2;
    for (int i = 0; i < 35; i++) sample[i] = (float)((double)rand() / RAND_MAX);
    for (int i = 0; i < 7; i++) win[i] = (uint32_t)i, pos[i] = (uint32_t)(3 * i);
    aq_capstat s = {.block = 2, .point = AQ_CAP_MLP_IN, .d = d, .n_rows = 4096, .gram = gram, .xmin = xmin,
                    .xmax = xmax, .n_sample = n, .sample_cap = n, .sample = sample, .sample_win = win,
                    .sample_pos = pos};
    aq_fingerprint fp = {{0x1234, 0x5678}}, other = {{0x1234, 0x5679}};
    aq_error e = {0};
    CHECK_OK(aq_stats_write(dir, "stats", &s, &fp, &e), &e);
    aq_stats r;
    CHECK_OK(aq_stats_read(dir, "stats", 2, AQ_CAP_MLP_IN, &fp, &r, &e), &e);
    CHECK(r.d == d && r.n_rows == 4096 && r.n_sample == (size_t)n && !r.cross);
    CHECK(r.gram && !memcmp(r.gram, gram, sizeof gram) && r.sample && !memcmp(r.sample, sample, sizeof sample));
    CHECK(((uintptr_t)r.gram % 8) == 0);
    aq_stats_free(&r);
    e = (aq_error){0};
    CHECK(aq_stats_read(dir, "stats", 2, AQ_CAP_MLP_IN, &other, &r, &e) != AQ_OK && strstr(e.msg, "fingerprint"));
    /* flip a byte in the middle: rejected, naming the file */
    char path[AQ_PIPE_PATH];
    aq_stats_path(dir, "stats", 2, AQ_CAP_MLP_IN, path);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (f) {
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, len / 2 + 40, SEEK_SET);
        int ch = fgetc(f);
        fseek(f, len / 2 + 40, SEEK_SET);
        fputc(ch ^ 0x10, f);
        fclose(f);
    }
    e = (aq_error){0};
    CHECK(aq_stats_read(dir, "stats", 2, AQ_CAP_MLP_IN, &fp, &r, &e) != AQ_OK && strstr(e.msg, path));
    e = (aq_error){0};
    CHECK(aq_stats_read(dir, "stats", 1, AQ_CAP_MLP_IN, &fp, &r, &e) == AQ_ERR_NOTFOUND);
    remove(path);
    rmdir(sub);
    rmdir(dir);
    free(dir);
}

int main(void)
{
    test_options();
    test_budget();
    test_stats_roundtrip();
    AQ_TEST_END();
}
