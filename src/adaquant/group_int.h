/* group_int.h — the row state, stored-value formula and fp16 step that group.c (wKgG and
 * the 32-weight ggml blocks) shares with group_k.c (the K-quants). Internal
 * to src/adaquant: not part of adaquant.h's API.
 *
 * The loss of one output row, with E = W~ - W^ over the D = d_in + 1 columns
 * (the bias last) and h = E C - Pm, changes by -2 delta.h_J + delta^T C_JJ
 * delta when the stored weights of the columns J change by delta (exact);
 * the move then updates h -= C_J^T delta and E_J -= delta. */
#ifndef AQ_GROUP_INT_H
#define AQ_GROUP_INT_H

#include <stddef.h>
#include <stdint.h>

#include "../quant/ggml_blocks.h"
#include "adaquant.h"
#include "layer_state.h"

typedef struct grp {
    const aq_layer_opts *o;
    const aq_ggml_format *f; /* the ggml type, NULL for wKgG */
    int kq;                  /* 1: a K-quant (f->block == 256) */
    size_t d_out, d_in, D, G, gs; /* gs: weights per group (the sub-block for K-quants) */
    int qmin, umax; /* block value q = u + qmin, u in [0, umax] */
    int has_m;      /* Q4_1 / Q5_1: W = q d + m; K-quants with mins: W = A q - B */
    aq_ls S;        /* Grams, target, Pm, k0, y2 */
    double *h, *E;  /* [D] of the current row */
    float *wq;      /* [d_in] the current row's stored weights */
    aq_ggml_block *kb; /* [d_in / 256] the current row's K-quant blocks */
} grp;

/* One stored weight from its code and its group's (scale, zero/min), with the
 * format's float32 arithmetic. K-quants: s = d * sc and z = dmin * mn of the
 * sub-block (both exact in float32), W = s q - z as ggml's dequantize_row_*. */
static inline float wval(const grp *g, int u, float s, float z)
{
    if (g->kq) return (float)(u + g->qmin) * s - z;
    if (g->o->ggml) return g->has_m ? (float)u * s + z : (float)(u + g->qmin) * s;
    return s * ((float)u - z);
}

/* fp16 neighbour of a representable value v (dir +1 away from zero, -1 toward). */
float aq_grp_fp16_step(float v, int dir);

/* K-quants (group_k.c). The RTN start of row r's blocks into g->kb and the
 * result arrays (codes u, sub-block s = d sc and z = dmin mn). */
aq_status aq_grp_k_rtn(grp *g, const float *w, uint8_t *u, float *s, float *z, aq_error *err);
/* One pass of moves over the row's super-blocks: each super-block's fp16
 * (d, dmin) refit in closed form with fp16 neighbours, then each sub-block's
 * integer (sc, mn); every move scored exactly. Returns the number accepted. */
int aq_grp_k_refit(grp *g, uint8_t *u, float *s, float *z);
/* aq_group_pack_row / aq_group_unpack_row for the K-quants: the result holds
 * each sub-block's effective s = d sc and z = dmin mn; packing finds the fp16
 * (d, dmin) and codes that give exactly those products (see group_k.c). */
aq_status aq_grp_k_pack_row(const aq_layer_result *r, size_t row, uint8_t *bytes, aq_error *err);
void aq_grp_k_unpack_row(aq_layer_result *r, size_t row, const uint8_t *bytes);

#endif
