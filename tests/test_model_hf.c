/* test_model_hf.c — loading through every checkpoint kind: an HF directory
 * written by `adaquant convert` gives bit-identical logits to the llama2.c
 * import; a BF16 copy is converted to F32 once at load (weights equal the
 * BF16-rounded originals, logits close); and a config that does not match the
 * tensors, a missing tensor or a missing untied classifier are clear errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../io/checkpoint.h"
#include "../io/safetensors.h"
#include "../src/model/model.h"
#include "testutil.h"

#define T 50

static int toks[2 * T], lens[2] = {T, T - 13};

static void logits(aq_model *m, float *out)
{
    aq_error err = {0};
    CHECK_OK(aq_model_forward(m, toks, lens, 2, NULL, out, &err), &err);
}

/* A directory with config cfg and a symlink to src's model.safetensors. */
static void make_variant(const char *dir, const char *src, const aq_llama_config *cfg)
{
    char p[1400], q[1400];
    aq_error err = {0};
    snprintf(p, sizeof p, "mkdir -p '%s'", dir);
    CHECK(system(p) == 0);
    snprintf(p, sizeof p, "%s/config.json", dir);
    CHECK_OK(aq_llama_config_write_json(p, cfg, &err), &err);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    snprintf(q, sizeof q, "%s/model.safetensors", src);
    CHECK(symlink(q, p) == 0);
}

static void expect_error(const char *dir, aq_status code, const char *s1, const char *s2)
{
    aq_model *m = NULL;
    aq_error err = {0};
    aq_status st = aq_model_load_path(dir, &m, &err);
    printf("%s -> %s\n", dir, err.msg);
    CHECK_MSG(st == code, "status %d want %d", st, code);
    CHECK_MSG(strstr(err.msg, s1) && (!s2 || strstr(err.msg, s2)), "message: %s", err.msg);
    aq_model_free(m);
}

/* Write dir/model.safetensors as BF16 copies of every tensor of ck. */
static void write_bf16(aq_checkpoint *ck, const char *dir, const aq_llama_config *cfg)
{
    aq_error err = {0};
    aq_st_writer *w = NULL;
    char p[1400];
    snprintf(p, sizeof p, "mkdir -p '%s'", dir);
    CHECK(system(p) == 0);
    CHECK_OK(aq_st_writer_new(&w, &err), &err);
    size_t n = aq_ckpt_count(ck);
    uint16_t **bufs = calloc(n, sizeof *bufs);
    for (size_t i = 0; w && i < n; i++) {
        const aq_tensor_view *v;
        CHECK_OK(aq_ckpt_get(ck, aq_ckpt_name(ck, i), &v, &err), &err);
        float *f = NULL;
        CHECK_OK(aq_view_to_f32_alloc(v, &f, &err), &err);
        int64_t k = aq_view_numel(v);
        bufs[i] = malloc((size_t)k * 2);
        for (int64_t j = 0; j < k; j++)
            bufs[i][j] = aq_f32_to_bf16(f[j]);
        free(f);
        CHECK_OK(
            aq_st_writer_add(w, aq_ckpt_name(ck, i), AQ_BF16, v->ndim, v->shape, bufs[i], &err),
            &err);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    CHECK_OK(aq_st_writer_write(w, p, &err), &err);
    aq_st_writer_free(w);
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    snprintf(p, sizeof p, "%s/config.json", dir);
    CHECK_OK(aq_llama_config_write_json(p, cfg, &err), &err);
}

/* Write dir as a sharded HF checkpoint: tensors alternate between two F32
 * shards listed in model.safetensors.index.json. */
static void write_sharded(aq_checkpoint *ck, const char *dir, const aq_llama_config *cfg,
                          int add_bias)
{
    aq_error err = {0};
    aq_st_writer *w[2] = {NULL, NULL};
    char p[1400];
    snprintf(p, sizeof p, "mkdir -p '%s'", dir);
    CHECK(system(p) == 0);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    FILE *idx = fopen(p, "w");
    CHECK(idx != NULL);
    if (!idx) return;
    fprintf(idx, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    CHECK_OK(aq_st_writer_new(&w[0], &err), &err);
    CHECK_OK(aq_st_writer_new(&w[1], &err), &err);
    size_t n = aq_ckpt_count(ck);
    for (size_t i = 0; w[0] && w[1] && i < n; i++) {
        const aq_tensor_view *v;
        CHECK_OK(aq_ckpt_get(ck, aq_ckpt_name(ck, i), &v, &err), &err);
        CHECK_OK(aq_st_writer_add(w[i % 2], v->name, v->dtype, v->ndim, v->shape, v->data, &err),
                 &err);
        fprintf(idx, "%s\"%s\": \"model-%05zu-of-00002.safetensors\"", i ? ", " : "", v->name,
                i % 2 + 1);
    }
    static const float bias[32];
    const int64_t bshape[1] = {32};
    if (add_bias && w[0]) { /* a projection bias the llama config does not announce: refused */
        CHECK_OK(aq_st_writer_add(w[0], "model.layers.1.self_attn.k_proj.bias", AQ_F32, 1, bshape,
                                  bias, &err),
                 &err);
        fprintf(idx,
                ", \"model.layers.1.self_attn.k_proj.bias\": \"model-00001-of-00002.safetensors\"");
    }
    fprintf(idx, "}}\n");
    fclose(idx);
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/model-%05d-of-00002.safetensors", dir, k + 1);
        CHECK_OK(aq_st_writer_write(w[k], p, &err), &err);
        aq_st_writer_free(w[k]);
    }
    snprintf(p, sizeof p, "%s/config.json", dir);
    CHECK_OK(aq_llama_config_write_json(p, cfg, &err), &err);
}

int main(void)
{
    char *mp = aq_test_asset("models/stories260K/stories260K.bin");
    const char *cli = getenv("AQ_CLI");
    if (!cli || access(cli, X_OK) != 0) {
        printf("SKIP: AQ_CLI (the adaquant binary) is not set; run through ctest\n");
        return 77;
    }
    char *tmp = aq_test_tmpdir("modelhf"), hf[512], cmd[2048], dir[600];
    snprintf(hf, sizeof hf, "%s/hf", tmp);
    snprintf(cmd, sizeof cmd, "'%s' convert '%s' '%s' >/dev/null", cli, mp, hf);
    CHECK(system(cmd) == 0);
    uint64_t s = 3;
    for (int i = 0; i < 2 * T; i++)
        toks[i] = i % T == 0 ? 1 : aq_test_irand(&s, 512);
    aq_error err = {0};
    aq_model *a = NULL, *b = NULL, *c = NULL;
    CHECK_OK(aq_model_load_path(mp, &a, &err), &err);
    CHECK_OK(aq_model_load_path(hf, &b, &err), &err);
    if (!a || !b) AQ_TEST_END();
    size_t n = (size_t)(2 * T - 13) * 512;
    float *la = malloc(n * 4), *lb = malloc(n * 4);
    logits(a, la);
    logits(b, lb);
    CHECK_MSG(!memcmp(la, lb, n * 4), "HF dir logits are not bit-identical to the llama2.c import");
    /* BF16 copy */
    aq_checkpoint *ck = NULL;
    aq_llama_config cfg = *aq_model_config(a);
    CHECK_OK(aq_ckpt_open(hf, &ck, &err), &err);
    snprintf(dir, sizeof dir, "%s/bf16", tmp);
    if (ck) write_bf16(ck, dir, &cfg);
    char sdir[600];
    snprintf(sdir, sizeof sdir, "%s/sharded", tmp);
    if (ck) write_sharded(ck, sdir, &cfg, 0);
    char bdir[600];
    snprintf(bdir, sizeof bdir, "%s/bias", tmp);
    if (ck) write_sharded(ck, bdir, &cfg, 1);
    aq_ckpt_close(ck);
    CHECK_OK(aq_ckpt_open(sdir, &ck, &err), &err);
    CHECK(ck && aq_ckpt_get_kind(ck) == AQ_CKPT_HF_SHARDED);
    aq_ckpt_close(ck);
    CHECK_OK(aq_model_load_path(sdir, &c, &err), &err);
    if (c) {
        logits(c, lb);
        CHECK_MSG(!memcmp(la, lb, n * 4),
                  "sharded HF logits are not bit-identical to the llama2.c import");
        aq_model_free(c);
        c = NULL;
    }
    CHECK_OK(aq_model_load_path(dir, &c, &err), &err);
    if (c) {
        const float *wa, *wc;
        int o, i, ok = 1;
        aq_model_linear(a, 3, AQ_LIN_UP, &wa, &o, &i, &err);
        aq_model_linear(c, 3, AQ_LIN_UP, &wc, &o, &i, &err);
        for (int k = 0; k < o * i; k++)
            ok &= wc[k] == aq_bf16_to_f32(aq_f32_to_bf16(wa[k]));
        CHECK(ok);
        logits(c, lb);
        double num = 0, den = 0;
        for (size_t k = 0; k < n; k++)
            num += (la[k] - lb[k]) * (double)(la[k] - lb[k]), den += la[k] * (double)la[k];
        printf("BF16 checkpoint: relative logit difference %.4f\n", sqrt(num / den));
        /* bf16 keeps 8 bits of mantissa (2^-9 relative per weight), compounded
         * over the blocks like w8 above; 0.05 bounds that, a mis-read tensor
         * gives O(1); num > 0: the bf16 weights really are used */
        CHECK(sqrt(num / den) < 0.05 && num > 0);
        aq_model_free(c);
    }
    /* unsupported projection bias, config / tensor mismatches */
    /* a projection bias the config does not announce (attention_bias false) */
    expect_error(bdir, AQ_ERR_FORMAT, "model.layers.1.self_attn.k_proj.bias", "no bias");
    aq_llama_config bad = cfg;
    bad.hidden_dim = 100;
    snprintf(dir, sizeof dir, "%s/bad_hidden", tmp);
    make_variant(dir, hf, &bad);
    expect_error(dir, AQ_ERR_SHAPE, "model.layers.0.mlp.gate_proj.weight",
                 "expected shape [100, 64] from the config, got [172, 64]");
    bad = cfg;
    bad.n_kv_heads = 8;
    snprintf(dir, sizeof dir, "%s/bad_kv", tmp);
    make_variant(dir, hf, &bad);
    expect_error(dir, AQ_ERR_SHAPE, "model.layers.0.self_attn.k_proj.weight", "[64, 64]");
    bad = cfg;
    bad.n_layers = 6;
    snprintf(dir, sizeof dir, "%s/bad_layers", tmp);
    make_variant(dir, hf, &bad);
    expect_error(dir, AQ_ERR_NOTFOUND, "model.layers.5.", NULL);
    bad = cfg;
    bad.tied_embeddings = 0;
    snprintf(dir, sizeof dir, "%s/bad_untied", tmp);
    make_variant(dir, hf, &bad);
    expect_error(dir, AQ_ERR_NOTFOUND, "lm_head", NULL);
    bad = cfg;
    bad.n_heads = 7;
    snprintf(dir, sizeof dir, "%s/bad_heads", tmp);
    make_variant(dir, hf, &bad);
    expect_error(dir, AQ_ERR_FORMAT, "n_heads", NULL);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0);
    free(la);
    free(lb);
    aq_model_free(a);
    aq_model_free(b);
    free(tmp);
    free(mp);
    AQ_TEST_END();
}
