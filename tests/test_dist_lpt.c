/* test_dist_lpt.c — scheduling (mpi/pipeline/tasks.h): the cost formula, the
 * canonical order, LPT against a brute-force optimum on tiny instances (the
 * makespan stays within Graham's bound 4/3 - 1/(3P)), the tight textbook
 * instance, determinism, the static/tail split and the shard partition. */
#include <string.h>

#include "../mpi/pipeline/tasks.h"
#include "testutil.h"

static uint64_t rng_state = 0x1234567;
static double rnd(void)
{
    return aq_test_urand(&rng_state);
}

/* The optimum makespan over all P^n assignments. */
static double brute_force(const double *c, int n, int P)
{
    double best = 1e300;
    long total = 1;
    for (int i = 0; i < n; i++) total *= P;
    for (long code = 0; code < total; code++) {
        double load[8] = {0};
        long x = code;
        for (int i = 0; i < n; i++, x /= P) load[x % P] += c[i];
        double m = 0;
        for (int r = 0; r < P; r++) m = load[r] > m ? load[r] : m;
        if (m < best) best = m;
    }
    return best;
}

static double makespan(const double *c, const int *owner, int n, int P)
{
    double load[64] = {0}, m = 0;
    for (int i = 0; i < n; i++) load[owner[i]] += c[i];
    for (int r = 0; r < P; r++) m = load[r] > m ? load[r] : m;
    return m;
}

static void test_bound(void)
{
    int trials = 0;
    double worst = 1;
    for (int P = 2; P <= 4; P++)
        for (int n = P + 1; n <= (P == 4 ? 7 : 9); n++)
            for (int t = 0; t < 12; t++, trials++) {
                double c[16];
                for (int i = 0; i < n; i++) c[i] = t % 3 == 0 ? (double)(1 + (int)(rnd() * 6)) : 0.1 + rnd();
                int owner[16], owner2[16];
                double load[8];
                aq_error e = {0};
                CHECK_OK(aq_dist_lpt(c, NULL, (size_t)n, P, owner, load, &e), &e);
                CHECK_OK(aq_dist_lpt(c, NULL, (size_t)n, P, owner2, NULL, &e), &e);
                CHECK(!memcmp(owner, owner2, sizeof(int) * (size_t)n)); /* deterministic */
                double ms = makespan(c, owner, n, P), opt = brute_force(c, n, P);
                double bound = 4.0 / 3.0 - 1.0 / (3.0 * P);
                CHECK_MSG(ms <= bound * opt * (1 + 1e-12), "P=%d n=%d: LPT %g > %g x optimum %g", P, n, ms, bound, opt);
                double sum = 0;
                for (int r = 0; r < P; r++) sum += load[r];
                double all = 0;
                for (int i = 0; i < n; i++) all += c[i];
                CHECK_CLOSE(sum, all, 1e-12);
                if (ms / opt > worst) worst = ms / opt;
            }
    printf("LPT vs brute force: %d instances, worst ratio %.4f\n", trials, worst);

    /* Graham's tight instance for P=2: {3,3,2,2,2}: LPT 7, optimum 6. */
    double c[5] = {3, 3, 2, 2, 2};
    int owner[5];
    aq_error e = {0};
    CHECK_OK(aq_dist_lpt(c, NULL, 5, 2, owner, NULL, &e), &e);
    CHECK(makespan(c, owner, 5, 2) == 7 && brute_force(c, 5, 2) == 6);
    /* Ties go to the lower index and the lower rank: equal tasks alternate. */
    double eq[4] = {1, 1, 1, 1};
    int o4[4];
    CHECK_OK(aq_dist_lpt(eq, NULL, 4, 2, o4, NULL, &e), &e);
    CHECK(o4[0] == 0 && o4[1] == 1 && o4[2] == 0 && o4[3] == 1);
    unsigned char skip[4] = {0, 1, 0, 0};
    CHECK_OK(aq_dist_lpt(eq, skip, 4, 2, o4, NULL, &e), &e);
    CHECK(o4[0] == 0 && o4[1] == -1 && o4[2] == 1 && o4[3] == 0);
    CHECK(aq_dist_lpt(eq, NULL, 4, 0, o4, NULL, &e) == AQ_ERR_ARG);
}

static void test_schedule(void)
{
    enum { N = 40 };
    double c[N];
    unsigned char skip[N] = {0};
    for (int i = 0; i < N; i++) c[i] = (double)(1 + (i * 37) % 23);
    skip[5] = skip[17] = 1;
    for (int P = 1; P <= 5; P++) {
        aq_dist_schedule s;
        aq_error e = {0};
        CHECK_OK(aq_dist_schedule_build(c, skip, N, P, 0.2, &s, &e), &e);
        int seen[N] = {0};
        double stat_min = 1e300, tail_max = 0, tail = 0, total = 0;
        for (int r = 0; r < P; r++)
            for (size_t j = s.start[r]; j < s.start[r + 1]; j++) {
                size_t i = s.list[j];
                seen[i]++;
                CHECK(s.owner[i] == r);
                if (j > s.start[r]) CHECK(c[s.list[j - 1]] >= c[i]); /* biggest first */
                stat_min = c[i] < stat_min ? c[i] : stat_min;
            }
        for (size_t j = 0; j < s.n_tail; j++) {
            size_t i = s.tail[j];
            seen[i]++;
            CHECK(s.owner[i] == -1);
            tail_max = c[i] > tail_max ? c[i] : tail_max;
            tail += c[i];
        }
        for (int i = 0; i < N; i++) {
            CHECK_MSG(seen[i] == (skip[i] ? 0 : 1), "P=%d task %d scheduled %d times", P, i, seen[i]);
            if (!skip[i]) total += c[i];
        }
        if (P == 1) CHECK(s.n_tail == 0);
        else {
            CHECK(s.n_tail > 0 && tail_max <= stat_min); /* the tail holds the smallest tasks */
            CHECK(tail <= 0.2 * total + tail_max && tail >= 0.2 * total - stat_min);
        }
        aq_dist_schedule_free(&s);
    }
    /* Shards partition the tasks. */
    size_t out[N], cnt;
    int cover[N] = {0};
    aq_error e = {0};
    for (int k = 0; k < 4; k++) {
        CHECK_OK(aq_dist_shard_tasks(c, N, k, 4, out, &cnt, &e), &e);
        for (size_t j = 0; j < cnt; j++) cover[out[j]]++;
        for (size_t j = 1; j < cnt; j++) CHECK(out[j] > out[j - 1]);
    }
    for (int i = 0; i < N; i++) CHECK(cover[i] == 1);
    CHECK(aq_dist_shard_tasks(c, N, 4, 4, out, &cnt, &e) == AQ_ERR_ARG);
}

static void test_order_and_cost(void)
{
    /* iters·d_out·(d_in+1)² + N·(d_in+1)² = 100·8·17² + 256·17² */
    CHECK(aq_dist_task_cost(8, 16, 256, 100) == 100.0 * 8 * 289 + 256.0 * 289);
    aq_dist_task t[4] = {
        {.layer = "b", .option = "w4", .layer_index = 1, .option_index = 0, .cost = 1},
        {.layer = "a", .option = "w8", .layer_index = 0, .option_index = 1, .cost = 1},
        {.layer = "a", .option = "w4", .layer_index = 0, .option_index = 0, .cost = 1},
        {.layer = "b", .option = "w8", .layer_index = 1, .option_index = 1, .cost = 1},
    };
    aq_error e = {0};
    CHECK_OK(aq_dist_tasks_order(t, 4, &e), &e);
    CHECK(!strcmp(t[0].layer, "a") && !strcmp(t[0].option, "w4") && !strcmp(t[1].option, "w8") &&
          !strcmp(t[2].layer, "b") && !strcmp(t[3].option, "w8"));
    t[3].option_index = 0;
    CHECK(aq_dist_tasks_order(t, 4, &e) == AQ_ERR_ARG);
    t[3].option_index = 2;
    t[3].option = "w4";
    CHECK(aq_dist_tasks_order(t, 4, &e) == AQ_ERR_ARG && strstr(e.msg, "twice"));
    t[3].option = "w8";
    t[3].cost = -1;
    CHECK(aq_dist_tasks_order(t, 4, &e) == AQ_ERR_ARG);
}

int main(void)
{
    test_order_and_cost();
    test_bound();
    test_schedule();
    AQ_TEST_END();
}
