/* ordered_sum.c — chunk-ordered, rank-count-independent float64 sums (ordered_sum.h). */
#include "ordered_sum.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void aq_dist_block_range(size_t n, int p, int r, size_t *lo, size_t *hi)
{
    size_t q = n / (size_t)p, rem = n % (size_t)p, ur = (size_t)r;
    *lo = ur * q + (ur < rem ? ur : rem);
    *hi = *lo + q + (ur < rem ? 1 : 0);
}

static aq_status check_args(MPI_Comm comm, int owner, size_t n_chunks, const int *chunk_rank,
                            const double *const *local, size_t len, double *out, aq_error *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (owner < 0 || owner >= size || len > (size_t)INT_MAX || (rank == owner && !out && len))
        return aq_fail(err, AQ_ERR_ARG, "chunk reduction: bad owner %d, length %zu or output", owner, len);
    for (size_t c = 0; c < n_chunks; c++) {
        if (chunk_rank[c] < 0 || chunk_rank[c] >= size)
            return aq_fail(err, AQ_ERR_ARG, "chunk reduction: chunk %zu is mapped to rank %d of %d", c,
                           chunk_rank[c], size);
        if (chunk_rank[c] == rank && !local[c] && len)
            return aq_fail(err, AQ_ERR_ARG, "chunk reduction: rank %d has no partial for its chunk %zu", rank, c);
    }
    return AQ_OK;
}

static void add_into(double *out, const double *p, size_t len)
{
    for (size_t j = 0; j < len; j++) out[j] += p[j];
}

/* The first remote chunk at or after c, or n_chunks. */
static size_t next_remote(const int *chunk_rank, size_t n_chunks, size_t c, int owner)
{
    while (c < n_chunks && chunk_rank[c] == owner) c++;
    return c;
}

/* The owner's loop. buf[2] are len-double receive buffers. */
static void owner_side(MPI_Comm comm, int owner, size_t n_chunks, const int *chunk_rank,
                       const double *const *local, size_t len, double *out, double *buf[2])
{
    memset(out, 0, len * sizeof *out); /* +0.0 everywhere, as the serial loop */
    MPI_Request req = MPI_REQUEST_NULL;
    int cur = 0;
    size_t pending = next_remote(chunk_rank, n_chunks, 0, owner);
    if (pending < n_chunks)
        MPI_Irecv(buf[cur], (int)len, MPI_DOUBLE, chunk_rank[pending], AQ_DIST_TAG_REDUCE, comm, &req);
    for (size_t c = 0; c < n_chunks; c++) {
        if (chunk_rank[c] == owner) {
            add_into(out, local[c], len);
            continue;
        }
        /* c == pending: wait for it, then pre-post the next remote chunk. */
        MPI_Wait(&req, MPI_STATUS_IGNORE);
        double *ready = buf[cur];
        cur ^= 1;
        pending = next_remote(chunk_rank, n_chunks, c + 1, owner);
        if (pending < n_chunks)
            MPI_Irecv(buf[cur], (int)len, MPI_DOUBLE, chunk_rank[pending], AQ_DIST_TAG_REDUCE, comm, &req);
        add_into(out, ready, len);
    }
}

aq_status aq_dist_reduce_chunks(MPI_Comm comm, int owner, size_t n_chunks, const int *chunk_rank,
                                const double *const *local, size_t len, double *out, aq_error *err)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    aq_status st = check_args(comm, owner, n_chunks, chunk_rank, local, len, out, err);
    double *buf[2] = {NULL, NULL};
    if (st == AQ_OK && rank == owner) {
        buf[0] = malloc((len ? len : 1) * sizeof(double));
        buf[1] = malloc((len ? len : 1) * sizeof(double));
        if (!buf[0] || !buf[1]) st = aq_fail_nomem(err, "chunk reduction buffers", 2 * len * sizeof(double));
    }
    /* Agree before any message moves: a rank that cannot take part would
     * leave the others blocked. */
    int bad = st != AQ_OK, any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm);
    if (any) {
        free(buf[0]);
        free(buf[1]);
        if (st != AQ_OK) return st;
        return aq_fail(err, AQ_ERR_ARG, "chunk reduction: another rank rejected the arguments");
    }
    if (rank == owner) {
        owner_side(comm, owner, n_chunks, chunk_rank, local, len, out, buf);
        free(buf[0]);
        free(buf[1]);
        return AQ_OK;
    }
    /* Messages between one pair of ranks are non-overtaking, so sending in
     * chunk order is all the owner needs to receive in chunk order. */
    for (size_t c = 0; c < n_chunks; c++)
        if (chunk_rank[c] == rank) MPI_Send(local[c], (int)len, MPI_DOUBLE, owner, AQ_DIST_TAG_REDUCE, comm);
    return AQ_OK;
}

/* ---- chunk-ordered merge of byte partials ---- */

enum { TAG_MERGE_HDR = 7302, TAG_MERGE_DATA = 7303 };
#define MERGE_DEFAULT_MSG ((size_t)1 << 30)

/* Header of one chunk's stream: its length, or a failure flag. */
typedef struct merge_hdr {
    uint64_t len;
    int64_t failed; /* 1: the holder could not pack this chunk (no data follows) */
} merge_hdr;

static void send_chunk(MPI_Comm comm, int owner, const void *buf, size_t len, int failed, size_t max_msg)
{
    merge_hdr h = {(uint64_t)len, failed};
    MPI_Send(&h, (int)sizeof h, MPI_BYTE, owner, TAG_MERGE_HDR, comm);
    for (size_t off = 0; !failed && off < len; off += max_msg) {
        size_t n = len - off < max_msg ? len - off : max_msg;
        MPI_Send((const char *)buf + off, (int)n, MPI_BYTE, owner, TAG_MERGE_DATA, comm);
    }
}

/* Receive chunk c's stream from src into a malloc'd *buf (NULL + *failed on
 * a holder failure). Without memory for it the stream cannot be drained (a
 * message is received whole), so the job is aborted with a message. */
static void recv_chunk(MPI_Comm comm, int src, size_t c, size_t max_msg, void **buf, size_t *len, int *failed)
{
    merge_hdr h;
    MPI_Recv(&h, (int)sizeof h, MPI_BYTE, src, TAG_MERGE_HDR, comm, MPI_STATUS_IGNORE);
    *buf = NULL, *len = (size_t)h.len, *failed = (int)h.failed;
    if (h.failed) return;
    char *b = malloc(h.len ? (size_t)h.len : 1);
    if (!b) {
        int rank;
        MPI_Comm_rank(comm, &rank);
        fprintf(stderr, "adaquant: rank %d: out of memory receiving chunk %zu (%llu bytes) from rank %d\n", rank,
                c, (unsigned long long)h.len, src);
        MPI_Abort(comm, 1);
    }
    for (size_t off = 0; off < h.len; off += max_msg) {
        size_t n = h.len - off < max_msg ? (size_t)h.len - off : max_msg;
        MPI_Recv(b + off, (int)n, MPI_BYTE, src, TAG_MERGE_DATA, comm, MPI_STATUS_IGNORE);
    }
    *buf = b;
}

/* Holder side: pack and send each of my chunks in order. After a pack
 * failure the remaining chunks are sent as failures too (nothing is left
 * for the owner to wait for). Returns the first failure. */
static aq_status holder_side(MPI_Comm comm, int rank, int owner, size_t n_chunks, const int *chunk_rank,
                             aq_dist_pack_fn pack, void *ctx, size_t max_msg, aq_error *err)
{
    aq_status first = AQ_OK;
    for (size_t c = 0; c < n_chunks; c++) {
        if (chunk_rank[c] != rank) continue;
        void *buf = NULL;
        size_t len = 0;
        aq_status st = first == AQ_OK ? pack(ctx, c, &buf, &len, err) : first;
        if (st != AQ_OK && first == AQ_OK) {
            first = st;
            aq_error_prefix(err, "rank %d, chunk %zu", rank, c);
        }
        send_chunk(comm, owner, buf, len, st != AQ_OK, max_msg);
        free(buf);
    }
    return first;
}

static aq_status owner_merge(MPI_Comm comm, int owner, size_t n_chunks, const int *chunk_rank,
                             aq_dist_pack_fn pack, aq_dist_merge_fn merge, void *ctx, size_t max_msg,
                             aq_error *err)
{
    aq_status first = AQ_OK;
    for (size_t c = 0; c < n_chunks; c++) {
        void *buf = NULL;
        size_t len = 0;
        int failed = 0;
        aq_error e = {0};
        aq_status st;
        if (chunk_rank[c] == owner) {
            st = first == AQ_OK ? pack(ctx, c, &buf, &len, &e) : AQ_OK;
        } else {
            recv_chunk(comm, chunk_rank[c], c, max_msg, &buf, &len, &failed);
            st = AQ_OK;
            if (failed)
                st = aq_fail(&e, AQ_ERR_MPI, "rank %d could not produce chunk %zu", chunk_rank[c], c);
        }
        if (st == AQ_OK && first == AQ_OK) st = merge(ctx, c, buf, len, &e);
        free(buf);
        if (st != AQ_OK && first == AQ_OK) {
            first = st;
            aq_fail(err, st, "merging chunk %zu on rank %d: %s", c, owner, e.msg);
        }
    }
    return first;
}

aq_status aq_dist_merge_chunks(MPI_Comm comm, int owner, size_t n_chunks, const int *chunk_rank,
                               aq_dist_pack_fn pack, aq_dist_merge_fn merge, void *ctx, size_t max_msg,
                               aq_error *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (max_msg == 0 || max_msg > (size_t)INT_MAX) max_msg = MERGE_DEFAULT_MSG;
    int bad = owner < 0 || owner >= size || !pack || !merge;
    for (size_t c = 0; c < n_chunks && !bad; c++) bad = chunk_rank[c] < 0 || chunk_rank[c] >= size;
    if (bad) /* the arguments are the same on every rank: everyone returns here */
        return aq_fail(err, AQ_ERR_ARG, "chunk merge: bad owner %d, callbacks or chunk-to-rank map", owner);
    aq_status st = rank == owner ? owner_merge(comm, owner, n_chunks, chunk_rank, pack, merge, ctx, max_msg, err)
                                 : holder_side(comm, rank, owner, n_chunks, chunk_rank, pack, ctx, max_msg, err);
    /* Everyone learns the outcome: a failing holder's message (it has the
     * reason) before the owner's. */
    int mine = st != AQ_OK ? (rank == owner ? size : rank) : size + 1, best;
    MPI_Allreduce(&mine, &best, 1, MPI_INT, MPI_MIN, comm);
    if (best == size + 1) return AQ_OK;
    int src = best == size ? owner : best;
    aq_error tmp = {0};
    if (rank == src) tmp = *err, tmp.code = st;
    MPI_Bcast(&tmp, (int)sizeof tmp, MPI_BYTE, src, comm);
    if (rank == src) return st;
    return aq_fail(err, tmp.code, "%s", tmp.msg);
}
