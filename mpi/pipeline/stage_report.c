/* stage_report.c — quantization.json, report.json, report.md and the two SVG
 * plots of OUTDIR. quantization.json holds only deterministic facts (no
 * timings, no rank count) so it is byte-identical across P and across the
 * quantize / stage / Slurm paths; the reports carry the run facts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "../../io/atomic_file.h"
#include "../../solver/report.h"
#include "../../src/blas/blas_kernel.h"
#include "pipeline_size.h"
#include "sens_loss.h"
#include "stage_report.h"
#include "stage_solve.h"

typedef struct totals {
    int64_t params, wbits_sum, size_bits;
    double loss;
} totals;

static const aq_loss_row *chosen(const aq_pipe_cfg *c, const aq_loss_row *rows, const int *choice, int l)
{
    return &rows[(size_t)l * c->n_options + choice[l]];
}

static json_t *layers_json(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_loss_row *rows,
                           const int *choice, const double *out_error, totals *tt)
{
    json_t *a = json_array();
    memset(tt, 0, sizeof *tt);
    for (int l = 0; l < p->n_layers; l++) {
        const aq_loss_row *r = chosen(c, rows, choice, l);
        json_t *o = json_object();
        json_object_set_new(o, "layer", json_string(p->layers[l].name));
        json_object_set_new(o, "option", json_string(c->options[choice[l]]));
        json_object_set_new(o, "w_bits", json_integer(r->w_bits));
        json_object_set_new(o, "a_bits", json_integer(r->a_bits));
        json_object_set_new(o, "params", json_integer(r->params));
        json_object_set_new(o, "d_out", json_integer(p->layers[l].d_out));
        json_object_set_new(o, "d_in", json_integer(p->layers[l].d_in));
        json_object_set_new(o, "loss", json_real(r->loss));
        if (isfinite(out_error[l])) json_object_set_new(o, "out_error", json_real(out_error[l]));
        json_object_set_new(o, "loss_rtn", json_real(r->loss_rtn));
        if (isfinite(r->loss_gptq)) json_object_set_new(o, "loss_gptq", json_real(r->loss_gptq));
        json_object_set_new(o, "size_bits", json_integer(r->size_bits));
        json_object_set_new(o, "bits_per_weight", json_real((double)r->size_bits / (double)r->params));
        json_array_append_new(a, o);
        tt->params += r->params;
        tt->wbits_sum += r->params * r->w_bits;
        tt->size_bits += r->size_bits;
        tt->loss += r->loss;
    }
    return a;
}

static json_t *budget_json(const aq_pipe_budget *b, const aq_pipe_size *sz)
{
    json_t *o = json_object();
    if (b->objective == AQ_ALLOC_MIN_SIZE) {
        json_object_set_new(o, "max_loss", json_real(b->max_loss));
    } else if (b->size_unit == AQ_SIZE_FP32_FRACTION) {
        json_object_set_new(o, "target_fp32_fraction", json_real(b->size_value));
    } else if (b->size_unit == AQ_SIZE_BYTES) {
        json_object_set_new(o, "target_size", json_integer(aq_pipe_budget_byte_value(b, sz)));
        if (b->bpw) json_object_set_new(o, "target_size_bpw", json_real(b->size_value));
    } else {
        json_object_set_new(o, "target_bits", json_real(b->size_value));
    }
    json_t *k = json_array();
    for (size_t i = 0; i < b->n_keep; i++) {
        char s[300];
        snprintf(s, sizeof s, "%s=%s", b->keep_regex[i], b->keep_opt[i]);
        json_array_append_new(k, json_string(s));
    }
    json_object_set_new(o, "keep", k);
    if (b->refine > 0) json_object_set_new(o, "refine", json_integer(b->refine));
    return o;
}

static json_t *tune_json(const aq_pipe_tune_opts *tu, const aq_pipe_tuned *tn)
{
    json_t *o = json_object();
    json_object_set_new(o, "steps", json_integer(tn->steps));
    if (tn->steps > 0) {
        json_object_set_new(o, "docs", json_integer(tn->docs));
        json_object_set_new(o, "tokens", json_integer((json_int_t)tn->tokens));
        json_object_set_new(o, "max_len", json_integer(tn->max_len));
        json_object_set_new(o, "batch", json_integer(tu->batch));
        json_object_set_new(o, "lr", json_real(tu->lr));
        json_object_set_new(o, "mode", json_string(aq_pipe_tune_mode_name(tn->mode)));
        json_object_set_new(o, "kl_first_step", json_real(tn->kl_first));
        json_object_set_new(o, "kl_last_step", json_real(tn->kl_last));
    }
    return o;
}

/* The tensor menu's choices: embedding (and untied classifier). */
static json_t *tensors_json(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_loss_row *rows,
                            const int *choice, const aq_pipe_size *sz)
{
    json_t *a = json_array();
    for (int e = 0; e < p->n_extra; e++) {
        int k = choice[p->n_layers + e]; /* >= 0: in the table under a budget in bytes */
        size_t i = p->n_lin_tasks + (size_t)e * (size_t)c->n_embed_options + (size_t)(k < 0 ? 0 : k);
        json_t *o = json_object();
        json_object_set_new(o, "tensor", json_string(p->extra[e].name));
        json_object_set_new(o, "option", json_string(k < 0 ? "f32" : c->embed_options[k]));
        json_object_set_new(o, "tied", json_boolean(p->tied && e == 0));
        json_object_set_new(o, "loss", json_real(rows[i].loss));
        json_object_set_new(o, "bytes", json_integer(sz->task_bytes[i]));
        json_array_append_new(a, o);
    }
    return a;
}

/* "files": the model files' exact bytes (pipeline_size.h) and bits per weight
 * over every weight of the model (llama.cpp's BPW). */
static json_t *files_json(const aq_pipe_size *sz, int64_t bytes, int64_t st_bytes)
{
    return json_pack("{s:I, s:I, s:I, s:I, s:f}", "bytes", (json_int_t)bytes, "model_safetensors",
                     (json_int_t)st_bytes, "config_and_tokenizer", (json_int_t)sz->side, "weights",
                     (json_int_t)sz->total_weights, "bits_per_weight", 8.0 * (double)bytes / (double)sz->total_weights);
}

/* "files" under --out-format gguf: model.gguf's exact bytes, and llama.cpp's
 * model size and BPW (llama_model_loader: ggml_nbytes and ggml_nelements
 * summed over every tensor of the file; padding and metadata not counted). */
static json_t *gguf_json(const aq_gguf_size *g)
{
    return json_pack("{s:s, s:I, s:I, s:I, s:f, s:f}", "format", "gguf", "bytes", (json_int_t)g->file,
                     "tensor_bytes", (json_int_t)g->tensor_bytes, "weights", (json_int_t)g->elements,
                     "bits_per_weight", 8.0 * (double)g->tensor_bytes / (double)g->elements, "file_bits_per_weight",
                     8.0 * (double)g->file / (double)g->elements);
}

static json_t *quant_json(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_budget *b,
                          const aq_loss_row *rows, const int *choice, const double *out_error,
                          const aq_pipe_tune_opts *tu, const aq_pipe_tuned *tn, const aq_pipe_size *sz,
                          int64_t bytes, int64_t st_bytes, totals *tt)
{
    json_t *o = json_object(), *opts = json_array(), *tot = json_object(), *cal = json_object();
    json_object_set_new(o, "format", json_string("adaquant-quantization"));
    json_object_set_new(o, "format_version", json_integer(AQ_PIPE_FORMAT_VERSION));
    for (int k = 0; k < c->n_options; k++) json_array_append_new(opts, json_string(c->options[k]));
    json_object_set_new(o, "options", opts);
    json_object_set_new(o, "budget", budget_json(b, sz));
    json_object_set_new(o, "files", files_json(sz, bytes, st_bytes));
    json_object_set_new(cal, "windows", json_integer(c->windows));
    json_object_set_new(cal, "seq_len", json_integer(c->seq_len));
    json_object_set_new(cal, "iters", json_integer(c->iters));
    json_object_set_new(cal, "starts", json_integer(c->starts));
    json_object_set_new(cal, "kl_windows", json_integer(c->kl_windows));
    char why[320];
    aq_pipe_loss_why(c, why, sizeof why);
    json_object_set_new(cal, "loss", json_string(aq_pipe_loss_name(c)));
    json_object_set_new(cal, "loss_why", json_string(why));
    json_object_set_new(cal, "polish", json_integer(c->polish));
    json_object_set_new(cal, "init", json_string(aq_pipe_init_name(c->init_gptq)));
    json_object_set_new(cal, "mode", json_string(c->sequential ? "sequential" : "parallel"));
    json_object_set_new(cal, "seed", json_integer((json_int_t)c->seed));
    json_object_set_new(o, "calibration", cal);
    json_object_set_new(o, "tune", tune_json(tu, tn));
    json_t *layers = layers_json(c, p, rows, choice, out_error, tt);
    json_object_set_new(tot, "params", json_integer(tt->params));
    json_object_set_new(tot, "avg_w_bits", json_real((double)tt->wbits_sum / (double)tt->params));
    json_object_set_new(tot, "size_bits", json_integer(tt->size_bits));
    json_object_set_new(tot, "avg_bits_with_overhead", json_real((double)tt->size_bits / (double)tt->params));
    json_object_set_new(tot, "loss", json_real(tt->loss));
    json_object_set_new(o, "totals", tot);
    json_object_set_new(o, "layers", layers);
    /* only when allocated: a --target-bits solve of a work directory captured
     * with a tensor menu writes what a --target-bits quantize writes */
    if (p->n_extra && aq_pipe_budget_bytes(b)) json_object_set_new(o, "tensors", tensors_json(c, p, rows, choice, sz));
    return o;
}

static aq_status dump_json(const char *dir, const char *name, json_t *o, aq_error *err)
{
    char path[AQ_PIPE_PATH + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *txt = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    if (!txt) return aq_fail_nomem(err, name, 0);
    aq_atomic_file *f;
    aq_status st = aq_atomic_open(path, &f, err);
    if (st == AQ_OK && (st = aq_atomic_printf(f, err, "%s\n", txt)) != AQ_OK) aq_atomic_abort(f);
    else if (st == AQ_OK) st = aq_atomic_commit(f, err);
    free(txt);
    return st;
}

static aq_status write_svgs(const char *dir, const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_budget *b,
                            const aq_loss_row *rows, aq_error *err)
{
    aq_alloc_table t;
    aq_alloc_solution sol;
    AQ_TRY(aq_pipe_alloc(c, p, b, rows, &t, &sol, err));
    int lo = 99, hi = 0;
    for (size_t i = 0; i < t.n_rows; i++) {
        lo = rows[i].w_bits < lo ? rows[i].w_bits : lo;
        hi = rows[i].w_bits > hi ? rows[i].w_bits : hi;
    }
    aq_alloc_rule keep[AQ_PIPE_MAX_KEEP];
    for (size_t k = 0; k < b->n_keep; k++) keep[k] = (aq_alloc_rule){b->keep_regex[k], b->keep_opt[k]};
    aq_alloc_spec spec = {.objective = AQ_ALLOC_MIN_LOSS, .size_unit = AQ_SIZE_AVG_BITS, .keep = keep,
                          .n_keep = b->n_keep};
    aq_alloc_sweep sw;
    memset(&sw, 0, sizeof sw);
    aq_status st = aq_alloc_sweep_run(&t, &spec, lo, hi, 0.25, &sw, err);
    char path[AQ_PIPE_PATH + 64];
    aq_atomic_file *f;
    snprintf(path, sizeof path, "%s/pareto.svg", dir);
    if (st == AQ_OK && (st = aq_atomic_open(path, &f, err)) == AQ_OK) {
        aq_alloc_write_sweep_svg(aq_atomic_stream(f), &sw, &sol);
        st = aq_atomic_commit(f, err);
    }
    snprintf(path, sizeof path, "%s/bits.svg", dir);
    if (st == AQ_OK && (st = aq_atomic_open(path, &f, err)) == AQ_OK) {
        aq_alloc_write_bits_svg(aq_atomic_stream(f), &t, &sol);
        st = aq_atomic_commit(f, err);
    }
    aq_alloc_sweep_free(&sw);
    aq_alloc_solution_free(&sol);
    aq_alloc_table_free(&t);
    return st;
}

static void print_table(FILE *f, const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_loss_row *rows,
                        const int *choice, int md)
{
    fprintf(f, md ? "| layer | option | params | loss | bits/weight |\n| --- | --- | ---: | ---: | ---: |\n"
                  : "%-36s %-7s %8s %12s %s\n", "layer", "option", "params", "loss", "bits/w");
    for (int l = 0; l < p->n_layers; l++) {
        const aq_loss_row *r = chosen(c, rows, choice, l);
        fprintf(f, md ? "| %s | %s | %lld | %.6g | %.3f |\n" : "%-36s %-7s %8lld %12.6g %.3f\n", p->layers[l].name,
                c->options[choice[l]], (long long)r->params, r->loss, (double)r->size_bits / (double)r->params);
    }
}

static json_t *run_json(const aq_pipe_eval_result *ev, const aq_pipe_timing *t, int64_t file_bytes, int64_t disk)
{
    json_t *o = json_object(), *e = json_object(), *tm = json_object();
    if (ev->ppl_fp >= 0) {
        json_object_set_new(e, "documents", json_integer((json_int_t)ev->n_docs));
        json_object_set_new(e, "predicted_tokens", json_integer((json_int_t)ev->n_predicted));
        json_object_set_new(e, "ppl_fp", json_real(ev->ppl_fp));
        json_object_set_new(e, "ppl_quantized", json_real(ev->ppl_q));
        json_object_set_new(e, "kl_mean", json_real(ev->kl_mean));
        json_object_set_new(e, "top1_agreement", json_real(ev->top1_agree));
    }
    json_object_set_new(o, "evaluation", e);
    json_object_set_new(tm, "capture", json_real(t->capture));
    json_object_set_new(tm, "calibrate", json_real(t->calibrate));
    json_object_set_new(tm, "solve", json_real(t->solve));
    json_object_set_new(tm, "tune", json_real(t->tune));
    json_object_set_new(tm, "eval", json_real(t->eval));
    json_object_set_new(tm, "write", json_real(t->write));
    json_object_set_new(o, "seconds", tm);
    json_object_set_new(o, "ranks", json_integer(t->ranks));
    if (t->rss_n > 0) { /* issue 13: per rank, predicted and measured peak RSS (memory.h, docs/MEMORY.md) */
        json_t *mem = json_object(), *ph = json_object(), *rk = json_array();
        static const char *const names[3] = {"capture", "calibrate", "write"};
        for (int k = 0; k < 3; k++) json_object_set_new(ph, names[k], json_integer((json_int_t)t->mem_pred[k]));
        for (int r = 0; r < t->rss_n; r++)
            json_array_append_new(rk, json_pack("{s:i, s:I, s:I}", "rank", r, "predicted_peak_bytes",
                                                (json_int_t)t->mem_pred[t->mem_worst], "measured_peak_rss_bytes",
                                                (json_int_t)t->rss[r]));
        json_object_set_new(mem, "predicted_peak_bytes_by_phase", ph);
        json_object_set_new(mem, "predicted_worst_phase", json_string(names[t->mem_worst]));
        json_object_set_new(mem, "base_bytes", json_integer((json_int_t)t->mem_base));
        json_object_set_new(mem, "ranks", rk);
        json_object_set_new(mem, "measured_peak_rss_max_bytes", json_integer((json_int_t)t->rss_max));
        json_object_set_new(o, "memory", mem);
    }
    json_object_set_new(o, "tasks_reused", json_integer((json_int_t)t->reused));
    json_object_set_new(o, "tasks_computed", json_integer((json_int_t)t->computed));
    json_object_set_new(o, "model_safetensors_bytes", json_integer(file_bytes));
    json_object_set_new(o, "model_files_bytes_on_disk", json_integer(disk)); /* stat of each file */
    aq_blas_kernel k; /* the writer's (rank 0's); every rank on one kind of node chooses alike */
    aq_blas_kernel_query(&k);
    json_object_set_new(o, "blas", json_pack("{s:s, s:s, s:s, s:s}", "library", "BLIS", "version", k.version,
                                             "kernel", k.name, "selection", aq_blas_kernel_source_key(k.source)));
    return o;
}

static aq_status write_md(const char *dir, const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_loss_row *rows,
                          const int *choice, const totals *tt, const aq_pipe_eval_result *ev,
                          const aq_pipe_tuned *tn, const aq_pipe_timing *t, int64_t bytes, int64_t disk, double bpw,
                          const aq_gguf_size *g, int64_t gguf, aq_error *err)
{
    char path[AQ_PIPE_PATH + 64];
    snprintf(path, sizeof path, "%s/report.md", dir);
    aq_atomic_file *af;
    AQ_TRY(aq_atomic_open(path, &af, err));
    FILE *f = aq_atomic_stream(af);
    fprintf(f, "# adaquant quantization report\n\nModel: `%s`\n\n", c->model);
    fprintf(f, "| quantity | value |\n| --- | --- |\n");
    fprintf(f, "| quantized layers | %d (%lld weights) |\n", p->n_layers, (long long)tt->params);
    fprintf(f, "| average weight bits (budget measure) | %.4f |\n", (double)tt->wbits_sum / (double)tt->params);
    fprintf(f, "| bits per weight incl. scales/zeros/bias | %.4f |\n", (double)tt->size_bits / (double)tt->params);
    fprintf(f, "| model.safetensors | %lld bytes |\n", (long long)bytes);
    fprintf(f, "| model files (model.safetensors, config.json, tokenizer) | %lld bytes, %.4f bits per weight |\n",
            (long long)disk, bpw);
    if (c->gguf)
        fprintf(f, "| model.gguf (the budget's measure) | %lld bytes; llama.cpp's model size %llu bytes, %.4f BPW over %llu weights |\n",
                (long long)gguf, (unsigned long long)g->tensor_bytes, 8.0 * (double)g->tensor_bytes / (double)g->elements,
                (unsigned long long)g->elements);
    fprintf(f, "| sum of layer losses | %.6g |\n", tt->loss);
    char why[320];
    aq_pipe_loss_why(c, why, sizeof why);
    fprintf(f, "| allocation loss | %s (%s) |\n", aq_pipe_loss_name(c), why);
    if (tn->steps > 0)
        fprintf(f, "| tuning (%s): steps, pool documents, batch %s first / last step | %d, %d, %.5f / %.5f |\n",
                aq_pipe_tune_mode_name(tn->mode), tn->mode == AQ_TUNE_BLOCK ? "block error" : "KL", tn->steps,
                tn->docs, tn->kl_first, tn->kl_last);
    if (ev->ppl_fp >= 0) {
        fprintf(f, "| perplexity FP / quantized | %.4f / %.4f (%zu docs, %zu tokens) |\n", ev->ppl_fp, ev->ppl_q,
                ev->n_docs, ev->n_predicted);
        fprintf(f, "| mean KL(FP‖Q) | %.6f |\n| top-1 agreement | %.4f |\n", ev->kl_mean, ev->top1_agree);
    }
    char blas[160];
    aq_blas_kernel_describe(blas, sizeof blas);
    fprintf(f, "| BLAS | %s |\n", blas);
    fprintf(f, "| ranks | %d |\n| tasks computed / reused | %zu / %zu |\n", t->ranks, t->computed, t->reused);
    fprintf(f, "| seconds: capture, calibrate, solve, tune, eval, write | %.2f, %.2f, %.2f, %.2f, %.2f, %.2f |\n",
            t->capture, t->calibrate, t->solve, t->tune, t->eval, t->write);
    if (t->rss_n > 0) /* issue 13 (memory.h) */
        fprintf(f, "| peak RSS per rank: predicted / largest measured | %.1f / %.1f MiB |\n",
                t->mem_pred[t->mem_worst] / 1048576.0, t->rss_max / 1048576.0);
    fprintf(f, "\n");
    print_table(f, c, p, rows, choice, 1);
    fprintf(f, "\n![loss vs bits](pareto.svg)\n![bits per layer](bits.svg)\n");
    return aq_atomic_commit(af, err);
}

/* The model files as written in dir (stat of each: the check of the prediction). */
static int64_t on_disk(const char *dir, const aq_pipe_cfg *c)
{
    aq_pipe_side sf;
    aq_error e = {0};
    if (aq_pipe_side_files(c, &sf, &e) != AQ_OK) return -1;
    static const char *const own[2] = {"model.safetensors", "config.json"};
    int64_t n = 0;
    for (int i = 0; i < 2 + sf.n; i++) {
        char path[AQ_PIPE_PATH + 64];
        struct stat s;
        snprintf(path, sizeof path, "%s/%s", dir, i < 2 ? own[i] : sf.name[i - 2]);
        if (stat(path, &s) != 0) return -1;
        n += (int64_t)s.st_size;
    }
    return n;
}

aq_status aq_pipe_report_write(const char *dir, const aq_pipe_cfg *c, const aq_pipe_plan *p,
                               const aq_pipe_budget *b, const aq_loss_row *rows, const int *choice,
                               const double *out_error, const aq_pipe_eval_result *ev,
                               const aq_pipe_tune_opts *tu, const aq_pipe_tuned *tn, const aq_pipe_timing *t,
                               aq_error *err)
{
    totals tt;
    aq_pipe_size sz;
    int64_t pred, pred_st;
    AQ_TRY(aq_pipe_size_build(c, p, aq_pipe_budget_bytes(b), &sz, err));
    aq_status st = aq_pipe_size_exact(c, p, choice, &pred, &pred_st, err);
    if (st != AQ_OK) {
        aq_pipe_size_free(&sz);
        return st;
    }
    aq_gguf_size g = {0};
    if (c->gguf) st = aq_pipe_gguf_size_of(c, p, choice, &g, err);
    if (st != AQ_OK) {
        aq_pipe_size_free(&sz);
        return st;
    }
    json_t *q = quant_json(c, p, b, rows, choice, out_error, tu, tn, &sz, pred, pred_st, &tt);
    if (c->gguf) json_object_set_new(q, "files", gguf_json(&g));
    st = dump_json(dir, "quantization.json", q, err);
    char path[AQ_PIPE_PATH + 64];
    struct stat s;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int64_t bytes = stat(path, &s) == 0 ? (int64_t)s.st_size : -1, disk = on_disk(dir, c);
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    int64_t gguf = c->gguf && stat(path, &s) == 0 ? (int64_t)s.st_size : -1;
    json_object_set_new(q, "run", run_json(ev, t, bytes, disk));
    if (c->gguf) json_object_set_new(json_object_get(q, "run"), "model_gguf_bytes_on_disk", json_integer(gguf));
    if (c->coop_ranks > 1) { /* which tasks ran on sub-grids, where, how long (coop_sched.h) */
        aq_pipe_path(c->work, "coop.json", path);
        json_t *cj = json_load_file(path, 0, NULL);
        if (cj) json_object_set_new(json_object_get(q, "run"), "cooperative", cj);
    }
    json_object_set_new(q, "format", json_string("adaquant-report"));
    if (st == AQ_OK) st = dump_json(dir, "report.json", q, err);
    json_decref(q);
    if (st == AQ_OK)
        st = write_md(dir, c, p, rows, choice, &tt, ev, tn, t, bytes, disk, 8.0 * (double)disk / (double)sz.total_weights,
                      &g, gguf, err);
    if (st == AQ_OK) st = write_svgs(dir, c, p, b, rows, err);
    if (st == AQ_OK) {
        print_table(stdout, c, p, rows, choice, 0);
        for (int e = 0; e < p->n_extra; e++)
            printf("%-36s %s\n", p->extra[e].name,
                   choice[p->n_layers + e] < 0 ? "f32" : c->embed_options[choice[p->n_layers + e]]);
        printf("average weight bits %.4f (%.4f with scales/zeros/bias), model.safetensors %lld bytes\n",
               (double)tt.wbits_sum / (double)tt.params, (double)tt.size_bits / (double)tt.params, (long long)bytes);
        printf("model files %lld bytes (model.safetensors, config.json, tokenizer), %.4f bits per weight over all "
               "%lld weights\n",
               (long long)disk, 8.0 * (double)disk / (double)sz.total_weights, (long long)sz.total_weights);
        if (c->gguf)
            printf("model.gguf %lld bytes (%.4f bits per weight); llama.cpp's model size %llu bytes, %.4f BPW over "
                   "%llu weights\n",
                   (long long)gguf, 8.0 * (double)gguf / (double)g.elements, (unsigned long long)g.tensor_bytes,
                   8.0 * (double)g.tensor_bytes / (double)g.elements, (unsigned long long)g.elements);
        if (ev->ppl_fp >= 0)
            printf("perplexity: FP %.4f, quantized %.4f (KL %.5f, top-1 agreement %.4f, %zu docs)\n", ev->ppl_fp,
                   ev->ppl_q, ev->kl_mean, ev->top1_agree, ev->n_docs);
        fflush(stdout);
    }
    if (st == AQ_OK && c->gguf && gguf != pred) /* the exporter sized itself: never differs (test gguf_budget) */
        st = aq_fail(err, AQ_ERR_IO, "%s is %lld bytes, %lld were predicted", path, (long long)gguf, (long long)pred);
    else if (st == AQ_OK && !c->gguf && disk != pred) /* tests/test_bytes.py holds them equal; say so if not */
        fprintf(stderr, "adaquant: warning: the model files are %lld bytes, %lld were predicted\n", (long long)disk,
                (long long)pred);
    aq_pipe_size_free(&sz);
    return st;
}
