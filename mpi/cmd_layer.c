/* cmd_layer.c — `adaquant layer BUNDLE.safetensors --option w4a8`: AdaQuant on
 * one layer bundle (docs/BUNDLE.md), for experiments and as the reference
 * single-layer path. Prints the losses (or JSON) and optionally writes the
 * quantized layer in the qlayer layout (src/adaquant/qlayer.h). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../io/safetensors.h"
#include "../src/adaquant/adaquant.h"
#include "../src/adaquant/conv.h"
#include "../src/adaquant/qlayer.h"
#include "cli.h"

#define CMD "layer"

static void layer_help(FILE *out)
{
    fprintf(out,
            "usage: adaquant layer BUNDLE.safetensors --option wKaM [options]\n"
            "\n"
            "Run AdaQuant on one layer bundle and report the normalised output error\n"
            "||Y - Y^||^2 / ||Y||^2 of round-to-nearest, GPTQ and AdaQuant (exact, from the\n"
            "float64 Grams of the bundle's inputs).\n"
            "\n"
            "BUNDLE (docs/BUNDLE.md): safetensors with\n"
            "  weight    [d_out, d_in], or a conv weight [C_out, C_in/groups, kh, kw] with\n"
            "            __metadata__ stride, padding, dilation (\"h,w\" or \"n\") and groups\n"
            "  bias      [d_out] (optional)\n"
            "  inputs    [N, d_in], or conv inputs [N, C_in, H, W]\n"
            "  inputs_q  same shape (optional): the inputs the quantized layer sees\n"
            "            (sequential mode); the target stays weight . inputs + bias\n"
            "  dtypes F32, F16, BF16 or F64.\n"
            "\n"
            "options:\n"
            "  -o, --option wKaM     bit option: K in 2,3,4,6,8 weight bits, M in 4,8,16\n"
            "                        activation bits (16 = not quantized); suffix s =\n"
            "                        symmetric weights (e.g. w4a8s). Required.\n"
            "  -i, --iters N         Adam iterations per activation step (default 100)\n"
            "      --init rtn|gptq   initialisation (default gptq)\n"
            "      --mode auto|gram|rows  gradient from the Grams (one gemm per step) or\n"
            "                        from mini-batches of rows (default auto: gram if N > d_in)\n"
            "      --starts N        initial grids tried, best kept per row (default 5)\n"
            "      --polish N        exact polishing rounds (default 8)\n"
            "  -s, --seed S          user seed (mixed with the layer name and option)\n"
            "  -n, --name P          layer name / tensor prefix for --out (default \"layer\")\n"
            "  -O, --out Q.safetensors  write the quantized layer (qlayer layout, prefix P)\n"
            "  -j, --json            print one JSON object: option, mode, loss_rtn,\n"
            "                        loss_gptq (when computed), loss_init, loss_final,\n"
            "                        iterations, seconds, and name, d_out, d_in, rows, seed\n"
            "  -h, --help            this text\n"
            "\n"
            "Errors (exit 1): missing tensor, shape mismatch, N = 0, NaN/Inf in inputs or\n"
            "weights, all-zero inputs or an all-zero output (the normalised error is then\n"
            "undefined). Constant input channels are legal (a note is printed).\n");
}

typedef struct bundle {
    aq_st_file *f;
    float *w, *b, *x, *xq;
    int conv;
    aq_conv_spec cs;
    int N, H, W;
    size_t d_out, d_in, rows;
} bundle;

static void bundle_free(bundle *b)
{
    free(b->w);
    free(b->b);
    free(b->x);
    free(b->xq);
    aq_st_close(b->f);
}

static aq_status get_f32(aq_st_file *f, const char *name, int required, const aq_tensor_view **v, float **out,
                         aq_error *err)
{
    *out = NULL;
    *v = aq_st_find(f, name);
    if (!*v) {
        if (!required) return AQ_OK;
        return aq_fail(err, AQ_ERR_NOTFOUND, "%s: tensor '%s' is missing (see docs/BUNDLE.md)", aq_st_path(f), name);
    }
    aq_status st = aq_view_to_f32_alloc(*v, out, err);
    if (st != AQ_OK) aq_error_prefix(err, "%s: tensor '%s'", aq_st_path(f), name);
    return st;
}

static aq_status meta_pair(const aq_st_file *f, const char *key, int def, int *a, int *b, aq_error *err)
{
    const char *s = aq_st_meta_get(f, key);
    *a = *b = def;
    if (!s) return AQ_OK;
    int n = 0;
    if (sscanf(s, "%d,%d%n", a, b, &n) == 2 && s[n] == '\0') return AQ_OK;
    if (sscanf(s, "%d%n", a, &n) == 1 && s[n] == '\0') {
        *b = *a;
        return AQ_OK;
    }
    return aq_fail(err, AQ_ERR_FORMAT, "%s: metadata %s = '%s': expected \"n\" or \"h,w\"", aq_st_path(f), key, s);
}

static aq_status shape_error(const aq_st_file *f, const char *name, const aq_tensor_view *v, const char *want,
                             aq_error *err)
{
    char got[128] = "";
    size_t k = 0;
    for (int i = 0; i < v->ndim && k < sizeof got - 24; i++)
        k += (size_t)snprintf(got + k, sizeof got - k, "%s%lld", i ? ", " : "", (long long)v->shape[i]);
    return aq_fail(err, AQ_ERR_SHAPE, "%s: tensor '%s' has shape [%s], expected %s", aq_st_path(f), name, got, want);
}

static aq_status load_bundle(const char *path, bundle *b, aq_error *err)
{
    memset(b, 0, sizeof *b);
    AQ_TRY(aq_st_open(path, &b->f, err));
    const aq_tensor_view *wv, *bv, *xv, *qv;
    AQ_TRY(get_f32(b->f, "weight", 1, &wv, &b->w, err));
    AQ_TRY(get_f32(b->f, "inputs", 1, &xv, &b->x, err));
    AQ_TRY(get_f32(b->f, "bias", 0, &bv, &b->b, err));
    AQ_TRY(get_f32(b->f, "inputs_q", 0, &qv, &b->xq, err));
    char want[160];
    if (wv->ndim == 2) {
        b->d_out = (size_t)wv->shape[0];
        b->d_in = (size_t)wv->shape[1];
        snprintf(want, sizeof want, "[N, %zu] (d_in of weight)", b->d_in);
        if (xv->ndim != 2 || (size_t)xv->shape[1] != b->d_in) return shape_error(b->f, "inputs", xv, want, err);
        b->rows = (size_t)xv->shape[0];
    } else if (wv->ndim == 4) {
        b->conv = 1;
        aq_conv_spec *s = &b->cs;
        s->c_out = (int)wv->shape[0];
        s->kh = (int)wv->shape[2];
        s->kw = (int)wv->shape[3];
        AQ_TRY(meta_pair(b->f, "stride", 1, &s->stride_h, &s->stride_w, err));
        AQ_TRY(meta_pair(b->f, "padding", 0, &s->pad_h, &s->pad_w, err));
        AQ_TRY(meta_pair(b->f, "dilation", 1, &s->dil_h, &s->dil_w, err));
        int g1;
        AQ_TRY(meta_pair(b->f, "groups", 1, &s->groups, &g1, err));
        s->c_in = (int)wv->shape[1] * s->groups;
        snprintf(want, sizeof want, "[N, %d, H, W] (C_in = %lld x groups %d)", s->c_in, (long long)wv->shape[1],
                 s->groups);
        if (xv->ndim != 4 || xv->shape[1] != s->c_in) return shape_error(b->f, "inputs", xv, want, err);
        b->N = (int)xv->shape[0];
        b->H = (int)xv->shape[2];
        b->W = (int)xv->shape[3];
        b->d_out = (size_t)s->c_out;
        b->d_in = (size_t)wv->shape[1] * s->kh * s->kw;
        b->rows = (size_t)b->N;
    } else {
        return shape_error(b->f, "weight", wv, "[d_out, d_in] or [C_out, C_in/groups, kh, kw]", err);
    }
    if (bv && (bv->ndim != 1 || (size_t)bv->shape[0] != b->d_out)) {
        snprintf(want, sizeof want, "[%zu] (d_out of weight)", b->d_out);
        return shape_error(b->f, "bias", bv, want, err);
    }
    if (qv && (qv->ndim != xv->ndim || memcmp(qv->shape, xv->shape, (size_t)xv->ndim * sizeof qv->shape[0])))
        return shape_error(b->f, "inputs_q", qv, "the shape of 'inputs'", err);
    if (b->rows == 0)
        return aq_fail(err, AQ_ERR_ARG, "%s: tensor 'inputs' has N = 0 rows: AdaQuant needs calibration inputs", path);
    return AQ_OK;
}

/* Constant input channels are legal (degenerate with the bias): say so. */
static void note_constant_channels(const bundle *b)
{
    if (b->conv) return;
    size_t k = 0;
    for (size_t c = 0; c < b->d_in; c++) {
        float v = b->x[c];
        size_t i = 1;
        while (i < b->rows && b->x[i * b->d_in + c] == v) i++;
        if (i == b->rows) k++;
    }
    if (k) fprintf(stderr, "adaquant layer: note: %zu of %zu input channels are constant (handled)\n", k, b->d_in);
}

static aq_status write_out(const char *path, const char *prefix, const bundle *b, const aq_layer_result *r,
                           aq_error *err)
{
    aq_st_writer *w = NULL;
    aq_qlayer_keep *keep = NULL;
    aq_status st;
    AQ_TRY(aq_st_writer_new(&w, err));
    AQ_TRY_GOTO(st, aq_qlayer_add(w, prefix, r, &keep, err), done);
    if (b->conv) {
        char key[512], val[256];
        const aq_conv_spec *s = &b->cs;
        snprintf(key, sizeof key, "conv.%s", prefix);
        snprintf(val, sizeof val, "weight=%d,%d,%d,%d stride=%d,%d padding=%d,%d dilation=%d,%d groups=%d",
                 s->c_out, s->c_in / s->groups, s->kh, s->kw, s->stride_h, s->stride_w, s->pad_h, s->pad_w,
                 s->dil_h, s->dil_w, s->groups);
        AQ_TRY_GOTO(st, aq_st_writer_meta(w, key, val, err), done);
    }
    st = aq_st_writer_write(w, path, err);
done:
    aq_st_writer_free(w);
    aq_qlayer_keep_free(keep);
    return st;
}

static const char *mode_name(aq_aq_mode m) { return m == AQ_MODE_ROWS ? "rows" : m == AQ_MODE_GRAM ? "gram" : "auto"; }

static void print_result(int json, const char *name, const char *opt, const bundle *b, const aq_layer_result *r)
{
    if (!json) {
        printf("%s %s: mode %s, loss_rtn %.6g, loss_gptq %.6g, loss_init %.6g, loss_final %.6g "
               "(%.3f x GPTQ), %d iterations, %.2f s\n",
               name, opt, mode_name(r->mode_used), r->loss_rtn, r->loss_gptq, r->loss_init, r->loss_final,
               r->loss_final / r->loss_gptq, r->iterations, r->seconds);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "option", json_string(opt));
    json_object_set_new(o, "mode", json_string(mode_name(r->mode_used)));
    json_object_set_new(o, "d_out", json_integer((json_int_t)r->d_out));
    json_object_set_new(o, "d_in", json_integer((json_int_t)r->d_in));
    json_object_set_new(o, "rows", json_integer((json_int_t)b->rows));
    json_object_set_new(o, "loss_rtn", json_real(r->loss_rtn));
    if (isfinite(r->loss_gptq)) json_object_set_new(o, "loss_gptq", json_real(r->loss_gptq));
    json_object_set_new(o, "loss_init", json_real(r->loss_init));
    json_object_set_new(o, "loss_final", json_real(r->loss_final));
    json_object_set_new(o, "iterations", json_integer(r->iterations));
    json_object_set_new(o, "seconds", json_real(r->seconds));
    char seed[32];
    snprintf(seed, sizeof seed, "%016llx", (unsigned long long)r->seed);
    json_object_set_new(o, "seed", json_string(seed));
    char *s = json_dumps(o, JSON_REAL_PRECISION(17) | JSON_PRESERVE_ORDER);
    if (s) printf("%s\n", s);
    free(s);
    json_decref(o);
}

static int parse_args(int argc, char **argv, aq_layer_opts *o, const char **bundle_path, const char **name,
                      const char **out, int *json, int *have_opt)
{
    static const struct option lo[] = {
        {"option", required_argument, 0, 'o'}, {"iters", required_argument, 0, 'i'},
        {"init", required_argument, 0, 1},     {"mode", required_argument, 0, 2},
        {"starts", required_argument, 0, 3},   {"polish", required_argument, 0, 4},
        {"seed", required_argument, 0, 's'},   {"name", required_argument, 0, 'n'},
        {"out", required_argument, 0, 'O'},    {"json", no_argument, 0, 'j'},
        {0, 0, 0, 0}};
    aq_error err = {0};
    int c;
    char *end;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:i:s:n:O:j", lo, NULL)) != -1) {
        switch (c) {
        case 'o':
            if (aq_layer_opts_parse(optarg, o, &err) != AQ_OK) return aq_cli_usage(CMD, "%s", err.msg);
            *have_opt = 1;
            break;
        case 'i':
        case 3:
        case 4: {
            long v = strtol(optarg, &end, 10);
            if (*end || v < 0 || v > 1000000) return aq_cli_usage(CMD, "bad count '%s'", optarg);
            if (c == 'i') o->iters = (int)v;
            else if (c == 3) o->starts = (int)v;
            else o->polish_rounds = (int)v;
            break;
        }
        case 1:
            if (!strcmp(optarg, "rtn")) o->init = AQ_INIT_RTN;
            else if (!strcmp(optarg, "gptq")) o->init = AQ_INIT_GPTQ;
            else return aq_cli_usage(CMD, "--init must be rtn or gptq, not '%s'", optarg);
            break;
        case 2:
            if (!strcmp(optarg, "auto")) o->mode = AQ_MODE_AUTO;
            else if (!strcmp(optarg, "gram")) o->mode = AQ_MODE_GRAM;
            else if (!strcmp(optarg, "rows")) o->mode = AQ_MODE_ROWS;
            else return aq_cli_usage(CMD, "--mode must be auto, gram or rows, not '%s'", optarg);
            break;
        case 's':
            o->seed = strtoull(optarg, &end, 0);
            if (*end || !*optarg) return aq_cli_usage(CMD, "bad seed '%s'", optarg);
            break;
        case 'n': *name = optarg; break;
        case 'O': *out = optarg; break;
        case 'j': *json = 1; break;
        default: return aq_cli_usage(CMD, "unknown option");
        }
    }
    if (optind != argc - 1) return aq_cli_usage(CMD, "expected exactly one BUNDLE.safetensors");
    if (!*have_opt) return aq_cli_usage(CMD, "--option is required (e.g. --option w4a8)");
    *bundle_path = argv[optind];
    return 0;
}

static int layer_run(int argc, char **argv)
{
    aq_layer_opts o;
    aq_layer_opts_default(&o);
    const char *path = NULL, *name = "layer", *out = NULL;
    int json = 0, have_opt = 0;
    int rc = parse_args(argc, argv, &o, &path, &name, &out, &json, &have_opt);
    if (rc) return rc;
    aq_error err = {0};
    bundle b;
    aq_layer_result r;
    memset(&r, 0, sizeof r);
    aq_status st = load_bundle(path, &b, &err);
    if (st == AQ_OK) {
        note_constant_channels(&b);
        if (b.conv) {
            st = aq_conv_run(&b.cs, name, b.w, b.b, b.x, b.xq, b.N, b.H, b.W, &o, &r, &err);
        } else {
            aq_layer_problem p = {.name = name, .d_out = b.d_out, .d_in = b.d_in, .weight = b.w, .bias = b.b,
                                  .n_rows = b.rows, .x = b.x, .x_in = b.xq};
            st = aq_layer_run(&p, &o, &r, &err);
        }
        if (st != AQ_OK) aq_error_prefix(&err, "%s", path);
    }
    if (st == AQ_OK && out) st = write_out(out, name, &b, &r, &err);
    if (st == AQ_OK) {
        char opt[32];
        aq_layer_opts_string(&o, opt, sizeof opt);
        print_result(json, name, opt, &b, &r);
    }
    aq_layer_result_free(&r);
    bundle_free(&b);
    return st == AQ_OK ? 0 : aq_cli_fail(CMD, &err);
}

const aq_command aq_cmd_layer = {
    .name = "layer",
    .summary = "AdaQuant one layer bundle at one bit option (losses, JSON, qlayer output)",
    .run = layer_run,
    .help = layer_help,
    .needs_mpi = 0,
};
