/* cmd_allocate.c — `adaquant allocate`: choose one quantization option per
 * layer from a (layer, option) loss table with the bit-allocation program
 * (solver/allocate.h, CBC), optionally over a sweep of budgets with a Pareto
 * table and SVG plots. Runs on one process (no MPI): the distributed pipeline
 * calls the same library on rank 0. Output files are written atomically
 * (io/atomic_file.h). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../io/atomic_file.h"
#include "../solver/allocate.h"
#include "../solver/report.h"
#include "cli.h"

static const char *const CMD = "allocate";

static void allocate_help(FILE *out)
{
    fputs(
        "usage: adaquant allocate --table T.csv\n"
        "         (--target-bits X | --target-size F | --max-size-bits B | --max-loss L)\n"
        "         [--max-bops B] [--keep REGEX=OPTION]... [--exclude REGEX=OPTION]...\n"
        "         [--tie REGEX]... [--tie-act REGEX]... [--sweep A:B:STEP]\n"
        "         [--time-limit S] [--out-dir DIR] [--json]\n"
        "\n"
        "Choose one quantization option per layer (mixed-integer program, COIN-OR CBC, proven\n"
        "optimal): least total loss within a size budget (and optional BOPs budget), or the\n"
        "smallest size within a loss budget (--max-loss).\n"
        "\n"
        "Table (CSV with a header row; columns in any order, extra columns ignored;\n"
        "'#' lines and blank lines skipped; fields may be \"quoted\"):\n"
        "  layer      layer name (what the regexes below match)\n"
        "  option     option name, e.g. w4a8, w4a16 (one meaning per name in the table)\n"
        "  params     weights of the layer (> 0; the same on every row of the layer)\n"
        "  w_bits     weight bits, 2..16\n"
        "  a_bits     activation bits, 2..16 (16 = activations kept in full precision)\n"
        "  macs       multiply-accumulates per inference (>= 0), for BOPs = macs*w_bits*a_bits\n"
        "  loss       measured loss increase of the layer at this option (finite, >= 0)\n"
        "  size_bits  optional: stored size in bits incl. scales/zero points; empty or absent\n"
        "             = params*w_bits\n"
        "One row per (layer, option); duplicates are an error naming both lines.\n"
        "\n"
        "Budgets (exactly one of the first four; --sweep may replace it):\n"
        "  --target-bits X     average bits per weight: size <= X * total params\n"
        "  --target-size F     fraction of the FP32 size: size <= F * 32 * total params\n"
        "  --max-size-bits B   absolute size in bits\n"
        "  --max-loss L        minimise the size subject to total loss <= L (rel. tol. 1e-9)\n"
        "  --max-bops B        also: total BOPs <= B\n"
        "Budgets are rounded down to whole bits/BOPs (to the nearest when within 1e-9).\n"
        "\n"
        "Rules (POSIX extended regexes searched in layer names; anchor with ^...$):\n"
        "  --keep REGEX=OPT    pin every matching layer to OPT (error if one lacks OPT)\n"
        "  --exclude REGEX=OPT matching layers may not take OPT\n"
        "  --tie REGEX         matching layers take the same option; with a capture group,\n"
        "                      one tie per distinct captured text, e.g.\n"
        "                      'layers\\.([0-9]+)\\.self_attn\\.[qkv]_proj' ties q/k/v per block\n"
        "  --tie-act REGEX     the same, for the activation bits only\n"
        "Conflicts (tied layers pinned differently, exclusions leaving no option) are errors\n"
        "naming the layers. An infeasible budget is an error naming the smallest feasible one.\n"
        "\n"
        "Other options:\n"
        "  --sweep A:B:STEP    solve for every average-bits budget A, A+STEP, ..., B and write\n"
        "                      pareto.csv, pareto.json, pareto.svg (loss vs bits, the chosen\n"
        "                      point marked: the main budget's solution, or the knee of the\n"
        "                      curve without one), bits_per_layer.svg and allocation.csv/.json\n"
        "                      of the chosen solution to DIR\n"
        "  --time-limit S      wall-clock limit per CBC solve (default none); on expiry the\n"
        "                      best solution found is reported with its gap\n"
        "  --out-dir DIR       where files go (default: the current directory). Without\n"
        "                      --sweep, files (allocation.csv, allocation.json,\n"
        "                      bits_per_layer.svg) are written only when --out-dir is given\n"
        "  --json              print the result as JSON on stdout\n"
        "\n"
        "Exit status: 0 solved, 1 error (bad table, conflict, infeasible), 2 usage.\n"
        "See docs/ALLOCATE.md.\n",
        out);
}

/* Growable arrays of rules and regexes from repeated options. */
typedef struct rules {
    aq_alloc_rule *keep, *excl;
    const char **tie, **tie_act;
    size_t n_keep, n_excl, n_tie, n_tie_act;
} rules;

static int push_rule(aq_alloc_rule **v, size_t *n, char *arg)
{
    char *eq = strrchr(arg, '=');
    if (!eq || eq == arg || !eq[1]) return -1;
    *eq = '\0';
    aq_alloc_rule *p = realloc(*v, (*n + 1) * sizeof *p);
    if (!p) return -2;
    *v = p;
    p[(*n)++] = (aq_alloc_rule){arg, eq + 1};
    return 0;
}

static int push_str(const char ***v, size_t *n, const char *arg)
{
    const char **p = realloc(*v, (*n + 1) * sizeof *p);
    if (!p) return -2;
    *v = p;
    p[(*n)++] = arg;
    return 0;
}

static int parse_num(const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    return *s && !*end && isfinite(*out);
}

enum out_kind { OUT_SOL_CSV, OUT_SOL_JSON, OUT_BITS_SVG, OUT_SWEEP_CSV, OUT_SWEEP_JSON, OUT_SWEEP_SVG };

typedef struct outctx {
    const char *dir;
    const aq_alloc_table *t;
    const aq_alloc_solution *sol;
    const aq_alloc_sweep *sw;
} outctx;

static aq_status write_out(const outctx *c, const char *name, enum out_kind k, aq_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", c->dir, name);
    aq_atomic_file *af;
    AQ_TRY(aq_atomic_open(path, &af, err));
    FILE *f = aq_atomic_stream(af);
    switch (k) {
    case OUT_SOL_CSV: aq_alloc_write_solution_csv(f, c->t, c->sol); break;
    case OUT_SOL_JSON: aq_alloc_write_solution_json(f, c->t, c->sol); break;
    case OUT_BITS_SVG: aq_alloc_write_bits_svg(f, c->t, c->sol); break;
    case OUT_SWEEP_CSV: aq_alloc_write_sweep_csv(f, c->sw); break;
    case OUT_SWEEP_JSON: aq_alloc_write_sweep_json(f, c->sw, c->sol); break;
    case OUT_SWEEP_SVG: aq_alloc_write_sweep_svg(f, c->sw, c->sol); break;
    }
    return aq_atomic_commit(af, err);
}

static void print_text(const aq_alloc_table *t, const aq_alloc_solution *s, const aq_alloc_spec *sp)
{
    size_t w = 5;
    for (size_t l = 0; l < s->n_layers; l++) w = strlen(s->layer[l]) > w ? strlen(s->layer[l]) : w;
    printf("%-*s  %-8s  %12s  %7s  %s\n", (int)w, "layer", "option", "params", "bits/w", "loss");
    for (size_t l = 0; l < s->n_layers; l++) {
        const aq_alloc_row *r = &t->rows[s->row[l]];
        printf("%-*s  %-8s  %12lld  %7.3f  %.6g\n", (int)w, r->layer, r->option, (long long)r->params,
               (double)aq_alloc_row_size(r) / (double)r->params, r->loss);
    }
    printf("layers: %zu, params: %lld\n", s->n_layers, (long long)s->total_params);
    printf("size: %lld bits = %.4f bits/weight", (long long)s->size_bits, s->avg_bits);
    if (s->size_budget_bits >= 0) {
        char b[96];
        aq_alloc_format_size(b, sizeof b, sp->size_unit, sp->size_budget);
        printf(" (budget %lld bits = %s)", (long long)s->size_budget_bits, b);
    }
    printf("\nBOPs: %lld", (long long)s->bops);
    if (s->bops_budget >= 0) printf(" (budget %lld)", (long long)s->bops_budget);
    printf("\nloss: %.9g", s->loss);
    if (!isnan(s->loss_budget)) printf(" (budget %.9g)", s->loss_budget);
    printf("\nsolver: %s, objective %.9g, bound %.9g, gap %.3g%%, %.3f s, CBC core %zu unit(s) after the exact presolve\n",
           s->status == AQ_ALLOC_OPTIMAL ? "optimal" : "time limit (feasible, not proven optimal)", s->objective,
           s->bound, 100 * s->gap, s->seconds, s->core_layers);
}

typedef struct args {
    const char *table, *out_dir;
    int json, have_target, have_sweep;
    double sweep[3];
    aq_alloc_spec spec;
} args;

static int parse_args(int argc, char **argv, args *a, rules *r)
{
    enum { O_TABLE = 256, O_TBITS, O_TSIZE, O_MAXLOSS, O_MAXSIZE, O_MAXBOPS, O_KEEP, O_EXCL, O_TIE, O_TIEACT,
           O_SWEEP, O_TLIM, O_OUT, O_JSON };
    static const struct option opts[] = {
        {"table", required_argument, NULL, O_TABLE},         {"target-bits", required_argument, NULL, O_TBITS},
        {"target-size", required_argument, NULL, O_TSIZE},   {"max-loss", required_argument, NULL, O_MAXLOSS},
        {"max-size-bits", required_argument, NULL, O_MAXSIZE}, {"max-bops", required_argument, NULL, O_MAXBOPS},
        {"keep", required_argument, NULL, O_KEEP},           {"exclude", required_argument, NULL, O_EXCL},
        {"tie", required_argument, NULL, O_TIE},             {"tie-act", required_argument, NULL, O_TIEACT},
        {"sweep", required_argument, NULL, O_SWEEP},         {"time-limit", required_argument, NULL, O_TLIM},
        {"out-dir", required_argument, NULL, O_OUT},         {"json", no_argument, NULL, O_JSON},
        {NULL, 0, NULL, 0}};
    int c;
    double v;
    char extra;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        aq_alloc_spec *s = &a->spec;
        int rc = 0;
        switch (c) {
        case O_TABLE: a->table = optarg; break;
        case O_TBITS: case O_TSIZE: case O_MAXSIZE: case O_MAXLOSS:
            if (a->have_target++) return aq_cli_usage(CMD, "give only one of --target-bits, --target-size, --max-size-bits, --max-loss");
            if (!parse_num(optarg, &v) || v < 0) return aq_cli_usage(CMD, "%s: '%s' is not a non-negative number", argv[optind - 1], optarg);
            if (c == O_MAXLOSS) s->objective = AQ_ALLOC_MIN_SIZE, s->max_loss = v;
            else s->size_unit = c == O_TBITS ? AQ_SIZE_AVG_BITS : c == O_TSIZE ? AQ_SIZE_FP32_FRACTION : AQ_SIZE_BITS, s->size_budget = v;
            break;
        case O_MAXBOPS:
            if (!parse_num(optarg, &v) || v < 0) return aq_cli_usage(CMD, "--max-bops: '%s' is not a non-negative number", optarg);
            s->has_max_bops = 1, s->max_bops = v;
            break;
        case O_KEEP: rc = push_rule(&r->keep, &r->n_keep, optarg); break;
        case O_EXCL: rc = push_rule(&r->excl, &r->n_excl, optarg); break;
        case O_TIE: rc = push_str(&r->tie, &r->n_tie, optarg); break;
        case O_TIEACT: rc = push_str(&r->tie_act, &r->n_tie_act, optarg); break;
        case O_SWEEP:
            if (sscanf(optarg, "%lf:%lf:%lf%c", &a->sweep[0], &a->sweep[1], &a->sweep[2], &extra) != 3)
                return aq_cli_usage(CMD, "--sweep: '%s' is not A:B:STEP", optarg);
            a->have_sweep = 1;
            break;
        case O_TLIM:
            if (!parse_num(optarg, &s->time_limit) || s->time_limit <= 0)
                return aq_cli_usage(CMD, "--time-limit: '%s' is not a positive number of seconds", optarg);
            break;
        case O_OUT: a->out_dir = optarg; break;
        case O_JSON: a->json = 1; break;
        default: return aq_cli_usage(CMD, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
        if (rc == -1) return aq_cli_usage(CMD, "'%s' is not REGEX=OPTION", optarg);
        if (rc == -2) return aq_cli_usage(CMD, "out of memory");
    }
    if (optind < argc) return aq_cli_usage(CMD, "unexpected argument '%s'", argv[optind]);
    if (!a->table) return aq_cli_usage(CMD, "--table is required");
    if (!a->have_target && !a->have_sweep)
        return aq_cli_usage(CMD, "give a budget: --target-bits, --target-size, --max-size-bits or --max-loss (or --sweep)");
    a->spec.keep = r->keep, a->spec.n_keep = r->n_keep;
    a->spec.exclude = r->excl, a->spec.n_exclude = r->n_excl;
    a->spec.tie = r->tie, a->spec.n_tie = r->n_tie;
    a->spec.tie_act = r->tie_act, a->spec.n_tie_act = r->n_tie_act;
    return 0;
}

/* Solve, sweep if asked, print, write files. Returns the exit code. */
static int run_allocate(args *a, aq_alloc_table *t)
{
    aq_error err = {0};
    aq_alloc_solution sol = {0};
    aq_alloc_sweep sw = {0};
    int have_sol = 0, rc = 1;
    if (a->have_target) {
        aq_status st = aq_alloc_solve(t, &a->spec, &sol, &err);
        if (st != AQ_OK) {
            aq_error_prefix(&err, "%s", a->table);
            return aq_cli_fail(CMD, &err);
        }
        have_sol = 1;
    }
    if (a->have_sweep) {
        if (aq_alloc_sweep_run(t, &a->spec, a->sweep[0], a->sweep[1], a->sweep[2], &sw, &err) != AQ_OK) {
            rc = aq_cli_fail(CMD, &err);
            goto done;
        }
        if (!have_sol) { /* the knee of the curve is the chosen point */
            long k = aq_alloc_sweep_knee(&sw);
            if (k < 0) {
                aq_fail(&err, AQ_ERR_INFEASIBLE, "every sweep budget is infeasible: the smallest feasible is %.4f bits/weight",
                        sw.min_feasible);
                rc = aq_cli_fail(CMD, &err);
                goto done;
            }
            aq_alloc_spec sp = a->spec;
            sp.size_unit = AQ_SIZE_AVG_BITS;
            sp.size_budget = sw.pt[k].budget;
            if (aq_alloc_solve(t, &sp, &sol, &err) != AQ_OK) {
                rc = aq_cli_fail(CMD, &err);
                goto done;
            }
            have_sol = 1;
            a->spec = sp;
        }
    }
    if (a->json) {
        if (a->have_sweep) {
            fputs("{\"solution\": ", stdout);
            aq_alloc_write_solution_json(stdout, t, &sol);
            fputs(", \"sweep\": ", stdout);
            aq_alloc_write_sweep_json(stdout, &sw, &sol);
            fputs("}\n", stdout);
        } else
            aq_alloc_write_solution_json(stdout, t, &sol);
    } else {
        print_text(t, &sol, &a->spec);
        if (a->have_sweep) {
            printf("sweep: %zu budgets", sw.n);
            if (!isnan(sw.min_feasible)) printf(", smallest feasible %.4f bits/weight", sw.min_feasible);
            printf("\n");
        }
    }
    if (sol.status != AQ_ALLOC_OPTIMAL)
        fprintf(stderr, "adaquant allocate: warning: time limit reached; the allocation is feasible but not proven optimal (gap %.3g%%)\n",
                100 * sol.gap);
    if (a->have_sweep || a->out_dir) {
        outctx oc = {a->out_dir ? a->out_dir : ".", t, &sol, &sw};
        aq_status st = mkdir(oc.dir, 0777) == 0 || errno == EEXIST ? AQ_OK : aq_fail(&err, AQ_ERR_IO, "%s: cannot create: %s", oc.dir, strerror(errno));
        if (st == AQ_OK) st = write_out(&oc, "allocation.csv", OUT_SOL_CSV, &err);
        if (st == AQ_OK) st = write_out(&oc, "allocation.json", OUT_SOL_JSON, &err);
        if (st == AQ_OK) st = write_out(&oc, "bits_per_layer.svg", OUT_BITS_SVG, &err);
        if (st == AQ_OK && a->have_sweep) st = write_out(&oc, "pareto.csv", OUT_SWEEP_CSV, &err);
        if (st == AQ_OK && a->have_sweep) st = write_out(&oc, "pareto.json", OUT_SWEEP_JSON, &err);
        if (st == AQ_OK && a->have_sweep) st = write_out(&oc, "pareto.svg", OUT_SWEEP_SVG, &err);
        if (st != AQ_OK) {
            rc = aq_cli_fail(CMD, &err);
            goto done;
        }
    }
    rc = 0;
done:
    if (have_sol) aq_alloc_solution_free(&sol);
    aq_alloc_sweep_free(&sw);
    return rc;
}

static int allocate_run(int argc, char **argv)
{
    args a = {0};
    rules r = {0};
    int rc = parse_args(argc, argv, &a, &r);
    if (rc == 0) {
        aq_alloc_table t;
        aq_alloc_table_init(&t);
        aq_error err = {0};
        if (aq_alloc_table_read_csv(a.table, &t, &err) != AQ_OK) rc = aq_cli_fail(CMD, &err);
        else rc = run_allocate(&a, &t);
        aq_alloc_table_free(&t);
    }
    free(r.keep);
    free(r.excl);
    free(r.tie);
    free(r.tie_act);
    return rc;
}

const aq_command aq_cmd_allocate = {
    .name = "allocate",
    .summary = "choose bits per layer from a loss table (mixed-integer program, CBC)",
    .run = allocate_run,
    .help = allocate_help,
    .needs_mpi = 0,
};
