/* test_gguf.c — the GGUF container (io/gguf.h); malformed input is in
 * test_gguf_bad.c.
 *
 * Known answers come from the spec (ggml docs/gguf.md), not from the writer:
 * a tiny file is written out byte by byte below and the writer must produce
 * exactly it, and the reader must read it. Also: the ggml block table against
 * the block structs; a round trip of every metadata type and of tensors of
 * several ggml types with odd shapes at alignments 32, 8 and 64; a 128256-entry
 * token array; the writer's argument checks; the atomic write
 * onto an unwritable path and onto a full disk (RLIMIT_FSIZE: the kernel
 * refuses the write with EFBIG exactly as with ENOSPC, and the temporary file
 * lives next to the target, so /dev/full cannot stand in). */
#include <dirent.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../io/gguf.h"
#include "testutil.h"

/* ---- the tiny file of the spec, by hand ---- */
// clang-format off
static const uint8_t tiny_expected[160] = {
    'G', 'G', 'U', 'F', 3, 0, 0, 0,  /* magic, version 3 */
    1, 0, 0, 0, 0, 0, 0, 0,          /* tensor_count 1 */
    2, 0, 0, 0, 0, 0, 0, 0,          /* metadata_kv_count 2 */
    1, 0, 0, 0, 0, 0, 0, 0, 'a',     /* key "a" */
    4, 0, 0, 0, 7, 0, 0, 0,          /* UINT32 7 */
    1, 0, 0, 0, 0, 0, 0, 0, 'b',     /* key "b" */
    8, 0, 0, 0,                      /* STRING */
    2, 0, 0, 0, 0, 0, 0, 0, 'h', 'i',
    1, 0, 0, 0, 0, 0, 0, 0, 't',     /* tensor "t" */
    1, 0, 0, 0,                      /* n_dims 1 */
    2, 0, 0, 0, 0, 0, 0, 0,          /* ne[0] 2 */
    0, 0, 0, 0,                      /* F32 */
    0, 0, 0, 0, 0, 0, 0, 0,          /* offset 0; the header ends at byte 97 */
    [128] = 0x00, 0x00, 0x80, 0x3f,  /* data at 128 (bytes 97..127 zero): 1.0f */
    0x00, 0x00, 0x00, 0xc0,          /* -2.0f; then zero padding to 160 */
};
// clang-format on

static void test_tiny_known_bytes(void)
{
    aq_error err = {0};
    aq_gguf_writer *w = NULL;
    CHECK_OK(aq_gguf_writer_new(&w, &err), &err);
    float data[2] = {1.0f, -2.0f};
    int64_t ne[1] = {2};
    CHECK_OK(aq_gguf_set_u32(w, "a", 7, &err), &err);
    CHECK_OK(aq_gguf_set_str(w, "b", "hi", &err), &err);
    CHECK_OK(aq_gguf_add_tensor(w, "t", 1, ne, AQ_GGML_F32, data, &err), &err);
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(aq_gguf_writer_size(w) == sizeof tiny_expected);
    CHECK_OK(aq_gguf_write_memory(w, &buf, &len, &err), &err);
    CHECK(len == sizeof tiny_expected && buf && !memcmp(buf, tiny_expected, len));
    free(buf);
    aq_gguf_writer_free(w);

    aq_gguf *g = NULL;
    CHECK_OK(aq_gguf_open_memory(tiny_expected, sizeof tiny_expected, "tiny", &g, &err), &err);
    if (!g) return;
    uint64_t a = 0;
    aq_gguf_str s = {0};
    CHECK_OK(aq_gguf_get_u64(g, "a", &a, &err), &err);
    CHECK_OK(aq_gguf_get_str(g, "b", &s, &err), &err);
    CHECK(a == 7 && s.len == 2 && !memcmp(s.ptr, "hi", 2));
    const aq_gguf_tensor *t = aq_gguf_find_tensor(g, "t");
    CHECK(t && t->n_dims == 1 && t->ne[0] == 2 && t->ne[1] == 1 && t->type == AQ_GGML_F32);
    CHECK(t && t->nbytes == 8 && t->data == tiny_expected + 128);
    CHECK(aq_gguf_data_offset(g) == 128 && aq_gguf_alignment(g) == 32 && aq_gguf_version(g) == 3);
    CHECK(aq_gguf_get_u64(g, "b", &a, &err) == AQ_ERR_FORMAT && strstr(err.msg, "'b'"));
    CHECK(aq_gguf_get_u64(g, "zz", &a, &err) == AQ_ERR_NOTFOUND);
    aq_gguf_close(g);
}

/* The block table against ggml-common.h's block structs (sizes by hand). */
static void test_type_table(void)
{
    static const struct {
        int id;
        int64_t blck;
        size_t bytes;
    } want[] = {
        {0, 1, 4},
        {1, 1, 2},
        {2, 32, 2 + 16},
        {3, 32, 2 + 2 + 16},
        {6, 32, 2 + 4 + 16},
        {7, 32, 2 + 2 + 4 + 16},
        {8, 32, 2 + 32},
        {10, 256, 16 + 64 + 2 + 2},       /* Q2_K: scales, qs, d, dmin */
        {11, 256, 32 + 64 + 12 + 2},      /* Q3_K: hmask, qs, scales, d */
        {12, 256, 2 + 2 + 12 + 128},      /* Q4_K */
        {13, 256, 2 + 2 + 12 + 32 + 128}, /* Q5_K */
        {14, 256, 128 + 64 + 16 + 2},     /* Q6_K: ql, qh, scales, d */
        {30, 1, 2},
        {24, 1, 1},
        {28, 1, 8},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK_MSG(aq_ggml_block_size(want[i].id) == want[i].blck &&
                      aq_ggml_block_bytes(want[i].id) == want[i].bytes,
                  "type %d", want[i].id);
    int removed[] = {4, 5, 31, 32, 33, 36, 37, 38, 40, -1, 1000};
    for (size_t i = 0; i < sizeof removed / sizeof removed[0]; i++)
        CHECK(aq_ggml_block_size(removed[i]) == 0 && aq_ggml_type_name(removed[i]) == NULL);
    uint64_t nb = 0;
    aq_error err = {0};
    int64_t ne[2] = {512, 3};
    CHECK_OK(aq_ggml_nbytes(AQ_GGML_Q4_K, 2, ne, "x", &nb, &err), &err);
    CHECK(nb == 2 * 3 * 144);
    ne[0] = 172; /* stories260K's down_proj rows: not a Q4_0 row */
    CHECK(aq_ggml_nbytes(AQ_GGML_Q4_0, 2, ne, "down", &nb, &err) == AQ_ERR_SHAPE &&
          strstr(err.msg, "172"));
}

/* ---- round trips ---- */

/* A file with a value of every metadata type (and arrays); malloc'd. */
static uint8_t *write_all_types(size_t *len_out)
{
    aq_error err = {0};
    aq_gguf_writer *w = NULL;
    CHECK_OK(aq_gguf_writer_new(&w, &err), &err);
    uint8_t u8 = 250;
    int8_t i8 = -100;
    uint16_t u16 = 65000;
    int16_t i16 = -32000;
    uint32_t u32 = 4000000000u;
    int32_t i32 = -2000000000;
    float f32 = -1.5f;
    uint8_t bo = 1;
    uint64_t u64 = 18000000000000000000ull;
    int64_t i64 = -9000000000000000000ll;
    double f64 = 3.141592653589793;
    CHECK_OK(aq_gguf_set_scalar(w, "s.u8", AQ_GGUF_UINT8, &u8, &err), &err);
    CHECK_OK(aq_gguf_set_scalar(w, "s.i8", AQ_GGUF_INT8, &i8, &err), &err);
    CHECK_OK(aq_gguf_set_scalar(w, "s.u16", AQ_GGUF_UINT16, &u16, &err), &err);
    CHECK_OK(aq_gguf_set_scalar(w, "s.i16", AQ_GGUF_INT16, &i16, &err), &err);
    CHECK_OK(aq_gguf_set_scalar(w, "s.u32", AQ_GGUF_UINT32, &u32, &err), &err);
    CHECK_OK(aq_gguf_set_scalar(w, "s.i32", AQ_GGUF_INT32, &i32, &err), &err);
    CHECK_OK(aq_gguf_set_scalar(w, "s.f32", AQ_GGUF_FLOAT32, &f32, &err), &err);
    CHECK_OK(aq_gguf_set_scalar(w, "s.bool", AQ_GGUF_BOOL, &bo, &err), &err);
    CHECK_OK(aq_gguf_set_scalar(w, "s.u64", AQ_GGUF_UINT64, &u64, &err), &err);
    CHECK_OK(aq_gguf_set_scalar(w, "s.i64", AQ_GGUF_INT64, &i64, &err), &err);
    CHECK_OK(aq_gguf_set_scalar(w, "s.f64", AQ_GGUF_FLOAT64, &f64, &err), &err);
    CHECK_OK(aq_gguf_set_str(w, "s.str", "h\xc3\xa9llo", &err), &err);
    CHECK_OK(aq_gguf_set_strn(w, "s.empty", "", 0, &err), &err);
    int16_t ai16[3] = {-1, 2, -32768};
    double af64[2] = {-0.25, 1e300};
    uint8_t abool[3] = {1, 0, 1};
    int64_t ai64[3] = {INT64_MIN, 0, INT64_MAX};
    CHECK_OK(aq_gguf_set_array(w, "a.i16", AQ_GGUF_INT16, ai16, 3, &err), &err);
    CHECK_OK(aq_gguf_set_array(w, "a.f64", AQ_GGUF_FLOAT64, af64, 2, &err), &err);
    CHECK_OK(aq_gguf_set_array(w, "a.bool", AQ_GGUF_BOOL, abool, 3, &err), &err);
    CHECK_OK(aq_gguf_set_array(w, "a.i64", AQ_GGUF_INT64, ai64, 3, &err), &err);
    CHECK_OK(aq_gguf_set_array(w, "a.empty", AQ_GGUF_INT32, NULL, 0, &err), &err);
    const char *strs[3] = {"<s>", "", "\xe2\x96\x81the"};
    CHECK_OK(aq_gguf_set_str_array(w, "a.str", strs, NULL, 3, &err), &err);
    uint16_t nested[5] = {1, 2, 3, 4, 5};
    uint64_t counts[3] = {2, 0, 3};
    CHECK_OK(aq_gguf_set_nested_array(w, "a.nested", AQ_GGUF_UINT16, counts, 3, nested, &err),
             &err);
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_OK(aq_gguf_write_memory(w, &buf, &len, &err), &err);
    CHECK(len == aq_gguf_writer_size(w) && len % 32 == 0);
    aq_gguf_writer_free(w);
    *len_out = len;
    return buf;
}

static void check_scalars(const aq_gguf *g)
{
    aq_error err = {0};
    uint64_t u64 = 18000000000000000000ull;
    int64_t i64 = -9000000000000000000ll;
    double f64 = 3.141592653589793;
    CHECK(aq_gguf_n_kv(g) == 20 && aq_gguf_n_tensors(g) == 0);
    const char *order[] = {"s.u8", "s.i8", "s.u16", "s.i16", "s.u32", "s.i32", "s.f32"};
    const int types[] = {AQ_GGUF_UINT8,  AQ_GGUF_INT8,  AQ_GGUF_UINT16, AQ_GGUF_INT16,
                         AQ_GGUF_UINT32, AQ_GGUF_INT32, AQ_GGUF_FLOAT32};
    for (int i = 0; i < 7; i++)
        CHECK(!strcmp(aq_gguf_kv_at(g, (size_t)i)->key, order[i]) &&
              (int)aq_gguf_kv_at(g, (size_t)i)->v.type == types[i]);
    uint64_t u = 0;
    int64_t v = 0;
    double d = 0;
    int b = 0;
    CHECK(aq_gguf_get_u64(g, "s.u8", &u, &err) == AQ_OK && u == 250);
    CHECK(aq_gguf_get_i64(g, "s.i8", &v, &err) == AQ_OK && v == -100);
    CHECK(aq_gguf_get_u64(g, "s.u16", &u, &err) == AQ_OK && u == 65000);
    CHECK(aq_gguf_get_i64(g, "s.i16", &v, &err) == AQ_OK && v == -32000);
    CHECK(aq_gguf_get_u64(g, "s.u32", &u, &err) == AQ_OK && u == 4000000000u);
    CHECK(aq_gguf_get_i64(g, "s.i32", &v, &err) == AQ_OK && v == -2000000000);
    CHECK(aq_gguf_get_f64(g, "s.f32", &d, &err) == AQ_OK && d == -1.5);
    CHECK(aq_gguf_get_bool(g, "s.bool", &b, &err) == AQ_OK && b == 1);
    CHECK(aq_gguf_get_u64(g, "s.u64", &u, &err) == AQ_OK && u == u64);
    CHECK(aq_gguf_get_i64(g, "s.u64", &v, &err) == AQ_ERR_FORMAT); /* > INT64_MAX */
    CHECK(aq_gguf_get_u64(g, "s.i64", &u, &err) == AQ_ERR_FORMAT); /* negative */
    CHECK(aq_gguf_get_i64(g, "s.i64", &v, &err) == AQ_OK && v == i64);
    CHECK(aq_gguf_get_f64(g, "s.f64", &d, &err) == AQ_OK && d == f64);
    aq_gguf_str s = {0};
    CHECK(aq_gguf_get_str(g, "s.str", &s, &err) == AQ_OK && s.len == 6 &&
          !memcmp(s.ptr, "h\xc3\xa9llo", 6));
    CHECK(aq_gguf_get_str(g, "s.empty", &s, &err) == AQ_OK && s.len == 0);
}

static void check_arrays(const aq_gguf *g)
{
    aq_error err = {0};
    const aq_gguf_value *a = NULL;
    CHECK(aq_gguf_get_array(g, "a.i16", AQ_GGUF_INT16, &a, &err) == AQ_OK && a->n == 3);
    if (a)
        CHECK(aq_gguf_value_i64(a, 0) == -1 && aq_gguf_value_i64(a, 1) == 2 &&
              aq_gguf_value_i64(a, 2) == -32768);
    CHECK(aq_gguf_get_array(g, "a.i16", AQ_GGUF_INT32, &a, &err) == AQ_ERR_FORMAT);
    CHECK(aq_gguf_get_array(g, "a.f64", AQ_GGUF_FLOAT64, &a, &err) == AQ_OK && a->n == 2 &&
          aq_gguf_value_f64(a, 0) == -0.25 && aq_gguf_value_f64(a, 1) == 1e300);
    CHECK(aq_gguf_get_array(g, "a.bool", AQ_GGUF_BOOL, &a, &err) == AQ_OK && a->n == 3 &&
          a->raw[0] == 1 && a->raw[1] == 0 && a->raw[2] == 1);
    CHECK(aq_gguf_get_array(g, "a.i64", AQ_GGUF_INT64, &a, &err) == AQ_OK &&
          aq_gguf_value_i64(a, 0) == INT64_MIN && aq_gguf_value_i64(a, 2) == INT64_MAX);
    CHECK(aq_gguf_get_array(g, "a.empty", AQ_GGUF_INT32, &a, &err) == AQ_OK && a->n == 0);
    CHECK(aq_gguf_get_array(g, "a.str", AQ_GGUF_STRING, &a, &err) == AQ_OK && a->n == 3 &&
          a->strs[0].len == 3 && a->strs[1].len == 0 && a->strs[2].len == 6 &&
          !memcmp(a->strs[2].ptr, "\xe2\x96\x81the", 6));
    CHECK(aq_gguf_get_array(g, "a.nested", AQ_GGUF_ARRAY, &a, &err) == AQ_OK && a->n == 3);
    if (a && a->items) {
        CHECK(a->items[0].elem_type == AQ_GGUF_UINT16 && a->items[0].n == 2 && a->items[1].n == 0 &&
              a->items[2].n == 3);
        CHECK(aq_gguf_value_u64(&a->items[0], 1) == 2 && aq_gguf_value_u64(&a->items[2], 2) == 5);
    }
}

static void test_metadata_roundtrip(void)
{
    size_t len = 0;
    uint8_t *buf = write_all_types(&len);
    aq_gguf *g = NULL;
    aq_error err = {0};
    CHECK_OK(aq_gguf_open_memory(buf, len, "meta", &g, &err), &err);
    if (g) {
        check_scalars(g);
        check_arrays(g);
    }
    aq_gguf_close(g);
    free(buf);
}

static aq_status stream_bytes(void *ctx, aq_gguf_sink *sink, aq_error *err)
{
    const uint8_t *p = ctx; /* in odd pieces, to exercise the sink */
    AQ_TRY(aq_gguf_sink_write(sink, p, 7, err));
    AQ_TRY(aq_gguf_sink_write(sink, p + 7, 0, err));
    return aq_gguf_sink_write(sink, p + 7, 34 * 2 - 7, err);
}

/* Tensors of several types with odd shapes; align 0 = the default (no key). */
static void test_tensor_roundtrip(uint32_t align)
{
    static const struct {
        const char *name;
        int type;
        uint32_t n_dims;
        int64_t ne[4];
    } ts[] = {
        {"f32", AQ_GGML_F32, 2, {3, 5}},         {"f16", AQ_GGML_F16, 1, {7}},
        {"q4_0", AQ_GGML_Q4_0, 2, {32, 3}},      {"q8_0", AQ_GGML_Q8_0, 3, {64, 1, 3}},
        {"q4_k", AQ_GGML_Q4_K, 2, {256, 3}},     {"q6_k", AQ_GGML_Q6_K, 1, {512}},
        {"bf16", AQ_GGML_BF16, 4, {1, 1, 1, 1}}, {"q5_1", AQ_GGML_Q5_1, 2, {96, 1}},
        {"q2_k", AQ_GGML_Q2_K, 2, {256, 1}},     {"empty", AQ_GGML_F32, 2, {4, 0}},
    };
    const size_t nt = sizeof ts / sizeof ts[0];
    const uint64_t want[] = {60, 14, 3 * 18, 6 * 34, 3 * 144, 2 * 210, 2, 3 * 24, 84, 0};
    uint64_t seed = 12345 + align;
    uint8_t data[nt][1024];
    for (size_t i = 0; i < nt; i++)
        for (size_t k = 0; k < 1024; k++)
            data[i][k] = (uint8_t)(aq_test_urand(&seed) * 256);
    aq_error err = {0};
    aq_gguf_writer *w = NULL;
    CHECK_OK(aq_gguf_writer_new(&w, &err), &err);
    if (align) CHECK_OK(aq_gguf_set_u32(w, "general.alignment", align, &err), &err);
    CHECK_OK(aq_gguf_set_str(w, "general.architecture", "llama", &err), &err);
    for (size_t i = 0; i < nt; i++)
        CHECK_OK(
            aq_gguf_add_tensor(w, ts[i].name, ts[i].n_dims, ts[i].ne, ts[i].type, data[i], &err),
            &err);
    int64_t sne[2] = {32, 2};
    CHECK_OK(
        aq_gguf_add_tensor_stream(w, "streamed", 2, sne, AQ_GGML_Q8_0, stream_bytes, data[0], &err),
        &err);
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_OK(aq_gguf_write_memory(w, &buf, &len, &err), &err);
    CHECK(len == aq_gguf_writer_size(w));
    aq_gguf_writer_free(w);
    uint32_t a = align ? align : 32;
    aq_gguf *g = NULL;
    CHECK_OK(aq_gguf_open_memory(buf, len, "tensors", &g, &err), &err);
    if (!g) {
        free(buf);
        return;
    }
    CHECK(aq_gguf_alignment(g) == a && aq_gguf_data_offset(g) % a == 0 &&
          aq_gguf_n_tensors(g) == nt + 1);
    uint64_t expect_off = 0; /* contiguous in order, each padded to the alignment */
    for (size_t i = 0; i <= nt; i++) {
        const aq_gguf_tensor *t = aq_gguf_tensor_at(g, i);
        const uint8_t *src = i < nt ? data[i] : data[0];
        uint64_t nb = i < nt ? want[i] : 68;
        CHECK_MSG(t->nbytes == nb && t->offset == expect_off && t->offset % a == 0, "tensor %zu",
                  i);
        CHECK(!memcmp(t->data, src, (size_t)nb));
        CHECK(t->type == (i < nt ? ts[i].type : AQ_GGML_Q8_0) &&
              t->n_dims == (i < nt ? ts[i].n_dims : 2));
        for (uint32_t d = 0; d < 4; d++)
            CHECK(t->ne[d] ==
                  (i < nt ? (d < ts[i].n_dims ? ts[i].ne[d] : 1) : (d < 2 ? sne[d] : 1)));
        /* padding between tensors is zero */
        const uint8_t *end = (const uint8_t *)t->data + nb;
        for (uint64_t k = nb; k % a; k++, end++)
            CHECK(*end == 0);
        expect_off += (nb + a - 1) / a * a;
    }
    CHECK(aq_gguf_find_tensor(g, "q6_k") == aq_gguf_tensor_at(g, 5) &&
          !aq_gguf_find_tensor(g, "nope"));
    CHECK(len == aq_gguf_data_offset(g) + expect_off);
    aq_gguf_close(g);
    free(buf);
}

/* A Llama-3-sized token list (128256 strings) goes through in well under a
 * second; a quadratic path would not. */
static void test_big_string_array(void)
{
    enum { N = 128256 };
    char **toks = malloc(N * sizeof *toks);
    for (int i = 0; i < N; i++) {
        toks[i] = malloc(16);
        snprintf(toks[i], 16, "tok%d", i);
    }
    aq_error err = {0};
    aq_gguf_writer *w = NULL;
    CHECK_OK(aq_gguf_writer_new(&w, &err), &err);
    CHECK_OK(
        aq_gguf_set_str_array(w, "tokenizer.ggml.tokens", (const char *const *)toks, NULL, N, &err),
        &err);
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_OK(aq_gguf_write_memory(w, &buf, &len, &err), &err);
    aq_gguf_writer_free(w);
    aq_gguf *g = NULL;
    const aq_gguf_value *a = NULL;
    CHECK_OK(aq_gguf_open_memory(buf, len, "vocab", &g, &err), &err);
    if (g) CHECK_OK(aq_gguf_get_array(g, "tokenizer.ggml.tokens", AQ_GGUF_STRING, &a, &err), &err);
    if (a) {
        CHECK(a->n == N);
        for (int i = 0; i < N; i += 997)
            CHECK(a->strs[i].len == strlen(toks[i]) &&
                  !memcmp(a->strs[i].ptr, toks[i], a->strs[i].len));
    }
    aq_gguf_close(g);
    free(buf);
    for (int i = 0; i < N; i++)
        free(toks[i]);
    free(toks);
}

/* A small valid file with metadata of several kinds and two tensors, by hand. */
static void test_writer_errors(void)
{
    aq_error err = {0};
    aq_gguf_writer *w = NULL;
    CHECK_OK(aq_gguf_writer_new(&w, &err), &err);
    int64_t ne[2] = {172, 2};
    float zero[400] = {0};
    CHECK_OK(aq_gguf_set_u32(w, "a", 1, &err), &err);
    CHECK(aq_gguf_set_u32(w, "a", 2, &err) == AQ_ERR_ARG && strstr(err.msg, "'a' set twice"));
    CHECK(aq_gguf_set_str(w, "", "x", &err) == AQ_ERR_ARG);
    CHECK(aq_gguf_set_u32(w, "general.alignment", 48, &err) == AQ_ERR_ARG);
    uint16_t a16 = 32;
    CHECK(aq_gguf_set_scalar(w, "general.alignment", AQ_GGUF_UINT16, &a16, &err) == AQ_ERR_ARG);
    uint8_t two = 2;
    CHECK(aq_gguf_set_array(w, "bools", AQ_GGUF_BOOL, &two, 1, &err) == AQ_ERR_ARG);
    CHECK(aq_gguf_set_array(w, "strs", AQ_GGUF_STRING, NULL, 0, &err) == AQ_ERR_ARG);
    CHECK(aq_gguf_add_tensor(w, "down", 2, ne, AQ_GGML_Q4_0, zero, &err) == AQ_ERR_SHAPE &&
          strstr(err.msg, "'down'") && strstr(err.msg, "172"));
    CHECK(aq_gguf_add_tensor(w, "0123456789012345678901234567890123456789012345678901234567890123",
                             2, ne, AQ_GGML_F32, zero, &err) == AQ_ERR_ARG);
    CHECK(aq_gguf_add_tensor(w, "t", 5, ne, AQ_GGML_F32, zero, &err) == AQ_ERR_SHAPE);
    CHECK(aq_gguf_add_tensor(w, "t", 2, ne, 31, zero, &err) == AQ_ERR_ARG);
    CHECK_OK(aq_gguf_add_tensor(w, "t", 2, ne, AQ_GGML_F16, zero, &err), &err);
    CHECK(aq_gguf_add_tensor(w, "t", 2, ne, AQ_GGML_F16, zero, &err) == AQ_ERR_ARG);
    CHECK(aq_gguf_set_u32(w, "general.alignment", 64, &err) == AQ_ERR_ARG &&
          strstr(err.msg, "before"));
    /* The failed calls left no trace: the file holds exactly "a" and "t". */
    uint8_t *buf = NULL;
    size_t len = 0;
    aq_gguf *g = NULL;
    CHECK_OK(aq_gguf_write_memory(w, &buf, &len, &err), &err);
    CHECK_OK(aq_gguf_open_memory(buf, len, "after-errors", &g, &err), &err);
    if (g) CHECK(aq_gguf_n_kv(g) == 1 && aq_gguf_n_tensors(g) == 1);
    aq_gguf_close(g);
    free(buf);
    aq_gguf_writer_free(w);
}

static aq_status short_stream(void *ctx, aq_gguf_sink *sink, aq_error *err)
{
    (void)ctx;
    return aq_gguf_sink_write(sink, "abc", 3, err);
}

/* A writer of about 200 KB: one F32 tensor of 50000 values. */
static aq_gguf_writer *big_writer(const float *data)
{
    aq_error err = {0};
    aq_gguf_writer *w = NULL;
    int64_t ne[1] = {50000};
    CHECK_OK(aq_gguf_writer_new(&w, &err), &err);
    CHECK_OK(aq_gguf_set_str(w, "general.name", "big", &err), &err);
    CHECK_OK(aq_gguf_add_tensor(w, "x", 1, ne, AQ_GGML_F32, data, &err), &err);
    return w;
}

static void test_atomic_failures(void)
{
    char *dir = aq_test_tmpdir("gguf");
    char path[512], blocker[512], bad[600];
    snprintf(path, sizeof path, "%s/m.gguf", dir);
    snprintf(blocker, sizeof blocker, "%s/file", dir);
    snprintf(bad, sizeof bad, "%s/sub/m.gguf", blocker);
    aq_error err = {0};
    float *data = calloc(50000, sizeof *data);
    aq_gguf_writer *w = big_writer(data);

    /* Unwritable path: the parent is a regular file (root ignores modes). */
    FILE *fp = fopen(blocker, "w");
    if (fp) fclose(fp);
    CHECK(aq_gguf_write(w, bad, &err) == AQ_ERR_IO && strstr(err.msg, bad) &&
          !strncmp(err.msg, "GGUF not written: ", 18));
    CHECK(aq_test_count_entries(dir) == 1);

    /* A good write, then a failing one must leave it intact. */
    CHECK_OK(aq_gguf_write(w, path, &err), &err);
    size_t len0 = 0;
    unsigned char *before = aq_test_read_file(path, &len0);
    CHECK(before && len0 == aq_gguf_writer_size(w));

    /* Full disk: file size limit 64 KB, SIGXFSZ ignored -> EFBIG. */
    data[0] = 1.0f; /* the new content differs */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 65536;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    memset(&err, 0, sizeof err);
    aq_status st = aq_gguf_write(w, path, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    CHECK_MSG(st == AQ_ERR_IO && strstr(err.msg, path) &&
                  !strncmp(err.msg, "GGUF not written: ", 18),
              "full disk: %d %s", st, err.msg);
    size_t len1 = 0;
    unsigned char *after = aq_test_read_file(path, &len1);
    CHECK(after && len1 == len0 && !memcmp(before, after, len0));
    CHECK(aq_test_count_entries(dir) == 2); /* m.gguf and the blocker: no temporary left */

    /* A stream that writes too little: error, no file change, no temporary. */
    int64_t ne[1] = {32};
    CHECK_OK(aq_gguf_add_tensor_stream(w, "s", 1, ne, AQ_GGML_Q8_0, short_stream, NULL, &err),
             &err);
    CHECK(aq_gguf_write(w, path, &err) == AQ_ERR_INTERNAL && strstr(err.msg, "'s'") &&
          strstr(err.msg, path));
    CHECK(aq_test_count_entries(dir) == 2);
    free(after);
    after = aq_test_read_file(path, &len1);
    CHECK(after && len1 == len0 && !memcmp(before, after, len0));

    /* The reader on the file itself (mmap path) and on a missing one. */
    aq_gguf *g = NULL;
    CHECK_OK(aq_gguf_open(path, &g, &err), &err);
    if (g) CHECK(aq_gguf_n_tensors(g) == 1 && aq_gguf_tensor_at(g, 0)->nbytes == 200000);
    aq_gguf_close(g);
    CHECK(aq_gguf_open(bad, &g, &err) == AQ_ERR_IO && strstr(err.msg, bad) && !g);
    CHECK(aq_gguf_open(blocker, &g, &err) == AQ_ERR_FORMAT &&
          strstr(err.msg, "truncated")); /* empty file */

    aq_gguf_writer_free(w);
    free(before);
    free(after);
    free(data);
    unlink(path);
    unlink(blocker);
    rmdir(dir);
    free(dir);
}

int main(void)
{
    test_tiny_known_bytes();
    test_type_table();
    test_metadata_roundtrip();
    test_tensor_roundtrip(0);
    test_tensor_roundtrip(8);
    test_tensor_roundtrip(64);
    test_big_string_array();
    test_writer_errors();
    test_atomic_failures();
    AQ_TEST_END();
}
