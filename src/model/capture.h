/* capture.h — per-layer input statistics for AdaQuant, collected by running the
 * FP (or partly quantized) model over calibration windows.
 *
 * Per capture point (block, point) — see model.h: 4 points per block feed the
 * 7 linears; the classifier input (block n_layers, AQ_CAP_HEAD) on request:
 *   gram  A = [X 1]^T [X 1]   float64 (d+1)^2, row-major, ones column LAST;
 *   xmin/xmax                 per-channel input min / max (float32, [d]);
 *   sample                    up to sample_rows input rows, chosen by a
 *                             bottom-k hash of (window, position): the rows with
 *                             the smallest hash64(seed, window, position). The
 *                             choice depends neither on batching nor on how
 *                             windows are split over processes; rows are kept
 *                             sorted by (window, position).
 * Sequential mode (opts.cross_block = b): the model runs twice per batch, FP
 * and with its overrides (quantized upstream), and block b's points also get
 *   cross B = [X 1]^T [Xq 1], gram_q C = [Xq 1]^T [Xq 1], xq min/max and the
 *   sampled Xq rows (same (window, position) as the X sample),
 * with X the FP input and Xq the input the partly quantized model produces
 * (before the layer's own activation fake-quantiser).
 *
 * Gram precision: each float32 row is widened to float64 and the products
 * summed with BLIS dsyrk/dgemm (float32 x float32 products are exact in
 * float64), so the only error is float64 summation: measured relative error
 * (Frobenius) vs a long-double reference <= 6e-16 on stories260K, all points
 * (tests/test_model_capture.c, docs/ENGINE.md).
 *
 * Distribution: float64 sums are not associative, so for results independent
 * of the process count compute ONE aq_capture per FIXED chunk of windows
 * (e.g. 8 windows, the same in every run) and combine the chunks with
 * aq_capture_merge in chunk order (rank 0 receives chunk 0, 1, 2, ...), then
 * aq_capture_mirror once. aq_capture_pack/unpack turn a partial into bytes for
 * MPI (the symmetric Grams as their lower triangles). The sample merge
 * (bottom-k) and min/max are order-independent.
 *
 * Ownership: aq_capture owns all its arrays. Not thread-safe per object. */
#ifndef AQ_CAPTURE_H
#define AQ_CAPTURE_H

#include <stdint.h>

#include "model.h"

/* Default byte bound of one point's row sample: 64 MiB keeps 8192 rows up to
 * d = 2047 and ~5950 rows of a d = 2816 MLP input (a rank holds one block's 4
 * points while it captures). */
#define AQ_CAPTURE_SAMPLE_BYTES ((size_t)64 << 20)

typedef struct aq_capture_opts {
    int block_first, block_last; /* blocks to capture (inclusive); -1,-1 = all; an empty
                                    range (first = last + 1) + head = classifier only */
    int points_mask;             /* bit p = capture point p (default all 4 = 0xF) */
    int head;                    /* also capture the classifier input */
    int sample_rows;             /* rows kept per point (0 = none); default 1024 */
    size_t sample_bytes;         /* and at most this many bytes of sampled rows per point
                                    (d floats + 8 bytes of ids a row, twice the floats in
                                    sequential mode): default AQ_CAPTURE_SAMPLE_BYTES; 0 = no bound */
    uint64_t seed;               /* sample hash seed; default 0 */
    int cross_block;             /* -1: off; b: sequential mode statistics for block b
                                    (requires overrides upstream; also restricts the
                                    capture to block b) */
    int batch_windows;           /* windows per forward batch; default 8 */
    /* Storage of the symmetric Grams A and C (the streaming capture's, to hold
     * each block's statistics once; docs/MEMORY.md):
     * lower_only: a partial whose Grams keep their lower triangles only: the
     *   runs do not mirror them and a reset zeroes only them, so the upper
     *   halves are never written (nor made resident); what aq_capture_merge
     *   and aq_capture_pack read. aq_capture_mirror completes them on request.
     * packed: a merge target (aq_capture_merge, aq_capture_merge_bytes,
     *   aq_capture_unpack) that stores them as packed lower triangles,
     *   (d+1)(d+2)/2 doubles, row i holding columns 0..i: half the bytes, the
     *   layout of the wire and of the statistics files. Cannot run a forward. */
    int lower_only, packed;
} aq_capture_opts;

/* Defaults as documented above. */
void aq_capture_opts_default(aq_capture_opts *o);

/* Statistics of one capture point (all arrays owned by the aq_capture). */
typedef struct aq_capstat {
    int block;
    aq_cap_point point;
    int d;
    uint64_t n_rows;    /* rows accumulated */
    int packed;         /* 1: gram and gram_q are packed lower triangles (opts.packed) */
    double *gram;       /* (d+1)^2, or (d+1)(d+2)/2 packed */
    float *xmin, *xmax; /* [d]; +inf/-inf before any row */
    int n_sample;       /* <= sample_cap */
    int sample_cap;
    float *sample;        /* [n_sample, d] */
    uint32_t *sample_win; /* [n_sample] window index */
    uint32_t *sample_pos; /* [n_sample] position in the window */
    /* sequential mode only (NULL otherwise) */
    double *cross;          /* B (d+1)^2 */
    double *gram_q;         /* C (d+1)^2 */
    float *xq_min, *xq_max; /* [d] */
    float *sample_q;        /* [n_sample, d] */
} aq_capstat;

typedef struct aq_capture aq_capture;

/* Empty statistics for model m's geometry and the chosen points. *out owned by
 * the caller (aq_capture_free). AQ_ERR_ARG for a bad block range / option. */
aq_status aq_capture_new(const aq_model *m, const aq_capture_opts *o, aq_capture **out,
                         aq_error *err);
void aq_capture_free(aq_capture *c);
/* Zero the statistics (keep the configuration), for the next chunk. */
void aq_capture_reset(aq_capture *c);
/* Make a one-block capture (block_first = block_last, no classifier; cross mode
 * follows) capture block `block` instead, zeroed: the streaming capture reuses
 * its objects (and their memory) from block to block. AQ_ERR_ARG otherwise. */
aq_status aq_capture_set_block(aq_capture *c, int block, aq_error *err);

/* Accumulate windows [first_window, first_window + n_windows): tokens holds
 * n_windows * T ids (window w at tokens[(w - first_window) * T]). Windows are
 * run in batches of opts.batch_windows. Errors from the forward (bad token). */
aq_status aq_capture_run(aq_capture *c, aq_model *m, const int *tokens, int first_window,
                         int n_windows, int T, aq_error *err);

/* Streaming capture of ONE block b (opts: block_first = block_last = b, no
 * classifier; or cross_block = b): the same batches and sums as aq_capture_run,
 * but the forward starts at block b from the residual stream the caller keeps
 * and stops after it, so capturing every block costs one forward in total.
 * x [n_windows * T, dim]: on entry the FP residual at block b's input (ignored
 * for b = 0: the embedding), on exit the FP residual after block b (block b+1's
 * input). xq (sequential mode only, else NULL): the residual the quantized
 * upstream gives at block b's input (ignored for b = 0), not changed: advance
 * it with aq_capture_advance once block b's overrides are installed. Block b is
 * acquired for the call (aq_model_block_acquire). */
aq_status aq_capture_run_block(aq_capture *c, aq_model *m, const int *tokens, int first_window,
                               int n_windows, int T, float *x, const float *xq, aq_error *err);
/* x (as above, n_windows windows of T tokens) := block `block` applied to it, FP
 * (quantized 0) or with the installed overrides (1), without capture, in batches
 * of batch_windows windows (the capture's batches). */
aq_status aq_capture_advance(aq_model *m, const int *tokens, int n_windows, int T, int batch_windows, int block,
                             int quantized, float *x, aq_error *err);

/* dst += src (same configuration; AQ_ERR_ARG otherwise). Merge chunks in order.
 * The symmetric Grams A and C get only their lower triangles added (half the
 * work); call aq_capture_mirror(dst) after the last merge, before reading them.
 * Either side may be packed (opts.packed). */
aq_status aq_capture_merge(aq_capture *dst, const aq_capture *src, aq_error *err);
/* dst += the partial serialised in buf (aq_capture_pack), added from the
 * bytes themselves: the same sums as unpacking it and merging, without a
 * second capture object. Errors as aq_capture_unpack; every point is checked
 * before any is added, so dst is then unchanged. */
aq_status aq_capture_merge_bytes(aq_capture *dst, const void *buf, size_t len, aq_error *err);
/* Copy the lower triangles of the symmetric Grams (A, C) to the upper ones
 * (nothing to do for a packed capture). */
void aq_capture_mirror(aq_capture *c);

/* Number of captured points and the i-th (ordered by block, then point). */
int aq_capture_count(const aq_capture *c);
const aq_capstat *aq_capture_stat(const aq_capture *c, int i);
/* The statistics of (block, point), or NULL if not captured. */
const aq_capstat *aq_capture_find(const aq_capture *c, int block, aq_cap_point point);

/* Serialise a partial (malloc'd *buf, caller frees) / restore into a capture
 * created with the same configuration (AQ_ERR_FORMAT on mismatch/truncation,
 * naming the point and byte offset; c must then be reset before reuse). The
 * bytes carry the lower triangles of A and C only: unpack fills those, which
 * is all aq_capture_merge reads; aq_capture_mirror completes them. */
aq_status aq_capture_pack(const aq_capture *c, void **buf, size_t *len, aq_error *err);
aq_status aq_capture_unpack(aq_capture *c, const void *buf, size_t len, aq_error *err);

#endif
