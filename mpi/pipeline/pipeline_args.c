/* pipeline_args.c — parsing of the pipeline commands' shared options
 * (pipeline_args.h). Pure but for one stat: the default tokenizer is looked
 * up in a model directory; every other check comes later. */
#include <getopt.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "../../io/checkpoint.h"
#include "memory.h"
#include "pipeline_size.h"
#include "pipeline_args.h"

/* A usage error, on stderr of rank 0 only: every rank parses the same command
 * line and fails alike, and P copies of the message would interleave. */
static int usage(const char *cmd, const char *fmt, ...) AQ_PRINTF(2, 3);
static int usage(const char *cmd, const char *fmt, ...)
{
    int up = 0, rank = 0;
    MPI_Initialized(&up);
    if (up) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0) return 2;
    va_list ap;
    fprintf(stderr, "adaquant %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'adaquant %s --help'.\n", cmd);
    return 2;
}

static int copy_path(const char *cmd, const char *opt, const char *v, char *dst)
{
    if (strlen(v) >= AQ_PIPE_PATH) return usage(cmd, "%s: path too long", opt);
    strcpy(dst, v);
    return 0;
}

static int parse_int(const char *cmd, const char *opt, const char *v, long lo, long hi, int *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) return usage(cmd, "%s must be an integer in [%ld, %ld], not '%s'", opt, lo, hi, v);
    *out = (int)x;
    return 0;
}

static int parse_num(const char *cmd, const char *opt, const char *v, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= 0) || x > 1e300) return usage(cmd, "%s must be a number >= 0, not '%s'", opt, v);
    *out = x;
    return 0;
}

enum { O_TOK = 256, O_TEXT, O_OUT, O_OPTS, O_TBITS, O_TSIZE, O_MAXLOSS, O_KEEP, O_MODE, O_ITERS, O_INIT,
       O_SEED, O_WORK, O_RESUME, O_WIN, O_LEN, O_FORCE, O_EDOCS, O_ELEN, O_NOEVAL, O_SHARD, O_SHARDS, O_SROWS, O_STARTS, O_POLISH, O_KLW, O_LOSS, O_REFINE,
       O_TSTEPS, O_TDOCS, O_TLEN, O_TBATCH, O_TLR, O_NOTUNE, O_PROGRESS, O_CALIB, O_EVAL, O_DFMT, O_TFIELD, O_TFRAC, O_EOPTS,
       O_TMODE,
       O_MAXMEM,                 /* the per-rank memory bound (memory.h) */
       O_COOP_RANKS, O_COOP_THR, /* the cooperative path's scheduling (docs/COOP.md) */
       O_OUTFMT };

#define ALL_GROUPS (AQ_ARGS_MODEL | AQ_ARGS_WORK | AQ_ARGS_BUDGET | AQ_ARGS_OUT | AQ_ARGS_SHARD | AQ_ARGS_GGUF)

static const struct {
    struct option o;
    int group;
} table[] = {
    {{"tokenizer", required_argument, 0, O_TOK}, AQ_ARGS_MODEL},
    {{"calib-text", required_argument, 0, O_TEXT}, AQ_ARGS_MODEL},
    {{"text", required_argument, 0, O_TEXT}, AQ_ARGS_MODEL},
    {{"calib", required_argument, 0, O_CALIB}, AQ_ARGS_MODEL},
    {{"eval", required_argument, 0, O_EVAL}, AQ_ARGS_MODEL},
    {{"data-format", required_argument, 0, O_DFMT}, AQ_ARGS_MODEL},
    {{"text-field", required_argument, 0, O_TFIELD}, AQ_ARGS_MODEL},
    {{"options", required_argument, 0, O_OPTS}, AQ_ARGS_MODEL},
    {{"mode", required_argument, 0, O_MODE}, AQ_ARGS_MODEL},
    {{"iters", required_argument, 0, O_ITERS}, AQ_ARGS_MODEL},
    {{"init", required_argument, 0, O_INIT}, AQ_ARGS_MODEL},
    {{"seed", required_argument, 0, O_SEED}, AQ_ARGS_MODEL},
    {{"calib-windows", required_argument, 0, O_WIN}, AQ_ARGS_MODEL},
    {{"calib-len", required_argument, 0, O_LEN}, AQ_ARGS_MODEL},
    {{"sample-rows", required_argument, 0, O_SROWS}, AQ_ARGS_MODEL},
    {{"starts", required_argument, 0, O_STARTS}, AQ_ARGS_MODEL},
    {{"polish", required_argument, 0, O_POLISH}, AQ_ARGS_MODEL},
    {{"kl-windows", required_argument, 0, O_KLW}, AQ_ARGS_MODEL},
    {{"loss", required_argument, 0, O_LOSS}, AQ_ARGS_MODEL},
    {{"refine", required_argument, 0, O_REFINE}, AQ_ARGS_BUDGET},
    {{"work", required_argument, 0, O_WORK}, AQ_ARGS_WORK},
    {{"resume", no_argument, 0, O_RESUME}, AQ_ARGS_WORK},
    {{"target-bits", required_argument, 0, O_TBITS}, AQ_ARGS_BUDGET},
    {{"target-size", required_argument, 0, O_TSIZE}, AQ_ARGS_BUDGET},
    {{"target-fp32-fraction", required_argument, 0, O_TFRAC}, AQ_ARGS_BUDGET},
    {{"embed-options", required_argument, 0, O_EOPTS}, AQ_ARGS_MODEL},
    {{"max-loss", required_argument, 0, O_MAXLOSS}, AQ_ARGS_BUDGET},
    {{"keep", required_argument, 0, O_KEEP}, AQ_ARGS_BUDGET},
    {{"out", required_argument, 0, O_OUT}, AQ_ARGS_OUT},
    {{"force", no_argument, 0, O_FORCE}, AQ_ARGS_OUT},
    {{"eval-docs", required_argument, 0, O_EDOCS}, AQ_ARGS_OUT},
    {{"eval-len", required_argument, 0, O_ELEN}, AQ_ARGS_OUT},
    {{"no-eval", no_argument, 0, O_NOEVAL}, AQ_ARGS_OUT},
    {{"tune-steps", required_argument, 0, O_TSTEPS}, AQ_ARGS_OUT},
    {{"tune-docs", required_argument, 0, O_TDOCS}, AQ_ARGS_OUT},
    {{"tune-len", required_argument, 0, O_TLEN}, AQ_ARGS_OUT},
    {{"tune-batch", required_argument, 0, O_TBATCH}, AQ_ARGS_OUT},
    {{"tune-lr", required_argument, 0, O_TLR}, AQ_ARGS_OUT},
    {{"no-tune", no_argument, 0, O_NOTUNE}, AQ_ARGS_OUT},
    {{"tune-mode", required_argument, 0, O_TMODE}, AQ_ARGS_OUT},
    {{"shard", required_argument, 0, O_SHARD}, AQ_ARGS_SHARD},
    {{"shards", required_argument, 0, O_SHARDS}, AQ_ARGS_SHARD},
    {{"progress", required_argument, 0, O_PROGRESS}, ALL_GROUPS},
    {{"coop-ranks", required_argument, 0, O_COOP_RANKS}, AQ_ARGS_WORK},
    {{"coop-threshold", required_argument, 0, O_COOP_THR}, AQ_ARGS_WORK},
    /* the per-rank memory bound (issue 13, mpi/pipeline/memory.h) */
    {{"max-rank-memory", required_argument, 0, O_MAXMEM}, AQ_ARGS_MODEL | AQ_ARGS_SHARD}, /* SHARD: calibrate */
    {{"out-format", required_argument, 0, O_OUTFMT}, AQ_ARGS_GGUF},
};
#define N_OPTS (sizeof table / sizeof table[0])

/* --out-format gguf: the default menu is GGUF's types (the K-quants when this
 * build has them); an option GGUF cannot store is refused before any work.
 * A per-row a16 option is kept as the F16 fallback of rows no block type fits
 * (written and costed as F16: docs/PIPELINE.md "GGUF budget"). */
static int gguf_menus(const char *cmd, aq_pipe_args *a)
{
    aq_error e = {0};
    if (!a->opts_given) {
        static const char *const menu[] = {"q8_0", "q6_k", "q5_1", "q5_0", "q4_k", "q4_1", "q4_0", "q3_k", "w8a16"};
        char list[160] = "";
        for (size_t k = 0; k < sizeof menu / sizeof menu[0]; k++) {
            aq_layer_opts o;
            aq_layer_opts_default(&o);
            if (aq_layer_opts_parse(menu[k], &o, NULL) == AQ_OK)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? "," : "", menu[k]);
        }
        if (aq_pipe_cfg_set_options(&a->cfg, list, &e) != AQ_OK) return usage(cmd, "%s", e.msg);
    }
    if (aq_pipe_gguf_menu_check(&a->cfg, "", &e) != AQ_OK) return usage(cmd, "%s", e.msg);
    return 0;
}

/* The default GGUF menu keeps a block type only if some layer of MODEL admits
 * it (a K-quant needs rows of 256k; a menu option no layer admits is an error
 * of the plan, right for a user's menu, wrong for the default). An unreadable
 * model is left to the input checks. */
static void gguf_fit_menu(aq_pipe_args *a)
{
    aq_llama_config mc;
    if (aq_ckpt_read_llama_config(a->cfg.model, &mc, NULL) != AQ_OK) return;
    int64_t rows[3] = {mc.dim, mc.hidden_dim, (int64_t)mc.n_heads * aq_llama_head_dim(&mc)};
    char list[160] = "";
    for (int k = 0; k < a->cfg.n_options; k++) {
        int fits = 0;
        for (int i = 0; i < 3; i++) fits |= !aq_pipe_option_absent(a->cfg.options[k], rows[i]);
        if (fits) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? "," : "", a->cfg.options[k]);
    }
    aq_pipe_cfg_set_options(&a->cfg, list, NULL);
}

static int apply(const char *cmd, int c, const char *v, aq_pipe_args *a, int *nbudget)
{
    aq_pipe_cfg *g = &a->cfg;
    aq_error e = {0};
    switch (c) {
    case O_TOK: return copy_path(cmd, "--tokenizer", v, g->tokenizer);
    case O_TEXT:
    case O_CALIB:
    case O_EVAL:
        if (aq_data_spec_add(&g->data, c == O_TEXT ? AQ_DATA_SPLIT : c == O_CALIB ? AQ_DATA_CALIB : AQ_DATA_EVAL, v,
                             &e) != AQ_OK)
            return usage(cmd, "%s", e.msg);
        return 0;
    case O_DFMT:
        if ((g->data.format = aq_data_format_parse(v)) < 0)
            return usage(cmd, "--data-format must be auto, text, jsonl or tokens, not '%s'", v);
        return 0;
    case O_TFIELD:
        if (!*v || strlen(v) >= sizeof g->data.text_field) return usage(cmd, "--text-field: empty or too long");
        strcpy(g->data.text_field, v);
        return 0;
    case O_OUT: return copy_path(cmd, "--out", v, a->out.outdir);
    case O_WORK: a->have_work = 1; return copy_path(cmd, "--work", v, g->work);
    case O_OPTS:
        a->opts_given = 1;
        if (aq_pipe_cfg_set_options(g, v, &e) != AQ_OK) return usage(cmd, "%s", e.msg);
        return 0;
    case O_OUTFMT:
        if (strcmp(v, "gguf") && strcmp(v, "safetensors"))
            return usage(cmd, "--out-format must be safetensors or gguf, not '%s'", v);
        g->gguf = !strcmp(v, "gguf");
        return 0;
    case O_TBITS:
    case O_TFRAC:
        ++*nbudget;
        a->budget.objective = AQ_ALLOC_MIN_LOSS;
        a->budget.size_unit = c == O_TBITS ? AQ_SIZE_AVG_BITS : AQ_SIZE_FP32_FRACTION;
        a->budget.bpw = 0;
        return parse_num(cmd, c == O_TBITS ? "--target-bits" : "--target-fp32-fraction", v, &a->budget.size_value);
    case O_TSIZE:
        ++*nbudget;
        a->budget.objective = AQ_ALLOC_MIN_LOSS;
        a->budget.size_unit = AQ_SIZE_BYTES;
        if (aq_pipe_parse_size(v, &a->budget, &e) != AQ_OK) return usage(cmd, "%s", e.msg);
        return 0;
    case O_EOPTS:
        a->embed_given = 1;
        if (aq_pipe_cfg_set_embed_options(g, v, &e) != AQ_OK) return usage(cmd, "%s", e.msg);
        return 0;
    case O_MAXLOSS:
        ++*nbudget;
        a->budget.objective = AQ_ALLOC_MIN_SIZE;
        return parse_num(cmd, "--max-loss", v, &a->budget.max_loss);
    case O_KEEP:
        if (aq_pipe_budget_add_keep(&a->budget, v, &e) != AQ_OK) return usage(cmd, "%s", e.msg);
        return 0;
    case O_MODE:
        if (!strcmp(v, "parallel")) g->sequential = 0;
        else if (!strcmp(v, "sequential")) g->sequential = 1;
        else return usage(cmd, "--mode must be parallel or sequential, not '%s'", v);
        return 0;
    case O_INIT:
        if (strcmp(v, "rtn") && strcmp(v, "gptq") && strcmp(v, "best"))
            return usage(cmd, "--init must be rtn, gptq or best, not '%s'", v);
        g->init_gptq = !strcmp(v, "best") ? 2 : !strcmp(v, "gptq");
        return 0;
    case O_SEED: {
        char *end;
        g->seed = strtoull(v, &end, 0);
        return *v && !*end ? 0 : usage(cmd, "bad --seed '%s'", v);
    }
    case O_ITERS: return parse_int(cmd, "--iters", v, 0, 1000000, &g->iters);
    case O_WIN: return parse_int(cmd, "--calib-windows", v, 1, 1000000, &g->windows);
    case O_LEN: return parse_int(cmd, "--calib-len", v, 2, 1000000, &g->seq_len);
    case O_KLW: a->kl_given = 1; return parse_int(cmd, "--kl-windows", v, 0, 1000000, &g->kl_windows);
    case O_LOSS:
        if (!strcmp(v, "kl")) a->loss = 1;
        else if (!strcmp(v, "layer")) a->loss = 2;
        else if (!strcmp(v, "block-mse")) a->loss = 3;   /* src/model/block_loss.h */
        else if (!strcmp(v, "block-fisher")) a->loss = 4;
        else if (!strcmp(v, "auto")) a->loss = 5;
        else return usage(cmd, "--loss must be auto, kl, layer, block-mse or block-fisher, not '%s'", v);
        return 0;
    case O_REFINE: return parse_int(cmd, "--refine", v, 0, 100, &a->budget.refine);
    case O_STARTS: return parse_int(cmd, "--starts", v, 1, 1000, &g->starts);
    case O_POLISH: return parse_int(cmd, "--polish", v, 0, 1000, &g->polish);
    case O_SROWS: a->srows_given = 1; return parse_int(cmd, "--sample-rows", v, 0, 1000000, &g->sample_rows);
    case O_RESUME: a->resume = 1; return 0;
    case O_FORCE: a->out.force = 1; return 0;
    case O_NOEVAL: a->out.no_eval = 1; return 0;
    case O_EDOCS: return parse_int(cmd, "--eval-docs", v, 0, 100000000, &a->out.eval_docs);
    case O_ELEN: return parse_int(cmd, "--eval-len", v, 2, 1000000, &a->out.eval_len);
    case O_TSTEPS: return parse_int(cmd, "--tune-steps", v, 0, 1000000, &a->out.tune.steps);
    case O_NOTUNE: a->out.tune.steps = 0; return 0;
    case O_TMODE: /* docs/TUNE.md: auto picks by model size */
        if (!strcmp(v, "auto")) a->out.tune.mode = AQ_TUNE_AUTO;
        else if (!strcmp(v, "global")) a->out.tune.mode = AQ_TUNE_GLOBAL;
        else if (!strcmp(v, "block")) a->out.tune.mode = AQ_TUNE_BLOCK;
        else return usage(cmd, "--tune-mode must be auto, global or block, not '%s'", v);
        return 0;
    case O_TDOCS: return parse_int(cmd, "--tune-docs", v, 0, 100000000, &a->out.tune.docs);
    case O_TLEN: return parse_int(cmd, "--tune-len", v, 2, 1000000, &a->out.tune.max_len);
    case O_TBATCH: return parse_int(cmd, "--tune-batch", v, 1, 1000000, &a->out.tune.batch);
    case O_TLR: {
        int rc = parse_num(cmd, "--tune-lr", v, &a->out.tune.lr);
        if (!rc && !(a->out.tune.lr > 0)) rc = usage(cmd, "--tune-lr must be > 0");
        return rc;
    }
    case O_SHARD: return parse_int(cmd, "--shard", v, 0, 1000000, &a->shard);
    case O_SHARDS: return parse_int(cmd, "--shards", v, 1, 1000000, &a->shards);
    case O_COOP_RANKS: return parse_int(cmd, "--coop-ranks", v, 0, 1000000, &g->coop_ranks);
    case O_COOP_THR: return parse_num(cmd, "--coop-threshold", v, &g->coop_threshold);
    case O_MAXMEM: /* the per-rank memory bound (issue 13, mpi/pipeline/memory.h) */
        if (!((a->max_rank_memory = aq_mem_parse_size(v)) > 0))
            return usage(cmd, "--max-rank-memory must be a size > 0 (bytes, or with K, M, G, T), not '%s'", v);
        return 0;
    case O_PROGRESS:
        a->progress_given = 1;
        if (aq_progress_mode_parse(v, &a->progress))
            return usage(cmd, "--progress must be bar, plain, none or auto, not '%s'", v);
        return 0;
    }
    return usage(cmd, "unknown option");
}

int aq_default_tokenizer(const char *model, char *out, size_t n)
{
    /* the files a hub download has next to config.json, tokenizer.json first */
    static const char *const names[] = {"tokenizer.json", "tokenizer.bin"};
    struct stat s;
    if (stat(model, &s) != 0 || !S_ISDIR(s.st_mode)) return -1;
    for (int k = 0; k < 2; k++) {
        int w = snprintf(out, n, "%s/%s", model, names[k]);
        if (w > 0 && (size_t)w < n && stat(out, &s) == 0 && S_ISREG(s.st_mode)) return 0;
    }
    out[0] = '\0';
    return -1;
}

/* The data sources: some are required; --eval alone has nothing to calibrate
 * on; quantize evaluates, so --calib alone needs --no-eval. */
static int check_data(const char *cmd, int mask, const aq_pipe_args *a)
{
    int roles = aq_data_spec_roles(&a->cfg.data);
    if (!roles) return usage(cmd, "the data is required: --text FILE (split in halves) or --calib FILE --eval FILE");
    if (!(roles & (1 << AQ_DATA_SPLIT | 1 << AQ_DATA_CALIB)))
        return usage(cmd, "--eval needs --calib (the calibration documents)");
    if ((mask & AQ_ARGS_OUT) && roles == 1 << AQ_DATA_CALIB && !a->out.no_eval)
        return usage(cmd, "--calib without --eval: give the evaluation documents with --eval, or --no-eval");
    return 0;
}

/* --coop-ranks Q needs Q ranks (mpi/pipeline/coop_sched.h): refused before any work. */
static int check_coop(const char *cmd, const aq_pipe_args *a)
{
    int up = 0, size = 1;
    MPI_Initialized(&up);
    if (up) MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (a->cfg.coop_ranks > size && strcmp(cmd, "plan") != 0) /* plan: -P is the rank count */
        return usage(cmd, "--coop-ranks %d needs at least %d ranks; this run has %d (mpirun -np)", a->cfg.coop_ranks,
                     a->cfg.coop_ranks, size);
    return 0;
}

int aq_pipe_args_parse(const char *cmd, int mask, int argc, char **argv, aq_pipe_args *a)
{
    memset(a, 0, sizeof *a);
    aq_pipe_cfg_default(&a->cfg);
    aq_pipe_budget_default(&a->budget);
    aq_pipe_out_default(&a->out);
    a->cfg.coop_threshold = 1.0; /* --coop-threshold: tasks over total / Q */
    a->shard = -1;
    struct option lo[N_OPTS + 1];
    for (size_t i = 0; i < N_OPTS; i++) lo[i] = table[i].o;
    memset(&lo[N_OPTS], 0, sizeof lo[N_OPTS]);
    int c, nbudget = 0, rc;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == '?') return usage(cmd, "unknown or incomplete option '%s'", argv[optind - 1]);
        for (size_t i = 0; i < N_OPTS; i++)
            if (table[i].o.val == c && !(table[i].group & mask))
                return usage(cmd, "--%s is not an option of this command", table[i].o.name);
        if ((rc = apply(cmd, c, optarg, a, &nbudget))) return rc;
    }
    if (nbudget > 1)
        return usage(cmd, "give at most one of --target-size, --target-bits, --target-fp32-fraction, --max-loss");
    /* The tensor menu (embedding, untied classifier) joins the allocation only
     * under a budget in bytes (the measures in bits count the linears alone);
     * capture alone does not know the budget, and bytes are the default. */
    if (!a->embed_given && (mask & AQ_ARGS_MODEL))
        aq_pipe_cfg_set_embed_options(&a->cfg,
                                      aq_pipe_budget_bytes(&a->budget) && !a->cfg.sequential
                                          ? a->cfg.gguf ? AQ_PIPE_GGUF_EMBED_OPTIONS : AQ_PIPE_EMBED_OPTIONS_DEFAULT
                                          : "",
                                      NULL);
    /* the menus are capture's (quantize's); solve checks the work's (pipeline_run.c) */
    if (a->cfg.gguf && (mask & AQ_ARGS_MODEL) && (rc = gguf_menus(cmd, a))) return rc;
    if (a->cfg.n_embed_options > 0 && a->cfg.sequential)
        return usage(cmd, "--mode sequential does not handle the tensor menu yet: give --embed-options '' (the "
                          "embedding stays F32)");
    for (int k = 0; a->cfg.sequential && k < a->cfg.n_options; k++) {
        aq_layer_opts go;
        aq_layer_opts_default(&go);
        if (aq_layer_opts_parse(a->cfg.options[k], &go, NULL) == AQ_OK && go.group > 0)
            return usage(cmd, "--mode sequential does not handle group formats yet (option %s)", a->cfg.options[k]);
    }
    if (!a->srows_given && aq_pipe_menu_quantizes_acts(&a->cfg))
        /* Activation quantizers are fitted on the row sample (A, B, C all come
         * from it): 1024 rows gave w4a8 perplexity 6.594 on stories260K, 8192
         * rows 6.527, all 16384 rows 6.519. a16-only menus never read it. */
        a->cfg.sample_rows = AQ_PIPE_SAMPLE_ROWS_ACT;
    if (a->loss == 2 && a->kl_given && a->cfg.kl_windows > 0)
        return usage(cmd, "--loss layer does not use --kl-windows (give one or the other)");
    if (a->loss == 2) a->cfg.kl_windows = 0;
    if (a->loss != 2 && a->loss && a->cfg.kl_windows == 0)
        return usage(cmd, "--loss kl, auto or block-* needs --kl-windows >= 1");
    /* block-mse / block-fisher: 1 / 2; auto, also when --loss is not given: -1, resolved by model size
     * (sens_loss.h); kl, layer, --kl-windows 0: 0 */
    int auto_loss = (a->loss == 0 || a->loss == 5) && a->cfg.kl_windows > 0;
    a->cfg.sens_loss = a->loss == 3 || a->loss == 4 ? a->loss - 2 : auto_loss ? -1 : 0;
    if (a->budget.refine > 0 && a->budget.objective != AQ_ALLOC_MIN_LOSS)
        return usage(cmd, "--refine needs a size budget (--target-bits / --target-size), not --max-loss");
    int want_pos = (mask & AQ_ARGS_MODEL) ? 1 : 0;
    if (argc - optind != want_pos)
        return usage(cmd, want_pos ? "expected exactly one MODEL argument" : "unexpected argument '%s'",
                     optind < argc ? argv[optind] : "");
    if (want_pos) {
        if ((rc = copy_path(cmd, "MODEL", argv[optind], a->cfg.model))) return rc;
        if (!a->cfg.tokenizer[0] && aq_default_tokenizer(a->cfg.model, a->cfg.tokenizer, sizeof a->cfg.tokenizer))
            return usage(cmd, "--tokenizer TOK is required (MODEL is not a directory holding tokenizer.json or "
                              "tokenizer.bin)");
        if ((rc = check_data(cmd, mask, a))) return rc;
        if (a->cfg.gguf && !a->opts_given) gguf_fit_menu(a);
    }
    if ((mask & AQ_ARGS_OUT) && !a->out.outdir[0]) return usage(cmd, "--out OUTDIR is required");
    if ((mask & AQ_ARGS_WORK) && !(mask & AQ_ARGS_OUT) && !a->have_work) return usage(cmd, "--work DIR is required");
    if ((mask & AQ_ARGS_SHARD) && (a->shards < 1 || a->shard < 0 || a->shard >= a->shards))
        return usage(cmd, "--shard I --shards N are required, with 0 <= I < N");
    if ((rc = check_coop(cmd, a))) return rc;
    if ((mask & AQ_ARGS_OUT) && (mask & AQ_ARGS_MODEL) && !a->have_work)
        snprintf(a->cfg.work, sizeof a->cfg.work, "%.*s.work", AQ_PIPE_PATH - 8, a->out.outdir);
    return 0;
}

void aq_pipe_args_help(FILE *out, int mask)
{
    if (mask & AQ_ARGS_MODEL)
        fprintf(out,
                "model and calibration:\n"
                "  MODEL                  llama2.c .bin, HF directory or safetensors file\n"
                "  --tokenizer TOK        tokenizer .bin or tokenizer.json (its vocabulary must match\n"
                "                         the model's); default: MODEL/tokenizer.json, else\n"
                "                         MODEL/tokenizer.bin, when MODEL is such a directory\n"
                "data (docs/DATA.md; FILE may be a glob, options repeatable, files in the order\n"
                "given, glob matches sorted; format from the extension: .jsonl, .tok, else text):\n"
                "  --text FILE            documents whose first half (floor(n/2)) calibrates and\n"
                "                         second half evaluates (--calib-text: the same)\n"
                "  --calib FILE           calibration documents (with --eval: no split)\n"
                "  --eval FILE            evaluation documents\n"
                "  --data-format F        auto (default), text (split on blank lines), jsonl (one\n"
                "                         JSON object per line) or tokens (pre-tokenized ids)\n"
                "  --text-field NAME      the JSONL field holding the text (default text)\n"
                "calibration:\n"
                "  --calib-windows S      calibration windows (default 64)\n"
                "  --calib-len T          tokens per window (default 256); the text must hold S x T\n"
                "  --sample-rows R        input rows kept per capture point for activation quantizers\n"
                "                         (default 8192 when a menu option has M < 16, else 1024)\n"
                "  --options LIST         bit options per layer (default w8a16,w6a16,w4a16,w3a16;\n"
                "                         wKaM: K weight bits in 2,3,4,6,8, M activation bits 4,8,16;\n"
                "                         group formats, a16: q4_0, q4_1, q5_0, q5_1, q8_0 (llama.cpp's\n"
                "                         32-blocks), q2_k, q3_k, q4_k, q5_k, q6_k (its K-quants: rows\n"
                "                         a multiple of 256), wKgG (K-bit, fp16 scale per G = 32, 64,\n"
                "                         128 weights); a block option is absent where rows do not fit)\n"
                "  --embed-options LIST   options of the embedding and an untied classifier under a\n"
                "                         budget in bytes (default f32,f16,w8,w6,w4; '' = kept F32):\n"
                "                         f32, f16, wK = per-row K-bit codes (K in 2..8), ggml block\n"
                "                         types q8_0 ... q4_0 (llama.cpp's rows)\n"
                "  --mode parallel|sequential  parallel (default): every layer calibrated on FP\n"
                "                         inputs; sequential: after the parallel pass fixes the\n"
                "                         allocation, the chosen layers are recalibrated block by\n"
                "                         block on the inputs of the quantized upstream\n"
                "  --iters N              Adam iterations per AdaQuant step (default 200)\n"
                "  --init rtn|gptq|best   AdaQuant initialisation; best runs both and keeps the lower\n"
                "                         network KL per (layer, option) (default best)\n"
                "  --starts N             initial grids per layer, best kept per row (default 5)\n"
                "  --polish N             exact polishing rounds per start (default 8)\n"
                "  --loss auto|kl|layer|block-mse|block-fisher\n"
                "                         the allocation loss of a task: kl = mean KL(FP ||\n"
                "                         model with only that layer quantized) per predicted token on\n"
                "                         the first K calibration windows (the whole model on one\n"
                "                         rank); block-mse / block-fisher = the error of the layer's\n"
                "                         block output (Fisher-weighted), one block per task; layer =\n"
                "                         the layer's normalised output error, reported in any case;\n"
                "                         auto (default) = kl for small models, else block-fisher\n"
                "                         (docs/ALLOCATE.md \"Sensitivity\")\n"
                "  --kl-windows K         windows of --loss kl / block-* (default 16; 0 = --loss layer)\n"
                "  --seed S               seed (default 0)\n");
    if (mask & AQ_ARGS_WORK)
        fprintf(out,
                "work directory:\n"
                "  --work DIR             statistics, results and settings (quantize: OUTDIR.work)\n"
                "  --resume               reuse valid statistics / result files (CRC + fingerprint);\n"
                "                         corrupted ones are reported and recomputed\n"
                "  --coop-ranks Q         run the largest tasks each on Q ranks together (ScaLAPACK,\n"
                "                         docs/COOP.md; default 0 = off; needs P >= Q ranks)\n"
                "  --coop-threshold F     cooperative when a task's cost > F x total / Q (default 1;\n"
                "                         0 = every task the cooperative path runs)\n");
    if (mask & AQ_ARGS_BUDGET)
        fprintf(out,
                "budget (one of; default --target-size 5.5bpw):\n"
                "  --target-size S        the bytes of the output's model files (model.safetensors,\n"
                "                         config.json, tokenizer files; docs/FORMAT.md): 302560,\n"
                "                         302560B, 300k / 0.3M / 1G (powers of 1000), 300Ki / Mi / Gi\n"
                "                         (powers of 1024), or 5.5bpw = bits per weight over all the\n"
                "                         model's weights (llama.cpp's BPW). The embedding (and an\n"
                "                         untied classifier) are allocated too (--embed-options)\n"
                "  --target-bits B        average weight bits over the quantized linears, weighted\n"
                "                         by parameters (scales, zero points, embedding not counted)\n"
                "  --target-fp32-fraction F  the same measure as a fraction of FP32 (bits / 32; the\n"
                "                         old meaning of --target-size)\n"
                "  --max-loss L           smallest model whose summed layer loss is <= L\n"
                "  --keep REGEX=OPT       pin layers matching REGEX to option OPT (repeatable)\n"
                "  --refine R             R rounds (default 0) re-measuring every task's KL with the\n"
                "                         other layers at their allocated options, then re-solving:\n"
                "                         accounts for interactions at low bits (docs/QUALITY.md);\n"
                "                         costs R x tasks forwards, spread over the ranks\n");
    if (mask & AQ_ARGS_OUT)
        fprintf(out,
                "output:\n"
                "  --out OUTDIR           output directory (written atomically; must not exist)\n"
                "  --force                replace an existing OUTDIR\n"
                "  --eval-docs N          evaluate on the first N evaluation documents (0 = all)\n"
                "  --eval-len N           tokens per evaluation document (default 512)\n"
                "  --no-eval              skip the FP-vs-quantized evaluation\n"
                "global tuning (after the allocation; docs/TUNE.md):\n"
                "  --tune-steps N         Adam steps tuning every quantized layer's scales, zero\n"
                "                         points and biases and the RMSNorm gains end to end on\n"
                "                         KL(FP || quantized), codes fixed (default %d; 0 = off)\n"
                "  --no-tune              same as --tune-steps 0\n"
                "  --tune-docs N          the steps cycle through the first N calibration documents\n"
                "                         (BOS + text, like the evaluation; default 0 = all)\n"
                "  --tune-len N           tokens per document, longer ones truncated (default %d)\n"
                "  --tune-batch B         documents per step (default %d), split over the ranks in\n"
                "                         fixed chunks of %d\n"
                "  --tune-lr X            Adam learning rate (default %g)\n"
                "  --tune-mode M          global (the KL of the whole network), block (each block\n"
                "                         against its FP output, blocks over the ranks) or auto\n"
                "                         (default: global up to 50M block parameters, else block)\n",
                AQ_TUNE_STEPS_DEFAULT, AQ_TUNE_MAX_LEN_DEFAULT, AQ_TUNE_BATCH_DEFAULT, AQ_TUNE_CHUNK, AQ_TUNE_LR_DEFAULT);
    if (mask & AQ_ARGS_GGUF)
        fprintf(out,
                "  --out-format F         safetensors (default) or gguf: also write OUTDIR/model.gguf\n"
                "                         (llama.cpp's file); --target-size then counts its bytes,\n"
                "                         the default menus become GGUF types (%s;\n"
                "                         embedding %s) and options GGUF cannot store\n"
                "                         are refused (docs/PIPELINE.md \"GGUF budget\"). Split runs:\n"
                "                         capture chooses the menus, solve writes the file; give it\n"
                "                         to both (docs/SLURM.md)\n",
                "q8_0..q4_0, K-quants, w8a16 = F16 fallback", AQ_PIPE_GGUF_EMBED_OPTIONS);
    if (mask & (AQ_ARGS_MODEL | AQ_ARGS_SHARD)) /* issue 13 (memory.h); calibrate: its phase only */
        fprintf(out, "memory (docs/MEMORY.md):\n"
                     "  --max-rank-memory SIZE refuse, before any work, a run whose predicted peak per\n"
                     "                         rank exceeds SIZE (e.g. 1G, 512M), saying what would fit\n");
    if (mask & AQ_ARGS_SHARD)
        fprintf(out,
                "sharding:\n"
                "  --shard I --shards N   run shard I (0-based) of N cost-balanced task subsets\n");
    fprintf(out,
            "display (rank 0, on stderr; docs/PIPELINE.md \"Progress\"):\n"
            "  --progress MODE        bar: one line redrawn in place (needs a terminal);\n"
            "                         plain: one line per finished task with its ETA, no\n"
            "                         control characters (batch logs); none: silent;\n"
            "                         auto (default; AQ_PROGRESS=MODE sets the default): bar\n"
            "                         only when the text reaches a terminal, else plain. Under\n"
            "                         mpirun a rank's stdout is always a pty (Open MPI makes\n"
            "                         one), so auto looks at mpirun's own stdout and stderr:\n"
            "                         bar if both are terminals and the output is not tagged\n"
            "                         or split per rank; plain for a file, pipe, `mpirun >\n"
            "                         log`, an sbatch job, or rank 0 on another node. Without\n"
            "                         mpirun (one process, or srun): bar if stderr is a\n"
            "                         terminal. TERM=dumb means plain. A plain run's first\n"
            "                         line says which rule chose it.\n");
}
