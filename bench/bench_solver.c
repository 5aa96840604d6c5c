/* bench_solver.c — time to proven optimality of the bit-allocation program
 * for 100, 1,000 and 10,000 layers x 12 options (w2..w8 x a8/a16) with
 * realistic loss tables: Llama-7B-shaped layers (q/k/v/o 4096x4096,
 * gate/up/down 4096x11008), loss ~ c_l * 4^-w_bits (quantization MSE) with
 * 20% noise, plus an activation term for a8; c_l log-normal over 3 decades.
 * Rows: CBC after the exact presolve (the default), CBC on the whole model
 * (--no-presolve, time-limited), and the exact DP (solver/exact.h) as the
 * in-run baseline (skipped above ~2e10 cell updates, with an estimate).
 * usage: bench_solver [max_layers] [cbc_only_time_limit_s] [presolve_time_limit_s] [max_dp_work]
 * (defaults 10000, 20, none, 2e10: the 10,000-layer DP, ~2.2e11 cell updates
 * or several minutes, runs only when max_dp_work is raised). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../solver/allocate.h"
#include "../solver/exact.h"
#include "benchutil.h"

static uint64_t rs = 42;
static double unif(void)
{
    uint64_t z = (rs += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}
static double gauss(void)
{
    return sqrt(-2 * log(1 - unif())) * cos(6.283185307179586 * unif());
}

static void make_table(aq_alloc_table *t, int n)
{
    static const char *const kind[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    static const int wb[] = {2, 3, 4, 5, 6, 8};
    aq_error err = {0};
    for (int l = 0; l < n; l++) {
        char name[96], opt[16];
        int k = l % 7;
        snprintf(name, sizeof name, "model.layers.%d.%s.%s", l / 7, k < 4 ? "self_attn" : "mlp", kind[k]);
        int64_t params = k < 4 ? 4096LL * 4096 : 4096LL * 11008;
        double c = exp(gauss() * 1.6) * 0.5; /* ~3 decades across layers */
        for (int a = 0; a < 2; a++)
            for (int w = 0; w < 6; w++) {
                int ab = a ? 8 : 16;
                double loss = c * pow(4.0, -wb[w]) * (1 + 0.2 * unif()) + (ab == 8 ? c * 2e-4 * (1 + unif()) : 0);
                snprintf(opt, sizeof opt, "w%da%d", wb[w], ab);
                if (aq_alloc_table_add(t, name, opt, params, wb[w], ab, params * 2048, loss, 0, 0, &err)) {
                    fprintf(stderr, "%s\n", err.msg);
                    exit(1);
                }
            }
    }
}

static void row(int n, const char *mode, double sec, const char *status, double gap, double obj, const char *note)
{
    printf("%7d  %7d  %-22s  %9.4f  %-10s  %8.2g  %-22.15g  %s\n", n, 12, mode, sec, status, gap, obj, note);
}

int main(int argc, char **argv)
{
    int max_layers = argc > 1 ? atoi(argv[1]) : 10000;
    double cbc_only_limit = argc > 2 ? atof(argv[2]) : 20;
    double max_dp_work = argc > 4 ? atof(argv[4]) : 2e10;
    printf("bit allocation: min loss s.t. size <= 4.25 bits/weight (and a BOPs variant), one core\n");
    printf("%7s  %7s  %-22s  %9s  %-10s  %8s  %-22s  %s\n", "layers", "options", "solver", "seconds", "status", "gap",
           "objective", "note");
    for (int n = 100; n <= max_layers; n *= 10) {
        aq_alloc_table t;
        aq_alloc_table_init(&t);
        make_table(&t, n);
        aq_alloc_spec sp = {.objective = AQ_ALLOC_MIN_LOSS, .size_unit = AQ_SIZE_AVG_BITS, .size_budget = 4.25};
        aq_alloc_solution s;
        aq_error err = {0};
        char note[128];
        double ref = NAN;
        for (int pre = 0; pre < 2; pre++) {
            sp.no_presolve = pre;
            sp.time_limit = pre ? cbc_only_limit : (argc > 3 ? atof(argv[3]) : 0);
            if (aq_alloc_solve(&t, &sp, &s, &err) != AQ_OK) {
                printf("%7d  solve failed: %s\n", n, err.msg);
                continue;
            }
            snprintf(note, sizeof note, pre ? "whole model to CBC" : "core: %zu of %d layers to CBC", s.core_layers, n);
            row(n, pre ? "CBC only" : "presolve + CBC", s.seconds, s.status == AQ_ALLOC_OPTIMAL ? "optimal" : "time-limit",
                s.gap, s.objective, note);
            if (!pre) ref = s.objective;
            aq_alloc_solution_free(&s);
        }
        /* exact DP baseline: cells ~ sum of size spans / GCD; work ~ cells * options * layers */
        double est = (double)n * 6.0 * 43 /* span per layer in GCD units (gate/up/down) */ * 12 * n * 0.7;
        if (est < max_dp_work) {
            aq_alloc_exact_result ex;
            double t0 = aq_bench_wall_seconds();
            if (aq_alloc_exact(&t, &sp, AQ_EXACT_DP, 1e10, &ex, &err) != AQ_OK) printf("%7d  exact failed: %s\n", n, err.msg);
            else {
                double dt = aq_bench_wall_seconds() - t0;
                snprintf(note, sizeof note, "%.3g cell updates; %s", ex.work,
                         fabs(ex.objective - ref) <= 1e-9 * fabs(ref) ? "matches CBC" : "MISMATCH");
                row(n, "exact DP (baseline)", dt, "optimal", 0, ex.objective, note);
            }
        } else {
            snprintf(note, sizeof note, "skipped: ~%.2g cell updates", est);
            row(n, "exact DP (baseline)", NAN, "-", NAN, NAN, note);
        }
        /* --tie-act: q/k/v and gate/up of each block share their input's activation width */
        static const char *const tie_act[] = {"layers\\.([0-9]+)\\.self_attn\\.[qkv]_proj",
                                              "layers\\.([0-9]+)\\.mlp\\.(gate|up)_proj"};
        sp.tie_act = tie_act, sp.n_tie_act = 2;
        sp.no_presolve = 0;
        sp.time_limit = argc > 3 ? atof(argv[3]) : 0;
        if (aq_alloc_solve(&t, &sp, &s, &err) == AQ_OK) {
            snprintf(note, sizeof note, "core: %zu units to CBC", s.core_layers);
            row(n, "+tie-act, CBC", s.seconds, s.status == AQ_ALLOC_OPTIMAL ? "optimal" : "time-limit", s.gap,
                s.objective, note);
            aq_alloc_solution_free(&s);
        } else
            printf("%7d  tie-act variant: %s\n", n, err.msg);
        sp.tie_act = NULL, sp.n_tie_act = 0;
        /* with a BOPs budget too (two budgets: dominance presolve only) */
        sp.no_presolve = 0;
        sp.time_limit = cbc_only_limit;
        sp.has_max_bops = 1;
        sp.max_bops = (double)n * 0.8 * 4096.0 * 8000 * 2048 * 4.25 * 12;
        if (aq_alloc_solve(&t, &sp, &s, &err) == AQ_OK) {
            snprintf(note, sizeof note, "BOPs %.3g of %.3g", (double)s.bops, sp.max_bops);
            row(n, "+BOPs budget, CBC", s.seconds, s.status == AQ_ALLOC_OPTIMAL ? "optimal" : "time-limit", s.gap,
                s.objective, note);
            aq_alloc_solution_free(&s);
        } else
            printf("%7d  BOPs variant: %s\n", n, err.msg);
        aq_alloc_table_free(&t);
    }
    return 0;
}
