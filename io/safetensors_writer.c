/* safetensors_writer.c — the deterministic safetensors writer (safetensors.h).
 *
 * Layout: 8-byte length, compact JSON header (__metadata__ first, keys sorted,
 * then tensors in add order) padded with spaces to a multiple of 8 so that the
 * data starts 8-byte aligned, then the tensors' bytes contiguously in add
 * order. Same calls, same bytes. Written through atomic_file.h. */
#include "safetensors.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct st_wtensor {
    char *name;
    aq_dtype dtype;
    int ndim;
    int64_t shape[AQ_MAX_DIMS];
    const void *data; /* borrowed until write */
    size_t nbytes;
} st_wtensor;

struct aq_st_writer {
    st_wtensor *t;
    size_t n, cap;
    json_t *names; /* set of added names: hashed duplicate check + UTF-8 check */
    json_t *meta;  /* key -> string */
};

aq_status aq_st_writer_new(aq_st_writer **out, aq_error *err)
{
    aq_st_writer *w = calloc(1, sizeof *w);
    if (w) w->names = json_object();
    if (w) w->meta = json_object();
    if (!w || !w->names || !w->meta) {
        aq_st_writer_free(w);
        return aq_fail_nomem(err, "safetensors writer", sizeof *w);
    }
    *out = w;
    return AQ_OK;
}

void aq_st_writer_free(aq_st_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n; i++)
        free(w->t[i].name);
    free(w->t);
    json_decref(w->names);
    json_decref(w->meta);
    free(w);
}

aq_status aq_st_writer_add(aq_st_writer *w, const char *name, aq_dtype dt, int ndim,
                           const int64_t *shape, const void *data, aq_error *err)
{
    if (!name || !strcmp(name, "__metadata__"))
        return aq_fail(err, AQ_ERR_ARG, "safetensors writer: invalid tensor name '%s'",
                       name ? name : "(null)");
    if ((unsigned)dt >= AQ_DTYPE_COUNT || ndim < 0 || ndim > AQ_MAX_DIMS)
        return aq_fail(err, AQ_ERR_ARG,
                       "safetensors writer: tensor '%s': invalid dtype %d or ndim %d", name,
                       (int)dt, ndim);
    if (json_object_get(w->names, name))
        return aq_fail(err, AQ_ERR_ARG, "safetensors writer: duplicate tensor name '%s'", name);
    size_t nb = aq_dtype_size(dt);
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return aq_fail(err, AQ_ERR_ARG, "safetensors writer: tensor '%s': negative shape[%d]",
                           name, i);
        if (shape[i] && nb > SIZE_MAX / (uint64_t)shape[i])
            return aq_fail(err, AQ_ERR_ARG, "safetensors writer: tensor '%s': size overflows",
                           name);
        nb *= (size_t)shape[i];
    }
    if (nb && !data)
        return aq_fail(err, AQ_ERR_ARG, "safetensors writer: tensor '%s': NULL data for %zu bytes",
                       name, nb);
    if (json_object_set_new(w->names, name, json_true()) != 0)
        return aq_fail(err, AQ_ERR_ARG, "safetensors writer: tensor name '%s' is not valid UTF-8",
                       name);
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 16;
        st_wtensor *t = realloc(w->t, nc * sizeof *t);
        if (!t) {
            json_object_del(w->names, name);
            return aq_fail_nomem(err, "safetensors writer", nc * sizeof *t);
        }
        w->t = t;
        w->cap = nc;
    }
    st_wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) {
        json_object_del(w->names, name);
        return aq_fail_nomem(err, "tensor name", strlen(name));
    }
    t->dtype = dt;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->data = data;
    t->nbytes = nb;
    w->n++;
    return AQ_OK;
}

aq_status aq_st_writer_meta(aq_st_writer *w, const char *key, const char *value, aq_error *err)
{
    json_t *s = key && value ? json_string(value) : NULL;
    if (!s || json_object_set_new(w->meta, key, s) != 0)
        return aq_fail(err, AQ_ERR_ARG,
                       "safetensors writer: metadata '%s' is NULL or not valid UTF-8",
                       key ? key : "(null)");
    return AQ_OK;
}

/* Builds the header: __metadata__ first (keys sorted), then tensors in add order. */
static json_t *writer_header(const aq_st_writer *w)
{
    json_t *root = json_object();
    if (!root) return NULL;
    int bad = 0;
    size_t nm = json_object_size(w->meta);
    if (nm) {
        const char **keys = calloc(nm, sizeof *keys);
        json_t *m = json_object();
        size_t i = 0;
        const char *k;
        json_t *v;
        if (keys) json_object_foreach(w->meta, k, v) keys[i++] = k;
        if (keys) qsort(keys, nm, sizeof *keys, str_ptr_cmp);
        for (i = 0; keys && m && i < nm; i++)
            bad |= json_object_set(m, keys[i], json_object_get(w->meta, keys[i]));
        bad |= !keys || !m || json_object_set_new(root, "__metadata__", m);
        free(keys);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n && !bad; i++) {
        const st_wtensor *t = &w->t[i];
        json_t *shape = json_array();
        for (int d = 0; shape && d < t->ndim; d++)
            bad |= json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *e =
            json_pack("{s:s, s:o*, s:[I,I]}", "dtype", aq_dtype_name(t->dtype), "shape", shape,
                      "data_offsets", (json_int_t)off, (json_int_t)(off + t->nbytes));
        bad |= !shape || !e || json_object_set_new(root, t->name, e);
        off += t->nbytes;
    }
    if (bad) {
        json_decref(root);
        return NULL;
    }
    return root;
}

aq_status aq_st_writer_write(aq_st_writer *w, const char *path, aq_error *err)
{
    json_t *root = writer_header(w);
    char *hdr = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(root);
    if (!hdr) return aq_fail_nomem(err, "safetensors header", 0);
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7; /* data starts 8-byte aligned */
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    static const char spaces[8] = "        ";
    aq_atomic_file *af = NULL;
    aq_status st;
    AQ_TRY_GOTO(st, aq_atomic_open(path, &af, err), done);
    AQ_TRY_GOTO(st, aq_atomic_write(af, len8, 8, err), done);
    AQ_TRY_GOTO(st, aq_atomic_write(af, hdr, hl, err), done);
    AQ_TRY_GOTO(st, aq_atomic_write(af, spaces, padded - hl, err), done);
    for (size_t i = 0; i < w->n; i++)
        AQ_TRY_GOTO(st, aq_atomic_write(af, w->t[i].data, w->t[i].nbytes, err), done);
    st = aq_atomic_commit(af, err);
    af = NULL;
done:
    aq_atomic_abort(af);
    free(hdr);
    return st;
}
