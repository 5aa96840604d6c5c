/* bench_quality.c — which loss column makes the bit allocation good?
 *
 * Reads the result files of a finished quantize run (WORK/results, one per
 * (layer, option): the AdaQuant codes/scales/bias and the layer's normalised
 * output error `out_error`), measures for every (layer, option) the
 * network-level KL(FP || only that layer quantized) on the first K
 * calibration windows (src/model/sensitivity.h) for several K, solves the
 * allocation (solver/allocate.h, additive sum of the column) at each budget
 * with each column, and evaluates the resulting mixed model's perplexity on
 * the evaluation half of the text (the same documents/lengths as quantize).
 * Columns:
 *   layer      the normalised output error ||Y-Y^||^2/||Y||^2 (the old column)
 *   klK        the network KL on K windows
 *   scaled     layer error x (KL / layer error of the layer's LOWEST-bit option):
 *              one KL measurement per layer instead of one per option
 * Also prints sum_l KL_l vs the joint KL of the chosen allocation (additivity).
 * --relin R: R times, re-measure every (layer, option) KL with the other layers
 * quantized as in the allocation found (column "relin", see relin_column) and
 * re-solve: a fixed-point correction of the additive approximation.
 *
 * usage: bench_quality --work WORK [--shared DIR] [--options LIST]
 *        [--kl-windows 8,16] [--bits 4.0,3.0] [--eval-docs N] [--relin R]
 *        [--naive K: also time a straightforward full-forward KL on K windows]
 *        [--bias-correct K: only the sequential bias-correction experiment on K
 *         windows, for the first KL column's allocations and the uniform ones]
 * (stories260K; the calibration windows are re-made with 64 x 256 like quantize) */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../io/resultfile.h"
#include "../solver/allocate.h"
#include "../src/blas/blas_kernel.h"
#include "../src/model/block_loss.h"
#include "../src/model/sensitivity.h"
#include "../src/text/textdata.h"
#include "benchutil.h"

#define MAXO 8
#define MAXC 12

typedef struct cand {
    float *w, *bias;
    int w_bits, a_bits;
    float a_scale, a_zero;
    double err; /* normalised output error */
} cand;

typedef struct bench {
    aq_model *m;
    int nl, no, n_blocks;
    char opt[MAXO][16];
    char (*name)[96];
    int64_t *params;
    cand *c; /* [nl * no] */
    int ncol;
    char col[MAXC][32];
    double *loss[MAXC]; /* [nl * no] */
    aq_seqs eval;
} bench;

static int fail(const char *what, const aq_error *err) { return aq_bench_fail("bench_quality", what, err); }

static aq_linear lin_of(const bench *b, int l)
{
    return (aq_linear)(l % AQ_LIN_COUNT);
}

static aq_status load_cand(bench *b, const char *work, int l, int k, aq_error *err)
{
    char *path;
    aq_result *r = NULL;
    AQ_TRY(aq_result_path(work, b->name[l], b->opt[k], &path, err));
    aq_status st = aq_result_read(path, NULL, &r, err);
    free(path);
    if (st != AQ_OK) return st;
    const aq_tensor_view *codes = aq_result_find(r, "codes"), *sc = aq_result_find(r, "w_scale"),
                         *zp = aq_result_find(r, "w_zero"), *bi = aq_result_find(r, "bias"),
                         *as = aq_result_find(r, "a_scale"), *az = aq_result_find(r, "a_zero"),
                         *oe = aq_result_find(r, "out_error");
    if (!codes || !sc || !zp || !bi || !as || !az || !oe) {
        aq_result_free(r);
        return aq_fail(err, AQ_ERR_FORMAT, "%s %s: result lacks a tensor", b->name[l], b->opt[k]);
    }
    size_t o = (size_t)codes->shape[0], in = (size_t)codes->shape[1];
    cand *c = &b->c[l * b->no + k];
    c->w = malloc(o * in * sizeof(float));
    c->bias = malloc(o * sizeof(float));
    const uint8_t *u = codes->data;
    const char *s = sc->data, *z = zp->data; /* unaligned in the payload */
    for (size_t i = 0; i < o; i++) {
        float si, zi;
        memcpy(&si, s + 4 * i, 4);
        memcpy(&zi, z + 4 * i, 4);
        for (size_t j = 0; j < in; j++)
            c->w[i * in + j] = si * ((float)u[i * in + j] - zi); /* the qlayer formula */
    }
    memcpy(c->bias, bi->data, o * sizeof(float));
    c->w_bits = r->row.w_bits;
    c->a_bits = r->row.a_bits;
    memcpy(&c->a_scale, as->data, 4);
    memcpy(&c->a_zero, az->data, 4);
    memcpy(&c->err, oe->data, 8);
    b->params[l] = r->row.params;
    aq_result_free(r);
    return AQ_OK;
}

static aq_linear_override ov_of(const cand *c)
{
    return (aq_linear_override){c->w, c->bias, c->a_bits < 16 ? c->a_bits : 0, c->a_scale,
                                c->a_zero};
}

/* Column "klK": the network KL of every (layer, option) on K windows. */
static aq_status kl_column(bench *b, const int *win, int K, int T, aq_sens **keep, aq_error *err)
{
    int *lens = malloc((size_t)K * sizeof(int));
    for (int i = 0; i < K; i++)
        lens[i] = T;
    aq_sens *s = NULL;
    double t0 = aq_bench_wall_seconds();
    aq_status st = aq_sens_new(b->m, win, lens, K, 0, &s, err);
    free(lens);
    if (st != AQ_OK) return st;
    double t1 = aq_bench_wall_seconds();
    double *col = b->loss[b->ncol] = malloc((size_t)(b->nl * b->no) * sizeof(double));
    snprintf(b->col[b->ncol++], 32, "kl%d", K);
    for (int l = 0; l < b->nl && st == AQ_OK; l++)
        for (int k = 0; k < b->no && st == AQ_OK; k++) {
            aq_linear_override ov = ov_of(&b->c[l * b->no + k]);
            st = aq_sens_layer_kl(s, l / AQ_LIN_COUNT, lin_of(b, l), &ov, &col[l * b->no + k], err);
        }
    printf("kl%-3d: FP cache %.3f s (%.1f MB), %d layer KLs %.3f s (%.2f ms each)\n", K, t1 - t0,
           (double)aq_sens_bytes(s) / 1e6, b->nl * b->no, aq_bench_wall_seconds() - t1,
           1e3 * (aq_bench_wall_seconds() - t1) / (b->nl * b->no));
    if (st == AQ_OK && keep && !*keep) *keep = s;
    else aq_sens_free(s);
    return st;
}

/* Columns "block-mse" / "block-fisher" (src/model/block_loss.h) on K windows. */
static aq_status block_column(bench *b, const int *win, int K, int T, aq_block_loss_kind kind, aq_error *err)
{
    int *lens = malloc((size_t)K * sizeof(int));
    for (int i = 0; i < K; i++) lens[i] = T;
    aq_block_sens *s = NULL;
    double t0 = aq_bench_wall_seconds();
    aq_status st = aq_block_sens_new(b->m, win, lens, K, 0, kind, &s, err);
    free(lens);
    if (st != AQ_OK) return st;
    double t1 = aq_bench_wall_seconds();
    const char *name = kind == AQ_BLOCK_LOSS_MSE ? "block-mse" : "block-fisher";
    double *col = b->loss[b->ncol] = malloc((size_t)(b->nl * b->no) * sizeof(double));
    snprintf(b->col[b->ncol++], 32, "%s", name);
    for (int l = 0; l < b->nl && st == AQ_OK; l++)
        for (int k = 0; k < b->no && st == AQ_OK; k++) {
            aq_linear_override ov = ov_of(&b->c[l * b->no + k]);
            st = aq_block_sens_layer(s, l / AQ_LIN_COUNT, lin_of(b, l), &ov, &col[l * b->no + k], err);
        }
    printf("%s (%d windows): FP cache %.3f s (%.1f MB), %d layer losses %.3f s (%.2f ms each)\n", name, K,
           t1 - t0, (double)aq_block_sens_bytes(s) / 1e6, b->nl * b->no, aq_bench_wall_seconds() - t1,
           1e3 * (aq_bench_wall_seconds() - t1) / (b->nl * b->no));
    aq_block_sens_free(s);
    return st;
}

/* Ranks 1..n of v (ties: the mean rank), for Spearman's correlation. */
static void ranks_of(const double *v, int n, double *r)
{
    for (int i = 0; i < n; i++) {
        int below = 0, equal = 0;
        for (int j = 0; j < n; j++) below += v[j] < v[i], equal += v[j] == v[i];
        r[i] = below + (equal + 1) / 2.0;
    }
}

/* Spearman's rank correlation of two columns over all (layer, option) tasks:
 * the Pearson correlation of their ranks. */
static double spearman(const double *a, const double *b, int n)
{
    double *ra = malloc((size_t)n * sizeof *ra), *rb = malloc((size_t)n * sizeof *rb), m = (n + 1) / 2.0;
    ranks_of(a, n, ra);
    ranks_of(b, n, rb);
    double sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) {
        sab += (ra[i] - m) * (rb[i] - m);
        saa += (ra[i] - m) * (ra[i] - m);
        sbb += (rb[i] - m) * (rb[i] - m);
    }
    free(ra);
    free(rb);
    return sab / sqrt(saa * sbb);
}

/* For timing only: the KL the way a straightforward implementation does it
 * (full FP-reference-free quantized forward from the embedding, log-softmax of
 * both distributions, exp(lp) per element), over all (layer, option). */
static aq_status naive_kl_time(bench *b, const int *win, int K, int T, aq_error *err)
{
    int V = aq_model_config(b->m)->vocab_size;
    size_t rows = (size_t)K * T;
    int *lens = malloc((size_t)K * sizeof(int));
    float *z = malloc(rows * V * sizeof(float));
    double *lp = malloc(rows * V * sizeof(double)), *lq = malloc((size_t)V * sizeof(double));
    for (int i = 0; i < K; i++)
        lens[i] = T;
    AQ_TRY(aq_model_forward(b->m, win, lens, K, NULL, z, err));
    for (size_t r = 0; r < rows; r++) {
        const float *zr = z + r * V;
        double mx = zr[0], sm = 0;
        for (int v = 1; v < V; v++) mx = zr[v] > mx ? zr[v] : mx;
        for (int v = 0; v < V; v++) sm += exp((double)zr[v] - mx);
        for (int v = 0; v < V; v++) lp[r * V + v] = (double)zr[v] - mx - log(sm);
    }
    double t0 = aq_bench_wall_seconds(), chk = 0;
    aq_forward_opts o;
    aq_forward_opts_default(&o);
    o.quantized = 1;
    for (int l = 0; l < b->nl; l++)
        for (int k = 0; k < b->no; k++) {
            aq_linear_override ov = ov_of(&b->c[l * b->no + k]);
            AQ_TRY(aq_model_set_override(b->m, l / AQ_LIN_COUNT, lin_of(b, l), &ov, err));
            AQ_TRY(aq_model_forward(b->m, win, lens, K, &o, z, err));
            aq_model_clear_override(b->m, l / AQ_LIN_COUNT, lin_of(b, l));
            double sum = 0;
            for (size_t r = 0; r < rows; r++) {
                const float *zr = z + r * V;
                double mx = zr[0], sm = 0;
                for (int v = 1; v < V; v++) mx = zr[v] > mx ? zr[v] : mx;
                for (int v = 0; v < V; v++) sm += exp((double)zr[v] - mx);
                for (int v = 0; v < V; v++) lq[v] = (double)zr[v] - mx - log(sm);
                for (int v = 0; v < V; v++) sum += exp(lp[r * V + v]) * (lp[r * V + v] - lq[v]);
            }
            chk += sum;
        }
    printf("naive kl%-3d (full forward, 2 exps/entry): %d layer KLs %.3f s (%.2f ms each; sum %.4g)\n",
           K, b->nl * b->no, aq_bench_wall_seconds() - t0, 1e3 * (aq_bench_wall_seconds() - t0) / (b->nl * b->no), chk);
    free(lens);
    free(z);
    free(lp);
    free(lq);
    return AQ_OK;
}

/* Perplexity of the model with the overrides currently installed. */
static aq_status ppl_q(bench *b, double *ppl, aq_error *err)
{
    int V = aq_model_config(b->m)->vocab_size;
    size_t cap = 4096;
    float *z = malloc(cap * (size_t)V * sizeof(float));
    aq_forward_opts o;
    aq_forward_opts_default(&o);
    o.quantized = 1;
    double nll = 0;
    size_t off = 0;
    aq_status st = AQ_OK;
    for (int s0 = 0; s0 < b->eval.n && st == AQ_OK;) {
        int nb = 0;
        size_t rows = 0;
        while (s0 + nb < b->eval.n && rows + (size_t)b->eval.lens[s0 + nb] <= cap)
            rows += (size_t)b->eval.lens[s0 + nb++];
        const int *tok = b->eval.tokens + off;
        st = aq_model_forward(b->m, tok, b->eval.lens + s0, nb, &o, z, err);
        size_t r = 0;
        for (int q = 0; q < nb && st == AQ_OK; q++, r++)
            for (int t = 0; t + 1 < b->eval.lens[s0 + q]; t++, r++) {
                const float *zr = z + r * (size_t)V;
                double mx = zr[0], sum = 0;
                for (int v = 1; v < V; v++)
                    mx = zr[v] > mx ? zr[v] : mx;
                for (int v = 0; v < V; v++)
                    sum += exp((double)zr[v] - mx);
                nll -= (double)zr[tok[r + 1]] - mx - log(sum);
            }
        off += rows;
        s0 += nb;
    }
    free(z);
    *ppl = exp(nll / (double)b->eval.n_predicted);
    return st;
}

static void install(bench *b, const int *choice)
{
    aq_error err = {0};
    for (int l = 0; l < b->nl; l++) {
        aq_linear_override ov = ov_of(&b->c[l * b->no + choice[l]]);
        if (aq_model_set_override(b->m, l / AQ_LIN_COUNT, lin_of(b, l), &ov, &err) != AQ_OK)
            fprintf(stderr, "override: %s\n", err.msg);
    }
}

static void uninstall(bench *b)
{
    for (int l = 0; l < b->nl; l++)
        aq_model_clear_override(b->m, l / AQ_LIN_COUNT, lin_of(b, l));
}

static aq_status solve(bench *b, const double *loss, double bits, int *choice, aq_error *err)
{
    aq_alloc_table t;
    aq_alloc_table_init(&t);
    aq_status st = AQ_OK;
    for (int l = 0; l < b->nl && st == AQ_OK; l++)
        for (int k = 0; k < b->no && st == AQ_OK; k++) {
            const cand *c = &b->c[l * b->no + k];
            st = aq_alloc_table_add(&t, b->name[l], b->opt[k], b->params[l], c->w_bits, c->a_bits,
                                    b->params[l], loss[l * b->no + k], 0, 0, err);
        }
    aq_alloc_spec sp;
    memset(&sp, 0, sizeof sp);
    sp.objective = AQ_ALLOC_MIN_LOSS;
    sp.size_unit = AQ_SIZE_AVG_BITS;
    sp.size_budget = bits;
    aq_alloc_solution sol;
    memset(&sol, 0, sizeof sol);
    if (st == AQ_OK) st = aq_alloc_solve(&t, &sp, &sol, err);
    for (int l = 0; st == AQ_OK && l < b->nl; l++)
        choice[l] = (int)(sol.row[l] % (size_t)b->no);
    if (st == AQ_OK) aq_alloc_solution_free(&sol);
    aq_alloc_table_free(&t);
    return st;
}

/* Column "relin": the KL re-measured around an allocation `base` (every
 * other layer quantized as in base, layer l at option k), minus the smallest
 * of the layer's row (a per-layer constant does not change the argmin). It
 * accounts for interactions the additive sum of single-layer KLs misses. */
static aq_status relin_column(bench *b, aq_sens *s, const int *base, double *col, aq_error *err)
{
    install(b, base);
    aq_status st = aq_sens_set_base(s, err); /* resume from the base's residuals */
    for (int l = 0; l < b->nl && st == AQ_OK; l++) {
        double mn = INFINITY;
        aq_linear_override bo = ov_of(&b->c[l * b->no + base[l]]);
        for (int k = 0; k < b->no && st == AQ_OK; k++) {
            aq_linear_override ov = ov_of(&b->c[l * b->no + k]);
            st = aq_sens_swap_kl(s, l / AQ_LIN_COUNT, lin_of(b, l), &ov, &bo, &col[l * b->no + k],
                                 err);
            mn = fmin(mn, col[l * b->no + k]);
        }
        for (int k = 0; k < b->no; k++)
            col[l * b->no + k] -= mn;
    }
    uninstall(b);
    if (st == AQ_OK) st = aq_sens_set_base(s, err); /* FP again */
    return st;
}

/* ---- sequential bias correction (DESIGN step 3), an experiment ---- */
typedef struct mean_cap {
    int block, point;
    double *sum; /* [d] */
    size_t n;
} mean_cap;

static aq_status grab_mean(void *ctx, const aq_capture_event *ev, aq_error *err)
{
    mean_cap *mc = ctx;
    (void)err;
    if (ev->block != mc->block || (int)ev->point != mc->point) return AQ_OK;
    for (size_t r = 0; r < ev->n_rows; r++)
        for (int j = 0; j < ev->d; j++)
            mc->sum[j] += ev->rows[r * (size_t)ev->d + j];
    mc->n += ev->n_rows;
    return AQ_OK;
}

/* Mean input of (block, point) over the windows, FP or with the overrides. */
static aq_status mean_input(bench *b, const int *win, int K, int T, int block, int point, int quantized,
                            double *mean, int d, aq_error *err)
{
    int *lens = malloc((size_t)K * sizeof(int));
    for (int i = 0; i < K; i++)
        lens[i] = T;
    memset(mean, 0, (size_t)d * sizeof(double));
    mean_cap mc = {block, point, mean, 0};
    aq_forward_opts o;
    aq_forward_opts_default(&o);
    o.quantized = quantized;
    o.capture = grab_mean;
    o.capture_ctx = &mc;
    o.stop_after_block = block;
    aq_status st = aq_model_forward(b->m, win, lens, K, &o, NULL, err);
    for (int j = 0; j < d; j++)
        mean[j] /= (double)mc.n;
    free(lens);
    return st;
}

/* Install choice, then layer by layer in model order set the bias so the mean
 * output on the windows equals FP's: b += W mu_fp - W^ mu_q (mu_q with every
 * upstream correction applied; activation quantization ignored: a16 menus). */
static aq_status bias_correct(bench *b, const int *choice, const int *win, int K, int T, aq_error *err)
{
    install(b, choice);
    double *mf = malloc(4096 * sizeof(double)), *mq = malloc(4096 * sizeof(double));
    aq_status st = AQ_OK;
    for (int l = 0; l < b->nl && st == AQ_OK; l++) {
        int blk = l / AQ_LIN_COUNT, d_out, d_in;
        aq_linear which = lin_of(b, l);
        const float *w;
        st = aq_model_linear(b->m, blk, which, &w, &d_out, &d_in, err);
        int pt = (int)aq_linear_cap_point(which);
        if (st == AQ_OK) st = mean_input(b, win, K, T, blk, pt, 0, mf, d_in, err);
        if (st == AQ_OK) st = mean_input(b, win, K, T, blk, pt, 1, mq, d_in, err);
        const cand *c = &b->c[l * b->no + choice[l]];
        float *nb = malloc((size_t)d_out * sizeof(float));
        for (int o = 0; o < d_out; o++) {
            double yf = 0, yq = 0;
            for (int i = 0; i < d_in; i++) {
                yf += (double)w[(size_t)o * d_in + i] * mf[i];
                yq += (double)c->w[(size_t)o * d_in + i] * mq[i];
            }
            nb[o] = c->bias[o] + (float)(yf - (yq + c->bias[o]));
        }
        aq_linear_override ov = ov_of(c);
        ov.bias = nb;
        if (st == AQ_OK) st = aq_model_set_override(b->m, blk, which, &ov, err);
        free(nb);
    }
    free(mf);
    free(mq);
    return st; /* overrides stay installed: the caller evaluates and uninstalls */
}

/* Solve with column ci at `bits`, evaluate, print one line. relin > 0: then
 * re-linearise around the allocation found, relin times. */
static aq_status run_alloc(bench *b, int ci, double bits, aq_sens *s, int relin, aq_error *err)
{
    int choice[512];
    AQ_TRY(solve(b, b->loss[ci], bits, choice, err));
    double *rc = relin > 0 ? malloc((size_t)(b->nl * b->no) * sizeof(double)) : NULL;
    for (int it = 0; it < relin; it++) {
        double t0 = aq_bench_wall_seconds();
        AQ_TRY(relin_column(b, s, choice, rc, err));
        AQ_TRY(solve(b, rc, bits, choice, err));
        printf("  (relinearisation %d: %.1f s)\n", it + 1, aq_bench_wall_seconds() - t0);
    }
    free(rc);
    char bitstr[1024] = "";
    double sum_kl = 0;
    int kl16 = -1;
    for (int j = b->ncol - 1; j >= 0; j--)
        if (!strncmp(b->col[j], "kl", 2)) kl16 = j; /* the first = largest-K KL column */
    for (int l = 0; l < b->nl; l++) {
        size_t n = strlen(bitstr);
        snprintf(bitstr + n, sizeof bitstr - n, "%s%d", l % AQ_LIN_COUNT ? "" : " ",
                 b->c[l * b->no + choice[l]].w_bits);
        if (kl16 >= 0) sum_kl += b->loss[kl16][l * b->no + choice[l]];
    }
    install(b, choice);
    double ppl = 0, joint = NAN;
    aq_status st = ppl_q(b, &ppl, err);
    if (st == AQ_OK && s) st = aq_sens_installed_kl(s, &joint, err);
    uninstall(b);
    if (st == AQ_OK)
        printf("%-7s%s %.2f bits: ppl %.4f | sumKL %.4f joint KL %.4f | bits per block (qkvo gud):%s\n",
               b->col[ci], relin ? "+R" : "", bits, ppl, sum_kl, joint, bitstr);
    return st;
}

static int parse_list(const char *s, double *v, int max)
{
    int n = 0;
    char *end;
    while (*s && n < max) {
        v[n++] = strtod(s, &end);
        s = *end == ',' ? end + 1 : end;
        if (end == s && *s) break;
    }
    return n;
}

int main(int argc, char **argv)
{
    /* Before any BLAS call: the kernel the adaquant command runs, named with the figures. */
    char blas[160];
    aq_blas_kernel_select(NULL, 0);
    aq_blas_kernel_describe(blas, sizeof blas);
    printf("%s\n", blas);
    const char *shared = AQ_SHARED_DIR_DEFAULT, *work = NULL, *opts = "w8a16,w6a16,w4a16,w3a16";
    const char *klw = "8,16", *bits = "4.0,3.0";
    int eval_docs = 0, eval_len = 512, relin = 0, naive = 0, biasc = 0, blockw = 0;
    static const struct option lo[] = {{"work", 1, 0, 'w'},       {"shared", 1, 0, 's'},
                                       {"options", 1, 0, 'o'},    {"kl-windows", 1, 0, 'k'},
                                       {"bits", 1, 0, 'b'},       {"eval-docs", 1, 0, 'e'}, {"relin", 1, 0, 'r'}, {"naive", 1, 0, 'n'}, {"bias-correct", 1, 0, 'c'}, {"block", 1, 0, 'B'},
                                       {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
        if (c == 'w') work = optarg;
        else if (c == 's') shared = optarg;
        else if (c == 'o') opts = optarg;
        else if (c == 'k') klw = optarg;
        else if (c == 'b') bits = optarg;
        else if (c == 'e') eval_docs = atoi(optarg);
        else if (c == 'r') relin = atoi(optarg);
        else if (c == 'n') naive = atoi(optarg);
        else if (c == 'c') biasc = atoi(optarg);
        else if (c == 'B') blockw = atoi(optarg);
        else return 2;
    }
    if (!work) {
        fprintf(stderr, "usage: bench_quality --work WORK [--shared DIR] [--options LIST] "
                        "[--kl-windows 8,16] [--bits 4.0,3.0] [--eval-docs N]\n");
        return 2;
    }
    char mp[1024], tp[1024], xp[1024];
    snprintf(mp, sizeof mp, "%s/models/stories260K/stories260K.bin", shared);
    snprintf(tp, sizeof tp, "%s/models/stories260K/tok512.bin", shared);
    snprintf(xp, sizeof xp, "%s/data/tinystories/validation.txt", shared);
    aq_error err = {0};
    bench b;
    memset(&b, 0, sizeof b);
    aq_tokenizer *tok;
    aq_docs docs;
    int *win, S = 64, T = 256;
    if (aq_model_load_path(mp, &b.m, &err)) return fail("model", &err);
    if (aq_tok_open(tp, 512, &tok, &err)) return fail("tokenizer", &err);
    if (aq_docs_read(xp, &docs, &err)) return fail("text", &err);
    if (aq_calib_windows(tok, &docs, S, T, &win, &err)) return fail("windows", &err);
    if (aq_eval_seqs(tok, &docs, eval_len, (size_t)eval_docs, &b.eval, &err))
        return fail("eval", &err);
    for (const char *p = opts; *p && b.no < MAXO;) {
        size_t n = strcspn(p, ",");
        snprintf(b.opt[b.no++], 16, "%.*s", (int)n, p);
        p += n + (p[n] == ',');
    }
    b.n_blocks = aq_model_config(b.m)->n_layers;
    b.nl = b.n_blocks * AQ_LIN_COUNT;
    b.name = calloc((size_t)b.nl, sizeof *b.name);
    b.params = calloc((size_t)b.nl, sizeof *b.params);
    b.c = calloc((size_t)(b.nl * b.no), sizeof *b.c);
    for (int l = 0; l < b.nl; l++) {
        aq_linear_prefix(l / AQ_LIN_COUNT, lin_of(&b, l), b.name[l], sizeof b.name[l]);
        for (int k = 0; k < b.no; k++)
            if (load_cand(&b, work, l, k, &err)) return fail("result", &err);
    }
    printf("%d layers x %d options from %s/results; eval %d docs (%zu predicted tokens)\n", b.nl,
           b.no, work, b.eval.n, b.eval.n_predicted);
    double *col = b.loss[b.ncol] = malloc((size_t)(b.nl * b.no) * sizeof(double));
    snprintf(b.col[b.ncol++], 32, "layer");
    for (int i = 0; i < b.nl * b.no; i++)
        col[i] = b.c[i].err;
    double kv[8];
    int nk = parse_list(klw, kv, 8);
    if (naive > 0 && naive_kl_time(&b, win, naive, T, &err)) return fail("naive kl", &err);
    aq_sens *s = NULL; /* the cache of the largest K, for the joint KL */
    for (int i = nk - 1; i >= 0; i--)
        if (kl_column(&b, win, (int)kv[i], T, &s, &err)) return fail("kl", &err);
    /* scaled: layer error x KL/err of the lowest-bit option (largest K) */
    int klc = 1, low = 0;
    for (int k = 1; k < b.no; k++)
        if (b.c[k].w_bits < b.c[low].w_bits) low = k;
    col = b.loss[b.ncol] = malloc((size_t)(b.nl * b.no) * sizeof(double));
    snprintf(b.col[b.ncol++], 32, "scaled");
    for (int l = 0; l < b.nl; l++)
        for (int k = 0; k < b.no; k++)
            col[l * b.no + k] = b.c[l * b.no + k].err * b.loss[klc][l * b.no + low] /
                                fmax(b.c[l * b.no + low].err, 1e-30);
    printf("\nper-layer columns at %s (layer error / KL%s):\n", b.opt[low], b.col[klc] + 2);
    for (int l = 0; l < b.nl; l++)
        printf("  %-36s err %.5f KL %.5f\n", b.name[l], b.c[l * b.no + low].err,
               b.loss[klc][l * b.no + low]);
    /* --block K: the one-block losses on K windows, and every column's
     * Spearman correlation with the first KL column (largest K) */
    for (int kind = AQ_BLOCK_LOSS_MSE; blockw > 0 && kind <= AQ_BLOCK_LOSS_FISHER; kind++)
        if (block_column(&b, win, blockw, T, (aq_block_loss_kind)kind, &err)) return fail("block loss", &err);
    for (int j = 0; blockw > 0 && j < b.ncol; j++)
        printf("Spearman(%s, %s) over %d tasks: %.4f\n", b.col[j], b.col[klc], b.nl * b.no,
               spearman(b.loss[j], b.loss[klc], b.nl * b.no));
    double bv[8];
    int nbits = parse_list(bits, bv, 8);
    printf("\n");
    for (int i = 0; i < nbits && !biasc; i++)
        for (int ci = 0; ci < b.ncol; ci++)
            if (run_alloc(&b, ci, bv[i], s, 0, &err)) return fail("allocation", &err);
    for (int i = 0; i < nbits && relin > 0 && !biasc; i++) /* re-linearised, from the first KL column */
        if (run_alloc(&b, 1, bv[i], s, relin, &err)) return fail("allocation", &err);
    /* bias correction on K windows after the first KL column's allocation */
    for (int i = 0; i < nbits && biasc > 0; i++) {
        int choice[512];
        double ppl0, ppl1, t0 = aq_bench_wall_seconds();
        if (solve(&b, b.loss[1], bv[i], choice, &err)) return fail("solve", &err);
        install(&b, choice);
        if (ppl_q(&b, &ppl0, &err)) return fail("eval", &err);
        uninstall(&b);
        if (bias_correct(&b, choice, win, biasc, T, &err)) return fail("bias", &err);
        double tb = aq_bench_wall_seconds() - t0;
        if (ppl_q(&b, &ppl1, &err)) return fail("eval", &err);
        uninstall(&b);
        printf("%s %.2f bits: ppl %.4f -> bias-corrected on %d windows %.4f (%.1f s)\n", b.col[1], bv[i], ppl0,
               biasc, ppl1, tb);
    }
    for (int k = 0; k < b.no && biasc > 0; k++) {
        int choice[512];
        double ppl0, ppl1;
        for (int l = 0; l < b.nl; l++)
            choice[l] = k;
        install(&b, choice);
        if (ppl_q(&b, &ppl0, &err)) return fail("eval", &err);
        uninstall(&b);
        if (bias_correct(&b, choice, win, biasc, T, &err)) return fail("bias", &err);
        if (ppl_q(&b, &ppl1, &err)) return fail("eval", &err);
        uninstall(&b);
        printf("uniform %s: ppl %.4f -> bias-corrected %.4f\n", b.opt[k], ppl0, ppl1);
    }
    if (biasc > 0) goto done;
    /* uniform options, for reference */
    for (int k = 0; k < b.no; k++) {
        int choice[512];
        for (int l = 0; l < b.nl; l++)
            choice[l] = k;
        install(&b, choice);
        double ppl, joint = NAN;
        if (ppl_q(&b, &ppl, &err)) return fail("eval", &err);
        if (s && aq_sens_installed_kl(s, &joint, &err)) return fail("kl", &err);
        uninstall(&b);
        printf("uniform %-6s: ppl %.4f joint KL %.4f\n", b.opt[k], ppl, joint);
    }
done:
    aq_sens_free(s);
    for (int i = 0; i < b.nl * b.no; i++) {
        free(b.c[i].w);
        free(b.c[i].bias);
    }
    for (int j = 0; j < b.ncol; j++)
        free(b.loss[j]);
    free(b.c);
    free(b.name);
    free(b.params);
    free(win);
    aq_seqs_free(&b.eval);
    aq_docs_free(&docs);
    aq_tok_close(tok);
    aq_model_free(b.m);
    return 0;
}
