/* incumbent.c — a near-optimal starting solution for the presolve (presolve.c).
 *
 * The reduced-cost fixing drops every option whose reduced cost exceeds
 * U - LB, so the size of the core CBC must search shrinks with the gap
 * between the incumbent U and the LP bound LB. The greedy incumbent leaves
 * part of the budget unused (upgrades come in whole layers); this step
 * re-optimises the K units with the cheapest alternatives (smallest reduced
 * costs, where the optimum differs from the LP solution) exactly, by dynamic
 * programming over the change of the integer resource, all other units held
 * at the greedy choice. It is a heuristic for U only: optimality is still
 * proven by the fixing argument and CBC. Deltas coarsened to fit the DP
 * window are rounded up, so a DP-feasible answer is truly feasible; the
 * result is re-checked exactly and kept only if it is feasible and better. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "problem.h"

enum { K_MAX = 160, W_MAX = 1 << 16 };

typedef struct keyed_unit {
    double key;
    size_t unit;
} keyed_unit;

static int cmp_key(const void *x, const void *y)
{
    const keyed_unit *p = x, *q = y;
    if (p->key != q->key) return p->key < q->key ? -1 : 1;
    return (p->unit > q->unit) - (p->unit < q->unit);
}

static int64_t gcd64(int64_t a, int64_t b)
{
    if (a < 0) a = -a;
    if (b < 0) b = -b;
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int64_t ceil_div(int64_t x, int64_t d) /* d > 0 */
{
    return x >= 0 ? (x + d - 1) / d : -((-x) / d);
}

/* Option o of unit u may be used: kept, and inside a --tie-act group only at
 * the group's current width (so the result still respects the tie). */
static int usable(const aq_alloc_prob *p, const unsigned char *keep, size_t u, size_t o, const size_t *pos)
{
    return keep[o] && (p->units[u].act_group < 0 || p->opts[o].a_bits == p->opts[pos[u]].a_bits);
}

/* Units ordered by how cheap their alternatives are; returns how many (<= K_MAX). */
static size_t pick_units(const aq_alloc_prob *p, aq_alloc_res c, aq_alloc_res a, const unsigned char *keep,
                         double lambda, const double *bu, const size_t *pos, keyed_unit *ku, size_t *sel)
{
    size_t n = 0;
    for (size_t u = 0; u < p->n_units; u++) {
        const aq_alloc_unit *un = &p->units[u];
        if (un->n_opts > 255) continue;
        double best = INFINITY;
        for (size_t j = 0; j < un->n_opts; j++) {
            size_t o = un->first_opt + j;
            if (!usable(p, keep, u, o, pos) || o == pos[u]) continue;
            best = fmin(best, aq_alloc_opt_res(&p->opts[o], c) + lambda * aq_alloc_opt_res(&p->opts[o], a) - bu[u]);
        }
        double here = aq_alloc_opt_res(&p->opts[pos[u]], c) + lambda * aq_alloc_opt_res(&p->opts[pos[u]], a) - bu[u];
        if (here > 0) best = 0; /* off the LP solution already: re-optimise it */
        if (isfinite(best)) ku[n++] = (keyed_unit){best, u};
    }
    qsort(ku, n, sizeof *ku, cmp_key);
    if (n > K_MAX) n = K_MAX;
    for (size_t i = 0; i < n; i++) sel[i] = ku[i].unit;
    return n;
}

aq_status aq_alloc_improve_incumbent(const aq_alloc_prob *p, aq_alloc_res c, aq_alloc_res a, double B,
                                     const unsigned char *keep, double lambda, const double *bu, size_t *pos,
                                     aq_error *err)
{
    size_t nu = p->n_units;
    aq_alloc_res ir = a != AQ_RES_LOSS ? a : c, vr = ir == a ? c : a; /* DP over ir, value vr */
    if (ir == AQ_RES_LOSS) return AQ_OK;                                  /* no integer resource */
    keyed_unit *ku = malloc((nu ? nu : 1) * sizeof *ku);
    size_t sel[K_MAX];
    int64_t g = 0, lo = 0, hi = 0;
    double *val = NULL, *nv = NULL;
    unsigned char *choice = NULL;
    aq_status st = AQ_OK;
    if (!ku) return aq_fail_nomem(err, "incumbent search", nu * sizeof *ku);
    size_t k = pick_units(p, c, a, keep, lambda, bu, pos, ku, sel);
    for (size_t i = 0; i < k; i++) {
        const aq_alloc_unit *un = &p->units[sel[i]];
        for (size_t j = 0; j < un->n_opts; j++)
            if (usable(p, keep, sel[i], un->first_opt + j, pos))
                g = gcd64(g, (int64_t)aq_alloc_opt_res(&p->opts[un->first_opt + j], ir) -
                                 (int64_t)aq_alloc_opt_res(&p->opts[pos[sel[i]]], ir));
    }
    if (k == 0 || g == 0) goto done;
    for (int pass = 0; pass < 2; pass++) { /* pass 0 sizes the window, pass 1 after coarsening */
        lo = hi = 0;
        for (size_t i = 0; i < k; i++) {
            const aq_alloc_unit *un = &p->units[sel[i]];
            int64_t mn = 0, mx = 0;
            for (size_t j = 0; j < un->n_opts; j++) {
                if (!usable(p, keep, sel[i], un->first_opt + j, pos)) continue;
                int64_t d = ceil_div((int64_t)aq_alloc_opt_res(&p->opts[un->first_opt + j], ir) -
                                         (int64_t)aq_alloc_opt_res(&p->opts[pos[sel[i]]], ir), g);
                mn = d < mn ? d : mn, mx = d > mx ? d : mx;
            }
            lo += mn, hi += mx;
        }
        if (hi - lo + 1 <= W_MAX) break;
        g *= (hi - lo + 1 + W_MAX - 1) / W_MAX + 1;
    }
    size_t w = (size_t)(hi - lo + 1);
    val = malloc(w * sizeof *val);
    nv = malloc(w * sizeof *nv);
    choice = malloc(k * w);
    if (!val || !nv || !choice) {
        st = aq_fail_nomem(err, "incumbent search", w * (2 * sizeof *val + k));
        goto done;
    }
    for (size_t d = 0; d < w; d++) val[d] = INFINITY;
    val[-lo] = 0;
    for (size_t i = 0; i < k; i++) {
        const aq_alloc_unit *un = &p->units[sel[i]];
        const aq_alloc_opt *ref = &p->opts[pos[sel[i]]];
        for (size_t d = 0; d < w; d++) nv[d] = INFINITY;
        for (size_t j = 0; j < un->n_opts; j++) {
            const aq_alloc_opt *o = &p->opts[un->first_opt + j];
            if (!usable(p, keep, sel[i], un->first_opt + j, pos)) continue;
            int64_t dd = ceil_div((int64_t)aq_alloc_opt_res(o, ir) - (int64_t)aq_alloc_opt_res(ref, ir), g);
            double dv = aq_alloc_opt_res(o, vr) - aq_alloc_opt_res(ref, vr);
            size_t from = dd < 0 ? (size_t)(-dd) : 0, to = dd > 0 ? w - (size_t)dd : w;
            for (size_t d = from; d < to; d++) {
                double v = val[d] + dv;
                size_t t = (size_t)((int64_t)d + dd);
                if (v < nv[t]) nv[t] = v, choice[i * w + t] = (unsigned char)j;
            }
        }
        double *tmp = val;
        val = nv, nv = tmp;
    }
    /* Reference totals and the best end state. */
    double ref_a = 0, ref_c = 0;
    for (size_t u = 0; u < nu; u++)
        ref_a += aq_alloc_opt_res(&p->opts[pos[u]], a), ref_c += aq_alloc_opt_res(&p->opts[pos[u]], c);
    long best = -1;
    if (ir == a) { /* minimise delta c subject to delta a <= B - ref_a */
        double cap = floor((B - ref_a) / (double)g + 1e-9);
        for (size_t d = 0; d < w && (double)((int64_t)d + lo) <= cap; d++)
            if (val[d] < 0 && (best < 0 || val[d] < val[best])) best = (long)d;
    } else { /* c integer: the smallest delta c with delta a (loss) within budget */
        for (size_t d = 0; d < w && (int64_t)d + lo < 0 && best < 0; d++)
            if (val[d] <= B - ref_a) best = (long)d;
    }
    if (best < 0) goto done;
    size_t *np = malloc(nu * sizeof *np);
    if (!np) {
        st = aq_fail_nomem(err, "incumbent search", nu * sizeof *np);
        goto done;
    }
    memcpy(np, pos, nu * sizeof *np);
    size_t d = (size_t)best;
    for (size_t i = k; i-- > 0;) {
        const aq_alloc_unit *un = &p->units[sel[i]];
        size_t j = choice[i * w + d];
        int64_t dd = ceil_div((int64_t)aq_alloc_opt_res(&p->opts[un->first_opt + j], ir) -
                                  (int64_t)aq_alloc_opt_res(&p->opts[pos[sel[i]]], ir), g);
        np[sel[i]] = un->first_opt + j;
        d = (size_t)((int64_t)d - dd);
    }
    double na = 0, nc = 0;
    for (size_t u = 0; u < nu; u++)
        na += aq_alloc_opt_res(&p->opts[np[u]], a), nc += aq_alloc_opt_res(&p->opts[np[u]], c);
    if (na <= B && nc < ref_c) memcpy(pos, np, nu * sizeof *np);
    free(np);
done:
    free(ku);
    free(val);
    free(nv);
    free(choice);
    return st;
}
