/* test_solver_table.c — the allocation table and rules: CSV reading with
 * line-numbered errors, row validation, duplicate rows, rule conflicts
 * (tie vs pin, exclusions leaving no option, pins to missing options),
 * degenerate instances (one layer, one option) and hand-solved answers. */
#include <string.h>

#include "../solver/allocate.h"
#include "testutil.h"

static char *tmpdir;

/* Write text to tmpdir/name and read it as a table; returns the status. */
static aq_status read_text(const char *name, const char *text, aq_alloc_table *t, aq_error *err)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    aq_alloc_table_init(t);
    return aq_alloc_table_read_csv(path, t, err);
}

static void expect_csv_error(const char *name, const char *text, const char *needle1, const char *needle2)
{
    aq_alloc_table t;
    aq_error err = {0};
    aq_status st = read_text(name, text, &t, &err);
    if (st == AQ_OK) st = aq_alloc_table_check(&t, &err);
    CHECK_MSG(st != AQ_OK, "%s: accepted", name);
    CHECK_MSG(strstr(err.msg, needle1) != NULL, "%s: '%s' not in: %s", name, needle1, err.msg);
    if (needle2) CHECK_MSG(strstr(err.msg, needle2) != NULL, "%s: '%s' not in: %s", name, needle2, err.msg);
    aq_alloc_table_free(&t);
}

#define HDR "layer,option,params,w_bits,a_bits,macs,loss\n"

static void csv_errors(void)
{
    expect_csv_error("dup.csv", HDR "a,w4a16,100,4,16,10,0.5\nb,w4a16,100,4,16,10,0.5\n# comment\na,w4a16,100,4,16,10,0.7\n",
                     "line 2", "line 5");
    expect_csv_error("nan.csv", HDR "a,w4a16,100,4,16,10,0.5\na,w8a16,100,8,16,10,nan\n", "line 3", "NaN");
    expect_csv_error("neg.csv", HDR "a,w4a16,100,4,16,10,-0.5\n", "line 2", "negative");
    expect_csv_error("params.csv", HDR "a,w4a16,0,4,16,10,0.5\n", "line 2", "params");
    expect_csv_error("bits.csv", HDR "a,w1a16,100,1,16,10,0.5\n", "line 2", "w_bits 1");
    expect_csv_error("abits.csv", HDR "a,w4a32,100,4,32,10,0.5\n", "line 2", "a_bits 32");
    expect_csv_error("num.csv", HDR "\na,w4a16,100,4,16,10,0.5\nb,w4a16,12x,4,16,10,0.5\n", "line 4", "'12x'");
    expect_csv_error("short.csv", HDR "a,w4a16,100,4,16\n", "line 2", "fields");
    expect_csv_error("quote.csv", HDR "\"a,w4a16,100,4,16,10,0.5\n", "line 2", "unterminated");
    expect_csv_error("hdr.csv", "layer,option,params,w_bits,macs,loss\n", "line 1", "a_bits");
    expect_csv_error("empty.csv", "# nothing\n", "no header", NULL);
    expect_csv_error("inconsistent.csv", HDR "a,w4,100,4,16,10,0.5\nb,w4,100,4,8,10,0.5\n", "line 2", "line 3");
    expect_csv_error("params2.csv", HDR "a,w4a16,100,4,16,10,0.5\na,w8a16,200,8,16,10,0.1\n", "line 2", "line 3");
    /* A valid file: quoted names, CRLF, extra column, size_bits optional per row. */
    aq_alloc_table t;
    aq_error err = {0};
    CHECK_OK(read_text("ok.csv",
                       "note,loss,layer,option,params,w_bits,a_bits,macs,size_bits\r\n"
                       "x,0.25,\"blk.0,\"\"q\"\"\",w4a16,64,4,16,128,\r\n"
                       "x,0.125,\"blk.0,\"\"q\"\"\",w8a16,64,8,16,128,600\r\n",
                       &t, &err),
             &err);
    CHECK(t.n_rows == 2);
    if (t.n_rows == 2) {
        CHECK(!strcmp(t.rows[0].layer, "blk.0,\"q\""));
        CHECK(aq_alloc_row_size(&t.rows[0]) == 256);
        CHECK(aq_alloc_row_size(&t.rows[1]) == 600);
        CHECK(aq_alloc_row_bops(&t.rows[1]) == 128 * 8 * 16);
        CHECK(t.rows[1].line == 3);
    }
    aq_alloc_table_free(&t);
}

/* The in-memory API validates rows the same way. */
static void api_errors(void)
{
    aq_alloc_table t;
    aq_alloc_table_init(&t);
    aq_error err = {0};
    CHECK(aq_alloc_table_add(&t, "a", "w4", 10, 4, 16, 0, NAN, 0, 0, &err) == AQ_ERR_ARG);
    CHECK(strstr(err.msg, "NaN") && strstr(err.msg, "'a'"));
    CHECK(aq_alloc_table_add(&t, "a", "w4", 10, 4, 16, 0, -1e-3, 0, 0, &err) == AQ_ERR_ARG);
    CHECK(aq_alloc_table_add(&t, "a", "w4", 10, 4, 16, 0, INFINITY, 0, 0, &err) == AQ_ERR_ARG);
    CHECK(aq_alloc_table_add(&t, "a", "w4", -5, 4, 16, 0, 0.1, 0, 0, &err) == AQ_ERR_ARG);
    CHECK(aq_alloc_table_add(&t, "a", "w4", 10, 33, 16, 0, 0.1, 0, 0, &err) == AQ_ERR_ARG); /* w_bits 2..32 */
    CHECK(aq_alloc_table_add(&t, "a", "w4", 10, 4, 17, 0, 0.1, 0, 0, &err) == AQ_ERR_ARG);  /* a_bits 2..16 */
    CHECK(aq_alloc_table_add(&t, "", "w4", 10, 4, 16, 0, 0.1, 0, 0, &err) == AQ_ERR_ARG);
    CHECK(t.n_rows == 0);
    CHECK_OK(aq_alloc_table_add(&t, "a", "w4", 10, 4, 16, 0, 0.1, 0, 0, &err), &err);
    CHECK_OK(aq_alloc_table_add(&t, "a", "w4", 10, 4, 16, 0, 0.2, 0, 0, &err), &err);
    CHECK(aq_alloc_table_check(&t, &err) == AQ_ERR_ARG);
    aq_alloc_table t32;
    aq_alloc_table_init(&t32);
    CHECK_OK(aq_alloc_table_add(&t32, "e", "f32", 10, 32, 16, 0, 0, 0, 0, &err), &err); /* an embedding's f32 */
    CHECK(aq_alloc_row_size(&t32.rows[0]) == 320);
    aq_alloc_table_free(&t32);
    CHECK_MSG(strstr(err.msg, "row 1") && strstr(err.msg, "row 2"), "%s", err.msg);
    aq_alloc_solution s;
    aq_alloc_spec sp = {0};
    CHECK(aq_alloc_solve(&t, &sp, &s, &err) == AQ_ERR_ARG);
    aq_alloc_table_free(&t);
    CHECK(aq_alloc_solve(&t, &sp, &s, &err) == AQ_ERR_ARG); /* empty table */
}

static void add(aq_alloc_table *t, const char *layer, const char *opt, int64_t params, int w, int a, double loss)
{
    aq_error err = {0};
    CHECK_OK(aq_alloc_table_add(t, layer, opt, params, w, a, params, loss, 0, 0, &err), &err);
}

/* One layer; one option; and a 3-layer instance solved by hand. */
static void degenerate_and_known(void)
{
    aq_alloc_table t;
    aq_alloc_table_init(&t);
    aq_error err = {0};
    aq_alloc_solution s;
    add(&t, "only", "w4a16", 100, 4, 16, 0.3);
    aq_alloc_spec sp = {.objective = AQ_ALLOC_MIN_LOSS, .size_unit = AQ_SIZE_AVG_BITS, .size_budget = 4.0};
    CHECK_OK(aq_alloc_solve(&t, &sp, &s, &err), &err);
    CHECK(s.n_layers == 1 && s.row[0] == 0 && s.size_bits == 400 && s.loss == 0.3 && s.gap == 0);
    aq_alloc_solution_free(&s);
    sp.size_budget = 3.99;
    CHECK(aq_alloc_solve(&t, &sp, &s, &err) == AQ_ERR_INFEASIBLE);
    CHECK(s.infeasible == AQ_BUDGET_SIZE && s.min_feasible == 4.0);
    CHECK_MSG(strstr(err.msg, "3.99 bits/weight is infeasible") && strstr(err.msg, "4.0000 bits/weight"), "%s", err.msg);
    /* one layer, several options: the best that fits */
    add(&t, "only", "w8a16", 100, 8, 16, 0.01);
    add(&t, "only", "w2a16", 100, 2, 16, 0.9);
    sp.size_budget = 7.5;
    CHECK_OK(aq_alloc_solve(&t, &sp, &s, &err), &err);
    CHECK(s.row[0] == 0);
    aq_alloc_solution_free(&s);
    aq_alloc_table_free(&t);

    /* Hand-solved: a(100) b(100) c(200) weights; budget 4.5 bits/weight = 1800 bits.
     * Options: a: w2 .50 w4 .10 w8 .00 ; b: w2 .40 w4 .20 w8 .05 ; c: w2 .30 w4 .25 w8 .01
     * Enumerated by hand: best = a w4 (400) + b w8 (800)... must be <= 1800:
     *   a4 b4 c4: 400+400+800=1600, loss .55; a8 b4 c4: 2000 no; a4 b8 c4: 2000 no;
     *   a4 b4 c2: 1200 (.60); a8 b2 c4: 800+200+800=1800 loss .65; a2 b8 c4: 200+800+800 .80;
     *   a4 b8 c2: 400+800+400=1600 .45; a8 b4 c2: 800+400+400=1600 .50; a8 b8 c2: 2000 no;
     *   a2 b4 c8: 200+400+1600 no; a8 b2 c2: 1200 .70. Best: a4 b8 c2, loss 0.45. */
    aq_alloc_table_init(&t);
    const char *names[] = {"a", "b", "c"};
    const int64_t params[] = {100, 100, 200};
    const double loss[3][3] = {{.50, .10, .00}, {.40, .20, .05}, {.30, .25, .01}};
    const int bits[] = {2, 4, 8};
    const char *opt[] = {"w2a16", "w4a16", "w8a16"};
    for (int l = 0; l < 3; l++)
        for (int k = 0; k < 3; k++) add(&t, names[l], opt[k], params[l], bits[k], 16, loss[l][k]);
    sp.size_budget = 4.5;
    CHECK_OK(aq_alloc_solve(&t, &sp, &s, &err), &err);
    CHECK(s.row[0] == 1 && s.row[1] == 5 && s.row[2] == 6);
    CHECK_CLOSE(s.loss, 0.45, 1e-15); /* a sum of three decimals: a few ulps of 0.45 */
    CHECK(s.size_bits == 1600 && s.avg_bits == 4.0);
    aq_alloc_solution_free(&s);
    /* same budget as a fraction of FP32: 4.5/32 */
    sp.size_unit = AQ_SIZE_FP32_FRACTION;
    sp.size_budget = 4.5 / 32;
    CHECK_OK(aq_alloc_solve(&t, &sp, &s, &err), &err);
    CHECK_CLOSE(s.loss, 0.45, 1e-15); /* a sum of three decimals: a few ulps of 0.45 */
    CHECK(s.size_budget_bits == 1800);
    aq_alloc_solution_free(&s);
    /* (b): smallest size with loss <= 0.60: a4 b4 c2 = 1200 bits (.60); a8 b2 c2 1200 .70 no;
     * a4 b2 c2 800 .80 no; a2 b4 c2 .. 800 .1.0 no; 1000: a4 b4? no c must be >=400 (c2).
     * sizes below 1200: {a2,a4}x{b2,b4}x{c2} all lose > .6. Answer 1200. */
    sp.objective = AQ_ALLOC_MIN_SIZE;
    sp.size_unit = AQ_SIZE_NONE;
    sp.max_loss = 0.60;
    CHECK_OK(aq_alloc_solve(&t, &sp, &s, &err), &err);
    CHECK(s.size_bits == 1200);
    CHECK_CLOSE(s.loss, 0.60, 1e-12); /* a sum of three decimals */
    aq_alloc_solution_free(&s);
    sp.max_loss = 0.05; /* least possible: a8 b8 c8 = .06 */
    CHECK(aq_alloc_solve(&t, &sp, &s, &err) == AQ_ERR_INFEASIBLE);
    CHECK(s.infeasible == AQ_BUDGET_LOSS);
    CHECK_CLOSE(s.min_feasible, 0.06, 1e-12); /* a sum of three decimals */
    CHECK_MSG(strstr(err.msg, "smallest achievable loss is 0.06"), "%s", err.msg);
    /* BOPs: macs = params; a8 b8 c2 bops = 100*8*16+100*8*16+200*2*16 = 32000. */
    sp.objective = AQ_ALLOC_MIN_LOSS;
    sp.size_unit = AQ_SIZE_NONE;
    sp.has_max_bops = 1;
    sp.max_bops = 1000; /* least: all w2 = 400*2*16 = 12800 */
    CHECK(aq_alloc_solve(&t, &sp, &s, &err) == AQ_ERR_INFEASIBLE);
    CHECK(s.infeasible == AQ_BUDGET_BOPS && s.min_feasible == 12800);
    aq_alloc_table_free(&t);
}

static void rule_conflicts(void)
{
    aq_alloc_table t;
    aq_alloc_table_init(&t);
    aq_error err = {0};
    aq_alloc_solution s;
    for (int b = 0; b < 2; b++)
        for (const char *k = "qkv"; *k; k++) {
            char name[32];
            snprintf(name, sizeof name, "layers.%d.self_attn.%c_proj", b, *k);
            add(&t, name, "w4a8", 64, 4, 8, 0.2 + 0.01 * b);
            add(&t, name, "w8a8", 64, 8, 8, 0.1);
            add(&t, name, "w4a16", 64, 4, 16, 0.15 + 0.02 * (*k == 'q'));
        }
    const char *tie[] = {"layers\\.([0-9]+)\\.self_attn\\.[qkv]_proj"};
    aq_alloc_rule keep2[] = {{"0\\.self_attn\\.q", "w8a8"}, {"0\\.self_attn\\.k", "w4a8"}};
    aq_alloc_spec sp = {.size_unit = AQ_SIZE_AVG_BITS, .size_budget = 6, .tie = tie, .n_tie = 1, .keep = keep2, .n_keep = 2};
    CHECK(aq_alloc_solve(&t, &sp, &s, &err) == AQ_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "layers.0.self_attn.q_proj") && strstr(err.msg, "layers.0.self_attn.k_proj") &&
                  strstr(err.msg, "pinned"), "%s", err.msg);
    /* pin to a missing option */
    aq_alloc_rule keep_bad[] = {{"q_proj", "w3a8"}};
    sp.keep = keep_bad, sp.n_keep = 1;
    CHECK(aq_alloc_solve(&t, &sp, &s, &err) == AQ_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "layers.0.self_attn.q_proj") && strstr(err.msg, "no option 'w3a8'"), "%s", err.msg);
    /* exclusions leave no option */
    aq_alloc_rule ex[] = {{"1\\.self_attn\\.v", "w4a8"}, {"1\\.self_attn\\.v", "w8a8"}, {"v_proj", "w4a16"}};
    sp.keep = NULL, sp.n_keep = 0, sp.exclude = ex, sp.n_exclude = 3;
    CHECK(aq_alloc_solve(&t, &sp, &s, &err) == AQ_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "layers.1.self_attn.v_proj") && strstr(err.msg, "no option"), "%s", err.msg);
    /* pin vs exclusion */
    aq_alloc_rule k1[] = {{"1\\.self_attn\\.v", "w4a16"}};
    sp.keep = k1, sp.n_keep = 1;
    CHECK(aq_alloc_solve(&t, &sp, &s, &err) == AQ_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "--exclude 'v_proj=w4a16'"), "%s", err.msg);
    /* pattern that matches nothing, bad regex */
    aq_alloc_rule k2[] = {{"^nothing$", "w4a8"}};
    sp.exclude = NULL, sp.n_exclude = 0, sp.keep = k2;
    CHECK(aq_alloc_solve(&t, &sp, &s, &err) == AQ_ERR_ARG && strstr(err.msg, "matches no layer"));
    aq_alloc_rule k3[] = {{"([", "w4a8"}};
    sp.keep = k3;
    CHECK(aq_alloc_solve(&t, &sp, &s, &err) == AQ_ERR_ARG && strstr(err.msg, "bad regular expression"));
    /* A working tie grouped by block: with pin q0 = w8a8, block 0 is all w8a8, and block 1
     * (tied separately, by the capture group) takes the cheapest common option w4a8
     * under a 5 bits/weight budget: 3*8*64 + 3*4*64 = 2304 = 6 bits/weight... use 6. */
    aq_alloc_rule k4[] = {{"0\\.self_attn\\.q", "w8a8"}};
    sp.keep = k4;
    sp.size_budget = 6;
    CHECK_OK(aq_alloc_solve(&t, &sp, &s, &err), &err);
    for (size_t l = 0; l < s.n_layers; l++) {
        const char *want = l < 3 ? "w8a8" : "w4a16"; /* block 1: w4a16 totals .15*3+.02 < w4a8 .63 */
        CHECK_MSG(!strcmp(t.rows[s.row[l]].option, want), "%s took %s", s.layer[l], t.rows[s.row[l]].option);
    }
    CHECK(s.size_bits == 2304);
    aq_alloc_solution_free(&s);
    /* tie-act: same activation bits per block; with q forced to a16 (exclude its a8 options)... */
    const char *tie_act[] = {"layers\\.([0-9]+)\\."};
    aq_alloc_rule ex2[] = {{"q_proj", "w4a8"}, {"q_proj", "w8a8"}};
    aq_alloc_spec sp2 = {.size_unit = AQ_SIZE_AVG_BITS, .size_budget = 8, .tie_act = tie_act, .n_tie_act = 1,
                         .exclude = ex2, .n_exclude = 2};
    CHECK_OK(aq_alloc_solve(&t, &sp2, &s, &err), &err);
    for (size_t l = 0; l < s.n_layers; l++) CHECK(t.rows[s.row[l]].a_bits == 16);
    aq_alloc_solution_free(&s);
    /* tie-act conflict: q only a16, k only a8 */
    aq_alloc_rule ex3[] = {{"q_proj", "w4a8"}, {"q_proj", "w8a8"}, {"k_proj", "w4a16"}};
    sp2.exclude = ex3, sp2.n_exclude = 3;
    CHECK(aq_alloc_solve(&t, &sp2, &s, &err) == AQ_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "no common activation width") && strstr(err.msg, "layers.0.self_attn.q_proj"), "%s", err.msg);
    aq_alloc_table_free(&t);
}

int main(void)
{
    tmpdir = aq_test_tmpdir("solver");
    csv_errors();
    api_errors();
    degenerate_and_known();
    rule_conflicts();
    free(tmpdir);
    AQ_TEST_END();
}
