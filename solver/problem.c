/* problem.c — resolving a table and a spec into units (problem.h): on the
 * table's layer index (table.h), applying --exclude and --keep, merging
 * --tie groups into units whose options are the options all members still
 * allow, and checking --tie-act groups for a common activation width.
 * Every conflict becomes an error naming the layers and the rules involved. */
#include "problem.h"

#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- rules -- */

/* A small growing message buffer for conflict errors (truncates quietly). */
typedef struct msgbuf {
    char s[AQ_ERROR_MSG_MAX - 64];
    size_t n;
} msgbuf;

static void mb_add(msgbuf *m, const char *fmt, ...) AQ_PRINTF(2, 3);
static void mb_add(msgbuf *m, const char *fmt, ...)
{
    if (m->n >= sizeof m->s - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(m->s + m->n, sizeof m->s - m->n, fmt, ap);
    va_end(ap);
    if (k > 0) m->n += (size_t)k;
    if (m->n >= sizeof m->s - 1) {
        m->n = sizeof m->s - 1;
        memcpy(m->s + m->n - 3, "...", 4);
    }
}

static aq_status compile(regex_t *re, const char *what, const char *rx, aq_error *err)
{
    int rc = regcomp(re, rx, REG_EXTENDED);
    if (rc != 0) {
        char buf[256];
        regerror(rc, re, buf, sizeof buf);
        return aq_fail(err, AQ_ERR_ARG, "%s '%s': bad regular expression: %s", what, rx, buf);
    }
    return AQ_OK;
}

static const char *layer_name(const aq_alloc_prob *p, size_t l)
{
    return p->t->rows[p->ix.rows[p->ix.start[l]]].layer;
}

/* Row of layer l with option name opt, or (size_t)-1. */
static size_t find_opt(const aq_alloc_prob *p, size_t l, const char *opt)
{
    for (size_t k = p->ix.start[l]; k < p->ix.start[l + 1]; k++)
        if (!strcmp(p->t->rows[p->ix.rows[k]].option, opt)) return p->ix.rows[k];
    return (size_t)-1;
}

static aq_status apply_excludes(aq_alloc_prob *p, const aq_alloc_spec *s, unsigned char *allowed,
                                long *excl_by, aq_error *err)
{
    for (size_t r = 0; r < s->n_exclude; r++) {
        regex_t re;
        AQ_TRY(compile(&re, "--exclude", s->exclude[r].regex, err));
        size_t hits = 0;
        for (size_t l = 0; l < p->ix.n_layers; l++) {
            if (regexec(&re, layer_name(p, l), 0, NULL, 0) != 0) continue;
            hits++;
            size_t row = find_opt(p, l, s->exclude[r].option);
            if (row != (size_t)-1 && allowed[row]) {
                allowed[row] = 0;
                excl_by[row] = (long)r;
            }
        }
        regfree(&re);
        if (!hits)
            return aq_fail(err, AQ_ERR_ARG, "--exclude '%s=%s': the pattern matches no layer", s->exclude[r].regex,
                           s->exclude[r].option);
    }
    return AQ_OK;
}

static aq_status apply_keeps(aq_alloc_prob *p, const aq_alloc_spec *s, unsigned char *allowed,
                             const long *excl_by, long *pin, aq_error *err)
{
    for (size_t r = 0; r < s->n_keep; r++) {
        const aq_alloc_rule *k = &s->keep[r];
        regex_t re;
        AQ_TRY(compile(&re, "--keep", k->regex, err));
        size_t hits = 0;
        aq_status st = AQ_OK;
        for (size_t l = 0; l < p->ix.n_layers && st == AQ_OK; l++) {
            const char *name = layer_name(p, l);
            if (regexec(&re, name, 0, NULL, 0) != 0) continue;
            hits++;
            size_t row = find_opt(p, l, k->option);
            if (row == (size_t)-1)
                st = aq_fail(err, AQ_ERR_ARG, "--keep '%s=%s': layer '%s' has no option '%s' in the table", k->regex,
                             k->option, name, k->option);
            else if (pin[l] >= 0 && strcmp(s->keep[pin[l]].option, k->option))
                st = aq_fail(err, AQ_ERR_ARG, "layer '%s' is pinned to '%s' by --keep '%s=%s' and to '%s' by --keep '%s=%s'",
                             name, s->keep[pin[l]].option, s->keep[pin[l]].regex, s->keep[pin[l]].option, k->option,
                             k->regex, k->option);
            else if (!allowed[row] && excl_by[row] >= 0)
                st = aq_fail(err, AQ_ERR_ARG, "layer '%s' is pinned to '%s' by --keep '%s=%s' but --exclude '%s=%s' removes it",
                             name, k->option, k->regex, k->option, s->exclude[excl_by[row]].regex,
                             s->exclude[excl_by[row]].option);
            if (st != AQ_OK) break;
            pin[l] = (long)r;
            for (size_t j = p->ix.start[l]; j < p->ix.start[l + 1]; j++)
                if (p->ix.rows[j] != row) allowed[p->ix.rows[j]] = 0;
        }
        regfree(&re);
        if (st != AQ_OK) return st;
        if (!hits) return aq_fail(err, AQ_ERR_ARG, "--keep '%s=%s': the pattern matches no layer", k->regex, k->option);
    }
    return AQ_OK;
}

/* Union-find over n items (path halving). */
static size_t uf_find(size_t *par, size_t x)
{
    while (par[x] != x) x = par[x] = par[par[x]];
    return x;
}
static void uf_union(size_t *par, size_t a, size_t b)
{
    a = uf_find(par, a);
    b = uf_find(par, b);
    if (a != b) par[a > b ? a : b] = a < b ? a : b; /* smallest index is the root */
}

typedef struct keyed {
    char *key;
    size_t item;
} keyed;

static int cmp_keyed(const void *x, const void *y)
{
    const keyed *p = x, *q = y;
    int c = strcmp(p->key, q->key);
    return c ? c : (p->item > q->item) - (p->item < q->item);
}

/* For each regex, union the items (item_of[layer]) of matching layers that
 * share the first capture group (or all matches without a group). */
static aq_status tie_by_regex(const aq_alloc_prob *p, const char *what, const char *const *rx, size_t n_rx,
                              const size_t *item_of, size_t *par, aq_error *err)
{
    size_t nl = p->ix.n_layers;
    keyed *kv = calloc(nl ? nl : 1, sizeof *kv);
    if (!kv) return aq_fail_nomem(err, "tie groups", nl * sizeof *kv);
    aq_status st = AQ_OK;
    for (size_t r = 0; r < n_rx && st == AQ_OK; r++) {
        regex_t re;
        AQ_TRY_GOTO(st, compile(&re, what, rx[r], err), done);
        size_t m = 0;
        for (size_t l = 0; l < nl; l++) {
            const char *name = layer_name(p, l);
            regmatch_t pm[2];
            if (regexec(&re, name, 2, pm, 0) != 0) continue;
            size_t a = 0, b = 0;
            if (re.re_nsub >= 1 && pm[1].rm_so >= 0) {
                a = (size_t)pm[1].rm_so;
                b = (size_t)pm[1].rm_eo;
            }
            kv[m].key = malloc(b - a + 1);
            if (!kv[m].key) {
                st = aq_fail_nomem(err, "tie keys", b - a + 1);
                break;
            }
            memcpy(kv[m].key, name + a, b - a);
            kv[m].key[b - a] = '\0';
            kv[m++].item = item_of[l];
        }
        regfree(&re);
        if (st == AQ_OK && !m) st = aq_fail(err, AQ_ERR_ARG, "%s '%s': the pattern matches no layer", what, rx[r]);
        if (st == AQ_OK) {
            qsort(kv, m, sizeof *kv, cmp_keyed);
            for (size_t i = 1; i < m; i++)
                if (!strcmp(kv[i].key, kv[i - 1].key)) uf_union(par, kv[i].item, kv[i - 1].item);
        }
        for (size_t i = 0; i < m; i++) free(kv[i].key);
    }
done:
    free(kv);
    return st;
}

/* ---------------------------------------------------------------- units -- */

void aq_alloc_prob_free(aq_alloc_prob *p)
{
    aq_alloc_index_free(&p->ix);
    free(p->units);
    free(p->members);
    free(p->opts);
    free(p->member_rows);
    memset(p, 0, sizeof *p);
}

/* "w4a8, w8a8" (allowed options of layer l) into m, with the pin if any. */
static void describe_layer(msgbuf *m, const aq_alloc_prob *p, const aq_alloc_spec *s, size_t l,
                           const unsigned char *allowed, const long *pin)
{
    mb_add(m, "'%s' allows {", layer_name(p, l));
    int first = 1;
    for (size_t k = p->ix.start[l]; k < p->ix.start[l + 1]; k++)
        if (allowed[p->ix.rows[k]]) {
            mb_add(m, "%s%s", first ? "" : ",", p->t->rows[p->ix.rows[k]].option);
            first = 0;
        }
    mb_add(m, "}");
    if (pin[l] >= 0) mb_add(m, " (pinned by --keep '%s=%s')", s->keep[pin[l]].regex, s->keep[pin[l]].option);
}

/* Options allowed in every member of unit u (members m0..m1 of p->members). */
static aq_status build_unit_options(aq_alloc_prob *p, const aq_alloc_spec *s, size_t u,
                                    const unsigned char *allowed, const long *pin, aq_error *err)
{
    aq_alloc_unit *un = &p->units[u];
    const size_t *mem = p->members + un->first_member;
    size_t l0 = mem[0];
    un->first_opt = p->n_opts;
    un->n_opts = 0;
    size_t mr = p->n_member_rows;
    for (size_t k = p->ix.start[l0]; k < p->ix.start[l0 + 1]; k++) {
        size_t row0 = p->ix.rows[k];
        if (!allowed[row0]) continue;
        const char *opt = p->t->rows[row0].option;
        aq_alloc_opt o = {0, 0, 0.0, p->t->rows[row0].a_bits, mr};
        size_t i;
        for (i = 0; i < un->n_members; i++) {
            size_t row = i == 0 ? row0 : find_opt(p, mem[i], opt);
            if (row == (size_t)-1 || !allowed[row]) break;
            const aq_alloc_row *r = &p->t->rows[row];
            o.size += aq_alloc_row_size(r);
            o.bops += aq_alloc_row_bops(r);
            o.loss += r->loss;
            p->member_rows[mr + i] = row;
        }
        if (i < un->n_members) continue;
        p->opts[p->n_opts++] = o;
        un->n_opts++;
        mr += un->n_members;
        p->n_member_rows = mr;
    }
    if (un->n_opts) return AQ_OK;
    msgbuf m = {.n = 0};
    mb_add(&m, "tied layers have no common allowed option (check --tie/--keep/--exclude): ");
    for (size_t i = 0; i < un->n_members; i++) {
        if (i) mb_add(&m, "; ");
        describe_layer(&m, p, s, mem[i], allowed, pin);
    }
    return aq_fail(err, AQ_ERR_ARG, "%s", m.s);
}

/* Group units by tie-act; drop options whose activation width is not shared
 * by the whole group; number the groups of two or more units. */
static aq_status build_act_groups(aq_alloc_prob *p, const aq_alloc_spec *s, size_t *par, aq_error *err)
{
    size_t nu = p->n_units;
    unsigned *mask = calloc(nu, sizeof *mask);
    size_t *gid = malloc(nu * sizeof *gid), *cnt = calloc(nu, sizeof *cnt);
    aq_status st = AQ_OK;
    if (!mask || !gid || !cnt) {
        st = aq_fail_nomem(err, "tie-act groups", nu * 3 * sizeof(size_t));
        goto done;
    }
    for (size_t u = 0; u < nu; u++) mask[u] = ~0u;
    for (size_t u = 0; u < nu; u++) {
        unsigned mu = 0;
        for (size_t j = 0; j < p->units[u].n_opts; j++) mu |= 1u << p->opts[p->units[u].first_opt + j].a_bits;
        size_t r = uf_find(par, u);
        mask[r] &= mu;
        cnt[r]++;
    }
    p->n_act_groups = 0;
    for (size_t u = 0; u < nu; u++) gid[u] = cnt[u] >= 2 ? p->n_act_groups++ : (size_t)-1;
    for (size_t u = 0; u < nu && st == AQ_OK; u++) {
        size_t r = uf_find(par, u);
        if (cnt[r] < 2) continue;
        p->units[u].act_group = (int)gid[r];
        if (mask[r]) continue;
        msgbuf m = {.n = 0};
        mb_add(&m, "--tie-act groups layers with no common activation width:");
        for (size_t v = 0; v < nu; v++) {
            if (uf_find(par, v) != r) continue;
            mb_add(&m, " '%s' allows a{", layer_name(p, p->members[p->units[v].first_member]));
            unsigned mv = 0;
            for (size_t j = 0; j < p->units[v].n_opts; j++) mv |= 1u << p->opts[p->units[v].first_opt + j].a_bits;
            for (int a = 2, f = 1; a <= 16; a++)
                if (mv >> a & 1) mb_add(&m, "%s%d", f ? "" : ",", a), f = 0;
            mb_add(&m, "};");
        }
        st = aq_fail(err, AQ_ERR_ARG, "%s", m.s);
    }
    /* Options with an activation width outside the group's common set can never be chosen:
     * drop them, compacting opts in place (member_rows offsets stay valid). */
    size_t w = 0;
    for (size_t u = 0; u < nu && st == AQ_OK; u++) {
        aq_alloc_unit *un = &p->units[u];
        unsigned mk = un->act_group >= 0 ? mask[uf_find(par, u)] : ~0u;
        size_t f = w;
        for (size_t j = 0; j < un->n_opts; j++) {
            aq_alloc_opt o = p->opts[un->first_opt + j];
            if (mk >> o.a_bits & 1) p->opts[w++] = o;
        }
        un->first_opt = f;
        un->n_opts = w - f;
    }
    if (st == AQ_OK) p->n_opts = w;
done:
    free(mask);
    free(gid);
    free(cnt);
    return st;
}

static aq_status build_units(aq_alloc_prob *p, const aq_alloc_spec *s, const unsigned char *allowed,
                             const long *pin, size_t *par, size_t *unit_of, aq_error *err)
{
    size_t nl = p->ix.n_layers, n = p->t->n_rows;
    p->units = calloc(nl, sizeof *p->units);
    p->members = malloc(nl * sizeof *p->members);
    p->opts = malloc(n * sizeof *p->opts);
    p->member_rows = malloc(n * sizeof *p->member_rows);
    if (!p->units || !p->members || !p->opts || !p->member_rows)
        return aq_fail_nomem(err, "allocation units", n * (sizeof *p->opts + sizeof(size_t)));
    /* Units are numbered by their first layer; members listed in layer order. */
    size_t nu = 0;
    for (size_t l = 0; l < nl; l++)
        if (uf_find(par, l) == l) unit_of[l] = nu++;
    for (size_t l = 0; l < nl; l++) {
        unit_of[l] = unit_of[uf_find(par, l)];
        p->units[unit_of[l]].n_members++;
    }
    for (size_t u = 1; u < nu; u++) p->units[u].first_member = p->units[u - 1].first_member + p->units[u - 1].n_members;
    for (size_t u = 0; u < nu; u++) p->units[u].act_group = -1;
    size_t *fill = calloc(nu ? nu : 1, sizeof *fill);
    if (!fill) return aq_fail_nomem(err, "allocation units", nu * sizeof *fill);
    for (size_t l = 0; l < nl; l++) p->members[p->units[unit_of[l]].first_member + fill[unit_of[l]]++] = l;
    free(fill);
    p->n_units = nu;
    p->n_opts = 0;
    for (size_t u = 0; u < nu; u++) AQ_TRY(build_unit_options(p, s, u, allowed, pin, err));
    return AQ_OK;
}

aq_status aq_alloc_prob_build(const aq_alloc_table *t, const aq_alloc_spec *s, aq_alloc_prob *p,
                              aq_error *err)
{
    memset(p, 0, sizeof *p);
    p->t = t;
    AQ_TRY(aq_alloc_index_build(t, &p->ix, err));
    size_t n = t->n_rows, nl = p->ix.n_layers;
    unsigned char *allowed = malloc(n);
    long *excl_by = malloc(n * sizeof *excl_by), *pin = malloc(nl * sizeof *pin);
    size_t *par = malloc(nl * sizeof *par), *unit_of = malloc(nl * sizeof *unit_of);
    aq_status st = AQ_OK;
    if (!allowed || !excl_by || !pin || !par || !unit_of) {
        st = aq_fail_nomem(err, "allocation rules", n * 3 * sizeof(size_t));
        goto done;
    }
    memset(allowed, 1, n);
    for (size_t i = 0; i < n; i++) excl_by[i] = -1;
    for (size_t l = 0; l < nl; l++) pin[l] = -1, par[l] = l;
    AQ_TRY_GOTO(st, apply_excludes(p, s, allowed, excl_by, err), done);
    AQ_TRY_GOTO(st, apply_keeps(p, s, allowed, excl_by, pin, err), done);
    for (size_t l = 0; l < nl; l++) {
        size_t k;
        for (k = p->ix.start[l]; k < p->ix.start[l + 1] && !allowed[p->ix.rows[k]]; k++) {}
        if (k < p->ix.start[l + 1]) continue;
        st = aq_fail(err, AQ_ERR_ARG, "--exclude rules leave layer '%s' no option (e.g. '%s' removed by --exclude '%s=%s')",
                     layer_name(p, l), t->rows[p->ix.rows[p->ix.start[l]]].option,
                     s->exclude[excl_by[p->ix.rows[p->ix.start[l]]]].regex,
                     s->exclude[excl_by[p->ix.rows[p->ix.start[l]]]].option);
        goto done;
    }
    for (size_t l = 0; l < nl; l++) unit_of[l] = l;
    AQ_TRY_GOTO(st, tie_by_regex(p, "--tie", s->tie, s->n_tie, unit_of, par, err), done);
    AQ_TRY_GOTO(st, build_units(p, s, allowed, pin, par, unit_of, err), done);
    for (size_t u = 0; u < p->n_units; u++) par[u] = u;
    AQ_TRY_GOTO(st, tie_by_regex(p, "--tie-act", s->tie_act, s->n_tie_act, unit_of, par, err), done);
    AQ_TRY_GOTO(st, build_act_groups(p, s, par, err), done);
    p->total_params = 0;
    for (size_t l = 0; l < nl; l++) p->total_params += t->rows[p->ix.rows[p->ix.start[l]]].params;
done:
    free(allowed);
    free(excl_by);
    free(pin);
    free(par);
    free(unit_of);
    if (st != AQ_OK) aq_alloc_prob_free(p);
    return st;
}

/* -------------------------------------------------------------- budgets -- */

int64_t aq_alloc_int_budget(double v)
{
    if (!(v >= 0)) return -1;
    if (v >= 4.0e18) return INT64_MAX / 2;
    double r = nearbyint(v);
    if (fabs(v - r) <= 1e-9 * fmax(1.0, v)) return (int64_t)r;
    return (int64_t)floor(v);
}

double aq_alloc_loss_cap(double max_loss)
{
    return max_loss + 1e-9 * fabs(max_loss);
}

double aq_alloc_opt_res(const aq_alloc_opt *o, aq_alloc_res r)
{
    return r == AQ_RES_LOSS ? o->loss : r == AQ_RES_SIZE ? (double)o->size : (double)o->bops;
}

aq_status aq_alloc_goal_from_spec(const aq_alloc_prob *p, const aq_alloc_spec *s, aq_alloc_goal *g,
                                  aq_error *err)
{
    memset(g, 0, sizeof *g);
    g->minimise = s->objective == AQ_ALLOC_MIN_SIZE ? AQ_RES_SIZE : AQ_RES_LOSS;
    if (s->objective != AQ_ALLOC_MIN_LOSS && s->objective != AQ_ALLOC_MIN_SIZE)
        return aq_fail(err, AQ_ERR_ARG, "unknown objective %d", (int)s->objective);
    if (s->size_unit != AQ_SIZE_NONE) {
        if (!isfinite(s->size_budget) || s->size_budget <= 0)
            return aq_fail(err, AQ_ERR_ARG, "size budget %g must be positive and finite", s->size_budget);
        double tp = (double)p->total_params, v = s->size_budget;
        if (s->size_unit == AQ_SIZE_AVG_BITS) v *= tp;
        else if (s->size_unit == AQ_SIZE_FP32_FRACTION) v *= 32.0 * tp;
        else if (s->size_unit == AQ_SIZE_BYTES) {
            if (s->size_fixed_bits < 0)
                return aq_fail(err, AQ_ERR_ARG, "fixed size %lld bits must be >= 0", (long long)s->size_fixed_bits);
            /* the budget the rows share; negative = infeasible (int_budget gives -1) */
            v = 8.0 * v - (double)s->size_fixed_bits;
        } else if (s->size_unit != AQ_SIZE_BITS) return aq_fail(err, AQ_ERR_ARG, "unknown size unit %d", (int)s->size_unit);
        g->has_max[AQ_RES_SIZE] = 1;
        g->max_size = aq_alloc_int_budget(v);
    }
    if (s->has_max_bops) {
        if (!isfinite(s->max_bops) || s->max_bops < 0)
            return aq_fail(err, AQ_ERR_ARG, "BOPs budget %g must be non-negative and finite", s->max_bops);
        g->has_max[AQ_RES_BOPS] = 1;
        g->max_bops = aq_alloc_int_budget(s->max_bops);
    }
    if (s->objective == AQ_ALLOC_MIN_SIZE) {
        if (!isfinite(s->max_loss) || s->max_loss < 0)
            return aq_fail(err, AQ_ERR_ARG, "loss budget %g must be non-negative and finite", s->max_loss);
        g->has_max[AQ_RES_LOSS] = 1;
        g->max_loss = aq_alloc_loss_cap(s->max_loss);
    }
    return AQ_OK;
}
