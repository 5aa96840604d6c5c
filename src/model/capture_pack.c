/* capture_pack.c — combining partial capture statistics (merge in chunk order)
 * and their byte serialisation for transfer between processes.
 *
 * The Grams A and C are symmetric (every partial is mirrored when its rows are
 * in), so the merge adds, and the bytes carry, only their lower triangles:
 * half the bytes to pack, send, unpack and add. Each element is still the sum
 * of the same partials in the same chunk order, and the upper triangle, copied
 * from it once after the last merge (aq_capture_mirror), is the same doubles
 * the full sums gave. The cross Gram B is not symmetric and stays whole. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "capture_internal.h"

static int same_config(const aq_capture *a, const aq_capture *b)
{
    if (a->n != b->n || a->o.sample_rows != b->o.sample_rows || a->o.seed != b->o.seed ||
        (a->o.cross_block < 0) != (b->o.cross_block < 0))
        return 0;
    for (int i = 0; i < a->n; i++)
        if (a->st[i].block != b->st[i].block || a->st[i].point != b->st[i].point ||
            a->st[i].d != b->st[i].d)
            return 0;
    return 1;
}

static void add_d(double *dst, const double *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] += src[i];
}

/* Row i of a symmetric Gram of width e: whole storage or packed. */
static size_t row_at(size_t i, size_t e, int packed)
{
    return packed ? i * (i + 1) / 2 : i * e;
}

/* The lower triangle (columns 0..i of row i) of the e x e src added to dst's,
 * each stored whole or packed: one contiguous add when both are packed. */
static void add_lower(double *dst, int dst_packed, const double *src, int src_packed, size_t e)
{
    if (dst_packed && src_packed) {
        add_d(dst, src, e * (e + 1) / 2);
        return;
    }
    for (size_t i = 0; i < e; i++)
        add_d(dst + row_at(i, e, dst_packed), src + row_at(i, e, src_packed), i + 1);
}

/* dst[0..n) += the n doubles at src (bytes of a message: any alignment). */
static void add_bytes(double *restrict dst, const unsigned char *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double v;
        memcpy(&v, src + i * sizeof v, sizeof v);
        dst[i] += v;
    }
}

static void merge_range(float *mn, float *mx, const float *smn, const float *smx, int d)
{
    for (int j = 0; j < d; j++) {
        mn[j] = fminf(mn[j], smn[j]);
        mx[j] = fmaxf(mx[j], smx[j]);
    }
}

aq_status aq_capture_merge(aq_capture *dst, const aq_capture *src, aq_error *err)
{
    if (!same_config(dst, src))
        return aq_fail(err, AQ_ERR_ARG,
                       "capture merge: the two partials were made with different configurations");
    for (int i = 0; i < dst->n; i++) {
        aq_capstat *s = &dst->st[i];
        const aq_capstat *o = &src->st[i];
        size_t d = (size_t)s->d, g = (d + 1) * (d + 1);
        add_lower(s->gram, s->packed, o->gram, o->packed, d + 1);
        merge_range(s->xmin, s->xmax, o->xmin, o->xmax, s->d);
        if (s->cross) {
            add_d(s->cross, o->cross, g);
            add_lower(s->gram_q, s->packed, o->gram_q, o->packed, d + 1);
            merge_range(s->xq_min, s->xq_max, o->xq_min, o->xq_max, s->d);
        }
        aq_sample_heapify(s, dst->o.seed);
        for (int r = 0; r < o->n_sample; r++)
            aq_sample_offer(s, dst->o.seed, o->sample_win[r], o->sample_pos[r], o->sample + r * d,
                            o->sample_q ? o->sample_q + r * d : NULL);
        aq_sample_sort(s);
        s->n_rows += o->n_rows;
    }
    return AQ_OK;
}

/* ---- serialisation (native byte order: ranks of one cluster): "AQCAP2\0\0", u32 n, then per point
 * a header (i32 block, point, d, n_sample, has_cross; u64 n_rows) and the arrays, the symmetric
 * Grams as their packed lower triangle ((d+1)(d+2)/2 doubles, row i holding columns 0..i).
 * Format 1 (whole Grams) is refused by its magic: both ends are the same binary. */
static const char magic_v2[8] = "AQCAP2\0";

typedef struct buf {
    unsigned char *p;
    size_t len, cap, off;
} buf;

static int put(buf *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->len + n)
            nc *= 2;
        unsigned char *q = realloc(b->p, nc);
        if (!q) return 0;
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return 1;
}

static int get(buf *b, void *dst, size_t n)
{
    if (b->off + n > b->len) return 0;
    memcpy(dst, b->p + b->off, n);
    b->off += n;
    return 1;
}

/* Lower-triangle rows of the e x e G (stored whole or packed), packed /
 * unpacked (the upper triangle of a whole G untouched). */
static int put_lower(buf *b, const double *G, size_t e, int packed)
{
    int ok = 1;
    if (packed) return put(b, G, e * (e + 1) / 2 * sizeof(double));
    for (size_t i = 0; ok && i < e; i++)
        ok = put(b, G + i * e, (i + 1) * sizeof(double));
    return ok;
}

static void get_lower(const unsigned char *p, double *G, size_t e, int packed)
{
    if (packed) {
        memcpy(G, p, e * (e + 1) / 2 * sizeof(double));
        return;
    }
    for (size_t i = 0; i < e; i++)
        memcpy(G + i * e, p + i * (i + 1) / 2 * sizeof(double), (i + 1) * sizeof(double));
}

/* dst's lower triangle += the packed one at p (bytes). */
static void add_lower_bytes(double *dst, int packed, const unsigned char *p, size_t e)
{
    if (packed) {
        add_bytes(dst, p, e * (e + 1) / 2);
        return;
    }
    for (size_t i = 0; i < e; i++)
        add_bytes(dst + i * e, p + i * (i + 1) / 2 * sizeof(double), i + 1);
}

/* The arrays of one point, in one fixed order; sizes in bytes. tri[k] = d + 1
 * for a symmetric Gram carried as its lower triangle (sz[k] its packed bytes),
 * else 0. */
static int arrays(aq_capstat *s, void **ptr, size_t *sz, size_t *tri, int n_sample)
{
    size_t d = (size_t)s->d, e = d + 1, v = d * sizeof(float);
    size_t g = e * e * sizeof(double), lo = e * (e + 1) / 2 * sizeof(double);
    size_t rs = (size_t)n_sample * v, ix = (size_t)n_sample * sizeof(uint32_t);
    int k = 0;
    memset(tri, 0, 11 * sizeof *tri);
    ptr[k] = s->gram, tri[k] = e, sz[k++] = lo;
    ptr[k] = s->xmin, sz[k++] = v;
    ptr[k] = s->xmax, sz[k++] = v;
    ptr[k] = s->sample, sz[k++] = rs;
    ptr[k] = s->sample_win, sz[k++] = ix;
    ptr[k] = s->sample_pos, sz[k++] = ix;
    if (s->cross) {
        ptr[k] = s->cross, sz[k++] = g;
        ptr[k] = s->gram_q, tri[k] = e, sz[k++] = lo;
        ptr[k] = s->xq_min, sz[k++] = v;
        ptr[k] = s->xq_max, sz[k++] = v;
        ptr[k] = s->sample_q, sz[k++] = rs;
    }
    return k;
}

aq_status aq_capture_pack(const aq_capture *c, void **out, size_t *len, aq_error *err)
{
    buf b = {0};
    uint32_t n = (uint32_t)c->n;
    size_t need = 12; /* the exact size, so the buffer is allocated once (Grams are large) */
    for (int i = 0; i < c->n; i++) {
        void *ptr[11];
        size_t sz[11], tri[11];
        int k = arrays(&c->st[i], ptr, sz, tri, c->st[i].n_sample);
        need += 5 * sizeof(int32_t) + 8;
        for (int a = 0; a < k; a++) need += sz[a];
    }
    b.p = malloc(need);
    b.cap = b.p ? need : 0;
    int ok = put(&b, magic_v2, 8) && put(&b, &n, 4);
    for (int i = 0; ok && i < c->n; i++) {
        aq_capstat *s = &c->st[i];
        int32_t h[5] = {s->block, (int32_t)s->point, s->d, s->n_sample, s->cross != NULL};
        void *ptr[11];
        size_t sz[11], tri[11];
        int k = arrays(s, ptr, sz, tri, s->n_sample);
        ok = put(&b, h, sizeof h) && put(&b, &s->n_rows, 8);
        for (int a = 0; ok && a < k; a++)
            ok = tri[a] ? put_lower(&b, ptr[a], tri[a], s->packed) : put(&b, ptr[a], sz[a]);
    }
    if (!ok) {
        free(b.p);
        return aq_fail_nomem(err, "packed capture", b.len);
    }
    *out = b.p;
    *len = b.len;
    return AQ_OK;
}

/* One point's arrays in the bytes: src[k] the start of array k (layout of
 * arrays()), after checking the point's header against s. */
static aq_status locate(buf *b, size_t len, int i, aq_capstat *s, const unsigned char **src, int32_t h[5],
                        uint64_t *rows, aq_error *err)
{
    if (!get(b, h, 5 * sizeof(int32_t)) || !get(b, rows, 8))
        return aq_fail(err, AQ_ERR_FORMAT, "packed capture: truncated at point %d (byte %zu)", i, b->off);
    if (h[0] != s->block || h[1] != (int32_t)s->point || h[2] != s->d || h[3] < 0 || h[3] > s->sample_cap ||
        h[4] != (s->cross != NULL))
        return aq_fail(err, AQ_ERR_FORMAT,
                       "packed capture: point %d (block %d, %s) does not match this capture's configuration", i,
                       h[0], aq_cap_point_name((aq_cap_point)h[1]));
    void *ptr[11];
    size_t sz[11], tri[11];
    int k = arrays(s, ptr, sz, tri, h[3]);
    for (int a = 0; a < k; a++) {
        if (b->off + sz[a] > b->len)
            return aq_fail(err, AQ_ERR_FORMAT, "packed capture: truncated in point %d (byte %zu of %zu)", i,
                           b->off, len);
        src[a] = b->p + b->off;
        b->off += sz[a];
    }
    return AQ_OK;
}

/* One point of the bytes merged into s (add) or copied over it: array k at
 * src[k] in the order of arrays(). */
static void take_point(aq_capstat *s, const unsigned char **src, int n_sample, uint64_t seed, int add)
{
    void *ptr[11];
    size_t sz[11], tri[11];
    int k = arrays(s, ptr, sz, tri, n_sample);
    if (!add) {
        for (int a = 0; a < k; a++)
            if (tri[a])
                get_lower(src[a], ptr[a], tri[a], s->packed);
            else
                memcpy(ptr[a], src[a], sz[a]);
        s->n_sample = n_sample;
        return;
    }
    size_t d = (size_t)s->d;
    add_lower_bytes(s->gram, s->packed, src[0], d + 1);
    merge_range(s->xmin, s->xmax, (const float *)src[1], (const float *)src[2], s->d);
    if (s->cross) {
        add_bytes(s->cross, src[6], (d + 1) * (d + 1));
        add_lower_bytes(s->gram_q, s->packed, src[7], d + 1);
        merge_range(s->xq_min, s->xq_max, (const float *)src[8], (const float *)src[9], s->d);
    }
    aq_sample_heapify(s, seed);
    for (int r = 0; r < n_sample; r++) {
        uint32_t w, p;
        memcpy(&w, src[4] + (size_t)r * 4, 4);
        memcpy(&p, src[5] + (size_t)r * 4, 4);
        aq_sample_offer(s, seed, w, p, (const float *)(src[3] + (size_t)r * d * 4),
                        s->cross ? (const float *)(src[10] + (size_t)r * d * 4) : NULL);
    }
    aq_sample_sort(s);
}

/* Unpack (add 0) or merge (add 1) the bytes into c. Every point is located
 * and checked before any is touched, so a malformed message changes nothing. */
static aq_status take_bytes(aq_capture *c, const void *data, size_t len, int add, aq_error *err)
{
    buf b = {(unsigned char *)data, len, len, 0};
    char magic[8];
    uint32_t n;
    if (!get(&b, magic, 8) || memcmp(magic, magic_v2, 8) || !get(&b, &n, 4))
        return aq_fail(err, AQ_ERR_FORMAT, "packed capture: bad header (%zu bytes)", len);
    if (n != (uint32_t)c->n)
        return aq_fail(err, AQ_ERR_FORMAT, "packed capture: %u points, expected %d", n, c->n);
    for (int pass = 0; pass < 2; pass++) {
        b.off = 12;
        for (int i = 0; i < c->n; i++) {
            const unsigned char *src[11];
            int32_t h[5] = {0};
            uint64_t rows = 0;
            AQ_TRY(locate(&b, len, i, &c->st[i], src, h, &rows, err));
            if (pass == 0) continue;
            take_point(&c->st[i], src, h[3], c->o.seed, add);
            c->st[i].n_rows = add ? c->st[i].n_rows + rows : rows;
        }
        if (b.off != len)
            return aq_fail(err, AQ_ERR_FORMAT, "packed capture: %zu trailing bytes", len - b.off);
    }
    return AQ_OK;
}

aq_status aq_capture_unpack(aq_capture *c, const void *data, size_t len, aq_error *err)
{
    return take_bytes(c, data, len, 0, err);
}

aq_status aq_capture_merge_bytes(aq_capture *dst, const void *data, size_t len, aq_error *err)
{
    return take_bytes(dst, data, len, 1, err);
}
