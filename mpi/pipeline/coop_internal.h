/* coop_internal.h — INTERNAL to the cooperative path (coop_*.c and its test):
 * the helpers the files share. coop.h is the public API. */
#ifndef AQ_COOP_INTERNAL_H
#define AQ_COOP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "coop.h"

/* ScaLAPACK descriptor of an m x n matrix on the 1 x Q grid (local leading
 * dimension m). AQ_ERR_SHAPE beyond 32-bit dimensions. */
aq_status aq_coop_desc(const aq_coop_grid *g, size_t m, size_t n, int *desc, aq_error *err);
/* out_loc = rows_loc Cf in float32 (PSGEMM), as aq_coop_times_c. */
aq_status aq_coop_times_cf(const aq_coop_grid *g, size_t D, const float *cf_loc, size_t d_out,
                           const float *rows_loc, float *out_loc, aq_error *err);
/* Items of elem bytes distributed block-cyclically over n (local in loc, in
 * local order) -> glob [n * elem] in global order on every rank. */
aq_status aq_coop_allgather_rows(const aq_coop_grid *g, const void *loc, size_t n, size_t elem,
                                 void *glob, aq_error *err);

/* GPTQ on the local rows with the distributed factor (coop_gptq.c): the same
 * column sweep as aq_gptq (lazy batch updates of `block` columns), with the
 * factor's rows broadcast block by block. w_loc [n_loc, d] float rows,
 * dead[d] 1 for inputs with H_ii == 0, scale/zero [n_loc], codes_loc
 * [n_loc, d] out. Collective. */
aq_status aq_coop_gptq_sweep(const aq_coop_grid *g, const aq_coop_factor *f, const size_t *perm,
                             const float *w_loc, size_t n_loc, const uint8_t *dead,
                             const float *scale, const float *zero, int bits, size_t block,
                             uint8_t *codes_loc, aq_error *err);

#endif
