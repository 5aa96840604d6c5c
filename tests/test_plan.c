/* test_plan.c — `adaquant plan` (mpi/pipeline/plan.h): the task list and FLOP
 * totals of Llama-2-7B against a hand computation from the public config
 * numbers, the memory formula against the engine's own allocation and a
 * small case by hand, the schedule's bounds against a brute-force optimum,
 * the rate cache, and bad input. Rates are fixed numbers (no measurement),
 * so nothing depends on the machine. argv[1] = tests/configs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../mpi/pipeline/coop_sched.h"
#include "../mpi/pipeline/memory.h"
#include "../mpi/pipeline/plan.h"
#include "../src/model/model.h"
#include "testutil.h"

static const char *cfg_dir;

static void fixed_rates(aq_plan_rates *r)
{
    memset(r, 0, sizeof *r);
    strcpy(r->kernel, "fixed");
    for (int i = 0; i < AQ_PLAN_NSIZES; i++) r->sgemm[i] = r->dgemm[i] = r->dsyrk[i] = 10.0 * (i + 1);
    r->potrf = 5, r->exp_rate = 1e8, r->dexp_rate = 5e7, r->softmax_rate = 4e8, r->elem_rate = 1e9;
    r->deflate_rate = 2e7, r->inflate_rate = 1e8, r->touch_rate = 5e9;
    r->aq_iters = 200, r->aq_starts = 5, r->aq_polish = 8;
    r->aq_shape[0][0] = r->aq_shape[0][1] = 64, r->aq_shape[1][0] = 128, r->aq_shape[1][1] = 256;
    r->aq_gptq[0] = 0.05, r->aq_gptq[1] = 0.9, r->aq_rtn[0] = 0.04, r->aq_rtn[1] = 0.8;
}

static aq_status plan_of(const char *config, int ranks, aq_plan *p, aq_error *e)
{
    static aq_pipe_cfg c;
    static aq_pipe_out o;
    aq_pipe_cfg_default(&c);
    aq_pipe_out_default(&o);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", cfg_dir, config);
    aq_plan_input in = {.cfg = &c, .out = &o, .ranks = ranks, .read_rate = 1e9};
    AQ_TRY(aq_llama_config_read_json(path, &in.m, e));
    in.eval = (aq_plan_docs){2000, 2000 * 512.0, 2000 * 512.0 * 512};
    in.tune = (aq_plan_docs){6400, 6400 * 512.0, 6400 * 512.0 * 512};
    aq_plan_rates r;
    fixed_rates(&r);
    return aq_plan_compute(&in, &r, p, e);
}

/* Llama-2-7B: dim 4096, intermediate 11008, 32 blocks, 32 heads (32 KV),
 * vocab 32000, 4096 positions (meta-llama/Llama-2-7b-hf config.json). */
static void test_llama2_7b(void)
{
    aq_error e = {0};
    aq_plan p;
    CHECK_OK(plan_of("llama2_7b.json", 8, &p, &e), &e);
    CHECK(p.n_layers == 224 && p.n_options == 4 && p.n_tasks == 896);
    /* per block: q, k, v, o 4096 x 4096; gate, up 11008 x 4096; down 4096 x 11008 */
    double per_block = 4.0 * 4096 * 4096 + 3.0 * 4096 * 11008;
    CHECK(p.params == 32 * per_block);
    CHECK(p.params == 6476005376.0);
    /* AdaQuant iterations: 200 x 2 d_out (d_in + 1)^2 per task, 4 weight-only options */
    double it = 4 * 2.0 * 4096 * 4097.0 * 4097 + 2 * 2.0 * 11008 * 4097.0 * 4097 + 2.0 * 4096 * 11009.0 * 11009;
    CHECK_CLOSE(p.total_flops, 32 * 4 * 200 * it, 1e-12);
    CHECK(p.cls[AQ_LIN_DOWN].d_out == 4096 && p.cls[AQ_LIN_DOWN].d_in == 11008);
    CHECK(p.cls[AQ_LIN_GATE].d_out == 11008 && p.cls[AQ_LIN_GATE].d_in == 4096);
    /* F32 model: untied embeddings and head, 2 norms per block + the final
     * one, RoPE cos/sin tables of 4096 positions x 64 each, the linears */
    double floats = 2.0 * 32000 * 4096 + 65.0 * 4096 + 4096.0 * 128 + 32 * per_block;
    CHECK(p.model_bytes == 4 * floats);
    /* the bounds: every phase is at least its lower bound; the whole run too */
    for (int k = 0; k < AQ_PLAN_NPHASES; k++)
        CHECK_MSG(p.ph[k].seconds >= p.ph[k].lower_bound * (1 - 1e-12), "phase %s", aq_plan_phase_name(k));
    CHECK(p.makespan >= p.lower_bound * (1 - 1e-12));
    CHECK(p.efficiency > 0 && p.efficiency <= 1 + 1e-12);
    aq_plan p1;
    CHECK_OK(plan_of("llama2_7b.json", 1, &p1, &e), &e);
    CHECK(p1.ph[AQ_PLAN_CALIBRATE].seconds > p.ph[AQ_PLAN_CALIBRATE].seconds);
    CHECK_CLOSE(p1.task_total, p.task_total, 1e-12); /* the work does not depend on P */
}

/* The model memory formula against what the engine allocates for the same
 * config (stories260K), and one task's working set by hand. */
static void test_memory(void)
{
    aq_error e = {0};
    aq_model *m = NULL;
    char *model = aq_test_asset("models/stories260K/stories260K.bin");
    CHECK_OK(aq_model_load_path(model, &m, &e), &e);
    free(model);
    if (m) {
        /* the engine counts the tensors it loads; the RoPE tables (cos and
         * sin, max_seq_len x head_dim / 2 floats each) come on top */
        const aq_llama_config *c = aq_model_config(m);
        double rope = 4.0 * c->max_seq_len * aq_llama_head_dim(c);
        CHECK_MSG(aq_plan_model_bytes(c) == (double)aq_model_weight_bytes(m) + rope, "%.0f vs %zu + %.0f",
                  aq_plan_model_bytes(c), aq_model_weight_bytes(m), rope);
        aq_model_free(m);
    }
    /* d_out 3, d_in 4 (D = 5), --init best: statistics Gram + compressed copy
     * (2 x 8 x 25), A (8 x 25), Cf (4 x 25), GPTQ H and Hd (16 x 16), state
     * 15 x (5 x 8 + 2 x 4), V, codes, snapshots, result, KL weight 12 x 12,
     * the second result's codes 12 */
    CHECK(aq_plan_task_bytes(3, 4, 1) == 400 + 200 + 100 + 256 + 720 + 144 + 12);
    CHECK(aq_plan_task_bytes(3, 4, 0) == 400 + 200 + 100 + 256 + 720 + 144);
}

static double brute_force(const double *c, int n, int P)
{
    double best = 1e300;
    long total = 1;
    for (int i = 0; i < n; i++) total *= P;
    for (long code = 0; code < total; code++) {
        double load[4] = {0}, mk = 0;
        long x = code;
        for (int i = 0; i < n; i++, x /= P) load[x % P] += c[i];
        for (int q = 0; q < P; q++) mk = load[q] > mk ? load[q] : mk;
        best = mk < best ? mk : best;
    }
    return best;
}

/* The simulated schedule (static LPT + tail to the first free rank) with
 * seconds = cost and no set-up is list scheduling in LPT order: at least
 * max(total / P, longest) and at most Graham's (4/3 - 1/(3P)) OPT. */
/* --max-rank-memory's sizes (aq_mem_parse_size): powers of 1024, written as
 * K/M/G/T with an optional B, i or iB ("1536Mi" as --target-size spells it). */
static void test_parse_size(void)
{
    const struct {
        const char *s;
        double want;
    } ok[] = {{"1000", 1000}, {"2K", 2048}, {"2k", 2048}, {"512M", 512.0 * 1048576}, {"1536Mi", 1536.0 * 1048576},
              {"1.5GiB", 1.5 * 1073741824}, {"1GB", 1073741824}, {"1T", 1099511627776.0}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        CHECK_MSG(aq_mem_parse_size(ok[i].s) == ok[i].want, "%s -> %g, want %g", ok[i].s, aq_mem_parse_size(ok[i].s),
                  ok[i].want);
    const char *bad[] = {"", "M", "1X", "1Mx", "1Mib", "-1", "1e30"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(aq_mem_parse_size(bad[i]) < 0, "'%s' refused", bad[i]);
}

static void test_schedule(void)
{
    aq_error e = {0};
    double worst = 0;
    uint64_t rng = 0x2545F4914F6CDD1DULL;
    for (int trial = 0; trial < 300; trial++) {
        int n = 3 + trial % 6, P = 2 + trial % 3;
        double c[8], total = 0, longest = 0, mk = 0;
        for (int i = 0; i < n; i++) {
            c[i] = trial % 2 ? 1 + (int)(aq_test_urand(&rng) * 9) : 0.1 + aq_test_urand(&rng);
            total += c[i];
            longest = c[i] > longest ? c[i] : longest;
        }
        CHECK_OK(aq_plan_schedule(c, c, (size_t)n, P, 0, &mk, &e), &e);
        double opt = brute_force(c, n, P), lb = total / P > longest ? total / P : longest;
        CHECK_MSG(mk >= lb * (1 - 1e-12), "trial %d: makespan %g below the bound %g", trial, mk, lb);
        CHECK_MSG(mk <= (4.0 / 3 - 1.0 / (3 * P)) * opt * (1 + 1e-12), "trial %d: %g vs OPT %g", trial, mk, opt);
        worst = mk / opt > worst ? mk / opt : worst;
        /* a set-up time delays every rank alike */
        double mk2 = 0;
        CHECK_OK(aq_plan_schedule(c, c, (size_t)n, P, 2.5, &mk2, &e), &e);
        CHECK_CLOSE(mk2, mk + 2.5, 1e-12);
    }
    printf("schedule: worst makespan / optimum %.3f over 300 instances\n", worst);
    double c5[5] = {3, 3, 2, 2, 2}, mk = 0; /* the tight LPT instance: 7 vs OPT 6 */
    CHECK_OK(aq_plan_schedule(c5, c5, 5, 2, 0, &mk, &e), &e);
    CHECK(mk == 7);
}

static void test_rates_file(void)
{
    aq_error e = {0};
    char *dir = aq_test_tmpdir("plan"), path[1024];
    snprintf(path, sizeof path, "%s/rates.json", dir);
    aq_plan_rates r, back;
    fixed_rates(&r);
    CHECK_OK(aq_plan_rates_write(path, &r, &e), &e);
    CHECK_OK(aq_plan_rates_read(path, &back, &e), &e);
    CHECK(!strcmp(back.kernel, "fixed") && back.sgemm[3] == r.sgemm[3] && back.aq_rtn[1] == r.aq_rtn[1] &&
          back.aq_shape[1][1] == 256 && back.aq_polish == 8);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("{\"format\": \"adaquant-plan-rates\", \"version\": 1, \"kernel\": \"x\", \"sgemm_gflops\": [1]}", f);
        fclose(f);
    }
    CHECK(aq_plan_rates_read(path, &back, &e) == AQ_ERR_FORMAT && strstr(e.msg, "sgemm_gflops"));
    remove(path);
    snprintf(path, sizeof path, "%s/absent.json", dir);
    CHECK(aq_plan_rates_read(path, &back, &e) == AQ_ERR_NOTFOUND);
    remove(dir);
    free(dir);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) fputs(text, f), fclose(f);
}

static void test_bad_input(void)
{
    aq_error e = {0};
    aq_plan p;
    CHECK(plan_of("llama2_7b.json", 0, &p, &e) == AQ_ERR_ARG && strstr(e.msg, "rank count"));
    char *dir = aq_test_tmpdir("plancfg"), path[1024];
    aq_llama_config m;
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_text(path, "{\"model_type\": \"llama\", \"intermediate_size\": 11008, \"num_hidden_layers\": 32, "
                     "\"num_attention_heads\": 32, \"vocab_size\": 32000}");
    CHECK(aq_llama_config_read_json(path, &m, &e) == AQ_ERR_FORMAT && strstr(e.msg, "hidden_size") &&
          strstr(e.msg, path));
    write_text(path, "{\"model_type\": \"llama\", \"hidden_size\": 4096, \"intermediate_size\": 11008, "
                     "\"num_hidden_layers\": 32, \"num_attention_heads\": 32, \"num_key_value_heads\": 5, "
                     "\"vocab_size\": 32000}");
    CHECK(aq_llama_config_read_json(path, &m, &e) == AQ_ERR_FORMAT && strstr(e.msg, "kv_heads"));
    write_text(path, "{\"model_type\": \"llama\", \"hidden_size\": 4000, \"intermediate_size\": 11008, "
                     "\"num_hidden_layers\": 32, \"num_attention_heads\": 48, \"vocab_size\": 32000}");
    CHECK(aq_llama_config_read_json(path, &m, &e) == AQ_ERR_FORMAT && strstr(e.msg, "inconsistent heads"));
    remove(path);
    remove(dir);
    free(dir);
}

/* Llama-2-7B's config, default settings with the menu `options`, its task list. */
static void setup_7b(aq_pipe_cfg *c, const char *options, aq_llama_config *m, aq_pipe_plan *pp)
{
    aq_error e = {0};
    char path[1024];
    snprintf(path, sizeof path, "%s/llama2_7b.json", cfg_dir);
    aq_pipe_cfg_default(c);
    CHECK_OK(aq_pipe_cfg_set_options(c, options, &e), &e);
    CHECK_OK(aq_llama_config_read_json(path, m, &e), &e);
    CHECK_OK(aq_pipe_plan_build_config(c, m, pp, &e), &e);
}

/* Which tasks go cooperative (coop_sched.h): Llama-2-7B's 224 linears with the
 * menu w4a16,w4a8, by hand. The a8 tasks stay single-rank; threshold 0 takes
 * every a16 task; a threshold between down_proj's cost and gate/up's takes the
 * 32 down_proj a16 tasks only, whatever P is (the rule reads total / Q). */
static void test_coop_pick(void)
{
    aq_error e = {0};
    static aq_pipe_cfg c;
    aq_llama_config m;
    aq_pipe_plan pp;
    setup_7b(&c, "w4a16,w4a8", &m, &pp);
    CHECK(pp.n_tasks == 448);
    aq_coop_sched cs;
    c.coop_ranks = 4;
    c.coop_threshold = 0;
    CHECK_OK(aq_coop_sched_pick(&c, &pp, NULL, pp.tasks, pp.n_tasks, 8, NULL, &cs, &e), &e);
    size_t a16 = 0;
    for (size_t i = 0; i < cs.n; i++) a16 += cs.coop[i] && !strcmp(pp.tasks[i].option, "w4a16");
    CHECK(cs.n_coop == 224 && a16 == 224);
    CHECK(cs.nb[0] == 64); /* 4096 rows over 4 ranks */
    aq_coop_sched_free(&cs);
    /* cost = iters d_out (d_in + 1)^2 + N (d_in + 1)^2 (tasks.h), N = windows x seq_len */
    double N = (double)c.windows * c.seq_len, it = c.iters;
    double down = (it * 4096 + N) * 11009.0 * 11009, gate = (it * 11008 + N) * 4097.0 * 4097;
    double total = 0; /* the a8 tasks cost outer_iters times more: summed as given */
    for (size_t i = 0; i < pp.n_tasks; i++) total += pp.tasks[i].cost;
    CHECK(pp.tasks[6 * 2].cost == down && pp.tasks[4 * 2].cost == gate); /* block 0: down_proj, gate_proj a16 */
    CHECK(down > gate);
    c.coop_threshold = (down + gate) / 2 / (total / 4); /* between the two costs */
    for (int P = 4; P <= 64; P *= 4) {
        CHECK_OK(aq_coop_sched_pick(&c, &pp, NULL, pp.tasks, pp.n_tasks, P, NULL, &cs, &e), &e);
        size_t ok = cs.n_coop == 32;
        for (size_t i = 0; i < cs.n; i++)
            if (cs.coop[i]) ok &= strstr(pp.tasks[i].layer, "down_proj") && !strcmp(pp.tasks[i].option, "w4a16");
        CHECK_MSG(ok, "P = %d: %zu cooperative tasks, expected the 32 down_proj w4a16", P, cs.n_coop);
        aq_coop_sched_free(&cs);
    }
    c.coop_threshold = 1; /* no task exceeds total / Q */
    CHECK_OK(aq_coop_sched_pick(&c, &pp, NULL, pp.tasks, pp.n_tasks, 8, NULL, &cs, &e), &e);
    CHECK(cs.n_coop == 0);
    aq_coop_sched_free(&cs);
    c.coop_ranks = 16; /* more than P */
    CHECK(aq_coop_sched_pick(&c, &pp, NULL, pp.tasks, pp.n_tasks, 8, NULL, &cs, &e) == AQ_ERR_ARG &&
          strstr(e.msg, "--coop-ranks 16 needs at least 16 ranks"));
    aq_pipe_plan_free(&pp);
    /* the block size: 64 halved until every rank owns rows */
    CHECK(aq_dist_coop_nb(64, 2) == 32 && aq_dist_coop_nb(172, 2) == 64 && aq_dist_coop_nb(4096, 64) == 64);
    CHECK(aq_dist_coop_nb(4, 4) == 1 && aq_dist_coop_nb(3, 4) == 0 && aq_dist_coop_nb(65, 2) == 64);
}

/* --max-rank-memory feeds the cooperative choice (memory.h, coop_sched.h):
 * Llama-2-7B, menu w4a16 (and w4a8 for the refusal), the cost rule off
 * (threshold 1e9). A bound between down_proj's single-rank bytes and the
 * largest other linear's sends exactly the 32 down_proj tasks to sub-grids
 * (by hand: only down_proj reads the 11008-wide input, its Gram is 7.2x the
 * others'), the same set at every P >= Q. What a sub-grid of 2 saves, by
 * hand from docs/MEMORY.md: half of W's 8 float32 copies and of the 3
 * float64 D x D matrices, less the replicated Gram polishing reads. */
static void test_coop_memory(void)
{
    aq_error e = {0};
    static aq_pipe_cfg c;
    aq_llama_config m;
    aq_pipe_plan pp;
    setup_7b(&c, "w4a16", &m, &pp);
    double D = 11009, W = 4096.0 * 11008;
    double down1 = aq_mem_task_bytes(&c, &m, 4096, 11008, 1), down2 = aq_mem_task_bytes(&c, &m, 4096, 11008, 2);
    double gate1 = aq_mem_task_bytes(&c, &m, 11008, 4096, 1), o1 = aq_mem_task_bytes(&c, &m, 4096, 4096, 1);
    CHECK(c.polish > 0);
    /* differences of sums of exact doubles (all terms < 2^53): exact up to rounding of the sums */
    CHECK_CLOSE(down1 - down2, 16 * W + 12 * D * D - 8 * D * D, 1e-9 * down1);
    CHECK(down1 > 3 * 8 * D * D && gate1 > o1 && down1 > gate1);
    c.coop_ranks = 2;
    c.coop_threshold = 1e9; /* the cost rule never fires */
    c.max_rank_memory = (down1 + gate1) / 2;
    aq_coop_sched cs;
    for (int P = 2; P <= 256; P *= 4) {
        CHECK_OK(aq_coop_sched_pick(&c, &pp, &m, pp.tasks, pp.n_tasks, P, NULL, &cs, &e), &e);
        size_t ok = cs.n_coop == 32;
        for (size_t i = 0; i < cs.n; i++) ok &= !cs.coop[i] == !strstr(pp.tasks[i].layer, "down_proj");
        CHECK_MSG(ok, "P = %d: %zu cooperative tasks, expected the 32 down_proj", P, cs.n_coop);
        aq_coop_sched_free(&cs);
    }
    /* without the bound (or above every task) none */
    c.max_rank_memory = down1 + 1;
    CHECK_OK(aq_coop_sched_pick(&c, &pp, &m, pp.tasks, pp.n_tasks, 2, NULL, &cs, &e), &e);
    CHECK(cs.n_coop == 0);
    aq_coop_sched_free(&cs);
    /* no --coop-ranks: the task is named, and the sub-grid that would take it */
    c.max_rank_memory = (down1 + gate1) / 2;
    c.coop_ranks = 0;
    CHECK(aq_coop_sched_pick(&c, &pp, &m, pp.tasks, pp.n_tasks, 2, NULL, &cs, &e) == AQ_ERR_ARG &&
          strstr(e.msg, "model.layers.0.mlp.down_proj w4a16") && strstr(e.msg, "--coop-ranks 2"));
    aq_pipe_plan_free(&pp);
    /* an option the path does not run (a8): refused, naming the task and the option */
    CHECK_OK(aq_pipe_cfg_set_options(&c, "w4a8", &e), &e);
    CHECK_OK(aq_pipe_plan_build_config(&c, &m, &pp, &e), &e);
    c.coop_ranks = 2;
    CHECK(aq_coop_sched_pick(&c, &pp, &m, pp.tasks, pp.n_tasks, 2, NULL, &cs, &e) == AQ_ERR_ARG &&
          strstr(e.msg, "model.layers.0.mlp.down_proj w4a8") && strstr(e.msg, "a16"));
    aq_pipe_plan_free(&pp);
}

/* Llama-2-7B, one weight-only option (w4a16), no KL, at `ranks` ranks. */
static void plan_7b_w4a16(aq_pipe_cfg *c, aq_pipe_out *o, int ranks, aq_plan_input *in)
{
    aq_error e = {0};
    aq_pipe_cfg_default(c);
    aq_pipe_out_default(o);
    CHECK_OK(aq_pipe_cfg_set_options(c, "w4a16", &e), &e);
    c->kl_windows = 0;
    char path[1024];
    snprintf(path, sizeof path, "%s/llama2_7b.json", cfg_dir);
    *in = (aq_plan_input){.cfg = c, .out = o, .ranks = ranks, .read_rate = 1e9};
    CHECK_OK(aq_llama_config_read_json(path, &in->m, &e), &e);
}

/* The P mod Q ranks outside the groups (coop_sched.c's run_idle) in the plan:
 * Llama-2-7B, w4a16, --coop-ranks 2 with the threshold between down_proj's
 * and gate_proj's cost (the 32 down_proj tasks cooperative). At P = 2 no rank
 * is outside; at P = 3 one group runs the same cooperative phase and the third
 * rank runs single-rank tasks meanwhile: at least one, ending at most one task
 * after the groups (the phase can only grow by an overrun shorter than the
 * longest single task), and the calibrate phase is shorter than at P = 2. */
static void test_coop_spare(void)
{
    aq_error e = {0};
    static aq_pipe_cfg c;
    static aq_pipe_out o;
    aq_plan_input in;
    plan_7b_w4a16(&c, &o, 2, &in);
    aq_pipe_plan pp;
    CHECK_OK(aq_pipe_plan_build_config(&c, &in.m, &pp, &e), &e);
    double N = (double)c.windows * c.seq_len, it = c.iters, total = 0;
    double down = (it * 4096 + N) * 11009.0 * 11009, gate = (it * 11008 + N) * 4097.0 * 4097;
    for (size_t i = 0; i < pp.n_tasks; i++) total += pp.tasks[i].cost;
    aq_pipe_plan_free(&pp);
    c.coop_ranks = 2;
    c.coop_threshold = (down + gate) / 2 / (total / 2);
    aq_plan_rates r;
    fixed_rates(&r);
    aq_plan p2, p3;
    CHECK_OK(aq_plan_compute(&in, &r, &p2, &e), &e);
    in.ranks = 3;
    CHECK_OK(aq_plan_compute(&in, &r, &p3, &e), &e);
    CHECK_MSG(p2.n_coop_tasks == 32 && p3.n_coop_tasks == 32, "%d / %d cooperative tasks, expected 32",
              p2.n_coop_tasks, p3.n_coop_tasks);
    CHECK_MSG(p2.n_spare_tasks == 0 && p3.n_spare_tasks >= 1, "spare tasks %d at P = 2, %d at P = 3",
              p2.n_spare_tasks, p3.n_spare_tasks);
    CHECK(p3.coop_phase >= p2.coop_phase && p3.coop_phase < p2.coop_phase + p3.task_longest);
    CHECK(p3.ph[AQ_PLAN_CALIBRATE].seconds < p2.ph[AQ_PLAN_CALIBRATE].seconds);
}

/* Measured task seconds (plan.h): Llama-2-7B, one weight-only option, no KL,
 * so every q_proj task has the same predicted seconds t; a file naming one of
 * them at 2t CPU seconds (10t wall; written and read back) doubles every task:
 * the named one takes its 2t, the others the model x measured / predicted = 2. */
static void test_measured(void)
{
    aq_error e = {0};
    static aq_pipe_cfg c;
    static aq_pipe_out o;
    aq_plan_input in;
    plan_7b_w4a16(&c, &o, 8, &in);
    char path[1024];
    aq_plan_rates r;
    fixed_rates(&r);
    aq_plan p0, p1;
    CHECK_OK(aq_plan_compute(&in, &r, &p0, &e), &e);
    double t = p0.cls[AQ_LIN_Q].seconds_min;
    CHECK(t > 0 && t == p0.cls[AQ_LIN_Q].seconds_max && p0.n_measured == 0 && p0.measured_scale == 1);
    aq_dist_task task = {.layer = "model.layers.0.self_attn.q_proj", .option = "w4a16"};
    aq_loss_row row = {.seconds = 2 * t};
    char *dir = aq_test_tmpdir("planmeas");
    snprintf(path, sizeof path, "%s/task_seconds.json", dir);
    double cpu = 2 * t; /* CPU seconds win over the wall seconds (10 t) */
    row.seconds = 10 * t;
    CHECK_OK(aq_plan_measured_write(path, &task, &row, &cpu, 1, &e), &e);
    aq_plan_measured m;
    CHECK_OK(aq_plan_measured_read(path, &m, &e), &e);
    CHECK(m.n == 1 && m.seconds[0] == 10 * t && m.cpu[0] == 2 * t && m.have_cpu && !strcmp(m.option[0], "w4a16"));
    in.measured = &m;
    CHECK_OK(aq_plan_compute(&in, &r, &p1, &e), &e);
    CHECK(p1.n_measured == 1);
    CHECK_CLOSE(p1.measured_scale, 2.0, 1e-15);
    CHECK_CLOSE(p1.task_total, 2 * p0.task_total, 1e-12 * p0.task_total); /* sums of the same terms x 2 */
    aq_plan_measured_free(&m);
    FILE *f = fopen(path, "w");
    if (f) fputs("{\"tasks\": [{\"layer\": \"x\"}]}", f), fclose(f);
    CHECK(aq_plan_measured_read(path, &m, &e) == AQ_ERR_FORMAT && strstr(e.msg, path));
    remove(path);
    CHECK(aq_plan_measured_read(path, &m, &e) == AQ_ERR_NOTFOUND);
    remove(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_plan CONFIG_DIR\n");
        return 2;
    }
    cfg_dir = argv[1];
    test_llama2_7b();
    test_memory();
    test_parse_size();
    test_schedule();
    test_rates_file();
    test_bad_input();
    test_coop_pick();
    test_coop_memory();
    test_measured();
    test_coop_spare();
    AQ_TEST_END();
}
