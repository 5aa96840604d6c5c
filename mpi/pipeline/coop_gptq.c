/* coop_gptq.c — GPTQ on the cooperative grid: the factor of the inverse
 * Hessian with PDPOTRF + PDTRTRI, and the column sweep over the local rows.
 *
 * Same mathematics as src/adaquant/gptq.c (read its header first): factor the
 * reversed, permuted, damped Hessian J P J = V^T V, then U = J V^-1 J is the
 * upper Cholesky factor of P^-1 (2/3 d^3 flops; PDPOTRI would form the whole
 * inverse, d^3/3 more, and a second PDPOTRF, d^3/3 more). The permutation is
 * an exchange of whole columns (a column is local to one rank on the 1 x Q
 * grid, so its row permutation is local) in bounded chunks: its buffers stay
 * small next to the Hessian. The sweep needs row j of U for every column j;
 * rows of U are columns of V^-1, broadcast one GPTQ block at a time. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/adaquant/gptq.h"
#include "../../src/quant/quant.h"
#include "coop_internal.h"
#include "scalapack.h"

enum { FACTOR_RETRIES = 3, EXCHANGE_DOUBLES = 1 << 21 /* 16 MB per direction and chunk */ };
#define FETCH_BYTES ((size_t)16 << 20) /* rows of U fetched at once by the sweep (and as much again in transit) */

/* Local index of global item b owned by this rank. */
static size_t local_of(const aq_coop_grid *g, size_t b)
{
    size_t nb = (size_t)g->nb;
    return (b / (nb * (size_t)g->q)) * nb + b % nb;
}

typedef struct exch {
    double *sbuf, *rbuf;
    int *cnt; /* scnt, sdsp, rcnt, rdsp: q each */
} exch;

/* Columns [b0, b1) of Hd = J H[perm][perm] J: column b is column
 * src = perm[d-1-b] of H with its rows reordered, sent by src's owner. */
static aq_status exchange_chunk(const aq_coop_grid *g, const aq_coop_gram *gr, const size_t *perm,
                                size_t b0, size_t b1, exch *x, aq_coop_factor *f, aq_error *err)
{
    size_t d = f->d, D = gr->D;
    int q = g->q, *scnt = x->cnt, *sdsp = scnt + q, *rcnt = sdsp + q, *rdsp = rcnt + q;
    memset(scnt, 0, 4 * (size_t)q * sizeof(int));
    for (size_t b = b0; b < b1; b++) {
        int to = aq_coop_owner(g, b), from = aq_coop_owner(g, perm[d - 1 - b]);
        if (from == g->me) scnt[to] += (int)d;
        if (to == g->me) rcnt[from] += (int)d;
    }
    for (int c = 1; c < q; c++) {
        sdsp[c] = sdsp[c - 1] + scnt[c - 1];
        rdsp[c] = rdsp[c - 1] + rcnt[c - 1];
    }
    int *fill = malloc((size_t)q * sizeof *fill);
    if (!fill) return aq_fail_nomem(err, "Hessian exchange counts", (size_t)q * sizeof(int));
    memcpy(fill, sdsp, (size_t)q * sizeof *fill);
    for (size_t b = b0; b < b1; b++) { /* pack in increasing b per destination */
        size_t src = perm[d - 1 - b];
        if (aq_coop_owner(g, src) != g->me) continue;
        const double *col = gr->loc + local_of(g, src) * D;
        double *o = x->sbuf + fill[aq_coop_owner(g, b)];
        for (size_t a = 0; a < d; a++) o[a] = col[perm[d - 1 - a]];
        fill[aq_coop_owner(g, b)] += (int)d;
    }
    int rc = MPI_Alltoallv(x->sbuf, scnt, sdsp, MPI_DOUBLE, x->rbuf, rcnt, rdsp, MPI_DOUBLE, g->comm);
    memcpy(fill, rdsp, (size_t)q * sizeof *fill);
    for (size_t b = b0; b < b1 && rc == MPI_SUCCESS; b++) { /* same order on the receiving side */
        if (aq_coop_owner(g, b) != g->me) continue;
        int from = aq_coop_owner(g, perm[d - 1 - b]);
        memcpy(f->loc + local_of(g, b) * d, x->rbuf + fill[from], d * sizeof(double));
        fill[from] += (int)d;
    }
    free(fill);
    if (rc != MPI_SUCCESS) return aq_fail(err, AQ_ERR_MPI, "Hessian exchange: MPI_Alltoallv failed");
    return AQ_OK;
}

/* Hd = J P J into f->loc with damp_frac * mean(diag) on the diagonal (dead
 * inputs 1 first); diag is H's diagonal in input order (replicated), summed in
 * the order aq_gptq sums it. */
static aq_status fill_permuted(const aq_coop_grid *g, const aq_coop_gram *gr, const size_t *perm,
                               const double *diag, double damp_frac, aq_coop_factor *f,
                               aq_error *err)
{
    size_t d = f->d, cw = EXCHANGE_DOUBLES / d > 0 ? EXCHANGE_DOUBLES / d : 1;
    exch x = {malloc(cw * d * sizeof(double)), malloc(cw * d * sizeof(double)),
              malloc(4 * (size_t)g->q * sizeof(int))};
    aq_status st = AQ_OK;
    if (!x.sbuf || !x.rbuf || !x.cnt)
        st = aq_fail_nomem(err, "Hessian exchange buffers", 2 * cw * d * sizeof(double));
    for (size_t b0 = 0; b0 < d && st == AQ_OK; b0 += cw)
        st = exchange_chunk(g, gr, perm, b0, b0 + cw < d ? b0 + cw : d, &x, f, err);
    free(x.sbuf);
    free(x.rbuf);
    free(x.cnt);
    if (st != AQ_OK) return st;
    double mean = 0.0;
    for (size_t a = 0; a < d; a++) {
        double h = diag[perm[d - 1 - a]];
        mean += h == 0.0 ? 1.0 : h;
    }
    mean /= (double)d;
    for (size_t l = 0; l < f->ncols; l++) {
        size_t a = aq_coop_global(g, l);
        double *h = f->loc + l * d + a;
        if (*h == 0.0) *h = 1.0; /* dead input */
        *h += damp_frac * mean;
    }
    return AQ_OK;
}

/* PDPOTRF + PDTRTRI on f->loc; the LAPACK info (the same on every rank). */
static int factor_once(const aq_coop_grid *g, aq_coop_factor *f, aq_error *err, aq_status *st)
{
    int desc[9], one = 1, n = (int)f->d, info = 0, worst = 0;
    *st = aq_coop_desc(g, f->d, f->d, desc, err);
    if (*st != AQ_OK) return -1;
    pdpotrf_("U", &n, f->loc, &one, &one, desc, &info, 1);
    if (info == 0) pdtrtri_("U", "N", &n, f->loc, &one, &one, desc, &info, 1, 1);
    MPI_Allreduce(&info, &worst, 1, MPI_INT, MPI_MAX, g->comm);
    return worst;
}

aq_status aq_coop_inverse_factor(const aq_coop_grid *g, const aq_coop_gram *gr, const size_t *perm,
                                 double damp, aq_coop_factor *f, aq_error *err)
{
    memset(f, 0, sizeof *f);
    if (!gr->normalised)
        return aq_fail(err, AQ_ERR_INTERNAL, "cooperative GPTQ: the Gram is not normalised");
    size_t d = gr->D - 1;
    f->d = d;
    f->ncols = aq_coop_nlocal(g, d, g->me);
    double *diag = malloc(gr->D * sizeof *diag), *dl = malloc((gr->ncols + 1) * sizeof *dl);
    f->loc = malloc((f->ncols ? f->ncols : 1) * d * sizeof *f->loc);
    aq_status st = AQ_OK;
    if (!diag || !dl || !f->loc) st = aq_fail_nomem(err, "cooperative GPTQ factor", f->ncols * d * 8);
    for (size_t l = 0; st == AQ_OK && l < gr->ncols; l++)
        dl[l] = gr->loc[l * gr->D + aq_coop_global(g, l)];
    if (st == AQ_OK) st = aq_coop_allgather_rows(g, dl, gr->D, sizeof(double), diag, err);
    double frac = damp;
    int info = 1;
    if (st == AQ_OK) st = fill_permuted(g, gr, perm, diag, frac, f, err);
    if (st == AQ_OK) info = factor_once(g, f, err, &st);
    for (int t = 0; st == AQ_OK && info != 0 && t < FACTOR_RETRIES && frac < 1.0; t++) {
        frac = fmin(fmax(frac, 1e-4) * 10.0, 1.0); /* as aq_gptq */
        st = fill_permuted(g, gr, perm, diag, frac, f, err);
        if (st == AQ_OK) info = factor_once(g, f, err, &st);
    }
    if (st == AQ_OK && info != 0)
        st = aq_fail(err, AQ_ERR_NUMERIC,
                     "cooperative GPTQ: Cholesky factorisation (PDPOTRF/PDTRTRI) of the %zux%zu "
                     "Hessian failed even with damping %g x mean(diag H); is H = X^T X positive "
                     "semi-definite?", d, d, frac);
    free(diag);
    free(dl);
    f->damp_used = frac;
    if (st != AQ_OK) aq_coop_factor_free(f);
    return st;
}

void aq_coop_factor_free(aq_coop_factor *f)
{
    free(f->loc);
    memset(f, 0, sizeof *f);
}

aq_status aq_coop_factor_rows(const aq_coop_grid *g, const aq_coop_factor *f, size_t i1, size_t i2,
                              double *up, aq_error *err)
{
    size_t d = f->d, c0 = d - i2, c1 = d - i1; /* V^-1 columns [c0, c1) */
    double *pan = malloc((c1 - c0) * d * sizeof *pan);
    if (!pan) return aq_fail_nomem(err, "factor panel", (c1 - c0) * d * sizeof(double));
    /* runs of consecutive columns on one owner are contiguous local columns */
    for (size_t c = c0; c < c1;) {
        int root = aq_coop_owner(g, c);
        size_t e = c + 1;
        while (e < c1 && aq_coop_owner(g, e) == root) e++;
        double *dst = pan + (c - c0) * d;
        if (root == g->me) memcpy(dst, f->loc + local_of(g, c) * d, (e - c) * d * sizeof(double));
        if (MPI_Bcast(dst, (int)((e - c) * d), MPI_DOUBLE, root, g->comm) != MPI_SUCCESS) {
            free(pan);
            return aq_fail(err, AQ_ERR_MPI, "factor panel: MPI_Bcast failed");
        }
        c = e;
    }
    /* U(j, k) = V^-1(d-1-k, d-1-j), k >= j (the upper triangle only) */
    for (size_t j = i1; j < i2; j++) {
        const double *col = pan + (d - 1 - j - c0) * d;
        double *row = up + (j - i1) * d;
        memset(row, 0, j * sizeof *row);
        for (size_t k = j; k < d; k++) row[k] = col[d - 1 - k];
    }
    free(pan);
    return AQ_OK;
}

aq_status aq_coop_gptq_sweep(const aq_coop_grid *g, const aq_coop_factor *f, const size_t *perm,
                             const float *w_loc, size_t n_loc, const uint8_t *dead,
                             const float *scale, const float *zero, int bits, size_t block,
                             uint8_t *codes_loc, aq_error *err)
{
    size_t d = f->d, n = n_loc;
    if (block == 0) block = 128;
    if (block > d) block = d;
    /* the factor's rows are fetched several GPTQ blocks at a time (up to
     * FETCH_BYTES): each fetch is a round of broadcasts every member waits
     * for, so fewer, larger ones; the arithmetic, and the codes, do not change */
    size_t fetch = FETCH_BYTES / (d * sizeof(double)) / block * block;
    if (fetch < block) fetch = block;
    if (fetch > d) fetch = d;
    double *Wt = malloc((n ? n : 1) * d * sizeof *Wt), *Err = malloc((n ? n : 1) * block * sizeof *Err);
    double *up = malloc(fetch * d * sizeof *up);
    uint8_t *ct = malloc((n ? n : 1) * d);
    aq_status st = AQ_OK;
    if (!Wt || !Err || !up || !ct)
        st = aq_fail_nomem(err, "cooperative GPTQ sweep", (n * d + n * block + fetch * d) * 8 + n * d);
    for (size_t a = 0; st == AQ_OK && a < d; a++) {
        size_t c = perm[a];
        for (size_t r = 0; r < n; r++) Wt[a * n + r] = dead[c] ? 0.0 : w_loc[r * d + c];
    }
    for (size_t i1 = 0, f1 = 0, f2 = 0; st == AQ_OK && i1 < d; i1 += block) {
        size_t i2 = i1 + block < d ? i1 + block : d;
        if (i1 >= f2) { /* rows [f1, f2) of U: the next fetch */
            f1 = i1;
            f2 = f1 + fetch < d ? f1 + fetch : d;
            st = aq_coop_factor_rows(g, f, f1, f2, up, err);
        }
        if (st == AQ_OK && n > 0) aq_gptq_block(Wt, up + (i1 - f1) * d, d, n, i1, i2, scale, zero, bits, ct, Err);
    }
    for (size_t a = 0; st == AQ_OK && a < d; a++)
        for (size_t r = 0; r < n; r++) codes_loc[r * d + perm[a]] = ct[a * n + r];
    free(Wt);
    free(Err);
    free(up);
    free(ct);
    return st;
}
