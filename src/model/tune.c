/* tune.c — the parameter vector of global tuning (tune.h): per-row
 * log-scales, zero points and biases of the quantized linears and the RMSNorm
 * gains, their gradient from the engine's backward pass, and Adam. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "grad.h"
#include "tune.h"
#include "tune_group.h"

aq_status aq_tune_install_layer(aq_model *m, int block, aq_linear which, const aq_layer_result *v, float *w,
                                aq_error *err)
{
    aq_layer_result_dequant(v, w);
    aq_linear_override ov = {w, v->bias, v->a_bits < 16 ? v->a_bits : 0, v->a_scale, v->a_zero};
    return aq_model_set_override(m, block, which, &ov, err);
}

struct aq_tuner {
    int n_layers;
    const aq_tune_layer *lay; /* [n_layers] (copied) */
    aq_model *m;
    aq_layer_result *v;
    int L, dim;
    int nb0, nbn, final; /* norms tuned: blocks [nb0, nb0 + nbn), and model.norm if final */
    int blockwise;       /* aq_tuner_new_block: block nb0's layers and norms only */
    size_t np, norm_off, *off;
    double *x, *s0;       /* parameters [np]; the starting scales (concatenated d_out) */
    double *am, *av;      /* Adam moments [np] */
    float **w;            /* per layer: the dequantised weight installed */
    float *norms;         /* float copy of the gains [2*L*dim + dim] */
    aq_grad_buf gb;       /* the engine's gradient buffers */
    float **dw, **db;     /* indexed by linear (block*AQ_LIN_COUNT+which) */
    aq_tune_grp *grp;     /* per layer: its group-format state (n == 0: per row) */
    int exact;            /* group formats re-quantized on every apply (aq_tuner_set_exact) */
};

void aq_tuner_free(aq_tuner *t)
{
    if (!t) return;
    int nl = t->L * AQ_LIN_COUNT;
    for (int l = 0; t->w && l < t->n_layers; l++) free(t->w[l]);
    for (int l = 0; t->grp && l < t->n_layers; l++) aq_tune_grp_free(&t->grp[l]);
    free(t->grp);
    for (int i = 0; t->dw && i < nl; i++) free(t->dw[i]);
    for (int i = 0; t->db && i < nl; i++) free(t->db[i]);
    free(t->w);
    free(t->dw);
    free(t->db);
    free(t->off);
    free(t->x);
    free(t->s0);
    free(t->am);
    free(t->av);
    free(t->norms);
    free(t->gb.d_attn_norm);
    free(t->gb.d_ffn_norm);
    free(t->gb.d_final_norm);
    free((void *)t->lay);
    free(t);
}

static int lin_index(const aq_tune_layer *pl) { return pl->block * AQ_LIN_COUNT + (int)pl->which; }

static aq_status tuner_init(aq_tuner *t, int n_layers, const aq_tune_layer *lay, aq_model *m, aq_layer_result *v,
                            aq_error *err)
{
    const aq_llama_config *mc = aq_model_config(m);
    t->n_layers = n_layers;
    t->m = m;
    t->v = v;
    t->L = mc->n_layers;
    t->dim = mc->dim;
    if (t->nbn == 0) t->nbn = t->L, t->final = 1; /* global: every norm */
    int nl = t->L * AQ_LIN_COUNT;
    aq_tune_layer *cp = malloc((size_t)(n_layers > 0 ? n_layers : 1) * sizeof *cp);
    if (cp) memcpy(cp, lay, (size_t)n_layers * sizeof *cp);
    t->lay = cp;
    t->off = calloc((size_t)n_layers + 1, sizeof *t->off);
    t->w = calloc((size_t)n_layers, sizeof *t->w);
    t->dw = calloc((size_t)nl, sizeof *t->dw);
    t->db = calloc((size_t)nl, sizeof *t->db);
    t->grp = calloc((size_t)(n_layers > 0 ? n_layers : 1), sizeof *t->grp);
    if (!cp || !t->off || !t->w || !t->dw || !t->db || !t->grp)
        return aq_fail_nomem(err, "tuning state", (size_t)nl * 8);
    size_t rows = 0, pos = 0;
    for (int l = 0; l < n_layers; l++) {
        int d_out, d_in;
        if (t->blockwise && lay[l].block != t->nb0)
            return aq_fail(err, AQ_ERR_ARG, "tuning block %d: layer %d is in block %d", t->nb0, l, lay[l].block);
        if (lay[l].which >= AQ_LIN_COUNT || lay[l].block < 0 || lay[l].block >= t->L ||
            aq_model_linear(m, lay[l].block, lay[l].which, NULL, &d_out, &d_in, err) != AQ_OK)
            return aq_fail(err, AQ_ERR_ARG, "tuning: layer %d (block %d, linear %d) is not a block linear", l,
                           lay[l].block, (int)lay[l].which);
        if ((size_t)d_out != v[l].d_out || (size_t)d_in != v[l].d_in)
            return aq_fail(err, AQ_ERR_SHAPE, "tuning: layer %d is [%zu, %zu], the model's linear is [%d, %d]", l,
                           v[l].d_out, v[l].d_in, d_out, d_in);
        int li = lin_index(&lay[l]);
        if (t->dw[li])
            return aq_fail(err, AQ_ERR_ARG, "tuning: linear (block %d, %d) given twice", lay[l].block,
                           (int)lay[l].which);
        if (v[l].group > 0) AQ_TRY(aq_tune_grp_init(&v[l], &t->grp[l], err));
        size_t ns = v[l].group > 0 ? t->grp[l].n : v[l].d_out; /* scales (and zeros) of the layer */
        t->off[l] = pos;
        pos += 2 * ns + v[l].d_out;
        rows += v[l].d_out;
        size_t wn = v[l].d_out * v[l].d_in;
        t->w[l] = malloc(wn * sizeof(float));
        t->dw[li] = malloc(wn * sizeof(float));
        t->db[li] = malloc(v[l].d_out * sizeof(float));
        if (!t->w[l] || !t->dw[li] || !t->db[li]) return aq_fail_nomem(err, "tuning gradients", wn * 8);
    }
    size_t ln = (size_t)t->nbn * t->dim, lall = (size_t)t->L * t->dim, nf = t->final ? (size_t)t->dim : 0;
    t->norm_off = pos;
    t->np = t->norm_off + 2 * ln + nf;
    t->x = calloc(t->np, sizeof *t->x);
    t->s0 = calloc(rows ? rows : 1, sizeof *t->s0);
    t->am = calloc(t->np, sizeof *t->am);
    t->av = calloc(t->np, sizeof *t->av);
    t->norms = malloc((2 * ln + nf + 1) * sizeof *t->norms);
    t->gb.d_weight = t->dw;
    t->gb.d_bias = t->db;
    t->gb.d_attn_norm = malloc(lall * sizeof(float)); /* the engine indexes them by model block */
    t->gb.d_ffn_norm = malloc(lall * sizeof(float));
    t->gb.d_final_norm = malloc((size_t)t->dim * sizeof(float));
    if (!t->x || !t->s0 || !t->am || !t->av || !t->norms || !t->gb.d_attn_norm || !t->gb.d_ffn_norm ||
        !t->gb.d_final_norm)
        return aq_fail_nomem(err, "tuning parameters", t->np * 40);
    size_t r0 = 0;
    for (int l = 0; l < n_layers; l++) {
        double *x = t->x + t->off[l];
        size_t n = v[l].d_out, ns = t->grp[l].n ? t->grp[l].n : n;
        for (size_t r = 0; r < n; r++) {
            t->s0[r0 + r] = v[l].w_scale[r];
            x[2 * ns + r] = v[l].bias[r];
        }
        for (size_t r = 0; r < ns; r++) { /* theta 0: s = s0 * exp(theta); a group's zeta 0 */
            x[r] = 0.0;
            x[ns + r] = t->grp[l].n ? 0.0 : v[l].w_zero[r];
        }
        r0 += n;
    }
    for (int b = 0; b < t->nbn; b++) {
        /* a lazy model's gains exist only while their block is held */
        AQ_TRY(aq_model_block_acquire(m, t->nb0 + b, err));
        for (int k = 0; k < 2; k++) {
            const float *gsrc = aq_model_norm(m, t->nb0 + b, k, 0);
            for (int i = 0; i < t->dim; i++) t->x[t->norm_off + (size_t)k * ln + (size_t)b * t->dim + i] = gsrc[i];
        }
        aq_model_block_release(m, t->nb0 + b);
    }
    const float *gf = aq_model_norm(m, t->L, 0, 0);
    for (size_t i = 0; i < nf; i++) t->x[t->norm_off + 2 * ln + i] = gf[i];
    return AQ_OK;
}

aq_status aq_tuner_apply(aq_tuner *t, aq_error *err)
{
    size_t r0 = 0, ln = (size_t)t->nbn * t->dim;
    for (int l = 0; l < t->n_layers; l++) {
        aq_layer_result *v = &t->v[l];
        const double *x = t->x + t->off[l];
        size_t n = v->d_out, ns = t->grp[l].n;
        if (ns) { /* a group format: its scales and mins, re-quantized to what it stores */
            aq_tune_grp_set(&t->grp[l], x, x + ns, t->exact, v);
            for (size_t r = 0; r < n; r++) v->bias[r] = (float)x[2 * ns + r];
        }
        for (size_t r = 0; !ns && r < n; r++) {
            v->w_scale[r] = (float)(t->s0[r0 + r] * exp(x[r]));
            if (!v->symmetric) v->w_zero[r] = (float)x[n + r];
            v->bias[r] = (float)x[2 * n + r];
        }
        r0 += n;
        AQ_TRY(aq_tune_install_layer(t->m, t->lay[l].block, t->lay[l].which, v, t->w[l], err));
    }
    for (size_t i = 0; i < t->np - t->norm_off; i++) t->norms[i] = (float)t->x[t->norm_off + i];
    for (int b = 0; b < t->nbn; b++)
        for (int k = 0; k < 2; k++)
            AQ_TRY(aq_model_set_norm_override(t->m, t->nb0 + b, k, t->norms + (size_t)k * ln + (size_t)b * t->dim,
                                              err));
    return t->final ? aq_model_set_norm_override(t->m, t->L, 0, t->norms + 2 * ln, err) : AQ_OK;
}

void aq_tuner_set_exact(aq_tuner *t, int on) { t->exact = on != 0; }

/* Zero the engine's gradient buffers of the tuned parameters. */
static void zero_grads(aq_tuner *t)
{
    size_t lall = (size_t)t->L * t->dim;
    for (int l = 0; l < t->n_layers; l++) {
        int li = lin_index(&t->lay[l]);
        memset(t->dw[li], 0, t->v[l].d_out * t->v[l].d_in * sizeof(float));
        memset(t->db[li], 0, t->v[l].d_out * sizeof(float));
    }
    memset(t->gb.d_attn_norm, 0, lall * sizeof(float));
    memset(t->gb.d_ffn_norm, 0, lall * sizeof(float));
    memset(t->gb.d_final_norm, 0, (size_t)t->dim * sizeof(float));
}

/* The engine's weight / bias / gain gradients as parameter gradients into
 * out[n_params], and out[n_params] = loss. */
static void collect_grads(aq_tuner *t, double loss, double *out)
{
    size_t ln = (size_t)t->nbn * t->dim;
    for (int l = 0; l < t->n_layers; l++) {
        const aq_layer_result *v = &t->v[l];
        int li = lin_index(&t->lay[l]);
        double *o = out + t->off[l];
        size_t n = v->d_out, d = v->d_in, ns = t->grp[l].n;
        if (ns) {
            aq_tune_grp_grad(&t->grp[l], v, t->dw[li], o, o + ns);
            for (size_t r = 0; r < n; r++) o[2 * ns + r] = t->db[li][r];
        }
        for (size_t r = 0; !ns && r < n; r++) {
            const float *dw = t->dw[li] + r * d, *w = t->w[l] + r * d;
            double gw = 0.0, gs = 0.0;
            for (size_t c = 0; c < d; c++) {
                gw += (double)dw[c] * w[c]; /* dKL/dtheta = sum_c dW * W  (W = s0 e^theta (u - z)) */
                gs += dw[c];
            }
            o[r] = gw;
            o[n + r] = v->symmetric ? 0.0 : -(double)v->w_scale[r] * gs; /* dW/dz = -s */
            o[2 * n + r] = t->db[li][r];
        }
    }
    size_t g0 = (size_t)t->nb0 * t->dim; /* the engine's buffers are indexed by model block */
    for (size_t i = 0; i < ln; i++) {
        out[t->norm_off + i] = t->gb.d_attn_norm[g0 + i];
        out[t->norm_off + ln + i] = t->gb.d_ffn_norm[g0 + i];
    }
    for (int i = 0; t->final && i < t->dim; i++) out[t->norm_off + 2 * ln + i] = t->gb.d_final_norm[i];
    out[t->np] = loss;
}

aq_status aq_tuner_grad(aq_tuner *t, const int *tokens, const int *lens, int n_seqs, double *out, aq_error *err)
{
    if (t->blockwise)
        return aq_fail(err, AQ_ERR_ARG, "tuning: a block tuner (block %d) has no network gradient", t->nb0);
    zero_grads(t);
    double kl = 0.0;
    AQ_TRY(aq_model_kl_grad(t->m, tokens, lens, n_seqs, &kl, &t->gb, err));
    collect_grads(t, kl, out);
    return AQ_OK;
}

aq_status aq_tuner_block_grad(aq_tuner *t, const float *x_in, const float *y, const int *lens, int n_seqs,
                              float *ws, double *out, aq_error *err)
{
    if (!t->blockwise)
        return aq_fail(err, AQ_ERR_ARG, "tuning: block reconstruction needs a block tuner (aq_tuner_new_block)");
    zero_grads(t);
    double e = 0.0;
    AQ_TRY(aq_model_block_grad(t->m, t->nb0, x_in, y, lens, n_seqs, ws, &e, &t->gb, err));
    collect_grads(t, e, out);
    return AQ_OK;
}

void aq_tuner_adam(aq_tuner *t, const double *g_sum, int k, int n, double lr0, double n_tok)
{
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8, pi = 3.14159265358979323846;
    double lr = lr0 * 0.5 * (1.0 + cos(pi * (k - 1) / n));
    double c1 = 1.0 - pow(b1, k), c2 = 1.0 - pow(b2, k);
    for (size_t i = 0; i < t->np; i++) {
        double g = g_sum[i] / n_tok;
        t->am[i] = b1 * t->am[i] + (1.0 - b1) * g;
        t->av[i] = b2 * t->av[i] + (1.0 - b2) * g * g;
        t->x[i] -= lr * (t->am[i] / c1) / (sqrt(t->av[i] / c2) + eps);
    }
}

/* block < 0: global (every norm); else block `block` only. */
static aq_status tuner_new(aq_model *m, int n_layers, const aq_tune_layer *lay, aq_layer_result *v, int block,
                           aq_tuner **out, aq_error *err)
{
    *out = NULL;
    if (block >= aq_model_config(m)->n_layers)
        return aq_fail(err, AQ_ERR_ARG, "tuning: block %d (model has %d)", block, aq_model_config(m)->n_layers);
    aq_tuner *t = calloc(1, sizeof *t);
    if (!t) return aq_fail_nomem(err, "tuner", sizeof *t);
    if (block >= 0) t->nb0 = block, t->nbn = 1, t->blockwise = 1;
    t->exact = 1;
    aq_status st = tuner_init(t, n_layers, lay, m, v, err);
    if (st != AQ_OK) {
        aq_tuner_free(t);
        return st;
    }
    *out = t;
    return AQ_OK;
}

aq_status aq_tuner_new(aq_model *m, int n_layers, const aq_tune_layer *lay, aq_layer_result *v, aq_tuner **out,
                       aq_error *err)
{
    return tuner_new(m, n_layers, lay, v, -1, out, err);
}

aq_status aq_tuner_new_block(aq_model *m, int block, int n_layers, const aq_tune_layer *lay, aq_layer_result *v,
                             aq_tuner **out, aq_error *err)
{
    return tuner_new(m, n_layers, lay, v, block < 0 ? 0 : block, out, err);
}

size_t aq_tuner_n_params(const aq_tuner *t) { return t->np; }
double *aq_tuner_params(aq_tuner *t) { return t->x; }
size_t aq_tuner_layer_offset(const aq_tuner *t, int l) { return t->off[l]; }
size_t aq_tuner_norm_offset(const aq_tuner *t) { return t->norm_off; }
