/* qlayer_group.c — the group formats' on-disk layout (qlayer.h): writing a
 * group-format result and reading it back with every value checked (shapes,
 * dtypes, code and zero ranges, padding, fp16 scales finite and > 0 for
 * wKgG, finite for the ggml blocks). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/ggml_blocks.h"
#include "../quant/quant.h"
#include "qlayer_group.h"

aq_status aq_qlayer_group_add(aq_st_writer *w, const char *prefix, const aq_layer_result *r, aq_qlayer_keep **keep,
                              aq_error *err)
{
    aq_layer_opts o = {.w_bits = r->w_bits, .a_bits = 16, .group = r->group, .ggml = r->ggml, .gtype = r->gtype};
    size_t G = aq_result_groups(r), rb = r->ggml ? aq_group_row_bytes(&o, r->d_in) : aq_packed_bytes(r->d_in, r->w_bits);
    aq_qlayer_keep *k = calloc(1, sizeof *k);
    if (!k || !(k->packed = malloc(r->d_out * rb)) || !(k->extra = malloc(r->d_out * G * 3))) {
        aq_qlayer_keep_free(k);
        return aq_fail_nomem(err, "packed weights", r->d_out * rb);
    }
    *keep = k;
    char name[1024], opt[32];
    int64_t shp[2] = {(int64_t)r->d_out, (int64_t)rb}, gshp[2] = {(int64_t)r->d_out, (int64_t)G};
    int64_t no = (int64_t)r->d_out;
    if (r->ggml) {
        for (size_t i = 0; i < r->d_out; i++) AQ_TRY(aq_group_pack_row(r, i, k->packed + i * rb, err));
        snprintf(name, sizeof name, "%s.qblocks", prefix);
        AQ_TRY(aq_st_writer_add(w, name, AQ_U8, 2, shp, k->packed, err));
    } else {
        uint16_t *sc = k->extra;
        uint8_t *ze = (uint8_t *)(sc + r->d_out * G);
        for (size_t i = 0; i < r->d_out; i++) aq_pack(r->codes + i * r->d_in, r->d_in, r->w_bits, k->packed + i * rb);
        for (size_t i = 0; i < r->d_out * G; i++) {
            sc[i] = aq_fp32_to_fp16(r->w_scale[i]);
            ze[i] = (uint8_t)r->w_zero[i];
        }
        snprintf(name, sizeof name, "%s.qweight", prefix);
        AQ_TRY(aq_st_writer_add(w, name, AQ_U8, 2, shp, k->packed, err));
        snprintf(name, sizeof name, "%s.w_scale", prefix);
        AQ_TRY(aq_st_writer_add(w, name, AQ_F16, 2, gshp, sc, err));
        snprintf(name, sizeof name, "%s.w_zero", prefix);
        AQ_TRY(aq_st_writer_add(w, name, AQ_U8, 2, gshp, ze, err));
    }
    snprintf(name, sizeof name, "%s.bias", prefix);
    AQ_TRY(aq_st_writer_add(w, name, AQ_F32, 1, &no, r->bias, err));
    aq_layer_opts_string(&o, opt, sizeof opt);
    snprintf(name, sizeof name, "quant.%s", prefix);
    return aq_st_writer_meta(w, name, opt, err);
}

/* P.suffix with dtype dt and shape [d0] or [d0, d1]. */
static aq_status get(aq_qlayer_find_fn find, void *src, const char *label, const char *prefix, const char *suffix,
                     aq_dtype dt, int ndim, size_t d0, size_t d1, const aq_tensor_view **v, aq_error *err)
{
    char name[1024];
    snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    AQ_TRY(find(src, name, v, err));
    if ((*v)->dtype != dt || (*v)->ndim != ndim || (*v)->shape[0] != (int64_t)d0 ||
        (ndim == 2 && (*v)->shape[1] != (int64_t)d1))
        return aq_fail(err, AQ_ERR_SHAPE, "%s: tensor %s must be %s [%zu%s%zu]", label, name, aq_dtype_name(dt), d0,
                       ndim == 2 ? ", " : "", ndim == 2 ? d1 : (size_t)0);
    return AQ_OK;
}

/* The codes, scales and zero points of a wKgG layer, checked. */
static aq_status load_wkg(aq_qlayer_find_fn find, void *src, const char *label, const char *prefix, aq_layer_result *r,
                          aq_error *err)
{
    size_t G = aq_result_groups(r), rb = aq_packed_bytes(r->d_in, r->w_bits);
    const aq_tensor_view *qw, *sc, *ze;
    AQ_TRY(get(find, src, label, prefix, "qweight", AQ_U8, 2, r->d_out, rb, &qw, err));
    AQ_TRY(get(find, src, label, prefix, "w_scale", AQ_F16, 2, r->d_out, G, &sc, err));
    AQ_TRY(get(find, src, label, prefix, "w_zero", AQ_U8, 2, r->d_out, G, &ze, err));
    const uint8_t *pk = qw->data, *zb = ze->data, *sb = sc->data;
    size_t used = r->d_in * (size_t)r->w_bits;
    for (size_t i = 0; i < r->d_out; i++) {
        aq_unpack(pk + i * rb, r->d_in, r->w_bits, r->codes + i * r->d_in);
        if (used % 8 && (pk[i * rb + rb - 1] >> (used % 8)) != 0)
            return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor %s.qweight row %zu has non-zero padding bits", label, prefix, i);
    }
    for (size_t i = 0; i < r->d_out * G; i++) {
        uint16_t h = (uint16_t)(sb[2 * i] | sb[2 * i + 1] << 8);
        r->w_scale[i] = aq_fp16_to_fp32(h);
        r->w_zero[i] = zb[i];
        if (!isfinite(r->w_scale[i]) || !(r->w_scale[i] > 0))
            return aq_fail(err, AQ_ERR_NUMERIC, "%s: tensor %s.w_scale element %zu is %g (must be finite and > 0)",
                           label, prefix, i, (double)r->w_scale[i]);
        if (zb[i] >> r->w_bits)
            return aq_fail(err, AQ_ERR_FORMAT, "%s: tensor %s.w_zero element %zu is %d (>= 2^%d)", label, prefix, i,
                           zb[i], r->w_bits);
    }
    return AQ_OK;
}

aq_status aq_qlayer_group_load(aq_qlayer_find_fn find, void *src, const char *label, const aq_layer_opts *o,
                               const char *prefix, size_t d_in, aq_qlayer *q, aq_error *err)
{
    if (d_in % (size_t)o->group)
        return aq_fail(err, AQ_ERR_SHAPE, "%s: layer %s: rows of %zu are not a multiple of the group %d", label, prefix,
                       d_in, o->group);
    const aq_tensor_view *bi;
    char name[1024];
    snprintf(name, sizeof name, "%s.bias", prefix);
    AQ_TRY(find(src, name, &bi, err));
    if (bi->dtype != AQ_F32 || bi->ndim != 1 || bi->shape[0] <= 0)
        return aq_fail(err, AQ_ERR_SHAPE, "%s: tensor %s must be F32 [d_out > 0]", label, name);
    size_t d_out = (size_t)bi->shape[0], rb = aq_group_row_bytes(o, d_in);
    aq_layer_result r = {.d_out = d_out, .d_in = d_in, .w_bits = o->w_bits, .a_bits = 16,
                         .group = o->group, .ggml = o->ggml, .gtype = o->gtype};
    size_t G = aq_result_groups(&r);
    memset(q, 0, sizeof *q);
    q->codes = r.codes = malloc(d_out * d_in);
    q->w_scale = r.w_scale = malloc((2 * d_out * G + d_out) * sizeof(float));
    q->weight = malloc(d_out * d_in * sizeof(float));
    if (o->ggml) q->blocks = malloc(d_out * rb);
    if (!q->codes || !q->w_scale || !q->weight || (o->ggml && !q->blocks)) {
        aq_qlayer_free(q);
        return aq_fail_nomem(err, "quantized layer", d_out * d_in * 5);
    }
    q->w_zero = r.w_zero = q->w_scale + d_out * G;
    q->bias = r.bias = q->w_scale + 2 * d_out * G;
    aq_status st = AQ_OK;
    memcpy(q->bias, bi->data, d_out * sizeof(float));
    for (size_t i = 0; i < d_out && st == AQ_OK; i++)
        if (!isfinite(q->bias[i]))
            st = aq_fail(err, AQ_ERR_NUMERIC, "%s: tensor %s element %zu is not finite", label, name, i);
    if (st == AQ_OK && o->ggml) {
        const aq_tensor_view *qb;
        st = get(find, src, label, prefix, "qblocks", AQ_U8, 2, d_out, rb, &qb, err);
        if (st == AQ_OK) memcpy(q->blocks, qb->data, d_out * rb);
        for (size_t i = 0; i < d_out && st == AQ_OK; i++) aq_group_unpack_row(&r, i, q->blocks + i * rb);
        for (size_t i = 0; i < d_out * G && st == AQ_OK; i++)
            if (!isfinite(r.w_scale[i]) || !isfinite(r.w_zero[i]))
                st = aq_fail(err, AQ_ERR_NUMERIC, "%s: tensor %s.qblocks block %zu has a non-finite fp16 scale or min",
                             label, prefix, i);
    } else if (st == AQ_OK)
        st = load_wkg(find, src, label, prefix, &r, err);
    if (st != AQ_OK) {
        aq_qlayer_free(q);
        return st;
    }
    for (size_t i = 0; i < d_out; i++) aq_group_dequant_row(&r, i, q->weight + i * d_in);
    q->d_out = d_out;
    q->d_in = d_in;
    q->w_bits = o->w_bits;
    q->a_bits = 16;
    q->group = o->group;
    q->ggml = o->ggml;
    q->gtype = o->gtype;
    q->a_scale = 1;
    q->a_zero = 0;
    return AQ_OK;
}
