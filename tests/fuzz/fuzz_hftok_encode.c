/* fuzz_hftok_encode.c — libFuzzer harness for the tokenizer.json encoder and
 * decoder (src/text/hf_pretok.c, hf_bpe.c, hf_decode.c) on arbitrary text,
 * with a small built-in tokenizer of each kind (test_hf_tokenizer_fixtures.h):
 *   byte-level BPE with the GPT-2 regex, the same with the Llama-3 Split regex
 *   and ignore_merges, the same with an NFC normalizer (Qwen-style),
 *   SentencePiece-style BPE (Prepend/Replace, byte_fallback), and a Metaspace
 *   pre-tokenizer (prepend_scheme first, split).
 * Invariants: encode succeeds exactly when the input is valid UTF-8 (checked
 * with utf8proc's decoder, not ours); every id is in range; and decoding gives
 * the text back where the pipeline is lossless: byte-level exactly (NFC: the
 * utf8proc NFC of the text), SentencePiece with each U+2581 read as a space,
 * Metaspace likewise unless the text starts with a space (its decoder drops
 * that one, as tokenizers' does). A violated invariant aborts (a finding). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "fuzz_common.h"
#include "../../src/text/hf_tokenizer.h"
#include "../test_hf_tokenizer_fixtures.h"

enum { FX_GPT2, FX_LLAMA3, FX_NFC, FX_SPM, FX_META, FX_N };

static const char llama3_pre[] =
    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+"
    "[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]}";

/* fx_bytelevel with its pre_tokenizer (and normalizer) replaced. */
static char *variant(const char *pre, const char *norm, size_t *len)
{
    size_t n;
    char *j = fx_bytelevel(1, &n);
    const char *a = strstr(j, "\"pre_tokenizer\":"), *b = strstr(j, ",\"post_processor\"");
    const char *nn = strstr(j, "\"normalizer\":null");
    REQUIRE(a && b && nn && nn < a);
    fx_str s = {0};
    fx_add(&s, "%.*s\"normalizer\":%s,%s%s", (int)(nn - j), j, norm, pre, b);
    free(j);
    *len = s.n;
    return s.p;
}

static aq_hftok *fixture(int k)
{
    static aq_hftok *h[FX_N];
    if (h[k]) return h[k];
    size_t len;
    char *j = k == FX_GPT2   ? fx_bytelevel(0, &len)
              : k == FX_LLAMA3 ? variant(llama3_pre, "null", &len)
              : k == FX_NFC    ? variant(llama3_pre, "{\"type\":\"NFC\"}", &len)
              : k == FX_SPM    ? fx_spm(NULL, 1, &len)
                               : fx_spm("first", 1, &len);
    aq_error err = {0};
    REQUIRE(aq_hftok_open_memory(j, len, "fixture", &h[k], &err) == AQ_OK);
    free(j);
    return h[k];
}

static int valid_utf8(const uint8_t *s, size_t n)
{
    utf8proc_int32_t cp;
    for (size_t i = 0; i < n;) {
        utf8proc_ssize_t l = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (l <= 0 || cp < 0) return 0;
        i += (size_t)l;
    }
    return 1;
}

/* The text the decoder must give back, malloc'd (*wl its length). */
static char *expected(int k, const uint8_t *s, size_t n, size_t *wl)
{
    if (k == FX_NFC) {
        if (n == 0) {
            *wl = 0;
            return calloc(1, 1);
        }
        utf8proc_uint8_t *d = NULL;
        utf8proc_ssize_t r = utf8proc_map(s, (utf8proc_ssize_t)n, &d, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        REQUIRE(r >= 0);
        *wl = (size_t)r;
        return (char *)d;
    }
    char *w = malloc(n + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if ((k == FX_SPM || k == FX_META) && i + 3 <= n && !memcmp(s + i, "\xE2\x96\x81", 3)) {
            w[m++] = ' ';
            i += 2;
        } else {
            w[m++] = (char)s[i];
        }
    }
    *wl = m;
    return w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0;
    int valid = valid_utf8(data, size);
    for (int k = 0; k < FX_N; k++) {
        aq_hftok *h = fixture(k);
        int *ids = NULL;
        size_t n = 0;
        aq_error err = {0};
        aq_status st = aq_hftok_encode(h, (const char *)data, size, k == FX_SPM, &ids, &n, &err);
        REQUIRE(valid ? st == AQ_OK : (st == AQ_ERR_ARG && ids == NULL));
        if (!valid) continue;
        int vs = aq_hftok_vocab_size(h);
        for (size_t i = 0; i < n; i++) REQUIRE(ids[i] >= 0 && ids[i] < vs);
        char *dec = NULL;
        size_t dl = 0;
        REQUIRE(aq_hftok_decode(h, ids, n, 1, &dec, &dl, &err) == AQ_OK);
        int lossless = !(k == FX_META && size > 0 &&
                         (data[0] == ' ' || (size >= 3 && !memcmp(data, "\xE2\x96\x81", 3))));
        if (lossless) {
            size_t wl;
            char *w = expected(k, data, size, &wl);
            REQUIRE(dl == wl && !memcmp(dec, w, wl));
            free(w);
        }
        free(dec);
        free(ids);
    }
    return 0;
}
