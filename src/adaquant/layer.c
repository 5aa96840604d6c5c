/* layer.c — aq_layer_run: the AdaQuant driver for one (layer, option).
 *
 * Order of work: validate -> Grams (rows or statistics) -> MSE grid -> RTN and
 * GPTQ baselines -> alternate [Adam with STE over (V, s, z, b')] and [exact
 * polishing: closed-form (s, z, b') refit + greedy code moves] -> for
 * quantized activations, an outer loop over (a_scale, a_zero) that rebuilds
 * B and C. The best iterate by exact Gram loss is kept (evaluated every
 * eval_every Adam steps and after each polish), so loss_final <= loss_init.
 * Parameters are rounded to float32 before every evaluation: the reported
 * losses are those of the stored result. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../quant/quant.h"
#include "gptq.h"
#include "layer_state.h"

typedef struct snap {
    uint8_t *u;
    double *s, *z, *bq, *row; /* row: per-row loss (unnormalised) */
    aq_actq aq;
    double loss;
} snap;

typedef struct run_ctx {
    const aq_layer_problem *p;
    const aq_layer_opts *o;
    const char *name;
    aq_ls S;
    aq_actq aq;
    const float *rx, *rxin; /* rows for Grams/activations (rows feed or sample) */
    size_t rn;
    aq_adam_cfg cfg;
    aq_adam adam;
    snap best, gbest;       /* best under the current Grams / over all activation steps */
    double *rowl;           /* [d_out] per-row losses of the last eval */
    long best_version;      /* bumped whenever a row of best improves */
    long polished_version;  /* best_version when best was last polished (-1: never) */
    float *grid_s, *grid_z; /* the MSE grid [d_out] each */
    double *a_rows;         /* A of the rows (it does not change with the activation
                             * quantizer: the outer steps reuse it), or NULL */
    int iterations;
} run_ctx;

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Round the layer's parameters to what is stored (float32), then the exact
 * loss (per-row losses into rowl when not NULL). */
static double eval_rows(aq_ls *S, double *rowl)
{
    for (size_t r = 0; r < S->d_out; r++) {
        S->s[r] = (float)S->s[r];
        S->z[r] = (float)S->z[r];
        S->bq[r] = (float)S->bq[r];
    }
    return aq_ls_loss(S, rowl);
}
static double eval(aq_ls *S) { return eval_rows(S, NULL); }

static void snap_save(snap *b, const aq_ls *S, const aq_actq *aq, double loss, const double *rowl)
{
    size_t no = S->d_out;
    memcpy(b->row, rowl, no * sizeof(double));
    memcpy(b->u, S->u, no * S->d_in);
    memcpy(b->s, S->s, no * sizeof(double));
    memcpy(b->z, S->z, no * sizeof(double));
    memcpy(b->bq, S->bq, no * sizeof(double));
    b->aq = *aq;
    b->loss = loss;
}

static void snap_load(const snap *b, aq_ls *S)
{
    size_t no = S->d_out;
    memcpy(S->u, b->u, no * S->d_in);
    memcpy(S->s, b->s, no * sizeof(double));
    memcpy(S->z, b->z, no * sizeof(double));
    memcpy(S->bq, b->bq, no * sizeof(double));
}

static aq_status snap_alloc(snap *b, size_t d_out, size_t d_in, aq_error *err)
{
    b->u = malloc(d_out * d_in > 0 ? d_out * d_in : 1);
    b->s = malloc(4 * d_out * sizeof(double));
    if (!b->u || !b->s) return aq_fail_nomem(err, "best iterate", d_out * (d_in + 32));
    b->z = b->s + d_out;
    b->bq = b->s + 2 * d_out;
    b->row = b->s + 3 * d_out;
    return AQ_OK;
}

static void snap_free(snap *b)
{
    free(b->u);
    free(b->s);
}

static void snap_copy(snap *dst, const snap *src, size_t d_out, size_t d_in)
{
    memcpy(dst->u, src->u, d_out * d_in);
    memcpy(dst->s, src->s, 4 * d_out * sizeof(double));
    dst->aq = src->aq;
    dst->loss = src->loss;
}

/* Rows are independent problems: take every row where the current state is
 * better than the best (same Grams), and recompute the total. */
static void merge_rows(run_ctx *c)
{
    aq_ls *S = &c->S;
    size_t d_in = S->d_in;
    snap *b = &c->best;
    eval_rows(S, c->rowl);
    double tot = 0;
    for (size_t r = 0; r < S->d_out; r++) {
        if (c->rowl[r] < b->row[r]) {
            c->best_version++;
            memcpy(b->u + r * d_in, S->u + r * d_in, d_in);
            b->s[r] = S->s[r];
            b->z[r] = S->z[r];
            b->bq[r] = S->bq[r];
            b->row[r] = c->rowl[r];
        }
        tot += b->row[r];
    }
    b->loss = tot / S->y2;
}

/* Build the normalised Grams for the current activation quantizer into S. */
static aq_status build_grams(run_ctx *c, aq_error *err)
{
    const aq_layer_problem *p = c->p;
    size_t D = p->d_in + 1;
    double *A, *B, *C;
    if (p->x || c->aq.bits < 16) {
        AQ_TRY(aq_grams_from_rows_a(c->rx, c->rxin, c->rn, p->d_in, &c->aq, c->a_rows, &A, &B, &C, err));
        if (!c->a_rows && A != B && (c->a_rows = malloc(D * D * sizeof *A)))
            memcpy(c->a_rows, A, D * D * sizeof *A);
    } else {
        double inv = 1.0 / (double)p->n_tokens;
        int alias = !p->gram_b && !p->gram_c;
        A = malloc(D * D * sizeof *A);
        B = alias ? A : malloc(D * D * sizeof *B);
        C = alias ? A : malloc(D * D * sizeof *C);
        if (!A || !B || !C) {
            free(A);
            if (!alias) {
                free(B);
                free(C);
            }
            return aq_fail_nomem(err, "Grams", 3 * D * D * sizeof(double));
        }
        for (size_t i = 0; i < D * D; i++) A[i] = p->gram_a[i] * inv;
        if (!alias)
            for (size_t i = 0; i < D * D; i++) {
                B[i] = (p->gram_b ? p->gram_b[i] : p->gram_a[i]) * inv;
                C[i] = (p->gram_c ? p->gram_c[i] : p->gram_a[i]) * inv;
            }
    }
    return aq_ls_set_grams(&c->S, A, B, C, err);
}

/* The grid of start f: the MSE grid widened (f > 1) or narrowed about its
 * centre; asymmetric zero points stay integer. Into S->s, S->z and sc/ze. */
static void start_grid(run_ctx *c, double f, float *sc, float *ze)
{
    aq_ls *S = &c->S;
    for (size_t r = 0; r < S->d_out; r++) {
        double s0 = c->grid_s[r], z0 = c->grid_z[r], s1 = s0 * f, z1 = z0;
        if (!S->sym) {
            double centre = s0 * (S->qmax / 2 - z0);
            z1 = nearbyint(S->qmax / 2 - centre / s1);
            z1 = z1 < 0 ? 0 : z1 > S->qmax ? S->qmax : z1;
        }
        sc[r] = (float)s1;
        ze[r] = (float)z1;
        S->s[r] = sc[r];
        S->z[r] = ze[r];
        S->bq[r] = c->p->bias ? c->p->bias[r] : 0.0;
    }
}

/* Codes of W on the grid (sc, ze) into S->u: GPTQ (H = A without the ones
 * row/col) or round-to-nearest. */
static aq_status quantize_start(run_ctx *c, int gptq, const float *sc, const float *ze, aq_error *err)
{
    const aq_layer_problem *p = c->p;
    const aq_layer_opts *o = c->o;
    size_t d_in = p->d_in, D = d_in + 1;
    if (!gptq) {
        aq_quantize_rows(p->weight, p->d_out, d_in, sc, ze, o->w_bits, c->S.u);
        return AQ_OK;
    }
    double *H = malloc(d_in * d_in * sizeof *H);
    if (!H) return aq_fail_nomem(err, "GPTQ Hessian", d_in * d_in * sizeof *H);
    for (size_t i = 0; i < d_in; i++) memcpy(H + i * d_in, c->S.A + i * D, d_in * sizeof *H);
    aq_status st = aq_gptq(p->weight, p->d_out, d_in, H, sc, ze, o->w_bits, o->gptq_damp,
                           (size_t)(o->gptq_block > 0 ? o->gptq_block : 128), o->gptq_act_order, c->S.u,
                           NULL, err);
    free(H);
    if (st != AQ_OK) aq_error_prefix(err, "layer %s: GPTQ", c->name);
    return st;
}

/* RTN and GPTQ baselines on the MSE grid (original bias); leaves the chosen
 * initialisation in S and fills the baseline losses. */
static aq_status init_layer(run_ctx *c, aq_layer_result *out, aq_error *err)
{
    const aq_layer_opts *o = c->o;
    size_t d_out = c->p->d_out;
    float *sc = malloc(2 * d_out * sizeof *sc);
    if (!sc) return aq_fail_nomem(err, "grid", 2 * d_out * sizeof *sc);
    float *ze = sc + d_out;
    aq_qspec spec = {o->w_bits, o->symmetric};
    aq_qrange_rows(c->p->weight, d_out, c->p->d_in, spec, AQ_RANGE_MSE, c->grid_s, c->grid_z);
    start_grid(c, 1.0, sc, ze);
    aq_status st = quantize_start(c, 0, sc, ze, err);
    out->loss_rtn = eval(&c->S);
    out->loss_gptq = NAN;
    if (st == AQ_OK && (o->init == AQ_INIT_GPTQ || o->compute_gptq)) {
        st = quantize_start(c, 1, sc, ze, err);
        if (st == AQ_OK) out->loss_gptq = eval(&c->S);
        if (st == AQ_OK && o->init == AQ_INIT_RTN) st = quantize_start(c, 0, sc, ze, err);
    }
    free(sc);
    return st;
}

/* Multi-start: the initialiser on `starts` grids (factors 1, 0.95, 1.05,
 * 0.9, 1.1, ...), each polished; rows are independent, so every row keeps
 * its best start. */
static aq_status multistart(run_ctx *c, aq_error *err)
{
    const aq_layer_opts *o = c->o;
    size_t d_out = c->p->d_out;
    float *sc = malloc(2 * d_out * sizeof *sc);
    if (!sc) return aq_fail_nomem(err, "grid", 2 * d_out * sizeof *sc);
    float *ze = sc + d_out;
    aq_status st = AQ_OK;
    int n = o->starts > 0 ? o->starts : 1;
    for (int k = 0; k < n && st == AQ_OK; k++) {
        double f = aq_start_factor(k);
        start_grid(c, f, sc, ze);
        if (k == 0)
            snap_load(&c->best, &c->S); /* the initialisation itself */
        else
            st = quantize_start(c, o->init == AQ_INIT_GPTQ, sc, ze, err);
        if (st != AQ_OK) break;
        if (o->polish_rounds > 0) aq_ls_polish(&c->S, 3);
        merge_rows(c);
    }
    free(sc);
    return st;
}

/* Alternate Adam segments and exact polishing; every segment restarts from
 * the best iterate so far (per row). */
static void inner(run_ctx *c)
{
    const aq_layer_opts *o = c->o;
    aq_ls *S = &c->S;
    int rounds = aq_adam_rounds(o);
    int every = aq_adam_eval_every(o);
    for (int k = 0; k < rounds; k++) {
        int per = aq_adam_segment(o, rounds, k);
        snap_load(&c->best, S);
        if (per > 0) {
            aq_ls_v_from_codes(S);
            aq_adam_reset(&c->adam, S);
            for (int done = 0; done < per;) {
                int n = per - done < every ? per - done : every;
                aq_adam_run(S, &c->adam, &c->cfg, n);
                done += n;
                c->iterations += n;
                merge_rows(c);
            }
            snap_load(&c->best, S);
        }
        /* polishing is deterministic: polishing an unchanged best again is a no-op */
        if (o->polish_rounds > 0 && c->best_version != c->polished_version) {
            snap_load(&c->best, S);
            aq_ls_polish(S, 3);
            merge_rows(c);
            c->polished_version = c->best_version;
        }
    }
}

/* Outer loop over the activation quantizer (a_bits < 16): Adam steps on
 * (log a_scale, a_zero) from the LSQ gradient at the best weights, each step
 * followed by a Gram rebuild and an inner optimisation from the best weights.
 * c->best is the best under the current Grams, c->gbest over all steps; a
 * step that does not improve halves the activation learning rate. */
static aq_status outer(run_ctx *c, aq_error *err)
{
    const aq_layer_opts *o = c->o;
    AQ_TRY(multistart(c, err));
    inner(c);
    snap_copy(&c->gbest, &c->best, c->p->d_out, c->p->d_in);
    if (c->aq.bits >= 16 || o->act_fixed) return AQ_OK;
    double lr = o->lr_act;
    aq_actq_adam m = {0, 0, 0, 0};
    for (int k = 1; k < o->outer_iters; k++) {
        snap_load(&c->gbest, &c->S);
        if (!aq_actq_same(&c->aq, &c->gbest.aq)) {
            c->aq = c->gbest.aq;
            AQ_TRY(build_grams(c, err));
        }
        double gs, gz;
        AQ_TRY(aq_actq_grad(&c->S, &c->aq, c->rx, c->rxin, c->rn, &gs, &gz, err));
        aq_actq_step(&c->aq, &m, gs, gz, lr, k);
        AQ_TRY(build_grams(c, err));
        double l = eval_rows(&c->S, c->rowl);
        snap_save(&c->best, &c->S, &c->aq, l, c->rowl);
        c->best_version++; /* new Grams: best must be polished again */
        inner(c);
        if (c->best.loss < c->gbest.loss)
            snap_copy(&c->gbest, &c->best, c->p->d_out, c->p->d_in);
        else
            lr *= 0.5;
    }
    return AQ_OK;
}

static aq_status fill_result(run_ctx *c, aq_layer_result *out, aq_error *err)
{
    size_t d_out = c->p->d_out, d_in = c->p->d_in;
    out->codes = malloc(d_out * d_in);
    out->w_scale = malloc(3 * d_out * sizeof(float));
    if (!out->codes || !out->w_scale) {
        aq_layer_result_free(out);
        return aq_fail_nomem(err, "layer result", d_out * d_in + 12 * d_out);
    }
    out->w_zero = out->w_scale + d_out;
    out->bias = out->w_scale + 2 * d_out;
    memcpy(out->codes, c->gbest.u, d_out * d_in);
    for (size_t r = 0; r < d_out; r++) {
        out->w_scale[r] = (float)c->gbest.s[r];
        out->w_zero[r] = (float)c->gbest.z[r];
        out->bias[r] = (float)c->gbest.bq[r];
    }
    out->a_scale = c->gbest.aq.bits < 16 ? (float)c->gbest.aq.scale : 1.0f;
    out->a_zero = c->gbest.aq.bits < 16 ? (float)c->gbest.aq.zero : 0.0f;
    out->loss_final = c->gbest.loss;
    out->iterations = c->iterations;
    return AQ_OK;
}

static aq_status setup(run_ctx *c, aq_layer_result *out, aq_error *err)
{
    const aq_layer_problem *p = c->p;
    const aq_layer_opts *o = c->o;
    size_t d_out = p->d_out, d_in = p->d_in, D = d_in + 1;
    c->rx = p->x ? p->x : p->sample_x;
    c->rxin = p->x ? p->x_in : p->sample_x_in;
    c->rn = p->x ? p->n_rows : p->n_sample;
    c->aq = (aq_actq){16, 1, 0, 0};
    if (o->a_bits < 16 && o->act_fixed)
        c->aq = (aq_actq){o->a_bits, o->act_scale, o->act_zero, (double)((1u << o->a_bits) - 1u)};
    else if (o->a_bits < 16)
        aq_actq_fit(&c->aq, o->a_bits, c->rxin ? c->rxin : c->rx, c->rn, d_in);
    AQ_TRY(aq_ls_new(&c->S, d_out, d_in, o->w_bits, o->symmetric, p->weight, p->bias, err));
    AQ_TRY(build_grams(c, err));
    int any = 0;
    for (size_t i = 0; i < d_in && !any; i++) any = c->S.A[i * D + i] > 0;
    if (!any)
        return aq_fail(err, AQ_ERR_NUMERIC,
                       "layer %s: the inputs are all zero: the normalised output error is undefined", c->name);
    if (!(c->S.y2 > 0))
        return aq_fail(err, AQ_ERR_NUMERIC,
                       "layer %s: the layer output Y = X W^T + b is zero on the calibration inputs: "
                       "the normalised output error is undefined", c->name);
    AQ_TRY(snap_alloc(&c->best, d_out, d_in, err));
    AQ_TRY(snap_alloc(&c->gbest, d_out, d_in, err));
    c->rowl = malloc(d_out * sizeof *c->rowl);
    c->grid_s = malloc(2 * d_out * sizeof(float));
    if (!c->rowl || !c->grid_s) return aq_fail_nomem(err, "grid", d_out * 16);
    c->grid_z = c->grid_s + d_out;
    AQ_TRY(init_layer(c, out, err));
    out->loss_init = eval_rows(&c->S, c->rowl);
    snap_save(&c->best, &c->S, &c->aq, out->loss_init, c->rowl);
    return AQ_OK;
}

aq_status aq_layer_run(const aq_layer_problem *p, const aq_layer_opts *o, aq_layer_result *out,
                       aq_error *err)
{
    double t0 = now_sec();
    memset(out, 0, sizeof *out);
    /* misaligned caller arrays are read through aligned copies (align.c) */
    aq_layer_problem pa;
    void *owned[AQ_PROBLEM_ARRAYS];
    aq_status st = aq_problem_align(p, &pa, owned, err);
    if (st == AQ_OK) st = aq_layer_validate(&pa, o, err);
    if (st != AQ_OK) {
        aq_problem_align_free(owned);
        if (err && !strstr(err->msg, p->name ? p->name : "layer"))
            aq_error_prefix(err, "layer %s", p->name ? p->name : "layer");
        return st;
    }
    p = &pa;
    if (o->group > 0) {
        st = aq_group_run(p, o, out, err);
        aq_problem_align_free(owned);
        return st;
    }
    run_ctx c;
    memset(&c, 0, sizeof c);
    c.p = p;
    c.o = o;
    c.name = p->name ? p->name : "layer";
    c.polished_version = -1;
    char opt[32];
    aq_layer_opts_string(o, opt, sizeof opt);
    uint64_t seed = aq_layer_seed(c.name, opt, o->seed);
    aq_aq_mode mode = o->mode;
    if (!p->x) mode = AQ_MODE_GRAM;
    else if (mode == AQ_MODE_AUTO) mode = p->n_rows > p->d_in ? AQ_MODE_GRAM : AQ_MODE_ROWS;
    AQ_TRY_GOTO(st, setup(&c, out, err), done);
    c.cfg = (aq_adam_cfg){.f32 = o->f32_gemm, .lr_w = o->lr_w, .lr_s = o->lr_scale,
                          .lr_z = o->lr_zero, .lr_b = o->lr_bias, .aq = &c.aq};
    if (mode == AQ_MODE_ROWS) {
        c.cfg.x = p->x;
        c.cfg.xin = p->x_in;
        c.cfg.n_rows = p->n_rows;
        c.cfg.batch = o->batch_rows > 0 ? (size_t)o->batch_rows : 256;
        if (c.cfg.batch > p->n_rows) c.cfg.batch = p->n_rows;
    }
    AQ_TRY_GOTO(st, aq_adam_new(&c.adam, &c.S, &c.cfg, seed, err), done);
    AQ_TRY_GOTO(st, outer(&c, err), done);
    AQ_TRY_GOTO(st, fill_result(&c, out, err), done);
    out->d_out = p->d_out;
    out->d_in = p->d_in;
    out->w_bits = o->w_bits;
    out->a_bits = o->a_bits;
    out->symmetric = o->symmetric;
    out->mode_used = mode;
    out->y_energy = c.S.y2;
    out->seed = seed;
    out->seconds = now_sec() - t0;
done:
    aq_adam_free(&c.adam);
    aq_ls_free(&c.S);
    snap_free(&c.best);
    snap_free(&c.gbest);
    free(c.rowl);
    free(c.grid_s);
    free(c.a_rows);
    aq_problem_align_free(owned);
    if (st != AQ_OK) {
        aq_layer_result_free(out);
        if (err && !strstr(err->msg, c.name)) aq_error_prefix(err, "layer %s", c.name);
    }
    return st;
}

void aq_layer_result_free(aq_layer_result *r)
{
    if (!r) return;
    free(r->codes);
    free(r->w_scale);
    r->codes = NULL;
    r->w_scale = r->w_zero = r->bias = NULL;
}

void aq_layer_result_dequant(const aq_layer_result *r, float *out)
{
    if (r->group > 0) {
        for (size_t i = 0; i < r->d_out; i++) aq_group_dequant_row(r, i, out + i * r->d_in);
        return;
    }
    for (size_t i = 0; i < r->d_out; i++)
        for (size_t j = 0; j < r->d_in; j++)
            out[i * r->d_in + j] = r->w_scale[i] * ((float)r->codes[i * r->d_in + j] - r->w_zero[i]);
}
