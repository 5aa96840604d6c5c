/* bench_model.c — transformer engine speed on stories260K: forward tokens/s
 * without batching (one 256-token sequence per call) and with batching (8 per
 * call), KV-cache decoding tokens/s, capture time for the default calibration
 * set (64 windows x 256 tokens from TinyStories, all blocks + classifier input),
 * and peak memory (getrusage ru_maxrss). Rates use process CPU time.
 * usage: bench_model [SHARED_DIR]   (default: the configured ../shared) */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "../src/blas/blas_kernel.h"
#include "../src/model/capture.h"
#include "../src/model/model.h"
#include "../src/text/textdata.h"
#include "bench_stories.h"
#include "benchutil.h"

static int fail(const char *what, const aq_error *err) { return aq_bench_fail("bench_model", what, err); }

/* tokens/s of forwards over S windows of T, B windows per call, reps times. */
static double fwd_rate(aq_model *m, const int *tok, int S, int T, int B, float *logits,
                       aq_error *err)
{
    int lens[64];
    for (int i = 0; i < B; i++)
        lens[i] = T;
    double t0 = aq_bench_cpu_seconds();
    for (int w = 0; w + B <= S; w += B)
        if (aq_model_forward(m, tok + (size_t)w * T, lens, B, NULL, logits, err) != AQ_OK)
            return -1;
    return (double)(S / B * B) * T / (aq_bench_cpu_seconds() - t0);
}

int main(int argc, char **argv)
{
    /* Before any BLAS call: the kernel the adaquant command runs, named with the figures. */
    char blas[160];
    aq_blas_kernel_select(NULL, 0);
    aq_blas_kernel_describe(blas, sizeof blas);
    printf("%s\n", blas);
    const char *shared = argc > 1 ? argv[1] : AQ_SHARED_DIR_DEFAULT;
    aq_error err = {0};
    aq_model *m;
    int *win, S = 64, T = 256;
    if (aq_bench_stories(shared, S, T, &m, &win, &err)) return fail("stories260K assets", &err);
    float *logits = malloc(sizeof(float) * 8 * T * 512);
    printf("stories260K, %d windows x %d tokens, single-threaded BLIS, CPU-time rates\n", S, T);
    fwd_rate(m, win, 8, T, 8, logits, &err); /* warm-up: scratch allocation */
    double r1 = fwd_rate(m, win, S, T, 1, logits, &err);
    double r8 = fwd_rate(m, win, S, T, 8, logits, &err);
    if (r1 < 0 || r8 < 0) return fail("forward", &err);
    printf("forward, 1 sequence per call:   %10.0f tokens/s\n", r1);
    printf("forward, 8 sequences per call:  %10.0f tokens/s (x%.2f)\n", r8, r8 / r1);
    aq_kv_cache *kc;
    if (aq_kv_cache_new(m, &kc, &err)) return fail("kv cache", &err);
    double t0 = aq_bench_cpu_seconds();
    for (int p = 0; p < T; p++)
        if (aq_model_decode_step(m, kc, win[p], p, logits, &err)) return fail("decode", &err);
    printf("KV-cache decoding (1 token per step, %d steps): %10.0f tokens/s\n", T,
           T / (aq_bench_cpu_seconds() - t0));
    aq_kv_cache_free(kc);
    aq_capture_opts o;
    aq_capture_opts_default(&o);
    o.head = 1;
    aq_capture *c;
    if (aq_capture_new(m, &o, &c, &err)) return fail("capture", &err);
    t0 = aq_bench_cpu_seconds();
    if (aq_capture_run(c, m, win, 0, S, T, &err)) return fail("capture", &err);
    double tc = aq_bench_cpu_seconds() - t0;
    printf("capture %d points (Gram + min/max + %d-row sample), %d x %d windows: %.3f s (%.0f "
           "tokens/s)\n",
           aq_capture_count(c), o.sample_rows, S, T, tc, S * T / tc);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("weights %.2f MB, forward scratch %.2f MB, peak RSS %.1f MB\n",
           aq_model_weight_bytes(m) / 1e6, aq_model_scratch_bytes(m) / 1e6, ru.ru_maxrss / 1024.0);
    aq_capture_free(c);
    free(win);
    free(logits);
    aq_model_free(m);
    return 0;
}
