/* ordered_sum.h — deterministic sums of per-chunk float64 partials.
 *
 * The capture splits the calibration windows into a FIXED list of chunks
 * (independent of the number of ranks); each chunk yields a partial array per
 * capture point (e.g. a (d+1)² Gram partial). Floating-point addition is not
 * associative, so to make the total bit-identical for any number of ranks and
 * any assignment of chunks to ranks, the owner adds the partials in chunk
 * order, one at a time, starting from +0.0:
 *     out = 0;  for c = 0 .. n_chunks-1:  out[j] += partial_c[j]
 * exactly what a serial loop does. Remote partials are received in chunk
 * order (double-buffered: the next one arrives while the current one is
 * added), so the owner holds at most two partials besides its own. */
#ifndef AQ_PIPELINE_ORDERED_SUM_H
#define AQ_PIPELINE_ORDERED_SUM_H

#include <stddef.h>

#include <mpi.h>

#include "../../common/status.h"

/* Collective over comm (every rank calls it with the same n_chunks,
 * chunk_rank, len and owner). chunk_rank[c] is the rank holding chunk c;
 * local[c] points to that chunk's len doubles on that rank (entries of other
 * ranks' chunks are ignored and may be NULL). On `owner`, out[len] receives
 * the chunk-ordered sum (out ignored elsewhere). Uses point-to-point messages
 * with tag AQ_DIST_TAG_REDUCE on comm; the ranks first agree on the arguments
 * (one MPI_Allreduce), so an error is returned on every rank, never a hang.
 * AQ_ERR_ARG for an invalid chunk_rank
 * entry, a missing local partial, or len above INT_MAX. */
aq_status aq_dist_reduce_chunks(MPI_Comm comm, int owner, size_t n_chunks, const int *chunk_rank,
                                const double *const *local, size_t len, double *out, aq_error *err);

#define AQ_DIST_TAG_REDUCE 7301

/* The general form, for partials that are not plain double arrays (e.g. a
 * packed aq_capture: Grams plus min/max and row samples, merged with
 * aq_capture_merge). On the rank holding chunk c, pack(ctx, c, &buf, &len)
 * produces its bytes (malloc'd; freed here); on `owner`, merge(ctx, c, buf,
 * len) is called for c = 0, 1, ..., n_chunks-1 in order, whatever rank held
 * the chunk (the owner packs its own chunks too). Messages of any size are
 * sent in pieces of at most max_msg bytes (0 = 1 GiB). A pack or merge
 * failure does not hang the others: the stream is drained, and every rank
 * returns an error naming the first failing rank and chunk. The owner holds
 * one received partial at a time. */
typedef aq_status (*aq_dist_pack_fn)(void *ctx, size_t chunk, void **buf, size_t *len, aq_error *err);
typedef aq_status (*aq_dist_merge_fn)(void *ctx, size_t chunk, const void *buf, size_t len, aq_error *err);
aq_status aq_dist_merge_chunks(MPI_Comm comm, int owner, size_t n_chunks, const int *chunk_rank,
                               aq_dist_pack_fn pack, aq_dist_merge_fn merge, void *ctx, size_t max_msg,
                               aq_error *err);

/* The contiguous block [*lo, *hi) of n items that rank r of p gets (the
 * first n % p ranks get one more). A convenient chunk-to-rank map. */
void aq_dist_block_range(size_t n, int p, int r, size_t *lo, size_t *hi);

#endif
