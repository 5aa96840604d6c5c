/* cnn_quant_layer.c — one CNN layer's quantization: RTN (min/max or MSE
 * range per output channel) or AdaQuant (src/adaquant: aq_conv_run for Conv,
 * aq_layer_run on rows for Gemm/MatMul), each with the per-tensor activation
 * quantizer of the layer's input when a_bits < 16. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../quant/quant.h"
#include "cnn_quant.h"

enum { ACT_FIT_MAX = 1 << 20 }; /* values the activation range sees (as src/adaquant/actq.c) */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static aq_status result_alloc(aq_cnnq_result *r, int d_out, int d_in, aq_error *err)
{
    memset(r, 0, sizeof *r);
    r->d_out = d_out, r->d_in = d_in;
    r->codes = malloc((size_t)d_out * (size_t)d_in);
    r->scale = malloc(3 * (size_t)d_out * sizeof(float));
    if (!r->codes || !r->scale) {
        aq_cnnq_result_free(r);
        return aq_fail_nomem(err, "quantized layer", (size_t)d_out * (size_t)d_in + 12 * (size_t)d_out);
    }
    r->zero = r->scale + d_out;
    r->bias = r->scale + 2 * (size_t)d_out;
    r->a_scale = 1, r->a_zero = 0, r->loss = NAN;
    return AQ_OK;
}

void aq_cnnq_result_free(aq_cnnq_result *r)
{
    free(r->codes);
    free(r->scale);
    memset(r, 0, sizeof *r);
}

/* z rounded to an integer in [0, qmax]; counts a change. */
static float grid_zero(float z, int bits, int *changed)
{
    float r = fminf(fmaxf(nearbyintf(z), 0.0f), (float)((1 << bits) - 1));
    *changed += r != z;
    return r;
}

int aq_cnnq_round_zeros(aq_cnnq_result *r)
{
    int k = 0;
    for (int i = 0; i < r->d_out; i++) r->zero[i] = grid_zero(r->zero[i], r->w_bits, &k);
    if (r->a_bits < 16) r->a_zero = grid_zero(r->a_zero, r->a_bits, &k);
    return k;
}

/* W [d_out, d_in] of layer L (a copy, transposed when stored [d_in, d_out])
 * and its bias (zeros when absent). */
static aq_status layer_matrix(const aq_cnn_graph *g, const aq_cnnq_layer *L, float **w, float **b,
                              aq_error *err)
{
    size_t o = (size_t)L->d_out, in = (size_t)L->d_in;
    *w = malloc(o * in * sizeof(float));
    *b = calloc(o, sizeof(float));
    if (!*w || !*b) {
        free(*w), free(*b);
        *w = *b = NULL;
        return aq_fail_nomem(err, "layer weight copy", o * in * 4);
    }
    const float *src = g->values[L->w_value].data;
    if (L->transposed)
        for (size_t r = 0; r < o; r++)
            for (size_t c = 0; c < in; c++) (*w)[r * in + c] = src[c * o + r];
    else
        memcpy(*w, src, o * in * sizeof(float));
    if (L->b_value >= 0) {
        const aq_cnn_value *bv = &g->values[L->b_value];
        for (size_t r = 0; r < o; r++) (*b)[r] = bv->data[r];
    }
    return AQ_OK;
}

/* The per-tensor activation range of n values: the MSE range of src/quant on
 * at most ACT_FIT_MAX of them, evenly strided (the subsample actq.c uses). */
static aq_status act_fit(const float *x, size_t n, int bits, float *scale, float *zero, aq_error *err)
{
    size_t stride = n > ACT_FIT_MAX ? (n + ACT_FIT_MAX - 1) / ACT_FIT_MAX : 1, m = (n + stride - 1) / stride;
    float *buf = malloc(m * sizeof *buf);
    if (!buf) return aq_fail_nomem(err, "activation range sample", m * sizeof *buf);
    for (size_t i = 0, k = 0; i < n; i += stride) buf[k++] = x[i];
    aq_qspec spec = {bits, 0};
    aq_qrange(buf, m, spec, AQ_RANGE_MSE, scale, zero);
    free(buf);
    return AQ_OK;
}

static aq_status run_rtn(const float *w, const float *b, const float *xa, size_t nx,
                         aq_cnnq_method m, const aq_layer_opts *o, aq_cnnq_result *r, aq_error *err)
{
    aq_qspec spec = {o->w_bits, o->symmetric};
    AQ_TRY(aq_qspec_check(spec, err));
    size_t d_out = (size_t)r->d_out, d_in = (size_t)r->d_in;
    aq_qrange_rows(w, d_out, d_in, spec, m == AQ_CNNQ_RTN_MSE ? AQ_RANGE_MSE : AQ_RANGE_MINMAX, r->scale,
                   r->zero);
    aq_quantize_rows(w, d_out, d_in, r->scale, r->zero, o->w_bits, r->codes);
    memcpy(r->bias, b, d_out * sizeof(float));
    if (o->a_bits < 16) AQ_TRY(act_fit(xa, nx, o->a_bits, &r->a_scale, &r->a_zero, err));
    return AQ_OK;
}

static void take(aq_cnnq_result *r, const aq_layer_result *lr)
{
    size_t d_out = (size_t)r->d_out;
    memcpy(r->codes, lr->codes, d_out * (size_t)r->d_in);
    memcpy(r->scale, lr->w_scale, d_out * sizeof(float));
    memcpy(r->zero, lr->w_zero, d_out * sizeof(float));
    memcpy(r->bias, lr->bias, d_out * sizeof(float));
    r->a_scale = lr->a_scale, r->a_zero = lr->a_zero;
    r->loss = lr->loss_final;
}

aq_status aq_cnnq_quantize_layer(const aq_cnn_graph *g, const aq_cnnq_capture *cap, int i,
                                 const float *x_in, aq_cnnq_method m, const aq_layer_opts *o,
                                 aq_cnnq_result *r, aq_error *err)
{
    if (i < 0 || i >= cap->n_layers)
        return aq_fail(err, AQ_ERR_ARG, "CNN quantize: layer %d of %d", i, cap->n_layers);
    const aq_cnnq_layer *L = &cap->layers[i];
    const char *name = g->nodes[L->node].name;
    double t0 = now();
    float *w = NULL, *b = NULL;
    AQ_TRY(layer_matrix(g, L, &w, &b, err));
    aq_status st = result_alloc(r, L->d_out, L->d_in, err);
    if (st != AQ_OK) goto done;
    r->w_bits = o->w_bits, r->a_bits = o->a_bits;
    const float *x = aq_cnnq_capture_x(cap, i);
    size_t nx = (size_t)cap->n_images * (size_t)L->c * L->h * L->w;
    if (m != AQ_CNNQ_ADAQUANT) {
        st = run_rtn(w, b, x_in ? x_in : x, nx, m, o, r, err);
    } else {
        aq_layer_result lr;
        if (L->op == AQ_OP_CONV) {
            st = aq_conv_run(&L->conv, name, w, b, x, x_in, cap->n_images, L->h, L->w, o, &lr, err);
        } else {
            aq_layer_problem p = {.name = name, .d_out = (size_t)L->d_out, .d_in = (size_t)L->d_in,
                                  .weight = w, .bias = b, .n_rows = (size_t)cap->n_images,
                                  .x = x, .x_in = x_in};
            st = aq_layer_run(&p, o, &lr, err);
        }
        if (st == AQ_OK) {
            take(r, &lr);
            aq_layer_result_free(&lr);
        }
    }
done:
    free(w), free(b);
    if (st != AQ_OK) {
        aq_cnnq_result_free(r);
        aq_error_prefix(err, "node '%s'", name);
    } else {
        r->seconds = now() - t0;
    }
    return st;
}

/* Mean over the calibration rows of the sum of one weight row's inputs
 * (Conv: an im2col row of group gr, padding included as zeros; else x's row). */
static aq_status mean_row_sum(const aq_cnnq_capture *cap, int i, int gr, double *out, aq_error *err)
{
    const aq_cnnq_layer *L = &cap->layers[i];
    const float *x = aq_cnnq_capture_x(cap, i);
    size_t per = (size_t)L->c * L->h * L->w, N = (size_t)cap->n_images;
    double s = 0;
    if (L->op != AQ_OP_CONV) {
        for (size_t k = 0; k < N * per; k++) s += x[k];
        *out = s / (double)N;
        return AQ_OK;
    }
    int oh, ow;
    AQ_TRY(aq_conv_check(&L->conv, L->h, L->w, &oh, &ow, err));
    size_t rows = (size_t)oh * ow, K = (size_t)L->d_in;
    float *buf = malloc(rows * K * sizeof *buf);
    if (!buf) return aq_fail_nomem(err, "im2col rows", rows * K * sizeof *buf);
    for (size_t n = 0; n < N; n++) {
        aq_im2col(x + n * per, 1, L->h, L->w, &L->conv, gr, buf);
        for (size_t k = 0; k < rows * K; k++) s += buf[k];
    }
    free(buf);
    *out = s / ((double)N * (double)rows);
    return AQ_OK;
}

aq_status aq_cnnq_round_zeros_corrected(const aq_cnnq_capture *cap, int i, aq_cnnq_result *r,
                                        int *changed, aq_error *err)
{
    const aq_cnnq_layer *L = &cap->layers[i];
    int G = L->op == AQ_OP_CONV ? L->conv.groups : 1, per_g = r->d_out / G, k = 0;
    for (int gr = 0; gr < G; gr++) {
        double msum = 0;
        int moved = 0;
        for (int c = gr * per_g; c < (gr + 1) * per_g; c++) moved |= !(r->zero[c] == nearbyintf(r->zero[c]));
        if (moved) AQ_TRY(mean_row_sum(cap, i, gr, &msum, err));
        for (int c = gr * per_g; c < (gr + 1) * per_g; c++) {
            float z = grid_zero(r->zero[c], r->w_bits, &k);
            /* W' - W = scale (z - z') on the whole row: its mean output shift */
            r->bias[c] = (float)((double)r->bias[c] + (double)r->scale[c] * ((double)z - r->zero[c]) * msum);
            r->zero[c] = z;
        }
    }
    if (r->a_bits < 16) r->a_zero = grid_zero(r->a_zero, r->a_bits, &k);
    if (changed) *changed = k;
    return AQ_OK;
}
