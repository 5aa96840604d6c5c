/* pipeline_size_gguf.c — the budget in bytes of OUTDIR/model.gguf
 * (quantize --out-format gguf; pipeline_size.h, docs/PIPELINE.md "GGUF
 * budget"). The file's bytes come from the exporter itself
 * (aq_export_gguf_size: the writer built with every tensor at its type,
 * weights left out), so the budget and the written file share one code path.
 * GGUF pads each tensor's data to the alignment (32), so the file is a fixed
 * part (header, metadata and vocabulary, tensor infos, norms) plus, per
 * tensor, its aligned bytes: the table is exact, not a bound. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../io/checkpoint.h"
#include "../../io/gguf.h"
#include "../../src/text/tokenizer.h"
#include "pipeline_size.h"

aq_pipe_gguf_io aq_pipe_gguf_hooks;

#define GGUF_ALIGN 32 /* general.alignment absent: ggml's default, what io/gguf_write.c lays out */

void aq_pipe_gguf_opts(aq_export_opts *o, const char *qpath)
{
    /* non-block layers (a per-row a16 option, rows no block type fits) F16; the
     * embedding / classifier at their own option, F32 when not allocated */
    *o = (aq_export_opts){.type = AQ_GGML_F16, .type_embd = AQ_GGML_F32, .name = "adaquant quantize",
                          .quantized = 1, .qpath = qpath, .type_head_given = 1, .type_head = AQ_GGML_F32};
}

aq_status aq_pipe_gguf_menu_check(const aq_pipe_cfg *c, const char *how, aq_error *err)
{
    char bad[256] = "";
    for (int k = 0; k < c->n_options; k++) {
        aq_layer_opts o;
        aq_layer_opts_default(&o);
        if (aq_layer_opts_parse(c->options[k], &o, NULL) == AQ_OK && !o.ggml && (o.group > 0 || o.a_bits < 16))
            snprintf(bad + strlen(bad), sizeof bad - strlen(bad), " %s", c->options[k]);
    }
    for (int k = 0; k < c->n_embed_options; k++) {
        int bits = 32;
        if (aq_tensor_opt_parse(c->embed_options[k], &bits, NULL) == AQ_OK && bits > 0 && bits < 16)
            snprintf(bad + strlen(bad), sizeof bad - strlen(bad), " %s (--embed-options)", c->embed_options[k]);
    }
    if (!bad[0]) return AQ_OK;
    return aq_fail(err, AQ_ERR_ARG,
                   "--out-format gguf: GGUF cannot store option(s)%s: a layer's options are the ggml block types "
                   "(q8_0, q5_1, q5_0, q4_1, q4_0, K-quants) or a per-row a16 option written as F16; the "
                   "embedding's f32, f16 or a block type%s",
                   bad, how);
}

/* The GGUF type of option opt: a layer's ggml option its type, any other
 * (per-row a16) F16; a tensor-menu option f32 / f16 / its block type. */
static int opt_type(const char *opt, int extra)
{
    if (extra) {
        int g = aq_tensor_opt_gtype(opt);
        return g >= 0 ? g : !strcmp(opt, "f16") ? AQ_GGML_F16 : AQ_GGML_F32;
    }
    aq_layer_opts q;
    aq_layer_opts_default(&q);
    if (aq_layer_opts_parse(opt, &q, NULL) == AQ_OK && q.ggml) return q.gtype;
    return AQ_GGML_F16;
}

static int64_t aligned(int64_t n)
{
    return (n + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN;
}

/* The aligned bytes task (l, opt) adds: the weight at its type, and a
 * linear's calibrated bias (F32, every quantized layer has one). -1: the
 * rows do not fit the type. */
static int64_t task_bytes(const aq_pipe_layer *L, const char *opt, int extra)
{
    /* the GGUF type table (io/gguf.h) covers F32/F16 (blocks of 1) and the block types alike */
    int t = opt_type(opt, extra);
    int64_t bs = aq_ggml_block_size(t);
    if (bs <= 0 || L->d_in % bs) return -1;
    int64_t rb = L->d_in / bs * (int64_t)aq_ggml_block_bytes(t);
    return aligned(rb * L->d_out) + (extra ? 0 : aligned(4 * (int64_t)L->d_out));
}

static const char *option_of(const aq_pipe_cfg *c, const aq_pipe_plan *p, int l, int k)
{
    if (l < p->n_layers) return c->options[k];
    return k < 0 ? "f32" : c->embed_options[k];
}

/* The exporter's layout at choice (option index per layer and extra, -1 = F32). */
static aq_status layout_of(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_llama_config *mc, const int *choice,
                           aq_gguf_layout *lay, aq_error *err)
{
    AQ_TRY(aq_gguf_layout_alloc(lay, mc->n_layers, err));
    aq_checkpoint *ck;
    AQ_TRY(aq_ckpt_open(c->model, &ck, err));
    for (int b = 0; b < mc->n_layers; b++) /* a linear outside the plan: F16 with its source bias */
        for (int w = 0; w < AQ_LIN_COUNT; w++) {
            char pre[200], name[256];
            const aq_tensor_view *v;
            aq_linear_prefix(b, (aq_linear)w, pre, sizeof pre);
            snprintf(name, sizeof name, "%s.bias", pre);
            lay->lin_type[b * AQ_LIN_COUNT + w] = AQ_GGML_F16;
            lay->lin_bias[b * AQ_LIN_COUNT + w] = aq_ckpt_get(ck, name, &v, NULL) == AQ_OK;
        }
    aq_ckpt_close(ck);
    for (int l = 0; l < p->n_layers; l++) {
        int i = p->layers[l].block * AQ_LIN_COUNT + p->layers[l].which;
        lay->lin_type[i] = opt_type(c->options[choice[l]], 0);
        lay->lin_bias[i] = 1;
    }
    lay->embd_type = AQ_GGML_F32;
    lay->head_type = mc->tied_embeddings ? -1 : AQ_GGML_F32;
    for (int e = 0; e < p->n_extra; e++) {
        int t = opt_type(option_of(c, p, p->n_layers + e, choice[p->n_layers + e]), 1);
        if (p->extra[e].which == AQ_LIN_HEAD) lay->head_type = t;
        else lay->embd_type = t;
    }
    return AQ_OK;
}

aq_status aq_pipe_gguf_size_of(const aq_pipe_cfg *c, const aq_pipe_plan *p, const int *choice, aq_gguf_size *out,
                               aq_error *err)
{
    if (!aq_pipe_gguf_hooks.size)
        return aq_fail(err, AQ_ERR_ARG, "--out-format gguf: this program has no GGUF exporter");
    aq_llama_config mc;
    AQ_TRY(aq_ckpt_read_llama_config(c->model, &mc, err));
    aq_tokenizer *tok = NULL;
    char tok_file[AQ_PIPE_PATH];
    aq_gguf_layout lay = {0};
    aq_export_opts o;
    aq_pipe_gguf_opts(&o, NULL);
    aq_status st = aq_tok_open(c->tokenizer, mc.vocab_size, &tok, err);
    if (st == AQ_OK) st = aq_tok_resolve(c->tokenizer, tok_file, sizeof tok_file, err);
    if (st == AQ_OK) st = layout_of(c, p, &mc, choice, &lay, err);
    if (st == AQ_OK) st = aq_pipe_gguf_hooks.size(&mc, tok, tok_file, &o, &lay, out, err);
    aq_gguf_layout_free(&lay);
    aq_tok_close(tok);
    return st;
}

aq_status aq_pipe_gguf_size_build(const aq_pipe_cfg *c, const aq_pipe_plan *p, int with_extra, aq_pipe_size *s,
                                  aq_error *err)
{
    int n = p->n_layers + p->n_extra;
    int *base = calloc((size_t)n + 1, sizeof *base);
    if (!base) return aq_fail_nomem(err, "choice", (size_t)n);
    aq_status st = AQ_OK;
    int64_t base_bytes = 0;
    for (int l = 0; l < n && st == AQ_OK; l++) {
        int ex = l >= p->n_layers, no = ex ? c->n_embed_options : c->n_options;
        const aq_pipe_layer *L = ex ? &p->extra[l - p->n_layers] : &p->layers[l];
        size_t first = ex ? p->n_lin_tasks + (size_t)(l - p->n_layers) * (size_t)no : (size_t)l * (size_t)no;
        base[l] = ex && !with_extra ? -1 : -2;
        if (ex && !with_extra) continue;
        for (int k = 0; k < no; k++) {
            int64_t b = task_bytes(L, option_of(c, p, l, k), ex);
            if (b < 0 && ex) /* a tensor-menu task always runs: refuse it before any work */
                st = aq_fail(err, AQ_ERR_ARG, "--embed-options %s: %s's rows of %d are not a multiple of its block",
                             c->embed_options[k], L->name, L->d_in);
            if (b < 0) b = INT64_MAX / 4; /* an absent group option: no table row (pipeline_size.h) */
            s->task_bytes[first + (size_t)k] = b;
            if (base[l] == -2 && b < INT64_MAX / 4) base[l] = k, base_bytes += b;
        }
        if (base[l] == -2) st = aq_fail(err, AQ_ERR_ARG, "--out-format gguf: no option of %s fits its rows of %d",
                                        L->name, L->d_in);
    }
    aq_gguf_size g;
    if (st == AQ_OK) st = aq_pipe_gguf_size_of(c, p, base, &g, err);
    if (st == AQ_OK) {
        s->fixed = (int64_t)g.file - base_bytes;
        s->total_weights = (int64_t)g.elements;
        s->side = 0;
    }
    free(base);
    return st;
}
