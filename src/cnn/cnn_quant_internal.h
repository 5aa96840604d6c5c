/* cnn_quant_internal.h — what the CNN quantizer's files share: running a
 * graph over u8 images chunk by chunk with hooks (capture and prediction). */
#ifndef AQ_CNN_QUANT_INTERNAL_H
#define AQ_CNN_QUANT_INTERNAL_H

#include "cnn_quant.h"

typedef struct aq_cnnq_runner {
    const aq_cnn_graph *g;
    aq_cnn_observer obs; /* may be NULL */
    void *ctx;           /* of every hook */
    /* before/after each chunk's forward pass (either may be NULL): images
     * first..first+nb-1, their normalised input x and output y */
    void (*begin)(void *ctx, size_t first, size_t nb, const float *x);
    void (*end)(void *ctx, size_t first, size_t nb, const float *y, size_t per_image_out);
    int until; /* > 0: run nodes [0, until) only (end's y is then not the output) */
} aq_cnnq_runner;

/* Run r->g on n images of image_size u8 pixels, `chunk` at a time. */
aq_status aq_cnnq_run_images(const aq_cnnq_runner *r, const uint8_t *pixels, size_t n,
                             size_t image_size, const aq_cnn_norm *norm, int chunk, aq_error *err);

#endif
