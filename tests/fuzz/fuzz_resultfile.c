/* fuzz_resultfile.c — libFuzzer harness for the result file reader
 * (io/resultfile.c). The first input byte picks how the rest is used:
 *   0: the bytes as a file, as they are;
 *   1: the bytes as a file with both CRCs recomputed (so mutations reach the
 *      checks behind the CRCs);
 *   2: the bytes as a raw payload, wrapped in a valid header and compressed
 *      (so mutations reach the payload parser).
 * Any input must be rejected with a message, or decode to a self-consistent
 * result: tensor views inside the payload, nbytes = numel × dtype size,
 * finite loss; and re-encoding it must give a file that decodes to the same
 * result (in mode 2, the very same bytes). A violated invariant aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "fuzz_common.h"
#include "../../io/resultfile.h"

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

/* Recompute the CRCs where the header's own sizes allow it. */
static void fix_crcs(uint8_t *b, size_t n)
{
    if (n < 64) return;
    size_t H = get32(b + 12);
    if (H < 68 || H > n) return;
    put32(b + 56, (uint32_t)crc32(0, b + H, (uInt)(n - H)));
    put32(b + H - 4, (uint32_t)crc32(0, b, (uInt)(H - 4)));
}

static uint8_t *wrap(const uint8_t *raw, size_t rlen, size_t *len)
{
    uLongf clen = compressBound((uLong)rlen);
    size_t H = 64 + 1 + 4 + 4;
    uint8_t *b = calloc(H + clen, 1);
    if (!b || compress2(b + H, &clen, raw, (uLong)rlen, AQ_RESULT_ZLEVEL) != Z_OK) {
        free(b);
        return NULL;
    }
    memcpy(b, AQ_RESULT_MAGIC, 8);
    put32(b + 8, AQ_RESULT_VERSION);
    put32(b + 12, (uint32_t)H);
    b[32] = 1, b[34] = 4;
    /* tensor count: the payload's last byte, so the fuzzer controls it */
    put32(b + 36, rlen ? raw[rlen - 1] % 8 : 0);
    put64(b + 40, clen);
    put64(b + 48, rlen);
    memcpy(b + 64, "L", 1);
    memcpy(b + 65, "w4a8", 4);
    *len = H + clen;
    fix_crcs(b, *len);
    return b;
}

static void check_result(const aq_result *r, const uint8_t *file, size_t len, int exact)
{
    REQUIRE(r->layer[0] && r->option[0]);
    REQUIRE(r->row.loss == r->row.loss && r->row.loss - r->row.loss == 0);
    for (size_t i = 0; i < r->n_tensors; i++) {
        const aq_tensor_view *v = &r->tensors[i];
        REQUIRE(v->name && v->name[0]);
        REQUIRE((uint64_t)aq_view_numel(v) * aq_dtype_size(v->dtype) == v->nbytes);
    }
    aq_result_desc d = {.layer = r->layer, .option = r->option, .fp = r->fp, .row = r->row,
                        .n_tensors = r->n_tensors, .tensors = r->tensors};
    uint8_t *again = NULL;
    size_t n2 = 0;
    aq_error err = {0};
    REQUIRE(aq_result_encode(&d, &again, &n2, &err) == AQ_OK);
    if (exact) REQUIRE(n2 == len && !memcmp(again, file, len));
    aq_result *r2 = NULL;
    REQUIRE(aq_result_decode("again", again, n2, &r->fp, &r2, &err) == AQ_OK);
    REQUIRE(r2->n_tensors == r->n_tensors && !memcmp(&r2->row, &r->row, sizeof r->row));
    for (size_t i = 0; i < r->n_tensors; i++)
        REQUIRE(!strcmp(r2->tensors[i].name, r->tensors[i].name) &&
                r2->tensors[i].nbytes == r->tensors[i].nbytes &&
                !memcmp(r2->tensors[i].data, r->tensors[i].data, r->tensors[i].nbytes));
    aq_result_free(r2);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20)) return 0;
    int mode = data[0] % 3;
    data++, size--;
    uint8_t *buf = NULL;
    size_t len = size;
    if (mode == 2) {
        buf = wrap(data, size, &len);
        if (!buf) return 0;
    } else {
        buf = malloc(size ? size : 1);
        if (!buf) return 0;
        memcpy(buf, data, size);
        if (mode == 1) fix_crcs(buf, size);
    }
    aq_result *r = NULL;
    aq_error err = {0};
    aq_status st = aq_result_decode("fuzz", buf, len, NULL, &r, &err);
    if (st != AQ_OK) {
        REQUIRE(r == NULL && err.code == st && err.msg[0] != '\0');
    } else {
        check_result(r, buf, len, mode == 2);
        aq_result_free(r);
    }
    free(buf);
    return 0;
}
