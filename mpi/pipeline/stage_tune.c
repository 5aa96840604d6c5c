/* stage_tune.c — global tuning of the assembled quantized model (stage_tune.h):
 * Adam on the scales (log-parametrised), zero points and biases of every
 * quantized linear (per row, or per group / block for the group formats,
 * re-quantized to the format: src/model/tune_group.h) and on the RMSNorm
 * gains, minimising the mean per-token KL(FP ‖ quantized) on calibration
 * documents, with the integer codes fixed. Gradients are per fixed chunk of documents, summed in chunk order. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/model/block_loss.h"
#include "../../src/model/tune.h"
#include "../../src/text/textdata.h"
#include "driver.h"
#include "progress.h"
#include "ordered_sum.h"
#include "stage_tune.h"

/* Block-wise tuning (stage_tune_block.c) keeps per-row copies of each
 * layer's scales, so layers in group formats are installed as calibrated and
 * left out of it (global tuning tunes them: src/model/tune_group.h). The
 * others' results are v's structs (their arrays shared: the tuned values land
 * in v). */
static aq_status blockwise_rows(MPI_Comm comm, const aq_pipe_plan *p, const aq_pipe_tune_opts *tu,
                                const aq_seqs *pool, aq_model *m, aq_layer_result *v, aq_pipe_tuned *out,
                                aq_error *err)
{
    aq_pipe_plan sub = *p;
    sub.layers = malloc((size_t)(p->n_layers > 0 ? p->n_layers : 1) * sizeof *sub.layers);
    aq_layer_result *sv = malloc((size_t)(p->n_layers > 0 ? p->n_layers : 1) * sizeof *sv);
    aq_status st = sub.layers && sv ? AQ_OK : aq_fail_nomem(err, "tuning layers", (size_t)p->n_layers);
    sub.n_layers = 0;
    for (int l = 0; st == AQ_OK && l < p->n_layers; l++) {
        if (v[l].group <= 0) {
            sub.layers[sub.n_layers] = p->layers[l], sv[sub.n_layers++] = v[l];
            continue;
        }
        float *w = malloc(v[l].d_out * v[l].d_in * sizeof *w);
        st = w ? aq_tune_install_layer(m, p->layers[l].block, (aq_linear)p->layers[l].which, &v[l], w, err)
               : aq_fail_nomem(err, "dequantised weight", v[l].d_out * v[l].d_in * 4);
        free(w);
    }
    int rank;
    MPI_Comm_rank(comm, &rank);
    if (st == AQ_OK && sub.n_layers < p->n_layers && rank == 0)
        fprintf(stderr, "adaquant: block-wise tuning: %d layers in group formats stay as calibrated\n",
                p->n_layers - sub.n_layers);
    if (st == AQ_OK) st = aq_pipe_tune_blockwise(comm, &sub, tu, pool, m, sv, out, err);
    free(sub.layers);
    free(sv);
    return st;
}

/* --tune-len, at most the model's context. */
static int tune_max_len(const aq_pipe_tune_opts *tu, const aq_model *m)
{
    int ctx = aq_model_config(m)->max_seq_len;
    return tu->max_len < ctx ? tu->max_len : ctx;
}

aq_status aq_pipe_tune_pool(const aq_pipe_tune_opts *tu, const aq_tokenizer *tok, const aq_docs *d,
                            const aq_model *m, aq_seqs *pool, aq_error *err)
{
    aq_status st = aq_calib_seqs(tok, d, tune_max_len(tu, m), (size_t)tu->docs, pool, err);
    if (st != AQ_OK) aq_error_prefix(err, "global tuning");
    return st;
}

/* The ranks of step k's chunks: longest first (ties by index) to the rank with
 * the fewest tokens so far (ties: lowest rank). Only the work balance depends
 * on it; the sum is in chunk order whatever the owner. */
static void assign_chunks(const aq_seqs *pool, int B, int k, size_t n_chunks, int size, int *chunk_rank,
                          size_t *order, double *load)
{
    size_t n_doc = (size_t)pool->n;
    double *tok = load + size; /* load[0, size): tokens per rank; tok[n_chunks]: tokens per chunk */
    for (size_t c = 0; c < n_chunks; c++) {
        order[c] = c;
        tok[c] = 0;
        for (int i = (int)c * AQ_TUNE_CHUNK; i < B && i < (int)(c + 1) * AQ_TUNE_CHUNK; i++)
            tok[c] += pool->lens[((size_t)k * (size_t)B + (size_t)i) % n_doc];
    }
    for (size_t a = 1; a < n_chunks; a++) /* insertion sort: n_chunks is --tune-batch, small */
        for (size_t j = a; j > 0 && tok[order[j]] > tok[order[j - 1]]; j--) {
            size_t t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    for (int r = 0; r < size; r++) load[r] = 0;
    for (size_t j = 0; j < n_chunks; j++) {
        int best = 0;
        for (int r = 1; r < size; r++) best = load[r] < load[best] ? r : best;
        chunk_rank[order[j]] = best;
        load[best] += tok[order[j]];
    }
}

/* The buffers of the global steps (one run). */
typedef struct tune_run {
    aq_tuner *t;
    const aq_seqs *pool;
    int B, rank, size;
    size_t np, n_chunks, *order, *start; /* start: offset of each document in pool->tokens */
    int *chunk_rank, *toks, lens[AQ_TUNE_CHUNK];
    double *load, *part, *g; /* part: a slot per chunk (LPT may give one rank many) */
    const double **local;
    size_t my_chunks;
    double my_tok;
} tune_run;

static void run_free(tune_run *r)
{
    free(r->order);
    free(r->start);
    free(r->chunk_rank);
    free(r->toks);
    free(r->load);
    free(r->part);
    free(r->g);
    free(r->local);
}

static aq_status run_init(MPI_Comm comm, const aq_pipe_tune_opts *tu, aq_tuner *t, const aq_seqs *pool, tune_run *r,
                          aq_error *err)
{
    int rank, size, T = 0; /* T: the longest document, sizes a chunk's token buffer */
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    for (int i = 0; i < pool->n; i++) T = pool->lens[i] > T ? pool->lens[i] : T;
    size_t nc = ((size_t)tu->batch + AQ_TUNE_CHUNK - 1) / AQ_TUNE_CHUNK, np = aq_tuner_n_params(t);
    *r = (tune_run){.t = t, .pool = pool, .B = tu->batch, .rank = rank, .size = size, .np = np, .n_chunks = nc};
    r->order = malloc(nc * sizeof *r->order);
    r->start = malloc(((size_t)pool->n + 1) * sizeof *r->start);
    r->chunk_rank = malloc(nc * sizeof *r->chunk_rank);
    r->toks = malloc((size_t)AQ_TUNE_CHUNK * (size_t)T * sizeof *r->toks + 1);
    r->load = malloc((nc + (size_t)r->size) * sizeof *r->load);
    r->part = calloc(nc * (np + 1) + 1, sizeof *r->part);
    r->g = calloc(np + 1, sizeof *r->g);
    r->local = calloc(nc, sizeof *r->local);
    if (!r->order || !r->start || !r->chunk_rank || !r->toks || !r->load || !r->part || !r->g || !r->local)
        return aq_fail_nomem(err, "tuning chunks", nc * np * 8);
    for (size_t i = 0, at = 0; i < (size_t)pool->n; at += (size_t)pool->lens[i++]) r->start[i] = at;
    return AQ_OK;
}

/* Step k's gradients of this rank's chunks into their slots of r->part. */
static aq_status step_chunks(tune_run *r, int k, aq_error *err)
{
    size_t n_doc = (size_t)r->pool->n;
    assign_chunks(r->pool, r->B, k, r->n_chunks, r->size, r->chunk_rank, r->order, r->load);
    for (size_t ch = 0; ch < r->n_chunks; ch++) {
        r->local[ch] = r->chunk_rank[ch] == r->rank ? r->part + ch * (r->np + 1) : NULL;
        if (!r->local[ch]) continue;
        int d0 = (int)ch * AQ_TUNE_CHUNK, nd = r->B - d0 < AQ_TUNE_CHUNK ? r->B - d0 : AQ_TUNE_CHUNK;
        size_t at = 0;
        for (int i = 0; i < nd; i++) {
            size_t doc = ((size_t)k * (size_t)r->B + (size_t)(d0 + i)) % n_doc;
            r->lens[i] = r->pool->lens[doc];
            memcpy(r->toks + at, r->pool->tokens + r->start[doc], (size_t)r->lens[i] * sizeof *r->toks);
            at += (size_t)r->lens[i];
        }
        r->my_chunks++;
        r->my_tok += (double)at;
        AQ_TRY(aq_tuner_grad(r->t, r->toks, r->lens, nd, (double *)r->local[ch], err));
    }
    return AQ_OK;
}

/* Steps over the pool: step k (0-based) uses documents (k*batch + i) mod n. */
static aq_status run_steps(MPI_Comm comm, const aq_pipe_tune_opts *tu, aq_tuner *t, const aq_seqs *pool,
                           aq_pipe_tuned *out, aq_error *err)
{
    tune_run r;
    aq_status st = run_init(comm, tu, t, pool, &r, err);
    double t0 = aq_progress_now();
    int every = tu->steps >= 10 ? tu->steps / 10 : 1;
    if (r.rank == 0 && st == AQ_OK)
        fprintf(stderr, "adaquant: tuning %zu parameters: %d steps of %d documents (pool %d documents, %zu tokens)\n",
                r.np, tu->steps, r.B, pool->n, pool->n_tokens);
    for (int k = 0; st == AQ_OK && k < tu->steps; k++) {
        char what[48];
        snprintf(what, sizeof what, "step %d of %d", k, tu->steps);
        st = aq_dist_failpoint("tune", k, r.rank, what, err); /* test hook; a bad spec is agreed below */
        if (st == AQ_OK) st = aq_tuner_apply(t, err);
        double n_tok = 0.0;
        for (int i = 0; i < r.B; i++) n_tok += pool->lens[((size_t)k * (size_t)r.B + (size_t)i) % (size_t)pool->n];
        if (st == AQ_OK) st = step_chunks(&r, k, err);
        st = aq_pipe_agree(comm, st, err);
        if (st == AQ_OK) st = aq_dist_reduce_chunks(comm, 0, r.n_chunks, r.chunk_rank, r.local, r.np + 1, r.g, err);
        if (st == AQ_OK) MPI_Bcast(r.g, (int)(r.np + 1), MPI_DOUBLE, 0, comm);
        if (st != AQ_OK) break;
        double kl = r.g[r.np] / n_tok;
        if (!isfinite(kl)) {
            st = aq_fail(err, AQ_ERR_NUMERIC, "global tuning diverged at step %d of %d (batch KL %g): lower --tune-lr (%g)",
                         k + 1, tu->steps, kl, tu->lr);
            break;
        }
        if (k == 0) out->kl_first = kl;
        out->kl_last = kl;
        aq_tuner_adam(t, r.g, k + 1, tu->steps, tu->lr, n_tok);
        if (r.rank == 0 && ((k + 1) % every == 0 || k + 1 == tu->steps)) {
            double el = aq_progress_now() - t0;
            fprintf(stderr, "adaquant: tune step %d/%d  KL %.5f  %.0f s, ETA %.0f s\n", k + 1, tu->steps, kl, el,
                    el / (k + 1) * (tu->steps - k - 1));
        }
    }
    if (st == AQ_OK) st = aq_tuner_apply(t, err);
    if (st == AQ_OK) /* the per-rank work: every rank takes part when --tune-batch >= ranks */
        fprintf(stderr, "adaquant: tune: rank %d of %d computed %zu chunks (%.0f tokens) in %.1f s\n", r.rank, r.size,
                r.my_chunks, r.my_tok, aq_progress_now() - t0);
    run_free(&r);
    return st;
}

aq_status aq_pipe_tune(MPI_Comm comm, const aq_pipe_plan *p, const aq_pipe_tune_opts *tu, const aq_seqs *pool,
                       aq_model *m, aq_layer_result *v, aq_pipe_tuned *out, aq_error *err)
{
    memset(out, 0, sizeof *out);
    int rank;
    MPI_Comm_rank(comm, &rank);
    if (tu->steps <= 0) return AQ_OK; /* nothing to tune: the write stage installs v lazily */
    if (tu->batch < 1 || !(tu->lr > 0))
        return aq_fail(err, AQ_ERR_ARG, "global tuning: batch %d and learning rate %g must be positive", tu->batch,
                       tu->lr);
    aq_tuner *t = NULL;
    aq_tune_layer *lay = malloc((size_t)p->n_layers * sizeof *lay);
    aq_status st = lay ? AQ_OK : aq_fail_nomem(err, "tuning layers", (size_t)p->n_layers);
    for (int l = 0; st == AQ_OK && l < p->n_layers; l++)
        lay[l] = (aq_tune_layer){p->layers[l].block, (aq_linear)p->layers[l].which};
    int mode = aq_pipe_tune_mode(tu, m);
    if (rank == 0)
        fprintf(stderr, "adaquant: tuning mode %s (%s)\n", aq_pipe_tune_mode_name(mode),
                tu->mode == AQ_TUNE_AUTO ? "the default for this model's size" : "--tune-mode");
    if (st == AQ_OK && mode == AQ_TUNE_BLOCK) st = blockwise_rows(comm, p, tu, pool, m, v, out, err);
    if (st == AQ_OK && mode != AQ_TUNE_BLOCK) st = aq_tuner_new(m, p->n_layers, lay, v, &t, err);
    if (st == AQ_OK && mode != AQ_TUNE_BLOCK) st = run_steps(comm, tu, t, pool, out, err);
    if (st == AQ_OK) {
        out->steps = tu->steps;
        out->docs = pool->n;
        out->tokens = pool->n_tokens;
        out->max_len = tune_max_len(tu, m);
        out->mode = mode;
    } else {
        memset(out, 0, sizeof *out);
    }
    aq_tuner_free(t);
    free(lay);
    return st;
}

int aq_pipe_tune_mode(const aq_pipe_tune_opts *tu, const aq_model *m)
{
    if (tu->mode != AQ_TUNE_AUTO) return tu->mode;
    return aq_block_params(aq_model_config(m)) <= AQ_TUNE_GLOBAL_MAX_PARAMS ? AQ_TUNE_GLOBAL : AQ_TUNE_BLOCK;
}

const char *aq_pipe_tune_mode_name(int mode)
{
    return mode == AQ_TUNE_BLOCK ? "block" : "global";
}
