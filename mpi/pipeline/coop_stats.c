/* coop_stats.c — a cooperative task's Gram straight from its statistics file
 * (WORK/stats/<block>.<point>.aqs, stage_stats.h): each group member streams
 * the file (aq_result_stream: the payload inflated 1 MiB at a time, every
 * check of aq_result_read) and keeps only the Gram columns it owns, so no
 * member ever holds the whole D x D matrix (docs/COOP.md, "Memory per rank").
 * The file stores the lower triangle packed row by row ("gram_lower",
 * statistics format 2) or the full matrix ("gram", format 1); element (r, c)
 * of the symmetric matrix is column c's row r and column r's row c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../io/resultfile.h"
#include "../../src/model/capture.h"
#include "coop.h"
#include "coop_sched.h"
#include "stage_stats.h"

typedef struct gsink {
    const aq_coop_grid *g;
    aq_coop_gram *gr;
    const char *key, *path;
    size_t *local;        /* [D] local column of a global one, or SIZE_MAX */
    int which;            /* tensor being received: 1 gram_lower, 2 gram, 3 n_rows, 4 sample; 0 none */
    int have_gram, have_rows, have_sample;
    size_t sample_d;
    size_t r, c;          /* the next element of the Gram being received */
    int64_t n_rows;
} gsink;

static aq_status sink_key(void *ctx, const char *layer, const char *option, aq_error *err)
{
    gsink *s = ctx;
    if (strcmp(layer, s->key) || strcmp(option, "capture"))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: holds '%s', expected '%s'", s->path, layer, s->key);
    return AQ_OK;
}

static int sink_tensor(void *ctx, const aq_tensor_view *v)
{
    gsink *s = ctx;
    size_t D = s->gr->D;
    s->which = 0;
    if (!strcmp(v->name, "gram_lower") && v->dtype == AQ_F64 && v->ndim == 1 && v->nbytes == D * (D + 1) / 2 * 8)
        s->which = 1;
    else if (!strcmp(v->name, "gram") && v->dtype == AQ_F64 && v->ndim == 2 && (size_t)v->shape[0] == D &&
             (size_t)v->shape[1] == D)
        s->which = 2;
    else if (!strcmp(v->name, "n_rows") && v->dtype == AQ_I64 && v->ndim == 1 && v->shape[0] == 1)
        s->which = 3;
    else if (!strcmp(v->name, "sample") && v->dtype == AQ_F32 && v->ndim == 2)
        s->have_sample = 1, s->sample_d = (size_t)v->shape[1]; /* its shape only: d */
    if (s->which == 1 || s->which == 2) s->r = s->c = 0, s->have_gram = 1;
    return s->which != 0;
}

/* Element (r, c) = (c, r) of the symmetric Gram into the owned columns. */
static void put(gsink *s, size_t r, size_t c, double v)
{
    size_t D = s->gr->D;
    if (s->local[c] != SIZE_MAX) s->gr->loc[s->local[c] * D + r] = v;
    if (r != c && s->local[r] != SIZE_MAX) s->gr->loc[s->local[r] * D + c] = v;
}

static void gram_value(gsink *s, double v)
{
    size_t D = s->gr->D;
    if (s->which == 1) { /* packed lower: row r holds columns 0..r */
        put(s, s->r, s->c, v);
        if (++s->c > s->r) s->r++, s->c = 0;
    } else { /* full, row-major: only the owned columns of each row (= owned rows of the column) */
        if (s->local[s->c] != SIZE_MAX) s->gr->loc[s->local[s->c] * D + s->r] = v;
        if (++s->c == D) s->r++, s->c = 0;
    }
}

static void sink_data(void *ctx, size_t off, const unsigned char *p, size_t n)
{
    gsink *s = ctx;
    if (s->which == 3) {
        if (off + n <= 8) memcpy((unsigned char *)&s->n_rows + off, p, n), s->have_rows = 1;
        return;
    }
    /* chunks start at multiples of 8 bytes of the tensor (aq_result_stream's
     * chunk is 1 MiB), so every value is whole in one chunk */
    for (size_t i = 0; i + 8 <= n; i += 8) {
        double v;
        memcpy(&v, p + i, 8); /* unaligned in the stream */
        gram_value(s, v);
    }
    (void)off;
}

aq_status aq_coop_gram_from_stats(const aq_coop_grid *g, const char *work, int block, int point,
                                  const aq_fingerprint *fp, size_t d_in, aq_coop_gram *out, aq_error *err)
{
    char path[AQ_PIPE_PATH], key[96];
    aq_stats_path(work, "stats", block, point, path);
    snprintf(key, sizeof key, "stats.%d.%s", block, aq_cap_point_name((aq_cap_point)point));
    memset(out, 0, sizeof *out);
    gsink s = {.g = g, .gr = out, .key = key, .path = path};
    size_t D = d_in + 1;
    out->D = D;
    out->ncols = aq_coop_nlocal(g, D, g->me);
    size_t n = out->ncols * D;
    out->loc = calloc(n ? n : 1, sizeof *out->loc);
    s.local = malloc(D * sizeof *s.local);
    if (!out->loc || !s.local) {
        free(s.local);
        aq_coop_gram_free(out);
        return aq_fail_nomem(err, "cooperative Gram columns", out->ncols * D * sizeof(double));
    }
    for (size_t j = 0; j < D; j++) s.local[j] = SIZE_MAX;
    for (size_t l = 0; l < out->ncols; l++) s.local[aq_coop_global(g, l)] = l;
    aq_result_sink sink = {sink_key, sink_tensor, sink_data, &s};
    aq_status st = aq_result_stream(path, fp, &sink, NULL, err);
    if (st == AQ_OK && (!s.have_gram || !s.have_rows || !s.have_sample || s.sample_d != d_in || s.n_rows <= 0))
        st = aq_fail(err, AQ_ERR_FORMAT, "%s: missing or inconsistent gram / n_rows / sample for a layer of d_in %zu "
                     "(sample width %zu)", path, d_in, s.sample_d);
    free(s.local);
    if (st != AQ_OK) {
        aq_coop_gram_free(out);
        return st;
    }
    out->n_tokens = (uint64_t)s.n_rows;
    return AQ_OK;
}
