/* pipeline_plan.c — what the pipeline will do, decided before any work: the
 * layer and task list, and the checks of the user's inputs, budget and output
 * directory (every bad input is reported before capture starts). */
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../io/checkpoint.h"
#include "../../src/adaquant/adaquant.h"
#include "../../src/model/model.h"
#include "../../src/text/textdata.h"
#include "pipeline.h"
#include "pipeline_size.h"
#include "tasks.h"

static aq_status model_config(const char *path, aq_llama_config *cfg, aq_error *err)
{
    aq_status st = aq_ckpt_read_llama_config(path, cfg, err);
    if (st != AQ_OK) aq_error_prefix(err, "%s", path);
    return st;
}

static void layer_shape(const aq_llama_config *m, int which, int *d_out, int *d_in)
{
    int hs = aq_llama_head_dim(m), q = m->n_heads * hs, kv = m->n_kv_heads * hs;
    switch (which) {
    case AQ_LIN_Q: *d_out = q, *d_in = m->dim; break;
    case AQ_LIN_K:
    case AQ_LIN_V: *d_out = kv, *d_in = m->dim; break;
    case AQ_LIN_O: *d_out = m->dim, *d_in = q; break;
    case AQ_LIN_GATE:
    case AQ_LIN_UP: *d_out = m->hidden_dim, *d_in = m->dim; break;
    default: *d_out = m->dim, *d_in = m->hidden_dim; break;
    }
}

/* The block (group) size of a group-format option, 0 otherwise. */
static int block_of(const char *option)
{
    aq_layer_opts q;
    aq_layer_opts_default(&q);
    return aq_layer_opts_parse(option, &q, NULL) == AQ_OK ? q.group : 0;
}

/* A block format applies only where rows are a multiple of its block
 * (pipeline_size.h): refuse a menu option that no layer admits (e.g. a
 * K-quant on a model whose rows are not multiples of 256) and a layer that
 * no option admits, before any work. */
static aq_status menu_applies(const aq_pipe_cfg *c, const aq_pipe_plan *p, aq_error *err)
{
    if (c->n_options == 0) return AQ_OK;
    for (int k = 0; k < c->n_options; k++) {
        int used = 0;
        for (int l = 0; l < p->n_layers && !used; l++) used = !aq_pipe_option_absent(c->options[k], p->layers[l].d_in);
        if (!used)
            return aq_fail(err, AQ_ERR_ARG,
                           "option %s applies to no layer: its block needs rows whose length is a multiple of %d "
                           "(this model's rows are %d and %d long)", c->options[k], block_of(c->options[k]),
                           p->layers[0].d_in, p->layers[AQ_LIN_COUNT - 1].d_in);
    }
    for (int l = 0; l < p->n_layers; l++) {
        int any = 0;
        for (int k = 0; k < c->n_options && !any; k++) any = !aq_pipe_option_absent(c->options[k], p->layers[l].d_in);
        if (!any)
            return aq_fail(err, AQ_ERR_ARG, "layer %s: rows of %d weights: no option of --options applies to it "
                           "(block formats need a multiple of their block); add a per-row option such as w8a16",
                           p->layers[l].name, p->layers[l].d_in);
    }
    return AQ_OK;
}

aq_status aq_pipe_plan_build(const aq_pipe_cfg *c, aq_pipe_plan *p, aq_error *err)
{
    memset(p, 0, sizeof *p);
    aq_llama_config m;
    AQ_TRY(model_config(c->model, &m, err));
    return aq_pipe_plan_build_config(c, &m, p, err);
}

aq_status aq_pipe_plan_build_config(const aq_pipe_cfg *c, const struct aq_llama_config *mc, aq_pipe_plan *p, aq_error *err)
{
    memset(p, 0, sizeof *p);
    const aq_llama_config m = *mc;
    p->n_layers = m.n_layers * AQ_LIN_COUNT;
    p->n_lin_tasks = (size_t)p->n_layers * (size_t)c->n_options;
    p->tied = m.tied_embeddings;
    p->n_extra = c->n_embed_options > 0 ? (m.tied_embeddings ? 1 : 2) : 0;
    for (int e = 0; e < p->n_extra; e++) {
        aq_pipe_layer *X = &p->extra[e];
        snprintf(X->name, sizeof X->name, "%s", e == 0 ? "model.embed_tokens" : "lm_head");
        X->block = m.n_layers;
        X->which = e == 0 ? -1 : AQ_LIN_HEAD;
        X->point = -1;
        X->d_out = m.vocab_size;
        X->d_in = m.dim;
    }
    p->n_tasks = p->n_lin_tasks + (size_t)p->n_extra * (size_t)c->n_embed_options;
    p->n_tokens = (int64_t)c->windows * c->seq_len;
    p->layers = calloc((size_t)p->n_layers, sizeof *p->layers);
    p->tasks = calloc(p->n_tasks, sizeof *p->tasks);
    if (!p->layers || !p->tasks) {
        aq_pipe_plan_free(p);
        return aq_fail_nomem(err, "task list", p->n_tasks * sizeof *p->tasks);
    }
    for (int l = 0; l < p->n_layers; l++) {
        aq_pipe_layer *L = &p->layers[l];
        L->block = l / AQ_LIN_COUNT;
        L->which = l % AQ_LIN_COUNT;
        L->point = (int)aq_linear_cap_point((aq_linear)L->which);
        aq_linear_prefix(L->block, (aq_linear)L->which, L->name, sizeof L->name);
        layer_shape(&m, L->which, &L->d_out, &L->d_in);
        for (int k = 0; k < c->n_options; k++) {
            aq_dist_task *t = &p->tasks[(size_t)l * c->n_options + k];
            aq_layer_opts o;
            aq_layer_opts_default(&o);
            aq_layer_opts_parse(c->options[k], &o, NULL);
            int64_t iters = (int64_t)c->iters * (o.a_bits < 16 ? o.outer_iters : 1);
            t->layer = L->name;
            t->option = c->options[k];
            t->layer_index = l;
            t->option_index = k;
            t->cost = aq_dist_task_cost(L->d_out, L->d_in, p->n_tokens, iters);
            t->fp = aq_pipe_task_fp(c, L->name, c->options[k]);
        }
    }
    for (int e = 0; e < p->n_extra; e++)
        for (int k = 0; k < c->n_embed_options; k++) {
            aq_dist_task *t = &p->tasks[p->n_lin_tasks + (size_t)e * c->n_embed_options + k];
            t->layer = p->extra[e].name;
            t->option = c->embed_options[k];
            t->layer_index = p->n_layers + e;
            t->option_index = k;
            /* one KL forward over the KL windows: about a linear task of one iteration */
            t->cost = aq_dist_task_cost(p->extra[e].d_out, p->extra[e].d_in, p->n_tokens, 1);
            t->fp = aq_pipe_task_fp(c, p->extra[e].name, c->embed_options[k]);
        }
    aq_status st = menu_applies(c, p, err);
    if (st != AQ_OK) {
        aq_pipe_plan_free(p);
        return st;
    }
    return aq_dist_tasks_order(p->tasks, p->n_tasks, err);
}

void aq_pipe_plan_free(aq_pipe_plan *p)
{
    free(p->layers);
    free(p->tasks);
    memset(p, 0, sizeof *p);
}

void aq_pipe_budget_default(aq_pipe_budget *b)
{
    memset(b, 0, sizeof *b);
    b->objective = AQ_ALLOC_MIN_LOSS;
    b->size_unit = AQ_SIZE_BYTES;
    b->size_value = AQ_PIPE_DEFAULT_BPW;
    b->bpw = 1;
}

int aq_pipe_budget_bytes(const aq_pipe_budget *b)
{
    return b->objective == AQ_ALLOC_MIN_LOSS && b->size_unit == AQ_SIZE_BYTES;
}

aq_status aq_pipe_parse_size(const char *v, aq_pipe_budget *b, aq_error *err)
{
    char *end;
    double x = strtod(v, &end);
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {{"", 1}, {"B", 1}, {"k", 1e3}, {"K", 1e3}, {"kB", 1e3}, {"KB", 1e3}, {"M", 1e6}, {"MB", 1e6},
                 {"G", 1e9}, {"GB", 1e9}, {"Ki", 1024.0}, {"KiB", 1024.0}, {"Mi", 1048576.0}, {"MiB", 1048576.0},
                 {"Gi", 1073741824.0}, {"GiB", 1073741824.0}};
    if (end == v || !isfinite(x) || !(x > 0))
        return aq_fail(err, AQ_ERR_ARG, "--target-size '%s': expected a positive size: bytes (302560, 300k, 0.3M, "
                                        "300Ki) or bits per weight (5.5bpw)", v);
    if (!strcmp(end, "bpw")) {
        if (x > 64) return aq_fail(err, AQ_ERR_ARG, "--target-size '%s': more than 64 bits per weight", v);
        b->size_value = x, b->bpw = 1;
        return AQ_OK;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(end, units[i].suffix)) {
            /* whole bytes: "4.2k" is 4200 although 4.2 * 1000 is 4199.99...; else rounded down */
            double raw = x * units[i].mult, bytes = nearbyint(raw);
            if (fabs(raw - bytes) > 1e-9 * raw) bytes = floor(raw);
            if (bytes < 1)
                return aq_fail(err, AQ_ERR_ARG, "--target-size '%s' is less than one byte (the size of the "
                                                "model files now; a fraction of FP32 is --target-fp32-fraction %s)",
                               v, v);
            if (bytes >= 4.0e15) return aq_fail(err, AQ_ERR_ARG, "--target-size '%s' is too large", v);
            b->size_value = bytes, b->bpw = 0;
            return AQ_OK;
        }
    return aq_fail(err, AQ_ERR_ARG, "--target-size '%s': unknown unit '%s' (B, k, M, G = 10^3.., Ki, Mi, Gi = "
                                    "2^10.., or bpw)", v, end);
}

aq_status aq_pipe_budget_add_keep(aq_pipe_budget *b, const char *rule, aq_error *err)
{
    const char *eq = strrchr(rule, '=');
    if (!eq || eq == rule || !eq[1])
        return aq_fail(err, AQ_ERR_ARG, "--keep '%s': expected REGEX=OPTION (e.g. 'down_proj=w8a16')", rule);
    if (b->n_keep == AQ_PIPE_MAX_KEEP) return aq_fail(err, AQ_ERR_ARG, "too many --keep rules");
    size_t n = (size_t)(eq - rule);
    if (n >= sizeof b->keep_regex[0] || strlen(eq + 1) >= sizeof b->keep_opt[0])
        return aq_fail(err, AQ_ERR_ARG, "--keep '%s': too long", rule);
    memcpy(b->keep_regex[b->n_keep], rule, n);
    b->keep_regex[b->n_keep][n] = '\0';
    strcpy(b->keep_opt[b->n_keep], eq + 1);
    b->n_keep++;
    return AQ_OK;
}

static int option_index(const aq_pipe_cfg *c, const char *opt)
{
    for (int k = 0; k < c->n_options; k++)
        if (!strcmp(c->options[k], opt)) return k;
    return -1;
}

static int embed_option_index(const aq_pipe_cfg *c, const char *opt)
{
    for (int k = 0; k < c->n_embed_options; k++)
        if (!strcmp(c->embed_options[k], opt)) return k;
    return -1;
}

int64_t aq_pipe_budget_byte_value(const aq_pipe_budget *b, const aq_pipe_size *sz)
{
    /* bits per weight over every weight of the model, llama.cpp's BPW */
    return b->bpw ? (int64_t)floor(b->size_value * (double)sz->total_weights / 8.0 + 1e-9) : (int64_t)b->size_value;
}

/* A budget in bytes: at least the fixed part plus each layer's smallest
 * option (or its pin). The error names the smallest feasible size. */
static aq_status bytes_check(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_budget *b, regex_t *re,
                             aq_error *err)
{
    aq_pipe_size sz;
    AQ_TRY(aq_pipe_size_build(c, p, 1, &sz, err));
    int64_t least = sz.fixed;
    for (int l = 0; l < p->n_layers + p->n_extra; l++) {
        int ex = l >= p->n_layers, no = ex ? c->n_embed_options : c->n_options;
        size_t base = ex ? p->n_lin_tasks + (size_t)(l - p->n_layers) * (size_t)no : (size_t)l * (size_t)no;
        const char *name = ex ? p->extra[l - p->n_layers].name : p->layers[l].name;
        int64_t lb = INT64_MAX;
        for (int k = 0; k < no; k++) lb = sz.task_bytes[base + (size_t)k] < lb ? sz.task_bytes[base + (size_t)k] : lb;
        for (size_t r = 0; r < b->n_keep; r++) {
            int k = ex ? embed_option_index(c, b->keep_opt[r]) : option_index(c, b->keep_opt[r]);
            if (k >= 0 && regexec(&re[r], name, 0, NULL, 0) == 0) lb = sz.task_bytes[base + (size_t)k];
        }
        least += lb;
    }
    int64_t want = aq_pipe_budget_byte_value(b, &sz);
    char given[64];
    if (b->bpw) snprintf(given, sizeof given, "%gbpw (%lld bytes)", b->size_value, (long long)want);
    else snprintf(given, sizeof given, "%lld bytes", (long long)want);
    aq_pipe_size_free(&sz);
    if (want < least)
        return aq_fail(err, AQ_ERR_INFEASIBLE,
                       "--target-size %s is infeasible: the smallest feasible size of %s with the "
                       "options and pins given is %lld bytes",
                       given, c->gguf ? "model.gguf (--out-format gguf)" : "the model files", (long long)least);
    return AQ_OK;
}

aq_status aq_pipe_budget_check(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_budget *b,
                               aq_error *err)
{
    int bits[AQ_PIPE_MAX_OPTIONS];
    for (int k = 0; k < c->n_options; k++) {
        aq_layer_opts o;
        aq_layer_opts_default(&o);
        AQ_TRY(aq_layer_opts_parse(c->options[k], &o, err));
        bits[k] = o.w_bits;
    }
    int least = 99;
    for (int k = 0; k < c->n_options; k++) least = bits[k] < least ? bits[k] : least;
    double total = 0, min_bits = 0;
    regex_t re[AQ_PIPE_MAX_KEEP];
    for (size_t r = 0; r < b->n_keep; r++) {
        if (option_index(c, b->keep_opt[r]) < 0 && embed_option_index(c, b->keep_opt[r]) < 0)
            return aq_fail(err, AQ_ERR_ARG, "--keep '%s=%s': option '%s' is not in the menu (--options, --embed-options)",
                           b->keep_regex[r], b->keep_opt[r], b->keep_opt[r]);
        if (regcomp(&re[r], b->keep_regex[r], REG_EXTENDED | REG_NOSUB) != 0) {
            for (size_t q = 0; q < r; q++) regfree(&re[q]);
            return aq_fail(err, AQ_ERR_ARG, "--keep: invalid regular expression '%s'", b->keep_regex[r]);
        }
    }
    aq_status st = AQ_OK;
    for (int l = 0; l < p->n_layers && st == AQ_OK; l++) {
        const aq_pipe_layer *L = &p->layers[l];
        double params = (double)L->d_out * L->d_in;
        int lb = least;
        for (size_t r = 0; r < b->n_keep && st == AQ_OK; r++)
            if (option_index(c, b->keep_opt[r]) >= 0 && regexec(&re[r], L->name, 0, NULL, 0) == 0) {
                lb = bits[option_index(c, b->keep_opt[r])];
                if (aq_pipe_option_absent(b->keep_opt[r], L->d_in)) /* no task, no table row: refuse before any work */
                    st = aq_fail(err, AQ_ERR_ARG,
                                 "--keep '%s=%s': layer %s has rows of %d weights, not a multiple of %s's block "
                                 "of %d, so the option does not apply to it (pin it to a per-row option such as "
                                 "w8a16, or narrow the pattern)",
                                 b->keep_regex[r], b->keep_opt[r], L->name, L->d_in, b->keep_opt[r],
                                 block_of(b->keep_opt[r]));
            }
        total += params;
        min_bits += params * lb;
    }
    if (st == AQ_OK && aq_pipe_budget_bytes(b)) st = bytes_check(c, p, b, re, err);
    for (size_t r = 0; r < b->n_keep; r++) regfree(&re[r]);
    AQ_TRY(st);
    if (b->objective != AQ_ALLOC_MIN_LOSS) {
        if (!(b->max_loss >= 0) || !isfinite(b->max_loss))
            return aq_fail(err, AQ_ERR_ARG, "--max-loss must be a finite number >= 0");
        return AQ_OK;
    }
    double avg = min_bits / total;
    if (b->size_unit == AQ_SIZE_AVG_BITS && b->size_value < avg - 1e-9)
        return aq_fail(err, AQ_ERR_INFEASIBLE,
                       "--target-bits %g is infeasible: the smallest feasible budget with options and pins "
                       "given is %.6g bits per weight",
                       b->size_value, avg);
    if (b->size_unit == AQ_SIZE_FP32_FRACTION && b->size_value < avg / 32 - 1e-9)
        return aq_fail(err, AQ_ERR_INFEASIBLE,
                       "--target-size %g is infeasible: the smallest feasible size is %.6g of FP32", b->size_value,
                       avg / 32);
    return AQ_OK;
}

void aq_pipe_out_default(aq_pipe_out *o)
{
    memset(o, 0, sizeof *o);
    o->eval_len = 512;
    o->tune.steps = AQ_TUNE_STEPS_DEFAULT;
    o->tune.max_len = AQ_TUNE_MAX_LEN_DEFAULT;
    o->tune.batch = AQ_TUNE_BATCH_DEFAULT;
    o->tune.lr = AQ_TUNE_LR_DEFAULT;
}

aq_status aq_pipe_out_check(const aq_pipe_out *o, aq_error *err)
{
    struct stat s;
    if (!o->outdir[0]) return aq_fail(err, AQ_ERR_ARG, "--out OUTDIR is required");
    if (stat(o->outdir, &s) == 0 && !o->force)
        return aq_fail(err, AQ_ERR_ARG, "--out %s already exists: choose another directory or pass --force",
                       o->outdir);
    char tmp[AQ_PIPE_PATH];
    snprintf(tmp, sizeof tmp, "%s", o->outdir);
    const char *parent = dirname(tmp);
    if (stat(parent, &s) != 0 || !S_ISDIR(s.st_mode))
        return aq_fail(err, AQ_ERR_IO, "--out %s: parent directory %s does not exist", o->outdir, parent);
    if (access(parent, W_OK | X_OK) != 0)
        return aq_fail(err, AQ_ERR_IO, "--out %s: parent directory %s is not writable (%s)", o->outdir, parent,
                       strerror(errno));
    return AQ_OK;
}

aq_status aq_pipe_check_inputs(const aq_pipe_cfg *c, aq_error *err)
{
    aq_llama_config m;
    AQ_TRY(model_config(c->model, &m, err));
    if (c->windows < 1 || c->seq_len < 2 || c->seq_len > m.max_seq_len)
        return aq_fail(err, AQ_ERR_ARG, "--calib-windows %d / --calib-len %d: need >= 1 windows of 2..%d tokens",
                       c->windows, c->seq_len, m.max_seq_len);
    if (c->iters < 0) return aq_fail(err, AQ_ERR_ARG, "--iters must be >= 0");
    aq_tokenizer *tok;
    aq_status st = aq_tok_open(c->tokenizer, m.vocab_size, &tok, err);
    if (st != AQ_OK) {
        aq_error_prefix(err, "model/tokenizer mismatch? the model %s has vocab_size %d, tokenizer %s", c->model,
                        m.vocab_size, c->tokenizer);
        return st;
    }
    fprintf(stderr, "adaquant: tokenizer: %s\n", aq_tok_describe(tok));
    aq_docs d;
    st = aq_docs_load(&c->data, &d, err);
    int *tokens = NULL;
    if (st == AQ_OK) st = aq_docs_check_ids(&d, m.vocab_size, err); /* the evaluation side too, before any work */
    if (st == AQ_OK) {
        st = aq_calib_windows(tok, &d, c->windows, c->seq_len, &tokens, err);
        char what[256];
        aq_data_spec_describe(&c->data, what, sizeof what);
        if (st != AQ_OK)
            aq_error_prefix(err, "the calibration data %s is too short for %d windows x %d tokens", what,
                            c->windows, c->seq_len);
        else
            aq_tok_report_unknown(tok, "calibration data", stderr);
    }
    aq_docs_free(&d);
    free(tokens);
    aq_tok_close(tok);
    return st;
}
