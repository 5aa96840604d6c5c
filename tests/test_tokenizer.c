/* test_tokenizer.c — the tokenizer front end (src/text/tokenizer.c) and the
 * llama2.c backend (l2c_tokenizer.c) against known ids, a literal quadratic
 * port of llama2.c run.c encode() (written here, not the heap code under
 * test), decode round trips, streaming decode, malformed tokenizer files; a
 * character-level vocabulary without byte fallback (<unk>, its count, the
 * error without <unk>); dispatch by content and directory; the
 * config/tokenizer vocabulary check.
 *
 * `test_tokenizer --encode-hex TOK.bin VOCAB` is a tool mode for
 * tests/scripts/tok_reference.py (the independent Python reference): it
 * reads "BOS EOS HEX" lines and prints "IDS<TAB>HEX(decode_all(IDS))<TAB>
 * N_UNKNOWN" (characters mapped to <unk>), or "ERR<TAB>message". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../src/text/tokenizer.h"
#include "runc_encode.h"
#include "testutil.h"

/* ---- tool mode ---- */

static int hexv(int c)
{
    return c <= '9' ? c - '0' : (c | 32) - 'a' + 10;
}

static int encode_hex_tool(const char *tok_path, int vocab)
{
    aq_error err = {0};
    aq_tokenizer *t;
    if (aq_tok_open(tok_path, vocab, &t, &err) != AQ_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, stdin)) > 0) {
        int bos, eos, pos;
        if (sscanf(line, "%d %d %n", &bos, &eos, &pos) != 2) break;
        const char *hx = line + pos;
        size_t hl = strcspn(hx, "\n");
        char *text = malloc(hl / 2 + 1);
        for (size_t i = 0; i < hl / 2; i++)
            text[i] = (char)(hexv(hx[2 * i]) * 16 + hexv(hx[2 * i + 1]));
        text[hl / 2] = '\0';
        int *ids;
        size_t n, unk0 = aq_tok_unknown_count(t);
        char *dec;
        size_t dl;
        if (aq_tok_encode_alloc(t, text, bos, eos, &ids, &n, &err) != AQ_OK) {
            printf("ERR\t%s\n", err.msg); /* the reference checks where */
            free(text);
            continue;
        }
        if (aq_tok_decode_all(t, ids, n, &dec, &dl, &err) != AQ_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        for (size_t i = 0; i < n; i++)
            printf(i ? " %d" : "%d", ids[i]);
        putchar('\t');
        for (size_t i = 0; i < dl; i++)
            printf("%02x", (unsigned char)dec[i]);
        printf("\t%zu\n", aq_tok_unknown_count(t) - unk0);
        free(ids);
        free(dec);
        free(text);
    }
    free(line);
    aq_tok_close(t);
    return 0;
}

/* ---- a literal port of run.c encode() (quadratic merge loop) ---- */

typedef struct ref_tok {
    int n;
    char **vocab;
    float *scores;
    struct ref_idx {
        const char *s;
        int id;
    } * sorted;
} ref_tok;

static int ref_cmp(const void *a, const void *b)
{
    return strcmp(((const struct ref_idx *)a)->s, ((const struct ref_idx *)b)->s);
}

static int ref_lookup(const ref_tok *r, const char *s)
{
    struct ref_idx key = {s, 0};
    const struct ref_idx *hit = bsearch(&key, r->sorted, (size_t)r->n, sizeof key, ref_cmp);
    return hit ? hit->id : -1;
}

static void ref_load(ref_tok *r, const char *path, int n)
{
    FILE *f = fopen(path, "rb");
    int maxlen;
    r->n = n;
    r->vocab = calloc((size_t)n, sizeof *r->vocab);
    r->scores = calloc((size_t)n, sizeof *r->scores);
    r->sorted = calloc((size_t)n, sizeof *r->sorted);
    if (!f || fread(&maxlen, 4, 1, f) != 1) exit(1);
    for (int i = 0; i < n; i++) {
        int len;
        if (fread(&r->scores[i], 4, 1, f) != 1 || fread(&len, 4, 1, f) != 1) exit(1);
        r->vocab[i] = calloc((size_t)len + 1, 1);
        if (fread(r->vocab[i], 1, (size_t)len, f) != (size_t)len) exit(1);
        r->sorted[i].s = r->vocab[i];
        r->sorted[i].id = i;
    }
    fclose(f);
    qsort(r->sorted, (size_t)n, sizeof *r->sorted, ref_cmp);
}

static void ref_free(ref_tok *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->vocab[i]);
    free(r->vocab);
    free(r->scores);
    free(r->sorted);
}

static int ref_lookup_cb(const void *r, const char *s) { return ref_lookup(r, s); }

static int ref_encode(const ref_tok *r, const char *text, int bos, int eos, int *tokens)
{
    return aq_runc_encode((const char *const *)r->vocab, r->scores, ref_lookup_cb, r, text, bos, eos, tokens);
}

/* ---- tests ---- */

static void test_known_ids(const aq_tokenizer *t)
{
    aq_error err = {0};
    /* Verified with tests/scripts/tok_reference.py (independent Python port). */
    static const struct {
        const char *text;
        int n, ids[12];
    } known[] = {
        {"Once upon a time", 5, {1, 403, 407, 261, 378}},
        {"Hello world!", 8, {1, 346, 306, 414, 263, 304, 341, 443}},
        /* "café 你": é is a piece, 你 (E4 BD A0) falls back to bytes + 3 */
        {"caf\xc3\xa9 \xe4\xbd\xa0", 9, {1, 280, 412, 431, 485, 410, 0xE4 + 3, 0xBD + 3, 0xA0 + 3}},
        {"", 1, {1}},
    };
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        int ids[64];
        size_t n = 0;
        CHECK_OK(aq_tok_encode(t, known[k].text, 1, 0, ids, 64, &n, &err), &err);
        CHECK_MSG(n == (size_t)known[k].n, "\"%s\": %zu ids, want %d", known[k].text, n,
                  known[k].n);
        for (int i = 0; i < known[k].n && i < (int)n; i++)
            CHECK_MSG(ids[i] == known[k].ids[i], "\"%s\" id %d: %d want %d", known[k].text, i,
                      ids[i], known[k].ids[i]);
    }
    CHECK(!strcmp(aq_tok_piece(t, 403), " Once"));
    CHECK(aq_tok_piece(t, 512) == NULL && aq_tok_piece(t, -1) == NULL);
    /* Without BOS, with EOS; empty text gets no dummy prefix. */
    int ids[8];
    size_t n;
    CHECK_OK(aq_tok_encode(t, "Once", 0, 1, ids, 8, &n, &err), &err);
    CHECK(n == 2 && ids[0] == 403 && ids[1] == aq_tok_eos_id(t));
    CHECK_OK(aq_tok_encode(t, "", 0, 0, ids, 8, &n, &err), &err);
    CHECK(n == 0);
    /* Too little room is an error, not an overflow. */
    CHECK(aq_tok_encode(t, "Once upon", 1, 1, ids, 8, &n, &err) == AQ_ERR_ARG);
    CHECK(strstr(err.msg, "need 12") != NULL);
}

static void test_decode(const aq_tokenizer *t)
{
    aq_error err = {0};
    const char *p;
    size_t len;
    CHECK_OK(aq_tok_decode(t, aq_tok_bos_id(t), 403, &p, &len, &err), &err);
    CHECK(len == 4 && !memcmp(p, "Once", 4)); /* space stripped after BOS */
    CHECK_OK(aq_tok_decode(t, 403, 407, &p, &len, &err), &err);
    CHECK(len == 5 && !memcmp(p, " upon", 5));
    CHECK_OK(aq_tok_decode(t, 403, 0x0A + 3, &p, &len, &err), &err);
    CHECK(len == 1 && p[0] == '\n'); /* <0x0A> -> raw newline */
    CHECK_OK(aq_tok_decode(t, 403, 3, &p, &len, &err), &err);
    CHECK(len == 1 && p[0] == '\0'); /* <0x00> -> a raw NUL byte */
    CHECK(aq_tok_decode(t, 1, 512, &p, &len, &err) == AQ_ERR_ARG);
    CHECK(strstr(err.msg, "512") != NULL);
    CHECK(aq_tok_decode(t, 1, -3, &p, &len, &err) == AQ_ERR_ARG);
    int bad[3] = {1, 403, 9999};
    char *s = NULL;
    CHECK(aq_tok_decode_all(t, bad, 3, &s, NULL, &err) == AQ_ERR_ARG);
    CHECK(s == NULL && strstr(err.msg, "position 2") != NULL);
    int ok[6] = {1, 403, 407, 261, 378, 2};
    CHECK_OK(aq_tok_decode_all(t, ok, 6, &s, &len, &err), &err);
    CHECK(s && !strcmp(s, "Once upon a time") && len == 16);
    free(s);
}

/* Every line of the validation text: heap merge == quadratic run.c port, and
 * decode(encode(x)) == x. */
static void test_against_runc(const aq_tokenizer *t, const char *tok_path, const char *text_path)
{
    ref_tok r;
    ref_load(&r, tok_path, 512);
    FILE *f = fopen(text_path, "rb");
    CHECK(f != NULL);
    if (!f) return;
    char *line = NULL;
    size_t cap = 0, lines = 0, compared = 0, mismatches = 0, ids_total = 0;
    ssize_t got;
    aq_error err = {0};
    while ((got = getline(&line, &cap, f)) > 0) {
        if (line[got - 1] == '\n') line[--got] = '\0';
        if (lines++ % 4 != 0) { /* the quadratic port is slow: every 4th line */
            int *ids;
            size_t n;
            char *dec;
            CHECK_OK(aq_tok_encode_alloc(t, line, 1, 0, &ids, &n, &err), &err);
            CHECK_OK(aq_tok_decode_all(t, ids, n, &dec, NULL, &err), &err);
            CHECK_MSG(!strcmp(dec, line), "round trip of line %zu", lines - 1);
            free(ids);
            free(dec);
            continue;
        }
        int *want = malloc(((size_t)got + 3) * sizeof *want);
        int nw = ref_encode(&r, line, 1, 1, want);
        int *ids;
        size_t n;
        CHECK_OK(aq_tok_encode_alloc(t, line, 1, 1, &ids, &n, &err), &err);
        int same = n == (size_t)nw && !memcmp(ids, want, n * sizeof *ids);
        if (!same && mismatches++ < 3)
            fprintf(stderr, "line %zu: heap merge differs from run.c port\n", lines - 1);
        char *dec;
        CHECK_OK(aq_tok_decode_all(t, ids, n, &dec, NULL, &err), &err);
        CHECK_MSG(!strcmp(dec, line), "round trip of line %zu", lines - 1);
        free(dec);
        free(ids);
        free(want);
        ids_total += n;
        compared++;
    }
    CHECK(mismatches == 0);
    CHECK(lines > 8000 && compared > 2000);
    printf("%zu lines round-tripped; run.c port on %zu of them: %zu ids, %zu mismatches\n", lines,
           compared, ids_total, mismatches);
    free(line);
    fclose(f);
    ref_free(&r);
}

/* ---- a hand-made vocabulary: ties, the -1e10 cutoff, byte fallback ---- */

static unsigned char *put_piece(unsigned char *p, float score, const char *s)
{
    int32_t n = (int32_t)strlen(s);
    memcpy(p, &score, 4);
    memcpy(p + 4, &n, 4);
    memcpy(p + 8, s, (size_t)n);
    return p + 8 + n;
}

static void expect_ids(const aq_tokenizer *t, const char *text, int n, const int *want)
{
    aq_error err = {0};
    int ids[32];
    size_t got = 0;
    CHECK_OK(aq_tok_encode(t, text, 0, 0, ids, 32, &got, &err), &err);
    int same = got == (size_t)n;
    for (int i = 0; same && i < n; i++)
        same = ids[i] == want[i];
    CHECK_MSG(same, "\"%s\": got %zu ids [%d %d %d ...]", text, got, ids[0], got > 1 ? ids[1] : -1,
              got > 2 ? ids[2] : -1);
}

static void test_synthetic_vocab(void)
{
    static const struct {
        float score;
        const char *s;
    } extra[] = {{0, " "},    {0, "a"},   {0, "b"},         {-1, "aa"},    {-1, "ab"},
                 {-2, "bab"}, {-5, " a"}, {-3, "\xc3\xa9"}, {-2e10f, "bb"}};
    enum { N = 259 + 9 };
    unsigned char *buf = malloc(4 + N * (8 + 8)), *p = buf + 4;
    int32_t maxlen = 8;
    memcpy(buf, &maxlen, 4);
    p = put_piece(p, 0, "<unk>");
    p = put_piece(p, 0, "<s>");
    p = put_piece(p, 0, "</s>");
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        p = put_piece(p, 0, name);
    }
    for (int i = 0; i < 9; i++)
        p = put_piece(p, extra[i].score, extra[i].s);
    aq_error err = {0};
    aq_tokenizer *t = NULL;
    CHECK_OK(aq_tok_open_memory(buf, (size_t)(p - buf), N, "synth", &t, &err), &err);
    if (t) {
        /* Worked by hand with run.c's loop. " "=259 a=260 b=261 aa=262 ab=263 bab=264 " a"=265
         * é=266 bb=267 */
        /* aaa: " a"(-5), aa(-1) at 1 and 2: leftmost aa wins; no further merge. */
        expect_ids(t, "aaa", 3, (const int[]){259, 262, 260});
        /* aab: aa(-1) at 1 ties ab(-1) at 2: leftmost -> [" ", aa, b], then nothing
         * (rightmost would give [" ", a, ab] -> [" a", ab]). */
        expect_ids(t, "aab", 3, (const int[]){259, 262, 261});
        /* bab: ab(-1) first, then b+ab = bab(-2): merges build on merges. */
        expect_ids(t, "bab", 2, (const int[]){259, 264});
        /* bb scores -2e10 <= run.c's initial best -1e10: never merged. */
        expect_ids(t, "bb", 3, (const int[]){259, 261, 261});
        /* c is not a piece: byte fallback 'c' + 3; é is a 2-byte piece; \xe9 alone is not. */
        expect_ids(t, "c\xc3\xa9\xe9", 4, (const int[]){259, 'c' + 3, 266, 0xe9 + 3});
        /* A lone space text: dummy " " + " " (no "  " piece). */
        expect_ids(t, " ", 2, (const int[]){259, 259});
        aq_tok_close(t);
    }
    free(buf);
}

/* A well-formed vocabulary without byte tokens and without <unk>: it loads,
 * encodes what it covers, and names a character it cannot represent. */
static void test_small_vocab(void)
{
    static const char *const pieces[] = {" ", "a", "b", "aa", "ab", "bab"};
    static const float scores[] = {0, 0, 0, -1, -1, -2};
    unsigned char *buf = malloc(4 + 6 * 16), *p = buf + 4;
    int32_t maxlen = 8;
    memcpy(buf, &maxlen, 4);
    aq_error err = {0};
    aq_tokenizer *t = NULL;
    for (int i = 0; i < 6; i++)
        p = put_piece(p, scores[i], pieces[i]);
    CHECK_OK(aq_tok_open_memory(buf, (size_t)(p - buf), 6, "small", &t, &err), &err);
    if (t) {
        /* " "=0 a=1 b=2 aa=3 ab=4 bab=5 */
        expect_ids(t, "ab", 2, (const int[]){0, 4});
        CHECK(aq_tok_unk_id(t) == -1 && aq_tok_bos_id(t) == 1 && aq_tok_eos_id(t) == 2);
        int ids[16];
        size_t n;
        CHECK(aq_tok_encode(t, "abc", 0, 0, ids, 16, &n, &err) == AQ_ERR_ARG);
        CHECK_MSG(strstr(err.msg, "\"c\"") && strstr(err.msg, "byte offset 2 "), "%s", err.msg);
        CHECK(aq_tok_encode(t, "a\xe4\xbd\xa0", 0, 0, ids, 16, &n, &err) == AQ_ERR_ARG);
        CHECK_MSG(strstr(err.msg, "E4 BD A0") && strstr(err.msg, "byte offset 1 "), "%s", err.msg);
        aq_tok_close(t);
    }
    free(buf);
}

/* ---- a character-level vocabulary (no byte fallback) ---- */

/* 105 tokens like a BabyLlama-style char model: <unk> <s> </s>, "\n", the
 * printable ASCII characters (id = c - 28), then " t" he " th" the " the" in
 * (ids 99..104). unk_piece names id 0 ("<pad>": no unknown token). */
static unsigned char *char_vocab(const char *unk_piece, size_t *len)
{
    static const struct {
        float score;
        const char *s;
    } merges[] = {{-1, " t"}, {-2, "he"}, {-3, " th"}, {-3, "the"}, {-4, " the"}, {-2, "in"}};
    unsigned char *buf = malloc(4 + 105 * 16), *p = buf + 4;
    int32_t maxlen = 8;
    memcpy(buf, &maxlen, 4);
    p = put_piece(p, 0, unk_piece);
    p = put_piece(p, 0, "\n<s>\n");
    p = put_piece(p, 0, "\n</s>\n");
    p = put_piece(p, 0, "\n");
    for (int c = 32; c < 127; c++)
        p = put_piece(p, (float)-(c - 32), (char[]){(char)c, 0});
    for (int i = 0; i < 6; i++)
        p = put_piece(p, merges[i].score, merges[i].s);
    *len = (size_t)(p - buf);
    return buf;
}

static void expect_bos_ids(const aq_tokenizer *t, const char *text, int n, const int *want,
                           size_t unknown, const char *decoded)
{
    aq_error err = {0};
    int *ids = NULL;
    size_t got = 0, u0 = aq_tok_unknown_count(t);
    CHECK_OK(aq_tok_encode_alloc(t, text, 1, 0, &ids, &got, &err), &err);
    int same = got == (size_t)n;
    for (int i = 0; same && i < n; i++)
        same = ids[i] == want[i];
    CHECK_MSG(same, "\"%s\": %zu ids, want %d", text, got, n);
    CHECK_MSG(aq_tok_unknown_count(t) - u0 == unknown, "\"%s\": %zu unknown, want %zu", text,
              aq_tok_unknown_count(t) - u0, unknown);
    char *dec = NULL;
    if (same) CHECK_OK(aq_tok_decode_all(t, ids, got, &dec, NULL, &err), &err);
    CHECK_MSG(!same || (dec && !strcmp(dec, decoded)), "decode of \"%s\": \"%s\"", text,
              dec ? dec : "");
    free(dec);
    free(ids);
}

static void test_char_vocab(void)
{
    size_t len;
    unsigned char *buf = char_vocab("<unk>", &len);
    aq_error err = {0};
    aq_tokenizer *t = NULL;
    CHECK_OK(aq_tok_open_memory(buf, len, 105, "char", &t, &err), &err);
    if (t) {
        CHECK(aq_tok_vocab_size(t) == 105 && aq_tok_unk_id(t) == 0 && aq_tok_bos_id(t) == 1);
        CHECK(strstr(aq_tok_describe(t), "no byte fallback") != NULL);
        /* Worked by hand: " t"(-1) first, then he(-2), then " t"+he = " the". */
        expect_bos_ids(t, "the", 2, (const int[]){1, 103}, 0, "the");
        /* " t", then in(-2) before " th"(-3); é -> <unk>, which never merges. */
        expect_bos_ids(t, "thin \xc3\xa9", 5, (const int[]){1, 101, 104, 4, 0}, 1, "thin <unk>");
        /* A run of unknowns (é, €, a tab) is one <unk>; each counts. */
        expect_bos_ids(t, "\xc3\xa9\xe2\x82\xac\tx", 4, (const int[]){1, 4, 0, 92}, 3,
                       "<unk>x");
        CHECK(aq_tok_unknown_count(t) == 4);
        char *dir = aq_test_tmpdir("tokrep"), path[512], line[256] = "";
        snprintf(path, sizeof path, "%s/log", dir);
        FILE *f = fopen(path, "w+");
        aq_tok_report_unknown(t, "eval", f);
        rewind(f);
        CHECK(fgets(line, sizeof line, f) != NULL);
        fclose(f);
        CHECK_MSG(strstr(line, "eval: 4 characters outside the vocabulary mapped to <unk>") == line,
                  "%s", line);
        remove(path);
        remove(dir);
        free(dir);
        aq_tok_close(t);
    }
    free(buf);
    /* Without an unknown token: a clear error naming the character and where. */
    buf = char_vocab("<pad>", &len);
    CHECK_OK(aq_tok_open_memory(buf, len, 105, "char-nounk", &t, &err), &err);
    if (t) {
        int *ids = NULL;
        size_t n;
        CHECK(aq_tok_unk_id(t) == -1);
        expect_bos_ids(t, "the", 2, (const int[]){1, 103}, 0, "the");
        CHECK(aq_tok_encode_alloc(t, "thin \xc3\xa9", 1, 0, &ids, &n, &err) == AQ_ERR_ARG);
        CHECK_MSG(ids == NULL && strstr(err.msg, "byte offset 5 ") && strstr(err.msg, "C3 A9") &&
                      strstr(err.msg, "<unk>"),
                  "%s", err.msg);
        aq_tok_close(t);
    }
    free(buf);
}

/* ---- malformed tokenizer files ---- */

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) exit(1);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len);
    if (fread(b, 1, *len, f) != *len) exit(1);
    fclose(f);
    return b;
}

/* Byte offset of token i's score field. */
static size_t token_offset(const unsigned char *b, int i)
{
    size_t off = 4;
    for (int k = 0; k < i; k++) {
        int32_t n;
        memcpy(&n, b + off + 4, 4);
        off += 8 + (size_t)n;
    }
    return off;
}

static void expect_fail(const void *buf, size_t len, int vocab, aq_status code, const char *needle1,
                        const char *needle2)
{
    aq_error err = {0};
    aq_tokenizer *t = (aq_tokenizer *)1;
    aq_status st = aq_tok_open_memory(buf, len, vocab, "bad.bin", &t, &err);
    CHECK_MSG(st == code, "want %s, got %s (%s)", aq_status_name(code), aq_status_name(st),
              err.msg);
    CHECK(t == NULL);
    CHECK_MSG(strstr(err.msg, "bad.bin") && strstr(err.msg, needle1) &&
                  (!needle2 || strstr(err.msg, needle2)),
              "message \"%s\" lacks \"%s\"/\"%s\"", err.msg, needle1, needle2 ? needle2 : "");
}

static void test_malformed(const char *tok_path)
{
    size_t len;
    unsigned char *b = slurp(tok_path, &len);
    unsigned char *c = malloc(len);
    size_t o10 = token_offset(b, 10), o300 = token_offset(b, 300);
    CHECK(token_offset(b, 512) == len);

    expect_fail(b, 0, 512, AQ_ERR_FORMAT, "too short", NULL);
    expect_fail(b, len - 1, 512, AQ_ERR_FORMAT, "token 511", "byte offset");
    expect_fail(b, o300 + 5, 512, AQ_ERR_FORMAT, "token 300", "byte offset");
    expect_fail(b, len, 513, AQ_ERR_FORMAT, "token 512", "fewer tokens");
    expect_fail(b, len, 511, AQ_ERR_FORMAT, "trailing bytes", "vocab_size 511");
    expect_fail(b, len, 511, AQ_ERR_FORMAT, "config/tokenizer vocabulary mismatch", NULL);
    expect_fail(b, len, -1, AQ_ERR_ARG, "vocab_size -1", NULL);
    expect_fail(b, 4, 0, AQ_ERR_FORMAT, "no token", NULL);

    int32_t v = -1;
    memcpy(c, b, len);
    memcpy(c + o10 + 4, &v, 4);
    expect_fail(c, len, 512, AQ_ERR_FORMAT, "token 10", "length -1");
    v = 8; /* > max_token_length 7 */
    memcpy(c, b, len);
    memcpy(c + o10 + 4, &v, 4);
    expect_fail(c, len, 512, AQ_ERR_FORMAT, "token 10", "max_token_length 7");
    v = 0;
    memcpy(c, b, len);
    memcpy(c, &v, 4);
    expect_fail(c, len, 512, AQ_ERR_FORMAT, "max_token_length 0", NULL);
    float nan_score = NAN;
    memcpy(c, b, len);
    memcpy(c + o300, &nan_score, 4);
    expect_fail(c, len, 512, AQ_ERR_FORMAT, "token 300", "non-finite");
    memcpy(c, b, len);
    c[token_offset(b, 3) + 8 + 4] = 'G'; /* "<0x00>" -> "<0x0G>" */
    expect_fail(c, len, 512, AQ_ERR_FORMAT, "incomplete byte fallback", "<0x00> is missing");

    aq_error err = {0};
    aq_tokenizer *t;
    CHECK(aq_tok_open("/nonexistent/tok.bin", 512, &t, &err) == AQ_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent/tok.bin") != NULL);
    /* The same truncation through a real file. */
    char *dir = aq_test_tmpdir("tok");
    char path[512];
    snprintf(path, sizeof path, "%s/trunc.bin", dir);
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, len - 3, f);
    fclose(f);
    CHECK(aq_tok_open(path, 512, &t, &err) == AQ_ERR_FORMAT);
    CHECK(strstr(err.msg, path) && strstr(err.msg, "token 511"));
    remove(path);
    remove(dir);
    free(dir);
    free(b);
    free(c);
}

/* ---- dispatch: directories, content sniffing, vocab_size check ---- */

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, len, f) == len);
    if (f) fclose(f);
}

static void expect_open(const char *path, int vocab, aq_status code, const char *n1,
                        const char *n2)
{
    aq_error err = {0};
    aq_tokenizer *t = (aq_tokenizer *)1;
    aq_status st = aq_tok_open(path, vocab, &t, &err);
    CHECK_MSG(st == code, "%s: want %s, got %s (%s)", path, aq_status_name(code),
              aq_status_name(st), err.msg);
    CHECK(t == NULL);
    CHECK_MSG(strstr(err.msg, n1) && (!n2 || strstr(err.msg, n2)), "\"%s\" lacks \"%s\"/\"%s\"",
              err.msg, n1, n2 ? n2 : "");
}

static void test_dispatch(const char *tok_path)
{
    size_t len;
    unsigned char *b = slurp(tok_path, &len);
    char *dir = aq_test_tmpdir("tokdir"), sub[600], path[700];
    aq_error err = {0};
    aq_tokenizer *t = NULL;
    /* A directory holding tokenizer.bin; a .bin read to its end without a model. */
    snprintf(sub, sizeof sub, "%s/l2c", dir);
    CHECK(mkdir(sub, 0777) == 0);
    snprintf(path, sizeof path, "%s/tokenizer.bin", sub);
    write_file(path, b, len);
    CHECK_OK(aq_tok_open(sub, 512, &t, &err), &err);
    if (t) {
        CHECK(aq_tok_kind_of(t) == AQ_TOK_LLAMA2C && aq_tok_vocab_size(t) == 512);
        CHECK(strstr(aq_tok_describe(t), path) && strstr(aq_tok_describe(t), "byte fallback"));
        CHECK(aq_tok_is_stop(t, 1) && aq_tok_is_stop(t, 2) && !aq_tok_is_stop(t, 0));
        aq_tok_close(t);
    }
    CHECK_OK(aq_tok_open(path, AQ_TOK_NO_MODEL, &t, &err), &err);
    if (t) CHECK(aq_tok_vocab_size(t) == 512 && aq_tok_unk_id(t) == -1);
    aq_tok_close(t);
    /* The model's vocab_size disagrees with the file: both directions. */
    expect_open(tok_path, 600, AQ_ERR_FORMAT, "config/tokenizer vocabulary mismatch", "600");
    expect_open(tok_path, 500, AQ_ERR_FORMAT, "config/tokenizer vocabulary mismatch", "500");
    /* The kind comes from the content, not the name. */
    snprintf(path, sizeof path, "%s/named.json", dir);
    write_file(path, b, len);
    CHECK_OK(aq_tok_open(path, 512, &t, &err), &err);
    if (t) CHECK(aq_tok_kind_of(t) == AQ_TOK_LLAMA2C);
    aq_tok_close(t);
    remove(path);
    /* A directory whose tokenizer.json (preferred over tokenizer.bin) is
     * truncated JSON: the tokenizer.json reader reports it. */
    snprintf(path, sizeof path, "%s/tokenizer.json", sub);
    write_file(path, " \n{\"model\": {", 13);
    expect_open(sub, 512, AQ_ERR_FORMAT, path, NULL);
    remove(path);
    snprintf(path, sizeof path, "%s/tokenizer.bin", sub);
    remove(path);
    expect_open(sub, 512, AQ_ERR_NOTFOUND, "neither tokenizer.json nor tokenizer.bin", NULL);
    expect_open(tok_path, -5, AQ_ERR_ARG, "-5", NULL);
    rmdir(sub);
    rmdir(dir);
    free(dir);
    free(b);
}

/* Streaming decode gives decode_all's text, piece by piece (llama2.c). */
static void test_stream(const aq_tokenizer *t)
{
    static const char *texts[] = {"Once upon a time", "caf\xc3\xa9 \xe4\xbd\xa0 \xf0\x9f\x98\x80!",
                                  "  two\n\nlines  ", ""};
    aq_error err = {0};
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        int *ids = NULL;
        size_t n = 0, dl = 0, got = 0;
        char *dec = NULL, out[256];
        aq_tok_stream *s = NULL;
        CHECK_OK(aq_tok_encode_alloc(t, texts[k], 1, 1, &ids, &n, &err), &err);
        CHECK_OK(aq_tok_decode_all(t, ids, n, &dec, &dl, &err), &err);
        CHECK_OK(aq_tok_stream_new(t, &s, &err), &err);
        for (size_t i = 0; s && i <= n; i++) {
            const char *piece;
            size_t len;
            if (i < n)
                CHECK_OK(aq_tok_stream_push(s, ids[i], &piece, &len, &err), &err);
            else
                CHECK_OK(aq_tok_stream_flush(s, &piece, &len, &err), &err);
            if (got + len < sizeof out) memcpy(out + got, piece, len);
            got += len;
        }
        CHECK_MSG(dec && got == dl && !memcmp(out, dec, dl), "stream of \"%s\"", texts[k]);
        const char *piece;
        size_t len;
        CHECK(s && aq_tok_stream_push(s, 512, &piece, &len, &err) == AQ_ERR_ARG);
        aq_tok_stream_free(s);
        free(dec);
        free(ids);
    }
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "--encode-hex"))
        return encode_hex_tool(argv[2], atoi(argv[3]));
    char *tok_path = aq_test_asset("models/stories260K/tok512.bin");
    char *text_path = aq_test_asset("data/tinystories/validation.txt");
    aq_error err = {0};
    aq_tokenizer *t = NULL;
    CHECK_OK(aq_tok_open(tok_path, 512, &t, &err), &err);
    if (!t) AQ_TEST_END();
    CHECK(aq_tok_vocab_size(t) == 512 && aq_tok_kind_of(t) == AQ_TOK_LLAMA2C);
    CHECK(aq_tok_bos_id(t) == 1 && aq_tok_eos_id(t) == 2 && aq_tok_unk_id(t) == -1);
    test_known_ids(t);
    test_decode(t);
    test_synthetic_vocab();
    test_small_vocab();
    test_char_vocab();
    test_dispatch(tok_path);
    test_stream(t);
    test_against_runc(t, tok_path, text_path);
    test_malformed(tok_path);
    aq_tok_close(t);
    free(tok_path);
    free(text_path);
    AQ_TEST_END();
}
