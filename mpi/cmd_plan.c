/* cmd_plan.c — `adaquant plan`: predict a quantize run (phases, memory,
 * schedule) from config.json and the run settings, no weights needed
 * (mpi/pipeline/plan.h, docs/PLAN.md). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../io/atomic_file.h"
#include "cli.h"
#include "pipeline/pipeline_args.h"
#include "pipeline/plan.h"
#include "../src/text/textdata.h"
#include "../src/blas/blas_kernel.h"
#include "../src/text/tokenizer.h"

#define CMD "plan"
#define MASK (AQ_ARGS_MODEL | AQ_ARGS_WORK | AQ_ARGS_BUDGET | AQ_ARGS_OUT)
#define PLACEHOLDER "\x01plan-not-given"
#define DEFAULT_EVAL_DOCS 2000 /* assumed when no data is given and --eval-docs is 0 (all) */

typedef struct plan_opts {
    int ranks, json, calibrate, solve, no_probe;
    double mem, read_rate, bops, doc_tokens;
    const char *rates;
} plan_opts;

static void plan_help(FILE *out)
{
    fprintf(out,
            "usage: adaquant plan MODEL_DIR|config.json|MODEL [quantize options] [-P N] [--mem-per-rank SIZE]\n"
            "\n"
            "Predicts a `quantize` run without running it (no weights needed): the task list,\n"
            "per-rank memory and time of each phase (capture, calibrate, allocate, tune, eval,\n"
            "write), the lower bound (total work / P, the longest task), the efficiency, and the\n"
            "tasks too big for one rank. Kernel rates are measured on this machine first (a few\n"
            "seconds) and cached in WORK/plan_rates.json (--work) or --rates FILE. docs/PLAN.md.\n"
            "\n"
            "plan options:\n"
            "  -P, --ranks N          ranks (default 1)\n"
            "  --mem-per-rank SIZE    memory per rank, e.g. 32G, 512M (default: no limit)\n"
            "  --rates FILE           kernel-rate cache (read, written when measured)\n"
            "  --calibrate            measure the rates again even if cached\n"
            "  --read-rate SIZE       model file read rate per second (assumed, default 1G)\n"
            "  --doc-tokens N         mean tokens of a tuning/evaluation document when no data is\n"
            "                         given (default: --tune-len / --eval-len)\n"
            "  --solve                also time CBC on a synthetic loss table of this task list\n"
            "  --bops FRAC            with --solve: also a BOPs budget, FRAC of all-w8a8\n"
            "  --no-probe             the GEMM ladder only: time no exact shapes (quick, coarse for\n"
            "                         small models)\n"
            "  --json                 JSON instead of text\n"
            "The quantize options (--options, --calib-windows, --iters, --init, --kl-windows,\n"
            "--tune-steps, --eval-docs, --target-bits ...) are those of `adaquant quantize`;\n"
            "--tokenizer/--text are optional (with them, documents are counted from the data).\n"
            "\n");
    aq_pipe_args_help(out, MASK);
}

/* "32G", "512MiB", "1e9": bytes; -1 if malformed. */
static double parse_size(const char *v)
{
    char *end;
    double x = strtod(v, &end);
    if (end == v || !(x >= 0)) return -1;
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0, end++; break;
    case 'm': case 'M': mul = 1024.0 * 1024, end++; break;
    case 'g': case 'G': mul = 1024.0 * 1024 * 1024, end++; break;
    case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024, end++; break;
    default: break;
    }
    if (!strcmp(end, "iB") || !strcmp(end, "B")) end += strlen(end);
    return *end ? -1 : x * mul;
}

static int take_value(int argc, char **argv, int *i, const char *name, const char **val)
{
    size_t n = strlen(name);
    if (!strncmp(argv[*i], name, n) && argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (strcmp(argv[*i], name)) return 0;
    if (*i + 1 >= argc) return -1;
    *val = argv[++*i];
    return 1;
}

/* Take plan's own options out of argv (the rest goes to the quantize parser). */
static int split_args(int argc, char **argv, plan_opts *po, int *rest_argc, char **rest)
{
    *rest_argc = 0;
    rest[(*rest_argc)++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if (!strcmp(argv[i], "--json")) po->json = 1;
        else if (!strcmp(argv[i], "--calibrate")) po->calibrate = 1;
        else if (!strcmp(argv[i], "--solve")) po->solve = 1;
        else if (!strcmp(argv[i], "--no-probe")) po->no_probe = 1;
        else if ((r = take_value(argc, argv, &i, "--ranks", &v)) || (r = take_value(argc, argv, &i, "-P", &v))) {
            char *end;
            long x = r > 0 ? strtol(v, &end, 10) : 0;
            if (r < 0 || !*v || *end || x < 1 || x > 1000000)
                return aq_cli_usage(CMD, "-P/--ranks must be an integer in [1, 1000000], not '%s'", r > 0 ? v : "");
            po->ranks = (int)x;
        } else if ((r = take_value(argc, argv, &i, "--mem-per-rank", &v))) {
            if (r < 0 || (po->mem = parse_size(v)) <= 0)
                return aq_cli_usage(CMD, "--mem-per-rank must be a size like 32G or 512M, not '%s'", r > 0 ? v : "");
        } else if ((r = take_value(argc, argv, &i, "--read-rate", &v))) {
            if (r < 0 || (po->read_rate = parse_size(v)) <= 0)
                return aq_cli_usage(CMD, "--read-rate must be a size per second like 1G, not '%s'", r > 0 ? v : "");
        } else if ((r = take_value(argc, argv, &i, "--doc-tokens", &v))) {
            if (r < 0 || (po->doc_tokens = parse_size(v)) < 2)
                return aq_cli_usage(CMD, "--doc-tokens must be a number >= 2, not '%s'", r > 0 ? v : "");
        } else if ((r = take_value(argc, argv, &i, "--bops", &v))) {
            if (r < 0 || (po->bops = parse_size(v)) <= 0 || po->bops > 1)
                return aq_cli_usage(CMD, "--bops must be a fraction in (0, 1], not '%s'", r > 0 ? v : "");
        } else if ((r = take_value(argc, argv, &i, "--rates", &v))) {
            if (r < 0) return aq_cli_usage(CMD, "--rates needs a FILE");
            po->rates = v;
        } else {
            rest[(*rest_argc)++] = argv[i];
        }
    }
    return 0;
}

static int has_opt(int argc, char **argv, const char *const *names)
{
    for (int i = 1; i < argc; i++)
        for (const char *const *n = names; *n; n++) {
            size_t k = strlen(*n); /* the option itself or --opt=VALUE, not a longer name (--calib-windows) */
            if (!strncmp(argv[i], *n, k) && (argv[i][k] == '\0' || argv[i][k] == '=')) return 1;
        }
    return 0;
}

/* The model's config: config.json itself, a directory's config.json (weights
 * not needed), or any checkpoint adaquant reads (llama2.c .bin). */
static aq_status read_config(const char *path, aq_llama_config *m, double *file_bytes, aq_error *err)
{
    struct stat s;
    size_t n = strlen(path);
    *file_bytes = 0;
    if (n > 5 && !strcmp(path + n - 5, ".json")) return aq_llama_config_read_json(path, m, err);
    if (stat(path, &s) == 0 && S_ISDIR(s.st_mode)) {
        char cj[AQ_PIPE_PATH + 16];
        snprintf(cj, sizeof cj, "%s/config.json", path);
        return aq_llama_config_read_json(cj, m, err);
    }
    if (stat(path, &s) == 0) *file_bytes = (double)s.st_size;
    return aq_ckpt_read_llama_config(path, m, err);
}

static void assumed_docs(const aq_pipe_args *a, const plan_opts *po, aq_plan_input *in)
{
    double el = po->doc_tokens > 0 ? po->doc_tokens : a->out.eval_len;
    double tl = po->doc_tokens > 0 ? po->doc_tokens : a->out.tune.max_len;
    double ne = a->out.eval_docs > 0 ? a->out.eval_docs : DEFAULT_EVAL_DOCS;
    double nt = a->out.tune.docs > 0 ? a->out.tune.docs : (double)a->out.tune.steps * a->out.tune.batch;
    in->eval = (aq_plan_docs){ne, ne * el, ne * el * el};
    in->tune = (aq_plan_docs){nt, nt * tl, nt * tl * tl};
}

/* An earlier run's per-task seconds: WORK/task_seconds.json, or beside the
 * --rates FILE. 0 and the path, or -1 (none to look for). */
static int measured_path(const aq_pipe_args *a, const plan_opts *po, char *out)
{
    if (po->rates) {
        const char *slash = strrchr(po->rates, '/');
        int dir = slash ? (int)(slash - po->rates) : 1;
        snprintf(out, AQ_PIPE_PATH + 32, "%.*s/task_seconds.json", dir, slash ? po->rates : ".");
        return 0;
    }
    if (!a->have_work) return -1;
    snprintf(out, AQ_PIPE_PATH + 32, "%s/task_seconds.json", a->cfg.work);
    return 0;
}

/* The rates: the cache if it matches this kernel and the AdaQuant settings,
 * else measured (and cached when there is a place for it). */
static aq_status get_rates(const aq_pipe_args *a, const plan_opts *po, aq_plan_rates *r, char *path, aq_error *err)
{
    if (po->rates) snprintf(path, AQ_PIPE_PATH + 32, "%s", po->rates);
    else if (a->have_work) {
        AQ_TRY(aq_mkdir_once(a->cfg.work, "work directory (--work)", err));
        snprintf(path, AQ_PIPE_PATH + 32, "%s/plan_rates.json", a->cfg.work);
    }
    aq_blas_kernel k;
    aq_blas_kernel_query(&k);
    aq_status st = path[0] && !po->calibrate ? aq_plan_rates_read(path, r, err) : AQ_ERR_NOTFOUND;
    if (st == AQ_ERR_FORMAT) {
        aq_error_prefix(err, "the rate cache is damaged (--calibrate measures it again)");
        return st;
    }
    /* a cache in the work directory follows this machine's kernel; a file
     * given with --rates is used as it is (rates of another machine: plan
     * for the cluster from its own node's measurement) */
    int other = st == AQ_OK && strcmp(r->kernel, k.name) != 0;
    if (other && po->rates)
        fprintf(stderr, "adaquant plan: %s holds rates of kernel %s (this process runs %s): used as they are\n",
                path, r->kernel, k.name);
    int fresh = st != AQ_OK || (other && !po->rates);
    if (fresh) {
        fprintf(stderr, "adaquant plan: measuring kernel rates (kernel %s, a few seconds)\n", k.name);
        AQ_TRY(aq_plan_rates_measure(r, a->cfg.iters, a->cfg.starts, a->cfg.polish, err));
    } else if (r->aq_iters != a->cfg.iters || r->aq_starts != a->cfg.starts || r->aq_polish != a->cfg.polish) {
        fprintf(stderr, "adaquant plan: timing the layer optimizer with these settings\n");
        AQ_TRY(aq_plan_rates_measure_layer(r, a->cfg.iters, a->cfg.starts, a->cfg.polish, err));
        fresh = 1;
    }
    if (fresh && path[0]) AQ_TRY(aq_plan_rates_write(path, r, err));
    return AQ_OK;
}

static int run_solve(const aq_plan_input *in, const aq_pipe_args *a, const plan_opts *po)
{
    aq_error e = {0};
    double sec, gap;
    int opt;
    double bits = a->budget.size_unit == AQ_SIZE_AVG_BITS ? a->budget.size_value : 4.0;
    if (aq_plan_time_solve(&in->m, in->cfg, bits, po->bops, &sec, &opt, &gap, &e) != AQ_OK) return aq_cli_fail(CMD, &e);
    printf("CBC on a synthetic table of %d layers x %d options (target %.3g bits%s): %.3f s, %s (gap %.3g)\n",
           in->m.n_layers * 7, in->cfg->n_options, bits, po->bops > 0 ? " + BOPs" : "", sec,
           opt ? "proven optimal" : "NOT proven optimal", gap);
    return 0;
}

static int plan_run(int argc, char **argv)
{
    plan_opts po = {.ranks = 1, .read_rate = AQ_PLAN_READ_RATE};
    char **rest = calloc((size_t)argc + 8, sizeof *rest);
    int rc, n = 0;
    if (!rest) return 1;
    if ((rc = split_args(argc, argv, &po, &n, rest))) {
        free(rest);
        return rc;
    }
    /* the quantize parser requires a tokenizer, data and OUTDIR, which a plan
     * does not: placeholders stand in for what was not given */
    static const char *const tok[] = {"--tokenizer", NULL}, *const data[] = {"--text", "--calib", NULL},
                             *const out[] = {"--out", NULL};
    int have_data = has_opt(n, rest, data), have_tok = has_opt(n, rest, tok);
    if (!have_tok) rest[n++] = "--tokenizer", rest[n++] = PLACEHOLDER;
    if (!have_data) rest[n++] = "--text", rest[n++] = PLACEHOLDER;
    if (!has_opt(n, rest, out)) rest[n++] = "--out", rest[n++] = PLACEHOLDER;
    aq_pipe_args *a = calloc(1, sizeof *a);
    if (!a) return free(rest), 1;
    rc = aq_pipe_args_parse(CMD, MASK, n, rest, a);
    free(rest);
    aq_error e = {0};
    aq_plan_input in = {.cfg = &a->cfg, .out = &a->out, .ranks = po.ranks, .mem_per_rank = po.mem,
                        .read_rate = po.read_rate};
    aq_plan_rates r;
    aq_plan p;
    aq_status st = rc ? AQ_OK : read_config(a->cfg.model, &in.m, &in.model_file_bytes, &e);
    if (!rc && st == AQ_OK) {
        if (have_data && strcmp(a->cfg.tokenizer, PLACEHOLDER) != 0) st = aq_plan_data_docs(&a->cfg, &a->out, &in.m, &in.tune, &in.eval, &e);
        else assumed_docs(a, &po, &in);
    }
    char path[AQ_PIPE_PATH + 32] = "", mpath[AQ_PIPE_PATH + 32];
    if (!rc && st == AQ_OK) st = get_rates(a, &po, &r, path, &e);
    aq_plan_measured meas = {0};
    aq_error me = {0}; /* no measured seconds is no error: the model alone */
    if (!rc && st == AQ_OK && measured_path(a, &po, mpath) == 0 && aq_plan_measured_read(mpath, &meas, &me) == AQ_OK)
        in.measured = &meas;
    if (!rc && st == AQ_OK) {
        if (!po.no_probe) r.probe = aq_plan_probe_gemm, r.probe_ctx = &r; /* small GEMM shapes, timed once, cached */
        st = aq_plan_compute(&in, &r, &p, &e);
        if (st == AQ_OK && r.shapes_added && path[0]) st = aq_plan_rates_write(path, &r, &e);
    }
    if (!rc && st != AQ_OK) rc = aq_cli_fail(CMD, &e);
    if (!rc) {
        if (po.json) aq_plan_print_json(stdout, &in, &p, &r);
        else aq_plan_print(stdout, &in, &p, &r);
        if (po.solve) rc = run_solve(&in, a, &po);
    }
    aq_plan_measured_free(&meas);
    free(a);
    return rc;
}

const aq_command aq_cmd_plan = {
    .name = "plan",
    .summary = "predict a quantize run (time and memory per phase, schedule, lower bound) from config.json",
    .run = plan_run,
    .help = plan_help,
    .needs_mpi = 0,
};
