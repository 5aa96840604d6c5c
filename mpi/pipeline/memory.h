/* memory.h — the per-rank memory bound of the pipeline (issue 13): a
 * prediction per phase from the model config, the calibration settings, the
 * output options and the number of ranks (the formula: docs/MEMORY.md), the
 * --max-rank-memory refusal built on it, and the measured peak RSS of every
 * rank (getrusage ru_maxrss) gathered for the report. */
#ifndef AQ_PIPE_MEMORY_H
#define AQ_PIPE_MEMORY_H

#include <mpi.h>

#include "../../io/checkpoint.h"
#include "pipeline.h"

typedef enum aq_mem_phase { AQ_MEM_CAPTURE, AQ_MEM_CALIBRATE, AQ_MEM_WRITE, AQ_MEM_PHASES } aq_mem_phase;

typedef struct aq_mem_pred {
    double base;                  /* the process before any work (current RSS at the prediction) */
    double phase[AQ_MEM_PHASES];  /* predicted peak of each phase, base included */
    int worst;                    /* the phase with the highest peak */
} aq_mem_pred;

/* "capture", "calibrate", "write (tune, eval)". */
const char *aq_mem_phase_name(int phase);
/* Predict the per-rank peaks of a run of c (o: the write stage's options,
 * NULL = no write stage) on `ranks` ranks of a model of config mc. base is
 * the bytes the process holds already (aq_mem_current_rss()). Pure. */
void aq_mem_predict(const aq_pipe_cfg *c, const aq_llama_config *mc, const aq_pipe_out *o, int ranks,
                    double base, aq_mem_pred *out);
/* One task of a d_out x d_in linear in the calibrate phase on q ranks (q = 1:
 * alone; q > 1: a sub-grid of the cooperative path), the runtime allowance
 * included, the process base not (docs/MEMORY.md, "Cooperative tasks"). */
double aq_mem_task_bytes(const aq_pipe_cfg *c, const aq_llama_config *mc, double d_out, double d_in, int q);
/* 1 when c->max_rank_memory > 0 and aq_mem_task_bytes(.., 1) exceeds it: the
 * task goes cooperative (aq_dist_coop_pick's too_big). The base is left out so
 * that the choice, and the bytes, do not depend on P or the MPI library. */
int aq_mem_task_too_big(const aq_pipe_cfg *c, const aq_llama_config *mc, double d_out, double d_in);
/* The resident set now (/proc/self/statm), in bytes; 0 if unknown;
 * AQ_MEM_BASE=SIZE in the environment replaces it (tests). */
double aq_mem_current_rss(void);
/* The peak resident set so far (getrusage ru_maxrss), in bytes. */
double aq_mem_peak_rss(void);
/* Refuse (AQ_ERR_ARG) a run whose predicted peak exceeds limit bytes: names
 * the phase, the prediction, and what would fit (more ranks, fewer sample
 * rows, fewer KL windows, shorter windows), each computed with the same
 * formula. AQ_OK when it fits or limit <= 0. Reads the model's config. */
aq_status aq_mem_check(const aq_pipe_cfg *c, const aq_pipe_out *o, int ranks, double limit, aq_error *err);
/* The same check for one phase (an aq_mem_phase; < 0: the worst, as
 * aq_mem_check), for a command that runs that phase alone (calibrate): the
 * message has the same shape; what would fit is the ranks or --coop-ranks. */
aq_status aq_mem_check_phase(const aq_pipe_cfg *c, const aq_pipe_out *o, int ranks, double limit, int phase,
                             aq_error *err);
/* Parse a size: bytes, or with a suffix K, M, G, T (powers of 1024, optional
 * "iB"/"B"). -1 if malformed. */
double aq_mem_parse_size(const char *s);
/* Collective: fill t->pred (from c, o) and t->rss (every rank's peak RSS so
 * far, gathered to rank 0). Errors are not fatal: the fields stay 0. */
void aq_mem_gather(MPI_Comm comm, const aq_pipe_cfg *c, const aq_pipe_out *o, aq_pipe_timing *t);
/* The end-of-run lines: per rank, predicted and measured peak (rank 0). */
void aq_mem_print(FILE *f, const aq_pipe_timing *t);

#endif
