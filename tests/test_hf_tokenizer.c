/* test_hf_tokenizer.c — the tokenizer.json backend (src/text/hf_*.c) on small
 * files built in memory (test_hf_tokenizer_fixtures.h) with known answers
 * worked out by hand below: BPE merge order and ties, both merge
 * serialisations, ignore_merges, byte_fallback, unk fusing, the Llama-2
 * normalizer chain, Metaspace prepend schemes, the Split delimiter behaviours
 * (the examples of the tokenizers documentation), NFC/NFKC, the special-token
 * rule (added tokens are never produced from plain text), decode chains, and
 * bad input (each error names what and where). The comparison with the JS
 * reference on real files is test_hf_tokenizer_ref.c. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/text/hf_internal.h"
#include "../src/text/hf_tokenizer.h"
#include "test_hf_tokenizer_fixtures.h"
#include "testutil.h"

static aq_hftok *open_json(const char *json, size_t len)
{
    aq_hftok *h = NULL;
    aq_error err = {0};
    CHECK_OK(aq_hftok_open_memory(json, len, "fixture", &h, &err), &err);
    return h;
}

/* encode(text) must be exactly want[0..nw). */
static void expect_ids(const aq_hftok *h, const char *text, int special, const int *want, size_t nw)
{
    int *ids = NULL;
    size_t n = 0;
    aq_error err = {0};
    CHECK_OK(aq_hftok_encode(h, text, strlen(text), special, &ids, &n, &err), &err);
    int same = n == nw && (nw == 0 || !memcmp(ids, want, nw * sizeof *ids));
    CHECK_MSG(same, "encode(\"%s\"): got %zu ids", text, n);
    if (!same) {
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
}

static void expect_decode(const aq_hftok *h, const int *ids, size_t n, int skip, const char *want)
{
    char *s = NULL;
    size_t len = 0;
    aq_error err = {0};
    CHECK_OK(aq_hftok_decode(h, ids, n, skip, &s, &len, &err), &err);
    CHECK_MSG(s && len == strlen(want) && !strcmp(s, want), "decode: \"%s\", want \"%s\"", s ? s : "(null)", want);
    free(s);
}

static void test_bytelevel(void)
{
    size_t len;
    char *j = fx_bytelevel(0, &len);
    aq_hftok *h = open_json(j, len);
    if (!h) return;
    CHECK(aq_hftok_vocab_size(h) == 262);
    CHECK(aq_hftok_token_id(h, "\xC4\xA0the") == 258 && aq_hftok_token_id(h, "<|end|>") == 261);
    CHECK(!strcmp(aq_hftok_piece(h, 32), "\xC4\xA0") && aq_hftok_is_special(h, 261) && !aq_hftok_is_special(h, 258));
    CHECK(aq_hftok_bos_id(h) == -1 && aq_hftok_unk_id(h) == -1);
    /* "the the": GPT-2 regex -> "the", " the" -> "the", "Ġthe". "the": (h,e)
     * is the only merge -> t(116) he(257). "Ġthe": rank 0 (Ġ,t) first, then
     * (h,e), then the [Ġt, he] pair merge -> Ġthe(258). */
    expect_ids(h, "the the", 0, (int[]){116, 257, 258}, 3);
    /* Ties go left first: "aaa" -> aa a; "aaaa" -> aa aa. */
    expect_ids(h, "aaa", 0, (int[]){259, 97}, 2);
    expect_ids(h, "aaaa", 0, (int[]){259, 259}, 2);
    /* Bytes outside ASCII: é = C3 A9 -> the ids of those bytes. */
    expect_ids(h, "\xC3\xA9", 0, (int[]){0xC3, 0xA9}, 2);
    /* Plain text never produces an added token: "<|end|>" is spelt out. */
    expect_ids(h, "<|end|>", 0, (int[]){'<', '|', 'e', 'n', 'd', '|', '>'}, 7);
    expect_decode(h, (int[]){116, 257, 258, 0xC3, 0xA9}, 5, 0, "the the\xC3\xA9");
    expect_decode(h, (int[]){258, 261}, 2, 0, " the<|end|>");
    expect_decode(h, (int[]){258, 261}, 2, 1, " the");
    expect_ids(h, "", 1, NULL, 0);
    aq_hftok_close(h);
    free(j);
    /* ignore_merges: a word in the vocabulary is that token, merges or not. */
    j = fx_bytelevel(1, &len);
    h = open_json(j, len);
    if (h) expect_ids(h, "the the", 0, (int[]){260, 258}, 2);
    aq_hftok_close(h);
    free(j);
}

static void test_spm(void)
{
    size_t len;
    char *j = fx_spm(NULL, 1, &len);
    aq_hftok *h = open_json(j, len);
    if (!h) return;
    CHECK(aq_hftok_bos_id(h) == 1 && aq_hftok_unk_id(h) == 0 && aq_hftok_vocab_size(h) == 265);
    /* "ab ab" -> "▁ab▁ab": (▁,a) at 0 and 3 first, then [▁a, b] twice; the
     * (a,b) candidates are stale by then. */
    expect_ids(h, "ab ab", 0, (int[]){264, 264}, 2);
    expect_ids(h, "ab ab", 1, (int[]){1, 264, 264}, 3);
    /* byte_fallback: é is not in the vocabulary -> <0xC3> <0xA9> (3 + byte). */
    expect_ids(h, "a\xC3\xA9", 0, (int[]){262, 3 + 0xC3, 3 + 0xA9}, 3);
    /* "<s>" in text is not the BOS: ▁ then the bytes of "<", "s", ">". */
    expect_ids(h, "<s>", 0, (int[]){259, 3 + '<', 3 + 's', 3 + '>'}, 4);
    /* Decoder: ▁ -> space, bytes fused back into UTF-8, one leading space stripped. */
    expect_decode(h, (int[]){1, 262, 3 + 0xC3, 3 + 0xA9, 264}, 5, 1, "a\xC3\xA9 ab");
    expect_decode(h, (int[]){1, 264}, 2, 0, "<s> ab");
    aq_hftok_close(h);
    free(j);
    /* No byte_fallback: unknown characters become <unk>, runs fused (fuse_unk). */
    j = fx_spm(NULL, 0, &len);
    h = open_json(j, len);
    if (h) {
        expect_ids(h, "a\xC3\xA9\xC3\xA9 b", 0, (int[]){262, 0, 259, 261}, 4);
        expect_decode(h, (int[]){262, 0, 259, 261}, 4, 0, "a<unk> b");
        expect_decode(h, (int[]){262, 0, 259, 261}, 4, 1, "a b");
    }
    aq_hftok_close(h);
    free(j);
}

static void test_metaspace(void)
{
    size_t len;
    /* first/always: "ab ab" -> "▁ab▁ab", split before each ▁ -> ▁ab ▁ab. */
    char *j = fx_spm("first", 1, &len);
    aq_hftok *h = open_json(j, len);
    if (h) {
        expect_ids(h, "ab ab", 0, (int[]){264, 264}, 2);
        expect_decode(h, (int[]){264, 264}, 2, 0, "ab ab");
    }
    aq_hftok_close(h);
    free(j);
    /* never: "ab▁ab" -> "ab" "▁ab"; the decoder keeps a leading space. */
    j = fx_spm("never", 1, &len);
    h = open_json(j, len);
    if (h) {
        expect_ids(h, "ab ab", 0, (int[]){263, 264}, 2);
        expect_decode(h, (int[]){264, 264}, 2, 0, " ab ab");
    }
    aq_hftok_close(h);
    free(j);
}

/* The words after normalizers and pre-tokenizers, joined with '|'. */
static void expect_words(const char *pretok_json, const char *norm_json, const char *text, const char *want)
{
    char buf[2048];
    snprintf(buf, sizeof buf,
             "{\"normalizer\":%s,\"pre_tokenizer\":%s,\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
             norm_json, pretok_json);
    aq_hftok *h = open_json(buf, strlen(buf));
    if (!h) return;
    hf_words w;
    aq_error err = {0};
    CHECK_OK(hf_pretokenize(h, text, strlen(text), &w, &err), &err);
    char got[1024] = "";
    for (size_t i = 0; i < w.n; i++) {
        if (i) strcat(got, "|");
        strncat(got, w.buf.p + w.w[i].off, w.w[i].len);
    }
    CHECK_MSG(!strcmp(got, want), "%s on \"%s\": \"%s\", want \"%s\"", pretok_json, text, got, want);
    hf_words_free(&w);
    aq_hftok_close(h);
}

static void test_split(void)
{
    /* The examples of tokenizers' SplitDelimiterBehavior documentation. */
    const char *t = "the-final--countdown";
    static const char *const beh[][2] = {{"Removed", "the|final|countdown"},
                                         {"Isolated", "the|-|final|-|-|countdown"},
                                         {"MergedWithPrevious", "the-|final-|-|countdown"},
                                         {"MergedWithNext", "the|-final|-|-countdown"},
                                         {"Contiguous", "the|-|final|--|countdown"}};
    for (int i = 0; i < 5; i++) {
        char pj[256];
        snprintf(pj, sizeof pj, "{\"type\":\"Split\",\"pattern\":{\"String\":\"-\"},\"behavior\":\"%s\",\"invert\":false}",
                 beh[i][0]);
        expect_words(pj, "null", t, beh[i][1]);
        snprintf(pj, sizeof pj, "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"-\"},\"behavior\":\"%s\",\"invert\":false}",
                 beh[i][0]);
        expect_words(pj, "null", t, beh[i][1]);
    }
    /* The Llama-3 regex: contractions in any case, 1-3 digit groups,
     * whitespace before a word kept with the word except the last one. */
    expect_words("{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?"
                 "\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|"
                 "\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false}",
                 "null", "IT'S 12345  x\n\ny", "IT|'S| |123|45| | x|\n\n|y");
    /* Digits (SmolLM, StarCoder): each number character alone, or runs. */
    expect_words("{\"type\":\"Digits\",\"individual_digits\":true}", "null", "a123b\xD9\xA3" "x", "a|1|2|3|b|\xD9\xA3|x");
    expect_words("{\"type\":\"Digits\",\"individual_digits\":false}", "null", "a123b\xC2\xBD" "4", "a|123|b|\xC2\xBD" "4");
    /* Metaspace in a Split-free chain; NFC and NFKC normalizers. */
    expect_words("null", "{\"type\":\"NFC\"}", "e\xCC\x81", "\xC3\xA9");
    expect_words("null", "{\"type\":\"NFKC\"}", "\xEF\xAC\x81x\xC2\xB2", "fix2");
    expect_words("null", "{\"type\":\"NFD\"}", "\xC3\xA9", "e\xCC\x81");
    expect_words("{\"type\":\"Metaspace\",\"replacement\":\"_\",\"prepend_scheme\":\"always\",\"split\":false}", "null",
                 "a b", "_a_b");
    expect_words("{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"use_regex\":true}", "null", "hi there",
                 "\xC4\xA0hi|\xC4\xA0there");
}

/* A tokenizer.json that must be refused with a message containing each of
 * the needles (what and where). */
static void expect_refused(const char *json, size_t len, aq_status code, const char *n1, const char *n2)
{
    aq_hftok *h = NULL;
    aq_error err = {0};
    aq_status st = aq_hftok_open_memory(json, len, "bad.json", &h, &err);
    CHECK_MSG(st == code && h == NULL, "expected status %d, got %d (%s)", (int)code, (int)st, err.msg);
    CHECK_MSG(strstr(err.msg, "bad.json") && strstr(err.msg, n1) && (!n2 || strstr(err.msg, n2)),
              "message \"%s\" does not name \"%s\"%s%s", err.msg, n1, n2 ? " / " : "", n2 ? n2 : "");
    aq_hftok_close(h);
}

static char *replace_once(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    if (!p) return NULL;
    size_t a = (size_t)(p - s), lf = strlen(from), lt = strlen(to), n = strlen(s);
    char *r = malloc(n - lf + lt + 1);
    memcpy(r, s, a);
    memcpy(r + a, to, lt);
    memcpy(r + a + lt, p + lf, n - a - lf + 1);
    return r;
}

static void test_bad_input(void)
{
    size_t len;
    char *j = fx_spm(NULL, 1, &len);
    expect_refused(j, len / 2, AQ_ERR_FORMAT, "not valid JSON", "truncated");
    struct {
        const char *from, *to, *n1, *n2;
    } cases[] = {
        {"\"\\u2581a b\"]", "\"\\u2581a zz\"]", "model.merges[2]", "\"zz\" is not in the vocabulary"},
        {"\"pre_tokenizer\":null", "\"pre_tokenizer\":{\"type\":\"Whitespace\"}",
         "unsupported pre-tokenizer \"Whitespace\" at pre_tokenizer", NULL},
        {"{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},", "{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},{\"type\":\"Lowercase\"},",
         "unsupported normalizer \"Lowercase\" at normalizer.normalizers[1]", NULL},
        {"\"type\":\"BPE\"", "\"type\":\"Unigram\"", "unsupported model type \"Unigram\" at model.type", NULL},
        {"{\"type\":\"Fuse\"}", "{\"type\":\"WordPiece\"}", "unsupported decoder \"WordPiece\" at decoder.decoders[2]", NULL},
        {"\"type\":\"TemplateProcessing\"", "\"type\":\"BertProcessing\"", "unsupported post-processor \"BertProcessing\"", NULL},
        {"\"dropout\":null", "\"dropout\":0.1", "model.dropout", NULL},
        {"\"dropout\":null", "\"dropout\":null,\"cache_capacity\":7", "unsupported BPE option at model.cache_capacity", NULL},
        {"\"a\":260", "\"a\":259", "model.vocab: id 259", NULL},
        {"\"a\":260", "\"a\":9000000", "id 9000000 is far beyond", NULL},
        {"\"unk_token\":\"<unk>\"", "\"unk_token\":\"<nope>\"", "model.unk_token", NULL},
        {"\"\\u2581a b\"]", "\"\\u2581ab\"]", "model.merges[2]", "not two tokens"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *b = replace_once(j, cases[i].from, cases[i].to);
        CHECK_MSG(b != NULL, "fixture lacks %s", cases[i].from);
        if (b) expect_refused(b, strlen(b), AQ_ERR_FORMAT, cases[i].n1, cases[i].n2);
        free(b);
    }
    /* Split invert and an unknown behaviour; a regex that does not compile. */
    const char *inv = "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\"-\"},\"behavior\":"
                      "\"Isolated\",\"invert\":true},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}";
    expect_refused(inv, strlen(inv), AQ_ERR_FORMAT, "pre_tokenizer.invert", NULL);
    const char *badre = "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a\"},\"behavior\":\"Isolated\"},"
                        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}";
    expect_refused(badre, strlen(badre), AQ_ERR_FORMAT, "pre_tokenizer.pattern", "does not compile");
    const char *notobj = "[1, 2]";
    expect_refused(notobj, strlen(notobj), AQ_ERR_FORMAT, "not a JSON object", NULL);
    free(j);
}

/* Missing file; invalid UTF-8 text; an out-of-range id to decode. */
static void test_bad_use(void)
{
    size_t len;
    char *j;
    aq_hftok *h = NULL;
    aq_error err = {0};
    CHECK(aq_hftok_open("/nonexistent/tokenizer.json", &h, &err) == AQ_ERR_IO && strstr(err.msg, "/nonexistent"));
    j = fx_bytelevel(0, &len);
    h = open_json(j, len);
    if (h) {
        int *ids = NULL;
        size_t n = 0;
        err = (aq_error){0};
        CHECK(aq_hftok_encode(h, "abc\xC3(", 5, 0, &ids, &n, &err) == AQ_ERR_ARG && strstr(err.msg, "byte offset 3"));
        char *s = NULL;
        err = (aq_error){0};
        CHECK(aq_hftok_decode(h, (int[]){5, 9999}, 2, 0, &s, NULL, &err) == AQ_ERR_ARG && strstr(err.msg, "position 1"));
        CHECK(s == NULL);
    }
    aq_hftok_close(h);
    free(j);
}

/* One handle, several threads encoding at once: each must get the ids of a
 * serial run (the handle is read-only; caches are per call). */
typedef struct enc_job {
    const aq_hftok *h;
    const char *text;
    size_t len;
    int *ids;
    size_t n;
    aq_status st;
} enc_job;

static void *enc_thread(void *arg)
{
    enc_job *j = arg;
    aq_error err = {0};
    for (int r = 0; r < 20 && j->st == AQ_OK; r++) {
        free(j->ids);
        j->ids = NULL;
        j->st = aq_hftok_encode(j->h, j->text, j->len, 1, &j->ids, &j->n, &err);
    }
    return NULL;
}

static void test_threads(void)
{
    size_t len;
    char *js = fx_bytelevel(0, &len);
    aq_hftok *h = open_json(js, len);
    free(js);
    if (!h) return;
    char text[8192];
    size_t tl = 0;
    for (int i = 0; tl + 40 < sizeof text; i++)
        tl += (size_t)snprintf(text + tl, sizeof text - tl, "the aaa%d ab\xC3\xA9 they'll %s", i, i % 7 ? "" : "\n");
    int *want = NULL;
    size_t nw = 0;
    aq_error err = {0};
    CHECK_OK(aq_hftok_encode(h, text, tl, 1, &want, &nw, &err), &err);
    enc_job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (enc_job){h, text, tl, NULL, 0, AQ_OK};
        CHECK(pthread_create(&th[i], NULL, enc_thread, &jobs[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].st == AQ_OK && jobs[i].n == nw && !memcmp(jobs[i].ids, want, nw * sizeof *want));
        free(jobs[i].ids);
    }
    free(want);
    aq_hftok_close(h);
}

int main(void)
{
    test_bytelevel();
    test_spm();
    test_metaspace();
    test_split();
    test_bad_input();
    test_bad_use();
    test_threads();
    AQ_TEST_END();
}
