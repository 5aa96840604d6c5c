/* gguf.c — the validating GGUF reader (gguf.h). The type tables are in
 * gguf_types.c, the writer in gguf_write.c.
 *
 * The reader checks every count against the bytes that remain before it
 * allocates anything, so a hostile header cannot make it allocate more than a
 * small multiple of the file size; every error names the byte offset and the
 * key or tensor concerned. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ----------------------------------------------------------------- reader */

typedef struct name_ref {
    const char *name;
    size_t i;
} name_ref;

struct aq_gguf {
    const uint8_t *base;
    size_t len;
    int mapped;
    char *label;
    uint32_t version, alignment;
    uint64_t data_offset;
    size_t n_kv, n_t;
    size_t kv_cap, t_cap; /* allocated entries */
    aq_gguf_kv *kv;
    aq_gguf_tensor *t;
    name_ref *kv_sorted, *t_sorted; /* sorted by key / name: duplicates, lookup */
};

/* A cursor over the image; every read checks the bytes left. */
typedef struct rd {
    const uint8_t *p;
    size_t len, pos;
    const char *label;
    aq_error *err;
} rd;

static uint64_t le_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t le_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static aq_status need(rd *r, uint64_t n, const char *what, const char *ctx)
{
    if (n > r->len - r->pos)
        return aq_fail(r->err, AQ_ERR_FORMAT,
                       "%s: truncated at byte %zu: %s of %s needs %" PRIu64 " bytes, %zu left",
                       r->label, r->pos, what, ctx, n, r->len - r->pos);
    return AQ_OK;
}

static aq_status rd_u32(rd *r, uint32_t *v, const char *what, const char *ctx)
{
    AQ_TRY(need(r, 4, what, ctx));
    *v = le_u32(r->p + r->pos);
    r->pos += 4;
    return AQ_OK;
}

static aq_status rd_u64(rd *r, uint64_t *v, const char *what, const char *ctx)
{
    AQ_TRY(need(r, 8, what, ctx));
    *v = le_u64(r->p + r->pos);
    r->pos += 8;
    return AQ_OK;
}

static aq_status rd_str(rd *r, aq_gguf_str *s, const char *what, const char *ctx)
{
    uint64_t n;
    size_t at = r->pos;
    AQ_TRY(rd_u64(r, &n, what, ctx));
    if (n > r->len - r->pos)
        return aq_fail(r->err, AQ_ERR_FORMAT,
                       "%s: byte %zu: %s of %s has length %" PRIu64 " but only %zu bytes remain",
                       r->label, at, what, ctx, n, r->len - r->pos);
    s->ptr = (const char *)r->p + r->pos;
    s->len = n;
    r->pos += (size_t)n;
    return AQ_OK;
}

static void value_free(aq_gguf_value *v)
{
    if (v->type != AQ_GGUF_ARRAY) return;
    if (v->items)
        for (uint64_t i = 0; i < v->n; i++)
            value_free((aq_gguf_value *)&v->items[i]);
    free((void *)v->items);
    free((void *)v->strs);
    v->items = NULL;
    v->strs = NULL;
}

static aq_status parse_value(rd *r, aq_gguf_type type, int depth, aq_gguf_value *v,
                             const char *key);

/* The smallest encoding of one element: bounds n before allocating. */
static uint64_t min_elem_bytes(aq_gguf_type t)
{
    return t == AQ_GGUF_STRING ? 8 : t == AQ_GGUF_ARRAY ? 12 : aq_gguf_type_size(t);
}

static aq_status check_bools(rd *r, const uint8_t *p, uint64_t n, size_t at, const char *key)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i] > 1)
            return aq_fail(r->err, AQ_ERR_FORMAT,
                           "%s: byte %zu: bool value %u of key '%s' is neither 0 nor 1", r->label,
                           at + (size_t)i, p[i], key);
    return AQ_OK;
}

static aq_status parse_array(rd *r, int depth, aq_gguf_value *v, const char *key)
{
    size_t at = r->pos;
    if (depth > AQ_GGUF_MAX_DEPTH)
        return aq_fail(r->err, AQ_ERR_FORMAT,
                       "%s: byte %zu: arrays of key '%s' nest deeper than %d", r->label, at, key,
                       AQ_GGUF_MAX_DEPTH);
    uint32_t et;
    AQ_TRY(rd_u32(r, &et, "array element type", key));
    if (et >= AQ_GGUF_TYPE_COUNT)
        return aq_fail(r->err, AQ_ERR_FORMAT,
                       "%s: byte %zu: array of key '%s' has unknown element type %" PRIu32,
                       r->label, at, key, et);
    v->elem_type = (aq_gguf_type)et;
    AQ_TRY(rd_u64(r, &v->n, "array length", key));
    uint64_t m = min_elem_bytes(v->elem_type);
    if (v->n > (r->len - r->pos) / m)
        return aq_fail(r->err, AQ_ERR_FORMAT,
                       "%s: byte %zu: array of key '%s' claims %" PRIu64
                       " %s elements, more than the %zu bytes left can hold",
                       r->label, at + 4, key, v->n, aq_gguf_type_name((int)et), r->len - r->pos);
    if (m == aq_gguf_type_size(v->elem_type)) { /* fixed-size elements */
        v->raw = r->p + r->pos;
        if (v->elem_type == AQ_GGUF_BOOL) AQ_TRY(check_bools(r, v->raw, v->n, r->pos, key));
        r->pos += (size_t)(v->n * m);
        return AQ_OK;
    }
    if (v->n == 0) return AQ_OK;
    if (v->elem_type == AQ_GGUF_STRING) {
        aq_gguf_str *s = calloc((size_t)v->n, sizeof *s);
        if (!s) return aq_fail_nomem(r->err, "GGUF string array", (size_t)v->n * sizeof *s);
        v->strs = s;
        for (uint64_t i = 0; i < v->n; i++)
            AQ_TRY(rd_str(r, &s[i], "array string", key));
        return AQ_OK;
    }
    aq_gguf_value *items = calloc((size_t)v->n, sizeof *items);
    if (!items) return aq_fail_nomem(r->err, "GGUF nested array", (size_t)v->n * sizeof *items);
    v->items = items;
    for (uint64_t i = 0; i < v->n; i++) {
        items[i].type = AQ_GGUF_ARRAY;
        AQ_TRY(parse_array(r, depth + 1, &items[i], key));
    }
    return AQ_OK;
}

static aq_status parse_value(rd *r, aq_gguf_type type, int depth, aq_gguf_value *v, const char *key)
{
    v->type = type;
    if (type == AQ_GGUF_STRING) return rd_str(r, &v->str, "string value", key);
    if (type == AQ_GGUF_ARRAY) return parse_array(r, depth + 1, v, key);
    size_t sz = aq_gguf_type_size(type);
    AQ_TRY(need(r, sz, "value", key));
    v->raw = r->p + r->pos;
    v->n = 1;
    if (type == AQ_GGUF_BOOL) AQ_TRY(check_bools(r, v->raw, 1, r->pos, key));
    r->pos += sz;
    return AQ_OK;
}

/* A NUL-terminated copy of a key or tensor name; NUL bytes inside are refused. */
static aq_status copy_name(rd *r, aq_gguf_str s, size_t at, const char *what, char **out)
{
    if (memchr(s.ptr, '\0', (size_t)s.len))
        return aq_fail(r->err, AQ_ERR_FORMAT, "%s: byte %zu: %s contains a NUL byte", r->label, at,
                       what);
    char *c = malloc((size_t)s.len + 1);
    if (!c) return aq_fail_nomem(r->err, what, (size_t)s.len + 1);
    memcpy(c, s.ptr, (size_t)s.len);
    c[s.len] = '\0';
    *out = c;
    return AQ_OK;
}

static aq_status parse_kv(rd *r, aq_gguf *g, size_t i)
{
    aq_gguf_kv *kv = &g->kv[i];
    aq_gguf_str ks;
    char ctx[48];
    snprintf(ctx, sizeof ctx, "metadata entry %zu", i);
    kv->offset = r->pos;
    AQ_TRY(rd_str(r, &ks, "key", ctx));
    if (ks.len == 0 || ks.len > 65535)
        return aq_fail(r->err, AQ_ERR_FORMAT,
                       "%s: byte %" PRIu64 ": key of %s has length %" PRIu64 " (1..65535)",
                       r->label, kv->offset, ctx, ks.len);
    AQ_TRY(copy_name(r, ks, (size_t)kv->offset, "key", (char **)&kv->key));
    uint32_t type;
    size_t at = r->pos;
    AQ_TRY(rd_u32(r, &type, "value type", kv->key));
    if (type >= AQ_GGUF_TYPE_COUNT)
        return aq_fail(r->err, AQ_ERR_FORMAT,
                       "%s: byte %zu: key '%s' has unknown value type %" PRIu32, r->label, at,
                       kv->key, type);
    return parse_value(r, (aq_gguf_type)type, 0, &kv->v, kv->key);
}

static aq_status parse_tensor_info(rd *r, aq_gguf_tensor *t, size_t i)
{
    char ctx[48];
    snprintf(ctx, sizeof ctx, "tensor info %zu", i);
    t->info_offset = r->pos;
    aq_gguf_str ns;
    AQ_TRY(rd_str(r, &ns, "name", ctx));
    if (ns.len > AQ_GGUF_MAX_NAME_SPEC)
        return aq_fail(r->err, AQ_ERR_FORMAT,
                       "%s: byte %" PRIu64 ": name of %s is %" PRIu64 " bytes long (at most %d)",
                       r->label, t->info_offset, ctx, ns.len, AQ_GGUF_MAX_NAME_SPEC);
    AQ_TRY(copy_name(r, ns, (size_t)t->info_offset, "tensor name", (char **)&t->name));
    size_t at = r->pos;
    AQ_TRY(rd_u32(r, &t->n_dims, "n_dims", t->name));
    if (t->n_dims > AQ_GGUF_MAX_DIMS)
        return aq_fail(r->err, AQ_ERR_FORMAT,
                       "%s: byte %zu: tensor '%s' has %" PRIu32 " dimensions (at most %d)",
                       r->label, at, t->name, t->n_dims, AQ_GGUF_MAX_DIMS);
    for (uint32_t d = 0; d < AQ_GGUF_MAX_DIMS; d++) {
        uint64_t v = 1;
        at = r->pos;
        if (d < t->n_dims) AQ_TRY(rd_u64(r, &v, "dimension", t->name));
        if (v > (uint64_t)INT64_MAX)
            return aq_fail(r->err, AQ_ERR_FORMAT,
                           "%s: byte %zu: dimension %" PRIu32
                           " of tensor '%s' is too large (%" PRIu64 ")",
                           r->label, at, d, t->name, v);
        t->ne[d] = (int64_t)v;
    }
    uint32_t type;
    at = r->pos;
    AQ_TRY(rd_u32(r, &type, "ggml type", t->name));
    if (aq_ggml_block_size((int)type) == 0)
        return aq_fail(r->err, AQ_ERR_FORMAT,
                       "%s: byte %zu: tensor '%s' has unknown ggml type id %" PRIu32, r->label, at,
                       t->name, type);
    t->type = (int)type;
    aq_error e = {0};
    if (aq_ggml_nbytes(t->type, t->n_dims, t->ne, t->name, &t->nbytes, &e) != AQ_OK)
        return aq_fail(r->err, AQ_ERR_FORMAT, "%s: byte %" PRIu64 ": %s", r->label, t->info_offset,
                       e.msg);
    return rd_u64(r, &t->offset, "data offset", t->name);
}

static int cmp_name_ref(const void *a, const void *b)
{
    return strcmp(((const name_ref *)a)->name, ((const name_ref *)b)->name);
}

/* Sorted name index; a duplicate is an error naming both entries. */
static aq_status sort_names(aq_gguf *g, name_ref **out, size_t n, int tensors, aq_error *err)
{
    if (n == 0) return AQ_OK;
    name_ref *s = malloc(n * sizeof *s);
    if (!s) return aq_fail_nomem(err, "GGUF name index", n * sizeof *s);
    for (size_t i = 0; i < n; i++)
        s[i] = (name_ref){tensors ? g->t[i].name : g->kv[i].key, i};
    qsort(s, n, sizeof *s, cmp_name_ref);
    *out = s;
    for (size_t i = 1; i < n; i++) {
        if (strcmp(s[i - 1].name, s[i].name)) continue;
        size_t a = s[i - 1].i < s[i].i ? s[i - 1].i : s[i].i, b = s[i - 1].i ^ s[i].i ^ a;
        uint64_t off = tensors ? g->t[b].info_offset : g->kv[b].offset;
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: byte %" PRIu64 ": duplicate %s '%s' (entries %zu and %zu)", g->label,
                       off, tensors ? "tensor name" : "key", s[i].name, a, b);
    }
    return AQ_OK;
}

static aq_status read_alignment(aq_gguf *g, aq_error *err)
{
    g->alignment = AQ_GGUF_DEFAULT_ALIGNMENT;
    const aq_gguf_kv *kv = aq_gguf_find_kv(g, "general.alignment");
    if (!kv) return AQ_OK;
    if (kv->v.type != AQ_GGUF_UINT32)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: byte %" PRIu64 ": general.alignment must be uint32, not %s", g->label,
                       kv->offset, aq_gguf_type_name(kv->v.type));
    uint32_t a = le_u32(kv->v.raw);
    if (a == 0 || (a & (a - 1)))
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: byte %" PRIu64 ": general.alignment %" PRIu32 " is not a power of two",
                       g->label, kv->offset, a);
    g->alignment = a;
    return AQ_OK;
}

static int cmp_offset(const void *a, const void *b)
{
    const aq_gguf_tensor *x = *(const aq_gguf_tensor *const *)a,
                         *y = *(const aq_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Every tensor aligned, inside the file, and no two overlapping. */
static aq_status check_layout(aq_gguf *g, size_t infos_end, aq_error *err)
{
    g->data_offset = (infos_end + g->alignment - 1) / g->alignment * (uint64_t)g->alignment;
    if (g->n_t == 0) return AQ_OK;
    if (g->data_offset > g->len)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: data section would start at byte %" PRIu64 ", past the end (%zu bytes)",
                       g->label, g->data_offset, g->len);
    uint64_t room = g->len - g->data_offset;
    const aq_gguf_tensor **by = malloc(g->n_t * sizeof *by);
    if (!by) return aq_fail_nomem(err, "GGUF tensor order", g->n_t * sizeof *by);
    aq_status st = AQ_OK;
    for (size_t i = 0; i < g->n_t && st == AQ_OK; i++) {
        aq_gguf_tensor *t = &g->t[i];
        by[i] = t;
        if (t->offset % g->alignment)
            st = aq_fail(err, AQ_ERR_FORMAT,
                         "%s: byte %" PRIu64 ": tensor '%s' offset %" PRIu64
                         " is not a multiple of the alignment %" PRIu32,
                         g->label, t->info_offset, t->name, t->offset, g->alignment);
        else if (t->offset > room || t->nbytes > room - t->offset)
            st = aq_fail(err, AQ_ERR_FORMAT,
                         "%s: byte %" PRIu64 ": tensor '%s' data [%" PRIu64 ", +%" PRIu64
                         ") runs past the end of the file (data section holds %" PRIu64 " bytes)",
                         g->label, t->info_offset, t->name, t->offset, t->nbytes, room);
        else
            t->data = g->base + g->data_offset + t->offset;
    }
    if (st == AQ_OK) qsort(by, g->n_t, sizeof *by, cmp_offset);
    /* Compare each non-empty tensor with the last non-empty one before it:
     * an empty tensor between two others must not hide their overlap. */
    const aq_gguf_tensor *prev = NULL;
    for (size_t i = 0; i < g->n_t && st == AQ_OK; i++) {
        if (!by[i]->nbytes) continue;
        if (prev && by[i]->offset < prev->offset + prev->nbytes)
            st = aq_fail(err, AQ_ERR_FORMAT,
                         "%s: byte %" PRIu64 ": tensor '%s' data at offset %" PRIu64
                         " overlaps tensor '%s' [%" PRIu64 ", +%" PRIu64 ")",
                         g->label, by[i]->info_offset, by[i]->name, by[i]->offset, prev->name, prev->offset,
                         prev->nbytes);
        prev = by[i];
    }
    free(by);
    return st;
}

static aq_status parse_header(rd *r, aq_gguf *g, uint64_t *n_t, uint64_t *n_kv)
{
    AQ_TRY(need(r, 4, "magic", "header"));
    if (memcmp(r->p, "GGUF", 4))
        return aq_fail(r->err, AQ_ERR_FORMAT,
                       "%s: byte 0: not a GGUF file (magic %02x %02x %02x %02x, expected \"GGUF\")",
                       r->label, r->p[0], r->p[1], r->p[2], r->p[3]);
    r->pos = 4;
    AQ_TRY(rd_u32(r, &g->version, "version", "header"));
    if (g->version != 2 && g->version != 3)
        return aq_fail(r->err, AQ_ERR_FORMAT,
                       "%s: byte 4: GGUF version %" PRIu32 " is not supported (2 or 3%s)", r->label,
                       g->version, (g->version & 0xffff) == 0 ? "; a big-endian file?" : "");
    AQ_TRY(rd_u64(r, n_t, "tensor_count", "header"));
    AQ_TRY(rd_u64(r, n_kv, "metadata_kv_count", "header"));
    /* A metadata entry takes at least 8 + 1 + 4 + 1 bytes, a tensor info 8 + 4 + 4 + 8. */
    if (*n_kv > (r->len - r->pos) / 14)
        return aq_fail(r->err, AQ_ERR_FORMAT,
                       "%s: byte 16: metadata_kv_count %" PRIu64
                       " cannot fit in the %zu bytes left",
                       r->label, *n_kv, r->len - r->pos);
    if (*n_t > (r->len - r->pos) / 24)
        return aq_fail(r->err, AQ_ERR_FORMAT,
                       "%s: byte 8: tensor_count %" PRIu64 " cannot fit in the %zu bytes left",
                       r->label, *n_t, r->len - r->pos);
    return AQ_OK;
}

static aq_status parse(aq_gguf *g, aq_error *err)
{
    rd r = {g->base, g->len, 0, g->label, err};
    uint64_t n_t = 0, n_kv = 0;
    AQ_TRY(parse_header(&r, g, &n_t, &n_kv));
    if ((n_kv && !(g->kv = calloc((size_t)n_kv, sizeof *g->kv))) ||
        (n_t && !(g->t = calloc((size_t)n_t, sizeof *g->t))))
        return aq_fail_nomem(err, "GGUF tables", (size_t)(n_kv + n_t) * sizeof *g->t);
    g->kv_cap = (size_t)n_kv;
    g->t_cap = (size_t)n_t;
    for (; g->n_kv < n_kv; g->n_kv++)
        AQ_TRY(parse_kv(&r, g, g->n_kv));
    AQ_TRY(sort_names(g, &g->kv_sorted, g->n_kv, 0, err));
    AQ_TRY(read_alignment(g, err));
    for (; g->n_t < n_t; g->n_t++)
        AQ_TRY(parse_tensor_info(&r, &g->t[g->n_t], g->n_t));
    AQ_TRY(sort_names(g, &g->t_sorted, g->n_t, 1, err));
    return check_layout(g, r.pos, err);
}

static aq_status open_image(aq_gguf *g, aq_gguf **out, aq_error *err)
{
    aq_status st = parse(g, err);
    if (st != AQ_OK) {
        aq_gguf_close(g);
        return st;
    }
    *out = g;
    return AQ_OK;
}

aq_status aq_gguf_open_memory(const void *buf, size_t len, const char *label, aq_gguf **out,
                              aq_error *err)
{
    *out = NULL;
    aq_gguf *g = calloc(1, sizeof *g);
    if (g) g->label = strdup(label ? label : "<memory>");
    if (!g || !g->label) {
        free(g);
        return aq_fail_nomem(err, "GGUF reader", sizeof *g);
    }
    g->base = buf;
    g->len = len;
    return open_image(g, out, err);
}

aq_status aq_gguf_open(const char *path, aq_gguf **out, aq_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return aq_fail(err, AQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return aq_fail(err, AQ_ERR_IO, "%s: not a regular file", path);
    }
    size_t len = (size_t)sb.st_size;
    void *map = NULL;
    if (len) map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED)
        return aq_fail(err, AQ_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, len,
                       strerror(map_errno));
    aq_gguf *g = calloc(1, sizeof *g);
    if (g) g->label = strdup(path);
    if (!g || !g->label) {
        free(g);
        if (len) munmap(map, len);
        return aq_fail_nomem(err, "GGUF reader", sizeof *g);
    }
    g->base = len ? map : (const uint8_t *)"";
    g->len = len;
    g->mapped = len != 0;
    return open_image(g, out, err);
}

void aq_gguf_close(aq_gguf *g)
{
    if (!g) return;
    /* Up to the allocated counts: an entry half-parsed when an error hit is
     * freed too (the tables are zeroed, so untouched entries free nothing). */
    for (size_t i = 0; i < g->kv_cap; i++) {
        free((void *)g->kv[i].key);
        value_free(&g->kv[i].v);
    }
    for (size_t i = 0; i < g->t_cap; i++)
        free((void *)g->t[i].name);
    free(g->kv);
    free(g->t);
    free(g->kv_sorted);
    free(g->t_sorted);
    if (g->mapped) munmap((void *)g->base, g->len);
    free(g->label);
    free(g);
}

uint32_t aq_gguf_version(const aq_gguf *g)
{
    return g->version;
}
uint32_t aq_gguf_alignment(const aq_gguf *g)
{
    return g->alignment;
}
uint64_t aq_gguf_data_offset(const aq_gguf *g)
{
    return g->data_offset;
}
size_t aq_gguf_n_kv(const aq_gguf *g)
{
    return g->n_kv;
}
size_t aq_gguf_n_tensors(const aq_gguf *g)
{
    return g->n_t;
}

const aq_gguf_kv *aq_gguf_kv_at(const aq_gguf *g, size_t i)
{
    return i < g->n_kv ? &g->kv[i] : NULL;
}

const aq_gguf_tensor *aq_gguf_tensor_at(const aq_gguf *g, size_t i)
{
    return i < g->n_t ? &g->t[i] : NULL;
}

static const name_ref *find_ref(const name_ref *s, size_t n, const char *name)
{
    if (!s) return NULL;
    name_ref key = {name, 0};
    return bsearch(&key, s, n, sizeof *s, cmp_name_ref);
}

const aq_gguf_kv *aq_gguf_find_kv(const aq_gguf *g, const char *key)
{
    const name_ref *r = find_ref(g->kv_sorted, g->n_kv, key);
    return r ? &g->kv[r->i] : NULL;
}

const aq_gguf_tensor *aq_gguf_find_tensor(const aq_gguf *g, const char *name)
{
    const name_ref *r = find_ref(g->t_sorted, g->n_t, name);
    return r ? &g->t[r->i] : NULL;
}

/* Element i of a fixed-size value as raw little-endian bits. */
static uint64_t elem_bits(const aq_gguf_value *v, uint64_t i, size_t *size)
{
    int t = v->type == AQ_GGUF_ARRAY ? (int)v->elem_type : (int)v->type;
    size_t sz = aq_gguf_type_size(t);
    *size = sz;
    if (!sz || !v->raw || i >= v->n) return 0;
    const uint8_t *p = v->raw + i * sz;
    uint64_t b = 0;
    for (size_t k = sz; k-- > 0;)
        b = b << 8 | p[k];
    return b;
}

static int elem_type(const aq_gguf_value *v)
{
    return v->type == AQ_GGUF_ARRAY ? (int)v->elem_type : (int)v->type;
}

static int is_signed(int t)
{
    return t == AQ_GGUF_INT8 || t == AQ_GGUF_INT16 || t == AQ_GGUF_INT32 || t == AQ_GGUF_INT64;
}

int64_t aq_gguf_value_i64(const aq_gguf_value *v, uint64_t i)
{
    size_t sz;
    uint64_t b = elem_bits(v, i, &sz);
    if (is_signed(elem_type(v)) && sz < 8 && (b >> (8 * sz - 1) & 1)) b |= ~0ULL << (8 * sz);
    return (int64_t)b;
}

uint64_t aq_gguf_value_u64(const aq_gguf_value *v, uint64_t i)
{
    return (uint64_t)aq_gguf_value_i64(v, i);
}

double aq_gguf_value_f64(const aq_gguf_value *v, uint64_t i)
{
    size_t sz;
    uint64_t b = elem_bits(v, i, &sz);
    int t = elem_type(v);
    if (t == AQ_GGUF_FLOAT32) {
        uint32_t b32 = (uint32_t)b;
        float f;
        memcpy(&f, &b32, 4);
        return f;
    }
    if (t == AQ_GGUF_FLOAT64) {
        double d;
        memcpy(&d, &b, 8);
        return d;
    }
    return is_signed(t) ? (double)aq_gguf_value_i64(v, i) : (double)b;
}

static aq_status get_kv(const aq_gguf *g, const char *key, const aq_gguf_kv **kv, aq_error *err)
{
    *kv = aq_gguf_find_kv(g, key);
    if (!*kv) return aq_fail(err, AQ_ERR_NOTFOUND, "%s: no metadata key '%s'", g->label, key);
    return AQ_OK;
}

static aq_status wrong_type(const aq_gguf *g, const aq_gguf_kv *kv, const char *want, aq_error *err)
{
    return aq_fail(err, AQ_ERR_FORMAT, "%s: byte %" PRIu64 ": key '%s' is %s, expected %s",
                   g->label, kv->offset, kv->key, aq_gguf_type_name(kv->v.type), want);
}

static int is_int(int t)
{
    return t <= AQ_GGUF_INT32 || t == AQ_GGUF_UINT64 || t == AQ_GGUF_INT64;
}

aq_status aq_gguf_get_i64(const aq_gguf *g, const char *key, int64_t *out, aq_error *err)
{
    const aq_gguf_kv *kv;
    AQ_TRY(get_kv(g, key, &kv, err));
    if (!is_int(kv->v.type)) return wrong_type(g, kv, "an integer", err);
    if (kv->v.type == AQ_GGUF_UINT64 && aq_gguf_value_u64(&kv->v, 0) > (uint64_t)INT64_MAX)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: key '%s' = %" PRIu64 " does not fit int64",
                       g->label, key, aq_gguf_value_u64(&kv->v, 0));
    *out = aq_gguf_value_i64(&kv->v, 0);
    return AQ_OK;
}

aq_status aq_gguf_get_u64(const aq_gguf *g, const char *key, uint64_t *out, aq_error *err)
{
    const aq_gguf_kv *kv;
    AQ_TRY(get_kv(g, key, &kv, err));
    if (!is_int(kv->v.type)) return wrong_type(g, kv, "an integer", err);
    if (is_signed(kv->v.type) && aq_gguf_value_i64(&kv->v, 0) < 0)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: key '%s' = %" PRId64 " is negative", g->label, key,
                       aq_gguf_value_i64(&kv->v, 0));
    *out = aq_gguf_value_u64(&kv->v, 0);
    return AQ_OK;
}

aq_status aq_gguf_get_f64(const aq_gguf *g, const char *key, double *out, aq_error *err)
{
    const aq_gguf_kv *kv;
    AQ_TRY(get_kv(g, key, &kv, err));
    if (kv->v.type != AQ_GGUF_FLOAT32 && kv->v.type != AQ_GGUF_FLOAT64)
        return wrong_type(g, kv, "float32 or float64", err);
    *out = aq_gguf_value_f64(&kv->v, 0);
    return AQ_OK;
}

aq_status aq_gguf_get_bool(const aq_gguf *g, const char *key, int *out, aq_error *err)
{
    const aq_gguf_kv *kv;
    AQ_TRY(get_kv(g, key, &kv, err));
    if (kv->v.type != AQ_GGUF_BOOL) return wrong_type(g, kv, "bool", err);
    *out = kv->v.raw[0];
    return AQ_OK;
}

aq_status aq_gguf_get_str(const aq_gguf *g, const char *key, aq_gguf_str *out, aq_error *err)
{
    const aq_gguf_kv *kv;
    AQ_TRY(get_kv(g, key, &kv, err));
    if (kv->v.type != AQ_GGUF_STRING) return wrong_type(g, kv, "string", err);
    *out = kv->v.str;
    return AQ_OK;
}

aq_status aq_gguf_get_array(const aq_gguf *g, const char *key, int elem_type_want,
                            const aq_gguf_value **out, aq_error *err)
{
    const aq_gguf_kv *kv;
    AQ_TRY(get_kv(g, key, &kv, err));
    if (kv->v.type != AQ_GGUF_ARRAY) return wrong_type(g, kv, "array", err);
    if (elem_type_want >= 0 && (int)kv->v.elem_type != elem_type_want)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: byte %" PRIu64 ": key '%s' is an array of %s, expected %s", g->label,
                       kv->offset, key, aq_gguf_type_name(kv->v.elem_type),
                       aq_gguf_type_name(elem_type_want));
    *out = &kv->v;
    return AQ_OK;
}
