/* coop_sched.c — the calibrate stage's cooperative phase (coop_sched.h):
 * which tasks go to sub-grids of Q ranks, the groups running them, and the
 * record of what ran where. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "../../io/atomic_file.h"
#include "coop.h"
#include "coop_sched.h"
#include "memory.h"
#include "progress.h"
#include "scalapack.h"
#include "stage_calibrate.h"

void aq_coop_sched_free(aq_coop_sched *cs)
{
    free(cs->coop);
    free(cs->nb);
    free(cs->seconds);
    free(cs->group);
    free(cs->early);
    memset(cs, 0, sizeof *cs);
}

int aq_coop_sched_taken(const aq_coop_sched *cs, size_t i)
{
    return (cs->coop && cs->coop[i]) || (cs->early && cs->early[i]);
}

static void log_pick(FILE *log, const aq_pipe_cfg *c, const aq_coop_sched *cs, size_t n_act, size_t n_rows,
                     size_t n_other, size_t n_big)
{
    if (!log) return;
    fprintf(log, "adaquant: calibrate: cooperative: %zu of %zu tasks on sub-grids of %d ranks "
            "(cost > %g x total / %d", cs->n_coop, cs->n, cs->q, c->coop_threshold, cs->q);
    if (c->max_rank_memory > 0)
        fprintf(log, ", or over --max-rank-memory %.1f MiB alone: %zu tasks", c->max_rank_memory / 1048576.0, n_big);
    fprintf(log, ")\n");
    if (n_act)
        fprintf(log, "adaquant: calibrate: cooperative: %zu tasks kept single-rank: their option quantizes "
                "activations or is a group format (the cooperative path runs per-row a16 options only, docs/COOP.md)\n", n_act);
    if (n_rows)
        fprintf(log, "adaquant: calibrate: cooperative: %zu tasks kept single-rank: the layer has fewer than "
                "%d output rows (one per rank)\n", n_rows, cs->q);
    if (n_other)
        fprintf(log, "adaquant: calibrate: cooperative: %zu tasks kept single-rank: tensor menu "
                "(embedding, classifier)\n", n_other);
}

/* --max-rank-memory: the tasks that fit no rank alone (too_big[i]); a task
 * among them the path cannot take (its option, its rows) is refused, naming
 * it and what would fit. */
static aq_status mark_too_big(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_llama_config *mc,
                              const aq_dist_task *tasks, size_t n, const unsigned char *ok, unsigned char *too_big,
                              size_t *n_big, aq_error *err)
{
    *n_big = 0;
    for (size_t i = 0; mc && c->max_rank_memory > 0 && i < n; i++) {
        if (tasks[i].layer_index >= p->n_layers) continue; /* the tensor menu: round-to-nearest, small */
        const aq_pipe_layer *L = &p->layers[tasks[i].layer_index];
        if (!(too_big[i] = (unsigned char)aq_mem_task_too_big(c, mc, L->d_out, L->d_in))) continue;
        (*n_big)++;
        if (ok[i] && c->coop_ranks > 1) continue;
        double gi = 1024.0 * 1024 * 1024, one = aq_mem_task_bytes(c, mc, L->d_out, L->d_in, 1);
        return aq_fail(err, AQ_ERR_ARG, "--max-rank-memory (plan: --mem-per-rank) %.3f GiB: task %s %s needs %.3f GiB on one rank "
                       "(docs/MEMORY.md) and %s", c->max_rank_memory / gi, tasks[i].layer, tasks[i].option, one / gi,
                       c->coop_ranks <= 1 ? "no --coop-ranks was given: it would fit with --coop-ranks 2 or more "
                       "memory per rank (quantize names the sub-grid before any work)"
                       : "the cooperative path cannot take it (per-row a16 options only, a row per rank): "
                       "drop the option or give more memory per rank");
    }
    return AQ_OK;
}

aq_status aq_coop_sched_pick(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_llama_config *mc,
                             const aq_dist_task *tasks, size_t n, int nranks, FILE *log, aq_coop_sched *cs,
                             aq_error *err)
{
    memset(cs, 0, sizeof *cs);
    cs->q = c->coop_ranks;
    cs->n = n;
    if (cs->q > nranks)
        return aq_fail(err, AQ_ERR_ARG, "--coop-ranks %d needs at least %d ranks; this run has %d (mpirun -np)",
                       cs->q, cs->q, nranks);
    unsigned char *ok = calloc(n ? n : 1, 1), *big = calloc(n ? n : 1, 1);
    double *cost = malloc((n ? n : 1) * sizeof *cost);
    cs->coop = calloc(n ? n : 1, 1);
    cs->nb = calloc(n ? n : 1, sizeof *cs->nb);
    cs->seconds = calloc(n ? n : 1, sizeof *cs->seconds);
    cs->group = calloc(n ? n : 1, sizeof *cs->group);
    aq_status st = ok && big && cost && cs->coop && cs->nb && cs->seconds && cs->group
                       ? AQ_OK : aq_fail_nomem(err, "cooperative task list", n * 32);
    size_t n_act = 0, n_rows = 0, n_other = 0, n_big = 0;
    for (size_t i = 0; i < n && st == AQ_OK && cs->q > 1; i++) {
        cost[i] = tasks[i].cost;
        if (tasks[i].layer_index >= p->n_layers) {
            n_other++;
            continue;
        }
        aq_layer_opts o;
        st = aq_pipe_layer_opts(c, tasks[i].option, &o, err);
        cs->nb[i] = aq_dist_coop_nb(p->layers[tasks[i].layer_index].d_out, cs->q);
        if (st != AQ_OK) break;
        if (!aq_coop_runs_option(&o)) n_act++;
        else if (!cs->nb[i]) n_rows++;
        else ok[i] = 1;
    }
    double total = 0; /* over all the run's tasks: a shard sees only its own */
    for (size_t i = 0; i < p->n_tasks; i++) total += p->tasks[i].cost;
    if (st == AQ_OK) st = mark_too_big(c, p, mc, tasks, n, ok, big, &n_big, err);
    if (st == AQ_OK && cs->q > 1) cs->n_coop = aq_dist_coop_pick(cost, ok, big, n, total, cs->q, c->coop_threshold, cs->coop);
    free(ok);
    free(big);
    free(cost);
    if (st != AQ_OK) {
        aq_coop_sched_free(cs);
        return st;
    }
    if (cs->q > 1) log_pick(log, c, cs, n_act, n_rows, n_other, n_big);
    return AQ_OK;
}

/* <work>/results on rank 0 (the driver makes it too, later). */
static aq_status results_dir(const char *work, aq_error *err)
{
    char path[AQ_PIPE_PATH];
    aq_pipe_path(work, "results", path);
    AQ_TRY(aq_mkdir_once(work, "work directory", err));
    return aq_mkdir_once(path, "results directory", err);
}

/* One cooperative task on grid members of sub (collective over sub). */
static aq_status run_one(MPI_Comm sub, const aq_pipe_cfg *c, const aq_pipe_plan *p, aq_model *m,
                         const aq_fingerprint *stats_fp, const aq_dist_task *t, int nb, aq_coop_finish_fn fn,
                         void *ctx, const char *path, aq_error *err)
{
    double t0 = aq_progress_now();
    aq_layer_opts o;
    aq_coop_grid g;
    aq_coop_gram gr;
    memset(&g, 0, sizeof g);
    memset(&gr, 0, sizeof gr);
    const aq_pipe_layer *L = &p->layers[t->layer_index];
    const float *weight = NULL;
    int d_out = 0, d_in = 0;
    /* a lazily loaded model (stage_calibrate.c) holds this task's block only while it runs */
    aq_status st = aq_model_block_acquire(m, L->block, err);
    int held = st == AQ_OK;
    if (st == AQ_OK) st = aq_model_linear(m, L->block, (aq_linear)L->which, &weight, &d_out, &d_in, err);
    if (st == AQ_OK) st = aq_pipe_layer_opts(c, t->option, &o, err);
    st = aq_pipe_agree(sub, st, err);
    if (st == AQ_OK) st = aq_coop_grid_init(&g, sub, nb, err);
    /* each member streams the statistics file and keeps its Gram columns only */
    if (st == AQ_OK)
        st = aq_coop_gram_from_stats(&g, c->work, L->block, L->point, stats_fp, (size_t)d_in, &gr, err);
    st = aq_pipe_agree(sub, st, err);
    aq_coop_problem cp = {L->name, (size_t)d_out, (size_t)d_in, weight,
                          held ? aq_model_linear_bias(m, L->block, (aq_linear)L->which) : NULL, &gr};
    aq_layer_result r, r2;
    memset(&r, 0, sizeof r);
    memset(&r2, 0, sizeof r2);
    if (st == AQ_OK) st = aq_coop_layer_run(&g, &cp, &o, &r, NULL, err);
    int best = c->init_gptq == 2; /* --init best: the RTN start too (stage_calibrate.c) */
    if (st == AQ_OK && best) {
        o.init = AQ_INIT_RTN;
        st = aq_coop_layer_run(&g, &cp, &o, &r2, NULL, err);
    }
    if (st == AQ_OK) st = fn(ctx, sub, t, &r, best ? &r2 : NULL, path, t0, err); /* collective: the KL is split */
    st = aq_pipe_agree(sub, st, err);
    aq_layer_result_free(&r);
    aq_layer_result_free(&r2);
    aq_coop_gram_free(&gr);
    if (g.q > 0) aq_coop_grid_free(&g);
    if (held) aq_model_block_release(m, L->block);
    return st;
}

/* With resume: is the task's result file already valid? (decided by the
 * group's first rank, the same answer on all members) */
static int reusable(MPI_Comm sub, const aq_dist_task *t, const char *path)
{
    int me, ok = 0;
    MPI_Comm_rank(sub, &me);
    if (me == 0) {
        aq_loss_row row;
        aq_error e = {0};
        ok = aq_result_check(path, t->layer, t->option, &t->fp, &row, &e) == AQ_OK;
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, sub);
    return ok;
}

/* Where a group's first rank prints a line per finished cooperative task (the
 * driver's progress covers the single-rank tasks only): stderr unless
 * AQ_PROGRESS (progress.h, exported by the command) is "none". */
static FILE *progress_stream(MPI_Comm sub)
{
    int me;
    MPI_Comm_rank(sub, &me);
    const char *env = getenv("AQ_PROGRESS");
    aq_progress_mode m = AQ_PROGRESS_AUTO;
    if (env && *env) aq_progress_mode_parse(env, &m);
    return me == 0 && m != AQ_PROGRESS_NONE ? stderr : NULL;
}

/* This group's tasks (owner == mine) by cost descending, then run each. */
static aq_status run_group(MPI_Comm sub, int mine, const int *owner, const double *cost, const aq_pipe_cfg *c,
                           const aq_pipe_plan *p,
                           aq_model *m, const aq_fingerprint *stats_fp, const aq_dist_task *tasks, int resume,
                           aq_coop_sched *cs, double *secs, aq_coop_finish_fn fn, void *ctx, aq_error *err)
{
    unsigned char *skip = malloc(cs->n ? cs->n : 1);
    size_t nk = 0, *k = NULL;
    for (size_t i = 0; skip && i < cs->n; i++) skip[i] = !(cs->coop[i] && owner[i] == mine);
    if (skip) k = aq_dist_by_cost(cost, skip, cs->n, &nk);
    free(skip);
    if (!k) return aq_fail_nomem(err, "cooperative order", cs->n * sizeof *k);
    aq_status st = AQ_OK;
    FILE *prog = progress_stream(sub);
    for (size_t j = 0; j < nk && st == AQ_OK; j++) {
        const aq_dist_task *t = &tasks[k[j]];
        char *path = NULL;
        st = aq_result_path(c->work, t->layer, t->option, &path, err);
        if (st == AQ_OK && resume && reusable(sub, t, path)) {
            cs->reused++;
        } else if (st == AQ_OK) {
            double t0 = aq_progress_now();
            st = run_one(sub, c, p, m, stats_fp, t, cs->nb[k[j]], fn, ctx, path, err);
            secs[k[j]] = aq_progress_now() - t0;
            cs->computed++;
        }
        if (st == AQ_OK && prog) /* stderr only: nothing of the output depends on it */
            fprintf(prog, "adaquant: calibrate: cooperative group %d: task %zu/%zu %s %s on %d ranks: %s %.2f s\n",
                    mine, j + 1, nk, t->layer, t->option, cs->q, secs[k[j]] > 0 ? "done in" : "reused,", secs[k[j]]);
        free(path);
    }
    free(k);
    return st;
}

static void log_tasks(FILE *log, const aq_dist_task *tasks, const aq_coop_sched *cs)
{
    if (!log) return;
    for (size_t i = 0; i < cs->n; i++)
        if (cs->coop[i])
            fprintf(log, "adaquant: calibrate: cooperative task %s %s: %d ranks (group %d, block %d), %s %.2f s\n",
                    tasks[i].layer, tasks[i].option, cs->q, cs->group[i], cs->nb[i],
                    cs->seconds[i] > 0 ? "ran in" : "reused,", cs->seconds[i]);
}

/* A rank outside every group (idle = its index among them, of n_idle): the
 * single-rank tasks by cost ascending, every n_idle-th from idle, the first
 * one always, the next ones while the groups still work (done: the barrier
 * every rank enters when its part of the phase ends). With resume, a valid
 * result file is kept. */
static aq_status run_idle(MPI_Comm comm, const aq_pipe_cfg *c, const aq_dist_task *tasks, int resume,
                          aq_coop_sched *cs, int idle, int n_idle, aq_dist_task_fn single, void *sctx,
                          MPI_Request *done, aq_error *err)
{
    size_t nk = 0, *k;
    int rank;
    MPI_Comm_rank(comm, &rank);
    double *neg = malloc((cs->n ? cs->n : 1) * sizeof *neg);
    if (!neg) return aq_fail_nomem(err, "idle ranks' order", cs->n * 8);
    for (size_t i = 0; i < cs->n; i++) neg[i] = -tasks[i].cost; /* by cost descending of -cost: cheapest first */
    k = aq_dist_by_cost(neg, cs->coop, cs->n, &nk);
    free(neg);
    if (!k) return aq_fail_nomem(err, "idle ranks' order", cs->n * 8);
    FILE *prog = progress_stream(MPI_COMM_SELF);
    aq_status st = AQ_OK;
    int flag = 0;
    /* the test follows each task: an idle rank runs at least its first one */
    for (size_t j = (size_t)idle; j < nk && st == AQ_OK && !flag; j += (size_t)n_idle) {
        const aq_dist_task *t = &tasks[k[j]];
        char *path = NULL;
        st = aq_result_path(c->work, t->layer, t->option, &path, err);
        aq_loss_row row;
        aq_error e = {0};
        double t0 = aq_progress_now();
        int kept = st == AQ_OK && resume && aq_result_check(path, t->layer, t->option, &t->fp, &row, &e) == AQ_OK;
        if (st == AQ_OK && !kept) st = single(sctx, t, k[j], path, NULL, err);
        if (st == AQ_OK) cs->early[k[j]] = 1;
        if (st == AQ_OK && prog)
            fprintf(prog, "adaquant: calibrate: cooperative phase: rank %d (outside the groups) ran %s %s: %s %.2f s\n",
                    rank, t->layer, t->option, kept ? "reused," : "done in", aq_progress_now() - t0);
        free(path);
        MPI_Test(done, &flag, MPI_STATUS_IGNORE);
    }
    free(k);
    return st;
}

aq_status aq_coop_sched_run(MPI_Comm comm, const aq_pipe_cfg *c, const aq_pipe_plan *p, aq_model *m,
                            const aq_fingerprint *stats_fp, const aq_dist_task *tasks, int resume,
                            aq_coop_sched *cs, aq_coop_finish_fn fn, void *ctx, aq_dist_task_fn single,
                            void *single_ctx, FILE *log, aq_error *err)
{
    if (!cs->n_coop) return AQ_OK;
    int rank, size, bme, bnp;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    Cblacs_pinfo(&bme, &bnp); /* BLACS's own set-up is collective over MPI_COMM_WORLD: all at once */
    int groups = size / cs->q, mine = rank / cs->q < groups ? rank / cs->q : -1;
    MPI_Comm sub = MPI_COMM_NULL;
    int *owner = malloc(cs->n * sizeof *owner);
    double *cost = malloc(cs->n * sizeof *cost), *secs = calloc(cs->n, sizeof *secs);
    unsigned char *skip = malloc(cs->n);
    cs->early = calloc(cs->n, 1);
    aq_status st = owner && cost && secs && skip && cs->early ? AQ_OK
                   : aq_fail_nomem(err, "cooperative schedule", cs->n * 24);
    for (size_t i = 0; st == AQ_OK && i < cs->n; i++) {
        cost[i] = tasks[i].cost;
        skip[i] = !cs->coop[i];
    }
    /* the groups take the cooperative tasks by LPT (the extra P mod Q ranks run single-rank ones, run_idle) */
    if (st == AQ_OK) st = aq_dist_lpt(cost, skip, cs->n, groups, owner, NULL, err);
    if (st == AQ_OK && rank == 0) st = results_dir(c->work, err);
    if (st == AQ_OK) st = aq_coop_split(comm, cs->q, &sub, err);
    st = aq_pipe_agree(comm, st, err);
    /* every rank enters the barrier when its part ends: the groups after their
     * tasks, the ranks outside them at once (they work until it completes) */
    MPI_Request done = MPI_REQUEST_NULL;
    if (st == AQ_OK && mine >= 0) {
        st = run_group(sub, mine, owner, cost, c, p, m, stats_fp, tasks, resume, cs, secs, fn, ctx, err);
        MPI_Ibarrier(comm, &done);
    } else if (st == AQ_OK) {
        MPI_Ibarrier(comm, &done);
        if (single) st = run_idle(comm, c, tasks, resume, cs, rank - groups * cs->q, size - groups * cs->q, single,
                                  single_ctx, &done, err);
    }
    if (done != MPI_REQUEST_NULL) MPI_Wait(&done, MPI_STATUS_IGNORE);
    st = aq_pipe_agree(comm, st, err);
    if (st == AQ_OK) { /* which tasks ran early, on every rank */
        MPI_Allreduce(MPI_IN_PLACE, cs->early, (int)cs->n, MPI_UNSIGNED_CHAR, MPI_MAX, comm);
        cs->n_early = 0;
        for (size_t i = 0; i < cs->n; i++) cs->n_early += cs->early[i];
        if (rank == 0 && log && cs->n_early)
            fprintf(log, "adaquant: calibrate: cooperative phase: the %d rank%s outside the groups ran %zu single-rank "
                    "tasks meanwhile\n", size - groups * cs->q, size - groups * cs->q > 1 ? "s" : "", cs->n_early);
    }
    if (st == AQ_OK) {
        size_t counts[2] = {cs->reused, cs->computed}, tot[2] = {0, 0};
        int me_sub = 0;
        if (sub != MPI_COMM_NULL) MPI_Comm_rank(sub, &me_sub);
        if (me_sub != 0) counts[0] = counts[1] = 0; /* one count per group */
        MPI_Reduce(secs, cs->seconds, (int)cs->n, MPI_DOUBLE, MPI_MAX, 0, comm);
        MPI_Reduce(counts, tot, 2, MPI_UNSIGNED_LONG, MPI_SUM, 0, comm);
        cs->reused = tot[0];
        cs->computed = tot[1];
        for (size_t i = 0; i < cs->n; i++) cs->group[i] = cs->coop[i] ? owner[i] : -1;
        if (rank == 0) log_tasks(log, tasks, cs);
    }
    if (sub != MPI_COMM_NULL) MPI_Comm_free(&sub);
    free(owner);
    free(cost);
    free(secs);
    free(skip);
    return st;
}

aq_status aq_coop_sched_write(const char *work, const aq_dist_task *tasks, const aq_coop_sched *cs,
                              aq_error *err)
{
    json_t *o = json_object(), *a = json_array();
    for (size_t i = 0; i < cs->n; i++) {
        if (!cs->coop[i]) continue;
        json_t *t = json_object();
        json_object_set_new(t, "layer", json_string(tasks[i].layer));
        json_object_set_new(t, "option", json_string(tasks[i].option));
        json_object_set_new(t, "ranks", json_integer(cs->q));
        json_object_set_new(t, "block", json_integer(cs->nb[i]));
        json_object_set_new(t, "group", json_integer(cs->group[i]));
        json_object_set_new(t, "seconds", json_real(cs->seconds[i]));
        json_array_append_new(a, t);
    }
    json_object_set_new(o, "coop_ranks", json_integer(cs->q));
    json_object_set_new(o, "tasks", a);
    char *txt = json_dumps(o, JSON_INDENT(1));
    json_decref(o);
    if (!txt) return aq_fail_nomem(err, "coop.json", 0);
    char path[AQ_PIPE_PATH];
    aq_pipe_path(work, "coop.json", path);
    aq_status st = aq_atomic_write_file(path, txt, strlen(txt), err);
    free(txt);
    return st;
}
