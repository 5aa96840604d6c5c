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
 * Failure: a callback error, or the test hook AQ_FAIL_AT (below) set to
 * "calibrate:TASK:RANK[:MODE]" or its short form "RANK:TASK[:MODE]" (rank RANK
 * fails when it reaches task index TASK), prints
 * "adaquant: rank R failed at task K (layer L, option O): reason" and ends the
 * whole job non-zero. Result files already written stay valid. */
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

/* The test hook AQ_FAIL_AT: one injected failure at a deterministic point of
 * one phase, so tests can stop a run after K units of work without polling or
 * timing (docs/PIPELINE.md, "Test hook"). The value is
 *   PHASE:K[:RANK][:MODE]   PHASE capture | calibrate | tune | write
 *   RANK:TASK[:MODE]        short form of calibrate:TASK:RANK:MODE
 * RANK defaults to 0; MODE is abort (default: message + MPI_Abort), exit
 * (message + _exit(1) without MPI_Finalize, like a crash) or kill (message +
 * SIGKILL of itself, like the OOM killer). The unit K is:
 *   capture    the block index: blocks 0..K-1 are captured and written;
 *   calibrate  the task index (canonical order) the rank fails at instead of
 *              running it;
 *   tune       the Adam step index: steps 0..K-1 have run (tuning keeps no
 *              checkpoint, so a resume tunes again from step 0);
 *   write      rank 0's output files: 0 before model.safetensors, 1 before
 *              config.json, 2 before the reports, 3 after everything is
 *              written and synced but before OUTDIR.tmp.<pid> is renamed. */
enum { AQ_FAIL_ABORT = 0, AQ_FAIL_EXIT = 1, AQ_FAIL_KILL = 2 };
typedef struct aq_dist_failspec {
    char phase[16]; /* "" = no injection */
    long unit;
    int rank, mode;
} aq_dist_failspec;

/* Parse an AQ_FAIL_AT value (NULL/empty: no injection, phase ""). AQ_ERR_ARG
 * naming the value if malformed. */
aq_status aq_dist_parse_fail_at(const char *s, aq_dist_failspec *f, aq_error *err);

/* A failure point of `phase` at unit `unit` on rank `rank`: if AQ_FAIL_AT
 * names exactly this point, print "adaquant: rank R failed in PHASE at UNIT
 * (what): injected failure (AQ_FAIL_AT=...)" and end the process as the mode
 * says (does not return). Otherwise returns AQ_OK, or AQ_ERR_ARG for a
 * malformed AQ_FAIL_AT (the same on every rank). */
aq_status aq_dist_failpoint(const char *phase, long unit, int rank, const char *what, aq_error *err);

#endif
