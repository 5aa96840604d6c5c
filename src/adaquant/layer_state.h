/* layer_state.h — INTERNAL to src/adaquant (and its tests): the working state
 * of one AdaQuant problem in the Gram form, and the steps that act on it.
 *
 * Notation (docs/ADAQUANT.md): D = d_in + 1; W~ = [W b] the target, W^ = [Q_w(V) b']
 * the quantized layer, E = W~ - W^ (the error, d_out x D). With the Grams
 * normalised by N, K = A - B - B^T + C and M = C - B:
 *   loss_r = k0_r - 2 Pm_r . E_r + E_r C E_r^T,   k0_r = W~_r K W~_r^T, Pm = W~ M,
 *   dloss/dW^ = 2 (Pm - E C).
 * Writing the loss in E (instead of W^) keeps it accurate when it is tiny
 * (no cancellation of ||Y||^2-sized terms; in parallel a16 mode K = 0, Pm = 0).
 * Rows are independent problems: everything row-wise is exact per row. */
#ifndef AQ_LAYER_STATE_H
#define AQ_LAYER_STATE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/status.h"
#include "adaquant.h"

/* Round half to even, exactly nearbyint() under the default rounding mode,
 * without the libm call (x86-64 without SSE4.1 has no inline instruction):
 * adding and subtracting 1.5 * 2^52 rounds any |x| < 2^51 to an integer. */
static inline double aq_rint(double x)
{
    const double big = 6755399441055744.0; /* 1.5 * 2^52 */
    if (!(fabs(x) < 2251799813685248.0)) return x; /* |x| >= 2^51: already integral (or NaN) */
    return (x + big) - big; /* not folded: C without -ffast-math keeps both roundings */
}

/* Per-tensor activation fake-quantizer (bits >= 16: identity).
 * scale and zero are float because float32 is what is stored (qlayer.h) and
 * what aq_actq_apply uses; the type itself does the rounding. Keeping them
 * as doubles rounded by `q->scale = (float)q->scale; q->zero = (float)q->zero;`
 * is NOT safe: GCC 12.2 -O2 (Debian 12.2.0-14) SLP-vectorises the two
 * adjacent stores and drops both double->float->double conversions (a
 * miscompile; the ASan build is not vectorised and did round), so the normal
 * and sanitizer builds gave different a8 bytes. */
typedef struct aq_actq {
    int bits;
    float scale, zero;
    double qmax;
} aq_actq;

/* Same quantizer (field by field: the struct has padding, so never memcmp it). */
static inline int aq_actq_same(const aq_actq *a, const aq_actq *b)
{
    return a->bits == b->bits && a->scale == b->scale && a->zero == b->zero && a->qmax == b->qmax;
}

/* Exactly the stored formula in float32 (qlayer.h), so that the optimised
 * loss is the loss of what the engine runs; scale and zero are kept
 * float-representable by the optimiser. */
/* nearbyintf(v) in the default rounding mode (round half even), inline: the
 * libm call was most of the activation fake-quant's time (it runs for every
 * input element at every activation-range step; generic x86-64 builds have no
 * roundss). Adding and removing 1.5 * 2^23 rounds exactly for |v| < 2^22
 * (the sum stays below 2^24, where floats are spaced by 1); copysignf restores
 * nearbyintf's -0 for -0.5 <= v < 0. NaN and |v| >= 2^22 take the libm path. Not folded: C
 * without -ffast-math keeps both roundings. */
static inline float aq_nearbyintf(float v)
{
    if (!(fabsf(v) < 4194304.f)) return nearbyintf(v);
    return copysignf((v + 12582912.f) - 12582912.f, v);
}

static inline double aq_actq_apply(const aq_actq *q, float x)
{
    float s = q->scale, z = q->zero, qm = (float)q->qmax;
    float t = aq_nearbyintf(x / s) + z; /* round half even (default rounding mode) */
    if (t < 0) t = 0;
    if (t > qm) t = qm;
    return (double)(s * (t - z));
}

/* Gram accumulation with optional on-the-fly activation fake-quant (gram.c). */
aq_status aq_gram_acc_q(double *gram, const float *x, size_t n, size_t d, const aq_actq *aq,
                        aq_error *err);
aq_status aq_gram_acc_cross_q(double *gram, const float *x, const float *y, size_t n, size_t d,
                              const aq_actq *aq, aq_error *err);

typedef struct aq_ls {
    size_t d_out, d_in, D;
    int bits, sym;
    double qmax, zsym;   /* zsym: the fixed zero of symmetric grids */
    /* Grams normalised by N, D x D. B, C alias A when bc_alias. */
    double *A, *B, *C;
    int bc_alias;
    float *Cf;           /* float32 copy of C for the per-iteration gemm */
    double *Wt;          /* [d_out, D] target [W b] */
    double *Pm;          /* [d_out, D] W~ (C - B) */
    double *T;           /* [d_out, D] W~ B (the constant part of the gradient) */
    double *k0;          /* [d_out] */
    double y2;           /* ||Y||^2 / N = sum_r W~_r A W~_r^T */
    double xrms;         /* sqrt(mean_c C_cc), c < d_in */
    /* the quantized layer */
    float *V;            /* [d_out, d_in] continuous weights (Adam) */
    uint8_t *u;          /* [d_out, d_in] codes */
    double *s, *z, *bq;  /* [d_out] scale, zero, bias' */
    /* scratch */
    double *E, *EC;      /* [d_out, D] */
    float *Ef, *ECf;     /* [d_out, D] */
} aq_ls;

/* Allocate a state for W [d_out, d_in] (+ bias or NULL). Grams not yet set. */
aq_status aq_ls_new(aq_ls *S, size_t d_out, size_t d_in, int bits, int sym, const float *W,
                    const float *bias, aq_error *err);
void aq_ls_free(aq_ls *S);
/* Take normalised Grams (ownership of A, B, C moves to S; B == C == A allowed
 * and means parallel a16) and recompute Cf, Pm, k0, y2, xrms. */
aq_status aq_ls_set_grams(aq_ls *S, double *A, double *B, double *C, aq_error *err);

/* Codes from V: u = clamp(rint(V/s + z), 0, qmax). */
void aq_ls_codes_from_v(aq_ls *S);
/* V = s (u - z) (grid centres of the current codes). */
void aq_ls_v_from_codes(aq_ls *S);
/* E = W~ - [s(u - z) b'] in float64. */
void aq_ls_error(aq_ls *S);
/* Exact loss (normalised by y2) of the current (u, s, z, bq); fills E and EC
 * (float64 gemm); loss_r[d_out] optional. */
double aq_ls_loss(aq_ls *S, double *loss_r);

/* Gradients (of the normalised loss) wrt V [d_out*d_in], s, z, b' [d_out] at
 * the current (V, s, z, bq) under the STE/LSQ rules (docs/ADAQUANT.md):
 * unclamped: dV = G, ds = G (u - z - V/s), dz = 0; clamped: dV = 0,
 * ds = G (u - z), dz = -G s. G = dloss/dW^ from the Grams (f32: float32 gemm).
 * Also sets u. gz is all-zero when symmetric. */
void aq_ls_grad(aq_ls *S, int f32, double *G, float *gV, double *gs, double *gz, double *gb);
/* The elementwise part only, from a given G [d_out, D]. */
void aq_ls_grad_from_G(aq_ls *S, const double *G, float *gV, double *gs, double *gz, double *gb);

/* Exact polishing (polish.c): per row, closed-form least-squares refit of
 * (scale, zero, bias') given the codes, then greedy +-1 code moves with the
 * exact loss change, alternated `passes` times. Never increases any row's loss. */
void aq_ls_polish(aq_ls *S, int passes);

/* Adam over (V, s, z, b') (adam.c). The moments persist across calls so the
 * driver can run it in chunks between exact-loss evaluations. */
typedef struct aq_adam_cfg {
    int f32;
    double lr_w, lr_s, lr_z, lr_b;
    /* rows mode (x != NULL): mini-batches of the rows (x target, xin quantized input) */
    const float *x, *xin;
    size_t n_rows, batch;
    const aq_actq *aq;
    /* Gram mode: when set, computes S->EC = S->E C (f32 = 0) or S->ECf = S->Ef Cf
     * (f32 = 1) instead of the local gemm with S->C / S->Cf (the cooperative
     * path's distributed product; it records its own failures in ctx). */
    void (*product)(void *ctx, aq_ls *S, int f32);
    void *product_ctx;
} aq_adam_cfg;
typedef struct aq_adam {
    float *mV, *vV;                 /* [d_out*d_in] */
    double *ms, *vs, *mz, *vz, *mb, *vb; /* [d_out] */
    double *G;                      /* [d_out*D] */
    float *aux;                     /* [d_out*d_in] fused step: LSQ factor per element */
    uint8_t *clampm;                /* [d_out*d_in] fused step: 1 = clamped */
    float *gV;
    double *gs, *gz, *gb;
    long t;                         /* steps taken */
    size_t *perm, cursor;           /* rows mode: seeded row order */
    double *xd, *xqd, *R;           /* rows mode: widened batch [batch, D] x2, residual [batch, d_out] */
} aq_adam;
aq_status aq_adam_new(aq_adam *a, const aq_ls *S, const aq_adam_cfg *cfg, uint64_t seed,
                      aq_error *err);
void aq_adam_free(aq_adam *a);
/* Reset the moments (after the parameters were changed by polishing). */
void aq_adam_reset(aq_adam *a, const aq_ls *S);
/* iters Adam steps; leaves u = codes of the final V. */
void aq_adam_run(aq_ls *S, aq_adam *a, const aq_adam_cfg *cfg, int iters);

/* The optimisation schedule, shared by layer.c and the cooperative
 * mpi/pipeline/coop_run.c so that both run the same iterations (and so write
 * the same bytes). Multi-start k scales the initial grid by 1, 0.95, 1.05,
 * 0.9, 1.1, ... */
static inline double aq_start_factor(int k)
{
    return 1.0 + 0.05 * (double)((k + 1) / 2) * (k % 2 ? -1.0 : 1.0);
}
/* Adam runs in one segment per polishing round (at least one); the iterations
 * are split evenly, the first iters % rounds segments taking one more. */
static inline int aq_adam_rounds(const aq_layer_opts *o)
{
    return o->polish_rounds > 0 ? o->polish_rounds : 1;
}
static inline int aq_adam_segment(const aq_layer_opts *o, int rounds, int k)
{
    return o->iters / rounds + (k < o->iters % rounds ? 1 : 0);
}
/* Iterations between two evaluations of the best iterate. */
static inline int aq_adam_eval_every(const aq_layer_opts *o)
{
    return o->eval_every > 0 ? o->eval_every : 10;
}

/* Activation quantizer (actq.c). */
/* MSE-fit (scale, zero) of an asymmetric per-tensor quantizer on rows x. */
void aq_actq_fit(aq_actq *q, int bits, const float *x, size_t n, size_t d);
/* Gradient of the normalised loss wrt (a_scale, a_zero) over rows
 * (x target, xin quantized input) at the current quantized weights of S
 * (STE/LSQ as for weights). */
aq_status aq_actq_grad(aq_ls *S, const aq_actq *q, const float *x, const float *xin,
                       size_t n, double *g_scale, double *g_zero, aq_error *err);

/* Adam moments of the outer activation loop (zero-initialise). */
typedef struct aq_actq_adam {
    double ms, vs, mz, vz;
} aq_actq_adam;
/* One outer step t (>= 1) from the loss gradients: scale *= exp(-lr * dir_s)
 * with dir_s the bias-corrected Adam direction of g_scale * scale, zero -=
 * lr * qmax * dir_z (direction of g_zero); a zero second moment gives a zero
 * direction. The new values are stored as float32. */
void aq_actq_step(aq_actq *q, aq_actq_adam *m, double g_scale, double g_zero, double lr, int t);

/* Build normalised Grams from rows: A from x; B, C from (x, Q_a(xin)).
 * When xin == x and q is NULL/16 bits, B = C = A (aliased). */
aq_status aq_grams_from_rows(const float *x, const float *xin, size_t n, size_t d,
                             const aq_actq *q, double **A, double **B, double **C, aq_error *err);
/* The same with A already known (a_known: a normalised A of an earlier call
 * on the same x, which does not depend on q; NULL: computed): the outer
 * activation steps rebuild only B and C. */
aq_status aq_grams_from_rows_a(const float *x, const float *xin, size_t n, size_t d,
                               const aq_actq *q, const double *a_known, double **A, double **B,
                               double **C, aq_error *err);

/* Aligned view of a problem (align.c): *out = *in, except that every array
 * whose address is not a multiple of its element size (4 for float, 8 for
 * double) points to an aligned malloc'd copy, recorded in owned (caller's
 * array of AQ_PROBLEM_ARRAYS; free with aq_problem_align_free, also on
 * error). AQ_ERR_SHAPE when the sizes overflow, AQ_ERR_NOMEM. */
enum { AQ_PROBLEM_ARRAYS = 9 };
aq_status aq_problem_align(const aq_layer_problem *in, aq_layer_problem *out, void **owned, aq_error *err);
void aq_problem_align_free(void **owned);

/* Check a problem and its options (validate.c): feed, shapes, NaN/Inf. */
aq_status aq_layer_validate(const aq_layer_problem *p, const aq_layer_opts *o, aq_error *err);

/* splitmix64 step (options.c). */
uint64_t aq_splitmix64(uint64_t *state);

#endif
