/* llama2c.c — import of llama2.c model .bin files (legacy 7 x int32 header) under
 * HF Llama tensor names, and the reader of llama2.c tokenizer .bin files.
 *
 * The model is mapped read-only and validated completely before any view is
 * handed out: the file size must equal the header plus every array exactly,
 * shapes must be consistent, and no weight may be NaN/Inf. Views point into
 * the map, except q_proj/k_proj, which are row-permuted copies owned by the
 * handle: llama2.c's RoPE rotates adjacent pairs (x[2i], x[2i+1]) of a head,
 * the engine (like HF) rotates halves (x[i], x[i+hs/2]). Permuting the rows of
 * W_q and W_k per head turns one convention into the other exactly (it is
 * HF's convert_llama_weights_to_hf.py permute()); q·k dot products are
 * unchanged because both sides get the same permutation. */
#include "llama2c.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define L2C_HEADER_BYTES 28
#define L2C_NAME_MAX 80
/* Tensors per layer in HF order: input_layernorm, q, k, v, o,
 * post_attention_layernorm, gate, up, down. */
#define L2C_PER_LAYER 9

struct aq_llama2c {
    char *label;         /* path or caller label, for errors */
    const uint8_t *base; /* the file image */
    size_t len;
    int mapped; /* base is our mmap (munmap on close) */
    aq_llama_config cfg;
    size_t count;
    aq_tensor_view *views;
    char *names; /* count x L2C_NAME_MAX */
    float *perm; /* permuted q/k of every layer (owned) */
};

/* Element offsets (in floats, after the header) of every llama2.c array. */
typedef struct l2c_layout {
    uint64_t hs, q_rows, kv_rows;
    uint64_t emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls, end;
} l2c_layout;

static int32_t rd_i32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

static float rd_f32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* acc += a*b with overflow detection; returns 0 on overflow. */
static int mac_u64(uint64_t *acc, uint64_t a, uint64_t b)
{
    uint64_t p;
    if (__builtin_mul_overflow(a, b, &p)) return 0;
    return !__builtin_add_overflow(*acc, p, acc);
}

/* Check the 7 header fields; fill cfg. */
static aq_status check_header(const char *label, const uint8_t *h, aq_llama_config *cfg,
                              aq_error *err)
{
    static const char *const field[7] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                                         "n_kv_heads", "vocab_size", "seq_len"};
    int32_t v[7];
    for (int i = 0; i < 7; i++)
        v[i] = rd_i32(h + 4 * i);
    /* llama2.c export.py version >= 1 files start with the magic "ak42". */
    if ((uint32_t)v[0] == 0x616b3432u)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: this is a llama2.c version-%d export (magic \"ak42\"); only the legacy "
                       "format (version 0, 7 x int32 header) is supported: re-export with "
                       "export.py --version 0",
                       label, v[1]);
    for (int i = 0; i < 7; i++) {
        if (i == 5 ? (v[i] == 0 || v[i] == INT32_MIN) : v[i] <= 0)
            return aq_fail(err, AQ_ERR_FORMAT,
                           "%s: bad llama2.c header: %s = %d at byte offset %d must be %s", label,
                           field[i], v[i], 4 * i, i == 5 ? "non-zero" : "positive");
    }
    if (v[0] % v[3] != 0)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: bad llama2.c header: dim %d is not a multiple of n_heads %d", label,
                       v[0], v[3]);
    if (v[3] % v[4] != 0)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: bad llama2.c header: n_heads %d is not a multiple of n_kv_heads %d",
                       label, v[3], v[4]);
    if ((v[0] / v[3]) % 2 != 0)
        return aq_fail(
            err, AQ_ERR_FORMAT,
            "%s: bad llama2.c header: head size dim/n_heads = %d is odd (RoPE needs pairs)", label,
            v[0] / v[3]);
    memset(cfg, 0, sizeof *cfg);
    cfg->dim = v[0];
    cfg->hidden_dim = v[1];
    cfg->n_layers = v[2];
    cfg->n_heads = v[3];
    cfg->n_kv_heads = v[4];
    cfg->vocab_size = v[5] < 0 ? -v[5] : v[5];
    cfg->max_seq_len = v[6];
    cfg->norm_eps = 1e-5f;
    cfg->rope_theta = 10000.0f;
    cfg->tied_embeddings = v[5] > 0;
    return AQ_OK;
}

/* Offsets of each array; 0 on overflow. */
static int layout_of(const aq_llama_config *c, l2c_layout *o)
{
    uint64_t d = (uint64_t)c->dim, hd = (uint64_t)c->hidden_dim, L = (uint64_t)c->n_layers;
    uint64_t at = 0;
    o->hs = d / (uint64_t)c->n_heads;
    o->q_rows = (uint64_t)c->n_heads * o->hs;
    o->kv_rows = (uint64_t)c->n_kv_heads * o->hs;
    int ok = 1;
    o->emb = at, ok &= mac_u64(&at, (uint64_t)c->vocab_size, d);
    o->rms_att = at, ok &= mac_u64(&at, L, d);
    uint64_t qd = 0, kvd = 0, hdd = 0;
    ok &= mac_u64(&qd, o->q_rows, d) && mac_u64(&kvd, o->kv_rows, d) && mac_u64(&hdd, hd, d);
    o->wq = at, ok &= mac_u64(&at, L, qd);
    o->wk = at, ok &= mac_u64(&at, L, kvd);
    o->wv = at, ok &= mac_u64(&at, L, kvd);
    o->wo = at, ok &= mac_u64(&at, L, qd);
    o->rms_ffn = at, ok &= mac_u64(&at, L, d);
    o->w1 = at, ok &= mac_u64(&at, L, hdd);
    o->w2 = at, ok &= mac_u64(&at, L, hdd);
    o->w3 = at, ok &= mac_u64(&at, L, hdd);
    o->rms_final = at, ok &= mac_u64(&at, 1, d);
    ok &= mac_u64(&at, 2, (uint64_t)c->max_seq_len * (o->hs / 2)); /* old RoPE tables */
    o->wcls = at;
    if (!c->tied_embeddings) ok &= mac_u64(&at, (uint64_t)c->vocab_size, d);
    o->end = at;
    /* Every byte count must also fit size_t and int64 shapes. */
    return ok && at < ((uint64_t)1 << 60);
}

static void set_view(aq_llama2c *m, const char *name, const void *data, int64_t rows, int64_t cols)
{
    aq_tensor_view *v = &m->views[m->count];
    char *nm = m->names + m->count * L2C_NAME_MAX;
    snprintf(nm, L2C_NAME_MAX, "%s", name);
    v->name = nm;
    v->dtype = AQ_F32;
    v->ndim = cols ? 2 : 1;
    v->shape[0] = rows;
    if (cols) v->shape[1] = cols;
    v->data = data;
    v->nbytes = (size_t)rows * (size_t)(cols ? cols : 1) * 4;
    m->count++;
}

/* Copy `heads` heads of hs rows x dim from src into dst in HF order:
 * dst row h*hs + half*hs/2 + i = src row h*hs + 2*i + half. */
static void permute_rows(float *dst, const uint8_t *src, int heads, size_t hs, size_t dim)
{
    size_t row_bytes = dim * 4;
    for (size_t h = 0; h < (size_t)heads; h++)
        for (size_t half = 0; half < 2; half++)
            for (size_t i = 0; i < hs / 2; i++)
                memcpy(dst + (h * hs + half * (hs / 2) + i) * dim,
                       src + (h * hs + 2 * i + half) * row_bytes, row_bytes);
}

static void layer_name(char *buf, int l, const char *suffix)
{
    snprintf(buf, L2C_NAME_MAX, "model.layers.%d.%s", l, suffix);
}

/* Build all views (and the permuted q/k copies). */
static aq_status build_views(aq_llama2c *m, const l2c_layout *o, aq_error *err)
{
    const aq_llama_config *c = &m->cfg;
    size_t L = (size_t)c->n_layers, d = (size_t)c->dim, hd = (size_t)c->hidden_dim;
    size_t n = 1 + L * L2C_PER_LAYER + 1 + (c->tied_embeddings ? 0 : 1);
    size_t qn = (size_t)o->q_rows * d, kn = (size_t)o->kv_rows * d;
    m->views = calloc(n, sizeof *m->views);
    m->names = calloc(n, L2C_NAME_MAX);
    m->perm = malloc((qn + kn) * L * sizeof(float) + 1);
    if (!m->views || !m->names || !m->perm)
        return aq_fail_nomem(err, "llama2.c tensor views", (qn + kn) * L * sizeof(float));
    const uint8_t *f = m->base + L2C_HEADER_BYTES;
    int64_t V = c->vocab_size, D = (int64_t)d, H = (int64_t)hd;
    char nm[L2C_NAME_MAX];
    set_view(m, "model.embed_tokens.weight", f + o->emb * 4, V, D);
    for (size_t l = 0; l < L; l++) {
        int li = (int)l;
        float *q = m->perm + l * (qn + kn), *k = q + qn;
        permute_rows(q, f + (o->wq + l * qn) * 4, c->n_heads, (size_t)o->hs, d);
        permute_rows(k, f + (o->wk + l * kn) * 4, c->n_kv_heads, (size_t)o->hs, d);
        layer_name(nm, li, "input_layernorm.weight");
        set_view(m, nm, f + (o->rms_att + l * d) * 4, D, 0);
        layer_name(nm, li, "self_attn.q_proj.weight");
        set_view(m, nm, q, (int64_t)o->q_rows, D);
        layer_name(nm, li, "self_attn.k_proj.weight");
        set_view(m, nm, k, (int64_t)o->kv_rows, D);
        layer_name(nm, li, "self_attn.v_proj.weight");
        set_view(m, nm, f + (o->wv + l * kn) * 4, (int64_t)o->kv_rows, D);
        layer_name(nm, li, "self_attn.o_proj.weight");
        set_view(m, nm, f + (o->wo + l * qn) * 4, D, (int64_t)o->q_rows);
        layer_name(nm, li, "post_attention_layernorm.weight");
        set_view(m, nm, f + (o->rms_ffn + l * d) * 4, D, 0);
        layer_name(nm, li, "mlp.gate_proj.weight");
        set_view(m, nm, f + (o->w1 + l * hd * d) * 4, H, D);
        layer_name(nm, li, "mlp.up_proj.weight");
        set_view(m, nm, f + (o->w3 + l * hd * d) * 4, H, D);
        layer_name(nm, li, "mlp.down_proj.weight");
        set_view(m, nm, f + (o->w2 + l * hd * d) * 4, D, H);
    }
    set_view(m, "model.norm.weight", f + o->rms_final * 4, D, 0);
    if (!c->tied_embeddings) set_view(m, "lm_head.weight", f + o->wcls * 4, V, D);
    return AQ_OK;
}

/* Reject NaN/Inf weights, naming the tensor, element and file offset. */
static aq_status check_finite(const aq_llama2c *m, aq_error *err)
{
    for (size_t t = 0; t < m->count; t++) {
        const aq_tensor_view *v = &m->views[t];
        const uint8_t *p = v->data;
        size_t n = v->nbytes / 4;
        for (size_t i = 0; i < n; i++) {
            float x = rd_f32(p + 4 * i);
            if (isfinite(x)) continue;
            int in_map = p >= m->base && p < m->base + m->len;
            return aq_fail(err, AQ_ERR_NUMERIC, "%s: tensor %s element %zu is %s%s%zu%s", m->label,
                           v->name, i, isnan(x) ? "NaN" : "infinite",
                           in_map ? " (byte offset " : "",
                           in_map ? (size_t)(p - m->base) + 4 * i : 0, in_map ? ")" : "");
        }
    }
    return AQ_OK;
}

static aq_status validate(aq_llama2c *m, aq_error *err)
{
    if (m->len < L2C_HEADER_BYTES)
        return aq_fail(
            err, AQ_ERR_FORMAT,
            "%s: file is %zu bytes, too short for the 28-byte llama2.c header (7 x int32)",
            m->label, m->len);
    AQ_TRY(check_header(m->label, m->base, &m->cfg, err));
    l2c_layout o;
    const aq_llama_config *c = &m->cfg;
    if (!layout_of(c, &o))
        return aq_fail(
            err, AQ_ERR_FORMAT,
            "%s: bad llama2.c header: dim %d, hidden_dim %d, n_layers %d, n_heads %d, vocab %d, "
            "seq_len %d give an absurd total size (overflow)",
            m->label, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->vocab_size,
            c->max_seq_len);
    uint64_t expect = L2C_HEADER_BYTES + o.end * 4;
    if ((uint64_t)m->len != expect)
        return aq_fail(
            err, AQ_ERR_FORMAT,
            "%s: file size is %zu bytes but the header (dim %d, hidden_dim %d, n_layers %d, "
            "n_heads %d, n_kv_heads %d, vocab_size %d%s, seq_len %d) requires exactly %llu bytes "
            "(28-byte header + %llu float32); the file is %s",
            m->label, m->len, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
            c->vocab_size, c->tied_embeddings ? " shared" : " unshared", c->max_seq_len,
            (unsigned long long)expect, (unsigned long long)o.end,
            (uint64_t)m->len < expect
                ? "truncated or the header is wrong"
                : "longer than the header says (trailing bytes or wrong header)");
    AQ_TRY(build_views(m, &o, err));
    return check_finite(m, err);
}

static aq_status new_handle(const char *label, aq_llama2c **out, aq_error *err)
{
    aq_llama2c *m = calloc(1, sizeof *m);
    if (m) m->label = strdup(label ? label : "<memory>");
    if (!m || !m->label) {
        free(m);
        return aq_fail_nomem(err, "llama2.c handle", sizeof *m);
    }
    *out = m;
    return AQ_OK;
}

aq_status aq_l2c_open_memory(const void *buf, size_t len, const char *label, aq_llama2c **out,
                             aq_error *err)
{
    *out = NULL;
    aq_llama2c *m = NULL;
    AQ_TRY(new_handle(label, &m, err));
    m->base = buf;
    m->len = len;
    aq_status st = validate(m, err);
    if (st != AQ_OK) {
        aq_l2c_close(m);
        return st;
    }
    *out = m;
    return AQ_OK;
}

aq_status aq_l2c_open(const char *path, aq_llama2c **out, aq_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return aq_fail(err, AQ_ERR_IO, "%s: cannot open llama2.c model: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return aq_fail(err, AQ_ERR_IO, "%s: not a regular file", path);
    }
    size_t len = (size_t)sb.st_size;
    if (len < L2C_HEADER_BYTES) {
        close(fd);
        return aq_fail(
            err, AQ_ERR_FORMAT,
            "%s: file is %zu bytes, too short for the 28-byte llama2.c header (7 x int32)", path,
            len);
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED)
        return aq_fail(err, AQ_ERR_IO, "%s: mmap failed: %s", path, strerror(map_errno));
    aq_llama2c *m = NULL;
    aq_status st = new_handle(path, &m, err);
    if (st != AQ_OK) {
        munmap(map, len);
        return st;
    }
    m->base = map;
    m->len = len;
    m->mapped = 1;
    st = validate(m, err);
    if (st != AQ_OK) {
        aq_l2c_close(m);
        return st;
    }
    *out = m;
    return AQ_OK;
}

void aq_l2c_close(aq_llama2c *m)
{
    if (!m) return;
    if (m->mapped) munmap((void *)m->base, m->len);
    free(m->views);
    free(m->names);
    free(m->perm);
    free(m->label);
    free(m);
}

void aq_l2c_config(const aq_llama2c *m, aq_llama_config *cfg)
{
    *cfg = m->cfg;
}

size_t aq_l2c_count(const aq_llama2c *m)
{
    return m->count;
}

const aq_tensor_view *aq_l2c_tensor(const aq_llama2c *m, size_t i)
{
    return i < m->count ? &m->views[i] : NULL;
}

const aq_tensor_view *aq_l2c_find(const aq_llama2c *m, const char *name)
{
    for (size_t i = 0; i < m->count; i++)
        if (!strcmp(m->views[i].name, name)) return &m->views[i];
    return NULL;
}

const char *aq_l2c_path(const aq_llama2c *m)
{
    return m->label;
}

/* ---- tokenizer .bin ---- */

/* Largest max_token_length we accept: SentencePiece pieces are short; this
 * only rejects garbage headers. */
#define L2C_MAX_PIECE (1 << 16)

/* Pass 1 of parsing: validate every token and measure, so pass 2 cannot fail
 * half-way. vocab_size 0 reads tokens up to the end of the buffer (*count
 * receives how many); otherwise exactly vocab_size tokens. */
static aq_status vocab_scan(const uint8_t *b, size_t len, int vocab_size, int32_t maxlen,
                            const char *label, int *count, size_t *text, aq_error *err)
{
    size_t off = 4;
    int i = 0;
    *text = 0;
    for (; vocab_size ? i < vocab_size : off < len; i++) {
        if (i == INT32_MAX - 1)
            return aq_fail(err, AQ_ERR_FORMAT, "%s: more than %d tokens", label, i);
        if (len - off < 8)
            return aq_fail(err, AQ_ERR_FORMAT,
                           "%s: truncated at token %d%s%.0d (byte offset %zu): need 8 bytes for "
                           "score and length, %zu left (the file is cut short%s)",
                           label, i, vocab_size ? " of " : "", vocab_size, off, len - off,
                           vocab_size ? ", or holds fewer tokens than the model's vocab_size: "
                                        "config/tokenizer vocabulary mismatch"
                                      : "");
        float score = rd_f32(b + off);
        int32_t n = rd_i32(b + off + 4);
        if (!isfinite(score))
            return aq_fail(err, AQ_ERR_FORMAT,
                           "%s: token %d (byte offset %zu) has a non-finite score", label, i, off);
        if (n < 0 || n > maxlen)
            return aq_fail(
                err, AQ_ERR_FORMAT,
                "%s: token %d (byte offset %zu) has length %d, outside [0, max_token_length %d]",
                label, i, off + 4, n, maxlen);
        off += 8;
        if (len - off < (size_t)n)
            return aq_fail(
                err, AQ_ERR_FORMAT,
                "%s: truncated in token %d (byte offset %zu): %d bytes announced, %zu left", label,
                i, off, n, len - off);
        off += (size_t)n;
        *text += (size_t)n + 1;
    }
    if (off != len)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: %zu trailing bytes after token %d (byte offset %zu): the tokenizer "
                       "holds more tokens than the model's vocab_size %d (config/tokenizer "
                       "vocabulary mismatch)",
                       label, len - off, vocab_size - 1, off, vocab_size);
    if (i == 0) return aq_fail(err, AQ_ERR_FORMAT, "%s: the tokenizer holds no token", label);
    *count = i;
    return AQ_OK;
}

aq_status aq_l2c_vocab_parse(const void *buf, size_t len, int vocab_size, const char *label,
                             aq_l2c_vocab *out, aq_error *err)
{
    memset(out, 0, sizeof *out);
    const uint8_t *b = buf;
    if (!label) label = "<memory>";
    if (vocab_size < 0)
        return aq_fail(err, AQ_ERR_ARG, "%s: vocab_size %d must not be negative", label,
                       vocab_size);
    if (len < 4)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: file is %zu bytes, too short for the int32 max_token_length", label,
                       len);
    int32_t maxlen = rd_i32(b);
    if (maxlen <= 0 || maxlen > L2C_MAX_PIECE)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: max_token_length %d at byte offset 0 is not in [1, %d]", label, maxlen,
                       L2C_MAX_PIECE);
    int count = 0;
    size_t text = 0;
    AQ_TRY(vocab_scan(b, len, vocab_size, maxlen, label, &count, &text, err));
    /* Pass 2: copy. All pieces live in one block starting at pieces[0]. */
    out->pieces = calloc((size_t)count, sizeof *out->pieces);
    out->lengths = calloc((size_t)count, sizeof *out->lengths);
    out->scores = calloc((size_t)count, sizeof *out->scores);
    char *blob = malloc(text);
    if (!out->pieces || !out->lengths || !out->scores || !blob) {
        free(blob);
        aq_l2c_vocab_free(out);
        return aq_fail_nomem(err, "tokenizer vocabulary", text);
    }
    size_t off = 4;
    for (int i = 0; i < count; i++) {
        out->scores[i] = rd_f32(b + off);
        out->lengths[i] = rd_i32(b + off + 4);
        off += 8;
        out->pieces[i] = blob;
        memcpy(blob, b + off, (size_t)out->lengths[i]);
        blob[out->lengths[i]] = '\0';
        blob += out->lengths[i] + 1;
        off += (size_t)out->lengths[i];
    }
    out->n = count;
    out->max_token_length = maxlen;
    return AQ_OK;
}

aq_status aq_l2c_vocab_read(const char *path, int vocab_size, aq_l2c_vocab *out, aq_error *err)
{
    memset(out, 0, sizeof *out);
    FILE *fp = fopen(path, "rb");
    if (!fp) return aq_fail(err, AQ_ERR_IO, "%s: cannot open tokenizer: %s", path, strerror(errno));
    aq_status st = AQ_OK;
    uint8_t *buf = NULL;
    long sz = -1;
    if (fseek(fp, 0, SEEK_END) == 0) sz = ftell(fp);
    if (sz < 0 || fseek(fp, 0, SEEK_SET) != 0) {
        st = aq_fail(err, AQ_ERR_IO, "%s: cannot determine the file size: %s", path,
                     strerror(errno));
        goto done;
    }
    buf = malloc((size_t)sz + 1);
    if (!buf) {
        st = aq_fail_nomem(err, "tokenizer file", (size_t)sz);
        goto done;
    }
    if (fread(buf, 1, (size_t)sz, fp) != (size_t)sz) {
        st = aq_fail(err, AQ_ERR_IO, "%s: read failed", path);
        goto done;
    }
    st = aq_l2c_vocab_parse(buf, (size_t)sz, vocab_size, path, out, err);
done:
    free(buf);
    fclose(fp);
    return st;
}

void aq_l2c_vocab_free(aq_l2c_vocab *v)
{
    if (!v) return;
    if (v->pieces) free(v->pieces[0]); /* the block holding every piece */
    free(v->pieces);
    free(v->lengths);
    free(v->scores);
    memset(v, 0, sizeof *v);
}
