/* test_ggml_blocks_llamacpp.c — our block formats against ggml's own C code:
 * quantize_row_*_ref and dequantize_row_* of the llama.cpp source that
 * node-llama-cpp bundles, compiled at test time into a shared library by
 * tests/scripts/ggml_cbuild.sh (never part of this repository), whose path
 * is argv[1]. Bytes and floats must be identical on every row and block.
 * Exits 77 (skipped) with a message when the library is not given.
 * Checked to fail: Q4_K's search with 15 steps instead of 20 (ggml_quantize.c)
 * makes 134 of the 640 rows' Q4_K bytes differ from ggml's. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/quant/ggml_blocks.h"
#include "ggml_rows.h"
#include "testutil.h"

typedef void (*quant_fn)(const float *, void *, int64_t);
typedef void (*deq_fn)(const void *, float *, int64_t);

enum { NROWS = 40 * NKINDS, NRAND = 4000 };

static const char *lower_name(const char *name, char *buf)
{
    /* ggml's symbols: q4_0 ... q8_0 lower case, K-quants keep the K. */
    for (int i = 0; (buf[i] = name[i]); i++)
        if (name[i] != 'K')
            buf[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    return buf;
}

static void compare_type(void *lib, aq_ggml_type t, const float *rows, const uint8_t *rnd)
{
    const aq_ggml_format *f = aq_ggml_format_of(t);
    char sym[64], low[8];
    snprintf(sym, sizeof sym, "quantize_row_%s_ref", lower_name(f->name, low));
    quant_fn q = (quant_fn)(uintptr_t)dlsym(lib, sym);
    snprintf(sym, sizeof sym, "dequantize_row_%s", low);
    deq_fn dq = (deq_fn)(uintptr_t)dlsym(lib, sym);
    CHECK_MSG(q && dq, "%s: ggml's functions not found", f->name);
    if (!q || !dq) return;
    size_t rowb = (size_t)N / (size_t)f->block * (size_t)f->bytes;
    uint8_t *ours = malloc(rowb), *theirs = malloc(rowb);
    float *y1 = malloc(sizeof(float) * N), *y2 = malloc(sizeof(float) * N);
    aq_error err = {0};
    int bad_q = 0, bad_d = 0;
    for (int r = 0; r < NROWS; r++) {
        const float *x = rows + (size_t)r * N;
        q(x, theirs, N);
        CHECK_OK(aq_ggml_quantize_row(t, x, N, ours, &err), &err);
        if (memcmp(ours, theirs, rowb) != 0 && bad_q++ < 3)
            fprintf(stderr, "%s: bytes of row %d (kind %d) differ from ggml's\n", f->name, r,
                    r % NKINDS);
        dq(theirs, y1, N);
        CHECK_OK(aq_ggml_dequantize_row(t, theirs, N, y2, &err), &err);
        bad_d += memcmp(y1, y2, sizeof(float) * N) != 0;
    }
    for (int r = 0; r < NRAND; r++) { /* random bytes: every field pattern */
        const uint8_t *b = rnd + (size_t)r * 2 * 210 % (NRAND * 2 * 210 - rowb);
        dq(b, y1, N);
        CHECK_OK(aq_ggml_dequantize_row(t, b, N, y2, &err), &err);
        bad_d += memcmp(y1, y2, sizeof(float) * N) != 0;
    }
    CHECK_MSG(bad_q == 0, "%s: %d of %d rows quantize differently from ggml", f->name, bad_q,
              NROWS);
    CHECK_MSG(bad_d == 0, "%s: %d dequantized rows differ from ggml's", f->name, bad_d);
    free(ours), free(theirs), free(y1), free(y2);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        printf("SKIP: no ggml library given (run through tests/scripts/ggml_cbuild.sh)\n");
        return 77;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
        return 1;
    }
    float *rows = malloc(sizeof(float) * N * NROWS);
    uint8_t *rnd = malloc((size_t)NRAND * 2 * 210);
    uint64_t rs = 0xc0ffee11u;
    for (int r = 0; r < NROWS; r++)
        fill_row(r % NKINDS, rows + (size_t)r * N, &rs);
    for (size_t k = 0; k < (size_t)NRAND * 2 * 210; k++)
        rnd[k] = (uint8_t)(aq_test_urand(&rs) * 256);
    for (int i = 0; i < AQ_GGML_NTYPES; i++)
        compare_type(lib, aq_ggml_type_at(i), rows, rnd);
    printf("compared %d rows x %d weights and %d random rows with ggml, %d types\n", NROWS, N,
           NRAND, AQ_GGML_NTYPES);
    free(rows), free(rnd);
    dlclose(lib);
    AQ_TEST_END();
}
