/* cnn_models_util.h — what the CNN model tests (test_cnn_quant_models.c,
 * test_cnn_tune_models.c) share: the clock of their printed timings (the
 * benchmarks' monotonic wall clock; never asserted on), reading
 * the zoo MNIST CNN with its t10k images and labels, reading fashion-resnet
 * with Fashion-MNIST, and fashion-resnet's calibration images. Header-only
 * (static inline): each of those tests is one source file. */
#ifndef AQ_CNN_MODELS_UTIL_H
#define AQ_CNN_MODELS_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bench/benchutil.h"
#include "../io/cnn_graph.h"
#include "../io/idx.h"
#include "testutil.h"

/* The zoo MNIST CNN (../shared models/mnist-cnn) and the MNIST t10k images
 * and labels. */
static inline void aq_tm_read_mnist(aq_cnn_graph *g, aq_idx *im, aq_idx *lb)
{
    aq_error err = {0};
    char *model = aq_test_asset("models/mnist-cnn/model.onnx");
    char *imgs = aq_test_asset("data/mnist/t10k-images-idx3-ubyte.gz");
    char *labs = aq_test_asset("data/mnist/t10k-labels-idx1-ubyte.gz");
    CHECK_OK(aq_onnx_read(model, g, &err), &err);
    CHECK_OK(aq_idx_read_images(imgs, im, &err), &err);
    CHECK_OK(aq_idx_read_labels(labs, 10, lb, &err), &err);
    free(model), free(imgs), free(labs);
}

/* fashion-resnet and Fashion-MNIST (the Debian package dataset-fashion-mnist):
 * train images (the calibration set is drawn from them), t10k images and
 * labels. For the benchmark drivers, run from the build's tests directory. */
static inline void aq_tm_read_fashion(aq_cnn_graph *g, aq_idx *tr, aq_idx *te, aq_idx *lb)
{
    aq_error err = {0};
    const char *ds = "/usr/share/datasets/fashion-mnist/";
    char path[512];
    CHECK_OK(aq_onnx_read("../shared/models/fashion-resnet/model.onnx", g, &err), &err);
    snprintf(path, sizeof path, "%strain-images-idx3-ubyte.gz", ds);
    CHECK_OK(aq_idx_read_images(path, tr, &err), &err);
    snprintf(path, sizeof path, "%st10k-images-idx3-ubyte.gz", ds);
    CHECK_OK(aq_idx_read_images(path, te, &err), &err);
    snprintf(path, sizeof path, "%st10k-labels-idx1-ubyte.gz", ds);
    CHECK_OK(aq_idx_read_labels(path, 10, lb, &err), &err);
}

/* fashion-resnet's calibration images: the train images whose indices its
 * calib_indices.txt lists (at most 1024; out-of-range indices skipped), copied
 * into a malloc'd array of *n images. */
static inline uint8_t *aq_tm_fashion_calib(const aq_idx *tr, size_t *n)
{
    FILE *f = fopen("../shared/models/fashion-resnet/calib_indices.txt", "r");
    size_t cap = 1024, k = 0, image = (size_t)(tr->rows * tr->cols);
    uint8_t *out = malloc(cap * image);
    long v;
    while (f && k < cap && fscanf(f, "%ld", &v) == 1)
        if (v >= 0 && v < tr->n) memcpy(out + image * k++, tr->data + (size_t)v * image, image);
    if (f) fclose(f);
    *n = k;
    return out;
}

#endif
