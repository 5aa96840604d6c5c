/* fingerprint.c — FNV-1a 64 + crc32/adler32 content fingerprints (fingerprint.h). */
#include "fingerprint.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

enum { FP_BYTES = 1, FP_STR = 2, FP_U64 = 3, FP_I64 = 4, FP_F64 = 5, FP_NESTED = 6 };

void aq_fp_init(aq_fp_builder *b)
{
    b->fnv = FNV_OFFSET;
    b->crc = (uint32_t)crc32(0L, Z_NULL, 0);
    b->adler = (uint32_t)adler32(0L, Z_NULL, 0);
    b->nbytes = 0;
}

void aq_fp_update(aq_fp_builder *b, const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = b->fnv;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    b->fnv = h;
    /* zlib takes uInt lengths: feed in blocks that fit. */
    size_t off = 0;
    while (off < len) {
        size_t n = len - off > (1u << 30) ? (1u << 30) : len - off;
        b->crc = (uint32_t)crc32(b->crc, p + off, (uInt)n);
        b->adler = (uint32_t)adler32(b->adler, p + off, (uInt)n);
        off += n;
    }
    b->nbytes += len;
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* The frame of one field: type, key length, key, value length. */
static void add_frame(aq_fp_builder *b, int type, const char *key, uint64_t value_len)
{
    size_t klen = strlen(key);
    unsigned char hdr[5];
    hdr[0] = (unsigned char)type;
    for (int i = 0; i < 4; i++) hdr[1 + i] = (unsigned char)((uint32_t)klen >> (8 * i));
    aq_fp_update(b, hdr, sizeof hdr);
    aq_fp_update(b, key, klen);
    unsigned char vl[8];
    put_u64(vl, value_len);
    aq_fp_update(b, vl, 8);
}

void aq_fp_add_bytes(aq_fp_builder *b, const char *key, const void *data, size_t len)
{
    add_frame(b, FP_BYTES, key, len);
    aq_fp_update(b, data, len);
}

void aq_fp_add_str(aq_fp_builder *b, const char *key, const char *value)
{
    size_t len = strlen(value);
    add_frame(b, FP_STR, key, len);
    aq_fp_update(b, value, len);
}

static void add_word(aq_fp_builder *b, int type, const char *key, uint64_t v)
{
    unsigned char w[8];
    put_u64(w, v);
    add_frame(b, type, key, 8);
    aq_fp_update(b, w, 8);
}

void aq_fp_add_u64(aq_fp_builder *b, const char *key, uint64_t value) { add_word(b, FP_U64, key, value); }

void aq_fp_add_i64(aq_fp_builder *b, const char *key, int64_t value)
{
    add_word(b, FP_I64, key, (uint64_t)value);
}

void aq_fp_add_f64(aq_fp_builder *b, const char *key, double value)
{
    uint64_t bits;
    memcpy(&bits, &value, 8);
    add_word(b, FP_F64, key, bits);
}

void aq_fp_add_fp(aq_fp_builder *b, const char *key, const aq_fingerprint *fp, uint64_t size)
{
    unsigned char w[24];
    put_u64(w, fp->h[0]);
    put_u64(w + 8, fp->h[1]);
    put_u64(w + 16, size);
    add_frame(b, FP_NESTED, key, sizeof w);
    aq_fp_update(b, w, sizeof w);
}

aq_fingerprint aq_fp_final(const aq_fp_builder *b)
{
    aq_fingerprint fp;
    fp.h[0] = b->fnv;
    fp.h[1] = ((uint64_t)b->crc << 32) | b->adler;
    return fp;
}

aq_status aq_fp_file(const char *path, aq_fingerprint *out, uint64_t *size, aq_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return aq_fail(err, AQ_ERR_IO, "%s: cannot open for fingerprinting: %s", path, strerror(errno));
    aq_fp_builder b;
    aq_fp_init(&b);
    unsigned char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) aq_fp_update(&b, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) return aq_fail(err, AQ_ERR_IO, "%s: read error at byte %llu while fingerprinting", path,
                            (unsigned long long)b.nbytes);
    *out = aq_fp_final(&b);
    if (size) *size = b.nbytes;
    return AQ_OK;
}

aq_status aq_fp_add_file(aq_fp_builder *b, const char *key, const char *path, aq_error *err)
{
    aq_fingerprint fp;
    uint64_t size;
    AQ_TRY(aq_fp_file(path, &fp, &size, err));
    aq_fp_add_fp(b, key, &fp, size);
    return AQ_OK;
}

int aq_fp_equal(const aq_fingerprint *a, const aq_fingerprint *b)
{
    return a->h[0] == b->h[0] && a->h[1] == b->h[1];
}

void aq_fp_hex(const aq_fingerprint *fp, char out[33])
{
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)fp->h[0], (unsigned long long)fp->h[1]);
}
