/* gguf_write.c — the GGUF writer (gguf.h).
 *
 * Metadata is encoded into one growing byte buffer as it is added, so a
 * 128k-entry token array costs one append per string and no per-entry
 * allocation. Tensors are only described until the write; their bytes come
 * from a caller buffer or a stream callback at write time, so a model never
 * has to be in memory whole. The file goes through io/atomic_file.h: on any
 * failure the target is unchanged and the temporary file is removed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "gguf.h"

typedef struct wtensor {
    char *name;
    uint32_t n_dims;
    int64_t ne[AQ_GGUF_MAX_DIMS];
    int type;
    uint64_t nbytes, offset;
    const void *data;
    aq_gguf_stream_fn fn;
    void *ctx;
} wtensor;

struct aq_gguf_writer {
    uint8_t *meta; /* encoded key/value pairs */
    size_t meta_len, meta_cap;
    uint64_t n_kv;
    char **keys; /* for the duplicate check */
    uint32_t alignment;
    wtensor *t;
    size_t n_t, t_cap;
    uint64_t data_len; /* aligned end of the last tensor */
};

/* The output: an atomic file or a memory buffer. */
typedef struct out {
    aq_atomic_file *af;
    uint8_t *mem;
    size_t mem_len, mem_cap;
    uint64_t pos;
} out;

struct aq_gguf_sink {
    out *o;
    uint64_t left;
    const char *tensor;
};

static aq_status grow(uint8_t **buf, size_t *cap, size_t need_len, aq_error *err)
{
    if (need_len <= *cap) return AQ_OK;
    size_t c = *cap ? *cap : 256;
    while (c < need_len)
        c = c > SIZE_MAX / 2 ? need_len : c * 2;
    uint8_t *p = realloc(*buf, c);
    if (!p) return aq_fail_nomem(err, "GGUF buffer", c);
    *buf = p;
    *cap = c;
    return AQ_OK;
}

static aq_status put(aq_gguf_writer *w, const void *p, size_t n, aq_error *err)
{
    AQ_TRY(grow(&w->meta, &w->meta_cap, w->meta_len + n, err));
    if (n) memcpy(w->meta + w->meta_len, p, n);
    w->meta_len += n;
    return AQ_OK;
}

static void le_store(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++, v >>= 8)
        p[i] = (uint8_t)v;
}

static aq_status put_u32(aq_gguf_writer *w, uint32_t v, aq_error *err)
{
    uint8_t b[4];
    le_store(b, v, 4);
    return put(w, b, 4, err);
}

static aq_status put_u64(aq_gguf_writer *w, uint64_t v, aq_error *err)
{
    uint8_t b[8];
    le_store(b, v, 8);
    return put(w, b, 8, err);
}

static aq_status put_str(aq_gguf_writer *w, const char *s, size_t n, aq_error *err)
{
    AQ_TRY(put_u64(w, n, err));
    return put(w, s, n, err);
}

/* Host values of a fixed-size type, re-encoded little-endian. */
static aq_status put_elems(aq_gguf_writer *w, aq_gguf_type t, const void *data, uint64_t n,
                           aq_error *err)
{
    size_t sz = aq_gguf_type_size(t);
    if (n > (SIZE_MAX - w->meta_len) / 8)
        return aq_fail(err, AQ_ERR_ARG, "GGUF array of %" PRIu64 " elements is too large", n);
    AQ_TRY(grow(&w->meta, &w->meta_cap, w->meta_len + (size_t)n * sz, err));
    const uint8_t *p = data;
    for (uint64_t i = 0; i < n; i++, p += sz) {
        uint64_t v = 0;
        if (sz == 1)
            v = p[0];
        else if (sz == 2) {
            uint16_t x;
            memcpy(&x, p, 2);
            v = x;
        } else if (sz == 4) {
            uint32_t x;
            memcpy(&x, p, 4);
            v = x;
        } else
            memcpy(&v, p, 8);
        if (t == AQ_GGUF_BOOL && v > 1)
            return aq_fail(err, AQ_ERR_ARG, "GGUF bool element %" PRIu64 " is %u, not 0 or 1", i,
                           p[0]);
        le_store(w->meta + w->meta_len, v, sz);
        w->meta_len += sz;
    }
    return AQ_OK;
}

aq_status aq_gguf_writer_new(aq_gguf_writer **out_w, aq_error *err)
{
    *out_w = calloc(1, sizeof **out_w);
    if (!*out_w) return aq_fail_nomem(err, "GGUF writer", sizeof **out_w);
    (*out_w)->alignment = AQ_GGUF_DEFAULT_ALIGNMENT;
    return AQ_OK;
}

void aq_gguf_writer_free(aq_gguf_writer *w)
{
    if (!w) return;
    for (uint64_t i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    for (size_t i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->keys);
    free(w->t);
    free(w->meta);
    free(w);
}

static aq_status check_key(const aq_gguf_writer *w, const char *key, aq_error *err)
{
    size_t n = key ? strlen(key) : 0;
    if (n == 0 || n > 65535)
        return aq_fail(err, AQ_ERR_ARG, "GGUF key '%s' must be 1..65535 bytes", key ? key : "");
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key))
            return aq_fail(err, AQ_ERR_ARG, "GGUF key '%s' set twice", key);
    return AQ_OK;
}

static aq_status add_key(aq_gguf_writer *w, const char *key, aq_error *err)
{
    char **k = realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *k);
    if (!k) return aq_fail_nomem(err, "GGUF key list", (size_t)(w->n_kv + 1) * sizeof *k);
    w->keys = k;
    if (!(k[w->n_kv] = strdup(key))) return aq_fail_nomem(err, "GGUF key", strlen(key) + 1);
    w->n_kv++;
    return AQ_OK;
}

/* Every setter: check the key, encode key + type + value, then record the
 * key; on any failure the buffer is rolled back to `mark`. */
static aq_status head(aq_gguf_writer *w, const char *key, aq_gguf_type type, aq_error *err)
{
    AQ_TRY(check_key(w, key, err));
    AQ_TRY(put_str(w, key, strlen(key), err));
    return put_u32(w, (uint32_t)type, err);
}

static aq_status finish(aq_gguf_writer *w, const char *key, size_t mark, aq_status st,
                        aq_error *err)
{
    if (st == AQ_OK) st = add_key(w, key, err);
    if (st != AQ_OK) w->meta_len = mark;
    return st;
}

static int fixed_type(int t)
{
    return aq_gguf_type_size(t) != 0;
}

aq_status aq_gguf_set_scalar(aq_gguf_writer *w, const char *key, aq_gguf_type type,
                             const void *value, aq_error *err)
{
    if (!fixed_type(type))
        return aq_fail(err, AQ_ERR_ARG, "GGUF key '%s': %s is not a fixed-size scalar type",
                       key ? key : "", aq_gguf_type_name(type));
    if (key && !strcmp(key, "general.alignment")) {
        uint32_t a = 0;
        if (type == AQ_GGUF_UINT32) memcpy(&a, value, 4);
        if (a == 0 || (a & (a - 1)))
            return aq_fail(err, AQ_ERR_ARG, "general.alignment must be a uint32 power of two");
        if (w->n_t)
            return aq_fail(err, AQ_ERR_ARG,
                           "general.alignment must be set before the first tensor");
    }
    size_t mark = w->meta_len;
    aq_status st = head(w, key, type, err);
    if (st == AQ_OK) st = put_elems(w, type, value, 1, err);
    st = finish(w, key, mark, st, err);
    if (st == AQ_OK && key && !strcmp(key, "general.alignment")) memcpy(&w->alignment, value, 4);
    return st;
}

aq_status aq_gguf_set_u32(aq_gguf_writer *w, const char *key, uint32_t v, aq_error *err)
{
    return aq_gguf_set_scalar(w, key, AQ_GGUF_UINT32, &v, err);
}

aq_status aq_gguf_set_f32(aq_gguf_writer *w, const char *key, float v, aq_error *err)
{
    return aq_gguf_set_scalar(w, key, AQ_GGUF_FLOAT32, &v, err);
}

aq_status aq_gguf_set_bool(aq_gguf_writer *w, const char *key, int v, aq_error *err)
{
    uint8_t b = v != 0;
    return aq_gguf_set_scalar(w, key, AQ_GGUF_BOOL, &b, err);
}

aq_status aq_gguf_set_strn(aq_gguf_writer *w, const char *key, const char *s, size_t len,
                           aq_error *err)
{
    size_t mark = w->meta_len;
    aq_status st = head(w, key, AQ_GGUF_STRING, err);
    if (st == AQ_OK) st = put_str(w, s, len, err);
    return finish(w, key, mark, st, err);
}

aq_status aq_gguf_set_str(aq_gguf_writer *w, const char *key, const char *s, aq_error *err)
{
    return aq_gguf_set_strn(w, key, s, strlen(s), err);
}

aq_status aq_gguf_set_array(aq_gguf_writer *w, const char *key, aq_gguf_type elem_type,
                            const void *data, uint64_t n, aq_error *err)
{
    if (!fixed_type(elem_type))
        return aq_fail(err, AQ_ERR_ARG,
                       "GGUF key '%s': aq_gguf_set_array takes fixed-size elements, not %s",
                       key ? key : "", aq_gguf_type_name(elem_type));
    size_t mark = w->meta_len;
    aq_status st = head(w, key, AQ_GGUF_ARRAY, err);
    if (st == AQ_OK) st = put_u32(w, (uint32_t)elem_type, err);
    if (st == AQ_OK) st = put_u64(w, n, err);
    if (st == AQ_OK) st = put_elems(w, elem_type, data, n, err);
    return finish(w, key, mark, st, err);
}

aq_status aq_gguf_set_str_array(aq_gguf_writer *w, const char *key, const char *const *strs,
                                const size_t *lens, uint64_t n, aq_error *err)
{
    size_t mark = w->meta_len;
    aq_status st = head(w, key, AQ_GGUF_ARRAY, err);
    if (st == AQ_OK) st = put_u32(w, AQ_GGUF_STRING, err);
    if (st == AQ_OK) st = put_u64(w, n, err);
    for (uint64_t i = 0; i < n && st == AQ_OK; i++)
        st = put_str(w, strs[i], lens ? lens[i] : strlen(strs[i]), err);
    return finish(w, key, mark, st, err);
}

aq_status aq_gguf_set_nested_array(aq_gguf_writer *w, const char *key, aq_gguf_type elem_type,
                                   const uint64_t *counts, uint64_t n, const void *data,
                                   aq_error *err)
{
    if (!fixed_type(elem_type))
        return aq_fail(err, AQ_ERR_ARG,
                       "GGUF key '%s': nested arrays take fixed-size elements, not %s",
                       key ? key : "", aq_gguf_type_name(elem_type));
    size_t mark = w->meta_len, sz = aq_gguf_type_size(elem_type);
    const uint8_t *p = data;
    aq_status st = head(w, key, AQ_GGUF_ARRAY, err);
    if (st == AQ_OK) st = put_u32(w, AQ_GGUF_ARRAY, err);
    if (st == AQ_OK) st = put_u64(w, n, err);
    for (uint64_t i = 0; i < n && st == AQ_OK; i++) {
        st = put_u32(w, (uint32_t)elem_type, err);
        if (st == AQ_OK) st = put_u64(w, counts[i], err);
        if (st == AQ_OK) st = put_elems(w, elem_type, p, counts[i], err);
        p += counts[i] * sz;
    }
    return finish(w, key, mark, st, err);
}

/* ---------------------------------------------------------------- tensors */

static uint64_t align_up(uint64_t x, uint32_t a)
{
    return (x + a - 1) / a * a;
}

static aq_status add_tensor(aq_gguf_writer *w, const char *name, uint32_t n_dims, const int64_t *ne,
                            int type, wtensor src, aq_error *err)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > AQ_GGUF_MAX_NAME_GGML)
        return aq_fail(err, AQ_ERR_ARG, "GGUF tensor name '%s' must be 1..%d bytes",
                       name ? name : "", AQ_GGUF_MAX_NAME_GGML);
    if (n_dims == 0 || n_dims > AQ_GGUF_MAX_DIMS)
        return aq_fail(err, AQ_ERR_SHAPE, "GGUF tensor '%s': %" PRIu32 " dimensions (1..%d)", name,
                       n_dims, AQ_GGUF_MAX_DIMS);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return aq_fail(err, AQ_ERR_ARG, "GGUF tensor '%s' added twice", name);
    uint64_t nbytes;
    char what[96];
    snprintf(what, sizeof what, "GGUF tensor '%s'", name);
    AQ_TRY(aq_ggml_nbytes(type, n_dims, ne, what, &nbytes, err));
    if (w->n_t == w->t_cap) {
        size_t c = w->t_cap ? 2 * w->t_cap : 16;
        wtensor *t = realloc(w->t, c * sizeof *t);
        if (!t) return aq_fail_nomem(err, "GGUF tensor list", c * sizeof *t);
        w->t = t;
        w->t_cap = c;
    }
    src.name = strdup(name);
    if (!src.name) return aq_fail_nomem(err, "GGUF tensor name", n + 1);
    src.n_dims = n_dims;
    for (uint32_t i = 0; i < AQ_GGUF_MAX_DIMS; i++)
        src.ne[i] = i < n_dims ? ne[i] : 1;
    src.type = type;
    src.nbytes = nbytes;
    src.offset = w->data_len;
    w->data_len = align_up(w->data_len + nbytes, w->alignment);
    w->t[w->n_t++] = src;
    return AQ_OK;
}

aq_status aq_gguf_add_tensor(aq_gguf_writer *w, const char *name, uint32_t n_dims,
                             const int64_t *ne, int type, const void *data, aq_error *err)
{
    return add_tensor(w, name, n_dims, ne, type, (wtensor){.data = data}, err);
}

aq_status aq_gguf_add_tensor_stream(aq_gguf_writer *w, const char *name, uint32_t n_dims,
                                    const int64_t *ne, int type, aq_gguf_stream_fn fn, void *ctx,
                                    aq_error *err)
{
    if (!fn)
        return aq_fail(err, AQ_ERR_ARG, "GGUF tensor '%s': no stream function", name ? name : "");
    return add_tensor(w, name, n_dims, ne, type, (wtensor){.fn = fn, .ctx = ctx}, err);
}

static uint64_t infos_len(const aq_gguf_writer *w)
{
    uint64_t n = 0;
    for (size_t i = 0; i < w->n_t; i++)
        n += 8 + strlen(w->t[i].name) + 4 + 8 * w->t[i].n_dims + 4 + 8;
    return n;
}

uint64_t aq_gguf_writer_size(const aq_gguf_writer *w)
{
    return align_up(24 + w->meta_len + infos_len(w), w->alignment) + w->data_len;
}

/* ----------------------------------------------------------------- output */

static aq_status out_write(out *o, const void *p, size_t n, aq_error *err)
{
    if (o->af) {
        AQ_TRY(aq_atomic_write(o->af, p, n, err));
    } else {
        AQ_TRY(grow(&o->mem, &o->mem_cap, o->mem_len + n, err));
        if (n) memcpy(o->mem + o->mem_len, p, n);
        o->mem_len += n;
    }
    o->pos += n;
    return AQ_OK;
}

static aq_status out_pad(out *o, uint32_t a, aq_error *err)
{
    static const uint8_t zeros[256];
    while (o->pos % a) {
        uint64_t k = a - o->pos % a;
        AQ_TRY(out_write(o, zeros, k < sizeof zeros ? (size_t)k : sizeof zeros, err));
    }
    return AQ_OK;
}

aq_status aq_gguf_sink_write(aq_gguf_sink *s, const void *buf, size_t len, aq_error *err)
{
    if (len > s->left)
        return aq_fail(err, AQ_ERR_INTERNAL,
                       "GGUF tensor '%s': the stream wrote %zu bytes past its size", s->tensor,
                       (size_t)(len - s->left));
    s->left -= len;
    return out_write(s->o, buf, len, err);
}

static aq_status write_header(const aq_gguf_writer *w, out *o, aq_error *err)
{
    uint8_t h[24] = {'G', 'G', 'U', 'F'};
    le_store(h + 4, AQ_GGUF_VERSION, 4);
    le_store(h + 8, w->n_t, 8);
    le_store(h + 16, w->n_kv, 8);
    AQ_TRY(out_write(o, h, sizeof h, err));
    AQ_TRY(out_write(o, w->meta, w->meta_len, err));
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint8_t b[8 + 4 + 8 * AQ_GGUF_MAX_DIMS + 4 + 8];
        size_t n = strlen(t->name), k = 0;
        le_store(b, n, 8);
        AQ_TRY(out_write(o, b, 8, err));
        AQ_TRY(out_write(o, t->name, n, err));
        le_store(b + k, t->n_dims, 4), k += 4;
        for (uint32_t d = 0; d < t->n_dims; d++)
            le_store(b + k, (uint64_t)t->ne[d], 8), k += 8;
        le_store(b + k, (uint32_t)t->type, 4), k += 4;
        le_store(b + k, t->offset, 8), k += 8;
        AQ_TRY(out_write(o, b, k, err));
    }
    return out_pad(o, w->alignment, err);
}

static aq_status write_data(const aq_gguf_writer *w, out *o, aq_error *err)
{
    uint64_t start = o->pos;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        if (o->pos - start != t->offset)
            return aq_fail(err, AQ_ERR_INTERNAL,
                           "GGUF tensor '%s' lands at %" PRIu64 ", planned %" PRIu64, t->name,
                           o->pos - start, t->offset);
        if (t->fn) {
            aq_gguf_sink s = {o, t->nbytes, t->name};
            AQ_TRY(t->fn(t->ctx, &s, err));
            if (s.left)
                return aq_fail(err, AQ_ERR_INTERNAL,
                               "GGUF tensor '%s': the stream wrote %" PRIu64 " of %" PRIu64
                               " bytes",
                               t->name, t->nbytes - s.left, t->nbytes);
        } else if (t->nbytes) {
            if (!t->data) return aq_fail(err, AQ_ERR_ARG, "GGUF tensor '%s' has no data", t->name);
            AQ_TRY(out_write(o, t->data, (size_t)t->nbytes, err));
        }
        AQ_TRY(out_pad(o, w->alignment, err));
    }
    return AQ_OK;
}

/* "GGUF not written: <path>: <reason>": the atomic layer's messages already
 * start with the path (or its temporary name); others get it added. */
static aq_status not_written(const char *path, aq_status st, aq_error *err)
{
    if (err && strncmp(err->msg, path, strlen(path)))
        aq_error_prefix(err, "GGUF not written: %s", path);
    else
        aq_error_prefix(err, "GGUF not written");
    return st;
}

aq_status aq_gguf_write(aq_gguf_writer *w, const char *path, aq_error *err)
{
    out o = {0};
    aq_status st = aq_atomic_open(path, &o.af, err);
    if (st != AQ_OK) return not_written(path, st, err);
    st = write_header(w, &o, err);
    if (st == AQ_OK) st = write_data(w, &o, err);
    if (st != AQ_OK) {
        aq_atomic_abort(o.af);
        return not_written(path, st, err);
    }
    st = aq_atomic_commit(o.af, err);
    return st == AQ_OK ? st : not_written(path, st, err);
}

aq_status aq_gguf_write_memory(aq_gguf_writer *w, uint8_t **buf, size_t *len, aq_error *err)
{
    out o = {0};
    aq_status st = write_header(w, &o, err);
    if (st == AQ_OK) st = write_data(w, &o, err);
    if (st != AQ_OK) {
        free(o.mem);
        return st;
    }
    *buf = o.mem;
    *len = o.mem_len;
    return AQ_OK;
}
