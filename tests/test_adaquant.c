/* test_adaquant.c — the AdaQuant layer optimizer against independent float64
 * references computed here from the rows:
 *  - STE/LSQ gradients (weights, scales, zeros, bias, activation scale/zero) vs
 *    central finite differences of an explicit surrogate that states the STE
 *    semantics: at the base point t = V/s + z, the rounding offset
 *    delta = rint(t) - t and the clamp decision (rint(t) outside [0, qmax])
 *    are frozen, i.e. w^ = s (V/s + z + delta - z) for in-range elements and
 *    w^ = s (u_clamp - z) for clamped ones (codes exactly at 0 or qmax count
 *    as in range); the same for activations;
 *  - Gram-form loss == direct row loss (1e-6 relative), Gram accumulation vs a
 *    naive float64 loop;
 *  - w8a16 loss < 1e-4, final <= init on every layer, AdaQuant < GPTQ at w4,
 *    statistics feed == rows feed, symmetric grids, determinism (bytes),
 *    including misaligned input arrays == aligned ones;
 *  - the outer activation step vs a float64 Adam (stored float32 values);
 *  - bad problems give errors naming the layer. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <blis.h>

#include "../src/adaquant/adaquant.h"
#include "../src/adaquant/layer_state.h"
#include "fdcheck.h"
#include "testutil.h"

static uint64_t rs = 12345;
static double urand(void) { return aq_test_urand(&rs); }
static double grand(void) { return aq_test_nrand(&rs); }

typedef struct layer {
    size_t d_out, d_in, n;
    float *w, *b, *x, *xin;
} layer;

static layer make_layer(size_t d_out, size_t d_in, size_t n, int with_xin)
{
    layer L = {d_out, d_in, n, malloc(d_out * d_in * 4), malloc(d_out * 4), malloc(n * d_in * 4), NULL};
    for (size_t i = 0; i < d_out * d_in; i++) L.w[i] = (float)(grand() / sqrt((double)d_in));
    for (size_t i = 0; i < d_out; i++) L.b[i] = (float)(0.2 * grand());
    for (size_t i = 0; i < n * d_in; i++) {
        double t = grand() / sqrt(0.3 + urand()); /* heavier tails */
        L.x[i] = (float)(t * ((i % d_in) % 7 == 0 ? 4 : 1) + ((i % d_in) % 3 == 0 ? 0.5 : 0));
    }
    if (with_xin) {
        L.xin = malloc(n * d_in * 4);
        for (size_t i = 0; i < n * d_in; i++) L.xin[i] = L.x[i] + (float)(0.05 * grand());
    }
    return L;
}

static void free_layer(layer *L)
{
    free(L->w);
    free(L->b);
    free(L->x);
    free(L->xin);
}

/* ---- direct float64 reference of the surrogate loss ---- */
typedef struct ref {
    const layer *L;
    const aq_ls *S;  /* for qmax, sym */
    const double *V, *s, *z, *bq, *dw; /* dw: frozen weight rounding offsets */
    double as, az, qa;                  /* activation params, qmax (0 = a16) */
    const double *dx;                   /* frozen activation offsets [n*d_in] */
    const double *cw, *cx;              /* frozen clamp: -1 = in range, else the clamped code */
} ref;

/* Frozen-clamp surrogate of clamp(t): the base point decided in or out. */
static double fz(double t, double frozen) { return frozen < 0 ? t : frozen; }

/* -1 if rint(t) is in [0, hi], else the clamped code. */
static double clamp_state(double rt, double hi) { return rt < 0 ? 0 : rt > hi ? hi : -1; }

static double ref_loss(const ref *R)
{
    const layer *L = R->L;
    size_t d_in = L->d_in, d_out = L->d_out;
    double num = 0, den = 0;
    double *wh = malloc(d_out * d_in * sizeof *wh), *xq = malloc(d_in * sizeof *xq);
    for (size_t r = 0; r < d_out; r++)
        for (size_t c = 0; c < d_in; c++) {
            size_t i = r * d_in + c;
            wh[i] = R->s[r] * (fz(R->V[i] / R->s[r] + R->z[r] + R->dw[i], R->cw[i]) - R->z[r]);
        }
    for (size_t k = 0; k < L->n; k++) {
        const float *x = L->x + k * d_in, *xi = (L->xin ? L->xin : L->x) + k * d_in;
        for (size_t c = 0; c < d_in; c++)
            xq[c] = R->qa > 0 ? R->as * (fz(xi[c] / R->as + R->dx[k * d_in + c] + R->az, R->cx[k * d_in + c]) - R->az)
                              : xi[c];
        for (size_t r = 0; r < d_out; r++) {
            double y = L->b[r], yh = R->bq[r];
            for (size_t c = 0; c < d_in; c++) {
                y += (double)L->w[r * d_in + c] * x[c];
                yh += wh[r * d_in + c] * xq[c];
            }
            num += (y - yh) * (y - yh);
            den += y * y;
        }
    }
    free(wh);
    free(xq);
    return num / den;
}

/* The surrogate loss for the finite-difference check (fdcheck.h). */
static double fd_ref(void *ctx) { return ref_loss(ctx); }
static double fd_worst; /* largest |analytic - fd| / tolerance, reported */

static void fd_expect(const aq_fd_fun *fn, double *p, double g, const aq_fd_opts *o, const char *what)
{
    aq_fd_probe pr;
    if (aq_fd_check(fn, p, g, o, &pr) != AQ_FD_PASS) {
        aq_fd_print(what, &pr);
        CHECK_MSG(0, "%s: analytic %g, finite difference %g", what, g, pr.fd);
    }
    fd_worst = fmax(fd_worst, fabs(pr.g - pr.fd) / pr.tol);
}

static void test_gradients(int a_bits, int sym, int with_xin)
{
    layer L = make_layer(6, 9, 300, with_xin);
    size_t d_out = L.d_out, d_in = L.d_in, nw = d_out * d_in, n = L.n;
    aq_error err = {0};
    aq_ls S;
    aq_actq q = {16, 1, 0, 0};
    if (a_bits < 16) aq_actq_fit(&q, a_bits, L.xin ? L.xin : L.x, n, d_in);
    q.scale *= 0.8; /* force some clamping */
    q.scale = (float)q.scale;
    CHECK_OK(aq_ls_new(&S, d_out, d_in, 3, sym, L.w, L.b, &err), &err);
    double *A, *B, *C;
    CHECK_OK(aq_grams_from_rows(L.x, L.xin, n, d_in, &q, &A, &B, &C, &err), &err);
    CHECK_OK(aq_ls_set_grams(&S, A, B, C, &err), &err);
    double *V = malloc(nw * 8), *dw = malloc(nw * 8), *dx = calloc(n * d_in, 8);
    double *cw = malloc(nw * 8), *cx = calloc(n * d_in, 8);
    for (size_t r = 0; r < d_out; r++) {
        S.s[r] = 0.15 + 0.05 * urand();
        S.z[r] = sym ? S.zsym : 3.3 + urand();
        S.bq[r] = L.b[r] + 0.05 * grand();
    }
    int clamped = 0;
    for (size_t i = 0; i < nw; i++) {
        S.V[i] = (float)(1.6 * L.w[i]);
        V[i] = S.V[i];
        double t = V[i] / S.s[i / d_in] + S.z[i / d_in];
        dw[i] = nearbyint(t) - t;
        cw[i] = clamp_state(nearbyint(t), S.qmax);
        clamped += cw[i] >= 0;
    }
    CHECK_MSG(clamped > 0 && clamped < (int)nw, "want some clamped weights, got %d of %zu", clamped, nw);
    if (a_bits < 16)
        for (size_t k = 0; k < n * d_in; k++) {
            float xv = (L.xin ? L.xin : L.x)[k];
            double t = (double)xv / q.scale;
            dx[k] = (double)nearbyintf(xv / (float)q.scale) - t;
            cx[k] = clamp_state((double)nearbyintf(xv / (float)q.scale) + q.zero, q.qmax);
        }
    double *G = malloc(d_out * S.D * 8), *gs = malloc(d_out * 8), *gz = malloc(d_out * 8), *gb = malloc(d_out * 8);
    float *gV = malloc(nw * 4);
    aq_ls_grad(&S, 0, G, gV, gs, gz, gb);
    ref R = {&L, &S, V, S.s, S.z, S.bq, dw, q.scale, q.zero, a_bits < 16 ? q.qmax : 0, dx, cw, cx};
    /* the Gram loss equals the direct loss at the base point */
    double l0 = ref_loss(&R);
    /* Gram form vs direct rows, both float64: the Gram form's cancellation
     * (~1e-16 / loss relative) for a loss of ~1e-3..1e-1, and the float32
     * scales rounding into it; 1e-7 is ~100 times the former */
    CHECK_CLOSE(aq_ls_loss(&S, NULL) / l0, 1.0, 1e-7);
    /* The surrogate freezes every rounding and clamp decision at the base
     * point (dw, cw, dx, cx): it has no integer decision left, so no stencil
     * can straddle one (codes NULL). It is quadratic in each parameter (w^ is
     * affine in V, s, z; the loss is a sum of squares over a fixed
     * denominator), so a central difference has no truncation error: what
     * remains is the float64 rounding of the loss, measured here (fourth
     * differences of a quadratic are rounding only), and the analytic side's:
     * gV is stored in float32 (6e-8 relative), all come from the Gram form
     * (float64 through BLAS, with cancellation in sum (y - yh)^2). rel 1e-4
     * bounds both with a wide margin: the worst entry uses 3% of its
     * tolerance with every kernel (printed). abs 1e-9 is for gradients that
     * vanish: six times the float64 rounding of a loss below 1 divided by
     * h = 1e-6 (2.2e-16 / 1e-6 / sqrt 2 = 1.6e-10). */
    aq_fd_fun fn = {fd_ref, NULL, &R};
    double *np_[4] = {&V[0], &V[nw / 2], &S.s[0], &S.bq[d_out - 1]};
    double sigma = aq_fd_noise(&fn, np_, 4, 1e-6, NULL);
    aq_fd_opts o = {2, 1e-6, 0, sigma, 1e-4, 1e-9};
    char what[64];
    for (size_t i = 0; i < nw; i += 5) {
        snprintf(what, sizeof what, "dV[%zu] (a%d sym %d)", i, a_bits, sym);
        fd_expect(&fn, &V[i], gV[i], &o, what);
    }
    for (size_t r = 0; r < d_out; r++) {
        double *par[3] = {S.s, S.z, S.bq}, *ana[3] = {gs, gz, gb};
        const char *nm[3] = {"ds", "dz", "db"};
        for (int k = 0; k < 3; k++) {
            if (k == 1 && sym) {
                CHECK(gz[r] == 0);
                continue;
            }
            /* the frozen offsets stay: they are part of the surrogate */
            snprintf(what, sizeof what, "%s[%zu] (a%d sym %d)", nm[k], r, a_bits, sym);
            fd_expect(&fn, &par[k][r], ana[k][r], &o, what);
        }
    }
    if (a_bits < 16) {
        double ga, gza;
        aq_ls_codes_from_v(&S);
        CHECK_OK(aq_actq_grad(&S, &q, L.x, L.xin, n, &ga, &gza, &err), &err);
        /* the activation surrogate is evaluated at the grid-centre weights */
        double *Vc = malloc(nw * 8), *dwc = calloc(nw, 8), *cwc = malloc(nw * 8);
        for (size_t i = 0; i < nw; i++) {
            cwc[i] = (double)S.u[i]; /* weights frozen at their codes */
            Vc[i] = S.s[i / d_in] * ((double)S.u[i] - S.z[i / d_in]);
        }
        ref Rc = R;
        Rc.V = Vc;
        Rc.dw = dwc;
        Rc.cw = cwc;
        /* the same surrogate argument (affine in a_scale and a_zero, no
         * decision left); ga and gza are float64 (aq_actq_grad, BLAS sums of
         * 300 x 9 inputs): rel 1e-4 as above, abs 1e-7 for the entries the
         * clamped inputs nearly cancel */
        aq_fd_fun fc = {fd_ref, NULL, &Rc};
        double *npc[2] = {&Rc.as, &Rc.az};
        double sc = aq_fd_noise(&fc, npc, 2, 1e-6 * q.scale, NULL);
        aq_fd_opts oa = {2, 1e-6 * q.scale, 0, sc, 1e-4, 1e-7}, oz = {2, 1e-6, 0, sc, 1e-4, 1e-7};
        fd_expect(&fc, &Rc.as, ga, &oa, "d a_scale");
        fd_expect(&fc, &Rc.az, gza, &oz, "d a_zero");
        free(Vc);
        free(dwc);
        free(cwc);
    }
    free(V);
    free(dw);
    free(dx);
    free(cw);
    free(cx);
    free(G);
    free(gs);
    free(gz);
    free(gb);
    free(gV);
    aq_ls_free(&S);
    free_layer(&L);
}

/* The fused float32 Adam step computes the same gradients as aq_ls_grad. */
static void test_fused_step(int sym, int with_xin)
{
    layer L = make_layer(9, 17, 200, with_xin);
    size_t nw = L.d_out * L.d_in;
    aq_error err = {0};
    aq_ls S1, S2;
    aq_actq q;
    aq_actq_fit(&q, 8, L.x, L.n, L.d_in);
    double *A, *B, *C;
    CHECK_OK(aq_ls_new(&S1, L.d_out, L.d_in, 4, sym, L.w, L.b, &err), &err);
    CHECK_OK(aq_ls_new(&S2, L.d_out, L.d_in, 4, sym, L.w, L.b, &err), &err);
    CHECK_OK(aq_grams_from_rows(L.x, L.xin, L.n, L.d_in, &q, &A, &B, &C, &err), &err);
    CHECK_OK(aq_ls_set_grams(&S1, A, B, C, &err), &err);
    CHECK_OK(aq_grams_from_rows(L.x, L.xin, L.n, L.d_in, &q, &A, &B, &C, &err), &err);
    CHECK_OK(aq_ls_set_grams(&S2, A, B, C, &err), &err);
    for (size_t r = 0; r < L.d_out; r++) {
        S1.s[r] = S2.s[r] = 0.1 + 0.02 * urand();
        S1.z[r] = S2.z[r] = sym ? S1.zsym : 6 + urand();
        S1.bq[r] = S2.bq[r] = L.b[r];
    }
    for (size_t i = 0; i < nw; i++) S1.V[i] = S2.V[i] = 1.3f * L.w[i];
    aq_adam_cfg cfg = {.f32 = 1, .lr_w = 0.02, .lr_s = 0.002, .lr_z = 0.02, .lr_b = 0.01};
    aq_adam ad;
    CHECK_OK(aq_adam_new(&ad, &S1, &cfg, 1, &err), &err);
    aq_adam_run(&S1, &ad, &cfg, 1); /* leaves its gradients in ad */
    double *G = malloc(L.d_out * S2.D * 8), *gs = malloc(L.d_out * 8), *gz = malloc(L.d_out * 8);
    double *gb = malloc(L.d_out * 8);
    float *gV = malloc(nw * 4);
    aq_ls_grad(&S2, 1, G, gV, gs, gz, gb);
    CHECK(!memcmp(gV, ad.gV, nw * 4));
    for (size_t r = 0; r < L.d_out; r++) {
        /* the fused step accumulates the scale gradient in float32 (unit
         * roundoff 6e-8 over d_in = 17 terms and the Gram products); 1e-5
         * relative is ~10 times that bound; 1e-12 for a vanishing entry */
        CHECK_MSG(fabs(gs[r] - ad.gs[r]) <= 1e-5 * fabs(gs[r]) + 1e-12, "gs %g vs %g", gs[r], ad.gs[r]);
        /* the same float64 sum, possibly regrouped: a few double ulps */
        CHECK(gz[r] == ad.gz[r] || fabs(gz[r] - ad.gz[r]) <= 1e-12 * fabs(gz[r]));
        CHECK(gb[r] == ad.gb[r]);
    }
    free(G);
    free(gs);
    free(gz);
    free(gb);
    free(gV);
    aq_adam_free(&ad);
    aq_ls_free(&S1);
    aq_ls_free(&S2);
    free_layer(&L);
}

/* Gram accumulation vs a naive float64 loop, and the public Gram loss vs rows. */
static void test_gram_loss(void)
{
    layer L = make_layer(7, 13, 1000, 0);
    size_t d = L.d_in, D = d + 1;
    double *g = calloc(D * D, 8), *gref = calloc(D * D, 8);
    aq_error err = {0};
    CHECK_OK(aq_gram_accumulate(g, L.x, 600, d, &err), &err);
    CHECK_OK(aq_gram_accumulate(g, L.x + 600 * d, 400, d, &err), &err); /* blocked twice */
    for (size_t k = 0; k < L.n; k++)
        for (size_t i = 0; i < D; i++)
            for (size_t j = 0; j < D; j++) {
                double xi = i < d ? L.x[k * d + i] : 1.0, xj = j < d ? L.x[k * d + j] : 1.0;
                gref[i * D + j] += xi * xj;
            }
    double md = 0, mr = 0;
    for (size_t i = 0; i < D * D; i++) {
        md = fmax(md, fabs(g[i] - gref[i]));
        mr = fmax(mr, fabs(gref[i]));
    }
    /* float64 sums of 1000 products of float32 values (exact in double):
     * <= 1000 * 1.1e-16 = 1.1e-13 of the largest entry in any order */
    CHECK_MSG(md <= 1e-13 * mr, "Gram max error %g of %g", md, mr);
    CHECK(gref[D * D - 1] == 1000.0);
    float *wq = malloc(L.d_out * d * 4), *bq = malloc(L.d_out * 4);
    for (size_t i = 0; i < L.d_out * d; i++) wq[i] = L.w[i] + (float)(0.01 * grand());
    for (size_t i = 0; i < L.d_out; i++) bq[i] = L.b[i] + 0.01f;
    double num = 0, den = 0;
    for (size_t k = 0; k < L.n; k++)
        for (size_t r = 0; r < L.d_out; r++) {
            double y = L.b[r], yh = bq[r];
            for (size_t c = 0; c < d; c++) {
                y += (double)L.w[r * d + c] * L.x[k * d + c];
                yh += (double)wq[r * d + c] * L.x[k * d + c];
            }
            num += (y - yh) * (y - yh);
            den += y * y;
        }
    double lg = aq_gram_loss(g, NULL, NULL, L.d_out, d, L.w, L.b, wq, bq);
    /* the Gram form's cancellation: ~1e-16 / loss relative for a loss ~1e-4
     * here (weights perturbed by 0.01), so ~1e-12; 1e-6 is a wide margin */
    CHECK_MSG(fabs(lg - num / den) <= 1e-6 * num / den, "Gram loss %.12g vs rows %.12g", lg, num / den);
    free(g);
    free(gref);
    free(wq);
    free(bq);
    free_layer(&L);
}

/* Independent check of a result: dequantise and compute the loss from rows. */
static double result_loss_rows(const layer *L, const aq_layer_result *r)
{
    size_t d = L->d_in;
    float *wq = malloc(L->d_out * d * 4);
    aq_layer_result_dequant(r, wq);
    double num = 0, den = 0;
    float *xq = malloc(d * 4);
    for (size_t k = 0; k < L->n; k++) {
        const float *xi = (L->xin ? L->xin : L->x) + k * d;
        memcpy(xq, xi, d * 4);
        if (r->a_bits < 16) {
            float qmax = (float)((1 << r->a_bits) - 1);
            for (size_t c = 0; c < d; c++) {
                float t = nearbyintf(xq[c] / r->a_scale) + r->a_zero;
                t = t < 0 ? 0 : t > qmax ? qmax : t;
                xq[c] = r->a_scale * (t - r->a_zero);
            }
        }
        for (size_t o = 0; o < L->d_out; o++) {
            double y = L->b[o], yh = r->bias[o];
            for (size_t c = 0; c < d; c++) {
                y += (double)L->w[o * d + c] * L->x[k * d + c];
                yh += (double)wq[o * d + c] * xq[c];
            }
            num += (y - yh) * (y - yh);
            den += y * y;
        }
    }
    free(wq);
    free(xq);
    return num / den;
}

static void test_layers(void)
{
    static const char *opts[] = {"w8a16", "w4a16", "w3a16", "w2a16", "w4a8", "w6a4", "w4a16s", "w3a8s"};
    for (int t = 0; t < 3; t++) {
        layer L = make_layer(t == 2 ? 40 : 16, t == 1 ? 48 : 24, t == 2 ? 20 : 900, t == 1); /* t 2: rows mode */
        for (size_t k = 0; k < sizeof opts / sizeof *opts; k++) {
            aq_layer_opts o;
            aq_layer_opts_default(&o);
            aq_error err = {0};
            CHECK_OK(aq_layer_opts_parse(opts[k], &o, &err), &err);
            o.iters = 30;
            o.outer_iters = 3;
            aq_layer_problem p = {.name = "t", .d_out = L.d_out, .d_in = L.d_in, .weight = L.w, .bias = L.b,
                                  .n_rows = L.n, .x = L.x, .x_in = L.xin};
            aq_layer_result r;
            if (aq_layer_run(&p, &o, &r, &err) != AQ_OK) {
                CHECK_MSG(0, "%s: %s", opts[k], err.msg);
                continue;
            }
            double lr = result_loss_rows(&L, &r);
            /* reported (float64 Gram form, cancellation ~1e-16 / loss) vs direct
             * rows: 1e-5 relative holds for losses above ~1e-10 */
            CHECK_MSG(fabs(lr - r.loss_final) <= 1e-5 * lr, "%s layer %d: rows %g vs reported %g", opts[k], t, lr,
                      r.loss_final);
            CHECK_MSG(r.loss_final <= r.loss_init, "%s: final %g > init %g", opts[k], r.loss_final, r.loss_init);
            /* w8: a step of range/255 per weight, error variance step^2/12 of
             * weights ~1/sqrt(d_in): relative output error ~(1/255)^2 = 1.5e-5 before
             * optimisation; 1e-4 bounds a working 8-bit quantizer */
            if (!strcmp(opts[k], "w8a16") && !L.xin) CHECK_MSG(r.loss_final < 1e-4, "w8a16 loss %g", r.loss_final);
            if (t == 0 && !strcmp(opts[k], "w4a16"))
                CHECK_MSG(r.loss_final < r.loss_gptq, "w4a16: aq %g not below gptq %g", r.loss_final, r.loss_gptq);
            CHECK(r.mode_used == (L.n > L.d_in ? AQ_MODE_GRAM : AQ_MODE_ROWS));
            for (size_t i = 0; i < L.d_out * L.d_in; i++) CHECK(r.codes[i] < (1u << r.w_bits));
            if (r.symmetric)
                for (size_t i = 0; i < L.d_out; i++) CHECK(r.w_zero[i] == (float)(1 << (r.w_bits - 1)));
            aq_layer_result_free(&r);
        }
        free_layer(&L);
    }
}

static int same_result(const aq_layer_result *a, const aq_layer_result *b)
{
    size_t no = a->d_out, n = no * a->d_in;
    return a->d_out == b->d_out && !memcmp(a->codes, b->codes, n) && !memcmp(a->w_scale, b->w_scale, no * 4) &&
           !memcmp(a->w_zero, b->w_zero, no * 4) && !memcmp(a->bias, b->bias, no * 4) &&
           !memcmp(&a->a_scale, &b->a_scale, 4) && !memcmp(&a->a_zero, &b->a_zero, 4) &&
           !memcmp(&a->loss_final, &b->loss_final, 8);
}

/* Same seed -> same bytes; the statistics feed gives the rows feed's answer. */
static void test_determinism_and_stats(void)
{
    layer L = make_layer(12, 20, 500, 0);
    aq_layer_opts o;
    aq_layer_opts_default(&o);
    o.iters = 40;
    aq_error err = {0};
    aq_layer_problem p = {.name = "det", .d_out = L.d_out, .d_in = L.d_in, .weight = L.w, .bias = L.b,
                          .n_rows = L.n, .x = L.x};
    aq_layer_result r1, r2, r3;
    CHECK_OK(aq_layer_run(&p, &o, &r1, &err), &err);
    /* the library has no threads of its own; BLIS (OpenMP build) may be
     * threaded by the caller: it does not split the k loop, so the bytes
     * must not change with the thread count */
    bli_thread_set_num_threads(2);
    CHECK_OK(aq_layer_run(&p, &o, &r2, &err), &err);
    bli_thread_set_num_threads(1);
    CHECK_MSG(same_result(&r1, &r2), "1 vs 2 BLIS threads: %.17g vs %.17g", r1.loss_final, r2.loss_final);
    CHECK(r1.seed == aq_layer_seed("det", "w4a16", 0));
    CHECK(aq_layer_seed("det", "w4a16", 0) != aq_layer_seed("det", "w4a16", 1));
    CHECK(aq_layer_seed("det", "w4a16", 0) != aq_layer_seed("det", "w4a8", 0));
    size_t D = L.d_in + 1;
    double *g = calloc(D * D, 8);
    CHECK_OK(aq_gram_accumulate(g, L.x, L.n, L.d_in, &err), &err);
    aq_layer_problem ps = {.name = "det", .d_out = L.d_out, .d_in = L.d_in, .weight = L.w, .bias = L.b,
                           .gram_a = g, .n_tokens = L.n};
    CHECK_OK(aq_layer_run(&ps, &o, &r3, &err), &err);
    CHECK_MSG(same_result(&r1, &r3), "statistics feed differs: %g vs %g", r3.loss_final, r1.loss_final);
    /* a8 with the statistics feed: B, C (and A) come from the sample rows; with
     * the sample = all rows it must reproduce the rows feed */
    aq_layer_result r4, r5;
    o.a_bits = 8;
    o.outer_iters = 3;
    ps.n_sample = L.n;
    ps.sample_x = L.x;
    CHECK_OK(aq_layer_run(&p, &o, &r4, &err), &err);
    CHECK_OK(aq_layer_run(&ps, &o, &r5, &err), &err);
    CHECK_MSG(same_result(&r4, &r5), "a8 statistics feed differs: %g vs %g", r5.loss_final, r4.loss_final);
    CHECK(r4.a_scale > 0 && r4.a_bits == 8);
    aq_layer_result_free(&r4);
    aq_layer_result_free(&r5);
    aq_layer_result_free(&r1);
    aq_layer_result_free(&r2);
    aq_layer_result_free(&r3);
    free(g);
    free_layer(&L);
}

/* The outer activation step against a float64 Adam written here: the stored
 * (float32) scale/zero must be the float32 rounding of the reference. This
 * is the regression test of the a8 build-dependence: the old code kept them
 * in doubles rounded by `x = (float)x` statements that GCC 12.2 -O2 SLP
 * vectorisation deleted, leaving unrounded values (!= the float reference). */
static void test_actq_step(void)
{
    aq_actq q = {8, 0.0371f, 131.0f, 255};
    aq_actq_adam m = {0, 0, 0, 0};
    double s = q.scale, z = q.zero, ms = 0, vs = 0, mz = 0, vz = 0, lr = 0.05;
    const double gsv[4] = {0.37, -1.25, 0.0, 2e-3}, gzv[4] = {-3e-4, 0.0, 0.0, 7e-5};
    for (int t = 1; t <= 4; t++) {
        double gs = gsv[t - 1], gz = gzv[t - 1], g = gs * s;
        ms = 0.9 * ms + 0.1 * g;
        vs = 0.999 * vs + 0.001 * g * g;
        mz = 0.9 * mz + 0.1 * gz;
        vz = 0.999 * vz + 0.001 * gz * gz;
        double ds = vs > 0 ? (ms / (1 - pow(0.9, t))) / sqrt(vs / (1 - pow(0.999, t))) : 0;
        double dz = vz > 0 ? (mz / (1 - pow(0.9, t))) / sqrt(vz / (1 - pow(0.999, t))) : 0;
        float want_s = (float)(s * exp(-lr * ds)), want_z = (float)(z - lr * 255 * dz);
        aq_actq_step(&q, &m, gs, gz, lr, t);
        CHECK_MSG(q.scale == want_s && q.zero == want_z, "step %d: (%a, %a) vs float64 reference (%a, %a)", t,
                  (double)q.scale, (double)q.zero, (double)want_s, (double)want_z);
        s = want_s;
        z = want_z;
    }
    CHECK(q.scale != 0.0371f && q.zero != 131.0f); /* it did move */
    aq_actq a = q, b = q;
    CHECK(aq_actq_same(&a, &b));
    b.zero += 1;
    CHECK(!aq_actq_same(&a, &b));
}

/* aq_nearbyintf (the inline rounding of the activation fake-quant) against
 * libm's nearbyintf, bit for bit (the sign of zero included): every float
 * from -2^13 - 1 to 2^13 + 1 in steps of 1/2^10 and its two neighbours (all
 * the ties and the values next to them at those magnitudes), the region
 * around 2^22..2^24 where the trick's guard switches, the specials, and
 * 2^20 random bit patterns over the whole range. */
static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

static void test_nearbyintf(void)
{
    long bad = 0;
    float worst = 0;
    for (long k = -(8193L << 10); k <= (8193L << 10); k++) {
        float v = (float)k / 1024.0f, c[3] = {nextafterf(v, -INFINITY), v, nextafterf(v, INFINITY)};
        for (int j = 0; j < 3; j++)
            if (!same_bits(aq_nearbyintf(c[j]), nearbyintf(c[j]))) bad++, worst = c[j];
    }
    const float edge[] = {4194303.5f, 4194304.5f, 8388607.5f, 8388608.f, 8388609.f, 16777215.f, 16777217.f,
                          0.5f, 1.5f, 2.5f, 0.49999997f, -0.5f, -0.49999997f, 0.f, -0.f, 1e-45f, -1e-45f,
                          INFINITY, -INFINITY, FLT_MAX, -FLT_MAX};
    for (size_t j = 0; j < sizeof edge / sizeof *edge; j++)
        for (int sgn = 0; sgn < 2; sgn++) {
            float v = sgn ? -edge[j] : edge[j];
            if (!same_bits(aq_nearbyintf(v), nearbyintf(v))) bad++, worst = v;
        }
    CHECK(isnan(aq_nearbyintf(NAN)));
    uint64_t st = 12345;
    for (int i = 0; i < (1 << 20); i++) {
        uint32_t u = (uint32_t)aq_test_u64(&st);
        float v;
        memcpy(&v, &u, sizeof v);
        if (isnan(v)) continue;
        if (!same_bits(aq_nearbyintf(v), nearbyintf(v))) bad++, worst = v;
    }
    CHECK_MSG(bad == 0, "aq_nearbyintf differs from nearbyintf on %ld values (e.g. %a)", bad, (double)worst);
}

/* A copy of n bytes of src at byte offset off (1..7) into a fresh buffer; *base keeps the allocation. */
static const void *shifted(const void *src, size_t n, size_t off, void **base)
{
    unsigned char *b = malloc(n + 16);
    memcpy(b + off, src, n);
    *base = b;
    return b + off;
}

/* aq_layer_run on misaligned input arrays (tensors inside a payload) gives the
 * bytes of the aligned run; under UBSan any misaligned typed load would abort.
 * Rows and statistics feeds, a16 (x_in = x aliasing kept) and a8. */
static void test_misaligned(void)
{
    layer L = make_layer(7, 11, 120, 1);
    size_t D = L.d_in + 1, nx = L.n * L.d_in * 4;
    aq_error err = {0};
    aq_layer_opts o;
    aq_layer_opts_default(&o);
    o.iters = 20;
    o.outer_iters = 3;
    o.starts = 2;
    double *g = calloc(D * D, 8);
    CHECK_OK(aq_gram_accumulate(g, L.x, L.n, L.d_in, &err), &err);
    void *bw, *bb, *bx, *bxi, *bg, *bs;
    const float *w1 = shifted(L.w, L.d_out * L.d_in * 4, 1, &bw), *b1 = shifted(L.b, L.d_out * 4, 2, &bb);
    const float *x1 = shifted(L.x, nx, 3, &bx), *xi1 = shifted(L.xin, nx, 1, &bxi);
    const double *g1 = shifted(g, D * D * 8, 4, &bg);
    const float *s1 = shifted(L.x, nx, 2, &bs);
    for (int a_bits = 16; a_bits >= 8; a_bits -= 8) {
        o.a_bits = a_bits;
        for (int seq = 0; seq < 2; seq++) {
            aq_layer_problem p = {.name = "mis", .d_out = L.d_out, .d_in = L.d_in, .weight = L.w, .bias = L.b,
                                  .n_rows = L.n, .x = L.x, .x_in = seq ? L.xin : L.x};
            aq_layer_problem pm = {.name = "mis", .d_out = L.d_out, .d_in = L.d_in, .weight = w1, .bias = b1,
                                   .n_rows = L.n, .x = x1, .x_in = seq ? xi1 : x1};
            aq_layer_result r1, r2;
            CHECK_OK(aq_layer_run(&p, &o, &r1, &err), &err);
            CHECK_OK(aq_layer_run(&pm, &o, &r2, &err), &err);
            CHECK_MSG(same_result(&r1, &r2), "a%d seq %d rows: misaligned %.17g vs aligned %.17g", a_bits, seq,
                      r2.loss_final, r1.loss_final);
            aq_layer_result_free(&r1);
            aq_layer_result_free(&r2);
        }
        aq_layer_problem ps = {.name = "mis", .d_out = L.d_out, .d_in = L.d_in, .weight = L.w, .bias = L.b,
                               .gram_a = g, .n_tokens = L.n, .n_sample = L.n, .sample_x = L.x};
        aq_layer_problem pm = ps;
        pm.weight = w1;
        pm.bias = b1;
        pm.gram_a = g1;
        pm.gram_b = g1; /* explicit parallel-mode Grams, misaligned */
        pm.sample_x = s1;
        aq_layer_result r1, r2;
        CHECK_OK(aq_layer_run(&ps, &o, &r1, &err), &err);
        CHECK_OK(aq_layer_run(&pm, &o, &r2, &err), &err);
        CHECK_MSG(same_result(&r1, &r2), "a%d statistics: misaligned %.17g vs aligned %.17g", a_bits,
                  r2.loss_final, r1.loss_final);
        aq_layer_result_free(&r1);
        aq_layer_result_free(&r2);
    }
    /* Gram accumulation from misaligned rows: the same bytes; a misaligned Gram is refused */
    double *g2 = calloc(D * D, 8);
    CHECK_OK(aq_gram_accumulate(g2, x1, L.n, L.d_in, &err), &err);
    CHECK(memcmp(g, g2, D * D * 8) == 0);
    double *c1 = calloc(D * D, 8), *c2 = calloc(D * D, 8);
    CHECK_OK(aq_gram_accumulate_cross(c1, L.x, L.xin, L.n, L.d_in, &err), &err);
    CHECK_OK(aq_gram_accumulate_cross(c2, x1, xi1, L.n, L.d_in, &err), &err);
    CHECK(memcmp(c1, c2, D * D * 8) == 0);
    unsigned char *gb = calloc(D * D * 8 + 16, 1);
    CHECK(aq_gram_accumulate((double *)(void *)(gb + 4), L.x, L.n, L.d_in, &err) == AQ_ERR_ARG &&
          strstr(err.msg, "aligned"));
    free(gb);
    free(c1);
    free(c2);
    free(g2);
    free(bw);
    free(bb);
    free(bx);
    free(bxi);
    free(bg);
    free(bs);
    free(g);
    free_layer(&L);
}

static void expect_error(const aq_layer_problem *p, const aq_layer_opts *o, aq_status code, const char *word)
{
    aq_error err = {0};
    aq_layer_result r;
    aq_status st = aq_layer_run(p, o, &r, &err);
    CHECK_MSG(st == code, "expected %s, got %s (%s)", aq_status_name(code), aq_status_name(st), err.msg);
    CHECK_MSG(strstr(err.msg, word) != NULL, "message '%s' lacks '%s'", err.msg, word);
    CHECK_MSG(strstr(err.msg, "bad.layer") != NULL, "message '%s' does not name the layer", err.msg);
    CHECK(r.codes == NULL && r.w_scale == NULL);
}

static void test_errors(void)
{
    layer L = make_layer(4, 6, 50, 0);
    aq_layer_opts o;
    aq_layer_opts_default(&o);
    o.iters = 5;
    aq_layer_problem p = {.name = "bad.layer", .d_out = 4, .d_in = 6, .weight = L.w, .bias = L.b, .n_rows = 50,
                          .x = L.x};
    aq_layer_problem q = p;
    q.n_rows = 0;
    expect_error(&q, &o, AQ_ERR_ARG, "N = 0");
    q = p;
    q.x = NULL;
    expect_error(&q, &o, AQ_ERR_ARG, "neither");
    float keep = L.x[17];
    L.x[17] = NAN;
    expect_error(&p, &o, AQ_ERR_NUMERIC, "inputs");
    L.x[17] = INFINITY;
    expect_error(&p, &o, AQ_ERR_NUMERIC, "non-finite");
    L.x[17] = keep;
    L.w[3] = NAN;
    expect_error(&p, &o, AQ_ERR_NUMERIC, "weight");
    L.w[3] = 0.1f;
    float *zx = calloc(50 * 6, 4), *zw = calloc(24, 4);
    q = p;
    q.x = zx;
    q.bias = NULL;
    expect_error(&q, &o, AQ_ERR_NUMERIC, "all zero");
    q = p;
    q.weight = zw;
    q.bias = NULL;
    expect_error(&q, &o, AQ_ERR_NUMERIC, "zero");
    q = p;
    q.d_out = 0;
    expect_error(&q, &o, AQ_ERR_SHAPE, "empty");
    double g[49] = {0};
    q = p;
    q.x = NULL;
    q.gram_a = g;
    q.n_tokens = 10;
    o.a_bits = 8;
    expect_error(&q, &o, AQ_ERR_ARG, "sample");
    o.a_bits = 16;
    g[8] = NAN;
    expect_error(&q, &o, AQ_ERR_NUMERIC, "Gram A");
    aq_error err = {0};
    CHECK(aq_layer_opts_parse("w5a8", &o, &err) == AQ_ERR_ARG && strstr(err.msg, "w5a8"));
    CHECK(aq_layer_opts_parse("w4a7", &o, &err) == AQ_ERR_ARG);
    CHECK(aq_layer_opts_parse("w4a8x", &o, &err) == AQ_ERR_ARG);
    CHECK(aq_layer_opts_parse("w4a8s", &o, &err) == AQ_OK && o.symmetric == 1 && o.a_bits == 8);
    /* constant input channels are legal */
    for (size_t k = 0; k < 50; k++) L.x[k * 6 + 2] = 1.5f;
    aq_layer_result r;
    aq_layer_opts_default(&o);
    o.iters = 5;
    CHECK_OK(aq_layer_run(&p, &o, &r, &err), &err);
    aq_layer_result_free(&r);
    free(zx);
    free(zw);
    free_layer(&L);
}

int main(void)
{
    test_gram_loss();
    test_fused_step(0, 0);
    test_fused_step(1, 1);
    test_gradients(16, 0, 0);
    test_gradients(16, 1, 0);
    test_gradients(8, 0, 0);
    test_gradients(4, 0, 1);
    printf("STE gradients vs finite differences: worst |analytic - fd| / tolerance %.3g\n", fd_worst);
    test_layers();
    test_determinism_and_stats();
    test_actq_step();
    test_nearbyintf();
    test_misaligned();
    test_errors();
    AQ_TEST_END();
}
