/* bench_quant.c — throughput of the quantizer kernels (src/quant) and GPTQ
 * (src/adaquant/gptq.c), with a memcpy baseline measured in the same run.
 * Prints GB/s of float32 input processed (pack/unpack: of code bytes), the
 * MSE range search time per 4096-element row, and GPTQ time per layer.
 * Times are process CPU time (best of a few runs); everything is single-threaded.
 * Usage: bench_quant [rows (default 1024)]. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <blis.h>

#include "../src/blas/blas_kernel.h"
#include "../src/adaquant/gptq.h"
#include "../src/quant/quant.h"
#include "benchutil.h"

enum { COLS = 4096 };

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void)
{
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return ((double)((rng * 2685821657736338717ull) >> 11) + 0.5) / 9007199254740992.0;
}
static double laplace(void)
{
    return urand() < 0.5 ? log(urand()) : -log(urand());
}

/* Best of `reps` timings of one call of f (seconds). */
#define TIME_BEST(reps, stmt, out)                                                                 \
    do {                                                                                           \
        double best_ = 1e30;                                                                       \
        for (int r_ = 0; r_ < (reps); r_++) {                                                      \
            double t0_ = aq_bench_cpu_seconds();                                                                    \
            stmt;                                                                                  \
            double dt_ = aq_bench_cpu_seconds() - t0_;                                                              \
            if (dt_ < best_) best_ = dt_;                                                          \
        }                                                                                          \
        (out) = best_;                                                                             \
    } while (0)

/* GPTQ on a d_out x d_in layer with H = X^T X of N = 2 d_in Laplace rows
 * (H built with BLIS so that set-up does not dominate). */
static void bench_gptq(size_t d_out, size_t d_in)
{
    size_t N = 2 * d_in;
    float *W = malloc(d_out * d_in * sizeof *W), *Q = malloc(d_out * d_in * sizeof *Q);
    float *s = malloc(d_out * sizeof *s), *z = malloc(d_out * sizeof *z);
    double *X = malloc(N * d_in * sizeof *X), *H = malloc(d_in * d_in * sizeof *H);
    if (!W || !Q || !s || !z || !X || !H) return;
    for (size_t i = 0; i < d_out * d_in; i++)
        W[i] = (float)laplace();
    for (size_t i = 0; i < N * d_in; i++)
        X[i] = laplace();
    double one = 1.0, zero0 = 0.0;
    bli_dgemm(BLIS_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)d_in, (dim_t)d_in, (dim_t)N, &one, X,
              (inc_t)d_in, 1, X, (inc_t)d_in, 1, &zero0, H, (inc_t)d_in, 1);
    aq_qrange_rows(W, d_out, d_in, (aq_qspec){4, 0}, AQ_RANGE_MSE, s, z);
    aq_error e = {0};
    double t;
    aq_status st = AQ_OK;
    TIME_BEST(2, st = aq_gptq(W, d_out, d_in, H, s, z, 4, 0.01, 128, 1, NULL, Q, &e), t);
    if (st != AQ_OK) fprintf(stderr, "gptq failed: %s\n", e.msg);
    printf("gptq %zux%zu (w4, block 128, act_order): %.3f s\n", d_out, d_in, t);
    free(W), free(X), free(s), free(z), free(Q), free(H);
}

int main(int argc, char **argv)
{
    /* Before any BLAS call: the kernel the adaquant command runs, named with the figures. */
    char blas[160];
    aq_blas_kernel_select(NULL, 0);
    aq_blas_kernel_describe(blas, sizeof blas);
    printf("%s\n", blas);
    size_t rows = argc > 1 ? (size_t)atol(argv[1]) : 1024, n = rows * COLS;
    float *w = malloc(n * sizeof *w), *out = malloc(n * sizeof *out);
    float *s = malloc(rows * sizeof *s), *z = malloc(rows * sizeof *z);
    uint8_t *codes = malloc(n), *packed = malloc(n), *back = malloc(n);
    if (!w || !out || !s || !z || !codes || !packed || !back) return 1;
    for (size_t i = 0; i < n; i++)
        w[i] = (float)laplace();
    double gb = (double)n * sizeof(float) / 1e9, t;

    TIME_BEST(5, memcpy(out, w, n * sizeof *w), t);
    printf("memcpy baseline: %.2f GB/s\n", gb / t);
    double base = gb / t;
    aq_qrange_rows(w, rows, COLS, (aq_qspec){4, 0}, AQ_RANGE_MINMAX, s, z);
    TIME_BEST(5, aq_quantize_rows(w, rows, COLS, s, z, 4, codes), t);
    printf("quantize (w4 per row): %.2f GB/s of float input (%.2fx memcpy)\n", gb / t,
           gb / t / base);
    TIME_BEST(5, aq_dequantize_rows(codes, rows, COLS, s, z, out), t);
    printf("dequantize: %.2f GB/s of float output (%.2fx memcpy)\n", gb / t, gb / t / base);
    TIME_BEST(5, aq_fake_quant(w, n, s[0], z[0], 4, out), t);
    printf("fake_quant: %.2f GB/s (%.2fx memcpy)\n", gb / t, gb / t / base);
    for (int bits = 2; bits <= 8; bits++) {
        double tp, tu, cb = (double)n / 1e9;
        for (size_t i = 0; i < n; i++)
            codes[i] &= (uint8_t)((1u << bits) - 1u);
        TIME_BEST(5, aq_pack(codes, n, bits, packed), tp);
        TIME_BEST(5, aq_unpack(packed, n, bits, back), tu);
        if (memcmp(codes, back, n) != 0)
            fprintf(stderr, "pack round trip failed at %d bits\n", bits);
        printf("pack %d-bit: %.2f GB/s of codes, unpack: %.2f GB/s\n", bits, cb / tp, cb / tu);
    }
    size_t mrows = rows < 256 ? rows : 256;
    for (int sym = 0; sym <= 1; sym++)
        for (int bits = 2; bits <= 8; bits += 2) {
            TIME_BEST(3, aq_qrange_rows(w, mrows, COLS, (aq_qspec){bits, sym}, AQ_RANGE_MSE, s, z),
                      t);
            double tm;
            TIME_BEST(3,
                      aq_qrange_rows(w, mrows, COLS, (aq_qspec){bits, sym}, AQ_RANGE_MINMAX, s, z),
                      tm);
            printf("MSE range search %s %d-bit: %.3f ms per %d-element row (min/max: %.4f ms)\n",
                   sym ? "sym " : "asym", bits, t / mrows * 1e3, COLS, tm / mrows * 1e3);
        }
    bench_gptq(256, 1024);
    bench_gptq(1024, 1024);
    bench_gptq(4096, 4096);
    free(w), free(out), free(s), free(z), free(codes), free(packed), free(back);
    return 0;
}
