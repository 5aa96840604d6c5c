/* test_dist_reduce.c — deterministic chunk-ordered reductions, the loss-row
 * gather and the assignment broadcast (mpi/pipeline/ordered_sum.h, collect.h), under
 * mpirun with 1, 2 and 4 ranks.
 * Reference: a serial float64 loop over the chunks in order, computed here.
 * The partials span 16 orders of magnitude, so any other summation order
 * changes the bits (checked: the reverse order differs), and the result must
 * be bit-identical for every rank count, owner and chunk-to-rank map. */
#include <math.h>
#include <string.h>

#include <mpi.h>

#include "../mpi/pipeline/collect.h"
#include "../mpi/pipeline/ordered_sum.h"
#include "testutil.h"

enum { NCHUNK = 13, LEN = 1031 };

static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void partial(int c, double *p)
{
    for (int j = 0; j < LEN; j++) {
        uint64_t h = mix((uint64_t)c * 1000003u + (uint64_t)j);
        double u = (double)(h >> 11) * 0x1.0p-53 - 0.5;
        p[j] = ldexp(u, (int)(h % 54) - 27); /* magnitudes 2^-28 .. 2^26 */
    }
}

static void maps(int variant, int P, int *rank_of)
{
    uint64_t s = 99;
    for (int c = 0; c < NCHUNK; c++) {
        size_t lo, hi;
        switch (variant) {
        case 0: /* contiguous blocks */
            for (int r = 0; r < P; r++) {
                aq_dist_block_range(NCHUNK, P, r, &lo, &hi);
                if ((size_t)c >= lo && (size_t)c < hi) rank_of[c] = r;
            }
            break;
        case 1: rank_of[c] = c % P; break;               /* cyclic */
        case 2: rank_of[c] = (P - 1) - c % P; break;     /* reversed cyclic */
        default: s = mix(s); rank_of[c] = (int)(s % (uint64_t)P); break; /* random, same on all ranks */
        }
    }
}

static void test_reduce(int rank, int P)
{
    static double parts[NCHUNK][LEN];
    double ref[LEN] = {0}, rev[LEN] = {0}, out[LEN];
    for (int c = 0; c < NCHUNK; c++) partial(c, parts[c]);
    for (int c = 0; c < NCHUNK; c++)
        for (int j = 0; j < LEN; j++) ref[j] += parts[c][j];
    for (int c = NCHUNK - 1; c >= 0; c--)
        for (int j = 0; j < LEN; j++) rev[j] += parts[c][j];
    int differ = 0;
    for (int j = 0; j < LEN; j++) differ += ref[j] != rev[j];
    CHECK_MSG(differ > 0, "the data cannot detect a change of summation order");
    if (rank == 0) printf("reverse order changes %d of %d sums\n", differ, LEN);

    for (int variant = 0; variant < 5; variant++)
        for (int owner = 0; owner < P; owner += (P > 1 ? P - 1 : 1)) {
            int rank_of[NCHUNK];
            maps(variant, P, rank_of);
            const double *local[NCHUNK] = {0};
            for (int c = 0; c < NCHUNK; c++)
                if (rank_of[c] == rank) local[c] = parts[c];
            memset(out, 0xff, sizeof out);
            aq_error e = {0};
            CHECK_OK(aq_dist_reduce_chunks(MPI_COMM_WORLD, owner, NCHUNK, rank_of, local, LEN, out, &e), &e);
            if (rank == owner)
                CHECK_MSG(!memcmp(out, ref, sizeof ref), "P=%d variant %d owner %d: sum not bit-identical", P,
                          variant, owner);
        }
    /* A bad map is an error on every rank (no hang). */
    int rank_of[NCHUNK];
    maps(1, P, rank_of);
    rank_of[4] = P + 3;
    const double *local[NCHUNK] = {0};
    for (int c = 0; c < NCHUNK; c++)
        if (rank_of[c] == rank) local[c] = parts[c];
    aq_error e = {0};
    CHECK(aq_dist_reduce_chunks(MPI_COMM_WORLD, 0, NCHUNK, rank_of, local, LEN, out, &e) == AQ_ERR_ARG);
}

/* The byte-stream form: variable-size partials, sent in small pieces. */
typedef struct merge_ctx {
    double acc[LEN];
    size_t next;   /* the chunk merge expects next */
    int bad_order, bad_len;
    long fail_chunk;
} merge_ctx;

static aq_status pack_cb(void *vctx, size_t c, void **buf, size_t *len, aq_error *err)
{
    merge_ctx *m = vctx;
    if ((long)c == m->fail_chunk) return aq_fail(err, AQ_ERR_IO, "cannot pack chunk %zu (test)", c);
    size_t n = LEN + c % 3; /* the extra doubles are a length check */
    double *p = malloc(n * sizeof *p);
    partial((int)c, p);
    for (size_t j = LEN; j < n; j++) p[j] = (double)c;
    *buf = p;
    *len = n * sizeof *p;
    return AQ_OK;
}

static aq_status merge_cb(void *vctx, size_t c, const void *buf, size_t len, aq_error *err)
{
    merge_ctx *m = vctx;
    m->bad_order += c != m->next++;
    m->bad_len += len != (LEN + c % 3) * sizeof(double);
    double x[LEN + 2];
    memcpy(x, buf, len < sizeof x ? len : sizeof x);
    for (int j = 0; j < LEN; j++) m->acc[j] += x[j];
    for (size_t j = LEN; j < LEN + c % 3; j++) m->bad_len += x[j] != (double)c;
    return AQ_OK;
}

static void test_merge(int rank, int P)
{
    static double parts[NCHUNK][LEN];
    double ref[LEN] = {0};
    for (int c = 0; c < NCHUNK; c++) partial(c, parts[c]);
    for (int c = 0; c < NCHUNK; c++)
        for (int j = 0; j < LEN; j++) ref[j] += parts[c][j];
    for (int variant = 0; variant < 4; variant++) {
        int rank_of[NCHUNK];
        maps(variant, P, rank_of);
        int owner = variant % P;
        static merge_ctx m;
        memset(&m, 0, sizeof m);
        m.fail_chunk = -1;
        aq_error e = {0};
        CHECK_OK(aq_dist_merge_chunks(MPI_COMM_WORLD, owner, NCHUNK, rank_of, pack_cb, merge_cb, &m, 1000, &e), &e);
        if (rank == owner) {
            CHECK(m.next == NCHUNK && m.bad_order == 0 && m.bad_len == 0);
            CHECK_MSG(!memcmp(m.acc, ref, sizeof ref), "merge variant %d: sum not bit-identical", variant);
        }
    }
    /* A holder that cannot pack its chunk: every rank returns its error. */
    int rank_of[NCHUNK];
    maps(1, P, rank_of);
    static merge_ctx m;
    memset(&m, 0, sizeof m);
    m.fail_chunk = 2 * P - 1 < NCHUNK ? 2 * P - 1 : NCHUNK - 1; /* held by rank P-1 */
    aq_error e = {0};
    aq_status st = aq_dist_merge_chunks(MPI_COMM_WORLD, 0, NCHUNK, rank_of, pack_cb, merge_cb, &m, 1000, &e);
    char want[64];
    snprintf(want, sizeof want, "cannot pack chunk %ld", m.fail_chunk);
    CHECK_MSG(st == AQ_ERR_IO && strstr(e.msg, want), "pack failure: %d %s", st, e.msg);
}

static void test_gather(int rank, int P)
{
    enum { N = 23 };
    size_t idx[N];
    aq_loss_row rows[N], table[N];
    size_t k = 0;
    /* Rank r holds the tasks i with (7i+3) mod P == r, in descending order. */
    for (int i = N - 1; i >= 0; i--)
        if ((7 * i + 3) % P == rank) {
            idx[k] = (size_t)i;
            rows[k++] = (aq_loss_row){.loss = 0.5 * i, .params = 1000 + i, .w_bits = i % 8, .a_bits = 16};
        }
    aq_error e = {0};
    memset(table, 0, sizeof table);
    CHECK_OK(aq_dist_gather_rows(MPI_COMM_WORLD, 0, N, idx, rows, k, table, &e), &e);
    if (rank == 0)
        for (int i = 0; i < N; i++)
            CHECK(table[i].loss == 0.5 * i && table[i].params == 1000 + i && table[i].w_bits == i % 8);
    /* The last rank forgets one of its rows: every rank gets the error. */
    size_t k2 = rank == P - 1 && k > 0 ? k - 1 : k;
    aq_error e2 = {0};
    aq_status st = aq_dist_gather_rows(MPI_COMM_WORLD, 0, N, idx, rows, k2, table, &e2);
    CHECK_MSG(st == AQ_ERR_INTERNAL && strstr(e2.msg, "task"), "gap: %d %s", st, e2.msg);
    /* Rank 0 reports one of its tasks twice (in place of another one, so the
     * count is right): the duplicate is named. */
    size_t idx3[N];
    memcpy(idx3, idx, k * sizeof *idx);
    if (rank == 0 && k >= 2) idx3[k - 1] = idx[0];
    aq_error e3 = {0};
    st = aq_dist_gather_rows(MPI_COMM_WORLD, 0, N, idx3, rows, k, table, &e3);
    CHECK_MSG(st == AQ_ERR_INTERNAL && strstr(e3.msg, "twice"), "duplicate: %d %s", st, e3.msg);
    /* More rows than tasks. */
    size_t idx4[N + 1];
    aq_loss_row rows4[N + 1];
    memcpy(idx4, idx, k * sizeof *idx);
    memcpy(rows4, rows, k * sizeof *rows);
    size_t k4 = k;
    if (rank == 0) idx4[k4] = 0, rows4[k4++] = rows[0];
    aq_error e4 = {0};
    st = aq_dist_gather_rows(MPI_COMM_WORLD, 0, N, idx4, rows4, k4, table, &e4);
    CHECK_MSG(st == AQ_ERR_INTERNAL && strstr(e4.msg, "more rows"), "extra: %d %s", st, e4.msg);

    int choice[9];
    for (int l = 0; l < 9; l++) choice[l] = rank == 0 ? (3 * l) % 5 : -7;
    CHECK_OK(aq_dist_bcast_choice(MPI_COMM_WORLD, 0, choice, 9, &e), &e);
    for (int l = 0; l < 9; l++) CHECK(choice[l] == (3 * l) % 5);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, P;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    test_reduce(rank, P);
    test_merge(rank, P);
    test_gather(rank, P);
    int fails = aq_test_failures, all = 0;
    MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    aq_test_failures = all;
    MPI_Finalize();
    if (rank != 0) return all ? 1 : 0;
    AQ_TEST_END();
}
