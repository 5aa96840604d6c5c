/* coop_run.c — aq_coop_layer_run: one AdaQuant problem on the cooperative grid.
 *
 * Each rank keeps the working state of its own rows (an aq_ls over the local
 * rows, so the per-row code of src/adaquant — rounding, the STE/LSQ gradient,
 * Adam, keep-best — runs unchanged), and the only Gram-sized objects are the
 * distributed Gram and, during GPTQ, the distributed factor. Every product
 * with the Gram is one PDGEMM (PSGEMM for the float32 Adam step). Per-row
 * losses are gathered and summed in row order, so totals (and every decision
 * taken on them) are the same on all ranks and independent of P.
 * The order of work is layer.c's: multi-start, exact polishing (on the local
 * rows against a replicated copy of the Gram: docs/COOP.md, "Polishing"),
 * Adam segments; quantized activations are not run (docs/COOP.md). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "../../src/adaquant/layer_state.h"
#include "../../src/quant/quant.h"
#include "coop_internal.h"

typedef struct crun {
    const aq_coop_grid *g;
    const aq_coop_problem *p;
    const aq_layer_opts *o;
    const char *name;
    size_t n_loc;
    float *w_loc, *b_loc;    /* local rows of W and bias */
    double *diag;            /* the Gram's diagonal [D], replicated */
    double *rowg;            /* [d_out] gathered per-row values */
    double *rowl;            /* [n_loc] per-row losses of the last eval */
    uint8_t *bu;             /* best: codes [n_loc, d_in] */
    double *bs, *bz, *bb, *brow; /* best: scale, zero, bias, row loss [n_loc] */
    double best_loss;
    float *grid_s, *grid_z, *sc, *ze; /* MSE grid and start grid [n_loc] */
    float *cf;               /* float32 copy of the local Gram columns (Adam) */
    size_t *perm;            /* GPTQ column order [d_in], kept with the factor */
    uint8_t *dead;           /* GPTQ dead inputs [d_in] */
    aq_coop_factor f;        /* GPTQ's distributed factor (f.loc NULL: none) */
    long best_version, polished_version; /* as layer.c: polish only a changed best */
    aq_ls S;
    aq_adam adam;
    aq_adam_cfg cfg;
    aq_status pst;           /* first failure inside a product callback */
    aq_error *err;
    int iterations;
} crun;

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_sec(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

/* Every rank returns the same status and message: the lowest failing rank's. */
static aq_status agree(const aq_coop_grid *g, aq_status st, aq_error *err)
{
    int mine = st != AQ_OK ? g->me : g->q, root = g->q;
    MPI_Allreduce(&mine, &root, 1, MPI_INT, MPI_MIN, g->comm);
    if (root == g->q) return AQ_OK;
    aq_error tmp = {0};
    aq_error *e = err ? err : &tmp;
    int code = (int)st;
    if (g->me == root && e->msg[0] == '\0') snprintf(e->msg, sizeof e->msg, "failed");
    MPI_Bcast(&code, 1, MPI_INT, root, g->comm);
    MPI_Bcast(e->msg, (int)sizeof e->msg, MPI_CHAR, root, g->comm);
    e->code = (aq_status)code;
    return (aq_status)code;
}

/* The product callback of the Adam steps (aq_adam_cfg.product). */
static void product(void *ctx, aq_ls *S, int f32)
{
    crun *c = ctx;
    aq_status st;
    if (f32)
        st = aq_coop_times_cf(c->g, S->D, c->cf, c->p->d_out, S->Ef, S->ECf, c->err);
    else
        st = aq_coop_times_c(c->g, c->p->gram, c->p->d_out, S->E, S->EC, c->err);
    if (c->pst == AQ_OK) c->pst = st;
}

/* Sum of per-row values over all rows in row order (the order of layer.c). */
static aq_status row_sum(crun *c, const double *loc, double *tot)
{
    AQ_TRY(aq_coop_allgather_rows(c->g, loc, c->p->d_out, sizeof(double), c->rowg, c->err));
    double t = 0;
    for (size_t r = 0; r < c->p->d_out; r++) t += c->rowg[r];
    *tot = t;
    return AQ_OK;
}

/* Exact loss of the current (u, s, z, b') after rounding them to float32, as
 * layer.c's eval_rows: per-row losses into c->rowl, the normalised total. */
static aq_status eval_rows(crun *c, double *loss)
{
    aq_ls *S = &c->S;
    for (size_t r = 0; r < S->d_out; r++) {
        S->s[r] = (float)S->s[r];
        S->z[r] = (float)S->z[r];
        S->bq[r] = (float)S->bq[r];
    }
    aq_ls_error(S);
    AQ_TRY(aq_coop_times_c(c->g, c->p->gram, c->p->d_out, S->E, S->EC, c->err));
    for (size_t r = 0; r < S->d_out; r++) {
        const double *e = S->E + r * S->D, *ec = S->EC + r * S->D;
        double l = 0; /* k0 = 0 and Pm = 0 in parallel a16 mode */
        for (size_t j = 0; j < S->D; j++) l += e[j] * ec[j];
        c->rowl[r] = l;
    }
    double tot;
    AQ_TRY(row_sum(c, c->rowl, &tot));
    *loss = tot / S->y2;
    return AQ_OK;
}

static void best_save(crun *c, double loss)
{
    aq_ls *S = &c->S;
    size_t n = S->d_out;
    memcpy(c->bu, S->u, n * S->d_in);
    memcpy(c->bs, S->s, n * sizeof(double));
    memcpy(c->bz, S->z, n * sizeof(double));
    memcpy(c->bb, S->bq, n * sizeof(double));
    memcpy(c->brow, c->rowl, n * sizeof(double));
    c->best_loss = loss;
}

static void best_load(crun *c)
{
    aq_ls *S = &c->S;
    size_t n = S->d_out;
    memcpy(S->u, c->bu, n * S->d_in);
    memcpy(S->s, c->bs, n * sizeof(double));
    memcpy(S->z, c->bz, n * sizeof(double));
    memcpy(S->bq, c->bb, n * sizeof(double));
}

/* layer.c's merge_rows: every row where the current state is better. */
static aq_status merge_rows(crun *c)
{
    aq_ls *S = &c->S;
    double cur;
    AQ_TRY(eval_rows(c, &cur));
    int mine = 0, any = 0;
    for (size_t r = 0; r < S->d_out; r++) {
        if (!(c->rowl[r] < c->brow[r])) continue;
        mine = 1;
        memcpy(c->bu + r * S->d_in, S->u + r * S->d_in, S->d_in);
        c->bs[r] = S->s[r];
        c->bz[r] = S->z[r];
        c->bb[r] = S->bq[r];
        c->brow[r] = c->rowl[r];
    }
    /* a change anywhere is a change for every rank (the polishing decision) */
    if (MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, c->g->comm) != MPI_SUCCESS)
        return aq_fail(c->err, AQ_ERR_MPI, "layer %s: MPI_Allreduce of the best rows failed", c->name);
    c->best_version += any;
    double tot;
    AQ_TRY(row_sum(c, c->brow, &tot));
    c->best_loss = tot / S->y2;
    return AQ_OK;
}

/* The MSE grid scaled by f about its centre into S and sc/ze, as layer.c's
 * start_grid. */
static void start_grid(crun *c, double f)
{
    aq_ls *S = &c->S;
    for (size_t r = 0; r < S->d_out; r++) {
        double s0 = c->grid_s[r], z0 = c->grid_z[r], s1 = s0 * f, z1 = z0;
        if (!S->sym) {
            double centre = s0 * (S->qmax / 2 - z0);
            z1 = nearbyint(S->qmax / 2 - centre / s1);
            z1 = z1 < 0 ? 0 : z1 > S->qmax ? S->qmax : z1;
        }
        c->sc[r] = (float)s1;
        c->ze[r] = (float)z1;
        S->s[r] = c->sc[r];
        S->z[r] = c->ze[r];
        S->bq[r] = c->b_loc[r];
    }
}

typedef struct diag_idx {
    double diag;
    size_t idx;
} diag_idx;

/* Decreasing diagonal, ties by increasing index: aq_gptq's act-order (a total
 * order, so the permutation does not depend on qsort's algorithm). */
static int cmp_act(const void *a, const void *b)
{
    const diag_idx *x = a, *y = b;
    if (x->diag != y->diag) return x->diag > y->diag ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

/* GPTQ's column order and distributed factor into c->perm / c->f (kept for
 * the other starts: they differ only in the grid). */
static aq_status gptq_prepare(crun *c)
{
    size_t d = c->p->d_in;
    c->perm = malloc(d * sizeof *c->perm);
    c->dead = malloc(d);
    diag_idx *order = malloc(d * sizeof *order);
    if (!c->perm || !c->dead || !order) {
        free(order);
        return aq_fail_nomem(c->err, "GPTQ order", d * 25);
    }
    for (size_t i = 0; i < d; i++) {
        c->dead[i] = c->diag[i] == 0.0;
        order[i] = (diag_idx){c->dead[i] ? 1.0 : c->diag[i], i};
    }
    if (c->o->gptq_act_order) qsort(order, d, sizeof *order, cmp_act);
    for (size_t i = 0; i < d; i++) c->perm[i] = order[i].idx;
    free(order);
    return aq_coop_inverse_factor(c->g, c->p->gram, c->perm, c->o->gptq_damp, &c->f, c->err);
}

static void gptq_release(crun *c)
{
    aq_coop_factor_free(&c->f);
    free(c->perm);
    free(c->dead);
    c->perm = NULL;
    c->dead = NULL;
}

/* GPTQ codes of the local rows on the grid sc/ze into S->u (factor ready). */
static aq_status gptq_codes(crun *c)
{
    return aq_coop_gptq_sweep(c->g, &c->f, c->perm, c->w_loc, c->n_loc, c->dead, c->sc, c->ze, c->o->w_bits,
                              (size_t)(c->o->gptq_block > 0 ? c->o->gptq_block : 128), c->S.u, c->err);
}

/* Checks that need no data: the same on every rank. */
static aq_status check_problem(const aq_coop_grid *g, const aq_coop_problem *p,
                               const aq_layer_opts *o, const char *name, aq_error *err)
{
    if (!p->weight || !p->gram || !p->gram->loc)
        return aq_fail(err, AQ_ERR_ARG, "layer %s: cooperative run without weights or Gram", name);
    if (!aq_coop_runs_option(o))
        return aq_fail(err, AQ_ERR_ARG, "layer %s: the cooperative path runs per-row a16 options only "
                       "(this option: a%d, group %d)", name, o->a_bits, o->group);
    if (o->w_bits < 2 || o->w_bits > 8)
        return aq_fail(err, AQ_ERR_ARG, "layer %s: weight bits %d out of range (2..8)", name, o->w_bits);
    if (p->d_out == 0 || p->d_in == 0 || p->gram->D != p->d_in + 1)
        return aq_fail(err, AQ_ERR_SHAPE, "layer %s: weight [%zu, %zu] does not match a %zu x %zu "
                       "Gram (expected d_in + 1)", name, p->d_out, p->d_in, p->gram->D, p->gram->D);
    if (p->d_in + 1 > INT_MAX || p->d_out > INT_MAX)
        return aq_fail(err, AQ_ERR_SHAPE, "layer %s: shape [%zu, %zu] exceeds ScaLAPACK's 32-bit "
                       "dimensions", name, p->d_out, p->d_in);
    size_t need = (size_t)(g->q - 1) * (size_t)g->nb;
    if (p->d_out <= need)
        return aq_fail(err, AQ_ERR_SHAPE, "layer %s: %zu output rows cannot give each of the Q = %d "
                       "ranks a block of %d rows (needs more than %zu rows): use a smaller Q or "
                       "block size", name, p->d_out, g->q, g->nb, need);
    return AQ_OK;
}

static aq_status alloc_local(crun *c)
{
    size_t n = c->n_loc, d = c->p->d_in, D = d + 1;
    c->w_loc = malloc(n * d * sizeof(float));
    c->b_loc = malloc(n * sizeof(float));
    c->diag = malloc(D * sizeof(double));
    c->rowg = malloc(c->p->d_out * sizeof(double));
    c->rowl = malloc(5 * n * sizeof(double));
    c->bu = malloc(n * d);
    c->grid_s = malloc(4 * n * sizeof(float));
    if (!c->w_loc || !c->b_loc || !c->diag || !c->rowg || !c->rowl || !c->bu || !c->grid_s)
        return aq_fail_nomem(c->err, "cooperative layer rows", n * d * 5 + 60 * n + 16 * D);
    c->bs = c->rowl + n;
    c->bz = c->rowl + 2 * n;
    c->bb = c->rowl + 3 * n;
    c->brow = c->rowl + 4 * n;
    c->grid_z = c->grid_s + n;
    c->sc = c->grid_s + 2 * n;
    c->ze = c->grid_s + 3 * n;
    return AQ_OK;
}

/* Local rows of W and b, checked finite; the Gram's local columns checked. */
static aq_status load_local(crun *c)
{
    const aq_coop_problem *p = c->p;
    size_t d = p->d_in;
    AQ_TRY(alloc_local(c));
    for (size_t l = 0; l < c->n_loc; l++) {
        size_t r = aq_coop_global(c->g, l);
        memcpy(c->w_loc + l * d, p->weight + r * d, d * sizeof(float));
        c->b_loc[l] = p->bias ? p->bias[r] : 0.0f;
        for (size_t j = 0; j < d; j++)
            if (!isfinite(c->w_loc[l * d + j]))
                return aq_fail(c->err, AQ_ERR_NUMERIC, "layer %s: weight [%zu, %zu] is not finite",
                               c->name, r, j);
        if (!isfinite(c->b_loc[l]))
            return aq_fail(c->err, AQ_ERR_NUMERIC, "layer %s: bias [%zu] is not finite", c->name, r);
    }
    const aq_coop_gram *gr = p->gram;
    for (size_t i = 0; i < gr->ncols * gr->D; i++)
        if (!isfinite(gr->loc[i]))
            return aq_fail(c->err, AQ_ERR_NUMERIC, "layer %s: Gram entry [%zu, %zu] is not finite",
                           c->name, i % gr->D, aq_coop_global(c->g, i / gr->D));
    return AQ_OK;
}

/* The layer state of the local rows, the Gram's diagonal, ||Y||^2 / N. */
static aq_status state_init(crun *c)
{
    const aq_coop_problem *p = c->p;
    aq_coop_gram *gr = p->gram;
    size_t d = p->d_in, D = d + 1;
    aq_coop_gram_normalise(gr);
    double *dl = malloc((gr->ncols + 1) * sizeof *dl);
    if (!dl) return aq_fail_nomem(c->err, "Gram diagonal", gr->ncols * 8);
    for (size_t l = 0; l < gr->ncols; l++) dl[l] = gr->loc[l * D + aq_coop_global(c->g, l)];
    aq_status st = aq_coop_allgather_rows(c->g, dl, D, sizeof(double), c->diag, c->err);
    free(dl);
    AQ_TRY(st);
    AQ_TRY(aq_ls_new(&c->S, c->n_loc, d, c->o->w_bits, c->o->symmetric, c->w_loc, c->b_loc, c->err));
    aq_ls *S = &c->S;
    S->bc_alias = 1; /* parallel a16: B = C = A, so Pm = 0 and k0 = 0 (calloc'd) */
    double xs = 0;
    int any = 0;
    for (size_t j = 0; j < d; j++) {
        xs += c->diag[j];
        any |= c->diag[j] > 0;
    }
    S->xrms = sqrt(xs / (double)d);
    if (!(S->xrms > 0)) S->xrms = 1.0;
    if (!any)
        return aq_fail(c->err, AQ_ERR_NUMERIC, "layer %s: the inputs are all zero: the normalised "
                       "output error is undefined", c->name);
    /* T = W~ B = W~ C (polishing's constant gradient part), then ||Y||^2 */
    AQ_TRY(aq_coop_times_c(c->g, gr, p->d_out, S->Wt, S->T, c->err));
    for (size_t r = 0; r < S->d_out; r++) {
        double t = 0;
        for (size_t j = 0; j < D; j++) t += S->Wt[r * D + j] * S->T[r * D + j];
        c->rowl[r] = t;
    }
    AQ_TRY(row_sum(c, c->rowl, &S->y2));
    if (!(S->y2 > 0))
        return aq_fail(c->err, AQ_ERR_NUMERIC, "layer %s: the layer output Y = X W^T + b is zero on "
                       "the calibration inputs: the normalised output error is undefined", c->name);
    return AQ_OK;
}

/* The MSE grid, the RTN and GPTQ baselines and the initialisation (layer.c's
 * init_layer), then the best iterate = the initialisation. GPTQ's factor is
 * kept when the other starts need it. */
static aq_status init_layer(crun *c, aq_layer_result *out, double *t_gptq, double *c_gptq)
{
    const aq_layer_opts *o = c->o;
    aq_qspec spec = {o->w_bits, o->symmetric};
    aq_qrange_rows(c->w_loc, c->n_loc, c->p->d_in, spec, AQ_RANGE_MSE, c->grid_s, c->grid_z);
    start_grid(c, 1.0);
    aq_quantize_rows(c->w_loc, c->n_loc, c->p->d_in, c->sc, c->ze, o->w_bits, c->S.u);
    AQ_TRY(eval_rows(c, &out->loss_rtn));
    out->loss_gptq = NAN;
    if (o->init == AQ_INIT_GPTQ || o->compute_gptq) {
        double t0 = now_sec(), c0 = cpu_sec();
        AQ_TRY(agree(c->g, gptq_prepare(c), c->err));
        AQ_TRY(agree(c->g, gptq_codes(c), c->err));
        *t_gptq = now_sec() - t0;
        *c_gptq = cpu_sec() - c0;
        if (!(o->init == AQ_INIT_GPTQ && o->starts > 1)) gptq_release(c);
        AQ_TRY(eval_rows(c, &out->loss_gptq));
        if (o->init == AQ_INIT_RTN)
            aq_quantize_rows(c->w_loc, c->n_loc, c->p->d_in, c->sc, c->ze, o->w_bits, c->S.u);
    }
    /* the state just evaluated is the initialisation unless RTN was redone
     * (saves one d_out x D x D product: the layer's largest) */
    if (o->init == AQ_INIT_GPTQ)
        out->loss_init = out->loss_gptq;
    else
        AQ_TRY(eval_rows(c, &out->loss_init));
    best_save(c, out->loss_init);
    return AQ_OK;
}

/* Exact polishing of the local rows (aq_ls_polish, unchanged): it reads rows
 * of C one input at a time, so the Gram is replicated on first use (8 D^2
 * bytes per rank: docs/COOP.md, "Polishing"). S->T = W~ C is state_init's. */
static aq_status polish_local(crun *c)
{
    aq_ls *S = &c->S;
    if (!S->C) {
        size_t D = S->D;
        double *full = malloc(D * D * sizeof *full);
        aq_status st = full ? AQ_OK : aq_fail_nomem(c->err, "replicated Gram (polishing)", D * D * 8);
        st = agree(c->g, st, c->err);
        /* column j of the symmetric C is its row j: the gathered columns are C row-major */
        if (st == AQ_OK)
            st = aq_coop_allgather_rows(c->g, c->p->gram->loc, D, D * sizeof(double), full, c->err);
        if (st != AQ_OK) {
            free(full);
            return st;
        }
        S->A = S->B = S->C = full; /* bc_alias: aq_ls_free frees it once */
    }
    aq_ls_polish(S, 3);
    return AQ_OK;
}

/* layer.c's multistart: the initialiser on `starts` grids (factors 1, 0.95,
 * 1.05, 0.9, ...), each polished; every row keeps its best start. */
static aq_status multistart(crun *c)
{
    const aq_layer_opts *o = c->o;
    int n = o->starts > 0 ? o->starts : 1;
    for (int k = 0; k < n; k++) {
        double f = aq_start_factor(k);
        start_grid(c, f);
        if (k == 0)
            best_load(c); /* the initialisation itself */
        else if (o->init == AQ_INIT_GPTQ)
            AQ_TRY(agree(c->g, gptq_codes(c), c->err));
        else
            aq_quantize_rows(c->w_loc, c->n_loc, c->p->d_in, c->sc, c->ze, o->w_bits, c->S.u);
        if (o->polish_rounds > 0) AQ_TRY(polish_local(c));
        AQ_TRY(merge_rows(c));
    }
    gptq_release(c);
    return AQ_OK;
}

/* layer.c's inner(): Adam segments, each from the best, each followed by
 * polishing of a changed best. */
static aq_status adam_phase(crun *c)
{
    const aq_layer_opts *o = c->o;
    aq_ls *S = &c->S;
    int rounds = aq_adam_rounds(o);
    int every = aq_adam_eval_every(o);
    for (int k = 0; k < rounds; k++) {
        int per = aq_adam_segment(o, rounds, k);
        if (per > 0) {
            best_load(c);
            aq_ls_v_from_codes(S);
            aq_adam_reset(&c->adam, S);
            for (int done = 0; done < per;) {
                int n = per - done < every ? per - done : every;
                aq_adam_run(S, &c->adam, &c->cfg, n);
                AQ_TRY(c->pst);
                done += n;
                c->iterations += n;
                AQ_TRY(merge_rows(c));
            }
        }
        if (o->polish_rounds > 0 && c->best_version != c->polished_version) {
            best_load(c);
            AQ_TRY(polish_local(c));
            AQ_TRY(merge_rows(c));
            c->polished_version = c->best_version;
        }
    }
    return AQ_OK;
}

static aq_status fill_result(crun *c, aq_layer_result *out, uint64_t seed)
{
    const aq_coop_problem *p = c->p;
    size_t n = c->n_loc, d_out = p->d_out;
    out->codes = malloc(d_out * p->d_in);
    out->w_scale = malloc(3 * d_out * sizeof(float));
    float *loc = malloc(3 * (n ? n : 1) * sizeof *loc);
    aq_status st = AQ_OK;
    if (!out->codes || !out->w_scale || !loc)
        st = aq_fail_nomem(c->err, "layer result", d_out * p->d_in + 12 * d_out);
    st = agree(c->g, st, c->err);
    if (st == AQ_OK) {
        out->w_zero = out->w_scale + d_out;
        out->bias = out->w_scale + 2 * d_out;
        for (size_t r = 0; r < n; r++) {
            loc[r] = (float)c->bs[r];
            loc[n + r] = (float)c->bz[r];
            loc[2 * n + r] = (float)c->bb[r];
        }
        st = aq_coop_allgather_rows(c->g, c->bu, d_out, p->d_in, out->codes, c->err);
    }
    for (int k = 0; k < 3 && st == AQ_OK; k++)
        st = aq_coop_allgather_rows(c->g, loc + (size_t)k * n, d_out, sizeof(float),
                                    out->w_scale + (size_t)k * d_out, c->err);
    free(loc);
    if (st != AQ_OK) return st;
    out->d_out = d_out;
    out->d_in = p->d_in;
    out->w_bits = c->o->w_bits;
    out->a_bits = 16;
    out->symmetric = c->o->symmetric;
    out->a_scale = 1.0f;
    out->a_zero = 0.0f;
    out->loss_final = c->best_loss;
    out->y_energy = c->S.y2;
    out->iterations = c->iterations;
    out->mode_used = AQ_MODE_GRAM;
    out->seed = seed;
    return AQ_OK;
}

/* The Adam phase's float32 Gram columns (f32_gemm) and Adam state. */
static aq_status adam_init(crun *c, uint64_t seed)
{
    const aq_layer_opts *o = c->o;
    static const aq_actq a16 = {16, 1, 0, 0};
    c->cfg = (aq_adam_cfg){.f32 = o->f32_gemm, .lr_w = o->lr_w, .lr_s = o->lr_scale,
                           .lr_z = o->lr_zero, .lr_b = o->lr_bias, .aq = &a16,
                           .product = product, .product_ctx = c};
    if (o->f32_gemm && o->iters > 0) {
        const aq_coop_gram *gr = c->p->gram;
        size_t n = gr->ncols * gr->D;
        c->cf = malloc((n ? n : 1) * sizeof *c->cf);
        if (!c->cf) return aq_fail_nomem(c->err, "float32 Gram columns", n * sizeof(float));
        for (size_t i = 0; i < n; i++) c->cf[i] = (float)gr->loc[i];
    }
    return aq_adam_new(&c->adam, &c->S, &c->cfg, seed, c->err);
}

static void crun_free(crun *c)
{
    aq_adam_free(&c->adam);
    aq_ls_free(&c->S);
    gptq_release(c);
    free(c->w_loc);
    free(c->b_loc);
    free(c->diag);
    free(c->rowg);
    free(c->rowl);
    free(c->bu);
    free(c->grid_s);
    free(c->cf);
}

aq_status aq_coop_layer_run(const aq_coop_grid *g, const aq_coop_problem *p,
                            const aq_layer_opts *o, aq_layer_result *out, aq_coop_stats *stats,
                            aq_error *err)
{
    double t0 = now_sec(), tg = 0, t1 = 0, t2 = 0, c0 = cpu_sec(), cg = 0, c1 = 0, c2 = 0;
    memset(out, 0, sizeof *out);
    crun c;
    memset(&c, 0, sizeof c);
    c.g = g;
    c.p = p;
    c.o = o;
    c.err = err;
    c.name = p->name ? p->name : "layer";
    c.polished_version = -1;
    AQ_TRY(check_problem(g, p, o, c.name, err));
    c.n_loc = aq_coop_nlocal(g, p->d_out, g->me);
    char opt[32];
    aq_layer_opts_string(o, opt, sizeof opt);
    uint64_t seed = aq_layer_seed(c.name, opt, o->seed);
    aq_status st = agree(g, load_local(&c), err);
    if (st == AQ_OK) st = agree(g, state_init(&c), err);
    if (st == AQ_OK) st = init_layer(&c, out, &tg, &cg);
    t1 = now_sec();
    c1 = cpu_sec();
    if (st == AQ_OK) st = agree(g, adam_init(&c, seed), err);
    if (st == AQ_OK) st = multistart(&c);
    if (st == AQ_OK) st = adam_phase(&c);
    t2 = now_sec();
    c2 = cpu_sec();
    if (st == AQ_OK) st = fill_result(&c, out, seed);
    crun_free(&c);
    if (st != AQ_OK) {
        aq_layer_result_free(out);
        if (err && !strstr(err->msg, c.name)) aq_error_prefix(err, "layer %s", c.name);
        return st;
    }
    out->seconds = now_sec() - t0;
    if (stats) {
        stats->t_gptq = tg;
        stats->t_setup = t1 - t0 - tg;
        stats->t_adam = t2 - t1;
        stats->t_total = out->seconds;
        stats->c_gptq = cg;
        stats->c_setup = c1 - c0 - cg;
        stats->c_adam = c2 - c1;
        stats->c_total = cpu_sec() - c0;
        stats->rows_local = c.n_loc;
    }
    return AQ_OK;
}

int aq_coop_runs_option(const aq_layer_opts *o)
{
    /* per-row a16 options; the group formats (o->group > 0) have their own
     * optimiser (src/adaquant/group.c) and run on one rank */
    return o->a_bits >= 16 && o->group == 0;
}
