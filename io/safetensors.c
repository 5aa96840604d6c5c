/* safetensors.c — zero-copy, fully validating safetensors reader (see
 * safetensors.h and docs/SAFETENSORS.md; the writer is safetensors_writer.c).
 *
 * Reader invariants (established by st_parse, relied on by every accessor):
 * views[] is sorted by data offset and covers the data area exactly once;
 * every view's bytes lie inside the image; byname[] sorts views by name;
 * meta keys are sorted. Nothing is copied out of the image except names. */
#include "name_index.h"
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER 100000000ull /* the spec's limit: 100 MB of JSON */

struct aq_st_file {
    char *label;               /* path or caller label, used in every error */
    const unsigned char *base; /* the whole image */
    size_t len;
    int mapped; /* base is our mmap (unmap on close) */
    size_t n;
    aq_tensor_view *views; /* in data-offset order */
    size_t *byname;        /* indices of views sorted by name */
    char *names;           /* arena holding every view's name */
    size_t nmeta;
    char **mkeys, **mvals; /* sorted by key; each a separate malloc */
};

/* One parsed header entry before sorting. */
typedef struct st_entry {
    const char *name; /* points into the json tree during parsing */
    size_t order;     /* position in the header, the tie-break of the sort */
    uint64_t begin, end;
    aq_dtype dtype;
    int ndim;
    int64_t shape[AQ_MAX_DIMS];
} st_entry;

/* ---- validation helpers ---- */

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
 * Returns the offset of the first bad byte, or len if all are valid. */
static size_t utf8_bad_offset(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t k;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else {
            return i;
        }
        if (len - i <= k) return i;
        for (size_t j = 1; j <= k; j++) {
            unsigned b = s[i + j];
            if (b < (j == 1 ? lo : 0x80) || b > (j == 1 ? hi : 0xbf)) return i;
        }
        i += k + 1;
    }
    return len;
}

static const char *json_kind(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* Formats a shape as "[2, 3]" into buf. */
static const char *shape_str(const int64_t *shape, int ndim, char *buf, size_t cap)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
    return buf;
}

static aq_status parse_shape(const char *label, st_entry *e, json_t *js, aq_error *err)
{
    if (!json_is_array(js))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s': shape is %s, expected an array", label,
                       e->name, json_kind(js));
    size_t nd = json_array_size(js);
    if (nd > AQ_MAX_DIMS)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s': shape has %zu dimensions (at most %d)",
                       label, e->name, nd, AQ_MAX_DIMS);
    e->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d))
            return aq_fail(err, AQ_ERR_FORMAT,
                           "%s: tensor '%s': shape[%zu] is %s, expected an integer", label, e->name,
                           i, json_kind(d));
        if (json_integer_value(d) < 0)
            return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is negative (%lld)",
                           label, e->name, i, (long long)json_integer_value(d));
        e->shape[i] = (int64_t)json_integer_value(d);
    }
    return AQ_OK;
}

static aq_status parse_offsets(const char *label, st_entry *e, json_t *jo, aq_error *err)
{
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return aq_fail(
            err, AQ_ERR_FORMAT,
            "%s: tensor '%s': data_offsets must be an array of two integers [begin, end]", label,
            e->name);
    json_int_t b = json_integer_value(json_array_get(jo, 0));
    json_int_t en = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || en < b)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%lld, %lld] are invalid "
                       "(need 0 <= begin <= end)",
                       label, e->name, (long long)b, (long long)en);
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    return AQ_OK;
}

/* Validates one tensor entry {dtype, shape, data_offsets} and its byte count. */
static aq_status parse_entry(const char *label, st_entry *e, json_t *v, aq_error *err)
{
    if (!json_is_object(v))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s': entry is %s, expected an object",
                       label, e->name, json_kind(v));
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x)
    {
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
            return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s': unknown field '%s'", label,
                           e->name, k);
    }
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape");
    json_t *jo = json_object_get(v, "data_offsets");
    if (!jd || !js || !jo)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s': missing field '%s'", label, e->name,
                       !jd   ? "dtype"
                       : !js ? "shape"
                             : "data_offsets");
    if (!json_is_string(jd))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s': dtype is %s, expected a string", label,
                       e->name, json_kind(jd));
    aq_status st = aq_dtype_parse(json_string_value(jd), &e->dtype, err);
    if (st != AQ_OK) {
        aq_error_prefix(err, "%s: tensor '%s'", label, e->name);
        return st;
    }
    AQ_TRY(parse_shape(label, e, js, err));
    AQ_TRY(parse_offsets(label, e, jo, err));
    /* The non-zero dimensions alone must multiply to an int64 (so numel is
     * computable in any order, even when another dimension is 0). */
    uint64_t nz = 1;
    for (int i = 0; i < e->ndim; i++) {
        uint64_t d = (uint64_t)e->shape[i];
        if (d && nz > (uint64_t)INT64_MAX / d)
            return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s': shape has more than 2^63 elements",
                           label, e->name);
        nz *= d ? d : 1;
    }
    /* numel * size, saturating: any overflow already exceeds the range. */
    uint64_t need = aq_dtype_size(e->dtype), span = e->end - e->begin;
    for (int i = 0; i < e->ndim; i++) {
        uint64_t d = (uint64_t)e->shape[i];
        need = (d && need > UINT64_MAX / d) ? UINT64_MAX : need * d;
    }
    if (need != span) {
        char sb[256];
        return aq_fail(
            err, AQ_ERR_FORMAT,
            "%s: tensor '%s': data_offsets [%llu, %llu] span %llu bytes but %s shape %s needs "
            "%llu%s",
            label, e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
            (unsigned long long)span, aq_dtype_name(e->dtype),
            shape_str(e->shape, e->ndim, sb, sizeof sb), (unsigned long long)need,
            need == UINT64_MAX ? " or more (overflow)" : "");
    }
    return AQ_OK;
}

static int entry_cmp(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Offsets must tile [0, data_len) exactly: no hole, no overlap. */
static aq_status check_layout(const char *label, const st_entry *e, size_t n, uint64_t data_len,
                              uint64_t hdr_end, aq_error *err)
{
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].begin < pos)
            return aq_fail(
                err, AQ_ERR_FORMAT,
                "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]",
                label, e[i].name, (unsigned long long)e[i].begin, (unsigned long long)e[i].end,
                e[i - 1].name, (unsigned long long)e[i - 1].begin,
                (unsigned long long)e[i - 1].end);
        if (e[i].begin > pos)
            return aq_fail(
                err, AQ_ERR_FORMAT,
                "%s: hole in the data: bytes [%llu, %llu) belong to no tensor (before tensor "
                "'%s')",
                label, (unsigned long long)pos, (unsigned long long)e[i].begin, e[i].name);
        pos = e[i].end;
    }
    if (pos != data_len)
        return aq_fail(
            err, AQ_ERR_FORMAT,
            "%s: file size %llu does not match the header: expected 8 + %llu (header) + %llu "
            "(tensor data) = %llu bytes%s",
            label, (unsigned long long)(hdr_end + data_len), (unsigned long long)(hdr_end - 8),
            (unsigned long long)pos, (unsigned long long)(hdr_end + pos),
            pos > data_len ? " (file truncated)" : " (trailing bytes)");
    return AQ_OK;
}

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static aq_status parse_metadata(aq_st_file *f, json_t *m, aq_error *err)
{
    if (!json_is_object(m))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: __metadata__ is %s, expected an object of strings",
                       f->label, json_kind(m));
    size_t n = json_object_size(m);
    f->mkeys = calloc(n ? n : 1, sizeof(char *));
    f->mvals = calloc(n ? n : 1, sizeof(char *));
    if (!f->mkeys || !f->mvals)
        return aq_fail_nomem(err, "safetensors metadata", n * sizeof(char *));
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v)
    {
        if (!json_is_string(v))
            return aq_fail(err, AQ_ERR_FORMAT,
                           "%s: __metadata__ key '%s' has %s value, expected a string", f->label, k,
                           json_kind(v));
    }
    /* Sort the pairs by key: sort the keys, then look each value up again. */
    size_t i = 0;
    json_object_foreach(m, k, v)
    {
        if (!(f->mkeys[i++] = strdup(k)))
            return aq_fail_nomem(err, "safetensors metadata", strlen(k));
        f->nmeta = i;
    }
    qsort(f->mkeys, n, sizeof(char *), str_ptr_cmp);
    for (i = 0; i < n; i++)
        if (!(f->mvals[i] = strdup(json_string_value(json_object_get(m, f->mkeys[i])))))
            return aq_fail_nomem(err, "safetensors metadata", 0);
    return AQ_OK;
}

static const char *view_name(const void *f, size_t i) { return ((const aq_st_file *)f)->views[i].name; }

/* Builds views[], the names arena and byname[] from the sorted entries. */
static aq_status build_views(aq_st_file *f, const st_entry *e, size_t n, size_t data_start,
                             aq_error *err)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += strlen(e[i].name) + 1;
    f->views = calloc(n ? n : 1, sizeof *f->views);
    f->byname = calloc(n ? n : 1, sizeof *f->byname);
    f->names = malloc(total ? total : 1);
    if (!f->views || !f->byname || !f->names)
        return aq_fail_nomem(err, "safetensors index", total + n * sizeof *f->views);
    char *p = f->names;
    for (size_t i = 0; i < n; i++) {
        aq_tensor_view *v = &f->views[i];
        size_t l = strlen(e[i].name) + 1;
        memcpy(p, e[i].name, l);
        v->name = p;
        p += l;
        v->dtype = e[i].dtype;
        v->ndim = e[i].ndim;
        memcpy(v->shape, e[i].shape, sizeof v->shape);
        v->data = f->base + data_start + e[i].begin;
        v->nbytes = (size_t)(e[i].end - e[i].begin);
    }
    f->n = n;
    return aq_name_index_build(f->byname, n, view_name, f, err);
}

/* Validates the header JSON tree and fills f. */
static aq_status parse_tree(aq_st_file *f, json_t *root, uint64_t hdr_len, aq_error *err)
{
    if (!json_is_object(root))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: header is %s, expected a JSON object", f->label,
                       json_kind(root));
    size_t cap = json_object_size(root);
    st_entry *e = calloc(cap ? cap : 1, sizeof *e);
    if (!e) return aq_fail_nomem(err, "safetensors header entries", cap * sizeof *e);
    aq_status st = AQ_OK;
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v)
    {
        if (!strcmp(k, "__metadata__")) {
            AQ_TRY_GOTO(st, parse_metadata(f, v, err), done);
            continue;
        }
        e[n].name = k;
        e[n].order = n;
        AQ_TRY_GOTO(st, parse_entry(f->label, &e[n], v, err), done);
        n++;
    }
    qsort(e, n, sizeof *e, entry_cmp);
    uint64_t data_start = 8 + hdr_len;
    AQ_TRY_GOTO(st, check_layout(f->label, e, n, f->len - data_start, data_start, err), done);
    st = build_views(f, e, n, (size_t)data_start, err);
done:
    free(e);
    return st;
}

/* Validates the image at f->base (f->len bytes). */
static aq_status st_parse(aq_st_file *f, aq_error *err)
{
    if (f->len < 8)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: file is truncated: %zu bytes, too short for the 8-byte "
                       "header length",
                       f->label, f->len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | f->base[i];
    if (n > ST_MAX_HEADER)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: header length %llu exceeds the 100 MB (100000000 byte) "
                       "limit",
                       f->label, (unsigned long long)n);
    if (n > f->len - 8)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: file is truncated: header length %llu runs past the end "
                       "of the file (%zu bytes after the length field)",
                       f->label, (unsigned long long)n, f->len - 8);
    const unsigned char *h = f->base + 8;
    if (n < 2 || h[0] != '{')
        return aq_fail(err, AQ_ERR_FORMAT, "%s: header (byte 8) does not start with '{'", f->label);
    size_t bad = utf8_bad_offset(h, (size_t)n);
    if (bad != n)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: header is not valid UTF-8 (byte %zu of the file)",
                       f->label, 8 + bad);
    json_error_t je;
    json_t *root = json_loadb((const char *)h, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    if (!root && strstr(je.text, "duplicate object key")) /* jansson: "... near '\"name\"'" */
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: duplicate name in the header at byte %lld of the file (%s)", f->label,
                       8 + (long long)je.position, je.text);
    if (!root)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: header is not valid JSON at byte %lld of the file: %s", f->label,
                       8 + (long long)je.position, je.text);
    aq_status st = parse_tree(f, root, n, err);
    json_decref(root);
    return st;
}

/* ---- public reader API ---- */

void aq_st_close(aq_st_file *f)
{
    if (!f) return;
    if (f->mapped && f->len) munmap((void *)f->base, f->len);
    for (size_t i = 0; i < f->nmeta; i++) {
        free(f->mkeys[i]);
        free(f->mvals ? f->mvals[i] : NULL);
    }
    free(f->mkeys);
    free(f->mvals);
    free(f->views);
    free(f->byname);
    free(f->names);
    free(f->label);
    free(f);
}

static aq_status st_new(const char *label, aq_st_file **out, aq_error *err)
{
    aq_st_file *f = calloc(1, sizeof *f);
    if (f) f->label = strdup(label ? label : "(memory)");
    if (!f || !f->label) {
        free(f);
        return aq_fail_nomem(err, "safetensors file", sizeof *f);
    }
    *out = f;
    return AQ_OK;
}

aq_status aq_st_open_memory(const void *buf, size_t len, const char *label, aq_st_file **out,
                            aq_error *err)
{
    aq_st_file *f = NULL; /* set by st_new; GCC 12 -O3 warns (maybe-uninitialized) otherwise */
    AQ_TRY(st_new(label, &f, err));
    f->base = buf;
    f->len = len;
    aq_status st = st_parse(f, err);
    if (st != AQ_OK) {
        aq_st_close(f);
        return st;
    }
    *out = f;
    return AQ_OK;
}

aq_status aq_st_open(const char *path, aq_st_file **out, aq_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return aq_fail(err, errno == ENOENT ? AQ_ERR_NOTFOUND : AQ_ERR_IO, "%s: cannot open: %s",
                       path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        aq_status st = aq_fail(err, AQ_ERR_IO, "%s: not a regular file", path);
        close(fd);
        return st;
    }
    aq_st_file *f = NULL; /* set by st_new; GCC 12 -O3 warns (maybe-uninitialized) otherwise */
    aq_status st = st_new(path, &f, err);
    if (st != AQ_OK) {
        close(fd);
        return st;
    }
    f->len = (size_t)sb.st_size;
    if (f->len) {
        void *p = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            st = aq_fail(err, AQ_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, f->len,
                         strerror(errno));
            f->len = 0;
        } else {
            f->base = p;
            f->mapped = 1;
        }
    }
    close(fd);
    if (st == AQ_OK) st = st_parse(f, err);
    if (st != AQ_OK) {
        aq_st_close(f);
        return st;
    }
    *out = f;
    return AQ_OK;
}

const char *aq_st_path(const aq_st_file *f)
{
    return f->label;
}

size_t aq_st_count(const aq_st_file *f)
{
    return f->n;
}

const aq_tensor_view *aq_st_tensor(const aq_st_file *f, size_t i)
{
    return i < f->n ? &f->views[i] : NULL;
}

const aq_tensor_view *aq_st_find(const aq_st_file *f, const char *name)
{
    size_t i = aq_name_index_find(f->byname, f->n, view_name, f, name);
    return i == (size_t)-1 ? NULL : &f->views[i];
}

size_t aq_st_meta_count(const aq_st_file *f)
{
    return f->nmeta;
}

void aq_st_meta_at(const aq_st_file *f, size_t i, const char **key, const char **value)
{
    *key = i < f->nmeta ? f->mkeys[i] : NULL;
    *value = i < f->nmeta ? f->mvals[i] : NULL;
}

const char *aq_st_meta_get(const aq_st_file *f, const char *key)
{
    char *const *hit =
        f->nmeta ? bsearch(&key, f->mkeys, f->nmeta, sizeof(char *), str_ptr_cmp) : NULL;
    return hit ? f->mvals[hit - f->mkeys] : NULL;
}

int aq_st_drop_pages(const aq_st_file *f, const void *data, size_t n)
{
    const unsigned char *p = data;
    if (!f || !f->mapped || !p || p < f->base || n > f->len || (size_t)(p - f->base) > f->len - n) return 0;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return 1;
    /* whole pages only, rounded inwards: a neighbour's partial page stays */
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~((uintptr_t)pg - 1);
    if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
    return 1;
}
