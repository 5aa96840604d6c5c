/* stage_capture.c — pipeline stage 1: per-capture-point input statistics,
 * streamed: one forward pass in total.
 *
 * The calibration windows are cut into FIXED chunks of cfg.chunk_windows; the
 * chunks are spread over the ranks in contiguous blocks, and each rank keeps
 * in memory the FP residual stream of its windows at the current block
 * boundary (aq_pipe_stream). Block by block, each rank runs block b once on
 * its chunks from that stream (aq_capture_run_block), which leaves block b+1's
 * input in place, and the owner of block b, rank b mod P, merges the chunk
 * partials IN CHUNK ORDER (aq_dist_merge_chunks + aq_capture_merge), so the
 * float64 sums are the same bytes for any number of ranks, and the same as the
 * whole-model passes of aq_capture_run. The symmetric Grams travel and are
 * added as their lower triangles only (capture_pack.c), mirrored once before
 * the files are written. After each block every rank
 * checkpoints its residuals (stage_capture_resid.c), so --resume restarts at
 * the last finished block. The owner writes one file per
 * capture point, WORK/stats/<block>.<point>.aqs, in the result-file format
 * (stage_stats.h: CRC32, fingerprint, atomic, the Gram's lower triangle).
 *
 * The capture command writes in the background (cap_writer): the owner hands
 * the merged total of block b to a writer thread, which writes and fsyncs b's
 * files during block b+1's forward. Every rank joins its writer after that
 * forward, before the merge of b+1, so at most one block's files are in
 * flight and the joined writer's total is the next merge target (one total
 * per rank): a block is finished once its files are durable, and the two
 * residual generations of stage_capture_resid.c still hold the input of the
 * first unfinished block.
 *
 * Memory (docs/MEMORY.md): a chunk's partial keeps its Grams' lower
 * triangles only (never mirrored: their upper halves are never written), the
 * total stores them packed, as the files do, and a remote partial is added
 * from the received bytes; the capture frees the model's classifier at once
 * and its embedding after block 0. */
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../../io/atomic_file.h"
#include "../../src/model/capture.h"
#include "../../src/text/textdata.h"
#include "driver.h"
#include "progress.h"
#include "ordered_sum.h"
#include "stage_capture.h"
#include "stage_stats.h"

typedef struct cap_ctx {
    aq_pipe_stream *s;
    int owner; /* this rank merges */
} cap_ctx;

/* A chunk's partial as bytes for the owner. The owner's own chunks are merged
 * from their objects (an empty buffer marks them): no copy. */
static aq_status cap_pack(void *vctx, size_t chunk, void **buf, size_t *len, aq_error *err)
{
    cap_ctx *x = vctx;
    *buf = NULL;
    *len = 0;
    if (x->owner) return AQ_OK;
    return aq_capture_pack(x->s->part[chunk], buf, len, err);
}

/* The owner's total (packed lower triangles) += chunk's partial: its own
 * object, or the received bytes, added as they are (no unpacking copy). */
static aq_status cap_merge(void *vctx, size_t chunk, const void *buf, size_t len, aq_error *err)
{
    cap_ctx *x = vctx;
    if (len == 0 && x->s->part[chunk]) return aq_capture_merge(x->s->total, x->s->part[chunk], err);
    return aq_capture_merge_bytes(x->s->total, buf, len, err);
}

int aq_pipe_chunk(const aq_pipe_cfg *c, size_t ch, int *w0)
{
    *w0 = (int)ch * c->chunk_windows;
    return c->windows - *w0 < c->chunk_windows ? c->windows - *w0 : c->chunk_windows;
}

/* *c made (first block) or moved to the block of o, zeroed: a chunk's
 * partial (packed 0) keeps its Grams' lower triangles only, the merged total
 * (packed 1) stores them packed: one block's Grams take one whole-storage
 * copy per own chunk, half of one per total (docs/MEMORY.md). */
static aq_status ready(aq_capture **c, aq_model *m, const aq_capture_opts *o, int packed, aq_error *err)
{
    if (*c) return aq_capture_set_block(*c, o->cross_block >= 0 ? o->cross_block : o->block_first, err);
    aq_capture_opts k = *o;
    k.packed = packed;
    k.lower_only = !packed;
    return aq_capture_new(m, &k, c, err);
}

/* Run the block on this rank's chunks from the residual stream, one partial
 * per chunk. */
static aq_status run_chunks(aq_model *m, const aq_pipe_cfg *c, const int *tokens, aq_pipe_stream *s,
                            const aq_capture_opts *o, aq_error *err)
{
    size_t D = (size_t)s->dim;
    for (size_t ch = s->lo; ch < s->hi; ch++) {
        int w0, nw = aq_pipe_chunk(c, ch, &w0);
        size_t r0 = (size_t)(w0 - s->w0) * c->seq_len * D;
        AQ_TRY(ready(&s->part[ch], m, o, 0, err));
        AQ_TRY(aq_capture_run_block(s->part[ch], m, tokens + (size_t)w0 * c->seq_len, w0, nw, c->seq_len,
                                    s->x + r0, s->xq ? s->xq + r0 : NULL, err));
    }
    return AQ_OK;
}

/* The AQ_FAIL_AT test hook capture_write:<block>:<rank>, checked in the
 * background writer once the first file of a block is written, so a test can
 * end a capture in the middle of a block's files. The kill and exit modes end
 * the process from the writer thread; the abort mode (MPI_Abort) must come
 * from the main thread (MPI_THREAD_FUNNELED), so the writer only records the
 * hit (*hit = 1: it stops writing) and writer_join fires the hook there. */
static aq_status write_hook(int block, int rank, const char *what, int *hit, aq_error *err)
{
    aq_dist_failspec f;
    AQ_TRY(aq_dist_parse_fail_at(getenv("AQ_FAIL_AT"), &f, err));
    if (strcmp(f.phase, "capture_write") || f.unit != block || f.rank != rank) return AQ_OK;
    if (f.mode != AQ_FAIL_ABORT) return aq_dist_failpoint("capture_write", block, rank, what, err);
    *hit = 1;
    return aq_fail(err, AQ_ERR_ARG, "injected failure (AQ_FAIL_AT) in the statistics writer");
}

/* Write the block's files from the merged total (packed Grams: written as
 * they are). hit != NULL (the background writer): the test hook above. */
static aq_status write_stats(const aq_pipe_cfg *c, const char *sub, aq_capture *cap, const aq_fingerprint *fp,
                             int hook_rank, int *hit, aq_error *err)
{
    char dir[AQ_PIPE_PATH];
    aq_pipe_path(c->work, sub, dir);
    AQ_TRY(aq_mkdir_once(dir, "statistics directory", err));
    for (int i = 0; i < aq_capture_count(cap); i++) {
        const aq_capstat *st = aq_capture_stat(cap, i);
        AQ_TRY(aq_stats_write(c->work, sub, st, fp, err));
        if (i == 0 && hit) {
            char what[64];
            snprintf(what, sizeof what, "block %d (1 of %d files written)", st->block, aq_capture_count(cap));
            AQ_TRY(write_hook(st->block, hook_rank, what, hit, err));
        }
    }
    return AQ_OK;
}

/* The background writer of one rank: the merged total it writes (handed
 * back as the next merge target once joined: one total per rank), its thread
 * and the outcome. */
struct aq_cap_writer {
    const aq_pipe_cfg *c;
    aq_fingerprint fp;
    int rank;
    aq_capture *job;
    pthread_t th;
    int running;
    int hook_hit; /* the abort-mode test hook fired in the thread (write_hook) */
    aq_status st;
    aq_error e;
};

static void *writer_main(void *arg)
{
    aq_cap_writer *w = arg;
    w->st = write_stats(w->c, "stats", w->job, &w->fp, w->rank, &w->hook_hit, &w->e);
    return NULL;
}

/* Main thread: wait for the block being written (if any); its outcome, or
 * st if that failed first. The writer's recorded test hook fires here. */
static aq_status writer_join(aq_pipe_stream *s, aq_status st, aq_error *err)
{
    aq_cap_writer *w = s->writer;
    if (!w || !w->running) return st;
    pthread_join(w->th, NULL);
    w->running = 0;
    if (w->hook_hit) {
        const aq_capstat *p = aq_capture_stat(w->job, 0);
        char what[64];
        snprintf(what, sizeof what, "block %d (1 of %d files written)", p->block, aq_capture_count(w->job));
        aq_dist_failpoint("capture_write", p->block, w->rank, what, err); /* does not return */
    }
    if (st == AQ_OK && w->st != AQ_OK) {
        *err = w->e;
        st = w->st;
    }
    return st;
}

/* Hand the merged total to the writer (joined before): the thread writes it
 * during the next block's forward, and the owner of a later block takes it
 * back (writer_take) once joined. Written in place if no thread starts. */
static aq_status writer_start(aq_pipe_stream *s, aq_error *err)
{
    aq_cap_writer *w = s->writer;
    w->job = s->total;
    s->total = NULL;
    w->e = (aq_error){0};
    w->st = AQ_OK;
    w->hook_hit = 0;
    if (pthread_create(&w->th, NULL, writer_main, w) == 0) {
        w->running = 1;
        return AQ_OK;
    }
    s->total = w->job;
    w->job = NULL;
    return write_stats(w->c, "stats", s->total, &w->fp, -1, NULL, err);
}

/* The total back from a joined writer, for the next merge. */
static void writer_take(aq_pipe_stream *s)
{
    aq_cap_writer *w = s->writer;
    if (s->total || !w || w->running || !w->job) return;
    s->total = w->job;
    w->job = NULL;
}

aq_status aq_pipe_load_calib(const aq_pipe_cfg *c, aq_model **m, int **tokens, aq_error *err)
{
    /* lazily: the capture (and the sequential pass) hold the block being run,
     * acquired by aq_pipe_capture_block, and the embedding (docs/MEMORY.md) */
    AQ_TRY(aq_model_load_lazy(c->model, m, err));
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

int aq_pipe_capture_sample_rows(const aq_pipe_cfg *c)
{
    return aq_pipe_menu_quantizes_acts(c) ? c->sample_rows : 0;
}

aq_status aq_pipe_stream_open(MPI_Comm comm, const aq_pipe_cfg *c, const aq_model *m, int seq, aq_pipe_stream *s,
                              aq_error *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    memset(s, 0, sizeof *s);
    s->n_chunks = (size_t)(c->windows + c->chunk_windows - 1) / (size_t)c->chunk_windows;
    s->owner = calloc(s->n_chunks, sizeof *s->owner);
    s->part = calloc(s->n_chunks, sizeof *s->part);
    if (!s->owner || !s->part) return aq_fail_nomem(err, "chunk table", s->n_chunks * sizeof *s->owner);
    for (int r = 0; r < size; r++) {
        size_t a, b;
        aq_dist_block_range(s->n_chunks, size, r, &a, &b);
        for (size_t ch = a; ch < b; ch++) s->owner[ch] = r;
        if (r == rank) s->lo = a, s->hi = b;
    }
    s->w0 = (int)s->lo * c->chunk_windows;
    int end = (int)s->hi * c->chunk_windows;
    s->nw = (end < c->windows ? end : c->windows) - s->w0;
    if (s->nw < 0) s->nw = 0;
    s->dim = aq_model_config(m)->dim;
    s->rows = (size_t)s->nw * c->seq_len;
    /* in memory: this rank's share of the tokens, one block boundary (docs/PIPELINE.md) */
    size_t bytes = s->rows * (size_t)s->dim * sizeof(float) + 1;
    s->x = malloc(bytes);
    s->xq = seq ? malloc(bytes) : NULL;
    if (!s->x || (seq && !s->xq)) return aq_fail_nomem(err, "residual stream", bytes);
    return AQ_OK;
}

void aq_pipe_stream_close(aq_pipe_stream *s)
{
    aq_error e = {0};
    (void)writer_join(s, AQ_OK, &e); /* an error path: the outcome is already decided */
    if (s->writer) aq_capture_free(s->writer->job);
    free(s->writer);
    for (size_t ch = 0; ch < s->n_chunks && s->part; ch++) aq_capture_free(s->part[ch]);
    free(s->part);
    aq_capture_free(s->total);
    free(s->owner);
    free(s->x);
    free(s->xq);
    memset(s, 0, sizeof *s);
}

/* This rank's part of block o's capture: the forward over its chunks. */
static aq_status run_block(const aq_pipe_cfg *c, aq_model *m, const int *tokens, const aq_capture_opts *o,
                           aq_pipe_stream *s, aq_error *err)
{
    /* held across the chunks, so a lazy model converts the block once, not
     * once per chunk (aq_capture_run_block's own acquire nests) */
    int blk = o->cross_block >= 0 ? o->cross_block : o->block_first;
    if (s->lo == s->hi) return AQ_OK; /* no windows here (fewer chunks than ranks): the block is not needed */
    AQ_TRY(aq_model_block_acquire(m, blk, err));
    aq_status st = run_chunks(m, c, tokens, s, o, err);
    aq_model_block_release(m, blk);
    return st;
}

/* Collective, after run_block and an agreement: the chunk-ordered merge on
 * owner_rank, which writes the files (in the background with s->writer). */
static aq_status merge_block(MPI_Comm comm, const aq_pipe_cfg *c, aq_model *m, const aq_capture_opts *o,
                             aq_pipe_stream *s, int owner_rank, const char *sub, const aq_fingerprint *fp,
                             aq_error *err)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    cap_ctx x = {s, rank == owner_rank};
    aq_status st = AQ_OK;
    if (x.owner) {
        writer_take(s);
        st = ready(&s->total, m, o, 1, err);
    }
    st = aq_pipe_agree(comm, st, err);
    if (st == AQ_OK) st = aq_dist_merge_chunks(comm, owner_rank, s->n_chunks, s->owner, cap_pack, cap_merge, &x, 0, err);
    if (st == AQ_OK && x.owner)
        st = s->writer ? writer_start(s, err) : write_stats(c, sub, s->total, fp, -1, NULL, err);
    return aq_pipe_agree(comm, st, err);
}

aq_status aq_pipe_capture_block(MPI_Comm comm, const aq_pipe_cfg *c, aq_model *m, const int *tokens,
                                const aq_capture_opts *o, aq_pipe_stream *s, int owner_rank, const char *sub,
                                const aq_fingerprint *fp, aq_error *err)
{
    aq_status st = aq_pipe_agree(comm, run_block(c, m, tokens, o, s, err), err);
    return st == AQ_OK ? merge_block(comm, c, m, o, s, owner_rank, sub, fp, err) : st;
}

/* Checkpoint this rank's chunks at the input of block `block`. */
static aq_status save_stream(const aq_pipe_cfg *c, const aq_pipe_stream *s, int block, const aq_fingerprint *fp,
                             aq_error *err)
{
    for (size_t ch = s->lo; ch < s->hi; ch++) {
        int w0, nw = aq_pipe_chunk(c, ch, &w0);
        size_t r0 = (size_t)(w0 - s->w0) * c->seq_len;
        AQ_TRY(aq_resid_save(c->work, ch, block, fp, s->x + r0 * s->dim, (size_t)nw * c->seq_len, s->dim, err));
    }
    return AQ_OK;
}

/* Load chunks [lo, hi)'s residuals at block's input into x (laid out from chunk lo). */
static aq_status load_chunks(const aq_pipe_cfg *c, size_t lo, size_t hi, int block, const aq_fingerprint *fp,
                             float *x, int dim, aq_error *err)
{
    for (size_t ch = lo; ch < hi; ch++) {
        int w0, nw = aq_pipe_chunk(c, ch, &w0);
        size_t r0 = (size_t)(w0 - (int)lo * c->chunk_windows) * c->seq_len;
        AQ_TRY(aq_resid_load(c->work, ch, block, fp, x + r0 * dim, (size_t)nw * c->seq_len, dim, err));
    }
    return AQ_OK;
}

/* Rank 0, --resume: the block to resume at: the first block k whose 4
 * statistics files are not all valid (or the one before, whose input was
 * checkpointed), provided every chunk's residual at k's input is valid; else 0. */
static int resume_block(const aq_pipe_cfg *c, const aq_model *m, const aq_fingerprint *fp)
{
    int L = aq_model_config(m)->n_layers, D = aq_model_config(m)->dim, k = 0;
    aq_error e = {0};
    for (int ok = 1; k < L && ok; k += ok)
        for (int p = 0; p < AQ_CAP_COUNT && ok; p++) {
            aq_stats st;
            ok = aq_stats_read(c->work, "stats", k, p, fp, &st, &e) == AQ_OK;
            if (ok) aq_stats_free(&st);
        }
    size_t n_chunks = (size_t)(c->windows + c->chunk_windows - 1) / (size_t)c->chunk_windows;
    float *x = malloc((size_t)c->chunk_windows * c->seq_len * D * sizeof(float) + 1); /* one chunk */
    for (; k > 0 && x; k--) {
        aq_status st = AQ_OK;
        for (size_t ch = 0; ch < n_chunks && st == AQ_OK; ch++) st = load_chunks(c, ch, ch + 1, k, fp, x, D, &e);
        if (st == AQ_OK) break;
        fprintf(stderr, "adaquant: capture: cannot resume at block %d: %s\n", k, e.msg);
    }
    free(x);
    return x ? k : 0;
}

/* Give the stream a background writer (the capture command's; the
 * sequential pass writes in place). */
static aq_status writer_new(aq_pipe_stream *s, const aq_pipe_cfg *c, const aq_fingerprint *fp, int rank,
                            aq_error *err)
{
    s->writer = calloc(1, sizeof *s->writer);
    if (!s->writer) return aq_fail_nomem(err, "statistics writer", sizeof *s->writer);
    s->writer->c = c;
    s->writer->fp = *fp;
    s->writer->rank = rank;
    return AQ_OK;
}

/* During the capture (on = 1), large blocks come from the heap and stay there
 * when freed: every block allocates and frees buffers of a whole block's
 * statistics (the packed partial, the message, the file images), which glibc
 * would otherwise map afresh each time, faulting in every page (measured on
 * the 8-block dim-1024 model at P = 2: the merge's wall time 38.6 -> 12.7 s,
 * rank 0 CPU 17.3 -> 11.9 s). The peak is the same (the freed blocks are
 * reused); on = 0 restores glibc's defaults and returns the free memory. */
static void capture_malloc_policy(int on)
{
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, on ? 1 << 30 : 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, on ? 1 << 30 : 128 * 1024);
    if (!on) malloc_trim(0);
#else
    (void)on;
#endif
}

/* *acc += the wall seconds since *t; *t := now. */
static void lap(double *t, double *acc)
{
    double now = aq_progress_now();
    *acc += now - *t;
    *t = now;
}

/* The streaming capture of blocks k..L-1 (k: the resume point). */
static aq_status capture_all(MPI_Comm comm, const aq_pipe_cfg *c, int resume, aq_error *err)
{
    aq_model *m = NULL;
    int *tokens = NULL, rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    aq_status st = aq_pipe_load_calib(c, &m, &tokens, err);
    aq_capture_opts o;
    aq_capture_opts_default(&o);
    o.sample_rows = aq_pipe_capture_sample_rows(c);
    o.seed = c->sample_seed;
    aq_fingerprint fp = aq_pipe_stats_fp(c);
    aq_pipe_stream s = {0};
    if (st == AQ_OK) st = aq_pipe_stream_open(comm, c, m, 0, &s, err);
    if (st == AQ_OK) st = writer_new(&s, c, &fp, rank, err);
    st = aq_pipe_agree(comm, st, err);
    int k = 0;
    if (st == AQ_OK && resume && rank == 0) k = resume_block(c, m, &fp);
    MPI_Bcast(&k, 1, MPI_INT, 0, comm);
    if (st == AQ_OK && k > 0) {
        if (rank == 0) fprintf(stderr, "adaquant: capture: resuming at block %d (blocks 0..%d captured)\n", k, k - 1);
        st = aq_pipe_agree(comm, load_chunks(c, s.lo, s.hi, k, &fp, s.x, s.dim, err), err);
    }
    /* block b is captured once: each rank runs it on its windows from the
     * kept residuals; the owner of b, rank b mod P, merges and writes */
    int L = st == AQ_OK ? aq_model_config(m)->n_layers : 0;
    /* the capture stops at the last block and runs from the residual stream
     * after block 0: the F32 classifier is never read, nor the embedding past
     * block 0 (V x D floats each: 250 MiB apiece for a 32000 x 2048 model) */
    if (st == AQ_OK) aq_model_drop_vocab(m, k > 0 || s.lo == s.hi);
    capture_malloc_policy(1);
    double t0 = aq_progress_now(), c0 = (double)clock() / CLOCKS_PER_SEC, tl = t0;
    double ph[4] = {0}; /* rank 0's wall seconds: forward, wait (writer, other ranks), merge, checkpoint */
    for (int b = k; st == AQ_OK && b < L; b++) {
        o.block_first = o.block_last = b;
        st = run_block(c, m, tokens, &o, &s, err);
        if (b == 0) aq_model_drop_vocab(m, 1);
        lap(&tl, &ph[0]);
        /* block b-1's files were written during this forward: durable on
         * every rank once agreed, before block b's merge */
        st = aq_pipe_agree(comm, writer_join(&s, st, err), err);
        char what[48];
        snprintf(what, sizeof what, "block %d of %d", b, L);
        if (st == AQ_OK) st = aq_pipe_agree(comm, aq_dist_failpoint("capture", b, rank, what, err), err); /* test hook */
        lap(&tl, &ph[1]);
        if (st == AQ_OK) st = merge_block(comm, c, m, &o, &s, b % size, "stats", &fp, err);
        lap(&tl, &ph[2]);
        if (st == AQ_OK && b + 1 < L) st = aq_pipe_agree(comm, save_stream(c, &s, b + 1, &fp, err), err);
        lap(&tl, &ph[3]);
    }
    if (st == AQ_OK) st = aq_pipe_agree(comm, writer_join(&s, st, err), err); /* the last block's files */
    lap(&tl, &ph[1]);
    if (st == AQ_OK && rank == 0) {
        aq_resid_remove(c->work);
        /* the figure bench/capture_bench.sh compares with one forward (model loading excluded) */
        fprintf(stderr,
                "adaquant: capture: blocks %d..%d streamed in %.2f s (rank 0 CPU %.2f s) on %d rank%s; rank 0 wall: "
                "forward %.2f s, waiting %.2f s, merge %.2f s, checkpoints %.2f s\n",
                k, L - 1, aq_progress_now() - t0, (double)clock() / CLOCKS_PER_SEC - c0, size, size > 1 ? "s" : "",
                ph[0], ph[1], ph[2], ph[3]);
    }
    aq_pipe_stream_close(&s);
    free(tokens);
    aq_model_free(m);
    capture_malloc_policy(0);
    return st;
}

aq_status aq_pipe_capture(MPI_Comm comm, const aq_pipe_cfg *c, int resume, aq_pipe_timing *t, aq_error *err)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    double t0 = aq_progress_now();
    aq_status st = AQ_OK;
    if (rank == 0) st = aq_mkdir_once(c->work, "work directory (--work)", err);
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
        st = capture_all(comm, c, resume, err);
    }
    if (st == AQ_OK && rank == 0) st = aq_pipe_cfg_write(c, err);
    st = aq_pipe_agree(comm, st, err);
    if (t) t->capture += aq_progress_now() - t0;
    return st;
}
