/* test_dist_driver.c — the distributed task driver (mpi/pipeline/driver.h) on
 * synthetic tasks (dist_synth.h), under mpirun with 1, 2 or 4 ranks.
 *
 * Without arguments (the ctest runs): every result file must equal, byte for
 * byte, the file encoded serially in this test without the driver (so all
 * rank counts produce identical files); each task runs exactly once; the
 * gathered table equals the serial rows; resume reuses every valid file and
 * recomputes exactly the corrupted, stale and missing ones.
 * Modes used by tests/dist_failure.py:
 *   plan NP        print each rank's static tasks (no MPI needed)
 *   run DIR [--resume]   one driver run (AQ_FAIL_AT and the test hooks
 *                  AQ_TEST_KILL_MIDWRITE / AQ_TEST_TASK_ERROR / AQ_TEST_BAD_FP=K apply)
 *   verify DIR     serial check of DIR/results against the expected bytes */
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mpi.h>

#include "../io/atomic_file.h"
#include "../mpi/pipeline/driver.h"
#include "dist_synth.h"
#include "testutil.h"

typedef struct counters {
    int calls;
    unsigned char ran[SYN_TASKS];
} counters;

/* The task callback: compute the synthetic content and write the file. */
static aq_status syn_run(void *ctx, const aq_dist_task *t, size_t index, const char *path, aq_dist_worker *w,
                         aq_error *err)
{
    counters *c = ctx;
    c->calls++;
    c->ran[index]++;
    float *vec;
    aq_tensor_view views[2];
    aq_result_desc d = syn_desc(t, &vec, views);
    /* Work time proportional to the estimated cost (0.3-3 ms), polling as a
     * real optimizer loop would. */
    for (int k = 0; k < 3; k++) {
        usleep((useconds_t)(t->cost / 4e3));
        aq_dist_poll(w);
    }
    const char *mid = getenv("AQ_TEST_KILL_MIDWRITE");
    if (mid && (size_t)atol(mid) == index) {
        /* Die in the middle of writing: half the bytes are in the temporary file. */
        unsigned char *buf;
        size_t len;
        aq_atomic_file *f;
        if (aq_result_encode(&d, &buf, &len, err) == AQ_OK && aq_atomic_open(path, &f, err) == AQ_OK) {
            aq_atomic_write(f, buf, len / 2, err);
            fflush(aq_atomic_stream(f));
            fprintf(stderr, "test: rank killed while writing task %zu\n", index);
            raise(SIGKILL);
        }
    }
    const char *fail = getenv("AQ_TEST_TASK_ERROR"), *badfp = getenv("AQ_TEST_BAD_FP");
    if (fail && (size_t)atol(fail) == index) {
        free(vec);
        return aq_fail(err, AQ_ERR_NUMERIC, "synthetic task error (test)");
    }
    if (badfp && (size_t)atol(badfp) == index) d.fp.h[1] ^= 1; /* the driver must notice */
    aq_status st = aq_result_write(path, &d, err);
    free(vec);
    return st;
}

static int cmp_file(const char *dir, const aq_dist_task *t, size_t i)
{
    char *path = NULL;
    aq_error e = {0};
    if (aq_result_path(dir, t->layer, t->option, &path, &e) != AQ_OK) return -1;
    size_t n1, n2;
    unsigned char *a = aq_test_read_file(path, &n1), *b = syn_expected(t, &n2);
    int same = a && b && n1 == n2 && !memcmp(a, b, n1);
    int missing = a == NULL;
    free(a);
    free(b);
    free(path);
    (void)i;
    return missing ? 1 : same ? 0 : 2; /* 0 equal, 1 missing, 2 different */
}

static aq_status run_once(const char *dir, int resume, aq_dist_task *tasks, counters *c, aq_loss_row *table,
                          aq_dist_stats *stats, aq_error *err)
{
    aq_dist_options opt;
    aq_dist_options_default(&opt, dir);
    opt.resume = resume;
    opt.progress_tty = 0;
    opt.progress_interval = 0.001;
    memset(c, 0, sizeof *c);
    return aq_dist_run(MPI_COMM_WORLD, tasks, SYN_TASKS, syn_run, c, &opt, table, stats, err);
}

/* Every rank: how many times was each task run in total? */
static void check_ran(const counters *c, const unsigned char *want, int rank)
{
    int mine[SYN_TASKS], all[SYN_TASKS];
    for (int i = 0; i < SYN_TASKS; i++) mine[i] = c->ran[i];
    MPI_Allreduce(mine, all, SYN_TASKS, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    for (int i = 0; i < SYN_TASKS; i++)
        if (rank == 0) CHECK_MSG(all[i] == want[i], "task %d ran %d times, expected %d", i, all[i], want[i]);
}

static void check_files_and_table(const char *dir, aq_dist_task *tasks, const aq_loss_row *table)
{
    for (size_t i = 0; i < SYN_TASKS; i++) {
        int r = cmp_file(dir, &tasks[i], i);
        CHECK_MSG(r == 0, "task %zu: result file %s", i, r == 1 ? "missing" : "differs from the serial encoding");
        float *v;
        int64_t a, b;
        aq_loss_row row;
        syn_content(&tasks[i], &v, &a, &b, &row);
        CHECK_MSG(!memcmp(&row, &table[i], sizeof row), "task %zu: gathered row differs", i);
        free(v);
    }
}

static void corrupt(const char *dir, const aq_dist_task *t, int how)
{
    char *path = NULL;
    aq_error e = {0};
    aq_result_path(dir, t->layer, t->option, &path, &e);
    if (how == 0) { /* flip one payload byte */
        size_t n;
        unsigned char *b = aq_test_read_file(path, &n);
        b[n - 3] ^= 0x10;
        FILE *f = fopen(path, "wb");
        fwrite(b, 1, n, f);
        fclose(f);
        free(b);
    } else if (how == 1) {
        unlink(path);
    } else { /* a valid file, but of another seed (stale fingerprint) */
        float *vec;
        aq_tensor_view views[2];
        aq_result_desc d = syn_desc(t, &vec, views);
        d.fp.h[0] ^= 0xdead;
        aq_result_write(path, &d, &e);
        free(vec);
    }
    free(path);
}

static int full_test(void)
{
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char dir[256] = {0};
    if (rank == 0) {
        char *d = aq_test_tmpdir("dist");
        snprintf(dir, sizeof dir, "%s/work", d); /* the driver creates it */
        free(d);
    }
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    aq_dist_task tasks[SYN_TASKS];
    syn_tasks(tasks);
    aq_error err = {0};
    CHECK_OK(aq_dist_tasks_order(tasks, SYN_TASKS, &err), &err);
    aq_loss_row table[SYN_TASKS];
    counters c;
    aq_dist_stats st;
    unsigned char once[SYN_TASKS], none[SYN_TASKS] = {0}, some[SYN_TASKS] = {0};
    memset(once, 1, sizeof once);

    /* 1. Fresh run. */
    CHECK_OK(run_once(dir, 0, tasks, &c, table, &st, &err), &err);
    check_ran(&c, once, rank);
    CHECK(st.total == SYN_TASKS && st.computed == SYN_TASKS && st.reused == 0);
    if (size > 1) CHECK_MSG(st.dynamic > 0, "no task went through the tail queue");
    int local_sum = 0, mine = (int)st.local;
    MPI_Allreduce(&mine, &local_sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    CHECK(local_sum == SYN_TASKS);
    if (rank == 0) {
        check_files_and_table(dir, tasks, table);
        printf("P=%d: fresh run: %zu tasks (%zu from the tail queue), %.3f s\n", size, st.computed, st.dynamic,
               st.seconds);
    }

    /* 2. Resume with everything valid: nothing runs, same table. */
    memset(table, 0, sizeof table);
    CHECK_OK(run_once(dir, 1, tasks, &c, table, &st, &err), &err);
    check_ran(&c, none, rank);
    CHECK(st.reused == SYN_TASKS && st.computed == 0 && st.invalid == 0);
    if (rank == 0) check_files_and_table(dir, tasks, table);

    /* 3. Corrupt one, delete one, make one stale: exactly those are redone. */
    if (rank == 0) {
        corrupt(dir, &tasks[3], 0);
        corrupt(dir, &tasks[7], 1);
        corrupt(dir, &tasks[11], 2);
    }
    some[3] = some[7] = some[11] = 1;
    MPI_Barrier(MPI_COMM_WORLD);
    memset(table, 0, sizeof table);
    CHECK_OK(run_once(dir, 1, tasks, &c, table, &st, &err), &err);
    check_ran(&c, some, rank);
    CHECK_MSG(st.reused == SYN_TASKS - 3 && st.computed == 3 && st.invalid == 2, "reused %zu computed %zu invalid %zu",
              st.reused, st.computed, st.invalid);
    if (rank == 0) check_files_and_table(dir, tasks, table);

    /* 4. Without --resume everything is recomputed, same bytes. */
    CHECK_OK(run_once(dir, 0, tasks, &c, table, &st, &err), &err);
    check_ran(&c, once, rank);
    if (rank == 0) check_files_and_table(dir, tasks, table);

    /* 5. An unwritable work directory is an error on every rank, not a hang. */
    aq_error e2 = {0};
    aq_status s2 = run_once("/proc/adaquant-no-such-dir", 0, tasks, &c, table, &st, &e2);
    CHECK_MSG(s2 == AQ_ERR_IO && strstr(e2.msg, "/proc/adaquant-no-such-dir"), "got %d: %s", s2, e2.msg);

    /* 6. Ranks that disagree on the task list are refused on every rank. */
    if (size > 1) {
        aq_dist_task other[SYN_TASKS];
        memcpy(other, tasks, sizeof other);
        if (rank == size - 1) other[5].cost *= 2;
        aq_error e3 = {0};
        aq_dist_options opt;
        aq_dist_options_default(&opt, dir);
        opt.progress = NULL;
        memset(&c, 0, sizeof c);
        aq_status s3 = aq_dist_run(MPI_COMM_WORLD, other, SYN_TASKS, syn_run, &c, &opt, table, &st, &e3);
        CHECK_MSG(s3 == AQ_ERR_ARG && strstr(e3.msg, "different task lists"), "got %d: %s", s3, e3.msg);
        CHECK(c.calls == 0);
    }

    int fails = aq_test_failures, all = 0;
    MPI_Allreduce(&fails, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0 && all == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%.*s'", (int)(strrchr(dir, '/') - dir), dir);
        if (system(cmd) != 0) fprintf(stderr, "could not clean %s\n", dir);
    }
    aq_test_failures = all;
    return 0;
}

static int plan(int np)
{
    aq_dist_task tasks[SYN_TASKS];
    syn_tasks(tasks);
    double cost[SYN_TASKS];
    for (int i = 0; i < SYN_TASKS; i++) cost[i] = tasks[i].cost;
    aq_dist_schedule s;
    aq_error e = {0};
    if (aq_dist_schedule_build(cost, NULL, SYN_TASKS, np, 0.2, &s, &e) != AQ_OK) return 1;
    for (int r = 0; r < np; r++) {
        printf("rank %d:", r);
        for (size_t j = s.start[r]; j < s.start[r + 1]; j++) printf(" %zu", s.list[j]);
        printf("\n");
    }
    aq_dist_schedule_free(&s);
    return 0;
}

static int verify(const char *dir)
{
    aq_dist_task tasks[SYN_TASKS];
    syn_tasks(tasks);
    int valid = 0, missing = 0, bad = 0;
    for (size_t i = 0; i < SYN_TASKS; i++) {
        int r = cmp_file(dir, &tasks[i], i);
        if (r == 0) valid++;
        if (r == 1) {
            char *path = NULL;
            aq_error e = {0};
            aq_result_path(dir, tasks[i].layer, tasks[i].option, &path, &e);
            printf("missing %zu %s\n", i, path ? strrchr(path, '/') + 1 : "?");
            free(path);
            missing++;
        }
        if (r == 2) printf("different %zu\n", i), bad++;
    }
    printf("valid=%d missing=%d different=%d\n", valid, missing, bad);
    return 0;
}

static int run_mode(const char *dir, int resume)
{
    aq_dist_task tasks[SYN_TASKS];
    syn_tasks(tasks);
    aq_loss_row table[SYN_TASKS];
    counters c;
    aq_dist_stats st;
    aq_error err = {0};
    aq_dist_options opt;
    aq_dist_options_default(&opt, dir);
    opt.resume = resume;
    opt.progress_interval = 0.05;
    memset(&c, 0, sizeof c);
    aq_status s = aq_dist_run(MPI_COMM_WORLD, tasks, SYN_TASKS, syn_run, &c, &opt, table, &st, &err);
    if (s != AQ_OK) {
        fprintf(stderr, "run failed: %s\n", err.msg);
        return 1;
    }
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0)
        printf("stats total=%zu reused=%zu invalid=%zu computed=%zu\n", st.total, st.reused, st.invalid, st.computed);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "plan")) return plan(atoi(argv[2]));
    if (argc >= 3 && !strcmp(argv[1], "verify")) return verify(argv[2]);
    MPI_Init(&argc, &argv);
    int rc = 0;
    if (argc >= 3 && !strcmp(argv[1], "run")) {
        rc = run_mode(argv[2], argc >= 4 && !strcmp(argv[3], "--resume"));
        MPI_Finalize();
        return rc;
    }
    full_test();
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Finalize();
    if (rank != 0) return aq_test_failures ? 1 : 0;
    AQ_TEST_END();
}
