/* tasks.h — the unit of distributed work: one (layer, option) pair, its cost
 * estimate, and a deterministic scheduling of tasks over ranks.
 *
 * Cost model (arbitrary units ~ flops). AdaQuant in Gram form spends, per
 * task, `iters` full-batch steps of O(d_out·(d_in+1)²) each plus one Gram
 * build of O(N·(d_in+1)²) over the N calibration rows:
 *     cost = iters·d_out·(d_in+1)² + N·(d_in+1)²
 * Only the ratios between tasks matter (they drive the balancing).
 *
 * Order: tasks are identified by their index in a canonical order, sorted by
 * (layer_index, option_index); every rank computes the same order and the same
 * schedule from the same inputs, with no communication. */
#ifndef AQ_DIST_TASKS_H
#define AQ_DIST_TASKS_H

#include <stddef.h>
#include <stdint.h>

#include "../../common/status.h"
#include "../../io/fingerprint.h"

typedef struct aq_dist_task {
    const char *layer;  /* borrowed; part of the result file key */
    const char *option; /* borrowed, e.g. "w4a8" */
    int layer_index;    /* position of the layer in the model (canonical order key 1) */
    int option_index;   /* position of the option in the menu (key 2) */
    double cost;        /* estimate, e.g. aq_dist_task_cost(); must be >= 0 and finite */
    aq_fingerprint fp;  /* expected fingerprint of the task's result file */
} aq_dist_task;

/* The cost estimate above. Arguments must be >= 0. */
double aq_dist_task_cost(int64_t d_out, int64_t d_in, int64_t n_rows, int64_t iters);

/* Sort tasks into the canonical order (layer_index, option_index). AQ_ERR_ARG
 * naming the pair if two tasks share both keys or the same (layer, option)
 * strings, or if a cost is negative/non-finite. */
aq_status aq_dist_tasks_order(aq_dist_task *tasks, size_t n, aq_error *err);

/* Longest processing time first: visit tasks by cost descending (ties: lower
 * index first), give each to the least-loaded rank (ties: lower rank).
 * Tasks with skip[i] != 0 (skip may be NULL) get owner -1. owner[n] is
 * caller-owned; load[nranks] (may be NULL) receives each rank's total.
 * Makespan <= (4/3 - 1/(3·nranks)) · optimum (Graham 1969).
 * AQ_ERR_ARG if nranks < 1, AQ_ERR_NOMEM if scratch space is unavailable. */
aq_status aq_dist_lpt(const double *cost, const unsigned char *skip, size_t n, int nranks, int *owner,
                      double *load, aq_error *err);

/* A static + dynamic schedule. The largest tasks covering (1 - tail_fraction)
 * of the estimated work are assigned by LPT; the rest form the tail queue,
 * handed out on request (smallest last). With one rank there is no tail. */
typedef struct aq_dist_schedule {
    int nranks;
    size_t n;          /* tasks in the task array (scheduled or not) */
    int *owner;        /* [n]: static rank, -1 tail queue, -2 not scheduled (skip) */
    size_t *start;     /* [nranks+1]: rank r's static tasks are list[start[r] .. start[r+1]) */
    size_t *list;      /* static tasks grouped by rank, each group by cost descending */
    size_t *tail;      /* [n_tail]: the queue, by cost descending (ties: index) */
    size_t n_tail;
    double *load;      /* [nranks]: estimated static cost per rank */
    double tail_cost;  /* estimated cost of the tail queue */
} aq_dist_schedule;

/* Build the schedule of the tasks with skip[i] == 0 (skip may be NULL).
 * tail_fraction in [0, 1). Allocates *s's arrays (free with
 * aq_dist_schedule_free). AQ_ERR_ARG for bad nranks/fraction. */
aq_status aq_dist_schedule_build(const double *cost, const unsigned char *skip, size_t n, int nranks,
                                 double tail_fraction, aq_dist_schedule *s, aq_error *err);
void aq_dist_schedule_free(aq_dist_schedule *s);

/* Tasks of shard `shard` of `nshards` (Slurm array mode: no tail queue),
 * balanced by cost with LPT: writes their indices in increasing order to
 * out[] (capacity n) and their number to *count. AQ_ERR_ARG for a shard
 * outside [0, nshards). */
aq_status aq_dist_shard_tasks(const double *cost, size_t n, int shard, int nshards, size_t *out,
                              size_t *count, aq_error *err);

/* The indices of the tasks with skip[i] == 0 (skip may be NULL) by cost
 * descending, ties by index: malloc'd (free it), *m = their count; NULL when
 * out of memory. The order LPT visits them in. */
size_t *aq_dist_by_cost(const double *cost, const unsigned char *skip, size_t n, size_t *m);

/* Cooperative tasks (issue 14; docs/COOP.md, "Scheduling"). Task i runs on a
 * sub-grid of q ranks when eligible[i] (the cooperative path runs its option
 * and its layer fits the grid) and either too_big[i] (it fits no single rank;
 * too_big may be NULL) or its cost exceeds threshold * total / q, total = the
 * sum of the costs of all the run's tasks, given by the caller: a shard sees
 * only some of them (threshold 0: every eligible task). total / q and not
 * total / P: which tasks are cooperative decides their output bytes, so it
 * must not depend on P (at P = q it is the rule "cost > total / P").
 * coop[n] receives 0/1; returns the number chosen. */
size_t aq_dist_coop_pick(const double *cost, const unsigned char *eligible, const unsigned char *too_big,
                         size_t n, double total, int q, double threshold, unsigned char *coop);

/* The block size of a layer of d_out rows on a 1 x q grid: 64 (docs/COOP.md),
 * halved until every rank owns a block of rows (d_out > (q - 1) nb); 0 when
 * even nb = 1 does not fit (d_out < q). A function of the shape and q only. */
int aq_dist_coop_nb(int64_t d_out, int q);

#endif
