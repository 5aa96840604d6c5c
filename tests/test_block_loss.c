/* test_block_loss.c — the one-block allocation losses (src/model/block_loss.h)
 * against tests/scripts/block_loss_ref.py, a float64 NumPy reference built on
 * hf_ref.py's block (the Fisher weights there by finite differences of the
 * cross-entropy, not a backward pass), on a tiny random Llama-shaped model from
 * tests/scripts/synth_model.py: two windows of different lengths packed in
 * one batch, the quantized layer a perturbed weight (W times 1 + 0.1 N).
 *
 * Tolerance 1e-3 relative: the engine computes the block outputs in float32
 * (relative error ~1e-6 of |y|, test_arch's bound is 1e-4 on logits), and the
 * loss is made of differences y_q - y that are ~5% of |y| here, so each
 * difference carries ~2e-5 relative error, its square ~4e-5; the Fisher
 * weights are squares of a float32 backward (~1e-5 relative); the reference's
 * finite differences are good to ~1e-9. 1e-3 leaves 10x; a wrong position
 * mask, a missing 1/2 or a weight of the wrong block is off by > 5%.
 * Plus the exact answers: the FP weight as override gives 0 for both losses,
 * and the bad calls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/model/block_loss.h"
#include "testutil.h"

#define REL_TOL 1e-3

static char dir[1024], script[1024];

static int sh(const char *cmd)
{
    int r = system(cmd);
    if (r != 0) fprintf(stderr, "command failed (%d): %s\n", r, cmd);
    return r;
}

static const char *proj_name(aq_linear which)
{
    static const char *names[AQ_LIN_COUNT] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                              "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                              "mlp.down_proj"};
    return names[which];
}

/* The reference's MSE and Fisher losses for weight w on (block, which). */
static int reference(const char *tmp, int block, aq_linear which, const float *w, size_t nw, const int *tok,
                     const int *lens, int n_seqs, double out[2])
{
    char wf[1100], of[1100], cmd[8192];
    snprintf(wf, sizeof wf, "%s/w.f32", tmp);
    snprintf(of, sizeof of, "%s/ref.txt", tmp);
    FILE *f = fopen(wf, "wb");
    if (!f || fwrite(w, sizeof *w, nw, f) != nw) return -1;
    fclose(f);
    int k = snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' '%s' %d %s %d,%d", script, dir, wf, block,
                     proj_name(which), lens[0], lens[1]);
    for (int i = 0, n = lens[0] + lens[1]; i < n && n_seqs == 2; i++)
        k += snprintf(cmd + k, sizeof cmd - (size_t)k, " %d", tok[i]);
    snprintf(cmd + k, sizeof cmd - (size_t)k, " > '%s'", of);
    if (sh(cmd) != 0) return -1;
    f = fopen(of, "r");
    int ok = f && fscanf(f, "%lf %lf", &out[0], &out[1]) == 2;
    if (f) fclose(f);
    return ok ? 0 : -1;
}

static void check_layer(aq_model *m, aq_block_sens *mse, aq_block_sens *fis, const char *tmp, int block,
                        aq_linear which, const int *tok, const int *lens, uint64_t *rng)
{
    aq_error err = {0};
    const float *w0;
    int d_out, d_in;
    CHECK_OK(aq_model_linear(m, block, which, &w0, &d_out, &d_in, &err), &err);
    size_t nw = (size_t)d_out * (size_t)d_in;
    float *w = malloc(nw * sizeof *w);
    for (size_t i = 0; i < nw; i++) w[i] = w0[i] * (float)(1.0 + 0.1 * aq_test_nrand(rng));
    aq_linear_override ov = {w, NULL, 0, 0, 0};
    double got[2] = {-1, -1}, want[2];
    CHECK_OK(aq_block_sens_layer(mse, block, which, &ov, &got[0], &err), &err);
    CHECK_OK(aq_block_sens_layer(fis, block, which, &ov, &got[1], &err), &err);
    CHECK_MSG(reference(tmp, block, which, w, nw, tok, lens, 2, want) == 0, "reference failed");
    for (int k = 0; k < 2; k++)
        CHECK_MSG(fabs(got[k] - want[k]) <= REL_TOL * want[k] && want[k] > 0,
                  "block %d %s %s: engine %.9g, reference %.9g", block, proj_name(which), k ? "fisher" : "mse",
                  got[k], want[k]);
    /* the FP weight itself: the block reproduces its cached output exactly */
    ov.weight = w0;
    CHECK_OK(aq_block_sens_layer(mse, block, which, &ov, &got[0], &err), &err);
    CHECK_OK(aq_block_sens_layer(fis, block, which, &ov, &got[1], &err), &err);
    CHECK_MSG(got[0] == 0.0 && got[1] == 0.0, "FP override: %g %g", got[0], got[1]);
    free(w);
}

static void check_errors(aq_model *m, aq_block_sens *s, const int *tok, const int *lens)
{
    aq_error err = {0};
    const float *w0;
    int d_out, d_in;
    aq_model_linear(m, 0, AQ_LIN_Q, &w0, &d_out, &d_in, &err);
    aq_linear_override ov = {w0, NULL, 0, 0, 0};
    double loss;
    CHECK(aq_block_sens_layer(s, 2, AQ_LIN_Q, &ov, &loss, &err) == AQ_ERR_ARG && strstr(err.msg, "not a block"));
    CHECK_OK(aq_model_set_override(m, 0, AQ_LIN_Q, &ov, &err), &err);
    CHECK(aq_block_sens_layer(s, 1, AQ_LIN_Q, &ov, &loss, &err) == AQ_ERR_ARG && strstr(err.msg, "already"));
    aq_block_sens *t = NULL;
    CHECK(aq_block_sens_new(m, tok, lens, 2, 0, AQ_BLOCK_LOSS_MSE, &t, &err) == AQ_ERR_ARG && !t);
    aq_model_clear_override(m, 0, AQ_LIN_Q);
    int ones[2] = {1, 1};
    CHECK(aq_block_sens_new(m, tok, ones, 2, 0, AQ_BLOCK_LOSS_MSE, &t, &err) == AQ_ERR_ARG &&
          strstr(err.msg, "predicts"));
    CHECK(aq_block_sens_new(m, tok, lens, 2, 0, (aq_block_loss_kind)7, &t, &err) == AQ_ERR_ARG);
}

/* --loss auto's rule (block_loss.h) on two known shapes: stories260K (dim 64,
 * 5 blocks, 8/4 heads, hidden 172, vocab 512: 226,560 block weights, a 32 MiB
 * KL cache at 16 x 256 tokens) keeps the network KL; TinyLlama-1.1B (dim 2048,
 * 22 blocks, 32/4 heads, hidden 5632, vocab 32000: 22 x 44,040,192 =
 * 968,884,224 block weights by hand, a 2000 MiB cache) takes block-fisher. */
static void check_auto(void)
{
    aq_llama_config s = {0}, t = {0};
    s.dim = 64, s.n_layers = 5, s.n_heads = 8, s.n_kv_heads = 4, s.hidden_dim = 172, s.vocab_size = 512;
    t.dim = 2048, t.n_layers = 22, t.n_heads = 32, t.n_kv_heads = 4, t.hidden_dim = 5632, t.vocab_size = 32000;
    CHECK(aq_block_params(&s) == 226560 && aq_block_params(&t) == 968884224);
    CHECK(aq_block_loss_auto(&s, 16 * 256) == 0);
    CHECK(aq_block_loss_auto(&t, 16 * 256) == AQ_BLOCK_LOSS_FISHER);
    CHECK(aq_block_loss_auto(&s, 16 * 256 * 16) == AQ_BLOCK_LOSS_FISHER); /* 512 MiB of KL cache */
}

int main(void)
{
    check_auto();
    const char *src = getenv("AQ_SOURCE_DIR");
    if (!src || !aq_test_have_numpy()) {
        printf("SKIP: needs AQ_SOURCE_DIR (run through ctest) and /usr/bin/python3 with numpy\n");
        return 77;
    }
    char *tmp = aq_test_tmpdir("block_loss"), cmd[4096];
    snprintf(dir, sizeof dir, "%s/model", tmp);
    snprintf(script, sizeof script, "%s/tests/scripts/block_loss_ref.py", src);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s/tests/scripts/synth_model.py' llama '%s' --dtype f32 --dim 16 --layers 2 "
             "--vocab 32 --heads 2 --kv-heads 1 --hidden 24 --seed 3",
             src, dir);
    if (sh(cmd) != 0) {
        fprintf(stderr, "synth_model.py failed\n");
        return 1;
    }
    aq_error err = {0};
    aq_model *m = NULL;
    CHECK_OK(aq_model_load_path(dir, &m, &err), &err);
    if (!m) AQ_TEST_END();
    uint64_t rng = 11;
    int lens[2] = {7, 9}, tok[16];
    for (int i = 0; i < 16; i++) tok[i] = (int)(aq_test_urand(&rng) * 32) % 32;
    aq_block_sens *mse = NULL, *fis = NULL;
    CHECK_OK(aq_block_sens_new(m, tok, lens, 2, 0, AQ_BLOCK_LOSS_MSE, &mse, &err), &err);
    CHECK_OK(aq_block_sens_new(m, tok, lens, 2, 0, AQ_BLOCK_LOSS_FISHER, &fis, &err), &err);
    if (mse && fis) {
        check_layer(m, mse, fis, tmp, 0, AQ_LIN_DOWN, tok, lens, &rng);
        check_layer(m, mse, fis, tmp, 1, AQ_LIN_Q, tok, lens, &rng);
        check_layer(m, mse, fis, tmp, 0, AQ_LIN_V, tok, lens, &rng);
        check_errors(m, mse, tok, lens);
    }
    aq_block_sens_free(mse);
    aq_block_sens_free(fis);
    aq_model_free(m);
    AQ_TEST_END();
}
