/* name_index.h — a sorted index over named items (io-internal): the
 * safetensors reader and the sharded checkpoint both look tensors up by name
 * in O(log n). Items stay where they are; the index holds their positions in
 * name order. */
#ifndef AQ_IO_NAME_INDEX_H
#define AQ_IO_NAME_INDEX_H

#include <stddef.h>

#include "../common/status.h"

/* The name of item i of ctx. */
typedef const char *(*aq_name_of_fn)(const void *ctx, size_t i);

/* byname[0..n) = 0..n-1 ordered by name_of(ctx, i) (strcmp). byname is the
 * caller's. AQ_ERR_NOMEM. */
aq_status aq_name_index_build(size_t *byname, size_t n, aq_name_of_fn name_of, const void *ctx, aq_error *err);

/* The item named `name` (its position, not its rank), or (size_t)-1. */
size_t aq_name_index_find(const size_t *byname, size_t n, aq_name_of_fn name_of, const void *ctx, const char *name);

#endif
