/* capture_run.c — drives the forward pass over calibration windows and feeds
 * the capture statistics (capture.h). Parallel mode: one FP pass per batch.
 * Sequential mode: an FP pass that stashes block b's inputs X, then a pass with
 * the model's overrides that delivers Xq; both are accumulated together. */
#include <stdlib.h>
#include <string.h>

#include "capture_internal.h"

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

static aq_status run_batch(aq_capture *c, aq_model *m, const int *tokens, const int *lens, int nb,
                           const long *ids, aq_error *err)
{
    int L = c->n_layers;
    aq_forward_opts fo = {0};
    fo.capture = on_capture;
    fo.capture_ctx = c;
    fo.seq_ids = ids;
    /* stop after the last captured block unless the classifier input is wanted */
    int last = c->n ? c->st[c->n - 1].block : -1;
    fo.stop_after_block = last < L ? last : -1;
    if (c->o.cross_block < 0) return aq_model_forward(m, tokens, lens, nb, &fo, NULL, err);
    c->phase = 0;
    AQ_TRY(aq_model_forward(m, tokens, lens, nb, &fo, NULL, err));
    c->phase = 1;
    fo.quantized = 1;
    return aq_model_forward(m, tokens, lens, nb, &fo, NULL, err);
}

aq_status aq_capture_run(aq_capture *c, aq_model *m, const int *tokens, int first_window,
                         int n_windows, int T, aq_error *err)
{
    if (n_windows < 0 || T < 1 || first_window < 0)
        return aq_fail(err, AQ_ERR_ARG,
                       "capture: %d windows of %d tokens from window %d is invalid", n_windows, T,
                       first_window);
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
    for (int w0 = 0; w0 < n_windows && st == AQ_OK; w0 += bw) {
        int nb = n_windows - w0 < bw ? n_windows - w0 : bw;
        for (int i = 0; i < nb; i++) {
            lens[i] = T;
            ids[i] = first_window + w0 + i;
        }
        st = run_batch(c, m, tokens + (size_t)w0 * T, lens, nb, ids, err);
        if (st != AQ_OK)
            aq_error_prefix(err, "capture windows %d..%d", first_window + w0,
                            first_window + w0 + nb - 1);
    }
    for (int i = 0; i < c->n; i++)
        aq_sample_sort(&c->st[i]);
    free(lens);
    free(ids);
    return st;
}
