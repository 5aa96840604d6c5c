/* cnn_tune_internal.h — what the BN/bias stage's files share (cnn_tune.c,
 * cnn_tune_grad.c, cnn_tune_back.c) and what the tests check: the quantized
 * model with every activation kept for a backward pass restricted to the
 * layers' biases. Not for use outside src/cnn and its tests. */
#ifndef AQ_CNN_TUNE_INTERNAL_H
#define AQ_CNN_TUNE_INTERNAL_H

#include "cnn_internal.h"
#include "cnn_tune.h"

/* The quantized model of the results with a plan for `batch` images, every
 * value of a forward pass kept (val), and the gradients of the values that
 * depend on a tuned bias (grad). Its biases are written in place (bias[i]
 * points into the model's own copy of layer i's bias). */
typedef struct aq_tune_net {
    aq_cnnq_model m;
    aq_cnnq_result *rc; /* [n_layers] shallow copies the model borrows */
    aq_cnn_plan p;
    aq_cnn_pool pool;
    int batch, n_layers, classes;
    int loss_batch; /* the loss is the mean over this many images (0: batch) */
    double inv_t;   /* 1 / the KL's temperature (1 unless set) */
    float **val;    /* [n_values] the last forward pass's values (inputs: borrowed x) */
    float **grad;   /* [n_values] dLoss/dvalue where needed, else NULL */
    float **bias;   /* [n_layers] the model's bias of layer i, or NULL (float layer) */
    int *lnode;     /* [model nodes] the layer index of a model node, or -1 */
    float *x, *y;   /* [batch, image], [batch, classes] */
    float *scratch; /* a conv's [K, OH*OW] input-gradient columns */
} aq_tune_net;

aq_status aq_tune_net_init(aq_tune_net *t, const aq_cnn_graph *g, const aq_cnnq_layer *layers,
                           int n_layers, aq_cnnq_result *const *res, int batch, aq_error *err);
void aq_tune_net_free(aq_tune_net *t);
/* Write layer biases b[i] (NULL entries skipped) into the model. */
void aq_tune_net_set_bias(aq_tune_net *t, aq_cnnq_result *const *res);
/* Forward t->x (batch images) into t->y, keeping the values. */
aq_status aq_tune_net_forward(aq_tune_net *t, aq_error *err);
/* Mean KL(p || softmax(y)) over the batch, p = softmax(fp[j]) for image j
 * (fp: [batch, classes] logits); with gb non-NULL also its gradient with
 * respect to every tuned bias, in the layers' order (gb: sum of d_out over
 * the layers with a result, doubles). AQ_ERR_ARG naming the node
 * whose backward is missing. */
aq_status aq_tune_net_loss_grad(aq_tune_net *t, const float *fp, double *loss, double *gb,
                                aq_error *err);
/* The same per image: kl[b] image b's KL and, when gb is non-NULL, row b
 * of gb [batch][aq_tune_net_n_bias] its gradient (scaled by 1 / loss_batch).
 * Summed in image order they are aq_tune_net_loss_grad's, bit for bit. */
aq_status aq_tune_net_loss_rows(aq_tune_net *t, const float *fp, double *kl, double *gb,
                                aq_error *err);
/* The number of tuned biases (the sum of d_out over the layers with a result). */
size_t aq_tune_net_n_bias(const aq_tune_net *t);
/* The backward pass of node k of the plan (cnn_tune_back.c): adds to the
 * gradients of its inputs that need one. */
aq_status aq_tune_back_node(aq_tune_net *t, int k, aq_error *err);

/* KL(softmax(fp / T) || softmax(y / T)) of one image's C logits, in
 * double, inv_t = 1 / T; gy (if non-NULL) gets gscale times its gradient
 * with respect to y. */
double aq_tune_kl1(const float *fp, const float *y, int C, double inv_t, float *gy, double gscale);

/* --- the split over processes (cnn_tune_stats.c) --- */

/* The slice [lo, hi) of n items this process does (all of them without a split). */
void aq_tune_share(const aq_cnnq_split *s, size_t n, size_t *lo, size_t *hi);
/* Fill the other processes' rows of rows[n][len]; the status all agree on. */
aq_status aq_tune_gather(const aq_cnnq_split *s, aq_status local, double *rows, size_t n,
                         size_t len, aq_error *err);
/* rows[n][len] summed row after row, in order, into out[len]. */
void aq_tune_sum_rows(const double *rows, size_t n, size_t len, double *out);

/* Per-channel sums over the n calibration images of the outputs of nodes
 * node[0..n_t) (chans[t] channels on axis 1 each; the other axes summed) of
 * g, or of m's graph with its fake quantization when m: sum (and sq, the
 * sums of squares, when non-NULL) get node t's channels at the offset of the
 * chans before it; count[t] the elements per channel. Each image's sums are
 * taken separately and added in image order, so the bits do not depend on
 * the chunking or the split. The pass stops after the last observed node. */
aq_status aq_tune_channel_sums(const aq_cnn_graph *g, const aq_cnnq_model *m, int n_t,
                               const int *node, const int *chans, const aq_cnnq_seq *calib,
                               size_t n, const aq_cnnq_split *split, double *sum, double *sq,
                               double *count, aq_error *err);

/* The normalised calibration images idx[0..nb-1] into x. */
void aq_tune_images(const aq_cnnq_seq *calib, const size_t *idx, size_t nb, float *x);

#endif
