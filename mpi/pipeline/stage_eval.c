/* stage_eval.c — the FP-vs-quantized evaluation of the write stage, spread
 * over the ranks: the evaluation documents are cut into FIXED chunks of
 * AQ_EVAL_CHUNK documents, each rank scores a contiguous block of chunks, and
 * rank 0 adds the per-chunk sums in chunk order. The per-chunk vectors travel
 * through MPI_Reduce(SUM) with zeros in every slot a rank does not own
 * (x + 0 = x exactly), so the totals are the same bits for any P. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fixed_chunks.h"
#include "../../src/model/eval.h"
#include "ordered_sum.h"
#include "stage_eval.h"

#define NF 5 /* nll_fp, nll_q, kl_sum, agree, n_predicted */

static aq_status eval_chunk(aq_model *m, const aq_seqs *all, size_t d0, size_t d1, size_t tok0, double *out,
                            aq_error *err)
{
    aq_seqs s = {.n = (int)(d1 - d0), .lens = all->lens + d0, .tokens = all->tokens + tok0};
    for (size_t d = d0; d < d1; d++) {
        s.n_tokens += (size_t)all->lens[d];
        s.n_predicted += (size_t)all->lens[d] - 1;
    }
    aq_eval_opts o = {.compare_quantized = 1};
    aq_eval_result r;
    AQ_TRY(aq_eval_run(m, &s, &o, &r, err));
    out[0] = r.nll_fp;
    out[1] = r.nll_q;
    out[2] = r.kl_mean * (double)r.n_predicted;
    out[3] = round(r.top1_agree * (double)r.n_predicted);
    out[4] = (double)r.n_predicted;
    return AQ_OK;
}

aq_status aq_pipe_eval(MPI_Comm comm, aq_model *m, const aq_seqs *seqs, aq_pipe_eval_result *res, aq_error *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    size_t n_docs = (size_t)seqs->n, n_chunks = (n_docs + AQ_EVAL_CHUNK - 1) / AQ_EVAL_CHUNK, lo, hi;
    aq_dist_block_range(n_chunks, size, rank, &lo, &hi);
    double *mine = calloc(n_chunks * NF + 1, sizeof *mine), *all = calloc(n_chunks * NF + 1, sizeof *all);
    aq_status st = mine && all ? AQ_OK : aq_fail_nomem(err, "evaluation sums", n_chunks * NF * 8);
    size_t tok0 = 0;
    for (size_t ch = 0; st == AQ_OK && ch < hi; ch++) {
        size_t d0 = ch * AQ_EVAL_CHUNK, d1 = d0 + AQ_EVAL_CHUNK < n_docs ? d0 + AQ_EVAL_CHUNK : n_docs;
        if (ch >= lo) st = eval_chunk(m, seqs, d0, d1, tok0, mine + ch * NF, err);
        for (size_t d = d0; d < d1; d++) tok0 += (size_t)seqs->lens[d];
    }
    st = aq_pipe_agree(comm, st, err);
    if (st == AQ_OK) MPI_Reduce(mine, all, (int)(n_chunks * NF), MPI_DOUBLE, MPI_SUM, 0, comm);
    if (st == AQ_OK && rank == 0) {
        double s[NF] = {0};
        for (size_t ch = 0; ch < n_chunks; ch++)
            for (int f = 0; f < NF; f++) s[f] += all[ch * NF + f];
        memset(res, 0, sizeof *res);
        res->n_docs = n_docs;
        res->n_predicted = (size_t)s[4];
        res->ppl_fp = exp(s[0] / s[4]);
        res->ppl_q = exp(s[1] / s[4]);
        res->kl_mean = s[2] / s[4];
        res->top1_agree = s[3] / s[4];
    }
    free(mine);
    free(all);
    return st;
}
