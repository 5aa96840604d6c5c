/* eval.c — perplexity, KL(FP || Q) and top-1 agreement over packed sequences (eval.h). */
#include "eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* log-softmax of logits z[V] into lp (float64). */
static int log_softmax(const float *z, int V, double *lp)
{
    double mx = z[0], sum = 0.0;
    for (int i = 1; i < V; i++)
        mx = z[i] > mx ? z[i] : mx;
    for (int i = 0; i < V; i++)
        sum += exp((double)z[i] - mx);
    double lse = mx + log(sum);
    for (int i = 0; i < V; i++)
        lp[i] = (double)z[i] - lse;
    return isfinite(lse);
}

static int argmax(const float *z, int V)
{
    int a = 0;
    for (int i = 1; i < V; i++)
        if (z[i] > z[a]) a = i;
    return a;
}

typedef struct acc {
    double nll_fp, nll_q, kl;
    size_t agree;
} acc;

/* Score one batch: rows of lf (and lq) predict the next token within each sequence. */
static aq_status score(const int *tok, const int *lens, int nb, const float *lf, const float *lq,
                       int V, double *p, double *q, acc *a, aq_error *err)
{
    size_t r = 0;
    for (int s = 0; s < nb; s++, r++)
        for (int t = 0; t + 1 < lens[s]; t++, r++) {
            const float *zf = lf + r * (size_t)V;
            int next = tok[r + 1];
            if (!log_softmax(zf, V, p))
                return aq_fail(err, AQ_ERR_NUMERIC, "evaluation: non-finite FP logits");
            a->nll_fp -= p[next];
            if (!lq) continue;
            const float *zq = lq + r * (size_t)V;
            if (!log_softmax(zq, V, q))
                return aq_fail(err, AQ_ERR_NUMERIC, "evaluation: non-finite quantized logits");
            a->nll_q -= q[next];
            double kl = 0.0;
            for (int i = 0; i < V; i++)
                kl += exp(p[i]) * (p[i] - q[i]);
            a->kl += kl;
            a->agree += argmax(zf, V) == argmax(zq, V);
        }
    return AQ_OK;
}

aq_status aq_eval_run(aq_model *m, const aq_seqs *seqs, const aq_eval_opts *o, aq_eval_result *out,
                      aq_error *err)
{
    aq_eval_opts def = {0};
    if (!o) o = &def;
    memset(out, 0, sizeof *out);
    int V = aq_model_config(m)->vocab_size, cmp = o->compare_quantized;
    if (cmp && aq_model_override_count(m) == 0)
        return aq_fail(
            err, AQ_ERR_ARG,
            "evaluation: quantized comparison requested but no quantized layer is loaded");
    /* default: up to 4096 packed tokens per forward, and at most 16 M logits */
    size_t cap = o->max_batch_tokens ? o->max_batch_tokens : (size_t)(1 << 24) / (size_t)V;
    if (!o->max_batch_tokens && cap > 4096) cap = 4096;
    int longest = 1;
    for (int s = 0; s < seqs->n; s++)
        longest = seqs->lens[s] > longest ? seqs->lens[s] : longest;
    if (cap < (size_t)longest) cap = (size_t)longest;
    float *lf = malloc(cap * V * sizeof(float)), *lq = cmp ? malloc(cap * V * sizeof(float)) : NULL;
    double *p = malloc(2 * (size_t)V * sizeof(double));
    aq_status st = AQ_OK;
    if (!lf || !p || (cmp && !lq))
        st = aq_fail_nomem(err, "evaluation logits", 2 * cap * V * sizeof(float));
    acc a = {0};
    size_t off = 0;
    aq_forward_opts qo = {0};
    qo.quantized = 1;
    qo.stop_after_block = -1;
    for (int s0 = 0; st == AQ_OK && s0 < seqs->n;) {
        int nb = 0;
        size_t rows = 0;
        while (s0 + nb < seqs->n && rows + (size_t)seqs->lens[s0 + nb] <= cap)
            rows += (size_t)seqs->lens[s0 + nb++];
        const int *tok = seqs->tokens + off, *lens = seqs->lens + s0;
        st = aq_model_forward(m, tok, lens, nb, NULL, lf, err);
        if (st == AQ_OK && cmp) st = aq_model_forward(m, tok, lens, nb, &qo, lq, err);
        if (st == AQ_OK) st = score(tok, lens, nb, lf, lq, V, p, p + V, &a, err);
        if (st != AQ_OK) aq_error_prefix(err, "evaluation sequences %d..%d", s0, s0 + nb - 1);
        off += rows;
        s0 += nb;
        if (o->progress) o->progress(o->progress_ctx, (size_t)s0, (size_t)seqs->n);
    }
    free(lf);
    free(lq);
    free(p);
    if (st != AQ_OK) return st;
    out->n_docs = (size_t)seqs->n;
    out->n_predicted = seqs->n_predicted;
    double n = seqs->n_predicted ? (double)seqs->n_predicted : 1.0;
    out->nll_fp = a.nll_fp;
    out->ppl_fp = exp(a.nll_fp / n);
    if (cmp) {
        out->compared = 1;
        out->nll_q = a.nll_q;
        out->ppl_q = exp(a.nll_q / n);
        out->kl_mean = a.kl / n;
        out->top1_agree = (double)a.agree / n;
    }
    return AQ_OK;
}
