/* test_ggml_blocks.c — ggml's block formats (src/quant/ggml_blocks.h):
 * bytes and dequantized floats against an independent NumPy model of the
 * formats (tests/scripts/ggml_ref.py) on awkward rows, hand-computed blocks,
 * fp16 rounding cases, and pack/unpack round trips.
 *
 * Checked to fail, each by a one-line change of the library:
 *  - Q5 high bits read from the wrong end of qh ((qh >> (31 - j)) in
 *    unpack_32): the Q5_0 known answer, the Q5_0/Q5_1 round trips and the
 *    NumPy comparison of dequantized floats fail;
 *  - Q3_K's hmask bit taken as w % 8 instead of w / 32 (pack_k): the Q3_K
 *    round trips and the Q3_K bytes against NumPy fail;
 *  - Q4_K's search with 15 steps instead of 20: the Q4_K bytes of most
 *    kinds of rows differ from NumPy's. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/quant/ggml_blocks.h"
#include "ggml_rows.h"
#include "testutil.h"

enum { NRAND_BLOCKS = 64 };

static void test_table(void)
{
    static const struct {
        aq_ggml_type t;
        double bpw;
        int bytes;
    } want[] = {{AQ_GGML_Q4_0, 4.5, 18},     {AQ_GGML_Q4_1, 5.0, 20},  {AQ_GGML_Q5_0, 5.5, 22},
                {AQ_GGML_Q5_1, 6.0, 24},     {AQ_GGML_Q8_0, 8.5, 34},  {AQ_GGML_Q2_K, 2.625, 84},
                {AQ_GGML_Q3_K, 3.4375, 110}, {AQ_GGML_Q4_K, 4.5, 144}, {AQ_GGML_Q5_K, 5.5, 176},
                {AQ_GGML_Q6_K, 6.5625, 210}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const aq_ggml_format *f = aq_ggml_format_of(want[i].t);
        CHECK(f && f->bytes == want[i].bytes);
        CHECK(aq_ggml_bpw(want[i].t) == want[i].bpw); /* exact: k/8 and k/256 fractions */
        CHECK(f && aq_ggml_format_by_name(f->name) == f);
    }
    CHECK(aq_ggml_format_by_name("q4_k") == aq_ggml_format_of(AQ_GGML_Q4_K));
    CHECK(aq_ggml_format_by_name("Q4_K_M") == NULL && aq_ggml_format_of((aq_ggml_type)9) == NULL);
    size_t b = 0;
    aq_error err = {0};
    CHECK(aq_ggml_row_bytes(AQ_GGML_Q6_K, 4096, &b, &err) == AQ_OK && b == 16 * 210);
    /* stories260K's down_proj rows (172) fit no block size */
    CHECK(aq_ggml_row_bytes(AQ_GGML_Q4_0, 172, &b, &err) == AQ_ERR_SHAPE);
    CHECK(strstr(err.msg, "Q4_0") && strstr(err.msg, "172") && strstr(err.msg, "32"));
    CHECK(aq_ggml_row_bytes(AQ_GGML_Q4_K, 128, &b, &err) == AQ_ERR_SHAPE);
    CHECK(aq_ggml_row_bytes(AQ_GGML_Q8_0, 0, &b, &err) == AQ_ERR_SHAPE);
    float x[32] = {0};
    uint8_t out[34];
    x[5] = f32_of(0x7fc00000u);
    CHECK(aq_ggml_quantize_row(AQ_GGML_Q8_0, x, 32, out, &err) == AQ_ERR_NUMERIC);
    CHECK(strstr(err.msg, "weight 5") != NULL);
}

static void test_fp16(void)
{
    /* Hand-derived: 65504 is the largest fp16; 65520 is the tie between it
     * and 2^16 and rounds to even (inf); 2^-24 is the smallest subnormal,
     * 2^-25 ties to 0 (even), 3 * 2^-25 ties to 2 * 2^-24 (even); 1 + 2^-11
     * ties to 1.0, 1 + 3 * 2^-11 to 1 + 2^-9. */
    static const struct {
        uint32_t f;
        uint16_t h;
    } cases[] = {{0x3f800000u, 0x3c00}, {0xbf800000u, 0xbc00}, {0x477fe000u, 0x7bff},
                 {0x477ff000u, 0x7c00}, {0x477fefffu, 0x7bff}, {0x33800000u, 0x0001},
                 {0x33000000u, 0x0000}, {0x33c00000u, 0x0002}, {0x3f801000u, 0x3c00},
                 {0x3f803000u, 0x3c02}, {0x7f800000u, 0x7c00}, {0xff800000u, 0xfc00},
                 {0x7fc00000u, 0x7e00}, {0x38800000u, 0x0400}, {0x387ff000u, 0x0400},
                 {0x00000001u, 0x0000}, {0x80000000u, 0x8000}, {0x7f7fffffu, 0x7c00}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_MSG(aq_fp32_to_fp16(f32_of(cases[i].f)) == cases[i].h, "fp32 %08x -> %04x",
                  cases[i].f, aq_fp32_to_fp16(f32_of(cases[i].f)));
    /* Every non-NaN fp16 survives fp16 -> fp32 -> fp16, and the fp32 of
     * 0x3555 is 1/3's fp16 (0x3555 = 0.333251953125). */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) continue;
        bad += aq_fp32_to_fp16(aq_fp16_to_fp32((uint16_t)h)) != h;
    }
    CHECK(bad == 0);
    CHECK(aq_fp16_to_fp32(0x3555) == 0.333251953125f && aq_fp16_to_fp32(0x0001) == 0x1p-24f);
}

/* Hand-computed blocks of ramps (docs/QUANT_FORMATS.md has the layouts). */
static void test_known_answers(void)
{
    float x[256], y[256];
    uint8_t b[256];
    aq_error err = {0};
    /* Q4_0 of x_j = j - 16: max |x| is x_0 = -16, d = -16 / -8 = 2 (fp16
     * 0x4000), u_j = min(15, trunc(x_j / 2 + 8.5)) = min(15, (j + 1) / 2);
     * byte j = u_j | u_{j+16} << 4. */
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16);
    static const uint8_t q4[18] = {0x00, 0x40, 0x80, 0x91, 0x91, 0xa2, 0xa2, 0xb3, 0xb3,
                                   0xc4, 0xc4, 0xd5, 0xd5, 0xe6, 0xe6, 0xf7, 0xf7, 0xf8};
    CHECK_OK(aq_ggml_quantize_row(AQ_GGML_Q4_0, x, 32, b, &err), &err);
    CHECK(memcmp(b, q4, 18) == 0);
    CHECK_OK(aq_ggml_dequantize_row(AQ_GGML_Q4_0, q4, 32, y, &err), &err);
    CHECK(y[0] == -16.0f && y[1] == -14.0f && y[31] == 14.0f); /* 2 * (u - 8) */
    /* Q5_0 of the same ramp: d = -16 / -16 = 1 (0x3c00), u_j = j exactly; the
     * nibbles are j | j << 4 and qh has bit j set for j >= 16. */
    static uint8_t q5[22] = {0x00, 0x3c, 0x00, 0x00, 0xff, 0xff};
    for (int j = 0; j < 16; j++)
        q5[6 + j] = (uint8_t)(j | j << 4);
    CHECK_OK(aq_ggml_quantize_row(AQ_GGML_Q5_0, x, 32, b, &err), &err);
    CHECK(memcmp(b, q5, 22) == 0);
    CHECK_OK(aq_ggml_dequantize_row(AQ_GGML_Q5_0, q5, 32, y, &err), &err);
    CHECK(memcmp(x, y, 32 * sizeof(float)) == 0); /* the ramp is on the grid */
    /* Q6_K packing of q_w = w % 64 - 32 (u = w % 64): ql[l] = (l & 15) * 0x11
     * in both halves; qh[l] holds u >> 4 of weights l, l+32, l+64, l+96:
     * 0, 2, 0, 2 for l < 16 (0x88) and 1, 3, 1, 3 (0xdd) above. */
    aq_ggml_block blk;
    memset(&blk, 0, sizeof blk);
    for (int w = 0; w < 256; w++)
        blk.q[w] = (int8_t)(w % 64 - 32);
    for (int s = 0; s < 16; s++)
        blk.sc[s] = (int16_t)(s - 8);
    blk.d = 0x3c00;
    CHECK_OK(aq_ggml_pack(AQ_GGML_Q6_K, &blk, b, &err), &err);
    for (int l = 0; l < 32; l++) {
        CHECK(b[l] == (l & 15) * 0x11 && b[32 + l] == (l & 15) * 0x11 && b[64 + l] == b[l]);
        CHECK(b[128 + l] == (l < 16 ? 0x88 : 0xdd) && b[160 + l] == b[128 + l]);
    }
    CHECK(b[192] == 0xf8 && b[207] == 7 && b[208] == 0x00 && b[209] == 0x3c);
    /* Q4_K's 6-bit scales: sc = 60..63 twice, mn = 0, 9, ..., 63, worked out
     * byte by byte from the layout. */
    static const uint8_t k4[12] = {0xfc, 0xfd, 0xfe, 0xff, 0x80, 0x89,
                                   0xd2, 0xdb, 0x4c, 0xdd, 0x6e, 0xff};
    memset(&blk, 0, sizeof blk);
    for (int j = 0; j < 8; j++)
        blk.sc[j] = (int16_t)(60 + j % 4), blk.mn[j] = (uint8_t)(9 * j);
    CHECK_OK(aq_ggml_pack(AQ_GGML_Q4_K, &blk, b, &err), &err);
    CHECK(memcmp(b + 4, k4, 12) == 0);
}

/* Random bytes of every type: unpack then pack gives the bytes back (every
 * byte pattern is a valid block), and a random in-range logical block
 * survives pack then unpack. Out-of-range values are refused. */
static void test_round_trips(void)
{
    uint64_t rs = 0x1234567u;
    uint8_t b[256], b2[256];
    aq_ggml_block blk, blk2;
    aq_error err = {0};
    for (int i = 0; i < AQ_GGML_NTYPES; i++) {
        aq_ggml_type t = aq_ggml_type_at(i);
        const aq_ggml_format *f = aq_ggml_format_of(t);
        int bad = 0;
        for (int it = 0; it < 200; it++) {
            for (int k = 0; k < f->bytes; k++)
                b[k] = (uint8_t)(aq_test_urand(&rs) * 256);
            aq_ggml_unpack(t, b, &blk);
            bad += aq_ggml_pack(t, &blk, b2, &err) != AQ_OK || memcmp(b, b2, (size_t)f->bytes) != 0;
            memset(&blk, 0, sizeof blk);
            for (int w = 0; w < f->block; w++)
                blk.q[w] = (int8_t)(f->qmin + (int)(aq_test_urand(&rs) * (f->qmax - f->qmin + 1)));
            for (int s = 0; s < f->nsub; s++) {
                blk.sc[s] =
                    (int16_t)(f->scmin + (int)(aq_test_urand(&rs) * (f->scmax - f->scmin + 1)));
                blk.mn[s] = (uint8_t)(aq_test_urand(&rs) * (f->mnmax + 1));
            }
            blk.d = (uint16_t)(aq_test_urand(&rs) * 65536);
            if (f->has_m) blk.m = (uint16_t)(aq_test_urand(&rs) * 65536);
            bad += aq_ggml_pack(t, &blk, b, &err) != AQ_OK;
            aq_ggml_unpack(t, b, &blk2);
            bad += memcmp(&blk, &blk2, sizeof blk) != 0;
        }
        CHECK_MSG(bad == 0, "%s: %d round trips failed", f->name, bad);
        blk.q[f->block - 1] = (int8_t)(f->qmax + (f->qmax < 127));
        if (f->qmax == 127) blk.q[f->block - 1] = 0, blk.sc[0] = 200; /* Q8_0 has no sc: accepted */
        aq_status st = aq_ggml_pack(t, &blk, b, &err);
        CHECK(f->qmax == 127 ? st == AQ_OK : st == AQ_ERR_ARG && strstr(err.msg, f->name));
    }
}

static int run_reference(const char *dir, const float *rows, size_t nrows, const uint8_t *rnd,
                         size_t nrnd)
{
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/rows.f32", dir);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(rows, sizeof(float), nrows * N, fp) != nrows * N) return -1;
    fclose(fp);
    snprintf(path, sizeof path, "%s/rand.bin", dir);
    fp = fopen(path, "wb");
    if (!fp || fwrite(rnd, 1, nrnd, fp) != nrnd) return -1;
    fclose(fp);
    const char *src = getenv("AQ_SOURCE_DIR");
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/scripts/ggml_ref.py %s/rows.f32 %d %s %s",
             src ? src : ".", dir, N, path, dir);
    return system(cmd);
}

/* Our bytes and floats against the NumPy model's, type by type. */
static void compare_type(const char *dir, aq_ggml_type t, const float *rows, size_t nrows,
                         const uint8_t *rnd, size_t nrnd)
{
    const aq_ggml_format *f = aq_ggml_format_of(t);
    char path[512];
    size_t len, rowb = (size_t)N / (size_t)f->block * (size_t)f->bytes;
    aq_error err = {0};
    uint8_t *q = malloc(rowb * nrows);
    float *y = malloc(sizeof(float) * N * nrows);
    snprintf(path, sizeof path, "%s/%s.q", dir, f->name);
    unsigned char *ref = aq_test_read_file(path, &len);
    CHECK_MSG(ref && len == rowb * nrows, "%s: reference bytes", f->name);
    for (size_t r = 0; ref && r < nrows && len == rowb * nrows; r++) {
        CHECK_OK(aq_ggml_quantize_row(t, rows + r * N, N, q + r * rowb, &err), &err);
        CHECK_MSG(memcmp(q + r * rowb, ref + r * rowb, rowb) == 0,
                  "%s: bytes of row %zu (kind %zu)", f->name, r, r % NKINDS);
        CHECK_OK(aq_ggml_dequantize_row(t, q + r * rowb, N, y + r * N, &err), &err);
    }
    free(ref);
    snprintf(path, sizeof path, "%s/%s.deq", dir, f->name);
    ref = aq_test_read_file(path, &len);
    CHECK_MSG(ref && len == sizeof(float) * N * nrows && memcmp(ref, y, len) == 0,
              "%s: dequantized rows differ in some bit", f->name);
    free(ref);
    size_t nblk = nrnd / (size_t)f->bytes, nw = nblk * (size_t)f->block;
    float *yr = realloc(y, sizeof(float) * (nw > N * nrows ? nw : N * nrows));
    CHECK_OK(aq_ggml_dequantize_row(t, rnd, nw, yr, &err), &err);
    snprintf(path, sizeof path, "%s/%s.rdeq", dir, f->name);
    ref = aq_test_read_file(path, &len);
    CHECK_MSG(ref && len == sizeof(float) * nw && memcmp(ref, yr, len) == 0,
              "%s: dequantized random blocks differ in some bit", f->name);
    free(ref);
    free(yr);
    free(q);
}

/* The logical-form quantizer and pack_row give the bytes of quantize_row;
 * pack_row names the block holding an out-of-range value. */
static void test_row_blocks(void)
{
    float x[N];
    uint8_t a[N * 2], b[N * 2];
    aq_ggml_block blocks[N / 32];
    uint64_t rs = 77;
    aq_error err = {0};
    for (int kind = 0; kind < NKINDS; kind++) {
        fill_row(kind, x, &rs);
        for (int i = 0; i < AQ_GGML_NTYPES; i++) {
            aq_ggml_type t = aq_ggml_type_at(i);
            const aq_ggml_format *f = aq_ggml_format_of(t);
            size_t nb = (size_t)(N / f->block);
            CHECK_OK(aq_ggml_quantize_row(t, x, N, a, &err), &err);
            CHECK_OK(aq_ggml_quantize_row_blocks(t, x, N, blocks, &err), &err);
            CHECK_OK(aq_ggml_pack_row(t, blocks, nb, b, &err), &err);
            CHECK_MSG(memcmp(a, b, nb * (size_t)f->bytes) == 0, "%s kind %d", f->name, kind);
        }
    }
    CHECK_OK(aq_ggml_quantize_row_blocks(AQ_GGML_Q4_0, x, N, blocks, &err), &err);
    blocks[3].q[7] = 9; /* Q4_0's range is -8..7 */
    CHECK(aq_ggml_pack_row(AQ_GGML_Q4_0, blocks, N / 32, b, &err) == AQ_ERR_ARG);
    CHECK(strstr(err.msg, "block 3") && strstr(err.msg, "q[7] = 9"));
    x[300] = INFINITY;
    CHECK(aq_ggml_quantize_row_blocks(AQ_GGML_Q4_K, x, N, blocks, &err) == AQ_ERR_NUMERIC);
    CHECK(strstr(err.msg, "weight 300") != NULL);
}

static int test_against_numpy(void)
{
    if (!aq_test_have_numpy()) return 0;
    enum { NROWS = 2 * NKINDS };
    float *rows = malloc(sizeof(float) * N * NROWS);
    uint64_t rs = 0xfeedbeefu;
    for (int r = 0; r < NROWS; r++)
        fill_row(r % NKINDS, rows + (size_t)r * N, &rs);
    size_t nrnd = (size_t)NRAND_BLOCKS * 210;
    uint8_t *rnd = malloc(nrnd);
    for (size_t k = 0; k < nrnd; k++)
        rnd[k] = (uint8_t)(aq_test_urand(&rs) * 256);
    /* Random fp16 fields include inf and NaN scales: their products are
     * compared bit for bit too (the same IEEE operations on both sides). */
    char *dir = aq_test_tmpdir("ggml_blocks");
    int rc = run_reference(dir, rows, NROWS, rnd, nrnd);
    CHECK_MSG(rc == 0, "ggml_ref.py failed (%d)", rc);
    if (rc == 0) {
        for (int i = 0; i < AQ_GGML_NTYPES; i++)
            compare_type(dir, aq_ggml_type_at(i), rows, NROWS, rnd, nrnd);
        char path[512];
        size_t len;
        snprintf(path, sizeof path, "%s/fp16.bits", dir);
        unsigned char *h = aq_test_read_file(path, &len);
        int bad = !h || len != 2 * (size_t)N * NROWS;
        for (size_t k = 0; !bad && k < (size_t)N * NROWS; k++)
            bad += aq_fp32_to_fp16(rows[k]) != (uint16_t)(h[2 * k] | h[2 * k + 1] << 8);
        CHECK_MSG(bad == 0, "fp32 -> fp16 differs from NumPy's");
        free(h);
    }
    if (aq_test_failures == 0) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
    }
    free(dir);
    free(rnd);
    free(rows);
    return 1;
}

int main(void)
{
    test_table();
    test_fp16();
    test_known_answers();
    test_round_trips();
    test_row_blocks();
    if (!test_against_numpy() && aq_test_failures == 0) {
        /* The independent reference is the point of this test: no pass without it. */
        printf("SKIP: /usr/bin/python3 with numpy is not available (the other checks passed)\n");
        return 77;
    }
    AQ_TEST_END();
}
