/* plan_hook.c — `quantize` checks the planner on every run that has kernel
 * rates at hand: it prints the plan's prediction before the work and the
 * measured phase times beside it at the end (plan.h, docs/PLAN.md). The rates
 * are never measured here (that costs seconds): they come from
 * WORK/plan_rates.json, which `adaquant plan --work WORK` writes, or from
 * the file named by AQ_PLAN_RATES. */
#include <stdlib.h>
#include <string.h>

#include "../../src/text/textdata.h"
#include "../../src/text/tokenizer.h"
#include "plan.h"

static void docs_stats(const aq_seqs *s, aq_plan_docs *d)
{
    d->n = s->n, d->tokens = (double)s->n_tokens, d->sq = 0;
    for (int i = 0; i < s->n; i++) d->sq += (double)s->lens[i] * s->lens[i];
}

aq_status aq_plan_data_docs(const aq_pipe_cfg *c, const aq_pipe_out *o, const aq_llama_config *m, aq_plan_docs *tune,
                            aq_plan_docs *eval, aq_error *err)
{
    aq_tokenizer *tok;
    AQ_TRY(aq_tok_open(c->tokenizer, m->vocab_size, &tok, err));
    aq_docs d;
    aq_seqs ev = {0}, tu = {0};
    aq_status st = aq_docs_load(&c->data, &d, err);
    if (st == AQ_OK) {
        st = aq_eval_seqs(tok, &d, o->eval_len, (size_t)(o->eval_docs > 0 ? o->eval_docs : 0), &ev, err);
        int len = o->tune.max_len < m->max_seq_len ? o->tune.max_len : m->max_seq_len; /* stage_tune.c */
        if (st == AQ_OK) st = aq_calib_seqs(tok, &d, len, (size_t)o->tune.docs, &tu, err);
        aq_docs_free(&d);
    }
    if (st == AQ_OK) docs_stats(&ev, eval), docs_stats(&tu, tune);
    aq_seqs_free(&ev);
    aq_seqs_free(&tu);
    aq_tok_close(tok);
    return st;
}

void aq_plan_hook_begin(const aq_pipe_cfg *c, const aq_pipe_out *o, int ranks, aq_plan_hook *h, FILE *log)
{
    memset(h, 0, sizeof *h);
    char path[AQ_PIPE_PATH + 32];
    const char *env = getenv("AQ_PLAN_RATES");
    snprintf(path, sizeof path, "%s/plan_rates.json", c->work);
    aq_plan_rates r;
    aq_error e = {0};
    if (aq_plan_rates_read(env && *env ? env : path, &r, &e) != AQ_OK) return; /* no rates: no plan */
    aq_plan_input in = {.cfg = c, .out = o, .ranks = ranks, .read_rate = AQ_PLAN_READ_RATE};
    aq_checkpoint *ck;
    aq_status st = aq_ckpt_open(c->model, &ck, &e);
    if (st == AQ_OK) {
        st = aq_ckpt_llama_config(ck, &in.m, &e);
        aq_ckpt_close(ck);
    }
    if (st == AQ_OK) st = aq_plan_data_docs(c, o, &in.m, &in.tune, &in.eval, &e);
    r.probe = aq_plan_probe_gemm, r.probe_ctx = &r;
    aq_plan_measured meas = {0}; /* an earlier run's per-task seconds in this work directory */
    aq_error me = {0};
    snprintf(path, sizeof path, "%s/task_seconds.json", c->work);
    if (st == AQ_OK && aq_plan_measured_read(path, &meas, &me) == AQ_OK) in.measured = &meas;
    if (st == AQ_OK) st = aq_plan_compute(&in, &r, &h->p, &e);
    aq_plan_measured_free(&meas);
    if (st != AQ_OK) {
        fprintf(log, "adaquant: plan: no prediction: %s\n", e.msg);
        return;
    }
    h->on = 1;
    fprintf(log, "adaquant: plan (rates of kernel %s): predicted", r.kernel);
    for (int k = 0; k < AQ_PLAN_NPHASES; k++)
        fprintf(log, " %s %.2f s,", aq_plan_phase_name(k), h->p.ph[k].seconds);
    fprintf(log, " total %.2f s on %d rank%s\n", h->p.makespan, ranks, ranks > 1 ? "s" : "");
    if (h->p.n_coop_tasks && h->p.coop_ranks > 1 && h->p.coop_ranks <= ranks)
        fprintf(log, "adaquant: plan: calibrate's cooperative phase %.2f s: %d tasks on sub-grids of %d ranks\n",
                h->p.coop_phase, h->p.n_coop_tasks, h->p.coop_ranks);
}

void aq_plan_hook_end(const aq_plan_hook *h, const aq_pipe_timing *t, FILE *log)
{
    if (!h->on) return;
    double meas[AQ_PLAN_NPHASES] = {t->capture, t->calibrate, t->solve, t->tune, t->eval, t->write}, total = 0;
    fprintf(log, "adaquant: plan vs measured:");
    for (int k = 0; k < AQ_PLAN_NPHASES; k++) {
        double p = h->p.ph[k].seconds;
        total += meas[k];
        fprintf(log, " %s %.2f s (predicted %.2f s%s", aq_plan_phase_name(k), meas[k], p, meas[k] > 0.5 ? ", " : ")");
        if (meas[k] > 0.5) fprintf(log, "%+.0f%%)", 100 * (p / meas[k] - 1));
        fputc(k + 1 < AQ_PLAN_NPHASES ? ',' : '\n', log);
    }
    fprintf(log, "adaquant: plan vs measured: total %.2f s (predicted %.2f s, %+.0f%%)\n", total, h->p.makespan,
            total > 0 ? 100 * (h->p.makespan / total - 1) : 0.0);
    if (t->coop > 0 || (h->p.n_coop_tasks && h->p.coop_ranks > 1 && h->p.coop_ranks <= t->ranks))
        fprintf(log, "adaquant: plan vs measured: calibrate's cooperative phase %.2f s (predicted %.2f s)\n", t->coop,
                h->p.coop_phase);
}
