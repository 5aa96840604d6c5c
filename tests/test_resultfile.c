/* test_resultfile.c — result files (io/resultfile.h) and fingerprints
 * (io/fingerprint.h): known-answer hashes, round trip, deterministic bytes, an
 * independent byte-level decode of the layout documented in docs/WORKDIR.md
 * (written here from the spec, with zlib directly), and detection of every
 * kind of corruption with a message that names the file and the fault. */
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "../io/fingerprint.h"
#include "../io/resultfile.h"
#include "testutil.h"

static void spit(const char *path, const unsigned char *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(b, 1, len, f);
    fclose(f);
}

/* Known answers: FNV-1a 64 ("a" -> af63dc4c8601ec8c, "" -> offset basis),
 * CRC-32 ("123456789" -> cbf43926), Adler-32 ("Wikipedia" -> 11e60398). */
static void test_fingerprint(const char *dir)
{
    aq_fp_builder b;
    aq_fp_init(&b);
    aq_fingerprint e = aq_fp_final(&b);
    CHECK(e.h[0] == 0xcbf29ce484222325ULL && e.h[1] == 0x0000000000000001ULL);
    aq_fp_update(&b, "a", 1);
    CHECK(aq_fp_final(&b).h[0] == 0xaf63dc4c8601ec8cULL);
    aq_fp_init(&b);
    aq_fp_update(&b, "123456789", 9);
    CHECK((aq_fp_final(&b).h[1] >> 32) == 0xcbf43926ULL);
    aq_fp_init(&b);
    aq_fp_update(&b, "Wikipedia", 9);
    CHECK((aq_fp_final(&b).h[1] & 0xffffffffULL) == 0x11e60398ULL);

    /* Streaming over a file (> one 64 KiB block) equals hashing it in one go. */
    size_t n = 200000;
    unsigned char *data = malloc(n);
    for (size_t i = 0; i < n; i++) data[i] = (unsigned char)(i * 2654435761u >> 13);
    char path[512];
    snprintf(path, sizeof path, "%s/blob.bin", dir);
    spit(path, data, n);
    aq_fp_init(&b);
    aq_fp_update(&b, data, n);
    aq_fingerprint whole = aq_fp_final(&b), file;
    uint64_t size = 0;
    aq_error err = {0};
    CHECK_OK(aq_fp_file(path, &file, &size, &err), &err);
    CHECK(aq_fp_equal(&whole, &file) && size == n);
    aq_error e2 = {0};
    CHECK(aq_fp_file("/nonexistent/model.bin", &file, &size, &e2) == AQ_ERR_IO);
    CHECK(strstr(e2.msg, "/nonexistent/model.bin") != NULL);

    /* Field framing: the same bytes split differently between fields differ. */
    aq_fp_builder x, y;
    aq_fp_init(&x);
    aq_fp_init(&y);
    aq_fp_add_str(&x, "k", "ab");
    aq_fp_add_str(&x, "k", "c");
    aq_fp_add_str(&y, "k", "a");
    aq_fp_add_str(&y, "k", "bc");
    aq_fingerprint fx = aq_fp_final(&x), fy = aq_fp_final(&y);
    CHECK(!aq_fp_equal(&fx, &fy));
    /* Framing bytes, spelled out from the spec: u8 type 2, u32 key len, key, u64 len, value. */
    unsigned char frame[] = {2, 1, 0, 0, 0, 'k', 2, 0, 0, 0, 0, 0, 0, 0, 'a', 'b'};
    aq_fp_builder z;
    aq_fp_init(&z);
    aq_fp_update(&z, frame, sizeof frame);
    aq_fp_init(&x);
    aq_fp_add_str(&x, "k", "ab");
    fx = aq_fp_final(&x);
    aq_fingerprint fz = aq_fp_final(&z);
    CHECK(aq_fp_equal(&fx, &fz));
    char hex[33];
    aq_fp_hex(&e, hex);
    CHECK(!strcmp(hex, "cbf29ce4842223250000000000000001"));
    free(data);
}

typedef struct sample {
    float qw[6 * 5];
    float scale[6];
    int8_t zero[6];
    float bias[6];
    aq_tensor_view views[4];
    aq_result_desc d;
} sample;

static void make_sample(sample *s, const char *layer, const char *option)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < 30; i++) s->qw[i] = (float)((i * 7) % 16) - 8.0f;
    for (int i = 0; i < 6; i++) {
        s->scale[i] = 0.01f * (float)(i + 1);
        s->zero[i] = (int8_t)(i - 3);
        s->bias[i] = -0.5f + 0.25f * (float)i;
    }
    s->views[0] = (aq_tensor_view){.name = "qweight", .dtype = AQ_F32, .ndim = 2, .shape = {6, 5},
                                   .data = s->qw, .nbytes = sizeof s->qw};
    s->views[1] = (aq_tensor_view){.name = "w_scale", .dtype = AQ_F32, .ndim = 1, .shape = {6},
                                   .data = s->scale, .nbytes = sizeof s->scale};
    s->views[2] = (aq_tensor_view){.name = "w_zero", .dtype = AQ_I8, .ndim = 1, .shape = {6},
                                   .data = s->zero, .nbytes = sizeof s->zero};
    s->views[3] = (aq_tensor_view){.name = "bias", .dtype = AQ_F32, .ndim = 1, .shape = {6},
                                   .data = s->bias, .nbytes = sizeof s->bias};
    s->d.layer = layer;
    s->d.option = option;
    aq_fp_builder b;
    aq_fp_init(&b);
    aq_fp_add_str(&b, "layer", layer);
    aq_fp_add_str(&b, "option", option);
    aq_fp_add_u64(&b, "seed", 42);
    s->d.fp = aq_fp_final(&b);
    s->d.row = (aq_loss_row){.loss = 0.0123, .loss_rtn = 0.05, .loss_gptq = 0.02, .loss_init = 0.021,
                             .seconds = 1.5, .params = 30, .macs = 30, .size_bits = 30 * 4 + 6 * 32 + 6 * 8,
                             .iterations = 200, .w_bits = 4, .a_bits = 8};
    s->d.n_tensors = 4;
    s->d.tensors = s->views;
}

static uint32_t le32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t le64(const unsigned char *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

/* Decode the file by hand from the documented layout, with zlib directly. */
static void independent_decode(const unsigned char *b, size_t len, const sample *s)
{
    CHECK(len > 64 && !memcmp(b, "AQRESULT", 8) && le32(b + 8) == 1);
    uint32_t H = le32(b + 12);
    size_t L = (size_t)(b[32] | b[33] << 8), O = (size_t)(b[34] | b[35] << 8);
    CHECK(L == strlen(s->d.layer) && O == strlen(s->d.option) && H == 64 + L + O + 4);
    CHECK(!memcmp(b + 64, s->d.layer, L) && !memcmp(b + 64 + L, s->d.option, O));
    CHECK(le64(b + 16) == s->d.fp.h[0] && le64(b + 24) == s->d.fp.h[1]);
    CHECK(le32(b + 36) == 4 && le32(b + 60) == 0);
    uint64_t C = le64(b + 40), R = le64(b + 48);
    CHECK(C == len - H);
    CHECK(le32(b + H - 4) == (uint32_t)crc32(0, b, H - 4));
    CHECK(le32(b + 56) == (uint32_t)crc32(0, b + H, (uInt)C));
    unsigned char *raw = malloc(R);
    uLongf got = (uLongf)R;
    CHECK(uncompress(raw, &got, b + H, (uLong)C) == Z_OK && got == R);
    double loss;
    memcpy(&loss, raw, 8);
    CHECK(loss == 0.0123);
    CHECK(le64(raw + 40) == 30 && le64(raw + 64) == 200 && le32(raw + 72) == 4 && le32(raw + 76) == 8);
    /* First tensor record: u16 name len, name, NUL, u8 dtype (F32 = 1), u8 ndim, dims, u64 nbytes, data. */
    const unsigned char *p = raw + 80;
    CHECK(p[0] == 7 && p[1] == 0 && !memcmp(p + 2, "qweight", 8) && p[10] == 1 && p[11] == 2);
    CHECK(le64(p + 12) == 6 && le64(p + 20) == 5 && le64(p + 28) == 120);
    CHECK(!memcmp(p + 36, s->qw, 120));
    /* Total raw size from the spec: 80 + sum of records. */
    size_t want = 80 + (2 + 7 + 1 + 2 + 16 + 8 + 120) + (2 + 7 + 1 + 2 + 8 + 8 + 24) + (2 + 6 + 1 + 2 + 8 + 8 + 6) +
                  (2 + 4 + 1 + 2 + 8 + 8 + 24);
    CHECK(R == want);
    free(raw);
}

static void test_round_trip(const char *dir)
{
    sample s;
    make_sample(&s, "layers.0.attention.wq", "w4a8");
    aq_error err = {0};
    char *path = NULL;
    CHECK_OK(aq_result_path(dir, s.d.layer, s.d.option, &path, &err), &err);
    char want[600];
    snprintf(want, sizeof want, "%s/results/layers.0.attention.wq--w4a8.aqr", dir);
    CHECK(!strcmp(path, want));
    char rdir[520];
    snprintf(rdir, sizeof rdir, "%s/results", dir);
    mkdir(rdir, 0777);
    CHECK_OK(aq_result_write(path, &s.d, &err), &err);

    aq_result *r = NULL;
    CHECK_OK(aq_result_read(path, &s.d.fp, &r, &err), &err);
    if (r) {
        CHECK(!strcmp(r->layer, s.d.layer) && !strcmp(r->option, s.d.option));
        CHECK(!memcmp(&r->row, &s.d.row, sizeof r->row));
        CHECK(r->n_tensors == 4);
        const aq_tensor_view *v = aq_result_find(r, "w_zero");
        CHECK(v && v->dtype == AQ_I8 && v->ndim == 1 && v->shape[0] == 6 && !memcmp(v->data, s.zero, 6));
        v = aq_result_find(r, "qweight");
        CHECK(v && v->ndim == 2 && v->shape[1] == 5 && !memcmp(v->data, s.qw, sizeof s.qw));
        CHECK(aq_result_find(r, "a_scale") == NULL);
        aq_result_free(r);
    }
    aq_loss_row row;
    CHECK_OK(aq_result_check(path, "layers.0.attention.wq", "w4a8", &s.d.fp, &row, &err), &err);
    CHECK(row.size_bits == s.d.row.size_bits);
    aq_error e2 = {0};
    CHECK(aq_result_check(path, "layers.0.attention.wk", "w4a8", &s.d.fp, &row, &e2) == AQ_ERR_FORMAT);
    CHECK(strstr(e2.msg, "layers.0.attention.wk") != NULL);

    /* Deterministic bytes: encode twice, and the file equals the encoding. */
    unsigned char *b1, *b2;
    size_t n1 = 0, n2 = 0, nf = 0;
    CHECK_OK(aq_result_encode(&s.d, &b1, &n1, &err), &err);
    CHECK_OK(aq_result_encode(&s.d, &b2, &n2, &err), &err);
    unsigned char *bf = aq_test_read_file(path, &nf);
    CHECK(n1 == n2 && !memcmp(b1, b2, n1) && bf && nf == n1 && !memcmp(bf, b1, n1));
    independent_decode(bf, nf, &s);
    free(b1);
    free(b2);
    free(bf);

    /* No tensors at all is valid (a loss-only row); escaping of odd names. */
    s.d.n_tensors = 0;
    s.d.layer = "conv/1 a";
    char *p2 = NULL;
    CHECK_OK(aq_result_path(dir, s.d.layer, "w8a16", &p2, &err), &err);
    CHECK(p2 && strstr(p2, "/results/conv%2F1%20a--w8a16.aqr") != NULL);
    CHECK_OK(aq_result_write(p2, &s.d, &err), &err);
    CHECK_OK(aq_result_read(p2, NULL, &r, &err), &err);
    if (r) CHECK(r->n_tensors == 0 && !strcmp(r->layer, "conv/1 a"));
    aq_result_free(r);
    free(p2);
    free(path);
}

/* Write a damaged copy and expect a specific error mentioning the file. */
static void expect_bad(const char *dir, const char *tag, const unsigned char *b, size_t len,
                       const aq_fingerprint *fp, aq_status code, const char *needle)
{
    char path[600];
    snprintf(path, sizeof path, "%s/bad-%s.aqr", dir, tag);
    spit(path, b, len);
    aq_result *r = NULL;
    aq_error err = {0};
    aq_status st = aq_result_read(path, fp, &r, &err);
    CHECK_MSG(st == code, "%s: status %d (%s), wanted %d", tag, st, err.msg, code);
    CHECK_MSG(r == NULL, "%s: a result was returned", tag);
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, needle), "%s: message '%s' lacks '%s'", tag,
              err.msg, needle);
    printf("  %-14s -> %s\n", tag, err.msg);
}

static void test_corruption(const char *dir)
{
    sample s;
    make_sample(&s, "layers.3.feed_forward.w2", "w3a16");
    unsigned char *b;
    size_t n = 0;
    aq_error err = {0};
    CHECK_OK(aq_result_encode(&s.d, &b, &n, &err), &err);
    unsigned char *c = malloc(n + 8);
    size_t H = 64 + strlen(s.d.layer) + strlen(s.d.option) + 4;

    expect_bad(dir, "truncated-hdr", b, 40, &s.d.fp, AQ_ERR_FORMAT, "truncated");
    expect_bad(dir, "truncated", b, n - 5, &s.d.fp, AQ_ERR_FORMAT, "truncated");
    expect_bad(dir, "empty", b, 0, &s.d.fp, AQ_ERR_FORMAT, "truncated");
    memcpy(c, b, n);
    memset(c + n, 0, 8);
    expect_bad(dir, "trailing", c, n + 8, &s.d.fp, AQ_ERR_FORMAT, "trailing");
    memcpy(c, b, n);
    c[1] ^= 0x20;
    expect_bad(dir, "magic", c, n, &s.d.fp, AQ_ERR_FORMAT, "magic");
    memcpy(c, b, n);
    c[8] = 2;
    expect_bad(dir, "version", c, n, &s.d.fp, AQ_ERR_FORMAT, "version 2");
    /* Every single-byte flip in the header after the version is caught. */
    int missed = 0;
    for (size_t i = 12; i < H; i++) {
        memcpy(c, b, n);
        c[i] ^= 0x01;
        aq_result *r = NULL;
        aq_error e = {0};
        if (aq_result_decode("x", c, n, &s.d.fp, &r, &e) == AQ_OK) missed++;
        aq_result_free(r);
    }
    CHECK_MSG(missed == 0, "%d header byte flips were not detected", missed);
    memcpy(c, b, n);
    c[70] ^= 0x40; /* inside the layer name */
    expect_bad(dir, "header-flip", c, n, &s.d.fp, AQ_ERR_FORMAT, "header CRC mismatch");
    /* Every single-byte flip in the payload is caught. */
    missed = 0;
    for (size_t i = H; i < n; i++) {
        memcpy(c, b, n);
        c[i] ^= 0x80;
        aq_result *r = NULL;
        aq_error e = {0};
        if (aq_result_decode("x", c, n, &s.d.fp, &r, &e) == AQ_OK) missed++;
        aq_result_free(r);
    }
    CHECK_MSG(missed == 0, "%d payload byte flips were not detected", missed);
    memcpy(c, b, n);
    c[H + (n - H) / 2] ^= 0x01;
    expect_bad(dir, "payload-flip", c, n, &s.d.fp, AQ_ERR_FORMAT, "payload CRC mismatch");
    /* A NUL inside the key, with a recomputed (valid) header CRC. */
    memcpy(c, b, n);
    c[66] = 0;
    uint32_t hc = (uint32_t)crc32(0, c, (uInt)(H - 4));
    for (int i = 0; i < 4; i++) c[H - 4 + i] = (unsigned char)(hc >> (8 * i));
    expect_bad(dir, "nul-key", c, n, &s.d.fp, AQ_ERR_FORMAT, "NUL byte");
    aq_fingerprint other = s.d.fp;
    other.h[1] ^= 1;
    expect_bad(dir, "fingerprint", b, n, &other, AQ_ERR_ARG, "fingerprint mismatch");

    aq_result *r = NULL;
    aq_error e = {0};
    CHECK(aq_result_read("/nonexistent-dir/x.aqr", NULL, &r, &e) == AQ_ERR_NOTFOUND);
    CHECK(strstr(e.msg, "/nonexistent-dir/x.aqr") != NULL);
    free(c);
    free(b);
}

/* A file around a hand-made raw payload, with valid header and CRCs, built
 * here from the documented layout: reaches the payload parser. */
static unsigned char *wrap_payload(const unsigned char *raw, size_t rlen, uint32_t count, size_t *len)
{
    uLongf clen = compressBound((uLong)rlen);
    size_t H = 64 + 1 + 4 + 4;
    unsigned char *b = calloc(H + clen, 1);
    compress2(b + H, &clen, raw, (uLong)rlen, 6);
    memcpy(b, "AQRESULT", 8);
    uint64_t fields[] = {1, H};
    for (int i = 0; i < 4; i++) b[8 + i] = (unsigned char)(fields[0] >> (8 * i)), b[12 + i] = (unsigned char)(fields[1] >> (8 * i));
    b[32] = 1, b[34] = 4;
    for (int i = 0; i < 4; i++) b[36 + i] = (unsigned char)(count >> (8 * i));
    for (int i = 0; i < 8; i++) b[40 + i] = (unsigned char)((uint64_t)clen >> (8 * i)), b[48 + i] = (unsigned char)((uint64_t)rlen >> (8 * i));
    uint32_t pc = (uint32_t)crc32(0, b + H, (uInt)clen);
    for (int i = 0; i < 4; i++) b[56 + i] = (unsigned char)(pc >> (8 * i));
    memcpy(b + 64, "L", 1);
    memcpy(b + 65, "w4a8", 4);
    uint32_t hc = (uint32_t)crc32(0, b, (uInt)(H - 4));
    for (int i = 0; i < 4; i++) b[H - 4 + i] = (unsigned char)(hc >> (8 * i));
    *len = H + clen;
    return b;
}

/* Append a tensor record: name, dtype, 1-d shape, nbytes, data bytes (zeros). */
static size_t add_record(unsigned char *p, const char *name, size_t nlen, int dtype, uint64_t dim, uint64_t nbytes,
                         size_t data)
{
    size_t o = 0;
    p[o++] = (unsigned char)nlen, p[o++] = 0;
    memcpy(p + o, name, nlen), o += nlen;
    p[o++] = 0, p[o++] = (unsigned char)dtype, p[o++] = 1;
    for (int i = 0; i < 8; i++) p[o + i] = (unsigned char)(dim >> (8 * i)), p[o + 8 + i] = (unsigned char)(nbytes >> (8 * i));
    o += 16;
    memset(p + o, 0, data);
    return o + data;
}

static void test_bad_payload(const char *dir)
{
    unsigned char raw[512];
    double loss = 0.5;
    size_t n, len;
    memset(raw, 0, 80);
    memcpy(raw, &loss, 8);
    struct {
        const char *tag, *needle;
        aq_status code;
    } cases[] = {
        {"valid", "", AQ_OK},
        {"dup-name", "appears twice", AQ_ERR_FORMAT},
        {"past-end", "runs past the payload end", AQ_ERR_FORMAT},
        {"bad-dtype", "bad dtype code 12", AQ_ERR_FORMAT},
        {"nbytes", "bytes stored, its shape needs", AQ_ERR_FORMAT},
        {"trailing", "unexpected bytes after the last tensor", AQ_ERR_FORMAT},
        {"nul-name", "malformed name", AQ_ERR_FORMAT},
        {"nan-loss", "not finite", AQ_ERR_NUMERIC},
        {"count", "tensor count", AQ_ERR_FORMAT},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        n = 80;
        uint32_t count = 2;
        n += add_record(raw + n, "qw", 2, 1, 3, 12, 12);
        switch (k) {
        case 1: n += add_record(raw + n, "qw", 2, 1, 3, 12, 12); break;
        case 2: n += add_record(raw + n, "zz", 2, 1, 3, 12, 5); break;
        case 3: n += add_record(raw + n, "zz", 2, 12, 3, 12, 12); break;
        case 4: n += add_record(raw + n, "zz", 2, 1, 3, 11, 11); break;
        case 5: /* one byte after the last tensor */
            n += add_record(raw + n, "zz", 2, 1, 3, 12, 12);
            raw[n++] = 7;
            break;
        case 6: n += add_record(raw + n, "z\0z", 3, 1, 3, 12, 12); break;
        case 7: n += add_record(raw + n, "zz", 2, 1, 3, 12, 12); memcpy(raw, &(double){NAN}, 8); break;
        case 8: n += add_record(raw + n, "zz", 2, 1, 3, 12, 12); count = 1000; break;
        default: n += add_record(raw + n, "zz", 2, 1, 3, 12, 12); break;
        }
        unsigned char *b = wrap_payload(raw, n, count, &len);
        if (cases[k].code == AQ_OK) {
            aq_result *r = NULL;
            aq_error e = {0};
            CHECK_OK(aq_result_decode("hand-made", b, len, NULL, &r, &e), &e);
            if (r) CHECK(r->n_tensors == 2 && r->row.loss == 0.5 && aq_result_find(r, "zz"));
            aq_result_free(r);
        } else {
            expect_bad(dir, cases[k].tag, b, len, NULL, cases[k].code, cases[k].needle);
        }
        memcpy(raw, &loss, 8);
        free(b);
    }
}

/* A file written by Python from the documented layout (seed of the fuzzer,
 * see tests/fuzz/seeds/fuzz_resultfile/README) decodes to its known values. */
static void test_python_written(void)
{
    const char *src = getenv("AQ_SOURCE_DIR");
    if (!src) {
        printf("  (AQ_SOURCE_DIR unset: skipping the Python-written file)\n");
        return;
    }
    char path[600];
    snprintf(path, sizeof path, "%s/tests/fuzz/seeds/fuzz_resultfile/file0", src);
    size_t n = 0;
    unsigned char *b = aq_test_read_file(path, &n);
    CHECK_MSG(b && n > 1, "cannot read %s", path);
    if (!b || n < 2) return;
    aq_result *r = NULL;
    aq_error e = {0};
    aq_fingerprint fp = {{0x1111, 0x2222}};
    CHECK_OK(aq_result_decode(path, b + 1, n - 1, &fp, &r, &e), &e);
    if (r) {
        CHECK(!strcmp(r->layer, "layers.0.attention.wq") && !strcmp(r->option, "w4a8"));
        CHECK(r->row.loss == 0.0123 && r->row.size_bits == 60 && r->row.iterations == 100 && isnan(r->row.loss_init));
        CHECK(r->row.w_bits == 4 && r->row.a_bits == 8 && r->n_tensors == 3);
        const aq_tensor_view *q = aq_result_find(r, "qweight"), *z = aq_result_find(r, "w_zero"),
                             *sc = aq_result_find(r, "s");
        CHECK(q && q->dtype == AQ_F32 && q->ndim == 2 && q->shape[0] == 3 && q->shape[1] == 4 && q->nbytes == 48);
        if (q) CHECK(((const unsigned char *)q->data)[47] == 47);
        CHECK(z && z->dtype == AQ_I8 && !memcmp(z->data, "\x01\x02\x03", 3));
        double sv = 0;
        if (sc) memcpy(&sv, sc->data, 8);
        CHECK(sc && sc->ndim == 0 && sc->dtype == AQ_F64 && sv == 2.5);
        /* And our encoder writes exactly the bytes Python wrote. */
        aq_result_desc d = {.layer = r->layer, .option = r->option, .fp = r->fp, .row = r->row,
                            .n_tensors = r->n_tensors, .tensors = r->tensors};
        unsigned char *again = NULL;
        size_t n2 = 0;
        CHECK_OK(aq_result_encode(&d, &again, &n2, &e), &e);
        CHECK_MSG(again && n2 == n - 1 && !memcmp(again, b + 1, n2), "re-encoding differs from the Python bytes");
        free(again);
    }
    aq_result_free(r);
    free(b);
}

static void test_bad_input(void)
{
    sample s;
    make_sample(&s, "l", "w4a8");
    unsigned char *b = NULL;
    size_t n = 0;
    aq_error e = {0};
    s.d.row.loss = NAN;
    CHECK(aq_result_encode(&s.d, &b, &n, &e) == AQ_ERR_NUMERIC);
    s.d.row.loss = 1;
    s.views[1].nbytes = 20; /* shape says 24 */
    CHECK(aq_result_encode(&s.d, &b, &n, &e) == AQ_ERR_SHAPE && strstr(e.msg, "w_scale"));
    s.views[1].nbytes = 24;
    s.views[2].name = "qweight";
    CHECK(aq_result_encode(&s.d, &b, &n, &e) == AQ_ERR_ARG && strstr(e.msg, "twice"));
    s.views[2].name = "w_zero";
    s.d.option = "";
    CHECK(aq_result_encode(&s.d, &b, &n, &e) == AQ_ERR_ARG);
    CHECK(b == NULL);
    s.d.option = "w4a8";
    /* A write into a missing directory fails with I/O and leaves nothing. */
    CHECK(aq_result_write("/nonexistent-dir/r.aqr", &s.d, &e) == AQ_ERR_IO);
}

int main(void)
{
    char *dir = aq_test_tmpdir("resultfile");
    test_fingerprint(dir);
    test_round_trip(dir);
    test_corruption(dir);
    test_bad_payload(dir);
    test_python_written();
    test_bad_input();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (!aq_test_failures && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    free(dir);
    AQ_TEST_END();
}
