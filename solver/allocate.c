/* allocate.c — aq_alloc_solve: resolve the spec, solve with CBC, turn the
 * answer back into one table row per layer with exact totals, and, when the
 * budgets cannot be met, solve for the smallest feasible budget and name it
 * in the user's unit. */
#include "allocate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "problem.h"

void aq_alloc_solution_free(aq_alloc_solution *s)
{
    if (s->layer)
        for (size_t i = 0; i < s->n_layers; i++) free(s->layer[i]);
    free(s->layer);
    free(s->row);
    memset(s, 0, sizeof *s);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Minimum of resource r subject to the budgets in `with` (others dropped). */
static aq_status min_of(const aq_alloc_prob *p, aq_alloc_res r, const aq_alloc_goal *with, const int use[3],
                        double time_limit, double *out, aq_error *err)
{
    aq_alloc_goal g = *with;
    g.minimise = r;
    for (int k = 0; k < 3; k++) g.has_max[k] = with->has_max[k] && use[k] && k != (int)r;
    aq_alloc_pick pk;
    aq_status st = aq_alloc_mip_solve(p, &g, time_limit, 0, &pk, err);
    if (st != AQ_OK) return st;
    *out = pk.optimal ? pk.objective : pk.bound;
    free(pk.choice);
    return AQ_OK;
}

static double size_in_unit(const aq_alloc_prob *p, const aq_alloc_spec *s, double bits)
{
    aq_alloc_size_unit u = s->size_unit;
    if (u == AQ_SIZE_BYTES) return ceil(((double)s->size_fixed_bits + bits) / 8.0); /* whole bytes of the file */
    if (u == AQ_SIZE_AVG_BITS) return bits / (double)p->total_params;
    if (u == AQ_SIZE_FP32_FRACTION) return bits / (32.0 * (double)p->total_params);
    return bits;
}

/* The size value shown to the user, rounded up so that passing it back is feasible. */
static void show_size(char *buf, size_t n, aq_alloc_size_unit u, double v)
{
    if (u == AQ_SIZE_AVG_BITS) snprintf(buf, n, "%.4f bits/weight", ceil(v * 1e4 - 1e-6) / 1e4);
    else if (u == AQ_SIZE_FP32_FRACTION) snprintf(buf, n, "%.6f of the FP32 size", ceil(v * 1e6 - 1e-6) / 1e6);
    else if (u == AQ_SIZE_BYTES) snprintf(buf, n, "%.0f bytes", v);
    else snprintf(buf, n, "%.0f bits", v);
}

static int has_rules(const aq_alloc_spec *s)
{
    return s->n_keep || s->n_exclude || s->n_tie || s->n_tie_act;
}

/* The budgets cannot all be met: find which and its smallest feasible value. */
static aq_status diagnose(const aq_alloc_prob *p, const aq_alloc_spec *s, const aq_alloc_goal *g,
                          aq_alloc_solution *sol, aq_error *err)
{
    const char *with = has_rules(s) ? " with these pins/ties/exclusions" : "";
    const int none[3] = {0, 0, 0}, only_bops[3] = {0, 0, 1}, size_bops[3] = {0, 1, 1};
    double tl = s->time_limit, v;
    char want[96], got[96];
    if (g->has_max[AQ_RES_SIZE]) {
        AQ_TRY(min_of(p, AQ_RES_SIZE, g, none, tl, &v, err));
        if (v > (double)g->max_size) goto size_fail;
    }
    if (g->has_max[AQ_RES_BOPS]) {
        AQ_TRY(min_of(p, AQ_RES_BOPS, g, none, tl, &v, err));
        if (v > (double)g->max_bops) {
            sol->infeasible = AQ_BUDGET_BOPS;
            sol->min_feasible = sol->min_feasible_raw = v;
            return aq_fail(err, AQ_ERR_INFEASIBLE, "BOPs budget %.0f is infeasible: the smallest feasible is %.0f BOPs%s",
                           s->max_bops, v, with);
        }
    }
    if (g->has_max[AQ_RES_SIZE] && g->has_max[AQ_RES_BOPS]) {
        AQ_TRY(min_of(p, AQ_RES_SIZE, g, only_bops, tl, &v, err));
        if (v > (double)g->max_size) {
            with = has_rules(s) ? " with these pins/ties/exclusions and the BOPs budget" : " with the BOPs budget";
            goto size_fail;
        }
    }
    if (g->has_max[AQ_RES_LOSS]) {
        AQ_TRY(min_of(p, AQ_RES_LOSS, g, size_bops, tl, &v, err));
        sol->infeasible = AQ_BUDGET_LOSS;
        sol->min_feasible = sol->min_feasible_raw = v;
        return aq_fail(err, AQ_ERR_INFEASIBLE, "loss budget %.9g is infeasible: the smallest achievable loss is %.9g%s%s",
                       s->max_loss, v, with, g->has_max[AQ_RES_SIZE] || g->has_max[AQ_RES_BOPS] ? " and budgets" : "");
    }
    sol->infeasible = AQ_BUDGET_RULES;
    return aq_fail(err, AQ_ERR_INFEASIBLE, "the budgets cannot be met%s", with);
size_fail:
    sol->infeasible = AQ_BUDGET_SIZE;
    sol->min_feasible_raw = v;
    sol->min_feasible = size_in_unit(p, s, v);
    aq_alloc_format_size(want, sizeof want, s->size_unit, s->size_budget);
    show_size(got, sizeof got, s->size_unit, sol->min_feasible);
    return aq_fail(err, AQ_ERR_INFEASIBLE, "size budget %s is infeasible: the smallest feasible is %s (%.0f bits)%s",
                   want, got, v, with);
}

/* Table rows of a pick, one per layer, and the exact totals. */
static aq_status fill_solution(const aq_alloc_prob *p, const aq_alloc_pick *pk, aq_alloc_solution *sol,
                               aq_error *err)
{
    size_t nl = p->ix.n_layers;
    sol->n_layers = nl;
    sol->layer = calloc(nl, sizeof *sol->layer);
    sol->row = malloc(nl * sizeof *sol->row);
    if (!sol->layer || !sol->row) return aq_fail_nomem(err, "allocation solution", nl * 2 * sizeof(size_t));
    for (size_t u = 0; u < p->n_units; u++) {
        const aq_alloc_unit *un = &p->units[u];
        const aq_alloc_opt *o = &p->opts[un->first_opt + pk->choice[u]];
        for (size_t i = 0; i < un->n_members; i++) sol->row[p->members[un->first_member + i]] = p->member_rows[o->rows + i];
    }
    sol->size_bits = sol->bops = 0;
    sol->loss = 0;
    for (size_t l = 0; l < nl; l++) {
        const aq_alloc_row *r = &p->t->rows[sol->row[l]];
        size_t n = strlen(r->layer) + 1;
        if (!(sol->layer[l] = malloc(n))) return aq_fail_nomem(err, "allocation solution", n);
        memcpy(sol->layer[l], r->layer, n);
        sol->size_bits += aq_alloc_row_size(r);
        sol->bops += aq_alloc_row_bops(r);
        sol->loss += r->loss;
    }
    sol->avg_bits = (double)sol->size_bits / (double)sol->total_params;
    return AQ_OK;
}

aq_status aq_alloc_solve(const aq_alloc_table *t, const aq_alloc_spec *spec, aq_alloc_solution *sol,
                         aq_error *err)
{
    double t0 = now_seconds();
    memset(sol, 0, sizeof *sol);
    sol->size_budget_bits = sol->bops_budget = -1;
    sol->loss_budget = NAN;
    aq_alloc_prob p;
    AQ_TRY(aq_alloc_prob_build(t, spec, &p, err));
    aq_alloc_goal g;
    aq_alloc_pick pk = {0};
    aq_status st;
    AQ_TRY_GOTO(st, aq_alloc_goal_from_spec(&p, spec, &g, err), done);
    sol->total_params = p.total_params;
    if (g.has_max[AQ_RES_SIZE]) sol->size_budget_bits = g.max_size;
    if (g.has_max[AQ_RES_BOPS]) sol->bops_budget = g.max_bops;
    if (g.has_max[AQ_RES_LOSS]) sol->loss_budget = spec->max_loss;
    st = aq_alloc_mip_solve(&p, &g, spec->time_limit, spec->no_presolve, &pk, err);
    if (st == AQ_ERR_INFEASIBLE) {
        st = diagnose(&p, spec, &g, sol, err);
        if (st == AQ_OK) st = aq_fail(err, AQ_ERR_INTERNAL, "infeasible program without a violated budget");
        goto done;
    }
    if (st != AQ_OK) goto done;
    AQ_TRY_GOTO(st, fill_solution(&p, &pk, sol, err), done);
    sol->status = pk.optimal ? AQ_ALLOC_OPTIMAL : AQ_ALLOC_FEASIBLE;
    sol->objective = pk.objective;
    sol->bound = pk.bound;
    sol->gap = (pk.objective - pk.bound) / fmax(fabs(pk.objective), 1e-12);
    if (!(sol->gap > 0)) sol->gap = 0;
    sol->core_layers = pk.core_units;
done:
    free(pk.choice);
    aq_alloc_prob_free(&p);
    sol->seconds = now_seconds() - t0;
    if (st != AQ_OK) {
        aq_alloc_budget inf = sol->infeasible;
        double mf = sol->min_feasible, mr = sol->min_feasible_raw;
        aq_alloc_solution_free(sol);
        sol->infeasible = inf;
        sol->min_feasible = mf;
        sol->min_feasible_raw = mr;
    }
    return st;
}
