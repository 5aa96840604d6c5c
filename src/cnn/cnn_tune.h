/* cnn_tune.h — what the AdaQuant paper does to a CNN around its per-layer
 * quantization (issue 17 item 3), as a library the distributed
 * `adaquant quantize MODEL.onnx` calls:
 *   - before capture, every BatchNormalization that follows a Conv is folded
 *     into the Conv's weight and bias (the FP function is unchanged), keeping
 *     the BN parameters so that its statistics can be re-estimated later;
 *   - after the layers are quantized (per-channel weight scales, so a
 *     per-channel affine map folds into scale and bias exactly): BN
 *     re-estimation on the quantized model (every folded BN, completely),
 *     bias correction (the empirical mean shift, sequential in layer order),
 *     then bias tuning against KL(FP logits || quantized logits) with a
 *     backward pass restricted to the biases.
 * Everything is deterministic: the same inputs give the same bytes, whatever
 * the number of ranks or threads of the caller. */
#ifndef AQ_CNN_TUNE_H
#define AQ_CNN_TUNE_H
#include "cnn_quant.h"

/* One folded Conv + BatchNormalization pair: the BN's parameters as read. */
typedef struct aq_cnnq_bnfold {
    int conv_node;    /* the Conv's node index in the graph */
    int bn_node;      /* the BatchNormalization's node (now an Identity) */
    int channels;
    float *gamma, *beta, *mean, *var; /* [channels] each, owned (one allocation) */
    float eps;
} aq_cnnq_bnfold;

/* Fold every BatchNormalization whose input is a Conv output read by nothing
 * else into that Conv, in place: the Conv gets W * gamma / sqrt(var + eps)
 * per output channel and the matching bias (added when it had none), the BN
 * node becomes an Identity. *folds: malloc'd array of *n_folds pairs (free
 * with aq_cnnq_bnfold_free). A BN anywhere else is left as it is. */
aq_status aq_cnnq_fold_bn(aq_cnn_graph *g, aq_cnnq_bnfold **folds, int *n_folds, aq_error *err);
void aq_cnnq_bnfold_free(aq_cnnq_bnfold *folds, int n_folds);

/* The stage spread over the processes of a caller (MPI ranks): process
 * `rank` of `size` runs images [n·rank/size, n·(rank+1)/size) of each pass
 * over n images (and that slice of each bias-tuning batch) and fills their
 * rows of a per-image table; gather() fills the other processes' rows (every
 * process must call it at the same point, with its local status: it returns
 * the first failure of any, so that no process waits for one that stopped).
 * The tables are then summed image by image in order, which is what one
 * process does: the bytes do not depend on size. */
typedef struct aq_cnnq_split {
    int rank, size;
    aq_status (*gather)(void *ctx, aq_status local, double *rows, size_t n, size_t row_len,
                        aq_error *err);
    void *ctx;
} aq_cnnq_split;

typedef struct aq_cnnq_tune_opts {
    int bn_reestimate;   /* re-estimate the folded BNs' statistics on the quantized model */
    int bias_correct;    /* empirical mean-shift correction, layer by layer */
    int correct_folded;  /* ... also of the layers with a folded BN (default 0: their
                          * mean is the BN's, which re-estimation restores; the
                          * FP mean in its place cost 0.1-0.3 points on
                          * fashion-resnet) */
    int bias_iters;      /* bias-tuning steps (0: none) */
    double bias_lr;      /* its Adam learning rate, relative: layer i's step is
                          * bias_lr times the RMS spread of its FP output */
    int batch;           /* calibration images per bias-tuning step */
    uint64_t seed;       /* the order of the images in bias tuning */
    double temperature;  /* of the KL's softmaxes (1: the logits as they are; a
                          * model with logits of size 1e4, like the zoo MNIST
                          * CNN, needs ~1e3 or its softmax is one-hot) */
    size_t n_images;     /* the calibration images in calib->pixels (required: the
                          * capture's n_images; aq_cnnq_seq does not carry it) */
    const aq_cnnq_split *split; /* NULL: this process does every image */
} aq_cnnq_tune_opts;
void aq_cnnq_tune_defaults(aq_cnnq_tune_opts *o);

/* What aq_cnnq_tune did, for the report. */
typedef struct aq_cnnq_tune_report {
    int bn_reestimated;              /* BNs whose statistics were re-estimated */
    int biases_corrected;            /* layers whose bias got the mean shift */
    double kl_before, kl_after;      /* mean KL(FP || Q) over the calibration images, bias tuning */
    double seconds_bn, seconds_correct, seconds_tune;
    int tune_reverted;               /* bias tuning raised the KL: its biases were dropped */
} aq_cnnq_tune_report;

/* Tune the quantized model in place: res[i] is layer i's result (NULL: the
 * layer stays float), its bias and (for BN re-estimation) its per-channel
 * weight scales are updated; codes and activation quantizers are kept. g is
 * the folded graph the layers and capture came from, folds its BN pairs,
 * calib the calibration images (the capture's). rep may be NULL. */
aq_status aq_cnnq_tune(const aq_cnn_graph *g, const aq_cnnq_layer *layers, int n_layers,
                       aq_cnnq_result *const *res, const aq_cnnq_bnfold *folds, int n_folds,
                       const aq_cnnq_seq *calib, const aq_cnnq_tune_opts *o,
                       aq_cnnq_tune_report *rep, aq_error *err);

#endif
