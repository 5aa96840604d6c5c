/* test_safetensors.c — safetensors writer/reader round trip (all 12 dtypes,
 * metadata, a scalar, a zero-size tensor, 8-byte header padding, deterministic
 * bytes), known-answer conversions of every dtype, the malformed corpus
 * (each case fails with its phrase, from memory and from disk, every prefix of
 * a valid file fails cleanly), and writer argument errors. */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "../io/safetensors.h"
#include "malformed/malformed.h"
#include "testutil.h"

/* The 12 dtypes with hand-encoded little-endian payloads and their values. */
typedef struct dt_case {
    aq_dtype dt;
    const char *name;
    unsigned char bytes[48];
    int n;          /* elements (shape [n]) */
    double want[6]; /* values as float32 */
} dt_case;

static const dt_case dt_cases[] = {
    {AQ_F64, "F64", {0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0x04, 0xc0}, 2, {1.0, -2.5}},
    {AQ_F32, "F32", {0, 0, 0x80, 0x3f, 0, 0, 0x40, 0xc0, 1, 0, 0, 0}, 3, {1.0, -3.0, 0x1p-149}},
    /* F16: 0.5, -2.25, 65504 (max), 2^-24 (smallest subnormal), -0 */
    {AQ_F16,
     "F16",
     {0x00, 0x38, 0x80, 0xc0, 0xff, 0x7b, 0x01, 0x00, 0x00, 0x80},
     5,
     {0.5, -2.25, 65504.0, 0x1p-24, -0.0}},
    /* BF16: 1, -2, 3.140625, 2^-133 (smallest subnormal) */
    {AQ_BF16,
     "BF16",
     {0x80, 0x3f, 0x00, 0xc0, 0x49, 0x40, 0x01, 0x00},
     4,
     {1.0, -2.0, 3.140625, 0x1p-133}},
    {AQ_I64,
     "I64",
     {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 0, 0, 0},
     2,
     {-1.0, 4294967296.0}},
    {AQ_I32, "I32", {0xfe, 0xff, 0xff, 0xff, 0x40, 0x42, 0x0f, 0x00}, 2, {-2.0, 1000000.0}},
    {AQ_I16, "I16", {0x00, 0x80, 0xff, 0x7f}, 2, {-32768.0, 32767.0}},
    {AQ_I8, "I8", {0x80, 0x7f, 0xff}, 3, {-128.0, 127.0, -1.0}},
    {AQ_U8, "U8", {0x00, 0xff, 0x07}, 3, {0.0, 255.0, 7.0}},
    {AQ_U16, "U16", {0xff, 0xff, 0x01, 0x00}, 2, {65535.0, 1.0}},
    {AQ_U32, "U32", {0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0}, 2, {4294967295.0, 2.0}},
    {AQ_BOOL, "BOOL", {0x00, 0x01, 0x01, 0x00}, 4, {0.0, 1.0, 1.0, 0.0}},
};
#define N_DT (sizeof dt_cases / sizeof dt_cases[0])

static void test_dtypes(void)
{
    aq_error err = {0};
    CHECK(N_DT == AQ_DTYPE_COUNT);
    for (size_t i = 0; i < N_DT; i++) {
        const dt_case *c = &dt_cases[i];
        aq_dtype d;
        CHECK_OK(aq_dtype_parse(c->name, &d, &err), &err);
        CHECK(d == c->dt);
        CHECK(!strcmp(aq_dtype_name(c->dt), c->name));
        /* data one byte off alignment: the reader must not assume alignment */
        unsigned char buf[64];
        memcpy(buf + 1, c->bytes, sizeof c->bytes);
        aq_tensor_view v = {
            .name = c->name, .dtype = c->dt, .ndim = 1, .shape = {c->n}, .data = buf + 1};
        v.nbytes = (size_t)c->n * aq_dtype_size(c->dt);
        float out[8];
        CHECK_OK(aq_view_to_f32(&v, out, &err), &err);
        for (int k = 0; k < c->n; k++)
            CHECK_MSG(out[k] == (float)c->want[k] && !signbit(out[k]) == !signbit(c->want[k]),
                      "%s[%d] = %g, want %g", c->name, k, (double)out[k], c->want[k]);
        v.nbytes++; /* inconsistent view -> error, not garbage */
        CHECK(aq_view_to_f32(&v, out, &err) == AQ_ERR_INTERNAL);
    }
    size_t sizes[] = {8, 4, 2, 2, 8, 4, 2, 1, 1, 2, 4, 1};
    for (int i = 0; i < AQ_DTYPE_COUNT; i++)
        CHECK(aq_dtype_size((aq_dtype)i) == sizes[i]);
    aq_dtype d;
    CHECK(aq_dtype_parse("F8_E4M3", &d, &err) == AQ_ERR_FORMAT && strstr(err.msg, "F8_E4M3"));
    CHECK(aq_dtype_parse("f32", &d, &err) == AQ_ERR_FORMAT);
}

/* Payloads for the round trip: shape [2, 3] of every dtype, filled from a byte pattern. */
static unsigned char payload[AQ_DTYPE_COUNT][48];

static aq_status write_model(const char *path, aq_error *err)
{
    aq_st_writer *w;
    AQ_TRY(aq_st_writer_new(&w, err));
    aq_status st = AQ_OK;
    int64_t shape[2] = {2, 3}, zero[2] = {0, 5};
    static const float scalar = 2.75f;
    for (int d = 0; d < AQ_DTYPE_COUNT && st == AQ_OK; d++) {
        char name[32];
        snprintf(name, sizeof name, "t.%s", aq_dtype_name((aq_dtype)d));
        st = aq_st_writer_add(w, name, (aq_dtype)d, 2, shape, payload[d], err);
    }
    if (st == AQ_OK) st = aq_st_writer_add(w, "scalar", AQ_F32, 0, NULL, &scalar, err);
    if (st == AQ_OK) st = aq_st_writer_add(w, "empty", AQ_F16, 2, zero, NULL, err);
    if (st == AQ_OK) st = aq_st_writer_meta(w, "zeta", "last", err);
    if (st == AQ_OK) st = aq_st_writer_meta(w, "format", "pt", err);
    if (st == AQ_OK) st = aq_st_writer_meta(w, "note", "überprüft ✓", err);
    if (st == AQ_OK) st = aq_st_writer_write(w, path, err);
    aq_st_writer_free(w);
    return st;
}

static void test_round_trip(const char *dir)
{
    aq_error err = {0};
    for (int d = 0; d < AQ_DTYPE_COUNT; d++)
        for (int k = 0; k < 48; k++)
            payload[d][k] = (unsigned char)(d * 31 + k * 7 + 1);
    for (int k = 0; k < 6; k++)
        payload[AQ_BOOL][k] = (unsigned char)(k & 1);
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/a.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/b.safetensors", dir);
    CHECK_OK(write_model(p1, &err), &err);
    CHECK_OK(write_model(p2, &err), &err);

    size_t l1, l2;
    unsigned char *b1 = aq_test_read_file(p1, &l1), *b2 = aq_test_read_file(p2, &l2);
    CHECK(b1 && b2 && l1 == l2 && !memcmp(b1, b2, l1)); /* deterministic bytes */
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | b1[i];
    CHECK_MSG(n % 8 == 0, "header length %llu not a multiple of 8", (unsigned long long)n);
    CHECK(b1[8] == '{');
    size_t close = 8 + (size_t)n - 1;
    while (close > 8 && b1[close] == ' ')
        close--;
    CHECK(b1[close] == '}' && 8 + n - 1 - close < 8); /* only space padding, less than 8 of it */
    CHECK(
        !memcmp(b1 + 8, "{\"__metadata__\":{\"format\":\"pt\",", 31)); /* metadata first, sorted */
    size_t data_len =
        AQ_DTYPE_COUNT == 12 ? 6 * (8 + 4 + 2 + 2 + 8 + 4 + 2 + 1 + 1 + 2 + 4 + 1) + 4 : 0;
    CHECK(l1 == 8 + n + data_len);

    aq_st_file *f = NULL;
    CHECK_OK(aq_st_open(p1, &f, &err), &err);
    if (!f) return;
    CHECK(aq_st_count(f) == AQ_DTYPE_COUNT + 2);
    size_t off = 8 + (size_t)n;
    for (int d = 0; d < AQ_DTYPE_COUNT; d++) {
        const aq_tensor_view *v = aq_st_tensor(f, (size_t)d); /* file order = add order */
        char name[32];
        snprintf(name, sizeof name, "t.%s", aq_dtype_name((aq_dtype)d));
        CHECK(v && !strcmp(v->name, name) && v->dtype == (aq_dtype)d && v->ndim == 2);
        CHECK(v && v->shape[0] == 2 && v->shape[1] == 3 &&
              v->nbytes == 6 * aq_dtype_size((aq_dtype)d));
        CHECK(v && !memcmp(v->data, payload[d], v->nbytes));
        CHECK(v && !memcmp(b1 + off, payload[d], v->nbytes)); /* contiguous, in add order */
        CHECK(aq_st_find(f, name) == v);
        off += 6 * aq_dtype_size((aq_dtype)d);
    }
    const aq_tensor_view *s = aq_st_find(f, "scalar"), *e = aq_st_find(f, "empty");
    float x = 0;
    CHECK(s && s->ndim == 0 && s->nbytes == 4 && aq_view_numel(s) == 1);
    CHECK(s && aq_view_to_f32(s, &x, &err) == AQ_OK && x == 2.75f);
    CHECK(e && e->ndim == 2 && e->shape[0] == 0 && e->shape[1] == 5 && e->nbytes == 0 &&
          aq_view_numel(e) == 0);
    CHECK(aq_st_find(f, "missing") == NULL);
    CHECK(aq_st_meta_count(f) == 3);
    const char *k, *val;
    aq_st_meta_at(f, 0, &k, &val);
    CHECK(!strcmp(k, "format") && !strcmp(val, "pt"));
    aq_st_meta_at(f, 2, &k, &val);
    CHECK(!strcmp(k, "zeta") && !strcmp(val, "last"));
    CHECK(aq_st_meta_get(f, "note") && !strcmp(aq_st_meta_get(f, "note"), "überprüft ✓"));
    CHECK(aq_st_meta_get(f, "nope") == NULL);
    aq_st_close(f);

    /* every strict prefix of a valid file is rejected cleanly */
    for (size_t len = 0; len < l1; len++) {
        aq_error e2 = {0};
        aq_st_file *g = NULL;
        unsigned char *cut = malloc(len ? len : 1);
        memcpy(cut, b1, len);
        CHECK_MSG(aq_st_open_memory(cut, len, "cut", &g, &e2) == AQ_ERR_FORMAT,
                  "prefix %zu accepted", len);
        CHECK(g == NULL || (aq_st_close(g), 0));
        free(cut);
    }
    free(b1);
    free(b2);
}

static void test_malformed(const char *dir)
{
    aq_malformed_case *c;
    size_t n = aq_malformed_build(&c);
    CHECK(n >= 25);
    for (size_t i = 0; i < n; i++) {
        aq_error err = {0};
        aq_st_file *f = NULL;
        /* exact-size copy: ASan flags any read past the image */
        unsigned char *buf = malloc(c[i].len ? c[i].len : 1);
        memcpy(buf, c[i].buf, c[i].len);
        aq_status st = aq_st_open_memory(buf, c[i].len, c[i].name, &f, &err);
        if (!c[i].expect) {
            CHECK_MSG(st == AQ_OK, "%s: %s", c[i].name, err.msg);
            for (size_t t = 0; f && t < aq_st_count(f); t++) {
                float *tmp = NULL;
                CHECK_OK(aq_view_to_f32_alloc(aq_st_tensor(f, t), &tmp, &err), &err);
                free(tmp);
            }
            aq_st_close(f);
        } else {
            CHECK_MSG(st == AQ_ERR_FORMAT && f == NULL, "%s: accepted or wrong code %d", c[i].name,
                      st);
            CHECK_MSG(strstr(err.msg, c[i].expect) &&
                          !strncmp(err.msg, c[i].name, strlen(c[i].name)),
                      "%s: message '%s' lacks '%s'", c[i].name, err.msg, c[i].expect);
        }
        free(buf);
        /* the same from disk (mmap path); the message names the path */
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, c[i].name);
        FILE *fp = fopen(path, "wb");
        CHECK(fp && fwrite(c[i].buf, 1, c[i].len, fp) == c[i].len);
        if (fp) fclose(fp);
        f = NULL;
        st = aq_st_open(path, &f, &err);
        CHECK_MSG(c[i].expect
                      ? (st != AQ_OK && strstr(err.msg, path) && strstr(err.msg, c[i].expect))
                      : st == AQ_OK,
                  "%s from disk: %s", c[i].name, err.msg);
        aq_st_close(f);
        unlink(path);
    }
    /* the valid sample parses to what it says */
    aq_st_file *f;
    aq_error err = {0};
    CHECK_OK(aq_st_open_memory(c[1].buf, c[1].len, "m", &f, &err), &err);
    CHECK(aq_st_count(f) == 3 && !strcmp(aq_st_tensor(f, 0)->name, "s") &&
          !strcmp(aq_st_tensor(f, 1)->name, "z") && !strcmp(aq_st_tensor(f, 2)->name, "u"));
    CHECK(aq_st_tensor(f, 0)->ndim == 0 && aq_st_tensor(f, 2)->shape[1] == 2);
    CHECK(aq_st_meta_count(f) == 2 && !strcmp(aq_st_meta_get(f, "format"), "pt"));
    aq_st_close(f);
    aq_malformed_free(c, n);

    CHECK(aq_st_open("/nonexistent/x.safetensors", &f, &err) == AQ_ERR_NOTFOUND &&
          strstr(err.msg, "/nonexistent/x.safetensors"));
    CHECK(aq_st_open(dir, &f, &err) == AQ_ERR_IO && strstr(err.msg, "not a regular file"));
}

static void test_writer_errors(const char *dir)
{
    aq_error err = {0};
    aq_st_writer *w;
    CHECK_OK(aq_st_writer_new(&w, &err), &err);
    int64_t sh[1] = {2}, neg[1] = {-1};
    float d[2] = {1, 2};
    CHECK_OK(aq_st_writer_add(w, "a", AQ_F32, 1, sh, d, &err), &err);
    CHECK(aq_st_writer_add(w, "a", AQ_F32, 1, sh, d, &err) == AQ_ERR_ARG &&
          strstr(err.msg, "duplicate"));
    CHECK(aq_st_writer_add(w, "__metadata__", AQ_F32, 1, sh, d, &err) == AQ_ERR_ARG);
    CHECK(aq_st_writer_add(w, "n", AQ_F32, 1, neg, d, &err) == AQ_ERR_ARG &&
          strstr(err.msg, "negative"));
    CHECK(aq_st_writer_add(w, "bad\xff", AQ_F32, 1, sh, d, &err) == AQ_ERR_ARG &&
          strstr(err.msg, "UTF-8"));
    CHECK(aq_st_writer_add(w, "nul", AQ_F32, 1, sh, NULL, &err) == AQ_ERR_ARG);
    CHECK(aq_st_writer_meta(w, "k", "\xc3", &err) == AQ_ERR_ARG);
    char path[512];
    snprintf(path, sizeof path, "%s/no/such/dir/x.safetensors", dir);
    CHECK(aq_st_writer_write(w, path, &err) == AQ_ERR_IO && strstr(err.msg, "no/such/dir"));
    snprintf(path, sizeof path, "%s/ok.safetensors", dir);
    CHECK_OK(aq_st_writer_write(w, path, &err), &err);
    aq_st_writer_free(w);
    aq_st_file *f = NULL;
    CHECK_OK(aq_st_open(path, &f, &err), &err);
    if (!f) return;
    CHECK(aq_st_count(f) == 1 && aq_st_meta_count(f) == 0); /* rejected adds left no trace */
    aq_st_close(f);
    unlink(path);
}

int main(void)
{
    char *dir = aq_test_tmpdir("st");
    test_dtypes();
    test_round_trip(dir);
    test_malformed(dir);
    test_writer_errors(dir);
    char p[600];
    snprintf(p, sizeof p, "%s/a.safetensors", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/b.safetensors", dir);
    unlink(p);
    rmdir(dir);
    free(dir);
    AQ_TEST_END();
}
