/* table.c — the (layer, option) cost table: building rows in memory and the
 * checks that make it a well-posed input to the program (allocate.h), with
 * the layer index that the cross-row checks build (table.h). The
 * distributed pipeline builds tables with aq_alloc_table_add on rank 0; the
 * CSV reader (table_csv.c) goes through the same function, so both get the
 * same validation. */
#include "allocate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "table.h"

void aq_alloc_table_init(aq_alloc_table *t)
{
    memset(t, 0, sizeof *t);
}

void aq_alloc_table_free(aq_alloc_table *t)
{
    for (size_t i = 0; i < t->n_rows; i++) {
        free(t->rows[i].layer);
        free(t->rows[i].option);
    }
    free(t->rows);
    memset(t, 0, sizeof *t);
}

int64_t aq_alloc_row_size(const aq_alloc_row *r)
{
    return r->size_bits > 0 ? r->size_bits : r->params * r->w_bits;
}

int64_t aq_alloc_row_bops(const aq_alloc_row *r)
{
    return r->macs * r->w_bits * r->a_bits;
}

/* "line 12" or "row 7 (in memory)" for messages. */
void aq_alloc_row_where(const aq_alloc_table *t, size_t i, char *buf, size_t n)
{
    if (t->rows[i].line > 0)
        snprintf(buf, n, "line %ld", t->rows[i].line);
    else
        snprintf(buf, n, "row %zu", i + 1);
}

static aq_status check_row(const char *layer, const char *option, int64_t params, int w_bits,
                           int a_bits, int64_t macs, double loss, int64_t size_bits, aq_error *err)
{
    if (!layer || !*layer) return aq_fail(err, AQ_ERR_ARG, "empty layer name");
    if (!option || !*option) return aq_fail(err, AQ_ERR_ARG, "layer '%s': empty option name", layer);
    const char *who = layer;
    if (isnan(loss)) return aq_fail(err, AQ_ERR_ARG, "layer '%s' option '%s': loss is NaN", who, option);
    if (isinf(loss)) return aq_fail(err, AQ_ERR_ARG, "layer '%s' option '%s': loss is infinite", who, option);
    if (loss < 0)
        return aq_fail(err, AQ_ERR_ARG, "layer '%s' option '%s': loss %g is negative (losses are increases, >= 0)",
                       who, option, loss);
    if (params <= 0)
        return aq_fail(err, AQ_ERR_ARG, "layer '%s' option '%s': params %lld must be positive", who, option,
                       (long long)params);
    if (w_bits < 2 || w_bits > 32) /* 32: an FP32 option of a tensor (the embedding's f32) */
        return aq_fail(err, AQ_ERR_ARG, "layer '%s' option '%s': w_bits %d outside 2..32", who, option, w_bits);
    if (a_bits < 2 || a_bits > 16)
        return aq_fail(err, AQ_ERR_ARG, "layer '%s' option '%s': a_bits %d outside 2..16 (16 = not quantized)",
                       who, option, a_bits);
    if (macs < 0)
        return aq_fail(err, AQ_ERR_ARG, "layer '%s' option '%s': macs %lld is negative", who, option,
                       (long long)macs);
    if (size_bits < 0)
        return aq_fail(err, AQ_ERR_ARG, "layer '%s' option '%s': size_bits %lld is negative", who, option,
                       (long long)size_bits);
    /* Totals over a table must fit int64 too: keep each row below 2^53 so that
     * sums over millions of rows cannot overflow and stay exact in a double. */
    const double lim = 9007199254740992.0;
    if ((double)params * w_bits >= lim || (double)macs * w_bits * a_bits >= lim || (double)size_bits >= lim)
        return aq_fail(err, AQ_ERR_ARG, "layer '%s' option '%s': size or BOPs exceed 2^53", who, option);
    return AQ_OK;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

aq_status aq_alloc_table_add(aq_alloc_table *t, const char *layer, const char *option, int64_t params,
                             int w_bits, int a_bits, int64_t macs, double loss, int64_t size_bits,
                             long line, aq_error *err)
{
    aq_status st = check_row(layer, option, params, w_bits, a_bits, macs, loss, size_bits, err);
    if (st != AQ_OK) {
        if (line > 0) aq_error_prefix(err, "line %ld", line);
        return st;
    }
    if (t->n_rows == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        aq_alloc_row *r = realloc(t->rows, cap * sizeof *r);
        if (!r) return aq_fail_nomem(err, "allocation table rows", cap * sizeof *r);
        t->rows = r;
        t->cap = cap;
    }
    aq_alloc_row *r = &t->rows[t->n_rows];
    r->layer = dup_str(layer);
    r->option = dup_str(option);
    if (!r->layer || !r->option) {
        free(r->layer);
        free(r->option);
        return aq_fail_nomem(err, "allocation table names", strlen(layer) + strlen(option) + 2);
    }
    r->params = params;
    r->w_bits = w_bits;
    r->a_bits = a_bits;
    r->macs = macs;
    r->loss = loss;
    r->size_bits = size_bits;
    r->line = line;
    t->n_rows++;
    return AQ_OK;
}

/* ---------------------------------------------------- the layer index -- */
typedef struct entry {
    const char *a, *b; /* sort keys */
    size_t row;
} entry;

static int cmp_entry(const void *x, const void *y)
{
    const entry *p = x, *q = y;
    int c = strcmp(p->a, q->a);
    if (!c && p->b && q->b) c = strcmp(p->b, q->b);
    if (!c) c = (p->row > q->row) - (p->row < q->row);
    return c;
}

static int cmp_size(const void *x, const void *y)
{
    size_t p = *(const size_t *)x, q = *(const size_t *)y;
    return (p > q) - (p < q);
}

void aq_alloc_index_free(aq_alloc_index *ix)
{
    free(ix->start);
    free(ix->rows);
    memset(ix, 0, sizeof *ix);
}

/* Options must mean the same bits everywhere: "w4a8" is one (w, a) pair. */
static aq_status check_options(const aq_alloc_table *t, entry *e, aq_error *err)
{
    size_t n = t->n_rows;
    for (size_t i = 0; i < n; i++) e[i] = (entry){t->rows[i].option, NULL, i};
    qsort(e, n, sizeof *e, cmp_entry);
    for (size_t i = 1; i < n; i++) {
        const aq_alloc_row *p = &t->rows[e[i - 1].row], *q = &t->rows[e[i].row];
        if (strcmp(p->option, q->option) || (p->w_bits == q->w_bits && p->a_bits == q->a_bits)) continue;
        char w1[32], w2[32];
        aq_alloc_row_where(t, e[i - 1].row, w1, sizeof w1);
        aq_alloc_row_where(t, e[i].row, w2, sizeof w2);
        return aq_fail(err, AQ_ERR_ARG, "option '%s' means w_bits=%d a_bits=%d at %s but w_bits=%d a_bits=%d at %s",
                       p->option, p->w_bits, p->a_bits, w1, q->w_bits, q->a_bits, w2);
    }
    return AQ_OK;
}

aq_status aq_alloc_index_build(const aq_alloc_table *t, aq_alloc_index *ix, aq_error *err)
{
    memset(ix, 0, sizeof *ix);
    size_t n = t->n_rows;
    if (n == 0) return aq_fail(err, AQ_ERR_ARG, "the allocation table has no rows");
    entry *e = malloc(n * sizeof *e);
    size_t *first = malloc(n * sizeof *first), *lay = malloc(n * sizeof *lay);
    ix->start = malloc((n + 1) * sizeof *ix->start);
    ix->rows = malloc(n * sizeof *ix->rows);
    aq_status st = AQ_OK;
    if (!e || !first || !lay || !ix->start || !ix->rows) {
        st = aq_fail_nomem(err, "allocation table index", n * (sizeof *e + 4 * sizeof(size_t)));
        goto done;
    }
    for (size_t i = 0; i < n; i++) e[i] = (entry){t->rows[i].layer, t->rows[i].option, i};
    qsort(e, n, sizeof *e, cmp_entry);
    /* Layer runs; duplicates are adjacent; first[] = first row of each layer. */
    size_t nl = 0;
    for (size_t i = 0; i < n; i++) {
        const aq_alloc_row *q = &t->rows[e[i].row];
        if (i > 0) {
            const aq_alloc_row *p = &t->rows[e[i - 1].row];
            char w1[32], w2[32];
            aq_alloc_row_where(t, e[i - 1].row, w1, sizeof w1);
            aq_alloc_row_where(t, e[i].row, w2, sizeof w2);
            if (!strcmp(p->layer, q->layer)) {
                if (!strcmp(p->option, q->option)) {
                    st = aq_fail(err, AQ_ERR_ARG, "duplicate row for layer '%s' option '%s': %s and %s",
                                 q->layer, q->option, w1, w2);
                    goto done;
                }
                if (p->params != q->params) {
                    st = aq_fail(err, AQ_ERR_ARG, "layer '%s' has params %lld at %s but %lld at %s", q->layer,
                                 (long long)p->params, w1, (long long)q->params, w2);
                    goto done;
                }
                lay[e[i].row] = nl - 1;
                if (e[i].row < first[nl - 1]) first[nl - 1] = e[i].row;
                continue;
            }
        }
        first[nl] = e[i].row;
        lay[e[i].row] = nl++;
    }
    AQ_TRY_GOTO(st, check_options(t, e, err), done);
    /* Renumber layers by order of first appearance. */
    size_t *order = malloc((nl + 1) * sizeof *order);
    if (!order) {
        st = aq_fail_nomem(err, "allocation table index", nl * sizeof *order);
        goto done;
    }
    memcpy(order, first, nl * sizeof *order);
    qsort(order, nl, sizeof *order, cmp_size);
    for (size_t l = 0; l < nl; l++) first[lay[order[l]]] = l; /* old layer -> new */
    for (size_t i = 0; i < n; i++) lay[i] = first[lay[i]];
    ix->n_layers = nl;
    memset(ix->start, 0, (n + 1) * sizeof *ix->start);
    for (size_t i = 0; i < n; i++) ix->start[lay[i] + 1]++;
    for (size_t l = 0; l < nl; l++) ix->start[l + 1] += ix->start[l];
    /* Rows are visited in table order, so each layer's rows stay in table order. */
    for (size_t l = 0; l < nl; l++) order[l] = ix->start[l];
    for (size_t i = 0; i < n; i++) ix->rows[order[lay[i]]++] = i;
    free(order);
done:
    free(e);
    free(first);
    free(lay);
    if (st != AQ_OK) aq_alloc_index_free(ix);
    return st;
}

aq_status aq_alloc_table_check(const aq_alloc_table *t, aq_error *err)
{
    aq_alloc_index ix;
    AQ_TRY(aq_alloc_index_build(t, &ix, err));
    aq_alloc_index_free(&ix);
    return AQ_OK;
}

int64_t aq_alloc_total_params(const aq_alloc_table *t, aq_error *err)
{
    aq_alloc_index ix;
    if (aq_alloc_index_build(t, &ix, err) != AQ_OK) return -1;
    int64_t total = 0;
    for (size_t l = 0; l < ix.n_layers; l++) total += t->rows[ix.rows[ix.start[l]]].params;
    aq_alloc_index_free(&ix);
    return total;
}

void aq_alloc_format_size(char *buf, size_t n, aq_alloc_size_unit unit, double value)
{
    switch (unit) {
    case AQ_SIZE_AVG_BITS: snprintf(buf, n, "%.4g bits/weight", value); break;
    case AQ_SIZE_FP32_FRACTION: snprintf(buf, n, "%.4g of the FP32 size", value); break;
    case AQ_SIZE_BITS: snprintf(buf, n, "%.0f bits", value); break;
    case AQ_SIZE_BYTES: snprintf(buf, n, "%.0f bytes", value); break;
    default: snprintf(buf, n, "(no size budget)"); break;
    }
}
