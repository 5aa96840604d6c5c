/* bench_dist.c — figures for the distribution layer. Run under mpirun:
 *   mpirun -np P bench_dist [d] [chunks]
 * 1. chunk-ordered reduction of `chunks` Gram partials of (d+1)² float64 onto
 *    rank 0 (aq_dist_reduce_chunks), against MPI_Reduce(MPI_SUM) of the
 *    per-rank sums as the baseline (which is NOT rank-count independent);
 * 2. result files: encode+write and read+validate throughput for a layer of
 *    d_out × d_in = 2048 × 2048 packed int4-like bytes + scales (rank 0);
 * 3. driver overhead: tasks/s for 200 empty tasks that write tiny files. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>

#include "../io/resultfile.h"
#include "../mpi/pipeline/driver.h"
#include "../mpi/pipeline/ordered_sum.h"

static void bench_reduce(int rank, int P, size_t d, size_t chunks)
{
    size_t len = (d + 1) * (d + 1);
    int *rank_of = malloc(chunks * sizeof *rank_of);
    const double **local = calloc(chunks, sizeof *local);
    double *mine_sum = calloc(len, sizeof(double)), *out = malloc(len * sizeof(double));
    for (size_t c = 0; c < chunks; c++) {
        size_t lo, hi;
        for (int r = 0; r < P; r++) {
            aq_dist_block_range(chunks, P, r, &lo, &hi);
            if (c >= lo && c < hi) rank_of[c] = r;
        }
        if (rank_of[c] == rank) {
            double *p = malloc(len * sizeof *p);
            for (size_t j = 0; j < len; j++) p[j] = (double)((c * 31 + j) % 1000) * 1e-3;
            for (size_t j = 0; j < len; j++) mine_sum[j] += p[j];
            local[c] = p;
        }
    }
    aq_error err = {0};
    double best_ord = 1e30, best_mpi = 1e30; /* best of 3, after a warm-up round */
    for (int rep = 0; rep < 4; rep++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        if (aq_dist_reduce_chunks(MPI_COMM_WORLD, 0, chunks, rank_of, local, len, out, &err) != AQ_OK)
            fprintf(stderr, "reduce: %s\n", err.msg);
        MPI_Barrier(MPI_COMM_WORLD);
        double t1 = MPI_Wtime();
        MPI_Reduce(mine_sum, out, (int)len, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
        MPI_Barrier(MPI_COMM_WORLD);
        double t2 = MPI_Wtime();
        if (rep > 0 && t1 - t0 < best_ord) best_ord = t1 - t0;
        if (rep > 0 && t2 - t1 < best_mpi) best_mpi = t2 - t1;
    }
    if (rank == 0)
        printf("reduce: P=%d, %zu chunks of (%zu+1)^2 doubles (%.1f MB each): chunk-ordered %.4f s "
               "(%.0f MB/s of partials), MPI_Reduce(SUM) of per-rank sums %.4f s (not P-independent)\n",
               P, chunks, d, len * 8 / 1e6, best_ord, chunks * len * 8 / 1e6 / best_ord, best_mpi);
    for (size_t c = 0; c < chunks; c++) free((void *)local[c]);
    free(local);
    free(rank_of);
    free(mine_sum);
    free(out);
}

static void bench_resultfile(const char *dir)
{
    size_t rows = 2048, cols = 2048;
    unsigned char *q = malloc(rows * cols / 2);
    float *scale = malloc(rows * sizeof *scale);
    uint64_t z = 42; /* splitmix64: 4-bit codes look random, as real quantized weights do */
    for (size_t i = 0; i < rows * cols / 2; i++) {
        z += 0x9e3779b97f4a7c15ULL;
        uint64_t x = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        q[i] = (unsigned char)((x ^ (x >> 31)) >> 56);
    }
    for (size_t i = 0; i < rows; i++) scale[i] = 0.01f * (float)(i % 97 + 1);
    aq_tensor_view v[2] = {
        {.name = "qweight", .dtype = AQ_U8, .ndim = 2, .shape = {(int64_t)rows, (int64_t)cols / 2}, .data = q,
         .nbytes = rows * cols / 2},
        {.name = "w_scale", .dtype = AQ_F32, .ndim = 1, .shape = {(int64_t)rows}, .data = scale, .nbytes = rows * 4}};
    aq_result_desc d = {.layer = "bench.layer", .option = "w4a16", .row = {.loss = 0.01}, .n_tensors = 2, .tensors = v};
    char path[512];
    snprintf(path, sizeof path, "%s/bench.aqr", dir);
    aq_error err = {0};
    double t0 = MPI_Wtime();
    aq_result_write(path, &d, &err);
    double t1 = MPI_Wtime();
    aq_result *r = NULL;
    if (aq_result_read(path, &d.fp, &r, &err) != AQ_OK) fprintf(stderr, "read: %s\n", err.msg);
    double t2 = MPI_Wtime();
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    double mb = (double)(rows * cols / 2 + rows * 4) / 1e6;
    printf("result file: %.1f MB of tensors -> %.1f MB file; write (encode+fsync+rename) %.3f s (%.0f MB/s), "
           "read+validate %.3f s (%.0f MB/s)\n",
           mb, size / 1e6, t1 - t0, mb / (t1 - t0), t2 - t1, mb / (t2 - t1));
    aq_result_free(r);
    unlink(path);
    free(q);
    free(scale);
}

static aq_status empty_task(void *ctx, const aq_dist_task *t, size_t i, const char *path, aq_dist_worker *w,
                            aq_error *err)
{
    aq_result_desc d = {.layer = t->layer, .option = t->option, .fp = t->fp, .row = {.loss = (double)i}};
    return aq_result_write(path, &d, err);
}

static void bench_driver(int rank, const char *dir)
{
    enum { N = 200 };
    static aq_dist_task t[N];
    static char names[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "layer%03d", i);
        t[i] = (aq_dist_task){.layer = names[i], .option = "w4a16", .layer_index = i, .cost = 1.0 + i % 7};
    }
    aq_dist_options o;
    aq_dist_options_default(&o, dir);
    o.progress = NULL;
    aq_dist_stats st;
    aq_error err = {0};
    if (aq_dist_run(MPI_COMM_WORLD, t, N, empty_task, NULL, &o, NULL, &st, &err) != AQ_OK)
        fprintf(stderr, "driver: %s\n", err.msg);
    if (rank == 0)
        printf("driver: %d empty tasks (each writes+fsyncs+re-reads a result file) in %.3f s = %.0f tasks/s, "
               "%zu via the tail queue\n",
               N, st.seconds, N / st.seconds, st.dynamic);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, P;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    size_t d = argc > 1 ? (size_t)atol(argv[1]) : 512, chunks = argc > 2 ? (size_t)atol(argv[2]) : 16;
    char dir[64] = "/tmp/aqbench-dist-XXXXXX";
    if (rank == 0 && !mkdtemp(dir)) dir[0] = 0;
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    bench_reduce(rank, P, d, chunks);
    if (rank == 0) bench_resultfile(dir);
    char work[128];
    snprintf(work, sizeof work, "%s/work", dir);
    bench_driver(rank, work);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        char cmd[160];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    }
    MPI_Finalize();
    return 0;
}
