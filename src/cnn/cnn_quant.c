/* cnn_quant.c — the layers of a CNN graph, the capture of their inputs on
 * calibration images, and per-layer quantization (RTN or AdaQuant).
 * See cnn_quant.h and docs/CNN.md ("Quantization"). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../quant/quant.h"
#include "cnn_quant_internal.h"

static aq_status node_fail(aq_error *err, const aq_cnn_node *n, const char *why)
{
    return aq_fail(err, AQ_ERR_ARG, "node '%s' (%s): cannot quantize: %s", n->name,
                   aq_cnn_op_name(n->op), why);
}

static size_t value_numel(const aq_cnn_value *v)
{
    size_t e = 1;
    for (int d = 0; d < v->ndim; d++) e *= (size_t)v->shape[d];
    return e;
}

/* Fill L from node k (weight constant already checked). */
static aq_status describe(const aq_cnn_plan *p, int k, aq_cnnq_layer *L, aq_error *err)
{
    const aq_cnn_graph *g = p->g;
    const aq_cnn_node *n = &g->nodes[k];
    const aq_cnn_value *w = &g->values[n->in[1]];
    const aq_cnn_shape *xs = &p->shape[n->in[0]];
    memset(L, 0, sizeof *L);
    L->node = k, L->op = n->op, L->x_value = n->in[0], L->w_value = n->in[1];
    L->b_value = n->n_in > 2 && n->in[2] >= 0 ? n->in[2] : -1;
    if (L->b_value >= 0 && !g->values[L->b_value].is_const) return node_fail(err, n, "its bias is not a constant");
    if (n->op == AQ_OP_CONV) {
        const aq_cnn_attrs *a = &p->attrs[k];
        if (a->pads[0] != a->pads[2] || a->pads[1] != a->pads[3])
            return node_fail(err, n, "asymmetric padding (aq_conv_run pads symmetrically)");
        if (w->ndim != 4 || xs->ndim != 4) return node_fail(err, n, "not a 2-D convolution");
        aq_conv_spec s = {(int)xs->d[1], (int)w->shape[0], (int)w->shape[2], (int)w->shape[3],
                          a->strides[0], a->strides[1], a->pads[0], a->pads[1],
                          a->dilations[0], a->dilations[1], a->group};
        L->conv = s;
        L->d_out = s.c_out, L->d_in = (int)(w->shape[1] * w->shape[2] * w->shape[3]);
        L->c = s.c_in, L->h = (int)xs->d[2], L->w = (int)xs->d[3];
    } else {
        const aq_cnn_attrs *a = &g->nodes[k].a;
        if (w->ndim != 2 || xs->ndim != 2) return node_fail(err, n, "input or weight is not 2-D");
        if (n->op == AQ_OP_GEMM) {
            if (a->trans_a) return node_fail(err, n, "transA = 1");
            if (a->alpha != 1.0f) return node_fail(err, n, "alpha != 1");
            if (L->b_value >= 0 && a->beta != 1.0f) return node_fail(err, n, "beta != 1");
        }
        L->transposed = n->op == AQ_OP_MATMUL || !a->trans_b;
        L->d_out = (int)w->shape[L->transposed ? 1 : 0];
        L->d_in = (int)w->shape[L->transposed ? 0 : 1];
        L->c = L->d_in, L->h = L->w = 1;
    }
    if (L->b_value >= 0) {
        size_t bn = value_numel(&g->values[L->b_value]);
        if (bn != (size_t)L->d_out) return node_fail(err, n, "its bias is not one value per output channel");
    }
    return AQ_OK;
}

aq_status aq_cnnq_layers(const aq_cnn_graph *g, aq_cnnq_layer **layers, int *n, aq_error *err)
{
    aq_cnn_plan p = {0};
    *layers = NULL, *n = 0;
    AQ_TRY(aq_cnn_plan_init(g, 1, &p, err));
    aq_cnnq_layer *L = calloc((size_t)g->n_nodes + 1, sizeof *L);
    aq_status st = L ? AQ_OK : aq_fail_nomem(err, "CNN layer list", (size_t)g->n_nodes * sizeof *L);
    int m = 0;
    for (int k = 0; st == AQ_OK && k < g->n_nodes; k++) {
        const aq_cnn_node *nd = &g->nodes[k];
        if (p.skip[k] || (nd->op != AQ_OP_CONV && nd->op != AQ_OP_GEMM && nd->op != AQ_OP_MATMUL)) continue;
        if (nd->n_in < 2 || nd->in[1] < 0 || !g->values[nd->in[1]].is_const || g->values[nd->in[0]].is_const)
            continue;
        st = describe(&p, k, &L[m], err);
        if (st == AQ_OK) m++;
    }
    aq_cnn_plan_free(&p);
    if (st != AQ_OK) {
        free(L);
        return st;
    }
    *layers = L, *n = m;
    return AQ_OK;
}

typedef struct capture_ctx {
    aq_cnnq_capture *cap;
    const aq_cnn_graph *g;
    const aq_cnnq_model *m; /* fake quantization first, or NULL */
    size_t first, batch;    /* images of this chunk */
} capture_ctx;

static void keep(aq_cnnq_capture *cap, int v, const float *data, size_t first, size_t batch)
{
    if (v >= 0 && v < cap->n_values && cap->x[v])
        memcpy(cap->x[v] + first * cap->per_image[v], data, batch * cap->per_image[v] * sizeof(float));
}

static void observe(void *vctx, int node, const float *data, const aq_cnn_shape *shape)
{
    capture_ctx *c = vctx;
    if (c->m) aq_cnnq_model_observe(c->m, node, data, shape);
    keep(c->cap, c->g->nodes[node].out, data, c->first, c->batch);
}

static void capture_begin(void *vctx, size_t first, size_t nb, const float *x)
{
    capture_ctx *c = vctx;
    c->first = first, c->batch = nb;
    keep(c->cap, c->g->input, x, first, nb);
}

/* Per-value buffers for the distinct layer inputs. */
static aq_status capture_alloc(const aq_cnn_graph *g, size_t n, aq_cnnq_capture *cap, aq_error *err)
{
    cap->n_values = g->n_values;
    cap->n_images = (int)n;
    cap->x = calloc((size_t)g->n_values, sizeof *cap->x);
    cap->per_image = calloc((size_t)g->n_values, sizeof *cap->per_image);
    if (!cap->x || !cap->per_image) return aq_fail_nomem(err, "capture table", (size_t)g->n_values * 16);
    for (int i = 0; i < cap->n_layers; i++) {
        const aq_cnnq_layer *L = &cap->layers[i];
        int v = L->x_value;
        if (cap->x[v]) continue;
        cap->per_image[v] = (size_t)L->c * L->h * L->w;
        size_t bytes = n * cap->per_image[v] * sizeof(float);
        cap->x[v] = malloc(bytes);
        if (!cap->x[v]) return aq_fail_nomem(err, "captured activations", bytes);
        cap->bytes += bytes;
    }
    return AQ_OK;
}

aq_status aq_cnnq_run_images(const aq_cnnq_runner *r, const uint8_t *pixels, size_t n,
                             size_t image_size, const aq_cnn_norm *norm, int chunk, aq_error *err)
{
    if (n == 0 || chunk < 1) return aq_fail(err, AQ_ERR_ARG, "CNN run: no images or chunk < 1");
    const aq_cnn_graph *g = r->g;
    aq_cnn_plan p = {0};
    aq_cnn_pool pool = {0};
    size_t b = n < (size_t)chunk ? n : (size_t)chunk, out = 0;
    float *x = NULL, *y = NULL;
    aq_status st = AQ_OK;
    for (size_t i = 0; i < n; i += b) {
        size_t nb = n - i < b ? n - i : b;
        if (!p.g || p.batch != (int)nb) { /* the first chunk, and a last shorter one */
            aq_cnn_plan_free(&p);
            AQ_TRY_GOTO(st, aq_cnn_plan_init(g, (int)nb, &p, err), done);
            p.n_run = r->until;
            if (aq_cnn_numel(&p.shape[g->input]) != nb * image_size || !p.batched[g->output]) {
                st = aq_fail(err, AQ_ERR_SHAPE, "%s: the model does not map %zu-pixel images to per-image outputs",
                             g->path ? g->path : "model", image_size);
                goto done;
            }
            out = aq_cnn_numel(&p.shape[g->output]) / nb;
            free(x), free(y);
            x = malloc(nb * image_size * sizeof *x);
            y = malloc(nb * out * sizeof *y);
            if (!x || !y) {
                st = aq_fail_nomem(err, "CNN image batch", nb * (image_size + out) * sizeof(float));
                goto done;
            }
        }
        for (size_t j = 0; j < nb * image_size; j++) {
            uint8_t u = pixels[i * image_size + j];
            x[j] = norm->raw ? (float)u : (float)(((double)u / 255.0 - norm->mean) / norm->std);
        }
        if (r->begin) r->begin(r->ctx, i, nb, x);
        AQ_TRY_GOTO(st, aq_cnn_forward(&p, &pool, x, y, r->obs, r->ctx, err), done);
        if (r->end) r->end(r->ctx, i, nb, y, out);
    }
done:
    aq_cnn_pool_free(&pool);
    aq_cnn_plan_free(&p);
    free(x), free(y);
    return st;
}

/* Run g (with m's fake quantization when m) on the images, copying the
 * values cap->x holds buffers for; nodes [0, until) only when until > 0. */
static aq_status forward_images(const aq_cnn_graph *g, const aq_cnnq_model *m, const uint8_t *pixels,
                                size_t n, size_t image_size, const aq_cnn_norm *norm, int chunk,
                                int until, aq_cnnq_capture *cap, aq_error *err)
{
    capture_ctx c = {cap, g, m, 0, 0};
    aq_cnnq_runner r = {g, observe, &c, capture_begin, NULL, until};
    return aq_cnnq_run_images(&r, pixels, n, image_size, norm, chunk, err);
}

aq_status aq_cnnq_capture_run(const aq_cnn_graph *g, const uint8_t *pixels, size_t n,
                              size_t image_size, const aq_cnn_norm *norm, int chunk,
                              aq_cnnq_capture *cap, aq_error *err)
{
    memset(cap, 0, sizeof *cap);
    if (n == 0 || chunk < 1) return aq_fail(err, AQ_ERR_ARG, "CNN capture: no images or chunk < 1");
    AQ_TRY(aq_cnnq_layers(g, &cap->layers, &cap->n_layers, err));
    aq_status st = capture_alloc(g, n, cap, err);
    if (st == AQ_OK) st = forward_images(g, NULL, pixels, n, image_size, norm, chunk, 0, cap, err);
    if (st != AQ_OK) aq_cnnq_capture_free(cap);
    return st;
}

aq_status aq_cnnq_capture_input(const aq_cnnq_model *m, const aq_cnnq_capture *cap, int i,
                                 const uint8_t *pixels, size_t image_size, const aq_cnn_norm *norm,
                                 int chunk, float **x_in, aq_error *err)
{
    int v = cap->layers[i].x_value;
    size_t per = cap->per_image[v], n = (size_t)cap->n_images;
    aq_cnnq_capture t = {0};
    t.n_values = m->g.n_values, t.n_images = cap->n_images;
    t.x = calloc((size_t)t.n_values, sizeof *t.x);
    t.per_image = calloc((size_t)t.n_values, sizeof *t.per_image);
    *x_in = malloc(n * per * sizeof(float));
    aq_status st = AQ_OK;
    if (!t.x || !t.per_image || !*x_in) {
        st = aq_fail_nomem(err, "sequential capture", n * per * sizeof(float));
    } else {
        t.x[v] = *x_in, t.per_image[v] = per;
        /* the layer's input is produced before the layer: the pass stops there */
        st = forward_images(&m->g, m, pixels, n, image_size, norm, chunk, m->layer_node[i], &t, err);
    }
    free(t.x), free(t.per_image);
    if (st != AQ_OK) free(*x_in), *x_in = NULL;
    return st;
}

void aq_cnnq_capture_free(aq_cnnq_capture *cap)
{
    for (int v = 0; cap->x && v < cap->n_values; v++) free(cap->x[v]);
    free(cap->x), free(cap->per_image), free(cap->layers);
    memset(cap, 0, sizeof *cap);
}

const float *aq_cnnq_capture_x(const aq_cnnq_capture *cap, int i)
{
    return cap->x[cap->layers[i].x_value];
}
