/* qlayer.c — write and read one quantized linear layer in the shared
 * safetensors layout (qlayer.h, docs/ADAQUANT.md "qlayer format"). The
 * reader trusts nothing: dtypes, shapes, the option string, code range,
 * padding bits, finiteness and positive scales are all checked. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/ggml_blocks.h"
#include "../quant/quant.h"
#include "qlayer.h"
#include "qlayer_group.h"


static void tname(char *buf, size_t n, const char *prefix, const char *suffix)
{
    snprintf(buf, n, "%s.%s", prefix, suffix);
}

aq_status aq_qlayer_add(aq_st_writer *w, const char *prefix, const aq_layer_result *r,
                        aq_qlayer_keep **keep, aq_error *err)
{
    *keep = NULL;
    if (r->group > 0) return aq_qlayer_group_add(w, prefix, r, keep, err);
    size_t rb = aq_packed_bytes(r->d_in, r->w_bits);
    aq_qlayer_keep *k = calloc(1, sizeof *k);
    if (!k || !(k->packed = malloc(r->d_out * rb > 0 ? r->d_out * rb : 1))) {
        free(k);
        return aq_fail_nomem(err, "packed weights", r->d_out * rb);
    }
    for (size_t i = 0; i < r->d_out; i++) aq_pack(r->codes + i * r->d_in, r->d_in, r->w_bits, k->packed + i * rb);
    k->act[0] = r->a_scale;
    k->act[1] = r->a_zero;
    *keep = k;
    char name[1024], opt[32];
    int64_t shp[2] = {(int64_t)r->d_out, (int64_t)rb}, one = 1, no = (int64_t)r->d_out;
    tname(name, sizeof name, prefix, "qweight");
    AQ_TRY(aq_st_writer_add(w, name, AQ_U8, 2, shp, k->packed, err));
    tname(name, sizeof name, prefix, "w_scale");
    AQ_TRY(aq_st_writer_add(w, name, AQ_F32, 1, &no, r->w_scale, err));
    tname(name, sizeof name, prefix, "w_zero");
    AQ_TRY(aq_st_writer_add(w, name, AQ_F32, 1, &no, r->w_zero, err));
    tname(name, sizeof name, prefix, "bias");
    AQ_TRY(aq_st_writer_add(w, name, AQ_F32, 1, &no, r->bias, err));
    if (r->a_bits < 16) {
        tname(name, sizeof name, prefix, "a_scale");
        AQ_TRY(aq_st_writer_add(w, name, AQ_F32, 1, &one, &k->act[0], err));
        tname(name, sizeof name, prefix, "a_zero");
        AQ_TRY(aq_st_writer_add(w, name, AQ_F32, 1, &one, &k->act[1], err));
    }
    aq_layer_opts o = {.w_bits = r->w_bits, .a_bits = r->a_bits, .symmetric = r->symmetric};
    aq_layer_opts_string(&o, opt, sizeof opt);
    snprintf(name, sizeof name, "quant.%s", prefix);
    return aq_st_writer_meta(w, name, opt, err);
}

void aq_qlayer_keep_free(aq_qlayer_keep *k)
{
    if (!k) return;
    free(k->packed);
    free(k->extra);
    free(k);
}

void aq_qlayer_free(aq_qlayer *q)
{
    if (!q) return;
    free(q->codes);
    free(q->w_scale);
    free(q->weight);
    free(q->blocks);
    memset(q, 0, sizeof *q);
}

/* Look up P.suffix as dtype dt with the given shape (ndim 1 or 2). */
typedef aq_qlayer_find_fn find_fn;

static aq_status get_tensor(find_fn find, void *src, const char *label, const char *prefix,
                            const char *suffix, aq_dtype dt, int ndim, int64_t d0, int64_t d1,
                            const aq_tensor_view **out, aq_error *err)
{
    char name[1024];
    tname(name, sizeof name, prefix, suffix);
    AQ_TRY(find(src, name, out, err));
    const aq_tensor_view *v = *out;
    if (v->dtype != dt)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor %s has dtype %s, expected %s", label, name,
                       aq_dtype_name(v->dtype), aq_dtype_name(dt));
    if (v->ndim != ndim || v->shape[0] != d0 || (ndim == 2 && v->shape[1] != d1))
        return aq_fail(err, AQ_ERR_SHAPE, "%s: tensor %s has shape [%lld%s%lld], expected [%lld%s%lld]",
                       label, name, (long long)v->shape[0], v->ndim > 1 ? ", " : "",
                       v->ndim > 1 ? (long long)v->shape[1] : 0LL, (long long)d0, ndim > 1 ? ", " : "",
                       ndim > 1 ? (long long)d1 : 0LL);
    return AQ_OK;
}

/* Copy an F32 view into dst, rejecting non-finite values (and <= 0 if positive). */
static aq_status copy_f32(const aq_tensor_view *v, float *dst, size_t n, int positive, const char *label,
                          aq_error *err)
{
    memcpy(dst, v->data, n * sizeof(float)); /* views may be unaligned: copy first */
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i]) || (positive && !(dst[i] > 0)))
            return aq_fail(err, AQ_ERR_NUMERIC, "%s: tensor %s element %zu is %g (must be finite%s)", label,
                           v->name, i, (double)dst[i], positive ? " and > 0" : "");
    return AQ_OK;
}

static aq_status load_common(find_fn find, void *src, const char *label, const char *opt,
                             const char *prefix, size_t d_in, aq_qlayer *q, aq_error *err)
{
    memset(q, 0, sizeof *q);
    aq_layer_opts o;
    aq_layer_opts_default(&o);
    if (!opt) return aq_fail(err, AQ_ERR_NOTFOUND, "%s: no metadata quant.%s: layer %s is not quantized", label, prefix, prefix);
    if (aq_layer_opts_parse(opt, &o, err) != AQ_OK) {
        aq_error_prefix(err, "%s: metadata quant.%s", label, prefix);
        return err ? err->code : AQ_ERR_FORMAT;
    }
    if (d_in == 0) return aq_fail(err, AQ_ERR_ARG, "%s: layer %s: d_in must be > 0", label, prefix);
    if (o.group > 0) return aq_qlayer_group_load(find, src, label, &o, prefix, d_in, q, err);
    const aq_tensor_view *qw, *sc, *ze, *bi;
    char name[1024];
    tname(name, sizeof name, prefix, "qweight");
    AQ_TRY(find(src, name, &qw, err));
    if (qw->dtype != AQ_U8 || qw->ndim != 2)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor %s must be U8 [d_out, row_bytes]", label, name);
    size_t d_out = (size_t)qw->shape[0], rb = aq_packed_bytes(d_in, o.w_bits);
    if (d_out == 0 || (size_t)qw->shape[1] != rb)
        return aq_fail(err, AQ_ERR_SHAPE, "%s: tensor %s has shape [%lld, %lld], expected [d_out > 0, %zu] for d_in %zu at %d bits",
                       label, name, (long long)qw->shape[0], (long long)qw->shape[1], rb, d_in, o.w_bits);
    AQ_TRY(get_tensor(find, src, label, prefix, "w_scale", AQ_F32, 1, (int64_t)d_out, 0, &sc, err));
    AQ_TRY(get_tensor(find, src, label, prefix, "w_zero", AQ_F32, 1, (int64_t)d_out, 0, &ze, err));
    AQ_TRY(get_tensor(find, src, label, prefix, "bias", AQ_F32, 1, (int64_t)d_out, 0, &bi, err));
    q->d_out = d_out;
    q->d_in = d_in;
    q->w_bits = o.w_bits;
    q->a_bits = o.a_bits;
    q->symmetric = o.symmetric;
    q->codes = malloc(d_out * d_in);
    q->w_scale = malloc(3 * d_out * sizeof(float));
    q->weight = malloc(d_out * d_in * sizeof(float));
    if (!q->codes || !q->w_scale || !q->weight) {
        aq_qlayer_free(q);
        return aq_fail_nomem(err, "quantized layer", d_out * d_in * 5);
    }
    q->w_zero = q->w_scale + d_out;
    q->bias = q->w_scale + 2 * d_out;
    aq_status st = AQ_OK;
    const uint8_t *pk = qw->data;
    AQ_TRY_GOTO(st, copy_f32(sc, q->w_scale, d_out, 1, label, err), fail);
    AQ_TRY_GOTO(st, copy_f32(ze, q->w_zero, d_out, 0, label, err), fail);
    AQ_TRY_GOTO(st, copy_f32(bi, q->bias, d_out, 0, label, err), fail);
    for (size_t r = 0; r < d_out; r++) {
        const uint8_t *row = pk + r * rb;
        aq_unpack(row, d_in, o.w_bits, q->codes + r * d_in);
        size_t used = d_in * (size_t)o.w_bits;
        if (used % 8 && (row[rb - 1] >> (used % 8)) != 0) {
            st = aq_fail(err, AQ_ERR_FORMAT, "%s: tensor %s row %zu has non-zero padding bits", label, name, r);
            goto fail;
        }
        for (size_t c = 0; c < d_in; c++)
            q->weight[r * d_in + c] = q->w_scale[r] * ((float)q->codes[r * d_in + c] - q->w_zero[r]);
    }
    q->a_scale = 1;
    q->a_zero = 0;
    if (o.a_bits < 16) {
        const aq_tensor_view *as, *az;
        float t;
        AQ_TRY_GOTO(st, get_tensor(find, src, label, prefix, "a_scale", AQ_F32, 1, 1, 0, &as, err), fail);
        AQ_TRY_GOTO(st, get_tensor(find, src, label, prefix, "a_zero", AQ_F32, 1, 1, 0, &az, err), fail);
        AQ_TRY_GOTO(st, copy_f32(as, &t, 1, 1, label, err), fail);
        q->a_scale = t;
        AQ_TRY_GOTO(st, copy_f32(az, &t, 1, 0, label, err), fail);
        q->a_zero = t;
    }
    return AQ_OK;
fail:
    aq_qlayer_free(q);
    return st;
}

static aq_status find_st(void *src, const char *name, const aq_tensor_view **v, aq_error *err)
{
    const aq_st_file *f = src;
    *v = aq_st_find(f, name);
    if (!*v) return aq_fail(err, AQ_ERR_NOTFOUND, "%s: tensor %s is missing", aq_st_path(f), name);
    return AQ_OK;
}

static aq_status find_ck(void *src, const char *name, const aq_tensor_view **v, aq_error *err)
{
    return aq_ckpt_get((aq_checkpoint *)src, name, v, err);
}

aq_status aq_qlayer_load_st(const aq_st_file *f, const char *prefix, size_t d_in, aq_qlayer *out,
                            aq_error *err)
{
    char key[1024];
    snprintf(key, sizeof key, "quant.%s", prefix);
    return load_common(find_st, (void *)f, aq_st_path(f), aq_st_meta_get(f, key), prefix, d_in, out, err);
}

aq_status aq_qlayer_load_ckpt(aq_checkpoint *ck, const char *prefix, size_t d_in, aq_qlayer *out,
                              aq_error *err)
{
    char key[1024];
    snprintf(key, sizeof key, "quant.%s", prefix);
    return load_common(find_ck, ck, aq_ckpt_path(ck), aq_ckpt_meta_get(ck, key), prefix, d_in, out, err);
}

void aq_qlayer_fake_quant_act(float *x, size_t n, float a_scale, float a_zero, int a_bits)
{
    if (a_bits >= 16) return;
    float qmax = (float)((1u << a_bits) - 1u);
    for (size_t i = 0; i < n; i++) {
        float t = nearbyintf(x[i] / a_scale) + a_zero;
        t = t < 0 ? 0 : t > qmax ? qmax : t;
        x[i] = a_scale * (t - a_zero);
    }
}

/* ---- tensors outside the linear layers (qlayer.h) ---- */

/* One row's codes for the range [lo, hi]; returns the squared error. */
static double rtn_row(const float *w, size_t cols, int bits, float lo, float hi, uint8_t *u, float *scale,
                      float *zero)
{
    float qmax = (float)((1u << bits) - 1u);
    float s = (hi - lo) / qmax, z = 0;
    if (!(s > 0)) {
        /* a constant row: code 0 is the value itself (exact) */
        s = 1;
        z = -lo;
    } else {
        z = nearbyintf(-lo / s);
        z = z < 0 ? 0 : z > qmax ? qmax : z;
    }
    double e = 0;
    for (size_t c = 0; c < cols; c++) {
        float q = nearbyintf(w[c] / s) + z;
        q = q < 0 ? 0 : q > qmax ? qmax : q;
        u[c] = (uint8_t)q;
        double d = (double)(s * (q - z)) - (double)w[c];
        e += d * d;
    }
    *scale = s;
    *zero = z;
    return e;
}

void aq_qtensor_rtn(const float *w, size_t rows, size_t cols, int bits, uint8_t *codes, float *scale,
                    float *zero)
{
    uint8_t *tmp = malloc(cols ? cols : 1);
    for (size_t r = 0; r < rows; r++) {
        const float *x = w + r * cols;
        float mn = 0, mx = 0; /* the range includes 0: the zero point stays in the code range */
        for (size_t c = 0; c < cols; c++) mn = x[c] < mn ? x[c] : mn, mx = x[c] > mx ? x[c] : mx;
        double best = INFINITY;
        for (int k = 0; k < 17 && tmp; k++) {
            float a = 1.0f - 0.03f * (float)k, s, z;
            double e = rtn_row(x, cols, bits, a * mn, a * mx, tmp, &s, &z);
            if (e < best) {
                best = e;
                memcpy(codes + r * cols, tmp, cols);
                scale[r] = s;
                zero[r] = z;
            }
        }
        if (!tmp) rtn_row(x, cols, bits, mn, mx, codes + r * cols, &scale[r], &zero[r]);
    }
    free(tmp);
}

void aq_qtensor_dequant(const uint8_t *codes, const float *scale, const float *zero, size_t rows,
                        size_t cols, float *out)
{
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) out[r * cols + c] = scale[r] * ((float)codes[r * cols + c] - zero[r]);
}

/* A block-type tensor option ("q8_0" ...): B.qblocks U8 [rows, row bytes],
 * ggml's bytes of each row (borrowed until the write). */
static aq_status add_blocks(aq_st_writer *w, const char *base, const char *opt, size_t rows, size_t cols,
                            const uint8_t *blocks, aq_error *err)
{
    size_t rb;
    AQ_TRY(aq_ggml_row_bytes((aq_ggml_type)aq_tensor_opt_gtype(opt), cols, &rb, err));
    char name[1024];
    int64_t shp[2] = {(int64_t)rows, (int64_t)rb};
    tname(name, sizeof name, base, "qblocks");
    AQ_TRY(aq_st_writer_add(w, name, AQ_U8, 2, shp, blocks, err));
    snprintf(name, sizeof name, "quant.%s", base);
    return aq_st_writer_meta(w, name, opt, err);
}

/* The block-type layout of tensor base into out [rows, cols] (ggml's dequantisation). */
static aq_status load_blocks(aq_checkpoint *ck, const char *label, const char *base, const char *opt, size_t rows,
                             size_t cols, float *out, aq_error *err)
{
    const aq_tensor_view *qb;
    size_t rb;
    aq_ggml_type t = (aq_ggml_type)aq_tensor_opt_gtype(opt);
    AQ_TRY(aq_ggml_row_bytes(t, cols, &rb, err));
    AQ_TRY(get_tensor(find_ck, ck, label, base, "qblocks", AQ_U8, 2, (int64_t)rows, (int64_t)rb, &qb, err));
    for (size_t r = 0; r < rows; r++) AQ_TRY(aq_ggml_dequantize_row(t, (const uint8_t *)qb->data + r * rb, cols, out + r * cols, err));
    for (size_t i = 0; i < rows * cols; i++)
        if (!isfinite(out[i]))
            return aq_fail(err, AQ_ERR_NUMERIC, "%s: tensor %s.qblocks weight %zu is %g", label, base, i, (double)out[i]);
    return AQ_OK;
}

aq_status aq_qtensor_add(aq_st_writer *w, const char *base, const char *opt, size_t rows, size_t cols,
                         const float *values, const uint8_t *codes, const float *scale, const float *zero,
                         aq_qlayer_keep **keep, aq_error *err)
{
    *keep = NULL;
    int bits;
    AQ_TRY(aq_tensor_opt_parse(opt, &bits, err));
    if (bits == 32) return aq_fail(err, AQ_ERR_ARG, "%s: option f32 is the plain tensor, not a quantized one", base);
    if (bits == 0) return add_blocks(w, base, opt, rows, cols, codes, err);
    size_t rb = bits == 16 ? cols * 2 : aq_packed_bytes(cols, bits);
    aq_qlayer_keep *k = calloc(1, sizeof *k);
    if (!k || !(k->packed = malloc(rows * rb > 0 ? rows * rb : 1))) {
        free(k);
        return aq_fail_nomem(err, "packed tensor", rows * rb);
    }
    *keep = k;
    char name[1024];
    int64_t shp[2] = {(int64_t)rows, bits == 16 ? (int64_t)cols : (int64_t)rb}, no = (int64_t)rows;
    if (bits == 16) {
        for (size_t i = 0; i < rows * cols; i++) {
            uint16_t h = aq_f32_to_f16(values[i]);
            k->packed[2 * i] = (uint8_t)h, k->packed[2 * i + 1] = (uint8_t)(h >> 8); /* little-endian */
        }
        tname(name, sizeof name, base, "weight");
        AQ_TRY(aq_st_writer_add(w, name, AQ_F16, 2, shp, k->packed, err));
    } else {
        for (size_t r = 0; r < rows; r++) aq_pack(codes + r * cols, cols, bits, k->packed + r * rb);
        tname(name, sizeof name, base, "qweight");
        AQ_TRY(aq_st_writer_add(w, name, AQ_U8, 2, shp, k->packed, err));
        tname(name, sizeof name, base, "w_scale");
        AQ_TRY(aq_st_writer_add(w, name, AQ_F32, 1, &no, scale, err));
        tname(name, sizeof name, base, "w_zero");
        AQ_TRY(aq_st_writer_add(w, name, AQ_F32, 1, &no, zero, err));
    }
    snprintf(name, sizeof name, "quant.%s", base);
    return aq_st_writer_meta(w, name, opt, err);
}

/* The "wK" layout of tensor base into out [rows, cols]. */
static aq_status load_packed(aq_checkpoint *ck, const char *label, const char *base, size_t rows, size_t cols,
                             int bits, float *out, aq_error *err)
{
    const aq_tensor_view *qw, *sc, *ze;
    size_t rb = aq_packed_bytes(cols, bits);
    AQ_TRY(get_tensor(find_ck, ck, label, base, "qweight", AQ_U8, 2, (int64_t)rows, (int64_t)rb, &qw, err));
    AQ_TRY(get_tensor(find_ck, ck, label, base, "w_scale", AQ_F32, 1, (int64_t)rows, 0, &sc, err));
    AQ_TRY(get_tensor(find_ck, ck, label, base, "w_zero", AQ_F32, 1, (int64_t)rows, 0, &ze, err));
    float *sz = malloc(2 * rows * sizeof *sz);
    uint8_t *u = malloc(cols ? cols : 1);
    aq_status st = sz && u ? AQ_OK : aq_fail_nomem(err, "tensor scales", rows * 8);
    if (st == AQ_OK) st = copy_f32(sc, sz, rows, 1, label, err);
    if (st == AQ_OK) st = copy_f32(ze, sz + rows, rows, 0, label, err);
    const uint8_t *pk = qw->data;
    for (size_t r = 0; st == AQ_OK && r < rows; r++) {
        const uint8_t *row = pk + r * rb;
        size_t used = cols * (size_t)bits;
        if (used % 8 && (row[rb - 1] >> (used % 8)) != 0)
            st = aq_fail(err, AQ_ERR_FORMAT, "%s: tensor %s.qweight row %zu has non-zero padding bits", label, base, r);
        aq_unpack(row, cols, bits, u);
        for (size_t c = 0; st == AQ_OK && c < cols; c++) out[r * cols + c] = sz[r] * ((float)u[c] - sz[rows + r]);
    }
    free(sz);
    free(u);
    return st;
}

aq_status aq_qtensor_load_ckpt(aq_checkpoint *ck, const char *base, size_t rows, size_t cols, float **out,
                               aq_error *err)
{
    *out = NULL;
    const char *label = aq_ckpt_path(ck);
    char key[1024];
    snprintf(key, sizeof key, "quant.%s", base);
    const char *opt = aq_ckpt_meta_get(ck, key);
    int bits = 0;
    if (!opt) return aq_fail(err, AQ_ERR_NOTFOUND, "%s: no metadata %s", label, key);
    if (aq_tensor_opt_parse(opt, &bits, err) != AQ_OK || bits == 32) {
        if (bits == 32) aq_fail(err, AQ_ERR_FORMAT, "option f32 is never recorded");
        aq_error_prefix(err, "%s: metadata %s", label, key);
        return AQ_ERR_FORMAT;
    }
    float *w = malloc(rows * cols > 0 ? rows * cols * sizeof *w : 1);
    if (!w) return aq_fail_nomem(err, "tensor", rows * cols * 4);
    aq_status st = AQ_OK;
    if (bits == 16) {
        const aq_tensor_view *v;
        st = get_tensor(find_ck, ck, label, base, "weight", AQ_F16, 2, (int64_t)rows, (int64_t)cols, &v, err);
        if (st == AQ_OK) st = aq_view_to_f32(v, w, err);
        for (size_t i = 0; st == AQ_OK && i < rows * cols; i++)
            if (!isfinite(w[i])) st = aq_fail(err, AQ_ERR_NUMERIC, "%s: tensor %s.weight element %zu is %g", label, base, i, (double)w[i]);
    } else if (bits == 0) {
        st = load_blocks(ck, label, base, opt, rows, cols, w, err);
    } else {
        st = load_packed(ck, label, base, rows, cols, bits, w, err);
    }
    if (st != AQ_OK) free(w);
    else *out = w;
    return st;
}
