/* exact.c — the exact cross-check solver (exact.h): enumeration for tiny
 * instances, dynamic programming over integer sizes (and BOPs) otherwise. */
#include "exact.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "problem.h"

/* Running answers to the queries of aq_alloc_exact_result. */
typedef struct acc {
    const aq_alloc_goal *g;
    int bops_on;
    double best_obj, min_size, min_size_any, min_bops, min_loss;
} acc;

static void acc_init(acc *a, const aq_alloc_goal *g)
{
    a->g = g;
    a->bops_on = g->has_max[AQ_RES_BOPS];
    a->best_obj = a->min_size = a->min_size_any = a->min_bops = a->min_loss = INFINITY;
}

/* One achievable (size, bops, least loss) point. */
static void acc_add(acc *a, int64_t size, int64_t bops, double loss)
{
    const aq_alloc_goal *g = a->g;
    int bops_ok = !g->has_max[AQ_RES_BOPS] || bops <= g->max_bops;
    int size_ok = !g->has_max[AQ_RES_SIZE] || size <= g->max_size;
    a->min_size_any = fmin(a->min_size_any, (double)size);
    a->min_bops = fmin(a->min_bops, (double)bops);
    if (bops_ok) a->min_size = fmin(a->min_size, (double)size);
    if (bops_ok && size_ok) a->min_loss = fmin(a->min_loss, loss);
    if (!bops_ok || !size_ok) return;
    if (g->minimise == AQ_RES_LOSS) a->best_obj = fmin(a->best_obj, loss);
    else if (loss <= g->max_loss) a->best_obj = fmin(a->best_obj, (double)size);
}

static int act_ok(const aq_alloc_prob *p, const size_t *ch)
{
    for (size_t u = 0; u < p->n_units; u++) {
        int gu = p->units[u].act_group;
        if (gu < 0) continue;
        for (size_t v = 0; v < u; v++)
            if (p->units[v].act_group == gu &&
                p->opts[p->units[v].first_opt + ch[v]].a_bits != p->opts[p->units[u].first_opt + ch[u]].a_bits)
                return 0;
    }
    return 1;
}

static aq_status brute(const aq_alloc_prob *p, acc *a, double *work, aq_error *err)
{
    size_t nu = p->n_units;
    size_t *ch = calloc(nu, sizeof *ch);
    if (!ch) return aq_fail_nomem(err, "enumeration", nu * sizeof *ch);
    for (;;) {
        (*work)++;
        if (act_ok(p, ch)) {
            int64_t s = 0, b = 0;
            double l = 0;
            for (size_t u = 0; u < nu; u++) {
                const aq_alloc_opt *o = &p->opts[p->units[u].first_opt + ch[u]];
                s += o->size, b += o->bops, l += o->loss;
            }
            acc_add(a, s, b, l);
        }
        size_t u = 0;
        while (u < nu && ++ch[u] == p->units[u].n_opts) ch[u++] = 0;
        if (u == nu) break;
    }
    free(ch);
    return AQ_OK;
}

static int64_t gcd64(int64_t x, int64_t y)
{
    while (y) {
        int64_t t = x % y;
        x = y;
        y = t;
    }
    return x;
}

/* The DP grid: f[s * nb + b] = least loss with size base_s + s*gs and BOPs
 * base_b + b*gb (BOPs axis only with a BOPs budget; nb = 1 otherwise). */
typedef struct grid {
    int64_t base_s, gs, base_b, gb;
    size_t ns, nb;
} grid;

/* next = cur stepped through unit u's options (only width a if a > 0). */
static void dp_step(const aq_alloc_prob *p, const grid *gr, size_t u, int a, const double *cur, double *next,
                    double *work)
{
    const aq_alloc_unit *un = &p->units[u];
    size_t n = gr->ns * gr->nb;
    for (size_t i = 0; i < n; i++) next[i] = INFINITY;
    int64_t ms = INT64_MAX, mb = INT64_MAX;
    for (size_t j = 0; j < un->n_opts; j++) {
        ms = p->opts[un->first_opt + j].size < ms ? p->opts[un->first_opt + j].size : ms;
        mb = p->opts[un->first_opt + j].bops < mb ? p->opts[un->first_opt + j].bops : mb;
    }
    for (size_t j = 0; j < un->n_opts; j++) {
        const aq_alloc_opt *o = &p->opts[un->first_opt + j];
        if (a > 0 && o->a_bits != a) continue;
        size_t ds = (size_t)((o->size - ms) / gr->gs), db = gr->nb > 1 ? (size_t)((o->bops - mb) / gr->gb) : 0;
        for (size_t s = 0; s + ds < gr->ns; s++)
            for (size_t b = 0; b + db < gr->nb; b++) {
                double v = cur[s * gr->nb + b] + o->loss;
                double *t = &next[(s + ds) * gr->nb + b + db];
                if (v < *t) *t = v;
            }
        *work += (double)gr->ns * (double)gr->nb;
    }
}

static aq_status dp(const aq_alloc_prob *p, acc *a, double max_cells, double *work, aq_error *err)
{
    grid gr = {0, 0, 0, 0, 1, 1};
    int64_t span_s = 0, span_b = 0;
    for (size_t u = 0; u < p->n_units; u++) {
        const aq_alloc_unit *un = &p->units[u];
        int64_t ms = INT64_MAX, xs = 0, mb = INT64_MAX, xb = 0;
        for (size_t j = 0; j < un->n_opts; j++) {
            const aq_alloc_opt *o = &p->opts[un->first_opt + j];
            ms = o->size < ms ? o->size : ms, xs = o->size > xs ? o->size : xs;
            mb = o->bops < mb ? o->bops : mb, xb = o->bops > xb ? o->bops : xb;
        }
        for (size_t j = 0; j < un->n_opts; j++) {
            gr.gs = gcd64(p->opts[un->first_opt + j].size - ms, gr.gs);
            gr.gb = gcd64(p->opts[un->first_opt + j].bops - mb, gr.gb);
        }
        gr.base_s += ms, span_s += xs - ms, gr.base_b += mb, span_b += xb - mb;
    }
    if (!gr.gs) gr.gs = 1;
    if (!gr.gb) gr.gb = 1;
    gr.ns = (size_t)(span_s / gr.gs) + 1;
    gr.nb = a->bops_on ? (size_t)(span_b / gr.gb) + 1 : 1;
    if ((double)gr.ns * (double)gr.nb > max_cells)
        return aq_fail(err, AQ_ERR_ARG, "instance too large for the exact solver: %zu x %zu DP cells > %.0f", gr.ns,
                       gr.nb, max_cells);
    size_t n = gr.ns * gr.nb;
    double *cur = malloc(n * sizeof *cur), *nx = malloc(n * sizeof *nx), *br = malloc(n * sizeof *br),
           *acc_b = malloc(n * sizeof *acc_b);
    unsigned char *done = calloc(p->n_units ? p->n_units : 1, 1);
    aq_status st = AQ_OK;
    if (!cur || !nx || !br || !acc_b || !done) {
        st = aq_fail_nomem(err, "exact DP", 4 * n * sizeof *cur);
        goto out;
    }
    for (size_t i = 0; i < n; i++) cur[i] = INFINITY;
    cur[0] = 0;
    for (size_t u = 0; u < p->n_units; u++) {
        if (done[u]) continue;
        int gid = p->units[u].act_group;
        if (gid < 0) {
            dp_step(p, &gr, u, 0, cur, nx, work);
            double *t = cur;
            cur = nx, nx = t;
            continue;
        }
        /* A tie-act group: one branch per activation width, then the pointwise minimum. */
        for (size_t i = 0; i < n; i++) acc_b[i] = INFINITY;
        for (int w = 2; w <= 16; w++) {
            memcpy(br, cur, n * sizeof *br);
            int any = 1;
            for (size_t v = u; v < p->n_units && any; v++) {
                if (p->units[v].act_group != gid) continue;
                int has = 0;
                for (size_t j = 0; j < p->units[v].n_opts; j++) has |= p->opts[p->units[v].first_opt + j].a_bits == w;
                if (!has) any = 0;
                else {
                    dp_step(p, &gr, v, w, br, nx, work);
                    memcpy(br, nx, n * sizeof *br);
                }
            }
            if (any)
                for (size_t i = 0; i < n; i++) acc_b[i] = fmin(acc_b[i], br[i]);
        }
        for (size_t v = u; v < p->n_units; v++)
            if (p->units[v].act_group == gid) done[v] = 1;
        memcpy(cur, acc_b, n * sizeof *cur);
    }
    for (size_t s = 0; s < gr.ns; s++)
        for (size_t b = 0; b < gr.nb; b++)
            if (isfinite(cur[s * gr.nb + b]))
                acc_add(a, gr.base_s + (int64_t)s * gr.gs, gr.nb > 1 ? gr.base_b + (int64_t)b * gr.gb : 0,
                        cur[s * gr.nb + b]);
    if (gr.nb == 1) a->min_bops = NAN;
out:
    free(cur);
    free(nx);
    free(br);
    free(acc_b);
    free(done);
    return st;
}

aq_status aq_alloc_exact(const aq_alloc_table *t, const aq_alloc_spec *spec, aq_alloc_exact_method method,
                         double max_cells, aq_alloc_exact_result *r, aq_error *err)
{
    memset(r, 0, sizeof *r);
    aq_alloc_prob p;
    AQ_TRY(aq_alloc_prob_build(t, spec, &p, err));
    aq_alloc_goal g;
    aq_status st = aq_alloc_goal_from_spec(&p, spec, &g, err);
    if (st != AQ_OK) goto out;
    double combos = 1;
    for (size_t u = 0; u < p.n_units; u++) combos *= (double)p.units[u].n_opts;
    int use_brute = method == AQ_EXACT_BRUTE || (method == AQ_EXACT_AUTO && combos <= 1048576.0);
    if (use_brute && combos > max_cells) {
        st = aq_fail(err, AQ_ERR_ARG, "instance too large to enumerate: %.3g combinations", combos);
        goto out;
    }
    acc a;
    acc_init(&a, &g);
    r->used_brute = use_brute;
    st = use_brute ? brute(&p, &a, &r->work, err) : dp(&p, &a, max_cells, &r->work, err);
    if (st != AQ_OK) goto out;
    if (!g.has_max[AQ_RES_BOPS]) a.min_bops = NAN;
    r->feasible = isfinite(a.best_obj);
    r->objective = a.best_obj;
    r->min_size = a.min_size;
    r->min_size_any = a.min_size_any;
    r->min_bops = a.min_bops;
    r->min_loss = a.min_loss;
out:
    aq_alloc_prob_free(&p);
    return st;
}
