/* test_tok_front_hf.c — the tokenizer front end (src/text/tokenizer.c,
 * tok_stream.c) with tokenizer.json files: dispatch from a model directory,
 * BOS from the post-processor, EOS from tokenizer_config.json / config.json
 * (and their errors), the config/tokenizer vocabulary check, encode's bos/eos
 * flags, the <unk> count, and streaming decode (bytes of one character held
 * until complete; the concatenation equals decode_all). Known answers worked
 * by hand on the small tokenizer.json files of test_hf_tokenizer_fixtures.h.
 *
 *   test_tok_front_hf [TOKENIZER.json...]
 * With arguments (the real Llama-2/Llama-3/Qwen3 files, tests/hftok.cmake),
 * also: the EOS named by each file's tokenizer_config.json, and streaming
 * decode == decode_all on every TinyStories line and a text of multi-byte
 * characters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../src/text/tokenizer.h"
#include "test_hf_tokenizer_fixtures.h"
#include "testutil.h"

static void put(const char *dir, const char *name, const char *data, size_t len)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, len, f) == len);
    if (f) fclose(f);
}

static void drop(const char *dir, const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    remove(path);
}

static void expect_ids(const aq_tokenizer *t, const char *text, int bos, int eos, size_t n,
                       const int *want)
{
    aq_error err = {0};
    int *ids = NULL;
    size_t got = 0;
    CHECK_OK(aq_tok_encode_alloc(t, text, bos, eos, &ids, &got, &err), &err);
    int same = got == n;
    for (size_t i = 0; same && i < n; i++)
        same = ids[i] == want[i];
    CHECK_MSG(same, "\"%s\" bos=%d eos=%d: %zu ids [%d %d ...], want %zu", text, bos, eos, got,
              got ? ids[0] : -1, got > 1 ? ids[1] : -1, n);
    int buf[16];
    size_t k = 0;
    if (n < 16) {
        CHECK_OK(aq_tok_encode(t, text, bos, eos, buf, 16, &k, &err), &err);
        CHECK(k == n && (!n || !memcmp(buf, want, n * sizeof *buf)));
    }
    free(ids);
}

/* Push ids one by one; returns the concatenated text (malloc'd) and checks
 * that it equals decode_all. held_at: an index after whose push nothing may
 * come out yet (a character split over tokens), or -1. */
static char *stream_all(const aq_tokenizer *t, const int *ids, size_t n, long held_at)
{
    aq_error err = {0};
    aq_tok_stream *s = NULL;
    size_t cap = 64, got = 0, dl = 0;
    char *out = malloc(cap), *dec = NULL;
    CHECK_OK(aq_tok_stream_new(t, &s, &err), &err);
    for (size_t i = 0; s && i <= n; i++) {
        const char *p;
        size_t len;
        if (i < n)
            CHECK_OK(aq_tok_stream_push(s, ids[i], &p, &len, &err), &err);
        else
            CHECK_OK(aq_tok_stream_flush(s, &p, &len, &err), &err);
        if ((long)i == held_at) CHECK_MSG(len == 0, "push %zu gave %zu bytes too early", i, len);
        while (got + len + 1 > cap)
            out = realloc(out, cap *= 2);
        memcpy(out + got, p, len);
        got += len;
    }
    out[got] = '\0';
    aq_tok_stream_free(s);
    CHECK_OK(aq_tok_decode_all(t, ids, n, &dec, &dl, &err), &err);
    CHECK_MSG(dec && dl == got && !memcmp(dec, out, got), "stream \"%s\" vs decode_all \"%s\"", out,
              dec ? dec : "");
    free(dec);
    return out;
}

static void test_side_files(const char *dir);

/* SentencePiece-style fixture: <unk> 0, <s> 1, </s> 2, <0xHH> 3 + HH, "▁" 259,
 * a 260, b 261, "▁a" 262, "ab" 263, "▁ab" 264; <s> from TemplateProcessing. */
static void test_spm_dir(void)
{
    size_t len;
    char *json = fx_spm(NULL, 1, &len), *dir = aq_test_tmpdir("tokhf");
    aq_error err = {0};
    aq_tokenizer *t = NULL;
    put(dir, "tokenizer.json", json, len);
    static const char tc[] = "{\"eos_token\": {\"content\": \"</s>\", \"lstrip\": false}}";
    static const char cfg[] = "{\"model_type\": \"llama\", \"eos_token_id\": [2, 259]}";
    put(dir, "tokenizer_config.json", tc, strlen(tc));
    put(dir, "config.json", cfg, strlen(cfg));
    CHECK_OK(aq_tok_open(dir, 300, &t, &err), &err);
    if (t) {
        CHECK(aq_tok_kind_of(t) == AQ_TOK_HF_JSON && aq_tok_vocab_size(t) == 265);
        CHECK(aq_tok_bos_id(t) == 1 && aq_tok_eos_id(t) == 2 && aq_tok_unk_id(t) == 0);
        CHECK(aq_tok_is_stop(t, 2) && aq_tok_is_stop(t, 259) && !aq_tok_is_stop(t, 1));
        CHECK(strstr(aq_tok_describe(t), "tokenizer.json") && strstr(aq_tok_describe(t), "EOS 2"));
        CHECK(!strcmp(aq_tok_piece(t, 264), "\xe2\x96\x81" "ab") && !aq_tok_piece(t, 265));
        /* "▁ab▁a": "▁ a" first, then "a b" is gone, "▁a b" -> ▁ab; then ▁a. */
        expect_ids(t, "ab a", 1, 1, 4, (const int[]){1, 264, 262, 2});
        expect_ids(t, "ab a", 0, 0, 2, (const int[]){264, 262});
        /* é has no piece: byte fallback <0xC3> <0xA9>; the stream holds the
         * first byte back until the character is whole. */
        expect_ids(t, "\xc3\xa9", 1, 0, 4, (const int[]){1, 259, 3 + 0xC3, 3 + 0xA9});
        char *s = stream_all(t, (const int[]){1, 259, 3 + 0xC3, 3 + 0xA9, 262, 2}, 6, 2);
        CHECK_MSG(!strcmp(s, "\xc3\xa9 a"), "%s", s);
        free(s);
        s = stream_all(t, (const int[]){1, 264, 262, 2}, 4, -1); /* Strip: no leading space */
        CHECK_MSG(!strcmp(s, "ab a"), "%s", s);
        free(s);
        const char *p;
        size_t n;
        CHECK(aq_tok_decode(t, 1, 264, &p, &n, &err) == AQ_ERR_ARG && strstr(err.msg, "stream"));
        aq_tok_close(t);
    }
    test_side_files(dir);
    drop(dir, "tokenizer.json");
    rmdir(dir);
    free(dir);
    free(json);
}

/* dir holds the SentencePiece fixture's tokenizer.json, tokenizer_config.json
 * and config.json; the vocab check and the side files' variants and errors. */
static void test_side_files(const char *dir)
{
    aq_error err = {0};
    aq_tokenizer *t = (aq_tokenizer *)1;
    /* The model's vocab_size is smaller than the tokenizer's. */
    CHECK(aq_tok_open(dir, 264, &t, &err) == AQ_ERR_ARG && t == NULL);
    CHECK_MSG(strstr(err.msg, "config/tokenizer vocabulary mismatch") && strstr(err.msg, "264") &&
                  strstr(err.msg, "265 tokens"),
              "%s", err.msg);
    /* tokenizer_config.json only, as a plain string; then nothing at all. */
    drop(dir, "config.json");
    static const char tc2[] = "{\"eos_token\": \"</s>\"}";
    put(dir, "tokenizer_config.json", tc2, strlen(tc2));
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    CHECK_OK(aq_tok_open(path, AQ_TOK_NO_MODEL, &t, &err), &err);
    if (t) CHECK(aq_tok_eos_id(t) == 2 && !aq_tok_is_stop(t, 259));
    aq_tok_close(t);
    drop(dir, "tokenizer_config.json");
    CHECK_OK(aq_tok_open(path, 265, &t, &err), &err);
    if (t) {
        CHECK(aq_tok_eos_id(t) == -1 && !aq_tok_is_stop(t, 2));
        expect_ids(t, "ab", 0, 1, 1, (const int[]){264}); /* no EOS to append */
    }
    aq_tok_close(t);
    /* Side files that are wrong: named, never ignored. */
    static const char bad_tc[] = "{\"eos_token\": \"<eos>\"}", bad_cfg[] = "{\"eos_token_id\": [2,";
    put(dir, "tokenizer_config.json", bad_tc, strlen(bad_tc));
    CHECK(aq_tok_open(path, 265, &t, &err) == AQ_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "tokenizer_config.json") && strstr(err.msg, "<eos>"), "%s", err.msg);
    drop(dir, "tokenizer_config.json");
    put(dir, "config.json", bad_cfg, strlen(bad_cfg));
    CHECK(aq_tok_open(path, 265, &t, &err) == AQ_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "config.json") != NULL, "%s", err.msg);
    drop(dir, "config.json");
}

/* Without byte fallback an unknown character is <unk>, counted. */
static void test_spm_unk(void)
{
    size_t len;
    char *json = fx_spm(NULL, 0, &len);
    aq_error err = {0};
    aq_tokenizer *t = NULL;
    CHECK_OK(aq_tok_open_memory(json, len, 265, "spm-nofallback", &t, &err), &err);
    if (t) {
        expect_ids(t, "ab c", 0, 0, 3, (const int[]){264, 259, 0});
        CHECK(aq_tok_unknown_count(t) == 2); /* encode and encode_alloc above */
        aq_tok_close(t);
    }
    free(json);
}

/* Byte-level fixture (GPT-2 style, no BOS like Qwen): ids 0..255 are the
 * bytes, "Ġt" 256, "he" 257, "Ġthe" 258. */
static void test_bytelevel(void)
{
    size_t len;
    char *json = fx_bytelevel(0, &len);
    aq_error err = {0};
    aq_tokenizer *t = NULL;
    CHECK_OK(aq_tok_open_memory(json, len, AQ_TOK_NO_MODEL, "bytelevel", &t, &err), &err);
    if (t) {
        CHECK(aq_tok_bos_id(t) == -1 && aq_tok_eos_id(t) == -1);
        expect_ids(t, "the the", 1, 1, 3, (const int[]){'t', 257, 258});
        expect_ids(t, "", 1, 0, 0, NULL); /* nothing to start from: generate asks for a prompt */
        /* é€ as raw bytes; the first byte of each character is held back. */
        int ids[] = {'t', 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 258};
        char *s = stream_all(t, ids, 7, 1);
        CHECK_MSG(!strcmp(s, "t\xc3\xa9\xe2\x82\xac the"), "%s", s);
        free(s);
        free(stream_all(t, ids, 5, 4)); /* a sequence ending mid-character: flushed */
        aq_tok_close(t);
    }
    /* add_bos_token in tokenizer_config.json when the post-processor adds none. */
    char *dir = aq_test_tmpdir("tokbl"), path[600];
    static const char tc[] = "{\"add_bos_token\": true, \"bos_token\": \"<|end|>\", "
                             "\"model_max_length\": 1000000000000000019884624838656}";
    put(dir, "tokenizer.json", json, len);
    put(dir, "tokenizer_config.json", tc, strlen(tc));
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    CHECK_OK(aq_tok_open(path, 262, &t, &err), &err);
    if (t) {
        CHECK(aq_tok_bos_id(t) == 261 && aq_tok_eos_id(t) == -1);
        expect_ids(t, "the", 1, 0, 3, (const int[]){261, 't', 257});
        expect_ids(t, "the", 0, 0, 2, (const int[]){'t', 257});
        free(stream_all(t, (const int[]){261, 't', 257}, 3, 0));
        aq_tok_close(t);
    }
    drop(dir, "tokenizer_config.json");
    drop(dir, "tokenizer.json");
    rmdir(dir);
    free(dir);
    free(json);
}

/* A real tokenizer.json: its own tokenizer_config.json's EOS, and streaming
 * decode on TinyStories lines and multi-byte text. */
static void test_real(const char *path, const char *text_path)
{
    static const struct {
        const char *dir_has;
        int bos, eos;
    } known[] = {{"llama2", 1, 2}, {"llama3", -1, 128001}, {"qwen3", -1, 151645}};
    /* Llama-3: this revision of the file has a ByteLevel post-processor only
     * and its tokenizer_config.json no add_bos_token, so transformers adds no
     * <|begin_of_text|> either; Qwen3 has no BOS at all. */
    aq_error err = {0};
    aq_tokenizer *t = NULL;
    CHECK_OK(aq_tok_open(path, AQ_TOK_NO_MODEL, &t, &err), &err);
    if (!t) return;
    printf("%s\n", aq_tok_describe(t));
    for (size_t k = 0; k < 3; k++)
        if (strstr(path, known[k].dir_has))
            CHECK_MSG(aq_tok_bos_id(t) == known[k].bos && aq_tok_eos_id(t) == known[k].eos,
                      "%s: BOS %d EOS %d", path, aq_tok_bos_id(t), aq_tok_eos_id(t));
    FILE *f = fopen(text_path, "rb");
    char *line = NULL;
    size_t cap = 0, lines = 0;
    ssize_t got;
    static const char multi[] = "caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80\xf0\x9f\x91\x8d"
                                "\xf0\x9f\x8f\xbd e\xcc\x81  \t end";
    while (f && (got = getline(&line, &cap, f)) > 0) {
        if (lines++ % 8) continue; /* every 8th line keeps the test short */
        if (lines == 9) snprintf(line, cap, "%s", multi);
        int *ids = NULL;
        size_t n = 0;
        CHECK_OK(aq_tok_encode_alloc(t, line, 1, 1, &ids, &n, &err), &err);
        free(stream_all(t, ids, n, -1));
        free(ids);
    }
    CHECK(lines > 8000);
    free(line);
    if (f) fclose(f);
    aq_tok_close(t);
}

int main(int argc, char **argv)
{
    char *text = argc > 1 ? aq_test_asset("data/tinystories/validation.txt") : NULL;
    test_spm_dir();
    test_spm_unk();
    test_bytelevel();
    for (int i = 1; i < argc; i++)
        test_real(argv[i], text);
    free(text);
    AQ_TEST_END();
}
