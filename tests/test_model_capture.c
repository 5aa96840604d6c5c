/* test_model_capture.c — capture statistics against an independent float64
 * computation from the rows the forward hook delivers: Grams of [X 1]
 * (long-double reference), per-channel min/max, the row sample, chunked
 * partials merged in order vs one run, pack/unpack, and sequential-mode cross
 * statistics B = [X 1]^T [Xq 1], C = [Xq 1]^T [Xq 1]; the streaming capture
 * (one block per call from a kept residual stream) gives the same bits as the
 * whole-model passes, in parallel and sequential mode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/model/capture.h"
#include "../src/quant/quant.h"
#include "testutil.h"

#define S 6
#define T 40
#define NP (6 * AQ_CAP_COUNT + 1)

/* Rows recorded by our own hook: per (block, point), all rows in window order. */
typedef struct rec {
    float *rows[NP];
    size_t n[NP];
    int d[NP];
    int L;
} rec;

static aq_status hook(void *ctx, const aq_capture_event *ev, aq_error *err)
{
    rec *r = ctx;
    int i =
        ev->point == AQ_CAP_HEAD ? r->L * AQ_CAP_COUNT : ev->block * AQ_CAP_COUNT + (int)ev->point;
    r->rows[i] = realloc(r->rows[i], (r->n[i] + ev->n_rows) * ev->d * sizeof(float));
    memcpy(r->rows[i] + r->n[i] * ev->d, ev->rows, ev->n_rows * ev->d * sizeof(float));
    r->n[i] += ev->n_rows;
    r->d[i] = ev->d;
    return AQ_OK;
}

static void record(aq_model *m, const int *tok, int quantized, rec *r)
{
    memset(r, 0, sizeof *r);
    r->L = aq_model_config(m)->n_layers;
    aq_forward_opts fo = {quantized, hook, r, -1, NULL};
    int lens[S];
    for (int i = 0; i < S; i++)
        lens[i] = T;
    aq_error err = {0};
    CHECK_OK(aq_model_forward(m, tok, lens, S, &fo, NULL, &err), &err);
}

static void rec_free(rec *r)
{
    for (int i = 0; i < NP; i++)
        free(r->rows[i]);
}

/* Relative Frobenius error of G vs the long-double [X 1]^T [Y 1]. */
static double gram_err(const double *G, const float *X, const float *Y, size_t n, int d)
{
    double num = 0, den = 0;
    for (int i = 0; i <= d; i++)
        for (int j = 0; j <= d; j++) {
            long double s = 0;
            for (size_t r = 0; r < n; r++) {
                long double a = i < d ? X[r * d + i] : 1.0L, b = j < d ? Y[r * d + j] : 1.0L;
                s += a * b;
            }
            double e = G[i * (d + 1) + j] - (double)s;
            num += e * e;
            den += (double)(s * s);
        }
    return sqrt(num / den);
}

static void check_stat(const aq_capstat *s, const rec *r, int L, double *worst)
{
    int i = s->point == AQ_CAP_HEAD ? L * AQ_CAP_COUNT : s->block * AQ_CAP_COUNT + (int)s->point;
    int d = s->d;
    CHECK(r->d[i] == d && r->n[i] == (size_t)S * T && s->n_rows == (uint64_t)S * T);
    double e = gram_err(s->gram, r->rows[i], r->rows[i], r->n[i], d);
    *worst = fmax(*worst, e);
    /* float64 sums of float32 products (exact in double) vs long double:
     * ~n * 1.1e-16 relative worst case, measured 4.6e-16; 1e-13 */
    CHECK_MSG(e < 1e-13, "block %d %s gram rel err %g", s->block, aq_cap_point_name(s->point), e);
    int mm_ok = 1;
    for (int j = 0; j < d; j++) {
        float mn = INFINITY, mx = -INFINITY;
        for (size_t q = 0; q < r->n[i]; q++) {
            mn = fminf(mn, r->rows[i][q * d + j]);
            mx = fmaxf(mx, r->rows[i][q * d + j]);
        }
        mm_ok &= mn == s->xmin[j] && mx == s->xmax[j];
    }
    CHECK(mm_ok);
    /* the sample: distinct (window, position) in order, rows equal to the hook's */
    CHECK(s->n_sample == (s->sample_cap < S * T ? s->sample_cap : S * T));
    int ok = 1;
    for (int k = 0; k < s->n_sample; k++) {
        uint32_t w = s->sample_win[k], p = s->sample_pos[k];
        if (k &&
            !(w > s->sample_win[k - 1] || (w == s->sample_win[k - 1] && p > s->sample_pos[k - 1])))
            ok = 0;
        if (w >= S || p >= T ||
            memcmp(s->sample + (size_t)k * d, r->rows[i] + ((size_t)w * T + p) * d, d * 4))
            ok = 0;
    }
    CHECK_MSG(ok, "sample of block %d %s", s->block, aq_cap_point_name(s->point));
}

static int same_stats(const aq_capture *a, const aq_capture *b, double tol)
{
    int ok = aq_capture_count(a) == aq_capture_count(b);
    for (int i = 0; ok && i < aq_capture_count(a); i++) {
        const aq_capstat *x = aq_capture_stat(a, i), *y = aq_capture_stat(b, i);
        size_t g = (size_t)(x->d + 1) * (x->d + 1);
        for (size_t k = 0; k < g; k++)
            ok &= fabs(x->gram[k] - y->gram[k]) <= tol * fmax(1.0, fabs(y->gram[k]));
        ok &= x->n_sample == y->n_sample && x->n_rows == y->n_rows;
        ok &= !memcmp(x->sample, y->sample, (size_t)x->n_sample * x->d * 4);
        ok &= !memcmp(x->sample_win, y->sample_win, (size_t)x->n_sample * 4);
        ok &= !memcmp(x->xmin, y->xmin, (size_t)x->d * 4) &&
              !memcmp(x->xmax, y->xmax, (size_t)x->d * 4);
    }
    return ok;
}

static void test_parallel(aq_model *m, const int *tok)
{
    aq_error err = {0};
    aq_capture_opts o;
    aq_capture_opts_default(&o);
    o.head = 1;
    o.sample_rows = 50;
    o.batch_windows = 4; /* windows 0-3 then 4-5 */
    aq_capture *c = NULL, *c1 = NULL, *c2 = NULL, *c3 = NULL;
    CHECK_OK(aq_capture_new(m, &o, &c, &err), &err);
    if (!c) return;
    CHECK(aq_capture_count(c) == 5 * AQ_CAP_COUNT + 1);
    CHECK_OK(aq_capture_run(c, m, tok, 0, S, T, &err), &err);
    rec r;
    record(m, tok, 0, &r);
    double worst = 0;
    for (int i = 0; i < aq_capture_count(c); i++)
        check_stat(aq_capture_stat(c, i), &r, 5, &worst);
    printf("capture Gram vs long-double reference: worst relative Frobenius error %.3g\n", worst);
    /* chunks {0,1}, {2..5} in two objects (other batching: 2 windows per forward),
     * merged in order == one run: rows do not depend on the batch they are in,
     * so samples and ranges are identical and Grams equal up to float64 rounding */
    o.batch_windows = 2;
    CHECK_OK(aq_capture_new(m, &o, &c1, &err), &err);
    CHECK_OK(aq_capture_new(m, &o, &c2, &err), &err);
    CHECK_OK(aq_capture_new(m, &o, &c3, &err), &err);
    CHECK_OK(aq_capture_run(c1, m, tok, 0, 2, T, &err), &err);
    CHECK_OK(aq_capture_run(c2, m, tok + 2 * T, 2, 4, T, &err), &err);
    /* pack / unpack round trip is exact; the bytes carry each Gram's lower
     * triangle only (the size below counts (d+1)(d+2)/2 doubles per Gram), so
     * the unpacked upper triangles stay as they were (zero) until mirrored */
    void *buf = NULL;
    size_t len = 0, want = 12;
    CHECK_OK(aq_capture_pack(c2, &buf, &len, &err), &err);
    for (int i = 0; i < aq_capture_count(c2); i++) {
        const aq_capstat *p = aq_capture_stat(c2, i);
        size_t e = (size_t)p->d + 1;
        want += 28 + e * (e + 1) / 2 * 8 + (size_t)p->d * 8 + (size_t)p->n_sample * ((size_t)p->d * 4 + 8);
    }
    CHECK_MSG(len == want, "packed capture: %zu bytes, expected %zu", len, want);
    CHECK_OK(aq_capture_unpack(c3, buf, len, &err), &err);
    int upper_zero = 1;
    for (int i = 0; i < aq_capture_count(c3); i++) {
        const aq_capstat *p = aq_capture_stat(c3, i);
        size_t e = (size_t)p->d + 1;
        for (size_t a = 0; a < e; a++)
            for (size_t b = a + 1; b < e; b++)
                upper_zero &= p->gram[a * e + b] == 0.0;
    }
    CHECK_MSG(upper_zero, "unpack wrote the Gram's upper triangle");
    aq_capture_mirror(c3);
    CHECK(same_stats(c3, c2, 0.0));
    /* every truncation and a corrupted header are format errors, never a crash */
    int all_fail = 1;
    for (size_t cut = 0; cut < len; cut += 1 + cut / 64)
        all_fail &= aq_capture_unpack(c3, buf, cut, &err) == AQ_ERR_FORMAT;
    CHECK(all_fail);
    ((unsigned char *)buf)[14] ^= 0x40; /* block id of the first record */
    CHECK(aq_capture_unpack(c3, buf, len, &err) == AQ_ERR_FORMAT);
    ((unsigned char *)buf)[14] ^= 0x40;
    aq_capture_reset(c3);
    CHECK_OK(aq_capture_unpack(c3, buf, len, &err), &err);
    free(buf);
    CHECK_OK(aq_capture_merge(c1, c3, &err), &err);
    aq_capture_mirror(c1); /* the merge adds the lower triangles only */
    /* merging regroups the same float64 sums: a few ulps, as above */
    CHECK_MSG(same_stats(c1, c, 1e-13), "merged chunks differ from one run");
    rec_free(&r);
    aq_capture_free(c);
    aq_capture_free(c1);
    aq_capture_free(c2);
    aq_capture_free(c3);
}

/* pk (packed Grams) holds bitwise the lower triangles of ref's (whole, mirrored)
 * and the same ranges, rows and samples. */
static int same_packed(const aq_capture *pk, const aq_capture *ref)
{
    int ok = aq_capture_count(pk) == aq_capture_count(ref);
    for (int i = 0; ok && i < aq_capture_count(pk); i++) {
        const aq_capstat *x = aq_capture_stat(pk, i), *y = aq_capture_stat(ref, i);
        size_t e = (size_t)y->d + 1;
        ok &= x->packed && !y->packed;
        for (size_t r = 0; ok && r < e; r++)
            ok &= !memcmp(x->gram + r * (r + 1) / 2, y->gram + r * e, (r + 1) * sizeof(double));
        ok &= x->n_rows == y->n_rows && x->n_sample == y->n_sample;
        ok &= !memcmp(x->sample, y->sample, (size_t)x->n_sample * x->d * 4);
        ok &= !memcmp(x->sample_pos, y->sample_pos, (size_t)x->n_sample * 4);
        ok &= !memcmp(x->xmin, y->xmin, (size_t)x->d * 4) && !memcmp(x->xmax, y->xmax, (size_t)x->d * 4);
    }
    return ok;
}

/* The streaming capture's storage: partials that keep their Grams' lower
 * triangles only (the upper halves never written) and a packed total fed from
 * one partial object and one partial's bytes give bitwise the lower triangles
 * of the whole-storage merge (itself checked against long double above); a
 * truncated message changes nothing. */
static void test_packed(aq_model *m, const int *tok)
{
    aq_error err = {0};
    aq_capture_opts o;
    aq_capture_opts_default(&o);
    o.sample_rows = 40;
    o.batch_windows = 2;
    aq_capture *a1 = NULL, *a2 = NULL, *l1 = NULL, *l2 = NULL, *tot = NULL;
    CHECK_OK(aq_capture_new(m, &o, &a1, &err), &err);
    CHECK_OK(aq_capture_new(m, &o, &a2, &err), &err);
    o.lower_only = 1;
    CHECK_OK(aq_capture_new(m, &o, &l1, &err), &err);
    CHECK_OK(aq_capture_new(m, &o, &l2, &err), &err);
    o.packed = 1;
    CHECK(aq_capture_new(m, &o, &tot, &err) == AQ_ERR_ARG); /* not both */
    o.lower_only = 0;
    CHECK_OK(aq_capture_new(m, &o, &tot, &err), &err);
    if (!a1 || !a2 || !l1 || !l2 || !tot) goto out;
    CHECK(aq_capture_run(tot, m, tok, 0, 2, T, &err) == AQ_ERR_ARG); /* a merge target only */
    CHECK_OK(aq_capture_run(a1, m, tok, 0, 2, T, &err), &err);
    CHECK_OK(aq_capture_run(a2, m, tok + 2 * T, 2, 4, T, &err), &err);
    CHECK_OK(aq_capture_run(l1, m, tok, 0, 2, T, &err), &err);
    CHECK_OK(aq_capture_run(l2, m, tok + 2 * T, 2, 4, T, &err), &err);
    int upper_zero = 1;
    for (int i = 0; i < aq_capture_count(l1); i++) {
        const aq_capstat *p = aq_capture_stat(l1, i);
        size_t e = (size_t)p->d + 1;
        for (size_t a = 0; a < e; a++)
            for (size_t b = a + 1; b < e; b++) upper_zero &= p->gram[a * e + b] == 0.0;
    }
    CHECK_MSG(upper_zero, "a lower_only partial wrote its Gram's upper triangle");
    CHECK_OK(aq_capture_merge(a1, a2, &err), &err);
    aq_capture_mirror(a1);
    void *buf = NULL;
    size_t len = 0;
    CHECK_OK(aq_capture_pack(l2, &buf, &len, &err), &err);
    CHECK_OK(aq_capture_merge(tot, l1, &err), &err);
    double g0 = aq_capture_stat(tot, 0)->gram[0];
    uint64_t r0 = aq_capture_stat(tot, 0)->n_rows;
    CHECK(aq_capture_merge_bytes(tot, buf, len - 1, &err) == AQ_ERR_FORMAT);
    CHECK_MSG(aq_capture_stat(tot, 0)->gram[0] == g0 && aq_capture_stat(tot, 0)->n_rows == r0,
              "a truncated message changed the total");
    CHECK_OK(aq_capture_merge_bytes(tot, buf, len, &err), &err);
    CHECK_MSG(same_packed(tot, a1), "packed total differs from the whole-storage merge");
    free(buf);
out:
    aq_capture_free(a1);
    aq_capture_free(a2);
    aq_capture_free(l1);
    aq_capture_free(l2);
    aq_capture_free(tot);
}

/* Exactly the same statistics (bitwise Grams: same rows, same batches, same
 * summation order), cross statistics included when present. */
static int same_point(const aq_capstat *x, const aq_capstat *y)
{
    if (!x || !y || x->d != y->d || x->n_rows != y->n_rows || x->n_sample != y->n_sample) return 0;
    size_t g = (size_t)(x->d + 1) * (x->d + 1) * sizeof(double), v = (size_t)x->d * 4;
    int ok = !memcmp(x->gram, y->gram, g) && !memcmp(x->xmin, y->xmin, v) && !memcmp(x->xmax, y->xmax, v);
    ok &= !memcmp(x->sample, y->sample, x->n_sample * v) &&
          !memcmp(x->sample_win, y->sample_win, (size_t)x->n_sample * 4) &&
          !memcmp(x->sample_pos, y->sample_pos, (size_t)x->n_sample * 4);
    if (x->cross || y->cross)
        ok &= x->cross && y->cross && !memcmp(x->cross, y->cross, g) && !memcmp(x->gram_q, y->gram_q, g) &&
              !memcmp(x->sample_q, y->sample_q, x->n_sample * v);
    return ok;
}

/* Block by block from the residual stream == today's whole-model passes (the
 * long-double reference of check_stat too), then errors. */
static void test_streaming(aq_model *m, const int *tok)
{
    aq_error err = {0};
    aq_capture_opts o;
    aq_capture_opts_default(&o);
    o.sample_rows = 50;
    o.batch_windows = 4;
    aq_capture *ref = NULL, *cb = NULL;
    CHECK_OK(aq_capture_new(m, &o, &ref, &err), &err);
    if (!ref) return;
    CHECK_OK(aq_capture_run(ref, m, tok, 0, S, T, &err), &err);
    rec r;
    record(m, tok, 0, &r);
    int L = aq_model_config(m)->n_layers, D = aq_model_config(m)->dim, same = 1;
    float *x = calloc((size_t)S * T * D, sizeof *x);
    double worst = 0;
    o.block_first = o.block_last = 0;
    CHECK_OK(aq_capture_new(m, &o, &cb, &err), &err);
    for (int b = 0; b < L && cb; b++) {
        if (b > 0) CHECK_OK(aq_capture_set_block(cb, b, &err), &err); /* the object moves on, zeroed */
        CHECK_OK(aq_capture_run_block(cb, m, tok, 0, S, T, x, NULL, &err), &err);
        for (int i = 0; i < aq_capture_count(cb); i++) {
            const aq_capstat *s = aq_capture_stat(cb, i);
            check_stat(s, &r, L, &worst);
            same &= s->block == b && same_point(s, aq_capture_find(ref, b, s->point));
        }
    }
    if (cb) CHECK(aq_capture_set_block(cb, L, &err) == AQ_ERR_ARG); /* no block L */
    aq_capture_free(cb);
    cb = NULL;
    CHECK_MSG(same, "streaming capture differs from the whole-model passes");
    printf("streaming capture: %d blocks bit-identical to aq_capture_run; Gram vs long double %.3g\n", L, worst);
    /* misuse: two blocks, or no residual */
    o.block_first = 0, o.block_last = 1;
    CHECK_OK(aq_capture_new(m, &o, &cb, &err), &err);
    CHECK(aq_capture_run_block(cb, m, tok, 0, S, T, x, NULL, &err) == AQ_ERR_ARG);
    CHECK(aq_capture_set_block(cb, 1, &err) == AQ_ERR_ARG);
    aq_capture_free(cb);
    o.block_last = 0;
    CHECK_OK(aq_capture_new(m, &o, &cb, &err), &err);
    CHECK(aq_capture_run_block(cb, m, tok, 0, S, T, NULL, NULL, &err) == AQ_ERR_ARG);
    aq_capture_free(cb);
    rec_free(&r);
    free(x);
    aq_capture_free(ref);
}

/* Sequential mode with block 0 quantized: block 1's cross statistics from the
 * two streams (FP and quantized upstream, advanced past block 0) == today's. */
static void test_streaming_cross(aq_model *m, const int *tok)
{
    aq_error err = {0};
    aq_capture_opts o;
    aq_capture_opts_default(&o);
    o.cross_block = 1;
    o.sample_rows = 30;
    o.batch_windows = 4;
    aq_capture *ref = NULL, *cb = NULL;
    CHECK_OK(aq_capture_new(m, &o, &ref, &err), &err);
    CHECK_OK(aq_capture_new(m, &o, &cb, &err), &err);
    int D = aq_model_config(m)->dim;
    float *x = calloc((size_t)S * T * D, sizeof *x), *xq = calloc((size_t)S * T * D, sizeof *xq);
    if (ref && cb && x && xq) {
        CHECK_OK(aq_capture_run(ref, m, tok, 0, S, T, &err), &err);
        CHECK_OK(aq_capture_advance(m, tok, S, T, 4, 0, 0, x, &err), &err);
        CHECK_OK(aq_capture_advance(m, tok, S, T, 4, 0, 1, xq, &err), &err);
        CHECK_OK(aq_capture_run_block(cb, m, tok, 0, S, T, x, xq, &err), &err);
        int same = aq_capture_count(cb) == AQ_CAP_COUNT;
        for (int i = 0; same && i < AQ_CAP_COUNT; i++)
            same &= same_point(aq_capture_stat(cb, i), aq_capture_stat(ref, i));
        CHECK_MSG(same, "streaming sequential capture differs from the whole-model passes");
        CHECK(aq_capture_run_block(cb, m, tok, 0, S, T, x, NULL, &err) == AQ_ERR_ARG); /* xq needed */
    }
    aq_capture_free(ref);
    aq_capture_free(cb);
    free(x);
    free(xq);
}

/* Row samples bounded in bytes: d = 64 floats + 8 id bytes = 264 bytes a row. */
static void test_sample_bytes(aq_model *m)
{
    aq_error err = {0};
    aq_capture_opts o;
    aq_capture_opts_default(&o);
    o.block_first = o.block_last = 0;
    o.sample_rows = 100;
    o.sample_bytes = 264 * 10 + 263; /* room for 10 rows of an attention input, not 11 */
    aq_capture *c = NULL;
    CHECK_OK(aq_capture_new(m, &o, &c, &err), &err);
    const aq_capstat *s = c ? aq_capture_find(c, 0, AQ_CAP_ATTN_IN) : NULL;
    CHECK(s && s->sample_cap == 10);
    aq_capture_free(c);
}

/* w8 per-channel RTN weights + a8 activations on every linear of block 0. */
static void quantize_block0(aq_model *m, const rec *fp)
{
    aq_error err = {0};
    for (int w = 0; w < AQ_LIN_COUNT; w++) {
        const float *W;
        int o, i;
        aq_model_linear(m, 0, (aq_linear)w, &W, &o, &i, &err);
        float *dq = malloc(sizeof(float) * o * i), *sc = malloc(4 * o), *zp = malloc(4 * o);
        aq_qspec spec = {8, 1};
        aq_qrange_rows(W, o, i, spec, AQ_RANGE_MINMAX, sc, zp);
        uint8_t *codes = malloc((size_t)o * i);
        aq_quantize_rows(W, o, i, sc, zp, 8, codes);
        aq_dequantize_rows(codes, o, i, sc, zp, dq);
        int p = aq_linear_cap_point((aq_linear)w);
        float as, az;
        aq_qrange(fp->rows[p], fp->n[p] * fp->d[p], (aq_qspec){8, 0}, AQ_RANGE_MINMAX, &as, &az);
        aq_linear_override ov = {dq, NULL, 8, as, az};
        CHECK_OK(aq_model_set_override(m, 0, (aq_linear)w, &ov, &err), &err);
        free(dq), free(sc), free(zp), free(codes);
    }
}

static void test_sequential(aq_model *m, const int *tok)
{
    aq_error err = {0};
    rec fp, q;
    record(m, tok, 0, &fp);
    quantize_block0(m, &fp);
    record(m, tok, 1, &q);
    aq_capture_opts o;
    aq_capture_opts_default(&o);
    o.cross_block = 1;
    o.sample_rows = 30;
    aq_capture *c = NULL;
    CHECK_OK(aq_capture_new(m, &o, &c, &err), &err);
    if (!c) return;
    CHECK(aq_capture_count(c) == AQ_CAP_COUNT);
    CHECK_OK(aq_capture_run(c, m, tok, 0, S, T, &err), &err);
    for (int i = 0; i < aq_capture_count(c); i++) {
        const aq_capstat *s = aq_capture_stat(c, i);
        int k = AQ_CAP_COUNT + (int)s->point, d = s->d;
        CHECK(s->block == 1 && s->cross && s->gram_q);
        double ea = gram_err(s->gram, fp.rows[k], fp.rows[k], fp.n[k], d);
        double eb = gram_err(s->cross, fp.rows[k], q.rows[k], q.n[k], d);
        double ec = gram_err(s->gram_q, q.rows[k], q.rows[k], q.n[k], d);
        printf("sequential block 1 %-8s A %.2g B %.2g C %.2g\n", aq_cap_point_name(s->point), ea,
               eb, ec);
        CHECK(ea < 1e-13 && eb < 1e-13 && ec < 1e-13); /* as in check_stat */
        /* Xq really differs from X (block 0 is quantized) */
        double diff = 0;
        for (size_t r = 0; r < fp.n[k] * d; r++)
            diff = fmax(diff, fabs(fp.rows[k][r] - q.rows[k][r]));
        CHECK(diff > 1e-5); /* far above float32 noise (~1e-7 of O(1) values) */
        int ok = 1;
        for (int j = 0; j < s->n_sample; j++) {
            size_t at = ((size_t)s->sample_win[j] * T + s->sample_pos[j]) * d;
            ok &= !memcmp(s->sample + (size_t)j * d, fp.rows[k] + at, d * 4);
            ok &= !memcmp(s->sample_q + (size_t)j * d, q.rows[k] + at, d * 4);
        }
        CHECK(ok);
    }
    aq_capture_free(c);
    /* sequential statistics of the classifier input (block n_layers) */
    aq_capture_opts_default(&o);
    o.cross_block = 5;
    o.head = 1;
    o.sample_rows = 0;
    CHECK_OK(aq_capture_new(m, &o, &c, &err), &err);
    if (c) {
        CHECK_OK(aq_capture_run(c, m, tok, 0, S, T, &err), &err);
        const aq_capstat *s = aq_capture_stat(c, 0);
        int k = 5 * AQ_CAP_COUNT, d = 64;
        CHECK(aq_capture_count(c) == 1 && s->block == 5 && s->point == AQ_CAP_HEAD &&
              s->n_sample == 0);
        double eb = gram_err(s->cross, fp.rows[k], q.rows[k], q.n[k], d);
        double ec = gram_err(s->gram_q, q.rows[k], q.rows[k], q.n[k], d);
        printf("sequential classifier input: B %.2g C %.2g\n", eb, ec);
        CHECK(eb < 1e-13 && ec < 1e-13); /* as in check_stat */
        aq_capture_free(c);
        c = NULL;
    }
    o.head = 0;
    CHECK(aq_capture_new(m, &o, &c, &err) == AQ_ERR_ARG); /* classifier needs head = 1 */
    /* bad options */
    o.cross_block = 9;
    CHECK(aq_capture_new(m, &o, &c, &err) == AQ_ERR_ARG);
    rec_free(&fp);
    rec_free(&q);
}

int main(void)
{
    char *mp = aq_test_asset("models/stories260K/stories260K.bin");
    aq_error err = {0};
    aq_model *m = NULL;
    CHECK_OK(aq_model_load_path(mp, &m, &err), &err);
    if (!m) AQ_TEST_END();
    int tok[S * T];
    uint64_t seed = 5;
    for (int i = 0; i < S * T; i++)
        tok[i] = i % T == 0 ? 1 : aq_test_irand(&seed, 512);
    test_parallel(m, tok);
    test_streaming(m, tok);
    test_packed(m, tok);
    test_sample_bytes(m);
    test_sequential(m, tok); /* leaves block 0 quantized */
    test_streaming_cross(m, tok);
    aq_model_free(m);
    free(mp);
    AQ_TEST_END();
}
