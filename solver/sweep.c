/* sweep.c — budget sweeps (report.h): one independent solve per average-bit
 * budget, infeasible budgets recorded rather than fatal, Pareto flags, and the
 * knee used as the default chosen point. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

void aq_alloc_sweep_free(aq_alloc_sweep *s)
{
    free(s->pt);
    memset(s, 0, sizeof *s);
}

static void mark_pareto(aq_alloc_sweep *s)
{
    for (size_t i = 0; i < s->n; i++) {
        aq_alloc_point *p = &s->pt[i];
        p->pareto = p->feasible;
        for (size_t j = 0; j < s->n && p->pareto; j++) {
            const aq_alloc_point *q = &s->pt[j];
            if (j == i || !q->feasible) continue;
            int le = q->size_bits <= p->size_bits && q->loss <= p->loss;
            int better = q->size_bits < p->size_bits || q->loss < p->loss;
            if (le && (better || j < i)) p->pareto = 0; /* equal points: keep the first */
        }
    }
}

aq_status aq_alloc_sweep_run(const aq_alloc_table *t, const aq_alloc_spec *spec, double lo, double hi,
                             double step, aq_alloc_sweep *out, aq_error *err)
{
    memset(out, 0, sizeof *out);
    out->min_feasible = NAN;
    if (!(step > 0) || !(lo > 0) || !(hi >= lo) || !isfinite(hi))
        return aq_fail(err, AQ_ERR_ARG, "sweep %g:%g:%g: need 0 < a <= b and step > 0", lo, hi, step);
    double n = floor((hi - lo) / step + 1e-9) + 1;
    if (n > 10000) return aq_fail(err, AQ_ERR_ARG, "sweep %g:%g:%g has %.0f points (at most 10000)", lo, hi, step, n);
    out->pt = calloc((size_t)n, sizeof *out->pt);
    if (!out->pt) return aq_fail_nomem(err, "sweep points", (size_t)n * sizeof *out->pt);
    aq_alloc_spec sp = *spec;
    sp.objective = AQ_ALLOC_MIN_LOSS;
    sp.size_unit = AQ_SIZE_AVG_BITS;
    for (size_t i = 0; i < (size_t)n; i++) {
        aq_alloc_point *p = &out->pt[out->n++];
        p->budget = lo + (double)i * step;
        sp.size_budget = p->budget;
        aq_alloc_solution s;
        aq_error e = {0};
        aq_status st = aq_alloc_solve(t, &sp, &s, &e);
        if (st == AQ_ERR_INFEASIBLE && s.infeasible == AQ_BUDGET_SIZE) {
            out->min_feasible = s.min_feasible;
            continue;
        }
        if (st != AQ_OK) {
            *err = e;
            aq_error_prefix(err, "sweep budget %g bits/weight", p->budget);
            aq_alloc_sweep_free(out);
            return st;
        }
        p->feasible = 1;
        p->status = s.status;
        p->loss = s.loss;
        p->avg_bits = s.avg_bits;
        p->gap = s.gap;
        p->seconds = s.seconds;
        p->size_bits = s.size_bits;
        p->bops = s.bops;
        aq_alloc_solution_free(&s);
    }
    mark_pareto(out);
    return AQ_OK;
}

long aq_alloc_sweep_knee(const aq_alloc_sweep *s)
{
    long first = -1, last = -1;
    for (size_t i = 0; i < s->n; i++)
        if (s->pt[i].pareto) {
            if (first < 0) first = (long)i;
            last = (long)i;
        }
    if (first < 0) return -1;
    const aq_alloc_point *a = &s->pt[first], *b = &s->pt[last];
    double dx = b->avg_bits - a->avg_bits, dy = a->loss - b->loss;
    if (!(dx > 0) || !(dy > 0)) return first;
    long best = first;
    double best_d = -1;
    for (size_t i = 0; i < s->n; i++) {
        if (!s->pt[i].pareto) continue;
        double x = (s->pt[i].avg_bits - a->avg_bits) / dx, y = (s->pt[i].loss - b->loss) / dy;
        double d = (1 - x) - y; /* distance below the chord y = 1 - x (times sqrt 2) */
        if (d > best_d) best_d = d, best = (long)i;
    }
    return best;
}
