/* coop_grid.c — the cooperative path's grid and data: the 1 x Q BLACS grid on
 * a sub-communicator, block-cyclic bookkeeping, the distributed Gram (from a
 * captured Gram or assembled from rows with PDSYRK) and the distributed
 * product R C (PDGEMM / PSGEMM). docs/COOP.md explains the layout. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "coop.h"
#include "coop_internal.h"
#include "scalapack.h"

aq_status aq_coop_split(MPI_Comm comm, int q, MPI_Comm *sub, aq_error *err)
{
    int rank, size;
    *sub = MPI_COMM_NULL;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (q < 1 || q > size)
        return aq_fail(err, AQ_ERR_ARG,
                       "cooperative path: a sub-grid of %d ranks does not fit the communicator "
                       "of %d ranks (need 1 <= Q <= %d)", q, size, size);
    int groups = size / q, color = rank / q < groups ? rank / q : MPI_UNDEFINED;
    if (MPI_Comm_split(comm, color, rank, sub) != MPI_SUCCESS)
        return aq_fail(err, AQ_ERR_MPI, "cooperative path: MPI_Comm_split into groups of %d failed", q);
    return AQ_OK;
}

aq_status aq_coop_grid_init(aq_coop_grid *g, MPI_Comm sub, int nb, aq_error *err)
{
    memset(g, 0, sizeof *g);
    if (sub == MPI_COMM_NULL || nb < 1)
        return aq_fail(err, AQ_ERR_ARG, "cooperative grid: %s",
                       nb < 1 ? "block size must be >= 1" : "no sub-communicator (MPI_COMM_NULL)");
    int me, np, prow, pcol, myrow, mycol;
    MPI_Comm_rank(sub, &g->me);
    MPI_Comm_size(sub, &g->q);
    Cblacs_pinfo(&me, &np); /* initialises BLACS on MPI_COMM_WORLD if not yet */
    g->comm = sub;
    g->nb = nb;
    g->sys = Csys2blacs_handle(sub);
    g->ctxt = g->sys;
    Cblacs_gridinit(&g->ctxt, "R", 1, g->q);
    Cblacs_gridinfo(g->ctxt, &prow, &pcol, &myrow, &mycol);
    /* process column == rank in sub: the MPI collectives and the PBLAS agree on
     * who owns what. Row-major gridinit over a 1 x Q grid guarantees it. */
    int bad = prow != 1 || pcol != g->q || mycol != g->me, any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, sub);
    if (any) {
        aq_coop_grid_free(g);
        return aq_fail(err, AQ_ERR_MPI, "cooperative grid: BLACS gave a %dx%d grid with this rank "
                       "at column %d (expected 1x%d, column = rank)", prow, pcol, mycol, g->q);
    }
    return AQ_OK;
}

void aq_coop_grid_free(aq_coop_grid *g)
{
    if (g->q > 0) {
        Cblacs_gridexit(g->ctxt);
        Cfree_blacs_system_handle(g->sys);
    }
    memset(g, 0, sizeof *g);
}

int aq_coop_owner(const aq_coop_grid *g, size_t i)
{
    return (int)((i / (size_t)g->nb) % (size_t)g->q);
}

size_t aq_coop_nlocal(const aq_coop_grid *g, size_t n, int col)
{
    size_t nb = (size_t)g->nb, q = (size_t)g->q, blocks = n / nb, c = (size_t)col;
    size_t k = blocks / q * nb; /* full rounds */
    if (blocks % q > c) k += nb;
    else if (blocks % q == c) k += n % nb;
    return k;
}

size_t aq_coop_global(const aq_coop_grid *g, size_t l)
{
    size_t nb = (size_t)g->nb;
    return ((l / nb) * (size_t)g->q + (size_t)g->me) * nb + l % nb;
}

/* A descriptor of an m x n matrix on the grid, local leading dimension m
 * (one process row holds every row). */
aq_status aq_coop_desc(const aq_coop_grid *g, size_t m, size_t n, int *desc, aq_error *err)
{
    if (m == 0 || n == 0 || m > INT_MAX || n > INT_MAX)
        return aq_fail(err, AQ_ERR_SHAPE, "cooperative grid: a %zu x %zu matrix does not fit "
                       "ScaLAPACK's 32-bit dimensions", m, n);
    int im = (int)m, in = (int)n, zero = 0, info = 0;
    descinit_(desc, &im, &in, &g->nb, &g->nb, &zero, &zero, &g->ctxt, &im, &info);
    if (info != 0)
        return aq_fail(err, AQ_ERR_INTERNAL, "cooperative grid: descinit of %zu x %zu failed "
                       "(argument %d)", m, n, -info);
    return AQ_OK;
}

/* Allocate a local column block [ncols][D] (at least one element: BLACS
 * routines read a pointer even when the rank holds nothing). */
static aq_status gram_alloc(const aq_coop_grid *g, size_t d_in, uint64_t n_tokens,
                            aq_coop_gram *out, aq_error *err)
{
    memset(out, 0, sizeof *out);
    if (n_tokens == 0)
        return aq_fail(err, AQ_ERR_ARG, "cooperative Gram: no calibration rows (n_tokens = 0)");
    out->D = d_in + 1;
    out->ncols = aq_coop_nlocal(g, out->D, g->me);
    out->n_tokens = n_tokens;
    size_t n = out->ncols * out->D;
    out->loc = calloc(n ? n : 1, sizeof *out->loc);
    if (!out->loc) return aq_fail_nomem(err, "cooperative Gram columns", n * sizeof(double));
    return AQ_OK;
}

aq_status aq_coop_gram_from_global(const aq_coop_grid *g, const double *gram_sum, size_t d_in,
                                   uint64_t n_tokens, aq_coop_gram *out, aq_error *err)
{
    AQ_TRY(gram_alloc(g, d_in, n_tokens, out, err));
    size_t D = out->D;
    /* symmetric: column j is row j, contiguous in the row-major input */
    for (size_t l = 0; l < out->ncols; l++)
        memcpy(out->loc + l * D, gram_sum + aq_coop_global(g, l) * D, D * sizeof(double));
    return AQ_OK;
}

/* PDSYRK over one chunk of rows: xt [nloc][D] (the widened local rows of the
 * chunk, as the columns of X~^T), G += X~^T X~ (upper triangle). */
static aq_status syrk_chunk(const aq_coop_grid *g, aq_coop_gram *gr, const double *xt,
                            size_t len, aq_error *err)
{
    int dx[9], dg[9], one = 1, iD = (int)gr->D, ilen = (int)len;
    double alpha = 1.0, beta = 1.0;
    AQ_TRY(aq_coop_desc(g, gr->D, len, dx, err));
    AQ_TRY(aq_coop_desc(g, gr->D, gr->D, dg, err));
    pdsyrk_("U", "N", &iD, &ilen, &alpha, xt, &one, &one, dx, &beta, gr->loc, &one, &one, dg, 1, 1);
    return AQ_OK;
}

/* Mirror the upper triangle into the lower one: T = G^T (PDTRAN), then take
 * T's strictly lower part. */
static aq_status symmetrize(const aq_coop_grid *g, aq_coop_gram *gr, aq_error *err)
{
    size_t D = gr->D, n = gr->ncols * D;
    int dg[9], one = 1, iD = (int)D;
    double alpha = 1.0, beta = 0.0;
    AQ_TRY(aq_coop_desc(g, D, D, dg, err));
    double *t = calloc(n ? n : 1, sizeof *t);
    if (!t) return aq_fail_nomem(err, "Gram transpose", n * sizeof(double));
    pdtran_(&iD, &iD, &alpha, gr->loc, &one, &one, dg, &beta, t, &one, &one, dg);
    for (size_t l = 0; l < gr->ncols; l++) {
        size_t j = aq_coop_global(g, l);
        for (size_t i = j + 1; i < D; i++) gr->loc[l * D + i] = t[l * D + i];
    }
    free(t);
    return AQ_OK;
}

aq_status aq_coop_gram_from_rows(const aq_coop_grid *g, const float *x_loc, size_t n_total,
                                 size_t d_in, aq_coop_gram *out, aq_error *err)
{
    AQ_TRY(gram_alloc(g, d_in, n_total, out, err));
    size_t D = out->D, nb = (size_t)g->nb, round = nb * (size_t)g->q;
    /* chunks of whole block-cyclic rounds keep the distribution of the chunk's
     * rows identical to that of the whole set; ~1024 local rows per chunk */
    size_t per = round * (1024 / nb > 0 ? 1024 / nb : 1);
    size_t cap = aq_coop_nlocal(g, per < n_total ? per : n_total, g->me);
    double *xt = malloc((cap ? cap : 1) * D * sizeof *xt);
    if (!xt) {
        aq_coop_gram_free(out);
        return aq_fail_nomem(err, "Gram row chunk", cap * D * sizeof(double));
    }
    aq_status st = AQ_OK;
    size_t done_loc = 0;
    for (size_t t0 = 0; t0 < n_total && st == AQ_OK; t0 += per) {
        size_t len = n_total - t0 < per ? n_total - t0 : per;
        size_t nl = aq_coop_nlocal(g, len, g->me);
        for (size_t i = 0; i < nl; i++) {
            const float *x = x_loc + (done_loc + i) * d_in;
            for (size_t c = 0; c < d_in; c++) xt[i * D + c] = x[c];
            xt[i * D + d_in] = 1.0;
        }
        done_loc += nl;
        st = syrk_chunk(g, out, xt, len, err);
    }
    free(xt);
    if (st == AQ_OK) st = symmetrize(g, out, err);
    if (st != AQ_OK) aq_coop_gram_free(out);
    return st;
}

void aq_coop_gram_free(aq_coop_gram *gr)
{
    free(gr->loc);
    memset(gr, 0, sizeof *gr);
}

void aq_coop_gram_normalise(aq_coop_gram *gr)
{
    if (gr->normalised) return;
    double inv = 1.0 / (double)gr->n_tokens; /* as aq_layer_run: sum * (1/N) */
    for (size_t i = 0; i < gr->ncols * gr->D; i++) gr->loc[i] *= inv;
    gr->normalised = 1;
}

aq_status aq_coop_times_c(const aq_coop_grid *g, const aq_coop_gram *gr, size_t d_out,
                          const double *rows_loc, double *out_loc, aq_error *err)
{
    int dc[9], dr[9], one = 1, iD = (int)gr->D, in = (int)d_out;
    double alpha = 1.0, beta = 0.0;
    AQ_TRY(aq_coop_desc(g, gr->D, gr->D, dc, err));
    AQ_TRY(aq_coop_desc(g, gr->D, d_out, dr, err));
    /* (R C)^T = C R^T (C symmetric): the local columns of the result are the
     * local rows of R C. */
    pdgemm_("N", "N", &iD, &in, &iD, &alpha, gr->loc, &one, &one, dc, rows_loc, &one, &one, dr,
            &beta, out_loc, &one, &one, dr, 1, 1);
    return AQ_OK;
}

aq_status aq_coop_times_cf(const aq_coop_grid *g, size_t D, const float *cf_loc, size_t d_out,
                           const float *rows_loc, float *out_loc, aq_error *err)
{
    int dc[9], dr[9], one = 1, iD = (int)D, in = (int)d_out;
    float alpha = 1.0f, beta = 0.0f;
    AQ_TRY(aq_coop_desc(g, D, D, dc, err));
    AQ_TRY(aq_coop_desc(g, D, d_out, dr, err));
    psgemm_("N", "N", &iD, &in, &iD, &alpha, cf_loc, &one, &one, dc, rows_loc, &one, &one, dr,
            &beta, out_loc, &one, &one, dr, 1, 1);
    return AQ_OK;
}

aq_status aq_coop_allgather_rows(const aq_coop_grid *g, const void *loc, size_t n, size_t elem,
                                 void *glob, aq_error *err)
{
    int *cnt = malloc(2 * (size_t)g->q * sizeof *cnt);
    size_t nl = aq_coop_nlocal(g, n, g->me);
    char *tmp = malloc((n ? n : 1) * elem);
    if (!cnt || !tmp) {
        free(cnt);
        free(tmp);
        return aq_fail_nomem(err, "row gather", n * elem);
    }
    int *dsp = cnt + g->q, off = 0;
    for (int c = 0; c < g->q; c++) {
        size_t b = aq_coop_nlocal(g, n, c) * elem;
        if (b > INT_MAX || (size_t)off + b > INT_MAX) {
            free(cnt);
            free(tmp);
            return aq_fail(err, AQ_ERR_SHAPE, "row gather: %zu bytes exceed MPI's int counts", n * elem);
        }
        cnt[c] = (int)b;
        dsp[c] = off;
        off += (int)b;
    }
    aq_status st = AQ_OK;
    if (MPI_Allgatherv(loc, (int)(nl * elem), MPI_BYTE, tmp, cnt, dsp, MPI_BYTE, g->comm) != MPI_SUCCESS)
        st = aq_fail(err, AQ_ERR_MPI, "row gather: MPI_Allgatherv failed");
    /* rank c's k-th item is global item ((k / nb) q + c) nb + k % nb */
    size_t nb = (size_t)g->nb;
    for (int c = 0; c < g->q && st == AQ_OK; c++) {
        const char *src = tmp + dsp[c];
        for (size_t k = 0, m = aq_coop_nlocal(g, n, c); k < m; k++) {
            size_t gi = ((k / nb) * (size_t)g->q + (size_t)c) * nb + k % nb;
            memcpy((char *)glob + gi * elem, src + k * elem, elem);
        }
    }
    free(cnt);
    free(tmp);
    return st;
}
