/* capture.c — per-capture-point input statistics over calibration windows
 * (capture.h): float64 Grams, per-channel ranges, a bottom-k hash sample, and
 * the sequential-mode cross statistics. */
#include "capture.h"

#include <blis.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "capture_internal.h"

void aq_capture_opts_default(aq_capture_opts *o)
{
    memset(o, 0, sizeof *o);
    o->block_first = o->block_last = -1;
    o->points_mask = (1 << AQ_CAP_COUNT) - 1;
    o->sample_rows = 1024;
    o->sample_bytes = AQ_CAPTURE_SAMPLE_BYTES;
    o->cross_block = -1;
    o->batch_windows = 8;
}

/* Doubles of a symmetric Gram of width d + 1: whole, or its packed lower triangle. */
static size_t sym_len(const aq_capstat *s)
{
    size_t e = (size_t)s->d + 1;
    return s->packed ? e * (e + 1) / 2 : e * e;
}

static aq_status alloc_stat(aq_capstat *s, int seq, int cap, aq_error *err)
{
    size_t d = (size_t)s->d, g = (d + 1) * (d + 1), gs = sym_len(s);
    s->sample_cap = cap;
    s->gram = calloc(gs, sizeof(double));
    s->xmin = malloc(d * sizeof(float));
    s->xmax = malloc(d * sizeof(float));
    s->sample = malloc((size_t)cap * d * sizeof(float) + 1);
    s->sample_win = malloc((size_t)cap * sizeof(uint32_t) + 1);
    s->sample_pos = malloc((size_t)cap * sizeof(uint32_t) + 1);
    int ok = s->gram && s->xmin && s->xmax && s->sample && s->sample_win && s->sample_pos;
    if (seq) {
        s->cross = calloc(g, sizeof(double));
        s->gram_q = calloc(gs, sizeof(double));
        s->xq_min = malloc(d * sizeof(float));
        s->xq_max = malloc(d * sizeof(float));
        s->sample_q = malloc((size_t)cap * d * sizeof(float) + 1);
        ok = ok && s->cross && s->gram_q && s->xq_min && s->xq_max && s->sample_q;
    }
    return ok ? AQ_OK : aq_fail_nomem(err, "capture statistics", 3 * g * sizeof(double));
}

static void free_stat(aq_capstat *s)
{
    free(s->gram);
    free(s->xmin);
    free(s->xmax);
    free(s->sample);
    free(s->sample_win);
    free(s->sample_pos);
    free(s->cross);
    free(s->gram_q);
    free(s->xq_min);
    free(s->xq_max);
    free(s->sample_q);
}

static aq_status check_opts(const aq_model *m, aq_capture_opts *o, aq_error *err)
{
    int L = aq_model_config(m)->n_layers;
    if (o->block_first < 0 && o->block_last < 0) {
        o->block_first = 0;
        o->block_last = L - 1;
    }
    if (o->cross_block >= 0) {
        if (o->cross_block > L || (o->cross_block == L && !o->head))
            return aq_fail(err, AQ_ERR_ARG,
                           "capture: sequential block %d invalid (model has %d blocks; %d = the "
                           "classifier, with head capture on)",
                           o->cross_block, L, L);
        /* only block b's points (or only the classifier input: an empty block range) */
        o->block_first = o->cross_block;
        o->block_last = o->cross_block < L ? o->cross_block : L - 1;
    }
    if (o->block_first < 0 || o->block_last >= L || o->block_first > o->block_last + 1)
        return aq_fail(err, AQ_ERR_ARG, "capture: block range %d..%d invalid (model has %d blocks)",
                       o->block_first, o->block_last, L);
    if (o->packed && o->lower_only)
        return aq_fail(err, AQ_ERR_ARG, "capture: a packed capture cannot also be lower_only");
    if (o->sample_rows < 0 || o->batch_windows < 1)
        return aq_fail(err, AQ_ERR_ARG, "capture: sample_rows %d / batch_windows %d invalid",
                       o->sample_rows, o->batch_windows);
    return AQ_OK;
}

/* Rows kept for a point of width d: sample_rows, bounded by sample_bytes. */
static int sample_cap(const aq_capture_opts *o, int d, int seq)
{
    size_t row = (size_t)d * sizeof(float) * (seq ? 2 : 1) + 2 * sizeof(uint32_t);
    if (!o->sample_bytes || (size_t)o->sample_rows * row <= o->sample_bytes) return o->sample_rows;
    return (int)(o->sample_bytes / row);
}

aq_status aq_capture_new(const aq_model *m, const aq_capture_opts *opts, aq_capture **out,
                         aq_error *err)
{
    aq_capture *c = calloc(1, sizeof *c);
    if (!c) return aq_fail_nomem(err, "capture", sizeof *c);
    if (opts)
        c->o = *opts;
    else
        aq_capture_opts_default(&c->o);
    aq_status st;
    AQ_TRY_GOTO(st, check_opts(m, &c->o, err), fail);
    int L = aq_model_config(m)->n_layers, seq = c->o.cross_block >= 0;
    c->n_layers = L;
    c->st = calloc((size_t)(L + 1) * (AQ_CAP_COUNT + 1), sizeof *c->st);
    if (!c->st) {
        st = aq_fail_nomem(err, "capture table", 0);
        goto fail;
    }
    for (int b = c->o.block_first; b <= c->o.block_last && b < L; b++)
        for (int p = 0; p < AQ_CAP_COUNT; p++) {
            if (!(c->o.points_mask & (1 << p))) continue;
            aq_capstat *s = &c->st[c->n++];
            s->block = b;
            s->point = (aq_cap_point)p;
            s->d = aq_cap_point_dim(m, (aq_cap_point)p);
            s->packed = c->o.packed;
            AQ_TRY_GOTO(st, alloc_stat(s, seq, sample_cap(&c->o, s->d, seq), err), fail);
        }
    if (c->o.head && (c->o.cross_block < 0 || c->o.cross_block == L)) {
        aq_capstat *s = &c->st[c->n++];
        s->block = L;
        s->point = AQ_CAP_HEAD;
        s->d = aq_cap_point_dim(m, AQ_CAP_HEAD);
        s->packed = c->o.packed;
        AQ_TRY_GOTO(st, alloc_stat(s, seq, sample_cap(&c->o, s->d, seq), err), fail);
    }
    aq_capture_reset(c);
    *out = c;
    return AQ_OK;
fail:
    aq_capture_free(c);
    return st;
}

void aq_capture_free(aq_capture *c)
{
    if (!c) return;
    for (int i = 0; i < c->n; i++)
        free_stat(&c->st[i]);
    free(c->st);
    for (int p = 0; p <= AQ_CAP_COUNT; p++)
        free(c->xbuf[p]);
    free(c->dbuf);
    free(c->dbuf2);
    free(c->row_win);
    free(c->row_pos);
    free(c);
}

/* Zero a symmetric Gram: whole, packed, or (lower_only) its lower triangle
 * alone, so that its upper half is never touched. */
static void zero_sym(const aq_capture *c, const aq_capstat *s, double *G)
{
    size_t e = (size_t)s->d + 1;
    if (!c->o.lower_only) {
        memset(G, 0, sym_len(s) * sizeof(double));
        return;
    }
    for (size_t i = 0; i < e; i++) memset(G + i * e, 0, (i + 1) * sizeof(double));
}

void aq_capture_reset(aq_capture *c)
{
    for (int i = 0; i < c->n; i++) {
        aq_capstat *s = &c->st[i];
        size_t d = (size_t)s->d, g = (d + 1) * (d + 1);
        s->n_rows = 0;
        s->n_sample = 0;
        zero_sym(c, s, s->gram);
        for (size_t j = 0; j < d; j++) {
            s->xmin[j] = INFINITY;
            s->xmax[j] = -INFINITY;
        }
        if (s->cross) {
            memset(s->cross, 0, g * sizeof(double));
            zero_sym(c, s, s->gram_q);
            for (size_t j = 0; j < d; j++) {
                s->xq_min[j] = INFINITY;
                s->xq_max[j] = -INFINITY;
            }
        }
    }
}

aq_status aq_capture_set_block(aq_capture *c, int block, aq_error *err)
{
    if (c->o.block_first != c->o.block_last || c->o.head || block < 0 || block >= c->n_layers)
        return aq_fail(err, AQ_ERR_ARG, "capture: cannot move a capture of blocks %d..%d%s to block %d of %d",
                       c->o.block_first, c->o.block_last, c->o.head ? " and the classifier" : "", block,
                       c->n_layers);
    c->o.block_first = c->o.block_last = block;
    if (c->o.cross_block >= 0) c->o.cross_block = block;
    for (int i = 0; i < c->n; i++) c->st[i].block = block;
    aq_capture_reset(c);
    return AQ_OK;
}

int aq_capture_count(const aq_capture *c)
{
    return c->n;
}
const aq_capstat *aq_capture_stat(const aq_capture *c, int i)
{
    return i >= 0 && i < c->n ? &c->st[i] : NULL;
}

const aq_capstat *aq_capture_find(const aq_capture *c, int block, aq_cap_point point)
{
    for (int i = 0; i < c->n; i++)
        if (c->st[i].block == block && c->st[i].point == point) return &c->st[i];
    return NULL;
}

aq_capstat *aq_capture_find_mut(aq_capture *c, int block, aq_cap_point point)
{
    return (aq_capstat *)aq_capture_find(c, block, point);
}

/* ---- accumulation ------------------------------------------------------ */

static aq_status grow_d(double **p, size_t *cap, size_t n, aq_error *err)
{
    if (n <= *cap) return AQ_OK;
    double *q = realloc(*p, n * sizeof(double));
    if (!q) return aq_fail_nomem(err, "capture float64 rows", n * sizeof(double));
    *p = q;
    *cap = n;
    return AQ_OK;
}

/* Widen rows [n, d] to float64 [n, d+1] with a ones column last. */
static void widen(const float *x, size_t n, int d, double *out)
{
    for (size_t r = 0; r < n; r++) {
        for (int j = 0; j < d; j++)
            out[r * (d + 1) + j] = x[r * (size_t)d + j];
        out[r * (d + 1) + d] = 1.0;
    }
}

/* G += A^T B for A, B [n, d+1] float64 (G (d+1)^2). sym: A == B (dsyrk on the
 * lower triangle only; aq_capture_mirror copies it to the upper one when the
 * rows are all in, so G ends exactly symmetric). */
static void gram_add(double *G, const double *A, const double *B, size_t n, int d, int sym)
{
    double one = 1.0;
    dim_t e = d + 1;
    if (n == 0) return;
    if (sym) {
        bli_dsyrk(BLIS_LOWER, BLIS_NO_TRANSPOSE, e, (dim_t)n, &one, (double *)A, 1, e, &one, G, e,
                  1);
    } else {
        bli_dgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, e, e, (dim_t)n, &one, (double *)A, 1, e,
                  (double *)B, e, 1, &one, G, e, 1);
    }
}

static void mirror(double *G, int d)
{
    size_t e = (size_t)d + 1;
    for (size_t i = 0; i < e; i++)
        for (size_t j = i + 1; j < e; j++)
            G[i * e + j] = G[j * e + i];
}

void aq_capture_mirror(aq_capture *c)
{
    for (int i = 0; i < c->n && !c->o.packed; i++) {
        mirror(c->st[i].gram, c->st[i].d);
        if (c->st[i].gram_q) mirror(c->st[i].gram_q, c->st[i].d);
    }
}

static void minmax(const float *x, size_t n, int d, float *mn, float *mx)
{
    for (size_t r = 0; r < n; r++)
        for (int j = 0; j < d; j++) {
            float v = x[r * (size_t)d + j];
            if (v < mn[j]) mn[j] = v;
            if (v > mx[j]) mx[j] = v;
        }
}

/* Accumulate one batch of rows: x (FP) and, in sequential mode, xq. */
aq_status aq_capture_add_rows(aq_capture *c, aq_capstat *s, const float *x, const float *xq,
                              size_t n, const uint32_t *win, const uint32_t *pos, aq_error *err)
{
    int d = s->d;
    size_t need = n * (size_t)(d + 1);
    AQ_TRY(grow_d(&c->dbuf, &c->dcap, need, err));
    widen(x, n, d, c->dbuf);
    gram_add(s->gram, c->dbuf, c->dbuf, n, d, 1);
    minmax(x, n, d, s->xmin, s->xmax);
    if (xq) {
        AQ_TRY(grow_d(&c->dbuf2, &c->dcap2, need, err));
        widen(xq, n, d, c->dbuf2);
        gram_add(s->gram_q, c->dbuf2, c->dbuf2, n, d, 1);
        gram_add(s->cross, c->dbuf, c->dbuf2, n, d, 0);
        minmax(xq, n, d, s->xq_min, s->xq_max);
    }
    for (size_t r = 0; r < n; r++)
        aq_sample_offer(s, c->o.seed, win[r], pos[r], x + r * (size_t)d,
                        xq ? xq + r * (size_t)d : NULL);
    s->n_rows += n;
    return AQ_OK;
}
