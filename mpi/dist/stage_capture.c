/* stage_capture.c — pipeline stage 1: per-capture-point input statistics.
 *
 * The calibration windows are cut into FIXED chunks of cfg.chunk_windows; the
 * chunks are spread over the ranks in contiguous blocks, each rank runs the FP
 * forward on its chunks, and rank 0 merges the chunk partials IN CHUNK ORDER
 * (aq_dist_merge_chunks + aq_capture_merge), so the float64 sums are the same
 * bytes for any number of ranks. This is done block by block: block b's
 * merged statistics live only on rank b mod P, which writes one file per
 * capture point, WORK/stats/<block>.<point>.aqs, in the result-file format
 * (io/resultfile.h: zlib, CRC32, fingerprint, atomic) with the tensors
 * gram F64 [d+1, d+1], xmin/xmax F32 [d], sample F32 [n, d],
 * sample_win/sample_pos U32 [n], n_rows I64 [1] (docs/PIPELINE.md). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../src/model/capture.h"
#include "../../src/text/textdata.h"
#include "driver.h"
#include "progress.h"
#include "reduce.h"
#include "stage_capture.h"
#include "stage_stats.h"

typedef struct cap_ctx {
    void **packed; /* [n_chunks] packed partials of this rank's chunks */
    size_t *len;
    aq_capture *total, *scratch;
} cap_ctx;

static aq_status cap_pack(void *vctx, size_t chunk, void **buf, size_t *len, aq_error *err)
{
    cap_ctx *x = vctx;
    *buf = malloc(x->len[chunk] ? x->len[chunk] : 1);
    if (!*buf) return aq_fail_nomem(err, "capture partial", x->len[chunk]);
    memcpy(*buf, x->packed[chunk], x->len[chunk]);
    *len = x->len[chunk];
    return AQ_OK;
}

static aq_status cap_merge(void *vctx, size_t chunk, const void *buf, size_t len, aq_error *err)
{
    cap_ctx *x = vctx;
    AQ_TRY(aq_capture_unpack(x->scratch, buf, len, err));
    return aq_capture_merge(x->total, x->scratch, err);
}

/* Run this rank's chunks, keeping each one's packed partial. */
static aq_status run_chunks(aq_model *m, const aq_pipe_cfg *c, const int *tokens, size_t lo, size_t hi,
                            aq_capture *cap, cap_ctx *x, aq_error *err)
{
    for (size_t ch = lo; ch < hi; ch++) {
        int w0 = (int)ch * c->chunk_windows;
        int nw = c->windows - w0 < c->chunk_windows ? c->windows - w0 : c->chunk_windows;
        aq_capture_reset(cap);
        AQ_TRY(aq_capture_run(cap, m, tokens + (size_t)w0 * c->seq_len, w0, nw, c->seq_len, err));
        AQ_TRY(aq_capture_pack(cap, &x->packed[ch], &x->len[ch], err));
    }
    return AQ_OK;
}

static aq_status write_stats(const aq_pipe_cfg *c, const char *sub, const aq_capture *cap,
                             const aq_fingerprint *fp, aq_error *err)
{
    char dir[AQ_PIPE_PATH];
    aq_pipe_path(c->work, sub, dir);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return aq_fail(err, AQ_ERR_IO, "%s: cannot create the statistics directory", dir);
    for (int i = 0; i < aq_capture_count(cap); i++)
        AQ_TRY(aq_stats_write(c->work, sub, aq_capture_stat(cap, i), fp, err));
    return AQ_OK;
}

aq_status aq_pipe_load_calib(const aq_pipe_cfg *c, aq_model **m, int **tokens, aq_error *err)
{
    AQ_TRY(aq_model_load_path(c->model, m, err));
    aq_tokenizer *tok;
    AQ_TRY(aq_tok_open(c->tokenizer, aq_model_config(*m)->vocab_size, &tok, err));
    aq_docs d;
    aq_status st = aq_docs_load(&c->data, &d, err);
    if (st == AQ_OK) {
        st = aq_calib_windows(tok, &d, c->windows, c->seq_len, tokens, err);
        aq_docs_free(&d);
    }
    aq_tok_close(tok);
    return st;
}

aq_status aq_pipe_capture_chunks(MPI_Comm comm, const aq_pipe_cfg *c, aq_model *m, const int *tokens,
                                 const aq_capture_opts *o, int owner_rank, const char *sub,
                                 const aq_fingerprint *fp, aq_error *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    size_t n_chunks = (size_t)(c->windows + c->chunk_windows - 1) / (size_t)c->chunk_windows;
    cap_ctx x = {0};
    aq_capture *cap = NULL;
    int *owner = calloc(n_chunks, sizeof *owner);
    x.packed = calloc(n_chunks, sizeof *x.packed);
    x.len = calloc(n_chunks, sizeof *x.len);
    aq_status st = owner && x.packed && x.len ? AQ_OK : aq_fail_nomem(err, "chunk table", n_chunks);
    size_t lo = 0, hi = 0;
    for (int r = 0; r < size && st == AQ_OK; r++) {
        size_t a, b;
        aq_dist_block_range(n_chunks, size, r, &a, &b);
        for (size_t ch = a; ch < b; ch++) owner[ch] = r;
        if (r == rank) lo = a, hi = b;
    }
    if (st == AQ_OK) st = aq_capture_new(m, o, &cap, err);
    if (st == AQ_OK) st = run_chunks(m, c, tokens, lo, hi, cap, &x, err);
    if (st == AQ_OK && rank == owner_rank) {
        st = aq_capture_new(m, o, &x.total, err);
        if (st == AQ_OK) st = aq_capture_new(m, o, &x.scratch, err);
    }
    st = aq_pipe_agree(comm, st, err);
    if (st == AQ_OK)
        st = aq_dist_merge_chunks(comm, owner_rank, n_chunks, owner, cap_pack, cap_merge, &x, 0, err);
    if (st == AQ_OK && rank == owner_rank) st = write_stats(c, sub, x.total, fp, err);
    st = aq_pipe_agree(comm, st, err);
    for (size_t ch = 0; ch < n_chunks && x.packed; ch++) free(x.packed[ch]);
    free(x.packed);
    free(x.len);
    free(owner);
    aq_capture_free(cap);
    aq_capture_free(x.total);
    aq_capture_free(x.scratch);
    return st;
}

static aq_status capture_all(MPI_Comm comm, const aq_pipe_cfg *c, aq_error *err)
{
    aq_model *m = NULL;
    int *tokens = NULL;
    aq_status st = aq_pipe_load_calib(c, &m, &tokens, err);
    aq_capture_opts o;
    aq_capture_opts_default(&o);
    o.sample_rows = c->sample_rows;
    o.seed = c->sample_seed;
    aq_fingerprint fp = aq_pipe_stats_fp(c);
    st = aq_pipe_agree(comm, st, err);
    /* one capture per block, owned (merged and written) by rank block mod P, so
     * no rank holds more than its own blocks' statistics; the forward of block
     * b stops after b, so the passes cost ~(L+1)/2 forwards in total */
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int L = st == AQ_OK ? aq_model_config(m)->n_layers : 0;
    for (int b = 0; st == AQ_OK && b < L; b++) {
        char what[48];
        snprintf(what, sizeof what, "block %d of %d", b, L);
        st = aq_pipe_agree(comm, aq_dist_failpoint("capture", b, rank, what, err), err); /* test hook */
        if (st != AQ_OK) break;
        o.block_first = o.block_last = b;
        st = aq_pipe_capture_chunks(comm, c, m, tokens, &o, b % size, "stats", &fp, err);
    }
    free(tokens);
    aq_model_free(m);
    return st;
}

aq_status aq_pipe_capture(MPI_Comm comm, const aq_pipe_cfg *c, int resume, aq_pipe_timing *t, aq_error *err)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    double t0 = aq_progress_now();
    aq_status st = AQ_OK;
    if (rank == 0 && mkdir(c->work, 0777) != 0 && errno != EEXIST)
        st = aq_fail(err, AQ_ERR_IO, "--work %s: cannot create the work directory", c->work);
    st = aq_pipe_agree(comm, st, err);
    if (st != AQ_OK) return st;
    int have = 0;
    if (resume && rank == 0) {
        aq_pipe_cfg_report_changed_inputs(c, stderr);
        have = aq_stats_all_valid(c, stderr);
    }
    MPI_Bcast(&have, 1, MPI_INT, 0, comm);
    if (have) {
        if (rank == 0) fprintf(stderr, "adaquant: capture: reusing the valid statistics in %s/stats\n", c->work);
    } else {
        if (rank == 0) fprintf(stderr, "adaquant: capture: %d windows x %d tokens in chunks of %d\n", c->windows,
                               c->seq_len, c->chunk_windows);
        st = capture_all(comm, c, err);
    }
    if (st == AQ_OK && rank == 0) st = aq_pipe_cfg_write(c, err);
    st = aq_pipe_agree(comm, st, err);
    if (t) t->capture += aq_progress_now() - t0;
    return st;
}
