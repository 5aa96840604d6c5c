/* bench_model_grad.c — speed of the backward pass (src/model/grad.h) on
 * stories260K: tokens/s of aq_model_kl_grad (FP forward + quantized forward
 * with caches + backward, every gradient requested) and of aq_model_kl_grad_fp
 * (FP logits cached) against aq_model_forward on the same batch (8 TinyStories
 * windows x 256 tokens per call), with an override (perturbed weight + bias)
 * on every block linear; and the scratch bytes per row. Rates use process CPU
 * time (single-threaded).
 * usage: bench_model_grad [SHARED_DIR]   (default: the configured ../shared) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../src/blas/blas_kernel.h"
#include "../src/model/grad.h"
#include "../src/text/textdata.h"
#include "bench_stories.h"
#include "benchutil.h"

static int fail(const char *what, const aq_error *err) { return aq_bench_fail("bench_model_grad", what, err); }

/* Perturbed copies of every block linear as overrides, with a small bias. */
static aq_status install_overrides(aq_model *m, aq_error *err)
{
    const aq_llama_config *c = aq_model_config(m);
    unsigned s = 1u;
    for (int b = 0; b < c->n_layers; b++)
        for (int w = 0; w < AQ_LIN_COUNT; w++) {
            const float *W;
            int o, i;
            AQ_TRY(aq_model_linear(m, b, (aq_linear)w, &W, &o, &i, err));
            float *q = malloc(sizeof(float) * o * i), *bias = malloc(sizeof(float) * o);
            if (!q || !bias) return aq_fail_nomem(err, "overrides", sizeof(float) * o * i);
            for (int k = 0; k < o * i; k++) {
                s = s * 1103515245u + 12345u;
                q[k] = W[k] * (1.0f + 0.1f * ((float)((s >> 8) & 0xffff) / 65536.0f - 0.5f));
            }
            for (int k = 0; k < o; k++)
                bias[k] = 0.001f * (float)(k % 7);
            aq_linear_override ov = {q, bias, 0, 0, 0};
            aq_status st = aq_model_set_override(m, b, (aq_linear)w, &ov, err);
            free(q);
            free(bias);
            AQ_TRY(st);
        }
    return AQ_OK;
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
    int *win, B = 8, T = 256, reps = 6, lens[8];
    if (aq_bench_stories(shared, B, T, &m, &win, &err)) return fail("stories260K assets", &err);
    if (install_overrides(m, &err)) return fail("overrides", &err);
    const aq_llama_config *c = aq_model_config(m);
    for (int i = 0; i < B; i++)
        lens[i] = T;
    size_t rows = (size_t)B * T, nl = (size_t)c->n_layers * AQ_LIN_COUNT;
    float *logits = malloc(sizeof(float) * rows * c->vocab_size);
    float **dw = calloc(nl, sizeof *dw), **db = calloc(nl, sizeof *db);
    for (size_t j = 0; j < nl; j++) {
        int o, i;
        aq_model_linear(m, (int)(j / AQ_LIN_COUNT), (aq_linear)(j % AQ_LIN_COUNT), NULL, &o, &i,
                        &err);
        dw[j] = calloc((size_t)o * i, sizeof(float));
        db[j] = calloc((size_t)o, sizeof(float));
    }
    float *dn = calloc((size_t)(2 * c->n_layers + 1) * c->dim, sizeof(float));
    aq_grad_buf g = {dw, db, dn, dn + (size_t)c->n_layers * c->dim,
                     dn + (size_t)2 * c->n_layers * c->dim};
    aq_forward_opts qo;
    aq_forward_opts_default(&qo);
    qo.quantized = 1;
    double kl = 0;
    /* warm-up (grows the scratch) */
    if (aq_model_kl_grad(m, win, lens, B, &kl, &g, &err)) return fail("kl_grad", &err);
    size_t before = aq_model_scratch_bytes(m);
    double t0 = aq_bench_cpu_seconds();
    for (int r = 0; r < reps; r++)
        if (aq_model_forward(m, win, lens, B, NULL, logits, &err)) return fail("forward", &err);
    double t_fwd = (aq_bench_cpu_seconds() - t0) / reps;
    t0 = aq_bench_cpu_seconds();
    for (int r = 0; r < reps; r++)
        if (aq_model_forward(m, win, lens, B, &qo, logits, &err)) return fail("forward", &err);
    double t_qfwd = (aq_bench_cpu_seconds() - t0) / reps;
    t0 = aq_bench_cpu_seconds();
    for (int r = 0; r < reps; r++)
        if (aq_model_kl_grad(m, win, lens, B, &kl, &g, &err)) return fail("kl_grad", &err);
    double t_grad = (aq_bench_cpu_seconds() - t0) / reps;
    /* FP logits cached (logits holds the quantized ones now: recompute FP once) */
    if (aq_model_forward(m, win, lens, B, NULL, logits, &err)) return fail("forward", &err);
    t0 = aq_bench_cpu_seconds();
    for (int r = 0; r < reps; r++)
        if (aq_model_kl_grad_fp(m, win, lens, B, logits, &kl, &g, &err))
            return fail("kl_grad_fp", &err);
    double t_gfp = (aq_bench_cpu_seconds() - t0) / reps;
    printf("stories260K, %d windows x %d tokens per call, overrides on all %zu block linears\n", B,
           T, nl);
    printf("forward FP:         %9.0f tokens/s (%.1f ms per call)\n", rows / t_fwd, 1e3 * t_fwd);
    printf("forward quantized:  %9.0f tokens/s (%.1f ms per call)\n", rows / t_qfwd, 1e3 * t_qfwd);
    printf("kl_grad:            %9.0f tokens/s (%.1f ms per call) = %.2f forwards; "
           "backward alone ~%.2f forwards\n",
           rows / t_grad, 1e3 * t_grad, t_grad / t_fwd, (t_grad - t_fwd - t_qfwd) / t_fwd);
    printf("kl_grad_fp (cached FP logits): %9.0f tokens/s (%.1f ms per call) = %.2f forwards\n",
           rows / t_gfp, 1e3 * t_gfp, t_gfp / t_fwd);
    printf("KL_sum %.4f (mean %.5f per row)\n", kl, kl / rows);
    printf("scratch: %zu bytes for %zu rows = %.0f bytes per row (forward + kl_grad caches)\n",
           before, rows, (double)before / rows);
    for (size_t j = 0; j < nl; j++)
        free(dw[j]), free(db[j]);
    free(dw), free(db), free(dn), free(logits), free(win);
    aq_model_free(m);
    return 0;
}
