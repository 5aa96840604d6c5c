/* coop.h — the cooperative path (issue 14, item 1): one AdaQuant (layer,
 * option) problem solved by the Q ranks of a sub-communicator together, on a
 * 1 x Q BLACS grid, for layers whose Gram (and GPTQ's Hessian) outgrow one
 * rank. docs/COOP.md has the data distribution, the block size choice and the
 * memory per rank.
 *
 * Layout (all block-cyclic over the Q process columns, block nb):
 *  - the Gram G (D x D, D = d_in + 1, ones column last) by columns;
 *  - the layer's rows: rank c holds the rows r with (r / nb) % Q == c, whole,
 *    so rounding, Adam and keep-best are per-row work without communication;
 *    as ScaLAPACK matrices they are the columns of W^T (D x d_out);
 *  - the products E C are one PDGEMM (C E^T, C symmetric) per iteration,
 *    GPTQ's Cholesky factor of the inverse Hessian PDPOTRF + PDTRTRI.
 * The result depends only on the problem, the options, Q and nb: never on
 * which ranks form the sub-communicator or on the total rank count P.
 *
 * What it runs (aq_layer_run's algorithm, stated in docs/COOP.md): parallel
 * mode at a16 (B = C = A), the MSE grid, RTN and GPTQ baselines, GPTQ init,
 * multi-start, exact polishing (against a replicated Gram), Adam with STE and
 * per-row keep-best (eval_every). Not yet: quantized activations, sequential
 * Grams (clear errors). */
#ifndef AQ_COOP_H
#define AQ_COOP_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "../../common/status.h"
#include "../../src/adaquant/adaquant.h"

enum { AQ_COOP_NB_DEFAULT = 64 };

/* A 1 x Q BLACS grid on a sub-communicator. */
typedef struct aq_coop_grid {
    MPI_Comm comm; /* the sub-communicator (borrowed, not freed) */
    int q;         /* its size = the grid's process columns */
    int me;        /* this rank's process column (= its rank in comm) */
    int nb;        /* block size */
    int ctxt;      /* BLACS context */
    int sys;       /* BLACS system handle of comm */
} aq_coop_grid;

/* Split comm into groups of q consecutive ranks (color rank / q); ranks past
 * the last full group get MPI_COMM_NULL. AQ_ERR_ARG when q < 1 or q > size. */
aq_status aq_coop_split(MPI_Comm comm, int q, MPI_Comm *sub, aq_error *err);

/* Collective over sub: build the grid (nb >= 1). BLACS must be usable: MPI
 * initialised; call Cblacs_exit(1) before MPI_Finalize. */
aq_status aq_coop_grid_init(aq_coop_grid *g, MPI_Comm sub, int nb, aq_error *err);
void aq_coop_grid_free(aq_coop_grid *g);

/* Block-cyclic bookkeeping of a dimension of n items over the grid. */
int aq_coop_owner(const aq_coop_grid *g, size_t i);     /* process column of item i */
size_t aq_coop_nlocal(const aq_coop_grid *g, size_t n, int col); /* items of column col */
size_t aq_coop_global(const aq_coop_grid *g, size_t l); /* global index of local item l of me */

/* The summed Gram of a layer's inputs, distributed by columns. */
typedef struct aq_coop_gram {
    size_t D;        /* d_in + 1 */
    size_t ncols;    /* local columns */
    double *loc;     /* [ncols][D]: local column l = global column aq_coop_global(l) */
    uint64_t n_tokens;
    int normalised;  /* 0: sums over n_tokens rows; 1: divided by n_tokens (aq_coop_gram_normalise) */
} aq_coop_gram;

/* Redistribution of a captured Gram: gram_sum [D * D] row-major (summed over
 * n_tokens rows, aq_gram_accumulate) replicated on every rank; each rank keeps
 * its columns. */
aq_status aq_coop_gram_from_global(const aq_coop_grid *g, const double *gram_sum, size_t d_in,
                                   uint64_t n_tokens, aq_coop_gram *out, aq_error *err);
/* Assembly from distributed rows with PDSYRK: x_loc [n_loc, d_in] row-major are
 * the rows t of the n_total calibration rows with aq_coop_owner(t) == me, in
 * increasing t (n_loc = aq_coop_nlocal(n_total, me)). Collective. */
aq_status aq_coop_gram_from_rows(const aq_coop_grid *g, const float *x_loc, size_t n_total,
                                 size_t d_in, aq_coop_gram *out, aq_error *err);
void aq_coop_gram_free(aq_coop_gram *gr);
/* Divide by n_tokens in place (once; the run does it): C = A = G / N, the
 * normalised Gram of docs/ADAQUANT.md, computed as aq_layer_run does. */
void aq_coop_gram_normalise(aq_coop_gram *gr);

/* One problem. weight [d_out, d_in] row-major: only the rows this rank owns
 * (aq_coop_owner(r) == me) are read, so a caller may map the file or fill only
 * those rows. bias [d_out] or NULL (replicated). */
typedef struct aq_coop_problem {
    const char *name;
    size_t d_out, d_in;
    const float *weight;
    const float *bias;
    aq_coop_gram *gram; /* normalised in place by the run */
} aq_coop_problem;

/* Per-phase wall times of a run (seconds), this rank's CPU seconds of the same
 * phases (getrusage: user + system; on a shared machine the wall time depends
 * on the other jobs, the CPU time much less) and the local rows. */
typedef struct aq_coop_stats {
    double t_setup, t_gptq, t_adam, t_total;
    double c_setup, c_gptq, c_adam, c_total;
    size_t rows_local;
} aq_coop_stats;

/* Collective over the grid: run AdaQuant on the problem. Every rank gets the
 * whole result in *out (free with aq_layer_result_free); identical on all
 * ranks. stats may be NULL. Errors (identical on every rank): AQ_ERR_ARG
 * (options the path does not run yet), AQ_ERR_SHAPE (a shape the grid cannot
 * hold: a rank without rows, sizes beyond ScaLAPACK's int), AQ_ERR_NUMERIC,
 * AQ_ERR_NOMEM, AQ_ERR_MPI. Messages name the layer. */
aq_status aq_coop_layer_run(const aq_coop_grid *g, const aq_coop_problem *p,
                            const aq_layer_opts *o, aq_layer_result *out, aq_coop_stats *stats,
                            aq_error *err);

/* 1 when the path runs these options (a16 today), 0 otherwise: the scheduler
 * keeps the other tasks single-rank. */
int aq_coop_runs_option(const aq_layer_opts *o);

/* --- the distributed pieces, exposed for the tests --- */

/* GPTQ's factor: U upper with U^T U = P^-1, P = H[perm][perm] + damp mean(diag) I,
 * H = the normalised Gram without its ones row/column (dead inputs H_ii = 1),
 * the damping retried x10 up to 3 times as aq_gptq does. Computed as J V^-1 J
 * with J P J = V^T V (PDPOTRF 'U' on the reversed permuted matrix, then
 * PDTRTRI): the stored matrix is V^-1, d x d, distributed like the Gram.
 * Requires a normalised Gram. Collective. */
typedef struct aq_coop_factor {
    size_t d, ncols;
    double *loc; /* [ncols][d] local columns of V^-1 (column-major), U(i,k) = V^-1(d-1-k, d-1-i) */
    double damp_used;
} aq_coop_factor;
aq_status aq_coop_inverse_factor(const aq_coop_grid *g, const aq_coop_gram *gr, const size_t *perm,
                                 double damp, aq_coop_factor *f, aq_error *err);
void aq_coop_factor_free(aq_coop_factor *f);
/* Rows [i1, i2) of U into up [(i2 - i1) * d] row-major (collective: broadcasts). */
aq_status aq_coop_factor_rows(const aq_coop_grid *g, const aq_coop_factor *f, size_t i1, size_t i2,
                              double *up, aq_error *err);

/* out_loc [n_loc, D] = rows_loc [n_loc, D] C for the local rows (row-major),
 * C the (normalised) Gram: one PDGEMM C R^T. Collective. */
aq_status aq_coop_times_c(const aq_coop_grid *g, const aq_coop_gram *gr, size_t d_out,
                          const double *rows_loc, double *out_loc, aq_error *err);

#endif
