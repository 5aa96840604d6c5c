/* pipeline_size.c — the bytes of the output's model files before they are
 * written (pipeline_size.h): each task's tensors, the fixed part, and the
 * exact total of a choice. The tensor list mirrors stage_write.c's
 * write_model (checkpoint order; a linear's weight replaced by its qlayer
 * tensors, its source bias dropped; the embedding / an untied classifier at
 * their tensor option), and the header length mirrors the compact JSON of
 * io/safetensors_writer.c; tests/test_bytes.py checks the total against the
 * files on disk. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "../../io/checkpoint.h"
#include "../../src/adaquant/adaquant.h"
#include "../../src/quant/ggml_blocks.h"
#include "../../src/quant/quant.h"
#include "../../src/text/tokenizer.h"
#include "pipeline_size.h"

typedef struct out_tensor {
    char name[160];
    aq_dtype dt;
    int ndim;
    int64_t shape[2];
    int64_t nbytes;
} out_tensor;

/* Length of s as a JSON string (quotes and escapes), as jansson writes it. */
static int64_t jlen(const char *s)
{
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    int64_t n = t ? (int64_t)strlen(t) : (int64_t)strlen(s) + 2;
    free(t);
    json_decref(j);
    return n;
}

static int64_t digits(int64_t v)
{
    char b[32];
    return snprintf(b, sizeof b, "%lld", (long long)v);
}

/* "NAME":{"dtype":"DT","shape":[..],"data_offsets":[o1,o2]} with offset digits
 * d1, d2 (0 = the exact digits of off and off + nbytes). */
static int64_t entry_len(const out_tensor *t, int64_t off, int width)
{
    int64_t n = jlen(t->name) + 1 + (int64_t)strlen("{\"dtype\":") + jlen(aq_dtype_name(t->dt)) +
                (int64_t)strlen(",\"shape\":[]") + (int64_t)strlen(",\"data_offsets\":[,]}");
    for (int d = 0; d < t->ndim; d++) n += digits(t->shape[d]) + (d > 0);
    n += width ? 2 * width : digits(off) + digits(off + t->nbytes);
    return n;
}

static void put(out_tensor *o, int *n, const char *base, const char *suffix, aq_dtype dt, int ndim, int64_t d0,
                int64_t d1)
{
    out_tensor *t = &o[(*n)++];
    snprintf(t->name, sizeof t->name, "%s.%s", base, suffix);
    t->dt = dt;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->nbytes = (int64_t)aq_dtype_size(dt) * d0 * (ndim > 1 ? d1 : 1);
}

/* The tensors (at most 6) and the metadata value (or "" = none) of layer L at
 * option opt; extra: a tensor of the tensor menu. */
static void layer_tensors(const aq_pipe_layer *L, const char *opt, int extra, out_tensor *o, int *n, char *meta,
                          size_t mn)
{
    *n = 0;
    meta[0] = '\0';
    if (extra) {
        int bits = 32;
        aq_tensor_opt_parse(opt, &bits, NULL);
        if (bits != 32) snprintf(meta, mn, "%s", opt);
        if (bits >= 16) {
            put(o, n, L->name, "weight", bits == 16 ? AQ_F16 : AQ_F32, 2, L->d_out, L->d_in);
            return;
        }
        size_t rb = 0;
        if (bits == 0) { /* a ggml block type: B.qblocks (src/adaquant/qlayer.h) */
            aq_ggml_row_bytes((aq_ggml_type)aq_tensor_opt_gtype(opt), (size_t)L->d_in, &rb, NULL);
            put(o, n, L->name, "qblocks", AQ_U8, 2, L->d_out, (int64_t)rb);
            return;
        }
        put(o, n, L->name, "qweight", AQ_U8, 2, L->d_out, (int64_t)aq_packed_bytes((size_t)L->d_in, bits));
        put(o, n, L->name, "w_scale", AQ_F32, 1, L->d_out, 0);
        put(o, n, L->name, "w_zero", AQ_F32, 1, L->d_out, 0);
        return;
    }
    aq_layer_opts q;
    aq_layer_opts_default(&q);
    aq_layer_opts_parse(opt, &q, NULL);
    snprintf(meta, mn, "%s", opt);
    if (q.group > 0) { /* src/adaquant/qlayer.h: group formats */
        if (L->d_in % q.group) return; /* absent: never chosen */
        if (q.ggml)
            put(o, n, L->name, "qblocks", AQ_U8, 2, L->d_out, (int64_t)aq_group_row_bytes(&q, (size_t)L->d_in));
        else {
            int64_t G = L->d_in / q.group;
            put(o, n, L->name, "qweight", AQ_U8, 2, L->d_out, (int64_t)aq_packed_bytes((size_t)L->d_in, q.w_bits));
            put(o, n, L->name, "w_scale", AQ_F16, 2, L->d_out, G);
            put(o, n, L->name, "w_zero", AQ_U8, 2, L->d_out, G);
        }
        put(o, n, L->name, "bias", AQ_F32, 1, L->d_out, 0);
        return;
    }
    put(o, n, L->name, "qweight", AQ_U8, 2, L->d_out, (int64_t)aq_packed_bytes((size_t)L->d_in, q.w_bits));
    put(o, n, L->name, "w_scale", AQ_F32, 1, L->d_out, 0);
    put(o, n, L->name, "w_zero", AQ_F32, 1, L->d_out, 0);
    put(o, n, L->name, "bias", AQ_F32, 1, L->d_out, 0);
    if (q.a_bits < 16) {
        put(o, n, L->name, "a_scale", AQ_F32, 1, 1, 0);
        put(o, n, L->name, "a_zero", AQ_F32, 1, 1, 0);
    }
}

/* Which layer (index l < n_layers) or extra (n_layers + e) tensor `name` of
 * the checkpoint belongs to; *is_bias for a linear's source bias; -1 = none. */
static int owner_of(const aq_pipe_plan *p, const char *name, int *is_bias)
{
    *is_bias = 0;
    for (int l = 0; l < p->n_layers + p->n_extra; l++) {
        const aq_pipe_layer *L = l < p->n_layers ? &p->layers[l] : &p->extra[l - p->n_layers];
        size_t k = strlen(L->name);
        if (strncmp(name, L->name, k) != 0) continue;
        if (!strcmp(name + k, ".weight")) return l;
        if (l < p->n_layers && !strcmp(name + k, ".bias")) return *is_bias = 1, l;
    }
    return -1;
}

int aq_pipe_option_absent(const char *option, int64_t d_in)
{
    aq_layer_opts q;
    aq_layer_opts_default(&q);
    if (aq_layer_opts_parse(option, &q, NULL) != AQ_OK) return 0;
    return q.group > 0 && d_in % q.group != 0;
}

int aq_pipe_task_absent(const aq_pipe_plan *p, size_t i)
{
    if (i >= p->n_lin_tasks) return 0;
    size_t per_layer = p->n_lin_tasks / (size_t)p->n_layers; /* tasks are [layer][option] */
    return aq_pipe_option_absent(p->tasks[i].option, p->layers[i / per_layer].d_in);
}

static const char *option_of(const aq_pipe_cfg *c, const aq_pipe_plan *p, int l, int k)
{
    if (l < p->n_layers) return c->options[k];
    return k < 0 ? "f32" : c->embed_options[k];
}

static aq_status side_bytes(const aq_pipe_cfg *c, int64_t *out, aq_error *err);

/* Metadata entries "key":"value" of every file: format, format_version, options. */
static int64_t fixed_meta(const aq_pipe_cfg *c, int *count)
{
    char opts[512] = "";
    for (int k = 0; k < c->n_options; k++)
        snprintf(opts + strlen(opts), sizeof opts - strlen(opts), "%s%s", k ? "," : "", c->options[k]);
    *count = 3;
    return jlen("format") + jlen("adaquant-quantized") + jlen("format_version") + jlen("1") + jlen("options") +
           jlen(opts) + 3; /* 3 colons */
}

int aq_pipe_format_version(const aq_pipe_cfg *c, const aq_pipe_plan *p, const int *choice)
{
    for (int e = 0; e < p->n_extra; e++)
        if (choice[p->n_layers + e] >= 0 && strcmp(c->embed_options[choice[p->n_layers + e]], "f32")) return 2;
    return 1;
}

aq_status aq_pipe_size_exact(const aq_pipe_cfg *c, const aq_pipe_plan *p, const int *choice, int64_t *bytes,
                             int64_t *safetensors, aq_error *err)
{
    if (c->gguf) { /* pipeline_size_gguf.c */
        aq_gguf_size g;
        AQ_TRY(aq_pipe_gguf_size_of(c, p, choice, &g, err));
        *bytes = (int64_t)g.file;
        if (safetensors) *safetensors = 0;
        return AQ_OK;
    }
    aq_checkpoint *ck;
    AQ_TRY(aq_ckpt_open(c->model, &ck, err));
    int nmeta;
    int64_t hl = 2 + (int64_t)strlen("\"__metadata__\":{}") + fixed_meta(c, &nmeta), off = 0;
    hl += nmeta - 1; /* the commas between the fixed metadata entries */
    aq_status st = AQ_OK;
    for (size_t i = 0; i < aq_ckpt_count(ck) && st == AQ_OK; i++) {
        const char *name = aq_ckpt_name(ck, i);
        int bias, l = owner_of(p, name, &bias), n = 0;
        out_tensor o[6];
        char meta[32] = "";
        if (bias) continue;
        if (l >= 0) {
            const aq_pipe_layer *L = l < p->n_layers ? &p->layers[l] : &p->extra[l - p->n_layers];
            layer_tensors(L, option_of(c, p, l, choice[l]), l >= p->n_layers, o, &n, meta, sizeof meta);
        } else {
            const aq_tensor_view *tv;
            st = aq_ckpt_get(ck, name, &tv, err);
            if (st != AQ_OK) break;
            snprintf(o[0].name, sizeof o[0].name, "%s", name);
            o[0].dt = AQ_F32;
            o[0].ndim = tv->ndim;
            int64_t numel = 1;
            for (int d = 0; d < tv->ndim && d < 2; d++) o[0].shape[d] = tv->shape[d], numel *= tv->shape[d];
            if (tv->ndim > 2) st = aq_fail(err, AQ_ERR_SHAPE, "%s: tensor %s has %d dimensions", c->model, name, tv->ndim);
            o[0].nbytes = 4 * numel;
            n = 1;
        }
        for (int j = 0; j < n; j++) hl += 1 + entry_len(&o[j], off, 0), off += o[j].nbytes;
        if (meta[0]) {
            char key[200];
            snprintf(key, sizeof key, "quant.%s",
                     l < p->n_layers ? p->layers[l].name : p->extra[l - p->n_layers].name);
            hl += 1 + jlen(key) + 1 + jlen(meta);
        }
    }
    aq_ckpt_close(ck);
    AQ_TRY(st);
    int64_t side, st_bytes = 8 + ((hl + 7) & ~(int64_t)7) + off;
    AQ_TRY(side_bytes(c, &side, err));
    if (safetensors) *safetensors = st_bytes;
    *bytes = st_bytes + side;
    return AQ_OK;
}

/* Bytes of task (l, k) with offsets at `width` digits: tensors, header
 * entries and commas, its metadata entry. */
static int64_t task_size(const aq_pipe_cfg *c, const aq_pipe_plan *p, int l, int k, int width, int64_t *data)
{
    const aq_pipe_layer *L = l < p->n_layers ? &p->layers[l] : &p->extra[l - p->n_layers];
    out_tensor o[6];
    char meta[32], key[200];
    int n;
    layer_tensors(L, option_of(c, p, l, k), l >= p->n_layers, o, &n, meta, sizeof meta);
    int64_t b = 0;
    *data = 0;
    for (int j = 0; j < n; j++) b += 1 + entry_len(&o[j], 0, width) + o[j].nbytes, *data += o[j].nbytes;
    snprintf(key, sizeof key, "quant.%s", L->name);
    if (meta[0]) b += 1 + jlen(key) + 1 + jlen(meta);
    return b;
}

aq_status aq_pipe_size_build(const aq_pipe_cfg *c, const aq_pipe_plan *p, int with_extra, aq_pipe_size *s,
                             aq_error *err)
{
    memset(s, 0, sizeof *s);
    if (!(s->task_bytes = calloc(p->n_tasks ? p->n_tasks : 1, sizeof *s->task_bytes)))
        return aq_fail_nomem(err, "task sizes", p->n_tasks);
    if (c->gguf) {
        aq_status gs = aq_pipe_gguf_size_build(c, p, with_extra, s, err);
        if (gs != AQ_OK) aq_pipe_size_free(s);
        return gs;
    }
    aq_checkpoint *ck;
    AQ_TRY(aq_ckpt_open(c->model, &ck, err));
    /* pass 1: the largest data any choice can have, whose digits bound every offset */
    int64_t max_data = 0, data, fixed_data = 0, fixed_hdr = 0;
    int nmeta;
    aq_status st = AQ_OK;
    for (size_t i = 0; i < aq_ckpt_count(ck) && st == AQ_OK; i++) {
        const char *name = aq_ckpt_name(ck, i);
        const aq_tensor_view *tv;
        int bias, l = owner_of(p, name, &bias);
        if ((st = aq_ckpt_get(ck, name, &tv, err)) != AQ_OK) break;
        int64_t numel = 1;
        for (int d = 0; d < tv->ndim; d++) numel *= tv->shape[d];
        s->total_weights += numel;
        int alloc = l >= 0 && (l < p->n_layers || with_extra);
        int no = l < p->n_layers ? c->n_options : c->n_embed_options;
        int64_t most = bias ? 0 : 4 * numel;
        for (int k = 0; alloc && !bias && k < no; k++) {
            task_size(c, p, l, k, 1, &data);
            most = data > most ? data : most;
        }
        max_data += most;
    }
    int width = (int)digits(max_data);
    /* pass 2: the tasks and the fixed tensors at that width */
    for (size_t i = 0; i < aq_ckpt_count(ck) && st == AQ_OK; i++) {
        const char *name = aq_ckpt_name(ck, i);
        int bias, l = owner_of(p, name, &bias);
        if (bias) continue;
        if (l >= 0 && (l < p->n_layers || with_extra)) {
            int no = l < p->n_layers ? c->n_options : c->n_embed_options;
            size_t base = l < p->n_layers ? (size_t)l * (size_t)c->n_options
                                          : p->n_lin_tasks + (size_t)(l - p->n_layers) * (size_t)no;
            for (int k = 0; k < no; k++) s->task_bytes[base + (size_t)k] = task_size(c, p, l, k, width, &data);
            continue;
        }
        const aq_tensor_view *tv;
        if ((st = aq_ckpt_get(ck, name, &tv, err)) != AQ_OK) break;
        out_tensor o = {.dt = AQ_F32, .ndim = tv->ndim, .nbytes = 4};
        snprintf(o.name, sizeof o.name, "%s", name);
        for (int d = 0; d < tv->ndim && d < 2; d++) o.shape[d] = tv->shape[d], o.nbytes *= tv->shape[d];
        fixed_hdr += 1 + entry_len(&o, 0, width);
        fixed_data += o.nbytes;
    }
    aq_ckpt_close(ck);
    if (st == AQ_OK) st = side_bytes(c, &s->side, err);
    /* 8-byte length, at most 7 bytes of padding, {}, "__metadata__":{}, the fixed metadata */
    s->fixed = 8 + 7 + 2 + (int64_t)strlen("\"__metadata__\":{}") + fixed_meta(c, &nmeta) + nmeta + fixed_hdr +
               fixed_data + s->side;
    if (st != AQ_OK) aq_pipe_size_free(s);
    return st;
}

void aq_pipe_size_free(aq_pipe_size *s)
{
    free(s->task_bytes);
    memset(s, 0, sizeof *s);
}

aq_status aq_pipe_side_files(const aq_pipe_cfg *c, aq_pipe_side *s, aq_error *err)
{
    memset(s, 0, sizeof *s);
    char file[AQ_PIPE_PATH];
    AQ_TRY(aq_tok_resolve(c->tokenizer, file, sizeof file, err));
    FILE *f = fopen(file, "rb");
    if (!f) return aq_fail(err, AQ_ERR_IO, "%s: cannot open the tokenizer", file);
    int ch;
    while ((ch = fgetc(f)) == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {}
    fclose(f);
    int json = ch == '{'; /* the kind by content, as aq_tok_open decides */
    snprintf(s->src[0], AQ_PIPE_PATH, "%s", file);
    snprintf(s->name[0], sizeof s->name[0], "%s", json ? "tokenizer.json" : "tokenizer.bin");
    s->n = 1;
    char dir[AQ_PIPE_PATH];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    if (!dir[0]) snprintf(dir, sizeof dir, "/");
    static const char *const beside[2] = {"tokenizer_config.json", "special_tokens_map.json"};
    struct stat st;
    for (int k = 0; json && k < 2; k++) {
        char p[AQ_PIPE_PATH + 64];
        snprintf(p, sizeof p, "%s/%s", dir, beside[k]);
        if (stat(p, &st) != 0 || !S_ISREG(st.st_mode) || strlen(p) >= AQ_PIPE_PATH) continue;
        snprintf(s->src[s->n], AQ_PIPE_PATH, "%s", p);
        snprintf(s->name[s->n++], sizeof s->name[0], "%s", beside[k]);
    }
    if (stat(c->model, &st) == 0 && S_ISDIR(st.st_mode)) {
        char p[AQ_PIPE_PATH + 64];
        snprintf(p, sizeof p, "%s/generation_config.json", c->model);
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && strlen(p) < AQ_PIPE_PATH) {
            snprintf(s->src[s->n], AQ_PIPE_PATH, "%s", p);
            snprintf(s->name[s->n++], sizeof s->name[0], "generation_config.json");
        }
    }
    return AQ_OK;
}

/* config.json (written to a temporary file and measured: its text is
 * jansson's) plus the side files. */
static aq_status side_bytes(const aq_pipe_cfg *c, int64_t *out, aq_error *err)
{
    aq_llama_config mc;
    AQ_TRY(aq_ckpt_read_llama_config(c->model, &mc, err));
    const char *td = getenv("TMPDIR");
    char tmp[AQ_PIPE_PATH];
    snprintf(tmp, sizeof tmp, "%s/aq-config-probe.%ld.json", td && *td ? td : "/tmp", (long)getpid());
    AQ_TRY(aq_llama_config_write_json(tmp, &mc, err));
    struct stat s;
    *out = stat(tmp, &s) == 0 ? (int64_t)s.st_size : 0;
    unlink(tmp);
    if (!*out) return aq_fail(err, AQ_ERR_IO, "%s: cannot measure the config.json probe", tmp);
    aq_pipe_side sf;
    AQ_TRY(aq_pipe_side_files(c, &sf, err));
    for (int i = 0; i < sf.n; i++) {
        if (stat(sf.src[i], &s) != 0) return aq_fail(err, AQ_ERR_IO, "%s: cannot stat", sf.src[i]);
        *out += (int64_t)s.st_size;
    }
    return AQ_OK;
}
