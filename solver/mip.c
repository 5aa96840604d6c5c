/* mip.c — the allocation program as a CBC mixed-integer program (problem.h).
 *
 * Columns: one binary x[u,j] per kept option of each unit still free after
 * the exact presolve, plus, per --tie-act group, one binary y[g,a] per
 * activation width a. Rows: sum_j x[u,j] = 1 per unit; one budget row per
 * constrained resource; per tie-act member unit u and width a:
 * sum_{j: a(u,j)=a} x[u,j] - y[g,a] = 0.
 * Numerics: every coefficient is taken relative to the unit's least value
 * (the constant goes to the offset), integer resources (bits, BOPs) are
 * divided by their GCD so rows and objective stay integral, losses are
 * divided by their largest relative value so they are O(1) even when the
 * table holds 1e-6-sized normalised errors next to 1e6-bit sizes. The
 * answer is re-checked against the budgets in exact integer arithmetic.
 * CBC is not thread-safe: one call at a time per process (allocate.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <coin/Cbc_C_Interface.h>

#include "problem.h"

static int64_t gcd64(int64_t a, int64_t b)
{
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Exact feasibility and objective of a choice (option index per unit). */
static int choice_ok(const aq_alloc_prob *p, const aq_alloc_goal *g, const size_t *ch, double *obj)
{
    int64_t size = 0, bops = 0;
    double loss = 0;
    for (size_t u = 0; u < p->n_units; u++) {
        const aq_alloc_opt *o = &p->opts[p->units[u].first_opt + ch[u]];
        size += o->size;
        bops += o->bops;
        loss += o->loss;
    }
    *obj = g->minimise == AQ_RES_LOSS ? loss : g->minimise == AQ_RES_SIZE ? (double)size : (double)bops;
    if (g->has_max[AQ_RES_SIZE] && size > g->max_size) return 0;
    if (g->has_max[AQ_RES_BOPS] && bops > g->max_bops) return 0;
    if (g->has_max[AQ_RES_LOSS] && loss > g->max_loss) return 0;
    /* tie-act: one width per group */
    for (size_t u = 0; u < p->n_units; u++) {
        if (p->units[u].act_group < 0) continue;
        for (size_t v = u + 1; v < p->n_units; v++)
            if (p->units[v].act_group == p->units[u].act_group) {
                if (p->opts[p->units[v].first_opt + ch[v]].a_bits != p->opts[p->units[u].first_opt + ch[u]].a_bits)
                    return 0;
                break; /* transitivity: comparing with the next member suffices */
            }
    }
    return 1;
}

/* The CBC model under construction (column-major). */
typedef struct lp {
    size_t ncol, nrow, nnz, cap;
    CoinBigIndex *start;
    int *index;
    double *value, *obj, *rlo, *rhi;
} lp;

static int lp_push(lp *m, int row, double v)
{
    if (m->nnz == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 1024;
        int *ix = realloc(m->index, cap * sizeof *ix);
        if (!ix) return -1;
        m->index = ix;
        double *vv = realloc(m->value, cap * sizeof *vv);
        if (!vv) return -1;
        m->value = vv;
        m->cap = cap;
    }
    m->index[m->nnz] = row;
    m->value[m->nnz++] = v;
    return 0;
}

typedef struct build {
    const aq_alloc_prob *p;
    const aq_alloc_goal *g;
    const unsigned char *keep;
    long *fu;            /* unit -> free unit index (row), -1 = fixed */
    long *actrow;        /* unit -> first tie-act row, -1 none */
    unsigned *gmask;     /* group -> widths present */
    long res_row[3];     /* budget row of each resource, -1 none */
    double res_scale[3]; /* coefficient = (v - min) * scale */
    double obj_scale, offset;
} build;

static int rank_in(unsigned mask, int a)
{
    return __builtin_popcount(mask & ((1u << a) - 1));
}

/* Per resource r: the least kept value of unit u. */
static double unit_min(const build *b, size_t u, aq_alloc_res r)
{
    const aq_alloc_unit *un = &b->p->units[u];
    double m = INFINITY;
    for (size_t j = 0; j < un->n_opts; j++)
        if (b->keep[un->first_opt + j]) m = fmin(m, aq_alloc_opt_res(&b->p->opts[un->first_opt + j], r));
    return m;
}

/* Scale of resource r over the free units (GCD for integers, max for loss);
 * *base receives sum over all units of the least value. */
static double res_scale(const build *b, aq_alloc_res r, double *base)
{
    int64_t gg = 0;
    double mx = 0;
    *base = 0;
    for (size_t u = 0; u < b->p->n_units; u++) {
        double mn = unit_min(b, u, r);
        *base += mn;
        if (b->fu[u] < 0) continue;
        const aq_alloc_unit *un = &b->p->units[u];
        for (size_t j = 0; j < un->n_opts; j++) {
            if (!b->keep[un->first_opt + j]) continue;
            double d = aq_alloc_opt_res(&b->p->opts[un->first_opt + j], r) - mn;
            mx = fmax(mx, d);
            if (r != AQ_RES_LOSS) gg = gcd64((int64_t)d, gg);
        }
    }
    if (r == AQ_RES_LOSS) return mx > 0 ? 1.0 / mx : 1.0;
    return gg > 0 ? 1.0 / (double)gg : 1.0;
}

/* Rows: free units, then budget rows, then tie-act rows. Returns AQ_ERR_INFEASIBLE
 * when a budget is below the sum of least values. */
static aq_status plan_rows(build *b, lp *m)
{
    const aq_alloc_goal *g = b->g;
    m->nrow = 0;
    for (size_t u = 0; u < b->p->n_units; u++)
        if (b->fu[u] >= 0) b->fu[u] = (long)m->nrow++;
    for (int r = 0; r < 3; r++) {
        b->res_row[r] = -1;
        if (!g->has_max[r]) continue;
        double base, B = r == AQ_RES_LOSS ? g->max_loss : r == AQ_RES_SIZE ? (double)g->max_size : (double)g->max_bops;
        b->res_scale[r] = res_scale(b, (aq_alloc_res)r, &base);
        double rhs = B - base;
        if (rhs < 0) return AQ_ERR_INFEASIBLE;
        rhs *= b->res_scale[r];
        if (r != AQ_RES_LOSS) rhs = floor(rhs + 1e-9); /* exact: integers over their GCD */
        b->res_row[r] = (long)m->nrow++;
        m->rlo[b->res_row[r]] = -INFINITY;
        m->rhi[b->res_row[r]] = rhs;
    }
    for (size_t u = 0; u < b->p->n_units; u++)
        if (b->fu[u] >= 0) m->rlo[b->fu[u]] = m->rhi[b->fu[u]] = 1.0;
    for (size_t u = 0; u < b->p->n_units; u++) {
        b->actrow[u] = -1;
        int gi = b->p->units[u].act_group;
        if (gi < 0 || b->fu[u] < 0) continue; /* fixed units belong to settled groups only */
        b->actrow[u] = (long)m->nrow;
        size_t k = (size_t)__builtin_popcount(b->gmask[gi]);
        for (size_t i = 0; i < k; i++) m->rlo[m->nrow] = m->rhi[m->nrow] = 0.0, m->nrow++;
    }
    return AQ_OK;
}

/* Columns: x per kept option of free units (colopt[c] = global option), then y. */
static aq_status add_columns(build *b, lp *m, size_t *colopt, aq_error *err)
{
    const aq_alloc_prob *p = b->p;
    aq_alloc_res c = b->g->minimise;
    double base;
    b->obj_scale = res_scale(b, c, &base);
    b->offset = base;
    m->ncol = 0;
    m->nnz = 0;
    for (size_t u = 0; u < p->n_units; u++) {
        if (b->fu[u] < 0) continue;
        const aq_alloc_unit *un = &p->units[u];
        double cmin = unit_min(b, u, c), rmin[3];
        for (int r = 0; r < 3; r++) rmin[r] = b->res_row[r] >= 0 ? unit_min(b, u, (aq_alloc_res)r) : 0;
        for (size_t j = 0; j < un->n_opts; j++) {
            size_t o = un->first_opt + j;
            if (!b->keep[o]) continue;
            const aq_alloc_opt *op = &p->opts[o];
            m->start[m->ncol] = (CoinBigIndex)m->nnz;
            m->obj[m->ncol] = (aq_alloc_opt_res(op, c) - cmin) * b->obj_scale;
            colopt[m->ncol++] = o;
            if (lp_push(m, (int)b->fu[u], 1.0)) goto nomem;
            for (int r = 0; r < 3; r++) {
                if (b->res_row[r] < 0) continue;
                double v = (aq_alloc_opt_res(op, (aq_alloc_res)r) - rmin[r]) * b->res_scale[r];
                if (r != AQ_RES_LOSS) v = nearbyint(v);
                if (v != 0 && lp_push(m, (int)b->res_row[r], v)) goto nomem;
            }
            if (b->actrow[u] >= 0 &&
                lp_push(m, (int)(b->actrow[u] + rank_in(b->gmask[un->act_group], op->a_bits)), 1.0))
                goto nomem;
        }
    }
    for (size_t gi = 0; gi < p->n_act_groups; gi++)
        for (int a = 2; a <= 16; a++) {
            if (!(b->gmask[gi] >> a & 1)) continue;
            m->start[m->ncol] = (CoinBigIndex)m->nnz;
            m->obj[m->ncol] = 0;
            colopt[m->ncol++] = (size_t)-1;
            for (size_t u = 0; u < p->n_units; u++)
                if (p->units[u].act_group == (int)gi && lp_push(m, (int)(b->actrow[u] + rank_in(b->gmask[gi], a)), -1.0))
                    goto nomem;
        }
    m->start[m->ncol] = (CoinBigIndex)m->nnz;
    return AQ_OK;
nomem:
    return aq_fail_nomem(err, "CBC model", m->cap * sizeof(double));
}

/* Run CBC on the planned model; fills choice for the free units. */
static aq_status run_cbc(build *b, lp *m, const size_t *colopt, const size_t *inc, int have_inc,
                         double time_limit, size_t *choice, int *optimal, double *bound, aq_error *err)
{
    size_t nc = m->ncol;
    double *lo = calloc(nc ? nc : 1, sizeof *lo), *hi = malloc((nc ? nc : 1) * sizeof *hi);
    int *sidx = malloc((nc ? nc : 1) * sizeof *sidx);
    double *sval = malloc((nc ? nc : 1) * sizeof *sval);
    Cbc_Model *model = Cbc_newModel();
    aq_status st = AQ_OK;
    if (!lo || !hi || !sidx || !sval || !model) {
        st = aq_fail_nomem(err, "CBC model", nc * 4 * sizeof(double));
        goto done;
    }
    for (size_t i = 0; i < nc; i++) hi[i] = 1.0;
    Cbc_loadProblem(model, (int)nc, (int)m->nrow, m->start, m->index, m->value, lo, hi, m->obj, m->rlo, m->rhi);
    for (size_t i = 0; i < nc; i++) Cbc_setInteger(model, (int)i);
    Cbc_setLogLevel(model, 0);
    /* Gaps in CBC units (objective scaled to O(1)): prove optimality to ~1e-12. */
    Cbc_setAllowableGap(model, 1e-11);
    Cbc_setAllowableFractionGap(model, 0.0);
    Cbc_setParameter(model, "increment", "1e-11");
    Cbc_setParameter(model, "integerTolerance", "1e-9");
    if (time_limit > 0) {
        Cbc_setParameter(model, "timeMode", "elapsed");
        Cbc_setMaximumSeconds(model, time_limit);
    }
    if (have_inc) { /* MIP start: the presolve's greedy incumbent */
        int k = 0;
        for (size_t i = 0; i < nc; i++) {
            size_t o = colopt[i];
            if (o == (size_t)-1) continue;
            size_t u = 0; /* unit of option o: binary search over first_opt */
            size_t lo_u = 0, hi_u = b->p->n_units;
            while (hi_u - lo_u > 1) {
                size_t mid = (lo_u + hi_u) / 2;
                if (b->p->units[mid].first_opt <= o) lo_u = mid;
                else hi_u = mid;
            }
            u = lo_u;
            if (b->p->units[u].first_opt + inc[u] == o) sidx[k] = (int)i, sval[k++] = 1.0;
        }
        /* the tie-act width variables of the incumbent */
        for (size_t gi = 0, i = 0; gi < b->p->n_act_groups; gi++) {
            int w_inc = 0;
            for (size_t u = 0; u < b->p->n_units && !w_inc; u++)
                if (b->p->units[u].act_group == (int)gi) w_inc = b->p->opts[b->p->units[u].first_opt + inc[u]].a_bits;
            for (int w = 2; w <= 16; w++) {
                if (!(b->gmask[gi] >> w & 1)) continue;
                while (i < nc && colopt[i] != (size_t)-1) i++;
                if (i < nc && w == w_inc) sidx[k] = (int)i, sval[k++] = 1.0;
                i++;
            }
        }
        Cbc_setMIPStartI(model, k, sidx, sval);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    Cbc_solve(model);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    const double *x = Cbc_bestSolution(model);
    /* CBC can flag "infeasible" when the time limit stops it early (even with status
     * 0 when it stops inside the root LP): trust it only when no limit was near. */
    int limited = Cbc_secondaryStatus(model) == 4 || Cbc_isSecondsLimitReached(model) || Cbc_status(model) == 1 ||
                  (time_limit > 0 && took >= 0.9 * time_limit);
    if (Cbc_isProvenInfeasible(model) && !x && !limited) {
        st = AQ_ERR_INFEASIBLE;
        goto done;
    }
    if (!x) {
        st = aq_fail(err, AQ_ERR_SOLVER, "CBC found no solution (status %d/%d)%s", Cbc_status(model),
                     Cbc_secondaryStatus(model), limited ? ": time limit reached; raise --time-limit" : "");
        goto done;
    }
    *optimal = Cbc_isProvenOptimal(model);
    *bound = Cbc_getBestPossibleObjValue(model);
    /* Per free unit, the column closest to 1. */
    double *best = sval; /* reuse: best x value per row of a free unit */
    for (size_t i = 0; i < nc; i++) best[i] = -1;
    for (size_t i = 0; i < nc; i++) {
        size_t o = colopt[i];
        if (o == (size_t)-1) continue;
        size_t r = (size_t)m->index[m->start[i]]; /* first entry = unit row */
        if (x[i] > best[r]) best[r] = x[i], sidx[r] = (int)i;
    }
    for (size_t u = 0; u < b->p->n_units; u++)
        if (b->fu[u] >= 0) choice[u] = colopt[sidx[b->fu[u]]] - b->p->units[u].first_opt;
done:
    if (model) Cbc_deleteModel(model);
    free(lo);
    free(hi);
    free(sidx);
    free(sval);
    return st;
}

aq_status aq_alloc_mip_solve(const aq_alloc_prob *p, const aq_alloc_goal *g, double time_limit,
                             int no_presolve, aq_alloc_pick *pick, aq_error *err)
{
    memset(pick, 0, sizeof *pick);
    size_t nu = p->n_units, no = p->n_opts;
    build b = {.p = p, .g = g};
    unsigned char *keep = malloc(no);
    size_t *inc = malloc(nu * sizeof *inc), *choice = malloc(nu * sizeof *choice);
    b.fu = malloc(nu * sizeof *b.fu);
    b.actrow = malloc(nu * sizeof *b.actrow);
    b.gmask = calloc(p->n_act_groups + 1, sizeof *b.gmask);
    size_t maxrow = nu * 17 + 4;
    lp m = {0};
    m.start = malloc((no + 16 * p->n_act_groups + 1) * sizeof *m.start);
    m.obj = malloc((no + 16 * p->n_act_groups + 1) * sizeof *m.obj);
    size_t *colopt = malloc((no + 16 * p->n_act_groups + 1) * sizeof *colopt);
    m.rlo = malloc(maxrow * sizeof *m.rlo);
    m.rhi = malloc(maxrow * sizeof *m.rhi);
    aq_status st = AQ_OK;
    if (!keep || !inc || !choice || !b.fu || !b.actrow || !b.gmask || !m.start || !m.obj || !colopt ||
        !m.rlo || !m.rhi) {
        st = aq_fail_nomem(err, "allocation program", (no + maxrow) * 4 * sizeof(double));
        goto done;
    }
    memset(keep, 1, no);
    int have_inc = 0;
    double inc_obj = 0, lb = -INFINITY;
    if (!no_presolve) AQ_TRY_GOTO(st, aq_alloc_presolve(p, g, keep, inc, &have_inc, &inc_obj, &lb, err), done);
    /* Units with one option left are fixed; inside a --tie-act group only when the
     * whole group is down to one option per unit at one width (then it needs no y). */
    size_t nfree = 0;
    for (size_t u = 0; u < nu; u++) {
        const aq_alloc_unit *un = &p->units[u];
        size_t k = 0, last = 0;
        for (size_t j = 0; j < un->n_opts; j++)
            if (keep[un->first_opt + j]) k++, last = j;
        choice[u] = last;
        b.fu[u] = k == 1 ? -1 : 0;
        if (un->act_group >= 0)
            for (size_t j = 0; j < un->n_opts; j++)
                if (keep[un->first_opt + j]) b.gmask[un->act_group] |= 1u << p->opts[un->first_opt + j].a_bits;
    }
    for (size_t u = 0; u < nu; u++) /* a group with a free member or two widths: all members free */
        if (p->units[u].act_group >= 0 && (b.fu[u] == 0 || __builtin_popcount(b.gmask[p->units[u].act_group]) > 1))
            b.gmask[p->units[u].act_group] |= 1u; /* bit 0 (no width) marks "unsettled" */
    for (size_t u = 0; u < nu; u++) {
        int gi = p->units[u].act_group;
        if (gi >= 0 && (b.gmask[gi] & 1u)) b.fu[u] = 0;
        if (b.fu[u] >= 0) nfree++;
    }
    for (size_t gi = 0; gi < p->n_act_groups; gi++) b.gmask[gi] = b.gmask[gi] & 1u ? b.gmask[gi] & ~1u : 0;
    b.keep = keep;
    pick->core_units = nfree;
    int optimal = 1;
    double bound = -INFINITY;
    if (nfree > 0) {
        AQ_TRY_GOTO(st, plan_rows(&b, &m), done);
        AQ_TRY_GOTO(st, add_columns(&b, &m, colopt, err), done);
        AQ_TRY_GOTO(st, run_cbc(&b, &m, colopt, inc, have_inc, time_limit, choice, &optimal, &bound, err), done);
        bound = b.offset + bound / b.obj_scale;
    }
    double obj;
    if (!choice_ok(p, g, choice, &obj)) {
        /* No free unit and the one candidate breaks a budget: infeasible. With CBC,
         * a budget broken beyond its tolerance is a bug to report. */
        if (nfree == 0) st = AQ_ERR_INFEASIBLE;
        else st = aq_fail(err, AQ_ERR_SOLVER, "CBC returned a solution that violates a budget (numerical trouble)");
        goto done;
    }
    if (nfree == 0) bound = obj;
    if (lb > bound) bound = lb;
    if (bound > obj || (optimal && obj - bound <= 1e-9 * fabs(obj))) bound = optimal ? obj : fmin(bound, obj);
    pick->choice = choice;
    choice = NULL;
    pick->objective = obj;
    pick->bound = bound;
    pick->optimal = optimal;
done:
    free(keep);
    free(inc);
    free(choice);
    free(b.fu);
    free(b.actrow);
    free(b.gmask);
    free(m.start);
    free(m.index);
    free(m.value);
    free(m.obj);
    free(m.rlo);
    free(m.rhi);
    free(colopt);
    return st;
}
