/* test_hf_tokenizer_fixtures.h — small tokenizer.json files built in memory,
 * one of each kind the backend supports, for test_hf_tokenizer.c (known
 * answers worked out by hand in the comments there) and for the encoder
 * fuzzer. Header-only: both programs are single files.
 *
 *   byte-level BPE (GPT-2/Llama-3 style): ids 0..255 are the 256 byte
 *     characters in byte order, then "Ġt" 256, "he" 257, "Ġthe" 258, "aa" 259,
 *     "the" 260 (no merge makes it: only ignore_merges can produce it);
 *     merges "Ġ t", "h e", ["Ġt", "he"], "a a" (both serialisations).
 *   SentencePiece-style BPE (Llama-2 style): <unk> 0, <s> 1, </s> 2,
 *     <0x00>..<0xFF> 3..258, "▁" 259, "a" 260, "b" 261, "▁a" 262, "ab" 263,
 *     "▁ab" 264; merges "▁ a", "a b", "▁a b"; TemplateProcessing with <s>.
 *     With meta=NULL: normalizer Prepend("▁") + Replace(" " -> "▁") and the
 *     Llama-2 decoder chain; with meta = "first"/"always"/"never": a
 *     Metaspace pre-tokenizer (split true) and decoder of that prepend_scheme. */
#ifndef AQ_TEST_HF_TOKENIZER_FIXTURES_H
#define AQ_TEST_HF_TOKENIZER_FIXTURES_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fx_str {
    char *p;
    size_t n, cap;
} fx_str;

static void fx_add(fx_str *s, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(s->p ? s->p + s->n : NULL, s->p ? s->cap - s->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) abort();
        if (s->p && s->n + (size_t)k < s->cap) {
            s->n += (size_t)k;
            return;
        }
        s->cap = (s->cap + (size_t)k + 1) * 2;
        s->p = realloc(s->p, s->cap);
        if (!s->p) abort();
    }
}

/* The GPT-2 byte-to-unicode character of byte b, as a JSON string body
 * (written independently of src/text/hf_util.c from the published rule:
 * printable Latin-1 bytes stand for themselves, the others take U+0100 + k
 * in byte order). */
static void fx_bytechar(fx_str *s, int b)
{
    int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    int cp = b;
    if (!printable) {
        int k = 0;
        for (int x = 0; x < b; x++)
            k += !((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255));
        cp = 256 + k;
    }
    if (cp == '"' || cp == '\\') fx_add(s, "\\%c", cp);
    else if (cp < 0x80) fx_add(s, "%c", cp);
    else fx_add(s, "\\u%04x", cp);
}

static char *fx_bytelevel(int ignore_merges, size_t *len)
{
    fx_str s = {0};
    fx_add(&s, "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":261,\"content\":\"<|end|>\",\"special\":true}],"
               "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
               "\"trim_offsets\":true,\"use_regex\":true},\"post_processor\":{\"type\":\"ByteLevel\"},"
               "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"ignore_merges\":%s,"
               "\"vocab\":{",
           ignore_merges ? "true" : "false");
    for (int b = 0; b < 256; b++) {
        fx_add(&s, "\"");
        fx_bytechar(&s, b);
        fx_add(&s, "\":%d,", b);
    }
    fx_add(&s, "\"\\u0120t\":256,\"he\":257,\"\\u0120the\":258,\"aa\":259,\"the\":260},"
               "\"merges\":[\"\\u0120 t\",\"h e\",[\"\\u0120t\",\"he\"],\"a a\"]}}");
    *len = s.n;
    return s.p;
}

static char *fx_spm(const char *meta, int byte_fallback, size_t *len)
{
    fx_str s = {0};
    fx_add(&s, "{\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true},"
               "{\"id\":1,\"content\":\"<s>\",\"special\":true},{\"id\":2,\"content\":\"</s>\",\"special\":true}],");
    if (!meta)
        fx_add(&s, "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
                   "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},"
                   "\"pre_tokenizer\":null,\"decoder\":{\"type\":\"Sequence\",\"decoders\":["
                   "{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},\"content\":\" \"},"
                   "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},"
                   "{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},");
    else
        fx_add(&s, "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\","
                   "\"prepend_scheme\":\"%s\",\"split\":true},\"decoder\":{\"type\":\"Sequence\",\"decoders\":["
                   "{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\",\"prepend_scheme\":\"%s\",\"split\":true},"
                   "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}]},",
               meta, meta);
    fx_add(&s, "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\","
               "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":"
               "{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}},"
               "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"fuse_unk\":true,"
               "\"byte_fallback\":%s,\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,",
           byte_fallback ? "true" : "false");
    for (int b = 0; b < 256; b++) fx_add(&s, "\"<0x%02X>\":%d,", b, 3 + b);
    fx_add(&s, "\"\\u2581\":259,\"a\":260,\"b\":261,\"\\u2581a\":262,\"ab\":263,\"\\u2581ab\":264},"
               "\"merges\":[\"\\u2581 a\",\"a b\",\"\\u2581a b\"]}}");
    *len = s.n;
    return s.p;
}

#endif
