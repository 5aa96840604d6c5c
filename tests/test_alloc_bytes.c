/* test_alloc_bytes.c — the allocation under a budget in file bytes
 * (AQ_SIZE_BYTES: rows carry their bytes as size_bits = 8 x bytes, the rest of
 * the file is size_fixed_bits) against brute force over every choice, on seeded
 * random tiny tables that mix linear options (wK) with an embedding's f32 /
 * f16 / wK options (w_bits up to 32); and the infeasibility diagnosis, which
 * must name the exact smallest feasible size in bytes. Then the --target-size
 * syntax of the pipeline (aq_pipe_parse_size) and its errors. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../mpi/pipeline/pipeline.h"
#include "../solver/allocate.h"
#include "testutil.h"

static uint64_t state = 0x9E3779B97F4A7C15ull;
static int irange(int lo, int hi)
{
    return lo + aq_test_irand(&state, hi - lo + 1);
}

#define MAXL 6
#define MAXK 5
typedef struct tiny {
    int nl, nk[MAXL];
    int64_t bytes[MAXL][MAXK];
    double loss[MAXL][MAXK];
    int64_t fixed;
} tiny;

static const char *const lin_opts[4] = {"w8a16", "w6a16", "w4a16", "w3a16"};
static const int lin_bits[4] = {8, 6, 4, 3};
static const char *const emb_opts[5] = {"f32", "f16", "w8", "w6", "w4"};
static const int emb_bits[5] = {32, 16, 8, 6, 4};

/* Layer 0 is an embedding (its five options), the others linears. Bytes grow
 * with the bits plus a random per-row overhead; loss falls with the bits. */
static void make(tiny *t, aq_alloc_table *tab)
{
    aq_error e = {0};
    t->nl = irange(1, MAXL);
    t->fixed = irange(0, 5000);
    aq_alloc_table_init(tab);
    for (int l = 0; l < t->nl; l++) {
        int emb = l == 0, params = irange(16, 400);
        t->nk[l] = emb ? 5 : irange(1, 4);
        char name[32];
        snprintf(name, sizeof name, emb ? "embed" : "layer%d", l);
        for (int k = 0; k < t->nk[l]; k++) {
            int bits = emb ? emb_bits[k] : lin_bits[k];
            t->bytes[l][k] = (int64_t)params * bits / 8 + irange(0, 300);
            t->loss[l][k] = emb && k == 0 ? 0 : (double)irange(0, 1000) / (double)(bits * bits);
            CHECK_OK(aq_alloc_table_add(tab, name, emb ? emb_opts[k] : lin_opts[k], params, bits, 16, params,
                                        t->loss[l][k], 8 * t->bytes[l][k], 0, &e),
                     &e);
        }
    }
}

/* Brute force: the least loss within `budget` bytes (-1 if none), and the least size. */
static double brute(const tiny *t, int64_t budget, int64_t *least)
{
    int pick[MAXL] = {0};
    double best = -1;
    *least = INT64_MAX;
    for (;;) {
        int64_t b = t->fixed;
        double loss = 0;
        for (int l = 0; l < t->nl; l++) b += t->bytes[l][pick[l]], loss += t->loss[l][pick[l]];
        if (b < *least) *least = b;
        if (b <= budget && (best < 0 || loss < best)) best = loss;
        int l = 0;
        while (l < t->nl && ++pick[l] == t->nk[l]) pick[l++] = 0;
        if (l == t->nl) break;
    }
    return best;
}

static void random_cases(void)
{
    for (int c = 0; c < 300; c++) {
        tiny t;
        aq_alloc_table tab;
        make(&t, &tab);
        int64_t least;
        brute(&t, 0, &least);
        /* budgets around the smallest size, from infeasible to loose */
        int64_t budget = least - 300 + irange(0, 3000);
        double want = brute(&t, budget, &least);
        aq_alloc_spec sp = {.objective = AQ_ALLOC_MIN_LOSS, .size_unit = AQ_SIZE_BYTES,
                            .size_budget = (double)budget, .size_fixed_bits = 8 * t.fixed};
        aq_alloc_solution sol;
        aq_error e = {0};
        aq_status st = aq_alloc_solve(&tab, &sp, &sol, &e);
        if (want < 0) {
            CHECK_MSG(st == AQ_ERR_INFEASIBLE, "case %d: budget %lld below %lld accepted", c, (long long)budget,
                      (long long)least);
            CHECK(sol.infeasible == AQ_BUDGET_SIZE);
            CHECK_MSG(sol.min_feasible == (double)least, "case %d: named %.0f, least %lld", c, sol.min_feasible,
                      (long long)least);
            char want_msg[64];
            snprintf(want_msg, sizeof want_msg, "the smallest feasible is %lld bytes", (long long)least);
            CHECK_MSG(strstr(e.msg, want_msg) != NULL, "case %d: %s", c, e.msg);
        } else {
            CHECK_MSG(st == AQ_OK, "case %d: %s", c, e.msg);
            if (st == AQ_OK) {
                /* loss sums of a few terms: equal up to rounding of the order of summation */
                CHECK_CLOSE(sol.loss, want, 1e-12 * (want + 1));
                CHECK(t.fixed + sol.size_bits / 8 <= budget);
                CHECK(sol.size_bits % 8 == 0);
                aq_alloc_solution_free(&sol);
            }
        }
        aq_alloc_table_free(&tab);
    }
}

static void parse_cases(void)
{
    static const struct {
        const char *text;
        double bytes;
        int bpw;
    } ok[] = {{"302560", 302560, 0}, {"302560B", 302560, 0}, {"300k", 300000, 0}, {"300K", 300000, 0},
              {"300kB", 300000, 0},  {"0.3M", 300000, 0},    {"1G", 1e9, 0},       {"300Ki", 307200, 0},
              {"1.5Mi", 1572864, 0}, {"1GiB", 1073741824.0, 0}, {"5.5bpw", 5.5, 1}, {"4.2k", 4200, 0}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        aq_pipe_budget b;
        aq_error e = {0};
        aq_pipe_budget_default(&b);
        CHECK_OK(aq_pipe_parse_size(ok[i].text, &b, &e), &e);
        CHECK_MSG(b.size_value == ok[i].bytes && b.bpw == ok[i].bpw, "%s: %.17g bpw %d", ok[i].text, b.size_value,
                  b.bpw);
    }
    static const struct {
        const char *text, *says;
    } bad[] = {{"", "expected a positive size"},       {"-5", "expected a positive size"},
               {"0", "expected a positive size"},      {"abc", "expected a positive size"},
               {"0.3", "--target-fp32-fraction"},      {"12q", "unknown unit 'q'"},
               {"5kb", "unknown unit 'kb'"},           {"100bpw", "more than 64 bits per weight"},
               {"nan", "expected a positive size"},    {"1e20", "too large"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        aq_pipe_budget b;
        aq_error e = {0};
        aq_pipe_budget_default(&b);
        CHECK_MSG(aq_pipe_parse_size(bad[i].text, &b, &e) == AQ_ERR_ARG, "'%s' accepted", bad[i].text);
        CHECK_MSG(strstr(e.msg, bad[i].says) && strstr(e.msg, "--target-size"), "'%s': %s", bad[i].text, e.msg);
    }
    aq_pipe_budget d;
    aq_pipe_budget_default(&d);
    CHECK(aq_pipe_budget_bytes(&d) && d.bpw && d.size_value == AQ_PIPE_DEFAULT_BPW);
}

int main(void)
{
    random_cases();
    parse_cases();
    AQ_TEST_END();
}
