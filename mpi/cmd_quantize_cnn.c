/* cmd_quantize_cnn.c — `adaquant quantize MODEL.onnx`: the command line of
 * the distributed CNN quantizer (the run is mpi/pipeline/cnn_pipe.c). Every
 * argument is checked here, before any file is read; the files themselves
 * (model, images, index list) and the budget are checked by the run before
 * any task starts. docs/CNN.md, "adaquant quantize MODEL.onnx". */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "cli.h"
#include "cmd_eval_cnn.h"
#include "cmd_quantize_cnn.h"
#include "pipeline/cnn_pipe.h"
#include "pipeline/progress.h"

#define CMD "quantize"

void aq_quantize_cnn_help(FILE *out)
{
    aq_cnnq_tune_opts t;
    aq_cnnq_tune_defaults(&t);
    fprintf(out,
            "\n"
            "usage: [mpirun -np P] adaquant quantize MODEL.onnx --calib-images IDX\n"
            "           [--calib-indices FILE | --calib-count N] --eval-images IDX --eval-labels IDX\n"
            "           [--eval-range A:B] --normalize MEAN,STD|none --options w4a4,w8a8,...\n"
            "           [--keep REGEX=OPT] [--target-bits B | --target-size BYTES]\n"
            "           [--method adaquant|rtn] [--mode parallel|sequential] [--work DIR] --out OUTDIR\n"
            "\n"
            "An ONNX CNN (docs/CNN.md): BatchNorms folded, layer inputs captured on the\n"
            "calibration images, every (Conv/Gemm/MatMul layer, option) task quantized over\n"
            "the ranks (result files in WORK/results, --resume), one option per layer chosen\n"
            "by CBC, zero points rounded, BN re-estimation and bias correction/tuning, FP vs\n"
            "quantized top-1 on the evaluation images; OUTDIR (model.onnx, layers.safetensors,\n"
            "quantization.json, report.json, predictions.txt) written atomically. Bytes do not\n"
            "depend on P. `adaquant export OUTDIR --format onnx-qdq` writes the QDQ model.\n"
            "  --calib-images IDX     idx3 images for calibration (gzip or plain)\n"
            "  --calib-indices FILE   the image indices to use (whitespace-separated)\n"
            "  --calib-count N        else the first N images (default 256)\n"
            "  --eval-images IDX, --eval-labels IDX, --eval-range A:B (half-open)\n"
            "  --normalize MEAN,STD   x = (u8/255 - MEAN) / STD; none: raw 0..255 (required)\n"
            "  --options LIST         the menu, e.g. w8a8,w4a8,w4a4,w2a8 (default w8a8)\n"
            "  --keep REGEX=OPT       layers whose node name matches take OPT (repeatable)\n"
            "  --target-bits B        average weight bits over the layers' weights\n"
            "  --target-size BYTES    bytes of the quantized layers (codes packed, f32\n"
            "                         scale/zero/bias per channel, activation pair)\n"
            "                         (neither: the least loss, i.e. the widest options)\n"
            "  --method M             adaquant (default) or rtn (min/max grid)\n"
            "  --mode M               parallel (default) or sequential (each layer on the\n"
            "                         quantized layers before it; one option per layer:\n"
            "                         the first matching --keep, else the first option)\n"
            "  --iters N              AdaQuant Adam iterations per outer step (default 100)\n"
            "  --outer-iters N        AdaQuant activation-range steps when a < 16 (default %d)\n"
            "  --max-rows N           im2col rows (images x output positions) a conv task\n"
            "                         fits on, from the first images (default %ld; 0: all)\n"
            "  --seed N               AdaQuant seed (default 0)\n"
            "  --bn-reestimate 0|1    (default %d)   --bias-correct 0|1 (default %d)\n"
            "  --bias-tune N          bias-tuning steps (default %d)\n"
            "  --bias-lr X            its relative learning rate (default %g)\n"
            "  --bias-temperature T   softmax temperature of its KL (default %g; logits\n"
            "                         in the thousands, as the MNIST zoo model's, want ~1000)\n"
            "  --batch N              images per forward pass (default 64)\n"
            "  --work DIR             result files (default OUTDIR.work); --resume reuses them\n"
            "  --progress MODE        bar, plain, none or auto (default)\n",
            AQ_CNNP_OUTER_ITERS, (long)AQ_CNNP_MAX_ROWS, t.bn_reestimate, t.bias_correct, t.bias_iters, t.bias_lr,
            t.temperature);
}

enum { O_CI = 256, O_CX, O_CN, O_EI, O_EL, O_ER, O_NORM, O_OPT, O_KEEP, O_TB, O_TS, O_METH, O_MODE,
       O_WORK, O_OUT, O_RES, O_IT, O_OIT, O_ROWS, O_SEED, O_BN, O_BC, O_BT, O_BTEMP, O_BLR, O_BATCH, O_PROG };

static int parse_long(const char *s, long lo, long hi, long *v)
{
    char *end;
    *v = strtol(s, &end, 10);
    return end == s || *end || *v < lo || *v > hi ? -1 : 0;
}

static int parse_options(aq_cnnp_args *a, const char *s)
{
    if (strlen(s) >= sizeof a->opt_buf) return aq_cli_usage(CMD, "--options: list too long");
    strcpy(a->opt_buf, s);
    a->n_opt = 0;
    for (char *p = strtok(a->opt_buf, ","); p; p = strtok(NULL, ",")) {
        aq_layer_opts o;
        aq_error e = {0};
        aq_layer_opts_default(&o);
        if (aq_layer_opts_parse(p, &o, &e) != AQ_OK) return aq_cli_usage(CMD, "--options: %s", e.msg);
        for (int k = 0; k < a->n_opt; k++)
            if (!strcmp(a->opt[k], p)) return aq_cli_usage(CMD, "--options lists '%s' twice", p);
        if (a->n_opt == AQ_CNNP_MAX_OPT) return aq_cli_usage(CMD, "--options: at most %d options", AQ_CNNP_MAX_OPT);
        a->opt[a->n_opt++] = p;
    }
    return a->n_opt ? 0 : aq_cli_usage(CMD, "--options is empty");
}

static int parse_keep(aq_cnnp_args *a, const char *s)
{
    if (a->n_keep == AQ_CNNP_MAX_KEEP) return aq_cli_usage(CMD, "at most %d --keep rules", AQ_CNNP_MAX_KEEP);
    char *b = a->keep_buf[a->n_keep], *eq;
    if (strlen(s) >= sizeof a->keep_buf[0] || !(eq = strrchr(strcpy(b, s), '=')) || eq == b || !eq[1])
        return aq_cli_usage(CMD, "--keep must be REGEX=OPTION, not '%s'", s);
    *eq = 0;
    a->keep_re[a->n_keep] = b, a->keep_opt[a->n_keep++] = eq + 1;
    return 0;
}

static int parse_one(aq_cnnp_args *a, int c, const char *v, int *have_norm)
{
    long n;
    char *end;
    aq_error e = {0};
    switch (c) {
    case O_CI: a->calib_images = v; return 0;
    case O_CX: a->calib_indices = v; return 0;
    case O_CN: return parse_long(v, 1, 1L << 24, &a->calib_count) ? aq_cli_usage(CMD, "invalid --calib-count '%s'", v) : 0;
    case O_EI: a->eval_images = v; return 0;
    case O_EL: a->eval_labels = v; return 0;
    case O_ER: return aq_cnn_parse_range(v, &a->eval_from, &a->eval_to) ? aq_cli_usage(CMD, "--eval-range must be A:B with 0 <= A < B, not '%s'", v) : 0;
    case O_NORM:
        if (aq_cnn_norm_parse(v, &a->norm, &e) != AQ_OK) return aq_cli_usage(CMD, "--normalize: %s", e.msg);
        return *have_norm = 1, 0;
    case O_OPT: return parse_options(a, v);
    case O_KEEP: return parse_keep(a, v);
    case O_TB:
    case O_TS: {
        double d = strtod(v, &end);
        if (end == v || *end || !(d > 0)) return aq_cli_usage(CMD, "invalid %s '%s'", c == O_TB ? "--target-bits" : "--target-size", v);
        *(c == O_TB ? &a->target_bits : &a->target_size) = d;
        return 0;
    }
    case O_METH:
        if (strcmp(v, "adaquant") && strcmp(v, "rtn")) return aq_cli_usage(CMD, "--method must be adaquant or rtn, not '%s'", v);
        a->method = !strcmp(v, "rtn") ? AQ_CNNQ_RTN_MINMAX : AQ_CNNQ_ADAQUANT;
        return 0;
    case O_MODE:
        if (strcmp(v, "parallel") && strcmp(v, "sequential"))
            return aq_cli_usage(CMD, "--mode must be parallel or sequential, not '%s'", v);
        return a->sequential = !strcmp(v, "sequential"), 0;
    case O_WORK:
        if (strlen(v) >= sizeof a->work) return aq_cli_usage(CMD, "--work: path too long");
        return strcpy(a->work, v), 0;
    case O_OUT: a->out = v; return 0;
    case O_RES: a->resume = 1; return 0;
    case O_IT: return parse_long(v, 1, 100000, &n) ? aq_cli_usage(CMD, "invalid --iters '%s'", v) : (a->iters = (int)n, 0);
    case O_OIT: return parse_long(v, 1, 1000, &n) ? aq_cli_usage(CMD, "invalid --outer-iters '%s'", v) : (a->outer_iters = (int)n, 0);
    case O_ROWS: return parse_long(v, 0, 1L << 40, &a->max_rows) ? aq_cli_usage(CMD, "invalid --max-rows '%s'", v) : 0;
    case O_SEED: return parse_long(v, 0, 1L << 30, &n) ? aq_cli_usage(CMD, "invalid --seed '%s'", v) : (a->seed = (uint64_t)n, 0);
    case O_BN: case O_BC:
        if (parse_long(v, 0, 1, &n)) return aq_cli_usage(CMD, "%s must be 0 or 1, not '%s'", c == O_BN ? "--bn-reestimate" : "--bias-correct", v);
        *(c == O_BN ? &a->tune.bn_reestimate : &a->tune.bias_correct) = (int)n;
        return 0;
    case O_BT: return parse_long(v, 0, 1000000, &n) ? aq_cli_usage(CMD, "invalid --bias-tune '%s'", v) : (a->tune.bias_iters = (int)n, 0);
    case O_BTEMP:
    case O_BLR: {
        double d = strtod(v, &end);
        if (end == v || *end || !(d > 0) || !isfinite(d))
            return aq_cli_usage(CMD, "invalid %s '%s' (a positive number)", c == O_BTEMP ? "--bias-temperature" : "--bias-lr", v);
        *(c == O_BTEMP ? &a->tune.temperature : &a->tune.bias_lr) = d;
        return 0;
    }
    case O_BATCH: return parse_long(v, 1, 65536, &n) ? aq_cli_usage(CMD, "invalid --batch '%s'", v) : (a->batch = (int)n, 0);
    case O_PROG: {
        aq_progress_mode m;
        if (aq_progress_mode_parse(v, &m)) return aq_cli_usage(CMD, "--progress must be bar, plain, none or auto, not '%s'", v);
        return aq_progress_export(m), 0;
    }
    default: return aq_cli_usage(CMD, "unknown option");
    }
}

/* What the options alone decide: required ones, conflicts, --keep options in the menu. */
static int check(aq_cnnp_args *a, int have_norm)
{
    if (!a->calib_images) return aq_cli_usage(CMD, "--calib-images IDX is required with an .onnx model");
    if (!a->eval_images || !a->eval_labels) return aq_cli_usage(CMD, "--eval-images and --eval-labels are required");
    if (!have_norm) return aq_cli_usage(CMD, "--normalize MEAN,STD (or none: raw 0..255 pixels) is required");
    if (!a->out) return aq_cli_usage(CMD, "--out OUTDIR is required");
    if (a->calib_indices && a->calib_count > 0) return aq_cli_usage(CMD, "give --calib-indices or --calib-count, not both");
    if (a->target_bits > 0 && a->target_size > 0) return aq_cli_usage(CMD, "give --target-bits or --target-size, not both");
    if (a->sequential && (a->target_bits > 0 || a->target_size > 0))
        return aq_cli_usage(CMD, "--mode sequential has no allocation: choose the options with --options/--keep");
    for (int k = 0; k < a->n_keep; k++) {
        int found = 0;
        for (int j = 0; j < a->n_opt; j++) found |= !strcmp(a->opt[j], a->keep_opt[k]);
        if (!found) return aq_cli_usage(CMD, "--keep %s=%s: option '%s' is not in --options", a->keep_re[k], a->keep_opt[k], a->keep_opt[k]);
    }
    if (!a->calib_indices && a->calib_count == 0) a->calib_count = 256;
    if (!a->work[0]) snprintf(a->work, sizeof a->work, "%.*s.work", AQ_CNNP_PATH - 8, a->out);
    return 0;
}

static int parse(int argc, char **argv, aq_cnnp_args *a)
{
    static const struct option opts[] = {
        {"calib-images", 1, 0, O_CI}, {"calib-indices", 1, 0, O_CX}, {"calib-count", 1, 0, O_CN},
        {"eval-images", 1, 0, O_EI},  {"eval-labels", 1, 0, O_EL},   {"eval-range", 1, 0, O_ER},
        {"normalize", 1, 0, O_NORM},  {"options", 1, 0, O_OPT},      {"keep", 1, 0, O_KEEP},
        {"target-bits", 1, 0, O_TB},  {"target-size", 1, 0, O_TS},   {"method", 1, 0, O_METH},
        {"mode", 1, 0, O_MODE},       {"work", 1, 0, O_WORK},        {"out", 1, 0, O_OUT},
        {"resume", 0, 0, O_RES},      {"iters", 1, 0, O_IT},         {"seed", 1, 0, O_SEED},
        {"outer-iters", 1, 0, O_OIT}, {"max-rows", 1, 0, O_ROWS},
        {"bn-reestimate", 1, 0, O_BN}, {"bias-correct", 1, 0, O_BC}, {"bias-tune", 1, 0, O_BT},
        {"bias-temperature", 1, 0, O_BTEMP}, {"bias-lr", 1, 0, O_BLR},
        {"batch", 1, 0, O_BATCH},     {"progress", 1, 0, O_PROG},    {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->eval_from = a->eval_to = -1;
    a->batch = 64;
    a->outer_iters = AQ_CNNP_OUTER_ITERS;
    a->max_rows = AQ_CNNP_MAX_ROWS;
    a->method = AQ_CNNQ_ADAQUANT;
    a->argc = argc, a->argv = argv;
    aq_cnnq_tune_defaults(&a->tune);
    int rc = parse_options(a, "w8a8"), c, have_norm = 0;
    opterr = 0;
    while (!rc && (c = getopt_long(argc, argv, "", opts, NULL)) != -1)
        rc = c == '?' ? aq_cli_usage(CMD, "unknown option '%s'", argv[optind - 1]) : parse_one(a, c, optarg, &have_norm);
    if (rc) return rc;
    if (optind != argc - 1) return aq_cli_usage(CMD, "expected exactly one MODEL.onnx argument");
    a->model = argv[optind];
    return check(a, have_norm);
}

int aq_quantize_cnn_main(int argc, char **argv)
{
    static aq_cnnp_args a; /* large (paths), one per process */
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int rc = parse(argc, argv, &a);
    if (rc) return rc;
    aq_error err = {0};
    if (aq_cnnp_run(MPI_COMM_WORLD, &a, &err) != AQ_OK) return rank == 0 ? aq_cli_fail(CMD, &err) : 1;
    return 0;
}
