/* stage_sequential.c — the sequential pass of --mode sequential
 * (docs/PIPELINE.md): with the allocation fixed by the parallel pass, block by
 * block, the chosen option of each of the block's 7 layers is recalibrated on
 * the inputs the already quantized upstream blocks produce (cross statistics
 * B = [X 1]^T [Xq 1], C = [Xq 1]^T [Xq 1]; the target stays the FP output).
 * Streamed as stage 1: every rank keeps, for its chunks of the windows, two
 * residual streams at the current block boundary, the FP one (X) and the one
 * the quantized upstream gives (Xq). Each block b: capture it in cross mode
 * from both streams (one FP and one quantized run of block b, merged in chunk
 * order on rank b mod P; the FP stream moves past b), run its 7 tasks with the
 * driver, install their results on every rank, and move the quantized stream
 * past b with them (a third run of block b). So the pass costs three block
 * forwards per block, not two whole-model forwards. The streams live in
 * memory only (2 x this rank's windows x seq_len x dim floats): a resumed
 * sequential pass runs the blocks again, reusing their task results. Results
 * live in WORK/seq/results/, fingerprinted with the allocation they belong to. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../io/atomic_file.h"
#include "driver.h"
#include "progress.h"
#include "stage_calibrate.h"
#include "stage_capture.h"
#include "stage_sequential.h"
#include "stage_stats.h"

typedef struct seq_ctx {
    const aq_pipe_cfg *c; /* the sequential cfg (work = WORK/seq) */
    const aq_pipe_plan *p;
    aq_model *m;
    aq_pipe_stream s; /* this rank's windows: FP and quantized-upstream residuals */
    aq_fingerprint stats_fp; /* of the current block's statistics */
} seq_ctx;

static aq_status seq_task(void *vctx, const aq_dist_task *task, size_t index, const char *path, aq_dist_worker *w,
                          aq_error *err)
{
    seq_ctx *x = vctx;
    int blk = x->p->layers[task->layer_index].block;
    AQ_TRY(aq_model_block_acquire(x->m, blk, err)); /* the lazy model holds this task's block */
    aq_stats s;
    aq_layer_problem pr;
    aq_layer_opts o;
    aq_status st = aq_pipe_task_problem(x->c, x->p, x->m, &x->stats_fp, task, 1, &s, &pr, &o, err);
    aq_layer_result r;
    memset(&r, 0, sizeof r);
    aq_dist_poll(w);
    if (st == AQ_OK) st = aq_layer_run(&pr, &o, &r, err);
    if (st == AQ_OK) st = aq_pipe_write_task_result(path, task, &r, 0, 0, err);
    aq_layer_result_free(&r);
    aq_stats_free(&s);
    aq_model_block_release(x->m, blk);
    (void)index;
    return st;
}

/* Install the sequential results of block b as overrides on x->m. */
static aq_status install_block(seq_ctx *x, const aq_dist_task *tasks, aq_error *err)
{
    for (int j = 0; j < AQ_LIN_COUNT; j++) {
        const aq_dist_task *t = &tasks[j];
        const aq_pipe_layer *L = &x->p->layers[t->layer_index];
        char *path;
        aq_result *r;
        AQ_TRY(aq_result_path(x->c->work, t->layer, t->option, &path, err));
        aq_status st = aq_result_read(path, &t->fp, &r, err);
        free(path);
        AQ_TRY(st);
        const aq_tensor_view *codes = aq_result_find(r, "codes"), *ws = aq_result_find(r, "w_scale"),
                             *wz = aq_result_find(r, "w_zero"), *b = aq_result_find(r, "bias"),
                             *as = aq_result_find(r, "a_scale"), *az = aq_result_find(r, "a_zero");
        size_t n = (size_t)L->d_out * L->d_in;
        float *w = malloc(n * sizeof *w), *bias = malloc((size_t)L->d_out * sizeof *bias);
        if (!codes || !ws || !wz || !b || !as || !az || codes->nbytes != n || !w || !bias ||
            b->nbytes != (size_t)L->d_out * 4) {
            free(w);
            free(bias);
            aq_result_free(r);
            return aq_fail(err, AQ_ERR_FORMAT, "sequential result of %s: missing tensors", t->layer);
        }
        const uint8_t *u = codes->data;
        float scale, zero, a_s, a_z;
        for (int row = 0; row < L->d_out; row++) {
            memcpy(&scale, (const char *)ws->data + 4 * row, 4);
            memcpy(&zero, (const char *)wz->data + 4 * row, 4);
            for (int c = 0; c < L->d_in; c++)
                w[(size_t)row * L->d_in + c] = scale * ((float)u[(size_t)row * L->d_in + c] - zero);
        }
        memcpy(bias, b->data, b->nbytes); /* aligned copy */
        memcpy(&a_s, as->data, 4);
        memcpy(&a_z, az->data, 4);
        int a_bits = r->row.a_bits < 16 ? r->row.a_bits : 0;
        aq_linear_override ov = {w, bias, a_bits, a_s, a_z};
        st = aq_model_set_override(x->m, L->block, (aq_linear)L->which, &ov, err);
        free(w);
        free(bias);
        aq_result_free(r);
        AQ_TRY(st);
    }
    return AQ_OK;
}

/* Move this rank's quantized-upstream stream past block blk, now installed,
 * chunk by chunk in the capture's batches (block 0 runs from the embedding). */
static aq_status advance_q(seq_ctx *x, const int *tokens, int blk, aq_error *err)
{
    const aq_pipe_cfg *c = x->c;
    aq_capture_opts o;
    aq_capture_opts_default(&o);
    AQ_TRY(aq_model_block_acquire(x->m, blk, err)); /* converted once for all the chunks */
    aq_status st = AQ_OK;
    for (size_t ch = x->s.lo; ch < x->s.hi && st == AQ_OK; ch++) {
        int w0, nw = aq_pipe_chunk(c, ch, &w0);
        st = aq_capture_advance(x->m, tokens + (size_t)w0 * c->seq_len, nw, c->seq_len, o.batch_windows, blk, 1,
                                x->s.xq + (size_t)(w0 - x->s.w0) * c->seq_len * x->s.dim, err);
    }
    aq_model_block_release(x->m, blk);
    return st;
}

aq_fingerprint aq_pipe_alloc_fp(const aq_pipe_cfg *c, const aq_pipe_plan *p, const int *choice)
{
    aq_fp_builder b;
    aq_fp_init(&b);
    for (int l = 0; l < p->n_layers; l++) aq_fp_add_str(&b, p->layers[l].name, c->options[choice[l]]);
    return aq_fp_final(&b);
}

static aq_status seq_setup(const aq_pipe_cfg *c, const aq_pipe_plan *p, const int *choice, aq_pipe_cfg *sc,
                           aq_pipe_plan *sp, aq_error *err)
{
    *sc = *c;
    if (snprintf(sc->work, sizeof sc->work, "%s/seq", c->work) >= (int)sizeof sc->work)
        return aq_fail(err, AQ_ERR_ARG, "work path too long");
    aq_fingerprint alloc = aq_pipe_alloc_fp(c, p, choice);
    *sp = *p;
    sp->layers = malloc((size_t)p->n_layers * sizeof *sp->layers);
    sp->tasks = malloc(p->n_tasks * sizeof *sp->tasks);
    if (!sp->layers || !sp->tasks) return aq_fail_nomem(err, "sequential plan", p->n_tasks);
    memcpy(sp->layers, p->layers, (size_t)p->n_layers * sizeof *sp->layers);
    for (size_t i = 0; i < p->n_tasks; i++) {
        sp->tasks[i] = p->tasks[i];
        sp->tasks[i].layer = sp->layers[p->tasks[i].layer_index].name;
        sp->tasks[i].option = sc->options[p->tasks[i].option_index];
        aq_fp_builder b;
        aq_fp_init(&b);
        aq_fp_add_fp(&b, "parallel_task", &p->tasks[i].fp, 0);
        aq_fp_add_str(&b, "mode", "sequential");
        aq_fp_add_fp(&b, "allocation", &alloc, 0);
        sp->tasks[i].fp = aq_fp_final(&b);
    }
    return AQ_OK;
}

/* One block: capture in cross mode, then its 7 chosen tasks. */
static aq_status seq_block(MPI_Comm comm, seq_ctx *x, const int *tokens, int blk, aq_dist_task *bt, int resume,
                           aq_pipe_timing *t, aq_error *err)
{
    aq_capture_opts o;
    aq_capture_opts_default(&o);
    o.sample_rows = aq_pipe_capture_sample_rows(x->c);
    o.seed = x->c->sample_seed;
    o.cross_block = blk;
    aq_fp_builder b;
    aq_fp_init(&b);
    aq_fp_add_fp(&b, "allocation_tasks", &bt[0].fp, 0);
    aq_fp_add_i64(&b, "block", blk);
    x->stats_fp = aq_fp_final(&b);
    double t0 = aq_progress_now();
    int size;
    MPI_Comm_size(comm, &size);
    AQ_TRY(aq_pipe_capture_block(comm, x->c, x->m, tokens, &o, &x->s, blk % size, "stats", &x->stats_fp, err));
    double t1 = aq_progress_now();
    aq_dist_options opt;
    aq_dist_options_default(&opt, x->c->work);
    opt.resume = resume;
    aq_status st = aq_dist_run(comm, bt, AQ_LIN_COUNT, seq_task, x, &opt, NULL, NULL, err);
    if (t) {
        t->capture += t1 - t0;
        t->calibrate += aq_progress_now() - t1;
    }
    return st;
}

aq_status aq_pipe_sequential(MPI_Comm comm, const aq_pipe_cfg *c, const aq_pipe_plan *p, const int *choice, int resume,
                             aq_pipe_cfg *sc, aq_pipe_plan *sp, aq_pipe_timing *t, aq_error *err)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    memset(sp, 0, sizeof *sp);
    aq_status st = seq_setup(c, p, choice, sc, sp, err);
    if (st == AQ_OK && rank == 0) st = aq_mkdir_once(sc->work, "sequential work directory", err);
    seq_ctx x = {.c = sc, .p = sp};
    int *tokens = NULL;
    if (st == AQ_OK) st = aq_pipe_load_calib(sc, &x.m, &tokens, err);
    if (st == AQ_OK) st = aq_pipe_stream_open(comm, sc, x.m, 1, &x.s, err);
    st = aq_pipe_agree(comm, st, err);
    int n_blocks = p->n_layers / AQ_LIN_COUNT;
    aq_dist_task bt[AQ_LIN_COUNT];
    for (int blk = 0; st == AQ_OK && blk < n_blocks; blk++) {
        for (int j = 0; j < AQ_LIN_COUNT; j++) {
            int l = blk * AQ_LIN_COUNT + j;
            bt[j] = sp->tasks[(size_t)l * c->n_options + choice[l]];
        }
        if (rank == 0) fprintf(stderr, "adaquant: sequential pass: block %d of %d\n", blk + 1, n_blocks);
        st = seq_block(comm, &x, tokens, blk, bt, resume, t, err);
        if (st == AQ_OK) st = install_block(&x, bt, err);
        if (st == AQ_OK && blk + 1 < n_blocks) st = advance_q(&x, tokens, blk, err);
        st = aq_pipe_agree(comm, st, err);
    }
    aq_pipe_stream_close(&x.s);
    free(tokens);
    aq_model_free(x.m);
    if (st != AQ_OK) aq_pipe_plan_free(sp);
    return st;
}
