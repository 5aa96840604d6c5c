/* tensor.h — dtypes and borrowed tensor views shared by every reader/writer in io/.
 *
 * A view never owns its data: it points into a mapped file or into a buffer
 * owned by whoever produced the view (documented at that producer). */
#ifndef AQ_TENSOR_H
#define AQ_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "../common/status.h"

typedef enum aq_dtype {
    AQ_F64,
    AQ_F32,
    AQ_F16,
    AQ_BF16,
    AQ_I64,
    AQ_I32,
    AQ_I16,
    AQ_I8,
    AQ_U8,
    AQ_U16,
    AQ_U32,
    AQ_BOOL,
    AQ_DTYPE_COUNT
} aq_dtype;

#define AQ_MAX_DIMS 8

typedef struct aq_tensor_view {
    const char *name;             /* owned by the producer */
    aq_dtype dtype;
    int ndim;                     /* 0 = scalar */
    int64_t shape[AQ_MAX_DIMS];
    const void *data;             /* little-endian, possibly unaligned for its dtype */
    size_t nbytes;                /* = numel * aq_dtype_size(dtype) */
} aq_tensor_view;

/* Bytes per element (BOOL = 1). */
size_t aq_dtype_size(aq_dtype dt);
/* Safetensors spelling ("F32", "BF16", ...). */
const char *aq_dtype_name(aq_dtype dt);
/* Parse a safetensors dtype string; AQ_ERR_FORMAT naming it if unknown. */
aq_status aq_dtype_parse(const char *s, aq_dtype *out, aq_error *err);
/* Product of the shape (1 for a scalar, 0 if any dimension is 0; views from
 * the safetensors reader never overflow int64 here). */
int64_t aq_view_numel(const aq_tensor_view *v);
/* Convert a view's elements to float32 into dst (numel floats, caller-owned).
 * Integers convert by value, BOOL to 0/1, F16/BF16 exactly. Never fails for
 * valid views; returns AQ_ERR_INTERNAL on an inconsistent view. */
aq_status aq_view_to_f32(const aq_tensor_view *v, float *dst, aq_error *err);
/* Same, allocating: *out is malloc'd (caller frees). */
aq_status aq_view_to_f32_alloc(const aq_tensor_view *v, float **out, aq_error *err);
/* IEEE half and bfloat16 conversion (round-to-nearest-even on the way in). */
float aq_f16_to_f32(uint16_t h);
uint16_t aq_f32_to_f16(float f);
float aq_bf16_to_f32(uint16_t h);
uint16_t aq_f32_to_bf16(float f);

#endif
