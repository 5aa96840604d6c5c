/* presolve.c — the exact presolve of the allocation program (problem.h).
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

/* The option unit u takes at width w when repairing: the best (least c) of
 * that width not larger in `a` than its current one, else its least-`a`
 * option of that width; (size_t)-1 if it has no kept option of width w. */
static size_t at_width(const aq_alloc_prob *p, aq_alloc_res c, aq_alloc_res a, const unsigned char *keep,
                       size_t u, int w, size_t cur)
{
    const aq_alloc_unit *un = &p->units[u];
    double ca = aq_alloc_opt_res(&p->opts[cur], a);
    size_t pick = (size_t)-1, low = (size_t)-1;
    for (size_t j = 0; j < un->n_opts; j++) {
        size_t o = un->first_opt + j;
        const aq_alloc_opt *op = &p->opts[o];
        if (!keep[o] || op->a_bits != w) continue;
        if (aq_alloc_opt_res(op, a) <= ca &&
            (pick == (size_t)-1 || aq_alloc_opt_res(op, c) < aq_alloc_opt_res(&p->opts[pick], c)))
            pick = o;
        if (low == (size_t)-1 || aq_alloc_opt_res(op, a) < aq_alloc_opt_res(&p->opts[low], a)) low = o;
    }
    return pick != (size_t)-1 ? pick : low;
}

/* Move every member of each --tie-act group to one activation width (per
 * group the width with the least increase of c among those not increasing
 * `a`, else the least `a`; members as at_width). order is scratch
 * (n_units). Returns 1 if the result meets sum a <= B. */
static int repair_act(const aq_alloc_prob *p, aq_alloc_res c, aq_alloc_res a, double B, const unsigned char *keep,
                      size_t *pos, size_t *order)
{
    size_t m = 0, ng = p->n_act_groups;
    size_t *cnt = calloc(ng + 1, sizeof *cnt); /* counting sort of the units by group */
    if (!cnt) return 0;
    for (size_t u = 0; u < p->n_units; u++)
        if (p->units[u].act_group >= 0) cnt[p->units[u].act_group + 1]++, m++;
    for (size_t gi = 0; gi < ng; gi++) cnt[gi + 1] += cnt[gi];
    for (size_t u = 0; u < p->n_units; u++)
        if (p->units[u].act_group >= 0) order[cnt[p->units[u].act_group]++] = u;
    free(cnt);
    for (size_t s0 = 0; s0 < m;) {
        size_t s1 = s0;
        while (s1 < m && p->units[order[s1]].act_group == p->units[order[s0]].act_group) s1++;
        int best_w = -1, best_ok = 0;
        double best_dc = INFINITY, best_da = INFINITY;
        for (int w = 2; w <= 16; w++) {
            double dc = 0, da = 0;
            size_t k;
            for (k = s0; k < s1; k++) {
                size_t u = order[k], o = at_width(p, c, a, keep, u, w, pos[u]);
                if (o == (size_t)-1) break;
                dc += aq_alloc_opt_res(&p->opts[o], c) - aq_alloc_opt_res(&p->opts[pos[u]], c);
                da += aq_alloc_opt_res(&p->opts[o], a) - aq_alloc_opt_res(&p->opts[pos[u]], a);
            }
            if (k < s1) continue; /* a member lacks width w */
            int ok = da <= 0;
            if ((ok && (!best_ok || dc < best_dc)) || (!ok && !best_ok && da < best_da))
                best_w = w, best_ok = ok, best_dc = dc, best_da = da;
        }
        if (best_w < 0) return 0;
        for (size_t k = s0; k < s1; k++) pos[order[k]] = at_width(p, c, a, keep, order[k], best_w, pos[order[k]]);
        s0 = s1;
    }
    double tot = 0;
    for (size_t u = 0; u < p->n_units; u++) tot += aq_alloc_opt_res(&p->opts[pos[u]], a);
    return tot <= B;
}

/* The Lagrangian bound with --tie-act kept in the subproblem (it stays
 * separable per group: each group takes the width w minimising
 * m_G(w) = sum over members of their least c + lambda·a at width w). *L is
 * raised from the relaxed bound to this one; pen[o] (allocated) receives, for
 * options of group members, the reduced cost
 *   (c + lambda·a)(o) - least at its width + m_G(width) - min_w m_G(w),
 * a lower bound on how much any solution using o exceeds the bound; gw[g]
 * receives the minimising width of each group. */
static aq_status act_bound(const aq_alloc_prob *p, aq_alloc_res c, aq_alloc_res a, double lambda,
                           const unsigned char *keep, const double *bu, double *L, double **pen_out, int *gw,
                           aq_error *err)
{
    size_t nu = p->n_units, ng = p->n_act_groups;
    double *mu = malloc(nu * 17 * sizeof *mu), *mg = malloc(ng * 17 * sizeof *mg), *mstar = malloc(ng * sizeof *mstar);
    double *pen = malloc((p->n_opts ? p->n_opts : 1) * sizeof *pen);
    if (!mu || !mg || !mstar || !pen) {
        free(mu), free(mg), free(mstar), free(pen);
        return aq_fail_nomem(err, "tie-act bound", (nu + ng) * 17 * sizeof(double));
    }
    for (size_t i = 0; i < nu * 17; i++) mu[i] = INFINITY;
    for (size_t i = 0; i < ng * 17; i++) mg[i] = 0;
    for (size_t u = 0; u < nu; u++) {
        const aq_alloc_unit *un = &p->units[u];
        if (un->act_group < 0) continue;
        for (size_t j = 0; j < un->n_opts; j++) {
            const aq_alloc_opt *o = &p->opts[un->first_opt + j];
            if (!keep[un->first_opt + j]) continue;
            double v = aq_alloc_opt_res(o, c) + lambda * aq_alloc_opt_res(o, a);
            if (v < mu[u * 17 + o->a_bits]) mu[u * 17 + o->a_bits] = v;
        }
        for (int w = 0; w < 17; w++) mg[un->act_group * 17 + w] += mu[u * 17 + w];
        *L -= bu[u]; /* replaced by the group terms below */
    }
    for (size_t gi = 0; gi < ng; gi++) {
        mstar[gi] = INFINITY;
        for (int w = 0; w < 17; w++)
            if (mg[gi * 17 + w] < mstar[gi]) mstar[gi] = mg[gi * 17 + w], gw[gi] = w;
        *L += mstar[gi];
    }
    for (size_t u = 0; u < nu; u++) {
        const aq_alloc_unit *un = &p->units[u];
        if (un->act_group < 0) continue;
        for (size_t j = 0; j < un->n_opts; j++) {
            const aq_alloc_opt *o = &p->opts[un->first_opt + j];
            double v = aq_alloc_opt_res(o, c) + lambda * aq_alloc_opt_res(o, a);
            pen[un->first_opt + j] = v - mu[u * 17 + o->a_bits] + mg[un->act_group * 17 + o->a_bits] - mstar[un->act_group];
        }
    }
    free(mu), free(mg), free(mstar);
    *pen_out = pen;
    return AQ_OK;
}

/* The multiple-choice knapsack case: minimise c subject to sum a <= B. */
/* Greedy on the lower convex hulls of the options in `allow`: the LP
 * solution rounded down, then later upgrades that still fit (pos: global
 * option per unit). Returns 0 if even the least-`a` choice exceeds B.
 * *lambda = efficiency of the first upgrade that did not fit (0 if all fit). */
static int greedy(const aq_alloc_prob *p, aq_alloc_res c, aq_alloc_res a, double B, const unsigned char *allow,
                  upgrade *up, size_t *hull, size_t *tmp, size_t *pos, double *lambda)
{
    hullctx hc = {p, c, a};
    size_t nup = 0;
    double used = 0;
    for (size_t u = 0; u < p->n_units; u++) {
        size_t n = unit_hull(&hc, u, allow, hull, tmp);
        pos[u] = hull[0];
        used += aq_alloc_opt_res(&p->opts[hull[0]], a);
        for (size_t i = 1; i < n; i++) {
            const aq_alloc_opt *o1 = &p->opts[hull[i - 1]], *o2 = &p->opts[hull[i]];
            double da = aq_alloc_opt_res(o2, a) - aq_alloc_opt_res(o1, a);
            double dc = aq_alloc_opt_res(o2, c) - aq_alloc_opt_res(o1, c);
            up[nup++] = (upgrade){-dc / da, da, dc, u, hull[i - 1], hull[i]};
        }
    }
    if (used > B) return 0;
    qsort(up, nup, sizeof *up, cmp_upgrade);
    double room = B - used;
    size_t i = 0;
    *lambda = 0;
    for (; i < nup; i++) {
        if (up[i].da > room) break;
        room -= up[i].da;
        pos[up[i].unit] = up[i].to;
    }
    if (i < nup) {
        *lambda = up[i].eff;
        for (size_t k = i + 1; k < nup; k++)
            if (pos[up[k].unit] == up[k].from && up[k].da <= room) {
                room -= up[k].da;
                pos[up[k].unit] = up[k].to;
            }
    }
    return 1;
}

static double total(const aq_alloc_prob *p, const size_t *pos, aq_alloc_res r)
{
    double t = 0;
    for (size_t u = 0; u < p->n_units; u++) t += aq_alloc_opt_res(&p->opts[pos[u]], r);
    return t;
}

/* A feasible incumbent under --tie-act: the better of (1) the relaxed greedy
 * repaired to one width per group and (2) the greedy rerun with each group
 * restricted to its Lagrangian width gw. Returns 0 if neither is feasible. */
static int act_incumbent(const aq_alloc_prob *p, aq_alloc_res c, aq_alloc_res a, double B, const unsigned char *keep,
                         const int *gw, upgrade *up, size_t *hull, size_t *tmp, size_t *pos, aq_error *err)
{
    size_t nu = p->n_units;
    size_t *pos2 = malloc(nu * sizeof *pos2);
    unsigned char *allow = malloc(p->n_opts ? p->n_opts : 1);
    if (!pos2 || !allow) {
        free(pos2), free(allow);
        aq_fail_nomem(err, "presolve", nu * sizeof *pos2);
        return 0;
    }
    int ok1 = repair_act(p, c, a, B, keep, pos, tmp);
    memcpy(allow, keep, p->n_opts);
    for (size_t u = 0; u < nu; u++) {
        const aq_alloc_unit *un = &p->units[u];
        if (un->act_group >= 0)
            for (size_t j = 0; j < un->n_opts; j++)
                if (p->opts[un->first_opt + j].a_bits != gw[un->act_group]) allow[un->first_opt + j] = 0;
    }
    double lam;
    int ok2 = greedy(p, c, a, B, allow, up, hull, tmp, pos2, &lam);
    if (ok2 && (!ok1 || total(p, pos2, c) < total(p, pos, c))) memcpy(pos, pos2, nu * sizeof *pos);
    free(pos2);
    free(allow);
    return ok1 || ok2;
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
    int *gw = calloc(p->n_act_groups + 1, sizeof *gw);
    double *pen = NULL; /* --tie-act: per option, its reduced cost including the group's width penalty */
    aq_status st = AQ_OK;
    if (!up || !hull || !tmp || !pos || !bu || !gw) {
        st = aq_fail_nomem(err, "presolve", no * (sizeof *up + 2 * sizeof(size_t)));
        goto done;
    }
    double lambda;
    if (!greedy(p, c, a, B, keep, up, hull, tmp, pos, &lambda)) {
        st = AQ_ERR_INFEASIBLE; /* even the least-`a` option everywhere exceeds the budget */
        goto done;
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
    if (p->n_act_groups > 0) {
        AQ_TRY_GOTO(st, act_bound(p, c, a, lambda, keep, bu, &L, &pen, gw, err), done);
        /* Without a feasible incumbent there is nothing to fix against (dominance only). */
        if (!act_incumbent(p, c, a, B, keep, gw, up, hull, tmp, pos, err)) {
            st = err && err->code == AQ_ERR_NOMEM ? AQ_ERR_NOMEM : AQ_OK;
            goto done;
        }
    }
    if (lambda > 0) AQ_TRY_GOTO(st, aq_alloc_improve_incumbent(p, c, a, B, keep, lambda, bu, pos, err), done);
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
            if (pen && un->act_group >= 0) rc = pen[un->first_opt + j];
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
    free(gw);
    free(pen);
    return st;
}

aq_status aq_alloc_presolve(const aq_alloc_prob *p, const aq_alloc_goal *g, unsigned char *keep,
                            size_t *incumbent, int *have_inc, double *inc_obj, double *lb, aq_error *err)
{
    *have_inc = 0;
    *lb = -INFINITY;
    drop_dominated(p, g, keep);
    if (!incumbent) return AQ_OK;
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
