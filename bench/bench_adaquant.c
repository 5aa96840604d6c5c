/* bench_adaquant.c — AdaQuant layer optimizer benchmarks (figures, not assertions).
 *
 *   bench_adaquant speed   seconds per Gram-form iteration, GFLOP/s, ratio to a
 *                          BLIS sgemm of the same shape in the same run, Gram
 *                          build cost and the Gram/rows crossover
 *   bench_adaquant precision  Gram accumulation error (float64 blocked vs float32) and
 *                          the effect of the float32 per-iteration gemm
 *   bench_adaquant synth   loss_rtn / loss_gptq / loss_adaquant at w4a16, w3a16,
 *                          w4a8, w4a4 on heavy-tailed inputs with outlier channels
 *   bench_adaquant kquant  the ggml block types (Q2_K..Q6_K, Q4_0, Q8_0): loss of
 *                          llama.cpp's RTN bytes vs AdaQuant's calibrated blocks
 *   bench_adaquant conv    a 3x3 conv and a depthwise conv (per-group problems)
 *   bench_adaquant real    the same on every linear of stories260K with its real
 *                          inputs (the model engine's capture hook, default
 *                          calibration set: 64 windows x 256 tokens of the first
 *                          half of TinyStories validation.txt); per-layer ratios
 *                          loss_adaquant / loss_gptq and their median
 * Options: --iters N --polish R --starts S --eval E --lr-w X --options w4a16,w3a16 --max-d D --max-n N
 * BLIS runs single-threaded (one rank per core). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <blis.h>

#include "../src/blas/blas_kernel.h"
#include "../src/adaquant/adaquant.h"
#include "../src/adaquant/conv.h"
#include "../src/adaquant/layer_state.h"
#include "../src/model/model.h"
#include "../src/text/textdata.h"
#include "../src/text/tokenizer.h"
#include "benchutil.h"

#ifndef AQ_SHARED_DIR_DEFAULT
#define AQ_SHARED_DIR_DEFAULT "../shared"
#endif

typedef struct bench_cfg {
    int iters, polish, eval_every, max_d, max_n, starts, have_iters, have_polish, have_eval, have_lr, have_starts;
    double lr_w;
    char options[256];
} bench_cfg;

static uint64_t rng_state = 42;
static double urand(void) { return (double)(aq_splitmix64(&rng_state) >> 11) * (1.0 / 9007199254740992.0); }
static double grand(void)
{
    double u = urand() + 1e-300, v = urand();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* Heavy-tailed (Student-t, 3 dof) inputs, every 16th channel a x8 outlier
 * channel, every 5th channel with a mean offset (ones column matters). */
static float *synth_inputs(size_t n, size_t d)
{
    float *x = malloc(n * d * sizeof *x);
    if (!x) return NULL;
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < d; c++) {
            double chi = 0;
            for (int k = 0; k < 3; k++) {
                double g = grand();
                chi += g * g;
            }
            double t = grand() / sqrt(chi / 3 + 1e-12);
            x[i * d + c] = (float)(t * (c % 16 == 0 ? 8 : 1) + (c % 5 == 0 ? 0.5 : 0));
        }
    return x;
}

static void apply_cfg(const bench_cfg *b, aq_layer_opts *o)
{
    if (b->have_iters) o->iters = b->iters;
    if (b->have_polish) o->polish_rounds = b->polish;
    if (b->have_eval) o->eval_every = b->eval_every;
    if (b->have_lr) o->lr_w = b->lr_w;
    if (b->have_starts) o->starts = b->starts;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- speed ---- */
static void bench_speed(const bench_cfg *b)
{
    static const size_t dims[] = {64, 256, 1024, 4096};
    static const size_t ns[] = {4096, 65536};
    printf("# speed: one Gram-form iteration = gemm d_out x D x D (D = d_in+1) + elementwise\n");
    printf("%6s %7s %12s %10s %10s %8s %10s %10s %10s\n", "d", "N", "s/iter", "GFLOP/s", "sgemm", "ratio",
           "gram_s", "rows_s/it", "crossN");
    for (size_t di = 0; di < 4; di++) {
        size_t d = dims[di], D = d + 1;
        if ((int)d > b->max_d) continue;
        for (size_t ni = 0; ni < 2; ni++) {
            size_t n = ns[ni];
            if ((int)n > b->max_n) continue;
            if ((double)n * d * 4 > 2e9) {
                printf("%6zu %7zu skipped (inputs > 2 GB)\n", d, n);
                continue;
            }
            float *x = synth_inputs(n, d), *w = malloc(d * d * sizeof *w);
            for (size_t i = 0; i < d * d; i++) w[i] = (float)(0.05 * grand());
            aq_error err = {0};
            aq_ls S;
            double t0 = aq_bench_wall_seconds();
            double *A, *B, *C;
            aq_grams_from_rows(x, NULL, n, d, NULL, &A, &B, &C, &err);
            double tg = aq_bench_wall_seconds() - t0;
            aq_ls_new(&S, d, d, 4, 0, w, NULL, &err);
            aq_ls_set_grams(&S, A, B, C, &err);
            for (size_t r = 0; r < d; r++) {
                S.s[r] = 0.02;
                S.z[r] = 8;
            }
            aq_ls_v_from_codes(&S);
            memcpy(S.V, w, d * d * sizeof *w);
            aq_adam_cfg cfg = {.f32 = 1, .lr_w = 0.02, .lr_s = 0.002, .lr_z = 0.02, .lr_b = 0.01};
            aq_adam adam;
            aq_adam_new(&adam, &S, &cfg, 1, &err);
            int it = d >= 4096 ? 2 : d >= 1024 ? 10 : 200;
            aq_adam_run(&S, &adam, &cfg, 1);
            /* reference: BLIS sgemm of the same shape; the two are timed alternately
             * (3 rounds, best of each) so that load from other processes hits both */
            float *a = malloc(d * D * sizeof *a), *c = malloc(d * D * sizeof *c);
            for (size_t i = 0; i < d * D; i++) a[i] = (float)grand();
            double ti = 1e30, ts = 1e30;
            for (int rep = 0; rep < 3; rep++) {
                t0 = aq_bench_wall_seconds();
                aq_adam_run(&S, &adam, &cfg, it);
                ti = fmin(ti, (aq_bench_wall_seconds() - t0) / it);
                t0 = aq_bench_wall_seconds();
                for (int k = 0; k < it; k++)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (f77_int)d, (f77_int)D,
                                (f77_int)D, 1.0f, a, (f77_int)D, S.Cf, (f77_int)D, 0.0f, c, (f77_int)D);
                ts = fmin(ts, (aq_bench_wall_seconds() - t0) / it);
            }
            double flops = 2.0 * d * D * D;
            /* rows mode: a full-batch step over all rows costs ~3 gemms of n x d x D */
            aq_adam_free(&adam);
            aq_adam_cfg rc = cfg;
            rc.x = x;
            rc.n_rows = n;
            rc.batch = n < 4096 ? n : 4096;
            aq_adam_new(&adam, &S, &rc, 1, &err);
            int rit = d >= 4096 ? 1 : d >= 1024 ? 2 : 10;
            t0 = aq_bench_wall_seconds();
            aq_adam_run(&S, &adam, &rc, rit);
            double tr = (aq_bench_wall_seconds() - t0) / rit; /* per batch of rc.batch rows */
            double cross = ti / tr * (double)rc.batch;
            printf("%6zu %7zu %12.6f %10.2f %10.2f %8.3f %10.3f %10.5f %10.0f\n", d, n, ti, flops / ti * 1e-9,
                   flops / ts * 1e-9, ts / ti, tg, tr, cross);
            aq_adam_free(&adam);
            aq_ls_free(&S);
            free(a);
            free(c);
            free(x);
            free(w);
        }
    }
    printf("# ratio = sgemm time / iteration time; crossN = rows per full-batch gradient at which\n"
           "# the rows gradient costs as much as one Gram iteration (gram wins above it).\n");
}

/* ---- precision: Gram accumulation and the float32 per-iteration gemm ---- */
static void bench_precision(const bench_cfg *b)
{
    size_t n = 16384, d = 256, D = d + 1;
    float *x = synth_inputs(n, d);
    double *g = calloc(D * D, 8);
    long double *ref = calloc(D * D, sizeof *ref);
    float *gf = calloc(D * D, 4), *xo = malloc(n * D * 4);
    aq_error err = {0};
    aq_gram_accumulate(g, x, n, d, &err);
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; i < D; i++) {
            long double xi = i < d ? x[k * d + i] : 1.0L;
            for (size_t j = i; j < D; j++) ref[i * D + j] += xi * (j < d ? x[k * d + j] : 1.0L);
        }
    for (size_t k = 0; k < n; k++) {
        memcpy(xo + k * D, x + k * d, d * 4);
        xo[k * D + d] = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (f77_int)D, (f77_int)D, (f77_int)n, 1.0f, xo, (f77_int)D,
                xo, (f77_int)D, 0.0f, gf, (f77_int)D);
    long double e64 = 0, e32 = 0, nr = 0;
    for (size_t i = 0; i < D; i++)
        for (size_t j = i; j < D; j++) {
            long double r = ref[i * D + j], w = i == j ? 1 : 2;
            e64 += w * (g[i * D + j] - r) * (g[i * D + j] - r);
            e32 += w * (gf[i * D + j] - r) * (gf[i * D + j] - r);
            nr += w * r * r;
        }
    printf("# Gram precision, N=%zu d=%zu heavy-tailed: relative Frobenius error vs a long-double reference:\n"
           "#   float64 blocked dsyrk (aq_gram_accumulate) %.3e, float32 sgemm %.3e\n",
           n, d, (double)sqrtl(e64 / nr), (double)sqrtl(e32 / nr));
    free(g);
    free(ref);
    free(gf);
    free(xo);
    /* float32 vs float64 per-iteration gemm on the same layer */
    size_t d_out = 256;
    float *w = malloc(d_out * d * 4);
    for (size_t i = 0; i < d_out * d; i++) w[i] = (float)(grand() / sqrt((double)d));
    aq_layer_problem p = {.name = "prec", .d_out = d_out, .d_in = d, .weight = w, .n_rows = n, .x = x};
    for (int f32 = 1; f32 >= 0; f32--) {
        aq_layer_opts o;
        aq_layer_opts_default(&o);
        apply_cfg(b, &o);
        o.iters = b->have_iters ? b->iters : 400;
        o.f32_gemm = f32;
        aq_layer_result r;
        if (aq_layer_run(&p, &o, &r, &err) != AQ_OK) {
            printf("error: %s\n", err.msg);
            continue;
        }
        printf("# %s gemm, 256x256 w4a16, %d Adam iterations: loss_final %.6e (gptq %.6e), %.2f s\n",
               f32 ? "float32" : "float64", r.iterations, r.loss_final, r.loss_gptq, r.seconds);
        aq_layer_result_free(&r);
    }
    free(w);
    free(x);
}

/* ---- convolutions: a dense 3x3 conv and a depthwise one (many tiny problems) ---- */
static void bench_conv(const bench_cfg *b)
{
    static const aq_conv_spec specs[] = {{64, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1}, {256, 256, 3, 3, 1, 1, 1, 1, 1, 1, 256}};
    static const char *names[] = {"conv 64->64 3x3", "depthwise 256 3x3"};
    int N = 16, H = 32, W = 32;
    for (int k = 0; k < 2; k++) {
        const aq_conv_spec *s = &specs[k];
        size_t K = (size_t)(s->c_in / s->groups) * 9, nx = (size_t)N * s->c_in * H * W;
        float *w = malloc((size_t)s->c_out * K * 4), *x = malloc(nx * 4);
        for (size_t i = 0; i < (size_t)s->c_out * K; i++) w[i] = (float)(grand() / sqrt((double)K));
        for (size_t i = 0; i < nx; i++) x[i] = (float)fabs(grand());
        aq_layer_opts o;
        aq_layer_opts_default(&o);
        apply_cfg(b, &o);
        aq_error err = {0};
        aq_layer_result r;
        double t0 = aq_bench_wall_seconds();
        if (aq_conv_run(s, names[k], w, NULL, x, NULL, N, H, W, &o, &r, &err) != AQ_OK) {
            printf("%s: error %s\n", names[k], err.msg);
        } else {
            double t = aq_bench_wall_seconds() - t0;
            printf("%-20s N=%d %dx%d groups %3d: loss_rtn %.4e gptq %.4e aq %.4e (aq/gptq %.3f), %.2f s total, "
                   "%.2f ms per group\n", names[k], N, H, W, s->groups, r.loss_rtn, r.loss_gptq, r.loss_final,
                   r.loss_final / r.loss_gptq, t, 1e3 * t / s->groups);
            aq_layer_result_free(&r);
        }
        free(w);
        free(x);
    }
}

/* ---- quality on one layer problem, all options ---- */
static void quality_line(const char *name, const aq_layer_problem *p, const char *opt, const bench_cfg *b,
                         double *ratio)
{
    aq_layer_opts o;
    aq_layer_opts_default(&o);
    aq_error err = {0};
    aq_layer_opts_parse(opt, &o, &err);
    apply_cfg(b, &o);
    aq_layer_result r;
    if (aq_layer_run(p, &o, &r, &err) != AQ_OK) {
        printf("%-36s %-6s error: %s\n", name, opt, err.msg);
        *ratio = NAN;
        return;
    }
    *ratio = r.loss_final / r.loss_gptq;
    printf("%-36s %-6s %11.4e %11.4e %11.4e %7.3f %7.3f %6.2fs\n", name, opt, r.loss_rtn, r.loss_gptq,
           r.loss_final, r.loss_gptq / r.loss_rtn, *ratio, r.seconds);
    aq_layer_result_free(&r);
}

static void header(void)
{
    printf("%-36s %-6s %11s %11s %11s %7s %7s %7s\n", "layer", "option", "loss_rtn", "loss_gptq",
           "loss_aq", "g/rtn", "aq/g", "time");
}

static void bench_synth(const bench_cfg *b)
{
    static const size_t shapes[][3] = {{64, 64, 4096}, {256, 256, 8192}, {512, 256, 16384}};
    printf("# synthetic: Student-t(3) inputs, x8 outlier channel every 16, offsets every 5\n");
    header();
    for (int s = 0; s < 3; s++) {
        size_t d_out = shapes[s][0], d_in = shapes[s][1], n = shapes[s][2];
        float *x = synth_inputs(n, d_in), *w = malloc(d_out * d_in * sizeof *w), *bias = malloc(d_out * 4);
        for (size_t i = 0; i < d_out * d_in; i++) w[i] = (float)(grand() * (urand() < 0.01 ? 4 : 1) / sqrt(d_in));
        for (size_t i = 0; i < d_out; i++) bias[i] = (float)(0.1 * grand());
        aq_layer_problem p = {.name = "synth", .d_out = d_out, .d_in = d_in, .weight = w, .bias = bias,
                              .n_rows = n, .x = x};
        char name[64];
        snprintf(name, sizeof name, "synth %zux%zu N=%zu", d_out, d_in, n);
        const char *opts[] = {"w4a16", "w3a16", "w4a8", "w4a4"};
        for (int k = 0; k < 4; k++) {
            double r;
            quality_line(name, &p, opts[k], b, &r);
        }
        free(x);
        free(w);
        free(bias);
    }
}

/* ---- the ggml block types: calibrated vs llama.cpp's RTN bytes ---- */
static void bench_kquant(const bench_cfg *b)
{
    static const size_t shapes[][3] = {{256, 256, 8192}, {512, 512, 16384}};
    static const char *opts[] = {"q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q4_0", "q8_0"};
    printf("# ggml block types, synthetic Student-t(3) inputs as synth: loss of llama.cpp's RTN bytes\n"
           "# (quantize_row_*_ref) and of AdaQuant's calibrated blocks (src/adaquant/group*.c)\n");
    printf("%-28s %-6s %11s %11s %8s %7s\n", "layer", "option", "loss_rtn", "loss_aq", "aq/rtn", "time");
    for (int s = 0; s < 2; s++) {
        size_t d_out = shapes[s][0], d_in = shapes[s][1], n = shapes[s][2];
        float *x = synth_inputs(n, d_in), *w = malloc(d_out * d_in * sizeof *w);
        for (size_t i = 0; i < d_out * d_in; i++) w[i] = (float)(grand() * (urand() < 0.01 ? 4 : 1) / sqrt(d_in));
        aq_layer_problem p = {.name = "kq", .d_out = d_out, .d_in = d_in, .weight = w, .n_rows = n, .x = x};
        for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
            aq_layer_opts o;
            aq_layer_opts_default(&o);
            aq_error err = {0};
            aq_layer_opts_parse(opts[k], &o, &err);
            apply_cfg(b, &o);
            aq_layer_result r;
            if (aq_layer_run(&p, &o, &r, &err) != AQ_OK) {
                printf("%s: %s\n", opts[k], err.msg);
                continue;
            }
            printf("synth %4zux%-4zu N=%-12zu %-6s %11.4e %11.4e %8.3f %6.2fs\n", d_out, d_in, n, opts[k], r.loss_rtn,
                   r.loss_final, r.loss_final / r.loss_rtn, r.seconds);
            aq_layer_result_free(&r);
        }
        free(x);
        free(w);
    }
}

/* ---- real stories260K layers ---- */
typedef struct rows_buf {
    float *rows[64][AQ_CAP_COUNT + 1];
    size_t n[64][AQ_CAP_COUNT + 1], cap[64][AQ_CAP_COUNT + 1];
} rows_buf;

static aq_status grab(void *ctx, const aq_capture_event *ev, aq_error *err)
{
    rows_buf *rb = ctx;
    int b = ev->block, p = ev->point;
    if (b >= 64) return AQ_OK;
    size_t need = (rb->n[b][p] + ev->n_rows) * (size_t)ev->d;
    if (need > rb->cap[b][p]) {
        size_t nc = need * 2;
        float *t = realloc(rb->rows[b][p], nc * sizeof *t);
        if (!t) return aq_fail_nomem(err, "captured rows", nc * 4);
        rb->rows[b][p] = t;
        rb->cap[b][p] = nc;
    }
    memcpy(rb->rows[b][p] + rb->n[b][p] * (size_t)ev->d, ev->rows, ev->n_rows * (size_t)ev->d * 4);
    rb->n[b][p] += ev->n_rows;
    return AQ_OK;
}

static int bench_real(const bench_cfg *b)
{
    const char *sh = getenv("AQ_SHARED_DIR") ? getenv("AQ_SHARED_DIR") : AQ_SHARED_DIR_DEFAULT;
    char mp[1024], tp[1024], vp[1024];
    snprintf(mp, sizeof mp, "%s/models/stories260K/stories260K.bin", sh);
    snprintf(tp, sizeof tp, "%s/models/stories260K/tok512.bin", sh);
    snprintf(vp, sizeof vp, "%s/data/tinystories/validation.txt", sh);
    aq_error err = {0};
    aq_model *m = NULL;
    aq_tokenizer *tok = NULL;
    aq_docs docs = {0};
    int *tokens = NULL;
    if (aq_model_load_path(mp, &m, &err) || aq_tok_open(tp, aq_model_config(m)->vocab_size, &tok, &err) ||
        aq_docs_read(vp, &docs, &err) || aq_calib_windows(tok, &docs, 64, 256, &tokens, &err)) {
        fprintf(stderr, "bench real: %s\n", err.msg);
        return 1;
    }
    rows_buf *rb = calloc(1, sizeof *rb);
    aq_forward_opts fo = {.capture = grab, .capture_ctx = rb, .stop_after_block = -1};
    /* the classifier input (block n_layers, AQ_CAP_HEAD) is captured too */
    int lens[8] = {256, 256, 256, 256, 256, 256, 256, 256};
    for (int w = 0; w < 64; w += 8)
        if (aq_model_forward(m, tokens + w * 256, lens, 8, &fo, NULL, &err)) {
            fprintf(stderr, "forward: %s\n", err.msg);
            return 1;
        }
    const aq_llama_config *cfg = aq_model_config(m);
    printf("# stories260K, 64 x 256 calibration tokens, rows feed\n");
    header();
    char opts[256];
    snprintf(opts, sizeof opts, "%s", b->options);
    for (char *opt = strtok(opts, ","); opt; opt = strtok(NULL, ",")) {
        double ratios[64];
        /* 7 linears per block, then the (tied) classifier lm_head */
        int nr = 0, worse = 0;
        for (int blk = 0; blk <= cfg->n_layers; blk++)
            for (int l = 0; l < AQ_LIN_COUNT; l++) {
                if (blk == cfg->n_layers && l > 0) break; /* then only the classifier */
                const float *w;
                int d_out, d_in;
                if (blk == cfg->n_layers) l = AQ_LIN_HEAD;
                if (aq_model_linear(m, blk, (aq_linear)l, &w, &d_out, &d_in, &err) != AQ_OK) {
                    fprintf(stderr, "%s\n", err.msg);
                    return 1;
                }
                aq_cap_point cp = aq_linear_cap_point((aq_linear)l);
                char name[128];
                aq_linear_prefix(blk, (aq_linear)l, name, sizeof name);
                aq_layer_problem p = {.name = name, .d_out = (size_t)d_out, .d_in = (size_t)d_in, .weight = w,
                                      .n_rows = rb->n[blk][cp], .x = rb->rows[blk][cp]};
                quality_line(name, &p, opt, b, &ratios[nr]);
                if (!(ratios[nr] < 1)) worse++;
                nr++;
            }
        qsort(ratios, (size_t)nr, sizeof *ratios, cmp_double);
        printf("# %s: %d layers, median aq/gptq %.3f (min %.3f, max %.3f), layers not below GPTQ: %d\n", opt, nr,
               nr % 2 ? ratios[nr / 2] : 0.5 * (ratios[nr / 2 - 1] + ratios[nr / 2]), ratios[0], ratios[nr - 1],
               worse);
    }
    for (int i = 0; i < 64; i++)
        for (int p = 0; p <= AQ_CAP_COUNT; p++) free(rb->rows[i][p]);
    free(rb);
    free(tokens);
    aq_docs_free(&docs);
    aq_tok_close(tok);
    aq_model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    /* Before any BLAS call: the kernel the adaquant command runs, named with the figures. */
    char blas[160];
    aq_blas_kernel_select(NULL, 0);
    aq_blas_kernel_describe(blas, sizeof blas);
    printf("%s\n", blas);
    bench_cfg b = {.max_d = 4096, .max_n = 65536};
    snprintf(b.options, sizeof b.options, "w4a16,w3a16");
    const char *what = argc > 1 ? argv[1] : "all";
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--iters")) b.iters = atoi(argv[i + 1]), b.have_iters = 1;
        else if (!strcmp(argv[i], "--polish")) b.polish = atoi(argv[i + 1]), b.have_polish = 1;
        else if (!strcmp(argv[i], "--eval")) b.eval_every = atoi(argv[i + 1]), b.have_eval = 1;
        else if (!strcmp(argv[i], "--lr-w")) b.lr_w = atof(argv[i + 1]), b.have_lr = 1;
        else if (!strcmp(argv[i], "--starts")) b.starts = atoi(argv[i + 1]), b.have_starts = 1;
        else if (!strcmp(argv[i], "--max-d")) b.max_d = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--max-n")) b.max_n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--options")) snprintf(b.options, sizeof b.options, "%s", argv[i + 1]);
    }
    bli_thread_set_num_threads(1);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(what, "speed") || !strcmp(what, "all")) bench_speed(&b);
    if (!strcmp(what, "precision") || !strcmp(what, "all")) bench_precision(&b);
    if (!strcmp(what, "synth") || !strcmp(what, "all")) bench_synth(&b);
    if (!strcmp(what, "kquant") || !strcmp(what, "all")) bench_kquant(&b);
    if (!strcmp(what, "conv") || !strcmp(what, "all")) bench_conv(&b);
    if (!strcmp(what, "real") || !strcmp(what, "all")) return bench_real(&b);
    return 0;
}
