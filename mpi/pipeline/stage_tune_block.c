/* stage_tune_block.c — block-wise tuning (docs/TUNE.md "Block-wise"): each
 * transformer block's quantized scales, zero points, biases and its two norm
 * gains are tuned by Adam against the FP block's output on the FP block's
 * inputs (block reconstruction), so blocks are independent: rank r tunes the
 * contiguous blocks aq_dist_block_range gives it, holding the residual stream
 * of the tuning tokens at one block boundary (input and target) and one
 * block's gradients; then every block's parameters are broadcast from the
 * rank that tuned it. A block's result does not depend on which rank ran it,
 * so the bytes are the same for any number of ranks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/model/block_fp.h"
#include "../../src/model/grad.h"
#include "../../src/model/tune.h"
#include "driver.h"
#include "progress.h"
#include "ordered_sum.h"
#include "stage_tune.h"

/* One block's tuning: its layers (indices into the plan) and copies of their
 * results (the tuner writes into them; v stays untuned until the broadcast). */
typedef struct blk_job {
    int block, n;
    aq_tune_layer lay[AQ_LIN_COUNT];
    int idx[AQ_LIN_COUNT];
    aq_layer_result tmp[AQ_LIN_COUNT];
} blk_job;

/* The documents of the pool used: the first ones whose tokens fit the byte
 * bound of the two residual planes (at least one document). */
static int pool_docs(const aq_seqs *pool, int dim, size_t *rows)
{
    size_t cap = AQ_TUNE_BLOCK_BYTES / (2 * sizeof(float) * (size_t)dim), r = 0;
    int n = 0;
    while (n < pool->n && (n == 0 || r + (size_t)pool->lens[n] <= cap)) r += (size_t)pool->lens[n++];
    *rows = r;
    return n;
}

static void job_free(blk_job *j)
{
    for (int i = 0; i < j->n; i++) {
        free(j->tmp[i].w_scale);
        free(j->tmp[i].w_zero);
        free(j->tmp[i].bias);
    }
}

static aq_status job_init(const aq_pipe_plan *p, const aq_layer_result *v, int block, blk_job *j, aq_error *err)
{
    memset(j, 0, sizeof *j);
    j->block = block;
    for (int l = 0; l < p->n_layers; l++) {
        if (p->layers[l].block != block) continue;
        if (j->n == AQ_LIN_COUNT) return aq_fail(err, AQ_ERR_ARG, "block tuning: block %d has too many layers", block);
        aq_layer_result *t = &j->tmp[j->n];
        *t = v[l]; /* codes and activation parameters shared, read-only */
        size_t n = v[l].d_out * sizeof(float);
        t->w_scale = malloc(n), t->w_zero = malloc(n), t->bias = malloc(n);
        j->idx[j->n] = l;
        j->lay[j->n++] = (aq_tune_layer){block, (aq_linear)p->layers[l].which};
        if (!t->w_scale || !t->w_zero || !t->bias) return aq_fail_nomem(err, "block tuning layers", n * 3);
        memcpy(t->w_scale, v[l].w_scale, n);
        memcpy(t->w_zero, v[l].w_zero, n);
        memcpy(t->bias, v[l].bias, n);
    }
    return AQ_OK;
}

/* The batch of step k: documents (k B + i) mod nd, their rows of x and y. */
static int gather(const aq_seqs *pool, const size_t *start, int nd, int B, int k, int D, const float *x,
                  const float *y, float *xb, float *yb, int *lens)
{
    size_t at = 0;
    int n_tok = 0;
    for (int i = 0; i < B; i++) {
        int doc = (int)(((size_t)k * (size_t)B + (size_t)i) % (size_t)nd);
        lens[i] = pool->lens[doc];
        memcpy(xb + at * D, x + start[doc] * D, (size_t)lens[i] * D * sizeof(float));
        memcpy(yb + at * D, y + start[doc] * D, (size_t)lens[i] * D * sizeof(float));
        at += (size_t)lens[i];
        n_tok += lens[i];
    }
    return n_tok;
}

typedef struct blk_data {
    const aq_seqs *pool;
    const size_t *start;
    int nd, longest;
    const float *x, *y;
} blk_data;

/* Adam on block j's reconstruction error; params[np] + {first, last} mean
 * error per token of the first and last step's batch. */
static aq_status tune_block(aq_model *m, const aq_pipe_tune_opts *tu, const blk_data *d, blk_job *j, double *params,
                            aq_error *err)
{
    int B = tu->batch, D = aq_model_config(m)->dim;
    aq_tuner *t = NULL;
    AQ_TRY(aq_tuner_new_block(m, j->block, j->n, j->lay, j->tmp, &t, err));
    size_t np = aq_tuner_n_params(t), rows = (size_t)B * (size_t)d->longest;
    float *ws = malloc(aq_model_block_grad_floats(m, rows, (size_t)d->longest) * sizeof *ws);
    float *xb = malloc(rows * (size_t)D * sizeof *xb), *yb = malloc(rows * (size_t)D * sizeof *yb);
    double *g = malloc((np + 1) * sizeof *g);
    int *lens = malloc((size_t)B * sizeof *lens);
    aq_status st = ws && xb && yb && g && lens ? AQ_OK : aq_fail_nomem(err, "block tuning batch", rows * D * 8);
    for (int k = 0; st == AQ_OK && k < tu->steps; k++) {
        st = aq_tuner_apply(t, err);
        int n_tok = gather(d->pool, d->start, d->nd, B, k, D, d->x, d->y, xb, yb, lens);
        if (st == AQ_OK) st = aq_tuner_block_grad(t, xb, yb, lens, B, ws, g, err);
        if (st != AQ_OK) break;
        double e = g[np] / n_tok;
        if (!isfinite(e)) {
            st = aq_fail(err, AQ_ERR_NUMERIC, "block tuning of block %d diverged at step %d (error %g): lower --tune-lr",
                         j->block, k + 1, e);
            break;
        }
        if (k == 0) params[np] = e;
        params[np + 1] = e;
        aq_tuner_adam(t, g, k + 1, tu->steps, tu->lr, (double)n_tok);
    }
    if (st == AQ_OK) memcpy(params, aq_tuner_params(t), np * sizeof *params);
    aq_tuner_free(t);
    free(ws);
    free(xb);
    free(yb);
    free(g);
    free(lens);
    return st;
}

/* Install block b's parameters (broadcast) on this rank: a tuner on the
 * untuned v sets v and m exactly as the tuning rank's did. */
static aq_status install_block(aq_model *m, const aq_pipe_plan *p, aq_layer_result *v, int b, const double *params,
                               size_t *np_out, aq_error *err)
{
    aq_tune_layer lay[AQ_LIN_COUNT];
    aq_layer_result sub[AQ_LIN_COUNT];
    int n = 0;
    for (int l = 0; l < p->n_layers && n < AQ_LIN_COUNT; l++)
        if (p->layers[l].block == b) sub[n] = v[l], lay[n++] = (aq_tune_layer){b, (aq_linear)p->layers[l].which};
    aq_tuner *t = NULL;
    AQ_TRY(aq_tuner_new_block(m, b, n, lay, sub, &t, err));
    *np_out = aq_tuner_n_params(t);
    if (params) memcpy(aq_tuner_params(t), params, *np_out * sizeof *params);
    aq_status st = params ? aq_tuner_apply(t, err) : AQ_OK; /* sub shares v's arrays: v is updated */
    aq_tuner_free(t);
    return st;
}

/* This rank's blocks [lo, hi): the residual at block lo, then per block its
 * FP output as target, the tuning, and the output as the next block's input.
 * params[b]: np_b + 2 doubles per block (NULL for other ranks' blocks). */
static aq_status tune_range(aq_model *m, const aq_pipe_plan *p, const aq_pipe_tune_opts *tu, const aq_seqs *pool,
                            const aq_layer_result *v, int lo, int hi, double **params, aq_error *err)
{
    int D = aq_model_config(m)->dim;
    size_t rows;
    blk_data d = {pool, NULL, pool_docs(pool, D, &rows), 0, NULL, NULL};
    float *x = malloc(rows * (size_t)D * sizeof *x), *y = malloc(rows * (size_t)D * sizeof *y);
    size_t *start = malloc((size_t)d.nd * sizeof *start);
    if (d.nd == 0) return aq_fail(err, AQ_ERR_ARG, "block tuning: no tuning documents");
    aq_status st = x && y && start ? AQ_OK : aq_fail_nomem(err, "block tuning residuals", rows * (size_t)D * 8);
    for (int i = 0, at = 0; st == AQ_OK && i < d.nd; at += pool->lens[i++]) {
        start[i] = (size_t)at;
        d.longest = pool->lens[i] > d.longest ? pool->lens[i] : d.longest;
    }
    d.start = start;
    if (st == AQ_OK) st = aq_block_run(m, pool->tokens, pool->lens, d.nd, 0, lo - 1, 0, NULL, x, 0, err);
    for (int b = lo; st == AQ_OK && b < hi; b++) {
        st = aq_block_run(m, pool->tokens, pool->lens, d.nd, b, b, 0, x, y, 0, err);
        d.x = x, d.y = y;
        blk_job j;
        memset(&j, 0, sizeof j);
        if (st == AQ_OK) st = job_init(p, v, b, &j, err);
        /* held across the steps: a lazy model converts the block once */
        if (st == AQ_OK && (st = aq_model_block_acquire(m, b, err)) == AQ_OK) {
            st = tune_block(m, tu, &d, &j, params[b], err);
            aq_model_block_release(m, b);
        }
        job_free(&j);
        float *tmp = x;
        x = y, y = tmp; /* the FP output is the next block's input */
    }
    free(x);
    free(y);
    free(start);
    return st;
}

aq_status aq_pipe_tune_blockwise(MPI_Comm comm, const aq_pipe_plan *p, const aq_pipe_tune_opts *tu,
                                 const aq_seqs *pool, aq_model *m, aq_layer_result *v, aq_pipe_tuned *out,
                                 aq_error *err)
{
    int rank, size, L = aq_model_config(m)->n_layers;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    size_t lo, hi, *np = calloc((size_t)L, sizeof *np);
    double **params = calloc((size_t)L, sizeof *params);
    aq_dist_block_range((size_t)L, size, rank, &lo, &hi);
    aq_status st = np && params ? AQ_OK : aq_fail_nomem(err, "block tuning", (size_t)L * 16);
    for (int b = 0; st == AQ_OK && b < L; b++) { /* the layout of every block, all ranks */
        st = install_block(m, p, v, b, NULL, &np[b], err);
        if (st == AQ_OK && !(params[b] = calloc(np[b] + 2, sizeof **params)))
            st = aq_fail_nomem(err, "block parameters", np[b] * 8);
    }
    double t0 = aq_progress_now();
    if (st == AQ_OK)
        fprintf(stderr, "adaquant: block-wise tuning: rank %d of %d tunes blocks %zu..%zu (%zu of %d)\n", rank, size, lo,
                hi - 1, hi - lo, L);
    if (st == AQ_OK && hi > lo) st = tune_range(m, p, tu, pool, v, (int)lo, (int)hi, params, err);
    if (st == AQ_OK)
        fprintf(stderr, "adaquant: block-wise tuning: rank %d done in %.1f s\n", rank, aq_progress_now() - t0);
    st = aq_pipe_agree(comm, st, err);
    out->kl_first = out->kl_last = 0.0;
    for (int b = 0; st == AQ_OK && b < L; b++) {
        size_t a, e;
        int owner = 0;
        for (int r = 0; r < size; r++) {
            aq_dist_block_range((size_t)L, size, r, &a, &e);
            if ((size_t)b >= a && (size_t)b < e) owner = r;
        }
        MPI_Bcast(params[b], (int)(np[b] + 2), MPI_DOUBLE, owner, comm);
        out->kl_first += params[b][np[b]];
        out->kl_last += params[b][np[b] + 1];
        st = install_block(m, p, v, b, params[b], &np[b], err);
    }
    for (int b = 0; params && b < L; b++) free(params[b]);
    free(params);
    free(np);
    return aq_pipe_agree(comm, st, err);
}
