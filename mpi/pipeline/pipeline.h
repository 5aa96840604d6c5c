/* pipeline.h — the quantize pipeline as four stages sharing one work directory
 * (docs/PIPELINE.md): capture -> calibrate -> solve -> write.
 *
 * The work directory is the only state the stages share, so `adaquant quantize`
 * (all stages in one MPI job), the mpirun stage commands and a Slurm job array
 * produce the same output bytes:
 *   WORK/settings.json        what capture was run with (calibrate/solve read it)
 *   WORK/stats/<b>.<point>.aqs per capture point statistics (resultfile format)
 *   WORK/results/<key>.aqr     one result per (layer, option) task (resultfile.h)
 *   WORK/shards.json          the shard count of the last `calibrate --shards N`
 * Every stage function is collective over its communicator unless noted; all
 * ranks return the same status (errors are agreed with an MPI_Allreduce). */
#ifndef AQ_DIST_PIPELINE_H
#define AQ_DIST_PIPELINE_H

#include <stdint.h>
#include <stdio.h>

#include <mpi.h>

#include "fixed_chunks.h"
#include "../../common/status.h"
#include "../../io/fingerprint.h"
#include "../../io/resultfile.h"
#include "../../solver/allocate.h"
#include "../../src/adaquant/adaquant.h"
#include "../../src/text/textdata.h"
#include "tasks.h"

#define AQ_PIPE_PATH 4096
#define AQ_PIPE_MAX_OPTIONS 16
#define AQ_PIPE_MAX_KEEP 16
#define AQ_PIPE_FORMAT_VERSION 1 /* docs/FORMAT.md */

/* Everything that enters a task fingerprint. Plain value (fixed arrays). */
typedef struct aq_pipe_cfg {
    char model[AQ_PIPE_PATH], tokenizer[AQ_PIPE_PATH];
    aq_data_spec data; /* calibration / evaluation sources (src/text/textdata.h, docs/DATA.md) */
    char work[AQ_PIPE_PATH];
    int windows, seq_len, chunk_windows, sample_rows;
    uint64_t sample_seed;
    int n_options;
    char options[AQ_PIPE_MAX_OPTIONS][16]; /* canonical strings, menu order */
    /* the options of the tensors outside the linears (the embedding, an untied
     * classifier: aq_tensor_opt_parse), menu order; 0 = not allocated (kept
     * F32). Default f32,f16,w8,w6,w4 under a budget in bytes (docs/PIPELINE.md). */
    int n_embed_options;
    char embed_options[AQ_PIPE_MAX_OPTIONS][8];
    int iters;
    int kl_windows;     /* windows for the network-level KL loss of a task (0 = use the layer error) */
    int sens_loss;      /* 0: as kl_windows says; 1 block-mse, 2 block-fisher on the kl_windows windows
                           (src/model/block_loss.h); -1 auto, resolved by aq_pipe_loss_resolve */
    int starts, polish; /* AdaQuant initial grids and polishing rounds (adaquant.h) */
    int init_gptq;  /* 1 gptq, 0 rtn, 2 best: both, keep the lower network KL */
    int sequential; /* --mode sequential */
    uint64_t seed;
    /* content fingerprints of the inputs (filled by aq_pipe_cfg_fingerprint);
     * fp_text covers every data file (aq_data_fingerprint) */
    aq_fingerprint fp_model, fp_tok, fp_text;
    uint64_t sz_model, sz_tok, sz_text;
    /* --coop-ranks Q (0 = off) and --coop-threshold F (docs/COOP.md, "Scheduling"):
     * run settings like P, not recorded in settings.json nor fingerprinted (results
     * of another Q differ in the last bits only, as those of another BLAS kernel) */
    int coop_ranks;
    double coop_threshold;
    double max_rank_memory; /* --max-rank-memory (bytes, 0 = none): a run setting too; with --coop-ranks
                               the tasks that fit no rank alone go cooperative (memory.h) */
    /* quantize --out-format gguf: the budget in bytes measures OUTDIR/model.gguf
     * and every option is one GGUF stores (docs/PIPELINE.md "GGUF budget"); a
     * run setting, not fingerprinted (results do not depend on it) */
    int gguf;
} aq_pipe_cfg;

/* Defaults: windows 64, seq_len 256, chunk 8, sample rows 1024, options
 * w8a16,w6a16,w4a16,w3a16, iters 200, best-of-gptq-and-rtn init, parallel mode, seed 0. */
void aq_pipe_cfg_default(aq_pipe_cfg *c);
/* The tensor menu (--embed-options; "" = none). AQ_ERR_ARG naming a bad or
 * repeated option. */
#define AQ_PIPE_EMBED_OPTIONS_DEFAULT "f32,f16,w8,w6,w4"
aq_status aq_pipe_cfg_set_embed_options(aq_pipe_cfg *c, const char *list, aq_error *err);
/* Parse a comma-separated option menu into c->options (canonical form).
 * AQ_ERR_ARG naming an unknown option or a duplicate. */
aq_status aq_pipe_cfg_set_options(aq_pipe_cfg *c, const char *list, aq_error *err);
/* The AdaQuant options of one task: the option string plus the run's
 * iterations, starts, polish rounds, initialisation and seed. */
aq_status aq_pipe_layer_opts(const aq_pipe_cfg *c, const char *option, aq_layer_opts *o, aq_error *err);
/* The windows of the network-level KL loss (--loss kl, --refine): the
 * first min(kl_windows, windows) calibration windows of seq_len tokens,
 * packed in *out (aq_seqs_free). (Whole calibration documents instead gave a
 * worse allocation on stories260K: docs/QUALITY.md.) AQ_ERR_ARG if
 * kl_windows < 1, plus the text's errors. */
struct aq_seqs;
aq_status aq_pipe_kl_seqs(const aq_pipe_cfg *c, int vocab, struct aq_seqs *out, aq_error *err);
/* "rtn", "gptq" or "best" for cfg.init_gptq. */
const char *aq_pipe_init_name(int init_gptq);
/* Non-zero if an option of the menu quantizes activations (M < 16). */
int aq_pipe_menu_quantizes_acts(const aq_pipe_cfg *c);
/* Default row sample per capture point when activations are quantized. */
#define AQ_PIPE_SAMPLE_ROWS_ACT 8192
/* Hash the model (a file, or every regular file of a directory in name
 * order), the tokenizer and the calibration text. AQ_ERR_IO naming a path. */
aq_status aq_pipe_cfg_fingerprint(aq_pipe_cfg *c, aq_error *err);
/* Fingerprint of the capture statistics (inputs + calibration settings). */
aq_fingerprint aq_pipe_stats_fp(const aq_pipe_cfg *c);
/* Fingerprint of one task's result (stats fp + AdaQuant settings + key). */
aq_fingerprint aq_pipe_task_fp(const aq_pipe_cfg *c, const char *layer, const char *option);
/* WORK/settings.json: write (atomic) / read back. The file records the
 * inputs' fingerprints and a fingerprint of every setting in it; reading
 * refuses, naming the file, a damaged or hand-edited settings.json
 * (AQ_ERR_FORMAT) and an input that changed since capture (AQ_ERR_ARG naming
 * the model, tokenizer or text path). */
#define AQ_PIPE_SETTINGS_VERSION 3 /* 3: "data" (sources) replaces "calib_text" */
aq_status aq_pipe_cfg_write(const aq_pipe_cfg *c, aq_error *err);
aq_status aq_pipe_cfg_read(const char *work, aq_pipe_cfg *c, aq_error *err);
/* --resume of quantize/capture: say on log which input (c's fingerprints)
 * differs from the one WORK/settings.json was captured from, if any. */
void aq_pipe_cfg_report_changed_inputs(const aq_pipe_cfg *c, FILE *log);
/* "<work>/<rel>" into out (AQ_PIPE_PATH). */
void aq_pipe_path(const char *work, const char *rel, char *out);

/* The quantizable layers of a model geometry: every linear of every block
 * (the tied/untied classifier stays FP). One entry per layer, in model order. */
typedef struct aq_pipe_layer {
    char name[96];    /* HF prefix, e.g. model.layers.0.self_attn.q_proj */
    int block, which; /* aq_linear */
    int point;        /* aq_cap_point feeding it */
    int d_out, d_in;
} aq_pipe_layer;

/* The task list: layers x options in canonical order (layer, option).
 * Owns its arrays (aq_pipe_plan_free). Layers come from the model config. */
typedef struct aq_pipe_plan {
    int n_layers;
    aq_pipe_layer *layers;
    size_t n_tasks;
    aq_dist_task *tasks;   /* mpi/pipeline/tasks.h; layer/option strings borrowed from here/cfg */
    /* The tensors outside the linears that the tensor menu allocates (none when
     * cfg->n_embed_options is 0): the embedding "model.embed_tokens" (which =
     * -1; tied: it is the classifier too) and an untied "lm_head" (which =
     * AQ_LIN_HEAD), d_out = vocab, d_in = dim. Their tasks follow the linear
     * tasks: task n_lin_tasks + e * n_embed_options + k. */
    int n_extra, tied;
    aq_pipe_layer extra[2];
    size_t n_lin_tasks;
    int64_t n_tokens;           /* calibration rows = windows * seq_len */
} aq_pipe_plan;

/* Build the plan from the model at cfg->model (reads only its config). */
aq_status aq_pipe_plan_build(const aq_pipe_cfg *c, aq_pipe_plan *p, aq_error *err);
/* The same from a config alone (`adaquant plan`: no weights needed). */
struct aq_llama_config;
aq_status aq_pipe_plan_build_config(const aq_pipe_cfg *c, const struct aq_llama_config *m, aq_pipe_plan *p, aq_error *err);
void aq_pipe_plan_free(aq_pipe_plan *p);

/* Budget and output options of solve/write. */
typedef struct aq_pipe_budget {
    aq_alloc_objective objective;
    aq_alloc_size_unit size_unit; /* AVG_BITS, FP32_FRACTION or BYTES (the output's model files) */
    double size_value;            /* BYTES: bytes, or bits per weight over all weights if bpw */
    int bpw;                      /* BYTES given as "Xbpw" (resolved against the model's weights) */
    double max_loss;
    size_t n_keep;
    char keep_regex[AQ_PIPE_MAX_KEEP][256];
    char keep_opt[AQ_PIPE_MAX_KEEP][16];
    int refine; /* --refine rounds (mpi/pipeline/refine.h); 0 = none */
} aq_pipe_budget;

/* Default: --target-size 5.5bpw (the model files at 5.5 bits per weight of
 * all the model's weights, llama.cpp's BPW measure). */
void aq_pipe_budget_default(aq_pipe_budget *b);
#define AQ_PIPE_DEFAULT_BPW 5.5
/* Parse a --target-size value: bytes ("302560", "302560B", "300k" = 300000,
 * "0.3M", "1G"; "300Ki" = 307200, "Mi", "Gi") or bits per weight over all
 * weights ("5.5bpw"). AQ_ERR_ARG naming the value (a fraction below 1 byte
 * points to --target-fp32-fraction, the old meaning). */
aq_status aq_pipe_parse_size(const char *v, aq_pipe_budget *b, aq_error *err);
/* Non-zero when the budget is in file bytes (the tensor menu joins the table). */
int aq_pipe_budget_bytes(const aq_pipe_budget *b);
/* Parse "REGEX=OPT" into the next --keep slot (OPT must be in the menu at
 * check time). AQ_ERR_ARG for a malformed rule or too many. */
aq_status aq_pipe_budget_add_keep(aq_pipe_budget *b, const char *rule, aq_error *err);
/* Before any work: pins name menu options and compile, and a size budget is
 * at least the smallest possible (params x least bits, pins respected).
 * AQ_ERR_INFEASIBLE naming the smallest feasible budget. */
aq_status aq_pipe_budget_check(const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_budget *b,
                               aq_error *err);

/* Global tuning after assembly (mpi/pipeline/stage_tune.h). */
typedef struct aq_pipe_tune_opts {
    int steps;   /* Adam steps; 0 = no tuning */
    int docs;    /* pool: the first `docs` calibration documents (0 = all) */
    int max_len; /* tokens per document (BOS + text, truncated) */
    int batch;   /* documents per step */
    double lr;   /* Adam learning rate */
    int mode;    /* AQ_TUNE_AUTO (by model size), AQ_TUNE_GLOBAL, AQ_TUNE_BLOCK (stage_tune.h) */
} aq_pipe_tune_opts;

#define AQ_TUNE_STEPS_DEFAULT 400
#define AQ_TUNE_MAX_LEN_DEFAULT 512
#define AQ_TUNE_BATCH_DEFAULT 16
#define AQ_TUNE_LR_DEFAULT 5e-3
/* AQ_TUNE_CHUNK, AQ_EVAL_CHUNK: fixed_chunks.h (they decide output bytes) */
enum { AQ_TUNE_AUTO = 0, AQ_TUNE_GLOBAL = 1, AQ_TUNE_BLOCK = 2 };

typedef struct aq_pipe_out {
    char outdir[AQ_PIPE_PATH];
    int force;       /* replace an existing OUTDIR */
    int eval_docs;   /* evaluation documents (0 = all) */
    int eval_len;    /* tokens per evaluation document (default 512) */
    int no_eval;
    aq_pipe_tune_opts tune;
} aq_pipe_out;

void aq_pipe_out_default(aq_pipe_out *o);
/* OUTDIR must not exist (unless force) and its parent must be a writable
 * directory. AQ_ERR_ARG / AQ_ERR_IO naming the path. */
aq_status aq_pipe_out_check(const aq_pipe_out *o, aq_error *err);

/* Phase timings and run facts for the report (not part of any compared file). */
#define AQ_PIPE_RSS_RANKS 256 /* ranks whose peak RSS the report lists one by one */
typedef struct aq_pipe_timing {
    double capture, calibrate, solve, tune, write, eval;
    double coop; /* the cooperative phase of calibrate (--coop-ranks; its wall seconds, part of calibrate) */
    int ranks;
    size_t reused, computed;
    /* memory (memory.h, filled by aq_mem_gather on rank 0): the process's RSS
     * before any work, the predicted peak per phase (capture, calibrate,
     * write) and the worst, each rank's measured peak RSS (bytes) */
    double mem_base, mem_pred[3];
    int mem_worst, rss_n;
    double rss[AQ_PIPE_RSS_RANKS], rss_max;
} aq_pipe_timing;

/* Check the inputs of a capture before any work (collective-safe: pure):
 * model loads, tokenizer vocab matches, the text holds windows x seq_len
 * calibration tokens. */
aq_status aq_pipe_check_inputs(const aq_pipe_cfg *c, aq_error *err);

/* Stage 1 (collective): statistics into WORK/stats/, settings.json. With
 * resume, valid stats files are reused. */
aq_status aq_pipe_capture(MPI_Comm comm, const aq_pipe_cfg *c, int resume, aq_pipe_timing *t, aq_error *err);

/* Stage 2 (collective): run the tasks (all of them, or shard `shard` of
 * `shards` when shards > 0) with the distributed driver. On rank 0 *rows
 * (malloc'd, n_tasks) receives the loss rows when all tasks ran (shards == 0). */
aq_status aq_pipe_calibrate(MPI_Comm comm, const aq_pipe_cfg *c, const aq_pipe_plan *p, int resume,
                            int shard, int shards, aq_loss_row **rows, aq_pipe_timing *t, aq_error *err);

/* Stage 3, the allocation: stage_solve.h. */

/* Stage 4 (collective): evaluate (documents spread over ranks) and write
 * OUTDIR atomically on rank 0. choice valid on every rank. */
aq_status aq_pipe_write(MPI_Comm comm, const aq_pipe_cfg *c, const aq_pipe_plan *p, const aq_pipe_budget *b,
                        const aq_loss_row *rows, const int *choice, const aq_pipe_out *o, aq_pipe_timing *t,
                        aq_error *err);

/* Agree on a status over comm: if any rank failed, every rank returns the
 * lowest failing rank's error (its message is broadcast). */
aq_status aq_pipe_agree(MPI_Comm comm, aq_status st, aq_error *err);

#endif
