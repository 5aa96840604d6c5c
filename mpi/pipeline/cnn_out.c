/* cnn_out.c — the OUTDIR of `adaquant quantize MODEL.onnx` (docs/CNN.md,
 * "OUTDIR"): model.onnx (the input model, copied), layers.safetensors (each
 * layer's codes, scales, zeros, bias and activation quantizer),
 * quantization.json (what export needs to rebuild the model), report.json
 * and predictions.txt; written into OUTDIR.tmp.<pid> and renamed into place.
 * Read back for `adaquant export OUTDIR --format onnx-qdq`. */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "../../io/atomic_file.h"
#include "../../io/safetensors.h"
#include "cnn_pipe.h"
#include "driver.h"
#include "progress.h"

#define FORMAT "adaquant-cnn"

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[AQ_CNNP_PATH + 300];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static const char *layer_name(const aq_cnnp_ctx *c, int i) { return c->g.nodes[c->cap.layers[i].node].name; }

static aq_status write_layers(const aq_cnnp_ctx *c, const aq_cnnp_outcome *o, const char *path, aq_error *err)
{
    aq_st_writer *w;
    AQ_TRY(aq_st_writer_new(&w, err));
    int L = c->cap.n_layers;
    float *act = malloc((size_t)(2 * L + 1) * sizeof *act);
    aq_status st = act ? aq_st_writer_meta(w, "format", FORMAT, err) : aq_fail_nomem(err, "act", 8);
    for (int i = 0; st == AQ_OK && i < L; i++) {
        const aq_cnnq_result *r = &o->res[i];
        char n[600];
        int64_t sh[2] = {r->d_out, r->d_in}, two = 2;
        act[2 * i] = r->a_scale, act[2 * i + 1] = r->a_zero;
        snprintf(n, sizeof n, "%s.codes", layer_name(c, i));
        st = aq_st_writer_add(w, n, AQ_U8, 2, sh, r->codes, err);
        const char *sfx[3] = {"scale", "zero", "bias"};
        const float *src[3] = {r->scale, r->zero, r->bias};
        for (int k = 0; st == AQ_OK && k < 3; k++) {
            snprintf(n, sizeof n, "%s.%s", layer_name(c, i), sfx[k]);
            st = aq_st_writer_add(w, n, AQ_F32, 1, sh, src[k], err);
        }
        snprintf(n, sizeof n, "%s.act", layer_name(c, i));
        if (st == AQ_OK) st = aq_st_writer_add(w, n, AQ_F32, 1, &two, &act[2 * i], err);
    }
    if (st == AQ_OK) st = aq_st_writer_write(w, path, err);
    aq_st_writer_free(w);
    free(act);
    return st;
}

static json_t *layers_json(const aq_cnnp_ctx *c, const aq_cnnp_outcome *o, int report)
{
    json_t *arr = json_array();
    for (int i = 0; i < c->cap.n_layers; i++) {
        const aq_cnnq_layer *L = &c->cap.layers[i];
        const aq_cnnq_result *r = &o->res[i];
        long t = aq_cnnp_task_index(c, i, o->choice[i]);
        json_t *j = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i}", "node", layer_name(c, i), "option",
                              c->a->opt[o->choice[i]], "w_bits", r->w_bits, "a_bits", r->a_bits, "d_out", r->d_out,
                              "d_in", r->d_in);
        if (report) {
            json_object_set_new(j, "loss", json_real(o->rows[t].loss));
            json_object_set_new(j, "bytes", json_integer((aq_cnnp_layer_bits(L, r->w_bits, r->a_bits) + 7) / 8));
            json_object_set_new(j, "params", json_integer((json_int_t)L->d_out * L->d_in));
            json_object_set_new(j, "macs", json_integer(aq_cnnp_layer_macs(L)));
            json_t *alt = json_object(); /* every measured option's loss */
            for (int k = 0; k < c->a->n_opt; k++)
                if (aq_cnnp_task_index(c, i, k) >= 0)
                    json_object_set_new(alt, c->a->opt[k], json_real(o->rows[aq_cnnp_task_index(c, i, k)].loss));
            json_object_set_new(j, "losses", alt);
        }
        json_array_append_new(arr, j);
    }
    return arr;
}

static json_t *norm_json(const aq_cnn_norm *n)
{
    return n->raw ? json_string("none") : json_pack("{s:f, s:f}", "mean", n->mean, "std", n->std);
}

static aq_status write_json(json_t *j, const char *path, aq_error *err)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(j);
    if (!s) return aq_fail_nomem(err, path, 0);
    size_t n = strlen(s);
    s[n] = '\n';
    aq_status st = aq_atomic_write_file(path, s, n + 1, err);
    free(s);
    return st;
}

static aq_status write_quantization(const aq_cnnp_ctx *c, const aq_cnnp_outcome *o, const char *path, aq_error *err)
{
    json_t *j = json_pack("{s:s, s:i, s:s, s:s, s:o, s:i, s:o}", "format", FORMAT, "version", 1, "model", "model.onnx",
                          "weights", "layers.safetensors", "normalize", norm_json(&c->a->norm), "bn_folds", c->n_folds,
                          "layers", layers_json(c, o, 0));
    return write_json(j, path, err);
}

static double frac(size_t a, size_t b) { return b ? (double)a / (double)b : 0; }

/* report.json: everything that does not depend on the ranks or the clock
 * first; `run.timing`, `run.timing_cpu`, `run.ranks` and `run.tasks` (reused vs computed) are
 * what differs between runs of the same inputs. */
static aq_status write_report(const aq_cnnp_ctx *c, const aq_cnnp_outcome *o, const char *path, aq_error *err)
{
    const aq_cnnp_args *a = c->a;
    json_t *argv = json_array();
    for (int i = 0; i < a->argc; i++) json_array_append_new(argv, json_string(a->argv[i]));
    json_t *ev = json_pack("{s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:I}", "top1_fp", frac(o->correct_fp, o->n_eval),
                           "top1_quantized", frac(o->correct_q, o->n_eval), "agreement", frac(o->agree, o->n_eval),
                           "images", (json_int_t)o->n_eval, "first", (json_int_t)o->eval_first, "correct_fp",
                           (json_int_t)o->correct_fp, "correct_quantized", (json_int_t)o->correct_q, "agree",
                           (json_int_t)o->agree);
    json_t *timing = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "load", o->t_load, "capture",
                               o->t_capture, "tasks", o->t_tasks, "solve", o->t_solve, "tune", o->t_tune, "bn_reestimate",
                               o->tune.seconds_bn, "bias_correct", o->tune.seconds_correct, "bias_tune",
                               o->tune.seconds_tune, "eval", o->t_eval, "write", o->t_write);
    json_t *cpu = json_pack("{s:f, s:f, s:f, s:f, s:f}", "load", o->c_load, "capture", o->c_capture, "tasks",
                            o->c_tasks, "tune", o->c_tune, "eval", o->c_eval);
    json_t *run = json_pack("{s:o, s:o, s:o, s:o, s:i, s:{s:I, s:I, s:I}}", "command", argv, "evaluation", ev, "timing",
                            timing, "timing_cpu", cpu, "ranks", o->ranks, "tasks", "total", (json_int_t)c->n_tasks, "reused",
                            (json_int_t)o->reused, "computed", (json_int_t)o->computed);
    json_t *alloc = json_pack("{s:s, s:f, s:f, s:I, s:f, s:f}", "mode", a->sequential ? "sequential" : "parallel",
                              "target_bits", a->target_bits, "target_size", a->target_size, "bits", (json_int_t)o->alloc_bits,
                              "avg_bits", o->alloc_avg_bits, "loss", o->alloc_loss);
    json_t *tune = json_pack("{s:b, s:b, s:i, s:f, s:f, s:i, s:I, s:i, s:i, s:f, s:f, s:i, s:i}", "bn_reestimate",
                             a->tune.bn_reestimate, "bias_correct", a->tune.bias_correct, "bias_tune", a->tune.bias_iters,
                             "bias_lr", a->tune.bias_lr, "temperature", a->tune.temperature, "batch", a->tune.batch, "seed", (json_int_t)a->tune.seed,
                             "bn_reestimated", o->tune.bn_reestimated, "biases_corrected", o->tune.biases_corrected,
                             "kl_before", o->tune.kl_before, "kl_after", o->tune.kl_after, "bn_folds", c->n_folds,
                             "zeros_rounded", o->zeros_rounded);
    json_t *j = json_pack("{s:s, s:s, s:o, s:s, s:I, s:o, s:o, s:o}", "format", FORMAT, "model", a->model, "normalize",
                          norm_json(&a->norm), "method", a->method == AQ_CNNQ_ADAQUANT ? "adaquant" : "rtn",
                          "calibration_images", (json_int_t)c->n_calib, "allocation", alloc, "tune", tune, "layers",
                          layers_json(c, o, 1));
    json_object_set_new(j, "run", run);
    return write_json(j, path, err);
}

static aq_status write_predictions(const aq_cnnp_outcome *o, const char *path, aq_error *err)
{
    aq_atomic_file *f;
    AQ_TRY(aq_atomic_open(path, &f, err));
    for (size_t i = 0; i < o->n_eval; i++) fprintf(aq_atomic_stream(f), "%d\n", o->pred_q[i]);
    return aq_atomic_commit(f, err);
}

aq_status aq_cnnp_write_outdir(const aq_cnnp_ctx *c, aq_cnnp_outcome *o, aq_error *err)
{
    const char *out = c->a->out;
    char tmp[AQ_CNNP_PATH + 32], path[AQ_CNNP_PATH + 64], old[AQ_CNNP_PATH + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)getpid());
    remove_tree(tmp);
    if (mkdir(tmp, 0777) != 0) return aq_fail(err, AQ_ERR_IO, "%s: cannot create the output directory", tmp);
    double t0 = aq_progress_now();
    /* test hook AQ_FAIL_AT=write:K, K = the files written before */
    aq_status st = aq_dist_failpoint("write", 0, 0, "file 0, before model.onnx", err);
    snprintf(path, sizeof path, "%s/model.onnx", tmp);
    if (st == AQ_OK) st = aq_atomic_copy_file(c->a->model, path, err);
    snprintf(path, sizeof path, "%s/layers.safetensors", tmp);
    if (st == AQ_OK) st = aq_dist_failpoint("write", 1, 0, "file 1, before layers.safetensors", err);
    if (st == AQ_OK) st = write_layers(c, o, path, err);
    snprintf(path, sizeof path, "%s/quantization.json", tmp);
    if (st == AQ_OK) st = write_quantization(c, o, path, err);
    snprintf(path, sizeof path, "%s/predictions.txt", tmp);
    if (st == AQ_OK) st = write_predictions(o, path, err);
    if (st == AQ_OK) st = aq_dist_failpoint("write", 2, 0, "file 2, before report.json", err);
    o->t_write = aq_progress_now() - t0;
    snprintf(path, sizeof path, "%s/report.json", tmp);
    if (st == AQ_OK) st = write_report(c, o, path, err);
    if (st == AQ_OK) st = aq_dist_failpoint("write", 3, 0, "file 3, all written, before the rename", err);
    if (st == AQ_OK) {
        struct stat s;
        snprintf(old, sizeof old, "%s.old.%ld", out, (long)getpid());
        int had = stat(out, &s) == 0;
        if (had && rename(out, old) != 0) st = aq_fail(err, AQ_ERR_IO, "%s: cannot move the existing output aside", out);
        if (st == AQ_OK && rename(tmp, out) != 0) st = aq_fail(err, AQ_ERR_IO, "%s: cannot rename %s into place", out, tmp);
        if (st == AQ_OK && had) remove_tree(old);
    }
    if (st != AQ_OK) remove_tree(tmp);
    return st;
}
