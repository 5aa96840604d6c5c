/* run.c — the CNN engine's forward pass: runs a plan's nodes in order,
 * allocating each activation when it is produced and freeing it after its
 * last reader, and the BLIS GEMM the convolutions and dense layers use. */
#include <blis.h>
#include <stdlib.h>
#include <string.h>

#include "cnn_internal.h"

void aq_cnn_sgemm(int ta, int tb, long m, long n, long k, float alpha, const float *a, long rsa,
                  long csa, const float *b, long rsb, long csb, float beta, float *c, long rsc,
                  long csc)
{
    /* One thread, and no small-matrix ("sup") path: sup picks kernels by the
     * matrix shape, so an image's result would depend on its batch. */
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    bli_rntm_disable_l3_sup(&rntm);
    /* the typed API takes non-const pointers but does not write A or B */
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 m, n, k, &alpha, (float *)a, rsa, csa, (float *)b, rsb, csb, &beta, c, rsc, csc,
                 NULL, &rntm);
}

/* Data of value v: a constant, the caller's input or a live activation. */
static const float *value_data(const aq_cnn_plan *p, float **buf, const float *x, int v)
{
    if (p->cdata[v]) return p->cdata[v];
    if (v == p->g->input) return x;
    return buf[v];
}

static aq_status run_node(const aq_cnn_plan *p, int k, float **buf, const float *x, float *scratch,
                          aq_error *err)
{
    const aq_cnn_node *n = &p->g->nodes[k];
    size_t numel = aq_cnn_numel(&p->shape[n->out]);
    float *out = malloc(numel * sizeof(float));
    if (!out)
        return aq_cnn_node_fail(err, n, AQ_ERR_NOMEM, "cannot allocate its output (%zu bytes)",
                                numel * sizeof(float));
    aq_cnn_run_args r = {.g = p->g, .node = n, .a = &p->attrs[k], .out = out,
                         .out_shape = &p->shape[n->out], .scratch = scratch};
    for (int i = 0; i < n->n_in; i++) {
        int v = n->in[i];
        if (v < 0) continue;
        r.in[i] = value_data(p, buf, x, v);
        r.in_shape[i] = &p->shape[v];
    }
    aq_cnn_infer_fn inf;
    aq_cnn_run_fn run;
    aq_cnn_op_fns(n->op, &inf, &run);
    run(&r);
    free(buf[n->out]); /* a value produced twice (invalid graph): keep the last */
    buf[n->out] = out;
    return AQ_OK;
}

aq_status aq_cnn_forward(const aq_cnn_plan *p, const float *x, float *y, aq_cnn_observer obs,
                         void *ctx, aq_error *err)
{
    const aq_cnn_graph *g = p->g;
    float **buf = calloc((size_t)g->n_values, sizeof *buf);
    float *scratch = malloc((p->scratch + 1) * sizeof(float));
    aq_status st = AQ_OK;
    if (!buf || !scratch) {
        st = aq_fail_nomem(err, "CNN forward scratch", (p->scratch + 1) * sizeof(float));
        goto done;
    }
    for (int k = 0; k < g->n_nodes; k++) {
        if (p->skip[k]) continue;
        AQ_TRY_GOTO(st, run_node(p, k, buf, x, scratch, err), done);
        const aq_cnn_node *n = &g->nodes[k];
        if (obs) obs(ctx, k, buf[n->out], &p->shape[n->out]);
        for (int i = 0; i < n->n_in; i++) {
            int v = n->in[i];
            if (v >= 0 && v != g->output && p->last_use[v] == k && !p->cdata[v]) {
                free(buf[v]);
                buf[v] = NULL;
            }
        }
    }
    memcpy(y, value_data(p, buf, x, g->output), aq_cnn_numel(&p->shape[g->output]) * sizeof(float));
done:
    if (buf)
        for (int v = 0; v < g->n_values; v++) free(buf[v]);
    free(buf);
    free(scratch);
    return st;
}
