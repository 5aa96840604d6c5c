/* test_arch.c — the Llama-family variants read from config.json (issue 15):
 * for every architecture tests/scripts/synth_model.py writes a small random
 * checkpoint (BF16/F16/F32, one file or shards), tests/scripts/hf_ref.py
 * computes the logits of 64 tokens in float64 from the published modelling
 * equations (its own safetensors reader, no project code), and the engine's
 * batch forward and its KV-cache decoder must agree with it:
 *
 *   rel = max |engine - ref| / max |ref|  <=  1e-4.
 *
 * Why 1e-4: the engine computes in float32 (unit roundoff 6e-8) from the same
 * stored weights the reference widens exactly. Through 2 blocks of dot
 * products of length <= 96 (errors growing ~ sqrt(k) u per product, a few
 * products and norms per block, plus exp/softmax at ~2 ulp) the expected
 * relative error of the logits is ~1e-6 (measured: at most 5e-7 over these
 * cases, with the generic, haswell and skx BLIS kernels); 1e-4 leaves 50x for kernel-dependent summation
 * orders, and is 100x below the smallest architectural mistake we tried
 * (ignoring rope_scaling: checked below to be > 1e-2).
 *
 * Plus the bad inputs: an unknown model_type, an unsupported rope type, an
 * unsupported hidden_act, a missing bias when attention_bias is true, a
 * q_norm of the wrong shape, a sequence longer than Mistral's sliding window.
 * And each config written back by aq_llama_config_write_json reads the same. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/model/model.h"
#include "testutil.h"

#define T 64
/* the relative error bound argued above */
#define REL_TOL 1e-4

static char synth[1024], ref[1024], *tmp;

static int sh(const char *cmd)
{
    int r = system(cmd);
    if (r != 0) fprintf(stderr, "command failed (%d): %s\n", r, cmd);
    return r;
}

/* synth_model.py ARCH DIR extra -> DIR (under tmp) */
static int make(const char *arch, const char *name, const char *extra, char *dir, size_t n)
{
    snprintf(dir, n, "%s/%s", tmp, name);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s '%s' %s", synth, arch, dir, extra);
    return sh(cmd);
}

static double *reference(const char *dir, const int *tok, int n, const char *opt, int vocab)
{
    char cmd[8192], out[1100];
    snprintf(out, sizeof out, "%s/ref.f64", tmp);
    int k = snprintf(cmd, sizeof cmd, "%s %s '%s' '%s'", ref, opt, dir, out);
    for (int i = 0; i < n; i++)
        k += snprintf(cmd + k, sizeof cmd - (size_t)k, " %d", tok[i]);
    if (sh(cmd) != 0) return NULL;
    size_t len;
    unsigned char *b = aq_test_read_file(out, &len);
    if (!b || len != (size_t)n * (size_t)vocab * sizeof(double)) {
        free(b);
        return NULL;
    }
    double *z = malloc(len);
    memcpy(z, b, len);
    free(b);
    return z;
}

static double rel_err(const float *a, const double *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        num = d > num ? d : num;
        den = fabs(b[i]) > den ? fabs(b[i]) : den;
    }
    return num / den;
}

typedef struct arch_case {
    const char *arch, *flags;
    int scaling; /* 1: rope_scaling changes these logits (the can-fail check) */
} arch_case;

static void check_arch(const arch_case *ac)
{
    static int count;
    char dir[1100], name[64];
    snprintf(name, sizeof name, "m%d-%s", count++, ac->arch);
    if (make(ac->arch, name, ac->flags, dir, sizeof dir) != 0) {
        CHECK_MSG(0, "%s: synth_model.py failed", ac->arch);
        return;
    }
    aq_error err = {0};
    aq_model *m = NULL;
    CHECK_OK(aq_model_load_path(dir, &m, &err), &err);
    if (!m) return;
    /* the config written back (the quantized output's config.json) reads the same */
    char rt[1200];
    aq_llama_config back;
    snprintf(rt, sizeof rt, "%s/written.json", dir);
    CHECK_OK(aq_llama_config_write_json(rt, aq_model_config(m), &err), &err);
    CHECK_OK(aq_llama_config_read_json(rt, &back, &err), &err);
    CHECK_MSG(!memcmp(&back, aq_model_config(m), sizeof back), "%s: config.json round trip",
              ac->arch);
    int V = aq_model_config(m)->vocab_size, tok[T];
    uint64_t rs = 99;
    for (int i = 0; i < T; i++)
        tok[i] = (int)(aq_test_urand(&rs) * V) % V;
    double *z = reference(dir, tok, T, "", V);
    CHECK_MSG(z != NULL, "%s: hf_ref.py failed", ac->arch);
    float *lg = malloc((size_t)T * V * sizeof(float) * 2), *dec = lg + (size_t)T * V;
    int lens[2] = {T};
    CHECK_OK(aq_model_forward(m, tok, lens, 1, NULL, lg, &err), &err);
    aq_kv_cache *kc = NULL;
    CHECK_OK(aq_kv_cache_new(m, &kc, &err), &err);
    for (int p = 0; kc && p < T; p++)
        CHECK_OK(aq_model_decode_step(m, kc, tok[p], p, dec + (size_t)p * V, &err), &err);
    aq_kv_cache_free(kc);
    if (z) {
        double e = rel_err(lg, z, (size_t)T * V), ed = rel_err(dec, z, (size_t)T * V);
        printf("%-14s %-32s forward rel %.2e  decode rel %.2e\n", ac->arch, ac->flags, e, ed);
        CHECK_MSG(e <= REL_TOL, "%s: forward logits rel error %.3g > %g", ac->arch, e, REL_TOL);
        CHECK_MSG(ed <= REL_TOL, "%s: decoder logits rel error %.3g > %g", ac->arch, ed, REL_TOL);
    }
    /* a packed batch: the second sequence starts again at position 0 */
    int tok2[T + 24], lens2[2] = {24, T};
    memcpy(tok2, tok + 10, 24 * sizeof(int));
    memcpy(tok2 + 24, tok, T * sizeof(int));
    float *lg2 = malloc((size_t)(T + 24) * V * sizeof(float));
    CHECK_OK(aq_model_forward(m, tok2, lens2, 2, NULL, lg2, &err), &err);
    if (z) {
        double e = rel_err(lg2 + (size_t)24 * V, z, (size_t)T * V);
        CHECK_MSG(e <= REL_TOL, "%s: packed batch rel error %.3g", ac->arch, e);
    }
    if (z && ac->scaling) {
        double *zw = reference(dir, tok, T, "--ignore-rope-scaling", V);
        double e = zw ? rel_err(lg, zw, (size_t)T * V) : 0;
        printf("%-14s without rope_scaling the reference differs by %.2e\n", ac->arch, e);
        CHECK_MSG(e > 1e-2, "%s: ignoring rope_scaling changes the logits by only %.3g", ac->arch,
                  e);
        free(zw);
    }
    free(lg2);
    free(lg);
    free(z);
    aq_model_free(m);
}

/* synth_model.py ARCH with extra flags must fail to load with code and both
 * message parts. */
static void expect_bad(const char *arch, const char *name, const char *extra, aq_status code,
                       const char *s1, const char *s2)
{
    char dir[1100];
    if (make(arch, name, extra, dir, sizeof dir) != 0) {
        CHECK_MSG(0, "%s: synth_model.py failed", name);
        return;
    }
    aq_error err = {0};
    aq_model *m = NULL;
    aq_status st = aq_model_load_path(dir, &m, &err);
    printf("%-16s -> %s\n", name, err.msg);
    CHECK_MSG(st == code && strstr(err.msg, s1) && (!s2 || strstr(err.msg, s2)),
              "%s: status %d, message: %s", name, st, err.msg);
    aq_model_free(m);
}

static void check_bad_inputs(void)
{
    expect_bad("llama", "b-type", "--set model_type='\"gemma\"'", AQ_ERR_FORMAT, "\"gemma\"",
               "llama (also TinyLlama, SmolLM), mistral, qwen2, qwen3");
    expect_bad("llama", "b-yarn", "--set rope_scaling='{\"rope_type\": \"yarn\", \"factor\": 4.0}'",
               AQ_ERR_FORMAT, "\"yarn\"", "default, linear, dynamic, llama3");
    expect_bad("llama", "b-l3", "--set rope_scaling='{\"rope_type\": \"llama3\", \"factor\": 8.0}'",
               AQ_ERR_FORMAT, "low_freq_factor", "llama3");
    expect_bad("llama", "b-act", "--set hidden_act='\"gelu\"'", AQ_ERR_FORMAT, "\"gelu\"", "silu");
    expect_bad("llama", "b-prf", "--set partial_rotary_factor=0.5", AQ_ERR_FORMAT,
               "partial_rotary_factor", NULL);
    expect_bad("llama", "b-bias", "--set attention_bias=true", AQ_ERR_NOTFOUND,
               "model.layers.0.self_attn.q_proj.bias", "attention_bias true");
    expect_bad("llama-bias", "b-nobias", "--set attention_bias=false", AQ_ERR_FORMAT,
               "model.layers.0.self_attn.q_proj.bias", "no bias");
    expect_bad("qwen3", "b-qnorm", "--bad-qnorm", AQ_ERR_SHAPE,
               "model.layers.0.self_attn.q_norm.weight", "[24]");

    /* Mistral's window: sequences up to it run (checked above at 64 = the
     * window), a longer one is refused by name instead of computed wrongly */
    char dir[1100];
    if (make("mistral", "b-window", "", dir, sizeof dir) != 0) return;
    aq_error err = {0};
    aq_model *m = NULL;
    CHECK_OK(aq_model_load_path(dir, &m, &err), &err);
    if (!m) return;
    int tok[T + 1] = {0}, lens[1] = {T + 1};
    float *lg = malloc((size_t)(T + 1) * aq_model_config(m)->vocab_size * sizeof(float));
    aq_status st = aq_model_forward(m, tok, lens, 1, NULL, lg, &err);
    printf("mistral 65 tokens -> %s\n", err.msg);
    CHECK(st == AQ_ERR_ARG && strstr(err.msg, "sliding attention window of 64"));
    free(lg);
    aq_model_free(m);
}

/* Two spellings of one config (same seed, so the same weights) give
 * bit-identical logits; with expect_same = 0 they must differ. */
static void check_same(const char *arch, const char *flags_a, const char *flags_b, int expect_same,
                       const char *what)
{
    char da[1100], db[1100], na[64], nb[64];
    static int count;
    snprintf(na, sizeof na, "s%da-%s", count, arch);
    snprintf(nb, sizeof nb, "s%db-%s", count++, arch);
    if (make(arch, na, flags_a, da, sizeof da) || make(arch, nb, flags_b, db, sizeof db)) {
        CHECK_MSG(0, "%s: synth_model.py failed", what);
        return;
    }
    aq_error err = {0};
    aq_model *a = NULL, *b = NULL;
    CHECK_OK(aq_model_load_path(da, &a, &err), &err);
    CHECK_OK(aq_model_load_path(db, &b, &err), &err);
    if (a && b) {
        int V = aq_model_config(a)->vocab_size, tok[T], lens[1] = {T};
        for (int i = 0; i < T; i++)
            tok[i] = (7 * i + 3) % V;
        float *za = malloc(2 * (size_t)T * V * sizeof(float)), *zb = za + (size_t)T * V;
        CHECK_OK(aq_model_forward(a, tok, lens, 1, NULL, za, &err), &err);
        CHECK_OK(aq_model_forward(b, tok, lens, 1, NULL, zb, &err), &err);
        int same = !memcmp(za, zb, (size_t)T * V * sizeof(float));
        printf("%-40s logits %s\n", what, same ? "identical" : "differ");
        CHECK_MSG(same == expect_same, "%s: logits %s", what, same ? "identical" : "differ");
        free(za);
    }
    aq_model_free(a);
    aq_model_free(b);
}

static void check_spellings(void)
{
    /* transformers 5 writes rope_parameters (with rope_theta inside) instead of
     * rope_scaling + rope_theta */
    check_same("llama3.1", "",
               "--set rope_scaling=null --set rope_theta=null --set rope_parameters='{\"rope_type\": "
               "\"llama3\", \"rope_theta\": 500000.0, \"factor\": 8.0, \"low_freq_factor\": 1.0, "
               "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 64}'",
               1, "rope_parameters == rope_scaling");
    /* Qwen: use_sliding_window with max_window_layers >= layers applies no window */
    check_same("qwen2", "", "--set use_sliding_window=true --set max_window_layers=2", 1,
               "qwen2 window on no layer == no window");
    /* the can-fail counterpart: a different rope_theta changes the logits */
    check_same("qwen2", "", "--set rope_theta=10000.0", 0, "qwen2 rope_theta matters");
}

static void check_qwen_window(void)
{
    /* use_sliding_window with window 32 on layer 1 (max_window_layers 1 < 2):
     * 64 tokens would be windowed, so they are refused */
    char dir[1100];
    if (make("qwen2", "b-qwin", "--set use_sliding_window=true", dir, sizeof dir) != 0) return;
    aq_error err = {0};
    aq_model *m = NULL;
    CHECK_OK(aq_model_load_path(dir, &m, &err), &err);
    if (!m) return;
    int tok[T] = {0}, lens[1] = {T};
    float *lg = malloc((size_t)T * aq_model_config(m)->vocab_size * sizeof(float));
    aq_status st = aq_model_forward(m, tok, lens, 1, NULL, lg, &err);
    printf("qwen2 use_sliding_window, 64 tokens -> %s\n", err.msg);
    CHECK(st == AQ_ERR_ARG && strstr(err.msg, "sliding attention window of 32"));
    lens[0] = 32; /* up to the window: full attention, runs */
    CHECK_OK(aq_model_forward(m, tok, lens, 1, NULL, lg, &err), &err);
    free(lg);
    aq_model_free(m);
}

int main(void)
{
    const char *src = getenv("AQ_SOURCE_DIR");
    if (!src || !aq_test_have_numpy()) {
        printf("SKIP: needs AQ_SOURCE_DIR (run through ctest) and /usr/bin/python3 with numpy\n");
        return 77;
    }
    snprintf(synth, sizeof synth, "/usr/bin/python3 '%s/tests/scripts/synth_model.py'", src);
    snprintf(ref, sizeof ref, "/usr/bin/python3 '%s/tests/scripts/hf_ref.py'", src);
    tmp = aq_test_tmpdir("arch");
    static const arch_case cases[] = {
        {"llama", "--dtype f32", 0},
        {"tinyllama", "--dtype bf16 --shards 2", 0},
        {"llama3.1", "--dtype bf16", 1},
        {"llama-linear", "--dtype f16", 1},
        {"llama-dynamic", "--dtype f32", 0}, /* = default below max_position_embeddings */
        {"llama-bias", "--dtype f32 --shards 3", 0},
        {"smollm", "--dtype bf16", 0},
        {"mistral", "--dtype f16 --shards 2", 0},
        {"qwen2", "--dtype bf16 --shards 2", 0},
        {"qwen3", "--dtype f32", 0},
        {"qwen3", "--dtype bf16 --shards 2 --heads 8 --kv-heads 2 --head-dim 16 --seed 5", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_arch(&cases[i]);
    check_bad_inputs();
    check_spellings();
    check_qwen_window();
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (!aq_test_failures) sh(cmd);
    free(tmp);
    AQ_TEST_END();
}
