/* cnn_task.c — the (layer, option) tasks of `adaquant quantize MODEL.onnx`:
 * what a result depends on (its fingerprint), the cost estimate the
 * scheduler balances, one task (AdaQuant or RTN of one layer at one option,
 * with the allocation loss) and its result file, written and read back. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/quant/quant.h"
#include "cnn_pipe.h"
#include "driver.h"

#define RESULT_KIND "adaquant-cnn-result/1"
enum { LOSS_ROWS_MAX = 32768 }; /* rows the RTN loss looks at (evenly over the first images) */

aq_status aq_cnnp_fingerprint(aq_cnnp_ctx *c, aq_error *err)
{
    const aq_cnnp_args *a = c->a;
    aq_fp_builder b;
    aq_fp_init(&b);
    aq_fp_add_str(&b, "kind", RESULT_KIND);
    AQ_TRY(aq_fp_add_file(&b, "model", a->model, err));
    /* the calibration pixels themselves cover the file and the index list */
    aq_fp_add_bytes(&b, "calib", c->calib, c->n_calib * c->image);
    aq_fp_add_u64(&b, "norm_raw", (uint64_t)a->norm.raw);
    aq_fp_add_f64(&b, "norm_mean", a->norm.mean);
    aq_fp_add_f64(&b, "norm_std", a->norm.std);
    aq_fp_add_u64(&b, "method", (uint64_t)a->method);
    aq_fp_add_u64(&b, "sequential", (uint64_t)a->sequential);
    aq_fp_add_i64(&b, "iters", a->iters);
    aq_fp_add_i64(&b, "outer_iters", a->outer_iters);
    aq_fp_add_i64(&b, "max_rows", a->max_rows);
    aq_fp_add_u64(&b, "seed", a->seed);
    /* a different BN folding (another build) changes every layer's weight */
    aq_fp_add_i64(&b, "bn_folds", c->n_folds);
    c->base = aq_fp_final(&b);
    return AQ_OK;
}

static aq_fingerprint task_fp(const aq_cnnp_ctx *c, const char *layer, int li, const char *opt,
                              const char *chain)
{
    aq_fp_builder b;
    aq_fp_init(&b);
    aq_fp_add_fp(&b, "base", &c->base, 0);
    aq_fp_add_str(&b, "layer", layer);
    aq_fp_add_i64(&b, "layer_index", li);
    aq_fp_add_str(&b, "option", opt);
    aq_fp_add_str(&b, "upstream", chain); /* sequential: the options of the layers before */
    return aq_fp_final(&b);
}

int64_t aq_cnnp_layer_macs(const aq_cnnq_layer *L)
{
    int64_t m = (int64_t)L->d_out * L->d_in;
    if (L->op != AQ_OP_CONV) return m;
    int oh = 1, ow = 1;
    aq_error e = {0};
    if (aq_conv_check(&L->conv, L->h, L->w, &oh, &ow, &e) != AQ_OK) return m;
    return m * oh * ow;
}

int64_t aq_cnnp_layer_bits(const aq_cnnq_layer *L, int w_bits, int a_bits)
{
    int64_t bits = (int64_t)L->d_out * L->d_in * w_bits + (int64_t)L->d_out * 3 * 32;
    return bits + (a_bits < 16 ? 64 : 0);
}

/* Sequential mode: the chain of options before layer i ("w4a4,w8a8,"). */
static void chain_of(const aq_cnnp_ctx *c, int i, char *buf, size_t n)
{
    buf[0] = 0;
    if (!c->a->sequential) return;
    size_t used = 0;
    for (int j = 0; j < i && used + 16 < n; j++)
        used += (size_t)snprintf(buf + used, n - used, "%s,", c->a->opt[c->pin[j]]);
}

long aq_cnnp_task_index(const aq_cnnp_ctx *c, int i, int k)
{
    return c->task_of[(size_t)i * (size_t)c->a->n_opt + (size_t)k];
}

aq_status aq_cnnp_tasks(aq_cnnp_ctx *c, aq_error *err)
{
    int L = c->cap.n_layers, K = c->a->n_opt;
    c->tasks = calloc((size_t)L * (size_t)K, sizeof *c->tasks);
    c->task_of = malloc((size_t)L * (size_t)K * sizeof *c->task_of);
    if (!c->tasks || !c->task_of) return aq_fail_nomem(err, "task list", (size_t)L * (size_t)K * sizeof *c->tasks);
    c->n_tasks = 0;
    for (int i = 0; i < L; i++) {
        const aq_cnnq_layer *ly = &c->cap.layers[i];
        int64_t rows = (int64_t)aq_cnnp_task_images(c, i) * (aq_cnnp_layer_macs(ly) / ((int64_t)ly->d_out * ly->d_in));
        char chain[1024];
        chain_of(c, i, chain, sizeof chain);
        for (int k = 0; k < K; k++) {
            c->task_of[(size_t)i * (size_t)K + (size_t)k] = -1;
            if (c->pin[i] >= 0 && c->pin[i] != k) continue; /* a task the allocation cannot choose */
            c->task_of[(size_t)i * (size_t)K + (size_t)k] = (long)c->n_tasks;
            aq_dist_task *t = &c->tasks[c->n_tasks++];
            const aq_layer_opts *o = &c->opts[k];
            int64_t it = c->a->method == AQ_CNNQ_ADAQUANT ? (int64_t)o->iters * (o->a_bits < 16 ? o->outer_iters : 1) : 1;
            t->layer = c->g.nodes[ly->node].name;
            t->option = c->a->opt[k];
            t->layer_index = i, t->option_index = k;
            t->cost = aq_dist_task_cost(ly->d_out, ly->d_in, rows, it);
            t->fp = task_fp(c, t->layer, i, t->option, chain);
        }
    }
    /* built in (layer, option) order already: this only checks the keys */
    return aq_dist_tasks_order(c->tasks, c->n_tasks, err);
}

/* Dequantized row r of a result: scale_r (codes - zero_r). */
static void deq_row(const aq_cnnq_result *r, size_t row, double *w)
{
    for (size_t j = 0; j < (size_t)r->d_in; j++)
        w[j] = (double)r->scale[row] * ((double)r->codes[row * (size_t)r->d_in + j] - (double)r->zero[row]);
}

/* ||Y - Y^||^2 / ||Y||^2 over `n` input rows xr [n, k] of output channels
 * [o0, o0 + m) (W rows of the FP layer, w_fp), the input fake-quantized for Y^. */
static void loss_acc(const float *xr, size_t n, size_t k, const float *w_fp, const float *b, const aq_cnnq_result *r,
                     size_t o0, size_t m, double *num, double *den, double *wq, float *xq)
{
    for (size_t s = 0; s < n; s++) {
        const float *x = xr + s * k;
        if (r->a_bits < 16)
            aq_fake_quant(x, k, r->a_scale, r->a_zero, r->a_bits, xq);
        else
            memcpy(xq, x, k * sizeof *xq);
        for (size_t o = o0; o < o0 + m; o++) {
            const float *wr = w_fp + o * k;
            deq_row(r, o, wq);
            double y = b ? b[o] : 0, yq = r->bias[o];
            for (size_t j = 0; j < k; j++) y += (double)wr[j] * x[j], yq += wq[j] * xq[j];
            *num += (y - yq) * (y - yq), *den += y * y;
        }
    }
}

/* The RTN result's allocation loss, measured like AdaQuant's (the normalised
 * output error on the calibration inputs), on at most LOSS_ROWS_MAX rows. */
static aq_status rtn_loss(const aq_cnnp_ctx *c, int i, aq_cnnq_result *r, aq_error *err)
{
    const aq_cnnq_layer *L = &c->cap.layers[i];
    const aq_cnn_value *wv = &c->g.values[L->w_value];
    const float *b = L->b_value >= 0 ? c->g.values[L->b_value].data : NULL;
    size_t k = (size_t)L->d_in, d_out = (size_t)L->d_out;
    float *w = malloc(d_out * k * sizeof *w), *xq = malloc(k * sizeof *xq);
    double *wq = malloc(k * sizeof *wq), num = 0, den = 0;
    float *rows = NULL;
    aq_status st = w && xq && wq ? AQ_OK : aq_fail_nomem(err, "loss scratch", d_out * k * 4);
    for (size_t o = 0; st == AQ_OK && o < d_out; o++)
        for (size_t j = 0; j < k; j++) w[o * k + j] = L->transposed ? wv->data[j * d_out + o] : wv->data[o * k + j];
    const float *x = aq_cnnq_capture_x(&c->cap, i);
    if (st == AQ_OK && L->op == AQ_OP_CONV) {
        int oh, ow;
        st = aq_conv_check(&L->conv, L->h, L->w, &oh, &ow, err);
        size_t per = (size_t)oh * (size_t)ow, ni = per >= LOSS_ROWS_MAX ? 1 : LOSS_ROWS_MAX / per;
        if (ni > (size_t)c->cap.n_images) ni = (size_t)c->cap.n_images;
        if (st == AQ_OK && !(rows = malloc(ni * per * k * sizeof *rows))) st = aq_fail_nomem(err, "im2col rows", ni * per * k * 4);
        size_t m = d_out / (size_t)L->conv.groups;
        for (int gr = 0; st == AQ_OK && gr < L->conv.groups; gr++) {
            aq_im2col(x, (int)ni, L->h, L->w, &L->conv, gr, rows);
            loss_acc(rows, ni * per, k, w, b, r, (size_t)gr * m, m, &num, &den, wq, xq);
        }
    } else if (st == AQ_OK) {
        size_t n = (size_t)c->cap.n_images < LOSS_ROWS_MAX ? (size_t)c->cap.n_images : LOSS_ROWS_MAX;
        loss_acc(x, n, k, w, b, r, 0, d_out, &num, &den, wq, xq);
    }
    if (st == AQ_OK) r->loss = den > 0 ? num / den : num;
    free(w), free(xq), free(wq), free(rows);
    return st;
}

static aq_status write_result(const aq_cnnp_ctx *c, const aq_dist_task *t, const aq_cnnq_result *r, const char *path,
                              aq_error *err)
{
    const aq_cnnq_layer *L = &c->cap.layers[t->layer_index];
    int64_t o = r->d_out, in = r->d_in;
    float act[2] = {r->a_scale, r->a_zero};
    aq_tensor_view v[5] = {
        {"codes", AQ_U8, 2, {o, in}, r->codes, (size_t)(o * in)},
        {"w_scale", AQ_F32, 1, {o}, r->scale, (size_t)o * 4},
        {"w_zero", AQ_F32, 1, {o}, r->zero, (size_t)o * 4},
        {"bias", AQ_F32, 1, {o}, r->bias, (size_t)o * 4},
        {"act", AQ_F32, 1, {2}, act, sizeof act},
    };
    aq_result_desc d = {.layer = t->layer, .option = t->option, .fp = t->fp, .n_tensors = 5, .tensors = v};
    d.row = (aq_loss_row){.loss = r->loss, .loss_rtn = NAN, .loss_gptq = NAN, .loss_init = NAN,
                          .seconds = r->seconds, .params = o * in, .macs = aq_cnnp_layer_macs(L),
                          .size_bits = aq_cnnp_layer_bits(L, r->w_bits, r->a_bits),
                          .iterations = c->a->iters, .w_bits = r->w_bits, .a_bits = r->a_bits};
    return aq_result_write(path, &d, err);
}

int aq_cnnp_task_images(const aq_cnnp_ctx *c, int i)
{
    const aq_cnnq_layer *L = &c->cap.layers[i];
    int64_t per = aq_cnnp_layer_macs(L) / ((int64_t)L->d_out * L->d_in), n = c->cap.n_images;
    if (c->a->max_rows <= 0 || L->op != AQ_OP_CONV || per * n <= c->a->max_rows) return (int)n;
    int64_t k = (c->a->max_rows + per - 1) / per;
    return (int)(k < 1 ? 1 : k);
}

aq_status aq_cnnp_task_run(void *vctx, const aq_dist_task *t, size_t index, const char *path, aq_dist_worker *w,
                           aq_error *err)
{
    (void)index, (void)w;
    const aq_cnnp_ctx *c = vctx;
    int i = t->layer_index;
    aq_cnnq_result r;
    const float *x_in = c->seq_x ? c->seq_x[i] : NULL;
    /* The first images only (the capture is [n_images, ...] image-major, so
     * this is a view): a conv layer's Grams over 10^5 rows of 10^2..10^3
     * inputs are as good as over 4x more, at a quarter of the cost. */
    aq_cnnq_capture view = c->cap;
    view.n_images = aq_cnnp_task_images(c, i);
    AQ_TRY(aq_cnnq_quantize_layer(&c->g, &view, i, x_in, c->a->method, &c->opts[t->option_index], &r, err));
    aq_status st = c->a->method == AQ_CNNQ_ADAQUANT ? AQ_OK : rtn_loss(c, i, &r, err);
    if (st == AQ_OK && !isfinite(r.loss))
        st = aq_fail(err, AQ_ERR_NUMERIC, "node '%s' at %s: the loss is not finite", t->layer, t->option);
    if (st == AQ_OK) st = write_result(c, t, &r, path, err);
    aq_cnnq_result_free(&r);
    return st;
}

static const aq_tensor_view *need(const aq_result *res, const char *name, aq_dtype dt, size_t bytes, const char *path,
                                  aq_error *err)
{
    const aq_tensor_view *v = aq_result_find(res, name);
    if (!v || v->dtype != dt || v->nbytes != bytes) {
        aq_fail(err, AQ_ERR_FORMAT, "%s: tensor '%s' is missing or has the wrong type or size", path, name);
        return NULL;
    }
    return v;
}

aq_status aq_cnnp_result_load(const aq_cnnp_ctx *c, size_t ti, aq_cnnq_result *r, aq_error *err)
{
    const aq_dist_task *t = &c->tasks[ti];
    const aq_cnnq_layer *L = &c->cap.layers[t->layer_index];
    char *path;
    AQ_TRY(aq_result_path(c->a->work, t->layer, t->option, &path, err));
    aq_result *res = NULL;
    aq_status st = aq_result_read(path, &t->fp, &res, err);
    size_t o = (size_t)L->d_out, in = (size_t)L->d_in;
    const aq_tensor_view *v[5] = {0};
    if (st == AQ_OK) {
        v[0] = need(res, "codes", AQ_U8, o * in, path, err);
        v[1] = v[0] ? need(res, "w_scale", AQ_F32, o * 4, path, err) : NULL;
        v[2] = v[1] ? need(res, "w_zero", AQ_F32, o * 4, path, err) : NULL;
        v[3] = v[2] ? need(res, "bias", AQ_F32, o * 4, path, err) : NULL;
        v[4] = v[3] ? need(res, "act", AQ_F32, 8, path, err) : NULL;
        if (!v[4]) st = AQ_ERR_FORMAT;
    }
    memset(r, 0, sizeof *r);
    if (st == AQ_OK) {
        r->codes = malloc(o * in);
        r->scale = malloc(3 * o * sizeof(float));
        if (!r->codes || !r->scale) {
            free(r->codes), free(r->scale);
            memset(r, 0, sizeof *r);
            st = aq_fail_nomem(err, "layer result", o * in);
        }
    }
    if (st == AQ_OK) {
        r->zero = r->scale + o, r->bias = r->scale + 2 * o;
        r->d_out = (int)o, r->d_in = (int)in, r->w_bits = res->row.w_bits, r->a_bits = res->row.a_bits;
        memcpy(r->codes, v[0]->data, o * in);
        memcpy(r->scale, v[1]->data, o * 4), memcpy(r->zero, v[2]->data, o * 4), memcpy(r->bias, v[3]->data, o * 4);
        float act[2];
        memcpy(act, v[4]->data, sizeof act);
        r->a_scale = act[0], r->a_zero = act[1];
        r->loss = res->row.loss, r->seconds = res->row.seconds;
    }
    aq_result_free(res);
    free(path);
    return st;
}
