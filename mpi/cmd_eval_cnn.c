/* cmd_eval_cnn.c — `adaquant eval MODEL.onnx`: top-1 accuracy of an ONNX CNN
 * (src/cnn) on idx(.gz) images and labels, its predictions for a later
 * comparison, and agreement with another prediction set; `adaquant eval
 * OUTDIR` of a quantized CNN (`quantize MODEL.onnx`): FP and quantized top-1
 * and their agreement, the run's report.json figures (docs/CNN.md). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../io/idx.h"
#include "../src/blas/blas_kernel.h"
#include "../src/cnn/cnn.h"
#include "cli.h"
#include "pipeline/cnn_pipe.h"
#include "cmd_eval_cnn.h"

#define CMD "eval"

void aq_eval_cnn_help(FILE *out)
{
    fprintf(out, "\n"
                 "usage: adaquant eval MODEL.onnx --eval-images IDX [--eval-labels IDX]\n"
                 "                     --normalize MEAN,STD|none [--eval-range A:B] [--batch N]\n"
                 "                     [--predictions FILE] [--compare FILE] [--json]\n"
                 "\n"
                 "Top-1 accuracy of an ONNX CNN (docs/CNN.md) on idx images (gzip or plain).\n"
                 "Pixels are normalised as x = (u8/255 - MEAN) / STD; 'none' feeds the raw\n"
                 "0..255 values (the ONNX model-zoo MNIST model). --normalize is required.\n"
                 "  -i, --eval-images IDX    idx3 images [n, rows, cols] (u8)\n"
                 "  -L, --eval-labels IDX    idx1 labels [n]: prints top-1\n"
                 "  -N, --normalize M,S      MEAN,STD or none\n"
                 "  -r, --eval-range A:B     images A..B-1 only (half-open, like Python)\n"
                 "  -b, --batch N            images per forward pass (default 64; memory)\n"
                 "  -p, --predictions FILE   write the predicted class of each image, one a line\n"
                 "  -o, --logits FILE        write the model outputs, float32 little-endian\n"
                 "                           [images, classes] (no header)\n"
                 "  -c, --compare FILE       a predictions file of the same images: prints the\n"
                 "                           top-1 agreement with it\n"
                 "  -j, --json               print one JSON object instead of text\n"
                 "Throughput (images/s) and the BLIS kernel go to stderr.\n"
                 "\n"
                 "usage: adaquant eval OUTDIR --eval-images IDX [--eval-labels IDX] [--eval-range A:B]\n"
                 "                     [--normalize MEAN,STD|none] [--predictions FILE] [--compare FILE] [--json]\n"
                 "\n"
                 "OUTDIR of `adaquant quantize MODEL.onnx`: the FP model (OUTDIR/model.onnx) and\n"
                 "the quantized one (as the run evaluated it and `export` writes it) on the\n"
                 "images: top-1 of each and their agreement, report.json's run.evaluation for\n"
                 "the same images. --normalize defaults to the run's; --predictions and\n"
                 "--compare are the quantized model's.\n");
}

int aq_eval_is_onnx(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (n > 5 && !strcmp(argv[i] + n - 5, ".onnx")) return 1;
        if (aq_cnnp_is_outdir(argv[i])) return 1;
    }
    return 0;
}

typedef struct cnn_args {
    const char *model, *images, *labels, *pred_out, *compare, *logits_out;
    aq_cnn_norm norm;
    int have_norm, json, batch;
    int outdir;    /* model is a quantized CNN OUTDIR */
    long from, to; /* -1: the whole file */
} cnn_args;

int aq_cnn_parse_range(const char *s, long *from, long *to)
{
    char *end;
    *from = strtol(s, &end, 10);
    if (end == s || *end != ':' || *from < 0) return -1;
    const char *t = end + 1;
    *to = strtol(t, &end, 10);
    return end == t || *end || *to <= *from ? -1 : 0;
}

static int parse(int argc, char **argv, cnn_args *a)
{
    static const struct option opts[] = {
        {"eval-images", required_argument, 0, 'i'}, {"eval-labels", required_argument, 0, 'L'},
        {"normalize", required_argument, 0, 'N'},   {"eval-range", required_argument, 0, 'r'},
        {"batch", required_argument, 0, 'b'},       {"predictions", required_argument, 0, 'p'},
        {"compare", required_argument, 0, 'c'},     {"json", no_argument, 0, 'j'},
        {"logits", required_argument, 0, 'o'},      {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->batch = 64;
    a->from = a->to = -1;
    aq_error e = {0};
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "i:L:N:r:b:p:c:o:j", opts, NULL)) != -1) {
        switch (c) {
        case 'i': a->images = optarg; break;
        case 'L': a->labels = optarg; break;
        case 'N':
            if (aq_cnn_norm_parse(optarg, &a->norm, &e) != AQ_OK)
                return aq_cli_usage(CMD, "--normalize: %s", e.msg);
            a->have_norm = 1;
            break;
        case 'r':
            if (aq_cnn_parse_range(optarg, &a->from, &a->to))
                return aq_cli_usage(CMD, "--eval-range must be A:B with 0 <= A < B, not '%s'",
                                    optarg);
            break;
        case 'b':
            a->batch = (int)strtol(optarg, &end, 10);
            if (*end || a->batch < 1 || a->batch > 65536)
                return aq_cli_usage(CMD, "invalid --batch '%s'", optarg);
            break;
        case 'p': a->pred_out = optarg; break;
        case 'c': a->compare = optarg; break;
        case 'o': a->logits_out = optarg; break;
        case 'j': a->json = 1; break;
        default: return aq_cli_usage(CMD, "unknown option");
        }
    }
    if (optind != argc - 1) return aq_cli_usage(CMD, "expected exactly one MODEL.onnx or OUTDIR argument");
    a->model = argv[optind];
    a->outdir = aq_cnnp_is_outdir(a->model);
    if (!a->images) return aq_cli_usage(CMD, "--eval-images IDX is required with an .onnx model");
    if (a->outdir && a->logits_out) return aq_cli_usage(CMD, "--logits is for an .onnx model, not a quantized OUTDIR");
    if (a->outdir && !a->have_norm) {
        if (aq_cnnp_outdir_norm(a->model, &a->norm, &e) != AQ_OK) return aq_cli_fail(CMD, &e);
        a->have_norm = 1;
    }
    if (!a->have_norm)
        return aq_cli_usage(CMD, "--normalize MEAN,STD (or none: raw 0..255 pixels) is required");
    return 0;
}

typedef struct cnn_result {
    size_t n, from, correct, agree, classes;
    size_t correct_fp, agree_fp; /* OUTDIR: the FP model's, and quantized vs FP */
    int have_labels, have_compare;
    double seconds;
} cnn_result;

/* A predictions file: one class a line, exactly n lines. */
static aq_status read_predictions(const char *path, size_t n, int32_t *out, aq_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) return aq_fail(err, AQ_ERR_IO, "%s: cannot open the predictions to compare with", path);
    size_t k = 0;
    long v;
    int extra = 0;
    while (fscanf(f, "%ld", &v) == 1) {
        if (k < n) out[k] = (int32_t)v;
        k++;
    }
    extra = !feof(f);
    fclose(f);
    if (extra || k != n)
        return aq_fail(err, AQ_ERR_FORMAT, "%s: %s %zu predictions, the evaluation has %zu images",
                       path, extra ? "unreadable text after" : "holds", k, n);
    return AQ_OK;
}

/* The predictions as text (one a line), or with `logits` the raw outputs. */
static aq_status write_out(const char *path, const int32_t *pred, const float *logits, size_t n,
                           aq_error *err)
{
    FILE *f = fopen(path, logits ? "wb" : "w");
    if (!f) return aq_fail(err, AQ_ERR_IO, "%s: cannot create the output file", path);
    if (logits)
        fwrite(logits, sizeof(float), n, f);
    else
        for (size_t i = 0; i < n; i++)
            fprintf(f, "%d\n", pred[i]);
    if (ferror(f) | (fclose(f) != 0)) return aq_fail(err, AQ_ERR_IO, "%s: write failed", path);
    return AQ_OK;
}

/* Labels of the evaluated images against the predictions. */
static aq_status score_labels(const cnn_args *a, const aq_idx *im, const int32_t *pred,
                              const int32_t *pred_fp, cnn_result *r, aq_error *err)
{
    aq_idx lb = {0};
    AQ_TRY(aq_idx_read_labels(a->labels, 0, &lb, err));
    aq_status st = AQ_OK;
    if (lb.n != im->n) {
        st = aq_fail(err, AQ_ERR_SHAPE, "%s holds %lld labels, %s %lld images", a->labels,
                     (long long)lb.n, a->images, (long long)im->n);
        goto done;
    }
    for (size_t i = 0; i < r->n; i++) {
        uint8_t l = lb.data[r->from + i];
        if (l >= r->classes) {
            st = aq_fail(err, AQ_ERR_FORMAT,
                         "%s: label %u of image %zu is not below the model's %zu classes",
                         a->labels, l, r->from + i, r->classes);
            goto done;
        }
        r->correct += pred[i] == (int32_t)l;
        if (pred_fp) r->correct_fp += pred_fp[i] == (int32_t)l;
    }
    r->have_labels = 1;
done:
    aq_idx_free(&lb);
    return st;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static aq_status run_cnn(const cnn_args *a, cnn_result *r, aq_error *err)
{
    aq_cnn_graph g = {0};
    aq_idx im = {0};
    int32_t *pred = NULL, *other = NULL, *pred_fp = NULL;
    float *logits = NULL;
    aq_status st;
    if (!a->outdir) AQ_TRY_GOTO(st, aq_onnx_read(a->model, &g, err), done);
    AQ_TRY_GOTO(st, aq_idx_read_images(a->images, &im, err), done);
    r->from = a->from < 0 ? 0 : (size_t)a->from;
    size_t to = a->to < 0 ? (size_t)im.n : (size_t)a->to;
    if (to > (size_t)im.n) {
        st = aq_fail(err, AQ_ERR_ARG, "--eval-range %zu:%zu: %s holds %lld images", r->from, to,
                     a->images, (long long)im.n);
        goto done;
    }
    r->n = to - r->from;
    pred = malloc(r->n * sizeof *pred);
    pred_fp = a->outdir ? malloc(r->n * sizeof *pred_fp) : NULL;
    if (!pred || (a->outdir && !pred_fp)) {
        st = aq_fail_nomem(err, "predictions", r->n * sizeof *pred);
        goto done;
    }
    size_t px = (size_t)(im.rows * im.cols), cls;
    if (a->logits_out) { /* the output size per image, from a plan for one image */
        aq_cnn_plan p1;
        AQ_TRY_GOTO(st, aq_cnn_plan_init(&g, 1, &p1, err), done);
        cls = aq_cnn_numel(&p1.shape[g.output]);
        aq_cnn_plan_free(&p1);
        if (!(logits = malloc(r->n * cls * sizeof(float)))) {
            st = aq_fail_nomem(err, "logits", r->n * cls * sizeof(float));
            goto done;
        }
    }
    double t0 = now_seconds();
    if (a->outdir)
        st = aq_cnnp_eval_outdir(a->model, im.data + r->from * px, r->n, px, &a->norm, a->batch,
                                 pred_fp, pred, &r->classes, err);
    else
        st = aq_cnn_predict(&g, im.data + r->from * px, r->n, px, &a->norm, a->batch, pred,
                            logits, &r->classes, err);
    if (st != AQ_OK) goto done;
    r->seconds = now_seconds() - t0;
    if (pred_fp) r->agree_fp = aq_cnn_count_equal(pred, pred_fp, r->n);
    if (a->labels) AQ_TRY_GOTO(st, score_labels(a, &im, pred, pred_fp, r, err), done);
    if (a->compare) {
        other = malloc(r->n * sizeof *other);
        if (!other) {
            st = aq_fail_nomem(err, "predictions", r->n * sizeof *other);
            goto done;
        }
        AQ_TRY_GOTO(st, read_predictions(a->compare, r->n, other, err), done);
        r->agree = aq_cnn_count_equal(pred, other, r->n);
        r->have_compare = 1;
    }
    if (a->pred_out) AQ_TRY_GOTO(st, write_out(a->pred_out, pred, NULL, r->n, err), done);
    if (a->logits_out) st = write_out(a->logits_out, NULL, logits, r->n * r->classes, err);
done:
    free(logits);
    free(pred);
    free(pred_fp);
    free(other);
    aq_idx_free(&im);
    aq_cnn_graph_free(&g);
    return st;
}

static double frac(size_t k, size_t n) { return n ? (double)k / (double)n : 0; }

/* OUTDIR: the names of report.json's run.evaluation. */
static void print_outdir(const cnn_args *a, const cnn_result *r)
{
    if (a->json) {
        printf("{\"images\": %zu, \"first\": %zu, \"classes\": %zu, \"agree\": %zu, \"agreement\": %.10g", r->n,
               r->from, r->classes, r->agree_fp, frac(r->agree_fp, r->n));
        if (r->have_labels)
            printf(", \"correct_fp\": %zu, \"correct_quantized\": %zu, \"top1_fp\": %.10g, \"top1_quantized\": %.10g",
                   r->correct_fp, r->correct, frac(r->correct_fp, r->n), frac(r->correct, r->n));
        if (r->have_compare) printf(", \"compare_agree\": %zu, \"compare_agreement\": %.10g", r->agree, frac(r->agree, r->n));
        printf("}\n");
        return;
    }
    printf("images:           %zu (from %zu)\n", r->n, r->from);
    if (r->have_labels) {
        printf("top-1 FP:         %.4f (%zu/%zu)\n", frac(r->correct_fp, r->n), r->correct_fp, r->n);
        printf("top-1 quantized:  %.4f (%zu/%zu)\n", frac(r->correct, r->n), r->correct, r->n);
    }
    printf("agreement:        %.4f (%zu/%zu, quantized vs FP)\n", frac(r->agree_fp, r->n), r->agree_fp, r->n);
    if (r->have_compare) printf("compare:          %.4f (%zu/%zu)\n", frac(r->agree, r->n), r->agree, r->n);
}

static void print_result(const cnn_args *a, const cnn_result *r)
{
    if (a->outdir) {
        print_outdir(a, r);
        return;
    }
    double top1 = r->n ? (double)r->correct / (double)r->n : 0,
           agr = r->n ? (double)r->agree / (double)r->n : 0;
    if (a->json) {
        printf("{\"images\": %zu, \"first\": %zu, \"classes\": %zu", r->n, r->from, r->classes);
        if (r->have_labels) printf(", \"correct\": %zu, \"top1\": %.10g", r->correct, top1);
        if (r->have_compare) printf(", \"agree\": %zu, \"agreement\": %.10g", r->agree, agr);
        printf("}\n");
        return;
    }
    printf("images:           %zu (from %zu)\n", r->n, r->from);
    if (r->have_labels) printf("top-1:            %.4f (%zu/%zu)\n", top1, r->correct, r->n);
    if (r->have_compare) printf("agreement:        %.4f (%zu/%zu)\n", agr, r->agree, r->n);
}

int aq_eval_cnn_main(int argc, char **argv)
{
    cnn_args a;
    int rc = parse(argc, argv, &a);
    if (rc) return rc;
    aq_error err = {0};
    cnn_result r = {0};
    if (run_cnn(&a, &r, &err) != AQ_OK) return aq_cli_fail(CMD, &err);
    char blas[160];
    aq_blas_kernel_describe(blas, sizeof blas);
    fprintf(stderr, "eval: %zu images in %.2f s (%.0f images/s, batch %d), %s\n", r.n, r.seconds,
            r.seconds > 0 ? (double)r.n / r.seconds : 0.0, a.batch, blas);
    print_result(&a, &r);
    return 0;
}
