/* test_svg.c — the plots of the allocation report (solver/svg.c):
 *   ticks   the round tick chooser against hand-computed axes, and on random
 *           ranges against a brute-force search over every 1/2/2.5/5 x 10^k
 *           step (the chosen step is the smallest that fits);
 *   grid    layer names -> blocks x linear types, and the names it refuses;
 *   files   writes pareto.svg, bits_small.svg (35 layers: bars) and
 *           bits_1000.svg (143 blocks x 7 types minus one = 1,000 layers:
 *           heat map) into DIR (argv[1], else a fresh temporary directory)
 *           for tests/test_svg.py, which parses them and checks the geometry.
 * Here: the heat-map file has one cell per layer and the bar file one bar. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../solver/report.h"
#include "../solver/svg.h"
#include "testutil.h"

static void expect_ticks(double lo, double hi, int maxn, int integer, double step, double alo, double ahi, int n,
                         const char *first, const char *last)
{
    aq_svg_ticks t;
    aq_svg_ticks_choose(lo, hi, maxn, integer, &t);
    char a[48], b[48];
    aq_svg_tick_label(&t, 0, a, sizeof a);
    aq_svg_tick_label(&t, t.n, b, sizeof b);
    /* the values are products of small integers and a power of ten: equal to
     * the decimal expectation within a few ulps (1e-12 relative) */
    CHECK_MSG(fabs(t.step - step) <= 1e-12 * step && fabs(t.lo - alo) <= 1e-12 * fmax(1, fabs(alo)) &&
                  fabs(t.hi - ahi) <= 1e-12 * fmax(1, fabs(ahi)) && t.n == n && !strcmp(a, first) && !strcmp(b, last),
              "[%g, %g] max %d: step %g axis %g..%g n %d labels %s..%s; expected step %g axis %g..%g n %d %s..%s", lo, hi,
              maxn, t.step, t.lo, t.hi, t.n, a, b, step, alo, ahi, n, first, last);
}

static void test_ticks(void)
{
    /* 0..7.3 on a 610 px axis (8 intervals of >= 75 px): step 1; 0.5 needs
     * 15 intervals. The axis ends at the round 8. */
    expect_ticks(0, 7.3, 8, 0, 1, 0, 8, 8, "0", "8");
    /* 0..0.37 on a 340 px axis (4 intervals): 0.05 needs 8, 0.1 needs 4 */
    expect_ticks(0, 0.37, 4, 0, 0.1, 0, 0.4, 4, "0.0", "0.4");
    /* 3.1..3.9 with 4 intervals: 0.1 needs 8, 0.2 needs 20 - 15 = 5, 0.25
     * needs 16 - 12 = 4 (axis 3.00..4.00): the 2.5 family earns its place */
    expect_ticks(3.1, 3.9, 4, 0, 0.25, 3.0, 4.0, 4, "3.00", "4.00");
    /* ... and with 8 intervals the data ends are themselves round */
    expect_ticks(3.1, 3.9, 8, 0, 0.1, 3.1, 3.9, 8, "3.1", "3.9");
    /* block indices 0..142: 10 needs 15 intervals, 20 needs 8 */
    expect_ticks(0, 142, 8, 1, 20, 0, 160, 8, "0", "160");
    /* integer axes never step by 2.5 or by less than 1 */
    expect_ticks(0, 9, 4, 1, 5, 0, 10, 2, "0", "10");
    expect_ticks(0, 2, 8, 1, 1, 0, 2, 2, "0", "2");
    /* 0..1234 with 5: 200 needs 7, 250 needs 5 */
    expect_ticks(0, 1234, 5, 0, 250, 0, 1250, 5, "0", "1250");
    /* negative: 0.25 needs 2 - (-3) = 5, 0.5 needs 1 - (-2) = 3 */
    expect_ticks(-0.7, 0.3, 4, 0, 0.5, -1.0, 0.5, 3, "-1.0", "0.5");
    /* tiny losses print as %g */
    expect_ticks(0, 3.7e-5, 4, 0, 1e-5, 0, 4e-5, 4, "0", "4e-05");
    /* a single value gets a unit-wide axis around it; reversed ends swap */
    expect_ticks(5, 5, 4, 0, 0.25, 4.5, 5.5, 4, "4.50", "5.50");
    expect_ticks(0.37, 0, 4, 0, 0.1, 0, 0.4, 4, "0.0", "0.4");
    aq_svg_ticks t;
    aq_svg_ticks_choose(0, 0.37, 4, 0, &t);
    char lab[48];
    aq_svg_tick_label(&t, 3, lab, sizeof lab);
    CHECK_MSG(!strcmp(lab, "0.3"), "tick 3 of 0..0.4 is '%s'", lab); /* not 0.30000000000000004 */

    /* brute force: over every step m x 10^k (k in -8..8), the chosen one is
     * the smallest whose rounded axis has <= max intervals, and it covers
     * the data */
    uint64_t rng = 12345;
    static const double mant[] = {1, 2, 2.5, 5};
    for (int it = 0; it < 2000; it++) {
        double scale = pow(10.0, floor(aq_test_urand(&rng) * 8) - 4);
        double lo = (aq_test_urand(&rng) - 0.3) * scale, hi = lo + aq_test_urand(&rng) * scale * 3;
        int maxn = 1 + (int)(aq_test_urand(&rng) * 10);
        aq_svg_ticks_choose(lo, hi, maxn, 0, &t);
        double best = INFINITY;
        for (int k = -8; k <= 8; k++)
            for (int m = 0; m < 4; m++) {
                double s = mant[m] * pow(10.0, k);
                if (ceil(hi / s - 1e-9) - floor(lo / s + 1e-9) <= maxn && s < best) best = s;
            }
        CHECK_MSG(fabs(t.step - best) <= 1e-12 * best, "[%g, %g] max %d: step %g, brute force %g", lo, hi, maxn,
                  t.step, best);
        /* covers the data up to the 1e-9-of-a-step snapping */
        CHECK_MSG(t.lo <= lo + 1e-9 * t.step && t.hi >= hi - 1e-9 * t.step && t.n <= maxn && t.n >= 1,
                  "[%g, %g]: axis %g..%g n %d", lo, hi, t.lo, t.hi, t.n);
    }
}

static void test_grid(void)
{
    const char *ok[] = {"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj", "model.layers.2.self_attn.q_proj",
                        "model.layers.10.mlp.up_proj"};
    aq_svg_grid g;
    CHECK(aq_svg_grid_build(ok, 4, &g) == 0);
    CHECK(g.n_blocks == 11 && g.n_types == 2);
    CHECK(g.block[3] == 10 && g.type[3] == 1 && g.type[2] == 0);
    CHECK(g.n_types == 2 && !strcmp(g.type_name[0], "self_attn.q_proj") && !strcmp(g.type_name[1], "mlp.up_proj"));
    aq_svg_grid_free(&g);
    const char *dup[] = {"blk.1.q", "blk.1.q"};
    CHECK(aq_svg_grid_build(dup, 2, &g) == -1 && g.block == NULL);
    const char *prefix[] = {"a.layers.1.q", "b.layers.1.q"};
    CHECK(aq_svg_grid_build(prefix, 2, &g) == -1);
    const char *noblock[] = {"blk.1.q", "lm_head"};
    CHECK(aq_svg_grid_build(noblock, 2, &g) == -1);
}

static const char *const TYPES[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                     "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
static const char *const OPTS[4] = {"w8a16", "w4a16", "w3a16", "w4a8"};
static const int OPT_W[4] = {8, 4, 3, 4}, OPT_A[4] = {16, 16, 16, 8};

/* blocks x 7 layers (minus the last `drop`), 4 options each; the solution
 * picks option (block + type) % 4. */
static void make(int blocks, int drop, aq_alloc_table *t, aq_alloc_solution *s)
{
    aq_error err = {0};
    aq_alloc_table_init(t);
    memset(s, 0, sizeof *s);
    size_t n = (size_t)blocks * 7 - (size_t)drop;
    s->layer = calloc(n, sizeof *s->layer);
    s->row = calloc(n, sizeof *s->row);
    int64_t bits = 0, params = 0;
    for (size_t l = 0; l < n; l++) {
        char name[96];
        int b = (int)(l / 7), k = (int)(l % 7);
        snprintf(name, sizeof name, "model.layers.%d.%s", b, TYPES[k]);
        int64_t p = k < 4 ? 4096 : 11008;
        for (int o = 0; o < 4; o++)
            CHECK_OK(aq_alloc_table_add(t, name, OPTS[o], p, OPT_W[o], OPT_A[o], p, 0.001 * (4 - o), 0, 0, &err), &err);
        int o = (b + k) % 4;
        s->layer[l] = strdup(name);
        s->row[l] = l * 4 + (size_t)o;
        bits += p * OPT_W[o], params += p;
    }
    s->n_layers = n;
    s->total_params = params, s->size_bits = bits;
    s->avg_bits = (double)bits / (double)params;
    s->loss = 0.123;
}

static FILE *open_out(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w+");
    CHECK_MSG(f != NULL, "cannot write %s", path);
    return f;
}

static int count(FILE *f, const char *needle)
{
    rewind(f);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f))
        for (const char *p = line; (p = strstr(p, needle)); p++) n++;
    return n;
}

static void test_files(const char *dir)
{
    /* a sweep from 3 to 8 bits: loss halves per bit, every third budget a
     * dominated point above the curve; the high-loss end sits in the top
     * left corner, where an in-plot legend used to go */
    aq_alloc_sweep sw = {0};
    sw.n = 21;
    sw.pt = calloc(sw.n, sizeof *sw.pt);
    for (size_t i = 0; i < sw.n; i++) {
        aq_alloc_point *p = &sw.pt[i];
        p->budget = 3 + 0.25 * (double)i;
        p->feasible = 1;
        p->avg_bits = p->budget;
        p->loss = 0.37 * pow(0.5, p->budget - 3) * (i % 3 == 2 ? 1.4 : 1.0);
        p->pareto = i % 3 != 2;
    }
    aq_alloc_solution chosen = {0};
    chosen.avg_bits = 4.5, chosen.loss = sw.pt[6].loss;
    FILE *f = open_out(dir, "pareto.svg");
    if (f) {
        aq_alloc_write_sweep_svg(f, &sw, &chosen);
        CHECK(count(f, "<circle") == 21 + 1 + 3); /* points, chosen ring, 3 legend symbols */
        fclose(f);
    }
    free(sw.pt);

    aq_alloc_table t;
    aq_alloc_solution s;
    make(5, 0, &t, &s); /* stories260K's shape: 35 layers -> bars */
    if ((f = open_out(dir, "bits_small.svg"))) {
        aq_alloc_write_bits_svg(f, &t, &s);
        CHECK(count(f, "class=\"bar\"") == 35 && count(f, "class=\"cell\"") == 0);
        fclose(f);
    }
    aq_alloc_solution_free(&s);
    aq_alloc_table_free(&t);

    make(143, 1, &t, &s); /* 1,000 layers -> heat map */
    CHECK(s.n_layers == 1000);
    if ((f = open_out(dir, "bits_1000.svg"))) {
        aq_alloc_write_bits_svg(f, &t, &s);
        CHECK(count(f, "class=\"cell\"") == 1000 && count(f, "class=\"bar\"") == 0);
        /* w4a8 = option 3, chosen when (b + k) % 4 == 3: counted by hand
         * below, one marker each */
        int want = 0;
        for (int l = 0; l < 1000; l++) want += (l / 7 + l % 7) % 4 == 3;
        CHECK(count(f, "class=\"actq\"") == want);
        fclose(f);
    }
    aq_alloc_solution_free(&s);
    aq_alloc_table_free(&t);

    /* 100 layers without block structure (over the bar threshold, no grid):
     * unlabelled bars */
    aq_error err = {0};
    aq_alloc_table_init(&t);
    memset(&s, 0, sizeof s);
    s.n_layers = 100;
    s.layer = calloc(100, sizeof *s.layer);
    s.row = calloc(100, sizeof *s.row);
    for (size_t l = 0; l < 100; l++) {
        char name[32];
        snprintf(name, sizeof name, "conv%zu", l);
        CHECK_OK(aq_alloc_table_add(&t, name, "w4a16", 100, 4, 16, 100, 0.1, 0, 0, &err), &err);
        s.layer[l] = strdup(name);
        s.row[l] = l;
    }
    s.avg_bits = 4;
    if ((f = open_out(dir, "bits_flat.svg"))) {
        aq_alloc_write_bits_svg(f, &t, &s);
        CHECK(count(f, "class=\"bar\"") == 100 && count(f, "rotate(-60") == 0);
        fclose(f);
    }
    aq_alloc_solution_free(&s);
    aq_alloc_table_free(&t);
}

int main(int argc, char **argv)
{
    test_ticks();
    test_grid();
    char *tmp = argc > 1 ? NULL : aq_test_tmpdir("svg");
    test_files(argc > 1 ? argv[1] : tmp);
    free(tmp);
    AQ_TEST_END();
}
