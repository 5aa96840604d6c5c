/* malformed.c — the safetensors test corpus (malformed.h). */
#include "malformed.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* 8-byte little-endian length `hlen` (normally strlen(hdr)), the header, then
 * `data` bytes of a recognizable pattern. */
static aq_malformed_case mk(const char *name, const char *expect, uint64_t hlen, const char *hdr,
                            size_t data)
{
    size_t n = strlen(hdr);
    aq_malformed_case c = {name, expect, malloc(8 + n + data + 1), 8 + n + data};
    if (!c.buf) abort();
    for (int i = 0; i < 8; i++)
        c.buf[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(c.buf + 8, hdr, n);
    for (size_t i = 0; i < data; i++)
        c.buf[8 + n + i] = (unsigned char)(i * 37 + 11);
    return c;
}

#define MK(name, expect, hdr, data) mk(name, expect, strlen(hdr), hdr, data)

size_t aq_malformed_build(aq_malformed_case **out)
{
    static const char two[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                              "\"b\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[8,11]}}";
    aq_malformed_case c[] = {
        /* valid images (also the fuzz seeds) */
        MK("valid_two.safetensors", NULL, two, 11),
        MK("valid_meta_padded.safetensors", NULL,
           "{\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\"},"
           "\"s\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,2]},"
           "\"z\":{\"dtype\":\"F16\",\"shape\":[0,3],\"data_offsets\":[2,2]},"
           "\"u\":{\"dtype\":\"U16\",\"shape\":[1,2],\"data_offsets\":[2,6]}}        ",
           6),
        MK("valid_empty.safetensors", NULL, "{}", 0),
        MK("valid_zero_dim.safetensors", NULL,
           "{\"x\":{\"dtype\":\"I64\",\"shape\":[4611686018427387904,0],\"data_offsets\":[0,0]}}",
           0),
        /* broken in one way each */
        mk("short.safetensors", "truncated", 0, "", 0),
        mk("truncated_header.safetensors", "runs past the end", 100, "{\"a\":", 0),
        MK("truncated_data.safetensors", "file truncated", two, 9),
        mk("header_past_eof.safetensors", "runs past the end", 4096, "{}", 8),
        mk("header_over_100mb.safetensors", "100 MB", 200000000ull, "{}", 0),
        MK("invalid_json.safetensors", "not valid JSON", "{\"a\":{\"dtype\":\"F32\",", 0),
        MK("trailing_garbage_json.safetensors", "not valid JSON", "{} x", 0),
        MK("invalid_utf8.safetensors", "UTF-8",
           "{\"\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
        MK("overlong_utf8.safetensors", "UTF-8",
           "{\"\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
        MK("not_object.safetensors", "does not start with '{'", "[1, 2]", 0),
        MK("unknown_dtype.safetensors", "unknown dtype 'F8'",
           "{\"a\":{\"dtype\":\"F8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4),
        MK("overlap.safetensors", "overlap",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
           12),
        MK("hole.safetensors", "hole",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
           20),
        MK("hole_at_start.safetensors", "hole",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
        MK("size_mismatch.safetensors", "span 12 bytes but F32 shape [2, 2] needs 16",
           "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12),
        MK("huge_shape.safetensors", "overflow",
           "{\"x\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}",
           8),
        MK("overflow_beside_zero.safetensors", "2^63 elements",
           "{\"x\":{\"dtype\":\"U8\",\"shape\":[4611686018427387904,4,0],\"data_offsets\":[0,0]}}",
           0),
        MK("file_size_mismatch.safetensors", "file size",
           "{\"x\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 13),
        MK("duplicate_names.safetensors", "duplicate name",
           "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
           "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
           2),
        MK("metadata_nonstring.safetensors", "expected a string",
           "{\"__metadata__\":{\"step\":3},\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":["
           "0,1]}}",
           1),
        MK("metadata_not_object.safetensors", "__metadata__ is", "{\"__metadata__\":[\"x\"]}", 0),
        MK("negative_shape.safetensors", "negative",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4),
        MK("real_shape.safetensors", "expected an integer",
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4),
        MK("reversed_offsets.safetensors", "invalid",
           "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4),
        MK("missing_offsets.safetensors", "missing field 'data_offsets'",
           "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1),
        MK("too_many_dims.safetensors", "dimensions",
           "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1),
        MK("entry_not_object.safetensors", "expected an object", "{\"a\":7}", 0),
    };
    size_t n = sizeof c / sizeof c[0];
    for (size_t i = 0; i < n; i++)
        if (!strcmp(c[i].name, "short.safetensors")) c[i].len = 5; /* not even the length field */
    *out = malloc(sizeof c);
    if (!*out) abort();
    memcpy(*out, c, sizeof c);
    return n;
}

void aq_malformed_free(aq_malformed_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(cases[i].buf);
    free(cases);
}
