/* test_gguf_bad.c — the GGUF reader (io/gguf.c) on malformed input: every
 * truncation of a small valid file and a set of corrupted fields, each file
 * assembled by hand from the spec (ggml docs/gguf.md) with the byte builder
 * `bb` below, never by our writer. Each must give AQ_ERR_FORMAT with a message
 * naming the file, the byte offset and what is wrong; no crash, no leak
 * (this test runs under ASan/UBSan in CI). */
#include <string.h>

#include "../io/gguf.h"
#include "testutil.h"

/* ---- a byte builder, independent of the writer ---- */
typedef struct bb {
    uint8_t b[8192];
    size_t n;
} bb;

static void bb_raw(bb *b, const void *p, size_t n)
{
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void bb_le(bb *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++, v >>= 8)
        b->b[b->n++] = (uint8_t)v;
}
static void bb_u32(bb *b, uint32_t v)
{
    bb_le(b, v, 4);
}
static void bb_u64(bb *b, uint64_t v)
{
    bb_le(b, v, 8);
}
static void bb_str(bb *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_raw(b, s, strlen(s));
}
static void bb_head(bb *b, uint32_t version, uint64_t n_t, uint64_t n_kv)
{
    b->n = 0;
    bb_raw(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_t);
    bb_u64(b, n_kv);
}
static void bb_pad(bb *b, size_t a)
{
    while (b->n % a)
        b->b[b->n++] = 0;
}
/* One tensor info with n_dims dims. */
static void bb_tinfo(bb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                     uint64_t off)
{
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        bb_u64(b, ne[i]);
    bb_u32(b, type);
    bb_u64(b, off);
}

static int expect_fail(const bb *b, const char *want, int line)
{
    aq_gguf *g = NULL;
    aq_error err = {0};
    aq_status st = aq_gguf_open_memory(b->b, b->n, "bad.gguf", &g, &err);
    int ok =
        st == AQ_ERR_FORMAT && g == NULL && strstr(err.msg, want) && strstr(err.msg, "bad.gguf");
    if (!ok)
        fprintf(stderr, "line %d: want error containing '%s', got status %d: %s\n", line, want, st,
                err.msg);
    aq_gguf_close(g);
    return ok;
}
#define EXPECT_FAIL(b, want) CHECK(expect_fail(b, want, __LINE__))

static void small_valid(bb *b, size_t *data_end)
{
    uint64_t ne1[2] = {32, 2}, ne2[1] = {3};
    bb_head(b, 3, 2, 4);
    bb_str(b, "general.alignment"), bb_u32(b, AQ_GGUF_UINT32), bb_u32(b, 16);
    bb_str(b, "k.str"), bb_u32(b, AQ_GGUF_STRING), bb_str(b, "abc");
    bb_str(b, "k.arr"), bb_u32(b, AQ_GGUF_ARRAY), bb_u32(b, AQ_GGUF_STRING), bb_u64(b, 2);
    bb_str(b, "x"), bb_str(b, "yz");
    bb_str(b, "k.b"), bb_u32(b, AQ_GGUF_BOOL), bb_le(b, 1, 1);
    bb_tinfo(b, "w", 2, ne1, AQ_GGML_Q8_0, 0);
    bb_tinfo(b, "v", 1, ne2, AQ_GGML_F32, 80); /* 68 bytes of Q8_0 padded to 16 */
    bb_pad(b, 16);
    size_t start = b->n;
    for (int i = 0; i < 80 + 12; i++)
        b->b[b->n++] = (uint8_t)(i * 7 + 1);
    *data_end = b->n;
    (void)start;
    bb_pad(b, 16);
}

static void test_truncations(void)
{
    bb b;
    size_t data_end;
    small_valid(&b, &data_end);
    aq_error err = {0};
    aq_gguf *g = NULL;
    CHECK_OK(aq_gguf_open_memory(b.b, b.n, "full", &g, &err), &err);
    if (g) CHECK(aq_gguf_n_kv(g) == 4 && aq_gguf_n_tensors(g) == 2 && aq_gguf_alignment(g) == 16);
    aq_gguf_close(g);
    /* Every prefix that cuts into the last tensor's bytes or earlier fails;
     * the trailing padding is optional (the spec pads between tensors). */
    for (size_t n = 0; n <= b.n; n++) {
        g = NULL;
        memset(&err, 0, sizeof err);
        aq_status st = aq_gguf_open_memory(b.b, n, "cut", &g, &err);
        if (n < data_end)
            CHECK_MSG(st == AQ_ERR_FORMAT && !g && strstr(err.msg, "cut: ") &&
                          strstr(err.msg, "byte"),
                      "prefix %zu: %d %s", n, st, err.msg);
        else
            CHECK_MSG(st == AQ_OK, "prefix %zu: %s", n, err.msg);
        aq_gguf_close(g);
    }
}

/* One KV "k" of the given type and raw value bytes, no tensors. */
static void one_kv(bb *b, uint32_t type, const void *val, size_t n)
{
    bb_head(b, 3, 0, 1);
    bb_str(b, "k");
    bb_u32(b, type);
    bb_raw(b, val, n);
}

/* One F32-or-other tensor "t" with the given dims/type/offset and 64 data bytes. */
static void one_tensor(bb *b, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off)
{
    bb_head(b, 3, 1, 0);
    bb_tinfo(b, "t", n_dims, ne, type, off);
    bb_pad(b, 32);
    for (int i = 0; i < 64; i++)
        b->b[b->n++] = 0;
}

static void test_corrupt_header_kv(void)
{
    bb b;
    b.n = 0;
    EXPECT_FAIL(&b, "truncated at byte 0");
    bb_head(&b, 3, 0, 0);
    b.b[0] = 'g';
    EXPECT_FAIL(&b, "not a GGUF file");
    bb_head(&b, 1, 0, 0);
    EXPECT_FAIL(&b, "version 1");
    bb_head(&b, 4, 0, 0);
    EXPECT_FAIL(&b, "version 4");
    bb_head(&b, 0x03000000, 0, 0);
    EXPECT_FAIL(&b, "big-endian");
    bb_head(&b, 3, 0, UINT64_MAX);
    EXPECT_FAIL(&b, "metadata_kv_count");
    bb_head(&b, 3, 1ull << 40, 0);
    EXPECT_FAIL(&b, "tensor_count");
    bb_head(&b, 3, 0, 1);
    bb_u64(&b, UINT64_MAX - 3), bb_u32(&b, 0), bb_u64(&b, 0);
    EXPECT_FAIL(&b, "has length");
    one_kv(&b, 13, "\0\0\0\0", 4);
    EXPECT_FAIL(&b, "unknown value type 13");
    one_kv(&b, AQ_GGUF_BOOL, "\2", 1);
    EXPECT_FAIL(&b, "neither 0 nor 1");
    uint8_t arr[12] = {99, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0};
    one_kv(&b, AQ_GGUF_ARRAY, arr, 12);
    EXPECT_FAIL(&b, "unknown element type 99");
    uint8_t big[12] = {AQ_GGUF_UINT32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10};
    one_kv(&b, AQ_GGUF_ARRAY, big, 12);
    EXPECT_FAIL(&b, "claims");
    uint8_t strarr[12] = {AQ_GGUF_STRING, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0};
    one_kv(&b, AQ_GGUF_ARRAY, strarr, 12); /* 3 strings, no bytes: rejected before allocation */
    EXPECT_FAIL(&b, "claims");
    bb_head(&b, 3, 0, 1); /* arrays nested 5 deep (limit 4) */
    bb_str(&b, "deep"), bb_u32(&b, AQ_GGUF_ARRAY);
    for (int d = 0; d < 5; d++)
        bb_u32(&b, AQ_GGUF_ARRAY), bb_u64(&b, 1);
    bb_u32(&b, AQ_GGUF_UINT8), bb_u64(&b, 0);
    EXPECT_FAIL(&b, "nest deeper");
    bb_head(&b, 3, 0, 2);
    bb_str(&b, "k"), bb_u32(&b, AQ_GGUF_UINT8), bb_le(&b, 1, 1);
    bb_str(&b, "k"), bb_u32(&b, AQ_GGUF_UINT8), bb_le(&b, 2, 1);
    EXPECT_FAIL(&b, "duplicate key 'k'");
    bb_head(&b, 3, 0, 1);
    bb_str(&b, ""), bb_u32(&b, AQ_GGUF_UINT8), bb_le(&b, 1, 1), bb_u64(&b, 0);
    EXPECT_FAIL(&b, "has length 0");
    bb_head(&b, 3, 0, 1);
    bb_u64(&b, 3), bb_raw(&b, "a\0b", 3), bb_u32(&b, AQ_GGUF_UINT8), bb_le(&b, 1, 1);
    EXPECT_FAIL(&b, "NUL byte");
    bb_head(&b, 3, 0, 1);
    bb_str(&b, "general.alignment"), bb_u32(&b, AQ_GGUF_UINT64), bb_u64(&b, 32);
    EXPECT_FAIL(&b, "must be uint32");
    bb_head(&b, 3, 0, 1);
    bb_str(&b, "general.alignment"), bb_u32(&b, AQ_GGUF_UINT32), bb_u32(&b, 24);
    EXPECT_FAIL(&b, "not a power of two");
}

static void test_corrupt_tensors(void)
{
    bb b;
    uint64_t ne[5] = {8, 2, 1, 1, 1};
    one_tensor(&b, 5, ne, AQ_GGML_F32, 0);
    EXPECT_FAIL(&b, "5 dimensions");
    uint64_t neg[2] = {8, 1ull << 63};
    one_tensor(&b, 2, neg, AQ_GGML_F32, 0);
    EXPECT_FAIL(&b, "too large");
    one_tensor(&b, 1, ne, 4, 0); /* Q4_2, removed from ggml */
    EXPECT_FAIL(&b, "unknown ggml type id 4");
    one_tensor(&b, 1, ne, 40, 0);
    EXPECT_FAIL(&b, "unknown ggml type id 40");
    one_tensor(&b, 1, ne, AQ_GGML_Q4_0, 0);
    EXPECT_FAIL(&b, "not a multiple of the Q4_0 block size 32");
    one_tensor(&b, 1, ne, AQ_GGML_F32, 16);
    EXPECT_FAIL(&b, "not a multiple of the alignment");
    one_tensor(&b, 1, ne, AQ_GGML_F32, 64);
    EXPECT_FAIL(&b, "runs past the end");
    uint64_t huge[2] = {1ull << 40, 1ull << 30};
    one_tensor(&b, 2, huge, AQ_GGML_F32, 0);
    EXPECT_FAIL(&b, "overflows");
    bb_head(&b, 3, 1, 0); /* name longer than the spec's 64 bytes */
    bb_tinfo(&b, "0123456789012345678901234567890123456789012345678901234567890123456789", 1, ne, 0,
             0);
    EXPECT_FAIL(&b, "bytes long");
    bb_head(&b, 3, 2, 0); /* two tensors on overlapping bytes */
    uint64_t ne16[1] = {16};
    bb_tinfo(&b, "a", 1, ne16, AQ_GGML_F32, 0);
    bb_tinfo(&b, "b", 1, ne16, AQ_GGML_F32, 32);
    bb_pad(&b, 32);
    for (int i = 0; i < 128; i++)
        b.b[b.n++] = 0;
    EXPECT_FAIL(&b, "overlaps tensor 'a'");
    bb_head(&b, 3, 2, 0);
    bb_tinfo(&b, "a", 1, ne16, AQ_GGML_F32, 0);
    bb_tinfo(&b, "a", 1, ne16, AQ_GGML_F32, 64);
    bb_pad(&b, 32);
    for (int i = 0; i < 128; i++)
        b.b[b.n++] = 0;
    EXPECT_FAIL(&b, "duplicate tensor name 'a'");
    /* Spec-valid but unusual: out-of-order offsets with a hole are accepted. */
    bb_head(&b, 3, 2, 0);
    bb_tinfo(&b, "a", 1, ne16, AQ_GGML_F32, 128);
    bb_tinfo(&b, "b", 1, ne16, AQ_GGML_F32, 0);
    bb_pad(&b, 32);
    for (int i = 0; i < 192; i++)
        b.b[b.n++] = (uint8_t)i;
    aq_gguf *g = NULL;
    aq_error err = {0};
    CHECK_OK(aq_gguf_open_memory(b.b, b.n, "holes", &g, &err), &err);
    if (g) CHECK(aq_gguf_tensor_at(g, 0)->data == b.b + aq_gguf_data_offset(g) + 128);
    aq_gguf_close(g);
}

int main(void)
{
    test_truncations();
    test_corrupt_header_kv();
    test_corrupt_tensors();
    AQ_TEST_END();
}
