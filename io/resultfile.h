/* resultfile.h — one result file per (layer, option) task in WORK/results/:
 * the loss row the bit-allocation table needs plus the quantized layer's
 * tensors, zlib-compressed, CRC32-checked, tagged with the task key and a
 * fingerprint of everything the result was computed from.
 *
 * The byte layout is specified in docs/WORKDIR.md. Files are written
 * atomically (io/atomic_file.h) and deterministically: the same content gives
 * the same bytes (fixed zlib level 6, no timestamps, fields in a fixed order;
 * `seconds` is the only field whose value naturally differs between runs).
 * The reader validates everything (size, magic, version, header CRC, payload
 * CRC, fingerprint, payload structure) and never returns a partially valid
 * result: a corrupted file is always an error naming the file and the fault. */
#ifndef AQ_RESULTFILE_H
#define AQ_RESULTFILE_H

#include <stdint.h>

#include "../common/status.h"
#include "fingerprint.h"
#include "tensor.h"

#define AQ_RESULT_MAGIC "AQRESULT" /* 8 bytes, no NUL */
#define AQ_RESULT_VERSION 1u
#define AQ_RESULT_FIXED_HEADER 64 /* bytes before the layer name */
#define AQ_RESULT_ZLEVEL 6
#define AQ_RESULT_MAX_KEY 4096 /* max bytes of a layer name / option string */

/* The per-task numbers for the allocation table. `loss` must be finite; the
 * auxiliary losses may be NaN meaning "not measured". */
typedef struct aq_loss_row {
    double loss;       /* normalized output error after AdaQuant */
    double loss_rtn;   /* same error for round-to-nearest on the initial grid */
    double loss_gptq;  /* same error for GPTQ */
    double loss_init;  /* error of the initialization AdaQuant started from */
    double seconds;    /* wall time of the task (not deterministic) */
    int64_t params;    /* weight parameters of the layer */
    int64_t macs;      /* multiply-accumulates per token/sample */
    int64_t size_bits; /* stored size at this option incl. scales/zero points */
    int64_t iterations;
    int32_t w_bits, a_bits; /* a_bits = 16 means activations not quantized */
} aq_loss_row;

/* What to write. Everything is borrowed for the duration of the call. */
typedef struct aq_result_desc {
    const char *layer;  /* task key, part 1: layer name (1..AQ_RESULT_MAX_KEY bytes) */
    const char *option; /* task key, part 2: option string, e.g. "w4a8" */
    aq_fingerprint fp;
    aq_loss_row row;
    size_t n_tensors;
    const aq_tensor_view *tensors; /* names unique, shapes consistent with nbytes */
    int stored; /* 1: zlib level 0 (stored blocks) instead of AQ_RESULT_ZLEVEL, for
                   payloads deflate cannot shrink (float64 Grams: 4% at level 6 for
                   ~20 s per 8-block dim-1024 capture); still deterministic */
} aq_result_desc;

/* A result read back. Owns everything: tensor names and data point into one
 * internal buffer released by aq_result_free. */
typedef struct aq_result {
    char *layer, *option;
    aq_fingerprint fp;
    aq_loss_row row;
    size_t n_tensors;
    aq_tensor_view *tensors;
    unsigned char *payload; /* internal: the inflated payload */
} aq_result;

/* Serialise d into a malloc'd buffer (*buf, *len; caller frees).
 * AQ_ERR_ARG for an invalid key, a non-finite loss, a bad tensor view. */
aq_status aq_result_encode(const aq_result_desc *d, unsigned char **buf, size_t *len, aq_error *err);
/* Encode and write atomically to path (temp name, fsync, rename). */
aq_status aq_result_write(const char *path, const aq_result_desc *d, aq_error *err);

/* Parse and validate len bytes; `name` labels errors (the file path).
 * expect: the fingerprint the caller requires, or NULL to accept any.
 * On success *out is a new aq_result (free with aq_result_free). Errors:
 * AQ_ERR_FORMAT (truncated, bad magic/version/CRC/structure), AQ_ERR_ARG
 * (fingerprint mismatch), AQ_ERR_NUMERIC (non-finite loss). */
aq_status aq_result_decode(const char *name, const unsigned char *buf, size_t len,
                           const aq_fingerprint *expect, aq_result **out, aq_error *err);
/* Read a file and aq_result_decode it. AQ_ERR_NOTFOUND if it does not exist. */
aq_status aq_result_read(const char *path, const aq_fingerprint *expect, aq_result **out,
                         aq_error *err);
/* Validate path as the result of task (layer, option) with fingerprint
 * expect; on success copy its loss row to *row (may be NULL). */
aq_status aq_result_check(const char *path, const char *layer, const char *option,
                          const aq_fingerprint *expect, aq_loss_row *row, aq_error *err);
/* Streaming read, for payloads too large to hold (a cooperative task's Gram,
 * docs/COOP.md): the same checks as aq_result_read, the payload inflated in
 * chunks of 1 MiB. sink->key (may be NULL) sees the layer and option first
 * (an error from it stops the read); then for each tensor record
 * sink->tensor(ctx, header view: data NULL) says whether to receive its bytes,
 * passed to sink->data(ctx, byte offset in the tensor, bytes, n) in order,
 * in chunks of 1 MiB (the last one shorter), so a chunk never splits an element.
 * The payload CRC is known only at the end: on any error the caller discards
 * what the sink received. row (may be NULL) gets the loss row. */
typedef struct aq_result_sink {
    aq_status (*key)(void *ctx, const char *layer, const char *option, aq_error *err);
    int (*tensor)(void *ctx, const aq_tensor_view *head);
    void (*data)(void *ctx, size_t off, const unsigned char *p, size_t n);
    void *ctx;
} aq_result_sink;
aq_status aq_result_stream(const char *path, const aq_fingerprint *expect, const aq_result_sink *sink,
                           aq_loss_row *row, aq_error *err);
/* Release a result (NULL is a no-op). */
void aq_result_free(aq_result *r);
/* The tensor named name, or NULL. */
const aq_tensor_view *aq_result_find(const aq_result *r, const char *name);

/* The result file path of a task: "<workdir>/results/<layer>--<option>.aqr",
 * with every byte outside [A-Za-z0-9._] of layer/option written as %XX (so
 * distinct keys give distinct names). *out is malloc'd (caller frees). */
aq_status aq_result_path(const char *workdir, const char *layer, const char *option, char **out,
                         aq_error *err);

#endif
