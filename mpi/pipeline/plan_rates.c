/* plan_rates.c — the kernel rates `adaquant plan` turns operation counts into
 * seconds with (plan.h): measured in a few seconds on this machine through
 * the calls the pipeline itself makes (BLIS single-threaded with the sup path
 * off as the engine runs it, aq_gram_accumulate, dpotrf, zlib, aq_layer_run
 * on a synthetic statistics problem), and cached as JSON. */
#include <blis.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "../../io/atomic_file.h"
#include "../../src/adaquant/adaquant.h"
#include "../../src/blas/blas_kernel.h"
#include "../../src/model/ops.h"
#include "plan.h"

extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t uplo_len);

#define MIN_SECONDS 0.06 /* repeat each measurement this long (at least 3 runs), keep the fastest */
#define LADDER_MEASURED 8 /* sizes 8 .. 1024 measured; 2048 taken as 1024 (the rate has saturated) */

/* This process's CPU seconds, not the wall clock: the kernels run on one
 * thread, so their CPU time is the core's own work; on a machine shared with
 * other jobs the wall time measures the load too (at load ~20 on 2 cores the
 * wall-clock rates made stories260K's tasks 7x too slow: docs/PLAN.md
 * "Accuracy"). The plan predicts one core's seconds, as the measured task
 * seconds it reads back (cpu_seconds) are. */
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The fastest of repeated runs of body (at least 3, for `budget` CPU seconds
 * in all): the minimum is the core's own speed, where a mean would also
 * measure the cache and memory contention of other jobs. */
#define BEST_OF(best, budget, body)                                                                \
    do {                                                                                           \
        double s0_ = now(), b_ = 1e300;                                                            \
        int n_ = 0;                                                                                \
        do {                                                                                       \
            double t1_ = now();                                                                    \
            body;                                                                                  \
            double d_ = now() - t1_;                                                               \
            b_ = d_ < b_ ? d_ : b_;                                                                \
            n_++;                                                                                  \
        } while (n_ < 3 || now() - s0_ < (budget));                                                \
        (best) = b_;                                                                               \
    } while (0)

static uint64_t lcg = 0x9e3779b97f4a7c15ull;
static double urand(void)
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg >> 11) * (1.0 / 9007199254740992.0) - 0.5;
}

/* GFLOP/s of C[m,n] = A[m,k] B[k,n] in single (dbl = 0) or double precision,
 * the engine's call: one thread, no sup path. */
static double gemm_rate(int dbl, long m, long n, long k, void *a, void *b, void *c)
{
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    bli_rntm_disable_l3_sup(&rntm);
    float sa = 1, sb = 0;
    double da = 1, db = 0;
    double t;
    BEST_OF(t, MIN_SECONDS, {
        if (dbl)
            bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &da, a, k, 1, b, n, 1, &db, c, n, 1, NULL,
                         &rntm);
        else
            bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &sa, a, k, 1, b, n, 1, &sb, c, n, 1, NULL,
                         &rntm);
    });
    return 2.0 * m * n * k / t / 1e9;
}

static aq_status measure_ladders(aq_plan_rates *r, aq_error *err)
{
    size_t big = 1024 * 1024;
    double *a = malloc(big * 8), *b = malloc(big * 8), *c = malloc(big * 8);
    float *x = malloc(512 * 1024 * sizeof *x);
    double *g = malloc(1025 * 1025 * sizeof *g);
    aq_status st = a && b && c && x && g ? AQ_OK : aq_fail_nomem(err, "rate measurement", 5 * big * 8);
    for (size_t i = 0; st == AQ_OK && i < big; i++) a[i] = urand(), b[i] = urand();
    for (size_t i = 0; st == AQ_OK && i < 512 * 1024; i++) x[i] = (float)urand();
    for (int i = 0; st == AQ_OK && i < LADDER_MEASURED; i++) {
        long s = 8L << i, m = 512; /* m: the rows of an activation batch; short runs, so that some are undisturbed */
        r->sgemm[i] = gemm_rate(0, m, s, s, a, b, c);
        r->dgemm[i] = gemm_rate(1, m, s, s, a, b, c);
        /* the capture Gram: 512 rows of width s-1 (plus the ones column) */
        memset(g, 0, (size_t)s * s * sizeof *g);
        double t;
        BEST_OF(t, MIN_SECONDS, if (st == AQ_OK) st = aq_gram_accumulate(g, x, 512, (size_t)s - 1, err));
        if (st == AQ_OK) r->dsyrk[i] = 512.0 * s * s / t / 1e9;
    }
    for (int i = LADDER_MEASURED; i < AQ_PLAN_NSIZES; i++) {
        r->sgemm[i] = r->sgemm[i - 1];
        r->dgemm[i] = r->dgemm[i - 1];
        r->dsyrk[i] = r->dsyrk[i - 1];
    }
    free(a), free(b), free(c), free(x), free(g);
    return st;
}

static aq_status measure_potrf(aq_plan_rates *r, aq_error *err)
{
    int n = 512, info = 0;
    double *h = malloc((size_t)n * n * sizeof *h), *w = malloc((size_t)n * n * sizeof *w);
    if (!h || !w) {
        free(h), free(w);
        return aq_fail_nomem(err, "rate measurement", (size_t)n * n * 16);
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) h[(size_t)i * n + j] = (i == j ? n : 0) + 0.01 * urand();
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) h[(size_t)i * n + j] = h[(size_t)j * n + i];
    double t;
    BEST_OF(t, MIN_SECONDS, {
        memcpy(w, h, (size_t)n * n * sizeof *w); /* inside the timing: < 1% of the factorisation */
        dpotrf_("U", &n, w, &n, &info, 1);
    });
    r->potrf = (double)n * n * n / 3 / t / 1e9;
    free(h), free(w);
    return info == 0 ? AQ_OK : aq_fail(err, AQ_ERR_INTERNAL, "rate measurement: dpotrf info %d", info);
}

/* Elements per second of body over n elements (the fastest run). */
#define RATE_LOOP(rate, n, body)                                                                   \
    do {                                                                                           \
        double t_;                                                                                 \
        BEST_OF(t_, MIN_SECONDS, body);                                                            \
        (rate) = (double)(n) / t_;                                                                 \
    } while (0)

/* libm expf and exp, and the engine's own softmax row and RMSNorm
 * (src/model/ops.c, through its internal header: these are the kernels the
 * forward runs, which no public interface exposes one by one). */
static double measure_exp_elem(aq_plan_rates *r)
{
    enum { N = 1 << 14, D = 256 };
    static float v[N], o[N], g[D];
    double acc = 0;
    for (int i = 0; i < N; i++) v[i] = (float)(-8 * (urand() + 0.5));
    for (int i = 0; i < D; i++) g[i] = 1;
    RATE_LOOP(r->exp_rate, N, for (int i = 0; i < N; i++) acc += expf(v[i]));
    RATE_LOOP(r->dexp_rate, N, for (int i = 0; i < N; i++) acc += exp((double)v[i]));
    RATE_LOOP(r->softmax_rate, N, memcpy(o, v, sizeof o); aq_softmax_prefix(o, N, N); acc += o[7]);
    RATE_LOOP(r->elem_rate, N, aq_rmsnorm_rows(v, g, o, N / D, D, 1e-5f); acc += o[3]);
    return acc;
}

/* ---- the GEMM probe ---------------------------------------------------- */

#define PROBE_MAX_FLOPS 3e8 /* larger shapes: the ladder (their rate has saturated) */

double aq_plan_probe_gemm(void *ctx, double m, double n, double k)
{
    aq_plan_rates *r = ctx;
    /* whole dimensions (a mean document length is not one): the cache keys
     * must read back exactly from the JSON file */
    m = m < 1 ? 1 : round(m), n = n < 1 ? 1 : round(n), k = k < 1 ? 1 : round(k);
    double flops = 2 * m * n * k, mn = m < n ? m : n;
    double ladder = flops / aq_plan_rate_at(r->sgemm, mn < k ? mn : k);
    if (flops > PROBE_MAX_FLOPS || m * k + k * n + m * n > (double)(1 << 24)) return ladder; /* <= 64 MiB of operands */
    for (int i = 0; i < r->n_shapes; i++)
        if (r->shape[i][0] == m && r->shape[i][1] == n && r->shape[i][2] == k) return r->shape[i][3];
    if (r->n_shapes == AQ_PLAN_MAX_SHAPES) return ladder;
    size_t M = (size_t)m, Nn = (size_t)n, K = (size_t)k;
    float *a = calloc(M * K, sizeof *a), *b = calloc(K * Nn, sizeof *b), *c = calloc(M * Nn, sizeof *c);
    double sec = ladder;
    if (a && b && c) {
        for (size_t i = 0; i < M * K; i++) a[i] = (float)urand();
        for (size_t i = 0; i < K * Nn; i++) b[i] = (float)urand();
        rntm_t rntm = BLIS_RNTM_INITIALIZER; /* the engine's call (aq_sgemm): one thread, no sup path */
        bli_rntm_set_num_threads(1, &rntm);
        bli_rntm_disable_l3_sup(&rntm);
        float one = 1, zero = 0;
        BEST_OF(sec, MIN_SECONDS / 4,
                bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_TRANSPOSE, (dim_t)M, (dim_t)Nn, (dim_t)K, &one, a, (inc_t)K, 1,
                             b, (inc_t)K, 1, &zero, c, (inc_t)Nn, 1, NULL, &rntm));
    }
    free(a), free(b), free(c);
    double *e = r->shape[r->n_shapes++];
    e[0] = m, e[1] = n, e[2] = k, e[3] = sec;
    r->shapes_added = 1;
    return sec;
}

static aq_status measure_zlib_touch(aq_plan_rates *r, aq_error *err)
{
    size_t n = 1 << 19; /* 4 MiB of Gram-like doubles */
    double *g = malloc(n * sizeof *g);
    uLongf cap = compressBound(n * sizeof *g), clen = cap, ulen = n * sizeof *g;
    unsigned char *z = malloc(cap), *u = malloc(n * sizeof *g);
    if (!g || !z || !u) {
        free(g), free(z), free(u);
        return aq_fail_nomem(err, "rate measurement", cap * 3);
    }
    for (size_t i = 0; i < n; i++) g[i] = 1e3 * urand() * urand();
    int rc = Z_OK;
    double t;
    BEST_OF(t, 0, if (rc == Z_OK) { clen = cap; rc = compress2(z, &clen, (const Bytef *)g, n * sizeof *g, 6); });
    r->deflate_rate = (double)(n * sizeof *g) / t;
    BEST_OF(t, 0, if (rc == Z_OK) { ulen = n * sizeof *g; rc = uncompress(u, &ulen, z, clen); });
    r->inflate_rate = (double)(n * sizeof *g) / t;
    int reps = 0;
    BEST_OF(t, MIN_SECONDS, { /* fresh pages written (malloc + first touch) and a copy */
        unsigned char *f = malloc(n * sizeof *g);
        if (f) {
            memcpy(f, u, n * sizeof *g);
            u[reps % 64] ^= f[(size_t)reps * 4097 % (n * sizeof *g)];
            free(f);
        }
        reps++;
    });
    r->touch_rate = (double)(n * sizeof *g) / t;
    free(g), free(z), free(u);
    return rc == Z_OK ? AQ_OK : aq_fail(err, AQ_ERR_INTERNAL, "rate measurement: zlib error %d", rc);
}

/* One aq_layer_run, d_out x d_in, w4a16, on the Grams of 16 d_in rows of
 * correlated inputs (a rank-16 signal with a decaying spectrum plus noise:
 * real activations are far from white, and i.i.d. inputs make the
 * polishing work differently). */
static aq_status time_layer(int d_out, int d_in, int iters, int starts, int polish, int gptq, double *sec,
                            aq_error *err)
{
    enum { RANK = 16 };
    size_t D = (size_t)d_in + 1, n = 16 * (size_t)d_in;
    float *w = malloc((size_t)d_out * d_in * sizeof *w), *x = malloc(n * d_in * sizeof *x);
    float *u = malloc((size_t)RANK * d_in * sizeof *u);
    double *g = calloc(D * D, sizeof *g);
    aq_status st = w && x && g && u ? AQ_OK : aq_fail_nomem(err, "rate measurement layer", D * D * 8);
    for (size_t i = 0; st == AQ_OK && i < (size_t)d_out * d_in; i++) w[i] = (float)(0.2 * urand());
    for (size_t i = 0; st == AQ_OK && i < (size_t)RANK * d_in; i++) u[i] = (float)urand();
    for (size_t t = 0; st == AQ_OK && t < n; t++) {
        double z[RANK];
        for (int k = 0; k < RANK; k++) z[k] = urand() * exp(-0.3 * k);
        for (int c = 0; c < d_in; c++) {
            double v = 0.05 * urand();
            for (int k = 0; k < RANK; k++) v += u[(size_t)k * d_in + c] * z[k];
            x[t * d_in + c] = (float)v;
        }
    }
    if (st == AQ_OK) st = aq_gram_accumulate(g, x, n, (size_t)d_in, err);
    aq_layer_opts o;
    aq_layer_opts_default(&o);
    if (st == AQ_OK) st = aq_layer_opts_parse("w4a16", &o, err);
    o.iters = iters, o.starts = starts, o.polish_rounds = polish, o.init = gptq ? AQ_INIT_GPTQ : AQ_INIT_RTN;
    aq_layer_problem p = {.name = "plan.rate", .d_out = (size_t)d_out, .d_in = (size_t)d_in, .weight = w,
                          .gram_a = g, .n_tokens = n};
    *sec = 1e300;
    for (int rep = 0; rep < 2 && st == AQ_OK; rep++) { /* the faster of two (BEST_OF) */
        aq_layer_result res;
        double t0 = now();
        st = aq_layer_run(&p, &o, &res, err);
        double t = now() - t0;
        *sec = t < *sec ? t : *sec;
        if (st == AQ_OK) aq_layer_result_free(&res);
    }
    free(w), free(x), free(g), free(u);
    return st;
}

aq_status aq_plan_rates_measure_layer(aq_plan_rates *r, int iters, int starts, int polish, aq_error *err)
{
    static const int shapes[2][2] = {{64, 64}, {128, 256}};
    r->aq_iters = iters, r->aq_starts = starts, r->aq_polish = polish;
    for (int k = 0; k < 2; k++) {
        r->aq_shape[k][0] = shapes[k][0], r->aq_shape[k][1] = shapes[k][1];
        AQ_TRY(time_layer(shapes[k][0], shapes[k][1], iters, starts, polish, 1, &r->aq_gptq[k], err));
        AQ_TRY(time_layer(shapes[k][0], shapes[k][1], iters, starts, polish, 0, &r->aq_rtn[k], err));
    }
    return AQ_OK;
}

aq_status aq_plan_rates_measure(aq_plan_rates *r, int iters, int starts, int polish, aq_error *err)
{
    memset(r, 0, sizeof *r);
    aq_blas_kernel k;
    aq_blas_kernel_query(&k);
    snprintf(r->kernel, sizeof r->kernel, "%s", k.name);
    AQ_TRY(measure_ladders(r, err));
    AQ_TRY(measure_potrf(r, err));
    volatile double keep = measure_exp_elem(r);
    (void)keep;
    AQ_TRY(measure_zlib_touch(r, err));
    return aq_plan_rates_measure_layer(r, iters, starts, polish, err);
}

/* ---- JSON cache --------------------------------------------------------- */

static json_t *ladder_json(const double *v)
{
    json_t *a = json_array();
    for (int i = 0; i < AQ_PLAN_NSIZES; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

aq_status aq_plan_rates_write(const char *path, const aq_plan_rates *r, aq_error *err)
{
    json_t *o = json_object();
    json_object_set_new(o, "format", json_string("adaquant-plan-rates"));
    json_object_set_new(o, "version", json_integer(AQ_PLAN_RATES_VERSION));
    json_object_set_new(o, "kernel", json_string(r->kernel));
    json_object_set_new(o, "sgemm_gflops", ladder_json(r->sgemm));
    json_object_set_new(o, "dgemm_gflops", ladder_json(r->dgemm));
    json_object_set_new(o, "dsyrk_gflops", ladder_json(r->dsyrk));
    json_object_set_new(o, "potrf_gflops", json_real(r->potrf));
    json_object_set_new(o, "exp_per_s", json_real(r->exp_rate));
    json_object_set_new(o, "dexp_per_s", json_real(r->dexp_rate));
    json_object_set_new(o, "softmax_per_s", json_real(r->softmax_rate));
    json_object_set_new(o, "elem_per_s", json_real(r->elem_rate));
    json_object_set_new(o, "deflate_bytes_per_s", json_real(r->deflate_rate));
    json_object_set_new(o, "inflate_bytes_per_s", json_real(r->inflate_rate));
    json_object_set_new(o, "touch_bytes_per_s", json_real(r->touch_rate));
    json_t *l = json_object();
    json_object_set_new(l, "iters", json_integer(r->aq_iters));
    json_object_set_new(l, "starts", json_integer(r->aq_starts));
    json_object_set_new(l, "polish", json_integer(r->aq_polish));
    json_t *sh = json_array(), *gp = json_array(), *rt = json_array();
    for (int k = 0; k < 2; k++) {
        json_array_append_new(sh, json_integer(r->aq_shape[k][0]));
        json_array_append_new(sh, json_integer(r->aq_shape[k][1]));
        json_array_append_new(gp, json_real(r->aq_gptq[k]));
        json_array_append_new(rt, json_real(r->aq_rtn[k]));
    }
    json_object_set_new(l, "shapes", sh);
    json_object_set_new(l, "seconds_gptq", gp);
    json_object_set_new(l, "seconds_rtn", rt);
    json_object_set_new(o, "layer_run", l);
    json_t *shp = json_array();
    for (int i = 0; i < r->n_shapes; i++) {
        json_t *e = json_array();
        for (int q = 0; q < 4; q++) json_array_append_new(e, json_real(r->shape[i][q]));
        json_array_append_new(shp, e);
    }
    json_object_set_new(o, "sgemm_shapes_m_n_k_seconds", shp);
    char *txt = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(o);
    if (!txt) return aq_fail_nomem(err, "rates JSON", 4096);
    aq_status st = aq_atomic_write_file(path, txt, strlen(txt), err);
    free(txt);
    return st;
}

static aq_status get_num(const char *path, json_t *o, const char *key, double *out, aq_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v) || !(json_number_value(v) > 0))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: field \"%s\" must be a positive number", path, key);
    *out = json_number_value(v);
    return AQ_OK;
}

static aq_status get_count(const char *path, json_t *o, const char *key, int *out, aq_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000000)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: field \"%s\" must be an integer >= 0", path, key);
    *out = (int)json_integer_value(v);
    return AQ_OK;
}

static aq_status get_arr(const char *path, json_t *o, const char *key, double *out, int n, aq_error *err)
{
    json_t *a = json_object_get(o, key);
    if (!json_is_array(a) || (int)json_array_size(a) != n)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: field \"%s\" must be an array of %d numbers", path, key, n);
    for (int i = 0; i < n; i++) {
        json_t *v = json_array_get(a, (size_t)i);
        if (!json_is_number(v) || !(json_number_value(v) > 0))
            return aq_fail(err, AQ_ERR_FORMAT, "%s: field \"%s\"[%d] must be a positive number", path, key, i);
        out[i] = json_number_value(v);
    }
    return AQ_OK;
}

static aq_status rates_from_json(const char *path, json_t *o, aq_plan_rates *r, aq_error *err)
{
    json_t *f = json_object_get(o, "format"), *v = json_object_get(o, "version"), *k = json_object_get(o, "kernel");
    if (!json_is_string(f) || strcmp(json_string_value(f), "adaquant-plan-rates") != 0 || !json_is_integer(v) ||
        json_integer_value(v) != AQ_PLAN_RATES_VERSION || !json_is_string(k))
        return aq_fail(err, AQ_ERR_FORMAT, "%s: not an adaquant-plan-rates file of version %d", path,
                       AQ_PLAN_RATES_VERSION);
    snprintf(r->kernel, sizeof r->kernel, "%s", json_string_value(k));
    AQ_TRY(get_arr(path, o, "sgemm_gflops", r->sgemm, AQ_PLAN_NSIZES, err));
    AQ_TRY(get_arr(path, o, "dgemm_gflops", r->dgemm, AQ_PLAN_NSIZES, err));
    AQ_TRY(get_arr(path, o, "dsyrk_gflops", r->dsyrk, AQ_PLAN_NSIZES, err));
    AQ_TRY(get_num(path, o, "potrf_gflops", &r->potrf, err));
    AQ_TRY(get_num(path, o, "exp_per_s", &r->exp_rate, err));
    AQ_TRY(get_num(path, o, "dexp_per_s", &r->dexp_rate, err));
    AQ_TRY(get_num(path, o, "softmax_per_s", &r->softmax_rate, err));
    AQ_TRY(get_num(path, o, "elem_per_s", &r->elem_rate, err));
    AQ_TRY(get_num(path, o, "deflate_bytes_per_s", &r->deflate_rate, err));
    AQ_TRY(get_num(path, o, "inflate_bytes_per_s", &r->inflate_rate, err));
    AQ_TRY(get_num(path, o, "touch_bytes_per_s", &r->touch_rate, err));
    json_t *l = json_object_get(o, "layer_run");
    double sh[4];
    int it, sta, po;
    if (!json_is_object(l)) return aq_fail(err, AQ_ERR_FORMAT, "%s: field \"layer_run\" must be an object", path);
    AQ_TRY(get_count(path, l, "iters", &it, err));
    AQ_TRY(get_count(path, l, "starts", &sta, err));
    AQ_TRY(get_count(path, l, "polish", &po, err));
    AQ_TRY(get_arr(path, l, "shapes", sh, 4, err));
    AQ_TRY(get_arr(path, l, "seconds_gptq", r->aq_gptq, 2, err));
    AQ_TRY(get_arr(path, l, "seconds_rtn", r->aq_rtn, 2, err));
    r->aq_iters = it, r->aq_starts = sta, r->aq_polish = po;
    for (int q = 0; q < 4; q++) r->aq_shape[q / 2][q % 2] = (int)sh[q];
    json_t *shp = json_object_get(o, "sgemm_shapes_m_n_k_seconds");
    if (!shp) return AQ_OK; /* none measured yet */
    if (!json_is_array(shp) || json_array_size(shp) > AQ_PLAN_MAX_SHAPES)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: field \"sgemm_shapes_m_n_k_seconds\" must be an array of at most %d "
                       "[m, n, k, seconds]", path, AQ_PLAN_MAX_SHAPES);
    for (size_t i = 0; i < json_array_size(shp); i++) {
        char key[64];
        snprintf(key, sizeof key, "sgemm_shapes_m_n_k_seconds[%zu]", i);
        json_t *wrap = json_object();
        json_object_set(wrap, key, json_array_get(shp, i));
        aq_status st = get_arr(path, wrap, key, r->shape[i], 4, err);
        json_decref(wrap);
        AQ_TRY(st);
        r->n_shapes++;
    }
    return AQ_OK;
}

aq_status aq_plan_rates_read(const char *path, aq_plan_rates *r, aq_error *err)
{
    memset(r, 0, sizeof *r);
    FILE *fp = fopen(path, "rb");
    if (!fp) return aq_fail(err, AQ_ERR_NOTFOUND, "%s: no rates file", path);
    json_error_t je;
    json_t *o = json_loadf(fp, JSON_REJECT_DUPLICATES, &je);
    fclose(fp);
    if (!json_is_object(o)) {
        json_decref(o);
        return aq_fail(err, AQ_ERR_FORMAT, "%s: not a JSON object (line %d: %s)", path, je.line, je.text);
    }
    aq_status st = rates_from_json(path, o, r, err);
    json_decref(o);
    return st;
}

void aq_plan_measured_free(aq_plan_measured *m)
{
    free(m->layer);
    free(m->option);
    free(m->seconds);
    free(m->cpu);
    memset(m, 0, sizeof *m);
}

aq_status aq_plan_measured_read(const char *path, aq_plan_measured *m, aq_error *err)
{
    memset(m, 0, sizeof *m);
    FILE *fp = fopen(path, "rb");
    if (!fp) return aq_fail(err, AQ_ERR_NOTFOUND, "%s: no measured task seconds", path);
    json_error_t je;
    json_t *o = json_loadf(fp, 0, &je), *a = o ? json_object_get(o, "tasks") : NULL;
    fclose(fp);
    if (!o) return aq_fail(err, AQ_ERR_FORMAT, "%s: not JSON (line %d: %s)", path, je.line, je.text);
    size_t n = json_is_array(a) ? json_array_size(a) : 0;
    aq_status st = json_is_array(a) ? AQ_OK : aq_fail(err, AQ_ERR_FORMAT, "%s: no \"tasks\" array", path);
    m->layer = calloc(n ? n : 1, sizeof *m->layer);
    m->option = calloc(n ? n : 1, sizeof *m->option);
    m->seconds = calloc(n ? n : 1, sizeof *m->seconds);
    m->cpu = calloc(n ? n : 1, sizeof *m->cpu);
    if (st == AQ_OK && (!m->layer || !m->option || !m->seconds || !m->cpu)) st = aq_fail_nomem(err, path, n * 128);
    for (size_t i = 0; st == AQ_OK && i < n; i++) {
        json_t *t = json_array_get(a, i), *l = json_object_get(t, "layer"), *op = json_object_get(t, "option");
        json_t *sec = json_object_get(t, "seconds");
        if (!json_is_string(l) || !json_is_string(op) || !json_is_number(sec) || !(json_number_value(sec) >= 0) ||
            strlen(json_string_value(l)) >= sizeof m->layer[0] || strlen(json_string_value(op)) >= sizeof m->option[0])
            st = aq_fail(err, AQ_ERR_FORMAT, "%s: task %zu needs \"layer\", \"option\" and \"seconds\" >= 0", path, i);
        else {
            strcpy(m->layer[i], json_string_value(l));
            strcpy(m->option[i], json_string_value(op));
            m->seconds[i] = json_number_value(sec);
            json_t *cpu = json_object_get(t, "cpu_seconds");
            m->cpu[i] = json_is_number(cpu) && json_number_value(cpu) > 0 ? json_number_value(cpu) : 0;
            m->have_cpu |= m->cpu[i] > 0;
        }
    }
    m->n = n;
    json_decref(o);
    if (st != AQ_OK) aq_plan_measured_free(m);
    return st;
}

aq_status aq_plan_measured_write(const char *path, const aq_dist_task *tasks, const aq_loss_row *rows,
                                 const double *cpu, size_t n, aq_error *err)
{
    json_t *o = json_object(), *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_pack("{s:s, s:s, s:f}", "layer", tasks[i].layer, "option", tasks[i].option, "seconds",
                              rows[i].seconds);
        if (cpu && cpu[i] > 0) json_object_set_new(t, "cpu_seconds", json_real(cpu[i]));
        json_array_append_new(a, t);
    }
    json_object_set_new(o, "tasks", a);
    char *txt = json_dumps(o, JSON_INDENT(1));
    json_decref(o);
    if (!txt) return aq_fail_nomem(err, path, n * 100);
    aq_status st = aq_atomic_write_file(path, txt, strlen(txt), err);
    free(txt);
    return st;
}
