/* stage_stats.h — the statistics files of the capture stage,
 * WORK/<sub>/<block>.<point>.aqs (sub = "stats", or "seq/stats" for the
 * sequential pass): one capture point's Gram, min/max and row sample (plus
 * the cross statistics in sequential mode) in the result-file container (io/resultfile.h), key
 * ("stats.<block>.<point>", "capture"), fingerprint aq_pipe_stats_fp. */
#ifndef AQ_DIST_STAGE_STATS_H
#define AQ_DIST_STAGE_STATS_H

#include <stdio.h>

#include "../../src/model/capture.h"
#include "pipeline.h"

/* A statistics file read back (views point into r; free with aq_stats_free). */
typedef struct aq_stats {
    aq_result *r;
    void *own[5]; /* aligned copies (tensor data in a payload may be unaligned) */
    int d;
    uint64_t n_rows;
    const double *gram; /* (d+1)^2 */
    size_t n_sample;
    const float *sample; /* [n_sample, d] */
    /* sequential mode only (NULL otherwise): B, C and the sampled Xq rows */
    const double *cross, *gram_q;
    const float *sample_q;
} aq_stats;

/* Path of the file of (block, point) into out (AQ_PIPE_PATH). */
void aq_stats_path(const char *work, const char *sub, int block, int point, char *out);
/* Write one capture point's statistics atomically. */
aq_status aq_stats_write(const char *work, const char *sub, const aq_capstat *s, const aq_fingerprint *fp, aq_error *err);
/* Read and validate (CRC, key, fingerprint, shapes). Errors name the file. */
aq_status aq_stats_read(const char *work, const char *sub, int block, int point, const aq_fingerprint *fp, aq_stats *out,
                        aq_error *err);
void aq_stats_free(aq_stats *s);
/* 1 if every capture point of the model has a valid file; an invalid one is
 * reported on log (may be NULL). */
int aq_stats_all_valid(const aq_pipe_cfg *c, FILE *log);

#endif
