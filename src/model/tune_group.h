/* tune_group.h — the group-format layers of global tuning (tune.h, docs/TUNE.md
 * "Group and block formats"): for a layer in a group format (wKgG, the ggml
 * 32-blocks Q4_0..Q8_0, the K-quants Q2_K..Q6_K) one log-scale per group
 * (block, or K-quant sub-block) and, where the format has one, an additive
 * min parameter; their gradient summed over each group's weights with the
 * integer codes fixed; and the re-quantization of the tuned values to what
 * the format stores (fp16 d and m; for the K-quants the integer sub-block
 * scale and min codes under fp16 d and dmin). No MPI. */
#ifndef AQ_TUNE_GROUP_H
#define AQ_TUNE_GROUP_H

#include "../adaquant/adaquant.h"

/* Tuning state of one group-format layer. */
typedef struct aq_tune_grp {
    size_t n, gs;      /* groups (d_out * aq_result_groups), weights per group */
    int kq;            /* a K-quant: nsub sub-blocks per 256-weight super-block */
    int nsub, qmin;    /* K-quants: sub-blocks per super-block; the ggml types: q = code + qmin */
    int has_zero;      /* the min is tuned: Q4_1 / Q5_1 m, Q2_K / Q4_K / Q5_K dmin * mn */
    double zsign;      /* dW/dz: +1 (W = q d + m), -1 (W = q d sc - dmin mn) */
    int wkg;           /* wKgG: W = s (u - z), z an integer zero point (kept) */
    int sclo, schi, mnhi; /* K-quants: ranges of the sub-block scale and min codes */
    float *s0, *z0;    /* [n] the calibrated scale and min (or zero point) of each group */
    float *d0, *m0;    /* K-quants [n / nsub]: each super-block's calibrated fp16 d and dmin */
} aq_tune_grp;

/* The state of v (a group format: v->group > 0) at its calibrated values.
 * AQ_ERR_ARG if v's stored values do not pack (aq_group_pack_row), AQ_ERR_NOMEM. */
aq_status aq_tune_grp_init(const aq_layer_result *v, aq_tune_grp *g, aq_error *err);
void aq_tune_grp_free(aq_tune_grp *g);

/* The parameters into v's w_scale / w_zero: per group s = s0 exp(theta),
 * z = z0 + |s0| zeta (zeta in code units, as a per-row zero point; the min
 * is fixed where has_zero is 0). requant: rounded to the format's stored
 * precision (then aq_group_pack_row stores them exactly); 0: the continuous
 * values (the gradient check). */
void aq_tune_grp_set(const aq_tune_grp *g, const double *theta, const double *zeta, int requant,
                     aq_layer_result *v);

/* dKL/dtheta and dKL/dzeta of each group from the weight gradient dw
 * [d_out * d_in] at v's current values (straight through the rounding). */
void aq_tune_grp_grad(const aq_tune_grp *g, const aq_layer_result *v, const float *dw, double *gtheta,
                      double *gzeta);

/* One K-quant super-block: the targets t[ns] as fl(D * c[k]) with D an fp16
 * and c[k] integers in [lo, hi], the best in sum (t - D c)^2 among D = dcur
 * (the calibrated one) and D = fp16(t_max / hi), fp16(t_max / lo); into
 * out[ns] (the stored values, exact in float32), *d16 (fp16 bits) and codes. */
void aq_tune_requant_sub(const float *t, int ns, int lo, int hi, float dcur, float *out, uint16_t *d16, int *codes);

#endif
