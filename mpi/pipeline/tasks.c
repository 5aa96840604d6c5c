/* tasks.c — cost model, canonical task order and LPT scheduling (tasks.h).
 * Everything here is pure and deterministic: no MPI, no clocks. */
#include "tasks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double aq_dist_task_cost(int64_t d_out, int64_t d_in, int64_t n_rows, int64_t iters)
{
    double k = (double)(d_in + 1) * (double)(d_in + 1);
    return (double)iters * (double)d_out * k + (double)n_rows * k;
}

static int cmp_task(const void *a, const void *b)
{
    const aq_dist_task *x = a, *y = b;
    if (x->layer_index != y->layer_index) return x->layer_index < y->layer_index ? -1 : 1;
    if (x->option_index != y->option_index) return x->option_index < y->option_index ? -1 : 1;
    return 0;
}

aq_status aq_dist_tasks_order(aq_dist_task *t, size_t n, aq_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (!(t[i].cost >= 0) || !isfinite(t[i].cost) || !t[i].layer || !t[i].option)
            return aq_fail(err, AQ_ERR_ARG, "task %zu (%s, %s): missing key or bad cost %g", i,
                           t[i].layer ? t[i].layer : "?", t[i].option ? t[i].option : "?", t[i].cost);
    qsort(t, n, sizeof *t, cmp_task);
    for (size_t i = 1; i < n; i++)
        if (cmp_task(&t[i - 1], &t[i]) == 0)
            return aq_fail(err, AQ_ERR_ARG, "tasks (%s, %s) and (%s, %s) have the same layer/option index",
                           t[i - 1].layer, t[i - 1].option, t[i].layer, t[i].option);
    /* Same strings under different indices would share a result file. */
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n && t[j].layer_index == t[i].layer_index; j++)
            if (!strcmp(t[i].option, t[j].option))
                return aq_fail(err, AQ_ERR_ARG, "layer %s lists option %s twice", t[i].layer, t[i].option);
    for (size_t i = 1; i < n; i++)
        if (t[i].layer_index != t[i - 1].layer_index && !strcmp(t[i].layer, t[i - 1].layer))
            return aq_fail(err, AQ_ERR_ARG, "layer name %s is used by two layer indices", t[i].layer);
    return AQ_OK;
}

/* Indices sorted by cost descending, ties by index ascending. qsort_r is not
 * portable C11, so the comparison reads a (cost, index) pair array. */
typedef struct keyed {
    double cost;
    size_t index;
} keyed;

static int cmp_keyed(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->cost != y->cost) return x->cost > y->cost ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index);
}

/* Returns a malloc'd array of the non-skipped tasks by cost descending; *m = count. */
static keyed *by_cost(const double *cost, const unsigned char *skip, size_t n, size_t *m)
{
    keyed *k = malloc((n ? n : 1) * sizeof *k);
    if (!k) return NULL;
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (!skip || !skip[i]) k[c++] = (keyed){cost[i], i};
    qsort(k, c, sizeof *k, cmp_keyed);
    *m = c;
    return k;
}

size_t *aq_dist_by_cost(const double *cost, const unsigned char *skip, size_t n, size_t *m)
{
    keyed *k = by_cost(cost, skip, n, m);
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    for (size_t j = 0; k && idx && j < *m; j++) idx[j] = k[j].index;
    free(k);
    if (!k) {
        free(idx);
        return NULL;
    }
    return idx;
}

static int least_loaded(const double *load, int nranks)
{
    int best = 0;
    for (int r = 1; r < nranks; r++)
        if (load[r] < load[best]) best = r;
    return best;
}

/* LPT over the first m entries of k (already sorted). */
static void lpt_sorted(const keyed *k, size_t m, int nranks, int *owner, double *load)
{
    for (int r = 0; r < nranks; r++) load[r] = 0;
    for (size_t j = 0; j < m; j++) {
        int r = least_loaded(load, nranks);
        owner[k[j].index] = r;
        load[r] += k[j].cost;
    }
}

aq_status aq_dist_lpt(const double *cost, const unsigned char *skip, size_t n, int nranks, int *owner,
                      double *load, aq_error *err)
{
    if (nranks < 1) return aq_fail(err, AQ_ERR_ARG, "LPT: bad rank count %d", nranks);
    for (size_t i = 0; i < n; i++) owner[i] = -1;
    size_t m = 0;
    keyed *k = by_cost(cost, skip, n, &m);
    double *tmp = calloc((size_t)nranks, sizeof *tmp);
    if (!k || !tmp) {
        free(k);
        free(tmp);
        return aq_fail_nomem(err, "LPT scratch", n * sizeof *k);
    }
    lpt_sorted(k, m, nranks, owner, tmp);
    if (load) memcpy(load, tmp, (size_t)nranks * sizeof *load);
    free(k);
    free(tmp);
    return AQ_OK;
}

aq_status aq_dist_schedule_build(const double *cost, const unsigned char *skip, size_t n, int nranks,
                                 double tail_fraction, aq_dist_schedule *s, aq_error *err)
{
    memset(s, 0, sizeof *s);
    if (nranks < 1 || !(tail_fraction >= 0 && tail_fraction < 1))
        return aq_fail(err, AQ_ERR_ARG, "schedule: bad rank count %d or tail fraction %g", nranks, tail_fraction);
    s->nranks = nranks;
    s->n = n;
    size_t m = 0;
    keyed *k = by_cost(cost, skip, n, &m);
    s->owner = malloc((n ? n : 1) * sizeof *s->owner);
    s->start = calloc((size_t)nranks + 1, sizeof *s->start);
    s->list = malloc((n ? n : 1) * sizeof *s->list);
    s->tail = malloc((n ? n : 1) * sizeof *s->tail);
    s->load = calloc((size_t)nranks, sizeof *s->load);
    if (!k || !s->owner || !s->start || !s->list || !s->tail || !s->load) {
        free(k);
        aq_dist_schedule_free(s);
        return aq_fail_nomem(err, "schedule", n * 32);
    }
    for (size_t i = 0; i < n; i++) s->owner[i] = -2;
    double total = 0;
    for (size_t j = 0; j < m; j++) total += k[j].cost;
    /* Static prefix: the largest tasks while the work before them is below
     * (1 - f) of the total; always at least one task. */
    size_t n_static = m;
    if (nranks > 1 && tail_fraction > 0) {
        double acc = 0, lim = (1 - tail_fraction) * total;
        for (n_static = 0; n_static < m && (n_static == 0 || acc < lim); n_static++) acc += k[n_static].cost;
    }
    lpt_sorted(k, n_static, nranks, s->owner, s->load);
    for (size_t j = n_static; j < m; j++) {
        s->owner[k[j].index] = -1;
        s->tail[s->n_tail++] = k[j].index;
        s->tail_cost += k[j].cost;
    }
    /* Group the static tasks by rank (counting sort keeps cost order). */
    for (size_t j = 0; j < n_static; j++) s->start[s->owner[k[j].index] + 1]++;
    for (int r = 0; r < nranks; r++) s->start[r + 1] += s->start[r];
    size_t *fill = calloc((size_t)nranks, sizeof *fill);
    if (!fill) {
        free(k);
        aq_dist_schedule_free(s);
        return aq_fail_nomem(err, "schedule", (size_t)nranks * sizeof *fill);
    }
    for (size_t j = 0; j < n_static; j++) {
        int r = s->owner[k[j].index];
        s->list[s->start[r] + fill[r]++] = k[j].index;
    }
    free(fill);
    free(k);
    return AQ_OK;
}

void aq_dist_schedule_free(aq_dist_schedule *s)
{
    free(s->owner);
    free(s->start);
    free(s->list);
    free(s->tail);
    free(s->load);
    memset(s, 0, sizeof *s);
}

aq_status aq_dist_shard_tasks(const double *cost, size_t n, int shard, int nshards, size_t *out,
                              size_t *count, aq_error *err)
{
    if (nshards < 1 || shard < 0 || shard >= nshards)
        return aq_fail(err, AQ_ERR_ARG, "shard %d is outside 0..%d", shard, nshards - 1);
    int *owner = malloc((n ? n : 1) * sizeof *owner);
    if (!owner) return aq_fail_nomem(err, "shard owners", n * sizeof *owner);
    aq_status st = aq_dist_lpt(cost, NULL, n, nshards, owner, NULL, err);
    size_t c = 0;
    for (size_t i = 0; st == AQ_OK && i < n; i++)
        if (owner[i] == shard) out[c++] = i;
    free(owner);
    *count = c;
    return st;
}

size_t aq_dist_coop_pick(const double *cost, const unsigned char *eligible, const unsigned char *too_big,
                         size_t n, double total, int q, double threshold, unsigned char *coop)
{
    double lim = q > 0 ? threshold * total / q : INFINITY;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        coop[i] = eligible[i] && q > 1 && ((too_big && too_big[i]) || threshold == 0 || cost[i] > lim);
        k += coop[i];
    }
    return k;
}

int aq_dist_coop_nb(int64_t d_out, int q)
{
    int nb = 64;
    while (nb > 1 && d_out <= (int64_t)(q - 1) * nb) nb /= 2;
    return d_out > (int64_t)(q - 1) * nb ? nb : 0;
}
