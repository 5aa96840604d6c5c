/* cnn_tune_stats.c — the BN/bias stage's passes over the calibration
 * images, spread over the processes of an aq_cnnq_split: each process
 * fills the per-image rows of its slice, the split's gather fills the rest,
 * and the rows are summed in image order. One process summing image after
 * image gives the same bits, so the result does not depend on the split. */
#include <stdlib.h>
#include <string.h>

#include "cnn_quant_internal.h"
#include "cnn_tune_internal.h"

void aq_tune_share(const aq_cnnq_split *s, size_t n, size_t *lo, size_t *hi)
{
    if (!s || s->size <= 1) {
        *lo = 0, *hi = n;
        return;
    }
    *lo = n * (size_t)s->rank / (size_t)s->size;
    *hi = n * (size_t)(s->rank + 1) / (size_t)s->size;
}

aq_status aq_tune_gather(const aq_cnnq_split *s, aq_status local, double *rows, size_t n,
                         size_t len, aq_error *err)
{
    if (!s || s->size <= 1) return local;
    return s->gather(s->ctx, local, rows, n, len, err);
}

void aq_tune_sum_rows(const double *rows, size_t n, size_t len, double *out)
{
    memset(out, 0, len * sizeof *out);
    for (size_t b = 0; b < n; b++)
        for (size_t j = 0; j < len; j++)
            out[j] += rows[b * len + j];
}

typedef struct sums_ctx {
    const aq_cnnq_model *m; /* fake quantization, or NULL */
    int n_t;
    const int *node, *chans;
    const size_t *off; /* [n_t] node t's first channel in a row */
    size_t tot, len;   /* channels of all nodes; row length */
    int with_sq;
    double *rows;      /* [n images][len]: sums, then squares (with_sq), then counts */
    size_t lo, cur;    /* this process's first image; the chunk's first */
    int bad;           /* a node's output has another channel count: its index + 1 */
} sums_ctx;

static void sums_begin(void *ctx, size_t first, size_t nb, const float *x)
{
    (void)nb, (void)x;
    sums_ctx *c = ctx;
    c->cur = c->lo + first;
}

static void sums_obs(void *ctx, int node, const float *data, const aq_cnn_shape *s)
{
    sums_ctx *c = ctx;
    if (c->m) aq_cnnq_model_observe(c->m, node, data, s);
    for (int t = 0; t < c->n_t; t++) {
        if (c->node[t] != node) continue;
        size_t N = (size_t)s->d[0], C = s->ndim > 1 ? (size_t)s->d[1] : 1,
               sp = aq_cnn_numel(s) / (N * C);
        if (C != (size_t)c->chans[t]) {
            c->bad = t + 1;
            continue;
        }
        for (size_t b = 0; b < N; b++) {
            double *row = c->rows + (c->cur + b) * c->len;
            for (size_t ch = 0; ch < C; ch++) {
                const float *x = data + (b * C + ch) * sp;
                double a = 0, q = 0;
                for (size_t i = 0; i < sp; i++)
                    a += x[i], q += (double)x[i] * x[i];
                row[c->off[t] + ch] = a;
                if (c->with_sq) row[c->tot + c->off[t] + ch] = q;
            }
            row[(c->with_sq ? 2 : 1) * c->tot + (size_t)t] = (double)sp;
        }
    }
}

/* Run the slice of this process, then gather: c->rows complete. */
static aq_status sums_pass(const aq_cnnq_runner *r, sums_ctx *c, const aq_cnnq_seq *calib,
                           size_t n, const aq_cnnq_split *split, aq_error *err)
{
    size_t hi;
    aq_tune_share(split, n, &c->lo, &hi);
    aq_status st = AQ_OK;
    if (hi > c->lo)
        st = aq_cnnq_run_images(r, calib->pixels + c->lo * calib->image_size, hi - c->lo,
                                calib->image_size, calib->norm, calib->chunk, err);
    if (st == AQ_OK && c->bad)
        st = aq_fail(err, AQ_ERR_SHAPE, "node '%s': its output does not have %d channels on axis 1",
                     r->g->nodes[c->node[c->bad - 1]].name, c->chans[c->bad - 1]);
    return aq_tune_gather(split, st, c->rows, n, c->len, err);
}

aq_status aq_tune_channel_sums(const aq_cnn_graph *g, const aq_cnnq_model *m, int n_t,
                               const int *node, const int *chans, const aq_cnnq_seq *calib,
                               size_t n, const aq_cnnq_split *split, double *sum, double *sq,
                               double *count, aq_error *err)
{
    sums_ctx c = {m, n_t, node, chans, NULL, 0, 0, sq != NULL, NULL, 0, 0, 0};
    size_t *off = malloc(((size_t)n_t + 1) * sizeof *off);
    int until = 0;
    for (int t = 0; off && t < n_t; t++) {
        off[t] = c.tot, c.tot += (size_t)chans[t];
        if (node[t] + 1 > until) until = node[t] + 1;
    }
    c.off = off;
    c.len = (c.with_sq ? 2 : 1) * c.tot + (size_t)n_t;
    double *total = malloc((c.len + 1) * sizeof *total);
    c.rows = calloc(n * c.len + 1, sizeof *c.rows);
    aq_status st = off && total && c.rows ? AQ_OK
                                          : aq_fail_nomem(err, "per-image channel sums", n * c.len * 8);
    aq_cnnq_runner r = {m ? &m->g : g, sums_obs, &c, sums_begin, NULL, until};
    /* every process takes part in the gather, even after a local failure */
    if (st == AQ_OK)
        st = sums_pass(&r, &c, calib, n, split, err);
    else
        st = aq_tune_gather(split, st, NULL, n, c.len, err);
    if (st == AQ_OK) {
        aq_tune_sum_rows(c.rows, n, c.len, total);
        memcpy(sum, total, c.tot * sizeof *sum);
        if (sq) memcpy(sq, total + c.tot, c.tot * sizeof *sq);
        memcpy(count, total + (c.with_sq ? 2 : 1) * c.tot, (size_t)n_t * sizeof *count);
    }
    free(off), free(total), free(c.rows);
    return st;
}
