/* stage_capture.h — the streaming, P-independent capture of stage 1, shared
 * with the sequential pass (stage_sequential.c). */
#ifndef AQ_DIST_STAGE_CAPTURE_H
#define AQ_DIST_STAGE_CAPTURE_H

#include "../../src/model/capture.h"
#include "pipeline.h"

/* Load the model and the S x T calibration tokens (*tokens malloc'd). */
aq_status aq_pipe_load_calib(const aq_pipe_cfg *c, aq_model **m, int **tokens, aq_error *err);

typedef struct aq_cap_writer aq_cap_writer;

/* This rank's share of the calibration windows and their residual stream(s):
 * the fixed chunks of cfg.chunk_windows windows, a contiguous block of them
 * per rank (aq_dist_block_range), the same in every run whatever P. */
typedef struct aq_pipe_stream {
    size_t n_chunks, lo, hi; /* this rank's chunks [lo, hi) */
    int *owner;              /* [n_chunks] rank of each chunk */
    int w0, nw;              /* its windows [w0, w0 + nw) */
    size_t rows;             /* nw * seq_len */
    int dim;
    float *x;  /* [rows, dim] FP residual at the input of the next block */
    float *xq; /* sequential mode: the quantized upstream's, else NULL */
    /* capture objects kept from block to block (aq_capture_set_block), so their
     * large arrays are allocated once: one per own chunk (Grams' lower
     * triangles in whole storage), and the merged total (packed Grams) once
     * this rank has owned a block; other ranks' partials are added from their
     * bytes (aq_capture_merge_bytes) */
    aq_capture **part; /* [n_chunks], NULL for other ranks' chunks */
    aq_capture *total; /* NULL while the background writer holds it */
    /* the capture command's background statistics writer (stage_capture.c;
     * it writes the total during the next block's forward and hands it
     * back), NULL when the files are written in place */
    aq_cap_writer *writer;
} aq_pipe_stream;

/* Chunk ch's windows: the count, and the first in *w0. */
int aq_pipe_chunk(const aq_pipe_cfg *c, size_t ch, int *w0);

aq_status aq_pipe_stream_open(MPI_Comm comm, const aq_pipe_cfg *c, const aq_model *m, int seq, aq_pipe_stream *s,
                              aq_error *err);
void aq_pipe_stream_close(aq_pipe_stream *s);

/* Collective: capture block o->block_first (= block_last; or o->cross_block)
 * over this rank's chunks from its residual stream(s) (aq_capture_run_block:
 * one block forward), merge on owner_rank in chunk order, which writes
 * WORK/<sub>/ statistics files with fp; s->x then holds the next block's FP
 * input (s->xq is not advanced). */
aq_status aq_pipe_capture_block(MPI_Comm comm, const aq_pipe_cfg *c, aq_model *m, const int *tokens,
                                const aq_capture_opts *o, aq_pipe_stream *s, int owner_rank, const char *sub,
                                const aq_fingerprint *fp, aq_error *err);

/* Rows sampled per capture point: the setting when a menu option quantizes
 * activations (the only readers of the sample), else none. */
int aq_pipe_capture_sample_rows(const aq_pipe_cfg *c);

/* Residual checkpoints (stage_capture_resid.c): chunk's FP residual at the
 * input of block `block` (rows x dim) in WORK/resid/, fingerprinted fp. Load
 * errors: AQ_ERR_NOTFOUND, AQ_ERR_FORMAT naming the file and the fault. */
aq_status aq_resid_save(const char *work, size_t chunk, int block, const aq_fingerprint *fp, const float *x,
                        size_t rows, int dim, aq_error *err);
aq_status aq_resid_load(const char *work, size_t chunk, int block, const aq_fingerprint *fp, float *x, size_t rows,
                        int dim, aq_error *err);
/* Remove WORK/resid/ (the capture is complete). */
void aq_resid_remove(const char *work);

#endif
