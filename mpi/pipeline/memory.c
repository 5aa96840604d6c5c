/* memory.c — the per-rank memory bound (memory.h; the formula and what each
 * term stands for: docs/MEMORY.md). Every term is an upper estimate of an
 * allocation the phase makes, in bytes, from the config and the settings;
 * the measured peaks (getrusage) are printed beside it in the report. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../../src/model/block_loss.h"
#include "coop.h"
#include "memory.h"
#include "pipeline.h"
#include "stage_tune.h"

#define AQ_MEM_RUNTIME (24.0 * 1024 * 1024)

static const char *const phase_names[AQ_MEM_PHASES] = {"capture", "calibrate", "write (tune, eval)"};

const char *aq_mem_phase_name(int phase)
{
    return phase >= 0 && phase < AQ_MEM_PHASES ? phase_names[phase] : "?";
}

/* The model's geometry, in doubles (the products overflow int). */
typedef struct geo {
    double D, H, Q, K, V, L, hs, seq, dmax;
    double wb; /* one block's F32 weights (norms, 7 linears, biases, q/k norms) */
    double wr; /* the rest: embedding, classifier unless tied, final norm, RoPE tables */
} geo;

static geo geometry(const aq_llama_config *mc)
{
    geo g;
    g.hs = aq_llama_head_dim(mc);
    g.D = mc->dim, g.H = mc->hidden_dim, g.V = mc->vocab_size, g.L = mc->n_layers, g.seq = mc->max_seq_len;
    g.Q = mc->n_heads * g.hs, g.K = mc->n_kv_heads * g.hs;
    g.dmax = fmax(g.D, fmax(g.Q, g.H));
    double bias = (mc->qkv_bias ? g.Q + 2 * g.K : 0) + (mc->o_bias ? g.D : 0) + (mc->mlp_bias ? 2 * g.H + g.D : 0);
    g.wb = 4 * (2 * g.D + 2 * g.Q * g.D + 2 * g.K * g.D + 3 * g.H * g.D + bias + (mc->qk_norm ? 2 * g.hs : 0));
    g.wr = 4 * (g.V * g.D * (mc->tied_embeddings ? 1 : 2) + g.D + g.seq * g.hs);
    return g;
}

/* The forward's scratch for n rows of sequences up to seq long (forward.c aq_scratch). */
static double scratch(const geo *g, double n, double seq, double nseq)
{
    return 4 * n * (3 * g->D + 2 * g->Q + 2 * g->K + 2 * g->H + g->dmax + 1) + 4 * seq * seq + 8 * nseq;
}

/* One capture point's statistics of width d (capture.c alloc_stat; x3 in sequential mode). */
static double stat(double d, double rows, int seq_mode)
{
    double s = 8 * (d + 1) * (d + 1) + 4 * rows * d + 8 * rows + 8 * d;
    return seq_mode ? 3 * s : s;
}

static double capture_bytes(const geo *g, const aq_pipe_cfg *c, int P)
{
    /* rows are sampled only for a menu that quantizes activations */
    double T = c->seq_len, C = c->chunk_windows, R = aq_pipe_menu_quantizes_acts(c) ? c->sample_rows : 0;
    double nc = C * T, k = c->sequential ? 2 : 1;
    double chunks = ceil((double)c->windows / C), mine = ceil(chunks / P);
    double dims[4] = {g->D, g->D, g->Q, g->H}, blk = 0, half = 0, slop = 0;
    for (int i = 0; i < 4; i++) {
        blk += stat(dims[i], R, c->sequential);
        half += k * 4 * (dims[i] + 1) * (dims[i] + 1); /* the upper halves of its symmetric Grams */
        slop += k * 4096 * (dims[i] + 1);              /* a partly written page per Gram row */
    }
    double lo = blk - half, rows = fmin(mine * C, c->windows) * T; /* this rank's share of the tokens */
    double dm = g->dmax + 1, img = stat(g->dmax, R, c->sequential) - k * 4 * dm * dm;
    /* the capture command drops the classifier at once and the embedding
     * after block 0, before the first file image exists (the sequential pass
     * keeps both) */
    double emb = 4 * g->V * g->D, rest = c->sequential ? g->wr + img : 4 * (g->D + g->seq * g->hs) +
                                                                           fmax(emb, img);
    /* the lazy model: the rest and the block being captured, with one
     * tensor's mapped source in flight (2 bytes/weight); this rank's residual
     * stream at the block boundary (two in sequential mode: FP and quantized
     * upstream); one chunk's forward and its float64 row copies; the block's
     * statistics, each symmetric Gram at half size: one partial per chunk of
     * this rank (lower triangles in whole storage, the upper halves never
     * touched), the merge's packed total (the background writer writes it
     * and hands it back), one packed partial in flight (P > 1: sent or
     * received); the statistics file being written (its image: the largest
     * point's packed statistics); the calibration tokens. Independent of L. */
    return rest + g->wb + 2 * g->H * g->D + 4 * rows * g->D * k + scratch(g, nc, T, C) + k * 8 * nc * g->dmax +
           lo * (mine + 1 + (P > 1)) + slop * mine + 4.0 * c->windows * T;
}

static double kl_bytes(const geo *g, const aq_pipe_cfg *c)
{
    if (c->kl_windows <= 0) return 0;
    double nk = fmin(c->kl_windows, c->windows) * (double)c->seq_len;
    /* cached FP residual at every block input and FP log-probabilities
     * (float64), the forward over the KL windows and its two logit matrices */
    double b = 8 * g->L * nk * g->D + 8 * nk * g->V + scratch(g, nk, c->seq_len, c->kl_windows) + 8 * nk * g->V;
    if (c->sens_loss == 2) /* block-fisher: one backward over the whole model (its activations) */
        b += 4 * g->L * nk * (6 * g->D + 2 * g->Q + 2 * g->K + 4 * g->H);
    return b;
}

/* One task's calibrate bytes on q ranks (q = 1: the single-rank path), the
 * process base and the runtime allowance left out. Single rank: the lazy
 * model (the rest, the task's block and the forward's current one); the
 * statistics of the layer's capture point read from their file (the file's
 * image and the tensors: 3 copies); AdaQuant on the layer (weights, codes,
 * scales, gradients, Adam moments, best state: 8 copies of W; the Gram, its
 * factor and inverse in float64; the sample and its products); one tensor's
 * mapped source in flight (2 bytes/weight); the KL's caches. On a 1 x q grid
 * (coop_run.c): every member still reads the whole statistics and holds the
 * block; W's 8 copies and the 3 float64 D x D matrices split by q; exact
 * polishing reads a replicated Gram (8 D^2 more). */
static double task_bytes(const geo *g, const aq_pipe_cfg *c, double d_out, double d_in, int q)
{
    double R = c->sample_rows, W = d_out * d_in, dm = d_in + 1, Q = q > 1 ? q : 1;
    double polish = q > 1 && c->polish > 0 ? 8 * dm * dm : 0;
    return g->wr + 2 * g->wb + 3 * stat(d_in, R, c->sequential) + 8 * 4 * W / Q + 3 * 8 * dm * dm / Q + polish +
           2 * 4 * R * d_in + 2 * W + kl_bytes(g, c);
}

/* The linears of a block: (d_out, d_in) and the name of the layer kind. */
typedef struct lin {
    double d_out, d_in;
    const char *name;
} lin;

static void linears(const geo *g, lin out[7])
{
    const lin l[7] = {{g->Q, g->D, "self_attn.q_proj"}, {g->K, g->D, "self_attn.k_proj"},
                      {g->K, g->D, "self_attn.v_proj"}, {g->D, g->Q, "self_attn.o_proj"},
                      {g->H, g->D, "mlp.gate_proj"}, {g->H, g->D, "mlp.up_proj"}, {g->D, g->H, "mlp.down_proj"}};
    memcpy(out, l, sizeof l);
}

/* The first option of the menu the cooperative path does not run, or NULL. */
static const char *coop_bad_option(const aq_pipe_cfg *c)
{
    for (int k = 0; k < c->n_options; k++) {
        aq_layer_opts o;
        aq_error e = {0};
        if (aq_pipe_layer_opts(c, c->options[k], &o, &e) != AQ_OK || !aq_coop_runs_option(&o)) return c->options[k];
    }
    return NULL;
}

/* Where one linear's tasks run under c (docs/MEMORY.md, "Cooperative
 * tasks"): q = 1, or c->coop_ranks when it fits no rank alone and the path
 * runs it (every option of the menu, a row per rank); its bytes there. */
static double lin_bytes(const geo *g, const aq_pipe_cfg *c, const lin *l, int *q)
{
    *q = 1;
    double one = task_bytes(g, c, l->d_out, l->d_in, 1);
    if (c->coop_ranks > 1 && c->max_rank_memory > 0 && AQ_MEM_RUNTIME + one > c->max_rank_memory &&
        aq_dist_coop_nb((int64_t)l->d_out, c->coop_ranks) && !coop_bad_option(c)) {
        *q = c->coop_ranks;
        return task_bytes(g, c, l->d_out, l->d_in, *q);
    }
    return one;
}

/* The phase's peak: its largest task where it runs; *worst = that linear. */
static double calibrate_bytes(const geo *g, const aq_pipe_cfg *c, int *worst, int *worst_q)
{
    lin l[7];
    linears(g, l);
    double b = 0;
    for (int k = 0; k < 7; k++) {
        int q;
        double x = lin_bytes(g, c, &l[k], &q);
        if (x > b) {
            b = x;
            if (worst) *worst = k;
            if (worst_q) *worst_q = q;
        }
    }
    return b;
}

double aq_mem_task_bytes(const aq_pipe_cfg *c, const aq_llama_config *mc, double d_out, double d_in, int q)
{
    geo g = geometry(mc);
    return AQ_MEM_RUNTIME + task_bytes(&g, c, d_out, d_in, q);
}

int aq_mem_task_too_big(const aq_pipe_cfg *c, const aq_llama_config *mc, double d_out, double d_in)
{
    return c->max_rank_memory > 0 && aq_mem_task_bytes(c, mc, d_out, d_in, 1) > c->max_rank_memory;
}

static double write_bytes(const geo *g, const aq_llama_config *mc, const aq_pipe_out *o)
{
    double n = o->eval_len > 0 ? o->eval_len : 512, t = o->tune.max_len > 0 ? o->tune.max_len : 512;
    /* the lazy model (the rest and the block a forward holds, one tensor's
     * source in flight), the held block's dequantized overrides (the others
     * stay as codes: stage_write.c installs them lazily), the chosen results
     * (codes U8 + per-row parameters), an evaluation forward with FP and
     * quantized logits */
    double b = g->wr + g->wb + 2 * g->H * g->D + g->wb + g->L * g->wb / 4 + scratch(g, n, n, 1) +
               2 * 4 * n * g->V;
    double act = 4 * t * (6 * g->D + 2 * g->Q + 2 * g->K + 4 * g->H); /* one document's activations, one block */
    int mode = o->tune.mode != AQ_TUNE_AUTO ? o->tune.mode
               : aq_block_params(mc) <= AQ_TUNE_GLOBAL_MAX_PARAMS ? AQ_TUNE_GLOBAL : AQ_TUNE_BLOCK;
    double docs = o->tune.docs > 0 ? o->tune.docs : 64, B = o->tune.batch > 0 ? o->tune.batch : 16;
    /* tuning installs float32 overrides of every linear while it runs (the
     * held block's W_b is counted above): (L - 1) W_b more */
    double installed = (g->L - 1) * g->wb;
    if (o->tune.steps > 0 && mode == AQ_TUNE_GLOBAL) /* the backward caches every block; the tuner's dequantized
                                                       copies and weight gradients of every linear */
        b += g->L * act + 4 * 4 * t * g->V + 3 * 4 * t * t + 2 * g->L * g->wb + installed;
    else if (o->tune.steps > 0) /* one block: the pool's FP input and target, a batch's activations, the tuner */
        b += 2 * 4 * docs * t * g->D + B * act + 2 * g->wb + installed;
    return b;
}

void aq_mem_predict(const aq_pipe_cfg *c, const aq_llama_config *mc, const aq_pipe_out *o, int ranks, double base,
                    aq_mem_pred *out)
{
    geo g = geometry(mc);
    memset(out, 0, sizeof *out);
    out->base = base;
    /* what the base, taken before any work, does not hold yet: BLIS's packing
     * buffers (a few MiB per kernel), MPI's shared-memory and eager buffers,
     * the allocator's fragmentation; a fixed allowance (docs/MEMORY.md) */
    base += AQ_MEM_RUNTIME;
    out->phase[AQ_MEM_CAPTURE] = base + capture_bytes(&g, c, ranks > 0 ? ranks : 1);
    out->phase[AQ_MEM_CALIBRATE] = base + calibrate_bytes(&g, c, NULL, NULL);
    out->phase[AQ_MEM_WRITE] = o ? base + write_bytes(&g, mc, o) : 0;
    for (int p = 1; p < AQ_MEM_PHASES; p++)
        if (out->phase[p] > out->phase[out->worst]) out->worst = p;
}

double aq_mem_current_rss(void)
{
    /* AQ_MEM_BASE=BYTES: a fixed base (tests: the measured one depends on the
     * MPI library, P and the allocator, docs/MEMORY.md) */
    const char *env = getenv("AQ_MEM_BASE");
    if (env && *env) {
        double b = aq_mem_parse_size(env);
        if (b >= 0) return b;
    }
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    int ok = f && fscanf(f, "%ld %ld", &size, &res) == 2;
    if (f) fclose(f);
    return ok ? (double)res * (double)sysconf(_SC_PAGESIZE) : 0;
}

double aq_mem_peak_rss(void)
{
    struct rusage u;
    if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
    return (double)u.ru_maxrss * 1024.0; /* Linux: kilobytes */
}

double aq_mem_parse_size(const char *s)
{
    char *end;
    double x = strtod(s, &end);
    if (end == s || !(x >= 0) || x > 1e18) return -1;
    static const char units[] = "KMGT";
    const char *u = *end ? strchr(units, *end == 'k' ? 'K' : *end) : NULL;
    if (*end && !u) return -1;
    if (u) {
        x *= pow(1024.0, (double)(u - units + 1));
        end++;
        if (!strcmp(end, "i") || !strcmp(end, "iB") || !strcmp(end, "B")) end += strlen(end); /* 1536Mi as --target-size writes it */
    }
    return *end ? -1 : x;
}

static double gib(double b)
{
    return b / (1024.0 * 1024.0 * 1024.0);
}

static aq_status read_config(const char *path, aq_llama_config *mc, aq_error *err)
{
    return aq_ckpt_read_llama_config(path, mc, err);
}

/* The first value of a knob (ranks x2.., sample rows /2.., ...) at which the
 * worst phase fits, printed into buf; nothing when none of 4 steps fits. */
/* The phase a check looks at: the worst one (phase < 0) or the one given. */
static int checked(const aq_mem_pred *p, int phase)
{
    return phase < 0 ? p->worst : phase;
}

/* phase >= 0: a command that runs that phase alone on a work directory whose
 * capture settings are fixed (calibrate): only the ranks and --coop-ranks are
 * suggested. */
static void suggest(char *buf, size_t n, const aq_pipe_cfg *c, const aq_llama_config *mc, const aq_pipe_out *o,
                    int ranks, double base, double limit, int phase)
{
    size_t k = 0;
    for (int knob = 0; knob < 6; knob++) {
        if (phase >= 0 && knob != 0 && knob != 5) continue;
        for (int step = 1; step <= 4; step++) {
            aq_pipe_cfg t = *c;
            aq_pipe_out to;
            memset(&to, 0, sizeof to);
            if (o) to = *o;
            int r = ranks, f = 1 << step;
            if (knob == 0) r = ranks * f;
            if (knob == 1 && (t.sample_rows = c->sample_rows / f) == c->sample_rows) break;
            if (knob == 2 && (t.kl_windows = c->kl_windows / f) == c->kl_windows) break;
            if (knob == 3 && (t.seq_len = c->seq_len / f) < 2) break;
            if (knob == 4 && (!o || (to.eval_len = to.tune.max_len = (o->eval_len > 0 ? o->eval_len : 512) / f) < 2))
                break;
            if (knob == 5 && (!(c->max_rank_memory > 0) || (t.coop_ranks = f) > 16)) break;
            aq_mem_pred p;
            aq_mem_predict(&t, mc, o ? &to : NULL, r, base, &p);
            if (p.phase[checked(&p, phase)] > limit) continue;
            static const char *const what[6] = {"%d ranks", "--sample-rows %d", "--kl-windows %d", "--calib-len %d",
                                                "--eval-len and --tune-len %d", "--coop-ranks %d"};
            int v = knob == 0 ? r : knob == 1 ? t.sample_rows : knob == 2 ? t.kl_windows : knob == 3 ? t.seq_len
                    : knob == 4 ? to.eval_len : t.coop_ranks;
            k += (size_t)snprintf(buf + k, n - k, "%s", k ? ", " : "");
            if (k < n) k += (size_t)snprintf(buf + k, n - k, what[knob], v);
            if (k < n) k += (size_t)snprintf(buf + k, n - k, " (%.2f GiB)", gib(p.phase[checked(&p, phase)]));
            break;
        }
        if (k >= n) break;
    }
}

/* When the calibrate phase is the one over the limit: its largest task, where
 * it runs and why it cannot go (further) cooperative, into buf. */
static void calibrate_task(char *buf, size_t n, const aq_pipe_cfg *c, const aq_llama_config *mc)
{
    geo g = geometry(mc);
    lin l[7];
    linears(&g, l);
    int w = 0, q = 1;
    calibrate_bytes(&g, c, &w, &q);
    double one = AQ_MEM_RUNTIME + task_bytes(&g, c, l[w].d_out, l[w].d_in, 1);
    size_t k = (size_t)snprintf(buf, n, "its largest task, model.layers.*.%s (%.0f x %.0f), needs %.3f GiB on one rank",
                                l[w].name, l[w].d_out, l[w].d_in, gib(one));
    const char *bad = coop_bad_option(c);
    if (k >= n) return;
    if (q > 1)
        snprintf(buf + k, n - k, " and %.3f GiB on a sub-grid of --coop-ranks %d; ", gib(AQ_MEM_RUNTIME +
                 task_bytes(&g, c, l[w].d_out, l[w].d_in, q)), q);
    else if (c->coop_ranks > 1 && bad)
        snprintf(buf + k, n - k, " and cannot run on a sub-grid: option %s quantizes activations or is a group "
                 "format (the cooperative path runs per-row a16 options only); ", bad);
    else if (c->coop_ranks > 1 && !aq_dist_coop_nb((int64_t)l[w].d_out, c->coop_ranks))
        snprintf(buf + k, n - k, " and cannot run on a sub-grid of %d ranks: it has fewer rows than ranks; ",
                 c->coop_ranks);
    else if (c->coop_ranks > 1)
        snprintf(buf + k, n - k, " (within the bound alone: the process base makes the difference); ");
    else
        snprintf(buf + k, n - k, " (no --coop-ranks: every task runs on one rank); ");
}

aq_status aq_mem_check(const aq_pipe_cfg *c, const aq_pipe_out *o, int ranks, double limit, aq_error *err)
{
    return aq_mem_check_phase(c, o, ranks, limit, -1, err);
}

aq_status aq_mem_check_phase(const aq_pipe_cfg *c, const aq_pipe_out *o, int ranks, double limit, int phase,
                             aq_error *err)
{
    if (!(limit > 0)) return AQ_OK;
    aq_llama_config mc;
    AQ_TRY(read_config(c->model, &mc, err));
    aq_pipe_cfg cl = *c; /* the bound decides which tasks go cooperative (lin_bytes) */
    cl.max_rank_memory = limit;
    c = &cl;
    aq_mem_pred p;
    double base = aq_mem_current_rss();
    aq_mem_predict(c, &mc, o, ranks, base, &p);
    int ph = checked(&p, phase);
    if (p.phase[ph] <= limit) return AQ_OK;
    char fit[512] = "", all[160] = "", task[400] = ""; /* the write phase only for a command that runs it */
    suggest(fit, sizeof fit, c, &mc, o, ranks, base, limit, phase);
    if (phase < 0)
        snprintf(all, sizeof all, "capture %.3f, calibrate %.3f%s", gib(p.phase[AQ_MEM_CAPTURE]),
                 gib(p.phase[AQ_MEM_CALIBRATE]), o ? ", write " : "");
    if (phase < 0 && o) snprintf(all + strlen(all), sizeof all - strlen(all), "%.3f", gib(p.phase[AQ_MEM_WRITE]));
    if (phase < 0) snprintf(all + strlen(all), sizeof all - strlen(all), " GiB; ");
    if (ph == AQ_MEM_CALIBRATE) calibrate_task(task, sizeof task, c, &mc);
    return aq_fail(err, AQ_ERR_ARG,
                   "--max-rank-memory %.3f GiB: the %s phase is predicted to need %.3f GiB per rank at %d rank%s "
                   "(%sdocs/MEMORY.md); %s%s%s",
                   gib(limit), aq_mem_phase_name(ph), gib(p.phase[ph]), ranks, ranks > 1 ? "s" : "", all, task,
                   fit[0] ? "it would fit with " : phase < 0 ? "no single change of ranks, "
                   "sample rows, KL windows, window or evaluation length, or --coop-ranks fits: give more memory per rank"
                   : "no change of ranks or --coop-ranks fits: give more memory per rank",
                   fit);
}

void aq_mem_gather(MPI_Comm comm, const aq_pipe_cfg *c, const aq_pipe_out *o, aq_pipe_timing *t)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    double mine = aq_mem_peak_rss(), *all = rank == 0 ? calloc((size_t)size, sizeof *all) : NULL;
    MPI_Gather(&mine, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, 0, comm);
    if (rank != 0) return;
    aq_llama_config mc;
    aq_error e = {0};
    if (read_config(c->model, &mc, &e) == AQ_OK) {
        aq_mem_pred p;
        aq_mem_predict(c, &mc, o, size, t->mem_base, &p);
        for (int k = 0; k < AQ_MEM_PHASES; k++) t->mem_pred[k] = p.phase[k];
        t->mem_worst = p.worst;
    }
    t->rss_n = size < AQ_PIPE_RSS_RANKS ? size : AQ_PIPE_RSS_RANKS;
    t->rss_max = 0;
    for (int r = 0; all && r < size; r++) {
        if (r < AQ_PIPE_RSS_RANKS) t->rss[r] = all[r];
        t->rss_max = fmax(t->rss_max, all[r]);
    }
    free(all);
}

void aq_mem_print(FILE *f, const aq_pipe_timing *t)
{
    if (t->rss_n <= 0) return;
    double pred = t->mem_pred[t->mem_worst];
    fprintf(f, "memory per rank: predicted peak %.1f MiB (%s phase; capture %.1f, calibrate %.1f, write %.1f MiB)\n",
            pred / 1048576.0, aq_mem_phase_name(t->mem_worst), t->mem_pred[0] / 1048576.0, t->mem_pred[1] / 1048576.0,
            t->mem_pred[2] / 1048576.0);
    for (int r = 0; r < t->rss_n; r++)
        fprintf(f, "  rank %d: measured peak RSS %.1f MiB%s\n", r, t->rss[r] / 1048576.0,
                t->rss[r] > pred ? " (above the prediction)" : "");
}
