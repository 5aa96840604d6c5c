/* fuzz_hftok_json.c — libFuzzer harness for the tokenizer.json reader
 * (src/text/hf_load.c, hf_parse.c): arbitrary bytes are offered to
 * aq_hftok_open_memory. A refusal must come with a code and a message; an
 * accepted file must be self-consistent (every piece maps back to an id with
 * that piece, the BOS/unk ids are in range) and must encode a fixed text into
 * in-range ids and decode them without failing. A violated invariant aborts
 * (a finding). Seeds: the in-memory fixtures of the unit test, written to
 * tests/fuzz/seeds/fuzz_hftok_json/ (small). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "../../src/text/hf_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    aq_hftok *h = NULL;
    aq_error err = {0};
    if (aq_hftok_open_memory((const char *)data, size, "fuzz.json", &h, &err) != AQ_OK) {
        REQUIRE(h == NULL && err.code != AQ_OK && err.msg[0] != '\0');
        return 0;
    }
    int n = aq_hftok_vocab_size(h);
    REQUIRE(n > 0);
    for (int id = 0; id < n; id++) {
        const char *p = aq_hftok_piece(h, id);
        if (!p) continue;
        int back = aq_hftok_token_id(h, p);
        REQUIRE(back >= 0 && back < n && !strcmp(aq_hftok_piece(h, back), p));
    }
    REQUIRE(aq_hftok_piece(h, -1) == NULL && aq_hftok_piece(h, n) == NULL);
    int bos = aq_hftok_bos_id(h), unk = aq_hftok_unk_id(h);
    REQUIRE(bos >= -1 && bos < n && unk >= -1 && unk < n);
    static const char text[] = "Hello  world!\n\tIt's 1234 caf\xC3\xA9 \xE2\x96\x81 \xF0\x9F\x98\x80 <s>";
    int *ids = NULL;
    size_t k = 0;
    if (aq_hftok_encode(h, text, sizeof text - 1, 1, &ids, &k, &err) == AQ_OK) {
        for (size_t i = 0; i < k; i++) REQUIRE(ids[i] >= 0 && ids[i] < n);
        char *s = NULL;
        size_t sl = 0;
        REQUIRE(aq_hftok_decode(h, ids, k, 0, &s, &sl, &err) == AQ_OK && s && strlen(s) <= sl);
        free(s);
        free(ids);
    } else {
        REQUIRE(ids == NULL && err.msg[0] != '\0');
    }
    aq_hftok_close(h);
    return 0;
}
