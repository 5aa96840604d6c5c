/* options.c — AdaQuant layer options: defaults, the "wKaM" option string, and
 * the deterministic per-(layer, option, seed) 64-bit seed. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <strings.h>

#include "../quant/ggml_blocks.h"
#include "adaquant.h"
#include "layer_state.h"

void aq_layer_opts_default(aq_layer_opts *o)
{
    memset(o, 0, sizeof *o);
    o->w_bits = 4;
    o->a_bits = 16;
    o->symmetric = 0;
    o->iters = 100;
    o->outer_iters = 6;
    o->polish_rounds = 8;
    o->starts = 5;
    o->init = AQ_INIT_GPTQ;
    o->mode = AQ_MODE_AUTO;
    o->seed = 0;
    o->lr_w = 0.05;
    o->lr_scale = 0.002;
    o->lr_zero = 0.02;
    o->lr_bias = 0.01;
    o->lr_act = 0.01;
    o->eval_every = 10;
    o->batch_rows = 256;
    o->f32_gemm = 1;
    o->gptq_damp = 0.01;
    o->gptq_block = 128;
    o->gptq_act_order = 1;
    o->compute_gptq = 1;
}

/* The group formats: "wKgG" and the ggml block types (adaquant.h). 1 if s is
 * one (o filled), 0 if it is not of that shape, -1 if malformed (err set). */
static int parse_group(const char *s, aq_layer_opts *o, aq_error *err)
{
    static const aq_ggml_type blk[] = {AQ_GGML_Q4_0, AQ_GGML_Q4_1, AQ_GGML_Q5_0, AQ_GGML_Q5_1, AQ_GGML_Q8_0,
                                       AQ_GGML_Q2_K, AQ_GGML_Q3_K, AQ_GGML_Q4_K, AQ_GGML_Q5_K, AQ_GGML_Q6_K};
    for (size_t i = 0; i < sizeof blk / sizeof blk[0]; i++) {
        const aq_ggml_format *f = aq_ggml_format_of(blk[i]);
        if (strcasecmp(s, f->name)) continue;
        o->w_bits = f->name[1] - '0';
        o->a_bits = 16;
        o->symmetric = 0;
        o->group = f->block; /* 32, or 256 for the K-quants' super-blocks */
        o->ggml = 1;
        o->gtype = (int)blk[i];
        return 1;
    }
    int w = 0, g = 0, n = 0;
    if (sscanf(s, "w%dg%d%n", &w, &g, &n) != 2 || n <= 0 || s[1] == '+' || s[1] == '-') return 0;
    if (s[n] || w < 2 || w > 8 || (g != 32 && g != 64 && g != 128)) {
        aq_fail(err, AQ_ERR_ARG, "bad option '%s': expected wKgG with K in 2..8 and G in 32, 64, 128", s);
        return -1;
    }
    o->w_bits = w;
    o->a_bits = 16;
    o->symmetric = 0;
    o->group = g;
    o->ggml = 0;
    o->gtype = 0;
    return 1;
}

aq_status aq_layer_opts_parse(const char *option, aq_layer_opts *o, aq_error *err)
{
    int w = 0, a = 0, n = 0;
    const char *s = option ? option : "";
    int grp = parse_group(s, o, err);
    if (grp) return grp > 0 ? AQ_OK : AQ_ERR_ARG;
    if (sscanf(s, "w%da%d%n", &w, &a, &n) != 2 || n <= 0)
        return aq_fail(err, AQ_ERR_ARG, "bad option '%s': expected wKaM, e.g. w4a8 or w3a16", s);
    int sym = 0;
    if (s[n] == 's' && s[n + 1] == '\0')
        sym = 1;
    else if (s[n] != '\0')
        return aq_fail(err, AQ_ERR_ARG, "bad option '%s': trailing '%s' (only 's' = symmetric)", s, s + n);
    if (w != 2 && w != 3 && w != 4 && w != 6 && w != 8)
        return aq_fail(err, AQ_ERR_ARG, "bad option '%s': weight bits must be 2, 3, 4, 6 or 8", s);
    if (a != 4 && a != 8 && a != 16)
        return aq_fail(err, AQ_ERR_ARG, "bad option '%s': activation bits must be 4, 8 or 16", s);
    o->w_bits = w;
    o->a_bits = a;
    o->symmetric = sym;
    o->group = o->ggml = o->gtype = 0;
    return AQ_OK;
}

void aq_layer_opts_string(const aq_layer_opts *o, char *buf, size_t n)
{
    const aq_ggml_format *f = o->ggml ? aq_ggml_format_of((aq_ggml_type)o->gtype) : NULL;
    if (f) {
        snprintf(buf, n, "%s", f->name);
        for (char *c = buf; *c; c++) *c = (char)tolower((unsigned char)*c);
    } else if (o->group > 0)
        snprintf(buf, n, "w%dg%d", o->w_bits, o->group);
    else
        snprintf(buf, n, "w%da%d%s", o->w_bits, o->a_bits, o->symmetric ? "s" : "");
}

aq_status aq_tensor_opt_parse(const char *s, int *bits, aq_error *err)
{
    int k = 0, n = 0;
    const char *o = s ? s : "";
    if (!strcmp(o, "f32") || !strcmp(o, "f16")) {
        *bits = o[1] == '3' ? 32 : 16;
        return AQ_OK;
    }
    if (sscanf(o, "w%d%n", &k, &n) == 1 && n > 1 && !o[n] && k >= 2 && k <= 8 && o[1] != '+' && o[1] != '-') {
        *bits = k;
        return AQ_OK;
    }
    if (aq_tensor_opt_gtype(o) >= 0) { /* a ggml block type, as llama.cpp stores token_embd / output */
        *bits = 0;
        return AQ_OK;
    }
    return aq_fail(err, AQ_ERR_ARG,
                   "bad embedding/classifier option '%s': expected f32, f16, wK with K in 2..8 or a ggml block "
                   "type (q8_0, q6_k, q5_0, q4_0 ...)", o);
}

int aq_tensor_opt_gtype(const char *s)
{
    /* lower case only: the canonical spelling of the menus ("q4_0") */
    const aq_ggml_format *f = s && s[0] == 'q' ? aq_ggml_format_by_name(s) : NULL;
    return f ? (int)f->type : -1;
}

uint64_t aq_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

uint64_t aq_layer_seed(const char *name, const char *option, uint64_t user_seed)
{
    static const unsigned char nul = 0;
    uint64_t h = 0xCBF29CE484222325ull;
    const char *a = name ? name : "", *b = option ? option : "";
    h = fnv1a(h, a, strlen(a));
    h = fnv1a(h, &nul, 1);
    h = fnv1a(h, b, strlen(b));
    h = fnv1a(h, &nul, 1);
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(user_seed >> (8 * i));
    h = fnv1a(h, le, 8);
    return aq_splitmix64(&h);
}
