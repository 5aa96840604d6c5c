/* block_fp.h — the residual stream at a block boundary for packed
 * sequences, FP or quantized, without the classifier: what block-wise tuning
 * (mpi/pipeline/stage_tune_block.c) needs as inputs and targets of a block. */
#ifndef AQ_BLOCK_FP_H
#define AQ_BLOCK_FP_H

#include "model.h"

/* Run blocks first..last (inclusive) of m, FP (quantized 0) or with its
 * overrides and norm overrides (quantized 1), on the packed sequences
 * (tokens/lens, n_seqs) starting from x_in [rows, dim] (the residual at the
 * input of block first; NULL = the embedding, first must be 0) and write the
 * residual after block last into y [rows, dim] (may alias x_in). last ==
 * first - 1 copies the start (x_in, or the embedding). Sequences are run in
 * batches of whole sequences up to max_rows rows (0 = 4096, at least the
 * longest), so the forward's scratch stays bounded. AQ_ERR_ARG for bad
 * blocks, plus the forward's. */
aq_status aq_block_run(aq_model *m, const int *tokens, const int *lens, int n_seqs, int first, int last,
                       int quantized, const float *x_in, float *y, size_t max_rows, aq_error *err);

#endif
