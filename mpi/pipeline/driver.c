/* driver.c — distributed execution of (layer, option) tasks with resume,
 * LPT + tail-queue scheduling, progress and failure handling (driver.h).
 *
 * Protocol on the driver's private communicator (a dup of the caller's):
 *   worker -> 0, TAG_TO_ROOT, 3 doubles {kind, task, loss}:
 *       kind DONE: task finished (loss for the progress line);
 *       kind REQ:  the worker wants one task from the tail queue;
 *   0 -> worker, TAG_GIVE, one int64: a task index, or -1 = queue empty.
 * Rank 0 never blocks while it has work of its own; it blocks (MPI_Recv)
 * only at the end, waiting for the last DONE messages and REQs. Workers block
 * only waiting for a GIVE, which rank 0 always answers. With one rank there
 * is no tail queue and no message at all. */
#include "../../io/atomic_file.h"
#include "driver.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "collect.h"
#include "progress.h"

enum { TAG_TO_ROOT = 1, TAG_GIVE = 2 };
enum { MSG_DONE = 0, MSG_REQ = 1 };

struct aq_dist_worker {
    MPI_Comm comm; /* private dup */
    int rank, size;
    const aq_dist_task *tasks;
    size_t n;
    const aq_dist_options *opt;
    aq_dist_task_fn fn;
    void *ctx;
    aq_dist_schedule sched;
    /* rows this rank holds (reused or computed), for the final gather */
    size_t *my_idx;
    aq_loss_row *my_rows;
    size_t my_n;
    /* rank 0 only */
    size_t tail_next;     /* next position in sched.tail */
    size_t done, pending; /* tasks finished / to compute in this run */
    size_t workers_finished;
    size_t dynamic;
    unsigned char *finished; /* [n] per task: done in this run */
    aq_progress progress;
    /* failure injection (AQ_FAIL_AT, calibrate phase) */
    aq_dist_failspec fail;
    const char *fail_spec;
};

void aq_dist_options_default(aq_dist_options *o, const char *workdir)
{
    memset(o, 0, sizeof *o);
    o->workdir = workdir;
    o->tail_fraction = 0.2;
    o->progress = stderr;
    o->progress_tty = -1;
    o->progress_interval = 0; /* plain: one line per task (docs/PIPELINE.md) */
}

int aq_dist_worker_rank(const aq_dist_worker *w) { return w->rank; }

static const char *const fail_phases[] = {"capture", "calibrate", "tune", "write", "capture_write"};

static int parse_mode(const char *m)
{
    return !strcmp(m, "abort") ? AQ_FAIL_ABORT : !strcmp(m, "exit") ? AQ_FAIL_EXIT : !strcmp(m, "kill") ? AQ_FAIL_KILL : -1;
}

/* A non-negative decimal number filling the whole field, else -1. */
static long parse_count(const char *t)
{
    char *end;
    if (!*t || *t == '-' || *t == '+') return -1;
    long v = strtol(t, &end, 10);
    return *end || v > 100000000 ? -1 : v;
}

aq_status aq_dist_parse_fail_at(const char *s, aq_dist_failspec *f, aq_error *err)
{
    memset(f, 0, sizeof *f);
    f->rank = -1;
    if (!s || !*s) return AQ_OK;
    char buf[128], *field[5];
    int n = 0;
    if (strlen(s) >= sizeof buf) return aq_fail(err, AQ_ERR_ARG, "AQ_FAIL_AT='%.40s...': too long", s);
    strcpy(buf, s);
    for (char *p = buf; n < 5;) { /* split on ':' keeping empty fields */
        field[n++] = p;
        char *c = strchr(p, ':');
        if (!c) break;
        *c = '\0';
        p = c + 1;
    }
    int ph = -1;
    for (int k = 0; k < (int)(sizeof fail_phases / sizeof *fail_phases); k++)
        if (!strcmp(field[0], fail_phases[k])) ph = k;
    long unit, rank = 0;
    int mode = AQ_FAIL_ABORT, i;
    if (ph < 0) { /* short form RANK:TASK[:MODE] */
        rank = parse_count(field[0]);
        unit = n >= 2 ? parse_count(field[1]) : -1;
        ph = 1, i = 2;
    } else {
        unit = n >= 2 ? parse_count(field[1]) : -1;
        i = 2;
        if (i < n && parse_count(field[i]) >= 0) rank = parse_count(field[i++]);
    }
    if (i < n) mode = parse_mode(field[i++]);
    if (rank < 0 || rank > 1000000 || unit < 0 || mode < 0 || i != n)
        return aq_fail(err, AQ_ERR_ARG,
                       "AQ_FAIL_AT='%s': expected PHASE:K[:RANK][:abort|exit|kill] (PHASE capture, calibrate, tune, "
                       "write or capture_write) or RANK:TASK[:abort|exit|kill]",
                       s);
    strcpy(f->phase, fail_phases[ph]);
    f->unit = unit, f->rank = (int)rank, f->mode = mode;
    return AQ_OK;
}

/* End this process the way the failure mode says (after the message). */
static void fail_now(MPI_Comm comm, int mode)
{
    fflush(stderr);
    fflush(stdout);
    if (mode == AQ_FAIL_KILL) raise(SIGKILL);
    if (mode == AQ_FAIL_EXIT) _exit(1);
    MPI_Abort(comm, 1);
    _exit(1); /* not reached */
}

aq_status aq_dist_failpoint(const char *phase, long unit, int rank, const char *what, aq_error *err)
{
    const char *spec = getenv("AQ_FAIL_AT");
    if (!spec || !*spec) return AQ_OK;
    aq_dist_failspec f;
    AQ_TRY(aq_dist_parse_fail_at(spec, &f, err));
    if (strcmp(f.phase, phase) || f.unit != unit || f.rank != rank) return AQ_OK;
    fprintf(stderr, "adaquant: rank %d failed in %s at %s: injected failure (AQ_FAIL_AT=%s)\n", rank, phase, what,
            spec);
    fail_now(MPI_COMM_WORLD, f.mode);
    return AQ_OK; /* not reached */
}

/* Report a task failure and end the job: nothing after this returns. */
static void die(aq_dist_worker *w, size_t i, const char *reason, int mode)
{
    if (w->rank == 0) aq_progress_break(&w->progress);
    fprintf(stderr, "adaquant: rank %d failed at task %zu (layer %s, option %s): %s\n", w->rank, i,
            w->tasks[i].layer, w->tasks[i].option, reason);
    fail_now(w->comm, mode);
}

/* Remember a row for the final gather. Each task is kept by exactly one rank
 * once (validated or computed), so the n slots cannot overflow. */
static void keep_row(aq_dist_worker *w, size_t i, const aq_loss_row *row)
{
    if (w->my_n == w->n) {
        fprintf(stderr, "adaquant: internal error: rank %d holds more rows than tasks\n", w->rank);
        MPI_Abort(w->comm, 1);
    }
    w->my_idx[w->my_n] = i;
    w->my_rows[w->my_n++] = *row;
}

/* Every rank must schedule the same tasks the same way: compare a hash of
 * the task list and the scheduling options across ranks. */
static aq_status check_same_tasks(aq_dist_worker *w, aq_error *err)
{
    aq_fp_builder b;
    aq_fp_init(&b);
    aq_fp_add_str(&b, "workdir", w->opt->workdir);
    aq_fp_add_u64(&b, "resume", (uint64_t)w->opt->resume);
    aq_fp_add_f64(&b, "tail", w->opt->tail_fraction);
    for (size_t i = 0; i < w->n; i++) {
        const aq_dist_task *t = &w->tasks[i];
        aq_fp_add_str(&b, "layer", t->layer);
        aq_fp_add_str(&b, "option", t->option);
        aq_fp_add_f64(&b, "cost", t->cost);
        aq_fp_add_fp(&b, "fp", &t->fp, (uint64_t)t->layer_index << 32 | (uint32_t)t->option_index);
    }
    uint64_t h = aq_fp_final(&b).h[0];
    unsigned long long v[2] = {h, ~h}, r[2];
    MPI_Allreduce(v, r, 2, MPI_UNSIGNED_LONG_LONG, MPI_MIN, w->comm);
    if (r[0] != h || r[1] != ~h)
        return aq_fail(err, AQ_ERR_ARG, "the ranks were given different task lists or driver options "
                                        "(every rank must build the same tasks in the same order)");
    return AQ_OK;
}

/* mkdir -p of <workdir>/results on rank 0; every rank learns the outcome. */
static aq_status make_dirs(aq_dist_worker *w, aq_error *err)
{
    aq_error local = {0};
    int code = AQ_OK;
    if (w->rank == 0) {
        char *p = malloc(strlen(w->opt->workdir) + 16);
        if (!p) return aq_fail_nomem(err, "path", 64);
        sprintf(p, "%s", w->opt->workdir);
        code = aq_mkdir_once(p, "work directory", &local);
        strcat(p, "/results");
        if (code == AQ_OK) code = aq_mkdir_once(p, "results directory", &local);
        if (code == AQ_OK && access(p, W_OK) != 0)
            code = aq_fail(&local, AQ_ERR_IO, "%s: not writable: %s", p, strerror(errno));
        free(p);
    }
    MPI_Bcast(&code, 1, MPI_INT, 0, w->comm);
    MPI_Bcast(local.msg, AQ_ERROR_MSG_MAX, MPI_CHAR, 0, w->comm);
    if (code != AQ_OK) return aq_fail(err, (aq_status)code, "%s", local.msg);
    return AQ_OK;
}

/* Phase 1: validate existing files (task i on rank i % size). Sets
 * reused[i] on every rank; the validating rank keeps the row. */
static aq_status validate_existing(aq_dist_worker *w, unsigned char *reused, size_t *n_invalid, aq_error *err)
{
    unsigned char *mine = calloc(w->n ? w->n : 1, 1);
    if (!mine) return aq_fail_nomem(err, "resume flags", w->n);
    unsigned long long bad = 0, bad_all = 0;
    for (size_t i = (size_t)w->rank; w->opt->resume && i < w->n; i += (size_t)w->size) {
        const aq_dist_task *t = &w->tasks[i];
        char *path = NULL;
        aq_error e = {0};
        aq_loss_row row;
        aq_status st = aq_result_path(w->opt->workdir, t->layer, t->option, &path, &e);
        if (st == AQ_OK) st = aq_result_check(path, t->layer, t->option, &t->fp, &row, &e);
        free(path);
        if (st == AQ_OK) {
            mine[i] = 1;
            keep_row(w, i, &row);
        } else if (st != AQ_ERR_NOTFOUND) {
            fprintf(stderr, "adaquant: rank %d: invalid result file, recomputing task %zu (%s, %s): %s\n",
                    w->rank, i, t->layer, t->option, e.msg);
            bad++;
        }
    }
    MPI_Allreduce(mine, reused, (int)w->n, MPI_UNSIGNED_CHAR, MPI_MAX, w->comm);
    MPI_Allreduce(&bad, &bad_all, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, w->comm);
    free(mine);
    *n_invalid = (size_t)bad_all;
    return AQ_OK;
}

/* Rank 0 bookkeeping for one finished task (its own or a worker's). */
static void root_task_done(aq_dist_worker *w, size_t i, double loss)
{
    if (i >= w->n || w->finished[i]) {
        fprintf(stderr, "adaquant: internal error: task %zu reported done twice or out of range\n", i);
        MPI_Abort(w->comm, 1);
    }
    w->finished[i] = 1;
    w->done++;
    aq_progress_task(&w->progress, w->tasks[i].layer, w->tasks[i].option, loss, w->tasks[i].cost);
}

static int64_t pop_tail(aq_dist_worker *w)
{
    if (w->tail_next >= w->sched.n_tail) return -1;
    w->dynamic++;
    return (int64_t)w->sched.tail[w->tail_next++];
}

/* Rank 0: handle one message. */
static void root_handle(aq_dist_worker *w, const double msg[3], int src)
{
    if ((int)msg[0] == MSG_DONE) {
        root_task_done(w, (size_t)msg[1], msg[2]);
        return;
    }
    int64_t give = pop_tail(w);
    if (give < 0) w->workers_finished++;
    MPI_Send(&give, 1, MPI_INT64_T, src, TAG_GIVE, w->comm);
}

void aq_dist_poll(aq_dist_worker *w)
{
    if (!w || w->rank != 0 || w->size == 1) return;
    for (;;) {
        int flag = 0;
        MPI_Status s;
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_TO_ROOT, w->comm, &flag, &s);
        if (!flag) return;
        double msg[3];
        MPI_Recv(msg, 3, MPI_DOUBLE, s.MPI_SOURCE, TAG_TO_ROOT, w->comm, MPI_STATUS_IGNORE);
        root_handle(w, msg, s.MPI_SOURCE);
    }
}

/* Execute task i on this rank: callback, validation of the written file,
 * row bookkeeping, DONE report. Any failure ends the job. */
static void run_task(aq_dist_worker *w, size_t i)
{
    const aq_dist_task *t = &w->tasks[i];
    if (!strcmp(w->fail.phase, "calibrate") && w->rank == w->fail.rank && (long)i == w->fail.unit) {
        char why[160];
        snprintf(why, sizeof why, "injected failure (AQ_FAIL_AT=%s)", w->fail_spec);
        die(w, i, why, w->fail.mode);
    }
    aq_error e = {0};
    char *path = NULL;
    aq_loss_row row;
    aq_status st = aq_result_path(w->opt->workdir, t->layer, t->option, &path, &e);
    if (st == AQ_OK) st = w->fn(w->ctx, t, i, path, w, &e);
    if (st == AQ_OK) {
        st = aq_result_check(path, t->layer, t->option, &t->fp, &row, &e);
        if (st != AQ_OK) aq_error_prefix(&e, "the result file written by the task does not validate");
    }
    free(path);
    if (st != AQ_OK) die(w, i, e.msg[0] ? e.msg : aq_status_name(st), AQ_FAIL_ABORT);
    keep_row(w, i, &row);
    if (w->rank == 0) {
        root_task_done(w, i, row.loss);
    } else {
        double msg[3] = {MSG_DONE, (double)i, row.loss};
        MPI_Send(msg, 3, MPI_DOUBLE, 0, TAG_TO_ROOT, w->comm);
    }
}

static void root_loop(aq_dist_worker *w)
{
    const aq_dist_schedule *s = &w->sched;
    for (size_t j = s->start[0]; j < s->start[1]; j++) {
        aq_dist_poll(w);
        run_task(w, s->list[j]);
    }
    for (;;) {
        aq_dist_poll(w);
        int64_t i = pop_tail(w);
        if (i < 0) break;
        run_task(w, (size_t)i);
    }
    /* Everything is handed out: wait for the workers' last reports. */
    while (w->done < w->pending || w->workers_finished < (size_t)(w->size - 1)) {
        double msg[3];
        MPI_Status st;
        MPI_Recv(msg, 3, MPI_DOUBLE, MPI_ANY_SOURCE, TAG_TO_ROOT, w->comm, &st);
        root_handle(w, msg, st.MPI_SOURCE);
    }
}

/* A worker asks for the next tail task one task ahead: the request goes out
 * when it starts its last known task, so rank 0 can answer meanwhile. */
typedef struct ask {
    MPI_Request req;
    int64_t give;
    int outstanding, exhausted;
} ask;

static void ask_post(aq_dist_worker *w, ask *a)
{
    if (a->outstanding || a->exhausted) return;
    double msg[3] = {MSG_REQ, -1, 0};
    MPI_Send(msg, 3, MPI_DOUBLE, 0, TAG_TO_ROOT, w->comm);
    MPI_Irecv(&a->give, 1, MPI_INT64_T, 0, TAG_GIVE, w->comm, &a->req);
    a->outstanding = 1;
}

static int64_t ask_take(aq_dist_worker *w, ask *a)
{
    ask_post(w, a);
    if (!a->outstanding) return -1;
    MPI_Wait(&a->req, MPI_STATUS_IGNORE);
    a->outstanding = 0;
    if (a->give < 0) a->exhausted = 1;
    return a->give;
}

static void worker_loop(aq_dist_worker *w)
{
    const aq_dist_schedule *s = &w->sched;
    size_t j = s->start[w->rank], end = s->start[w->rank + 1];
    ask a = {MPI_REQUEST_NULL, -1, 0, 0};
    int64_t next = j < end ? (int64_t)s->list[j++] : ask_take(w, &a);
    while (next >= 0) {
        if (j >= end && s->n_tail > 0) ask_post(w, &a); /* look ahead */
        run_task(w, (size_t)next);
        next = j < end ? (int64_t)s->list[j++] : ask_take(w, &a);
    }
}

static aq_status worker_init(aq_dist_worker *w, MPI_Comm comm, const aq_dist_task *tasks, size_t n,
                             aq_dist_task_fn fn, void *ctx, const aq_dist_options *opt, aq_error *err)
{
    memset(w, 0, sizeof *w);
    w->comm = MPI_COMM_NULL;
    if (!opt || !opt->workdir || !fn || (n && !tasks))
        return aq_fail(err, AQ_ERR_ARG, "aq_dist_run: missing work directory, callback or tasks");
    w->tasks = tasks, w->n = n, w->fn = fn, w->ctx = ctx, w->opt = opt;
    w->fail_spec = getenv("AQ_FAIL_AT");
    AQ_TRY(aq_dist_parse_fail_at(w->fail_spec, &w->fail, err));
    MPI_Comm_dup(comm, &w->comm);
    MPI_Comm_rank(w->comm, &w->rank);
    MPI_Comm_size(w->comm, &w->size);
    w->my_idx = malloc((n ? n : 1) * sizeof *w->my_idx);
    w->my_rows = malloc((n ? n : 1) * sizeof *w->my_rows);
    w->finished = calloc(n ? n : 1, 1);
    if (!w->my_idx || !w->my_rows || !w->finished) return aq_fail_nomem(err, "driver state", n * 100);
    return AQ_OK;
}

static void worker_free(aq_dist_worker *w)
{
    aq_dist_schedule_free(&w->sched);
    free(w->my_idx);
    free(w->my_rows);
    free(w->finished);
    if (w->comm != MPI_COMM_NULL) MPI_Comm_free(&w->comm);
}

/* All ranks learn whether any rank failed (a local allocation failure must
 * not leave the others in a collective). */
static aq_status agree_status(MPI_Comm comm, aq_status st, aq_error *err)
{
    int bad = st != AQ_OK, any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm);
    if (any && st == AQ_OK) return aq_fail(err, AQ_ERR_MPI, "another rank failed to prepare the loss table");
    return st;
}

/* Phase 2 + 3: schedule what is left and run it. */
static aq_status execute(aq_dist_worker *w, const unsigned char *reused, size_t n_reused, aq_error *err)
{
    double *cost = malloc((w->n ? w->n : 1) * sizeof *cost);
    if (!cost) return aq_fail_nomem(err, "task costs", w->n * sizeof *cost);
    double todo = 0;
    for (size_t i = 0; i < w->n; i++) {
        cost[i] = w->tasks[i].cost;
        if (!reused[i]) todo += cost[i];
    }
    aq_status st = aq_dist_schedule_build(cost, reused, w->n, w->size, w->opt->tail_fraction, &w->sched, err);
    free(cost);
    AQ_TRY(agree_status(w->comm, st, err));
    w->pending = w->n - n_reused;
    if (w->rank == 0) {
        aq_progress_init(&w->progress, w->opt->progress, w->opt->progress_tty, w->opt->progress_interval, w->n,
                         n_reused, todo);
        root_loop(w);
    } else {
        worker_loop(w);
    }
    return AQ_OK;
}

aq_status aq_dist_run(MPI_Comm comm, const aq_dist_task *tasks, size_t n, aq_dist_task_fn fn, void *ctx,
                      const aq_dist_options *opt, aq_loss_row *table, aq_dist_stats *stats, aq_error *err)
{
    aq_dist_worker w;
    aq_status st = worker_init(&w, comm, tasks, n, fn, ctx, opt, err);
    /* Every rank got the same arguments, so a failure here is everyone's. */
    if (st != AQ_OK) {
        worker_free(&w);
        return st;
    }
    double t0 = aq_progress_now();
    unsigned char *reused = calloc(n ? n : 1, 1);
    aq_loss_row *scratch = NULL;
    size_t n_invalid = 0, n_reused = 0;
    if (!reused) st = aq_fail_nomem(err, "resume flags", n);
    AQ_TRY_GOTO(st, check_same_tasks(&w, err), done);
    AQ_TRY_GOTO(st, make_dirs(&w, err), done);
    AQ_TRY_GOTO(st, validate_existing(&w, reused, &n_invalid, err), done);
    for (size_t i = 0; i < n; i++) n_reused += reused[i];
    AQ_TRY_GOTO(st, execute(&w, reused, n_reused, err), done);
    size_t local_computed = w.my_n;
    if (w.rank == 0 && !table) { /* the caller does not want the table: gather into scratch */
        table = scratch = malloc((n ? n : 1) * sizeof *table);
        if (!scratch) st = aq_fail_nomem(err, "loss table", n * sizeof *table);
    }
    st = agree_status(w.comm, st, err);
    if (st != AQ_OK) goto done;
    AQ_TRY_GOTO(st, aq_dist_gather_rows(w.comm, 0, n, w.my_idx, w.my_rows, w.my_n, table, err), done);
    for (size_t k = 0; k < w.my_n; k++) local_computed -= (w.my_idx[k] < n && reused[w.my_idx[k]]);
    if (w.rank == 0) aq_progress_finish(&w.progress);
    if (stats) {
        unsigned long long v[2] = {w.done, w.dynamic}; /* meaningful on rank 0 */
        MPI_Bcast(v, 2, MPI_UNSIGNED_LONG_LONG, 0, w.comm);
        double sec = aq_progress_now() - t0;
        MPI_Bcast(&sec, 1, MPI_DOUBLE, 0, w.comm);
        *stats = (aq_dist_stats){.total = n, .reused = n_reused, .invalid = n_invalid, .computed = (size_t)v[0],
                                 .dynamic = (size_t)v[1], .local = local_computed, .seconds = sec};
    }
done:
    free(scratch);
    free(reused);
    worker_free(&w);
    return st;
}
