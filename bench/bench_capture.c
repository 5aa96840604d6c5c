/* bench_capture.c — the baseline of bench/capture_bench.sh: one FP
 * evaluation forward (logits included, 8 windows per call, as the evaluation
 * runs) over S windows of T tokens on a model directory, wall time, with the
 * BLIS kernel named. Token ids are seeded pseudo-random (the time of a forward
 * does not depend on them).
 * usage: bench_capture MODEL S T */
#include <stdio.h>
#include <stdlib.h>

#include "../src/blas/blas_kernel.h"
#include "../src/model/model.h"
#include "benchutil.h"

static int fail(const char *what, const aq_error *err) { return aq_bench_fail("bench_capture", what, err); }

int main(int argc, char **argv)
{
    char blas[160];
    aq_blas_kernel_select(NULL, 0);
    aq_blas_kernel_describe(blas, sizeof blas);
    if (argc != 4) {
        fprintf(stderr, "usage: bench_capture MODEL S T\n");
        return 2;
    }
    int S = atoi(argv[2]), T = atoi(argv[3]), B = 8;
    aq_error err = {0};
    aq_model *m;
    double t0 = aq_bench_wall_seconds();
    if (aq_model_load_path(argv[1], &m, &err)) return fail("model", &err);
    double tl = aq_bench_wall_seconds() - t0;
    const aq_llama_config *c = aq_model_config(m);
    int *tok = malloc((size_t)S * T * sizeof *tok), lens[8];
    float *logits = malloc((size_t)B * T * c->vocab_size * sizeof *logits);
    if (!tok || !logits || S < 1 || T < 1) return fail("arguments or memory", &err);
    unsigned long long z = 12345;
    for (size_t i = 0; i < (size_t)S * T; i++) {
        z = z * 6364136223846793005ull + 1442695040888963407ull; /* seeded ids; values do not matter */
        tok[i] = (int)((z >> 33) % (unsigned long long)c->vocab_size);
    }
    for (int i = 0; i < B; i++) lens[i] = T;
    t0 = aq_bench_wall_seconds();
    double c0 = aq_bench_cpu_seconds();
    for (int w = 0; w < S; w += B) {
        int nb = S - w < B ? S - w : B;
        if (aq_model_forward(m, tok + (size_t)w * T, lens, nb, NULL, logits, &err)) return fail("forward", &err);
    }
    double tf = aq_bench_wall_seconds() - t0, cf = aq_bench_cpu_seconds() - c0;
    printf("%s\n", blas);
    printf("model load %.2f s; one FP forward, %d windows x %d tokens: %.2f s (%.0f tokens/s)\n", tl, S, T, tf,
           S * T / tf);
    printf("forward_seconds %.3f %.3f\n", tf, cf); /* wall, CPU */
    free(tok);
    free(logits);
    aq_model_free(m);
    return 0;
}
