/* test_coop.c — the cooperative path (mpi/pipeline/coop*.c) under mpirun -np 2
 * and 4, on Q = 2 sub-grids (block size 8, so every matrix spans several
 * block-cyclic rounds).
 * References, all computed here: float64 loops (the Gram from rows, the
 * product R C, the loss of the returned layer), the inverse identity
 * U^T U P = I on a matrix of known condition number, and the single-rank
 * code (aq_gptq, aq_layer_run) for GPTQ and the whole run.
 * Determinism: sub-communicators made of different ranks (and, at -np 4, two
 * groups at once) must give identical bytes. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mpi.h>

#include "../mpi/pipeline/coop.h"
#include "../mpi/pipeline/coop_internal.h"
#include "../mpi/pipeline/coop_sched.h"
#include "../mpi/pipeline/stage_stats.h"
#include "../mpi/pipeline/scalapack.h"
#include "../src/adaquant/gptq.h"
#include "../src/quant/quant.h"
#include "testutil.h"

enum { NB = 8, DOUT = 48, DIN = 40, D = DIN + 1, NTOK = 400 };

typedef struct data {
    float w[DOUT * DIN], b[DOUT], x[NTOK * DIN];
    double gram[D * D]; /* float64 reference Gram (sum over the rows) */
} data;

static void make_data(data *t)
{
    uint64_t s = 12345;
    for (int i = 0; i < DOUT * DIN; i++) t->w[i] = (float)(0.1 * aq_test_nrand(&s));
    for (int i = 0; i < DOUT; i++) t->b[i] = (float)(0.05 * aq_test_nrand(&s));
    for (int n = 0; n < NTOK; n++)
        for (int c = 0; c < DIN; c++) /* channel scales 0.5 .. 2.5 and an offset: not white */
            t->x[n * DIN + c] = (float)((0.5 + 0.05 * c) * aq_test_nrand(&s) + (c % 5 == 0 ? 0.3 : 0));
    memset(t->gram, 0, sizeof t->gram);
    for (int n = 0; n < NTOK; n++)
        for (int i = 0; i < D; i++)
            for (int j = 0; j < D; j++) {
                double xi = i < DIN ? t->x[n * DIN + i] : 1.0, xj = j < DIN ? t->x[n * DIN + j] : 1.0;
                t->gram[i * D + j] += xi * xj;
            }
}

/* The rows this rank owns in the block-cyclic token distribution. */
static float *local_rows(const aq_coop_grid *g, const float *x, size_t n, size_t d, size_t *nl)
{
    *nl = aq_coop_nlocal(g, n, g->me);
    float *o = malloc((*nl ? *nl : 1) * d * sizeof *o);
    for (size_t l = 0; l < *nl; l++) memcpy(o + l * d, x + aq_coop_global(g, l) * d, d * sizeof *o);
    return o;
}

/* PDSYRK assembly against the float64 Gram: |error| <= N eps (|X~|^T |X~|)_ij
 * (the standard bound for a sum of N float64 products; the products of float
 * inputs are exact). */
static void test_gram_rows(const aq_coop_grid *g, const data *t)
{
    aq_error err = {0};
    size_t nl;
    float *xl = local_rows(g, t->x, NTOK, DIN, &nl);
    aq_coop_gram gr;
    CHECK_OK(aq_coop_gram_from_rows(g, xl, NTOK, DIN, &gr, &err), &err);
    double *full = malloc(D * D * sizeof *full);
    CHECK_OK(aq_coop_allgather_rows(g, gr.loc, D, D * sizeof(double), full, &err), &err);
    int bad = 0;
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double ab = 0;
            for (int n = 0; n < NTOK; n++)
                ab += fabs(i < DIN ? t->x[n * DIN + i] : 1.0) * fabs(j < DIN ? t->x[n * DIN + j] : 1.0);
            /* full is column-major by columns: element (i, j) at [j * D + i] */
            if (fabs(full[j * D + i] - t->gram[i * D + j]) > NTOK * DBL_EPSILON * ab) bad++;
        }
    CHECK_MSG(bad == 0, "%d Gram entries beyond the float64 summation bound", bad);
    free(full);
    free(xl);
    aq_coop_gram_free(&gr);
}

/* R C with PDGEMM against a float64 loop: |error| <= D eps (|R| |C|)_ij
 * (the standard bound for a dot product of length D). cn: the normalised
 * Gram (row-major reference). */
static void test_product(const aq_coop_grid *g, const aq_coop_gram *gr, const double *cn)
{
    aq_error err = {0};
    size_t nl = aq_coop_nlocal(g, DOUT, g->me);
    double *r = malloc(nl * D * sizeof *r), *out = malloc(nl * D * sizeof *out);
    static double rg[DOUT * D];
    uint64_t s = 777;
    for (int i = 0; i < DOUT * D; i++) rg[i] = aq_test_nrand(&s);
    for (size_t l = 0; l < nl; l++) memcpy(r + l * D, rg + aq_coop_global(g, l) * D, D * sizeof *r);
    CHECK_OK(aq_coop_times_c(g, gr, DOUT, r, out, &err), &err);
    int bad = 0;
    for (size_t l = 0; l < nl; l++)
        for (int j = 0; j < D; j++) {
            const double *row = rg + aq_coop_global(g, l) * D;
            double ref = 0, ab = 0;
            for (int k = 0; k < D; k++) {
                ref += row[k] * cn[k * D + j];
                ab += fabs(row[k] * cn[k * D + j]);
            }
            if (fabs(out[l * D + j] - ref) > D * DBL_EPSILON * ab) bad++;
        }
    CHECK_MSG(bad == 0, "%d product entries beyond the float64 gemm bound", bad);
    free(r);
    free(out);
}

/* Householder reflector I - 2 v v^T / v^T v applied to the rows and columns
 * of the symmetric m x m matrix h (row-major): h <- H h H. */
static void reflect(double *h, int m, const double *v)
{
    double vv = 0, *hv = malloc((size_t)m * sizeof *hv);
    for (int i = 0; i < m; i++) vv += v[i] * v[i];
    for (int pass = 0; pass < 2; pass++) { /* rows, then columns (h symmetric) */
        for (int j = 0; j < m; j++) {
            double t = 0;
            for (int i = 0; i < m; i++) t += v[i] * h[i * m + j];
            hv[j] = 2 * t / vv;
        }
        for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++) h[i * m + j] -= v[i] * hv[j];
        for (int i = 0; i < m; i++) /* transpose in place: the next pass acts on columns */
            for (int j = i + 1; j < m; j++) {
                double x = h[i * m + j];
                h[i * m + j] = h[j * m + i];
                h[j * m + i] = x;
            }
    }
    free(hv);
}

/* The GPTQ factor: an SPD H = Q diag(lambda) Q^T with lambda log-spaced in
 * [1e-4, 1] (condition number kappa = 1e4), Q three random reflectors; no
 * damping, a random permutation. U^T U P = I up to the error of a backward
 * stable Cholesky and triangular inverse, O(d eps kappa); the bound used is
 * 10 d eps kappa (3.6e-10 here, measured ~1e-13). */
static void test_factor(const aq_coop_grid *g)
{
    enum { d = DIN };
    static double h[d * d], gram[D * D], up[d * d];
    double v[d];
    size_t perm[d];
    uint64_t s = 4242;
    memset(h, 0, sizeof h);
    for (int i = 0; i < d; i++) h[i * d + i] = pow(10.0, -4.0 * i / (d - 1));
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < d; i++) v[i] = aq_test_nrand(&s);
        reflect(h, d, v);
    }
    for (int i = 0; i < d; i++) perm[i] = (size_t)i;
    for (int i = d - 1; i > 0; i--) {
        int j = (int)(aq_test_urand(&s) * (i + 1)) % (i + 1);
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    memset(gram, 0, sizeof gram);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) gram[i * D + j] = h[i * d + j];
    gram[D * D - 1] = 1.0;
    aq_error err = {0};
    aq_coop_gram gr;
    aq_coop_factor f;
    CHECK_OK(aq_coop_gram_from_global(g, gram, DIN, 1, &gr, &err), &err);
    aq_coop_gram_normalise(&gr); /* x 1/1: exact */
    CHECK_OK(aq_coop_inverse_factor(g, &gr, perm, 0.0, &f, &err), &err);
    CHECK_OK(aq_coop_factor_rows(g, &f, 0, d, up, &err), &err);
    double worst = 0, tol = 10.0 * d * DBL_EPSILON * 1e4;
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) { /* (U^T U P)_ij = sum_k U_ki (U P)_kj */
            double t = 0;
            for (int k = 0; k < d; k++) {
                double upk = 0;
                for (int m = k; m < d; m++) upk += up[k * d + m] * h[perm[m] * d + perm[j]];
                t += up[k * d + i] * upk;
            }
            worst = fmax(worst, fabs(t - (i == j)));
        }
    CHECK_MSG(worst <= tol, "U^T U P - I = %g > %g", worst, tol);
    aq_coop_factor_free(&f);
    aq_coop_gram_free(&gr);
}

/* GPTQ codes of the local rows against aq_gptq on the same Hessian, grid and
 * act-order: the factors differ only by rounding (~1e-15 relative), which
 * flips a code only at a rounding tie; allowed: 0.5% of the codes (measured 0). */
static void test_gptq(const aq_coop_grid *g, aq_coop_gram *gr, const data *t)
{
    aq_error err = {0};
    static double H[DIN * DIN];
    static uint8_t ref[DOUT * DIN];
    float sc[DOUT], ze[DOUT];
    size_t perm[DIN];
    uint8_t dead[DIN] = {0};
    double inv = 1.0 / NTOK;
    for (int i = 0; i < DIN; i++)
        for (int j = 0; j < DIN; j++) H[i * DIN + j] = t->gram[i * D + j] * inv;
    aq_qrange_rows(t->w, DOUT, DIN, (aq_qspec){4, 0}, AQ_RANGE_MSE, sc, ze);
    CHECK_OK(aq_gptq(t->w, DOUT, DIN, H, sc, ze, 4, 0.01, 16, 1, ref, NULL, &err), &err);
    for (int i = 0; i < DIN; i++) perm[i] = (size_t)i;
    for (int i = 1; i < DIN; i++) /* act-order: decreasing diagonal, ties by index */
        for (int j = i; j > 0 && H[perm[j] * DIN + perm[j]] > H[perm[j - 1] * DIN + perm[j - 1]]; j--) {
            size_t x = perm[j];
            perm[j] = perm[j - 1];
            perm[j - 1] = x;
        }
    size_t nl = aq_coop_nlocal(g, DOUT, g->me);
    float *wl = local_rows(g, t->w, DOUT, DIN, &nl);
    float *sl = malloc(2 * nl * sizeof *sl), *zl = sl + nl;
    uint8_t *codes = malloc(nl * DIN);
    for (size_t l = 0; l < nl; l++) {
        sl[l] = sc[aq_coop_global(g, l)];
        zl[l] = ze[aq_coop_global(g, l)];
    }
    aq_coop_factor f;
    CHECK_OK(aq_coop_inverse_factor(g, gr, perm, 0.01, &f, &err), &err);
    CHECK_OK(aq_coop_gptq_sweep(g, &f, perm, wl, nl, dead, sl, zl, 4, 16, codes, &err), &err);
    int diff = 0;
    for (size_t l = 0; l < nl; l++)
        for (int c = 0; c < DIN; c++) diff += codes[l * DIN + c] != ref[aq_coop_global(g, l) * DIN + c];
    CHECK_MSG(diff <= (int)(nl * DIN / 200), "%d of %zu GPTQ codes differ from aq_gptq", diff, nl * DIN);
    aq_coop_factor_free(&f);
    free(wl);
    free(sl);
    free(codes);
}

static void run_opts(aq_layer_opts *o, int f32)
{
    aq_layer_opts_default(o);
    o->starts = 1;
    o->polish_rounds = 0; /* what the cooperative path runs (coop.h) */
    o->iters = 30;
    o->f32_gemm = f32;
    o->gptq_block = 16;
}

/* The float64 loss of a result from the reference Gram, as docs/ADAQUANT.md
 * defines it: sum_r E_r A E_r^T / sum_r W~_r A W~_r^T, E = W~ - [s(u - z) b']. */
static double ref_loss(const data *t, const aq_layer_result *r)
{
    double num = 0, den = 0, e[D], w[D];
    for (int o = 0; o < DOUT; o++) {
        for (int c = 0; c < DIN; c++) {
            w[c] = t->w[o * DIN + c];
            e[c] = w[c] - (double)r->w_scale[o] * ((double)r->codes[o * DIN + c] - (double)r->w_zero[o]);
        }
        w[DIN] = t->b[o];
        e[DIN] = w[DIN] - (double)r->bias[o];
        for (int i = 0; i < D; i++)
            for (int j = 0; j < D; j++) {
                num += e[i] * t->gram[i * D + j] * e[j];
                den += w[i] * t->gram[i * D + j] * w[j];
            }
    }
    return num / den;
}

static aq_status coop_run(const aq_coop_grid *g, const data *t, const aq_layer_opts *o,
                          aq_layer_result *r, aq_error *err)
{
    aq_coop_gram gr;
    AQ_TRY(aq_coop_gram_from_global(g, t->gram, DIN, NTOK, &gr, err));
    aq_coop_problem p = {"blk.0.ffn", DOUT, DIN, t->w, t->b, &gr};
    aq_status st = aq_coop_layer_run(g, &p, o, r, NULL, err);
    aq_coop_gram_free(&gr);
    return st;
}

static int same_result(const aq_layer_result *a, const aq_layer_result *b)
{
    return memcmp(a->codes, b->codes, DOUT * DIN) == 0 &&
           memcmp(a->w_scale, b->w_scale, 3 * DOUT * sizeof(float)) == 0 &&
           memcmp(&a->loss_final, &b->loss_final, sizeof(double)) == 0 &&
           memcmp(&a->loss_gptq, &b->loss_gptq, sizeof(double)) == 0;
}

/* The whole run against aq_layer_run (statistics feed, same options) and
 * against the float64 loss of what it returns. */
static void test_run(const aq_coop_grid *g, const data *t, aq_layer_result *out)
{
    aq_error err = {0};
    aq_layer_opts o;
    run_opts(&o, 0);
    aq_layer_result ref;
    aq_layer_problem p = {.name = "blk.0.ffn", .d_out = DOUT, .d_in = DIN, .weight = t->w,
                          .bias = t->b, .gram_a = t->gram, .n_tokens = NTOK};
    CHECK_OK(aq_layer_run(&p, &o, &ref, &err), &err);
    CHECK_OK(coop_run(g, t, &o, out, &err), &err);
    if (!out->codes) return;
    /* RTN: the same codes, losses differ by float64 summation order (<= D eps
     * relative on sums of positive terms, D eps = 1e-14): 1e-12 */
    CHECK_CLOSE(out->loss_rtn, ref.loss_rtn, 1e-12 * ref.loss_rtn);
    /* GPTQ: codes equal up to ties (test_gptq); 1e-9 relative */
    CHECK_CLOSE(out->loss_gptq, ref.loss_gptq, 1e-9 * ref.loss_gptq);
    /* The target: the layer loss within 1e-3 relative of single-rank */
    CHECK_MSG(fabs(out->loss_final - ref.loss_final) <= 1e-3 * ref.loss_final,
              "cooperative loss %.10g vs single-rank %.10g", out->loss_final, ref.loss_final);
    CHECK(out->loss_final <= out->loss_init && out->loss_final < out->loss_gptq);
    CHECK(out->iterations == 30);
    /* the reported loss is the loss of the returned layer (float64 reference;
     * the two sums differ in order only: 1e-9 relative covers a loss 1e4 x
     * below ||Y||^2 with D eps rounding) */
    CHECK_CLOSE(out->loss_final, ref_loss(t, out), 1e-9 * out->loss_final);
    aq_layer_result_free(&ref);
}

/* Multi-start and exact polishing (the pipeline's defaults run them): against
 * aq_layer_run with the same options, and the same bytes from two sub-grids. */
static void test_run_full(const aq_coop_grid *ga, const aq_coop_grid *gb, const data *t)
{
    aq_error err = {0};
    aq_layer_opts o;
    run_opts(&o, 0);
    o.starts = 3;
    o.polish_rounds = 2;
    aq_layer_result ref, ra, rb;
    aq_layer_problem p = {.name = "blk.0.ffn", .d_out = DOUT, .d_in = DIN, .weight = t->w,
                          .bias = t->b, .gram_a = t->gram, .n_tokens = NTOK};
    CHECK_OK(aq_layer_run(&p, &o, &ref, &err), &err);
    CHECK_OK(coop_run(ga, t, &o, &ra, &err), &err);
    CHECK_OK(coop_run(gb, t, &o, &rb, &err), &err);
    /* the target, 1e-3 relative: the same algorithm, products that differ
     * in the last bits (a greedy polishing move may flip at a near-tie) */
    CHECK_MSG(ra.codes && fabs(ra.loss_final - ref.loss_final) <= 1e-3 * ref.loss_final,
              "cooperative polished loss %.10g vs single-rank %.10g", ra.loss_final, ref.loss_final);
    /* polishing and extra starts only improve on the plain run's start */
    CHECK(ra.loss_final <= ra.loss_init);
    CHECK_MSG(ra.codes && rb.codes && same_result(&ra, &rb), "polished results differ between sub-grids");
    /* the reported loss is the loss of the returned layer (as test_run) */
    if (ra.codes) CHECK_CLOSE(ra.loss_final, ref_loss(t, &ra), 1e-9 * ra.loss_final);
    aq_layer_result_free(&ref);
    aq_layer_result_free(&ra);
    aq_layer_result_free(&rb);
}

/* A statistics file streamed by the members (coop_stats.c): each keeps
 * exactly its columns of the Gram written (a copy: bit-equal to the matrix's
 * rows, symmetric), also past the stream's 1 MiB chunk (a 600-wide Gram is
 * 1.4 MiB packed); a wrong fingerprint or width and a flipped payload byte
 * (found by the CRC at the end) are refused naming the file. */
static void test_stats_file(const aq_coop_grid *g, int rank)
{
    enum { SD = 599, SE = SD + 1, NS = 3, BLK = 2, PT = 1 };
    char work[512] = "", sub[600], path[AQ_PIPE_PATH];
    if (rank == 0) {
        char *d = aq_test_tmpdir("coop_stats");
        snprintf(work, sizeof work, "%s", d);
        free(d);
    }
    MPI_Bcast(work, sizeof work, MPI_CHAR, 0, MPI_COMM_WORLD);
    double *G = malloc((size_t)SE * SE * sizeof *G);
    float mm[2 * SD], sample[NS * SD];
    uint32_t win[NS] = {0, 1, 2}, pos[NS] = {3, 4, 5};
    uint64_t seed = 777;
    for (int r = 0; r < SE; r++)
        for (int c = 0; c <= r; c++) G[r * SE + c] = G[c * SE + r] = aq_test_nrand(&seed);
    for (int i = 0; i < 2 * SD; i++) mm[i] = (float)(i % 7);
    for (int i = 0; i < NS * SD; i++) sample[i] = (float)aq_test_nrand(&seed);
    aq_fingerprint fp = {{11, 22}}, other = {{11, 23}};
    aq_stats_path(work, "stats", BLK, PT, path);
    aq_error err = {0};
    if (rank == 0) {
        snprintf(sub, sizeof sub, "%s/stats", work);
        mkdir(sub, 0755);
        aq_capstat cs = {.block = BLK, .point = (aq_cap_point)PT, .d = SD, .n_rows = 1000, .gram = G, .xmin = mm,
                         .xmax = mm + SD, .n_sample = NS, .sample_cap = NS, .sample = sample, .sample_win = win,
                         .sample_pos = pos};
        CHECK_OK(aq_stats_write(work, "stats", &cs, &fp, &err), &err);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    aq_coop_gram gr;
    CHECK_OK(aq_coop_gram_from_stats(g, work, BLK, PT, &fp, SD, &gr, &err), &err);
    CHECK_MSG(gr.n_tokens == 1000 && gr.D == SE && gr.ncols == aq_coop_nlocal(g, SE, g->me), "stats Gram shape");
    int same = 1;
    for (size_t l = 0; gr.loc && l < gr.ncols; l++)
        same &= !memcmp(gr.loc + l * SE, G + aq_coop_global(g, l) * SE, SE * sizeof *G);
    CHECK_MSG(same, "rank %d: the streamed Gram columns differ from the written matrix", rank);
    aq_coop_gram_free(&gr);
    CHECK(aq_coop_gram_from_stats(g, work, BLK, PT, &other, SD, &gr, &err) == AQ_ERR_ARG &&
          strstr(err.msg, path) && strstr(err.msg, "fingerprint"));
    CHECK(aq_coop_gram_from_stats(g, work, BLK, PT, &fp, SD - 1, &gr, &err) == AQ_ERR_FORMAT && strstr(err.msg, path));
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) { /* flip one Gram byte in the middle of the file */
        FILE *f = fopen(path, "r+b");
        CHECK(f != NULL);
        if (f) {
            fseek(f, 0, SEEK_END);
            long mid = ftell(f) / 2;
            fseek(f, mid, SEEK_SET);
            int ch = fgetc(f);
            fseek(f, mid, SEEK_SET);
            fputc(ch ^ 0x10, f);
            fclose(f);
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    aq_status st = aq_coop_gram_from_stats(g, work, BLK, PT, &fp, SD, &gr, &err);
    /* the CRC at the end, or inflate itself if the byte was a stored block's header */
    CHECK_MSG(st == AQ_ERR_FORMAT && strstr(err.msg, path) && (strstr(err.msg, "CRC") || strstr(err.msg, "inflate")),
              "a corrupted statistics file: %s", err.msg);
    CHECK(gr.loc == NULL);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) {
        remove(path);
        rmdir(sub);
        rmdir(work);
    }
    free(G);
}

/* Clear errors, the same on every rank of the grid. */
static void test_bad(const aq_coop_grid *g, const data *t, int world)
{
    aq_error err = {0};
    MPI_Comm sub;
    CHECK(aq_coop_split(MPI_COMM_WORLD, world + 1, &sub, &err) == AQ_ERR_ARG);
    CHECK(strstr(err.msg, "does not fit the communicator") != NULL);
    aq_layer_opts o;
    run_opts(&o, 0);
    aq_coop_gram gr;
    CHECK_OK(aq_coop_gram_from_global(g, t->gram, DIN, NTOK, &gr, &err), &err);
    aq_layer_result r;
    aq_coop_problem p = {"tiny", NB, DIN, t->w, t->b, &gr}; /* 8 rows: rank 1 would own none */
    err = (aq_error){0};
    CHECK(aq_coop_layer_run(g, &p, &o, &r, NULL, &err) == AQ_ERR_SHAPE);
    CHECK(strstr(err.msg, "tiny") && strstr(err.msg, "Q = 2"));
    p = (aq_coop_problem){"wide", DOUT, DIN + 1, t->w, t->b, &gr};
    err = (aq_error){0};
    CHECK(aq_coop_layer_run(g, &p, &o, &r, NULL, &err) == AQ_ERR_SHAPE);
    CHECK(strstr(err.msg, "wide") != NULL);
    o.a_bits = 8;
    p = (aq_coop_problem){"act", DOUT, DIN, t->w, t->b, &gr};
    err = (aq_error){0};
    CHECK(aq_coop_layer_run(g, &p, &o, &r, NULL, &err) == AQ_ERR_ARG);
    CHECK(strstr(err.msg, "a16") != NULL);
    /* a NaN in a row of the last process column only: every rank reports it */
    static float w[DOUT * DIN];
    memcpy(w, t->w, sizeof w);
    w[(NB + 3) * DIN + 5] = NAN; /* row 11: block 1, process column 1 */
    run_opts(&o, 0);
    p = (aq_coop_problem){"nan", DOUT, DIN, w, t->b, &gr};
    err = (aq_error){0};
    CHECK(aq_coop_layer_run(g, &p, &o, &r, NULL, &err) == AQ_ERR_NUMERIC);
    CHECK(strstr(err.msg, "nan") && strstr(err.msg, "weight [11, 5]"));
    aq_coop_gram_free(&gr);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    static data t;
    make_data(&t);
    aq_error err = {0};
    MPI_Comm a, b;
    aq_coop_grid ga, gb;
    /* a: consecutive pairs; b: other pairs ({1,0} at -np 2, {0,2},{1,3} at -np 4) */
    CHECK_OK(aq_coop_split(MPI_COMM_WORLD, 2, &a, &err), &err);
    MPI_Comm_split(MPI_COMM_WORLD, size == 2 ? 0 : rank % 2, size - rank, &b);
    CHECK_OK(aq_coop_grid_init(&ga, a, NB, &err), &err);
    CHECK_OK(aq_coop_grid_init(&gb, b, NB, &err), &err);

    test_gram_rows(&ga, &t);
    aq_coop_gram gr;
    static double cn[D * D];
    for (int i = 0; i < D * D; i++) cn[i] = t.gram[i] * (1.0 / NTOK);
    CHECK_OK(aq_coop_gram_from_global(&ga, t.gram, DIN, NTOK, &gr, &err), &err);
    aq_coop_gram_normalise(&gr);
    test_product(&ga, &gr, cn);
    test_factor(&ga);
    test_gptq(&ga, &gr, &t);
    aq_coop_gram_free(&gr);

    aq_layer_result ra, rb;
    test_run(&ga, &t, &ra);
    aq_layer_opts o;
    run_opts(&o, 0);
    CHECK_OK(coop_run(&gb, &t, &o, &rb, &err), &err);
    CHECK_MSG(ra.codes && rb.codes && same_result(&ra, &rb), "results differ between sub-grids");
    aq_layer_result_free(&ra);
    aq_layer_result_free(&rb);
    run_opts(&o, 1); /* the float32 Adam step (PSGEMM) */
    CHECK_OK(coop_run(&ga, &t, &o, &ra, &err), &err);
    CHECK_OK(coop_run(&gb, &t, &o, &rb, &err), &err);
    CHECK_MSG(ra.codes && rb.codes && same_result(&ra, &rb), "f32 results differ between sub-grids");
    /* all ranks of the world hold the same bytes */
    uint64_t h = 1469598103934665603ULL, h0 = 0;
    for (int i = 0; ra.codes && i < DOUT * DIN; i++) h = (h ^ ra.codes[i]) * 1099511628211ULL;
    for (int i = 0; ra.w_scale && i < 3 * DOUT; i++) {
        uint32_t u;
        memcpy(&u, &ra.w_scale[i], 4);
        h = (h ^ u) * 1099511628211ULL;
    }
    h0 = h;
    MPI_Bcast(&h0, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    CHECK_MSG(h == h0, "rank %d holds other bytes than rank 0", rank);
    aq_layer_result_free(&ra);
    aq_layer_result_free(&rb);

    test_run_full(&ga, &gb, &t);
    test_stats_file(&ga, rank);
    test_bad(&ga, &t, size);
    aq_coop_grid_free(&ga);
    aq_coop_grid_free(&gb);
    MPI_Comm_free(&a);
    MPI_Comm_free(&b);
    Cblacs_exit(1);
    MPI_Finalize();
    AQ_TEST_END();
}
