/* cnn_quant_model.c — the quantized CNN: a graph that borrows the FP graph
 * and owns only the dequantized weights, new biases and the extra nodes;
 * its evaluation with fake-quantized layer inputs; the QDQ writer's input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../quant/quant.h"
#include "cnn_quant_internal.h"

static void *own(aq_cnnq_model *m, void *p)
{
    if (p) m->own[m->n_own++] = p;
    return p;
}

static char *own_name(aq_cnnq_model *m, const char *node, const char *suffix)
{
    size_t n = strlen(node) + strlen(suffix) + 1;
    char *s = own(m, malloc(n));
    if (s) snprintf(s, n, "%s%s", node, suffix);
    return s;
}

/* A new value (a constant when data != NULL, [d] floats, owned). */
static int new_value(aq_cnnq_model *m, const char *node, const char *suffix, float *data, int d)
{
    aq_cnn_value *v = &m->g.values[m->g.n_values];
    memset(v, 0, sizeof *v);
    v->name = own_name(m, node, suffix);
    if (!v->name) return -1;
    if (data) {
        v->is_const = 1, v->ndim = 1, v->shape[0] = d, v->data = data;
    }
    return m->g.n_values++;
}

static aq_cnn_node *new_node(aq_cnnq_model *m, aq_cnn_op op, const char *name, int in0, int in1, int out)
{
    aq_cnn_node *n = &m->g.nodes[m->g.n_nodes++];
    memset(n, 0, sizeof *n);
    n->name = (char *)name, n->op = op, n->out = out;
    n->n_in = in1 >= 0 ? 2 : 1, n->in[0] = in0, n->in[1] = in1;
    aq_cnn_attrs_default(op, m->g.opset, &n->a);
    return n;
}

/* The dequantized weight of r in the graph's layout of layer L (owned). */
static float *dequant_weight(aq_cnnq_model *m, const aq_cnnq_layer *L, const aq_cnnq_result *r)
{
    size_t o = (size_t)L->d_out, in = (size_t)L->d_in;
    float *wq = malloc(o * in * sizeof *wq), *out = wq;
    if (!wq) return NULL;
    aq_dequantize_rows(r->codes, o, in, r->scale, r->zero, wq);
    if (L->transposed) {
        out = malloc(o * in * sizeof *out);
        for (size_t i = 0; out && i < o; i++)
            for (size_t c = 0; c < in; c++) out[c * o + i] = wq[i * in + c];
        free(wq);
    }
    return own(m, out);
}

static float *copy_bias(aq_cnnq_model *m, const aq_cnnq_result *r, int *nonzero)
{
    float *b = own(m, malloc((size_t)r->d_out * sizeof *b));
    *nonzero = 0;
    for (int i = 0; b && i < r->d_out; i++) b[i] = r->bias[i], *nonzero |= r->bias[i] != 0;
    return b;
}

/* Emit layer i (node `k` of the source) with its result into m. */
static int emit_layer(aq_cnnq_model *m, const aq_cnn_node *src, const aq_cnnq_layer *L,
                      const aq_cnnq_result *r, int i)
{
    int nz = 0, fq = -1;
    float *w = dequant_weight(m, L, r), *b = copy_bias(m, r, &nz);
    if (!w || !b) return -1;
    m->g.values[L->w_value].data = w;
    if (m->fake_quant && r->a_bits < 16) {
        fq = new_value(m, src->name, "/aq_fq", NULL, 0);
        if (fq < 0) return -1;
        new_node(m, AQ_OP_IDENTITY, m->g.values[fq].name, src->in[0], -1, fq);
        m->fq_node[m->g.n_nodes - 1] = i;
    }
    aq_cnn_node *n = &m->g.nodes[m->g.n_nodes++];
    *n = *src;
    if (fq >= 0) n->in[0] = fq;
    m->layer_node[i] = m->g.n_nodes - 1;
    if (L->b_value >= 0) {
        m->g.values[L->b_value].data = b;
    } else if (L->op != AQ_OP_MATMUL) {
        int bv = new_value(m, src->name, "/aq_bias", b, L->d_out);
        if (bv < 0) return -1;
        n->n_in = 3, n->in[2] = bv;
    } else if (nz) { /* MatMul has no bias input: an Add after it */
        int bv = new_value(m, src->name, "/aq_bias", b, L->d_out);
        int mid = new_value(m, src->name, "/aq_matmul", NULL, 0);
        if (bv < 0 || mid < 0) return -1;
        n->out = mid;
        new_node(m, AQ_OP_ADD, m->g.values[bv].name, mid, bv, src->out);
    }
    return 0;
}

aq_status aq_cnnq_model_build(const aq_cnn_graph *g, const aq_cnnq_layer *layers, int n_layers,
                              const aq_cnnq_result *const *results, int fake_quant,
                              aq_cnnq_model *m, aq_error *err)
{
    memset(m, 0, sizeof *m);
    m->g = *g;
    m->fake_quant = fake_quant, m->n_layers = n_layers;
    size_t nv = (size_t)g->n_values + 3 * (size_t)n_layers, nn = (size_t)g->n_nodes + 2 * (size_t)n_layers;
    m->own = calloc(6 * (size_t)n_layers + 8, sizeof *m->own);
    m->g.values = malloc(nv * sizeof *m->g.values);
    m->g.nodes = malloc(nn * sizeof *m->g.nodes);
    m->fq_node = malloc(nn * sizeof *m->fq_node);
    m->layer_node = malloc(((size_t)n_layers + 1) * sizeof *m->layer_node);
    m->res = calloc((size_t)n_layers + 1, sizeof *m->res);
    if (!m->own || !m->g.values || !m->g.nodes || !m->fq_node || !m->layer_node || !m->res) goto nomem;
    memcpy(m->g.values, g->values, (size_t)g->n_values * sizeof *g->values);
    m->g.n_nodes = 0;
    for (size_t k = 0; k < nn; k++) m->fq_node[k] = -1;
    for (int k = 0, i = 0; k < g->n_nodes; k++) {
        while (i < n_layers && layers[i].node < k) i++;
        if (i < n_layers && layers[i].node == k && results[i]) {
            m->res[i] = results[i];
            if (results[i]->d_out != layers[i].d_out || results[i]->d_in != layers[i].d_in) {
                aq_cnnq_model_free(m);
                return aq_fail(err, AQ_ERR_SHAPE, "node '%s': quantized weight [%d, %d] for a [%d, %d] layer",
                               g->nodes[k].name, results[i]->d_out, results[i]->d_in, layers[i].d_out,
                               layers[i].d_in);
            }
            if (emit_layer(m, &g->nodes[k], &layers[i], results[i], i)) goto nomem;
        } else {
            if (i < n_layers && layers[i].node == k) m->layer_node[i] = m->g.n_nodes;
            m->g.nodes[m->g.n_nodes++] = g->nodes[k];
        }
    }
    return AQ_OK;
nomem:
    aq_cnnq_model_free(m);
    return aq_fail_nomem(err, "quantized model", nv * sizeof(aq_cnn_value));
}

void aq_cnnq_model_free(aq_cnnq_model *m)
{
    for (int i = 0; m->own && i < m->n_own; i++) free(m->own[i]);
    free(m->own), free(m->g.values), free(m->g.nodes), free(m->fq_node), free(m->layer_node);
    free((void *)m->res);
    memset(m, 0, sizeof *m);
}

/* The fake quantization of a layer's input: the engine hands the observer
 * the live output buffer of the Identity node inserted before the layer,
 * which only that layer reads, so rewriting it in place is what the layer
 * then sees (the engine writes nothing there after the observer). */
void aq_cnnq_model_observe(const aq_cnnq_model *m, int node, const float *data, const aq_cnn_shape *shape)
{
    int i = m->fake_quant ? m->fq_node[node] : -1;
    if (i < 0) return;
    const aq_cnnq_result *r = m->res[i];
    float *x = (float *)(uintptr_t)data;
    aq_fake_quant(x, aq_cnn_numel(shape), r->a_scale, r->a_zero, r->a_bits, x);
}

typedef struct predict_ctx {
    const aq_cnnq_model *m;
    int32_t *pred;
} predict_ctx;

static void predict_obs(void *ctx, int node, const float *data, const aq_cnn_shape *shape)
{
    aq_cnnq_model_observe(((predict_ctx *)ctx)->m, node, data, shape);
}

/* argmax per image (the first maximum on ties, as aq_cnn_predict) */
static void predict_end(void *ctx, size_t first, size_t nb, const float *y, size_t cls)
{
    predict_ctx *c = ctx;
    for (size_t j = 0; j < nb; j++) {
        const float *yj = y + j * cls;
        size_t best = 0;
        for (size_t k = 1; k < cls; k++)
            if (yj[k] > yj[best]) best = k;
        c->pred[first + j] = (int32_t)best;
    }
}

aq_status aq_cnnq_predict(const aq_cnnq_model *m, const uint8_t *pixels, size_t n,
                          size_t image_size, const aq_cnn_norm *norm, int chunk, int32_t *pred,
                          aq_error *err)
{
    predict_ctx c = {m, pred};
    aq_cnnq_runner r = {&m->g, m->fake_quant ? predict_obs : NULL, &c, NULL, predict_end, 0};
    return aq_cnnq_run_images(&r, pixels, n, image_size, norm, chunk, err);
}

static int on_grid(float z, int bits)
{
    return z == nearbyintf(z) && z >= 0 && z <= (float)((1 << bits) - 1);
}

aq_status aq_cnnq_qdq_layers(const aq_cnnq_model *m, aq_onnx_qlayer *q, aq_error *err)
{
    for (int i = 0; i < m->n_layers; i++) {
        const aq_cnnq_result *r = m->res[i];
        const char *name = m->g.nodes[m->layer_node[i]].name;
        memset(&q[i], 0, sizeof q[i]);
        q[i].node = name;
        if (!r) continue;
        for (int c = 0; c < r->d_out; c++)
            if (!on_grid(r->zero[c], r->w_bits))
                return aq_fail(err, AQ_ERR_ARG, "node '%s': weight zero point %g of channel %d is not an integer in "
                               "[0, 2^bits - 1] (QDQ stores those: aq_cnnq_round_zeros first)", name, (double)r->zero[c], c);
        if (r->a_bits < 16 && !on_grid(r->a_zero, r->a_bits))
            return aq_fail(err, AQ_ERR_ARG, "node '%s': activation zero point %g is not an integer in "
                           "[0, 2^bits - 1] (aq_cnnq_round_zeros first)", name, (double)r->a_zero);
        q[i].bits = r->w_bits, q[i].codes = r->codes, q[i].scale = r->scale, q[i].zero = r->zero;
        if (r->a_bits < 16) q[i].act_bits = r->a_bits, q[i].act_scale = r->a_scale, q[i].act_zero = r->a_zero;
    }
    return AQ_OK;
}
