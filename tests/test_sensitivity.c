/* test_sensitivity.c — the network-level KL of one quantized layer
 * (src/model/sensitivity.h) against a direct computation written here: two
 * full forwards per window (FP, and quantized with the override installed)
 * and a float64 log-softmax / KL loop over the predicted positions. On a tiny
 * synthetic HF model (written to a temp dir: 3 blocks, several batches,
 * a window of length 1 that predicts nothing) and on stories260K (skipped
 * when absent). Also: an identity override gives exactly 0, the resumed
 * forward is bit-identical to the full one, and bad input is an error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/model/sensitivity.h"
#include "testutil.h"
#include "tiny_model.h"

static uint64_t rng = 12345u;
static float frand(void) { return aq_test_frand(&rng); }

/* A random Llama model (untied classifier) as an HF directory: embedding
 * +-1, norm gains 1 +- 0.1, linears +-0.5, classifier +-0.75. */
static void write_tiny(const char *dir, aq_llama_config *c, aq_tiny_model *tiny)
{
    *c = (aq_llama_config){.dim = 16, .hidden_dim = 24, .n_layers = 3, .n_heads = 4, .n_kv_heads = 2,
                           .vocab_size = 40, .max_seq_len = 32, .norm_eps = 1e-5f, .rope_theta = 10000.0f};
    aq_tiny_write(dir, c, &(aq_tiny_scales){.embed = 2.0f, .norm = 0.2f, .lin = 1.0f, .head = 1.5f}, &rng,
                  tiny);
}

/* float64 log-softmax of z[V] (written independently of the library). */
static void ref_log_softmax(const float *z, int V, double *out)
{
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < V; i++)
        if (z[i] > mx) mx = z[i];
    for (int i = 0; i < V; i++)
        s += exp((double)z[i] - mx);
    for (int i = 0; i < V; i++)
        out[i] = (double)z[i] - mx - log(s);
}

/* Direct mean KL(FP || Q) over predicted positions: each window forwarded
 * alone, FP then quantized (the overrides currently installed). */
static double ref_kl(aq_model *m, const int *tok, const int *lens, int n)
{
    int V = aq_model_config(m)->vocab_size;
    aq_forward_opts q;
    aq_forward_opts_default(&q);
    q.quantized = 1;
    double sum = 0, *lp = malloc(sizeof(double) * V), *lq = malloc(sizeof(double) * V);
    size_t cnt = 0, off = 0;
    aq_error err = {0};
    for (int s = 0; s < n; off += (size_t)lens[s++]) {
        float *zf = malloc(sizeof(float) * (size_t)lens[s] * V);
        float *zq = malloc(sizeof(float) * (size_t)lens[s] * V);
        CHECK_OK(aq_model_forward(m, tok + off, lens + s, 1, NULL, zf, &err), &err);
        CHECK_OK(aq_model_forward(m, tok + off, lens + s, 1, &q, zq, &err), &err);
        for (int t = 0; t + 1 < lens[s]; t++, cnt++) {
            ref_log_softmax(zf + (size_t)t * V, V, lp);
            ref_log_softmax(zq + (size_t)t * V, V, lq);
            for (int v = 0; v < V; v++)
                sum += exp(lp[v]) * (lp[v] - lq[v]);
        }
        free(zf);
        free(zq);
    }
    free(lp);
    free(lq);
    return sum / (double)cnt;
}

static void make_tokens(int *t, const int *lens, int n, int V)
{
    for (int s = 0, k = 0; s < n; s++)
        for (int i = 0; i < lens[s]; i++, k++) {
            t[k] = i == 0 ? 1 : aq_test_irand(&rng, V);
        }
}

/* Perturbed copy of the FP weight of (b, which): W + amp * max|W| * noise. */
static float *perturbed(aq_model *m, int b, aq_linear which, float amp, int *n)
{
    const float *w;
    int o, i;
    aq_error err = {0};
    CHECK_OK(aq_model_linear(m, b, which, &w, &o, &i, &err), &err);
    float *q = malloc(sizeof(float) * (size_t)o * i), mx = 0;
    for (int k = 0; k < o * i; k++)
        mx = fmaxf(mx, fabsf(w[k]));
    for (int k = 0; k < o * i; k++)
        q[k] = w[k] + amp * mx * frand();
    *n = o;
    return q;
}

/* KL of several single layers vs the direct reference; identity gives 0. */
static void check_layers(aq_model *m, aq_sens *s, const int *tok, const int *lens, int n,
                         const int (*layers)[2], int n_layers, float amp)
{
    aq_error err = {0};
    for (int j = 0; j < n_layers; j++) {
        int b = layers[j][0], d_out;
        aq_linear which = (aq_linear)layers[j][1];
        float *q = perturbed(m, b, which, amp, &d_out);
        float *bias = malloc(sizeof(float) * d_out);
        for (int k = 0; k < d_out; k++)
            bias[k] = 0.01f * frand();
        aq_linear_override ov = {q, bias, 0, 1.0f, 0.0f};
        double kl = -1, ref;
        CHECK_OK(aq_sens_layer_kl(s, b, which, &ov, &kl, &err), &err);
        CHECK(aq_model_override_count(m) == 0);
        CHECK_OK(aq_model_set_override(m, b, which, &ov, &err), &err);
        ref = ref_kl(m, tok, lens, n);
        aq_model_clear_override(m, b, which);
        printf("block %d %-9s KL %.10g  direct %.10g\n", b, aq_linear_short_name(which), kl, ref);
        CHECK_MSG(ref > 1e-9, "the perturbation must change the output (ref %g)", ref);
        /* both sides sum float64 KL terms of the same float32 logits (the same
         * engine forward; only the summation differs): ~T * 1e-16 relative;
         * 1e-10 is wide, and far below the float32 noise (~1e-7) a changed
         * forward would show */
        CHECK_MSG(fabs(kl - ref) <= 1e-10 * ref, "KL %.17g vs direct %.17g", kl, ref); /* as above */
        /* identity override: exactly 0 */
        const float *w;
        int o, i;
        CHECK_OK(aq_model_linear(m, b, which, &w, &o, &i, &err), &err);
        aq_linear_override id = {w, NULL, 0, 1.0f, 0.0f};
        CHECK_OK(aq_sens_layer_kl(s, b, which, &id, &kl, &err), &err);
        CHECK_MSG(kl == 0.0, "identity override KL %g (must be exactly 0)", kl);
        free(q);
        free(bias);
    }
}

/* The resumed forward from a saved residual equals the full forward. */
static void check_resume(aq_model *m, const int *tok, const int *lens, int n)
{
    const aq_llama_config *c = aq_model_config(m);
    size_t rows = 0;
    for (int s = 0; s < n; s++)
        rows += (size_t)lens[s];
    float *full = malloc(sizeof(float) * rows * c->vocab_size);
    float *res = malloc(sizeof(float) * rows * c->vocab_size);
    float *xs = malloc(sizeof(float) * rows * c->dim * c->n_layers);
    aq_error err = {0};
    aq_forward_resume r = {0, NULL, xs};
    CHECK_OK(aq_model_forward_resume(m, tok, lens, n, NULL, &r, full, &err), &err);
    for (int b = 1; b < c->n_layers; b++) {
        aq_forward_resume rb = {b, xs + (size_t)b * rows * c->dim, NULL};
        CHECK_OK(aq_model_forward_resume(m, tok, lens, n, NULL, &rb, res, &err), &err);
        CHECK_MSG(!memcmp(full, res, sizeof(float) * rows * c->vocab_size),
                  "resume at block %d is not bit-identical", b);
    }
    aq_forward_resume bad = {2, NULL, NULL};
    CHECK(aq_model_forward_resume(m, tok, lens, n, NULL, &bad, res, &err) == AQ_ERR_ARG);
    bad.start_block = c->n_layers + 1;
    CHECK(aq_model_forward_resume(m, tok, lens, n, NULL, &bad, res, &err) == AQ_ERR_ARG);
    free(full);
    free(res);
    free(xs);
}

static void check_errors(aq_model *m, aq_sens *s)
{
    aq_error err = {0};
    double kl;
    const float *w;
    int o, i;
    CHECK_OK(aq_model_linear(m, 0, AQ_LIN_O, &w, &o, &i, &err), &err);
    float *nanw = malloc(sizeof(float) * o * i);
    memcpy(nanw, w, sizeof(float) * o * i);
    nanw[3] = NAN;
    aq_linear_override ov = {nanw, NULL, 0, 1.0f, 0.0f};
    CHECK(aq_sens_layer_kl(s, 0, AQ_LIN_O, &ov, &kl, &err) == AQ_ERR_NUMERIC);
    printf("NaN override -> %s\n", err.msg);
    CHECK(strstr(err.msg, "model.layers.0.self_attn.o_proj") != NULL);
    ov.weight = w;
    CHECK(aq_sens_layer_kl(s, 99, AQ_LIN_O, &ov, &kl, &err) == AQ_ERR_ARG);
    CHECK_OK(aq_model_set_override(m, 1, AQ_LIN_Q, &ov, &err), &err);
    CHECK(aq_sens_layer_kl(s, 0, AQ_LIN_O, &ov, &kl, &err) == AQ_ERR_ARG);
    printf("override installed -> %s\n", err.msg);
    aq_model_clear_override(m, 1, AQ_LIN_Q);
    CHECK(aq_model_override_count(m) == 0);
    aq_sens *s2 = NULL;
    int t1[2] = {1, 1}, l1[2] = {1, 1};
    CHECK(aq_sens_new(m, t1, l1, 2, 0, &s2, &err) == AQ_ERR_ARG && !s2);
    free(nanw);
}

/* Two layers at once: aq_sens_installed_kl equals the direct KL. */
static void check_joint(aq_model *m, aq_sens *s, const int *tok, const int *lens, int n)
{
    aq_error err = {0};
    int o1, o2;
    float *a = perturbed(m, 0, AQ_LIN_V, 0.2f, &o1), *b = perturbed(m, 2, AQ_LIN_UP, 0.2f, &o2);
    aq_linear_override oa = {a, NULL, 0, 1, 0}, ob = {b, NULL, 0, 1, 0};
    CHECK_OK(aq_model_set_override(m, 0, AQ_LIN_V, &oa, &err), &err);
    CHECK_OK(aq_model_set_override(m, 2, AQ_LIN_UP, &ob, &err), &err);
    double kl = -1, ref = ref_kl(m, tok, lens, n);
    CHECK_OK(aq_sens_installed_kl(s, &kl, &err), &err);
    printf("joint (2 layers) KL %.10g direct %.10g\n", kl, ref);
    CHECK_MSG(fabs(kl - ref) <= 1e-10 * ref, "KL %.17g vs direct %.17g", kl, ref); /* as above */
    aq_model_clear_override(m, 0, AQ_LIN_V);
    aq_model_clear_override(m, 2, AQ_LIN_UP);
    free(a);
    free(b);
}

/* A quantized base (3 layers) and swaps: KL(FP || base with one layer
 * changed) equals the direct computation with exactly those overrides. */
static void check_base(aq_model *m, aq_sens *s, const int *tok, const int *lens, int n)
{
    aq_error err = {0};
    static const int base_l[3][2] = {{0, AQ_LIN_K}, {1, AQ_LIN_UP}, {2, AQ_LIN_O}};
    float *bw[3], *alt;
    aq_linear_override bo[3];
    for (int j = 0; j < 3; j++) {
        int o;
        bw[j] = perturbed(m, base_l[j][0], (aq_linear)base_l[j][1], 0.15f, &o);
        bo[j] = (aq_linear_override){bw[j], NULL, 0, 1, 0};
        CHECK_OK(aq_model_set_override(m, base_l[j][0], (aq_linear)base_l[j][1], &bo[j], &err), &err);
    }
    double joint = -1, kl = -1, ref;
    CHECK_OK(aq_sens_set_base(s, &err), &err);
    CHECK_OK(aq_sens_installed_kl(s, &joint, &err), &err);
    CHECK(aq_sens_layer_kl(s, 0, AQ_LIN_Q, &bo[0], &kl, &err) == AQ_ERR_ARG);
    /* swap a base layer (1 up) for another quantization of it */
    int o;
    alt = perturbed(m, 1, AQ_LIN_UP, 0.05f, &o);
    aq_linear_override ao = {alt, NULL, 0, 1, 0};
    CHECK_OK(aq_sens_swap_kl(s, 1, AQ_LIN_UP, &ao, &bo[1], &kl, &err), &err);
    CHECK_OK(aq_model_set_override(m, 1, AQ_LIN_UP, &ao, &err), &err);
    ref = ref_kl(m, tok, lens, n);
    CHECK_OK(aq_model_set_override(m, 1, AQ_LIN_UP, &bo[1], &err), &err);
    printf("base + swap 1.up_proj: KL %.10g direct %.10g (base alone %.10g)\n", kl, ref, joint);
    /* 1e-10 as above; 1e-6 of the joint KL is far above that noise */
    CHECK_MSG(fabs(kl - ref) <= 1e-10 * ref && fabs(kl - joint) > 1e-6 * joint,
              "swap KL %.17g vs direct %.17g (base %.17g)", kl, ref, joint);
    /* add a layer outside the base (2 gate), restore = NULL */
    float *g = perturbed(m, 2, AQ_LIN_GATE, 0.2f, &o);
    aq_linear_override go = {g, NULL, 0, 1, 0};
    CHECK_OK(aq_sens_swap_kl(s, 2, AQ_LIN_GATE, &go, NULL, &kl, &err), &err);
    CHECK(aq_model_override_count(m) == 3);
    CHECK_OK(aq_model_set_override(m, 2, AQ_LIN_GATE, &go, &err), &err);
    ref = ref_kl(m, tok, lens, n);
    aq_model_clear_override(m, 2, AQ_LIN_GATE);
    printf("base + 2.gate_proj:    KL %.10g direct %.10g\n", kl, ref);
    CHECK_MSG(fabs(kl - ref) <= 1e-10 * ref, /* as above */ "add KL %.17g vs direct %.17g", kl, ref);
    /* the base is intact: the swap with its own override gives the base KL */
    CHECK_OK(aq_sens_swap_kl(s, 0, AQ_LIN_K, &bo[0], &bo[0], &kl, &err), &err);
    CHECK_MSG(kl == joint, "base KL %.17g then %.17g", joint, kl);
    for (int j = 0; j < 3; j++) {
        aq_model_clear_override(m, base_l[j][0], (aq_linear)base_l[j][1]);
        free(bw[j]);
    }
    free(alt);
    free(g);
    /* back to the FP cache: single-layer queries work again */
    CHECK_OK(aq_sens_set_base(s, &err), &err);
    const float *w;
    int d_in;
    CHECK_OK(aq_model_linear(m, 0, AQ_LIN_K, &w, &o, &d_in, &err), &err);
    aq_linear_override id = {w, NULL, 0, 1, 0};
    CHECK_OK(aq_sens_layer_kl(s, 0, AQ_LIN_K, &id, &kl, &err), &err);
    CHECK(kl == 0.0);
}

static void test_tiny(void)
{
    char *dir = aq_test_tmpdir("sens");
    aq_llama_config c;
    aq_tiny_model tiny;
    write_tiny(dir, &c, &tiny);
    aq_tiny_free(&tiny); /* the test reads the weights back from the model */
    aq_model *m = NULL;
    aq_error err = {0};
    CHECK_OK(aq_model_load_path(dir, &m, &err), &err);
    if (!m) return;
    int lens[5] = {12, 9, 1, 20, 7}, tok[49];
    make_tokens(tok, lens, 5, c.vocab_size);
    check_resume(m, tok, lens, 5);
    aq_sens *s = NULL;
    /* batches of at most 21 rows: {12, 9}, {1, 20}, {7} */
    CHECK_OK(aq_sens_new(m, tok, lens, 5, 21, &s, &err), &err);
    if (s) {
        CHECK(aq_sens_predicted(s) == 11 + 8 + 0 + 19 + 6);
        static const int layers[][2] = {
            {0, AQ_LIN_Q}, {0, AQ_LIN_DOWN}, {1, AQ_LIN_K}, {1, AQ_LIN_O},
            {2, AQ_LIN_GATE}, {2, AQ_LIN_V}, {3, AQ_LIN_HEAD}};
        check_layers(m, s, tok, lens, 5, layers, 7, 0.1f);
        check_joint(m, s, tok, lens, 5);
        check_base(m, s, tok, lens, 5);
        check_errors(m, s);
    }
    aq_sens_free(s);
    aq_model_free(m);
    char p[600];
    snprintf(p, sizeof p, "rm -rf '%s'", dir);
    CHECK(system(p) == 0);
    free(dir);
}

static void test_stories(void)
{
    const char *sd = getenv("AQ_SHARED_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K/stories260K.bin", sd ? sd : "../shared");
    if (access(path, R_OK) != 0) {
        printf("SKIP part: %s absent\n", path);
        return;
    }
    aq_model *m = NULL;
    aq_error err = {0};
    CHECK_OK(aq_model_load_path(path, &m, &err), &err);
    if (!m) return;
    int lens[3] = {64, 64, 40}, tok[168];
    make_tokens(tok, lens, 3, aq_model_config(m)->vocab_size);
    aq_sens *s = NULL;
    CHECK_OK(aq_sens_new(m, tok, lens, 3, 0, &s, &err), &err);
    if (s) {
        static const int layers[][2] = {{0, AQ_LIN_K}, {2, AQ_LIN_UP}, {4, AQ_LIN_DOWN}};
        check_layers(m, s, tok, lens, 3, layers, 3, 0.05f);
        printf("stories260K: cache %zu bytes for %zu predicted tokens\n", aq_sens_bytes(s),
               aq_sens_predicted(s));
    }
    aq_sens_free(s);
    aq_model_free(m);
}

int main(void)
{
    test_tiny();
    test_stories();
    AQ_TEST_END();
}
