/* pipeline_run.c — the pipeline commands as compositions of the stages:
 * quantize = check everything, capture, calibrate, solve, write; the stage
 * commands run one stage each from the settings the work directory records.
 * Every function is collective over comm and returns the same status on
 * every rank. */
#include <stdlib.h>
#include <string.h>

#include "collect.h"
#include "memory.h"
#include "pipeline_run.h"
#include "pipeline_size.h"
#include "plan.h"
#include "progress.h"
#include "refine.h"
#include "sens_loss.h"
#include "stage_sequential.h"
#include "stage_solve.h"

/* Rank 0 decided cfg (paths, fingerprints): give every rank the same bytes. */
static void bcast_cfg(MPI_Comm comm, aq_pipe_cfg *c)
{
    MPI_Bcast(c, (int)sizeof *c, MPI_BYTE, 0, comm);
}

static aq_status solve_and_write(MPI_Comm comm, const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_args *a,
                                 aq_loss_row *rows, aq_pipe_timing *t, aq_error *err)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    size_t nc = (size_t)(p->n_layers + p->n_extra); /* the linears, then the tensor menu's tensors */
    int *choice = calloc(nc, sizeof *choice);
    aq_loss_row *read = NULL;
    aq_status st = choice ? AQ_OK : aq_fail_nomem(err, "choice", nc);
    double t0 = aq_progress_now();
    if (st == AQ_OK && rank == 0) st = aq_pipe_solve(c, p, &a->budget, rows, rows ? NULL : &read, choice, err);
    st = aq_pipe_agree(comm, st, err);
    if (st == AQ_OK) st = aq_dist_bcast_choice(comm, 0, choice, nc, err);
    if (st == AQ_OK && a->budget.refine > 0)
        st = aq_pipe_refine(comm, c, p, &a->budget, rows ? rows : read, choice, a->budget.refine, err);
    t->solve += aq_progress_now() - t0;
    if (st == AQ_OK && c->sequential) {
        aq_pipe_cfg *sc = malloc(sizeof *sc);
        aq_pipe_plan sp;
        st = sc ? aq_pipe_sequential(comm, c, p, choice, a->resume, sc, &sp, t, err)
                : aq_fail_nomem(err, "sequential cfg", sizeof *sc);
        if (st == AQ_OK) {
            st = aq_pipe_write(comm, sc, &sp, &a->budget, rows ? rows : read, choice, &a->out, t, err);
            aq_pipe_plan_free(&sp);
        }
        free(sc);
    } else if (st == AQ_OK) {
        st = aq_pipe_write(comm, c, p, &a->budget, rows ? rows : read, choice, &a->out, t, err);
    }
    free(read);
    free(choice);
    return st;
}

aq_status aq_pipe_run_quantize(MPI_Comm comm, aq_pipe_args *a, aq_error *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    aq_pipe_timing t = {.ranks = size, .mem_base = aq_mem_current_rss()};
    aq_pipe_cfg *c = &a->cfg;
    c->max_rank_memory = a->max_rank_memory; /* with --coop-ranks it picks cooperative tasks (memory.h) */
    aq_status st = AQ_OK;
    /* every check before any work */
    if (rank == 0) {
        st = aq_pipe_out_check(&a->out, err);
        if (st == AQ_OK) st = aq_pipe_check_inputs(c, err);
        if (st == AQ_OK) st = aq_pipe_cfg_fingerprint(c, err);
        if (st == AQ_OK) st = aq_pipe_loss_resolve(c, err); /* --loss auto, by model size */
        if (st == AQ_OK) st = aq_mem_check(c, &a->out, size, a->max_rank_memory, err); /* issue 13 */
    }
    AQ_TRY(aq_pipe_agree(comm, st, err));
    bcast_cfg(comm, c);
    aq_pipe_plan p;
    AQ_TRY(aq_pipe_plan_build(c, &p, err));
    st = aq_pipe_budget_check(c, &p, &a->budget, err);
    aq_loss_row *rows = NULL;
    aq_plan_hook ph = {0}; /* the planner's prediction, when rates are cached (plan.h) */
    if (st == AQ_OK && rank == 0) aq_plan_hook_begin(c, &a->out, size, &ph, stderr);
    if (st == AQ_OK) st = aq_pipe_capture(comm, c, a->resume, &t, err);
    if (st == AQ_OK) st = aq_pipe_calibrate(comm, c, &p, a->resume, -1, 0, &rows, &t, err);
    if (st == AQ_OK) st = solve_and_write(comm, c, &p, a, rows, &t, err);
    if (st == AQ_OK && rank == 0) {
        printf("quantized model written to %s (work directory %s)\n", a->out.outdir, c->work);
        printf("phases: capture %.2f s, calibrate %.2f s, solve %.2f s, tune %.2f s, eval %.2f s, write %.2f s on %d rank%s\n",
               t.capture, t.calibrate, t.solve, t.tune, t.eval, t.write, size, size > 1 ? "s" : "");
        aq_mem_print(stdout, &t); /* predicted and measured peak per rank (issue 13) */
        aq_plan_hook_end(&ph, &t, stderr);
    }
    free(rows);
    aq_pipe_plan_free(&p);
    return st;
}

aq_status aq_pipe_run_capture(MPI_Comm comm, aq_pipe_args *a, aq_error *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    aq_status st = AQ_OK;
    if (rank == 0) {
        st = aq_pipe_check_inputs(&a->cfg, err);
        if (st == AQ_OK) st = aq_pipe_cfg_fingerprint(&a->cfg, err);
        if (st == AQ_OK) st = aq_pipe_loss_resolve(&a->cfg, err);
        if (st == AQ_OK) st = aq_mem_check(&a->cfg, NULL, size, a->max_rank_memory, err); /* issue 13 */
    }
    AQ_TRY(aq_pipe_agree(comm, st, err));
    bcast_cfg(comm, &a->cfg);
    aq_pipe_plan p; /* validates the model geometry and options */
    AQ_TRY(aq_pipe_plan_build(&a->cfg, &p, err));
    st = aq_pipe_capture(comm, &a->cfg, a->resume, NULL, err);
    if (st == AQ_OK && rank == 0)
        printf("captured statistics in %s/stats; %zu tasks to calibrate (%d layers x %d options)\n", a->cfg.work,
               p.n_tasks, p.n_layers, a->cfg.n_options);
    aq_pipe_plan_free(&p);
    return st;
}

/* calibrate and solve: the settings come from the work directory. */
static aq_status load_work(MPI_Comm comm, const char *work, aq_pipe_cfg *c, aq_pipe_plan *p, aq_error *err)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    aq_status st = rank == 0 ? aq_pipe_cfg_read(work, c, err) : AQ_OK;
    AQ_TRY(aq_pipe_agree(comm, st, err));
    bcast_cfg(comm, c);
    return aq_pipe_plan_build(c, p, err);
}

aq_status aq_pipe_run_calibrate(MPI_Comm comm, aq_pipe_args *a, aq_error *err)
{
    aq_pipe_cfg c;
    aq_pipe_plan p;
    AQ_TRY(load_work(comm, a->cfg.work, &c, &p, err));
    c.coop_ranks = a->cfg.coop_ranks; /* run settings, not in settings.json */
    c.coop_threshold = a->cfg.coop_threshold;
    c.max_rank_memory = a->max_rank_memory; /* as quantize: refuse before work, feed the cooperative choice */
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    aq_status st = rank == 0 ? aq_mem_check_phase(&c, NULL, size, a->max_rank_memory, AQ_MEM_CALIBRATE, err) : AQ_OK;
    st = aq_pipe_agree(comm, st, err);
    if (st == AQ_OK) st = aq_pipe_calibrate(comm, &c, &p, 1, a->shard, a->shards, NULL, NULL, err);
    aq_pipe_plan_free(&p);
    return st;
}

aq_status aq_pipe_run_solve(MPI_Comm comm, aq_pipe_args *a, aq_error *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    aq_pipe_cfg c;
    aq_pipe_plan p;
    aq_status st = rank == 0 ? aq_pipe_out_check(&a->out, err) : AQ_OK;
    AQ_TRY(aq_pipe_agree(comm, st, err));
    AQ_TRY(load_work(comm, a->cfg.work, &c, &p, err));
    aq_pipe_timing t = {.ranks = size, .mem_base = aq_mem_current_rss()};
    c.gguf = a->cfg.gguf; /* --out-format is solve's own; settings.json records the menus capture chose */
    st = c.gguf ? aq_pipe_gguf_menu_check(&c, " (the work's menus: run capture with --out-format gguf)", err) : AQ_OK;
    if (st == AQ_OK) st = aq_pipe_budget_check(&c, &p, &a->budget, err);
    if (st == AQ_OK) st = solve_and_write(comm, &c, &p, a, NULL, &t, err);
    if (st == AQ_OK && rank == 0) printf("quantized model written to %s\n", a->out.outdir);
    aq_pipe_plan_free(&p);
    return st;
}
