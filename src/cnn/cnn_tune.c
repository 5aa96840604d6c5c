/* cnn_tune.c — aq_cnnq_tune (cnn_tune.h): BN re-estimation, bias correction
 * and bias tuning of a quantized CNN, in that order, each in layer order so
 * that a layer is adjusted in the model whose upstream layers already are. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnn_quant_internal.h"
#include "cnn_tune_internal.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Mean (and variance, when var) of model node `node`'s output per channel. */
static aq_status node_stats(const aq_cnnq_model *m, int node, int C, const aq_cnnq_seq *calib,
                            size_t n, const aq_cnnq_split *split, double *mean, double *var,
                            aq_error *err)
{
    double *sq = var ? calloc((size_t)C, sizeof *sq) : NULL, cnt = 0;
    if (var && !sq) return aq_fail_nomem(err, "BN statistics", (size_t)C * sizeof *sq);
    aq_status st = aq_tune_channel_sums(NULL, m, 1, &node, &C, calib, n, split, mean, sq, &cnt, err);
    for (int ch = 0; st == AQ_OK && ch < C; ch++) {
        mean[ch] /= cnt;
        if (var) var[ch] = fmax(sq[ch] / cnt - mean[ch] * mean[ch], 0.0);
    }
    free(sq);
    return st;
}

static aq_status build(const aq_cnn_graph *g, const aq_cnnq_layer *layers, int L,
                       aq_cnnq_result *const *res, aq_cnnq_model *m, aq_error *err)
{
    return aq_cnnq_model_build(g, layers, L, (const aq_cnnq_result *const *)res, 1, m, err);
}

/* The re-estimated fold of layer i: z, its conv's output, is (u - mean) f +
 * beta of the pre-BN output u with f = gamma / sqrt(var + eps). With u's
 * statistics re-measured (mean_u = (E z - beta) / f + mean, var_u = Var z /
 * f^2) the refolded output is t (z - E z) + beta, t = |gamma| / sqrt(Var z +
 * eps f^2) > 0: a per-channel scale (exact with per-channel weight scales)
 * and a new bias. */
static void refold(const aq_cnnq_bnfold *f, const double *mz, const double *vz, aq_cnnq_result *r)
{
    for (int c = 0; c < f->channels; c++) {
        double fk = (double)f->gamma[c] / sqrt((double)f->var[c] + f->eps);
        double den = sqrt(vz[c] + f->eps * fk * fk);
        /* den = 0 only when gamma = 0 and the output is constant: then the
         * BN's output is beta alone, which t = 0 gives */
        double t = den > 0 ? fabs((double)f->gamma[c]) / den : 0.0;
        r->scale[c] = (float)(r->scale[c] * t);
        r->bias[c] = (float)(t * ((double)r->bias[c] - mz[c]) + f->beta[c]);
    }
}

static aq_status bn_reestimate(const aq_cnn_graph *g, const aq_cnnq_layer *layers, int L,
                               aq_cnnq_result *const *res, const aq_cnnq_bnfold *folds, int n_folds,
                               const aq_cnnq_seq *calib, size_t n, const aq_cnnq_split *split,
                               int *done, aq_error *err)
{
    for (int i = 0; i < L; i++) {
        const aq_cnnq_bnfold *f = NULL;
        for (int j = 0; j < n_folds; j++)
            if (folds[j].conv_node == layers[i].node) f = &folds[j];
        if (!f || !res[i]) continue;
        if (f->channels != res[i]->d_out)
            return aq_fail(err, AQ_ERR_SHAPE, "node '%s': BN fold of %d channels for a layer of %d",
                           g->nodes[layers[i].node].name, f->channels, res[i]->d_out);
        aq_cnnq_model m;
        double *st2 = malloc(2 * (size_t)f->channels * sizeof *st2);
        if (!st2) return aq_fail_nomem(err, "BN statistics", 2 * (size_t)f->channels * sizeof *st2);
        aq_status st = build(g, layers, L, res, &m, err);
        if (st == AQ_OK) {
            st =
                node_stats(&m, m.layer_node[i], f->channels, calib, n, split, st2, st2 + f->channels, err);
            aq_cnnq_model_free(&m);
        }
        if (st == AQ_OK) refold(f, st2, st2 + f->channels, res[i]), (*done)++;
        free(st2);
        AQ_TRY(st);
    }
    return AQ_OK;
}

/* The FP mean of every layer's output (one pass), then layer by layer the
 * quantized model's, the difference taken out of the bias. A MatMul's
 * bias is an Add after the observed node: added to its mean. Layers with a
 * fold in folds (NULL: none skipped) are left to BN re-estimation. */
static int has_fold(const aq_cnnq_bnfold *folds, int n_folds, int node)
{
    for (int j = 0; j < n_folds; j++)
        if (folds[j].conv_node == node) return 1;
    return 0;
}

/* The nodes and channel counts of the n layers. */
static aq_status layer_nodes(const aq_cnnq_layer *layers, int L, int **nodes, int **chans,
                             size_t *tot, aq_error *err)
{
    *nodes = malloc(2 * ((size_t)L + 1) * sizeof **nodes);
    if (!*nodes) return aq_fail_nomem(err, "layer list", 2 * (size_t)L * sizeof **nodes);
    *chans = *nodes + L + 1, *tot = 0;
    for (int i = 0; i < L; i++)
        (*nodes)[i] = layers[i].node, (*chans)[i] = layers[i].d_out, *tot += (size_t)layers[i].d_out;
    return AQ_OK;
}

static aq_status bias_correct(const aq_cnn_graph *g, const aq_cnnq_layer *layers, int L,
                              aq_cnnq_result *const *res, const aq_cnnq_bnfold *folds, int n_folds,
                              const aq_cnnq_seq *calib, size_t n, const aq_cnnq_split *split,
                              int *done, aq_error *err)
{
    int *nodes = NULL, *chans = NULL; /* set by layer_nodes (gcc -O3 cannot see it) */
    size_t tot = 0;
    AQ_TRY(layer_nodes(layers, L, &nodes, &chans, &tot, err));
    double *fp = calloc(2 * tot + (size_t)L + 1, sizeof *fp), *cnt = fp + 2 * tot;
    aq_status st = fp ? AQ_OK : aq_fail_nomem(err, "bias correction", tot * 2 * sizeof *fp);
    if (st == AQ_OK) st = aq_tune_channel_sums(g, NULL, L, nodes, chans, calib, n, split, fp, NULL, cnt, err);
    double *q = fp + tot;
    for (int i = 0, off = 0; st == AQ_OK && i < L; off += layers[i].d_out, i++) {
        if (!res[i] || (folds && has_fold(folds, n_folds, layers[i].node))) continue;
        aq_cnnq_model m;
        AQ_TRY_GOTO(st, build(g, layers, L, res, &m, err), done);
        st = node_stats(&m, m.layer_node[i], res[i]->d_out, calib, n, split, q, NULL, err);
        aq_cnnq_model_free(&m);
        for (int ch = 0; st == AQ_OK && ch < res[i]->d_out; ch++) {
            double mq = q[ch] + (layers[i].op == AQ_OP_MATMUL ? res[i]->bias[ch] : 0.0);
            res[i]->bias[ch] = (float)(res[i]->bias[ch] - (mq - fp[off + ch] / cnt[i]));
        }
        if (st == AQ_OK) (*done)++;
    }
done:
    free(fp), free(nodes);
    return st;
}

/* --- bias tuning --- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void shuffle(size_t *perm, size_t n, uint64_t *s)
{
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(splitmix(s) % i), tmp = perm[i - 1];
        perm[i - 1] = perm[j], perm[j] = tmp;
    }
}

typedef struct kl_ctx {
    const aq_cnnq_model *m;
    const float *fp; /* [n, classes] */
    double inv_t;
    double *kl;      /* [n] each image's */
    size_t lo;       /* this process's first image */
} kl_ctx;

static void kl_obs(void *ctx, int node, const float *data, const aq_cnn_shape *s)
{
    aq_cnnq_model_observe(((kl_ctx *)ctx)->m, node, data, s);
}

static void kl_end(void *ctx, size_t first, size_t nb, const float *y, size_t cls)
{
    kl_ctx *c = ctx;
    for (size_t j = 0, i = c->lo + first; j < nb; j++, i++)
        c->kl[i] = aq_tune_kl1(c->fp + i * cls, y + j * cls, (int)cls, c->inv_t, NULL, 0);
}

/* Mean KL(FP || model) over the n calibration images. */
static aq_status kl_all(const aq_cnnq_model *m, const float *fp, double inv_t,
                        const aq_cnnq_seq *calib, size_t n, const aq_cnnq_split *split, double *kl,
                        aq_error *err)
{
    kl_ctx c = {m, fp, inv_t, calloc(n + 1, sizeof(double)), 0};
    aq_cnnq_runner r = {&m->g, kl_obs, &c, NULL, kl_end, 0};
    size_t hi;
    aq_tune_share(split, n, &c.lo, &hi);
    aq_status st = c.kl ? AQ_OK : aq_fail_nomem(err, "KL per image", n * sizeof(double));
    if (st == AQ_OK && hi > c.lo)
        st = aq_cnnq_run_images(&r, calib->pixels + c.lo * calib->image_size, hi - c.lo,
                                calib->image_size, calib->norm, calib->chunk, err);
    st = aq_tune_gather(split, st, c.kl, n, 1, err);
    if (st == AQ_OK) aq_tune_sum_rows(c.kl, n, 1, kl), *kl /= (double)n;
    free(c.kl);
    return st;
}

/* Adam (beta 0.9, 0.999, eps 1e-8) on every tuned bias, state in double. */
typedef struct adam {
    size_t n;
    double *m, *v, *g;
    double *sigma; /* [L] the layer's FP output spread: its step is lr * sigma */
    int step;
} adam;

static void adam_step(adam *a, aq_cnnq_result *const *res, int L, double lr0)
{
    a->step++;
    double c1 = 1 - pow(0.9, a->step), c2 = 1 - pow(0.999, a->step);
    size_t k = 0;
    for (int i = 0; i < L; i++)
        for (int ch = 0; res[i] && ch < res[i]->d_out; ch++, k++) {
            double lr = lr0 * a->sigma[i];
            a->m[k] = 0.9 * a->m[k] + 0.1 * a->g[k];
            a->v[k] = 0.999 * a->v[k] + 0.001 * a->g[k] * a->g[k];
            double upd = lr * (a->m[k] / c1) / (sqrt(a->v[k] / c2) + 1e-8);
            res[i]->bias[ch] = (float)(res[i]->bias[ch] - upd);
        }
}

/* Biases of the tuned layers, flat, to or from keep. */
static void biases_io(aq_cnnq_result *const *res, int L, float *keep, int save)
{
    size_t k = 0;
    for (int i = 0; i < L; i++)
        for (int ch = 0; res[i] && ch < res[i]->d_out; ch++, k++)
            if (save)
                keep[k] = res[i]->bias[ch];
            else
                res[i]->bias[ch] = keep[k];
}

/* sigma[i]: the root mean over channels of layer i's FP output variance on
 * the calibration images, so that one learning rate fits layers (and
 * models) whose outputs differ in scale by orders of magnitude. */
static aq_status layer_spread(const aq_cnn_graph *g, const aq_cnnq_layer *layers, int L,
                              const aq_cnnq_seq *calib, size_t n, const aq_cnnq_split *split,
                              double *sigma, aq_error *err)
{
    int *nodes = NULL, *chans = NULL; /* set by layer_nodes (gcc -O3 cannot see it) */
    size_t tot = 0;
    AQ_TRY(layer_nodes(layers, L, &nodes, &chans, &tot, err));
    double *sum = calloc(2 * tot + (size_t)L + 1, sizeof *sum), *sq = sum + tot, *cnt = sq + tot;
    aq_status st = sum ? AQ_OK : aq_fail_nomem(err, "layer spread", 2 * tot * sizeof *sum);
    if (st == AQ_OK) st = aq_tune_channel_sums(g, NULL, L, nodes, chans, calib, n, split, sum, sq, cnt, err);
    for (int i = 0, off = 0; st == AQ_OK && i < L; off += layers[i].d_out, i++) {
        double v = 0, N = cnt[i];
        for (int ch = 0; ch < layers[i].d_out; ch++) {
            double m = sum[off + ch] / N;
            v += fmax(sq[off + ch] / N - m * m, 0.0);
        }
        sigma[i] = v > 0 ? sqrt(v / layers[i].d_out) : 1.0;
    }
    free(sum), free(nodes);
    return st;
}

typedef struct tune_job {
    const aq_cnnq_seq *calib;
    size_t n;
    const aq_cnnq_tune_opts *o;
    const float *fp; /* [n, classes] FP logits */
} tune_job;

/* Bias-tuning steps of B images each: every process draws the same batch,
 * computes the per-image gradients of its slice of it, and all add the
 * gathered rows in image order before the same Adam step. */
static aq_status tune_loop(aq_tune_net *t, const tune_job *j, size_t B, aq_cnnq_result *const *res,
                           adam *a, aq_error *err)
{
    const aq_cnnq_split *sp = j->o->split;
    size_t pos = j->n, C = (size_t)t->classes, nb = a->n, lo, hi;
    aq_tune_share(sp, B, &lo, &hi);
    size_t *perm = malloc(j->n * sizeof *perm), *idx = malloc(B * sizeof *idx);
    float *fpb = malloc((hi - lo + 1) * C * sizeof *fpb);
    double *kl = malloc((hi - lo + 1) * sizeof *kl), *rows = calloc(B * nb + 1, sizeof *rows);
    uint64_t s = j->o->seed;
    aq_status st = AQ_OK;
    if (!perm || !idx || !fpb || !kl || !rows) st = aq_fail_nomem(err, "bias tuning batch", B * nb * 8);
    for (int it = 0; it < j->o->bias_iters; it++) {
        for (size_t b = 0; st == AQ_OK && b < B; b++) {
            if (pos == j->n) shuffle(perm, j->n, &s), pos = 0;
            idx[b] = perm[pos++];
            if (b >= lo && b < hi) memcpy(fpb + (b - lo) * C, j->fp + idx[b] * C, C * sizeof *fpb);
        }
        if (st == AQ_OK && hi > lo) {
            aq_tune_images(j->calib, idx + lo, hi - lo, t->x);
            st = aq_tune_net_loss_rows(t, fpb, kl, rows + lo * nb, err);
        }
        if ((st = aq_tune_gather(sp, st, rows, B, nb, err)) != AQ_OK) break;
        aq_tune_sum_rows(rows, B, nb, a->g);
        adam_step(a, res, t->n_layers, j->o->bias_lr), aq_tune_net_set_bias(t, res);
    }
    free(perm), free(idx), free(fpb), free(kl), free(rows);
    return st;
}

/* The FP logits [n, classes] of the calibration images, each process
 * computing its slice. */
static aq_status fp_logits(const aq_cnn_graph *g, const aq_cnnq_seq *calib, size_t n,
                           const aq_cnnq_split *split, size_t classes, float *fp, aq_error *err)
{
    size_t lo, hi;
    aq_tune_share(split, n, &lo, &hi);
    int32_t *pred = malloc((n + 1) * sizeof *pred);
    double *rows = calloc(n * classes + 1, sizeof *rows);
    aq_status st = pred && rows ? AQ_OK : aq_fail_nomem(err, "FP logits", n * classes * 8);
    if (st == AQ_OK && hi > lo)
        st = aq_cnn_predict(g, calib->pixels + lo * calib->image_size, hi - lo, calib->image_size,
                            calib->norm, calib->chunk, pred, fp + lo * classes, NULL, err);
    for (size_t e = lo * classes; st == AQ_OK && e < hi * classes; e++) rows[e] = fp[e];
    st = aq_tune_gather(split, st, rows, n, classes, err);
    for (size_t e = 0; st == AQ_OK && e < n * classes; e++) fp[e] = (float)rows[e];
    free(pred), free(rows);
    return st;
}

static aq_status bias_tune(const aq_cnn_graph *g, const aq_cnnq_layer *layers, int L,
                           aq_cnnq_result *const *res, const aq_cnnq_seq *calib, size_t n,
                           const aq_cnnq_tune_opts *o, aq_cnnq_tune_report *rep, aq_error *err)
{
    size_t classes = 0, nb = 0, B = o->batch < (int)n ? (size_t)o->batch : n, lo, hi;
    for (int i = 0; i < L; i++)
        nb += res[i] ? (size_t)res[i]->d_out : 0;
    int32_t pred1;
    float *fp = NULL, *keep = malloc((nb + 1) * sizeof *keep);
    adam a = {nb, calloc(3 * nb + (size_t)L + 1, sizeof(double)), NULL, NULL, NULL, 0};
    aq_tune_net t = {0};
    aq_status st = AQ_OK;
    if (!keep || !a.m) {
        st = aq_fail_nomem(err, "bias tuning", nb * 4 * sizeof(double));
        goto done;
    }
    a.v = a.m + nb, a.g = a.v + nb, a.sigma = a.g + nb;
    AQ_TRY_GOTO(st, layer_spread(g, layers, L, calib, n, o->split, a.sigma, err), done);
    AQ_TRY_GOTO(st,
                aq_cnn_predict(g, calib->pixels, 1, calib->image_size, calib->norm, 1, &pred1, NULL,
                               &classes, err),
                done);
    if (!(fp = malloc(n * classes * sizeof *fp))) {
        st = aq_fail_nomem(err, "FP logits", n * classes * sizeof *fp);
        goto done;
    }
    AQ_TRY_GOTO(st, fp_logits(g, calib, n, o->split, classes, fp, err), done);
    /* this process's slice of each batch (a net of one image when it is empty) */
    aq_tune_share(o->split, B, &lo, &hi);
    AQ_TRY_GOTO(st, aq_tune_net_init(&t, g, layers, L, res, hi > lo ? (int)(hi - lo) : 1, err), done);
    t.inv_t = 1.0 / o->temperature, t.loss_batch = (int)B;
    AQ_TRY_GOTO(st, kl_all(&t.m, fp, t.inv_t, calib, n, o->split, &rep->kl_before, err), done);
    biases_io(res, L, keep, 1);
    tune_job j = {calib, n, o, fp};
    AQ_TRY_GOTO(st, tune_loop(&t, &j, B, res, &a, err), done);
    AQ_TRY_GOTO(st, kl_all(&t.m, fp, t.inv_t, calib, n, o->split, &rep->kl_after, err), done);
    if (!(rep->kl_after < rep->kl_before)) { /* Adam overshot: keep what was there */
        biases_io(res, L, keep, 0);
        rep->tune_reverted = 1, rep->kl_after = rep->kl_before;
    }
done:
    aq_tune_net_free(&t);
    free(fp), free(keep), free(a.m);
    return st;
}

aq_status aq_cnnq_tune(const aq_cnn_graph *g, const aq_cnnq_layer *layers, int n_layers,
                       aq_cnnq_result *const *res, const aq_cnnq_bnfold *folds, int n_folds,
                       const aq_cnnq_seq *calib, const aq_cnnq_tune_opts *o,
                       aq_cnnq_tune_report *rep, aq_error *err)
{
    aq_cnnq_tune_report local;
    if (!rep) rep = &local;
    memset(rep, 0, sizeof *rep);
    size_t n = o->n_images;
    if (!calib || !calib->pixels || n == 0 || calib->chunk < 1)
        return aq_fail(err, AQ_ERR_ARG,
                       "CNN tuning: no calibration images (opts.n_images = %zu) or chunk < 1", n);
    if (o->bias_iters > 0 && (o->batch < 1 || !(o->bias_lr > 0) || !(o->temperature > 0)))
        return aq_fail(err, AQ_ERR_ARG,
                       "CNN bias tuning: batch %d, learning rate %g and temperature %g must be "
                       "positive",
                       o->batch, o->bias_lr, o->temperature);
    double t0 = now();
    if (o->bn_reestimate)
        AQ_TRY(bn_reestimate(g, layers, n_layers, res, folds, n_folds, calib, n, o->split,
                             &rep->bn_reestimated, err));
    double t1 = now();
    if (o->bias_correct)
        AQ_TRY(bias_correct(g, layers, n_layers, res, o->correct_folded ? NULL : folds, n_folds,
                            calib, n, o->split, &rep->biases_corrected, err));
    double t2 = now();
    if (o->bias_iters > 0) AQ_TRY(bias_tune(g, layers, n_layers, res, calib, n, o, rep, err));
    rep->seconds_bn = t1 - t0, rep->seconds_correct = t2 - t1, rep->seconds_tune = now() - t2;
    return AQ_OK;
}
