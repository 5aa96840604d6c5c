/* driver.h — run a list of (layer, option) tasks over the ranks of an MPI
 * communicator, one result file per task in WORK/results/, resumable.
 *
 * Flow (all ranks call aq_dist_run collectively with the same tasks):
 *  1. with resume, the existing result files are validated in parallel
 *     (CRC, fingerprint, key); valid ones are reused, invalid ones reported
 *     and recomputed;
 *  2. the remaining tasks are scheduled: LPT over the ranks for the largest
 *     tasks, a tail queue of the smallest ones served by rank 0 on request
 *     (workers ask one task ahead, so the answer is usually ready; rank 0
 *     works too and answers between its tasks and whenever a task calls
 *     aq_dist_poll);
 *  3. each task runs the callback, which writes the result file (atomically);
 *     the driver re-reads and validates it, and takes the loss row from it;
 *  4. the rows are gathered to rank 0 into the table in task order.
 * Progress (done/total, last layer/option/loss, throughput, ETA) is printed
 * by rank 0. aq_dist_run returns AQ_OK only when every task has a valid
 * result file, so callers write final outputs only after it succeeded.
 *
 * Failure: a callback error, or the test hook AQ_FAIL_AT="RANK:TASK[:MODE]"
 * (rank RANK fails when it reaches task index TASK; MODE abort (default):
 * MPI_Abort, exit: _exit(1) without MPI_Finalize, kill: SIGKILL itself),
 * prints "adaquant: rank R failed at task K (layer L, option O): reason" and
 * ends the whole job non-zero. Result files already written stay valid. */
#ifndef AQ_DIST_DRIVER_H
#define AQ_DIST_DRIVER_H

#include <stdio.h>

#include <mpi.h>

#include "../../io/resultfile.h"
#include "tasks.h"

typedef struct aq_dist_worker aq_dist_worker;

/* Execute task `index` and write its result file to `path` (use
 * aq_result_write with the task's layer, option and fp). Long tasks should
 * call aq_dist_poll(w) now and then (e.g. every few optimizer steps). */
typedef aq_status (*aq_dist_task_fn)(void *ctx, const aq_dist_task *task, size_t index, const char *path,
                                     aq_dist_worker *w, aq_error *err);

typedef struct aq_dist_options {
    const char *workdir;      /* results live in <workdir>/results/ (created) */
    int resume;               /* reuse valid result files instead of recomputing */
    double tail_fraction;     /* share of the estimated work left to the dynamic queue */
    FILE *progress;           /* rank 0's progress stream; NULL = silent */
    int progress_tty;         /* -1 resolve (progress.h), 0 plain lines, 1 one-line bar */
    double progress_interval; /* seconds between plain lines (0 = every task) */
} aq_dist_options;

/* Defaults: resume off, tail 0.2, progress to stderr (mode from progress.h), a plain line per task. */
void aq_dist_options_default(aq_dist_options *o, const char *workdir);

typedef struct aq_dist_stats {
    size_t total;    /* tasks */
    size_t reused;   /* valid result files reused (resume) */
    size_t invalid;  /* result files found corrupted or stale, recomputed */
    size_t computed; /* tasks executed in this run, all ranks */
    size_t dynamic;  /* of those, handed out from the tail queue */
    size_t local;    /* tasks executed by this rank */
    double seconds;  /* wall time on rank 0 */
} aq_dist_stats;

/* Collective over comm. tasks[n] in canonical order (aq_dist_tasks_order).
 * table: on rank 0, receives the n rows in task order (NULL: not wanted;
 * ignored on other ranks); stats may be NULL. Creates <workdir> (its parent
 * must exist) and <workdir>/results. Returns errors for bad arguments and I/O on the work directory
 * (on every rank); task failures end the job (see above). */
aq_status aq_dist_run(MPI_Comm comm, const aq_dist_task *tasks, size_t n, aq_dist_task_fn fn, void *ctx,
                      const aq_dist_options *opt, aq_loss_row *table, aq_dist_stats *stats, aq_error *err);

/* Serve the work queue and progress messages (rank 0); a no-op elsewhere.
 * Cheap (one MPI_Iprobe when nothing is pending). */
void aq_dist_poll(aq_dist_worker *w);
/* This worker's rank in the communicator passed to aq_dist_run. */
int aq_dist_worker_rank(const aq_dist_worker *w);

/* Parse an AQ_FAIL_AT value "RANK:TASK[:abort|exit|kill]" (NULL/empty: no
 * injection, *rank = -1). mode: 0 abort, 1 exit, 2 kill. AQ_ERR_ARG if malformed. */
aq_status aq_dist_parse_fail_at(const char *s, int *rank, long *task, int *mode, aq_error *err);

#endif
