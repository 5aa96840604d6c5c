/* capture_internal.h — the aq_capture struct shared by capture.c (statistics),
 * capture_run.c (driving the forward), capture_sample.c (bottom-k sample) and
 * capture_pack.c (merge, serialisation). Not a public interface. */
#ifndef AQ_CAPTURE_INTERNAL_H
#define AQ_CAPTURE_INTERNAL_H

#include "capture.h"

struct aq_capture {
    aq_capture_opts o; /* resolved: block range filled in */
    int n_layers;
    int n;          /* captured points */
    aq_capstat *st; /* [n], ordered by (block, point) */
    /* per-batch scratch */
    float *xbuf[AQ_CAP_COUNT + 1]; /* sequential mode: FP rows of the cross block */
    size_t xcap[AQ_CAP_COUNT + 1];
    double *dbuf, *dbuf2;
    size_t dcap, dcap2;
    uint32_t *row_win, *row_pos;
    size_t rcap;
    int phase; /* sequential mode: 0 = FP pass, 1 = quantized pass */
};

aq_capstat *aq_capture_find_mut(aq_capture *c, int block, aq_cap_point point);
/* Accumulate n rows of x (and xq in sequential mode) with their (window, position). */
aq_status aq_capture_add_rows(aq_capture *c, aq_capstat *s, const float *x, const float *xq,
                              size_t n, const uint32_t *win, const uint32_t *pos, aq_error *err);
/* Offer one row to the bottom-k sample (keeps the sample_cap smallest keys). */
void aq_sample_offer(aq_capstat *s, uint64_t seed, uint32_t win, uint32_t pos, const float *x,
                     const float *xq);
/* Put the sample in heap order before offering rows. */
void aq_sample_heapify(aq_capstat *s, uint64_t seed);
/* Sort the sample by (window, position). */
void aq_sample_sort(aq_capstat *s);

#endif
