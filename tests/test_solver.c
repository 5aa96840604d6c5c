/* test_solver.c — the CBC allocation (solver/allocate.h) against the exact
 * solver (solver/exact.h: enumeration / DP) on seeded random instances, plus
 * independent checks of every returned solution (totals recomputed here from
 * the raw rows, budgets, pins, ties) and the infeasibility diagnosis. */
#include <regex.h>
#include <stdint.h>
#include <string.h>

#include "../solver/allocate.h"
#include "../solver/exact.h"
#include "../solver/report.h"
#include "testutil.h"

typedef struct rng {
    uint64_t s;
} rng;
static double unif(rng *r) { return aq_test_urand(&r->s); }
static int irange(rng *r, int lo, int hi) { return lo + aq_test_irand(&r->s, hi - lo + 1); }

static const struct {
    const char *name;
    int w, a;
} OPTS[] = {{"w2a16", 2, 16}, {"w3a16", 3, 16}, {"w4a16", 4, 16}, {"w6a16", 6, 16}, {"w8a16", 8, 16},
            {"w4a8", 4, 8},   {"w8a8", 8, 8},   {"w2a8", 2, 8},   {"w3a4", 3, 4},   {"w16a16", 16, 16}};
#define N_OPTS 10

/* Layers "blk.<b>.<q|k|v|o>" with a random subset of options each; losses
 * roughly halve per weight bit, with noise; some rows carry size_bits. */
static void gen_table(rng *r, aq_alloc_table *t, int nl, int kmin, int kmax, int punit, double loss_scale)
{
    aq_error err = {0};
    static const char *const kind = "qkvo";
    for (int l = 0; l < nl; l++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.%c", l / 4, kind[l % 4]);
        int64_t params = (int64_t)punit * irange(r, 1, 8);
        int64_t macs = params * irange(r, 1, 4);
        double base = loss_scale * (0.2 + unif(r));
        int k = irange(r, kmin, kmax), start = irange(r, 0, N_OPTS - 1);
        for (int j = 0; j < k; j++) {
            int o = (start + j * 3) % N_OPTS; /* distinct as gcd(3,10)=1 */
            double loss = base * pow(2.0, -OPTS[o].w) * (1 + 0.5 * unif(r)) + (OPTS[o].a < 16 ? base * 0.01 * (16 - OPTS[o].a) * unif(r) : 0);
            int64_t sb = unif(r) < 0.2 ? params * OPTS[o].w + 32 * irange(r, 1, 4) : 0;
            if (aq_alloc_table_add(t, name, OPTS[o].name, params, OPTS[o].w, OPTS[o].a, macs, loss, sb, 0, &err))
                fprintf(stderr, "gen: %s\n", err.msg), aq_test_failures++;
        }
    }
}

/* Independent recomputation: the chosen row of each layer, totals, budgets. */
static void check_solution(const aq_alloc_table *t, const aq_alloc_solution *s, const aq_alloc_spec *sp,
                           double exact_obj)
{
    int64_t size = 0, bops = 0;
    double loss = 0;
    for (size_t l = 0; l < s->n_layers; l++) {
        const aq_alloc_row *r = &t->rows[s->row[l]];
        CHECK(!strcmp(r->layer, s->layer[l]));
        size += r->size_bits ? r->size_bits : r->params * r->w_bits;
        bops += r->macs * r->w_bits * r->a_bits;
        loss += r->loss;
    }
    CHECK(size == s->size_bits);
    CHECK(bops == s->bops);
    /* the same <= 64 doubles summed in another order: <= 64 * 1.1e-16 */
    CHECK_CLOSE(loss, s->loss, 1e-12);
    if (s->size_budget_bits >= 0) CHECK(size <= s->size_budget_bits);
    if (sp->has_max_bops) CHECK((double)bops <= sp->max_bops);
    /* the budget is met up to the summation rounding above (1e-9 is wide) */
    if (sp->objective == AQ_ALLOC_MIN_SIZE) CHECK(loss <= sp->max_loss * (1 + 1e-9));
    double obj = sp->objective == AQ_ALLOC_MIN_SIZE ? (double)size : loss;
    CHECK_CLOSE(obj, s->objective, 1e-12); /* summation order, as above */
    CHECK(s->status == AQ_ALLOC_OPTIMAL);
    /* the exact optimum of the same doubles: equal but for summation order
     * (and a tie broken another way, which has the same value) */
    if (fabs(obj - exact_obj) > 1e-9 * fabs(exact_obj) + 1e-300)
        CHECK_MSG(0, "CBC objective %.15g != exact %.15g", obj, exact_obj);
    CHECK(s->bound <= s->objective * (1 + 1e-9) + 1e-300); /* CBC's bound: summation rounding */
    /* pins: every layer matching a --keep pattern has that option */
    for (size_t k = 0; k < sp->n_keep; k++) {
        regex_t re;
        regcomp(&re, sp->keep[k].regex, REG_EXTENDED);
        for (size_t l = 0; l < s->n_layers; l++)
            if (!regexec(&re, s->layer[l], 0, NULL, 0)) CHECK(!strcmp(t->rows[s->row[l]].option, sp->keep[k].option));
        regfree(&re);
    }
    /* ties used here: q and k of each block the same option; all of a block the same a_bits */
    for (size_t l = 0; l < s->n_layers; l++)
        for (size_t m = 0; m < s->n_layers; m++) {
            const aq_alloc_row *a = &t->rows[s->row[l]], *b = &t->rows[s->row[m]];
            int blk_a, blk_b;
            char ka, kb;
            sscanf(a->layer, "blk.%d.%c", &blk_a, &ka);
            sscanf(b->layer, "blk.%d.%c", &blk_b, &kb);
            if (blk_a != blk_b) continue;
            if (sp->n_tie && (ka == 'q' || ka == 'k') && (kb == 'q' || kb == 'k')) CHECK(!strcmp(a->option, b->option));
            if (sp->n_tie_act) CHECK(a->a_bits == b->a_bits);
        }
}

/* One random spec on t, solved both ways (with and without presolve) and exactly. */
static void one_case(rng *r, const aq_alloc_table *t, int objective, int with_bops, int rules, int method,
                     int *n_infeasible)
{
    aq_error err = {0};
    aq_alloc_spec sp = {0};
    static const char *const tie[] = {"^blk\\.([0-9]+)\\.[qk]$"};
    static const char *const tie_act[] = {"^blk\\.([0-9]+)\\."};
    aq_alloc_rule keep[1] = {{"^blk\\.0\\.o$", NULL}};
    aq_alloc_rule excl[1] = {{"\\.v$", "w2a16"}};
    if (rules & 1) sp.tie = tie, sp.n_tie = 1;
    if (rules & 2) sp.tie_act = tie_act, sp.n_tie_act = 1;
    if (rules & 4) { /* pin blk.0.o (if present) to one of its options */
        for (size_t i = 0; i < t->n_rows; i++)
            if (!strcmp(t->rows[i].layer, "blk.0.o")) keep[0].option = t->rows[i].option;
        if (keep[0].option) sp.keep = keep, sp.n_keep = 1;
    }
    if (rules & 8) sp.exclude = excl, sp.n_exclude = 1;
    /* Reference extremes (no budgets) to pick budgets inside the interesting range. */
    aq_alloc_exact_result ex;
    sp.objective = AQ_ALLOC_MIN_LOSS;
    aq_status st = aq_alloc_exact(t, &sp, method, 5e7, &ex, &err);
    if (st == AQ_ERR_ARG && strstr(err.msg, "pattern matches no layer")) return; /* rule not applicable */
    if (st != AQ_OK) { /* a legitimate conflict: both must report it */
        aq_alloc_solution s;
        aq_error e2 = {0};
        CHECK(aq_alloc_solve(t, &sp, &s, &e2) == st);
        return;
    }
    int64_t tp = aq_alloc_total_params(t, &err);
    double frac = unif(r) * 1.2 - 0.1; /* ~1/12 of the cases are infeasible */
    sp.objective = objective;
    if (objective == AQ_ALLOC_MIN_LOSS) {
        double max_size = 16.0 * (double)tp + 1e6;
        sp.size_unit = AQ_SIZE_AVG_BITS;
        sp.size_budget = frac > 0 ? (ex.min_size_any + frac * (max_size * 0.4 - ex.min_size_any)) / (double)tp
                                  : ex.min_size_any * (0.7 + 0.29 * unif(r)) / (double)tp;
    } else {
        double worst = 0;
        for (size_t i = 0; i < t->n_rows; i++) worst += t->rows[i].loss;
        sp.max_loss = ex.min_loss + fmax(frac, -0.05) * (worst * 0.3 - ex.min_loss);
        if (sp.max_loss < 0) sp.max_loss = ex.min_loss * 0.5;
    }
    if (with_bops) {
        aq_alloc_spec s2 = sp;
        s2.has_max_bops = 1, s2.max_bops = 1e18;
        aq_alloc_exact_result e2;
        CHECK_OK(aq_alloc_exact(t, &s2, method, 5e7, &e2, &err), &err);
        sp.has_max_bops = 1;
        sp.max_bops = floor(e2.min_bops * (1.0 + 1.5 * unif(r)));
    }
    CHECK_OK(aq_alloc_exact(t, &sp, method, 5e7, &ex, &err), &err);
    for (int pre = 0; pre < 2; pre++) {
        sp.no_presolve = pre;
        aq_alloc_solution s;
        aq_error e = {0};
        st = aq_alloc_solve(t, &sp, &s, &e);
        if (ex.feasible) {
            CHECK_MSG(st == AQ_OK, "exact finds a solution but solve says: %s", e.msg);
            if (st == AQ_OK) check_solution(t, &s, &sp, ex.objective);
        } else {
            CHECK_MSG(st == AQ_ERR_INFEASIBLE, "expected infeasible, got %d (%s)", (int)st, e.msg);
            if (st != AQ_ERR_INFEASIBLE) continue;
            (*n_infeasible)++;
            /* The named minimum budget must be the exact one. */
            if (s.infeasible == AQ_BUDGET_SIZE) {
                double want = sp.has_max_bops && ex.min_size_any <= (double)s.size_budget_bits ? ex.min_size : ex.min_size_any;
                CHECK_MSG(fabs(s.min_feasible_raw - want) < 0.5, "min size %.0f vs exact %.0f", s.min_feasible_raw, want);
                CHECK_CLOSE(s.min_feasible, s.min_feasible_raw / (double)tp, 1e-12); /* one division */
                CHECK(strstr(e.msg, "bits/weight") != NULL);
            } else if (s.infeasible == AQ_BUDGET_BOPS) {
                CHECK_MSG(fabs(s.min_feasible_raw - ex.min_bops) < 0.5, "min bops %.0f vs %.0f", s.min_feasible_raw, ex.min_bops);
            } else if (s.infeasible == AQ_BUDGET_LOSS) {
                CHECK(sp.objective == AQ_ALLOC_MIN_SIZE);
                CHECK_CLOSE(s.min_feasible_raw, ex.min_loss, 1e-9); /* summation order of <= 64 doubles */
                CHECK(ex.min_loss > sp.max_loss);
            } else
                CHECK_MSG(0, "infeasible without a named budget: %s", e.msg);
        }
        aq_alloc_solution_free(&s);
    }
}

static void random_cases(void)
{
    rng r = {12345};
    int n_inf = 0, n = 0;
    for (int it = 0; it < 240; it++) { /* tiny: enumeration */
        aq_alloc_table t;
        aq_alloc_table_init(&t);
        gen_table(&r, &t, irange(&r, 1, 7), 1, 5, 64, it % 3 == 0 ? 1e-6 : 1.0);
        one_case(&r, &t, it % 2, (it / 2) % 2, (it / 4) % 16, AQ_EXACT_BRUTE, &n_inf);
        aq_alloc_table_free(&t);
        n++;
    }
    /* under ASan the DP's large tables cost 5x (28 s): a third of them there */
    for (int it = 0; it < (AQ_TEST_SANITIZED ? 20 : 60); it++) { /* larger: DP */
        aq_alloc_table t;
        aq_alloc_table_init(&t);
        int bops = it % 5 == 0; /* the 2-D DP only on smaller instances */
        gen_table(&r, &t, bops ? irange(&r, 8, 12) : irange(&r, 20, it % 4 == 0 ? 120 : 40), 3, 8, 64,
                  it % 3 == 0 ? 1e-6 : 1.0);
        one_case(&r, &t, it % 2, bops, (it / 2) % 16, AQ_EXACT_DP, &n_inf);
        aq_alloc_table_free(&t);
        n++;
    }
    printf("random: %d instances, %d infeasible solves checked\n", n, n_inf);
    CHECK(n_inf >= 10);
}

/* Brute force and DP agree (two exact algorithms). */
static void exact_agree(void)
{
    rng r = {777};
    for (int it = 0; it < 60; it++) {
        aq_alloc_table t;
        aq_alloc_table_init(&t);
        gen_table(&r, &t, irange(&r, 1, 6), 1, 5, 32, 1.0);
        aq_alloc_spec sp = {0};
        static const char *const tie_act[] = {"^blk\\.([0-9]+)\\."};
        if (it % 3 == 0) sp.tie_act = tie_act, sp.n_tie_act = 1;
        sp.objective = it % 2;
        sp.size_unit = AQ_SIZE_AVG_BITS;
        sp.size_budget = 3 + 4 * unif(&r);
        sp.max_loss = unif(&r) * 0.1;
        if (it % 4 < 2) sp.has_max_bops = 1, sp.max_bops = 1e4 * irange(&r, 1, 50);
        aq_alloc_exact_result a, b;
        aq_error err = {0}, err2 = {0};
        aq_status s1 = aq_alloc_exact(&t, &sp, AQ_EXACT_BRUTE, 1e8, &a, &err);
        aq_status s2 = aq_alloc_exact(&t, &sp, AQ_EXACT_DP, 1e8, &b, &err2);
        CHECK(s1 == s2);
        if (s1 != AQ_OK) { /* a tie-act conflict: both must say so */
            CHECK(strstr(err.msg, "no common activation width") != NULL);
            aq_alloc_table_free(&t);
            continue;
        }
        CHECK(a.feasible == b.feasible);
        if (a.feasible && b.feasible) CHECK_CLOSE(a.objective, b.objective, 1e-12); /* summation order */
        CHECK(a.min_size_any == b.min_size_any);
        aq_alloc_table_free(&t);
    }
}

/* Bench-like tables (two layer shapes, 12 options, log-normal loss scales):
 * the regime where the presolve and its incumbent search do the work. */
static void make_shaped(rng *r, aq_alloc_table *t, int n)
{
    static const int wb[] = {2, 3, 4, 5, 6, 8};
    aq_error err = {0};
    for (int l = 0; l < n; l++) {
        char name[64], opt[16];
        snprintf(name, sizeof name, "blk.%d.%c", l / 4, "qkvo"[l % 4]);
        int64_t params = l % 3 == 2 ? 43 * 64 : 16 * 64;
        double c = exp(3.2 * (unif(r) - 0.5)) * 0.5;
        for (int a = 0; a < 2; a++)
            for (int w = 0; w < 6; w++) {
                int ab = a ? 8 : 16;
                double loss = c * pow(4.0, -wb[w]) * (1 + 0.2 * unif(r)) + (ab == 8 ? c * 2e-4 * (1 + unif(r)) : 0);
                snprintf(opt, sizeof opt, "w%da%d", wb[w], ab);
                if (aq_alloc_table_add(t, name, opt, params, wb[w], ab, params * 8, loss, 0, 0, &err))
                    fprintf(stderr, "%s\n", err.msg), aq_test_failures++;
            }
    }
}

static void shaped_cases(void)
{
    rng r = {99};
    for (int it = 0; it < (AQ_TEST_SANITIZED ? 4 : 8); it++) {
        aq_alloc_table t;
        aq_alloc_table_init(&t);
        make_shaped(&r, &t, 90 + 15 * (it % 6));
        aq_alloc_spec sp = {.objective = it % 2, .size_unit = AQ_SIZE_AVG_BITS, .size_budget = 3.3 + 0.4 * it};
        if (it % 2) sp.size_unit = AQ_SIZE_NONE, sp.max_loss = 0.02 + 0.01 * it;
        static const char *const tie_act[] = {"^blk\\.([0-9]+)\\."};
        if (it >= 2) sp.tie_act = tie_act, sp.n_tie_act = 1; /* the tie-act presolve path */
        aq_alloc_exact_result ex;
        aq_error err = {0};
        CHECK_OK(aq_alloc_exact(&t, &sp, AQ_EXACT_DP, 1e8, &ex, &err), &err);
        CHECK(ex.feasible);
        aq_alloc_solution s;
        CHECK_OK(aq_alloc_solve(&t, &sp, &s, &err), &err);
        if (ex.feasible && s.n_layers) {
            check_solution(&t, &s, &sp, ex.objective);
            if (!sp.n_tie_act) CHECK(s.core_layers < s.n_layers); /* the presolve fixed layers */
            aq_alloc_solution_free(&s);
        }
        aq_alloc_table_free(&t);
    }
}

/* A time limit on the whole model: whatever CBC returns must be feasible, and a
 * non-optimal status must come with a positive gap and a valid bound. */
static void time_limit_case(void)
{
    rng r = {5};
    aq_alloc_table t;
    aq_alloc_table_init(&t);
    make_shaped(&r, &t, 1500);
    aq_alloc_spec sp = {.size_unit = AQ_SIZE_AVG_BITS, .size_budget = 4.25, .no_presolve = 1, .time_limit = 0.3};
    aq_alloc_solution s;
    aq_error err = {0};
    aq_status st = aq_alloc_solve(&t, &sp, &s, &err);
    CHECK_MSG(st == AQ_OK || st == AQ_ERR_SOLVER, "%s", err.msg); /* no solution in time: a solver error */
    if (st != AQ_OK) printf("time limit case: %s\n", err.msg);
    if (st == AQ_OK) {
        CHECK(s.size_bits <= s.size_budget_bits);
        CHECK(s.bound <= s.objective * (1 + 1e-12)); /* summation order */
        if (s.status == AQ_ALLOC_FEASIBLE) CHECK(s.gap > 0);
        printf("time limit case: status %d, gap %g, %.2f s\n", (int)s.status, s.gap, s.seconds);
        CHECK(s.seconds < 30); /* the limit is 0.3 s; generous for loaded or sanitized runs */
        aq_alloc_solution_free(&s);
    }
    aq_alloc_table_free(&t);
}

/* Sweeps: each point's loss is the exact optimum for its budget; infeasible
 * budgets are recorded with the exact smallest feasible budget. */
static void sweep_case(void)
{
    rng r = {31};
    aq_alloc_table t;
    aq_alloc_table_init(&t);
    gen_table(&r, &t, 6, 3, 5, 64, 1.0);
    aq_alloc_spec sp = {0};
    aq_alloc_sweep sw;
    aq_error err = {0};
    CHECK_OK(aq_alloc_sweep_run(&t, &sp, 1.0, 9.0, 0.25, &sw, &err), &err);
    CHECK(sw.n == 33);
    int64_t tp = aq_alloc_total_params(&t, &err);
    aq_alloc_exact_result ex;
    CHECK_OK(aq_alloc_exact(&t, &sp, AQ_EXACT_BRUTE, 1e8, &ex, &err), &err);
    CHECK_CLOSE(sw.min_feasible, ex.min_size_any / (double)tp, 1e-12); /* one division */
    double prev = INFINITY;
    for (size_t i = 0; i < sw.n; i++) {
        aq_alloc_spec s1 = {.size_unit = AQ_SIZE_AVG_BITS, .size_budget = sw.pt[i].budget};
        CHECK_OK(aq_alloc_exact(&t, &s1, AQ_EXACT_BRUTE, 1e8, &ex, &err), &err);
        CHECK(sw.pt[i].feasible == ex.feasible);
        if (!ex.feasible) continue;
        CHECK_CLOSE(sw.pt[i].loss, ex.objective, 1e-12); /* summation order */
        CHECK(sw.pt[i].loss <= prev);
        if (sw.pt[i].pareto) CHECK(sw.pt[i].loss < prev);
        prev = sw.pt[i].loss;
    }
    long k = aq_alloc_sweep_knee(&sw);
    CHECK(k >= 0 && sw.pt[k].pareto);
    aq_alloc_sweep_free(&sw);
    aq_alloc_table_free(&t);
}

int main(void)
{
    exact_agree();
    random_cases();
    shaped_cases();
    sweep_case();
    time_limit_case();
    AQ_TEST_END();
}
