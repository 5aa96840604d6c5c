/* plan_print.c — the report of `adaquant plan` (text and JSON, plan.h) and
 * the CBC timing on a synthetic loss table of the planned task list. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../solver/allocate.h"
#include "../../src/model/model.h"
#include "plan.h"

static void human_bytes(double b, char *out, size_t n)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int k = 0;
    while (b >= 1024 && k < 5) b /= 1024, k++;
    snprintf(out, n, k ? "%.1f %s" : "%.0f %s", b, u[k]);
}

static void human_time(double s, char *out, size_t n)
{
    if (s < 120) snprintf(out, n, "%.2f s", s);
    else if (s < 7200) snprintf(out, n, "%.1f min", s / 60);
    else if (s < 172800) snprintf(out, n, "%.1f h", s / 3600);
    else snprintf(out, n, "%.1f d", s / 86400);
}

static void print_tasks(FILE *f, const aq_plan_input *in, const aq_plan *p)
{
    size_t n_lin = (size_t)p->n_layers * (size_t)p->n_options;
    fprintf(f, "tasks: %d layers (%d blocks x 7 linears) x %d options", p->n_layers, in->m.n_layers, p->n_options);
    if (p->n_tasks > n_lin) /* the tensor menu: embedding (and an untied classifier) x its options */
        fprintf(f, " + %zu embedding/classifier tasks", p->n_tasks - n_lin);
    fprintf(f, " = %zu tasks; %.4g GFLOP of AdaQuant iterations\n", p->n_tasks, p->total_flops / 1e9);
    fprintf(f, "  %-10s %7s %7s %11s %19s %11s  %s\n", "linear", "d_out", "d_in", "GFLOP/task", "task seconds",
            "task memory", "cooperative?");
    for (int w = 0; w < AQ_LIN_COUNT; w++) {
        const aq_plan_class *k = &p->cls[w];
        char mem[32], a[32], b[32], why[64] = "no";
        human_bytes(k->mem, mem, sizeof mem);
        human_time(k->seconds_min, a, sizeof a);
        human_time(k->seconds_max, b, sizeof b);
        if (k->coop_seconds > 0) {
            human_time(k->coop_seconds, a, sizeof a);
            snprintf(why, sizeof why, "yes: %s on %d ranks", a, p->coop_ranks);
        } else if (k->coop_time || k->coop_mem) {
            snprintf(why, sizeof why, "yes (%s%s%s)", !k->coop_time ? "" : p->coop_ranks > 1 ? "--coop-ranks" : "> total/P",
                     k->coop_time && k->coop_mem ? ", " : "", k->coop_mem ? "> memory per rank" : "");
        }
        fprintf(f, "  %-10s %7d %7d %11.4g %9s..%-9s %11s  %s\n", k->name, k->d_out, k->d_in, k->flops / 1e9, a, b,
                mem, why);
    }
}

void aq_plan_print(FILE *f, const aq_plan_input *in, const aq_plan *p, const aq_plan_rates *r)
{
    char a[32], b[32], c[32];
    fprintf(f, "plan: %s, dim %d, hidden %d, %d blocks, heads %d/%d, vocab %d: %.4g B parameters (%.4g B quantized)\n",
            aq_model_type_name(in->m.model_type), in->m.dim, in->m.hidden_dim, in->m.n_layers, in->m.n_heads,
            in->m.n_kv_heads, in->m.vocab_size, p->model_params / 1e9, p->params / 1e9);
    human_bytes(in->mem_per_rank, a, sizeof a);
    fprintf(f, "run: P = %d ranks, %s per rank, %d windows x %d tokens, iters %d, starts %d, polish %d, init %s, "
               "KL windows %d, tune %d steps x %d documents; rates: BLIS kernel %s\n",
            in->ranks, in->mem_per_rank > 0 ? a : "unlimited memory", in->cfg->windows, in->cfg->seq_len,
            in->cfg->iters, in->cfg->starts, in->cfg->polish, aq_pipe_init_name(in->cfg->init_gptq),
            in->cfg->kl_windows, in->out->tune.steps, in->out->tune.batch, r->kernel);
    print_tasks(f, in, p);
    fprintf(f, "phases (memory per rank: the pipeline's bound, docs/MEMORY.md, without the process base):\n");
    fprintf(f, "  %-10s %11s %11s %11s %6s %11s\n", "phase", "predicted", "1 rank", "lower bnd", "eff", "mem/rank");
    for (int k = 0; k < AQ_PLAN_NPHASES; k++) {
        const aq_plan_phase *ph = &p->ph[k];
        char m[32];
        human_time(ph->seconds, a, sizeof a);
        human_time(ph->work, b, sizeof b);
        human_time(ph->lower_bound, c, sizeof c);
        human_bytes(ph->mem, m, sizeof m);
        fprintf(f, "  %-10s %11s %11s %11s %5.0f%% %11s\n", aq_plan_phase_name(k), a, b, c,
                ph->seconds > 0 ? 100 * ph->work / (in->ranks * ph->seconds) : 100.0, m);
    }
    human_time(p->makespan, a, sizeof a);
    human_time(p->lower_bound, b, sizeof b);
    fprintf(f, "total: %s predicted, lower bound %s, efficiency %.0f%%\n", a, b, 100 * p->efficiency);
    human_time(p->task_total / in->ranks, a, sizeof a);
    human_time(p->task_longest, b, sizeof b);
    human_time(p->ph[AQ_PLAN_CALIBRATE].seconds, c, sizeof c);
    fprintf(f, "calibrate: task work / P = %s, longest task %s, scheduled (LPT + dynamic tail) %s", a, b, c);
    human_time(p->calibrate_by_seconds, c, sizeof c);
    fprintf(f, " (%s if scheduled by these predictions)\n", c);
    human_bytes(p->peak_mem, a, sizeof a);
    human_bytes(p->model_bytes, b, sizeof b);
    fprintf(f, "memory: peak %s per rank (the lazy model; all F32 weights would be %s)%s\n", a, b,
            p->fits ? "" : "; DOES NOT FIT the memory per rank");
    if (p->coop_ranks > 1)
    {
        human_time(p->coop_phase, a, sizeof a);
        fprintf(f, "cooperative: %d tasks run on sub-grids of --coop-ranks %d (cost > %g x total / %d%s%s)%s%s\n",
                p->n_coop_tasks, p->coop_ranks, in->cfg->coop_threshold, p->coop_ranks,
                in->mem_per_rank > 0 ? ", or over the memory per rank alone" : "",
                p->coop_ranks > in->ranks ? "; needs P >= Q: none at this P" : "",
                p->n_coop_tasks ? "; the cooperative phase " : "", p->n_coop_tasks ? a : "");
        if (p->n_spare_tasks)
            fprintf(f, "cooperative: the %d rank%s outside the groups run %d single-rank tasks meanwhile\n",
                    p->ranks % p->coop_ranks, p->ranks % p->coop_ranks > 1 ? "s" : "", p->n_spare_tasks);
    }
    else if (p->n_coop_tasks)
        fprintf(f, "cooperative: %d tasks exceed total/P or one rank's memory (candidates for --coop-ranks)\n",
                p->n_coop_tasks);
    if (p->n_measured)
        fprintf(f, "calibrate: %zu tasks from measured seconds (an earlier run), the others' model x %.3g\n",
                p->n_measured, p->measured_scale);
}

static json_t *phase_json(const aq_plan_phase *ph, int ranks)
{
    json_t *o = json_object();
    json_object_set_new(o, "seconds", json_real(ph->seconds));
    json_object_set_new(o, "one_rank_seconds", json_real(ph->work));
    json_object_set_new(o, "lower_bound", json_real(ph->lower_bound));
    json_object_set_new(o, "efficiency", json_real(ph->seconds > 0 ? ph->work / (ranks * ph->seconds) : 1));
    json_object_set_new(o, "mem_bytes", json_real(ph->mem));
    return o;
}

void aq_plan_print_json(FILE *f, const aq_plan_input *in, const aq_plan *p, const aq_plan_rates *r)
{
    json_t *o = json_object(), *cls = json_array(), *ph = json_object();
    json_object_set_new(o, "format", json_string("adaquant-plan"));
    json_object_set_new(o, "version", json_integer(1));
    json_object_set_new(o, "ranks", json_integer(in->ranks));
    json_object_set_new(o, "mem_per_rank", json_real(in->mem_per_rank));
    json_object_set_new(o, "kernel", json_string(r->kernel));
    json_object_set_new(o, "layers", json_integer(p->n_layers));
    json_object_set_new(o, "options", json_integer(p->n_options));
    json_object_set_new(o, "tasks", json_integer((json_int_t)p->n_tasks));
    json_object_set_new(o, "params", json_integer((json_int_t)p->params));
    json_object_set_new(o, "model_params", json_integer((json_int_t)p->model_params));
    json_object_set_new(o, "adaquant_flops", json_real(p->total_flops));
    for (int w = 0; w < AQ_LIN_COUNT; w++) {
        const aq_plan_class *k = &p->cls[w];
        json_t *c = json_object();
        json_object_set_new(c, "name", json_string(k->name));
        json_object_set_new(c, "d_out", json_integer(k->d_out));
        if (k->coop_seconds > 0) json_object_set_new(c, "coop_seconds", json_real(k->coop_seconds));
        json_object_set_new(c, "d_in", json_integer(k->d_in));
        json_object_set_new(c, "flops_per_task", json_real(k->flops));
        json_object_set_new(c, "seconds_min", json_real(k->seconds_min));
        json_object_set_new(c, "seconds_max", json_real(k->seconds_max));
        json_object_set_new(c, "mem_bytes", json_real(k->mem));
        json_object_set_new(c, "cooperative_time", json_boolean(k->coop_time));
        json_object_set_new(c, "cooperative_mem", json_boolean(k->coop_mem));
        json_array_append_new(cls, c);
    }
    json_object_set_new(o, "classes", cls);
    for (int k = 0; k < AQ_PLAN_NPHASES; k++) json_object_set_new(ph, aq_plan_phase_name(k), phase_json(&p->ph[k], in->ranks));
    json_object_set_new(o, "phases", ph);
    json_object_set_new(o, "makespan", json_real(p->makespan));
    json_object_set_new(o, "lower_bound", json_real(p->lower_bound));
    json_object_set_new(o, "efficiency", json_real(p->efficiency));
    json_object_set_new(o, "task_total_seconds", json_real(p->task_total));
    json_object_set_new(o, "task_longest_seconds", json_real(p->task_longest));
    json_object_set_new(o, "calibrate_if_scheduled_by_prediction", json_real(p->calibrate_by_seconds));
    json_object_set_new(o, "peak_mem_bytes", json_real(p->peak_mem));
    json_object_set_new(o, "model_bytes", json_real(p->model_bytes));
    json_object_set_new(o, "fits", json_boolean(p->fits));
    json_object_set_new(o, "cooperative_tasks", json_integer(p->n_coop_tasks));
    if (p->coop_ranks > 1) json_object_set_new(o, "coop_ranks", json_integer(p->coop_ranks));
    if (p->coop_ranks > 1) json_object_set_new(o, "coop_tasks", json_integer(p->n_coop_tasks));
    if (p->coop_ranks > 1) json_object_set_new(o, "coop_phase_seconds", json_real(p->coop_phase));
    if (p->coop_ranks > 1) json_object_set_new(o, "coop_spare_tasks", json_integer(p->n_spare_tasks));
    if (p->n_measured) {
        json_object_set_new(o, "measured_tasks", json_integer((json_int_t)p->n_measured));
        json_object_set_new(o, "measured_scale", json_real(p->measured_scale));
    }
    json_dumpf(o, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    fputc('\n', f);
    json_decref(o);
}

/* ---- CBC on a synthetic table ------------------------------------------- */

static uint64_t lcg_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 11;
}

static aq_status synth_table(const aq_llama_config *m, const aq_pipe_cfg *c, aq_alloc_table *t, aq_error *err)
{
    aq_pipe_plan tp;
    AQ_TRY(aq_pipe_plan_build_config(c, m, &tp, err));
    uint64_t s = 14;
    aq_status st = AQ_OK;
    for (int l = 0; st == AQ_OK && l < tp.n_layers; l++) {
        const aq_pipe_layer *L = &tp.layers[l];
        /* a layer's sensitivity spans three decades; each option's loss ~ 4^-bits
         * (MSE of uniform rounding) with 20% noise */
        double scale = pow(10, 3.0 * (double)lcg_next(&s) / 9007199254740992.0);
        for (int k = 0; st == AQ_OK && k < c->n_options; k++) {
            aq_layer_opts o;
            aq_layer_opts_default(&o);
            st = aq_layer_opts_parse(c->options[k], &o, err);
            double noise = 0.8 + 0.4 * (double)lcg_next(&s) / 9007199254740992.0;
            double loss = scale * pow(4, -o.w_bits) * (o.a_bits < 16 ? 1 + pow(4, 8 - o.a_bits) : 1) * noise;
            int64_t params = (int64_t)L->d_out * L->d_in;
            if (st == AQ_OK)
                st = aq_alloc_table_add(t, L->name, c->options[k], params, o.w_bits, o.a_bits, params, loss, 0, 0, err);
        }
    }
    aq_pipe_plan_free(&tp);
    return st;
}

aq_status aq_plan_time_solve(const aq_llama_config *m, const aq_pipe_cfg *c, double target_bits, double bops_frac,
                             double *seconds, int *optimal, double *gap, aq_error *err)
{
    aq_alloc_table t;
    aq_alloc_table_init(&t);
    aq_status st = synth_table(m, c, &t, err);
    aq_alloc_spec sp;
    memset(&sp, 0, sizeof sp);
    sp.objective = AQ_ALLOC_MIN_LOSS;
    sp.size_unit = AQ_SIZE_AVG_BITS;
    sp.size_budget = target_bits;
    if (bops_frac > 0) {
        double bops = 0; /* all layers at w8a8 */
        for (size_t i = 0; i < t.n_rows; i += (size_t)c->n_options) bops += (double)t.rows[i].params * 64;
        sp.has_max_bops = 1;
        sp.max_bops = bops_frac * bops;
    }
    aq_alloc_solution sol;
    memset(&sol, 0, sizeof sol);
    if (st == AQ_OK) st = aq_alloc_solve(&t, &sp, &sol, err);
    if (st == AQ_OK) {
        *seconds = sol.seconds;
        *optimal = sol.status == AQ_ALLOC_OPTIMAL;
        *gap = sol.gap;
        aq_alloc_solution_free(&sol);
    }
    aq_alloc_table_free(&t);
    return st;
}
