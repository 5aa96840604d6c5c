/* cnn_tune_fold.c — folding each Conv + BatchNormalization pair into the
 * Conv (cnn_tune.h), so that the quantizer sees the weights the model really
 * applies, and keeping the BN parameters for their later re-estimation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnn_tune.h"

void aq_cnnq_tune_defaults(aq_cnnq_tune_opts *o)
{
    memset(o, 0, sizeof *o);
    o->bn_reestimate = 1;
    o->bias_correct = 1;
    o->bias_iters = 100;
    o->bias_lr = 3e-3;
    o->batch = 32;
    o->seed = 0;
    o->temperature = 1;
}

/* How many node inputs read value v (the graph output counts as a reader). */
static int readers(const aq_cnn_graph *g, int v)
{
    int c = v == g->output;
    for (int k = 0; k < g->n_nodes; k++)
        for (int i = 0; i < g->nodes[k].n_in; i++)
            c += g->nodes[k].in[i] == v;
    return c;
}

static int producer(const aq_cnn_graph *g, int v)
{
    for (int k = 0; k < g->n_nodes; k++)
        if (g->nodes[k].out == v) return k;
    return -1;
}

static int64_t numel_const(const aq_cnn_value *v)
{
    int64_t n = 1;
    for (int d = 0; d < v->ndim; d++)
        n *= v->shape[d];
    return n;
}

/* The Conv node that BN node k can fold into, or -1: its input is a Conv
 * output nothing else reads, the Conv's weight (and bias) are constants only
 * it reads, and the four BN parameters are constants of one entry per
 * output channel. */
static int foldable(const aq_cnn_graph *g, int k)
{
    const aq_cnn_node *bn = &g->nodes[k];
    if (bn->op != AQ_OP_BATCHNORM || bn->n_in < 5 || bn->in[0] < 0) return -1;
    int c = producer(g, bn->in[0]);
    if (c < 0 || g->nodes[c].op != AQ_OP_CONV || readers(g, bn->in[0]) != 1) return -1;
    const aq_cnn_node *cv = &g->nodes[c];
    int wv = cv->in[1], bv = cv->n_in > 2 ? cv->in[2] : -1;
    if (wv < 0 || !g->values[wv].is_const || g->values[wv].ndim != 4 || readers(g, wv) != 1)
        return -1;
    int64_t M = g->values[wv].shape[0];
    if (bv >= 0 &&
        (!g->values[bv].is_const || readers(g, bv) != 1 || numel_const(&g->values[bv]) != M))
        return -1;
    for (int i = 1; i < 5; i++) {
        int p = bn->in[i];
        if (p < 0 || !g->values[p].is_const || numel_const(&g->values[p]) != M) return -1;
    }
    return c;
}

/* A new constant [d] value named "<node>/aq_bnbias", zero-filled; -1 on no memory. */
static int add_bias_value(aq_cnn_graph *g, const char *node, int d)
{
    aq_cnn_value *nv = realloc(g->values, ((size_t)g->n_values + 1) * sizeof *nv);
    if (!nv) return -1;
    g->values = nv;
    aq_cnn_value *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    size_t len = strlen(node) + 16;
    v->name = malloc(len);
    v->data = calloc((size_t)d, sizeof *v->data);
    if (!v->name || !v->data) {
        free(v->name), free(v->data);
        return -1;
    }
    snprintf(v->name, len, "%s/aq_bnbias", node);
    v->is_const = 1, v->ndim = 1, v->shape[0] = d;
    return g->n_values++;
}

/* Fold BN node k into Conv node c, recording the pair in *f. */
static aq_status fold_one(aq_cnn_graph *g, int c, int k, aq_cnnq_bnfold *f, aq_error *err)
{
    aq_cnn_node *cv = &g->nodes[c], *bn = &g->nodes[k];
    aq_cnn_value *w = &g->values[cv->in[1]];
    int M = (int)w->shape[0];
    size_t per = (size_t)(numel_const(w) / M);
    memset(f, 0, sizeof *f);
    f->conv_node = c, f->bn_node = k, f->channels = M, f->eps = bn->a.epsilon;
    f->gamma = malloc(4 * (size_t)M * sizeof *f->gamma);
    if (!f->gamma) return aq_fail_nomem(err, "BN fold", 4 * (size_t)M * sizeof(float));
    f->beta = f->gamma + M, f->mean = f->beta + M, f->var = f->mean + M;
    memcpy(f->gamma, g->values[bn->in[1]].data, (size_t)M * sizeof(float));
    memcpy(f->beta, g->values[bn->in[2]].data, (size_t)M * sizeof(float));
    memcpy(f->mean, g->values[bn->in[3]].data, (size_t)M * sizeof(float));
    memcpy(f->var, g->values[bn->in[4]].data, (size_t)M * sizeof(float));
    if (cv->n_in < 3 || cv->in[2] < 0) {
        int bv = add_bias_value(g, cv->name, M);
        if (bv < 0) return aq_fail_nomem(err, "BN fold bias", (size_t)M * sizeof(float));
        cv = &g->nodes[c], w = &g->values[cv->in[1]];
        cv->n_in = 3, cv->in[2] = bv;
    }
    float *b = g->values[cv->in[2]].data;
    for (int m = 0; m < M; m++) {
        /* the engine's BN factor, in double: y = (x - mean) k + beta */
        double fk = (double)f->gamma[m] / sqrt((double)f->var[m] + f->eps);
        for (size_t j = 0; j < per; j++)
            w->data[m * per + j] = (float)(w->data[m * per + j] * fk);
        b[m] = (float)(((double)b[m] - f->mean[m]) * fk + f->beta[m]);
    }
    bn->op = AQ_OP_IDENTITY, bn->n_in = 1;
    aq_cnn_attrs_default(AQ_OP_IDENTITY, g->opset, &bn->a);
    return AQ_OK;
}

aq_status aq_cnnq_fold_bn(aq_cnn_graph *g, aq_cnnq_bnfold **folds, int *n_folds, aq_error *err)
{
    *folds = NULL, *n_folds = 0;
    aq_cnnq_bnfold *f = calloc((size_t)g->n_nodes + 1, sizeof *f);
    if (!f) return aq_fail_nomem(err, "BN folds", (size_t)g->n_nodes * sizeof *f);
    int n = 0;
    for (int k = 0; k < g->n_nodes; k++) {
        int c = foldable(g, k);
        if (c < 0) continue;
        aq_status st = fold_one(g, c, k, &f[n], err);
        if (st != AQ_OK) {
            aq_cnnq_bnfold_free(f, n);
            return st;
        }
        n++;
    }
    *folds = f, *n_folds = n;
    return AQ_OK;
}

void aq_cnnq_bnfold_free(aq_cnnq_bnfold *folds, int n_folds)
{
    for (int i = 0; folds && i < n_folds; i++)
        free(folds[i].gamma);
    free(folds);
}
