/* export_gptq.c — `adaquant export OUTDIR --format gptq --out DIR`: the
 * quantized model of a pipeline OUTDIR (docs/FORMAT.md) as a GPTQ checkpoint
 * (docs/EXPORT.md "GPTQ checkpoints" is the exact layout; this says why).
 *
 * OUTDIR holds per output row an unsigned code grid u in [0, 2^K), a float32
 * scale and a float32 zero point: W = s * (u - z). GPTQ holds the same thing
 * with one group over the whole row (group_size -1): int32 words packed along
 * the input dimension, low bits first, which for every K (3 included, AutoGPTQ's
 * 10|1|10|1|10 scheme) is one little-endian bit stream per output column; fp16
 * scales; integer zero points stored as z - 1 (checkpoint_format "gptq", the
 * v1 convention every runtime reads; GPTQModel converts it to its v2 itself).
 * So the codes and integer zero points carry over bit for bit, the scales lose
 * fp16 precision (reported), and a fractional zero point (AdaQuant and global
 * tuning move asymmetric zeros) cannot be represented: refused, or rounded
 * with --round-zeros and the error reported. A zero point outside v1's
 * 1..2^b moves together with the row's codes when they leave room (exact).
 * K = 6 has no continuous GPTQ layout and is widened to 8 bits, exactly (same
 * codes, same zero). The converted tensors are held until the one atomic
 * safetensors write: memory ~ the GPTQ checkpoint plus OUTDIR's mapping. */
#include "export_gptq.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../io/atomic_file.h"
#include "../io/checkpoint.h"
#include "../io/safetensors.h"
#include "../src/adaquant/qlayer.h"

#define GPTQ_PATH 4096

/* The largest dequantization error against adaquant's own weights, and where. */
typedef struct gptq_err {
    double v;
    char where[1100];
} gptq_err;

typedef struct gptq_ctx {
    aq_checkpoint *ck;
    aq_llama_config cfg;
    const aq_export_gptq_opts *o;
    aq_st_writer *w;
    void **bufs; /* converted tensors, borrowed by w until written */
    size_t nbuf, capbuf;
    json_t *layers;            /* prefix -> {"bits", "sym"} in model order */
    double params_at_bits[9];  /* weights per exported bit width (majority -> top-level bits) */
    size_t rows, rows_rounded, rows_shifted, n_layers;
    gptq_err scale_rel, w_rel, w_steps;
} gptq_ctx;

/* A zeroed buffer of n bytes that lives until the writer has written. */
static void *keep_alloc(gptq_ctx *c, size_t n, aq_error *err)
{
    if (c->nbuf == c->capbuf) {
        size_t cap = c->capbuf ? 2 * c->capbuf : 64;
        void **b = realloc(c->bufs, cap * sizeof *b);
        if (!b) return aq_fail_nomem(err, "export buffers", cap * sizeof *b), NULL;
        c->bufs = b;
        c->capbuf = cap;
    }
    void *p = calloc(n ? n : 1, 1);
    if (!p) return aq_fail_nomem(err, "export tensor", n), NULL;
    c->bufs[c->nbuf++] = p;
    return p;
}

static void note_err(gptq_err *e, double v, const char *prefix, size_t row)
{
    if (!(v > e->v)) return;
    e->v = v;
    snprintf(e->where, sizeof e->where, "%s row %zu", prefix, row);
}

/* The layer's input width from config.json (docs/FORMAT.md: d_in is not stored). */
static aq_status d_in_of(const gptq_ctx *c, const char *prefix, size_t *d_in, aq_error *err)
{
    const char *leaf = strrchr(prefix, '.');
    leaf = leaf ? leaf + 1 : prefix;
    static const char *const by_dim[] = {"q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"};
    for (size_t i = 0; i < sizeof by_dim / sizeof *by_dim; i++)
        if (!strcmp(leaf, by_dim[i])) return *d_in = (size_t)c->cfg.dim, AQ_OK;
    if (!strcmp(leaf, "o_proj"))
        return *d_in = (size_t)c->cfg.n_heads * (size_t)aq_llama_head_dim(&c->cfg), AQ_OK;
    if (!strcmp(leaf, "down_proj")) return *d_in = (size_t)c->cfg.hidden_dim, AQ_OK;
    return aq_fail(err, AQ_ERR_FORMAT, "quantized layer %s: not a linear of a Llama-family block", prefix);
}

/* Values v[0..n) of `bits` bits each as one little-endian bit stream over
 * 32-bit words: value i occupies stream bits [i*bits, (i+1)*bits), stream bit
 * k is bit k%32 of word k/32, and word j is stored at words[j * stride]. */
static void pack_stream(const uint32_t *v, size_t n, int bits, uint32_t *words, size_t stride)
{
    for (size_t i = 0; i < n; i++) {
        size_t k = i * (size_t)bits, j = k / 32;
        unsigned sh = (unsigned)(k % 32);
        words[j * stride] |= v[i] << sh;
        if (sh + (unsigned)bits > 32) words[(j + 1) * stride] |= v[i] >> (32 - sh);
    }
}

/* Row r's integer zero point zi (z itself, or round(z) with --round-zeros) and
 * a code shift t. GPTQ v1 stores z - 1 in `bits` bits, so 1 <= zi + t <= 2^bits
 * is needed; t = 0 unless zi is outside, then the row's codes and zero point
 * move together by t (W = h (u - zi) unchanged) if the codes leave room. */
static aq_status row_zero(gptq_ctx *c, const char *prefix, const aq_qlayer *q, size_t r, int bits, float *zi,
                          int *shift, aq_error *err)
{
    float z = q->w_zero[r];
    *zi = nearbyintf(z);
    if (*zi != z) {
        if (!c->o->round_zeros)
            return aq_fail(err, AQ_ERR_ARG,
                           "layer %s row %zu: zero point %.9g is not an integer (AdaQuant and global "
                           "tuning move asymmetric zero points) and GPTQ stores integer zero points: "
                           "pass --round-zeros to round them (the error is reported), or quantize with "
                           "symmetric options (e.g. w4a16s) for an exact export",
                           prefix, r, (double)z);
        c->rows_rounded++;
    }
    int top = 1 << bits, lo = 255, hi = 0;
    float t = *zi < 1 ? 1 - *zi : *zi > (float)top ? (float)top - *zi : 0;
    *shift = 0;
    if (t == 0) return AQ_OK;
    for (size_t i = 0; i < q->d_in; i++) {
        int u = q->codes[r * q->d_in + i];
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
    }
    if ((float)hi + t > (float)(top - 1) || (float)lo + t < 0)
        return aq_fail(err, AQ_ERR_ARG,
                       "layer %s row %zu: zero point %.9g is outside 1..%d, which GPTQ's v1 zero storage "
                       "(z - 1 in %d bits) cannot hold, and the row's codes (%d..%d) leave no room to "
                       "shift codes and zero together",
                       prefix, r, (double)*zi, top, bits, lo, hi);
    *shift = (int)t;
    c->rows_shifted++;
    return AQ_OK;
}

/* fp16 scale of row r (finite, > 0) and the error figures of its weights:
 * the GPTQ weight h * (u - zi) is exact in float32 (11 x 9 significant bits). */
static aq_status row_scale(gptq_ctx *c, const char *prefix, const aq_qlayer *q, size_t r, float zi,
                           uint16_t *h, aq_error *err)
{
    float s = q->w_scale[r];
    *h = aq_f32_to_f16(s);
    float hs = aq_f16_to_f32(*h);
    if (!isfinite(hs) || hs <= 0)
        return aq_fail(err, AQ_ERR_NUMERIC, "layer %s row %zu: scale %.9g is out of fp16's range", prefix,
                       r, (double)s);
    note_err(&c->scale_rel, fabs((double)hs - s) / s, prefix, r);
    const uint8_t *u = q->codes + r * q->d_in;
    const float *wa = q->weight + r * q->d_in;
    for (size_t i = 0; i < q->d_in; i++) {
        double d = fabs((double)(hs * ((float)u[i] - zi)) - wa[i]);
        note_err(&c->w_steps, d / s, prefix, r);
        if (wa[i] != 0) note_err(&c->w_rel, d / fabs((double)wa[i]), prefix, r);
    }
    return AQ_OK;
}

/* The exported bit width: 2, 3, 4, 8 as they are; 6 (no continuous GPTQ layout) as 8. */
static int gptq_bits(int k)
{
    return k == 2 || k == 3 || k == 4 ? k : 8;
}

static aq_status add_tensor(gptq_ctx *c, const char *prefix, const char *suffix, aq_dtype dt, int ndim,
                            int64_t d0, int64_t d1, const void *data, aq_error *err)
{
    char name[1024];
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    int64_t shp[2] = {d0, d1};
    return aq_st_writer_add(c->w, name, dt, ndim, shp, data, err);
}

/* The GPTQ tensors of one loaded layer (docs/EXPORT.md "GPTQ"). */
static aq_status emit_layer(gptq_ctx *c, const char *prefix, const aq_qlayer *q, aq_error *err)
{
    int bits = gptq_bits(q->w_bits);
    size_t n = q->d_out, d = q->d_in, wrows = (d * (size_t)bits + 31) / 32, zcols = (n * (size_t)bits + 31) / 32;
    uint32_t *qw = keep_alloc(c, wrows * n * 4, err), *qz = qw ? keep_alloc(c, zcols * 4, err) : NULL;
    uint16_t *sc = qz ? keep_alloc(c, n * 2, err) : NULL, *bi = sc ? keep_alloc(c, n * 2, err) : NULL;
    int32_t *gi = bi ? keep_alloc(c, d * 4, err) : NULL; /* one group: g_idx all 0 */
    uint32_t *col = gi ? keep_alloc(c, (d > n ? d : n) * 4, err) : NULL;
    if (!col) return err ? err->code : AQ_ERR_NOMEM;
    uint32_t *zs = col; /* reused below for the stored zeros, after the codes */
    float *zi = keep_alloc(c, n * sizeof(float), err);
    if (!zi) return err ? err->code : AQ_ERR_NOMEM;
    for (size_t r = 0; r < n; r++) {
        int t;
        AQ_TRY(row_zero(c, prefix, q, r, bits, &zi[r], &t, err));
        AQ_TRY(row_scale(c, prefix, q, r, zi[r], &sc[r], err));
        uint16_t b = aq_f32_to_f16(q->bias[r]);
        if (!isfinite(aq_f16_to_f32(b)))
            return aq_fail(err, AQ_ERR_NUMERIC, "layer %s: bias[%zu] = %g is out of fp16's range", prefix, r,
                           (double)q->bias[r]);
        bi[r] = b;
        for (size_t i = 0; i < d; i++) col[i] = (uint32_t)(q->codes[r * d + i] + t);
        pack_stream(col, d, bits, qw + r, n); /* column r of [wrows, n] */
        zi[r] += (float)t;
    }
    for (size_t r = 0; r < n; r++) zs[r] = (uint32_t)zi[r] - 1u; /* v1: stored z - 1 */
    pack_stream(zs, n, bits, qz, 1);
    c->rows += n;
    c->params_at_bits[bits] += (double)n * (double)d;
    AQ_TRY(add_tensor(c, prefix, "qweight", AQ_I32, 2, (int64_t)wrows, (int64_t)n, qw, err));
    AQ_TRY(add_tensor(c, prefix, "qzeros", AQ_I32, 2, 1, (int64_t)zcols, qz, err));
    AQ_TRY(add_tensor(c, prefix, "scales", AQ_F16, 2, 1, (int64_t)n, sc, err));
    AQ_TRY(add_tensor(c, prefix, "g_idx", AQ_I32, 1, (int64_t)d, 0, gi, err));
    AQ_TRY(add_tensor(c, prefix, "bias", AQ_F16, 1, (int64_t)n, 0, bi, err));
    json_t *l = json_pack("{s:i, s:b}", "bits", bits, "sym", q->symmetric);
    if (!l || json_object_set_new(c->layers, prefix, l)) return aq_fail_nomem(err, "layer list", 64);
    return AQ_OK;
}

/* Load layer `prefix` with the project's own reader (which validates it and
 * dequantizes it: the reference of the error figures) and emit it. */
static aq_status gptq_layer(gptq_ctx *c, const char *prefix, aq_error *err)
{
    size_t d_in = 0;
    AQ_TRY(d_in_of(c, prefix, &d_in, err));
    aq_qlayer q;
    AQ_TRY(aq_qlayer_load_ckpt(c->ck, prefix, d_in, &q, err));
    aq_status st = AQ_OK;
    if (q.a_bits < 16)
        st = aq_fail(err, AQ_ERR_ARG,
                     "layer %s quantizes its activations to %d bits: the GPTQ layout has no "
                     "activation quantizer (export a16 options only)",
                     prefix, q.a_bits);
    if (st == AQ_OK && gptq_bits(q.w_bits) != q.w_bits)
        fprintf(stderr, "export: %s: %d-bit codes stored as %d-bit GPTQ (exact; GPTQ packs 2, 3, 4, 8 bits)\n",
                prefix, q.w_bits, gptq_bits(q.w_bits));
    if (st == AQ_OK) st = emit_layer(c, prefix, &q, err);
    aq_qlayer_free(&q);
    c->n_layers += st == AQ_OK;
    return st;
}

/* A tensor that is not part of a quantized layer: F16, same name and shape. */
static aq_status plain_tensor(gptq_ctx *c, const char *name, aq_error *err)
{
    const aq_tensor_view *v;
    AQ_TRY(aq_ckpt_get(c->ck, name, &v, err));
    float *f;
    AQ_TRY(aq_view_to_f32_alloc(v, &f, err));
    size_t n = v->nbytes / aq_dtype_size(v->dtype);
    uint16_t *h = keep_alloc(c, n * 2, err);
    aq_status st = h ? AQ_OK : (err ? err->code : AQ_ERR_NOMEM);
    for (size_t i = 0; st == AQ_OK && i < n; i++) {
        h[i] = aq_f32_to_f16(f[i]);
        if (!isfinite(aq_f16_to_f32(h[i])))
            st = aq_fail(err, AQ_ERR_NUMERIC, "tensor %s element %zu = %g is out of fp16's range", name, i,
                         (double)f[i]);
    }
    free(f);
    if (st == AQ_OK) st = aq_st_writer_add(c->w, name, AQ_F16, v->ndim, v->shape, h, err);
    return st;
}

/* The embedding or an untied classifier stored at a tensor-menu option (f16,
 * wK: docs/FORMAT.md "Embedding and classifier"): GPTQ quantizes only the
 * linears, so it goes out dequantized, as fp16 B.weight [vocab, dim] like
 * every other unquantized tensor (exact for f16; for wK the fp16 rounding of
 * the dequantized values). */
static aq_status menu_tensor(gptq_ctx *c, const char *base, aq_error *err)
{
    size_t rows = (size_t)c->cfg.vocab_size, cols = (size_t)c->cfg.dim;
    float *f = NULL;
    AQ_TRY(aq_qtensor_load_ckpt(c->ck, base, rows, cols, &f, err));
    uint16_t *h = keep_alloc(c, rows * cols * 2, err);
    aq_status st = h ? AQ_OK : (err ? err->code : AQ_ERR_NOMEM);
    for (size_t i = 0; st == AQ_OK && i < rows * cols; i++) {
        h[i] = aq_f32_to_f16(f[i]);
        if (!isfinite(aq_f16_to_f32(h[i])))
            st = aq_fail(err, AQ_ERR_NUMERIC, "tensor %s element %zu = %g is out of fp16's range", base, i,
                         (double)f[i]);
    }
    free(f);
    char name[1100];
    snprintf(name, sizeof name, "%s.weight", base);
    int64_t shp[2] = {(int64_t)rows, (int64_t)cols};
    if (st == AQ_OK) st = aq_st_writer_add(c->w, name, AQ_F16, 2, shp, h, err);
    return st;
}

/* Is prefix a tensor-menu tensor (its quant.* value a tensor option)? */
static int is_menu_tensor(const gptq_ctx *c, const char *key)
{
    const char *v = aq_ckpt_meta_get(c->ck, key);
    int bits;
    return v && aq_tensor_opt_parse(v, &bits, NULL) == AQ_OK;
}

/* Every tensor of OUTDIR in its order; a quantized layer's GPTQ tensors take
 * the place of its qweight, its other qlayer tensors are consumed with it. */
static aq_status convert_tensors(gptq_ctx *c, aq_error *err)
{
    char prefix[1024], key[1100];
    for (size_t i = 0; i < aq_ckpt_count(c->ck); i++) {
        const char *name = aq_ckpt_name(c->ck, i), *dot = strrchr(name, '.');
        size_t pl = dot ? (size_t)(dot - name) : 0;
        if (pl >= sizeof prefix) pl = 0;
        memcpy(prefix, name, pl);
        prefix[pl] = 0;
        snprintf(key, sizeof key, "quant.%s", prefix);
        if (!pl || !aq_ckpt_meta_get(c->ck, key)) {
            AQ_TRY(plain_tensor(c, name, err));
            continue;
        }
        const char *leaf = dot + 1;
        if (is_menu_tensor(c, key)) {
            /* its one weight-carrying tensor writes it; scales/zeros are consumed */
            if (!strcmp(leaf, "qweight") || !strcmp(leaf, "weight")) AQ_TRY(menu_tensor(c, prefix, err));
            continue;
        }
        if (!strcmp(leaf, "qweight")) {
            AQ_TRY(gptq_layer(c, prefix, err));
        } else if (strcmp(leaf, "w_scale") && strcmp(leaf, "w_zero") && strcmp(leaf, "bias") &&
                   strcmp(leaf, "a_scale") && strcmp(leaf, "a_zero")) {
            return aq_fail(err, AQ_ERR_FORMAT, "tensor %s: not a tensor of quantized layer %s (docs/FORMAT.md)",
                           name, prefix);
        }
    }
    size_t declared = 0;
    for (size_t i = 0; i < aq_ckpt_meta_count(c->ck); i++) {
        const char *k, *v;
        aq_ckpt_meta_at(c->ck, i, &k, &v);
        declared += !strncmp(k, "quant.", 6) && !is_menu_tensor(c, k);
    }
    if (declared != c->n_layers)
        return aq_fail(err, AQ_ERR_FORMAT, "%zu layers are declared quantized (quant.* metadata), %zu have a qweight",
                       declared, c->n_layers);
    return AQ_OK;
}

/* GPTQModel's `dynamic` key for exactly one module: "+:^" + the name with
 * regex metacharacters escaped + "$" (anchored, so model.layers.1 does not
 * also match model.layers.10; GPTQModel treats such a key as a literal). */
static void dynamic_key(const char *prefix, char *out, size_t cap)
{
    size_t k = 0;
    k += (size_t)snprintf(out, cap, "+:^");
    for (const char *p = prefix; *p && k + 4 < cap; p++) {
        if (strchr(".^$*+?{}[]()|\\", *p)) out[k++] = '\\';
        out[k++] = *p;
    }
    snprintf(out + k, cap - k, "$");
}

/* dynamic[module] = the overrides of (bits, sym) against the top level, if any. */
static void add_entry(json_t *dyn, const char *module, int bits, int sym, int top, int all_sym)
{
    if (bits == top && sym == all_sym) return;
    json_t *e = json_object();
    if (bits != top) json_object_set_new(e, "bits", json_integer(bits));
    if (sym != all_sym) json_object_set_new(e, "sym", json_boolean(sym));
    char dk[1200];
    dynamic_key(module, dk, sizeof dk);
    json_object_set_new(dyn, dk, e);
}

static void layer_bits(const json_t *l, int *bits, int *sym)
{
    *bits = (int)json_integer_value(json_object_get(l, "bits"));
    *sym = json_is_true(json_object_get(l, "sym"));
}

/* vLLM fuses q/k/v into qkv_proj and gate/up into gate_up_proj and looks the
 * fused name up in `dynamic`: give it an entry when its parts agree, and say so
 * when they do not (vLLM cannot load that; GPTQModel and transformers can). */
static const struct {
    const char *fused, *parts[3];
} fusions[] = {{"self_attn.qkv_proj", {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}},
               {"mlp.gate_up_proj", {"mlp.gate_proj", "mlp.up_proj", NULL}}};

static void add_fused(const gptq_ctx *c, json_t *dyn, int top, int all_sym)
{
    const char *key;
    json_t *l;
    char base[1024], name[1100];
    json_object_foreach(c->layers, key, l) for (size_t f = 0; f < sizeof fusions / sizeof *fusions; f++) {
        size_t n = strlen(key), m = strlen(fusions[f].parts[0]);
        if (n <= m || n - m >= sizeof base || strcmp(key + n - m, fusions[f].parts[0])) continue;
        snprintf(base, n - m + 1, "%s", key);
        int bits = 0, sym = 0, same = 1, b, s;
        layer_bits(l, &bits, &sym);
        for (int k = 1; k < 3 && fusions[f].parts[k]; k++) {
            snprintf(name, sizeof name, "%s%s", base, fusions[f].parts[k]);
            const json_t *p = json_object_get(c->layers, name);
            if (!p) { /* a part not quantized: nothing vLLM could fuse */
                same = -1;
                break;
            }
            layer_bits(p, &b, &s);
            same &= b == bits && s == sym;
        }
        snprintf(name, sizeof name, "%s%s", base, fusions[f].fused);
        if (same > 0) add_entry(dyn, name, bits, sym, top, all_sym);
        else if (same == 0)
            fprintf(stderr, "export: gptq: the parts of %s have different bit widths or symmetry: vLLM, which "
                            "fuses them, cannot load this checkpoint (GPTQModel and transformers can)\n", name);
    }
}

/* quantize_config.json: the bits of most weights and sym (true only when every
 * layer is symmetric) at the top, the other layers (and vLLM's fused names) in
 * `dynamic`. */
static json_t *quantize_config(const gptq_ctx *c)
{
    int top = 2, all_sym = 1, bits, sym;
    for (int b = 2; b <= 8; b++)
        if (c->params_at_bits[b] >= c->params_at_bits[top]) top = b;
    const char *key;
    json_t *l, *dyn = json_object();
    json_object_foreach(c->layers, key, l) all_sym &= json_is_true(json_object_get(l, "sym"));
    json_object_foreach(c->layers, key, l) {
        layer_bits(l, &bits, &sym);
        add_entry(dyn, key, bits, sym, top, all_sym);
    }
    add_fused(c, dyn, top, all_sym);
    if (!json_object_size(dyn)) {
        json_decref(dyn);
        dyn = json_null();
    }
    return json_pack("{s:i, s:o, s:i, s:b, s:b, s:b, s:s, s:s, s:s}", "bits", top, "dynamic", dyn,
                     "group_size", -1, "desc_act", 0, "sym", all_sym, "lm_head", 0, "quant_method",
                     "gptq", "checkpoint_format", "gptq", "pack_dtype", "int32");
}

static aq_status write_json(const char *path, json_t *o, aq_error *err)
{
    char *txt = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!txt) return aq_fail_nomem(err, "JSON text", 0);
    aq_atomic_file *f = NULL;
    aq_status st = aq_atomic_open(path, &f, err);
    if (st == AQ_OK) st = aq_atomic_write(f, txt, strlen(txt), err);
    if (st == AQ_OK) st = aq_atomic_write(f, "\n", 1, err);
    if (st == AQ_OK) st = aq_atomic_commit(f, err);
    else aq_atomic_abort(f);
    free(txt);
    return st;
}

/* quantize_config.json, and config.json = OUTDIR's with torch_dtype float16
 * and the same object as quantization_config (what transformers and vLLM read). */
static aq_status write_configs(const gptq_ctx *c, const char *outdir, const char *tmp, aq_error *err)
{
    char path[GPTQ_PATH + 64];
    json_t *q = quantize_config(c);
    if (!q) return aq_fail_nomem(err, "quantize_config", 0);
    snprintf(path, sizeof path, "%s/quantize_config.json", tmp);
    aq_status st = write_json(path, q, err);
    snprintf(path, sizeof path, "%s/config.json", outdir);
    json_error_t je;
    json_t *cfg = st == AQ_OK ? json_load_file(path, 0, &je) : NULL;
    if (st == AQ_OK && !json_is_object(cfg))
        st = aq_fail(err, AQ_ERR_FORMAT, "%s: line %d: %s", path, je.line, cfg ? "not a JSON object" : je.text);
    if (st == AQ_OK) {
        json_object_set_new(cfg, "torch_dtype", json_string("float16"));
        json_object_set(cfg, "quantization_config", q);
        snprintf(path, sizeof path, "%s/config.json", tmp);
        st = write_json(path, cfg, err);
    }
    json_decref(cfg);
    json_decref(q);
    return st;
}

/* The tokenizer and generation files OUTDIR has, byte for byte. */
static aq_status copy_side_files(const char *outdir, const char *tmp, aq_error *err)
{
    static const char *const side[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                       "tokenizer.bin", "generation_config.json"};
    char src[GPTQ_PATH + 64], dst[GPTQ_PATH + 64];
    for (size_t i = 0; i < sizeof side / sizeof *side; i++) {
        struct stat s;
        snprintf(src, sizeof src, "%s/%s", outdir, side[i]);
        if (stat(src, &s) != 0 || !S_ISREG(s.st_mode)) continue;
        snprintf(dst, sizeof dst, "%s/%s", tmp, side[i]);
        AQ_TRY(aq_atomic_copy_file(src, dst, err));
    }
    return AQ_OK;
}

/* Remove the flat temporary directory (only files this export wrote). */
static void remove_tmp(const char *tmp)
{
    DIR *d = opendir(tmp);
    if (d) {
        struct dirent *e;
        char p[GPTQ_PATH + 300];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", tmp, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(tmp);
}

/* OUTDIR must be a quantized model: adaquant's format marker and a config. */
static aq_status open_outdir(gptq_ctx *c, const char *outdir, aq_error *err)
{
    if (aq_ckpt_open(outdir, &c->ck, err) != AQ_OK) {
        aq_error_prefix(err, "not a quantized model directory (docs/FORMAT.md)");
        return err ? err->code : AQ_ERR_ARG;
    }
    const char *fmt = aq_ckpt_meta_get(c->ck, "format");
    if (!fmt || strcmp(fmt, "adaquant-quantized"))
        return aq_fail(err, AQ_ERR_ARG, "%s: not a quantized model (no safetensors __metadata__ format "
                                        "adaquant-quantized; docs/FORMAT.md)", outdir);
    aq_status st = aq_ckpt_llama_config(c->ck, &c->cfg, err);
    if (st != AQ_OK) aq_error_prefix(err, "%s", outdir);
    return st;
}

static const char *where(const gptq_err *e)
{
    return e->where[0] ? e->where : "all exact";
}

static void log_errors(const gptq_ctx *c)
{
    fprintf(stderr, "export: gptq: %zu layers, %zu rows; fp16 scales: max relative scale error %.6e (%s)\n",
            c->n_layers, c->rows, c->scale_rel.v, where(&c->scale_rel));
    fprintf(stderr, "export: gptq: dequantized weights vs adaquant's: max |dW|/|W| %.6e (%s), max |dW|/scale %.6e "
                    "(%s)\n",
            c->w_rel.v, where(&c->w_rel), c->w_steps.v, where(&c->w_steps));
    if (c->rows_rounded)
        fprintf(stderr, "export: gptq: %zu of %zu rows had a fractional zero point, rounded to the nearest integer "
                        "(--round-zeros)\n",
                c->rows_rounded, c->rows);
    if (c->rows_shifted)
        fprintf(stderr, "export: gptq: %zu rows had a zero point outside GPTQ's 1..2^b: their codes and zero point "
                        "were shifted together (exact)\n",
                c->rows_shifted);
}

static aq_status build(gptq_ctx *c, const char *outdir, const char *tmp, aq_error *err)
{
    char path[GPTQ_PATH + 64];
    AQ_TRY(open_outdir(c, outdir, err));
    AQ_TRY(aq_st_writer_new(&c->w, err));
    /* transformers' safetensors loader requires format "pt" */
    AQ_TRY(aq_st_writer_meta(c->w, "format", "pt", err));
    if (!(c->layers = json_object())) return aq_fail_nomem(err, "layer list", 0);
    aq_status st = convert_tensors(c, err);
    if (st != AQ_OK) {
        aq_error_prefix(err, "%s", outdir);
        return st;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    AQ_TRY(aq_st_writer_write(c->w, path, err));
    AQ_TRY(write_configs(c, outdir, tmp, err));
    AQ_TRY(copy_side_files(outdir, tmp, err));
    log_errors(c);
    return AQ_OK;
}

aq_status aq_export_gptq(const char *outdir, const aq_export_gptq_opts *o, const char *dir, aq_error *err)
{
    char tmp[GPTQ_PATH + 32];
    struct stat s;
    if (strlen(dir) >= GPTQ_PATH || strlen(outdir) >= GPTQ_PATH)
        return aq_fail(err, AQ_ERR_ARG, "path too long");
    if (stat(dir, &s) == 0)
        return aq_fail(err, AQ_ERR_ARG, "%s already exists: export writes a new directory, remove it first", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid());
    remove_tmp(tmp);
    if (mkdir(tmp, 0777) != 0)
        return aq_fail(err, AQ_ERR_IO, "%s: cannot create the output directory (as %s): %s", dir, tmp,
                       strerror(errno));
    gptq_ctx c = {.o = o};
    aq_status st = build(&c, outdir, tmp, err);
    if (st == AQ_OK && rename(tmp, dir) != 0)
        st = aq_fail(err, AQ_ERR_IO, "%s: cannot rename %s into place: %s", dir, tmp, strerror(errno));
    if (st != AQ_OK) remove_tmp(tmp);
    aq_st_writer_free(c.w);
    for (size_t i = 0; i < c.nbuf; i++) free(c.bufs[i]);
    free(c.bufs);
    json_decref(c.layers);
    aq_ckpt_close(c.ck);
    return st;
}
