/* cnn_pipe.c — the run of `adaquant quantize MODEL.onnx` (cnn_pipe.h):
 * every rank reads the model, folds its BatchNorms and captures the layer
 * inputs on the calibration images (cheap for these models, and it spares a
 * broadcast); the (layer, option) tasks go over the ranks through the LLM
 * pipeline's driver (driver.h: LPT + tail queue, result files, resume);
 * rank 0 solves the CBC allocation and broadcasts the choice; every rank
 * then rounds the zero points, runs its slice of the images of each pass of
 * the BN/bias stage (sums in image order: the bytes of one rank) and
 * evaluates its slice of the test images;
 * rank 0 gathers the predictions and writes OUTDIR. */
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../io/idx.h"
#include "../../solver/allocate.h"
#include "cnn_pipe.h"
#include "collect.h"
#include "driver.h"
#include "progress.h"

static int rank_of(MPI_Comm comm)
{
    int r;
    MPI_Comm_rank(comm, &r);
    return r;
}

/* This process's CPU seconds so far. */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define SAY(comm, ...) do { if (rank_of(comm) == 0) fprintf(stderr, __VA_ARGS__); } while (0)

/* --calib-indices FILE: whitespace-separated image indices, each < n. */
static aq_status read_indices(const char *path, int64_t n, long **idx, size_t *count, aq_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) return aq_fail(err, AQ_ERR_IO, "%s: cannot open the calibration index list", path);
    size_t cap = 256, k = 0;
    long *v = malloc(cap * sizeof *v), x;
    aq_status st = v ? AQ_OK : aq_fail_nomem(err, "index list", cap * sizeof *v);
    while (st == AQ_OK && fscanf(f, "%ld", &x) == 1) {
        if (x < 0 || x >= n) st = aq_fail(err, AQ_ERR_ARG, "%s: entry %zu is %ld, outside the %lld images", path, k + 1, x, (long long)n);
        if (st == AQ_OK && k == cap) {
            long *t = realloc(v, 2 * cap * sizeof *v);
            if (!t) st = aq_fail_nomem(err, "index list", 2 * cap * sizeof *v);
            else v = t, cap *= 2;
        }
        if (st == AQ_OK) v[k++] = x;
    }
    if (st == AQ_OK && !feof(f)) st = aq_fail(err, AQ_ERR_FORMAT, "%s: not an integer after entry %zu", path, k);
    if (st == AQ_OK && k == 0) st = aq_fail(err, AQ_ERR_FORMAT, "%s: no image index", path);
    fclose(f);
    if (st != AQ_OK) free(v);
    else *idx = v, *count = k;
    return st;
}

/* The calibration images: the listed indices, else the first calib_count. */
static aq_status load_calib(aq_cnnp_ctx *c, aq_error *err)
{
    const aq_cnnp_args *a = c->a;
    aq_idx im = {0};
    AQ_TRY(aq_idx_read_images(a->calib_images, &im, err));
    c->image = (size_t)(im.rows * im.cols);
    long *idx = NULL;
    size_t n = 0;
    aq_status st = AQ_OK;
    if (a->calib_indices) {
        st = read_indices(a->calib_indices, im.n, &idx, &n, err);
    } else if (a->calib_count > im.n) {
        st = aq_fail(err, AQ_ERR_ARG, "--calib-count %ld: %s holds %lld images", a->calib_count, a->calib_images, (long long)im.n);
    } else {
        n = (size_t)a->calib_count;
    }
    if (st == AQ_OK && !(c->calib = malloc(n * c->image))) st = aq_fail_nomem(err, "calibration images", n * c->image);
    for (size_t i = 0; st == AQ_OK && i < n; i++)
        memcpy(c->calib + i * c->image, im.data + (size_t)(idx ? idx[i] : (long)i) * c->image, c->image);
    c->n_calib = n;
    free(idx);
    aq_idx_free(&im);
    return st;
}

/* Model, folds, layers, calibration images, options: everything checked
 * before any work. */
static aq_status load(aq_cnnp_ctx *c, aq_error *err)
{
    const aq_cnnp_args *a = c->a;
    AQ_TRY(aq_onnx_read(a->model, &c->g, err));
    AQ_TRY(aq_cnnq_fold_bn(&c->g, &c->folds, &c->n_folds, err));
    AQ_TRY(load_calib(c, err));
    for (int k = 0; k < a->n_opt; k++) {
        aq_layer_opts_default(&c->opts[k]);
        AQ_TRY(aq_layer_opts_parse(a->opt[k], &c->opts[k], err));
        if (a->iters > 0) c->opts[k].iters = a->iters;
        if (a->outer_iters > 0) c->opts[k].outer_iters = a->outer_iters;
        c->opts[k].seed = a->seed;
    }
    return AQ_OK;
}

/* The allocation table: rows (NULL: a unit loss, for the feasibility check
 * before any work) of every task; sizes in bits of weights (--target-bits)
 * or of the stored layer (--target-size). */
static aq_status solve(const aq_cnnp_ctx *c, const aq_loss_row *rows, int *choice, aq_cnnp_outcome *o, aq_error *err)
{
    const aq_cnnp_args *a = c->a;
    int bytes = a->target_size > 0;
    aq_alloc_table t;
    aq_alloc_table_init(&t);
    aq_status st = AQ_OK;
    for (size_t i = 0; st == AQ_OK && i < c->n_tasks; i++) {
        const aq_dist_task *tk = &c->tasks[i];
        const aq_cnnq_layer *L = &c->cap.layers[tk->layer_index];
        const aq_layer_opts *op = &c->opts[tk->option_index];
        st = aq_alloc_table_add(&t, tk->layer, tk->option, (int64_t)L->d_out * L->d_in, op->w_bits, op->a_bits,
                                aq_cnnp_layer_macs(L), rows ? rows[i].loss : 1.0,
                                bytes ? aq_cnnp_layer_bits(L, op->w_bits, op->a_bits) : 0, 0, err);
    }
    aq_alloc_rule keep[AQ_CNNP_MAX_KEEP];
    for (int k = 0; k < a->n_keep; k++) keep[k] = (aq_alloc_rule){a->keep_re[k], a->keep_opt[k]};
    aq_alloc_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.objective = AQ_ALLOC_MIN_LOSS;
    spec.size_unit = a->target_bits > 0 ? AQ_SIZE_AVG_BITS : bytes ? AQ_SIZE_BYTES : AQ_SIZE_NONE;
    spec.size_budget = a->target_bits > 0 ? a->target_bits : a->target_size;
    spec.keep = keep, spec.n_keep = (size_t)a->n_keep;
    aq_alloc_solution sol;
    memset(&sol, 0, sizeof sol);
    if (st == AQ_OK) st = aq_alloc_solve(&t, &spec, &sol, err);
    for (size_t l = 0; st == AQ_OK && l < sol.n_layers; l++) choice[l] = c->tasks[sol.row[l]].option_index;
    if (st == AQ_OK && o) o->alloc_loss = sol.loss, o->alloc_bits = sol.size_bits, o->alloc_avg_bits = sol.avg_bits;
    if (st == AQ_OK) aq_alloc_solution_free(&sol);
    aq_alloc_table_free(&t);
    return st;
}

/* The option each layer is pinned to: the first --keep rule whose regex
 * its node name matches (the allocation's rule; conflicting rules are its
 * error), or -1; in sequential mode (no allocation) else the first option.
 * A rule matching no layer is an error. */
static aq_status pins(aq_cnnp_ctx *c, aq_error *err)
{
    const aq_cnnp_args *a = c->a;
    int L = c->cap.n_layers;
    if (!(c->pin = malloc((size_t)L * sizeof *c->pin))) return aq_fail_nomem(err, "pins", (size_t)L * 4);
    for (int i = 0; i < L; i++) c->pin[i] = -1;
    for (int k = 0; k < a->n_keep; k++) {
        regex_t re;
        if (regcomp(&re, a->keep_re[k], REG_EXTENDED | REG_NOSUB))
            return aq_fail(err, AQ_ERR_ARG, "--keep '%s': not a valid regular expression", a->keep_re[k]);
        int hits = 0, opt = 0;
        while (opt < a->n_opt && strcmp(a->opt[opt], a->keep_opt[k])) opt++;
        for (int i = 0; i < L; i++)
            if (!regexec(&re, c->g.nodes[c->cap.layers[i].node].name, 0, NULL, 0)) {
                hits++;
                if (c->pin[i] < 0) c->pin[i] = opt;
            }
        regfree(&re);
        if (!hits) return aq_fail(err, AQ_ERR_ARG, "--keep '%s=%s': the pattern matches no layer", a->keep_re[k], a->keep_opt[k]);
    }
    for (int i = 0; a->sequential && i < L; i++)
        if (c->pin[i] < 0) c->pin[i] = 0;
    return AQ_OK;
}

/* Predictions of images [first, first + n) split over the ranks in
 * contiguous slices (an image's result does not depend on its batch), then
 * gathered to rank 0's all[n]. m NULL: the FP graph g. */
static aq_status predict_split(MPI_Comm comm, const aq_cnn_graph *g, const aq_cnnq_model *m, const uint8_t *px,
                               size_t n, size_t image, const aq_cnnp_args *a, int32_t *all, aq_error *err)
{
    int r, P;
    MPI_Comm_rank(comm, &r);
    MPI_Comm_size(comm, &P);
    int *cnt = malloc((size_t)P * sizeof *cnt), *dsp = malloc((size_t)P * sizeof *dsp);
    if (!cnt || !dsp) {
        free(cnt), free(dsp);
        return aq_fail_nomem(err, "prediction counts", (size_t)P * 8);
    }
    for (int k = 0; k < P; k++) {
        size_t lo = n * (size_t)k / (size_t)P, hi = n * (size_t)(k + 1) / (size_t)P;
        dsp[k] = (int)lo, cnt[k] = (int)(hi - lo);
    }
    int32_t *mine = malloc(((size_t)cnt[r] + 1) * sizeof *mine);
    aq_status st = mine ? AQ_OK : aq_fail_nomem(err, "predictions", (size_t)cnt[r] * 4);
    const uint8_t *p0 = px + (size_t)dsp[r] * image;
    if (st == AQ_OK && cnt[r] > 0)
        st = m ? aq_cnnq_predict(m, p0, (size_t)cnt[r], image, &a->norm, a->batch, mine, err)
               : aq_cnn_predict(g, p0, (size_t)cnt[r], image, &a->norm, a->batch, mine, NULL, NULL, err);
    st = aq_dist_agree(comm, st, err);
    if (st == AQ_OK) MPI_Gatherv(mine, cnt[r], MPI_INT32_T, all, cnt, dsp, MPI_INT32_T, 0, comm);
    free(mine), free(cnt), free(dsp);
    return st;
}

typedef struct eval_set {
    aq_idx im, lb;
    size_t first, n;
    int32_t *fp, *lab; /* rank 0 */
} eval_set;

static aq_status load_eval(const aq_cnnp_args *a, size_t image, eval_set *e, aq_error *err)
{
    AQ_TRY(aq_idx_read_images(a->eval_images, &e->im, err));
    AQ_TRY(aq_idx_read_labels(a->eval_labels, 0, &e->lb, err));
    if ((size_t)(e->im.rows * e->im.cols) != image)
        return aq_fail(err, AQ_ERR_SHAPE, "%s: images of %lld x %lld pixels, the calibration images have %zu",
                       a->eval_images, (long long)e->im.rows, (long long)e->im.cols, image);
    if (e->lb.n != e->im.n)
        return aq_fail(err, AQ_ERR_SHAPE, "%s holds %lld labels, %s %lld images", a->eval_labels, (long long)e->lb.n,
                       a->eval_images, (long long)e->im.n);
    e->first = a->eval_from < 0 ? 0 : (size_t)a->eval_from;
    size_t to = a->eval_to < 0 ? (size_t)e->im.n : (size_t)a->eval_to;
    if (to > (size_t)e->im.n)
        return aq_fail(err, AQ_ERR_ARG, "--eval-range %zu:%zu: %s holds %lld images", e->first, to, a->eval_images,
                       (long long)e->im.n);
    e->n = to - e->first;
    e->fp = malloc(e->n * sizeof *e->fp);
    e->lab = malloc(e->n * sizeof *e->lab);
    if (!e->fp || !e->lab) return aq_fail_nomem(err, "predictions", e->n * 8);
    for (size_t i = 0; i < e->n; i++) e->lab[i] = e->lb.data[e->first + i];
    return AQ_OK;
}

static void eval_free(eval_set *e)
{
    aq_idx_free(&e->im), aq_idx_free(&e->lb);
    free(e->fp), free(e->lab);
}

/* aq_cnnq_split's gather over comm: the first failure of any rank, else
 * rows[n][len] completed from every rank's slice (aq_tune_share's). */
static aq_status gather_rows(void *ctx, aq_status local, double *rows, size_t n, size_t len, aq_error *err)
{
    MPI_Comm comm = *(MPI_Comm *)ctx;
    AQ_TRY(aq_dist_agree(comm, local, err));
    int P;
    MPI_Comm_size(comm, &P);
    if (n * len > (size_t)INT32_MAX)
        return aq_fail(err, AQ_ERR_ARG, "BN/bias stage: a table of %zu x %zu values is too large to gather", n, len);
    int *cnt = malloc(2 * (size_t)P * sizeof *cnt), *dsp = cnt + P;
    aq_status st = cnt ? AQ_OK : aq_fail_nomem(err, "gather counts", 2 * (size_t)P * sizeof *cnt);
    st = aq_dist_agree(comm, st, err);
    if (st != AQ_OK) {
        free(cnt);
        return st;
    }
    for (int k = 0; k < P; k++) {
        size_t lo = n * (size_t)k / (size_t)P, hi = n * (size_t)(k + 1) / (size_t)P;
        dsp[k] = (int)(lo * len), cnt[k] = (int)((hi - lo) * len);
    }
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, rows, cnt, dsp, MPI_DOUBLE, comm);
    free(cnt);
    return AQ_OK;
}

/* After the choice: every rank loads the chosen results and rounds the zero
 * points (what QDQ stores, with the bias correction of the library), then
 * all run the BN/bias stage together, each pass split over the ranks by
 * images (aq_cnnq_split: sums in image order, so every rank ends with the
 * same bytes, those of one rank alone). Rank 0's scales and biases are
 * broadcast anyway, so that the written model is rank 0's by construction. */
static aq_status finish_layers(MPI_Comm comm, const aq_cnnp_ctx *c, aq_cnnp_outcome *o, aq_error *err)
{
    int L = c->cap.n_layers;
    aq_cnnq_result **rp = malloc((size_t)L * sizeof *rp);
    if (!rp) return aq_fail_nomem(err, "layer list", (size_t)L * sizeof *rp);
    aq_status st = AQ_OK;
    for (int i = 0; st == AQ_OK && i < L; i++) {
        st = aq_cnnp_result_load(c, (size_t)aq_cnnp_task_index(c, i, o->choice[i]), &o->res[i], err);
        int ch = 0;
        if (st == AQ_OK) st = aq_cnnq_round_zeros_corrected(&c->cap, i, &o->res[i], &ch, err);
        o->zeros_rounded += ch;
        rp[i] = &o->res[i];
    }
    st = aq_dist_agree(comm, st, err);
    double t0 = aq_progress_now(), c0 = cpu_now();
    aq_cnnq_seq seq = {c->calib, c->image, &c->a->norm, c->a->batch};
    /* the tuning reads the calibration images the capture ran on */
    aq_cnnq_tune_opts to = c->a->tune;
    to.n_images = c->n_calib;
    MPI_Comm cm = comm;
    aq_cnnq_split split = {rank_of(comm), 0, gather_rows, &cm};
    MPI_Comm_size(comm, &split.size);
    to.split = &split;
    if (st == AQ_OK) st = aq_cnnq_tune(&c->g, c->cap.layers, L, rp, c->folds, c->n_folds, &seq, &to, &o->tune, err);
    st = aq_dist_agree(comm, st, err);
    for (int i = 0; st == AQ_OK && i < L; i++) {
        MPI_Bcast(o->res[i].scale, o->res[i].d_out, MPI_FLOAT, 0, comm);
        MPI_Bcast(o->res[i].bias, o->res[i].d_out, MPI_FLOAT, 0, comm);
    }
    if (st == AQ_OK) MPI_Bcast(&o->tune, (int)sizeof o->tune, MPI_BYTE, 0, comm);
    o->t_tune = aq_progress_now() - t0, o->c_tune = cpu_now() - c0;
    free(rp);
    return st;
}

/* FP (the model as read, unfolded) and quantized predictions. */
static aq_status evaluate(MPI_Comm comm, const aq_cnnp_ctx *c, eval_set *e, aq_cnnp_outcome *o, aq_error *err)
{
    int L = c->cap.n_layers;
    const aq_cnnq_result **rp = malloc((size_t)L * sizeof *rp);
    aq_cnn_graph fp = {0};
    aq_cnnq_model m;
    memset(&m, 0, sizeof m);
    int built = 0;
    aq_status st = rp ? AQ_OK : aq_fail_nomem(err, "layer list", (size_t)L * sizeof *rp);
    for (int i = 0; st == AQ_OK && i < L; i++) rp[i] = &o->res[i];
    if (st == AQ_OK) st = aq_onnx_read(c->a->model, &fp, err);
    const uint8_t *px = e->im.data + e->first * c->image;
    if (st == AQ_OK) st = predict_split(comm, &fp, NULL, px, e->n, c->image, c->a, e->fp, err);
    if (st == AQ_OK) built = (st = aq_cnnq_model_build(&c->g, c->cap.layers, L, rp, 1, &m, err)) == AQ_OK;
    st = aq_dist_agree(comm, st, err);
    if (st == AQ_OK) st = predict_split(comm, NULL, &m, px, e->n, c->image, c->a, o->pred_q, err);
    if (st == AQ_OK && rank_of(comm) == 0) {
        o->n_eval = e->n, o->eval_first = e->first;
        o->correct_fp = aq_cnn_count_equal(e->fp, e->lab, e->n);
        o->correct_q = aq_cnn_count_equal(o->pred_q, e->lab, e->n);
        o->agree = aq_cnn_count_equal(o->pred_q, e->fp, e->n);
    }
    if (built) aq_cnnq_model_free(&m);
    aq_cnn_graph_free(&fp);
    free(rp);
    return st;
}

/* Sequential mode: layer by layer, the driver runs the one task of layer i
 * on an input every rank computes from the stored results of layers
 * 0..i-1 (the same files, so the same bytes on every rank and on resume). */
static aq_status run_sequential(MPI_Comm comm, aq_cnnp_ctx *c, const aq_dist_options *dopt, aq_loss_row *table,
                                aq_cnnp_outcome *o, aq_error *err)
{
    int L = c->cap.n_layers;
    float **x = calloc((size_t)L, sizeof *x);
    aq_cnnq_result *res = calloc((size_t)L, sizeof *res);
    const aq_cnnq_result **rp = calloc((size_t)L, sizeof *rp);
    aq_status st = x && res && rp ? AQ_OK : aq_fail_nomem(err, "sequential state", (size_t)L * 64);
    c->seq_x = (const float *const *)x;
    aq_cnnq_seq seq = {c->calib, c->image, &c->a->norm, c->a->batch};
    for (int i = 0; st == AQ_OK && i < L; i++) {
        if (i > 0) {
            aq_cnnq_model m;
            st = aq_cnnq_model_build(&c->g, c->cap.layers, L, rp, 1, &m, err);
            if (st == AQ_OK) {
                st = aq_cnnq_capture_input(&m, &c->cap, i, seq.pixels, seq.image_size, seq.norm, seq.chunk, &x[i], err);
                aq_cnnq_model_free(&m);
            }
        }
        aq_dist_stats ds;
        st = aq_dist_agree(comm, st, err);
        if (st == AQ_OK) st = aq_dist_run(comm, &c->tasks[i], 1, aq_cnnp_task_run, c, dopt, &table[i], &ds, err);
        o->reused += ds.reused, o->computed += ds.computed;
        if (st == AQ_OK) st = aq_cnnp_result_load(c, (size_t)i, &res[i], err);
        rp[i] = &res[i];
        free(x[i]), x[i] = NULL;
    }
    for (int i = 0; res && i < L; i++) aq_cnnq_result_free(&res[i]);
    c->seq_x = NULL;
    free(x), free(res), free(rp);
    return st;
}

/* The tasks and the checks of the budget and the --keep rules on the layer
 * list alone (before the capture, before any task). */
static aq_status plan_tasks(MPI_Comm comm, aq_cnnp_ctx *c, aq_cnnp_outcome *o, aq_error *err)
{
    const aq_cnnp_args *a = c->a;
    AQ_TRY(aq_cnnq_layers(&c->g, &c->cap.layers, &c->cap.n_layers, err));
    int L = c->cap.n_layers;
    o->choice = calloc((size_t)L + 1, sizeof *o->choice);
    o->res = calloc((size_t)L + 1, sizeof *o->res);
    if (!o->choice || !o->res) return aq_fail_nomem(err, "choice", (size_t)L * 64);
    AQ_TRY(pins(c, err));
    AQ_TRY(aq_cnnp_fingerprint(c, err));
    AQ_TRY(aq_cnnp_tasks(c, err));
    if (!(o->rows = calloc(c->n_tasks, sizeof *o->rows))) return aq_fail_nomem(err, "loss table", c->n_tasks);
    return !a->sequential && rank_of(comm) == 0 ? solve(c, NULL, o->choice, NULL, err) : AQ_OK;
}

/* Capture, the tasks, the choice (rank 0 solves, then broadcast). */
static aq_status quantize_layers(MPI_Comm comm, aq_cnnp_ctx *c, aq_cnnp_outcome *o, aq_error *err)
{
    const aq_cnnp_args *a = c->a;
    AQ_TRY(aq_dist_agree(comm, plan_tasks(comm, c, o, err), err));
    free(c->cap.layers); /* the capture lists them again, the same */
    memset(&c->cap, 0, sizeof c->cap);
    double t0 = aq_progress_now(), c0 = cpu_now();
    aq_status st = aq_cnnq_capture_run(&c->g, c->calib, c->n_calib, c->image, &a->norm, a->batch, &c->cap, err);
    st = aq_dist_agree(comm, st, err);
    if (st != AQ_OK) return st;
    o->t_capture = aq_progress_now() - t0, o->c_capture = cpu_now() - c0;
    int L = c->cap.n_layers;
    SAY(comm, "quantize: capture: %d layers, %zu images, %.1f MB per rank, %.2f s\n", L, c->n_calib,
        (double)c->cap.bytes / 1e6, o->t_capture);
    aq_dist_options dopt;
    aq_dist_options_default(&dopt, a->work);
    dopt.resume = a->resume;
    t0 = aq_progress_now(), c0 = cpu_now();
    if (a->sequential) {
        st = run_sequential(comm, c, &dopt, o->rows, o, err);
        memcpy(o->choice, c->pin, (size_t)L * sizeof *o->choice);
    } else {
        aq_dist_stats ds;
        st = aq_dist_run(comm, c->tasks, c->n_tasks, aq_cnnp_task_run, c, &dopt, o->rows, &ds, err);
        o->reused = ds.reused, o->computed = ds.computed;
    }
    o->t_tasks = aq_progress_now() - t0, o->c_tasks = cpu_now() - c0;
    AQ_TRY(st);
    t0 = aq_progress_now();
    if (!a->sequential) {
        st = rank_of(comm) == 0 ? solve(c, o->rows, o->choice, o, err) : AQ_OK;
        AQ_TRY(aq_dist_agree(comm, st, err));
        AQ_TRY(aq_dist_bcast_choice(comm, 0, o->choice, (size_t)L, err));
    }
    o->t_solve = aq_progress_now() - t0;
    return AQ_OK;
}

static void ctx_free(aq_cnnp_ctx *c, aq_cnnp_outcome *o)
{
    for (int i = 0; o->res && i < c->cap.n_layers; i++) aq_cnnq_result_free(&o->res[i]);
    free(o->res), free(o->choice), free(o->rows), free(o->pred_q);
    aq_cnnq_capture_free(&c->cap);
    aq_cnnq_bnfold_free(c->folds, c->n_folds);
    aq_cnn_graph_free(&c->g);
    free(c->calib), free(c->tasks), free(c->pin), free(c->task_of);
}

aq_status aq_cnnp_run(MPI_Comm comm, const aq_cnnp_args *a, aq_error *err)
{
    aq_cnnp_ctx c;
    aq_cnnp_outcome o;
    eval_set e;
    memset(&c, 0, sizeof c), memset(&o, 0, sizeof o), memset(&e, 0, sizeof e);
    c.a = a;
    MPI_Comm_size(comm, &o.ranks);
    double t0 = aq_progress_now(), c0 = cpu_now();
    aq_status st = load(&c, err);
    if (st == AQ_OK) st = load_eval(a, c.image, &e, err);
    if (st == AQ_OK && !(o.pred_q = malloc((e.n + 1) * sizeof *o.pred_q))) st = aq_fail_nomem(err, "predictions", e.n * 4);
    st = aq_dist_agree(comm, st, err);
    o.t_load = aq_progress_now() - t0, o.c_load = cpu_now() - c0;
    if (st == AQ_OK)
        SAY(comm, "quantize: %s: %d BatchNorm folded, %zu calibration images, %zu evaluation images, %d rank%s\n",
            a->model, c.n_folds, c.n_calib, e.n, o.ranks, o.ranks > 1 ? "s" : "");
    if (st == AQ_OK) st = quantize_layers(comm, &c, &o, err);
    if (st == AQ_OK) st = finish_layers(comm, &c, &o, err);
    if (st == AQ_OK) SAY(comm, "quantize: allocation and BN/bias stage done; evaluating\n");
    t0 = aq_progress_now(), c0 = cpu_now();
    if (st == AQ_OK) st = evaluate(comm, &c, &e, &o, err);
    o.t_eval = aq_progress_now() - t0, o.c_eval = cpu_now() - c0;
    if (st == AQ_OK && rank_of(comm) == 0) {
        SAY(comm, "quantize: top-1 FP %.4f, quantized %.4f, agreement %.4f (%zu images)\n",
            (double)o.correct_fp / (double)o.n_eval, (double)o.correct_q / (double)o.n_eval,
            (double)o.agree / (double)o.n_eval, o.n_eval);
        st = aq_cnnp_write_outdir(&c, &o, err);
    }
    st = aq_dist_agree(comm, st, err);
    if (st == AQ_OK) SAY(comm, "quantize: wrote %s\n", a->out);
    ctx_free(&c, &o);
    eval_free(&e);
    return st;
}
