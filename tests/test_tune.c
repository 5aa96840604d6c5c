/* test_tune.c — the parameter vector of global tuning (src/model/tune.h) on
 * stories260K: its gradient (log-scale, zero point, bias, RMSNorm gains)
 * against central finite differences of the KL the engine measures with the
 * parameters applied, the symmetric layers' fixed zero points, and the first
 * Adam step against its closed form. The quantized layers are built here by
 * plain round-to-nearest (independent of src/adaquant). Skips (77) without
 * the shared assets. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/model/grad.h"
#include "../src/model/tune.h"
#include "testutil.h"

#define NLAY 4
static const aq_tune_layer lay[NLAY] = {{0, AQ_LIN_Q}, {0, AQ_LIN_DOWN}, {2, AQ_LIN_UP}, {4, AQ_LIN_V}};
static const int bits[NLAY] = {4, 3, 4, 8}, sym[NLAY] = {0, 1, 0, 0};

/* Round-to-nearest per row: asymmetric on [min, max], or symmetric with the
 * zero point 2^(b-1). The arrays are separate mallocs (freed by free_layer). */
static void rtn(const float *w, int d_out, int d_in, int b, int symmetric, aq_layer_result *r)
{
    memset(r, 0, sizeof *r);
    r->d_out = (size_t)d_out;
    r->d_in = (size_t)d_in;
    r->w_bits = b;
    r->a_bits = 16;
    r->a_scale = 1;
    r->symmetric = symmetric;
    r->codes = malloc((size_t)d_out * d_in);
    r->w_scale = malloc((size_t)d_out * sizeof(float));
    r->w_zero = malloc((size_t)d_out * sizeof(float));
    r->bias = malloc((size_t)d_out * sizeof(float));
    int qmax = (1 << b) - 1;
    for (int i = 0; i < d_out; i++) {
        const float *row = w + (size_t)i * d_in;
        float lo = row[0], hi = row[0];
        for (int j = 1; j < d_in; j++) {
            lo = fminf(lo, row[j]);
            hi = fmaxf(hi, row[j]);
        }
        float s, z;
        if (symmetric) {
            s = fmaxf(fabsf(lo), fabsf(hi)) / (float)((1 << (b - 1)) - 1);
            z = (float)(1 << (b - 1));
        } else {
            s = (hi - lo) / (float)qmax;
            z = -lo / s;
        }
        r->w_scale[i] = s;
        r->w_zero[i] = z;
        r->bias[i] = 0.01f * (float)((i % 7) - 3);
        for (int j = 0; j < d_in; j++) {
            float u = rintf(row[j] / s + z);
            r->codes[(size_t)i * d_in + j] = (uint8_t)fminf(fmaxf(u, 0.0f), (float)qmax);
        }
    }
}

static void free_layer(aq_layer_result *r)
{
    free(r->codes);
    free(r->w_scale);
    free(r->w_zero);
    free(r->bias);
}

static int toks[96], lens[2] = {60, 36};

static double kl_now(aq_model *m, aq_tuner *t)
{
    aq_error err = {0};
    double kl = NAN;
    CHECK_OK(aq_tuner_apply(t, &err), &err);
    CHECK_OK(aq_model_kl_grad(m, toks, lens, 2, &kl, NULL, &err), &err);
    return kl;
}

/* Central difference at parameter i compared with g[i]; returns 1 if close.
 * KL_sum is a float32 network's output summed in double: h is chosen so the
 * rounding noise (~1e-6 of KL_sum) stays far below the signal. */
static int check_fd(aq_model *m, aq_tuner *t, const double *g, size_t i, double h, double floor, const char *what)
{
    double *x = aq_tuner_params(t), x0 = x[i];
    x[i] = x0 + h;
    double kp = kl_now(m, t);
    x[i] = x0 - h;
    double km = kl_now(m, t);
    x[i] = x0;
    double fd = (kp - km) / (2 * h);
    int ok = fabs(g[i] - fd) <= 0.03 * fabs(fd) + floor;
    if (!ok) printf("  %s param %zu: gradient %.6g, finite difference %.6g\n", what, i, g[i], fd);
    return ok;
}

int main(void)
{
    char *mp = aq_test_asset("models/stories260K/stories260K.bin");
    aq_error err = {0};
    aq_model *m = NULL;
    CHECK_OK(aq_model_load_path(mp, &m, &err), &err);
    if (!m) AQ_TEST_END();
    const aq_llama_config *c = aq_model_config(m);
    unsigned rng = 12345u;
    for (int i = 0; i < 96; i++) {
        rng = rng * 1103515245u + 12345u;
        toks[i] = (int)((rng >> 8) % (unsigned)c->vocab_size);
    }
    toks[0] = toks[60] = 1; /* BOS */
    aq_layer_result v[NLAY];
    for (int l = 0; l < NLAY; l++) {
        const float *w;
        int d_out, d_in;
        CHECK_OK(aq_model_linear(m, lay[l].block, lay[l].which, &w, &d_out, &d_in, &err), &err);
        rtn(w, d_out, d_in, bits[l], sym[l], &v[l]);
    }
    float zero_sym0 = v[1].w_zero[0];
    aq_tuner *t = NULL;
    CHECK_OK(aq_tuner_new(m, NLAY, lay, v, &t, &err), &err);
    if (!t) AQ_TEST_END();
    size_t np = aq_tuner_n_params(t), no = aq_tuner_norm_offset(t);
    CHECK(np == no + 2 * (size_t)c->n_layers * c->dim + (size_t)c->dim);
    /* start a little away from the initial point so every group matters */
    double *x = aq_tuner_params(t);
    for (size_t i = 0; i < np; i++) x[i] += 0.01 * sin((double)i);
    double *g = calloc(np + 1, sizeof *g);
    CHECK_OK(aq_tuner_apply(t, &err), &err);
    CHECK_OK(aq_tuner_grad(t, toks, lens, 2, g, &err), &err);
    double kl0 = kl_now(m, t);
    CHECK_MSG(fabs(g[np] - kl0) <= 1e-9 * fabs(kl0) && kl0 > 0, "KL_sum %.9g vs %.9g", g[np], kl0);
    CHECK(v[1].w_zero[0] == zero_sym0); /* symmetric: the zero point is not tuned */

    int bad = 0, n = 0;
    for (int l = 0; l < NLAY; l++) {
        size_t off = aq_tuner_layer_offset(t, l), d = v[l].d_out;
        double gmax = 0;
        for (size_t r = 0; r < 3 * d; r++) gmax = fmax(gmax, fabs(g[off + r]));
        for (size_t r = 0; r < d; r += d / 5) {
            bad += !check_fd(m, t, g, off + r, 1e-3, 1e-3 * gmax, "theta"), n++;
            bad += !check_fd(m, t, g, off + 2 * d + r, 1e-3, 1e-3 * gmax, "bias"), n++;
            if (sym[l])
                CHECK_MSG(g[off + d + r] == 0.0, "symmetric layer %d: zero-point gradient %g", l, g[off + d + r]);
            else
                bad += !check_fd(m, t, g, off + d + r, 1e-2, 1e-3 * gmax, "zero"), n++;
        }
    }
    double gn = 0;
    for (size_t i = no; i < np; i++) gn = fmax(gn, fabs(g[i]));
    for (size_t i = no; i < np; i += 37) bad += !check_fd(m, t, g, i, 1e-3, 1e-3 * gn, "norm gain"), n++;
    CHECK_MSG(bad == 0, "%d of %d gradient entries differ from the finite differences", bad, n);
    printf("%d gradient entries checked against central differences (KL_sum %.6f)\n", n, kl0);

    /* Adam's first step (bias-corrected moments = g, g^2; cosine factor 1):
     * x <- x - lr * g / (|g| + 1e-8) with g the mean gradient. */
    double *x_before = malloc(np * sizeof *x_before);
    memcpy(x_before, x, np * sizeof *x);
    double lr = 1e-3, ntok = 96;
    aq_tuner_adam(t, g, 1, 10, lr, ntok);
    int adam_bad = 0;
    for (size_t i = 0; i < np; i++) {
        double gm = g[i] / ntok, want = x_before[i] - lr * gm / (fabs(gm) + 1e-8);
        adam_bad += fabs(x[i] - want) > 1e-12 * fmax(1.0, fabs(want));
    }
    CHECK_MSG(adam_bad == 0, "%d parameters off the closed-form first Adam step", adam_bad);
    /* the step lowers the KL of this batch */
    double kl1 = kl_now(m, t);
    CHECK_MSG(kl1 < kl0, "one Adam step: KL_sum %.6f -> %.6f", kl0, kl1);

    /* bad input */
    aq_tuner *t2 = NULL;
    aq_tune_layer twice[2] = {{0, AQ_LIN_Q}, {0, AQ_LIN_Q}};
    aq_layer_result v2[2] = {v[0], v[0]};
    CHECK(aq_tuner_new(m, 2, twice, v2, &t2, &err) == AQ_ERR_ARG && !t2);
    aq_tune_layer wrong[1] = {{0, AQ_LIN_K}}; /* q's [64, 64] result for k [32, 64] */
    CHECK(aq_tuner_new(m, 1, wrong, v, &t2, &err) == AQ_ERR_SHAPE && !t2);
    printf("shape error: %s\n", err.msg);
    x[0] = NAN;
    CHECK(aq_tuner_apply(t, &err) == AQ_ERR_NUMERIC);

    free(x_before);
    free(g);
    aq_tuner_free(t);
    for (int l = 0; l < NLAY; l++) free_layer(&v[l]);
    aq_model_free(m);
    free(mp);
    AQ_TEST_END();
}
