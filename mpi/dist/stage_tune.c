/* stage_tune.c — global tuning of the assembled quantized model (stage_tune.h):
 * Adam on the per-row scales (log-parametrised), zero points and biases of
 * every quantized linear and on the RMSNorm gains, minimising the mean
 * per-token KL(FP ‖ quantized) on calibration documents, with the integer codes
 * fixed. Gradients are per fixed chunk of documents, summed in chunk order. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/model/grad.h"
#include "../../src/text/textdata.h"
#include "progress.h"
#include "reduce.h"
#include "stage_tune.h"

void aq_pipe_tuned_free(aq_pipe_tuned *t)
{
    free(t->attn_norm);
    free(t->ffn_norm);
    free(t->final_norm);
    memset(t, 0, sizeof *t);
}

static aq_status install_layer(aq_model *m, const aq_pipe_layer *pl, const aq_layer_result *v, float *w,
                               aq_error *err)
{
    aq_layer_result_dequant(v, w);
    aq_linear_override ov = {w, v->bias, v->a_bits < 16 ? v->a_bits : 0, v->a_scale, v->a_zero};
    return aq_model_set_override(m, pl->block, (aq_linear)pl->which, &ov, err);
}

aq_status aq_pipe_install_layers(aq_model *m, const aq_pipe_plan *p, const aq_layer_result *v, aq_error *err)
{
    for (int l = 0; l < p->n_layers; l++) {
        float *w = malloc(v[l].d_out * v[l].d_in * sizeof *w);
        if (!w) return aq_fail_nomem(err, "dequantised weight", v[l].d_out * v[l].d_in * 4);
        aq_status st = install_layer(m, &p->layers[l], &v[l], w, err);
        free(w);
        AQ_TRY(st);
    }
    return AQ_OK;
}

/* The tuning state, identical on every rank. Parameter vector layout: per
 * layer l (model order) theta[d_out], zero[d_out], bias[d_out] at off[l];
 * then attn gains [L*dim], ffn gains [L*dim], final gain [dim] at norm_off. */
typedef struct tuner {
    const aq_pipe_plan *p;
    aq_model *m;
    aq_layer_result *v;
    int L, dim;
    size_t np, norm_off, *off;
    double *x, *s0;       /* parameters [np]; the starting scales (concatenated d_out) */
    double *g, *am, *av;  /* gradient + Adam moments [np] */
    float **w;            /* per layer: the dequantised weight installed */
    float *norms;         /* float copy of the gains [2*L*dim + dim] */
    aq_grad_buf gb;       /* the engine's gradient buffers */
    float **dw, **db;     /* indexed by linear (block*AQ_LIN_COUNT+which) */
} tuner;

static void tuner_free(tuner *t)
{
    int nl = t->L * AQ_LIN_COUNT;
    for (int l = 0; t->w && l < t->p->n_layers; l++) free(t->w[l]);
    for (int i = 0; t->dw && i < nl; i++) free(t->dw[i]);
    for (int i = 0; t->db && i < nl; i++) free(t->db[i]);
    free(t->w);
    free(t->dw);
    free(t->db);
    free(t->off);
    free(t->x);
    free(t->s0);
    free(t->g);
    free(t->am);
    free(t->av);
    free(t->norms);
    free(t->gb.d_attn_norm);
    free(t->gb.d_ffn_norm);
    free(t->gb.d_final_norm);
}

static int lin_index(const aq_pipe_layer *pl) { return pl->block * AQ_LIN_COUNT + pl->which; }

static aq_status tuner_init(tuner *t, const aq_pipe_plan *p, aq_model *m, aq_layer_result *v, aq_error *err)
{
    const aq_llama_config *mc = aq_model_config(m);
    memset(t, 0, sizeof *t);
    t->p = p;
    t->m = m;
    t->v = v;
    t->L = mc->n_layers;
    t->dim = mc->dim;
    int nl = t->L * AQ_LIN_COUNT;
    t->off = calloc((size_t)p->n_layers + 1, sizeof *t->off);
    t->w = calloc((size_t)p->n_layers, sizeof *t->w);
    t->dw = calloc((size_t)nl, sizeof *t->dw);
    t->db = calloc((size_t)nl, sizeof *t->db);
    if (!t->off || !t->w || !t->dw || !t->db) return aq_fail_nomem(err, "tuning state", (size_t)nl * 8);
    size_t rows = 0;
    for (int l = 0; l < p->n_layers; l++) {
        t->off[l] = 3 * rows;
        rows += v[l].d_out;
        if (p->layers[l].which >= AQ_LIN_COUNT)
            return aq_fail(err, AQ_ERR_ARG, "tuning: layer %s is not a block linear", p->layers[l].name);
        int li = lin_index(&p->layers[l]);
        size_t wn = v[l].d_out * v[l].d_in;
        t->w[l] = malloc(wn * sizeof(float));
        t->dw[li] = malloc(wn * sizeof(float));
        t->db[li] = malloc(v[l].d_out * sizeof(float));
        if (!t->w[l] || !t->dw[li] || !t->db[li]) return aq_fail_nomem(err, "tuning gradients", wn * 8);
    }
    size_t ln = (size_t)t->L * t->dim;
    t->norm_off = 3 * rows;
    t->np = t->norm_off + 2 * ln + (size_t)t->dim;
    t->x = calloc(t->np, sizeof *t->x);
    t->s0 = calloc(rows ? rows : 1, sizeof *t->s0);
    t->g = calloc(t->np + 1, sizeof *t->g);
    t->am = calloc(t->np, sizeof *t->am);
    t->av = calloc(t->np, sizeof *t->av);
    t->norms = malloc((2 * ln + (size_t)t->dim) * sizeof *t->norms);
    t->gb.d_weight = t->dw;
    t->gb.d_bias = t->db;
    t->gb.d_attn_norm = malloc(ln * sizeof(float));
    t->gb.d_ffn_norm = malloc(ln * sizeof(float));
    t->gb.d_final_norm = malloc((size_t)t->dim * sizeof(float));
    if (!t->x || !t->s0 || !t->g || !t->am || !t->av || !t->norms || !t->gb.d_attn_norm || !t->gb.d_ffn_norm ||
        !t->gb.d_final_norm)
        return aq_fail_nomem(err, "tuning parameters", t->np * 40);
    size_t r0 = 0;
    for (int l = 0; l < p->n_layers; l++) {
        double *x = t->x + t->off[l];
        size_t n = v[l].d_out;
        for (size_t r = 0; r < n; r++) {
            t->s0[r0 + r] = v[l].w_scale[r];
            x[r] = 0.0; /* theta: s = s0 * exp(theta) */
            x[n + r] = v[l].w_zero[r];
            x[2 * n + r] = v[l].bias[r];
        }
        r0 += n;
    }
    for (int b = 0; b < t->L; b++)
        for (int k = 0; k < 2; k++) {
            const float *gsrc = aq_model_norm(m, b, k, 0);
            for (int i = 0; i < t->dim; i++) t->x[t->norm_off + (size_t)k * ln + (size_t)b * t->dim + i] = gsrc[i];
        }
    const float *gf = aq_model_norm(m, t->L, 0, 0);
    for (int i = 0; i < t->dim; i++) t->x[t->norm_off + 2 * ln + i] = gf[i];
    return AQ_OK;
}

/* Write the parameters into v (float) and install layers and norms in m. */
static aq_status tuner_apply(tuner *t, aq_error *err)
{
    size_t r0 = 0, ln = (size_t)t->L * t->dim;
    for (int l = 0; l < t->p->n_layers; l++) {
        aq_layer_result *v = &t->v[l];
        const double *x = t->x + t->off[l];
        size_t n = v->d_out;
        for (size_t r = 0; r < n; r++) {
            v->w_scale[r] = (float)(t->s0[r0 + r] * exp(x[r]));
            if (!v->symmetric) v->w_zero[r] = (float)x[n + r];
            v->bias[r] = (float)x[2 * n + r];
        }
        r0 += n;
        AQ_TRY(install_layer(t->m, &t->p->layers[l], v, t->w[l], err));
    }
    for (size_t i = 0; i < 2 * ln + (size_t)t->dim; i++) t->norms[i] = (float)t->x[t->norm_off + i];
    for (int b = 0; b < t->L; b++)
        for (int k = 0; k < 2; k++)
            AQ_TRY(aq_model_set_norm_override(t->m, b, k, t->norms + (size_t)k * ln + (size_t)b * t->dim, err));
    return aq_model_set_norm_override(t->m, t->L, 0, t->norms + 2 * ln, err);
}

/* One chunk's gradient (of the summed KL) as float64 in the parameter layout,
 * out[np] = the chunk's KL sum. */
static aq_status chunk_grad(tuner *t, const int *tokens, const int *lens, int n_seqs, double *out, aq_error *err)
{
    size_t ln = (size_t)t->L * t->dim;
    for (int l = 0; l < t->p->n_layers; l++) {
        int li = lin_index(&t->p->layers[l]);
        memset(t->dw[li], 0, t->v[l].d_out * t->v[l].d_in * sizeof(float));
        memset(t->db[li], 0, t->v[l].d_out * sizeof(float));
    }
    memset(t->gb.d_attn_norm, 0, ln * sizeof(float));
    memset(t->gb.d_ffn_norm, 0, ln * sizeof(float));
    memset(t->gb.d_final_norm, 0, (size_t)t->dim * sizeof(float));
    double kl = 0.0;
    AQ_TRY(aq_model_kl_grad(t->m, tokens, lens, n_seqs, &kl, &t->gb, err));
    for (int l = 0; l < t->p->n_layers; l++) {
        const aq_layer_result *v = &t->v[l];
        int li = lin_index(&t->p->layers[l]);
        double *o = out + t->off[l];
        size_t n = v->d_out, d = v->d_in;
        for (size_t r = 0; r < n; r++) {
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
    for (size_t i = 0; i < ln; i++) {
        out[t->norm_off + i] = t->gb.d_attn_norm[i];
        out[t->norm_off + ln + i] = t->gb.d_ffn_norm[i];
    }
    for (int i = 0; i < t->dim; i++) out[t->norm_off + 2 * ln + i] = t->gb.d_final_norm[i];
    out[t->np] = kl;
    return AQ_OK;
}

/* Adam (beta 0.9 / 0.999, eps 1e-8) on the mean-KL gradient g / n_tok, step
 * k of n (1-based) with a cosine-decayed rate: the last steps average out the
 * batch noise instead of jumping around the minimum. */
static void adam_step(tuner *t, int k, int n, double lr0, double n_tok)
{
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8, pi = 3.14159265358979323846;
    double lr = lr0 * 0.5 * (1.0 + cos(pi * (k - 1) / n));
    double c1 = 1.0 - pow(b1, k), c2 = 1.0 - pow(b2, k);
    for (size_t i = 0; i < t->np; i++) {
        double g = t->g[i] / n_tok;
        t->am[i] = b1 * t->am[i] + (1.0 - b1) * g;
        t->av[i] = b2 * t->av[i] + (1.0 - b2) * g * g;
        t->x[i] -= lr * (t->am[i] / c1) / (sqrt(t->av[i] / c2) + eps);
    }
}

static aq_status load_pool(const aq_pipe_cfg *c, const aq_pipe_tune_opts *tu, int vocab, aq_seqs *pool,
                           aq_error *err)
{
    aq_tokenizer *tok;
    AQ_TRY(aq_tok_open(c->tokenizer, vocab, &tok, err));
    aq_docs d;
    aq_status st = aq_docs_read(c->calib_text, &d, err);
    if (st == AQ_OK) {
        st = aq_calib_seqs(tok, &d, tu->max_len, (size_t)tu->docs, pool, err);
        aq_docs_free(&d);
    }
    aq_tok_close(tok);
    if (st != AQ_OK) aq_error_prefix(err, "global tuning");
    return st;
}

/* Steps over the pool: step k (0-based) uses documents (k*batch + i) mod n. */
static aq_status run_steps(MPI_Comm comm, const aq_pipe_tune_opts *tu, tuner *t, const aq_seqs *pool,
                           const size_t *start, aq_pipe_tuned *out, aq_error *err)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int B = tu->batch, T = tu->max_len;
    size_t n_chunks = ((size_t)B + AQ_TUNE_CHUNK - 1) / AQ_TUNE_CHUNK, lo, hi, n_doc = (size_t)pool->n;
    aq_dist_block_range(n_chunks, size, rank, &lo, &hi);
    int *chunk_rank = malloc(n_chunks * sizeof *chunk_rank);
    const double **local = calloc(n_chunks, sizeof *local);
    double *part = calloc((hi - lo) * (t->np + 1) + 1, sizeof *part);
    int *toks = malloc((size_t)AQ_TUNE_CHUNK * (size_t)T * sizeof *toks), lens[AQ_TUNE_CHUNK];
    aq_status st = chunk_rank && local && part && toks ? AQ_OK : aq_fail_nomem(err, "tuning chunks", t->np * 8);
    for (int r = 0; st == AQ_OK && r < size; r++) {
        size_t a, b;
        aq_dist_block_range(n_chunks, size, r, &a, &b);
        for (size_t ch = a; ch < b; ch++) chunk_rank[ch] = r;
    }
    for (size_t ch = lo; st == AQ_OK && ch < hi; ch++) local[ch] = part + (ch - lo) * (t->np + 1);
    double t0 = aq_progress_now(), every = tu->steps >= 10 ? tu->steps / 10 : 1;
    if (rank == 0 && st == AQ_OK)
        fprintf(stderr, "adaquant: tuning %zu parameters: %d steps of %d documents (pool %zu documents, %zu tokens)\n",
                t->np, tu->steps, B, n_doc, pool->n_tokens);
    for (int k = 0; st == AQ_OK && k < tu->steps; k++) {
        st = tuner_apply(t, err);
        double n_tok = 0.0;
        for (int i = 0; i < B; i++) n_tok += pool->lens[((size_t)k * (size_t)B + (size_t)i) % n_doc];
        for (size_t ch = lo; st == AQ_OK && ch < hi; ch++) {
            int d0 = (int)ch * AQ_TUNE_CHUNK, nd = B - d0 < AQ_TUNE_CHUNK ? B - d0 : AQ_TUNE_CHUNK;
            size_t at = 0;
            for (int i = 0; i < nd; i++) {
                size_t doc = ((size_t)k * (size_t)B + (size_t)(d0 + i)) % n_doc;
                lens[i] = pool->lens[doc];
                memcpy(toks + at, pool->tokens + start[doc], (size_t)lens[i] * sizeof *toks);
                at += (size_t)lens[i];
            }
            st = chunk_grad(t, toks, lens, nd, part + (ch - lo) * (t->np + 1), err);
        }
        st = aq_pipe_agree(comm, st, err);
        if (st == AQ_OK) st = aq_dist_reduce_chunks(comm, 0, n_chunks, chunk_rank, local, t->np + 1, t->g, err);
        if (st == AQ_OK) MPI_Bcast(t->g, (int)(t->np + 1), MPI_DOUBLE, 0, comm);
        if (st != AQ_OK) break;
        double kl = t->g[t->np] / n_tok;
        if (!isfinite(kl)) {
            st = aq_fail(err, AQ_ERR_NUMERIC, "global tuning diverged at step %d of %d (batch KL %g): lower --tune-lr (%g)",
                         k + 1, tu->steps, kl, tu->lr);
            break;
        }
        if (k == 0) out->kl_first = kl;
        out->kl_last = kl;
        adam_step(t, k + 1, tu->steps, tu->lr, n_tok);
        if (rank == 0 && ((k + 1) % (int)every == 0 || k + 1 == tu->steps)) {
            double el = aq_progress_now() - t0;
            fprintf(stderr, "adaquant: tune step %d/%d  KL %.5f  %.0f s, ETA %.0f s\n", k + 1, tu->steps, kl, el,
                    el / (k + 1) * (tu->steps - k - 1));
        }
    }
    if (st == AQ_OK) st = tuner_apply(t, err);
    free(chunk_rank);
    free(local);
    free(part);
    free(toks);
    return st;
}

aq_status aq_pipe_tune(MPI_Comm comm, const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_tune_opts *tu,
                       aq_model *m, aq_layer_result *v, aq_pipe_tuned *out, aq_error *err)
{
    memset(out, 0, sizeof *out);
    if (tu->steps <= 0) return aq_pipe_install_layers(m, p, v, err);
    if (tu->batch < 1 || !(tu->lr > 0))
        return aq_fail(err, AQ_ERR_ARG, "global tuning: batch %d and learning rate %g must be positive", tu->batch,
                       tu->lr);
    aq_seqs pool;
    tuner t;
    size_t *start = NULL;
    memset(&t, 0, sizeof t);
    aq_pipe_tune_opts o = *tu;
    const aq_llama_config *mc = aq_model_config(m);
    if (o.max_len > mc->max_seq_len) o.max_len = mc->max_seq_len; /* the model's context */
    aq_status st = load_pool(c, &o, mc->vocab_size, &pool, err);
    if (st == AQ_OK && !(start = malloc((size_t)pool.n * sizeof *start)))
        st = aq_fail_nomem(err, "tuning documents", (size_t)pool.n * 8);
    for (int i = 0, at = 0; st == AQ_OK && i < pool.n; at += pool.lens[i++]) start[i] = (size_t)at;
    if (st == AQ_OK) st = tuner_init(&t, p, m, v, err);
    if (st == AQ_OK) st = run_steps(comm, &o, &t, &pool, start, out, err);
    if (st == AQ_OK) {
        size_t ln = (size_t)t.L * t.dim;
        out->dim = t.dim;
        out->n_layers = t.L;
        out->steps = tu->steps;
        out->max_len = o.max_len;
        out->docs = pool.n;
        out->tokens = pool.n_tokens;
        out->attn_norm = malloc(ln * sizeof(float));
        out->ffn_norm = malloc(ln * sizeof(float));
        out->final_norm = malloc((size_t)t.dim * sizeof(float));
        if (!out->attn_norm || !out->ffn_norm || !out->final_norm) {
            st = aq_fail_nomem(err, "tuned norms", ln * 8);
        } else {
            memcpy(out->attn_norm, t.norms, ln * sizeof(float));
            memcpy(out->ffn_norm, t.norms + ln, ln * sizeof(float));
            memcpy(out->final_norm, t.norms + 2 * ln, (size_t)t.dim * sizeof(float));
        }
    }
    if (st != AQ_OK) aq_pipe_tuned_free(out);
    tuner_free(&t);
    free(start);
    aq_seqs_free(&pool);
    return st;
}
