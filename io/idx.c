/* idx.c — the idx reader (io/idx.h): header validated against the data that
 * follows; gzip or plain through zlib's gz* API. The file is read in growing
 * chunks up to the size its header announces (+1 byte to detect trailing
 * data), so a header claiming gigabytes does not allocate them up front. */
#include "idx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_UBYTE 0x08
#define IDX_MAX_ITEMS ((int64_t)1 << 36) /* bytes: far above any dataset, below overflow */

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Validate the header at buf (len bytes available); *hdr = its size, *total = element count. */
static aq_status parse_header(const uint8_t *buf, size_t len, const char *what, aq_idx *x,
                              size_t *hdr, int64_t *total, aq_error *err)
{
    if (len < 4)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: not an idx file (%zu bytes, shorter than the 4-byte magic)", what, len);
    if (buf[0] || buf[1])
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: not an idx file (magic %02x %02x %02x %02x; expected 00 00 08 0N)",
                       what, buf[0], buf[1], buf[2], buf[3]);
    if (buf[2] != IDX_UBYTE)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: idx element type 0x%02x is not supported (only 0x08, unsigned byte)",
                       what, buf[2]);
    if (buf[3] < 1 || buf[3] > 3)
        return aq_fail(err, AQ_ERR_FORMAT,
                       "%s: idx file with %d dimensions (1 for labels, 3 for images)", what,
                       buf[3]);
    x->ndim = buf[3];
    *hdr = 4 + 4 * (size_t)x->ndim;
    if (len < *hdr)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: truncated idx header (%zu of %zu bytes)", what, len,
                       *hdr);
    *total = 1;
    for (int d = 0; d < 3; d++) {
        x->dims[d] = d < x->ndim ? be32(buf + 4 + 4 * d) : 1;
        if (x->dims[d] && *total > IDX_MAX_ITEMS / x->dims[d])
            return aq_fail(err, AQ_ERR_FORMAT, "%s: idx header dimensions are implausibly large",
                           what);
        *total *= x->dims[d];
    }
    x->n = x->dims[0];
    x->rows = x->dims[1];
    x->cols = x->dims[2];
    return AQ_OK;
}

static aq_status size_check(const char *what, const aq_idx *x, int64_t total, size_t have, int more,
                            aq_error *err)
{
    if ((int64_t)have == total && !more) return AQ_OK;
    char dims[96];
    if (x->ndim == 1)
        snprintf(dims, sizeof dims, "%lld", (long long)x->n);
    else if (x->ndim == 2)
        snprintf(dims, sizeof dims, "%lld x %lld", (long long)x->n, (long long)x->rows);
    else
        snprintf(dims, sizeof dims, "%lld x %lld x %lld", (long long)x->n, (long long)x->rows,
                 (long long)x->cols);
    return aq_fail(err, AQ_ERR_FORMAT,
                   "%s: the header says %s = %lld bytes of data, the file has %s%zu", what, dims,
                   (long long)total, more ? "more than " : "", have);
}

aq_status aq_idx_read_mem(const void *buf, size_t len, const char *what, aq_idx *out, aq_error *err)
{
    memset(out, 0, sizeof *out);
    size_t hdr = 0;
    int64_t total = 0;
    aq_idx x = {0};
    AQ_TRY(parse_header(buf, len, what, &x, &hdr, &total, err));
    AQ_TRY(size_check(what, &x, total, len - hdr, 0, err));
    if (!(x.data = malloc((size_t)total + 1))) return aq_fail_nomem(err, what, (size_t)total);
    memcpy(x.data, (const uint8_t *)buf + hdr, (size_t)total);
    *out = x;
    return AQ_OK;
}

/* Continue reading f into the growing buffer (*buf, *cap bytes allocated,
 * *got filled) until *got = want or the end of the file. */
static aq_status gz_read_upto(gzFile f, const char *path, size_t want, uint8_t **buf, size_t *cap,
                              size_t *got, aq_error *err)
{
    while (*got < want) {
        if (*got == *cap) {
            size_t nc = *cap ? 2 * *cap : 1 << 16;
            if (nc > want) nc = want;
            uint8_t *nb = realloc(*buf, nc + 1);
            if (!nb) return aq_fail_nomem(err, path, nc);
            *buf = nb;
            *cap = nc;
        }
        size_t chunk = *cap - *got > (1u << 30) ? (1u << 30) : *cap - *got;
        int n = gzread(f, *buf + *got, (unsigned)chunk);
        if (n < 0) {
            int zerr;
            const char *m = gzerror(f, &zerr);
            return aq_fail(err, AQ_ERR_FORMAT, "%s: read/decompression error after %zu bytes: %s",
                           path, *got, m);
        }
        if (n == 0) {
            int zerr; /* a cut gzip stream ends "normally" with Z_BUF_ERROR */
            const char *m = gzerror(f, &zerr);
            if (zerr != Z_OK)
                return aq_fail(err, AQ_ERR_FORMAT,
                               "%s: truncated or corrupt gzip stream after %zu bytes: %s", path,
                               *got, m);
            break;
        }
        *got += (size_t)n;
    }
    return AQ_OK;
}

aq_status aq_idx_read(const char *path, aq_idx *out, aq_error *err)
{
    memset(out, 0, sizeof *out);
    gzFile f = gzopen(path, "rb");
    if (!f) return aq_fail(err, AQ_ERR_IO, "%s: cannot open: %m", path);
    uint8_t *buf = NULL;
    size_t got = 0, cap = 0, hdr = 0;
    int64_t total = 0;
    aq_idx x = {0};
    aq_status st = gz_read_upto(f, path, 16, &buf, &cap, &got, err);
    if (st == AQ_OK) st = parse_header(buf, got, path, &x, &hdr, &total, err);
    /* one byte more than announced: trailing data is an error too */
    if (st == AQ_OK) st = gz_read_upto(f, path, hdr + (size_t)total + 1, &buf, &cap, &got, err);
    gzclose(f);
    if (st == AQ_OK)
        st = size_check(path, &x, total, got - hdr > (size_t)total ? (size_t)total : got - hdr,
                        got > hdr + (size_t)total, err);
    if (st == AQ_OK) {
        memmove(buf, buf + hdr, (size_t)total);
        x.data = buf;
        *out = x;
        return AQ_OK;
    }
    free(buf);
    return st;
}

aq_status aq_idx_read_images(const char *path, aq_idx *out, aq_error *err)
{
    AQ_TRY(aq_idx_read(path, out, err));
    int nd = out->ndim;
    if (nd == 3) return AQ_OK;
    aq_idx_free(out);
    return aq_fail(err, AQ_ERR_FORMAT,
                   "%s: an idx image file has 3 dimensions [n, rows, cols], this one %d", path, nd);
}

aq_status aq_idx_read_labels(const char *path, int n_classes, aq_idx *out, aq_error *err)
{
    AQ_TRY(aq_idx_read(path, out, err));
    int nd = out->ndim;
    if (nd != 1) {
        aq_idx_free(out);
        return aq_fail(err, AQ_ERR_FORMAT, "%s: an idx label file has 1 dimension, this one %d",
                       path, nd);
    }
    for (int64_t i = 0; n_classes > 0 && i < out->n; i++)
        if (out->data[i] >= n_classes) {
            int v = out->data[i];
            aq_idx_free(out);
            return aq_fail(err, AQ_ERR_FORMAT, "%s: label %lld is %d, not below the %d classes",
                           path, (long long)i, v, n_classes);
        }
    return AQ_OK;
}

void aq_idx_free(aq_idx *x)
{
    if (!x) return;
    free(x->data);
    memset(x, 0, sizeof *x);
}
