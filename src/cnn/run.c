/* run.c — the CNN engine's forward pass: runs a plan's nodes in order,
 * allocating each activation when it is produced and freeing it after its
 * last reader. */
#include <stdlib.h>
#include <string.h>

#include "cnn_internal.h"

void aq_cnn_pool_free(aq_cnn_pool *pool)
{
    for (int i = 0; i < pool->n; i++)
        free(pool->buf[i]);
    free(pool->buf);
    free(pool->floats);
    memset(pool, 0, sizeof *pool);
}

/* The smallest pooled buffer of at least `floats`, else a new one. */
static float *pool_get(aq_cnn_pool *pool, size_t floats, size_t *got)
{
    int best = -1;
    for (int i = 0; i < pool->n; i++)
        if (pool->floats[i] >= floats && (best < 0 || pool->floats[i] < pool->floats[best]))
            best = i;
    if (best < 0) {
        *got = floats;
        return malloc((floats + 1) * sizeof(float));
    }
    float *b = pool->buf[best];
    *got = pool->floats[best];
    pool->n--;
    pool->buf[best] = pool->buf[pool->n];
    pool->floats[best] = pool->floats[pool->n];
    return b;
}

/* Return a buffer to the pool (freed if the pool cannot grow). */
static void pool_put(aq_cnn_pool *pool, float *b, size_t floats)
{
    if (!b) return;
    if (pool->n == pool->cap) {
        int cap = pool->cap ? 2 * pool->cap : 16;
        float **nb = realloc(pool->buf, (size_t)cap * sizeof *nb);
        if (nb) pool->buf = nb;
        size_t *nf = realloc(pool->floats, (size_t)cap * sizeof *nf);
        if (nf) pool->floats = nf;
        if (!nb || !nf) {
            free(b);
            return;
        }
        pool->cap = cap;
    }
    pool->buf[pool->n] = b;
    pool->floats[pool->n++] = floats;
}

/* The live activations of one forward pass, with their buffer sizes. */
typedef struct live {
    float **buf;
    size_t *floats;
    aq_cnn_pool *pool;
} live;

static void live_drop(live *l, int v)
{
    pool_put(l->pool, l->buf[v], l->floats[v]);
    l->buf[v] = NULL;
}

void aq_cnn_exec(const aq_cnn_plan *p, int k, const float *const *in, float *out, float *scratch)
{
    const aq_cnn_node *n = &p->g->nodes[k];
    aq_cnn_run_args r = {.g = p->g,
                         .node = n,
                         .a = &p->attrs[k],
                         .out = out,
                         .out_shape = &p->shape[n->out],
                         .scratch = scratch};
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] >= 0) r.in[i] = in[i], r.in_shape[i] = &p->shape[n->in[i]];
    aq_cnn_infer_fn inf;
    aq_cnn_run_fn run;
    aq_cnn_op_fns(n->op, &inf, &run);
    run(&r);
}

/* Data of value v: a constant, the caller's input or a live activation. */
static const float *value_data(const aq_cnn_plan *p, const live *l, const float *x, int v)
{
    if (p->cdata[v]) return p->cdata[v];
    if (v == p->g->input) return x;
    return l->buf[v];
}

/* Whether node k may write its output over its first input: an
 * element-wise op or a copy whose input dies here and has the output's shape
 * (the kernels read element i before writing it). */
static int in_place(const aq_cnn_plan *p, int k)
{
    const aq_cnn_node *n = &p->g->nodes[k];
    int v = n->in[0];
    switch (n->op) {
    case AQ_OP_BATCHNORM:
    case AQ_OP_RELU:
    case AQ_OP_CLIP:
    case AQ_OP_HARDSIGMOID:
    case AQ_OP_HARDSWISH:
    case AQ_OP_SIGMOID:
    case AQ_OP_ADD:
    case AQ_OP_MUL:
    case AQ_OP_IDENTITY:
    case AQ_OP_RESHAPE:
    case AQ_OP_FLATTEN: break;
    default: return 0;
    }
    if (v < 0 || p->cdata[v] || v == p->g->input || v == p->g->output || p->last_use[v] != k)
        return 0;
    const aq_cnn_shape *a = &p->shape[v], *o = &p->shape[n->out];
    if (n->op == AQ_OP_ADD || n->op == AQ_OP_MUL)
        return a->ndim == o->ndim && !memcmp(a->d, o->d, (size_t)a->ndim * sizeof a->d[0]);
    return aq_cnn_numel(a) == aq_cnn_numel(o);
}

static aq_status run_node(const aq_cnn_plan *p, int k, live *l, const float *x, float *scratch,
                          aq_error *err)
{
    const aq_cnn_node *n = &p->g->nodes[k];
    size_t numel = aq_cnn_numel(&p->shape[n->out]), got;
    int steal = in_place(p, k);
    float *out = steal ? l->buf[n->in[0]] : pool_get(l->pool, numel, &got);
    if (steal) {
        got = l->floats[n->in[0]];
        l->buf[n->in[0]] = NULL; /* now the output's */
    }
    if (!out)
        return aq_cnn_node_fail(err, n, AQ_ERR_NOMEM, "cannot allocate its output (%zu bytes)",
                                numel * sizeof(float));
    const float *in[AQ_CNN_MAX_IN] = {0};
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] >= 0)
            in[i] = steal && n->in[i] == n->in[0] ? out : value_data(p, l, x, n->in[i]);
    if (!(steal && (n->op == AQ_OP_IDENTITY || n->op == AQ_OP_RESHAPE || n->op == AQ_OP_FLATTEN)))
        aq_cnn_exec(p, k, in, out, scratch); /* a stolen copy is already done */
    live_drop(l, n->out); /* a value produced twice (invalid graph): keep the last */
    l->buf[n->out] = out;
    l->floats[n->out] = got;
    return AQ_OK;
}

aq_status aq_cnn_forward(const aq_cnn_plan *p, aq_cnn_pool *pool, const float *x, float *y,
                         aq_cnn_observer obs, void *ctx, aq_error *err)
{
    const aq_cnn_graph *g = p->g;
    aq_cnn_pool own = {0};
    live l = {calloc((size_t)g->n_values, sizeof(float *)),
              calloc((size_t)g->n_values, sizeof(size_t)), pool ? pool : &own};
    size_t sfloats = 0;
    float *scratch = pool_get(l.pool, p->scratch, &sfloats);
    aq_status st = AQ_OK;
    if (!l.buf || !l.floats || !scratch) {
        st = aq_fail_nomem(err, "CNN forward scratch", (p->scratch + 1) * sizeof(float));
        goto done;
    }
    int end = p->n_run > 0 && p->n_run < g->n_nodes ? p->n_run : g->n_nodes;
    for (int k = 0; k < end; k++) {
        if (p->skip[k]) continue;
        AQ_TRY_GOTO(st, run_node(p, k, &l, x, scratch, err), done);
        const aq_cnn_node *n = &g->nodes[k];
        if (obs) obs(ctx, k, l.buf[n->out], &p->shape[n->out]);
        for (int i = 0; i < n->n_in; i++) {
            int v = n->in[i];
            if (v >= 0 && v != g->output && p->last_use[v] == k && !p->cdata[v]) live_drop(&l, v);
        }
    }
    if (end == g->n_nodes)
        memcpy(y, value_data(p, &l, x, g->output), aq_cnn_numel(&p->shape[g->output]) * sizeof(float));
done:
    for (int v = 0; l.buf && l.floats && v < g->n_values; v++)
        live_drop(&l, v);
    pool_put(l.pool, scratch, sfloats);
    free(l.buf);
    free(l.floats);
    aq_cnn_pool_free(&own);
    return st;
}
