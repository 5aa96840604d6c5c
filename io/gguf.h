/* gguf.h — the GGUF container (ggml's docs/gguf.md, version 3): a validating
 * reader and an atomic, streaming writer. No block formats here: tensor data
 * are opaque bytes whose size follows from the ggml type and the dimensions
 * (the block formats themselves live in src/quant/).
 *
 * Layout (all little-endian):
 *   "GGUF" u32 version u64 tensor_count u64 kv_count
 *   kv_count x { string key, u32 value_type, value }
 *   tensor_count x { string name, u32 n_dims, n_dims x u64 ne (ne[0] varies
 *                    fastest), u32 ggml_type, u64 offset (from data start) }
 *   zero padding to `general.alignment` (u32 key, default 32)
 *   data: each tensor at an aligned offset, zero padding between.
 * A string is u64 length + bytes (no NUL). An array value is u32 element
 * type, u64 count, then the elements (arrays may nest).
 *
 * See docs/GGUF.md for the validation rules. */
#ifndef AQ_GGUF_H
#define AQ_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "../common/ggml_type.h"
#include "../common/status.h"

#define AQ_GGUF_VERSION 3
#define AQ_GGUF_DEFAULT_ALIGNMENT 32
#define AQ_GGUF_MAX_DIMS 4
/* Longest tensor name: the spec allows 64 bytes; ggml stores names in a
 * char[64] with the NUL, so the writer allows 63 (what llama.cpp loads). */
#define AQ_GGUF_MAX_NAME_SPEC 64
#define AQ_GGUF_MAX_NAME_GGML 63
/* Deepest nesting of arrays the reader accepts (an array of arrays is 2). */
#define AQ_GGUF_MAX_DEPTH 4

/* Metadata value types (the spec's gguf_metadata_value_type). */
typedef enum aq_gguf_type {
    AQ_GGUF_UINT8 = 0,
    AQ_GGUF_INT8 = 1,
    AQ_GGUF_UINT16 = 2,
    AQ_GGUF_INT16 = 3,
    AQ_GGUF_UINT32 = 4,
    AQ_GGUF_INT32 = 5,
    AQ_GGUF_FLOAT32 = 6,
    AQ_GGUF_BOOL = 7,
    AQ_GGUF_STRING = 8,
    AQ_GGUF_ARRAY = 9,
    AQ_GGUF_UINT64 = 10,
    AQ_GGUF_INT64 = 11,
    AQ_GGUF_FLOAT64 = 12,
    AQ_GGUF_TYPE_COUNT = 13
} aq_gguf_type;

/* Size in bytes of a fixed-size value type (0 for STRING, ARRAY, unknown). */
size_t aq_gguf_type_size(int type);
/* "uint8" ... "float64"; "?" when unknown. */
const char *aq_gguf_type_name(int type);

/* ggml tensor types: common/ggml_type.h. */

/* Elements per block (1 for plain types, 32 or 256 for quantized ones) and
 * bytes per block; both 0 for an id that is not a ggml type. */
int64_t aq_ggml_block_size(int type);
size_t aq_ggml_block_bytes(int type);
/* "F32", "Q4_K", ...; NULL when unknown. */
const char *aq_ggml_type_name(int type);
/* Bytes of a tensor of n_dims dims ne[] (ne[0] fastest). AQ_ERR_SHAPE when
 * n_dims > 4, a dim < 0, ne[0] is not a multiple of the block size or the
 * size overflows; AQ_ERR_ARG for an unknown type. `what` names the tensor. */
aq_status aq_ggml_nbytes(int type, uint32_t n_dims, const int64_t *ne, const char *what,
                         uint64_t *out, aq_error *err);

/* ------------------------------------------------------------------ reader */

/* A string inside the file: not NUL-terminated, valid while the file is open. */
typedef struct aq_gguf_str {
    const char *ptr;
    uint64_t len;
} aq_gguf_str;

/* A metadata value. Scalars: `raw` points at the little-endian bytes in the
 * file (unaligned; read them with the aq_gguf_value_* helpers). STRING: `str`.
 * ARRAY: elem_type and n, then raw (fixed-size elements, n x size bytes),
 * strs (n strings) or items (n nested arrays). */
typedef struct aq_gguf_value {
    aq_gguf_type type;
    aq_gguf_type elem_type;
    uint64_t n;
    const uint8_t *raw;
    aq_gguf_str str;
    const aq_gguf_str *strs;
    const struct aq_gguf_value *items;
} aq_gguf_value;

typedef struct aq_gguf_kv {
    const char *key; /* NUL-terminated copy */
    uint64_t offset; /* byte offset of the key in the file */
    aq_gguf_value v;
} aq_gguf_kv;

typedef struct aq_gguf_tensor {
    const char *name; /* NUL-terminated copy */
    uint32_t n_dims;
    int64_t ne[AQ_GGUF_MAX_DIMS]; /* unused dims are 1 */
    int type;                     /* aq_ggml_type */
    uint64_t offset;              /* relative to the data section */
    uint64_t nbytes;
    uint64_t info_offset; /* byte offset of the tensor info in the file */
    const void *data;     /* inside the mapping */
} aq_gguf_tensor;

typedef struct aq_gguf aq_gguf;

/* Map and validate path (read-only mmap; nothing is copied but names). */
aq_status aq_gguf_open(const char *path, aq_gguf **out, aq_error *err);
/* Validate an in-memory image; the buffer must outlive *out. `label` names it
 * in errors. */
aq_status aq_gguf_open_memory(const void *buf, size_t len, const char *label, aq_gguf **out,
                              aq_error *err);
void aq_gguf_close(aq_gguf *g);

uint32_t aq_gguf_version(const aq_gguf *g);
uint32_t aq_gguf_alignment(const aq_gguf *g);
uint64_t aq_gguf_data_offset(const aq_gguf *g); /* file offset of the data section */
size_t aq_gguf_n_kv(const aq_gguf *g);
const aq_gguf_kv *aq_gguf_kv_at(const aq_gguf *g, size_t i);          /* file order */
const aq_gguf_kv *aq_gguf_find_kv(const aq_gguf *g, const char *key); /* NULL if absent */
size_t aq_gguf_n_tensors(const aq_gguf *g);
const aq_gguf_tensor *aq_gguf_tensor_at(const aq_gguf *g, size_t i); /* file order */
const aq_gguf_tensor *aq_gguf_find_tensor(const aq_gguf *g, const char *name);

/* Typed getters by key. AQ_ERR_NOTFOUND when absent, AQ_ERR_FORMAT when the
 * type does not fit (integers: any integer type whose value fits). */
aq_status aq_gguf_get_u64(const aq_gguf *g, const char *key, uint64_t *out, aq_error *err);
aq_status aq_gguf_get_i64(const aq_gguf *g, const char *key, int64_t *out, aq_error *err);
aq_status aq_gguf_get_f64(const aq_gguf *g, const char *key, double *out,
                          aq_error *err); /* f32/f64 */
aq_status aq_gguf_get_bool(const aq_gguf *g, const char *key, int *out, aq_error *err);
aq_status aq_gguf_get_str(const aq_gguf *g, const char *key, aq_gguf_str *out, aq_error *err);
/* An array of elem_type (any element type if elem_type < 0). */
aq_status aq_gguf_get_array(const aq_gguf *g, const char *key, int elem_type,
                            const aq_gguf_value **out, aq_error *err);

/* Element i of a fixed-size scalar or array value, widened (no checks of
 * type class beyond: integers/bools for u64/i64, floats for f64). */
uint64_t aq_gguf_value_u64(const aq_gguf_value *v, uint64_t i);
int64_t aq_gguf_value_i64(const aq_gguf_value *v, uint64_t i);
double aq_gguf_value_f64(const aq_gguf_value *v, uint64_t i);

/* ------------------------------------------------------------------ writer */

typedef struct aq_gguf_writer aq_gguf_writer;
/* Where a streamed tensor writes its bytes. */
typedef struct aq_gguf_sink aq_gguf_sink;
aq_status aq_gguf_sink_write(aq_gguf_sink *s, const void *buf, size_t len, aq_error *err);
/* A streamed tensor: called once during aq_gguf_write*, must write exactly the
 * tensor's nbytes through the sink (checked). */
typedef aq_status (*aq_gguf_stream_fn)(void *ctx, aq_gguf_sink *sink, aq_error *err);

aq_status aq_gguf_writer_new(aq_gguf_writer **out, aq_error *err);
void aq_gguf_writer_free(aq_gguf_writer *w);

/* Metadata, written in the order added. Keys: non-empty, at most 65535 bytes,
 * no NUL, unique (AQ_ERR_ARG otherwise). `general.alignment` must be UINT32
 * and a power of two; it sets the alignment of the file (add it before any
 * tensor). Values are copied into the writer's buffer at once. */
aq_status aq_gguf_set_scalar(aq_gguf_writer *w, const char *key, aq_gguf_type type,
                             const void *value, aq_error *err); /* value: one element */
aq_status aq_gguf_set_u32(aq_gguf_writer *w, const char *key, uint32_t v, aq_error *err);
aq_status aq_gguf_set_f32(aq_gguf_writer *w, const char *key, float v, aq_error *err);
aq_status aq_gguf_set_bool(aq_gguf_writer *w, const char *key, int v, aq_error *err);
aq_status aq_gguf_set_str(aq_gguf_writer *w, const char *key, const char *s, aq_error *err);
aq_status aq_gguf_set_strn(aq_gguf_writer *w, const char *key, const char *s, size_t len,
                           aq_error *err);
/* Array of a fixed-size type: n elements, packed little-endian host values. */
aq_status aq_gguf_set_array(aq_gguf_writer *w, const char *key, aq_gguf_type elem_type,
                            const void *data, uint64_t n, aq_error *err);
/* Array of strings; lens may be NULL (then strlen). */
aq_status aq_gguf_set_str_array(aq_gguf_writer *w, const char *key, const char *const *strs,
                                const size_t *lens, uint64_t n, aq_error *err);
/* Array of n arrays of elem_type: array i has counts[i] elements, taken in
 * turn from data (all inner elements packed back to back). */
aq_status aq_gguf_set_nested_array(aq_gguf_writer *w, const char *key, aq_gguf_type elem_type,
                                   const uint64_t *counts, uint64_t n, const void *data,
                                   aq_error *err);

/* Tensors, laid out in the order added, each at the next aligned offset (as
 * ggml requires). Names: 1..63 bytes, no NUL, unique. n_dims 1..4. ne[0] must
 * be a multiple of the type's block size. `data` is borrowed until the write. */
aq_status aq_gguf_add_tensor(aq_gguf_writer *w, const char *name, uint32_t n_dims,
                             const int64_t *ne, int type, const void *data, aq_error *err);
aq_status aq_gguf_add_tensor_stream(aq_gguf_writer *w, const char *name, uint32_t n_dims,
                                    const int64_t *ne, int type, aq_gguf_stream_fn fn, void *ctx,
                                    aq_error *err);

/* The exact size of the file aq_gguf_write would produce now. */
uint64_t aq_gguf_writer_size(const aq_gguf_writer *w);
/* Write atomically (io/atomic_file.h): a failure leaves path unchanged and no
 * temporary file; the error names the path. The writer stays usable. */
aq_status aq_gguf_write(aq_gguf_writer *w, const char *path, aq_error *err);
/* Write into a malloc'd buffer (*out, *len); for tests and small files. */
aq_status aq_gguf_write_memory(aq_gguf_writer *w, uint8_t **out, size_t *len, aq_error *err);

#endif
