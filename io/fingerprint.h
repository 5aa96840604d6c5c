/* fingerprint.h — a 128-bit content fingerprint that identifies what a result
 * was computed from (model bytes, calibration text, option, seed, settings).
 *
 * Definition (docs/WORKDIR.md, "Fingerprint"): the hashed byte stream is a
 * canonical serialisation of typed, named fields, each
 *     u8 type | u32 LE key length | key bytes | u64 LE value length | value bytes
 * (type: 1 bytes, 2 string, 3 u64 LE, 4 i64 LE, 5 f64 bits LE, 6 nested
 * fingerprint = its 16 bytes + u64 LE size). The fingerprint is two 64-bit lanes
 * over that stream: h[0] = FNV-1a 64 (offset 0xcbf29ce484222325, prime
 * 0x100000001b3), h[1] = (zlib crc32 << 32) | zlib adler32. All three are
 * standard, so an independent reader (Python: zlib.crc32, zlib.adler32) can
 * reproduce a fingerprint. Field order is part of the value: callers add
 * fields in a fixed order. This is an identity check, not a security hash. */
#ifndef AQ_FINGERPRINT_H
#define AQ_FINGERPRINT_H

#include <stdint.h>

#include "../common/status.h"

typedef struct aq_fingerprint {
    uint64_t h[2];
} aq_fingerprint;

/* Streaming state; initialise with aq_fp_init. Plain value, no allocation. */
typedef struct aq_fp_builder {
    uint64_t fnv;
    uint32_t crc, adler;
    uint64_t nbytes; /* bytes hashed so far */
} aq_fp_builder;

/* Start an empty hash. */
void aq_fp_init(aq_fp_builder *b);
/* Hash raw bytes (no framing): the building block of the typed adders. */
void aq_fp_update(aq_fp_builder *b, const void *data, size_t len);
/* Typed, named fields (framed as in the header comment). */
void aq_fp_add_bytes(aq_fp_builder *b, const char *key, const void *data, size_t len);
void aq_fp_add_str(aq_fp_builder *b, const char *key, const char *value);
void aq_fp_add_u64(aq_fp_builder *b, const char *key, uint64_t value);
void aq_fp_add_i64(aq_fp_builder *b, const char *key, int64_t value);
void aq_fp_add_f64(aq_fp_builder *b, const char *key, double value);
/* A nested fingerprint (e.g. of a file's contents) and the size it covers. */
void aq_fp_add_fp(aq_fp_builder *b, const char *key, const aq_fingerprint *fp, uint64_t size);
/* The fingerprint of everything added so far (b stays usable). */
aq_fingerprint aq_fp_final(const aq_fp_builder *b);

/* Fingerprint of a file's raw contents, read in streaming fashion (64 KiB
 * blocks): *out = lanes over the bytes alone (no framing), *size = its length.
 * AQ_ERR_IO naming the path on open/read failure. */
aq_status aq_fp_file(const char *path, aq_fingerprint *out, uint64_t *size, aq_error *err);
/* Convenience: aq_fp_file then aq_fp_add_fp(b, key, ...). */
aq_status aq_fp_add_file(aq_fp_builder *b, const char *key, const char *path, aq_error *err);

/* Equality of two fingerprints. */
int aq_fp_equal(const aq_fingerprint *a, const aq_fingerprint *b);
/* 32 lowercase hex digits (h[0] then h[1], most significant first) + NUL. */
void aq_fp_hex(const aq_fingerprint *fp, char out[33]);

#endif
