/* plan_model.c — the cost and memory model of `adaquant plan` (plan.h,
 * docs/PLAN.md): operation counts of today's pipeline code, phase by phase,
 * turned into seconds with the measured rates, and the calibrate phase
 * scheduled by the pipeline's own scheduler (tasks.h). Pure: no clocks, no
 * BLAS, no MPI. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fixed_chunks.h"
#include "../../src/model/model.h"
#include "coop_sched.h"
#include "plan.h"
#include "driver.h"
#include "memory.h"
#include "tasks.h"

#define CAP_CHUNK_DEFAULT 8   /* aq_capture_opts.batch_windows: windows per capture forward */
#define TUNE_FWD_EQUIV 4.3    /* forward-equivalents per tuning step (README: FP targets + Q forward + backward) */
#define COOP_LATENCY 2e-5     /* seconds per intra-node MPI collective (assumed: Open MPI shared memory, idle cores) */
#define COOP_SETUP_CALLS 50   /* collectives of a grid's set-up (BLACS context, Gram redistribution, checks) */
#define SOLVE_SEC_PER_ROW 4e-5 /* CBC: 10,000 layers x 12 options in 0.14-0.45 s (README) */

static const char *const phase_names[AQ_PLAN_NPHASES] = {"capture", "calibrate", "allocate", "tune", "eval", "write"};
static const char *const lin_names[AQ_LIN_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                    "gate_proj", "up_proj", "down_proj"};

const char *aq_plan_phase_name(int phase)
{
    return phase >= 0 && phase < AQ_PLAN_NPHASES ? phase_names[phase] : "?";
}

double aq_plan_rate_at(const double *ladder, double s)
{
    /* ladder[i] at size 8 << i; log-log interpolation, clamped at both ends */
    double x = log2(s > 8 ? s : 8) - 3;
    if (x >= AQ_PLAN_NSIZES - 1) return ladder[AQ_PLAN_NSIZES - 1] * 1e9;
    int i = (int)x;
    double f = x - i, a = ladder[i] > 0 ? ladder[i] : 1e-3, b = ladder[i + 1] > 0 ? ladder[i + 1] : 1e-3;
    return exp(log(a) * (1 - f) + log(b) * f) * 1e9;
}

static double mind3(double a, double b, double c)
{
    double m = a < b ? a : b;
    return m < c ? m : c;
}

/* Shape of the 7 linears: (d_out, d_in). */
static void lin_shape(const aq_llama_config *m, int which, int *d_out, int *d_in)
{
    int hs = aq_llama_head_dim(m), q = m->n_heads * hs, kv = m->n_kv_heads * hs;
    int o[AQ_LIN_COUNT] = {q, kv, kv, m->dim, m->hidden_dim, m->hidden_dim, m->dim};
    int i[AQ_LIN_COUNT] = {m->dim, m->dim, m->dim, q, m->dim, m->dim, m->hidden_dim};
    *d_out = o[which];
    *d_in = i[which];
}

static double block_params(const aq_llama_config *m)
{
    double s = 0;
    for (int w = 0; w < AQ_LIN_COUNT; w++) {
        int o, i;
        lin_shape(m, w, &o, &i);
        s += (double)o * i;
    }
    return s;
}

/* ---- forward ------------------------------------------------------------ */

/* Seconds of one single-precision GEMM C[m,n] = A[m,k] B[k,n]. */
static double sgemm_seconds(const aq_plan_rates *r, double m, double n, double k)
{
    if (m < 1 || n < 1 || k < 1) return 0;
    if (r->probe) return r->probe(r->probe_ctx, m, n, k);
    return 2 * m * n * k / aq_plan_rate_at(r->sgemm, mind3(m, n, k));
}

/* Seconds of a forward over `rows` tokens in sequences whose squared lengths
 * sum to `sq`, through `blocks` blocks, with the classifier and a float64
 * log-softmax per row when head != 0 (forward.c, ops.c, eval.c). */
static double fwd_seconds(const aq_llama_config *m, const aq_plan_rates *r, double rows, double sq, int blocks,
                          int head)
{
    if (rows <= 0) return 0;
    double t = 0;
    for (int w = 0; w < AQ_LIN_COUNT; w++) {
        int o, i;
        lin_shape(m, w, &o, &i);
        t += sgemm_seconds(r, rows, o, i);
    }
    int hs = aq_llama_head_dim(m), qd = m->n_heads * hs, kvd = m->n_kv_heads * hs;
    /* attention (aq_attend_seq): per sequence and head, Q K^T over the whole
     * L x L and P V; the softmax over each row's prefix. Sequences of varying
     * length enter as n_eff sequences of the length-weighted mean length. */
    double L = sq / rows, n_eff = rows / L;
    t += n_eff * m->n_heads * (sgemm_seconds(r, L, L, hs) + sgemm_seconds(r, L, hs, L));
    t += m->n_heads * (sq / 2 + rows) / r->softmax_rate;
    /* two RMSNorms, RoPE on q and k, residual adds (RMSNorm-like passes), SwiGLU's expf */
    t += rows * (2.0 * m->dim + qd + kvd + 2.0 * m->dim + m->hidden_dim) / r->elem_rate +
         rows * m->hidden_dim / r->exp_rate;
    t *= blocks;
    if (head)
        t += sgemm_seconds(r, rows, m->vocab_size, m->dim) + rows * (double)m->vocab_size / r->dexp_rate;
    return t;
}

/* ---- memory (bytes), today's code --------------------------------------- */

double aq_plan_model_bytes(const aq_llama_config *m)
{
    double emb = (double)m->vocab_size * m->dim * (m->tied_embeddings ? 1 : 2);
    double norms = (double)m->n_layers * 2 * m->dim + m->dim;
    double rope = (double)m->max_seq_len * aq_llama_head_dim(m); /* cos + sin, hs/2 each */
    return 4 * (emb + norms + rope + (double)m->n_layers * block_params(m));
}

static double scratch_bytes(const aq_llama_config *m, double rows, double seq)
{
    int hs = aq_llama_head_dim(m), qd = m->n_heads * hs, kvd = m->n_kv_heads * hs;
    double per_row = 3.0 * m->dim + 2.0 * qd + 2.0 * kvd + 3.0 * m->hidden_dim + (qd > m->hidden_dim ? qd - m->hidden_dim : 0);
    return rows * (per_row * 4 + 4) + seq * seq * 4;
}

/* One block's capture statistics (4 points): Gram (d+1)^2 f64, min/max, the row sample. */
double aq_plan_capture_block_bytes(const aq_llama_config *m, int sample_rows)
{
    int hs = aq_llama_head_dim(m);
    double d[4] = {m->dim, (double)m->n_heads * hs, m->dim, m->hidden_dim}, b = 0;
    for (int k = 0; k < 4; k++) b += 8 * (d[k] + 1) * (d[k] + 1) + 8 * d[k] + (double)sample_rows * (4 * d[k] + 8);
    return b;
}

/* Working bytes of one AdaQuant task (layer.c, state.c, gptq.c, stage_calibrate.c):
 * the statistics read (Gram D^2 f64 + the compressed file), A normalised
 * (D^2 f64), Cf (D^2 f32), GPTQ's H and Hd (2 d_in^2 f64) during the start,
 * the layer state (5 f64 + 2 f32 arrays of d_out D, V f32 and codes of
 * d_out d_in), two snapshots, the result, and with --init best the second
 * run's result alongside the first; the KL's dequantised weight (f32). */
double aq_plan_task_bytes(int d_out, int d_in, int init_best)
{
    double D = (double)d_in + 1, nw = (double)d_out * d_in, ne = (double)d_out * D;
    double gram = 8 * D * D;
    return 2 * gram + gram + 4 * D * D + 16.0 * d_in * d_in + ne * (5 * 8 + 2 * 4) + nw * (4 + 1 + 2 + 1 + 4) +
           (init_best ? nw : 0);
}

/* ---- phases -------------------------------------------------------------- */

static double ceil_div(double a, double b) { return ceil(a / b); }

static double load_seconds(const aq_plan_input *in, const aq_plan_rates *r, double model_bytes)
{
    double file = in->model_file_bytes > 0 ? in->model_file_bytes : model_bytes / 2;
    return file / in->read_rate + model_bytes / r->touch_rate;
}

static void phase_capture(const aq_plan_input *in, const aq_plan_rates *r, aq_plan *p)
{
    const aq_llama_config *m = &in->m;
    const aq_pipe_cfg *c = in->cfg;
    double T = c->seq_len, cw = c->chunk_windows > 0 ? c->chunk_windows : CAP_CHUNK_DEFAULT;
    double nch = ceil_div(c->windows, cw), cmax = ceil_div(nch, in->ranks), rows = cw * T;
    int hs = aq_llama_head_dim(m);
    double d[4] = {m->dim, (double)m->n_heads * hs, m->dim, m->hidden_dim};
    double gram = 0, gbytes = 0;
    for (int k = 0; k < 4; k++) {
        gram += rows * (d[k] + 1) * (d[k] + 1) / aq_plan_rate_at(r->dsyrk, d[k] + 1);
        gbytes += 8 * (d[k] + 1) * (d[k] + 1);
    }
    double cap = aq_plan_capture_block_bytes(m, c->sample_rows);
    /* the streaming capture (stage_capture.c): block by block, each rank runs
     * block b ONCE on its chunks from the residual it holds, accumulates the
     * Grams and packs its partials; the owner (rank b mod P) merges every
     * chunk's partial and writes 4 statistics files, stored uncompressed with
     * a CRC (a copy into the file image and one to disk); every rank then
     * checkpoints its residual rows (float32, one copy and one write) */
    double chunk = fwd_seconds(m, r, rows, cw * T * T, 1, 0) + gram + cap / r->touch_rate;
    double owner = nch * 2 * cap / r->touch_rate + 2 * cap / r->touch_rate + cap / in->read_rate;
    double resid = 4 * rows * m->dim * (1 / r->touch_rate + 1 / in->read_rate);
    double per_chunk_blocks = m->n_layers * (cmax * (chunk + resid) + owner);
    double work_blocks = m->n_layers * (nch * (chunk + resid) + owner);
    double load = load_seconds(in, r, p->model_bytes);
    aq_plan_phase *ph = &p->ph[AQ_PLAN_CAPTURE];
    ph->seconds = load + per_chunk_blocks;
    ph->work = load + work_blocks;
    /* the unit of work is a chunk; with P > chunks the extra ranks idle */
    ph->lower_bound = load + work_blocks / (in->ranks < nch ? in->ranks : nch);
    ph->mem = p->model_bytes + scratch_bytes(m, rows, T) + 4 * c->windows * T + (cmax + 3) * cap + 2 * gbytes / 4;
}

/* GEMM-bound seconds of one aq_layer_run at (d_out, d_in) (layer.c,
 * state.c, polish.c, gptq.c): the float32 Gram-form product of every Adam
 * iteration; float64 products d_out x D x D for the exact loss (every
 * eval_every iterations), the state set-up (2), each polishing call (its
 * passes + 1: 3 per start, 3 per round) and GPTQ's update (1); GPTQ's
 * factorisation (about 2/3 D^3 at the potrf rate). */
static double layer_gemm_seconds(const aq_plan_rates *r, double o, double D, int iters, int starts, int polish,
                                 int gptq)
{
    double g = 2 * o * D * D;
    double n_d = iters / 10.0 + 2 + 4.0 * starts + 4.0 * polish + (gptq ? 1 : 0);
    double t = iters * (r->probe && g < 3e8 ? r->probe(r->probe_ctx, o, D, D) : g / aq_plan_rate_at(r->sgemm, mind3(o, D, D)));
    t += n_d * g / aq_plan_rate_at(r->dgemm, mind3(o, D, D));
    if (gptq) t += 2.0 / 3 * (D - 1) * (D - 1) * (D - 1) / (r->potrf * 1e9);
    return t;
}

/* Seconds of one aq_layer_run (gptq or rtn start) at (d_out, d_in): the
 * GEMM-bound part above, plus the scalar work (Adam's element-wise updates,
 * rounding, the polishing's code moves), modelled as c1 d_out D + c2 d_out D^2
 * and fitted exactly to what the two measured runs spent beyond their own
 * GEMM-bound part (docs/PLAN.md). */
static double layer_run_seconds(const aq_plan_rates *r, int d_out, int d_in, int gptq)
{
    int it = r->aq_iters, st = r->aq_starts, po = r->aq_polish;
    double x1[2], x2[2], t[2];
    for (int k = 0; k < 2; k++) {
        double o = r->aq_shape[k][0], D = r->aq_shape[k][1] + 1.0;
        double g = layer_gemm_seconds(r, o, D, it, st, po, gptq), meas = gptq ? r->aq_gptq[k] : r->aq_rtn[k];
        x1[k] = o * D, x2[k] = o * D * D, t[k] = meas > g ? meas - g : 0;
    }
    double det = x1[0] * x2[1] - x1[1] * x2[0];
    double c1 = (t[0] * x2[1] - t[1] * x2[0]) / det, c2 = (x1[0] * t[1] - x1[1] * t[0]) / det;
    if (c1 < 0) c1 = 0, c2 = t[1] / x2[1];
    if (c2 < 0) c2 = 0, c1 = t[1] / x1[1];
    double o = d_out, D = d_in + 1.0;
    return layer_gemm_seconds(r, o, D, it, st, po, gptq) + c1 * o * D + c2 * o * D * D;
}

/* Seconds of task (layer of block b, kind w, option k). */
static double task_seconds(const aq_plan_input *in, const aq_plan_rates *r, int b, int w, int a_bits, int outer)
{
    const aq_llama_config *m = &in->m;
    const aq_pipe_cfg *c = in->cfg;
    int o, i;
    lin_shape(m, w, &o, &i);
    double mult = a_bits < 16 ? outer : 1;
    double stats = 8.0 * (i + 1) * (i + 1) + (double)c->sample_rows * 4 * i;
    double t = stats * (1 / in->read_rate + 2 / r->touch_rate); /* stored with a CRC: read, check, copy out */
    int runs = c->init_gptq == 2 ? 2 : 1;
    if (c->init_gptq != 0) t += mult * layer_run_seconds(r, o, i, 1);
    if (c->init_gptq != 1) t += mult * layer_run_seconds(r, o, i, 0);
    if (c->kl_windows > 0) {
        double K = c->kl_windows < c->windows ? c->kl_windows : c->windows, T = c->seq_len;
        /* the quantized layer's block and every later one, the head, the KL against cached FP log-probs */
        t += runs * fwd_seconds(m, r, K * T, K * T * T, m->n_layers - b, 1);
    }
    return t;
}

/* Seconds of a task on a sub-grid of q ranks (coop_run.c, docs/COOP.md):
 * every member reads the whole statistics; the Gram-form products (PSGEMM),
 * GPTQ's factor (PDPOTRF/PDTRTRI) and the per-row work (rounding, Adam,
 * polishing) split by q; the communication is PSGEMM's broadcast of the
 * float32 Gram's column panels in every iteration and, per polishing call,
 * the gather of the float64 Gram every member polishes against (intra-node
 * MPI: a copy in and out at the measured memory rate); the KL of the result
 * is split over the group by windows (stage_calibrate.c's coop_kl). */
static double coop_task_seconds(const aq_plan_input *in, const aq_plan_rates *r, int b, int w, int a_bits,
                                int outer, int q)
{
    const aq_pipe_cfg *c = in->cfg;
    int o, i;
    lin_shape(&in->m, w, &o, &i);
    double D = i + 1.0, share = (q - 1.0) / q;
    double stats = 8.0 * D * D + (double)c->sample_rows * 4 * i;
    double t = stats * (1 / in->read_rate + 2 / r->touch_rate);
    /* bytes, and the latency of the collectives: per iteration the PSGEMM
     * panels and the keep-best/status reductions, per start and polishing
     * round a gather, plus the grid's set-up (assumed, not measured) */
    double calls = c->iters * (D / 64 + 3) + (c->starts + c->polish) * 4 + COOP_SETUP_CALLS;
    double comm = (c->iters * 4 * D * D + (c->starts + c->polish) * 8 * D * D) * share * 2 / r->touch_rate +
                  calls * COOP_LATENCY;
    double mult = a_bits < 16 ? outer : 1;
    int runs = c->init_gptq == 2 ? 2 : 1;
    if (c->init_gptq != 0) t += mult * (layer_run_seconds(r, o, i, 1) / q + comm);
    if (c->init_gptq != 1) t += mult * (layer_run_seconds(r, o, i, 0) / q + comm);
    if (c->kl_windows > 0) {
        double K = c->kl_windows < c->windows ? c->kl_windows : c->windows, T = c->seq_len;
        K = ceil(K / q); /* split over the group: the member with the most windows */
        t += runs * fwd_seconds(&in->m, r, K * T, K * T * T, in->m.n_layers - b, 1);
    }
    return t;
}

/* An earlier run's per-task seconds (aq_plan_measured) replace the model's
 * for the tasks they name; the others are scaled by measured / predicted over
 * those (the model's error on this machine and model). */
static void use_measured(const aq_plan_measured *m, const aq_pipe_plan *tp, double *secs, aq_plan *p,
                         double *total, double *longest)
{
    double pred = 0, meas = 0;
    signed char *hit = calloc(tp->n_tasks ? tp->n_tasks : 1, 1);
    if (!hit) return; /* the model alone */
    for (size_t t = 0; t < tp->n_tasks; t++)
        for (size_t j = 0; j < m->n && !hit[t]; j++) {
            double v = m->have_cpu ? m->cpu[j] : m->seconds[j]; /* CPU seconds when the file has them */
            if (v > 0 && !strcmp(m->layer[j], tp->tasks[t].layer) && !strcmp(m->option[j], tp->tasks[t].option)) {
                hit[t] = 1, pred += secs[t], meas += v, secs[t] = v;
                p->n_measured++;
            }
        }
    p->measured_scale = pred > 0 && meas > 0 ? meas / pred : 1;
    *total = *longest = 0;
    for (size_t t = 0; t < tp->n_tasks; t++) {
        if (!hit[t]) secs[t] *= p->measured_scale;
        *total += secs[t];
        *longest = secs[t] > *longest ? secs[t] : *longest;
    }
    free(hit);
}

static void phase_calibrate(const aq_plan_input *in, const aq_plan_rates *r, const aq_pipe_plan *tp, aq_plan *p,
                            double *secs)
{
    const aq_pipe_cfg *c = in->cfg;
    double total = 0, longest = 0;
    for (size_t t = 0; t < tp->n_tasks; t++) {
        const aq_dist_task *k = &tp->tasks[t];
        if (k->layer_index >= tp->n_layers) {
            /* the tensor menu (embedding, untied classifier): round-to-nearest,
             * then, with a KL loss, one pass of the whole network */
            double K = c->kl_windows < c->windows ? c->kl_windows : c->windows, T = c->seq_len;
            secs[t] = c->kl_windows > 0 ? fwd_seconds(&in->m, r, K * T, K * T * T, in->m.n_layers, 1) : 0;
            total += secs[t];
            longest = secs[t] > longest ? secs[t] : longest;
            continue;
        }
        const aq_pipe_layer *L = &tp->layers[k->layer_index];
        aq_layer_opts o;
        aq_layer_opts_default(&o);
        aq_layer_opts_parse(k->option, &o, NULL);
        secs[t] = task_seconds(in, r, L->block, L->which, o.a_bits, o.outer_iters);
        total += secs[t];
        longest = secs[t] > longest ? secs[t] : longest;
    }
    if (in->measured) use_measured(in->measured, tp, secs, p, &total, &longest);
    p->task_total = total;
    p->task_longest = longest;
    double setup = load_seconds(in, r, p->model_bytes);
    if (c->kl_windows > 0) {
        double K = c->kl_windows < c->windows ? c->kl_windows : c->windows, T = c->seq_len;
        setup += fwd_seconds(&in->m, r, K * T, K * T * T, in->m.n_layers, 1); /* aq_sens_new's FP pass */
    }
    aq_plan_phase *ph = &p->ph[AQ_PLAN_CALIBRATE];
    ph->work = setup + total;
    double lb = total / in->ranks > longest ? total / in->ranks : longest;
    ph->lower_bound = setup + lb;
    double K = c->kl_windows < c->windows ? c->kl_windows : c->windows, rows = K * c->seq_len;
    double V = in->m.vocab_size, sens = c->kl_windows > 0
        ? rows * in->m.dim * in->m.n_layers * 4 + 2 * rows * V * 8 + 4096 * V * 4 + scratch_bytes(&in->m, 4096, c->seq_len)
        : 0;
    double task_mem = 0;
    for (int w = 0; w < AQ_LIN_COUNT; w++)
        task_mem = p->cls[w].mem > task_mem ? p->cls[w].mem : task_mem;
    ph->mem = p->model_bytes + sens + task_mem;
}

static void phase_tune_eval(const aq_plan_input *in, const aq_plan_rates *r, aq_plan *p)
{
    const aq_llama_config *m = &in->m;
    const aq_pipe_out *o = in->out;
    double lin_bytes = 4 * p->params; /* the installed overrides: dequantised copies of every linear */
    double load = load_seconds(in, r, p->model_bytes) + lin_bytes / r->inflate_rate;
    aq_plan_phase *tu = &p->ph[AQ_PLAN_TUNE], *ev = &p->ph[AQ_PLAN_EVAL];
    if (o->tune.steps > 0 && in->tune.n > 0) {
        double per_doc = in->tune.tokens / in->tune.n, sq_doc = in->tune.sq / in->tune.n;
        double chunk_docs = AQ_TUNE_CHUNK, nch = ceil_div(o->tune.batch, chunk_docs), cmax = ceil_div(nch, in->ranks);
        double chunk = TUNE_FWD_EQUIV * fwd_seconds(m, r, chunk_docs * per_doc, chunk_docs * sq_doc,
                                                    m->n_layers, 1);
        tu->seconds = o->tune.steps * cmax * chunk;
        tu->work = o->tune.steps * nch * chunk;
        tu->lower_bound = tu->work / (in->ranks < nch ? in->ranks : nch);
        double rows = chunk_docs * o->tune.max_len, hs = aq_llama_head_dim(m);
        double acts = m->n_layers * (4.0 * m->dim + 4 * m->n_heads * hs / 2 + 2.0 * m->n_kv_heads * hs + 3.0 * m->hidden_dim);
        double bwd = 2.0 * m->dim + 2 * (m->hidden_dim > m->dim ? m->hidden_dim : m->dim) + 3.0 * m->hidden_dim +
                     2.0 * m->n_heads * hs + 2.0 * m->n_kv_heads * hs;
        tu->mem = p->model_bytes + lin_bytes + rows * (acts + 2.0 * m->vocab_size + bwd) * 4 +
                  2.0 * o->tune.max_len * o->tune.max_len * 4 + scratch_bytes(m, rows, o->tune.max_len);
    }
    if (!o->no_eval && in->eval.n > 0) {
        double nch = ceil_div(in->eval.n, AQ_EVAL_CHUNK), cmax = ceil_div(nch, in->ranks);
        double per_doc = in->eval.tokens / in->eval.n, sq_doc = in->eval.sq / in->eval.n;
        /* FP and quantized forwards of each chunk */
        double chunk = 2 * fwd_seconds(m, r, AQ_EVAL_CHUNK * per_doc, AQ_EVAL_CHUNK * sq_doc, m->n_layers, 1);
        ev->seconds = cmax * chunk;
        ev->work = nch * chunk;
        ev->lower_bound = ev->work / (in->ranks < nch ? in->ranks : nch);
        double rows = AQ_EVAL_CHUNK * (double)o->eval_len;
        ev->mem = p->model_bytes + lin_bytes + scratch_bytes(m, rows, o->eval_len) + rows * m->vocab_size * 4;
    }
    /* every rank loads the model and the chosen result files before tuning */
    tu->seconds += load, tu->work += load, tu->lower_bound += load;
    if (tu->mem == 0) tu->mem = p->model_bytes + lin_bytes;
    if (ev->mem == 0) ev->mem = p->model_bytes + lin_bytes;
}

static void phase_solve_write(const aq_plan_input *in, const aq_plan_rates *r, aq_plan *p)
{
    aq_plan_phase *so = &p->ph[AQ_PLAN_ALLOCATE], *wr = &p->ph[AQ_PLAN_WRITE];
    so->seconds = so->work = so->lower_bound = (double)p->n_tasks * SOLVE_SEC_PER_ROW;
    so->mem = (double)p->n_tasks * 256;
    /* rank 0 packs and writes the quantized weights (about params x 4.5 bits) and the embeddings */
    double out = p->params * 4.5 / 8 + (p->model_params - p->params) * 4;
    wr->seconds = wr->work = wr->lower_bound = out / in->read_rate + out / r->touch_rate;
    wr->mem = p->model_bytes + 4 * p->params + out;
}

/* ---- the schedule ----------------------------------------------------- */

aq_status aq_plan_schedule(const double *cost, const double *seconds, size_t n, int ranks, double setup,
                           double *makespan, aq_error *err)
{
    aq_dist_options opt;
    aq_dist_options_default(&opt, "");
    aq_dist_schedule s;
    AQ_TRY(aq_dist_schedule_build(cost, NULL, n, ranks, opt.tail_fraction, &s, err));
    double *busy = malloc((size_t)ranks * sizeof *busy);
    if (!busy) {
        aq_dist_schedule_free(&s);
        return aq_fail_nomem(err, "plan schedule", (size_t)ranks * sizeof *busy);
    }
    for (int q = 0; q < ranks; q++) {
        busy[q] = setup;
        for (size_t j = s.start[q]; j < s.start[q + 1]; j++) busy[q] += seconds[s.list[j]];
    }
    /* the tail queue, in its order, to whichever rank asks first (the first free one) */
    for (size_t j = 0; j < s.n_tail; j++) {
        int best = 0;
        for (int q = 1; q < ranks; q++)
            if (busy[q] < busy[best]) best = q;
        busy[best] += seconds[s.tail[j]];
    }
    double mk = 0;
    for (int q = 0; q < ranks; q++) mk = busy[q] > mk ? busy[q] : mk;
    *makespan = mk;
    free(busy);
    aq_dist_schedule_free(&s);
    return AQ_OK;
}

static void fill_classes(const aq_plan_input *in, const aq_pipe_plan *tp, const double *secs, aq_plan *p)
{
    const aq_pipe_cfg *c = in->cfg;
    for (int w = 0; w < AQ_LIN_COUNT; w++) {
        aq_plan_class *k = &p->cls[w];
        k->name = lin_names[w];
        lin_shape(&in->m, w, &k->d_out, &k->d_in);
        k->flops = 2.0 * k->d_out * (k->d_in + 1.0) * (k->d_in + 1.0) * c->iters;
        k->mem = aq_mem_task_bytes(c, &in->m, k->d_out, k->d_in, 1); /* memory.h: the pipeline's own bound */
        k->seconds_min = INFINITY;
    }
    p->total_flops = 0;
    for (size_t t = 0; t < tp->n_lin_tasks; t++) { /* the linears; the tensor menu's tasks follow them */
        const aq_pipe_layer *L = &tp->layers[tp->tasks[t].layer_index];
        aq_plan_class *k = &p->cls[L->which];
        aq_layer_opts o;
        aq_layer_opts_default(&o);
        aq_layer_opts_parse(tp->tasks[t].option, &o, NULL);
        p->total_flops += k->flops * (o.a_bits < 16 ? o.outer_iters : 1);
        k->seconds_min = secs[t] < k->seconds_min ? secs[t] : k->seconds_min;
        k->seconds_max = secs[t] > k->seconds_max ? secs[t] : k->seconds_max;
    }
}

/* The cooperative phase's makespan: the groups of Q ranks take the chosen
 * tasks by LPT on the scheduler's cost, as coop_sched.c does (the P mod Q
 * other ranks wait), csecs[] their seconds on Q ranks. */
static aq_status coop_phase(const double *cost, const double *csecs, const unsigned char *coop, size_t n, int groups,
                            double *mk, aq_error *err)
{
    unsigned char *skip = malloc(n ? n : 1);
    int *owner = malloc((n ? n : 1) * sizeof *owner);
    double *load = calloc((size_t)groups, sizeof *load);
    aq_status st = skip && owner && load ? AQ_OK : aq_fail_nomem(err, "plan cooperative phase", n * 8);
    for (size_t t = 0; st == AQ_OK && t < n; t++) skip[t] = !coop[t];
    if (st == AQ_OK) st = aq_dist_lpt(cost, skip, n, groups, owner, NULL, err);
    for (size_t t = 0; st == AQ_OK && t < n; t++)
        if (coop[t]) load[owner[t]] += csecs[t];
    *mk = 0;
    for (int g = 0; st == AQ_OK && g < groups; g++) *mk = load[g] > *mk ? load[g] : *mk;
    free(skip);
    free(owner);
    free(load);
    return st;
}

/* The P mod Q ranks outside every group during the cooperative phase (as
 * coop_sched.c's run_idle): the single-rank tasks by cost ascending, dealt
 * round-robin, each rank running its next one while the groups work (at least
 * one: it tests for the phase's end after each task). Marks them in early[]
 * and returns when the phase ends: the groups' end or a spare rank's last
 * task's, whichever is later. */
static aq_status spare_ranks(const double *cost, const double *secs, const unsigned char *coop, size_t n, int spare,
                             double groups_end, unsigned char *early, double *end, aq_error *err)
{
    *end = groups_end;
    if (spare <= 0) return AQ_OK;
    double *neg = malloc((n ? n : 1) * sizeof *neg);
    if (!neg) return aq_fail_nomem(err, "plan spare ranks", n * 8);
    for (size_t i = 0; i < n; i++) neg[i] = -cost[i];
    size_t nk = 0, *k = aq_dist_by_cost(neg, coop, n, &nk);
    free(neg);
    if (!k) return aq_fail_nomem(err, "plan spare ranks", n * 8);
    for (int r = 0; r < spare; r++) {
        double t = 0;
        for (size_t j = (size_t)r; j < nk; j += (size_t)spare) {
            early[k[j]] = 1;
            t += secs[k[j]];
            if (t >= groups_end) break;
        }
        *end = t > *end ? t : *end;
    }
    free(k);
    return AQ_OK;
}

/* With --coop-ranks Q (Q <= P): the tasks the calibrate stage's own rule
 * (coop_sched.h: cost, --max-rank-memory = the plan's memory per rank) runs
 * on sub-grids, their seconds there, and the calibrate phase as two phases:
 * the cooperative one, then every rank on the rest (LPT + dynamic tail). A
 * task that fits no rank and no sub-grid is the pick's error. */
static aq_status schedule_coop(const aq_plan_input *in, const aq_plan_rates *r, const aq_pipe_plan *tp,
                               const double *cost, const double *secs, double setup, aq_plan *p, aq_error *err)
{
    int q = in->cfg->coop_ranks;
    p->coop_ranks = q;
    if (q <= 1 || q > in->ranks) return AQ_OK; /* printed: needs P >= Q */
    for (int w = 0; w < AQ_LIN_COUNT; w++) p->cls[w].coop_time = p->cls[w].coop_mem = 0;
    aq_pipe_cfg *cl = malloc(sizeof *cl);
    if (!cl) return aq_fail_nomem(err, "plan settings", sizeof *cl);
    *cl = *in->cfg;
    if (!(cl->max_rank_memory > 0)) cl->max_rank_memory = in->mem_per_rank;
    aq_coop_sched cs;
    aq_status st = aq_coop_sched_pick(cl, tp, &in->m, tp->tasks, tp->n_tasks, in->ranks, NULL, &cs, err);
    free(cl);
    AQ_TRY(st);
    size_t n = tp->n_tasks, m = 0;
    double *cs_secs = calloc(n ? n : 1, sizeof *cs_secs), *rc = malloc((n ? n : 1) * sizeof *rc);
    double *rs = malloc((n ? n : 1) * sizeof *rs), longest = 0, rest = 0;
    unsigned char *early = calloc(n ? n : 1, 1);
    st = cs_secs && rc && rs && early ? AQ_OK : aq_fail_nomem(err, "plan cooperative tasks", n * 25);
    for (size_t t = 0; st == AQ_OK && t < n; t++) {
        double eff = secs[t];
        if (cs.coop[t]) {
            const aq_pipe_layer *L = &tp->layers[tp->tasks[t].layer_index];
            aq_layer_opts o;
            aq_layer_opts_default(&o);
            aq_layer_opts_parse(tp->tasks[t].option, &o, NULL);
            eff = cs_secs[t] = p->measured_scale * coop_task_seconds(in, r, L->block, L->which, o.a_bits,
                                                                     o.outer_iters, q);
            aq_plan_class *k = &p->cls[L->which];
            k->coop_time = 1;
            k->coop_seconds = cs_secs[t] > k->coop_seconds ? cs_secs[t] : k->coop_seconds;
        }
        longest = eff > longest ? eff : longest;
    }
    p->n_coop_tasks = (int)cs.n_coop;
    if (st == AQ_OK) st = coop_phase(cost, cs_secs, cs.coop, n, in->ranks / q, &p->coop_phase, err);
    if (st == AQ_OK)
        st = spare_ranks(cost, secs, cs.coop, n, in->ranks % q, p->coop_phase, early, &p->coop_phase, err);
    for (size_t t = 0; st == AQ_OK && t < n; t++)
        if (!cs.coop[t] && !early[t]) rc[m] = cost[t], rs[m++] = secs[t];
    p->n_spare_tasks = 0;
    for (size_t t = 0; st == AQ_OK && t < n; t++) p->n_spare_tasks += early[t];
    if (st == AQ_OK && m) st = aq_plan_schedule(rc, rs, m, in->ranks, 0, &rest, err);
    if (st == AQ_OK) {
        aq_plan_phase *ph = &p->ph[AQ_PLAN_CALIBRATE];
        ph->seconds = setup + p->coop_phase + rest;
        p->task_longest = longest;
        double share = p->task_total / in->ranks;
        ph->lower_bound = setup + (share > longest ? share : longest);
    }
    free(cs_secs);
    free(rc);
    free(rs);
    free(early);
    aq_coop_sched_free(&cs);
    return st;
}

static void mark_coop(const aq_plan_input *in, aq_plan *p)
{
    double share = p->task_total / in->ranks;
    p->n_coop_tasks = 0;
    for (int w = 0; w < AQ_LIN_COUNT; w++) {
        aq_plan_class *k = &p->cls[w];
        k->coop_time = in->ranks > 1 && k->seconds_max > share;
        k->coop_mem = in->mem_per_rank > 0 && k->mem > in->mem_per_rank;
        if (k->coop_time || k->coop_mem) p->n_coop_tasks += in->m.n_layers * p->n_options;
    }
}

static aq_status check_input(const aq_plan_input *in, const aq_plan_rates *r, aq_error *err)
{
    const aq_llama_config *m = &in->m;
    if (in->ranks < 1) return aq_fail(err, AQ_ERR_ARG, "plan: the rank count must be >= 1, not %d", in->ranks);
    if (m->dim < 1 || m->hidden_dim < 1 || m->n_layers < 1 || m->n_heads < 1 || m->n_kv_heads < 1 ||
        m->vocab_size < 1)
        return aq_fail(err, AQ_ERR_ARG, "plan: the model config has an empty shape (hidden_size %d, "
                       "intermediate_size %d, layers %d, heads %d/%d, vocab %d)", m->dim, m->hidden_dim,
                       m->n_layers, m->n_heads, m->n_kv_heads, m->vocab_size);
    if (!(in->read_rate > 0) || !(r->touch_rate > 0) || !(r->exp_rate > 0) || !(r->elem_rate > 0) ||
        !(r->dexp_rate > 0) || !(r->softmax_rate > 0) ||
        !(r->inflate_rate > 0) || !(r->deflate_rate > 0) || !(r->aq_shape[0][0] > 0) || !(r->aq_shape[1][1] > r->aq_shape[0][1]))
        return aq_fail(err, AQ_ERR_ARG, "plan: missing or zero kernel rates (re-measure with --calibrate)");
    return AQ_OK;
}

/* The per-rank peaks of the pipeline's own bound (memory.h, docs/MEMORY.md:
 * the lazy model, each linear where it runs), the process base left out:
 * capture, calibrate, and the write stage's for tune, eval and write. The
 * plan's memory per rank is the bound the cooperative choice reads. */
static aq_status memory_per_phase(const aq_plan_input *in, aq_plan *p, aq_error *err)
{
    aq_pipe_cfg *cl = malloc(sizeof *cl);
    if (!cl) return aq_fail_nomem(err, "plan settings", sizeof *cl);
    *cl = *in->cfg;
    if (!(cl->max_rank_memory > 0)) cl->max_rank_memory = in->mem_per_rank;
    if (cl->coop_ranks > in->ranks) cl->coop_ranks = 0; /* no sub-grid at this P */
    aq_mem_pred mp;
    aq_mem_predict(cl, &in->m, in->out, in->ranks, 0, &mp);
    p->ph[AQ_PLAN_CAPTURE].mem = mp.phase[AQ_MEM_CAPTURE];
    p->ph[AQ_PLAN_CALIBRATE].mem = mp.phase[AQ_MEM_CALIBRATE];
    p->ph[AQ_PLAN_TUNE].mem = p->ph[AQ_PLAN_EVAL].mem = p->ph[AQ_PLAN_WRITE].mem = mp.phase[AQ_MEM_WRITE];
    free(cl);
    return AQ_OK;
}

aq_status aq_plan_compute(const aq_plan_input *in, const aq_plan_rates *r, aq_plan *p, aq_error *err)
{
    memset(p, 0, sizeof *p);
    p->measured_scale = 1;
    AQ_TRY(check_input(in, r, err));
    aq_pipe_plan tp;
    AQ_TRY(aq_pipe_plan_build_config(in->cfg, &in->m, &tp, err));
    double *secs = calloc(tp.n_tasks ? tp.n_tasks : 1, sizeof *secs);
    double *cost = malloc((tp.n_tasks ? tp.n_tasks : 1) * sizeof *cost);
    if (!secs || !cost) {
        free(secs);
        free(cost);
        aq_pipe_plan_free(&tp);
        return aq_fail_nomem(err, "plan task table", tp.n_tasks * 16);
    }
    p->ranks = in->ranks;
    p->n_layers = tp.n_layers;
    p->n_options = in->cfg->n_options;
    p->n_tasks = tp.n_tasks;
    p->params = (double)in->m.n_layers * block_params(&in->m);
    p->model_bytes = aq_plan_model_bytes(&in->m);
    p->model_params = p->model_bytes / 4;
    phase_capture(in, r, p);
    fill_classes(in, &tp, secs, p); /* memory first: calibrate's peak uses it */
    phase_calibrate(in, r, &tp, p, secs);
    fill_classes(in, &tp, secs, p);
    for (size_t t = 0; t < tp.n_tasks; t++) cost[t] = tp.tasks[t].cost;
    double setup = p->ph[AQ_PLAN_CALIBRATE].work - p->task_total;
    aq_status st = aq_plan_schedule(cost, secs, tp.n_tasks, in->ranks, setup, &p->ph[AQ_PLAN_CALIBRATE].seconds, err);
    /* issue 14 item 2: the same scheduler fed the predicted seconds instead of its flop-like estimate */
    if (st == AQ_OK) st = aq_plan_schedule(secs, secs, tp.n_tasks, in->ranks, setup, &p->calibrate_by_seconds, err);
    if (st == AQ_OK) mark_coop(in, p);
    if (st == AQ_OK && in->cfg->coop_ranks > 1) st = schedule_coop(in, r, &tp, cost, secs, setup, p, err);
    free(secs);
    free(cost);
    aq_pipe_plan_free(&tp);
    AQ_TRY(st);
    phase_solve_write(in, r, p);
    phase_tune_eval(in, r, p);
    AQ_TRY(memory_per_phase(in, p, err));
    double work = 0;
    for (int k = 0; k < AQ_PLAN_NPHASES; k++) {
        aq_plan_phase *ph = &p->ph[k];
        p->makespan += ph->seconds;
        p->lower_bound += ph->lower_bound;
        work += ph->work;
        p->peak_mem = ph->mem > p->peak_mem ? ph->mem : p->peak_mem;
    }
    p->efficiency = p->makespan > 0 ? work / (in->ranks * p->makespan) : 1;
    p->fits = !(in->mem_per_rank > 0) || p->peak_mem <= in->mem_per_rank;
    return AQ_OK;
}
