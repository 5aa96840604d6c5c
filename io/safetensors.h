/* safetensors.h — read (mmap, zero-copy, fully validated) and write safetensors files.
 *
 * Format: 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * {name: {dtype, shape, data_offsets:[begin,end]}, "__metadata__": {str: str}},
 * then the data. The reader rejects anything the spec does not allow:
 * N > 100 MB, invalid UTF-8/JSON, unknown dtype, shape x dtype size != range,
 * offsets not contiguous from 0 (holes, overlaps), file size != 8 + N + last end,
 * duplicate names, non-string metadata. Errors name the file and the tensor or
 * byte offset. */
#ifndef AQ_SAFETENSORS_H
#define AQ_SAFETENSORS_H

#include "tensor.h"

typedef struct aq_st_file aq_st_file;

/* Open and validate path; *out owns the mapping (free with aq_st_close). */
aq_status aq_st_open(const char *path, aq_st_file **out, aq_error *err);
/* Validate an in-memory image (used by the fuzzer and tests); the buffer must
 * outlive *out. `label` names it in errors. */
aq_status aq_st_open_memory(const void *buf, size_t len, const char *label, aq_st_file **out,
                            aq_error *err);
void aq_st_close(aq_st_file *f);

const char *aq_st_path(const aq_st_file *f);
/* Tensors in file (data offset) order; views valid until aq_st_close. */
size_t aq_st_count(const aq_st_file *f);
const aq_tensor_view *aq_st_tensor(const aq_st_file *f, size_t i);
/* NULL if absent (no error). */
const aq_tensor_view *aq_st_find(const aq_st_file *f, const char *name);
/* Metadata entries (sorted by key); strings valid until close. */
size_t aq_st_meta_count(const aq_st_file *f);
void aq_st_meta_at(const aq_st_file *f, size_t i, const char **key, const char **value);
const char *aq_st_meta_get(const aq_st_file *f, const char *key); /* NULL if absent */
/* Hand the mapped pages wholly inside [data, data + n) back to the kernel
 * (madvise MADV_DONTNEED: they leave the resident set and are read from the
 * file again if touched). Returns 1 if the range lies in f's own mapping,
 * else 0 and nothing is done (an in-memory image is never touched). */
int aq_st_drop_pages(const aq_st_file *f, const void *data, size_t n);

/* Writer: collect tensors (data borrowed until write) and metadata, then write
 * header (padded with spaces to a multiple of 8) + contiguous data to
 * `path` atomically: path.tmp.<pid>, fsync, rename. Tensors are laid out in
 * the order added. */
typedef struct aq_st_writer aq_st_writer;
aq_status aq_st_writer_new(aq_st_writer **out, aq_error *err);
aq_status aq_st_writer_add(aq_st_writer *w, const char *name, aq_dtype dt, int ndim,
                           const int64_t *shape, const void *data, aq_error *err);
aq_status aq_st_writer_meta(aq_st_writer *w, const char *key, const char *value, aq_error *err);
aq_status aq_st_writer_write(aq_st_writer *w, const char *path, aq_error *err);
void aq_st_writer_free(aq_st_writer *w);

#endif
