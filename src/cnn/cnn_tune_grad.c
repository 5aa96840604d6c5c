/* cnn_tune_grad.c — the quantized CNN as a differentiable function of its
 * layers' biases (cnn_tune_internal.h): a forward pass that keeps every
 * value, the KL loss against the FP logits and the backward sweep over the
 * nodes (each op's backward is in cnn_tune_back.c). Sums run in a fixed
 * order, so a gradient is the same bytes on every run. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cnn_tune_internal.h"

/* The model's bias array of layer i (a constant input of the layer node, or
 * of the Add emit_layer puts right after a MatMul), or NULL. */
static float *find_bias(aq_cnnq_model *m, int i)
{
    int k = m->layer_node[i];
    const aq_cnn_node *n = &m->g.nodes[k];
    if (n->op != AQ_OP_MATMUL)
        return n->n_in > 2 && n->in[2] >= 0 ? m->g.values[n->in[2]].data : NULL;
    if (k + 1 < m->g.n_nodes && m->g.nodes[k + 1].op == AQ_OP_ADD &&
        m->g.nodes[k + 1].in[0] == n->out)
        return m->g.values[m->g.nodes[k + 1].in[1]].data;
    return NULL;
}

/* Build the model from shallow copies of the results whose biases are all
 * 1 (so a MatMul gets its bias Add whatever its bias is), then find each
 * layer's bias array in it. */
static aq_status build_model(aq_tune_net *t, const aq_cnn_graph *g, const aq_cnnq_layer *layers,
                             aq_cnnq_result *const *res, aq_error *err)
{
    int L = t->n_layers, dmax = 1;
    for (int i = 0; i < L; i++)
        if (res[i] && res[i]->d_out > dmax) dmax = res[i]->d_out;
    float *ones = malloc((size_t)dmax * sizeof *ones);
    const aq_cnnq_result **rp = calloc((size_t)L + 1, sizeof *rp);
    aq_status st = AQ_OK;
    if (!ones || !rp) {
        st = aq_fail_nomem(err, "bias tuning model", (size_t)dmax * sizeof *ones);
        goto done;
    }
    for (int j = 0; j < dmax; j++)
        ones[j] = 1.0f;
    for (int i = 0; i < L; i++)
        if (res[i]) t->rc[i] = *res[i], t->rc[i].bias = ones, rp[i] = &t->rc[i];
    AQ_TRY_GOTO(st, aq_cnnq_model_build(g, layers, L, rp, 1, &t->m, err), done);
    for (int i = 0; i < L; i++) {
        t->rc[i].bias = res[i] ? res[i]->bias : NULL;
        t->bias[i] = res[i] ? find_bias(&t->m, i) : NULL;
        if (res[i] && !t->bias[i]) {
            st = aq_fail(err, AQ_ERR_INTERNAL, "node '%s': no bias in the quantized model",
                         g->nodes[layers[i].node].name);
            goto done;
        }
    }
done:
    free(ones), free(rp);
    return st;
}

static aq_status alloc_values(aq_tune_net *t, aq_error *err)
{
    const aq_cnn_graph *g = &t->m.g;
    size_t total = 0;
    for (int v = 0; v < g->n_values; v++)
        if (!t->p.cdata[v] && v != g->input) total += aq_cnn_numel(&t->p.shape[v]);
    for (int v = 0; v < g->n_values; v++) {
        if (t->p.cdata[v]) continue;
        size_t n = aq_cnn_numel(&t->p.shape[v]);
        if (v != g->input && !(t->val[v] = malloc(n * sizeof(float))))
            return aq_fail_nomem(err, "bias tuning activations", total * sizeof(float));
    }
    return AQ_OK;
}

/* grad[v] for every value downstream of a tuned bias (a layer node's output
 * or anything computed from one), in node order. */
static aq_status alloc_grads(aq_tune_net *t, aq_error *err)
{
    const aq_cnn_graph *g = &t->m.g;
    for (int k = 0; k < g->n_nodes; k++) {
        const aq_cnn_node *n = &g->nodes[k];
        if (t->p.skip[k]) continue;
        int need = t->lnode[k] >= 0 && t->bias[t->lnode[k]];
        for (int i = 0; i < n->n_in; i++)
            need |= n->in[i] >= 0 && t->grad[n->in[i]] != NULL;
        size_t ne = aq_cnn_numel(&t->p.shape[n->out]);
        if (need && !t->grad[n->out] && !(t->grad[n->out] = malloc(ne * sizeof(float))))
            return aq_fail_nomem(err, "bias tuning gradients", ne * sizeof(float));
    }
    return AQ_OK;
}

aq_status aq_tune_net_init(aq_tune_net *t, const aq_cnn_graph *g, const aq_cnnq_layer *layers,
                           int n_layers, aq_cnnq_result *const *res, int batch, aq_error *err)
{
    memset(t, 0, sizeof *t);
    t->batch = batch, t->n_layers = n_layers, t->inv_t = 1;
    t->rc = calloc((size_t)n_layers + 1, sizeof *t->rc);
    t->bias = calloc((size_t)n_layers + 1, sizeof *t->bias);
    if (!t->rc || !t->bias)
        return aq_fail_nomem(err, "bias tuning", (size_t)n_layers * sizeof *t->rc);
    aq_status st;
    AQ_TRY_GOTO(st, build_model(t, g, layers, res, err), fail);
    const aq_cnn_graph *mg = &t->m.g;
    AQ_TRY_GOTO(st, aq_cnn_plan_init(mg, batch, &t->p, err), fail);
    t->val = calloc((size_t)mg->n_values, sizeof *t->val);
    t->grad = calloc((size_t)mg->n_values, sizeof *t->grad);
    t->lnode = malloc((size_t)mg->n_nodes * sizeof *t->lnode);
    size_t img = aq_cnn_numel(&t->p.shape[mg->input]) / (size_t)batch;
    t->classes = (int)(aq_cnn_numel(&t->p.shape[mg->output]) / (size_t)batch);
    t->x = malloc((size_t)batch * img * sizeof *t->x);
    t->y = malloc((size_t)batch * (size_t)t->classes * sizeof *t->y);
    if (!t->val || !t->grad || !t->lnode || !t->x || !t->y) {
        st = aq_fail_nomem(err, "bias tuning", (size_t)mg->n_values * sizeof(float *));
        goto fail;
    }
    for (int k = 0; k < mg->n_nodes; k++)
        t->lnode[k] = -1;
    for (int i = 0; i < n_layers; i++)
        t->lnode[t->m.layer_node[i]] = i;
    AQ_TRY_GOTO(st, alloc_values(t, err), fail);
    AQ_TRY_GOTO(st, alloc_grads(t, err), fail);
    size_t sc = t->p.scratch;
    for (int k = 0; k < mg->n_nodes; k++) {
        const aq_cnn_node *n = &mg->nodes[k];
        if (n->op != AQ_OP_CONV || t->p.skip[k]) continue;
        const aq_cnn_shape *ws = &t->p.shape[n->in[1]], *ys = &t->p.shape[n->out];
        size_t need = (size_t)(ws->d[1] * ws->d[2] * ws->d[3] * ys->d[2] * ys->d[3]);
        if (need > sc) sc = need;
    }
    if (!(t->scratch = malloc((sc + 1) * sizeof(float)))) {
        st = aq_fail_nomem(err, "bias tuning scratch", sc * sizeof(float));
        goto fail;
    }
    t->val[mg->input] = t->x;
    aq_tune_net_set_bias(t, res);
    return AQ_OK;
fail:
    aq_tune_net_free(t);
    return st;
}

void aq_tune_net_free(aq_tune_net *t)
{
    for (int v = 0; t->val && v < t->m.g.n_values; v++)
        if (v != t->m.g.input) free(t->val[v]);
    for (int v = 0; t->grad && v < t->m.g.n_values; v++)
        free(t->grad[v]);
    free(t->val), free(t->grad), free(t->lnode), free(t->x), free(t->y), free(t->scratch);
    aq_cnn_pool_free(&t->pool);
    aq_cnn_plan_free(&t->p);
    if (t->m.g.values) aq_cnnq_model_free(&t->m);
    free(t->rc), free(t->bias);
    memset(t, 0, sizeof *t);
}

void aq_tune_net_set_bias(aq_tune_net *t, aq_cnnq_result *const *res)
{
    for (int i = 0; i < t->n_layers; i++)
        if (t->bias[i]) memcpy(t->bias[i], res[i]->bias, (size_t)res[i]->d_out * sizeof(float));
}

/* The fake quantization, then a copy of every node's output. */
static void keep_obs(void *ctx, int node, const float *data, const aq_cnn_shape *shape)
{
    aq_tune_net *t = ctx;
    aq_cnnq_model_observe(&t->m, node, data, shape);
    int v = t->m.g.nodes[node].out;
    if (t->val[v]) memcpy(t->val[v], data, aq_cnn_numel(shape) * sizeof(float));
}

aq_status aq_tune_net_forward(aq_tune_net *t, aq_error *err)
{
    return aq_cnn_forward(&t->p, &t->pool, t->x, t->y, keep_obs, t, err);
}

/* log-softmax of n logits divided by the temperature, in double */
static void log_softmax_d(const float *z, int n, double inv_t, double *lp)
{
    double mx = -INFINITY, s = 0;
    for (int j = 0; j < n; j++)
        mx = fmax(mx, z[j] * inv_t);
    for (int j = 0; j < n; j++)
        s += exp(z[j] * inv_t - mx);
    double ls = log(s);
    for (int j = 0; j < n; j++)
        lp[j] = z[j] * inv_t - mx - ls;
}

double aq_tune_kl1(const float *fp, const float *y, int C, double inv_t, float *gy, double gscale)
{
    double lp[C > 0 ? C : 1], lq[C > 0 ? C : 1], kl = 0;
    log_softmax_d(fp, C, inv_t, lp);
    log_softmax_d(y, C, inv_t, lq);
    for (int j = 0; j < C; j++) {
        double p = exp(lp[j]);
        kl += p * (lp[j] - lq[j]);
        if (gy) gy[j] = (float)((exp(lq[j]) - p) * inv_t * gscale);
    }
    return kl;
}

/* Each image's KL into kl[b] and dLoss/dy into gy (when non-NULL), the
 * loss being the mean over loss_batch images (this net's batch may be a
 * slice of it). */
static void kl_head(aq_tune_net *t, const float *fp, double *kl, float *gy)
{
    int C = t->classes;
    double scale = 1.0 / (t->loss_batch > 0 ? t->loss_batch : t->batch);
    for (int b = 0; b < t->batch; b++)
        kl[b] = aq_tune_kl1(fp + (size_t)b * C, t->y + (size_t)b * C, C, t->inv_t,
                            gy ? gy + (size_t)b * C : NULL, scale);
}

/* d/dbias of layer i: the output gradient summed over everything but the
 * channel axis (axis 1), image b's into row b of gb (rows of `stride` doubles). */
static void bias_grad(const aq_tune_net *t, int k, double *gb, size_t stride)
{
    const aq_cnn_node *n = &t->m.g.nodes[k];
    const aq_cnn_shape *s = &t->p.shape[n->out];
    size_t N = (size_t)s->d[0], C = (size_t)s->d[1], sp = aq_cnn_numel(s) / (N * C);
    const float *g = t->grad[n->out];
    for (size_t b = 0; b < N; b++)
        for (size_t c = 0; c < C; c++) {
            double a = 0;
            for (size_t i = 0; i < sp; i++)
                a += g[(b * C + c) * sp + i];
            gb[b * stride + c] = a;
        }
}

size_t aq_tune_net_n_bias(const aq_tune_net *t)
{
    size_t nb = 0;
    for (int i = 0; i < t->n_layers; i++)
        nb += t->bias[i] ? (size_t)t->rc[i].d_out : 0;
    return nb;
}

aq_status aq_tune_net_loss_rows(aq_tune_net *t, const float *fp, double *kl, double *gb,
                                aq_error *err)
{
    const aq_cnn_graph *g = &t->m.g;
    AQ_TRY(aq_tune_net_forward(t, err));
    float *gy = gb ? t->grad[g->output] : NULL;
    kl_head(t, fp, kl, gy);
    if (!gb || !gy) return AQ_OK;
    for (int v = 0; v < g->n_values; v++)
        if (t->grad[v] && v != g->output)
            memset(t->grad[v], 0, aq_cnn_numel(&t->p.shape[v]) * sizeof(float));
    size_t off[t->n_layers + 1], nb = aq_tune_net_n_bias(t);
    off[0] = 0;
    for (int i = 0; i < t->n_layers; i++)
        off[i + 1] = off[i] + (t->bias[i] ? (size_t)t->rc[i].d_out : 0);
    memset(gb, 0, (size_t)t->batch * nb * sizeof *gb);
    for (int k = g->n_nodes - 1; k >= 0; k--) {
        if (t->p.skip[k] || !t->grad[g->nodes[k].out]) continue;
        int i = t->lnode[k];
        if (i >= 0 && t->bias[i]) bias_grad(t, k, gb + off[i], nb);
        AQ_TRY(aq_tune_back_node(t, k, err));
    }
    return AQ_OK;
}

aq_status aq_tune_net_loss_grad(aq_tune_net *t, const float *fp, double *loss, double *gb,
                                aq_error *err)
{
    size_t B = (size_t)t->batch, nb = aq_tune_net_n_bias(t);
    double *kl = malloc(B * sizeof *kl), *rows = gb ? malloc(B * (nb + 1) * sizeof *rows) : NULL;
    aq_status st = kl && (!gb || rows) ? AQ_OK : aq_fail_nomem(err, "bias gradient rows", B * nb * 8);
    if (st == AQ_OK) st = aq_tune_net_loss_rows(t, fp, kl, rows, err);
    if (st == AQ_OK) {
        aq_tune_sum_rows(kl, B, 1, loss);
        *loss /= (double)B;
        if (gb) aq_tune_sum_rows(rows, B, nb, gb);
    }
    free(kl), free(rows);
    return st;
}

void aq_tune_images(const aq_cnnq_seq *calib, const size_t *idx, size_t nb, float *x)
{
    size_t is = calib->image_size;
    for (size_t j = 0; j < nb; j++) {
        const uint8_t *px = calib->pixels + idx[j] * is;
        for (size_t e = 0; e < is; e++)
            x[j * is + e] =
                calib->norm->raw
                    ? (float)px[e]
                    : (float)(((double)px[e] / 255.0 - calib->norm->mean) / calib->norm->std);
    }
}
