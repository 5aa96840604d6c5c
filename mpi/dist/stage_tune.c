/* stage_tune.c — global tuning of the assembled quantized model (stage_tune.h):
 * Adam on the per-row scales (log-parametrised), zero points and biases of
 * every quantized linear and on the RMSNorm gains, minimising the mean
 * per-token KL(FP ‖ quantized) on calibration documents, with the integer codes
 * fixed. Gradients are per fixed chunk of documents, summed in chunk order. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/model/tune.h"
#include "../../src/text/textdata.h"
#include "driver.h"
#include "progress.h"
#include "reduce.h"
#include "stage_tune.h"

/* The layers of v as quantized-mode overrides of m (no tuning). */
static aq_status install_layers(aq_model *m, const aq_pipe_plan *p, const aq_layer_result *v, aq_error *err)
{
    for (int l = 0; l < p->n_layers; l++) {
        float *w = malloc(v[l].d_out * v[l].d_in * sizeof *w);
        if (!w) return aq_fail_nomem(err, "dequantised weight", v[l].d_out * v[l].d_in * 4);
        aq_status st = aq_tune_install_layer(m, p->layers[l].block, (aq_linear)p->layers[l].which, &v[l], w, err);
        free(w);
        AQ_TRY(st);
    }
    return AQ_OK;
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

/* Steps over the pool: step k (0-based) uses documents (k*batch + i) mod n. */
static aq_status run_steps(MPI_Comm comm, const aq_pipe_tune_opts *tu, aq_tuner *t, const aq_seqs *pool,
                           aq_pipe_tuned *out, aq_error *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int B = tu->batch, T = 0; /* T: the longest document, sizes a chunk's token buffer */
    for (int i = 0; i < pool->n; i++) T = pool->lens[i] > T ? pool->lens[i] : T;
    size_t np = aq_tuner_n_params(t);
    size_t n_chunks = ((size_t)B + AQ_TUNE_CHUNK - 1) / AQ_TUNE_CHUNK, lo, hi, n_doc = (size_t)pool->n;
    aq_dist_block_range(n_chunks, size, rank, &lo, &hi);
    int *chunk_rank = malloc(n_chunks * sizeof *chunk_rank);
    const double **local = calloc(n_chunks, sizeof *local);
    double *part = calloc((hi - lo) * (np + 1) + 1, sizeof *part), *g = calloc(np + 1, sizeof *g);
    int *toks = malloc((size_t)AQ_TUNE_CHUNK * (size_t)T * sizeof *toks), lens[AQ_TUNE_CHUNK];
    size_t *start = malloc((n_doc ? n_doc : 1) * sizeof *start); /* offset of each document in pool->tokens */
    aq_status st = chunk_rank && local && part && g && toks && start ? AQ_OK
                                                                     : aq_fail_nomem(err, "tuning chunks", np * 8);
    for (size_t i = 0, at = 0; st == AQ_OK && i < n_doc; at += (size_t)pool->lens[i++]) start[i] = at;
    for (int r = 0; st == AQ_OK && r < size; r++) {
        size_t a, b;
        aq_dist_block_range(n_chunks, size, r, &a, &b);
        for (size_t ch = a; ch < b; ch++) chunk_rank[ch] = r;
    }
    for (size_t ch = lo; st == AQ_OK && ch < hi; ch++) local[ch] = part + (ch - lo) * (np + 1);
    double t0 = aq_progress_now();
    int every = tu->steps >= 10 ? tu->steps / 10 : 1;
    if (rank == 0 && st == AQ_OK)
        fprintf(stderr, "adaquant: tuning %zu parameters: %d steps of %d documents (pool %zu documents, %zu tokens)\n",
                np, tu->steps, B, n_doc, pool->n_tokens);
    for (int k = 0; st == AQ_OK && k < tu->steps; k++) {
        char what[48];
        snprintf(what, sizeof what, "step %d of %d", k, tu->steps);
        st = aq_dist_failpoint("tune", k, rank, what, err); /* test hook; a bad spec is agreed below */
        if (st == AQ_OK) st = aq_tuner_apply(t, err);
        double n_tok = 0.0;
        for (int i = 0; i < B; i++) n_tok += pool->lens[((size_t)k * (size_t)B + (size_t)i) % n_doc];
        for (size_t ch = lo; st == AQ_OK && ch < hi; ch++) {
            int d0 = (int)ch * AQ_TUNE_CHUNK, nd = B - d0 < AQ_TUNE_CHUNK ? B - d0 : AQ_TUNE_CHUNK;
            size_t at = 0;
            for (int i = 0; i < nd; i++) {
                size_t doc = ((size_t)k * (size_t)B + (size_t)(d0 + i)) % n_doc;
                lens[i] = pool->lens[doc];
                memcpy(toks + at, pool->tokens + start[doc], (size_t)lens[i] * sizeof *toks);
                at += (size_t)lens[i];
            }
            st = aq_tuner_grad(t, toks, lens, nd, part + (ch - lo) * (np + 1), err);
        }
        st = aq_pipe_agree(comm, st, err);
        if (st == AQ_OK) st = aq_dist_reduce_chunks(comm, 0, n_chunks, chunk_rank, local, np + 1, g, err);
        if (st == AQ_OK) MPI_Bcast(g, (int)(np + 1), MPI_DOUBLE, 0, comm);
        if (st != AQ_OK) break;
        double kl = g[np] / n_tok;
        if (!isfinite(kl)) {
            st = aq_fail(err, AQ_ERR_NUMERIC, "global tuning diverged at step %d of %d (batch KL %g): lower --tune-lr (%g)",
                         k + 1, tu->steps, kl, tu->lr);
            break;
        }
        if (k == 0) out->kl_first = kl;
        out->kl_last = kl;
        aq_tuner_adam(t, g, k + 1, tu->steps, tu->lr, n_tok);
        if (rank == 0 && ((k + 1) % every == 0 || k + 1 == tu->steps)) {
            double el = aq_progress_now() - t0;
            fprintf(stderr, "adaquant: tune step %d/%d  KL %.5f  %.0f s, ETA %.0f s\n", k + 1, tu->steps, kl, el,
                    el / (k + 1) * (tu->steps - k - 1));
        }
    }
    if (st == AQ_OK) st = aq_tuner_apply(t, err);
    free(chunk_rank);
    free(local);
    free(part);
    free(g);
    free(toks);
    free(start);
    return st;
}

aq_status aq_pipe_tune(MPI_Comm comm, const aq_pipe_plan *p, const aq_pipe_tune_opts *tu, const aq_seqs *pool,
                       aq_model *m, aq_layer_result *v, aq_pipe_tuned *out, aq_error *err)
{
    memset(out, 0, sizeof *out);
    if (tu->steps <= 0) return install_layers(m, p, v, err);
    if (tu->batch < 1 || !(tu->lr > 0))
        return aq_fail(err, AQ_ERR_ARG, "global tuning: batch %d and learning rate %g must be positive", tu->batch,
                       tu->lr);
    aq_tuner *t = NULL;
    aq_tune_layer *lay = malloc((size_t)p->n_layers * sizeof *lay);
    aq_status st = lay ? AQ_OK : aq_fail_nomem(err, "tuning layers", (size_t)p->n_layers);
    for (int l = 0; st == AQ_OK && l < p->n_layers; l++)
        lay[l] = (aq_tune_layer){p->layers[l].block, (aq_linear)p->layers[l].which};
    if (st == AQ_OK) st = aq_tuner_new(m, p->n_layers, lay, v, &t, err);
    if (st == AQ_OK) st = run_steps(comm, tu, t, pool, out, err);
    if (st == AQ_OK) {
        out->steps = tu->steps;
        out->docs = pool->n;
        out->tokens = pool->n_tokens;
        out->max_len = tune_max_len(tu, m);
    } else {
        memset(out, 0, sizeof *out);
    }
    aq_tuner_free(t);
    free(lay);
    return st;
}
