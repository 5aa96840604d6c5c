/* test_model_lazy.c — the lazily loaded model (issue 13, aq_model_load_lazy)
 * against the eager one on synth_model.py checkpoints: bf16 in 2 shards and a
 * single f16 file. The reference is the eager model, whose forward is tested
 * against float64 NumPy elsewhere (test_arch); here the claim is that lazy
 * loading converts the same bytes the same way, so every result must be
 * bit-identical (memcmp, no tolerance): full forwards, a forward stopped after
 * a block, the KL gradient with an override installed. Also: a lazy model
 * holds only the embedding/head/final norm until a block is acquired, frees it
 * on the last release, checks shapes at load, and reports a NaN in a block
 * when that block is converted, naming the tensor (eager: at load). A lazy
 * override (the write stage's) runs exactly as the same plain override. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/model/grad.h"
#include "../src/model/model.h"
#include "testutil.h"

#define V 32
#define D 16
#define NL 3

static int sh(const char *cmd)
{
    int r = system(cmd);
    return r == -1 ? -1 : r;
}

static int synth(const char *src, const char *dir, const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s/tests/scripts/synth_model.py' %s '%s' --dim %d --layers %d --vocab %d "
             "--heads 2 --kv-heads 1 --hidden 24 --seed 5",
             src, args, dir, D, NL, V);
    return sh(cmd);
}

/* Forwards of the same batch through both models give the same bytes. */
static void check_same(aq_model *e, aq_model *l, const int *tok, const int *lens)
{
    aq_error err = {0};
    float *ze = malloc(16 * V * sizeof(float)), *zl = malloc(16 * V * sizeof(float));
    CHECK(ze && zl);
    if (!ze || !zl) goto done;
    CHECK_OK(aq_model_forward(e, tok, lens, 2, NULL, ze, &err), &err);
    CHECK_OK(aq_model_forward(l, tok, lens, 2, NULL, zl, &err), &err);
    CHECK(!memcmp(ze, zl, 16 * V * sizeof(float)));
    /* every block was released after the forward: only the non-block weights stay */
    CHECK(aq_model_weight_bytes(l) == (size_t)(2 * V * D + D) * sizeof(float));
    /* one block acquired: its weights are the eager model's, byte for byte */
    CHECK_OK(aq_model_block_acquire(l, 1, &err), &err);
    CHECK_OK(aq_model_block_acquire(l, 1, &err), &err); /* nested */
    const float *we, *wl;
    int o, i;
    CHECK_OK(aq_model_linear(e, 1, AQ_LIN_DOWN, &we, &o, &i, &err), &err);
    CHECK_OK(aq_model_linear(l, 1, AQ_LIN_DOWN, &wl, &o, &i, &err), &err);
    CHECK(wl && !memcmp(we, wl, (size_t)o * (size_t)i * sizeof(float)));
    size_t one = aq_model_weight_bytes(l) - (size_t)(2 * V * D + D) * sizeof(float);
    /* two norms [D], q and o [16, 16], k and v [8, 16] (1 KV head of 8), gate/up/down 24 x 16 */
    CHECK(one == (size_t)(2 * D + 2 * 16 * D + 2 * 8 * D + 3 * 24 * D) * sizeof(float));
    aq_model_block_release(l, 1);
    CHECK(aq_model_norm(l, 1, 0, 0) != NULL); /* still held once */
    aq_model_block_release(l, 1);
    CHECK(aq_model_norm(l, 1, 0, 0) == NULL); /* freed on the last release */
    /* a forward stopped after block 0 runs through capture's path too */
    aq_forward_opts fo;
    aq_forward_opts_default(&fo);
    fo.stop_after_block = 0;
    CHECK_OK(aq_model_forward(l, tok, lens, 2, &fo, NULL, &err), &err);
    /* the KL gradient (one block held at a time) with one layer overridden */
    float w[24 * D];
    uint64_t rng = 9;
    for (int k = 0; k < 24 * D; k++) w[k] = (float)aq_test_nrand(&rng) * 0.25f;
    aq_linear_override ov = {w, NULL, 0, 0, 0};
    CHECK_OK(aq_model_set_override(e, 0, AQ_LIN_GATE, &ov, &err), &err);
    CHECK_OK(aq_model_set_override(l, 0, AQ_LIN_GATE, &ov, &err), &err);
    size_t nr = (size_t)NL * 16 * D;
    float *re = calloc(nr, sizeof(float)), *rl = calloc(nr, sizeof(float));
    double ke = 0, kl = 0;
    CHECK(re && rl);
    if (re && rl) {
        CHECK_OK(aq_model_kl_grad_resid(e, tok, lens, 2, NULL, &ke, re, &err), &err);
        CHECK_OK(aq_model_kl_grad_resid(l, tok, lens, 2, NULL, &kl, rl, &err), &err);
        CHECK(ke > 0 && ke == kl && !memcmp(re, rl, nr * sizeof(float)));
        CHECK(aq_model_weight_bytes(l) == (size_t)(2 * V * D + D) * sizeof(float));
    }
    free(re);
    free(rl);
done:
    free(ze);
    free(zl);
}

/* A lazy override's source: a fixed matrix (or NaN), counting its calls. */
typedef struct lazy_src {
    const float *w;
    int calls;
} lazy_src;

static void lazy_dequant(const void *ctx, float *out)
{
    lazy_src *s = (lazy_src *)ctx;
    s->calls++;
    for (int k = 0; k < D * 24; k++) out[k] = s->w ? s->w[k] : NAN;
}

/* The write stage's lazy override (aq_model_set_override_lazy) against the
 * same matrix installed as a plain override in the eager model: the quantized
 * logits are bit-identical, the source runs once per acquire of its block (not
 * for a nested one) and the weight is gone after the release; a NaN from the
 * source fails the acquire, naming the linear. */
static void check_lazy_override(aq_model *e, aq_model *l, const int *tok, const int *lens)
{
    aq_error err = {0};
    float w[D * 24], ze[16 * V], zl[16 * V];
    uint64_t rng = 11;
    for (int k = 0; k < D * 24; k++) w[k] = (float)aq_test_nrand(&rng) * 0.25f;
    float bias[D];
    for (int k = 0; k < D; k++) bias[k] = (float)aq_test_nrand(&rng) * 0.1f;
    aq_linear_override ov = {w, bias, 0, 0, 0}, lz = {NULL, bias, 0, 0, 0};
    lazy_src src = {w, 0};
    int before = aq_model_override_count(l);
    CHECK_OK(aq_model_set_override(e, 1, AQ_LIN_DOWN, &ov, &err), &err);
    CHECK_OK(aq_model_set_override_lazy(l, 1, AQ_LIN_DOWN, &lz, lazy_dequant, &src, &err), &err);
    CHECK(src.calls == 0 && aq_model_override_count(l) == before + 1); /* block 1 is not held */
    aq_forward_opts fo;
    aq_forward_opts_default(&fo);
    fo.quantized = 1;
    CHECK_OK(aq_model_forward(e, tok, lens, 2, &fo, ze, &err), &err);
    CHECK_OK(aq_model_forward(l, tok, lens, 2, &fo, zl, &err), &err);
    CHECK(src.calls == 1 && !memcmp(ze, zl, sizeof ze));
    CHECK_OK(aq_model_block_acquire(l, 1, &err), &err);
    CHECK_OK(aq_model_block_acquire(l, 1, &err), &err);
    CHECK(src.calls == 2);
    CHECK_OK(aq_model_forward(l, tok, lens, 2, &fo, zl, &err), &err); /* held: no new call */
    CHECK(src.calls == 2 && !memcmp(ze, zl, sizeof ze));
    aq_model_block_release(l, 1);
    aq_model_block_release(l, 1);
    lazy_src nan_src = {NULL, 0};
    CHECK_OK(aq_model_set_override_lazy(l, 1, AQ_LIN_DOWN, &lz, lazy_dequant, &nan_src, &err), &err);
    CHECK(aq_model_forward(l, tok, lens, 2, &fo, zl, &err) == AQ_ERR_NUMERIC && strstr(err.msg, "layers.1.mlp.down_proj"));
    CHECK(nan_src.calls == 1 && aq_model_weight_bytes(l) == (size_t)(2 * V * D + D) * sizeof(float));
    aq_model_clear_override(l, 1, AQ_LIN_DOWN);
    aq_model_clear_override(e, 1, AQ_LIN_DOWN);
    CHECK(aq_model_override_count(l) == before);
}

static void compare(const char *dir, const int *tok, const int *lens)
{
    aq_error err = {0};
    aq_model *e = NULL, *l = NULL;
    CHECK_OK(aq_model_load_path(dir, &e, &err), &err);
    CHECK_OK(aq_model_load_lazy(dir, &l, &err), &err);
    if (e && l) {
        CHECK(aq_model_is_lazy(l) && !aq_model_is_lazy(e));
        check_same(e, l, tok, lens);
        check_lazy_override(e, l, tok, lens);
    }
    aq_model_free(e);
    aq_model_free(l);
}

/* Write a bf16 NaN as the first element of `name` in whichever shard of dir holds it. */
static int poison(const char *dir, const char *name)
{
    for (int s = 1; s <= 2; s++) {
        char path[4200];
        snprintf(path, sizeof path, "%.4000s/model-%05d-of-00002.safetensors", dir, s);
        size_t len = 0;
        unsigned char *buf = aq_test_read_file(path, &len);
        if (!buf || len < 8) return -1;
        uint64_t n = 0;
        for (int k = 7; k >= 0; k--) n = n << 8 | buf[k];
        json_t *h = json_loadb((const char *)buf + 8, (size_t)n, 0, NULL);
        json_t *t = h ? json_object_get(h, name) : NULL;
        if (t) {
            size_t at = 8 + (size_t)n + (size_t)json_integer_value(json_array_get(json_object_get(t, "data_offsets"), 0));
            buf[at] = 0xC0, buf[at + 1] = 0x7F; /* bf16 0x7FC0, little-endian */
            FILE *f = fopen(path, "r+b");
            int ok = f && fwrite(buf, 1, len, f) == len;
            if (f) fclose(f);
            json_decref(h);
            free(buf);
            return ok ? 0 : -1;
        }
        json_decref(h);
        free(buf);
    }
    return -1;
}

static void check_errors(const char *src, const char *tmp, const char *bf, const int *tok, const int *lens)
{
    aq_error err = {0};
    aq_model *m = NULL;
    const char *bad = "model.layers.1.mlp.up_proj.weight";
    CHECK(poison(bf, bad) == 0);
    CHECK(aq_model_load_path(bf, &m, &err) == AQ_ERR_NUMERIC && strstr(err.msg, bad));
    aq_model_free(m);
    m = NULL;
    CHECK_OK(aq_model_load_lazy(bf, &m, &err), &err); /* blocks are not converted at load */
    if (m) {
        CHECK_OK(aq_model_block_acquire(m, 0, &err), &err);
        aq_model_block_release(m, 0);
        memset(&err, 0, sizeof err);
        CHECK(aq_model_forward(m, tok, lens, 2, NULL, NULL, &err) == AQ_ERR_NUMERIC);
        CHECK_MSG(strstr(err.msg, bad) && strstr(err.msg, bf), "%s", err.msg);
        CHECK(aq_model_block_acquire(m, NL, &err) == AQ_ERR_ARG);
    }
    aq_model_free(m);
    /* a shape mismatch in any block is found at load, before any conversion */
    char q3[4200];
    snprintf(q3, sizeof q3, "%.4000s/q3", tmp);
    CHECK(synth(src, q3, "qwen3 --bad-qnorm") == 0);
    m = NULL;
    CHECK(aq_model_load_lazy(q3, &m, &err) == AQ_ERR_SHAPE && strstr(err.msg, "q_norm"));
    aq_model_free(m);
}

int main(void)
{
    const char *src = getenv("AQ_SOURCE_DIR");
    if (!src || !aq_test_have_numpy()) {
        printf("SKIP: needs AQ_SOURCE_DIR (run through ctest) and /usr/bin/python3 with numpy\n");
        return 77;
    }
    char *tmp = aq_test_tmpdir("model_lazy"), bf[4200], f16[4200];
    snprintf(bf, sizeof bf, "%.4000s/bf16", tmp);
    snprintf(f16, sizeof f16, "%.4000s/f16", tmp);
    if (synth(src, bf, "llama --dtype bf16 --shards 2") || synth(src, f16, "llama --dtype f16")) {
        fprintf(stderr, "synth_model.py failed\n");
        return 1;
    }
    uint64_t rng = 3;
    int lens[2] = {7, 9}, tok[16];
    for (int i = 0; i < 16; i++) tok[i] = (int)(aq_test_urand(&rng) * V) % V;
    compare(bf, tok, lens);
    compare(f16, tok, lens);
    check_errors(src, tmp, bf, tok, lens);
    AQ_TEST_END();
}
