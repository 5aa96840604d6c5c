/* reduce.c — the exact presolve of the allocation program (problem.h).
 *
 * Two reductions that never remove an optimal solution, so CBC still proves
 * optimality of the full program:
 *  1. dominance: an option no better in any resource that matters (objective
 *     and constrained resources; same activation width inside a --tie-act
 *     group) than another option of the same unit is dropped;
 *  2. reduced-cost fixing, for one budget and no --tie-act groups (a
 *     multiple-choice knapsack): the LP relaxation is solved greedily on each
 *     unit's lower convex hull, giving a multiplier lambda, the bound LB and a
 *     feasible incumbent U. Any solution x satisfies
 *     cost(x) >= LB + sum_u rc(u, x_u) with rc >= 0, so an option with
 *     rc > U - LB is in no solution better than the incumbent and is dropped.
 *     On typical tables this leaves a small core (docs/ALLOCATE.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "problem.h"

static int dominates(const aq_alloc_opt *a, const aq_alloc_opt *b, const aq_alloc_goal *g, int same_act)
{
    if (same_act && a->a_bits != b->a_bits) return 0;
    if (a->loss > b->loss && (g->minimise == AQ_RES_LOSS || g->has_max[AQ_RES_LOSS])) return 0;
    if (a->size > b->size && (g->minimise == AQ_RES_SIZE || g->has_max[AQ_RES_SIZE])) return 0;
    if (a->bops > b->bops && (g->minimise == AQ_RES_BOPS || g->has_max[AQ_RES_BOPS])) return 0;
    return 1;
}

static void drop_dominated(const aq_alloc_prob *p, const aq_alloc_goal *g, unsigned char *keep)
{
    for (size_t u = 0; u < p->n_units; u++) {
        const aq_alloc_unit *un = &p->units[u];
        const aq_alloc_opt *o = p->opts + un->first_opt;
        for (size_t j = 0; j < un->n_opts; j++)
            for (size_t i = 0; i < un->n_opts && keep[un->first_opt + j]; i++) {
                if (i == j || !keep[un->first_opt + i]) continue;
                /* Equal options: the lower index survives. */
                int eq = dominates(&o[j], &o[i], g, un->act_group >= 0);
                if (dominates(&o[i], &o[j], g, un->act_group >= 0) && (!eq || i < j)) keep[un->first_opt + j] = 0;
            }
    }
}

/* One step up a unit's lower convex hull: from option `from` to option `to`. */
typedef struct upgrade {
    double eff, da, dc; /* -dc/da, and the deltas */
    size_t unit, from, to;
} upgrade;

static int cmp_upgrade(const void *x, const void *y)
{
    const upgrade *p = x, *q = y;
    if (p->eff != q->eff) return p->eff < q->eff ? 1 : -1; /* most efficient first */
    return (p->unit > q->unit) - (p->unit < q->unit);
}

typedef struct hullctx {
    const aq_alloc_prob *p;
    aq_alloc_res c, a;
} hullctx;

/* Lower convex hull of the kept options of unit u in the (a, c) plane, from
 * the least-a point down-right; writes option indices (global) into h. */
static size_t unit_hull(const hullctx *hc, size_t u, const unsigned char *keep, size_t *h, size_t *tmp)
{
    const aq_alloc_unit *un = &hc->p->units[u];
    size_t m = 0;
    for (size_t j = 0; j < un->n_opts; j++)
        if (keep[un->first_opt + j]) tmp[m++] = un->first_opt + j;
    /* insertion sort by (a, c): units have few options */
    for (size_t i = 1; i < m; i++)
        for (size_t k = i; k > 0; k--) {
            const aq_alloc_opt *x = &hc->p->opts[tmp[k - 1]], *y = &hc->p->opts[tmp[k]];
            double xa = aq_alloc_opt_res(x, hc->a), ya = aq_alloc_opt_res(y, hc->a);
            if (xa < ya || (xa == ya && aq_alloc_opt_res(x, hc->c) <= aq_alloc_opt_res(y, hc->c))) break;
            size_t t = tmp[k];
            tmp[k] = tmp[k - 1];
            tmp[k - 1] = t;
        }
    size_t n = 0;
    for (size_t i = 0; i < m; i++) {
        double xa = aq_alloc_opt_res(&hc->p->opts[tmp[i]], hc->a), xc = aq_alloc_opt_res(&hc->p->opts[tmp[i]], hc->c);
        if (n && xc >= aq_alloc_opt_res(&hc->p->opts[h[n - 1]], hc->c)) continue; /* not an improvement */
        while (n >= 2) {
            const aq_alloc_opt *o1 = &hc->p->opts[h[n - 2]], *o2 = &hc->p->opts[h[n - 1]];
            double a1 = aq_alloc_opt_res(o1, hc->a), c1 = aq_alloc_opt_res(o1, hc->c);
            double a2 = aq_alloc_opt_res(o2, hc->a), c2 = aq_alloc_opt_res(o2, hc->c);
            /* drop o2 if it lies on or above the segment o1 -> x */
            if ((c2 - c1) * (xa - a1) >= (xc - c1) * (a2 - a1)) n--;
            else break;
        }
        h[n++] = tmp[i];
    }
    return n;
}

/* The multiple-choice knapsack case: minimise c subject to sum a <= B. */
static aq_status lagrange_fix(const aq_alloc_prob *p, aq_alloc_res c, aq_alloc_res a, double B,
                              unsigned char *keep, size_t *inc, int *have_inc, double *inc_obj, double *lb,
                              aq_error *err)
{
    size_t nu = p->n_units, no = p->n_opts;
    upgrade *up = malloc((no ? no : 1) * sizeof *up);
    size_t *hull = malloc((no ? no : 1) * sizeof *hull), *tmp = malloc((no ? no : 1) * sizeof *tmp);
    size_t *pos = malloc((nu ? nu : 1) * sizeof *pos);
    double *bu = malloc((nu ? nu : 1) * sizeof *bu); /* per-unit Lagrangian minimum */
    aq_status st = AQ_OK;
    if (!up || !hull || !tmp || !pos || !bu) {
        st = aq_fail_nomem(err, "presolve", no * (sizeof *up + 2 * sizeof(size_t)));
        goto done;
    }
    hullctx hc = {p, c, a};
    size_t nup = 0;
    double used = 0;
    for (size_t u = 0; u < nu; u++) {
        size_t n = unit_hull(&hc, u, keep, hull, tmp);
        pos[u] = hull[0];
        used += aq_alloc_opt_res(&p->opts[hull[0]], a);
        for (size_t i = 1; i < n; i++) {
            const aq_alloc_opt *o1 = &p->opts[hull[i - 1]], *o2 = &p->opts[hull[i]];
            double da = aq_alloc_opt_res(o2, a) - aq_alloc_opt_res(o1, a);
            double dc = aq_alloc_opt_res(o2, c) - aq_alloc_opt_res(o1, c);
            up[nup++] = (upgrade){-dc / da, da, dc, u, hull[i - 1], hull[i]};
        }
    }
    if (used > B) {
        st = AQ_ERR_INFEASIBLE; /* even the least-`a` option everywhere exceeds the budget */
        goto done;
    }
    qsort(up, nup, sizeof *up, cmp_upgrade);
    double room = B - used, lambda = 0;
    size_t i = 0;
    for (; i < nup; i++) {
        if (up[i].da > room) break;
        room -= up[i].da;
        pos[up[i].unit] = up[i].to;
    }
    if (i < nup) {
        lambda = up[i].eff;
        /* improve the incumbent: later upgrades that still fit, in order */
        for (size_t k = i + 1; k < nup; k++)
            if (pos[up[k].unit] == up[k].from && up[k].da <= room) {
                room -= up[k].da;
                pos[up[k].unit] = up[k].to;
            }
    }
    double U = 0, L = lambda > 0 ? -lambda * B : 0, scale = fabs(L);
    for (size_t u = 0; u < nu; u++) {
        const aq_alloc_unit *un = &p->units[u];
        double best = INFINITY;
        for (size_t j = 0; j < un->n_opts; j++) {
            const aq_alloc_opt *o = &p->opts[un->first_opt + j];
            double v = aq_alloc_opt_res(o, c) + lambda * aq_alloc_opt_res(o, a);
            if (keep[un->first_opt + j] && v < best) best = v;
        }
        L += best;
        scale += fabs(best);
        bu[u] = best;
    }
    if (i < nup) AQ_TRY_GOTO(st, aq_alloc_improve_incumbent(p, c, a, B, keep, lambda, bu, pos, err), done);
    for (size_t u = 0; u < nu; u++) {
        U += aq_alloc_opt_res(&p->opts[pos[u]], c);
        inc[u] = pos[u] - p->units[u].first_opt;
    }
    double slack = U - L + 1e-9 * (scale + fabs(U)) + 1e-300;
    for (size_t u = 0; u < nu; u++) {
        const aq_alloc_unit *un = &p->units[u];
        for (size_t j = 0; j < un->n_opts; j++) {
            const aq_alloc_opt *o = &p->opts[un->first_opt + j];
            double rc = aq_alloc_opt_res(o, c) + lambda * aq_alloc_opt_res(o, a) - bu[u];
            if (rc > slack && un->first_opt + j != pos[u]) keep[un->first_opt + j] = 0;
        }
    }
    *have_inc = 1;
    *inc_obj = U;
    *lb = L < U ? L : U;
done:
    free(up);
    free(hull);
    free(tmp);
    free(pos);
    free(bu);
    return st;
}

aq_status aq_alloc_presolve(const aq_alloc_prob *p, const aq_alloc_goal *g, unsigned char *keep,
                            size_t *incumbent, int *have_inc, double *inc_obj, double *lb, aq_error *err)
{
    *have_inc = 0;
    *lb = -INFINITY;
    drop_dominated(p, g, keep);
    if (p->n_act_groups > 0 || !incumbent) return AQ_OK;
    int nc = 0;
    aq_alloc_res a = AQ_RES_SIZE;
    for (int r = 0; r < 3; r++)
        if (g->has_max[r] && r != (int)g->minimise) nc++, a = (aq_alloc_res)r;
    if (nc > 1) return AQ_OK;
    if (nc == 0) { /* unconstrained: the per-unit minimum is optimal */
        a = g->minimise == AQ_RES_SIZE ? AQ_RES_LOSS : AQ_RES_SIZE;
        return lagrange_fix(p, g->minimise, a, INFINITY, keep, incumbent, have_inc, inc_obj, lb, err);
    }
    double B = a == AQ_RES_LOSS ? g->max_loss : a == AQ_RES_SIZE ? (double)g->max_size : (double)g->max_bops;
    return lagrange_fix(p, g->minimise, a, B, keep, incumbent, have_inc, inc_obj, lb, err);
}
