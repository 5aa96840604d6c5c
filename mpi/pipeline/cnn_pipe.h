/* cnn_pipe.h — the distributed `adaquant quantize MODEL.onnx` (issue 17):
 * what the command line gives (cmd_quantize_cnn.c), the per-task machinery
 * (cnn_task.c: fingerprints, AdaQuant/RTN of one (layer, option) pair,
 * result files), the run (cnn_pipe.c: capture on every rank, the tasks over
 * the ranks with the LLM pipeline's driver, CBC allocation, BN/bias stage,
 * evaluation split over the ranks) and OUTDIR (cnn_out.c, docs/CNN.md). */
#ifndef AQ_DIST_CNN_PIPE_H
#define AQ_DIST_CNN_PIPE_H

#include <stdint.h>
#include <stdio.h>

#include <mpi.h>

#include "../../io/fingerprint.h"
#include "../../io/resultfile.h"
#include "../../src/cnn/cnn_quant.h"
#include "../../src/cnn/cnn_tune.h"
#include "driver.h"
#include "tasks.h"

#define AQ_CNNP_MAX_OPT 16
#define AQ_CNNP_MAX_KEEP 16
#define AQ_CNNP_PATH 4096
/* Defaults of --outer-iters and --max-rows (docs/CNN.md "Speed"). */
#define AQ_CNNP_OUTER_ITERS 6
#define AQ_CNNP_MAX_ROWS 0

typedef struct aq_cnnp_args {
    const char *model, *calib_images, *calib_indices, *eval_images, *eval_labels, *out;
    char work[AQ_CNNP_PATH];
    long calib_count;       /* first N images when no --calib-indices (default 256) */
    long eval_from, eval_to;/* -1: the whole file */
    aq_cnn_norm norm;
    char opt_buf[256];
    const char *opt[AQ_CNNP_MAX_OPT];
    int n_opt;
    const char *keep_re[AQ_CNNP_MAX_KEEP], *keep_opt[AQ_CNNP_MAX_KEEP];
    char keep_buf[AQ_CNNP_MAX_KEEP][256];
    int n_keep;
    double target_bits;     /* average weight bits, 0: none */
    double target_size;     /* bytes of the quantized layers, 0: none */
    aq_cnnq_method method;  /* AQ_CNNQ_ADAQUANT or AQ_CNNQ_RTN_MINMAX */
    int sequential, resume, iters, batch;
    int outer_iters;        /* AdaQuant activation-quantizer steps (a < 16); 0: the library's */
    long max_rows;          /* rows (images x output positions) a conv task fits on; 0: all */
    uint64_t seed;
    aq_cnnq_tune_opts tune;
    int argc;
    char **argv;            /* for the report */
} aq_cnnp_args;

/* Everything the tasks need, identical on every rank. */
typedef struct aq_cnnp_ctx {
    const aq_cnnp_args *a;
    aq_cnn_graph g;           /* the model, BatchNorms folded */
    aq_cnnq_bnfold *folds;
    int n_folds;
    aq_cnnq_capture cap;      /* layers + captured inputs */
    uint8_t *calib;           /* [n_calib, image] */
    size_t n_calib, image;
    aq_layer_opts opts[AQ_CNNP_MAX_OPT];
    aq_fingerprint base;      /* model, images, indices, normalisation, method, settings */
    aq_dist_task *tasks;      /* the (layer, option) pairs a layer may take, canonical order */
    size_t n_tasks;
    const float *const *seq_x;/* sequential mode: layer inputs (NULL: parallel) */
    int *pin;                 /* [n_layers]: the option the first matching --keep rule
                                 gives (sequential: else the first option), or -1 */
    long *task_of;            /* [n_layers * n_opt]: task index of (layer, option), or -1 */
} aq_cnnp_ctx;

/* The task of (layer i, option k), or -1: a pinned layer has only the task
 * of its pinned option. */
long aq_cnnp_task_index(const aq_cnnp_ctx *c, int i, int k);

/* cnn_task.c */
/* The fingerprint of every setting a result depends on (ctx->base). */
aq_status aq_cnnp_fingerprint(aq_cnnp_ctx *c, aq_error *err);
/* The task list (layer, option) in canonical order, with costs and fingerprints. */
aq_status aq_cnnp_tasks(aq_cnnp_ctx *c, aq_error *err);
/* The driver's callback: quantize one (layer, option) pair and write its result file. */
aq_status aq_cnnp_task_run(void *ctx, const aq_dist_task *t, size_t index, const char *path,
                           aq_dist_worker *w, aq_error *err);
/* Read task t's result file back into r (aq_cnnq_result_free). */
aq_status aq_cnnp_result_load(const aq_cnnp_ctx *c, size_t t, aq_cnnq_result *r, aq_error *err);
/* Stored bits of one layer at (w_bits, a_bits): codes packed, f32 scale, zero
 * and bias per output channel, the activation pair when a < 16. */
int64_t aq_cnnp_layer_bits(const aq_cnnq_layer *L, int w_bits, int a_bits);
/* The calibration images layer i's task fits on: the first ones, as many as
 * --max-rows allows a conv (at least one); all for Gemm/MatMul. */
int aq_cnnp_task_images(const aq_cnnp_ctx *c, int i);
/* Multiply-accumulates of one layer per image. */
int64_t aq_cnnp_layer_macs(const aq_cnnq_layer *L);

/* What goes into OUTDIR and the report (cnn_out.c). */
typedef struct aq_cnnp_outcome {
    int *choice;                   /* [n_layers] option index */
    aq_cnnq_result *res;           /* [n_layers] final (rounded, tuned) */
    aq_loss_row *rows;             /* [n_tasks] */
    double alloc_loss, alloc_avg_bits;
    int64_t alloc_bits;
    int zeros_rounded;
    aq_cnnq_tune_report tune;
    size_t n_eval, eval_first, correct_fp, correct_q, agree;
    int32_t *pred_q;               /* [n_eval] */
    double t_load, t_capture, t_tasks, t_solve, t_tune, t_eval, t_write;
    /* rank 0's process CPU seconds of the same phases (report.json
     * run.timing_cpu): on a machine shared with other work the wall times
     * say little; MPI's waits spin, so they count here too */
    double c_load, c_capture, c_tasks, c_tune, c_eval;
    size_t reused, computed;
    int ranks;
} aq_cnnp_outcome;

/* Rank 0: write OUTDIR atomically (OUTDIR.tmp.<pid>, then rename). */
aq_status aq_cnnp_write_outdir(const aq_cnnp_ctx *c, aq_cnnp_outcome *o, aq_error *err);

/* A quantized CNN OUTDIR read back (export, eval): the folded graph and
 * every layer's result. */
typedef struct aq_cnnp_loaded {
    aq_cnn_graph g;
    aq_cnnq_bnfold *folds;
    int n_folds, n_layers;
    aq_cnnq_layer *layers;
    aq_cnnq_result *res;
} aq_cnnp_loaded;
/* Whether dir holds a quantized CNN (its quantization.json says so). */
int aq_cnnp_is_outdir(const char *dir);
aq_status aq_cnnp_load_outdir(const char *dir, aq_cnnp_loaded *l, aq_error *err);
void aq_cnnp_loaded_free(aq_cnnp_loaded *l);
/* The normalisation the run used (quantization.json's "normalize"). */
aq_status aq_cnnp_outdir_norm(const char *dir, aq_cnn_norm *norm, aq_error *err);
/* `adaquant eval OUTDIR`: predictions of n images (u8, `image` pixels each)
 * by the FP model (OUTDIR/model.onnx as read, unfolded) into pred_fp and by
 * the quantized one (fake-quantized inputs, the model the run evaluated and
 * `export` writes) into pred_q; *classes: the output size per image. */
aq_status aq_cnnp_eval_outdir(const char *dir, const uint8_t *px, size_t n, size_t image, const aq_cnn_norm *norm,
                              int batch, int32_t *pred_fp, int32_t *pred_q, size_t *classes, aq_error *err);
/* `adaquant export OUTDIR --format onnx-qdq --out FILE.onnx`. */
aq_status aq_cnnp_export_qdq(const char *dir, const char *path, aq_error *err);

/* cnn_pipe.c: the whole run, collective over comm. */
aq_status aq_cnnp_run(MPI_Comm comm, const aq_cnnp_args *a, aq_error *err);

#endif
