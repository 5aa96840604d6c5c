/* coop_sched.h — the calibrate stage's cooperative phase (issue 14, item 2;
 * docs/COOP.md, "Scheduling"): with --coop-ranks Q, the tasks chosen by
 * aq_dist_coop_pick (tasks.h) run first, each on a sub-communicator of Q
 * consecutive ranks through the cooperative path (coop.h), the groups taking
 * them by LPT; then every rank takes the other tasks through the driver (LPT
 * plus the dynamic tail). Which tasks are cooperative and the grid shape
 * (1 x Q, block aq_dist_coop_nb) depend on the run settings and the shapes
 * only, so a given Q gives the same bytes at any P >= Q. */
#ifndef AQ_DIST_COOP_SCHED_H
#define AQ_DIST_COOP_SCHED_H

#include <stdio.h>

#include <mpi.h>

#include "../../src/adaquant/adaquant.h"
#include "../../src/model/model.h"
#include "coop.h"
#include "driver.h"
#include "pipeline.h"

typedef struct aq_coop_sched {
    int q;                /* --coop-ranks */
    size_t n, n_coop;     /* tasks, of which cooperative */
    unsigned char *coop;  /* [n] 1 = cooperative */
    int *nb;              /* [n] block size of the cooperative ones */
    double *seconds;      /* [n] wall time of each cooperative task (rank 0, after the phase; 0 = reused) */
    int *group;           /* [n] the group (of Q ranks) that ran it */
    unsigned char *early; /* [n] single-rank tasks the P mod Q ranks outside every group ran meanwhile */
    size_t reused, computed, n_early;
} aq_coop_sched;

/* Which of tasks[n] run cooperatively (c->coop_ranks > 1; else none): the
 * eligible ones (a linear layer, an option the path runs, a layer with rows
 * for every rank) whose cost exceeds c->coop_threshold x total / Q, total =
 * the cost of all p's tasks, or which fit no rank alone under
 * c->max_rank_memory (memory.h aq_mem_task_too_big; mc: the model's config,
 * NULL = the cost rule only). Pure (the same on every rank, at every P). log
 * (rank 0's stderr, or NULL) gets what was chosen and why tasks stayed
 * single-rank. AQ_ERR_ARG when Q exceeds nranks, or naming a task that fits
 * no rank alone and cannot go cooperative (no --coop-ranks, its option, its
 * rows). */
aq_status aq_coop_sched_pick(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_llama_config *mc,
                             const aq_dist_task *tasks, size_t n, int nranks, FILE *log, aq_coop_sched *cs,
                             aq_error *err);
void aq_coop_sched_free(aq_coop_sched *cs);

/* Finish a task, collective over its group sub (every member holds the whole
 * result): r is the run's result, r2 (or NULL) the RTN start's under --init
 * best; measure (the network KL split over the members), keep one, write the
 * result file at path on the first member; t_start: when the task began
 * (aq_progress_now). */
typedef aq_status (*aq_coop_finish_fn)(void *ctx, MPI_Comm sub, const aq_dist_task *task, aq_layer_result *r,
                                       aq_layer_result *r2, const char *path, double t_start, aq_error *err);

/* Collective over comm: run the cooperative tasks (with resume, valid result
 * files are kept). m: the model (every rank); stats_fp: the statistics'
 * fingerprint. Meanwhile the P mod Q ranks outside every group run
 * single-rank tasks with single(single_ctx, task, index, path, NULL, err),
 * the cheapest first, dealt round-robin, until every group is done; they are
 * marked in cs->early (the same on every rank after the phase). A task's
 * result does not depend on the rank that runs it, so the bytes do not
 * change. Rank 0 prints one line per task (layer, option, ranks, block,
 * seconds) to log (may be NULL). The same status on every rank. */
aq_status aq_coop_sched_run(MPI_Comm comm, const aq_pipe_cfg *c, const aq_pipe_plan *p, aq_model *m,
                            const aq_fingerprint *stats_fp, const aq_dist_task *tasks, int resume,
                            aq_coop_sched *cs, aq_coop_finish_fn fn, void *ctx, aq_dist_task_fn single,
                            void *single_ctx, FILE *log, aq_error *err);
/* Task i is done when the driver starts: cooperative, or run early. */
int aq_coop_sched_taken(const aq_coop_sched *cs, size_t i);

/* Collective-free, on each member of g's group: the Gram columns this member
 * owns, streamed from the statistics file of (block, point) in work
 * (coop_stats.c: every check of aq_stats_read; no member holds the whole
 * Gram). d_in: the layer's input width (checked against the file). */
aq_status aq_coop_gram_from_stats(const aq_coop_grid *g, const char *work, int block, int point,
                                  const aq_fingerprint *fp, size_t d_in, aq_coop_gram *out, aq_error *err);

/* Rank 0: WORK/coop.json, {"coop_ranks": Q, "tasks": [{"layer", "option",
 * "ranks", "block", "group", "seconds"}...]} (the report reads it). */
aq_status aq_coop_sched_write(const char *work, const aq_dist_task *tasks, const aq_coop_sched *cs,
                              aq_error *err);

#endif
