/* capture_run.c — drives the forward pass over calibration windows and feeds
 * the capture statistics (capture.h). Parallel mode: one FP pass per batch.
 * Sequential mode: an FP pass that stashes block b's inputs X, then a pass with
 * the model's overrides that delivers Xq; both are accumulated together.
 * Streaming (aq_capture_run_block): the same passes restricted to one block,
 * resumed from the residual stream the caller keeps at the block's input. */
#include <stdlib.h>
#include <string.h>

#include "capture_internal.h"
#include "model_internal.h"

/* (window, position) of every row of the current batch. */
static aq_status row_ids(aq_capture *c, const aq_capture_event *ev, aq_error *err)
{
    if (ev->n_rows > c->rcap) {
        uint32_t *w = realloc(c->row_win, ev->n_rows * sizeof *w), *p;
        if (w) c->row_win = w;
        p = w ? realloc(c->row_pos, ev->n_rows * sizeof *p) : NULL;
        if (!p) return aq_fail_nomem(err, "capture row ids", ev->n_rows * 8);
        c->row_pos = p;
        c->rcap = ev->n_rows;
    }
    size_t r = 0;
    for (int s = 0; s < ev->n_seqs; s++)
        for (int t = 0; t < ev->lens[s]; t++, r++) {
            c->row_win[r] = (uint32_t)ev->seq_ids[s];
            c->row_pos[r] = (uint32_t)t;
        }
    return AQ_OK;
}

static aq_status on_capture(void *ctx, const aq_capture_event *ev, aq_error *err)
{
    aq_capture *c = ctx;
    aq_capstat *s = aq_capture_find_mut(c, ev->block, ev->point);
    if (!s) return AQ_OK;
    if (c->o.cross_block < 0) {
        if (s == &c->st[0]) AQ_TRY(row_ids(c, ev, err)); /* first event of a batch */
        return aq_capture_add_rows(c, s, ev->rows, NULL, ev->n_rows, c->row_win, c->row_pos, err);
    }
    int p = (int)ev->point;
    size_t need = ev->n_rows * (size_t)ev->d;
    if (c->phase == 0) { /* FP pass: stash X until Xq arrives */
        if (need > c->xcap[p]) {
            float *b = realloc(c->xbuf[p], need * sizeof(float));
            if (!b) return aq_fail_nomem(err, "capture FP rows", need * sizeof(float));
            c->xbuf[p] = b;
            c->xcap[p] = need;
        }
        memcpy(c->xbuf[p], ev->rows, need * sizeof(float));
        return AQ_OK;
    }
    if (s == &c->st[0]) AQ_TRY(row_ids(c, ev, err));
    return aq_capture_add_rows(c, s, c->xbuf[p], ev->rows, ev->n_rows, c->row_win, c->row_pos, err);
}

/* One block's residual rows of a batch (streaming): where the forward starts
 * (x, or the embedding for block 0) and, for the FP stream, where the residual
 * after the block goes (x again). NULL x = a whole-model pass from the embedding. */
typedef struct batch_io {
    int block;       /* the streamed block, or -1 (whole-model pass) */
    float *x;        /* FP residual rows of the batch: in at block input, out after it */
    const float *xq; /* sequential mode: the quantized upstream's residual rows */
} batch_io;

static aq_status pass(aq_model *m, const int *tokens, const int *lens, int nb, const aq_forward_opts *fo,
                      int block, const float *x_in, aq_error *err)
{
    if (block < 0) return aq_model_forward(m, tokens, lens, nb, fo, NULL, err);
    aq_forward_resume r = {block, block > 0 ? x_in : NULL, NULL};
    return aq_model_forward_resume(m, tokens, lens, nb, fo, &r, NULL, err);
}

static aq_status run_batch(aq_capture *c, aq_model *m, const int *tokens, const int *lens, int nb,
                           const long *ids, const batch_io *io, aq_error *err)
{
    int L = c->n_layers;
    aq_forward_opts fo;
    aq_forward_opts_default(&fo);
    fo.capture = on_capture;
    fo.capture_ctx = c;
    fo.seq_ids = ids;
    /* stop after the last captured block unless the classifier input is wanted */
    int last = c->n ? c->st[c->n - 1].block : -1;
    fo.stop_after_block = last < L ? last : -1;
    c->phase = 0;
    AQ_TRY(pass(m, tokens, lens, nb, &fo, io->block, io->x, err));
    if (io->block >= 0) { /* the residual after the block: the next block's input */
        size_t rows = 0;
        for (int i = 0; i < nb; i++) rows += (size_t)lens[i];
        memcpy(io->x, m->s.x, rows * (size_t)m->cfg.dim * sizeof(float));
    }
    if (c->o.cross_block < 0) return AQ_OK;
    c->phase = 1;
    fo.quantized = 1;
    return pass(m, tokens, lens, nb, &fo, io->block, io->xq, err);
}

/* The batches of aq_capture_run and aq_capture_run_block (the same batches, so
 * the same float64 sums in the same order). */
static aq_status run_windows(aq_capture *c, aq_model *m, const int *tokens, int first_window, int n_windows,
                             int T, int block, float *x, const float *xq, aq_error *err)
{
    if (n_windows < 0 || T < 1 || first_window < 0)
        return aq_fail(err, AQ_ERR_ARG,
                       "capture: %d windows of %d tokens from window %d is invalid", n_windows, T,
                       first_window);
    if (c->o.packed)
        return aq_fail(err, AQ_ERR_ARG, "capture: a packed capture is a merge target only; it cannot run");
    if (c->n == 0 || n_windows == 0) return AQ_OK;
    int bw = c->o.batch_windows;
    int *lens = malloc((size_t)bw * sizeof(int));
    long *ids = malloc((size_t)bw * sizeof(long));
    if (!lens || !ids) {
        free(lens);
        free(ids);
        return aq_fail_nomem(err, "capture batch", (size_t)bw * 16);
    }
    for (int i = 0; i < c->n; i++)
        aq_sample_heapify(&c->st[i], c->o.seed);
    aq_status st = AQ_OK;
    size_t D = (size_t)aq_model_config(m)->dim;
    for (int w0 = 0; w0 < n_windows && st == AQ_OK; w0 += bw) {
        int nb = n_windows - w0 < bw ? n_windows - w0 : bw;
        for (int i = 0; i < nb; i++) {
            lens[i] = T;
            ids[i] = first_window + w0 + i;
        }
        size_t r0 = (size_t)w0 * T * D;
        batch_io io = {block, x ? x + r0 : NULL, xq ? xq + r0 : NULL};
        st = run_batch(c, m, tokens + (size_t)w0 * T, lens, nb, ids, &io, err);
        if (st != AQ_OK)
            aq_error_prefix(err, "capture windows %d..%d", first_window + w0,
                            first_window + w0 + nb - 1);
    }
    if (!c->o.lower_only) aq_capture_mirror(c);
    for (int i = 0; i < c->n; i++)
        aq_sample_sort(&c->st[i]);
    free(lens);
    free(ids);
    return st;
}

aq_status aq_capture_run(aq_capture *c, aq_model *m, const int *tokens, int first_window,
                         int n_windows, int T, aq_error *err)
{
    return run_windows(c, m, tokens, first_window, n_windows, T, -1, NULL, NULL, err);
}

aq_status aq_capture_run_block(aq_capture *c, aq_model *m, const int *tokens, int first_window,
                               int n_windows, int T, float *x, const float *xq, aq_error *err)
{
    int b = c->o.block_first, seq = c->o.cross_block >= 0;
    if (c->o.block_last != b || b < 0 || b >= c->n_layers || c->o.head || !x || seq != (xq != NULL))
        return aq_fail(err, AQ_ERR_ARG,
                       "streaming capture: needs exactly one block (blocks %d..%d, classifier %s) and "
                       "the residual%s",
                       c->o.block_first, c->o.block_last, c->o.head ? "on" : "off",
                       seq ? "s of both streams" : "");
    AQ_TRY(aq_model_block_acquire(m, b, err));
    aq_status st = run_windows(c, m, tokens, first_window, n_windows, T, b, x, xq, err);
    aq_model_block_release(m, b);
    return st;
}

aq_status aq_capture_advance(aq_model *m, const int *tokens, int n_windows, int T, int batch_windows, int block,
                             int quantized, float *x, aq_error *err)
{
    const aq_llama_config *cfg = aq_model_config(m);
    if (block < 0 || block >= cfg->n_layers || n_windows < 0 || T < 1 || batch_windows < 1)
        return aq_fail(err, AQ_ERR_ARG, "residual advance: block %d of %d, %d windows of %d tokens invalid",
                       block, cfg->n_layers, n_windows, T);
    int *lens = malloc((size_t)batch_windows * sizeof(int));
    if (!lens) return aq_fail_nomem(err, "advance batch", (size_t)batch_windows * sizeof(int));
    for (int i = 0; i < batch_windows; i++) lens[i] = T;
    aq_forward_opts fo;
    aq_forward_opts_default(&fo);
    fo.stop_after_block = block;
    fo.quantized = quantized;
    size_t D = (size_t)cfg->dim;
    aq_status st = aq_model_block_acquire(m, block, err);
    if (st != AQ_OK) {
        free(lens);
        return st;
    }
    for (int w0 = 0; w0 < n_windows && st == AQ_OK; w0 += batch_windows) {
        int nb = n_windows - w0 < batch_windows ? n_windows - w0 : batch_windows;
        float *xb = x + (size_t)w0 * T * D;
        st = pass(m, tokens + (size_t)w0 * T, lens, nb, &fo, block, xb, err);
        if (st == AQ_OK) memcpy(xb, m->s.x, (size_t)nb * T * D * sizeof(float));
    }
    aq_model_block_release(m, block);
    free(lens);
    return st;
}
