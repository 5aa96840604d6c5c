/* test_arch_grad.c — the backward pass (src/model/grad.h, used by global
 * tuning) on the architecture variants of config.json: Qwen3 (per-head q/k
 * norm before RoPE, head_dim 12 != dim 32 / 4 heads, q/k/v/o biases) and a
 * Llama with attention and MLP biases, head_dim != dim / heads and llama3
 * rope_scaling. The checkpoints come from tests/scripts/synth_model.py.
 *
 * The reference is the engine's own forward, whose logits tests/test_arch.c
 * checks against an independent float64 implementation (hf_ref.py): every
 * gradient group that global tuning uses (override weights and biases, the
 * norm gains) must match central finite differences of KL_sum computed by
 * the quantized forward. That forward is float32, so its KL carries rounding
 * noise; fdcheck.h measures it (aq_fd_noise) and widens the tolerance by its
 * effect on the quotient instead of guessing.
 *
 * The overrides are float weights and biases (no codes, no activation
 * quantizer), so KL is smooth in them: no code fingerprint is needed. One
 * override has no bias while the model's layer has one: its forward then has
 * no bias (the override's bias replaces the model's), which the KL at the
 * base point sees; the checked gradients all agree with that forward. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/model/grad.h"
#include "fdcheck.h"
#include "testutil.h"

#define NS 2
static const int lens[NS] = {40, 7};
#define NR 47

typedef struct fx {
    aq_model *m;
    int L, D, nlin;
    int tok[NR];
    double *w[64], *b[64]; /* per linear index (block*7+which): override params, b NULL = none */
    int d_out[64], d_in[64];
    double *g[16]; /* norm gains (2L+1) [D] */
    float *buf;
} fx;

static float frand_sym(uint64_t *s)
{
    return (float)(aq_test_nrand(s));
}

/* Install every override and norm override from the double parameters. */
static void install(fx *x)
{
    aq_error err = {0};
    for (int i = 0; i < x->nlin; i++) {
        if (!x->w[i]) continue;
        size_t n = (size_t)x->d_out[i] * x->d_in[i];
        float *w = x->buf, *b = x->buf + n;
        for (size_t k = 0; k < n; k++)
            w[k] = (float)x->w[i][k];
        for (int k = 0; x->b[i] && k < x->d_out[i]; k++)
            b[k] = (float)x->b[i][k];
        aq_linear_override ov = {w, x->b[i] ? b : NULL, 0, 0, 0};
        CHECK_OK(aq_model_set_override(x->m, i / AQ_LIN_COUNT, (aq_linear)(i % AQ_LIN_COUNT), &ov, &err), &err);
    }
    for (int k = 0; k <= 2 * x->L; k++) {
        for (int i = 0; i < x->D; i++)
            x->buf[i] = (float)x->g[k][i];
        int blk = k < 2 * x->L ? k / 2 : x->L, which = k < 2 * x->L ? k % 2 : 0;
        CHECK_OK(aq_model_set_norm_override(x->m, blk, which, x->buf, &err), &err);
    }
}

static double kl_now(void *ctx)
{
    fx *x = ctx;
    install(x);
    aq_error err = {0};
    double kl = 0;
    CHECK_OK(aq_model_kl_grad(x->m, x->tok, lens, NS, &kl, NULL, &err), &err);
    return kl;
}

/* Overrides on every linear: weights perturbed by 8% of their RMS, biases
 * (the model's, or 0 where it has none) moved by 0.05 N; block 1's k_proj
 * without a bias. Norm gains perturbed by 5%. */
static void setup(fx *x, uint64_t *rs)
{
    const aq_llama_config *c = aq_model_config(x->m);
    x->L = c->n_layers, x->D = c->dim, x->nlin = x->L * AQ_LIN_COUNT;
    size_t mx = 0;
    for (int i = 0; i < x->nlin; i++) {
        int blk = i / AQ_LIN_COUNT;
        aq_linear wh = (aq_linear)(i % AQ_LIN_COUNT);
        const float *W;
        aq_error err = {0};
        CHECK_OK(aq_model_linear(x->m, blk, wh, &W, &x->d_out[i], &x->d_in[i], &err), &err);
        size_t n = (size_t)x->d_out[i] * x->d_in[i];
        mx = n + x->d_out[i] > mx ? n + x->d_out[i] : mx;
        double rms = 0;
        for (size_t k = 0; k < n; k++)
            rms += (double)W[k] * W[k];
        rms = sqrt(rms / n);
        x->w[i] = malloc(n * sizeof(double));
        for (size_t k = 0; k < n; k++)
            x->w[i][k] = W[k] + 0.08 * rms * frand_sym(rs);
        const float *mb = aq_model_linear_bias(x->m, blk, wh);
        x->b[i] = NULL;
        if (blk == 1 && wh == AQ_LIN_K) continue;
        x->b[i] = malloc((size_t)x->d_out[i] * sizeof(double));
        for (int k = 0; k < x->d_out[i]; k++)
            x->b[i][k] = (mb ? mb[k] : 0.0) + 0.05 * frand_sym(rs);
    }
    for (int k = 0; k <= 2 * x->L; k++) {
        const float *g = aq_model_norm(x->m, k < 2 * x->L ? k / 2 : x->L, k < 2 * x->L ? k % 2 : 0, 0);
        x->g[k] = malloc((size_t)x->D * sizeof(double));
        for (int i = 0; i < x->D; i++)
            x->g[k][i] = g[i] * (1.0 + 0.05 * frand_sym(rs));
    }
    x->buf = malloc((mx > (size_t)x->D ? mx : (size_t)x->D) * sizeof(float));
    for (int r = 0; r < NR; r++)
        x->tok[r] = (int)(aq_test_urand(rs) * c->vocab_size) % c->vocab_size;
}

/* One probe: |g - fd| <= 2e-3 * scale + the measured noise term. 2e-3: the
 * engine's gradient is a float32 backward of a float32 forward (errors of a
 * few 1e-6 relative to the group's scale, as test_model_grad measures against
 * float64), and the central difference's truncation at h = 2^-9 on these
 * smooth, O(1)-curvature parameters is ~h^2/6 ~ 1e-6 relative; 2e-3 is well
 * above both and far below a missing term (a gradient that skipped the q/k
 * norm or a bias is off by O(1) of the scale). */
static int probe(fx *x, double *p, double g, double scale, double noise, const char *what, int k)
{
    aq_fd_fun fn = {kl_now, NULL, x};
    aq_fd_opts o = {2, 1.0 / 512, 0, noise, 0, 2e-3 * scale + 1e-6};
    aq_fd_probe pr;
    if (aq_fd_check(&fn, p, g, &o, &pr) == AQ_FD_PASS) return 0;
    char name[160];
    snprintf(name, sizeof name, "%s entry %d", what, k);
    aq_fd_print(name, &pr);
    CHECK_MSG(0, "%s entry %d: grad %.8g, finite difference %.8g", what, k, g, pr.fd);
    return 1;
}

static double gmax(const float *g, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(g[i]));
    return m;
}

static void check_model(const char *label, const char *dir)
{
    aq_error err = {0};
    fx x;
    memset(&x, 0, sizeof x);
    CHECK_OK(aq_model_load_path(dir, &x.m, &err), &err);
    if (!x.m) return;
    uint64_t rs = 4242;
    setup(&x, &rs);
    install(&x);
    /* the engine's gradients at the base point */
    aq_grad_buf gb = {0};
    float *dw[64] = {0}, *db[64] = {0};
    for (int i = 0; i < x.nlin; i++) {
        dw[i] = calloc((size_t)x.d_out[i] * x.d_in[i], sizeof(float));
        db[i] = calloc((size_t)x.d_out[i], sizeof(float));
    }
    gb.d_weight = dw, gb.d_bias = db;
    gb.d_attn_norm = calloc((size_t)x.L * x.D, sizeof(float));
    gb.d_ffn_norm = calloc((size_t)x.L * x.D, sizeof(float));
    gb.d_final_norm = calloc((size_t)x.D, sizeof(float));
    double kl = 0;
    CHECK_OK(aq_model_kl_grad(x.m, x.tok, lens, NS, &kl, &gb, &err), &err);
    CHECK_MSG(kl > 1e-3, "%s: the overrides change the network (KL_sum %g)", label, kl);
    /* noise of one KL evaluation, pooled over a few weights (delta 2^-12:
     * far above the float32 resolution of weights ~0.2, small enough that
     * delta^4 f'''' vanishes) */
    double *np_[4] = {&x.w[0][3], &x.w[3][5], &x.w[AQ_LIN_COUNT + 6][7], &x.g[1][2]};
    aq_fd_fun fn = {kl_now, NULL, &x};
    int used = 0;
    double noise = aq_fd_noise(&fn, np_, 4, 1.0 / 4096, &used);
    int bad = 0, n = 0;
    for (int i = 0; i < x.nlin; i++) {
        char what[96];
        snprintf(what, sizeof what, "%s block %d %s", label, i / AQ_LIN_COUNT,
                 aq_linear_short_name((aq_linear)(i % AQ_LIN_COUNT)));
        size_t nw = (size_t)x.d_out[i] * x.d_in[i];
        double sw = gmax(dw[i], nw);
        for (int t = 0; t < 5; t++, n++) {
            size_t k = (size_t)(aq_test_urand(&rs) * nw) % nw;
            bad += probe(&x, &x.w[i][k], dw[i][k], sw, noise, what, (int)k);
        }
        if (!x.b[i]) continue;
        double sb = gmax(db[i], (size_t)x.d_out[i]);
        for (int k = 0; k < x.d_out[i]; k += 3, n++)
            bad += probe(&x, &x.b[i][k], db[i][k], sb, noise, what, k);
    }
    for (int k = 0; k <= 2 * x.L; k++) {
        const float *g = k == 2 * x.L ? gb.d_final_norm
                                      : (k % 2 ? gb.d_ffn_norm : gb.d_attn_norm) + (size_t)(k / 2) * x.D;
        double s = gmax(g, (size_t)x.D);
        for (int i = 0; i < x.D; i += 5, n++)
            bad += probe(&x, &x.g[k][i], g[i], s, noise, "norm gain", k * 1000 + i);
    }
    printf("%-24s KL_sum %.6g, noise %.2g (%d grids), %d of %d probes off\n", label, kl, noise, used,
           bad, n);
    for (int i = 0; i < x.nlin; i++) {
        free(dw[i]);
        free(db[i]);
        free(x.w[i]);
        free(x.b[i]);
    }
    for (int k = 0; k <= 2 * x.L; k++)
        free(x.g[k]);
    free(gb.d_attn_norm);
    free(gb.d_ffn_norm);
    free(gb.d_final_norm);
    free(x.buf);
    aq_model_free(x.m);
}

int main(void)
{
    const char *src = getenv("AQ_SOURCE_DIR");
    if (!src || !aq_test_have_numpy()) {
        printf("SKIP: needs AQ_SOURCE_DIR (run through ctest) and /usr/bin/python3 with numpy\n");
        return 77;
    }
    char *tmp = aq_test_tmpdir("archgrad"), cmd[4096], dir[1024];
    static const char *const models[][2] = {
        {"qwen3", "qwen3 --attention-bias --dim 32 --heads 4 --kv-heads 2 --head-dim 12 --vocab 48"},
        {"llama-bias-llama3",
         "llama-bias --mlp-bias --dim 32 --heads 4 --kv-heads 2 --head-dim 12 --vocab 48 "
         "--set rope_scaling='{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
         "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 16}'"},
    };
    for (int i = 0; i < 2; i++) {
        snprintf(dir, sizeof dir, "%s/%s", tmp, models[i][0]);
        /* synth_model.py ARCH DIR flags: split the arch off the flag string */
        const char *sp = strchr(models[i][1], ' ');
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/scripts/synth_model.py' %.*s '%s' %s", src,
                 (int)(sp - models[i][1]), models[i][1], dir, sp + 1);
        CHECK_MSG(system(cmd) == 0, "%s", cmd);
        check_model(models[i][0], dir);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (!aq_test_failures && system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmp);
    free(tmp);
    AQ_TEST_END();
}
