/* bench_coop.c — the cooperative path (issue 14) on Llama-7B MLP shapes:
 * one (layer, w4a16) problem on a 1 x Q grid, Q = the mpirun rank count.
 *
 *   mpirun -np Q bench_coop [--shape 4096x11008] [--tokens 8192] [--iters 2] [--nb 64]
 *   bench_coop --single ...   the single-rank path (aq_layer_run, same options)
 *   bench/coop_bench.sh       Q = 1 and Q = 2 on both shapes, and the ratios
 *
 * Synthetic inputs, generated where they are used (each rank its own token
 * rows and weight rows, from a hash of the indices, so every Q sees the same
 * problem): heavy-ish channels (x8 outlier channel every 16, mean offset every
 * 5), W ~ N(0, 0.02). The Gram is assembled with PDSYRK from the distributed
 * rows and timed apart (in a run it comes from the capture). Options: one
 * start, no polishing (what the cooperative path runs), `iters` Adam steps
 * with one evaluation at the end, float32 Adam products. Prints one line per
 * run: times per phase, peak RSS of every rank (getrusage), losses, kernel. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <mpi.h>

#include "../mpi/pipeline/coop.h"
#include "../mpi/pipeline/scalapack.h"
#include "../src/blas/blas_kernel.h"
#include "benchutil.h"

typedef struct args {
    size_t d_out, d_in, tokens;
    int iters, nb, single;
} args;

static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A standard normal from two hashed uniforms (Box-Muller). */
static double hnorm(uint64_t key)
{
    uint64_t a = mix(key), b = mix(a ^ 0x5851f42d4c957f2dULL);
    double u = ((double)(a >> 11) + 0.5) * 0x1.0p-53, v = (double)(b >> 11) * 0x1.0p-53;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static void input_row(size_t t, size_t d, float *x)
{
    for (size_t c = 0; c < d; c++) {
        double v = hnorm((uint64_t)t * 1000003ULL + c) * (c % 16 == 0 ? 8.0 : 1.0);
        x[c] = (float)(v + (c % 5 == 0 ? 0.5 : 0.0));
    }
}

static void weight_row(size_t r, size_t d, float *w)
{
    for (size_t c = 0; c < d; c++) w[c] = (float)(0.02 * hnorm(0xabcdefULL + (uint64_t)r * 7919ULL * 65536ULL + c));
}

static int parse(int argc, char **argv, args *a)
{
    *a = (args){4096, 11008, 8192, 2, AQ_COOP_NB_DEFAULT, 0};
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(argv[i], "--shape") && sscanf(v, "%zux%zu", &a->d_out, &a->d_in) == 2) i++;
        else if (!strcmp(argv[i], "--tokens") && sscanf(v, "%zu", &a->tokens) == 1) i++;
        else if (!strcmp(argv[i], "--iters") && sscanf(v, "%d", &a->iters) == 1) i++;
        else if (!strcmp(argv[i], "--nb") && sscanf(v, "%d", &a->nb) == 1) i++;
        else if (!strcmp(argv[i], "--single")) a->single = 1;
        else {
            fprintf(stderr, "bench_coop: bad argument '%s' (see the file's header)\n", argv[i]);
            return 0;
        }
    }
    return 1;
}

static void opts(const args *a, aq_layer_opts *o)
{
    aq_layer_opts_default(o);
    o->starts = 1;
    o->polish_rounds = 0;
    o->iters = a->iters;
    o->eval_every = a->iters > 0 ? a->iters : 1;
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

/* CPU seconds of this process so far: on a shared machine the wall time of a
 * run depends on the other jobs, its CPU time much less (ranks waiting in a
 * collective yield, mpi_yield_when_idle, so waiting costs little CPU). */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static void print_result(const char *mode, int q, const args *a, double t_gram, double t_task,
                         const double *rss, const aq_layer_result *r, const char *kernel)
{
    printf("RESULT mode=%s q=%d shape=%zux%zu tokens=%zu iters=%d nb=%d t_gram=%.2f t_task=%.2f "
           "rss_mb=", mode, q, a->d_out, a->d_in, a->tokens, a->iters, a->nb, t_gram, t_task);
    for (int i = 0; i < q; i++) printf("%s%.0f", i ? "," : "", rss[i]);
    printf(" loss_rtn=%.9e loss_gptq=%.9e loss_final=%.9e kernel=%s\n", r->loss_rtn, r->loss_gptq,
           r->loss_final, kernel);
}

/* Single-rank path: the whole Gram (aq_gram_accumulate) and aq_layer_run. */
static int run_single(const args *a, const char *kernel)
{
    size_t D = a->d_in + 1, blk = 1024;
    aq_error err = {0};
    double *gram = calloc(D * D, sizeof *gram);
    float *x = malloc(blk * a->d_in * sizeof *x), *w = malloc(a->d_out * a->d_in * sizeof *w);
    if (!gram || !x || !w) return fprintf(stderr, "bench_coop: out of memory\n"), 1;
    double t0 = aq_bench_wall_seconds();
    for (size_t t0r = 0; t0r < a->tokens; t0r += blk) {
        size_t n = a->tokens - t0r < blk ? a->tokens - t0r : blk;
        for (size_t i = 0; i < n; i++) input_row(t0r + i, a->d_in, x + i * a->d_in);
        if (aq_gram_accumulate(gram, x, n, a->d_in, &err)) return aq_bench_fail("bench_coop", "Gram", &err);
    }
    free(x);
    for (size_t r = 0; r < a->d_out; r++) weight_row(r, a->d_in, w + r * a->d_in);
    double t1 = aq_bench_wall_seconds(), c1 = cpu_seconds();
    aq_layer_opts o;
    opts(a, &o);
    aq_layer_problem p = {.name = "mlp", .d_out = a->d_out, .d_in = a->d_in, .weight = w,
                          .gram_a = gram, .n_tokens = a->tokens};
    aq_layer_result r;
    if (aq_layer_run(&p, &o, &r, &err)) return aq_bench_fail("bench_coop", "aq_layer_run", &err);
    double t2 = aq_bench_wall_seconds(), rss = peak_rss_mb();
    print_result("single", 1, a, t1 - t0, t2 - t1, &rss, &r, kernel);
    printf("CPU mode=single q=1 shape=%zux%zu cpu_task=%.1f\n", a->d_out, a->d_in, cpu_seconds() - c1);
    aq_layer_result_free(&r);
    free(gram);
    free(w);
    return 0;
}

/* The cooperative run on MPI_COMM_WORLD (Q = its size). */
static int run_coop(const args *a, const char *kernel)
{
    int q, me;
    MPI_Comm_size(MPI_COMM_WORLD, &q);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    aq_error err = {0};
    aq_coop_grid g;
    if (aq_coop_grid_init(&g, MPI_COMM_WORLD, a->nb, &err)) return aq_bench_fail("bench_coop", "grid", &err);
    /* this rank's token rows (block-cyclic) and weight rows; the full weight
     * array is mapped but only the owned rows are touched (so resident) */
    size_t nl = aq_coop_nlocal(&g, a->tokens, me);
    float *x = malloc((nl ? nl : 1) * a->d_in * sizeof *x);
    float *w = malloc(a->d_out * a->d_in * sizeof *w);
    if (!x || !w) return fprintf(stderr, "bench_coop: out of memory\n"), 1;
    for (size_t l = 0; l < nl; l++) input_row(aq_coop_global(&g, l), a->d_in, x + l * a->d_in);
    for (size_t r = 0; r < a->d_out; r++)
        if (aq_coop_owner(&g, r) == me) weight_row(r, a->d_in, w + r * a->d_in);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = aq_bench_wall_seconds();
    aq_coop_gram gr;
    if (aq_coop_gram_from_rows(&g, x, a->tokens, a->d_in, &gr, &err))
        return aq_bench_fail("bench_coop", "Gram", &err);
    free(x);
    double t1 = aq_bench_wall_seconds();
    aq_layer_opts o;
    opts(a, &o);
    aq_coop_problem p = {"mlp", a->d_out, a->d_in, w, NULL, &gr};
    aq_layer_result r;
    aq_coop_stats st;
    if (aq_coop_layer_run(&g, &p, &o, &r, &st, &err)) return aq_bench_fail("bench_coop", "run", &err);
    double t2 = aq_bench_wall_seconds(), rss = peak_rss_mb();
    /* per rank: peak RSS, CPU seconds of the task and of its phases */
    double mine[5] = {rss, st.c_total, st.c_setup, st.c_gptq, st.c_adam};
    double *all = malloc(5 * (size_t)q * sizeof *all);
    MPI_Gather(mine, 5, MPI_DOUBLE, all, 5, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    double *cpu = malloc(4 * (size_t)q * sizeof *cpu);
    if (!all || !cpu) return fprintf(stderr, "bench_coop: out of memory\n"), 1;
    for (int i = 0; me == 0 && i < q; i++) memcpy(cpu + 4 * i, all + 5 * i + 1, 4 * sizeof *cpu);
    if (me == 0) {
        for (int i = 0; i < q; i++) all[i] = all[5 * i]; /* the RSS column, in place (i <= 5 i) */
        print_result("coop", q, a, t1 - t0, t2 - t1, all, &r, kernel);
        printf("PHASES q=%d shape=%zux%zu setup+baselines=%.2f gptq=%.2f adam+evals=%.2f\n", q,
               a->d_out, a->d_in, st.t_setup, st.t_gptq, st.t_adam);
        static const char *key[4] = {"cpu_task", "cpu_setup", "cpu_gptq", "cpu_adam"};
        printf("CPU mode=coop q=%d shape=%zux%zu", q, a->d_out, a->d_in);
        for (int k = 0; k < 4; k++) {
            printf(" %s=", key[k]);
            for (int i = 0; i < q; i++) printf("%s%.1f", i ? "," : "", cpu[4 * i + k]);
        }
        printf("\n");
    }
    free(all);
    free(cpu);
    aq_layer_result_free(&r);
    aq_coop_gram_free(&gr);
    free(w);
    aq_coop_grid_free(&g);
    return 0;
}

int main(int argc, char **argv)
{
    args a;
    if (!parse(argc, argv, &a)) return 2;
    char kernel[128];
    aq_blas_kernel_select(NULL, 0); /* before any BLAS call and before MPI_Init */
    aq_blas_kernel_describe(kernel, sizeof kernel);
    for (char *c = kernel; *c; c++)
        if (*c == ' ') *c = '_';
    if (a.single) return run_single(&a, kernel);
    MPI_Init(&argc, &argv);
    int rc = run_coop(&a, kernel);
    Cblacs_exit(1);
    MPI_Finalize();
    return rc;
}
