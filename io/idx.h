/* idx.h — read MNIST-style idx files (idx1 labels, idx3 images), gzip-
 * compressed or plain (zlib's gz* reads both).
 *
 * Format (big-endian): bytes 0,1 = 0; byte 2 = element type (0x08 = unsigned
 * byte, the only one supported); byte 3 = number of dimensions; then one
 * uint32 size per dimension; then the elements, row-major. The element count
 * must agree exactly with the header: a short file and trailing bytes are
 * both errors naming the file and the two numbers. */
#ifndef AQ_IDX_H
#define AQ_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "../common/status.h"

typedef struct aq_idx {
    int ndim;              /* 1 (labels [n]) or 3 (images [n, rows, cols]); 2 is read too */
    int64_t dims[3];       /* dims[0] = n items */
    int64_t n, rows, cols; /* n = dims[0]; rows, cols = dims[1], dims[2] (1 when absent) */
    uint8_t *data;         /* n * rows * cols bytes, owned */
} aq_idx;

/* Any unsigned-byte idx file with 1..3 dimensions. */
aq_status aq_idx_read(const char *path, aq_idx *out, aq_error *err);
/* Images: a 3-dimensional file. Labels: a 1-dimensional file whose bytes are
 * all < n_classes (n_classes <= 0: no check). Errors name the file. */
aq_status aq_idx_read_images(const char *path, aq_idx *out, aq_error *err);
aq_status aq_idx_read_labels(const char *path, int n_classes, aq_idx *out, aq_error *err);
/* The same from an uncompressed buffer (fuzzing); `what` names it in messages. */
aq_status aq_idx_read_mem(const void *buf, size_t len, const char *what, aq_idx *out,
                          aq_error *err);
void aq_idx_free(aq_idx *x);

#endif
