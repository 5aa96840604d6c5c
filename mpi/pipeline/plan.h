/* plan.h — `adaquant plan`: what a quantize run will cost, predicted from the
 * model's config.json alone (no weights), the run settings and kernel rates
 * measured on this machine (docs/PLAN.md).
 *
 * Three parts:
 *  - the rates (plan_rates.c): GEMM/SYRK/POTRF rates at a ladder of sizes,
 *    exp and element-wise rates, zlib rates, and timed AdaQuant layer runs
 *    at two small shapes with the run's settings, measured in a few seconds
 *    through the same BLAS the pipeline calls, cached as JSON;
 *  - the model (plan_model.c): per-phase seconds and per-rank bytes from
 *    operation counts of TODAY's code paths (capture, calibrate, allocate,
 *    tune, eval, write), the calibrate phase scheduled by the real scheduler
 *    (aq_dist_schedule_build of tasks.h: LPT for the large tasks, the
 *    dynamic tail simulated as the driver serves it);
 *  - the report (plan_print.c): text and JSON.
 * Everything but the rate measurement is pure and deterministic. */
#ifndef AQ_DIST_PLAN_H
#define AQ_DIST_PLAN_H

#include <stdio.h>

#include "../../common/status.h"
#include "../../io/checkpoint.h"
#include "../../src/model/model.h"
#include "pipeline.h"

#define AQ_PLAN_RATES_VERSION 1
#define AQ_PLAN_NSIZES 9 /* GEMM ladder: 8, 16, ..., 2048 */
#define AQ_PLAN_MAX_SHAPES 256

/* Measured rates. GFLOP/s unless noted; sizes are the smallest GEMM dimension. */
typedef struct aq_plan_rates {
    char kernel[24];                /* BLIS sub-configuration the rates were measured with */
    double sgemm[AQ_PLAN_NSIZES];   /* single precision, min dimension 8 << i */
    double dgemm[AQ_PLAN_NSIZES];
    double dsyrk[AQ_PLAN_NSIZES];   /* counted as n^2 k flops (half a GEMM) */
    double potrf;                   /* dpotrf at n = 512, n^3/3 flops */
    double exp_rate;                /* libm expf per second (SwiGLU) */
    double dexp_rate;               /* libm exp (double) per second (log-softmax, KL over the vocabulary) */
    double softmax_rate;            /* elements per second of the engine's causal softmax row */
    double elem_rate;               /* elements per second of the engine's RMSNorm */
    double deflate_rate, inflate_rate; /* bytes per second, zlib level 6, float64 Gram data */
    double touch_rate;              /* bytes per second of fresh memory written (allocation + copy) */
    /* aq_layer_run on a synthetic statistics problem (correlated inputs) at
     * two shapes aq_shape[k] = {d_out, d_in}, with the settings below;
     * seconds per run (gptq start, rtn start) */
    int aq_iters, aq_starts, aq_polish;
    int aq_shape[2][2];
    double aq_gptq[2], aq_rtn[2];
    /* Small GEMM shapes timed exactly (where the ladder is too coarse):
     * seconds of C[m,n] = A[m,k] B[k,n], cached with the rates so that a
     * plan is the same every time it is computed from the same file. */
    int n_shapes;
    double shape[AQ_PLAN_MAX_SHAPES][4]; /* m, n, k, seconds */
    int shapes_added;                    /* measured since read: write the cache back */
    /* When set, the seconds of one single-precision GEMM of a given shape
     * (aq_plan_probe_gemm); NULL = the ladder only (tests). */
    double (*probe)(void *ctx, double m, double n, double k);
    void *probe_ctx;
} aq_plan_rates;

/* The probe of aq_plan_rates.probe (ctx = the aq_plan_rates): a cached
 * shape, else shapes up to a few hundred MFLOP timed now and added to the
 * cache, larger ones from the ladder (their rate has saturated). */
double aq_plan_probe_gemm(void *ctx, double m, double n, double k);

/* Measure every rate (a few seconds, single-threaded BLIS as the pipeline runs it). */
aq_status aq_plan_rates_measure(aq_plan_rates *r, int iters, int starts, int polish, aq_error *err);
/* Re-measure only the AdaQuant layer runs for other settings. */
aq_status aq_plan_rates_measure_layer(aq_plan_rates *r, int iters, int starts, int polish, aq_error *err);
/* JSON cache (written atomically). Reading: AQ_ERR_NOTFOUND if absent,
 * AQ_ERR_FORMAT naming the file and field if malformed. */
aq_status aq_plan_rates_write(const char *path, const aq_plan_rates *r, aq_error *err);
aq_status aq_plan_rates_read(const char *path, aq_plan_rates *r, aq_error *err);
/* Rate interpolated (log-log) on the ladder at min dimension s. */
double aq_plan_rate_at(const double *ladder, double s);

/* Documents of global tuning and of the evaluation: count, tokens, sum of
 * squared lengths (attention is quadratic). From the data when given, else
 * assumed (docs/PLAN.md). */
typedef struct aq_plan_docs {
    double n, tokens, sq;
} aq_plan_docs;

/* Per-task wall seconds measured by an earlier quantize run (all its runs of
 * the task and its KL), WORK/task_seconds.json: {"tasks": [{"layer",
 * "option", "seconds", "cpu_seconds"}...]}: wall seconds, and the CPU seconds
 * of the process that ran it (absent for a task reused or run cooperatively).
 * The plan takes them for the tasks they name (CPU seconds when the file has
 * any: the rates are a core of its own, the wall seconds carry the machine's
 * load) and scales its model of the others by measured / predicted. */
typedef struct aq_plan_measured {
    size_t n;
    char (*layer)[96];
    char (*option)[16];
    double *seconds;
    double *cpu;   /* [n], 0 = absent */
    int have_cpu;  /* any cpu_seconds in the file: the plan uses those */
} aq_plan_measured;
/* AQ_ERR_NOTFOUND when absent, AQ_ERR_FORMAT naming the file if malformed. */
aq_status aq_plan_measured_read(const char *path, aq_plan_measured *m, aq_error *err);
void aq_plan_measured_free(aq_plan_measured *m);
/* rows[n] in the order of tasks[n] (their .seconds), cpu[n] (NULL or 0: absent). */
aq_status aq_plan_measured_write(const char *path, const aq_dist_task *tasks, const aq_loss_row *rows,
                                 const double *cpu, size_t n, aq_error *err);

typedef struct aq_plan_input {
    aq_llama_config m;
    const aq_pipe_cfg *cfg;     /* windows, seq_len, options, iters, starts, polish, kl_windows, init */
    const aq_pipe_out *out;     /* tuning steps/batch, evaluation */
    int ranks;                  /* P >= 1 */
    double mem_per_rank;        /* bytes, 0 = unlimited */
    double model_file_bytes;    /* bytes on disk (0: params x 2, bf16) */
    double read_rate;           /* bytes/s reading the model files (assumed, not measured) */
    aq_plan_docs tune, eval;
    const aq_plan_measured *measured; /* NULL = none */
} aq_plan_input;

/* The phases as quantize reports them ("allocate" = the solve stage). */
enum { AQ_PLAN_CAPTURE, AQ_PLAN_CALIBRATE, AQ_PLAN_ALLOCATE, AQ_PLAN_TUNE, AQ_PLAN_EVAL, AQ_PLAN_WRITE,
       AQ_PLAN_NPHASES };
const char *aq_plan_phase_name(int phase);

typedef struct aq_plan_phase {
    double seconds;      /* predicted wall time at P ranks */
    double work;         /* the same work on one rank (seconds): efficiency = work / (P seconds) */
    double lower_bound;  /* max(work / P, the longest indivisible unit) */
    double mem;          /* predicted peak bytes on the busiest rank */
} aq_plan_phase;

/* One linear of a block (all blocks alike) and its tasks. */
typedef struct aq_plan_class {
    const char *name;    /* q_proj ... down_proj */
    int d_out, d_in;
    double flops;        /* AdaQuant flops of one task at the first option (2 d_out (d_in+1)^2 per iteration) */
    double seconds_min, seconds_max; /* predicted task seconds over the menu */
    double mem;          /* working bytes of one task (beyond the resident model) */
    int coop_time, coop_mem; /* over total/P, over the rank's memory left; with --coop-ranks Q:
                                coop_time = the calibrate stage runs these tasks on sub-grids */
    double coop_seconds;     /* with --coop-ranks Q: the longest such task's predicted seconds on Q ranks */
} aq_plan_class;

typedef struct aq_plan {
    int ranks, n_layers, n_options;
    size_t n_tasks;
    double params;               /* weights of the quantized linears */
    double model_params;         /* all weights (embeddings, norms, head included) */
    double total_flops;          /* AdaQuant flops of all tasks (iterations only) */
    aq_plan_class cls[AQ_LIN_COUNT];
    aq_plan_phase ph[AQ_PLAN_NPHASES];
    double task_total, task_longest; /* calibrate: sum and max of task seconds */
    double calibrate_by_seconds; /* calibrate's makespan if the scheduler's cost were the predicted seconds */
    double makespan, lower_bound, efficiency; /* whole run */
    double peak_mem;
    double model_bytes;          /* the F32 model every rank holds today */
    int n_coop_tasks;            /* tasks over total/P or over the memory left; with --coop-ranks Q the
                                    tasks the calibrate stage would run on sub-grids (coop_sched.h) */
    int coop_ranks;              /* --coop-ranks (0: none, the total/P rule) */
    double coop_phase;           /* the cooperative phase of calibrate (its makespan, seconds; Q <= P) */
    int n_spare_tasks;           /* single-rank tasks the P mod Q ranks outside the groups run meanwhile */
    size_t n_measured;           /* calibrate tasks taken from measured seconds */
    double measured_scale;       /* measured / predicted over them (1 = none) */
    int fits;                    /* peak_mem <= mem_per_rank (or no limit) */
} aq_plan;

/* The prediction. AQ_ERR_ARG for ranks < 1 or empty shapes. */
aq_status aq_plan_compute(const aq_plan_input *in, const aq_plan_rates *r, aq_plan *out, aq_error *err);

/* Per-task seconds of the calibrate phase in canonical task order (layer,
 * option), and the makespan of the real schedule (static LPT + the dynamic
 * tail served in cost order to the first free rank) given per-rank set-up
 * seconds. cost[] is the scheduler's own estimate (tasks.h). */
aq_status aq_plan_schedule(const double *cost, const double *seconds, size_t n, int ranks, double setup,
                           double *makespan, aq_error *err);

/* Memory (bytes) of the pieces, today's code (docs/PLAN.md "Memory"). */
double aq_plan_model_bytes(const aq_llama_config *m);
double aq_plan_task_bytes(int d_out, int d_in, int init_best);
double aq_plan_capture_block_bytes(const aq_llama_config *m, int sample_rows);

/* The tuning and evaluation documents of the data, as the write stage forms them. */
aq_status aq_plan_data_docs(const aq_pipe_cfg *c, const aq_pipe_out *o, const aq_llama_config *m, aq_plan_docs *tune,
                            aq_plan_docs *eval, aq_error *err);

#define AQ_PLAN_READ_RATE (1024.0 * 1024 * 1024) /* assumed model read rate, bytes/s */

/* quantize's check of the model (plan_hook.c): with rates cached in
 * WORK/plan_rates.json (or AQ_PLAN_RATES=FILE), print the prediction on log
 * before the run and the measured phase times beside it after. Rank 0 only;
 * never fails the run. */
typedef struct aq_plan_hook {
    int on;
    aq_plan p;
} aq_plan_hook;
void aq_plan_hook_begin(const aq_pipe_cfg *c, const aq_pipe_out *o, int ranks, aq_plan_hook *h, FILE *log);
void aq_plan_hook_end(const aq_plan_hook *h, const aq_pipe_timing *t, FILE *log);

/* Output. */
void aq_plan_print(FILE *f, const aq_plan_input *in, const aq_plan *p, const aq_plan_rates *r);
void aq_plan_print_json(FILE *f, const aq_plan_input *in, const aq_plan *p, const aq_plan_rates *r);

/* CBC on a synthetic loss table of this model's task list (losses falling
 * with bits, per-layer random scale; seed fixed) under --target-bits (and a
 * BOPs budget when bops_frac > 0: that fraction of the all-w8a8 BOPs).
 * Returns the solve seconds, optimality and gap. */
aq_status aq_plan_time_solve(const aq_llama_config *m, const aq_pipe_cfg *c, double target_bits, double bops_frac,
                             double *seconds, int *optimal, double *gap, aq_error *err);

#endif
