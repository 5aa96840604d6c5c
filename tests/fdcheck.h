/* fdcheck.h — the one finite-difference gradient check of the C tests.
 *
 * A test compares an analytic derivative g with a difference quotient of the
 * function it claims to differentiate. Two things make such a quotient lie,
 * and the check handles both instead of widening a tolerance until it passes:
 *
 *  - A rounding decision inside the stencil. When f depends on integer codes
 *    (rounded weights, activation codes, clamp flags), a stencil point on the
 *    other side of a rounding boundary sees a jump, and the quotient measures
 *    the jump, not the slope. The caller supplies a fingerprint of every
 *    integer decision f depends on; the check recomputes it at each stencil
 *    point and, when any differs from the base point's, halves h (the
 *    decisions are piecewise constant, so a small enough stencil stays in the
 *    base point's cell) and, if that does not help, moves to the next
 *    candidate parameter. It never reports such a probe as a failure.
 *
 *  - Evaluation noise. A float32 network's loss carries rounding noise of a
 *    few float32 ulps of its value, which changes pseudo-randomly with any
 *    perturbation of the inputs. A quotient divides it by h. aq_fd_noise
 *    measures it (the standard deviation of one evaluation, from fourth
 *    differences on a tiny grid, as in Moré and Wild's ECnoise) and the
 *    tolerance grows by AQ_FD_NOISE_Z standard deviations of the quotient's
 *    noise: sigma * sqrt(sum of squared stencil weights) / h. With noise 0
 *    (a float64 reference) the tolerance is exactly rel * |fd| + abs.
 */
#ifndef AQ_FDCHECK_H
#define AQ_FDCHECK_H

#include <stddef.h>
#include <stdint.h>

/* The function to differentiate, read at the current value of the
 * parameters (the check writes the probed parameter in place and restores it). */
typedef struct aq_fd_fun {
    double (*f)(void *ctx);
    /* A fingerprint (aq_fd_hash) of every integer decision f depends on at the
     * current parameter values, recomputed from them; NULL when f has none
     * (the call site says why: a frozen surrogate, codes held fixed). */
    uint64_t (*codes)(void *ctx);
    void *ctx;
} aq_fd_fun;

/* How many standard deviations of the quotient's noise the tolerance allows:
 * 4 sigma of a normal tail (a false failure once in ~16,000 probes), times
 * 1.25 for sigma being an estimate from a few dozen fourth differences (its
 * relative spread is about 1/sqrt(2n), 13% at n = 30, so 1.25 is two spreads). */
#define AQ_FD_NOISE_Z 5.0

typedef struct aq_fd_opts {
    int order;        /* 2: (f(x+h) - f(x-h)) / 2h, truncation h^2 f'''/6;
                         4: (f(x-2h) - 8 f(x-h) + 8 f(x+h) - f(x+2h)) / 12h, truncation h^4 f^(5)/30 */
    double h;         /* the starting step */
    int max_halvings; /* how often h may be halved to keep the stencil in one code cell */
    double noise;     /* standard deviation of one evaluation of f (aq_fd_noise); 0 = none */
    double rel, abs;  /* |g - fd| <= rel |fd| + abs + noise term; the call site says where rel and abs come from */
} aq_fd_opts;

typedef enum aq_fd_verdict { AQ_FD_PASS, AQ_FD_FAIL, AQ_FD_STRADDLE } aq_fd_verdict;

typedef struct aq_fd_probe {
    aq_fd_verdict verdict;
    int index;       /* the candidate finally probed (aq_fd_check_near) */
    int moved;       /* candidates skipped because every step straddled a boundary */
    int halvings;    /* times h was halved at the probed candidate */
    double h;        /* the step used */
    double fd;       /* the difference quotient */
    double g;        /* the analytic value it was compared with */
    double noise_tol; /* the noise term of the tolerance */
    double tol;      /* the whole tolerance */
} aq_fd_probe;

/* FNV-1a over n bytes, chained from h (start with AQ_FD_HASH0): fingerprints
 * of code arrays for aq_fd_fun.codes. */
#define AQ_FD_HASH0 0xcbf29ce484222325ull
uint64_t aq_fd_hash(uint64_t h, const void *data, size_t n);

/* The derivative of fn in *p at its current value, compared with g. The step
 * starts at o->h and is halved (at most o->max_halvings times) while a stencil
 * point's code fingerprint differs from the base point's; AQ_FD_STRADDLE if it
 * still does. *p is restored exactly. out (may be NULL) gets the details. */
aq_fd_verdict aq_fd_check(const aq_fd_fun *fn, double *p, double g, const aq_fd_opts *o, aq_fd_probe *out);

/* aq_fd_check on candidate parameters p[k] with analytic derivatives g[k],
 * k = 0 .. n-1 in order, up to the first whose stencil stays in one code cell
 * (a probe across a rounding boundary moves to the next candidate).
 * AQ_FD_STRADDLE only if every candidate straddles. */
aq_fd_verdict aq_fd_check_near(const aq_fd_fun *fn, double *const *p, const double *g, int n, const aq_fd_opts *o,
                               aq_fd_probe *out);

/* The standard deviation of one evaluation of fn, pooled over the parameters
 * p[0..n-1]: f at *p + k delta, k = -2..2, whose fourth difference is
 * delta^4 f'''' plus noise of variance 70 sigma^2 (70 = 1+16+36+16+1, the
 * squared weights). delta must be small enough that delta^4 f'''' is far below
 * the noise, and large enough that the perturbation reaches f's inputs (a
 * step below their float resolution sees no noise at all). Grids that cross a
 * code boundary are skipped. *n_used (may be NULL) gets the number of grids
 * pooled; 0 gives 0. */
double aq_fd_noise(const aq_fd_fun *fn, double *const *p, int n, double delta, int *n_used);

/* One line describing a failed or moved probe, for the test's output. */
void aq_fd_print(const char *what, const aq_fd_probe *pr);

#endif
