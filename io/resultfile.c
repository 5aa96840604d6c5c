/* resultfile.c — encode, write, read and validate per-task result files
 * (resultfile.h; byte layout in docs/WORKDIR.md). All integers little-endian. */
#include "resultfile.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "atomic_file.h"

/* On-disk dtype codes are the aq_dtype values; pin them so a reordering of
 * the enum cannot silently change the format. */
_Static_assert(AQ_F64 == 0 && AQ_F32 == 1 && AQ_F16 == 2 && AQ_BF16 == 3 && AQ_I64 == 4 &&
                   AQ_I32 == 5 && AQ_I16 == 6 && AQ_I8 == 7 && AQ_U8 == 8 && AQ_U16 == 9 &&
                   AQ_U32 == 10 && AQ_BOOL == 11,
               "result file dtype codes changed");

#define ROW_BYTES 80
/* zlib cannot expand more than ~1032:1; a larger claimed raw size is corrupt. */
#define MAX_RATIO 1040u

/* ---- little-endian helpers ---- */
static void put_u16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v, p[1] = (unsigned char)(v >> 8); }
static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint16_t get_u16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static void put_f64(unsigned char *p, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    put_u64(p, v);
}
static double get_f64(const unsigned char *p)
{
    uint64_t v = get_u64(p);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

static uint32_t crc_of(const unsigned char *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k, n -= k;
    }
    return (uint32_t)c;
}

/* ---- encoding ---- */
static void encode_row(unsigned char *p, const aq_loss_row *r)
{
    put_f64(p + 0, r->loss);
    put_f64(p + 8, r->loss_rtn);
    put_f64(p + 16, r->loss_gptq);
    put_f64(p + 24, r->loss_init);
    put_f64(p + 32, r->seconds);
    put_u64(p + 40, (uint64_t)r->params);
    put_u64(p + 48, (uint64_t)r->macs);
    put_u64(p + 56, (uint64_t)r->size_bits);
    put_u64(p + 64, (uint64_t)r->iterations);
    put_u32(p + 72, (uint32_t)r->w_bits);
    put_u32(p + 76, (uint32_t)r->a_bits);
}

static void decode_row(const unsigned char *p, aq_loss_row *r)
{
    r->loss = get_f64(p + 0);
    r->loss_rtn = get_f64(p + 8);
    r->loss_gptq = get_f64(p + 16);
    r->loss_init = get_f64(p + 24);
    r->seconds = get_f64(p + 32);
    r->params = (int64_t)get_u64(p + 40);
    r->macs = (int64_t)get_u64(p + 48);
    r->size_bits = (int64_t)get_u64(p + 56);
    r->iterations = (int64_t)get_u64(p + 64);
    r->w_bits = (int32_t)get_u32(p + 72);
    r->a_bits = (int32_t)get_u32(p + 76);
}

/* Checks a tensor view and returns its record size in the payload via *rec. */
static aq_status check_view(const aq_result_desc *d, size_t i, size_t *rec, aq_error *err)
{
    const aq_tensor_view *v = &d->tensors[i];
    const char *nm = v->name ? v->name : "(null)";
    size_t nlen = v->name ? strlen(v->name) : 0;
    if (nlen == 0 || nlen > AQ_RESULT_MAX_KEY)
        return aq_fail(err, AQ_ERR_ARG, "result %s/%s: tensor %zu has an empty or too long name",
                       d->layer, d->option, i);
    if ((unsigned)v->dtype >= AQ_DTYPE_COUNT || v->ndim < 0 || v->ndim > AQ_MAX_DIMS)
        return aq_fail(err, AQ_ERR_ARG, "result %s/%s: tensor '%s' has a bad dtype or ndim %d",
                       d->layer, d->option, nm, v->ndim);
    for (int k = 0; k < v->ndim; k++)
        if (v->shape[k] < 0)
            return aq_fail(err, AQ_ERR_ARG, "result %s/%s: tensor '%s' has a negative dimension",
                           d->layer, d->option, nm);
    if ((uint64_t)aq_view_numel(v) * aq_dtype_size(v->dtype) != v->nbytes || (v->nbytes && !v->data))
        return aq_fail(err, AQ_ERR_SHAPE, "result %s/%s: tensor '%s': nbytes %zu does not match its shape",
                       d->layer, d->option, nm, v->nbytes);
    for (size_t j = 0; j < i; j++)
        if (!strcmp(d->tensors[j].name, v->name))
            return aq_fail(err, AQ_ERR_ARG, "result %s/%s: tensor name '%s' appears twice", d->layer,
                           d->option, nm);
    *rec = 2 + nlen + 1 + 2 + 8 * (size_t)v->ndim + 8 + v->nbytes;
    return AQ_OK;
}

static unsigned char *encode_tensor(unsigned char *p, const aq_tensor_view *v)
{
    size_t nlen = strlen(v->name);
    put_u16(p, (uint16_t)nlen);
    memcpy(p + 2, v->name, nlen);
    p += 2 + nlen;
    *p++ = 0;
    *p++ = (unsigned char)v->dtype;
    *p++ = (unsigned char)v->ndim;
    for (int k = 0; k < v->ndim; k++, p += 8) put_u64(p, (uint64_t)v->shape[k]);
    put_u64(p, v->nbytes);
    p += 8;
    if (v->nbytes) memcpy(p, v->data, v->nbytes);
    return p + v->nbytes;
}

/* The raw (uncompressed) payload: loss row then the tensor records. */
static aq_status build_payload(const aq_result_desc *d, unsigned char **out, size_t *len, aq_error *err)
{
    size_t total = ROW_BYTES;
    for (size_t i = 0; i < d->n_tensors; i++) {
        size_t rec = 0;
        AQ_TRY(check_view(d, i, &rec, err));
        total += rec;
    }
    unsigned char *p = malloc(total);
    if (!p) return aq_fail_nomem(err, "result payload", total);
    encode_row(p, &d->row);
    unsigned char *q = p + ROW_BYTES;
    for (size_t i = 0; i < d->n_tensors; i++) q = encode_tensor(q, &d->tensors[i]);
    *out = p;
    *len = total;
    return AQ_OK;
}

static aq_status check_key(const char *what, const char *s, aq_error *err)
{
    if (!s || !s[0] || strlen(s) > AQ_RESULT_MAX_KEY)
        return aq_fail(err, AQ_ERR_ARG, "result file: %s is empty or longer than %d bytes", what,
                       AQ_RESULT_MAX_KEY);
    return AQ_OK;
}

aq_status aq_result_encode(const aq_result_desc *d, unsigned char **buf, size_t *len, aq_error *err)
{
    AQ_TRY(check_key("layer name", d->layer, err));
    AQ_TRY(check_key("option", d->option, err));
    if (!isfinite(d->row.loss))
        return aq_fail(err, AQ_ERR_NUMERIC, "result %s/%s: loss is not finite (%g)", d->layer,
                       d->option, d->row.loss);
    unsigned char *raw = NULL;
    size_t raw_len = 0;
    AQ_TRY(build_payload(d, &raw, &raw_len, err));
    size_t L = strlen(d->layer), O = strlen(d->option);
    size_t H = AQ_RESULT_FIXED_HEADER + L + O + 4;
    uLong bound = compressBound((uLong)raw_len);
    unsigned char *out = malloc(H + bound);
    if (!out) {
        free(raw);
        return aq_fail_nomem(err, "result file buffer", H + bound);
    }
    uLongf clen = bound;
    int zs = compress2(out + H, &clen, raw, (uLong)raw_len, d->stored ? Z_NO_COMPRESSION : AQ_RESULT_ZLEVEL);
    free(raw);
    if (zs != Z_OK) {
        free(out);
        return aq_fail(err, AQ_ERR_INTERNAL, "result %s/%s: zlib compress2 failed (%d)", d->layer,
                       d->option, zs);
    }
    memset(out, 0, AQ_RESULT_FIXED_HEADER);
    memcpy(out, AQ_RESULT_MAGIC, 8);
    put_u32(out + 8, AQ_RESULT_VERSION);
    put_u32(out + 12, (uint32_t)H);
    put_u64(out + 16, d->fp.h[0]);
    put_u64(out + 24, d->fp.h[1]);
    put_u16(out + 32, (uint16_t)L);
    put_u16(out + 34, (uint16_t)O);
    put_u32(out + 36, (uint32_t)d->n_tensors);
    put_u64(out + 40, (uint64_t)clen);
    put_u64(out + 48, (uint64_t)raw_len);
    put_u32(out + 56, crc_of(out + H, clen));
    put_u32(out + 60, 0); /* reserved */
    memcpy(out + AQ_RESULT_FIXED_HEADER, d->layer, L);
    memcpy(out + AQ_RESULT_FIXED_HEADER + L, d->option, O);
    put_u32(out + H - 4, crc_of(out, H - 4));
    *buf = out;
    *len = H + clen;
    return AQ_OK;
}

aq_status aq_result_write(const char *path, const aq_result_desc *d, aq_error *err)
{
    unsigned char *buf;
    size_t len;
    AQ_TRY(aq_result_encode(d, &buf, &len, err));
    aq_status st = aq_atomic_write_file(path, buf, len, err);
    free(buf);
    return st;
}

/* ---- decoding ---- */

/* Header checks, in the order that gives the most precise message. */
/* The header of a file of len bytes, b holding at least its first min(len, H)
 * bytes: everything but the payload CRC (check_header; aq_result_stream checks
 * it while it reads). */
static aq_status check_header_fields(const char *name, const unsigned char *b, size_t len, size_t *H_out,
                                     aq_error *err)
{
    if (len < AQ_RESULT_FIXED_HEADER)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: truncated: %zu bytes, a result file header needs at least %d",
                       name, len, AQ_RESULT_FIXED_HEADER);
    if (memcmp(b, AQ_RESULT_MAGIC, 8) != 0)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: bad magic at byte 0 (not an adaquant result file)", name);
    uint32_t ver = get_u32(b + 8);
    if (ver != AQ_RESULT_VERSION)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: unsupported format version %u at byte 8 (this build reads %u)",
                       name, ver, AQ_RESULT_VERSION);
    uint64_t H = get_u32(b + 12);
    uint64_t L = get_u16(b + 32), O = get_u16(b + 34);
    if (H != AQ_RESULT_FIXED_HEADER + L + O + 4 || L == 0 || O == 0 || L > AQ_RESULT_MAX_KEY ||
        O > AQ_RESULT_MAX_KEY)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: inconsistent header: header size %llu (byte 12) vs key lengths %llu+%llu "
                       "(bytes 32-35); the header is corrupted",
                       name, (unsigned long long)H, (unsigned long long)L, (unsigned long long)O);
    if (len < H)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: truncated: %zu bytes, the header alone is %llu", name, len,
                       (unsigned long long)H);
    uint32_t stored = get_u32(b + H - 4), calc = crc_of(b, H - 4);
    if (stored != calc)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: header CRC mismatch (stored 0x%08x at byte %llu, computed 0x%08x): the "
                       "header is corrupted",
                       name, stored, (unsigned long long)(H - 4), calc);
    if (memchr(b + AQ_RESULT_FIXED_HEADER, 0, (size_t)(L + O)))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: the layer name or option in the header contains a NUL byte", name);
    uint64_t C = get_u64(b + 40), R = get_u64(b + 48);
    if (C != len - H)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: %s: header says %llu payload bytes, the file has %llu",
                       name, C > len - H ? "truncated" : "trailing bytes", (unsigned long long)C,
                       (unsigned long long)(len - H));
    if (R < ROW_BYTES || R > (uint64_t)MAX_RATIO * C + 64)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: implausible raw payload size %llu (byte 48) for %llu "
                       "compressed bytes", name, (unsigned long long)R, (unsigned long long)C);
    *H_out = (size_t)H;
    return AQ_OK;
}

static aq_status check_header(const char *name, const unsigned char *b, size_t len, size_t *H_out,
                              aq_error *err)
{
    AQ_TRY(check_header_fields(name, b, len, H_out, err));
    size_t H = *H_out, C = len - H;
    uint32_t pstored = get_u32(b + 56), pcalc = crc_of(b + H, C);
    if (pstored != pcalc)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: payload CRC mismatch (stored 0x%08x, computed 0x%08x over bytes %llu..%zu): "
                       "the payload is corrupted",
                       name, pstored, pcalc, (unsigned long long)H, len);
    return AQ_OK;
}

static aq_status inflate_payload(const char *name, const unsigned char *src, size_t clen, size_t rlen,
                                 unsigned char **out, aq_error *err)
{
    unsigned char *raw = malloc(rlen);
    if (!raw) return aq_fail_nomem(err, "result payload", rlen);
    uLongf got = (uLongf)rlen;
    int zs = uncompress(raw, &got, src, (uLong)clen);
    if (zs != Z_OK || got != rlen) {
        free(raw);
        return aq_fail(err, AQ_ERR_FORMAT, "%s: payload does not inflate to the %zu bytes the header "
                       "states (zlib status %d, got %lu)", name, rlen, zs, (unsigned long)got);
    }
    *out = raw;
    return AQ_OK;
}

/* Parse the header of tensor record i starting at raw[*off] (name, dtype,
 * shape, nbytes; *off moves to its data); the view's name points into raw. */
static aq_status parse_tensor_head(const char *name, unsigned char *raw, size_t rlen, size_t *off, size_t i,
                                   aq_tensor_view *v, aq_error *err)
{
    size_t o = *off;
#define NEED(n)                                                                                    \
    if ((n) > rlen - o)                                                                            \
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor record %zu runs past the payload end (payload byte %zu)", \
                       name, i, o);
    NEED(2);
    size_t nlen = get_u16(raw + o);
    o += 2;
    NEED(nlen + 3);
    if (nlen == 0 || nlen > AQ_RESULT_MAX_KEY || raw[o + nlen] != 0 || memchr(raw + o, 0, nlen))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor record %zu has a malformed name (payload byte %zu)",
                       name, i, o);
    v->name = (const char *)raw + o;
    o += nlen + 1;
    unsigned dt = raw[o], nd = raw[o + 1];
    o += 2;
    if (dt >= AQ_DTYPE_COUNT || nd > AQ_MAX_DIMS)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s': bad dtype code %u or ndim %u", name, v->name,
                       dt, nd);
    v->dtype = (aq_dtype)dt;
    v->ndim = (int)nd;
    NEED(8 * (size_t)nd + 8);
    uint64_t numel = 1;
    for (unsigned k = 0; k < nd; k++, o += 8) {
        uint64_t d = get_u64(raw + o);
        if (d > (1ULL << 40) || (d && numel > (1ULL << 62) / d))
            return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s': implausible dimension %llu", name,
                           v->name, (unsigned long long)d);
        v->shape[k] = (int64_t)d;
        numel *= d;
    }
    uint64_t nb = get_u64(raw + o);
    o += 8;
    if (numel > UINT64_MAX / 8 || nb != numel * aq_dtype_size(v->dtype))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s': %llu bytes stored, its shape needs %llu", name,
                       v->name, (unsigned long long)nb, (unsigned long long)(numel * aq_dtype_size(v->dtype)));
#undef NEED
    v->data = NULL;
    v->nbytes = (size_t)nb;
    *off = o;
    return AQ_OK;
}

/* Parse tensor record i starting at raw[*off]; views point into raw. */
static aq_status parse_tensor(const char *name, unsigned char *raw, size_t rlen, size_t *off, size_t i,
                              aq_tensor_view *v, aq_error *err)
{
    AQ_TRY(parse_tensor_head(name, raw, rlen, off, i, v, err));
    if (v->nbytes > rlen - *off)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor record %zu runs past the payload end (payload byte %zu)",
                       name, i, *off);
    v->data = raw + *off;
    *off += v->nbytes;
    return AQ_OK;
}

static char *dup_n(const unsigned char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

static int cmp_view_name(const void *a, const void *b)
{
    return strcmp((*(const aq_tensor_view *const *)a)->name, (*(const aq_tensor_view *const *)b)->name);
}

/* Tensor names must be unique (O(n log n): the count can be large). */
static aq_status check_unique(const char *name, const aq_result *r, aq_error *err)
{
    if (r->n_tensors < 2) return AQ_OK;
    const aq_tensor_view **v = malloc(r->n_tensors * sizeof *v);
    if (!v) return aq_fail_nomem(err, "tensor name index", r->n_tensors * sizeof *v);
    for (size_t i = 0; i < r->n_tensors; i++) v[i] = &r->tensors[i];
    qsort(v, r->n_tensors, sizeof *v, cmp_view_name);
    aq_status st = AQ_OK;
    for (size_t i = 1; i < r->n_tensors && st == AQ_OK; i++)
        if (!strcmp(v[i - 1]->name, v[i]->name))
            st = aq_fail(err, AQ_ERR_FORMAT, "%s: tensor name '%s' appears twice", name, v[i]->name);
    free(v);
    return st;
}

static aq_status parse_payload(const char *name, aq_result *r, size_t rlen, size_t count, aq_error *err)
{
    decode_row(r->payload, &r->row);
    if (!isfinite(r->row.loss))
        return aq_fail(err, AQ_ERR_NUMERIC, "%s: stored loss is not finite (%g)", name, r->row.loss);
    if (count > rlen / 14 + 1)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor count %zu (byte 36) cannot fit in %zu payload bytes",
                       name, count, rlen);
    r->tensors = calloc(count ? count : 1, sizeof *r->tensors);
    if (!r->tensors) return aq_fail_nomem(err, "result tensor list", count * sizeof *r->tensors);
    size_t off = ROW_BYTES;
    for (size_t i = 0; i < count; i++) {
        AQ_TRY(parse_tensor(name, r->payload, rlen, &off, i, &r->tensors[i], err));
        r->n_tensors = i + 1;
    }
    if (off != rlen)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: %zu unexpected bytes after the last tensor record", name,
                       rlen - off);
    return check_unique(name, r, err);
}

static aq_status check_fp(const char *name, const aq_fingerprint *fp, const aq_fingerprint *expect, aq_error *err)
{
    if (!expect || aq_fp_equal(fp, expect)) return AQ_OK;
    char have[33], want[33];
    aq_fp_hex(fp, have);
    aq_fp_hex(expect, want);
    return aq_fail(err, AQ_ERR_ARG,
                   "%s: fingerprint mismatch: the file has %s, this run expects %s (it was computed "
                   "from a different model, calibration data, option, seed or settings)",
                   name, have, want);
}

aq_status aq_result_decode(const char *name, const unsigned char *b, size_t len,
                           const aq_fingerprint *expect, aq_result **out, aq_error *err)
{
    size_t H = 0;
    AQ_TRY(check_header(name, b, len, &H, err));
    aq_fingerprint fp = {{get_u64(b + 16), get_u64(b + 24)}};
    AQ_TRY(check_fp(name, &fp, expect, err));
    aq_result *r = calloc(1, sizeof *r);
    if (!r) return aq_fail_nomem(err, "result", sizeof *r);
    r->fp = fp;
    size_t L = get_u16(b + 32), O = get_u16(b + 34);
    r->layer = dup_n(b + AQ_RESULT_FIXED_HEADER, L);
    r->option = dup_n(b + AQ_RESULT_FIXED_HEADER + L, O);
    aq_status st = AQ_OK;
    if (!r->layer || !r->option) {
        st = aq_fail_nomem(err, "result key", L + O);
        goto fail;
    }
    size_t rlen = (size_t)get_u64(b + 48);
    AQ_TRY_GOTO(st, inflate_payload(name, b + H, len - H, rlen, &r->payload, err), fail);
    AQ_TRY_GOTO(st, parse_payload(name, r, rlen, get_u32(b + 36), err), fail);
    *out = r;
    return AQ_OK;
fail:
    aq_result_free(r);
    return st;
}

aq_status aq_result_read(const char *path, const aq_fingerprint *expect, aq_result **out, aq_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return aq_fail(err, errno == ENOENT ? AQ_ERR_NOTFOUND : AQ_ERR_IO, "%s: cannot open: %s", path,
                       strerror(errno));
    unsigned char *buf = NULL;
    size_t len = 0, cap = 0;
    aq_status st = AQ_OK;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            unsigned char *nb = realloc(buf, ncap);
            if (!nb) {
                st = aq_fail_nomem(err, "result file buffer", ncap);
                break;
            }
            buf = nb, cap = ncap;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) st = aq_fail(err, AQ_ERR_IO, "%s: read error at byte %zu", path, len);
            break;
        }
    }
    fclose(f);
    if (st == AQ_OK) st = aq_result_decode(path, buf, len, expect, out, err);
    free(buf);
    return st;
}

aq_status aq_result_check(const char *path, const char *layer, const char *option,
                          const aq_fingerprint *expect, aq_loss_row *row, aq_error *err)
{
    aq_result *r;
    AQ_TRY(aq_result_read(path, expect, &r, err));
    aq_status st = AQ_OK;
    if (strcmp(r->layer, layer) != 0 || strcmp(r->option, option) != 0)
        st = aq_fail(err, AQ_ERR_FORMAT, "%s: holds the result of task (%s, %s), expected (%s, %s)", path,
                     r->layer, r->option, layer, option);
    else if (row)
        *row = r->row;
    aq_result_free(r);
    return st;
}

void aq_result_free(aq_result *r)
{
    if (!r) return;
    free(r->layer);
    free(r->option);
    free(r->tensors);
    free(r->payload);
    free(r);
}

const aq_tensor_view *aq_result_find(const aq_result *r, const char *name)
{
    for (size_t i = 0; i < r->n_tensors; i++)
        if (!strcmp(r->tensors[i].name, name)) return &r->tensors[i];
    return NULL;
}

/* Appends s with bytes outside [A-Za-z0-9._] escaped as %XX. */
static char *escape_into(char *p, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_') {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        }
    }
    return p;
}

aq_status aq_result_path(const char *workdir, const char *layer, const char *option, char **out,
                         aq_error *err)
{
    AQ_TRY(check_key("layer name", layer, err));
    AQ_TRY(check_key("option", option, err));
    size_t n = strlen(workdir) + 3 * (strlen(layer) + strlen(option)) + 32;
    char *s = malloc(n);
    if (!s) return aq_fail_nomem(err, "result path", n);
    char *p = s + sprintf(s, "%s/results/", workdir);
    p = escape_into(p, layer);
    p = p + sprintf(p, "--");
    p = escape_into(p, option);
    strcpy(p, ".aqr");
    *out = s;
    return AQ_OK;
}

/* ---- streaming read (aq_result_stream) ---- */

enum { STREAM_CHUNK = 1 << 20 };

typedef struct zsrc {
    const char *name;
    FILE *f;
    z_stream z;
    unsigned char *in;
    uint64_t left;   /* compressed bytes not yet read from the file */
    uint64_t raw;    /* inflated bytes delivered */
    uLong crc;       /* of the compressed bytes read so far */
    int ended;       /* Z_STREAM_END seen */
} zsrc;

/* The next n inflated bytes into dst. */
static aq_status zpull(zsrc *s, unsigned char *dst, size_t n, aq_error *err)
{
    s->z.next_out = dst;
    s->z.avail_out = (uInt)n;
    while (s->z.avail_out > 0) {
        if (s->ended)
            return aq_fail(err, AQ_ERR_FORMAT, "%s: the payload ends at raw byte %llu, before its records do",
                           s->name, (unsigned long long)(s->raw + n - s->z.avail_out));
        if (s->z.avail_in == 0 && s->left > 0) {
            size_t k = s->left < STREAM_CHUNK ? (size_t)s->left : STREAM_CHUNK;
            if (fread(s->in, 1, k, s->f) != k)
                return aq_fail(err, AQ_ERR_IO, "%s: read error in the payload", s->name);
            s->crc = crc32(s->crc, s->in, (uInt)k);
            s->left -= k;
            s->z.next_in = s->in;
            s->z.avail_in = (uInt)k;
        }
        int zs = inflate(&s->z, Z_NO_FLUSH);
        if (zs == Z_STREAM_END) s->ended = 1;
        else if (zs != Z_OK && !(zs == Z_BUF_ERROR && s->z.avail_in == 0 && s->left > 0))
            return aq_fail(err, AQ_ERR_FORMAT, "%s: the payload does not inflate (zlib status %d)", s->name, zs);
    }
    s->raw += n;
    return AQ_OK;
}

/* Tensor record i: its header, then its bytes to the sink in chunks. */
static aq_status stream_tensor(zsrc *s, unsigned char *buf, size_t i, const aq_result_sink *sink, aq_error *err)
{
    size_t h = 0, off = 0;
    AQ_TRY(zpull(s, buf, 2, err));
    size_t nlen = get_u16(buf);
    if (nlen == 0 || nlen > AQ_RESULT_MAX_KEY)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor record %zu has a malformed name", s->name, i);
    AQ_TRY(zpull(s, buf + 2, nlen + 3, err));
    unsigned nd = buf[2 + nlen + 2];
    h = 2 + nlen + 3 + (nd <= AQ_MAX_DIMS ? 8 * (size_t)nd + 8 : 0);
    if (h > 2 + nlen + 3) AQ_TRY(zpull(s, buf + 2 + nlen + 3, h - (2 + nlen + 3), err));
    aq_tensor_view v;
    memset(&v, 0, sizeof v);
    AQ_TRY(parse_tensor_head(s->name, buf, h, &off, i, &v, err));
    int want = sink->tensor ? sink->tensor(sink->ctx, &v) : 0;
    unsigned char *data = buf + h; /* the rest of buf is the data chunk */
    for (size_t done = 0; done < v.nbytes;) {
        size_t k = v.nbytes - done < STREAM_CHUNK ? v.nbytes - done : STREAM_CHUNK;
        AQ_TRY(zpull(s, data, k, err));
        if (want && sink->data) sink->data(sink->ctx, done, data, k);
        done += k;
    }
    return AQ_OK;
}

static aq_status stream_open(zsrc *s, const char *path, const aq_fingerprint *expect, unsigned char *hdr,
                             char *layer, char *option, size_t *count, aq_error *err)
{
    if (fseek(s->f, 0, SEEK_END) != 0) return aq_fail(err, AQ_ERR_IO, "%s: cannot seek", path);
    long len = ftell(s->f);
    rewind(s->f);
    size_t got = fread(hdr, 1, AQ_RESULT_FIXED_HEADER, s->f), H = 0;
    size_t full = got == AQ_RESULT_FIXED_HEADER ? get_u32(hdr + 12) : got;
    if (full > AQ_RESULT_FIXED_HEADER && full <= AQ_RESULT_FIXED_HEADER + 2 * AQ_RESULT_MAX_KEY + 4)
        got += fread(hdr + got, 1, full - got, s->f);
    AQ_TRY(check_header_fields(path, hdr, len < 0 ? 0 : (size_t)len, &H, err));
    aq_fingerprint fp = {{get_u64(hdr + 16), get_u64(hdr + 24)}};
    AQ_TRY(check_fp(path, &fp, expect, err));
    size_t L = get_u16(hdr + 32), O = get_u16(hdr + 34);
    memcpy(layer, hdr + AQ_RESULT_FIXED_HEADER, L);
    layer[L] = 0;
    memcpy(option, hdr + AQ_RESULT_FIXED_HEADER + L, O);
    option[O] = 0;
    *count = get_u32(hdr + 36);
    s->left = get_u64(hdr + 40);
    s->crc = crc32(0L, Z_NULL, 0);
    return inflateInit(&s->z) == Z_OK ? AQ_OK : aq_fail_nomem(err, "zlib inflate state", 1 << 16);
}

aq_status aq_result_stream(const char *path, const aq_fingerprint *expect, const aq_result_sink *sink,
                           aq_loss_row *row, aq_error *err)
{
    zsrc s;
    memset(&s, 0, sizeof s);
    s.name = path;
    if (!(s.f = fopen(path, "rb")))
        return aq_fail(err, errno == ENOENT ? AQ_ERR_NOTFOUND : AQ_ERR_IO, "%s: cannot open: %s", path,
                       strerror(errno));
    size_t hb = AQ_RESULT_FIXED_HEADER + 2 * AQ_RESULT_MAX_KEY + 4, count = 0;
    unsigned char *hdr = malloc(hb), *buf = malloc(STREAM_CHUNK + 2 * AQ_RESULT_MAX_KEY + 128);
    char *key = malloc(2 * AQ_RESULT_MAX_KEY + 2);
    s.in = malloc(STREAM_CHUNK);
    aq_status st = hdr && buf && key && s.in ? AQ_OK : aq_fail_nomem(err, "result stream buffers", 3 * STREAM_CHUNK);
    int zinit = 0;
    if (st == AQ_OK) st = stream_open(&s, path, expect, hdr, key, key + AQ_RESULT_MAX_KEY + 1, &count, err);
    zinit = st == AQ_OK;
    if (st == AQ_OK && sink->key) st = sink->key(sink->ctx, key, key + AQ_RESULT_MAX_KEY + 1, err);
    if (st == AQ_OK) st = zpull(&s, buf, ROW_BYTES, err);
    if (st == AQ_OK && row) decode_row(buf, row);
    for (size_t i = 0; st == AQ_OK && i < count; i++) st = stream_tensor(&s, buf, i, sink, err);
    if (st == AQ_OK && !s.ended) { /* the stream's end marker after the last record */
        unsigned char one;
        aq_error e2 = {0};
        if (zpull(&s, &one, 1, &e2) == AQ_OK || !s.ended)
            st = aq_fail(err, AQ_ERR_FORMAT, "%s: unexpected bytes after the last tensor record", path);
    }
    if (st == AQ_OK && (s.raw != get_u64(hdr + 48) || s.left != 0 || s.z.avail_in != 0))
        st = aq_fail(err, AQ_ERR_FORMAT, "%s: the records end at raw byte %llu of %llu stated", path,
                     (unsigned long long)s.raw, (unsigned long long)get_u64(hdr + 48));
    if (st == AQ_OK && (uint32_t)s.crc != get_u32(hdr + 56))
        st = aq_fail(err, AQ_ERR_FORMAT, "%s: payload CRC mismatch (stored 0x%08x, computed 0x%08x): the payload "
                     "is corrupted", path, get_u32(hdr + 56), (uint32_t)s.crc);
    if (zinit) inflateEnd(&s.z);
    fclose(s.f);
    free(hdr);
    free(buf);
    free(key);
    free(s.in);
    return st;
}
