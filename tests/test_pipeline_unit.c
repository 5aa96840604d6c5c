/* test_pipeline_unit.c — unit checks of the pipeline's pure parts (no MPI
 * launcher, runs under ASan/UBSan):
 *  - the budget check before any work: the smallest feasible --target-bits is
 *    recomputed here independently (sum params x least bits / sum params, with
 *    a pin) and the boundary is accepted / just below it rejected;
 *  - the statistics file round trip: random Gram/sample data written and read
 *    back bit for bit (aligned copies; the Gram stored as its lower triangle,
 *    the file smaller than the full Gram), an asymmetric Gram refused, a
 *    format-1 file (full Gram, written here with the container's own writer)
 *    read to the same doubles, a flipped byte and a wrong fingerprint
 *    rejected;
 *  - the option menu: canonical names, unknown and duplicate names rejected;
 *  - the AQ_FAIL_AT test hook's grammar (every phase, the short form, the
 *    defaults, malformed values rejected);
 *  - settings.json: a round trip, then a hand edit, a damaged file and a
 *    changed input, each refused with an error naming the file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../mpi/pipeline/driver.h"
#include "../mpi/pipeline/pipeline.h"
#include "../mpi/pipeline/stage_stats.h"
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
    b.size_unit = AQ_SIZE_AVG_BITS; /* the --target-bits measure (the default is bytes: test_bytes.py) */
    b.bpw = 0;
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

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Format 2 stores 21 of the 36 Gram doubles: the file is 15 * 8 bytes
 * smaller than a format-1 file of the same statistics, which still reads to
 * the same doubles; an asymmetric Gram is refused (packing would drop half). */
static void stats_formats(const char *dir, aq_capstat *s, const aq_fingerprint *fp)
{
    char path[AQ_PIPE_PATH];
    aq_stats_path(dir, "stats", s->block, (int)s->point, path);
    long packed = file_size(path);
    int64_t d1 = s->d + 1, ns = s->n_sample, rows = (int64_t)s->n_rows;
    aq_tensor_view t[7] = {
        {"gram", AQ_F64, 2, {d1, d1}, s->gram, (size_t)(d1 * d1) * 8},
        {"xmin", AQ_F32, 1, {s->d}, s->xmin, (size_t)s->d * 4},
        {"xmax", AQ_F32, 1, {s->d}, s->xmax, (size_t)s->d * 4},
        {"sample", AQ_F32, 2, {ns, s->d}, s->sample, (size_t)(ns * s->d) * 4},
        {"sample_win", AQ_U32, 1, {ns}, s->sample_win, (size_t)ns * 4},
        {"sample_pos", AQ_U32, 1, {ns}, s->sample_pos, (size_t)ns * 4},
        {"n_rows", AQ_I64, 1, {1}, &rows, 8},
    };
    aq_result_desc desc = {.layer = "stats.2.mlp_in", .option = "capture", .fp = *fp, .n_tensors = 7,
                           .tensors = t, .stored = 1};
    aq_error e = {0};
    CHECK_OK(aq_result_write(path, &desc, &e), &e);
    /* docs/WORKDIR.md's tensor record: 15 fewer doubles, a 1-D shape (8 bytes
     * less) and the name "gram_lower" (6 bytes more); one stored zlib block */
    CHECK_MSG(file_size(path) - packed == 15 * 8 + 8 - 6, "format 1 %ld vs 2 %ld bytes", file_size(path), packed);
    aq_stats r;
    CHECK_OK(aq_stats_read(dir, "stats", 2, AQ_CAP_MLP_IN, fp, &r, &e), &e);
    CHECK(r.d == s->d && r.gram && !memcmp(r.gram, s->gram, (size_t)(d1 * d1) * 8));
    aq_stats_free(&r);
    double g01 = s->gram[1];
    s->gram[1] += 1; /* G[0][1] != G[1][0]: the first row is checked */
    e = (aq_error){0};
    CHECK(aq_stats_write(dir, "stats", s, fp, &e) == AQ_ERR_ARG && strstr(e.msg, "not symmetric") &&
          strstr(e.msg, path));
    s->gram[1] = g01;
    CHECK_OK(aq_stats_write(dir, "stats", s, fp, &e), &e);
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
    for (int i = 0; i < 6; i++) /* symmetric, as every capture Gram is */
        for (int j = 0; j <= i; j++) gram[i * 6 + j] = gram[j * 6 + i] = (double)rand() / RAND_MAX * 1e3 - 500;
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
    stats_formats(dir, &s, &fp);
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

static void test_fail_at(void)
{
    static const struct {
        const char *spec, *phase;
        long unit;
        int rank, mode;
    } good[] = {
        {"1:55", "calibrate", 55, 1, AQ_FAIL_ABORT},        /* the original short form */
        {"0:7:kill", "calibrate", 7, 0, AQ_FAIL_KILL},
        {"calibrate:9:2:exit", "calibrate", 9, 2, AQ_FAIL_EXIT},
        {"capture:2:1:kill", "capture", 2, 1, AQ_FAIL_KILL},
        {"tune:5", "tune", 5, 0, AQ_FAIL_ABORT},            /* rank defaults to 0 */
        {"tune:0:exit", "tune", 0, 0, AQ_FAIL_EXIT},        /* a mode without a rank */
        {"write:3:0:abort", "write", 3, 0, AQ_FAIL_ABORT},
        {"capture_write:2:0:kill", "capture_write", 2, 0, AQ_FAIL_KILL},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        aq_dist_failspec f;
        aq_error e = {0};
        CHECK_OK(aq_dist_parse_fail_at(good[i].spec, &f, &e), &e);
        CHECK_MSG(!strcmp(f.phase, good[i].phase) && f.unit == good[i].unit && f.rank == good[i].rank &&
                      f.mode == good[i].mode,
                  "AQ_FAIL_AT=%s parsed as %s:%ld:%d:%d", good[i].spec, f.phase, f.unit, f.rank, f.mode);
    }
    static const char *bad[] = {"tune", "tune:", "tune:x", "tune:-1", "tune:5:1:boom", "tune:5:1:kill:x",
                                "foo:1", "1", "1:", "1:2:3", "-1:5", "capture:1:+2", "write:3:kill:0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        aq_dist_failspec f;
        aq_error e = {0};
        CHECK_MSG(aq_dist_parse_fail_at(bad[i], &f, &e) == AQ_ERR_ARG && strstr(e.msg, bad[i]),
                  "AQ_FAIL_AT=%s must be rejected naming the value (%s)", bad[i], e.msg);
    }
    aq_dist_failspec f;
    aq_error e = {0};
    CHECK(aq_dist_parse_fail_at("", &f, &e) == AQ_OK && f.phase[0] == '\0');
    CHECK(aq_dist_parse_fail_at(NULL, &f, &e) == AQ_OK && f.phase[0] == '\0');
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    if (buf) buf[fread(buf, 1, (1 << 16) - 1, f)] = '\0';
    fclose(f);
    return buf;
}

/* --calib / --eval sources (a glob among them) round-trip through
 * settings.json; a new file matching the glob, or another --text-field, is a
 * change of the data that reading the settings refuses. */
static void test_settings_sources(aq_pipe_cfg *c, const char *dir)
{
    char calib[AQ_PIPE_PATH + 16], ev1[AQ_PIPE_PATH + 16], ev2[AQ_PIPE_PATH + 16], pat[AQ_PIPE_PATH + 16];
    snprintf(calib, sizeof calib, "%s/calib.jsonl", dir);
    snprintf(ev1, sizeof ev1, "%s/ev1.txt", dir);
    snprintf(ev2, sizeof ev2, "%s/ev2.txt", dir);
    snprintf(pat, sizeof pat, "%s/ev*.txt", dir);
    put(calib, "{\"text\": \"Once.\"}\n");
    put(ev1, "Twice.\n");
    memset(&c->data, 0, sizeof c->data);
    aq_error e = {0};
    CHECK_OK(aq_data_spec_add(&c->data, AQ_DATA_CALIB, calib, &e), &e);
    CHECK_OK(aq_data_spec_add(&c->data, AQ_DATA_EVAL, pat, &e), &e);
    CHECK(aq_data_spec_add(&c->data, AQ_DATA_SPLIT, ev1, &e) == AQ_ERR_ARG && strstr(e.msg, "cannot be combined"));
    CHECK_OK(aq_pipe_cfg_fingerprint(c, &e), &e);
    CHECK_OK(aq_pipe_cfg_write(c, &e), &e);
    aq_pipe_cfg r;
    CHECK_OK(aq_pipe_cfg_read(c->work, &r, &e), &e);
    CHECK(r.data.n == 2 && r.data.src[1].role == AQ_DATA_EVAL && !strcmp(r.data.src[1].path, pat) &&
          aq_fp_equal(&r.fp_text, &c->fp_text));
    put(ev2, "Thrice.\n"); /* a second match of the --eval glob */
    e = (aq_error){0};
    CHECK_MSG(aq_pipe_cfg_read(c->work, &r, &e) == AQ_ERR_ARG && strstr(e.msg, "--eval") &&
                  strstr(e.msg, "data changed since capture"),
              "a new file matching the --eval glob: %s", e.msg);
    unlink(ev2);
    CHECK_OK(aq_pipe_cfg_read(c->work, &r, &e), &e);
    aq_fingerprint before = c->fp_text;
    strcpy(c->data.text_field, "body");
    CHECK_OK(aq_pipe_cfg_fingerprint(c, &e), &e);
    CHECK(!aq_fp_equal(&before, &c->fp_text)); /* the field enters the data fingerprint */
    char path[AQ_PIPE_PATH + 16];
    snprintf(path, sizeof path, "%s/settings.json", c->work);
    unlink(path);
    unlink(calib);
    unlink(ev1);
}

/* settings.json refuses, naming the file, each way a work dir can go stale. */
static void test_settings(void)
{
    char *dir = aq_test_tmpdir("pipe_settings");
    aq_pipe_cfg c, r;
    aq_pipe_cfg_default(&c);
    /* the settings code only hashes the inputs: small stand-in files suffice */
    snprintf(c.model, sizeof c.model, "%s/model.bin", dir);
    snprintf(c.tokenizer, sizeof c.tokenizer, "%s/tok.bin", dir);
    char text[AQ_PIPE_PATH + 16];
    snprintf(text, sizeof text, "%s/text.txt", dir);
    aq_error e0 = {0};
    CHECK_OK(aq_data_spec_add(&c.data, AQ_DATA_SPLIT, text, &e0), &e0);
    snprintf(c.work, sizeof c.work, "%s/work", dir);
    put(c.model, "model bytes");
    put(c.tokenizer, "tokenizer bytes");
    put(text, "Once upon a time.\n");
    CHECK(mkdir(c.work, 0777) == 0);
    c.iters = 5;
    c.seed = 12345678901234567ULL;
    c.sequential = 1;
    aq_error e = {0};
    CHECK_OK(aq_pipe_cfg_fingerprint(&c, &e), &e);
    CHECK_OK(aq_pipe_cfg_write(&c, &e), &e);
    CHECK_OK(aq_pipe_cfg_read(c.work, &r, &e), &e);
    CHECK(r.iters == 5 && r.seed == c.seed && r.sequential == 1 && r.n_options == c.n_options &&
          !strcmp(r.model, c.model) && aq_fp_equal(&r.fp_text, &c.fp_text));
    aq_fingerprint a = aq_pipe_task_fp(&c, "x", "w4a16"), b = aq_pipe_task_fp(&r, "x", "w4a16");
    CHECK_MSG(aq_fp_equal(&a, &b), "the settings read back give other task fingerprints");
    char path[AQ_PIPE_PATH + 16];
    snprintf(path, sizeof path, "%s/settings.json", c.work);
    char *good = slurp(path), *edit = good ? strdup(good) : NULL, *at = edit ? strstr(edit, "\"iters\": 5") : NULL;
    CHECK(at != NULL);
    if (!at) return;
    at[9] = '6'; /* a hand edit */
    put(path, edit);
    e = (aq_error){0};
    CHECK_MSG(aq_pipe_cfg_read(c.work, &r, &e) == AQ_ERR_FORMAT && strstr(e.msg, path) &&
                  strstr(e.msg, "changed after capture"),
              "a hand-edited settings.json: %s", e.msg);
    edit[strlen(edit) / 2] = '\0'; /* cut short */
    put(path, edit);
    e = (aq_error){0};
    CHECK_MSG(aq_pipe_cfg_read(c.work, &r, &e) == AQ_ERR_FORMAT && strstr(e.msg, path) &&
                  strstr(e.msg, "not valid JSON"),
              "a damaged settings.json: %s", e.msg);
    put(path, good);
    put(text, "Once upon a time!\n"); /* the text changed since capture */
    e = (aq_error){0};
    CHECK_MSG(aq_pipe_cfg_read(c.work, &r, &e) == AQ_ERR_ARG && strstr(e.msg, text) &&
                  strstr(e.msg, "calibration text changed since capture"),
              "a changed calibration text: %s", e.msg);
    unlink(path);
    e = (aq_error){0};
    CHECK_MSG(aq_pipe_cfg_read(c.work, &r, &e) == AQ_ERR_NOTFOUND && strstr(e.msg, "run `adaquant capture"),
              "no settings.json: %s", e.msg);
    free(good);
    free(edit);
    test_settings_sources(&c, dir);
    unlink(c.model);
    unlink(c.tokenizer);
    unlink(text);
    rmdir(c.work);
    rmdir(dir);
    free(dir);
}

int main(void)
{
    test_fail_at();
    test_settings();
    test_options();
    test_budget();
    test_stats_roundtrip();
    AQ_TEST_END();
}
