/* stage_calibrate.c — pipeline stage 2: AdaQuant for every (layer, option)
 * task, spread over the ranks by the distributed driver (driver.h), one result
 * file per task holding the loss row and the layer's quantized tensors:
 *   codes U8 [d_out, d_in] (unpacked), w_scale, w_zero, bias F32 [d_out],
 *   a_scale, a_zero F32 [1], out_error F64 [1]
 * The row's `loss` is the allocation loss: with kl_windows > 0 (--loss kl) the
 * mean KL(FP || model with only this layer quantized) per predicted token over
 * the first kl_windows calibration windows (src/model/sensitivity.h; a
 * network-level measure: a layer whose error matters
 * more downstream costs more), else the layer's normalised output error,
 * which is always kept in out_error.
 * The write stage packs them into the qlayer layout. A task reads only its
 * capture point's statistics file, so any rank (or array task) can run it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../io/atomic_file.h"
#include "../../src/adaquant/adaquant.h"
#include "../../src/model/model.h"
#include "../../src/model/block_loss.h"
#include "../../src/model/sensitivity.h"
#include "../../src/text/textdata.h"
#include "coop_sched.h"
#include "driver.h"
#include "plan.h"
#include "pipeline_size.h"
#include "progress.h"
#include "stage_calibrate.h"
#include "stage_stats.h"
#include "stage_tensor.h"

typedef struct cal_ctx {
    const aq_pipe_cfg *c;
    const aq_pipe_plan *p;
    aq_model *m;
    aq_fingerprint stats_fp;
    /* network-level KL: the sequences of aq_pipe_kl_seqs (kl.n = 0: layer loss);
     * the FP residuals and log-probabilities over them are cached on first use
     * (sensitivity.h) */
    aq_seqs kl;
    aq_sens *sens;
    aq_block_sens *bsens; /* --loss block-mse / block-fisher (cfg.sens_loss > 0) */
    /* a cooperative group member's share of the KL windows (coop_kl), built
     * on its first cooperative task, freed when the cooperative phase ends */
    aq_sens *sens_part;
    int part_empty; /* this member's share is empty (fewer windows than members) */
    /* per task of the stage's list: this process's CPU seconds on it (0: not
     * run here), for WORK/task_seconds.json; map: the driver's index -> list */
    double *cpu;
    const size_t *map;
} cal_ctx;

/* CPU seconds of this process: one task runs at a time on one core (BLIS
 * single-threaded), so the difference over a task is its CPU time, whatever
 * else shares the machine (the planner's rates are a core of its own). */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Mean KL(FP || model with only layer L quantized as r) per predicted token on
 * the KL windows (src/model/sensitivity.h: re-runs only blocks >= L's block). */
static aq_status task_kl(cal_ctx *x, const aq_pipe_layer *L, const aq_layer_result *r, double *kl, aq_error *err)
{
    int blk = x->c->sens_loss > 0;
    if (blk && !x->bsens)
        AQ_TRY(aq_block_sens_new(x->m, x->kl.tokens, x->kl.lens, x->kl.n, 0, (aq_block_loss_kind)x->c->sens_loss,
                                 &x->bsens, err));
    if (!blk && !x->sens) AQ_TRY(aq_sens_new(x->m, x->kl.tokens, x->kl.lens, x->kl.n, 0, &x->sens, err));
    float *w = malloc(r->d_out * r->d_in * sizeof *w);
    if (!w) return aq_fail_nomem(err, "KL weight", r->d_out * r->d_in * sizeof *w);
    aq_layer_result_dequant(r, w);
    aq_linear_override ov = {w, r->bias, r->a_bits < 16 ? r->a_bits : 0, r->a_scale, r->a_zero};
    aq_status st = blk ? aq_block_sens_layer(x->bsens, L->block, (aq_linear)L->which, &ov, kl, err)
                       : aq_sens_layer_kl(x->sens, L->block, (aq_linear)L->which, &ov, kl, err);
    free(w);
    return st;
}

static aq_status load_kl_windows(cal_ctx *x, aq_error *err)
{
    if (x->c->kl_windows <= 0) return AQ_OK;
    return aq_pipe_kl_seqs(x->c, aq_model_config(x->m)->vocab_size, &x->kl, err);
}

aq_status aq_pipe_write_task_result(const char *path, const aq_dist_task *task, const aq_layer_result *r, double kl,
                              int use_kl, aq_error *err)
{
    double out_error = r->loss_final;
    int64_t o = (int64_t)r->d_out, i = (int64_t)r->d_in, ng = o * (int64_t)aq_result_groups(r);
    aq_tensor_view t[7] = {
        {"codes", AQ_U8, 2, {o, i}, r->codes, (size_t)(o * i)},
        {"w_scale", AQ_F32, 1, {ng}, r->w_scale, (size_t)ng * 4},
        {"w_zero", AQ_F32, 1, {ng}, r->w_zero, (size_t)ng * 4},
        {"bias", AQ_F32, 1, {o}, r->bias, (size_t)o * 4},
        {"a_scale", AQ_F32, 1, {1}, &r->a_scale, 4},
        {"a_zero", AQ_F32, 1, {1}, &r->a_zero, 4},
        {"out_error", AQ_F64, 1, {1}, &out_error, 8},
    };
    aq_result_desc d = {.layer = task->layer, .option = task->option, .fp = task->fp, .n_tensors = 7, .tensors = t};
    int64_t row_bytes = (i * r->w_bits + 7) / 8;
    aq_layer_opts go = {.w_bits = r->w_bits, .group = r->group, .ggml = r->ggml, .gtype = r->gtype};
    int64_t scales = 3 * 32 * o; /* F32 scale, zero, bias per row */
    if (r->group > 0) row_bytes = (int64_t)aq_group_row_bytes(&go, (size_t)i), scales = 32 * o;
    d.row = (aq_loss_row){.loss = use_kl ? kl : r->loss_final,
                          .loss_rtn = r->loss_rtn,
                          .loss_gptq = r->loss_gptq,
                          .loss_init = r->loss_init,
                          .seconds = r->seconds,
                          .params = o * i,
                          .macs = o * i,
                          .size_bits = o * row_bytes * 8 + scales + (r->a_bits < 16 ? 64 : 0),
                          .iterations = r->iterations,
                          .w_bits = r->w_bits,
                          .a_bits = r->a_bits};
    return aq_result_write(path, &d, err);
}

aq_status aq_pipe_task_problem(const aq_pipe_cfg *c, const aq_pipe_plan *p, aq_model *m, const aq_fingerprint *stats_fp,
                               const aq_dist_task *task, int cross, aq_stats *s, aq_layer_problem *pr,
                               aq_layer_opts *o, aq_error *err)
{
    const aq_pipe_layer *L = &p->layers[task->layer_index];
    memset(s, 0, sizeof *s);
    AQ_TRY(aq_stats_read(c->work, "stats", L->block, L->point, stats_fp, s, err));
    const float *weight;
    int d_out, d_in;
    AQ_TRY(aq_model_linear(m, L->block, (aq_linear)L->which, &weight, &d_out, &d_in, err));
    if (cross && !s->cross)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: sequential statistics missing", L->name);
    if (s->d != d_in)
        return aq_fail(err, AQ_ERR_SHAPE, "%s: statistics have d = %d, the layer d_in = %d", L->name, s->d, d_in);
    AQ_TRY(aq_pipe_layer_opts(c, task->option, o, err));
    *pr = (aq_layer_problem){.name = L->name,
                             .d_out = (size_t)d_out,
                             .d_in = (size_t)d_in,
                             .weight = weight,
                             /* the model's own bias (Qwen2 q/k/v, attention_bias,
                              * mlp_bias), NULL = none: the target is W x + b and
                              * AdaQuant calibrates b' from it like every bias */
                             .bias = aq_model_linear_bias(m, L->block, (aq_linear)L->which),
                             .gram_a = s->gram,
                             .gram_b = s->cross,
                             .gram_c = s->gram_q,
                             .n_tokens = s->n_rows,
                             .n_sample = s->n_sample,
                             .sample_x = s->sample,
                             .sample_x_in = s->sample_q};
    return AQ_OK;
}

/* Keep r, or under --init best the RTN start r2 when its result has the lower
 * network KL (layer error without KL), and write the task's result file.
 * --init best exists because the GPTQ start wins on the layer's own output
 * error, yet the RTN start often changes the network less (stories260K
 * uniform w4a16: 6.462 vs 6.426 perplexity). */
static aq_status finish_task(cal_ctx *x, const aq_dist_task *task, aq_layer_result *r, aq_layer_result *r2,
                             const char *path, aq_dist_worker *w, double t_start, aq_error *err)
{
    const aq_pipe_layer *L = &x->p->layers[task->layer_index];
    double kl = 0, kl2 = 0;
    aq_status st = AQ_OK;
    if (x->kl.n > 0) st = task_kl(x, L, r, &kl, err);
    if (w) aq_dist_poll(w);
    if (st == AQ_OK && r2 && x->kl.n > 0) st = task_kl(x, L, r2, &kl2, err);
    if (w) aq_dist_poll(w);
    if (st == AQ_OK && r2 && (x->kl.n > 0 ? kl2 < kl : r2->loss_final < r->loss_final)) {
        aq_layer_result tmp = *r;
        *r = *r2, *r2 = tmp, kl = kl2;
    }
    /* the row's seconds: the whole task (every run, the KL), what the planner
     * reads back (WORK/task_seconds.json, plan.h) */
    r->seconds = aq_progress_now() - t_start;
    if (st == AQ_OK) st = aq_pipe_write_task_result(path, task, r, kl, x->kl.n > 0, err);
    return st;
}

/* Member j of a group of q: its share of the KL windows, [j K / q, (j+1) K / q)
 * (a function of Q only, so the bytes do not depend on P), cached. */
static aq_status part_sens(cal_ctx *x, int j, int q, aq_error *err)
{
    if (x->sens_part || x->part_empty) return AQ_OK;
    int K = x->kl.n, w0 = (int)((long)j * K / q), w1 = (int)((long)(j + 1) * K / q);
    x->part_empty = w1 <= w0;
    if (x->part_empty) return AQ_OK;
    size_t off = 0;
    for (int i = 0; i < w0; i++) off += (size_t)x->kl.lens[i];
    return aq_sens_new(x->m, x->kl.tokens + off, x->kl.lens + w0, w1 - w0, 0, &x->sens_part, err);
}

/* The network KL of r split over the group: each member measures its share of
 * the windows; the sums (mean x predicted tokens) are gathered and added in
 * member order on every member, so all get the same value. A failure on any
 * member fails all (its message on it, a pointer to it on the others). */
static aq_status coop_kl(cal_ctx *x, MPI_Comm sub, const aq_pipe_layer *L, const aq_layer_result *r, double *kl,
                         aq_error *err)
{
    int me, q;
    MPI_Comm_rank(sub, &me);
    MPI_Comm_size(sub, &q);
    double mine[2] = {0, 0}, *all = malloc(2 * (size_t)q * sizeof *all); /* mean, predicted tokens */
    aq_status st = all ? part_sens(x, me, q, err) : aq_fail_nomem(err, "KL partial sums", 16 * (size_t)q);
    if (st == AQ_OK && x->sens_part) {
        float *w = malloc(r->d_out * r->d_in * sizeof *w);
        if (!w) st = aq_fail_nomem(err, "KL weight", r->d_out * r->d_in * sizeof *w);
        if (st == AQ_OK) {
            aq_layer_result_dequant(r, w);
            aq_linear_override ov = {w, r->bias, r->a_bits < 16 ? r->a_bits : 0, r->a_scale, r->a_zero};
            st = aq_sens_layer_kl(x->sens_part, L->block, (aq_linear)L->which, &ov, &mine[0], err);
        }
        free(w);
        mine[1] = (double)aq_sens_predicted(x->sens_part);
    }
    int bad = st != AQ_OK, any = 0; /* all fail together, before the gather (all may be NULL on one) */
    if (MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, sub) != MPI_SUCCESS) any = 1;
    if (any && st == AQ_OK) st = aq_fail(err, AQ_ERR_INTERNAL, "%s: the KL measurement failed on another group member", L->name);
    if (st == AQ_OK && MPI_Allgather(mine, 2, MPI_DOUBLE, all, 2, MPI_DOUBLE, sub) != MPI_SUCCESS)
        st = aq_fail(err, AQ_ERR_MPI, "%s: gathering the KL partial sums failed", L->name);
    double sum = 0, pred = 0;
    for (int j = 0; st == AQ_OK && j < q; j++) {
        sum += all[2 * j] * all[2 * j + 1];
        pred += all[2 * j + 1];
    }
    free(all);
    *kl = pred > 0 ? sum / pred : 0.0;
    return st;
}

/* The cooperative phase's finish (coop_sched.h), collective over the group:
 * the network KL split over its members; the layer or block loss (cheap: no
 * forward past the block) and the result file on its first member. */
static aq_status coop_finish(void *vctx, MPI_Comm sub, const aq_dist_task *task, aq_layer_result *r,
                             aq_layer_result *r2, const char *path, double t_start, aq_error *err)
{
    cal_ctx *x = vctx;
    int me;
    MPI_Comm_rank(sub, &me);
    if (x->kl.n == 0 || x->c->sens_loss > 0) return me == 0 ? finish_task(x, task, r, r2, path, NULL, t_start, err) : AQ_OK;
    const aq_pipe_layer *L = &x->p->layers[task->layer_index];
    double kl = 0, kl2 = 0;
    aq_status st = coop_kl(x, sub, L, r, &kl, err);
    if (st == AQ_OK && r2) st = coop_kl(x, sub, L, r2, &kl2, err);
    if (st == AQ_OK && r2 && kl2 < kl) {
        aq_layer_result tmp = *r;
        *r = *r2, *r2 = tmp, kl = kl2;
    }
    r->seconds = aq_progress_now() - t_start; /* finish_task's row seconds */
    if (st == AQ_OK && me == 0) st = aq_pipe_write_task_result(path, task, r, kl, 1, err);
    return st;
}

static aq_status run_task(void *vctx, const aq_dist_task *task, size_t index, const char *path, aq_dist_worker *w,
                          aq_error *err)
{
    cal_ctx *x = vctx;
    double t0 = aq_progress_now(), c0 = cpu_now();
    if (task->layer_index >= x->p->n_layers) { /* the tensor menu: embedding, untied classifier */
        if (!x->sens && x->kl.n > 0) AQ_TRY(aq_sens_new(x->m, x->kl.tokens, x->kl.lens, x->kl.n, 0, &x->sens, err));
        (void)index, (void)w;
        return aq_pipe_tensor_task(x->c, x->p, x->m, x->sens, task, path, err);
    }
    const aq_pipe_layer *L = &x->p->layers[task->layer_index];
    if (aq_pipe_option_absent(task->option, L->d_in)) { /* pipeline_size.h: a placeholder, never chosen */
        aq_layer_opts go;
        AQ_TRY(aq_pipe_layer_opts(x->c, task->option, &go, err));
        aq_result_desc d = {.layer = task->layer, .option = task->option, .fp = task->fp};
        d.row = (aq_loss_row){.params = (int64_t)L->d_out * L->d_in, .macs = (int64_t)L->d_out * L->d_in,
                              .w_bits = go.w_bits, .a_bits = 16};
        return aq_result_write(path, &d, err);
    }
    AQ_TRY(aq_model_block_acquire(x->m, L->block, err)); /* the lazy model holds this task's block */
    aq_stats s;
    aq_layer_problem pr;
    aq_layer_opts o;
    aq_status st = aq_pipe_task_problem(x->c, x->p, x->m, &x->stats_fp, task, 0, &s, &pr, &o, err);
    aq_layer_result r, r2;
    memset(&r, 0, sizeof r);
    memset(&r2, 0, sizeof r2);
    aq_dist_poll(w);
    if (st == AQ_OK) st = aq_layer_run(&pr, &o, &r, err);
    aq_dist_poll(w);
    if (st == AQ_OK && x->c->init_gptq == 2) { /* --init best: the RTN start too */
        o.init = AQ_INIT_RTN;
        st = aq_layer_run(&pr, &o, &r2, err);
        aq_dist_poll(w);
    }
    if (st == AQ_OK) st = finish_task(x, task, &r, x->c->init_gptq == 2 ? &r2 : NULL, path, w, t0, err);
    if (x->cpu) x->cpu[x->map ? x->map[index] : index] = cpu_now() - c0;
    aq_layer_result_free(&r);
    aq_layer_result_free(&r2);
    aq_stats_free(&s);
    aq_model_block_release(x->m, L->block);
    return st;
}

/* WORK/task_seconds.json: every task's measured seconds, for `adaquant plan`. */
static aq_status write_seconds(const char *work, const aq_dist_task *tasks, const aq_loss_row *rows,
                               const double *cpu, size_t n, aq_error *err)
{
    char path[AQ_PIPE_PATH];
    aq_pipe_path(work, "task_seconds.json", path);
    return aq_plan_measured_write(path, tasks, rows, cpu, n, err);
}

static aq_status write_shards(const char *work, int shards, aq_error *err)
{
    char path[AQ_PIPE_PATH], txt[64];
    aq_pipe_path(work, "shards.json", path);
    snprintf(txt, sizeof txt, "{\"shards\": %d}\n", shards);
    return aq_atomic_write_file(path, txt, strlen(txt), err);
}

/* The tasks left by the cooperative phase, through the driver on every rank
 * (LPT + dynamic tail); then rank 0's table in task order, the cooperative
 * rows read back from their (validated) result files. */
static aq_status run_rest(MPI_Comm comm, const aq_pipe_cfg *c, const aq_dist_task *tasks, size_t n,
                          aq_coop_sched *cs, aq_dist_task_fn fn, void *ctx, int resume, aq_loss_row *table,
                          aq_dist_stats *ds, aq_error *err)
{
    aq_dist_options opt;
    aq_dist_options_default(&opt, c->work);
    opt.resume = resume;
    if (!cs->n_coop) return aq_dist_run(comm, tasks, n, fn, ctx, &opt, table, ds, err);
    int rank;
    MPI_Comm_rank(comm, &rank);
    size_t m = 0, *map = malloc((n ? n : 1) * sizeof *map);
    aq_dist_task *rest = malloc((n ? n : 1) * sizeof *rest);
    aq_loss_row *rows = table ? malloc((n ? n : 1) * sizeof *rows) : NULL;
    aq_status st = rest && map && (rows || !table) ? AQ_OK : aq_fail_nomem(err, "single-rank task list", n * 64);
    for (size_t i = 0; st == AQ_OK && i < n; i++)
        if (!aq_coop_sched_taken(cs, i)) map[m] = i, rest[m++] = tasks[i];
    ((cal_ctx *)ctx)->map = map;
    st = aq_pipe_agree(comm, st, err);
    if (st == AQ_OK && m > 0) st = aq_dist_run(comm, rest, m, fn, ctx, &opt, rows, ds, err);
    for (size_t i = 0, k = 0; st == AQ_OK && rank == 0 && table && i < n; i++) {
        if (!aq_coop_sched_taken(cs, i)) {
            table[i] = rows[k++];
            continue;
        }
        char *path = NULL;
        st = aq_result_path(c->work, tasks[i].layer, tasks[i].option, &path, err);
        if (st == AQ_OK) st = aq_result_check(path, tasks[i].layer, tasks[i].option, &tasks[i].fp, &table[i], err);
        free(path);
    }
    st = aq_pipe_agree(comm, st, err);
    ds->total += cs->n_coop + cs->n_early;
    ds->reused += cs->reused;
    ds->computed += cs->computed + cs->n_early; /* early ones: computed or kept, counted as computed */
    ((cal_ctx *)ctx)->map = NULL;
    free(map);
    free(rest);
    free(rows);
    return st;
}

aq_status aq_pipe_calibrate(MPI_Comm comm, const aq_pipe_cfg *c, const aq_pipe_plan *p, int resume,
                            int shard, int shards, aq_loss_row **rows, aq_pipe_timing *t, aq_error *err)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    double t0 = aq_progress_now();
    cal_ctx x = {.c = c, .p = p, .stats_fp = aq_pipe_stats_fp(c)};
    aq_dist_task *sub = NULL;
    size_t n = p->n_tasks;
    const aq_dist_task *tasks = p->tasks;
    aq_status st = AQ_OK;
    if (shards > 0) {
        double *cost = malloc(n * sizeof *cost);
        size_t *idx = malloc(n * sizeof *idx), k = 0;
        sub = malloc(n * sizeof *sub);
        if (!cost || !idx || !sub) st = aq_fail_nomem(err, "shard list", n);
        for (size_t i = 0; st == AQ_OK && i < n; i++) cost[i] = p->tasks[i].cost;
        if (st == AQ_OK) st = aq_dist_shard_tasks(cost, n, shard, shards, idx, &k, err);
        for (size_t i = 0; st == AQ_OK && i < k; i++) sub[i] = p->tasks[idx[i]];
        free(cost);
        free(idx);
        tasks = sub;
        n = k;
        if (st == AQ_OK && rank == 0)
            fprintf(stderr, "adaquant: calibrate: shard %d of %d: %zu of %zu tasks\n", shard, shards, k,
                    p->n_tasks);
    }
    if (st == AQ_OK) st = aq_model_load_lazy(c->model, &x.m, err); /* blocks converted when a task needs them */
    if (st == AQ_OK) st = load_kl_windows(&x, err);
    st = aq_pipe_agree(comm, st, err);
    aq_loss_row *table = NULL;
    if (st == AQ_OK && rank == 0 && rows && !(table = calloc(n ? n : 1, sizeof *table)))
        st = aq_fail_nomem(err, "loss table", n);
    st = aq_pipe_agree(comm, st, err);
    aq_dist_stats ds;
    memset(&ds, 0, sizeof ds);
    aq_coop_sched cs; /* --coop-ranks: the cooperative tasks run first (coop_sched.h) */
    memset(&cs, 0, sizeof cs);
    int size;
    MPI_Comm_size(comm, &size);
    if (st == AQ_OK) st = aq_coop_sched_pick(c, p, aq_model_config(x.m), tasks, n, size, rank == 0 ? stderr : NULL, &cs, err);
    double t_coop = aq_progress_now();
    if (st == AQ_OK)
        st = aq_coop_sched_run(comm, c, p, x.m, &x.stats_fp, tasks, resume, &cs, coop_finish, &x, run_task, &x,
                               rank == 0 ? stderr : NULL, err);
    if (t && cs.n_coop) t->coop += aq_progress_now() - t_coop;
    aq_sens_free(x.sens_part); /* the cooperative share of the KL windows: done */
    x.sens_part = NULL;
    x.part_empty = 0;
    if (st == AQ_OK && !(x.cpu = calloc(n ? n : 1, sizeof *x.cpu))) st = aq_fail_nomem(err, "task CPU seconds", n * 8);
    st = aq_pipe_agree(comm, st, err);
    if (st == AQ_OK) st = run_rest(comm, c, tasks, n, &cs, run_task, &x, resume, table, &ds, err);
    /* each task ran on one rank (0 elsewhere): the sum is its CPU seconds */
    if (st == AQ_OK)
        MPI_Reduce(rank == 0 ? MPI_IN_PLACE : x.cpu, x.cpu, (int)n, MPI_DOUBLE, MPI_SUM, 0, comm);
    if (st == AQ_OK && rank == 0) {
        fprintf(stderr, "adaquant: calibrate: %zu tasks, %zu reused, %zu invalid recomputed, %zu computed\n",
                ds.total, ds.reused, ds.invalid, ds.computed);
        if (shards > 0) st = write_shards(c->work, shards, err);
        if (st == AQ_OK && cs.q > 1) st = aq_coop_sched_write(c->work, tasks, &cs, err);
        if (st == AQ_OK && table) st = write_seconds(c->work, tasks, table, x.cpu, n, err);
    }
    st = aq_pipe_agree(comm, st, err);
    if (st == AQ_OK && rows && rank == 0) *rows = table;
    else free(table);
    if (t) {
        t->calibrate += aq_progress_now() - t0;
        t->reused += ds.reused;
        t->computed += ds.computed;
    }
    free(sub);
    aq_coop_sched_free(&cs);
    free(x.cpu);
    aq_seqs_free(&x.kl);
    aq_sens_free(x.sens);
    aq_block_sens_free(x.bsens);
    aq_model_free(x.m);
    return st;
}
